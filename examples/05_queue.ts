// Exchanging objects between processes through a Queue.
import * as mp from 'multiprocessing-ts';
import { format } from './pyformat.js';

export const worker = mp.task(async (q: mp.Queue<unknown>) => {
  await q.put([42, null, 'hello']);
});

if (mp.isMain(import.meta)) {
  const q = new mp.Queue();
  const p = new mp.Process({ target: worker, args: [q] });
  p.start();
  console.log(format(await q.get()));
  await p.join();
}
