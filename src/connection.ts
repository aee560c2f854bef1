/**
 * Python's `multiprocessing.connection`: Connection, Pipe, Listener, Client, wait and the authkey
 * challenge/response, wire-compatible with CPython (framing and handshake in connectionFraming.ts).
 *
 * A Connection sits on a socket or a MessagePort, behind the small `Transport` interface of
 * connectionTransports.ts. Both feed one inbox; readiness (poll, wait), ordering of concurrent
 * receivers, abort signals and EOF are implemented once, on the inbox.
 */
import { registerClasses } from './context.js';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { constants as bufferConstants } from 'node:buffer';
import * as v8 from 'node:v8';
import { MessagePort } from 'node:worker_threads';
import { AuthenticationError, BufferTooShort, EOFError, OSError, PicklingError, TimeoutError, ValueError } from './errors.js';
import {
  CHALLENGE, FAILURE, HANDSHAKE_MAXLENGTH, WELCOME, createResponse, newChallenge, parseChallenge, verifyChallenge, type DigestName,
} from './connectionFraming.js';
import {
  loads, loadsSync, rebuild, rebuildSync, reduceSymbol, registerClassReducer, registerReducer, type ReduceContext,
  type Reduced,
} from './reduction.js';
import { prepareSocket, reduceSocket, socketFromState, type SocketState } from './resourceSharer.js';
import { attachBlock, type BlockState } from './heap.js';
import { sentinelExit } from './sentinels.js';
import { abortable, type Factory, getTempDir, MAX_DELAY_MS, randomHex, timerDelayMs } from './util.js';
import { deadlineAfter, secondsUntil } from './futex.js';
import {
  nativeSocketFd, osErrorFrom, PortTransport, socketFromFd, socketPair, SocketTransport,
  type ConnectionState, type Inbound, type Transport,
} from './connectionTransports.js';

export type { DigestName } from './connectionFraming.js';

/** `['127.0.0.1', port]` for AF_INET, a filesystem path (or `'\0name'`, Linux abstract) for AF_UNIX. */
export type Address = string | readonly [string, number];
export type Family = 'AF_INET' | 'AF_UNIX';
/** An authkey: bytes, or a string taken as its UTF-8 bytes. */
export type AuthKey = Uint8Array | string;
/** Anything `sendBytes` accepts: a typed array, DataView, Buffer or (Shared)ArrayBuffer. */
export type BytesLike = ArrayBufferView | ArrayBuffer | SharedArrayBuffer;

export interface SignalOptions {
  signal?: AbortSignal;
}

export interface ConnectionOptions {
  readable?: boolean;
  writable?: boolean;
  /** Frames announcing more bytes are refused before allocation (`OSError('bad message length')`). */
  maxMessageSize?: number;
}

/** Default frame limit for Listener/Client connections (peers on a network). */
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024;
/** Default frame limit for Pipe ends (both ends belong to this program): the largest Buffer. */
export const PIPE_MAX_MESSAGE_SIZE = bufferConstants.MAX_LENGTH;
/** Seconds a peer may stay silent during the authkey handshake. */
export const DEFAULT_HANDSHAKE_TIMEOUT = 20;

// ---- Connection ------------------------------------------------------------------------------

interface Consumer {
  take(m: Inbound): void;
  fail(error: Error): void;
}



/**
 * Until the next I/O poll of the event loop has run, so data already in the kernel has been read.
 * (The first setImmediate may run in the current iteration's check phase, before any new poll.)
 */
function ioTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}

function asBytes(buf: BytesLike, what: string): Uint8Array {
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf instanceof ArrayBuffer || buf instanceof SharedArrayBuffer) return new Uint8Array(buf);
  throw new TypeError(`${what}: a bytes-like object is required, not '${buf === null ? 'null' : typeof buf}'`);
}

function checkInteger(value: number, name: string): void {
  if (!Number.isInteger(value)) throw new TypeError(`${name} must be an integer`);
}

let setHandshakeFrames: (conn: Connection, frames: number) => void;
let getHandshakeFrames: (conn: Connection) => number;

export class Connection implements Disposable {
  readonly #transport: Transport;
  readonly #maxMessageSize: number;
  #readable: boolean;
  #writable: boolean;
  #closed = false;
  #inbox: Inbound[] = [];
  #inboxHead = 0;
  #end: { error?: Error } | null = null;
  readonly #consumers: Consumer[] = [];
  readonly #watchers = new Set<() => void>();
  readonly #endWatchers: Array<(error: Error) => void> = [];
  #handshakeFrames = 0;

  static {
    setHandshakeFrames = (conn, frames) => {
      conn.#handshakeFrames = frames;
      conn.#transport.setLimit(frames > 0 ? HANDSHAKE_MAXLENGTH : conn.#maxMessageSize);
    };
    getHandshakeFrames = (conn) => conn.#handshakeFrames;
  }

  /**
   * Python's `Connection(handle, readable=True, writable=True)`: `handle` is a connected
   * `net.Socket`, a socket file descriptor, or a `MessagePort`.
   */
  constructor(handle: net.Socket | number | MessagePort, options: ConnectionOptions = {}) {
    const readable = options.readable ?? true;
    const writable = options.writable ?? true;
    if (!readable && !writable) throw new ValueError('at least one of `readable` and `writable` must be True');
    this.#maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    if (!(this.#maxMessageSize >= 0)) throw new ValueError('maxMessageSize must be a non-negative number');
    this.#readable = readable;
    this.#writable = writable;
    let transport: Transport;
    const h: unknown = handle;
    if (h instanceof SocketTransport || h instanceof PortTransport) transport = h;
    else if (handle instanceof MessagePort) transport = new PortTransport(handle);
    else if (handle instanceof net.Socket) transport = new SocketTransport(handle, this.#maxMessageSize);
    else if (typeof handle === 'number') {
      if (!Number.isInteger(handle) || handle < 0) throw new ValueError('invalid handle');
      let socket: net.Socket;
      try {
        socket = socketFromFd(handle);
      } catch (error) {
        throw osErrorFrom(error);
      }
      transport = new SocketTransport(socket, this.#maxMessageSize);
    } else {
      throw new ValueError('invalid handle');
    }
    this.#transport = transport;
    transport.attach({ message: (m) => this.#deliver(m), partial: () => this.#notify(), end: (error) => this.#ended(error) });
  }

  /** @internal A Connection on an existing transport (pipes). */
  static _fromTransport(transport: SocketTransport | PortTransport, options: ConnectionOptions): Connection {
    return new Connection(transport as unknown as net.Socket, options);
  }

  get closed(): boolean {
    return this.#closed;
  }

  get readable(): boolean {
    return this.#readable;
  }

  get writable(): boolean {
    return this.#writable;
  }

  /** The frame limit of this connection (bytes). */
  get maxMessageSize(): number {
    return this.#maxMessageSize;
  }

  /** The socket's file descriptor (sockets only; a thread connection has none). */
  fileno(): number {
    this.#checkClosed();
    return this.#transport.fileno();
  }

  // -- inbox --

  #deliver(m: Inbound): void {
    if (this.#handshakeFrames > 0 && --this.#handshakeFrames === 0) this.#transport.setLimit(this.#maxMessageSize);
    const consumer = this.#consumers.shift();
    if (consumer) {
      this.#updateKeepAlive();
      consumer.take(m);
      return;
    }
    this.#inbox.push(m);
    this.#notify();
  }

  #ended(error?: Error): void {
    if (this.#end) return;
    this.#end = error ? { error } : {};
    for (const consumer of this.#consumers.splice(0)) consumer.fail(this.#endError());
    for (const onEnd of this.#endWatchers.splice(0)) onEnd(this.#endError());
    this.#updateKeepAlive();
    this.#notify();
  }

  #endError(): Error {
    return this.#end?.error ?? new EOFError();
  }

  #notify(): void {
    if (this.#watchers.size === 0) return;
    const watchers = [...this.#watchers];
    this.#watchers.clear();
    this.#updateKeepAlive();
    for (const w of watchers) w();
  }

  #updateKeepAlive(): void {
    if (this.#closed) return;
    this.#transport.setDemand(this.#consumers.length > 0 ? 'receive' : this.#watchers.size > 0 ? 'poll' : null);
  }

  #shift(): Inbound | undefined {
    if (this.#inboxHead >= this.#inbox.length) return undefined;
    const m = this.#inbox[this.#inboxHead]!;
    this.#inbox[this.#inboxHead++] = undefined as unknown as Inbound;
    if (this.#inboxHead > 1024 && this.#inboxHead * 2 > this.#inbox.length) {
      this.#inbox = this.#inbox.slice(this.#inboxHead);
      this.#inboxHead = 0;
    } else if (this.#inboxHead === this.#inbox.length) {
      this.#inbox.length = 0;
      this.#inboxHead = 0;
    }
    return m;
  }

  /** A message or EOF can be received without waiting. */
  #readyNow(): boolean {
    return this.#inboxHead < this.#inbox.length || this.#end !== null;
  }

  #checkClosed(): void {
    if (this.#closed) throw new OSError('handle is closed');
  }

  #checkReadable(): void {
    this.#checkClosed();
    if (!this.#readable) throw new OSError('connection is write-only');
  }

  #checkWritable(): void {
    this.#checkClosed();
    if (!this.#writable) throw new OSError('connection is read-only');
  }

  /** The next message, in call order among concurrent receivers. */
  #take(signal: AbortSignal | undefined): Promise<Inbound> {
    this.#checkReadable();
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#inboxHead >= this.#inbox.length) this.#transport.pull(true);
    const m = this.#shift();
    if (m) return Promise.resolve(m);
    if (this.#end) return Promise.reject(this.#endError());
    return abortable<Inbound>(signal, (resolve, reject) => {
      const consumer: Consumer = { take: resolve, fail: reject };
      this.#consumers.push(consumer);
      this.#updateKeepAlive();
      return () => {
        const i = this.#consumers.indexOf(consumer);
        if (i >= 0) this.#consumers.splice(i, 1);
        this.#updateKeepAlive();
      };
    });
  }

  /**
   * @internal Calls `onEnd` once when the peer hangs up, without keeping the event loop alive
   * (a connection whose messages travel elsewhere, such as a manager's shared-memory lane, still
   * learns of the peer's death from its socket). Messages that arrive meanwhile stay in the inbox.
   */
  _watchEnd(onEnd: (error: Error) => void): void {
    if (this.#end) {
      const error = this.#endError();
      queueMicrotask(() => onEnd(error));
      return;
    }
    this.#endWatchers.push(onEnd);
    this.#transport.watchEnd();
  }

  /** @internal Resolves when a message or EOF is available (or the connection is closed). */
  _whenReady(signal?: AbortSignal): Promise<void> {
    if (this.#closed || this.#readyNow()) return Promise.resolve();
    this.#transport.pull(false);
    if (this.#readyNow()) return Promise.resolve();
    return abortable<void>(signal, (resolve) => {
      const watcher = (): void => resolve();
      this.#watchers.add(watcher);
      this.#updateKeepAlive();
      return () => {
        this.#watchers.delete(watcher);
        this.#updateKeepAlive();
      };
    });
  }

  /** @internal Whether a message or EOF is available now (after the pending I/O of one loop turn). */
  async _pollNow(): Promise<boolean> {
    await this.#transport.ready;
    this.#transport.pull(false);
    if (this.#readyNow()) return true;
    if (!this.#closed && this.#transport.readsAhead) {
      // Read what the kernel already holds: demand for one loop turn.
      const controller = new AbortController();
      this._whenReady(controller.signal).catch(() => {});
      await ioTurn();
      controller.abort();
      this.#transport.pull(false);
    }
    return this.#closed || this.#readyNow() || this.#transport.bytesWaiting;
  }

  /** @internal Ready for `wait()`: a message, part of one, or EOF (Python's select counts any byte). */
  _readyNow(): boolean {
    return this.#closed || this.#readyNow() || this.#transport.bytesWaiting;
  }

  // -- public API --

  /** Serialises `obj` (src/reduction.ts) and sends it. Synchronous, as Python's. */
  send(obj: unknown): void {
    this.#checkWritable();
    this.#transport.sendValue(obj);
  }

  /** Sends `buf[offset : offset + size]` (bytes) as one message. */
  sendBytes(buf: BytesLike, offset = 0, size?: number): void {
    this.#checkWritable();
    const bytes = asBytes(buf, 'sendBytes');
    const n = bytes.byteLength;
    checkInteger(offset, 'offset');
    if (offset < 0) throw new ValueError('offset is negative');
    if (n < offset) throw new ValueError('buffer length < offset');
    if (size === undefined || size === null) size = n - offset;
    else {
      checkInteger(size, 'size');
      if (size < 0) throw new ValueError('size is negative');
      if (offset + size > n) throw new ValueError('buffer length < offset + size');
    }
    this.#transport.sendBytes(bytes.subarray(offset, offset + size), false);
  }

  /** Receives one object. `EOFError` when the peer closed; `UnpicklingError` for bytes that do not decode. */
  async recv(options: SignalOptions = {}): Promise<unknown> {
    const m = await this.#take(options.signal);
    if ('bytes' in m) return loads(m.bytes);
    return m.changed ? rebuild(m.graph, { target: 'thread', handles: [] }) : m.graph;
  }

  /** Receives one message as bytes; longer than `maxlength` -> `OSError('bad message length')`. */
  async recvBytes(maxlength?: number | null, options: SignalOptions = {}): Promise<Buffer> {
    if (maxlength !== undefined && maxlength !== null) {
      checkInteger(maxlength, 'maxlength');
      if (maxlength < 0) throw new ValueError('negative maxlength');
    }
    const bytes = this.#bytesOf(await this.#take(options.signal));
    if (maxlength !== undefined && maxlength !== null && bytes.length > maxlength) this.#badMessageLength();
    return bytes;
  }

  /**
   * Receives one message into `buf` at byte `offset`; returns its length. A buffer too small
   * raises `BufferTooShort` with the whole (consumed) message in `.data`.
   */
  async recvBytesInto(buf: BytesLike, offset = 0, options: SignalOptions = {}): Promise<number> {
    const target = asBytes(buf, 'recvBytesInto');
    checkInteger(offset, 'offset');
    if (offset < 0) throw new ValueError('negative offset');
    if (offset > target.byteLength) throw new ValueError('offset too large');
    const bytes = this.#bytesOf(await this.#take(options.signal));
    if (target.byteLength < offset + bytes.length) throw new BufferTooShort(bytes);
    target.set(bytes, offset);
    return bytes.length;
  }

  /**
   * Whether a message (or EOF) can be received. `timeout` in seconds: 0 (the default) returns at
   * once, a number waits up to that long, `null` waits forever.
   */
  async poll(timeout: number | null = 0, options: SignalOptions = {}): Promise<boolean> {
    this.#checkReadable();
    if (options.signal?.aborted) throw options.signal.reason;
    if (timeout !== null && !(timeout > 0)) {
      const ready = await this._pollNow();
      this.#checkReadable();
      return ready;
    }
    if (!this.#readyNow() && !this.#transport.bytesWaiting) {
      await waitAny([this], timeout, options.signal);
    }
    this.#checkReadable();
    return this.#readyNow() || this.#transport.bytesWaiting;
  }

  /**
   * `recv` that blocks this thread until a message (or EOF) arrives: for tight loops in workers.
   * Same errors as `recv`. Needs the native addon for a socket; a thread connection must come from
   * `Pipe()` (see docs/connections.md).
   */
  recvSync(options: SignalOptions = {}): unknown {
    this.#checkReadable();
    if (options.signal?.aborted) throw options.signal.reason;
    this.#receiveSync(null, false);
    const m = this.#shift();
    if (!m) throw this.#closed ? new OSError('handle is closed') : this.#endError();
    if ('bytes' in m) return loadsSync(m.bytes);
    return m.changed ? rebuildSync(m.graph, { target: 'thread', handles: [] }) : m.graph;
  }

  /**
   * `poll` that blocks this thread for up to `timeout` seconds (0, the default, looks once; `null`
   * forever): true as soon as a message, part of one, or EOF is there.
   */
  pollSync(timeout: number | null = 0, options: SignalOptions = {}): boolean {
    this.#checkReadable();
    if (options.signal?.aborted) throw options.signal.reason;
    this.#receiveSync(timeout === null || timeout > 0 ? timeout : 0, true);
    return this.#readyNow() || this.#transport.bytesWaiting;
  }

  /**
   * Blocks until a message or EOF is in the inbox (or, with `anyBytes`, part of a message has
   * arrived), or `timeout` seconds (`null`: forever) pass.
   */
  #receiveSync(timeout: number | null, anyBytes: boolean): void {
    const deadline = deadlineAfter(timeout);
    for (;;) {
      // receiveSync reads a shared end itself: pull only what is already here.
      this.#transport.pull(false);
      if (this.#readyNow() || (anyBytes && this.#transport.bytesWaiting)) return;
      const left = deadline === Infinity ? -1 : Math.min(Math.max(0, deadline - performance.now()), MAX_DELAY_MS);
      if (!this.#transport.receiveSync(left, !anyBytes)) {
        this.#transport.pull(false);
        return;
      }
    }
  }

  #bytesOf(m: Inbound): Buffer {
    if ('bytes' in m) return m.bytes;
    // A thread connection carried an object: give its serialised form, as Python's recv_bytes would.
    try {
      const body = v8.serialize(m.graph);
      const out = Buffer.allocUnsafe(body.length + 1);
      out[0] = m.changed ? 1 : 0;
      body.copy(out, 1);
      return out;
    } catch (error) {
      throw new PicklingError(`Can't give this message as bytes: ${(error as Error).message}`);
    }
  }

  #badMessageLength(): never {
    if (this.#writable) this.#readable = false;
    else this.close();
    throw new OSError('bad message length');
  }

  /** Closes the connection (idempotent). Pending receivers fail with `OSError('handle is closed')`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#endWatchers.length = 0;
    for (const consumer of this.#consumers.splice(0)) consumer.fail(new OSError('handle is closed'));
    this.#transport.close();
    const watchers = [...this.#watchers];
    this.#watchers.clear();
    for (const w of watchers) w();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  [reduceSymbol](ctx: ReduceContext): Reduced {
    this.#checkClosed();
    const reduced = this.#transport.reduce(ctx, {
      readable: this.#readable,
      writable: this.#writable,
      maxMessageSize: this.#maxMessageSize,
    });
    if (this.#transport.kind === 'port') {
      // The port moved to the other thread: this end is no longer usable here.
      this.#closed = true;
      for (const consumer of this.#consumers.splice(0)) consumer.fail(new OSError('handle is closed'));
    }
    return reduced;
  }

  get [Symbol.toStringTag](): string {
    return 'Connection';
  }
}

/** A port Connection, or a socket one (with the locks of an end that threads or processes share). */
type ConnectionRecord = ConnectionState & ({ port: MessagePort } | (SocketState & { locks?: Int32Array; sendLock?: BlockState }));

registerReducer('Connection', (state: ConnectionRecord, ctx) => {
  const options = { readable: state.readable, writable: state.writable, maxMessageSize: state.maxMessageSize };
  if ('port' in state) return Connection._fromTransport(new PortTransport(state.port), options);
  // The sender may still hold this socket (it often keeps its copy open): share it.
  const transport = new SocketTransport(socketFromState(state, ctx, true), state.maxMessageSize);
  transport.share();
  if (state.locks) transport.useLocks(state.locks);
  if (state.sendLock) transport.useProcessSendLock(attachBlock(state.sendLock));
  return Connection._fromTransport(transport, options);
}, async (state) => {
  if (!('port' in state)) await prepareSocket(state);
});

// A plain socket travels too (Python's reduction registers socket.socket): a Listener's peer
// handed to a worker, as the Connection of one.
registerClassReducer(net.Socket, (socket, ctx) => ({ kind: 'socket', state: reduceSocket(socket, nativeSocketFd(socket), ctx) }));
registerReducer('socket', (state: SocketState, ctx) => socketFromState(state, ctx, false), prepareSocket);

// ---- wait ------------------------------------------------------------------------------------

/** A Connection, a process sentinel (`p.sentinel`) or a socket. */
export type Waitable = Connection | number | net.Socket;

/**
 * A socket as Python's select sees it: ready when bytes are buffered or the peer has closed. The
 * watch puts the socket in paused mode with a 'readable' listener, so Node reads into the socket's
 * buffer, where `socket.read()` finds it: nothing is consumed. `stop()` removes the listeners.
 */
function watchSocket(socket: net.Socket): { ready(): boolean; whenReady(): Promise<void>; stop(): void } {
  // 'readable' with nothing buffered is the end of the stream ('end' waits for a read()).
  let atEnd = false;
  const wakers = new Set<() => void>();
  const wake = (): void => {
    for (const w of wakers) w();
    wakers.clear();
  };
  const onReadable = (): void => {
    if (socket.readableLength === 0) atEnd = true;
    wake();
  };
  const onEnd = (): void => {
    atEnd = true;
    wake();
  };
  socket.on('readable', onReadable);
  socket.on('end', onEnd);
  socket.on('close', onEnd);
  const ready = (): boolean => socket.readableLength > 0 || atEnd || socket.readableEnded || socket.destroyed;
  return {
    ready,
    whenReady: () => new Promise<void>((resolve) => (ready() ? resolve() : wakers.add(resolve))),
    stop: () => {
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      wake();
    },
  };
}

async function waitAny(
  objects: readonly (Connection | Promise<unknown>)[],
  timeout: number | null | undefined,
  signal?: AbortSignal,
): Promise<void> {
  const controller = new AbortController();
  const promises: Promise<unknown>[] = [];
  for (const o of objects) promises.push(o instanceof Connection ? o._whenReady(controller.signal) : o);
  let timer: NodeJS.Timeout | undefined;
  if (timeout !== null && timeout !== undefined) {
    promises.push(new Promise<void>((resolve) => (timer = setTimeout(resolve, timerDelayMs(timeout)))));
  }
  if (signal) {
    promises.push(abortable<void>(signal, () => () => {}));
  }
  try {
    await Promise.race(promises);
  } finally {
    clearTimeout(timer);
    controller.abort();
    for (const p of promises) p.catch(() => {});
  }
}

/**
 * Python's `multiprocessing.connection.wait`: the subset of `objects` that is ready (a Connection
 * with a message or EOF to receive, a sentinel whose process has exited, a socket with bytes or EOF
 * to read), in input order. `timeout` in seconds; `undefined`/`null` waits forever, 0 or less polls.
 */
export async function wait<T extends Waitable>(
  objects: readonly T[],
  timeout?: number | null,
  options: SignalOptions = {},
): Promise<T[]> {
  const exited = new Set<number>();
  const exits: Promise<unknown>[] = [];
  for (const o of objects) {
    if (o instanceof Connection || o instanceof net.Socket) continue;
    const exit = typeof o === 'number' ? sentinelExit(o) : undefined;
    if (!exit) throw new ValueError(`wait() takes Connections, process sentinels and sockets, not ${String(o)}`);
    exits.push(exit);
    void exit.then(() => exited.add(o));
  }
  const sockets = new Map<net.Socket, ReturnType<typeof watchSocket>>();
  for (const o of objects) if (o instanceof net.Socket && !sockets.has(o)) sockets.set(o, watchSocket(o));
  const waitables = (): (Connection | Promise<unknown>)[] => [
    ...objects.filter((o): o is T & Connection => o instanceof Connection),
    ...[...sockets.values()].map((watch) => watch.whenReady()),
    ...exits,
  ];
  const isReady = (o: T): boolean =>
    o instanceof Connection ? o._readyNow() : o instanceof net.Socket ? sockets.get(o)!.ready() : exited.has(o as number);
  try {
    if (options.signal?.aborted) throw options.signal.reason;
    // Data already in the kernel and exits already reported count as ready even for a poll.
    await Promise.all([ioTurn(), ...objects.filter((o): o is T & Connection => o instanceof Connection).map((c) => c._pollNow())]);
    let found = objects.filter(isReady);
    if (found.length > 0 || (timeout !== null && timeout !== undefined && !(timeout > 0))) return found;
    const deadline = deadlineAfter(timeout);
    for (;;) {
      await waitAny(waitables(), secondsUntil(deadline), options.signal);
      await Promise.resolve();
      found = objects.filter(isReady);
      if (found.length > 0 || performance.now() >= deadline) return found;
    }
  } finally {
    for (const watch of sockets.values()) watch.stop();
  }
}

// ---- pipes -----------------------------------------------------------------------------------

/** Python's `arbitrary_address(family)`. */
export function arbitraryAddress(family: Family = 'AF_UNIX'): Address {
  if (family === 'AF_INET') return ['127.0.0.1', 0];
  if (family === 'AF_UNIX') return path.join(getTempDir(), `listener-${randomHex(6)}`);
  throw new ValueError(`unrecognized family ${String(family)}`);
}

export interface ProcessPipeOptions {
  /** Frame limit (default: the largest Buffer; both ends belong to this program). */
  maxMessageSize?: number;
  /** Use the addon's socketpair() when it loads (default true); false forces the pure-Node pair. */
  useNative?: boolean;
}

/**
 * `Pipe(duplex)`: an AF_UNIX socket pair, for every start method. Simplex: `[readOnly, writeOnly]`.
 * An end passed to a child process or thread is duplicated, as Python's descriptor is: every holder
 * can use it (docs/connections.md, "A shared end").
 */
export function pipeForProcesses(duplex = true, options: ProcessPipeOptions = {}): [Connection, Connection] {
  const limit = options.maxMessageSize ?? PIPE_MAX_MESSAGE_SIZE;
  const [a, b] = socketPair(limit, options.useNative ?? true);
  return [
    Connection._fromTransport(a, { readable: true, writable: duplex, maxMessageSize: limit }),
    Connection._fromTransport(b, { readable: duplex, writable: true, maxMessageSize: limit }),
  ];
}

/**
 * Python's `Pipe(duplex=True)`: two connected Connections (a socket pair, which reaches processes
 * and threads alike); with or without `new` (docs/api.md rule 1: a function that returns an
 * object, so `new` gives that object).
 */
export const Pipe = function Pipe(duplex = true): [Connection, Connection] {
  return pipeForProcesses(duplex);
} as Factory<[duplex?: boolean], [Connection, Connection]>;

registerClasses({ Pipe });

// ---- the authkey handshake -------------------------------------------------------------------

function authkeyBytes(authkey: AuthKey, error: new (m: string) => Error, message: string): Buffer {
  if (typeof authkey === 'string') return Buffer.from(authkey, 'utf8');
  if (authkey instanceof Uint8Array) return Buffer.from(authkey.buffer, authkey.byteOffset, authkey.byteLength);
  throw new error(message);
}

export interface HandshakeOptions extends SignalOptions {
  /** Seconds the peer may stay silent (default 20); `null` waits forever. */
  timeout?: number | null;
}

/** Combines a caller's signal with a handshake deadline that aborts with `TimeoutError`. */
function deadlineSignal(signal: AbortSignal | undefined, timeout: number | null | undefined, what: string): {
  signal: AbortSignal;
  dispose(): void;
} {
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(signal!.reason);
  if (signal?.aborted) controller.abort(signal.reason);
  else signal?.addEventListener('abort', onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  if (timeout !== null && timeout !== undefined && !controller.signal.aborted) {
    timer = setTimeout(() => controller.abort(new TimeoutError(`${what} timed out after ${timeout} seconds`)), timerDelayMs(timeout));
  }
  return {
    signal: controller.signal,
    dispose: () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    },
  };
}

/**
 * Runs `fn` with the next `frames` incoming frames limited to 256 bytes at their header (so a huge
 * length is refused before allocation). Nested calls leave the outer count alone.
 */
async function withHandshakeLimit<T>(conn: Connection, frames: number, fn: () => Promise<T>): Promise<T> {
  if (getHandshakeFrames(conn) > 0) return fn();
  setHandshakeFrames(conn, frames);
  try {
    return await fn();
  } finally {
    setHandshakeFrames(conn, 0);
  }
}

/**
 * Python's `deliver_challenge(connection, authkey, digest_name='sha256')`: the server's half.
 * Sends a challenge, checks the reply, sends `#WELCOME#` or `#FAILURE#`.
 */
export async function deliverChallenge(
  conn: Connection,
  authkey: AuthKey,
  digestName: DigestName = 'sha256',
  options: HandshakeOptions = {},
): Promise<void> {
  const key = authkeyBytes(authkey, ValueError, `Authkey must be bytes, not ${typeof authkey}`);
  const message = newChallenge(digestName);
  const deadline = deadlineSignal(options.signal, options.timeout, 'deliverChallenge');
  try {
    await withHandshakeLimit(conn, 1, async () => {
      conn.sendBytes(Buffer.concat([CHALLENGE, message]));
      const response = await conn.recvBytes(HANDSHAKE_MAXLENGTH, { signal: deadline.signal });
      try {
        verifyChallenge(key, message, response);
      } catch (error) {
        conn.sendBytes(FAILURE);
        throw error;
      }
      conn.sendBytes(WELCOME);
    });
  } finally {
    deadline.dispose();
  }
}

/** Python's `answer_challenge(connection, authkey)`: the client's half. */
export async function answerChallenge(conn: Connection, authkey: AuthKey, options: HandshakeOptions = {}): Promise<void> {
  const key = authkeyBytes(authkey, ValueError, `Authkey must be bytes, not ${typeof authkey}`);
  const deadline = deadlineSignal(options.signal, options.timeout, 'answerChallenge');
  try {
    await withHandshakeLimit(conn, 2, async () => {
      const message = parseChallenge(await conn.recvBytes(HANDSHAKE_MAXLENGTH, { signal: deadline.signal }));
      conn.sendBytes(createResponse(key, message));
      const response = await conn.recvBytes(HANDSHAKE_MAXLENGTH, { signal: deadline.signal });
      if (!response.equals(WELCOME)) throw new AuthenticationError('digest sent was rejected');
    });
  } finally {
    deadline.dispose();
  }
}

async function serverHandshake(conn: Connection, key: Buffer, timeout: number | null | undefined, signal?: AbortSignal): Promise<void> {
  const deadline = deadlineSignal(signal, timeout, 'the authentication handshake');
  try {
    await withHandshakeLimit(conn, 3, async () => {
      await deliverChallenge(conn, key, 'sha256', { signal: deadline.signal });
      await answerChallenge(conn, key, { signal: deadline.signal });
    });
  } finally {
    deadline.dispose();
  }
}

async function clientHandshake(conn: Connection, key: Buffer, signal: AbortSignal): Promise<void> {
  await withHandshakeLimit(conn, 3, async () => {
    await answerChallenge(conn, key, { signal });
    await deliverChallenge(conn, key, 'sha256', { signal });
  });
}

// ---- Listener and Client ---------------------------------------------------------------------

/** Python's `address_type(address)`. */
export function addressType(address: Address): Family {
  if (Array.isArray(address)) return 'AF_INET';
  if (typeof address === 'string') {
    if (address.startsWith('\\\\')) throw new ValueError('Family AF_PIPE is not recognized.');
    return 'AF_UNIX';
  }
  throw new ValueError(`address type of ${JSON.stringify(address)} unrecognized`);
}

function validateFamily(family: string): Family {
  if (family === 'AF_INET' || family === 'AF_UNIX') return family;
  throw new ValueError(`Family ${family} is not recognized.`);
}

function inetAddress(address: Address): [string, number] {
  if (!Array.isArray(address) || address.length !== 2 || typeof address[0] !== 'string' || !Number.isInteger(address[1])) {
    throw new ValueError(`an AF_INET address must be [host, port], not ${JSON.stringify(address)}`);
  }
  return [address[0] as string, address[1] as number];
}

export interface ListenerOptions {
  family?: Family;
  backlog?: number;
  authkey?: AuthKey | null;
  /** Seconds a connecting peer may stay silent in the handshake (default 20); `null` = forever. */
  handshakeTimeout?: number | null;
  /** Frame limit for accepted connections (default 64 MiB). */
  maxMessageSize?: number;
}

/** Connections waiting for accept() beyond this are refused (Python leaves them in the backlog). */
const MAX_UNACCEPTED = 128;

type ListenInternals = { _listen2?: (address: string, port: number, addressType: number, backlog: number) => void };

/** Python's `multiprocessing.connection.Listener`. */
export class Listener implements Disposable {
  readonly #server: net.Server;
  readonly #family: Family;
  #address: Address;
  readonly #authkey: Buffer | null;
  readonly #handshakeTimeout: number | null;
  readonly #maxMessageSize: number;
  readonly #pending: net.Socket[] = [];
  readonly #acceptors: { resolve(s: net.Socket): void; reject(e: unknown): void }[] = [];
  readonly #listening: Promise<void>;
  #lastAccepted: Address | null = null;
  #bound = true;
  #closed = false;
  #error: OSError | null = null;
  readonly #unlink: string | null;

  constructor(address?: Address | null, options: ListenerOptions = {}) {
    const family = options.family !== undefined ? validateFamily(options.family) : address != null ? addressType(address) : 'AF_UNIX';
    if (address != null && addressType(address) !== family) {
      throw new ValueError(`address ${JSON.stringify(address)} does not belong to family ${family}`);
    }
    this.#family = family;
    const authkey = options.authkey;
    this.#authkey = authkey === undefined || authkey === null ? null : authkeyBytes(authkey, TypeError, 'authkey should be a byte string');
    this.#handshakeTimeout = options.handshakeTimeout === undefined ? DEFAULT_HANDSHAKE_TIMEOUT : options.handshakeTimeout;
    this.#maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    const backlog = options.backlog ?? 1;
    const addr = address ?? arbitraryAddress(family);
    const server = net.createServer({ pauseOnConnect: true });
    this.#server = server;
    let bindError: unknown;
    server.on('error', (error) => {
      bindError ??= error;
      this.#fail(osErrorFrom(error));
    });
    server.on('connection', (socket) => this.#onConnection(socket));
    let listening: Promise<void> = Promise.resolve();
    if (family === 'AF_UNIX') {
      const p = addr as string;
      if (!p.startsWith('\0') && fs.existsSync(p)) throw new OSError('[Errno 98] Address already in use', 'EADDRINUSE');
      server.listen({ path: p, backlog });
      if (!server.address()) throw new OSError(`[Errno 98] could not listen on ${p}`, 'EADDRINUSE');
      this.#address = p;
      this.#unlink = p.startsWith('\0') ? null : p;
    } else {
      let [host, port] = inetAddress(addr);
      if (host === 'localhost' || host === '') host = host === '' ? '0.0.0.0' : '127.0.0.1';
      const ipVersion = net.isIP(host);
      const listen2 = (server as unknown as ListenInternals)._listen2;
      this.#unlink = null;
      if (ipVersion !== 0 && typeof listen2 === 'function') {
        // Bind synchronously (as Python's constructor does), so `address` is known at once.
        listen2.call(server, host, port, ipVersion, backlog);
        const bound = server.address();
        if (!bound || typeof bound === 'string') {
          throw new OSError(`[Errno 98] could not bind ${host}:${port} (address already in use or not available)`, 'EADDRINUSE');
        }
        this.#address = [bound.address, bound.port];
      } else {
        this.#address = [host, port];
        this.#bound = false;
        listening = new Promise<void>((resolve, reject) => {
          server.listen({ host, port, backlog }, () => {
            this.#bound = true;
            const bound = server.address();
            if (bound && typeof bound !== 'string') this.#address = [bound.address, bound.port];
            resolve();
          });
          server.once('error', reject);
        });
        listening.catch(() => {});
      }
    }
    void bindError;
    this.#listening = listening;
    server.unref();
  }

  /** The address the listener is bound to (the real port when 0 was asked for). */
  get address(): Address {
    return this.#address;
  }

  get family(): Family {
    return this.#family;
  }

  /** Python's `last_accepted`: the peer address of the last accepted connection. */
  get lastAcceptedAddress(): Address | null {
    return this.#lastAccepted;
  }

  /** Resolves once the listener is bound (at once, except for AF_INET host names). */
  get listening(): Promise<void> {
    return this.#listening;
  }

  #onConnection(socket: net.Socket): void {
    socket.on('error', () => {});
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const acceptor = this.#acceptors.shift();
    if (acceptor) {
      this.#updateRef();
      acceptor.resolve(socket);
    } else if (this.#pending.length >= MAX_UNACCEPTED) {
      socket.destroy();
    } else {
      // Waiting for accept() (the kernel backlog's job in Python) must not keep the program alive.
      socket.unref();
      this.#pending.push(socket);
      socket.once('close', () => {
        const i = this.#pending.indexOf(socket);
        if (i >= 0) this.#pending.splice(i, 1);
      });
    }
  }

  #fail(error: OSError): void {
    this.#error = error;
    for (const a of this.#acceptors.splice(0)) a.reject(error);
  }

  #updateRef(): void {
    if (this.#closed) return;
    if (this.#acceptors.length > 0) this.#server.ref();
    else this.#server.unref();
  }

  #nextSocket(signal?: AbortSignal): Promise<net.Socket> {
    if (this.#closed) return Promise.reject(new OSError('listener is closed'));
    const socket = this.#pending.shift();
    if (socket) return Promise.resolve(socket);
    if (this.#error) return Promise.reject(this.#error);
    return abortable<net.Socket>(signal, (resolve, reject) => {
      const acceptor = { resolve, reject };
      this.#acceptors.push(acceptor);
      this.#updateRef();
      return () => {
        const i = this.#acceptors.indexOf(acceptor);
        if (i >= 0) this.#acceptors.splice(i, 1);
        this.#updateRef();
      };
    });
  }

  /**
   * Accepts a connection and, with an authkey, runs the handshake (deliver, then answer). A peer
   * that fails it rejects this accept (`AuthenticationError`, `OSError`, `EOFError`,
   * `TimeoutError`) and leaves the listener working for the next one.
   */
  async accept(options: SignalOptions = {}): Promise<Connection> {
    if (this.#closed) throw new OSError('listener is closed');
    if (!this.#bound) await this.#listening;
    const socket = await this.#nextSocket(options.signal);
    this.#lastAccepted = this.#family === 'AF_INET'
      ? [socket.remoteAddress ?? '', socket.remotePort ?? 0]
      : '';
    const conn = new Connection(socket, { maxMessageSize: this.#maxMessageSize });
    if (this.#authkey !== null) {
      try {
        await serverHandshake(conn, this.#authkey, this.#handshakeTimeout, options.signal);
      } catch (error) {
        conn.close();
        throw error;
      }
    }
    return conn;
  }

  /** Stops listening (idempotent); an AF_UNIX socket file is removed. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const a of this.#acceptors.splice(0)) a.reject(new OSError('listener is closed'));
    for (const s of this.#pending.splice(0)) s.destroy();
    this.#server.close();
    if (this.#unlink) {
      try {
        fs.unlinkSync(this.#unlink);
      } catch {
        // already gone
      }
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export interface ClientOptions extends SignalOptions {
  family?: Family;
  authkey?: AuthKey | null;
  /** Seconds for connecting and the handshake together; default: no limit beyond `handshakeTimeout`. */
  timeout?: number | null;
  /** Seconds the server may stay silent in the handshake (default 20); `null` = forever. */
  handshakeTimeout?: number | null;
  maxMessageSize?: number;
}

/**
 * Python's `multiprocessing.connection.Client(address, family=None, authkey=None)`: connects
 * and, with an authkey, runs the handshake (answer, then deliver).
 */
export async function Client(address: Address, options: ClientOptions = {}): Promise<Connection> {
  const family = options.family !== undefined ? validateFamily(options.family) : addressType(address);
  const authkey = options.authkey;
  const key = authkey === undefined || authkey === null ? null : authkeyBytes(authkey, TypeError, 'authkey should be a byte string');
  const overall = deadlineSignal(options.signal, options.timeout, 'Client');
  try {
    const socket = await abortable<net.Socket>(overall.signal, (resolve, reject) => {
      let s: net.Socket;
      if (family === 'AF_INET') {
        const [host, port] = inetAddress(address);
        s = net.connect({ host, port });
      } else {
        s = net.connect({ path: address as string });
      }
      const onError = (error: Error): void => reject(osErrorFrom(error));
      s.once('error', onError);
      s.once('connect', () => {
        s.off('error', onError);
        s.on('error', () => {});
        resolve(s);
      });
      return () => s.destroy();
    });
    const conn = new Connection(socket, { maxMessageSize: options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE });
    if (key !== null) {
      const handshakeTimeout = options.handshakeTimeout === undefined ? DEFAULT_HANDSHAKE_TIMEOUT : options.handshakeTimeout;
      const deadline = deadlineSignal(overall.signal, handshakeTimeout, 'the authentication handshake');
      try {
        await clientHandshake(conn, key, deadline.signal);
      } catch (error) {
        conn.close();
        throw error;
      } finally {
        deadline.dispose();
      }
    }
    return conn;
  } finally {
    overall.dispose();
  }
}
