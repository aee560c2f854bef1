/**
 * Python's `multiprocessing.resource_sharer`: how a socket travels inside a message (a Connection
 * or a `net.Socket` sent over a Connection or put in a Queue) to another process, which did not
 * inherit it when it started.
 *
 * The sender keeps a duplicate of the descriptor and registers it under a random key with this
 * thread's sharer: an AF_UNIX listener in the private temp dir, served by the event loop. The
 * message carries the sharer's address and the key. The receiver connects, sends the key, and gets
 * the descriptor back over that socket (SCM_RIGHTS, the addon's sendFds/recvFds); the sender then
 * closes its duplicate. Each key is served once. As in Python, the sender must still be running
 * (and here its event loop turning) when the receiver rebuilds the message; a duplicate nobody
 * fetches stays open until the sender's thread exits.
 */
import { closeSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { OSError, PicklingError } from './errors.js';
import { loadNative } from './native.js';
import type { RebuildContext, ReduceContext } from './reduction.js';
import { getTempDir, randomHex } from './util.js';

/** Where and under which key a descriptor waits for its receiver. */
interface SharedFd {
  address: string;
  key: string;
}

const KEY_BYTES = 16;
const KEY_LENGTH = KEY_BYTES * 2; // hex

// Module state is per thread: a worker thread serves the descriptors it shares itself.
const registry = new Map<string, number>();
let server: net.Server | null = null;
let address = '';

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

/** Starts this thread's sharer (once). It does not keep the program alive, as Python's daemon thread. */
function listening(): string {
  if (server) return address;
  address = path.join(getTempDir(), `sharer-${randomHex(6)}`);
  const s = net.createServer((socket) => serve(socket));
  s.on('error', () => {}); // a failed listen shows as connection errors at the receiver
  s.listen(address);
  s.unref();
  server = s;
  process.once('exit', () => {
    for (const fd of registry.values()) closeQuietly(fd);
    registry.clear();
  });
  return address;
}

/** One receiver: reads its key, sends the descriptor registered under it, forgets it. */
function serve(socket: net.Socket): void {
  socket.on('error', () => {});
  let received = '';
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('latin1');
    if (received.length < KEY_LENGTH) return;
    const fd = registry.get(received.slice(0, KEY_LENGTH));
    const sock = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (fd !== undefined && typeof sock === 'number') {
      registry.delete(received.slice(0, KEY_LENGTH));
      try {
        loadNative().sendFds(sock, [fd]);
      } catch {
        // The receiver went away: it reports the failure.
      }
      closeQuietly(fd);
    }
    // An unknown key just gets the hang-up: the receiver reports it.
    socket.destroy();
  });
}

/** Python's `DupFd(fd)`: keeps a duplicate of `fd` for one receiver and says where to fetch it. */
function shareFd(fd: number): SharedFd {
  const copy = loadNative().dupFd(fd);
  const key = randomHex(KEY_BYTES);
  try {
    registry.set(key, copy);
    return { address: listening(), key };
  } catch (error) {
    registry.delete(key);
    closeQuietly(copy);
    throw error;
  }
}

/** A duplicate of `fd` for another thread of this process (descriptors are process-wide: no fetch). */
function dupForThread(fd: number): number {
  return loadNative().dupFd(fd);
}

function fetchFailed(error: unknown): OSError {
  return Object.assign(
    new OSError(
      'could not fetch a socket that arrived in a message: its sender has exited, or it was fetched ' +
        `already (${(error as Error).message})`,
      (error as { code?: string }).code,
    ),
    { cause: error },
  );
}

/** Registered by this very thread: take it back without a round trip (its loop could not answer). */
function takeLocal(shared: SharedFd): number | undefined {
  if (shared.address !== address) return undefined;
  const fd = registry.get(shared.key);
  if (fd === undefined) throw fetchFailed(new Error('no such key'));
  registry.delete(shared.key);
  return fd;
}

/** Connects to the sharer and asks for the key; returns the connected descriptor. */
function ask(shared: SharedFd): number {
  const native = loadNative();
  const sock = native.unixConnect(shared.address);
  try {
    native.writeSocket(sock, Buffer.from(shared.key, 'latin1'));
  } catch (error) {
    closeQuietly(sock);
    throw error;
  }
  return sock;
}

/** Python's `DupFd.detach()`: the descriptor, fetched from its sender; blocks this thread until
 * the sender's event loop answers (recvSync and getSync cannot wait otherwise). */
function fetchFdSync(shared: SharedFd): number {
  const local = takeLocal(shared);
  if (local !== undefined) return local;
  let sock = -1;
  try {
    sock = ask(shared);
    return loadNative().recvFds(sock, 1)[0]!;
  } catch (error) {
    throw fetchFailed(error);
  } finally {
    if (sock >= 0) closeQuietly(sock);
  }
}

/** `fetchFdSync` that waits for the sender's answer without blocking the event loop. */
async function fetchFd(shared: SharedFd): Promise<number> {
  const local = takeLocal(shared);
  if (local !== undefined) return local;
  const native = loadNative();
  let sock = -1;
  try {
    sock = ask(shared);
    const ready = native.pollAsync(sock, false);
    await ready.promise;
    return native.recvFds(sock, 1)[0]!;
  } catch (error) {
    throw fetchFailed(error);
  } finally {
    if (sock >= 0) closeQuietly(sock);
  }
}

// ---- sockets in reduced values (CPython's reduction.py: DupFd, reduce_socket, rebuild_connection) --

/** How a socket travels: inherited by a process being started (its index among the start's
 * handles), as a duplicate descriptor to another thread of this process, or through the sharer
 * (`fd` is filled in by `prepareSocket` once fetched). */
export type SocketState = { handle: number } | { fd: number } | { sharer: SharedFd; fd?: number };

/** The state for `socket` going where `ctx` says. Throws `PicklingError` for a socket that has
 * no descriptor the addon can pass (not open yet, TLS, a pipe or FIFO). */
export function reduceSocket(socket: net.Socket, fd: number | null, ctx: ReduceContext): SocketState {
  if (ctx.target === 'process' && ctx.handles) return { handle: ctx.handles.push(socket) - 1 };
  if (fd === null) {
    throw new PicklingError(
      "Can't send this socket: only an open, plain (not TLS) socket can travel in a message, as its descriptor.",
    );
  }
  return ctx.target === 'thread' ? { fd: dupForThread(fd) } : { sharer: shareFd(fd) };
}

/** The async rebuild's preparation: fetches a shared descriptor without blocking the event loop. */
export async function prepareSocket(state: SocketState): Promise<void> {
  if ('sharer' in state && state.fd === undefined) state.fd = await fetchFd(state.sharer);
}

/** The socket of `state` on this side; `paused`: it reads nothing until asked (a Connection's). */
export function socketFromState(state: SocketState, ctx: RebuildContext, paused: boolean): net.Socket {
  if ('handle' in state) {
    const socket = ctx.handles[state.handle];
    if (!socket) throw new OSError('the socket of a Connection did not arrive with it');
    return socket;
  }
  const fd = 'sharer' in state && state.fd === undefined ? fetchFdSync(state.sharer) : state.fd!;
  try {
    return new net.Socket({ fd, readable: true, writable: true, pauseOnCreate: paused } as net.SocketConstructorOpts);
  } catch (error) {
    closeQuietly(fd);
    throw error;
  }
}
