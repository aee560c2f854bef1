/**
 * The task stream protocol: what a producer (a pool, a Process) and the worker programs write to
 * Redis and read back. Redis does the scheduling; this is a thin layer over its Streams:
 *
 *   mp:pools                  SET of live pool ids, and a pub/sub channel of the same name on which
 *                             a pool announces itself (workers then read its stream)
 *   mp:pool:<id>:tasks        STREAM of tasks, consumer group `workers`: workers pull with
 *                             XREADGROUP, and a task stays in the pending-entries list of the
 *                             worker that took it until its result is written. An entry holds one
 *                             task, or a pack of small tasks submitted together (one XADD, one
 *                             read, one acknowledgement for up to PACK_MAX tasks)
 *   mp:pool:<id>:results      LIST of result batches, which the producer pops (BLMPOP)
 *   mp:pool:<id>:fns          HASH: the pool's functions by id, its initializer, its settings
 *
 * A result and the acknowledgement of its task go in one Lua script (REPLY), so a worker that
 * dies publishes both or neither: delivery is at least once, and the producer keeps the first
 * result of each task. RECLAIM hands the tasks of a worker that stopped answering to another, one
 * task at a time (a pack is split into single tasks first), and fails a task alone once
 * `maxDeliveries` workers died holding it.
 * Every key has a TTL that its producer refreshes, and is deleted when the pool closes.
 */
import { RedisScript, type ScriptClient } from './script.js';
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

// ---- tasks: one stream entry holds one task (field `t`) or a pack of them (field `p`) -------------

/** Modes of a task: `fn(...args)`, a map chunk, a starmap chunk (as poolChannel.ts), or a Process. */
export const PROCESS = 3;

/** [mode u8][seq u32][fnId u32][timeout f64, NaN = none] then the body (dumps of the arguments). */
export const TASK_HEADER = 17;
/** The entry field of a single task. */
export const TASK_FIELD = 't';
/** The entry field of a pack: records [length u32][task], tasks without a timeout, not Processes. */
export const PACK_FIELD = 'p';
/** On a task split out of a pack that was taken over: the deliveries it had already (decimal). */
export const DELIVERIES_FIELD = 'd';
/** At most this many tasks in one pack: the unit a worker takes, and the most a poison task can
 * orphan on its first delivery (they are then split and run one at a time). */
export const PACK_MAX = 64;
/** Packs of one flush are at most 1/PACK_SHARE of its tasks, so that several workers share it. */
export const PACK_SHARE = 16;

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

/** Tasks (each header and body) as one pack: [length u32][task] each. */
export function packTasks(tasks: Uint8Array[]): Buffer {
  let bytes = 0;
  for (const t of tasks) bytes += 4 + t.length;
  const out = Buffer.allocUnsafe(bytes);
  let at = 0;
  for (const t of tasks) {
    out.writeUInt32BE(t.length, at);
    out.set(t, at + 4);
    at += 4 + t.length;
  }
  return out;
}

/** The tasks of a pack (views into it). */
export function unpackTasks(pack: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < pack.length; ) {
    const length = pack.readUInt32BE(at);
    out.push(pack.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  return out;
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

  /** Records already encoded (resultRecord, or a pack's results from a local process). */
  addRecords(records: Uint8Array, count: number): void {
    this.parts.push(records as Buffer);
    this.bytes += records.length;
    this.count += count;
  }

  encode(): Buffer {
    return Buffer.concat(this.parts, this.bytes);
  }
}

/** A result record: [seq u32][status u8][length u32][body]. */
export const RECORD_HEADER = 9;

/** A result record of `body`. */
export function resultRecord(seq: number, status: number, body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(RECORD_HEADER + body.length);
  out.set(body, RECORD_HEADER);
  return writeRecordHeader(out, seq, status);
}

/** Writes the header into the first RECORD_HEADER bytes of `record` (the body's headroom). */
export function writeRecordHeader(record: Buffer, seq: number, status: number): Buffer {
  record.writeUInt32BE(seq, 0);
  record.writeUInt8(status, 4);
  record.writeUInt32BE(record.length - RECORD_HEADER, 5);
  return record;
}

/** The records of `bytes` from `at` on. */
function readRecords(bytes: Buffer, at = 0): ResultRecord[] {
  const records: ResultRecord[] = [];
  while (at < bytes.length) {
    const seq = bytes.readUInt32BE(at);
    const status = bytes.readUInt8(at + 4);
    const length = bytes.readUInt32BE(at + 5);
    records.push({ seq, status, body: bytes.subarray(at + 9, at + 9 + length) });
    at += 9 + length;
  }
  return records;
}

export function readResults(batch: Buffer): { consumer: string; records: ResultRecord[] } {
  const nameLength = batch.readUInt8(0);
  return { consumer: batch.toString('utf8', 1, 1 + nameLength), records: readRecords(batch, 1 + nameLength) };
}

/** At most this many task ids per REPLY (Lua's unpack has a limit). */
export const MAX_REPLY_IDS = 1000;

/**
 * Writes a batch of results (ResultBatch.encode()) and acknowledges the entries `ids` (none:
 * results only, such as a Process's news), in one REPLY when the ids fit, else the results with the
 * first ids and the rest of the acknowledgements after them.
 */
export async function writeResults(client: ScriptClient, keys: PoolKeys, batch: Buffer, ids: string[]): Promise<void> {
  const scriptKeys = [keys.tasks, keys.results];
  await REPLY.run(client, scriptKeys, [GROUP, batch, ...ids.slice(0, MAX_REPLY_IDS)]);
  for (let i = MAX_REPLY_IDS; i < ids.length; i += MAX_REPLY_IDS) {
    await REPLY.run(client, scriptKeys, [GROUP, '', ...ids.slice(i, i + MAX_REPLY_IDS)]);
  }
}

// ---- scripts ------------------------------------------------------------------------------------

// The results list is created by RPUSH: it takes the TTL of the tasks stream, so that it expires
// with the pool when the producer was killed.
const keepTtl = `
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end`;

/**
 * A worker's results and the acknowledgement of their tasks, atomically. Nothing is written when
 * the pool is gone (closed, terminated, expired): its results would only be left behind.
 * KEYS: tasks, results. ARGV: group, result batch (empty: acknowledgements only), task ids...
 */
const REPLY = new RedisScript(
  'reply',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] ~= '' then
  redis.call('RPUSH', KEYS[2], ARGV[2])${keepTtl}
end
if #ARGV > 2 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3))
  redis.call('XDEL', KEYS[1], unpack(ARGV, 3))
end
return 1`,
);

/**
 * Takes over one task that has been pending longer than `minIdle` ms with a worker that stopped
 * refreshing its claim (it died, or hangs). A task already delivered `maxDeliveries` times fails
 * with LOST instead (a poison task). A pack is not taken over whole: its tasks go back to the
 * stream one by one, with the deliveries they had (DELIVERIES_FIELD); a worker that reads such a
 * task hands it back to this script (BOUNCE), so that each runs alone. Returns [id, task,
 * deliveries] or nil. KEYS: tasks, results. ARGV: group, consumer, minIdle ms, maxDeliveries.
 */
export const RECLAIM = new RedisScript(
  'reclaim',
  `
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], '-', '+', 16)
for _, p in ipairs(pending) do
  local id, owner, deliveries = p[1], p[2], p[4]
  local entry = redis.call('XRANGE', KEYS[1], id, id)
  local fields = entry[1] and entry[1][2]
  if not fields then
    redis.call('XACK', KEYS[1], ARGV[1], id)
  else
    local kind, task = fields[1], fields[2]
    if fields[3] == '${DELIVERIES_FIELD}' then deliveries = deliveries + tonumber(fields[4]) end
    if kind == '${PACK_FIELD}' then
      local at = 1
      while at <= #task do
        local length = struct.unpack('>I4', task, at)
        redis.call('XADD', KEYS[1], '*', '${TASK_FIELD}', string.sub(task, at + 4, at + 3 + length), '${DELIVERIES_FIELD}', deliveries)
        at = at + 4 + length
      end
      redis.call('XACK', KEYS[1], ARGV[1], id)
      redis.call('XDEL', KEYS[1], id)
    elseif deliveries >= tonumber(ARGV[4]) then
      local seq = struct.unpack('>I4', task, 2)
      local info = deliveries .. ' ' .. owner
      redis.call('RPUSH', KEYS[2], struct.pack('>B', 0) .. struct.pack('>I4BI4', seq, ${LOST}, #info) .. info)${keepTtl}
      redis.call('XACK', KEYS[1], ARGV[1], id)
      redis.call('XDEL', KEYS[1], id)
    else
      local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], id)
      if #claimed > 0 and claimed[1] then return {id, task, deliveries + 1} end
    end
  end
end
return false`,
);

/**
 * Hands back tasks split out of a taken-over pack that a worker read with its other tasks: they
 * look idle at once (RECLAIM takes them, one at a time), and only their earlier deliveries count.
 * KEYS: tasks. ARGV: group, consumer, idle ms, task ids...
 */
export const BOUNCE = new RedisScript(
  'bounce',
  `
for i = 4, #ARGV do
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'RETRYCOUNT', 0, 'JUSTID')
end
return #ARGV - 3`,
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
 * Adds entries to a pool's stream and returns their ids; nil (nothing added) when the stream is
 * gone (Redis restarted without it: the producer opens it again and resends).
 * KEYS: tasks. ARGV: field, value (TASK_FIELD and a task, or PACK_FIELD and a pack) for each entry.
 */
export const ADD_TASKS = new RedisScript(
  'add_tasks',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local ids = {}
for i = 1, #ARGV, 2 do ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', ARGV[i], ARGV[i + 1]) end
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
