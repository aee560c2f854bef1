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
import { FAILED, OK } from './stream.js';

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

async function decode(bytes: Uint8Array): Promise<unknown> {
  return decodeRemote(bytes, rebuildContext());
}

/** `[status u8][dumps(value)]`, a plain Uint8Array (the pool moves those without re-encoding). */
function outcome(ok: boolean, value: unknown): Uint8Array {
  let out: Buffer;
  try {
    out = dumps(value, remoteReduceContext(), undefined, 1);
    out[0] = ok ? OK : FAILED;
  } catch (error) {
    out = dumps(unsendable(error, ok), remoteReduceContext(), undefined, 1);
    out[0] = FAILED;
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

async function runTask(
  pool: string,
  fnId: number,
  fnBytes: Uint8Array,
  init: [fn: Uint8Array, args: Uint8Array] | null,
  mode: number,
  body: Uint8Array,
): Promise<Uint8Array> {
  try {
    if (init) {
      let ready = initialized.get(pool);
      if (!ready) {
        ready = (async () => {
          const [initializer, initargs] = await Promise.all([decode(init[0]), decode(init[1])]);
          await (initializer as Fn)(...(initargs as unknown[]));
        })();
        initialized.set(pool, ready);
      }
      await ready;
    }
    const key = `${pool}:${fnId}`;
    let fn = functions.get(key);
    if (!fn) functions.set(key, (fn = decode(fnBytes) as Promise<Fn>));
    const [f, args] = await Promise.all([fn, decode(body)]);
    return outcome(true, await run(f, mode, args));
  } catch (error) {
    return outcome(false, error);
  }
}

/** The local pool's function: runs one task of the stream and returns its encoded outcome. */
export const runStreamTask = task(runTask, { module: import.meta.url });

async function runTasks(
  pool: string,
  fns: Record<number, Uint8Array>,
  init: [fn: Uint8Array, args: Uint8Array] | null,
  tasks: Array<[fnId: number, mode: number, body: Uint8Array]>,
): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const [fnId, mode, body] of tasks) out.push(await runTask(pool, fnId, fns[fnId]!, init, mode, body));
  return out;
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
