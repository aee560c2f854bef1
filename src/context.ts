/**
 * Contexts and start methods, as CPython's context.py: the one place where every public factory
 * lives, so that the start method decides the backend and no public class knows which one runs it.
 */
import * as errors from './errors.js';
import { NotAvailableError, ValueError } from './errors.js';
import { getLogger, logToStderr } from './logger.js';
import {
  activeChildren, cpuCount, currentProcess, freezeSupport, parentProcess, Process, processClassFor,
  processCpuCount, setBackendResolver,
} from './process.js';
import type { Backend, StartMethod } from './backends/backend.js';
import { spawnBackend, setExecutable } from './backends/spawn.js';
import { ensureReserve, forkserverBackend, setForkserverPreload } from './backends/forkserver.js';
import { threadBackend } from './backends/thread.js';
import { JoinableQueue, Queue, SimpleQueue } from './queues.js';
import { Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore } from './synchronize.js';
import {
  Array as SharedArray, RawArray, RawValue, Value, type ArrayFactory, type RawArrayFactory, type RawValueFactory, type Typecode,
  type ValueFactory,
} from './sharedctypes.js';
import type { SynchronizedOptions } from './sharedctypes.js';
import { pipeForProcesses, pipeForThreads, type Connection } from './connection.js';
import { Pool, type BasePool, type PoolOptions } from './pool.js';
import type { SyncManager } from './managers.js';
import { constructible } from './util.js';
import type { RedisContext } from './redis/context.js';
import type { RedisContextOptions } from './redis/client.js';

/** A factory called or constructed with the same arguments (docs/api.md rule 1). */
type Factory<A extends unknown[], R> = { (...args: A): R; new (...args: A): R };

export type { StartMethod } from './backends/backend.js';

/** What `ctx.getStartMethod()` says: a start method, or 'redis' for the redis context. */
export type ContextMethod = StartMethod | 'redis';

const backends: Record<StartMethod, Backend> = {
  spawn: spawnBackend,
  forkserver: forkserverBackend,
  thread: threadBackend,
};

const allMethods: StartMethod[] = ['spawn', 'forkserver', 'thread'];
const defaultMethod: StartMethod = 'spawn';

function checkMethod(method: string): StartMethod {
  if (method === 'fork') {
    throw new NotAvailableError(
      "The 'fork' start method cannot be provided by Node.js (a Node process cannot be forked). " +
        "Use 'spawn' (the default), 'forkserver' (fast start from warm, preloaded processes) or " +
        "'thread' (worker_threads).",
    );
  }
  if (!(allMethods as string[]).includes(method)) throw new ValueError(`cannot find context for '${method}'`);
  return method as StartMethod;
}

/** What every context offers: the root module's functions and factories. */
export class BaseContext {
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

  // Factories: objects made here live in this context's kind of memory (Python's context methods),
  // called or constructed (docs/api.md rule 1).
  readonly Lock: Factory<[], Lock> = constructible(() => new Lock({ ctx: this }), () => Lock);
  readonly RLock: Factory<[], RLock> = constructible(() => new RLock({ ctx: this }), () => RLock);
  readonly Semaphore: Factory<[value?: number], Semaphore> = constructible((value = 1) => new Semaphore(value, { ctx: this }), () => Semaphore);
  readonly BoundedSemaphore: Factory<[value?: number], BoundedSemaphore> = constructible(
    (value = 1) => new BoundedSemaphore(value, { ctx: this }),
    () => BoundedSemaphore,
  );
  readonly Condition: Factory<[lock?: Lock | RLock | null], Condition> = constructible(
    (lock?: Lock | RLock | null) => new Condition(lock, { ctx: this }),
    () => Condition,
  );
  readonly Event: Factory<[], Event> = constructible(() => new Event({ ctx: this }), () => Event);
  readonly Barrier: Factory<[parties: number, action?: (() => unknown) | null, timeout?: number | null], Barrier> = constructible(
    (parties: number, action?: (() => unknown) | null, timeout?: number | null) => new Barrier(parties, action, timeout, { ctx: this }),
    () => Barrier,
  );
  readonly Queue: { <T = unknown>(maxsize?: number): Queue<T>; new <T = unknown>(maxsize?: number): Queue<T> } = constructible(
    (maxsize = 0) => new Queue(maxsize, { ctx: this }),
    () => Queue,
  );
  readonly JoinableQueue: { <T = unknown>(maxsize?: number): JoinableQueue<T>; new <T = unknown>(maxsize?: number): JoinableQueue<T> } =
    constructible((maxsize = 0) => new JoinableQueue(maxsize, { ctx: this }), () => JoinableQueue);
  readonly SimpleQueue: { <T = unknown>(): SimpleQueue<T>; new <T = unknown>(): SimpleQueue<T> } = constructible(
    () => new SimpleQueue({ ctx: this }),
    () => SimpleQueue,
  );
  readonly RawValue: RawValueFactory = constructible(
    (typecode: Typecode, value?: number) => new RawValue(typecode, value, { ctx: this }),
    () => RawValue,
  );
  readonly RawArray: RawArrayFactory = constructible(
    (typecode: Typecode, sizeOrValues: number | Iterable<number>) => new RawArray(typecode, sizeOrValues, { ctx: this }),
    () => RawArray,
  );
  readonly Value: ValueFactory = constructible((typecode: Typecode, value?: number, options: SynchronizedOptions = {}) =>
    Value(typecode, value, { ...options, ctx: this }));
  readonly Array: ArrayFactory = constructible((typecode: Typecode, sizeOrValues: number | Iterable<number>, options: SynchronizedOptions = {}) =>
    SharedArray(typecode, sizeOrValues, { ...options, ctx: this }));

  readonly Pipe: Factory<[duplex?: boolean], [Connection, Connection]> = constructible((duplex = true) =>
    this.getStartMethod() === 'thread' ? pipeForThreads(duplex) : pipeForProcesses(duplex));
  readonly Pool: Factory<[processes?: number | null | PoolOptions, options?: PoolOptions], BasePool> = constructible(
    (processes?: number | null | PoolOptions, options: PoolOptions = {}) =>
      typeof processes === 'object' && processes !== null
        ? new Pool({ ...processes, context: this })
        : new Pool(processes, { ...options, context: this }),
    () => Pool,
  );

  /** Python's `ctx.Manager()`: a started SyncManager whose server runs on this context. */
  // Imported when used, as Python's context imports its modules lazily: the managers import this
  // module, and a child may load them first (the manager server's task lives there).
  readonly Manager = async (): Promise<SyncManager> => (await import('./managers.js')).Manager({ ctx: this });

  /** The Process class of this context. */
  get Process(): typeof Process {
    return Process;
  }

  getStartMethod(_allowNone = false): ContextMethod | null {
    throw new Error('abstract');
  }

  getContext(method?: string | null, options?: RedisContextOptions): BaseContext {
    if (method === undefined || method === null) return this;
    if (method === 'redis') return makeRedisContext(options);
    return concreteContext(checkMethod(method));
  }

  getAllStartMethods(): StartMethod[] {
    return [...allMethods];
  }

  setStartMethod(_method: string | null, _options: { force?: boolean } = {}): void {
    throw new ValueError('cannot set start method of concrete context');
  }
}

// The redis context's module extends BaseContext, so it cannot be imported from here: it tells this
// module how to make one when it loads (index.ts loads it).
let makeRedisContext = (_options?: RedisContextOptions): BaseContext => {
  throw new NotAvailableError("The redis context's module (src/redis/context.ts) was not loaded.");
};
export function setRedisContextFactory(factory: (options?: RedisContextOptions) => BaseContext): void {
  makeRedisContext = factory;
}

/** A context bound to one start method (`getContext('spawn')`). */
export class ConcreteContext extends BaseContext {
  private readonly processClass: typeof Process;
  constructor(readonly method: StartMethod, processClassName: string) {
    super();
    this.processClass = processClassFor(method, processClassName);
  }
  override get Process(): typeof Process {
    return this.processClass;
  }
  override getStartMethod(): StartMethod {
    return this.method;
  }
}

/** The module-level context: its start method is fixed by `setStartMethod` or on first use. */
export class DefaultContext extends BaseContext {
  private actual: ConcreteContext | null = null;

  override getContext(method?: string | null, options?: RedisContextOptions): BaseContext {
    if (method === undefined || method === null) {
      this.actual ??= concreteContexts[defaultMethod];
      return this.actual;
    }
    return super.getContext(method, options);
  }

  override getStartMethod(allowNone = false): StartMethod | null {
    if (this.actual === null) {
      if (allowNone) return null;
      this.actual = concreteContexts[defaultMethod];
    }
    return this.actual.method;
  }

  override setStartMethod(method: string | null, options: { force?: boolean } = {}): void {
    if (this.actual !== null && !options.force) throw new errors.ProcessError('context has already been set');
    if (method === null && options.force) {
      this.actual = null;
      return;
    }
    this.actual = concreteContext(checkMethod(String(method)));
  }

  /** The concrete context in force (fixing the default on first use, as Python does). */
  actualContext(): ConcreteContext {
    this.getStartMethod();
    return this.actual!;
  }
}

const concreteContexts: Record<StartMethod, ConcreteContext> = {
  spawn: new ConcreteContext('spawn', 'SpawnProcess'),
  forkserver: new ConcreteContext('forkserver', 'ForkServerProcess'),
  thread: new ConcreteContext('thread', 'ThreadProcess'),
};

/** A concrete context; choosing the forkserver starts warming its reserve, as Python starts its
 * fork server on first use. */
function concreteContext(method: StartMethod): ConcreteContext {
  if (method === 'forkserver') ensureReserve(1);
  return concreteContexts[method];
}

export const defaultContext = new DefaultContext();

setBackendResolver((method) => backends[method ?? defaultContext.actualContext().method]);

/** Python's `multiprocessing.get_context(method=None)`; `getContext('redis', { url })` is the redis
 * context (src/redis/, docs/distributed.md). */
export function getContext(method: 'redis', options?: RedisContextOptions): RedisContext;
export function getContext(method?: string | null): BaseContext;
export function getContext(method?: string | null, options?: RedisContextOptions): BaseContext | RedisContext {
  return defaultContext.getContext(method, options);
}
export function getStartMethod(allowNone = false): StartMethod | null {
  return defaultContext.getStartMethod(allowNone);
}
export function setStartMethod(method: string | null, options: { force?: boolean } = {}): void {
  defaultContext.setStartMethod(method, options);
}
export function getAllStartMethods(): StartMethod[] {
  return [...allMethods];
}
