// CPython's _TestArray (ALLOWED_TYPES: processes).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { cpythonClass, runToEnd } from './harness.js';
import { prefixSums } from './fixtures/sharedctypes.js';

cpythonClass('_TestArray', ['processes'], (f) => {
  async function testArray(raw: boolean): Promise<void> {
    const seq = [680, 626, 934, 821, 150, 233, 548, 982, 714, 831];
    const arr = raw ? f.ctx.RawArray('i', seq) : f.ctx.Array('i', seq);

    assert.equal(arr.length, seq.length);
    assert.equal(arr.get(3), seq[3]);
    assert.deepEqual(arr.slice(2, 7), seq.slice(2, 7));

    // arr[4:8] = seq[4:8] = array.array('i', [1, 2, 3, 4])
    arr.setSlice(4, new Int32Array([1, 2, 3, 4]));
    seq.splice(4, 4, 1, 2, 3, 4);
    assert.deepEqual(arr.slice(), seq);

    for (let i = 1; i < seq.length; i++) seq[i]! += seq[i - 1]!;

    assert.equal(await runToEnd(new f.ctx.Process({ target: prefixSums, args: [arr], daemon: true })), 0);
    assert.deepEqual(arr.slice(), seq);
  }

  it('test_array', async () => {
    await testArray(false);
  });

  it('test_array_from_size', () => {
    const size = 10;
    // Zeroed (issue #11675): repeated, so that memory freed by the previous one may be reused.
    for (let i = 0; i < 3; i++) {
      const arr = f.ctx.Array('i', size);
      assert.equal(arr.length, size);
      assert.deepEqual([...arr], new Array(size).fill(0));
      arr.setSlice(0, [...Array(10).keys()]);
      assert.deepEqual([...arr], [...Array(10).keys()]);
    }
  });

  it('test_rawarray', async () => {
    await testArray(true);
  });

  it('test_getobj_getlock_obj', () => {
    const range10 = [...Array(10).keys()];
    const arr1 = f.ctx.Array('i', range10);
    assert.ok(arr1.getLock());
    assert.ok(arr1.getObj());

    const arr2 = f.ctx.Array('i', range10, { lock: null });
    assert.ok(arr2.getLock());
    assert.ok(arr2.getObj());

    const lock = f.ctx.Lock();
    const arr3 = f.ctx.Array('i', range10, { lock });
    assert.equal(arr3.getLock(), lock);
    assert.ok(arr3.getObj());

    const arr4 = f.ctx.Array('i', range10, { lock: false });
    assert.ok(!('getLock' in arr4));
    assert.ok(!('getObj' in arr4));
    // Python's AttributeError ('str' object has no attribute 'acquire') is JavaScript's TypeError.
    assert.throws(() => f.ctx.Array('i', range10, { lock: 'notalock' as never }), TypeError);

    const arr5 = f.ctx.RawArray('i', range10);
    assert.ok(!('getLock' in arr5));
    assert.ok(!('getObj' in arr5));
  });

  it('test_invalid_typecode', () => {
    // 3.14 addition.
    assert.throws(() => f.ctx.Array('x' as never, []), (e: Error) => e instanceof TypeError && /bad typecode/.test(e.message));
    assert.throws(() => f.ctx.RawArray('x' as never, []), (e: Error) => e instanceof TypeError && /bad typecode/.test(e.message));
  });
});
