import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { pbkdf2 } from 'node:crypto';
import * as fs from 'node:fs';
import { existsSync, readFileSync, promises as fsp } from 'node:fs';
import { Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { release } from 'node:os';
import { loadNative, nativeCandidates, tryLoadNative, isNativeBuffer } from '../src/native.js';
import { FileExistsError, FileNotFoundError } from '../src/errors.js';

const native = loadNative();
const addonPath = nativeCandidates().find((f) => existsSync(f))!;

function shmName(): string {
  return `/psm_t${randomBytes(4).toString('hex')}`;
}

/** Creates a 64-byte segment, runs `fn` with its words and name, unlinks it. */
async function withSegment(fn: (w: Int32Array, name: string) => Promise<void>): Promise<void> {
  const name = shmName();
  const w = new Int32Array(native.shmOpen(name, true, true, 64).buffer);
  try {
    await fn(w, name);
  } finally {
    native.shmUnlink(name);
  }
}

/** Runs `code` (CommonJS) in a fresh `node` with `addon` = the raw binding; kills it at the deadline. */
function child(code: string, opts: { timeoutMs?: number; onLine?: (line: string) => void; env?: NodeJS.ProcessEnv } = {}) {
  const prelude = `const addon = require(${JSON.stringify(addonPath)});\n`;
  const proc = spawn(process.execPath, ['-e', prelude + code], { stdio: ['ignore', 'pipe', 'inherit'], env: opts.env ?? process.env });
  const lines: string[] = [];
  let buf = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      opts.onLine?.(line);
    }
  });
  const timer = setTimeout(() => proc.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; lines: string[] }>((resolve) =>
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, lines });
    }),
  );
  return { proc, done, lines };
}

function nextLine(c: ReturnType<typeof child>, predicate: (l: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const hit = c.lines.find(predicate);
    if (hit) return resolve(hit);
    const onData = () => {
      const h = c.lines.find(predicate);
      if (h) {
        c.proc.stdout!.off('data', onData);
        resolve(h);
      }
    };
    c.proc.stdout!.on('data', onData);
    c.proc.on('close', () => reject(new Error(`child exited before printing the expected line; got ${JSON.stringify(c.lines)}`)));
  });
}

/** Calls futexWake until it reports a sleeper woken: proves the other side was asleep in the kernel. */
async function wakeSleeper(word: Int32Array, index: number, deadlineMs = 10_000): Promise<number> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const n = native.futexWake(word, index, 1);
    if (n > 0) return n;
    if (Date.now() > end) throw new Error('no sleeper to wake before the deadline');
    await new Promise((r) => setTimeout(r, 2));
  }
}

test('the addon loads, tryLoadNative agrees, and the committed prebuild matches the sources', async () => {
  assert.equal(tryLoadNative(), native);
  assert.equal(typeof native.pageSize, 'number');
  const prebuild = nativeCandidates().find((f) => f.includes('/prebuilds/'))!;
  assert.ok(existsSync(prebuild), `missing prebuild ${prebuild}`);
  const { sourceHash } = (await import(fileURLToPath(new URL('../native/build.mjs', import.meta.url)))) as { sourceHash(): string };
  const recorded = readFileSync(prebuild + '.sha256', 'utf8').trim();
  assert.equal(recorded, sourceHash(), 'native/prebuilds is stale: run `npm run build:native` and commit it');
});

test('shmOpen creates, attaches by name, reports the real size, and errors like Python', () => {
  const name = shmName();
  const a = native.shmOpen(name, true, true, 100);
  try {
    assert.equal(a.size, 100);
    assert.equal(a.buffer.byteLength, 100);
    assert.ok(isNativeBuffer(a.buffer));
    assert.equal(isNativeBuffer(new SharedArrayBuffer(8)), false);
    new Uint8Array(a.buffer).set([1, 2, 3]);
    const b = native.shmOpen(name, false, false, 0);
    assert.equal(b.size, 100);
    assert.deepEqual([...new Uint8Array(b.buffer, 0, 3)], [1, 2, 3]);
    assert.throws(() => native.shmOpen(name, true, true, 100), (e: any) =>
      e instanceof FileExistsError && e.name === 'FileExistsError' && e.code === 'EEXIST' && e.errno === 17 &&
      e.message === `[Errno 17] File exists: '${name}'`);
    assert.equal(native.shmClose(b.buffer), !b.shared);
  } finally {
    native.shmUnlink(name);
  }
  assert.throws(() => native.shmOpen(name, false, false, 0), (e: any) =>
    e instanceof FileNotFoundError && e.code === 'ENOENT' && e.message === `[Errno 2] No such file or directory: '${name}'`);
  assert.throws(() => native.shmUnlink(name), FileNotFoundError);
  assert.throws(() => native.shmOpen('/psm_a\0b', true, true, 8), /null/);
});

test('shmClose detaches an external ArrayBuffer and is false the second time', (t) => {
  const name = shmName();
  const m = native.shmOpen(name, true, true, 4096);
  native.shmUnlink(name);
  if (m.shared) return t.skip('SharedArrayBuffer mappings cannot be closed early');
  const view = new Uint8Array(m.buffer);
  assert.equal(native.shmClose(m.buffer), true);
  assert.equal(m.buffer.byteLength, 0);
  assert.equal(view.length, 0);
  assert.equal(native.shmClose(m.buffer), false);
  assert.equal(native.shmClose(new ArrayBuffer(8)), false);
});

test('futexWait in-process: not-equal, timed-out, bad arguments', () => {
  const name = shmName();
  const m = native.shmOpen(name, true, true, 64);
  native.shmUnlink(name);
  const w = new Int32Array(m.buffer);
  assert.equal(native.futexWait(w, 0, 1, 1000), 'not-equal');
  const t0 = performance.now();
  assert.equal(native.futexWait(w, 0, 0, 50), 'timed-out');
  const took = performance.now() - t0;
  assert.ok(took >= 45 && took < 1000, `took ${took} ms`);
  assert.equal(native.futexWake(w, 0, 1), 0);
  assert.throws(() => native.futexWait(w, 16, 0, 1), RangeError);
  assert.throws(() => native.futexWait(new Uint32Array(4) as unknown as Int32Array, 0, 0, 1), TypeError);
  // A plain SharedArrayBuffer works too (the futex is not private).
  assert.equal(native.futexWait(new Int32Array(new SharedArrayBuffer(8)), 1, 0, 1), 'timed-out');
});

test('two processes doing Atomics.add on one segment: the count is exact', async () => {
  await withSegment(async (w, name) => {
    const N = 1_000_000;
    const code = `
      const w = new Int32Array(addon.shmOpen(${JSON.stringify(name)}, false, false, 0).buffer);
      Atomics.add(w, 2, 1);
      addon.futexWait(w, 1, 0, 10000);           // the start gate
      for (let i = 0; i < ${N}; i++) Atomics.add(w, 0, 1);
      console.log('done');`;
    const kids = [child(code), child(code)];
    // Open the gate once both are at it.
    const end = Date.now() + 10_000;
    while (Atomics.load(w, 2) < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 2));
    Atomics.store(w, 1, 1);
    native.futexWake(w, 1);
    const results = await Promise.all(kids.map((k) => k.done));
    for (const r of results) assert.deepEqual([r.code, r.lines], [0, ['done']]);
    assert.equal(Atomics.load(w, 0), 2 * N);
  });
});

test('blocking futexWait in one process is woken by futexWake in another', async () => {
  await withSegment(async (w, name) => {
    const c = child(`
      const w = new Int32Array(addon.shmOpen(${JSON.stringify(name)}, false, false, 0).buffer);
      const t0 = process.hrtime.bigint();
      const r = addon.futexWait(w, 0, 0, 15000);
      console.log(r, Number(process.hrtime.bigint() - t0) / 1e6, Atomics.load(w, 1));`);
    Atomics.store(w, 1, 42);
    assert.equal(await wakeSleeper(w, 0), 1);
    const { code, lines } = await c.done;
    assert.equal(code, 0);
    const [result, ms, seen] = lines[0]!.split(' ');
    assert.equal(result, 'ok');
    assert.equal(seen, '42');
    assert.ok(Number(ms) < 15000);
  });
});

test('futexWaitAsync in one process is woken from another, and its event loop keeps running', async () => {
  await withSegment(async (w, name) => {
    const c = child(`
      const w = new Int32Array(addon.shmOpen(${JSON.stringify(name)}, false, false, 0).buffer);
      let ticks = 0;
      const iv = setInterval(() => ticks++, 5);
      const { promise } = addon.futexWaitAsync(w, 0, 0, 15000, true);
      setTimeout(() => console.log('waiting'), 100);
      promise.then((r) => { clearInterval(iv); console.log(r, ticks); });`);
    await nextLine(c, (l) => l === 'waiting');
    await wakeSleeper(w, 0);
    const { code, lines } = await c.done;
    assert.equal(code, 0);
    const [result, ticks] = lines[1]!.split(' ');
    assert.equal(result, 'ok');
    assert.ok(Number(ticks) >= 5, `the child's event loop ran only ${ticks} ticks while waiting`);
  });
});

test('8 pending async waits do not stall the libuv threadpool (fs, crypto)', async () => {
  const name = shmName();
  const m = native.shmOpen(name, true, true, 64);
  native.shmUnlink(name);
  const w = new Int32Array(m.buffer);
  const waits = Array.from({ length: 8 }, () => native.futexWaitAsync(w, 0, 0, 30_000));
  const stats = native.asyncWaitStats();
  assert.ok(stats.pending >= 8 && stats.threads >= 8, JSON.stringify(stats));
  const me = fileURLToPath(import.meta.url);
  // A stalled threadpool never finishes this work: the bound only turns that hang into a failure.
  const stalled = new Promise<never>((_, rej) => setTimeout(() => rej(new Error('the libuv threadpool is stalled')), 60_000).unref());
  const work = await Promise.race([stalled, Promise.all([
    ...Array.from({ length: 8 }, () => fsp.readFile(me)),
    ...Array.from({ length: 8 }, () => new Promise<Buffer>((res, rej) => pbkdf2('pw', 'salt', 1000, 32, 'sha256', (e, k) => (e ? rej(e) : res(k))))),
  ])]);
  assert.equal(work.length, 16);
  Atomics.store(w, 0, 1);
  native.futexWake(w, 0);
  const results = await Promise.all(waits.map((x) => x.promise));
  assert.ok(results.every((r) => r === 'ok' || r === 'not-equal'), JSON.stringify(results));
});

test('cancel settles at once, releases the waiter thread, and is false afterwards', async () => {
  const name = shmName();
  const m = native.shmOpen(name, true, true, 64);
  native.shmUnlink(name);
  const w = new Int32Array(m.buffer);
  const before = native.asyncWaitStats().pending;
  const wait = native.futexWaitAsync(w, 0, 0);
  assert.equal(native.asyncWaitStats().pending, before + 1);
  assert.equal(wait.cancel(), true);
  assert.equal(await wait.promise, 'cancelled');
  assert.equal(wait.cancel(), false);
  const end = Date.now() + 5000;
  while (native.asyncWaitStats().pending > before && Date.now() < end) await new Promise((r) => setTimeout(r, 1));
  assert.equal(native.asyncWaitStats().pending, before, 'the waiter thread is still waiting after cancel');
  // A value that already differs settles without a thread.
  Atomics.store(w, 0, 3);
  assert.equal(await native.futexWaitAsync(w, 0, 0).promise, 'not-equal');
  assert.equal(await native.futexWaitAsync(w, 0, 3, 20).promise, 'timed-out');
});

test('a pending async wait sleeps until woken or cancelled, without periodic wake-ups (futex_waitv)', async () => {
  // The child counts the context switches of the addon's waiter thread ("mp-wait") over 1 s of a
  // wait that nothing wakes, then cancels it and waits for the thread to be released.
  const code = `
    const fs = require('fs');
    const w = new Int32Array(new SharedArrayBuffer(8));
    const x = addon.futexWaitAsync(w, 0, 0, -1, true);
    const waiters = () => fs.readdirSync('/proc/self/task').filter((t) => {
      try { return fs.readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim() === 'mp-wait'; } catch { return false; }
    });
    const asleep = (t) => fs.readFileSync('/proc/self/task/' + t + '/stat', 'utf8').split(') ')[1][0] === 'S';
    const switches = (t) => Number(fs.readFileSync('/proc/self/task/' + t + '/status', 'utf8').match(/^voluntary_ctxt_switches:\\s*(\\d+)/m)[1]);
    (async () => {
      let ts = waiters();
      while (ts.length !== 1 || !asleep(ts[0])) { await new Promise((r) => setTimeout(r, 5)); ts = waiters(); }
      const before = switches(ts[0]);
      await new Promise((r) => setTimeout(r, 1000));
      console.log(JSON.stringify({ wakeups: switches(ts[0]) - before, slices: addon.asyncWaitStats().waitsInSlices }));
      addon.futexCancel(x.id);
      console.log(await x.promise);
      while (addon.asyncWaitStats().pending > 0) await new Promise((r) => setTimeout(r, 5));
      console.log('released');
    })();`;
  const { MP_NATIVE_FORCE_WAIT_SLICES: _, ...env } = process.env;
  const [plain, sliced] = await Promise.all([
    child(code, { env }).done,
    child(code, { env: { ...process.env, MP_NATIVE_FORCE_WAIT_SLICES: '1' } }).done,
  ]);
  assert.equal(plain.code, 0);
  assert.equal(sliced.code, 0);
  const p = JSON.parse(plain.lines[0]!);
  const s = JSON.parse(sliced.lines[0]!);
  assert.deepEqual(plain.lines.slice(1), ['cancelled', 'released']);
  assert.deepEqual(sliced.lines.slice(1), ['cancelled', 'released']);
  // The older kernels' path re-checks every 250 ms; futex_waitv (Linux >= 5.16) never wakes.
  assert.equal(s.slices, true);
  assert.ok(s.wakeups >= 1, `the sliced wait woke ${s.wakeups} times in 1 s`);
  const [major, minor] = release().split('.').map(Number);
  if (major! > 5 || (major === 5 && minor! >= 16)) {
    assert.equal(p.slices, false);
    assert.equal(p.wakeups, 0, `an idle wait woke its thread ${p.wakeups} times in 1 s`);
  }
});

test('a pending wait keeps the event loop alive; a cancelled or unref-ed one does not', async () => {
  const sab = `const w = new Int32Array(new SharedArrayBuffer(8));`;
  const kept = child(`${sab} addon.futexWaitAsync(w, 0, 0, 300, true).promise.then((r) => console.log(r));`);
  const cancelled = child(`${sab} const x = addon.futexWaitAsync(w, 0, 0, -1, true); x.promise.then((r) => console.log(r)); addon.futexCancel(x.id);`);
  const unrefd = child(`${sab} addon.futexWaitAsync(w, 0, 0, -1, false).promise.then((r) => console.log(r)); console.log('end');`);
  const t0 = Date.now();
  const [a, b, c] = await Promise.all([kept.done, cancelled.done, unrefd.done]);
  assert.deepEqual([a.code, a.lines], [0, ['timed-out']]);
  assert.deepEqual([b.code, b.lines], [0, ['cancelled']]);
  assert.deepEqual([c.code, c.lines], [0, ['end']]);
  assert.ok(Date.now() - t0 < 15_000);
});

test('the addon loads in worker threads; a worker wakes the main thread across separate mappings', async () => {
  await withSegment(async (w, name) => {
    const wait = native.futexWaitAsync(w, 0, 0, 15_000);
    const worker = new Worker(
      `const addon = require(${JSON.stringify(addonPath)});
       const w = new Int32Array(addon.shmOpen(${JSON.stringify(name)}, false, false, 0).buffer);
       Atomics.store(w, 0, 7);
       require('worker_threads').parentPort.postMessage(addon.futexWake(w, 0));`,
      { eval: true },
    );
    const woken = await new Promise((res, rej) => worker.once('message', res).once('error', rej));
    assert.ok(woken === 0 || woken === 1);
    assert.ok(['ok', 'not-equal'].includes(await wait.promise));
    assert.equal(Atomics.load(w, 0), 7);
    await worker.terminate();
  });
});

test('a worker torn down with a pending async wait releases its waiter thread', async () => {
  const before = native.asyncWaitStats().pending;
  const worker = new Worker(
    `const addon = require(${JSON.stringify(addonPath)});
     const w = new Int32Array(new SharedArrayBuffer(8));
     addon.futexWaitAsync(w, 0, 0, -1, true);
     require('worker_threads').parentPort.postMessage('waiting');`,
    { eval: true },
  );
  await new Promise((res) => worker.once('message', res));
  await worker.terminate();
  const end = Date.now() + 5000;
  while (native.asyncWaitStats().pending > before && Date.now() < end) await new Promise((r) => setTimeout(r, 2));
  assert.equal(native.asyncWaitStats().pending, before);
});

test('socketpair gives two connected, close-on-exec stream fds', async () => {
  const [a, b] = native.socketpair();
  assert.ok(a > 2 && b > 2 && a !== b);
  const sa = new Socket({ fd: a, readable: true, writable: true });
  const sb = new Socket({ fd: b, readable: true, writable: true });
  const got = new Promise<string>((res) => sb.once('data', (d) => res(d.toString())));
  sa.write('hello');
  assert.equal(await got, 'hello');
  sa.destroy();
  sb.destroy();
});

test('readSocket: -1 after the timeout, the bytes written, 0 at end of stream', () => {
  const [a, b] = native.socketpair();
  try {
    const into = Buffer.alloc(8);
    assert.equal(native.readSocket(b, into, 20), -1);
    native.writeSocket(a, Buffer.from('hi'));
    assert.equal(native.readSocket(b, into, 0), 2);
    assert.equal(into.subarray(0, 2).toString(), 'hi');
    fs.closeSync(a);
    assert.equal(native.readSocket(b, into, 1000), 0, 'end of stream');
  } finally {
    fs.closeSync(b);
  }
});

test('readSocket\'s spinMs changes only how it waits: 0 sleeps at once, more than 50 µs is 50 µs; the timeout, the bytes and the end are the same', () => {
  const [a, b] = native.socketpair();
  try {
    const into = Buffer.alloc(8);
    for (const spinMs of [0, 0.01, 1000]) {
      const t0 = performance.now();
      assert.equal(native.readSocket(b, into, 20, [], false, spinMs), -1);
      assert.ok(performance.now() - t0 >= 19, `spinMs ${spinMs}: waited the timeout`);
      native.writeSocket(a, Buffer.from('hi'));
      assert.equal(native.readSocket(b, into, -1, [], false, spinMs), 2);
    }
    fs.closeSync(a);
    assert.equal(native.readSocket(b, into, -1, [], false, 0), 0, 'end of stream');
  } finally {
    fs.closeSync(b);
  }
});

test('readSocket with peek leaves the bytes; watchReadable fires while bytes wait, reading nothing, and its close releases the descriptor', { timeout: 10_000 }, async () => {
  const [a, b] = native.socketpair();
  const watch = native.watchReadable(b, () => fired++);
  let fired = 0;
  try {
    const into = Buffer.alloc(8);
    assert.equal(native.readSocket(b, into, 0, [], true), -1, 'nothing yet');
    native.writeSocket(a, Buffer.from('abc'));
    assert.equal(native.readSocket(b, into, 0, [], true), 3);
    watch.set(true, true);
    while (fired < 2) await new Promise((resolve) => setImmediate(resolve)); // level-triggered: again and again
    watch.set(false, false);
    assert.equal(native.readSocket(b, into, 0), 3, 'still all there');
    assert.equal(into.subarray(0, 3).toString(), 'abc');
    watch.close();
    watch.close();
    fs.closeSync(b);
    assert.equal(native.readSocket(a, into, 1000), 0, 'EOF: the watch\'s duplicate is closed too');
  } finally {
    watch.close();
    fs.closeSync(a);
  }
});

test('writeSocket writes more than the socket holds, waiting for the reader', { timeout: 30_000 }, async () => {
  const [a, b] = native.socketpair();
  // The writer blocks, so it runs in a child process (killed if it hangs); this side reads.
  const writer = spawn(process.execPath, ['-e',
    `require(${JSON.stringify(addonPath)}).writeSocket(3, Buffer.alloc(8 << 20, 1))`], { stdio: ['ignore', 'inherit', 'inherit', a] });
  fs.closeSync(a);
  const reader = new Socket({ fd: b, readable: true, writable: false });
  let n = 0;
  reader.on('data', (d: Buffer) => (n += d.length));
  const [code] = await Promise.all([
    new Promise((resolve) => writer.on('exit', resolve)),
    new Promise((resolve) => reader.on('end', resolve)),
  ]);
  reader.destroy();
  assert.equal(code, 0);
  assert.equal(n, 8 << 20);
});

test('sendFds / recvFds pass descriptors in one message', () => {
  const [a, b] = native.socketpair();
  const [x, y] = native.socketpair();
  try {
    native.sendFds(a, [x, y]);
    const [x2, y2] = native.recvFds(b, 2);
    assert.ok(x2! > 2 && y2! > 2 && x2 !== x && y2 !== y);
    native.writeSocket(x2!, Buffer.from('through a passed fd'));
    const into = Buffer.alloc(64);
    const n = native.readSocket(y, into, 1000);
    assert.equal(into.subarray(0, n).toString(), 'through a passed fd');
    fs.closeSync(x2!);
    fs.closeSync(y2!);
    fs.closeSync(a);
    assert.throws(() => native.recvFds(b, 1), (e) => (e as { code?: string }).code === 'EPIPE', 'the sender went away');
  } finally {
    for (const fd of [b, x, y]) fs.closeSync(fd);
  }
});

test('writeSocket(wait false) writes what fits, writeSocket(ms) what fits within ms; pollAsync reports writable once the reader drains; readSocket wakes for a writable writeFd (-2)', async () => {
  const [a, b] = native.socketpair();
  try {
    // Fill a's send buffer without waiting.
    const chunk = Buffer.alloc(1 << 20, 1);
    let written = 0;
    for (let n = native.writeSocket(a, chunk, false); n > 0; n = native.writeSocket(a, chunk, false)) written += n;
    assert.ok(written > 0);
    assert.equal(native.writeSocket(a, chunk, false), 0, 'the socket is full');
    // A write with a time limit (ms) gives up after it, having written what the socket took.
    const started = performance.now();
    assert.equal(native.writeSocket(a, chunk, 50), 0, 'nothing fits within 50 ms');
    assert.ok(performance.now() - started >= 45, 'writeSocket(50) waited');
    // Full: a wait for writability times out; once the reader drains it, the wait is over.
    const into = Buffer.alloc(1 << 16);
    const full = native.pollAsync(a, true, 50);
    assert.equal(await full.promise, 'timed-out');
    const wait = native.pollAsync(a, true);
    let drained = 0;
    while (drained < written) drained += Math.max(0, native.readSocket(b, into, 1000));
    assert.equal(await wait.promise, 'ok');
    const [c, d] = native.socketpair();
    try {
      assert.equal(native.readSocket(c, into, 1000, [d]), -2, 'd can be written');
      const cancelled = native.pollAsync(c, false);
      assert.equal(cancelled.cancel(), true);
      assert.equal(await cancelled.promise, 'cancelled');
    } finally {
      fs.closeSync(c);
      fs.closeSync(d);
    }
  } finally {
    fs.closeSync(a);
    fs.closeSync(b);
  }
});
