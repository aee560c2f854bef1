// W6: an empty Process started and joined, per start method (median of BENCH_RUNS, 20, after one
// warm-up), next to Python's on the same method (bench/process.py: fork, spawn, forkserver), in one
// run. Runs the built package (npm run build): what users run, without a TypeScript loader.
// Env: BENCH_RUNS (20), BENCH_NO_PYTHON=1.
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
  const ours = {};
  for (const method of ['spawn', 'forkserver', 'thread']) {
    const ctx = mp.getContext(method);
    const times = [];
    for (let i = 0; i <= runs; i++) {
      const started = performance.now();
      const p = new ctx.Process({ target: empty });
      p.start();
      await p.join();
      if (i > 0) times.push(performance.now() - started);
    }
    ours[method] = { median: median(times), p90: percentile(times, 90) };
  }
  let py = null;
  let pyNote = '';
  if (process.env.BENCH_NO_PYTHON !== '1') {
    const script = fileURLToPath(new URL('./process.py', import.meta.url));
    const r = spawnSync('python3', [script], { encoding: 'utf8', env: { ...process.env, BENCH_RUNS: String(runs) } });
    if (r.status === 0) py = JSON.parse(r.stdout.trim().split('\n').pop());
    else pyNote = (r.stderr || r.error?.message || '').trim().split('\n').pop();
  }
  const rows = [];
  for (const [method, t] of Object.entries(ours)) {
    const anchor = py?.[method];
    const goal = anchor
      ? `<= Python's ${method} (${anchor.median_ms.toFixed(1)} ms): ${t.median <= anchor.median_ms ? 'met' : 'NOT met'} (${(t.median / anchor.median_ms).toFixed(2)}x)`
      : method === 'thread' ? 'Python has no thread start method (Python fork below, for scale)' : '';
    rows.push([`ours, ${method}`, t.median.toFixed(1), t.p90.toFixed(1), goal]);
  }
  for (const [method, t] of Object.entries(py ?? {})) rows.push([`Python, ${method}`, t.median_ms.toFixed(1), t.p90_ms.toFixed(1), '']);
  printTable('W6: Process start + join, empty target', ['contender', 'median ms', 'p90 ms', 'goal'], rows);
  if (pyNote) console.log(`\n- Python: ${pyNote}`);
  console.log(`\nLoad average at the end: ${load()}.`);
}
