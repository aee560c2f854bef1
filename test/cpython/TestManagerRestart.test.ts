// CPython's _TestManagerRestart (every type: only its Process differs): a manager can start again
// on the address another server listened on a moment ago.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Address } from '../../src/connection.js';
import { cpythonClass } from './harness.js';
import { QueueManager, putHello } from './fixtures/managers.js';

cpythonClass('_TestManagerRestart', ['processes', 'manager', 'threads'], (f) => {
  it('test_rapid_restart', async () => {
    const authkey = randomBytes(32);
    let manager = new QueueManager({ address: ['127.0.0.1', 0], authkey, ctx: f.ctx });
    let addr: Address;
    try {
      const srvr = manager.getServer();
      addr = srvr.address;
      // The listener getServer() opened is not needed: close it, freeing its port.
      srvr.listener.close();
      await manager.start();
      const p = new f.ctx.Process({ target: putHello, args: [manager.address as [string, number], authkey] });
      p.start();
      await p.join();
      const queue = await manager.getQueue();
      assert.equal(await queue.get(), 'hello world');
    } finally {
      await manager.shutdown();
    }

    // A new server on the first listener's address.
    manager = new QueueManager({ address: addr, authkey, ctx: f.ctx });
    try {
      await manager.start();
    } finally {
      await manager.shutdown();
    }
  });
});
