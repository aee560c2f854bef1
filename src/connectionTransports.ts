/**
 * The Node transports under a Connection (connection.ts), behind one small `Transport` interface:
 * - a socket (`net.Socket`: AF_UNIX socket pairs for pipes, AF_UNIX/AF_INET for
 *   Listener/Client), framed exactly as CPython frames it (connectionFraming.ts);
 * - a `MessagePort` (a Connection over the caller's own port), posting bytes or reduced graphs.
 * Both feed the Connection's inbox through a `Sink`.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import { NotAvailableError, OSError, PicklingError, ValueError } from './errors.js';
import { FRAME_HEADROOM, FrameDecoder, frame, frameInPlace } from './connectionFraming.js';
import { dumps, newReduceContext, reduce, type ReduceContext, type Reduced } from './reduction.js';
import { loadNative, tryLoadNative, type FdWatch, type NativeBinding } from './native.js';
import { SocketWriter } from './socketWriter.js';
import { blockThread } from './blocking.js';
import { SpinBackoff } from './futex.js';
import { MessageLock, newEndLocks, publishedProcessLock, publishProcessLock, RECEIVE_LOCK, SEND_LOCK } from './messageLock.js';
import { allocate, attachBlock, blockState, int32s, type Block, type BlockState } from './heap.js';
import { reduceSocket } from './resourceSharer.js';
import { getTempDir, randomHex } from './util.js';

export type Inbound = { bytes: Buffer } | { graph: unknown; changed: boolean };

export interface Sink {
  message(m: Inbound): void;
  /** Part of a message has arrived, or (a shared end) bytes wait in the kernel: readiness counts
   * it, as Python's poll counts any byte. */
  partial(): void;
  end(error?: Error): void;
}

/** Who waits on a connection: receivers (read a message for them), only pollers (say when bytes
 * are there), or nobody. */
export type Demand = 'receive' | 'poll' | null;

export interface Transport {
  readonly kind: 'socket' | 'port';
  attach(sink: Sink): void;
  /** Resolves once the transport can carry data (a fallback pipe end waits for its accept). */
  readonly ready: Promise<void>;
  sendBytes(payload: Uint8Array, owned: boolean): void;
  sendValue(value: unknown): void;
  /** Moves whatever is already receivable into the sink, synchronously where possible; a shared
   * socket end reads (one message) only for a `receiving` caller, never for a poll. */
  pull(receiving: boolean): void;
  setLimit(limit: number): void;
  /**
   * Someone waits for data: read from the OS (a shared end: only for receivers) and keep the event
   * loop alive. Without demand a socket is not read at all, so an end that was handed to a child
   * process (which holds the same socket) never steals the child's data, and an unread inbox does
   * not grow without bound.
   */
  setDemand(demand: Demand): void;
  /** Read (without keeping the event loop alive) so that the peer's hang-up is noticed. */
  watchEnd(): void;
  /**
   * Blocks this thread until something arrives or `timeoutMs` (< 0: forever) passes, and moves it
   * into the sink (a shared end only when `receiving`: a poll leaves it in the kernel); false when
   * nothing arrived in time. Throws `NotAvailableError` where the transport has no way to block
   * (recvSync/pollSync).
   */
  receiveSync(timeoutMs: number, receiving: boolean): boolean;
  /** Some bytes of a message have arrived but not all of it, or (a shared end) bytes wait in the kernel. */
  readonly bytesWaiting: boolean;
  /** Whether data reaches the sink only through the event loop (so a poll lets it turn once). */
  readonly readsAhead: boolean;
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

/** `dumps` for a message to another process over a byte stream (`headroom` bytes left in front);
 * a socket in it travels through the resource sharer (src/resourceSharer.ts). */
export function dumpsForProcess(value: unknown, headroom = 0): Buffer {
  return dumps(value, newReduceContext('process'), undefined, headroom);
}

type SocketInternals = { _handle?: { fd?: number } | null };

/** The descriptor of a plain socket that the addon can read and write (not TLS, a pipe or a FIFO). */
export function nativeSocketFd(socket: net.Socket): number | null {
  const fd = (socket as unknown as SocketInternals)._handle?.fd;
  if (typeof fd !== 'number' || fd < 0 || (socket as { encrypted?: boolean }).encrypted) return null;
  try {
    return fs.fstatSync(fd).isSocket() ? fd : null;
  } catch {
    return null;
  }
}

/**
 * Stops libuv's reading of `socket` (what `pauseOnCreate` does): `pause()` only stops the 'data'
 * events, and libuv keeps filling the stream's buffer until it is full.
 */
function stopReading(socket: net.Socket): void {
  const handle = (socket as unknown as { _handle?: { reading?: boolean; readStop?: () => number } | null })._handle;
  if (handle?.reading) {
    handle.reading = false;
    handle.readStop?.();
  }
}

/** One byte to peek into (a shared end's poll looks without taking). */
const peekByte = Buffer.alloc(1);

/** Bytes read per system call by recvSync: at least this, or the rest of a large message... */
const SYNC_READ_MIN = 64 * 1024;
/** ...but no more than this at once. */
const SYNC_READ_MAX = 16 * 1024 * 1024;
let syncReadScratch: Buffer | undefined;

/**
 * How long (ms) a receiver that has just sent on this connection, and so expects a reply, keeps
 * reading the socket before it leaves the wait to the event loop. A process asleep in epoll is
 * woken by its peer's write, and that costs on both sides: the wake-up's CPU time inside the
 * sender's send(), and the sleeper's latency. A peer that answers within this time (a
 * request/response loop with the peer on another core) is caught awake, as recvSync catches it
 * (the addon's readSocket retries for the same 50 µs). The event loop is held for at most this
 * long per receive.
 */
const REPLY_SPIN_MS = 0.05;
export class SocketTransport implements Transport {
  readonly kind = 'socket' as const;
  readonly ready: Promise<void>;
  private socket: net.Socket | null = null;
  private sink: Sink | null = null;
  private readonly decoder: FrameDecoder;
  private readonly queued: Uint8Array[] = [];
  private markReady!: () => void;
  private pendingWrites = 0;
  private demand: Demand = null;
  private flowing = false;
  /** A shared end (see share()): the addon's readiness watch, and the socket's descriptor. */
  private watch: FdWatch | null = null;
  private watching = false;
  private fd = -1;
  private delivered = 0;
  /** An end that threads share (useLocks): their locks, and this thread's wait for the receive lock. */
  private locks: Int32Array | null = null;
  private recvLock: MessageLock | null = null;
  /** An end that processes share (useProcessSendLock): the word of their send lock. */
  private processSendLock: Block | null = null;
  private cancelRecvLockWait: (() => void) | null = null;
  private readonly onMessage = (payload: Buffer): void => {
    this.delivered++;
    this.replyExpected = false;
    this.recvLock?.release();
    this.sink?.message({ bytes: payload });
  };
  /** Writes through the addon (src/socketWriter.ts); null: through Node's stream. */
  private writer: SocketWriter | null = null;
  /** Set by the first blocking recvSync/pollSync: sends are written in full before they return. */
  private blockingSends = false;
  private writeError: OSError | null = null;
  private ended = false;
  private closed = false;
  /** The descriptor an unshared end reads directly when a receiver asks (readAvailable): -1 when
   * the addon cannot read it (no addon, TLS, a pipe or FIFO); undefined until looked up. */
  private directFd: number | undefined;
  private readonly replySpin = new SpinBackoff();
  /** Whether recvSync/pollSync spin before they sleep (readBlocking). */
  private readonly blockingSpin = new SpinBackoff();
  /** Something was sent since the last message arrived: a receiver may spin for the reply. */
  private replyExpected = false;
  /** While a receiver spins (performance.now() until which its reads retry), else 0. */
  private spinUntil = 0;

  constructor(socket: net.Socket | null, limit: number) {
    this.decoder = new FrameDecoder(limit);
    this.ready = new Promise((resolve) => (this.markReady = resolve));
    if (socket) this.attachSocket(socket);
  }

  get bytesWaiting(): boolean {
    if (this.decoder.midMessage) return true;
    if (!this.watch || this.ended) return false;
    try {
      return loadNative().readSocket(this.fd, peekByte, 0, [], true) >= 0; // bytes, or the end
    } catch {
      return true; // an error, for the next receive to report
    }
  }

  get readsAhead(): boolean {
    return this.watch === null;
  }

  /**
   * This end is shared with another process (it was passed to one, or inherited from one): from
   * now on nothing is read ahead of a receiver. Python's poll is a select() that reads nothing and
   * its recv reads one message, header then payload; a socket read through Node's stream takes
   * whatever the kernel holds, messages meant for the other process included. So a shared end is
   * watched for readiness by the addon (a poll handle on this event loop, reading nothing) and read
   * by the addon, exactly one message per receiver. Without the addon it stays a stream.
   */
  share(): void {
    const socket = this.socket;
    const native = tryLoadNative();
    if (this.watch || this.closed || !socket || !native) return;
    const fd = nativeSocketFd(socket);
    if (fd === null) return;
    socket.pause();
    this.flowing = false;
    // What Node has already read belongs to this process: decode it first (read() may restart
    // libuv's reading, so stop it after).
    while (socket.readableLength > 0 && socket.read() !== null);
    stopReading(socket);
    this.fd = fd;
    this.watch = native.watchReadable(fd, () => this.onReadable());
    this.updateFlow();
  }

  /**
   * This end is shared with other threads of this process, which take turns with it through
   * `words` (src/messageLock.ts): one whole message each, in and out.
   */
  useLocks(words: Int32Array): void {
    if (this.locks) return;
    this.locks = words;
    this.recvLock = new MessageLock(words, RECEIVE_LOCK);
    // A message partly read before the end was shared is finished first (the lock is new).
    if (this.decoder.midMessage) this.recvLock.tryAcquire();
    this.writer?.useLock(new MessageLock(words, SEND_LOCK), false);
    if (this.processSendLock) this.publishProcessSendLock();
    else this.adoptProcessSendLock();
  }

  /**
   * This end is shared with other processes: a send waits until what another process has sent
   * on it is written (src/messageLock.ts). `block` is one word of process memory. The threads
   * that share the end find it in their words, also those that got the end before.
   */
  useProcessSendLock(block: Block): void {
    if (this.processSendLock) return;
    this.processSendLock = block;
    this.writer?.useLock(new MessageLock(int32s(block), 0), true);
    this.publishProcessSendLock();
  }

  /** Writes where the send lock between processes is into the thread locks' words (once). */
  private publishProcessSendLock(): void {
    const block = this.processSendLock;
    if (!block || !this.locks || publishedProcessLock(this.locks)) return;
    publishProcessLock(this.locks, { segment: block.segment!, offset: block.offset });
  }

  /** Takes up the send lock between processes another thread sharing this end has published. */
  private adoptProcessSendLock(): void {
    if (this.processSendLock || !this.locks) return;
    const place = publishedProcessLock(this.locks);
    if (place) this.useProcessSendLock(attachBlock({ kind: 'process', ...place, length: 4 }));
  }

  /** Another thread is receiving a message from this end: wait until it has, then read again. */
  private waitRecvLock(): void {
    this.setWatch(false, false);
    this.cancelRecvLockWait ??= this.recvLock!.onceFree(() => {
      this.cancelRecvLockWait = null;
      this.updateFlow();
    });
  }

  /** Nothing was read: between two messages, the lock is not this thread's to keep (another
   * thread may be the one that receives the next message). */
  private releaseBetweenMessages(): void {
    if (!this.decoder.midMessage) this.recvLock?.release();
  }

  private stopRecvLockWait(): void {
    this.cancelRecvLockWait?.();
    this.cancelRecvLockWait = null;
  }

  /** The watch of a shared end fired: the kernel has bytes (or the end) for this socket. */
  private onReadable(): void {
    if (this.ended || this.closed) return this.setWatch(false, false);
    if (this.demand === 'receive') this.readExact(() => this.demand === 'receive');
    else if (this.demand === 'poll') this.sink?.partial();
    else this.setWatch(false, false); // stopped lazily: a receiver often comes back at once
  }

  private setWatch(active: boolean, ref: boolean): void {
    if (!this.watch || (!active && !this.watching)) return;
    this.watching = active;
    this.watch.set(active, ref);
  }

  /**
   * Reads a shared end with the addon while `more()`: header, then payload, never past the end of
   * a message (the decoder says how many bytes that is).
   */
  private readExact(more: () => boolean): void {
    const native = loadNative();
    while (!this.ended && more()) {
      if (this.recvLock && !this.recvLock.tryAcquire()) return this.waitRecvLock();
      let n: number;
      try {
        n = native.readSocket(this.fd, this.decoder.nextSpan(), this.spinLeft());
      } catch (error) {
        return this.onError(error);
      }
      if (n < 0) return this.releaseBetweenMessages(); // nothing yet: the watch calls again
      if (n === 0) return this.onEnd();
      this.commit(n);
    }
  }

  private commit(n: number): void {
    try {
      this.decoder.commit(n, this.onMessage);
    } catch (error) {
      this.finish(error as Error);
      this.socket?.destroy();
    }
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
    // No reading until someone asks (see setDemand); pause before 'data' would start the flow.
    socket.pause();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', (error) => this.onError(error));
    socket.on('close', () => {
      this.writer?.drop();
      this.closeWatch();
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
    if (!native || socket.writableLength > 0 || socket.connecting) return null;
    const fd = nativeSocketFd(socket);
    if (fd === null) return null;
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
    if (this.ended) return;
    try {
      this.decoder.push(chunk, this.onMessage);
      if (this.decoder.midMessage) this.sink?.partial();
    } catch (error) {
      this.finish(error as Error);
      this.socket?.destroy();
    }
  }

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
    this.stopRecvLockWait();
    this.recvLock?.release();
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
    this.sendFrame(frame(payload), owned);
  }

  sendValue(value: unknown): void {
    // Serialised behind room for the header: the message is written without another copy.
    this.sendFrame(frameInPlace(dumpsForProcess(value, FRAME_HEADROOM)), true);
  }

  /** Writes one message's chunks; a chunk not `owned` is the caller's memory (copied if it has to wait). */
  private sendFrame(chunks: Uint8Array[], owned: boolean): void {
    if (this.writeError) throw this.writeError;
    const socket = this.socket;
    if (socket && (socket.destroyed || !socket.writable)) throw new OSError('[Errno 32] Broken pipe', 'EPIPE');
    this.replyExpected = true;
    // Another thread may have passed this end to a process since this thread's last send.
    this.adoptProcessSendLock();
    if (this.writer && !this.writer.degraded) {
      try {
        // Read with blocking calls, this thread may block right after this send (in a
        // Queue.getSync, say), when nothing would write a tail: write it all now, as Python does.
        if (this.blockingSends) this.writer.writeAll(chunks);
        else this.writer.write(chunks, (chunk) => owned || chunk === chunks[0]);
      } catch (error) {
        this.writeError ??= osErrorFrom(error);
        throw this.writeError;
      }
      return;
    }
    // A large payload is written from the caller's memory; copy it unless it is ours, so changing
    // the buffer after send() returns cannot change what goes out (Python copies into the kernel).
    if (chunks.length === 2 && !owned) chunks[1] = Buffer.from(chunks[1]!);
    if (socket) socket.cork();
    for (const chunk of chunks) this.write(chunk);
    if (socket) {
      socket.uncork();
      this.updateFlow();
    }
  }

  pull(receiving: boolean): void {
    if (!receiving || this.closed) return;
    // A message the kernel already holds is taken now, without a turn of the event loop: a shared
    // end reads exactly one, an unshared one what is there.
    const before = this.delivered;
    const more = (): boolean => this.delivered === before;
    const read = (): void => (this.watch ? this.readExact(more) : this.readAvailable(more));
    read();
    // Only the first receiver spins (later ones queue behind it), and only for a reply.
    if (!more() || !this.replyExpected || this.demand === 'receive' || this.ended || !this.replySpin.shouldSpin()) return;
    this.spinUntil = performance.now() + REPLY_SPIN_MS;
    try {
      read();
    } finally {
      this.spinUntil = 0;
    }
    this.replySpin.spun(!more());
  }

  /** The timeout of a read: what is left of a receiver's spin, or 0 (take what is there). */
  private spinLeft(): number {
    return this.spinUntil === 0 ? 0 : Math.max(0, this.spinUntil - performance.now());
  }

  /**
   * Reads an unshared end with the addon, without waiting, while `more()` and the kernel has bytes.
   * libuv reads the same socket on this thread between turns of the event loop, never during this
   * call, so the two take turns and the bytes reach the decoder in order. The rest of a payload
   * whose header has arrived is read straight into its buffer; anything else through a scratch
   * buffer, copied out (the decoder hands out views), possibly several messages at once.
   */
  private readAvailable(more: () => boolean): void {
    const socket = this.socket;
    const fd = this.readableFd();
    // A destroyed socket's descriptor may already be closed, and its number reused.
    if (fd < 0 || !socket || socket.destroyed) return;
    // Bytes Node has already taken from the kernel come first: read() hands them to onData.
    if (socket.readableLength > 0) socket.read();
    const native = loadNative();
    while (!this.ended && more()) {
      const inBody = this.decoder.bodyWanted > 0;
      const into = inBody ? this.decoder.nextSpan() : (syncReadScratch ??= Buffer.allocUnsafe(SYNC_READ_MIN));
      let n: number;
      try {
        n = native.readSocket(fd, into, this.spinLeft());
      } catch (error) {
        return this.onError(error);
      }
      if (n < 0) return;
      if (n === 0) return this.onEnd();
      if (inBody) this.commit(n);
      else this.onData(Buffer.from(into.subarray(0, n)));
    }
  }

  private readableFd(): number {
    if (this.directFd !== undefined) return this.directFd;
    const socket = this.socket;
    if (!socket || socket.connecting) return -1; // known once connected
    this.directFd = tryLoadNative() ? (nativeSocketFd(socket) ?? -1) : -1;
    return this.directFd;
  }

  receiveSync(timeoutMs: number, receiving: boolean): boolean {
    if (this.ended) return true;
    const native = loadNative(); // NotAvailableError (with how to build it) without the addon
    const socket = this.socket;
    if (!socket) throw new NotAvailableError('This Pipe end is not connected yet; await its poll() once before recvSync().');
    if ((socket as { encrypted?: boolean }).encrypted) {
      throw new NotAvailableError('recvSync()/pollSync() read the socket itself, which would bypass TLS: use await recv()/poll().');
    }
    // A look (timeout 0) does not block, so it leaves the sends as they are.
    if (timeoutMs !== 0) this.blockingSends = true;
    // Bytes Node has already taken from the kernel come first: read() hands them to onData.
    if (socket.readableLength > 0) {
      socket.read();
      return true;
    }
    if (this.watch) return this.receiveExactSync(native, timeoutMs, receiving);
    // The event loop is blocked in this call, so reading the socket directly cannot race libuv's
    // reads; what is read goes through the same decoder.
    // Small reads land in one scratch buffer and are copied out (the decoder hands out views of
    // its chunks); the rest of a large message is read into memory of its own.
    const wanted = this.decoder.bodyWanted;
    const into = wanted > SYNC_READ_MIN ? Buffer.allocUnsafe(Math.min(wanted, SYNC_READ_MAX)) : (syncReadScratch ??= Buffer.allocUnsafe(SYNC_READ_MIN));
    let n: number;
    try {
      n = this.readBlocking(native, this.fileno(), into, timeoutMs, false);
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
    else this.onData(into === syncReadScratch ? Buffer.from(into.subarray(0, n)) : into.subarray(0, n));
    return true;
  }

  /**
   * The blocking read of recvSync/pollSync (readSocket's result). It retries for REPLY_SPIN_MS
   * before sleeping only while such spins catch the peer's answers: when the peer has no CPU of
   * its own (a busy machine), spinning keeps it from running, and each message waited for a whole
   * spin plus a wake-up (a round trip between two threads went from 60-90k/s to 9-13k/s beside
   * one busy process; sleeping at once, 55-67k/s). A spin that catches nothing makes the next 1,
   * 3, 7, ... 63 reads sleep at once (SpinBackoff, as the async receive's). Also wakes when a
   * socket of this thread with sends still to write can take more: nothing else writes them
   * while this thread is blocked.
   */
  private readBlocking(native: NativeBinding, fd: number, into: Uint8Array, timeoutMs: number, peek: boolean): number {
    const spin = timeoutMs !== 0 && this.blockingSpin.shouldSpin();
    const started = spin ? performance.now() : 0;
    const n = blockThread(
      timeoutMs,
      (slice) => native.readSocket(fd, into, slice, SocketWriter.pendingFds(), peek, spin ? REPLY_SPIN_MS : 0),
      (r) => r === -1,
    );
    // Caught: bytes came before the spin was over (after it, the thread slept and was woken).
    if (spin && n !== -2) this.blockingSpin.spun(n >= 0 && performance.now() - started < REPLY_SPIN_MS);
    return n;
  }

  /** receiveSync on a shared end: the rest of the header or of the payload, or (a poll) a peek. */
  private receiveExactSync(native: NativeBinding, timeoutMs: number, receiving: boolean): boolean {
    // Another thread may be in the middle of a message: this one starts once it has it all.
    if (receiving && this.recvLock && !this.recvLock.acquireSync(timeoutMs)) return false;
    const into = receiving ? this.decoder.nextSpan() : peekByte;
    let n: number;
    try {
      n = this.readBlocking(native, this.fd, into, timeoutMs, !receiving);
    } catch (error) {
      this.onError(error);
      return true;
    }
    if (n === -2) SocketWriter.flushAll();
    if (n === -1 || n === -2 || !receiving) {
      this.releaseBetweenMessages();
      return n !== -1;
    }
    if (n === 0) this.onEnd();
    else {
      this.commit(n);
      // A payload of up to 16 KiB came in the same write as its header: take it in this call,
      // without another round of the caller's loop (and of the lock).
      if (this.decoder.bodyWanted > 0 && !this.ended) this.readBodyNow(native);
    }
    return true;
  }

  /** Reads what the kernel already holds of the payload being received (a shared end), without waiting. */
  private readBodyNow(native: NativeBinding): void {
    let n: number;
    try {
      n = native.readSocket(this.fd, this.decoder.nextSpan(), 0);
    } catch (error) {
      return this.onError(error);
    }
    if (n === 0) this.onEnd();
    else if (n > 0) this.commit(n);
  }

  setLimit(limit: number): void {
    this.decoder.limit = limit;
  }

  setDemand(demand: Demand): void {
    this.demand = demand;
    if (demand !== 'receive') this.stopRecvLockWait();
    this.updateFlow();
  }

  watchEnd(): void {
    this.flowing = true;
    this.updateFlow();
  }

  private updateFlow(): void {
    const socket = this.socket;
    if (!socket || socket.destroyed || this.closed) return;
    if (this.watch) {
      // A shared end: Node's stream never reads; the watch stays on (unreferenced) after the last
      // waiter, until it fires for nobody, to spare a start and stop per message.
      // While another thread holds the receive lock, its wait (holding the loop) stands for the watch.
      if (this.cancelRecvLockWait) this.setWatch(false, false);
      else if (this.demand) this.setWatch(true, true);
      else this.setWatch(this.watching, false);
      if (this.pendingWrites > 0) socket.ref();
      else socket.unref();
      return;
    }
    // Reading starts when somebody first waits for a message (a Pipe end handed to a child and
    // never read here does not steal the child's messages). From then on the socket keeps reading
    // into the connection's buffer: pausing and resuming around every recv() cost two epoll
    // changes per message, which dominated a request/response round trip.
    if (this.demand !== null && !this.ended) this.flowing = true;
    if (this.flowing) socket.resume();
    else socket.pause();
    if (this.demand !== null || this.pendingWrites > 0) socket.ref();
    else socket.unref();
  }

  private closeWatch(): void {
    this.watch?.close();
    this.watch = null;
    this.watching = false;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ended = true;
    this.stopRecvLockWait();
    this.recvLock?.release();
    // The watch holds a duplicate of the descriptor: the peer sees EOF only once it is closed too.
    this.closeWatch();
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
    const socket = this.socket;
    if (!socket) {
      throw new ValueError('This Pipe end is not connected yet; await its poll() once before passing it on.');
    }
    const travel = reduceSocket(socket, nativeSocketFd(socket), ctx);
    // The other side gets the same socket: this copy must no longer read ahead of it.
    this.share();
    if (!this.watch) return { kind: 'Connection', state: { ...travel, ...state } };
    if (ctx.target === 'process') {
      // Processes that share the end send in turns (src/messageLock.ts), and so do this process's
      // threads that share it.
      this.adoptProcessSendLock();
      const sendLock = this.processSendLock ?? allocate('process', 4, 4);
      this.useProcessSendLock(sendLock);
      return { kind: 'Connection', state: { ...travel, ...state, sendLock: blockState(sendLock) } };
    }
    // Threads that share the end take turns, a whole message each; their words say where the
    // send lock between processes is, once there is one.
    if (!this.locks) this.useLocks(newEndLocks());
    return { kind: 'Connection', state: { ...travel, ...state, locks: this.locks } };
  }
}

/** What travels on a MessagePort. */
type PortMessage = { b: Uint8Array } | { g: unknown; c: boolean } | { eof: true };

/**
 * A Connection over the caller's own `MessagePort` (Python has no counterpart; `Pipe()` is a
 * socket pair on every start method). A port has one owner: passed to a thread it moves there.
 * Nothing can block on it, so recvSync/pollSync are not available.
 */
export class PortTransport implements Transport {
  readonly kind = 'port' as const;
  readonly ready = Promise.resolve();
  readonly bytesWaiting = false;
  readonly readsAhead = true;
  private sink: Sink | null = null;
  private ended = false;
  private closed = false;

  constructor(private readonly port: MessagePort) {}

  attach(sink: Sink): void {
    this.sink = sink;
    this.port.on('message', (m: PortMessage) => this.onMessage(m));
    this.port.on('close', () => this.finish());
    this.port.unref();
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

  receiveSync(): boolean {
    throw new NotAvailableError(
      'recvSync()/pollSync() need a Pipe() end: a Connection over your own MessagePort cannot block ' +
        'this thread until a message comes. Use await recv()/poll(), or make the channel with Pipe().',
    );
  }

  setLimit(): void {}

  setDemand(demand: Demand): void {
    if (this.closed) return;
    if (demand !== null) this.port.ref();
    else this.port.unref();
  }

  watchEnd(): void {
    // A port delivers its 'close' whether or not anyone reads.
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ended = true;
    try {
      this.port.postMessage({ eof: true } satisfies PortMessage);
    } catch {
      // already detached
    }
    this.port.close();
  }

  /** The port moved to another thread: forget it without closing the channel. */
  private detach(): void {
    this.closed = true;
    this.ended = true;
    this.port.removeAllListeners('message');
    this.port.removeAllListeners('close');
  }

  fileno(): number {
    throw new OSError('a Connection over a MessagePort has no file descriptor');
  }

  reduce(ctx: ReduceContext, state: ConnectionState): Reduced {
    if (ctx.target !== 'thread') {
      throw new ValueError(
        'A Connection over a MessagePort cannot be passed to another process; use a Pipe() for processes.',
      );
    }
    ctx.transfer.push(this.port);
    this.detach();
    return { kind: 'Connection', state: { port: this.port, ...state } };
  }
}

// ---- making them ---------------------------------------------------------------------------

/** A socket over `fd` that does not start reading until asked to. */
export function socketFromFd(fd: number): net.Socket {
  // `pauseOnCreate` (what net.Server uses for pauseOnConnect) keeps the socket from reading ahead.
  return new net.Socket({ fd, readable: true, writable: true, pauseOnCreate: true } as net.SocketConstructorOpts);
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
  const address = path.join(getTempDir(), `pipe-${randomHex(6)}`);
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
