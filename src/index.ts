/**
 * multiprocessing-ts: Python's multiprocessing for TypeScript on Node.js.
 * The facade: re-exports only (Python's multiprocessing/__init__.py binds the default context).
 */
import * as queues from './queues.js';
import * as synchronize from './synchronize.js';
import { callable, callables } from './util.js';

export * from './errors.js';
export {
  Process, ParentProcess, currentProcess, parentProcess, activeChildren, cpuCount, processCpuCount,
  freezeSupport, isMain, type ProcessOptions,
} from './process.js';
export {
  getContext, getStartMethod, setStartMethod, getAllStartMethods, BaseContext, DefaultContext,
  ConcreteContext, type StartMethod,
} from './context.js';
export { setExecutable } from './backends/spawn.js';
export { RedisContext } from './redis/context.js';
export type { RedisContextOptions } from './redis/settings.js';
export type { RedisPool } from './redis/pool.js';
export { setForkserverPreload } from './backends/forkserver.js';
export { task, serializable, type TaskOptions } from './tasks.js';
export { getLogger, logToStderr, Logger, type LogRecord, type Handler } from './logger.js';
export { reduceSymbol } from './reduction.js';

// Queues (callable and constructible, as Python's factory functions). TypeScript gives a callable
// class's call form no type parameters of its own: the generic call signature is written out.
export const Queue = callable(queues.Queue) as typeof queues.Queue & (<T = unknown>(maxsize?: number) => Queue<T>);
export type Queue<T = unknown> = queues.Queue<T>;
export const JoinableQueue = callable(queues.JoinableQueue) as typeof queues.JoinableQueue & (<T = unknown>(maxsize?: number) => JoinableQueue<T>);
export type JoinableQueue<T = unknown> = queues.JoinableQueue<T>;
export const SimpleQueue = callable(queues.SimpleQueue) as typeof queues.SimpleQueue & (<T = unknown>() => SimpleQueue<T>);
export type SimpleQueue<T = unknown> = queues.SimpleQueue<T>;
export type { PutOptions, GetOptions } from './queues.js';

// Synchronisation.
export const { Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event, Barrier } = callables(synchronize);
export type Lock = synchronize.Lock;
export type RLock = synchronize.RLock;
export type Semaphore = synchronize.Semaphore;
export type BoundedSemaphore = synchronize.BoundedSemaphore;
export type Condition = synchronize.Condition;
export type Event = synchronize.Event;
export type Barrier = synchronize.Barrier;
export type { AcquireOptions } from './synchronize.js';

// Shared ctypes.
export { Value, Array, RawValue, RawArray, type Typecode } from './sharedctypes.js';
export * as sharedctypes from './sharedctypes.js';

// Shared memory.
export { SharedMemory, ShareableList } from './sharedMemory.js';
export * as sharedMemory from './shared-memory.js';

// Pipes and connections.
export { Pipe, Listener, Client, Connection } from './connection.js';
export * as connection from './connection.js';

// Pools.
import * as pools from './pool.js';
export const Pool = callable(pools.Pool);
export type Pool = pools.Pool;
export { ThreadPool, AsyncResult, IMapIterator, type PoolOptions, type CallOptions, type AsyncCallOptions } from './pool.js';
export * as pool from './pool.js';
export * as dummy from './dummy.js';

// Managers.
export { Manager, BaseManager, SyncManager, SharedMemoryManager, BaseProxy, Namespace } from './managers.js';
export * as managers from './managers.js';
