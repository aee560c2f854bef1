// Choosing the start method once, at the start of the program (Python's set_start_method).
import * as mp from 'multiprocessing-ts';

export const worker = mp.task(async (q: mp.Queue<string>) => {
  await q.put('hello');
});

if (mp.isMain(import.meta)) {
  mp.setStartMethod('spawn');
  const q = new mp.Queue<string>();
  const p = new mp.Process({ target: worker, args: [q] });
  p.start();
  console.log(await q.get());
  await p.join();
}
