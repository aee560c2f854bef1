// A manager server in its own program on 127.0.0.1, used by this process and by children over
// AF_INET with an authkey (Python's "using a remote manager").
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as mp from '../src/index.js';
import { RemoteQueueManager, putFromRemoteClient, putThroughProxy } from './fixtures/managers/tasks.js';
import { waitForPidGone } from './helpers.js';

const serverProgram = fileURLToPath(new URL('./fixtures/managers/remoteServer.ts', import.meta.url));

interface Started {
  child: ChildProcess;
  address: [string, number];
  pid: number;
}

function startServer(authkey: string): Promise<Started> {
  const child = spawn(process.execPath, [...process.execArgv.filter((a) => !a.startsWith('--test')), serverProgram, authkey], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk) => {
      out += chunk;
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) {
        const { address, pid } = JSON.parse(line) as { address: [string, number]; pid: number };
        resolve({ child, address, pid });
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before printing its address`)));
  });
}

describe('a remote manager on 127.0.0.1 (AF_INET + authkey)', () => {
  let server: Started;
  before(async () => {
    server = await startServer('secret');
  });
  after(async () => {
    server.child.kill('SIGKILL');
    await waitForPidGone(server.pid, 5000);
  });

  it('connect() with the authkey: objects, values round-trip, a shared queue used by other processes', async () => {
    assert.equal(server.address[0], '127.0.0.1');
    const m = await new RemoteQueueManager({ address: server.address, authkey: 'secret' }).connect();
    const d = await m.dict<string, unknown>();
    const values: [string, unknown][] = [['s', 'héllo'], ['none', null], ['t', true], ['f', 1.5], ['big', 2n ** 70n], ['bytes', new Uint8Array([0, 255])]];
    for (const [k, v] of values) await d.setItem(k, v);
    for (const [k, v] of values) assert.deepEqual(await d.getItem(k), v);
    await assert.rejects(d.setItem('fn', () => 1), mp.PicklingError);

    const q = await m.getQueue();
    // A child that connects by itself, and a child that gets the proxy as an argument (the proxy
    // carries the manager's own authkey, which differs from the child's).
    const a = new mp.Process({ target: putFromRemoteClient, args: [server.address, 'secret', 'from a client'] });
    const b = new mp.Process({ target: putThroughProxy, args: [q, 'through a proxy'] });
    a.start();
    b.start();
    await Promise.all([a.join(30), b.join(30)]);
    assert.equal(a.exitcode, 0);
    assert.equal(b.exitcode, 0);
    const got = [await q.get({ timeout: 5 }), await q.get({ timeout: 5 })].sort();
    assert.deepEqual(got, ['from a client', 'through a proxy']);
    await m.shutdown(); // a connect-only manager just disconnects: the server keeps running
    const again = await new RemoteQueueManager({ address: server.address, authkey: 'secret' }).connect();
    assert.equal(await (await again.getQueue()).qsize(), 0);
  });

  it('a wrong authkey is refused with AuthenticationError', async () => {
    await assert.rejects(new RemoteQueueManager({ address: server.address, authkey: 'wrong' }).connect(), mp.AuthenticationError);
  });
});

describe('a remote manager that dies', () => {
  it('makes pending calls fail at once, and later calls fail with a connection error', async () => {
    const server = await startServer('k');
    const m = await new RemoteQueueManager({ address: server.address, authkey: 'k' }).connect();
    const q = await m.getQueue();
    const pending = q.get();
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    server.child.kill('SIGKILL');
    await assert.rejects(pending, (e: Error) => ['EOFError', 'OSError'].includes(e.name));
    assert.ok(performance.now() - t0 < 2000, 'failed fast');
    // Python reports a dead server as a connection error: EOF or a refused/broken connection.
    await assert.rejects(q.qsize(), (e: Error) => ['EOFError', 'OSError'].includes(e.name));
    await waitForPidGone(server.pid, 5000);
  });
});
