import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as mp from '../src/index.js';
import { Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore } from '../src/synchronize.js';
import { RawArray, RawValue, Value } from '../src/sharedctypes.js';
import {
  barrierAction, barrierExpectBroken, barrierParty, condWaiter, holdForever, incrementLocked, incrementRaw, producer,
  releaseForeignRLock, releaseLock, setEventLater, waitEventThenSet,
} from './fixtures/sync/tasks.js';

type Ctx = ReturnType<typeof mp.getContext>;

const children = new Set<mp.Process>();
after(() => {
  for (const p of children) if (p.isAlive()) p.kill();
});

function start(ctx: Ctx, target: (...args: any[]) => unknown, args: unknown[]): mp.Process {
  const p = new ctx.Process({ target, args });
  p.start();
  children.add(p);
  return p;
}

async function joinAll(ps: mp.Process[], seconds = 60): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  for (const p of ps) {
    await p.join(Math.max(0, (deadline - Date.now()) / 1000));
    if (p.exitcode === null) {
      for (const q of ps) q.kill();
      throw new Error(`${p.name} did not finish in ${seconds}s`);
    }
    assert.equal(p.exitcode, 0, `${p.name} exit code`);
    children.delete(p);
  }
}

function elapsed(t0: number): number {
  return (performance.now() - t0) / 1000;
}

const actionDir = mkdtempSync(join(tmpdir(), 'mp-sync-test-'));
after(() => rmSync(actionDir, { recursive: true, force: true }));

for (const method of ['spawn', 'thread'] as const) {
  const ctx = mp.getContext(method);
  const o = { ctx };
  const where = method === 'thread' ? 'threads' : 'processes';

  describe(`synchronize (${method})`, () => {
    test('Lock: acquire, non-blocking acquire, release, release of an unlocked lock', async () => {
      const lock = new Lock(o);
      assert.equal(String(lock), '<Lock(owner=None)>');
      assert.equal(await lock.acquire(), true);
      assert.equal(String(lock), '<Lock(owner=MainProcess)>');
      assert.equal(await lock.acquire(false), false);
      assert.equal(await lock.acquire({ block: false, timeout: 10 }), false);
      assert.equal(lock.acquireSync(false), false);
      assert.equal(lock.release(), undefined);
      assert.throws(() => lock.release(), (e: Error) => e.name === 'ValueError' && e.message === 'semaphore or lock released too many times');
      assert.equal(await lock.with(() => 42), 42);
      await assert.rejects(lock.with(async () => { throw new Error('inner'); }), /inner/);
      assert.equal(await lock.acquire(), true, 'released after with() threw');
      const reason = new Error('stop waiting');
      let ran = false;
      await assert.rejects(lock.with(() => (ran = true), { signal: AbortSignal.timeout(50) }), (e: Error) => e.name === 'TimeoutError');
      await assert.rejects(lock.with(() => (ran = true), { signal: AbortSignal.abort(reason) }), (e) => e === reason);
      assert.equal(ran, false, 'with() whose acquire was aborted does not run fn');
      {
        using _held = lock;
      }
      assert.equal(await lock.acquire(false), true, 'Symbol.dispose released it');
      lock.release();
    });

    test('Lock: timeouts (block=false ignores the timeout; a timeout waits about that long)', async () => {
      const lock = new Lock(o);
      await lock.acquire();
      let t0 = performance.now();
      assert.equal(await lock.acquire({ block: false, timeout: 1 }), false);
      assert.ok(elapsed(t0) < 0.1);
      t0 = performance.now();
      assert.equal(await lock.acquire({ timeout: 0.2 }), false);
      assert.ok(elapsed(t0) >= 0.19 && elapsed(t0) < 1.5, `${elapsed(t0)}`);
      t0 = performance.now();
      assert.equal(lock.acquireSync({ timeout: 0.1 }), false);
      assert.ok(elapsed(t0) >= 0.09);
      assert.equal(await lock.acquire({ timeout: -1 }), false);
      lock.release();
    });

    test('Lock: abort signal rejects with its reason and leaves the lock usable', async () => {
      const lock = new Lock(o);
      await lock.acquire();
      const ac = new AbortController();
      const reason = new Error('give up');
      setTimeout(() => ac.abort(reason), 30);
      await assert.rejects(lock.acquire({ signal: ac.signal }), (e) => e === reason);
      await assert.rejects(lock.acquire({ signal: AbortSignal.abort(reason) }), (e) => e === reason);
      const next = lock.acquire({ timeout: 5 });
      lock.release();
      assert.equal(await next, true);
      lock.release();
    });

    test(`Lock: released by another of the ${where} (a Lock has no owner)`, async () => {
      const lock = new Lock(o);
      await lock.acquire();
      await joinAll([start(ctx, releaseLock, [lock])]);
      assert.equal(await lock.acquire(false), true);
      lock.release();
    });

    test('RLock: recursion, release by a non-owner, repr', async () => {
      const r = new RLock(o);
      assert.equal(String(r), '<RLock(None, 0)>');
      for (let i = 0; i < 3; i++) assert.equal(await r.acquire(), true);
      assert.equal(String(r), '<RLock(MainProcess, 3)>');
      for (let i = 0; i < 3; i++) r.release();
      assert.throws(() => r.release(), (e: Error) => e.name === 'ValueError');
      await r.acquire();
      const out = new RawArray('i', 1, o);
      await joinAll([start(ctx, releaseForeignRLock, [r, out])]);
      assert.equal(out.get(0), 2, 'the other side got ValueError');
      r.release();
      assert.equal(r.acquireSync({ timeout: 0 }), true);
      r.release();
    });

    test('Semaphore and BoundedSemaphore: values, timeouts, over-release', async () => {
      const s = new Semaphore(2, o);
      assert.equal(await s.acquire(), true);
      assert.equal(s.getValue(), 1);
      assert.equal(s.acquireSync(), true);
      assert.equal(await s.acquire(false), false);
      let t0 = performance.now();
      assert.equal(await s.acquire({ timeout: 0.2 }), false);
      assert.ok(elapsed(t0) >= 0.19);
      s.release();
      s.release();
      s.release();
      assert.equal(s.getValue(), 3, 'an unbounded semaphore goes above its initial value');
      assert.equal(String(s), '<Semaphore(value=3)>');
      const b = new BoundedSemaphore(2, o);
      await b.acquire();
      b.release();
      assert.throws(() => b.release(), (e: Error) => e.name === 'ValueError' && /too many times/.test(e.message));
      assert.equal(String(b), '<BoundedSemaphore(value=2, maxvalue=2)>');
      assert.throws(() => new Semaphore(-1, o), (e: Error) => e.name === 'ValueError');
      const z = new Semaphore(0, o);
      t0 = performance.now();
      assert.equal(await z.acquire({ block: false, timeout: 5 }), false);
      assert.ok(elapsed(t0) < 0.1);
    });

    test(`Value: 3 ${where} x 10,000 increments under the lock give exactly 30,000`, async () => {
      for (const mode of ['sync', 'async'] as const) {
        const v = Value('i', 0, o);
        const gate = new Barrier(3, null, null, o);
        const ps = [0, 1, 2].map(() => start(ctx, incrementLocked, [v, 10_000, gate, mode]));
        await joinAll(ps);
        assert.equal(v.value, 30_000, mode);
      }
    });

    test(`Value: without the lock, ${where} lose updates (the race is real)`, async () => {
      let lost = 0;
      for (let attempt = 0; attempt < 4 && lost === 0; attempt++) {
        const raw = new RawValue('i', 0, o);
        const gate = new Barrier(3, null, null, o);
        const ps = [0, 1, 2].map(() => start(ctx, incrementRaw, [raw, 1_000_000, gate]));
        await joinAll(ps);
        lost = 3_000_000 - raw.value;
      }
      assert.ok(lost > 0, 'some increments were lost');
    });

    test(`Barrier: 3 ${where} pass in lockstep for 5 cycles; the action runs once per cycle`, async () => {
      const file = join(actionDir, `action-${method}.txt`);
      process.env.MP_TEST_ACTION_FILE = file;
      const b = new Barrier(3, barrierAction, null, o);
      const out = new RawArray('i', 15, o);
      const ps = [0, 1, 2].map((party) => start(ctx, barrierParty, [b, 5, out, party, party === 2]));
      await joinAll(ps);
      for (let c = 0; c < 5; c++) assert.deepEqual(out.slice(c * 3, c * 3 + 3).sort(), [0, 1, 2], `cycle ${c}`);
      assert.equal(readFileSync(file, 'utf8').trim().split('\n').length, 5);
      assert.equal(b.nWaiting, 0);
      assert.equal(b.broken, false);
    });

    test('Barrier: abort, timeout and reset break it for every waiter', async () => {
      const b = new Barrier(3, null, null, o);
      const out = new RawArray('i', 3, o);
      const ps = [0, 1].map((party) => start(ctx, barrierExpectBroken, [b, out, party, null]));
      while (b.nWaiting < 2) await new Promise((r) => setTimeout(r, 5));
      b.abort();
      await joinAll(ps);
      assert.deepEqual(out.slice(0, 2), [1, 1]);
      assert.equal(b.broken, true);
      await assert.rejects(b.wait(), (e: Error) => e.name === 'BrokenBarrierError');
      b.reset();
      assert.equal(b.broken, false);

      // timeout: two parties wait 0.3 s for a third that never comes
      const t = new Barrier(3, null, null, o);
      const out2 = new RawArray('i', 3, o);
      const t0 = performance.now();
      await joinAll([0, 1].map((party) => start(ctx, barrierExpectBroken, [t, out2, party, 0.3])));
      assert.deepEqual(out2.slice(0, 2), [1, 1]);
      assert.ok(elapsed(t0) >= 0.3);
      assert.equal(t.broken, true);

      // reset while parties wait: they get BrokenBarrierError, then the barrier works again
      const r = new Barrier(2, null, null, o);
      const out3 = new RawArray('i', 3, o);
      const waiting = start(ctx, barrierExpectBroken, [r, out3, 0, null]);
      while (r.nWaiting < 1) await new Promise((res) => setTimeout(res, 5));
      r.reset();
      await joinAll([waiting]);
      assert.equal(out3.get(0), 1);
      const both = await Promise.all([r.wait(5), r.wait(5)]);
      assert.deepEqual(both.sort(), [0, 1]);
    });

    test('Barrier: single party, default timeout, abort signal', async () => {
      const one = new Barrier(1, null, null, o);
      assert.equal(await one.wait(), 0);
      assert.equal(one.waitSync(), 0);
      const d = new Barrier(2, null, 0.1, o);
      await assert.rejects(d.wait(), (e: Error) => e.name === 'BrokenBarrierError');
      const s = new Barrier(2, null, null, o);
      const reason = new Error('abort');
      const ac = new AbortController();
      setTimeout(() => ac.abort(reason), 20);
      await assert.rejects(s.wait(null, { signal: ac.signal }), (e) => e === reason);
      assert.equal(s.nWaiting, 0, 'the aborted party left');
    });

    test(`Condition: producer in another of the ${where}, consumer here`, async () => {
      const cond = new Condition(null, o);
      const buf = new RawArray('i', 5, o); // count + 4 slots
      const total = new RawArray('i', 1, o);
      const p = start(ctx, producer, [cond, buf, total, 200]);
      let sum = 0;
      let read = 0;
      while (read < 200) {
        await cond.acquire();
        await cond.waitFor(() => buf.get(0) > 0, 10);
        assert.ok(buf.get(0) > 0, 'waitFor timed out');
        const capacity = buf.length - 1;
        while (buf.get(0) > 0) {
          sum += buf.get(1 + (read % capacity));
          read++;
          buf.set(0, buf.get(0) - 1);
        }
        cond.notifyAll();
        cond.release();
      }
      await joinAll([p]);
      assert.equal(sum, (200 * 201) / 2);
    });

    test(`Condition: notify(n) wakes exactly n waiting ${where}; timed waiters time out`, async () => {
      const cond = new Condition(new Lock(o), o);
      const woken = new RawArray('i', 2, o);
      const ready = new Semaphore(0, o);
      const ps = Array.from({ length: 4 }, () => start(ctx, condWaiter, [cond, woken, null, ready]));
      for (let i = 0; i < 4; i++) assert.equal(await ready.acquire({ timeout: 30 }), true);
      // every waiter is inside wait() once it can no longer hold the lock
      await cond.acquire();
      const waitersIn = async (n: number) => {
        for (let i = 0; i < 2000 && !String(cond).endsWith(`, ${n})>`); i++) {
          cond.release();
          await new Promise((r) => setTimeout(r, 5));
          await cond.acquire();
        }
      };
      await waitersIn(4);
      cond.notify(1);
      cond.release();
      while (Atomics.load(woken.view, 0) < 1) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(Atomics.load(woken.view, 0), 1);
      await cond.acquire();
      cond.notify(2);
      cond.release();
      while (Atomics.load(woken.view, 0) < 3) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(Atomics.load(woken.view, 0), 3);
      await cond.acquire();
      cond.notifyAll();
      cond.notify(3); // no waiters left: harmless
      cond.release();
      await joinAll(ps);
      assert.deepEqual(woken.toArray(), [4, 0]);
      // timed waiters
      const timed = Array.from({ length: 2 }, () => start(ctx, condWaiter, [cond, woken, 0.2, ready]));
      await joinAll(timed);
      assert.deepEqual(woken.toArray(), [4, 2]);
    });

    test('Condition: misuse, timeouts, RLock held N times is fully released during wait', async () => {
      const cond = new Condition(null, o);
      await assert.rejects(cond.wait(0), (e: Error) => e.name === 'ValueError' && /must acquire/.test(e.message));
      assert.throws(() => cond.notify(), (e: Error) => e.name === 'ValueError');
      const lock = new RLock(o);
      const c = new Condition(lock, o);
      await c.acquire();
      await c.acquire();
      await c.acquire();
      const t0 = performance.now();
      assert.equal(await c.wait(0.1), false);
      assert.ok(elapsed(t0) >= 0.09);
      assert.equal(String(lock), '<RLock(MainProcess, 3)>');
      // while waiting, the lock is free for others: another of the processes/threads can take it
      const out = new RawArray('i', 1, o);
      const e = new Event(o);
      const w = c.wait(10);
      const helper = start(ctx, setEventLater, [e, 0]);
      assert.equal(await e.wait(10), true);
      await joinAll([helper]);
      assert.equal(String(lock).startsWith('<RLock(MainProcess, 3)>'), false, 'released while waiting');
      await c.acquire(); // async code on this thread shares the RLock's ownership
      c.notify();
      c.release();
      assert.equal(await w, true);
      assert.equal(String(lock), '<RLock(MainProcess, 3)>');
      for (let i = 0; i < 3; i++) c.release();
      assert.equal(String(lock), '<RLock(None, 0)>');
      void out;
      // waitSync with a timeout, waitFor returning the last predicate value
      await c.acquire();
      assert.equal(c.waitSync(0.05), false);
      assert.equal(await c.waitFor(() => 0, 0.05), 0);
      assert.equal(c.waitForSync(() => 'yes', 0.05), 'yes');
      const ac = new AbortController();
      const reason = new Error('stop waiting');
      setTimeout(() => ac.abort(reason), 20);
      await assert.rejects(c.wait(null, { signal: ac.signal }), (err) => err === reason);
      assert.equal(String(lock), '<RLock(MainProcess, 1)>', 'the lock is held again after an abort');
      c.release();
    });

    test(`Event: set in another of the ${where} wakes a waiter here; waitSync there`, async () => {
      const e = new Event(o);
      assert.equal(e.isSet(), false);
      assert.equal(await e.wait(0.05), false);
      const t0 = performance.now();
      const p = start(ctx, setEventLater, [e, 100]);
      assert.equal(await e.wait(30), true);
      assert.ok(e.isSet());
      await joinAll([p]);
      assert.ok(elapsed(t0) < 30);
      e.clear();
      assert.equal(e.waitSync(0.01), false);
      assert.match(String(e), /^<Event at .* unset>$/);
      for (const sync of [false, true]) {
        const go = new Event(o);
        const done = new Event(o);
        const q = start(ctx, waitEventThenSet, [go, done, sync]);
        go.set();
        assert.equal(await done.wait(30), true);
        await joinAll([q]);
      }
      const ac = new AbortController();
      setTimeout(() => ac.abort(new Error('x')), 10);
      await assert.rejects(e.wait(null, { signal: ac.signal }), /x/);
    });

    test('objects from one context cannot be sent to the other', () => {
      const other = mp.getContext(method === 'thread' ? 'spawn' : 'thread');
      const p = new other.Process({ target: releaseLock, args: [new Lock(o)] });
      assert.throws(() => p.start(), (e: Error) => e.name === 'ValueError' && /context/.test(e.message));
    });
  });
}

describe('robust locks: a holder killed with SIGKILL does not keep them forever', () => {
  const ctx = mp.getContext('spawn');
  for (const make of [() => new Lock(), () => new RLock(), () => new Semaphore(1), () => new BoundedSemaphore(1)]) {
    const name = make().constructor.name;
    test(`${name}: a waiter takes over from a dead holder, with a warning`, async () => {
      const lock = make();
      const ready = new Event();
      const p = start(ctx, holdForever, [lock, ready]);
      assert.equal(await ready.wait(30), true);
      assert.equal(await lock.acquire({ timeout: 0.2 }), false, 'held by a live process');
      const warnings: Error[] = [];
      const onWarning = (w: Error) => warnings.push(w);
      process.on('warning', onWarning);
      p.kill();
      await p.join(10);
      children.delete(p);
      const t0 = performance.now();
      try {
        assert.equal(await lock.acquire({ timeout: 10 }), true);
        assert.ok(elapsed(t0) < 2, `took over in ${elapsed(t0)}s`);
        await new Promise((r) => setImmediate(r));
        assert.ok(warnings.some((w) => w.name === 'OwnerDiedWarning' && w.message.includes(String(p.pid))), 'warned');
        lock.release();
        assert.equal(await lock.acquire(false), true, 'usable afterwards');
        lock.release();
      } finally {
        process.off('warning', onWarning);
      }
    });
  }

  test('a blocking acquireSync also recovers', async () => {
    const lock = new Lock();
    const ready = new Event();
    const p = start(ctx, holdForever, [lock, ready]);
    assert.equal(await ready.wait(30), true);
    p.kill();
    await p.join(10);
    children.delete(p);
    const onWarning = () => {};
    process.on('warning', onWarning);
    assert.equal(lock.acquireSync({ timeout: 10 }), true);
    process.off('warning', onWarning);
    lock.release();
  });
});
