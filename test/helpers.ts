// Shared test helpers: running whole programs, waiting for pids to vanish, one describe per method.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';

export const startMethods = ['spawn', 'forkserver', 'thread'] as const;

export interface ProgramResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `node --import tsx <file> ...args` to completion (killed after `timeoutMs`); `runtime`
 * replaces the node binary and its flags (a built .cjs program runs on plain node). */
export function runProgram(
  file: string | URL,
  args: string[],
  timeoutMs = 30_000,
  env: Record<string, string> = {},
  runtime: { node: string; execArgv: string[] } = { node: process.execPath, execArgv: process.execArgv },
): Promise<ProgramResult> {
  const path = file instanceof URL ? fileURLToPath(file) : file;
  return new Promise((resolve, reject) => {
    const child = spawn(runtime.node, [...runtime.execArgv, path, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`program ${path} ${args.join(' ')} timed out; stdout: ${stdout} stderr: ${stderr}`));
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Whether `pid` runs. A zombie (exited, not yet reaped: orphans here are re-parented to a PID 1
 * that may not reap them) counts as gone. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Resolves once `pid` no longer exists; rejects after `timeoutMs`. Polls the OS: no other way
 * to observe a process that is not our child. */
export async function waitForPidGone(pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL');
      throw new Error(`process ${pid} still alive after ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves once the thread `tid` of this process sleeps in poll(2) (its /proc wait channel);
 * rejects after `timeoutMs`. Polls the OS: nothing else says that a thread is inside a system call. */
export async function waitForThreadInPoll(tid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const wchan = (): string => {
    try {
      return readFileSync(`/proc/self/task/${tid}/wchan`, 'utf8');
    } catch {
      return '';
    }
  };
  while (!/^do_sys_poll|poll_schedule/.test(wchan())) {
    if (Date.now() > deadline) throw new Error(`thread ${tid} not in poll() after ${timeoutMs} ms (wait channel: ${wchan() || 'none'})`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * An async input of `1, 2, 3` whose `2` comes only once `open()` is called: an imap over it has
 * nothing in flight between its first result and `open()` (a pool closed in between must still
 * read and run the rest).
 */
export function gatedInput(): { input: AsyncIterable<number>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  async function* input() {
    yield 1;
    await opened;
    yield 2;
    yield 3;
  }
  return { input: input(), open };
}

/**
 * An imap over gatedInput() that is closed between its first result and the rest: the first
 * result, then the others, read once the pool was closed and the gate opened.
 */
export async function imapAcrossClose<R>(
  pool: { imap(fn: (x: number) => R, input: AsyncIterable<number>, chunksize: number): AsyncIterator<R>; close(): void },
  fn: (x: number) => R,
): Promise<{ first: R; rest: R[] }> {
  const { input, open } = gatedInput();
  const it = pool.imap(fn, input, 1);
  const first = (await it.next()).value as R;
  pool.close();
  open();
  const rest: R[] = [];
  for (let r = await it.next(); !r.done; r = await it.next()) rest.push(r.value);
  return { first, rest };
}
