/**
 * Waiting, written once: on a 32-bit word (every lock, semaphore, condition, event, barrier, queue
 * and ring waits here), with timeouts in seconds as in Python, AbortSignal, and a short spin
 * before sleeping. Also the two things every waiting call shares:
 *
 * - deadlines: `deadlineAfter(timeout)` turns Python's timeout (null/undefined: forever; negative
 *   or NaN: do not wait) into a performance.now() deadline (Infinity: none), and
 *   `secondsUntil(deadline)` gives what is left;
 * - algorithms written once as generators that yield "park on this word until this deadline"
 *   steps: `runAsync` drives one with `wait` (never blocking the event loop), `runSync` with
 *   `waitSync` (the `*Sync` variants).
 *
 * Two kinds of memory, chosen by the buffer behind the Int32Array:
 * - a plain `SharedArrayBuffer` (objects of the 'thread' start method): `Atomics.wait`,
 *   `Atomics.waitAsync` and `Atomics.notify`. No native addon is involved, ever.
 * - process-shared memory mapped by the addon (objects of 'spawn'/'forkserver'): the addon's
 *   process-shared futex, blocking or on the addon's own waiter threads. `Atomics.wait/notify` do
 *   not work across processes (and not at all on the external ArrayBuffer Node 20 gives us).
 */
import { blockThread } from './blocking.js';
import { isNativeBuffer, loadNative, type NativeBinding } from './native.js';

export type WaitResult = 'ok' | 'not-equal' | 'timed-out';

/** Buffers that must be waited on with the addon even though they are SharedArrayBuffers. */
const processShared = new WeakSet<object>();

/** Marks memory mapped from a process-shared segment (heap.ts does this for every arena). */
export function markProcessShared(buffer: ArrayBufferLike): void {
  processShared.add(buffer);
}

/** Whether waiting on this buffer needs the addon's futex (true for anything that is not a plain
 * SharedArrayBuffer of this process). */
export function isProcessShared(buffer: ArrayBufferLike): boolean {
  return !(buffer instanceof SharedArrayBuffer) || processShared.has(buffer) || isNativeBuffer(buffer);
}

let nativeBinding: NativeBinding | undefined;
function native(): NativeBinding {
  return (nativeBinding ??= loadNative());
}

// ---- deadlines ----------------------------------------------------------------------------------

/** The performance.now() deadline `timeout` seconds from now: Infinity for none (null, undefined,
 * Infinity), now for a timeout that is not positive (negative and NaN count as 0, as in Python). */
export function deadlineAfter(timeout: number | null | undefined): number {
  if (timeout === null || timeout === undefined) return Infinity;
  if (!(timeout > 0)) return performance.now();
  return performance.now() + timeout * 1000;
}

/** Seconds left until `deadline` (0 once it has passed), or null for none: a timeout again. */
export function secondsUntil(deadline: number): number | null {
  return deadline === Infinity ? null : Math.max(0, (deadline - performance.now()) / 1000);
}

/** Seconds (null/undefined = forever, negative = 0) to milliseconds (-1 = forever). */
export function timeoutMs(timeout: number | null | undefined): number {
  if (timeout === null || timeout === undefined) return -1;
  if (!(timeout > 0)) return 0; // also NaN
  if (timeout === Infinity) return -1;
  return timeout * 1000;
}

// A short spin before sleeping: a lock released a few microseconds later is taken without a
// syscall and without a trip through the event loop. Kept short: on a 2-core machine a long spin
// steals the CPU from the very process that is about to release.
const SPIN = 400;

function spin(i32: Int32Array, index: number, expected: number): boolean {
  for (let i = 0; i < SPIN; i++) {
    if (Atomics.load(i32, index) !== expected) return true;
  }
  return false;
}

/** Polls `done()` for up to `ms` milliseconds; true as soon as it is true. A peer that answers in
 * microseconds is caught without a sleep and a wake-up (a system call on each side); callers keep
 * `ms` short and spin only where an answer is likely (one task in flight, a worker that has just
 * sent its results). */
export function spinUntil(done: () => boolean, ms: number): boolean {
  const until = performance.now() + ms;
  do {
    for (let i = 0; i < 64; i++) if (done()) return true;
  } while (performance.now() < until);
  return false;
}

/** After this many spins in a row that caught nothing, a SpinBackoff spins once per 2^n waits. */
const MAX_SPIN_BACKOFF = 6;

/**
 * Whether a waiter spins for an answer (spinUntil) before it waits asynchronously: yes while
 * answers come within the spin; after a spin that caught nothing, only once in 2, 4, ... 64 waits,
 * until one comes within the spin again. A peer whose answers are slow, or a machine so loaded
 * that the peer waits for a CPU (where a spinning waiter only delays it), costs next to nothing.
 */
export class SpinBackoff {
  private failures = 0;
  private skip = 0;

  shouldSpin(): boolean {
    if (this.skip === 0) return true;
    this.skip--;
    return false;
  }

  /** A spin caught its answer, or not. */
  spun(caught: boolean): void {
    this.failures = caught ? 0 : Math.min(this.failures + 1, MAX_SPIN_BACKOFF);
    this.skip = (1 << this.failures) - 1;
  }
}

// ---- keeping the event loop alive -----------------------------------------------------------
// A pending Atomics.waitAsync does not keep Node's event loop alive: without a ref'd handle a
// program awaiting `lock.acquire()` would exit silently with code 0. One shared interval timer is
// held while any such wait is pending.
let pendingWaits = 0;
let keepAliveTimer: ReturnType<typeof setInterval> | undefined;

function holdLoop(): void {
  if (pendingWaits++ === 0) keepAliveTimer = setInterval(() => {}, 0x3fffffff);
}

function releaseLoop(): void {
  if (--pendingWaits === 0 && keepAliveTimer !== undefined) {
    clearInterval(keepAliveTimer);
    keepAliveTimer = undefined;
  }
}

// Atomics.waitAsync is ES2024; the project's lib is ES2022.
type WaitAsyncResult = { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
const waitAsync = (Atomics as unknown as {
  waitAsync(i32: Int32Array, index: number, expected: number, timeout?: number): WaitAsyncResult;
}).waitAsync;

/** A wait that does not block the event loop, on thread memory (Atomics) or process memory (the
 * addon); it keeps the event loop alive unless `daemon` (see `wait`). */
type AsyncWait = (i32: Int32Array, index: number, expected: number, ms: number, signal: AbortSignal | undefined, daemon: boolean) => Promise<WaitResult>;

const atomicsWaitAsync: AsyncWait = (i32, index, expected, ms, signal, daemon) => {
  const r = waitAsync(i32, index, expected, ms < 0 ? Infinity : ms);
  if (!r.async) return Promise.resolve(r.value);
  if (!daemon) holdLoop();
  const release = daemon ? () => {} : releaseLoop;
  return new Promise<WaitResult>((resolve, reject) => {
    let settled = false;
    const onAbort = (): void => {
      if (settled) return;
      settled = true;
      release();
      reject(signal!.reason);
      // An Atomics.waitAsync cannot be cancelled. If the abandoned wait later consumes a notify,
      // pass the wake on so that no real waiter misses it.
      void r.value.then((v) => {
        if (v === 'ok') Atomics.notify(i32, index, 1);
      });
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    void r.value.then((v) => {
      if (settled) return;
      settled = true;
      release();
      signal?.removeEventListener('abort', onAbort);
      resolve(v);
    });
  });
};

const nativeWaitAsync: AsyncWait = (i32, index, expected, ms, signal, daemon) => {
  const job = native().futexWaitAsync(i32, index, expected, ms, { ref: !daemon });
  return new Promise<WaitResult>((resolve, reject) => {
    let settled = false;
    const onAbort = (): void => {
      if (settled) return;
      settled = true;
      // The addon passes on a wake that the cancelled wait had already consumed.
      job.cancel();
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    job.promise.then(
      (v) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        // 'not-equal' from the wait thread: the word still equalled `expected` when wait() was
        // called (checked there), so it changed since: a wake, as Atomics.waitAsync reports it.
        resolve(v === 'cancelled' || v === 'not-equal' ? 'ok' : v);
      },
      (error: unknown) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
};

/**
 * Waits until `i32[index]` is no longer `expected` (or a wake arrives), without blocking the event
 * loop. Resolves `'not-equal'` at once if the word already differs, `'ok'` after a wake (which may
 * be spurious: callers re-check their condition), `'timed-out'` after `timeout` seconds
 * (null/undefined: forever). An aborted `signal` rejects with `signal.reason` and cancels the wait.
 * The wait keeps the event loop alive, as the program waits on it; a `daemon` wait does not (the
 * wait of Python's daemon thread, which does not keep its process alive: a queue feeder after
 * `cancelJoinThread()`).
 */
export function wait(
  i32: Int32Array,
  index: number,
  expected: number,
  timeout: number | null | undefined,
  signal?: AbortSignal,
  daemon = false,
): Promise<WaitResult> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  if (Atomics.load(i32, index) !== expected) return Promise.resolve('not-equal');
  if (spin(i32, index, expected)) return Promise.resolve('ok');
  const ms = timeoutMs(timeout);
  if (ms === 0) return Promise.resolve('timed-out');
  return isProcessShared(i32.buffer)
    ? nativeWaitAsync(i32, index, expected, ms, signal, daemon)
    : atomicsWaitAsync(i32, index, expected, ms, signal, daemon);
}

const timedOut = (result: WaitResult): boolean => result === 'timed-out';

/**
 * The blocking form of `wait` (for `*Sync` methods): blocks this thread, through blockThread (which
 * first hands over what this thread has buffered). `Atomics.wait` is allowed on Node's main thread
 * (unlike a browser's).
 */
export function waitSync(i32: Int32Array, index: number, expected: number, timeout: number | null | undefined): WaitResult {
  if (Atomics.load(i32, index) !== expected) return 'not-equal';
  const ms = timeoutMs(timeout);
  if (isProcessShared(i32.buffer)) {
    return blockThread(ms, (slice) => native().futexWait(i32, index, expected, slice), timedOut); // spins first itself
  }
  if (spin(i32, index, expected)) return 'ok';
  if (ms === 0) return 'timed-out';
  return blockThread(ms, (slice) => Atomics.wait(i32, index, expected, slice < 0 ? Infinity : slice), timedOut);
}

/** Wakes up to `count` waiters of `i32[index]` in any thread or process; returns how many woke
 * (for process-shared memory: how many the kernel woke). */
export function wake(i32: Int32Array, index: number, count = 0x7fffffff): number {
  if (isProcessShared(i32.buffer)) return native().futexWake(i32, index, count);
  return Atomics.notify(i32, index, count);
}

// ---- algorithms as steps -------------------------------------------------------------------------

/** A step of a waiting algorithm: sleep until `i32[index]` is no longer `expected`, a wake, or
 * `deadline` (performance.now(); Infinity for none). The algorithm receives the WaitResult. */
export interface Park {
  i32: Int32Array;
  index: number;
  expected: number;
  deadline: number;
}
/** A step that runs `call` (a Barrier's action): the async driver awaits what it returns. */
export interface Call {
  call: () => unknown;
}
export type Step = Park | Call;
/** A waiting algorithm, written once for both drivers. */
export type Steps<T> = Generator<Step, T, unknown>;

export function park(i32: Int32Array, index: number, expected: number, deadline = Infinity): Park {
  return { i32, index, expected, deadline };
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/** Runs an algorithm to completion, blocking this thread while it parks. */
export function runSync<T>(g: Steps<T>): T {
  let r = g.next();
  while (!r.done) {
    const step = r.value;
    if (!('call' in step)) {
      r = g.next(waitSync(step.i32, step.index, step.expected, secondsUntil(step.deadline)));
      continue;
    }
    let out: unknown;
    try {
      out = step.call();
    } catch (error) {
      r = g.throw(error);
      continue;
    }
    // A *Sync caller cannot wait for a Promise: it runs on, and a rejection is reported, not lost.
    if (isThenable(out)) out.then(undefined, (error: unknown) => process.emitWarning(`unhandled rejection in an action run by a *Sync call: ${String(error)}`));
    r = g.next(out);
  }
  return r.value;
}

/** Runs an algorithm to completion without blocking. An abort is thrown into the algorithm at its
 * current park, which cleans up (maybe waiting more, without the signal) and rethrows. Its waits
 * keep the event loop alive unless `daemon` (see `wait`). */
export async function runAsync<T>(g: Steps<T>, signal?: AbortSignal, daemon = false): Promise<T> {
  let sig = signal;
  let r = g.next();
  while (!r.done) {
    const step = r.value;
    let input: unknown;
    try {
      if ('call' in step) input = await step.call();
      else input = await wait(step.i32, step.index, step.expected, secondsUntil(step.deadline), sig, daemon);
    } catch (error) {
      if (!('call' in step)) sig = undefined;
      r = g.throw(error);
      continue;
    }
    r = g.next(input);
  }
  return r.value;
}
