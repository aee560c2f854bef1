/**
 * Connection, Pipe, Listener, Client, wait: CPython's _TestConnection, _TestPoll, _TestListener,
 * _TestListenerClient, TestWait and ChallengeResponseTest, on real sockets and MessagePorts, plus
 * the hostile-peer cases (garbage, truncated frames, 4 GiB lengths, silence).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MessageChannel, Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import {
  Client, Connection, Listener, Pipe, answerChallenge, deliverChallenge, pipeForProcesses, wait,
  type Address,
} from '../src/connection.ts';
import {
  createResponse, digestNameAndPayload, FRAME_HEADROOM, FrameDecoder, frame, frameInPlace, verifyChallenge,
} from '../src/connectionFraming.ts';
import {
  AuthenticationError, BufferTooShort, EOFError, OSError, PicklingError, TimeoutError, UnpicklingError, ValueError,
} from '../src/errors.ts';
import { dumps, newReduceContext, reduce, rebuildSync, reduceSymbol } from '../src/reduction.ts';
import { registerSentinel } from '../src/sentinels.ts';
import { loadNative } from '../src/native.ts';
import { runProgram, waitForThreadInPoll } from './helpers.ts';

type PipeMaker = (duplex?: boolean) => [Connection, Connection];
const fallbackPipe: PipeMaker = (duplex = true) => pipeForProcesses(duplex, { useNative: false });
/** A Connection over each end of a caller's own MessageChannel (the port transport). */
const portPipe: PipeMaker = (duplex = true) => {
  const { port1, port2 } = new MessageChannel();
  return [new Connection(port1, { writable: duplex }), new Connection(port2, { readable: duplex })];
};
const makers: [string, PipeMaker][] = [
  ['Pipe (socketpair)', pipeForProcesses],
  ['Pipe (pure Node fallback)', fallbackPipe],
  ['own MessagePort', portPipe],
];

const CHILD = fileURLToPath(new URL('./fixtures/connection-child.ts', import.meta.url));
const SYNC_PROGRAM = fileURLToPath(new URL('./fixtures/connection-sync-program.ts', import.meta.url));

function closeAll(...conns: Connection[]): void {
  for (const c of conns) c.close();
}

/**
 * Starts `target(...args)` in a child of `method`, closes this process's copies of the ends
 * `handedOver`, runs `body`, then expects the child to exit 0. The child is killed and `cleanup`
 * runs whatever happens.
 */
async function withChild(
  method: 'spawn' | 'forkserver' | 'thread',
  target: (...args: never[]) => unknown,
  args: unknown[],
  handedOver: Connection[],
  body: () => Promise<void>,
  cleanup: () => void,
): Promise<void> {
  const mp = await import('../src/index.ts');
  const p = new (mp.getContext(method).Process)({ target: target as (...a: unknown[]) => unknown, args });
  p.start();
  try {
    for (const end of handedOver) if (!end.closed) end.close();
    await body();
    await p.join(20);
    assert.equal(p.exitcode, 0);
  } finally {
    if (p.exitcode === null) p.kill();
    cleanup();
  }
}

function isError(cls: new (...a: never[]) => Error, message?: string | RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    if (typeof message === 'string') assert.equal((e as Error).message, message);
    else if (message) assert.match((e as Error).message, message);
    return true;
  };
}

for (const [name, makePipe] of makers) {
  describe(name, () => {
    it('send/recv objects and bytes, both directions (test_connection)', { timeout: 10_000 }, async () => {
      const [a, b] = makePipe();
      try {
        const obj = { n: 1, s: 'x', list: [1, 2, 3], map: new Map([[1, 'one']]), big: 10n, nested: { d: new Date(0) } };
        a.send(obj);
        assert.deepEqual(await b.recv(), obj);
        b.send([1, 'two']);
        assert.deepEqual(await a.recv(), [1, 'two']);
        const msg = Buffer.from('hello');
        a.sendBytes(msg);
        assert.deepEqual(await b.recvBytes(), msg);
        // recvBytesInto an Int32Array at a byte offset (array('i') in Python's test)
        const arr = new Int32Array([0, 1, 2, 3, 4]);
        a.sendBytes(arr);
        const into = new Int32Array(8);
        assert.equal(await b.recvBytesInto(into, 8), 20);
        assert.deepEqual([...into], [0, 0, 0, 1, 2, 3, 4, 0]);
        // too small: BufferTooShort with the whole message, consumed
        a.sendBytes(Buffer.from('0123456789'));
        a.sendBytes(Buffer.from('next'));
        await assert.rejects(b.recvBytesInto(new Uint8Array(4)), (e: unknown) => {
          assert.ok(e instanceof BufferTooShort);
          assert.equal(Buffer.from(e.data).toString(), '0123456789');
          return true;
        });
        assert.equal((await b.recvBytes()).toString(), 'next');
        // 16 MiB
        const big = Buffer.alloc(16 * 1024 * 1024, 0x5a);
        big[big.length - 1] = 1;
        a.sendBytes(big);
        assert.ok((await b.recvBytes()).equals(big));
        // EOF
        a.close();
        await assert.rejects(b.recv(), EOFError);
        await assert.rejects(b.recvBytes(), EOFError);
        assert.equal(await b.poll(), true, 'EOF makes poll true');
      } finally {
        closeAll(a, b);
      }
    });

    it('empty messages are valid and never merged (test_empty_string, test_dont_merge, test_strings)', { timeout: 10_000 }, async () => {
      const [a, b] = makePipe();
      try {
        assert.equal(await b.poll(), false);
        a.sendBytes(new Uint8Array(0));
        assert.equal(await b.poll(), true);
        assert.equal(await b.poll(), true, 'poll is repeatable');
        assert.equal((await b.recvBytes()).length, 0);
        assert.equal(await b.poll(), false);
        for (const m of ['a', 'b', 'cd']) a.sendBytes(Buffer.from(m));
        assert.equal(await b.poll(), true);
        assert.equal((await b.recvBytes()).toString(), 'a');
        assert.equal((await b.recvBytes()).toString(), 'b');
        assert.equal((await b.recvBytes()).toString(), 'cd');
        const strings = ['hello', '', 'a', 'b', '', 'cd', '', 'x'.repeat(20000), '', 'end'];
        for (const s of strings) a.sendBytes(Buffer.from(s));
        for (const s of strings) assert.equal((await b.recvBytes()).toString(), s);
      } finally {
        closeAll(a, b);
      }
    });

    it('poll timeouts: 0 returns at once, a number waits that long, null waits forever', { timeout: 10_000 }, async () => {
      const [a, b] = makePipe();
      try {
        let t = performance.now();
        assert.equal(await b.poll(), false);
        assert.equal(await b.poll(-1), false);
        assert.ok(performance.now() - t < 200);
        t = performance.now();
        assert.equal(await b.poll(0.2), false);
        const waited = performance.now() - t;
        assert.ok(waited >= 180 && waited < 1500, `waited ${waited} ms`);
        setTimeout(() => a.send('late'), 50);
        assert.equal(await b.poll(null), true);
        assert.equal(await b.recv(), 'late');
        setTimeout(() => a.send('soon'), 50);
        assert.equal(await b.poll(5), true);
        assert.equal(await b.recv(), 'soon');
      } finally {
        closeAll(a, b);
      }
    });

    it('concurrent recv() calls get messages in call order; abort loses nothing', { timeout: 10_000 }, async () => {
      const [a, b] = makePipe();
      try {
        const first = b.recv();
        const controller = new AbortController();
        const aborted = b.recv({ signal: controller.signal });
        const second = b.recvBytes();
        const third = b.recv();
        controller.abort(new Error('stop'));
        await assert.rejects(aborted, { message: 'stop' });
        a.send(1);
        a.sendBytes(Buffer.from('two'));
        a.send(3);
        assert.equal(await first, 1);
        assert.equal((await second).toString(), 'two');
        assert.equal(await third, 3);
        // abort while waiting, then the message arrives for the next recv
        const c2 = new AbortController();
        const p = b.recv({ signal: c2.signal });
        setTimeout(() => c2.abort(new TimeoutError('gave up')), 20);
        await assert.rejects(p, TimeoutError);
        a.send('kept');
        assert.equal(await b.recv(), 'kept');
        // an already aborted signal rejects at once with its reason
        await assert.rejects(b.recv({ signal: AbortSignal.abort(new Error('pre')) }), { message: 'pre' });
        await assert.rejects(b.poll(null, { signal: AbortSignal.timeout(20) }), { name: 'TimeoutError' });
      } finally {
        closeAll(a, b);
      }
    });

    it('simplex: [readOnly, writeOnly] and wrong-direction errors (test_duplex_false)', { timeout: 10_000 }, async () => {
      const [r, w] = makePipe(false);
      try {
        assert.equal(r.readable, true);
        assert.equal(r.writable, false);
        assert.equal(w.readable, false);
        assert.equal(w.writable, true);
        w.send(42);
        assert.equal(await r.recv(), 42);
        assert.throws(() => r.send(1), isError(OSError, 'connection is read-only'));
        assert.throws(() => r.sendBytes(Buffer.from('x')), isError(OSError, 'connection is read-only'));
        await assert.rejects(w.recv(), isError(OSError, 'connection is write-only'));
        await assert.rejects(w.recvBytes(), isError(OSError, 'connection is write-only'));
        await assert.rejects(w.poll(), isError(OSError, 'connection is write-only'));
      } finally {
        closeAll(r, w);
      }
    });

    it('sendBytes offset/size checks (test_sendbytes)', { timeout: 10_000 }, async () => {
      const [a, b] = makePipe();
      try {
        const msg = Buffer.from('abcdefghijklmnopqrstuvwxyz');
        a.sendBytes(msg);
        assert.equal((await b.recvBytes()).toString(), msg.toString());
        a.sendBytes(msg, 5);
        assert.equal((await b.recvBytes()).toString(), 'fghijklmnopqrstuvwxyz');
        a.sendBytes(msg, 7, 8);
        assert.equal((await b.recvBytes()).toString(), 'hijklmno');
        a.sendBytes(msg, 26);
        assert.equal((await b.recvBytes()).length, 0);
        a.sendBytes(msg, 26, 0);
        assert.equal((await b.recvBytes()).length, 0);
        assert.throws(() => a.sendBytes(msg, 27), isError(ValueError, 'buffer length < offset'));
        assert.throws(() => a.sendBytes(msg, 22, 5), isError(ValueError, 'buffer length < offset + size'));
        assert.throws(() => a.sendBytes(msg, 26, 1), isError(ValueError, 'buffer length < offset + size'));
        assert.throws(() => a.sendBytes(msg, -1), isError(ValueError, 'offset is negative'));
        assert.throws(() => a.sendBytes(msg, 4, -1), isError(ValueError, 'size is negative'));
        await assert.rejects(b.recvBytes(-1), isError(ValueError, 'negative maxlength'));
        await assert.rejects(b.recvBytesInto(new Uint8Array(4), -1), isError(ValueError, 'negative offset'));
        await assert.rejects(b.recvBytesInto(new Uint8Array(4), 5), isError(ValueError, 'offset too large'));
        assert.throws(() => a.sendBytes('text' as unknown as Uint8Array), TypeError);
        // the bytes are copied at send time
        const mutable = Buffer.alloc(100_000, 1);
        a.sendBytes(mutable);
        mutable.fill(2);
        assert.equal((await b.recvBytes())[99_999], 1);
      } finally {
        closeAll(a, b);
      }
    });

    it('recvBytes(maxlength) on a longer message: OSError and no longer readable', { timeout: 10_000 }, async () => {
      const [a, b] = makePipe();
      try {
        a.sendBytes(Buffer.from('0123456789'));
        await assert.rejects(b.recvBytes(5), isError(OSError, 'bad message length'));
        assert.equal(b.readable, false);
        await assert.rejects(b.recvBytes(), isError(OSError, 'connection is write-only'));
        b.send('still writable');
        assert.equal(await a.recv(), 'still writable');
      } finally {
        closeAll(a, b);
      }
      const [r, w] = makePipe(false);
      w.sendBytes(Buffer.from('0123456789'));
      await assert.rejects(r.recvBytes(3), isError(OSError, 'bad message length'));
      assert.equal(r.closed, true, 'a read-only end is closed');
      closeAll(r, w);
    });

    it('undecodable bytes: UnpicklingError, and the next message still arrives', { timeout: 10_000 }, async () => {
      const [a, b] = makePipe();
      try {
        a.sendBytes(Buffer.from([0, 0xff, 0xfe, 0x01, 0x02]));
        a.sendBytes(new Uint8Array(0));
        a.send({ ok: true });
        await assert.rejects(b.recv(), UnpicklingError);
        await assert.rejects(b.recv(), UnpicklingError);
        assert.deepEqual(await b.recv(), { ok: true });
      } finally {
        closeAll(a, b);
      }
    });

    it('close: idempotent, handle is closed, pending receivers fail, Symbol.dispose (test_context)', { timeout: 10_000 }, async () => {
      const [a, b] = makePipe();
      const pending = b.recv();
      b.close();
      b.close();
      assert.equal(b.closed, true);
      await assert.rejects(pending, isError(OSError, 'handle is closed'));
      await assert.rejects(b.recv(), isError(OSError, 'handle is closed'));
      await assert.rejects(b.poll(), isError(OSError, 'handle is closed'));
      assert.throws(() => b.send(1), isError(OSError, 'handle is closed'));
      await assert.rejects(a.recv(), EOFError);
      a.close();
      let c: Connection;
      {
        const [x, y] = makePipe();
        using _x = x;
        using _y = y;
        c = x;
        x.send('in scope');
        assert.equal(await y.recv(), 'in scope');
      }
      assert.equal(c.closed, true);
    });

    it('functions inside data raise PicklingError and nothing is sent', { timeout: 10_000 }, async () => {
      const [a, b] = makePipe();
      try {
        assert.throws(() => a.send({ ok: 1, cb: () => 1 }), PicklingError);
        a.send('after');
        assert.equal(await b.recv(), 'after');
      } finally {
        closeAll(a, b);
      }
    });

    // Speed is measured in bench/connections.mjs, never asserted here: this checks that many
    // back-to-back round trips of small and large messages all arrive whole and in order.
    it('64 B and 1 MiB round trips back to back arrive whole and in order', { timeout: 60_000 }, async () => {
      const [a, b] = makePipe();
      try {
        for (const [size, n] of [[64, 2000], [1024 * 1024, 50]] as const) {
          for (let i = 0; i < n; i++) {
            const sent = Buffer.alloc(size, i % 251);
            a.sendBytes(sent);
            b.sendBytes(await b.recvBytes());
            assert.ok(sent.equals(await a.recvBytes()), `round trip ${i} of ${size} B`);
          }
        }
      } finally {
        closeAll(a, b);
      }
    });
  });
}

describe('Pipe()', () => {
  it('picks process pipes by default and is synchronous', () => {
    const [a, b] = Pipe();
    try {
      assert.equal(typeof a.fileno(), 'number');
      assert.equal(typeof b.fileno(), 'number');
    } finally {
      closeAll(a, b);
    }
  });

  it('the pure-Node pair delivers what was sent before its accepted end was connected and closed', { timeout: 10_000 }, async () => {
    const [a, b] = fallbackPipe();
    a.send('sent then closed');
    a.close();
    assert.equal(await b.recv(), 'sent then closed');
    await assert.rejects(b.recv(), EOFError);
    b.close();
  });

  it('a Connection over a MessagePort has no fileno; a Pipe end has one on every start method', async () => {
    const { getContext } = await import('../src/index.ts');
    const [a, b] = portPipe();
    assert.throws(() => a.fileno(), OSError);
    closeAll(a, b);
    for (const method of ['spawn', 'forkserver', 'thread'] as const) {
      const [c, d] = getContext(method).Pipe();
      assert.equal(typeof c.fileno(), 'number', method);
      closeAll(c, d);
    }
  });

  it('recv() takes messages the kernel already holds without a turn of the event loop, in order', { timeout: 10_000 }, async () => {
    const [a, b] = Pipe();
    try {
      // Written by the addon before sendBytes returns: the bytes are in b's socket now.
      for (const n of [1, 2, 3]) a.sendBytes(Buffer.from([n]));
      a.send('four');
      for (const expected of [[1], [2], [3]]) {
        const received = b.recvBytes();
        let settled = false;
        void received.then(() => (settled = true));
        // Microtasks only: a read that waited for the event loop's I/O phase could not settle here.
        for (let i = 0; i < 20 && !settled; i++) await null;
        assert.equal(settled, true, 'recvBytes() waited for a turn of the event loop');
        assert.deepEqual([...(await received)], expected);
      }
      assert.equal(await b.recv(), 'four');
      a.close();
      await assert.rejects(b.recv(), EOFError);
    } finally {
      closeAll(a, b);
    }
  });

  it('Connection(-1) and both directions off are ValueErrors (test_invalid_handles)', () => {
    assert.throws(() => new Connection(-1), isError(ValueError, 'invalid handle'));
    const [a, b] = portPipe();
    assert.throws(() => new Connection(new net.Socket(), { readable: false, writable: false }), ValueError);
    closeAll(a, b);
  });
});

describe('framing (CPython byte layout)', () => {
  it('header + payload in one write up to 16384 bytes, separately above, -1 + u64 above 2^31-1', () => {
    assert.deepEqual(frame(Buffer.from('abc')).map((c) => Buffer.from(c).toString('hex')), ['00000003616263']);
    assert.deepEqual(frame(new Uint8Array(0)).map((c) => Buffer.from(c).toString('hex')), ['00000000']);
    const one = frame(Buffer.alloc(16384));
    assert.equal(one.length, 1);
    assert.equal(one[0]!.byteLength, 16388);
    const two = frame(Buffer.alloc(16385));
    assert.equal(two.length, 2);
    assert.equal(Buffer.from(two[0]!).toString('hex'), '00004001');
  });

  it('a payload serialised behind FRAME_HEADROOM bytes is framed in place: the same bytes as frame(), in one chunk, at any size', () => {
    for (const n of [0, 3, 16384, 16385, 100_000]) {
      const payload = Buffer.alloc(n, 7);
      const buf = Buffer.alloc(FRAME_HEADROOM + n, 7);
      const chunks = frameInPlace(buf);
      assert.equal(chunks.length, 1);
      assert.equal(chunks[0], buf, 'no copy');
      assert.ok(Buffer.concat(chunks).equals(Buffer.concat(frame(payload))), `${n} bytes`);
    }
  });

  it('the decoder: split headers, the large form, limits before allocation, negative lengths', () => {
    const got: string[] = [];
    const d = new FrameDecoder(1000);
    const wire = Buffer.concat([
      Buffer.from('00000002', 'hex'), Buffer.from('hi'),
      Buffer.from('ffffffff0000000000000003', 'hex'), Buffer.from('abc'),
      Buffer.from('00000000', 'hex'),
    ]);
    for (const byte of wire) d.push(Buffer.from([byte]), (m) => got.push(m.toString()));
    d.push(wire, (m) => got.push(m.toString()));
    assert.deepEqual(got, ['hi', 'abc', '', 'hi', 'abc', '']);
    assert.equal(d.midMessage, false);
    assert.throws(() => new FrameDecoder(1000).push(Buffer.from('000003e9', 'hex'), () => {}), isError(OSError, 'bad message length'));
    assert.throws(() => new FrameDecoder(1000).push(Buffer.from('ffffffff0000000100000000', 'hex'), () => {}), isError(OSError, 'bad message length'));
    assert.throws(() => new FrameDecoder(1000).push(Buffer.from('fffffffe', 'hex'), () => {}), isError(OSError, 'bad message length'));
  });

  it('what goes on the wire from a Connection is CPython framing', { timeout: 10_000 }, async () => {
    using listener = new Listener(['127.0.0.1', 0]);
    const raw = net.connect({ host: '127.0.0.1', port: (listener.address as [string, number])[1] });
    const chunks: Buffer[] = [];
    raw.on('data', (c: Buffer) => chunks.push(c));
    const conn = await listener.accept();
    try {
      conn.sendBytes(Buffer.from('abc'));
      conn.sendBytes(new Uint8Array(0));
      conn.sendBytes(Buffer.alloc(20000, 7));
      const want = 7 + 4 + 4 + 20000;
      while (Buffer.concat(chunks).length < want) await new Promise((r) => setTimeout(r, 5));
      const all = Buffer.concat(chunks);
      assert.equal(all.subarray(0, 11).toString('hex'), '0000000361626300000000');
      assert.equal(all.subarray(11, 15).toString('hex'), '00004e20');
      // and the other way: python-style frames from a raw socket
      raw.write(Buffer.from('0000000568656c6c6f00000000', 'hex'));
      assert.equal((await conn.recvBytes()).toString(), 'hello');
      assert.equal((await conn.recvBytes()).length, 0);
    } finally {
      raw.destroy();
      conn.close();
    }
  });

  it('maxMessageSize refuses a bigger frame with OSError', { timeout: 10_000 }, async () => {
    using listener = new Listener(['127.0.0.1', 0], { maxMessageSize: 1024 });
    const client = await Client(listener.address);
    const conn = await listener.accept();
    try {
      assert.equal(conn.maxMessageSize, 1024);
      client.sendBytes(Buffer.alloc(1024));
      assert.equal((await conn.recvBytes()).length, 1024);
      client.sendBytes(Buffer.alloc(1025));
      await assert.rejects(conn.recvBytes(), isError(OSError, 'bad message length'));
    } finally {
      closeAll(client, conn);
    }
  });
});

describe('challenge/response (ChallengeResponseTest)', () => {
  const key = Buffer.from('supersecret');
  it('legacy 20-byte, {md5} and {sha256} challenges round-trip; the response carries the prefix', () => {
    for (const message of [
      Buffer.alloc(20, 3),
      Buffer.concat([Buffer.from('{md5}'), Buffer.alloc(40, 1)]),
      Buffer.concat([Buffer.from('{sha256}'), Buffer.alloc(40, 2)]),
    ]) {
      const response = createResponse(key, message);
      verifyChallenge(key, message, response);
      const [digest] = digestNameAndPayload(message);
      if (digest) assert.ok(response.subarray(0, digest.length + 2).equals(Buffer.from(`{${digest}}`)));
      else assert.equal(response.length, 16);
      assert.throws(() => verifyChallenge(Buffer.from('other'), message, response), isError(AuthenticationError, 'digest received was wrong'));
    }
    assert.throws(() => verifyChallenge(key, Buffer.alloc(20), Buffer.from('{sha999}xxxxxxxxxxxxxxxxxxxxxxxxx')), AuthenticationError);
    assert.throws(() => verifyChallenge(key, Buffer.alloc(20), Buffer.concat([Buffer.from('{sha256}'), Buffer.alloc(10)])),
      isError(AuthenticationError, "expected 'sha256' of length 32 got 10"));
  });

  it('deliver/answer over a Pipe; a bogus response and a rejected digest raise AuthenticationError', { timeout: 10_000 }, async () => {
    const [a, b] = pipeForProcesses();
    try {
      await Promise.all([deliverChallenge(a, key), answerChallenge(b, key)]);
      await Promise.all([deliverChallenge(a, key, 'sha3_384'), answerChallenge(b, key)]);
      const server = deliverChallenge(a, key);
      const challenge = await b.recvBytes();
      assert.equal(challenge.length, 59);
      assert.equal(challenge.subarray(0, 19).toString(), '#CHALLENGE#{sha256}');
      b.sendBytes(Buffer.from('{sha256}' + 'x'.repeat(32)));
      await assert.rejects(server, isError(AuthenticationError, 'digest received was wrong'));
      assert.equal((await b.recvBytes()).toString(), '#FAILURE#');
      const client = answerChallenge(b, key);
      a.sendBytes(Buffer.concat([Buffer.from('#CHALLENGE#'), Buffer.alloc(20)]));
      assert.equal((await a.recvBytes()).length, 16, 'legacy reply: raw HMAC-MD5');
      a.sendBytes(Buffer.from('#FAILURE#'));
      await assert.rejects(client, isError(AuthenticationError, 'digest sent was rejected'));
      const short = answerChallenge(b, key);
      a.sendBytes(Buffer.from('#CHALLENGE#short'));
      await assert.rejects(short, isError(AuthenticationError, 'challenge too short: 5 bytes'));
      const wrong = answerChallenge(b, key);
      a.sendBytes(Buffer.from('hello'));
      await assert.rejects(wrong, isError(AuthenticationError, /^Protocol error, expected challenge/));
    } finally {
      closeAll(a, b);
    }
  });

  it('standalone deliver/answer: 256-byte frames at most, refused at the header; a timeout option', { timeout: 10_000 }, async () => {
    const [a, b] = pipeForProcesses();
    try {
      const server = deliverChallenge(a, key);
      await b.recvBytes();
      b.sendBytes(Buffer.alloc(300));
      await assert.rejects(server, isError(OSError, 'bad message length'));
    } finally {
      closeAll(a, b);
    }
    const [c, d] = pipeForProcesses();
    try {
      const t = performance.now();
      await assert.rejects(answerChallenge(d, key, { timeout: 0.1 }), TimeoutError);
      assert.ok(performance.now() - t < 2000);
      // after a handshake the connection's own limit applies again
      await Promise.all([deliverChallenge(c, key), answerChallenge(d, key)]);
      c.sendBytes(Buffer.alloc(100_000));
      assert.equal((await d.recvBytes()).length, 100_000);
    } finally {
      closeAll(c, d);
    }
  });
});

async function rawPeer(address: Address, script: (s: net.Socket) => void): Promise<net.Socket> {
  const socket = typeof address === 'string' ? net.connect(address) : net.connect({ host: address[0], port: address[1] });
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  script(socket);
  return socket;
}

describe('Listener and Client', () => {
  it('AF_INET and AF_UNIX with an authkey; lastAcceptedAddress; default address (test_listener_client)', { timeout: 10_000 }, async () => {
    for (const address of [['127.0.0.1', 0] as const, undefined]) {
      using listener = new Listener(address, { authkey: 'key' });
      if (address) {
        assert.equal(listener.family, 'AF_INET');
        assert.ok((listener.address as [string, number])[1] > 0);
      } else {
        assert.equal(listener.family, 'AF_UNIX');
        assert.match(listener.address as string, /pymp-.*listener-/);
      }
      const [client, server] = await Promise.all([Client(listener.address, { authkey: Buffer.from('key') }), listener.accept()]);
      server.send('hello');
      assert.equal(await client.recv(), 'hello');
      if (address) assert.equal((listener.lastAcceptedAddress as [string, number])[0], '127.0.0.1');
      else assert.equal(listener.lastAcceptedAddress, '');
      // test_issue16955: poll(1) on the client sees data from the accepted side
      setTimeout(() => server.sendBytes(Buffer.from('x')), 20);
      assert.equal(await client.poll(1), true);
      closeAll(client, server);
    }
  });

  it('empty authkey still runs the handshake; the client may send before accept (test_empty_authkey, test_issue14725)', { timeout: 10_000 }, async () => {
    using listener = new Listener(['127.0.0.1', 0], { authkey: Buffer.alloc(0) });
    const clientP = Client(listener.address, { authkey: '' });
    await new Promise((r) => setTimeout(r, 50));
    const [client, server] = await Promise.all([clientP, listener.accept()]);
    client.send('early');
    assert.equal(await server.recv(), 'early');
    closeAll(client, server);
    using plain = new Listener(['127.0.0.1', 0]);
    const c2 = await Client(plain.address);
    c2.send('before accept');
    await new Promise((r) => setTimeout(r, 50));
    const s2 = await plain.accept();
    assert.equal(await s2.recv(), 'before accept');
    closeAll(c2, s2);
  });

  it('binding an address twice raises OSError; bad families are ValueErrors (test_multiple_bind, test_invalid_family)', () => {
    using l1 = new Listener(['127.0.0.1', 0]);
    assert.throws(() => new Listener(l1.address), OSError);
    using l2 = new Listener();
    assert.throws(() => new Listener(l2.address), OSError);
    assert.throws(() => new Listener('\\\\.\\test'), ValueError);
    assert.throws(() => new Listener(undefined, { family: 'AF_PIPE' as 'AF_UNIX' }), isError(ValueError, 'Family AF_PIPE is not recognized.'));
    assert.throws(() => new Listener(undefined, { authkey: 42 as unknown as string }), isError(TypeError, 'authkey should be a byte string'));
  });

  it('close: accept rejects with listener is closed, pending accepts too, the socket file is removed', { timeout: 10_000 }, async () => {
    const listener = new Listener();
    const pending = listener.accept();
    listener.close();
    listener.close();
    await assert.rejects(pending, isError(OSError, 'listener is closed'));
    await assert.rejects(listener.accept(), isError(OSError, 'listener is closed'));
    await assert.rejects(Client(listener.address), OSError);
  });

  it('accept({ signal }) rejects with the reason and the next accept still works', { timeout: 10_000 }, async () => {
    using listener = new Listener(['127.0.0.1', 0]);
    await assert.rejects(listener.accept({ signal: AbortSignal.timeout(30) }), { name: 'TimeoutError' });
    const [c, s] = await Promise.all([Client(listener.address), listener.accept()]);
    closeAll(c, s);
  });

  it('Client: refused, timeout against a silent server, abort', { timeout: 10_000 }, async () => {
    const free = new Listener(['127.0.0.1', 0]);
    const address = free.address;
    free.close();
    await assert.rejects(Client(address), (e: unknown) => e instanceof OSError && e.code === 'ECONNREFUSED');
    // a server that accepts but never speaks: the client's handshake times out
    const held: net.Socket[] = [];
    const silent = net.createServer((s) => {
      s.on('error', () => {});
      held.push(s);
    }).listen(0, '127.0.0.1');
    await new Promise((r) => silent.once('listening', r));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      let t = performance.now();
      await assert.rejects(Client(['127.0.0.1', port], { authkey: 'k', timeout: 0.2 }), TimeoutError);
      assert.ok(performance.now() - t < 2000);
      t = performance.now();
      await assert.rejects(Client(['127.0.0.1', port], { authkey: 'k', handshakeTimeout: 0.2 }), TimeoutError);
      await assert.rejects(Client(['127.0.0.1', port], { authkey: 'k', signal: AbortSignal.timeout(50) }), { name: 'TimeoutError' });
      assert.ok(performance.now() - t < 3000);
    } finally {
      for (const s of held) s.destroy();
      silent.close();
    }
  });

  describe('hostile peers of a Listener with an authkey: clear errors, and the listener survives', () => {
    const cases: [string, (s: net.Socket) => void, (e: unknown) => boolean][] = [
      ['garbage bytes (a 4-byte length of 0x41414141)', (s) => s.write('AAAAAAAAAAAAAAAA'), isError(OSError, 'bad message length')],
      ['a 4 GiB length in the large form', (s) => s.write(Buffer.from('ffffffff0000000100000000', 'hex')), isError(OSError, 'bad message length')],
      ['a 300-byte response (handshake limit is 256)', (s) => s.write(Buffer.concat([Buffer.from('0000012c', 'hex'), Buffer.alloc(300)])), isError(OSError, 'bad message length')],
      ['a truncated frame, then hang up', (s) => s.end(Buffer.from('0000001000', 'hex')), isError(OSError, 'got end of file during message')],
      ['an immediate hang-up', (s) => s.end(), isError(EOFError)],
      ['a well-framed wrong answer', (s) => s.write(Buffer.concat([Buffer.from('00000010', 'hex'), Buffer.alloc(16)])), isError(AuthenticationError, 'digest received was wrong')],
      ['silence', () => {}, isError(TimeoutError)],
    ];
    for (const [label, script, check] of cases) {
      it(label, { timeout: 10_000 }, async () => {
        using listener = new Listener(['127.0.0.1', 0], { authkey: 'k', handshakeTimeout: 0.3 });
        const raw = await rawPeer(listener.address, script);
        try {
          const t = performance.now();
          await assert.rejects(listener.accept(), check);
          assert.ok(performance.now() - t < 3000);
        } finally {
          raw.destroy();
        }
        const [c, s] = await Promise.all([Client(listener.address, { authkey: 'k' }), listener.accept()]);
        c.send('next one fine');
        assert.equal(await s.recv(), 'next one fine');
        closeAll(c, s);
      });
    }
  });

  describe('hostile servers for a Client with an authkey', () => {
    const cases: [string, (s: net.Socket) => void, (e: unknown) => boolean][] = [
      ['a 4 GiB length', (s) => s.write(Buffer.from('7fffffff', 'hex')), isError(OSError, 'bad message length')],
      ['not a challenge', (s) => s.write(Buffer.from('0000000568656c6c6f', 'hex')), isError(AuthenticationError, /^Protocol error/)],
      ['a truncated frame', (s) => s.end(Buffer.from('00000030ab', 'hex')), isError(OSError, 'got end of file during message')],
      ['a hang-up', (s) => s.end(), isError(EOFError)],
      ['silence', () => {}, isError(TimeoutError)],
    ];
    for (const [label, script, check] of cases) {
      it(label, { timeout: 10_000 }, async () => {
        const sockets: net.Socket[] = [];
        const server = net.createServer((s) => {
          s.on('error', () => {});
          sockets.push(s);
          script(s);
        });
        server.listen(0, '127.0.0.1');
        await new Promise((r) => server.once('listening', r));
        try {
          await assert.rejects(Client(['127.0.0.1', (server.address() as net.AddressInfo).port], { authkey: 'k', handshakeTimeout: 0.3 }), check);
        } finally {
          for (const s of sockets) s.destroy();
          server.close();
        }
      });
    }
  });
});

describe('wait()', () => {
  it('returns the ready subset; [] after the timeout; negative timeout polls (test_wait_timeout, test_neg_timeout)', { timeout: 10_000 }, async () => {
    const [a, b] = pipeForProcesses();
    const [c, d] = portPipe();
    try {
      let t = performance.now();
      assert.deepEqual(await wait([b, d], 0.2), []);
      const waited = performance.now() - t;
      assert.ok(waited >= 180 && waited < 1500, `waited ${waited}`);
      t = performance.now();
      assert.deepEqual(await wait([b, d], -1), []);
      assert.deepEqual(await wait([b, d], 0), []);
      assert.ok(performance.now() - t < 500);
      a.send(1);
      assert.deepEqual(await wait([b, d], 0), [b]);
      c.send(2);
      assert.deepEqual(await wait([b, d]), [b, d]);
      await b.recv();
      assert.deepEqual(await wait([b, d], 1), [d]);
      await d.recv();
      setTimeout(() => c.close(), 30);
      assert.deepEqual(await wait([b, d], 5), [d], 'EOF is ready');
      await assert.rejects(wait([b], null, { signal: AbortSignal.timeout(30) }), { name: 'TimeoutError' });
    } finally {
      closeAll(a, b, c, d);
    }
  });

  it('sentinels become ready at exit and ready sets combine (test_wait_integer)', { timeout: 10_000 }, async () => {
    let exit!: () => void;
    const sentinel = registerSentinel(new Promise<void>((r) => (exit = r)));
    const [a, b] = pipeForProcesses();
    try {
      assert.deepEqual(await wait([sentinel, b], 0.05), []);
      setTimeout(exit, 30);
      assert.deepEqual(await wait([sentinel, b], 5), [sentinel]);
      a.send('x');
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(await wait([b, sentinel]), [b, sentinel]);
      await assert.rejects(wait([123456 as number]), ValueError);
    } finally {
      closeAll(a, b);
    }
  });

  it('drains four writers of ten messages each until EOF (test_wait)', { timeout: 20_000 }, async () => {
    const pipes = Array.from({ length: 4 }, (_, i) => (i % 2 ? portPipe(false) : pipeForProcesses(false)));
    const readers = new Set(pipes.map(([r]) => r));
    pipes.forEach(([, w], i) => {
      let n = 0;
      const timer = setInterval(() => {
        if (n < 10) w.send([i, n++]);
        else {
          clearInterval(timer);
          w.close();
        }
      }, 1 + i);
    });
    const got: number[][] = [[], [], [], []];
    while (readers.size > 0) {
      for (const r of await wait([...readers])) {
        try {
          const [i, n] = (await r.recv()) as [number, number];
          got[i]!.push(n);
        } catch (error) {
          assert.ok(error instanceof EOFError);
          readers.delete(r);
          r.close();
        }
      }
    }
    for (const list of got) assert.deepEqual(list, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});


describe('reduce / rebuild', () => {
  it('a socket Connection reaches a spawned child through its stdio and works both ways; the parent closing its copy does not cut the child (test_spawn_close)', { timeout: 20_000 }, async () => {
    for (const makePipe of [pipeForProcesses, fallbackPipe]) {
      const [parent, childEnd] = makePipe();
      const ctx = newReduceContext('process', []);
      const bytes = dumps({ conn: childEnd }, ctx);
      assert.equal(ctx.handles!.length, 1);
      const child = spawn(process.execPath, [...process.execArgv, CHILD, bytes.toString('base64')], {
        stdio: ['ignore', 'inherit', 'inherit', ctx.handles![0]!],
      });
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      childEnd.close();
      try {
        parent.send({ hello: 'child' });
        const reply = (await parent.recv()) as { echo: unknown; pid: number };
        assert.deepEqual(reply.echo, { hello: 'child' });
        assert.equal(reply.pid, child.pid);
        parent.sendBytes(Buffer.alloc(0));
        assert.deepEqual(await parent.recv(), { error: 'UnpicklingError' });
        const big = new Float64Array(1 << 20).fill(1.5);
        parent.send(big);
        assert.deepEqual(((await parent.recv()) as { echo: Float64Array }).echo, big);
        parent.close();
        assert.equal(await exited, 0);
      } finally {
        child.kill('SIGKILL');
      }
    }
  });

  it('a port Connection reaches a worker thread through the transfer list (it moves)', { timeout: 20_000 }, async () => {
    const [parent, childEnd] = portPipe();
    const ctx = newReduceContext('thread');
    const { graph } = reduce({ conn: childEnd }, ctx);
    assert.equal(ctx.transfer.length, 1);
    assert.equal(childEnd.closed, true, 'the local end moved away');
    const tsxApi = import.meta.resolve('tsx/esm/api');
    const worker = new Worker(
      `const { workerData } = require('node:worker_threads');
       (async () => { (await import(workerData.tsxApi)).register(); await import(workerData.child); })()
         .catch((e) => { console.error(e); process.exit(1); });`,
      { eval: true, workerData: { tsxApi, child: new URL('./fixtures/connection-child.ts', import.meta.url).href, graph }, transferList: ctx.transfer },
    );
    try {
      parent.send({ to: 'thread', shared: new SharedArrayBuffer(8) });
      const reply = (await parent.recv()) as { echo: { to: string; shared: SharedArrayBuffer }; main: boolean };
      assert.equal(reply.main, false);
      assert.equal(reply.echo.to, 'thread');
      assert.ok(reply.echo.shared instanceof SharedArrayBuffer);
      parent.close();
      assert.equal(await new Promise((r) => worker.once('exit', r)), 0);
    } finally {
      await worker.terminate();
    }
  });

  for (const method of ['spawn', 'forkserver', 'thread'] as const) {
    it(`a Pipe end as a Process argument (${method}): works both ways, EOF after the child exits (test_access)`, {
      timeout: 30_000,
    }, async () => {
      const mp = await import('../src/index.ts');
      const { echoTwice } = await import('./fixtures/connection-tasks.ts');
      const ctx = mp.getContext(method);
      const [parent, child] = ctx.Pipe();
      const p = new ctx.Process({ target: echoTwice, args: [child] });
      p.start();
      try {
        child.close();
        parent.send('one');
        assert.equal(((await parent.recv()) as { echo: unknown }).echo, 'one');
        parent.send({ two: 2 });
        assert.deepEqual(((await parent.recv()) as { echo: unknown }).echo, { two: 2 });
        await p.join(20);
        assert.equal(p.exitcode, 0);
        await assert.rejects(parent.recv(), EOFError);
      } finally {
        if (p.exitcode === null) p.kill();
        parent.close();
      }
    });
  }

  it('a port connection can travel over another port connection', { timeout: 10_000 }, async () => {
    const [a, b] = portPipe();
    const [x, y] = portPipe();
    try {
      a.send({ conn: y });
      const { conn } = (await b.recv()) as { conn: Connection };
      x.send('through the moved end');
      assert.equal(await conn.recv(), 'through the moved end');
      conn.close();
    } finally {
      closeAll(a, b, x);
    }
  });

  it('mixing transports and targets raises ValueError; a socket Connection rebuilds from a process start\'s handles', () => {
    const [a, b] = pipeForProcesses();
    const [c, d] = portPipe();
    try {
      assert.throws(() => c[reduceSymbol](newReduceContext('process')), ValueError);
      assert.throws(() => a.send({ conn: c }), ValueError);
      // in-process rebuild of a reduced socket Connection
      const ctx = newReduceContext('process', []);
      const { graph } = reduce({ conn: b }, ctx);
      assert.equal(ctx.handles!.length, 1);
      const rebuilt = (rebuildSync(graph, { target: 'process', handles: ctx.handles! }) as { conn: Connection }).conn;
      assert.ok(rebuilt instanceof Connection);
      assert.equal(rebuilt.readable, true);
    } finally {
      closeAll(a, b, c, d);
    }
  });
});

describe('a Pipe end shared by thread children (as a process end is: not moved)', () => {
  /** Starts one thread child per argument list; `body` runs; every child must then exit 0. */
  async function withThreads(
    target: (...args: never[]) => unknown,
    argLists: unknown[][],
    body: () => Promise<void>,
    cleanup: () => void,
  ): Promise<void> {
    const mp = await import('../src/index.ts');
    const ctx = mp.getContext('thread');
    const procs = argLists.map((args) => new ctx.Process({ target: target as (...a: unknown[]) => unknown, args }));
    try {
      for (const p of procs) p.start();
      await body();
      for (const p of procs) {
        await p.join(30);
        assert.equal(p.exitcode, 0);
      }
    } finally {
      for (const p of procs) if (p.exitcode === null) p.kill();
      cleanup();
    }
  }
  const bounded = (): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(30_000) });

  it('stays usable here and in a second child; closing one thread\'s copy closes only that copy; EOF once every copy is closed', { timeout: 60_000 }, async () => {
    const { closeCopy, echoTwice } = await import('./fixtures/connection-tasks.ts');
    const [parent, child] = Pipe();
    await withThreads(closeCopy, [[child]], async () => {}, () => {});
    assert.equal(child.closed, false, 'the copy here is still open');
    await withThreads(echoTwice, [[child]], async () => {
      parent.send('one');
      assert.equal(((await parent.recv(bounded())) as { echo: unknown }).echo, 'one');
      parent.send('two');
      assert.equal(((await parent.recv(bounded())) as { echo: unknown }).echo, 'two');
    }, () => {});
    child.send('from the copy here');
    assert.equal(await parent.recv(bounded()), 'from the copy here');
    parent.send('back');
    assert.equal(await child.recv(bounded()), 'back');
    child.close();
    await assert.rejects(parent.recv(bounded()), EOFError);
    parent.close();
  });

  it('threads receiving on one end take one whole message each (recv, recvSync, recvBytes, recvBytesInto, wait)', { timeout: 90_000 }, async () => {
    const { patterned, receiveShared } = await import('./fixtures/connection-tasks.ts');
    const [r, w] = Pipe(false);
    const [results, out] = Pipe(false);
    const hows = ['recv', 'recvSync', 'recvBytes', 'recvBytesInto', 'wait'];
    const N = 120;
    await withThreads(receiveShared, hows.map((how) => [r, out, how]), async () => {
      // Large messages (longer than the socket's buffer) are read in many calls, across loop turns.
      for (let i = 0; i < N; i++) w.send(new Uint8Array(patterned(i, i, i % 3 === 0 ? 300_000 : 100 + i)));
      for (const _ of hows) w.send(new Uint8Array(0));
      const seqs: number[] = [];
      for (const _ of hows) seqs.push(...((await results.recv(bounded())) as number[]));
      assert.deepEqual(seqs.sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i), 'each message once');
    }, () => closeAll(r, w, results, out));
  });

  it('threads sending on one end with no lock of their own never cut each other\'s messages; EOF after the last exits', { timeout: 90_000 }, async () => {
    const { checkPatterned, sendShared } = await import('./fixtures/connection-tasks.ts');
    const [r, w] = Pipe(false);
    const senders = [1, 2, 3];
    const count = 20;
    await withThreads(sendShared, senders.map((id) => [w, id, count, 300_000]), async () => {
      w.close();
      const next = new Map(senders.map((id) => [id, 0]));
      for (let i = 0; i < senders.length * count; i++) {
        const [seq, id] = checkPatterned(await r.recvBytes(null, bounded()));
        assert.equal(seq, next.get(id), `sender ${id}'s messages in order`);
        next.set(id, seq + 1);
      }
      await assert.rejects(r.recv(bounded()), EOFError);
    }, () => closeAll(r, w));
  });

  it('an end two threads receive on with recvSync, then passed to a spawn process: each message once, each receiver in order, every size of frame; then EOF for recvSync, recv and wait', { timeout: 90_000 }, async () => {
    const mp = await import('../src/index.ts');
    const { patterned, receiveShared } = await import('./fixtures/connection-tasks.ts');
    const [r, w] = Pipe(false);
    const [results, out] = Pipe(false);
    // Around the 16 KiB limit of a one-write frame (send adds a byte of tag), and payloads larger
    // than the socket's buffer, whose rest a receiver reads in later calls.
    const sizes = [8, 16_382, 16_383, 16_384, 16_385, 70_000, 300_000];
    const send = (from: number, n: number): void => {
      for (let i = from; i < from + n; i++) w.send(new Uint8Array(patterned(i, i, sizes[i % sizes.length]!)));
    };
    const inOrder = (seqs: number[], who: string): void => {
      for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i - 1]! < seqs[i]!, `${who} got ${seqs[i - 1]} before ${seqs[i]}`);
    };
    const N = 140;
    await withThreads(receiveShared, [[r, out, 'recvSync'], [r, out, 'recvSync']], async () => {
      send(0, N);
      for (let t = 0; t < 2; t++) w.send(new Uint8Array(0));
      const seqs: number[] = [];
      for (let t = 0; t < 2; t++) {
        const got = (await results.recv(bounded())) as number[];
        inOrder(got, `thread ${t}`);
        seqs.push(...got);
      }
      assert.deepEqual(seqs.sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i), 'each message once');
    }, () => {});
    // The same end, after the threads, to a process: it reads the rest one message at a time too.
    const child = new (mp.getContext('spawn').Process)({ target: receiveShared, args: [r, out, 'recvSync'] });
    try {
      child.start();
      send(N, 30);
      w.send(new Uint8Array(0));
      assert.deepEqual(await results.recv(bounded()), Array.from({ length: 30 }, (_, i) => N + i), 'the process gets the rest, in order');
      await child.join(30);
      assert.equal(child.exitcode, 0);
      // Every writer's copy closed: EOF at once for every kind of receive.
      w.close();
      assert.deepEqual(await wait([r], 10), [r]);
      assert.throws(() => r.recvSync(), EOFError);
      await assert.rejects(r.recv(bounded()), EOFError);
    } finally {
      if (child.exitcode === null) child.kill();
      closeAll(r, w, results, out);
    }
  });

  it('terminate() ends a thread blocked in recvSync, and closes its copy of the end (EOF here)', { timeout: 60_000 }, async () => {
    const mp = await import('../src/index.ts');
    const { blockInRecvSync } = await import('./fixtures/connection-tasks.ts');
    const [parent, child] = Pipe();
    const p = new (mp.getContext('thread').Process)({ target: blockInRecvSync, args: [child] });
    try {
      p.start();
      child.close();
      const { tid } = (await parent.recv(bounded())) as { tid: number };
      // terminate() stops JavaScript at once; what it must reach is a thread inside the system call.
      await waitForThreadInPoll(tid, 20_000);
      p.terminate();
      await p.join(20);
      assert.equal(p.exitcode, -15);
      await assert.rejects(parent.recv(bounded()), EOFError);
    } finally {
      if (p.exitcode === null) p.kill();
      parent.close();
    }
  });
});

describe('a Pipe end shared by process children', () => {
  interface Child { start(): void; join(timeout?: number): Promise<unknown>; kill(): void; readonly exitcode: number | null }

  /**
   * Starts `children` (each sends one patterned message on `w`: sender 1 a big one, then sender 2),
   * waits until `secondStarting()` says the second is sending, and checks that `r` gives sender
   * 1's message whole, then sender 2's, and that every child exits 0. Whatever still runs at the
   * end is killed and joined; both ends are closed.
   */
  async function expectSendsInOrder(children: Child[], secondStarting: () => Promise<boolean>, r: Connection, w: Connection, who: [string, string]): Promise<void> {
    const { checkPatterned } = await import('./fixtures/connection-tasks.ts');
    try {
      for (const child of children) child.start();
      assert.equal(await secondStarting(), true);
      const bounded = { signal: AbortSignal.timeout(30_000) };
      assert.deepEqual(checkPatterned(await r.recvBytes(null, bounded)), [0, 1], `the ${who[0]}'s message, whole`);
      assert.deepEqual(checkPatterned(await r.recvBytes(null, bounded)), [0, 2], `then the ${who[1]}'s`);
      for (const child of children) {
        await child.join(30);
        assert.equal(child.exitcode, 0);
      }
    } finally {
      for (const child of children) {
        if (child.exitcode === null) child.kill();
        await child.join(30);
      }
      closeAll(r, w);
    }
  }

  it('a send waits until another process\'s accepted send is written: sends ordered by the senders arrive in that order (test_thousand)', { timeout: 60_000 }, async () => {
    const mp = await import('../src/index.ts');
    const { sendInTurn } = await import('./fixtures/connection-tasks.ts');
    const ctx = mp.getContext('spawn');
    const [r, w] = Pipe(false);
    const firstSent = ctx.Event();
    const secondStarting = ctx.Event();
    // The first message is far bigger than the socket's buffer: its send returns with most of it
    // still to write, and the second process sends while it is.
    const children = [
      new ctx.Process({ target: sendInTurn, args: [w, null, null, firstSent, 1, 4 << 20] }),
      new ctx.Process({ target: sendInTurn, args: [w, firstSent, secondStarting, null, 2, 100] }),
    ];
    await expectSendsInOrder(children, () => secondStarting.wait(30), r, w, ['first process', 'second']);
  });

  it('a process killed in the middle of its sends does not stop the others: its send lock is taken over, before it is reaped too', { timeout: 60_000 }, async () => {
    const mp = await import('../src/index.ts');
    const { sendInTurn } = await import('./fixtures/connection-tasks.ts');
    const ctx = mp.getContext('spawn');
    const [r, w] = Pipe(false);
    const firstSent = ctx.Event();
    // Nobody reads: the child holds the lock with most of its message unwritten until killed.
    const first = new ctx.Process({ target: sendInTurn, args: [w, null, null, firstSent, 1, 4 << 20] });
    try {
      first.start();
      assert.equal(await firstSent.wait(30), true);
      first.kill();
      // This thread blocks in the send until it has the lock, so the killed child stays a zombie
      // (nothing reaps it meanwhile): the waiter must see a zombie as gone.
      w.sendBytes(Buffer.alloc(10));
    } finally {
      if (first.exitcode === null) first.kill();
      await first.join(30);
      closeAll(r, w);
    }
  });

  it('an end passed to a thread and then to a process: the thread takes the turns between processes too', { timeout: 60_000 }, async () => {
    const mp = await import('../src/index.ts');
    const { sendInTurn } = await import('./fixtures/connection-tasks.ts');
    const threads = mp.getContext('thread');
    const ctx = mp.getContext('spawn');
    const [r, w] = Pipe(false);
    const threadSent = threads.Event();
    const go = ctx.Event();
    const processStarting = ctx.Event();
    const thread = new threads.Process({ target: sendInTurn, args: [w, null, null, threadSent, 1, 4 << 20] });
    const child = new ctx.Process({ target: sendInTurn, args: [w, go, processStarting, null, 2, 100] });
    await expectSendsInOrder([thread, child], async () => {
      assert.equal(await threadSent.wait(30), true);
      go.set();
      return processStarting.wait(30);
    }, r, w, ['thread', 'process']);
  });

  it('a send that fails (EPIPE) leaves the turn to the others: they get the error too, at once', { timeout: 60_000 }, async () => {
    const mp = await import('../src/index.ts');
    const { sendInTurn } = await import('./fixtures/connection-tasks.ts');
    const ctx = mp.getContext('spawn');
    const [r, w] = Pipe(false);
    const go = ctx.Event();
    const child = new ctx.Process({ target: sendInTurn, args: [w, go, null, null, 2, 100] });
    try {
      child.start();
      r.close();
      assert.throws(() => w.sendBytes(Buffer.alloc(10)), (e: unknown) => e instanceof OSError && /Broken pipe/.test(e.message));
      go.set();
      await child.join(30);
      assert.equal(child.exitcode, 1, 'the child\'s send raised (EPIPE) instead of waiting for the lock');
    } finally {
      if (child.exitcode === null) child.kill();
      await child.join(30);
      w.close();
    }
  });
});

describe('sockets in messages (the resource sharer)', () => {
  it('a socket Connection sent over a Pipe to this process is a working duplicate (recv and recvSync)', { timeout: 20_000 }, async () => {
    const [a, b] = pipeForProcesses();
    const [x, y] = pipeForProcesses();
    const [u, v] = pipeForProcesses();
    try {
      a.send(x);
      a.send({ inside: [u] });
      const x2 = (await b.recv()) as Connection;
      const u2 = (b.recvSync() as { inside: Connection[] }).inside[0]!;
      assert.ok(x2 instanceof Connection && u2 instanceof Connection);
      assert.notEqual(x2.fileno(), x.fileno(), 'a duplicate descriptor');
      x.close(); // the sender's copy goes; the duplicate still works
      x2.send('through the duplicate');
      assert.equal(await y.recv(), 'through the duplicate');
      y.send('back');
      assert.equal(await x2.recv(), 'back');
      u2.sendBytes(Buffer.from('sync'));
      assert.deepEqual(await v.recvBytes(), Buffer.from('sync'));
      x2.close();
      u.close();
      u2.close();
      await assert.rejects(y.recv(), EOFError, 'EOF once every copy is closed');
    } finally {
      closeAll(a, b, x, y, u, v);
    }
  });

  it('a shared end closed by the code its EOF wakes (inside the readiness callback) closes cleanly', { timeout: 10_000 }, async () => {
    const [r, w] = pipeForProcesses(false);
    r[reduceSymbol](newReduceContext('process', [])); // r is now shared, as for a child
    const received = r.recv().catch((error: unknown) => {
      r.close();
      return error;
    });
    w.close();
    assert.ok((await received) instanceof EOFError);
    assert.equal(r.closed, true);
  });

  it('a socket travels once: rebuilding the same message twice is an OSError that says why', () => {
    const [a, b] = pipeForProcesses();
    try {
      const { graph } = reduce({ conn: a }, newReduceContext('process'));
      const copy = structuredClone(graph);
      const first = (rebuildSync(graph, { target: 'process', handles: [] }) as { conn: Connection }).conn;
      first.close();
      assert.throws(() => rebuildSync(copy, { target: 'process', handles: [] }), isError(OSError, /could not fetch a socket .* fetched already/));
    } finally {
      closeAll(a, b);
    }
  });

  it('a socket Connection and a net.Socket reach a thread as duplicates, over a port Connection', { timeout: 20_000 }, async () => {
    const [a, b] = pipeForProcesses();
    const [c, d] = portPipe();
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    const accepted = await new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    try {
      c.send({ conn: a, socket: accepted });
      const got = (await d.recv()) as { conn: Connection; socket: net.Socket };
      assert.ok(got.conn instanceof Connection && got.socket instanceof net.Socket);
      got.conn.send('dup');
      assert.equal(await b.recv(), 'dup');
      got.socket.end('over the duplicate socket');
      accepted.destroy();
      const chunks: Buffer[] = [];
      for await (const chunk of client) chunks.push(chunk as Buffer);
      assert.equal(Buffer.concat(chunks).toString(), 'over the duplicate socket');
      got.conn.close();
    } finally {
      closeAll(a, b, c, d);
      client.destroy();
      server.close();
    }
  });

  for (const method of ['spawn', 'forkserver'] as const) {
    it(`${method}: a child gets a Connection over its Pipe with recvSync (fetched while it blocks)`, { timeout: 60_000 }, async () => {
      const { answerThroughReceivedSync } = await import('./fixtures/connection-tasks.ts');
      const [parent, child] = pipeForProcesses();
      const [x, y] = pipeForProcesses();
      await withChild(method, answerThroughReceivedSync, [child], [child], async () => {
        parent.send(x);
        x.close();
        const reply = (await y.recv()) as { via: string; pid: number };
        assert.equal(reply.via, 'received');
        assert.notEqual(reply.pid, process.pid);
      }, () => closeAll(parent, child, x, y));
    });

    it(`${method}: a Connection put in a Queue reaches the child that gets it`, { timeout: 60_000 }, async () => {
      const mp = await import('../src/index.ts');
      const { answerThroughQueued } = await import('./fixtures/connection-tasks.ts');
      const q = mp.getContext(method).Queue();
      const [x, y] = pipeForProcesses();
      await withChild(method, answerThroughQueued, [q], [], async () => {
        await q.put(x);
        assert.equal(await y.recv(), 'via the queue');
      }, () => {
        closeAll(x, y);
        q.close();
      });
    });

    for (const sync of [false, true]) {
      it(`${method}: a read end shared with a child gives it exactly one message (${sync ? 'recvSync' : 'recv'}); the next stays for the parent`, { timeout: 60_000 }, async () => {
        const { takeOne } = await import('./fixtures/connection-tasks.ts');
        const [r, w] = pipeForProcesses(false);
        const [result, out] = pipeForProcesses(false);
        await withChild(method, takeOne, [r, out, sync], [out], async () => {
          for (const m of ['first', 'second', 'third']) w.send(m);
          const taken = await result.recv();
          assert.equal(taken, 'first');
          assert.equal(await r.recv(), 'second');
          assert.equal(await r.poll(), true);
          assert.equal(r.recvSync(), 'third');
        }, () => closeAll(r, w, result, out));
      });
    }
  }
});

describe('recvSync / pollSync (blocking variants, docs/api.md rule 5)', () => {
  for (const [name, makePipe] of [['Pipe (socketpair)', pipeForProcesses]] as const) {
    it(`${name}: same values and errors as recv/poll, in this thread`, { timeout: 10_000 }, () => {
      const [a, b] = makePipe();
      try {
        assert.equal(a.pollSync(), false);
        const started = performance.now();
        assert.equal(a.pollSync(0.05), false);
        assert.ok(performance.now() - started >= 45, 'pollSync(timeout) waited');
        const obj = { n: 1, list: [1, 2], map: new Map([[1, 'one']]), big: 10n };
        b.send(obj);
        b.sendBytes(Buffer.from('not a pickle'));
        b.send('after the bad one');
        assert.equal(a.pollSync(), true);
        assert.deepEqual(a.recvSync(), obj);
        assert.throws(() => a.recvSync(), UnpicklingError);
        assert.equal(a.recvSync(), 'after the bad one');
        const reason = new Error('stop');
        assert.throws(() => a.recvSync({ signal: AbortSignal.abort(reason) }), (e) => e === reason);
        b.close();
        assert.equal(a.pollSync(5), true, 'EOF counts as ready');
        assert.throws(() => a.recvSync(), EOFError);
        a.close();
        assert.throws(() => a.recvSync(), isError(OSError, 'handle is closed'));
      } finally {
        closeAll(a, b);
      }
    });
  }

  it('timeouts: NaN and negative look once (as poll does); part of a message counts as ready at once, for poll, pollSync and wait', { timeout: 20_000 }, async () => {
    const [a, b] = pipeForProcesses();
    try {
      let started = performance.now();
      assert.equal(a.pollSync(Number.NaN), false);
      assert.equal(a.pollSync(-1), false);
      assert.ok(performance.now() - started < 5_000, 'a look does not wait');
    } finally {
      closeAll(a, b);
    }
    const [fa, fb] = loadNative().socketpair();
    const conn = new Connection(fa);
    const raw = new net.Socket({ fd: fb, readable: true, writable: true });
    try {
      raw.write(Buffer.from([0, 0, 0, 10, 1, 2, 3, 4, 5, 6])); // 6 of a 10-byte message
      let started = performance.now();
      assert.equal(await conn.poll(10), true);
      assert.equal(conn.pollSync(10), true);
      assert.deepEqual(await wait([conn], 10), [conn]);
      assert.ok(performance.now() - started < 5_000, 'none of them waited for the rest');
      raw.write(Buffer.from([7, 8, 9, 10]));
      assert.deepEqual([...(await conn.recvBytes()) as Buffer], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    } finally {
      conn.close();
      raw.destroy();
    }
  });

  it('a look (pollSync(0)) leaves sends asynchronous: a big send to a peer in the same thread does not block', { timeout: 30_000 }, async () => {
    // Run as a program: a send that blocked would hang this thread beyond any test timeout.
    const r = await runProgram(SYNC_PROGRAM, ['look-then-big-send'], 20_000);
    assert.equal(r.stdout.trim(), 'received 4194304', r.stderr);
    assert.equal(r.code, 0);
  });

  for (const method of ['spawn', 'forkserver'] as const) {
    for (const pipes of ['one Pipe', 'two Pipes'] as const) {
      it(`${method}, ${pipes}: a big send made before a blocking recvSync is written while the thread is blocked`, { timeout: 30_000 }, async () => {
        const { bigBeforeRecvSync } = await import('./fixtures/connection-tasks.ts');
        const [outHere, outThere] = pipeForProcesses();
        const [inHere, inThere] = pipes === 'one Pipe' ? [outHere, outThere] : pipeForProcesses();
        await withChild(method, bigBeforeRecvSync, [inThere, outThere], [inThere, outThere], async () => {
          const bounded = { signal: AbortSignal.timeout(20_000) };
          assert.equal(((await outHere.recv(bounded)) as Buffer).length, 4 << 20);
          inHere.send('go');
          assert.deepEqual(await outHere.recv(bounded), { echo: 'go' });
        }, () => closeAll(inHere, outHere));
      });
    }
  }

  for (const method of ['spawn', 'forkserver'] as const) {
    for (const blocking of [false, true]) {
      it(`${method}: a child that sends 4 MiB and returns${blocking ? ' (after a recvSync)' : ''} delivers all of it`, { timeout: 30_000 }, async () => {
        const { bigThenExit } = await import('./fixtures/connection-tasks.ts');
        const [parent, child] = pipeForProcesses();
        await withChild(method, bigThenExit, [child, blocking], [child], async () => {
          if (blocking) parent.send('go');
          const got = (await parent.recv({ signal: AbortSignal.timeout(20_000) })) as Buffer;
          assert.equal(got.length, 4 << 20);
        }, () => parent.close());
      });
    }
  }

  it('after a recvSync, a big send followed by a Queue.getSync is written in full (no deadlock)', { timeout: 30_000 }, async () => {
    const mp = await import('../src/index.ts');
    const { bigThenQueueGetSync } = await import('./fixtures/connection-tasks.ts');
    const [parent, child] = pipeForProcesses();
    const q = mp.getContext('spawn').Queue();
    await withChild('spawn', bigThenQueueGetSync, [child, q], [child], async () => {
      parent.send('go');
      const bounded = { signal: AbortSignal.timeout(20_000) };
      assert.equal(((await parent.recv(bounded)) as Buffer).length, 4 << 20);
      await q.put('after the 4 MiB');
      assert.deepEqual(await parent.recv(bounded), { ack: 'after the 4 MiB' });
    }, () => {
      parent.close();
      q.close();
    });
  });

  it('a Connection over a FIFO (not a socket) still sends and receives', { timeout: 10_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpts-fifo-'));
    const fifo = path.join(dir, 'fifo');
    const made = spawnSync('mkfifo', [fifo]);
    if (made.status !== 0) return; // no mkfifo here: nothing to test
    const fd = fs.openSync(fifo, fs.constants.O_RDWR);
    const conn = new Connection(fd);
    try {
      conn.send({ through: 'a fifo' });
      assert.deepEqual(await conn.recv({ signal: AbortSignal.timeout(5_000) }), { through: 'a fifo' });
    } finally {
      conn.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a Connection over a caller\'s own MessagePort cannot block: NotAvailableError', () => {
    const { port1, port2 } = new MessageChannel();
    const conn = new Connection(port1);
    try {
      assert.throws(() => conn.recvSync(), (e) => (e as Error).name === 'NotAvailableError' && /Pipe\(\)/.test((e as Error).message));
    } finally {
      conn.close();
      port2.close();
    }
  });

  for (const method of ['spawn', 'forkserver', 'thread'] as const) {
    it(`a ${method} child serving with recvSync; a big send before recvSync is not left half-written; the child's exit is EOF`, {
      timeout: 30_000,
    }, async () => {
      const { syncEcho } = await import('./fixtures/connection-tasks.ts');
      const [parent, child] = pipeForProcesses();
      await withChild(method, syncEcho, [child], [child], async () => {
        const bounded = { signal: AbortSignal.timeout(20_000) };
        // Straight after start(), without the event loop running: the child must start anyway
        // (forkserver hands its sockets over without waiting for the loop).
        parent.send('one');
        assert.equal(parent.pollSync(20), true, 'the child answered');
        assert.deepEqual(parent.recvSync(), { echo: 'one', ready: false });
        for (let i = 0; i < 100; i++) {
          parent.send(i);
          assert.equal(parent.pollSync(20), true); // bounded: a sync call cannot be cut by the test's timeout
          assert.deepEqual(parent.recvSync(), { echo: i, ready: false });
        }
        parent.send('big');
        parent.send('two');
        const big = (await parent.recv(bounded)) as Buffer;
        assert.equal(big.length, 4 << 20);
        assert.deepEqual(await parent.recv(bounded), { echo: 'two', ready: false });
        parent.send('stop');
        assert.equal(parent.pollSync(20), true);
        assert.throws(() => parent.recvSync(), EOFError);
      }, () => parent.close());
    });
  }
});
