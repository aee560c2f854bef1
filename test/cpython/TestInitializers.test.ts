// CPython's TestInitializers (a plain TestCase, run in each start method's suite): a manager's and a
// pool's initializer runs in the server and in the worker, and a non-callable one is a TypeError.
import { after, before, beforeEach, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { SyncManager, type NamespaceProxy } from '../../src/managers.js';
import { plainClass } from './harness.js';
import { initializer } from './fixtures/pool.js';

plainClass('TestInitializers', mp.getAllStartMethods(), (ctx) => {
  // CPython makes a manager per test for its Namespace; one per class, reset per test, checks the same.
  let mgr: SyncManager;
  let ns: NamespaceProxy<{ test: number }>;
  before(async () => {
    mgr = await ctx.Manager();
    ns = await mgr.Namespace<{ test: number }>();
  });
  beforeEach(async () => {
    await ns.set('test', 0);
  });
  after(async () => {
    await mgr.shutdown();
    await mgr.join();
  });

  it('test_manager_initializer', async () => {
    const m = new SyncManager({ ctx });
    await assert.rejects(m.start(1 as never), TypeError);
    await m.start(initializer, [ns]);
    try {
      assert.equal(await ns.get('test'), 1);
    } finally {
      await m.shutdown();
      await m.join();
    }
  });

  it('test_pool_initializer', async () => {
    assert.throws(() => ctx.Pool({ initializer: 1 as never }), TypeError);
    const p = ctx.Pool(1, { initializer, initargs: [ns] });
    p.close();
    await p.join();
    assert.equal(await ns.get('test'), 1);
  });
});
