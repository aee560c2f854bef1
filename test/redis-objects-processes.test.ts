// The redis context's objects across programs: Processes run by real worker programs (separate
// processes, as on other machines) share queues, locks, events, barriers, values and a manager's
// containers through Redis; a holder killed with SIGKILL loses its lock when its lease ends; a
// late release raises; nothing is left in Redis afterwards. The 100,000-item Queue test is
// test/redis-queue-processes.test.ts.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import { redisForTests } from './redisServer.js';
import { until } from './redisWorkers.js';
import { objectProcesses } from './redisObjectsHarness.js';
import {
  addMany, drain, forever, holdLock, record, releaseForeign, waitAtBarrier, waitForNotify,
} from './fixtures/redis/objects.js';

const redis = await redisForTests({ db: 6 });
after(() => redis.server?.close());

describe('redis objects across processes', { skip: redis.skip }, () => {
  const server = redis.server!;
  const { ctx, start } = objectProcesses(server);

  /** A Lock held by a Process (holdLock): its pid and fencing token, and the objects to drive it. */
  async function heldElsewhere(lease: number) {
    const c = ctx();
    const lock = c.Lock({ lease });
    const held = c.Event();
    const go = c.Event();
    const out = c.Queue();
    const holder = start(holdLock, [lock, held, go, out]);
    const { token, pid } = (await out.get({ timeout: 60 })) as { token: number; pid: number };
    assert.ok(await held.wait(30));
    return { lock, go, out, holder, token, pid, objects: [lock, held, go, out] };
  }

  it('Lock: the lease of a holder killed with SIGKILL expires, and another process takes the lock', async () => {
    const { lock, holder, token, pid, objects } = await heldElsewhere(3);
    assert.equal(await lock.acquire(false), false, 'held by the other process');
    process.kill(pid, 'SIGKILL');
    await holder.join(30);
    assert.equal(holder.exitcode, -9);
    const t0 = performance.now();
    assert.equal(await lock.acquire({ timeout: 10 }), true, 'free once the lease ended');
    assert.ok(performance.now() - t0 < 5000, 'taken when the lease ended, not at the timeout');
    assert.ok(lock.fencingToken! > token, 'a larger fencing token than the dead holder had');
    await lock.release();
    for (const o of objects) await o.close();
  });

  it('Lock: a holder stopped past its lease raises at release (the lease expired); the next holder is fenced above it', async () => {
    const { lock, go, out, holder, token, pid, objects } = await heldElsewhere(1);
    process.kill(pid, 'SIGSTOP');
    try {
      assert.equal(await lock.acquire({ timeout: 10 }), true);
      assert.ok(lock.fencingToken! > token);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await go.set();
    const outcome = (await out.get({ timeout: 30 })) as { name: string; message: string };
    assert.equal(outcome.name, 'ValueError');
    assert.match(outcome.message, /lease had expired/);
    await holder.join(30);
    assert.equal(holder.exitcode, 0);
    await lock.release(); // still ours: the late release did not touch it
    for (const o of objects) await o.close();
  });

  it('RLock: owned by one process and thread; another process cannot release it', async () => {
    const c = ctx();
    const lock = c.RLock();
    const out = c.Queue();
    assert.ok(await lock.acquire());
    assert.ok(await lock.acquire());
    const p = start(releaseForeign, [lock, out]);
    assert.equal(await out.get({ timeout: 60 }), 'ValueError');
    await p.join();
    await lock.release();
    await lock.release();
    await assert.rejects(lock.release(), /not owned/);
    // A plain Lock has no owner: another process may release it.
    const plain = c.Lock();
    await plain.acquire();
    start(releaseForeign, [plain, out]);
    assert.equal(await out.get({ timeout: 60 }), 'released');
    assert.equal(await plain.acquire(false), true);
    await plain.release();
    for (const o of [lock, out, plain]) await o.close();
  });

  it('Value: atomic adds, and read-modify-writes under its lock, from 3 processes lose nothing', async () => {
    const c = ctx();
    const atomic = c.Value('i', 0);
    const locked = c.Value('i', 0);
    const n = 100;
    const ps = [0, 1, 2].map(() => start(addMany, [atomic, locked, n]));
    for (const p of ps) {
      await p.join();
      assert.equal(p.exitcode, 0);
    }
    assert.equal(await atomic.get(), 3 * n);
    assert.equal(await locked.get(), 3 * n);
    for (const v of [atomic, locked]) await v.close();
  });

  it('Barrier: 3 processes and this one pass 5 cycles in lockstep; each cycle gives indices 0..3', async () => {
    const c = ctx();
    const barrier = c.Barrier(4);
    const out = c.Queue<number>();
    const cycles = 5;
    const ps = [0, 1, 2].map(() => start(waitAtBarrier, [barrier, cycles, out]));
    for (let i = 0; i < cycles; i++) {
      const mine = await barrier.wait(60);
      const theirs = [await out.get({ timeout: 60 }), await out.get({ timeout: 60 }), await out.get({ timeout: 60 })];
      assert.deepEqual([mine, ...theirs].sort(), [0, 1, 2, 3]);
    }
    for (const p of ps) await p.join();
    assert.equal(await barrier.nWaiting, 0);
    assert.equal(await barrier.broken, false);
    for (const o of [barrier, out]) await o.close();
  });

  it('Condition: notify wakes a waiter in another process; JoinableQueue.join waits for its consumers', async () => {
    const c = ctx();
    const cond = c.Condition();
    const ready = c.Queue<string>();
    const out = c.Queue<string>();
    const p = start(waitForNotify, [cond, ready, out]);
    assert.equal(await ready.get({ timeout: 60 }), 'waiting');
    await cond.acquire(); // the waiter released it in wait()
    await cond.notify();
    await cond.release();
    assert.equal(await out.get({ timeout: 30 }), 'woken');
    await p.join();

    const jq = c.JoinableQueue<number | null>();
    const sum = c.Value('i', 0);
    for (let i = 1; i <= 100; i++) await jq.put(i);
    const consumers = [start(drain, [jq, sum]), start(drain, [jq, sum])];
    await jq.put(null);
    await jq.put(null);
    await jq.join();
    assert.equal(await sum.get(), 5050);
    for (const q of consumers) await q.join();
    for (const o of [cond, ready, out, jq, sum]) await o.close();
  });

  it('a pool task writes to a manager dict and list; the manager shutdown deletes them', async () => {
    const c = ctx();
    await using manager = await c.Manager();
    const d = await manager.dict<number, number>();
    const l = await manager.list<number>();
    await using pool = new c.Pool(2);
    const xs = Array.from({ length: 20 }, (_, i) => i);
    assert.deepEqual(await pool.starmap(record, xs.map((x) => [d, l, x] as [typeof d, typeof l, number])), xs);
    assert.equal(await d.len(), 20);
    assert.equal(await d.getItem(7), 49);
    assert.deepEqual((await l.copy()).sort((a, b) => a - b), xs);
  });

  it('objects of this machine cannot go to a redis process, nor redis objects to a local one (ValueError)', async () => {
    const c = ctx();
    assert.throws(() => start(forever, [new mp.Lock()]), (e: Error) => e.name === 'ValueError' && /another machine/.test(e.message));
    const q = c.Queue();
    const local = mp.getContext('spawn');
    const p = new local.Process({ target: forever, args: [q] });
    assert.throws(() => p.start(), (e: Error) => e.name === 'ValueError' && /lives in Redis/.test(e.message));
    await assert.rejects(q.put(new mp.Lock()), (e: Error) => e.name === 'ValueError');
    await q.close();
  });

  it('leaves nothing in Redis: closed objects at once, killed holders\' after keyTtl', async () => {
    await until('no mp: keys left', async () => (await server.mpKeys()).length === 0, 30_000).catch(async (error) => {
      throw new Error(`${(error as Error).message}: ${(await server.mpKeys()).join(' ')}`);
    });
  });
});
