/**
 * Writes a socket Connection's messages through the addon instead of through Node's stream.
 *
 * Node writes what the kernel does not take at once later, from the event loop. A thread blocked
 * in `recvSync` runs no event loop, so the rest of a large send would wait until it returns, and a
 * peer that needs that rest before it answers would never answer: a deadlock Python's blocking
 * `send` cannot have. Here what the kernel does not take at once stays in a tail that this module
 * owns, and is written
 * - while the event loop runs: when one of the addon's threads reports the socket writable
 *   (`pollAsync`; the pending wait keeps the program alive, as Node's unflushed writes do);
 * - while the thread is blocked in a socket `recvSync`: `readSocket` also wakes when a socket with
 *   a tail can take more (`pendingFds`, `flushAll`); in any other blocking call, between the slices
 *   of its wait (src/blocking.ts);
 * - at once and in full (`writeAll`) once the connection is read with blocking calls, as Python's
 *   `send` does: then a send followed by any other blocking call (a `Queue.getSync`) cannot leave
 *   half a message behind;
 * - before a child process exits (an exit finalizer waits for every tail, as queues flush).
 *
 * On an end that several threads or processes hold (`useLock`), a writer writes only while it holds
 * the end's send locks (src/messageLock.ts: one between this process's threads, one between
 * processes): from the first byte of a send until its tail is empty. A send that finds another
 * thread or process in the middle of its messages waits for them (blocking, as Python's send
 * waits for the kernel), so that what a send has accepted when it returns goes out before anything
 * sent after it anywhere (CPython's `_TestBarrier.test_thousand` relies on it).
 */
import type { AsyncWait, NativeBinding } from './native.js';
import { OSError } from './errors.js';
import { finalize, type FinalizeHandle } from './util.js';
import { blockThread, handOverBeforeBlocking } from './blocking.js';
import type { MessageLock } from './messageLock.js';

/** Writers of this thread with bytes still to write. */
const withTail = new Set<SocketWriter>();
const EMPTY = new Uint8Array(0);
const NO_FDS: readonly number[] = Object.freeze([]);
let drainAtExit: FinalizeHandle | undefined;

function asOSError(error: unknown): OSError {
  if (error instanceof OSError) return error;
  const e = error as { message?: string; code?: string };
  return new OSError(e?.message ?? String(error), e?.code);
}

export class SocketWriter {
  /** Bytes the kernel has not taken yet, oldest first from `head` (that one may be partly
   * written). A head index, not shift(): a fast sender can be thousands of messages ahead. */
  private tail: Uint8Array[] = [];
  private head = 0;
  private waiting: AsyncWait | null = null;
  /** The send locks of an end shared by threads or processes: all held while anything is pending,
   * taken in this order (the one between threads first, in every thread of every process) and
   * released in the reverse one. */
  private readonly locks: MessageLock[] = [];
  private readonly drained: Array<() => void> = [];
  /** The addon could not wait for this socket (out of descriptors or threads): Node's stream writes. */
  degraded = false;

  /**
   * `alive()` is false once the socket is destroyed: its descriptor may then be closed and even
   * reused, so nothing is written any more. `onError` hears of a write that failed in the
   * background; `handOver` takes the tail when this writer degrades to Node's stream.
   */
  constructor(
    private readonly native: NativeBinding,
    readonly fd: number,
    private readonly alive: () => boolean,
    private readonly onError: (error: OSError) => void,
    private readonly handOver: (chunks: Uint8Array[]) => void,
  ) {}

  /** From now on, this end is shared with other threads or processes: write only while holding
   * `lock` too. */
  useLock(lock: MessageLock, betweenProcesses: boolean): void {
    if (betweenProcesses) this.locks.push(lock);
    else this.locks.unshift(lock);
    // What is pending was sent before the end was shared: it goes first (the lock is new).
    if (this.pending) lock.tryAcquire();
  }

  private acquireLocks(): void {
    for (const lock of this.locks) lock.acquireSync(-1);
  }

  private releaseLocks(): void {
    for (let i = this.locks.length - 1; i >= 0; i--) this.locks[i]!.release();
  }

  /** Some bytes are not written yet. */
  get pending(): boolean {
    return this.head < this.tail.length;
  }

  /**
   * Writes `chunks` after anything still pending, as far as the socket takes them now; the rest is
   * written in the background. A chunk not `owned` (the caller's memory) is copied if it has to
   * wait, so changing it after send() returns changes nothing. Throws OSError (EPIPE, ...) only
   * if nothing of this message was written.
   */
  write(chunks: readonly Uint8Array[], owned: (chunk: Uint8Array) => boolean): void {
    if (!this.pending) this.acquireLocks();
    try {
      for (const chunk of chunks) {
        let rest = chunk;
        if (!this.pending) {
          const n = this.native.writeSocket(this.fd, chunk, false);
          if (n === chunk.byteLength) continue;
          rest = chunk.subarray(n);
        }
        this.tail.push(owned(chunk) ? rest : Buffer.from(rest));
      }
    } finally {
      // A failed write (EPIPE) leaves nothing pending: the other senders must not wait for it.
      if (this.pending) this.waitWritable();
      else this.releaseLocks();
    }
  }

  /** Writes what is pending and then `chunks`, all of it, blocking this thread while the socket is
   * full (through blockThread: what else this thread has buffered is handed over meanwhile). */
  writeAll(chunks: readonly Uint8Array[]): void {
    if (!this.pending) this.acquireLocks();
    // Nothing pending is the usual case (a request/response loop): no copy of the chunks then.
    const all = this.pending ? [...this.takeTail(), ...chunks] : chunks;
    this.done();
    try {
      for (let rest of all) {
        blockThread(
          -1,
          (ms) => {
            if (!this.alive()) throw new OSError('[Errno 9] Bad file descriptor', 'EBADF');
            rest = rest.subarray(this.native.writeSocket(this.fd, rest, ms));
            return rest.byteLength === 0;
          },
          (written) => !written,
        );
      }
    } finally {
      this.releaseLocks();
    }
  }

  /** Writes what the socket takes now. A failure drops the tail and is reported to onError. */
  flush(): void {
    try {
      while (this.pending) {
        if (!this.alive()) {
          this.takeTail();
          return;
        }
        const first = this.tail[this.head]!;
        const n = this.native.writeSocket(this.fd, first, false);
        if (n < first.byteLength) {
          this.tail[this.head] = first.subarray(n);
          return;
        }
        this.tail[this.head++] = EMPTY;
      }
    } catch (error) {
      this.takeTail();
      this.onError(asOSError(error));
    } finally {
      if (this.pending) this.compact();
      else {
        this.done();
        this.releaseLocks();
      }
    }
  }

  /** Removes and returns what is pending. */
  private takeTail(): Uint8Array[] {
    const rest = this.tail.slice(this.head);
    this.tail = [];
    this.head = 0;
    return rest;
  }

  /** Drops the written entries once they are most of the array. */
  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.tail.length) {
      this.tail = this.tail.slice(this.head);
      this.head = 0;
    }
  }

  /** Calls `callback` once nothing is pending (at once if nothing is). */
  whenDrained(callback: () => void): void {
    if (!this.pending) callback();
    else this.drained.push(callback);
  }

  /** Forgets what is pending (the socket is going away) and stops waiting on its descriptor. */
  drop(): void {
    this.takeTail();
    this.done();
    this.releaseLocks();
  }

  private waitWritable(): void {
    withTail.add(this);
    handOverBeforeBlocking(writeTailsBeforeBlocking);
    drainAtExit ??= finalize(() => SocketWriter.drained(), -5);
    if (this.waiting) return;
    let waiting: AsyncWait;
    try {
      waiting = this.native.pollAsync(this.fd, true);
    } catch {
      // No descriptor or thread for the wait: let Node's stream write the rest, and all after it.
      this.degraded = true;
      const rest = this.takeTail();
      this.done();
      this.releaseLocks();
      this.handOver(rest);
      return;
    }
    this.waiting = waiting;
    void waiting.promise.then(
      (result) => {
        if (this.waiting !== waiting) return;
        this.waiting = null;
        if (result === 'cancelled') return;
        this.flush();
        if (this.pending) this.waitWritable();
      },
      (error: unknown) => {
        if (this.waiting !== waiting) return;
        this.waiting = null;
        this.drop();
        this.onError(asOSError(error));
      },
    );
  }

  private done(): void {
    this.tail = [];
    this.head = 0;
    withTail.delete(this);
    if (this.waiting) {
      const waiting = this.waiting;
      this.waiting = null;
      waiting.cancel();
    }
    if (this.drained.length > 0) for (const callback of this.drained.splice(0)) callback();
  }

  /**
   * Descriptors of this thread's sockets with bytes pending, for readSocket's writeFds (it watches
   * at most 64; others are written when the event loop runs again).
   */
  static pendingFds(): readonly number[] {
    // Called before every blocking read: no array is made when nothing is pending (the usual case).
    if (withTail.size === 0) return NO_FDS;
    const fds: number[] = [];
    for (const writer of withTail) if (fds.length < 64) fds.push(writer.fd);
    return fds;
  }

  /** Writes what each socket with bytes pending takes now. */
  static flushAll(): void {
    for (const writer of [...withTail]) writer.flush();
  }

  /** Resolves once every socket of this thread has written what was sent. */
  static drained(): Promise<void> {
    return Promise.all([...withTail].map((w) => new Promise<void>((resolve) => w.whenDrained(resolve)))).then(() => {});
  }
}

/** What this thread's sockets still have to write, written as far as they take it now (a blocking
 * call of this thread would otherwise hold it back). */
function writeTailsBeforeBlocking(): boolean {
  SocketWriter.flushAll();
  return withTail.size === 0;
}
