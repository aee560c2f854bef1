// Lock contention and Event ping-pong: two processes ('spawn', process-shared memory + the addon's
// futex) side by side with two worker threads ('thread', SharedArrayBuffer + Atomics), in one run.
// Run: node --import tsx bench/sync.ts   (BENCH_ROUNDS, BENCH_LOCK_ITERS to change the sizes)
import * as mp from '../src/index.js';
import { Barrier, Event, Lock } from '../src/synchronize.js';
import { RawArray } from '../src/sharedctypes.js';

/** One contender: acquire/release `n` times after the gate; writes its elapsed ms into out[slot]. */
export const lockLoop = mp.task(async (lock: Lock, n: number, gate: Barrier, sync: boolean, out: RawArray<'d'>, slot: number) => {
  await gate.wait();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    if (sync) lock.acquireSync();
    else await lock.acquire();
    lock.release();
  }
  out.set(slot, performance.now() - t0);
});

/** The other end of the ping-pong. */
export const pong = mp.task(async (ping: Event, pongEvent: Event, rounds: number, sync: boolean) => {
  for (let i = 0; i < rounds; i++) {
    if (sync) ping.waitSync();
    else await ping.wait();
    ping.clear();
    pongEvent.set();
  }
});

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function lockBench(method: 'spawn' | 'thread', sync: boolean, n: number): Promise<number> {
  const ctx = mp.getContext(method);
  const o = { ctx };
  const lock = new Lock(o);
  const gate = new Barrier(2, null, null, o);
  const out = new RawArray('d', 2, o);
  const ps = [0, 1].map((slot) => new ctx.Process({ target: lockLoop, args: [lock, n, gate, sync, out, slot] }));
  ps.forEach((p) => p.start());
  for (const p of ps) await p.join();
  const ms = Math.max(out.get(0), out.get(1));
  return (2 * n) / (ms / 1000);
}

async function pingPongBench(method: 'spawn' | 'thread', sync: boolean, rounds: number): Promise<number> {
  const ctx = mp.getContext(method);
  const o = { ctx };
  const ping = new Event(o);
  const pongEvent = new Event(o);
  const p = new ctx.Process({ target: pong, args: [ping, pongEvent, rounds + 50, sync] });
  p.start();
  const rtts: number[] = [];
  for (let i = 0; i < rounds + 50; i++) {
    const t0 = performance.now();
    ping.set();
    if (sync) pongEvent.waitSync();
    else await pongEvent.wait();
    pongEvent.clear();
    if (i >= 50) rtts.push(performance.now() - t0);
  }
  await p.join();
  return median(rtts) * 1000;
}

if (mp.isMain(import.meta)) {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 2000);
  const iters = Number(process.env.BENCH_LOCK_ITERS ?? 20000);
  const trials = Number(process.env.BENCH_TRIALS ?? 3);
  // Trials alternate between the two kinds so that machine noise hits both; each cell is the median.
  const measure = async (fn: (method: 'spawn' | 'thread') => Promise<number>): Promise<[number, number]> => {
    const proc: number[] = [];
    const thr: number[] = [];
    for (let t = 0; t < trials; t++) {
      proc.push(await fn('spawn'));
      thr.push(await fn('thread'));
    }
    return [median(proc), median(thr)];
  };
  const rows: string[][] = [];
  for (const sync of [false, true]) {
    const label = sync ? 'acquireSync' : 'await acquire()';
    const [proc, thr] = await measure((m) => lockBench(m, sync, iters));
    rows.push([`Lock acquire/release pairs/s, 2 contenders, ${label}`, proc.toFixed(0), thr.toFixed(0), (thr / proc).toFixed(2)]);
  }
  for (const sync of [false, true]) {
    const label = sync ? 'waitSync' : 'await wait()';
    const [proc, thr] = await measure((m) => pingPongBench(m, sync, rounds));
    rows.push([`Event ping-pong median round trip µs, ${label}`, proc.toFixed(1), thr.toFixed(1), (proc / thr).toFixed(2)]);
  }
  console.log(`\n### Synchronisation: two processes vs two worker threads (median of ${trials} trials)\n`);
  console.log('| measure | processes (spawn) | threads | process cost / thread cost |');
  console.log('| --- | --- | --- | --- |');
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
}
