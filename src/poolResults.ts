/**
 * What a pool call hands back and collects (CPython's ApplyResult, MapResult, IMapIterator): the
 * caller's `AsyncResult` or `IMapIterator`, and the job behind it, which receives its tasks'
 * results from the pool and settles what the caller holds.
 */
import { inspect } from 'node:util';
import { TimeoutError, ValueError } from './errors.js';
import { deadlineAfter, secondsUntil } from './futex.js';
import { MAP_CHUNK } from './poolChannel.js';
import { raceTimeout, throwIfAborted } from './util.js';

type Fn = (...args: any[]) => unknown;

/** Options every pool method takes after its Python parameters. */
export interface CallOptions {
  /** Cancels the call's pending work; the call rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Seconds a task may run; a worker stuck past it is killed and replaced, the task fails with
   * TimeoutError. */
  timeout?: number | null;
  /** Move ArrayBuffers instead of copying them where the backend allows (accepted everywhere;
   * see docs/pool.md for what moves). */
  transfer?: boolean;
  /** true: a progress bar on stderr when it is a terminal; a function: called as chunks finish. */
  progress?: boolean | ((done: number, total: number | null) => void);
}

export interface AsyncCallOptions<T> extends CallOptions {
  callback?: (result: T) => void;
  errorCallback?: (error: Error) => void;
}


/** What a job needs of its pool. */
export interface JobPool {
  /** Queues one task of `job`: `args` are the call's arguments or the chunk's items. */
  _submit(job: Job, args: unknown[], fn: Fn, mode: number, index: number): void;
  /** Drops a job's queued tasks; workers skip its dispatched ones they have not started. */
  _cancelJob(job: Job): void;
}

/** What an apply, map or imap call collects. */
export abstract class Job {
  cancelled = false;
  done = 0;
  constructor(
    readonly pool: JobPool,
    readonly options: CallOptions,
  ) {}
  abstract deliver(index: number, ok: boolean, value: unknown): void;
  /** The call was aborted: reject what the caller holds. */
  abstract abort(reason: unknown): void;
  progress(total: number | null): void {
    this.done++;
    const report = this.options.progress;
    if (typeof report === 'function') report(this.done, total);
    else if (report === true) drawProgress(this.done, total);
  }
}

function drawProgress(done: number, total: number | null): void {
  if (!process.stderr.isTTY) return;
  const width = 30;
  const filled = total ? Math.round((done / total) * width) : 0;
  const bar = total ? `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}` : `${done} done`;
  process.stderr.write(`\r${bar}${total !== null && done >= total ? '\n' : ''}`);
}

/** Python's AsyncResult (ApplyResult/MapResult): `get`, `wait`, `ready`, `successful`. */
export class AsyncResult<T = unknown> {
  private outcome: { ok: true; value: T } | { ok: false; error: unknown } | null = null;
  private readonly settled: Promise<void>;
  private resolveSettled!: () => void;

  /** @internal */
  constructor(private readonly callbacks: { callback?: (r: T) => void; errorCallback?: (e: Error) => void } = {}) {
    this.settled = new Promise((resolve) => (this.resolveSettled = resolve));
  }

  /** @internal */
  _settle(ok: boolean, value: unknown): void {
    if (this.outcome) return;
    this.outcome = ok ? { ok: true, value: value as T } : { ok: false, error: value };
    try {
      if (ok) this.callbacks.callback?.(value as T);
      else this.callbacks.errorCallback?.(value as Error);
    } finally {
      this.resolveSettled();
    }
  }

  ready(): boolean {
    return this.outcome !== null;
  }

  successful(): boolean {
    if (!this.outcome) throw new ValueError(`${this} not ready`);
    return this.outcome.ok;
  }

  /** Waits (at most `timeout` seconds) until the result is ready. */
  async wait(timeout?: number | null, options: { signal?: AbortSignal } = {}): Promise<void> {
    await raceTimeout(this.settled, timeout, options.signal);
  }

  /** The result; rejects with the task's error, or `TimeoutError` after `timeout` seconds. */
  async get(timeout?: number | null, options: { signal?: AbortSignal } = {}): Promise<T> {
    if ((timeout === undefined || timeout === null) && !options.signal) await this.settled;
    else if (!(await raceTimeout(this.settled, timeout, options.signal)).done) throw new TimeoutError();
    const outcome = this.outcome!;
    if (outcome.ok) return outcome.value;
    throw outcome.error;
  }

  toString(): string {
    return `<multiprocessing.pool.AsyncResult ${this.outcome ? 'ready' : 'pending'}>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

export class ApplyJob<T> extends Job {
  constructor(pool: JobPool, options: CallOptions, readonly result: AsyncResult<T>) {
    super(pool, options);
  }
  deliver(_index: number, ok: boolean, value: unknown): void {
    this.progress(1);
    this.result._settle(ok, value);
  }
  abort(reason: unknown): void {
    this.result._settle(false, reason);
  }
}

/** A map: chunk results land in place; the first failure fails the whole map, as in Python. */
export class MapJob<T> extends Job {
  private readonly values: T[];
  private remaining: number;
  constructor(
    pool: JobPool,
    options: CallOptions,
    readonly result: AsyncResult<T[]>,
    private readonly chunksize: number,
    length: number,
    private readonly chunks: number,
  ) {
    super(pool, options);
    this.values = new Array<T>(length);
    this.remaining = chunks;
    if (chunks === 0) result._settle(true, this.values);
  }
  deliver(index: number, ok: boolean, value: unknown): void {
    if (this.result.ready()) return;
    this.progress(this.chunks);
    if (!ok) {
      this.pool._cancelJob(this);
      this.result._settle(false, value);
      return;
    }
    const items = value as T[];
    const base = index * this.chunksize;
    for (let i = 0; i < items.length; i++) this.values[base + i] = items[i]!;
    if (--this.remaining === 0) this.result._settle(true, this.values);
  }
  abort(reason: unknown): void {
    this.result._settle(false, reason);
  }
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** Python's IMapIterator: an AsyncIterable whose `next(timeout)` resolves to `{ value, done }`. */
export class IMapIterator<T> implements AsyncIterableIterator<T> {
  /** @internal */ readonly _ready: Outcome<T>[] = [];
  private waiters: Array<() => void> = [];
  /** @internal */ _finished = false;
  /** @internal */ _onConsume: () => void = () => {};

  /** @internal */
  _push(outcome: Outcome<T>): void {
    this._ready.push(outcome);
    this.wakeWaiters();
  }

  /** @internal */
  _finish(): void {
    this._finished = true;
    this.wakeWaiters();
  }

  private wakeWaiters(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** The next result in order (imap) or as they finish (imapUnordered); `TimeoutError` after
   * `timeout` seconds; a failed item rejects this call and iteration goes on. */
  async next(timeout?: number | null, options: { signal?: AbortSignal } = {}): Promise<IteratorResult<T>> {
    const deadline = deadlineAfter(timeout);
    throwIfAborted(options.signal);
    while (this._ready.length === 0) {
      if (this._finished) return { value: undefined, done: true };
      let arrive!: () => void;
      const arrived = new Promise<void>((resolve) => this.waiters.push((arrive = resolve)));
      const forget = (): void => {
        // A call that gave up must not leave its waiter behind (polling with next(0.01) would pile them up).
        const i = this.waiters.indexOf(arrive);
        if (i >= 0) this.waiters.splice(i, 1);
      };
      const r = await raceTimeout(arrived, secondsUntil(deadline), options.signal).catch((error: unknown) => {
        forget();
        throw error;
      });
      if (!r.done) {
        forget();
        throw new TimeoutError();
      }
    }
    const outcome = this._ready.shift()!;
    this._onConsume();
    if (outcome.ok) return { value: outcome.value, done: false };
    throw outcome.error;
  }

  async return(): Promise<IteratorResult<T>> {
    this._finished = true;
    this._ready.length = 0;
    this._onConsume();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): IMapIterator<T> {
    return this;
  }
}

/** imap/imapUnordered: reads its input lazily, keeping a bounded number of items in flight. */
export class IMapJob<T> extends Job {
  private readonly held = new Map<number, Outcome<T[]>>();
  private nextChunk = 0;
  private chunksSubmitted = 0;
  private exhausted = false;
  private unconsumedItems = 0;
  private resume: (() => void) | null = null;

  constructor(
    pool: JobPool,
    options: CallOptions,
    readonly iterator: IMapIterator<T>,
    private readonly ordered: boolean,
    private readonly chunksize: number,
    private readonly maxItemsAhead: number,
  ) {
    super(pool, options);
    iterator._onConsume = () => {
      this.unconsumedItems--;
      this.resume?.();
    };
  }

  /** Pulls the input and submits chunks while fewer than `maxItemsAhead` items are unconsumed. */
  async pump(source: Iterable<unknown> | AsyncIterable<unknown>, fn: Fn): Promise<void> {
    const it = Symbol.asyncIterator in source
      ? (source as AsyncIterable<unknown>)[Symbol.asyncIterator]()
      : (source as Iterable<unknown>)[Symbol.iterator]();
    try {
      for (;;) {
        while (this.unconsumedItems >= this.maxItemsAhead && !this.cancelled && !this.iterator._finished) {
          await new Promise<void>((resolve) => (this.resume = resolve));
          this.resume = null;
        }
        if (this.cancelled || this.iterator._finished) return;
        const chunk: unknown[] = [];
        let r: IteratorResult<unknown> | undefined;
        while (chunk.length < this.chunksize) {
          r = await it.next();
          if (r.done) break;
          chunk.push(r.value);
        }
        if (chunk.length > 0) {
          this.unconsumedItems += chunk.length;
          this.pool._submit(this, [chunk], fn, MAP_CHUNK, this.chunksSubmitted++);
        }
        if (r?.done) break;
      }
    } catch (error) {
      // As Python: an input that raises gives an error in its place, after the items before it.
      this.unconsumedItems++;
      this.deliverAt(this.chunksSubmitted++, false, error);
    }
    this.exhausted = true;
    this.flush();
  }

  deliver(index: number, ok: boolean, value: unknown): void {
    this.progress(null);
    this.deliverAt(index, ok, value);
  }

  private deliverAt(index: number, ok: boolean, value: unknown): void {
    const outcome: Outcome<T[]> = ok ? { ok: true, value: value as T[] } : { ok: false, error: value };
    if (!this.ordered) this.emit(outcome);
    else {
      this.held.set(index, outcome);
      while (this.held.has(this.nextChunk)) {
        const next = this.held.get(this.nextChunk)!;
        this.held.delete(this.nextChunk++);
        this.emit(next);
      }
    }
    this.flush();
  }

  private emitted = 0;
  private emit(outcome: Outcome<T[]>): void {
    this.emitted++;
    if (outcome.ok) for (const value of outcome.value) this.iterator._push({ ok: true, value });
    else {
      this.iterator._push(outcome);
    }
  }

  private flush(): void {
    if (this.exhausted && this.emitted === this.chunksSubmitted) this.iterator._finish();
  }

  abort(reason: unknown): void {
    this.iterator._push({ ok: false, error: reason });
    this.iterator._finish();
  }
}
