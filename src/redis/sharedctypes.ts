/**
 * Value of the redis context (docs/api.md, "Beyond one machine"): one number (or one-byte string)
 * in Redis, typed as a local Value (`b B h H i I l L q Q f d c`, with C's truncation and wrap-around),
 * read and written with `await v.get()`, `await v.set(x)` and `await v.add(delta)`.
 *
 *   mp:value:{id}   HASH: typecode, value (decimal text), holders
 *
 * `get`, `set` and `add` are each atomic: `add` is one Lua script that computes in IEEE doubles
 * (exact for the 8-, 16- and 32-bit types; `f` is rounded to float32 in the script), and for the
 * 64-bit types, which Lua cannot hold, a compare-and-set of the decimal text that retries on a
 * concurrent change. A read-modify-write of your own takes `v.getLock()`, a redis RLock.
 */
import { AttributeError, ValueError } from '../errors.js';
import { addedValue, coerceValue, fromStored, type Typecode, type TypecodeValue } from '../sharedctypes.js';
import type { AcquireOptions } from '../synchronize.js';
import { withLock } from '../synchronize.js';
import { RedisScript } from './script.js';
import { LUA_GONE, RedisObject, registerHandle, type Birth, type ObjectSpace } from './objects.js';
import { Lock, RLock } from './synchronize.js';

const BIG = new Set<string>(['l', 'L', 'q', 'Q']);
const INTEGER_BITS: Record<string, [bits: number, signed: boolean]> = {
  b: [8, true], B: [8, false], h: [16, true], H: [16, false], i: [32, true], I: [32, false],
};

const GET = new RedisScript('value.get', `
${LUA_GONE}
return redis.call('HGET', KEYS[1], 'value')`);

const SET = new RedisScript('value.set', `
${LUA_GONE}
redis.call('HSET', KEYS[1], 'value', ARGV[1])
return 1`);

/** The 64-bit types: sets ARGV[2] if the value is still ARGV[1] (1), else 0. */
const COMPARE_AND_SET = new RedisScript('value.compareAndSet', `
${LUA_GONE}
if redis.call('HGET', KEYS[1], 'value') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'value', ARGV[2])
return 1`);

/** ARGV delta, kind ('int' bits signed | 'f' | 'd'): the new value, as text. */
const ADD = new RedisScript('value.add', `
${LUA_GONE}
local function text(x)
  if x ~= x then return 'NaN' end
  if x == math.huge then return 'Infinity' end
  if x == -math.huge then return '-Infinity' end
  return string.format('%.17g', x)
end
-- float32 rounding (round half to even), as Math.fround
local function fround(x)
  if x ~= x or x == 0 or x == math.huge or x == -math.huge then return x end
  local m, e = math.frexp(x)
  local bits = 24
  if e < -125 then bits = 24 - (-125 - e) end
  local scaled = m * 2 ^ bits
  local r = math.floor(scaled + 0.5)
  if r - scaled == 0.5 and r % 2 == 1 then r = r - 1 end
  local y = math.ldexp(r, e - bits)
  if y >= 2 ^ 128 then return math.huge end
  if y <= -(2 ^ 128) then return -math.huge end
  return y
end
local x = tonumber(redis.call('HGET', KEYS[1], 'value')) + tonumber(ARGV[1])
if ARGV[2] == 'int' then
  if x ~= x or x == math.huge or x == -math.huge then x = 0 end
  if x >= 0 then x = math.floor(x) else x = math.ceil(x) end
  local range = 2 ^ tonumber(ARGV[3])
  x = x % range
  if ARGV[4] == '1' and x >= range / 2 then x = x - range end
elseif ARGV[2] == 'f' then
  x = fround(x)
end
local out = text(x)
redis.call('HSET', KEYS[1], 'value', out)
return out`);

function notSynchronous(): TypeError {
  return new TypeError(
    'A Value of the redis context lives in Redis: read it with `await v.get()`, write it with ' +
      '`await v.set(x)` or `await v.add(delta)` (atomic); `v.value` works only on local Values.',
  );
}

function toText(stored: number | bigint): string {
  return typeof stored === 'bigint' ? stored.toString() : Object.is(stored, -0) ? '-0' : String(stored);
}

/** A number in Redis with atomic `get`, `set` and `add`, guarded for compound updates by `getLock()`. */
export class Value<T extends Typecode = Typecode> extends RedisObject {
  readonly typecode: T;
  private readonly _lock: Lock | RLock | null;

  /** @internal Made by `ctx.Value(typecode, value, { lock })` (`lock` null: `ctx.RawValue`);
   * `ownsLock`: the lock was made for it (or arrived with it), and is closed with it. */
  constructor(space: ObjectSpace, birth: Birth, typecode: T, value: unknown, lock: Lock | RLock | null, private readonly _ownsLock = true) {
    const initial = coerceValue(typecode, value ?? 0); // checks the typecode and the value first
    super(space, birth, { keyKind: 'value', kindName: 'Value' }, { typecode, value: toText(initial) });
    this.typecode = typecode;
    this._lock = lock;
  }

  /** Lets go of this handle, and of its lock's if the lock was made for it. */
  override async close(): Promise<void> {
    await super.close();
    if (this._ownsLock) await this._lock?.close();
  }

  /** Not readable or writable synchronously: the value lives in Redis (TypeError). */
  get value(): never {
    throw notSynchronous();
  }
  set value(_x: never) {
    throw notSynchronous();
  }

  private _parse(text: string): TypecodeValue[T] {
    if (BIG.has(this.typecode)) return BigInt(text) as TypecodeValue[T];
    return fromStored(this.typecode, Number(text));
  }

  async get(): Promise<TypecodeValue[T]> {
    return this._parse((await this._run(GET, [this._key], [])) as string);
  }

  async set(x: TypecodeValue[T]): Promise<void> {
    await this._run(SET, [this._key], [toText(coerceValue(this.typecode, x))]);
  }

  /** Adds `delta` atomically and returns the new value. */
  async add(delta: TypecodeValue[T] | number): Promise<TypecodeValue[T]> {
    const tc = this.typecode;
    if (BIG.has(tc)) {
      for (;;) {
        const before = (await this._run(GET, [this._key], [])) as string;
        const after = toText(addedValue(tc, BigInt(before), delta));
        if ((await this._run(COMPARE_AND_SET, [this._key], [before, after])) === 1) return this._parse(after);
      }
    }
    addedValue(tc, 0, delta); // checks the delta (and refuses 'c') as a local Value would
    const d = Number(delta);
    const [bits, signed] = INTEGER_BITS[tc] ?? [0, false];
    const kind = bits ? ['int', bits, signed ? '1' : '0'] : [tc];
    return this._parse((await this._run(ADD, [this._key], [toText(d), ...kind])) as string);
  }

  /** The redis RLock (or the lock given) that guards compound updates. */
  getLock(): Lock | RLock {
    if (!this._lock) throw new AttributeError("'RawValue' object has no attribute 'getLock' (made with lock: false)");
    return this._lock;
  }

  getObj(): this {
    return this;
  }

  acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean> {
    return this.getLock().acquire(options, timeout);
  }

  release(): Promise<void> {
    return this.getLock().release();
  }

  with<R>(fn: () => R | Promise<R>, options: Pick<AcquireOptions, 'signal'> = {}): Promise<R> {
    return withLock(this.getLock(), fn, options);
  }

  /** @internal */
  protected _state(): Record<string, unknown> {
    return { typecode: this.typecode, lock: this._lock };
  }

  override toString(): string {
    return `<redis ${this._lock ? 'Value' : 'RawValue'} '${this.typecode}' ${this._key}>`;
  }
}

/** The lock a Value is made with: `true`/undefined a new RLock, `false` none, or a redis lock. */
export function valueLock(lock: unknown, makeRLock: () => RLock): Lock | RLock | null {
  if (lock === false) return null;
  if (lock === true || lock === undefined || lock === null) return makeRLock();
  if (lock instanceof Lock || lock instanceof RLock) return lock;
  throw new ValueError('a Value of the redis context is guarded by a Lock or RLock of the redis context (or lock: true/false)');
}

registerHandle('Value', (space, birth, state: { typecode: Typecode; lock: Lock | RLock | null }) =>
  new Value(space, birth, state.typecode, undefined, state.lock));
