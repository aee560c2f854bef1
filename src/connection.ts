/**
 * Python's `multiprocessing.connection`: Connection, Pipe, Listener, Client, wait and the authkey
 * challenge/response, wire-compatible with CPython (framing and handshake in connectionFraming.ts).
 *
 * A Connection sits on one of two transports behind the small `Transport` interface:
 * - a socket (`net.Socket`: AF_UNIX socket pairs for process pipes, AF_UNIX/AF_INET for
 *   Listener/Client), framed exactly as CPython frames it;
 * - a `MessagePort` (pipes for the `thread` start method), posting bytes or reduced graphs.
 * Both feed one inbox; readiness (poll, wait), ordering of concurrent receivers, abort signals and
 * EOF are implemented once, on the inbox.
 */
import { memoryKindFor, registerClasses } from './context.js';
import type { MemoryKind } from './heap.js';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { constants as bufferConstants } from 'node:buffer';
import * as v8 from 'node:v8';
import { isMainThread, MessageChannel, MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import {
  AuthenticationError, BufferTooShort, EOFError, NotAvailableError, OSError, PicklingError, TimeoutError,
  ValueError,
} from './errors.js';
import {
  CHALLENGE, FAILURE, FrameDecoder, HANDSHAKE_MAXLENGTH, WELCOME, createResponse, frame,
  newChallenge, parseChallenge, verifyChallenge, type DigestName,
} from './connectionFraming.js';
import {
  dumps, loads, loadsSync, newReduceContext, rebuild, rebuildSync, reduce, reduceSymbol, registerReducer,
  type ReduceContext, type Reduced,
} from './reduction.js';
import { sentinelExit } from './sentinels.js';
import { loadNative, tryLoadNative, type NativeBinding } from './native.js';
import { SocketWriter } from './socketWriter.js';
import { blockThread } from './blocking.js';
import { abortable, MAX_DELAY_MS, timerDelayMs, type Factory } from './util.js';
import { deadlineAfter, secondsUntil } from './futex.js';

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

// ---- transports ------------------------------------------------------------------------------

type Inbound = { bytes: Buffer } | { graph: unknown; changed: boolean };

interface Sink {
  message(m: Inbound): void;
  /** Part of a message has arrived (readiness counts it, as Python's poll counts any byte). */
  partial(): void;
  end(error?: Error): void;
}

interface Transport {
  readonly kind: 'socket' | 'port';
  attach(sink: Sink): void;
  /** Resolves once the transport can carry data (a fallback pipe end waits for its accept). */
  readonly ready: Promise<void>;
  sendBytes(payload: Uint8Array, owned: boolean): void;
  sendValue(value: unknown): void;
  /** Moves whatever is already receivable into the sink, synchronously where possible. */
  pull(): void;
  /** A receiver found nothing to take: catch a message that is about to arrive without a trip
   * through the event loop, where that pays; true if a message (or the end) arrived. */
  receiveBriefly(): boolean;
  setLimit(limit: number): void;
  /**
   * Someone waits for data: read from the OS and keep the event loop alive. Without demand a
   * socket is not read at all, so an end that was handed to a child process (which holds the same
   * socket) never steals the child's data, and an unread inbox does not grow without bound.
   */
  keepAlive(on: boolean): void;
  /** Read (without keeping the event loop alive) so that the peer's hang-up is noticed. */
  watchEnd(): void;
  /**
   * Blocks this thread until something arrives or `timeoutMs` (< 0: forever) passes, and moves it
   * into the sink; false when nothing arrived in time. Throws `NotAvailableError` where the
   * transport has no way to block (recvSync/pollSync).
   */
  receiveSync(timeoutMs: number): boolean;
  /** Some bytes of a message have arrived but not all of it. */
  readonly midMessage: boolean;
  close(): void;
  fileno(): number;
  reduce(ctx: ReduceContext, state: ConnectionState): Reduced;
}

interface ConnectionState {
  readable: boolean;
  writable: boolean;
  maxMessageSize: number;
}

function osErrorFrom(error: unknown): OSError {
  if (error instanceof OSError) return error;
  const e = error as NodeJS.ErrnoException;
  const errno = typeof e.errno === 'number' ? Math.abs(e.errno) : undefined;
  const text = e.code === 'EPIPE' ? 'Broken pipe'
    : e.code === 'ECONNRESET' ? 'Connection reset by peer'
    : e.code === 'ECONNREFUSED' ? 'Connection refused'
    : e.code === 'ENOENT' ? 'No such file or directory'
    : e.message;
  const message = errno !== undefined ? `[Errno ${errno}] ${text}` : text;
  return Object.assign(new OSError(message, e.code), { cause: error });
}

/** `dumps` for a message to another process over a byte stream (`headroom` bytes left in front). */
export function dumpsForProcess(value: unknown, headroom = 0): Buffer {
  const ctx = newReduceContext('process');
  const bytes = dumps(value, ctx, undefined, headroom);
  if (ctx.handles.length > 0) {
    throw new PicklingError(
      "Can't send a Connection over a Connection: a socket can reach another process only as a " +
        'Process argument (or pool initarg), where it is inherited.',
    );
  }
  return bytes;
}

type SocketInternals = { _handle?: { fd?: number } | null };

/** How long an `await recv()` reads the socket directly before it waits on the event loop (ms),
 * while its peer answers fast (see SocketTransport.receiveBriefly). */
const RECV_SPIN_MS = 0.05;
/** A message that came within this long of the receiver starting to wait (ms) makes the next
 * receive spin first: a request/response loop, where the answer beats an event-loop wake-up. */
const FAST_ANSWER_MS = 0.1;
/** The longest a receiver keeps reading a message that streams in before it yields to the event loop (ms). */
const RECV_READ_MAX_MS = 5;

/** Direct reads (recvSync, receiveBriefly) go through a scratch buffer of this size, except the
 * rest of a larger payload, which is read into the payload itself... */
const SYNC_READ_MIN = 64 * 1024;
/** ...at most this much per system call. */
const SYNC_READ_MAX = 16 * 1024 * 1024;
let syncReadScratch: Buffer | undefined;

class SocketTransport implements Transport {
  readonly kind = 'socket' as const;
  readonly ready: Promise<void>;
  private socket: net.Socket | null = null;
  private sink: Sink | null = null;
  private readonly decoder: FrameDecoder;
  private readonly queued: Uint8Array[] = [];
  private markReady!: () => void;
  private pendingWrites = 0;
  private demand = false;
  private flowing = false;
  /** Writes through the addon (src/socketWriter.ts); null: through Node's stream. */
  private writer: SocketWriter | null = null;
  /** Set by the first blocking recvSync/pollSync: sends are written in full before they return. */
  private blockingSends = false;
  private writeError: OSError | null = null;
  private ended = false;
  private closed = false;
  /** Messages decoded so far (receiveBriefly stops at the next one). */
  private delivered = 0;
  /** performance.now() when a receiver found nothing to take (0: nobody is waiting). */
  private waitingSince = 0;
  /** The last message a receiver waited for came within FAST_ANSWER_MS (at first: it may be
   * there already). */
  private peerAnswersFast = true;

  constructor(socket: net.Socket | null, limit: number) {
    this.decoder = new FrameDecoder(limit);
    this.ready = new Promise((resolve) => (this.markReady = resolve));
    if (socket) this.attachSocket(socket);
  }

  get midMessage(): boolean {
    return this.decoder.midMessage;
  }

  attach(sink: Sink): void {
    this.sink = sink;
  }

  /** Gives the transport its socket (at once, or later for the accepted end of a fallback pipe). */
  attachSocket(socket: net.Socket): void {
    if (this.closed) {
      // Closed before its socket arrived: still deliver what was sent, as Python's close() would.
      socket.on('error', () => {});
      for (const chunk of this.queued.splice(0)) socket.write(chunk);
      socket.end(() => socket.destroy());
      this.markReady();
      return;
    }
    this.socket = socket;
    // No reading until someone asks (see keepAlive); pause before 'data' would start the flow.
    socket.pause();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', (error) => this.onError(error));
    socket.on('close', () => {
      this.writer?.drop();
      this.onEnd();
    });
    for (const chunk of this.queued.splice(0)) this.write(chunk);
    this.writer = this.newWriter(socket);
    this.updateFlow();
    this.markReady();
  }

  /** A writer through the addon, for a plain socket (not a pipe or FIFO) with nothing queued in Node. */
  private newWriter(socket: net.Socket): SocketWriter | null {
    const native = tryLoadNative();
    const fd = (socket as unknown as SocketInternals)._handle?.fd;
    if (!native || typeof fd !== 'number' || fd < 0 || (socket as { encrypted?: boolean }).encrypted) return null;
    if (socket.writableLength > 0 || socket.connecting) return null;
    try {
      if (!fs.fstatSync(fd).isSocket()) return null;
    } catch {
      return null;
    }
    return new SocketWriter(native, fd, () => !socket.destroyed, (error) => (this.writeError ??= error), (chunks) => {
      for (const chunk of chunks) this.write(chunk);
    });
  }

  /** The fallback pipe could not be set up. */
  fail(error: unknown): void {
    this.writeError ??= osErrorFrom(error);
    this.finish(this.writeError);
    this.markReady();
  }

  private onData(chunk: Buffer): void {
    this.decode((onMessage) => this.decoder.push(chunk, onMessage));
  }

  /** Runs a step of the decoder (`push` a chunk, or `filled` after a read into the payload). */
  private decode(step: (onMessage: (payload: Buffer) => void) => void): void {
    if (this.ended) return;
    try {
      step(this.onMessage);
      if (this.decoder.midMessage) this.sink?.partial();
    } catch (error) {
      this.finish(error as Error);
      this.socket?.destroy();
    }
  }

  private readonly onMessage = (payload: Buffer): void => {
    this.delivered++;
    if (this.waitingSince > 0) {
      this.peerAnswersFast = performance.now() - this.waitingSince < FAST_ANSWER_MS;
      this.waitingSince = 0;
    }
    this.sink?.message({ bytes: payload });
  };

  private onEnd(): void {
    this.finish(this.decoder.midMessage ? new OSError('got end of file during message') : undefined);
  }

  private onError(error: unknown): void {
    const e = osErrorFrom(error);
    this.writeError ??= e;
    // A reset or broken pipe at a message boundary is the peer going away: EOF for the reader.
    const benign = (e.code === 'ECONNRESET' || e.code === 'EPIPE') && !this.decoder.midMessage;
    this.finish(benign ? undefined : e);
  }

  private finish(error?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.sink?.end(error);
  }

  private write(chunk: Uint8Array): void {
    const socket = this.socket;
    if (!socket) {
      this.queued.push(chunk);
      return;
    }
    this.pendingWrites++;
    socket.write(chunk, () => {
      this.pendingWrites--;
      if (this.pendingWrites === 0) this.updateFlow();
    });
  }

  sendBytes(payload: Uint8Array, owned: boolean): void {
    if (this.writeError) throw this.writeError;
    const socket = this.socket;
    if (socket && (socket.destroyed || !socket.writable)) throw new OSError('[Errno 32] Broken pipe', 'EPIPE');
    const chunks = frame(payload);
    if (this.writer && !this.writer.degraded) {
      try {
        // Read with blocking calls, this thread may block right after this send (in a
        // Queue.getSync, say), when nothing would write a tail: write it all now, as Python does.
        if (this.blockingSends) this.writer.writeAll(chunks);
        else this.writer.write(chunks, (chunk) => owned || chunk !== payload);
      } catch (error) {
        this.writeError ??= osErrorFrom(error);
        throw this.writeError;
      }
      return;
    }
    // A large payload is written from the caller's memory; copy it unless it is ours, so changing
    // the buffer after send() returns cannot change what goes out (Python copies into the kernel).
    if (chunks.length === 2 && !owned) chunks[1] = Buffer.from(payload);
    if (socket) socket.cork();
    for (const chunk of chunks) this.write(chunk);
    if (socket) {
      socket.uncork();
      this.updateFlow();
    }
  }

  sendValue(value: unknown): void {
    this.sendBytes(dumpsForProcess(value), true);
  }

  pull(): void {}

  receiveSync(timeoutMs: number): boolean {
    if (this.ended) return true;
    const native = loadNative(); // NotAvailableError (with how to build it) without the addon
    const socket = this.socket;
    if (!socket) throw new NotAvailableError('This Pipe end is not connected yet; await its poll() once before recvSync().');
    if ((socket as { encrypted?: boolean }).encrypted) {
      throw new NotAvailableError('recvSync()/pollSync() read the socket itself, which would bypass TLS: use await recv()/poll().');
    }
    // A look (timeout 0) does not block, so it leaves the sends as they are.
    if (timeoutMs !== 0) this.blockingSends = true;
    return this.readDirect(native, socket, timeoutMs);
  }

  /**
   * Before an `await recv()` waits on the event loop: while the peer answers fast (the last
   * message came within FAST_ANSWER_MS), reads the socket directly for up to RECV_SPIN_MS at a
   * time, until a whole message has arrived; true if one did (or the stream ended). A waiting
   * receiver's wake-up through the event loop costs tens of microseconds on each side of a round
   * trip; a peer in a request/response loop answers sooner than that. Bounded and adaptive, as
   * the pool's and the manager lane's spins are: a peer that answers slowly turns it off.
   */
  receiveBriefly(): boolean {
    this.waitingSince = performance.now();
    const socket = this.socket;
    // A writer through the addon means a plain socket whose descriptor the addon can read.
    if (!this.peerAnswersFast || this.ended || !socket || !this.writer || this.writer.degraded) return false;
    const native = loadNative();
    const before = this.delivered;
    // A large message keeps this going while it streams in, but not for long: the event loop
    // reads the rest as well.
    const until = this.waitingSince + RECV_READ_MAX_MS;
    while (this.delivered === before && !this.ended && this.readDirect(native, socket, RECV_SPIN_MS) && performance.now() < until);
    return this.delivered !== before || this.ended;
  }

  /** Reads from the socket itself, waiting up to `timeoutMs` (< 0: forever); false when nothing
   * arrived in time. Only while this thread does not run its event loop (a blocking call, or a
   * spin that returns before it does), so it cannot race libuv's reads. */
  private readDirect(native: NativeBinding, socket: net.Socket, timeoutMs: number): boolean {
    // Bytes Node has already taken from the kernel come first: read() hands them to onData.
    if (socket.readableLength > 0) {
      socket.read();
      return true;
    }
    // The event loop is not running meanwhile, so reading the socket directly cannot race
    // libuv's reads; what is read goes through the same decoder.
    // Small reads land in one scratch buffer and are copied out (the decoder hands out views of
    // its chunks); the rest of a large message is read straight into its payload.
    const space = this.decoder.bodySpace();
    const into = space !== null && space.length > SYNC_READ_MIN ? space.subarray(0, SYNC_READ_MAX) : (syncReadScratch ??= Buffer.allocUnsafe(SYNC_READ_MIN));
    let n: number;
    try {
      // Also wakes when a socket of this thread with sends still to write can take more: nothing
      // else writes them while this thread is blocked.
      n = blockThread(timeoutMs, (slice) => native.readSocket(this.fileno(), into, slice, SocketWriter.pendingFds()), (r) => r === -1);
    } catch (error) {
      this.onError(error);
      return true;
    }
    if (n === -2) {
      SocketWriter.flushAll();
      return true;
    }
    if (n < 0) return false;
    if (n === 0) this.onEnd();
    else if (into !== syncReadScratch) this.decode((onMessage) => this.decoder.filled(n, onMessage));
    else this.onData(Buffer.from(into.subarray(0, n)));
    return true;
  }

  setLimit(limit: number): void {
    this.decoder.limit = limit;
  }

  keepAlive(on: boolean): void {
    this.demand = on;
    this.updateFlow();
  }

  watchEnd(): void {
    this.flowing = true;
    this.updateFlow();
  }

  private updateFlow(): void {
    const socket = this.socket;
    if (!socket || socket.destroyed || this.closed) return;
    // Reading starts when somebody first waits for a message (a Pipe end handed to a child and
    // never read here does not steal the child's messages). From then on the socket keeps reading
    // into the connection's buffer: pausing and resuming around every recv() cost two epoll
    // changes per message, which dominated a request/response round trip.
    if (this.demand && !this.ended) this.flowing = true;
    if (this.flowing) socket.resume();
    else socket.pause();
    if (this.demand || this.pendingWrites > 0) socket.ref();
    else socket.unref();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ended = true;
    const socket = this.socket;
    if (!socket) return;
    socket.removeAllListeners('data');
    socket.on('error', () => {});
    const writer = this.writer;
    if (writer?.pending) {
      // Python's close() leaves written data in the kernel for the peer: write the rest, then close.
      writer.whenDrained(() => socket.destroy());
    } else if (socket.writableLength > 0) {
      // Python's close() leaves written data in the kernel for the peer: flush, then close.
      socket.end(() => socket.destroy());
    } else {
      socket.destroy();
    }
  }

  fileno(): number {
    const fd = (this.socket as unknown as SocketInternals | null)?._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) throw new OSError('this connection has no file descriptor yet');
    return fd;
  }

  reduce(ctx: ReduceContext, state: ConnectionState): Reduced {
    if (ctx.target !== 'process') {
      throw new ValueError(
        'A Connection over a socket (a process Pipe, Listener or Client) cannot be passed to a thread; ' +
          "use a Pipe of the 'thread' context (pipeForThreads) for threads.",
      );
    }
    if (!this.socket) {
      throw new ValueError('This Pipe end is not connected yet; await its poll() once before passing it to a process.');
    }
    const handle = ctx.handles.push(this.socket) - 1;
    return { kind: 'Connection', state: { handle, ...state } };
  }
}

/** What travels on a MessagePort. */
type PortMessage = { b: Uint8Array } | { g: unknown; c: boolean } | { eof: true };

/**
 * How a thread blocked in recvSync learns that its port has a message: a MessagePort cannot be
 * waited on, so both ends of a thread Pipe share a SharedArrayBuffer with, per direction, a
 * sequence number the sender bumps after each post and a count of threads blocked on it.
 */
interface PortWake {
  readonly words: Int32Array;
  /** Index of the sequence word for messages to this end (its waiter count follows it). */
  readonly inbox: number;
  /** The same for messages from this end to its peer. */
  readonly outbox: number;
}

function newPortWakes(): [PortWake, PortWake] {
  const words = new Int32Array(new SharedArrayBuffer(4 * Int32Array.BYTES_PER_ELEMENT));
  return [{ words, inbox: 0, outbox: 2 }, { words, inbox: 2, outbox: 0 }];
}

/** How long a thread blocked in recvSync watches for a message before it sleeps (ms). */
const PORT_SPIN_MS = 0.05;

/** Thread Pipe ends alive in this thread (see closeAtThreadExit). */
const openPorts = new Set<PortTransport>();
let exitHookInstalled = false;

/**
 * A thread that ends closes its Pipe ends, as a process's exit closes its sockets: the peer gets
 * EOF at once, even while blocked in recvSync (the port's own 'close' needs the peer's event loop).
 */
function closeAtThreadExit(transport: PortTransport): void {
  if (isMainThread) return;
  openPorts.add(transport);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const t of [...openPorts]) t.close();
  });
}

class PortTransport implements Transport {
  readonly kind = 'port' as const;
  readonly ready = Promise.resolve();
  readonly midMessage = false;
  private sink: Sink | null = null;
  private ended = false;
  private closed = false;

  /** `wake` is absent for a Connection over a caller's own MessagePort, which cannot block. */
  constructor(private readonly port: MessagePort, private readonly wake?: PortWake) {}

  attach(sink: Sink): void {
    this.sink = sink;
    this.port.on('message', (m: PortMessage) => this.onMessage(m));
    this.port.on('close', () => this.finish());
    this.port.unref();
    if (this.wake) closeAtThreadExit(this);
  }

  private onMessage(m: PortMessage): void {
    if (this.ended || this.sink === null) return;
    if ('b' in m) this.sink.message({ bytes: Buffer.from(m.b.buffer, m.b.byteOffset, m.b.byteLength) });
    else if ('g' in m) this.sink.message({ graph: m.g, changed: m.c });
    else this.finish();
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    this.sink?.end();
  }

  private post(message: PortMessage, transfer?: ReduceContext['transfer']): void {
    if (this.closed) throw new OSError('handle is closed');
    if (this.ended) throw new OSError('[Errno 32] Broken pipe', 'EPIPE');
    this.port.postMessage(message, transfer);
    this.ring();
  }

  /** Tells a peer blocked in recvSync that a message is there (after it was posted). */
  private ring(): void {
    const wake = this.wake;
    if (!wake) return;
    Atomics.add(wake.words, wake.outbox, 1);
    if (Atomics.load(wake.words, wake.outbox + 1) > 0) Atomics.notify(wake.words, wake.outbox);
  }

  sendBytes(payload: Uint8Array): void {
    this.post({ b: payload });
  }

  sendValue(value: unknown): void {
    const ctx = newReduceContext('thread');
    const { graph, changed } = reduce(value, ctx);
    try {
      this.post({ g: graph, c: changed }, ctx.transfer);
    } catch (error) {
      if (error instanceof OSError) throw error;
      throw new PicklingError(`Can't send the value: ${(error as Error).message}`);
    }
  }

  pull(): void {
    if (this.closed) return;
    for (let r = receiveMessageOnPort(this.port); r !== undefined && !this.ended; r = receiveMessageOnPort(this.port)) {
      this.onMessage(r.message as PortMessage);
    }
  }

  receiveSync(timeoutMs: number): boolean {
    if (this.ended) return true;
    const wake = this.wake;
    if (!wake) {
      throw new NotAvailableError(
        'recvSync()/pollSync() need a Pipe() end: a Connection over your own MessagePort cannot block ' +
          'this thread until a message comes. Use await recv()/poll(), or make the channel with Pipe().',
      );
    }
    const { words, inbox } = wake;
    // Count as a waiter before looking, so a sender that posts after the look also notifies.
    Atomics.add(words, inbox + 1, 1);
    try {
      const seen = Atomics.load(words, inbox);
      const r = receiveMessageOnPort(this.port);
      if (r !== undefined) {
        this.onMessage(r.message as PortMessage);
        return true;
      }
      // As readSocket does: a peer that answers within microseconds is caught before sleeping.
      const spinUntil = performance.now() + Math.min(PORT_SPIN_MS, Math.max(0, timeoutMs < 0 ? Infinity : timeoutMs));
      while (performance.now() < spinUntil) if (Atomics.load(words, inbox) !== seen) return true;
      return blockThread(timeoutMs, (slice) => Atomics.wait(words, inbox, seen, slice < 0 ? Infinity : slice), (r) => r === 'timed-out') !== 'timed-out';
    } finally {
      Atomics.sub(words, inbox + 1, 1);
    }
  }

  setLimit(): void {}

  receiveBriefly(): boolean {
    return false;
  }

  keepAlive(on: boolean): void {
    if (this.closed) return;
    if (on) this.port.ref();
    else this.port.unref();
  }

  watchEnd(): void {
    // A port delivers its 'close' whether or not anyone reads.
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ended = true;
    openPorts.delete(this);
    try {
      this.port.postMessage({ eof: true } satisfies PortMessage);
      this.ring();
    } catch {
      // already detached
    }
    this.port.close();
  }

  /** The port moved to another thread: forget it without closing the channel. */
  detach(): void {
    this.closed = true;
    this.ended = true;
    openPorts.delete(this);
    this.port.removeAllListeners('message');
    this.port.removeAllListeners('close');
  }

  fileno(): number {
    throw new OSError('a thread Connection (MessagePort) has no file descriptor');
  }

  reduce(ctx: ReduceContext, state: ConnectionState): Reduced {
    if (ctx.target !== 'thread') {
      throw new ValueError(
        'A Connection over a MessagePort (a Pipe of the thread context) cannot be passed to another ' +
          'process; use a Pipe of a process context (pipeForProcesses) for processes.',
      );
    }
    ctx.transfer.push(this.port);
    this.detach();
    return { kind: 'Connection', state: { port: this.port, wake: this.wake, ...state } };
  }
}

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

/** A socket over `fd` that does not start reading until asked to. */
function socketFromFd(fd: number): net.Socket {
  // `pauseOnCreate` (what net.Server uses for pauseOnConnect) keeps the socket from reading ahead.
  return new net.Socket({ fd, readable: true, writable: true, pauseOnCreate: true } as net.SocketConstructorOpts);
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
    this.#transport.keepAlive(this.#consumers.length > 0 || this.#watchers.size > 0);
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
    this.#transport.pull();
    let m = this.#shift();
    if (m) return Promise.resolve(m);
    if (this.#end) return Promise.reject(this.#endError());
    // Concurrent receivers take messages in call order: only the first may read ahead of them.
    if (this.#consumers.length === 0 && this.#transport.receiveBriefly()) {
      m = this.#shift();
      if (m) return Promise.resolve(m);
      if (this.#end) return Promise.reject(this.#endError());
    }
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
    this.#transport.pull();
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
    this.#transport.pull();
    if (this.#readyNow()) return true;
    if (!this.#closed) {
      // Read what the kernel already holds: demand for one loop turn.
      const controller = new AbortController();
      this._whenReady(controller.signal).catch(() => {});
      await ioTurn();
      controller.abort();
      this.#transport.pull();
    }
    return this.#closed || this.#readyNow() || this.#transport.midMessage;
  }

  /** @internal Ready for `wait()`: a message, part of one, or EOF (Python's select counts any byte). */
  _readyNow(): boolean {
    return this.#closed || this.#readyNow() || this.#transport.midMessage;
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
    if (!this.#readyNow() && !this.#transport.midMessage) {
      await waitAny([this], timeout, options.signal);
    }
    this.#checkReadable();
    return this.#readyNow() || this.#transport.midMessage;
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
    return this.#readyNow() || this.#transport.midMessage;
  }

  /**
   * Blocks until a message or EOF is in the inbox (or, with `anyBytes`, part of a message has
   * arrived), or `timeout` seconds (`null`: forever) pass.
   */
  #receiveSync(timeout: number | null, anyBytes: boolean): void {
    const deadline = deadlineAfter(timeout);
    for (;;) {
      this.#transport.pull();
      if (this.#readyNow() || (anyBytes && this.#transport.midMessage)) return;
      const left = deadline === Infinity ? -1 : Math.min(Math.max(0, deadline - performance.now()), MAX_DELAY_MS);
      if (!this.#transport.receiveSync(left)) {
        this.#transport.pull();
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

registerReducer('Connection', (state: ConnectionState & { handle?: number; port?: MessagePort; wake?: PortWake }, ctx) => {
  const options = { readable: state.readable, writable: state.writable, maxMessageSize: state.maxMessageSize };
  if (state.port !== undefined) return Connection._fromTransport(new PortTransport(state.port, state.wake), options);
  const socket = state.handle === undefined ? undefined : ctx.handles[state.handle];
  if (!socket) throw new OSError('the socket of a Connection did not arrive with it');
  return new Connection(socket, options);
});

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

let tempDir: string | undefined;
/** A private temp dir (`pymp-*`, mode 0700) removed at exit, as Python's `util.get_temp_dir()`. */
function getTempDir(): string {
  if (tempDir === undefined) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pymp-'));
    tempDir = dir;
    process.once('exit', () => {
      try {
        fs.rmSync(dir, { recursive: true, force: true });
      } catch {
        // best effort
      }
    });
  }
  return tempDir;
}

/** Python's `arbitrary_address(family)`. */
export function arbitraryAddress(family: Family = 'AF_UNIX'): Address {
  if (family === 'AF_INET') return ['127.0.0.1', 0];
  if (family === 'AF_UNIX') return path.join(getTempDir(), `listener-${randomBytes(6).toString('hex')}`);
  throw new ValueError(`unrecognized family ${String(family)}`);
}

function nativeSocketpair(): [number, number] | null {
  try {
    const fds = loadNative().socketpair();
    return Array.isArray(fds) && fds.length === 2 ? fds : null;
  } catch {
    return null;
  }
}

/** Two connected AF_UNIX stream sockets, synchronously. */
function socketPair(limit: number, useNative: boolean): [SocketTransport, SocketTransport] {
  const fds = useNative ? nativeSocketpair() : null;
  if (fds) {
    return [
      new SocketTransport(socketFromFd(fds[0]), limit),
      new SocketTransport(socketFromFd(fds[1]), limit),
    ];
  }
  // Pure Node: a private listener in our 0700 temp dir; the connecting end exists at once, the
  // accepted end gets its socket one loop turn later (writes to it are queued until then).
  const address = path.join(getTempDir(), `pipe-${randomBytes(6).toString('hex')}`);
  const server = net.createServer({ pauseOnConnect: true });
  let bindError: unknown;
  server.on('error', (e) => (bindError ??= e));
  server.listen(address);
  if (!server.address()) {
    server.close();
    throw osErrorFrom(bindError ?? new Error(`could not create a socket pair at ${address}`));
  }
  const accepted = new SocketTransport(null, limit);
  const client = net.connect(address);
  client.pause();
  server.once('connection', (socket) => {
    server.close();
    accepted.attachSocket(socket);
  });
  server.on('error', (error) => {
    server.close();
    accepted.fail(error);
  });
  client.once('error', (error) => {
    server.close();
    accepted.fail(error);
  });
  return [accepted, new SocketTransport(client, limit)];
}

export interface ProcessPipeOptions {
  /** Frame limit (default: the largest Buffer; both ends belong to this program). */
  maxMessageSize?: number;
  /** Use the addon's socketpair() when it loads (default true); false forces the pure-Node pair. */
  useNative?: boolean;
}

/** `Pipe(duplex)` for process start methods: an AF_UNIX socket pair. Simplex: `[readOnly, writeOnly]`. */
export function pipeForProcesses(duplex = true, options: ProcessPipeOptions = {}): [Connection, Connection] {
  const limit = options.maxMessageSize ?? PIPE_MAX_MESSAGE_SIZE;
  const [a, b] = socketPair(limit, options.useNative ?? true);
  return [
    Connection._fromTransport(a, { readable: true, writable: duplex, maxMessageSize: limit }),
    Connection._fromTransport(b, { readable: duplex, writable: true, maxMessageSize: limit }),
  ];
}

/** `Pipe(duplex)` for the thread start method: a MessageChannel. Simplex: `[readOnly, writeOnly]`. */
export function pipeForThreads(duplex = true): [Connection, Connection] {
  const { port1, port2 } = new MessageChannel();
  const [wake1, wake2] = newPortWakes();
  return [
    Connection._fromTransport(new PortTransport(port1, wake1), { readable: true, writable: duplex }),
    Connection._fromTransport(new PortTransport(port2, wake2), { readable: duplex, writable: true }),
  ];
}

/** A pipe whose ends reach threads (a MessageChannel) or processes (an AF_UNIX socket pair). */
function pipeFor(duplex: boolean, kind: MemoryKind): [Connection, Connection] {
  return kind === 'thread' ? pipeForThreads(duplex) : pipeForProcesses(duplex);
}

/**
 * Python's `Pipe(duplex=True)`: two connected Connections, of the kind the default context's
 * children reach (a context's own `ctx.Pipe()` makes its kind); with or without `new` (docs/api.md
 * rule 1: a function that returns an object, so `new` gives that object).
 */
export const Pipe = function Pipe(duplex = true): [Connection, Connection] {
  // Asking must not fix the default start method (a later setStartMethod still works).
  return pipeFor(duplex, memoryKindFor(null, false));
} as Factory<[duplex?: boolean], [Connection, Connection]>;

registerClasses({ Pipe: pipeFor });

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
