/**
 * Python's resource_tracker: one tracker process per process tree unlinks the named resources
 * (shared memory segments) that the tree created and never unlinked, once every process of the tree
 * that talked to it has gone, even after SIGKILL.
 *
 * The first process that registers something starts the tracker (src/backends/resourceTrackerMain.ts)
 * and hands it, at spawn, one end of a socketpair plus a Unix socket that is already listening, so
 * the tracker exists for the kernel before its code even runs: every write here is a synchronous
 * `writeSync` to a connected socket, like Python's `os.write` to the tracker's pipe. The socket's
 * path goes to the library's own children in their start message (backends/childMark.ts), and they
 * connect to the same tracker; it is never put in the environment, so a program started with
 * child_process gets a tracker of its own, as in Python. A process that dies closes its
 * connection; when no connection is left, the tracker warns about what is still registered
 * (Python's message), unlinks it and exits.
 *
 * The tracker never keeps the user's program alive (the connection is a raw fd, the child is
 * unref'ed and detached, so Ctrl-C does not reach it).
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ValueError } from './errors.js';
import { loadNative } from './native.js';
import { inheritedTracker } from './backends/childMark.js';
import { ORIGINAL_DIR } from './backends/backend.js';
import { moduleExtension, packageFile } from './packageFiles.js';
import { nodeChildProcess } from './util.js';

/** Resource types the tracker knows how to clean up. */
export type ResourceType = 'shared_memory' | 'file';

let fd: number | null = null;
let pid: number | null = null;
/** The tracker this process started (to learn its exit status, for tests). */
let child: ChildProcess | null = null;
let broken = false;
/** The address of the tracker this process started (null before, and once it has died). */
let started: string | null = null;
/** A tracker that died is not looked for at the inherited address again. */
let inheritedGone = false;

/** The address of this process tree's tracker: the one started here, or the parent's. */
export function treeTrackerAddress(): string | null {
  return started ?? (inheritedGone ? null : inheritedTracker());
}

/** Node options that make the tracker's module loadable (a TypeScript loader such as tsx). */
function loaderArgs(): string[] {
  const out: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (['--import', '--require', '-r', '--loader', '--experimental-loader'].includes(a) && i + 1 < argv.length) {
      out.push(a, argv[++i]!);
    } else if (/^--(import|require|loader|experimental-loader)=/.test(a) || /^--experimental-(strip|transform)-types$/.test(a)) {
      out.push(a);
    }
  }
  return out;
}

function trackerEntry(): string {
  return packageFile(`backends/resourceTrackerMain${moduleExtension}`);
}

/**
 * The tracker's environment: the program's without `NODE_EXTRA_CA_CERTS`. Node 20 reads and parses
 * that file as it starts (about 50 ms of CPU here; Node 22 waits for the first TLS connection), and
 * the tracker, which makes no connection of that kind, starts at the moment a pool's first workers
 * do and competes with them for the CPU (docs/benchmarks.md, issue 14 item 1).
 */
function trackerEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
}

/** Starts a tracker and returns this process's connection to it. */
function start(): number {
  const native = loadNative();
  const dir = mkdtempSync(join(tmpdir(), 'mp-rt-'));
  const address = join(dir, 'tracker.sock');
  const listenFd = native.unixListen(address, 512);
  let mine: number, theirs: number;
  try {
    [mine, theirs] = native.socketpair();
  } catch (err) {
    closeSync(listenFd);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  try {
    child = nodeChildProcess().spawn(process.execPath, [...loaderArgs(), trackerEntry(), address], {
      stdio: ['ignore', 'ignore', 'inherit', theirs, listenFd],
      env: trackerEnv(),
      // Where the loader flags resolve, whatever the program's current directory is now.
      cwd: ORIGINAL_DIR,
      detached: true,
    });
    child.on('error', (err) => process.emitWarning(`resource_tracker: could not start: ${err.message}`));
    child.unref();
    pid = child.pid ?? null;
  } catch (err) {
    closeSync(mine);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  } finally {
    closeSync(theirs);
    closeSync(listenFd);
  }
  started = address;
  return mine;
}

/** Connects this process to its tree's tracker, starting one if there is none; returns its address.
 * Python's `resource_tracker.ensure_running()`. A child process should call it early (bootstrap) so
 * that the tracker waits for it too. */
export function ensureRunning(): string {
  if (fd === null) {
    const address = treeTrackerAddress();
    if (address) {
      try {
        fd = loadNative().unixConnect(address);
        pid = null;
      } catch {
        fd = null; // that tracker has gone: start our own
        forgetTracker();
      }
    }
    if (fd === null) fd = start();
  }
  return treeTrackerAddress()!;
}

/** The tracker's pid when this process started it, else null. */
export function trackerPid(): number | null {
  return fd === null ? null : pid;
}

/** The address of this process's tracker, or null when it has not connected to one. */
export function trackerAddress(): string | null {
  return fd === null ? null : treeTrackerAddress();
}

/** The tree's tracker is gone: the next registration starts a new one. */
function forgetTracker(): void {
  started = null;
  inheritedGone = true;
}

/** Python's limit on one message to the tracker (a pipe write of up to 512 bytes is atomic). */
const MAX_MESSAGE = 512;

function send(cmd: 'REGISTER' | 'UNREGISTER', name: string, rtype: ResourceType): void {
  if (/[\t\n\0]/.test(name)) throw new ValueError(`invalid resource name ${JSON.stringify(name)}`);
  const line = `${cmd}\t${rtype}\t${name}\n`;
  const length = Buffer.byteLength(line);
  if (length > MAX_MESSAGE) {
    throw new ValueError(
      `msg too long: ${cmd} of a ${rtype} named with ${Buffer.byteLength(name)} bytes makes a ${length}-byte message to the ` +
        `resource tracker, more than ${MAX_MESSAGE}; use a shorter name`,
    );
  }
  if (broken) return;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      ensureRunning();
      writeSync(fd!, line);
      return;
    } catch (err) {
      // The tracker died (EPIPE): forget it and start a new one once, as Python does.
      if (fd !== null) {
        try {
          closeSync(fd);
        } catch {}
        if (attempt === 0) process.emitWarning('resource_tracker: process died unexpectedly, relaunching.  Some resources might leak.');
      }
      fd = null;
      forgetTracker();
      if (attempt === 1) {
        broken = true;
        process.emitWarning(`resource_tracker: cannot reach the tracker (${(err as Error).message}); leaked resources will not be cleaned up`);
      }
    }
  }
}

/** Asks the tracker to unlink `name` if it is still registered when the whole tree has exited. */
export function register(name: string, rtype: ResourceType = 'shared_memory'): void {
  send('REGISTER', name, rtype);
}

/** Forgets `name` (it was unlinked, or handed over to someone else). */
export function unregister(name: string, rtype: ResourceType = 'shared_memory'): void {
  send('UNREGISTER', name, rtype);
}

/**
 * @internal Python's private `ResourceTracker._stop()`, for tests: closes this process's connection
 * and, when this process started the tracker, resolves with its exit status once it has gone (it
 * goes when nothing else of the tree is connected): 0 clean, 1 something had leaked, 2 a leak could
 * not be cleaned up.
 */
export async function _stop(): Promise<number | null> {
  const tracker = child;
  if (fd !== null) closeSync(fd);
  fd = null;
  pid = null;
  child = null;
  started = null;
  if (!tracker) return null;
  if (tracker.exitCode !== null || tracker.signalCode !== null) return tracker.exitCode;
  tracker.ref();
  return new Promise((resolve) => tracker.once('exit', (code) => resolve(code)));
}
