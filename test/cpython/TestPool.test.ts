// CPython's _TestPool (ALLOWED_TYPES: processes, manager, threads). The class shares one Pool(4)
// per flavour (CPython's setUpClass); tests that need their own pool make and terminate it.
// 'manager' runs the bodies against `manager.Pool(n)`, a PoolProxy whose workers are the server's.
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import * as mp from '../../src/index.js';
import { cpythonClass, forceGc, type Flavour, type FlavourPool } from './harness.js';
import {
  SayWhenError, exceptionThrowingGenerator, identity, mul, raiseLargeValueError, specialIterable, sleepFor, sqr,
  throwRuntimeError, throwRuntimeErrorFoo, toInt,
} from './fixtures/pool.js';

// CPython's timeouts when it does not check timings.
const TIMEOUT1 = 0.1;
const TIMEOUT2 = 0.1;
const SHORT_TIMEOUT = 30;
const LONG_TIMEOUT = 300;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const squares = (n: number) => range(n).map((i) => i * i);

/** CPython's `with self.Pool(n) as p:`: the pool is terminated (and joined) however the body ends. */
async function withPool<R>(f: Flavour, processes: number, body: (p: FlavourPool) => Promise<R>): Promise<R> {
  const p = await f.objects.Pool(processes);
  try {
    return await body(p);
  } finally {
    await p.terminate();
    await p.join();
  }
}

async function collect<T>(it: AsyncIterable<T> | Promise<AsyncIterable<T>>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of await it) out.push(x);
  return out;
}

/** Polls a condition that only the pool can observe (its own counters), bounded in time. */
async function until(condition: () => boolean, what: string, seconds = 30): Promise<void> {
  const deadline = performance.now() + seconds * 1000;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

cpythonClass('_TestPool', ['processes', 'manager', 'threads'], (f) => {
  let pool: FlavourPool;
  before(async () => {
    pool = await f.objects.Pool(4);
  });
  after(async () => {
    await pool.terminate();
    await pool.join();
  });
  const local = f.type !== 'manager';

  it('test_apply', async () => {
    assert.equal(await pool.apply(sqr, [5]), 25);
    // CPython also passes x as a keyword (`apply(sqr, (), {'x': 3})`): JavaScript has no keyword
    // arguments, so the positional form stands in.
    assert.equal(await pool.apply(sqr, [3]), 9);
  });

  it('test_map', async () => {
    assert.deepEqual(await pool.map(sqr, range(10)), squares(10));
    assert.deepEqual(await pool.map(sqr, range(100), 20), squares(100));
  });

  it('test_starmap', async () => {
    let tuples = range(10).map((i): [number, number] => [i, 9 - i]);
    assert.deepEqual(await pool.starmap(mul, tuples), tuples.map(([x, y]) => x * y));
    tuples = range(100).map((i): [number, number] => [i, 99 - i]);
    assert.deepEqual(await pool.starmap(mul, tuples, 20), tuples.map(([x, y]) => x * y));
  });

  it('test_starmap_async', async () => {
    const tuples = range(100).map((i): [number, number] => [i, 99 - i]);
    assert.deepEqual(await (await pool.starmapAsync(mul, tuples)).get(), tuples.map(([x, y]) => x * y));
  });

  it('test_map_async', async () => {
    assert.deepEqual(await (await pool.mapAsync(sqr, range(10))).get(), squares(10));
  });

  it('test_map_async_callbacks', async () => {
    // CPython's manager flavour appends through a manager list (its callbacks run in the server);
    // ours run in the caller, so a plain array sees them on every flavour.
    const callArgs: unknown[] = [];
    const record = { callback: (r: unknown) => void callArgs.push(r), errorCallback: (e: Error) => void callArgs.push(e) };
    await (await pool.mapAsync(toInt, ['1'], undefined, record)).wait();
    assert.equal(callArgs.length, 1);
    assert.deepEqual(callArgs[0], [1]);
    await (await pool.mapAsync(toInt, ['a'], undefined, record)).wait();
    assert.equal(callArgs.length, 2);
    assert.ok(callArgs[1] instanceof mp.ValueError, `a ValueError, not ${inspect(callArgs[1])}`);
  });

  it('test_map_unplicklable', async () => {
    // CPython's object whose __reduce__ raises; ours is an object whose reducer throws. Either way
    // the map fails with that error and does not hang.
    class A {
      [mp.reduceSymbol](): never {
        throw new mp.RuntimeError('cannot pickle');
      }
    }
    await assert.rejects(pool.map(sqr, Array(10).fill(new A())), mp.RuntimeError);
    // What structured clone cannot send (a function inside the data) fails the same way.
    await assert.rejects(pool.map(sqr, Array(10).fill({ fn: () => 1 })), mp.PicklingError);
  });

  it('test_map_chunksize', async () => {
    assert.deepEqual(await (await pool.mapAsync(sqr, [], 1)).get(TIMEOUT1), [], 'pool.map_async with chunksize stalled on null list');
  });

  it('test_map_handle_iterable_exception', { skip: !local && 'CPython skips it for manager' }, async () => {
    const p = pool as mp.Pool;
    // SayWhenError seen at the very first of the iterable, twice (re-entrant), then in the middle.
    await assert.rejects(p.map(sqr, exceptionThrowingGenerator(1, -1), 1), SayWhenError);
    await assert.rejects(p.map(sqr, exceptionThrowingGenerator(1, -1), 1), SayWhenError);
    await assert.rejects(p.map(sqr, exceptionThrowingGenerator(10, 3), 1), SayWhenError);
    // An iterable with a length whose iterator fails.
    await assert.rejects(p.map(sqr, specialIterable(), 1), SayWhenError);
    await assert.rejects(p.map(sqr, specialIterable(), 1), SayWhenError);
  });

  it('test_async', async () => {
    const t0 = performance.now();
    const res = await pool.applyAsync(sqr, [7, TIMEOUT1]);
    assert.equal(await res.get(), 49);
    assert.ok(performance.now() - t0 >= TIMEOUT1 * 1000 - 1, 'get waited for the task');
  });

  it('test_async_timeout', async () => {
    await withPool(f, 3, async (p) => {
      const res = await p.applyAsync(sqr, [6, TIMEOUT2 + SHORT_TIMEOUT]);
      const t0 = performance.now();
      await assert.rejects(res.get(TIMEOUT2), mp.TimeoutError);
      assert.ok(performance.now() - t0 >= TIMEOUT2 * 1000 - 1, 'get waited for its timeout');
    });
  });

  it('test_imap', async () => {
    assert.deepEqual(await collect(pool.imap(sqr, range(10))), squares(10));

    let it = await pool.imap(sqr, range(10));
    for (let i = 0; i < 10; i++) assert.deepEqual(await it.next(), { value: i * i, done: false });
    assert.equal((await it.next()).done, true, 'StopIteration');

    it = await pool.imap(sqr, range(1000), 100);
    for (let i = 0; i < 1000; i++) assert.deepEqual(await it.next(), { value: i * i, done: false });
    assert.equal((await it.next()).done, true, 'StopIteration');
  });

  it('test_imap_handle_iterable_exception', { skip: !local && 'CPython skips it for manager' }, async () => {
    const p = pool as mp.Pool;
    // SayWhenError seen at the very first of the iterable, twice (re-entrant).
    await assert.rejects(p.imap(sqr, exceptionThrowingGenerator(1, -1), 1).next(), SayWhenError);
    await assert.rejects(p.imap(sqr, exceptionThrowingGenerator(1, -1), 1).next(), SayWhenError);

    let it = p.imap(sqr, exceptionThrowingGenerator(10, 3), 1);
    for (let i = 0; i < 3; i++) assert.deepEqual(await it.next(), { value: i * i, done: false });
    await assert.rejects(it.next(), SayWhenError);

    // SayWhenError seen at the start of the failing chunk's results: that chunk's items are lost.
    it = p.imap(sqr, exceptionThrowingGenerator(20, 7), 2);
    for (let i = 0; i < 6; i++) assert.deepEqual(await it.next(), { value: i * i, done: false });
    await assert.rejects(it.next(), SayWhenError);
    it = p.imap(sqr, exceptionThrowingGenerator(20, 7), 4);
    for (let i = 0; i < 4; i++) assert.deepEqual(await it.next(), { value: i * i, done: false });
    await assert.rejects(it.next(), SayWhenError);
  });

  it('test_imap_unordered', async () => {
    const sorted = (xs: number[]) => xs.sort((a, b) => a - b);
    assert.deepEqual(sorted(await collect(pool.imapUnordered(sqr, range(10)))), squares(10));
    assert.deepEqual(sorted(await collect(pool.imapUnordered(sqr, range(1000), 100))), squares(1000));
  });

  it('test_imap_unordered_handle_iterable_exception', { skip: !local && 'CPython skips it for manager' }, async () => {
    const p = pool as mp.Pool;
    await assert.rejects(p.imapUnordered(sqr, exceptionThrowingGenerator(1, -1), 1).next(), SayWhenError);
    await assert.rejects(p.imapUnordered(sqr, exceptionThrowingGenerator(1, -1), 1).next(), SayWhenError);

    // The order is not known: every value before the error is one of the expected ones, once.
    for (const [total, when, chunksize] of [[10, 3, 1], [20, 7, 2]] as const) {
      const it = p.imapUnordered(sqr, exceptionThrowingGenerator(total, when), chunksize);
      const expected = squares(total);
      await assert.rejects(async () => {
        for (let i = 0; i < total; i++) {
          const { value } = await it.next();
          assert.ok(expected.includes(value as number), `${value} expected once`);
          expected.splice(expected.indexOf(value as number), 1);
        }
      }, SayWhenError);
    }
  });

  it('test_make_pool', async () => {
    // A manager reports the server's ValueError as RemoteError, as CPython's does.
    const expected = local ? mp.ValueError : mp.RemoteError;
    await assert.rejects(f.objects.Pool(-1), expected);
    await assert.rejects(f.objects.Pool(0), expected);
    if (local) {
      const p = (await f.objects.Pool(3)) as mp.Pool;
      try {
        assert.equal(p.stats().workers, 3);
      } finally {
        p.close();
        await p.join();
      }
    }
  });

  it('test_terminate', { timeout: 120_000 }, async () => {
    // 10,000 tasks that would sleep for LONG_TIMEOUT: terminate() stops the workers in the middle
    // of them (thread workers too: a worker thread can be stopped, unlike CPython's threads).
    const p = await f.objects.Pool(3);
    const result = await p.mapAsync(sleepFor, Array(10_000).fill(LONG_TIMEOUT), 1);
    if (local) await until(() => (p as mp.Pool).stats().busyWorkers === 3, 'every worker runs a task');
    await p.terminate();
    await p.join();
    // Beyond CPython (whose result stays unready for ever): the result fails.
    await assert.rejects(result.get(SHORT_TIMEOUT), mp.ValueError);
  });

  it('test_empty_iterable', async () => {
    const p = await f.objects.Pool(1);
    try {
      assert.deepEqual(await p.map(sqr, []), []);
      assert.deepEqual(await collect(p.imap(sqr, [])), []);
      assert.deepEqual(await collect(p.imapUnordered(sqr, [])), []);
      assert.deepEqual(await (await p.mapAsync(sqr, [])).get(), []);
    } finally {
      await p.close();
      await p.join();
    }
  });

  it('test_context', { skip: !local && 'CPython checks it for processes only' }, async () => {
    const L = range(10);
    const p = (await f.objects.Pool(2)) as mp.Pool;
    {
      await using scoped = p; // CPython's `with self.Pool(2) as p:`
      assert.deepEqual(await scoped.mapAsync(sqr, L).get(), squares(10));
    }
    await p.join();
    assert.throws(() => p.mapAsync(sqr, L), mp.ValueError);
  });

  it('test_traceback', { skip: !local && 'CPython checks it for processes only' }, async () => {
    const p = (await f.objects.Pool(1)) as mp.Pool;
    let exc: Error | undefined;
    {
      await using scoped = p;
      await scoped.apply(throwRuntimeError).catch((e: Error) => (exc = e));
    }
    await p.join();
    assert.ok(exc instanceof mp.RuntimeError, 'expected RuntimeError');
    assert.equal(exc.message, '123');
    const cause = exc.cause as Error;
    assert.equal(cause?.name, 'RemoteTraceback');
    // CPython finds the raising source line in the remote traceback; a JavaScript stack names the
    // file and line instead.
    const fixture = new URL('./fixtures/pool.ts', import.meta.url);
    const line = readFileSync(fixture, 'utf8').split('\n').findIndex((l) => l.includes("throw new mp.RuntimeError('123'); // some comment")) + 1;
    const where = `fixtures/pool.ts:${line}:`;
    assert.ok(cause.message.includes(where), `the remote stack points at ${where}:\n${cause.message}`);
    // Printed (CPython's sys.excepthook), the error shows the remote stack too.
    assert.ok(inspect(exc).includes(where), 'the printed error shows where the worker raised');

    // An error of the caller's own iterable is not a remote one.
    let own: Error | undefined;
    {
      await using scoped = (await f.objects.Pool(1)) as mp.Pool;
      await scoped.map(sqr, exceptionThrowingGenerator(1, -1), 1).catch((e: Error) => (own = e));
    }
    assert.ok(own instanceof SayWhenError, 'expected SayWhenError');
    assert.equal(own.cause, undefined);
  });

  it('test_wrapped_exception', async () => {
    await withPool(f, 1, async (p) => {
      await assert.rejects(p.apply(throwRuntimeErrorFoo), mp.RuntimeError);
    });
  });

  it('test_map_no_failfast', async () => {
    // The first item fails at once, the second after a second: map() reports the failure only
    // once every chunk is done (CPython issue #23992: failing fast left a worker blocked).
    await withPool(f, 2, async (p) => {
      const t0 = performance.now();
      await assert.rejects(p.map(raiseLargeValueError, [0, 1]), (e: Error) => {
        assert.ok(e instanceof mp.ValueError);
        assert.equal(e.message.length, 1024 ** 2);
        return true;
      });
      assert.ok(performance.now() - t0 > 900, 'map waited for every job');
      await p.close();
    });
  });

  it('test_release_task_refs', async () => {
    // Neither the arguments nor (processes copy them) the results are kept after the map.
    let objs: { n: number }[] | null = range(10).map((n) => ({ n }));
    const refs = objs.map((o) => new WeakRef(o));
    let results: { n: number }[] | null = await pool.map(identity, objs);
    const resultRefs = results.map((o) => new WeakRef(o));
    objs = null;
    results = null;
    await forceGc();
    assert.deepEqual(new Set(refs.map((r) => r.deref())), new Set([undefined]), 'arguments released');
    assert.deepEqual(new Set(resultRefs.map((r) => r.deref())), new Set([undefined]), 'results released');
  });

  it('test_enter', {
    skip: !local ? 'CPython skips it for manager' : 'n/a: `await using` has no enter step that could refuse a terminated pool (CPython\'s __enter__ check); using it afterwards raises ValueError (test_context)',
  }, () => {});

  it('test_resource_warning', { skip: 'n/a: JavaScript has no ResourceWarning at garbage collection' }, () => {});
});
