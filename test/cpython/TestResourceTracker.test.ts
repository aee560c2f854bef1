// CPython's TestResourceTracker (a plain TestCase, POSIX). Python's tracker handles named
// semaphores and shared memory; ours, shared memory and files (our locks live in shared memory).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as mp from '../../src/index.js';
import { loadNative } from '../../src/native.js';
import * as resourceTracker from '../../src/resourceTracker.js';
import { plainClass, reap, startProgram } from './harness.js';
import { reportTracker } from './fixtures/sharedMemory.js';

const programs = new URL('./fixtures/programs.ts', import.meta.url);

async function until(condition: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Whether `pid` has gone entirely. A killed process's main thread turns zombie before its other
 * threads have finished exiting (and closed its descriptors): wait for this, not for the zombie.
 * Trackers are our children, so Node reaps them. */
const gone = (pid: number): boolean => !existsSync(`/proc/${pid}`);

/** Whether `pid` exists and is not a zombie. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

/** Whether any of the `/proc/<pid>/status` signal masks `fields` has `signal`'s bit. */
function signalMask(pid: number, fields: string[], signal: NodeJS.Signals): boolean {
  const bit = 1n << BigInt(constants.signals[signal] - 1);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return fields.some((field) => (BigInt(`0x${new RegExp(`^${field}:\\s*(\\w+)`, 'm').exec(status)![1]}`) & bit) !== 0n);
}
/** `signal` was sent to `pid` and not delivered yet. */
const pending = (pid: number, signal: NodeJS.Signals): boolean => signalMask(pid, ['SigPnd', 'ShdPnd'], signal);
/** `pid` handles `signal` (its handler is installed). */
const caught = (pid: number, signal: NodeJS.Signals): boolean => signalMask(pid, ['SigCgt'], signal);

const rtypes = ['shared_memory', 'file'] as const;

describe('TestResourceTracker', () => {
  it('test_resource_tracker', async () => {
    // A killed program leaks two resources of each type; it cleaned one itself without telling
    // the tracker. Its tracker removes the other and reports both.
    for (const rtype of rtypes) {
      const dir = mkdtempSync(join(tmpdir(), 'cpython-rt-'));
      const p = startProgram(programs, ['leak-two', rtype, dir]);
      const names: string[] = [];
      const exists = (name: string): boolean => existsSync(rtype === 'file' ? name : `/dev/shm${name}`);
      const unlink = (name: string): void => (rtype === 'file' ? unlinkSync(name) : loadNative().shmUnlink(name));
      try {
        names.push(await p.line(), await p.line());
        const [name1, name2] = names as [string, string];
        unlink(name1);
        p.kill('SIGTERM');
        // done: the program and its tracker (which inherits its stderr) have both exited.
        const { stderr } = await p.done;
        assert.ok(!exists(name2), `the tracker did not clean up ${name2}`);
        assert.match(stderr, new RegExp(`resource_tracker: There appear to be 2 leaked ${rtype} objects`));
        assert.ok(stderr.includes(`resource_tracker: '${name1}': [Errno`), stderr);
      } finally {
        p.kill('SIGKILL');
        for (const name of names) if (exists(name)) unlink(name);
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  /** CPython's check_resource_tracker_death: signal the tracker, then use it. */
  async function checkResourceTrackerDeath(signal: NodeJS.Signals, shouldDie: boolean): Promise<void> {
    // Start from a tracker of our own (CPython kills the current one and starts another).
    const useTracker = (): void => new mp.SharedMemory({ create: true, size: 1 }).unlink();
    useTracker();
    let pid = resourceTracker.trackerPid();
    if (pid === null) throw new Error('this process did not start its tracker');
    if (running(pid)) {
      process.kill(pid, 'SIGKILL');
      await until(() => gone(pid!), 'the old tracker to die');
    }
    const ignore = (): void => {};
    process.on('warning', ignore);
    try {
      useTracker(); // relaunches it (with a warning we ignore, as CPython does)
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', ignore);
    }
    pid = resourceTracker.trackerPid()!;
    assert.ok(running(pid));
    // CPython starts its tracker with these signals blocked until it ignores them; a Node process
    // cannot be started so (Node resets signal dispositions and masks at start-up), and a tracker
    // signalled in its first moments dies. Wait until it has installed its handlers: the SIGHUP one
    // (Node's own start-up handles SIGINT and SIGTERM already, to restore the terminal and exit).
    await until(() => caught(pid!, 'SIGHUP'), 'the tracker to install its signal handlers');

    process.kill(pid, signal);
    // CPython sleeps a second to give it time to die; we wait for the signal to be delivered.
    if (shouldDie) await until(() => gone(pid), 'the tracker to die');
    else await until(() => !pending(pid, signal), `${signal} to reach the tracker`);

    const warnings: Error[] = [];
    const record = (w: Error): void => void warnings.push(w);
    process.on('warning', record);
    try {
      useTracker();
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', record);
    }
    if (shouldDie) {
      assert.equal(warnings.length, 1, warnings.join('\n'));
      assert.ok(warnings[0]!.message.includes('resource_tracker: process died'), warnings[0]!.message);
      assert.notEqual(resourceTracker.trackerPid(), pid);
    } else {
      assert.deepEqual(warnings.map(String), []);
      assert.ok(running(pid), `the tracker survives ${signal}`);
      assert.equal(resourceTracker.trackerPid(), pid);
    }
  }

  it('test_resource_tracker_sigint', () => checkResourceTrackerDeath('SIGINT', false));

  it('test_resource_tracker_sigterm', () => checkResourceTrackerDeath('SIGTERM', false));

  it('test_resource_tracker_sigkill', () => checkResourceTrackerDeath('SIGKILL', true));

  it('test_too_long_name_resource', () => {
    // gh-96819: a message to the tracker longer than 512 bytes (an atomic pipe write) is refused.
    const rtype = 'shared_memory';
    assert.throws(() => resourceTracker.register('a'.repeat(512 - rtype.length), rtype), mp.ValueError);
  });

  it('test_resource_tracker_exit_code', async () => {
    // 0 when nothing leaked, 1 when it had to clean up (a separate tracker, as CPython's test uses).
    for (const cleanup of [true, false]) {
      const dir = mkdtempSync(join(tmpdir(), 'cpython-rt-'));
      try {
        const p = startProgram(programs, ['tracker-exit-code', String(cleanup), join(dir, 'somename')]);
        assert.equal(await p.line(), cleanup ? '0' : '1');
        const { code, stderr } = await p.done;
        assert.equal(code, 0, stderr);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  it('test_resource_tracker_blocked_signals', async () => {
    // gh-127586 (3.13.2): starting a tracker leaves the caller's blocked signals as they were.
    // Node cannot block a signal; the nearest behaviour: starting its tracker leaves a program's
    // signal state alone (the kernel's blocked, ignored and caught sets; its listeners), and its own
    // SIGUSR1 listener still runs.
    const p = startProgram(programs, ['tracker-signal-state']);
    const before = await p.line();
    const afterStart = await p.line();
    const { code, stderr } = await p.done;
    assert.equal(afterStart, before);
    assert.equal(code, 0, stderr);
  });
});

plainClass('TestResourceTracker', mp.getAllStartMethods(), (ctx) => {
  it('test_resource_tracker_reused', async () => {
    const address = resourceTracker.ensureRunning();
    const [r, w] = ctx.Pipe(false);
    const p = new ctx.Process({ target: reportTracker, args: [w, address] });
    try {
      p.start();
      assert.equal(await r.recv(), true, 'the child uses its parent\'s tracker');
      await p.join();
      assert.equal(p.exitcode, 0);
    } finally {
      w.close();
      r.close();
      await reap(p);
    }
  });
});
