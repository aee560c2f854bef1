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
 *   a tail can take more (`pendingFds`, `flushAll`).
 * `send()` therefore never blocks, as before, and nothing sent waits behind a blocked thread.
 */
import type { AsyncWait, NativeBinding } from './native.js';
import { OSError } from './errors.js';

/** Writers of this thread with bytes still to write. */
const withTail = new Set<SocketWriter>();

export class SocketWriter {
  /** Bytes the kernel has not taken yet, oldest first (the first may be partly written). */
  private readonly tail: Uint8Array[] = [];
  private waiting: AsyncWait | null = null;
  private readonly drained: Array<() => void> = [];

  /**
   * `alive()` is false once the socket is destroyed: its descriptor may then be closed and even
   * reused, so nothing is written any more. `onError` hears of a write that failed in the background.
   */
  constructor(
    private readonly native: NativeBinding,
    readonly fd: number,
    private readonly alive: () => boolean,
    private readonly onError: (error: OSError) => void,
  ) {}

  /** Some bytes are not written yet. */
  get pending(): boolean {
    return this.tail.length > 0;
  }

  /**
   * Writes `chunks` after anything still pending, as far as the socket takes them now; the rest is
   * written in the background. A chunk not `owned` (the caller's memory) is copied if it has to
   * wait, so changing it after send() returns changes nothing. Throws OSError (EPIPE, ...).
   */
  write(chunks: readonly Uint8Array[], owned: (chunk: Uint8Array) => boolean): void {
    for (const chunk of chunks) {
      let rest = chunk;
      if (this.tail.length === 0) {
        const n = this.native.writeSocket(this.fd, chunk, false);
        if (n === chunk.byteLength) continue;
        rest = chunk.subarray(n);
      }
      this.tail.push(owned(chunk) ? rest : Buffer.from(rest));
    }
    if (this.tail.length > 0) {
      withTail.add(this);
      this.waitWritable();
    }
  }

  /** Writes what the socket takes now. A failure drops the tail and is reported to onError. */
  flush(): void {
    try {
      while (this.tail.length > 0) {
        if (!this.alive()) {
          this.drop();
          return;
        }
        const head = this.tail[0]!;
        const n = this.native.writeSocket(this.fd, head, false);
        if (n < head.byteLength) {
          this.tail[0] = head.subarray(n);
          return;
        }
        this.tail.shift();
      }
    } catch (error) {
      this.drop();
      this.onError(error instanceof OSError ? error : new OSError(String(error)));
      return;
    } finally {
      if (this.tail.length === 0) this.done();
    }
  }

  /** Calls `callback` once nothing is pending (at once if nothing is). */
  whenDrained(callback: () => void): void {
    if (this.tail.length === 0) callback();
    else this.drained.push(callback);
  }

  /** Forgets what is pending (the socket is going away) and stops waiting on its descriptor. */
  drop(): void {
    this.tail.length = 0;
    this.done();
  }

  private waitWritable(): void {
    if (this.waiting) return;
    const waiting = this.native.pollAsync(this.fd, true);
    this.waiting = waiting;
    void waiting.promise.then(
      (result) => {
        if (this.waiting !== waiting) return;
        this.waiting = null;
        if (result === 'cancelled') return;
        this.flush();
        if (this.tail.length > 0) this.waitWritable();
      },
      (error: unknown) => {
        if (this.waiting !== waiting) return;
        this.waiting = null;
        this.drop();
        this.onError(error instanceof OSError ? error : new OSError(String(error)));
      },
    );
  }

  private done(): void {
    withTail.delete(this);
    if (this.waiting) {
      const waiting = this.waiting;
      this.waiting = null;
      waiting.cancel();
    }
    for (const callback of this.drained.splice(0)) callback();
  }

  /** Descriptors of this thread's sockets with bytes pending (for readSocket's writeFds). */
  static pendingFds(): number[] {
    const fds: number[] = [];
    for (const writer of withTail) if (fds.length < 64) fds.push(writer.fd);
    return fds;
  }

  /** Writes what each socket with bytes pending takes now. */
  static flushAll(): void {
    for (const writer of [...withTail]) writer.flush();
  }
}
