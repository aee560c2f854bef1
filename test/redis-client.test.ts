// The redis context's connection layer (src/redis/client.ts) against a real redis-server.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { OSError, ValueError } from '../src/errors.js';
import { connect, disconnect, KeyKeeper } from '../src/redis/client.js';
import { RedisScript } from '../src/redis/script.js';
import { key, newId, redactUrl, redisSettings, DEFAULT_CLAIM_IDLE } from '../src/redis/settings.js';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runProgram } from './helpers.js';
import { freePort, redisForTests } from './redisServer.js';
import { until } from './redisWorkers.js';

describe('redis settings (no server needed)', () => {
  it('reads the URL from the options, else from MP_REDIS_URL', () => {
    const saved = process.env.MP_REDIS_URL;
    try {
      process.env.MP_REDIS_URL = 'redis://envhost:7000';
      assert.equal(redisSettings({}).url, 'redis://envhost:7000');
      assert.equal(redisSettings({ url: 'rediss://u:p@h:1/2' }).url, 'rediss://u:p@h:1/2');
      assert.equal(redisSettings({}).claimIdle, DEFAULT_CLAIM_IDLE);
      delete process.env.MP_REDIS_URL;
      assert.throws(() => redisSettings({}), (e: Error) => e instanceof ValueError && /MP_REDIS_URL/.test(e.message));
    } finally {
      if (saved === undefined) delete process.env.MP_REDIS_URL;
      else process.env.MP_REDIS_URL = saved;
    }
  });

  it('rejects bad URLs and options with a ValueError that says what is expected', () => {
    assert.throws(() => redisSettings({ url: 'http://h:1' }), (e: Error) => e instanceof ValueError && /redis: or rediss:/.test(e.message));
    assert.throws(() => redisSettings({ url: 'nonsense' }), (e: Error) => e instanceof ValueError && /redis:\/\//.test(e.message));
    assert.throws(() => redisSettings({ url: 'redis://h', claimIdle: 0 }), ValueError);
    assert.throws(() => redisSettings({ url: 'redis://h', maxDeliveries: 1.5 }), ValueError);
  });

  it('never shows a password in messages', () => {
    assert.equal(redactUrl('redis://user:s3cret@h:1/0'), 'redis://user:***@h:1/0');
  });

  it('names keys under mp:', () => {
    assert.equal(key('pool', 'abc', 'tasks'), 'mp:pool:abc:tasks');
    assert.match(newId(), /^[0-9a-f]{16}$/);
  });

  it('a missing ioredis gives an error that says what to install', async () => {
    const hide = new URL('./fixtures/redis/hide-ioredis.mjs', import.meta.url).pathname;
    const program = new URL('./fixtures/redis/load-client.ts', import.meta.url);
    const r = await runProgram(program, [], 30_000, { NODE_OPTIONS: `--import=${hide}` });
    assert.match(r.stdout, /^NotAvailableError: .*npm install ioredis/m, r.stderr);
  });
});

const redis = await redisForTests({ db: 1 });

describe('redis connections', { skip: redis.skip }, () => {
  const server = redis.server!;
  after(() => server.close());

  it('connects, and a refused connection fails at once with an error naming the server and the fix', async () => {
    const client = await connect(server.url, { role: 'test' });
    assert.equal(await client.ping(), 'PONG');
    disconnect(client);
    // Port 1 (tcpmux): nothing listens there, and only root could bind it.
    const closedUrl = `redis://127.0.0.1:1`;
    const t0 = performance.now();
    await assert.rejects(connect(closedUrl, { role: 'test' }), (e: Error) => {
      assert.ok(e instanceof OSError, String(e));
      assert.match(e.message, /Cannot connect to Redis at redis:\/\/127\.0\.0\.1:1.*ECONNREFUSED.*redis-server running/);
      return true;
    });
    assert.ok(performance.now() - t0 < 5000);
  });

  it('a pool whose Redis refuses the connection fails its call, then leaves the program idle and free to exit', async () => {
    // (It used to restart its reading of results at once, for ever: a loop of promise jobs that
    // starved the event loop, so this program never reached its timer.)
    const r = await runProgram(new URL('./fixtures/redis/refused-pool.ts', import.meta.url), [], 20_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^error: Cannot connect to Redis at redis:\/\/127\.0\.0\.1:1/m, r.stderr);
    const { cpuMs, wallMs } = JSON.parse(r.stdout.trim().split('\n').pop()!) as { cpuMs: number; wallMs: number };
    assert.ok(cpuMs < wallMs / 2, `CPU ${cpuMs} ms in ${wallMs} ms of a quiet wait`);
  });

  it('KeyKeeper gives keys a TTL and refreshes it while it runs; then they expire', async () => {
    const client = await connect(server.url, { role: 'test' });
    try {
      const k = key('test', newId());
      await client.set(k, '1');
      const keeper = new KeyKeeper(client, 1.5);
      keeper.add(k);
      await keeper.refresh();
      const ttl = await client.pttl(k);
      assert.ok(ttl > 0 && ttl <= 1500, `ttl ${ttl}`);
      // Its timer (every third of the TTL) puts the TTL back up.
      let last = ttl;
      await until('a refresh', async () => {
        const now = await client.pttl(k);
        const refreshed = now > last;
        last = now;
        return refreshed;
      }, 20_000);
      keeper.stop();
      // Nobody keeps it now: it expires.
      await until('the key to expire', async () => (await client.exists(k)) === 0, 20_000);
    } finally {
      disconnect(client);
    }
  });

  it('RedisScript runs by SHA and sends its source again after SCRIPT FLUSH', async () => {
    const client = await connect(server.url, { role: 'test' });
    try {
      const script = new RedisScript('echo', 'return ARGV[1] .. KEYS[1]');
      assert.equal(await script.run(client, ['k'], ['v']), 'vk');
      await client.script('FLUSH');
      assert.equal(await script.run(client, ['k'], ['w']), 'wk');
      assert.deepEqual(await script.runBuffer(client, ['k'], ['x']), Buffer.from('xk'));
    } finally {
      disconnect(client);
    }
  });

  it('leaves no mp: keys', async () => {
    assert.deepEqual(await server.mpKeys(), []);
  });
});

const secured = await redisForTests({ db: 0, serverArgs: ['--requirepass', 'pa ss'], password: 'pa ss' });

describe('redis AUTH from the URL', { skip: secured.skip }, () => {
  const server = secured.server!;
  after(() => server.close());

  it('connects with the password in the URL, and a wrong one fails saying to check it', async () => {
    const client = await connect(server.url, { role: 'test' });
    assert.equal(await client.ping(), 'PONG');
    disconnect(client);
    const wrong = server.url.replace(encodeURIComponent('pa ss'), 'nope');
    await assert.rejects(connect(wrong, { role: 'test' }), (e: Error) => {
      assert.ok(e instanceof OSError, String(e));
      assert.match(e.message, /redis:\/\/:\*\*\*@127\.0\.0\.1.*(WRONGPASS|invalid).*user and password/);
      assert.doesNotMatch(e.message, /nope/);
      return true;
    });
  });
});


// TLS: a CA and a server certificate for localhost, made here with openssl.
const certs = mkdtempSync(join(tmpdir(), 'mp-redis-tls-'));
after(() => rmSync(certs, { recursive: true, force: true }));
let tlsArgs: string[] | null = null;
let tlsPort = 0;
try {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: certs, stdio: 'ignore' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=mp-test-ca');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  execFileSync('sh', ['-c', 'printf "subjectAltName=DNS:localhost,IP:127.0.0.1" > san.ext'], { cwd: certs });
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'san.ext');
  tlsPort = await freePort();
  tlsArgs = ['--tls-port', String(tlsPort), '--tls-cert-file', join(certs, 'server.crt'), '--tls-key-file', join(certs, 'server.key'),
    '--tls-ca-cert-file', join(certs, 'ca.crt'), '--tls-auth-clients', 'no'];
} catch (error) {
  // no openssl: the TLS test is skipped below, except where a skipped redis test is a failure (CI)
  if (process.env.MP_REQUIRE_REDIS === '1') throw new Error(`MP_REQUIRE_REDIS=1 but the TLS test cannot make certificates with openssl: ${error}`);
}
const tls = tlsArgs ? await redisForTests({ db: 0, serverArgs: tlsArgs }) : { skip: 'no openssl to make certificates', server: null };

describe('redis TLS from the URL (rediss://)', { skip: tls.skip }, () => {
  after(() => tls.server?.close());

  it('connects with TLS, and an unverifiable certificate fails saying to check the TLS setup', async () => {
    const ping = new URL('./fixtures/redis/ping.ts', import.meta.url);
    const url = `rediss://localhost:${tlsPort}`;
    const trusted = await runProgram(ping, [url], 30_000, { NODE_EXTRA_CA_CERTS: join(certs, 'ca.crt') });
    assert.equal(trusted.stdout.trim(), 'PONG', trusted.stderr);
    const untrusted = await runProgram(ping, [url], 30_000);
    assert.match(untrusted.stdout, /^OSError: Cannot connect to Redis at rediss:\/\/localhost:\d+.*certificate.*Check the TLS setup/m);
  });
});
