// CPython's _TestListenerClient (ALLOWED_TYPES: processes, threads).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { cpythonClass, reap } from './harness.js';
import { sendHello } from './fixtures/connection.js';

// Python's `connection.families` on POSIX.
const families = ['AF_INET', 'AF_UNIX'] as const;

cpythonClass('_TestListenerClient', ['processes', 'threads'], (f) => {
  it('test_listener_client', async () => {
    for (const family of families) {
      using l = new mp.Listener(null, { family });
      const p = new f.ctx.Process({ target: sendHello, args: [l.address], daemon: true });
      try {
        p.start();
        using conn = await l.accept();
        assert.equal(await conn.recv(), 'hello', family);
        await p.join();
        assert.equal(p.exitcode, 0);
      } finally {
        await reap(p);
      }
    }
  });

  it('test_issue14725', async () => {
    // The client connects, sends and closes before accept() is called: CPython sleeps a second
    // first; we wait for the client to have exited.
    using l = new mp.Listener();
    const p = new f.ctx.Process({ target: sendHello, args: [l.address], daemon: true });
    try {
      p.start();
      await p.join();
      assert.equal(p.exitcode, 0);
      using conn = await l.accept();
      assert.equal(await conn.recv(), 'hello');
    } finally {
      await reap(p);
    }
  });

  it('test_issue16955', async () => {
    for (const family of families) {
      using l = new mp.Listener(null, { family });
      using c = await mp.Client(l.address);
      using a = await l.accept();
      a.sendBytes(Buffer.from('hello'));
      assert.equal(await c.poll(1), true, family);
    }
  });
});
