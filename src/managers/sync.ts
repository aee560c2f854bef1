/**
 * `SyncManager` (what `mp.Manager()` starts) and `SharedMemoryManager`, as CPython's.
 */
import { registerClasses } from '../context.js';
import { ValueError } from '../errors.js';
import { Pool, type PoolOptions } from '../pool.js';
import { SharedMemory, ShareableList, type ShareableValue } from '../sharedMemory.js';
import { task } from '../tasks.js';
import * as resourceTracker from '../resourceTracker.js';
import type { Typecode } from '../sharedctypes.js';
import { BaseManager, type BaseManagerOptions, type ManagerContext } from './base.js';
import {
  AcquirerProxy, ArrayProxy, BarrierProxy, BaseProxy, ConditionProxy, DictProxy, EventProxy, IteratorProxy, JoinableQueueProxy,
  ListProxy, NamespaceProxy, PoolProxy, AsyncResultProxy, QueueProxy, SetProxy, ValueProxy, type DictInit,
} from './proxies.js';
import { connectionsTo } from './sessions.js';
import { ManagedArray, ManagedDict, ManagedList, ManagedSet, ManagedValue, Namespace } from './referents.js';
import {
  ManagedBarrier, ManagedBoundedSemaphore, ManagedCondition, ManagedEvent, ManagedLock, ManagedQueue, ManagedRLock, ManagedSemaphore,
} from './primitives.js';

/** What `manager.Pool(...)` runs on the server. */
const makePool = task((processes: number | null, options: PoolOptions) => new Pool(processes, options), { module: import.meta.url });

/** Python's `SyncManager`: shared containers and synchronisation objects behind proxies. */
export class SyncManager extends BaseManager {
  Queue<T = unknown>(maxsize = 0): Promise<QueueProxy<T>> {
    return this._createProxy('Queue', [maxsize]);
  }

  JoinableQueue<T = unknown>(maxsize = 0): Promise<JoinableQueueProxy<T>> {
    return this._createProxy('JoinableQueue', [maxsize]);
  }

  Event(): Promise<EventProxy> {
    return this._createProxy('Event');
  }

  Lock(): Promise<AcquirerProxy> {
    return this._createProxy('Lock');
  }

  RLock(): Promise<AcquirerProxy> {
    return this._createProxy('RLock');
  }

  Semaphore(value = 1): Promise<AcquirerProxy> {
    return this._createProxy('Semaphore', [value]);
  }

  BoundedSemaphore(value = 1): Promise<AcquirerProxy> {
    return this._createProxy('BoundedSemaphore', [value]);
  }

  /** A Condition over `lock` (a Lock or RLock proxy of this manager), or a fresh RLock. */
  Condition(lock?: AcquirerProxy | null): Promise<ConditionProxy> {
    return this._createProxy('Condition', lock ? [lock] : []);
  }

  /** `action` runs on the server, so it must be an `mp.task`. */
  Barrier(parties: number, action?: (() => unknown) | null, timeout?: number | null): Promise<BarrierProxy> {
    return this._createProxy('Barrier', [parties, action ?? null, timeout ?? null]);
  }

  dict<K = unknown, V = unknown>(init?: DictInit<K, V> | null): Promise<DictProxy<K, V>> {
    const arg = init === null || init === undefined || init instanceof BaseProxy || init instanceof Map ? init : Symbol.iterator in Object(init) ? [...(init as Iterable<readonly [K, V]>)] : init;
    return this._createProxy('dict', arg === null || arg === undefined ? [] : [arg]);
  }

  list<T = unknown>(init?: Iterable<T> | ListProxy<T> | null): Promise<ListProxy<T>> {
    if (init instanceof BaseProxy) return this._createProxy('list', [init]);
    return this._createProxy('list', init === null || init === undefined ? [] : [[...init]]);
  }

  set<T = unknown>(init?: Iterable<T> | null): Promise<SetProxy<T>> {
    return this._createProxy('set', init === null || init === undefined ? [] : [[...init]]);
  }

  Namespace<T extends Record<string, unknown> = Record<string, unknown>>(init?: Partial<T>): Promise<NamespaceProxy<T>> {
    return this._createProxy('Namespace', init ? [init] : []);
  }

  /** A shared value (the `lock` option of `mp.Value` is accepted and ignored, as in Python). */
  Value<T = number>(typecode: Typecode | string, value: T, _options: { lock?: unknown } = {}): Promise<ValueProxy<T>> {
    return this._createProxy('Value', [typecode, value]);
  }

  /** A Pool in the server process (its workers are the server's children); tasks must be `mp.task`s. */
  Pool(processes?: number | null, options: Omit<PoolOptions, 'context' | 'processes'> = {}): Promise<PoolProxy> {
    return this._createProxy('Pool', [processes ?? null, options]);
  }

  Array<T = number>(typecode: Typecode | string, sequence: Iterable<T> | number, _options: { lock?: unknown } = {}): Promise<ArrayProxy<T>> {
    return this._createProxy('Array', [typecode, typeof sequence === 'number' ? sequence : [...sequence]]);
  }
}

SyncManager.register('Queue', ManagedQueue, { proxytype: QueueProxy, createMethod: false });
SyncManager.register('JoinableQueue', ManagedQueue, { proxytype: JoinableQueueProxy, exposed: [...QueueProxy._exposed_!, 'taskDone', 'join'], createMethod: false });
SyncManager.register('Event', ManagedEvent, { proxytype: EventProxy, createMethod: false });
SyncManager.register('Lock', ManagedLock, { proxytype: AcquirerProxy, createMethod: false });
SyncManager.register('RLock', ManagedRLock, { proxytype: AcquirerProxy, createMethod: false });
SyncManager.register('Semaphore', ManagedSemaphore, { proxytype: AcquirerProxy, createMethod: false });
SyncManager.register('BoundedSemaphore', ManagedBoundedSemaphore, { proxytype: AcquirerProxy, createMethod: false });
SyncManager.register('Condition', ManagedCondition, { proxytype: ConditionProxy, createMethod: false });
SyncManager.register('Barrier', ManagedBarrier, { proxytype: BarrierProxy, createMethod: false });
SyncManager.register('list', ManagedList, { proxytype: ListProxy, createMethod: false });
SyncManager.register('dict', ManagedDict, { proxytype: DictProxy, createMethod: false });
SyncManager.register('set', ManagedSet, { proxytype: SetProxy, createMethod: false });
SyncManager.register('Value', ManagedValue, { proxytype: ValueProxy, createMethod: false });
SyncManager.register('Array', ManagedArray, { proxytype: ArrayProxy, createMethod: false });
SyncManager.register('Namespace', Namespace, { proxytype: NamespaceProxy, createMethod: false });
SyncManager.register('Pool', makePool, { proxytype: PoolProxy, createMethod: false });
SyncManager.register('AsyncResult', null, { proxytype: AsyncResultProxy, createMethod: false });
// Only produced as method results (a dict's iter()).
SyncManager.register('Iterator', null, { proxytype: IteratorProxy, createMethod: false });

/** `mp.Manager()`: a started SyncManager on the context's start method. */
export async function Manager(options: { ctx?: ManagerContext | null } = {}): Promise<SyncManager> {
  const manager = new SyncManager({ ctx: options.ctx ?? null });
  await manager.start();
  return manager;
}

registerClasses({ Manager });

/** Python's `SharedMemoryManager`: segments made through it are unlinked at its shutdown. */
export class SharedMemoryManager extends BaseManager {
  static override _serverKind = 'SharedMemoryServer' as const;

  constructor(options: BaseManagerOptions = {}) {
    super(options);
    // The server and this process share one tracker (Python ensures it runs first, on POSIX).
    resourceTracker.ensureRunning();
  }

  /** A new segment of `size` bytes, tracked by the server. */
  async SharedMemory(size: number, options: { signal?: AbortSignal } = {}): Promise<SharedMemory> {
    this.#checkStarted();
    const shm = new SharedMemory({ create: true, size });
    try {
      await this.#track(shm.name, options.signal);
    } catch (error) {
      shm.unlink();
      throw error;
    }
    return shm;
  }

  /** A new ShareableList holding `sequence`, tracked by the server. */
  async ShareableList(sequence: Iterable<ShareableValue>, options: { signal?: AbortSignal } = {}): Promise<ShareableList> {
    this.#checkStarted();
    const sl = new ShareableList(sequence);
    try {
      await this.#track(sl.shm.name, options.signal);
    } catch (error) {
      sl.shm.unlink();
      throw error;
    }
    return sl;
  }

  /** Python's unstarted manager has no address to connect to: a ValueError, before any segment exists. */
  #checkStarted(): void {
    if (this._state !== 'started' || this.address === null) {
      throw new ValueError('the SharedMemoryManager is not started (call and await start() first)');
    }
  }

  async #track(name: string, signal?: AbortSignal): Promise<void> {
    await connectionsTo(this.address!, this._authkey).dispatch('track_segment', [name], signal);
  }

  /** The names of the segments the server tracks. */
  async _listSegments(): Promise<string[]> {
    if (this.address === null) return [];
    return (await connectionsTo(this.address, this._authkey).dispatch('list_segments')) as string[];
  }
}
