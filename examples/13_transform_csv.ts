// A real job: a CPU-heavy transform of a large CSV file, streamed through `pool.imap` with bounded
// memory. Lines are read lazily from the file, transformed in the workers in chunks, and written out
// in input order as their results arrive; the pool reads only a bounded number of lines ahead of
// what has been written, whatever the size of the input.
//
//   node --import tsx examples/13_transform_csv.ts [input.csv [output.csv]]   (default: 5,000 rows it makes)
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import * as mp from 'multiprocessing-ts';

const PROCESSES = 2;
const CHUNKSIZE = 64;

/** Runs in a worker: `id,name,seed` -> `id,name,score`, where the score costs some CPU (key stretching). */
export const transform = mp.task((line: string): string => {
  const [id, name, seed] = line.split(',');
  let digest = Buffer.from(seed!);
  for (let i = 0; i < 200; i++) digest = createHash('sha256').update(digest).digest();
  return `${id},${name!.toUpperCase()},${digest.readUInt32BE(0) % 1000}`;
});

function makeSampleInput(path: string, rows: number): void {
  const lines = ['id,name,seed'];
  for (let i = 0; i < rows; i++) lines.push(`${i},item${i % 97},seed-${i * 7919}`);
  writeFileSync(path, `${lines.join('\n')}\n`);
}

if (mp.isMain(import.meta)) {
  const dir = mkdtempSync(join(tmpdir(), 'mp-csv-'));
  const input = process.argv[2] ?? join(dir, 'input.csv');
  const output = process.argv[3] ?? join(dir, 'output.csv');
  if (!process.argv[2]) makeSampleInput(input, 5_000);
  try {
    let read = 0;
    let written = 0;
    let mostAhead = 0;
    async function* rows(): AsyncGenerator<string> {
      const lines = createInterface({ input: createReadStream(input), crlfDelay: Infinity });
      let header = true;
      for await (const line of lines) {
        if (header || line === '') {
          header = false;
          continue;
        }
        read++;
        mostAhead = Math.max(mostAhead, read - written);
        yield line;
      }
    }

    await using pool = new mp.Pool(PROCESSES);
    const out = createWriteStream(output);
    out.write('id,name,score\n');
    let scoreSum = 0;
    for await (const row of pool.imap(transform, rows(), CHUNKSIZE, { progress: true })) {
      written++;
      scoreSum += Number(row.slice(row.lastIndexOf(',') + 1));
      // Respect the file's back-pressure too: memory stays bounded end to end.
      if (!out.write(`${row}\n`)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');

    // imap reads at most max(4 * chunksize, 64) items per worker ahead of the consumer (docs/pool.md).
    const bound = PROCESSES * Math.max(4 * CHUNKSIZE, 64) + CHUNKSIZE;
    console.log(`${written} rows transformed, score sum ${scoreSum}`);
    console.log(`output sha256 ${createHash('sha256').update(readFileSync(output)).digest('hex').slice(0, 16)}`);
    console.log(`read ahead of the output: at most ${mostAhead <= bound ? `${bound} rows (bounded)` : `${mostAhead} rows, over the bound ${bound}`}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
