// Pool.map of x*x over 3..6, each worker printing its name and result.
import * as mp from 'multiprocessing-ts';
import { format } from './pyformat.js';

export const worker = mp.task((x: number) => {
  const nameProc = mp.currentProcess().name;
  const res = x * x;
  console.log(nameProc, res);
  return res;
});

if (mp.isMain(import.meta)) {
  await using pool = new mp.Pool(2);
  console.log(format(await pool.map(worker, [3, 4, 5, 6])));
}
