// CPython's _TestSharedCTypes (ALLOWED_TYPES: processes). CPython's also doubles a ctypes
// Structure (`_Foo`); shared ctypes here are typecodes only, so that part has no counterpart.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { copy } from '../../src/sharedctypes.js';
import { cpythonClass, runToEnd } from './harness.js';
import { double } from './fixtures/sharedctypes.js';

cpythonClass('_TestSharedCTypes', ['processes'], (f) => {
  async function testSharedctypes(lock: boolean): Promise<void> {
    const x = f.ctx.Value('i', 7, { lock });
    const y = f.ctx.Value('d', 1 / 3, { lock });
    const z = f.ctx.Value('q', 2n ** 33n, { lock });
    const arr = f.ctx.Array('d', [...Array(10).keys()], { lock });
    const string = f.ctx.Array('c', 20, { lock });
    string.value = 'hello';

    assert.equal(await runToEnd(new f.ctx.Process({ target: double, args: [x, y, z, arr, string], daemon: true })), 0);
    assert.equal(x.value, 14);
    assert.ok(Math.abs(y.value - 2 / 3) < 1e-7);
    assert.equal(z.value, 2n ** 34n);
    for (let i = 0; i < 10; i++) assert.ok(Math.abs(arr.get(i) - i * 2) < 1e-7);
    assert.equal(string.value, 'hellohello');
  }

  it('test_sharedctypes', async () => {
    await testSharedctypes(false);
  });

  it('test_synchronize', async () => {
    await testSharedctypes(true);
  });

  it('test_copy', () => {
    // CPython copies a Structure of an int, a double and a long long; here each kind of raw object.
    const fooX = f.ctx.RawValue('i', 2);
    const fooY = f.ctx.RawArray('d', [5.0]);
    const fooZ = f.ctx.RawValue('q', 2n ** 33n);
    const [barX, barY, barZ] = [copy(fooX), copy(fooY), copy(fooZ)];
    fooX.value = 0;
    fooY.set(0, 0);
    fooZ.value = 0n;
    assert.equal(barX.value, 2);
    assert.ok(Math.abs(barY.get(0) - 5.0) < 1e-7);
    assert.equal(barZ.value, 2n ** 33n);
  });
});
