// CPython's _TestLock (ALLOWED_TYPES: processes, manager, threads).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { cpythonClass } from './harness.js';

cpythonClass('_TestLock', ['processes', 'manager', 'threads'], (f) => {
  it('test_lock', async () => {
    const lock = await f.objects.Lock();
    assert.equal(await lock.acquire(), true);
    assert.equal(await lock.acquire({ block: false }), false);
    assert.equal(await lock.release(), undefined);
    // Releasing an unlocked Lock: Python's ValueError (a manager's threading.Lock raises RuntimeError,
    // which reaches the caller under its own name).
    await assert.rejects(async () => lock.release(), f.type === 'manager' ? { name: 'RuntimeError' } : mp.ValueError);
  });

  it('test_rlock', async () => {
    const lock = await f.objects.RLock();
    for (let i = 0; i < 3; i++) assert.equal(await lock.acquire(), true);
    for (let i = 0; i < 3; i++) assert.equal(await lock.release(), undefined);
    await assert.rejects(async () => lock.release());
  });

  it('test_lock_context', async () => {
    const lock = await f.objects.Lock();
    assert.equal(await lock.with(() => 'inside'), 'inside');
    assert.equal(await lock.acquire({ block: false }), true, 'released when the block ends');
    await lock.release();
  });
});
