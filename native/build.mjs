// Builds the addon from native/*.c with node-gyp (no download: it uses the running Node.js's own
// headers) and copies it to native/prebuilds/<platform>-<arch>/, with the hash of the sources it was
// built from (test/native.test.ts checks that the committed prebuild is not stale).
//   node native/build.mjs            build + copy to prebuilds
//   node native/build.mjs --local    build only (native/build/Release)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/** sha256 over the files the binary is built from. */
export function sourceHash() {
  const h = createHash('sha256');
  for (const f of ['binding.gyp', 'mp_native.c']) h.update(f).update('\0').update(readFileSync(join(here, f)));
  return h.digest('hex');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = ['rebuild', '-C', here];
  // Node's own headers next to the executable (e.g. /usr/include/node): node-gyp downloads nothing.
  const prefix = dirname(dirname(process.execPath));
  if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include/node/node_api.h'))) args.push(`--nodedir=${prefix}`);
  const gyp = require.resolve('node-gyp/bin/node-gyp.js');
  const r = spawnSync(process.execPath, [gyp, ...args], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
  if (!process.argv.includes('--local')) {
    const dir = join(here, 'prebuilds', `${process.platform}-${process.arch}`);
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(here, 'build/Release/mp_native.node'), join(dir, 'mp_native.node'));
    writeFileSync(join(dir, 'mp_native.node.sha256'), sourceHash() + '\n');
    console.log(`prebuild written to ${dir}`);
  }
}
