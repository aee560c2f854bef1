// W6: an empty Process started and joined, per start method (median of BENCH_RUNS, 20, after one
// warm-up), next to Python's on the same method (bench/process.py: fork, spawn, forkserver), in one
// run. Runs the built package (npm run build): what users run, without a TypeScript loader.
// Then forkserver once more, one start every BENCH_PACE_MS (300): Node cannot fork, so our fork
// server hands out warm children kept in reserve, and starts back to back time how fast it can
// spawn replacements; paced starts time the hand-out itself, as Python's fork does each time.
// Env: BENCH_RUNS (20), BENCH_PACE_MS (300; 0 skips the paced row), BENCH_NO_PYTHON=1.
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import * as mp from 'multiprocessing-ts';
import { median, percentile, printTable } from './stats.mjs';

export const empty = mp.task(() => {});

if (mp.isMain(import.meta)) {
  const runs = Number(process.env.BENCH_RUNS ?? 20);
  const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');
  console.log(`Machine: ${os.cpus().length} cores, Node ${process.version}, load average at start ${load()}; ${runs} runs each.`);
  const paceMs = Number(process.env.BENCH_PACE_MS ?? 300);
  const startJoin = async (method, pause) => {
    const ctx = mp.getContext(method);
    const times = [];
    for (let i = 0; i <= runs; i++) {
      if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
      const started = performance.now();
      const p = new ctx.Process({ target: empty });
      p.start();
      await p.join();
      if (i > 0) times.push(performance.now() - started);
    }
    return { median: median(times), p90: percentile(times, 90) };
  };
  const ours = {};
  for (const method of ['spawn', 'forkserver', 'thread']) ours[method] = await startJoin(method, 0);
  if (paceMs > 0) ours.forkserver_paced = await startJoin('forkserver', paceMs);
  let py = null;
  let pyNote = '';
  if (process.env.BENCH_NO_PYTHON !== '1') {
    const script = fileURLToPath(new URL('./process.py', import.meta.url));
    const r = spawnSync('python3', [script], { encoding: 'utf8', env: { ...process.env, BENCH_RUNS: String(runs), BENCH_PACE_MS: String(paceMs) } });
    if (r.status === 0) py = JSON.parse(r.stdout.trim().split('\n').pop());
    else pyNote = (r.stderr || r.error?.message || '').trim().split('\n').pop();
  }
  const rows = [];
  const label = (method) => (method === 'forkserver_paced' ? `forkserver, one start every ${paceMs} ms` : method);
  for (const [method, t] of Object.entries(ours)) {
    const anchor = py?.[method];
    const goal = anchor
      ? `<= Python's ${label(method)} (${anchor.median_ms.toFixed(1)} ms): ${t.median <= anchor.median_ms ? 'met' : 'NOT met'} (${(t.median / anchor.median_ms).toFixed(2)}x)`
      : method === 'thread' ? 'Python has no thread start method (Python fork below, for scale)' : '';
    rows.push([`ours, ${label(method)}`, t.median.toFixed(1), t.p90.toFixed(1), goal]);
  }
  for (const [method, t] of Object.entries(py ?? {})) rows.push([`Python, ${label(method)}`, t.median_ms.toFixed(1), t.p90_ms.toFixed(1), '']);
  printTable('W6: Process start + join, empty target', ['contender', 'median ms', 'p90 ms', 'goal'], rows);
  if (pyNote) console.log(`\n- Python: ${pyNote}`);
  console.log(`\nLoad average at the end: ${load()}.`);
}
