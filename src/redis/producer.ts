/**
 * The producer's end of a task stream (stream.ts): a pool's (or a context's Processes') tasks go
 * out, results come back. It keeps every task until its result arrives, so that when Redis loses
 * the stream (a restart without persistence) it opens it again and sends them once more; workers
 * simply find the pool again. Results of a task after its first are dropped (first result wins).
 */
import { getLogger } from '../logger.js';
import { connect, disconnect, keepAlive, KeyKeeper, whileAlive, type RedisClient } from './client.js';
import { newId, type RedisSettings } from './settings.js';
import {
  ADD_TASKS, CLOSE_POOL, fnField, INIT_FIELD, INITARGS_FIELD, OPEN_POOL, PACK_FIELD, PACK_MAX, PACK_SHARE, packTasks, poolKeys,
  POOLS, readResults, STARTED, TASK_FIELD, type PoolKeys, type ResultRecord,
} from './stream.js';

export interface ResultHandler {
  /** A task's result (the first one for its seq). */
  onResult(record: ResultRecord, consumer: string): void;
  /** The stream cannot be used (Redis unreachable at start, AUTH...): everything waiting fails. */
  onFatal(error: Error): void;
}

interface Unfinished {
  task: Buffer;
  /** Whether it may go in a pack (no timeout, not a Process: the worker runs it with others). */
  packable: boolean;
  /** The stream entry id, once Redis has replied (for `drop`). */
  id: string | null;
}

const RESULTS_PER_POP = 1000;
/** Entries per ADD_TASKS call. */
const ADD_BATCH = 1000;
/** A pack holds at most this many bytes of tasks (large tasks go alone anyway). */
const PACK_MAX_BYTES = 64 * 1024;
/** Seconds a result read blocks before it looks again whether it is still wanted. */
const RESULT_WAIT = 1;

// A pool never closed is closed when the program ends (Python's pool finalizer terminates it), so
// its keys do not wait for their TTL.
const unclosed = new Set<Producer>();
process.on('beforeExit', () => {
  for (const producer of unclosed) void producer.close();
});

export class Producer {
  readonly keys: PoolKeys;
  private client: RedisClient | null = null;
  private reader: RedisClient | null = null;
  private keeper: KeyKeeper | null = null;
  private readonly ready: Promise<void>;
  private readonly unfinished = new Map<number, Unfinished>();
  /** How many unfinished tasks each entry in the stream holds (it is deleted when none is wanted). */
  private readonly entryTasks = new Map<string, number>();
  private readonly fns = new Map<number, Buffer>();
  private init: [fn: Buffer, args: Buffer] | null = null;
  private outbox: number[] = [];
  private flushScheduled = false;
  private reading = false;
  private closed = false;
  private recovering: Promise<void> | null = null;
  /** Releases the program once no result is due (the sockets do not keep it alive). */
  private release: (() => void) | null = null;

  constructor(
    private readonly settings: RedisSettings,
    private readonly handler: ResultHandler,
    id = newId(),
  ) {
    this.keys = poolKeys(id);
    unclosed.add(this);
    this.ready = this.open();
    this.ready.catch((error: Error) => handler.onFatal(error));
  }

  private async open(): Promise<void> {
    // Both at once: a pool's first task waits for one connection set-up, not two in turn.
    const opened = await Promise.allSettled([
      connect(this.settings.url, { role: 'producer', autoPipelining: false }),
      connect(this.settings.url, { role: 'results', blocking: true }),
    ]);
    const [client, reader] = opened.map((o) => (o.status === 'fulfilled' ? o.value : null));
    const failure = opened.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failure || this.closed || !client || !reader) {
      disconnect(client);
      disconnect(reader);
      if (failure) throw failure.reason;
      return;
    }
    this.client = client;
    this.reader = reader;
    this.keeper = new KeyKeeper(client, this.settings.keyTtl);
    this.keeper.add(this.keys.tasks, this.keys.fns, POOLS);
    await this.openStream();
    // After a reconnection, Redis may have lost everything (restarted without persistence).
    client.on('ready', () => void this.recover());
  }

  /** Creates the stream, group and registration (again, after Redis lost them) and announces it. */
  private async openStream(): Promise<void> {
    const client = this.client!;
    const { claimIdle, maxDeliveries, keyTtl } = this.settings;
    await OPEN_POOL.run(client, [this.keys.tasks, this.keys.fns, POOLS], [
      this.keys.id, JSON.stringify({ claimIdle, maxDeliveries }), Math.ceil(keyTtl * 1000),
    ]);
    const pipeline = client.pipeline();
    if (this.init) pipeline.hset(this.keys.fns, INIT_FIELD, this.init[0], INITARGS_FIELD, this.init[1]);
    for (const [fnId, bytes] of this.fns) pipeline.hset(this.keys.fns, fnField(fnId), bytes);
    pipeline.publish(POOLS, this.keys.id);
    await pipeline.exec();
  }

  /** The pool's initializer and its arguments (encoded); workers run it before the pool's tasks. */
  setInitializer(fn: Buffer, args: Buffer): void {
    this.init = [fn, args];
  }

  /** Sends a function before the tasks that use it. */
  defineFunction(fnId: number, bytes: Buffer): void {
    this.fns.set(fnId, bytes);
    this.outbox.push(-fnId);
    this.scheduleFlush();
  }

  /** Queues a task (header and body, stream.ts); tasks queued in one synchronous run go out
   * together, the packable ones in packs. */
  send(seq: number, task: Buffer, packable: boolean): void {
    this.unfinished.set(seq, { task, packable, id: null });
    this.outbox.push(seq);
    this.scheduleFlush();
    // (A closed producer sends nothing, and must not hold the program open.)
    if (!this.closed) this.release ??= keepAlive();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => void this.flush());
  }

  private async flush(): Promise<void> {
    await this.ready.catch(() => {});
    try {
      if (this.recovering) await this.recovering;
    } catch (error) {
      this.flushScheduled = false;
      return this.fail(error as Error);
    }
    this.flushScheduled = false;
    const items = this.outbox;
    this.outbox = [];
    if (this.closed || items.length === 0 || !this.client) return this.startReading();
    // Functions first (a flush keeps the order of submission, and a task's function came before
    // it), then the entries in scripts of up to ADD_BATCH: one command each, not one per task. All
    // go out at once: Redis runs one connection's commands in order, so a worker that reads a task
    // finds its function, and a new function's first task does not wait a round trip for it.
    const fnIds = items.filter((item) => item < 0).map((item) => -item);
    const entries = this.entries(items.filter((item) => item > 0 && this.unfinished.has(item)));
    try {
      const sends: Array<Promise<unknown>> = [];
      if (fnIds.length > 0) {
        sends.push(this.client.hset(this.keys.fns, ...fnIds.flatMap((id) => [fnField(id), this.fns.get(id)!])));
      }
      for (let i = 0; i < entries.length; i += ADD_BATCH) sends.push(this.add(entries.slice(i, i + ADD_BATCH)));
      // The commands above are written by now (no auto-pipelining); the read of the results
      // (BLMPOP, on the reader) goes out after them. Started with the tasks, it went first, and a
      // lone task (a round trip) reached Redis behind its system call and Redis's wake-up for it.
      this.startReading();
      await Promise.all(sends);
    } catch (error) {
      this.fail(error as Error);
    }
  }

  /** The stream cannot be used (Redis unreachable from the start, a command refused): the pool's
   * unfinished tasks fail with the error, and nothing is read or held open for them any more. */
  private fail(error: Error): void {
    if (this.closed) return;
    this.unfinished.clear();
    this.entryTasks.clear();
    this.maybeStopReading();
    this.handler.onFatal(error);
  }

  /**
   * The stream entries for tasks sent together: packs of the packable ones (so that a map of many
   * small tasks costs Redis and the workers one entry per pack, not per task), each at most
   * PACK_MAX tasks and 1/PACK_SHARE of them (several workers share a map); the others alone.
   */
  private entries(seqs: number[]): Array<{ seqs: number[]; field: string; value: Buffer }> {
    const packable = seqs.filter((seq) => this.unfinished.get(seq)!.packable);
    const size = Math.max(1, Math.min(PACK_MAX, Math.floor(packable.length / PACK_SHARE)));
    const out: Array<{ seqs: number[]; field: string; value: Buffer }> = [];
    let pack: number[] = [];
    let bytes = 0;
    const close = (): void => {
      const tasks = pack.map((seq) => this.unfinished.get(seq)!.task);
      if (pack.length === 1) out.push({ seqs: pack, field: TASK_FIELD, value: tasks[0]! });
      else if (pack.length > 1) out.push({ seqs: pack, field: PACK_FIELD, value: packTasks(tasks) });
      pack = [];
      bytes = 0;
    };
    for (const seq of seqs) {
      const { task, packable: fits } = this.unfinished.get(seq)!;
      if (!fits || size === 1) {
        out.push({ seqs: [seq], field: TASK_FIELD, value: task });
        continue;
      }
      if (pack.length > 0 && bytes + task.length > PACK_MAX_BYTES) close();
      pack.push(seq);
      bytes += task.length;
      if (pack.length === size) close();
    }
    close();
    return out;
  }

  /** Adds entries to the stream; if Redis lost it (restarted), opens it again and resends. */
  private async add(entries: Array<{ seqs: number[]; field: string; value: Buffer }>): Promise<void> {
    const ids = (await ADD_TASKS.run(this.client!, [this.keys.tasks], entries.flatMap((e) => [e.field, e.value]))) as string[] | null;
    if (!ids) {
      void this.recover();
      return;
    }
    entries.forEach((entry, i) => {
      const id = ids[i]!;
      let live = 0;
      for (const seq of entry.seqs) {
        const task = this.unfinished.get(seq);
        if (task) {
          task.id = id;
          live++;
        }
      }
      if (live > 0) this.entryTasks.set(id, live);
    });
  }

  /** A task is no longer wanted (finished, or dropped): its entry's id once no task of it is. */
  private settle(task: Unfinished): string | null {
    if (task.id === null) return null;
    const live = (this.entryTasks.get(task.id) ?? 1) - 1;
    if (live > 0) {
      this.entryTasks.set(task.id, live);
      return null;
    }
    this.entryTasks.delete(task.id);
    return task.id;
  }

  /** Opens the stream again if Redis lost it, and sends again every task not finished. */
  private recover(): Promise<void> {
    if (this.closed || !this.client) return Promise.resolve();
    this.recovering ??= (async () => {
      try {
        if ((await this.client!.exists(this.keys.tasks)) === 1) {
          // The stream is there: only tasks whose XADD found none need sending.
          for (const [seq, task] of this.unfinished) if (task.id === null) this.outbox.push(seq);
        } else {
          getLogger().warning('Redis lost pool %s (restarted?): opening it again and resending %d tasks', this.keys.id, this.unfinished.size);
          await this.openStream();
          this.entryTasks.clear();
          for (const [seq, task] of this.unfinished) {
            task.id = null;
            this.outbox.push(seq);
          }
        }
      } finally {
        this.recovering = null;
      }
      this.scheduleFlush();
    })();
    return this.recovering;
  }

  /** Tasks no longer wanted (a cancelled call): removed from the stream if no worker took them yet. */
  drop(seqs: number[]): void {
    const ids: string[] = [];
    for (const seq of seqs) {
      const task = this.unfinished.get(seq);
      if (!task) continue;
      this.unfinished.delete(seq);
      const id = this.settle(task);
      if (id) ids.push(id);
    }
    if (ids.length > 0 && this.client) void this.client.xdel(this.keys.tasks, ...ids).catch(() => {});
    this.maybeStopReading();
  }

  /** Publishes on a channel (a worker's, for the processes it runs). */
  publish(channel: string, message: string): void {
    void this.ready.then(() => this.client!.publish(channel, message)).catch(() => {});
  }

  get pending(): number {
    return this.unfinished.size;
  }

  // ---- results ------------------------------------------------------------------------------

  private startReading(): void {
    if (this.reading || this.closed) return;
    this.reading = true;
    this.release ??= keepAlive();
    void this.readResults();
  }

  private maybeStopReading(): void {
    if (this.unfinished.size === 0 && this.release) {
      this.release();
      this.release = null;
    }
  }

  private async readResults(): Promise<void> {
    try {
      await this.ready;
      while (!this.closed && this.unfinished.size > 0) {
        const reply = (await this.reader!.blmpopBuffer(RESULT_WAIT, 1, this.keys.results, 'LEFT', 'COUNT', RESULTS_PER_POP)) as
          | [Buffer, Buffer[]]
          | null;
        if (!reply || this.closed) continue;
        for (const batch of reply[1]) {
          const { consumer, records } = readResults(batch);
          for (const record of records) {
            // A later result of a finished task is dropped; STARTED is news about an unfinished one.
            const task = this.unfinished.get(record.seq);
            if (!task) continue;
            if (record.status !== STARTED) {
              this.unfinished.delete(record.seq);
              this.settle(task);
            }
            this.handler.onResult(record, consumer);
          }
        }
        this.maybeStopReading();
      }
    } catch (error) {
      // (Restarted by the finally below, a loop whose `ready` had failed would spin for ever.)
      this.fail(error as Error);
    } finally {
      this.reading = false;
      this.maybeStopReading();
      if (!this.closed && this.unfinished.size > 0) this.startReading();
    }
  }

  // ---- closing ------------------------------------------------------------------------------

  /** Deletes the pool's keys (workers drop what they still run for it) and disconnects. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    unclosed.delete(this);
    this.unfinished.clear();
    this.entryTasks.clear();
    this.maybeStopReading();
    this.keeper?.stop();
    try {
      await whileAlive(this.ready);
    } catch {
      return; // never connected: nothing to delete
    }
    try {
      await whileAlive(CLOSE_POOL.run(this.client!, [this.keys.tasks, this.keys.results, this.keys.fns, POOLS], [this.keys.id]));
    } finally {
      disconnect(this.client);
      disconnect(this.reader);
    }
  }
}
