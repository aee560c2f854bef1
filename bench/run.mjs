// Runs every benchmark (or those named on the command line) one after another and prints their
// tables. `npm run bench` runs this after `npm run build`.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const dir = fileURLToPath(new URL('.', import.meta.url));
const only = process.argv.slice(2);
const scripts = readdirSync(dir)
  .filter((f) => (f.endsWith('.mjs') || f.endsWith('.ts')) && !['run.mjs', 'stats.mjs'].includes(f))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();
for (const script of scripts) {
  console.log(`\n## ${script}`);
  // TypeScript benches run through tsx; .mjs ones run the built package as users do.
  const loader = script.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const result = spawnSync(process.execPath, [...loader, join(dir, script)], { stdio: 'inherit' });
  if (result.status !== 0) console.log(`(${script} exited with ${result.status ?? result.signal})`);
}
