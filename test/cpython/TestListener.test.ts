// CPython's _TestListener (ALLOWED_TYPES: processes). No child process: the flavours differ only
// by the default start method, which a Listener does not depend on.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { cpythonClass } from './harness.js';

// Python's `connection.families` on POSIX.
const families = ['AF_INET', 'AF_UNIX'] as const;

cpythonClass('_TestListener', ['processes'], () => {
  it('test_multiple_bind', () => {
    for (const family of families) {
      using l = new mp.Listener(null, { family });
      assert.throws(() => new mp.Listener(l.address, { family }), mp.OSError, family);
    }
  });

  it('test_context', async () => {
    let listener: mp.Listener;
    {
      using l = new mp.Listener();
      listener = l;
      using c = await mp.Client(l.address);
      using d = await l.accept();
      c.send(1729);
      assert.equal(await d.recv(), 1729);
    }
    await assert.rejects(listener.accept(), mp.OSError);
  });

  it('test_empty_authkey', async () => {
    // bpo-43952: an empty authkey is valid and still runs the handshake.
    const key = new Uint8Array(0);
    let listener: mp.Listener;
    {
      using l = new mp.Listener(null, { authkey: key });
      listener = l;
      // CPython's client runs in a thread; ours runs concurrently on the event loop.
      const client = (async () => {
        const c = await mp.Client(l.address, { authkey: key });
        c.send(1729);
        return c;
      })();
      {
        using d = await l.accept();
        assert.equal(await d.recv(), 1729);
      }
      (await client).close();
    }
    await assert.rejects(listener.accept(), mp.OSError);
  });

  it('test_abstract_socket', async () => {
    // A Linux abstract address (a leading NUL); the pid keeps parallel runs apart.
    let listener: mp.Listener;
    {
      using l = new mp.Listener(`\0something-${process.pid}`);
      listener = l;
      using client = await mp.Client(l.address);
      using d = await l.accept();
      client.send(1729);
      assert.equal(await d.recv(), 1729);
    }
    await assert.rejects(listener.accept(), mp.OSError);
  });
});
