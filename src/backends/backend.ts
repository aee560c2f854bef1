/**
 * The interface every start method implements: CPython's Popen objects (popen_spawn_posix.py,
 * popen_forkserver.py). `Process` knows only this; queues, locks and pools never see a backend.
 */
import type { Transferable } from 'node:worker_threads';
import type { Socket } from 'node:net';
import { constants } from 'node:os';
import type { RemoteNaming } from '../reduction.js';

export type StartMethod = 'spawn' | 'forkserver' | 'thread';

/**
 * The directory this program started in (Python's `process.ORIGINAL_DIR`). Children are started
 * there, where the parent's own loader flags (`--import tsx`) resolve, and then move to the
 * parent's current directory of the moment (the start message's `cwd`), as Python's spawn.prepare
 * does.
 */
export const ORIGINAL_DIR = process.cwd();

/** What a started child is, seen from its parent. */
export interface Popen {
  /** The child's pid (the host's pid for a thread). */
  readonly pid: number | undefined;
  /** null while running, then Python's exit code (0, 1, N, or -signal). */
  readonly exitcode: number | null;
  /** Settles with the exit code when the child has exited. */
  readonly exited: Promise<number>;
  terminate(): void;
  kill(): void;
  interrupt(): void;
  /** Keeps the parent's event loop alive until the returned function is called (a pending join of
   * a daemon child must not let the parent exit under it). */
  hold(): () => void;
}

/** The serialised process object and what must travel with it. */
export interface StartRequest {
  /** The payload graph, already reduced (plain structured-clone data). */
  graph: unknown;
  transfer: Transferable[];
  handles: Socket[];
  /** Modules the child will import to find its task and class. */
  modules: string[];
  daemon: boolean;
  /** The child's name: `currentProcess().name` while its modules are imported, before the payload is rebuilt. */
  name: string;
  /** This tree's resource tracker (src/resourceTracker.ts), which the child joins. */
  tracker: string | null;
  /** The parent's `process.argv`, the child's own while its modules are imported (Python's spawn
   * gives its child the parent's `sys.argv`). */
  argv: string[];
}

export interface Backend {
  /** 'redis': the child runs on a worker program of the redis context (src/redis/process.ts). */
  readonly method: StartMethod | 'redis';
  /** Which kind of channel reaches the child: process objects reduce differently for each. */
  readonly target: 'process' | 'thread';
  /** Set when the child runs on another machine: how functions and classes are named there. */
  readonly remote?: RemoteNaming;
  start(request: StartRequest): Popen;
}

/** Reference counting for what keeps the parent alive: non-daemon children always, daemon children
 * while somebody waits for them. */
export class KeepAlive {
  private holds = 0;
  constructor(private readonly handle: { ref(): void; unref(): void }, private readonly always: boolean) {
    this.update();
  }
  hold(): () => void {
    this.holds++;
    this.update();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
      this.update();
    };
  }
  private update(): void {
    if (this.always || this.holds > 0) this.handle.ref();
    else this.handle.unref();
  }
}

const osSignals = constants.signals as Record<string, number>;

/** Exit code for a signal name, Python's `-signal`. */
export function signalExitCode(signal: NodeJS.Signals): number {
  return -(osSignals[signal] ?? 0);
}

/** Python's report of a KeyboardInterrupt that ended a child (its traceback's first and last lines). */
export function keyboardInterruptReport(name: string): string {
  return `Process ${name}:\nKeyboardInterrupt\n`;
}

/** The name of signal number `n` (`SIGKILL` for 9), or undefined for a number that is not one. */
export function signalName(n: number): string | undefined {
  for (const name in osSignals) if (osSignals[name] === n) return name;
  return undefined;
}

/** The child's command line: the parent's runtime flags (loaders such as tsx carry over), minus
 * flags that belong to the parent's own run (the test runner's). */
export function childExecArgv(): string[] {
  const out: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--test' || arg.startsWith('--test-') || arg === '--watch' || arg.startsWith('--watch-')) continue;
    if (arg === '--inspect' || arg.startsWith('--inspect-') || arg.startsWith('--inspect=')) continue;
    out.push(arg);
  }
  return out;
}
