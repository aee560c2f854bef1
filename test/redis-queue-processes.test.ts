// A redis Queue between separate programs: 2 producers and 2 consumers, Processes run by real
// worker programs, 100,000 items, each got exactly once and in order per producer, nothing left in
// Redis. A file of its own: it takes most of a file's time budget on a loaded machine.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { redisForTests } from './redisServer.js';
import { until } from './redisWorkers.js';
import { objectProcesses } from './redisObjectsHarness.js';
import { consume, produce } from './fixtures/redis/objects.js';

const redis = await redisForTests({ db: 8 });
after(() => redis.server?.close());

describe('a redis Queue across processes', { skip: redis.skip }, () => {
  const server = redis.server!;
  const { ctx, start } = objectProcesses(server);

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
    for (const p of consumers) {
      await p.join();
      assert.equal(p.exitcode, 0);
    }
    const got = [await results.get({ block: false }), await results.get({ block: false })]; // put before they exited
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

  it('leaves nothing in Redis', async () => {
    await until('no mp: keys left', async () => (await server.mpKeys()).length === 0, 30_000);
  });
});
