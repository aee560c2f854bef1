/**
 * The 'thread' start method: a worker_threads Worker per Process. True parallelism in one OS
 * process; SharedArrayBuffers and MessagePorts reach the child as themselves.
 */
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

interface TsxManifest {
  exports: { './esm/api': { import: { default: string } } };
}
import { KeepAlive, keyboardInterruptReport, signalExitCode, type Backend, type Popen, type StartRequest } from './backend.js';
import { bootstrapPath } from '../packageFiles.js';
import { tryLoadNative } from '../native.js';


/**
 * Node 20 does not run `--import` loaders in workers, so a worker of a program run through tsx
 * registers tsx itself before importing anything written in TypeScript.
 */
function tsxApiUrl(): string | undefined {
  const underTsx = import.meta.url.endsWith('.ts') || process.execArgv.some((a) => /(^|[/\\=])tsx\b/.test(a));
  if (!underTsx) return undefined;
  for (const base of [pathToFileURL(`${process.cwd()}/`).href, import.meta.url]) {
    try {
      // The ESM flavour of tsx's API: require.resolve would give the CommonJS one.
      const manifestPath = createRequire(base).resolve('tsx/package.json');
      const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as TsxManifest;
      const entry = manifest.exports['./esm/api'].import.default;
      return pathToFileURL(join(dirname(manifestPath), entry)).href;
    } catch {
      // Try the next place.
    }
  }
  return undefined;
}

const workerEntry = `
const { workerData } = require('node:worker_threads');
(async () => {
  if (workerData.tsxApi) (await import(workerData.tsxApi)).register();
  await import(workerData.bootstrap);
})().catch((error) => { process.stderr.write(String(error && error.stack || error) + '\\n'); process.exit(1); });
`;

let cachedTsx: string | undefined | null = null;

class ThreadPopen implements Popen {
  exitcode: number | null = null;
  readonly exited: Promise<number>;
  private forcedCode: number | null = null;
  private readonly keepAlive: KeepAlive;
  /** The worker's id (kept: `worker.threadId` is -1 once the thread has stopped). */
  private readonly threadId: number;

  constructor(private readonly worker: Worker, keepsParentAlive: boolean, private readonly name: string) {
    this.threadId = worker.threadId;
    this.exited = new Promise((resolve) => {
      worker.on('error', (error) => {
        // An error that escaped the process's own handling, as Python prints a child's traceback.
        process.stderr.write(`${(error as Error)?.stack ?? String(error)}\n`);
      });
      worker.once('exit', (code) => {
        if (this.forcedCode !== null) tryLoadNative()?.forgetThread(this.threadId);
        this.exitcode = this.forcedCode ?? code;
        resolve(this.exitcode);
      });
    });
    this.keepAlive = new KeepAlive(worker, keepsParentAlive);
  }

  get pid(): number {
    return process.pid;
  }

  hold(): () => void {
    return this.keepAlive.hold();
  }

  /** A worker has no signals: it is stopped, and reports the code the signal would have given.
   * terminate() stops its JavaScript; a wait in a system call of the addon (a recvSync) is ended
   * too, with an EINTR that the stopped JavaScript never sees. */
  private stop(code: number): void {
    if (this.exitcode !== null || this.forcedCode !== null) return;
    this.forcedCode = code;
    void this.worker.terminate();
    tryLoadNative()?.interruptThread(this.threadId);
  }
  terminate(): void {
    this.stop(signalExitCode('SIGTERM'));
  }
  kill(): void {
    this.stop(signalExitCode('SIGKILL'));
  }
  /** Python's KeyboardInterrupt ends the child with exit code 1 and its report (a worker gets no
   * signal: the report is written here, on the stderr the thread shares). */
  interrupt(): void {
    if (this.exitcode !== null || this.forcedCode !== null) return;
    process.stderr.write(keyboardInterruptReport(this.name));
    this.stop(1);
  }
}

export const threadBackend: Backend = {
  method: 'thread',
  target: 'thread',
  start(request: StartRequest): Popen {
    if (cachedTsx === null) cachedTsx = tsxApiUrl();
    const worker = new Worker(workerEntry, {
      eval: true,
      workerData: {
        tsxApi: cachedTsx,
        bootstrap: pathToFileURL(bootstrapPath()).href,
        start: { graph: request.graph, handleCount: 0, name: request.name, tracker: request.tracker, argv: request.argv },
      },
      transferList: request.transfer,
    });
    return new ThreadPopen(worker, !request.daemon, request.name);
  },
};
