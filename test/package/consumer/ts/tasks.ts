// The tasks of main.ts, in a module of their own as a TypeScript user would keep them.
import * as mp from 'multiprocessing-ts';

export const square = mp.task((x: number): number => x * x);

/** Child: finds the lock held by the parent, then waits for it. */
export const contend = mp.task(async (q: mp.Queue<boolean | string>, lock: mp.Lock): Promise<void> => {
  await q.put(await lock.acquire({ timeout: 0 }));
  await lock.acquire();
  await q.put('acquired');
  lock.release();
});
