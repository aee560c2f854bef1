// A process that put items on a queue waits, before it exits, until they are flushed. Joining it
// before the queue is drained deadlocks; swapping the last two lines (get first) fixes it.
import * as mp from 'multiprocessing-ts';

export const worker = mp.task(async (q: mp.Queue<string>) => {
  await q.put('X'.repeat(1000000));
});

if (mp.isMain(import.meta)) {
  const queue = new mp.Queue<string>();
  const p = new mp.Process({ target: worker, args: [queue] });
  p.start();
  const obj = await queue.get(); // fixed order: get first, then join
  await p.join();
  console.log(obj.length);
}
