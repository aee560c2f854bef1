/**
 * The channel between a pool and one of its workers: two byte rings in shared memory (tasks in,
 * results out) and a word saying which task the worker is running, plus one notify word per pool
 * that workers bump when they have written results. Python's pool shares one inqueue and one
 * outqueue among all workers; per-worker rings let the pool know exactly which tasks a worker had
 * when it died, so they can be failed (the running one) or handed to another worker (the rest).
 *
 * Frames (the ring's length-prefixed messages, ringMessages.ts: each header is written into the
 * headroom the serialiser left, and each body decoded where it lies in the ring):
 *   tasks:   [TASK u8][seq u32][fnId u32][mode u8][body: dumps(args or chunk items)]
 *            [DEFINE u8][fnId u32][body: dumps(function)]
 *            [STOP u8]
 *   results: [seq u32][status u8][body: dumps(result or error)]
 */
import { MessageChannel } from 'node:worker_threads';
import { allocate, attachBlock, blockState, int32s, type Block, type BlockState, type MemoryKind } from './heap.js';
import { ByteRing, LENGTH_BYTES, RING_WORDS } from './ring.js';
import { decodeNow, messageFrame } from './ringMessages.js';
import type { ReduceContext, ReduceOptions } from './reduction.js';
import { wait, wake } from './futex.js';

export const TASK = 1;
export const DEFINE = 2;
export const STOP = 3;
/** The next task waits on the worker's MessagePort (thread workers: large or transferred payloads). */
export const PORT = 4;

/** How a task's body is applied: `fn(...args)`, `items.map(fn)` (a map chunk), or a starmap chunk. */
export const CALL = 0;
export const MAP_CHUNK = 1;
export const STARMAP_CHUNK = 2;

export const OK = 0;
export const FAILED = 1;
/** The task's call was cancelled before the worker started it: it did not run. */
export const CANCELLED = 2;

const TASK_RING_BYTES = 1 << 20;
const RESULT_RING_BYTES = 1 << 20;
const STARTED = 2 * RING_WORDS; // seq of the task the worker is running (0 = none yet)
const READY = 2 * RING_WORDS + 1; // 1 once the worker waits for tasks (its initializer has run)
const CHANNEL_WORDS = 16;
const CHANNEL_HEADER = CHANNEL_WORDS * 4;

export interface ChannelState {
  block: BlockState;
}

/** One worker's rings. */
export class Channel {
  readonly tasks: ByteRing;
  readonly results: ByteRing;
  private readonly words: Int32Array;

  constructor(readonly block: Block) {
    const words = int32s(block, 0, CHANNEL_WORDS);
    this.words = words;
    const base = block.offset + CHANNEL_HEADER;
    this.tasks = new ByteRing(words.subarray(0, RING_WORDS), new Uint8Array(block.buffer, base, TASK_RING_BYTES));
    this.results = new ByteRing(
      words.subarray(RING_WORDS, 2 * RING_WORDS),
      new Uint8Array(block.buffer, base + TASK_RING_BYTES, RESULT_RING_BYTES),
    );
  }

  static create(kind: MemoryKind): Channel {
    return new Channel(allocate(kind, CHANNEL_HEADER + TASK_RING_BYTES + RESULT_RING_BYTES, 8));
  }

  static attach(state: ChannelState): Channel {
    return new Channel(attachBlock(state.block));
  }

  state(): ChannelState {
    return { block: blockState(this.block) };
  }

  get started(): number {
    return Atomics.load(this.words, STARTED) >>> 0;
  }
  set started(seq: number) {
    Atomics.store(this.words, STARTED, seq | 0);
  }

  /** Whether the worker waits for tasks: until then the pool keeps them (see Dispatcher). */
  get ready(): boolean {
    return Atomics.load(this.words, READY) !== 0;
  }

  /** Worker side: it waits for tasks now (the pool learns it at its next wake-up: notify). */
  markReady(): void {
    Atomics.store(this.words, READY, 1);
  }
}

/**
 * The pool-wide words: the one workers bump after writing results (and whether the pool sleeps on
 * it), and a table of cancelled task numbers that workers check before starting a task.
 */
export class Notifier {
  private static readonly SEQ = 0;
  private static readonly WAITING = 1;
  private static readonly CANCELLED = 2;
  private static readonly CANCEL_SLOTS = 4096;
  readonly words: Int32Array;

  constructor(readonly block: Block) {
    this.words = int32s(block, 0, Notifier.CANCELLED + Notifier.CANCEL_SLOTS);
  }

  static create(kind: MemoryKind): Notifier {
    return new Notifier(allocate(kind, (Notifier.CANCELLED + Notifier.CANCEL_SLOTS) * 4, 8));
  }
  static attach(state: BlockState): Notifier {
    return new Notifier(attachBlock(state));
  }
  state(): BlockState {
    return blockState(this.block);
  }

  /** Worker side: results are ready. A syscall only when the pool sleeps. */
  notify(): void {
    Atomics.add(this.words, Notifier.SEQ, 1);
    if (Atomics.load(this.words, Notifier.WAITING) !== 0) wake(this.words, Notifier.SEQ);
  }

  /** Pool side: the value to wait on (read before checking the rings). */
  seq(): number {
    return Atomics.load(this.words, Notifier.SEQ);
  }

  /** Pool side: sleeps until a worker notifies after `seq` was read. */
  async sleep(seq: number, signal?: AbortSignal): Promise<void> {
    Atomics.store(this.words, Notifier.WAITING, 1);
    try {
      await wait(this.words, Notifier.SEQ, seq, null, signal);
    } finally {
      Atomics.store(this.words, Notifier.WAITING, 0);
    }
  }

  /** Pool side: the task numbered `seq` must not start. */
  cancel(seq: number): void {
    Atomics.store(this.words, Notifier.CANCELLED + (seq % Notifier.CANCEL_SLOTS), seq | 0);
  }

  /** Worker side: whether the task numbered `seq` was cancelled. */
  isCancelled(seq: number): boolean {
    return Atomics.load(this.words, Notifier.CANCELLED + (seq % Notifier.CANCEL_SLOTS)) === (seq | 0);
  }
}

// ---- frame encoding --------------------------------------------------------------------------

/** Bytes of a task frame's header (after the length): kind, seq, fnId, mode. */
const TASK_HEAD = 10;
/** Bytes of a define frame's header: kind, fnId. */
const DEFINE_HEAD = 5;
/** Bytes of a result frame's header: seq, status. */
const RESULT_HEAD = 5;

/** A task's arguments (or chunk items) serialised into a frame whose header `stampTask` fills in
 * when the task is handed to a worker (again, with a new seq, if that worker dies). */
export function taskFrame(args: unknown, ctx: ReduceContext): Buffer {
  const frame = messageFrame(args, TASK_HEAD, ctx);
  frame[LENGTH_BYTES] = TASK;
  return frame;
}

/** Writes the header of a task frame (from `taskFrame`) in place. */
export function stampTask(frame: Buffer, seq: number, fnId: number, mode: number): Buffer {
  frame.writeUInt32LE(seq, LENGTH_BYTES + 1);
  frame.writeUInt32LE(fnId, LENGTH_BYTES + 5);
  frame[LENGTH_BYTES + 9] = mode;
  return frame;
}

/** A pool function, serialised once into the frame that defines it for every worker. */
export function defineFrame(fnId: number, fn: unknown, ctx: ReduceContext, options: ReduceOptions): Buffer {
  const frame = messageFrame(fn, DEFINE_HEAD, ctx, options);
  frame[LENGTH_BYTES] = DEFINE;
  frame.writeUInt32LE(fnId, LENGTH_BYTES + 1);
  return frame;
}

function markerFrame(kind: number): Buffer {
  const frame = Buffer.alloc(5);
  frame.writeUInt32LE(1, 0);
  frame[4] = kind;
  return frame;
}

export const stopFrame = (): Buffer => markerFrame(STOP);
export const portFrame = (): Buffer => markerFrame(PORT);

/**
 * What travels over a thread worker's MessagePort instead of its ring: a whole encoded frame (a
 * large result, its buffer transferred, so it is not copied into and out of the ring), or a task's
 * reduced value itself (large bytes, copied by postMessage's structured clone; or, `transfer`, for
 * `{ transfer: true }`, its ArrayBuffers moved), and its result the same way.
 */
export type PortMessage =
  | { frame: Uint8Array }
  | { seq: number; fnId: number; mode: number; graph: unknown; changed: boolean; transfer: boolean }
  | { seq: number; status: number; graph: unknown; changed: boolean };

/** Frames at least this large go over the port (thread workers). */
export const PORT_THRESHOLD = 64 * 1024;

/** How many arguments (or chunk items, or a starmap item's arguments) `holdsLargeBytes` looks at. */
const LARGE_BYTES_SCAN = 16;

/** Bytes of an ArrayBuffer (not shared memory, which is no copy) of at least PORT_THRESHOLD. */
function isLargeBytes(value: unknown): boolean {
  if (value instanceof ArrayBuffer) return value.byteLength >= PORT_THRESHOLD;
  return ArrayBuffer.isView(value) && value.buffer instanceof ArrayBuffer && value.byteLength >= PORT_THRESHOLD;
}

/**
 * Whether a task's arguments (a call's, or a small chunk's items, and a starmap item's arguments)
 * hold bytes worth sending to a thread by postMessage's structured clone rather than encoded into a
 * frame: the clone is written into memory that is freed as soon as the receiver has it, so it is
 * reused, while a frame kept for the task's life is fresh memory, each of its pages a fault (on
 * this VM, 0.26 ms per MiB against 0.03 for a copy). Only the first levels of a few items are
 * looked at: a chunk of many small items (the common map) costs nothing here.
 */
export function holdsLargeBytes(args: unknown): boolean {
  if (!Array.isArray(args) || args.length > LARGE_BYTES_SCAN) return false;
  return args.some((a) => isLargeBytes(a) || (Array.isArray(a) && a.length <= LARGE_BYTES_SCAN && a.some(isLargeBytes)));
}

/** The block `primeAllocator` frees: the C allocator's threshold follows it (glibc caps it at 32 MiB). */
const PRIME_BYTES = 16 << 20;
let primed = false;

/**
 * Once per process, before the first large payload goes to a thread: frees a 16 MiB block that the
 * C allocator mapped for it. glibc's malloc then serves blocks below that size from its heaps and
 * keeps up to twice that much free before it gives memory back (its dynamic mmap and trim
 * thresholds, raised by the largest mapped block freed so far). Without it each copied megabyte,
 * its clone in the worker, and a worker's garbage collection freeing a few dozen of them at once
 * hand that memory back to the system, and the next copies fault it in again page by page: with a
 * threshold left near a megabyte, a 1 MiB payload cost 80-120 page faults a task and went at half
 * the speed (docs/benchmarks.md, W4). A program that has already freed such a block (any that
 * handled a large Buffer) is in this state anyway; the block is never touched, so this costs no
 * page faults itself, and nothing where malloc does not work this way.
 */
export function primeAllocator(): void {
  if (primed) return;
  primed = true;
  // A moved ArrayBuffer whose message is never received is freed as the channel closes.
  const { port1, port2 } = new MessageChannel();
  const block = new ArrayBuffer(PRIME_BYTES);
  port1.postMessage(block, [block]);
  port1.close();
  port2.close();
}

/** `frame`'s own ArrayBuffer, if it can be transferred without taking memory others share. */
export function ownBuffer(frame: Uint8Array): ArrayBuffer | null {
  const buffer = frame.buffer;
  return buffer instanceof ArrayBuffer && frame.byteOffset === 0 && frame.byteLength === buffer.byteLength ? buffer : null;
}

/** The ArrayBuffers inside a value (not SharedArrayBuffers), for a postMessage transfer list. */
export function transferables(value: unknown, out: ArrayBuffer[] = [], seen = new Set<object>()): ArrayBuffer[] {
  if (typeof value !== 'object' || value === null || seen.has(value)) return out;
  seen.add(value);
  if (value instanceof ArrayBuffer) {
    if (!out.includes(value)) out.push(value);
  } else if (ArrayBuffer.isView(value)) {
    if (value.buffer instanceof ArrayBuffer) transferables(value.buffer, out, seen);
  } else if (value instanceof Map) {
    for (const [k, v] of value) {
      transferables(k, out, seen);
      transferables(v, out, seen);
    }
  } else if (Array.isArray(value) || value instanceof Set || Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of value instanceof Set ? value : Object.values(value)) transferables(v, out, seen);
  }
  return out;
}

/** A task's result (or error) serialised straight into its frame. */
export function resultFrame(seq: number, status: number, value: unknown): Buffer {
  const frame = messageFrame(value, RESULT_HEAD);
  frame.writeUInt32LE(seq, LENGTH_BYTES);
  frame[LENGTH_BYTES + 4] = status;
  return frame;
}

function u32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

export type TaskMessage =
  | { kind: typeof TASK; seq: number; fnId: number; mode: number; args: () => unknown }
  | { kind: typeof DEFINE; fnId: number; body: Uint8Array }
  | { kind: typeof PORT }
  | { kind: typeof STOP };

/** A task frame's body, decoded where it lies (`owned`: the bytes are the caller's to keep); the
 * arguments of a TASK are decoded now, their errors thrown when the worker asks for them. */
export function decodeTask(frame: Uint8Array, owned: boolean): TaskMessage {
  switch (frame[0]) {
    case TASK:
      return { kind: TASK, seq: u32(frame, 1), fnId: u32(frame, 5), mode: frame[9]!, args: decodeNow(frame.subarray(TASK_HEAD), owned) };
    case DEFINE: {
      const body = frame.subarray(DEFINE_HEAD);
      return { kind: DEFINE, fnId: u32(frame, 1), body: owned ? body : body.slice() };
    }
    case PORT:
      return { kind: PORT };
    default:
      return { kind: STOP };
  }
}

export interface ResultMessage {
  seq: number;
  status: number;
  /** The result (or a Promise of it); throws if it did not decode. */
  value: () => unknown;
}

const nothing = (): null => null;

/** A result frame's body, decoded where it lies, unless `wanted` says nobody waits for its task
 * (or it reports a cancelled task, which carries no value). */
export function decodeResult(frame: Uint8Array, owned: boolean, wanted: (seq: number) => boolean): ResultMessage {
  const seq = u32(frame, 0);
  const status = frame[4]!;
  if (status === CANCELLED || !wanted(seq)) return { seq, status, value: nothing };
  return { seq, status, value: decodeNow(frame.subarray(RESULT_HEAD), owned) };
}
