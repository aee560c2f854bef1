// CPython's _TestSemaphore (ALLOWED_TYPES: processes, manager, threads).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { CLOCK_RES, cpythonClass } from './harness.js';

const TIMEOUT1 = 0.1;
const TIMEOUT2 = 0.1;
const TIMEOUT3 = 0.1;

/** CPython's get_value: a manager's proxy has none (NotImplementedError there: not checked). */
function valueOf(sem: object): number | undefined {
  const getValue = (sem as { getValue?: () => number }).getValue;
  return typeof getValue === 'function' ? getValue.call(sem) : undefined;
}

/** CPython's assertReturnsIfImplemented(value, get_value, sem). */
function assertValue(sem: object, expected: number): void {
  const value = valueOf(sem);
  if (value !== undefined) assert.equal(value, expected);
}

cpythonClass('_TestSemaphore', ['processes', 'manager', 'threads'], (f) => {
  /** CPython's `_test_semaphore`. */
  async function checkSemaphore(sem: { acquire(o?: { block?: boolean }): Promise<boolean>; release(): unknown }): Promise<void> {
    assertValue(sem, 2);
    assert.equal(await sem.acquire(), true);
    assertValue(sem, 1);
    assert.equal(await sem.acquire(), true);
    assertValue(sem, 0);
    assert.equal(await sem.acquire({ block: false }), false);
    assertValue(sem, 0);
    assert.equal(await sem.release(), undefined);
    assertValue(sem, 1);
    assert.equal(await sem.release(), undefined);
    assertValue(sem, 2);
  }

  it('test_semaphore', async () => {
    const sem = await f.objects.Semaphore(2);
    await checkSemaphore(sem);
    // A Semaphore can be released above its initial value.
    assert.equal(await sem.release(), undefined);
    assertValue(sem, 3);
    assert.equal(await sem.release(), undefined);
    assertValue(sem, 4);
  });

  it('test_bounded_semaphore', async () => {
    const sem = await f.objects.BoundedSemaphore(2);
    await checkSemaphore(sem);
  });

  it('test_timeout', { skip: f.type !== 'processes' && 'processes only' }, async () => {
    const sem = await f.objects.Semaphore(0);
    const acquire = async (block: boolean, timeout?: number | null) => {
      const start = performance.now();
      const got = await sem.acquire(block, timeout);
      return { got, elapsed: (performance.now() - start) / 1000 };
    };
    const atOnce = (elapsed: number) => assert.ok(elapsed < 1, `took ${elapsed} s`);
    const after = (elapsed: number, timeout: number) => assert.ok(elapsed >= timeout - CLOCK_RES, `took ${elapsed} s`);

    let r = await acquire(false);
    assert.equal(r.got, false);
    atOnce(r.elapsed);
    r = await acquire(false, null);
    assert.equal(r.got, false);
    atOnce(r.elapsed);
    r = await acquire(false, TIMEOUT1);
    assert.equal(r.got, false);
    atOnce(r.elapsed);
    r = await acquire(true, TIMEOUT2);
    assert.equal(r.got, false);
    after(r.elapsed, TIMEOUT2);
    const start = performance.now();
    assert.equal(await sem.acquire({ timeout: TIMEOUT3 }), false);
    after((performance.now() - start) / 1000, TIMEOUT3);
  });
});
