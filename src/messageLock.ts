/**
 * One reader and one writer at a time on a socket end that several threads or processes hold (a
 * Pipe end passed to children shares its socket: each reads and writes the same kernel stream
 * through a descriptor of its own).
 *
 * A message is a header and a payload, read (and, once the socket is full, written) in several
 * system calls, possibly across turns of the event loop. Two threads doing that at once would cut
 * each other's messages. Python leaves this to the user (a Lock around `recv`, as its Queue does);
 * between threads we can do better at the cost of two atomic operations per message: the words
 * live in a SharedArrayBuffer that travels with the end to every thread it reaches
 * (connectionTransports.ts: `SocketTransport.reduce`). A receiver holds its lock for one whole
 * message; a sender from its first byte until all it has sent is written (socketWriter.ts).
 *
 * Between processes only the send lock is kept, in process-shared memory that travels with the
 * end: Python's `send` returns once its bytes are in the kernel, so two processes that order their
 * sends (a Lock and a Barrier, as CPython's `_TestBarrier.test_thousand`) see them arrive in that
 * order. Ours may return with bytes still to write (socketWriter.ts), so a send in another process
 * waits until they are. Receives between processes stay Python's: the user's lock orders them.
 *
 * A lock word holds its holder's pid (0: free; a flag says someone waits). A waiter that finds the
 * holder's process gone (or a zombie) takes the lock over: what that process had not written is
 * lost, as with Python's killed sender. A thread terminated while it holds a lock (in the middle of
 * a message, or with sends the socket had no room for yet) leaves it taken, as its process lives
 * on, and the others' receives (or sends) on that end wait for ever, as Python's would on a Queue
 * whose lock a killed process held; for the send lock between processes, that includes the other
 * processes' sends.
 */
import { secondsUntil, wait, waitSync, wake } from './futex.js';
import { processAlive } from './util.js';

/** Word indexes in the Int32Array `newEndLocks` makes. */
export const RECEIVE_LOCK = 0;
export const SEND_LOCK = 1;
/** 1 + the byte offset of the end's send lock between processes in its segment, once the end has
 * been passed to a process (0 before); the segment's name follows, from byte NAME_AT. */
const PROCESS_LOCK_AT = 2;
const NAME_AT = 12;
const NAME_BYTES = 64;

/** The words of one end between threads: a receive lock and a send lock (0 free, else the
 * holder's pid), and where the send lock between processes is once there is one. */
export function newEndLocks(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(NAME_AT + NAME_BYTES));
}

/** Where the send lock between processes of an end is: in a segment of process memory. */
export interface ProcessLockPlace {
  segment: string;
  offset: number;
}

/**
 * Tells every thread that shares the end (through its `words`) where the end's send lock between
 * processes is: a thread that got the end before it was passed to a process finds it there.
 */
export function publishProcessLock(words: Int32Array, place: ProcessLockPlace): void {
  const name = Buffer.from(place.segment, 'utf8');
  if (name.byteLength > NAME_BYTES) throw new RangeError(`segment name too long: ${place.segment}`);
  new Uint8Array(words.buffer, NAME_AT, NAME_BYTES).set(name);
  Atomics.store(words, PROCESS_LOCK_AT, place.offset + 1);
}

/** The place `publishProcessLock` wrote, or null. */
export function publishedProcessLock(words: Int32Array): ProcessLockPlace | null {
  const at = Atomics.load(words, PROCESS_LOCK_AT);
  if (at === 0) return null;
  const name = Buffer.from(words.buffer as SharedArrayBuffer, NAME_AT, NAME_BYTES);
  const end = name.indexOf(0);
  return { segment: name.toString('utf8', 0, end < 0 ? NAME_BYTES : end), offset: at - 1 };
}

/** How often a waiter looks whether another process holding the lock still exists. */
const HOLDER_CHECK_SECONDS = 1;

/** Set in a lock word by a waiter, so that the release knows to wake (a futex wake is a system
 * call for process memory: an uncontended release makes none). Pids are below 2^22 on Linux. */
const WAITERS = 1 << 30;

export class MessageLock {
  #held = false;

  constructor(private readonly words: Int32Array, private readonly index: number) {}

  /** This thread holds it: it is in the middle of a message. */
  get held(): boolean {
    return this.#held;
  }

  /** Takes the lock if it is free (true also when this thread holds it already). */
  tryAcquire(): boolean {
    if (!this.#held && Atomics.compareExchange(this.words, this.index, 0, process.pid) === 0) this.#held = true;
    return this.#held;
  }

  /** The word to wait on while the lock is taken (WAITERS set), or 0 if it is free now. A release
   * wakes every waiter, and each marks the word again before it waits again. */
  #markWaiting(): number {
    for (;;) {
      const word = Atomics.load(this.words, this.index);
      if (word === 0 || word & WAITERS) return word;
      if (Atomics.compareExchange(this.words, this.index, word, word | WAITERS) === word) return word | WAITERS;
    }
  }

  /** Blocks this thread until it holds the lock, or `timeoutMs` (< 0: for ever) passes (false). */
  acquireSync(timeoutMs: number): boolean {
    const deadline = timeoutMs < 0 ? Infinity : performance.now() + timeoutMs;
    while (!this.tryAcquire()) {
      const word = this.#markWaiting();
      if (word === 0) continue;
      const slice = Math.min(HOLDER_CHECK_SECONDS, secondsUntil(deadline) ?? Infinity);
      if (waitSync(this.words, this.index, word, slice) !== 'timed-out') continue;
      if (performance.now() >= deadline) return this.tryAcquire();
      const holder = word & ~WAITERS;
      // The holder's process is gone: free the word and wake the other waiters to race for it.
      if (holder !== process.pid && !processAlive(holder) && Atomics.compareExchange(this.words, this.index, word, 0) === word) {
        wake(this.words, this.index);
      }
    }
    return true;
  }

  /** Calls `then` once the lock may have been released (try again then), unless the function
   * returned is called first. The pending wait keeps the event loop alive. */
  onceFree(then: () => void): () => void {
    const controller = new AbortController();
    let live = true;
    const word = this.#markWaiting();
    if (word === 0) queueMicrotask(() => live && then()); // free already
    else {
      wait(this.words, this.index, word, null, controller.signal).then(
        () => live && then(),
        () => {}, // cancelled
      );
    }
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
    if (Atomics.exchange(this.words, this.index, 0) & WAITERS) wake(this.words, this.index);
  }
}
