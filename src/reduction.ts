/**
 * The one place where values become bytes (or a postMessage graph) and back, as CPython's
 * reduction.py. Everything that crosses a process or thread boundary goes through here.
 *
 * `reduce` walks a value once: it rejects what cannot travel (naming its path), turns functions
 * into task references or source text, keeps the class of `mp.serializable` instances, re-creates
 * errors with their own class, and turns library objects into `{ kind, state }` records that the
 * receiving side rebuilds into live handles. The result is plain structured-clone data.
 */
import * as v8 from 'node:v8';
import type { Socket } from 'node:net';
import { MessagePort, type Transferable } from 'node:worker_threads';
import { errorClasses, PicklingError, UnpicklingError, ValueError } from './errors.js';
import { functionFromSource, lookupLoaded, refOf, resolveRef, sourceOf, type SourceFunction, type TaskRef } from './tasks.js';

/** Library objects implement this to travel as live handles. */
export const reduceSymbol = Symbol.for('multiprocessing-ts.reduce');

export interface Reduced {
  kind: string;
  state: unknown;
}

interface Reducible {
  [reduceSymbol](ctx: ReduceContext): Reduced;
}

/** Where a value is going, and the OS resources its handles need to get there. */
export interface ReduceContext {
  target: 'process' | 'thread';
  /** MessagePorts and other transferables for a thread channel. */
  transfer: Transferable[];
  /** Sockets a process child must receive (inherited at spawn, or sent over the IPC channel); a
   * handle's state keeps its index into this list. Null for a message (a pipe, a queue, a pool),
   * which carries no descriptors: a socket in it goes through the resource sharer. */
  handles: Socket[] | null;
  /** Modules the receiver will import to find tasks and classes (the forkserver preloads them). */
  modules: Set<string>;
  /** Set when the value leaves this machine (the redis context). */
  remote?: RemoteNaming;
}

/** How a value that leaves this machine names its functions and classes (by project path, not by
 * file URL), and which library objects may go with it. */
export interface RemoteNaming {
  name(ref: TaskRef): TaskRef;
  accepts(kind: string): boolean;
}

/** Which references a value from another machine may use, and whether functions may come as source. */
export interface RemoteResolving {
  /** The local reference for a portable one; throws if it is refused. */
  resolve(ref: TaskRef): TaskRef;
  readonly allowSource: boolean;
  refuseSource(name: string): never;
}

/** What the receiving side has: the sockets that arrived with the value, in the same order. */
export interface RebuildContext {
  target: 'process' | 'thread';
  handles: Socket[];
  /** Set when the value comes from another machine (the redis context). */
  remote?: RemoteResolving;
}

/** A context for a value going to `target`; `handles` only for a process being started. */
export function newReduceContext(target: 'process' | 'thread', handles: Socket[] | null = null): ReduceContext {
  return { target, transfer: [], handles, modules: new Set() };
}

type Rebuilder<S> = (state: S, ctx: RebuildContext) => unknown;
type Preparer<S> = (state: S) => Promise<void>;
const rebuilders = new Map<string, Rebuilder<unknown>>();
const preparers = new Map<string, Preparer<unknown>>();

/** Tells `rebuild` how to turn a `{ kind, state }` record back into a live object. The module
 * that calls this also names itself for the kind in `reducerHomes` below. `S` is what the kind's
 * reducer put in `state` (the two sides of one kind agree on it; nothing checks it here).
 * `prepare`, run by the async `rebuild` first, does the waiting the rebuild needs (fetching a
 * socket from its sender) without blocking the event loop; `rebuildSync` leaves it to `rebuildFn`. */
export function registerReducer<S>(kind: string, rebuildFn: Rebuilder<S>, prepare?: Preparer<S>): void {
  rebuilders.set(kind, rebuildFn as Rebuilder<unknown>);
  if (prepare) preparers.set(kind, prepare as Preparer<unknown>);
}

type ClassReducer = (o: object, ctx: ReduceContext) => Reduced;
const classReducers: [abstract new (...args: never[]) => object, ClassReducer][] = [];

/** Lets instances of a class the library does not own (`net.Socket`) travel, as Python's
 * `copyreg.pickle` / `reduction.register` do. */
export function registerClassReducer<T extends object>(cls: abstract new (...args: never[]) => T, reduceFn: (o: T, ctx: ReduceContext) => Reduced): void {
  classReducers.push([cls, reduceFn as ClassReducer]);
}

function classReducerOf(o: object): ClassReducer | undefined {
  for (const [cls, reduceFn] of classReducers) if (o instanceof cls) return reduceFn;
  return undefined;
}

// A record that stands for something the walk replaced. The key cannot come from JSON-ish data by
// accident, and records are plain objects so v8 and postMessage carry them as they are.
const TAG = '\u0000mp';
type Record_ =
  | { [TAG]: 'obj'; kind: string; state: unknown }
  | { [TAG]: 'ref'; ref: TaskRef }
  | { [TAG]: 'src'; fn: SourceFunction }
  | { [TAG]: 'inst'; ref: TaskRef; fields: Record<string, unknown> }
  | { [TAG]: 'err'; name: string; message: string; stack?: string; props: Record<string, unknown> };

function isRecord(value: unknown): value is Record_ {
  return typeof value === 'object' && value !== null && TAG in value;
}

export interface ReduceOptions {
  /** A function in this slot (a Process target, a pool function) may travel by its source text. */
  functionSlot?: boolean;
  /** The graph travels by postMessage, whose structured clone makes a Buffer a plain Uint8Array
   * (v8.serialize keeps the class): Buffers go as records that rebuild them. */
  structuredClone?: boolean;
}

/** A Buffer on its way through a structured clone (ReduceOptions.structuredClone). */
registerReducer<Uint8Array>('Buffer', (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));

class Walker {
  changed = false;
  private readonly seen = new Map<object, unknown>();
  constructor(
    private readonly ctx: ReduceContext,
    private readonly structuredClone = false,
  ) {}

  value(v: unknown, path: string): unknown {
    switch (typeof v) {
      case 'function':
        return this.fn(v, path, false);
      case 'symbol':
        throw new PicklingError(`Can't send ${path}: a Symbol cannot be serialised.`);
      case 'object':
        return v === null ? v : this.object(v, path);
      default:
        return v;
    }
  }

  fn(fn: Function, path: string, functionSlot: boolean): Record_ {
    this.changed = true;
    const ref = refOf(fn);
    if (ref) {
      this.ctx.modules.add(ref.module);
      return { [TAG]: 'ref', ref: this.ctx.remote?.name(ref) ?? ref };
    }
    if (!functionSlot) {
      throw new PicklingError(
        `Can't send ${path}: function ${fn.name || '<anonymous>'} inside data cannot be serialised. ` +
          'Wrap it in mp.task() at module top level so the other side can import it.',
      );
    }
    return { [TAG]: 'src', fn: sourceOf(fn, path) };
  }

  private object(o: object, path: string): unknown {
    if (this.seen.has(o)) return this.seen.get(o);
    if (this.structuredClone && ArrayBuffer.isView(o)) return this.forClone(o, path);
    if (ArrayBuffer.isView(o) || o instanceof ArrayBuffer || o instanceof Date || o instanceof RegExp) return o;
    if (o instanceof MessagePort) {
      // A port travels to a thread as itself (a Pipe end of the 'thread' start method).
      if (this.ctx.target === 'process') {
        throw new PicklingError(`Can't send ${path}: a MessagePort reaches threads only, not processes.`);
      }
      if (!this.ctx.transfer.includes(o)) this.ctx.transfer.push(o);
      return o;
    }
    if (o instanceof SharedArrayBuffer) {
      if (this.ctx.target === 'process') {
        throw new PicklingError(
          `Can't send ${path}: a SharedArrayBuffer is shared only between threads. ` +
            'Use mp.RawArray, mp.Array or mp.SharedMemory to share memory with another process.',
        );
      }
      return o;
    }
    const reducer = (o as Partial<Reducible>)[reduceSymbol];
    if (typeof reducer === 'function') return this.reduced(o, reducer.call(o, this.ctx), path);
    if (Array.isArray(o)) return this.array(o, path);
    if (o instanceof Map) return this.map(o, path);
    if (o instanceof Set) return this.set(o, path);
    if (o instanceof Error) return this.error(o, path);
    if (o instanceof Promise || o instanceof WeakMap || o instanceof WeakSet || o instanceof WeakRef) {
      throw new PicklingError(`Can't send ${path}: a ${o.constructor.name} cannot be serialised.`);
    }
    const proto = Object.getPrototypeOf(o);
    if (proto !== Object.prototype && proto !== null) {
      const ref = refOf(proto.constructor);
      if (ref) {
        this.changed = true;
        this.ctx.modules.add(ref.module);
        const record: Record_ = { [TAG]: 'inst', ref: this.ctx.remote?.name(ref) ?? ref, fields: {} };
        this.seen.set(o, record);
        record.fields = this.plain(o, path, true) as Record<string, unknown>;
        return record;
      }
      const classReducer = classReducerOf(o);
      if (classReducer) return this.reduced(o, classReducer(o, this.ctx), path);
      if (isHostObject(o)) {
        throw new PicklingError(
          `Can't send ${path}: a ${proto.constructor?.name ?? 'host'} object (a socket, stream or other ` +
            'resource) cannot be serialised.',
        );
      }
    }
    return this.plain(o, path, false);
  }

  /**
   * A view as postMessage should take it. A structured clone copies a view's whole ArrayBuffer, so a
   * view of part of one (a subarray of a large buffer, a small Buffer in Node's shared pool) goes as
   * a copy of its own bytes, as v8.serialize writes them; and a Buffer as a record that rebuilds its
   * class. Views of shared memory stay themselves.
   */
  private forClone(o: ArrayBufferView, path: string): unknown {
    const partial = o.buffer instanceof ArrayBuffer && (o.byteOffset !== 0 || o.byteLength !== o.buffer.byteLength);
    if (Buffer.isBuffer(o)) {
      const bytes = partial ? new Uint8Array(o) : new Uint8Array(o.buffer, o.byteOffset, o.byteLength);
      return this.reduced(o, { kind: 'Buffer', state: bytes }, path);
    }
    if (!partial) return o;
    const copy = o instanceof DataView
      ? new DataView(o.buffer.slice(o.byteOffset, o.byteOffset + o.byteLength))
      : (o as unknown as { slice(): ArrayBufferView }).slice();
    this.seen.set(o, copy);
    return copy;
  }

  private reduced(o: object, { kind, state }: Reduced, path: string): Record_ {
    if (this.ctx.remote && !this.ctx.remote.accepts(kind)) {
      throw new ValueError(
        `Can't send ${path}: a ${kind} of this machine's contexts cannot reach another machine; ` +
          "use the redis context's objects (mixing contexts is not allowed).",
      );
    }
    this.changed = true;
    const record: Record_ = { [TAG]: 'obj', kind, state: undefined };
    this.seen.set(o, record);
    // A handle's state may hold other library objects (a queue's locks): they travel too.
    record.state = this.value(state, `${path}<${kind}>`);
    return record;
  }

  private array(a: unknown[], path: string): unknown[] {
    this.seen.set(a, a);
    let out: unknown[] | undefined;
    for (let i = 0; i < a.length; i++) {
      const item = a[i];
      const r = typeof item === 'object' || typeof item === 'function' || typeof item === 'symbol'
        ? this.value(item, `${path}[${i}]`)
        : item;
      if (r !== item && !out) {
        out = a.slice(0, i);
        this.seen.set(a, out);
      }
      if (out) out[i] = r;
    }
    return out ?? a;
  }

  private plain(o: object, path: string, forceCopy: boolean): object {
    const src = o as Record<string, unknown>;
    let out: Record<string, unknown> | undefined = forceCopy ? {} : undefined;
    if (!forceCopy) this.seen.set(o, o);
    const keys = Object.keys(src);
    for (let k = 0; k < keys.length; k++) {
      const key = keys[k]!;
      const item = src[key];
      const r = typeof item === 'object' || typeof item === 'function' || typeof item === 'symbol'
        ? this.value(item, `${path}.${key}`)
        : item;
      if (r !== item && !out) {
        out = {};
        for (let j = 0; j < k; j++) out[keys[j]!] = src[keys[j]!];
        this.seen.set(o, out);
      }
      if (out) out[key] = r;
    }
    return out ?? o;
  }

  private map(m: Map<unknown, unknown>, path: string): Map<unknown, unknown> {
    const out = new Map();
    this.seen.set(m, out);
    for (const [k, v] of m) out.set(this.value(k, `${path}.<key>`), this.value(v, `${path}.get(${String(k)})`));
    return out;
  }

  private set(s: Set<unknown>, path: string): Set<unknown> {
    const out = new Set();
    this.seen.set(s, out);
    let i = 0;
    for (const v of s) out.add(this.value(v, `${path}.<item ${i++}>`));
    return out;
  }

  private error(e: Error, path: string): Record_ {
    this.changed = true;
    const record: Record_ = { [TAG]: 'err', name: e.name, message: e.message, stack: e.stack, props: {} };
    this.seen.set(e, record);
    const props: Record<string, unknown> = {};
    for (const key of Object.keys(e)) {
      try {
        props[key] = this.value((e as unknown as Record<string, unknown>)[key], `${path}.${key}`);
      } catch {
        // An error's extra properties are best effort: the error itself must still arrive.
      }
    }
    if (e.cause !== undefined) props.cause = this.value(e.cause, `${path}.cause`);
    record.props = props;
    return record;
  }
}

function isHostObject(o: object): boolean {
  // Sockets, streams, child processes, workers: EventEmitters and anything holding a native handle.
  const candidate = o as { on?: unknown; _handle?: unknown };
  return typeof candidate.on === 'function' || '_handle' in candidate;
}

/** The structured-clone-safe form of `value`; `changed` says whether the receiver must rebuild. */
export function reduce(value: unknown, ctx: ReduceContext, options: ReduceOptions = {}): { graph: unknown; changed: boolean } {
  if (typeof value !== 'object' && typeof value !== 'function') {
    if (typeof value === 'symbol') throw new PicklingError("Can't send a Symbol: it cannot be serialised.");
    return { graph: value, changed: false };
  }
  const walker = new Walker(ctx, options.structuredClone);
  const graph = typeof value === 'function' ? walker.fn(value, 'the function', options.functionSlot ?? false) : walker.value(value, 'the value');
  return { graph, changed: walker.changed };
}

/** A function for a function slot (Process target, pool function, initializer). */
export function reduceFunction(fn: Function, path: string, ctx: ReduceContext): unknown {
  return new Walker(ctx).fn(fn, path, true);
}

// ---- rebuilding ----------------------------------------------------------------------------

const moduleExtension = import.meta.url.endsWith('.ts') ? '.ts' : '.js';

/**
 * The module that registers each kind's rebuilder: `rebuild` imports it when a graph holds that
 * kind, so a child imports only the modules its arguments need (the whole library costs a child
 * tens of milliseconds to load). Every new serialisable kind is added here.
 */
const reducerHomes: Record<string, string> = {
  Queue: 'queues', JoinableQueue: 'queues', SimpleQueue: 'queues',
  Lock: 'synchronize', RLock: 'synchronize', Semaphore: 'synchronize', BoundedSemaphore: 'synchronize',
  Condition: 'synchronize', Event: 'synchronize', Barrier: 'synchronize',
  RawValue: 'sharedctypes', RawArray: 'sharedctypes', Synchronized: 'sharedctypes', SynchronizedArray: 'sharedctypes',
  SharedMemory: 'sharedMemory', ShareableList: 'sharedMemory',
  Connection: 'connection', socket: 'connection',
  'managers.Proxy': 'managers',
  // The redis context's objects (src/redis/).
  'redis.Queue': 'redis/queues', 'redis.JoinableQueue': 'redis/queues', 'redis.SimpleQueue': 'redis/queues',
  'redis.Lock': 'redis/synchronize', 'redis.RLock': 'redis/synchronize', 'redis.Semaphore': 'redis/synchronize',
  'redis.BoundedSemaphore': 'redis/synchronize', 'redis.Condition': 'redis/synchronize', 'redis.Event': 'redis/synchronize',
  'redis.Barrier': 'redis/synchronize', 'redis.Value': 'redis/sharedctypes',
  'redis.dict': 'redis/managers', 'redis.list': 'redis/managers', 'redis.Namespace': 'redis/managers',
};

/** What a graph needs before `rebuildSync` can resolve it: task modules, handle modules, and the
 * handles themselves (`objs`, for their preparers). */
type HandleRecord = Extract<Record_, { [TAG]: 'obj' }>;

function pending(graph: unknown, refs: TaskRef[], homes: Set<string>, objs: HandleRecord[], seen: Set<object>, ctx: RebuildContext): void {
  if (typeof graph !== 'object' || graph === null || seen.has(graph)) return;
  seen.add(graph);
  if (isRecord(graph)) {
    if (graph[TAG] === 'ref' || graph[TAG] === 'inst') {
      const ref = localRef(graph.ref, ctx);
      if (lookupLoaded(ref) === undefined) refs.push(ref);
    }
    if (graph[TAG] === 'src' && ctx.remote && !ctx.remote.allowSource) ctx.remote.refuseSource(graph.fn.name);
    if (graph[TAG] === 'obj') {
      objs.push(graph);
      if (!rebuilders.has(graph.kind) && reducerHomes[graph.kind]) homes.add(reducerHomes[graph.kind]!);
    }
  }
  if (ArrayBuffer.isView(graph) || graph instanceof ArrayBuffer) return;
  const values = graph instanceof Map ? [...graph.keys(), ...graph.values()] : graph instanceof Set ? [...graph] : Object.values(graph);
  for (const v of values) pending(v, refs, homes, objs, seen, ctx);
}

/** A reference from another machine names a module by its project path: this machine's module for
 * it, if allowed. */
function localRef(ref: TaskRef, ctx: RebuildContext): TaskRef {
  return ctx.remote ? ctx.remote.resolve(ref) : ref;
}

/** Rebuilds in place: the graph came fresh from v8.deserialize or postMessage. */
export function rebuildSync(graph: unknown, ctx: RebuildContext): unknown {
  const done = new Map<object, unknown>();
  const visit = (v: unknown): unknown => {
    if (typeof v !== 'object' || v === null) return v;
    if (done.has(v)) return done.get(v);
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer || v instanceof SharedArrayBuffer || v instanceof Date || v instanceof RegExp || v instanceof MessagePort) return v;
    if (isRecord(v)) return rebuildRecord(v, done, visit, ctx);
    done.set(v, v);
    if (v instanceof Map) {
      const entries = [...v];
      v.clear();
      for (const [k, val] of entries) v.set(visit(k), visit(val));
    } else if (v instanceof Set) {
      const items = [...v];
      v.clear();
      for (const item of items) v.add(visit(item));
    } else {
      const o = v as Record<string, unknown>;
      for (const key of Object.keys(o)) {
        const item = o[key];
        if (typeof item === 'object' && item !== null) o[key] = visit(item);
      }
    }
    return v;
  };
  return visit(graph);
}

/** A synchronous rebuild met a function or class whose module this process has not imported. */
function notLoaded(what: string, ref: { name: string; module: string }): UnpicklingError {
  return new UnpicklingError(
    `${what} ${ref.name || '(anonymous)'} from ${ref.module} is not loaded, and a blocking call ` +
      '(getSync, recvSync) cannot import it: import that module in this process first, or use the async call.',
  );
}

function rebuildRecord(
  r: Record_,
  done: Map<object, unknown>,
  visit: (v: unknown) => unknown,
  ctx: RebuildContext,
): unknown {
  switch (r[TAG]) {
    case 'obj': {
      const rebuildFn = rebuilders.get(r.kind);
      if (!rebuildFn) throw new UnpicklingError(`Don't know how to rebuild a ${r.kind} in this process.`);
      const live = rebuildFn(visit(r.state), ctx);
      done.set(r, live);
      return live;
    }
    case 'ref': {
      const fn = lookupLoaded(localRef(r.ref, ctx));
      if (fn === undefined) throw notLoaded('Task', r.ref);
      done.set(r, fn);
      return fn;
    }
    case 'src': {
      if (ctx.remote && !ctx.remote.allowSource) ctx.remote.refuseSource(r.fn.name);
      const fn = functionFromSource(r.fn);
      done.set(r, fn);
      return fn;
    }
    case 'inst': {
      const cls = lookupLoaded(localRef(r.ref, ctx)) as { prototype: object } | undefined;
      if (!cls) throw notLoaded('Class', r.ref);
      const instance = Object.create(cls.prototype) as Record<string, unknown>;
      done.set(r, instance);
      for (const [k, v] of Object.entries(r.fields)) instance[k] = visit(v);
      return instance;
    }
    case 'err': {
      const cls = errorClasses[r.name] ?? Error;
      const error = new cls(r.message) as Error & Record<string, unknown>;
      done.set(r, error);
      if (error.name !== r.name) Object.defineProperty(error, 'name', { value: r.name, configurable: true, writable: true });
      if (r.stack !== undefined) Object.defineProperty(error, 'stack', { value: r.stack, configurable: true, writable: true });
      for (const [k, v] of Object.entries(r.props)) {
        if (k === 'cause') Object.defineProperty(error, 'cause', { value: visit(v), configurable: true, writable: true });
        else error[k] = visit(v);
      }
      return error;
    }
  }
}

/**
 * Imports one at a time, every rebuild's in turn. A task's module may be CommonJS that require()s
 * the library: on Node 20 and 22, require() of an ES module that another import is still loading
 * fails ("getModuleJobForRequire", "module not been linked"), so a task module is imported only
 * when none of the library's own modules is on its way.
 */
let importing: Promise<unknown> = Promise.resolve();
function importInTurn(load: () => Promise<unknown>): Promise<unknown> {
  const done = importing.then(load);
  importing = done.catch(() => {});
  return done;
}

/** Rebuilds a graph, first importing the modules its tasks and classes come from. */
export async function rebuild(graph: unknown, ctx: RebuildContext): Promise<unknown> {
  const refs: TaskRef[] = [];
  const homes = new Set<string>();
  const objs: HandleRecord[] = [];
  pending(graph, refs, homes, objs, new Set(), ctx);
  if (homes.size > 0) {
    await importInTurn(() => Promise.all([...homes].map((home) => import(new URL(`./${home}${moduleExtension}`, import.meta.url).href))));
  }
  for (const ref of refs) await importInTurn(() => resolveRef(ref));
  const preparing: Promise<void>[] = [];
  for (const r of objs) {
    const prepare = preparers.get(r.kind);
    if (prepare) preparing.push(prepare(r.state));
  }
  if (preparing.length > 0) await Promise.all(preparing);
  return rebuildSync(graph, ctx);
}

// ---- bytes (process channels) ----------------------------------------------------------------

const PLAIN = 0;
const NEEDS_REBUILD = 1;
/** Small JSON-safe values (a task's `[x]`, a number result) skip v8's serialiser: JSON is several
 * times faster for them, and they round-trip exactly. */
const JSON_TEXT = 2;
/** A Uint8Array travels as its raw bytes. */
const BYTES = 3;
/** A long plain array of numbers (a map chunk) travels as float64s: exact, and several times faster
 * to encode and decode than v8's serialiser. */
const NUMBERS = 4;
const NUMBERS_MIN = 16;

function isNumberArray(v: unknown): v is number[] {
  if (!Array.isArray(v) || v.length < NUMBERS_MIN || Object.getPrototypeOf(v) !== Array.prototype) return false;
  for (let i = 0; i < v.length; i++) if (typeof v[i] !== 'number') return false;
  return true;
}

const JSON_MAX_ITEMS = 64;

function jsonSafe(v: unknown, depth: number): boolean {
  switch (typeof v) {
    case 'number':
      return Number.isFinite(v) && !Object.is(v, -0);
    case 'string':
    case 'boolean':
      return true;
    case 'object': {
      if (v === null) return true;
      if (depth > 2) return false;
      if (Array.isArray(v)) {
        if (v.length > JSON_MAX_ITEMS || Object.getPrototypeOf(v) !== Array.prototype) return false;
        for (let i = 0; i < v.length; i++) if (v[i] === undefined || !jsonSafe(v[i], depth + 1)) return false;
        return true;
      }
      if (Object.getPrototypeOf(v) !== Object.prototype) return false;
      let n = 0;
      for (const key in v) {
        if (++n > JSON_MAX_ITEMS || key === '__proto__' || !Object.prototype.hasOwnProperty.call(v, key)) return false;
        const item = (v as Record<string, unknown>)[key];
        if (item === undefined || !jsonSafe(item, depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

/** reduce + v8.serialize, with a one-byte header saying how to decode (and whether the receiver
 * must rebuild handles, tasks or classes). `headroom` bytes are left free in front (a frame's
 * length), so that the caller need not copy the result into a bigger buffer. */
export function dumps(value: unknown, ctx?: ReduceContext, options?: ReduceOptions, headroom = 0): Buffer {
  if (jsonSafe(value, 0)) {
    const text = JSON.stringify(value);
    const out = Buffer.allocUnsafe(headroom + 1 + Buffer.byteLength(text));
    out[headroom] = JSON_TEXT;
    out.write(text, headroom + 1);
    return out;
  }
  if (isNumberArray(value)) {
    // The float64s start 8-aligned after the tag, so that they can be read in place.
    const start = headroom + 8;
    const out = Buffer.allocUnsafe(start + value.length * 8);
    out[headroom] = NUMBERS;
    const f64 = new Float64Array(value.length);
    for (let i = 0; i < value.length; i++) f64[i] = value[i]!;
    out.set(new Uint8Array(f64.buffer), start);
    return out;
  }
  if (value instanceof Uint8Array && Object.getPrototypeOf(value) === Uint8Array.prototype) {
    const out = Buffer.allocUnsafe(headroom + 1 + value.length);
    out[headroom] = BYTES;
    out.set(value, headroom + 1);
    return out;
  }
  const { graph, changed } = reduce(value, ctx ?? newReduceContext('process'), options);
  // v8.serialize, with the headroom and the tag written first into the serializer's own buffer:
  // a large value is copied once, not serialised and then copied behind a header.
  const serializer = new v8.DefaultSerializer();
  let out: Buffer;
  try {
    serializer.writeRawBytes(Buffer.alloc(headroom + 1));
    serializer.writeHeader();
    serializer.writeValue(graph);
    out = serializer.releaseBuffer();
  } catch (error) {
    throw new PicklingError(`Can't send the value: ${(error as Error).message}`);
  }
  out[headroom] = changed ? NEEDS_REBUILD : PLAIN;
  return out;
}

/** Whether `loads` of these bytes copies all it returns out of them, so that they may be decoded
 * where they lie (in a ring that the writer reuses at once). JSON, bytes and numbers are copied;
 * v8's deserializer may return typed arrays that are views into its input. */
export function decodesByCopy(bytes: Uint8Array): boolean {
  const tag = bytes[0];
  return tag === JSON_TEXT || tag === BYTES || tag === NUMBERS;
}

/** Whether `loads` of these bytes may need to import modules (so `loadsSync` could fail). */
export function needsRebuild(bytes: Uint8Array): boolean {
  return bytes[0] === NEEDS_REBUILD;
}

const textDecoder = new TextDecoder();

function deserialize(bytes: Uint8Array): unknown {
  try {
    if (bytes[0] === JSON_TEXT) return JSON.parse(textDecoder.decode(bytes.subarray(1)));
    if (bytes[0] === BYTES) return new Uint8Array(bytes.subarray(1)); // a plain copy, even of a Buffer
    if (bytes[0] === NUMBERS) {
      let body = bytes.subarray(8);
      if (body.byteOffset % 8 !== 0) body = new Uint8Array(body); // a copy, aligned
      const f64 = new Float64Array(body.buffer, body.byteOffset, body.length >> 3);
      const out = new Array<number>(f64.length);
      for (let i = 0; i < f64.length; i++) out[i] = f64[i]!;
      return out;
    }
    return v8.deserialize(bytes.subarray(1));
  } catch (error) {
    throw new UnpicklingError(`Could not decode the message: ${(error as Error).message}`);
  }
}

const noFds: RebuildContext = { target: 'process', handles: [] };

export async function loads(bytes: Uint8Array, ctx: RebuildContext = noFds): Promise<unknown> {
  const graph = deserialize(bytes);
  return bytes[0] === NEEDS_REBUILD ? rebuild(graph, ctx) : graph;
}

/** `loads` for code that cannot wait: fails if a task's module is not imported yet. */
export function loadsSync(bytes: Uint8Array, ctx: RebuildContext = noFds): unknown {
  const graph = deserialize(bytes);
  return bytes[0] === NEEDS_REBUILD ? rebuildSync(graph, ctx) : graph;
}
