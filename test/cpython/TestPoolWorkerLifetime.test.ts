// CPython's _TestPoolWorkerLifetime (ALLOWED_TYPES: processes): maxtasksperchild replaces workers,
// a closed pool still finishes its work with them, and a pool left running lets its program exit.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { cpythonClass } from './harness.js';
import { runProgram } from '../helpers.js';
import { sqr, sqrAndWorker } from './fixtures/pool.js';

cpythonClass('_TestPoolWorkerLifetime', ['processes'], (f) => {
  it('test_pool_worker_lifetime', async () => {
    const p = f.ctx.Pool(3, { maxtasksperchild: 10 });
    try {
      assert.equal(p.stats().workers, 3);
      // Many tasks, so that each worker is replaced.
      const results = Array.from({ length: 100 }, (_, i) => p.applyAsync(sqrAndWorker, [i]));
      const served = new Map<string, number>();
      for (const [j, res] of results.entries()) {
        const [value, worker] = await res.get();
        assert.equal(value, j * j);
        served.set(worker, (served.get(worker) ?? 0) + 1);
      }
      // CPython compares the workers' pids before and after: ours counts who served the tasks.
      assert.ok([...served.values()].every((n) => n <= 10), 'no worker ran more than maxtasksperchild tasks');
      assert.ok(served.size >= 10, `100 tasks, at most 10 each: at least 10 workers (saw ${served.size})`);
      assert.ok(p.stats().workersReplaced >= 7, 'the exited workers were replaced');
      assert.equal(p.stats().workers, 3, 'the pool is refilled to its size');
      p.close();
      await p.join();
    } finally {
      p.terminate();
    }
  });

  it('test_pool_worker_lifetime_early_close', async () => {
    // Issue #10332: closing a pool whose workers have limited lifetimes before all the tasks are
    // done must not make join() hang.
    const p = f.ctx.Pool(3, { maxtasksperchild: 1 });
    try {
      const results = Array.from({ length: 6 }, (_, i) => p.applyAsync(sqr, [i, 0.3]));
      p.close();
      await p.join();
      for (const [j, res] of results.entries()) assert.equal(await res.get(0), j * j);
    } finally {
      p.terminate();
    }
  });

  it('test_pool_maxtasksperchild_invalid', () => {
    for (const value of [0, -1, 0.5, '12']) {
      assert.throws(() => f.ctx.Pool(3, { maxtasksperchild: value as number }), mp.ValueError, String(value));
    }
  });

  it('test_worker_finalization_via_atexit_handler_of_multiprocessing', async () => {
    const program = new URL('./fixtures/poolLeftRunning.ts', import.meta.url);
    const { code, stderr } = await runProgram(program, [f.method], 60_000);
    assert.equal(code, 0, stderr);
  });
});
