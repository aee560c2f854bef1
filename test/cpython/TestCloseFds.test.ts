// CPython's TestCloseFds (a plain TestCase, run per start method): a child does not inherit
// descriptors it was not given. CPython's fork children share them; so do our thread children
// (one process), which the port checks as CPython's fork branch does.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync } from 'node:fs';
import * as mp from '../../src/index.js';
import { reap } from './harness.js';
import { useDescriptor } from './fixtures/process.js';

/** A descriptor numbered high enough that a fresh child has none as high (CPython's get_high_socket_fd). */
function highDescriptor(): number {
  const opened: number[] = [];
  let fd = openSync('/dev/null', 'r');
  while (fd < 50) {
    opened.push(fd);
    fd = openSync('/dev/null', 'r');
  }
  for (const x of opened) closeSync(x);
  return fd;
}

for (const method of mp.getAllStartMethods()) {
  describe(`TestCloseFds [${method}]`, () => {
    it('test_closefd', async () => {
      const ctx = mp.getContext(method);
      const [reader, writer] = ctx.Pipe();
      const fd = highDescriptor();
      const p = new ctx.Process({ target: useDescriptor, args: [writer, fd] });
      let e: unknown;
      try {
        p.start();
        e = await reader.recv();
        await p.join();
      } finally {
        closeSync(fd);
        writer.close();
        reader.close();
        await reap(p);
      }
      if (method === 'thread') assert.equal(e, null);
      else assert.deepEqual(e, { code: 'EBADF' });
    });
  });
}
