// CPython's TestInternalDecorators checks only_run_in_spawn_testsuite, the suite's decorator that
// decides where a test runs ("Logic within a test suite that could errantly skip tests? Test it!").
// Ours has no such decorator; the logic that decides where a ported test runs is harness.flavoursOf,
// tested here in its place.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { flavoursOf } from './harness.js';

const where = (types: Parameters<typeof flavoursOf>[0]): string[] => flavoursOf(types).map((f) => `${f.type}/${f.method}`);

describe('TestInternalDecorators', () => {
  it('test_only_run_in_spawn_testsuite', () => {
    const all = mp.getAllStartMethods();
    assert.deepEqual(where(['processes']), all.map((m) => `processes/${m}`));
    // 'threads' is the thread context, not repeated when 'processes' already runs on thread.
    assert.deepEqual(where(['threads']), ['threads/thread']);
    assert.deepEqual(where(['processes', 'threads']), all.map((m) => `processes/${m}`));
    assert.deepEqual(where(['manager']), ['manager/spawn']);
    assert.deepEqual(where(['processes', 'manager', 'threads']), [...all.map((m) => `processes/${m}`), 'manager/spawn']);
    for (const f of flavoursOf(['processes'])) assert.equal(f.ctx.getStartMethod(), f.method);
  });
});
