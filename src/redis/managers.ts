/**
 * `await ctx.Manager()` on the redis context: dict, list and Namespace as Redis hashes and lists,
 * with the method names of the local manager's proxies (docs/managers.md) and Python's key
 * semantics (src/managers/pyvalues.ts: `1`, `'1'` and `0.25` are three keys, `1` and `1n` one).
 * Every method talks to Redis and returns a Promise.
 *
 *   mp:dict:{id}             HASH: seq (insertion counter), holders
 *   mp:dict:{id}:keys        HASH canonical key -> encoded key (the first one set, as Python keeps)
 *   mp:dict:{id}:values      HASH canonical key -> encoded value
 *   mp:dict:{id}:order       ZSET canonical key by insertion (Python's dicts keep that order)
 *   mp:list:{id}             HASH: version (every change adds 1), holders
 *   mp:list:{id}:items       LIST of encoded values
 *   mp:namespace:{id}:attrs  HASH name -> encoded value
 *
 * Each method is one Lua script, atomic, except those that compare values with Python's `==` or
 * order them (`remove`, `sort`): they read a snapshot with its version, decide here, and write back
 * only if the version is unchanged (else they read again).
 *
 * The manager owns what it makes: its objects live until `shutdown()` (or `keyTtl` after its
 * process died), and handles to them in other processes borrow them, as proxies do a server's.
 */
import { AttributeError, IndexError, KeyError, ValueError } from '../errors.js';
import { canonicalKey, itemsByIndex, pyCompare, pyEquals, pyRepr } from '../managers/pyvalues.js';
import { RedisScript } from './script.js';
import { type RedisSettings } from './settings.js';
import { ObjectFactories } from './factories.js';
import type { Typecode, TypecodeValue } from '../sharedctypes.js';
import type { JoinableQueue, Queue } from './queues.js';
import type { Value } from './sharedctypes.js';
import type { Barrier, BoundedSemaphore, Condition, Event, LeaseOptions, Lock, RLock, Semaphore } from './synchronize.js';
import { decodeValue, encodeValue, LUA_GONE, RedisObject, registerHandle, type Birth, type ObjectSpace } from './objects.js';

/** The methods `_callmethod` may call, per kind (as a local proxy's exposed names). */
const EXPOSED: Record<string, readonly string[]> = {
  dict: ['getItem', 'setItem', 'delItem', 'has', 'len', 'clear', 'copy', 'get', 'items', 'keys', 'pop', 'popitem', 'setdefault', 'update', 'values'],
  list: [
    'getItem', 'setItem', 'delItem', 'slice', 'has', 'len', 'append', 'extend', 'insert', 'pop', 'remove', 'index', 'count',
    'reverse', 'sort', 'clear', 'copy', 'imul',
  ],
  Namespace: ['get', 'set', 'delete', 'has'],
};

/** What the three containers share: Python's `_callmethod` and `_getvalue`. */
abstract class Container extends RedisObject {
  /** Calls an exposed method by name (Python's `_callmethod`); others raise AttributeError. */
  _callmethod<R = unknown>(name: string, args: unknown[] = []): Promise<R> {
    const method = (this as unknown as Record<string, (...a: unknown[]) => Promise<R>>)[name];
    if (!EXPOSED[this._kindName]!.includes(name) || typeof method !== 'function') {
      return Promise.reject(new AttributeError(`'${this._kindName}' object has no attribute '${name}'`));
    }
    return method.apply(this, args);
  }

  /** A local copy of the whole value (Python's `_getvalue()`). */
  abstract _getvalue(): Promise<unknown>;

  /** @internal */
  protected _state(): Record<string, unknown> {
    return {};
  }
}

async function decodeAll(items: Buffer[]): Promise<unknown[]> {
  return Promise.all(items.map((b) => decodeValue(b)));
}

function ttlMs(obj: RedisObject): number {
  return Math.ceil(obj._ttl * 1000);
}

// ---- dict --------------------------------------------------------------------------------------

/** KEYS hash, keys, values, order; ARGV ttl ms, then (canonical, key, value) triples. */
const DICT_SET = new RedisScript('dict.set', `
${LUA_GONE}
for i = 2, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[4], redis.call('HINCRBY', KEYS[1], 'seq', 1), ARGV[i])
  end
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 2])
end
for k = 2, 4 do redis.call('PEXPIRE', KEYS[k], ARGV[1]) end
return 1`);

/** ARGV canonical: the value or nil. */
const DICT_GET = new RedisScript('dict.get', `
${LUA_GONE}
return redis.call('HGET', KEYS[3], ARGV[1])`);

/** ARGV canonical: removes it; the value, or nil if it was not there. */
const DICT_POP = new RedisScript('dict.pop', `
${LUA_GONE}
local v = redis.call('HGET', KEYS[3], ARGV[1])
if not v then return false end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return v`);

/** The last inserted pair {key, value} (removed), or nil. */
const DICT_POPITEM = new RedisScript('dict.popitem', `
${LUA_GONE}
local last = redis.call('ZRANGE', KEYS[4], -1, -1)[1]
if not last then return false end
local pair = {redis.call('HGET', KEYS[2], last), redis.call('HGET', KEYS[3], last)}
redis.call('HDEL', KEYS[2], last)
redis.call('HDEL', KEYS[3], last)
redis.call('ZREM', KEYS[4], last)
return pair`);

/** ARGV ttl ms, canonical, key, default: the value, set to the default first if missing. */
const DICT_SETDEFAULT = new RedisScript('dict.setdefault', `
${LUA_GONE}
local v = redis.call('HGET', KEYS[3], ARGV[2])
if v then return v end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[4], redis.call('HINCRBY', KEYS[1], 'seq', 1), ARGV[2])
for k = 2, 4 do redis.call('PEXPIRE', KEYS[k], ARGV[1]) end
return ARGV[4]`);

/** ARGV 'keys' | 'values' | 'items', in insertion order (items: key, value, key, value...). */
const DICT_LIST = new RedisScript('dict.list', `
${LUA_GONE}
local out = {}
for _, c in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  if ARGV[1] ~= 'values' then out[#out + 1] = redis.call('HGET', KEYS[2], c) end
  if ARGV[1] ~= 'keys' then out[#out + 1] = redis.call('HGET', KEYS[3], c) end
end
return out`);

/** ARGV 'has' canonical | 'len' | 'clear'. */
const DICT_QUERY = new RedisScript('dict.query', `
${LUA_GONE}
if ARGV[1] == 'has' then return redis.call('HEXISTS', KEYS[3], ARGV[2]) end
if ARGV[1] == 'len' then return redis.call('HLEN', KEYS[3]) end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return 1`);

export type DictInit<K, V> = Map<K, V> | Iterable<readonly [K, V]> | Record<string, V> | DictProxy<K, V>;

async function pairsOf<K, V>(init: DictInit<K, V> | null | undefined): Promise<Array<readonly [K, V]>> {
  if (init === null || init === undefined) return [];
  if (init instanceof DictProxy) return (await init.items()) as Array<[K, V]>;
  if (init instanceof Map) return [...init];
  if (typeof (init as Iterable<unknown>)[Symbol.iterator] === 'function') {
    return [...(init as Iterable<readonly [K, V]>)].map((pair, i) => {
      if (!Array.isArray(pair) || pair.length !== 2) {
        throw new ValueError(`dictionary update sequence element #${i} has length ${Array.isArray(pair) ? pair.length : 1}; 2 is required`);
      }
      return pair as readonly [K, V];
    });
  }
  if (typeof init === 'object') return Object.entries(init) as unknown as Array<[K, V]>;
  throw new TypeError(`'${typeof init}' object is not iterable`);
}

/** Python's `DictProxy`, in Redis. Keys compare as Python's; insertion order is kept. */
export class DictProxy<K = unknown, V = unknown> extends Container implements AsyncIterable<K> {
  /** @internal */
  constructor(space: ObjectSpace, birth: Birth) {
    super(space, birth, { keyKind: 'dict', kindName: 'dict', parts: ['keys', 'values', 'order'] }, { seq: 0 });
  }

  private get _all(): string[] {
    return [this._key, this._part('keys'), this._part('values'), this._part('order')];
  }

  async getItem(key: K): Promise<V> {
    const v = (await this._run(DICT_GET, this._all, [canonicalKey(key)], true)) as Buffer | null;
    if (v === null) throw new KeyError(pyRepr(key));
    return (await decodeValue(v)) as V;
  }

  async setItem(key: K, value: V): Promise<void> {
    await this._run(DICT_SET, this._all, [ttlMs(this), canonicalKey(key), encodeValue(key), encodeValue(value)]);
  }

  async delItem(key: K): Promise<void> {
    if ((await this._run(DICT_POP, this._all, [canonicalKey(key)], true)) === null) throw new KeyError(pyRepr(key));
  }

  async has(key: K): Promise<boolean> {
    return (await this._run(DICT_QUERY, this._all, ['has', canonicalKey(key)])) === 1;
  }

  async len(): Promise<number> {
    return (await this._run(DICT_QUERY, this._all, ['len'])) as number;
  }

  get(key: K): Promise<V | null>;
  get<D>(key: K, defaultValue: D): Promise<V | D>;
  async get(key: K, ...defaultValue: unknown[]): Promise<unknown> {
    const v = (await this._run(DICT_GET, this._all, [canonicalKey(key)], true)) as Buffer | null;
    return v === null ? (defaultValue.length > 0 ? defaultValue[0] : null) : decodeValue(v);
  }

  private async _list(what: 'keys' | 'values' | 'items'): Promise<unknown[]> {
    return decodeAll((await this._run(DICT_LIST, this._all, [what], true)) as Buffer[]);
  }

  async keys(): Promise<K[]> {
    return (await this._list('keys')) as K[];
  }

  async values(): Promise<V[]> {
    return (await this._list('values')) as V[];
  }

  async items(): Promise<[K, V][]> {
    const flat = await this._list('items');
    const out: [K, V][] = [];
    for (let i = 0; i < flat.length; i += 2) out.push([flat[i] as K, flat[i + 1] as V]);
    return out;
  }

  /** `pop(key)` raises KeyError for a missing key; `pop(key, default)` returns the default. */
  pop(key: K): Promise<V>;
  pop<D>(key: K, defaultValue: D): Promise<V | D>;
  async pop(key: K, ...defaultValue: unknown[]): Promise<unknown> {
    const v = (await this._run(DICT_POP, this._all, [canonicalKey(key)], true)) as Buffer | null;
    if (v !== null) return decodeValue(v);
    if (defaultValue.length > 0) return defaultValue[0];
    throw new KeyError(pyRepr(key));
  }

  /** The last inserted pair (LIFO, as Python 3.7+). */
  async popitem(): Promise<[K, V]> {
    const pair = (await this._run(DICT_POPITEM, this._all, [], true)) as [Buffer, Buffer] | null;
    if (pair === null) throw new KeyError('popitem(): dictionary is empty');
    return (await decodeAll(pair)) as [K, V];
  }

  async setdefault(key: K, defaultValue?: V): Promise<V> {
    const v = (await this._run(DICT_SETDEFAULT, this._all, [
      ttlMs(this), canonicalKey(key), encodeValue(key), encodeValue(defaultValue ?? null),
    ], true)) as Buffer;
    return (await decodeValue(v)) as V;
  }

  /** Sets every pair of `other` (a Map, pairs, a plain object or another dict), in one step. */
  async update(other: DictInit<K, V>): Promise<void> {
    const args: Array<string | number | Buffer> = [ttlMs(this)];
    for (const [k, v] of await pairsOf(other)) args.push(canonicalKey(k), encodeValue(k), encodeValue(v));
    if (args.length > 1) await this._run(DICT_SET, this._all, args);
  }

  async clear(): Promise<void> {
    await this._run(DICT_QUERY, this._all, ['clear']);
  }

  /** A local copy (a Map with the original keys). */
  async copy(): Promise<Map<K, V>> {
    return new Map(await this.items());
  }

  _getvalue(): Promise<Map<K, V>> {
    return this.copy();
  }

  /** The keys, as they are when iteration starts. */
  async *[Symbol.asyncIterator](): AsyncIterator<K> {
    yield* await this.keys();
  }
}

// ---- list --------------------------------------------------------------------------------------

/** A list element being deleted (no encoded value starts with byte 0xff). */
const LUA_TOMBSTONE = `local TOMB = '\\255mp:deleted'
local function remove_at(i)
  redis.call('LSET', KEYS[2], i, TOMB)
  redis.call('LREM', KEYS[2], 1, TOMB)
end
local function bump() redis.call('HINCRBY', KEYS[1], 'version', 1) end
local function norm(i, n)
  i = tonumber(i)
  if i < 0 then i = i + n end
  if i < 0 or i >= n then return nil end
  return i
end`;

/** Appends (ARGV[2] 'r') or replaces everything (ARGV[2] 'all', if the version is ARGV[3]). */
const LIST_PUSH = new RedisScript('list.push', `
${LUA_GONE}
local from = 3
if ARGV[2] == 'all' then
  if redis.call('HGET', KEYS[1], 'version') ~= ARGV[3] then return 0 end
  redis.call('DEL', KEYS[2])
  from = 4
end
for i = from, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1`);

/** ARGV op, args: index i, set i v, del i, pop [i], insert i v ttl, slice start stop, len, clear,
 * reverse ttl, imul ttl n, removeAt version i, snapshot (the version, then the items). */
const LIST_OP = new RedisScript('list.op', `
${LUA_GONE}
${LUA_TOMBSTONE}
local op = ARGV[1]
local n = redis.call('LLEN', KEYS[2])
if op == 'index' then
  local i = norm(ARGV[2], n)
  if not i then return redis.error_reply('MP IndexError list index out of range') end
  return redis.call('LINDEX', KEYS[2], i)
elseif op == 'set' then
  local i = norm(ARGV[2], n)
  if not i then return redis.error_reply('MP IndexError list assignment index out of range') end
  redis.call('LSET', KEYS[2], i, ARGV[3])
elseif op == 'del' then
  local i = norm(ARGV[2], n)
  if not i then return redis.error_reply('MP IndexError list assignment index out of range') end
  remove_at(i)
elseif op == 'pop' then
  if n == 0 then return redis.error_reply('MP IndexError pop from empty list') end
  local i = norm(ARGV[2] or '-1', n)
  if not i then return redis.error_reply('MP IndexError pop index out of range') end
  local v = redis.call('LINDEX', KEYS[2], i)
  remove_at(i)
  bump()
  return v
elseif op == 'insert' then
  local i = tonumber(ARGV[2])
  if i < 0 then i = math.max(0, i + n) else i = math.min(i, n) end
  if i == n then
    redis.call('RPUSH', KEYS[2], ARGV[3])
  elseif i == 0 then
    redis.call('LPUSH', KEYS[2], ARGV[3])
  else
    local tail = redis.call('LRANGE', KEYS[2], i, -1)
    redis.call('LTRIM', KEYS[2], 0, i - 1)
    redis.call('RPUSH', KEYS[2], ARGV[3])
    for j = 1, #tail, 1000 do redis.call('RPUSH', KEYS[2], unpack(tail, j, math.min(j + 999, #tail))) end
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
elseif op == 'slice' then
  local function clamp(x, default)
    if x == '' then return default end
    x = tonumber(x)
    if x < 0 then return math.max(0, x + n) end
    return math.min(x, n)
  end
  local from, to = clamp(ARGV[2], 0), clamp(ARGV[3], n)
  if from >= to then return {} end
  return redis.call('LRANGE', KEYS[2], from, to - 1)
elseif op == 'len' then
  return n
elseif op == 'clear' then
  redis.call('DEL', KEYS[2])
elseif op == 'reverse' or op == 'imul' then
  local items = redis.call('LRANGE', KEYS[2], 0, -1)
  local times = tonumber(ARGV[3] or '1')
  if op == 'reverse' then
    for a = 1, math.floor(#items / 2) do
      local b = #items - a + 1
      items[a], items[b] = items[b], items[a]
    end
  end
  redis.call('DEL', KEYS[2])
  for _ = 1, times do
    for j = 1, #items, 1000 do redis.call('RPUSH', KEYS[2], unpack(items, j, math.min(j + 999, #items))) end
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
elseif op == 'removeAt' then
  if redis.call('HGET', KEYS[1], 'version') ~= ARGV[2] then return 0 end
  remove_at(tonumber(ARGV[3]))
elseif op == 'snapshot' then
  local out = redis.call('LRANGE', KEYS[2], 0, -1)
  table.insert(out, 1, redis.call('HGET', KEYS[1], 'version'))
  return out
end
bump()
return 1`);

function checkIndex(i: unknown): number {
  if (typeof i === 'bigint') i = Number(i);
  if (typeof i !== 'number' || !Number.isInteger(i)) {
    throw new TypeError(`list indices must be integers or slices, not ${typeof i === 'number' ? 'float' : typeof i}`);
  }
  return i;
}

function sliceBound(i: number | null | undefined): string {
  return i === null || i === undefined ? '' : String(checkIndex(i));
}

/** Python's `ListProxy`, in Redis; `getItem`/`setItem`/`delItem` take negative indices. */
export class ListProxy<T = unknown> extends Container implements AsyncIterable<T> {
  /** @internal */
  constructor(space: ObjectSpace, birth: Birth) {
    super(space, birth, { keyKind: 'list', kindName: 'list', parts: ['items'] }, { version: 0 });
  }

  private get _all(): string[] {
    return [this._key, this._part('items')];
  }

  private _op(args: Array<string | number | Buffer>, binary = false): Promise<unknown> {
    return this._run(LIST_OP, this._all, args, binary);
  }

  /** The version and the encoded items, read at one instant. */
  private async _snapshot(): Promise<{ version: string; items: Buffer[] }> {
    const [version, ...items] = (await this._op(['snapshot'], true)) as Buffer[];
    return { version: version!.toString(), items };
  }

  async getItem(index: number): Promise<T> {
    return (await decodeValue((await this._op(['index', checkIndex(index)], true)) as Buffer)) as T;
  }

  async setItem(index: number, value: T): Promise<void> {
    await this._op(['set', checkIndex(index), encodeValue(value)]);
  }

  async delItem(index: number): Promise<void> {
    await this._op(['del', checkIndex(index)]);
  }

  /** `l[start:stop]`, as a local array. */
  async slice(start?: number | null, stop?: number | null): Promise<T[]> {
    return (await decodeAll((await this._op(['slice', sliceBound(start), sliceBound(stop)], true)) as Buffer[])) as T[];
  }

  async has(value: T): Promise<boolean> {
    return (await this.count(value)) > 0;
  }

  async len(): Promise<number> {
    return (await this._op(['len'])) as number;
  }

  async append(value: T): Promise<void> {
    await this._run(LIST_PUSH, this._all, [ttlMs(this), 'r', encodeValue(value)]);
  }

  async extend(values: Iterable<T> | ListProxy<T>): Promise<void> {
    const items = values instanceof ListProxy ? (await values._snapshot()).items : [...values].map((v) => encodeValue(v));
    if (items.length > 0) await this._run(LIST_PUSH, this._all, [ttlMs(this), 'r', ...items]);
  }

  async insert(index: number, value: T): Promise<void> {
    await this._op(['insert', checkIndex(index), encodeValue(value), ttlMs(this)]);
  }

  async pop(index?: number): Promise<T> {
    const args = index === undefined ? ['pop'] : ['pop', checkIndex(index)];
    return (await decodeValue((await this._op(args, true)) as Buffer)) as T;
  }

  /** Removes the first item equal to `value` (Python's `==`); ValueError if there is none. */
  async remove(value: T): Promise<void> {
    for (;;) {
      const { version, items } = await this._snapshot();
      const values = await decodeAll(items);
      const i = values.findIndex((x) => pyEquals(x, value));
      if (i < 0) throw new ValueError('list.remove(x): x not in list');
      if ((await this._op(['removeAt', version, i])) === 1) return;
    }
  }

  async index(value: T, start?: number, stop?: number): Promise<number> {
    const from = start === undefined ? 0 : checkIndex(start);
    const values = await this.copy();
    const n = values.length;
    const clamp = (x: number) => (x < 0 ? Math.max(0, x + n) : Math.min(x, n));
    const to = stop === undefined ? n : clamp(checkIndex(stop));
    for (let i = clamp(from); i < to; i++) if (pyEquals(values[i], value)) return i;
    throw new ValueError(`${pyRepr(value)} is not in list`);
  }

  async count(value: T): Promise<number> {
    return (await this.copy()).filter((x) => pyEquals(x, value)).length;
  }

  async reverse(): Promise<void> {
    await this._op(['reverse', ttlMs(this)]);
  }

  /** Stable, as Python's; `key` runs here, on the values read at one instant, and the list is
   * written back only if nothing changed it meanwhile (else it is read again). */
  async sort(options: { key?: ((item: T) => unknown) | null; reverse?: boolean } = {}): Promise<void> {
    const key = options.key ?? ((x: T) => x);
    for (;;) {
      const { version, items } = await this._snapshot();
      const values = (await decodeAll(items)) as T[];
      const decorated = await Promise.all(values.map(async (x, i) => ({ k: await key(x), i })));
      decorated.sort((a, b) => pyCompare(a.k, b.k) * (options.reverse ? -1 : 1) || a.i - b.i);
      if ((await this._run(LIST_PUSH, this._all, [ttlMs(this), 'all', version, ...decorated.map((d) => items[d.i]!)])) === 1) return;
    }
  }

  async clear(): Promise<void> {
    await this._op(['clear']);
  }

  /** A local copy (an array). */
  async copy(): Promise<T[]> {
    return (await decodeAll((await this._snapshot()).items)) as T[];
  }

  _getvalue(): Promise<T[]> {
    return this.copy();
  }

  /** Python's `l *= n`. */
  async imul(n: number): Promise<void> {
    await this._op(['imul', ttlMs(this), Math.max(0, checkIndex(n))]);
  }

  /** Python iterates a ListProxy through `__getitem__` until IndexError: it sees live changes. */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    return itemsByIndex((i) => this.getItem(i));
  }
}

// ---- Namespace -----------------------------------------------------------------------------

/** ARGV op ('get' | 'set' | 'del' | 'has' | 'all'), name, value, ttl ms. */
const NAMESPACE_OP = new RedisScript('namespace.op', `
${LUA_GONE}
local op = ARGV[1]
if op == 'get' then return redis.call('HGET', KEYS[2], ARGV[2]) end
if op == 'has' then return redis.call('HEXISTS', KEYS[2], ARGV[2]) end
if op == 'del' then return redis.call('HDEL', KEYS[2], ARGV[2]) end
if op == 'all' then return redis.call('HGETALL', KEYS[2]) end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1`);

function noAttribute(name: string): AttributeError {
  return new AttributeError(`'Namespace' object has no attribute '${name}'`);
}

/** Python's `NamespaceProxy`, in Redis: `await ns.get('x')`, `await ns.set('x', 1)`. */
export class NamespaceProxy<T extends Record<string, unknown> = Record<string, unknown>> extends Container {
  /** @internal */
  constructor(space: ObjectSpace, birth: Birth) {
    super(space, birth, { keyKind: 'namespace', kindName: 'Namespace', parts: ['attrs'] });
  }

  private _op(args: Array<string | number | Buffer>, binary = false): Promise<unknown> {
    return this._run(NAMESPACE_OP, [this._key, this._part('attrs')], args, binary);
  }

  /** The attribute's value; a missing one rejects with Python's AttributeError. */
  async get<K extends keyof T & string>(name: K): Promise<T[K]> {
    const v = (await this._op(['get', name], true)) as Buffer | null;
    if (v === null) throw noAttribute(name);
    return (await decodeValue(v)) as T[K];
  }

  async set<K extends keyof T & string>(name: K, value: T[K]): Promise<void> {
    await this._op(['set', name, encodeValue(value), ttlMs(this)]);
  }

  async delete(name: keyof T & string): Promise<void> {
    if ((await this._op(['del', name])) !== 1) throw noAttribute(name);
  }

  /** Python's `hasattr(ns, name)`. */
  async has(name: string): Promise<boolean> {
    return (await this._op(['has', name])) === 1;
  }

  /** A local copy of the attributes (a plain object). */
  async _getvalue(): Promise<Partial<T>> {
    const flat = (await this._op(['all'], true)) as Buffer[];
    const out: Record<string, unknown> = {};
    for (let i = 0; i < flat.length; i += 2) out[flat[i]!.toString()] = await decodeValue(flat[i + 1]!);
    return out as Partial<T>;
  }
}

registerHandle('dict', (space, birth) => new DictProxy(space, birth));
registerHandle('list', (space, birth) => new ListProxy(space, birth));
registerHandle('Namespace', (space, birth) => new NamespaceProxy(space, birth));

// ---- the manager ---------------------------------------------------------------------------

/**
 * `await ctx.Manager()`: makes containers (and queues, locks, events, values) that it owns, as a
 * SyncManager's server does; `shutdown()` deletes them all, and their handles everywhere raise
 * ValueError from then on. Its process keeps their keys alive; they expire `keyTtl` after it died.
 */
export class RedisManager {
  private readonly made = new Set<RedisObject>();
  private readonly factories: ObjectFactories;
  private down = false;

  /** @internal */
  constructor(private readonly settings: RedisSettings) {
    this.factories = new ObjectFactories(settings, true, (obj) => {
      this.made.add(obj);
      void obj._space.keep(obj._ttl, [...obj._keys.kept]).catch(() => {});
    });
  }

  /** Makes an object (refused after shutdown) and resolves it once it exists in Redis. */
  private async own<O extends RedisObject>(make: (f: ObjectFactories) => O, fill?: (obj: O) => Promise<void>): Promise<O> {
    if (this.down) throw new ValueError('the manager was shut down');
    const obj = make(this.factories);
    await obj._whenReady();
    await fill?.(obj);
    return obj;
  }

  dict<K = unknown, V = unknown>(init?: DictInit<K, V> | null): Promise<DictProxy<K, V>> {
    return this.own((f) => f.make((space, birth) => new DictProxy<K, V>(space, birth)), async (d) => {
      if (init) await d.update(init);
    });
  }

  list<T = unknown>(init?: Iterable<T> | null): Promise<ListProxy<T>> {
    return this.own((f) => f.make((space, birth) => new ListProxy<T>(space, birth)), async (l) => {
      if (init) await l.extend(init);
    });
  }

  Namespace<T extends Record<string, unknown> = Record<string, unknown>>(init?: Partial<T> | null): Promise<NamespaceProxy<T>> {
    return this.own((f) => f.make((space, birth) => new NamespaceProxy<T>(space, birth)), async (ns) => {
      for (const [k, v] of Object.entries(init ?? {})) await ns.set(k as keyof T & string, v as T[keyof T & string]);
    });
  }

  Queue<T = unknown>(maxsize = 0): Promise<Queue<T>> {
    return this.own((f) => f.Queue<T>(maxsize));
  }
  JoinableQueue<T = unknown>(maxsize = 0): Promise<JoinableQueue<T>> {
    return this.own((f) => f.JoinableQueue<T>(maxsize));
  }
  Lock(options: LeaseOptions = {}): Promise<Lock> {
    return this.own((f) => f.Lock(options));
  }
  RLock(options: LeaseOptions = {}): Promise<RLock> {
    return this.own((f) => f.RLock(options));
  }
  Semaphore(value = 1): Promise<Semaphore> {
    return this.own((f) => f.Semaphore(value));
  }
  BoundedSemaphore(value = 1): Promise<BoundedSemaphore> {
    return this.own((f) => f.BoundedSemaphore(value));
  }
  Condition(lock?: Lock | RLock | null): Promise<Condition> {
    return this.own((f) => f.Condition(lock));
  }
  Event(): Promise<Event> {
    return this.own((f) => f.Event());
  }
  Barrier(parties: number, action?: (() => unknown) | null, timeout?: number | null): Promise<Barrier> {
    return this.own((f) => f.Barrier(parties, action, timeout));
  }
  Value<T extends Typecode>(typecode: T, value?: TypecodeValue[T] | number): Promise<Value<T>> {
    return this.own((f) => f.Value(typecode, value));
  }

  /** Deletes every object this manager made (Python's manager shutdown ends its objects). */
  async shutdown(): Promise<void> {
    if (this.down) return;
    this.down = true;
    const objects = [...this.made];
    this.made.clear();
    if (objects.length === 0) return;
    await objects[0]!._space.destroy(this.settings.keyTtl, objects.flatMap((o) => [...o._keys.all]));
    await Promise.allSettled(objects.map((o) => o.close()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }
}
