// CPython's TestStdinBadfiledescriptor (a plain TestCase, run per start method): queues and pools
// work inside a child, whose stdin is closed (Issues 5155, 5313, 5331).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { runToEnd } from './harness.js';
import { poolInProcess, queueInProcess } from './fixtures/process.js';

for (const method of mp.getAllStartMethods()) {
  describe(`TestStdinBadfiledescriptor [${method}]`, () => {
    const ctx = mp.getContext(method);

    it('test_queue_in_process', async () => {
      assert.equal(await runToEnd(new ctx.Process({ target: queueInProcess })), 0);
    });

    it('test_pool_in_process', async () => {
      assert.equal(await runToEnd(new ctx.Process({ target: poolInProcess })), 0);
    });

    it('test_flushing', () => {
      // A Process made (not started) with a target that uses an object leaves the object alone.
      const written: string[] = [];
      const sink: string[] = [];
      const flike = { write: (data: string) => written.push(data), flush: () => sink.push(written.splice(0).join('')) };
      flike.write('foo');
      new ctx.Process({ target: () => flike.flush() });
      flike.flush();
      assert.equal(sink.join(''), 'foo');
    });
  });
}
