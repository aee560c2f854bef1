/**
 * The client side of a manager (CPython's `BaseProxy` and friends): proxies, reference counting,
 * how a proxy travels to another process, and the typed proxies of SyncManager.
 *
 * Calls travel over the sessions of sessions.ts.
 *
 * References: the server counts one reference per live proxy. A proxy made by the manager takes
 * the reference the server created with the object; a proxy that arrives from another process
 * increfs; every proxy decrefs when it is garbage-collected (FinalizationRegistry) or when its
 * process exits. A proxy that arrives inside the server process itself (stored in a managed
 * container) is "manager owned": it pins its object on the server instead.
 */
import { inspect } from 'node:util';
import { type Address } from '../connection.js';
import { AttributeError, TimeoutError, ValueError } from '../errors.js';
import { currentProcess, parentProcess } from '../process.js';
import { reduceSymbol, registerReducer, type Reduced } from '../reduction.js';
import { task } from '../tasks.js';
import { finalize, raceTimeout } from '../util.js';
import { normalizeAcquire, withLock, type AcquireOptions } from '../synchronize.js';
import { currentServer, sameAddress, type Token } from './server.js';
import { itemsByIndex } from './pyvalues.js';
import { deadlineAfter, secondsUntil } from '../futex.js';

import { connectionsTo, convertToError, type ManagerConnections } from './sessions.js';

export type { Token } from './server.js';

// ---- reference counting -----------------------------------------------------------------------

interface HeldReference {
  pool: ManagerConnections;
  id: string;
  done: boolean;
}

const liveReferences = new Set<HeldReference>();

function release(held: HeldReference): void {
  if (held.done) return;
  held.done = true;
  liveReferences.delete(held);
  if (!held.pool.closed) held.pool.dispatch('decref', [held.id]).catch(() => {});
}

const collected = new FinalizationRegistry<HeldReference>(release);

/** Decrefs what this process still holds (Python's exit-time Finalize, priority 10). */
async function releaseAll(): Promise<void> {
  const pending = [...liveReferences];
  await Promise.allSettled(
    pending.map(async (held) => {
      if (held.done) return;
      held.done = true;
      liveReferences.delete(held);
      if (!held.pool.closed) await held.pool.dispatch('decref', [held.id]);
    }),
  );
}
finalize(releaseAll, 10);
let releasedAtExit = false;
process.on('beforeExit', () => {
  if (releasedAtExit || liveReferences.size === 0) return;
  releasedAtExit = true;
  void releaseAll();
});

// Proxies just sent to another process stay alive here for a few seconds, so the receiver's incref
// lands before this side's decref can (a proxy passed as a Process arg and dropped at once).
let sentNow = new Set<BaseProxy>();
let sentBefore = new Set<BaseProxy>();
let sweeper: NodeJS.Timeout | undefined;
function keepBriefly(proxy: BaseProxy): void {
  sentNow.add(proxy);
  sweeper ??= setInterval(() => {
    sentBefore = sentNow;
    sentNow = new Set();
    if (sentBefore.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  }, 5000).unref();
}

/** Resolves once this process knows its own process object (at once, except while a child is
 * rebuilding its start payload, whose proxies arrive before its `currentProcess()` does). */
function bootstrapped(): Promise<void> {
  const startedByUs = (globalThis as unknown as Record<symbol, unknown>)[Symbol.for('multiprocessing-ts.child')] === true;
  if (!startedByUs || parentProcess() !== null) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const started = Date.now();
    const check = (): void => {
      if (parentProcess() !== null || Date.now() - started > 10_000) resolve();
      else setImmediate(check);
    };
    setImmediate(check);
  });
}

// ---- BaseProxy -------------------------------------------------------------------------------

export interface ProxyOptions {
  manager?: { readonly address: Address | null } | null;
  authkey?: Uint8Array | null;
  exposed?: readonly string[] | null;
  /** Take a new reference on the server (false: the proxy owns the reference that came with it). */
  incref?: boolean;
  /** Inside the server process: no reference counting, the object is pinned. */
  managerOwned?: boolean;
}

/** A proxy class: constructed with a token and options, as Python's `proxytype(token, ...)`. */
export type ProxyType<P extends BaseProxy = BaseProxy> = new (token: Token, options?: ProxyOptions) => P;

export interface CallOptions {
  signal?: AbortSignal;
}

/** Python's `BaseProxy`: a handle on an object that lives in a manager's server. */
export class BaseProxy {
  /** The names a proxy of this class calls by default (Python's `_exposed_`). */
  static _exposed_: readonly string[] | null = null;
  /** Methods whose result comes back as a new proxy (Python's `_method_to_typeid_`). */
  static _methodToTypeid_: Readonly<Record<string, string>> | null = null;

  readonly _token: Token;
  readonly _exposed: readonly string[] | null;
  readonly _managerOwned: boolean;
  readonly _manager: ProxyOptions['manager'];
  #authkey: Uint8Array | null;
  #pool: ManagerConnections | null = null;
  #ready: Promise<void> | null = null;

  constructor(token: Token, options: ProxyOptions = {}) {
    this._token = token;
    this.#authkey = options.authkey ? Uint8Array.from(options.authkey) : null;
    this._exposed = options.exposed ?? null;
    this._managerOwned = options.managerOwned ?? false;
    this._manager = options.manager ?? null;
    Object.defineProperties(this, {
      _token: { enumerable: false },
      _exposed: { enumerable: false },
      _managerOwned: { enumerable: false },
      _manager: { enumerable: false },
    });
    if (this._managerOwned) return;
    if (options.incref ?? true) {
      // A proxy rebuilt while a child starts must use the child's authkey, known once the child's
      // process object is in place: the incref (and the authkey) wait for that.
      const turn = this.#authkey ? Promise.resolve() : bootstrapped();
      this.#ready = turn
        .then(() => this.#connections().dispatch('incref', [token.id]))
        .then(() => {
          this.#track();
          this.#ready = null;
        });
      this.#ready.catch(() => {});
    } else {
      this.#track();
    }
  }

  /** The key this proxy proves to the server: its manager's, or this process's own. */
  get _authkey(): Uint8Array {
    return (this.#authkey ??= currentProcess().authkey);
  }

  #connections(): ManagerConnections {
    return (this.#pool ??= connectionsTo(this._token.address, this._authkey));
  }

  #track(): void {
    const held: HeldReference = { pool: this.#connections(), id: this._token.id, done: false };
    liveReferences.add(held);
    collected.register(this, held);
  }

  /** Calls `methodname(...args)` on the referent (Python's `_callmethod`). */
  async _callmethod<R = unknown>(methodname: string, args: readonly unknown[] = [], options: CallOptions = {}): Promise<R> {
    if (this.#ready) await this.#ready;
    const [kind, result] = await this.#connections().call([this._token.id, methodname, [...args], null], options.signal);
    if (kind === '#RETURN') return result as R;
    if (kind === '#PROXY') {
      const [exposed, token] = result as [readonly string[], Token];
      const proxytype = proxyTypeFor(token.typeid, exposed);
      return new proxytype(token, { manager: this._manager, authkey: this._authkey, exposed, incref: false }) as R;
    }
    throw convertToError(kind, result);
  }

  /** A copy of the referent (Python's `_getvalue`). */
  _getvalue<R = unknown>(): Promise<R> {
    return this._callmethod<R>('#GETVALUE');
  }

  /** The referent's `repr()` on the server (Python's `str(proxy)`). */
  str(): Promise<string> {
    return this._callmethod<string>('__str__');
  }

  /** The referent's `repr()` on the server. */
  repr(): Promise<string> {
    return this._callmethod<string>('__repr__');
  }

  /** Local, as Python's `repr(proxy)`: `<DictProxy object, typeid 'dict' at 0x1>`. */
  toString(): string {
    return `<${this.constructor.name} object, typeid '${this._token.typeid}' at 0x${this._token.id}>`;
  }

  [inspect.custom](): string {
    return this.toString();
  }

  /** Travels as its token (and proxy class); the receiver reconnects with its own authkey, as in
   * Python, unless the manager has one of its own. */
  [reduceSymbol](): Reduced {
    keepBriefly(this);
    const cls = this.constructor as ProxyType & { _isAuto?: boolean };
    const ownKey = this.#authkey !== null && Buffer.compare(Buffer.from(this.#authkey), Buffer.from(currentProcess().authkey)) !== 0;
    return {
      kind: 'managers.Proxy',
      state: {
        // A task reference: the receiver imports this module (and so its reducer) first, as
        // unpickling Python's RebuildProxy imports multiprocessing.managers.
        module: loadProxies,
        cls: cls._isAuto ? null : builtinProxyNames.get(cls) ?? cls.name,
        token: this._token,
        exposed: this._exposed,
        authkey: ownKey ? this.#authkey : null,
      },
    };
  }
}

/** Referenced by every reduced proxy so that the receiving process imports this module. */
const loadProxies = task(() => undefined, { module: import.meta.url });

interface ProxyState {
  cls: string | null;
  token: Token;
  exposed: readonly string[] | null;
  authkey: Uint8Array | null;
}

/** Python's `RebuildProxy`. */
function rebuildProxy(state: ProxyState): BaseProxy {
  const { token, exposed } = state;
  const server = currentServer();
  const managerOwned = server !== null && sameAddress(server.address, token.address);
  if (managerOwned) server.pinLocal(token.id);
  const cls = (state.cls && proxyTypesByName.get(state.cls)) || proxyTypeFor(token.typeid, exposed ?? []);
  return new cls(token, { authkey: state.authkey, exposed, incref: !managerOwned, managerOwned });
}
registerReducer('managers.Proxy', rebuildProxy);

// ---- proxy types by typeid and by name ---------------------------------------------------------

const proxyTypesByName = new Map<string, ProxyType>();
const builtinProxyNames = new Map<Function, string>();
const proxyTypesByTypeid = new Map<string, ProxyType>();

/** Records a proxy class so proxies of it can be rebuilt in other processes by name. */
export function recordProxyType(typeid: string | null, cls: ProxyType): void {
  if (!(cls as { _isAuto?: boolean })._isAuto) {
    if (!proxyTypesByName.has(cls.name)) proxyTypesByName.set(cls.name, cls);
  }
  if (typeid !== null) proxyTypesByTypeid.set(typeid, cls);
}

function proxyTypeFor(typeid: string, exposed: readonly string[]): ProxyType {
  const known = proxyTypesByTypeid.get(typeid);
  if (known && !(known as { _isAuto?: boolean })._isAuto) return known;
  return AutoProxy(typeid, exposed);
}

/** What an AutoProxy's methods look like for a referent of type `T`. */
export type Proxied<T> = BaseProxy & {
  [K in keyof T as T[K] extends (...args: never[]) => unknown ? K : never]: T[K] extends (...args: infer A) => infer R
    ? (...args: A) => Promise<Awaited<R>>
    : never;
};

const proxyTypeCache = new Map<string, ProxyType>();

/** Python's `MakeProxyType(name, exposed)`: a proxy class with one forwarding method per name. */
export function MakeProxyType(name: string, exposed: readonly string[]): ProxyType {
  const key = `${name}|${exposed.join(',')}`;
  const cached = proxyTypeCache.get(key);
  if (cached) return cached;
  const cls = { [name]: class extends BaseProxy {} }[name]!;
  cls._exposed_ = exposed;
  for (const method of exposed) {
    if (method in BaseProxy.prototype) continue;
    Object.defineProperty(cls.prototype, method, {
      value: function (this: BaseProxy, ...args: unknown[]) {
        return this._callmethod(method, args);
      },
      writable: true,
      configurable: true,
    });
  }
  proxyTypeCache.set(key, cls);
  return cls;
}

/** Python's `AutoProxy`: a proxy class made from the methods the referent exposes. */
export function AutoProxy(typeid: string, exposed: readonly string[]): ProxyType {
  const cls = MakeProxyType(`AutoProxy[${typeid}]`, exposed);
  Object.defineProperty(cls, '_isAuto', { value: true });
  return cls;
}
Object.defineProperty(AutoProxy, '_isAuto', { value: true });

// ---- the typed proxies of SyncManager ------------------------------------------------------------

/** A proxy's live iterator (Python's `IteratorProxy`): `for await (const x of it)`. */
export class IteratorProxy<T = unknown> extends BaseProxy implements AsyncIterableIterator<T> {
  static override _exposed_ = ['next', 'return', 'throw'];

  next(value?: unknown): Promise<IteratorResult<T>> {
    return this._callmethod<IteratorResult<T>>('next', value === undefined ? [] : [value]);
  }

  return(value?: unknown): Promise<IteratorResult<T>> {
    return this._callmethod<IteratorResult<T>>('return', value === undefined ? [] : [value]);
  }

  throw(error?: unknown): Promise<IteratorResult<T>> {
    return this._callmethod<IteratorResult<T>>('throw', [error]);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}

/** Python's `AcquirerProxy` (manager Lock, RLock, Semaphore, BoundedSemaphore). */
export class AcquirerProxy extends BaseProxy {
  static override _exposed_ = ['acquire', 'release'];

  /** `{ block, timeout, signal }` or `(block, timeout)`, as `mp.Lock`'s; resolves to whether the lock was taken. */
  acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean> {
    const o = normalizeAcquire(options, timeout);
    const args = o.block ? [true, o.timeout ?? null] : [false];
    return this._callmethod<boolean>('acquire', args, { signal: o.signal });
  }

  release(): Promise<void> {
    return this._callmethod<void>('release');
  }

  /** Python's `__exit__` (`await using` after an acquire): releases. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  /** Acquire, run `fn`, release (Python's `with lock:`). */
  with<R>(fn: () => R | Promise<R>, options: Pick<AcquireOptions, 'signal'> = {}): Promise<R> {
    return withLock(this, fn, options);
  }
}

/** Python's `ConditionProxy`. */
export class ConditionProxy extends AcquirerProxy {
  static override _exposed_ = ['acquire', 'release', 'wait', 'notify', 'notifyAll'];

  wait(timeout?: number | null, options: CallOptions = {}): Promise<boolean> {
    return this._callmethod<boolean>('wait', [timeout ?? null], options);
  }

  notify(n = 1): Promise<void> {
    return this._callmethod<void>('notify', [n]);
  }

  notifyAll(): Promise<void> {
    return this._callmethod<void>('notifyAll');
  }

  /** Client-side, as Python's: waits until `predicate()` is truthy (or the timeout passes). */
  async waitFor<R>(predicate: () => R | Promise<R>, timeout?: number | null, options: CallOptions = {}): Promise<R> {
    let result = await predicate();
    if (result) return result;
    const until = deadlineAfter(timeout);
    while (!result) {
      const left = secondsUntil(until);
      if (left !== null && left <= 0) break;
      await this.wait(left, options);
      result = await predicate();
    }
    return result;
  }
}

/** Python's `EventProxy`. */
export class EventProxy extends BaseProxy {
  static override _exposed_ = ['isSet', 'set', 'clear', 'wait'];

  isSet(): Promise<boolean> {
    return this._callmethod<boolean>('isSet');
  }

  set(): Promise<void> {
    return this._callmethod<void>('set');
  }

  clear(): Promise<void> {
    return this._callmethod<void>('clear');
  }

  wait(timeout?: number | null, options: CallOptions = {}): Promise<boolean> {
    return this._callmethod<boolean>('wait', [timeout ?? null], options);
  }
}

/** Python's `BarrierProxy`; `parties`, `nWaiting` and `broken` are fetched from the server. */
export class BarrierProxy extends BaseProxy {
  static override _exposed_ = ['__getattribute__', 'wait', 'abort', 'reset'];

  wait(timeout?: number | null, options: CallOptions = {}): Promise<number> {
    return this._callmethod<number>('wait', [timeout ?? null], options);
  }

  abort(): Promise<void> {
    return this._callmethod<void>('abort');
  }

  reset(): Promise<void> {
    return this._callmethod<void>('reset');
  }

  get parties(): Promise<number> {
    return this._callmethod<number>('__getattribute__', ['parties']);
  }

  get nWaiting(): Promise<number> {
    return this._callmethod<number>('__getattribute__', ['nWaiting']);
  }

  get broken(): Promise<boolean> {
    return this._callmethod<boolean>('__getattribute__', ['broken']);
  }
}

/** Python's `NamespaceProxy`: `await ns.get('x')`, `await ns.set('x', 1)`, `await ns.delete('x')`. */
export class NamespaceProxy<T extends Record<string, unknown> = Record<string, unknown>> extends BaseProxy {
  static override _exposed_ = ['__getattribute__', '__setattr__', '__delattr__'];

  /** The attribute's value; a missing one rejects with Python's AttributeError. */
  get<K extends keyof T & string>(name: K): Promise<T[K]> {
    return this._callmethod<T[K]>('__getattribute__', [name]);
  }

  set<K extends keyof T & string>(name: K, value: T[K]): Promise<void> {
    return this._callmethod<void>('__setattr__', [name, value]);
  }

  delete(name: keyof T & string): Promise<void> {
    return this._callmethod<void>('__delattr__', [name]);
  }

  /** Python's `hasattr(ns, name)`. */
  async has(name: string): Promise<boolean> {
    try {
      await this.get(name);
      return true;
    } catch (error) {
      if (error instanceof AttributeError) return false;
      throw error;
    }
  }
}

/** Python's `ValueProxy`: `get()`, `set(v)`, and `value` (a Promise). */
export class ValueProxy<T = unknown> extends BaseProxy {
  static override _exposed_ = ['get', 'set'];

  get(): Promise<T> {
    return this._callmethod<T>('get');
  }

  set(value: T): Promise<void> {
    return this._callmethod<void>('set', [value]);
  }

  get value(): Promise<T> {
    return this.get();
  }
}

/** Python's `ArrayProxy`. */
export class ArrayProxy<T = number> extends BaseProxy implements AsyncIterable<T> {
  static override _exposed_ = ['len', 'getItem', 'setItem'];

  len(): Promise<number> {
    return this._callmethod<number>('len');
  }

  getItem(index: number): Promise<T> {
    return this._callmethod<T>('getItem', [index]);
  }

  setItem(index: number, value: T): Promise<void> {
    return this._callmethod<void>('setItem', [index, value]);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    const n = await this.len();
    for (let i = 0; i < n; i++) yield await this.getItem(i);
  }
}

/** Python's `ListProxy`, camelCased; `getItem`/`setItem`/`delItem` take negative indices. */
export class ListProxy<T = unknown> extends BaseProxy implements AsyncIterable<T> {
  static override _exposed_ = [
    'getItem', 'setItem', 'delItem', 'slice', 'has', 'len', 'append', 'extend', 'insert', 'pop', 'remove', 'index', 'count',
    'reverse', 'sort', 'clear', 'copy', 'imul', 'add', 'mul',
  ];

  getItem(index: number): Promise<T> {
    return this._callmethod<T>('getItem', [index]);
  }

  setItem(index: number, value: T): Promise<void> {
    return this._callmethod<void>('setItem', [index, value]);
  }

  delItem(index: number): Promise<void> {
    return this._callmethod<void>('delItem', [index]);
  }

  /** `l[start:stop]`, as a local array. */
  slice(start?: number | null, stop?: number | null): Promise<T[]> {
    return this._callmethod<T[]>('slice', [start ?? null, stop ?? null]);
  }

  has(value: T): Promise<boolean> {
    return this._callmethod<boolean>('has', [value]);
  }

  len(): Promise<number> {
    return this._callmethod<number>('len');
  }

  append(value: T): Promise<void> {
    return this._callmethod<void>('append', [value]);
  }

  extend(values: Iterable<T> | ListProxy<T>): Promise<void> {
    return this._callmethod<void>('extend', [values instanceof BaseProxy ? values : [...values]]);
  }

  insert(index: number, value: T): Promise<void> {
    return this._callmethod<void>('insert', [index, value]);
  }

  pop(index?: number): Promise<T> {
    return this._callmethod<T>('pop', index === undefined ? [] : [index]);
  }

  remove(value: T): Promise<void> {
    return this._callmethod<void>('remove', [value]);
  }

  index(value: T, start?: number, stop?: number): Promise<number> {
    return this._callmethod<number>('index', [value, start ?? null, stop ?? null]);
  }

  count(value: T): Promise<number> {
    return this._callmethod<number>('count', [value]);
  }

  reverse(): Promise<void> {
    return this._callmethod<void>('reverse');
  }

  /** `{ reverse }`, and `key` as an `mp.task` (it runs on the server). */
  sort(options: { key?: ((item: T) => unknown) | null; reverse?: boolean } = {}): Promise<void> {
    return this._callmethod<void>('sort', [options]);
  }

  clear(): Promise<void> {
    return this._callmethod<void>('clear');
  }

  /** A local copy (an array). */
  copy(): Promise<T[]> {
    return this._callmethod<T[]>('copy');
  }

  /** Python's `l *= n`. */
  imul(n: number): Promise<void> {
    return this._callmethod<void>('imul', [n]);
  }

  /** Python's `l + other`: a new local array. */
  add(other: Iterable<T>): Promise<T[]> {
    return this._callmethod<T[]>('add', [[...other]]);
  }

  /** Python's `l * n` (and `n * l`): a new local array. */
  mul(n: number): Promise<T[]> {
    return this._callmethod<T[]>('mul', [n]);
  }

  /** Python iterates a ListProxy through `__getitem__` until IndexError: it sees live changes. */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    return itemsByIndex((i) => this.getItem(i));
  }
}

export type DictInit<K, V> = Map<K, V> | Iterable<readonly [K, V]> | Record<string, V> | DictProxy<K, V>;

/** Python's `DictProxy`, camelCased. Keys compare as Python's (see docs/managers.md). */
export class DictProxy<K = unknown, V = unknown> extends BaseProxy implements AsyncIterable<K> {
  static override _exposed_ = [
    'getItem', 'setItem', 'delItem', 'has', 'len', 'iter', 'clear', 'copy', 'get', 'items', 'keys', 'pop', 'popitem',
    'setdefault', 'update', 'values',
  ];
  static override _methodToTypeid_ = { iter: 'Iterator' };

  getItem(key: K): Promise<V> {
    return this._callmethod<V>('getItem', [key]);
  }

  setItem(key: K, value: V): Promise<void> {
    return this._callmethod<void>('setItem', [key, value]);
  }

  delItem(key: K): Promise<void> {
    return this._callmethod<void>('delItem', [key]);
  }

  has(key: K): Promise<boolean> {
    return this._callmethod<boolean>('has', [key]);
  }

  len(): Promise<number> {
    return this._callmethod<number>('len');
  }

  get(key: K): Promise<V | null>;
  get<D>(key: K, defaultValue: D): Promise<V | D>;
  get(key: K, ...defaultValue: unknown[]): Promise<unknown> {
    return this._callmethod('get', [key, ...defaultValue]);
  }

  keys(): Promise<K[]> {
    return this._callmethod<K[]>('keys');
  }

  values(): Promise<V[]> {
    return this._callmethod<V[]>('values');
  }

  items(): Promise<[K, V][]> {
    return this._callmethod<[K, V][]>('items');
  }

  pop(key: K): Promise<V>;
  pop<D>(key: K, defaultValue: D): Promise<V | D>;
  pop(key: K, ...defaultValue: unknown[]): Promise<unknown> {
    return this._callmethod('pop', [key, ...defaultValue]);
  }

  popitem(): Promise<[K, V]> {
    return this._callmethod<[K, V]>('popitem');
  }

  setdefault(key: K, defaultValue?: V): Promise<V> {
    return this._callmethod<V>('setdefault', [key, defaultValue ?? null]);
  }

  update(other: DictInit<K, V>): Promise<void> {
    const arg = other instanceof BaseProxy || other instanceof Map ? other : Symbol.iterator in Object(other) ? [...(other as Iterable<readonly [K, V]>)] : other;
    return this._callmethod<void>('update', [arg]);
  }

  clear(): Promise<void> {
    return this._callmethod<void>('clear');
  }

  /** A local copy (a Map with the original keys). */
  copy(): Promise<Map<K, V>> {
    return this._callmethod<Map<K, V>>('copy');
  }

  /** Python's `iter(d)`: a live iterator over the keys (RuntimeError if the dict changes size). */
  iter(): Promise<IteratorProxy<K>> {
    return this._callmethod<IteratorProxy<K>>('iter');
  }

  async *[Symbol.asyncIterator](): AsyncIterator<K> {
    const it = await this.iter();
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
}

/** Python 3.14's `SetProxy`. */
export class SetProxy<T = unknown> extends BaseProxy {
  static override _exposed_ = [
    'add', 'discard', 'remove', 'pop', 'has', 'len', 'clear', 'copy', 'union', 'intersection', 'difference',
    'symmetricDifference', 'update', 'intersectionUpdate', 'differenceUpdate', 'symmetricDifferenceUpdate', 'isdisjoint',
    'issubset', 'issuperset',
  ];

  add(value: T): Promise<void> {
    return this._callmethod<void>('add', [value]);
  }
  discard(value: T): Promise<void> {
    return this._callmethod<void>('discard', [value]);
  }
  remove(value: T): Promise<void> {
    return this._callmethod<void>('remove', [value]);
  }
  pop(): Promise<T> {
    return this._callmethod<T>('pop');
  }
  has(value: T): Promise<boolean> {
    return this._callmethod<boolean>('has', [value]);
  }
  len(): Promise<number> {
    return this._callmethod<number>('len');
  }
  clear(): Promise<void> {
    return this._callmethod<void>('clear');
  }
  copy(): Promise<Set<T>> {
    return this._callmethod<Set<T>>('copy');
  }
  union(...others: SetLike<T>[]): Promise<Set<T>> {
    return this._callmethod<Set<T>>('union', others.map(setArg));
  }
  intersection(...others: SetLike<T>[]): Promise<Set<T>> {
    return this._callmethod<Set<T>>('intersection', others.map(setArg));
  }
  difference(...others: SetLike<T>[]): Promise<Set<T>> {
    return this._callmethod<Set<T>>('difference', others.map(setArg));
  }
  symmetricDifference(other: SetLike<T>): Promise<Set<T>> {
    return this._callmethod<Set<T>>('symmetricDifference', [setArg(other)]);
  }
  update(...others: SetLike<T>[]): Promise<void> {
    return this._callmethod<void>('update', others.map(setArg));
  }
  intersectionUpdate(...others: SetLike<T>[]): Promise<void> {
    return this._callmethod<void>('intersectionUpdate', others.map(setArg));
  }
  differenceUpdate(...others: SetLike<T>[]): Promise<void> {
    return this._callmethod<void>('differenceUpdate', others.map(setArg));
  }
  symmetricDifferenceUpdate(other: SetLike<T>): Promise<void> {
    return this._callmethod<void>('symmetricDifferenceUpdate', [setArg(other)]);
  }
  isdisjoint(other: SetLike<T>): Promise<boolean> {
    return this._callmethod<boolean>('isdisjoint', [setArg(other)]);
  }
  issubset(other: SetLike<T>): Promise<boolean> {
    return this._callmethod<boolean>('issubset', [setArg(other)]);
  }
  issuperset(other: SetLike<T>): Promise<boolean> {
    return this._callmethod<boolean>('issuperset', [setArg(other)]);
  }
}

export type SetLike<T> = Iterable<T> | SetProxy<T>;
function setArg<T>(value: SetLike<T>): unknown {
  return value instanceof BaseProxy || value instanceof Set || Array.isArray(value) ? value : [...value];
}

export interface QueueGetOptions {
  block?: boolean;
  timeout?: number | null;
  signal?: AbortSignal;
}

/** A manager Queue (Python's AutoProxy over `queue.Queue`), with `mp.Queue`'s method shapes. */
export class QueueProxy<T = unknown> extends BaseProxy {
  static override _exposed_ = ['put', 'get', 'putNowait', 'getNowait', 'qsize', 'empty', 'full', 'taskDone', 'join'];

  put(obj: T, options: QueueGetOptions = {}): Promise<void> {
    return this._callmethod<void>('put', [obj, options.block ?? true, options.timeout ?? null], { signal: options.signal });
  }

  get(options: QueueGetOptions = {}): Promise<T> {
    return this._callmethod<T>('get', [options.block ?? true, options.timeout ?? null], { signal: options.signal });
  }

  putNowait(obj: T): Promise<void> {
    return this._callmethod<void>('putNowait', [obj]);
  }

  getNowait(): Promise<T> {
    return this._callmethod<T>('getNowait');
  }

  qsize(): Promise<number> {
    return this._callmethod<number>('qsize');
  }

  empty(): Promise<boolean> {
    return this._callmethod<boolean>('empty');
  }

  full(): Promise<boolean> {
    return this._callmethod<boolean>('full');
  }
}

/** A manager JoinableQueue: `taskDone()` and `join()` too. */
export class JoinableQueueProxy<T = unknown> extends QueueProxy<T> {
  taskDone(): Promise<void> {
    return this._callmethod<void>('taskDone');
  }

  join(options: CallOptions = {}): Promise<void> {
    return this._callmethod<void>('join', [], options);
  }
}

const builtins: [string, ProxyType][] = [
  ['BaseProxy', BaseProxy], ['IteratorProxy', IteratorProxy], ['AcquirerProxy', AcquirerProxy], ['ConditionProxy', ConditionProxy],
  ['EventProxy', EventProxy], ['BarrierProxy', BarrierProxy], ['NamespaceProxy', NamespaceProxy], ['ValueProxy', ValueProxy],
  ['ArrayProxy', ArrayProxy], ['ListProxy', ListProxy], ['DictProxy', DictProxy], ['SetProxy', SetProxy], ['QueueProxy', QueueProxy],
  ['JoinableQueueProxy', JoinableQueueProxy],
];
for (const [name, cls] of builtins) {
  proxyTypesByName.set(name, cls);
  builtinProxyNames.set(cls, name);
}

// ---- Pool (Python's PoolProxy; the pool runs in the server process) ----------------------------

type Task<A extends unknown[], R> = (...args: A) => R;

/** The `callback`/`errorCallback` of a manager pool's `*Async` calls (they run in the caller). */
export interface AsyncProxyCallOptions<T> extends CallOptions {
  callback?: ((result: T) => void) | null;
  errorCallback?: ((error: Error) => void) | null;
}

/** Python's AsyncResult proxy (a manager pool's `applyAsync`/`mapAsync`/`starmapAsync`). */
export class AsyncResultProxy<T = unknown> extends BaseProxy {
  static override _exposed_ = ['get', 'wait', 'ready', 'successful'];
  /** With callbacks: settles once the result is in and they ran; until then the result is not ready. */
  #callbacksRan: Promise<void> | null = null;
  #callbacksDone = false;

  /**
   * @internal Runs the callbacks in this process when the result arrives. Python runs them in the
   * server's result thread (they must pickle); a function of ours cannot travel there, and what
   * Python's tests check holds here too: each runs once, before `wait`/`get`/`ready` see the result.
   */
  _runCallbacks(options: AsyncProxyCallOptions<T>): this {
    const { callback, errorCallback } = options;
    if (!callback && !errorCallback) return this;
    this.#callbacksRan = this._callmethod<T>('get')
      .then(
        (value) => callback?.(value),
        (error: Error) => errorCallback?.(error),
      )
      .catch((thrown: unknown) => {
        // A callback's own error is never swallowed: it surfaces as an uncaught exception.
        queueMicrotask(() => {
          throw thrown;
        });
      })
      .finally(() => {
        this.#callbacksDone = true;
      });
    return this;
  }

  async get(timeout?: number | null, options: CallOptions = {}): Promise<T> {
    if (this.#callbacksRan) {
      await this.wait(timeout, options);
      if (!this.#callbacksDone) throw new TimeoutError();
      return this._callmethod<T>('get', [0], options);
    }
    return this._callmethod<T>('get', [timeout ?? null], options);
  }
  async wait(timeout?: number | null, options: CallOptions = {}): Promise<void> {
    if (this.#callbacksRan) await raceTimeout(this.#callbacksRan, timeout, options.signal);
    else await this._callmethod<void>('wait', [timeout ?? null], options);
  }
  async ready(): Promise<boolean> {
    if (this.#callbacksRan) return this.#callbacksDone;
    return this._callmethod<boolean>('ready');
  }
  async successful(): Promise<boolean> {
    if (this.#callbacksRan && !this.#callbacksDone) throw new ValueError(`${this.toString()} not ready`);
    return this._callmethod<boolean>('successful');
  }
}

/** Python's `PoolProxy`: functions must be `mp.task`s (they travel to the server, then to its workers). */
export class PoolProxy extends BaseProxy implements AsyncDisposable {
  static override _exposed_ = [
    'apply', 'applyAsync', 'close', 'imap', 'imapUnordered', 'join', 'map', 'mapAsync', 'starmap', 'starmapAsync', 'terminate',
  ];
  static override _methodToTypeid_ = {
    applyAsync: 'AsyncResult', mapAsync: 'AsyncResult', starmapAsync: 'AsyncResult', imap: 'Iterator', imapUnordered: 'Iterator',
  };

  apply<A extends unknown[], R>(fn: Task<A, R>, args?: A, options: CallOptions = {}): Promise<Awaited<R>> {
    return this._callmethod('apply', [fn, args ?? []], options);
  }
  applyAsync<A extends unknown[], R>(fn: Task<A, R>, args?: A, options: AsyncProxyCallOptions<Awaited<R>> = {}): Promise<AsyncResultProxy<Awaited<R>>> {
    return this.#asyncCall('applyAsync', [fn, args ?? []], options);
  }
  map<T, R>(fn: Task<[T], R>, iterable: Iterable<T>, chunksize?: number, options: CallOptions = {}): Promise<Awaited<R>[]> {
    return this._callmethod('map', [fn, [...iterable], chunksize ?? null], options);
  }
  mapAsync<T, R>(
    fn: Task<[T], R>,
    iterable: Iterable<T>,
    chunksize?: number | null,
    options: AsyncProxyCallOptions<Awaited<R>[]> = {},
  ): Promise<AsyncResultProxy<Awaited<R>[]>> {
    return this.#asyncCall('mapAsync', [fn, [...iterable], chunksize ?? null], options);
  }
  starmap<A extends unknown[], R>(fn: Task<A, R>, iterable: Iterable<A>, chunksize?: number, options: CallOptions = {}): Promise<Awaited<R>[]> {
    return this._callmethod('starmap', [fn, [...iterable], chunksize ?? null], options);
  }
  starmapAsync<A extends unknown[], R>(
    fn: Task<A, R>,
    iterable: Iterable<A>,
    chunksize?: number | null,
    options: AsyncProxyCallOptions<Awaited<R>[]> = {},
  ): Promise<AsyncResultProxy<Awaited<R>[]>> {
    return this.#asyncCall('starmapAsync', [fn, [...iterable], chunksize ?? null], options);
  }
  /** An `*Async` call: the server's AsyncResult, whose callbacks run here once it is ready. */
  async #asyncCall<R>(method: string, args: unknown[], options: AsyncProxyCallOptions<R>): Promise<AsyncResultProxy<R>> {
    const result = await this._callmethod<AsyncResultProxy<R>>(method, args, { signal: options.signal });
    return result._runCallbacks(options);
  }
  imap<T, R>(fn: Task<[T], R>, iterable: Iterable<T>, chunksize = 1, options: CallOptions = {}): Promise<IteratorProxy<Awaited<R>>> {
    return this._callmethod('imap', [fn, [...iterable], chunksize], options);
  }
  imapUnordered<T, R>(fn: Task<[T], R>, iterable: Iterable<T>, chunksize = 1, options: CallOptions = {}): Promise<IteratorProxy<Awaited<R>>> {
    return this._callmethod('imapUnordered', [fn, [...iterable], chunksize], options);
  }
  close(options: CallOptions = {}): Promise<void> {
    return this._callmethod<void>('close', [], options);
  }
  terminate(options: CallOptions = {}): Promise<void> {
    return this._callmethod<void>('terminate', [], options);
  }
  join(options: CallOptions = {}): Promise<void> {
    return this._callmethod<void>('join', [], options);
  }
  /** Python's `with manager.Pool() as p:` terminates the pool at exit. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.terminate();
  }
}

for (const [name, cls] of [['AsyncResultProxy', AsyncResultProxy], ['PoolProxy', PoolProxy]] as [string, ProxyType][]) {
  proxyTypesByName.set(name, cls);
  builtinProxyNames.set(cls, name);
}
