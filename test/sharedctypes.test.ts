import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import { Lock, RLock } from '../src/synchronize.js';
import { Array as SharedArray, RawArray, RawValue, Synchronized, SynchronizedArray, Value, copy, synchronized } from '../src/sharedctypes.js';
import { doubleAll, prefixSum } from './fixtures/sync/tasks.js';

const children = new Set<mp.Process>();
after(() => {
  for (const p of children) if (p.isAlive()) p.kill();
});

async function run(ctx: ReturnType<typeof mp.getContext>, target: (...args: any[]) => unknown, args: unknown[]): Promise<void> {
  const p = new ctx.Process({ target, args });
  p.start();
  children.add(p);
  await p.join(60);
  if (p.exitcode === null) p.kill();
  children.delete(p);
  assert.equal(p.exitcode, 0);
}

describe('sharedctypes (local)', () => {
  const o = { ctx: mp.getContext('thread') };

  test('Value: typecodes keep their initial values; BigInt for q/Q/l/L; c is a one-byte string', () => {
    const cases: Array<[string, unknown]> = [['i', -5], ['I', 7], ['d', 3.25], ['f', 1.5], ['h', -300], ['H', 65535], ['b', -7], ['B', 200], ['q', -(2n ** 40n)], ['Q', 2n ** 63n], ['l', 5n], ['L', 6n], ['c', 'x']];
    for (const [tc, v] of cases) {
      const value = Value(tc as 'i', v as number, o);
      assert.equal(value.value, v, tc);
      assert.equal(new RawValue(tc as 'i', v as number, o).value, v, tc);
    }
    assert.equal(Value('q', 5, o).value, 5n, 'a number is accepted for a BigInt typecode');
    assert.equal(Value('i', undefined, o).value, 0, 'zero-filled');
    assert.throws(() => Value('q', 1.5, o), TypeError);
    assert.throws(() => Value('c', 'xy', o), TypeError);
    assert.throws(() => Value('z' as 'i', 0, o), (e: Error) => e.name === 'TypeError');
    assert.equal(String(Value('i', 3, o)), '<Synchronized wrapper for c_int(3)>');
    assert.equal(String(new RawValue('c', 'a', o)), "c_char(b'a')");
  });

  test('Value: lock true/null/undefined gives a new RLock, a lock may be passed, false gives the raw object', () => {
    const a = Value('i', 1, o);
    assert.ok(a instanceof Synchronized);
    assert.ok(a.getLock() instanceof RLock);
    assert.ok(a.getObj() instanceof RawValue);
    assert.ok(Value('i', 1, { ...o, lock: null }).getLock() instanceof RLock);
    const lock = new Lock(o);
    const b = Value('i', 1, { ...o, lock });
    assert.equal(b.getLock(), lock);
    const raw = Value('i', 1, { ...o, lock: false });
    assert.ok(raw instanceof RawValue);
    assert.equal('getLock' in raw, false);
    assert.throws(() => Value('i', 1, { ...o, lock: 'navalue' as unknown as Lock }), TypeError);
    // callable and constructible
    const c = new (Value as unknown as new (t: 'd', v: number, opts: typeof o) => Synchronized<'d'>)('d', 2, o);
    assert.equal(c.value, 2);
  });

  test('factories are callable and constructible (docs/api.md rule 1): mp.RawValue/RawArray and every context factory', () => {
    const a = mp.RawValue('i', 1);
    const b = new mp.RawValue('i', 2);
    assert.ok(a instanceof RawValue && b instanceof RawValue && b instanceof mp.RawValue);
    assert.equal(mp.RawArray('i', 3).length, 3);
    const ctx = mp.getContext('thread');
    const made = [new ctx.Lock(), new ctx.RLock(), new ctx.Semaphore(2), new ctx.Event(), new ctx.Value('d', 1.5), new ctx.RawArray('i', 2)];
    assert.ok(made[0] instanceof mp.Lock && made[3] instanceof mp.Event);
    assert.equal((made[4] as Synchronized<'d'>).value, 1.5);
    assert.ok(made[0] instanceof ctx.Lock && !(made[1] instanceof ctx.Lock), 'instanceof a context factory is instanceof its class');
    assert.equal(ctx.Lock.name, 'Lock');
    const q = new ctx.Queue<number>();
    assert.ok(q instanceof mp.Queue && q instanceof ctx.Queue);
    q.close();
    const typed: number = new ctx.Value('d', 2.5).value; // the typecode's value type survives `new`
    assert.equal(typed, 2.5);
    assert.equal(mp.sharedctypes.RawValue('i', 4).value, 4, 'the sharedctypes namespace is callable too');
    assert.equal(mp.sharedctypes.RawValue, mp.RawValue);
    const [x, y] = new ctx.Pipe();
    assert.ok(x instanceof mp.Connection);
    x.close();
    y.close();
  });

  test('Array: length, get/set with negative indices, slice, toArray, iterator, view is the shared memory', async () => {
    const arr = SharedArray('i', [1, 2, 3, 4, 5], o);
    assert.ok(arr instanceof SynchronizedArray);
    assert.equal(arr.length, 5);
    assert.equal(arr.get(-1), 5);
    arr.set(0, 10);
    assert.deepEqual(arr.slice(1, 3), [2, 3]);
    assert.deepEqual(arr.toArray(), [10, 2, 3, 4, 5]);
    assert.deepEqual([...arr], [10, 2, 3, 4, 5]);
    arr.view[1] = 20;
    assert.equal(arr.get(1), 20);
    assert.ok(arr.view.buffer instanceof SharedArrayBuffer);
    assert.throws(() => arr.get(5), (e: Error) => e.name === 'IndexError');
    arr.setSlice(2, [7, 8]);
    assert.deepEqual(arr.toArray(), [10, 20, 7, 8, 5]);
    const zeros = SharedArray('d', 10, o);
    assert.deepEqual(zeros.toArray(), new globalThis.Array(10).fill(0));
    const big = new RawArray('Q', [1n, 2n], o);
    assert.deepEqual(big.toArray(), [1n, 2n]);
    const s = SharedArray('c', 'hello', o);
    assert.equal(s.value, 'hello');
    assert.equal(s.get(1), 'e');
    s.value = 'hi';
    assert.equal(s.value, 'hi');
    const raw = SharedArray('i', 3, { ...o, lock: false });
    assert.ok(raw instanceof RawArray);
    await arr.with(() => arr.getObj().set(0, 1));
    assert.equal(arr.get(0), 1);
  });

  test('copy() makes an independent duplicate; synchronized() wraps', () => {
    const a = new RawArray('i', [1, 2, 3], o);
    const b = copy(a);
    b.set(0, 9);
    assert.deepEqual(a.toArray(), [1, 2, 3]);
    assert.deepEqual(b.toArray(), [9, 2, 3]);
    const v = copy(new RawValue('d', 1.5, o));
    assert.equal(v.value, 1.5);
    const s = synchronized(a);
    assert.ok(s.getLock() instanceof RLock);
  });
});

for (const method of ['spawn', 'thread'] as const) {
  const ctx = mp.getContext(method);
  const o = { ctx };
  describe(`sharedctypes across ${method === 'thread' ? 'threads' : 'processes'}`, () => {
    for (const lock of [false, true]) {
      test(`a child doubles Values and Arrays in place (lock: ${lock})`, async () => {
        const x = Value('i', 7, { ...o, lock });
        const y = Value('d', 1.0 / 3.0, { ...o, lock });
        const foo = new RawValue('q', 3n, o);
        const arr = SharedArray('d', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => i * 0.25), { ...o, lock });
        const s = SharedArray('c', new globalThis.Array(20).fill(0), { ...o, lock });
        s.value = 'hello';
        await run(ctx, doubleAll, [x, y, foo, arr, s]);
        assert.equal(x.value, 14);
        assert.equal(y.value, 2.0 / 3.0);
        assert.equal(foo.value, 6n);
        assert.deepEqual(arr.toArray(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => i * 0.5));
        assert.equal(s.value, 'hellohello');
      });
    }

    test('a child computes a prefix sum in place; the lock travels with the array', async () => {
      const arr = SharedArray('i', [1, 2, 3, 4, 5, 6], o);
      await run(ctx, prefixSum, [arr]);
      assert.deepEqual(arr.toArray(), [1, 3, 6, 10, 15, 21]);
    });
  });
}
