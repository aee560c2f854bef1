/**
 * The shared-memory lane of a manager connection: requests and replies of one authenticated
 * session travel through two byte rings in a segment both processes map, instead of the socket.
 *
 * Why: a proxy call is one request and one reply. Over a socket each of them costs the other
 * process an event-loop wake-up (epoll, libuv, a callback), about 40 µs apiece on Node, where
 * Python's manager threads block in recv() and answer in half the time. Over the lane, a side that
 * waits for the next frame first spins for a moment (SPIN_MS): a reply that comes back within it
 * is taken with no wake-up and no system call. Only after the spin does the lane sleep on its
 * ring's futex (as a Python manager thread sleeps in recv), and the writer wakes it with one
 * system call.
 *
 * The socket stays open beside the lane, unread: its hang-up (the peer closed, died or shut down)
 * ends the lane, so a pending call fails at once as it would on a socket. The lane is offered by
 * the client on `accept_connection` and used only when the server could map the segment (both on
 * one machine, the addon loaded); otherwise the session simply stays on the socket.
 *
 * One poller per process (per thread) spins for all the lanes that have a receiver waiting, so
 * that concurrent calls, and a server's many sessions, share one spin.
 */
import { EOFError } from '../errors.js';
import { createPairSegment, openPairSegment, releasePairSegment, unlinkPairSegment } from '../heap.js';
import { dumpsForProcess } from '../connectionTransports.js';
import { ByteRing, LENGTH_BYTES, NO_FRAME, RING_WORDS } from '../ring.js';
import { decodeMessageAsync, sealFrame } from '../ringMessages.js';
import { runAsync } from '../futex.js';
import { abortable } from '../util.js';

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

// ---- the poller --------------------------------------------------------------------------------

/** Spins for the lanes of this process that have a receiver waiting (see the module comment). */
class Poller {
  private readonly waiting = new Set<Lane>();
  private scheduled = false;

  add(lane: Lane): void {
    this.waiting.add(lane);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // After the current job and its microtasks: the calls made in the same turn send first.
    setImmediate(() => this.poll());
  }

  remove(lane: Lane): void {
    this.waiting.delete(lane);
  }

  /** Hands over every lane whose next frame has begun to arrive; true if there was one. */
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
    const deadline = performance.now() + SPIN_MS;
    for (let i = 1; this.waiting.size > 0; i++) {
      if (this.deliver()) break;
      if ((i & 63) === 0 && performance.now() >= deadline) {
        // Nothing came: each lane sleeps on its own ring until its writer wakes it.
        for (const lane of this.waiting) lane.sleep();
        this.waiting.clear();
        return;
      }
    }
    // The receivers just handed their frames run first; then the others spin again.
    if (this.waiting.size > 0) this.schedule();
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
  private readonly closing = new AbortController();
  private receiver: Receiver | null = null;
  /** Set while a receiver sleeps on the inbox's futex; aborting it ends that wait. */
  private sleeping: AbortController | null = null;
  /** A frame is being read in pieces (it is larger than what had arrived). */
  private midFrame = false;
  private writing: Promise<void> | null = null;
  private failure: Error | null = null;

  private constructor(buffer: ArrayBufferLike, side: 'client' | 'server') {
    const words = new Int32Array(buffer, 0, 2 * RING_WORDS);
    const requests = new ByteRing(words.subarray(0, RING_WORDS), new Uint8Array(buffer, HEADER_BYTES, RING_BYTES));
    const replies = new ByteRing(words.subarray(RING_WORDS), new Uint8Array(buffer, HEADER_BYTES + RING_BYTES, RING_BYTES));
    this.inbox = side === 'client' ? replies : requests;
    this.outbox = side === 'client' ? requests : replies;
  }

  /** The client's half: a new segment, offered to the server by name. If the server declines,
   * call `withdraw(segment)`. */
  static offer(): { segment: string; buffer: ArrayBufferLike } {
    const { name, buffer } = createPairSegment(LANE_BYTES);
    return { segment: name, buffer };
  }

  /** Removes the name of an offer the server did not take. */
  static withdraw(segment: string): void {
    unlinkPairSegment(segment);
  }

  /** The server took the offer (and removed its name). */
  static taken(segment: string): void {
    releasePairSegment(segment);
  }

  /** The client's lane once the server accepted the offer. */
  static forClient(buffer: ArrayBufferLike): Lane {
    return new Lane(buffer, 'client');
  }

  /** The server's lane on a client's offer (the segment's name is removed once mapped); throws
   * when the segment cannot be mapped here. */
  static forServer(segment: string): Lane {
    return new Lane(openPairSegment(segment), 'server');
  }

  get closed(): boolean {
    return this.failure !== null;
  }

  /** Sends one object (a request or a reply). Synchronous unless the frame outgrows the ring. */
  send(value: unknown): void {
    if (this.failure) throw this.failure;
    const frame = sealFrame(dumpsForProcess(value, LENGTH_BYTES));
    if (!this.writing && frame.length <= this.outbox.free()) {
      this.outbox.write(frame); // whole: this side is the ring's only writer
      return;
    }
    // Too big for the free space: stream it while the peer reads (after any earlier frame).
    const done = (this.writing ?? Promise.resolve())
      .then(() => runAsync(this.outbox.writeAll(frame), this.closing.signal))
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
    const message = this.tryTake();
    if (message) return message;
    return abortable<unknown>(signal, (resolve, reject) => {
      const receiver: Receiver = { resolve, reject };
      this.receiver = receiver;
      (poller ??= new Poller()).add(this);
      return () => {
        // Aborted: this receiver no longer waits (a frame that arrives stays for the next one).
        if (this.receiver !== receiver) return;
        this.receiver = null;
        this.stopWaiting();
      };
    });
  }

  /** For the poller: some of the next frame has arrived. */
  hasData(): boolean {
    return this.inbox.available() > 0;
  }

  /** For the poller: nothing came during its spin; sleep on the inbox until the writer wakes us
   * (the ring counts us as a waiting reader, so its next write makes the system call). */
  sleep(): void {
    if (!this.receiver) return;
    const sleeping = new AbortController();
    this.sleeping = sleeping;
    runAsync(this.inbox.waitForData(), sleeping.signal).then(
      () => {
        if (this.sleeping !== sleeping) return;
        this.sleeping = null;
        this.take();
      },
      () => {
        // Woken by an abort or a close: they settle the receiver.
      },
    );
  }

  /** For the poller: read the frame that has begun to arrive and hand it to the receiver. */
  take(): void {
    const receiver = this.receiver;
    if (!receiver) return;
    const message = this.tryTake();
    if (message) return this.hand(receiver, message);
    this.midFrame = true;
    runAsync(this.inbox.readFrame(), this.closing.signal).then(
      (bytes) => {
        this.midFrame = false;
        this.hand(receiver, decodeMessageAsync(bytes, true));
      },
      () => {
        // Closed mid-frame: close() rejected the receiver.
      },
    );
  }

  /** The next message if it has fully arrived, decoded where it lies; null if not. */
  private tryTake(): Promise<unknown> | null {
    const message = this.inbox.tryDecodeFrame(decodeMessageAsync);
    return message === NO_FRAME ? null : message;
  }

  private hand(receiver: Receiver, message: Promise<unknown>): void {
    if (this.receiver !== receiver) {
      message.catch(() => {}); // aborted or closed meanwhile: the message stays unanswered
      return;
    }
    this.receiver = null;
    message.then(receiver.resolve, receiver.reject);
  }

  private stopWaiting(): void {
    poller?.remove(this);
    this.sleeping?.abort();
    this.sleeping = null;
  }

  /** Ends the lane: a waiting receiver gets `error` (EOFError by default), later calls too. */
  close(error: Error = new EOFError()): void {
    if (this.failure) return;
    this.failure = error;
    this.closing.abort(error);
    this.stopWaiting();
    const receiver = this.receiver;
    this.receiver = null;
    if (!receiver) return;
    // The peer's last frame (the answer to a shutdown) may be complete in the ring: it counts,
    // unless part of a frame has already been read (the ring's head is then inside a frame).
    const message = this.midFrame ? null : this.tryTake();
    if (message) message.then(receiver.resolve, receiver.reject);
    else receiver.reject(error);
  }
}
