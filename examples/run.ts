// Runs every example and compares its output with the expected output kept beside it
// (`NN_name.ts` + `NN_name.expected`). `npm run examples` runs this.
// An expected file whose first line is `# any order` is compared line by line as a multiset, for
// examples whose processes print in whatever order they run (as Python's own output varies), and an
// expected line written `re:<regex>` matches any line the regex matches (a process name, say).
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const dir = fileURLToPath(new URL('.', import.meta.url));
const only = process.argv.slice(2);
const examples = readdirSync(dir)
  .filter((f) => /^\d\d_.*\.ts$/.test(f))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();

function lineMatches(expected: string, actual: string): boolean {
  return expected.startsWith('re:') ? new RegExp(`^${expected.slice(3)}$`).test(actual) : expected === actual;
}

function matches(expected: string, actual: string): boolean {
  const anyOrder = expected.startsWith('# any order\n');
  const want = (anyOrder ? expected.slice('# any order\n'.length) : expected).split('\n');
  const got = actual.split('\n');
  if (want.length !== got.length) return false;
  if (!anyOrder) return want.every((line, i) => lineMatches(line, got[i]!));
  const unmatched = [...want];
  return got.every((line) => {
    const i = unmatched.findIndex((w) => lineMatches(w, line));
    if (i < 0) return false;
    unmatched.splice(i, 1);
    return true;
  });
}

let failed = 0;
for (const file of examples) {
  const expectedPath = join(dir, file.replace(/\.ts$/, '.expected'));
  if (!existsSync(expectedPath)) {
    console.log(`FAIL ${file}: no ${expectedPath}`);
    failed++;
    continue;
  }
  const started = performance.now();
  const result = spawnSync(process.execPath, [...process.execArgv, join(dir, file)], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  const ms = (performance.now() - started).toFixed(0);
  const expected = readFileSync(expectedPath, 'utf8');
  if (result.status === 0 && matches(expected, result.stdout)) {
    console.log(`ok   ${file} (${ms} ms)`);
  } else {
    failed++;
    console.log(`FAIL ${file} (exit ${result.status ?? result.signal}, ${ms} ms)`);
    console.log(`--- expected\n${expected}--- got\n${result.stdout}--- stderr\n${result.stderr}`);
  }
}
console.log(`${examples.length - failed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
