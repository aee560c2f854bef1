// CPython's _TestBarrier (ALLOWED_TYPES: processes, manager, threads), adapted by CPython from
// test/lock_tests.py. CPython's run_threads runs the function in N-1 children and in the test
// itself; so does this port (the test's part is an async call on its thread).
import { afterEach, beforeEach, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import * as mp from '../../src/index.js';
import { cpythonClass, reap, type Flavour } from './harness.js';
import {
  N, abortOnce, abortThenReset, bunchTask, actionFile, appendTrue, lateParty, latePartyDefaultTimeout, len, multipass, putWaitIndex,
  resetOnce, thousandPasses, waitThenCheckAction, type Acquirer, type BarrierLike, type DummyList,
} from './fixtures/synchronize.js';

const defaultTimeout = 30;

/** CPython's DummyList: a shared counter (a manager's list for the manager flavour). */
async function dummyList(f: Flavour): Promise<DummyList> {
  return f.manager ? f.manager.list<boolean>() : f.ctx.Value('i', 0);
}

cpythonClass('_TestBarrier', ['processes', 'manager', 'threads'], (f) => {
  let barrier: BarrierLike;
  const barrier$ = async (parties: number, action?: () => void, timeout?: number) =>
    (await f.objects.Barrier(parties, action, timeout)) as unknown as BarrierLike;

  beforeEach(async () => {
    barrier = await barrier$(N, undefined, defaultTimeout);
  });
  afterEach(async () => {
    await barrier.abort();
  });

  /**
   * CPython's run_threads: `fn(...args)` in N-1 children and here; every part must succeed. This
   * part starts once the children have (CPython's Bunch records when they start): the barriers'
   * timeouts are for the parties, not for starting processes on a loaded machine.
   */
  async function runThreads<A extends unknown[]>(fn: (...args: A) => Promise<void>, args: A): Promise<void> {
    const started = (await f.objects.Semaphore(0)) as unknown as Acquirer;
    const procs = Array.from({ length: N - 1 }, () => new f.ctx.Process({ target: bunchTask, args: [started, fn as never, args], daemon: true }));
    try {
      for (const p of procs) p.start();
      for (const p of procs) assert.ok(await started.acquire({ timeout: 300 }), `${p.name} did not start`);
      await fn(...args);
      for (const p of procs) {
        await p.join();
        assert.equal(p.exitcode, 0, `${p.name} failed`);
      }
    } finally {
      await reap(...procs);
    }
  }

  async function testBarrier(passes: number): Promise<void> {
    const results: [DummyList, DummyList] = [await dummyList(f), await dummyList(f)];
    await runThreads(multipass, [barrier, results, passes]);
  }

  it('test_barrier', async () => {
    // The parties pass the barrier in lockstep.
    await testBarrier(1);
  });

  it('test_barrier_10', async () => {
    await testBarrier(10);
  });

  it('test_wait_return', async () => {
    const queue = await f.objects.Queue<number>();
    await runThreads(putWaitIndex, [barrier, queue]);
    const results: number[] = [];
    for (let i = 0; i < N; i++) results.push(await queue.get({ timeout: 60 }));
    assert.equal(results.filter((r) => r === 0).length, 1);
  });

  it('test_action', async () => {
    // CPython's action appends to a shared list; ours travels as a function of no arguments, so
    // it appends to a file every party can name (see fixtures/synchronize.ts).
    rmSync(actionFile(), { force: true });
    try {
      const withAction = await barrier$(N, appendTrue);
      await runThreads(waitThenCheckAction, [withAction]);
    } finally {
      rmSync(actionFile(), { force: true });
    }
  });

  it('test_abort', async () => {
    const results1 = await dummyList(f);
    const results2 = await dummyList(f);
    await runThreads(abortOnce, [barrier, results1, results2]);
    assert.equal(await len(results1), 0);
    assert.equal(await len(results2), N - 1);
    assert.equal(await barrier.broken, true);
  });

  it('test_reset', async () => {
    const results = [await dummyList(f), await dummyList(f), await dummyList(f)] as const;
    await runThreads(resetOnce, [barrier, ...results]);
    assert.equal(await len(results[0]), 0);
    assert.equal(await len(results[1]), N - 1);
    assert.equal(await len(results[2]), N);
  });

  it('test_abort_and_reset', async () => {
    const results = [await dummyList(f), await dummyList(f), await dummyList(f)] as const;
    const barrier2 = await barrier$(N);
    await runThreads(abortThenReset, [barrier, barrier2, ...results]);
    assert.equal(await len(results[0]), 0);
    assert.equal(await len(results[1]), N - 1);
    assert.equal(await len(results[2]), N);
  });

  it('test_timeout', async () => {
    const results = await dummyList(f);
    await runThreads(lateParty, [barrier, results]);
    assert.equal(await len(results), await barrier.parties);
  });

  it('test_default_timeout', async () => {
    const withTimeout = await barrier$(N, undefined, 0.5);
    const results = await dummyList(f);
    await runThreads(latePartyDefaultTimeout, [withTimeout, results]);
    assert.equal(await len(results), await withTimeout.parties);
  });

  it('test_single_thread', async () => {
    const b = await barrier$(1);
    await b.wait();
    await b.wait();
  });

  it('test_thousand', {
    skip: f.type === 'manager' && 'not for manager (as in CPython)',
  }, async () => {
    const passes = 1000;
    const lock = await f.objects.Lock();
    const [conn, childConn] = f.ctx.Pipe(false);
    const procs: mp.Process[] = [];
    try {
      for (let j = 0; j < N; j++) {
        const p = new f.ctx.Process({ target: thousandPasses, args: [barrier, passes, childConn, lock] });
        p.start();
        procs.push(p);
      }
      for (let i = 0; i < passes; i++) {
        for (let j = 0; j < N; j++) assert.equal(await conn.recv(), i);
      }
      for (const p of procs) await p.join();
    } finally {
      conn.close();
      childConn.close();
      await reap(...procs);
    }
  });
});
