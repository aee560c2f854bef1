/**
 * Queue, JoinableQueue and SimpleQueue of the redis context (docs/api.md, "Beyond one machine").
 *
 *   mp:queue:{id}          HASH: maxsize, unfinished (JoinableQueue), holders; its channel
 *   mp:queue:{id}:items    LIST of encoded items, oldest first
 *
 * A put is one script (RPUSH, refused while a bounded queue is full), a get one script (LPOP): each
 * is atomic, so an item is taken by exactly one getter. Items of one producer keep their order: a
 * process's puts go out on one connection in the order they were made (a bounded queue's puts one
 * at a time). Getters wait for a put (the script publishes when the queue stops being empty),
 * putters for room (a get publishes when a full queue gets room), `join()` for the last
 * `taskDone()`.
 */
import { Empty, Full, ValueError } from '../errors.js';
import { RedisScript } from './client.js';
import { decodeValue, encodeValue, LUA_GONE, RedisObject, registerHandle, type Birth, type ObjectSpace } from './objects.js';
import type { Step } from './waiting.js';

export interface PutOptions {
  block?: boolean;
  timeout?: number | null;
  signal?: AbortSignal;
}
export type GetOptions = PutOptions;

/** KEYS hash, items; ARGV maxsize (0: none), ttl ms, item, joinable ('1'). 1 put, 0 full. */
const PUT = new RedisScript('queue.put', `
${LUA_GONE}
local max = tonumber(ARGV[1])
local n = redis.call('LLEN', KEYS[2])
if max > 0 and n >= max then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[3])
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[1], 'unfinished', 1) end
if n == 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  redis.call('PUBLISH', KEYS[1], 'put')
end
return 1`);

/** KEYS hash, items; ARGV maxsize. The oldest item, or nil. */
const GET = new RedisScript('queue.get', `
${LUA_GONE}
local item = redis.call('LPOP', KEYS[2])
if not item then return false end
local max = tonumber(ARGV[1])
if max > 0 and redis.call('LLEN', KEYS[2]) == max - 1 then redis.call('PUBLISH', KEYS[1], 'got') end
return item`);

const SIZE = new RedisScript('queue.size', `
${LUA_GONE}
return redis.call('LLEN', KEYS[2])`);

const TASK_DONE = new RedisScript('queue.taskDone', `
${LUA_GONE}
local n = tonumber(redis.call('HGET', KEYS[1], 'unfinished') or '0')
if n <= 0 then return redis.error_reply('MP ValueError task_done() called too many times') end
n = redis.call('HINCRBY', KEYS[1], 'unfinished', -1)
if n == 0 then redis.call('PUBLISH', KEYS[1], 'done') end
return n`);

const UNFINISHED = new RedisScript('queue.unfinished', `
${LUA_GONE}
return tonumber(redis.call('HGET', KEYS[1], 'unfinished') or '0')`);

const NOT_YET: Step<never> = { done: false };

/** `multiprocessing.Queue` in Redis: any process on any machine may put and get. */
export class Queue<T = unknown> extends RedisObject {
  /** @internal 0: unbounded. */
  readonly _maxsize: number;
  private readonly _items: string;
  /** A bounded queue's puts from this handle, one after another (their order is kept). */
  private _lastPut: Promise<unknown> = Promise.resolve();
  private readonly _inFlight = new Set<Promise<unknown>>();

  /** @internal Made by `ctx.Queue(maxsize)`. */
  constructor(space: ObjectSpace, birth: Birth, maxsize = 0, kindName = 'Queue') {
    if (typeof maxsize !== 'number' || Number.isNaN(maxsize)) throw new TypeError('maxsize must be a number');
    const bound = maxsize > 0 ? Math.floor(maxsize) : 0;
    super(space, birth, { keyKind: 'queue', kindName, parts: ['items'] }, { maxsize: bound });
    this._maxsize = bound;
    this._items = this._part('items');
  }

  /** @internal */
  protected get _joinable(): boolean {
    return false;
  }

  /** Puts `obj`; waits only for room in a bounded queue (`Full` after `timeout`, or at once with
   * `block: false`). Resolves once the item is in Redis. */
  put(obj: T, options: PutOptions = {}): Promise<void> {
    const done = this._put(obj, options);
    this._inFlight.add(done);
    const forget = () => this._inFlight.delete(done);
    done.then(forget, forget);
    return done;
  }

  private async _put(obj: T, options: PutOptions): Promise<void> {
    const item = encodeValue(obj);
    const args = [this._maxsize, Math.ceil(this._ttl * 1000), item, this._joinable ? '1' : '0'];
    const tryPut = async (): Promise<Step<void>> =>
      ((await this._run(PUT, [this._key, this._items], args)) === 1 ? { done: true, value: undefined } : NOT_YET);
    if (this._maxsize === 0) {
      await tryPut();
      return;
    }
    const previous = this._lastPut;
    let finished!: () => void;
    this._lastPut = new Promise<void>((resolve) => (finished = resolve));
    try {
      await previous;
      const outcome = await this._wait(tryPut, options);
      if (!outcome.done) throw new Full();
    } finally {
      finished();
    }
  }

  putNowait(obj: T): Promise<void> {
    return this.put(obj, { block: false });
  }

  /** Removes and returns the oldest item; `Empty` if none arrives within `timeout` (or at once
   * with `block: false`). */
  async get(options: GetOptions = {}): Promise<T> {
    const outcome = await this._wait(async (): Promise<Step<Buffer>> => {
      const item = (await this._run(GET, [this._key, this._items], [this._maxsize], true)) as Buffer | null;
      return item === null ? NOT_YET : { done: true, value: item };
    }, options);
    if (!outcome.done) throw new Empty();
    return (await decodeValue(outcome.value)) as T;
  }

  getNowait(): Promise<T> {
    return this.get({ block: false });
  }

  async qsize(): Promise<number> {
    return (await this._run(SIZE, [this._key, this._items], [])) as number;
  }

  async empty(): Promise<boolean> {
    return (await this.qsize()) === 0;
  }

  async full(): Promise<boolean> {
    return this._maxsize > 0 && (await this.qsize()) >= this._maxsize;
  }

  /** Waits until the puts made through this handle are in Redis (after `close()`, as in Python). */
  async joinThread(): Promise<void> {
    if (!this._isClosed) throw new ValueError(`Queue ${this} not closed`);
    await Promise.allSettled([...this._inFlight]);
  }

  /** Nothing is buffered in this process (a put resolves once its item is in Redis): a no-op, for
   * ported code. */
  cancelJoinThread(): void {}

  /** @internal */
  protected _state(): Record<string, unknown> {
    return { maxsize: this._maxsize };
  }

  /** @internal */
  async _taskDone(): Promise<void> {
    await this._run(TASK_DONE, [this._key], []);
  }

  /** @internal */
  async _join(signal?: AbortSignal): Promise<void> {
    await this._wait(async (): Promise<Step<void>> =>
      ((await this._run(UNFINISHED, [this._key], [])) === 0 ? { done: true, value: undefined } : NOT_YET), { signal });
  }
}

/** `multiprocessing.JoinableQueue` in Redis: consumers mark items done, a producer waits for all. */
export class JoinableQueue<T = unknown> extends Queue<T> {
  /** @internal */
  constructor(space: ObjectSpace, birth: Birth, maxsize = 0) {
    super(space, birth, maxsize, 'JoinableQueue');
  }

  /** @internal */
  protected override get _joinable(): boolean {
    return true;
  }

  /** Marks one item as processed; `ValueError` when called more times than items were put. */
  taskDone(): Promise<void> {
    return this._taskDone();
  }

  /** Waits until every item put has been marked done. */
  join(options: { signal?: AbortSignal } = {}): Promise<void> {
    return this._join(options.signal);
  }
}

/** `multiprocessing.SimpleQueue` in Redis: unbounded; `put` never waits for room. */
export class SimpleQueue<T = unknown> extends Queue<T> {
  /** @internal */
  constructor(space: ObjectSpace, birth: Birth) {
    super(space, birth, 0, 'SimpleQueue');
  }
}

registerHandle('Queue', (space, birth, state: { maxsize: number }) => new Queue(space, birth, state.maxsize));
registerHandle('JoinableQueue', (space, birth, state: { maxsize: number }) => new JoinableQueue(space, birth, state.maxsize));
registerHandle('SimpleQueue', (space, birth) => new SimpleQueue(space, birth));
