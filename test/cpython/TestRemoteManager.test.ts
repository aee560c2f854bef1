// CPython's _TestRemoteManager (ALLOWED_TYPES: manager): a server on TCP with an authkey, reached
// by another process and by this one through a manager class that registers names only.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as mp from '../../src/index.js';
import { cpythonClass } from './harness.js';
import { QueueManager, QueueManager2, putValues, remoteValues } from './fixtures/managers.js';

cpythonClass('_TestRemoteManager', ['manager'], (f) => {
  it('test_remote', async () => {
    // CPython uses serializer='xmlrpclib' here; ours has one serializer (docs/managers.md), so the
    // values go through it and an unserialisable one fails as xmlrpclib's does.
    const authkey = randomBytes(32);
    const manager = new QueueManager({ address: ['127.0.0.1', 0], authkey, ctx: f.ctx });
    await manager.start();
    try {
      const p = new f.ctx.Process({ target: putValues, args: [manager.address as [string, number], authkey], daemon: true });
      p.start();
      const manager2 = await new QueueManager2({ address: manager.address, authkey }).connect();
      const queue = await manager2.getQueue();
      assert.deepEqual(await queue.get(), remoteValues);
      await assert.rejects(queue.put(setTimeout), mp.PicklingError);
      await p.join(30);
      assert.equal(p.exitcode, 0);
    } finally {
      await manager.shutdown();
    }
  });
});
