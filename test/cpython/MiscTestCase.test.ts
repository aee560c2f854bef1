// CPython's MiscTestCase (a plain TestCase). test_large_pool is ported with the pools (group B).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { startProgram } from './harness.js';
import { pythonAll } from './fixtures/pythonAll.js';

describe('MiscTestCase', () => {
  it('test__all__', () => {
    // Python checks that multiprocessing's __all__ lists its public names; ours: the root module
    // has every name of it (less the two without a counterpart: notPorted in fixtures/pythonAll.ts).
    const root = mp as unknown as Record<string, unknown>;
    assert.deepEqual(pythonAll['.']!.names.filter((name) => root[name] === undefined), []);
  });

  it('test_spawn_sys_executable_none_allows_import', async () => {
    // CPython: importing multiprocessing works with sys.executable None. Node always has
    // process.execPath; the nearest behaviour: a fresh program that only imports every module
    // exits 0 and writes nothing on stderr.
    const { code, stderr } = await startProgram(new URL('./fixtures/programs.ts', import.meta.url), ['import-all']).done;
    assert.equal(code, 0, stderr);
    assert.equal(stderr, '');
  });
});
