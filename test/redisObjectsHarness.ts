// What the test files of the redis objects across programs share: worker programs that import the
// objects' fixtures, a redis context on the test's server, and Processes started on the workers,
// killed and joined at the end.
import { after, before } from 'node:test';
import * as mp from '../src/index.js';
import type { TestRedis } from './redisServer.js';
import { startWorkers, stopAll, type TestWorker } from './redisWorkers.js';

const objectsModule = 'test/fixtures/redis/objects.ts';

/** Registers the suite's hooks (call inside `describe`); `start` runs a fixture as a Process. */
export function objectProcesses(server: TestRedis) {
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

  return { ctx, start };
}
