// The app's tasks, bundled into the same file as its entry: a child re-imports the bundle (the entry
// is guarded by mp.isMain) and finds them there.
import * as mp from 'multiprocessing-ts';

export const double = mp.task(async (x, q) => {
  if (q) await q.put(x * 2);
  return x * 2;
});
