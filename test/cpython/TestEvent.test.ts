// CPython's _TestEvent (ALLOWED_TYPES: processes, manager, threads).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { CLOCK_RES, cpythonClass, reap } from './harness.js';
import { setEventAfter } from './fixtures/synchronize.js';

const TIMEOUT1 = 0.1;
const TIMEOUT2 = 0.1;

cpythonClass('_TestEvent', ['processes', 'manager', 'threads'], (f) => {
  it('test_event', async () => {
    const event = await f.objects.Event();
    const wait = async (timeout?: number) => {
      const start = performance.now();
      const result = await event.wait(timeout);
      return { result, elapsed: (performance.now() - start) / 1000 };
    };

    assert.equal(await event.isSet(), false);
    assert.equal((await wait(0)).result, false);
    const timedOut = await wait(TIMEOUT1);
    assert.equal(timedOut.result, false);
    assert.ok(timedOut.elapsed >= TIMEOUT1 - CLOCK_RES);

    await event.set();
    assert.equal(await event.isSet(), true);
    assert.equal((await wait()).result, true);
    assert.equal((await wait(TIMEOUT1)).result, true);

    await event.clear();
    const p = new f.ctx.Process({ target: setEventAfter, args: [event, TIMEOUT2], daemon: true });
    try {
      p.start();
      assert.equal((await wait()).result, true);
      await p.join();
    } finally {
      await reap(p);
    }
  });

  it('test_repr', async () => {
    const event = await f.objects.Event();
    if (f.type === 'processes') {
      assert.match(String(event), /^<Event at .* unset>$/);
      await event.set();
      assert.match(String(event), /^<Event at .* set>$/);
      await event.clear();
      assert.match(String(event), /^<Event at .* unset>$/);
    } else if (f.type === 'manager') {
      assert.match(String(event), /^<EventProxy object, typeid 'Event' at .*/);
      await event.set();
      assert.match(String(event), /^<EventProxy object, typeid 'Event' at .*/);
    }
  });
});
