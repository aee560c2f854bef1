// CPython's TestNamedResource (a plain TestCase; spawn only, as CPython's).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runProgram } from '../helpers.js';

describe('TestNamedResource [spawn]', () => {
  it('test_global_named_resource_spawn', async () => {
    // gh-90549: a module-level Semaphore in the main module of a spawn program leaks nothing (no
    // resource tracker warning) when the child imports the module again.
    const { code, stderr } = await runProgram(new URL('./fixtures/namedResource.ts', import.meta.url), [], 120_000);
    assert.equal(code, 0);
    assert.equal(stderr, '');
  });
});
