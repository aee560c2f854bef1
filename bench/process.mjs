// Time to start and join an empty Process, per start method (median of 20, after one warm-up).
// Runs the built package (npm run build): what users run, without a TypeScript loader.
import * as mp from 'multiprocessing-ts';
import { median, percentile, printTable } from './stats.mjs';

export const empty = mp.task(() => {});

if (mp.isMain(import.meta)) {
  const runs = Number(process.env.BENCH_RUNS ?? 20);
  const rows = [];
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
    rows.push([method, median(times).toFixed(1), percentile(times, 90).toFixed(1), runs]);
  }
  printTable('Process start + join, empty target', ['start method', 'median ms', 'p90 ms', 'runs'], rows);
}
