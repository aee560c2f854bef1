/**
 * Interop with CPython's multiprocessing.connection (python3 on PATH, stdlib only): framing and the
 * authkey handshake, both directions, legacy (python 3.11's) and the 3.12 {digest} form written out
 * by hand in test/fixtures/py/peer.py.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Client, Listener, type Address, type Family } from '../src/connection.ts';
import { AuthenticationError } from '../src/errors.ts';

const PEER = fileURLToPath(new URL('./fixtures/py/peer.py', import.meta.url));
const hasPython = spawnSync('python3', ['--version']).status === 0;
const KEY = Buffer.from('secret key \u00e9', 'utf8');
const WRONG = Buffer.from('another key', 'utf8');
const BIG = 16 * 1024 * 1024;

type PeerLine = { address?: Address; error?: string; message?: string; eof?: boolean; echoed?: number; connected?: boolean; accepted?: boolean };

class Peer {
  readonly child: ChildProcess;
  private readonly lines: PeerLine[] = [];
  private readonly seen: PeerLine[] = [];
  private waiter: (() => void) | null = null;
  private exited = false;
  stderr = '';

  constructor(args: string[]) {
    this.child = spawn('python3', [PEER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const parsed = JSON.parse(line) as PeerLine;
      this.lines.push(parsed);
      this.seen.push(parsed);
      this.waiter?.();
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.child.on('exit', () => {
      this.exited = true;
      this.waiter?.();
    });
    peers.add(this);
  }

  /** The next JSON line the peer prints (fails after `ms`). */
  async next(ms = 10_000): Promise<PeerLine> {
    const deadline = Date.now() + ms;
    while (this.lines.length === 0) {
      if (this.exited) throw new Error(`python peer exited without output; stderr: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`python peer said nothing for ${ms} ms; stderr: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = null;
    }
    return this.lines.shift()!;
  }

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }

  /** Lets a peer that is done exit by itself (so Python removes its temp dir), then kills it. */
  async stop(ms = 3000): Promise<void> {
    if (this.exited) return;
    if (this.lines.length === 0 && !this.done) this.child.kill('SIGTERM');
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.child.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
    this.kill();
  }

  private get done(): boolean {
    return this.seen.some((l) => l.eof || l.error !== undefined);
  }
}

const peers = new Set<Peer>();
after(() => {
  for (const p of peers) p.kill();
});

function hex(key: Buffer | null): string {
  return key === null ? '-' : key.toString('hex');
}

async function echoChecks(conn: Awaited<ReturnType<typeof Client>>): Promise<void> {
  conn.sendBytes(Buffer.from('hello'));
  assert.equal((await conn.recvBytes()).toString(), 'hello');
  conn.sendBytes(new Uint8Array(0));
  conn.sendBytes(Buffer.from('after empty'));
  assert.equal((await conn.recvBytes()).length, 0);
  assert.equal((await conn.recvBytes()).toString(), 'after empty');
  const big = Buffer.alloc(BIG);
  for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 0xff;
  conn.sendBytes(big);
  const back = await conn.recvBytes();
  assert.equal(back.length, BIG);
  assert.ok(back.equals(big));
  // offset/size, recvBytesInto
  conn.sendBytes(Buffer.from('0123456789'), 2, 5);
  const into = Buffer.alloc(8, 0x2e);
  assert.equal(await conn.recvBytesInto(into, 1), 5);
  assert.equal(into.toString(), '.23456..');
}

describe('python3 as the other end', { skip: !hasPython && 'python3 not found' }, () => {
  for (const family of ['AF_INET', 'AF_UNIX'] as Family[]) {
    it(`TS Client -> Python Listener (${family}, python's own handshake)`, { timeout: 30_000 }, async () => {
      const peer = new Peer(['serve', family, hex(KEY), 'builtin']);
      try {
        const { address } = await peer.next();
        const conn = await Client(address!, { authkey: KEY, timeout: 10 });
        assert.deepEqual(await peer.next(), { accepted: true });
        await echoChecks(conn);
        conn.close();
        assert.deepEqual(await peer.next(), { eof: true, echoed: 5 });
      } finally {
        await peer.stop();
      }
    });

    it(`Python Client -> TS Listener (${family}, python's own handshake)`, { timeout: 30_000 }, async () => {
      using listener = new Listener(family === 'AF_INET' ? ['127.0.0.1', 0] : undefined, { authkey: KEY });
      const peer = new Peer(['connect', family, JSON.stringify(listener.address), hex(KEY), 'builtin']);
      try {
        const conn = await listener.accept();
        assert.deepEqual(await peer.next(), { connected: true });
        if (family === 'AF_INET') {
          const last = listener.lastAcceptedAddress as [string, number];
          assert.equal(last[0], '127.0.0.1');
          assert.ok(last[1] > 0);
        }
        await echoChecks(conn);
        conn.close();
        assert.deepEqual(await peer.next(), { eof: true, echoed: 5 });
      } finally {
        await peer.stop();
      }
    });
  }

  it('no authkey at all, both directions', { timeout: 20_000 }, async () => {
    const server = new Peer(['serve', 'AF_INET', '-', 'builtin']);
    using listener = new Listener(['127.0.0.1', 0]);
    const client = new Peer(['connect', 'AF_INET', JSON.stringify(listener.address), '-', 'builtin']);
    try {
      const { address } = await server.next();
      const a = await Client(address!);
      const b = await listener.accept();
      for (const conn of [a, b]) {
        conn.sendBytes(Buffer.from('x'));
        assert.equal((await conn.recvBytes()).toString(), 'x');
        conn.close();
      }
    } finally {
      await Promise.all([server.stop(), client.stop()]);
    }
  });

  it('wrong authkey, TS Client -> Python Listener: AuthenticationError on both sides', { timeout: 20_000 }, async () => {
    const peer = new Peer(['serve', 'AF_INET', hex(KEY), 'builtin']);
    try {
      const { address } = await peer.next();
      await assert.rejects(Client(address!, { authkey: WRONG, timeout: 10 }), (e: Error) => {
        assert.ok(e instanceof AuthenticationError);
        assert.equal(e.message, 'digest sent was rejected');
        return true;
      });
      assert.deepEqual(await peer.next(), { error: 'AuthenticationError', message: 'digest received was wrong' });
    } finally {
      await peer.stop();
    }
  });

  it('wrong authkey, Python Client -> TS Listener: AuthenticationError on both sides', { timeout: 20_000 }, async () => {
    using listener = new Listener(['127.0.0.1', 0], { authkey: KEY });
    const peer = new Peer(['connect', 'AF_INET', JSON.stringify(listener.address), hex(WRONG), 'builtin']);
    try {
      await assert.rejects(listener.accept(), (e: Error) => {
        assert.ok(e instanceof AuthenticationError);
        assert.equal(e.message, 'digest received was wrong');
        return true;
      });
      assert.deepEqual(await peer.next(), { error: 'AuthenticationError', message: 'digest sent was rejected' });
      // The listener still works for the next peer.
      const good = new Peer(['connect', 'AF_INET', JSON.stringify(listener.address), hex(KEY), 'builtin']);
      try {
        const conn = await listener.accept();
        conn.sendBytes(Buffer.from('ok'));
        assert.equal((await conn.recvBytes()).toString(), 'ok');
        conn.close();
      } finally {
        await good.stop();
      }
    } finally {
      await peer.stop();
    }
  });

  for (const digest of ['sha256', 'md5', 'sha384', 'sha3_256', 'sha3_384']) {
    it(`3.12 {${digest}} handshake: Python (hand-written 3.12) Listener -> TS Client`, { timeout: 20_000 }, async () => {
      const peer = new Peer(['serve', 'AF_UNIX', hex(KEY), `modern:${digest}`]);
      try {
        const { address } = await peer.next();
        const conn = await Client(address!, { authkey: KEY, timeout: 10 });
        assert.deepEqual(await peer.next(), { accepted: true });
        conn.sendBytes(Buffer.from(digest));
        assert.equal((await conn.recvBytes()).toString(), digest);
        conn.close();
        assert.deepEqual(await peer.next(), { eof: true, echoed: 1 });
      } finally {
        await peer.stop();
      }
    });
  }

  it('3.12 {sha3_384} handshake: Python (hand-written 3.12) Client -> TS Listener', { timeout: 20_000 }, async () => {
    using listener = new Listener(undefined, { authkey: KEY });
    const peer = new Peer(['connect', 'AF_UNIX', JSON.stringify(listener.address), hex(KEY), 'modern:sha3_384']);
    try {
      const conn = await listener.accept();
      assert.deepEqual(await peer.next(), { connected: true });
      await echoChecks(conn);
      conn.close();
      assert.deepEqual(await peer.next(), { eof: true, echoed: 5 });
    } finally {
      await peer.stop();
    }
  });

  it('3.12 handshake with the wrong key: AuthenticationError on both sides, both directions', { timeout: 20_000 }, async () => {
    const server = new Peer(['serve', 'AF_INET', hex(KEY), 'modern:sha256']);
    try {
      const { address } = await server.next();
      await assert.rejects(Client(address!, { authkey: WRONG }), { name: 'AuthenticationError', message: 'digest sent was rejected' });
      assert.deepEqual(await server.next(), { error: 'AuthenticationError', message: 'digest received was wrong' });
    } finally {
      await server.stop();
    }
    using listener = new Listener(['127.0.0.1', 0], { authkey: KEY });
    const client = new Peer(['connect', 'AF_INET', JSON.stringify(listener.address), hex(WRONG), 'modern:sha256']);
    try {
      await assert.rejects(listener.accept(), { name: 'AuthenticationError', message: 'digest received was wrong' });
      assert.deepEqual(await client.next(), { error: 'AuthenticationError', message: 'digest sent was rejected' });
    } finally {
      await client.stop();
    }
  });
});
