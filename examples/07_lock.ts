// Without the lock the output of the processes could interleave.
import * as mp from 'multiprocessing-ts';

export const worker = mp.task(async (lock: mp.Lock, i: number) => {
  await lock.acquire();
  try {
    console.log('hello world', i);
  } finally {
    lock.release();
  }
});

if (mp.isMain(import.meta)) {
  const lock = new mp.Lock();
  for (let num = 0; num < 10; num++) {
    new mp.Process({ target: worker, args: [lock, num] }).start();
  }
}
