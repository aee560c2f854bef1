/**
 * The worker program (`multiprocessing-ts worker --redis URL --import ./dist/tasks.js`): one per
 * machine. It pulls tasks from the streams of every live pool into a local Pool of its own (which
 * supervises the processes: a crash or a timeout fails that task alone), writes results back,
 * keeps its claim on what it runs, takes over the tasks of workers that died, one at a time, and
 * shows what it runs. SIGTERM stops it cleanly: it stops pulling and finishes what it holds.
 */
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { getContext } from '../context.js';
import type { Process } from '../process.js';
import { Pool, type BasePool } from '../pool.js';
import { SpinBackoff } from '../futex.js';
import { dumps, type RebuildContext } from '../reduction.js';
import { refOf } from '../tasks.js';
import { MAP_CHUNK, STARMAP_CHUNK } from '../poolChannel.js';
import { connect, disconnect, whileAlive, type RedisClient } from './client.js';
import { processTag, redactUrl } from './settings.js';
import { decodeRemote, ModuleAllowList, remoteReduceContext } from './naming.js';
import { runStreamProcess, runStreamTask, runStreamTasks, setupTaskRunner } from './runTask.js';
import {
  BOUNCE, DELIVERIES_FIELD, EXITED, FAILED, fnField, GROUP, INIT_FIELD, INITARGS_FIELD, MAX_REPLY_IDS, PACK_FIELD, packTasks,
  poolKeys, POOLS, PROCESS, readTask, RECLAIM, RECORD_HEADER, REFRESH_CLAIMS, resultRecord, ResultBatch, SETTINGS_FIELD,
  STARTED, unpackTasks, workerChannel, writeRecordHeader, writeResults, type PoolKeys, type PoolSettings,
} from './stream.js';

export interface WorkerOptions {
  url: string;
  /** Modules to import (paths as given on the command line); tasks may come only from these and
   * the modules they load. */
  imports: string[];
  processes: number;
  context: 'spawn' | 'forkserver' | 'thread';
  allowSource: boolean;
  /** Where the worker says what it does (default: stdout). */
  log?: (line: string) => void;
}

/** An entry as read from a stream: one task, or a pack of them. */
interface Entry {
  id: string;
  /** Each task's header and body (views into the reply). */
  tasks: Buffer[];
  /** The pack as read (the tasks, ready for a local call), or null for a single task. */
  pack: Buffer | null;
  /** Deliveries before this one: a task split out of a taken-over pack (RECLAIM), to hand back. */
  prior: number;
}

/**
 * A chunk of a map or starmap (its mode byte, see stream.ts) of at least this many bytes is taken
 * to hold many items: a large share of its map (a map of 20,000 numbers on Pool(2) is 8 chunks of
 * about 20 KB). A heuristic: the entry does not say how many items it holds, an imap with
 * chunksize 1 sends chunks of one item, and one item this large also counts (its tasks are then
 * read two per local process at a time).
 */
const LARGE_CHUNK_BYTES = 8 * 1024;

function isLargeChunk(task: Buffer): boolean {
  const mode = task.readUInt8(0);
  return (mode === MAP_CHUNK || mode === STARMAP_CHUNK) && task.byteLength >= LARGE_CHUNK_BYTES;
}

function readEntry(id: Buffer, fields: Buffer[]): Entry {
  const value = fields[1]!;
  const pack = fields[0]!.toString() === PACK_FIELD ? value : null;
  const prior = fields[2]?.toString() === DELIVERIES_FIELD ? Number(fields[3]!.toString()) : 0;
  return { id: id.toString(), tasks: pack ? unpackTasks(pack) : [value], pack, prior };
}

/** A local call's functions (by id) and the pool's initializer. */
type CallContext = [fns: Record<number, Uint8Array>, init: [Uint8Array, Uint8Array] | null];

/** What this worker knows of one pool. */
class PoolState {
  /** Entries it holds (pending with it), and how many tasks each. */
  readonly running = new Map<string, number>();
  readonly functions = new Map<number, Promise<Uint8Array>>();
  /** The functions fetched so far (a task whose functions are all here goes out without a wait). */
  readonly fetched = new Map<number, Uint8Array>();
  init: Promise<[Uint8Array, Uint8Array] | null> | null = null;
  /** The initializer once fetched (undefined: not yet). */
  initFetched: [Uint8Array, Uint8Array] | null | undefined = undefined;
  batch: ResultBatch | null = null;
  batchIds: string[] = [];
  /** The REPLYs under way (shutDown waits for them). */
  writing: Promise<void> = Promise.resolve();
  readonly processes = new Map<number, Process>();
  timers: NodeJS.Timeout[] = [];
  ran = 0;
  failed = 0;
  constructor(
    readonly keys: PoolKeys,
    readonly settings: PoolSettings,
  ) {}
}

/** How much work a worker holds: enough for ~WINDOW_MS of its processes' time, at least one each. */
const WINDOW_MS = 20;
const MAX_PER_PROCESS = 256;
/** A blocked read returns at least this often (ms), to look at the pools again. */
const BLOCK_MS = 1000;
/** How long (ms) this program spins for the result of a task that its local pool runs alone. */
const LONE_RESULT_SPIN_MS = 0.4;
const SUMMARY_EVERY_MS = 5000;

export class StreamWorker {
  readonly consumer = processTag();
  private client!: RedisClient;
  private reader!: RedisClient;
  private subscriber!: RedisClient;
  private readerId = 0;
  private localPool!: BasePool;
  private allowList!: ModuleAllowList;
  private readonly rebuildContext = (): RebuildContext => ({ target: 'process', handles: [], remote: this.allowList });
  private readonly pools = new Map<string, PoolState>();
  private readonly byStream = new Map<string, PoolState>();
  private running = 0;
  /** Average ms a task keeps one local process busy (the window follows it). */
  private taskMs = -1;
  /** Tasks per entry in the last read (packs hold several): reads ask for the window's worth. */
  private tasksPerEntry = 1;
  /** The last read was of large map chunks only: reads ask for two entries per local process. */
  private readingChunks = false;
  /** Entries of large map chunks held here: while there are any, the window is two per process. */
  private readonly largeChunks = new Set<string>();
  /** While a taken-over task runs alone, nothing else is pulled. */
  private exclusive = false;
  private poolsChanged = true;
  private blocked = false;
  private stopping = false;
  /** Who waits for something to change (the pull loop, a take-over waiting for quiet). */
  private sleepers: Array<() => void> = [];
  private flushScheduled = false;
  private readonly log: (line: string) => void;
  private readonly done: Promise<void>;
  private summaryTimer: NodeJS.Timeout | null = null;
  private takenOver = 0;
  /** `./dist/tasks.js:double` for the exports of the imported modules, to show what runs. */
  private readonly exportNames = new Map<unknown, string>();

  private constructor(private readonly options: WorkerOptions) {
    this.log = options.log ?? ((line) => process.stdout.write(`${line}\n`));
    this.done = this.main();
  }

  /** Starts a worker; `finished` settles when it has stopped. */
  static start(options: WorkerOptions): StreamWorker {
    return new StreamWorker(options);
  }

  get finished(): Promise<void> {
    return this.done;
  }

  private async main(): Promise<void> {
    await whileAlive(this.serve());
  }

  private async serve(): Promise<void> {
    const { url, imports, processes, context, allowSource } = this.options;
    for (const file of imports) {
      const exports = (await import(pathToFileURL(resolvePath(file)).href)) as Record<string, unknown>;
      for (const [name, value] of Object.entries(exports)) if (typeof value === 'function') this.exportNames.set(value, `${file}:${name}`);
    }
    this.allowList = ModuleAllowList.ofLoadedModules(imports, allowSource);
    this.client = await connect(url, { role: 'worker', autoPipelining: false });
    this.reader = await connect(url, { role: 'worker-reads', blocking: true });
    this.subscriber = await connect(url, { role: 'worker-pools', blocking: true });
    this.readerId = Number(await this.reader.client('ID'));
    this.reader.on('ready', () => void this.reader.client('ID').then((id) => (this.readerId = Number(id))));
    await this.subscriber.subscribe(POOLS, workerChannel(this.consumer));
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel === POOLS) this.onPoolsChanged();
      else this.onSignal(message);
    });
    this.client.on('ready', () => this.onPoolsChanged()); // after a reconnection: Redis may have restarted
    this.localPool = new (getContext(context).Pool)(processes, {
      initializer: setupTaskRunner,
      initargs: [this.allowList.state],
    });
    // A task that comes alone wakes a sleeping local process (100-200 µs on a virtual machine):
    // its result is waited for in a spin that outlasts that wake-up, not through a second wake-up,
    // this program's own (docs/distributed.md, "Round trip").
    if (this.localPool instanceof Pool) this.localPool.loneResultSpin = { ms: LONE_RESULT_SPIN_MS, backoff: new SpinBackoff() };
    const modules = this.allowList.state.modules.map((m) => m.path).join(', ') || 'none';
    this.log(
      `worker ${this.consumer}: ${redactUrl(url)}, ${processes} ${context} processes, tasks from: ${modules}` +
        (allowSource ? ' (and functions sent as source)' : ''),
    );
    this.summaryTimer = setInterval(() => this.summarise(), SUMMARY_EVERY_MS);
    this.summaryTimer.unref();
    const pollPools = setInterval(() => this.onPoolsChanged(), BLOCK_MS * 2);
    try {
      await this.pull();
    } finally {
      clearInterval(pollPools);
      await this.shutDown();
    }
  }

  // ---- pools --------------------------------------------------------------------------------

  private onPoolsChanged(): void {
    this.poolsChanged = true;
    this.unblock();
  }

  /** Reads the registry: starts serving new pools, forgets pools that are gone. */
  private async refreshPools(): Promise<void> {
    this.poolsChanged = false;
    const ids = new Set(await this.client.smembers(POOLS));
    for (const [id, pool] of this.pools) if (!ids.has(id)) this.forgetPool(pool);
    const fresh = [...ids].filter((id) => !this.pools.has(id));
    if (fresh.length === 0) return;
    const pipeline = this.client.pipeline();
    for (const id of fresh) pipeline.hget(poolKeys(id).fns, SETTINGS_FIELD).exists(poolKeys(id).tasks);
    const replies = (await pipeline.exec()) ?? [];
    fresh.forEach((id, i) => {
      const settings = replies[2 * i]?.[1] as string | null;
      const exists = replies[2 * i + 1]?.[1] as number;
      if (exists !== 1) {
        // Its producer died and its keys expired: take it off the registry.
        void this.client.srem(POOLS, id);
        return;
      }
      if (settings) this.addPool(new PoolState(poolKeys(id), JSON.parse(settings) as PoolSettings));
    });
  }

  private addPool(pool: PoolState): void {
    this.pools.set(pool.keys.id, pool);
    this.byStream.set(pool.keys.tasks, pool);
    const { claimIdle } = pool.settings;
    // Claims are refreshed three times per claimIdle, so a live worker never looks idle.
    const refresh = setInterval(() => void this.refreshClaims(pool), (claimIdle * 1000) / 3);
    const reclaim = setInterval(() => void this.reclaim(pool), Math.max(50, (claimIdle * 1000) / 2));
    refresh.unref();
    reclaim.unref();
    pool.timers.push(refresh, reclaim);
    this.log(`pool ${pool.keys.id}: serving it`);
  }

  private forgetPool(pool: PoolState): void {
    for (const t of pool.timers) clearInterval(t);
    this.pools.delete(pool.keys.id);
    this.byStream.delete(pool.keys.tasks);
    for (const id of pool.running.keys()) this.largeChunks.delete(id);
    for (const p of pool.processes.values()) if (p.exitcode === null) p.terminate();
    if (pool.ran > 0) this.log(`pool ${pool.keys.id}: gone (ran ${pool.ran} tasks here, ${pool.failed} failed)`);
  }

  // ---- pulling ------------------------------------------------------------------------------

  private window(): number {
    const { processes } = this.options;
    // A large map chunk is already a good share of a map (Python's chunksize gives each worker
    // about four): a worker that held a window's worth of them would leave the others idle.
    if (this.taskMs < 0 || this.largeChunks.size > 0) return 2 * processes;
    const perProcess = Math.min(MAX_PER_PROCESS, Math.ceil(WINDOW_MS / Math.max(this.taskMs, 0.001)));
    return processes * Math.max(1, perProcess);
  }

  /**
   * Learns how long a task keeps a process busy. While more tasks are here than processes, all of
   * them are busy and the time between two results is a task's time divided among them; otherwise
   * a task's time in the local pool is (a little more than) its own.
   */
  private learn(latencyMs: number, tasks: number): void {
    const { processes } = this.options;
    const now = performance.now();
    const saturated = this.running > processes && this.lastResultAt > 0;
    const ms = (saturated ? (now - this.lastResultAt) * processes : latencyMs) / tasks;
    this.lastResultAt = now;
    this.taskMs = this.taskMs < 0 ? ms : this.taskMs * 0.8 + ms * 0.2;
  }
  private lastResultAt = 0;

  private async pull(): Promise<void> {
    let full = false;
    while (!this.stopping) {
      if (this.poolsChanged) {
        try {
          await this.refreshPools();
        } catch (error) {
          if (this.stopping) break;
          this.log(`cannot read the pools: ${(error as Error).message}`);
          await this.sleep();
          continue;
        }
      }
      const window = this.window();
      const room = this.exclusive ? 0 : window - this.running;
      // Reads go in batches: room for half a window, or nothing left to run.
      if (room <= 0 || (room < window / 2 && this.running > 0) || this.pools.size === 0) {
        await this.sleep();
        continue;
      }
      const streams = [...this.byStream.keys()];
      // A read that waits for work, or that follows one of large map chunks, takes two entries per
      // local process: if it brings large chunks, the window shrinks to two per process while they
      // are held (largeChunks), before this worker has taken a whole small map; if not, it was full
      // and the next read, at once, takes the rest of the window.
      const cap = full && !this.readingChunks ? Infinity : 2 * this.options.processes;
      const count = Math.max(1, Math.min(cap, Math.floor(room / this.tasksPerEntry)));
      let reply: Array<[Buffer, Array<[Buffer, Buffer[]]>]> | null;
      try {
        this.blocked = !full;
        const block = full ? [] : ['BLOCK', BLOCK_MS];
        // (ioredis's overloads do not let COUNT and BLOCK vary: the command is spelt out.)
        const args = ['GROUP', GROUP, this.consumer, 'COUNT', count, ...block, 'STREAMS', ...streams, ...streams.map(() => '>')];
        const read = this.reader.xreadgroupBuffer.bind(this.reader) as (...a: unknown[]) => Promise<unknown>;
        reply = (await read(...args)) as typeof reply;
      } catch (error) {
        // NOGROUP: a pool went away (closed, expired, Redis restarted) while we read its stream.
        if (!this.stopping && !/NOGROUP|UNBLOCKED/.test((error as Error).message)) {
          this.log(`read failed: ${(error as Error).message}`);
        }
        this.poolsChanged = true;
        continue;
      } finally {
        this.blocked = false;
      }
      let got = 0;
      let tasks = 0;
      let chunks = 0;
      for (const [stream, raw] of reply ?? []) {
        const pool = this.byStream.get(stream.toString());
        if (!pool) continue;
        const entries = raw.map(([id, fields]) => readEntry(id, fields));
        got += entries.length;
        for (const e of entries) {
          tasks += e.tasks.length;
          if (!e.pack && isLargeChunk(e.tasks[0]!)) {
            chunks++;
            this.largeChunks.add(e.id);
          }
        }
        void this.run(pool, entries);
      }
      // (The last read's, not an average: a map of chunks after one of packs is read a chunk at a
      // time until an average forgets the packs.)
      if (got > 0) {
        this.tasksPerEntry = tasks / got;
        this.readingChunks = chunks === got;
      }
      // (COUNT is per stream: several pools' streams may bring more.)
      full = got >= count;
      // The local calls go out first (they wait for promise turns), then the next read.
      if (got > 0) await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Waits until something changes: a result freed room, the pools changed, or a stop. */
  // Callers check their condition and sleep in one synchronous run, so no notify falls between.
  private sleep(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, BLOCK_MS).unref();
      this.sleepers.push(() => {
        clearTimeout(timer); // (a wait per read when busy: its timer would outlive it by a second)
        resolve();
      });
    });
  }

  private notify(): void {
    for (const wake of this.sleepers.splice(0)) wake();
  }

  /** Ends a blocked read now (CLIENT UNBLOCK), so that the pull loop sees what changed. */
  private unblock(): void {
    this.notify();
    if (this.blocked && this.readerId) void this.client.client('UNBLOCK', this.readerId).catch(() => {});
  }

  // ---- running a task -----------------------------------------------------------------------

  private fnBytes(pool: PoolState, fnId: number): Promise<Uint8Array> {
    let bytes = pool.functions.get(fnId);
    if (!bytes) {
      bytes = (async () => {
        const b = await this.client.hgetBuffer(pool.keys.fns, fnField(fnId));
        if (!b) throw new Error(`pool ${pool.keys.id} has no function ${fnId}`);
        // Resolved here first: a refused module or source function is reported once, by name.
        try {
          const fn = (await decodeRemote(b, this.rebuildContext())) as Function;
          this.log(`pool ${pool.keys.id}: runs ${this.exportNames.get(fn) ?? describe(fn)}`);
        } catch (error) {
          this.log(`pool ${pool.keys.id}: ${(error as Error).message}`);
        }
        pool.fetched.set(fnId, b);
        return b;
      })();
      pool.functions.set(fnId, bytes);
    }
    return bytes;
  }

  private initializer(pool: PoolState): Promise<[Uint8Array, Uint8Array] | null> {
    pool.init ??= this.client.hmgetBuffer(pool.keys.fns, INIT_FIELD, INITARGS_FIELD).then(([fn, args]) =>
      (pool.initFetched = fn && args ? [fn, args] : null));
    return pool.init;
  }

  /**
   * Runs the tasks of one read: a Process or a task with a timeout alone, the others in one local
   * call per process (each runs a pack of tasks: the local pool's per-call cost is paid once per
   * pack). Tasks split out of a taken-over pack are handed back (`bounce`). Resolves once their
   * results are on their way.
   */
  private async run(pool: PoolState, entries: Entry[]): Promise<void> {
    const bounced = entries.filter((e) => e.prior > 0);
    if (bounced.length > 0) void this.bounce(pool, bounced);
    const batchable: Entry[] = [];
    const runs: Array<Promise<void>> = [];
    let batchableTasks = 0;
    for (const e of entries) {
      if (e.prior > 0) continue;
      this.running += e.tasks.length;
      pool.running.set(e.id, e.tasks.length);
      const single = e.pack ? null : readTask(e.tasks[0]!);
      if (single?.mode === PROCESS) this.startProcess(pool, e.id, single.seq, single.body);
      else if (single && single.timeout !== null) runs.push(this.runAlone(pool, e, single.timeout));
      else {
        batchable.push(e);
        batchableTasks += e.tasks.length;
      }
    }
    // Whole entries per call (an entry is acknowledged once all its tasks have run), about the same
    // number of tasks for each local process.
    const size = Math.ceil(batchableTasks / this.options.processes);
    const calls: Entry[][] = [];
    let tasks = 0;
    for (const e of batchable) {
      if (calls.length === 0 || tasks + e.tasks.length > size) {
        calls.push([]);
        tasks = 0;
      }
      calls[calls.length - 1]!.push(e);
      tasks += e.tasks.length;
    }
    for (const call of calls) runs.push(this.runCall(pool, call));
    await Promise.all(runs);
  }

  /** Runs one task alone in the local pool (with its timeout, if any) and finishes its entry. */
  private async runAlone(pool: PoolState, e: Entry, timeout: number | null): Promise<void> {
    this.finish(pool, [e], 1, await this.runOne(pool, e.tasks[0]!, timeout));
  }

  /** One task in the local pool: its result record, or the local pool's verdict (the process died:
   * WorkerLostError; it ran out of time: TimeoutError) as its failure. */
  private async runOne(pool: PoolState, task: Buffer, timeout: number | null): Promise<Buffer> {
    try {
      const known = this.callContext(pool, [task]);
      const [fns, init] = known instanceof Promise ? await known : known;
      const startedAt = performance.now();
      const record = await this.localPool.apply(runStreamTask, [pool.keys.id, fns, init, task], { timeout });
      this.learn(performance.now() - startedAt, 1);
      return Buffer.from(record.buffer, record.byteOffset, record.length);
    } catch (error) {
      return encodeFailure(readTask(task).seq, error);
    }
  }

  /** The tasks of whole entries in one local call, one after another. */
  private async runCall(pool: PoolState, entries: Entry[]): Promise<void> {
    const tasks = entries.flatMap((e) => e.tasks);
    let records: Buffer;
    try {
      const known = this.callContext(pool, tasks);
      const [fns, init] = known instanceof Promise ? await known : known;
      const pack = entries.length === 1 && entries[0]!.pack ? entries[0]!.pack : packTasks(tasks);
      const startedAt = performance.now();
      const out = await this.localPool.apply(runStreamTasks, [pool.keys.id, fns, init, pack]);
      this.learn(performance.now() - startedAt, tasks.length);
      records = Buffer.from(out.buffer, out.byteOffset, out.length);
    } catch {
      // The local process died under the call: each task again alone, so that only a bad one fails.
      records = Buffer.concat(await Promise.all(tasks.map((t) => this.runOne(pool, t, null))));
    }
    this.finish(pool, entries, tasks.length, records);
  }

  /**
   * What a local call needs besides the tasks: the functions they use (by id) and the pool's
   * initializer. At once (no await) when this worker has them already, as it has for every task
   * but a pool's first: a round trip is then not held back by a turn of promises.
   */
  private callContext(pool: PoolState, tasks: Buffer[]): CallContext | Promise<CallContext> {
    const fns: Record<number, Uint8Array> = {};
    for (const t of tasks) {
      const fnId = t.readUInt32BE(5);
      const bytes = pool.fetched.get(fnId);
      if (!bytes) return this.fetchCallContext(pool, tasks);
      fns[fnId] = bytes;
    }
    return pool.initFetched === undefined ? this.fetchCallContext(pool, tasks) : [fns, pool.initFetched];
  }

  /** (The functions and the initializer are asked for together: a pool's first task waits for one
   * round trip to Redis, not one per function and one more for the initializer.) */
  private async fetchCallContext(pool: PoolState, tasks: Buffer[]): Promise<CallContext> {
    const fnIds = [...new Set(tasks.map((t) => t.readUInt32BE(5)))];
    const [bytes, init] = await Promise.all([Promise.all(fnIds.map((fnId) => this.fnBytes(pool, fnId))), this.initializer(pool)]);
    const fns: Record<number, Uint8Array> = {};
    fnIds.forEach((fnId, i) => (fns[fnId] = bytes[i]!));
    return [fns, init];
  }

  /** Results of whole entries: they go out, and the entries are acknowledged, in the next REPLY. */
  private finish(pool: PoolState, entries: Entry[], tasks: number, records: Buffer): void {
    let held = false;
    for (const e of entries) {
      const n = pool.running.get(e.id);
      if (n === undefined) continue;
      held = true;
      pool.running.delete(e.id);
      this.largeChunks.delete(e.id);
      this.running -= n;
      pool.batchIds.push(e.id);
    }
    if (!held) return;
    pool.ran += tasks;
    pool.failed += countFailed(records);
    pool.batch ??= new ResultBatch(this.consumer);
    pool.batch.addRecords(records, tasks);
    // Nothing else running: nothing to batch this result with, and a caller may be waiting for it
    // (a round trip), so the REPLY is written now, ahead of the next read that notify() may start.
    if (this.running === 0) void this.flush(pool);
    else this.scheduleFlush();
    this.notify();
  }

  /** Tasks split out of a taken-over pack: handed back as idle at once, for RECLAIM to give out one
   * at a time (their earlier deliveries count towards maxDeliveries). */
  private async bounce(pool: PoolState, entries: Entry[]): Promise<void> {
    const idle = Math.ceil(pool.settings.claimIdle * 1000);
    await BOUNCE.run(this.client, [pool.keys.tasks], [GROUP, this.consumer, idle, ...entries.map((e) => e.id)]).catch(() => {});
    void this.reclaim(pool);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      for (const pool of this.pools.values()) void this.flush(pool);
    });
  }

  /** Writes a pool's results and acknowledges their tasks, in one REPLY per batch. */
  private flush(pool: PoolState): Promise<void> {
    const batch = pool.batch;
    if (!batch) return pool.writing;
    const ids = pool.batchIds;
    pool.batch = null;
    pool.batchIds = [];
    const write = writeResults(this.client, pool.keys, batch.encode(), ids).catch((e: Error) => this.replyFailed(e));
    pool.writing = Promise.all([pool.writing, write]).then(() => {});
    return pool.writing;
  }

  private replyFailed(error: Error): void {
    // Not acknowledged: the tasks stay pending and another worker runs them again after claimIdle.
    this.log(`could not write results: ${error.message}`);
  }

  // ---- processes ----------------------------------------------------------------------------

  private startProcess(pool: PoolState, id: string, seq: number, body: Buffer): void {
    const p = new (getContext(this.options.context).Process)({
      target: runStreamProcess,
      args: [this.allowList.state, body],
    });
    p.start();
    pool.processes.set(seq, p);
    this.log(`pool ${pool.keys.id}: started process ${p.name} (pid ${p.pid})`);
    const started = new ResultBatch(this.consumer);
    started.add(seq, STARTED, Buffer.from(JSON.stringify({ pid: p.pid, worker: this.consumer })));
    // (Through REPLY, without acknowledging the entry: nothing is written for a pool that is gone.)
    void writeResults(this.client, pool.keys, started.encode(), []).catch(() => {});
    void p.join().then(() => {
      pool.processes.delete(seq);
      this.log(`pool ${pool.keys.id}: process ${p.name} exited with code ${p.exitcode}`);
      const exited = resultRecord(seq, EXITED, Buffer.from(JSON.stringify({ exitcode: p.exitcode })));
      this.finish(pool, [{ id, tasks: [], pack: null, prior: 0 }], 1, exited);
    });
  }

  /** A producer asked to stop one of its processes: `<pool id> <seq> terminate|kill|interrupt`. */
  private onSignal(message: string): void {
    const [poolId, seq, signal] = message.split(' ');
    const p = this.pools.get(poolId!)?.processes.get(Number(seq));
    if (p && p.exitcode === null && (signal === 'terminate' || signal === 'kill' || signal === 'interrupt')) p[signal]();
  }

  // ---- claims -------------------------------------------------------------------------------

  private async refreshClaims(pool: PoolState): Promise<void> {
    const ids = [...pool.running.keys()];
    for (let i = 0; i < ids.length; i += MAX_REPLY_IDS) {
      await REFRESH_CLAIMS.run(this.client, [pool.keys.tasks], [GROUP, this.consumer, ...ids.slice(i, i + MAX_REPLY_IDS)]).catch(() => {});
    }
  }

  private reclaiming = false;

  /**
   * Takes over the tasks of workers that stopped answering, one at a time, each running alone
   * here: if one of them kills its worker, only it is charged a delivery, not a batch around it.
   */
  private async reclaim(pool: PoolState): Promise<void> {
    if (this.reclaiming || this.stopping) return;
    this.reclaiming = true;
    try {
      const { claimIdle, maxDeliveries } = pool.settings;
      for (;;) {
        const claimed = (await RECLAIM.runBuffer(this.client, [pool.keys.tasks, pool.keys.results], [
          GROUP, this.consumer, Math.ceil(claimIdle * 1000), maxDeliveries,
        ])) as [Buffer, Buffer, number] | null;
        if (!claimed || this.stopping) break;
        const [id, task, deliveries] = claimed;
        this.takenOver++;
        this.log(`pool ${pool.keys.id}: took over a task of a worker that stopped answering (delivery ${deliveries})`);
        this.exclusive = true;
        // Hold the claim while what runs here finishes, then run the task alone.
        pool.running.set(id.toString(), 1);
        while (this.running > 0) await this.sleep();
        pool.running.delete(id.toString());
        await this.run(pool, [{ id: id.toString(), tasks: [task], pack: null, prior: 0 }]);
      }
    } catch (error) {
      if (!this.stopping) this.log(`taking over tasks failed: ${(error as Error).message}`);
    } finally {
      this.exclusive = false;
      this.reclaiming = false;
      this.notify();
    }
  }

  // ---- stopping -----------------------------------------------------------------------------

  /** Stops pulling, finishes and reports what it holds, then leaves. */
  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.log(`worker ${this.consumer}: stopping, finishing ${this.running} tasks`);
      this.unblock();
    }
    return this.done;
  }

  private async shutDown(): Promise<void> {
    while (this.running > 0) await this.sleep();
    await new Promise((resolve) => setImmediate(resolve)); // the last results' flush
    await Promise.all([...this.pools.values()].map((pool) => this.flush(pool)));
    for (const pool of this.pools.values()) {
      for (const t of pool.timers) clearInterval(t);
      await this.client.xgroup('DELCONSUMER', pool.keys.tasks, GROUP, this.consumer).catch(() => {});
    }
    if (this.summaryTimer) clearInterval(this.summaryTimer);
    this.summarise();
    this.localPool.close();
    await this.localPool.join();
    disconnect(this.client);
    disconnect(this.reader);
    disconnect(this.subscriber);
    this.log(`worker ${this.consumer}: stopped`);
  }

  private lastSummary = '';
  private summarise(): void {
    let ran = 0;
    let failed = 0;
    for (const pool of this.pools.values()) {
      ran += pool.ran;
      failed += pool.failed;
    }
    const line = `ran ${ran} tasks (${failed} failed, ${this.takenOver} taken over from other workers), running ${this.running}`;
    if (line !== this.lastSummary) this.log(line);
    this.lastSummary = line;
  }
}

function encodeFailure(seq: number, error: unknown): Buffer {
  return writeRecordHeader(dumps(error, remoteReduceContext(), undefined, RECORD_HEADER), seq, FAILED);
}

/** How many of the result records failed. */
function countFailed(records: Buffer): number {
  let failed = 0;
  for (let at = 0; at < records.length; at += RECORD_HEADER + records.readUInt32BE(at + 5)) {
    if (records[at + 4] === FAILED) failed++;
  }
  return failed;
}

/** A task that is not an export: its module and place; a function sent as source: its name. */
function describe(fn: Function): string {
  const ref = refOf(fn);
  if (!ref) return `function ${fn.name || '<anonymous>'} (sent as source)`;
  return `${ref.module}:${ref.name || ref.key}`;
}
