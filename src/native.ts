/**
 * Loads the native addon (native/mp_native.c): POSIX shared memory, process-shared futex wait/wake
 * on the addon's own threads, socket pairs and their blocking reads. The 'thread' start method
 * needs it only for a Pipe end passed to a thread child or read with recvSync.
 *
 * Load order: `$MULTIPROCESSING_TS_NATIVE` (a path, for development), the prebuilt binary shipped in
 * native/prebuilds/<platform>-<arch>/, then a local build in native/build/Release/.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { isMainThread, threadId } from 'node:worker_threads';
import { FileExistsError, FileNotFoundError, NotAvailableError, OSError, PermissionError } from './errors.js';
import { packageFilesMissing, packagePath } from './packageFiles.js';

type WaitResult = 'ok' | 'not-equal' | 'timed-out';

/** A pending `futexWaitAsync`. */
export interface AsyncWait {
  /** Settles with the wait's outcome, or `'cancelled'` after `cancel()`. */
  readonly promise: Promise<WaitResult | 'cancelled'>;
  /** Settles the promise with `'cancelled'` at once and releases the waiter thread; false if the
   * wait had already settled. A cancelled wait that had consumed a wake passes it on. */
  cancel(): boolean;
  /** Whether the pending wait keeps the event loop alive (it does by default). */
  ref(): void;
  unref(): void;
}

interface ShmMapping {
  /** The mapping itself: a `SharedArrayBuffer` when the runtime can wrap outside memory
   * (`shared === true`), else an external `ArrayBuffer`. */
  buffer: ArrayBuffer | SharedArrayBuffer;
  /** The segment's actual size in bytes. */
  size: number;
  shared: boolean;
}

export interface NativeBinding {
  /** `shm_open` + `ftruncate` (create) + `mmap(MAP_SHARED)`; the fd is closed after mapping.
   * `name` has its leading slash. Throws `FileNotFoundError`, `FileExistsError`, `PermissionError`
   * or `OSError` with Python's message and `.code`/`.errno`. */
  shmOpen(name: string, create: boolean, exclusive: boolean, size: number): ShmMapping;
  shmUnlink(name: string): void;
  /** Detaches and unmaps an external ArrayBuffer from `shmOpen` at once. Returns false (and does
   * nothing) for a SharedArrayBuffer, which is unmapped when it is collected in every thread. */
  shmClose(buffer: ArrayBufferLike): boolean;
  /** Blocking, process-shared wait (spins briefly first). `timeoutMs < 0` or omitted: forever. */
  futexWait(word: Int32Array, index: number, expected: number, timeoutMs?: number): WaitResult;
  /** Wakes up to `count` (default all) waiters in any process; returns how many were woken. */
  futexWake(word: Int32Array, index: number, count?: number): number;
  /** The same wait on one of the addon's own threads (never libuv's pool). */
  futexWaitAsync(word: Int32Array, index: number, expected: number, timeoutMs?: number, options?: { ref?: boolean }): AsyncWait;
  /** AF_UNIX SOCK_STREAM pair, close-on-exec. */
  socketpair(): [number, number];
  /** A bound, listening AF_UNIX stream socket (close-on-exec); clients may connect before anyone accepts. */
  unixListen(path: string, backlog?: number): number;
  /** A blocking, connected AF_UNIX stream socket (close-on-exec), for synchronous writes. */
  unixConnect(path: string): number;
  /** Reads from a (non-blocking) socket into `into`, waiting up to `timeoutMs` (< 0: forever) with
   * poll(): the number of bytes read, 0 at end of stream, -1 when nothing arrived in time, -2 as
   * soon as one of `writeFds` can be written. Throws `OSError` (`.code` `ECONNRESET`, ...) on a
   * failed read. With `peek` the bytes stay in the socket (MSG_PEEK): a select() that reads nothing.
   * Before sleeping it retries for `spinMs` (at most, and by default, 0.05; 0: sleeps at once). */
  readSocket(fd: number, into: Uint8Array, timeoutMs?: number, writeFds?: readonly number[], peek?: boolean, spinMs?: number): number;
  /** Writes `data` to a (non-blocking) socket: all of it, waiting with poll() while it is full, or
   * (`wait` false) what it takes now, or (`wait` a number of ms) what it takes within that time.
   * Returns the bytes written. */
  writeSocket(fd: number, data: Uint8Array, wait?: boolean | number): number;
  /** Waits on one of the addon's threads until `fd` is writable (`writable` false: readable), or in
   * error. Cancel before closing `fd`. */
  pollAsync(fd: number, writable: boolean, timeoutMs?: number, options?: { ref?: boolean }): AsyncWait;
  /** Calls `onReadable(events)` on this thread's event loop while `fd` is readable (at its end or
   * in error too: events < 0) and the watch is active, reading nothing (a libuv poll handle on a
   * duplicate of `fd`, level-triggered). Created inactive; close it with the socket. */
  watchReadable(fd: number, onReadable: (events: number) => void): FdWatch;
  /** A duplicate of `fd` (close-on-exec). */
  dupFd(fd: number): number;
  /** Sends descriptors (1 to 64) over an AF_UNIX socket in one message (SCM_RIGHTS). */
  sendFds(sock: number, fds: number[]): void;
  /** Receives the descriptors of one `sendFds` (close-on-exec), waiting for them. */
  recvFds(sock: number, count: number): number[];
  /** The addon's waiter threads: alive, idle, pending waits, and whether waits re-check for
   * cancellation in slices (kernels without futex_waitv). */
  asyncWaitStats(): { threads: number; idle: number; pending: number; waitsInSlices: boolean };
  /** Linux `prctl(PR_SET_PDEATHSIG)`: the kernel sends `signal` when the parent dies. Returns false
   * when the parent is already gone (its pid is no longer `expectedParentPid`). */
  setParentDeathSignal(signal: number, expectedParentPid: number): boolean;
  /** Ends the wait of worker thread `threadId` in a system call of the addon (readSocket,
   * writeSocket, recvFds), now or when it next waits, with an EINTR OSError: `Worker.terminate()`
   * stops JavaScript, not a system call. Call it after `terminate()`. */
  interruptThread(threadId: number): void;
  /** Drops what interruptThread kept for a thread that has exited. */
  forgetThread(threadId: number): void;
  /** Whether `shmOpen` returns SharedArrayBuffers (Node.js with node_api_create_external_sharedarraybuffer). */
  readonly sharedArrayBufferSupported: boolean;
  readonly pageSize: number;
}

/** A readiness watch from `watchReadable`. */
export interface FdWatch {
  /** Starts or stops watching; `ref`: whether an active watch keeps the event loop alive. */
  set(active: boolean, ref: boolean): void;
  /** Closes the duplicate descriptor (idempotent). */
  close(): void;
}

interface RawBinding {
  shmOpen(name: string, create: boolean, exclusive: boolean, size: number): ShmMapping;
  shmUnlink(name: string): void;
  shmClose(buffer: ArrayBufferLike): boolean;
  futexWait(word: Int32Array, index: number, expected: number, timeoutMs: number): WaitResult;
  futexWake(word: Int32Array, index: number, count: number): number;
  futexWaitAsync(word: Int32Array, index: number, expected: number, timeoutMs: number, ref: boolean): { promise: Promise<WaitResult | 'cancelled'>; id: number };
  futexCancel(id: number): boolean;
  futexRef(id: number, ref: boolean): boolean;
  asyncWaitStats(): { threads: number; idle: number; pending: number; waitsInSlices: boolean };
  socketpair(): [number, number];
  unixListen(path: string, backlog: number): number;
  unixConnect(path: string): number;
  readSocket(fd: number, into: Uint8Array, timeoutMs: number, writeFds: readonly number[], peek: boolean, spinMs?: number): number;
  watchReadable(fd: number, onReadable: (events: number) => void): object;
  watchSet(watch: object, active: boolean, ref: boolean): void;
  watchClose(watch: object): void;
  writeSocket(fd: number, data: Uint8Array, wait: boolean | number): number;
  pollAsync(fd: number, writable: boolean, timeoutMs: number, ref: boolean): { promise: Promise<WaitResult | 'cancelled'>; id: number };
  dupFd(fd: number): number;
  sendFds(sock: number, fds: number[]): void;
  recvFds(sock: number, count: number): number[];
  setParentDeathSignal(signal: number, expectedParentPid: number): boolean;
  threadInterruptible(threadId: number): void;
  interruptThread(threadId: number): void;
  forgetThread(threadId: number): void;
  sharedArrayBufferSupported: boolean;
  pageSize: number;
}

const nativeBuffers = new WeakSet<object>();

/** True for memory mapped by the addon (process-shared: wait with the addon's futex), false for
 * anything else, such as a plain SharedArrayBuffer (use Atomics.wait/notify). */
export function isNativeBuffer(buf: ArrayBufferLike): boolean {
  return nativeBuffers.has(buf);
}

const RAISES: Record<string, new (message: string, code?: string) => OSError> = {
  FileNotFoundError, FileExistsError, PermissionError,
};

/** Re-creates an addon error as the library's class, keeping code/errno/syscall/filename. */
function translate(err: unknown): unknown {
  if (!(err instanceof Error) || typeof (err as { errno?: unknown }).errno !== 'number') return err;
  const e = err as Error & { code?: string; errno: number; syscall?: string; filename?: string };
  const Cls = RAISES[e.name] ?? OSError;
  const out = new Cls(e.message, e.code) as OSError & { errno: number; syscall?: string; filename?: string };
  out.errno = e.errno;
  if (e.syscall) out.syscall = e.syscall;
  if (e.filename) out.filename = e.filename;
  return out;
}

/** `fn`, throwing the library's error classes (see translate) instead of the addon's. */
function translating<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
  return (...args) => {
    try {
      return fn(...args);
    } catch (err) {
      throw translate(err);
    }
  };
}

/** The handle of a pending job on the addon's waiter threads. */
function asyncWait(raw: RawBinding, { promise, id }: { promise: Promise<WaitResult | 'cancelled'>; id: number }): AsyncWait {
  return {
    promise,
    cancel: () => raw.futexCancel(id),
    ref: () => void raw.futexRef(id, true),
    unref: () => void raw.futexRef(id, false),
  };
}

function wrap(raw: RawBinding): NativeBinding {
  const shmOpen = translating(raw.shmOpen.bind(raw));
  return {
    shmOpen(name, create, exclusive, size) {
      const mapping = shmOpen(name, create, exclusive, size);
      nativeBuffers.add(mapping.buffer);
      return mapping;
    },
    shmUnlink: translating((name: string) => raw.shmUnlink(name)),
    shmClose: (buffer) => raw.shmClose(buffer),
    futexWait: (word, index, expected, timeoutMs = -1) => raw.futexWait(word, index, expected, timeoutMs),
    futexWake: (word, index, count = 0x7fffffff) => raw.futexWake(word, index, count),
    futexWaitAsync: (word, index, expected, timeoutMs = -1, options = {}) =>
      asyncWait(raw, raw.futexWaitAsync(word, index, expected, timeoutMs, options.ref ?? true)),
    pollAsync: (fd, writable, timeoutMs = -1, options = {}) =>
      asyncWait(raw, translating(raw.pollAsync.bind(raw))(fd, writable, timeoutMs, options.ref ?? true)),
    socketpair: () => raw.socketpair(),
    setParentDeathSignal: (signal, expectedParentPid) => raw.setParentDeathSignal(signal, expectedParentPid),
    interruptThread: (threadId) => raw.interruptThread(threadId),
    forgetThread: (threadId) => raw.forgetThread(threadId),
    unixListen: translating((path: string, backlog = 128) => raw.unixListen(path, backlog)),
    unixConnect: translating((path: string) => raw.unixConnect(path)),
    readSocket: translating((fd: number, into: Uint8Array, timeoutMs = -1, writeFds: readonly number[] = [], peek = false, spinMs?: number) =>
      raw.readSocket(fd, into, timeoutMs, writeFds, peek, spinMs)),
    watchReadable: (fd, onReadable) => {
      const watch = translating(raw.watchReadable.bind(raw))(fd, onReadable);
      return {
        set: translating((active: boolean, ref: boolean) => raw.watchSet(watch, active, ref)),
        close: () => raw.watchClose(watch),
      };
    },
    writeSocket: translating((fd: number, data: Uint8Array, wait: boolean | number = true) => raw.writeSocket(fd, data, wait)),
    dupFd: translating((fd: number) => raw.dupFd(fd)),
    sendFds: translating((sock: number, fds: number[]) => raw.sendFds(sock, fds)),
    recvFds: translating((sock: number, count: number) => raw.recvFds(sock, count)),
    asyncWaitStats: () => raw.asyncWaitStats(),
    sharedArrayBufferSupported: raw.sharedArrayBufferSupported,
    pageSize: raw.pageSize,
  };
}

const nativeDir = packagePath('../native/');

/** Where the addon is looked for, in order. */
export function nativeCandidates(): string[] {
  const list: string[] = [];
  const override = process.env.MULTIPROCESSING_TS_NATIVE;
  if (override) list.push(override);
  list.push(`${nativeDir}prebuilds/${process.platform}-${process.arch}/mp_native.node`);
  list.push(`${nativeDir}build/Release/mp_native.node`);
  return list;
}

let cached: NativeBinding | undefined;
let failure: NotAvailableError | undefined;

/** The addon (loaded once); throws `NotAvailableError` with the fix when it cannot be loaded. */
export function loadNative(): NativeBinding {
  if (cached) return cached;
  if (failure) throw failure;
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  if (process.platform === 'linux') {
    for (const file of nativeCandidates()) {
      if (!existsSync(file)) continue;
      try {
        const raw = require(file) as RawBinding;
        // A worker thread's waits in the addon can be ended by whoever terminates it.
        if (!isMainThread) raw.threadInterruptible(threadId);
        cached = wrap(raw);
        return cached;
      } catch (err) {
        tried.push(`${file}: ${(err as Error).message}`);
      }
    }
  } else {
    tried.push(`process-shared memory is implemented for Linux only, not ${process.platform}`);
  }
  // A bundle that inlined the package has no addon beside it either: that is the thing to fix, not the build.
  failure = packageFilesMissing() ?? new NotAvailableError(
    `multiprocessing-ts: the native addon for shared memory and process-shared locks is not available on ` +
      `${process.platform}-${process.arch}` +
      (tried.length ? ` (${tried.join('; ')})` : ' (no prebuilt binary and no local build)') +
      `. Build it with \`npx node-gyp rebuild -C node_modules/multiprocessing-ts/native\` ` +
      `(or \`npm run build:native\` in a clone), or use the 'thread' start method, which needs it only to ` +
      `pass a Pipe end to a thread or to recvSync on it.`,
  );
  throw failure;
}

/** The addon, or null when it cannot be loaded. */
export function tryLoadNative(): NativeBinding | null {
  try {
    return loadNative();
  } catch {
    return null;
  }
}
