/**
 * `BaseManager` (CPython's `managers.BaseManager`): a registry of types, and a server process that
 * holds their objects, started here (`start`), run in this process (`getServer().serveForever()`)
 * or reached over the network (`connect`).
 */
import { isMainThread } from 'node:worker_threads';
import type { Address, AuthKey } from '../connection.js';
import { getContext, type BaseContext } from '../context.js';
import { ProcessError, ValueError } from '../errors.js';
import { info } from '../logger.js';
import { currentProcess, type Process } from '../process.js';
import { SimpleQueue } from '../queues.js';
import { sentinelExit } from '../sentinels.js';
import { functionFromSource, refOf, sourceOf, task, type SourceFunction } from '../tasks.js';
import { finalize, throwIfAborted, type FinalizeHandle } from '../util.js';
import { AutoProxy, BaseProxy, recordProxyType, type ProxyType } from './proxies.js';
import { connectionsTo, forgetConnections } from './sessions.js';
import { serverClasses, type Server, type ServerEntry, type ServerKind, type Token } from './server.js';

/** The context a manager's server process is started from. */
export type ManagerContext = BaseContext;

export interface BaseManagerOptions {
  /** Where the server listens: an AF_UNIX path or `['127.0.0.1', port]` (port 0 picks one). */
  address?: Address | null;
  /** The key clients must prove; default `currentProcess().authkey` (children inherit it). */
  authkey?: AuthKey | null;
  /** The context whose Process runs the server (default: the default context). */
  ctx?: ManagerContext | null;
  /** Seconds `shutdown()` waits for the server before terminating it (Python's 1.0). */
  shutdownTimeout?: number;
}

/** A registered callable: a class (constructed) or a function (called), possibly async. */
export type ManagedCallable = ((...args: never[]) => unknown) | (abstract new (...args: never[]) => unknown);

export interface RegisterOptions {
  /** The proxy class (default: an AutoProxy over the referent's public methods). */
  proxytype?: ProxyType | null;
  /** The method names proxies may call (default: the proxy class's `_exposed_`, or every public method). */
  exposed?: readonly string[] | null;
  /** Methods whose result is kept on the server and returned as a proxy of that typeid. */
  methodToTypeid?: Readonly<Record<string, string>> | null;
  /** Add a `manager[typeid](...args)` method that creates an object (default true). */
  createMethod?: boolean;
}

interface RegistryEntry {
  callable: ManagedCallable | null;
  exposed: readonly string[] | null;
  methodToTypeid: Readonly<Record<string, string>> | null;
  proxytype: ProxyType | null;
}

/** A callable on its way to the server: by reference (`mp.task`/`mp.serializable`) or by source. */
type EncodedCallable = ManagedCallable | { source: SourceFunction } | null;

function encodeCallable(fn: ManagedCallable | null | undefined, what: string): EncodedCallable {
  if (fn === null || fn === undefined) return null;
  if (typeof fn !== 'function') throw new TypeError(`${what} must be callable`);
  if (refOf(fn)) return fn;
  return { source: sourceOf(fn, what) };
}

function decodeCallable(encoded: EncodedCallable): ((...args: unknown[]) => unknown) | null {
  if (encoded === null) return null;
  if (typeof encoded === 'function') return encoded as (...args: unknown[]) => unknown;
  return functionFromSource(encoded.source) as (...args: unknown[]) => unknown;
}

type EncodedRegistry = Record<string, { callable: EncodedCallable; exposed: readonly string[] | null; methodToTypeid: Readonly<Record<string, string>> | null }>;

function decodeRegistry(encoded: EncodedRegistry): Map<string, ServerEntry> {
  const out = new Map<string, ServerEntry>();
  for (const [typeid, e] of Object.entries(encoded)) {
    out.set(typeid, { callable: decodeCallable(e.callable), exposed: e.exposed, methodToTypeid: e.methodToTypeid });
  }
  return out;
}

function authkeyBytes(authkey: AuthKey | null | undefined): Uint8Array {
  if (authkey === null || authkey === undefined) return currentProcess().authkey;
  if (typeof authkey === 'string') return Buffer.from(authkey, 'utf8');
  if (authkey instanceof Uint8Array) return Uint8Array.from(authkey);
  throw new TypeError('authkey should be a byte string');
}

/** The manager's server process: Python's `BaseManager._run_server`. */
export const runServer = task(
  async (
    kind: ServerKind,
    registry: EncodedRegistry,
    address: Address | null,
    authkey: Uint8Array,
    ready: SimpleQueue<Address>,
    initializer: EncodedCallable,
    initargs: unknown[],
  ) => {
    // Started as a daemon so that a forgotten manager never keeps its parent alive (it is
    // terminated when the parent exits); inside, it may start children (a manager's Pool).
    currentProcess().daemon = false;
    // Python's server ignores SIGINT: Ctrl-C in a terminal reaches the whole process group, and
    // the parent shuts the server down itself.
    if (isMainThread) process.on('SIGINT', () => {});
    const init = decodeCallable(initializer);
    if (init) await init(...initargs);
    const server = new serverClasses[kind](decodeRegistry(registry), address, authkey);
    ready.put(server.address);
    info('manager serving at %s', JSON.stringify(server.address));
    await server.serveForever();
  },
  { module: import.meta.url },
);

type State = 'initial' | 'started' | 'shutdown';

/** Python's `BaseManager`. Subclass it and `register` types; `await m.start()` or `m.connect()`. */
export class BaseManager implements AsyncDisposable {
  static _registry: Map<string, RegistryEntry> = new Map();
  /** Which server class the manager's server process runs. */
  static _serverKind: ServerKind = 'Server';

  #address: Address | null;
  readonly #authkey: Uint8Array;
  readonly #ctx: ManagerContext | null;
  readonly #shutdownTimeout: number;
  #state: State = 'initial';
  #process: Process | null = null;
  #finalizer: FinalizeHandle | null = null;

  constructor(options: BaseManagerOptions = {}) {
    this.#address = options.address ?? null;
    this.#authkey = authkeyBytes(options.authkey);
    this.#ctx = options.ctx ?? null;
    this.#shutdownTimeout = options.shutdownTimeout ?? 1.0;
  }

  /**
   * Registers a type (a classmethod, as Python's): `callable` makes the objects on the server
   * (omit it for a manager that only `connect()`s); `proxytype`, `exposed` and `methodToTypeid`
   * say how clients call them; with `createMethod` (default) `manager[typeid](...args)` creates one.
   */
  static register(typeid: string, callable?: ManagedCallable | null, options: RegisterOptions = {}): void {
    if (typeof typeid !== 'string') throw new TypeError('typeid must be a string');
    if (!Object.hasOwn(this, '_registry')) this._registry = new Map(this._registry);
    const proxytype = options.proxytype ?? null;
    const proxyStatics = (proxytype ?? BaseProxy) as unknown as typeof BaseProxy;
    const exposed = options.exposed ?? (proxytype ? proxyStatics._exposed_ : null);
    const methodToTypeid = options.methodToTypeid ?? (proxytype ? proxyStatics._methodToTypeid_ : null);
    if (methodToTypeid) {
      for (const [k, v] of Object.entries(methodToTypeid)) {
        if (typeof k !== 'string' || typeof v !== 'string') throw new ValueError(`${String(k)} is not a string`);
      }
    }
    if (callable !== null && callable !== undefined && typeof callable !== 'function') throw new TypeError('callable must be a function or a class');
    this._registry.set(typeid, { callable: callable ?? null, exposed: exposed ? [...exposed] : null, methodToTypeid, proxytype });
    if (proxytype) recordProxyType(typeid, proxytype);
    if (options.createMethod ?? true) {
      Object.defineProperty(this.prototype, typeid, {
        value: function (this: BaseManager, ...args: unknown[]) {
          return this._createProxy(typeid, args);
        },
        writable: true,
        configurable: true,
      });
    }
  }

  private get registry(): Map<string, RegistryEntry> {
    return (this.constructor as typeof BaseManager)._registry;
  }

  /** The server's address (known after `start()`; the given one otherwise). */
  get address(): Address | null {
    return this.#address;
  }

  /** @internal */
  get _authkey(): Uint8Array {
    return this.#authkey;
  }

  /** @internal The server process (after `start()`). */
  get _process(): Process | null {
    return this.#process;
  }

  /** @internal started, shut down, ... */
  get _state(): State {
    return this.#state;
  }

  private encodedRegistry(): EncodedRegistry {
    const out: EncodedRegistry = {};
    for (const [typeid, e] of this.registry) {
      out[typeid] = { callable: encodeCallable(e.callable, `the callable registered as '${typeid}'`), exposed: e.exposed, methodToTypeid: e.methodToTypeid };
    }
    return out;
  }

  private checkInitial(): void {
    if (this.#state === 'started') throw new ProcessError('Already started server');
    if (this.#state === 'shutdown') throw new ProcessError('Manager has shut down');
  }

  /** A Server for this manager, to run in this process with `serveForever()`. */
  getServer(): Server {
    this.checkInitial();
    const cls = serverClasses[(this.constructor as typeof BaseManager)._serverKind];
    // The server runs here: the callables need not travel, so closures are fine.
    const registry = new Map<string, ServerEntry>();
    for (const [typeid, e] of this.registry) {
      registry.set(typeid, { callable: e.callable as ServerEntry['callable'], exposed: e.exposed, methodToTypeid: e.methodToTypeid });
    }
    return new cls(registry, this.#address, this.#authkey);
  }

  /** Connects to a server started elsewhere (`address` and `authkey` must be given). */
  async connect(options: { signal?: AbortSignal } = {}): Promise<this> {
    if (this.#address === null) throw new ValueError('connect() needs the address of a running manager');
    await connectionsTo(this.#address, this.#authkey).dispatch('dummy', [], options.signal);
    this.#state = 'started';
    return this;
  }

  /**
   * Starts the server process (named `<ClassName>-N`); resolves once it listens. An abort of
   * `signal` before then kills the server and rejects with the signal's reason.
   */
  async start(
    initializer?: ((...args: never[]) => unknown) | null,
    initargs: Iterable<unknown> = [],
    options: { signal?: AbortSignal } = {},
  ): Promise<this> {
    this.checkInitial();
    throwIfAborted(options.signal);
    if (initializer !== null && initializer !== undefined && typeof initializer !== 'function') {
      throw new TypeError('initializer must be a callable');
    }
    const ctx = this.#ctx ?? getContext();
    // Python sends the address back through a pipe; a SimpleQueue works on every start method.
    const ready = new SimpleQueue<Address>({ ctx });
    const kind = (this.constructor as typeof BaseManager)._serverKind;
    const p = new ctx.Process({
      target: runServer,
      args: [kind, this.encodedRegistry(), this.#address, this.#authkey, ready, encodeCallable(initializer, 'the initializer'), [...initargs]],
      daemon: true,
    });
    p.name = `${this.constructor.name}-${p.name.slice(p.name.lastIndexOf('-') + 1)}`;
    p.start();
    this.#process = p;
    const gaveUp = new AbortController();
    const onAbort = (): void => gaveUp.abort(options.signal!.reason);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      this.#address = await Promise.race([
        ready.get({ signal: gaveUp.signal }),
        sentinelExit(p.sentinel)!.then(() => {
          throw new ProcessError(`the manager's server process ${p.name} exited (exitcode ${p.exitcode}) before it was ready`);
        }),
      ]);
    } catch (error) {
      if (options.signal?.aborted) p.kill();
      throw error;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      gaveUp.abort();
      ready.close();
    }
    this.#state = 'started';
    this.#finalizer = finalize(() => this.shutdown(), 0);
    return this;
  }

  /** Waits for the server process to exit (it exits after `shutdown()`). */
  async join(timeout?: number | null, options: { signal?: AbortSignal } = {}): Promise<void> {
    throwIfAborted(options.signal);
    await this.#process?.join(timeout, options);
  }

  /**
   * Stops the server process (asks it, then terminates it after `shutdownTimeout` seconds, then
   * kills it). On a manager that only `connect()`ed, it forgets the connections and leaves the
   * server running (Python's has no `shutdown` there).
   */
  async shutdown(): Promise<void> {
    if (this.#state !== 'started') {
      this.#state = 'shutdown';
      return;
    }
    this.#state = 'shutdown';
    this.#finalizer?.cancel();
    const address = this.#address!;
    const p = this.#process;
    if (p) {
      info('sending shutdown message to manager');
      try {
        await connectionsTo(address, this.#authkey).dispatch('shutdown');
      } catch {
        // Already gone.
      }
      await p.join(this.#shutdownTimeout);
      if (p.isAlive()) {
        info('manager still alive');
        p.terminate();
        await p.join(this.#shutdownTimeout);
        if (p.isAlive()) {
          info('manager still alive after terminate');
          p.kill();
          await p.join();
        }
      }
    }
    forgetConnections(address, this.#authkey);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  #connections() {
    if (this.#state !== 'started' || this.#address === null) throw new ProcessError('server not yet started');
    return connectionsTo(this.#address, this.#authkey);
  }

  /** Creates an object of a registered type on the server and returns its token and exposed names. */
  async _create(typeid: string, args: readonly unknown[] = []): Promise<[Token, readonly string[]]> {
    const [id, exposed] = (await this.#connections().dispatch('create', [typeid, ...args])) as [string, readonly string[]];
    return [{ typeid, address: this.#address!, id }, exposed];
  }

  /** Creates an object of a registered type and returns a proxy for it (what `manager[typeid]()` does). */
  async _createProxy<P extends BaseProxy = BaseProxy>(typeid: string, args: readonly unknown[] = []): Promise<P> {
    const entry = this.registry.get(typeid);
    if (!entry) throw new ValueError(`unknown typeid '${typeid}'`);
    const [token, exposed] = await this._create(typeid, args);
    const cls = entry.proxytype ?? AutoProxy(typeid, exposed);
    return new cls(token, { manager: this, authkey: this.#authkey, exposed, incref: false }) as P;
  }

  /** How many objects the server holds (Python's `_number_of_objects`, for tests). */
  async _numberOfObjects(): Promise<number> {
    return (await this.#connections().dispatch('number_of_objects')) as number;
  }

  /** The server's objects and their reference counts, as text (Python's `_debug_info`). */
  async _debugInfo(): Promise<string> {
    return (await this.#connections().dispatch('debug_info')) as string;
  }
}
