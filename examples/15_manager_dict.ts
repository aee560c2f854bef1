// A real job with state shared through a Manager: worker processes count the words of their share of
// a corpus and merge their counts into one dict held by the manager's server process, each merge
// under a manager Lock (a read-modify-write of a shared dict is not atomic, in Python either); the
// workers also record what they did in the same dict, and the parent reads the result.
//
//   node --import tsx examples/15_manager_dict.ts
import * as mp from 'multiprocessing-ts';
import type { DictProxy, AcquirerProxy } from 'multiprocessing-ts/managers';

const corpus = [
  'the quick brown fox jumps over the lazy dog',
  'the dog barks and the fox runs',
  'a quick brown dog outpaces a lazy fox',
  'the lazy dog sleeps all day',
  'foxes and dogs are not the same',
  'the brown fox is quick and the dog is lazy',
];

/** Runs in each worker: counts its lines' words locally, then merges into the shared dict. */
export const countWords = mp.task(async (lines: string[], counts: DictProxy<string, number>, lock: AcquirerProxy, name: string) => {
  const local = new Map<string, number>();
  for (const line of lines) for (const word of line.split(' ')) local.set(word, (local.get(word) ?? 0) + 1);
  await lock.with(async () => {
    for (const [word, n] of local) await counts.setItem(word, (await counts.get(word, 0)) + n);
    await counts.setItem(`#${name}`, lines.length);
  });
});

if (mp.isMain(import.meta)) {
  await using manager = await mp.Manager();
  const counts = await manager.dict<string, number>();
  const lock = await manager.Lock();

  const workers = [0, 1, 2].map((i) => new mp.Process({
    target: countWords,
    args: [corpus.filter((_, line) => line % 3 === i), counts, lock, `worker${i}`],
  }));
  for (const w of workers) w.start();
  for (const w of workers) await w.join(60);

  const all = await counts.copy();
  const words = [...all].filter(([k]) => !k.startsWith('#'));
  const top = words.sort(([a, x], [b, y]) => y - x || a.localeCompare(b)).slice(0, 6);
  for (const [word, n] of top) console.log(`${word.padEnd(6)} ${n}`);
  console.log(`${words.length} distinct words, ${words.reduce((s, [, n]) => s + n, 0)} in all`);
  console.log(`lines per worker: ${['worker0', 'worker1', 'worker2'].map((w) => all.get(`#${w}`)).join(' ')}`);
}
