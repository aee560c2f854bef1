/**
 * `ctx.Process({ target, args })` on the redis context: the start method that runs the child on a
 * worker program (the Popen of backends/backend.ts). The process object travels as a task of a
 * stream of the context's own; the worker starts a local process for it and reports its pid, then
 * its exit code; `terminate()`/`kill()` reach that worker on its channel.
 */
import * as v8 from 'node:v8';
import { ValueError } from '../errors.js';
import type { Backend, Popen, StartRequest } from '../backends/backend.js';
import { keepAlive } from './client.js';
import { type RedisSettings } from './settings.js';
import { portableRef } from './naming.js';
import { Producer } from './producer.js';
import { EXITED, FAILED, PROCESS, STARTED, TASK_HEADER, workerChannel, writeTaskHeader, type ResultRecord } from './stream.js';

/** A redis process seen from its parent. */
class RedisPopen implements Popen {
  pid: number | undefined = undefined;
  exitcode: number | null = null;
  readonly exited: Promise<number>;
  private settle!: (code: number) => void;
  /** The worker running it (its consumer name), once it started. */
  private worker: string | null = null;
  private pendingSignal: 'terminate' | 'kill' | 'interrupt' | null = null;

  constructor(
    private readonly backend: RedisBackend,
    readonly seq: number,
  ) {
    this.exited = new Promise((resolve) => (this.settle = resolve));
  }

  started(pid: number, worker: string): void {
    this.pid = pid;
    this.worker = worker;
    if (this.pendingSignal) this.send(this.pendingSignal);
  }

  exit(code: number): void {
    if (this.exitcode !== null) return;
    this.exitcode = code;
    this.settle(code);
  }

  private send(signal: 'terminate' | 'kill' | 'interrupt'): void {
    if (this.exitcode !== null) return;
    if (this.worker) this.backend.signal(this.worker, this.seq, signal);
    else this.pendingSignal = signal; // not started yet: sent when it does
  }

  terminate(): void {
    this.send('terminate');
  }
  kill(): void {
    this.send('kill');
  }
  interrupt(): void {
    this.send('interrupt');
  }
  hold(): () => void {
    const release = keepAlive();
    void this.exited.then(release);
    return release;
  }
}

/** The backend of one redis context: its processes share one stream while any runs. */
export class RedisBackend implements Backend {
  readonly method = 'redis' as const;
  readonly target = 'process' as const;
  readonly remote = { name: portableRef, accepts: (kind: string) => kind.startsWith('redis.') };
  private producer: Producer | null = null;
  private readonly running = new Map<number, RedisPopen>();
  private seq = 0;

  constructor(private readonly settings: RedisSettings) {}

  start(request: StartRequest): Popen {
    if (request.handles.length > 0 || request.transfer.length > 0) {
      throw new ValueError(`Can't start ${request.name} on the redis context: its arguments hold sockets or ports of this machine.`);
    }
    const graph = v8.serialize(request.graph);
    const entry = Buffer.allocUnsafe(TASK_HEADER + graph.length);
    const seq = ++this.seq;
    writeTaskHeader(entry, { mode: PROCESS, seq, fnId: 0, timeout: null });
    graph.copy(entry, TASK_HEADER);
    const popen = new RedisPopen(this, seq);
    this.running.set(seq, popen);
    this.producer ??= new Producer(this.settings, {
      onResult: (record) => this.onResult(record),
      onFatal: (error) => this.onFatal(error),
    });
    this.producer.send(seq, entry, false);
    return popen;
  }

  private onResult(record: ResultRecord): void {
    const popen = this.running.get(record.seq);
    if (!popen) return;
    if (record.status === STARTED) {
      const { pid, worker } = JSON.parse(record.body.toString()) as { pid: number; worker: string };
      popen.started(pid, worker);
      return;
    }
    let code = 1;
    if (record.status === EXITED) code = (JSON.parse(record.body.toString()) as { exitcode: number }).exitcode;
    else if (record.status === FAILED) process.stderr.write(`Process ${record.seq} could not start on its worker\n`);
    this.finish(popen, code);
  }

  private onFatal(error: Error): void {
    process.stderr.write(`The redis context cannot run processes: ${error.message}\n`);
    for (const popen of [...this.running.values()]) this.finish(popen, 1);
  }

  private finish(popen: RedisPopen, code: number): void {
    this.running.delete(popen.seq);
    popen.exit(code);
    if (this.running.size === 0 && this.producer) {
      // Nothing runs: the stream goes, and nothing is left in Redis.
      void this.producer.close();
      this.producer = null;
    }
  }

  /** Passes `terminate()`/`kill()` to the worker that runs the process. */
  signal(worker: string, seq: number, signal: string): void {
    this.producer?.publish(workerChannel(worker), `${this.producer.keys.id} ${seq} ${signal}`);
  }
}
