// The redis context's connection layer (src/redis/client.ts) against a real redis-server.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { OSError, ValueError } from '../src/errors.js';
import {
  connect, disconnect, key, KeyKeeper, newId, redactUrl, redisSettings, RedisScript, DEFAULT_CLAIM_IDLE,
} from '../src/redis/client.js';
import { runProgram } from './helpers.js';
import { redisForTests } from './redisServer.js';

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

  it('KeyKeeper gives keys a TTL and refreshes it; forgotten keys keep the TTL they had', async () => {
    const client = await connect(server.url, { role: 'test' });
    try {
      const k = key('test', newId());
      await client.set(k, '1');
      const keeper = new KeyKeeper(client, 0.3);
      keeper.add(k);
      await keeper.refresh();
      const ttl = await client.pttl(k);
      assert.ok(ttl > 0 && ttl <= 300, `ttl ${ttl}`);
      // Refreshed every 100 ms: still there after twice its TTL.
      await new Promise((r) => setTimeout(r, 600));
      assert.equal(await client.exists(k), 1);
      keeper.stop();
      // Nobody keeps it now: it expires.
      const deadline = Date.now() + 2000;
      while ((await client.exists(k)) === 1) {
        assert.ok(Date.now() < deadline, 'key did not expire');
        await new Promise((r) => setTimeout(r, 50));
      }
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

