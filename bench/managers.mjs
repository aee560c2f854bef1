// Manager dict proxy calls per second (d.setItem / d.getItem, one at a time and 4 in flight),
// per start method of the server, next to CPython's Manager().dict() (bench/managers.py) when
// python3 is on PATH. Runs the built package (npm run build), as users do.
import * as mp from 'multiprocessing-ts';
import { Manager } from 'multiprocessing-ts/managers';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { printTable } from './stats.mjs';

const n = Number(process.env.BENCH_CALLS ?? 20000);

async function rate(fn, calls) {
  await fn(Math.ceil(calls / 10)); // warm-up (JIT, connections)
  const started = performance.now();
  await fn(calls);
  return calls / ((performance.now() - started) / 1000);
}

const fmt = (x) => (x === undefined ? 'n/a' : Math.round(x).toLocaleString('en-US'));

if (mp.isMain(import.meta)) {
  const rows = [];
  // The last row turns the shared-memory lane off: calls then travel over the Unix socket.
  const configs = [['spawn', true], ['forkserver', true], ['thread', true], ['spawn', false]];
  for (const [method, lane] of configs) {
    if (!lane) process.env.MP_MANAGER_LANE = '0';
    const manager = await Manager({ ctx: mp.getContext(method) });
    const d = await manager.dict();
    await d.setItem('x', 0);
    const sets = async (k) => {
      for (let i = 0; i < k; i++) await d.setItem('x', i);
    };
    const gets = async (k) => {
      for (let i = 0; i < k; i++) await d.getItem('x');
    };
    const concurrent = (k) => Promise.all(Array.from({ length: 4 }, () => gets(Math.ceil(k / 4))));
    const label = `multiprocessing-ts, server on '${method}'${lane ? '' : ', socket only (MP_MANAGER_LANE=0)'}`;
    rows.push([label, fmt(await rate(sets, n)), fmt(await rate(gets, n)), fmt(await rate(concurrent, n))]);
    await manager.shutdown();
    delete process.env.MP_MANAGER_LANE;
  }
  const script = fileURLToPath(new URL('./managers.py', import.meta.url));
  const py = spawnSync('python3', [script, String(n)], { encoding: 'utf8' });
  if (py.status === 0) {
    const r = JSON.parse(py.stdout.trim().split('\n').pop());
    rows.push([`CPython ${r.version} Manager().dict()`, fmt(r.set), fmt(r.get), fmt(r.concurrent)]);
  } else {
    rows.push(['CPython (python3 not available)', 'n/a', 'n/a', 'n/a']);
  }
  printTable(
    `Manager dict proxy calls per second (${n} calls; node ${process.version})`,
    ['implementation', 'd[k] = v (setItem)', 'd[k] (getItem)', '4 callers at once (getItem)'],
    rows,
  );
}
