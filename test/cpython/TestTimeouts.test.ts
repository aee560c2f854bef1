// CPython's TestTimeouts (a plain TestCase: run once per start method). CPython sets a global
// socket.setdefaulttimeout(0.1) and checks that Pipe and Listener ignore it. Node has no process-wide
// socket timeout; the nearest behaviour is ported: a pipe receive and an accept that wait longer
// than that (the child pauses first) still complete, nothing times out on an idle connection.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { plainClass, reap } from './harness.js';
import { answerLate } from './fixtures/connection.js';

plainClass('TestTimeouts', mp.getAllStartMethods(), (ctx) => {
  it('test_timeout', async () => {
    const [parent, child] = ctx.Pipe(true);
    using l = new mp.Listener(null, { family: 'AF_INET' });
    const p = new ctx.Process({ target: answerLate, args: [child, l.address, 0.3] });
    try {
      p.start();
      child.close();
      assert.equal(await parent.recv(), 123);
      parent.close();
      using conn = await l.accept();
      assert.equal(await conn.recv(), 456);
      await p.join();
      assert.equal(p.exitcode, 0);
    } finally {
      parent.close();
      await reap(p);
    }
  });
});
