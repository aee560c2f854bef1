// CPython's _TestPollEintr (ALLOWED_TYPES: processes): join() is not broken by a signal this
// process handles while it waits.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { cpythonClass, reap } from './harness.js';
import { sendSigusr1, waitForEvent } from './fixtures/connection.js';

cpythonClass('_TestPollEintr', ['processes'], (f) => {
  it('test_poll_eintr', async () => {
    let gotSignal = false;
    // The joined child runs until our handler has seen the signal, so the join is in progress when
    // it arrives (CPython: the child sleeps 2 s, the signal comes after 0.1 s).
    const handled = f.ctx.Event();
    const record = (): void => {
      gotSignal = true;
      handled.set();
    };
    process.on('SIGUSR1', record);
    const p = new f.ctx.Process({ target: waitForEvent, args: [handled] });
    const killer = new f.ctx.Process({ target: sendSigusr1, args: [process.pid] });
    try {
      p.start();
      killer.start();
      try {
        await p.join();
      } finally {
        await killer.join();
      }
      assert.ok(gotSignal);
      assert.equal(p.exitcode, 0);
      assert.equal(killer.exitcode, 0);
    } finally {
      process.off('SIGUSR1', record);
      await reap(p, killer);
    }
  });
});
