import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import * as mp from '../src/index.js';
import {
  BaseManager, BaseProxy, IteratorProxy, Manager, SharedMemoryManager, SyncManager, type DictProxy, type ListProxy, type Proxied,
} from '../src/managers.js';
import {
  Bar, Foo, square, addUnderLock, barrierParty, conditionWaiter, fillAndReverse, initServer, makeCounter, queueWorker, readLabel,
  setFromChild, touchNested, waitForEvent,
} from './fixtures/managers/tasks.js';
import { isAlive, runProgram, startMethods, waitForPidGone } from './helpers.js';
import * as fs from 'node:fs';
import { connectionsTo } from '../src/managers/sessions.js';
import { Lane } from '../src/managers/lane.js';
import type { ByteRing } from '../src/ring.js';
import { readdirSync } from 'node:fs';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const rejectsNamed = (p: Promise<unknown>, name: string, message?: string | RegExp) =>
  assert.rejects(p, (e: Error) => {
    assert.equal(e.name, name);
    if (typeof message === 'string') assert.equal(e.message, message);
    else if (message) assert.match(e.message, message);
    return true;
  });

function run(p: mp.Process): Promise<void> {
  p.start();
  return p.join(30).then(() => assert.equal(p.exitcode, 0, `${p.name} exited with ${p.exitcode}`));
}

describe('SyncManager containers (Python semantics)', () => {
  let m: SyncManager;
  before(async () => {
    m = await Manager();
  });
  after(async () => {
    await m.shutdown();
  });

  it('starts a server process named SyncManager-N that exits 0 at shutdown', async () => {
    const probe = await Manager();
    const p = probe._process!;
    assert.match(p.name, /^SyncManager-\d+$/);
    assert.equal(p.isAlive(), true);
    await probe.shutdown();
    assert.equal(p.exitcode, 0);
    await assert.rejects(probe.start(), mp.ProcessError);
  });

  it('start({ signal }): an abort before the server is ready kills it and rejects; join takes { signal }', async () => {
    const reason = new Error('gave up');
    const controller = new AbortController();
    const manager = new SyncManager();
    const starting = manager.start(null, [], { signal: controller.signal });
    const p = manager._process!;
    controller.abort(reason);
    await assert.rejects(starting, (e) => e === reason);
    await p.join(20);
    assert.notEqual(p.exitcode, null, 'the server process is gone');
    await assert.rejects(m.join(null, { signal: AbortSignal.abort(reason) }), (e) => e === reason);
  });

  it('dict: keys compare as Python (1, "1", 0.25, tuples and bytes), in insertion order', async () => {
    const d = await m.dict<unknown, unknown>();
    await d.setItem(1, '1');
    await d.setItem('1', 'str');
    await d.setItem(0.25, null);
    await d.setItem(1n, 'bigint one');
    await d.setItem([1, 'a'], 'tuple');
    await d.setItem(new Uint8Array([1, 2]), 'bytes');
    assert.equal(await d.len(), 5);
    assert.equal(await d.getItem(1), 'bigint one');
    assert.equal(await d.getItem('1'), 'str');
    assert.equal(await d.getItem([1, 'a']), 'tuple');
    assert.equal(await d.getItem(new Uint8Array([1, 2])), 'bytes');
    assert.equal(await d.has(2), false);
    assert.deepEqual(await d.keys(), [1, '1', 0.25, [1, 'a'], new Uint8Array([1, 2])]);
    assert.equal(await d.str(), "{1: 'bigint one', '1': 'str', 0.25: None, [1, 'a']: 'tuple', b'\\x01\\x02': 'bytes'}");
    await rejectsNamed(d.setItem({ a: 1 }, 1), 'TypeError', "unhashable type: 'dict'");
  });

  it('dict: get, items, values, pop, popitem, setdefault, update, copy, clear, KeyError', async () => {
    const d = await m.dict<string, number>({ a: 1, b: 2 });
    assert.equal(await d.get('a'), 1);
    assert.equal(await d.get('zz'), null);
    assert.equal(await d.get('zz', 7), 7);
    assert.deepEqual(await d.items(), [['a', 1], ['b', 2]]);
    assert.deepEqual(await d.values(), [1, 2]);
    await d.update(new Map([['c', 3]]));
    await d.update([['d', 4]]);
    assert.equal(await d.setdefault('e', 5), 5);
    assert.equal(await d.setdefault('e', 6), 5);
    assert.equal(await d.pop('a'), 1);
    assert.equal(await d.pop('a', -1), -1);
    await rejectsNamed(d.pop('a'), 'KeyError', "'a'");
    assert.deepEqual(await d.popitem(), ['e', 5]);
    const copy = await d.copy();
    assert.ok(copy instanceof Map);
    assert.deepEqual([...copy], [['b', 2], ['c', 3], ['d', 4]]);
    await assert.rejects(d.getItem('nope'), mp.KeyError);
    await rejectsNamed(d.delItem('nope'), 'KeyError', "'nope'");
    await d.delItem('b');
    await d.clear();
    assert.equal(await d.len(), 0);
    await rejectsNamed(d.popitem(), 'KeyError', 'popitem(): dictionary is empty');
    assert.deepEqual(await d._getvalue(), new Map());
  });

  it('dict: iteration is live and fails when the dict changes size (test_dict_iter)', async () => {
    const d = await m.dict<number, number>([[0, 0], [1, 1], [2, 4]]);
    const keys: number[] = [];
    for await (const k of d) keys.push(k);
    assert.deepEqual(keys, [0, 1, 2]);
    const it = await d.iter();
    assert.ok(it instanceof IteratorProxy);
    assert.deepEqual(await it.next(), { done: false, value: 0 });
    await d.clear();
    await rejectsNamed(it.next(), 'RuntimeError', 'dictionary changed size during iteration');
  });

  it('list: Python list methods, negative indices and IndexError/ValueError', async () => {
    const l = await m.list<number>([5, 3, 1]);
    await l.append(4);
    await l.extend([9, 9]);
    await l.insert(0, 7);
    await l.insert(-1, 8);
    assert.deepEqual(await l.copy(), [7, 5, 3, 1, 4, 9, 8, 9]);
    assert.equal(await l.getItem(-1), 9);
    await l.setItem(-2, 6);
    assert.equal(await l.count(9), 2);
    assert.equal(await l.index(6), 6);
    assert.equal(await l.index(9, 6), 7);
    await rejectsNamed(l.index(42), 'ValueError', '42 is not in list');
    await l.remove(7);
    await rejectsNamed(l.remove(7), 'ValueError', 'list.remove(x): x not in list');
    assert.equal(await l.pop(), 9);
    assert.equal(await l.pop(0), 5);
    await l.sort();
    assert.deepEqual(await l.copy(), [1, 3, 4, 6, 9]);
    await l.sort({ reverse: true });
    await l.reverse();
    assert.deepEqual(await l.slice(1, -1), [3, 4, 6]);
    assert.equal(await l.has(4), true);
    assert.equal(await l.len(), 5);
    await l.delItem(-1);
    await assert.rejects(l.getItem(10), mp.IndexError);
    await rejectsNamed(l.getItem(-10), 'IndexError', 'list index out of range');
    await rejectsNamed(l.setItem(4, 0), 'IndexError', 'list assignment index out of range');
    await l.imul(2);
    assert.equal(await l.str(), '[1, 3, 4, 6, 1, 3, 4, 6]');
    await l.clear();
    await rejectsNamed(l.pop(), 'IndexError', 'pop from empty list');
    const mixed = await m.list<unknown>([1, 'a']);
    await rejectsNamed(mixed.sort(), 'TypeError', "'<' not supported between instances of 'str' and 'int'");
  });

  it('list: iteration sees live changes (test_list_iter)', async () => {
    const l = await m.list<number>([0, 1, 2]);
    const seen: number[] = [];
    for await (const x of l) {
      seen.push(x);
      if (x === 0) await l.append(3);
    }
    assert.deepEqual(seen, [0, 1, 2, 3]);
  });

  it('set, Namespace, Value, Array', async () => {
    const s = await m.set<number | string>([1, 2, 2, 'x']);
    assert.equal(await s.len(), 3);
    await s.add(3);
    await s.discard(99);
    await rejectsNamed(s.remove(99), 'KeyError', '99');
    assert.deepEqual(await s.intersection([1, 3, 5]), new Set([1, 3]));
    assert.deepEqual(await s.union([7]), new Set([1, 2, 'x', 3, 7]));
    assert.equal(await s.issuperset([1, 2]), true);
    assert.equal(await s.isdisjoint([8]), true);

    const ns = await m.Namespace<{ a: number; b: string; _c: number }>({ a: 1 });
    await ns.set('b', 'two');
    await ns.set('_c', 3);
    assert.equal(await ns.get('a'), 1);
    assert.equal(await ns.str(), "Namespace(a=1, b='two')");
    await ns.delete('a');
    assert.equal(await ns.has('a'), false);
    await rejectsNamed(ns.get('a'), 'AttributeError', "'Namespace' object has no attribute 'a'");

    const v = await m.Value('i', 5);
    assert.equal(await v.value, 5);
    await v.set(6);
    assert.equal(await v.get(), 6);
    assert.equal(await v.str(), "Value('i', 6)");

    const a = await m.Array('i', [1, 2, 3]);
    assert.equal(await a.len(), 3);
    await a.setItem(-1, 30);
    assert.equal(await a.getItem(2), 30);
    await rejectsNamed(a.setItem(0, 1.5), 'TypeError');
    const items: number[] = [];
    for await (const x of a) items.push(x);
    assert.deepEqual(items, [1, 2, 30]);
  });

  it('a method that is not exposed raises RemoteError with Python\'s AttributeError text; _callmethod and Python names', async () => {
    const d = await m.dict<string, number>({ x: 1 });
    await assert.rejects(d._callmethod('nosuch'), (e: Error) => {
      assert.ok(e instanceof mp.RemoteError);
      assert.match(e.message, /^\n-{75}\nAttributeError: method 'nosuch' of <class 'dict'> object is not in exposed=\('getItem', /);
      assert.match(e.message, /-{75}$/);
      return true;
    });
    assert.equal(await d._callmethod('__getitem__', ['x']), 1);
    assert.equal(await d._callmethod('__len__'), 1);
    assert.match(String(d), /^<DictProxy object, typeid 'dict' at 0x[0-9a-f]+>$/);
  });

  it('a value that cannot be sent is refused at the sender, and the proxy keeps working', async () => {
    const l = await m.list<unknown>();
    await assert.rejects(l.append(() => 1), mp.PicklingError);
    await l.append(1);
    assert.deepEqual(await l.copy(), [1]);
  });

  it('nested proxies stay live and keep their object alive after the client drops them (test_dict_proxy_nested)', async () => {
    const outer = await m.dict<string, unknown>();
    let inner: ListProxy<string> | null = await m.list<string>(['a']);
    await outer.setItem('supplies', inner);
    await outer.setItem('plain', ['x']);
    inner = null;
    gc();
    await new Promise((r) => setTimeout(r, 100));
    const again = (await outer.getItem('supplies')) as ListProxy<string>;
    assert.ok(again instanceof BaseProxy);
    await again.append('b');
    const third = (await outer.getItem('supplies')) as ListProxy<string>;
    assert.deepEqual(await third.copy(), ['a', 'b']);
    // A plain list inside is a copy: mutating it locally changes nothing on the server.
    const plain = (await outer.getItem('plain')) as string[];
    plain.push('y');
    assert.deepEqual(await outer.getItem('plain'), ['x']);
    // A proxy in a list seen by a child process.
    const list = await m.list<ListProxy<string>>([third]);
    await run(new mp.Process({ target: touchNested, args: [list] }));
    assert.deepEqual(await third.copy(), ['a', 'b', 'from child']);
    // Self-reference does not crash.
    const selfish = await m.list<unknown>();
    await selfish.append(selfish);
    assert.equal(await selfish.len(), 1);
  });

  it('reference counting frees the objects no proxy holds', async () => {
    const start = await m._numberOfObjects();
    let made: DictProxy[] | null = [];
    for (let i = 0; i < 5; i++) made.push(await m.dict());
    assert.equal(await m._numberOfObjects(), start + 5);
    made = null;
    const deadline = Date.now() + 10_000;
    while ((await m._numberOfObjects()) > start) {
      assert.ok(Date.now() < deadline, `objects still held: ${await m._debugInfo()}`);
      gc();
      await new Promise((r) => setTimeout(r, 50));
    }
  });
});

describe('SyncManager objects used from child processes', () => {
  let m: SyncManager;
  before(async () => {
    m = await Manager();
  });
  after(async () => {
    await m.shutdown();
  });

  it('the seed example: a child fills a dict and reverses a list', async () => {
    const d = await m.dict();
    const l = await m.list(Array.from({ length: 10 }, (_, i) => i));
    await run(new mp.Process({ target: fillAndReverse, args: [d, l] }));
    assert.equal(await d.str(), "{1: '1', '2': 2, 0.25: None}");
    assert.deepEqual(await l.copy(), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
  });

  it('4 processes add 50 each under a manager Lock: no update is lost', async () => {
    const d = await m.dict<string, number>({ n: 0 });
    const lock = await m.Lock();
    const ps = Array.from({ length: 4 }, () => new mp.Process({ target: addUnderLock, args: [d, lock, 50] }));
    await Promise.all(ps.map(run));
    assert.equal(await d.getItem('n'), 200);
  });

  it('Lock, RLock, Semaphore, BoundedSemaphore: Python\'s acquire/release rules', async () => {
    const lock = await m.Lock();
    assert.equal(await lock.acquire(), true);
    assert.equal(await lock.acquire({ block: false }), false);
    const t0 = performance.now();
    assert.equal(await lock.acquire({ timeout: 0.2 }), false);
    assert.ok(performance.now() - t0 >= 150);
    await lock.release();
    await rejectsNamed(lock.release(), 'RuntimeError', 'release unlocked lock');
    const controller = new AbortController();
    await lock.acquire();
    const pending = lock.acquire({ signal: controller.signal });
    controller.abort(new Error('gave up'));
    await assert.rejects(pending, /gave up/);
    await lock.release();
    assert.equal(await lock.acquire({ timeout: 1 }), true, 'the aborted acquire did not take the lock');
    // Python's positional forms, as mp.Lock takes them; `await using` releases.
    assert.equal(await lock.acquire(false), false);
    assert.equal(await lock.acquire(true, 0.1), false);
    await lock.release();
    {
      assert.equal(await lock.acquire(true, 1), true);
      await using held = lock;
      assert.equal(await held.acquire(false), false);
    }
    assert.equal(await lock.acquire(false), true, 'released at the end of the using block');
    await lock.release();

    const rlock = await m.RLock();
    assert.equal(await rlock.acquire(), true);
    assert.equal(await rlock.acquire(), true);
    await rlock.release();
    await rlock.release();
    await rejectsNamed(rlock.release(), 'RuntimeError', 'cannot release un-acquired lock');

    const sem = await m.Semaphore(2);
    assert.equal(await sem.acquire(), true);
    assert.equal(await sem.acquire(), true);
    assert.equal(await sem.acquire({ block: false }), false);
    await sem.release();
    const bsem = await m.BoundedSemaphore(1);
    await rejectsNamed(bsem.release(), 'ValueError', 'Semaphore released too many times');
  });

  it('Event, Condition and Barrier across processes', async () => {
    const e = await m.Event();
    const v = await m.Value('i', 0);
    const p = new mp.Process({ target: waitForEvent, args: [e, v] });
    p.start();
    assert.equal(await e.wait(0.05), false);
    await e.set();
    assert.equal(await e.isSet(), true);
    await p.join(30);
    assert.equal(await v.get(), 42);

    const c = await m.Condition();
    const log = await m.list<string>();
    const waiter = new mp.Process({ target: conditionWaiter, args: [c, log] });
    waiter.start();
    while (!(await log.has('waiting'))) await new Promise((r) => setTimeout(r, 20));
    await c.with(async () => {
      await log.append('go');
      await c.notifyAll();
    });
    await waiter.join(30);
    assert.deepEqual(await log.copy(), ['waiting', 'go', 'woken']);

    const b = await m.Barrier(3);
    assert.equal(await b.parties, 3);
    const indices = await m.list<number>();
    const parties = [0, 1].map(() => new mp.Process({ target: barrierParty, args: [b, indices] }));
    parties.forEach((q) => q.start());
    // The barrier's timeout counts from here: wait until both children have reached it (starting a
    // process on a loaded machine can take longer than the timeout).
    while ((await b.nWaiting) < 2) await new Promise((r) => setTimeout(r, 20));
    const mine = await b.wait(10);
    await Promise.all(parties.map((q) => q.join(30)));
    assert.deepEqual([mine, ...(await indices.copy())].sort(), [0, 1, 2]);
    assert.equal(await b.broken, false);
    await b.abort();
    await rejectsNamed(b.wait(1), 'BrokenBarrierError');
    await b.reset();
    assert.equal(await b.nWaiting, 0);
  });

  it('Queue and JoinableQueue: Python queue.Queue (Full/Empty, order, taskDone/join)', async () => {
    const q = await m.Queue<number>(2);
    await q.put(1);
    await q.putNowait(2);
    assert.equal(await q.full(), true);
    assert.equal(await q.qsize(), 2);
    // Python's classes, with messages that say which queue and how long the call waited.
    const is = (cls: typeof mp.Full | typeof mp.Empty, message: string) => (e: Error) => e instanceof cls && e.message === message;
    await assert.rejects(q.putNowait(3), is(mp.Full, "the manager's Queue (maxsize=2) is full without waiting (block: false)"));
    await assert.rejects(q.put(3, { timeout: 0.05 }), is(mp.Full, "the manager's Queue (maxsize=2) is full after waiting 0.05 s (the timeout)"));
    assert.equal(await q.get(), 1);
    assert.equal(await q.getNowait(), 2);
    await assert.rejects(q.getNowait(), is(mp.Empty, "no item in the manager's Queue (maxsize=2) without waiting (block: false)"));
    await assert.rejects(q.get({ timeout: 0.05 }), is(mp.Empty, "no item in the manager's Queue (maxsize=2) after waiting 0.05 s (the timeout)"));
    assert.equal(await q.empty(), true);

    const jobs = await m.JoinableQueue<number>();
    const out = await m.Queue<number>();
    const workers = [0, 1].map(() => new mp.Process({ target: queueWorker, args: [jobs, out], daemon: true }));
    workers.forEach((w) => w.start());
    for (let i = 0; i < 10; i++) await jobs.put(i);
    await jobs.join();
    const results: number[] = [];
    for (let i = 0; i < 10; i++) results.push(await out.get({ timeout: 5 }));
    assert.deepEqual(results.sort((a, b) => a - b), [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
    await rejectsNamed(jobs.taskDone(), 'ValueError', 'task_done() called too many times');
    workers.forEach((w) => w.terminate());
    await Promise.all(workers.map((w) => w.join(10)));
  });
});

for (const method of startMethods) {
  describe(`a manager on '${method}'`, () => {
    it('serves proxies passed to children of every start method, and shuts down leaving no process', async () => {
      const ctx = mp.getContext(method);
      await using m = await Manager({ ctx });
      const server = m._process!;
      assert.match(server.name, /^SyncManager-\d+$/);
      const d = await m.dict<string, string>();
      for (const child of startMethods) {
        const cctx = mp.getContext(child);
        await run(new cctx.Process({ target: setFromChild, args: [d, child] }));
      }
      const got = await d.copy();
      assert.deepEqual([...got.keys()].sort(), [...startMethods].sort());
      await m.shutdown();
      assert.equal(server.exitcode, 0);
      if (method !== 'thread') await waitForPidGone(server.pid!, 5000);
      await assert.rejects(d.len());
    });
  });
}

describe('BaseManager subclasses (Python\'s _TestMyManager)', () => {
  class MyManager extends BaseManager {
    declare Foo: () => Promise<Proxied<Foo>>;
    declare Foo2: () => Promise<Proxied<Foo>>;
    declare counter: (start: number) => Promise<Proxied<{ incr(): number }>>;
    declare Bar: () => Promise<Proxied<Bar> & { squares(n: number): Promise<IteratorProxy<number>> }>;
    declare label: () => Promise<BaseProxy>;
  }
  MyManager.register('Foo', Foo);
  MyManager.register('Foo2', Foo, { exposed: ['f', '_h'] });
  MyManager.register('counter', makeCounter);
  MyManager.register('Bar', Bar, { methodToTypeid: { squares: 'Iterator' } });
  MyManager.register('Iterator', null, { proxytype: IteratorProxy, createMethod: false });
  MyManager.register('label', readLabel);

  it('registered classes and functions, exposed, errors, method_to_typeid, initializer', async () => {
    await using m = await new MyManager().start(initServer, ['ready']);
    assert.match(m._process!.name, /^MyManager-\d+$/);
    const foo = await m.Foo();
    assert.equal(await foo.f(), 'f()');
    await rejectsNamed(foo.g(), 'ValueError', 'g() called');
    assert.equal(await foo.later(21), 42);
    assert.equal((foo as unknown as Record<string, unknown>)._h, undefined, 'the default exposed hides _h');
    await assert.rejects(foo._callmethod('_h'), mp.RemoteError);
    const foo2 = await m.Foo2();
    assert.equal(await foo2._callmethod('_h'), '_h()');
    await assert.rejects(foo2._callmethod('g'), mp.RemoteError);
    const counter = await m.counter(10);
    assert.equal(await counter.incr(), 11);
    assert.equal(await counter.incr(), 12);
    const bar = await m.Bar();
    const it = await bar.squares(4);
    assert.ok(it instanceof IteratorProxy);
    const got: number[] = [];
    for await (const x of it) got.push(x);
    assert.deepEqual(got, [0, 1, 4, 9]);
    assert.equal(await (await m.label())._getvalue(), 'ready');
    // Subclass registrations do not leak into the parent.
    assert.equal(BaseManager._registry.has('Foo'), false);
  });

  it('a plain self-contained class travels by its source (no mp.serializable); one that uses its surroundings is refused', async () => {
    class Counter {
      count = 0;
      static readonly step = 1;
      constructor(start = 0) {
        this.count = start;
      }
      incr(by = Counter.step): number {
        this.count += by;
        return this.count;
      }
      get value(): number {
        return this.count;
      }
      describe(): string {
        return `${this.constructor.name} at ${this.count}`;
      }
    }
    class CounterManager extends BaseManager {
      declare Counter: (start?: number) => Promise<Proxied<Counter>>;
    }
    CounterManager.register('Counter', Counter);
    await using m = await new CounterManager().start();
    const counter = await m.Counter(10);
    assert.equal(await counter.incr(), 11);
    assert.equal(await counter.incr(5), 16);
    assert.equal(await counter.describe(), 'Counter at 16');

    const offset = 5;
    class Shifted {
      get(): number {
        return offset;
      }
    }
    class ShiftedManager extends BaseManager {}
    ShiftedManager.register('Shifted', Shifted);
    await assert.rejects(new ShiftedManager().start(), (e: Error) => {
      assert.ok(e instanceof mp.PicklingError, String(e));
      assert.match(e.message, /class Shifted is sent by its source text but uses 'offset' from its surroundings/);
      assert.match(e.message, /mp\.serializable\(\)/);
      return true;
    });
  });

  it('a server run in this process with getServer().serveForever(), reached with connect()', async () => {
    const m = new MyManager({ address: ['127.0.0.1', 0], authkey: 'secret' });
    const server = m.getServer();
    const serving = server.serveForever();
    const client = await new MyManager({ address: server.address, authkey: 'secret' }).connect();
    const foo = await client.Foo();
    assert.equal(await foo.f(), 'f()');
    await assert.rejects(new MyManager({ address: server.address, authkey: 'wrong' }).connect(), mp.AuthenticationError);
    server.stop();
    await serving;
    await client.shutdown();
  });
});

describe('a manager Pool (Python\'s PoolProxy)', () => {
  it('runs tasks in the server\'s workers: map, starmap, applyAsync, imap, terminate', async () => {
    await using m = await Manager();
    await using pool = await m.Pool(2);
    assert.deepEqual(await pool.map(square, [1, 2, 3]), [1, 4, 9]);
    assert.equal(await pool.apply(square, [7]), 49);
    const result = await pool.applyAsync(square, [5]);
    assert.equal(await result.get(10), 25);
    assert.equal(await result.ready(), true);
    const squares: number[] = [];
    for await (const x of await pool.imap(square, [1, 2, 3, 4])) squares.push(x);
    assert.deepEqual(squares, [1, 4, 9, 16]);
    assert.deepEqual(await (await pool.mapAsync(square, [2, 3])).get(10), [4, 9]);
    const reason = new Error('gave up');
    await assert.rejects(pool.map(square, [1, 2], undefined, { signal: AbortSignal.abort(reason) }), (e) => e === reason);
    assert.equal(await pool.apply(square, [3], { signal: AbortSignal.timeout(10_000) }), 9);
  });
});

describe('SharedMemoryManager', () => {
  it('makes segments and lists, and unlinks them all at shutdown', async () => {
    const smm = new SharedMemoryManager();
    await smm.start();
    const shm = await smm.SharedMemory(128);
    const sl = await smm.ShareableList([1, 'two', 3.5]);
    shm.buf[0] = 7;
    assert.equal(new mp.SharedMemory({ name: shm.name }).buf[0], 7);
    assert.equal(sl.get(1), 'two');
    const reason = new Error('gave up');
    await assert.rejects(smm.SharedMemory(64, { signal: AbortSignal.abort(reason) }), (e) => e === reason);
    await assert.rejects(smm.ShareableList([1], { signal: AbortSignal.abort(reason) }), (e) => e === reason);
    const other = new SharedMemoryManager({ address: smm.address!, authkey: mp.currentProcess().authkey });
    await assert.rejects(other.connect({ signal: AbortSignal.abort(reason) }), (e) => e === reason);
    assert.deepEqual((await smm._listSegments()).sort(), [shm.name, sl.shm.name].sort(), 'the aborted ones are not tracked');
    const pid = smm._process!.pid!;
    await smm.shutdown();
    assert.equal(isAlive(pid), false);
    assert.throws(() => new mp.SharedMemory({ name: shm.name }), /FileNotFoundError|No such file/);
    assert.throws(() => new mp.SharedMemory({ name: sl.shm.name }), /FileNotFoundError|No such file/);
  });
});

describe('the shared-memory lane of sessions with a local manager', () => {
  const sessionsOf = (m: SyncManager) => connectionsTo(m.address!, mp.currentProcess().authkey).idleSessions();

  it('carries the calls of a Unix-socket session; frames larger than its rings stream through both ways', async () => {
    await using m = await Manager();
    const d = await m.dict<string, unknown>();
    await d.setItem('warm-up', 1);
    assert.deepEqual(sessionsOf(m), { lanes: 1, sockets: 0 });
    const ours = () => readdirSync('/dev/shm').filter((n) => n.startsWith(`mp-${process.pid}-`)).sort();
    const before = ours();
    const big = 'x'.repeat(1 << 20) + 'end';
    const numbers = Array.from({ length: 100_000 }, (_, i) => i / 3);
    await d.setItem('big', big);
    await d.setItem('numbers', numbers);
    assert.equal(await d.getItem('big'), big);
    assert.deepEqual(await d.getItem('numbers'), numbers);
    // Four calls at once open four sessions; their segments are unlinked as soon as both sides map them.
    assert.deepEqual(await Promise.all([1, 2, 3, 4].map(() => d.getItem('warm-up'))), [1, 1, 1, 1]);
    assert.equal(sessionsOf(m).lanes, 4);
    assert.deepEqual(ours(), before, 'a lane segment was left linked');
  });

  it('a client killed while its lane offer is open leaves no segment behind (the resource tracker removes it)', async () => {
    // A program of its own, with its own resource tracker (a program started with child_process never joins ours).
    const r = await runProgram(new URL('./fixtures/managers/laneOfferKilled.ts', import.meta.url), [], 60_000);
    const segment = /segment (\/mp-\S+)/.exec(r.stdout)?.[1];
    assert.ok(segment, r.stdout + r.stderr);
    assert.match(r.stdout, /exitcode -9/);
    const file = `/dev/shm${segment}`;
    // The tracker cleans up as the program ends; give it a moment (bounded).
    for (const until = Date.now() + 10_000; fs.existsSync(file) && Date.now() < until; ) await new Promise((res) => setTimeout(res, 50));
    assert.equal(fs.existsSync(file), false, `${file} was left behind`);
  });

  it('a call waiting on the lane fails at once when the server dies; later calls fail too', async () => {
    const m = await Manager();
    const q = await m.Queue();
    await q.put('first');
    assert.equal(await q.get(), 'first');
    assert.equal(sessionsOf(m).lanes, 1);
    const pending = q.get(); // blocks in the server: the queue is empty
    const server = m._process!;
    process.kill(server.pid!, 'SIGKILL');
    await assert.rejects(pending, (e: Error) => ['EOFError', 'OSError'].includes(e.name));
    await assert.rejects(q.qsize(), (e: Error) => ['EOFError', 'OSError'].includes(e.name));
    await waitForPidGone(server.pid!, 5000);
    await server.join(5);
  });

  it('a hang-up in the middle of a frame fails the call with EOFError, never with the frame\'s remains', async () => {
    const offer = Lane.offer();
    const client = Lane.forClient(offer.buffer);
    const server = Lane.forServer(offer.segment);
    assert.ok(!readdirSync('/dev/shm').includes(offer.segment.slice(1)), 'the name is removed once both sides map it');
    const reply = client.recv();
    // The start of a 1 MiB frame whose first body bytes look like a whole frame of their own.
    const inner = Buffer.from([3, 0, 0, 0, 2, 0x34, 0x32]); // length 3, JSON tag, "42"
    const outbox = (server as unknown as { outbox: ByteRing }).outbox;
    const header = Buffer.alloc(4);
    header.writeUInt32LE(1 << 20);
    outbox.write(Buffer.concat([header, Buffer.alloc(10)]));
    const internals = client as unknown as { midFrame: boolean };
    for (let i = 0; !internals.midFrame || outbox.available() > 0; i++) {
      assert.ok(i < 10_000, 'the client never started reading the frame');
      await new Promise(setImmediate);
    }
    // More of the body arrives, and the hang-up comes before the reader gets to it.
    outbox.write(inner);
    client.close();
    await assert.rejects(reply, (e: Error) => e.name === 'EOFError');
    server.close();
  });

  it('MP_MANAGER_LANE=0 keeps sessions on the socket, with the same results', async () => {
    process.env.MP_MANAGER_LANE = '0';
    try {
      await using m = await Manager();
      const l = await m.list<number | string>([1, 2, 3]);
      await l.append('x'.repeat(200_000));
      assert.equal(await l.len(), 4);
      assert.equal(String(await l.getItem(-1)).length, 200_000);
      assert.deepEqual(sessionsOf(m), { lanes: 0, sockets: 1 });
    } finally {
      delete process.env.MP_MANAGER_LANE;
    }
  });
});
