/**
 * The Node transports under a Connection (connection.ts), behind one small `Transport` interface:
 * - a socket (`net.Socket`: AF_UNIX socket pairs for process pipes, AF_UNIX/AF_INET for
 *   Listener/Client), framed exactly as CPython frames it (connectionFraming.ts);
 * - a `MessagePort` (pipes for the `thread` start method), posting bytes or reduced graphs.
 * Both feed the Connection's inbox through a `Sink`.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { isMainThread, MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import { NotAvailableError, OSError, PicklingError, ValueError } from './errors.js';
import { FrameDecoder, frame } from './connectionFraming.js';
import { dumps, newReduceContext, reduce, type ReduceContext, type Reduced } from './reduction.js';
import { loadNative, tryLoadNative, type NativeBinding } from './native.js';
import { SocketWriter } from './socketWriter.js';
import { blockThread } from './blocking.js';

export type Inbound = { bytes: Buffer } | { graph: unknown; changed: boolean };

export interface Sink {
  message(m: Inbound): void;
  /** Part of a message has arrived (readiness counts it, as Python's poll counts any byte). */
  partial(): void;
  end(error?: Error): void;
}

export interface Transport {
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

export interface ConnectionState {
  readable: boolean;
  writable: boolean;
  maxMessageSize: number;
}

export function osErrorFrom(error: unknown): OSError {
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

export class SocketTransport implements Transport {
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
export interface PortWake {
  readonly words: Int32Array;
  /** Index of the sequence word for messages to this end (its waiter count follows it). */
  readonly inbox: number;
  /** The same for messages from this end to its peer. */
  readonly outbox: number;
}

export function newPortWakes(): [PortWake, PortWake] {
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

export class PortTransport implements Transport {
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

// ---- making them ---------------------------------------------------------------------------

/** A socket over `fd` that does not start reading until asked to. */
export function socketFromFd(fd: number): net.Socket {
  // `pauseOnCreate` (what net.Server uses for pauseOnConnect) keeps the socket from reading ahead.
  return new net.Socket({ fd, readable: true, writable: true, pauseOnCreate: true } as net.SocketConstructorOpts);
}

let tempDir: string | undefined;
/** A private temp dir (`pymp-*`, mode 0700) removed at exit, as Python's `util.get_temp_dir()`. */
export function getTempDir(): string {
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

function nativeSocketpair(): [number, number] | null {
  try {
    const fds = loadNative().socketpair();
    return Array.isArray(fds) && fds.length === 2 ? fds : null;
  } catch {
    return null;
  }
}

/** Two connected AF_UNIX stream sockets, synchronously. */
export function socketPair(limit: number, useNative: boolean): [SocketTransport, SocketTransport] {
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
