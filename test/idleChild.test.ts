// A child ends once its target has returned, its exit finalizers have run and its event loop has
// drained (docs/process.md). Each test leaves one kind of the library's objects open and idle in a
// child and checks that the child still ends: such an object is Python's daemon thread, or its
// proxy's connection, neither of which keeps a child alive.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import type { DictProxy } from '../src/managers.js';
import {
  leaveBusyPools, leaveFeederWaiting, startDaemon, timeOutWaits, useListener, useOwnManagers, useProxy, usePools,
} from './fixtures/process/idle.js';
import { initializer } from './cpython/fixtures/pool.js';
import { square } from './fixtures/tasks.js';
import { startMethods } from './helpers.js';
import { sleepForever } from './fixtures/process/behaviours.js';

/** Long enough for a loaded machine to start a child and run its target. */
const ENDS_WITHIN = 60;

for (const method of startMethods) {
  describe(`a child on '${method}' ends with idle library objects`, () => {
    const ctx = mp.getContext(method);
    const started: mp.Process[] = [];
    let manager: mp.SyncManager | null = null;
    after(async () => {
      const running = started.filter((p) => p.exitcode === null);
      for (const p of running) p.kill();
      await Promise.all(running.map((p) => p.join(10)));
      if (manager) {
        await manager.shutdown();
        await manager.join();
      }
    });

    /** Runs `target` in a child and checks that the child ends by itself, with exit code 0. */
    async function endsByItself<A extends unknown[]>(target: (...args: A) => unknown, args: A, what: string): Promise<void> {
      const p = new ctx.Process({ target, args });
      started.push(p);
      p.start();
      await p.join(ENDS_WITHIN);
      assert.equal(p.exitcode, 0, `a child that leaves ${what} did not end within ${ENDS_WITHIN} s`);
    }

    for (const lane of [true, false]) {
      it(`a manager proxy it called ${lane ? 'over the shared-memory lane' : 'over the socket'} (its idle sessions hold nothing)`, async () => {
        manager ??= await ctx.Manager();
        const d: DictProxy<string, number> = await manager.dict();
        await endsByItself(useProxy, [d, lane], 'an idle manager proxy');
        assert.equal(await d.get('seen'), 2);
      });
    }

    it('a manager and a SharedMemoryManager of its own, left running', async () => {
      await endsByItself(useOwnManagers, [], 'its own managers running');
    });

    it('a Listener, an accepted connection and its client, and an aborted accept()', async () => {
      await endsByItself(useListener, [], 'an open Listener and connections');
    });

    it('waits that timed out or were aborted (a Lock, a Connection, wait(), a Queue, a Condition, a Semaphore, a Barrier, an Event)', async () => {
      const lock = ctx.Lock();
      await lock.acquire();
      const [mine, given] = ctx.Pipe();
      try {
        await endsByItself(timeOutWaits, [lock, given], 'waits that have ended');
      } finally {
        lock.release();
        mine.close();
        given.close();
      }
    });

    it('a process pool and a thread pool left open, and a pool closed and joined', async () => {
      await endsByItself(usePools, [], 'open pools');
    });

    it('a process pool and a thread pool each running a task that never ends (terminated at exit, as Python does)', async () => {
      await endsByItself(leaveBusyPools, [], 'busy pools');
    });

    it('a daemon child still running (terminated at exit, as Python does)', async () => {
      await endsByItself(startDaemon, [], 'a running daemon child');
    });

    for (const cancelFirst of [true, false]) {
      it(`a queue feeder waiting for a reader after cancelJoinThread() (called ${cancelFirst ? 'before the put' : 'while the feeder waits'})`, async () => {
        const q = ctx.Queue<string>();
        await endsByItself(leaveFeederWaiting, [q, cancelFirst], 'a feeder after cancelJoinThread()');
        q.close();
      });
    }

    it('a manager\'s server ends at shutdown while clients hold idle sessions and calls that wait, and its pool works for ever', async () => {
      // shutdownTimeout: how long shutdown() lets the server end by itself before terminating it
      // (Python's 1 s; a loaded machine may need longer to end a server and its busy pool).
      const m = new mp.SyncManager({ ctx, shutdownTimeout: ENDS_WITHIN });
      await m.start();
      const d = await m.dict<string, number>();
      await d.setItem('k', 1);
      const q = await m.Queue<number>();
      const lock = await m.Lock();
      await lock.acquire();
      const waiting = [q.get().catch((e: unknown) => e), lock.acquire().catch((e: unknown) => e)];
      const pool = await m.Pool(1);
      await pool.applyAsync(sleepForever);
      await m.shutdown();
      assert.equal(m._process?.exitcode, 0, 'the server ended by itself (shutdown() terminates it only after shutdownTimeout)');
      for (const outcome of await Promise.all(waiting)) assert.ok(outcome instanceof Error, 'a waiting call fails when the server shuts down');
    });

    it('a pool\'s workers end once the pool is closed (a thread worker\'s task port holds nothing idle)', async () => {
      const ns = await (manager ??= await ctx.Manager()).Namespace<{ test: number }>();
      await ns.set('test', 0);
      const pool = ctx.Pool(2, { initializer, initargs: [ns] });
      try {
        assert.deepEqual(await pool.map(square, [1, 2, 3]), [1, 4, 9]);
        pool.close();
        let timer: NodeJS.Timeout | undefined;
        const joined = await Promise.race([
          pool.join().then(() => true),
          new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ENDS_WITHIN * 1000, false))),
        ]);
        clearTimeout(timer);
        assert.equal(joined, true, `the workers of a closed pool did not end within ${ENDS_WITHIN} s`);
      } finally {
        pool.terminate();
      }
    });
  });
}
