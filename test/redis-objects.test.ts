// The redis context's objects in one program, against a real redis-server: Python's semantics of
// each (Queue's maxsize/Empty/Full/taskDone/join, Lock/RLock, Semaphore, Event, Barrier,
// Condition, Value's get/set/add and getLock(), a manager's dict/list/Namespace with Python's key
// semantics), the errors Python raises, and no key left in Redis once they are closed. Their use
// across separate programs is test/redis-objects-processes.test.ts.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import { redisForTests } from './redisServer.js';
import { until } from './redisWorkers.js';
import { spaceFor } from '../src/redis/objects.js';

const redis = await redisForTests({ db: 7 });
after(() => redis.server?.close());

/** Resolves with how the promise settled, or 'pending' if it has not by the time Redis answered
 * one more round trip of `probe` (what was sent before it has been handled). */
async function settledBy<T>(promise: Promise<T>, probe: () => Promise<unknown>): Promise<'pending' | { value: T } | { error: unknown }> {
  let state: 'pending' | { value: T } | { error: unknown } = 'pending';
  promise.then((value) => (state = { value }), (error) => (state = { error }));
  await probe();
  await probe();
  return state;
}

const isNamed = (name: string, message?: RegExp) => (e: Error) => e.name === name && (!message || message.test(e.message));

describe('redis objects in one program: Python semantics', { skip: redis.skip }, () => {
  const server = redis.server!;
  const ctx = mp.getContext('redis', { url: server.url, keyTtl: 5 });
  after(() => ctx.shutdown());

  it('Queue: FIFO, maxsize with Full (putNowait, put timeout), Empty (getNowait, get timeout), qsize/empty/full', async () => {
    const q = ctx.Queue<unknown>(2);
    assert.equal(await q.empty(), true);
    await assert.rejects(q.getNowait(), isNamed('Empty'));
    const t0 = performance.now();
    await assert.rejects(q.get({ timeout: 0.2 }), isNamed('Empty'));
    assert.ok(performance.now() - t0 >= 190, 'get waited for its timeout');
    await q.put({ a: [1, 2n, 'x'] });
    await q.put(null);
    assert.equal(await q.qsize(), 2);
    assert.equal(await q.full(), true);
    await assert.rejects(q.putNowait(3), isNamed('Full'));
    await assert.rejects(q.put(3, { timeout: 0.1 }), isNamed('Full'));
    await assert.rejects(q.put(3, { block: false }), isNamed('Full'));
    // A put waiting for room goes in when a get makes some.
    const waiting = q.put('third');
    assert.equal(await settledBy(waiting, () => q.qsize()), 'pending');
    assert.deepEqual(await q.get(), { a: [1, 2n, 'x'] });
    await waiting;
    assert.equal(await q.get(), null);
    assert.equal(await q.get(), 'third');
    // A get waiting for an item gets the next put.
    const getting = q.get({ timeout: 30 });
    assert.equal(await settledBy(getting, () => q.qsize()), 'pending');
    await q.put('late');
    assert.equal(await getting, 'late');
    await q.close();
    await assert.rejects(q.put(1), isNamed('ValueError', /closed/));
    await q.joinThread();
  });

  it('Queue: an unbounded queue keeps the order of 3,000 puts not awaited one by one; joinThread only after close', async () => {
    const q = ctx.Queue<number>();
    const n = 3000; // several of the feeder's writes
    for (let i = 0; i < n; i++) void q.put(i);
    await assert.rejects(q.joinThread(), isNamed('ValueError', /not closed/));
    for (let i = 0; i < n; i++) assert.equal(await q.get({ timeout: 30 }), i);
    assert.equal(await q.empty(), true);
    await q.close();
    await q.joinThread();
  });

  it('JoinableQueue: join() waits for a taskDone() per item; taskDone() too many times raises ValueError', async () => {
    const q = ctx.JoinableQueue<number>();
    await q.join(); // nothing put: returns at once
    await q.put(1);
    await q.put(2);
    const joined = q.join();
    assert.equal(await settledBy(joined, () => q.qsize()), 'pending');
    assert.equal(await q.get(), 1);
    await q.taskDone();
    assert.equal(await settledBy(joined, () => q.qsize()), 'pending', 'one item still unfinished');
    assert.equal(await q.get(), 2);
    await q.taskDone();
    await joined;
    await assert.rejects(q.taskDone(), isNamed('ValueError', /too many times/));
    const aborted = new AbortController();
    await q.put(3);
    const waiting = q.join({ signal: aborted.signal });
    aborted.abort();
    await assert.rejects(waiting, isNamed('AbortError'));
    await q.close();
  });

  it('Lock: not recursive, released by anyone, a second release raises; fencing tokens grow; acquire timeout', async () => {
    const lock = ctx.Lock();
    assert.equal(await lock.acquire(), true);
    const first = lock.fencingToken!;
    assert.equal(await lock.acquire(false), false);
    const t0 = performance.now();
    assert.equal(await lock.acquire({ timeout: 0.2 }), false);
    assert.ok(performance.now() - t0 >= 190);
    const next = lock.acquire({ timeout: 30 });
    await lock.release();
    assert.equal(await next, true, 'a waiter takes it on release');
    assert.ok(lock.fencingToken! > first);
    await lock.release();
    await assert.rejects(lock.release(), isNamed('ValueError', /released too many times/));
    assert.equal(await lock.with(async () => 'inside'), 'inside');
    assert.equal(await lock.acquire(false), true, 'with() released it');
    await lock.release();
    assert.throws(() => ctx.Lock({ lease: 0 }), isNamed('ValueError'));
    await lock.close();
  });

  it('RLock: recursive for its owner, released as many times as acquired, then raises', async () => {
    const lock = ctx.RLock();
    assert.equal(await lock.acquire(), true);
    assert.equal(await lock.acquire(false), true);
    await lock.release();
    await lock.release();
    await assert.rejects(lock.release(), isNamed('ValueError', /not owned/));
    await lock.close();
  });

  it('Semaphore and BoundedSemaphore: counts, acquire(false)/timeout, a waiter woken by release, over-release', async () => {
    const sem = ctx.Semaphore(2);
    assert.equal(await sem.acquire(), true);
    assert.equal(await sem.acquire(), true);
    assert.equal(await sem.getValue(), 0);
    assert.equal(await sem.acquire(false), false);
    assert.equal(await sem.acquire({ timeout: 0.1 }), false);
    const waiter = sem.acquire({ timeout: 30 });
    assert.equal(await settledBy(waiter, () => sem.getValue()), 'pending');
    await sem.release();
    assert.equal(await waiter, true);
    await sem.release();
    await sem.release();
    await sem.release(); // a plain Semaphore may go above its initial value
    assert.equal(await sem.getValue(), 3);
    assert.throws(() => ctx.Semaphore(-1), isNamed('ValueError'));

    const bounded = ctx.BoundedSemaphore(1);
    assert.equal(await bounded.acquire(), true);
    await bounded.release();
    await assert.rejects(bounded.release(), isNamed('ValueError', /released too many times/));
    assert.equal(await bounded.getValue(), 1);
    for (const o of [sem, bounded]) await o.close();
  });

  it('Event: isSet/set/clear; wait returns false on timeout, true once set, wakes a waiter', async () => {
    const e = ctx.Event();
    assert.equal(await e.isSet(), false);
    assert.equal(await e.wait(0.1), false);
    const waiting = e.wait(30);
    assert.equal(await settledBy(waiting, () => e.isSet()), 'pending');
    await e.set();
    assert.equal(await waiting, true);
    assert.equal(await e.isSet(), true);
    assert.equal(await e.wait(0), true);
    await e.clear();
    assert.equal(await e.isSet(), false);
    assert.equal(await e.wait(0), false);
    await e.close();
  });

  it('Barrier: indices 0..parties-1, the action once per cycle, abort/reset, a timeout breaks it', async () => {
    let actions = 0;
    const b = ctx.Barrier(3, () => void actions++);
    assert.equal(b.parties, 3);
    for (let cycle = 0; cycle < 2; cycle++) {
      const indices = await Promise.all([b.wait(30), b.wait(30), b.wait(30)]);
      assert.deepEqual(indices.sort(), [0, 1, 2]);
    }
    assert.equal(actions, 2);
    assert.equal(await b.nWaiting, 0);
    const early = b.wait(30);
    assert.equal(await settledBy(early, () => b.nWaiting), 'pending');
    assert.equal(await b.nWaiting, 1);
    await b.abort();
    await assert.rejects(early, isNamed('BrokenBarrierError'));
    assert.equal(await b.broken, true);
    await assert.rejects(b.wait(30), isNamed('BrokenBarrierError'), 'broken until reset');
    await b.reset();
    assert.equal(await b.broken, false);
    await assert.rejects(b.wait(0.1), isNamed('BrokenBarrierError'), 'a timeout breaks it');
    assert.equal(await b.broken, true);
    await b.reset();
    assert.throws(() => ctx.Barrier(0), isNamed('ValueError'));
    await b.close();
  });

  it('Condition: wait/notify need the lock; wait times out (false) or is notified (true); waitFor', async () => {
    const lock = ctx.Lock();
    const cond = ctx.Condition(lock);
    await assert.rejects(cond.wait(0), isNamed('ValueError', /must acquire/));
    await assert.rejects(cond.notify(), isNamed('ValueError', /not owned/));
    await cond.acquire();
    assert.equal(await cond.wait(0.1), false);
    const waiting = cond.wait(30);
    assert.equal(await cond.acquire({ timeout: 30 }), true, 'wait() released the lock');
    assert.equal(await settledBy(waiting, () => cond.notify(0)), 'pending', 'not woken without a notify');
    await cond.notify();
    await cond.release();
    assert.equal(await waiting, true);
    let ready = false;
    const notifier = (async () => {
      await cond.acquire(); // once waitFor's wait() released it
      ready = true;
      await cond.notify();
      await cond.release();
    })();
    assert.equal(await cond.waitFor(() => ready, 30), true);
    await notifier;
    assert.equal(await cond.waitFor(() => 0, 0.05), 0, 'waitFor returns the falsy predicate on timeout');
    await cond.release();
    await cond.close();
    await lock.close(); // the lock given is the caller's to close
  });

  it('Value: atomic get/set/add with C wrap-around, float32 rounding, 64-bit; getLock(); RawValue has no lock', async () => {
    const v = ctx.Value('i', 5);
    assert.equal(await v.get(), 5);
    assert.equal(await v.add(2), 7);
    assert.equal(await v.add(2 ** 32), 7, "'i' wraps around as a C int");
    await v.set(2 ** 31 - 1);
    assert.equal(await v.add(1), -(2 ** 31));
    assert.throws(() => v.value, isNamed('TypeError', /await v.get\(\)/));
    await v.getLock().with(async () => v.set((await v.get()) * 0 + 70));
    assert.equal(await v.get(), 70);
    assert.ok(v.getLock() instanceof ctx.RLock, 'an RLock by default, as Python');
    const f = ctx.Value('f', 0.1);
    assert.equal(await f.add(0.2), Math.fround(Math.fround(0.1) + 0.2));
    const q = ctx.Value('q', 2n ** 63n - 1n);
    assert.equal(await q.add(1), -(2n ** 63n));
    const raw = ctx.RawValue('d', 1.5);
    assert.equal(await raw.add(1), 2.5);
    assert.throws(() => raw.getLock(), isNamed('AttributeError'));
    const guarded = ctx.Value('i', 0, { lock: ctx.Lock() });
    assert.ok(guarded.getLock() instanceof ctx.Lock);
    assert.throws(() => ctx.Value('x' as 'i', 0), isNamed('TypeError'));
    for (const o of [v, f, q, raw, guarded]) await o.close();
    await guarded.getLock().close();
  });

  it("Manager dict: Python's keys (1, '1' and 0.25 three keys, 1 and 1n one), insertion order, KeyError, pop/popitem/setdefault/update", async () => {
    await using m = await ctx.Manager();
    const d = await m.dict<unknown, unknown>();
    await d.setItem(1, 'int');
    await d.setItem('1', 'str');
    await d.setItem(0.25, 'float');
    await d.setItem(1n, 'bigint');
    await d.setItem([1, 'a'], 'tuple');
    assert.deepEqual(await d.items(), [[1, 'bigint'], ['1', 'str'], [0.25, 'float'], [[1, 'a'], 'tuple']], 'the first key kept, its value replaced');
    assert.equal(await d.len(), 4);
    assert.equal(await d.getItem([1, 'a']), 'tuple');
    assert.equal(await d.has('1'), true);
    assert.equal(await d.has(2), false);
    await assert.rejects(d.getItem(7), isNamed('KeyError'));
    assert.equal(await d.get(7), null);
    assert.equal(await d.get(7, 'default'), 'default');
    assert.equal(await d.pop('1'), 'str');
    await assert.rejects(d.pop('1'), isNamed('KeyError'));
    assert.equal(await d.pop('1', 'gone'), 'gone');
    assert.equal(await d.setdefault('s', 10), 10);
    assert.equal(await d.setdefault('s', 11), 10);
    assert.deepEqual(await d.popitem(), ['s', 10], 'popitem takes the last inserted');
    await d.update({ x: 1, y: 2 });
    await d.delItem(0.25);
    await assert.rejects(d.delItem(0.25), isNamed('KeyError'));
    assert.deepEqual(await d.keys(), [1, [1, 'a'], 'x', 'y']);
    const seen: unknown[] = [];
    for await (const k of d) seen.push(k);
    assert.deepEqual(seen, await d.keys());
    await d.clear();
    await assert.rejects(d.popitem(), isNamed('KeyError'));
    const initial = await m.dict<string, number>({ a: 1 });
    assert.deepEqual(await initial.copy(), new Map([['a', 1]]));
  });

  it('Manager list: indices (negative, IndexError), append/extend/insert/pop/remove/index/count/reverse/sort with Python\'s ==', async () => {
    await using m = await ctx.Manager();
    const l = await m.list<number>([3, 1, 2]);
    await l.append(0);
    await l.extend([5, 4]);
    assert.equal(await l.len(), 6);
    assert.equal(await l.getItem(-1), 4);
    await assert.rejects(l.getItem(6), isNamed('IndexError'));
    await assert.rejects(l.setItem(-7, 1), isNamed('IndexError'));
    await l.sort();
    assert.deepEqual(await l.copy(), [0, 1, 2, 3, 4, 5]);
    await l.sort({ reverse: true });
    assert.deepEqual(await l.copy(), [5, 4, 3, 2, 1, 0]);
    await l.insert(1, 9);
    await l.insert(100, 7); // past the end: appended, as Python
    assert.equal(await l.index(9), 1);
    await assert.rejects(l.index(42), isNamed('ValueError'));
    await l.remove(9);
    await assert.rejects(l.remove(9), isNamed('ValueError'));
    assert.equal(await l.pop(), 7);
    assert.equal(await l.pop(0), 5);
    await l.append(1);
    assert.equal(await l.count(1), 2);
    assert.equal(await l.has(1n as unknown as number), true, '1n == 1');
    await l.reverse();
    assert.deepEqual(await l.slice(0, 3), [1, 0, 1]);
    await l.delItem(0);
    await assert.rejects(l.delItem(10), isNamed('IndexError'));
    await l.clear();
    await assert.rejects(l.pop(), isNamed('IndexError'));
  });

  it('Manager Namespace: attributes, AttributeError for a missing one; shutdown() deletes what the manager made', async () => {
    const m = await ctx.Manager();
    const ns = await m.Namespace({ x: 1 } as Record<string, unknown>);
    assert.equal(await ns.get('x'), 1);
    await ns.set('y', [2]);
    assert.deepEqual(await ns.get('y'), [2]);
    await ns.delete('x');
    assert.equal(await ns.has('x'), false);
    await assert.rejects(ns.get('x'), isNamed('AttributeError', /has no attribute 'x'/));
    await assert.rejects(ns.delete('x'), isNamed('AttributeError'));
    const d = await m.dict();
    await m.shutdown();
    await assert.rejects(d.len(), isNamed('ValueError'));
  });

  it('leaves no mp: key in Redis once everything is closed', async () => {
    assert.deepEqual(await server.mpKeys(), []);
  });
});

const restartable = await redisForTests({ db: 0, privateServer: true });
after(() => restartable.server?.close());

describe('redis objects: Redis restarted without persistence', { skip: restartable.skip }, () => {
  it('a waiting get and every later call raise ValueError (the object is gone), none hangs; the connection resumes', async () => {
    const server = restartable.server!;
    const ctx = mp.getContext('redis', { url: server.url });
    const q = ctx.Queue<number>();
    const lock = ctx.Lock();
    await q.put(1);
    assert.equal(await q.get(), 1);
    assert.equal(await lock.acquire(), true);
    const waiting = q.get(); // no timeout: waits for a put
    assert.equal(await settledBy(waiting, () => q.qsize()), 'pending');
    const warned = new Promise<void>((resolve) => process.once('warning', (w) => w.name === 'RedisConnectionWarning' && resolve()));
    const other = ctx.Queue<number>();
    await other.put(7, { timeout: 30 }).then(() => other.get());
    await server.stop!();
    await warned; // the outage is reported, not silent
    const objects = await spaceFor(ctx.settings.url).connection();
    await until('the connection to see the outage', () => objects.status !== 'ready', 30_000);
    // Timeouts hold while Redis is unreachable: Python's outcome within the timeout, no hang.
    let t0 = performance.now();
    await assert.rejects(other.get({ timeout: 0.3 }), isNamed('Empty'));
    assert.equal(await lock.acquire({ timeout: 0.3 }), false);
    assert.ok(performance.now() - t0 < 10_000, `both gave up at their timeouts (${Math.round(performance.now() - t0)} ms)`);
    const aborted = new AbortController();
    const abandoned = other.get({ signal: aborted.signal });
    aborted.abort();
    await assert.rejects(abandoned, isNamed('AbortError'), 'a signal ends a wait for Redis');
    const resumed = other.get({ timeout: 60 });
    await server.start!();
    t0 = performance.now();
    await assert.rejects(resumed, isNamed('ValueError', /no longer exists in Redis/), 'tried again once Redis was back');
    // The waiter subscribed again and tried again: the queue no longer exists.
    await assert.rejects(waiting, isNamed('ValueError', /no longer exists in Redis/));
    await assert.rejects(q.put(2, { block: false }).then(() => q.qsize()), isNamed('ValueError', /no longer exists/));
    await assert.rejects(lock.release(), isNamed('ValueError', /no longer exists/));
    // A new object on the same connection works.
    const e = ctx.Event();
    await e.set();
    assert.equal(await e.isSet(), true);
    for (const o of [q, other, lock, e]) await o.close().catch(() => {});
    await ctx.shutdown();
    assert.deepEqual(await server.mpKeys(), []);
  });
});
