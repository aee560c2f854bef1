import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../src/index.js';
import { square } from './fixtures/tasks.js';
import {
  checkIdentity, CountingProcess, daemonStartsChild, leaveLibraryObjectsOpen, leaveTimer, sleepForever, sleepSeconds,
  startGrandchild,
} from './fixtures/process/behaviours.js';
import { exitWith, fail } from './fixtures/tasks.js';
import { runProgram, startMethods, waitForPidGone } from './helpers.js';
import { sentinelExit } from '../src/sentinels.js';

const entry = new URL('./fixtures/process/entry.ts', import.meta.url);

for (const method of startMethods) {
  describe(`Process on '${method}'`, () => {
    const ctx = mp.getContext(method);
    const started: mp.Process[] = [];
    const make = <A extends unknown[]>(options: mp.ProcessOptions<A>) => {
      const p = new ctx.Process(options);
      started.push(p);
      return p;
    };
    after(async () => {
      const running = started.filter((p) => {
        try {
          return p.pid !== null && p.exitcode === null;
        } catch {
          return false; // closed
        }
      });
      for (const p of running) p.kill();
      await Promise.all(running.map((p) => p.join(5)));
    });

    it('module-level code of the task\'s module sees the child\'s own name (as Python\'s spawn sets it first)', { skip: method === 'forkserver' && 'a warm forkserver child may have imported the module before it had a name' }, async () => {
      const { putNameAtImport } = await import('./fixtures/process/nameAtImport.ts');
      const q = ctx.Queue<string>();
      const p = make({ target: putNameAtImport, args: [q] });
      p.start();
      assert.equal(await q.get({ timeout: 30 }), p.name);
      await p.join(30);
      q.close();
    });

    it('ends a child whose target returned leaving the library\'s objects open (Pipes, Queues, a Listener, a held Lock, a Pool)', async () => {
      const [mine, given] = ctx.Pipe();
      const q = ctx.Queue<string>();
      const p = make({ target: leaveLibraryObjectsOpen, args: [given, q] });
      p.start();
      assert.equal(await q.get({ timeout: 60 }), 'queued');
      await p.join(60);
      assert.equal(p.exitcode, 0, 'an idle library object keeps no child alive');
      mine.close();
      q.close();
    });

    it('ends a child once the work its target left on the event loop is done; an unref\'d timer is dropped', async () => {
      const e = ctx.Event();
      const p = make({ target: leaveTimer, args: [e, 300] });
      p.start();
      await p.join(60);
      assert.equal(p.exitcode, 0);
      assert.equal(e.isSet(), true, 'the timer the target left ran before the child ended');
    });

    for (const [stop, code] of [['terminate', -15], ['kill', -9]] as const) {
      it(`${stop}() ends a child that waits on work its target left`, async () => {
        const e = ctx.Event();
        const returned = ctx.Event();
        const p = make({ target: leaveTimer, args: [e, 600_000, returned] });
        p.start();
        assert.equal(await returned.wait(60), true);
        await p.join(0.5);
        assert.equal(p.exitcode, null, 'the child waits for its timer');
        p[stop]();
        await p.join(30);
        assert.equal(p.exitcode, code);
        assert.equal(e.isSet(), false);
      });
    }

    it('runs a task from a .ts module and exits 0', async () => {
      const p = make({ target: square, args: [3] });
      assert.equal(p.exitcode, null);
      assert.equal(p.isAlive(), false);
      p.start();
      assert.equal(typeof p.pid, 'number');
      await p.join();
      assert.equal(p.exitcode, 0);
      assert.equal(p.isAlive(), false);
      assert.match(p.toString(), /stopped exitcode=0/);
    });

    it('names processes as Python does and tells the child who it and its parent are', async () => {
      const p = make({ target: checkIdentity });
      const expected = p.name;
      assert.match(expected, new RegExp(`^${ctx.Process.name}-\\d+$`));
      const q = make({ target: checkIdentity, args: [expected, 'MainProcess', process.pid] });
      const r = make({ target: checkIdentity, args: ['Process-0', 'MainProcess', process.pid], name: 'Process-0' });
      q.start();
      r.start();
      await Promise.all([q.join(), r.join()]);
      assert.equal(q.exitcode, 3, 'q is not named like p, and says so');
      assert.equal(r.exitcode, 0, 'an explicit name reaches the child');
    });

    it('gives nested children Python\'s Process-N:M names', async () => {
      const p = new mp.Process({ target: startGrandchild });
      started.push(p);
      mp.setStartMethod(method, { force: true });
      p.start();
      await p.join();
      assert.equal(p.exitcode, 0);
    });

    it('reports 1 for an uncaught exception and N for process.exit(N)', async () => {
      const a = make({ target: fail });
      const b = make({ target: exitWith, args: [7] });
      a.start();
      b.start();
      await Promise.all([a.join(), b.join()]);
      assert.equal(a.exitcode, 1);
      assert.equal(b.exitcode, 7);
    });

    it('kill() gives -9 and terminate() gives -15', async () => {
      const a = make({ target: sleepForever });
      const b = make({ target: sleepForever });
      a.start();
      b.start();
      a.kill();
      b.terminate();
      await Promise.all([a.join(), b.join()]);
      assert.equal(a.exitcode, -9);
      assert.equal(b.exitcode, -15);
    });

    it('join(timeout) returns while the child still runs; the sentinel settles at exit', async () => {
      const p = make({ target: sleepForever });
      p.start();
      await p.join(0.05);
      assert.equal(p.exitcode, null);
      assert.equal(p.isAlive(), true);
      assert.ok(mp.activeChildren().includes(p));
      const exited = sentinelExit(p.sentinel);
      assert.ok(exited);
      p.terminate();
      await exited;
      assert.equal(p.isAlive(), false);
      assert.ok(!mp.activeChildren().includes(p), 'activeChildren() reaps finished children');
    });

    it('join() can be aborted with a signal', async () => {
      const p = make({ target: sleepForever });
      p.start();
      const controller = new AbortController();
      const joining = p.join(null, { signal: controller.signal });
      controller.abort(new Error('stop waiting'));
      await assert.rejects(joining, /stop waiting/);
      p.kill();
      await p.join();
    });

    it('a daemon process cannot start children', async () => {
      const p = make({ target: daemonStartsChild, daemon: true });
      assert.equal(p.daemon, true);
      p.start();
      assert.throws(() => { p.daemon = false; }, mp.ValueError);
      await p.join();
      assert.equal(p.exitcode, 5);
    });

    it('runs a subclass that overrides run() (marked with mp.serializable)', async () => {
      const p = new CountingProcess(10);
      started.push(p);
      mp.setStartMethod(method, { force: true });
      p.start();
      await p.join();
      assert.equal(p.exitcode, 42);
      assert.match(p.name, /^CountingProcess-\d+$/);
    });

    it('runs a plain self-contained function sent by its source', async () => {
      const p = make({ target: (code: number) => process.exit(code + 1), args: [10] });
      p.start();
      await p.join();
      assert.equal(p.exitcode, 11);
    });

    it('refuses a closure at the sender with a PicklingError that names it and the fix', () => {
      const offset = 5;
      const addOffset = (x: number) => x + offset;
      const p = make({ target: addOffset, args: [1] });
      assert.throws(() => p.start(), (error: Error) => {
        assert.equal(error.name, 'PicklingError');
        assert.match(error.message, /addOffset/);
        assert.match(error.message, /'offset'/);
        assert.match(error.message, /mp\.task/);
        return true;
      });
      assert.equal(p.pid, null, 'nothing was started');
    });

    it('refuses unserialisable data in args, naming its path', () => {
      // @ts-expect-error square takes one number: the types refuse the extra argument, the runtime its data.
      const p = make({ target: square, args: [1, { cb: () => 1 }] });
      assert.throws(() => p.start(), (error: Error) => error.name === 'PicklingError' && /args\[1\]\.cb|\[1\]\.cb/.test(error.message));
    });

    it('close() refuses a running process and then makes it unusable', async () => {
      const p = make({ target: sleepSeconds, args: [0] });
      p.start();
      if (p.isAlive()) assert.throws(() => p.close(), /Cannot close a process while it is still running/);
      await p.join();
      p.close();
      assert.throws(() => p.pid, /process object is closed/);
      assert.throws(() => p.start(), /process object is closed/);
      assert.equal(typeof p.name, 'string');
    });

    it('an exception in the child reaches the exit code and its stack the child\'s stderr', async () => {
      const result = await runProgram(entry, ['exception', method]);
      assert.match(result.stdout, /exitcode 1/);
      assert.match(result.stderr, /Process \w*Process-1:/);
      assert.match(result.stderr, /TypeError: thrown on purpose/);
      assert.match(result.stderr, /entry\.ts/);
    });

    it('non-daemon children are joined at normal parent exit', async () => {
      const result = await runProgram(entry, ['non-daemon-joined', method]);
      assert.equal(result.code, 0);
      assert.equal(result.stdout, 'parent done\nchild finished\n');
    });

    it('daemon children are terminated when the parent exits', async () => {
      const result = await runProgram(entry, ['daemon-terminated', method], 20_000);
      assert.equal(result.code, 0);
      const pid = Number(/daemon pid (\d+)/.exec(result.stdout)?.[1]);
      if (method !== 'thread') await waitForPidGone(pid, 2_000);
    });

    it('logToStderr() prints Python\'s [LEVEL/ProcessName] lifecycle lines', async () => {
      const result = await runProgram(entry, ['logging', method]);
      assert.match(result.stdout, /logged child/);
      assert.match(result.stderr, /\[INFO\/\w*Process-1\] child process calling self\.run\(\)/);
      assert.match(result.stderr, /\[INFO\/\w*Process-1\] process exiting with exitcode 0/);
      assert.match(result.stderr, /\[INFO\/MainProcess\] process \w*Process-1 exited with exitcode 0/);
    });

    it('a warm forkserver child whose parent has exited goes quietly', async () => {
      const result = await runProgram(new URL('./fixtures/process/warmsAtImport.ts', import.meta.url), [method]);
      assert.equal(result.code, 0);
      assert.doesNotMatch(result.stderr, /ERR_IPC_CHANNEL_CLOSED|Channel closed/);
    });

    it('a child importing an unguarded entry module cannot start processes (bootstrapping phase)', async () => {
      const result = await runProgram(new URL('./fixtures/process/unguarded.ts', import.meta.url), [], 30_000, { MP_TEST_METHOD: method });
      assert.match(result.stdout, /exitcode 1/);
      assert.match(result.stderr, /bootstrapping phase/);
      assert.doesNotMatch(result.stdout, /work ran/);
    });

    for (const [what, env] of [['a Pool', {}], ['setStartMethod', { MP_TEST_SET_START_METHOD: '1' }]] as const) {
      it(`${what} at import time without the isMain guard gives the bootstrapping advice, and leaks nothing`, { timeout: 120_000 }, async () => {
        const result = await runProgram(new URL('./fixtures/process/unguardedPool.ts', import.meta.url), [], 90_000, { MP_TEST_METHOD: method, ...env });
        assert.match(
          result.stdout,
          /^ProcessError: An attempt has been made to start a new process before the current process has finished its bootstrapping phase\./m,
          result.stdout + result.stderr,
        );
        assert.match(result.stdout, /if \(mp\.isMain\(import\.meta\)\)/);
        assert.doesNotMatch(result.stdout, /^result/m);
        assert.doesNotMatch(result.stderr, /leaked/);
      });
    }

    if (method !== 'thread') {
      for (const scenario of ['orphan', 'orphan-busy']) {
        it(`a child whose parent is killed with SIGKILL exits by itself (${scenario === 'orphan' ? 'idle' : 'busy in synchronous code'})`, async () => {
          const { spawn } = await import('node:child_process');
          const parent = spawn(process.execPath, [...process.execArgv, new URL(entry).pathname, scenario, method], { stdio: ['ignore', 'pipe', 'inherit'] });
          const childPid = await new Promise<number>((resolve, reject) => {
            let out = '';
            parent.stdout.on('data', (d) => {
              out += d;
              const m = /child pid (\d+)/.exec(out);
              // Once the child runs its task (a child still starting up notices too, but the
              // time it takes to start is not what this measures).
              if (m && /child (busy|idle)/.test(out)) resolve(Number(m[1]));
            });
            parent.on('exit', () => reject(new Error(`parent exited early: ${out}`)));
          });
          parent.kill('SIGKILL');
          await waitForPidGone(childPid, 1_000);
        });
      }
    }
  });
}

describe('start methods and contexts', () => {
  it('lists the start methods and refuses fork with the alternatives', () => {
    assert.deepEqual(mp.getAllStartMethods(), ['spawn', 'forkserver', 'thread']);
    assert.throws(() => mp.getContext('fork'), (e: Error) => e.name === 'NotAvailableError' && /spawn/.test(e.message) && /thread/.test(e.message));
    assert.throws(() => mp.setStartMethod('fork', { force: true }), mp.NotAvailableError);
    assert.throws(() => mp.getContext('nope'), /cannot find context for 'nope'/);
  });

  it('setStartMethod a second time without force throws; concrete contexts refuse it', () => {
    mp.setStartMethod('spawn', { force: true });
    assert.throws(() => mp.setStartMethod('thread'), /context has already been set/);
    assert.equal(mp.getStartMethod(), 'spawn');
    mp.setStartMethod(null, { force: true });
    assert.equal(mp.getStartMethod(true), null);
    assert.equal(mp.getStartMethod(), 'spawn', 'first use fixes the default');
    assert.throws(() => mp.getContext('thread').setStartMethod('spawn'), /cannot set start method of concrete context/);
  });

  it('names context Process classes after their context', () => {
    assert.equal(mp.getContext('spawn').Process.name, 'SpawnProcess');
    assert.equal(mp.getContext('forkserver').Process.name, 'ForkServerProcess');
    assert.equal(mp.getContext('thread').Process.name, 'ThreadProcess');
    const a = new mp.Process({});
    const b = new (mp.getContext('spawn').Process)({});
    const na = Number(a.name.split('-')[1]);
    assert.equal(b.name, `SpawnProcess-${na + 1}`, 'one counter for all classes');
  });

  it('describes the main process', () => {
    const me = mp.currentProcess();
    assert.equal(me.name, 'MainProcess');
    assert.equal(me.pid, process.pid);
    assert.equal(me.isAlive(), true);
    assert.equal(me.daemon, false);
    assert.equal(me.authkey.length, 32);
    assert.equal(mp.parentProcess(), null);
    assert.equal(mp.isMain(import.meta), true, 'node --test runs each test file as the entry point');
    assert.ok(mp.cpuCount() >= 1 && mp.processCpuCount() >= 1);
    assert.equal(mp.freezeSupport(), undefined);
  });

  it('refuses bad arguments with clear errors', async () => {
    assert.throws(() => new mp.Process({ target: 5 as never }), TypeError);
    const p = new mp.Process({});
    assert.throws(() => p.sentinel, /process not started/);
    await assert.rejects(p.join(), /can only join a started process/);
    assert.throws(() => { p.name = 3 as never; }, /name must be a string/);
  });
});
