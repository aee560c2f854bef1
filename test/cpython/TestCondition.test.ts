// CPython's _TestCondition (ALLOWED_TYPES: processes, manager, threads). CPython's waiters are
// child processes and threads of the test process: ours are child processes and async tasks of
// the test's thread (JavaScript's concurrency inside one thread). Async tasks of one thread share
// an RLock's ownership (docs/synchronization.md, docs/managers.md), so the tests with such waiters
// give the Condition a Lock where CPython takes the default RLock.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { CLOCK_RES, cpythonClass, eventually, reap, type Flavour } from './harness.js';
import {
  condWaiter, notifyThenInterrupt, readInt, waitForFour, waitForFourTimesOut, writeInt, type Acquirer, type CondLike,
  type SharedInt,
} from './fixtures/synchronize.js';

const TIMEOUT1 = 0.1;

/** CPython's get_value: a manager's proxy has none (NotImplementedError there: not checked). */
function valueOf(sem: object): number | undefined {
  const getValue = (sem as { getValue?: () => number }).getValue;
  return typeof getValue === 'function' ? getValue.call(sem) : undefined;
}

/** CPython's assertReachesEventually(lambda: get_value(sem), value). */
async function reachesEventually(sem: object, value: number): Promise<void> {
  if (valueOf(sem) === undefined) return;
  await eventually(() => valueOf(sem) === value, 30, `the semaphore reaching ${value}`);
}

/** CPython's `self.Value('i', x)`: the context's Value, or the manager's. */
async function sharedInt(f: Flavour, value: number): Promise<SharedInt> {
  return f.manager ? f.manager.Value<number>('i', value) : f.ctx.Value('i', value);
}

/** `times` times, 10 ms apart: `with cond: state.value += 1; cond.notify()`. */
async function increment(cond: CondLike, state: SharedInt, times: number): Promise<void> {
  for (let i = 0; i < times; i++) {
    await new Promise((r) => setTimeout(r, 10));
    await cond.acquire();
    try {
      await writeInt(state, (await readInt(state)) + 1);
      await cond.notify();
    } finally {
      await cond.release();
    }
  }
}

cpythonClass('_TestCondition', ['processes', 'manager', 'threads'], (f) => {
  const P = f.ctx.Process;
  const cond$ = async () => (await f.objects.Condition()) as unknown as CondLike;
  /** A Condition over a Lock, for waiters that include async tasks of this thread (see above). */
  const condOverLock$ = async () => (await f.objects.Condition(await f.objects.Lock())) as unknown as CondLike;
  const sem$ = async (value: number) => (await f.objects.Semaphore(value)) as unknown as Acquirer;

  /** Waiters on `cond`: `n` child processes and `n` async tasks of this thread (CPython's threads). */
  function startWaiters(n: number, args: [CondLike, Acquirer, Acquirer, number?]) {
    const procs: mp.Process[] = [];
    const tasks: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const p = new P({ target: condWaiter, args, daemon: true });
      p.start();
      procs.push(p);
      tasks.push(condWaiter(...args));
    }
    return { procs, tasks };
  }

  /** Joins the waiters (CPython's join_thread/join_process) and checks that none failed. */
  async function joinWaiters(w: { procs: mp.Process[]; tasks: Promise<void>[] }): Promise<void> {
    await Promise.all(w.tasks);
    for (const p of w.procs) {
      await p.join();
      assert.equal(p.exitcode, 0);
    }
  }

  it('test_notify', async () => {
    const cond = await condOverLock$();
    const sleeping = await sem$(0);
    const woken = await sem$(0);
    const w = startWaiters(1, [cond, sleeping, woken]);
    try {
      // Wait for both waiters to sleep.
      await sleeping.acquire();
      await sleeping.acquire();
      // None has woken.
      await reachesEventually(woken, 0);
      // Wake one.
      await cond.acquire();
      await cond.notify();
      await cond.release();
      await reachesEventually(woken, 1);
      // Wake the other.
      await cond.acquire();
      await cond.notify();
      await cond.release();
      await reachesEventually(woken, 2);
      await joinWaiters(w);
    } finally {
      await reap(...w.procs);
    }
  });

  it('test_notify_all', async () => {
    const cond = await condOverLock$();
    const sleeping = await sem$(0);
    const woken = await sem$(0);
    // Waiters that time out.
    const timing = startWaiters(3, [cond, sleeping, woken, TIMEOUT1]);
    let waiting: ReturnType<typeof startWaiters> | undefined;
    try {
      for (let i = 0; i < 6; i++) await sleeping.acquire();
      // They all time out.
      for (let i = 0; i < 6; i++) await woken.acquire();
      assert.equal(valueOf(woken) ?? 0, 0);

      // Waiters without a timeout.
      waiting = startWaiters(3, [cond, sleeping, woken]);
      for (let i = 0; i < 6; i++) await sleeping.acquire();
      // None has woken (CPython looks after sleeping DELTA: a lower bound for the same check).
      assert.equal(await woken.acquire({ timeout: 0.1 }), false);

      await cond.acquire();
      await cond.notifyAll();
      await cond.release();
      // They all wake.
      for (let i = 0; i < 6; i++) await woken.acquire();
      assert.equal(valueOf(woken) ?? 0, 0);
      await joinWaiters(timing);
      await joinWaiters(waiting);
    } finally {
      await reap(...timing.procs, ...(waiting?.procs ?? []));
    }
  });

  it('test_notify_n', async () => {
    const cond = await condOverLock$();
    const sleeping = await sem$(0);
    const woken = await sem$(0);
    const w = startWaiters(3, [cond, sleeping, woken]);
    try {
      for (let i = 0; i < 6; i++) await sleeping.acquire();
      // None has woken (CPython sleeps DELTA, then looks).
      assert.equal(await woken.acquire({ timeout: 0.1 }), false);

      await cond.acquire();
      await cond.notify(2);
      await cond.release();
      await reachesEventually(woken, 2);

      await cond.acquire();
      await cond.notify(4);
      await cond.release();
      await reachesEventually(woken, 6);

      // No one is left to wake.
      await cond.acquire();
      await cond.notify(3);
      await cond.release();
      if (valueOf(woken) !== undefined) assert.equal(valueOf(woken), 6);
      else for (let i = 0; i < 6; i++) await woken.acquire();
      await joinWaiters(w);
    } finally {
      await reap(...w.procs);
    }
  });

  it('test_timeout', async () => {
    const cond = await cond$();
    await cond.acquire();
    const start = performance.now();
    const res = await cond.wait(TIMEOUT1);
    const elapsed = (performance.now() - start) / 1000;
    await cond.release();
    assert.equal(res, false);
    assert.ok(elapsed >= TIMEOUT1 - CLOCK_RES);
  });

  it('test_waitfor', async () => {
    const cond = await cond$();
    const state = await sharedInt(f, -1);
    const p = new P({ target: waitForFour, args: [cond, state], daemon: true });
    try {
      p.start();
      await cond.acquire();
      try {
        const result = await cond.waitFor(async () => (await readInt(state)) === 0);
        assert.ok(result);
        assert.equal(await readInt(state), 0);
      } finally {
        await cond.release();
      }
      await increment(cond, state, 4);
      await p.join();
      assert.equal(p.exitcode, 0);
    } finally {
      await reap(p);
    }
  });

  it('test_waitfor_timeout', async () => {
    const cond = await cond$();
    const state = await sharedInt(f, 0);
    const success = await sharedInt(f, 0);
    const sem = await sem$(0);
    const p = new P({ target: waitForFourTimesOut, args: [cond, state, success, sem], daemon: true });
    try {
      p.start();
      assert.ok(await sem.acquire({ timeout: 300 }));
      // Only 3 increments: state never reaches 4.
      await increment(cond, state, 3);
      await p.join();
      assert.equal(await readInt(success), 1);
    } finally {
      await reap(p);
    }
  });

  it('test_wait_result', async () => {
    // CPython's child interrupts the parent's second wait with SIGINT (KeyboardInterrupt). Here a
    // SIGINT handler aborts that wait through its signal (API.md rule 6).
    const pid = f.type === 'processes' ? process.pid : null;
    const c = await cond$();
    const interrupted = new AbortController();
    const onSigint = () => interrupted.abort(new Error('KeyboardInterrupt'));
    process.on('SIGINT', onSigint);
    const p = new P({ target: notifyThenInterrupt, args: [c, pid] });
    try {
      await c.acquire();
      try {
        assert.equal(await c.wait(0), false);
        assert.equal(await c.wait(0.1), false);
        p.start();
        assert.equal(await c.wait(60), true);
        if (pid !== null) {
          await assert.rejects((c as unknown as mp.Condition).wait(60, { signal: interrupted.signal }), /KeyboardInterrupt/);
        }
      } finally {
        await c.release();
      }
      await p.join();
    } finally {
      process.off('SIGINT', onSigint);
      await reap(p);
    }
  });
});
