// CPython's TestNoForkBomb (a plain TestCase, run per start method): a program without the isMain
// guard gets Python's bootstrapping error, not a fork bomb. CPython's fork start method works there
// (nothing is imported again); none of ours can fork, so every one gets the error.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { runProgram } from '../helpers.js';

const program = new URL('./fixtures/forkBomb.ts', import.meta.url);

for (const method of mp.getAllStartMethods()) {
  describe(`TestNoForkBomb [${method}]`, () => {
    it('test_noforkbomb', async () => {
      const { code, stdout, stderr } = await runProgram(program, [method], 120_000);
      assert.notEqual(code, 0);
      assert.equal(stdout, '');
      assert.match(stderr, /ProcessError/);
      assert.match(stderr, /bootstrapping phase/);
    });
  });
}
