// An app bundled with esbuild (test/package/check.mjs builds it twice): with the package left out of
// the bundle (docs/bundling.md's recipe) it runs a Pool and a Process on every start method; with
// the package bundled in, starting a child says the package's files were not found.
import * as mp from 'multiprocessing-ts';
import { double } from './tasks.mjs';

if (mp.isMain(import.meta)) {
  const methods = process.argv.length > 2 ? process.argv.slice(2) : ['spawn', 'forkserver', 'thread'];
  for (const method of methods) {
    const ctx = mp.getContext(method);
    const pool = new ctx.Pool(1);
    try {
      console.log(method, 'pool', (await pool.map(double, [1, 2, 3])).join(','));
    } finally {
      pool.terminate();
      await pool.join();
    }
    const q = new ctx.Queue();
    const p = new ctx.Process({ target: double, args: [21, q] });
    p.start();
    console.log(method, 'process', await q.get({ timeout: 60 }));
    await p.join(60);
    q.close();
  }
}
