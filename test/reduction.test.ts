import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import { dumps, loads, loadsSync, needsRebuild } from '../src/reduction.js';

class Point {
  constructor(public x: number, public y: number) {}
  norm(): number {
    return Math.hypot(this.x, this.y);
  }
}
mp.serializable(Point);

const roundTrip = (value: unknown) => loadsSync(dumps(value));

describe('reduction: values crossing a boundary', () => {
  it('round-trips data exactly, on every encoding (JSON, bytes, float64 arrays, v8)', () => {
    const cases: unknown[] = [
      null, true, 0, 1.5, -3, 'text', '', [1, 'a', null], { a: 1, b: [true, { c: 'x' }] },
      undefined, NaN, -0, Infinity, 10n ** 30n, [undefined, 1], [1, , 3],
      new Uint8Array([0, 1, 255]), new Uint8Array(0), Buffer.from('buffer'), new Float32Array([1.5, 2]),
      Array.from({ length: 1000 }, (_, i) => i * 1.25), [NaN, -0, Infinity, -Infinity, ...Array(20).fill(7)],
      new Map<unknown, unknown>([[1, 'one'], ['1', 'string one']]), new Set([1, '1']), new Date(5), /re/g,
      'x'.repeat(100_000), Array.from({ length: 100 }, (_, i) => ({ i })),
    ];
    for (const value of cases) assert.deepEqual(roundTrip(value), value, `round trip of ${String(value).slice(0, 40)}`);
    assert.ok(Object.is((roundTrip([-0, ...Array(20).fill(1)]) as number[])[0], -0));
  });

  it('keeps cycles', () => {
    const a: Record<string, unknown> = { name: 'a' };
    a.self = a;
    const back = roundTrip(a) as Record<string, unknown>;
    assert.equal(back.self, back);
  });

  it('keeps the class of mp.serializable instances, and of errors', async () => {
    const p = (await loads(dumps(new Point(3, 4)))) as Point;
    assert.ok(p instanceof Point);
    assert.equal(p.norm(), 5);
    const e = roundTrip(new mp.ValueError('bad value')) as Error;
    assert.ok(e instanceof mp.ValueError);
    assert.equal(e.message, 'bad value');
    const t = roundTrip(new TypeError('wrong type', { cause: new RangeError('inner') })) as Error;
    assert.ok(t instanceof TypeError);
    assert.ok(t.cause instanceof RangeError);
    assert.equal(needsRebuild(dumps(new Point(1, 1))), true);
    assert.equal(needsRebuild(dumps([1, 2])), false);
  });

  it('refuses what cannot travel, naming its path, before anything is sent', () => {
    assert.throws(() => dumps({ args: [1, { cb: () => 1 }] }), (e: Error) => e.name === 'PicklingError' && /\.args\[1\]\.cb/.test(e.message) && /mp\.task/.test(e.message));
    assert.throws(() => dumps({ s: Symbol('x') }), mp.PicklingError);
    assert.throws(() => dumps([new WeakMap()]), /WeakMap/);
    assert.throws(() => dumps({ buf: new SharedArrayBuffer(8) }), /SharedArrayBuffer is shared only between threads/);
  });

  it('sends a task by reference and a self-contained function by source', async () => {
    const square = (await import('./fixtures/tasks.js')).square;
    const back = (await loads(dumps(square, undefined, { functionSlot: true }))) as (x: number) => number;
    assert.equal(back, square, 'the same function, found again by reference');
    const bySource = (await loads(dumps((a: number, b: number) => a * b, undefined, { functionSlot: true }))) as (a: number, b: number) => number;
    assert.equal(bySource(6, 7), 42);
    const offset = 2;
    assert.throws(() => dumps((x: number) => x + offset, undefined, { functionSlot: true }), (e: Error) => e.name === 'PicklingError' && /'offset'/.test(e.message));
  });
});
