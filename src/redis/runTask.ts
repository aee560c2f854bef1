/**
 * What runs inside the local pool processes of a worker program: one task from the stream, from
 * the bytes the producer wrote to the bytes that go back, decoded and encoded once, here. The
 * function and the arguments may only refer to the modules the worker allows (naming.ts).
 */
import * as v8 from 'node:v8';
import { PicklingError } from '../errors.js';
import { Process, type ProcessIdentity } from '../process.js';
import { run, unsendable } from '../poolWorker.js';
import { dumps, rebuild, type RebuildContext } from '../reduction.js';
import { task } from '../tasks.js';
import { decodeRemote, ModuleAllowList, remoteReduceContext, type AllowListState } from './naming.js';
import { FAILED, OK, readTask, RECORD_HEADER, unpackTasks, writeRecordHeader } from './stream.js';

type Fn = (...args: unknown[]) => unknown;

let context: RebuildContext | null = null;
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

/** The local pool's initializer: which modules this worker program allows. */
export const setupTaskRunner = task(setup, { module: import.meta.url });

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

/** A Buffer as a plain Uint8Array (the local pool moves those without re-encoding). */
function plain(bytes: Buffer): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}

async function runTaskAlone(pool: string, fns: Record<number, Uint8Array>, init: [Uint8Array, Uint8Array] | null, one: Uint8Array): Promise<Uint8Array> {
  return plain(await runOne(pool, fns, init, Buffer.from(one.buffer, one.byteOffset, one.length)));
}

/** The local pool's function: runs one task of the stream and returns its result record. */
export const runStreamTask = task(runTaskAlone, { module: import.meta.url });

/** Several tasks of one pool in one local call (a pack, stream.ts), one after another: their
 * result records, concatenated. */
async function runTasks(
  pool: string,
  fns: Record<number, Uint8Array>,
  init: [fn: Uint8Array, args: Uint8Array] | null,
  pack: Uint8Array,
): Promise<Uint8Array> {
  const records: Buffer[] = [];
  for (const one of unpackTasks(Buffer.from(pack.buffer, pack.byteOffset, pack.length))) records.push(await runOne(pool, fns, init, one));
  return plain(Buffer.concat(records));
}

/** Several tasks of one pool in one local call, one after another. */
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
