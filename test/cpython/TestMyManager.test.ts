// CPython's _TestMyManager (ALLOWED_TYPES: manager): a BaseManager subclass with registered types,
// `exposed`, a referent's own error, _callmethod on a hidden method, and a custom proxy type.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as mp from '../../src/index.js';
import { cpythonClass } from './harness.js';
import { MyManager } from './fixtures/managers.js';

const SHUTDOWN_TIMEOUT = 30; // CPython's support.SHORT_TIMEOUT

async function common(manager: MyManager): Promise<void> {
  const foo = await manager.Foo();
  const bar = await manager.Bar();
  const baz = await manager.baz();

  const methods = (proxy: object) => ['f', 'g', '_h'].filter((name) => typeof (proxy as Record<string, unknown>)[name] === 'function');
  assert.deepEqual(methods(foo), ['f', 'g']);
  assert.deepEqual(methods(bar), ['f', '_h']);

  assert.equal(await foo.f(), 'f()');
  await assert.rejects(foo.g(), mp.ValueError);
  assert.equal(await foo._callmethod('f'), 'f()');
  await assert.rejects(foo._callmethod('_h'), mp.RemoteError);

  assert.equal(await bar.f(), 'f()');
  assert.equal(await bar._h(), '_h()');
  assert.equal(await bar._callmethod('f'), 'f()');
  assert.equal(await bar._callmethod('_h'), '_h()');

  const squares: number[] = [];
  for await (const x of baz) squares.push(x);
  assert.deepEqual(squares, Array.from({ length: 10 }, (_, i) => i * i));
}

cpythonClass('_TestMyManager', ['manager'], (f) => {
  it('test_mymanager', async () => {
    const manager = new MyManager({ ctx: f.ctx, shutdownTimeout: SHUTDOWN_TIMEOUT });
    await manager.start();
    try {
      await common(manager);
    } finally {
      await manager.shutdown();
    }
    // bpo-30356: a server slow to stop is terminated.
    assert.ok([0, -15].includes(manager._process!.exitcode!), `exitcode ${manager._process!.exitcode}`);
  });

  it('test_mymanager_context', async () => {
    // CPython's `with manager:` starts a manager that is not started yet; `await using` has no
    // entry step, so the manager is started first and the scope's exit shuts it down.
    const manager = new MyManager({ ctx: f.ctx, shutdownTimeout: SHUTDOWN_TIMEOUT });
    {
      await using m = await manager.start();
      await common(m);
    }
    assert.ok([0, -15].includes(manager._process!.exitcode!), `exitcode ${manager._process!.exitcode}`);
  });

  it('test_mymanager_context_prestarted', async () => {
    const manager = new MyManager({ ctx: f.ctx, shutdownTimeout: SHUTDOWN_TIMEOUT });
    await manager.start();
    {
      await using m = manager;
      await common(m);
    }
    assert.equal(manager._process!.exitcode, 0);
  });
});
