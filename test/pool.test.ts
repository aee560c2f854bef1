import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { MessageChannel } from 'node:worker_threads';
import * as mp from '../src/index.js';
import { Pool, ThreadPool, AsyncResult } from '../src/pool.js';
import {
  add, checksum, dieOn, dieOnWith, echoBytes, exitOn, failOn, initialize, readState, returnsFunction, sleepThen, spin, square, unloadableTask,
  bufferOf, bytesKinds, gateWorkers, gatedTask, queueCounting, sometimesLater, viewSizes, whereAmI, whoAmI, zeroFill,
} from './fixtures/pool/tasks.js';
import { gatedInput, imapAcrossClose, runProgram, startMethods } from './helpers.js';
import { run } from '../src/poolWorker.js';
import { CALL, MAP_CHUNK } from '../src/poolChannel.js';

const workerPrefix = { spawn: 'SpawnPoolWorker', forkserver: 'ForkServerPoolWorker', thread: 'ThreadPoolWorker' };

for (const method of startMethods) {
  describe(`Pool on '${method}'`, () => {
    const context = mp.getContext(method);
    const pools: Pool[] = [];
    const make = (processes = 2, options: ConstructorParameters<typeof Pool>[1] = {}) => {
      const pool = new Pool(processes, { ...options, context });
      pools.push(pool);
      return pool;
    };
    const shared = make();
    after(async () => {
      for (const pool of pools) pool.terminate();
      await Promise.all(pools.map((p) => p.join()));
    });

    it('a callback or errorCallback that throws surfaces as an uncaught exception, and the other results arrive', { timeout: 120_000 }, async () => {
      const r = await runProgram(new URL('./fixtures/pool/throwingCallbacks.ts', import.meta.url), [method], 120_000);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      assert.deepEqual(lines.filter((l) => l.startsWith('uncaught: ')).sort(), [
        'uncaught: from callback', 'uncaught: from errorCallback', 'uncaught: from map callback', 'uncaught: from map errorCallback',
      ]);
      assert.deepEqual(lines.filter((l) => !l.startsWith('uncaught: ')), [
        'others [1,4,9,16]', 'applied 9', 'failed RangeError', 'mapped [1,4,9]', 'failedMap RangeError', 'done',
      ]);
    });

    it('a chunk mixes results returned at once and through promises; a throw or a rejection mid-chunk fails the map', { timeout: 30_000 }, async () => {
      assert.deepEqual(await shared.map(sometimesLater, [0, 1, 2, 3, 4, 5, 6, 8], 4), [0, 10, 20, 30, 40, 50, 60, 80]);
      assert.deepEqual(await shared.map(sometimesLater, [1, 2, 3], 1), [10, 20, 30]);
      await assert.rejects(shared.map(sometimesLater, [5, 6, 7, 8], 4), { name: 'RangeError', message: 'rejected by 7' });
      await assert.rejects(shared.map(sometimesLater, [1, 2, 9, 4], 4), { name: 'RangeError', message: 'thrown by 9' });
      assert.equal(await shared.apply(sometimesLater, [3]), 30);
      await assert.rejects(shared.apply(sometimesLater, [9]), { message: 'thrown by 9' });
    });

    it('join() and IMapIterator.next() take { signal } (docs/api.md rule 6)', { timeout: 30_000 }, async () => {
      const pool = make(1);
      const it = pool.imap(sleepThen, [0.05], 1);
      const reason = new Error('stop waiting');
      await assert.rejects(it.next(null, { signal: AbortSignal.abort(reason) }), (e) => e === reason);
      const controller = new AbortController();
      const slow = it.next(null, { signal: controller.signal });
      controller.abort(reason);
      await assert.rejects(slow, (e) => e === reason);
      assert.deepEqual(await it.next(), { value: undefined, done: false }, 'the result is still there for the next call');
      pool.close();
      const joining = pool.join({ signal: AbortSignal.abort(reason) });
      await assert.rejects(joining, (e) => e === reason);
      await pool.join();
    });

    it('a task the workers cannot load fails with PicklingError; the workers live on (no endless restarts)', { timeout: 30_000 }, async () => {
      const pool = make(1);
      const before = await pool.apply(whoAmI, []);
      const bad = unloadableTask();
      await assert.rejects(pool.apply(bad, [1]), (e: Error) => e.name === 'PicklingError' && /top le/.test(e.message));
      await assert.rejects(pool.map(bad, [1, 2, 3]), (e: Error) => e.name === 'PicklingError');
      assert.equal(await pool.apply(whoAmI, []), before, 'the same worker (name and pid) is still serving');
      assert.match(before, new RegExp(`^${workerPrefix[method]}-`));
      assert.equal(await pool.apply(square, [3]), 9);
    });

    it('map, starmap, apply and their async forms return Python\'s results', async () => {
      assert.deepEqual(await shared.map(square, [3, 4, 5, 6]), [9, 16, 25, 36]);
      assert.deepEqual(await shared.map(square, [], 4), []);
      assert.deepEqual(await shared.map(square, new Set([1, 2, 3]), 2), [1, 4, 9]);
      assert.deepEqual(await shared.starmap(add, [[1, 2], [3, 4]]), [3, 7]);
      assert.equal(await shared.apply(add, [2, 3]), 5);
      const r = shared.applyAsync(square, [7]);
      assert.ok(r instanceof AsyncResult);
      assert.equal(await r.get(), 49);
      assert.equal(r.ready(), true);
      assert.equal(r.successful(), true);
      const m = shared.mapAsync(square, [1, 2, 3]);
      await m.wait();
      assert.deepEqual(await m.get(), [1, 4, 9]);
      assert.deepEqual(await shared.starmapAsync(add, [[5, 5]]).get(), [10]);
      async function* numbers() {
        yield 1;
        yield 2;
      }
      assert.deepEqual(await shared.map(square, numbers()), [1, 4]);
      assert.equal(await shared.apply((a: number, b: number) => a * b, [6, 7]), 42, 'a self-contained function by source');
    });

    it('names workers as Python does', async () => {
      const names = new Set<string>();
      for (let i = 0; i < 20 && names.size < 2; i++) {
        const got = await Promise.all([shared.apply(whoAmI), shared.apply(whoAmI), shared.apply(whoAmI)]);
        for (const g of got) names.add(g.split(':')[0]!);
      }
      for (const name of names) assert.match(name, new RegExp(`^${workerPrefix[method]}-\\d+$`));
    });

    it('callbacks, AsyncResult timeouts and not-ready errors', async () => {
      const seen: unknown[] = [];
      const ok = shared.applyAsync(square, [3], { callback: (v) => seen.push(v) });
      const bad = shared.applyAsync(failOn, [3], { errorCallback: (e) => seen.push(e.name) });
      await ok.wait();
      await bad.wait();
      assert.deepEqual(seen.sort(), [9, 'RangeError'].sort());
      assert.equal(bad.successful(), false);
      // 2 s against a 0.05 s timeout: at load 11 (CI beside other benches) a 0.5 s task's result
      // once came in the same turn of the event loop as the timer, and won.
      const slow = shared.applyAsync(sleepThen, [2, 'late']);
      assert.throws(() => slow.successful(), mp.ValueError);
      await assert.rejects(slow.get(0.05), mp.TimeoutError);
      assert.equal(await slow.get(), 'late');
    });

    it('a task\'s error reaches the caller with its class, message and remote stack; other tasks survive', async () => {
      await assert.rejects(shared.map(failOn, [1, 2, 3, 4], 1), (e: Error) => {
        assert.ok(e instanceof RangeError);
        assert.equal(e.message, 'bad item 3');
        assert.equal((e.cause as Error).name, 'RemoteTraceback');
        assert.match((e.cause as Error).message, /tasks\.ts/);
        return true;
      });
      assert.deepEqual(await shared.map(square, [2]), [4], 'the pool goes on');
    });

    it('unserialisable arguments and results fail their own task with PicklingError', async () => {
      await assert.rejects(shared.apply(square, [(() => 1) as never]), mp.PicklingError);
      await assert.rejects(shared.apply(returnsFunction), mp.PicklingError);
      await assert.rejects(shared.apply((x: number) => x + captured, [1]), /captured/);
      assert.equal(await shared.apply(square, [3]), 9);
    });

    it('payloads larger than a channel ring arrive whole, both ways; { transfer: true } moves them on threads', async () => {
      const big = new Uint8Array(3 << 20).map((_, i) => i % 251);
      const expected = big.reduce((a, x) => (a + x) % 1_000_003, 0);
      assert.equal(await shared.apply(checksum, [big]), expected);
      const back = await shared.apply(echoBytes, [big]);
      assert.deepEqual(back, big);
      const moved = big.slice();
      assert.equal(await shared.apply(checksum, [moved], { transfer: true }), expected);
      assert.equal(moved.length, method === 'thread' ? 0 : big.length, 'moved (threads) or copied (processes)');
      const results = await shared.map(checksum, [big, big, big], 1);
      assert.deepEqual(results, [expected, expected, expected]);
      // Without transfer, the worker has a copy: what it does to it is not seen here.
      assert.equal(await shared.apply(zeroFill, [big]), big.length);
      assert.equal(big.reduce((a, x) => (a + x) % 1_000_003, 0), expected, 'the caller\'s bytes are unchanged');
    });

    it('a Buffer stays a Buffer and a Uint8Array a Uint8Array, small or large, copied or moved, both ways', async () => {
      for (const size of [16, 1 << 20]) {
        const kinds = [`Buffer:true:${size}`, `Uint8Array:false:${size}`];
        assert.deepEqual(await shared.apply(bytesKinds, [Buffer.alloc(size), new Uint8Array(size)]), kinds);
        assert.deepEqual(await shared.apply(bytesKinds, [Buffer.alloc(size), new Uint8Array(size)], { transfer: true }), kinds);
        assert.deepEqual(await shared.starmap(bytesKinds, [[Buffer.alloc(size)], [new Uint8Array(size)]]), [[kinds[0]], [kinds[1]]]);
        const back = await shared.apply(bufferOf, [size]);
        assert.ok(Buffer.isBuffer(back), 'the result is a Buffer');
        assert.equal(back.length, size);
        assert.ok(Buffer.isBuffer(await shared.apply(bufferOf, [size], { transfer: true })));
      }
    });

    it('a view of part of a large buffer sends its own bytes only; large bytes with a MessagePort fail and in shared memory are copied, as small ones', async () => {
      const whole = new Uint8Array(4 << 20);
      for (const view of [whole.subarray(65536, 2 * 65536), Buffer.from(whole.buffer, 0, 65536)]) {
        const [length, bufferLength] = await shared.apply(viewSizes, [view]);
        assert.equal(length, 65536);
        if (method === 'thread') assert.ok(bufferLength < 2 * 65536, `the worker got a ${bufferLength}-byte buffer for 64 KiB`);
      }
      const pool = make(1, { maxtasksperchild: 1 });
      const { port1, port2 } = new MessageChannel();
      for (const bytes of [new Uint8Array(16), new Uint8Array(1 << 20)]) {
        // A port among the arguments: not something a task takes (the types say so too).
        await assert.rejects(pool.apply(bytesKinds, [bytes, port1 as unknown as Uint8Array]), { name: 'PicklingError' });
      }
      port1.close();
      port2.close();
      for (const size of [16, 1 << 20]) {
        const [length] = await pool.apply(viewSizes, [new Uint8Array(new SharedArrayBuffer(size))]);
        assert.equal(length, size, 'a view of shared memory is copied, whatever its size');
      }
      assert.equal((await pool.apply(viewSizes, [new Uint8Array(8)]))[0], 8, 'the worker still takes tasks');
    });

    it('microtasks a task queues run while its worker is busy, not only when it runs out of tasks', async () => {
      const pool = make(1);
      const seen = await pool.map(queueCounting, Array.from({ length: 3000 }, () => null), 1);
      const lag = Math.max(...seen.map((count, i) => i - count));
      assert.ok(lag <= 48, `a task saw ${lag} of the microtasks queued before it not yet run`);
    });

    it('large chunks with the default chunking, map after map (results larger than the port threshold)', async () => {
      const xs = Array.from({ length: 80_000 }, (_, i) => i);
      for (let round = 0; round < 3; round++) {
        const out = await shared.map(square, xs);
        assert.equal(out.length, xs.length);
        assert.equal(out[79_999], 79_999 * 79_999);
      }
    });

    it('imap keeps order, imapUnordered does not wait for slow items, a failed item does not stop iteration', async () => {
      const ordered: number[] = [];
      for await (const v of shared.imap(square, [1, 2, 3, 4, 5], 2)) ordered.push(v);
      assert.deepEqual(ordered, [1, 4, 9, 16, 25]);
      const unordered: unknown[] = [];
      for await (const v of shared.imapUnordered(sleepThen, [[0.3, 'slow'], [0, 'fast']].map(([s, v]) => s as number), 1)) unordered.push(v);
      const it = shared.imap(failOn, [1, 2, 3, 4]);
      const values: unknown[] = [];
      for (let i = 0; i < 4; i++) {
        try {
          values.push((await it.next()).value);
        } catch (e) {
          values.push((e as Error).name);
        }
      }
      assert.deepEqual(values, [1, 2, 'RangeError', 4]);
      assert.equal((await it.next()).done, true);
      const slowIt = shared.imap(sleepThen, [2], 1);
      await assert.rejects(slowIt.next(0.05), mp.TimeoutError);
      assert.equal(unordered.length, 2);
    });

    it('imap reads an endless generator lazily, with a bounded number of items in flight', async () => {
      let produced = 0;
      function* forever() {
        for (let i = 0; ; i++) {
          produced++;
          yield i;
        }
      }
      const it = shared.imap(square, forever());
      let sum = 0;
      const heapBefore = process.memoryUsage().heapUsed;
      for (let i = 0; i < 20_000; i++) sum += (await it.next()).value as number;
      await it.return();
      assert.equal(sum, Array.from({ length: 20_000 }, (_, i) => i * i).reduce((a, b) => a + b, 0));
      assert.ok(produced < 20_000 + 2_000, `read ahead at most a bounded window (read ${produced})`);
      assert.ok(process.memoryUsage().heapUsed - heapBefore < 64 * 1024 * 1024, 'memory stays flat');
    });

    it('close() while an imap still reads its input: the rest is read and run (as Python), then join() returns', { timeout: 60_000 }, async () => {
      const pool = make(1);
      const { first, rest } = await imapAcrossClose(pool, square);
      assert.equal(first, 1);
      assert.deepEqual(rest, [4, 9]);
      // An input the caller stops reading (more than imap reads ahead): close() reads it to its end
      // instead of waiting for the caller, and join() returns once its tasks have run.
      const other = make(1);
      const all = other.imap(square, (function* () {
        for (let i = 0; i < 500; i++) yield i;
      })(), 1);
      assert.equal((await all.next()).value, 0);
      other.close();
      await other.join();
      await pool.join();
      let n = 1;
      for (let r = await all.next(); !r.done; r = await all.next()) assert.equal(r.value, n * n++);
      assert.equal(n, 500);
      // A call cancelled while its input waits for the caller stops reading it: join() returns.
      const third = make(1);
      const controller = new AbortController();
      const endless = third.imap(square, (function* () {
        for (let i = 0; ; i++) yield i;
      })(), 1, { signal: controller.signal });
      assert.equal((await endless.next()).value, 0);
      controller.abort();
      third.close();
      await third.join();
      await assert.rejects(async () => {
        for (;;) if ((await endless.next()).done) return; // the results read ahead, then the abort
      });
    });

    it('close() while an input is read: a worker that leaves (maxtasksperchild) is replaced; a stopped call lets the pool stop; an async map still runs', { timeout: 60_000 }, async () => {
      // The worker exits after its one task while the input waits: its replacement runs the rest.
      const gated = gatedInput();
      const pool = make(1, { maxtasksperchild: 1 });
      const it = pool.imap(square, gated.input, 1);
      pool.close();
      assert.equal((await it.next()).value, 1);
      while (pool.stats().workers === 1 && pool.stats().workersReplaced === 0) await new Promise((r) => setTimeout(r, 10));
      gated.open();
      const rest: unknown[] = [];
      for (let r = await it.next(5); !r.done; r = await it.next(5)) rest.push(r.value);
      assert.deepEqual(rest, [4, 9]);
      await pool.join();
      // A call cancelled while its input is idle (a read that never ends), or left by its caller:
      // the closed pool does not wait for that input, and nothing it yields later is read further.
      for (const stop of ['abort', 'return'] as const) {
        let read = 0;
        let release!: () => void;
        const released = new Promise<void>((resolve) => (release = resolve));
        async function* idle() {
          for (let i = 0; ; i++) {
            if (i === 1) await released;
            read++;
            yield i;
          }
        }
        const other = make(1);
        const controller = new AbortController();
        const results = other.imap(square, idle(), 10, { signal: controller.signal });
        await assert.rejects(results.next(0.2), mp.TimeoutError); // the first chunk waits on the input
        if (stop === 'abort') controller.abort();
        else await results.return();
        other.close();
        await other.join();
        release();
        await new Promise((r) => setImmediate(r)); // the reader's microtasks run before this
        assert.equal(read, 2, `${stop}: the item being read when the call stopped, and no more`);
      }
      // An iterable whose iterator cannot be made fails the call (no unhandled rejection).
      const third = make(1);
      const broken = { [Symbol.iterator]: (): Iterator<number> => { throw new RangeError('no iterator'); } };
      await assert.rejects(third.imap(square, broken).next(), RangeError);
      // A map over an AsyncIterable made before close() runs (the call was accepted).
      const input = (async function* () {
        yield 2;
        yield 3;
      })();
      const mapped = third.mapAsync(square, input);
      third.close();
      assert.deepEqual(await mapped.get(), [4, 9]);
      await third.join();
    });

    it('initializer runs in every worker with its initargs', async () => {
      const pool = make(2, { initializer: initialize, initargs: ['ready'] });
      assert.deepEqual(await pool.map(readState, [[], [], [], []].map(() => undefined as never), 1), ['ready', 'ready', 'ready', 'ready']);
    });

    it('a map submitted before a worker started is shared with it: a worker holds 2 tasks of a function whose time is not known yet', { timeout: 60_000 }, async () => {
      const roles = context.Queue();
      await roles.put('free');
      await roles.put('held');
      const startGate = context.Event();
      const taskGate = context.Event();
      const started = context.Queue();
      const pool = make(2, { initializer: gateWorkers, initargs: [roles, startGate, taskGate, started] });
      const mapped = pool.mapAsync(gatedTask, Array.from({ length: 8 }, () => undefined as never), 1);
      // The free worker has begun (its first task waits for the gate); only now does the other start.
      const free = await started.get();
      startGate.set();
      // Tasks the free worker was handed ahead all wait behind its first one: a second name can only
      // come from the held worker, which finds tasks left for it (it found none when every task went
      // to the only worker up).
      let other = free;
      while (other === free) other = await started.get();
      taskGate.set();
      const names = await mapped.get();
      assert.equal(names.length, 8);
      assert.deepEqual(new Set(names), new Set([free, other]));
      assert.ok(names.filter((n) => n === free).length <= 6, `the free worker ran ${names.filter((n) => n === free).length} of 8`);
      roles.close();
      started.close();
    });

    it('maxtasksperchild replaces workers after that many tasks', async () => {
      const pool = make(1, { maxtasksperchild: 2 });
      const pids = new Set<string>();
      for (let i = 0; i < 6; i++) pids.add((await pool.apply(whoAmI)).split(':')[0]!);
      assert.equal(pids.size, 3, `three workers for six tasks: ${[...pids]}`);
      assert.ok(pool.stats().workersReplaced >= 2);
    });

    it('a worker killed mid-map fails that task with WorkerLostError; the pool replaces it and goes on', async () => {
      const pool = make(2);
      const results = await Promise.allSettled([1, 2, 3, 4, 5, 6, 7, 8].map((x) => pool.apply(dieOn, [x])));
      const lost = results.filter((r) => r.status === 'rejected');
      assert.equal(lost.length, 1);
      const error = (lost[0] as PromiseRejectedResult).reason as mp.WorkerLostError;
      assert.equal(error.name, 'WorkerLostError');
      assert.equal(error.exitcode, method === 'thread' ? 9 : -9);
      assert.match(error.message, method === 'thread' ? /exited with code 9/ : /SIGKILL/);
      assert.deepEqual(results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<number>).value), [1, 2, 3, 4, 6, 7, 8]);
      assert.deepEqual(await pool.map(square, [1, 2, 3]), [1, 4, 9]);
      const exited = await Promise.allSettled([pool.apply(exitOn, [2])]);
      assert.equal((exited[0] as PromiseRejectedResult).reason.exitcode, 3);
    });

    it('tasks with large arguments that a dying worker had not started go to its replacement', async () => {
      const pool = make(1);
      // 256 KiB each: on threads they travel over the worker's port, not through its ring.
      const payload = new Uint8Array(256 * 1024).fill(1);
      const results = await Promise.allSettled([1, 2, 3, 4, 5, 6, 7, 8].map((x) => pool.apply(dieOnWith, [x, payload])));
      assert.equal(results.filter((r) => r.status === 'rejected').length, 1);
      assert.deepEqual(
        results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<number[]>).value),
        [1, 2, 3, 4, 6, 7, 8].map((x) => [x, payload.length]),
      );
    });

    it('a task stuck past its timeout is failed with TimeoutError and its worker replaced', async () => {
      const pool = make(1);
      await assert.rejects(pool.apply(spin, [30], { timeout: 0.3 }), mp.TimeoutError);
      assert.equal(await pool.apply(square, [5]), 25);
    });

    it('a signal cancels the pending work of a call', async () => {
      const pool = make(1);
      await pool.apply(square, [1]);
      const controller = new AbortController();
      const before = pool.stats().tasksDone;
      // Abort as soon as the first of 50 tasks has finished. Each takes 0.25 s, so that a pool
      // that is slow to see the first result (a loaded machine: CI saw 7 of 50 tasks of 0.05 s
      // run) still shows the difference between the few that were under way and all 50.
      const running = pool.map(sleepThen, Array.from({ length: 50 }, () => 0.25), 1, {
        signal: controller.signal,
        progress: () => controller.abort(new Error('cancelled by caller')),
      });
      await assert.rejects(running, /cancelled by caller/);
      assert.equal(await pool.apply(square, [4]), 16);
      const ran = pool.stats().tasksDone - before - 1;
      assert.ok(ran <= 4, `the cancelled tasks did not run on (${ran} of 50 ran)`);
    });

    it('with maxtasksperchild, tasks cancelled in a worker\'s hand do not count as its tasks (the pool goes on)', async () => {
      const pool = make(1, { maxtasksperchild: 3 });
      const controller = new AbortController();
      // A slow task, then cancelled ones handed to the same worker while it runs.
      const slow = pool.apply(sleepThen, [0.3, 'slow']);
      const cancelled = pool.map(square, [1, 2, 3, 4], 1, { signal: controller.signal });
      await new Promise((resolve) => setTimeout(resolve, 50));
      controller.abort(new Error('cancelled by caller'));
      await assert.rejects(cancelled, /cancelled by caller/);
      assert.equal(await slow, 'slow');
      let timer: NodeJS.Timeout | undefined;
      const stuck = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('the pool took no more tasks: its worker counted the cancelled ones')), 20_000);
      });
      try {
        assert.deepEqual(await Promise.race([pool.map(square, [5, 6, 7, 8, 9], 1), stuck]), [25, 36, 49, 64, 81]);
      } finally {
        clearTimeout(timer);
      }
    });

    it('close/join finishes submitted work; a closed pool refuses work; terminate and await using end it', async () => {
      const pool = make(2);
      const pending = pool.map(sleepThen, [0.1, 0.1, 0.1], 1);
      pool.close();
      assert.throws(() => pool.applyAsync(square, [1]), /Pool not running/);
      await assert.rejects(pool.map(square, [1]), mp.ValueError);
      await pool.join();
      assert.equal((await pending).length, 3);
      await assert.rejects(make(1).join(), /Pool is still running/);
      let inside: Pool;
      {
        await using p = new Pool(1, { context });
        inside = p;
        assert.equal(await p.apply(square, [2]), 4);
      }
      assert.throws(() => inside.applyAsync(square, [1]), mp.ValueError);
    });

    it('an idle worker sleeps until a task comes: no periodic wake-ups of its thread', { skip: process.platform !== 'linux' }, async () => {
      const pool = make(1);
      const thread = await pool.apply(whereAmI, []);
      const switches = () => Number(readFileSync(`/proc/${thread}/status`, 'utf8').match(/^voluntary_ctxt_switches:\s*(\d+)/m)![1]);
      // Past the moment a worker that ran out of tasks blocks for (20 ms), then over one second.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const before = switches();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const wakeups = switches() - before;
      // A worker that waited in 20 ms slices woke 50 times a second.
      assert.ok(wakeups <= 5, `the idle worker's thread woke ${wakeups} times in 1 s`);
      assert.equal(await pool.apply(square, [7]), 49, 'and it still takes the next task');
    });

    it('progress reports to a callback; stats count tasks', async () => {
      const reports: number[] = [];
      await shared.map(square, [1, 2, 3, 4], 1, { progress: (done) => reports.push(done) });
      assert.deepEqual(reports, [1, 2, 3, 4]);
      const stats = shared.stats();
      assert.ok(stats.tasksDone > 0);
      assert.equal(stats.workers, 2);
      assert.ok(stats.latencyMs.p50 >= 0);
    });
  });
}

describe('ThreadPool', () => {
  it('is a Pool on worker threads named ThreadPoolWorker-N', async () => {
    await using pool = new ThreadPool(2);
    assert.match(await pool.apply(whoAmI), /^ThreadPoolWorker-\d+:/);
    assert.deepEqual(await pool.map(square, [1, 2]), [1, 4]);
  });

  it('computes Python\'s default chunksize', async () => {
    await using pool = new ThreadPool(2);
    const chunks: number[] = [];
    await pool.map(square, Array.from({ length: 100 }, (_, i) => i), undefined, { progress: (done) => chunks.push(done) });
    // divmod(100, 2 * 4) = (12, 4) -> chunksize 13 -> ceil(100 / 13) = 8 chunks
    assert.equal(chunks.length, 8);
  });

  it('validates its arguments', () => {
    assert.throws(() => new ThreadPool(0), /Number of processes must be at least 1/);
    assert.throws(() => new ThreadPool(1, { maxtasksperchild: 0 }), mp.ValueError);
    assert.throws(() => new ThreadPool(1, { initializer: 5 as never }), TypeError);
  });
});

const captured = 1;

describe('mp.dummy (multiprocessing.dummy)', () => {
  it('is the thread context: Pool, Process, queues, Namespace, connection.Pipe/wait', { timeout: 60_000 }, async () => {
    const d = mp.dummy;
    const pool = new d.Pool(2);
    try {
      assert.ok(pool instanceof ThreadPool);
      assert.deepEqual(await pool.map(square, [1, 2, 3]), [1, 4, 9]);
    } finally {
      pool.terminate();
      await pool.join();
    }
    const p = new d.Process({ target: whoAmI, args: [] });
    assert.match(p.name, /^ThreadProcess-/);
    p.start();
    await p.join(30);
    assert.equal(p.exitcode, 0);
    const sq = d.SimpleQueue<number>();
    sq.put(7);
    assert.equal(await sq.get(), 7);
    sq.close();
    const ns = new d.Namespace({ a: 1 }) as unknown as { a: number };
    assert.equal(ns.a, 1);
    const [a, b] = d.connection.Pipe();
    a.send('through a thread pipe');
    assert.deepEqual(await d.connection.wait([b], 5), [b]);
    assert.equal(await b.recv(), 'through a thread pipe');
    a.close();
    b.close();
    assert.equal(mp.managers.RemoteError, mp.RemoteError);
  });

  it('Manager() serves shared objects from a thread; connection.Listener and Client connect', { timeout: 60_000 }, async () => {
    await using m = await mp.dummy.Manager();
    assert.equal(m._process!.pid, process.pid, 'the server is a thread of this process');
    const dict = await m.dict();
    await dict.setItem('k', 1);
    assert.equal(await dict.getItem('k'), 1);
    const listener = new mp.dummy.connection.Listener();
    try {
      const accepted = listener.accept();
      const client = await mp.dummy.connection.Client(listener.address);
      const server = await accepted;
      client.send('hello');
      assert.equal(await server.recv(), 'hello');
      client.close();
      server.close();
    } finally {
      listener.close();
    }
  });
});

describe("a pool worker's run()", () => {
  const double = (x: unknown) => (x as number) * 2;
  const later = (x: unknown) => Promise.resolve((x as number) * 2);

  it('gives plain results at once, so a busy worker runs task after task without a trip through the microtask queue', () => {
    assert.deepEqual(run(double, MAP_CHUNK, [1, 2, 3]), [2, 4, 6]);
    assert.equal(run((a, b) => (a as number) + (b as number), CALL, [2, 3]), 5);
  });

  it('gives a promise from the first item whose call returned one, and keeps the order', async () => {
    const calls: number[] = [];
    const mixed = (x: unknown) => (calls.push(x as number), x === 2 ? later(x) : double(x));
    const out = run(mixed, MAP_CHUNK, [1, 2, 3, 4]);
    assert.ok(out instanceof Promise);
    assert.deepEqual(await out, [2, 4, 6, 8]);
    assert.deepEqual(calls, [1, 2, 3, 4], 'one item after another, as mapstar');
  });
});
