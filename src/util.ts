/**
 * Ordered teardown at exit (Python's util.Finalize) and small shared helpers.
 *
 * Finalizers with a priority run at exit, highest first, equal priorities in reverse creation order.
 * Queues register their flush here, which is how a process does not finish exiting until its
 * buffered items are written.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

type Callback = () => unknown;

interface Finalizer {
  callback: Callback;
  priority: number;
  order: number;
  done: boolean;
}

const finalizers = new Set<Finalizer>();
let created = 0;

export interface FinalizeHandle {
  /** Runs the callback now (at most once) and forgets it. */
  run(): Promise<void>;
  /** Forgets the callback without running it. */
  cancel(): void;
  readonly pending: boolean;
}

/** Registers `callback` to run at exit with `priority` (Python's exitpriority). */
export function finalize(callback: Callback, priority = 0): FinalizeHandle {
  const entry: Finalizer = { callback, priority, order: created++, done: false };
  finalizers.add(entry);
  return {
    async run() {
      if (entry.done) return;
      entry.done = true;
      finalizers.delete(entry);
      await entry.callback();
    },
    cancel() {
      entry.done = true;
      finalizers.delete(entry);
    },
    get pending() {
      return !entry.done;
    },
  };
}

/** Runs the registered finalizers whose priority is at least `minPriority`, in Python's order. */
export async function runFinalizers(minPriority = -Infinity): Promise<void> {
  const due = [...finalizers]
    .filter((f) => f.priority >= minPriority)
    .sort((a, b) => b.priority - a.priority || b.order - a.order);
  for (const f of due) {
    if (f.done) continue;
    f.done = true;
    finalizers.delete(f);
    try {
      await f.callback();
    } catch (error) {
      process.stderr.write(`Error in finalizer: ${(error as Error)?.stack ?? String(error)}\n`);
    }
  }
}

/**
 * Calls a user's callback from inside the library's own work (a pool's result handling): what it
 * throws surfaces as an uncaught exception, as a throwing EventEmitter listener's error does,
 * instead of breaking the work that called it or vanishing.
 */
export function callUserCallback<A extends unknown[]>(callback: ((...args: A) => unknown) | undefined, ...args: A): void {
  if (!callback) return;
  try {
    callback(...args);
  } catch (error) {
    queueMicrotask(() => {
      throw error;
    });
  }
}

/** The longest delay setTimeout takes, in milliseconds (a longer one would fire at once). */
export const MAX_DELAY_MS = 2 ** 31 - 1;

/** A timeout in seconds as a setTimeout delay: negative counts as 0, and it is clamped to
 * MAX_DELAY_MS (about 24.8 days) rather than overflow. */
export function timerDelayMs(seconds: number): number {
  return Math.min(Math.max(0, seconds * 1000), MAX_DELAY_MS);
}

/** Rejects with the signal's reason (Python has no such thing; docs/api.md rule 6). */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason;
}

/** Resolves when `promise` settles or after `seconds` (false), or rejects when `signal` aborts. */
export function raceTimeout<T>(
  promise: Promise<T>,
  seconds: number | null | undefined,
  signal?: AbortSignal,
): Promise<{ done: true; value: T } | { done: false }> {
  throwIfAborted(signal);
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      cleanup();
      reject(signal!.reason);
    };
    const cleanup = () => {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    if (seconds !== null && seconds !== undefined) {
      timer = setTimeout(() => {
        cleanup();
        resolve({ done: false });
      }, timerDelayMs(seconds));
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        cleanup();
        resolve({ done: true, value });
      },
      (error) => {
        cleanup();
        reject(error);
      },
    );
  });
}

/**
 * A class that can also be called without `new` (docs/api.md rule 1: Python's factory functions
 * `mp.Lock()` and `new mp.Lock()` give the same thing). Subclassing and `instanceof` still work.
 */
export function callable<C extends abstract new (...args: never[]) => object>(cls: C): Callable<C> {
  return new Proxy(cls, {
    apply: (target, _self, args) => Reflect.construct(target, args),
  }) as Callable<C>;
}

type AnyClass = abstract new (...args: never[]) => object;
/** A class `C` that can also be called without `new`. */
export type Callable<C extends AnyClass> = C & ((...args: ConstructorParameters<C>) => InstanceType<C>);

/** `callable` for each class a module exports: `const { Lock, RLock } = callables(synchronize)`. */
export function callables<M extends object>(module: M): { [K in keyof M as M[K] extends AnyClass ? K : never]: M[K] extends AnyClass ? Callable<M[K]> : never } {
  const wrapped: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(module)) {
    // A class's prototype is not writable; a plain function's is (and an arrow has none).
    if (typeof value === 'function' && Object.getOwnPropertyDescriptor(value, 'prototype')?.writable === false) wrapped[name] = callable(value as AnyClass);
  }
  return wrapped as never;
}

/** A factory called or constructed with the same arguments (docs/api.md rule 1). */
export type Factory<A extends unknown[], R> = { (...args: A): R; new (...args: A): R };

/**
 * A factory that also works with `new` (docs/api.md rule 1, for a context's factories: `ctx.Lock()`
 * and `new ctx.Lock()`), typed by the caller as `F`. With `cls`, it carries the class's name and
 * `x instanceof factory` is `x instanceof cls()` (subclassing it is not supported: extend the class).
 */
export function constructible<F>(make: (...args: never[]) => object, cls?: () => abstract new (...args: never[]) => object): F {
  // A plain function (unlike an arrow) can be called with `new`; returning an object replaces `this`.
  const factory = function (this: unknown, ...args: never[]): object {
    return make(...args);
  };
  if (cls) {
    // `cls` is read when asked: a context's factories exist before the modules that register
    // their classes have loaded (context.ts).
    Object.defineProperty(factory, 'name', { get: () => cls().name });
    Object.defineProperty(factory, Symbol.hasInstance, { value: (x: unknown) => x instanceof cls() });
  }
  return factory as unknown as F;
}

/** Runs `start` with an abort signal, rejecting with the signal's reason on abort. */
export function abortable<T>(
  signal: AbortSignal | undefined,
  start: (resolve: (v: T) => void, reject: (e: unknown) => void) => () => void,
): Promise<T> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    let cleanup: (() => void) | undefined;
    const onAbort = (): void => {
      cleanup?.();
      reject(signal!.reason);
    };
    const done = <A extends unknown[]>(fn: (...a: A) => void) => (...a: A): void => {
      signal?.removeEventListener('abort', onAbort);
      fn(...a);
    };
    cleanup = start(done(resolve), done(reject));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Whether process `pid` exists and has not exited (a zombie counts as exited). */
export function processAlive(pid: number): boolean {
  if (pid <= 0) return true;
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
  if (process.platform === 'linux') {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      const state = stat.charAt(stat.lastIndexOf(')') + 2);
      return state !== 'Z' && state !== 'X';
    } catch {
      return false;
    }
  }
  return true;
}

let tempDir: string | undefined;
/** A private temp dir (`pymp-*`, mode 0700) removed at exit, as Python's `util.get_temp_dir()`. */
export function getTempDir(): string {
  if (tempDir === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'pymp-'));
    tempDir = dir;
    process.once('exit', () => {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // best effort
      }
    });
  }
  return tempDir;
}

// ---- built-in modules loaded on first use ----------------------------------------------------

// A worker thread or child that imports the library pays for every built-in module the library
// imports: node:crypto about 7 ms and node:child_process about 8 in a worker thread here
// (docs/benchmarks.md, issue 14 item 1). Most children never name a file, check a key or start a
// process, so these two load when first used.
const requireBuiltin = createRequire(import.meta.url);
let crypto: typeof import('node:crypto') | undefined;
let childProcess: typeof import('node:child_process') | undefined;

/** node:crypto, loaded on first use. */
export function nodeCrypto(): typeof import('node:crypto') {
  return (crypto ??= requireBuiltin('node:crypto') as typeof import('node:crypto'));
}

/** `bytes` random bytes as hex (names of files, segments and keys). */
export function randomHex(bytes: number): string {
  return nodeCrypto().randomBytes(bytes).toString('hex');
}

/** node:child_process, loaded on first use. */
export function nodeChildProcess(): typeof import('node:child_process') {
  return (childProcess ??= requireBuiltin('node:child_process') as typeof import('node:child_process'));
}
