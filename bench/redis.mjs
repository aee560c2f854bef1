// The redis context's Pool side by side with the local Pool, Python's Pool and a bare Redis Streams
// loop (the anchors, re-run here under the same load), 2 workers, x => 2x:
//
//   per task    BENCH_N items, one task each (map with chunksize 1): tasks/s
//   chunked     BENCH_N items, map's default chunksize: items/s
//   round trip  one task at a time on a warm pool: median ms of BENCH_RT trips made after
//               BENCH_RT_WARMUP others (the goal's figure), and of the first BENCH_RT trips
//   SIGKILL     a worker killed mid-imap (stopped first, so it surely holds tasks): time from the
//               kill to the last result of the tasks it held (goal: claimIdle + 1 s), and to the
//               end of the map; results lost and duplicated
//
// and what each costs, which a machine shared with other work does not hide as it hides wall time:
// CPU time per task (per item, per round trip) of every process involved (this one, the workers
// with their local processes, redis-server), and the Redis commands per task.
//
// Run: npm run build && node bench/redis.mjs
// Env: REDIS_URL (else a private redis-server is started), BENCH_N (20000), BENCH_RT (500),
//      BENCH_RT_WARMUP (3000; untimed round trips between the first and the last timed ones),
//      BENCH_CLAIM_IDLE (1 s), BENCH_NO_PYTHON=1.
// The warm-up map does not warm the code of a lone round trip (the producer's, the worker
// programs', their local processes'): the first few thousand trips are slower until V8 has
// optimised that code (docs/distributed.md, "Round trip: fourth round"). Both are printed: the
// round trip of a program that has made BENCH_RT_WARMUP of them already (a service's steady state,
// as W2 of bench/pool.mjs measures a warm pool), and that of its first BENCH_RT.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { accounted, childPids, formatCpu } from './cpu.mjs';
import { median, printTable } from './stats.mjs';

const N = Number(process.env.BENCH_N ?? 20_000);
const RT = Number(process.env.BENCH_RT ?? 500);
const RT_WARMUP = Number(process.env.BENCH_RT_WARMUP ?? 3000);
const CLAIM_IDLE = Number(process.env.BENCH_CLAIM_IDLE ?? 1);
const root = fileURLToPath(new URL('..', import.meta.url));
const tasksModule = 'bench/redis-peers/tasks.mjs';
const range = (n) => Array.from({ length: n }, (_, i) => i);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fmt = (x, digits = 0) => (x === null || x === undefined ? 'n/a' : Number(x).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));

let mp;
let ioredis;
try {
  mp = await import('multiprocessing-ts');
  ioredis = await import('ioredis');
} catch (e) {
  console.log(`skipped: ${e.message} (npm run build; ioredis is a dev dependency)`);
  process.exit(0);
}
const { double } = await import('./redis-peers/tasks.mjs');

// ---- a Redis -------------------------------------------------------------------------------

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startRedis() {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, pid: null, stop: () => {} };
  const hasServer = spawnSync('redis-server', ['--version']).status === 0;
  if (!hasServer) return null;
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  const probe = new ioredis.Redis(url, { lazyConnect: true, retryStrategy: () => 50, maxRetriesPerRequest: null });
  probe.on('error', () => {}); // refused until the server listens
  await probe.connect().catch(() => {});
  while ((await probe.ping().catch(() => null)) !== 'PONG') await sleep(20);
  probe.disconnect();
  return { url, pid: child.pid, stop: () => child.kill('SIGTERM') };
}

// ---- worker programs -----------------------------------------------------------------------

function startWorker(url) {
  const child = spawn(process.execPath, [
    'dist/cli.js', 'worker', '--redis', url, '--import', tasksModule, '--processes', '1', '--context', 'forkserver',
  ], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  const ready = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      output += d;
      if (/^worker \S+: redis/m.test(output)) resolve();
    });
    child.once('exit', () => reject(new Error(`worker exited: ${output}`)));
  });
  return {
    child,
    ready,
    get consumer() {
      return /^worker (\S+): /m.exec(output)?.[1];
    },
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', resolve);
      child.kill('SIGTERM');
    }),
  };
}

// ---- measurements --------------------------------------------------------------------------

/**
 * The three measurements, each with its cost (`accounted`: CPU µs and Redis commands per task, per
 * item, per round trip) over all its runs. `run` maps `(tasks: number[] | number[][])`: one task per
 * element. `cost.client`: a connection to the Redis to count; `cost.roots()`: the worker processes.
 */
async function measure(run, apply, cost) {
  const account = (units, fn) => accounted(units, cost.client, cost.roots, fn, cost.options);
  await run(range(2000), 1); // warm: workers started, functions sent, JIT
  const perTask = [];
  const perTaskCost = await account(3 * N, async () => {
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      await run(range(N), 1);
      perTask.push(N / ((performance.now() - t) / 1000));
    }
  });
  const chunked = [];
  const chunkedCost = await account(5 * N, async () => {
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await run(range(N), null);
      chunked.push(N / ((performance.now() - t) / 1000));
    }
  });
  const timeTrips = async (trips) => {
    for (let i = 0; i < RT; i++) {
      const t = performance.now();
      await apply(i);
      trips.push(performance.now() - t);
    }
  };
  const coldTrips = [];
  await timeTrips(coldTrips);
  for (let i = 0; i < RT_WARMUP; i++) await apply(i);
  const trips = [];
  const tripCost = await account(RT, () => timeTrips(trips));
  return {
    perTask: median(perTask), chunked: median(chunked), roundTripMs: median(trips), coldRoundTripMs: median(coldTrips),
    cost: { perTask: perTaskCost, chunked: chunkedCost, trip: tripCost },
  };
}

async function throughput(pool, cost) {
  return measure(async (items, chunksize) => {
    const r = await pool.map(double, items, chunksize);
    if (r[items.length - 1] !== 2 * (items.length - 1)) throw new Error('wrong result');
  }, (i) => pool.apply(double, [i]), cost);
}

/**
 * imapUnordered of N items; one worker program stopped once it holds tasks, then SIGKILLed. The
 * tasks it held are read from XPENDING and their stream entries (the header's seq gives the item:
 * the warm-up map takes seqs 1..100, the imap 101..100+N); recovery is the time from the kill to the
 * last of their results.
 */
async function redisRecovery(url) {
  const ctx = mp.getContext('redis', { url, claimIdle: CLAIM_IDLE });
  const survivors = [startWorker(url), startWorker(url)];
  const victim = startWorker(url);
  await Promise.all([...survivors, victim].map((w) => w.ready));
  const pool = new ctx.Pool(2);
  const probe = new ioredis.Redis(url);
  const arrivals = new Float64Array(N).fill(NaN);
  let received = 0;
  let duplicated = 0;
  let wrong = 0;
  try {
    await pool.map(double, range(100), 1);
    const stream = `mp:pool:${pool.id}:tasks`;
    const consuming = (async () => {
      for await (const v of pool.imapUnordered(double, range(N), 1)) {
        const i = v / 2;
        received++;
        if (!Number.isInteger(i) || i < 0 || i >= N) wrong++;
        else if (!Number.isNaN(arrivals[i])) duplicated++;
        else arrivals[i] = performance.now();
      }
    })();
    let held;
    do {
      held = await probe.xpending(stream, 'workers', '-', '+', 1000, victim.consumer);
      if (held.length === 0) await sleep(1);
    } while (held.length === 0);
    victim.child.kill('SIGSTOP');
    held = await probe.xpending(stream, 'workers', '-', '+', 1000, victim.consumer);
    const orphans = [];
    for (const [id] of held) {
      const [entry] = await probe.xrangeBuffer(stream, id, id);
      if (entry) orphans.push(...seqsOf(entry[1]).map((seq) => seq - 101));
    }
    victim.child.kill('SIGKILL');
    const killedAt = performance.now();
    await consuming;
    const mapDoneS = (performance.now() - killedAt) / 1000;
    const orphansDoneS = Math.max(0, ...orphans.map((i) => (arrivals[i] - killedAt) / 1000));
    const lost = arrivals.reduce((n, t) => n + (Number.isNaN(t) ? 1 : 0), 0);
    return { orphansDoneS, mapDoneS, orphaned: orphans.length, lost, duplicated, wrong, received };
  } finally {
    pool.terminate();
    await pool.join();
    probe.disconnect();
    await Promise.all(survivors.map((w) => w.stop()));
  }
}

/** The seqs of the tasks of a stream entry (src/redis/stream.ts: one task, or a pack of them). */
function seqsOf(fields) {
  if (fields[0].toString() !== 'p') return [fields[1].readUInt32BE(1)];
  const seqs = [];
  for (let at = 0; at < fields[1].length; at += 4 + fields[1].readUInt32BE(at)) seqs.push(fields[1].readUInt32BE(at + 5));
  return seqs;
}

/** The same on the local pool: a worker process SIGKILLed mid-imap. */
async function localRecovery() {
  const pool = new mp.Pool(2, { context: mp.getContext('forkserver') });
  await pool.map(double, range(100), 1);
  const results = [];
  let failed = 0;
  let killedAt = 0;
  const it = pool.imap(double, range(N), 1);
  for (let i = 0; i < N; i++) {
    if (i === N / 5) {
      const worker = mp.activeChildren().find((p) => /PoolWorker/.test(p.name));
      process.kill(worker.pid, 'SIGKILL');
      killedAt = performance.now();
    }
    try {
      results.push((await it.next()).value);
    } catch {
      failed++;
    }
  }
  const s = (performance.now() - killedAt) / 1000;
  pool.terminate();
  await pool.join();
  return { recoveryS: s, failed };
}

function python() {
  if (process.env.BENCH_NO_PYTHON) return null;
  try {
    const out = execFileSync('python3', [fileURLToPath(new URL('./redis-peers/python_pool.py', import.meta.url)), String(N), String(RT)], { encoding: 'utf8' });
    return JSON.parse(out);
  } catch (e) {
    console.log(`(python skipped: ${e.message.split('\n')[0]})`);
    return null;
  }
}

async function bare(url, cost) {
  const { bareStreams } = await import('./redis-peers/bare-streams.mjs');
  const b = await bareStreams(url);
  try {
    // Its chunks are 100 items each (the anchor), whatever map's default would be.
    const run = (items, chunksize) =>
      b.run(chunksize === 1 ? items : range(items.length / 100).map((c) => items.slice(c * 100, c * 100 + 100)));
    return await measure(run, (i) => b.run([i]), { ...cost, options: { scriptOnly: [] } });
  } finally {
    await b.stop();
  }
}

// ---- the run -------------------------------------------------------------------------------

const redis = await startRedis();
if (!redis) {
  console.log('skipped: no REDIS_URL and no redis-server on PATH (apt-get install redis-server)');
  process.exit(0);
}
const uptime = () => spawnSync('uptime', { encoding: 'utf8' }).stdout.trim();
const loadBefore = uptime();
const rows = [['**issue 13 goal** (redis context)', '>= 30,000', '>= 1,000,000', '<= 0.600', `tasks of the killed worker done within claimIdle + 1 s (${CLAIM_IDLE + 1} s); 0 lost, 0 duplicated`]];
const costRows = [];
const costRow = (name, m) => {
  const { perTask, chunked, trip } = m.cost;
  const commands = (c) => `${c.commandsPerUnit.sent.toFixed(3)} sent, ${c.commandsPerUnit.run.toFixed(3)} run`;
  costRows.push([name, formatCpu(perTask.cpu), formatCpu(chunked.cpu), formatCpu(trip.cpu), commands(perTask), commands(trip)]);
};
/** The warm round trip, then that of the first trips. */
const tripCell = (m) => `${fmt(m.roundTripMs, 3)} (first ${RT}: ${fmt(m.coldRoundTripMs, 3)})`;
const counter = new ioredis.Redis(redis.url);
const notRedis = () => childPids([redis.pid]);
try {
  const local = new mp.Pool(2, { context: mp.getContext('forkserver') });
  const l = await throughput(local, { client: null, roots: notRedis });
  local.terminate();
  await local.join();
  const lr = await localRecovery();
  rows.push(['our local Pool(2), forkserver', fmt(l.perTask), fmt(l.chunked), tripCell(l),
    `tasks the killed process held fail with WorkerLostError (${lr.failed} here), the rest finish; map done ${fmt(lr.recoveryS, 2)} s after the kill`]);
  costRow('our local Pool(2), forkserver', l);

  const workers = [startWorker(redis.url), startWorker(redis.url)];
  await Promise.all(workers.map((w) => w.ready));
  const ctx = mp.getContext('redis', { url: redis.url, claimIdle: CLAIM_IDLE });
  const pool = new ctx.Pool(2);
  const r = await throughput(pool, { client: counter, roots: () => workers.map((w) => w.child.pid) });
  pool.close();
  await pool.join();
  await Promise.all(workers.map((w) => w.stop()));
  const rr = await redisRecovery(redis.url);
  rows.push([`redis context, 2 worker programs x 1 process (claimIdle ${CLAIM_IDLE} s)`, fmt(r.perTask), fmt(r.chunked), tripCell(r),
    `${rr.orphaned} tasks orphaned, all done ${fmt(rr.orphansDoneS, 2)} s after the kill (map done at ${fmt(rr.mapDoneS, 2)} s); lost ${rr.lost}, duplicated ${rr.duplicated}, wrong ${rr.wrong}`]);
  costRow('redis context, 2 worker programs x 1 process', r);

  const b = await bare(redis.url, { client: counter, roots: notRedis });
  rows.push(['bare Redis Streams loop (anchor, 100 items per chunk)', fmt(b.perTask), fmt(b.chunked), tripCell(b), 'not handled']);
  costRow('bare Redis Streams loop (anchor)', b);
  const py = python();
  if (py) rows.push(["Python's multiprocessing.Pool(2) (anchor)", fmt(py.perTask), fmt(py.chunked), fmt(py.roundTripMs, 3), 'hangs (cpython#96062); not run']);
} finally {
  counter.disconnect();
  redis.stop();
}
printTable(`redis context vs local pools, 2 workers, x => 2x, ${N.toLocaleString('en-US')} items (node ${process.version}, ${os.cpus().length} CPUs)`,
  ['system', 'per task (tasks/s)', 'chunked (items/s)', `round trip median (ms), after ${RT_WARMUP.toLocaleString('en-US')} trips (the first ${RT})`, 'one worker SIGKILLed mid-map'], rows);
printTable('what it costs: CPU µs of all processes (this one = producer; workers + their local processes; redis-server), and Redis commands',
  ['system', 'CPU per task (µs)', 'CPU per item, chunked (µs)', 'CPU per round trip, after the warm-up (µs)', 'Redis commands per task', 'per round trip'], costRows);
console.log(`\nload before: ${loadBefore}\nload after:  ${uptime()}`);
