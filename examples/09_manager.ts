// Sharing a dict and a list between processes through a Manager (the server process holds them).
import * as mp from 'multiprocessing-ts';
import { Manager, type DictProxy, type ListProxy } from 'multiprocessing-ts/managers';
import { format } from './pyformat.js';

export const worker = mp.task(async (d: DictProxy, l: ListProxy<number>) => {
  await d.setItem(1, '1');
  await d.setItem('2', 2);
  await d.setItem(0.25, null);
  await l.reverse();
});

if (mp.isMain(import.meta)) {
  await using manager = await Manager();
  const d = await manager.dict();
  const l = await manager.list(Array.from({ length: 10 }, (_, i) => i));

  const p = new mp.Process({ target: worker, args: [d, l] });
  p.start();
  await p.join();

  console.log(format(await d.copy()));
  console.log(format(await l.copy()));
}
