// CPython's _TestPoll (ALLOWED_TYPES: processes, threads).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { cpythonClass, reap } from './harness.js';
import { pollOnly, sendStrings, sendThree } from './fixtures/connection.js';

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');

cpythonClass('_TestPoll', ['processes', 'threads'], (f) => {
  it('test_empty_string', async () => {
    const [a, b] = f.ctx.Pipe();
    try {
      assert.equal(await a.poll(), false);
      b.sendBytes(bytes(''));
      assert.equal(await a.poll(), true);
      assert.equal(await a.poll(), true);
    } finally {
      a.close();
      b.close();
    }
  });

  it('test_strings', async () => {
    const strings = ['hello', '', 'a', 'b', '', 'bye', '', 'lop'].map(bytes);
    const [a, b] = f.ctx.Pipe();
    const p = new f.ctx.Process({ target: sendStrings, args: [b, strings, 0.05] });
    try {
      p.start();
      for (const s of strings) {
        // Short polls until the message is there (CPython: up to 200 polls of 0.01 s).
        let polled = false;
        for (let i = 0; i < 2000 && !polled; i++) polled = await a.poll(0.01);
        assert.ok(polled, 'a message arrives');
        assert.deepEqual(await a.recvBytes(), s);
      }
      await p.join();
      assert.equal(p.exitcode, 0);
    } finally {
      a.close();
      b.close();
      await reap(p);
    }
  });

  it('test_boundaries', async () => {
    // Polling in another process must not take part of a message from the shared read end.
    const [r, w] = f.ctx.Pipe(false);
    const polled = f.ctx.Event();
    const p = new f.ctx.Process({ target: pollOnly, args: [r, 5, polled] });
    try {
      p.start();
      await polled.wait(); // CPython sleeps 2 s so that the child is polling
      const L = [bytes('first'), bytes('second')];
      for (const obj of L) w.sendBytes(obj);
      w.close();
      await p.join();
      assert.equal(p.exitcode, 0);
      const got = await r.recvBytes();
      assert.ok(L.some((x) => x.equals(got)), `${got} is one whole message`);
    } finally {
      r.close();
      w.close();
      await reap(p);
    }
  });

  it('test_dont_merge', async () => {
    const [a, b] = f.ctx.Pipe();
    const p = new f.ctx.Process({ target: sendThree, args: [b] });
    try {
      assert.equal(await a.poll(0.0), false);
      assert.equal(await a.poll(0.1), false);
      p.start();
      assert.deepEqual(await a.recvBytes(), bytes('a'));
      assert.equal(await a.poll(1.0), true);
      assert.equal(await a.poll(1.0), true);
      assert.deepEqual(await a.recvBytes(), bytes('b'));
      assert.equal(await a.poll(1.0), true);
      assert.equal(await a.poll(1.0), true);
      assert.equal(await a.poll(0.0), true);
      assert.deepEqual(await a.recvBytes(), bytes('cd'));
      await p.join();
      assert.equal(p.exitcode, 0);
    } finally {
      a.close();
      b.close();
      await reap(p);
    }
  });
});
