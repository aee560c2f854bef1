// CPython's _TestValue (ALLOWED_TYPES: processes).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { cpythonClass, runToEnd } from './harness.js';
import { codesValues, setSecondValues } from './fixtures/sharedctypes.js';

cpythonClass('_TestValue', ['processes'], (f) => {
  async function testValue(raw: boolean): Promise<void> {
    const values = codesValues.map(([code, value]) => (raw ? f.ctx.RawValue(code, value as never) : f.ctx.Value(code, value as never)));
    values.forEach((sv, i) => assert.equal(sv.value, codesValues[i]![1]));
    assert.equal(await runToEnd(new f.ctx.Process({ target: setSecondValues, args: [values], daemon: true })), 0);
    values.forEach((sv, i) => assert.equal(sv.value, codesValues[i]![2]));
  }

  it('test_value', async () => {
    await testValue(false);
  });

  it('test_rawvalue', async () => {
    await testValue(true);
  });

  it('test_getobj_getlock', () => {
    const val1 = f.ctx.Value('i', 5);
    assert.ok(val1.getLock());
    assert.ok(val1.getObj());

    const val2 = f.ctx.Value('i', 5, { lock: null });
    assert.ok(val2.getLock());
    assert.ok(val2.getObj());

    const lock = f.ctx.Lock();
    const val3 = f.ctx.Value('i', 5, { lock });
    assert.equal(val3.getLock(), lock);
    assert.ok(val3.getObj());

    const arr4 = f.ctx.Value('i', 5, { lock: false });
    assert.ok(!('getLock' in arr4));
    assert.ok(!('getObj' in arr4));

    // Python's AttributeError ('str' object has no attribute 'acquire') is JavaScript's TypeError.
    assert.throws(() => f.ctx.Value('i', 5, { lock: 'navalue' as never }), TypeError);

    const arr5 = f.ctx.RawValue('i', 5);
    assert.ok(!('getLock' in arr5));
    assert.ok(!('getObj' in arr5));
  });

  it('test_invalid_typecode', () => {
    // 3.14 addition.
    assert.throws(() => f.ctx.Value('x' as never, undefined), (e: Error) => e instanceof TypeError && /bad typecode/.test(e.message));
    assert.throws(() => f.ctx.RawValue('x' as never, undefined), (e: Error) => e instanceof TypeError && /bad typecode/.test(e.message));
  });
});

