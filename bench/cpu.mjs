// CPU time of a set of processes and what Redis did, for the bench scripts: on a machine shared
// with other work, wall time says little, CPU time per task (every process involved) and Redis
// commands per task say where the cost is.
import { readFileSync, readdirSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** utime + stime of one process in ms (live processes only; 0 once it is gone). */
function processCpuMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

/** The pid and every descendant of it (children of children ...). */
function tree(pid) {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let tasks = [];
    try {
      tasks = readdirSync(`/proc/${out[i]}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        const children = readFileSync(`/proc/${out[i]}/task/${t}/children`, 'utf8').trim();
        if (children) out.push(...children.split(' ').map(Number));
      } catch {}
    }
  }
  return out;
}

/** CPU ms of each process of the trees rooted at `pids`, by pid. */
function treeCpu(pids) {
  const out = new Map();
  for (const root of pids) for (const pid of tree(root)) out.set(pid, processCpuMs(pid));
  return out;
}

/** The children of this process (its process tree's roots), less `except`. */
export function childPids(except = []) {
  return tree(process.pid).filter((pid) => pid !== process.pid && !except.includes(pid) && isChildOfSelf(pid));
}

function isChildOfSelf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid;
  } catch {
    return false;
  }
}

/** Redis's own CPU (INFO cpu) in ms, and its command counts (INFO commandstats). */
async function redisStats(client) {
  if (!client) return { cpuMs: 0, calls: {} };
  const cpu = await client.info('cpu');
  const field = (name) => Number(new RegExp(`${name}:([\\d.]+)`).exec(cpu)?.[1] ?? 0);
  const stats = await client.info('commandstats');
  const calls = {};
  for (const [, name, n] of stats.matchAll(/cmdstat_([^:]+):calls=(\d+)/g)) calls[name] = Number(n);
  return { cpuMs: (field('used_cpu_user') + field('used_cpu_sys')) * 1000, calls };
}

// Redis counts the commands a script or a MULTI runs under their own names as well: the commands
// clients sent are the total less those. The library sends these only from scripts.
const SCRIPT_ONLY = ['xadd', 'xack', 'xdel', 'rpush', 'pttl', 'pexpire', 'exists', 'xclaim', 'xpending', 'xrange'];

/**
 * Measures `run()`: CPU of this process (the producer), of the process trees rooted at `roots()`
 * (worker programs, and their local processes below them), and of Redis (through `client`, if
 * any); and the Redis commands run meanwhile. Per `units` (tasks, items or round trips), in µs.
 * `scriptOnly`: the commands that came only from scripts (to count those clients sent).
 */
export async function accounted(units, client, roots, run, { scriptOnly = SCRIPT_ONLY } = {}) {
  const pids = roots();
  const before = { self: process.cpuUsage(), trees: treeCpu(pids), redis: await redisStats(client) };
  const value = await run();
  const self = process.cpuUsage(before.self);
  const after = treeCpu(pids);
  const redis = await redisStats(client);
  let rootMs = 0;
  let belowMs = 0;
  for (const [pid, ms] of after) {
    const delta = ms - (before.trees.get(pid) ?? 0);
    if (pids.includes(pid)) rootMs += delta;
    else belowMs += delta;
  }
  const calls = {};
  for (const [name, n] of Object.entries(redis.calls)) {
    const delta = n - (before.redis.calls[name] ?? 0);
    if (delta > 0 && name !== 'info') calls[name] = delta;
  }
  const us = (ms) => (ms * 1000) / units;
  const total = Object.values(calls).reduce((a, b) => a + b, 0);
  const inner = scriptOnly.reduce((n, name) => n + (calls[name] ?? 0), 0);
  const wrappers = (calls.evalsha ?? 0) + (calls.eval ?? 0) + (calls.multi ?? 0) + (calls.exec ?? 0);
  return {
    value,
    cpu: { producer: us((self.user + self.system) / 1000), worker: us(rootMs), pool: us(belowMs), redis: us(redis.cpuMs - before.redis.cpuMs) },
    calls,
    /** Commands clients sent (a script counts once), and the commands Redis ran (inside scripts too). */
    commandsPerUnit: { sent: (total - inner) / units, run: (total - wrappers) / units },
  };
}

export const totalCpu = (cpu) => cpu.producer + cpu.worker + cpu.pool + cpu.redis;

/** `total (producer a, workers b + their processes c, redis d)`, in µs. */
export function formatCpu(cpu) {
  const total = totalCpu(cpu);
  const r = (x) => x.toFixed(total < 10 ? 2 : 0);
  return `${r(total)} (producer ${r(cpu.producer)}, workers ${r(cpu.worker)} + ${r(cpu.pool)}, redis ${r(cpu.redis)})`;
}
