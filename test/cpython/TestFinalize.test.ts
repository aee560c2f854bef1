// CPython's _TestFinalize (ALLOWED_TYPES: processes), on this library's exit finalizers
// (src/util.ts), which are CPython's util.Finalize.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { cpythonClass, reap } from './harness.js';
import { registerFinalizers } from './fixtures/process.js';

cpythonClass('_TestFinalize', ['processes'], (f) => {
  it('test_finalize', async () => {
    const [conn, childConn] = f.ctx.Pipe();
    const p = new f.ctx.Process({ target: registerFinalizers, args: [childConn], daemon: true });
    try {
      p.start();
      await p.join();
      const result: unknown[] = [];
      for (let obj = await conn.recv(); obj !== 'STOP'; obj = await conn.recv()) result.push(obj);
      // CPython's list also has 'a' (run when its object is collected) first; see the fixture.
      assert.deepEqual(result, ['b', 'd10', 'd03', 'd02', 'd01', 'e']);
    } finally {
      conn.close();
      childConn.close();
      await reap(p);
    }
  });

  it('test_thread_safety', {
    skip: 'n/a: CPython runs finalizers and the garbage collector from several threads at once; a JavaScript thread has its own finalizers and runs one job at a time',
  }, () => {});
});
