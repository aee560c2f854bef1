/**
 * The redis context's Pool: the whole Pool API (BasePool: apply ... imapUnordered, AsyncResult,
 * callbacks, signal/timeout/progress), with tasks that run on worker programs
 * (`multiprocessing-ts worker`) on any machine that reaches Redis. This file keeps the books
 * (which call each task belongs to, counters); producer.ts moves the tasks.
 */
import { ValueError, withRemoteTraceback, WorkerLostError } from '../errors.js';
import { BasePool, Latencies, poolArguments, type PoolOptions, type Stats } from '../pool.js';
import type { Fn, InputReader, Job } from '../poolResults.js';
import { CALL } from '../poolChannel.js';
import { processCpuCount } from '../process.js';
import { raceTimeout } from '../util.js';
import { dumps, type RebuildContext } from '../reduction.js';
import type { RedisSettings } from './settings.js';
import { decodeRemote, remoteReduceContext, senderResolving } from './naming.js';
import { Producer } from './producer.js';
import { FAILED, LOST, OK, TASK_HEADER, writeTaskHeader, type ResultRecord } from './stream.js';

interface Task {
  job: Job;
  index: number;
  submittedAt: number;
}

const RECENT_WORKER_MS = 10_000;

export class RedisPool extends BasePool {
  private readonly producer: Producer;
  private readonly tasks = new Map<number, Task>();
  private readonly rebuildContext: RebuildContext = { target: 'process', handles: [], remote: senderResolving() };
  private seq = 0;
  private fatal: Error | null = null;
  private stopping: Promise<void> | null = null;
  private resolveStopped!: () => void;
  /** Settles when the pool's keys are deleted and its connections closed. */
  private readonly stopped = new Promise<void>((resolve) => (this.resolveStopped = resolve));
  private readonly latencies = new Latencies();
  private tasksDone = 0;
  private tasksFailed = 0;
  /** Workers (consumer names) that sent results, and when they last did. */
  private readonly workersSeen = new Map<string, number>();

  constructor(settings: RedisSettings, processesArg?: number | null | PoolOptions, optionsArg: PoolOptions = {}) {
    const [processes, options] = poolArguments(processesArg, optionsArg);
    super(processes ?? processCpuCount());
    this.producer = new Producer(settings, {
      onResult: (record, consumer) => this.onResult(record, consumer),
      onFatal: (error) => this.onFatal(error),
    });
    if (options.initializer) {
      const fn = dumps(options.initializer, remoteReduceContext(), { functionSlot: true });
      this.producer.setInitializer(fn, dumps(options.initargs ? [...options.initargs] : [], remoteReduceContext()));
    }
  }

  /** The pool's id in Redis (its keys are `mp:pool:<id>:*`). */
  get id(): string {
    return this.producer.keys.id;
  }

  protected defineFunction(id: number, fn: Fn): void {
    this.producer.defineFunction(id, dumps(fn, remoteReduceContext(), { functionSlot: true }));
  }

  _submit(job: Job, args: unknown[], fn: Fn, mode: number, index: number): void {
    let task: Buffer;
    const seq = (this.seq = (this.seq % 0xfffffffe) + 1);
    const timeout = job.options.timeout ?? null;
    try {
      if (this.fatal) throw this.fatal;
      const fnId = this.fnId(fn);
      task = dumps(mode === CALL ? args : args[0], remoteReduceContext(), undefined, TASK_HEADER);
      writeTaskHeader(task, { mode, seq, fnId, timeout });
    } catch (error) {
      // An argument that cannot be serialised fails its own task, as in Python.
      queueMicrotask(() => job.deliver(index, false, error));
      return;
    }
    this.tasks.set(seq, { job, index, submittedAt: performance.now() });
    // A task with a timeout runs alone on its worker (its process is killed when it runs over).
    this.producer.send(seq, task, timeout === null);
  }

  protected cancelJob(job: Job): void {
    job.cancelled = true;
    const dropped: number[] = [];
    for (const [seq, task] of this.tasks) {
      if (task.job === job) dropped.push(seq);
    }
    for (const seq of dropped) this.tasks.delete(seq);
    this.producer.drop(dropped);
    this.maybeStop();
  }

  private onResult(record: ResultRecord, consumer: string): void {
    const task = this.tasks.get(record.seq);
    if (!task) return;
    this.tasks.delete(record.seq);
    if (consumer) this.workersSeen.set(consumer, Date.now());
    this.latencies.add(performance.now() - task.submittedAt);
    const finish = (ok: boolean, value: unknown): void => {
      this.tasksDone++;
      if (!ok) this.tasksFailed++;
      if (!task.job.cancelled) task.job.deliver(task.index, ok, value);
      this.maybeStop();
    };
    if (record.status === LOST) {
      const [deliveries, last] = record.body.toString().split(' ');
      finish(false, new WorkerLostError(
        `The task was given to a worker ${deliveries} times and each one died (or stopped answering) while ` +
          `holding it${last ? `, last ${last}` : ''}; it is not given out again (maxDeliveries).`,
      ));
      return;
    }
    const ok = record.status === OK;
    if (!ok && record.status !== FAILED) return;
    let value: unknown;
    try {
      value = decodeRemote(record.body, this.rebuildContext);
    } catch (error) {
      finish(false, error);
      return;
    }
    // A task's own error is re-thrown here with the worker's stack in `cause`.
    const outcome = (v: unknown): unknown => (ok || !(v instanceof Error) ? v : withRemoteTraceback(v));
    if (value instanceof Promise) value.then((v) => finish(ok, outcome(v)), (error) => finish(false, error));
    else finish(ok, outcome(value));
  }

  /** The stream cannot be used: every unfinished task fails with the error, as will new ones. */
  private onFatal(error: Error): void {
    this.fatal ??= error;
    const tasks = [...this.tasks.values()];
    this.tasks.clear();
    for (const task of tasks) {
      this.tasksDone++;
      this.tasksFailed++;
      if (!task.job.cancelled) task.job.deliver(task.index, false, error);
    }
    this.maybeStop();
  }

  /** @internal */
  protected inputRead(): void {
    this.maybeStop();
  }

  private maybeStop(): void {
    if (this.state === 'CLOSE' && this.tasks.size === 0 && this.readingInputs.size === 0) this.stop();
  }

  private stop(): void {
    this.stopping ??= this.producer.close().catch(() => {}).then(() => this.resolveStopped());
  }

  close(): void {
    if (this.state === 'RUN') {
      this.state = 'CLOSE';
      this.readInputsToEnd();
      this.maybeStop();
    }
  }

  /** Stops at once: the pool's keys are deleted (workers drop its tasks), unfinished calls fail. */
  terminate(): void {
    if (this.state === 'TERMINATE') return;
    this.state = 'TERMINATE';
    const reason = new ValueError('Pool was terminated before this task finished');
    const jobs = new Set<Job | InputReader>(this.readingInputs);
    for (const task of this.tasks.values()) jobs.add(task.job);
    this.tasks.clear();
    for (const job of jobs) {
      if (!job.cancelled) {
        job.cancelled = true;
        job.abort(reason);
      }
    }
    this.stop();
  }

  async join(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.state === 'RUN') throw new ValueError('Pool is still running');
    await raceTimeout(this.stopped, null, options.signal);
  }

  stats(): Stats {
    const now = Date.now();
    let workers = 0;
    for (const [name, seen] of this.workersSeen) {
      if (now - seen < RECENT_WORKER_MS) workers++;
      else this.workersSeen.delete(name);
    }
    return {
      tasksDone: this.tasksDone,
      tasksFailed: this.tasksFailed,
      queued: 0,
      inFlight: this.tasks.size,
      busyWorkers: workers,
      workers,
      workersReplaced: 0,
      latencyMs: this.latencies.percentiles(),
    };
  }

  override toString(): string {
    return `<RedisPool state=${this.state} id=${this.id}>`;
  }
}

