// CPython's _TestConnection (ALLOWED_TYPES: processes, threads).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { cpythonClass, reap } from './harness.js';
import { echo } from './fixtures/connection.js';

const latin = (s: string): Buffer => Buffer.from(s, 'latin1');
const SENTINEL = latin('');

cpythonClass('_TestConnection', ['processes', 'threads'], (f) => {
  it('test_connection', async () => {
    const [conn, childConn] = f.ctx.Pipe();
    const p = new f.ctx.Process({ target: echo, args: [childConn], daemon: true });
    try {
      p.start();
      const seq = [1, 2.25, null];
      const msg = latin('hello world');
      const longmsg = Buffer.concat(Array(10).fill(msg));
      const arr = new Int32Array([0, 1, 2, 3]);

      assert.equal(typeof conn.fileno(), 'number');

      assert.equal(conn.send(seq), undefined);
      assert.deepEqual(await conn.recv(), seq);

      assert.equal(conn.sendBytes(msg), undefined);
      assert.deepEqual(await conn.recvBytes(), msg);

      let buffer = new Int32Array(10);
      assert.equal(conn.sendBytes(arr), undefined);
      assert.equal(await conn.recvBytesInto(buffer), arr.length * buffer.BYTES_PER_ELEMENT);
      assert.deepEqual([...buffer], [0, 1, 2, 3, 0, 0, 0, 0, 0, 0]);

      buffer = new Int32Array(10);
      conn.sendBytes(arr);
      assert.equal(await conn.recvBytesInto(buffer, 3 * buffer.BYTES_PER_ELEMENT), arr.length * buffer.BYTES_PER_ELEMENT);
      assert.deepEqual([...buffer], [0, 0, 0, 0, 1, 2, 3, 0, 0, 0]);

      const small = latin(' '.repeat(40));
      conn.sendBytes(longmsg);
      await assert.rejects(conn.recvBytesInto(small), (e: unknown) => {
        assert.ok(e instanceof mp.BufferTooShort);
        assert.deepEqual(Buffer.from(e.data), longmsg);
        return true;
      });

      assert.equal(await conn.poll(), false);
      assert.equal(await conn.poll(-1), false);
      const t0 = performance.now();
      assert.equal(await conn.poll(0.1), false);
      assert.ok(performance.now() - t0 >= 80, 'poll(0.1) waits about 0.1 s');

      conn.send(null);
      // CPython sleeps until the echo is back; we wait for it, then poll must see it at once.
      assert.equal(await conn.poll(null), true);
      assert.equal(await conn.poll(0.1), true);
      assert.equal(await conn.recv(), null);

      const reallyBigMsg = Buffer.alloc(16 * 1024 * 1024, 'X');
      conn.sendBytes(reallyBigMsg);
      assert.ok((await conn.recvBytes()).equals(reallyBigMsg));

      conn.sendBytes(SENTINEL); // tell the child to quit
      childConn.close();

      assert.equal(conn.readable, true);
      assert.equal(conn.writable, true);
      await assert.rejects(conn.recv(), mp.EOFError);
      await assert.rejects(conn.recvBytes(), mp.EOFError);
      await p.join();
      assert.equal(p.exitcode, 0);
    } finally {
      conn.close();
      await reap(p);
    }
  });

  it('test_duplex_false', async () => {
    const [reader, writer] = f.ctx.Pipe(false);
    assert.equal(writer.send(1), undefined);
    assert.equal(await reader.recv(), 1);
    assert.equal(reader.readable, true);
    assert.equal(reader.writable, false);
    assert.equal(writer.readable, false);
    assert.equal(writer.writable, true);
    assert.throws(() => reader.send(2), mp.OSError);
    await assert.rejects(writer.recv(), mp.OSError);
    await assert.rejects(writer.poll(), mp.OSError);
    reader.close();
    writer.close();
  });

  it('test_spawn_close', async () => {
    // The parent closes the child's end right after start(), maybe before the child has it.
    const [conn, childConn] = f.ctx.Pipe();
    const p = new f.ctx.Process({ target: echo, args: [childConn], daemon: true });
    try {
      p.start();
      childConn.close();
      const msg = latin('hello');
      conn.sendBytes(msg);
      assert.deepEqual(await conn.recvBytes(), msg);
      conn.sendBytes(SENTINEL);
      conn.close();
      await p.join();
      assert.equal(p.exitcode, 0);
    } finally {
      conn.close();
      await reap(p);
    }
  });

  it('test_sendbytes', async () => {
    const msg = latin('abcdefghijklmnopqrstuvwxyz');
    const [a, b] = f.ctx.Pipe();
    try {
      a.sendBytes(msg);
      assert.deepEqual(await b.recvBytes(), msg);
      a.sendBytes(msg, 5);
      assert.deepEqual(await b.recvBytes(), msg.subarray(5));
      a.sendBytes(msg, 7, 8);
      assert.deepEqual(await b.recvBytes(), msg.subarray(7, 7 + 8));
      a.sendBytes(msg, 26);
      assert.deepEqual(await b.recvBytes(), latin(''));
      a.sendBytes(msg, 26, 0);
      assert.deepEqual(await b.recvBytes(), latin(''));
      assert.throws(() => a.sendBytes(msg, 27), mp.ValueError);
      assert.throws(() => a.sendBytes(msg, 22, 5), mp.ValueError);
      assert.throws(() => a.sendBytes(msg, 26, 1), mp.ValueError);
      assert.throws(() => a.sendBytes(msg, -1), mp.ValueError);
      assert.throws(() => a.sendBytes(msg, 4, -1), mp.ValueError);
    } finally {
      a.close();
      b.close();
    }
  });

  const noSendHandle = 'n/a: the API has no reduction.send_handle/recv_handle (descriptor passing is internal to the forkserver)';
  it('test_fd_transfer', { skip: noSendHandle }, () => {});
  it('test_large_fd_transfer', { skip: noSendHandle }, () => {});
  it('test_missing_fd_transfer', { skip: noSendHandle }, () => {});

  it('test_context', async () => {
    const [a, b] = f.ctx.Pipe();
    {
      using _a = a;
      using _b = b;
      a.send(1729);
      assert.equal(await b.recv(), 1729);
      assert.equal(a.closed, false);
      assert.equal(b.closed, false);
    }
    assert.equal(a.closed, true);
    assert.equal(b.closed, true);
    await assert.rejects(a.recv(), mp.OSError);
    await assert.rejects(b.recv(), mp.OSError);
  });
});
