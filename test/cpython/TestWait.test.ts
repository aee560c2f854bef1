// CPython's TestWait (a plain TestCase: run once per start method).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as mp from '../../src/index.js';
import { wait } from '../../src/connection.js';
import { plainClass, reap } from './harness.js';
import { sendTen, sendTenOverSocket, signalAndSleep } from './fixtures/connection.js';

// gh-110666: CPython tolerates 100 ms of clock resolution when comparing timings.
const CLOCK_RES = 0.1;
const elapsedSince = (t0: number): number => (performance.now() - t0) / 1000;

plainClass('TestWait', mp.getAllStartMethods(), (ctx) => {
  async function testWait(slow: boolean): Promise<void> {
    const readers: mp.Connection[] = [];
    const procs: mp.Process[] = [];
    const messages: [number, number][] = [];
    try {
      for (let i = 0; i < 4; i++) {
        const [r, w] = ctx.Pipe(false);
        const p = new ctx.Process({ target: sendTen, args: [w, slow], daemon: true });
        p.start();
        w.close();
        readers.push(r);
        procs.push(p);
      }
      while (readers.length > 0) {
        for (const r of await wait(readers)) {
          try {
            messages.push((await r.recv()) as [number, number]);
          } catch (error) {
            if (!(error instanceof mp.EOFError)) throw error;
            readers.splice(readers.indexOf(r), 1);
            r.close();
          }
        }
      }
      const byValue = (a: [number, number], b: [number, number]): number => a[0] - b[0] || a[1] - b[1];
      const expected = procs.flatMap((p) => Array.from({ length: 10 }, (_, i): [number, number] => [i, p.pid!]));
      assert.deepEqual(messages.sort(byValue), expected.sort(byValue));
      for (const p of procs) await p.join();
    } finally {
      for (const r of readers) r.close();
      await reap(...procs);
    }
  }

  async function testWaitSocket(slow: boolean): Promise<void> {
    const server = net.createServer({ pauseOnConnect: true });
    await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
    const { address, port } = server.address() as net.AddressInfo;
    const procs: mp.Process[] = [];
    const readers: net.Socket[] = [];
    const received = new Map<net.Socket, Buffer[]>();
    try {
      const accepted = new Promise<net.Socket[]>((resolve) => {
        const got: net.Socket[] = [];
        server.on('connection', (s) => got.push(s) === 4 && resolve(got));
      });
      for (let i = 0; i < 4; i++) {
        const p = new ctx.Process({ target: sendTenOverSocket, args: [[address, port], slow], daemon: true });
        p.start();
        procs.push(p);
      }
      for (const r of await accepted) {
        readers.push(r);
        received.set(r, []);
      }
      server.close();
      while (readers.length > 0) {
        for (const r of await wait(readers)) {
          const msg = r.read() as Buffer | null;
          if (msg === null) {
            readers.splice(readers.indexOf(r), 1);
            r.destroy();
          } else {
            received.get(r)!.push(msg);
          }
        }
      }
      const expected = Array.from({ length: 10 }, (_, i) => `${i}\n`).join('');
      for (const chunks of received.values()) assert.equal(Buffer.concat(chunks).toString(), expected);
    } finally {
      server.close();
      for (const r of readers) r.destroy();
      await reap(...procs);
    }
  }

  it('test_wait', () => testWait(false));

  it('test_wait_socket', () => testWaitSocket(false));

  it('test_wait_slow', () => testWait(true));

  it('test_wait_socket_slow', () => testWaitSocket(true));

  it('test_wait_timeout', async () => {
    const timeout = 1.0; // CPython: 5 s
    const [a, b] = ctx.Pipe();
    try {
      const t0 = performance.now();
      assert.deepEqual(await wait([a, b], timeout), []);
      assert.ok(elapsedSince(t0) > timeout - CLOCK_RES);

      b.send(null);
      assert.deepEqual(await wait([a, b], 20), [a]);
    } finally {
      a.close();
      b.close();
    }
  });

  it('test_wait_integer', async () => {
    const expected = 1; // seconds the child lives after it signals (CPython: 3)
    const sem = ctx.Semaphore(0);
    const [a, b] = ctx.Pipe();
    const p = new ctx.Process({ target: signalAndSleep, args: [sem, expected] });
    try {
      p.start();
      assert.equal(typeof p.sentinel, 'number');
      assert.equal(await sem.acquire({ timeout: 60 }), true, 'the child started and signalled');

      // The sentinel, not the 20 s timeout, ends the wait ([] would mean it timed out), once the
      // child has exited (CPython checks that about `expected` seconds passed).
      assert.deepEqual(await wait([a, p.sentinel, b], expected + 20), [p.sentinel]);
      assert.equal(p.isAlive(), false);

      a.send(null);
      assert.deepEqual(await wait([a, p.sentinel, b], 20), [p.sentinel, b]);

      b.send(null);
      assert.deepEqual(await wait([a, p.sentinel, b], 20), [a, p.sentinel, b]);
      await p.join();
    } finally {
      a.close();
      b.close();
      await reap(p);
    }
  });

  it('test_neg_timeout', async () => {
    const [a, b] = ctx.Pipe();
    const t0 = performance.now();
    assert.deepEqual(await wait([a], -1), []);
    assert.ok(elapsedSince(t0) < 1);
    a.close();
    b.close();
  });
});
