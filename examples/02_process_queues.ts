// The same job with the threading-like API: Process objects draining one Queue into another.
import * as mp from 'multiprocessing-ts';
import { format } from './pyformat.js';

export const worker = mp.task(async (read: mp.Queue<number>, write: mp.Queue<number>) => {
  while (!read.empty()) {
    const nameProc = mp.currentProcess().name;
    // Python calls read.get() here, which blocks for ever if another process takes the last item
    // between empty() and get(); getNowait() closes that race and ends the loop instead.
    let x: number;
    try {
      x = await read.getNowait();
    } catch (error) {
      if (error instanceof mp.Empty) break;
      throw error;
    }
    const res = x * x;
    console.log(nameProc, res);
    await write.put(res);
  }
  read.close();
  write.close();
});

if (mp.isMain(import.meta)) {
  const write = new mp.Queue<number>();
  const read = new mp.Queue<number>();
  for (const x of [3, 4, 5, 6]) await read.put(x);

  const NUM_CORE = 2;
  const procs: mp.Process[] = [];
  for (let i = 0; i < NUM_CORE; i++) {
    const p = new mp.Process({ target: worker, args: [read, write] });
    procs.push(p);
    p.start();
  }

  for (const proc of procs) await proc.join();
  const results: number[] = [];
  for (let i = write.qsize(); i > 0; i--) results.push(await write.get());
  console.log(format(results));
}
