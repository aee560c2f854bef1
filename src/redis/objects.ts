/**
 * What every object of the redis context (queues, locks, events, barriers, values, a manager's
 * containers) is built on: its keys, its lifetime, how it travels, how its values are encoded, and
 * the errors its scripts raise. The objects themselves are in queues.ts, synchronize.ts,
 * sharedctypes.ts and managers.ts beside this file; they wait through waiting.ts.
 *
 * Keys: an object is `mp:<kind>:{<id>}`, a HASH with its settings and small state (also the name
 * of its pub/sub channel), and for some kinds `mp:<kind>:{<id>}:<part>` (a queue's items). The
 * `{<id>}` hash tag keeps an object's keys in one slot of a Redis Cluster, so that one script may
 * touch them all. Every step that reads and writes is one Lua script: atomic.
 *
 * Lifetime, as Python's objects, which live while some process holds them:
 * - the hash counts the processes that hold the object (`refs`). A process holds it from when it
 *   makes or receives a handle until every handle of it there is closed (`close()`), collected,
 *   or the process exits; the keys are deleted when the count reaches 0;
 * - a handle on its way to another process (a task's arguments, a Process's, a queue item) holds
 *   it too, until the receiver takes the hold over (a token), so the sender may close at once;
 * - every holder refreshes the keys' TTL (`keyTtl`) while it holds them, so the holds of processes
 *   that died without closing expire: their keys go at most `keyTtl` after the last live holder.
 * Objects made by a Manager belong to it: they live until its `shutdown()` (or `keyTtl` after its
 * process died), and the handles of other processes borrow them, as proxies do.
 */
import { errorClasses, ValueError } from '../errors.js';
import { reduceSymbol, registerReducer, type ReduceContext, type Reduced, dumps, type RebuildContext } from '../reduction.js';
import { abortable, finalize } from '../util.js';
import { connect, disconnect, KeyKeeper, whileAlive, type RedisClient } from './client.js';
import { RedisScript } from './script.js';
import { key, newId, redisSettings } from './settings.js';
import { decodeRemote, remoteReduceContext, senderResolving } from './naming.js';
import { Wakeups, type Step, type WaitOptions } from './waiting.js';

// ---- scripts that every object shares ------------------------------------------------------------

/** Errors a script raises: `MP <ErrorClass> <message>`, re-thrown here as that class. A missing
 * object is `MPGONE ...` (a reply needs its own code before a space, or Redis 7 puts `ERR` first). */
export const LUA_GONE = `if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('MPGONE the object is not in Redis') end`;

/** Makes an object: KEYS[1] its hash; ARGV ttl ms, owned ('1': counts holders), then field/value pairs. */
const CREATE = new RedisScript('create', `
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('MP ValueError an object with this id exists') end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'refs', 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1`);

/** A handle leaves with token ARGV[1]: it holds the object until the receiver takes over (ADOPT).
 * If the receiver was faster (its ADOPT ran first and counted itself), nothing to add. */
const SEND = new RedisScript('send', `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HDEL', KEYS[1], 'took:' .. ARGV[1]) == 1 then return 1 end
redis.call('HSET', KEYS[1], 'sent:' .. ARGV[1], 1)
redis.call('HINCRBY', KEYS[1], 'refs', 1)
return 1`);

/** A handle arrived with token ARGV[1]; ARGV[2] = '1' if this process holds the object already. */
const ADOPT = new RedisScript('adopt', `
${LUA_GONE}
if redis.call('HDEL', KEYS[1], 'sent:' .. ARGV[1]) == 1 then
  if ARGV[2] == '1' then redis.call('HINCRBY', KEYS[1], 'refs', -1) end
else
  redis.call('HSET', KEYS[1], 'took:' .. ARGV[1], 1)
  if ARGV[2] == '0' then redis.call('HINCRBY', KEYS[1], 'refs', 1) end
end
return 1`);

/** This process lets go: KEYS all of the object's keys (its hash first); deleted by the last holder. */
const RELEASE = new RedisScript('release', `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[1], 'refs', -1) > 0 then return 0 end
redis.call('DEL', unpack(KEYS))
return 1`);

/** Deletes objects (a manager's shutdown): KEYS all their keys. */
const DESTROY = new RedisScript('destroy', `redis.call('DEL', unpack(KEYS)) return 1`);

// ---- the objects of one Redis server, in this process ----------------------------------------------

/** What this process knows of one object it holds: how many handles, which keys to keep alive. */
interface Holding {
  readonly id: string;
  /** Every key of the object, its hash first (deleted by the last holder). */
  readonly keys: string[];
  /** The keys whose TTL holders refresh (not those with an expiry of their own: a lock's lease). */
  readonly kept: string[];
  readonly ttl: number;
  /** Counted in the object's `refs` (false: a manager's object, borrowed). */
  readonly owned: boolean;
  handles: number;
  /** Called when this process lets go (a held lock stops renewing its lease). */
  readonly onRelease: Set<() => void>;
}

/**
 * The objects of one Redis server as this process uses them: one connection for their commands
 * (auto-pipelined, so that steps issued in one tick go out together and in order), the wake-ups,
 * the holds and the TTL refreshes. Contexts with the same URL share it.
 */
export class ObjectSpace {
  readonly wakeups: Wakeups;
  private client: Promise<RedisClient> | null = null;
  private readonly keepers = new Map<number, KeyKeeper>();
  private readonly held = new Map<string, Holding>();
  private readonly collected = new FinalizationRegistry<Holding>((holding) => void this.letGo(holding).catch(() => {}));
  /** Writes still on their way (a queue's buffered items): shutdown waits for them. */
  private readonly writes = new Set<Promise<unknown>>();
  /** Resolves when the connection, now down, is back. */
  private backUp: Promise<void> | null = null;
  private closed = false;

  constructor(readonly url: string) {
    this.wakeups = new Wakeups(url, (until, signal) => this.reachable(until, signal));
  }

  /** @internal This process's connection for the objects (opened on first use). Internal: its
   * type is ioredis's, which the package's public types must not name (an optional peer). */
  connection(): Promise<RedisClient> {
    if (this.closed) return Promise.reject(new ValueError('the redis context was shut down in this process'));
    if (!this.client) {
      // Steps are mostly awaited one by one; commands issued together still go out back to back.
      const opening = connect(this.url, { role: 'objects', autoPipelining: false });
      opening.catch(() => {
        if (this.client === opening) this.client = null; // unreachable now: the next call tries again
      });
      this.client = opening;
    }
    return this.client;
  }

  /** Resolves true once the connection is up, false if it is still down at `until`
   * (performance.now() ms): a waiting call's timeout holds while Redis is unreachable. */
  async reachable(until: number, signal?: AbortSignal): Promise<boolean> {
    const client = await this.connection();
    if (client.status === 'ready') return true;
    if (performance.now() >= until) return false;
    // One listener per outage, however many calls wait for its end.
    this.backUp ??= new Promise<void>((resolve) => client.once('ready', () => {
      this.backUp = null;
      resolve();
    }));
    const up = this.backUp;
    return abortable<boolean>(signal, (resolve) => {
      const timer = until === Infinity ? null : setTimeout(() => resolve(client.status === 'ready'), until - performance.now());
      void up.then(() => {
        if (timer) clearTimeout(timer);
        resolve(true);
      });
      return () => {
        if (timer) clearTimeout(timer);
      };
    });
  }

  /** Runs a script, keeping the program alive until it replies. */
  async run(script: RedisScript, keys: string[], args: Array<string | number | Buffer>, binary = false): Promise<unknown> {
    return whileAlive((async () => {
      const client = await this.connection();
      return binary ? script.runBuffer(client, keys, args) : script.run(client, keys, args);
    })());
  }

  /** Starts holding `obj` in this process (one more handle); `ready` resolves when Redis knows
   * (the object made, or the hold it arrived with taken over). */
  hold(
    obj: RedisObject,
    birth: Birth,
    keys: { all: string[]; kept: string[] },
    fields: Record<string, string | number>,
  ): { holding: Holding; ready: Promise<void> } {
    let holding = this.held.get(obj._id);
    const alreadyHere = holding !== undefined;
    if (!holding) {
      holding = { id: obj._id, keys: keys.all, kept: keys.kept, ttl: obj._ttl, owned: !obj._managed, handles: 0, onRelease: new Set() };
      this.held.set(obj._id, holding);
      if (holding.owned) void this.keeperFor(holding.ttl).then((k) => k.add(...keys.kept), () => {});
    }
    holding.handles++;
    this.collected.register(obj, holding, obj);
    let ready: Promise<unknown> = Promise.resolve();
    if ('settings' in birth) {
      ready = this.run(CREATE, [obj._key], [
        Math.ceil(obj._ttl * 1000), obj._managed ? '0' : '1', 'kind', obj._kindName, ...Object.entries(fields).flat(),
      ]);
    } else if (birth.arrived.token !== undefined && !obj._managed) {
      ready = this.run(ADOPT, [obj._key], [birth.arrived.token, alreadyHere ? '1' : '0']);
    }
    return { holding, ready: ready.then(() => {}) };
  }

  /** A handle is closed: forgets it; the last one here lets the object go. */
  async close(obj: RedisObject, holding: Holding): Promise<void> {
    this.collected.unregister(obj);
    await this.letGo(holding);
  }

  private async letGo(holding: Holding): Promise<void> {
    if (--holding.handles > 0) return;
    if (this.held.get(holding.id) === holding) this.held.delete(holding.id);
    for (const fn of holding.onRelease) fn();
    holding.onRelease.clear();
    if (!holding.owned) return;
    this.keepers.get(holding.ttl)?.forget(...holding.kept);
    if (this.closed) return;
    await this.run(RELEASE, holding.keys, []);
  }

  /** A handle leaves this process: the object is held for the receiver until it arrives. */
  send(obj: RedisObject): string {
    const token = newId();
    void this.run(SEND, [obj._key], [token]).catch(() => {});
    return token;
  }

  /** Keeps `keys` alive for `ttl` seconds at a time (a manager's objects). */
  async keep(ttl: number, keys: string[]): Promise<void> {
    (await this.keeperFor(ttl)).add(...keys);
  }

  /** Deletes objects at once (a manager's shutdown): their handles everywhere fail from then on. */
  async destroy(ttl: number, keys: string[]): Promise<void> {
    this.keepers.get(ttl)?.forget(...keys);
    for (let i = 0; i < keys.length; i += 1000) await this.run(DESTROY, keys.slice(i, i + 1000), []);
  }

  private async keeperFor(ttl: number): Promise<KeyKeeper> {
    let keeper = this.keepers.get(ttl);
    if (!keeper) {
      const client = await this.connection();
      keeper = this.keepers.get(ttl) ?? new KeyKeeper(client, ttl);
      this.keepers.set(ttl, keeper);
    }
    return keeper;
  }

  /** Keeps `write` in mind until it settles: shutdown (and exit) waits for it. */
  trackWrite(write: Promise<unknown>): void {
    this.writes.add(write);
    const forget = () => this.writes.delete(write);
    write.then(forget, forget);
  }

  /** Lets go of every object this process holds, then closes the connections. */
  async shutdown(): Promise<void> {
    if (this.closed) return;
    while (this.writes.size > 0) await Promise.allSettled([...this.writes]);
    const holdings = [...this.held.values()];
    this.held.clear();
    await Promise.allSettled(holdings.map((h) => {
      h.handles = 1;
      return this.letGo(h);
    }));
    this.closed = true;
    for (const keeper of this.keepers.values()) keeper.stop();
    this.keepers.clear();
    this.wakeups.close();
    const client = this.client;
    this.client = null;
    if (client) disconnect(await client.catch(() => null));
    if (spaces.get(this.url) === this) spaces.delete(this.url);
  }
}

const spaces = new Map<string, ObjectSpace>();
let firstSpace: ObjectSpace | null = null;

/** The object space of a Redis URL in this process (contexts with the same URL share it). */
export function spaceFor(url: string): ObjectSpace {
  let space = spaces.get(url);
  if (!space) {
    space = new ObjectSpace(url);
    spaces.set(url, space);
  }
  firstSpace ??= space;
  return space;
}

/**
 * Where handles that arrive in this process connect: the Redis of this process's first redis
 * context, else `MP_REDIS_URL` (a worker program sets it to its `--redis` URL for the processes it
 * starts). A handle carries no URL: passwords do not travel through Redis.
 */
function spaceForArrivals(): ObjectSpace {
  if (firstSpace && spaces.get(firstSpace.url) === firstSpace) return firstSpace;
  if (!process.env.MP_REDIS_URL) {
    throw new ValueError(
      'An object of the redis context arrived in a process that has no redis context: create one ' +
        "(mp.getContext('redis', { url })) before receiving it, or set MP_REDIS_URL.",
    );
  }
  return spaceFor(redisSettings({}).url);
}

// At exit, this process lets go of what it holds (a child runs the finalizers before it ends; the
// main program when its event loop empties).
async function shutdownAll(): Promise<void> {
  await Promise.allSettled([...spaces.values()].map((space) => space.shutdown()));
}
finalize(shutdownAll, 10);
let shutDownAtExit = false;
process.on('beforeExit', () => {
  if (shutDownAtExit || spaces.size === 0) return;
  shutDownAtExit = true;
  void shutdownAll();
});

// ---- one object ---------------------------------------------------------------------------------

/** How a handle comes to be: made here (with its context's settings), or arrived (its state). */
export type Birth = { settings: ObjectSettings } | { arrived: HandleState };

/** What an object is made with: its keys' TTL, and whether a manager owns it. */
interface ObjectSettings {
  ttl: number;
  managed?: boolean;
}

/** What every handle carries when it travels. */
interface HandleState {
  id: string;
  ttl: number;
  managed: boolean;
  /** The hold it brings (ADOPT); none for a manager's objects. */
  token?: string;
}

/** Names of a kind: its keys (`queue` -> `mp:queue:{id}`), its class, its keys besides the hash
 * (`parts`, kept alive with it, and `ownExpiry`, which expire by themselves: a lock's lease). */
export interface KindNames {
  keyKind: string;
  kindName: string;
  parts?: readonly string[];
  ownExpiry?: readonly string[];
}

/** The base of every handle: an id, its keys, its hold in this process, its scripts' errors. */
export abstract class RedisObject {
  /** @internal */ readonly _id: string;
  /** @internal */ readonly _space: ObjectSpace;
  /** @internal The object's hash, and the name of its channel. */
  readonly _key: string;
  /** @internal */ readonly _ttl: number;
  /** @internal */ readonly _managed: boolean;
  /** @internal */ readonly _kindName: string;
  private readonly _holding: Holding;
  private readonly _ready: Promise<void>;
  private _closed = false;
  private _released: Promise<void> | null = null;

  /** `fields` are the hash's first fields when the object is made here (ignored on arrival). */
  protected constructor(space: ObjectSpace, birth: Birth, names: KindNames, fields: Record<string, string | number> = {}) {
    const arrived = 'arrived' in birth ? birth.arrived : null;
    this._id = arrived?.id ?? newId();
    this._space = space;
    this._kindName = names.kindName;
    this._key = key(names.keyKind, `{${this._id}}`);
    this._ttl = arrived?.ttl ?? (birth as { settings: ObjectSettings }).settings.ttl;
    this._managed = arrived?.managed ?? (birth as { settings: ObjectSettings }).settings.managed ?? false;
    const kept = [this._key, ...(names.parts ?? []).map((p) => this._part(p))];
    const all = [...kept, ...(names.ownExpiry ?? []).map((p) => this._part(p))];
    const { holding, ready } = space.hold(this, birth, { all, kept }, fields);
    this._holding = holding;
    this._ready = ready;
    // A failure shows on the first call (made before any, or failing with it).
    ready.catch(() => {});
  }

  /** @internal One of the object's other keys. */
  _part(name: string): string {
    return `${this._key}:${name}`;
  }

  /** @internal Runs one of the object's scripts (its hash first among `keys`), with its errors. */
  protected async _run(
    script: RedisScript,
    keys: string[],
    args: Array<string | number | Buffer>,
    binary = false,
    /** A write this handle still owes after `close()` (a queue's buffered items). */
    evenIfClosed = false,
  ): Promise<unknown> {
    if (this._closed && !evenIfClosed) throw new ValueError(`${this} is closed`);
    try {
      await this._ready;
      return await this._space.run(script, keys, args, binary);
    } catch (error) {
      throw this._error(error as Error);
    }
  }

  /** @internal Resolves once the object exists in Redis (made, or its hold taken over). */
  async _whenReady(): Promise<void> {
    try {
      await this._ready;
    } catch (error) {
      throw this._error(error as Error);
    }
  }

  /** @internal The wake-ups of this object's channel. */
  protected _wait<T>(step: () => Promise<Step<T>>, options: WaitOptions): Promise<Step<T>> {
    if (this._closed) return Promise.reject(new ValueError(`${this} is closed`));
    return this._space.wakeups.waitFor(this._key, step, options);
  }

  /** @internal Called when this process lets go of the object. */
  protected _onRelease(fn: () => void): void {
    this._holding.onRelease.add(fn);
  }

  private _error(error: Error): Error {
    const message = String(error?.message ?? '');
    if (message.startsWith('MPGONE')) {
      return new ValueError(
        `${this} no longer exists in Redis: every process that held it closed it (or died more than ` +
          `${this._ttl} s ago), its manager shut down, or Redis lost it (restarted without persistence).`,
      );
    }
    const scripted = /^MP (\w+) ([\s\S]*)$/.exec(message);
    if (scripted) {
      const cls = errorClasses[scripted[1]!] ?? (scripted[1] === 'TypeError' ? TypeError : Error);
      return new cls(scripted[2]!);
    }
    return error;
  }

  /** Lets go of this handle: other handles (here and in other processes) keep working; the
   * object's keys are deleted when no process holds it any more (docs/distributed.md). */
  async close(): Promise<void> {
    this._closed = true;
    this._released ??= (async () => {
      await this._ready.catch(() => {});
      await this._space.close(this, this._holding);
    })();
    return this._released;
  }

  /** @internal No more calls through this handle (it may still finish what it owes). */
  protected _markClosed(): void {
    this._closed = true;
  }

  /** @internal Every key of the object (its hash first), and those kept alive by refreshes. */
  get _keys(): { all: readonly string[]; kept: readonly string[] } {
    return { all: this._holding.keys, kept: this._holding.kept };
  }

  /** @internal */
  get _isClosed(): boolean {
    return this._closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** @internal What this kind adds to the travelling state (its settings). */
  protected abstract _state(ctx: ReduceContext): Record<string, unknown>;

  [reduceSymbol](ctx: ReduceContext): Reduced {
    if (!ctx.remote) {
      throw new ValueError(
        `${this} lives in Redis: pass it to processes and pools of the redis context (or put it in its ` +
          "objects), not to this machine's processes or threads (mixing contexts is not allowed).",
      );
    }
    if (this._closed) throw new ValueError(`${this} is closed`);
    const base: HandleState = { id: this._id, ttl: this._ttl, managed: this._managed };
    if (!this._managed) base.token = this._space.send(this);
    return { kind: `redis.${this._kindName}`, state: { base, ...this._state(ctx) } };
  }

  toString(): string {
    return `<redis ${this._kindName} ${this._key}>`;
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

/** Registers how a kind is rebuilt in the process a handle arrives in (reduction.ts's table). */
export function registerHandle<S>(kindName: string, rebuild: (space: ObjectSpace, birth: Birth, state: S) => RedisObject): void {
  registerReducer(`redis.${kindName}`, (state: S & { base: HandleState }) => rebuild(spaceForArrivals(), { arrived: state.base }, state));
}

// ---- values in Redis -----------------------------------------------------------------------------

/** A value as stored in Redis: the library's serialisation, with functions named by their project
 * path and only redis objects as handles (naming.ts), as a task's arguments are. */
export function encodeValue(value: unknown): Buffer {
  return dumps(value, remoteReduceContext());
}

let arrivals: RebuildContext | null = null;

/** A stored value back: references only to modules this process loaded, no source functions. */
export function decodeValue(bytes: Uint8Array): unknown {
  arrivals ??= { target: 'process', handles: [], remote: senderResolving() };
  return decodeRemote(bytes, arrivals);
}

