/**
 * Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event and Barrier of the redis context
 * (docs/api.md, "Beyond one machine"), with Python's semantics; each step is one Lua script, and
 * waiting is waiting.ts's (a message on the object's channel, or a lease's end).
 *
 * Locks are leases with fencing: an acquisition sets `mp:lock:{id}:lease` (the holder's fencing
 * token, from a counter that only grows) with an expiry of `lease` seconds, which the holding
 * process renews every third of it while it holds the lock. A holder that dies (or is cut off from
 * Redis) stops renewing, and the lock is free again when its lease ends; its late `release()` then
 * raises `ValueError` saying the lease expired. `fencingToken` lets a resource guarded by the lock
 * refuse a holder whose lease has passed (it has a smaller token than the current holder's).
 */
import { threadId } from 'node:worker_threads';
import { BrokenBarrierError, ValueError } from '../errors.js';
import { reduceFunction, type ReduceContext } from '../reduction.js';
import { normalizeAcquire, withLock, type AcquireOptions } from '../synchronize.js';
import { RedisScript } from './script.js';
import { newId, processTag } from './settings.js';
import { LUA_GONE, RedisObject, registerHandle, type Birth, type ObjectSpace } from './objects.js';
import type { Step } from './waiting.js';

export type { AcquireOptions } from '../synchronize.js';

export interface WaitOptions {
  signal?: AbortSignal;
}

/** Options of a redis Lock or RLock. */
export interface LeaseOptions {
  /** Seconds a holder that stopped renewing keeps the lock (default: the context's `lease`). */
  lease?: number;
}

const DONE: Step<void> = { done: true, value: undefined };
const NOT_YET: Step<never> = { done: false };

function stepOf(ok: unknown): Step<void> {
  return ok === 1 ? DONE : NOT_YET;
}

/** What Lock, RLock, Semaphore and Condition share: `with` and the disposers (local LockLike's). */
abstract class Acquirable extends RedisObject {
  abstract acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean>;
  abstract release(): Promise<void>;

  /** Acquires (abortable with `signal`), runs `fn` (sync or async), releases; returns its result. */
  with<T>(fn: () => T | Promise<T>, options: Pick<AcquireOptions, 'signal'> = {}): Promise<T> {
    return withLock(this, fn, options);
  }

  /** Python's `__exit__`: releases (as a local lock's); `close()` lets go of the handle. */
  override async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}

// ---- Lock and RLock ----------------------------------------------------------------------------

/** KEYS hash, lease; ARGV lease ms, owner ('' for a Lock), count. The fencing token (> 0), or
 * minus the ms the current lease has left. An RLock's owner enters again (count added). */
const ACQUIRE = new RedisScript('lock.acquire', `
${LUA_GONE}
local current = redis.call('GET', KEYS[2])
if current then
  if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'owner') == ARGV[2] then
    redis.call('HINCRBY', KEYS[1], 'count', ARGV[3])
    redis.call('PEXPIRE', KEYS[2], ARGV[1])
    return tonumber(current)
  end
  local left = redis.call('PTTL', KEYS[2])
  if left < 0 then left = tonumber(ARGV[1]) end
  return -left
end
local token = redis.call('HINCRBY', KEYS[1], 'fence', 1)
redis.call('SET', KEYS[2], token, 'PX', ARGV[1])
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'count', ARGV[3])
return token`);

/** KEYS hash, lease; ARGV token, lease ms. 1 if the lease was still this token's. */
const RENEW = new RedisScript('lock.renew', `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1`);

/**
 * KEYS hash, lease; ARGV token held here ('' if none), owner ('' for a Lock), all levels ('1').
 * The count held before (an RLock's levels). A Lock may be released by anyone; an RLock only by its
 * owner; a token whose lease is gone raises.
 */
const RELEASE = new RedisScript('lock.release', `
${LUA_GONE}
local current = redis.call('GET', KEYS[2])
local mine = ARGV[1] ~= '' and current == ARGV[1]
if ARGV[1] ~= '' and not mine then
  if current == false and redis.call('HGET', KEYS[1], 'freed') == ARGV[1] then
    return redis.error_reply('MP ValueError semaphore or lock released too many times')
  end
  return redis.error_reply('MP ValueError release of a redis lock whose lease had expired (fencing token ' .. ARGV[1] ..
    '): it was held past its lease without renewing it (the process was stopped or cut off from Redis), ' ..
    'and another process may have held it since')
end
if ARGV[2] ~= '' and (not mine or redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2]) then
  return redis.error_reply('MP ValueError attempt to release recursive lock not owned by thread')
end
if not current then return redis.error_reply('MP ValueError semaphore or lock released too many times') end
local count = tonumber(redis.call('HGET', KEYS[1], 'count') or '1')
if ARGV[2] ~= '' and ARGV[3] ~= '1' and count > 1 then
  redis.call('HSET', KEYS[1], 'count', count - 1)
  return count
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'freed', current, 'owner', '', 'count', 0)
redis.call('PUBLISH', KEYS[1], 'released')
return count`);

/** Who owns an RLock: this process and thread (async code on one thread shares it, as locally). */
const rlockOwner = (): string => `${processTag()}:${threadId}`;

/** A lease this process (thread) holds: its token, and the timer that renews it. */
interface Lease {
  token: number;
  renewal: NodeJS.Timeout;
}

// One per lock id in this process and thread (worker threads have their own module instance).
const leases = new Map<string, Lease>();

/** What Lock and RLock share: the lease, its renewal, its fencing token. */
abstract class LeasedLock extends Acquirable {
  /** Seconds a holder that stopped renewing keeps the lock. */
  readonly lease: number;

  protected constructor(space: ObjectSpace, birth: Birth, kindName: string, lease: number) {
    if (!(lease > 0) || !Number.isFinite(lease)) throw new ValueError(`lease must be a positive number of seconds, not ${lease}`);
    super(space, birth, { keyKind: 'lock', kindName, ownExpiry: ['lease'] }, { lease });
    this.lease = lease;
    // This process lets go of the lock object: its lease is no longer renewed (it expires).
    this._onRelease(() => this._forgetLease());
  }

  /** '' for a Lock (no owner), this process and thread for an RLock. */
  protected abstract get _owner(): string;

  private get _leaseMs(): number {
    return Math.ceil(this.lease * 1000);
  }

  /** The fencing token of this process's current hold (it grows with every acquisition of the
   * lock, by anyone), or null when this process does not hold it. */
  get fencingToken(): number | null {
    return leases.get(this._id)?.token ?? null;
  }

  /** Acquires the lock; resolves true, or false when `block` is false or `timeout` passed. */
  async acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean> {
    const o = normalizeAcquire(options, timeout);
    const outcome = await this._wait(() => this._tryAcquire(1), { block: o.block, timeout: o.timeout, signal: o.signal });
    return outcome.done;
  }

  /** @internal One try; `count` levels (an RLock taken back after a Condition wait). */
  protected async _tryAcquire(count: number): Promise<Step<void>> {
    const reply = (await this._run(ACQUIRE, [this._key, this._part('lease')], [this._leaseMs, this._owner, count])) as number;
    if (reply <= 0) return { done: false, retryInMs: -reply };
    this._holdLease(reply);
    return DONE;
  }

  private _holdLease(token: number): void {
    const held = leases.get(this._id);
    if (held?.token === token) return;
    if (held) clearInterval(held.renewal);
    const renewal = setInterval(() => void this._renew(token), this._leaseMs / 3);
    renewal.unref(); // a lock held does not keep the program alive (its lease ends with it)
    leases.set(this._id, { token, renewal });
  }

  private async _renew(token: number): Promise<void> {
    try {
      const still = await this._run(RENEW, [this._key, this._part('lease')], [token, this._leaseMs]);
      if (still !== 1) this._stopRenewing(token);
    } catch {
      // Redis unreachable: the next renewal tries again; the lease may end meanwhile (it then
      // raises at release).
    }
  }

  /** The lease is gone (expired, or released by another process): renewing it stops; the token
   * stays until `release()`, which then says what happened. */
  private _stopRenewing(token: number): void {
    const held = leases.get(this._id);
    if (held?.token === token) clearInterval(held.renewal);
  }

  private _forgetLease(): void {
    const held = leases.get(this._id);
    if (held) clearInterval(held.renewal);
    leases.delete(this._id);
  }

  /** @internal Releases (`all`: every level of an RLock); resolves the levels held before. */
  protected async _release(all: boolean): Promise<number> {
    const held = leases.get(this._id);
    try {
      const before = (await this._run(RELEASE, [this._key, this._part('lease')], [held ? String(held.token) : '', this._owner, all ? '1' : '0'])) as number;
      if (all || before <= 1 || this._owner === '') this._forgetLease();
      return before;
    } catch (error) {
      if (held && /expired/.test((error as Error).message)) this._forgetLease();
      throw error;
    }
  }

  /** @internal Whether this process (thread, for an RLock) holds the lock, as far as it knows. */
  _isMine(): boolean {
    return leases.has(this._id);
  }

  /** @internal For Condition.wait: releases completely; returns what `_restore` needs. */
  abstract _releaseSave(): Promise<number>;

  /** @internal Takes the lock back after a Condition wait (waiting as long as it takes). */
  async _restore(saved: number): Promise<void> {
    await this._wait(() => this._tryAcquire(saved), {});
  }

  /** @internal */
  protected _state(): Record<string, unknown> {
    return { lease: this.lease };
  }
}

/** A non-recursive lock in Redis: any process may release it. */
export class Lock extends LeasedLock {
  /** @internal Made by `ctx.Lock({ lease })`. */
  constructor(space: ObjectSpace, birth: Birth, lease: number) {
    super(space, birth, 'Lock', lease);
  }

  protected get _owner(): string {
    return '';
  }

  /** Releases the lock: `ValueError` if it is not locked, or if this process's lease on it expired. */
  async release(): Promise<void> {
    await this._release(false);
  }

  /** @internal */
  async _releaseSave(): Promise<number> {
    await this.release();
    return 1;
  }
}

/** A recursive lock in Redis, owned by one process and thread at a time. */
export class RLock extends LeasedLock {
  /** @internal Made by `ctx.RLock({ lease })`. */
  constructor(space: ObjectSpace, birth: Birth, lease: number) {
    super(space, birth, 'RLock', lease);
  }

  protected get _owner(): string {
    return rlockOwner();
  }

  /** Releases one level: `ValueError` if this process and thread do not own it, or if its lease
   * expired. */
  async release(): Promise<void> {
    await this._release(false);
  }

  /** @internal */
  async _releaseSave(): Promise<number> {
    if (!this._isMine()) throw new ValueError('attempt to release recursive lock not owned by thread');
    return this._release(true);
  }
}

registerHandle('Lock', (space, birth, state: { lease: number }) => new Lock(space, birth, state.lease));
registerHandle('RLock', (space, birth, state: { lease: number }) => new RLock(space, birth, state.lease));

// ---- Semaphore ---------------------------------------------------------------------------------

const SEMAPHORE_DOWN = new RedisScript('semaphore.down', `
${LUA_GONE}
if tonumber(redis.call('HGET', KEYS[1], 'value')) <= 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'value', -1)
return 1`);

const SEMAPHORE_UP = new RedisScript('semaphore.up', `
${LUA_GONE}
local max = tonumber(redis.call('HGET', KEYS[1], 'max'))
if max >= 0 and tonumber(redis.call('HGET', KEYS[1], 'value')) >= max then
  return redis.error_reply('MP ValueError semaphore or lock released too many times')
end
redis.call('HINCRBY', KEYS[1], 'value', 1)
redis.call('PUBLISH', KEYS[1], 'up')
return 1`);

const HASH_FIELD = new RedisScript('hash.field', `
${LUA_GONE}
return redis.call('HGET', KEYS[1], ARGV[1])`);

/** A counter in Redis: `acquire` takes one unit (waiting for one), `release` gives one back. */
export class Semaphore extends Acquirable {
  /** @internal Made by `ctx.Semaphore(value)`; `max` -1 for none (a BoundedSemaphore's is its value). */
  constructor(space: ObjectSpace, birth: Birth, value = 1, kindName = 'Semaphore', max = -1) {
    if (typeof value !== 'number' || !Number.isInteger(value)) throw new TypeError('semaphore value must be an integer');
    if (value < 0) throw new ValueError('semaphore initial value must be >= 0');
    super(space, birth, { keyKind: 'semaphore', kindName }, { value, max });
  }

  async acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean> {
    const o = normalizeAcquire(options, timeout);
    const outcome = await this._wait(async () => stepOf(await this._run(SEMAPHORE_DOWN, [this._key], [])), {
      block: o.block, timeout: o.timeout, signal: o.signal,
    });
    return outcome.done;
  }

  async release(): Promise<void> {
    await this._run(SEMAPHORE_UP, [this._key], []);
  }

  async getValue(): Promise<number> {
    return Number(await this._run(HASH_FIELD, [this._key], ['value']));
  }

  /** @internal */
  protected _state(): Record<string, unknown> {
    return {};
  }
}

/** A Semaphore whose `release` beyond its initial value raises `ValueError`. */
export class BoundedSemaphore extends Semaphore {
  /** @internal */
  constructor(space: ObjectSpace, birth: Birth, value = 1) {
    super(space, birth, value, 'BoundedSemaphore', value);
  }
}

registerHandle('Semaphore', (space, birth) => new Semaphore(space, birth));
registerHandle('BoundedSemaphore', (space, birth) => new BoundedSemaphore(space, birth));

// ---- Condition ---------------------------------------------------------------------------------

/** KEYS hash, waiters; ARGV token, ttl ms: a waiter enters (in notify order). */
const CONDITION_ENTER = new RedisScript('condition.enter', `
${LUA_GONE}
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1`);

/** KEYS hash; ARGV token: 1 if it was notified (the notification is taken). */
const CONDITION_TAKE = new RedisScript('condition.take', `
${LUA_GONE}
return redis.call('HDEL', KEYS[1], 's:' .. ARGV[1])`);

/** KEYS hash, waiters; ARGV token: leaves; 1 if it had been notified meanwhile. */
const CONDITION_LEAVE = new RedisScript('condition.leave', `
${LUA_GONE}
if redis.call('LREM', KEYS[2], 0, ARGV[1]) > 0 then return 0 end
return redis.call('HDEL', KEYS[1], 's:' .. ARGV[1])`);

/** KEYS hash, waiters; ARGV n: notifies the first n waiters (in the order they entered). */
const CONDITION_NOTIFY = new RedisScript('condition.notify', `
${LUA_GONE}
local n = tonumber(ARGV[1])
local woken = 0
while woken < n do
  local token = redis.call('LPOP', KEYS[2])
  if not token then break end
  redis.call('HSET', KEYS[1], 's:' .. token, 1)
  woken = woken + 1
end
if woken > 0 then redis.call('PUBLISH', KEYS[1], 'notified') end
return woken`);

/** A condition variable in Redis over a redis Lock or RLock (a fresh RLock by default). */
export class Condition extends Acquirable {
  /** @internal */ readonly _lock: Lock | RLock;

  /** @internal Made by `ctx.Condition(lock)`; `ownsLock`: the lock was made for it (or arrived
   * with it), and is closed with it. */
  constructor(space: ObjectSpace, birth: Birth, lock: Lock | RLock, private readonly _ownsLock = true) {
    if (!(lock instanceof Lock || lock instanceof RLock)) {
      throw new TypeError('a redis Condition needs a Lock or RLock of the redis context');
    }
    super(space, birth, { keyKind: 'condition', kindName: 'Condition', parts: ['waiters'] });
    this._lock = lock;
  }

  /** Lets go of this handle, and of its lock's if the lock was made for it. */
  override async close(): Promise<void> {
    await super.close();
    if (this._ownsLock) await this._lock.close();
  }

  acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean> {
    return this._lock.acquire(options, timeout);
  }

  release(): Promise<void> {
    return this._lock.release();
  }

  /** Releases the lock (every level of an RLock), waits for a notify or `timeout` seconds, takes
   * the lock back; resolves true if notified, false on timeout. */
  async wait(timeout?: number | null, options: WaitOptions = {}): Promise<boolean> {
    if (!this._lock._isMine()) throw new ValueError('must acquire() condition before using wait()');
    const token = newId();
    const waiters = this._part('waiters');
    await this._run(CONDITION_ENTER, [this._key, waiters], [token, Math.ceil(this._ttl * 1000)]);
    const saved = await this._lock._releaseSave();
    let notified: boolean;
    try {
      const outcome = await this._wait(async () => stepOf(await this._run(CONDITION_TAKE, [this._key], [token])), {
        timeout, signal: options.signal,
      });
      notified = outcome.done || (await this._run(CONDITION_LEAVE, [this._key, waiters], [token])) === 1;
    } catch (error) {
      await this._run(CONDITION_LEAVE, [this._key, waiters], [token]).catch(() => {});
      await this._lock._restore(saved);
      throw error;
    }
    await this._lock._restore(saved);
    return notified;
  }

  /** Waits until `predicate()` is truthy (checked first, then after each wake); returns its last
   * value, falsy on timeout. */
  async waitFor<T>(predicate: () => T | Promise<T>, timeout?: number | null, options: WaitOptions = {}): Promise<T> {
    let result = await predicate();
    const deadline = timeout === null || timeout === undefined ? Infinity : performance.now() + Math.max(0, timeout) * 1000;
    while (!result) {
      const left = deadline === Infinity ? null : (deadline - performance.now()) / 1000;
      if (left !== null && left <= 0) break;
      await this.wait(left, options);
      result = await predicate();
    }
    return result;
  }

  /** Wakes up to `n` waiters; `ValueError` unless this process holds the lock. */
  async notify(n = 1): Promise<void> {
    if (!this._lock._isMine()) throw new ValueError('lock is not owned');
    await this._run(CONDITION_NOTIFY, [this._key, this._part('waiters')], [n]);
  }

  notifyAll(): Promise<void> {
    return this.notify(0x7fffffff);
  }

  /** @internal */
  protected _state(): Record<string, unknown> {
    return { lock: this._lock };
  }
}

registerHandle('Condition', (space, birth, state: { lock: Lock | RLock }) => new Condition(space, birth, state.lock));

// ---- Event -------------------------------------------------------------------------------------

const EVENT_SET = new RedisScript('event.set', `
${LUA_GONE}
redis.call('HSET', KEYS[1], 'flag', ARGV[1])
if ARGV[1] == '1' then redis.call('PUBLISH', KEYS[1], 'set') end
return 1`);

/** A flag in Redis that processes on any machine can wait for. */
export class Event extends RedisObject {
  /** @internal Made by `ctx.Event()`. */
  constructor(space: ObjectSpace, birth: Birth) {
    super(space, birth, { keyKind: 'event', kindName: 'Event' }, { flag: 0 });
  }

  async isSet(): Promise<boolean> {
    return (await this._run(HASH_FIELD, [this._key], ['flag'])) === '1';
  }

  /** Sets the flag and wakes every waiter. */
  async set(): Promise<void> {
    await this._run(EVENT_SET, [this._key], ['1']);
  }

  async clear(): Promise<void> {
    await this._run(EVENT_SET, [this._key], ['0']);
  }

  /** Resolves the flag: true once set, false after `timeout` seconds unset. */
  async wait(timeout?: number | null, options: WaitOptions = {}): Promise<boolean> {
    const outcome = await this._wait(async () => ((await this.isSet()) ? DONE : NOT_YET), { timeout, signal: options.signal });
    return outcome.done;
  }

  /** @internal */
  protected _state(): Record<string, unknown> {
    return {};
  }
}

registerHandle('Event', (space, birth) => new Event(space, birth));

// ---- Barrier -----------------------------------------------------------------------------------

/**
 * The barrier's hash: parties, count (arrived in this cycle), gen (the cycle), broken, and
 * `reset:<gen>` for the cycles that `reset()` ended while parties waited (they raise). A cycle ends
 * when its last party has run the action: gen + 1, count 0.
 */
const BARRIER_ARRIVE = new RedisScript('barrier.arrive', `
${LUA_GONE}
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen'))
if redis.call('HGET', KEYS[1], 'broken') == '1' then return {-1, gen} end
if tonumber(redis.call('HGET', KEYS[1], 'count')) >= tonumber(redis.call('HGET', KEYS[1], 'parties')) then return {-2, gen} end
return {redis.call('HINCRBY', KEYS[1], 'count', 1) - 1, gen}`);

/** The state of cycle ARGV[1] for one of its parties: passed, broken, action (its last party runs
 * it), waiting. With ARGV[2] = '1' (a timeout), a waiting cycle is broken (as Python's). */
const BARRIER_CHECK = new RedisScript('barrier.check', `
${LUA_GONE}
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen'))
if gen ~= tonumber(ARGV[1]) then
  if redis.call('HEXISTS', KEYS[1], 'reset:' .. ARGV[1]) == 1 then return 'broken' end
  return 'passed'
end
if redis.call('HGET', KEYS[1], 'broken') == '1' then return 'broken' end
if tonumber(redis.call('HGET', KEYS[1], 'count')) >= tonumber(redis.call('HGET', KEYS[1], 'parties')) then return 'action' end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'broken', 1)
  redis.call('PUBLISH', KEYS[1], 'broken')
  return 'broken'
end
return 'waiting'`);

/** The last party passes cycle ARGV[1] (1), unless it was broken or reset meanwhile (0). */
const BARRIER_PASS = new RedisScript('barrier.pass', `
${LUA_GONE}
if tonumber(redis.call('HGET', KEYS[1], 'gen')) ~= tonumber(ARGV[1]) or redis.call('HGET', KEYS[1], 'broken') == '1' then return 0 end
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'count', 0)
redis.call('PUBLISH', KEYS[1], 'passed')
return 1`);

/** ARGV[1] 'abort': broken until reset; 'reset': a new cycle, its waiting parties raise. */
const BARRIER_BREAK = new RedisScript('barrier.break', `
${LUA_GONE}
if ARGV[1] == 'abort' then
  redis.call('HSET', KEYS[1], 'broken', 1)
else
  local gen = redis.call('HGET', KEYS[1], 'gen')
  if tonumber(redis.call('HGET', KEYS[1], 'count')) > 0 then redis.call('HSET', KEYS[1], 'reset:' .. gen, 1) end
  redis.call('HINCRBY', KEYS[1], 'gen', 1)
  redis.call('HSET', KEYS[1], 'count', 0, 'broken', 0)
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1`);

const BARRIER_STATE = new RedisScript('barrier.state', `
${LUA_GONE}
return redis.call('HMGET', KEYS[1], 'count', 'broken')`);

/** A barrier for `parties` processes on any machine (threading.Barrier's semantics). */
export class Barrier extends RedisObject {
  readonly parties: number;
  private readonly _action: (() => unknown) | null;
  private readonly _timeout: number | null;

  /** @internal Made by `ctx.Barrier(parties, action, timeout)`. */
  constructor(space: ObjectSpace, birth: Birth, parties: number, action?: (() => unknown) | null, timeout?: number | null) {
    if (typeof parties !== 'number' || !Number.isInteger(parties) || parties < 1) throw new ValueError('parties must be > 0');
    super(space, birth, { keyKind: 'barrier', kindName: 'Barrier' }, { parties, count: 0, gen: 0, broken: 0 });
    this.parties = parties;
    this._action = action ?? null;
    this._timeout = timeout ?? null;
  }

  /** The number of parties waiting in the current cycle (0 when broken). */
  get nWaiting(): Promise<number> {
    return this._run(BARRIER_STATE, [this._key], []).then((r) => {
      const [count, broken] = r as [string, string];
      return broken === '1' ? 0 : Number(count);
    });
  }

  get broken(): Promise<boolean> {
    return this._run(BARRIER_STATE, [this._key], []).then((r) => (r as [string, string])[1] === '1');
  }

  /** Waits for every party; resolves this party's arrival index (0..parties-1).
   * `BrokenBarrierError` on abort, reset or timeout (which breaks the barrier). */
  async wait(timeout?: number | null, options: WaitOptions = {}): Promise<number> {
    const limit = timeout ?? this._timeout;
    const deadline = limit === null ? Infinity : performance.now() + Math.max(0, limit) * 1000;
    const left = (): number | null => (deadline === Infinity ? null : Math.max(0, (deadline - performance.now()) / 1000));
    for (;;) {
      const [index, gen] = (await this._run(BARRIER_ARRIVE, [this._key], [])) as [number, number];
      if (index === -1) throw new BrokenBarrierError();
      if (index === -2) {
        // The previous cycle's last party runs its action: join the next cycle.
        await this._waitFor(gen, ['passed', 'broken'], null, options.signal);
        continue;
      }
      if (index === this.parties - 1) {
        await this._runAction(gen);
        return index;
      }
      let state = await this._waitFor(gen, ['passed', 'broken'], left(), options.signal);
      if (state !== 'passed' && state !== 'broken') {
        // Out of time: breaks a waiting cycle (never one whose action runs: that is waited for).
        state = (await this._run(BARRIER_CHECK, [this._key], [gen, '1'])) as string;
        if (state === 'action') state = await this._waitFor(gen, ['passed', 'broken'], null, options.signal);
      }
      if (state === 'broken') throw new BrokenBarrierError();
      return index;
    }
  }

  private async _waitFor(gen: number, until: string[], timeout: number | null, signal?: AbortSignal): Promise<string> {
    let last = 'waiting';
    await this._wait(async () => {
      last = (await this._run(BARRIER_CHECK, [this._key], [gen, '0'])) as string;
      return until.includes(last) ? DONE : NOT_YET;
    }, { timeout, signal });
    return last;
  }

  private async _runAction(gen: number): Promise<void> {
    if (this._action) {
      try {
        await this._action();
      } catch (error) {
        await this._run(BARRIER_BREAK, [this._key], ['abort']);
        throw error;
      }
    }
    if ((await this._run(BARRIER_PASS, [this._key], [gen])) !== 1) throw new BrokenBarrierError();
  }

  /** Breaks the barrier: current and future waiters get BrokenBarrierError until `reset()`. */
  async abort(): Promise<void> {
    await this._run(BARRIER_BREAK, [this._key], ['abort']);
  }

  /** Back to the initial state; current waiters get BrokenBarrierError. */
  async reset(): Promise<void> {
    await this._run(BARRIER_BREAK, [this._key], ['reset']);
  }

  /** @internal The action travels as a task's function does (by reference, or by source where
   * the receiver allows it). */
  protected _state(ctx: ReduceContext): Record<string, unknown> {
    const action = this._action ? reduceFunction(this._action, 'the Barrier action', ctx) : null;
    return { parties: this.parties, timeout: this._timeout, action };
  }
}

registerHandle(
  'Barrier',
  (space, birth, state: { parties: number; action: (() => unknown) | null; timeout: number | null }) =>
    new Barrier(space, birth, state.parties, state.action, state.timeout),
);
