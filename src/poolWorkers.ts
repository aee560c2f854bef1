/**
 * The pool's workers as the pool sees them, and the dispatch of tasks to them: each worker's slot
 * (its channel, the tasks it holds, the frames on their way to it, how fast it works) and the
 * queue of tasks waiting for a worker with room.
 */
import type { MessagePort } from 'node:worker_threads';
import type { Process } from './process.js';
import { runAsync } from './futex.js';
import { type Channel, PORT_THRESHOLD, portFrame, primeAllocator, stampTask, transferables } from './poolChannel.js';
import type { Job } from './poolResults.js';

/** A task: one call of the pool's function (or one chunk of a map) on its way to a worker. */
export interface Task {
  job: Job;
  index: number;
  fnId: number;
  mode: number;
  /** Items it calls the function on: 1, or a map chunk's length (how long it takes scales with it). */
  items: number;
  /** The task's frame: its encoded arguments (poolChannel's taskFrame; empty for `byValue`). */
  frame: Buffer;
  /** On threads, the reduced value itself, sent over the port instead of a frame: for
   * `{ transfer: true }` (its ArrayBuffers moved) and for large bytes (copied by postMessage). */
  byValue: { graph: unknown; changed: boolean; transfer: boolean } | null;
  seq: number;
  worker: WorkerSlot | null;
  timeout: number | null;
  /** performance.now() when the pool first saw a worker running it (for `timeout`). */
  startedAt: number;
  submittedAt: number;
}

/** One worker, as the pool sees it. */
export class WorkerSlot {
  readonly inflight = new Map<number, Task>();
  readonly knownFns = new Set<number>();
  private outbox: Uint8Array[] = [];
  private feeding = false;
  assigned = 0;
  exited = false;
  private lastResultAt = 0;

  /** Called for each result: the milliseconds the task took, when that can be told (the worker
   * held another task, so it went from one to the next without waiting), else -1. */
  onResult(busyBefore: boolean): number {
    const now = performance.now();
    const took = busyBefore && this.lastResultAt > 0 ? now - this.lastResultAt : -1;
    this.lastResultAt = now;
    return took;
  }
  readingLarge = false;
  killedForTimeout: Task | null = null;
  private seenReady = false;

  /** Whether the worker waits for tasks (read from its channel until it does). */
  get ready(): boolean {
    return (this.seenReady ||= this.channel.ready);
  }

  constructor(
    readonly process: Process,
    readonly channel: Channel,
    /** Thread workers: large and transferred payloads go this way (see poolChannel's PortMessage). */
    readonly port: MessagePort | null,
  ) {}

  private batch: Uint8Array[] = [];

  /** Adds a frame to what `flush()` writes: one ring write, and one wake-up, per dispatch round. */
  queue(frame: Uint8Array): void {
    this.batch.push(frame);
  }

  flush(): void {
    if (this.batch.length === 0) return;
    const frames = this.batch;
    this.batch = [];
    // The whole frames that fit go in at once; the rest follow as the worker drains the ring.
    const from = this.outbox.length === 0 && !this.feeding ? this.channel.tasks.writeWhatFits(frames, 0).end : 0;
    for (let i = from; i < frames.length; i++) this.send(frames[i]!);
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

/**
 * How many tasks a worker may have in hand when it is given one whose large bytes postMessage
 * copies: each copy lives until the worker takes it, and few live copies mean their memory is
 * reused, where many are fresh memory whose page faults cost more than the copy (a megabyte
 * posted 1,000 times without waiting took 0.7-1.4 ms a post here; a pool that waits, a third).
 */
const LARGE_COPIES_AHEAD = 2;

/** The fewest tasks a worker may hold, and all it holds of a function whose time is not known yet:
 * one running, one waiting (Python's workers take one task at a time from one shared queue). */
const MIN_AHEAD = 2;

/**
 * The tasks waiting for a worker, and the choice of worker: the least busy one with room (see
 * `aheadFor`) among those that have started. Each task gets a sequence number that
 * names it to its worker. A worker that is still starting gets nothing: as with Python's shared
 * queue, the first worker up takes the first tasks, instead of a task waiting in the ring of a
 * worker that starts tens of milliseconds after its sibling (docs/benchmarks.md, issue 14 item 1).
 */
export class Dispatcher {
  private pending: Task[] = [];
  private head = 0;
  private seq = 0;
  /** Milliseconds per item of each pool function, learned from its results. Learned per function,
   * not per worker: a worker that last ran microsecond tasks would otherwise take a whole map of
   * slow ones at once, and its sibling, or a worker that starts later, would idle at the end. */
  private readonly itemMs = new Map<number, number>();

  constructor(
    /** The pool functions' define frames, sent to each worker before its first task that calls one. */
    private readonly fnFrames: ReadonlyMap<number, Uint8Array>,
    private readonly maxtasks: number | null,
    /** A task that cannot be sent fails (its moved buffers went to a worker that died). */
    private readonly fail: (task: Task, error: unknown) => void,
  ) {}

  /** Tasks waiting for a worker. */
  get queued(): number {
    return this.pending.length - this.head;
  }

  /** The tasks waiting for a worker, in order. */
  waiting(): Task[] {
    return this.pending.slice(this.head);
  }

  push(task: Task): void {
    this.pending.push(task);
  }

  /** Puts `tasks` back at the front (a dead worker's), in their order. */
  requeue(tasks: Task[]): void {
    this.pending.splice(this.head, 0, ...tasks);
  }

  /** Forgets every waiting task. */
  clear(): void {
    this.pending = [];
    this.head = 0;
  }

  /** Hands waiting tasks to workers with room, then writes each worker's batch; returns how many
   * tasks of cancelled jobs it dropped instead. */
  dispatch(workers: readonly WorkerSlot[]): number {
    let dropped = 0;
    while (this.head < this.pending.length) {
      const ahead = this.aheadFor(this.pending[this.head]!);
      let best: WorkerSlot | null = null;
      for (const w of workers) {
        if (w.exited || !w.ready || w.inflight.size >= ahead) continue;
        if (this.maxtasks !== null && w.assigned >= this.maxtasks) continue;
        if (!best || w.inflight.size < best.inflight.size) best = w;
      }
      if (!best) break;
      const task = this.pending[this.head++]!;
      if (task.job.cancelled) {
        dropped++;
        continue;
      }
      this.assign(best, task);
    }
    for (const w of workers) w.flush();
    if (this.head === this.pending.length) {
      // Handed out tasks must not keep their jobs (and so the callers' arguments and results)
      // alive: CPython's test_release_task_refs.
      this.pending = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.head);
      this.head = 0;
    }
    return dropped;
  }

  /** How many tasks a worker may hold when it is given `task`: enough to keep it busy for a few
   * milliseconds between two wake-ups, few enough that slow tasks do not queue behind each other
   * while another worker idles. */
  private aheadFor(task: Task): number {
    if (task.byValue?.transfer === false) return LARGE_COPIES_AHEAD;
    const perItem = this.itemMs.get(task.fnId);
    if (perItem === undefined) return MIN_AHEAD;
    return Math.max(MIN_AHEAD, Math.min(256, Math.ceil(4 / Math.max(perItem * task.items, 0.001))));
  }

  /** A result of `task` came, `took` ms after the worker's previous one (-1: not known). A slower
   * figure is taken at once, so that a function whose calls got slower is not handed out many
   * at a time; a faster one is averaged in. */
  learn(task: Task, took: number): void {
    if (took < 0) return;
    const perItem = took / task.items;
    const known = this.itemMs.get(task.fnId);
    this.itemMs.set(task.fnId, known === undefined || perItem > 2 * known ? perItem : known * 0.9 + perItem * 0.1);
  }

  private assign(w: WorkerSlot, task: Task): void {
    if (!w.knownFns.has(task.fnId)) {
      w.queue(this.fnFrames.get(task.fnId)!);
      w.knownFns.add(task.fnId);
    }
    task.seq = this.seq = (this.seq % 0xfffffffe) + 1;
    task.worker = w;
    w.inflight.set(task.seq, task);
    w.assigned++;
    if (w.port && task.byValue) {
      primeAllocator();
      try {
        const { graph, changed, transfer } = task.byValue;
        w.port.postMessage({ seq: task.seq, fnId: task.fnId, mode: task.mode, graph, changed, transfer }, transfer ? transferables(graph) : []);
      } catch (error) {
        // It cannot be posted (its buffers were moved to a worker that died, or a value cannot be
        // cloned): it fails, and its place in the worker's count is given back.
        w.inflight.delete(task.seq);
        w.assigned--;
        queueMicrotask(() => this.fail(task, error));
        return;
      }
      w.queue(portFrame());
      return;
    }
    const frame = stampTask(task.frame, task.seq, task.fnId, task.mode);
    if (w.port && frame.length >= PORT_THRESHOLD) {
      // A large payload to a thread: over the port instead of through the ring, as a copy (the
      // task keeps its frame in case this worker dies before running it). postMessage's own copy,
      // not a copy made here and moved: a fresh megabyte costs its page faults (0.26 ms per MiB
      // here, against 0.03 ms to copy into memory already touched), and the receiving thread takes
      // them, not the pool's (bench/pool.mjs W4: 0.89 GB/s against 0.54-0.69).
      primeAllocator();
      w.port.postMessage({ frame });
      w.queue(portFrame());
    } else {
      w.queue(frame);
    }
  }
}
