/**
 * Queue, JoinableQueue and SimpleQueue of the redis context (docs/api.md, "Beyond one machine").
 *
 *   mp:queue:{id}          HASH: maxsize, unfinished (JoinableQueue), holders; its channel
 *   mp:queue:{id}:items    LIST of encoded items, oldest first
 *
 * A get is one script (LPOP): atomic, so an item is taken by exactly one getter. Puts are as
 * Python's: on an unbounded queue `put` never waits, the item is buffered by this process and a
 * feeder writes the buffer in order, many items per script (RPUSH); `joinThread()` (after
 * `close()`) waits for it, and the process does not exit before it is written. On a bounded queue
 * a put waits for room (the script refuses while the queue is full), one at a time per handle.
 * Either way the items of one producer keep their order. Getters wait for a put (the script
 * publishes when the queue stops being empty), putters for room (a get publishes when a full
 * queue gets room), `join()` for the last `taskDone()`.
 */
import { Empty, Full, ValueError } from '../errors.js';
import { RedisScript } from './script.js';
import { decodeValue, encodeValue, LUA_GONE, RedisObject, registerHandle, type Birth, type ObjectSpace } from './objects.js';
import type { Step } from './waiting.js';

export interface PutOptions {
  block?: boolean;
  timeout?: number | null;
  signal?: AbortSignal;
}
export type GetOptions = PutOptions;

/** KEYS hash, items; ARGV maxsize (0: none), ttl ms, joinable ('1'), then the items (one when
 * bounded). 1 put, 0 full. */
const PUT = new RedisScript('queue.put', `
${LUA_GONE}
local max = tonumber(ARGV[1])
local n = redis.call('LLEN', KEYS[2])
if max > 0 and n >= max then return 0 end
for i = 4, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[1], 'unfinished', #ARGV - 3) end
if n == 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  redis.call('PUBLISH', KEYS[1], 'put')
end
return 1`);

/** Items (or bytes) one feeder write takes at most. */
const FEED_ITEMS = 1000;
const FEED_BYTES = 1 << 20;

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
  /** An unbounded queue's items put here and not yet written, and the feeder writing them. */
  private _buffer: Buffer[] = [];
  private _feeding: Promise<void> | null = null;
  private _feedError: Error | null = null;

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

  private _putArgs(items: Buffer[]): Array<string | number | Buffer> {
    return [this._maxsize, Math.ceil(this._ttl * 1000), this._joinable ? '1' : '0', ...items];
  }

  /** Puts `obj`. On an unbounded queue it never waits: the item is buffered here and written in
   * the background, in order (a JoinableQueue's put resolves once its item is counted in Redis,
   * so that a `join()` anywhere waits for it, as Python's counts it at once). On a bounded one it
   * waits for room (`Full` after `timeout`, or at once with `block: false`) and resolves once the
   * item is in Redis. */
  async put(obj: T, options: PutOptions = {}): Promise<void> {
    if (this._isClosed) throw new ValueError(`${this} is closed`);
    if (this._feedError) throw this._feedError;
    const item = encodeValue(obj);
    if (this._maxsize === 0) {
      this._buffer.push(item);
      this._feeding ??= this._feed();
      if (this._joinable) await this._flushed();
      return;
    }
    const tryPut = async (): Promise<Step<void>> =>
      ((await this._run(PUT, [this._key, this._items], this._putArgs([item]))) === 1 ? { done: true, value: undefined } : NOT_YET);
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

  /** Writes the buffer, oldest first, many items per script, until it is empty. */
  private _feed(): Promise<void> {
    const feeding = (async () => {
      try {
        while (this._buffer.length > 0) {
          let n = 0;
          let bytes = 0;
          while (n < this._buffer.length && n < FEED_ITEMS && bytes < FEED_BYTES) bytes += this._buffer[n++]!.length;
          const batch = this._buffer.splice(0, n);
          await this._run(PUT, [this._key, this._items], this._putArgs(batch), false, true);
        }
      } catch (error) {
        // As Python's feeder thread: the items are lost, and it says so; the next put (or
        // joinThread) of this handle raises the error.
        const lost = this._buffer.length;
        this._buffer = [];
        this._feedError = error as Error;
        process.emitWarning(`${this}: could not write buffered items (${lost} more dropped): ${(error as Error).message}`, 'RedisQueueWarning');
      } finally {
        this._feeding = null;
      }
    })();
    this._space.trackWrite(feeding);
    return feeding;
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

  /** The items in Redis, and those this handle has buffered and not written yet (approximate,
   * as Python's: other processes may be putting and getting). */
  async qsize(): Promise<number> {
    return ((await this._run(SIZE, [this._key, this._items], [])) as number) + this._buffer.length;
  }

  async empty(): Promise<boolean> {
    return (await this.qsize()) === 0;
  }

  async full(): Promise<boolean> {
    return this._maxsize > 0 && (await this.qsize()) >= this._maxsize;
  }

  /** No more puts or gets from this handle; the buffered items are still written, then the
   * handle lets go of the queue (docs/distributed.md). */
  override async close(): Promise<void> {
    this._markClosed();
    while (this._feeding) await this._feeding;
    await super.close();
  }

  /** Waits until the items buffered by this handle are in Redis (after `close()`, as in Python);
   * rejects with the error that stopped the writing, if one did. */
  async joinThread(): Promise<void> {
    if (!this._isClosed) throw new ValueError(`Queue ${this} not closed`);
    await this._flushed();
  }

  /** Resolves once this handle's buffer is in Redis; rejects with the error that stopped the
   * writing, if one did. */
  private async _flushed(): Promise<void> {
    while (this._feeding) await this._feeding;
    if (this._feedError) throw this._feedError;
  }

  /** A no-op, for ported code: the buffer goes to Redis (whose list has no size limit), so
   * waiting for it at exit cannot deadlock as waiting for a full pipe can in Python. */
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
