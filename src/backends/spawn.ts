/**
 * The 'spawn' start method: a fresh `node` per Process, running the parent's execArgv (so tsx and
 * other loaders carry over) and our bootstrap, which receives the process object over the IPC
 * channel. Sockets the child needs are inherited as extra stdio descriptors, as Python's spawn
 * passes file descriptors.
 */
import type { ChildProcess } from 'node:child_process';
import type { Backend, Popen, StartRequest } from './backend.js';
import { childExecArgv, KeepAlive, ORIGINAL_DIR, signalExitCode } from './backend.js';
import { bootstrapPath } from '../packageFiles.js';
import { nodeChildProcess } from '../util.js';

let executable = process.execPath;

/** Python's `set_executable`: the runtime children are started with. */
export function setExecutable(path: string): void {
  if (typeof path !== 'string' || path.length === 0) throw new TypeError('setExecutable() takes a path');
  executable = path;
}

/** The first stdio slot of a handle passed at spawn: 0-2 are stdio, 3 is the IPC channel. */
export const FIRST_HANDLE_FD = 4;

/** Spawns a child running the bootstrap, with `extraArgs` for it. */
export function spawnBootstrap(extraArgs: string[], handles: ReadonlyArray<StartRequest['handles'][number] | number>): ChildProcess {
  return nodeChildProcess().spawn(executable, [...childExecArgv(), bootstrapPath(), ...extraArgs], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...handles],
    cwd: ORIGINAL_DIR,
    serialization: 'advanced',
    env: { ...process.env, MP_PARENT_PID: String(process.pid) },
  });
}

/** A child process seen from its parent. */
export class ChildPopen implements Popen {
  exitcode: number | null = null;
  readonly exited: Promise<number>;
  private readonly keepAlive: KeepAlive;

  constructor(readonly child: ChildProcess, keepsParentAlive: boolean) {
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        // A warm child that died while waiting in reserve.
        this.exitcode = child.exitCode ?? signalExitCode(child.signalCode!);
        resolve(this.exitcode);
        return;
      }
      child.once('exit', (code, signal) => {
        this.exitcode = code ?? (signal ? signalExitCode(signal) : 1);
        resolve(this.exitcode);
      });
      child.once('error', (error) => {
        // The runtime could not be started at all (a wrong setExecutable path, say).
        if (this.exitcode !== null || child.pid !== undefined) return;
        process.stderr.write(`Could not start ${executable}: ${error.message}\n`);
        this.exitcode = 1;
        resolve(1);
      });
    });
    // The IPC channel never keeps the parent alive; the process handle does, for non-daemons.
    child.channel?.unref();
    this.keepAlive = new KeepAlive(child, keepsParentAlive);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  hold(): () => void {
    return this.keepAlive.hold();
  }

  terminate(): void {
    this.signal('SIGTERM');
  }
  kill(): void {
    this.signal('SIGKILL');
  }
  interrupt(): void {
    this.signal('SIGINT');
  }

  private signal(name: NodeJS.Signals): void {
    if (this.exitcode === null) this.child.kill(name);
  }
}

export const spawnBackend: Backend = {
  method: 'spawn',
  target: 'process',
  start(request: StartRequest): Popen {
    const child = spawnBootstrap([], request.handles);
    child.send({ type: 'start', graph: request.graph, handleCount: request.handles.length, name: request.name, tracker: request.tracker, argv: request.argv, cwd: process.cwd() });
    return new ChildPopen(child, !request.daemon);
  },
};
