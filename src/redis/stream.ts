/**
 * The task stream protocol: what a producer (a pool, a Process) and the worker programs write to
 * Redis and read back. Redis does the scheduling; this is a thin layer over its Streams:
 *
 *   mp:pools                  SET of live pool ids, and a pub/sub channel of the same name on which
 *                             a pool announces itself (workers then read its stream)
 *   mp:pool:<id>:tasks        STREAM of tasks, consumer group `workers`: workers pull with
 *                             XREADGROUP, and a task stays in the pending-entries list of the
 *                             worker that took it until its result is written
 *   mp:pool:<id>:results      LIST of result batches, which the producer pops (BLMPOP)
 *   mp:pool:<id>:fns          HASH: the pool's functions by id, its initializer, its settings
 *
 * A result and the acknowledgement of its task go in one Lua script (REPLY), so a worker that
 * dies publishes both or neither: delivery is at least once, and the producer keeps the first
 * result of each task. RECLAIM hands the tasks of a worker that stopped answering to another, one
 * task at a time, and fails a task alone once `maxDeliveries` workers died holding it.
 * Every key has a TTL that its producer refreshes, and is deleted when the pool closes.
 */
import { RedisScript } from './script.js';
import { key } from './settings.js';

export const GROUP = 'workers';
/** The registry of live pools (a SET) and the channel on which new pools announce themselves. */
export const POOLS = key('pools');

export interface PoolKeys {
  id: string;
  tasks: string;
  results: string;
  fns: string;
}

export function poolKeys(id: string): PoolKeys {
  return { id, tasks: key('pool', id, 'tasks'), results: key('pool', id, 'results'), fns: key('pool', id, 'fns') };
}

/** The channel on which a worker takes orders for the Processes it runs (`<pool> <seq> terminate`). */
export const workerChannel = (consumer: string): string => key('worker', consumer);

/** Fields of the `fns` hash besides the functions (`f<id>`). */
export const SETTINGS_FIELD = 'settings';
export const INIT_FIELD = 'init';
export const INITARGS_FIELD = 'initargs';
export const fnField = (fnId: number): string => `f${fnId}`;

/** What workers need to know of a pool's context. */
export interface PoolSettings {
  claimIdle: number;
  maxDeliveries: number;
}

// ---- tasks: one stream entry each, one field `t` ------------------------------------------------

/** Modes of a task: `fn(...args)`, a map chunk, a starmap chunk (as poolChannel.ts), or a Process. */
export const PROCESS = 3;

/** [mode u8][seq u32][fnId u32][timeout f64, NaN = none] then the body (dumps of the arguments). */
export const TASK_HEADER = 17;
const TASK_FIELD = 't';

export interface TaskHeader {
  mode: number;
  seq: number;
  fnId: number;
  /** Seconds, or null. */
  timeout: number | null;
}

/** Writes the header into the first TASK_HEADER bytes of `entry` (the body's headroom). */
export function writeTaskHeader(entry: Buffer, header: TaskHeader): Buffer {
  entry.writeUInt8(header.mode, 0);
  entry.writeUInt32BE(header.seq, 1);
  entry.writeUInt32BE(header.fnId, 5);
  entry.writeDoubleBE(header.timeout ?? NaN, 9);
  return entry;
}

export function readTask(entry: Buffer): TaskHeader & { body: Buffer } {
  const timeout = entry.readDoubleBE(9);
  return {
    mode: entry.readUInt8(0),
    seq: entry.readUInt32BE(1),
    fnId: entry.readUInt32BE(5),
    timeout: Number.isNaN(timeout) ? null : timeout,
    body: entry.subarray(TASK_HEADER),
  };
}

// ---- results: batches in a list -----------------------------------------------------------------

/** How a task ended. */
export const OK = 0;
/** The task threw (or its result could not be sent): the body is the error. */
export const FAILED = 1;
/** Its workers died `maxDeliveries` times: the body is `<deliveries> <last consumer>` (RECLAIM). */
export const LOST = 2;
/** A Process's target ran on a worker: the body is `{ exitcode }` (JSON). */
export const EXITED = 3;
/** A Process started on a worker: the body is `{ pid }` (JSON); its `terminate()` is sent there. */
export const STARTED = 4;

export interface ResultRecord {
  seq: number;
  status: number;
  body: Buffer;
}

/** [consumer length u8][consumer] then records [seq u32][status u8][length u32][body]. */
export class ResultBatch {
  private readonly parts: Buffer[];
  private bytes: number;
  count = 0;

  constructor(consumer: string) {
    const name = Buffer.from(consumer);
    const head = Buffer.allocUnsafe(1);
    head.writeUInt8(name.length, 0);
    this.parts = [head, name];
    this.bytes = 1 + name.length;
  }

  add(seq: number, status: number, body: Uint8Array): void {
    const head = Buffer.allocUnsafe(9);
    head.writeUInt32BE(seq, 0);
    head.writeUInt8(status, 4);
    head.writeUInt32BE(body.length, 5);
    this.parts.push(head, body as Buffer);
    this.bytes += 9 + body.length;
    this.count++;
  }

  encode(): Buffer {
    return Buffer.concat(this.parts, this.bytes);
  }
}

export function readResults(batch: Buffer): { consumer: string; records: ResultRecord[] } {
  const nameLength = batch.readUInt8(0);
  const consumer = batch.toString('utf8', 1, 1 + nameLength);
  const records: ResultRecord[] = [];
  for (let at = 1 + nameLength; at < batch.length; ) {
    const seq = batch.readUInt32BE(at);
    const status = batch.readUInt8(at + 4);
    const length = batch.readUInt32BE(at + 5);
    records.push({ seq, status, body: batch.subarray(at + 9, at + 9 + length) });
    at += 9 + length;
  }
  return { consumer, records };
}

/** At most this many task ids per REPLY (Lua's unpack has a limit). */
export const MAX_REPLY_IDS = 1000;

// ---- scripts ------------------------------------------------------------------------------------

// The results list is created by RPUSH: it takes the TTL of the tasks stream, so that it expires
// with the pool when the producer was killed.
const keepTtl = `
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end`;

/**
 * A worker's results and the acknowledgement of their tasks, atomically. Nothing is written when
 * the pool is gone (closed, terminated, expired): its results would only be left behind.
 * KEYS: tasks, results. ARGV: group, result batch, task ids...
 */
export const REPLY = new RedisScript(
  'reply',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])${keepTtl}
if #ARGV > 2 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3))
  redis.call('XDEL', KEYS[1], unpack(ARGV, 3))
end
return 1`,
);

/**
 * Takes over one task that has been pending longer than `minIdle` ms with a worker that stopped
 * refreshing its claim (it died, or hangs). A task already delivered `maxDeliveries` times fails
 * with LOST instead (a poison task). Returns [id, entry, deliveries] or nil.
 * KEYS: tasks, results. ARGV: group, consumer, minIdle ms, maxDeliveries.
 */
export const RECLAIM = new RedisScript(
  'reclaim',
  `
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], '-', '+', 16)
for _, p in ipairs(pending) do
  local id, owner, deliveries = p[1], p[2], p[4]
  if deliveries >= tonumber(ARGV[4]) then
    local entry = redis.call('XRANGE', KEYS[1], id, id)
    if #entry > 0 then
      local seq = struct.unpack('>I4', entry[1][2][2], 2)
      local info = deliveries .. ' ' .. owner
      redis.call('RPUSH', KEYS[2], struct.pack('>B', 0) .. struct.pack('>I4BI4', seq, ${LOST}, #info) .. info)${keepTtl}
    end
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
  else
    local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], id)
    if #claimed > 0 and claimed[1] then return {claimed[1][1], claimed[1][2][2], deliveries + 1} end
  end
end
return false`,
);

/**
 * Refreshes a worker's claim on the tasks it is running (their idle time goes back to 0, their
 * delivery count stays), so that long tasks are not taken over. A task another worker has taken
 * over meanwhile is left to it. KEYS: tasks. ARGV: group, consumer, task ids...
 */
export const REFRESH_CLAIMS = new RedisScript(
  'refresh_claims',
  `
local args = {KEYS[1], ARGV[1], ARGV[2], 0}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p > 0 and p[1][2] == ARGV[2] then args[#args + 1] = ARGV[i] end
end
if #args == 4 then return 0 end
args[#args + 1] = 'JUSTID'
redis.call('XCLAIM', unpack(args))
return #args - 5`,
);

/**
 * Adds tasks to a pool's stream, one entry each, and returns their ids; nil (nothing added) when
 * the stream is gone (Redis restarted without it: the producer opens it again and resends).
 * KEYS: tasks. ARGV: entries...
 */
export const ADD_TASKS = new RedisScript(
  'add_tasks',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local ids = {}
for i = 1, #ARGV do ids[i] = redis.call('XADD', KEYS[1], '*', '${TASK_FIELD}', ARGV[i]) end
return ids`,
);

/**
 * Starts (or, after Redis lost it, restarts) a pool: its stream and group, its settings, its
 * registration. KEYS: tasks, fns, pools. ARGV: pool id, settings JSON, ttl ms.
 */
export const OPEN_POOL = new RedisScript(
  'open_pool',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[1], '${GROUP}', '0', 'MKSTREAM')
end
redis.call('HSET', KEYS[2], '${SETTINGS_FIELD}', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return 1`,
);

/** Deletes a pool's keys and registration. KEYS: tasks, results, fns, pools. ARGV: pool id. */
export const CLOSE_POOL = new RedisScript(
  'close_pool',
  `
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('SREM', KEYS[4], ARGV[1])
return 1`,
);
