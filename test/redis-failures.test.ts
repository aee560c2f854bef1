// What the redis context's pool does when things fail: workers joining, leaving, killed; a poison
// task; a slow worker; the producer killed; Redis stopped and started. Real worker programs and a
// real redis-server.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as mp from '../src/index.js';
import { redisForTests, type TestRedis } from './redisServer.js';
import { repoRoot, startWorkers, stopAll, TestWorker, until } from './redisWorkers.js';
import { double, poisonSeven, sleepFor, sleepy, sleepyItem, slowDouble } from './fixtures/redis/tasks.js';

const redis = await redisForTests({ db: 3 });
after(() => redis.server?.close());

/** The entries of a pool's stream pending with one consumer (XPENDING). */
async function pendingWith(server: TestRedis, pool: mp.RedisPool, consumer: string): Promise<unknown[]> {
  return (await server.command('XPENDING', `mp:pool:${pool.id}:tasks`, 'workers', '-', '+', 1000, consumer)) as unknown[];
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('redis pool: workers come, go and die', { skip: redis.skip }, () => {
  const server = redis.server!;

  it('workers join and leave while a map runs; every result comes back, in order', async () => {
    const [first] = await startWorkers(server.url, 1, { env: { MP_TEST_WORKER: 'first' } });
    const ctx = mp.getContext('redis', { url: server.url, claimIdle: 1 });
    const late: TestWorker[] = [];
    try {
      await using pool = new ctx.Pool(2);
      // An input that goes on until the workers have come and gone (imap reads it lazily).
      let more = true;
      function* items() {
        for (let i = 0; more || i % 50 !== 0; i++) yield i;
      }
      const done: Array<{ x: number; worker: string }> = [];
      const consuming = (async () => {
        for await (const r of pool.imap(sleepyItem, items(), 1)) done.push(r);
      })();
      await until('the first results', () => done.length >= 20);
      late.push(...(await startWorkers(server.url, 2, { env: { MP_TEST_WORKER: 'late' } })));
      await until('the late workers to run tasks', () => done.filter((r) => r.worker === 'late').length >= 10);
      // The first worker leaves cleanly (SIGTERM) while the map runs: it finishes what it holds.
      const { code } = await first!.stop();
      assert.equal(code, 0);
      const left = done.length;
      await until('more results without it', () => done.length >= left + 20);
      more = false;
      await consuming;
      assert.deepEqual(done.map((r) => r.x), range(done.length));
      assert.ok(done.some((r) => r.worker === 'first'));
      assert.deepEqual(new Set(late.map((w) => /runs .*sleepyItem/.test(w.output))), new Set([true]));
    } finally {
      await stopAll([first!, ...late]);
    }
    assert.deepEqual(await server.mpKeys(), []);
  });

  it('a worker SIGKILLed 10 times during one imap of 10,000 items: every result exactly once, in order', async () => {
    const base = await startWorkers(server.url, 2, { processes: 1 });
    // A victim may take over a task of the one killed before it and die holding it too: under load
    // one task went to three victims in a row and was failed as a poison task (maxDeliveries, its
    // own test below). Here no task may fail, so no task can reach the cap: 10 kills, 12 deliveries.
    const ctx = mp.getContext('redis', { url: server.url, claimIdle: 0.5, maxDeliveries: 12 });
    let kills = 0;
    try {
      await using pool = new ctx.Pool(2);
      const n = 10_000;
      const results: number[] = [];
      // The consumer pauses every 900 items until the next kill is done, so that the map is still
      // running for all ten kills (its read-ahead keeps the stream stocked meanwhile).
      let allowed = 900;
      let resume = null as (() => void) | null;
      const consuming = (async () => {
        for await (const v of pool.imap(double, range(n), 1)) {
          results.push(v);
          while (results.length >= allowed) await new Promise<void>((r) => (resume = r));
        }
      })();
      // The next victim starts while this one is killed and its tasks taken over (on threads: a
      // victim starts sooner, and dies whole all the same).
      const victimOptions = (k: number) => ({ context: 'thread' as const, env: { MP_TEST_WORKER: `victim${k}` } });
      let next = new TestWorker(server.url, victimOptions(0));
      for (; kills < 10; kills++) {
        const victim = next;
        await victim.ready();
        if (kills < 9) next = new TestWorker(server.url, victimOptions(kills + 1));
        allowed += 900;
        resume?.();
        // Stop it once it holds tasks, wait until Redis shows them pending with it, then kill it:
        // the kill always orphans real work.
        await until('the victim to hold tasks', async () => (await pendingWith(server, pool, victim.consumer!)).length > 0);
        victim.child.kill('SIGSTOP');
        await until('its tasks to show in XPENDING', async () => (await pendingWith(server, pool, victim.consumer!)).length > 0);
        await victim.kill();
      }
      allowed = Infinity;
      resume?.();
      await consuming;
      assert.equal(results.length, n);
      for (let i = 0; i < n; i++) if (results[i] !== 2 * i) assert.fail(`result ${i} is ${results[i]}`);
    } finally {
      await stopAll(base);
    }
    assert.ok(base.some((w) => /took over a task/.test(w.output)), 'the survivors took over the victims\' tasks');
    assert.equal(kills, 10);
    assert.deepEqual(await server.mpKeys(), []);
  });

  /** Runs `outcomes` with two workers kept alive (a new one for each that dies). */
  async function withPoison(outcomes: (pool: mp.RedisPool) => Promise<Array<number | string>>, expected: Array<number | string>): Promise<void> {
    const ctx = mp.getContext('redis', { url: server.url, claimIdle: 0.5, maxDeliveries: 2 });
    const workers: TestWorker[] = [];
    let supervising = true;
    const keepTwo = async (): Promise<void> => {
      while (supervising) {
        const alive = workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
        if (alive.length < 2) {
          const w = new TestWorker(server.url, { env: { MP_TEST_WORKER: `w${workers.length}` } });
          workers.push(w);
          await w.ready().catch(() => {});
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const supervisor = keepTwo();
    try {
      await using pool = new ctx.Pool(2);
      assert.deepEqual(await outcomes(pool), expected);
    } finally {
      supervising = false;
      await supervisor;
      await stopAll(workers);
    }
    assert.deepEqual(await server.mpKeys(), []);
  }

  /** A result, or the name of the error, which must be the poison's WorkerLostError. */
  const outcomeOf = async (result: Promise<number>): Promise<number | string> =>
    result.catch((e: Error) => {
      assert.match(e.message, /died .*maxDeliveries/);
      return e.name;
    });

  const poisoned = (n: number) => range(n).map((x) => (x === 7 ? 'WorkerLostError' : 2 * x));

  it('a poison task (it kills every worker that takes it) fails alone with WorkerLostError', async () => {
    await withPoison(async (pool) => {
      const outcomes: Array<number | string> = [];
      const it = pool.imap(poisonSeven, range(20), 1);
      for (let i = 0; i < 20; i++) outcomes.push(await outcomeOf(it.next(120).then((r) => r.value)));
      return outcomes;
    }, poisoned(20));
  });

  it('a poison task sent in a pack fails alone: the pack\'s other tasks run again, each alone', async () => {
    // 64 calls in one go travel as packs of 4 (stream.ts): the first worker that takes the poison's
    // pack dies with all four; they come back one at a time and only the poison fails.
    await withPoison((pool) => Promise.all(range(64).map((i) => outcomeOf(pool.applyAsync(poisonSeven, [i]).get(120)))), poisoned(64));
  });

  it('a slow worker does not hold back a map: work is pulled, not dealt out', async () => {
    const [fast] = await startWorkers(server.url, 1, { env: { MP_TEST_WORKER: 'fast' } });
    const [slow] = await startWorkers(server.url, 1, { env: { MP_TEST_WORKER: 'slow', MP_TEST_SLOW: '50' } });
    try {
      const ctx = mp.getContext('redis', { url: server.url });
      await using pool = new ctx.Pool(2);
      const results = await pool.starmap(sleepy, range(100).map((i) => [i, 4] as [number, number]), 1);
      assert.deepEqual(results.map((r) => r.x), range(100));
      const bySlow = results.filter((r) => r.worker === 'slow').length;
      // Dealt out evenly, the slow one would run 50 tasks (50 x 200 ms); pulling, it runs a few.
      assert.ok(bySlow <= 15, `the slow worker ran ${bySlow} of 100 tasks`);
    } finally {
      await stopAll([fast!, slow!]);
    }
    assert.deepEqual(await server.mpKeys(), []);
  });

  it('a task longer than claimIdle keeps its claim; SIGTERM lets a worker finish what it runs', async () => {
    const workers = await startWorkers(server.url, 2);
    try {
      const ctx = mp.getContext('redis', { url: server.url, claimIdle: 0.3 });
      await using pool = new ctx.Pool(2);
      assert.deepEqual(await pool.map(sleepFor, [1500, 1500], 1), [1500, 1500]);
      for (const w of workers) assert.doesNotMatch(w.output, /took over/);
      const running = pool.apply(sleepFor, [1500]);
      let holder: TestWorker | undefined;
      await until('a worker to hold it', async () => {
        for (const w of workers) if ((await pendingWith(server, pool, w.consumer!)).length > 0) holder = w;
        return holder !== undefined;
      });
      const stopped = holder!.stop();
      assert.equal(await running, 1500);
      assert.equal((await stopped).code, 0);
    } finally {
      await stopAll(workers);
    }
    assert.deepEqual(await server.mpKeys(), []);
  });

  it("a killed producer's keys expire", async () => {
    const child = spawn(process.execPath, [...process.execArgv.filter((a) => !a.startsWith('--test')), 'test/fixtures/redis/producer.ts', server.url, '1'], {
      cwd: repoRoot,
      stdio: 'ignore',
    });
    await until('the pool to exist', async () => (await server.mpKeys()).some((k) => k.endsWith(':tasks')));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    await until('its keys to expire', async () => (await server.mpKeys()).length === 0, 10_000);
  });
});

const restartable = await redisForTests({ db: 0, privateServer: true });
after(() => restartable.server?.close());

describe('redis pool: Redis stopped and started mid-map', { skip: restartable.skip }, () => {
  it('the map resumes and completes; a call with a timeout fails within it meanwhile', async () => {
    const server = restartable.server!;
    const workers = await startWorkers(server.url, 1, { processes: 2 });
    try {
      const ctx = mp.getContext('redis', { url: server.url, claimIdle: 1 });
      await using pool = new ctx.Pool(2);
      let done = 0;
      const mapping = pool.mapAsync(slowDouble, range(600), 1, { progress: (n) => (done = n) });
      await until('a third of the map', () => done >= 200);
      await server.stop!();
      const during = pool.applyAsync(slowDouble, [1]);
      await assert.rejects(during.get(0.3), mp.TimeoutError);
      await server.start!();
      assert.deepEqual(await mapping.get(120), range(600).map((x) => 2 * x));
      assert.equal(await during.get(60), 2);
    } finally {
      await stopAll(workers);
    }
    assert.deepEqual(await server.mpKeys(), []);
  });
});
