/**
 * Shared ctypes, as CPython's sharedctypes.py: `Value`, `Array`, `RawValue`, `RawArray` over a
 * block of the shared heap (heap.ts), optionally guarded by a lock.
 *
 * Typecodes are Python's `array` codes: `b B h H i I l L q Q f d` (`l L q Q` are 64-bit and use
 * BigInt) and `c` (one byte, read and written as a one-character string). `RawArray.view` is the
 * typed array over the shared memory itself.
 */
import { IndexError, ValueError } from './errors.js';
import { allocate, attachBlock, blockState, checkTarget, freeWith, type Block, type BlockState, type MemoryKind } from './heap.js';
import { reduce, reduceSymbol, registerReducer, type ReduceContext, type Reduced } from './reduction.js';
import { LockWrapper, RLock, type Acquirable, type AcquireOptions } from './synchronize.js';
import { memoryKindFor, registerClasses, type MemoryOptions } from './context.js';
import { callable } from './util.js';

/** What each typecode reads and writes as. */
export interface TypecodeValue {
  b: number; B: number; h: number; H: number; i: number; I: number;
  l: bigint; L: bigint; q: bigint; Q: bigint;
  f: number; d: number; c: string;
}
export type Typecode = keyof TypecodeValue;

type TypedArrayFor<T extends Typecode> = T extends 'l' | 'q' ? BigInt64Array
  : T extends 'L' | 'Q' ? BigUint64Array
  : T extends 'b' ? Int8Array
  : T extends 'B' | 'c' ? Uint8Array
  : T extends 'h' ? Int16Array
  : T extends 'H' ? Uint16Array
  : T extends 'i' ? Int32Array
  : T extends 'I' ? Uint32Array
  : T extends 'f' ? Float32Array
  : T extends 'd' ? Float64Array
  : never;

type AnyTyped = Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

interface TypeInfo {
  ctor: new (buffer: ArrayBufferLike, byteOffset: number, length: number) => AnyTyped;
  size: number;
  ctype: string;
  big: boolean;
}

type ArrayClass = TypeInfo['ctor'] & { readonly BYTES_PER_ELEMENT: number };

/** A typecode's ctypes name (`c_` + `name`) and its array class; size and bigint-ness follow. */
function typeOf(name: string, ctor: ArrayClass): TypeInfo {
  return { ctor, size: ctor.BYTES_PER_ELEMENT, ctype: `c_${name}`, big: ctor === BigInt64Array || ctor === BigUint64Array };
}

/** Python's integer typecode pairs: lower case signed, upper case unsigned (`c_u` + name). */
function integerPair<S extends string, U extends string>(signed: S, unsigned: U, name: string, ctors: [ArrayClass, ArrayClass]): Record<S | U, TypeInfo> {
  return { [signed]: typeOf(name, ctors[0]), [unsigned]: typeOf(`u${name}`, ctors[1]) } as Record<S | U, TypeInfo>;
}

// As ctypes on 64-bit Linux: c_long is 8 bytes, like c_longlong.
const TYPES: Record<Typecode, TypeInfo> = {
  ...integerPair('b', 'B', 'byte', [Int8Array, Uint8Array]),
  ...integerPair('h', 'H', 'short', [Int16Array, Uint16Array]),
  ...integerPair('i', 'I', 'int', [Int32Array, Uint32Array]),
  ...integerPair('l', 'L', 'long', [BigInt64Array, BigUint64Array]),
  ...integerPair('q', 'Q', 'longlong', [BigInt64Array, BigUint64Array]),
  f: typeOf('float', Float32Array),
  d: typeOf('double', Float64Array),
  c: typeOf('char', Uint8Array),
};

function typeInfo(typecode: string): TypeInfo {
  const info = (TYPES as Record<string, TypeInfo | undefined>)[typecode];
  if (!info) throw new TypeError(`bad typecode (must be b, B, h, H, i, I, l, L, q, Q, f, d or c): ${JSON.stringify(typecode)}`);
  return info;
}

function toStored(typecode: Typecode, x: unknown): number | bigint {
  const info = TYPES[typecode];
  if (typecode === 'c') {
    if (typeof x === 'string' && x.length === 1 && x.charCodeAt(0) < 256) return x.charCodeAt(0);
    if (typeof x === 'number' && Number.isInteger(x) && x >= 0 && x < 256) return x;
    throw new TypeError(`one character string (code < 256) or integer 0..255 expected, got ${typeof x === 'string' ? JSON.stringify(x) : typeof x}`);
  }
  if (info.big) {
    if (typeof x === 'bigint') return x;
    if (typeof x === 'number' && Number.isInteger(x)) return BigInt(x);
    if (typeof x === 'boolean') return x ? 1n : 0n;
    throw new TypeError(`an integer is required for typecode '${typecode}' (a BigInt or an integral number), got ${typeof x}`);
  }
  if (typeof x === 'number') return x;
  if (typeof x === 'boolean') return x ? 1 : 0;
  if (typeof x === 'bigint') return Number(x);
  throw new TypeError(`a number is required for typecode '${typecode}', got ${typeof x}`);
}

export function fromStored<T extends Typecode>(typecode: T, v: number | bigint): TypecodeValue[T] {
  return (typecode === 'c' ? String.fromCharCode(v as number) : v) as TypecodeValue[T];
}

/** What a Value of `typecode` holds once `x` is written to it (the typed array's conversion: C's
 * truncation and wrap-around); the redis context's Values convert through it too. */
export function coerceValue(typecode: Typecode, x: unknown): number | bigint {
  const info = typeInfo(typecode);
  const cell = new info.ctor(new ArrayBuffer(info.size), 0, 1);
  cell[0] = toStored(typecode, x);
  return cell[0]!;
}

/** `old + delta` as a Value of `typecode` holds it; 'c' has no arithmetic (Python's TypeError). */
export function addedValue(typecode: Typecode, old: number | bigint, delta: unknown): number | bigint {
  if (typecode === 'c') throw new TypeError("unsupported operand type(s) for +: a 'c' Value holds one byte, not a number");
  if (TYPES[typecode].big) return coerceValue(typecode, (old as bigint) + (toStored(typecode, delta) as bigint));
  return coerceValue(typecode, (old as number) + (toStored(typecode, delta) as number));
}

/** Integer views of 1, 2, 4 and 8 bytes: a value's bytes for compare-and-swap. */
const BITS: Record<number, new (buffer: ArrayBufferLike, byteOffset: number, length: number) => Int8Array | Int16Array | Int32Array | BigInt64Array> = {
  1: Int8Array, 2: Int16Array, 4: Int32Array, 8: BigInt64Array,
};

function formatValue(typecode: Typecode, v: unknown): string {
  if (typecode === 'c') return `b${JSON.stringify(v)}`.replace(/"/g, "'");
  return String(v);
}

/** The options every factory here takes last (Python's `ctx=`; see context.ts's memoryKindFor). */
export type CtypesOptions = MemoryOptions;

/** A lock that can guard a shared ctype: `.value` and `get`/`set` take it synchronously. */
export interface CtypesLock {
  acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean>;
  acquireSync(options?: AcquireOptions | boolean, timeout?: number | null): boolean;
  release(): void;
}

export interface SynchronizedOptions extends CtypesOptions {
  /** true/null/undefined: a new RLock; false: the raw object; or a lock to use. */
  lock?: boolean | null | CtypesLock;
}

function allocateFor(owner: object, kind: MemoryKind, bytes: number, align: number): Block {
  const block = allocate(kind, bytes, align);
  freeWith(owner, block);
  return block;
}

// ---- raw objects -------------------------------------------------------------------------------

/** A shared scalar without a lock (Python's `RawValue`; exported callable and constructible below). */
class RawValueClass<T extends Typecode = Typecode> {
  static {
    Object.defineProperty(this, 'name', { value: 'RawValue' });
  }
  readonly typecode: T;
  /** @internal */ readonly _block: Block;
  private readonly _view: AnyTyped;

  constructor(typecode: T, value?: TypecodeValue[T] | number, options?: CtypesOptions);
  /** @internal */
  constructor(typecode: T, value: unknown, options: CtypesOptions | undefined, attach?: Block);
  constructor(typecode: T, value?: unknown, options?: CtypesOptions, attach?: Block) {
    const info = typeInfo(typecode);
    this.typecode = typecode;
    this._block = attach ?? allocateFor(this, memoryKindFor(options), info.size, info.size);
    this._view = new info.ctor(this._block.buffer, this._block.offset, 1);
    if (!attach && value !== undefined) this._view[0] = toStored(typecode, value);
  }

  get value(): TypecodeValue[T] {
    return fromStored(this.typecode, this._view[0]!);
  }
  set value(x: TypecodeValue[T]) {
    this._view[0] = toStored(this.typecode, x);
  }

  /** `value`, as a method: the form the redis context's Values have (`await v.get()` works on both). */
  get(): TypecodeValue[T] {
    return this.value;
  }
  set(x: TypecodeValue[T]): void {
    this.value = x;
  }

  /** Adds `delta` atomically (a compare-and-swap on the value's bytes, so concurrent adds from
   * other processes are never lost) and returns the new value; wraps around as C does. */
  add(delta: TypecodeValue[T] | number): TypecodeValue[T] {
    const info = TYPES[this.typecode];
    const bits = new BITS[info.size]!(this._block.buffer, this._block.offset, 1);
    const scratch = new ArrayBuffer(8);
    const scratchBits = new BITS[info.size]!(scratch, 0, 1);
    const scratchValue = new info.ctor(scratch, 0, 1);
    // (Atomics' overloads take either number or bigint arrays; both kinds go through here.)
    const cas = Atomics as unknown as {
      load(a: typeof bits, i: number): number | bigint;
      compareExchange(a: typeof bits, i: number, expected: number | bigint, value: number | bigint): number | bigint;
    };
    for (;;) {
      const before = cas.load(bits, 0);
      scratchBits[0] = before;
      scratchValue[0] = addedValue(this.typecode, scratchValue[0]!, delta);
      if (cas.compareExchange(bits, 0, before, scratchBits[0]!) === before) {
        return fromStored(this.typecode, scratchValue[0]!);
      }
    }
  }

  toString(): string {
    return `${TYPES[this.typecode].ctype}(${formatValue(this.typecode, this.value)})`;
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  [reduceSymbol](ctx: ReduceContext): Reduced {
    checkTarget(this._block, ctx.target, 'RawValue');
    return { kind: 'RawValue', state: { typecode: this.typecode, block: blockState(this._block) } };
  }
}
registerReducer('RawValue', (s: { typecode: Typecode; block: BlockState }) => new RawValueClass(s.typecode, undefined, undefined, attachBlock(s.block)));

/** Python's `RawValue(typecode, value)`, with or without `new` (docs/api.md rule 1). */
export const RawValue = callable(RawValueClass) as typeof RawValueClass & RawValueFactory;
export type RawValue<T extends Typecode = Typecode> = RawValueClass<T>;

/** A shared array without a lock (Python's `RawArray`; exported callable and constructible below). */
class RawArrayClass<T extends Typecode = Typecode> implements Iterable<TypecodeValue[T]> {
  static {
    Object.defineProperty(this, 'name', { value: 'RawArray' });
  }
  readonly typecode: T;
  /** The typed array over the shared memory itself. */
  readonly view: TypedArrayFor<T>;
  /** @internal */ readonly _block: Block;

  constructor(typecode: T, sizeOrValues: number | Iterable<TypecodeValue[T] | number>, options?: CtypesOptions);
  /** @internal */
  constructor(typecode: T, sizeOrValues: number | Iterable<unknown>, options: CtypesOptions | undefined, attach?: Block);
  constructor(typecode: T, sizeOrValues: number | Iterable<unknown>, options?: CtypesOptions, attach?: Block) {
    const info = typeInfo(typecode);
    this.typecode = typecode;
    let values: unknown[] | null = null;
    let length: number;
    if (typeof sizeOrValues === 'number') {
      if (!Number.isInteger(sizeOrValues) || sizeOrValues < 0) throw new ValueError(`array size must be a non-negative integer, got ${sizeOrValues}`);
      length = sizeOrValues;
    } else if (typeof sizeOrValues === 'string' && typecode === 'c') {
      values = [...(sizeOrValues as string)];
      length = values.length;
    } else {
      values = [...sizeOrValues];
      length = values.length;
    }
    if (attach) length = attach.length / info.size;
    this._block = attach ?? allocateFor(this, memoryKindFor(options), length * info.size, info.size);
    this.view = new info.ctor(this._block.buffer, this._block.offset, length) as TypedArrayFor<T>;
    if (!attach && values) {
      const view = this.view as AnyTyped;
      for (let i = 0; i < length; i++) view[i] = toStored(typecode, values[i]);
    }
  }

  get length(): number {
    return this.view.length;
  }

  private _index(i: number): number {
    const n = this.view.length;
    if (!Number.isInteger(i)) throw new TypeError('array indices must be integers');
    const j = i < 0 ? i + n : i;
    if (j < 0 || j >= n) throw new IndexError('invalid index');
    return j;
  }

  get(i: number): TypecodeValue[T] {
    return fromStored(this.typecode, this.view[this._index(i)]!);
  }

  set(i: number, x: TypecodeValue[T]): void {
    (this.view as AnyTyped)[this._index(i)] = toStored(this.typecode, x);
  }

  /** The values from `start` to `end` (negative counts from the end), as a plain array. */
  slice(start?: number, end?: number): TypecodeValue[T][] {
    const out: TypecodeValue[T][] = [];
    const part = (this.view as AnyTyped).slice(start, end);
    for (const v of part) out.push(fromStored(this.typecode, v));
    return out;
  }

  /** Writes `values` from index `start` on (Python's `a[start:start+len(values)] = values`). */
  setSlice(start: number, values: Iterable<TypecodeValue[T]>): void {
    const list = [...values];
    const n = this.view.length;
    const s = start < 0 ? Math.max(0, start + n) : start;
    if (s + list.length > n) throw new ValueError("Can only assign sequence of same size");
    for (let i = 0; i < list.length; i++) (this.view as AnyTyped)[s + i] = toStored(this.typecode, list[i]);
  }

  toArray(): TypecodeValue[T][] {
    return this.slice();
  }

  *[Symbol.iterator](): Iterator<TypecodeValue[T]> {
    for (let i = 0; i < this.view.length; i++) yield fromStored(this.typecode, this.view[i]!);
  }

  /** For 'c' arrays: the bytes up to the first NUL, as a string (Python's `.value`). */
  get value(): string {
    const bytes = this.view as Uint8Array;
    let end = bytes.indexOf(0);
    if (end < 0) end = bytes.length;
    return String.fromCharCode(...bytes.subarray(0, end));
  }
  set value(s: string) {
    if (s.length > this.view.length) throw new ValueError('byte string too long');
    const bytes = this.view as Uint8Array;
    for (let i = 0; i < s.length; i++) bytes[i] = toStored('c', s[i]) as number;
    if (s.length < bytes.length) bytes[s.length] = 0;
  }

  toString(): string {
    return `<${TYPES[this.typecode].ctype}_Array_${this.length} [${this.slice().map((v) => formatValue(this.typecode, v)).join(', ')}]>`;
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  [reduceSymbol](ctx: ReduceContext): Reduced {
    checkTarget(this._block, ctx.target, 'RawArray');
    return { kind: 'RawArray', state: { typecode: this.typecode, block: blockState(this._block) } };
  }
}
registerReducer('RawArray', (s: { typecode: Typecode; block: BlockState }) => new RawArrayClass(s.typecode, 0, undefined, attachBlock(s.block)));

/** Python's `RawArray(typecode, sizeOrValues)`, with or without `new` (docs/api.md rule 1). */
export const RawArray = callable(RawArrayClass) as typeof RawArrayClass & RawArrayFactory;
export type RawArray<T extends Typecode = Typecode> = RawArrayClass<T>;

// ---- synchronized wrappers ---------------------------------------------------------------------

function reduceLock(lock: CtypesLock, ctx: ReduceContext): unknown {
  return reduce(lock, ctx).graph;
}

abstract class SynchronizedBase<O extends RawValue | RawArray> extends LockWrapper {
  constructor(
    /** @internal */ protected readonly _obj: O,
    /** @internal */ protected readonly _lock: CtypesLock,
  ) {
    super();
  }

  getLock(): CtypesLock {
    return this._lock;
  }
  getObj(): O {
    return this._obj;
  }
  protected get wrappedLock(): Acquirable {
    return this._lock;
  }
  /** @internal Runs `fn` holding the lock (blocking this thread while another holds it). */
  protected _locked<R>(fn: () => R): R {
    this._lock.acquireSync();
    try {
      return fn();
    } finally {
      this._lock.release();
    }
  }
  override toString(): string {
    return `<Synchronized wrapper for ${this._obj.toString()}>`;
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

/** A shared scalar guarded by a lock; `.value` takes the lock for each get and each set (so
 * `v.value += 1` is not atomic: use `v.getLock().with(...)`). */
export class Synchronized<T extends Typecode = Typecode> extends SynchronizedBase<RawValue<T>> {
  get value(): TypecodeValue[T] {
    return this._locked(() => this._obj.value);
  }
  set value(x: TypecodeValue[T]) {
    this._locked(() => {
      this._obj.value = x;
    });
  }
  get typecode(): T {
    return this._obj.typecode;
  }

  /** `value`, as a method (each takes the lock): the redis context's Values' form. */
  get(): TypecodeValue[T] {
    return this.value;
  }
  set(x: TypecodeValue[T]): void {
    this.value = x;
  }

  /** Adds `delta` holding the lock, and returns the new value (`v.value += d` is not atomic). */
  add(delta: TypecodeValue[T] | number): TypecodeValue[T] {
    return this._locked(() => this._obj.add(delta));
  }

  [reduceSymbol](ctx: ReduceContext): Reduced {
    return { kind: 'Synchronized', state: { obj: this._obj[reduceSymbol](ctx).state, lock: reduceLock(this._lock, ctx) } };
  }
}
registerReducer('Synchronized', (s: { obj: { typecode: Typecode; block: BlockState }; lock: unknown }) => {
  const obj = new RawValueClass(s.obj.typecode, undefined, undefined, attachBlock(s.obj.block));
  return new Synchronized(obj, s.lock as CtypesLock);
});

/** A shared array guarded by a lock: `get`, `set`, `slice`, `toArray` each take it. */
export class SynchronizedArray<T extends Typecode = Typecode> extends SynchronizedBase<RawArray<T>> implements Iterable<TypecodeValue[T]> {
  get length(): number {
    return this._obj.length;
  }
  get typecode(): T {
    return this._obj.typecode;
  }
  /** The typed array over the shared memory itself (no lock). */
  get view(): TypedArrayFor<T> {
    return this._obj.view;
  }
  get(i: number): TypecodeValue[T] {
    return this._locked(() => this._obj.get(i));
  }
  set(i: number, x: TypecodeValue[T]): void {
    this._locked(() => this._obj.set(i, x));
  }
  slice(start?: number, end?: number): TypecodeValue[T][] {
    return this._locked(() => this._obj.slice(start, end));
  }
  setSlice(start: number, values: Iterable<TypecodeValue[T]>): void {
    this._locked(() => this._obj.setSlice(start, values));
  }
  toArray(): TypecodeValue[T][] {
    return this.slice();
  }
  [Symbol.iterator](): Iterator<TypecodeValue[T]> {
    return this.toArray()[Symbol.iterator]();
  }
  /** For 'c' arrays (Python's SynchronizedString): the string up to the first NUL. */
  get value(): string {
    return this._locked(() => this._obj.value);
  }
  set value(s: string) {
    this._locked(() => {
      this._obj.value = s;
    });
  }

  [reduceSymbol](ctx: ReduceContext): Reduced {
    return { kind: 'SynchronizedArray', state: { obj: this._obj[reduceSymbol](ctx).state, lock: reduceLock(this._lock, ctx) } };
  }
}
registerReducer('SynchronizedArray', (s: { obj: { typecode: Typecode; block: BlockState }; lock: unknown }) => {
  const obj = new RawArrayClass(s.obj.typecode, 0, undefined, attachBlock(s.obj.block));
  return new SynchronizedArray(obj, s.lock as CtypesLock);
});

function lockFor(lock: SynchronizedOptions['lock'], options: CtypesOptions | undefined, kind: MemoryKind): CtypesLock | null {
  if (lock === false) return null;
  if (lock === true || lock === null || lock === undefined) return new RLock(options?.ctx ? { ctx: options.ctx } : { memory: kind });
  if (typeof (lock as Partial<CtypesLock>).acquire !== 'function' || typeof (lock as Partial<CtypesLock>).acquireSync !== 'function') {
    throw new TypeError(`'${String(lock)}' has no method 'acquire' (a lock with acquire and acquireSync is required)`);
  }
  return lock;
}

// ---- factories (callable and constructible, docs/api.md rule 1) ----------------------------

export interface RawValueFactory {
  <T extends Typecode>(typecode: T, value?: TypecodeValue[T] | number, options?: CtypesOptions): RawValue<T>;
  new <T extends Typecode>(typecode: T, value?: TypecodeValue[T] | number, options?: CtypesOptions): RawValue<T>;
}

export interface RawArrayFactory {
  <T extends Typecode>(typecode: T, sizeOrValues: number | Iterable<TypecodeValue[T] | number>, options?: CtypesOptions): RawArray<T>;
  new <T extends Typecode>(typecode: T, sizeOrValues: number | Iterable<TypecodeValue[T] | number>, options?: CtypesOptions): RawArray<T>;
}

export interface ValueFactory {
  <T extends Typecode>(typecode: T, value: TypecodeValue[T] | number | undefined, options: SynchronizedOptions & { lock: false }): RawValue<T>;
  <T extends Typecode>(typecode: T, value?: TypecodeValue[T] | number, options?: SynchronizedOptions): Synchronized<T>;
  new <T extends Typecode>(typecode: T, value: TypecodeValue[T] | number | undefined, options: SynchronizedOptions & { lock: false }): RawValue<T>;
  new <T extends Typecode>(typecode: T, value?: TypecodeValue[T] | number, options?: SynchronizedOptions): Synchronized<T>;
}

export interface ArrayFactory {
  <T extends Typecode>(typecode: T, sizeOrValues: number | Iterable<TypecodeValue[T] | number>, options: SynchronizedOptions & { lock: false }): RawArray<T>;
  <T extends Typecode>(typecode: T, sizeOrValues: number | Iterable<TypecodeValue[T] | number>, options?: SynchronizedOptions): SynchronizedArray<T>;
  new <T extends Typecode>(typecode: T, sizeOrValues: number | Iterable<TypecodeValue[T] | number>, options: SynchronizedOptions & { lock: false }): RawArray<T>;
  new <T extends Typecode>(typecode: T, sizeOrValues: number | Iterable<TypecodeValue[T] | number>, options?: SynchronizedOptions): SynchronizedArray<T>;
}

/** Python's `multiprocessing.Value(typecode, value, lock=True)`. */
export const Value = function Value(typecode: Typecode, value?: unknown, options: SynchronizedOptions = {}) {
  const obj = new RawValue(typecode, value as number, { ctx: options.ctx });
  const lock = lockFor(options.lock, options, obj._block.kind);
  return lock ? new Synchronized(obj, lock) : obj;
} as unknown as ValueFactory;

const ArrayImpl = function Array(typecode: Typecode, sizeOrValues: number | Iterable<unknown>, options: SynchronizedOptions = {}) {
  const obj = new RawArray(typecode, sizeOrValues as number, { ctx: options.ctx });
  const lock = lockFor(options.lock, options, obj._block.kind);
  return lock ? new SynchronizedArray(obj, lock) : obj;
} as unknown as ArrayFactory;
export { ArrayImpl as Array };

/** Python's `sharedctypes.copy(obj)`: a new raw object with the same contents. */
export function copy<T extends Typecode>(obj: RawValue<T>, options?: CtypesOptions): RawValue<T>;
export function copy<T extends Typecode>(obj: RawArray<T>, options?: CtypesOptions): RawArray<T>;
export function copy<T extends Typecode>(obj: RawValue<T> | RawArray<T>, options?: CtypesOptions): RawValue<T> | RawArray<T> {
  const opts = options ?? { memory: obj._block.kind };
  if (obj instanceof RawValue) return new RawValue(obj.typecode, obj.value, opts);
  const out = new RawArray(obj.typecode, obj.length, opts);
  (out.view as AnyTyped).set(obj.view as never);
  return out;
}

/** Python's `sharedctypes.synchronized(obj, lock=None)`. */
export function synchronized<T extends Typecode>(obj: RawValue<T>, lock?: CtypesLock | null): Synchronized<T>;
export function synchronized<T extends Typecode>(obj: RawArray<T>, lock?: CtypesLock | null): SynchronizedArray<T>;
export function synchronized<T extends Typecode>(obj: RawValue<T> | RawArray<T>, lock?: CtypesLock | null): Synchronized<T> | SynchronizedArray<T> {
  if (obj instanceof Synchronized || obj instanceof SynchronizedArray) throw new ValueError('object already synchronized');
  const l = lockFor(lock ?? true, undefined, obj._block.kind)!;
  return obj instanceof RawValue ? new Synchronized(obj, l) : new SynchronizedArray(obj, l);
}

registerClasses({ RawValue, RawArray, Value, Array: ArrayImpl });
