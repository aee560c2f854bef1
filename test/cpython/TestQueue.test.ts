// CPython's _TestQueue (ALLOWED_TYPES: processes, manager, threads). A manager's queue proxy
// answers every call with a Promise: the port awaits every call, which suits both.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { CLOCK_RES, cpythonClass, eventually, reap } from './harness.js';
import { getSix, markDone, putTenToNineteen, putTwoToFive } from './fixtures/queues.js';

const TIMEOUT1 = 0.1;
const TIMEOUT2 = 0.1;
const TIMEOUT3 = 0.1;

/** CPython's close_queue: a local queue is closed and its feeder joined (a proxy has neither). */
async function closeQueue(q: unknown): Promise<void> {
  if (q instanceof mp.Queue) {
    q.close();
    await q.joinThread();
  }
}

/** Rejects with `error` at once: well under `timeout` (Python's assertTimingAlmostEqual(elapsed, 0)). */
async function rejectsAtOnce(fn: () => unknown, error: new (...args: never[]) => Error): Promise<void> {
  const start = performance.now();
  await assert.rejects(async () => fn(), error);
  assert.ok(performance.now() - start < 1000, 'a call that must not wait took a second');
}

/** Rejects with `error` after waiting `timeout` (lower bound only, as CPython's CLOCK_RES allows). */
async function rejectsAfter(timeout: number, fn: () => unknown, error: new (...args: never[]) => Error): Promise<void> {
  const start = performance.now();
  await assert.rejects(async () => fn(), error);
  assert.ok((performance.now() - start) / 1000 >= timeout - CLOCK_RES, 'returned before its timeout');
}

cpythonClass('_TestQueue', ['processes', 'manager', 'threads'], (f) => {
  const P = f.ctx.Process;

  it('test_put', async () => {
    const MAXSIZE = 6;
    const queue = await f.objects.Queue(MAXSIZE);
    const childCanStart = await f.objects.Event();
    const parentCanContinue = await f.objects.Event();
    const proc = new P({ target: getSix, args: [queue, childCanStart, parentCanContinue], daemon: true });
    try {
      proc.start();
      assert.equal(await queue.empty(), true);
      assert.equal(await queue.full(), false);

      await queue.put(1);
      await queue.put(2, { block: true });
      await queue.put(3, { block: true, timeout: null });
      await queue.put(4, { block: false });
      await queue.put(5, { block: false, timeout: null });
      await queue.putNowait(6);

      // The items may be buffered, not yet in the queue: CPython sleeps DELTA, we wait for them.
      await eventually(async () => !(await queue.empty()), 30, 'the items reaching the queue');
      assert.equal(await queue.full(), true);

      await rejectsAtOnce(() => queue.put(7, { block: false }), mp.Full);
      await rejectsAtOnce(() => queue.put(7, { block: false, timeout: null }), mp.Full);
      await rejectsAtOnce(() => queue.putNowait(7), mp.Full);
      await rejectsAfter(TIMEOUT1, () => queue.put(7, { block: true, timeout: TIMEOUT1 }), mp.Full);
      await rejectsAtOnce(() => queue.put(7, { block: false, timeout: TIMEOUT2 }), mp.Full);
      await rejectsAfter(TIMEOUT3, () => queue.put(7, { timeout: TIMEOUT3 }), mp.Full);

      await childCanStart.set();
      await parentCanContinue.wait();

      assert.equal(await queue.empty(), true);
      assert.equal(await queue.full(), false);

      await proc.join();
      await closeQueue(queue);
    } finally {
      await reap(proc);
    }
  });

  it('test_get', async () => {
    const queue = await f.objects.Queue();
    const childCanStart = await f.objects.Event();
    const parentCanContinue = await f.objects.Event();
    const proc = new P({ target: putTwoToFive, args: [queue, childCanStart, parentCanContinue], daemon: true });
    try {
      proc.start();
      assert.equal(await queue.empty(), true);

      await childCanStart.set();
      await parentCanContinue.wait();
      // CPython sleeps DELTA for the child's feeder; the child ends only once it has written them.
      await proc.join();
      assert.equal(await queue.empty(), false);

      assert.equal(await queue.get({ block: true, timeout: null }), 2);
      assert.equal(await queue.get({ block: true }), 3);
      assert.equal(await queue.get({ timeout: 1 }), 4);
      assert.equal(await queue.getNowait(), 5);

      assert.equal(await queue.empty(), true);

      await rejectsAtOnce(() => queue.get({ block: false }), mp.Empty);
      await rejectsAtOnce(() => queue.get({ block: false, timeout: null }), mp.Empty);
      await rejectsAtOnce(() => queue.getNowait(), mp.Empty);
      await rejectsAfter(TIMEOUT1, () => queue.get({ block: true, timeout: TIMEOUT1 }), mp.Empty);
      await rejectsAtOnce(() => queue.get({ block: false, timeout: TIMEOUT2 }), mp.Empty);
      await rejectsAfter(TIMEOUT3, () => queue.get({ timeout: TIMEOUT3 }), mp.Empty);

      await closeQueue(queue);
    } finally {
      await reap(proc);
    }
  });

  it('test_fork', async () => {
    // Old versions failed to start a feeder in a child whose parent had one running.
    const queue = await f.objects.Queue();
    for (let i = 0; i < 10; i++) await queue.put(i);
    const p = new P({ target: putTenToNineteen, args: [queue], daemon: true });
    try {
      p.start();
      for (let i = 0; i < 20; i++) assert.equal(await queue.get({ timeout: 60 }), i);
      await assert.rejects(async () => queue.get({ block: false }), mp.Empty);
      await p.join();
      await closeQueue(queue);
    } finally {
      await reap(p);
    }
  });

  it('test_qsize', async () => {
    const q = await f.objects.Queue();
    assert.equal(await q.qsize(), 0);
    await q.put(1);
    assert.equal(await q.qsize(), 1);
    await q.put(5);
    assert.equal(await q.qsize(), 2);
    await q.get();
    assert.equal(await q.qsize(), 1);
    await q.get();
    assert.equal(await q.qsize(), 0);
    await closeQueue(q);
  });

  it('test_task_done', async () => {
    const queue = await f.objects.JoinableQueue();
    const workers = Array.from({ length: 4 }, () => new P({ target: markDone, args: [queue], daemon: true }));
    try {
      for (const p of workers) p.start();
      for (let i = 0; i < 10; i++) await queue.put(i);
      await queue.join();
      for (let i = 0; i < workers.length; i++) await queue.put(null);
      for (const p of workers) await p.join();
      await closeQueue(queue);
    } finally {
      await reap(...workers);
    }
  });

  it('test_no_import_lock_contention', async () => {
    // A module that uses a queue while it is imported (top-level await); the query string makes
    // each flavour import it afresh.
    const module = new URL(`./fixtures/queueAtImport.ts?${encodeURIComponent(f.type + f.method)}`, import.meta.url).href;
    const { done } = (await import(module)) as { done: boolean };
    assert.equal(done, true);
  });

  it('test_timeout', async () => {
    const q = new mp.Queue();
    const start = performance.now();
    await assert.rejects(q.get({ block: true, timeout: 0.2 }), mp.Empty);
    // bpo-30317: tolerate CLOCK_RES.
    assert.ok((performance.now() - start) / 1000 >= 0.2 - CLOCK_RES);
    await closeQueue(q);
  });

  it('test_queue_feeder_donot_stop_onexc', { skip: f.type !== 'processes' && 'processes only' }, async () => {
    // bpo-30414: an item that cannot be serialised does not stop the queue. Here it is serialised
    // by put() itself, so the caller gets the PicklingError, and nothing of it is queued.
    const notSerializable = { callback: () => 1 };
    let q = new f.ctx.Queue();
    await assert.rejects(q.put(notSerializable), mp.PicklingError);
    await q.put(true);
    assert.equal(await q.get({ timeout: 60 }), true);
    await closeQueue(q);

    // bpo-33078: the queue's size is right after such an error.
    q = new f.ctx.Queue(1);
    await assert.rejects(q.put(notSerializable), mp.PicklingError);
    await q.put(true);
    assert.equal(q.qsize(), 1);
    assert.equal(await q.get({ timeout: 60 }), true);
    assert.equal(q.empty(), true);
    await closeQueue(q);
  });

  it('test_queue_feeder_on_queue_feeder_error', {
    skip: 'n/a: put() serialises the item itself, so the error reaches its caller; there is no feeder error hook (_on_queue_feeder_error) to override',
  }, () => {});

  it('test_closed_queue_empty_exceptions', async () => {
    // close() and joinThread() on an unused queue change nothing that empty() sees.
    for (const q of [new mp.Queue(), new mp.JoinableQueue()]) {
      q.close();
      await q.joinThread();
      assert.equal(q.empty(), true);
    }
    // On a used one, close() shuts this process's reading end: empty() raises.
    for (const q of [new mp.Queue(), new mp.JoinableQueue()]) {
      await q.put('foo');
      q.close();
      await q.joinThread();
      assert.throws(() => q.empty(), (e: Error) => e instanceof mp.OSError && /is closed/.test(e.message));
    }
  });

  it('test_closed_queue_put_get_exceptions', async () => {
    for (const q of [new mp.Queue(), new mp.JoinableQueue()]) {
      q.close();
      await assert.rejects(q.put('foo'), (e: Error) => e instanceof mp.ValueError && /is closed/.test(e.message));
      await assert.rejects(q.get(), (e: Error) => e instanceof mp.ValueError && /is closed/.test(e.message));
    }
  });
});
