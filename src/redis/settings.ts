/**
 * The redis context's settings (URL, AUTH and TLS from the URL, times) and key names: what the
 * context needs before it talks to Redis, apart from client.ts so that the package's public types
 * never reach ioredis's (an optional peer dependency a program without the redis context lacks).
 *
 * Keys: everything lives under `mp:` (`key('pool', id, 'tasks')` = `mp:pool:<id>:tasks`), so that
 * `redis-cli --scan --pattern 'mp:*'` shows all the library holds.
 */
import { hostname } from 'node:os';
import { ValueError } from '../errors.js';
import { randomHex } from '../util.js';

/** The options of `mp.getContext('redis', options)`. Times are in seconds, as everywhere. */
export interface RedisContextOptions {
  /** `redis://[user:password@]host[:port][/db]` or `rediss://...` (TLS). Default: `MP_REDIS_URL`. */
  url?: string | null;
  /** How long a task may sit with a worker that shows no sign of life before another worker takes
   * it over (Redis's XAUTOCLAIM min-idle-time). Workers refresh their claim on long tasks. */
  claimIdle?: number;
  /** How many times a task may be handed to a worker that then died, before it fails with
   * `WorkerLostError` (a poison task fails alone instead of taking down worker after worker). */
  maxDeliveries?: number;
  /** How long the keys of a process that died without closing stay in Redis. */
  keyTtl?: number;
  /** How long a Lock or RLock stays held by a holder that stopped renewing it (killed, cut off
   * from Redis) before it expires and another can take it (docs/distributed.md). */
  lease?: number;
}

/** The settings of one redis context, checked and with their defaults. */
export interface RedisSettings {
  readonly url: string;
  readonly claimIdle: number;
  readonly maxDeliveries: number;
  readonly keyTtl: number;
  readonly lease: number;
}

export const DEFAULT_CLAIM_IDLE = 5;
const DEFAULT_MAX_DELIVERIES = 3;
const DEFAULT_KEY_TTL = 60;
const DEFAULT_LEASE = 10;

/** The options checked, with the URL from `MP_REDIS_URL` when none is given. */
export function redisSettings(options: RedisContextOptions = {}): RedisSettings {
  if (options === null || typeof options !== 'object') {
    throw new TypeError("getContext('redis', options) takes an options object: { url, claimIdle, maxDeliveries }");
  }
  const url = options.url ?? process.env.MP_REDIS_URL;
  if (!url) {
    throw new ValueError(
      "The redis context needs the address of a Redis server: mp.getContext('redis', { url: 'redis://host:6379' }), " +
        'or set MP_REDIS_URL.',
    );
  }
  checkUrl(url);
  return {
    url,
    claimIdle: positive('claimIdle', options.claimIdle, DEFAULT_CLAIM_IDLE),
    maxDeliveries: positiveInteger('maxDeliveries', options.maxDeliveries, DEFAULT_MAX_DELIVERIES),
    keyTtl: positive('keyTtl', options.keyTtl, DEFAULT_KEY_TTL),
    lease: positive('lease', options.lease, DEFAULT_LEASE),
  };
}

function checkUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ValueError(`Not a Redis URL: '${url}'. Expected redis://[user:password@]host[:port][/db] or rediss://... (TLS).`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new ValueError(`Not a Redis URL: '${redactUrl(url)}' (its scheme must be redis: or rediss:).`);
  }
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) {
    throw new ValueError(`${name} must be a positive number of seconds, not ${String(value)}`);
  }
  return value;
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) throw new ValueError(`${name} must be an integer >= 1, not ${String(value)}`);
  return value;
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.href;
  } catch {
    return '<invalid URL>';
  }
}

// ---- key names ---------------------------------------------------------------------------------

const KEY_PREFIX = 'mp:';

/** `key('pool', id, 'tasks')` -> `mp:pool:<id>:tasks`. */
export function key(...parts: string[]): string {
  return KEY_PREFIX + parts.join(':');
}

/** A fresh id for the keys of one object (a pool, a queue): 16 hex digits. */
export function newId(): string {
  return randomHex(8);
}

/** Who this process is, in Redis (consumer names, lock owners): host, pid and a random part. */
export function processTag(): string {
  return (tag ??= `${hostname()}:${process.pid}:${randomHex(3)}`);
}
let tag: string | null = null;
