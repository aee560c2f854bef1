// Worker programs for the redis tests: real separate `multiprocessing-ts worker` processes (run
// through tsx from src/cli.ts), with their output collected and conditions waited on.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
export const tasksModule = 'test/fixtures/redis/tasks.ts';

export interface WorkerOptions {
  processes?: number;
  context?: 'spawn' | 'forkserver' | 'thread';
  imports?: string[];
  allowSource?: boolean;
  env?: Record<string, string>;
  cwd?: string;
}

export class TestWorker {
  readonly child: ChildProcess;
  output = '';
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: Array<() => void> = [];

  constructor(url: string, options: WorkerOptions = {}) {
    const args = [
      ...process.execArgv.filter((a) => !a.startsWith('--test')), cli, 'worker', '--redis', url,
      '--processes', String(options.processes ?? 1), '--context', options.context ?? 'spawn',
      ...(options.imports ?? [tasksModule]).flatMap((m) => ['--import', m]),
      ...(options.allowSource ? ['--allow-source'] : []),
    ];
    this.child = spawn(process.execPath, args, {
      cwd: options.cwd ?? repoRoot,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const collect = (d: Buffer) => {
      this.output += d;
      for (const w of this.waiters.splice(0)) w();
    };
    this.child.stdout!.on('data', collect);
    this.child.stderr!.on('data', collect);
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => {
      resolve({ code, signal });
      for (const w of this.waiters.splice(0)) w();
    }));
    // Never outlive the test file.
    const kill = () => this.child.kill('SIGKILL');
    process.once('exit', kill);
    void this.exited.then(() => process.off('exit', kill));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Its consumer name in Redis (from its first line). */
  get consumer(): string | null {
    return /^worker (\S+): /m.exec(this.output)?.[1] ?? null;
  }

  /** Waits until its output matches `pattern` (rejects if it exits first or after `ms`). */
  async waitFor(pattern: RegExp, ms = 60_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = pattern.exec(this.output);
      if (m) return m;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`worker ${this.pid} exited before printing ${pattern}:\n${this.output}`);
      }
      if (Date.now() > deadline) throw new Error(`worker ${this.pid} did not print ${pattern} in ${ms} ms:\n${this.output}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 250).unref();
      });
    }
  }

  /** Started: connected and listening for pools. */
  ready(): Promise<RegExpExecArray> {
    return this.waitFor(/^worker \S+: redis/m);
  }

  /** SIGTERM and wait for the exit. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }

  /** SIGKILL (its pool processes leave when their IPC channel closes) and wait for the exit. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }

  get done(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.exited;
  }
}

/** Starts `n` workers and waits until they are ready. */
export async function startWorkers(url: string, n: number, options: WorkerOptions = {}): Promise<TestWorker[]> {
  const workers = Array.from({ length: n }, (_, i) => new TestWorker(url, { ...options, env: { MP_TEST_WORKER: `w${i}`, ...options.env } }));
  await Promise.all(workers.map((w) => w.ready()));
  return workers;
}

export async function stopAll(workers: TestWorker[]): Promise<void> {
  await Promise.all(workers.map((w) => w.stop()));
}

/** Polls (another program's state, Redis) until `check` holds; fails after `ms`. */
export async function until(what: string, check: () => Promise<boolean> | boolean, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
