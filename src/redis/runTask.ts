/**
 * What runs inside the local pool processes of a worker program: tasks from the stream, from the
 * bytes the producer wrote to the bytes that go back, decoded and encoded once, here. The function
 * and the arguments may only refer to the modules the worker allows (naming.ts). Each process
 * writes its results to Redis itself (with the acknowledgement of their entries, in one REPLY):
 * a round trip then wakes the producer, Redis, the worker program, this process, Redis and the
 * producer, and not the worker program a second time on the way back.
 */
import * as v8 from 'node:v8';
import { PicklingError } from '../errors.js';
import { Process, type ProcessIdentity } from '../process.js';
import { run, unsendable } from '../poolWorker.js';
import { dumps, rebuild, type RebuildContext } from '../reduction.js';
import { task } from '../tasks.js';
import { connect, whileAlive, type RedisClient } from './client.js';
import { decodeRemote, ModuleAllowList, remoteReduceContext, type AllowListState } from './naming.js';
import { FAILED, OK, poolKeys, readTask, RECORD_HEADER, ResultBatch, unpackTasks, writeRecordHeader, writeResults } from './stream.js';

type Fn = (...args: unknown[]) => unknown;

let context: RebuildContext | null = null;
let writer: ResultWriter | null = null;
const functions = new Map<string, Promise<Fn>>();
/** Each pool's initializer runs once per process, before its first task; a failed one fails them all. */
const initialized = new Map<string, Promise<void>>();

function rebuildContext(): RebuildContext {
  if (!context) throw new PicklingError('redis task runner used before setupTaskRunner()');
  return context;
}

function setup(state: AllowListState): void {
  context = { target: 'process', handles: [], remote: new ModuleAllowList(state) };
}

/**
 * This process's connection for its results, opened when the process starts (its first result
 * does not wait for a connection), and again after an attempt failed (Redis was unreachable then).
 */
class ResultWriter {
  private client: Promise<RedisClient> | null = null;

  constructor(
    private readonly url: string,
    /** The worker program's consumer name: the producer counts workers by it. */
    private readonly consumer: string,
  ) {
    void this.connection().catch(() => {}); // (reported by the first write that needs it)
  }

  private connection(): Promise<RedisClient> {
    if (!this.client) {
      const client = connect(this.url, { role: 'worker-process', autoPipelining: false });
      this.client = client;
      client.catch(() => {
        if (this.client === client) this.client = null;
      });
    }
    return this.client;
  }

  /** Writes result records and acknowledges `ids`; the error's message if that failed (the entries
   * then stay pending, and are run again after claimIdle). */
  async write(pool: string, records: Buffer[], ids: string[]): Promise<string | null> {
    try {
      const batch = new ResultBatch(this.consumer);
      for (const record of records) batch.addRecords(record, 1);
      // (The sockets do not keep a process alive: this wait must, or a process's loop, idle but
      // for it, would drain and end the process.)
      await whileAlive(this.connection().then((client) => writeResults(client, poolKeys(pool), batch.encode(), ids)));
      return null;
    } catch (error) {
      return (error as Error).message;
    }
  }
}

/** The local pool's initializer: which modules this worker program allows, where its Redis is, and
 * the worker's name. */
function setupRunner(state: AllowListState, url: string, consumer: string): void {
  setup(state);
  writer = new ResultWriter(url, consumer);
}

export const setupTaskRunner = task(setupRunner, { module: import.meta.url });

function decode(bytes: Uint8Array): unknown {
  return decodeRemote(bytes, rebuildContext());
}

/** A task's result record (stream.ts's [seq][status][length][body]), encoded once, in place. */
function resultOf(seq: number, ok: boolean, value: unknown): Buffer {
  let out: Buffer;
  let status = ok ? OK : FAILED;
  try {
    out = dumps(value, remoteReduceContext(), undefined, RECORD_HEADER);
  } catch (error) {
    out = dumps(unsendable(error, ok), remoteReduceContext(), undefined, RECORD_HEADER);
    status = FAILED;
  }
  return writeRecordHeader(out, seq, status);
}

function initialize(pool: string, init: [fn: Uint8Array, args: Uint8Array] | null): Promise<void> | null {
  if (!init) return null;
  let ready = initialized.get(pool);
  if (!ready) {
    ready = (async () => {
      const [initializer, initargs] = await Promise.all([decode(init[0]), decode(init[1])]);
      await (initializer as Fn)(...(initargs as unknown[]));
    })();
    initialized.set(pool, ready);
  }
  return ready;
}

function functionOf(pool: string, fnId: number, fnBytes: Uint8Array): Promise<Fn> {
  const key = `${pool}:${fnId}`;
  let fn = functions.get(key);
  if (!fn) functions.set(key, (fn = Promise.resolve(decode(fnBytes) as Fn)));
  return fn;
}

/** Runs one task (header and body, stream.ts) and returns its result record. */
async function runOne(pool: string, fns: Record<number, Uint8Array>, init: [Uint8Array, Uint8Array] | null, task: Buffer): Promise<Buffer> {
  const { seq, fnId, mode, body } = readTask(task);
  try {
    const ready = initialize(pool, init);
    if (ready) await ready;
    const fn = await functionOf(pool, fnId, fns[fnId]!);
    const args = decode(body);
    return resultOf(seq, true, await run(fn, mode, args instanceof Promise ? await args : args));
  } catch (error) {
    return resultOf(seq, false, error);
  }
}

/** What a local call reports to its worker program: how many of its tasks failed, and why its
 * results could not be written (null: they were). */
export type CallOutcome = [failed: number, writeError: string | null];

/**
 * Runs tasks of one pool (header and body each, stream.ts) one after another, writes their results
 * and acknowledges the entries `ids` (the worker passes none when the entry holds more tasks than
 * these, and acknowledges it once all have run).
 */
async function runAndReply(
  pool: string,
  fns: Record<number, Uint8Array>,
  init: [fn: Uint8Array, args: Uint8Array] | null,
  tasks: Buffer[],
  ids: string[],
): Promise<CallOutcome> {
  if (!writer) throw new PicklingError('redis task runner used before setupTaskRunner()');
  const records: Buffer[] = [];
  let failed = 0;
  for (const one of tasks) {
    const record = await runOne(pool, fns, init, one);
    if (record[4] === FAILED) failed++;
    records.push(record);
  }
  return [failed, await writer.write(pool, records, ids)];
}

const asBuffer = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);

function runTaskAlone(pool: string, fns: Record<number, Uint8Array>, init: [Uint8Array, Uint8Array] | null, one: Uint8Array, ids: string[]): Promise<CallOutcome> {
  return runAndReply(pool, fns, init, [asBuffer(one)], ids);
}

/** The local pool's function for one task of the stream. */
export const runStreamTask = task(runTaskAlone, { module: import.meta.url });

function runTasks(pool: string, fns: Record<number, Uint8Array>, init: [Uint8Array, Uint8Array] | null, pack: Uint8Array, ids: string[]): Promise<CallOutcome> {
  return runAndReply(pool, fns, init, unpackTasks(asBuffer(pack)), ids);
}

/** The local pool's function for several tasks of one pool (a pack, stream.ts) in one call. */
export const runStreamTasks = task(runTasks, { module: import.meta.url });

interface ProcessPayload {
  me: ProcessIdentity;
  classRef: (abstract new () => Process) | null;
  fields: Record<string, unknown>;
  target: Fn | null;
  args: unknown[];
}

/** Rebuilds the process object sent by the redis backend (process.ts) and runs it, as a local
 * child runs its own (a Process subclass runs its `run()`). */
async function runProcess(state: AllowListState, body: Uint8Array): Promise<unknown> {
  setup(state);
  const { me, classRef, fields, target, args } = (await rebuild(v8.deserialize(body), rebuildContext())) as ProcessPayload;
  const instance = Object.assign(Object.create((classRef ?? Process).prototype) as Process, fields);
  Process.fromPayload(instance, me, target, args);
  return instance.run();
}

/** The target of a local Process that runs a redis Process's target (its exit code goes back). */
export const runStreamProcess = task(runProcess, { module: import.meta.url });
