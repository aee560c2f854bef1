/**
 * Queue, SimpleQueue and JoinableQueue, as CPython's queues.py.
 *
 * Python's queue is a pipe, a reader lock, a writer lock, a semaphore counting free slots, and a
 * feeder thread per process that pickles and writes buffered items. Ours keeps the same shape, with
 * the pipe replaced by a byte ring in shared memory (a pipe's bytes cannot be shared by several
 * reading Node processes: each would read ahead into its own buffers):
 *
 * - `put` serialises the item at once (so a bad value throws at the caller), takes a slot on a
 *   bounded queue, appends the bytes to a local buffer and returns; the feeder (an async loop)
 *   writes buffered items into the ring under the writer lock, in put order, waiting for space.
 *   Before this thread blocks in any `*Sync` call, what it has buffered is handed over
 *   (src/blocking.ts), so an item never waits behind its own producer's blocking call.
 * - `get` takes the reader lock, reads one length-prefixed frame out of the ring (waiting for data),
 *   frees a slot, and deserialises.
 * - A process does not finish exiting until its feeder has written everything (an exit finalizer),
 *   so Python's documented join deadlock is reproduced: a child that put a large item waits for a
 *   reader. `cancelJoinThread()` lifts that, at the cost of the buffered items.
 *
 * The ring holds 64 KiB, like a Linux pipe; larger items stream through it.
 */
import { inspect } from 'node:util';
import { emptyQueue, fullQueue, OSError, ValueError, type Empty, type Full } from './errors.js';
import { finalize, raceTimeout, throwIfAborted, type FinalizeHandle } from './util.js';
import { forgetHandOver, handOverBeforeBlocking } from './blocking.js';
import { deadlineAfter, park, runAsync, runSync, secondsUntil, wait, wake, type Steps } from './futex.js';
import { allocate, attachBlock, blockState, checkTarget, int32s, type Block, type BlockState } from './heap.js';
import { loads, loadsSync, reduceSymbol, registerReducer, type ReduceContext, type Reduced } from './reduction.js';
import { ByteRing, NO_FRAME, RING_WORDS } from './ring.js';
import { decodeMessage, Later, messageFrame } from './ringMessages.js';
import { acquireMarking, Lock, type SyncOptions } from './synchronize.js';
import { memoryKindFor, registerClasses } from './context.js';

// Words after the ring's own.
const SIZE = RING_WORDS; // items put and not yet got (qsize)
const FREE_SLOTS = RING_WORDS + 1; // bounded queues: slots left (Python's BoundedSemaphore(maxsize))
const UNFINISHED = RING_WORDS + 2; // JoinableQueue: items put and not yet marked done
const HEADER_WORDS = 16;
const HEADER_BYTES = HEADER_WORDS * 4;

const RING_BYTES = 64 * 1024; // like a Linux pipe
const EAGER_FLUSH = 16 * 1024; // buffered bytes that a put writes at once, when it can

/** Python's SEM_VALUE_MAX: what `maxsize <= 0` means. */
const SEM_VALUE_MAX = 0x7fffffff;

export interface PutOptions {
  block?: boolean;
  timeout?: number | null;
  signal?: AbortSignal;
}
export type GetOptions = PutOptions;

interface QueueState {
  block: BlockState;
  rlock: Lock;
  wlock: Lock;
  maxsize: number;
}

/** The shared part: the ring and the queue's own words. */
class SharedQueue extends ByteRing {
  constructor(readonly block: Block) {
    super(int32s(block, 0, HEADER_WORDS), new Uint8Array(block.buffer, block.offset + HEADER_BYTES, RING_BYTES));
  }
}


/** A put's or get's deadline (performance.now()): 0, long passed, with `block: false`. */
function deadlineOf(options: PutOptions): number {
  return options.block === false ? 0 : deadlineAfter(options.timeout);
}

/** `multiprocessing.Queue`: multi-producer, multi-consumer, across processes and threads. */
export class Queue<T = unknown> {
  /** @internal */ protected readonly _ring: SharedQueue;
  /** @internal */ protected readonly _rlock: Lock;
  /** @internal */ protected readonly _wlock: Lock;
  /** @internal */ protected readonly _maxsize: number;
  /** Frames put by this process and not yet written to the ring: `buffer[bufferHead..]` (a
   * queue without shift(): a producer far ahead of its reader buffers many thousands). */
  private buffer: Uint8Array[] = [];
  private bufferHead = 0;
  private bufferedBytes = 0;
  /** An item too large for the ring's free space, written part by part (`written` bytes so far);
   * the writer lock is held until it is all in, so that no other writer cuts into it. */
  private streaming: { frame: Uint8Array; written: number } | null = null;
  /** Whether this object holds the writer lock. */
  private holdsWriterLock = false;
  /** Ends the feeder's current wait, so that it looks again after a hand-over wrote for it. */
  private feederWake: AbortController | null = null;
  private feeding: Promise<void> | null = null;
  private closed = false;
  private joinCancelled = false;
  private exitFlush: FinalizeHandle | null = null;

  constructor(maxsize = 0, options?: SyncOptions) {
    if (typeof maxsize !== 'number' || Number.isNaN(maxsize)) throw new TypeError('maxsize must be a number');
    const state = (options as { _attach?: QueueState } | undefined)?._attach;
    if (state) {
      this._ring = new SharedQueue(attachBlock(state.block));
      this._rlock = state.rlock;
      this._wlock = state.wlock;
      this._maxsize = state.maxsize;
      return;
    }
    this._maxsize = maxsize <= 0 ? SEM_VALUE_MAX : Math.floor(maxsize);
    const kind = memoryKindFor(options);
    this._ring = new SharedQueue(allocate(kind, HEADER_BYTES + RING_BYTES, 8));
    Atomics.store(this._ring.words, FREE_SLOTS, this._maxsize);
    this._rlock = new Lock(options);
    this._wlock = new Lock(options);
  }

  // ---- put --------------------------------------------------------------------------------

  /** Puts `obj`; waits only for a free slot of a bounded queue (`Full` after `timeout`). */
  async put(obj: T, options: PutOptions = {}): Promise<void> {
    this.checkClosed();
    const frame = this.frame(obj);
    if (!this.tryTakeSlot()) await runAsync(this.takeSlot(options), options.signal);
    this.enqueue(frame);
  }

  /** `put` that blocks this thread for a slot (a worker's tight loop). */
  putSync(obj: T, options: PutOptions = {}): void {
    this.checkClosed();
    const frame = this.frame(obj);
    if (!this.tryTakeSlot()) runSync(this.takeSlot(options));
    this.enqueue(frame);
  }

  putNowait(obj: T): void {
    this.checkClosed();
    const frame = this.frame(obj);
    if (!this.tryTakeSlot()) throw this.noSlot({ block: false });
    this.enqueue(frame);
  }

  /** The item's frame, serialised now so a bad value throws here. */
  private frame(obj: T): Uint8Array {
    return messageFrame(obj);
  }

  private tryTakeSlot(): boolean {
    const w = this._ring.words;
    if (this._maxsize === SEM_VALUE_MAX) return true;
    for (;;) {
      const free = Atomics.load(w, FREE_SLOTS);
      if (free <= 0) return false;
      if (Atomics.compareExchange(w, FREE_SLOTS, free, free - 1) === free) return true;
    }
  }

  /** Waits for a free slot of a bounded queue; `Full` when the deadline passes first. */
  private *takeSlot(options: PutOptions): Steps<void> {
    const deadline = deadlineOf(options);
    while (!this.tryTakeSlot()) {
      if (performance.now() >= deadline) throw this.noSlot(options);
      yield park(this._ring.words, FREE_SLOTS, 0, deadline);
    }
  }

  /** Python's Full, saying which queue and how long the put waited. */
  private noSlot(options: PutOptions): Full {
    return fullQueue(String(this), options.block, options.timeout);
  }

  private enqueue(frame: Uint8Array): void {
    Atomics.add(this._ring.words, SIZE, 1);
    this.onPut();
    this.buffer.push(frame);
    this.bufferedBytes += frame.length;
    handOverBeforeBlocking(this.handOver);
    // A producer putting in a synchronous loop would otherwise leave everything to the feeder
    // until the loop ends; Python's feeder thread writes while the producer still puts.
    if (this.bufferedBytes >= EAGER_FLUSH) this.writeWithoutWaiting();
    if (!this.feeding) {
      // As Python's feeder thread: started on first put, finishes flushing before the process exits.
      this.exitFlush ??= finalize(() => (this.joinCancelled ? undefined : this.feeding ?? undefined), -5);
      this.feeding = this.feed();
    }
  }

  /** @internal JoinableQueue counts unfinished tasks here. */
  protected onPut(): void {}

  /**
   * Writes what it can of the buffered items without waiting: whole items while they fit, then the
   * start of one that does not (`streaming`). True once nothing is left. The feeder runs it between
   * its waits, and this thread before it blocks (`handOver`): each goes on where the other stopped.
   */
  private writeWithoutWaiting(): boolean {
    if (!this.holdsWriterLock) {
      if (this.bufferHead === this.buffer.length) return true;
      if (!this._wlock.acquireSync({ block: false })) return false;
      this.holdsWriterLock = true;
    }
    for (;;) {
      const part = this.streaming;
      if (part) {
        part.written += this._ring.write(part.frame.subarray(part.written));
        if (part.written < part.frame.length) return false;
        this.streaming = null;
      }
      if (this.bufferHead === this.buffer.length) break;
      if (this.writeWhatFits()) continue;
      // The next item does not fit whole: it streams in while the reader reads.
      const frame = this.buffer[this.bufferHead]!;
      this.dropWritten(this.bufferHead + 1, frame.length);
      this.streaming = { frame, written: 0 };
    }
    this.holdsWriterLock = false;
    this._wlock.release();
    return true;
  }

  /** Run before this thread blocks (src/blocking.ts): the feeder cannot run meanwhile. */
  private readonly handOver = (): boolean => {
    const done = this.writeWithoutWaiting();
    // The feeder may be waiting for the lock just taken here, or for space for an item that is
    // now all written: it must look again.
    this.feederWake?.abort();
    return done;
  };

  /** @internal SimpleQueue.put: writes the buffered items now if nothing has to wait for that. */
  _writeBufferedNow(): void {
    this.handOver();
  }

  private async feed(): Promise<void> {
    // Let the caller's puts accumulate, then write them in one writer-lock hold: until the next
    // turn of the event loop (a producer awaiting each put fills a batch), or only until the end
    // of this synchronous run when a reader is asleep waiting for data.
    try {
      if (this._ring.readerWaiting()) await Promise.resolve();
      else await new Promise(setImmediate);
      while (!this.writeWithoutWaiting()) {
        const wake = (this.feederWake = new AbortController());
        try {
          // Python's feeder is a daemon thread that the exit joins; after cancelJoinThread() the
          // exit does not wait for it, and neither does this process's event loop.
          const daemon = this.joinCancelled;
          if (this.holdsWriterLock) await runAsync(this._ring.waitForSpace(), wake.signal, daemon);
          else await acquireMarking(this._wlock, () => (this.holdsWriterLock = true), wake.signal, daemon);
        } catch (error) {
          if (!wake.signal.aborted) throw error;
        } finally {
          this.feederWake = null;
        }
      }
    } finally {
      // In the same step as the last look at the buffer: a put from now on starts a new feeder.
      // (Cleared a microtask later, a put in between would wait for the next put to be flushed.)
      this.feeding = null;
      forgetHandOver(this.handOver);
    }
  }

  /** Writes the buffered items that fit whole into the ring (the writer lock is held); false if
   * not even the first one fits. */
  private writeWhatFits(): boolean {
    const { end, bytes } = this._ring.writeWhatFits(this.buffer, this.bufferHead);
    if (end === this.bufferHead) return false;
    this.dropWritten(end, bytes);
    return true;
  }

  /** Forgets the buffered items before `end` (`bytes` in all), which have been written. */
  private dropWritten(end: number, bytes: number): void {
    const b = this.buffer;
    this.bufferedBytes -= bytes;
    if (end === b.length) {
      b.length = 0;
      this.bufferHead = 0;
      return;
    }
    b.fill(undefined as unknown as Uint8Array, this.bufferHead, end);
    this.bufferHead = end;
    if (end > 1024 && end * 2 > b.length) {
      this.buffer = b.slice(end);
      this.bufferHead = 0;
    }
  }

  // ---- get --------------------------------------------------------------------------------

  /** Removes and returns an item; `Empty` if none arrives within `timeout` (or at once with
   * `block: false`). The deadline covers waiting for the reader lock and for the data. */
  async get(options: GetOptions = {}): Promise<T> {
    this.checkClosed();
    // The common case, without a wait: the reader lock is free and a whole item is there.
    if (!options.signal?.aborted && this._rlock.acquireSync({ block: false })) {
      let got: unknown;
      try {
        got = this.tryTake();
      } finally {
        this._rlock.release();
      }
      if (got !== NO_FRAME) return (got instanceof Later ? await loads(got.bytes) : got) as T;
    }
    const deadline = deadlineOf(options);
    const { signal } = options;
    if (signal?.aborted) throw signal.reason;
    const locked = await this._rlock.acquire({ block: deadline !== 0, timeout: secondsUntil(deadline), signal });
    if (!locked) throw this.noItem(options);
    let body: Uint8Array;
    try {
      // Until the first byte of an item has arrived, time out and abort are allowed; after that the
      // writer (holding its lock) finishes the item and we read it whole.
      if (!(await runAsync(this._ring.waitForData(deadline), signal))) throw this.noItem(options);
      body = await runAsync(this._ring.readFrame());
      this.onGot();
    } finally {
      this._rlock.release();
    }
    return (await loads(body)) as T;
  }

  /** `get` that blocks this thread. */
  getSync(options: GetOptions = {}): T {
    this.checkClosed();
    const deadline = deadlineOf(options);
    if (!this._rlock.acquireSync({ block: deadline !== 0, timeout: secondsUntil(deadline) })) throw this.noItem(options);
    let got: unknown;
    try {
      got = this.tryTake();
      if (got === NO_FRAME) {
        if (!runSync(this._ring.waitForData(deadline))) throw this.noItem(options);
        got = new Later(runSync(this._ring.readFrame()));
        this.onGot();
      }
    } finally {
      this._rlock.release();
    }
    return (got instanceof Later ? loadsSync(got.bytes) : got) as T;
  }

  /** Takes the next item if it has fully arrived (the reader lock is held), decoded where it lies
   * or as bytes to rebuild; NO_FRAME if none. An item that fails to decode is still taken. */
  private tryTake(): unknown {
    let got: unknown;
    try {
      got = this._ring.tryDecodeFrame(decodeMessage);
    } catch (error) {
      this.onGot(); // its bytes are gone: it counts as taken, as a get that then fails to decode
      throw error;
    }
    if (got !== NO_FRAME) this.onGot();
    return got;
  }

  /**
   * Python's `get_nowait()`: the next item at once, or `Empty`. Synchronous, as a call that cannot
   * wait is (docs/api.md rule 4); an item carrying a task whose module this process has not imported
   * yet raises `UnpicklingError` here (use `await get()` for those).
   */
  getNowait(): T {
    return this.getSync({ block: false });
  }

  /** Python's Empty, saying which queue and how long the get waited. */
  private noItem(options: GetOptions): Empty {
    return emptyQueue(String(this), options.block, options.timeout);
  }

  private onGot(): void {
    const w = this._ring.words;
    Atomics.sub(w, SIZE, 1);
    if (this._maxsize !== SEM_VALUE_MAX) {
      Atomics.add(w, FREE_SLOTS, 1);
      wake(w, FREE_SLOTS, 1);
    }
  }

  // ---- state ------------------------------------------------------------------------------

  /** Items put (by any process) and not yet got; approximate while others put and get. */
  qsize(): number {
    return Math.max(0, Atomics.load(this._ring.words, SIZE));
  }

  /** Whether no item is waiting to be read (buffered items not yet written do not count). As in
   * Python, close() on a queue this process has put to closes its reading end too: `OSError`. */
  empty(): boolean {
    if (this.closed && this.exitFlush !== null) throw new OSError(`Queue ${this} is closed`);
    return this._ring.available() === 0;
  }

  full(): boolean {
    return this._maxsize !== SEM_VALUE_MAX && Atomics.load(this._ring.words, FREE_SLOTS) <= 0;
  }

  /** No more puts from this process; buffered items are still flushed. */
  close(): void {
    this.closed = true;
  }

  /** Waits until the buffered items are written (only after `close()`, as in Python). */
  async joinThread(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.closed) throw new ValueError(`Queue ${this} not closed`);
    if (this.feeding) await raceTimeout(this.feeding, null, options.signal);
    else throwIfAborted(options.signal);
  }

  /** Lets this process exit without flushing its buffered items (they are lost). */
  cancelJoinThread(): void {
    this.joinCancelled = true;
    // A feeder waiting now looks again, and waits on as a daemon.
    this.feederWake?.abort();
  }

  private checkClosed(): void {
    if (this.closed) throw new ValueError(`Queue ${this} is closed`);
  }

  toString(): string {
    return `<${this.constructor.name} object maxsize=${this._maxsize === SEM_VALUE_MAX ? 0 : this._maxsize}>`;
  }
  [inspect.custom](): string {
    return this.toString();
  }

  [reduceSymbol](ctx: ReduceContext): Reduced {
    checkTarget(this._ring.block, ctx.target, this.constructor.name);
    const state: QueueState = {
      block: blockState(this._ring.block),
      rlock: this._rlock,
      wlock: this._wlock,
      maxsize: this._maxsize,
    };
    return { kind: this._kind, state };
  }

  /** @internal The reducer a handle of this class is rebuilt by. */
  protected get _kind(): string {
    return 'Queue';
  }
}
registerReducer('Queue', (state: QueueState) => new Queue(0, { _attach: state } as SyncOptions));

/** `multiprocessing.JoinableQueue`: a Queue whose consumers mark items done, so a producer can
 * wait until every item has been processed. */
export class JoinableQueue<T = unknown> extends Queue<T> {
  protected override get _kind(): string {
    return 'JoinableQueue';
  }

  protected override onPut(): void {
    Atomics.add(this._ring.words, UNFINISHED, 1);
  }

  /** Marks one item as processed; `ValueError` when called more times than items were put. */
  taskDone(): void {
    const w = this._ring.words;
    for (;;) {
      const n = Atomics.load(w, UNFINISHED);
      if (n <= 0) throw new ValueError('task_done() called too many times');
      if (Atomics.compareExchange(w, UNFINISHED, n, n - 1) === n) {
        if (n === 1) wake(w, UNFINISHED);
        return;
      }
    }
  }

  /** Waits until every item put has been marked done. */
  async join(options: { signal?: AbortSignal } = {}): Promise<void> {
    const w = this._ring.words;
    for (;;) {
      const n = Atomics.load(w, UNFINISHED);
      if (n === 0) return;
      await wait(w, UNFINISHED, n, null, options.signal);
    }
  }
}
registerReducer('JoinableQueue', (state: QueueState) => new JoinableQueue(0, { _attach: state } as SyncOptions));

/** `multiprocessing.SimpleQueue`: unbounded, no qsize; `put` never waits. After `close()` (both
 * ends closed, as Python's), every other call raises `OSError`. */
export class SimpleQueue<T = unknown> {
  /** @internal */ readonly _queue: Queue<T>;
  private closed = false;
  constructor(options?: SyncOptions) {
    const attach = (options as { _attach?: Queue<T> } | undefined)?._attach;
    this._queue = attach ?? new Queue<T>(0, options);
  }
  /** As Python's, the item is in the queue when put returns (there is no feeder thread): unless
   * another writer holds the queue or it is full, then it follows in the background. */
  put(obj: T): void {
    this.checkClosed();
    this._queue.putNowait(obj);
    this._queue._writeBufferedNow();
  }
  async get(options: { signal?: AbortSignal } = {}): Promise<T> {
    this.checkClosed();
    return this._queue.get({ signal: options.signal });
  }
  getSync(): T {
    this.checkClosed();
    return this._queue.getSync();
  }
  empty(): boolean {
    this.checkClosed();
    return this._queue.empty();
  }
  close(): void {
    this.closed = true;
    this._queue.close();
  }
  private checkClosed(): void {
    if (this.closed) throw new OSError('SimpleQueue is closed');
  }
  toString(): string {
    return '<SimpleQueue object>';
  }
  [reduceSymbol](): Reduced {
    return { kind: 'SimpleQueue', state: { queue: this._queue } };
  }
}
registerReducer('SimpleQueue', (state: { queue: Queue }) => new SimpleQueue({ _attach: state.queue } as SyncOptions));

registerClasses({ Queue, JoinableQueue, SimpleQueue });
