// Under spawn and forkserver the entry module must be importable without side effects: the child
// imports it again to find `worker`, and `mp.isMain(import.meta)` is false there (Python's
// `if __name__ == '__main__':`). Starting a process at import time fails with ProcessError in the
// child. The 'thread' start method re-imports the module in a worker thread, with the same rule.
import * as mp from 'multiprocessing-ts';

export const worker = mp.task(() => {
  console.log('hello');
});

if (mp.isMain(import.meta)) {
  mp.freezeSupport();
  mp.setStartMethod('spawn');
  const p = new mp.Process({ target: worker });
  p.start();
  await p.join();

  // The same with worker threads.
  const t = new (mp.getContext('thread').Process)({ target: worker });
  t.start();
  await t.join();
}
