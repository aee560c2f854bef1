import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { wait, waitSync, wake, isProcessShared, timeoutMs, SpinBackoff } from '../src/futex.js';
import { allocate, int32s, blockState } from '../src/heap.js';

function sabWord(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(8));
}
function shmWord(): Int32Array {
  return int32s(allocate('process', 8, 8), 0, 2);
}

test('SpinBackoff: spins while spins catch; after n that caught nothing, once per 2^n waits (at most 64)', () => {
  const backoff = new SpinBackoff();
  /** Over `waits` waits whose spins all fail: the waits that spin. */
  const spinsOver = (waits: number): number => {
    let spins = 0;
    for (let i = 0; i < waits; i++) {
      if (!backoff.shouldSpin()) continue;
      spins++;
      backoff.spun(false);
    }
    return spins;
  };
  assert.equal(backoff.shouldSpin(), true);
  backoff.spun(true);
  assert.equal(backoff.shouldSpin(), true, 'a spin that caught its answer keeps spinning');
  // Fails at waits 0, 2, 6, 14, 30, 62, then every 64th (126, 190, ...).
  assert.equal(spinsOver(1 + 2 + 4 + 8 + 16 + 32), 6);
  assert.equal(spinsOver(64 * 10), 10, 'the back-off stops growing at one spin per 64 waits');
  let waits = 0;
  while (!backoff.shouldSpin()) waits++;
  backoff.spun(true);
  assert.ok(waits < 64);
  assert.equal(backoff.shouldSpin(), true, 'a catch ends the back-off at once');
});

test('timeoutMs: seconds to ms, null forever, negative 0', () => {
  assert.equal(timeoutMs(null), -1);
  assert.equal(timeoutMs(undefined), -1);
  assert.equal(timeoutMs(-1), 0);
  assert.equal(timeoutMs(0.25), 250);
  assert.equal(timeoutMs(Infinity), -1);
});

for (const [label, make] of [['SharedArrayBuffer', sabWord], ['process-shared memory', shmWord]] as const) {
  test(`${label}: kind detection`, () => {
    assert.equal(isProcessShared(make().buffer), label !== 'SharedArrayBuffer');
  });

  test(`${label}: not-equal at once, timed-out after the timeout`, async () => {
    const w = make();
    assert.equal(await wait(w, 0, 1, 1), 'not-equal');
    assert.equal(waitSync(w, 0, 1, 1), 'not-equal');
    let t = performance.now();
    assert.equal(await wait(w, 0, 0, 0.1), 'timed-out');
    assert.ok(performance.now() - t >= 95);
    t = performance.now();
    assert.equal(waitSync(w, 0, 0, 0.05), 'timed-out');
    assert.ok(performance.now() - t >= 45);
    assert.equal(await wait(w, 0, 0, 0), 'timed-out');
  });

  test(`${label}: async wait is woken without blocking the event loop`, async () => {
    // The wake comes from the fifth turn of an interval: only an event loop that keeps running
    // while the wait is pending can deliver it (a blocked loop would leave the wait to time out).
    const w = make();
    let ticks = 0;
    const timer = setInterval(() => {
      if (++ticks < 5) return;
      clearInterval(timer);
      Atomics.store(w, 0, 1);
      wake(w, 0, 1);
    }, 5);
    assert.equal(await wait(w, 0, 0, 30), 'ok');
    assert.equal(ticks, 5);
  });

  test(`${label}: abort rejects with the reason, and a later wake is not lost`, async () => {
    const w = make();
    const ac = new AbortController();
    const aborted = wait(w, 0, 0, null, ac.signal);
    const other = wait(w, 0, 0, 5);
    const reason = new Error('stop');
    setTimeout(() => ac.abort(reason), 20);
    await assert.rejects(aborted, (e) => e === reason);
    // One wake for the one remaining waiter must reach it, whoever else was queued.
    Atomics.store(w, 0, 1);
    wake(w, 0, 1);
    assert.equal(await other, 'ok');
    await assert.rejects(wait(w, 0, 1, null, AbortSignal.abort(reason)), (e) => e === reason);
  });
}

test('a pending wait keeps the process alive until woken (no silent exit)', async () => {
  // A child that only awaits a wait on a SAB word woken 200 ms later by a timer-less worker.
  const code = `
    import { wait, wake } from ${JSON.stringify(new URL('../src/futex.ts', import.meta.url).href)};
    import { Worker } from 'node:worker_threads';
    const w = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker('const { workerData: w } = require("node:worker_threads"); const t = Date.now(); while (Date.now() - t < 200); Atomics.store(w, 0, 1); Atomics.notify(w, 0);', { eval: true, workerData: w, execArgv: [] });
    worker.unref();
    const r = await wait(w, 0, 0, null);
    console.log('woke', r);
  `;
  const child = spawn(process.execPath, [...process.execArgv, '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const exit = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(exit, 0);
  assert.match(out, /woke (ok|not-equal)/);
});

test('worker thread blocks in waitSync on a SAB word and the main thread wakes it', async () => {
  const w = sabWord();
  const worker = new Worker(
    `const { workerData: w, parentPort } = require('node:worker_threads');
     parentPort.postMessage('ready');
     const r = Atomics.wait(w, 0, 0, 5000);
     parentPort.postMessage(r);`,
    { eval: true, workerData: w },
  );
  const messages: string[] = [];
  await new Promise<void>((resolve) => worker.on('message', (m: string) => { messages.push(m); if (m === 'ready') resolve(); }));
  await new Promise((r) => setTimeout(r, 30));
  Atomics.store(w, 0, 1);
  wake(w, 0, 1);
  await new Promise((resolve) => worker.on('exit', resolve));
  assert.ok(messages[1] === 'ok' || messages[1] === 'not-equal');
});

test('process-shared word: another process wakes an async waiter here', async () => {
  const block = allocate('process', 8, 8);
  const w = int32s(block, 0, 2);
  const state = blockState(block);
  const code = `
    import { attachBlock, int32s } from ${JSON.stringify(new URL('../src/heap.ts', import.meta.url).href)};
    import { wake } from ${JSON.stringify(new URL('../src/futex.ts', import.meta.url).href)};
    const w = int32s(attachBlock(${JSON.stringify(state)}), 0, 2);
    setTimeout(() => { Atomics.store(w, 0, 7); wake(w, 0, 1); }, 100);
  `;
  const waiting = wait(w, 0, 0, 10);
  const child = spawn(process.execPath, [...process.execArgv, '--input-type=module', '-e', code], { stdio: 'inherit' });
  assert.match(await waiting, /^(ok|not-equal)$/);
  assert.equal(Atomics.load(w, 0), 7);
  await new Promise((resolve) => child.on('close', resolve));
});
