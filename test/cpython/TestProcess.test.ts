// CPython's _TestProcess (ALLOWED_TYPES: processes, threads). Our 'thread' start method is a full
// start method, so the methods CPython skips for 'threads' (multiprocessing.dummy) run on it too.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as mp from '../../src/index.js';
import { runProgram, waitForPidGone } from '../helpers.js';
import { cpythonClass, forceGc, reap, runToEnd } from './harness.js';
import {
  breakStdio, createGrandchild, getThenReturn, leavePendingWork, nativeThreadId, putArg, recurse, reportFdCount,
  reportSelf, sendParentProcess, setEventThenSleep, setEventThenSleepWithoutSigintHandler, setEventThenSleepWithStderrInFile,
  sleepFor, sleepThenSet, waitEvent,
} from './fixtures/process.js';

const stdioProgram = fileURLToPath(new URL('./fixtures/brokenParentStdio.ts', import.meta.url));

/** The forkserver's warm children (our fork server): this process's children that wait in reserve. */
function warmForkserverChildren(except: (number | null)[]): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (ppid === process.pid && cmdline.includes('--mp-forkserver') && !except.includes(Number(entry))) pids.push(Number(entry));
    } catch {
      // The process went away meanwhile.
    }
  }
  return pids;
}

cpythonClass('_TestProcess', ['processes', 'threads'], (f) => {
  const P = f.ctx.Process;

  it('test_current', () => {
    const current = f.ctx.currentProcess();
    assert.equal(current.isAlive(), true);
    assert.equal(current.daemon, false);
    assert.ok(current.authkey instanceof Uint8Array);
    assert.ok(current.authkey.length > 0);
    assert.equal(current.ident, process.pid);
    assert.equal(current.exitcode, null);
  });

  it('test_set_executable', { skip: f.method === 'thread' && 'a thread child runs no executable' }, async () => {
    // Python accepts str, bytes and PathLike; a JavaScript path is a string.
    try {
      mp.setExecutable(process.execPath);
      assert.equal(await runToEnd(new P()), 0);
    } finally {
      mp.setExecutable(process.execPath);
    }
  });

  it('test_args_argument', async () => {
    // bpo-45735: args given as a list or as a tuple; ours: as an array or as another iterable.
    for (const arg of [1, 'str', [1], [1, 2]]) {
      for (const container of [(xs: unknown[]) => xs, (xs: unknown[]) => new Set(xs).values()]) {
        const q = await f.objects.Queue(1);
        // Python's args may be a list or a tuple; any iterable here (unchecked against the target).
        const p = new P({ target: putArg, args: container([q, arg]) as never, daemon: true });
        try {
          p.start();
          assert.deepEqual(await q.get({ timeout: 60 }), arg);
          await p.join();
        } finally {
          await reap(p);
        }
      }
    }
  });

  it('test_daemon_argument', () => {
    const proc0 = new P({ target: sleepFor });
    assert.equal(proc0.daemon, f.ctx.currentProcess().daemon);
    const proc1 = new P({ target: sleepFor, daemon: true });
    assert.equal(proc1.daemon, true);
    const proc2 = new P({ target: sleepFor, daemon: false });
    assert.equal(proc2.daemon, false);
  });

  it('test_parent_process_attributes', async () => {
    assert.equal(f.ctx.parentProcess(), null);
    const [r, w] = f.ctx.Pipe(false);
    const p = new P({ target: sendParentProcess, args: [w] });
    try {
      p.start();
      await p.join();
      const [pid, name] = (await r.recv()) as [number, string];
      assert.equal(pid, f.ctx.currentProcess().pid);
      assert.equal(pid, process.pid);
      assert.equal(name, f.ctx.currentProcess().name);
    } finally {
      r.close();
      w.close();
      await reap(p);
    }
  });

  it('test_parent_process', async () => {
    // Python's grandchild outlives its terminated parent and reports it 'not alive'. Here a child
    // exits when its parent does (docs/process.md, beyond Python): the grandchild reports its
    // parent alive, and is gone with it, which the pipe shows as EOF once every writer is gone.
    const [r, w] = f.ctx.Pipe(false);
    const p = new P({ target: createGrandchild, args: [w, f.method] });
    try {
      p.start();
      w.close();
      assert.ok(await r.poll(60), 'could not communicate with the grandchild');
      assert.equal(await r.recv(), 'alive');
      p.terminate();
      await p.join();
      assert.ok(await r.poll(30), 'the grandchild did not go with its parent');
      await assert.rejects(r.recv(), mp.EOFError);
    } finally {
      r.close();
      await reap(p);
    }
  });

  it('test_process', async () => {
    const q = await f.objects.Queue(1);
    const args: [mp.Queue, number, number] = [q, 1, 2];
    const name = 'SomeProcess';
    const p = new P({ target: reportSelf, args, name });
    p.daemon = true;
    const current = f.ctx.currentProcess();
    try {
      assert.deepEqual(p.authkey, current.authkey);
      assert.equal(p.isAlive(), false);
      assert.equal(p.daemon, true);
      assert.ok(!f.ctx.activeChildren().includes(p));
      assert.ok(Array.isArray(f.ctx.activeChildren()));
      assert.equal(p.exitcode, null);

      p.start();

      assert.equal(p.exitcode, null);
      assert.equal(p.isAlive(), true);
      assert.ok(f.ctx.activeChildren().includes(p));

      assert.deepEqual(await q.get(), args.slice(1));
      assert.equal(await q.get(), p.name);
      assert.deepEqual(await q.get(), current.authkey);
      assert.equal(await q.get(), p.pid);

      await p.join();

      assert.equal(p.exitcode, 0);
      assert.equal(p.isAlive(), false);
      assert.ok(!f.ctx.activeChildren().includes(p));
    } finally {
      await reap(p);
    }
  });

  it('test_process_mainthread_native_id', { skip: process.platform !== 'linux' && 'reads /proc/thread-self' }, async () => {
    const mine = readlinkSync('/proc/thread-self');
    const q = await f.objects.Queue(1);
    const p = new P({ target: nativeThreadId, args: [q] });
    try {
      p.start();
      const theirs = await q.get();
      await p.join();
      assert.notEqual(theirs, mine);
    } finally {
      await reap(p);
    }
  });

  /** CPython's `_kill_process`: a daemon child that set `event` is stopped by `stop`; its exit code. */
  async function killProcess(
    stop: (p: mp.Process) => void,
    target: (e: mp.Event, ...rest: never[]) => unknown = setEventThenSleep,
    ...rest: unknown[]
  ): Promise<number | null> {
    const event = await f.objects.Event();
    const p = new P({ target: target as (e: mp.Event, ...rest: unknown[]) => unknown, args: [event, ...rest], daemon: true });
    try {
      p.start();
      assert.equal(p.isAlive(), true);
      assert.ok(f.ctx.activeChildren().includes(p));
      assert.equal(p.exitcode, null);

      assert.equal(await p.join(0), undefined);
      assert.equal(p.isAlive(), true);
      assert.equal(await p.join(-1), undefined);
      assert.equal(p.isAlive(), true);

      assert.ok(await event.wait(60), 'event not signaled in 60 seconds');
      stop(p);
      assert.equal(await p.join(10), undefined);
      assert.equal(p.isAlive(), false, 'join took too long');
      assert.ok(!f.ctx.activeChildren().includes(p));
      await p.join();
      return p.exitcode;
    } finally {
      await reap(p);
    }
  }

  it('test_interrupt', async () => {
    // Python 3.14: SIGINT raises KeyboardInterrupt in the child: its report on its stderr, exit 1.
    // A thread gets no signal: it is stopped with the same code and report.
    const dir = mkdtempSync(join(tmpdir(), 'cpython-interrupt-'));
    try {
      const path = join(dir, 'stderr');
      assert.equal(await killProcess((p) => p.interrupt(), setEventThenSleepWithStderrInFile, path), 1);
      if (f.method !== 'thread') assert.match(readFileSync(path, 'utf8'), /^Process \S+:\nKeyboardInterrupt\n$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('test_interrupt_no_handler', { skip: f.method === 'thread' && 'n/a on thread: a thread has no signal handlers to remove' }, async () => {
    // Python 3.14: the child gave SIGINT its default action (Python's SIG_DFL): the signal ends it, -SIGINT.
    assert.equal(await killProcess((p) => p.interrupt(), setEventThenSleepWithoutSigintHandler), -2);
  });

  it('test_terminate', async () => {
    assert.equal(await killProcess((p) => p.terminate()), -15);
  });

  it('test_kill', async () => {
    assert.equal(await killProcess((p) => p.kill()), -9);
  });

  it('test_cpu_count', () => {
    const cpus = f.ctx.cpuCount();
    assert.ok(Number.isInteger(cpus));
    assert.ok(cpus >= 1);
  });

  it('test_active_children', async () => {
    assert.ok(Array.isArray(f.ctx.activeChildren()));
    const event = await f.objects.Event();
    const p = new P({ target: waitEvent, args: [event] });
    assert.ok(!f.ctx.activeChildren().includes(p));
    try {
      p.daemon = true;
      p.start();
      assert.ok(f.ctx.activeChildren().includes(p));
    } finally {
      await event.set();
    }
    await p.join();
    assert.ok(!f.ctx.activeChildren().includes(p));
  });

  it('test_recursion', async () => {
    const [r, w] = f.ctx.Pipe(false);
    try {
      await recurse(w, [], f.method);
      const expected = [[], [0], [0, 0], [0, 1], [1], [1, 0], [1, 1]];
      const result: unknown[] = [];
      // Every child was joined after it sent: all the messages are there.
      while (result.length < expected.length && (await r.poll(30))) result.push(await r.recv());
      assert.equal(await r.poll(), false, 'no more than the expected messages');
      assert.deepEqual(result, expected);
    } finally {
      r.close();
      w.close();
    }
  });

  it('test_sentinel', async () => {
    const event = await f.objects.Event();
    const p = new P({ target: waitEvent, args: [event, 10] });
    assert.throws(() => p.sentinel, mp.ValueError);
    try {
      p.start();
      const sentinel = p.sentinel;
      assert.equal(typeof sentinel, 'number');
      assert.deepEqual(await mp.connection.wait([sentinel], 0), []);
      await event.set();
      await p.join();
      assert.deepEqual(await mp.connection.wait([sentinel], 1), [sentinel]);
    } finally {
      await reap(p);
    }
  });

  it('test_close', async () => {
    const q = await f.objects.Queue();
    let p: mp.Process | undefined = new P({ target: getThenReturn, args: [q], daemon: true });
    try {
      p.start();
      assert.equal(p.isAlive(), true);
      // The child is still alive: it cannot be closed.
      assert.throws(() => p!.close(), mp.ValueError);
      await q.put(null);
      await p.join();
      assert.equal(p.isAlive(), false);
      assert.equal(p.exitcode, 0);
      p.close();
      assert.throws(() => p!.isAlive(), mp.ValueError);
      await assert.rejects(async () => p!.join(), mp.ValueError);
      assert.throws(() => p!.terminate(), mp.ValueError);
      p.close();
    } finally {
      await reap(p);
    }
    const wr = new WeakRef(p);
    p = undefined;
    await forceGc();
    assert.equal(wr.deref(), undefined, 'a closed process object can be collected');
  });

  it('test_many_processes', async () => {
    // CPython starts 5 on spawn and 100 elsewhere to overwhelm its fork server. Our fork server
    // hands out warm children started as spawn's are: 5 everywhere (CI's time on two cores).
    const n = 5;
    let procs = Array.from({ length: n }, () => new P({ target: sleepFor, args: [0.01] }));
    try {
      for (const p of procs) p.start();
      for (const p of procs) await p.join();
      for (const p of procs) assert.equal(p.exitcode, 0);

      procs = Array.from({ length: n }, () => new P({ target: sleepFor, args: [100] }));
      for (const p of procs) p.start();
      // Terminated right away, whether or not they have started running.
      for (const p of procs) p.terminate();
      for (const p of procs) await p.join();
      for (const p of procs) assert.equal(p.exitcode, -15);
    } finally {
      await reap(...procs);
    }
  });

  it('test_lose_target_ref', async () => {
    const q = await f.objects.Queue();
    // The target lives only in the process object: once started, the process lets it go.
    const start = (): [mp.Process, WeakRef<object>] => {
      const target = async (queue: mp.Queue) => queue.put(5);
      const p = new P({ target, args: [q] });
      p.start();
      return [p, new WeakRef(target)];
    };
    const [p, wr] = start();
    try {
      await p.join();
      await forceGc();
      assert.equal(wr.deref(), undefined, 'the target was released after start');
      assert.equal(await q.get(), 5);
    } finally {
      await reap(p);
    }
  });

  it('test_child_fd_inflation', { skip: f.method === 'thread' && 'threads share their process\'s descriptors' }, async () => {
    // The number of descriptors in a child does not grow with the number of running children.
    const n = 5;
    const evt = await f.objects.Event();
    const q = await f.objects.Queue();
    const procs = Array.from({ length: n }, () => new P({ target: reportFdCount, args: [evt, q] }));
    try {
      for (const p of procs) p.start();
      const counts: number[] = [];
      for (let i = 0; i < n; i++) counts.push((await q.get({ timeout: 60 })) as number);
      assert.equal(new Set(counts).size, 1, String(counts));
    } finally {
      await evt.set();
      for (const p of procs) await p.join(30);
      await reap(...procs);
    }
  });

  it('test_wait_for_threads', async () => {
    // A child process waits for its non-daemon threads before exiting: here, for the work its
    // target left on its event loop (a timer); an unref'd timer, a daemon thread, does not hold it.
    const evt = await f.objects.Event();
    const p = new P({ target: leavePendingWork, args: [evt] });
    try {
      p.start();
      await p.join(60);
      assert.equal(evt.isSet(), true);
    } finally {
      await reap(p);
    }
  });

  it('test_error_on_stdio_flush_1', async () => {
    // The parent's standard streams broken (closed, or removed as Python's None): a whole program
    // per flavour, since the test runner reports through this process's stdout.
    const result = await runProgram(stdioProgram, [f.method], 120_000);
    assert.equal(result.code, 0, result.stderr);
  });

  it('test_error_on_stdio_flush_2', async () => {
    // The child breaks its own standard streams.
    for (const stream of ['stdout', 'stderr']) {
      for (const action of ['close', 'remove'] as const) {
        const evt = await f.objects.Event();
        assert.equal(await runToEnd(new P({ target: breakStdio, args: [evt, { [stream]: action }] })), 0, `${stream} ${action}`);
        assert.equal(evt.isSet(), true);
      }
    }
  });

  /** CPython's `check_forkserver_death`: our fork server is the reserve of warm children; killed,
   * it is replaced and new processes still start. */
  async function checkForkserverDeath(signal: NodeJS.Signals): Promise<void> {
    const delay = 0.5;
    const evt = await f.objects.Event();
    const proc = new P({ target: sleepThenSet, args: [evt, delay] });
    let proc2: mp.Process | undefined;
    try {
      proc.start();
      const warm = warmForkserverChildren([proc.pid]);
      for (const pid of warm) process.kill(pid, signal);
      for (const pid of warm) await waitForPidGone(pid, 10_000);

      const evt2 = await f.objects.Event();
      proc2 = new P({ target: sleepThenSet, args: [evt2] });
      proc2.start();
      await proc2.join();
      assert.equal(evt2.isSet(), true);
      assert.equal(proc2.exitcode, 0);

      await proc.join();
      assert.equal(evt.isSet(), true);
      assert.equal(proc.exitcode, 0);
    } finally {
      await reap(proc, proc2);
    }
  }

  it('test_forkserver_sigint', { skip: f.method !== 'forkserver' && 'forkserver only' }, async () => {
    await checkForkserverDeath('SIGINT');
  });

  it('test_forkserver_sigkill', { skip: f.method !== 'forkserver' && 'forkserver only' }, async () => {
    await checkForkserverDeath('SIGKILL');
  });
});
