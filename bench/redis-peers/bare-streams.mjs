// The "bare Redis Streams" anchor, re-run here so that it shares the machine's load with
// ours: a producer XADDs one entry per task (or per chunk of items), two consumer processes read
// with XREADGROUP COUNT 100, compute 2x in place and reply with XADD + XACK in one MULTI; the
// producer XREADs the replies. No claims, no code shipping, no failure handling.
//
//   node bare-streams.mjs consumer URL STREAM        (started by bareStreams(), stopped by SIGTERM)
import { fork } from 'node:child_process';
import { Redis } from 'ioredis';

const GROUP = 'g';

async function consumer(url, stream) {
  const r = new Redis(url);
  const name = `c${process.pid}`;
  for (;;) {
    const reply = await r.xreadgroup('GROUP', GROUP, name, 'COUNT', 100, 'BLOCK', 1000, 'STREAMS', stream, '>');
    if (!reply) continue;
    const multi = r.multi();
    const ids = [];
    for (const [id, fields] of reply[0][1]) {
      const items = JSON.parse(fields[1]);
      multi.xadd(`${stream}:results`, '*', 'r', JSON.stringify(Array.isArray(items) ? items.map((x) => 2 * x) : 2 * items));
      ids.push(id);
    }
    multi.xack(stream, GROUP, ...ids);
    await multi.exec();
  }
}

/** Starts two consumers; returns run(tasks) (each task a number or an array of numbers) and stop(). */
export async function bareStreams(url) {
  const r = new Redis(url);
  const stream = `bench:bare:${process.pid}`;
  await r.xgroup('CREATE', stream, GROUP, '$', 'MKSTREAM');
  const children = [0, 1].map(() => fork(new URL(import.meta.url), ['consumer', url, stream], { stdio: 'inherit' }));
  let last = '0-0';
  const run = async (tasks) => {
    const p = r.pipeline();
    for (const t of tasks) p.xadd(stream, '*', 't', JSON.stringify(t));
    await p.exec();
    let got = 0;
    while (got < tasks.length) {
      const reply = await r.xread('COUNT', 10_000, 'BLOCK', 120_000, 'STREAMS', `${stream}:results`, last);
      if (!reply) throw new Error('bare streams: no replies');
      got += reply[0][1].length;
      last = reply[0][1][reply[0][1].length - 1][0];
    }
  };
  const stop = async () => {
    await Promise.all(children.map((c) => new Promise((res) => {
      c.once('exit', res);
      c.kill('SIGTERM');
    })));
    await r.del(stream, `${stream}:results`);
    r.disconnect();
  };
  return { run, stop };
}

if (process.argv[2] === 'consumer') await consumer(process.argv[3], process.argv[4]);
