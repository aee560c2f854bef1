// CPython's _TestPicklingConnections (ALLOWED_TYPES: processes): Connections and sockets sent over
// a Connection to another process are usable there.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import type * as net from 'node:net';
import type { Connection } from '../../src/connection.js';
import { cpythonClass, reap } from './harness.js';
import { childAccess, forwardAccepted, remoteUpper } from './fixtures/connection.js';

// Python's `connection.families` on POSIX.
const families = ['AF_INET', 'AF_UNIX'] as const;
const latin = (s: string): Buffer => Buffer.from(s, 'latin1');

const NOT_SENDABLE =
  'fails: a socket Connection (or a socket) cannot be sent over a Connection, only passed as a Process argument ' +
  '(PicklingError; to a thread, ValueError). Python shares the descriptor through multiprocessing.resource_sharer.';

cpythonClass('_TestPicklingConnections', ['processes'], (f) => {
  it('test_pickling', { todo: NOT_SENDABLE }, async () => {
    const [lconn, lconn0] = f.ctx.Pipe();
    const lp = new f.ctx.Process({ target: forwardAccepted, args: [lconn0, [...families]], daemon: true });
    const [rconn, rconn0] = f.ctx.Pipe();
    const rp = new f.ctx.Process({ target: remoteUpper, args: [rconn0], daemon: true });
    try {
      lp.start();
      lconn0.close();
      rp.start();
      rconn0.close();
      for (const family of families) {
        const msg = latin(`This connection uses family ${family}`);
        const address = await lconn.recv();
        rconn.send([address, msg]);
        const newConn = (await lconn.recv()) as Connection;
        assert.deepEqual(Buffer.from((await newConn.recv()) as Uint8Array), latin(msg.toString('latin1').toUpperCase()));
        newConn.close();
      }
      rconn.send(null);

      const msg = latin('This connection uses a normal socket');
      const address = await lconn.recv();
      rconn.send([address, msg]);
      const socket = (await lconn.recv()) as net.Socket;
      const chunks: Buffer[] = [];
      for await (const chunk of socket) chunks.push(chunk as Buffer);
      assert.deepEqual(Buffer.concat(chunks), latin(msg.toString('latin1').toUpperCase()));
      socket.destroy();

      lconn.send(null);
      rconn.close();
      lconn.close();
      await lp.join();
      await rp.join();
    } finally {
      lconn.close();
      rconn.close();
      await reap(lp, rp);
    }
  });

  it('test_access', { todo: f.method === 'thread' ? undefined : NOT_SENDABLE }, async () => {
    const [conn, childConn] = f.ctx.Pipe();
    const p = new f.ctx.Process({ target: childAccess, args: [childConn], daemon: true });
    try {
      p.start();
      childConn.close();

      let [r, w] = f.ctx.Pipe(false);
      conn.send(w);
      w.close();
      assert.equal(await r.recv(), 'all is well');
      r.close();

      [r, w] = f.ctx.Pipe(false);
      conn.send(r);
      r.close();
      w.send('foobar');
      w.close();
      assert.equal(await conn.recv(), 'foobar'.repeat(2));
      await p.join();
      assert.equal(p.exitcode, 0);
    } finally {
      conn.close();
      await reap(p);
    }
  });
});
