/**
 * The child's side of every start method (CPython's spawn.py `_main` + `BaseProcess._bootstrap`):
 * receive the process object, import what it needs, run it, flush, and exit with Python's code.
 */
import module from 'node:module';
import { Socket, type SocketConstructorOpts } from 'node:net';
import { isMainThread, workerData } from 'node:worker_threads';
import { markChild, setInheritedTracker, whileBootstrapping } from './childMark.js';

markChild();
// Compiling the library (and the task's modules) is most of a child's start-up after Node's own
// (docs/benchmarks.md, issue 14 item 1): on Node >= 22.1 the child keeps V8's compiled code on disk
// and the next child reuses it, as Python reuses its .pyc files. NODE_DISABLE_COMPILE_CACHE=1
// turns it off; Node 20 has no such cache and compiles every time.
(module as { enableCompileCache?: () => unknown }).enableCompileCache?.();

interface StartMessage {
  type: 'start';
  graph: unknown;
  handleCount: number;
  modules?: string[];
  /** forkserver: the sockets came over the descriptor channel (fd FIRST_HANDLE_FD), not over IPC. */
  fdChannel?: boolean;
  /** The child's name (see setProvisionalName). */
  name?: string;
  /** The parent's process.argv (see runChild). */
  argv?: string[];
  /** The parent's resource tracker. */
  tracker?: string | null;
  /** The parent's current directory when it started this child (see ORIGINAL_DIR). */
  cwd?: string;
}

/** A socket the parent handed over. It reads nothing until its Connection asks: the parent may
 * still hold the same socket, and a read ahead would take the parent's messages. */
function inheritedSocket(fd: number): Socket {
  return new Socket({ fd, readable: true, writable: true, pauseOnCreate: true } as SocketConstructorOpts);
}

async function main(): Promise<void> {
  if (!isMainThread) {
    const { runChild } = await import('./child.js');
    const { start } = workerData as { start: StartMessage };
    setInheritedTracker(start.tracker);
    endWhenIdle(await runChild(start.graph, 'thread', [], () => true, start.name, start.argv));
    return;
  }

  // A child whose parent is gone exits by itself: the kernel kills it (Linux, through the addon)
  // even while it runs synchronous code, and the IPC channel closing ends it otherwise.
  const expectedParent = Number(process.env.MP_PARENT_PID);
  if (expectedParent > 0) {
    const { tryLoadNative } = await import('../native.js');
    if (tryLoadNative()?.setParentDeathSignal(9, expectedParent) === false) process.exit(1);
  }
  process.on('disconnect', () => process.exit(1));
  process.channel?.unref();
  const parentPid = process.ppid;
  const parentAlive = () => process.ppid === parentPid && process.connected;

  const forkserver = process.argv.indexOf('--mp-forkserver');
  const preloadFailures = new Map<string, unknown>();
  if (forkserver >= 0) {
    // A warm child: import the preload modules now, then wait to be handed a process object.
    const preload = JSON.parse(process.argv[forkserver + 1] ?? '[]') as string[];
    await import('./child.js');
    await whileBootstrapping(async () => {
      for (const module of preload) {
        try {
          await import(module);
        } catch (error) {
          // Reported if the process handed to this child needs the module, as spawn would.
          preloadFailures.set(module, error);
        }
      }
    });
    // The parent may have exited while this child warmed up: then it just goes, as on 'disconnect'
    // (without the callback, the closed channel is an unhandled 'error' with a stack on stderr).
    process.send?.({ type: 'ready' }, (error: Error | null) => {
      if (error) process.exit(1);
    });
  }
  const handles: Socket[] = [];
  const start = await new Promise<StartMessage>((resolve) => {
    const onMessage = (message: { type: string; graph?: unknown; handleCount?: number }, handle?: unknown) => {
      if (message.type === 'handle' && handle instanceof Socket) handles.push(handle);
      else if (message.type === 'start') {
        process.off('message', onMessage);
        resolve(message as unknown as StartMessage);
      }
    };
    process.on('message', onMessage);
    // While waiting, the channel is what keeps this process alive.
    process.channel?.ref();
  });
  process.channel?.unref();
  setInheritedTracker(start.tracker);
  if (forkserver < 0) {
    const { FIRST_HANDLE_FD } = await import('./spawn.js');
    for (let i = 0; i < start.handleCount; i++) handles.push(inheritedSocket(FIRST_HANDLE_FD + i));
  } else if (start.fdChannel) {
    const { FIRST_HANDLE_FD } = await import('./spawn.js');
    const { closeSync } = await import('node:fs');
    if (start.handleCount > 0) {
      const { loadNative } = await import('../native.js');
      for (const fd of loadNative().recvFds(FIRST_HANDLE_FD, start.handleCount)) handles.push(inheritedSocket(fd));
    }
    closeSync(FIRST_HANDLE_FD);
  }
  if (start.cwd) process.chdir(start.cwd);
  const { runChild, reportStartFailure } = await import('./child.js');
  for (const module of start.modules ?? []) {
    if (preloadFailures.has(module)) process.exit(reportStartFailure(preloadFailures.get(module)));
  }
  endWhenIdle(await runChild(start.graph, 'process', handles, parentAlive, start.name, start.argv));
}

/**
 * The target has returned and the exit finalizers have run (pools terminated, proxies released,
 * managers shut down, queues flushed). Python's child then waits for its non-daemon threads and children (`threading._shutdown`,
 * the join of `_exit_function`); a Node program ends when its event loop is empty. So the child ends
 * as a Node program does: once what the target left on the event loop (timers, servers, sockets of
 * its own, non-daemon children) is done. The library's own objects are Python's daemon threads: they
 * hold the loop only while somebody waits on them, so an idle Queue, Pipe, Listener or proxy never
 * keeps a child alive (test/idleChild.test.ts); `terminate()` and the parent's exit still end it.
 */
function endWhenIdle(code: number): void {
  process.exitCode = code;
}

main().catch((error) => {
  process.stderr.write(`multiprocessing-ts bootstrap failed: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(1);
});
