// CPython's _TestAtExit (ALLOWED_TYPES: processes). Python's atexit handlers are Node's
// process 'exit' listeners.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpythonClass, runToEnd } from './harness.js';
import { writeFileAtExit } from './fixtures/process.js';

cpythonClass('_TestAtExit', ['processes'], (f) => {
  it('test_atexit', async () => {
    // gh-83856: exit handlers registered by the child run when it exits.
    const dir = mkdtempSync(join(tmpdir(), 'cpython-atexit-'));
    const outputPath = join(dir, 'output.txt');
    try {
      await runToEnd(new f.ctx.Process({ target: writeFileAtExit, args: [outputPath] }));
      assert.equal(readFileSync(outputPath, 'utf8'), 'deadbeef');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
