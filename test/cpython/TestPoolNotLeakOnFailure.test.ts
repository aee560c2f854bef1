// CPython's TestPoolNotLeakOnFailure (a plain TestCase): when a pool cannot start one of its
// workers, the workers it already started are stopped and the error propagates (issue #19675).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { plainClass } from './harness.js';

plainClass('TestPoolNotLeakOnFailure', mp.getAllStartMethods(), (ctx) => {
  it('test_release_unused_processes', async () => {
    // CPython's context is a mock whose Process fails on the 4th start; ours starts real workers
    // (so a leak is a process that keeps running) and fails the same way.
    let willFailIn = 3;
    const started: mp.Process[] = [];
    // The context's own Process whose start() fails from the 4th on (a subclass would have to be
    // importable by the children; a constructor that returns the real process need not be).
    function FailingProcess(options: mp.ProcessOptions): mp.Process {
      const p = new ctx.Process(options);
      p.start = () => {
        if (willFailIn <= 0) throw new mp.OSError('Manually induced OSError');
        willFailIn--;
        Reflect.deleteProperty(p, 'start'); // the process travels to its child: no function of ours on it
        p.start();
        started.push(p);
      };
      return p;
    }
    const failing = Object.create(ctx, { Process: { value: FailingProcess } }) as mp.BaseContext;
    try {
      assert.throws(() => new mp.Pool(5, { context: failing }), { name: 'OSError', message: /Manually induced OSError/ });
      assert.equal(started.length, 3);
      // Not left running: each exits (CPython checks is_alive() after the pool joined them).
      await Promise.all(started.map((p) => p.join(30)));
      for (const p of started) assert.equal(p.isAlive(), false, `${p.name} was left running`);
    } finally {
      for (const p of started) if (p.isAlive()) p.kill();
    }
  });
});
