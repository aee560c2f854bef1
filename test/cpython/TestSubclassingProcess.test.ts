// CPython's _TestSubclassingProcess (ALLOWED_TYPES: processes).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpythonClass, reap, runToEnd } from './harness.js';
import { returnWithExitCode, throwValueWithStderrInFile, throwWithStderrInFile, UpperCaser } from './fixtures/process.js';

cpythonClass('_TestSubclassingProcess', ['processes'], (f) => {
  const P = f.ctx.Process;

  it('test_subclassing', async () => {
    const uppercaser = new UpperCaser();
    uppercaser.daemon = true;
    try {
      uppercaser.start();
      assert.equal(await uppercaser.submit('hello'), 'HELLO');
      assert.equal(await uppercaser.submit('world'), 'WORLD');
      uppercaser.stop();
      await uppercaser.join();
    } finally {
      await reap(uppercaser);
    }
  });

  /** A fresh file name in a private directory, removed after `body`. */
  async function withTempFile(body: (path: string) => Promise<void>): Promise<void> {
    const dir = mkdtempSync(join(tmpdir(), 'cpython-subclassing-'));
    try {
      await body(join(dir, 'stderr.txt'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('test_stderr_flush', async () => {
    // The child's stderr, redirected to a file, receives the whole stack of its uncaught exception.
    await withTempFile(async (path) => {
      assert.equal(await runToEnd(new P({ target: throwWithStderrInFile, args: [path] })), 1);
      const err = readFileSync(path, 'utf8');
      assert.match(err, /RangeError/);
      assert.match(err, /fixtures\/process\.ts/);
      assert.match(err, /division by zero # MARKER/);
    });
  });

  it('test_sys_exit', async () => {
    // Python's `sys.exit(reason)` with a reason that is not an exit code prints it and exits 1:
    // JavaScript throws such a value.
    for (const reason of [[1, 2, 3], 'ignore this']) {
      await withTempFile(async (path) => {
        assert.equal(await runToEnd(new P({ target: throwValueWithStderrInFile, args: [reason, path], daemon: true })), 1);
        assert.match(readFileSync(path, 'utf8'), typeof reason === 'string' ? /ignore this/ : /1,? 2,? 3/);
      });
    }
    // `sys.exit(code)`: the process ends normally (its queues flush) with that code. JavaScript's
    // form is `process.exitCode = code` and returning. (True, False, 8, None, no argument.)
    const cases: [[number?], number][] = [[[1], 1], [[0], 0], [[8], 8], [[undefined], 0], [[], 0]];
    for (const [args, expected] of cases) {
      assert.equal(await runToEnd(new P({ target: returnWithExitCode, args, daemon: true })), expected, `process.exitCode = ${args[0]}`);
    }
  });
});
