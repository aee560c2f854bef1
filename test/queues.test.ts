import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ByteRing } from '../src/ring.js';
import * as mp from '../src/index.js';
import {
  answerRequests, consumeRange, doTasks, echo, getSyncLoop, produceRange, putItems, putLarge, putThenGetSyncInChild,
} from './fixtures/queues/tasks.js';
import { runProgram, startMethods } from './helpers.js';

for (const method of startMethods) {
  describe(`Queue on '${method}'`, () => {
    const ctx = mp.getContext(method);
    const started: mp.Process[] = [];
    const start = (target: (...args: any[]) => unknown, args: unknown[]) => {
      const p = new ctx.Process({ target, args });
      started.push(p);
      p.start();
      return p;
    };
    after(async () => {
      for (const p of started) if (p.exitcode === null) p.kill();
      await Promise.all(started.map((p) => p.join(10)));
    });

    it('items got are their own memory: later puts do not change them (typed arrays inside objects)', async () => {
      const q = ctx.Queue();
      const sent = Array.from({ length: 16 }, (_, i) => ({ data: new Uint8Array(8 + i).fill(i + 1), f: new Float64Array([i, 0.5]) }));
      const got: Array<{ data: Uint8Array; f: Float64Array }> = [];
      for (const item of sent) {
        q.putSync(item);
        while (q.empty()) await new Promise(setImmediate); // in the ring: get() decodes it there
        got.push((await q.get()) as { data: Uint8Array; f: Float64Array });
        // Junk all the way round the 64 KiB ring: an item decoded as a view of it would change.
        for (let j = 0; j < 40; j++) q.putSync({ junk: new Uint8Array(2000).fill(0xee) });
        for (let j = 0; j < 40; j++) await q.get();
      }
      assert.deepEqual(got, sent);
      for (const g of got) assert.ok(!(g.data.buffer instanceof SharedArrayBuffer), 'a view of shared memory');
    });

    it('an item that fails to decode is still taken: qsize and a bounded queue\'s slot come back', async () => {
      const q = ctx.Queue(1);
      q.putNowait(new Map([[1, 2]]));
      await q.get();
      q.putSync(new Map([[1, 2]]));
      while (q.empty()) await new Promise(setImmediate); // the feeder writes it; then corrupt its v8 header
      const ring = (q as unknown as { _ring: ByteRing })._ring;
      const head = Atomics.load(ring.words, 0) >>> 0;
      ring.data[(head + 5) & (ring.data.length - 1)] = 0x00; // the byte after the tag: v8's version tag
      await assert.rejects(q.get(), (e: Error) => e.name === 'UnpicklingError');
      assert.equal(q.qsize(), 0);
      assert.equal(q.full(), false);
      q.putNowait('next');
      assert.equal(await q.get(), 'next');
    });

    it('carries structured data from a child, in order', async () => {
      const q = ctx.Queue();
      const items = [[42, null, 'hello'], { a: new Map([[1, 'x']]), b: new Set([1n]) }, new Date(0), 'X'.repeat(200_000), 7];
      const p = start(putItems, [q, items]);
      for (const item of items) assert.deepEqual(await q.get(), item);
      await p.join();
      assert.equal(p.exitcode, 0);
    });

    it('round-trips through a child and back (two queues, both directions)', async () => {
      const inbox = ctx.Queue();
      const outbox = ctx.Queue();
      const p = start(echo, [inbox, outbox]);
      for (let i = 0; i < 100; i++) await inbox.put({ i });
      for (let i = 0; i < 100; i++) assert.deepEqual(await outbox.get(), { i });
      await inbox.put(null);
      await p.join();
    });

    it('get with a timeout raises Empty after about that long; getNowait at once', async () => {
      const q = ctx.Queue();
      const t0 = performance.now();
      await assert.rejects(q.get({ timeout: 0.2 }), mp.Empty);
      assert.ok(performance.now() - t0 >= 150, 'waited for the timeout');
      assert.throws(() => q.getNowait(), mp.Empty);
      await assert.rejects(q.get({ block: false }), mp.Empty);
      assert.equal(q.empty(), true);
      await q.put({ n: 7 });
      // The feeder writes the item in the background (Python's feeder thread too): wait until it
      // is readable, then get it without waiting.
      for (const until = performance.now() + 5_000; q.empty() && performance.now() < until; ) await new Promise(setImmediate);
      const got: unknown = q.getNowait(); // synchronous, as Python's get_nowait (docs/api.md rule 4)
      assert.deepEqual(got, { n: 7 });
    });

    it('Empty and Full say which queue and how long the call waited', async () => {
      const q = ctx.Queue<number>(1);
      const described = (error: Error, name: string, message: string) => {
        assert.equal(error.name, name);
        assert.equal(error.message, message);
        return true;
      };
      assert.throws(() => q.getNowait(), (e: Error) => described(e, 'Empty', 'no item in <Queue object maxsize=1> without waiting (block: false)'));
      await assert.rejects(q.get({ timeout: 0.05 }), (e: Error) => described(e, 'Empty', 'no item in <Queue object maxsize=1> after waiting 0.05 s (the timeout)'));
      assert.throws(() => q.getSync({ timeout: 0.05 }), (e: Error) => described(e, 'Empty', 'no item in <Queue object maxsize=1> after waiting 0.05 s (the timeout)'));
      q.putNowait(1);
      assert.throws(() => q.putNowait(2), (e: Error) => described(e, 'Full', '<Queue object maxsize=1> is full without waiting (block: false)'));
      await assert.rejects(q.put(2, { timeout: 0.05 }), (e: Error) => described(e, 'Full', '<Queue object maxsize=1> is full after waiting 0.05 s (the timeout)'));
      assert.throws(() => q.putSync(2, { timeout: 0.05 }), (e: Error) => described(e, 'Full', '<Queue object maxsize=1> is full after waiting 0.05 s (the timeout)'));
      const jq = ctx.JoinableQueue();
      assert.throws(() => jq.getNowait(), (e: Error) => described(e, 'Empty', 'no item in <JoinableQueue object maxsize=0> without waiting (block: false)'));
    });

    it('a bounded queue raises Full, and a get frees a slot for a waiting put', async () => {
      const q = ctx.Queue<number>(2);
      await q.put(1);
      q.putNowait(2);
      assert.equal(q.full(), true);
      assert.equal(q.qsize(), 2);
      assert.throws(() => q.putNowait(3), mp.Full);
      await assert.rejects(q.put(3, { timeout: 0.05 }), mp.Full);
      await assert.rejects(q.put(3, { block: false }), mp.Full);
      const waiting = q.put(3);
      assert.equal(await q.get(), 1);
      await waiting;
      assert.equal(await q.get(), 2);
      assert.equal(await q.get(), 3);
      assert.equal(q.qsize(), 0);
      assert.equal(q.full(), false);
    });

    it('get can be aborted with a signal, and the next item still arrives', async () => {
      const q = ctx.Queue<string>();
      const controller = new AbortController();
      const pending = q.get({ signal: controller.signal });
      controller.abort(new Error('no longer needed'));
      await assert.rejects(pending, /no longer needed/);
      await q.put('next');
      assert.equal(await q.get(), 'next');
    });

    it('refuses an unserialisable item at put, and puts on a closed queue', async () => {
      const q = ctx.Queue();
      await assert.rejects(q.put({ f: () => 1 }), mp.PicklingError);
      assert.equal(q.qsize(), 0);
      await assert.rejects(q.joinThread(), /not closed/);
      q.close();
      await assert.rejects(q.put(1), /is closed/);
      assert.throws(() => q.putNowait(1), mp.ValueError);
      const reason = new Error('stop waiting');
      await assert.rejects(q.joinThread({ signal: AbortSignal.abort(reason) }), (e) => e === reason);
      await q.joinThread();
    });

    it('a child that put a large item does not exit until it is read (the join deadlock)', async () => {
      const q = ctx.Queue<string>();
      const p = start(putLarge, [q, 1_000_000, false]);
      await p.join(1);
      assert.equal(p.exitcode, null, 'still flushing: Python\'s documented deadlock');
      assert.equal((await q.get()).length, 1_000_000);
      await p.join();
      assert.equal(p.exitcode, 0);
    });

    it('cancelJoinThread() lets such a child exit without flushing', async () => {
      const q = ctx.Queue<string>();
      const p = start(putLarge, [q, 1_000_000, true]);
      await p.join();
      assert.equal(p.exitcode, 0);
    });

    it('JoinableQueue.join waits until every item is marked done', async () => {
      const q = ctx.JoinableQueue<number>();
      const done = ctx.Queue<number>();
      const p = start(doTasks, [q, done]);
      for (let i = 0; i < 20; i++) await q.put(i);
      await q.join();
      const results: number[] = [];
      for (let i = 0; i < 20; i++) results.push(await done.get());
      assert.deepEqual(results, Array.from({ length: 20 }, (_, i) => i * 2));
      p.kill();
      assert.throws(() => q.taskDone(), /task_done\(\) called too many times/);
    });

    it('getSync in a child and SimpleQueue back', async () => {
      const q = ctx.Queue<number | null>();
      const out = ctx.SimpleQueue<number>();
      const p = start(getSyncLoop, [q, out]);
      for (let i = 1; i <= 100; i++) q.putNowait(i);
      q.putNowait(null);
      assert.equal(await out.get(), 5050);
      await p.join();
      assert.equal(out.empty(), true);
    });

    it('a put followed by a blocking get on the same thread returns the item, in the main thread and in a child, and nothing leaks', async () => {
      // A program of its own: on a failure the SimpleQueue's getSync (which has no timeout) would block for ever.
      const r = await runProgram(new URL('./fixtures/queues/putThenGetSync.ts', import.meta.url), [method], 60_000);
      assert.equal(r.code, 0, r.stderr);
      const expected = JSON.stringify([5, 6, 7, 1_000_000]);
      assert.deepEqual(r.stdout.trim().split('\n'), [`main thread ${expected}`, `child ${expected}`]);
      assert.doesNotMatch(r.stderr, /resource_tracker|leaked/);
    });

    it('a put followed by any other blocking wait hands the item over first', async () => {
      const requests = ctx.Queue<string>();
      const event = ctx.Event();
      const lock = ctx.Lock();
      const [mine, theirs] = ctx.Pipe();
      const [bulk, theirBulk] = ctx.Pipe();
      const bounded = ctx.Queue<string>(1);
      const p = start(answerRequests, [requests, event, lock, theirs, theirBulk, bounded]);
      requests.putNowait('set the event');
      assert.equal(event.waitSync(20), true, 'Event.waitSync');
      lock.acquireSync();
      requests.putNowait('release the lock');
      assert.equal(lock.acquireSync({ timeout: 20 }), true, 'Lock.acquireSync');
      lock.release();
      requests.putNowait('answer on the connection');
      assert.equal(mine.pollSync(20), true, 'Connection.pollSync');
      assert.equal(mine.recvSync(), 'answer');
      bounded.putNowait('takes the only slot');
      requests.putNowait('free a slot');
      bounded.putSync('waits for the slot', { timeout: 20 }); // Full if the requests never left
      // More than a socket takes at once: the rest must be written while this thread blocks...
      event.clear();
      bulk.sendBytes(new Uint8Array(16 * 1024 * 1024));
      requests.putNowait('receive in bulk');
      assert.equal(event.waitSync(20), true, 'a large send, then Event.waitSync');
      // ... and a send that blocks (this end was read with blocking calls: Python's blocking send)
      // hands over first what it waits for.
      requests.putNowait('receive on the connection');
      mine.sendBytes(new Uint8Array(16 * 1024 * 1024));
      assert.equal(mine.pollSync(20), true, 'a blocking send');
      assert.equal(mine.recvSync(), 16 * 1024 * 1024);
      requests.putNowait('stop');
      await p.join(20);
      assert.equal(p.exitcode, 0);
      assert.equal(await bounded.get({ timeout: 20 }), 'waits for the slot');
    });

    it('moves 1,000,000 items with 2 producers and 2 consumers, each exactly once, in producer order', { timeout: 120_000 }, async () => {
      const perProducer = 500_000;
      const q = ctx.Queue<number | null>();
      const seen = ctx.RawArray('B', 2 * perProducer);
      const disorder = ctx.RawArray('i', 1);
      const consumers = [0, 1].map(() => start(consumeRange, [q, seen, disorder, perProducer]));
      const producers = [0, 1].map((i) => start(produceRange, [q, i * perProducer, perProducer]));
      await Promise.all(producers.map((p) => p.join()));
      assert.deepEqual(producers.map((p) => p.exitcode), [0, 0]);
      await q.put(null);
      await q.put(null);
      await Promise.all(consumers.map((p) => p.join()));
      assert.deepEqual(consumers.map((p) => p.exitcode), [0, 0]);
      const counts = seen.view as Uint8Array;
      let missing = 0;
      let duplicated = 0;
      for (let i = 0; i < counts.length; i++) {
        if (counts[i] === 0) missing++;
        else if (counts[i]! > 1) duplicated++;
      }
      assert.equal(missing, 0, 'no item lost');
      assert.equal(duplicated, 0, 'no item delivered twice');
      assert.equal((disorder.view as Int32Array)[0], 0, 'each producer\'s items arrive in order');
      assert.equal(q.qsize(), 0);
    });
  });
}

describe('Queue across contexts', () => {
  it('refuses a thread-context queue passed to a process', () => {
    const q = mp.getContext('thread').Queue();
    const p = new (mp.getContext('spawn').Process)({ target: putItems, args: [q, [1]] });
    assert.throws(() => p.start(), mp.ValueError);
  });
});
