// A context object has the same API as the module, bound to one start method.
import * as mp from 'multiprocessing-ts';

export const worker = mp.task(async (q: mp.Queue<string>) => {
  await q.put('hello');
});

if (mp.isMain(import.meta)) {
  const ctx = mp.getContext('spawn');
  const q = ctx.Queue<string>();
  const p = new ctx.Process({ target: worker, args: [q] });
  p.start();
  console.log(await q.get());
  await p.join();
}
