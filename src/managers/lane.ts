/**
 * The shared-memory lane of a manager connection: requests and replies of one authenticated
 * session travel through two byte rings in a segment both processes map, instead of the socket.
 *
 * Why: a proxy call is one request and one reply. Over a socket each of them costs the other
 * process an event-loop wake-up (epoll, libuv, a callback), about 40 µs apiece on Node, where
 * Python's manager threads block in recv() and answer in half the time. Over the lane, a side that
 * waits for the next frame first spins for a moment (SPIN_MS) on its doorbell: a reply that comes
 * back within it is taken with no wake-up and no system call. Only after the spin does the side
 * sleep on a futex, and then a writer wakes it with one system call.
 *
 * The socket stays open beside the lane, unread: its hang-up (the peer closed, died or shut down)
 * ends the lane, so a pending call fails at once as it would on a socket. The lane is offered by
 * the client on `accept_connection` and used only when the server could map the segment (both on
 * one machine, the addon loaded); otherwise the session simply stays on the socket.
 *
 * Doorbells: each process (each thread) has one, two words in its shared heap: RUNG, bumped by any
 * peer after it wrote a frame for this process, and SLEEPING, set while this process's poller
 * sleeps on RUNG. One poller per process watches every lane that has a receiver waiting, so a
 * server with many idle sessions spins on one word and sleeps on one futex.
 */
import { EOFError } from '../errors.js';
import { wait, wake } from '../futex.js';
import { allocate, attachBlock, blockState, createPairSegment, int32s, openPairSegment, type BlockState } from '../heap.js';
import { dumpsForProcess } from '../connection.js';
import { loads } from '../reduction.js';
import { ByteRing, RING_WORDS } from '../ring.js';

/** Bytes of each ring (requests, replies). Larger frames stream through while the reader reads. */
const RING_BYTES = 64 * 1024;
const HEADER_BYTES = 64;
const LANE_BYTES = HEADER_BYTES + 2 * RING_BYTES;

/**
 * How long a side that waits for a frame spins before it sleeps (ms). A dict get/set answers in a
 * few microseconds; a call that blocks (an acquire, a get on an empty queue) costs one spin, then
 * sleeps. Short on purpose: on a 2-core machine the spinner may hold the core the peer needs.
 */
const SPIN_MS = 0.1;

// ---- doorbells ---------------------------------------------------------------------------------

const RUNG = 0;
const SLEEPING = 1;

let ownDoorbell: { words: Int32Array; state: BlockState } | null = null;

function doorbell(): { words: Int32Array; state: BlockState } {
  if (!ownDoorbell) {
    const block = allocate('process', 8);
    ownDoorbell = { words: int32s(block, 0, 2), state: blockState(block) };
  }
  return ownDoorbell;
}

/** The travelling form of this process's doorbell. */
export function doorbellState(): BlockState {
  return doorbell().state;
}

function ring(peer: Int32Array): void {
  Atomics.add(peer, RUNG, 1);
  if (Atomics.load(peer, SLEEPING) !== 0) wake(peer, RUNG, 1);
}

// ---- the poller --------------------------------------------------------------------------------

/** Watches the lanes of this process that have a receiver waiting (see the module comment). */
class Poller {
  private readonly waiting = new Set<Lane>();
  private scheduled = false;
  private sleep: AbortController | null = null;

  add(lane: Lane): void {
    // A frame that began to arrive earlier has already rung: take it now rather than wait for
    // another ring. (Anything later rings after this check, and this runs before the wake-up.)
    if (lane.hasData()) return lane.take();
    this.waiting.add(lane);
    this.schedule();
  }

  remove(lane: Lane): void {
    this.waiting.delete(lane);
    if (this.waiting.size === 0) this.sleep?.abort();
  }

  private schedule(): void {
    if (this.scheduled || this.sleep) return;
    this.scheduled = true;
    // After the current job and its microtasks: the calls made in the same turn send first.
    setImmediate(() => this.poll());
  }

  /** Hands over every lane whose frame has begun to arrive; true if there was one. */
  private deliver(): boolean {
    let any = false;
    for (const lane of this.waiting) {
      if (!lane.hasData()) continue;
      this.waiting.delete(lane);
      lane.take();
      any = true;
    }
    return any;
  }

  private poll(): void {
    this.scheduled = false;
    const words = doorbell().words;
    let seen = Atomics.load(words, RUNG);
    if (this.deliver()) return this.again();
    const deadline = performance.now() + SPIN_MS;
    for (let i = 1; this.waiting.size > 0; i++) {
      const rung = Atomics.load(words, RUNG);
      if (rung !== seen) {
        seen = rung;
        if (this.deliver()) return this.again();
      }
      if ((i & 127) === 0 && performance.now() >= deadline) {
        void this.sleepUntilRung(words);
        return;
      }
    }
  }

  /** Polls again once the receivers just handed their frames have run. */
  private again(): void {
    if (this.waiting.size > 0) this.schedule();
  }

  private async sleepUntilRung(words: Int32Array): Promise<void> {
    const controller = new AbortController();
    this.sleep = controller;
    try {
      for (;;) {
        const seen = Atomics.load(words, RUNG);
        Atomics.store(words, SLEEPING, 1);
        // A frame written before SLEEPING was visible rang without waking: look once more.
        if (this.deliver() || this.waiting.size === 0) break;
        await wait(words, RUNG, seen, null, controller.signal);
        Atomics.store(words, SLEEPING, 0);
        if (this.deliver()) break;
      }
    } catch {
      // Aborted: nobody waits any more.
    } finally {
      Atomics.store(words, SLEEPING, 0);
      this.sleep = null;
      this.again();
    }
  }
}

let poller: Poller | null = null;

// ---- lanes -------------------------------------------------------------------------------------

interface Receiver {
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** One session's two rings, seen from one side. */
export class Lane {
  private readonly inbox: ByteRing;
  private readonly outbox: ByteRing;
  private readonly peerDoorbell: Int32Array;
  private readonly closing = new AbortController();
  private receiver: Receiver | null = null;
  private writing: Promise<void> | null = null;
  private failure: Error | null = null;

  private constructor(buffer: ArrayBufferLike, side: 'client' | 'server', peerDoorbell: BlockState) {
    const words = new Int32Array(buffer, 0, 2 * RING_WORDS);
    const requests = new ByteRing(words.subarray(0, RING_WORDS), new Uint8Array(buffer, HEADER_BYTES, RING_BYTES));
    const replies = new ByteRing(words.subarray(RING_WORDS), new Uint8Array(buffer, HEADER_BYTES + RING_BYTES, RING_BYTES));
    this.inbox = side === 'client' ? replies : requests;
    this.outbox = side === 'client' ? requests : replies;
    this.peerDoorbell = int32s(attachBlock(peerDoorbell), 0, 2);
  }

  /** The client's half: a new segment, offered to the server by name. */
  static offer(): { segment: string; buffer: ArrayBufferLike } {
    const { name, buffer } = createPairSegment(LANE_BYTES);
    return { segment: name, buffer };
  }

  /** The client's lane once the server accepted the offer (`serverDoorbell` from its answer). */
  static forClient(buffer: ArrayBufferLike, serverDoorbell: BlockState): Lane {
    return new Lane(buffer, 'client', serverDoorbell);
  }

  /** The server's lane on a client's offer; throws when the segment cannot be mapped here. */
  static forServer(segment: string, clientDoorbell: BlockState): Lane {
    return new Lane(openPairSegment(segment), 'server', clientDoorbell);
  }

  get closed(): boolean {
    return this.failure !== null;
  }

  /** Sends one object (a request or a reply). Synchronous unless the frame outgrows the ring. */
  send(value: unknown): void {
    if (this.failure) throw this.failure;
    const frame = dumpsForProcess(value, 4);
    frame.writeUInt32LE(frame.length - 4, 0);
    if (!this.writing && frame.length <= this.outbox.free()) {
      this.outbox.write(frame); // whole: this side is the ring's only writer
      ring(this.peerDoorbell);
      return;
    }
    // Too big for the free space: stream it while the peer reads (in order after any earlier one).
    const previous = this.writing ?? Promise.resolve();
    const done = previous
      .then(() => {
        const first = this.outbox.write(frame);
        ring(this.peerDoorbell);
        return this.outbox.writeAll(frame.subarray(first), this.closing.signal);
      })
      .catch(() => {
        // The lane closed under the write: the peer is gone, and so is the frame.
      })
      .finally(() => {
        if (this.writing === done) this.writing = null;
      });
    this.writing = done;
  }

  /** Receives one object. EOFError (or the hang-up's error) once the lane is closed. */
  recv(signal?: AbortSignal): Promise<unknown> {
    if (this.failure) return Promise.reject(this.failure);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.receiver) return Promise.reject(new Error('a lane has one receiver at a time'));
    const frame = this.inbox.tryReadFrame();
    if (frame) return loads(frame);
    return new Promise<unknown>((resolve, reject) => {
      const onAbort = (): void => {
        if (this.receiver !== receiver) return;
        this.receiver = null;
        poller?.remove(this);
        reject(signal!.reason);
      };
      const receiver: Receiver = {
        resolve: (value) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(value);
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      this.receiver = receiver;
      signal?.addEventListener('abort', onAbort, { once: true });
      (poller ??= new Poller()).add(this);
    });
  }

  /** For the poller: some of the next frame has arrived. */
  hasData(): boolean {
    return this.inbox.available() > 0;
  }

  /** For the poller: read the frame that has begun to arrive and hand it to the receiver. */
  take(): void {
    const receiver = this.receiver;
    if (!receiver) return;
    const frame = this.inbox.tryReadFrame();
    const body = frame ? Promise.resolve(frame) : this.inbox.readFrame(this.closing.signal);
    body.then(
      (bytes) => {
        if (this.receiver !== receiver) return; // aborted or closed meanwhile
        this.receiver = null;
        loads(bytes).then(receiver.resolve, receiver.reject);
      },
      () => {
        // Closed mid-frame: close() rejected the receiver.
      },
    );
  }

  /** Ends the lane: a waiting receiver gets `error` (EOFError by default), later calls too. */
  close(error: Error = new EOFError()): void {
    if (this.failure) return;
    this.failure = error;
    this.closing.abort(error);
    poller?.remove(this);
    const receiver = this.receiver;
    this.receiver = null;
    if (!receiver) return;
    // The peer's last frame (the answer to a shutdown) may be complete in the ring: it counts.
    const frame = this.inbox.tryReadFrame();
    if (frame) loads(frame).then(receiver.resolve, receiver.reject);
    else receiver.reject(error);
  }
}
