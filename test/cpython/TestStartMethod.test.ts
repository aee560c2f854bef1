// CPython's TestStartMethod (a plain TestCase). CPython's methods are fork, spawn and forkserver;
// ours are spawn, forkserver and thread, and fork throws NotAvailableError (API.md).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { runProgram } from '../helpers.js';
import { reap, runToEnd } from './harness.js';
import { closeQueue, putTwoAndNest, sendStartMethod } from './fixtures/process.js';

/** CPython's check_context: a child of `ctx` reports the same start method. */
async function checkContext(ctx: mp.BaseContext): Promise<void> {
  const [r, w] = ctx.Pipe(false);
  const p = new ctx.Process({ target: sendStartMethod, args: [w] });
  try {
    p.start();
    w.close();
    const childMethod = await r.recv();
    r.close();
    await p.join();
    assert.equal(childMethod, ctx.getStartMethod());
  } finally {
    await reap(p);
  }
}

describe('TestStartMethod', () => {
  it('test_context', async () => {
    for (const method of ['fork', 'spawn', 'forkserver', 'thread']) {
      let ctx: mp.BaseContext;
      try {
        ctx = mp.getContext(method);
      } catch (error) {
        // CPython skips a method the platform lacks (ValueError); ours names the alternatives.
        assert.ok(error instanceof mp.NotAvailableError);
        continue;
      }
      assert.equal(ctx.getStartMethod(), method);
      assert.equal(ctx.getContext(), ctx);
      assert.throws(() => ctx.setStartMethod('spawn'), mp.ValueError);
      assert.throws(() => ctx.setStartMethod(null), mp.ValueError);
      await checkContext(ctx);
    }
  });

  it('test_context_check_module_types', () => {
    const ctx = mp.getContext('forkserver');
    assert.throws(() => ctx.setForkserverPreload([1, 2, 3] as never), (e: Error) => e instanceof TypeError && /module_names must be a list of strings/.test(e.message));
  });

  it('test_set_get', async () => {
    let count = 0;
    const oldMethod = mp.getStartMethod();
    try {
      for (const method of ['fork', 'spawn', 'forkserver', 'thread']) {
        try {
          mp.setStartMethod(method, { force: true });
        } catch (error) {
          assert.ok(error instanceof mp.NotAvailableError);
          continue;
        }
        assert.equal(mp.getStartMethod(), method);
        const ctx = mp.getContext();
        assert.equal(ctx.getStartMethod(), method);
        assert.ok(ctx.constructor.name.toLowerCase().startsWith(method), ctx.constructor.name);
        assert.ok(ctx.Process.name.toLowerCase().startsWith(method), ctx.Process.name);
        await checkContext(mp.getContext());
        count += 1;
      }
    } finally {
      mp.setStartMethod(oldMethod, { force: true });
    }
    assert.ok(count >= 1);
  });

  it('test_get_all', () => {
    // Renamed test_get_all_start_methods in 3.14. The default comes first; CPython's POSIX list
    // has fork, which Node cannot provide; ours adds thread.
    const methods = mp.getAllStartMethods();
    assert.ok(methods.includes('spawn'));
    assert.equal(methods[0], 'spawn');
    for (const other of methods.filter((m) => m !== 'spawn')) assert.ok(['forkserver', 'thread'].includes(other), other);
  });

  it('test_preload_resources', async () => {
    const { stdout, stderr } = await runProgram(new URL('./fixtures/preload.ts', import.meta.url), [], 120_000);
    assert.equal(stdout.trimEnd(), 'ok', `failed spawning forkserver or grandchild: ${stderr}`);
    assert.equal(stderr, '');
  });

  it('test_mixed_startmethod', async () => {
    // CPython: a queue of the fork context cannot go to a spawn or forkserver process ('A SemLock
    // created in a fork context is being shared with a process in a spawn context'). Ours: objects
    // of the thread context live in memory a spawn or forkserver process cannot reach (ValueError).
    for (const processMethod of ['spawn', 'forkserver']) {
      const queue = mp.getContext('thread').Queue();
      const p = new (mp.getContext(processMethod).Process)({ target: closeQueue, args: [queue] });
      assert.throws(() => p.start(), mp.ValueError);
    }
    // Queues of the process contexts work with processes of either.
    for (const queueMethod of ['spawn', 'forkserver']) {
      for (const processMethod of ['spawn', 'forkserver']) {
        const queue = mp.getContext(queueMethod).Queue();
        assert.equal(await runToEnd(new (mp.getContext(processMethod).Process)({ target: closeQueue, args: [queue] })), 0);
      }
      // CPython's queues also work in every other start method's processes; here a thread
      // process is refused one (objects from one context work in processes of that context).
      const p = new (mp.getContext('thread').Process)({ target: closeQueue, args: [mp.getContext(queueMethod).Queue()] });
      assert.throws(() => p.start(), mp.ValueError);
    }
  });

  for (const method of mp.getAllStartMethods()) {
    it(`test_nested_startmethod [${method}]`, async () => {
      // gh-108520: a child passes its own argument on to its child.
      const ctx = mp.getContext(method);
      const queue = ctx.Queue();
      assert.equal(await runToEnd(new ctx.Process({ target: putTwoAndNest, args: [queue] })), 0);
      const results = new Set<unknown>();
      while (!queue.empty()) results.add(await queue.get());
      // gh-109706: either item may come first.
      assert.deepEqual(results, new Set([2, 1]));
    });
  }
});
