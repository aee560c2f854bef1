// CPython's TestSyncManagerTypes (a plain TestCase, run in each start method's suite): every type a
// SyncManager makes is made here, used through its proxy by a child process, and seen here again.
// CPython starts a manager per test; one per start method serves every test here (each test makes
// its own objects), which keeps the suite short.
import { after, afterEach, before, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { SyncManager } from '../../src/managers.js';
import { plainClass } from './harness.js';
import {
  childArray, childBarrier, childCondition, childDict, childEvent, childList, childLock, childNamespace, childPool, childQueue,
  childRLock, childSemaphore, childSet, childValue,
} from './fixtures/managers.js';

plainClass('TestSyncManagerTypes', mp.getAllStartMethods(), (ctx) => {
  let manager: SyncManager;
  let proc: mp.Process | null = null;
  before(async () => {
    manager = new SyncManager({ ctx });
    await manager.start();
  });
  afterEach(async () => {
    if (proc?.isAlive()) {
      proc.terminate();
      await proc.join();
    }
    proc = null;
  });
  after(async () => {
    await manager.shutdown();
  });

  /** CPython's run_worker: the child gets the proxy, uses it, and exits 0. */
  async function runWorker<A>(worker: (obj: A) => Promise<void>, obj: A): Promise<void> {
    proc = new ctx.Process({ target: worker, args: [obj], daemon: true });
    proc.start();
    await proc.join(60);
    assert.equal(proc.exitcode, 0, `the child's assertions (exitcode ${proc.exitcode})`);
  }

  it('test_event', async () => {
    const o = await manager.Event();
    await o.set();
    await runWorker(childEvent, o);
    assert.equal(await o.isSet(), false);
    await o.wait(0.001);
  });

  it('test_lock', async () => {
    const o = await manager.Lock();
    await runWorker(childLock, o); // the child exits holding it
    await o.release();
    await assert.rejects(o.release(), mp.RuntimeError); // already released
  });

  it('test_rlock', async () => {
    const o = await manager.RLock();
    await runWorker(childRLock, o);
  });

  it('test_semaphore', async () => {
    const o = await manager.Semaphore();
    await runWorker(childSemaphore, o);
    await o.release();
  });

  it('test_bounded_semaphore', async () => {
    const o = await manager.BoundedSemaphore();
    await runWorker(childSemaphore, o);
    await o.release();
  });

  it('test_condition', async () => {
    const o = await manager.Condition();
    await runWorker(childCondition, o);
  });

  it('test_barrier', async () => {
    const o = await manager.Barrier(5);
    await runWorker(childBarrier, o);
  });

  it('test_pool', async () => {
    // CPython asks for 4 workers; their number does not matter to the check, and each costs a start.
    const o = await manager.Pool(1);
    await runWorker(childPool, o);
  });

  for (const qname of ['Queue', 'JoinableQueue'] as const) {
    it(qname === 'Queue' ? 'test_queue' : 'test_joinable_queue', async () => {
      const o = await manager[qname]<number>(2);
      await o.put(5);
      await o.put(6);
      await runWorker(childQueue, o);
      assert.equal(await o.empty(), true);
      assert.equal(await o.full(), false);
    });
  }

  it('test_list', async () => {
    const o = await manager.list<number>();
    await o.append(5);
    await runWorker(childList, o);
    assert.equal(await o.len(), 0);
  });

  it('test_dict', async () => {
    const o = await manager.dict<string, number>();
    await o.setItem('foo', 5);
    await runWorker(childDict, o);
    assert.equal(await o.len(), 0);
  });

  it('test_value', async () => {
    const o = await manager.Value('i', 1);
    await runWorker(childValue, o);
    assert.equal(await o.value, 2);
    assert.equal(await o.get(), 2);
  });

  it('test_array', async () => {
    const o = await manager.Array('i', [0, 1]);
    await runWorker(childArray, o);
  });

  it('test_namespace', async () => {
    const o = await manager.Namespace<{ x: number; y: number }>();
    await o.set('x', 0);
    await o.set('y', 1);
    await runWorker(childNamespace, o);
  });

  // Python 3.14's SetProxy tests. Ours has no operators: `|`, `-`, `^`, `&` and their in-place
  // forms are the methods union, difference, ... and their *Update forms, which the child uses.
  it('test_set', async () => {
    await runWorker(childSet, await manager.set<string>());
  });

  it('test_set_init', async () => {
    const contents = async (o: Awaited<ReturnType<SyncManager['set']>>) => new Set(await o.copy());
    assert.deepEqual(await contents(await manager.set(new Set(['a', 'b', 'c']))), new Set(['a', 'b', 'c']));
    assert.deepEqual(await contents(await manager.set(['a', 'b', 'c'])), new Set(['a', 'b', 'c']));
    // CPython also makes one from a dict's keys: iterating a Map gives its entries in JavaScript.
    await assert.rejects(async () => manager.set(1234 as never), TypeError);
  });

  it('test_set_contain_all_method', async () => {
    const o = await manager.set();
    const methods = [
      'has', 'len', 'add', 'clear', 'copy', 'difference', 'differenceUpdate', 'discard', 'intersection', 'intersectionUpdate',
      'isdisjoint', 'issubset', 'issuperset', 'pop', 'remove', 'symmetricDifference', 'symmetricDifferenceUpdate', 'union', 'update',
    ];
    for (const name of methods) assert.equal(typeof (o as unknown as Record<string, unknown>)[name], 'function', name);
  });
});
