// docs/api.md rule 1: Python's factory functions (the context methods of multiprocessing/context.py, and
// multiprocessing.dummy's) are callable and constructible, with the same generics both ways, in
// the root, in every namespace, on every context object and in every subpath.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import * as connection from '../src/connection.js';
import * as dummy from '../src/dummy.js';
import * as sharedctypes from '../src/sharedctypes.js';
import { startMethods } from './helpers.js';

/** Python's factory functions that return an object (the context methods), and their arguments. */
const factories: Record<string, unknown[]> = {
  Lock: [], RLock: [], Semaphore: [2], BoundedSemaphore: [2], Condition: [], Event: [], Barrier: [2],
  Queue: [], JoinableQueue: [], SimpleQueue: [], Pipe: [], Pool: [1],
  Value: ['i', 1], Array: ['i', 3], RawValue: ['i', 1], RawArray: ['i', 3],
};
const all = Object.keys(factories);
// `Manager()` (and `connection.Client()`) are factories too, but async: they are called and
// awaited (`await mp.Manager()`); there is no object for `new` to give. Names that are classes in
// Python stay classes, used with `new` (`new mp.pool.Pool()`, `new mp.pool.ThreadPool()`,
// `new mp.managers.Value()`, `new mp.SharedMemory()`), as docs/api.md writes them.

/** Every place that has factory functions in Python, and which: the root and the context objects
 * (Python's context methods), and the namespaces, which are the modules behind the subpaths
 * (package.json "exports"): multiprocessing.sharedctypes, .connection, .dummy, .dummy.connection.
 * multiprocessing.pool, .managers and .shared_memory have classes only. */
const places: Array<[string, Record<string, unknown>, string[]]> = [
  ['mp (multiprocessing-ts)', mp, all],
  ...startMethods.map((m): [string, Record<string, unknown>, string[]] => [`getContext('${m}')`, mp.getContext(m) as unknown as Record<string, unknown>, all]),
  ['mp.sharedctypes (multiprocessing-ts/sharedctypes)', mp.sharedctypes, ['RawValue', 'RawArray', 'Value', 'Array']],
  ['mp.connection (multiprocessing-ts/connection)', mp.connection, ['Pipe']],
  [
    'mp.dummy (multiprocessing-ts/dummy)',
    mp.dummy,
    ['Lock', 'RLock', 'Semaphore', 'BoundedSemaphore', 'Condition', 'Event', 'Barrier', 'Queue', 'JoinableQueue', 'SimpleQueue', 'Pipe', 'Pool', 'Value', 'Array'],
  ],
  ['mp.dummy.connection', mp.dummy.connection, ['Pipe']],
];

async function dispose(x: unknown): Promise<void> {
  if (x instanceof mp.pool.Pool) {
    x.terminate();
    await x.join();
  } else if (Array.isArray(x)) {
    for (const end of x) if (end instanceof mp.Connection) end.close();
  }
}

describe('factories are callable and constructible (docs/api.md rule 1)', () => {
  for (const [where, place, names] of places) {
    it(`${where}: ${names.join(', ')}`, async () => {
      for (const name of names) {
        const factory = place[name] as (...args: unknown[]) => unknown;
        assert.equal(typeof factory, 'function', `${where}.${name}`);
        const called = factory(...factories[name]!);
        const constructed = new (factory as unknown as new (...args: unknown[]) => unknown)(...factories[name]!);
        try {
          assert.equal(typeof called, 'object', `${where}.${name}() gives an object`);
          assert.equal(Object.getPrototypeOf(called), Object.getPrototypeOf(constructed), `${where}.${name}() and new ${where}.${name}() give the same kind of object`);
          // The root's factory is the class to test against (Pipe gives a pair, Value/Array a wrapper or a raw object).
          if (name !== 'Pipe' && name !== 'Value' && name !== 'Array') {
            assert.ok(called instanceof (mp as unknown as Record<string, new () => object>)[name]!, `${where}.${name}() instanceof mp.${name}`);
          }
        } finally {
          await dispose(called);
          await dispose(constructed);
        }
      }
    });
  }
});

/**
 * Compiled by `npm run typecheck` (never run): the same generics in the call form and with `new`.
 * A factory whose call form lost its generics fails to compile here (TS2558).
 */
export function typeChecks(): void {
  const q1: mp.Queue<string> = mp.Queue<string>();
  const q2: mp.Queue<string> = new mp.Queue<string>();
  const q3: mp.Queue<string> = mp.Queue<string>(5);
  const jq1: mp.JoinableQueue<number> = mp.JoinableQueue<number>();
  const jq2: mp.JoinableQueue<number> = new mp.JoinableQueue<number>(2);
  const sq1: mp.SimpleQueue<bigint> = mp.SimpleQueue<bigint>();
  const sq2: mp.SimpleQueue<bigint> = new mp.SimpleQueue<bigint>();
  const ctx = mp.getContext('thread');
  const cq1: mp.Queue<string> = ctx.Queue<string>();
  const cq2: mp.Queue<string> = new ctx.Queue<string>();
  const dq1: mp.Queue<string> = dummy.Queue<string>();
  const dq2: mp.Queue<string> = new dummy.Queue<string>();
  const rv1: mp.sharedctypes.RawValue<'d'> = mp.RawValue<'d'>('d', 1.5);
  const rv2: mp.sharedctypes.RawValue<'d'> = new mp.RawValue<'d'>('d', 1.5);
  const ra1: mp.sharedctypes.RawArray<'i'> = sharedctypes.RawArray<'i'>('i', 3);
  const ra2: mp.sharedctypes.RawArray<'i'> = new sharedctypes.RawArray<'i'>('i', 3);
  const v1: mp.sharedctypes.Synchronized<'i'> = mp.Value<'i'>('i', 1);
  const v2: mp.sharedctypes.Synchronized<'i'> = new mp.Value<'i'>('i', 1);
  const a1: mp.sharedctypes.SynchronizedArray<'b'> = mp.Array<'b'>('b', 2);
  const a2: mp.sharedctypes.SynchronizedArray<'b'> = new mp.Array<'b'>('b', 2);
  const p1: [mp.Connection, mp.Connection] = mp.Pipe();
  const p2: [mp.Connection, mp.Connection] = new mp.Pipe(false);
  const p3: [mp.Connection, mp.Connection] = new connection.Pipe();
  const p4: [mp.Connection, mp.Connection] = new dummy.Pipe();
  const p5: [mp.Connection, mp.Connection] = new dummy.connection.Pipe();
  const pool1: mp.Pool = mp.Pool(2);
  const pool2: mp.Pool = new mp.Pool({ processes: 2 });
  const pool3: mp.pool.ThreadPool = dummy.Pool(2);
  const pool4: mp.pool.ThreadPool = new dummy.Pool(2);
  const lock1: mp.Lock = mp.Lock();
  const lock2: mp.Lock = new dummy.Lock();
  void [q1, q2, q3, jq1, jq2, sq1, sq2, cq1, cq2, dq1, dq2, rv1, rv2, ra1, ra2, v1, v2, a1, a2, p1, p2, p3, p4, p5, pool1, pool2, pool3, pool4, lock1, lock2];
}
