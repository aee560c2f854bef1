/**
 * The containers a SyncManager's server holds (Python's builtin types behind `manager.dict()`,
 * `manager.list()`, `manager.Namespace()`, ...; the waiting primitives are in primitives.ts), and
 * what every referent shares: the caller of the current call, and how a proxy to one of the
 * server's own objects becomes that object.
 *
 * They live in the server process only; every call reaches them through the server. Errors are
 * Python's: `KeyError`, `IndexError`, `ValueError`, `RuntimeError`.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { IndexError, KeyError, RuntimeError, ValueError } from '../errors.js';
import { serializable } from '../tasks.js';
import { hashKey, pyCompare, pyEquals, pyRepr, pyReprSymbol, pyTypeName } from './pyvalues.js';

/** Who is calling, as the server sees it: the client's process/thread, and a signal that aborts
 * when the client's connection closes (so a waiting acquire stops waiting). */
export interface CallerContext {
  client: string;
  signal: AbortSignal;
}

export const callerContext = new AsyncLocalStorage<CallerContext>();

/** What `#GETVALUE` returns for a referent that is not plain data. */
export const getValueSymbol = Symbol.for('multiprocessing-ts.managers.getValue');

let resolveLocal: (value: unknown) => unknown = (value) => value;

/** Installed by the server: turns a proxy to one of its own objects into that object. */
export function setLocalResolver(resolver: (value: unknown) => unknown): void {
  resolveLocal = resolver;
}

/** `d.update(otherManagedDict)`, `Condition(managedLock)`: the object behind a local proxy. */
export function local(value: unknown): unknown {
  const v = resolveLocal(value);
  const getter = (v as { [getValueSymbol]?: () => unknown } | null)?.[getValueSymbol];
  return v !== value && typeof getter === 'function' ? getter.call(v) : v;
}

/** Gives a referent class its Python type name (what `type(obj).__name__` says on the server). */
export function named<C extends Function>(cls: C, name: string): C {
  Object.defineProperty(cls, 'name', { value: name });
  return cls;
}

// ---- containers ----------------------------------------------------------------------------

type Pairs<K, V> = Map<K, V> | Iterable<readonly [K, V]> | Record<string, V>;

function pairsOf<K, V>(init: unknown, what: string): Iterable<readonly [K, V]> {
  if (init === null || init === undefined) return [];
  if (init instanceof Map) return init as Map<K, V>;
  if (typeof (init as Iterable<unknown>)[Symbol.iterator] === 'function') {
    return [...(init as Iterable<unknown>)].map((pair, i) => {
      if (!Array.isArray(pair) || pair.length !== 2) {
        throw new ValueError(`${what} sequence element #${i} has length ${Array.isArray(pair) ? pair.length : 1}; 2 is required`);
      }
      return pair as unknown as readonly [K, V];
    });
  }
  if (typeof init === 'object') return Object.entries(init) as unknown as [K, V][];
  throw new TypeError(`'${typeof init}' object is not iterable`);
}

/** Python's `dict`: insertion-ordered, keys compared as src/managers/pyvalues.ts says. */
export class ManagedDict {
  /** hashKey(key) -> [key, value] */
  private readonly entries = new Map<unknown, [unknown, unknown]>();
  private version = 0;

  constructor(init?: Pairs<unknown, unknown> | null) {
    this.update(init);
  }

  getItem(key: unknown): unknown {
    const entry = this.entries.get(hashKey(key));
    if (!entry) throw new KeyError(pyRepr(key));
    return entry[1];
  }

  setItem(key: unknown, value: unknown): void {
    const h = hashKey(key);
    const entry = this.entries.get(h);
    if (entry) entry[1] = value;
    else {
      this.entries.set(h, [key, value]);
      this.version++;
    }
  }

  delItem(key: unknown): void {
    if (!this.entries.delete(hashKey(key))) throw new KeyError(pyRepr(key));
    this.version++;
  }

  has(key: unknown): boolean {
    return this.entries.has(hashKey(key));
  }

  len(): number {
    return this.entries.size;
  }

  get(key: unknown, defaultValue: unknown = null): unknown {
    const entry = this.entries.get(hashKey(key));
    return entry ? entry[1] : defaultValue;
  }

  keys(): unknown[] {
    return [...this.entries.values()].map(([k]) => k);
  }

  values(): unknown[] {
    return [...this.entries.values()].map(([, v]) => v);
  }

  items(): [unknown, unknown][] {
    return [...this.entries.values()].map(([k, v]) => [k, v]);
  }

  /** `pop(key)` raises KeyError for a missing key; `pop(key, default)` returns the default. */
  pop(key: unknown, ...defaultValue: unknown[]): unknown {
    const h = hashKey(key);
    const entry = this.entries.get(h);
    if (!entry) {
      if (defaultValue.length > 0) return defaultValue[0];
      throw new KeyError(pyRepr(key));
    }
    this.entries.delete(h);
    this.version++;
    return entry[1];
  }

  /** The last inserted pair (LIFO, as Python 3.7+). */
  popitem(): [unknown, unknown] {
    let last: [unknown, [unknown, unknown]] | undefined;
    for (const e of this.entries) last = e;
    if (!last) throw new KeyError('popitem(): dictionary is empty');
    this.entries.delete(last[0]);
    this.version++;
    return [last[1][0], last[1][1]];
  }

  setdefault(key: unknown, defaultValue: unknown = null): unknown {
    const h = hashKey(key);
    const entry = this.entries.get(h);
    if (entry) return entry[1];
    this.entries.set(h, [key, defaultValue]);
    this.version++;
    return defaultValue;
  }

  update(other?: Pairs<unknown, unknown> | null): void {
    for (const [k, v] of pairsOf(local(other), 'dictionary update')) this.setItem(k, v);
  }

  clear(): void {
    this.entries.clear();
    this.version++;
  }

  /** A local copy: a Map with the original keys. */
  copy(): Map<unknown, unknown> {
    return new Map([...this.entries.values()].map(([k, v]) => [k, v]));
  }

  /** Python's `dict.__iter__`: a live iterator over the keys that fails when the size changes
   * after it was made (the size is taken now, not at the first `next`, as Python's iterator does). */
  iter(): Generator<unknown, void, undefined> {
    const size = this.entries.size;
    const version = this.version;
    const entries = this.entries;
    const resized = (): boolean => entries.size !== size;
    const rekeyed = (): boolean => this.version !== version;
    return (function* keys() {
      for (const [k] of entries.values()) {
        if (resized()) throw new RuntimeError('dictionary changed size during iteration');
        if (rekeyed()) throw new RuntimeError('dictionary keys changed during iteration');
        yield k;
      }
      if (resized()) throw new RuntimeError('dictionary changed size during iteration');
    })();
  }

  [getValueSymbol](): Map<unknown, unknown> {
    return this.copy();
  }

  [pyReprSymbol](): string {
    return pyRepr(this.copy());
  }

  toString(): string {
    return this[pyReprSymbol]();
  }
}
named(ManagedDict, 'dict');
serializable(ManagedDict);

function normIndex(i: unknown, length: number, message: string): number {
  if (typeof i === 'bigint') i = Number(i);
  if (typeof i !== 'number' || !Number.isInteger(i)) {
    throw new TypeError(`list indices must be integers or slices, not ${typeof i === 'number' ? 'float' : typeof i}`);
  }
  const j = i < 0 ? i + length : i;
  if (j < 0 || j >= length) throw new IndexError(message);
  return j;
}

function clampSlice(i: number | null | undefined, length: number, fallback: number): number {
  if (i === null || i === undefined) return fallback;
  if (i < 0) return Math.max(0, i + length);
  return Math.min(i, length);
}

/** Python's `list`. */
export class ManagedList {
  private readonly items: unknown[];

  constructor(init?: Iterable<unknown> | null) {
    this.items = init === null || init === undefined ? [] : [...init];
  }

  getItem(index: number): unknown {
    return this.items[normIndex(index, this.items.length, 'list index out of range')];
  }

  setItem(index: number, value: unknown): void {
    this.items[normIndex(index, this.items.length, 'list assignment index out of range')] = value;
  }

  delItem(index: number): void {
    this.items.splice(normIndex(index, this.items.length, 'list assignment index out of range'), 1);
  }

  /** `l[start:stop]` as a local array (Python's slice of `__getitem__`). */
  slice(start?: number | null, stop?: number | null): unknown[] {
    const n = this.items.length;
    return this.items.slice(clampSlice(start, n, 0), clampSlice(stop, n, n));
  }

  has(value: unknown): boolean {
    return this.items.some((x) => pyEquals(x, value));
  }

  len(): number {
    return this.items.length;
  }

  append(value: unknown): void {
    this.items.push(value);
  }

  extend(values: Iterable<unknown>): void {
    values = local(values) as Iterable<unknown>;
    if (values === null || values === undefined || typeof (values as Iterable<unknown>)[Symbol.iterator] !== 'function') {
      throw new TypeError(`'${values === null ? 'NoneType' : typeof values}' object is not iterable`);
    }
    // A copy first: `l.extend(l)` doubles once.
    this.items.push(...[...values]);
  }

  insert(index: number, value: unknown): void {
    const n = this.items.length;
    this.items.splice(clampSlice(index, n, n), 0, value);
  }

  pop(index = -1): unknown {
    if (this.items.length === 0) throw new IndexError('pop from empty list');
    const i = normIndex(index, this.items.length, 'pop index out of range');
    return this.items.splice(i, 1)[0];
  }

  remove(value: unknown): void {
    const i = this.items.findIndex((x) => pyEquals(x, value));
    if (i < 0) throw new ValueError('list.remove(x): x not in list');
    this.items.splice(i, 1);
  }

  index(value: unknown, start?: number | null, stop?: number | null): number {
    const n = this.items.length;
    const from = clampSlice(start, n, 0);
    const to = clampSlice(stop, n, n);
    for (let i = from; i < to; i++) if (pyEquals(this.items[i], value)) return i;
    throw new ValueError(`${pyRepr(value)} is not in list`);
  }

  count(value: unknown): number {
    return this.items.filter((x) => pyEquals(x, value)).length;
  }

  reverse(): void {
    this.items.reverse();
  }

  /** Stable, as Python's; `key` must be a function the server can call (an `mp.task`). */
  sort(options: { key?: ((x: unknown) => unknown) | null; reverse?: boolean } = {}): void {
    const key = options?.key ?? ((x: unknown) => x);
    const decorated = this.items.map((x, i) => ({ k: key(x), x, i }));
    decorated.sort((a, b) => pyCompare(a.k, b.k) * (options?.reverse ? -1 : 1) || a.i - b.i);
    decorated.forEach((d, i) => (this.items[i] = d.x));
  }

  clear(): void {
    this.items.length = 0;
  }

  copy(): unknown[] {
    return [...this.items];
  }

  /** `l *= n` (Python's `__imul__`). */
  imul(n: number): void {
    const repeated = this.mul(n);
    this.items.length = 0;
    this.items.push(...repeated);
  }

  /** `l + other` (Python's `__add__`): a new list, returned as a copy. */
  add(other: unknown): unknown[] {
    if (!Array.isArray(other)) throw new TypeError(`can only concatenate list (not "${pyTypeName(other)}") to list`);
    return [...this.items, ...other];
  }

  /** `l * n` and `n * l` (Python's `__mul__`, `__rmul__`): a new list, returned as a copy. */
  mul(n: number): unknown[] {
    if (!Number.isInteger(n)) throw new TypeError(`can't multiply sequence by non-int of type '${pyTypeName(n)}'`);
    const out: unknown[] = [];
    for (let i = 0; i < n; i++) out.push(...this.items);
    return out;
  }

  [getValueSymbol](): unknown[] {
    return this.copy();
  }

  [pyReprSymbol](): string {
    return pyRepr(this.items);
  }

  toString(): string {
    return this[pyReprSymbol]();
  }
}
named(ManagedList, 'list');
serializable(ManagedList);

function iterable(values: unknown): Iterable<unknown> {
  if (values === null || values === undefined || typeof (values as Iterable<unknown>)[Symbol.iterator] !== 'function') {
    throw new TypeError(`'${values === null || values === undefined ? 'NoneType' : typeof values}' object is not iterable`);
  }
  return values as Iterable<unknown>;
}

/** Python's `set` (3.14's SetProxy). */
export class ManagedSet {
  private readonly items = new Map<unknown, unknown>();

  constructor(init?: Iterable<unknown> | null) {
    if (init !== null && init !== undefined) for (const v of iterable(init)) this.add(v);
  }

  private static from(values: Iterable<unknown>): Map<unknown, unknown> {
    const out = new Map<unknown, unknown>();
    for (const v of iterable(local(values))) out.set(hashKey(v), v);
    return out;
  }

  add(value: unknown): void {
    const h = hashKey(value);
    if (!this.items.has(h)) this.items.set(h, value);
  }

  discard(value: unknown): void {
    this.items.delete(hashKey(value));
  }

  remove(value: unknown): void {
    if (!this.items.delete(hashKey(value))) throw new KeyError(pyRepr(value));
  }

  pop(): unknown {
    const first = this.items.entries().next();
    if (first.done) throw new KeyError('pop from an empty set');
    this.items.delete(first.value[0]);
    return first.value[1];
  }

  has(value: unknown): boolean {
    return this.items.has(hashKey(value));
  }

  len(): number {
    return this.items.size;
  }

  clear(): void {
    this.items.clear();
  }

  copy(): Set<unknown> {
    return new Set(this.items.values());
  }

  union(...others: Iterable<unknown>[]): Set<unknown> {
    const out = new Map(this.items);
    for (const o of others) for (const [h, v] of ManagedSet.from(o)) if (!out.has(h)) out.set(h, v);
    return new Set(out.values());
  }

  intersection(...others: Iterable<unknown>[]): Set<unknown> {
    const sets = others.map((o) => ManagedSet.from(o));
    return new Set([...this.items].filter(([h]) => sets.every((s) => s.has(h))).map(([, v]) => v));
  }

  difference(...others: Iterable<unknown>[]): Set<unknown> {
    const sets = others.map((o) => ManagedSet.from(o));
    return new Set([...this.items].filter(([h]) => !sets.some((s) => s.has(h))).map(([, v]) => v));
  }

  symmetricDifference(other: Iterable<unknown>): Set<unknown> {
    const o = ManagedSet.from(other);
    const out = [...this.items].filter(([h]) => !o.has(h)).map(([, v]) => v);
    for (const [h, v] of o) if (!this.items.has(h)) out.push(v);
    return new Set(out);
  }

  update(...others: Iterable<unknown>[]): void {
    for (const o of others) for (const v of iterable(local(o))) this.add(v);
  }

  intersectionUpdate(...others: Iterable<unknown>[]): void {
    const keep = this.intersection(...others);
    this.items.clear();
    for (const v of keep) this.add(v);
  }

  differenceUpdate(...others: Iterable<unknown>[]): void {
    for (const o of others) for (const v of iterable(o)) this.discard(v);
  }

  symmetricDifferenceUpdate(other: Iterable<unknown>): void {
    const result = this.symmetricDifference(other);
    this.items.clear();
    for (const v of result) this.add(v);
  }

  isdisjoint(other: Iterable<unknown>): boolean {
    for (const h of ManagedSet.from(other).keys()) if (this.items.has(h)) return false;
    return true;
  }

  issubset(other: Iterable<unknown>): boolean {
    const o = ManagedSet.from(other);
    return [...this.items.keys()].every((h) => o.has(h));
  }

  issuperset(other: Iterable<unknown>): boolean {
    return [...ManagedSet.from(other).keys()].every((h) => this.items.has(h));
  }

  [getValueSymbol](): Set<unknown> {
    return this.copy();
  }

  [pyReprSymbol](): string {
    return pyRepr(this.copy());
  }

  toString(): string {
    return this[pyReprSymbol]();
  }
}
named(ManagedSet, 'set');
serializable(ManagedSet);

/** Python's `managers.Namespace`: attributes, forwarded by the proxy's get/set/delete. */
export class Namespace {
  constructor(init?: Record<string, unknown> | null) {
    if (init) Object.assign(this, init);
  }

  [pyReprSymbol](): string {
    const items = Object.entries(this)
      .filter(([k]) => !k.startsWith('_'))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${k}=${pyRepr(v)}`);
    return `Namespace(${items.join(', ')})`;
  }

  toString(): string {
    return this[pyReprSymbol]();
  }
}
serializable(Namespace);

const integerTypecodes = new Set(['b', 'B', 'h', 'H', 'i', 'I', 'l', 'L', 'q', 'Q']);

function checkItem(typecode: string, value: unknown): unknown {
  if (integerTypecodes.has(typecode)) {
    if (typeof value === 'bigint') return value;
    if (typeof value !== 'number' || !Number.isInteger(value)) {
      throw new TypeError(`'${typeof value === 'number' ? 'float' : typeof value}' object cannot be interpreted as an integer`);
    }
  } else if (typecode === 'f' || typecode === 'd') {
    if (typeof value !== 'number') throw new TypeError(`must be real number, not ${typeof value}`);
  }
  return value;
}

/** Python's `managers.Value(typecode, value)`: a plain box (the `lock` argument is ignored). */
export class ManagedValue {
  constructor(
    readonly typecode: string,
    public value: unknown,
  ) {}

  get(): unknown {
    return this.value;
  }

  set(value: unknown): void {
    this.value = value;
  }

  [getValueSymbol](): unknown {
    return this.value;
  }

  [pyReprSymbol](): string {
    return `Value(${pyRepr(this.typecode)}, ${pyRepr(this.value)})`;
  }

  toString(): string {
    return this[pyReprSymbol]();
  }
}
named(ManagedValue, 'Value');
serializable(ManagedValue);

/** Python's `array.array(typecode, sequence)` behind `manager.Array`. */
export class ManagedArray {
  private readonly items: unknown[];

  constructor(
    readonly typecode: string,
    sequence: Iterable<unknown> | number = [],
  ) {
    this.items = typeof sequence === 'number' ? new Array<unknown>(sequence).fill(0) : [...sequence].map((v) => checkItem(typecode, v));
  }

  len(): number {
    return this.items.length;
  }

  getItem(index: number): unknown {
    return this.items[normIndex(index, this.items.length, 'array index out of range')];
  }

  setItem(index: number, value: unknown): void {
    this.items[normIndex(index, this.items.length, 'array assignment index out of range')] = checkItem(this.typecode, value);
  }

  [getValueSymbol](): unknown[] {
    return [...this.items];
  }

  [pyReprSymbol](): string {
    return `array(${pyRepr(this.typecode)}, ${pyRepr(this.items)})`;
  }

  toString(): string {
    return this[pyReprSymbol]();
  }
}
named(ManagedArray, 'array.array');
serializable(ManagedArray);

/** What a method listed in `methodToTypeid` as 'Iterator' returns: a live iterator. */
export class ManagedIterator {
  constructor(private readonly it: Iterator<unknown> | AsyncIterator<unknown>) {}

  async next(value?: unknown): Promise<IteratorResult<unknown>> {
    const r = await this.it.next(value);
    return { done: r.done ?? false, value: r.value } as IteratorResult<unknown>;
  }

  async return(value?: unknown): Promise<IteratorResult<unknown>> {
    const r = this.it.return ? await this.it.return(value) : { done: true as const, value };
    return { done: r.done ?? true, value: r.value } as IteratorResult<unknown>;
  }

  async throw(error?: unknown): Promise<IteratorResult<unknown>> {
    if (!this.it.throw) throw error;
    const r = await this.it.throw(error);
    return { done: r.done ?? false, value: r.value } as IteratorResult<unknown>;
  }
}
named(ManagedIterator, 'generator');
serializable(ManagedIterator);

/** Wraps whatever a method returned for the 'Iterator' typeid. */
export function toManagedIterator(value: unknown): ManagedIterator {
  if (value instanceof ManagedIterator) return value;
  const v = value as Partial<Iterator<unknown> & AsyncIterator<unknown> & Iterable<unknown> & AsyncIterable<unknown>>;
  if (typeof v?.next === 'function') return new ManagedIterator(v as Iterator<unknown>);
  if (typeof v?.[Symbol.asyncIterator] === 'function') return new ManagedIterator(v[Symbol.asyncIterator]!());
  if (typeof v?.[Symbol.iterator] === 'function') return new ManagedIterator(v[Symbol.iterator]!());
  throw new TypeError(`'${typeof value}' object is not an iterator`);
}
