/**
 * Python's `multiprocessing.managers`: a server process holding shared objects, and proxies that
 * call them from any process (any start method) or machine. The parts live in src/managers/:
 * `base.ts` (BaseManager), `server.ts` (the server and its protocol), `sessions.ts` (a process's
 * connections to servers), `proxies.ts` (proxies, reference counting), `referents.ts` and
 * `primitives.ts` (the containers and the waiting primitives a SyncManager holds),
 * `sync.ts` (SyncManager, SharedMemoryManager), `pyvalues.ts` (Python's key equality and repr).
 */
export {
  BaseManager, runServer, type BaseManagerOptions, type ManagedCallable, type ManagerContext, type RegisterOptions,
} from './managers/base.js';
export { Manager, SharedMemoryManager, SyncManager } from './managers/sync.js';
export {
  AcquirerProxy, ArrayProxy, AsyncResultProxy, AutoProxy, BarrierProxy, PoolProxy, BaseProxy, ConditionProxy, DictProxy, EventProxy, IteratorProxy,
  JoinableQueueProxy, ListProxy, MakeProxyType, NamespaceProxy, QueueProxy, SetProxy, ValueProxy,
  type CallOptions, type DictInit, type Proxied, type ProxyOptions, type ProxyType, type QueueGetOptions, type SetLike, type Token,
} from './managers/proxies.js';
export { Server, SharedMemoryServer, publicMethods } from './managers/server.js';
export { Namespace, ManagedValue as Value } from './managers/referents.js';
/** Python's `multiprocessing.managers.RemoteError` (also exported from the root). */
export { RemoteError } from './errors.js';
