// Type-checked (never run) against the packed tarball's .d.ts with skipLibCheck false, by
// test/package/check.mjs, under each TypeScript and @types/node of the CI matrix.
import * as mp from 'multiprocessing-ts';
import { Listener, Client, wait } from 'multiprocessing-ts/connection';
import { BaseManager, SyncManager } from 'multiprocessing-ts/managers';
import { Pool, ThreadPool, AsyncResult, IMapIterator } from 'multiprocessing-ts/pool';
import { SharedMemory, ShareableList } from 'multiprocessing-ts/shared-memory';
import { RawArray, RawValue } from 'multiprocessing-ts/sharedctypes';
import * as dummy from 'multiprocessing-ts/dummy';

type IsAny<T> = 0 extends 1 & T ? true : false;
type Expect<T extends false> = T;

const add = mp.task((a: number, b: string): string => `${a}${b}`);

export async function checks(): Promise<void> {
  // Process: args are checked against the target.
  const ok = new mp.Process({ target: add, args: [1, 'x'] });
  // @ts-expect-error add takes (number, string)
  new mp.Process({ target: add, args: ['x', 2] });
  // @ts-expect-error too few arguments
  new mp.Process({ target: add, args: [1] });
  // Without a target (a subclass that overrides run()), args are unchecked.
  new mp.Process({ args: [1, 'anything', { x: 1 }] });
  class Worker extends mp.Process {
    constructor(readonly q: mp.Queue<number>) {
      super({ name: 'worker' });
    }
    override run(): Promise<void> {
      return this.q.put(1);
    }
  }
  mp.serializable(Worker);
  const processes: mp.Process[] = [ok, new Worker(new mp.Queue<number>())];
  ok.start();
  await ok.join(1);
  const code: number | null = ok.exitcode;

  // Pools: results typed from the function.
  await using pool = new mp.Pool(2);
  const lengths: number[] = await pool.map((s: string) => s.length, ['a', 'bb']);
  const joined: string = await pool.apply(add, [1, 'x']);
  // @ts-expect-error apply checks args the same way
  await pool.apply(add, ['x', 1]);
  const pending: AsyncResult<string> = pool.applyAsync(add, [2, 'y']);
  const it: IMapIterator<number> = pool.imap((n: number) => n * 2, [1, 2, 3], { progress: true });
  for await (const n of it) n.toFixed();
  const stars: string[] = await pool.starmap(add, [[1, 'a'], [2, 'b']]);
  new Pool({ processes: 1, initializer: (a: number) => a, initargs: [1] }).terminate();
  new ThreadPool(1).terminate();

  // Queues, locks, shared values, managers, connections.
  const q = new mp.Queue<string>();
  await q.put('x');
  const got: string = await q.get({ timeout: 1 });
  const lock = new mp.Lock();
  const inside: number = await lock.with(() => 1);
  const v = mp.Value('d', 0.5);
  v.value += 1;
  const arr = RawArray('i', 4);
  RawValue('i', 1);
  const shm = new SharedMemory({ create: true, size: 8 });
  const bytes: Uint8Array = shm.buf;
  new ShareableList([1, 'a']);
  await using m = await mp.Manager();
  const d = await m.dict();
  await d.setItem('k', 1);
  const [a, b] = mp.Pipe();
  a.send(1);
  await b.recv();
  await wait([a, b], 0);
  void Listener, Client, BaseManager, SyncManager, dummy, processes, code, lengths, joined, pending, stars, got,
    inside, arr, bytes;
}

// No `any` in the public types that used to have it.
export type NoAny = [
  Expect<IsAny<mp.ProcessOptions['target']>>,
  Expect<IsAny<NonNullable<mp.PoolOptions['initializer']>>>,
  Expect<IsAny<ReturnType<typeof mp.Lock>>>,
  Expect<IsAny<Parameters<typeof mp.Queue>[0]>>,
];
