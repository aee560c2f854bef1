// CPython's TestIgnoreEINTR (a plain TestCase: run once per start method): a signal handled in the
// child while it is blocked in a receive, a send or an accept does not break that call. Signals go
// to processes: on the 'thread' start method the child is a thread of this process (n/a).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as mp from '../../src/index.js';
import { plainClass, reap } from './harness.js';
import { ignoreEintr, ignoreEintrListener } from './fixtures/connection.js';

// CPython: max(support.PIPE_MAX_SIZE, support.SOCK_MAX_SIZE), more than a socket buffer holds.
const CONN_MAX_SIZE = 16 * 1024 * 1024 + 1;

/** Resolves once the main thread of `pid` sleeps in the kernel (blocked in a system call):
 * CPython sleeps 0.1 s so that the signal lands in the blocking call. */
async function blocked(pid: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
    if (stat[stat.lastIndexOf(')') + 2] === 'S') return;
    if (Date.now() > deadline) throw new Error(`process ${pid} never blocked`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

plainClass('TestIgnoreEINTR', ['spawn', 'forkserver'], (ctx) => {
  it('test_ignore', async () => {
    const [conn, childConn] = ctx.Pipe();
    const p = new ctx.Process({ target: ignoreEintr, args: [childConn, CONN_MAX_SIZE], daemon: true });
    try {
      p.start();
      childConn.close();
      assert.equal(await conn.recv(), 'ready');
      await blocked(p.pid!); // in recvSync
      process.kill(p.pid!, 'SIGUSR1');
      conn.send(1234);
      assert.equal(await conn.recv(), 1234);
      await blocked(p.pid!); // in the send that waits for us to read
      process.kill(p.pid!, 'SIGUSR1');
      const got = await conn.recvBytes();
      assert.equal(got.length, CONN_MAX_SIZE);
      assert.ok(got.every((b) => b === 0x78));
      await p.join();
      assert.equal(p.exitcode, 0);
    } finally {
      conn.close();
      await reap(p);
    }
  });

  it('test_ignore_listener', async () => {
    const [conn, childConn] = ctx.Pipe();
    const p = new ctx.Process({ target: ignoreEintrListener, args: [childConn], daemon: true });
    try {
      p.start();
      childConn.close();
      const address = (await conn.recv()) as mp.connection.Address;
      await blocked(p.pid!); // waiting in accept
      process.kill(p.pid!, 'SIGUSR1');
      using client = await mp.Client(address);
      assert.equal(await client.recv(), 'welcome');
      await p.join();
      assert.equal(p.exitcode, 0);
    } finally {
      conn.close();
      await reap(p);
    }
  });
});
