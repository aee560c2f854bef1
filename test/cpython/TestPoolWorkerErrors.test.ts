// CPython's _TestPoolWorkerErrors (ALLOWED_TYPES: processes): errors of a task, and results that
// cannot travel back, reach the caller and the error callback without breaking the pool.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { cpythonClass } from './harness.js';
import { raising, sqr, unpickleableResult } from './fixtures/pool.js';

cpythonClass('_TestPoolWorkerErrors', ['processes'], (f) => {
  it('test_async_error_callback', async () => {
    const p = f.ctx.Pool(2);
    try {
      let scratchpad: Error | null = null;
      const res = p.applyAsync(raising, [], { errorCallback: (exc) => (scratchpad = exc) });
      await assert.rejects(res.get(), mp.KeyError);
      assert.ok((scratchpad as Error | null) instanceof mp.KeyError, 'the error callback got the KeyError');
      p.close();
      await p.join();
    } finally {
      p.terminate();
    }
  });

  it('test_unpickleable_result', async () => {
    // CPython's MaybeEncodingError (with `.exc` and `.value`) is our PicklingError: its message
    // says what could not be sent back. The pool must not lose workers over it, 20 times over.
    const p = f.ctx.Pool(2);
    try {
      for (let iteration = 0; iteration < 20; iteration++) {
        let scratchpad: Error | null = null;
        const res = p.applyAsync(unpickleableResult, [], { errorCallback: (exc) => (scratchpad = exc) });
        await assert.rejects(res.get(), mp.PicklingError);
        const wrapped = scratchpad as Error | null;
        assert.ok(wrapped instanceof mp.PicklingError, 'the error callback got the PicklingError');
        assert.match(wrapped.message, /function/, 'it names what could not be sent');
      }
      assert.equal(await p.apply(sqr, [3]), 9, 'the pool still works');
      assert.equal(p.stats().workersReplaced, 0, 'no worker was lost');
      p.close();
      await p.join();
    } finally {
      p.terminate();
    }
  });
});
