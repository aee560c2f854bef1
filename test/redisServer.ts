// A Redis for the redis tests: REDIS_URL if set, else a private redis-server started here (on a
// free loopback port, no persistence, killed by pid at the end), else the tests are skipped with one
// loud line saying how to run them. With MP_REQUIRE_REDIS=1 (CI) a skip is a failure.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface TestRedis {
  /** The URL tests give the redis context (with its own db number when the server is shared). */
  url: string;
  port: number;
  host: string;
  /** Runs one command (a tiny RESP client, so that the helper does not depend on the code under
   * test) and returns its reply. */
  command(...args: Array<string | number>): Promise<unknown>;
  /** The keys under `mp:` in this test's db. */
  mpKeys(): Promise<string[]>;
  /** Private servers only: stop (SIGTERM, wait for exit) and start again on the same port. */
  stop?(): Promise<void>;
  start?(): Promise<void>;
  /** Ends what this helper started. */
  close(): Promise<void>;
}

/** What a test file uses: `describe('...', { skip: redis.skip }, ...)` and `redis.server!`. */
export interface RedisForTests {
  skip: string | false;
  server: TestRedis | null;
}

const SKIP_NOTICE =
  '### redis tests SKIPPED: no REDIS_URL and no redis-server on PATH. Run them with ' +
  "`apt-get install redis-server` (a private server is then started) or REDIS_URL=redis://host:port npm test ###";

function findRedisServer(): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'redis-server');
    if (dir && existsSync(candidate)) return candidate;
  }
  return null;
}

/**
 * A Redis for this test file. `db` separates the files that share REDIS_URL (the runner runs two
 * at once, and each checks that it leaves no key behind). `privateServer` asks for a server of the
 * file's own even when REDIS_URL is set (a test that stops and restarts Redis).
 */
export async function redisForTests(options: {
  db: number;
  privateServer?: boolean;
  /** More redis-server arguments (a private server), e.g. ['--requirepass', 'secret']. */
  serverArgs?: string[];
  /** The password the URL carries (with --requirepass). */
  password?: string;
}): Promise<RedisForTests> {
  const shared = process.env.REDIS_URL;
  const privateWanted = options.privateServer || options.serverArgs !== undefined;
  if (shared && !privateWanted) {
    const server = remoteServer(shared, options.db);
    await server.command('FLUSHDB');
    return { skip: false, server };
  }
  const binary = findRedisServer();
  if (!binary) {
    if (process.env.MP_REQUIRE_REDIS === '1') {
      throw new Error('MP_REQUIRE_REDIS=1 but there is no redis-server on PATH' + (shared ? ' (this test needs a private one)' : ' and no REDIS_URL'));
    }
    announceSkip();
    return { skip: 'no Redis (see the SKIPPED line above)', server: null };
  }
  return { skip: false, server: await privateServer(binary, options.db, options.serverArgs ?? [], options.password) };
}

const MARKER_PREFIX = 'mp-redis-skip-notice-';

function announceSkip(): void {
  // One line per test run, not one per file: the files of a run share the runner as parent, and the
  // first to create the runner's marker (exclusively: two files run at once) prints the line.
  removeStaleMarkers();
  try {
    writeFileSync(join(tmpdir(), `${MARKER_PREFIX}${process.ppid}`), '', { flag: 'wx' });
  } catch {
    return;
  }
  process.stderr.write(`\n${SKIP_NOTICE}\n\n`);
}

/** The markers of earlier runs (their runner has exited), so that skipped runs leave nothing behind. */
function removeStaleMarkers(): void {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(MARKER_PREFIX)) continue;
    const pid = Number(name.slice(MARKER_PREFIX.length));
    try {
      process.kill(pid, 0);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') rmSync(join(tmpdir(), name), { force: true });
    }
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function privateServer(binary: string, db: number, extraArgs: string[], password: string | undefined): Promise<TestRedis> {
  let child: ChildProcess | null = null;
  let port = 0;
  const host = '127.0.0.1';
  const launch = async (): Promise<void> => {
    const args = ['--port', String(port), '--bind', host, '--save', '', '--appendonly', 'no', ...extraArgs];
    const proc = spawn(binary, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    proc.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    child = proc;
    // Never outlive the test file, even when it dies before its after() hook.
    const killAtExit = () => proc.kill('SIGKILL');
    process.once('exit', killAtExit);
    void exited.then(() => process.off('exit', killAtExit));
    try {
      await waitForPing(host, port, exited, password);
    } catch (error) {
      proc.kill('SIGKILL');
      throw new Error(`redis-server on port ${port} did not start: ${(error as Error).message} ${stderr}`);
    }
  };
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (error) {
      if (attempt >= 3) throw error; // the port was taken between our probe and its bind: try another
    }
  }
  const stop = async (): Promise<void> => {
    const proc = child;
    child = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    await gone;
  };
  const auth = password ? `:${encodeURIComponent(password)}@` : '';
  const base = remoteServer(`redis://${auth}${host}:${port}`, db);
  return { ...base, stop, start: launch, close: stop };
}

/** Resolves once the server answers PING; rejects if it exits first or takes over 10 s. */
async function waitForPing(host: string, port: number, exited: Promise<void>, password?: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  let dead = false;
  void exited.then(() => (dead = true));
  for (;;) {
    if (dead) throw new Error('it exited');
    try {
      if ((await rawCommand(host, port, ['PING'], password ? [['AUTH', password]] : [])) === 'PONG') return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('no PONG within 10 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function remoteServer(url: string, db: number): TestRedis {
  const parsed = new URL(url);
  const host = parsed.hostname;
  const port = Number(parsed.port || 6379);
  const password = parsed.password ? decodeURIComponent(parsed.password) : null;
  const user = parsed.username ? decodeURIComponent(parsed.username) : null;
  const prelude: string[][] = [];
  if (password) prelude.push(user ? ['AUTH', user, password] : ['AUTH', password]);
  prelude.push(['SELECT', String(db)]);
  parsed.pathname = `/${db}`;
  const command = (...args: Array<string | number>) => rawCommand(host, port, args.map(String), prelude);
  return {
    url: parsed.href,
    host,
    port,
    command,
    async mpKeys() {
      return ((await command('KEYS', 'mp:*')) as string[]).sort();
    },
    async close() {},
  };
}

// ---- a minimal RESP client ----------------------------------------------------------------------

function encode(args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/** Parses one RESP reply at `pos`; returns [value, next position] or null if incomplete. */
function parse(buf: Buffer, pos: number): [unknown, number] | null {
  const eol = buf.indexOf('\r\n', pos);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[pos]!);
  const line = buf.toString('utf8', pos + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
      return [line, next];
    case '-':
      return [new Error(line), next];
    case ':':
      return [Number(line), next];
    case '$': {
      const n = Number(line);
      if (n < 0) return [null, next];
      if (buf.length < next + n + 2) return null;
      return [buf.toString('utf8', next, next + n), next + n + 2];
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return [null, next];
      const out: unknown[] = [];
      let at = next;
      for (let i = 0; i < n; i++) {
        const r = parse(buf, at);
        if (!r) return null;
        out.push(r[0]);
        at = r[1];
      }
      return [out, at];
    }
    default:
      throw new Error(`bad RESP reply: ${buf.toString('utf8', pos, pos + 40)}`);
  }
}

/** Sends `prelude` commands then `args` on a fresh connection; resolves to the last reply. */
function rawCommand(host: string, port: number, args: string[], prelude: string[][] = []): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, host);
    const replies: unknown[] = [];
    const expected = prelude.length + 1;
    let buf = Buffer.alloc(0);
    let pos = 0;
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no reply to ${args[0]} within 10 s`)));
    socket.on('connect', () => socket.write([...prelude, args].map(encode).join('')));
    socket.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const r = parse(buf, pos);
        if (!r) break;
        replies.push(r[0]);
        pos = r[1];
      }
      if (replies.length >= expected) {
        socket.end();
        const error = replies.find((r) => r instanceof Error);
        if (error) reject(error);
        else resolve(replies[replies.length - 1]);
      }
    });
    socket.on('error', reject);
  });
}
