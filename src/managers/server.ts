/**
 * The manager's server (CPython's `managers.Server`): it holds the shared objects, counts the
 * references proxies hold on them, and answers two kinds of requests over authenticated
 * connections, with Python's message shapes:
 *
 * - management calls `[null, name, args, kwds]` (create, incref, decref, shutdown, ...), answered
 *   with `['#RETURN', result]` or `['#TRACEBACK', text]`;
 * - after `accept_connection`, method calls `[id, method, args, kwds]` on one object, answered with
 *   `#RETURN` (a copy of the result), `#PROXY` (`[exposed, token]` for a result registered as a new
 *   object), `#ERROR` (the referent's own exception), `#TRACEBACK` (a method that is not exposed)
 *   or `#UNSERIALIZABLE`.
 *
 * Every connection is served concurrently: one waiting call (an acquire, a blocking get) never holds
 * up another client. The next request is read while a call runs, so a client that hangs up aborts
 * its waiting call.
 */
import { Listener, type Address, type Connection } from '../connection.js';
import { AssertionError, AttributeError, AuthenticationError, EOFError, KeyError, OSError, TimeoutError, ValueError } from '../errors.js';
import { SharedMemory } from '../sharedMemory.js';
import { debug, info } from '../logger.js';
import { callerContext, getValueSymbol, setLocalResolver, toManagedIterator } from './referents.js';
import { pyRepr, pyTypeName } from './pyvalues.js';
import { Lane } from './lane.js';

/** Python's `Token(typeid, address, id)`: what names a shared object. */
export interface Token {
  typeid: string;
  address: Address;
  id: string;
}

export type Request = [id: string | null, method: string, args: unknown[], kwds: Record<string, unknown> | null];
type ReplyKind = '#RETURN' | '#ERROR' | '#TRACEBACK' | '#UNSERIALIZABLE' | '#PROXY';
export type Reply = [kind: ReplyKind, result: unknown];

/** One registered type, as the server sees it. */
export interface ServerEntry {
  callable: ((...args: unknown[]) => unknown) | null;
  exposed: readonly string[] | null;
  methodToTypeid: Readonly<Record<string, string>> | null;
}

interface ObjectEntry {
  obj: unknown;
  exposed: readonly string[];
  methodToTypeid: Readonly<Record<string, string>> | null;
}

export function sameAddress(a: Address, b: Address): boolean {
  if (typeof a === 'string' || typeof b === 'string') return a === b;
  return a[0] === b[0] && a[1] === b[1];
}

/** Python's dunder and snake_case method names, for `_callmethod('__getitem__')` from ported code. */
const pythonNames: Record<string, string> = {
  __getitem__: 'getItem',
  __setitem__: 'setItem',
  __delitem__: 'delItem',
  __contains__: 'has',
  __len__: 'len',
  __iter__: 'iter',
  __next__: 'next',
  __imul__: 'imul',
};

function jsMethodName(name: string): string {
  const mapped = pythonNames[name];
  if (mapped) return mapped;
  if (name.startsWith('_') || !name.includes('_')) return name;
  return name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Python's `public_methods(obj)`: callable attributes whose names do not start with `_`. */
export function publicMethods(obj: unknown): string[] {
  const names = new Set<string>();
  if (obj === null || (typeof obj !== 'object' && typeof obj !== 'function')) return [];
  for (let o: object | null = obj as object; o && o !== Object.prototype && o !== Function.prototype; o = Object.getPrototypeOf(o)) {
    for (const key of Object.getOwnPropertyNames(o)) {
      if (key.startsWith('_') || key === 'constructor' || names.has(key)) continue;
      const d = Object.getOwnPropertyDescriptor(o, key);
      if (d && typeof d.value === 'function') names.add(key);
    }
  }
  return [...names];
}

function typeRepr(obj: unknown): string {
  const name = typeof obj === 'object' && obj !== null ? (obj.constructor as { name?: string })?.name ?? 'object' : pyTypeName(obj);
  return `<class '${name}'>`;
}

function tupleRepr(names: readonly string[]): string {
  return names.length === 1 ? `(${pyRepr(names[0])},)` : `(${names.map((n) => pyRepr(n)).join(', ')})`;
}

/** Python's `traceback.format_exc()`, in JavaScript's words. */
function formatException(error: unknown): string {
  if (error instanceof Error) return `${error.stack ?? `${error.name}: ${error.message}`}\n`;
  return `${String(error)}\n`;
}

/** Calls a registered callable: a class is constructed, a function called. */
function instantiate(callable: (...args: unknown[]) => unknown, args: unknown[]): unknown {
  const source = Function.prototype.toString.call(callable);
  if (/^class\b/.test(source)) return Reflect.construct(callable, args);
  return callable(...args);
}

let current: Server | null = null;

/** The server running in this process (thread), if any: proxies that arrive here for its own
 * objects are "manager owned" (Python's `_manager_server` check). */
export function currentServer(): Server | null {
  return current;
}

interface Client {
  conn: Connection;
  controller: AbortController;
  /** Where this client's requests and replies travel: the socket, or its shared-memory lane. */
  channel: Channel;
}

/** What a session is served over (a Connection, or a Lane). */
type Channel = Pick<Connection, 'send' | 'closed'>;

/** The server's half of a client's lane offer (see lane.ts), or null to stay on the socket. */
function acceptLane(offer: unknown): Lane | null {
  const segment = (offer as { lane?: unknown } | null | undefined)?.lane;
  if (typeof segment !== 'string') return null;
  try {
    return Lane.forServer(segment);
  } catch (error) {
    debug('manager server: declined a shared-memory lane: %s', (error as Error).message);
    return null;
  }
}

export class Server {
  /** The management calls a client may make (Python's `Server.public`). */
  static readonly public: readonly string[] = [
    'shutdown', 'create', 'accept_connection', 'get_methods', 'debug_info', 'number_of_objects', 'dummy', 'incref', 'decref',
  ];

  readonly registry: Map<string, ServerEntry>;
  readonly listener: Listener;
  readonly idToObj = new Map<string, ObjectEntry>();
  readonly idToRefcount = new Map<string, number>();
  readonly idToLocalProxyObj = new Map<string, ObjectEntry>();
  private readonly clients = new Set<Client>();
  private nextId = 1;
  private stopping = false;
  private readonly stopped: Promise<void>;
  private markStopped!: () => void;

  constructor(registry: Map<string, ServerEntry>, address: Address | null | undefined, authkey: Uint8Array) {
    if (!(authkey instanceof Uint8Array)) throw new TypeError(`Authkey ${String(authkey)} is type ${typeof authkey}, not bytes`);
    this.registry = registry;
    this.listener = new Listener(address ?? null, { backlog: 128, authkey });
    this.stopped = new Promise((resolve) => (this.markStopped = resolve));
  }

  get address(): Address {
    return this.listener.address;
  }

  /** Accepts connections until a client calls `shutdown` (Python then exits the process; this
   * resolves, and the manager's server process returns from its target with exit code 0). */
  async serveForever(): Promise<void> {
    current = this;
    setLocalResolver((value) => this.localReferent(value));
    await this.listener.listening;
    void this.acceptLoop();
    await this.stopped;
  }

  private async acceptLoop(): Promise<void> {
    while (!this.stopping) {
      let conn: Connection;
      try {
        conn = await this.listener.accept();
      } catch (error) {
        if (this.stopping) break;
        if (error instanceof AuthenticationError || error instanceof EOFError || error instanceof TimeoutError || error instanceof OSError) {
          debug('manager server: refused a connection: %s', (error as Error).message);
          if ((error as Error).message === 'listener is closed') break;
          continue;
        }
        throw error;
      }
      void this.handleRequest(conn);
    }
  }

  /** Python's `handle_request`: one management call, or the start of a client's session. */
  private async handleRequest(conn: Connection): Promise<void> {
    const client: Client = { conn, controller: new AbortController(), channel: conn };
    this.clients.add(client);
    try {
      let request: Request;
      try {
        request = (await conn.recv()) as Request;
      } catch {
        return;
      }
      const [, name, args] = request;
      if (name === 'accept_connection') {
        const lane = acceptLane(args?.[1]);
        conn.send(['#RETURN', lane ? { lane: true } : null]);
        await this.serveClient(client, String(args?.[0] ?? ''), lane);
        return;
      }
      const reply = await this.management(client, name, args ?? []);
      this.send(conn, reply);
    } finally {
      this.clients.delete(client);
      client.controller.abort(new EOFError('the client closed its connection'));
      conn.close();
    }
  }

  private async management(client: Client, name: string, args: unknown[]): Promise<Reply> {
    try {
      if (!(this.constructor as typeof Server).public.includes(name)) throw new AssertionError(`${pyRepr(name)} unrecognized`);
      const fn = (this as unknown as Record<string, (c: Client, ...a: unknown[]) => unknown>)[name]!;
      return ['#RETURN', await fn.call(this, client, ...args)];
    } catch (error) {
      return ['#TRACEBACK', formatException(error)];
    }
  }

  private send(channel: Channel, reply: Reply): void {
    if (channel.closed) return;
    try {
      channel.send(reply);
    } catch (error) {
      try {
        channel.send(['#UNSERIALIZABLE', formatException(error)]);
      } catch {
        // The connection is gone.
      }
    }
  }

  /** Python's `serve_client`: method calls on shared objects until the client hangs up. */
  private async serveClient(client: Client, name: string, lane: Lane | null): Promise<void> {
    const { conn, controller } = client;
    const context = { client: name, signal: controller.signal };
    if (lane) {
      client.channel = lane;
      // The socket carries nothing more; its hang-up ends the session and aborts a waiting call.
      conn._watchEnd((error) => controller.abort(error));
      controller.signal.addEventListener('abort', () => lane.close(), { once: true });
    }
    let next = lane ? lane.recv() : conn.recv();
    for (;;) {
      let request: Request;
      try {
        request = (await next) as Request;
      } catch {
        return;
      }
      if (!lane) {
        // Read ahead: a hang-up while this call waits aborts it.
        next = conn.recv();
        next.catch((error: unknown) => controller.abort(error));
      }
      const [ident, methodname, args] = request;
      let reply: Reply;
      if (ident === null) reply = await this.management(client, methodname, args ?? []);
      else reply = await callerContext.run(context, () => this.callMethod(ident, methodname, args ?? []));
      if (controller.signal.aborted) return;
      this.send(client.channel, reply);
      if (lane) next = lane.recv();
    }
  }

  private lookup(ident: string): ObjectEntry {
    const entry = this.idToObj.get(ident) ?? this.idToLocalProxyObj.get(ident);
    if (!entry) throw new KeyError(pyRepr(ident));
    return entry;
  }

  private async callMethod(ident: string, methodname: string, args: unknown[]): Promise<Reply> {
    let entry: ObjectEntry;
    try {
      entry = this.lookup(ident);
    } catch (error) {
      return ['#TRACEBACK', formatException(error)];
    }
    const { obj, exposed, methodToTypeid } = entry;
    const name = exposed.includes(methodname) ? methodname : jsMethodName(methodname);
    if (!exposed.includes(name)) {
      const fallback = this.fallback(obj, methodname);
      if (fallback) return fallback;
      return ['#TRACEBACK', formatException(new AttributeError(`method ${pyRepr(methodname)} of ${typeRepr(obj)} object is not in exposed=${tupleRepr(exposed)}`))];
    }
    let result: unknown;
    try {
      result = await this.invoke(obj, name, args);
    } catch (error) {
      return ['#ERROR', error];
    }
    const typeid = methodToTypeid?.[name];
    if (typeid) {
      try {
        const [rident, rexposed] = await this.createObject(typeid, [result]);
        const token: Token = { typeid, address: this.address, id: rident };
        return ['#PROXY', [rexposed, token]];
      } catch (error) {
        return ['#TRACEBACK', formatException(error)];
      }
    }
    return ['#RETURN', result];
  }

  private async invoke(obj: unknown, name: string, args: unknown[]): Promise<unknown> {
    const target = obj as Record<string, unknown>;
    switch (name) {
      case '__getattribute__': {
        const attr = String(args[0]);
        if (!(attr in target)) throw new AttributeError(`'${typeRepr(obj).slice(8, -2)}' object has no attribute ${pyRepr(attr)}`);
        return target[attr];
      }
      case '__setattr__':
        target[String(args[0])] = args[1];
        return undefined;
      case '__delattr__': {
        const attr = String(args[0]);
        if (!Object.hasOwn(target, attr)) throw new AttributeError(`'${typeRepr(obj).slice(8, -2)}' object has no attribute ${pyRepr(attr)}`);
        delete target[attr];
        return undefined;
      }
    }
    const fn = target[name];
    if (typeof fn !== 'function') {
      if (fn === undefined) throw new AttributeError(`'${typeRepr(obj).slice(8, -2)}' object has no attribute ${pyRepr(name)}`);
      throw new TypeError(`'${pyTypeName(fn)}' object is not callable`);
    }
    return await (fn as (...a: unknown[]) => unknown).apply(obj, args);
  }

  /** `__str__`, `__repr__` and `#GETVALUE` answer whatever `exposed` says. */
  private fallback(obj: unknown, methodname: string): Reply | null {
    try {
      switch (methodname) {
        case '__str__':
        case 'str':
          return ['#RETURN', pyRepr(obj)];
        case '__repr__':
        case 'repr':
          return ['#RETURN', pyRepr(obj)];
        case '#GETVALUE': {
          const getter = (obj as { [getValueSymbol]?: () => unknown })?.[getValueSymbol];
          return ['#RETURN', typeof getter === 'function' ? getter.call(obj) : obj];
        }
      }
    } catch (error) {
      return ['#TRACEBACK', formatException(error)];
    }
    return null;
  }

  /** The referent of a proxy to one of this server's own objects (for `update(otherDict)`,
   * `Condition(lock)`); anything else unchanged. */
  localReferent(value: unknown): unknown {
    const token = (value as { _token?: Token } | null)?._token;
    if (!token || typeof token.id !== 'string' || !sameAddress(token.address, this.address)) return value;
    return (this.idToObj.get(token.id) ?? this.idToLocalProxyObj.get(token.id))?.obj ?? value;
  }

  /** A proxy to one of this server's objects arrived inside a request: the object stays alive as
   * long as the server does, whatever happens to the client's proxies (Python's manager_owned). */
  pinLocal(ident: string): void {
    if (this.idToLocalProxyObj.has(ident)) return;
    const entry = this.idToObj.get(ident);
    if (entry) this.idToLocalProxyObj.set(ident, entry);
  }

  private async createObject(typeid: string, args: unknown[]): Promise<[string, readonly string[]]> {
    const entry = this.registry.get(typeid);
    if (!entry) throw new ValueError(`unknown typeid ${pyRepr(typeid)}`);
    let obj: unknown;
    if (entry.callable === null) {
      if (args.length !== 1) throw new ValueError('Without callable, must have one non-keyword argument');
      obj = typeid === 'Iterator' ? toManagedIterator(args[0]) : args[0];
    } else {
      obj = await instantiate(entry.callable, args);
    }
    let exposed = entry.exposed ?? publicMethods(obj);
    if (entry.methodToTypeid) exposed = [...exposed, ...Object.keys(entry.methodToTypeid).filter((m) => !exposed.includes(m))];
    const ident = (this.nextId++).toString(16);
    debug('%r callable returned object with id %r', typeid, ident);
    this.idToObj.set(ident, { obj, exposed, methodToTypeid: entry.methodToTypeid });
    this.idToRefcount.set(ident, 0);
    this.incref(null, ident);
    return [ident, exposed];
  }

  // ---- the public calls (`Server.public`) ----

  /** Answers, then stops accepting and drops every client. */
  shutdown(client: Client | null): void {
    info('manager received shutdown message');
    if (client) this.send(client.channel, ['#RETURN', null]);
    this.stop();
  }

  /** Stops the server (its objects are dropped with it). */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.listener.close();
    for (const c of this.clients) {
      c.controller.abort(new EOFError('the manager is shutting down'));
      c.conn.close();
    }
    if (current === this) current = null;
    this.markStopped();
  }

  create(_client: Client | null, typeid: string, ...args: unknown[]): Promise<[string, readonly string[]]> {
    return this.createObject(typeid, args);
  }

  get_methods(_client: Client | null, token: Token): readonly string[] {
    return this.lookup(token.id).exposed;
  }

  debug_info(): string {
    const lines: string[] = [];
    for (const [ident, count] of this.idToRefcount) {
      if (ident === '0') continue;
      lines.push(`  ${ident}:       refcount=${count}\n    ${pyRepr(this.idToObj.get(ident)?.obj).slice(0, 75)}`);
    }
    return lines.join('\n');
  }

  number_of_objects(): number {
    return this.idToRefcount.size;
  }

  dummy(): void {}

  incref(_client: Client | null, ident: string): void {
    const count = this.idToRefcount.get(ident);
    if (count !== undefined) {
      this.idToRefcount.set(ident, count + 1);
      return;
    }
    const pinned = this.idToLocalProxyObj.get(ident);
    if (!pinned) throw new KeyError(pyRepr(ident));
    // A proxy read back from a container: tracking starts again (Python's "re-enabled tracking").
    this.idToRefcount.set(ident, 1);
    this.idToObj.set(ident, pinned);
  }

  decref(_client: Client | null, ident: string): void {
    if (!this.idToRefcount.has(ident) && this.idToLocalProxyObj.has(ident)) return;
    const count = this.idToRefcount.get(ident) ?? 0;
    if (count <= 0) throw new AssertionError(`Id ${ident} (${pyRepr(this.idToObj.get(ident)?.obj)}) has refcount ${count}, not 1+`);
    if (count > 1) {
      this.idToRefcount.set(ident, count - 1);
      return;
    }
    this.idToRefcount.delete(ident);
    debug('disposing of obj with id %r', ident);
    this.idToObj.delete(ident);
  }
}

/** The server of a SharedMemoryManager: it also tracks segments and unlinks them at shutdown. */
export class SharedMemoryServer extends Server {
  static override readonly public: readonly string[] = [...Server.public, 'track_segment', 'release_segment', 'list_segments'];
  private readonly segmentNames: string[] = [];

  track_segment(_client: Client | null, name: string): void {
    this.segmentNames.push(name);
  }

  release_segment(_client: Client | null, name: string): void {
    const i = this.segmentNames.indexOf(name);
    if (i >= 0) this.segmentNames.splice(i, 1);
    try {
      const shm = new SharedMemory({ name });
      shm.close();
      shm.unlink();
    } catch {
      // Already unlinked by its user.
    }
  }

  list_segments(): string[] {
    return [...this.segmentNames];
  }

  override shutdown(client: Client | null): void {
    for (const name of [...this.segmentNames]) this.release_segment(client, name);
    super.shutdown(client);
  }
}

export const serverClasses = { Server, SharedMemoryServer } as const;
export type ServerKind = keyof typeof serverClasses;
