/**
 * The 'forkserver' start method. Node.js cannot fork, so the server's job (handing out a ready
 * interpreter with the preload modules imported) is done by keeping warm children in reserve: each
 * is a spawned bootstrap that has imported `setForkserverPreload` modules and waits for its
 * process object. Starting a Process takes one and spawns its replacement in the background.
 */
import type { ChildProcess } from 'node:child_process';
import type { Backend, Popen, StartRequest } from './backend.js';
import { ChildPopen, spawnBootstrap } from './spawn.js';

import { pathToFileURL } from 'node:url';
import { realpathSync } from 'node:fs';

/** Python's fork server preloads `__main__`; ours imports the entry module (its guarded code does
 * not run there: `isMain()` is false in a child). */
function entryModule(): string[] {
  const entry = process.argv[1];
  if (!entry) return [];
  try {
    return [pathToFileURL(realpathSync(entry)).href];
  } catch {
    return [];
  }
}

let preload: string[] = entryModule();
const reserve: ChildProcess[] = [];
const ready = new WeakSet<ChildProcess>();
let wanted = 1;
const maxReserve = 4;

/** Python's `set_forkserver_preload`: modules every warm child imports before it is handed out. */
export function setForkserverPreload(modules: string[]): void {
  if (!Array.isArray(modules) || !modules.every((m) => typeof m === 'string')) {
    throw new TypeError('module_names must be a list of strings');
  }
  preload = [...entryModule(), ...modules];
  // Warm children made with the old list are stale.
  for (const child of reserve.splice(0)) child.kill('SIGKILL');
}

function spawnWarm(): ChildProcess {
  const child = spawnBootstrap(['--mp-forkserver', JSON.stringify(preload)], []);
  child.channel?.unref();
  child.unref();
  child.on('message', (message: { type?: string }) => {
    if (message?.type === 'ready') ready.add(child);
  });
  child.once('exit', () => {
    const i = reserve.indexOf(child);
    if (i >= 0) reserve.splice(i, 1);
  });
  return child;
}

function refill(): void {
  while (reserve.length < wanted) reserve.push(spawnWarm());
}

/** Keeps at least `n` warm children ready (a pool asks for as many as it has workers). */
export function ensureReserve(n: number): void {
  wanted = Math.max(wanted, n);
  refill();
}

export const forkserverBackend: Backend = {
  method: 'forkserver',
  target: 'process',
  start(request: StartRequest): Popen {
    const child = reserve.shift() ?? spawnWarm();
    // Processes are started faster than one warm child gets ready: keep more in reserve.
    if (!ready.has(child)) wanted = Math.min(maxReserve, wanted + 1);
    // Sockets travel over the IPC channel (SCM_RIGHTS); the warm child is already running.
    for (const handle of request.handles) child.send({ type: 'handle' }, handle, { keepOpen: true });
    child.send({ type: 'start', graph: request.graph, handleCount: request.handles.length });
    setImmediate(refill);
    return new ChildPopen(child, !request.daemon);
  },
};
