/**
 * The redis context's one way to Redis: loading ioredis (here only, and only when the context is
 * used), connections, expiry, and errors that say what to do. Every module under src/redis/ talks
 * to Redis through this one (its settings and key names are in settings.ts, Lua scripts in
 * script.ts).
 *
 * Expiry: every key a process creates has a TTL of `keyTtl` seconds that its owner refreshes while
 * it lives (`KeyKeeper`), so a killed process leaves nothing behind for longer than that; a clean
 * close deletes its keys at once.
 */
import { hostname } from 'node:os';
import type { Redis, RedisOptions } from 'ioredis';
import { NotAvailableError, OSError } from '../errors.js';
import { getLogger } from '../logger.js';
import { redactUrl } from './settings.js';

// ---- loading ioredis ---------------------------------------------------------------------------

export type RedisClient = Redis;
type RedisClass = new (url: string, options: RedisOptions) => Redis;

let ioredis: Promise<RedisClass> | null = null;

/** ioredis, imported on first use: a program that never uses the redis context never loads it. */
export function loadIoredis(): Promise<RedisClass> {
  ioredis ??= import('ioredis').then(
    (mod) => (mod.Redis ?? mod.default) as unknown as RedisClass,
    (error: NodeJS.ErrnoException) => {
      ioredis = null; // installed later (a REPL): try again next time
      if (error?.code === 'ERR_MODULE_NOT_FOUND' || error?.code === 'MODULE_NOT_FOUND') {
        throw new NotAvailableError(
          "The redis context needs the 'ioredis' package, which is not installed. Run: npm install ioredis",
        );
      }
      throw error;
    },
  );
  return ioredis;
}

// ---- connections -------------------------------------------------------------------------------

export interface ConnectOptions {
  /** What the connection is for (`pool`, `results`, `worker`): shown by CLIENT LIST. */
  role: string;
  /** A connection that sits in blocking reads (BLMPOP, XREADGROUP BLOCK): no auto-pipelining, as
   * a blocked command would hold back everything queued behind it. */
  blocking?: boolean;
  /** false: each command goes out at once (no batching per tick): faster for a caller that awaits
   * each reply before the next command (the redis objects' steps). */
  autoPipelining?: boolean;
}

const RETRY_MAX_MS = 1000;

/**
 * A ready connection. Commands sent while Redis is unreachable wait and go out when it is back
 * (ioredis's offline queue, retried without limit), so a restart resumes instead of failing; the
 * outage is reported (a warning), never silent. The sockets do not keep the program alive: what
 * waits on Redis holds the event loop itself while it waits.
 */
export async function connect(url: string, options: ConnectOptions): Promise<RedisClient> {
  const Redis = await loadIoredis();
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    enableAutoPipelining: !options.blocking && options.autoPipelining !== false,
    connectTimeout: 5000,
    connectionName: `mp:${options.role}:${hostname()}:${process.pid}`,
    retryStrategy: (attempt) => Math.min(attempt * 50, RETRY_MAX_MS),
  });
  let lastError: Error | null = null;
  let outage = false;
  let everReady = false;
  client.on('error', (error: Error) => {
    lastError = error;
    if (client.status === 'ready' || outage || !everReady) return;
    outage = true;
    const message = `lost the connection to Redis at ${redactUrl(url)} (${error.message}); retrying, calls resume when it is back`;
    getLogger().warning(message);
    process.emitWarning(message, 'RedisConnectionWarning');
  });
  client.on('ready', () => {
    if (outage) getLogger().info('reconnected to Redis at %s', redactUrl(url));
    outage = false;
    everReady = true;
  });
  client.on('connect', () => (client.stream as { unref?: () => void } | undefined)?.unref?.());
  try {
    await whileAlive(client.connect());
  } catch (error) {
    client.disconnect();
    throw connectError(url, lastError ?? (error as Error));
  }
  return client;
}

// The sockets never keep the program alive (an idle pool must not, as a local one does not): who
// waits for Redis holds the program alive while it waits.
let holds = 0;
let holder: NodeJS.Timeout | null = null;

/** Keeps the program alive until the returned function is called. */
export function keepAlive(): () => void {
  if (holds++ === 0) holder = setInterval(() => {}, 1 << 30);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--holds === 0) {
      clearInterval(holder!);
      holder = null;
    }
  };
}

/** `promise`, with the program kept alive until it settles. */
export async function whileAlive<T>(promise: Promise<T>): Promise<T> {
  const release = keepAlive();
  try {
    return await promise;
  } finally {
    release();
  }
}

/** An error that says which Redis could not be reached and what to do about it. */
function connectError(url: string, cause: Error): OSError {
  const code = (cause as NodeJS.ErrnoException).code;
  let advice = "Is redis-server running there? Pass another address with mp.getContext('redis', { url }) or MP_REDIS_URL.";
  if (/WRONGPASS|NOAUTH|invalid password|invalid username/i.test(cause.message)) {
    advice = 'Check the user and password in the URL (redis://user:password@host:port).';
  } else if (/certificate|SSL|TLS|EPROTO/i.test(cause.message)) {
    advice = 'Check the TLS setup: rediss:// connects with TLS and verifies the server certificate.';
  }
  const error = new OSError(`Cannot connect to Redis at ${redactUrl(url)}: ${cause.message}. ${advice}`, code);
  error.cause = cause;
  return error;
}

/** Closes a connection without waiting for replies still due (they are not wanted any more). */
export function disconnect(client: RedisClient | null | undefined): void {
  client?.disconnect(false);
}

// ---- expiry ------------------------------------------------------------------------------------

/**
 * Keeps keys alive while this process lives: sets their TTL to `ttl` seconds now and refreshes it
 * every third of that. A process killed without closing leaves them for at most `ttl` seconds.
 */
export class KeyKeeper {
  private readonly keys = new Set<string>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly client: RedisClient,
    readonly ttl: number,
  ) {
    this.timer = setInterval(() => void this.refresh().catch(() => {}), (ttl * 1000) / 3);
    this.timer.unref();
  }

  /** Starts keeping `keys` (their TTL is set by the next refresh; call `refresh()` to set it now). */
  add(...keys: string[]): void {
    for (const k of keys) this.keys.add(k);
  }

  forget(...keys: string[]): void {
    for (const k of keys) this.keys.delete(k);
  }

  /** Sets the TTL of every kept key (a key that does not exist is left alone). */
  async refresh(): Promise<void> {
    if (this.keys.size === 0) return;
    const ms = Math.ceil(this.ttl * 1000);
    const pipeline = this.client.pipeline();
    for (const k of this.keys) pipeline.pexpire(k, ms);
    await pipeline.exec();
  }

  stop(): void {
    clearInterval(this.timer);
    this.keys.clear();
  }
}
