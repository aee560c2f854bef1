// A TypeScript entry run by Node with no loader (type stripping, Node >= 22.18 / 23.6): imports
// name the .ts file. The same checks as esm.mjs, typed.
import * as mp from 'multiprocessing-ts';
import { contend, square } from './tasks.ts';

function expect(what: string, got: unknown, want: unknown): void {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}

if (mp.isMain(import.meta)) {
  for (const method of ['spawn', 'forkserver', 'thread'] as const) {
    const ctx = mp.getContext(method);
    {
      await using pool = new ctx.Pool(2);
      const squares: number[] = await pool.map(square, [1, 2, 3, 4]);
      expect(`${method} Pool.map`, squares, [1, 4, 9, 16]);
    }
    const q = new ctx.Queue<boolean | string>();
    const lock = new ctx.Lock();
    await lock.acquire();
    const p = new ctx.Process({ target: contend, args: [q, lock] });
    p.start();
    expect(`${method} child's try while the parent holds the Lock`, await q.get({ timeout: 60 }), false);
    lock.release();
    expect(`${method} child after the release`, await q.get({ timeout: 60 }), 'acquired');
    await p.join(60);
    expect(`${method} exitcode`, p.exitcode, 0);
    q.close();
    console.log(`ts ${method} ok`);
  }
}
