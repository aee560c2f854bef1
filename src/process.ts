/**
 * `Process` and the process registry, as CPython's process.py: names and identities, the
 * current/parent process, active children, and what happens to children when this process exits.
 */
import { cpus, availableParallelism } from 'node:os';
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { threadId } from 'node:worker_threads';
import { isBootstrapping, isChild } from './backends/childMark.js';
import { treeTrackerAddress } from './resourceTracker.js';
import { ProcessError, ValueError } from './errors.js';
import { debug, info, loggingConfig, setProcessNameSource } from './logger.js';
import { newReduceContext, reduce, reduceFunction } from './reduction.js';
import { refOf } from './tasks.js';
import { registerSentinel, sentinelExit } from './sentinels.js';
import { nodeCrypto, raceTimeout, runFinalizers } from './util.js';
import type { Backend, Popen, StartMethod } from './backends/backend.js';

/**
 * `new Process({ target, args, name, daemon })`. `args` are checked against `target`'s parameters,
 * as `pool.apply(fn, args)` checks them; without a `target` (a subclass that overrides `run()`),
 * `args` are any array.
 */
export interface ProcessOptions<A extends unknown[] = unknown[]> {
  target?: (...args: A) => unknown;
  args?: A;
  name?: string;
  daemon?: boolean;
}

/** What a child is told about itself and its parent (sent in the start payload). */
export interface ProcessIdentity {
  name: string;
  identity: number[];
  daemon: boolean;
  authkey: Uint8Array;
  parentName: string;
  parentPid: number;
  startMethod: Backend['method'];
}

interface State {
  identity: number[];
  name: string;
  daemon: boolean | undefined;
  authkey: Uint8Array;
  target: ((...args: unknown[]) => unknown) | undefined;
  args: unknown[];
  popen: Popen | undefined;
  sentinel: number | undefined;
  closed: boolean;
  parentPid: number;
  parentThread: number;
  /** The start method this object's class is bound to; undefined = the default context's. */
  startMethod: StartMethod | undefined;
  /** The backend this object's class is bound to instead (a redis context's). */
  backend: Backend | undefined;
  isCurrent: boolean;
}

const kState = Symbol('multiprocessing-ts.process');
const kBoundMethod = Symbol.for('multiprocessing-ts.startMethod');
const kBoundBackend = Symbol.for('multiprocessing-ts.backend');

// The per-process counter that every child, pool worker and manager draws its number from.
let counter = 0;
const children = new Set<Process>();

/** Resolves the backend of a start method; installed by context.ts to keep this module free of
 * backend imports. */
let backendFor: (method: StartMethod | undefined) => Backend = () => {
  throw new ProcessError('No start method is available (context.ts was not loaded).');
};
export function setBackendResolver(resolver: (method: StartMethod | undefined) => Backend): void {
  backendFor = resolver;
}

const bootstrapAdvice =
  'An attempt has been made to start a new process before the current process has finished its ' +
  'bootstrapping phase.\n\n' +
  '    This probably means that you are not using fork to start your child processes and you have ' +
  'forgotten to use the proper idiom in the main module:\n\n' +
  '        if (mp.isMain(import.meta)) {       // CommonJS: mp.isMain(module)\n' +
  '            mp.freezeSupport();\n' +
  '            ...\n' +
  '        }\n\n' +
  '    The "freezeSupport()" line can be omitted if the program is not going to be frozen to ' +
  'produce an executable.\n\n' +
  '    To fix this issue, refer to the "Safe importing of main module" section in ' +
  "Python's multiprocessing documentation (and docs/process.md here).";

/**
 * Python's `_check_not_importing_main`: starting a process (or a pool, or setting the start method
 * without `force`) while a child imports its task modules means a module's top level runs what the
 * `isMain` guard should protect; say so, with Python's advice.
 */
export function checkNotBootstrapping(): void {
  if (isBootstrapping()) throw new ProcessError(bootstrapAdvice);
}

// `A` only types the constructor's options (TypeScript has no generic constructors); instances of any
// `A` are the same type.
export class Process<A extends unknown[] = unknown[]> {
  declare private [kState]: State;

  constructor(options: ProcessOptions<A> = {}) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError('new Process() takes an options object: { target, args, name, daemon }');
    }
    if (options.target !== undefined && typeof options.target !== 'function') {
      throw new TypeError('Process target must be a function');
    }
    const parent = currentProcess();
    const identity = [...parent[kState].identity, ++counter];
    const boundMethod = (new.target as unknown as Record<symbol, StartMethod | undefined>)[kBoundMethod];
    const boundBackend = (new.target as unknown as Record<symbol, Backend | undefined>)[kBoundBackend];
    const state: State = {
      identity,
      name: '',
      daemon: options.daemon,
      authkey: parent[kState].authkey,
      target: options.target as State['target'],
      args: options.args === undefined ? [] : [...options.args],
      popen: undefined,
      sentinel: undefined,
      closed: false,
      parentPid: process.pid,
      parentThread: threadId,
      startMethod: boundMethod,
      backend: boundBackend,
      isCurrent: false,
    };
    Object.defineProperty(this, kState, { value: state, enumerable: false, writable: true });
    if (options.name !== undefined) this.name = options.name;
    else state.name = `${new.target.name}-${identity.join(':')}`;
  }

  /** The method that runs in the child; override it in a subclass (marked with mp.serializable). */
  run(): unknown {
    const { target, args } = this[kState];
    if (target) return target(...args);
    return undefined;
  }

  /** Starts the child. Synchronous, as in Python: the child runs in the background. */
  start(): void {
    const state = this[kState];
    this.checkClosed();
    if (state.popen) throw new ValueError('cannot start a process twice');
    if (state.parentPid !== process.pid || state.parentThread !== threadId) {
      throw new ValueError('can only start a process object created by current process');
    }
    // Before the daemon check: a pool worker (a daemon) importing an unguarded module is told why.
    checkNotBootstrapping();
    if (current?.[kState].daemon) throw new ProcessError('daemonic processes are not allowed to have children');
    reapChildren();
    const backend = state.backend ?? backendFor(state.startMethod);
    // A starting process inherits the sockets of its arguments; a thread gets duplicates.
    const ctx = newReduceContext(backend.target, backend.target === 'process' ? [] : null);
    if (backend.remote) ctx.remote = backend.remote;
    const graph = this.reduceForChild(ctx, backend.method);
    const daemon = this.daemon;
    const popen = backend.start({
      graph, transfer: ctx.transfer, handles: ctx.handles ?? [], modules: [...ctx.modules], daemon, name: this.name,
      tracker: treeTrackerAddress(), argv: [...process.argv],
    });
    state.popen = popen;
    state.sentinel = registerSentinel(popen.exited);
    // Python drops its references to target and args once started, so they can be collected.
    state.target = undefined;
    state.args = [];
    children.add(this);
    popen.exited.then((code) => {
      info('process %s exited with exitcode %d', state.name, code);
    });
  }

  private reduceForChild(ctx: ReturnType<typeof newReduceContext>, method: Backend['method']): unknown {
    const state = this[kState];
    const cls = this.constructor as Function;
    let classRef: unknown = null;
    if (!isLibraryProcessClass(cls)) {
      if (!refOf(cls)) {
        throw new (ValueError as new (m: string) => Error)(
          `Can't start ${cls.name}: a Process subclass must be marked with mp.serializable() ` +
            '(at module top level) so the child can find its class.',
        );
      }
      classRef = reduceFunction(cls, `class ${cls.name}`, ctx);
    }
    const fields = reduce({ ...this }, ctx).graph;
    const target = state.target ? reduceFunction(state.target, `${state.name}'s target`, ctx) : null;
    const args = reduce(state.args, ctx).graph;
    const me: ProcessIdentity = {
      name: state.name,
      identity: state.identity,
      daemon: this.daemon,
      authkey: state.authkey,
      parentName: currentProcess().name,
      parentPid: process.pid,
      startMethod: method,
    };
    return { me, classRef, fields, target, args, logging: loggingConfig() };
  }

  /** Waits for the child to exit (at most `timeout` seconds). Always resolves to undefined. */
  async join(timeout?: number | null, options: { signal?: AbortSignal } = {}): Promise<void> {
    const state = this[kState];
    this.checkClosed();
    if (state.isCurrent) throw new ValueError('can only join a child process');
    if (state.parentPid !== process.pid || state.parentThread !== threadId) {
      throw new ValueError('can only join a child process');
    }
    if (!state.popen) throw new ValueError('can only join a started process');
    const release = state.popen.hold();
    try {
      const result = await raceTimeout(state.popen.exited, timeout, options.signal);
      if (result.done) children.delete(this);
    } finally {
      release();
    }
  }

  isAlive(): boolean {
    const state = this[kState];
    this.checkClosed();
    if (state.isCurrent) return true;
    if (!state.popen) return false;
    return state.popen.exitcode === null;
  }

  /** SIGTERM (a thread is stopped and reports -15). */
  terminate(): void {
    this.checkClosed();
    this.started('terminate').terminate();
  }

  /** SIGKILL (a thread is stopped and reports -9). */
  kill(): void {
    this.checkClosed();
    this.started('kill').kill();
  }

  /** SIGINT (Python 3.14). */
  interrupt(): void {
    this.checkClosed();
    this.started('interrupt').interrupt();
  }

  /** Releases the process object's resources; the child must have exited. */
  close(): void {
    const state = this[kState];
    if (state.closed) return;
    if (state.popen && state.popen.exitcode === null) {
      throw new ValueError(
        'Cannot close a process while it is still running. You should first call join() or terminate().',
      );
    }
    children.delete(this);
    state.closed = true;
  }

  get name(): string {
    return this[kState].name;
  }
  set name(value: string) {
    if (typeof value !== 'string') throw new TypeError('name must be a string');
    this[kState].name = value;
  }

  get daemon(): boolean {
    const state = this[kState];
    return state.daemon ?? (state.isCurrent ? false : currentProcess().daemon);
  }
  set daemon(value: boolean) {
    const state = this[kState];
    if (state.popen) throw new ValueError('process has already started');
    state.daemon = Boolean(value);
  }

  get authkey(): Uint8Array {
    return this[kState].authkey;
  }
  set authkey(value: Uint8Array) {
    this[kState].authkey = Uint8Array.from(value);
  }

  get pid(): number | null {
    const state = this[kState];
    this.checkClosed();
    if (state.isCurrent) return process.pid;
    return state.popen?.pid ?? null;
  }
  get ident(): number | null {
    return this.pid;
  }

  get exitcode(): number | null {
    const state = this[kState];
    this.checkClosed();
    return state.popen?.exitcode ?? null;
  }

  /** A number that `connection.wait()` accepts; ready when the child has exited. */
  get sentinel(): number {
    const state = this[kState];
    this.checkClosed();
    if (state.sentinel === undefined) throw new ValueError('process not started');
    return state.sentinel;
  }

  toString(): string {
    const state = this[kState];
    let status: string;
    if (state.isCurrent) status = 'started';
    else if (state.closed) status = 'closed';
    else if (!state.popen) status = 'initial';
    else if (state.popen.exitcode !== null) status = 'stopped';
    else status = 'started';
    const parts = [`<${this.constructor.name} name='${state.name}'`];
    if (state.popen?.pid !== undefined && !state.closed) parts.push(`pid=${state.popen.pid}`);
    parts.push(`parent=${state.parentPid}`, status);
    const code = state.closed ? null : state.popen?.exitcode ?? null;
    if (status === 'stopped' && code !== null) parts.push(`exitcode=${code}`);
    if (this.daemon) parts.push('daemon');
    return `${parts.join(' ')}>`;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  private checkClosed(): void {
    if (this[kState].closed) throw new ValueError('process object is closed');
  }

  private started(what: string): Popen {
    const popen = this[kState].popen;
    if (!popen) throw new ValueError(`cannot ${what} a process that has not been started`);
    return popen;
  }

  /** Re-creates the process object inside the child from its start payload. */
  static fromPayload(
    instance: Process,
    me: ProcessIdentity,
    target: ((...args: unknown[]) => unknown) | null,
    args: unknown[],
  ): Process {
    const state: State = {
      identity: me.identity,
      name: me.name,
      daemon: me.daemon,
      authkey: Uint8Array.from(me.authkey),
      target: target ?? undefined,
      args,
      popen: undefined,
      sentinel: undefined,
      closed: false,
      parentPid: me.parentPid,
      parentThread: -1,
      startMethod: me.startMethod === 'redis' ? undefined : me.startMethod,
      backend: undefined,
      isCurrent: true,
    };
    Object.defineProperty(instance, kState, { value: state, enumerable: false, writable: true });
    return instance;
  }

  /** Makes `instance` this process's `currentProcess()`, with a fresh child counter. */
  static becomeCurrent(instance: Process, parent: ParentProcess): void {
    current = instance;
    parentProc = parent;
    counter = 0;
  }
}

const libraryProcessClasses = new Set<Function>([Process]);
function isLibraryProcessClass(cls: Function): boolean {
  return libraryProcessClasses.has(cls);
}

/** A Process class bound to a start method, named after it as Python's are (`SpawnProcess`). */
export function processClassFor(method: StartMethod | Backend, className: string): typeof Process {
  const bound = { [className]: class extends Process {} }[className]!;
  Object.defineProperty(bound, typeof method === 'string' ? kBoundMethod : kBoundBackend, { value: method });
  libraryProcessClasses.add(bound);
  // The subclass adds nothing: it takes Process's options, checked against the target as Process's are.
  return bound as typeof Process;
}

/** What a child knows of its parent (Python's `_ParentProcess`). */
export class ParentProcess {
  constructor(
    readonly name: string,
    readonly pid: number,
    private readonly alive: () => boolean,
  ) {}
  get ident(): number {
    return this.pid;
  }
  isAlive(): boolean {
    return this.alive();
  }
  toString(): string {
    return `<_ParentProcess name='${this.name}' parent=${this.pid} ${this.alive() ? 'started' : 'stopped'}>`;
  }
}

let current: Process | undefined;
let parentProc: ParentProcess | null = null;
let mainProcess: Process | undefined;

/**
 * In a child before its payload is rebuilt (while its modules are imported): the name it will
 * have, as Python's spawn sets it before it re-imports the main module.
 */
export function setProvisionalName(name: string): void {
  if (!current) currentProcess()[kState].name = name;
}

/** The Process object of this process (`MainProcess` in the main one). */
export function currentProcess(): Process {
  if (current) return current;
  if (!mainProcess) {
    mainProcess = Object.create(Process.prototype) as Process;
    Process.fromPayload(
      mainProcess,
      {
        name: 'MainProcess', identity: [], daemon: false, authkey: new Uint8Array(0),
        parentName: '', parentPid: process.ppid, startMethod: 'spawn',
      },
      null,
      [],
    );
    drawAuthkeyOnFirstRead(mainProcess[kState]);
  }
  return mainProcess;
}

/**
 * The main process's key is drawn when something first reads it (a child started, a manager, a
 * Listener). A child makes its provisional main process to carry its name while its modules load
 * and replaces it with the one its parent sent: drawing a key there loaded node:crypto for nothing,
 * about 3 ms of a worker thread's start (docs/benchmarks.md, issue 14 item 1).
 */
function drawAuthkeyOnFirstRead(state: State): void {
  let key: Uint8Array | undefined;
  Object.defineProperty(state, 'authkey', {
    // A plain Uint8Array, as a key set or received is (not the Buffer randomBytes returns).
    get: () => (key ??= Uint8Array.from(nodeCrypto().randomBytes(32))),
    set: (value: Uint8Array) => {
      key = value;
    },
    enumerable: true,
  });
}

setProcessNameSource(() => currentProcess().name);

export function parentProcess(): ParentProcess | null {
  return parentProc;
}

function reapChildren(): void {
  for (const child of children) {
    if (child.exitcode !== null) children.delete(child);
  }
}

/** Live children of this process; finished ones are reaped first, as in Python. */
export function activeChildren(): Process[] {
  reapChildren();
  return [...children];
}

export function cpuCount(): number {
  return cpus().length || 1;
}

/** The number of CPUs this process may use (Python 3.13's `os.process_cpu_count()`). */
export function processCpuCount(): number {
  return availableParallelism();
}

/** A no-op, for ported code (Python needs it for frozen Windows executables). */
export function freezeSupport(): void {}

// ---- what happens at exit --------------------------------------------------------------------

/** Python's `_exit_function`: finalizers, then daemon children are terminated; non-daemon
 * children keep the event loop alive until they finish (the join). */
process.on('exit', () => {
  for (const child of children) {
    if (child.exitcode === null && child.daemon) {
      debug('calling terminate() for daemon %s', child.name);
      try {
        child.terminate();
      } catch {
        // Already gone.
      }
    }
  }
});

/** Runs the exit-time finalizers (queues flush here) before a child ends. */
export async function runExitFinalizers(): Promise<void> {
  info('process shutting down');
  debug('running all "atexit" finalizers with priority >= 0');
  await runFinalizers(0);
  debug('running the remaining "atexit" finalizers');
  await runFinalizers();
}

/**
 * Whether the calling module is the program's entry point: `if (mp.isMain(import.meta)) { ... }`
 * (CommonJS: `mp.isMain(module)`), the guard Python writes as `if __name__ == '__main__':`.
 * False in every child process and thread, which re-import the entry module to find its tasks.
 */
export function isMain(meta: { url: string; main?: boolean } | { id: string }): boolean {
  if (isChild()) return false;
  if ('id' in meta) return meta.id === '.';
  if (typeof meta.main === 'boolean') return meta.main;
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}
