// What waiting costs: CPU time used by idle pool workers, and by a child blocked in Queue.get,
// Event.wait and on a manager, over a window of wall time (BENCH_IDLE_S, 10 s), side by side with
// piscina's idle workers and Python's (bench/idle.py). Each case is warmed up first (a round
// trip), and the window starts 2 s later, so that only waiting is inside it.
//
// CPU time is read from /proc/<pid>/task/<tid>/schedstat: nanoseconds on a CPU, per thread, so it
// does not depend on how busy the machine is. The waiting side is counted on its own: a worker
// process or child process with all its threads, or a worker thread's own OS thread (which it
// reports from /proc/thread-self); the rest of this process (the pool's side, the caller) is a
// column of its own.
//
// Run: npm run build && node bench/idle.mjs
// Env: BENCH_IDLE_S (window, 10), BENCH_IDLE_SETTLE_S (10), BENCH_NO_PYTHON=1.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as mp from 'multiprocessing-ts';
import { printTable } from './stats.mjs';

const WINDOW_MS = Number(process.env.BENCH_IDLE_S ?? 10) * 1000;
// How long after the warm-up the window starts. A Node.js process does start-up work once, seconds
// after it starts: V8's memory reducer runs one mark-compact about 8 s after start (20-30 ms of CPU
// per process here, `--trace-gc`: "Mark-Compact (reduce)"; nothing after it in 30 s), and a loaded
// machine scavenges the start-up garbage late. The window measures the steady state after that.
const SETTLE_MS = Number(process.env.BENCH_IDLE_SETTLE_S ?? 10) * 1000;
const WORKERS = 2;

/** Nanoseconds a thread ("pid/tid") or every thread of a process ("pid") has spent on a CPU. */
function cpuNs(what) {
  const [pid, tid] = String(what).split('/');
  const read = (t) => {
    try {
      return Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      return 0; // gone meanwhile
    }
  };
  if (tid) return read(tid);
  try {
    return readdirSync(`/proc/${pid}/task`).reduce((sum, t) => sum + read(t), 0);
  } catch {
    return 0;
  }
}

/**
 * CPU ms over the window, after SETTLE_MS: of the waiting side (`waiters`: pids of processes, or
 * "pid/tid" of threads in this process), per waiter, and of the rest of this process. A forkserver
 * context's warm processes in reserve are not counted (refilling the reserve is start-up work).
 */
async function idleCpuMs(waiters) {
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  const mine = waiters.filter((w) => String(w).startsWith(`${process.pid}/`));
  const before = waiters.map(cpuNs);
  const selfBefore = cpuNs(process.pid);
  await new Promise((resolve) => setTimeout(resolve, WINDOW_MS));
  const selfAfter = cpuNs(process.pid);
  const after = waiters.map(cpuNs);
  const used = after.map((ns, i) => Math.max(0, ns - before[i]) / 1e6);
  const waiting = used.reduce((a, b) => a + b, 0);
  const ownThreads = used.filter((_, i) => mine.includes(waiters[i])).reduce((a, b) => a + b, 0);
  return { perWaiter: waiting / waiters.length, rest: (selfAfter - selfBefore) / 1e6 - ownThreads };
}

// ---- tasks (module top level, so that children find them) -----------------------------------

/** "pid/tid" of the thread that runs it. */
const here = () => readlinkSync('/proc/thread-self').replace('/task/', '/');
export const where = mp.task(() => here());
/** Reports where it runs, then answers gets until it gets null. */
export const getter = mp.task(async (q, out) => {
  await out.put(here());
  for (let item = await q.get(); item !== null; item = await q.get()) await out.put(item);
});
/** Reports where it runs through `out`, then waits on `go`. */
export const eventWaiter = mp.task(async (go, out) => {
  await out.put(here());
  await go.wait();
});

/** The waiter to count: a child process as a whole, a worker thread on its own. */
const waiterOf = (location) => (location.startsWith(`${process.pid}/`) ? location : location.split('/')[0]);

// ---- cases --------------------------------------------------------------------------------------

/** Runs `where` on every worker (two at once land on two workers; repeated until both are seen,
 * for up to 30 s: our pools give tasks only to workers that have started, and a process worker
 * may start a hundred milliseconds after its sibling). */
async function workerLocations(run) {
  const seen = new Set();
  for (const deadline = Date.now() + 30_000; seen.size < WORKERS && Date.now() < deadline;) {
    for (const w of await Promise.all([run(), run()])) seen.add(w);
    if (seen.size < WORKERS) await new Promise((resolve) => setTimeout(resolve, 10));
  }
  if (seen.size < WORKERS) throw new Error(`saw ${seen.size} of ${WORKERS} workers`);
  return [...seen].map(waiterOf);
}

async function oursPool(method) {
  const pool = new mp.Pool(WORKERS, { context: mp.getContext(method) });
  try {
    return await idleCpuMs(await workerLocations(() => pool.apply(where)));
  } finally {
    pool.close();
    await pool.join();
  }
}

async function piscinaPool() {
  const { Piscina } = await import('piscina');
  const filename = pathToFileURL(fileURLToPath(new URL('./pool-peers/where-worker.mjs', import.meta.url))).href;
  const pool = new Piscina({ filename, minThreads: WORKERS, maxThreads: WORKERS });
  try {
    return await idleCpuMs(await workerLocations(() => pool.run(null, { name: 'where' })));
  } finally {
    await pool.destroy();
  }
}

/** Starts `target(...args, out)` in a child, which reports where it runs through `out`; `ready()`
 * brings it to where it waits, `release()` ends the wait; the child's CPU in between is measured. */
async function childCase(method, target, args, ready, release) {
  const ctx = mp.getContext(method);
  const out = ctx.Queue();
  const p = new ctx.Process({ target, args: [...args, out] });
  p.start();
  const location = await out.get();
  await ready(out);
  const ms = await idleCpuMs([waiterOf(location)]);
  await release();
  await p.join();
  return ms;
}

/** A child blocked in Queue.get (after one item went through). */
function queueGet(method) {
  const q = mp.getContext(method).Queue();
  return childCase(method, getter, [q], async (out) => {
    await q.put(1);
    await out.get();
  }, () => q.put(null));
}

/** A child blocked in Event.wait. */
function eventWait(method) {
  const go = mp.getContext(method).Event();
  return childCase(method, eventWaiter, [go], async () => {}, () => go.set());
}

/** A manager's server with one proxy held by this process, nobody calling. */
async function manager(method) {
  const m = await mp.Manager({ ctx: mp.getContext(method) });
  try {
    const d = await m.dict();
    await d.setItem('x', 1);
    await d.getItem('x');
    const server = m._process;
    // A thread server is this process: the rest column is all there is.
    if (!server || method === 'thread') return { ...(await idleCpuMs([])), perWaiter: null };
    return await idleCpuMs([server.pid]);
  } finally {
    await m.shutdown();
  }
}

// ---- main ---------------------------------------------------------------------------------------

const f1 = (x) => (x == null ? '—' : x.toFixed(1));
const per5s = (ms) => (ms == null ? null : (ms * 5000) / WINDOW_MS);

if (mp.isMain(import.meta)) {
  const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');
  console.log(`Machine: ${os.cpus().length} cores, Node ${process.version}, load average at start ${load()}; window ${WINDOW_MS / 1000} s.`);
  const rows = [];
  const notes = [];
  const row = async (what, counted, fn) => {
    try {
      const { perWaiter, rest } = await fn();
      const goal = what.startsWith('ours') && perWaiter != null ? (per5s(perWaiter) < 5 ? 'met' : 'NOT met') : '';
      rows.push([what, counted, f1(per5s(perWaiter)), f1(per5s(rest)), goal]);
    } catch (error) {
      notes.push(`${what}: ${error.message}`);
    }
  };
  // What measuring costs this process (a timer, reading /proc; a garbage collection may land here).
  const control = async () => ({ ...(await idleCpuMs([])), perWaiter: null });
  await row('nothing waiting (the control)', '—', control);
  for (const method of ['thread', 'spawn', 'forkserver']) {
    await row(`ours, Pool(${WORKERS}), ${method}`, 'each worker', () => oursPool(method));
  }
  await row(`piscina, ${WORKERS} threads`, 'each worker', piscinaPool);
  for (const method of ['thread', 'spawn', 'forkserver']) {
    await row(`ours, a child in Queue.get(), ${method}`, 'the child', () => queueGet(method));
    await row(`ours, a child in Event.wait(), ${method}`, 'the child', () => eventWait(method));
    await row(`ours, Manager server idle, ${method}`, 'the server', () => manager(method));
  }
  await row('nothing waiting (the control, again)', '—', control);
  if (process.env.BENCH_NO_PYTHON !== '1') {
    const script = fileURLToPath(new URL('./idle.py', import.meta.url));
    const r = spawnSync('python3', [script], { encoding: 'utf8', env: { ...process.env, BENCH_IDLE_S: String(WINDOW_MS / 1000) } });
    if (r.status === 0) {
      const py = JSON.parse(r.stdout.trim().split('\n').pop());
      for (const [what, counted, m] of py.rows) rows.push([`Python, ${what}`, counted, f1(per5s(m.waiter)), f1(per5s(m.rest)), '']);
    } else {
      notes.push(`Python: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`);
    }
  }
  printTable(`Idle CPU, ms per 5 s of wall time (window ${WINDOW_MS / 1000} s; goal: < 5 ms per idle worker or child)`,
    ['case', 'counted', 'waiting side, CPU ms per 5 s', 'rest of the calling process, CPU ms per 5 s', 'goal (< 5)'], rows);
  for (const note of notes) console.log(`\n- ${note}`);
  console.log(`\nLoad average at the end: ${load()}.`);
}
