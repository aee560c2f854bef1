/**
 * Running a process object inside the child: rebuild it (importing the task's module, which is when
 * Python's "bootstrapping phase" guard applies), make it `currentProcess()`, call `run()`, run the
 * exit finalizers (queues flush), and report Python's exit code.
 */
import type { Socket } from 'node:net';
import { inspect } from 'node:util';
import { applyLoggingConfig, info } from '../logger.js';
import { setStartMethod } from '../context.js';
import { ParentProcess, Process, runExitFinalizers, setProvisionalName, type ProcessIdentity } from '../process.js';
import { keyboardInterruptReport } from './backend.js';
import { whileBootstrapping } from './childMark.js';
import { rebuild } from '../reduction.js';

interface Payload {
  me: ProcessIdentity;
  classRef: (abstract new (...args: never[]) => Process) | null;
  fields: Record<string, unknown>;
  target: ((...args: unknown[]) => unknown) | null;
  args: unknown[];
  logging: { level: number; toStderr: boolean };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.stack ?? `${error.name}: ${error.message}` : inspect(error);
}

/** The code a target asked for with `process.exitCode` (Node accepts an integer or its string). */
function exitCodeSet(): number {
  const code = Number(process.exitCode ?? 0);
  return Number.isInteger(code) ? code : 0;
}

/**
 * Python 3.14's `interrupt()` (and Ctrl-C in a terminal, which signals the whole process group):
 * SIGINT raises KeyboardInterrupt in the child, which reports it, runs its exit finalizers (queues
 * flush) and ends with exit code 1. A target that listens for SIGINT itself handles it instead (our
 * listener then steps aside, as Python's handler replaces the default one); one that removes every
 * SIGINT listener gets Node's default, death by the signal (-2), as Python's SIG_DFL.
 */
function interruptAsKeyboardInterrupt(name: string): void {
  const onInterrupt = (): void => {
    if (process.listenerCount('SIGINT') > 1) return;
    process.stderr.write(keyboardInterruptReport(name));
    void runExitFinalizers().finally(() => process.exit(1));
  };
  process.on('SIGINT', onInterrupt);
}

/** The child could not rebuild its process object (its module failed to import): exit code 1. */
export function reportStartFailure(error: unknown): number {
  process.stderr.write(`Process could not be started in the child:\n${describe(error)}\n`);
  return 1;
}

export async function runChild(
  graph: unknown,
  target: 'process' | 'thread',
  handles: Socket[],
  parentAlive: () => boolean,
  name?: string,
  argv?: string[],
): Promise<number> {
  let payload: Payload;
  // Module-level code of the task's module sees this process's own name, and the parent's
  // process.argv, as Python's spawn sets the child's name and sys.argv before importing __main__.
  if (name) setProvisionalName(name);
  if (argv) process.argv = [...argv];
  try {
    payload = (await whileBootstrapping(() => rebuild(graph, { target, handles }))) as Payload;
  } catch (error) {
    return reportStartFailure(error);
  }
  const { me } = payload;
  applyLoggingConfig(payload.logging);
  // As Python's spawn.prepare(): the child's default context is the one it was started with, so
  // objects it makes (a Lock in a thread child) live in memory its siblings can use.
  setStartMethod(me.startMethod, { force: true });
  const instance = Object.create((payload.classRef ?? Process).prototype) as Process;
  Object.assign(instance, payload.fields);
  Process.fromPayload(instance, me, payload.target, payload.args);
  Process.becomeCurrent(instance, new ParentProcess(me.parentName, me.parentPid, parentAlive));
  if (target === 'process') interruptAsKeyboardInterrupt(me.name);
  let exitcode = 0;
  try {
    info('child process calling self.run()');
    await instance.run();
    // Python's `sys.exit(code)` ends the process normally (queues flush) with that code; the
    // JavaScript form is `process.exitCode = code` before returning.
    exitcode = exitCodeSet();
  } catch (error) {
    process.stderr.write(`Process ${me.name}:\n${describe(error)}\n`);
    exitcode = 1;
  }
  await runExitFinalizers();
  info('process exiting with exitcode %d', exitcode);
  return exitcode;
}
