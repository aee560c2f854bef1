/**
 * Pool and ThreadPool, as CPython's pool.py, plus what Python's pool gets wrong. BasePool holds the
 * Pool API itself (calls into jobs and tasks), which the redis context's pool shares.
 *
 * The moving parts (piscina keeps them apart too):
 * - jobs (an apply, a map, an imap) collect their tasks' results and settle what the caller holds
 *   (poolResults.ts);
 * - tasks wait in the dispatcher until a worker has room; each worker has its own channel (two
 *   shared memory rings, poolChannel.ts), so the pool knows which tasks every worker holds
 *   (poolWorkers.ts);
 * - here: one result loop per pool sleeps on a single notify word that workers bump; a worker
 *   that dies fails the task it was running with WorkerLostError and hands the rest to others, and
 *   a replacement is started (Python's pool hangs here).
 */
import { inspect } from 'node:util';
import { MessageChannel } from 'node:worker_threads';
import { TimeoutError, ValueError, withRemoteTraceback, WorkerLostError } from './errors.js';
import { signalName } from './backends/backend.js';
import { getContext, memoryKindFor, registerClasses, type BaseContext } from './context.js';
import { checkNotBootstrapping, Process, processCpuCount } from './process.js';
import { newReduceContext, rebuild, reduce } from './reduction.js';
import { LENGTH_BYTES, NO_FRAME } from './ring.js';
import { sentinelExit } from './sentinels.js';
import { runAsync, SpinBackoff, spinUntil } from './futex.js';
import { finalize } from './util.js';
import { refOf, sourceOf, type SourceFunction } from './tasks.js';
import {
  CALL, CANCELLED, Channel, decodeResult, defineFrame, holdsLargeBytes, MAP_CHUNK, Notifier, OK, STARMAP_CHUNK, stopFrame, taskFrame,
  type PortMessage, type ResultMessage,
} from './poolChannel.js';
import { poolWorkerMain } from './poolWorker.js';
import { knownLength } from './progress.js';
import {
  ApplyJob, AsyncResult, IMapIterator, IMapJob, MapJob, type AsyncCallOptions, type CallOptions, type Fn, type Job,
  type InputReader, type JobPool,
} from './poolResults.js';
import { Dispatcher, WorkerSlot, type Task } from './poolWorkers.js';

export { AsyncResult, IMapIterator, type AsyncCallOptions, type CallOptions } from './poolResults.js';

export interface PoolOptions {
  processes?: number | null;
  initializer?: Fn | null;
  initargs?: unknown[];
  maxtasksperchild?: number | null;
  /** A context from `mp.getContext(method)`: the start method of the workers. */
  context?: BaseContext;
}

const RUN = 'RUN';
const CLOSE = 'CLOSE';
const TERMINATE = 'TERMINATE';

export interface Stats {
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

/** Submit-to-result times of the most recent tasks, for `stats()`. */
export class Latencies {
  private readonly samples: number[] = [];
  add(ms: number): void {
    if (this.samples.length >= LATENCY_SAMPLES) this.samples.shift();
    this.samples.push(ms);
  }
  percentiles(): Stats['latencyMs'] {
    const l = [...this.samples].sort((a, b) => a - b);
    const at = (p: number) => (l.length ? l[Math.min(l.length - 1, Math.floor(p * l.length))]! : 0);
    return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: l.length ? l[l.length - 1]! : 0 };
  }
}

const noFrame = Buffer.alloc(0);
/** How long (ms) the result loop waits in a spin for the result of a lone task (see resultLoop). */
const SPIN_MS = 0.05;

/** Checks the Pool constructor's arguments (Python's): `new Pool(4, options)` or `new Pool({ processes: 4, ... })`. */
export function poolArguments(processes: number | null | undefined | PoolOptions, options: PoolOptions): [number | null, PoolOptions] {
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
  return [processes ?? null, options];
}

/**
 * The Pool API (Python's, plus signal/timeout/progress): turns each call into a job and its tasks.
 * Where the tasks run is the subclass's business: `Pool` runs them on local workers, the redis
 * context's pool on worker programs reached through Redis.
 */
export abstract class BasePool implements JobPool {
  protected state: typeof RUN | typeof CLOSE | typeof TERMINATE = RUN;
  private readonly fnIds = new Map<Function, number>();
  /**
   * @internal imap calls whose input is still being read. A closed pool goes on taking their
   * tasks, as Python's task handler reads an imap's input to its end after close(), and stops once
   * they are done; terminate() fails them (their readers stop at the abort).
   */
  protected readonly readingInputs = new Set<InputReader>();

  constructor(
    /** How many workers the pool counts on: the default chunksize and imap's read-ahead follow it. */
    protected readonly processes: number,
  ) {}

  /** @internal Queues one task of `job`: `args` are the call's arguments or the chunk's items. */
  abstract _submit(job: Job, args: unknown[], fn: Fn, mode: number, index: number): void;
  /** Drops a job's queued tasks; workers skip its dispatched ones they have not started. */
  protected abstract cancelJob(job: Job): void;
  /** Encodes a pool function for the workers, once (it fails here, at the call, if it cannot go). */
  protected abstract defineFunction(id: number, fn: Fn): void;
  /** No more work is accepted; workers exit once the submitted work is done. */
  abstract close(): void;
  /** Stops at once; work not finished is rejected with ValueError. */
  abstract terminate(): void;
  /** Waits until the pool has stopped; call `close()` or `terminate()` first. */
  abstract join(options?: { signal?: AbortSignal }): Promise<void>;
  /** Counters and latency percentiles of this pool (beyond Python). */
  abstract stats(): Stats;
  /** @internal An imap's input has been read to its end (or failed, or its call was cancelled). */
  protected abstract inputRead(): void;

  /** @internal */
  _inputDone(reader: InputReader): void {
    if (this.readingInputs.delete(reader)) this.inputRead();
  }

  /** @internal close(): imap inputs are read to their end without waiting for the caller. */
  protected readInputsToEnd(): void {
    for (const job of this.readingInputs) job.readToEnd();
  }

  protected checkRunning(): void {
    if (this.state !== RUN) throw new ValueError('Pool not running');
  }

  /** The function's number in this pool (each function is sent to the workers once). */
  protected fnId(fn: Fn): number {
    if (typeof fn !== 'function') throw new TypeError('the pool function must be a function');
    let id = this.fnIds.get(fn);
    if (id === undefined) {
      id = this.fnIds.size + 1;
      this.defineFunction(id, fn);
      this.fnIds.set(fn, id);
    }
    return id;
  }

  // ---- the API ------------------------------------------------------------------------------

  /** Python's `apply`: runs `fn(...args)` in a worker and waits for the result. */
  async apply<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options: CallOptions = {}): Promise<Awaited<R>> {
    return this.applyAsync(fn, args, options).get();
  }

  applyAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    args?: A,
    options: AsyncCallOptions<Awaited<R>> = {},
  ): AsyncResult<Awaited<R>> {
    this.checkRunning();
    const result = new AsyncResult<Awaited<R>>(options);
    const job = new ApplyJob(this, options, result);
    this.watchSignal(job, options.signal);
    this._submit(job, args ? [...args] : [], fn as Fn, CALL, 0);
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
      // The call was made while the pool ran: a close() meanwhile does not refuse its tasks (Python
      // has them queued by then); terminate() fails it.
      const reader: InputReader = { cancelled: false, readToEnd() {}, abort: (reason) => result._settle(false, reason) };
      this.readingInputs.add(reader);
      toArray(iterable)
        .then(
          (items) => reader.cancelled || this.submitMap(fn, items, chunksize, options, mode, result),
          (error) => result._settle(false, error),
        )
        .finally(() => this._inputDone(reader));
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
    this.readingInputs.add(job);
    void job.pump(iterable, fn);
    return iterator;
  }

  private watchSignal(job: Job, signal: AbortSignal | undefined): void {
    if (!signal) return;
    const onAbort = () => {
      this.cancelJob(job);
      job.abort(signal.reason);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  }

  /** Python's `with Pool() as p:` exits by terminating the pool. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.terminate();
    await this.join();
  }
  [Symbol.dispose](): void {
    this.terminate();
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

/** Python's `multiprocessing.Pool`. */
export class Pool extends BasePool {
  private readonly ctx: BaseContext;
  private readonly initializer: Fn | SourceFunction | null;
  private readonly initargs: unknown[];
  private readonly maxtasks: number | null;
  private readonly notifier: Notifier;
  private readonly kind: 'thread' | 'process';
  private workers: WorkerSlot[] = [];
  private outstanding = 0;
  private loopRunning = false;
  private loopAbort = new AbortController();
  private readonly fnFrames = new Map<number, Uint8Array>();
  private readonly dispatcher: Dispatcher;
  private timeoutTimer: NodeJS.Timeout | null = null;
  private readonly latencies = new Latencies();
  private tasksDone = 0;
  private tasksFailed = 0;
  private replaced = 0;
  /**
   * @internal How long (ms) the result loop spins for the result of a lone task before it waits
   * asynchronously, and whether it backs off after spins that caught nothing. Short, and always,
   * in a caller's own program (its event loop is held that long). The redis worker program, whose
   * local pool wakes a sleeping process for each task that comes alone, spins until that process
   * is up and has answered, backing off when its tasks take longer (src/redis/worker.ts).
   */
  loneResultSpin: { ms: number; backoff: SpinBackoff | null } = { ms: SPIN_MS, backoff: null };
  /** Every worker process this pool started, for join(). */
  private readonly started: Process[] = [];
  /** Python's pool finalizer (exitpriority 15): a child's exit terminates a pool still running. */
  private readonly terminateAtExit = finalize(() => this.terminate(), 15);

  constructor(processesArg?: number | null | PoolOptions, optionsArg: PoolOptions = {}) {
    const [processes, options] = poolArguments(processesArg, optionsArg);
    super(processes ?? processCpuCount());
    this.ctx = (options.context ?? getContext()).getContext();
    const init = options.initializer ?? null;
    this.initializer = init === null || refOf(init) ? init : sourceOf(init, 'the pool initializer');
    this.initargs = options.initargs ? [...options.initargs] : [];
    this.maxtasks = options.maxtasksperchild ?? null;
    this.kind = memoryKindFor({ ctx: this.ctx });
    this.notifier = Notifier.create(this.kind);
    this.dispatcher = new Dispatcher(this.fnFrames, this.maxtasks, (task, error) => this.finish(task, false, error));
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

  protected defineFunction(id: number, fn: Fn): void {
    const ctx = newReduceContext(this.kind);
    this.fnFrames.set(id, defineFrame(id, fn, ctx, { functionSlot: true }));
    this.ctx._expectModules(ctx.modules);
  }

  /** @internal Queues one task of `job`: `args` are the call's arguments or the chunk's items. */
  _submit(job: Job, args: unknown[], fn: Fn, mode: number, index: number): void {
    let frame: Buffer = noFrame;
    let byValue: Task['byValue'] = null;
    let fnId: number;
    try {
      fnId = this.fnId(fn);
      const value = mode === CALL ? args : args[0];
      if (this.kind === 'thread' && (job.options.transfer || holdsLargeBytes(value))) {
        const ctx = newReduceContext('thread');
        const reduced = reduce(value, ctx, { structuredClone: true });
        // A MessagePort is not a task's argument on either path: the frame path says so.
        if (ctx.transfer.length === 0) byValue = { ...reduced, transfer: job.options.transfer === true };
      }
      if (!byValue) frame = taskFrame(value, newReduceContext(this.kind));
    } catch (error) {
      // An argument that cannot be serialised fails its own task, as in Python.
      queueMicrotask(() => job.deliver(index, false, error));
      return;
    }
    const items = mode !== CALL && Array.isArray(args[0]) ? args[0].length || 1 : 1;
    const task: Task = {
      job, index, fnId, mode, items, frame, byValue, seq: 0, worker: null,
      timeout: job.options.timeout ?? null, startedAt: 0, submittedAt: performance.now(),
    };
    this.dispatcher.push(task);
    this.outstanding++;
    if (task.timeout !== null) this.watchTimeouts();
    // Tasks submitted in one synchronous run (a loop of applyAsync) go out together.
    // The first task of a synchronous run goes out at once (latency); the ones submitted after it
    // in the same run go out together in a microtask (one ring write and wake-up per worker).
    // The result loop starts in the microtask: its spin for a lone result must not hold back the
    // rest of this synchronous run (a redis worker's other local calls, a loop of applyAsync).
    if (this.dispatchScheduled) return;
    this.dispatchScheduled = true;
    this.dispatch();
    queueMicrotask(() => {
      this.dispatchScheduled = false;
      this.dispatch();
      if (!this.loopRunning && this.outstanding > 0) void this.resultLoop();
    });
  }
  private dispatchScheduled = false;

  private dispatch(): void {
    const dropped = this.dispatcher.dispatch(this.workers);
    if (dropped === 0) return;
    // Tasks of cancelled calls, dropped here: they may have been a closed pool's last work.
    this.outstanding -= dropped;
    this.maybeStopWorkers();
  }

  // ---- results ------------------------------------------------------------------------------

  private async resultLoop(): Promise<void> {
    this.loopRunning = true;
    try {
      while (this.outstanding > 0 && this.state !== TERMINATE) {
        const seq = this.notifier.seq();
        if (this.drainAll() > 0) continue;
        // A worker that has just started waits for tasks (it notified): hand it the queued ones.
        if (this.dispatcher.queued > 0) this.dispatch();
        // One task out (a round trip): its result usually comes back within microseconds from a
        // blocked worker, sooner than an asynchronous wake-up could deliver it.
        if (this.outstanding === 1 && this.spinForLoneResult(seq)) continue;
        await this.notifier.sleep(seq, this.loopAbort.signal);
      }
    } catch (error) {
      // terminate() aborts the sleep; anything else is a bug to report, not to swallow.
      if (error !== this.loopAbort.signal.reason) throw error;
    } finally {
      this.loopRunning = false;
    }
  }

  private spinForLoneResult(seq: number): boolean {
    const { ms, backoff } = this.loneResultSpin;
    if (backoff && !backoff.shouldSpin()) return false;
    const caught = spinUntil(() => this.notifier.seq() !== seq, ms);
    backoff?.spun(caught);
    return caught;
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
      const result = ring.tryDecodeFrame(resultsOf(w));
      if (result !== NO_FRAME) {
        this.onResult(w, result);
        n++;
        continue;
      }
      if (ring.available() > 0) {
        // A result larger than what has arrived: read the rest as it streams in.
        w.readingLarge = true;
        void runAsync(ring.readFrame()).then((frame) => {
          w.readingLarge = false;
          this.onResult(w, resultsOf(w)(frame, true));
          this.drain(w);
        });
      }
      break;
    }
    if (n > 0) this.dispatch();
    return n;
  }

  private onResult(w: WorkerSlot, { seq, status, value }: ResultMessage): void {
    this.settle(w, seq, status, value);
  }

  /** A thread worker's message: a large result frame, or a `{ transfer: true }` result. */
  private onPortMessage(w: WorkerSlot, m: PortMessage): void {
    if ('frame' in m) this.onResult(w, resultsOf(w)(m.frame.subarray(LENGTH_BYTES), true));
    else if ('status' in m) this.settle(w, m.seq, m.status, () => (m.changed ? rebuild(m.graph, { target: 'thread', handles: [] }) : m.graph));
    this.drain(w);
    this.dispatch(); // the worker has room again
    // The result loop may be asleep on the ring's notify word: once nothing is outstanding it must
    // wake to end (its sleep holds the event loop). Until then the workers' notifications wake it,
    // not one more turn of the event loop per task here.
    if (this.outstanding === 0) this.notifier.notify();
  }

  private settle(w: WorkerSlot, seq: number, status: number, decode: () => unknown): void {
    const task = w.inflight.get(seq);
    if (!task) return;
    this.dispatcher.learn(task, w.onResult(w.inflight.size > 1));
    w.inflight.delete(seq);
    if (status === CANCELLED) {
      // The worker did not run it and does not count it towards maxtasksperchild: nor does the pool.
      w.assigned--;
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
    this.latencies.add(performance.now() - task.submittedAt);
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
      this.dispatcher.requeue(requeue);
    }
    // As Python's worker handler: replaced while the pool runs or has work, an imap's input still
    // being read after close() included (its next tasks need a worker).
    if (this.state === RUN || this.outstanding > 0 || this.readingInputs.size > 0) {
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
      let watching = this.dispatcher.waiting().some((t) => t.timeout !== null);
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

  /** Drops a job's queued tasks; workers skip its dispatched ones they have not started. */
  protected cancelJob(job: Job): void {
    job.cancelled = true;
    for (const w of this.workers) {
      for (const task of w.inflight.values()) if (task.job === job) this.notifier.cancel(task.seq);
    }
  }

  /** No more work is accepted; workers exit once the submitted work is done. */
  close(): void {
    if (this.state === RUN) {
      this.state = CLOSE;
      this.readInputsToEnd();
      this.maybeStopWorkers();
    }
  }

  /** @internal */
  protected inputRead(): void {
    this.maybeStopWorkers();
  }

  private maybeStopWorkers(): void {
    if (this.state !== CLOSE || this.outstanding > 0 || this.readingInputs.size > 0) return;
    for (const w of this.workers) if (!w.exited) w.send(stopFrame());
  }

  /** Stops the workers at once (SIGTERM); work not finished is rejected with ValueError. */
  terminate(): void {
    if (this.state === TERMINATE) return;
    this.state = TERMINATE;
    this.terminateAtExit.cancel();
    this.loopAbort.abort();
    if (this.timeoutTimer) clearInterval(this.timeoutTimer);
    const reason = new ValueError('Pool was terminated before this task finished');
    const jobs = new Set<Job | InputReader>(this.readingInputs);
    for (const task of this.dispatcher.waiting()) jobs.add(task.job);
    for (const w of this.workers) {
      for (const t of w.inflight.values()) jobs.add(t.job);
      w.exited = true;
      if (w.process.exitcode === null) w.process.terminate();
    }
    this.dispatcher.clear();
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
    this.terminateAtExit.cancel();
  }

  /** Counters and latency percentiles of this pool (beyond Python). */
  stats(): Stats {
    let busy = 0;
    let inFlight = 0;
    for (const w of this.workers) {
      inFlight += w.inflight.size;
      if (w.inflight.size > 0) busy++;
    }
    return {
      tasksDone: this.tasksDone,
      tasksFailed: this.tasksFailed,
      queued: this.dispatcher.queued,
      inFlight,
      busyWorkers: busy,
      workers: this.workers.length,
      workersReplaced: this.replaced,
      latencyMs: this.latencies.percentiles(),
    };
  }

  override toString(): string {
    return `<${this.constructor.name} state=${this.state} pool_size=${this.workers.length}>`;
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

/** Decodes `w`'s result frames (where they lie), skipping the values of tasks it no longer holds. */
function resultsOf(w: WorkerSlot): (frame: Uint8Array, owned: boolean) => ResultMessage {
  return (frame, owned) => decodeResult(frame, owned, (seq) => w.inflight.has(seq));
}

function workerLost(p: Process, code: number | null): WorkerLostError {
  const signal = code !== null && code < 0 ? signalName(-code) ?? `signal ${-code}` : null;
  const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
  return new WorkerLostError(`Worker ${p.name} ${how} while running this task`, code, signal);
}


