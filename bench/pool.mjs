// Pools side by side, in one run: our Pool (thread, spawn, forkserver), piscina, tinypool (threads
// and child processes), workerpool, poolifier and Python's multiprocessing.Pool (bench/pool.py, run
// as a subprocess), all with 2 workers, on the same tasks (bench/pool-peers/tasks.mjs).
//
//   W1  100,000 tiny tasks submitted at once (tasks/s): one task per item, and default chunking
//   W2  one tiny task round trip on a warm pool (median µs of sequential calls)
//   W3  64 x fib(27) (speed-up over the same 64 calls run serially in the calling process), next to
//       the CPU calibration: the speed-up two plain processes get on the same work on this machine
//   W4  200 x 1 MiB payloads into the pool (MiB/s, median of up to 9 repetitions), copied, and
//       transferred where supported
//   W5  construction to first result, and shutdown (ms), in a fresh process per contender
// W1-W4 also run in a fresh process per contender (measureChild), W5 in another.
//
// Run: npm run build && node bench/pool.mjs
// Env: BENCH_N (W1 size, 100000), BENCH_RT (W2 calls, 2000), BENCH_PAYLOADS (200),
//      BENCH_BUDGET_S (seconds a repeated measurement may take before it stops repeating, 6),
//      BENCH_ONLY (comma-separated contender keys, e.g. "ours-thread,piscina,python"),
//      BENCH_NO_PYTHON=1 (skip Python).
// A contender that fails to load or to run is skipped with a note; the rest still run.
import { spawn, spawnSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median, percentile, printTable } from './stats.mjs';

let mp = null;
let mpError = null;
try {
  const t = performance.now();
  mp = await import('multiprocessing-ts');
  globalThis.mpImportMs = performance.now() - t;
} catch (e) {
  mpError = e;
}

const N = Number(process.env.BENCH_N ?? 100_000);
const RT_CALLS = Number(process.env.BENCH_RT ?? 2_000);
const PAYLOADS = Number(process.env.BENCH_PAYLOADS ?? 200);
const BUDGET_MS = Number(process.env.BENCH_BUDGET_S ?? 6) * 1000;
const W4_REPS = 9;
let STEP_TIMEOUT_MS = 90_000;
const FIB_TASKS = 64;
const FIB_N = 27;
const MIB = 1 << 20;
const WORKERS = 2;

const peerFile = (name) => fileURLToPath(new URL(`./pool-peers/${name}`, import.meta.url));
const range = (n) => Array.from({ length: n }, (_, i) => i);

// ---------------------------------------------------------------------------------------------
// Contenders. Each `load()` imports what it needs and returns `create()`, which makes a pool of 2
// and returns its operations; `null` for an operation the library does not have.

function ours(method) {
  return async () => {
    if (!mp) throw new Error(`multiprocessing-ts did not load (${mpError?.message}); run npm run build`);
    let Pool = mp.Pool;
    if (typeof Pool !== 'function') {
      // Until the facade re-exports it, the subpath module.
      Pool = await import('multiprocessing-ts/pool').then((m) => m.Pool, () => undefined);
    }
    if (typeof Pool !== 'function') throw new Error('Pool is not in the build yet (src/pool.ts)');
    const t = await import('./pool-peers/ours-tasks.mjs');
    return () => {
      const pool = new Pool(WORKERS, { context: mp.getContext(method) });
      return {
        one: (x) => pool.apply(t.add1, [x]),
        perTask: (xs) => pool.map(t.add1, xs, 1),
        perCall: (xs) => Promise.all(xs.map((x) => pool.apply(t.add1, [x]))),
        chunked: (xs) => pool.map(t.add1, xs),
        fibs: (n, k) => pool.map(t.fib, Array(k).fill(n), 1),
        payloads: (bufs) => pool.map(t.size, bufs, 1),
        payloadsMoved: method === 'thread' ? (bufs) => pool.map(t.size, bufs, 1, { transfer: true }) : null,
        close: async () => {
          pool.close();
          await pool.join();
        },
        kill: async () => {
          pool.terminate();
          await pool.join();
        },
      };
    };
  };
}

const each = (xs, f) => Promise.all(xs.map(f));
const times = (k, f) => Promise.all(Array.from({ length: k }, f));

async function piscina() {
  const { Piscina } = await import('piscina');
  return () => {
    const pool = new Piscina({ filename: pathToFileURL(peerFile('piscina-worker.mjs')).href, minThreads: WORKERS, maxThreads: WORKERS });
    return {
      one: (x) => pool.run(x, { name: 'add1' }),
      perTask: (xs) => each(xs, (x) => pool.run(x, { name: 'add1' })),
      fibs: (n, k) => times(k, () => pool.run(n, { name: 'fib' })),
      payloads: (bufs) => each(bufs, (b) => pool.run(b, { name: 'size' })),
      payloadsMoved: (bufs) => each(bufs, (b) => pool.run(Piscina.move(b), { name: 'size' })),
      close: () => pool.destroy(),
    };
  };
}

function tinypool(runtime) {
  return async () => {
    const { Tinypool } = await import('tinypool');
    return () => {
      // child_process defaults to JSON messages, where a Uint8Array arrives as an object with a key
      // per byte; 'advanced' (v8.serialize, as worker threads and our processes use) is the fair setting.
      const pool = new Tinypool({
        filename: peerFile('piscina-worker.mjs'), minThreads: WORKERS, maxThreads: WORKERS, runtime,
        ...(runtime === 'child_process' ? { serialization: 'advanced' } : {}),
      });
      return {
        one: (x) => pool.run(x, { name: 'add1' }),
        perTask: (xs) => each(xs, (x) => pool.run(x, { name: 'add1' })),
        fibs: (n, k) => times(k, () => pool.run(n, { name: 'fib' })),
        payloads: (bufs) => each(bufs, (b) => pool.run(b, { name: 'size' })),
        payloadsMoved: runtime === 'worker_threads'
          ? (bufs) => each(bufs, (b) => pool.run(b, { name: 'size', transferList: [b.buffer] }))
          : null,
        close: () => pool.destroy(),
      };
    };
  };
}

async function workerpool() {
  const { default: wp } = await import('workerpool');
  return () => {
    const pool = wp.pool(peerFile('workerpool-worker.mjs'), { minWorkers: WORKERS, maxWorkers: WORKERS, workerType: 'thread' });
    return {
      one: (x) => pool.exec('add1', [x]),
      perTask: (xs) => each(xs, (x) => pool.exec('add1', [x])),
      fibs: (n, k) => times(k, () => pool.exec('fib', [n])),
      payloads: (bufs) => each(bufs, (b) => pool.exec('size', [b])),
      payloadsMoved: (bufs) => each(bufs, (b) => pool.exec('size', [b], { transfer: [b.buffer] })),
      close: () => pool.terminate(),
    };
  };
}

async function poolifier() {
  const { FixedThreadPool } = await import('poolifier');
  return () => {
    const pool = new FixedThreadPool(WORKERS, peerFile('poolifier-worker.mjs'));
    return {
      one: (x) => pool.execute(x, 'add1'),
      perTask: (xs) => each(xs, (x) => pool.execute(x, 'add1')),
      fibs: (n, k) => times(k, () => pool.execute(n, 'fib')),
      payloads: (bufs) => each(bufs, (b) => pool.execute(b, 'size')),
      payloadsMoved: (bufs) => each(bufs, (b) => pool.execute(b, 'size', undefined, [b.buffer])),
      close: () => pool.destroy(),
    };
  };
}

const CONTENDERS = [
  { key: 'ours-thread', name: 'ours, thread', load: ours('thread'), ours: true },
  { key: 'ours-spawn', name: 'ours, spawn', load: ours('spawn'), ours: true, processes: true },
  { key: 'ours-forkserver', name: 'ours, forkserver', load: ours('forkserver'), ours: true, processes: true },
  { key: 'piscina', name: 'piscina', load: piscina },
  { key: 'tinypool', name: 'tinypool (threads)', load: tinypool('worker_threads') },
  { key: 'tinypool-cp', name: 'tinypool (child_process)', load: tinypool('child_process'), processes: true },
  { key: 'workerpool', name: 'workerpool (thread)', load: workerpool },
  { key: 'poolifier', name: 'poolifier FixedThreadPool', load: poolifier },
];

// ---------------------------------------------------------------------------------------------
// Measuring.

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${STEP_TIMEOUT_MS / 1000} s`)), STEP_TIMEOUT_MS);
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

async function timed(fn) {
  const t0 = performance.now();
  const result = await fn();
  return [performance.now() - t0, result];
}

/** Runs `fn` (async, returns ms) up to `most` times while within the budget; returns the times. */
async function repeat(fn, most = 3) {
  const out = [];
  const start = performance.now();
  while (out.length < most && (out.length === 0 || performance.now() - start < BUDGET_MS)) out.push(await fn());
  return out;
}

function check(cond, what) {
  if (!cond) throw new Error(`wrong result: ${what}`);
}

/** W1-W4 on one pool. Each workload fills `res` as it goes; the first failure ends the contender. */
async function measure(c, create, res, serialFibMs) {
  const h = create();
  try {
    check((await withTimeout(h.one(41), 'first task')) === 42, 'add1(41)');

    // W1: all N at once.
    const xs = range(N);
    const w1 = async (op, label, warmUp = range(2000), most = 3) => {
      await withTimeout(op(warmUp), `${label} warm-up`);
      const ms = await repeat(async () => {
        const [t, out] = await timed(() => withTimeout(op(xs), label));
        check(out.length === N && out[N - 1] === N && out[0] === 1, label);
        return t;
      }, most);
      return { rate: N / (median(ms) / 1000), runs: ms.length };
    };
    res.w1PerTask = await w1(h.perTask, 'W1 per task');
    if (h.perCall) res.w1PerCall = await w1(h.perCall, 'W1 one call per item');
    // A chunked map of N items takes milliseconds: one full-size warm-up, so that the median
    // is not mostly V8 compiling the code path, and 5 runs, as bench/pool.py takes for Python's
    // (which runs after the per-task and per-call maps over the same N items).
    if (h.chunked) res.w1Chunked = await w1(h.chunked, 'W1 default chunking', xs, 5);

    // W2: sequential round trips.
    for (let i = 0; i < 200; i++) await withTimeout(h.one(i), 'W2 warm-up');
    const rts = [];
    for (let i = 0; i < RT_CALLS; i++) {
      const t0 = performance.now();
      await withTimeout(h.one(i), 'W2');
      rts.push((performance.now() - t0) * 1000);
    }
    res.w2 = { median: median(rts), p90: percentile(rts, 90) };

    // W3: 64 x fib(27).
    await withTimeout(h.fibs(FIB_N, WORKERS), 'W3 warm-up');
    const fibMs = await repeat(async () => {
      const [t, out] = await timed(() => withTimeout(h.fibs(FIB_N, FIB_TASKS), 'W3'));
      check(out.length === FIB_TASKS && out.every((v) => v === 196418), 'fib(27)');
      return t;
    });
    res.w3 = { ms: median(fibMs), speedup: serialFibMs / median(fibMs) };

    // W4: PAYLOADS x 1 MiB, copied (one buffer sent PAYLOADS times) and moved (fresh buffers).
    // The median of up to W4_REPS: one repetition moves 2-3x with where the receiving side's fresh
    // memory comes from (docs/benchmarks.md, "W4, copied 1 MiB payloads to threads"), so a median
    // of three could put either of two libraries ahead by 2.5x.
    const payload = new Uint8Array(MIB).fill(7);
    const w4 = async (op, fresh, label) => {
      await withTimeout(op(Array.from({ length: 10 }, () => (fresh ? new Uint8Array(MIB) : payload))), `${label} warm-up`);
      const ms = await repeat(async () => {
        const bufs = Array.from({ length: PAYLOADS }, () => (fresh ? new Uint8Array(MIB).fill(7) : payload));
        const [t, out] = await timed(() => withTimeout(op(bufs), label));
        check(out.length === PAYLOADS && out.every((v) => v === MIB), `${label} sizes`);
        return t;
      }, W4_REPS);
      return PAYLOADS / (median(ms) / 1000);
    };
    res.w4Copy = await w4(h.payloads, false, 'W4 copied');
    if (h.payloadsMoved) res.w4Moved = await w4(h.payloadsMoved, true, 'W4 transferred');
  } finally {
    const saved = STEP_TIMEOUT_MS;
    STEP_TIMEOUT_MS = 15_000;
    await withTimeout(h.close(), 'shutdown').catch((e) => {
      res.note = (res.note ? res.note + '; ' : '') + e.message + (h.kill ? ' (then terminated)' : '');
      return h.kill?.();
    });
    STEP_TIMEOUT_MS = saved;
  }
}

/** W5, in a fresh process: construction to first result and shutdown, for a first and a second pool. */
async function w5Child(key) {
  const c = CONTENDERS.find((x) => x.key === key);
  const t = performance.now();
  const create = await c.load();
  // The library's import (for ours, the facade is imported by this file before that: see runW5).
  const out = { importMs: performance.now() - t + (key.startsWith('ours') ? globalThis.mpImportMs ?? 0 : 0) };
  STEP_TIMEOUT_MS = 20_000;
  for (const which of ['first', 'second']) {
    const t0 = performance.now();
    const h = create();
    try {
      check((await withTimeout(h.one(1), 'first result')) === 2, 'add1(1)');
    } catch (e) {
      out.note = `${which} pool: ${e.message}`;
      break;
    }
    const t1 = performance.now();
    out[which] = { firstResultMs: t1 - t0 };
    try {
      await withTimeout(h.close(), 'shutdown');
      out[which].shutdownMs = performance.now() - t1;
    } catch (e) {
      out.note = `${which} pool: ${e.message}`;
      break;
    }
    // Let background work settle (the forkserver refilling its warm reserve) before the second pool.
    await new Promise((r) => setTimeout(r, 1000));
  }
  reportFromChild(key, out);
}

/** A child's answer: one JSON line on stdout. A pool that keeps the process alive after its
 * shutdown is reported (on stderr), and the process exits anyway. */
function reportFromChild(key, out) {
  process.stdout.write(`${JSON.stringify(out)}\n`);
  setTimeout(() => {
    process.stderr.write(`${key}: the process did not exit within 5 s of the pools' shutdown\n`);
    process.exit(0);
  }, 5000).unref();
}

/** Runs this file with `args` in a fresh process and returns the JSON it reports. */
function runChild(what, args, timeoutMs) {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...args], { encoding: 'utf8', timeout: timeoutMs });
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (!line) throw new Error(`${what} child failed (${r.status ?? r.signal}): ${(r.stderr || '').trim().split('\n').slice(-3).join(' / ')}`);
  const out = JSON.parse(line);
  if (r.stderr.includes('did not exit')) out.note = (out.note ? `${out.note}; ` : '') + 'the process did not exit after shutdown';
  return out;
}

const runW5 = (key) => runChild('W5', ['--w5', key], 120_000);

/**
 * W1-W4 for one contender, in a fresh process as W5 is: what ran before in a process changes what
 * comes after (glibc's malloc thresholds follow the largest block freed so far, and with them the
 * page faults of each copied megabyte in W4: docs/benchmarks.md, "W4"), so no library runs in a
 * process another has warmed up.
 */
async function measureChild(key, serialFibMs) {
  const c = CONTENDERS.find((x) => x.key === key);
  const res = { name: c.name, processes: !!c.processes };
  let create;
  try {
    create = await c.load();
  } catch (e) {
    res.loadError = e.message;
  }
  if (create) {
    try {
      await measure(c, create, res, serialFibMs);
    } catch (e) {
      res.error = e.message;
    }
  }
  reportFromChild(key, res);
}

/** W3's calibration: the same work as W3 split over two plain Node processes that start computing
 * at the same instant (each waits for an agreed wall-clock time after its start-up), so the
 * speed-up over one process is what two cores give on this machine now, with no pool involved. */
function calibrate(serialMs) {
  const at = Date.now() + 1500;
  const script = `import { fib } from ${JSON.stringify(new URL('./pool-peers/tasks.mjs', import.meta.url).href)};
    for (let i = 0; i < 3; i++) fib(${FIB_N});
    while (Date.now() < ${at});
    for (let i = 0; i < ${FIB_TASKS / 2}; i++) fib(${FIB_N});
    console.log(performance.timeOrigin + performance.now());`;
  const run = () => new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(Number(out.trim())) : reject(new Error(`calibration child exited with ${code}`))));
  });
  return Promise.all([run(), run()]).then((ends) => {
    const twoMs = Math.max(...ends) - at;
    return { twoMs, speedup: serialMs / twoMs };
  });
}

function python(args, timeout = 240_000) {
  const r = spawnSync('python3', [fileURLToPath(new URL('./pool.py', import.meta.url)), ...args], {
    encoding: 'utf8',
    timeout,
    env: { ...process.env, BENCH_N: String(N), BENCH_RT: String(RT_CALLS), BENCH_PAYLOADS: String(PAYLOADS), BENCH_BUDGET_S: String(BUDGET_MS / 1000) },
  });
  const line = (r.stdout || '').trim().split('\n').pop();
  if (r.status !== 0 || !line) throw new Error(`python3 bench/pool.py ${args.join(' ')} failed (${r.status ?? r.signal}): ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`);
  return JSON.parse(line);
}

// ---------------------------------------------------------------------------------------------
// Formatting and goals.

const int = (x) => (x == null ? '—' : Math.round(x).toLocaleString('en-US'));
const f1 = (x) => (x == null ? '—' : x.toFixed(1));
const f2 = (x) => (x == null ? '—' : x.toFixed(2));
const ratio = (a, b) => (a != null && b ? a / b : null);
const verdict = (ok, detail) => (ok == null ? 'n/a (a number is missing)' : `${ok ? 'met' : 'NOT met'} (${detail})`);

async function main() {
  const only = process.env.BENCH_ONLY ? process.env.BENCH_ONLY.split(',') : null;
  const want = (key) => !only || only.includes(key);
  const notes = [];
  const started = performance.now();

  let pyVersion = '—';
  try {
    pyVersion = spawnSync('python3', ['--version'], { encoding: 'utf8' }).stdout.trim().replace('Python ', '');
  } catch { /* reported below */ }
  console.log(`Machine: ${os.cpus().length} cores (${os.cpus()[0]?.model}), Node ${process.version}, Python ${pyVersion}, ` +
    `load average at start ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; ${WORKERS} workers per pool; ` +
    `W1 N=${N}, W2 ${RT_CALLS} calls, W4 ${PAYLOADS} x 1 MiB.`);

  // Serial baseline for W3, in this process.
  const { fib } = await import('./pool-peers/tasks.mjs');
  for (let i = 0; i < 3; i++) fib(FIB_N);
  const serialRuns = [];
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    for (let i = 0; i < FIB_TASKS; i++) fib(FIB_N);
    serialRuns.push(performance.now() - t0);
  }
  const serialFibMs = median(serialRuns);
  const calibration = await calibrate(serialFibMs);
  console.log(`CPU calibration: two processes running ${FIB_TASKS / 2} x fib(${FIB_N}) each at once finish in ` +
    `${f1(calibration.twoMs)} ms against ${f1(serialFibMs)} ms for all ${FIB_TASKS} in one: ${f2(calibration.speedup)}x ` +
    `(the limit of W3's speed-up here).`);

  const results = new Map(); // key -> { name, ...measures }
  for (const c of CONTENDERS) {
    if (!want(c.key)) continue;
    const t0 = performance.now();
    let res;
    try {
      res = runChild('W1-W4', ['--measure', c.key, String(serialFibMs)], 900_000);
    } catch (e) {
      res = { name: c.name, processes: !!c.processes, error: e.message };
    }
    results.set(c.key, res);
    if (res.loadError) {
      res.skipped = true;
      notes.push(`${c.name}: skipped, failed to load: ${res.loadError}`);
      continue;
    }
    if (res.error) notes.push(`${c.name}: stopped at an error, later workloads not measured: ${res.error}`);
    if (res.note) notes.push(`${c.name}: ${res.note}`);
    try {
      res.w5 = runW5(c.key);
      if (res.w5.note) notes.push(`${c.name} (W5): ${res.w5.note}`);
    } catch (e) {
      notes.push(`${c.name} (W5): ${e.message}`);
    }
    console.error(`  ${c.name}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }

  let py = null;
  const pyW5 = {};
  if (process.env.BENCH_NO_PYTHON !== '1' && want('python')) {
    const t0 = performance.now();
    try {
      py = python(['main']);
    } catch (e) {
      notes.push(`Python: skipped: ${e.message}`);
    }
    for (const m of ['fork', 'spawn', 'forkserver']) {
      try {
        pyW5[m] = python(['w5', m], 60_000);
      } catch (e) {
        notes.push(`Python ${m} (W5): ${e.message}`);
      }
    }
    console.error(`  Python: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const pyName = py ? `Python Pool (${py.method})` : 'Python Pool';

  // Reference numbers for the goals.
  const get = (key) => results.get(key);
  const peerKeys = ['piscina', 'tinypool', 'tinypool-cp', 'workerpool', 'poolifier'];
  const poolifierRate = get('poolifier')?.w1PerTask?.rate;
  const tinyCpRate = get('tinypool-cp')?.w1PerTask?.rate;
  const peerRts = peerKeys.map((k) => [k, get(k)?.w2?.median]).filter(([, v]) => v != null);
  const fastestPeerRt = peerRts.length ? Math.min(...peerRts.map(([, v]) => v)) : null;
  const fastestPeerName = peerRts.find(([, v]) => v === fastestPeerRt)?.[0];
  const piscinaFirst = get('piscina')?.w5?.first?.firstResultMs;
  const goals = [];
  const goal = (what, measured, target, ok) => {
    goals.push([what, measured, target, ok == null ? 'n/a (missing)' : ok ? 'met' : 'NOT met']);
    return ok;
  };

  // W1
  const w1Goal = (key, r) => {
    if (!r.w1PerTask && !r.w1Chunked) return '';
    const parts = [];
    if (key === 'ours-thread') {
      const x = ratio(r.w1PerTask?.rate, poolifierRate);
      parts.push(`per task >= 2x poolifier: ${verdict(goal('thread per task >= 2x poolifier', `${f2(x)}x`, '>= 2x', x == null ? null : x >= 2), `${f2(x)}x`)}`);
      const xa = ratio(r.w1PerCall?.rate, poolifierRate);
      parts.push(`one apply per item >= 2x poolifier: ${verdict(goal('thread one apply per item >= 2x poolifier', `${f2(xa)}x`, '>= 2x', xa == null ? null : xa >= 2), `${f2(xa)}x`)}`);
    }
    if (r.processes && key.startsWith('ours')) {
      const xp = ratio(r.w1PerTask?.rate, py?.w1_per_task);
      const xt = ratio(r.w1PerTask?.rate, tinyCpRate);
      parts.push(`per task >= 3x Python c=1: ${verdict(goal(`${key} per task >= 3x Python chunksize=1`, `${f2(xp)}x`, '>= 3x', xp == null ? null : xp >= 3), `${f2(xp)}x`)}`);
      parts.push(`>= 3x tinypool cp: ${verdict(goal(`${key} per task >= 3x tinypool child_process`, `${f2(xt)}x`, '>= 3x', xt == null ? null : xt >= 3), `${f2(xt)}x`)}`);
    }
    const xc = ratio(r.w1Chunked?.rate, py?.w1_chunked);
    parts.push(`chunked >= 1.5x Python's: ${verdict(goal(`${key} default chunking >= 1.5x Python's chunked map`, `${f2(xc)}x`, '>= 1.5x', xc == null ? null : xc >= 1.5), `${f2(xc)}x`)}`);
    return parts.join('; ');
  };
  const w1Rows = [];
  for (const [key, r] of results) {
    if (r.skipped) continue;
    w1Rows.push([r.name, int(r.w1PerTask?.rate), int(r.w1PerCall?.rate), int(r.w1Chunked?.rate), r.w1PerTask?.runs ?? '—',
      key.startsWith('ours') ? w1Goal(key, r) : '']);
  }
  if (py) w1Rows.push([pyName, int(py.w1_per_task), int(py.w1_per_call), int(py.w1_chunked), '', '']);
  printTable(`W1: ${N.toLocaleString('en-US')} tiny tasks submitted at once`,
    ['contender', 'per task, tasks/s (map chunksize=1; peers: one run() per item)', 'one apply/apply_async per item, tasks/s',
      'default chunking, items/s (map without chunksize)', 'runs', 'goal'], w1Rows);

  // W2
  const w2Rows = [];
  for (const [key, r] of results) {
    if (r.skipped) continue;
    let g = '';
    if (key === 'ours-thread' && r.w2) {
      const ok = fastestPeerRt == null ? null : r.w2.median <= fastestPeerRt;
      g = `<= fastest peer (${fastestPeerName}, ${f1(fastestPeerRt)} µs): ${verdict(goal('thread round trip <= fastest peer', `${f1(r.w2.median)} µs`, `<= ${f1(fastestPeerRt)} µs (${fastestPeerName})`, ok), `${f2(ratio(r.w2.median, fastestPeerRt))}x`)}`;
    } else if (r.processes && key.startsWith('ours') && r.w2) {
      const target = py ? py.w2_median_us / 3 : null;
      const ok = target == null ? null : r.w2.median <= target;
      g = `<= 1/3 Python's (${f1(target)} µs): ${verdict(goal(`${key} round trip <= 1/3 Python's`, `${f1(r.w2.median)} µs`, `<= ${f1(target)} µs`, ok), `${f2(ratio(py?.w2_median_us, r.w2.median))}x faster`)}`;
    }
    w2Rows.push([r.name, f1(r.w2?.median), f1(r.w2?.p90), g]);
  }
  if (py) w2Rows.push([pyName, f1(py.w2_median_us), f1(py.w2_p90_us), '']);
  printTable(`W2: one tiny task round trip on a warm pool (${RT_CALLS} sequential calls)`, ['contender', 'median µs', 'p90 µs', 'goal'], w2Rows);

  // W3
  const w3Rows = [];
  for (const [key, r] of results) {
    if (r.skipped) continue;
    let g = '';
    if (key.startsWith('ours') && r.w3) {
      const x = r.w3.speedup / calibration.speedup;
      g = `within 5% of the calibration (${f2(calibration.speedup)}x): ${verdict(goal(`${key} W3 within 5% of the calibrated limit`, `${f2(r.w3.speedup)}x`, `>= ${f2(0.95 * calibration.speedup)}x`, x >= 0.95), `${(100 * x).toFixed(0)}%`)}`;
    }
    w3Rows.push([r.name, f1(r.w3?.ms), f1(serialFibMs), r.w3 ? `${f2(r.w3.speedup)}x` : '—', g]);
  }
  w3Rows.push(['two plain processes (calibration)', f1(calibration.twoMs), f1(serialFibMs), `${f2(calibration.speedup)}x`, '']);
  if (py) w3Rows.push([pyName, f1(py.w3_pool_ms), f1(py.w3_serial_ms), `${f2(py.w3_serial_ms / py.w3_pool_ms)}x`, '']);
  printTable(`W3: ${FIB_TASKS} x fib(${FIB_N}) (serial = the same calls in the calling process; ideal speed-up ${WORKERS}x)`,
    ['contender', 'pool ms', 'serial ms', 'speed-up', 'goal'], w3Rows);

  // W4
  const w4Rows = [];
  const peerCopies = peerKeys.filter((k) => !get(k)?.processes).map((k) => [k, get(k)?.w4Copy]).filter(([, v]) => v != null);
  const bestPeerCopy = peerCopies.length ? Math.max(...peerCopies.map(([, v]) => v)) : null;
  const bestPeerCopyName = peerCopies.find(([, v]) => v === bestPeerCopy)?.[0];
  for (const [key, r] of results) {
    if (r.skipped) continue;
    let g = '';
    if (key === 'ours-thread' && r.w4Copy != null) {
      const ok = bestPeerCopy == null ? null : r.w4Copy >= bestPeerCopy;
      g = `copied >= the best thread peer's (${bestPeerCopyName}, ${int(bestPeerCopy)}): ${verdict(goal('thread copied payloads >= the best peer', `${int(r.w4Copy)} MiB/s`, `>= ${int(bestPeerCopy)} MiB/s (${bestPeerCopyName})`, ok), `${f2(ratio(r.w4Copy, bestPeerCopy))}x`)}`;
    }
    w4Rows.push([r.name, int(r.w4Copy), r.w4Moved != null ? int(r.w4Moved) : '— (no transfer)', g]);
  }
  if (py) w4Rows.push([pyName, int(py.w4_copy_mib_s), '— (no transfer)', '']);
  printTable(`W4: ${PAYLOADS} x 1 MiB payloads into the pool (each task returns the size)`, ['contender', 'copied MiB/s', 'transferred MiB/s', 'goal'], w4Rows);

  // W5
  const w5Rows = [];
  for (const [key, r] of results) {
    if (r.skipped) continue;
    const w = r.w5;
    let g = '';
    // Issue 14's start-up goals: thread <= piscina; spawn <= Python's spawn pool; the first
    // forkserver pool (which also starts the server) <= our spawn pool.
    const anchor = { 'ours-thread': ['piscina', piscinaFirst], 'ours-spawn': ["Python's spawn pool", pyW5.spawn?.first?.first_result_ms],
      'ours-forkserver': ['our spawn pool', get('ours-spawn')?.w5?.first?.firstResultMs] }[key];
    if (anchor && w?.first) {
      const [name, target] = anchor;
      const ok = target == null ? null : w.first.firstResultMs <= target;
      g = `first pool <= ${name}'s (${f1(target)} ms): ${verdict(goal(`${key} first pool to first result <= ${name}`, `${f1(w.first.firstResultMs)} ms`, `<= ${f1(target)} ms`, ok), `${f2(ratio(w.first.firstResultMs, target))}x`)}`;
    }
    w5Rows.push([r.name, f1(w?.importMs), f1(w?.first?.firstResultMs), f1(w?.first?.shutdownMs), f1(w?.second?.firstResultMs), f1(w?.second?.shutdownMs), g]);
  }
  for (const [m, w] of Object.entries(pyW5)) {
    w5Rows.push([`Python Pool (${m})`, f1(w.import_ms), f1(w.first.first_result_ms), f1(w.first.shutdown_ms), f1(w.second.first_result_ms), f1(w.second.shutdown_ms), '']);
  }
  printTable('W5: construction to first result, and shutdown (fresh process; a second pool 1 s later in the same program)',
    ['contender', 'import ms', 'first pool: to first result ms', 'first pool: shutdown ms', 'second pool: to first result ms', 'second pool: shutdown ms', 'goal'], w5Rows);

  if (goals.length) printTable('Goals', ['goal', 'measured', 'target', 'status'], goals);
  if (notes.length) {
    console.log('\nNotes:\n');
    for (const n of notes) console.log(`- ${n}`);
  }
  console.log(`\nLoad average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; ` +
    `${((performance.now() - started) / 1000).toFixed(0)} s in all.`);
}

if (!mp || mp.isMain(import.meta)) {
  const w5Index = process.argv.indexOf('--w5');
  const measureIndex = process.argv.indexOf('--measure');
  if (w5Index > 0) await w5Child(process.argv[w5Index + 1]);
  else if (measureIndex > 0) await measureChild(process.argv[measureIndex + 1], Number(process.argv[measureIndex + 2]));
  else await main();
}
