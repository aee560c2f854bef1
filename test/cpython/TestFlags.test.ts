// CPython's TestFlags (a plain TestCase, run per start method; issue 12098): a child started with
// unusual interpreter flags has a child with the same ones. Python's -E -S -O are Node's flags here.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as mp from '../../src/index.js';

const program = fileURLToPath(new URL('./fixtures/flags.ts', import.meta.url));
const unusual = ['--no-deprecation', '--max-old-space-size=300'];
/** This process's own flags that a program needs (the loader), not the test runner's. */
const loader = process.execArgv.filter((arg) => !arg.startsWith('--test'));

for (const method of mp.getAllStartMethods()) {
  describe(`TestFlags [${method}]`, () => {
    it('test_flags', async () => {
      const { stdout } = await promisify(execFile)(process.execPath, [...unusual, ...loader, program, method], { timeout: 120_000 });
      const [childFlags, grandchildFlags] = JSON.parse(stdout) as [{ execArgv: string[] }, { execArgv: string[] }];
      assert.deepEqual(grandchildFlags, childFlags);
      for (const flag of unusual) assert.ok(childFlags.execArgv.includes(flag), flag);
    });
  });
}
