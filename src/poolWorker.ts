/**
 * A pool worker, the whole worker side in one file (CPython's pool.worker, piscina's worker.ts):
 * run the initializer, then read a task from the channel (`Tasks`), run it, reply (`Replies`),
 * until told to stop or until `maxtasksperchild` tasks are done.
 */
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type { BlockState } from './heap.js';
import { loads, newReduceContext, rebuild, reduce } from './reduction.js';
import { PicklingError } from './errors.js';
import {
  CALL, CANCELLED, Channel, DEFINE, decodeTask, FAILED, MAP_CHUNK, Notifier, OK, ownBuffer, PORT, PORT_THRESHOLD,
  resultFrame, STOP, TASK, transferables, type ChannelState, type PortMessage, type TaskMessage,
} from './poolChannel.js';
import { LENGTH_BYTES, NO_FRAME, type ByteRing } from './ring.js';
import { task } from './tasks.js';
import { runAsync, runSync } from './futex.js';

type Fn = (...args: unknown[]) => unknown;

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

async function settle(value: unknown): Promise<unknown> {
  return isThenable(value) ? await value : value;
}

/** Runs one task's body; a chunk's items run one after another, as Python's mapstar does. The
 * result comes at once when every call returns a plain value, else as a promise of it. */
export function run(fn: Fn, mode: number, args: unknown): unknown {
  if (mode === CALL) return fn(...(args as unknown[]));
  const items = args as unknown[];
  const out = new Array<unknown>(items.length);
  for (let i = 0; i < items.length; i++) {
    const r = callItem(fn, mode, items[i]);
    if (isThenable(r)) return finishChunk(fn, mode, items, out, i, r);
    out[i] = r;
  }
  return out;
}

function callItem(fn: Fn, mode: number, item: unknown): unknown {
  return mode === MAP_CHUNK ? fn(item) : fn(...(item as unknown[]));
}

/** The rest of a chunk, from the first item whose call returned a promise. */
async function finishChunk(fn: Fn, mode: number, items: unknown[], out: unknown[], from: number, pending: PromiseLike<unknown>): Promise<unknown[]> {
  out[from] = await pending;
  for (let i = from + 1; i < items.length; i++) {
    const r = callItem(fn, mode, items[i]);
    out[i] = isThenable(r) ? await r : r;
  }
  return out;
}

function encode(seq: number, ok: boolean, value: unknown): Buffer {
  try {
    return resultFrame(seq, ok ? OK : FAILED, value);
  } catch (error) {
    return resultFrame(seq, FAILED, unsendable(error, ok));
  }
}

/** Python's MaybeEncodingError: a task's result (or error) could not be sent back. */
export function unsendable(error: unknown, ok: boolean): PicklingError {
  return new PicklingError(
    `Error sending result: ${(error as Error).message}. The task's ${ok ? 'result' : 'error'} cannot be serialised.`,
  );
}

const threadCtx = { target: 'thread' as const, handles: [] };

type Outcome = [ok: boolean, value: unknown];

async function attempt(fn: () => unknown): Promise<Outcome> {
  try {
    return [true, await fn()];
  } catch (error) {
    return [false, error];
  }
}

/** A task's outcome: at once when its arguments and its result are plain values (a busy worker
 * then runs task after task without a trip through the microtask queue), else a promise of it. */
function perform(fn: Fn, call: Call): Outcome | Promise<Outcome> {
  try {
    const args = call.args();
    if (isThenable(args)) return attempt(async () => run(fn, call.mode, await args));
    const value = run(fn, call.mode, args);
    return isThenable(value) ? attempt(() => value) : [true, value];
  } catch (error) {
    return [false, error];
  }
}

/** The result of a task that came over the port by value, back the same way: its ArrayBuffers
 * moved back to the pool for `{ transfer: true }` (`transfer`), else copied by postMessage. */
function postResult(port: MessagePort, seq: number, ok: boolean, value: unknown, transfer: boolean): void {
  try {
    const { graph, changed } = reduce(value, newReduceContext('thread'), { structuredClone: true });
    port.postMessage({ seq, status: ok ? OK : FAILED, graph, changed }, ok && transfer ? transferables(graph) : []);
  } catch (error) {
    const why = new PicklingError(`Error sending result: ${(error as Error).message}`);
    const { graph } = reduce(why, newReduceContext('thread'));
    port.postMessage({ seq, status: FAILED, graph, changed: true });
  }
}

// Results are announced to the pool when the worker is about to idle, after a batch, or every
// millisecond, so a busy worker does not wake the pool for every tiny task.
const NOTIFY_EVERY = 32;
const NOTIFY_AFTER_MS = 1;
/** A busy worker lets queued microtasks run after this many tasks that returned at once. */
const MICROTASKS_EVERY = 32;
/** How long a worker that runs out of tasks blocks on its ring before it waits asynchronously. */
const IDLE_BLOCK_MS = 20;

/** A task to run: its arguments, decoded when asked, and, for one that came over the port by
 * value, how its result goes back the same way (`transfer`: its ArrayBuffers moved). */
interface Call {
  kind: typeof TASK;
  seq: number;
  fnId: number;
  mode: number;
  args(): unknown;
  byValue?: { transfer: boolean };
}
type Next = Call | Extract<TaskMessage, { kind: typeof DEFINE | typeof STOP }>;

/** Where the results go: the ring (announced to the pool in batches), or the port for large
 * frames and moved results. */
class Replies {
  private unannounced = 0;
  private lastNotify = performance.now();

  constructor(
    private readonly results: ByteRing,
    private readonly notifier: Notifier,
    private readonly port: MessagePort | null,
  ) {}

  /** The task's result (or error), or CANCELLED for a task that did not run. */
  reply(call: Call, status: number, value: unknown): void {
    if (call.byValue) {
      if (status === CANCELLED) this.port!.postMessage({ seq: call.seq, status, graph: null, changed: false });
      else postResult(this.port!, call.seq, status === OK, value, call.byValue.transfer);
      return;
    }
    this.send(status === CANCELLED ? resultFrame(call.seq, CANCELLED, null) : encode(call.seq, status === OK, value));
    if (this.unannounced >= NOTIFY_EVERY || performance.now() - this.lastNotify >= NOTIFY_AFTER_MS) this.announce();
  }

  /** Tells the pool that results are waiting (a system call only if it sleeps). */
  announce(): void {
    if (this.unannounced > 0) {
      this.unannounced = 0;
      this.lastNotify = performance.now();
      this.notifier.notify();
    }
  }

  private send(frame: Buffer): void {
    const buffer = this.port && frame.length >= PORT_THRESHOLD ? ownBuffer(frame) : null;
    if (buffer) {
      this.port!.postMessage({ frame }, [buffer]); // large: moved, not copied through the ring
      return;
    }
    const n = this.results.write(frame);
    this.unannounced++;
    if (n < frame.length) {
      // The pool must drain before there is room: tell it, then wait for it.
      this.announce();
      runSync(this.results.writeAll(frame.subarray(n)));
    }
  }
}

/** Where the tasks come from: the ring, and, for thread workers, the MessagePort (see
 * PortMessage): a PORT frame in the ring says that the next message is there, which keeps the
 * order of everything the pool sent. */
class Tasks {
  constructor(
    private readonly ring: ByteRing,
    private readonly port: MessagePort | null,
    /** Called before this worker idles. */
    private readonly idle: () => void,
  ) {}

  /** The next message: at once when the ring holds it whole, else a promise of it. A busy worker
   * takes each task without a trip through the microtask queue: two nested awaits per task cost
   * a third of the per-task rate of a chunksize-1 map (docs/benchmarks.md, issue 12). */
  next(): Next | Promise<Next> {
    for (;;) {
      const message = this.ring.tryDecodeFrame(decodeTask);
      if (message === NO_FRAME) return this.nextAsync();
      const next = message.kind === PORT ? this.fromPort() : message;
      if (next) return next;
    }
  }

  private async nextAsync(): Promise<Next> {
    for (;;) {
      const message = await this.nextMessage();
      const next = message.kind === PORT ? this.fromPort() : message;
      if (next) return next;
    }
  }

  /**
   * The message a PORT frame announced, taken off the port at once: the pool posts it before it
   * writes the frame, and postMessage queues it on this end before it returns. No 'message'
   * event, so no turn of the event loop per task (piscina's workers read their port the same way
   * after an Atomics.wait). Null for a frame that announces nothing to run.
   */
  private fromPort(): Next | null {
    const m = receiveMessageOnPort(this.port!)!.message as PortMessage;
    if ('fnId' in m) {
      const { seq, fnId, mode, transfer } = m;
      return { kind: TASK, seq, fnId, mode, byValue: { transfer }, args: () => (m.changed ? rebuild(m.graph, threadCtx) : m.graph) };
    }
    if (!('frame' in m)) return null;
    const message = decodeTask(m.frame.subarray(LENGTH_BYTES), true);
    return message.kind === PORT ? null : message;
  }

  private async nextMessage(): Promise<TaskMessage> {
    for (;;) {
      const message = this.ring.tryDecodeFrame(decodeTask);
      if (message !== NO_FRAME) return message;
      // A frame larger than the ring streams in.
      if (this.ring.available() > 0) return decodeTask(await runAsync(this.ring.readFrame()), true);
      this.idle();
      // A worker that runs out of tasks first blocks on its ring for a moment: a caller that
      // awaits each result sends the next task within microseconds, and a blocked worker takes
      // it in microseconds, without a trip through its event loop. Then it waits asynchronously
      // (the addon's waiter thread, or Atomics.waitAsync), using no CPU until a task comes, with
      // its event loop free (timers, parent death).
      if (!runSync(this.ring.waitForData(performance.now() + IDLE_BLOCK_MS))) await runAsync(this.ring.waitForData());
    }
  }
}

/** Loads a pool function. One this worker cannot load fails each task that calls it (the worker
 * lives on): dying here would put the task back and start a replacement that dies the same way. */
async function load(body: Uint8Array): Promise<Fn> {
  const [loaded, fn] = await attempt(() => loads(body));
  return loaded ? (fn as Fn) : () => {
    throw fn;
  };
}

/** A worker's life: the initializer, then read a task, run it, reply, until told to stop or until
 * `maxtasks` tasks are done. */
async function serve(
  channelState: ChannelState,
  notifierState: BlockState,
  initializer: Fn | null,
  initargs: unknown[],
  maxtasks: number | null,
  port: MessagePort | null,
): Promise<void> {
  const channel = Channel.attach(channelState);
  const notifier = Notifier.attach(notifierState);
  const replies = new Replies(channel.results, notifier, port);
  const tasks = new Tasks(channel.tasks, port, () => replies.announce());
  const fns = new Map<number, Fn>();
  if (initializer) await settle(initializer(...initargs));
  channel.markReady();
  notifier.notify();
  for (let completed = 0; completed !== maxtasks; ) {
    const pending = tasks.next();
    const next = pending instanceof Promise ? await pending : pending;
    if (next.kind === STOP) break;
    if (next.kind === DEFINE) {
      fns.set(next.fnId, await load(next.body));
      continue;
    }
    if (notifier.isCancelled(next.seq)) {
      replies.reply(next, CANCELLED, null);
      continue;
    }
    channel.started = next.seq;
    const outcome = perform(fns.get(next.fnId)!, next);
    const [ok, value] = outcome instanceof Promise ? await outcome : outcome;
    replies.reply(next, ok ? OK : FAILED, value);
    // Tasks that return at once run back to back; what they queued (a promise's callbacks) runs
    // every few tasks, not only when the ring runs dry.
    if (++completed % MICROTASKS_EVERY === 0) await null;
  }
  replies.announce();
}

/** The target of every pool worker process. */
export const poolWorkerMain = task(serve, { module: import.meta.url });
