/**
 * A pool worker, the whole worker side in one file (CPython's pool.worker, piscina's worker.ts):
 * run the initializer, then take tasks from the channel until told to stop or until
 * `maxtasksperchild` tasks are done, writing each result back.
 */
import type { MessagePort } from 'node:worker_threads';
import type { BlockState } from './heap.js';
import { dumps, loads, loadsSync, needsRebuild, newReduceContext, rebuild, reduce } from './reduction.js';
import { PicklingError } from './errors.js';
import {
  CALL, CANCELLED, Channel, DEFINE, FAILED, MAP_CHUNK, Notifier, OK, ownBuffer, parseTask, PORT, PORT_THRESHOLD,
  RESULT_HEADROOM, resultFrame, STOP, transferables, type ChannelState, type PortMessage,
} from './poolChannel.js';
import { task } from './tasks.js';
import { runAsync, runSync } from './futex.js';

type Fn = (...args: unknown[]) => unknown;

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

async function settle(value: unknown): Promise<unknown> {
  return isThenable(value) ? await value : value;
}

/** Runs one task's body; a chunk's items run one after another, as Python's mapstar does. */
async function run(fn: Fn, mode: number, args: unknown): Promise<unknown> {
  if (mode === CALL) return settle(fn(...(args as unknown[])));
  const items = args as unknown[];
  const out = new Array<unknown>(items.length);
  for (let i = 0; i < items.length; i++) {
    const r = mode === MAP_CHUNK ? fn(items[i]) : fn(...(items[i] as unknown[]));
    out[i] = isThenable(r) ? await r : r;
  }
  return out;
}

function encode(seq: number, ok: boolean, value: unknown): Buffer {
  try {
    return resultFrame(seq, ok ? OK : FAILED, dumps(value, undefined, undefined, RESULT_HEADROOM));
  } catch (error) {
    // Python's MaybeEncodingError: the result (or error) could not be sent back.
    const why = new PicklingError(
      `Error sending result: ${(error as Error).message}. The task's ${ok ? 'result' : 'error'} cannot be serialised.`,
    );
    return resultFrame(seq, FAILED, dumps(why, undefined, undefined, RESULT_HEADROOM));
  }
}

const threadCtx = { target: 'thread' as const, handles: [] };

async function attempt(fn: () => Promise<unknown>): Promise<[boolean, unknown]> {
  try {
    return [true, await fn()];
  } catch (error) {
    return [false, error];
  }
}

/** A `{ transfer: true }` result: its ArrayBuffers are moved back to the pool. */
function postResult(port: MessagePort, seq: number, ok: boolean, value: unknown): void {
  try {
    const { graph, changed } = reduce(value, newReduceContext('thread'));
    port.postMessage({ seq, status: ok ? OK : FAILED, graph, changed }, ok ? transferables(graph) : []);
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
/** How long a worker that runs out of tasks blocks on its ring before it waits asynchronously. */
const IDLE_BLOCK_MS = 20;

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
  const { tasks, results } = channel;
  const fns = new Map<number, Fn>();
  if (initializer) await settle(initializer(...initargs));

  // Thread workers also receive tasks on a MessagePort (see PortMessage); a PORT frame in the ring
  // says that the next one is there, which keeps the order of everything the pool sent.
  const inbox: PortMessage[] = [];
  let arrived: (() => void) | null = null;
  port?.on('message', (m: PortMessage) => {
    inbox.push(m);
    arrived?.();
  });
  const nextPortMessage = async (): Promise<PortMessage> => {
    while (inbox.length === 0) await new Promise<void>((resolve) => (arrived = resolve));
    arrived = null;
    return inbox.shift()!;
  };

  let unannounced = 0;
  let lastNotify = performance.now();
  const announce = () => {
    if (unannounced > 0) {
      unannounced = 0;
      lastNotify = performance.now();
      notifier.notify();
    }
  };
  const send = (frame: Buffer) => {
    const buffer = port && frame.length >= PORT_THRESHOLD ? ownBuffer(frame) : null;
    if (buffer) {
      port!.postMessage({ frame }, [buffer]); // large: moved, not copied through the ring
      return;
    }
    const n = results.write(frame);
    unannounced++;
    if (n < frame.length) {
      // The pool must drain before there is room: tell it, then wait for it.
      announce();
      runSync(results.writeAll(frame.subarray(n)));
    }
  };

  let completed = 0;
  for (;;) {
    let frame = tasks.tryReadFrame();
    if (frame === null) {
      if (tasks.available() === 0) {
        announce();
        // A worker that runs out of tasks first blocks on its ring for a moment: a caller that
        // awaits each result sends the next task within microseconds, and a blocked worker takes
        // it in microseconds, without a trip through its event loop. Then it waits asynchronously
        // (the addon's waiter thread, or Atomics.waitAsync), using no CPU until a task comes, with
        // its event loop free (timers, parent death).
        if (!runSync(tasks.waitForData(performance.now() + IDLE_BLOCK_MS))) await runAsync(tasks.waitForData());
        continue;
      }
      frame = await runAsync(tasks.readFrame()); // a frame larger than the ring streams in
    }
    let message = parseTask(frame);
    if (message.kind === PORT) {
      const m = await nextPortMessage();
      if ('frame' in m) message = parseTask(m.frame.subarray(4)); // past the frame's length
      else if ('fnId' in m) {
        // { transfer: true }: the arguments arrived as themselves; the result goes back the same way.
        if (notifier.isCancelled(m.seq)) {
          port!.postMessage({ seq: m.seq, status: CANCELLED, graph: null, changed: false });
          continue;
        }
        channel.started = m.seq;
        const [ok, value] = await attempt(async () => run(fns.get(m.fnId)!, m.mode, m.changed ? await rebuild(m.graph, threadCtx) : m.graph));
        postResult(port!, m.seq, ok, value);
        if (++completed === maxtasks) break;
        continue;
      }
    }
    if (message.kind === STOP) break;
    if (message.kind === DEFINE) {
      // A function this worker cannot load fails each task that calls it (the worker lives on):
      // dying here would put the task back and start a replacement that dies the same way.
      const [loaded, fn] = await attempt(() => loads(message.body));
      fns.set(message.fnId, loaded ? (fn as Fn) : () => {
        throw fn;
      });
      continue;
    }
    if (message.kind === PORT) continue;
    if (notifier.isCancelled(message.seq)) {
      send(resultFrame(message.seq, CANCELLED, dumps(null, undefined, undefined, RESULT_HEADROOM)));
      continue;
    }
    channel.started = message.seq;
    const { body, fnId, mode } = message;
    const [ok, value] = await attempt(async () =>
      run(fns.get(fnId)!, mode, needsRebuild(body) ? await loads(body) : loadsSync(body)),
    );
    send(encode(message.seq, ok, value));
    if (unannounced >= NOTIFY_EVERY || performance.now() - lastNotify >= NOTIFY_AFTER_MS) announce();
    if (++completed === maxtasks) break;
  }
  announce();
}

/** The target of every pool worker process. */
export const poolWorkerMain = task(serve, { module: import.meta.url });
