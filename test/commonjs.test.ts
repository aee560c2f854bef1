// CommonJS (issue 11, item 7): a .cjs program that require()s the built package starts a Process
// given a Queue, and a Pool, on every start method. Runs on this test's Node (CI's), or on the
// binary in MP_TEST_NODE (MP_TEST_NODE=/path/to/node22 node --import tsx --test test/commonjs.test.ts).
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { runProgram, startMethods } from './helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const node = process.env.MP_TEST_NODE || process.execPath;

/** Newest modification time under `dir` (ms). */
function newest(dir: string): number {
  let t = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) t = Math.max(t, statSync(`${entry.parentPath ?? entry.path}/${entry.name}`).mtimeMs);
  }
  return t;
}

describe(`CommonJS: a .cjs program on the built package (${node})`, () => {
  before(() => {
    // The program uses dist/ (CI builds it first): build it when src/ is newer.
    let built = 0;
    try {
      built = statSync(`${root}dist/index.js`).mtimeMs;
    } catch {
      // not built yet
    }
    if (built >= newest(`${root}src`)) return;
    // npm run build's two steps: tsc, then the bundle of dist/ (scripts/bundle.mjs).
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    for (const args of [[tsc, '-p', 'tsconfig.build.json'], ['scripts/bundle.mjs']]) {
      const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
      assert.equal(r.status, 0, `npm run build failed: ${r.stdout}${r.stderr}`);
    }
  });

  for (const method of startMethods) {
    it(`'${method}': a Process given a Queue, and a Pool, with tasks defined in the .cjs file`, { timeout: 180_000 }, async () => {
      const r = await runProgram(new URL('./fixtures/commonjs/program.cjs', import.meta.url), [method], 150_000, {}, { node, execArgv: [] });
      assert.equal(r.code, 0, r.stderr);
      const processClass = { spawn: 'SpawnProcess', forkserver: 'ForkServerProcess', thread: 'ThreadProcess' }[method];
      assert.match(r.stdout, new RegExp(`^hello cjs from ${processClass}-\\d+\\nexitcode 0\\nmap \\[1,4,9\\]\\n$`));
    });
  }
});
