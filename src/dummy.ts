/**
 * `multiprocessing.dummy`: the same API backed by threads. Python's dummy module wraps the
 * `threading` module; ours is the 'thread' start method's context (worker_threads), so the same
 * code runs with real parallelism and shared memory without copies.
 */
import { getContext } from './context.js';
import { ThreadPool } from './pool.js';
import { wait as connectionWait } from './connection.js';
// The thread context's factories make these modules' classes: load them.
import './queues.js';
import './sharedctypes.js';

const threads = getContext('thread');

export const Process = threads.Process;
export const Pool = ThreadPool;
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
/** Python's `multiprocessing.dummy.Namespace`: a plain attribute holder. */
export { Namespace } from './managers/referents.js';
/** `multiprocessing.dummy.connection`: `Pipe` over MessageChannels, `wait`. (Python's dummy
 * `Listener`/`Client` are queue-backed stand-ins with no wire format; they have no equivalent here.) */
export const connection = { Pipe: threads.Pipe, wait: connectionWait };
