// Pipes and queues side by side, in one run, with Python's multiprocessing (bench/connections.py,
// run as a subprocess) for reference.
//
//   Pipe   echo round trips per second: sendBytes/recvBytes of 64 B and of 1 MiB, and send/recv
//          of a 64-character string; the echo side is a child Process (spawn: an AF_UNIX
//          socketpair) or a ThreadProcess (thread: the same socketpair). Also with the blocking
//          receive on both sides (recvSync; it has no bytes twin, so the bytes travel as
//          Uint8Array objects through send). Python: Pipe() under fork and spawn.
//   Queue  items per second, 64-byte items (a Uint8Array(64); Python: bytes(64)), one producer
//          child, the main process consumes; Queue and SimpleQueue on spawn, forkserver and
//          thread, Python's Queue and SimpleQueue under fork and spawn.
//
// Start-up is excluded: pipes are warmed up with 50 round trips before the clock starts; a queue
// producer puts a "ready" item and waits on an Event; 1.5 s later (the forkserver context refills
// its reserve of warm processes meanwhile: a Node.js start-up on one of the two cores) the clock
// runs from the Event being set to the last item got (so serialising, buffering, the feeder and
// get() are all inside it).
//
// Run: npm run build && node bench/connections.mjs
// Env: BENCH_PIPE_S (seconds per pipe measurement, 1), BENCH_QUEUE_N (items per queue, 300000),
//      BENCH_QUEUE_S (seconds a queue measurement may take before it stops counting, 6),
//      BENCH_STEP_TIMEOUT_S (30), BENCH_NO_PYTHON=1, BENCH_ONLY=pipe or BENCH_ONLY=queue.
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import * as mp from 'multiprocessing-ts';
import { printTable } from './stats.mjs';

const PIPE_MS = Number(process.env.BENCH_PIPE_S ?? 1) * 1000;
const QUEUE_N = Number(process.env.BENCH_QUEUE_N ?? 300_000);
const QUEUE_MS = Number(process.env.BENCH_QUEUE_S ?? 6) * 1000;
const STEP_TIMEOUT_MS = Number(process.env.BENCH_STEP_TIMEOUT_S ?? 30) * 1000;
const MIB = 1 << 20;
const SETTLE_MS = 1500;
const STRING = 'x'.repeat(64);

// ---- tasks (module top level, so that children find them) -----------------------------------

/** Echoes bytes until an empty message, then objects until null. */
export const echo = mp.task(async (conn) => {
  for (;;) {
    const b = await conn.recvBytes();
    if (b.length === 0) break;
    conn.sendBytes(b);
  }
  for (;;) {
    const o = await conn.recv();
    if (o === null) break;
    conn.send(o);
  }
  conn.close();
});

/** The echo with the blocking receive: recvSync for everything (bytes travel as Uint8Array objects), until null. */
export const echoSync = mp.task((conn) => {
  for (let o = conn.recvSync(); o !== null; o = conn.recvSync()) conn.send(o);
  conn.close();
});

/** Puts 'ready', waits for `go`, then puts n items of 64 bytes (with putSync when `sync`). */
export const produce = mp.task(async (q, go, n, simple, sync = false) => {
  const item = new Uint8Array(64).fill(7);
  if (simple) q.put('ready');
  else await q.put('ready');
  await go.wait();
  if (sync) {
    for (let i = 0; i < n; i++) q.putSync(item);
  } else if (simple) {
    for (let i = 0; i < n; i++) q.put(item);
  } else {
    for (let i = 0; i < n; i++) await q.put(item);
  }
});

// ---- helpers ----------------------------------------------------------------------------------

function withTimeout(promise, what, ms = STEP_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms / 1000} s`)), ms);
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

/** Runs `one` (async) 50 times, then as often as fits in PIPE_MS; returns calls per second. */
async function roundTrips(one) {
  for (let i = 0; i < 50; i++) await one();
  let n = 0;
  const t0 = performance.now();
  const deadline = t0 + PIPE_MS;
  for (;;) {
    for (let i = 0; i < 10; i++) await one();
    n += 10;
    const t = performance.now();
    if (t >= deadline) return n / ((t - t0) / 1000);
  }
}

async function stop(p) {
  if (p.exitcode === null) {
    try {
      await withTimeout(p.join(), 'join', 5000);
    } catch {
      /* below */
    }
  }
  if (p.exitcode === null) {
    p.terminate();
    await withTimeout(p.join(), 'join after terminate', 5000).catch(() => p.kill());
  }
}

/** Echo round trips through a Pipe; `sync`: both sides use recvSync, bytes go as Uint8Array objects. */
async function oursPipe(method, sync = false) {
  const ctx = mp.getContext(method);
  const [a, b] = ctx.Pipe();
  const p = new ctx.Process({ target: sync ? echoSync : echo, args: [b] });
  p.start();
  b.close(); // the child has its own copy
  const out = {};
  try {
    // withTimeout cannot cut a blocked recvSync; the first exchange is awaited so a child that
    // never starts fails here instead.
    if (sync) {
      a.send('hello');
      await withTimeout(a.recv(), `${method} pipe start-up`);
    }
    const exchangeBytes = sync
      ? (payload) => (a.send(payload), a.recvSync())
      : async (payload) => (a.sendBytes(payload), a.recvBytes());
    for (const [key, payload] of [['bytes64', new Uint8Array(64).fill(1)], ['bytes1m', new Uint8Array(MIB).fill(1)]]) {
      out[key] = await withTimeout(roundTrips(async () => {
        const r = await exchangeBytes(payload);
        if (r.length !== payload.length) throw new Error(`echo returned ${r.length} bytes, sent ${payload.length}`);
      }), `${method} pipe ${key}`);
    }
    if (!sync) a.sendBytes(new Uint8Array(0));
    out.obj64 = await withTimeout(roundTrips(async () => {
      a.send(STRING);
      if ((sync ? a.recvSync() : await a.recv()) !== STRING) throw new Error('echo returned another string');
    }), `${method} pipe send/recv`);
    a.send(null);
  } finally {
    await stop(p);
    a.close();
  }
  return out;
}

async function oursQueue(method, simple, sync = false) {
  const ctx = mp.getContext(method);
  const q = simple ? ctx.SimpleQueue() : ctx.Queue();
  const go = ctx.Event();
  const p = new ctx.Process({ target: produce, args: [q, go, QUEUE_N, simple, sync] });
  p.start();
  try {
    const ready = await withTimeout(q.get(), `${method} queue: the producer's first item`);
    if (ready !== 'ready') throw new Error(`first item ${ready}`);
    // Start-up work must be over before the clock starts: a forkserver context refills its
    // reserve of warm processes (a whole Node.js start-up) just after handing one out.
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    let got = 0;
    let last;
    const t0 = performance.now();
    const deadline = t0 + QUEUE_MS;
    go.set();
    await withTimeout((async () => {
      while (got < QUEUE_N) {
        const k = Math.min(1000, QUEUE_N - got);
        // getSync blocks the event loop (so withTimeout cannot fire): it carries its own timeout.
        if (sync) for (let i = 0; i < k; i++) last = q.getSync({ timeout: STEP_TIMEOUT_MS / 1000 });
        else for (let i = 0; i < k; i++) last = await q.get();
        got += k;
        if (performance.now() >= deadline) break;
      }
    })(), `${method} ${simple ? 'SimpleQueue' : 'Queue'}`);
    const t = performance.now() - t0;
    if (!(last instanceof Uint8Array) || last.length !== 64 || last[63] !== 7) throw new Error('wrong item');
    return { rate: got / (t / 1000), items: got, seconds: t / 1000 };
  } finally {
    await stop(p);
  }
}

function python(args, timeout = 90_000) {
  const r = spawnSync('python3', [fileURLToPath(new URL('./connections.py', import.meta.url)), ...args], {
    encoding: 'utf8',
    timeout,
    env: {
      ...process.env,
      BENCH_PIPE_S: String(PIPE_MS / 1000),
      BENCH_QUEUE_N: String(QUEUE_N),
      BENCH_QUEUE_S: String(QUEUE_MS / 1000),
      BENCH_STEP_TIMEOUT_S: String(STEP_TIMEOUT_MS / 1000),
    },
  });
  const line = (r.stdout || '').trim().split('\n').pop();
  if (r.status !== 0 || !line) {
    throw new Error(`python3 bench/connections.py ${args.join(' ')} failed (${r.status ?? r.signal}): ` +
      `${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`);
  }
  return JSON.parse(line);
}

const int = (x) => (x == null ? '—' : Math.round(x).toLocaleString('en-US'));
const us = (rate) => (rate == null ? '—' : (1e6 / rate).toFixed(rate > 1000 ? 1 : 0));

// ---- main -------------------------------------------------------------------------------------

if (mp.isMain(import.meta)) {
  // A last resort: whatever hangs, the bench ends (and its children with it).
  const watchdog = setTimeout(() => {
    console.error('bench/connections.mjs: over 4 minutes, giving up');
    for (const c of mp.activeChildren()) c.kill();
    process.exit(2);
  }, 240_000);
  watchdog.unref();

  const started = performance.now();
  const notes = [];
  const withPython = process.env.BENCH_NO_PYTHON !== '1';
  let pyVersion = '—';
  try {
    pyVersion = spawnSync('python3', ['--version'], { encoding: 'utf8' }).stdout.trim().replace('Python ', '');
  } catch { /* reported by the runs below */ }
  console.log(`Machine: ${os.cpus().length} cores (${os.cpus()[0]?.model}), Node ${process.version}, Python ${pyVersion}, ` +
    `load average at start ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; pipes ${PIPE_MS / 1000} s per measurement, ` +
    `queues ${QUEUE_N.toLocaleString('en-US')} items (or ${QUEUE_MS / 1000} s) per measurement.`);

  const only = process.env.BENCH_ONLY ?? '';

  // Pipes.
  const pipeRows = [];
  const pipeResults = new Map();
  const pipeRow = (name, r) => pipeResults.set(name, r) && pipeRows.push([name, int(r?.bytes64), us(r?.bytes64), int(r?.bytes1m), us(r?.bytes1m),
    int(r?.bytes1m && (r.bytes1m * 2)), int(r?.obj64), us(r?.obj64)]);
  if (only !== 'queue') {
  for (const [method, name, sync] of [
    ['spawn', 'ours, processes (spawn, socketpair)', false],
    ['thread', 'ours, threads (thread, socketpair)', false],
    ['spawn', 'ours, processes, recvSync both sides (bytes as objects)', true],
    ['thread', 'ours, threads, recvSync both sides (bytes as objects)', true],
  ]) {
    try {
      pipeRow(name, await oursPipe(method, sync));
    } catch (e) {
      notes.push(`${name}: ${e.message}`);
      pipeRow(name, null);
    }
  }
  if (withPython) {
    for (const method of ['fork', 'spawn']) {
      const name = `Python Pipe (${method})`;
      try {
        pipeRow(name, python(['pipe', method]));
      } catch (e) {
        notes.push(`${name}: ${e.message}`);
        pipeRow(name, null);
      }
    }
  }
  printTable('Pipe echo round trips (one connection each way, the echo side in a child)',
    ['pipe', '64 B bytes rt/s', 'µs', '1 MiB bytes rt/s', 'µs', 'MiB/s moved', 'send/recv 64-char string rt/s', 'µs'], pipeRows);

  // Issue 14's goals for await recv() across processes: 64 B >= 2x Python's, 1 MiB >= Python's
  // (the faster of Python's fork and spawn rows in this run).
  const ours = pipeResults.get('ours, processes (spawn, socketpair)');
  const pyBest = (k) => Math.max(0, ...['fork', 'spawn'].map((m) => pipeResults.get(`Python Pipe (${m})`)?.[k] ?? 0)) || null;
  const pipeGoals = [['64 B', 'bytes64', 2], ['1 MiB', 'bytes1m', 1]].map(([size, k, times]) => {
    const py = pyBest(k);
    const ok = ours?.[k] && py ? ours[k] >= times * py : null;
    return [`async ${size} round trips >= ${times}x Python's`, ours?.[k] && py ? `${(ours[k] / py).toFixed(2)}x (${int(ours[k])}/s)` : '—',
      py ? `>= ${int(times * py)}/s` : '—', ok == null ? 'n/a (a number is missing)' : ok ? 'met' : 'NOT met'];
  });
  printTable('Pipe goals (await recv() across processes)', ['goal', 'measured', 'target (the faster of Python fork/spawn)', 'status'], pipeGoals);
  }

  // Queues.
  const queueResults = [];
  if (only !== 'pipe') {
  for (const method of ['spawn', 'forkserver', 'thread']) {
    for (const simple of [false, true]) {
      const name = `ours ${simple ? 'SimpleQueue' : 'Queue'}, ${method}`;
      try {
        queueResults.push({ name, method, simple, ours: true, ...(await oursQueue(method, simple)) });
      } catch (e) {
        notes.push(`${name}: ${e.message}`);
        queueResults.push({ name, method, simple, ours: true });
      }
    }
  }
  {
    // The same queue with the blocking calls (putSync in the producer, getSync in the consumer):
    // how much of the cost is the async path.
    const name = 'ours Queue, spawn, putSync/getSync';
    try {
      queueResults.push({ name, method: 'spawn', simple: false, ours: true, variant: true, ...(await oursQueue('spawn', false, true)) });
    } catch (e) {
      notes.push(`${name}: ${e.message}`);
      queueResults.push({ name, method: 'spawn', simple: false, ours: true, variant: true });
    }
  }
  if (withPython) {
    for (const method of ['fork', 'spawn']) {
      try {
        const r = python(['queue', method]);
        queueResults.push({ name: `Python Queue, ${method}`, method, simple: false, ...r.queue });
        queueResults.push({ name: `Python SimpleQueue, ${method}`, method, simple: true, ...r.simple });
      } catch (e) {
        notes.push(`Python queues (${method}): ${e.message}`);
      }
    }
  }
  const pyQueueBest = Math.max(...queueResults.filter((r) => !r.ours && !r.simple && r.rate).map((r) => r.rate), 0) || null;
  printTable(`Queue throughput: 1 producer child, the main process gets (64-byte items, ${QUEUE_N.toLocaleString('en-US')} per run)`,
    ['queue', 'items/s', 'MB/s of payload', 'vs the faster Python Queue', 'items', 's'],
    queueResults.map((r) => [r.name, int(r.rate), r.rate ? ((r.rate * 64) / 1e6).toFixed(1) : '—',
      r.rate && pyQueueBest ? `${(r.rate / pyQueueBest).toFixed(2)}x` : '—', int(r.items), r.seconds ? r.seconds.toFixed(2) : '—']));

  // Goal: ours across processes >= 3x Python's queue.
  const goalRows = [];
  for (const method of ['spawn', 'forkserver']) {
    const r = queueResults.find((x) => x.ours && !x.simple && !x.variant && x.method === method);
    const ok = r?.rate && pyQueueBest ? r.rate >= 3 * pyQueueBest : null;
    goalRows.push([`ours Queue (${method}) >= 3x Python's Queue`, r?.rate && pyQueueBest ? `${(r.rate / pyQueueBest).toFixed(2)}x` : '—',
      pyQueueBest ? `>= ${int(3 * pyQueueBest)} items/s` : '—', ok == null ? 'n/a (a number is missing)' : ok ? 'met' : 'NOT met']);
  }
  printTable('Goal', ['goal', 'measured', 'target (3x the faster of Python fork/spawn)', 'status'], goalRows);

  }

  if (notes.length) {
    console.log('\nNotes:\n');
    for (const n of notes) console.log(`- ${n}`);
  }
  console.log(`\nLoad average at the end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; ` +
    `${((performance.now() - started) / 1000).toFixed(0)} s in all.`);
  // Children are joined above; a handle that would keep the process alive should not hold the bench.
  setTimeout(() => process.exit(0), 2000).unref();
}
