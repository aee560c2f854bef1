import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureRunning, trackerAddress } from '../src/resourceTracker.js';
import { SharedMemory } from '../src/sharedMemory.js';
import * as mp from '../src/index.js';
import { createSegment } from './fixtures/tracker/tasks.js';

const src = (f: string) => JSON.stringify(fileURLToPath(new URL(`../src/${f}`, import.meta.url)));

interface Child {
  lines: string[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Every holder of the child's stdio has closed it: the child and the tracker it started. */
  closed: Promise<void>;
  firstLine: Promise<string>;
  kill: (sig: NodeJS.Signals) => void;
  write: (text: string) => void;
}

/** A fresh `node --import tsx` running `body` (ESM) with SharedMemory and the tracker imported. */
function nodeChild(body: string, env: NodeJS.ProcessEnv, deadlineMs = 30_000): Child {
  const code = `
    const { SharedMemory } = await import(${src('sharedMemory.ts')});
    const rt = await import(${src('resourceTracker.ts')});
    ${body}`;
  const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'pipe'], env });
  const lines: string[] = [];
  let err = '';
  let resolveFirst!: (l: string) => void;
  const firstLine = new Promise<string>((r) => (resolveFirst = r));
  let buf = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const l of parts) {
      lines.push(l);
      if (lines.length === 1) resolveFirst(l);
    }
  });
  p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const timer = setTimeout(() => p.kill('SIGKILL'), deadlineMs);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => p.on('exit', (code, signal) => r({ code, signal })));
  const closed = new Promise<void>((r) => p.on('close', () => { clearTimeout(timer); r(); }));
  return { lines, stderr: () => err, exited, closed, firstLine, kill: (s) => p.kill(s), write: (t) => p.stdin.write(t) };
}

/** This process's environment: a program started with it gets a tracker of its own. */
function freshEnv(): NodeJS.ProcessEnv {
  return { ...process.env };
}

async function until(cond: () => boolean, what: string, deadlineMs = 15_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`timed out: ${what}`)), ms)))]).finally(() => clearTimeout(t));
}

const LEAK_1 = 'resource_tracker: There appear to be 1 leaked shared_memory objects to clean up at shutdown';

test('a segment held by a SIGKILLed process is unlinked by the tracker, with Python\'s warning', async () => {
  const c = nodeChild(`
    const shm = new SharedMemory({ create: true, size: 4096 });
    console.log(shm.name);
    setInterval(() => {}, 1000);`, freshEnv());
  const name = await withDeadline(c.firstLine, 30_000, 'the child to create its segment');
  assert.match(name, /^psm_[0-9a-f]{8}$/);
  assert.ok(existsSync(`/dev/shm/${name}`));
  c.kill('SIGKILL');
  assert.equal((await c.exited).signal, 'SIGKILL');
  await until(() => !existsSync(`/dev/shm/${name}`), `the tracker to unlink /dev/shm/${name}`);
  // The tracker inherited the child's stderr: the pipe closes when the tracker has exited.
  await withDeadline(c.closed, 15_000, 'the tracker to exit');
  assert.ok(c.stderr().includes(LEAK_1), c.stderr());
});

test('a clean exit (unlink) leaves no warning, and track:false is not cleaned up', async () => {
  const clean = nodeChild(`
    const shm = new SharedMemory({ create: true, size: 64 });
    shm.unlink();
    console.log(shm.name);`, freshEnv());
  const untracked = nodeChild(`
    const shm = new SharedMemory({ create: true, size: 64, track: false });
    console.log(shm.name);`, freshEnv());
  await withDeadline(Promise.all([clean.closed, untracked.closed]), 30_000, 'children and their trackers to exit');
  assert.equal((await clean.exited).code, 0);
  assert.equal((await untracked.exited).code, 0);
  assert.ok(!clean.stderr().includes('resource_tracker'), clean.stderr());
  assert.ok(!untracked.stderr().includes('resource_tracker'), untracked.stderr());
  const kept = untracked.lines[0]!;
  assert.ok(existsSync(`/dev/shm/${kept}`), 'track:false segment must survive its creator');
  new SharedMemory({ name: kept, track: false }).unlink();
});

test('the tracker does not keep a program alive, and cleans leaks after a normal exit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mp-rt-test-'));
  const file = join(dir, 'leaked');
  writeFileSync(file, 'x');
  try {
    const t0 = Date.now();
    const c = nodeChild(`
      const shm = new SharedMemory({ create: true, size: 64 });
      rt.register(${JSON.stringify(file)}, 'file');
      console.log(shm.name);`, freshEnv());
    const { code } = await withDeadline(c.exited, 30_000, 'the child to exit by itself');
    assert.equal(code, 0);
    const name = c.lines[0]!;
    await until(() => !existsSync(`/dev/shm/${name}`) && !existsSync(file), 'the tracker to clean up');
    await withDeadline(c.closed, 15_000, 'the tracker to exit');
    assert.ok(c.stderr().includes(LEAK_1), c.stderr());
    assert.ok(c.stderr().includes('resource_tracker: There appear to be 1 leaked file objects to clean up at shutdown'), c.stderr());
    assert.ok(Date.now() - t0 < 30_000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const method of ['spawn', 'forkserver', 'thread'] as const) {
  test(`a child of the library ('${method}') reuses its parent's tracker; the parent may unregister what the child registered`, async () => {
    const address = ensureRunning();
    assert.equal(trackerAddress(), address);
    assert.ok(!Object.values(process.env).some((v) => v?.includes(address)), 'the address is not in the environment, where any program would find it');
    const ctx = mp.getContext(method);
    const out = ctx.Queue<[string, string | null]>();
    const p = new ctx.Process({ target: createSegment, args: [out] });
    p.start();
    const [name, childAddress] = await out.get({ timeout: 30 });
    await p.join(30);
    assert.equal(p.exitcode, 0);
    assert.equal(childAddress, address);
    // The tree's tracker outlives the child (this process still holds it) and the segment is alive.
    assert.ok(existsSync(`/dev/shm/${name}`));
    new SharedMemory({ name }).unlink(); // unregisters it from the shared tracker
    assert.ok(!existsSync(`/dev/shm/${name}`));
  });
}

test('a program started with child_process gets a tracker of its own, which unlinks its leak when it exits', async () => {
  ensureRunning(); // this process has a tracker: the program must not join it
  const c = nodeChild(`
    const shm = new SharedMemory({ create: true, size: 4096 });
    console.log(shm.name);
    console.log(rt.trackerAddress());`, { ...process.env });
  const { code } = await withDeadline(c.exited, 30_000, 'the program');
  assert.equal(code, 0);
  const [name, itsAddress] = c.lines;
  assert.notEqual(itsAddress, trackerAddress());
  // Its own tracker saw it exit: the segment goes now, not when this process exits.
  await until(() => !existsSync(`/dev/shm/${name}`), `the program's tracker to unlink /dev/shm/${name}`);
  await withDeadline(c.closed, 15_000, 'its tracker to exit');
  assert.ok(c.stderr().includes(LEAK_1), c.stderr());
});

test('a tracker killed with SIGKILL is relaunched with Python\'s warning, and the new one cleans up', async () => {
  const c = nodeChild(`
    const first = new SharedMemory({ create: true, size: 64 });
    first.unlink();
    console.log(rt.trackerPid());
    await new Promise((r) => process.stdin.once('data', r).resume());
    const shm = new SharedMemory({ create: true, size: 64 }); // finds the tracker dead, starts another
    console.log(shm.name);
    console.log(rt.trackerPid());
    process.stdin.pause();`, freshEnv());
  const pid = Number(await withDeadline(c.firstLine, 30_000, 'the child to start its tracker'));
  assert.ok(pid > 0);
  process.kill(pid, 'SIGKILL');
  await until(() => { try { process.kill(pid, 0); return false; } catch { return true; } }, 'the tracker to die');
  c.write('go\n');
  const { code } = await withDeadline(c.exited, 30_000, 'the child');
  assert.equal(code, 0);
  const [, name, pid2] = c.lines;
  assert.notEqual(Number(pid2), pid);
  await until(() => !existsSync(`/dev/shm/${name}`), 'the new tracker to unlink the leak');
  await withDeadline(c.closed, 15_000, 'the new tracker to exit');
  assert.ok(c.stderr().includes('resource_tracker: process died unexpectedly, relaunching.  Some resources might leak.'), c.stderr());
  assert.ok(c.stderr().includes(LEAK_1), c.stderr());
});
