#!/usr/bin/env node
/**
 * The `multiprocessing-ts` command. One subcommand so far:
 *
 *   multiprocessing-ts worker --redis URL --import ./dist/tasks.js [--import ...] [--processes N]
 *                             [--context forkserver|spawn|thread] [--allow-source]
 *
 * runs a worker program of the redis context (src/redis/worker.ts) until SIGTERM or SIGINT.
 */
import { parseArgs } from 'node:util';

const usage = `usage: multiprocessing-ts worker --redis URL --import MODULE [--import MODULE ...]
                          [--processes N] [--context forkserver|spawn|thread] [--allow-source]

  --redis URL       redis://[user:password@]host[:port][/db] or rediss://... (default: MP_REDIS_URL)
  --import MODULE   a module whose tasks this worker runs (it runs no others); may be repeated
  --processes N     local worker processes (default: the CPUs this process may use)
  --context C       how they are started (default: forkserver)
  --allow-source    also run functions sent as source text (whoever can write to Redis can then
                    run code here)`;

async function worker(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      redis: { type: 'string' },
      import: { type: 'string', multiple: true },
      processes: { type: 'string' },
      context: { type: 'string', default: 'forkserver' },
      'allow-source': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const url = values.redis ?? process.env.MP_REDIS_URL;
  const imports = values.import ?? [];
  const context = values.context as string;
  const processes = values.processes === undefined ? undefined : Number(values.processes);
  const problem = !url ? 'no --redis URL (nor MP_REDIS_URL)'
    : imports.length === 0 ? 'no --import: a worker runs only tasks of the modules it imports'
    : !['spawn', 'forkserver', 'thread'].includes(context) ? `--context must be spawn, forkserver or thread, not ${context}`
    : processes !== undefined && (!Number.isInteger(processes) || processes < 1) ? `--processes must be an integer >= 1`
    : null;
  if (problem) {
    console.error(`multiprocessing-ts worker: ${problem}\n\n${usage}`);
    return 2;
  }
  const [{ StreamWorker }, { redisSettings }, { processCpuCount }] = await Promise.all([
    import('./redis/worker.js'), import('./redis/settings.js'), import('./process.js'),
  ]);
  // The processes it starts connect the redis objects they receive (a task's queue, lock...) to
  // this Redis (src/redis/objects.ts): handles carry no URL, so that no password travels.
  process.env.MP_REDIS_URL = url;
  const w = StreamWorker.start({
    url: redisSettings({ url }).url,
    imports,
    processes: processes ?? processCpuCount(),
    context: context as 'spawn' | 'forkserver' | 'thread',
    allowSource: values['allow-source'] ?? false,
  });
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    // The first signal stops cleanly (finishing what it holds); a second one leaves at once, and
    // other workers take over what it held after claimIdle.
    if (++signals > 1) process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    void w.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  await w.finished;
  return 0;
}

const [command, ...rest] = process.argv.slice(2);
try {
  if (command === 'worker') process.exitCode = await worker(rest);
  else {
    console.error(command ? `multiprocessing-ts: unknown command '${command}'\n\n${usage}` : usage);
    process.exitCode = 2;
  }
} catch (error) {
  console.error(`multiprocessing-ts ${command}: ${(error as Error).message}`);
  process.exitCode = 1;
}
