/**
 * What a pool call hands back and collects (CPython's ApplyResult, MapResult, IMapIterator): the
 * caller's `AsyncResult` or `IMapIterator`, and the job behind it, which receives its tasks'
 * results from the pool and settles what the caller holds.
 */
import { inspect } from 'node:util';
import { TimeoutError, ValueError } from './errors.js';
import { deadlineAfter, secondsUntil } from './futex.js';
import { MAP_CHUNK } from './poolChannel.js';
import { progressMeter, type ProgressCallback, type ProgressMeter } from './progress.js';
import { callUserCallback, raceTimeout, throwIfAborted } from './util.js';

/** Any function: a pool checks arguments against it at the call (apply, map, ...), not here. */
export type Fn = (...args: never[]) => unknown;

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
  /** true: a progress bar on stderr as tqdm draws it (items done of total, %, items/s, elapsed and
   * remaining time), when stderr is a terminal; a function: called with `(items done, total)` as
   * chunks finish (total null when the input's length is not known, as imap over a generator). */
  progress?: boolean | ProgressCallback;
}

export interface AsyncCallOptions<T> extends CallOptions {
  callback?: (result: T) => void;
  errorCallback?: (error: Error) => void;
}


/** What a job needs of its pool. */
export interface JobPool {
  /** @internal Queues one task of `job`: `args` are the call's arguments or the chunk's items. */
  _submit(job: Job, args: unknown[], fn: Fn, mode: number, index: number): void;
  /** @internal A call reads no more of its input: read to its end, failed, cancelled or left. */
  _inputDone(reader: InputReader): void;
}

/**
 * A call whose input is still being read (imap's lazy read; map's read of an AsyncIterable): a
 * closed pool goes on taking its tasks and stops once it is read; terminate() aborts it.
 */
export interface InputReader {
  cancelled: boolean;
  /** Reads the rest without waiting for the caller (the pool was closed). */
  readToEnd(): void;
  abort(reason: unknown): void;
}

/** What an apply, map or imap call collects. */
export abstract class Job {
  cancelled = false;
  private readonly meter: ProgressMeter | null;
  constructor(
    readonly pool: JobPool,
    readonly options: CallOptions,
    /** Items the call has (null: not known before the input is read). */
    total: number | null,
  ) {
    this.meter = progressMeter(options.progress, total);
  }
  abstract deliver(index: number, ok: boolean, value: unknown): void;
  /** The call was aborted: reject what the caller holds. */
  abstract abort(reason: unknown): void;
  /** `items` more items finished (or failed). */
  progress(items: number): void {
    this.meter?.update(items);
  }
  /** The call is over, whichever way: the bar's last state stays on screen. */
  endProgress(): void {
    this.meter?.close();
  }
}

/** Python's AsyncResult (ApplyResult/MapResult): `get`, `wait`, `ready`, `successful`. */
export class AsyncResult<T = unknown> {
  private outcome: { ok: true; value: T } | { ok: false; error: unknown } | null = null;
  // Promises are made when somebody waits (one per result of a loop of apply() calls, not three).
  /** Resolves when the result is ready, however it ended (wait(), get with a timeout). */
  private settled: Promise<void> | null = null;
  private resolveSettled: (() => void) | null = null;
  /** Resolves with the value or rejects with the error (get without a timeout). */
  private value: Promise<T> | null = null;
  private settleValue: (() => void) | null = null;

  /** @internal */
  constructor(private readonly callbacks: { callback?: (r: T) => void; errorCallback?: (e: Error) => void } = {}) {}

  /** @internal */
  _settle(ok: boolean, value: unknown): void {
    if (this.outcome) return;
    this.outcome = ok ? { ok: true, value: value as T } : { ok: false, error: value };
    if (ok) callUserCallback(this.callbacks.callback, value as T);
    else callUserCallback(this.callbacks.errorCallback, value as Error);
    this.resolveSettled?.();
    this.settleValue?.();
  }

  private whenSettled(): Promise<void> {
    if (this.outcome) return Promise.resolve();
    return (this.settled ??= new Promise((resolve) => (this.resolveSettled = resolve)));
  }

  private whenValue(): Promise<T> {
    const outcome = this.outcome;
    if (outcome) return outcome.ok ? Promise.resolve(outcome.value) : Promise.reject(outcome.error);
    return (this.value ??= new Promise<T>((resolve, reject) => {
      this.settleValue = () => {
        const o = this.outcome!;
        if (o.ok) resolve(o.value);
        else reject(o.error);
      };
    }));
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
    await raceTimeout(this.whenSettled(), timeout, options.signal);
  }

  /** The result; rejects with the task's error, or `TimeoutError` after `timeout` seconds. */
  get(timeout?: number | null, options: { signal?: AbortSignal } = {}): Promise<T> {
    if ((timeout === undefined || timeout === null) && !options.signal) return this.whenValue();
    return this.getWithin(timeout, options.signal);
  }

  private async getWithin(timeout: number | null | undefined, signal: AbortSignal | undefined): Promise<T> {
    if (!(await raceTimeout(this.whenSettled(), timeout, signal)).done) throw new TimeoutError();
    return this.whenValue();
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
    super(pool, options, 1);
  }
  deliver(_index: number, ok: boolean, value: unknown): void {
    this.progress(1);
    this.endProgress();
    this.result._settle(ok, value);
  }
  abort(reason: unknown): void {
    this.endProgress();
    this.result._settle(false, reason);
  }
}

/** A map: chunk results land in place; the first failure fails the whole map once every chunk is
 * done, as in Python (no fail-fast: CPython issue #23992, test_map_no_failfast). */
export class MapJob<T> extends Job {
  private readonly values: T[];
  private remaining: number;
  private failure: { error: unknown } | null = null;
  constructor(
    pool: JobPool,
    options: CallOptions,
    readonly result: AsyncResult<T[]>,
    private readonly chunksize: number,
    length: number,
    chunks: number,
  ) {
    super(pool, options, length);
    this.values = new Array<T>(length);
    this.remaining = chunks;
    if (chunks === 0) this.settle(true, this.values);
  }
  deliver(index: number, ok: boolean, value: unknown): void {
    if (this.result.ready()) return;
    if (!ok) {
      this.failure ??= { error: value };
    } else {
      const items = value as T[];
      this.progress(items.length);
      const base = index * this.chunksize;
      if (!this.failure) for (let i = 0; i < items.length; i++) this.values[base + i] = items[i]!;
    }
    if (--this.remaining > 0) return;
    if (this.failure) this.settle(false, this.failure.error);
    else this.settle(true, this.values);
  }
  abort(reason: unknown): void {
    this.settle(false, reason);
  }
  private settle(ok: boolean, value: unknown): void {
    this.endProgress();
    this.result._settle(ok, value);
  }
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** Python's IMapIterator: an AsyncIterable whose `next(timeout)` resolves to `{ value, done }`. */
export class IMapIterator<T> implements AsyncIterableIterator<T> {
  /** @internal */ readonly _ready: Outcome<T>[] = [];
  private waiters: Array<() => void> = [];
  /** @internal */ _finished = false;
  /** @internal */ _onConsume: () => void = () => {};
  /** @internal */ _onReturn: () => void = () => {};

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
    this._onReturn();
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
  /** The pool was closed: the input is read to its end, not `maxItemsAhead` at a time. */
  private unbounded = false;
  /** Items of each chunk in flight, by index (for progress when a chunk fails as a whole). */
  private readonly chunkItems = new Map<number, number>();

  constructor(
    pool: JobPool,
    options: CallOptions,
    readonly iterator: IMapIterator<T>,
    private readonly ordered: boolean,
    private readonly chunksize: number,
    private readonly maxItemsAhead: number,
    total: number | null,
  ) {
    super(pool, options, total);
    iterator._onConsume = () => {
      this.unconsumedItems--;
      this.resume?.();
    };
    // The caller left the loop: the bar ends now, before the caller writes anything else, and the
    // pool stops counting on the input now, not when the pump next looks (it may be waiting on an
    // async input that is idle, for ever).
    iterator._onReturn = () => {
      this.endProgress();
      this.stopReading();
    };
  }

  private reading = true;
  /** Tells the pool, once, that no more tasks come from the input (a closed pool may then stop). */
  private stopReading(): void {
    if (!this.reading) return;
    this.reading = false;
    this.pool._inputDone(this);
  }

  /** The call was cancelled or the caller left the loop: nothing more is read or submitted. */
  private get stopped(): boolean {
    return this.cancelled || this.iterator._finished;
  }

  /** Reads the rest of the input without waiting for the caller to consume (the pool was closed;
   * a cancelled or aborted job stops reading instead). */
  readToEnd(): void {
    this.unbounded = true;
    this.resume?.();
  }

  /** Pulls the input and submits chunks while fewer than `maxItemsAhead` items are unconsumed. */
  async pump(source: Iterable<unknown> | AsyncIterable<unknown>, fn: Fn): Promise<void> {
    try {
      await this.readInput(source, fn);
    } finally {
      this.stopReading();
    }
  }

  private async readInput(source: Iterable<unknown> | AsyncIterable<unknown>, fn: Fn): Promise<void> {
    try {
      // Inside the try: an iterable whose iterator cannot be made fails the call, as Python's
      // task handler delivers it (never an unhandled rejection).
      const it = Symbol.asyncIterator in source
        ? (source as AsyncIterable<unknown>)[Symbol.asyncIterator]()
        : (source as Iterable<unknown>)[Symbol.iterator]();
      for (;;) {
        while (this.unconsumedItems >= this.maxItemsAhead && !this.unbounded && !this.stopped) {
          await new Promise<void>((resolve) => (this.resume = resolve));
          this.resume = null;
        }
        // Read to its end past the window (a closed pool), an input must not hold the event loop:
        // a synchronous generator's items come without a turn of it.
        if (this.unbounded && this.unconsumedItems >= this.maxItemsAhead) await new Promise((resolve) => setImmediate(resolve));
        const chunk: unknown[] = [];
        let r: IteratorResult<unknown> | undefined;
        while (chunk.length < this.chunksize && !this.stopped) {
          r = await it.next();
          if (r.done) break;
          chunk.push(r.value);
        }
        if (this.stopped) {
          // The caller stopped iterating (or the call was aborted), maybe while an item was being
          // read: what was read is dropped, and the bar ends where it is.
          this.endProgress();
          return;
        }
        if (chunk.length > 0) {
          this.unconsumedItems += chunk.length;
          this.chunkItems.set(this.chunksSubmitted, chunk.length);
          this.pool._submit(this, [chunk], fn, MAP_CHUNK, this.chunksSubmitted++);
        }
        if (r?.done) break;
      }
    } catch (error) {
      // A call that was stopped has nothing more to deliver (its iterator is done).
      if (this.stopped) return;
      // As Python: an input that raises gives an error in its place, after the items before it.
      this.unconsumedItems++;
      this.deliverAt(this.chunksSubmitted++, false, error);
    }
    this.exhausted = true;
    this.flush();
  }

  deliver(index: number, ok: boolean, value: unknown): void {
    this.progress(this.chunkItems.get(index) ?? 0);
    this.chunkItems.delete(index);
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
    if (this.exhausted && this.emitted === this.chunksSubmitted) {
      this.endProgress();
      this.iterator._finish();
    }
  }

  abort(reason: unknown): void {
    this.endProgress();
    this.iterator._push({ ok: false, error: reason });
    this.iterator._finish();
    this.resume?.(); // the pump, if it waits for the caller, sees the end and stops reading
    // The pump may be waiting on the input itself (an idle async input): the pool stops counting
    // on it now, and whatever it still yields is dropped.
    this.stopReading();
  }
}
