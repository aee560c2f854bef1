// CPython's TestSimpleQueue (a plain TestCase: run on each start method).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { reap } from './harness.js';
import { putEmptiness } from './fixtures/queues.js';

const isClosedError = (e: Error) => e instanceof mp.OSError && /is closed/.test(e.message);

for (const method of mp.getAllStartMethods()) {
  describe(`TestSimpleQueue [${method}]`, () => {
    const ctx = mp.getContext(method);

    it('test_empty_exceptions', () => {
      // empty() of a closed SimpleQueue raises, used or not (unlike Queue and JoinableQueue).
      const q = ctx.SimpleQueue();
      q.close();
      assert.throws(() => q.empty(), isClosedError);
    });

    it('test_empty', async () => {
      const queue = ctx.SimpleQueue<boolean>();
      const childCanStart = ctx.Event();
      const parentCanContinue = ctx.Event();
      const proc = new ctx.Process({ target: putEmptiness, args: [queue, childCanStart, parentCanContinue], daemon: true });
      try {
        proc.start();
        assert.equal(queue.empty(), true);
        childCanStart.set();
        await parentCanContinue.wait();
        // issue 30301: the child's first put is in the queue when it asks empty() again.
        assert.equal(queue.empty(), false);
        assert.equal(await queue.get(), true);
        assert.equal(await queue.get(), false);
        assert.equal(queue.empty(), true);
        await proc.join();
      } finally {
        await reap(proc);
      }
    });

    it('test_close', () => {
      const queue = ctx.SimpleQueue();
      queue.close();
      // Closing twice is fine.
      queue.close();
    });

    it('test_closed', async () => {
      // CPython checks its private _reader and _writer; what shows is that both ends are closed.
      const queue = ctx.SimpleQueue();
      queue.close();
      assert.throws(() => queue.put(1), isClosedError);
      await assert.rejects(queue.get(), isClosedError);
    });
  });
}
