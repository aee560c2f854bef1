/**
 * One reader and one writer at a time on a socket end that several threads of this process hold
 * (a Pipe end passed to thread children shares its socket: each thread reads and writes the same
 * kernel stream through a descriptor of its own).
 *
 * A message is a header and a payload, read (and, once the socket is full, written) in several
 * system calls, possibly across turns of the event loop. Two threads doing that at once would cut
 * each other's messages. Python leaves this to the user (a Lock around `recv`, as its Queue does);
 * between threads we can do better at the cost of two atomic operations per message: the words
 * live in a SharedArrayBuffer that travels with the end to every thread it reaches
 * (connectionTransports.ts: `SocketTransport.reduce`). A receiver holds its lock for one whole
 * message; a sender from its first byte until all it has sent is written (socketWriter.ts).
 * Processes sharing an end are not covered (a SharedArrayBuffer does not reach them): there
 * Python's caveat stands.
 *
 * A thread terminated while it holds a lock (in the middle of a message, or with sends the socket
 * had no room for yet) leaves it taken, and the other threads' receives (or sends) on that end
 * wait for ever, as Python's would on a Queue whose lock a killed process held.
 */
import { secondsUntil, wait, waitSync, wake } from './futex.js';

/** Word indexes in the Int32Array `newEndLocks` makes. */
export const RECEIVE_LOCK = 0;
export const SEND_LOCK = 1;

/** The two words of one end: a receive lock and a send lock (0 free, 1 taken). */
export function newEndLocks(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT));
}

export class MessageLock {
  #held = false;

  constructor(private readonly words: Int32Array, private readonly index: number) {}

  /** This thread holds it: it is in the middle of a message. */
  get held(): boolean {
    return this.#held;
  }

  /** Takes the lock if it is free (true also when this thread holds it already). */
  tryAcquire(): boolean {
    if (!this.#held && Atomics.compareExchange(this.words, this.index, 0, 1) === 0) this.#held = true;
    return this.#held;
  }

  /** Blocks this thread until it holds the lock, or `timeoutMs` (< 0: for ever) passes (false). */
  acquireSync(timeoutMs: number): boolean {
    const deadline = timeoutMs < 0 ? Infinity : performance.now() + timeoutMs;
    while (!this.tryAcquire()) {
      if (waitSync(this.words, this.index, 1, secondsUntil(deadline)) === 'timed-out') return this.tryAcquire();
    }
    return true;
  }

  /** Calls `then` once the lock may have been released (try again then), unless the function
   * returned is called first. The pending wait keeps the event loop alive. */
  onceFree(then: () => void): () => void {
    const controller = new AbortController();
    let live = true;
    wait(this.words, this.index, 1, null, controller.signal).then(
      () => live && then(),
      () => {}, // cancelled
    );
    return () => {
      live = false;
      controller.abort();
    };
  }

  /** Ends this thread's message (nothing if it holds no lock). Every waiter wakes and tries again:
   * one of them may have stopped wanting it. */
  release(): void {
    if (!this.#held) return;
    this.#held = false;
    Atomics.store(this.words, this.index, 0);
    wake(this.words, this.index);
  }
}
