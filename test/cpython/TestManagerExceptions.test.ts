// CPython's TestManagerExceptions (a plain TestCase; issue 106558): an exception re-raised from a
// manager is not kept alive by the manager machinery.
import { afterEach, beforeEach, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import type { SyncManager } from '../../src/managers.js';
import { plainClass, forceGc } from './harness.js';

plainClass('TestManagerExceptions', mp.getAllStartMethods(), (ctx) => {
  let mgr: SyncManager;
  beforeEach(async () => {
    mgr = await ctx.Manager();
  });
  afterEach(async () => {
    await mgr.shutdown();
    await mgr.join();
  });

  it('test_queue_get', async () => {
    // CPython checks that no reference cycle keeps the Empty alive with the gc disabled; a
    // JavaScript collector frees cycles, so what can still go wrong is a reference held by the
    // connection or proxy: once the caller drops it, the error must be collectable.
    const queue = await mgr.Queue();
    let wr: WeakRef<Error> | null = null;
    await queue.getNowait().catch((e: Error) => {
      assert.ok(e instanceof mp.Empty);
      wr = new WeakRef(e);
    });
    assert.ok(wr);
    await forceGc();
    assert.equal((wr as WeakRef<Error>).deref(), undefined);
  });

  it('test_dispatch', { skip: "n/a: calls multiprocessing.managers.dispatch() (module-internal) with a fake connection; ours has no such function (test_queue_get covers a referent's error)" }, () => {});
});
