/**
 * Pool and ThreadPool, as CPython's pool.py, plus what Python's pool gets wrong.
 *
 * The moving parts (piscina keeps them apart too):
 * - tasks wait in `pending` until a worker has room; each worker has its own channel (two shared
 *   memory rings, poolChannel.ts), so the pool knows which tasks every worker holds;
 * - one result loop per pool sleeps on a single notify word that workers bump;
 * - jobs (an apply, a map, an imap) collect their tasks' results and settle what the caller holds;
 * - a worker that dies fails the task it was running with WorkerLostError and hands the rest to
 *   others; a replacement is started (Python's pool hangs here).
 */
import { inspect } from 'node:util';
import { TimeoutError, ValueError, withRemoteTraceback, WorkerLostError } from './errors.js';
import { signalName } from './backends/backend.js';
import { getContext, memoryKindFor, registerClasses, type BaseContext } from './context.js';
import { checkNotBootstrapping, Process, processCpuCount } from './process.js';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { dumps, dumpsPlain, dumpsReduced, loads, loadsSync, needsRebuild, newReduceContext, rebuild, reduce } from './reduction.js';
import { sentinelExit } from './sentinels.js';
import { refOf, sourceOf, type SourceFunction } from './tasks.js';
import { callUserCallback, raceTimeout, throwIfAborted } from './util.js';
import { deadlineAfter, runAsync, secondsUntil } from './futex.js';
import {
  CALL, CANCELLED, Channel, defineFrame, MAP_CHUNK, Notifier, OK, parseResult, PORT_THRESHOLD, portFrame,
  STARMAP_CHUNK, stopFrame, TASK_HEADROOM, taskFrame, transferables, type PortMessage,
} from './poolChannel.js';
import { poolWorkerMain } from './poolWorker.js';
import { knownLength, progressMeter, type ProgressCallback, type ProgressMeter } from './progress.js';
import { spinUntil } from './futex.js';

// Any function: the pool checks arguments against it at the call (apply, map, ...), not here.
type Fn = (...args: never[]) => unknown;

export interface PoolOptions {
  processes?: number | null;
  initializer?: Fn | null;
  initargs?: unknown[];
  maxtasksperchild?: number | null;
  /** A context from `mp.getContext(method)`: the start method of the workers. */
  context?: BaseContext;
}

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

const RUN = 'RUN';
const CLOSE = 'CLOSE';
const TERMINATE = 'TERMINATE';

/** A task: one call of the pool's function (or one chunk of a map) on its way to a worker. */
interface Task {
  job: Job;
  index: number;
  fnId: number;
  mode: number;
  /** The encoded arguments, with TASK_HEADROOM bytes in front for the frame's header. */
  body: Buffer;
  /** Thread pools: the reduced arguments themselves, posted over the worker's port instead of
   * encoded: with `{ transfer: true }` (their ArrayBuffers moved), and for arguments holding
   * PORT_THRESHOLD bytes or more of binary data (copied once by postMessage, not encoded first). */
  posted: { graph: unknown; changed: boolean } | null;
  seq: number;
  worker: WorkerSlot | null;
  timeout: number | null;
  /** performance.now() when the pool first saw a worker running it (for `timeout`). */
  startedAt: number;
  submittedAt: number;
}

/** What an apply, map or imap call collects. */
abstract class Job {
  cancelled = false;
  private readonly meter: ProgressMeter | null;
  constructor(
    readonly pool: Pool,
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

class ApplyJob<T> extends Job {
  constructor(pool: Pool, options: CallOptions, readonly result: AsyncResult<T>) {
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
class MapJob<T> extends Job {
  private readonly values: T[];
  private remaining: number;
  private failure: { error: unknown } | null = null;
  constructor(
    pool: Pool,
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

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

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
class IMapJob<T> extends Job {
  private readonly held = new Map<number, Outcome<T[]>>();
  private nextChunk = 0;
  private chunksSubmitted = 0;
  private exhausted = false;
  private unconsumedItems = 0;
  private resume: (() => void) | null = null;
  /** Items of each chunk in flight, by index (for progress when a chunk fails as a whole). */
  private readonly chunkItems = new Map<number, number>();

  constructor(
    pool: Pool,
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
    // The caller left the loop: the bar ends now, before the caller writes anything else, not when
    // the pump next looks (it may be waiting on an async input that is idle).
    iterator._onReturn = () => this.endProgress();
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
        if (this.cancelled || this.iterator._finished) {
          // The caller stopped iterating (or the call was aborted): the bar ends where it is.
          this.endProgress();
          return;
        }
        const chunk: unknown[] = [];
        let r: IteratorResult<unknown> | undefined;
        while (chunk.length < this.chunksize) {
          r = await it.next();
          if (r.done) break;
          chunk.push(r.value);
        }
        if (chunk.length > 0) {
          this.unconsumedItems += chunk.length;
          this.chunkItems.set(this.chunksSubmitted, chunk.length);
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
  }
}

class WorkerSlot {
  readonly inflight = new Map<number, Task>();
  readonly knownFns = new Set<number>();
  private outbox: Uint8Array[] = [];
  private feeding = false;
  assigned = 0;
  exited = false;
  /** Average milliseconds between this worker's results while it is busy (its service time). */
  private serviceMs = -1;
  private lastResultAt = 0;

  /** Tasks to hand this worker ahead: enough to keep it busy for a few milliseconds between two
   * wake-ups, few enough that slow tasks do not queue behind each other while others idle. */
  inFlightLimit(): number {
    if (this.serviceMs < 0) return 8;
    return Math.max(2, Math.min(256, Math.ceil(4 / Math.max(this.serviceMs, 0.001))));
  }

  /** Called for each result: learns the service time. */
  onResult(busyBefore: boolean): void {
    const now = performance.now();
    if (busyBefore && this.lastResultAt > 0) {
      const interval = now - this.lastResultAt;
      this.serviceMs = this.serviceMs < 0 ? interval : this.serviceMs * 0.9 + interval * 0.1;
    }
    this.lastResultAt = now;
  }
  readingLarge = false;
  killedForTimeout: Task | null = null;

  constructor(
    readonly process: Process,
    readonly channel: Channel,
    /** Thread workers: large and transferred payloads go this way (see poolChannel's PortMessage). */
    readonly port: MessagePort | null,
  ) {}

  private batch: Uint8Array[] = [];
  private batchBytes = 0;

  /** Adds a frame to what `flush()` writes: one ring write, and one wake-up, per dispatch round. */
  queue(frame: Uint8Array): void {
    this.batch.push(frame);
    this.batchBytes += frame.length;
  }

  flush(): void {
    if (this.batch.length === 0) return;
    const frames = this.batch;
    const bytes = this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    if (frames.length > 1 && this.outbox.length === 0 && !this.feeding && bytes <= this.channel.tasks.free()) {
      this.channel.tasks.writeFrames(frames, 0, frames.length, bytes); // one copy, one wake-up check
      return;
    }
    this.send(frames.length === 1 ? frames[0]! : Buffer.concat(frames, bytes));
  }

  /** Writes a frame to the worker's ring, or queues it behind what is still being written. */
  send(frame: Uint8Array): void {
    // While the feeder streams a frame it has taken off the outbox, nothing may cut in.
    if (this.outbox.length === 0 && !this.feeding) {
      const n = this.channel.tasks.write(frame);
      if (n === frame.length) return;
      frame = frame.subarray(n);
    }
    this.outbox.push(frame);
    if (!this.feeding) void this.feed();
  }

  private async feed(): Promise<void> {
    this.feeding = true;
    try {
      while (this.outbox.length > 0 && !this.exited) await runAsync(this.channel.tasks.writeAll(this.outbox.shift()!));
    } finally {
      this.feeding = false;
    }
  }
}

interface Stats {
  tasksDone: number;
  tasksFailed: number;
  queued: number;
  inFlight: number;
  busyWorkers: number;
  workers: number;
  workersReplaced: number;
  /** Submit-to-result latency of recent tasks, in milliseconds. */
  latencyMs: { p50: number; p90: number; p99: number; max: number };
}

const LATENCY_SAMPLES = 1024;
/** The options of a call that gave none (one object for all of them). */
const noOptions: AsyncCallOptions<unknown> = Object.freeze({});
const noBody: Buffer = Buffer.alloc(0);
const SPIN_MS = 0.05;

/** Python's `multiprocessing.Pool`. */
export class Pool {
  private readonly ctx: BaseContext;
  private readonly processes: number;
  private readonly initializer: Fn | SourceFunction | null;
  private readonly initargs: unknown[];
  private readonly maxtasks: number | null;
  private readonly notifier: Notifier;
  private readonly kind: 'thread' | 'process';
  private workers: WorkerSlot[] = [];
  private pending: Task[] = [];
  private pendingHead = 0;
  private state: typeof RUN | typeof CLOSE | typeof TERMINATE = RUN;
  private outstanding = 0;
  private loopRunning = false;
  private loopAbort = new AbortController();
  private readonly fnIds = new Map<Function, number>();
  private readonly fnBodies = new Map<number, Uint8Array>();
  private seq = 0;
  private timeoutTimer: NodeJS.Timeout | null = null;
  private readonly latencies: number[] = [];
  private tasksDone = 0;
  private tasksFailed = 0;
  private replaced = 0;
  /** Every worker process this pool started, for join(). */
  private readonly started: Process[] = [];

  constructor(processes?: number | null | PoolOptions, options: PoolOptions = {}) {
    // First, before anything is allocated: a pool made by a child importing an unguarded module.
    checkNotBootstrapping();
    if (typeof processes === 'object' && processes !== null) {
      options = processes;
      processes = options.processes;
    }
    if (processes !== undefined && processes !== null && (!Number.isInteger(processes) || processes < 1)) {
      throw new ValueError('Number of processes must be at least 1');
    }
    if (options.initializer !== undefined && options.initializer !== null && typeof options.initializer !== 'function') {
      throw new TypeError('initializer must be a callable');
    }
    const { maxtasksperchild } = options;
    if (maxtasksperchild !== undefined && maxtasksperchild !== null && (!Number.isInteger(maxtasksperchild) || maxtasksperchild < 1)) {
      throw new ValueError('maxtasksperchild must be a positive int or None');
    }
    this.ctx = (options.context ?? getContext()).getContext();
    this.processes = processes ?? processCpuCount();
    const init = options.initializer ?? null;
    this.initializer = init === null || refOf(init) ? init : sourceOf(init, 'the pool initializer');
    this.initargs = options.initargs ? [...options.initargs] : [];
    this.maxtasks = maxtasksperchild ?? null;
    this.kind = memoryKindFor({ ctx: this.ctx });
    this.notifier = Notifier.create(this.kind);
    try {
      for (let i = 0; i < this.processes; i++) this.startWorker();
    } catch (error) {
      // As Python's (issue #19675): the workers already started do not outlive a failed pool.
      this.terminate();
      throw error;
    }
  }

  private startWorker(): WorkerSlot {
    const channel = Channel.create(this.kind);
    // A `{ source }` record arrives in the worker as the function it carries (reduction.ts).
    const initializer = (this.initializer && typeof this.initializer === 'object' ? { source: this.initializer } : this.initializer) as
      Parameters<typeof poolWorkerMain>[2];
    const ports = this.kind === 'thread' ? new MessageChannel() : null;
    const p = new this.ctx.Process({
      target: poolWorkerMain,
      args: [channel.state(), this.notifier.state(), initializer, this.initargs, this.maxtasks, ports?.port2 ?? null],
      daemon: true,
    });
    p.name = p.name.replace('Process', 'PoolWorker'); // Python's SpawnPoolWorker-N
    const slot = new WorkerSlot(p, channel, ports?.port1 ?? null);
    if (ports) {
      ports.port1.on('message', (m: PortMessage) => this.onPortMessage(slot, m));
      ports.port1.unref();
    }
    p.start();
    this.workers.push(slot);
    this.started.push(p);
    void sentinelExit(p.sentinel)!.then(() => this.onWorkerExit(slot));
    return slot;
  }

  // ---- submitting ---------------------------------------------------------------------------

  private checkRunning(): void {
    if (this.state !== RUN) throw new ValueError('Pool not running');
  }

  private fnId(fn: Fn): number {
    if (typeof fn !== 'function') throw new TypeError('the pool function must be a function');
    let id = this.fnIds.get(fn);
    if (id === undefined) {
      id = this.fnIds.size + 1;
      const ctx = newReduceContext(this.kind);
      this.fnBodies.set(id, dumps(fn, ctx, { functionSlot: true }));
      this.ctx._expectModules(ctx.modules);
      this.fnIds.set(fn, id);
    }
    return id;
  }

  /** @internal Queues one task of `job`: `args` are the call's arguments or the chunk's items. */
  _submit(job: Job, args: unknown[], fn: Fn, mode: number, index: number): void {
    let body = noBody;
    let posted: Task['posted'] = null;
    let fnId: number;
    try {
      fnId = this.fnId(fn);
      const value = mode === CALL ? args : args[0];
      const plain = dumpsPlain(value, TASK_HEADROOM);
      if (plain) body = plain;
      else {
        const ctx = newReduceContext(this.kind);
        const reduced = reduce(value, ctx);
        if (this.kind === 'thread' && (job.options.transfer || ctx.bytes >= PORT_THRESHOLD)) posted = reduced;
        else body = dumpsReduced(reduced, TASK_HEADROOM);
      }
    } catch (error) {
      // An argument that cannot be serialised fails its own task, as in Python.
      queueMicrotask(() => job.deliver(index, false, error));
      return;
    }
    const task: Task = {
      job, index, fnId, mode, body, posted, seq: 0, worker: null,
      timeout: job.options.timeout ?? null, startedAt: 0, submittedAt: performance.now(),
    };
    this.pending.push(task);
    this.outstanding++;
    if (task.timeout !== null) this.watchTimeouts();
    // Tasks submitted in one synchronous run (a loop of applyAsync) go out together.
    // The first task of a synchronous run goes out at once (latency); the ones submitted after it
    // in the same run go out together in a microtask (one ring write and wake-up per worker).
    if (this.dispatchScheduled) return;
    this.dispatchScheduled = true;
    this.dispatch();
    if (!this.loopRunning) void this.resultLoop();
    queueMicrotask(() => {
      this.dispatchScheduled = false;
      this.dispatch();
      if (!this.loopRunning && this.outstanding > 0) void this.resultLoop();
    });
  }
  private dispatchScheduled = false;

  private dispatch(): void {
    while (this.pendingHead < this.pending.length) {
      let best: WorkerSlot | null = null;
      for (const w of this.workers) {
        if (w.exited || w.inflight.size >= w.inFlightLimit()) continue;
        if (this.maxtasks !== null && w.assigned >= this.maxtasks) continue;
        if (!best || w.inflight.size < best.inflight.size) best = w;
      }
      if (!best) break;
      const task = this.pending[this.pendingHead++]!;
      if (task.job.cancelled) {
        this.outstanding--;
        continue;
      }
      this.assign(best, task);
    }
    for (const w of this.workers) w.flush();
    if (this.pendingHead === this.pending.length) {
      // Handed out tasks must not keep their jobs (and so the callers' arguments and results)
      // alive: CPython's test_release_task_refs.
      this.pending = [];
      this.pendingHead = 0;
    } else if (this.pendingHead > 1024 && this.pendingHead * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.pendingHead);
      this.pendingHead = 0;
    }
  }

  private assign(w: WorkerSlot, task: Task): void {
    if (!w.knownFns.has(task.fnId)) {
      w.queue(defineFrame(task.fnId, this.fnBodies.get(task.fnId)!));
      w.knownFns.add(task.fnId);
    }
    task.seq = this.seq = (this.seq % 0xfffffffe) + 1;
    task.worker = w;
    w.inflight.set(task.seq, task);
    w.assigned++;
    if (w.port && task.posted) {
      try {
        const { graph, changed } = task.posted;
        const transfer = task.job.options.transfer ? transferables(graph) : [];
        w.port.postMessage({ seq: task.seq, fnId: task.fnId, mode: task.mode, graph, changed }, transfer);
      } catch (error) {
        // Its buffers were moved to a worker that died: they cannot be sent again.
        w.inflight.delete(task.seq);
        queueMicrotask(() => this.finish(task, false, error));
        return;
      }
      w.queue(portFrame());
      return;
    }
    const frame = taskFrame(task.seq, task.fnId, task.mode, task.body);
    if (w.port && frame.length >= PORT_THRESHOLD) {
      // A large encoding to a thread: a copy of it is moved over the port instead of copied
      // through the ring (the task keeps its own, should the worker die before running it).
      const copy = Buffer.from(frame);
      w.port.postMessage({ frame: copy }, [copy.buffer]);
      w.queue(portFrame());
    } else {
      w.queue(frame);
    }
  }

  // ---- results ------------------------------------------------------------------------------

  private async resultLoop(): Promise<void> {
    this.loopRunning = true;
    try {
      while (this.outstanding > 0 && this.state !== TERMINATE) {
        const seq = this.notifier.seq();
        if (this.drainAll() > 0) continue;
        // One task out (a round trip): its result usually comes back within microseconds from a
        // blocked worker, sooner than an asynchronous wake-up could deliver it.
        if (this.outstanding === 1 && spinUntil(() => this.notifier.seq() !== seq, SPIN_MS)) continue;
        await this.notifier.sleep(seq, this.loopAbort.signal);
      }
    } catch (error) {
      // terminate() aborts the sleep; anything else is a bug to report, not to swallow.
      if (error !== this.loopAbort.signal.reason) throw error;
    } finally {
      this.loopRunning = false;
    }
  }

  private drainAll(): number {
    let n = 0;
    for (const w of this.workers) n += this.drain(w);
    return n;
  }

  private drain(w: WorkerSlot): number {
    let n = 0;
    const ring = w.channel.results;
    while (!w.readingLarge) {
      const frame = ring.tryReadFrame();
      if (frame) {
        this.onResult(w, frame);
        n++;
        continue;
      }
      if (ring.available() > 0) {
        // A result larger than what has arrived: read the rest as it streams in.
        w.readingLarge = true;
        void runAsync(ring.readFrame()).then((f) => {
          w.readingLarge = false;
          this.onResult(w, f);
          this.drain(w);
        });
      }
      break;
    }
    if (n > 0) this.dispatch();
    return n;
  }

  private onResult(w: WorkerSlot, frame: Uint8Array): void {
    const { seq, status, body } = parseResult(frame);
    this.settle(w, seq, status, () => (needsRebuild(body) ? loads(body) : loadsSync(body)));
  }

  /** A thread worker's message: a large result frame, or a `{ transfer: true }` result. */
  private onPortMessage(w: WorkerSlot, m: PortMessage): void {
    if ('frame' in m) this.onResult(w, m.frame.subarray(4)); // past the frame's length
    else if ('status' in m) this.settle(w, m.seq, m.status, () => (m.changed ? rebuild(m.graph, { target: 'thread', handles: [] }) : m.graph));
    this.drain(w);
    this.dispatch(); // the worker has room again
    // The result loop may be asleep on the ring's notify word: let it see what this settled.
    this.notifier.notify();
  }

  private settle(w: WorkerSlot, seq: number, status: number, decode: () => unknown): void {
    const task = w.inflight.get(seq);
    if (!task) return;
    w.onResult(w.inflight.size > 1);
    w.inflight.delete(seq);
    if (status === CANCELLED) {
      this.outstanding--;
      this.maybeStopWorkers();
      return;
    }
    const ok = status === OK;
    // A task's own error is re-thrown here with the worker's stack in `cause`.
    const outcome = (v: unknown): unknown => (ok || !(v instanceof Error) ? v : withRemoteTraceback(v));
    let value: unknown;
    try {
      value = decode();
    } catch (error) {
      this.finish(task, false, error);
      return;
    }
    if (value instanceof Promise) value.then((v) => this.finish(task, ok, outcome(v)), (error) => this.finish(task, false, error));
    else this.finish(task, ok, outcome(value));
  }

  private finish(task: Task, ok: boolean, value: unknown): void {
    this.outstanding--;
    this.tasksDone++;
    if (!ok) this.tasksFailed++;
    if (this.latencies.length >= LATENCY_SAMPLES) this.latencies.shift();
    this.latencies.push(performance.now() - task.submittedAt);
    if (!task.job.cancelled) task.job.deliver(task.index, ok, value);
    this.maybeStopWorkers();
  }

  // ---- workers dying, timeouts ---------------------------------------------------------------

  private onWorkerExit(w: WorkerSlot): void {
    w.exited = true;
    this.drain(w);
    this.workers = this.workers.filter((x) => x !== w);
    if (this.state === TERMINATE) return;
    const code = w.process.exitcode;
    const lost = [...w.inflight.values()].sort((a, b) => a.index - b.index);
    w.inflight.clear();
    const running = w.channel.started;
    const requeue: Task[] = [];
    for (const task of lost) {
      if (task.seq === running && code !== 0) {
        this.outstanding--;
        this.tasksDone++;
        this.tasksFailed++;
        const error = w.killedForTimeout === task
          ? new TimeoutError(`task exceeded its timeout of ${task.timeout} s; worker ${w.process.name} was killed and replaced`)
          : workerLost(w.process, code);
        if (!task.job.cancelled) task.job.deliver(task.index, false, error);
      } else {
        task.worker = null;
        requeue.push(task);
      }
    }
    if (requeue.length > 0) {
      this.pending.splice(this.pendingHead, 0, ...requeue);
    }
    if (this.state === RUN || this.outstanding > 0) {
      this.replaced++;
      this.startWorker();
    }
    this.dispatch();
    this.maybeStopWorkers();
  }

  /** Watches the tasks that have a `timeout` while any is queued or in flight. */
  private watchTimeouts(): void {
    if (this.timeoutTimer) return;
    this.timeoutTimer = setInterval(() => {
      const now = performance.now();
      let watching = this.pending.slice(this.pendingHead).some((t) => t.timeout !== null);
      for (const w of this.workers) {
        for (const t of w.inflight.values()) if (t.timeout !== null) watching = true;
        const task = w.inflight.get(w.channel.started);
        if (!task || task.timeout === null) continue;
        if (task.startedAt === 0) task.startedAt = now;
        else if (now - task.startedAt > task.timeout * 1000 && !w.killedForTimeout) {
          w.killedForTimeout = task;
          w.process.kill();
        }
      }
      if (!watching) {
        clearInterval(this.timeoutTimer!);
        this.timeoutTimer = null;
      }
    }, 20);
    this.timeoutTimer.unref();
  }

  /** @internal Drops a job's queued tasks; workers skip its dispatched ones they have not started. */
  _cancelJob(job: Job): void {
    job.cancelled = true;
    for (const w of this.workers) {
      for (const task of w.inflight.values()) if (task.job === job) this.notifier.cancel(task.seq);
    }
  }

  // ---- the API ------------------------------------------------------------------------------

  /** Python's `apply`: runs `fn(...args)` in a worker and waits for the result. */
  apply<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options: CallOptions = noOptions): Promise<Awaited<R>> {
    try {
      return this.applyAsync(fn, args, options).get();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  applyAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    args?: A,
    options: AsyncCallOptions<Awaited<R>> = noOptions,
  ): AsyncResult<Awaited<R>> {
    this.checkRunning();
    const result = new AsyncResult<Awaited<R>>(options);
    const job = new ApplyJob(this, options, result);
    this.watchSignal(job, options.signal);
    // The arguments are encoded now (or, posted to a thread, copied when dispatched).
    this._submit(job, args ?? [], fn as Fn, CALL, 0);
    return result;
  }

  /** Python's `map`: `fn` over every item, in order, in chunks (`chunksize` or Python's default). */
  async map<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    chunksize?: number | null | CallOptions,
    options?: CallOptions,
  ): Promise<Awaited<R>[]> {
    return this.mapAsync(fn, iterable, chunksize, options).get();
  }

  mapAsync<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    chunksize?: number | null | AsyncCallOptions<Awaited<R>[]>,
    options?: AsyncCallOptions<Awaited<R>[]>,
  ): AsyncResult<Awaited<R>[]> {
    return this.startMap(fn as Fn, iterable, chunksize, options, MAP_CHUNK);
  }

  /** Python's `starmap`: `fn(...args)` for every args array. */
  async starmap<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Iterable<A> | AsyncIterable<A>,
    chunksize?: number | null | CallOptions,
    options?: CallOptions,
  ): Promise<Awaited<R>[]> {
    return this.starmapAsync(fn, iterable, chunksize, options).get();
  }

  starmapAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Iterable<A> | AsyncIterable<A>,
    chunksize?: number | null | AsyncCallOptions<Awaited<R>[]>,
    options?: AsyncCallOptions<Awaited<R>[]>,
  ): AsyncResult<Awaited<R>[]> {
    return this.startMap(fn as Fn, iterable, chunksize, options, STARMAP_CHUNK);
  }

  private startMap<R>(
    fn: Fn,
    iterable: Iterable<unknown> | AsyncIterable<unknown>,
    chunksizeOrOptions: number | null | undefined | AsyncCallOptions<R[]>,
    maybeOptions: AsyncCallOptions<R[]> | undefined,
    mode: number,
  ): AsyncResult<R[]> {
    this.checkRunning();
    const [chunksize, options] = splitOptions(chunksizeOrOptions, maybeOptions);
    if (chunksize !== null && chunksize !== undefined && (!Number.isInteger(chunksize) || chunksize < 1)) {
      throw new ValueError(`Chunksize must be 1+, not ${chunksize}`);
    }
    this.fnId(fn);
    const result = new AsyncResult<R[]>(options);
    if (iterable !== null && typeof iterable === 'object' && Symbol.asyncIterator in iterable && !(Symbol.iterator in iterable)) {
      // An AsyncIterable is read to the end first, as Python lists an iterable without a length.
      toArray(iterable).then(
        (items) => this.submitMap(fn, items, chunksize, options, mode, result),
        (error) => result._settle(false, error),
      );
    } else {
      // Python turns the iterable into a list in the caller: a generator's error is thrown here.
      this.submitMap(fn, toArraySync(iterable as Iterable<unknown>), chunksize, options, mode, result);
    }
    return result;
  }

  private submitMap<R>(
    fn: Fn,
    items: unknown[],
    chunksizeArg: number | null | undefined,
    options: CallOptions,
    mode: number,
    result: AsyncResult<R[]>,
  ): void {
    if (this.state !== RUN) {
      result._settle(false, new ValueError('Pool not running'));
      return;
    }
    let chunksize = chunksizeArg;
    if (chunksize === null || chunksize === undefined) {
      // Python's default: about four chunks per worker.
      chunksize = Math.floor(items.length / (this.processes * 4));
      if (items.length % (this.processes * 4)) chunksize++;
    }
    const chunks = items.length === 0 ? 0 : Math.ceil(items.length / chunksize);
    const job = new MapJob<R>(this, options, result, chunksize, items.length, chunks);
    this.watchSignal(job, options.signal);
    for (let i = 0; i < chunks && !job.cancelled; i++) {
      this._submit(job, [items.slice(i * chunksize, (i + 1) * chunksize)], fn, mode, i);
    }
  }

  /** Python's `imap`: results in input order, reading the input lazily. */
  imap<T, R>(fn: (item: T) => R, iterable: Iterable<T> | AsyncIterable<T>, chunksize?: number | CallOptions, options?: CallOptions): IMapIterator<Awaited<R>> {
    return this.startImap(fn as Fn, iterable, chunksize, options, true);
  }

  /** Python's `imap_unordered`: results as they finish. */
  imapUnordered<T, R>(fn: (item: T) => R, iterable: Iterable<T> | AsyncIterable<T>, chunksize?: number | CallOptions, options?: CallOptions): IMapIterator<Awaited<R>> {
    return this.startImap(fn as Fn, iterable, chunksize, options, false);
  }

  private startImap<R>(
    fn: Fn,
    iterable: Iterable<unknown> | AsyncIterable<unknown>,
    chunksizeOrOptions: number | undefined | CallOptions,
    maybeOptions: CallOptions | undefined,
    ordered: boolean,
  ): IMapIterator<R> {
    this.checkRunning();
    const [chunksizeArg, options] = splitOptions(chunksizeOrOptions, maybeOptions);
    const chunksize = chunksizeArg ?? 1;
    if (!Number.isInteger(chunksize) || chunksize < 1) throw new ValueError(`Chunksize must be 1+, not ${chunksize}`);
    if (iterable === null || typeof iterable !== 'object' || !(Symbol.iterator in iterable || Symbol.asyncIterator in iterable)) {
      throw new TypeError('imap() takes an Iterable or an AsyncIterable');
    }
    this.fnId(fn);
    const iterator = new IMapIterator<R>();
    const ahead = Math.max(chunksize * this.processes * 4, this.processes * 64);
    const job = new IMapJob<R>(this, options, iterator, ordered, chunksize, ahead, knownLength(iterable));
    this.watchSignal(job, options.signal);
    void job.pump(iterable, fn);
    return iterator;
  }

  private watchSignal(job: Job, signal: AbortSignal | undefined): void {
    if (!signal) return;
    const onAbort = () => {
      this._cancelJob(job);
      job.abort(signal.reason);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  }

  /** No more work is accepted; workers exit once the submitted work is done. */
  close(): void {
    if (this.state === RUN) {
      this.state = CLOSE;
      this.maybeStopWorkers();
    }
  }

  private maybeStopWorkers(): void {
    if (this.state !== CLOSE || this.outstanding > 0) return;
    for (const w of this.workers) if (!w.exited) w.send(stopFrame());
  }

  /** Stops the workers at once (SIGTERM); work not finished is rejected with ValueError. */
  terminate(): void {
    if (this.state === TERMINATE) return;
    this.state = TERMINATE;
    this.loopAbort.abort();
    if (this.timeoutTimer) clearInterval(this.timeoutTimer);
    const reason = new ValueError('Pool was terminated before this task finished');
    const jobs = new Set<Job>();
    for (let i = this.pendingHead; i < this.pending.length; i++) jobs.add(this.pending[i]!.job);
    for (const w of this.workers) {
      for (const t of w.inflight.values()) jobs.add(t.job);
      w.exited = true;
      if (w.process.exitcode === null) w.process.terminate();
    }
    this.pending = [];
    this.pendingHead = 0;
    this.outstanding = 0;
    for (const job of jobs) {
      if (!job.cancelled) {
        job.cancelled = true;
        job.abort(reason);
      }
    }
  }

  /** Waits for the workers to exit; call `close()` or `terminate()` first. */
  async join(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.state === RUN) throw new ValueError('Pool is still running');
    // Replacements may start while we wait (a closed pool finishing its work): wait for those too.
    for (let joined = 0; joined < this.started.length; ) {
      const batch = this.started.slice(joined);
      await Promise.all(batch.map((p) => p.join(null, options)));
      joined += batch.length;
    }
  }

  /** Counters and latency percentiles of this pool (beyond Python). */
  stats(): Stats {
    const l = [...this.latencies].sort((a, b) => a - b);
    const at = (p: number) => (l.length ? l[Math.min(l.length - 1, Math.floor(p * l.length))]! : 0);
    let busy = 0;
    let inFlight = 0;
    for (const w of this.workers) {
      inFlight += w.inflight.size;
      if (w.inflight.size > 0) busy++;
    }
    return {
      tasksDone: this.tasksDone,
      tasksFailed: this.tasksFailed,
      queued: this.pending.length - this.pendingHead,
      inFlight,
      busyWorkers: busy,
      workers: this.workers.length,
      workersReplaced: this.replaced,
      latencyMs: { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: l.length ? l[l.length - 1]! : 0 },
    };
  }

  /** Python's `with Pool() as p:` exits by terminating the pool. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.terminate();
    await this.join();
  }
  [Symbol.dispose](): void {
    this.terminate();
  }

  toString(): string {
    return `<${this.constructor.name} state=${this.state} pool_size=${this.workers.length}>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/** Python's ThreadPool: the same API on worker threads. */
export class ThreadPool extends Pool {
  constructor(processes?: number | null | PoolOptions, options: PoolOptions = {}) {
    if (typeof processes === 'object' && processes !== null) {
      super({ ...processes, context: getContext('thread') });
    } else {
      super(processes, { ...options, context: getContext('thread') });
    }
  }
}

registerClasses({ Pool });

function splitOptions<O extends CallOptions>(a: number | null | undefined | O, b: O | undefined): [number | null | undefined, O] {
  if (typeof a === 'object' && a !== null) return [undefined, a];
  return [a, b ?? ({} as O)];
}

function toArraySync(iterable: Iterable<unknown>): unknown[] {
  if (Array.isArray(iterable)) return iterable;
  if (iterable === null || (typeof iterable !== 'object' && typeof iterable !== 'string') || !(Symbol.iterator in Object(iterable))) {
    throw new TypeError('map() takes an Iterable or an AsyncIterable');
  }
  return [...iterable];
}

async function toArray(iterable: AsyncIterable<unknown>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

function workerLost(p: Process, code: number | null): WorkerLostError {
  const signal = code !== null && code < 0 ? signalName(-code) ?? `signal ${-code}` : null;
  const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
  return new WorkerLostError(`Worker ${p.name} ${how} while running this task`, code, signal);
}


