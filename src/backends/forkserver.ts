/**
 * The 'forkserver' start method. Node.js cannot fork, so the server's job (handing out a ready
 * interpreter with the preload modules imported) is done by keeping warm children in reserve: each
 * is a spawned bootstrap that has imported `setForkserverPreload` modules and waits for its
 * process object. Starting a Process takes one and spawns its replacement in the background.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync } from 'node:fs';
import type { Socket } from 'node:net';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Backend, Popen, StartRequest } from './backend.js';
import { ChildPopen, spawnBootstrap } from './spawn.js';
import { tryLoadNative } from '../native.js';
import { processAlive } from '../util.js';

let preload: string[] = [];
/** Modules that started processes needed: warm children import them in advance (Python's fork
 * server preloads `__main__`; we preload exactly what spawn would import, learned as we go). */
const learned = new Set<string>();
const reserve: ChildProcess[] = [];
const ready = new WeakSet<ChildProcess>();
/**
 * Our end of each warm child's descriptor channel (an AF_UNIX socket pair; the child's end is its
 * fd 4). Sockets for the child go over it with SCM_RIGHTS, synchronously: Node's IPC channel
 * holds every message after a handle until the child acknowledges the handle, which needs this
 * process's event loop, so a parent that blocks right after start() (recvSync) would never start
 * its child.
 */
const fdChannels = new WeakMap<ChildProcess, number>();
let wanted = 1;
const maxReserve = 4;
// Replacements are spawned a little after a hand-out, so that they do not compete for the CPU with
// the processes just started (on a 2-core machine that competition doubles their start-up).
const REFILL_DELAY_MS = 100;
let refillTimer: NodeJS.Timeout | null = null;
/** Children handed out before they were ready: replacements wait until these have started. */
const booting = new Set<ChildProcess>();
let refillWanted = false;

/** Python's `set_forkserver_preload`: modules every warm child imports before it is handed out. */
export function setForkserverPreload(modules: string[]): void {
  if (!Array.isArray(modules) || !modules.every((m) => typeof m === 'string')) {
    throw new TypeError('module_names must be a list of strings');
  }
  // A module named by a path is found from the caller's current directory, as Python's forkserver
  // finds preload modules on its parent's sys.path; a package name is left to the import.
  preload = modules.map((m) => (/^\.{0,2}\//.test(m) ? pathToFileURL(resolve(m)).href : m));
  // Warm children made with the old list are stale.
  for (const child of reserve.splice(0)) child.kill('SIGKILL');
}

function closeFdChannel(child: ChildProcess): void {
  const fd = fdChannels.get(child);
  if (fd === undefined) return;
  fdChannels.delete(child);
  closeSync(fd);
}

function spawnWarm(): ChildProcess {
  const modules = [...new Set([...preload, ...learned])];
  const pair = tryLoadNative()?.socketpair() ?? null;
  let child: ChildProcess;
  try {
    child = spawnBootstrap(['--mp-forkserver', JSON.stringify(modules)], pair ? [pair[1]] : []);
  } finally {
    if (pair) closeSync(pair[1]);
  }
  if (pair) fdChannels.set(child, pair[0]);
  child.channel?.unref();
  child.unref();
  child.on('message', (message: { type?: string }) => {
    if (message?.type !== 'ready') return;
    ready.add(child);
    if (booting.delete(child) && booting.size === 0 && refillWanted) scheduleRefill();
  });
  child.once('exit', () => {
    closeFdChannel(child);
    if (booting.delete(child) && booting.size === 0 && refillWanted) scheduleRefill();
    const i = reserve.indexOf(child);
    if (i >= 0) reserve.splice(i, 1);
  });
  return child;
}

/**
 * The next warm child of the reserve that is still alive. One killed while it waited (a Ctrl-C
 * reaches the whole process group) leaves the reserve only when its exit is reported, a turn of
 * the event loop later: handed out before that, the process given to it would never run.
 */
function takeWarm(): ChildProcess | undefined {
  for (let child = reserve.shift(); child; child = reserve.shift()) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined && processAlive(child.pid)) return child;
    closeFdChannel(child);
  }
  return undefined;
}

function refill(): void {
  while (reserve.length < wanted) reserve.push(spawnWarm());
}

function scheduleRefill(): void {
  if (booting.size > 0) {
    // Processes just handed out are still starting up: do not compete with them for the CPU.
    refillWanted = true;
    return;
  }
  refillWanted = false;
  if (refillTimer) return;
  refillTimer = setTimeout(() => {
    refillTimer = null;
    refill();
  }, REFILL_DELAY_MS);
  refillTimer.unref();
}

/** Modules warm children should import in advance (a pool's task modules, say). Warm children
 * made before a module was learned would import it when started: they are replaced. */
export function learnModules(modules: Iterable<string>): void {
  let fresh = false;
  for (const module of modules) {
    if (!learned.has(module)) {
      learned.add(module);
      fresh = true;
    }
  }
  if (fresh && reserve.length > 0) {
    for (const stale of reserve.splice(0)) stale.kill('SIGKILL');
    scheduleRefill();
  }
}

/** Keeps at least `n` warm children ready (a pool asks for as many as it has workers). */
export function ensureReserve(n: number): void {
  wanted = Math.max(wanted, n);
  refill();
}

function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('a socket passed to a forkserver child has no descriptor');
  return fd;
}

export const forkserverBackend: Backend = {
  method: 'forkserver',
  target: 'process',
  start(request: StartRequest): Popen {
    // A warm child that lacks a module imports it when started, which is no worse than spawn: use
    // it rather than wait for a new one.
    const child = takeWarm() ?? spawnWarm();
    learnModules(request.modules);
    // Processes are started faster than one warm child gets ready: keep more in reserve.
    if (!ready.has(child)) {
      wanted = Math.min(maxReserve, wanted + 1);
      booting.add(child);
    }
    // The warm child is already running: its sockets go over its descriptor channel, or else over
    // the IPC channel (then the start message waits for the child to acknowledge them).
    const fdChannel = fdChannels.get(child);
    if (fdChannel !== undefined) {
      if (request.handles.length > 0) tryLoadNative()!.sendFds(fdChannel, request.handles.map(socketFd));
      closeFdChannel(child);
    } else {
      for (const handle of request.handles) child.send({ type: 'handle' }, handle, { keepOpen: true });
    }
    child.send({
      type: 'start', graph: request.graph, handleCount: request.handles.length, modules: request.modules, name: request.name, argv: request.argv,
      fdChannel: fdChannel !== undefined, tracker: request.tracker, cwd: process.cwd(),
    });
    scheduleRefill();
    return new ChildPopen(child, !request.daemon);
  },
};
