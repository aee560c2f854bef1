#!/usr/bin/env node
// Fails when docs/ARCHITECTURE.md's map of src/ and the files in src/ part (issue 12: the written
// map is true): every .ts file of src/ must be named in the map, and every file the map names under
// src/ must exist. A file under a folder may be named by its bare name in that folder's entry
// (`redis/ ... client.ts (...)`), as the map writes them.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const map = readFileSync(join(root, 'docs/ARCHITECTURE.md'), 'utf8');
const named = new Set(map.match(/[\w./-]+\.ts\b/g) ?? []);

function* sourceFiles(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sourceFiles(path);
    else if (entry.name.endsWith('.ts')) yield relative(join(root, 'src'), path);
  }
}

const problems = [];
for (const file of sourceFiles(join(root, 'src'))) {
  if (!named.has(file) && !named.has(basename(file)) && !named.has(`src/${file}`)) {
    problems.push(`src/${file} is not in docs/ARCHITECTURE.md's map`);
  }
}
const folders = new Set(['', ...readdirSync(join(root, 'src'), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name)]);
for (const name of named) {
  const bare = name.replace(/^src\//, '');
  if (bare.includes('..') || name.startsWith('test/') || name.startsWith('bench/') || name.startsWith('examples/')) continue;
  if (![...folders].some((folder) => existsSync(join(root, 'src', folder, bare)))) {
    problems.push(`docs/ARCHITECTURE.md names ${name}, which is not in src/`);
  }
}
for (const problem of problems) console.error(problem);
if (problems.length) process.exit(1);
console.log(`check-architecture-map: docs/ARCHITECTURE.md names all ${[...sourceFiles(join(root, 'src'))].length} files of src/`);
