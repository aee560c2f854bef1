/**
 * Contexts, as CPython's context.py: the one place where every public factory lives, so that the
 * context decides where an object lives and how a child starts, and no public class knows the
 * start method.
 *
 * The modules behind the factories import this one (for the default context and `memoryKindFor`);
 * this one imports none of them. Each registers what its factories make when it loads
 * (`registerClasses`, as it registers its reducers), which is how CPython's context methods import
 * their module when first called. The facade (index.ts) loads every module.
 *
 * A context is registered by name (`registerContext`). The three start methods are
 * `ConcreteContext`s: objects in shared memory of their kind (`memoryKindFor`), children started by
 * their backend. A context whose objects live elsewhere (Redis, say) is one more `BaseContext`
 * subclass with its own factories, registered the same way; see docs/ARCHITECTURE.md.
 */
import * as errors from './errors.js';
import { NotAvailableError, ValueError } from './errors.js';
import { getLogger, logToStderr } from './logger.js';
import {
  activeChildren, checkNotBootstrapping, cpuCount, currentProcess, freezeSupport, parentProcess, Process, processClassFor,
  processCpuCount, setBackendResolver,
} from './process.js';
import { constructible } from './util.js';
import { isChild } from './backends/childMark.js';
import type { Backend, StartMethod } from './backends/backend.js';
import { spawnBackend, setExecutable } from './backends/spawn.js';
import { ensureReserve, forkserverBackend, learnModules, setForkserverPreload } from './backends/forkserver.js';
import { threadBackend } from './backends/thread.js';
import type { MemoryKind } from './heap.js';
import type { JoinableQueue, Queue, SimpleQueue } from './queues.js';
import type { Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore } from './synchronize.js';
import type { ArrayFactory, RawArrayFactory, RawValueFactory, ValueFactory } from './sharedctypes.js';
import type { Connection } from './connection.js';
import type { BasePool, Pool, PoolOptions } from './pool.js';
import type { SyncManager } from './managers.js';
import type { RedisContext } from './redis/context.js';
import type { RedisContextOptions } from './redis/settings.js';
import type { Factory } from './util.js';

export type { StartMethod } from './backends/backend.js';

// ---- what the factories make ----------------------------------------------------------------

/** What the factories of the local contexts make, each registered by the module that defines it. */
export interface Classes {
  Lock: typeof Lock;
  RLock: typeof RLock;
  Semaphore: typeof Semaphore;
  BoundedSemaphore: typeof BoundedSemaphore;
  Condition: typeof Condition;
  Event: typeof Event;
  Barrier: typeof Barrier;
  Queue: typeof Queue;
  JoinableQueue: typeof JoinableQueue;
  SimpleQueue: typeof SimpleQueue;
  RawValue: RawValueFactory;
  RawArray: RawArrayFactory;
  Value: ValueFactory;
  Array: ArrayFactory;
  /** A pipe, whose ends reach processes and threads alike. */
  Pipe: (duplex?: boolean) => [Connection, Connection];
  Pool: typeof Pool;
  Manager: (options: { ctx: BaseContext }) => Promise<SyncManager>;
}

const classes: Partial<Classes> = {};

/** Called by a module as it loads: the factories may make these from now on. */
export function registerClasses(provided: Partial<Classes>): void {
  Object.assign(classes, provided);
}

function classOf<K extends keyof Classes>(name: K): Classes[K] {
  const found = classes[name];
  if (found === undefined) {
    throw new NotAvailableError(`${name} is not loaded: import 'multiprocessing-ts' (the root module) before using a context's ${name}()`);
  }
  return found;
}

/** The factory of what is registered as `name`: callable and constructible, carrying its name, and
 * `x instanceof factory` is `x instanceof` the registered class. */
function factory<F>(name: keyof Classes, make: (...args: never[]) => object): F {
  return constructible<F>(make, () => classOf(name) as unknown as abstract new (...args: never[]) => object);
}

// ---- contexts -------------------------------------------------------------------------------

/** What every context offers: the root module's functions and factories. */
export abstract class BaseContext {
  // Python exposes the exception classes on every context.
  readonly ProcessError = errors.ProcessError;
  readonly BufferTooShort = errors.BufferTooShort;
  readonly TimeoutError = errors.TimeoutError;
  readonly AuthenticationError = errors.AuthenticationError;

  readonly currentProcess = currentProcess;
  readonly parentProcess = parentProcess;
  readonly activeChildren = activeChildren;
  readonly cpuCount = cpuCount;
  readonly processCpuCount = processCpuCount;
  readonly freezeSupport = freezeSupport;
  readonly getLogger = getLogger;
  readonly logToStderr = logToStderr;
  readonly setExecutable = setExecutable;
  readonly setForkserverPreload = setForkserverPreload;

  // Factories: objects made here live where this context's children reach them (Python's context
  // methods pass `ctx=self.get_context()`).
  readonly Lock: Factory<[], Lock> = factory('Lock', () => new (classOf('Lock'))({ ctx: this }));
  readonly RLock: Factory<[], RLock> = factory('RLock', () => new (classOf('RLock'))({ ctx: this }));
  readonly Semaphore: Factory<[value?: number], Semaphore> = factory('Semaphore', (value = 1) => new (classOf('Semaphore'))(value, { ctx: this }));
  readonly BoundedSemaphore: Factory<[value?: number], BoundedSemaphore> = factory(
    'BoundedSemaphore',
    (value = 1) => new (classOf('BoundedSemaphore'))(value, { ctx: this }),
  );
  readonly Condition: Factory<[lock?: Lock | RLock | null], Condition> = factory(
    'Condition',
    (lock?: Lock | RLock | null) => new (classOf('Condition'))(lock, { ctx: this }),
  );
  readonly Event: Factory<[], Event> = factory('Event', () => new (classOf('Event'))({ ctx: this }));
  readonly Barrier: Factory<[parties: number, action?: (() => unknown) | null, timeout?: number | null], Barrier> = factory(
    'Barrier',
    (parties: number, action?: (() => unknown) | null, timeout?: number | null) => new (classOf('Barrier'))(parties, action, timeout, { ctx: this }),
  );
  readonly Queue: { <T = unknown>(maxsize?: number): Queue<T>; new <T = unknown>(maxsize?: number): Queue<T> } = factory(
    'Queue',
    (maxsize = 0) => new (classOf('Queue'))(maxsize, { ctx: this }),
  );
  readonly JoinableQueue: { <T = unknown>(maxsize?: number): JoinableQueue<T>; new <T = unknown>(maxsize?: number): JoinableQueue<T> } = factory(
    'JoinableQueue',
    (maxsize = 0) => new (classOf('JoinableQueue'))(maxsize, { ctx: this }),
  );
  readonly SimpleQueue: { <T = unknown>(): SimpleQueue<T>; new <T = unknown>(): SimpleQueue<T> } = factory(
    'SimpleQueue',
    () => new (classOf('SimpleQueue'))({ ctx: this }),
  );
  readonly RawValue: RawValueFactory = factory('RawValue', (...args: Parameters<RawValueFactory>) =>
    classOf('RawValue')(args[0], args[1], { ctx: this }));
  readonly RawArray: RawArrayFactory = factory('RawArray', (...args: Parameters<RawArrayFactory>) =>
    classOf('RawArray')(args[0], args[1], { ctx: this }));
  readonly Value: ValueFactory = factory('Value', (...args: Parameters<ValueFactory>) =>
    classOf('Value')(args[0], args[1], { ...args[2], ctx: this }));
  readonly Array: ArrayFactory = factory('Array', (...args: Parameters<ArrayFactory>) =>
    classOf('Array')(args[0], args[1], { ...args[2], ctx: this }));

  readonly Pipe: Factory<[duplex?: boolean], [Connection, Connection]> = constructible((duplex = true) =>
    classOf('Pipe')(duplex));
  readonly Pool: Factory<[processes?: number | null | PoolOptions, options?: PoolOptions], BasePool> = factory(
    'Pool',
    (processes?: number | null | PoolOptions, options: PoolOptions = {}) =>
      typeof processes === 'object' && processes !== null
        ? new (classOf('Pool'))({ ...processes, context: this })
        : new (classOf('Pool'))(processes, { ...options, context: this }),
  );

  /** Python's `ctx.Manager()`: a started SyncManager whose server runs on this context. */
  readonly Manager = async (): Promise<SyncManager> => classOf('Manager')({ ctx: this });

  /** The Process class of this context. */
  get Process(): typeof Process {
    return Process;
  }

  /** The start method, or the name of a context of another kind ('redis'). */
  abstract getStartMethod(allowNone?: boolean): StartMethod | 'redis' | null;

  /** The context in force: this one, or the one `method` names. */
  getContext(method?: string | null): BaseContext {
    if (method === undefined || method === null) return this;
    return getContext(method);
  }

  getAllStartMethods(): StartMethod[] {
    return getAllStartMethods();
  }

  setStartMethod(_method: string | null, _options: { force?: boolean } = {}): void {
    throw new ValueError('cannot set start method of concrete context');
  }

  /** @internal Modules that processes started from this context will import (a pool's tasks):
   * a context that keeps warm processes imports them in advance. */
  _expectModules(_modules: Iterable<string>): void {}
}

/** A context bound to one start method (`getContext('spawn')`): its Process class starts children
 * with the method's backend, and its objects live in memory those children reach. */
export class ConcreteContext extends BaseContext {
  private readonly processClass: typeof Process;
  constructor(
    readonly method: StartMethod,
    processClassName: string,
    /** @internal */ readonly _backend: Backend,
  ) {
    super();
    this.processClass = processClassFor(method, processClassName);
  }
  override get Process(): typeof Process {
    return this.processClass;
  }
  override getStartMethod(): StartMethod {
    return this.method;
  }
  /** @internal Where objects of this context live: where its children can reach them. */
  get _memoryKind(): MemoryKind {
    return this._backend.target;
  }
}

/** The forkserver's context: choosing it starts warming the reserve (Python starts its fork server
 * on first use), and it learns the modules a pool's tasks need. */
class ForkServerContext extends ConcreteContext {
  override _expectModules(modules: Iterable<string>): void {
    learnModules(modules);
  }
}

// The other start methods' contexts: each class is named after its start method, as Python's are
// (`type(ctx).__name__`: SpawnContext, ForkServerContext).
class SpawnContext extends ConcreteContext {}
class ThreadContext extends ConcreteContext {}

/** The module-level context: its start method is fixed by `setStartMethod` or on first use. */
export class DefaultContext extends BaseContext {
  private actual: ConcreteContext | null = null;

  override getContext(method?: string | null): BaseContext {
    if (method === undefined || method === null) return this.actualContext();
    return super.getContext(method);
  }

  override getStartMethod(allowNone = false): StartMethod | null {
    if (this.actual === null && allowNone) return null;
    return this.actualContext().method;
  }

  override setStartMethod(method: string | null, options: { force?: boolean } = {}): void {
    if (this.actual !== null && !options.force) {
      // In a child importing its task's module, that module's top level sets it: say what to do.
      checkNotBootstrapping();
      throw new errors.ProcessError('context has already been set');
    }
    if (method === null && options.force) {
      this.actual = null;
      return;
    }
    this.actual = startMethodContext(String(method));
  }

  /** The concrete context in force, fixing the default on first use as Python does. */
  actualContext(): ConcreteContext {
    this.actual ??= startMethods[DEFAULT_METHOD]!;
    return this.actual;
  }
}

// ---- the registry ---------------------------------------------------------------------------

const DEFAULT_METHOD: StartMethod = 'spawn';

/** The start methods, in `getAllStartMethods()` order. */
const startMethods: Record<string, ConcreteContext> = {
  spawn: new SpawnContext('spawn', 'SpawnProcess', spawnBackend),
  forkserver: new ForkServerContext('forkserver', 'ForkServerProcess', forkserverBackend),
  thread: new ThreadContext('thread', 'ThreadProcess', threadBackend),
};

/** Contexts that are not start methods, by name: `getContext(name, options)` makes them. */
const otherContexts = new Map<string, (options?: unknown) => BaseContext>();

/** Makes `getContext(name, options)` return `make(options)`: a context of another kind, whose
 * factories make objects that live elsewhere. It is not a start method (`setStartMethod` refuses
 * it) and its objects reach processes of that context only. The seam a context of another kind
 * (issue 13's redis) registers through, hence exported though nothing in this package calls it.
 * @public */
export function registerContext(name: string, make: (options?: unknown) => BaseContext): void {
  if (name in startMethods || name === 'fork') throw new ValueError(`'${name}' is a start method`);
  otherContexts.set(name, make);
}

function startMethodContext(method: string): ConcreteContext {
  if (method === 'fork') {
    throw new NotAvailableError(
      "The 'fork' start method cannot be provided by Node.js (a Node process cannot be forked). " +
        "Use 'spawn' (the default), 'forkserver' (fast start from warm, preloaded processes) or " +
        "'thread' (worker_threads).",
    );
  }
  const ctx = Object.hasOwn(startMethods, method) ? startMethods[method] : undefined;
  if (!ctx) throw new ValueError(`cannot find context for '${method}'`);
  // The program that asks for forkserver gets a warm child at once. A library child does not: it
  // adopts its parent's method when it starts (child.ts), and warm children of every pool worker
  // would compete with the pool's own start for the CPU; its first start spawns one if it needs it.
  if (ctx instanceof ForkServerContext && !isChild()) ensureReserve(1);
  return ctx;
}

const defaultContext = new DefaultContext();

setBackendResolver((method) => (method ? startMethods[method]! : defaultContext.actualContext())._backend);

/** Python's `multiprocessing.get_context(method=None)`; `options` go to a registered context of
 * another kind (`getContext('redis', { url })`). */
export function getContext(method: 'redis', options?: RedisContextOptions): RedisContext;
export function getContext(method?: string | null, options?: unknown): BaseContext;
export function getContext(method?: string | null, options?: unknown): BaseContext | RedisContext {
  if (method === undefined || method === null) return defaultContext.actualContext();
  const other = otherContexts.get(method);
  if (other) return other(options);
  return startMethodContext(method);
}
export function getStartMethod(allowNone = false): StartMethod | null {
  return defaultContext.getStartMethod(allowNone);
}
export function setStartMethod(method: string | null, options: { force?: boolean } = {}): void {
  defaultContext.setStartMethod(method, options);
}
export function getAllStartMethods(): StartMethod[] {
  return Object.keys(startMethods) as StartMethod[];
}

/** What a class takes to decide its memory: a context (`{ ctx }`, from a factory), or the kind
 * itself (`{ memory }`, for an object made to match another, such as a Value's lock). */
export interface MemoryOptions {
  ctx?: BaseContext | null;
  memory?: MemoryKind;
}

/**
 * Where an object made with `options` lives: a SharedArrayBuffer for the 'thread' context,
 * process-shared memory for 'spawn' and 'forkserver'. Without a context, the default one's, which
 * this fixes as Python does when an object is made.
 */
export function memoryKindFor(options?: MemoryOptions | null): MemoryKind {
  if (options?.memory) return options.memory;
  const ctx = options?.ctx ?? defaultContext.actualContext();
  const concrete = ctx.getContext();
  if (!(concrete instanceof ConcreteContext)) {
    throw new ValueError(`objects of the context ${String(concrete.constructor.name)} are made by its own factories`);
  }
  return concrete._memoryKind;
}
