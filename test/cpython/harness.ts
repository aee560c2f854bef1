// How the ported CPython tests (Lib/test/_test_multiprocessing.py) run on our start methods.
//
// CPython writes a test class once (`_TestQueue`) with ALLOWED_TYPES, a subset of
// ('processes', 'threads', 'manager'), and generates one class per type, each run under every start
// method. Ours: 'processes' runs on every start method of ours (spawn, forkserver and thread: the
// thread context is a full start method here); 'threads' is CPython's multiprocessing.dummy, which is
// our thread context (one flavour, not repeated when 'processes' already runs on thread);
// 'manager' runs the same test body against a SyncManager's proxies, with children on spawn.
// docs/conformance.md records this mapping.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe } from 'node:test';
import * as mp from '../../src/index.js';
import type { SyncManager } from '../../src/managers.js';

export type TestType = 'processes' | 'threads' | 'manager';

/** One generated class: CPython's `WithProcessesTestQueue` under one start method, and so on. */
export interface Flavour {
  type: TestType;
  /** The start method children of this flavour use. */
  method: mp.StartMethod;
  /** The context whose factories (or the manager's) the test uses. */
  ctx: mp.BaseContext;
  /** The manager of a 'manager' flavour (started in `before`, shut down in `after`). */
  manager?: mp.SyncManager;
  /** `manager.X()` for 'manager', `ctx.X()` otherwise: CPython's `self.Queue`, `self.Lock`, ... */
  objects: FlavourObjects;
}

/** The factories CPython's mixins bind on `self`; async so that manager proxies fit the same code. */
export interface FlavourObjects {
  Queue<T = unknown>(maxsize?: number): Promise<mp.Queue<T>>;
  JoinableQueue<T = unknown>(maxsize?: number): Promise<mp.JoinableQueue<T>>;
  Lock(): Promise<mp.Lock>;
  RLock(): Promise<mp.RLock>;
  Semaphore(value?: number): Promise<mp.Semaphore>;
  BoundedSemaphore(value?: number): Promise<mp.BoundedSemaphore>;
  Condition(lock?: mp.Lock | mp.RLock): Promise<mp.Condition>;
  Event(): Promise<mp.Event>;
  Barrier(parties: number, action?: () => void, timeout?: number): Promise<mp.Barrier>;
  /** An `mp.Pool` on the flavour's context, or the manager's PoolProxy (its workers are the
   * server's children); the caller terminates it. */
  Pool(processes?: number | null, options?: FlavourPoolOptions): Promise<FlavourPool>;
}

export type FlavourPoolOptions = Omit<mp.PoolOptions, 'processes' | 'context'>;

/** A pool as the ported tests use it: `mp.Pool` and a manager's PoolProxy both fit when the test
 * awaits what every call returns (a proxy's `mapAsync` resolves to its AsyncResult). */
export interface FlavourPool {
  apply<A extends unknown[], R>(fn: (...args: A) => R, args?: A): Promise<Awaited<R>>;
  applyAsync<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options?: Callbacks<Awaited<R>>): Awaitable<FlavourResult<Awaited<R>>>;
  map<T, R>(fn: (item: T) => R, iterable: T[], chunksize?: number): Promise<Awaited<R>[]>;
  mapAsync<T, R>(fn: (item: T) => R, iterable: T[], chunksize?: number, options?: Callbacks<Awaited<R>[]>): Awaitable<FlavourResult<Awaited<R>[]>>;
  starmap<A extends unknown[], R>(fn: (...args: A) => R, iterable: A[], chunksize?: number): Promise<Awaited<R>[]>;
  starmapAsync<A extends unknown[], R>(fn: (...args: A) => R, iterable: A[], chunksize?: number): Awaitable<FlavourResult<Awaited<R>[]>>;
  imap<T, R>(fn: (item: T) => R, iterable: T[], chunksize?: number): Awaitable<FlavourIterator<Awaited<R>>>;
  imapUnordered<T, R>(fn: (item: T) => R, iterable: T[], chunksize?: number): Awaitable<FlavourIterator<Awaited<R>>>;
  close(): unknown;
  terminate(): unknown;
  join(): Promise<void>;
}
type Awaitable<T> = T | Promise<T>;
interface Callbacks<T> {
  callback?: (result: T) => void;
  errorCallback?: (error: Error) => void;
}
export interface FlavourResult<T> {
  get(timeout?: number | null): Promise<T>;
  wait(timeout?: number | null): Promise<void>;
  ready(): Awaitable<boolean>;
  successful(): Awaitable<boolean>;
}
export interface FlavourIterator<T> extends AsyncIterable<T> {
  next(): Promise<IteratorResult<T>>;
}

const label: Record<TestType, (method: mp.StartMethod) => string> = {
  processes: (m) => `processes/${m}`,
  threads: () => 'threads',
  manager: () => 'manager',
};

function localObjects(ctx: mp.BaseContext): FlavourObjects {
  return {
    Queue: async (maxsize) => ctx.Queue(maxsize),
    JoinableQueue: async (maxsize) => ctx.JoinableQueue(maxsize),
    Lock: async () => ctx.Lock(),
    RLock: async () => ctx.RLock(),
    Semaphore: async (value) => ctx.Semaphore(value),
    BoundedSemaphore: async (value) => ctx.BoundedSemaphore(value),
    Condition: async (lock) => ctx.Condition(lock),
    Event: async () => ctx.Event(),
    Barrier: async (parties, action, timeout) => ctx.Barrier(parties, action, timeout),
    Pool: async (processes, options) => ctx.Pool(processes, options),
  };
}

function managerObjects(flavour: Flavour): FlavourObjects {
  // The proxies implement the same (awaited) methods as the local objects; the casts say so.
  const m = () => {
    if (!flavour.manager) throw new Error('the manager flavour is used before its manager started');
    return flavour.manager as unknown as Record<string, (...args: unknown[]) => Promise<never>>;
  };
  return {
    Queue: (maxsize) => m().Queue(maxsize),
    JoinableQueue: (maxsize) => m().JoinableQueue(maxsize),
    Lock: () => m().Lock(),
    RLock: () => m().RLock(),
    Semaphore: (value) => m().Semaphore(value),
    BoundedSemaphore: (value) => m().BoundedSemaphore(value),
    Condition: (lock) => m().Condition(lock),
    Event: () => m().Event(),
    Barrier: (parties, action, timeout) => m().Barrier(parties, action, timeout),
    Pool: async (processes, options) => {
      const manager: SyncManager | undefined = flavour.manager;
      if (!manager) throw new Error('the manager flavour is used before its manager started');
      return manager.Pool(processes, options);
    },
  };
}

/** The flavours CPython generates for a class with these ALLOWED_TYPES. */
export function flavoursOf(types: readonly TestType[]): Flavour[] {
  const out: Flavour[] = [];
  if (types.includes('processes')) {
    for (const method of mp.getAllStartMethods()) {
      const ctx = mp.getContext(method);
      out.push({ type: 'processes', method, ctx, objects: localObjects(ctx) });
    }
  } else if (types.includes('threads')) {
    const ctx = mp.getContext('thread');
    out.push({ type: 'threads', method: 'thread', ctx, objects: localObjects(ctx) });
  }
  if (types.includes('manager')) {
    const ctx = mp.getContext('spawn');
    const flavour: Flavour = { type: 'manager', method: 'spawn', ctx, objects: undefined as never };
    flavour.objects = managerObjects(flavour);
    out.push(flavour);
  }
  return out;
}

/**
 * `describe` once per flavour: `cpythonClass('_TestQueue', ['processes', 'manager', 'threads'], (f) => { it(...) })`
 * gives suites named `_TestQueue [processes/spawn]`, `_TestQueue [manager]`, ... Each suite makes its
 * start method the default one. A manager flavour starts its SyncManager before the suite's tests
 * and shuts it down after them and after the body's own `after` hooks (CPython's ManagerMixin).
 */
export function cpythonClass(name: string, types: readonly TestType[], body: (f: Flavour) => void): void {
  for (const f of flavoursOf(types)) {
    const suite = `${name} [${label[f.type](f.method)}]`;
    describe(suite, () => {
      // CPython's setUpModule sets the suite's start method as the default: `multiprocessing.Process`,
      // `Pipe()` and the rest follow it, as `f.ctx` does.
      before(() => mp.setStartMethod(f.method, { force: true }));
      if (f.type === 'manager') {
        before(async () => {
          f.manager = await f.ctx.Manager();
        });
      }
      body(f);
      // After the body's own `after` hooks (they run in order), which may still use the manager.
      if (f.type === 'manager') {
        after(async () => {
          await f.manager?.shutdown();
        });
      }
    });
  }
}

/**
 * A plain `unittest.TestCase` class, which CPython runs once per start method (its
 * test_multiprocessing_spawn, _forkserver, ... modules): `describe` once per start method given,
 * named `TestWait [spawn]`, with that start method's context.
 */
export function plainClass(
  name: string,
  methods: readonly mp.StartMethod[],
  body: (ctx: mp.BaseContext, method: mp.StartMethod) => void,
): void {
  for (const method of methods) {
    describe(`${name} [${method}]`, () => body(mp.getContext(method), method));
  }
}

/**
 * Terminates and joins the processes a test started and may have left running (call it in
 * `finally`, so a failing assertion leaves no child behind).
 */
export async function reap(...procs: (mp.Process | undefined)[]): Promise<void> {
  for (const p of procs) {
    if (!p) continue;
    try {
      if (p.isAlive()) p.terminate();
      await p.join(30);
    } catch {
      // Not started, or closed: nothing left to reap.
    }
  }
}

/** Starts `p`, waits for it to exit and returns its exit code; a failure on the way leaves no
 * child behind. */
export async function runToEnd(p: mp.Process): Promise<number | null> {
  try {
    p.start();
    await p.join();
    return p.exitcode;
  } finally {
    await reap(p);
  }
}

/** A program started by `startProgram`. */
export interface StartedProgram {
  readonly pid: number;
  /** The next line the program writes on stdout. */
  line(): Promise<string>;
  kill(signal?: NodeJS.Signals): void;
  /** Resolves when every holder of its stdout/stderr has closed them (the program, and a resource
   * tracker it started, which inherits its stderr). */
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/**
 * Runs `node <loader flags> <file> ...args` as a separate program (CPython's `python -c` scripts):
 * killed after `timeoutMs`. `env` replaces this process's environment.
 */
export function startProgram(file: URL, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 120_000): StartedProgram {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(file), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    }));
  return {
    pid: child.pid!,
    line: async () => {
      const next = await lines.next();
      if (next.done) throw new Error(`program ${fileURLToPath(file)} ${args.join(' ')} ended before writing a line; stderr: ${stderr}`);
      return next.value;
    },
    kill: (signal = 'SIGTERM') => child.kill(signal),
    done,
  };
}

/** A full garbage collection, for CPython's `gc.collect()` checks. WeakRefs are kept for the rest
 * of the current job: `await forceGc()` before deref() lets them go. */
export async function forceGc(): Promise<void> {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  await new Promise((r) => setImmediate(r));
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
}

/** CPython's `CLOCK_RES`: the slack a lower bound on a measured wait allows. */
export const CLOCK_RES = 0.1;

/**
 * Waits until `condition()` holds, looking again every 10 ms (CPython's `sleeping_retry` and
 * `assertReachesEventually`), for state that announces no event: a queue's feeder having written,
 * a semaphore's count. Throws after `timeout` seconds.
 */
export async function eventually(condition: () => unknown, timeout = 30, what = 'the condition'): Promise<void> {
  const deadline = performance.now() + timeout * 1000;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`${what} did not hold within ${timeout} s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
