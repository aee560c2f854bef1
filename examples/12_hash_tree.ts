// A real job: the SHA-256 of every file under a directory, hashed by a Pool with a progress bar on
// stderr (drawn when it is a terminal), printed as `sha256sum` prints them, in path order.
//
//   node --import tsx examples/12_hash_tree.ts [directory]     (default: a small tree it makes)
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import * as mp from 'multiprocessing-ts';

/** Runs in a worker: reads one file and hashes it. */
export const hashFile = mp.task((path: string): [string, string, number] => {
  const bytes = readFileSync(path);
  return [createHash('sha256').update(bytes).digest('hex'), path, bytes.length];
});

function* filesUnder(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* filesUnder(path);
    else if (entry.isFile()) yield path;
  }
}

/** A small tree with known contents, for `npm run examples`. */
function makeSampleTree(): string {
  const root = mkdtempSync(join(tmpdir(), 'mp-hash-tree-'));
  for (let d = 0; d < 3; d++) {
    mkdirSync(join(root, `dir${d}`));
    for (let f = 0; f < 4; f++) writeFileSync(join(root, `dir${d}`, `file${f}.txt`), `file ${f} of dir ${d}\n`.repeat(1000 * (f + 1)));
  }
  return root;
}

if (mp.isMain(import.meta)) {
  const given = process.argv[2];
  const root = given ?? makeSampleTree();
  try {
    const files = [...filesUnder(root)].sort();
    await using pool = new mp.Pool(2);
    const hashed = await pool.map(hashFile, files, { progress: true });
    let bytes = 0;
    for (const [digest, path, size] of hashed) {
      console.log(`${digest}  ${relative(root, path)}`);
      bytes += size;
    }
    console.log(`${hashed.length} files, ${bytes} bytes`);
  } finally {
    if (!given) rmSync(root, { recursive: true, force: true });
  }
}
