/**
 * A process's sessions with manager servers (the client half of CPython's `BaseProxy._connect`
 * and `dispatch`): each process (thread) keeps a small pool of authenticated connections per
 * manager address, each in Python's `accept_connection` session mode. A call takes an idle
 * session (or opens one), so calls that wait on the server (an acquire, a blocking get) never hold
 * up others, and a call aborted by its signal closes its session, which aborts the call on the
 * server. Python keeps one connection per thread; the pool is that, for async code. A session on
 * this machine carries its calls over a shared-memory lane when the server takes the offer
 * (lane.ts).
 */
import { threadId } from 'node:worker_threads';
import { Client, type Address, type Connection } from '../connection.js';
import { RemoteError, ValueError, withRemoteTraceback } from '../errors.js';
import { currentProcess } from '../process.js';
import type { Reply, Request } from './server.js';
import { Lane } from './lane.js';
import { tryLoadNative } from '../native.js';
import { debug } from '../logger.js';

const MAX_IDLE = 8;

/** This process's (thread's) name on the server: the owner of the RLocks it acquires. */
function clientName(): string {
  return `${currentProcess().name}|${process.pid}|${threadId}`;
}

function addressKey(address: Address, authkey: Uint8Array): string {
  return `${JSON.stringify(address)}|${Buffer.from(authkey).toString('hex')}`;
}

/** One authenticated session with the server: its socket, and its shared-memory lane if the
 * server took the offer (requests and replies then travel there; see lane.ts). */
interface Session {
  readonly conn: Connection;
  readonly lane: Lane | null;
}

function closeSession(session: Session): void {
  session.lane?.close();
  session.conn.close();
}

function isDead(session: Session): boolean {
  return session.conn.closed || (session.lane?.closed ?? false);
}

/** Whether sessions on `address` may offer a lane: a Unix socket (so the server is on this
 * machine), the addon at hand, and not turned off with MP_MANAGER_LANE=0. */
function laneWanted(address: Address): boolean {
  return typeof address === 'string' && process.env.MP_MANAGER_LANE !== '0' && tryLoadNative() !== null;
}

/** Connections to one manager server. */
export class ManagerConnections {
  private readonly idle: Session[] = [];
  /** Set when the manager has shut down: proxies then skip their decref. */
  closed = false;

  constructor(
    readonly address: Address,
    readonly authkey: Uint8Array,
  ) {}

  private async open(): Promise<Session> {
    const conn = await Client(this.address, { authkey: this.authkey });
    let offer: ReturnType<typeof Lane.offer> | null = null;
    try {
      if (laneWanted(this.address)) offer = Lane.offer();
    } catch (error) {
      debug('manager connection: no shared-memory lane: %s', (error as Error).message);
    }
    let accepted = false;
    try {
      const args: unknown[] = offer ? [clientName(), { lane: offer.segment }] : [clientName()];
      conn.send([null, 'accept_connection', args, null] satisfies Request);
      const [kind, result] = (await conn.recv()) as Reply;
      if (kind !== '#RETURN') throw convertToError(kind, result);
      accepted = offer !== null && (result as { lane?: unknown } | null)?.lane === true;
    } catch (error) {
      conn.close();
      throw error;
    } finally {
      // A taken offer's name is gone already (the server removes it once mapped).
      if (offer && accepted) Lane.taken(offer.segment);
      else if (offer) Lane.withdraw(offer.segment);
    }
    if (!accepted) return { conn, lane: null };
    const lane = Lane.forClient(offer!.buffer);
    // The server's hang-up (shutdown, death) ends the lane: a pending call fails at once.
    conn._watchEnd((error) => lane.close(error));
    return { conn, lane };
  }

  /** Sends one request and waits for its reply. */
  async call(request: Request, signal?: AbortSignal): Promise<Reply> {
    signal?.throwIfAborted();
    let session = this.idle.pop();
    while (session && isDead(session)) {
      closeSession(session);
      session = this.idle.pop();
    }
    session ??= await this.open();
    try {
      (session.lane ?? session.conn).send(request);
    } catch (error) {
      // Nothing was sent (the arguments cannot be serialised): the session is still good.
      this.release(session);
      throw error;
    }
    let reply: Reply;
    try {
      reply = (await (session.lane ? session.lane.recv(signal) : session.conn.recv({ signal }))) as Reply;
    } catch (error) {
      closeSession(session);
      throw error;
    }
    this.release(session);
    return reply;
  }

  private release(session: Session): void {
    if (this.closed || this.idle.length >= MAX_IDLE || isDead(session)) closeSession(session);
    else this.idle.push(session);
  }

  /** A management call (`create`, `incref`, `shutdown`, ...). */
  async dispatch(name: string, args: unknown[] = [], signal?: AbortSignal): Promise<unknown> {
    const [kind, result] = await this.call([null, name, args, null], signal);
    if (kind === '#RETURN') return result;
    throw convertToError(kind, result);
  }

  /** @internal The idle sessions, by how they carry calls (for tests). */
  idleSessions(): { lanes: number; sockets: number } {
    const lanes = this.idle.filter((s) => s.lane !== null).length;
    return { lanes, sockets: this.idle.length - lanes };
  }

  /** Closes the idle connections (a manager's shutdown). */
  close(): void {
    this.closed = true;
    for (const session of this.idle.splice(0)) closeSession(session);
  }
}

const pools = new Map<string, ManagerConnections>();

/** The connections of this process (thread) to the manager at `address`. */
export function connectionsTo(address: Address, authkey: Uint8Array): ManagerConnections {
  const key = addressKey(address, authkey);
  let pool = pools.get(key);
  if (!pool || pool.closed) {
    pool = new ManagerConnections(address, authkey);
    pools.set(key, pool);
  }
  return pool;
}

/** Forgets the connections to a manager that has shut down. */
export function forgetConnections(address: Address, authkey: Uint8Array): void {
  const key = addressKey(address, authkey);
  pools.get(key)?.close();
  pools.delete(key);
}

/** Python's `convert_to_error(kind, result)`. */
export function convertToError(kind: string, result: unknown): Error {
  if (kind === '#ERROR') {
    if (result instanceof Error) return withRemoteTraceback(result);
    return new RemoteError(String(result));
  }
  if (kind === '#TRACEBACK') return remoteError(String(result));
  if (kind === '#UNSERIALIZABLE') return remoteError(`Unserializable message: ${String(result)}`);
  return new ValueError(`Unrecognized message type ${JSON.stringify(kind)}`);
}

/** Python's `RemoteError`: its text is the server's traceback between two rules. */
function remoteError(traceback: string): RemoteError {
  const rule = '-'.repeat(75);
  return Object.assign(new RemoteError(`\n${rule}\n${traceback}${rule}`), { traceback });
}
