// The redis context's objects side by side with the local ones, in one program and one run (the
// cost of one operation as a caller that awaits each sees it, and of a burst of puts):
//
//   Queue put, burst      BENCH_N puts not awaited one by one, then every item got: items/s
//   Queue put+get         one awaited put then one awaited get, BENCH_N times: pairs/s
//   Lock acquire+release  awaited, BENCH_N times: pairs/s
//   Value add             awaited v.add(1), BENCH_N times: ops/s
//
// Run: npm run build && node bench/redis-objects.mjs
// Env: REDIS_URL (else a private redis-server on a free port, killed at the end), BENCH_N (5000).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import os from 'node:os';
import { printTable } from './stats.mjs';

const N = Number(process.env.BENCH_N ?? 5000);
let mp;
try {
  mp = await import('multiprocessing-ts');
  await import('ioredis');
} catch (e) {
  console.log(`skipped: ${e.message} (npm run build; ioredis is a dev dependency)`);
  process.exit(0);
}

/** REDIS_URL, or a redis-server of this run on a port the OS found free. */
async function redisUrl() {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, stop: () => {} };
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  while (!/Ready to accept connections/.test(out)) {
    const [code] = await Promise.race([once(child.stdout, 'data').then(() => [null]), once(child, 'exit')]);
    if (code !== null && code !== undefined) throw new Error(`redis-server exited (${code}): set REDIS_URL`);
  }
  return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill() };
}

async function rate(count, body) {
  const t0 = performance.now();
  await body();
  return count / ((performance.now() - t0) / 1000);
}

/** The four measures on one context's objects. */
async function measure(ctx) {
  const q = ctx.Queue();
  const burst = await rate(N, async () => {
    for (let i = 0; i < N; i++) void q.put(i);
    for (let i = 0; i < N; i++) await q.get();
  });
  const pairs = await rate(N, async () => {
    for (let i = 0; i < N; i++) {
      await q.put(i);
      await q.get();
    }
  });
  const lock = ctx.Lock();
  const locks = await rate(N, async () => {
    for (let i = 0; i < N; i++) {
      await lock.acquire();
      await lock.release();
    }
  });
  const v = ctx.Value('i', 0);
  const adds = await rate(N, async () => {
    for (let i = 0; i < N; i++) await v.add(1);
  });
  if ((await v.get()) !== N) throw new Error('lost adds');
  for (const o of [q, lock, v]) await o.close?.();
  return [burst, pairs, locks, adds];
}

const redis = await redisUrl();
try {
  const ctx = mp.getContext('redis', { url: redis.url });
  await measure(ctx); // warm-up: connections, scripts loaded
  const remote = await measure(ctx);
  const local = await measure(mp.getContext('spawn'));
  await ctx.shutdown();
  const names = ['Queue put, burst (items/s)', 'Queue put+get (pairs/s)', 'Lock acquire+release (pairs/s)', 'Value add (ops/s)'];
  printTable(`redis objects vs local, N=${N}, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`, ['operation', 'redis context', 'local (spawn context)'], names.map((n, i) => [n, Math.round(remote[i]).toLocaleString('en-US'), Math.round(local[i]).toLocaleString('en-US')]));
} finally {
  redis.stop();
}
