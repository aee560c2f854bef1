// The worker program: what it refuses to run, Processes on the redis context, and what a program
// that never uses the redis context loads.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as mp from '../src/index.js';
import { runProgram } from './helpers.js';
import { redisForTests } from './redisServer.js';
import { repoRoot, startWorkers, stopAll, tasksModule, until } from './redisWorkers.js';
import { double, exitWith, fails, sleepFor, whoRuns } from './fixtures/redis/tasks.js';
import { triple } from './fixtures/redis/other.js';

const redis = await redisForTests({ db: 4 });
after(() => redis.server?.close());

describe('redis worker: what it refuses', { skip: redis.skip }, () => {
  const server = redis.server!;

  it('a module it was not told to import, and a function sent as source, unless --allow-source', async () => {
    const [worker] = await startWorkers(server.url, 1);
    try {
      const ctx = mp.getContext('redis', { url: server.url });
      await using pool = new ctx.Pool(1);
      await assert.rejects(pool.apply(triple, [1]), (e: Error) => {
        assert.equal(e.name, 'UnpicklingError');
        assert.match(e.message, /Refused to run .*test\/fixtures\/redis\/other\.ts.*--import \.\/test\/fixtures\/redis\/other\.ts/);
        return true;
      });
      await assert.rejects(pool.apply((x: number) => x + 1, [1]), (e: Error) => {
        assert.equal(e.name, 'UnpicklingError');
        assert.match(e.message, /sent as source.*--allow-source/);
        return true;
      });
      assert.equal(await pool.apply(double, [21]), 42, 'the worker goes on with allowed tasks');
      await worker!.waitFor(/Refused to run/);
    } finally {
      await stopAll([worker!]);
    }
    const [open] = await startWorkers(server.url, 1, { allowSource: true });
    try {
      const ctx = mp.getContext('redis', { url: server.url });
      await using pool = new ctx.Pool(1);
      assert.equal(await pool.apply((x: number) => x + 1, [1]), 2);
    } finally {
      await stopAll([open!]);
    }
    assert.deepEqual(await server.mpKeys(), []);
  });

  it('a worker whose copy of the module differs fails the task instead of running other code', async () => {
    // Another project (another machine, say) with the same path but a changed file.
    const project = mkdtempSync(join(tmpdir(), 'mp-redis-project-'));
    try {
      writeFileSync(join(project, 'package.json'), '{ "type": "module" }\n');
      symlinkSync(join(repoRoot, 'src'), join(project, 'src'));
      symlinkSync(join(repoRoot, 'node_modules'), join(project, 'node_modules'));
      mkdirSync(join(project, 'test/fixtures/redis'), { recursive: true });
      const changed = `${readFileSync(join(repoRoot, tasksModule), 'utf8')}\n// deployed from another commit\n`;
      writeFileSync(join(project, tasksModule), changed);
      cpSync(join(repoRoot, 'test/fixtures/redis/other.ts'), join(project, 'test/fixtures/redis/other.ts'));
      const [worker] = await startWorkers(server.url, 1, { cwd: project });
      try {
        const ctx = mp.getContext('redis', { url: server.url });
        await using pool = new ctx.Pool(1);
        await assert.rejects(pool.apply(double, [1]), (e: Error) => {
          assert.equal(e.name, 'UnpicklingError');
          assert.match(e.message, /test\/fixtures\/redis\/tasks\.ts differs from the caller's \(sha256 [0-9a-f]{16} here, [0-9a-f]{16} there\)/);
          return true;
        });
      } finally {
        await stopAll([worker!]);
      }
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
    assert.deepEqual(await server.mpKeys(), []);
  });
});

describe('Process on the redis context', { skip: redis.skip }, () => {
  const server = redis.server!;

  it('start() runs the target on a worker; join() and exitcode report it; terminate() stops it', async () => {
    const [worker] = await startWorkers(server.url, 1, { processes: 2 });
    try {
      const ctx = mp.getContext('redis', { url: server.url });
      const ok = new ctx.Process({ target: whoRuns, args: [1] });
      assert.equal(ok.exitcode, null);
      ok.start();
      await ok.join(60);
      assert.equal(ok.exitcode, 0);
      assert.equal(typeof ok.pid, 'number');
      assert.equal(ok.isAlive(), false);
      const three = new ctx.Process({ target: exitWith, args: [3] });
      const failing = new ctx.Process({ target: fails, args: ['in a process'] });
      three.start();
      failing.start();
      await Promise.all([three.join(60), failing.join(60)]);
      assert.equal(three.exitcode, 3);
      assert.equal(failing.exitcode, 1);
      await worker!.waitFor(/RangeError: in a process/);
      const long = new ctx.Process({ target: sleepFor, args: [60_000] });
      long.start();
      await until('it to start on the worker', () => long.pid !== null);
      long.terminate();
      await long.join(60);
      assert.equal(long.exitcode, -15);
    } finally {
      await stopAll([worker!]);
    }
    assert.deepEqual(await server.mpKeys(), []);
  });
});

describe('a program that does not use the redis context', () => {
  it('does not load ioredis; using the context does', async () => {
    const program = new URL('./fixtures/redis/import-check.ts', import.meta.url);
    const r = await runProgram(program, redis.server ? [redis.server.url] : []);
    assert.match(r.stdout, /^after import: false$/m, r.stderr);
    if (redis.server) {
      assert.match(r.stdout, /^after getContext and Pool: false$/m);
      assert.match(r.stdout, /^after using it: true$/m);
    }
  });
});
