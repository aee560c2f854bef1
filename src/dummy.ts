/**
 * `multiprocessing.dummy`: the same API backed by threads. Python's dummy module wraps the
 * `threading` module; ours is the 'thread' start method's context (worker_threads), so the same
 * code runs with real parallelism and shared memory without copies.
 */
import { getContext } from './context.js';
import { ThreadPool } from './pool.js';
import { Client, Listener, wait as connectionWait } from './connection.js';
import { callable } from './util.js';
// The thread context's factories make these modules' classes: load them.
import './queues.js';
import './sharedctypes.js';

const threads = getContext('thread');

export const Process = threads.Process;
/** Python's `multiprocessing.dummy.Pool(processes, initializer, initargs)`: a ThreadPool, with or
 * without `new` (a factory function, docs/api.md rule 1). */
export const Pool = callable(ThreadPool);
export const { currentProcess, activeChildren, freezeSupport } = threads;
export const Lock = threads.Lock;
export const RLock = threads.RLock;
export const Semaphore = threads.Semaphore;
export const BoundedSemaphore = threads.BoundedSemaphore;
export const Condition = threads.Condition;
export const Event = threads.Event;
export const Barrier = threads.Barrier;
export const Queue = threads.Queue;
export const JoinableQueue = threads.JoinableQueue;
export const Pipe = threads.Pipe;
export const Value = threads.Value;
export const Array = threads.Array;
export const SimpleQueue = threads.SimpleQueue;
/**
 * Python's `multiprocessing.dummy.Manager()` returns the module, whose `dict()` and `list()` are
 * plain objects that threads share by sharing memory. Worker threads share no objects, so this is
 * a real manager whose server runs on a thread: `await mp.dummy.Manager()`, then `await m.dict()`.
 */
export const Manager = threads.Manager;
/** Python's `multiprocessing.dummy.Namespace`: a plain attribute holder. */
export { Namespace } from './managers/referents.js';
/**
 * `multiprocessing.dummy.connection`: `Pipe` (a socket pair, as everywhere), `wait`, and `Listener`/`Client`.
 * Python's dummy Listener and Client are queue-backed stand-ins for threads that share memory;
 * worker threads do not, so these are the real ones (AF_UNIX sockets by default, which any thread
 * can reach).
 */
export const connection = { Pipe: threads.Pipe, wait: connectionWait, Listener, Client };
