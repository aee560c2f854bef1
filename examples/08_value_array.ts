// Sharing data in shared memory: a Value and an Array that a child changes in place.
import * as mp from 'multiprocessing-ts';
import { format } from './pyformat.js';

export const worker = mp.task((num: mp.sharedctypes.Synchronized<'d'>, arr: mp.sharedctypes.SynchronizedArray<'i'>) => {
  num.value = 3.1415927;
  for (let i = 0; i < arr.length; i++) arr.set(i, -arr.get(i));
});

if (mp.isMain(import.meta)) {
  const num = mp.Value('d', 0.0);
  const arr = mp.Array('i', Array.from({ length: 10 }, (_, i) => i));

  const p = new mp.Process({ target: worker, args: [num, arr] });
  p.start();
  await p.join();

  console.log(num.value);
  console.log(format(arr.slice()));
}
