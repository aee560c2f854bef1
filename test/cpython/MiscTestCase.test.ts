// CPython's MiscTestCase (a plain TestCase).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { runProgram } from '../helpers.js';
import { startProgram } from './harness.js';
import { pythonAll } from './fixtures/pythonAll.js';

// test_large_pool (gh-89240): CPython runs a program with Pool(200) in its default start method. A
// Node worker (with tsx) costs about 0.8 s of CPU and 30 MB (64 of them took 52 s of CPU and 2 GB),
// so 200 are too much for CI on 2 cores: the program runs 24 workers on 'spawn', our default (more
// than Node's default limit of 10 listeners per emitter and many times the CPUs), and
// MP_CPYTHON_LARGE_POOL=200 runs CPython's size.
const workers = process.env.MP_CPYTHON_LARGE_POOL ?? '24';

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

  it('test_large_pool', { timeout: 600_000 }, async () => {
    const program = new URL('./fixtures/largePool.ts', import.meta.url);
    const { code, stdout, stderr } = await runProgram(program, ['spawn', workers], 590_000);
    assert.equal(code, 0, stderr);
    assert.equal(stdout.trim(), '332833500');
    assert.equal(stderr, '');
  });
});
