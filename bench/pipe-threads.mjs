// What bounds a blocking round trip over a Pipe between two threads (issue 12's thread row of
// bench/connections.mjs): 64 B echoes with send()/recvSync() on both sides, against the same
// ping-pong made of bare addon calls (writeSocket, then readSocket of the 4-byte header and of the
// body, as a shared end reads) between two threads on one socketpair, with no library code.
// Each row also gives the CPU of the whole process and its context switches per round trip
// (getrusage): voluntary ones are sleeps in the kernel.
//
// Run: npm run build && node bench/pipe-threads.mjs
// Env: BENCH_PIPE_S (seconds per row, 2), BENCH_HOG=1 (a busy process beside the bench: a third
//      runnable thread on 2 cores, the machine "not quiet").
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import os from 'node:os';
import { Worker, isMainThread, workerData } from 'node:worker_threads';
import * as mp from 'multiprocessing-ts';

const SECONDS = Number(process.env.BENCH_PIPE_S ?? 2);
const WARM_UP = 5000;
const PAYLOAD = new Uint8Array(64).fill(1);
/** A frame as `send(PAYLOAD)` writes it: 4-byte length, dumps' one-byte tag, 64 bytes. */
const FRAME = Buffer.concat([Buffer.from([0, 0, 0, 65, 3]), Buffer.from(PAYLOAD)]);

/** Echoes with recvSync until null. */
export const echoSync = mp.task((conn) => {
  for (let o = conn.recvSync(); o !== null; o = conn.recvSync()) conn.send(o);
  conn.close();
});

function addon() {
  return createRequire(import.meta.url)(`../native/prebuilds/${process.platform}-${process.arch}/mp_native.node`);
}

/** Runs `roundTrip` for SECONDS after a warm-up; round trips/s, µs each, CPU µs and switches per round trip. */
function measure(name, roundTrip) {
  for (let i = 0; i < WARM_UP; i++) roundTrip();
  const r0 = process.resourceUsage();
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < SECONDS * 1000) {
    for (let i = 0; i < 100; i++) roundTrip();
    n += 100;
  }
  const seconds = (performance.now() - t0) / 1000;
  const r1 = process.resourceUsage();
  const per = (a, b) => ((b - a) / n).toFixed(3);
  return [name, Math.round(n / seconds).toLocaleString('en-US'), ((1e6 * seconds) / n).toFixed(2),
    per(r0.userCPUTime + r0.systemCPUTime, r1.userCPUTime + r1.systemCPUTime),
    per(r0.voluntaryContextSwitches, r1.voluntaryContextSwitches), per(r0.involuntaryContextSwitches, r1.involuntaryContextSwitches)];
}

async function library(method) {
  const ctx = mp.getContext(method);
  const [a, b] = ctx.Pipe();
  const p = new ctx.Process({ target: echoSync, args: [b] });
  p.start();
  b.close();
  try {
    a.send('hello'); // the first exchange is awaited: a child that never starts fails the join below
    await a.recv();
    return measure(`library, ${method === 'thread' ? 'threads' : 'processes'}`, () => {
      a.send(PAYLOAD);
      if (a.recvSync().length !== PAYLOAD.length) throw new Error('echo returned another length');
    });
  } finally {
    a.send(null);
    await p.join(10);
    if (p.exitcode === null) p.kill();
    a.close();
  }
}

async function bare() {
  const native = addon();
  const [mine, theirs] = native.socketpair();
  const worker = new Worker(new URL(import.meta.url), { workerData: { bareEchoFd: theirs } });
  await new Promise((resolve) => worker.once('online', resolve));
  const into = Buffer.alloc(65536);
  try {
    return measure('bare addon calls, threads', () => {
      native.writeSocket(mine, FRAME, true);
      for (let got = 0; got < FRAME.length;) got += native.readSocket(mine, into, -1, [], false);
    });
  } finally {
    native.writeSocket(mine, Buffer.from([0, 0, 0, 0]), true); // an empty frame stops the echo
    await new Promise((resolve) => worker.once('exit', resolve));
  }
}

/** The bare echo's thread: header, then body, then the same frame back. */
function bareEcho(fd) {
  const native = addon();
  const header = Buffer.alloc(4);
  const body = Buffer.alloc(65536);
  for (;;) {
    for (let got = 0; got < 4;) got += native.readSocket(fd, header.subarray(got), -1, [], false);
    const size = header.readInt32BE(0);
    if (size === 0) return;
    for (let got = 0; got < size;) got += native.readSocket(fd, body.subarray(got, size), -1, [], false);
    native.writeSocket(fd, FRAME, true);
  }
}

// This module also runs in the library's thread child (for echoSync), with its own workerData.
if (!isMainThread && typeof workerData?.bareEchoFd === 'number') bareEcho(workerData.bareEchoFd);
else if (isMainThread && mp.isMain(import.meta)) {
  const hog = process.env.BENCH_HOG === '1'
    ? spawn(process.execPath, ['-e', 'for (;;);'], { stdio: 'ignore' })
    : null;
  try {
    console.log(`${os.cpus().length} cores, Node ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}` +
      `${hog ? ', with a busy process beside' : ''}; ${SECONDS} s per row, 64 B echoes`);
    const rows = [await bare(), await library('thread'), await library('spawn')];
    console.log('| ping-pong | round trips/s | µs | CPU µs per rt | voluntary switches per rt | involuntary per rt |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    for (const row of rows) console.log(`| ${row.join(' | ')} |`);
    console.log(`load average at the end ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  } finally {
    hog?.kill();
  }
}
