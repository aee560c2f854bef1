// The redis context's objects across programs: Processes run by real worker programs (separate
// processes, as on other machines) share queues, locks, events, barriers, values and a manager's
// containers through Redis; a holder killed with SIGKILL loses its lock when its lease ends; a
// late release raises; nothing is left in Redis afterwards.
import { describe, it, after, before } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import { redisForTests } from './redisServer.js';
import { startWorkers, stopAll, until, type TestWorker } from './redisWorkers.js';
import {
  addMany, consume, drain, forever, holdLock, produce, record, releaseForeign, waitAtBarrier, waitForNotify,
} from './fixtures/redis/objects.js';

const redis = await redisForTests({ db: 6 });
after(() => redis.server?.close());

const objectsModule = 'test/fixtures/redis/objects.ts';

describe('redis objects across processes', { skip: redis.skip }, () => {
  const server = redis.server!;
  let workers: TestWorker[] = [];
  // A short keyTtl: the keys of the processes killed here expire within the test.
  const ctx = () => mp.getContext('redis', { url: server.url, keyTtl: 2 });
  const started = new Set<mp.Process>();

  function start(target: (...args: never[]) => unknown, args: unknown[]): mp.Process {
    const p = new (ctx().Process)({ target: target as (...a: unknown[]) => unknown, args });
    p.start();
    started.add(p);
    return p;
  }

  before(async () => {
    workers = await startWorkers(server.url, 2, { imports: [objectsModule] });
  });

  after(async () => {
    for (const p of started) if (p.exitcode === null) p.kill();
    await Promise.all([...started].map((p) => p.join(30)));
    await stopAll(workers);
    await ctx().shutdown();
  });

  it('Queue: 2 producers and 2 consumers in separate processes, 100,000 items exactly once, in order per producer', async () => {
    const c = ctx();
    const q = c.Queue<[number, number] | null>();
    const results = c.Queue<Array<[number, number]>>();
    const n = 50_000;
    const t0 = performance.now();
    const consumers = [start(consume, [q, results]), start(consume, [q, results])];
    const producers = [start(produce, [q, 0, n]), start(produce, [q, 1, n])];
    for (const p of producers) {
      await p.join();
      assert.equal(p.exitcode, 0);
    }
    await q.put(null);
    await q.put(null);
    const got = [await results.get({ timeout: 60 }), await results.get({ timeout: 60 })];
    for (const p of consumers) {
      await p.join();
      assert.equal(p.exitcode, 0);
    }
    const seconds = (performance.now() - t0) / 1000;
    const seen = [new Uint8Array(n), new Uint8Array(n)];
    for (const items of got) {
      const last = [-1, -1];
      for (const [producer, i] of items) {
        assert.ok(i > last[producer!]!, `consumer saw producer ${producer}'s ${i} after ${last[producer!]}`);
        last[producer!] = i;
        seen[producer!]![i]!++;
      }
    }
    for (const s of seen) assert.ok(s.every((count) => count === 1), 'every item exactly once');
    assert.equal(got[0]!.length + got[1]!.length, 2 * n);
    assert.ok(got[0]!.length > 0 && got[1]!.length > 0, 'both consumers got items');
    assert.equal(await q.qsize(), 0);
    console.log(`# 100,000 items through a redis Queue, 2 producers and 2 consumers: ${seconds.toFixed(1)} s`);
    await q.close();
    await results.close();
  });

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
    const v = c.Value('i', 0);
    const n = 100;
    for (const locked of [false, true]) {
      const ps = [0, 1, 2].map(() => start(addMany, [v, n, locked]));
      for (const p of ps) {
        await p.join();
        assert.equal(p.exitcode, 0);
      }
    }
    assert.equal(await v.get(), 2 * 3 * n);
    await v.close();
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
