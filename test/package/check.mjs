// Checks the package as a user meets it: `npm pack`, installed into a scratch project, then
//  - the consumer programs of consumer/ (ESM, CommonJS, and on Nodes with type stripping a .ts entry
//    run with no loader), each on every start method, on every Node given;
//  - consumer/types.ts type-checked with skipLibCheck false under each TypeScript (5.9, 7) and
//    @types/node (20, 26) of the matrix;
//  - the shipped files: no `any` and no @internal members in the .d.ts, source maps whose sources are
//    in the package, LICENSE/README/examples/docs present; publint and @arethetypeswrong/cli;
//  - docs/bundling.md's esbuild recipe (bundle/), and the error a bundle that inlined the package gets.
//
//   node test/package/check.mjs [--node PATH]...
//
// Without --node: this Node and, when .ci/tools is installed (`npm ci --prefix .ci/tools`), Node 22
// and 24. The steps that need .ci/tools (TypeScript 7, @types/node 26, publint, attw, esbuild) are
// skipped without it, except under CI=true, where a missing tool fails the run.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const tools = join(root, '.ci/tools/node_modules');
const strict = Boolean(process.env.CI);
const TIMEOUT_MS = 240_000;

const nodes = [];
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--node') nodes.push(resolve(process.argv[++i]));
  else throw new Error(`unknown argument ${process.argv[i]} (usage: check.mjs [--node PATH]...)`);
}
if (nodes.length === 0) {
  nodes.push(process.execPath);
  for (const v of ['node22', 'node24']) if (existsSync(join(tools, v, 'bin/node'))) nodes.push(join(tools, v, 'bin/node'));
}

let passed = 0;
let failed = 0;
let skipped = 0;
function report(ok, what, detail = '') {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? `\n${detail.trimEnd().replace(/^/gm, '     | ')}` : ''}`);
}
function skip(what, why) {
  if (strict) return report(false, what, `${why} (CI=true: .ci/run installs .ci/tools)`);
  skipped++;
  console.log(`skip ${what}: ${why}`);
}
function tool(path, what) {
  const full = join(tools, path);
  if (existsSync(full)) return full;
  skip(what, `${relative(root, full)} is not installed (npm ci --prefix .ci/tools)`);
  return null;
}

function run(cmd, args, options = {}) {
  const started = performance.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: TIMEOUT_MS, ...options });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`;
  return { ok: r.status === 0, status: r.status ?? r.signal, stdout: r.stdout ?? '', output, seconds };
}
const npm = (args, cwd) => run(process.platform === 'win32' ? 'npm.cmd' : 'npm', args, { cwd });

// ---- the tarball, installed as a user installs it ------------------------------------------------
const scratch = mkdtempSync(join(tmpdir(), 'mp-package-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

const packed = npm(['pack', '--pack-destination', scratch, '--json'], root);
if (!packed.ok) {
  report(false, 'npm pack', packed.output);
  process.exit(1);
}
const packInfo = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('[')))[0];
const tarball = join(scratch, packInfo.filename);
const shipped = new Set(packInfo.files.map((f) => f.path));
report(true, `npm pack: ${packInfo.filename}, ${shipped.size} files, ${(packInfo.size / 1024).toFixed(0)} KiB`);

const project = join(scratch, 'app');
mkdirSync(project);
writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'mp-consumer', private: true }, null, 2));
const installed = npm(['install', '--no-audit', '--no-fund', tarball], project);
report(installed.ok, 'npm install <tarball> into a fresh project', installed.ok ? '' : installed.output);
if (!installed.ok) process.exit(1);
cpSync(join(here, 'consumer'), project, { recursive: true });
cpSync(join(here, 'bundle'), join(project, 'bundle'), { recursive: true });
const pkgDir = join(project, 'node_modules/multiprocessing-ts');

// ---- what is shipped ------------------------------------------------------------------------------
for (const file of ['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'examples/run.ts', 'docs/bundling.md',
  'native/prebuilds/linux-x64/mp_native.node', 'src/index.ts']) {
  report(shipped.has(file), `shipped: ${file}`);
}
for (const name of ['12_hash_tree', '13_transform_csv', '14_crawler', '15_manager_dict']) report(shipped.has(`examples/${name}.ts`), `shipped: examples/${name}.ts`);

function* walk(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else yield path;
  }
}
const declarations = [...walk(join(pkgDir, 'dist'))].filter((f) => f.endsWith('.d.ts'));
const anyUses = [];
const internals = [];
for (const file of declarations) {
  const text = readFileSync(file, 'utf8');
  // Comments blanked out (keeping line breaks, for line numbers): `any` in prose is fine.
  const code = text.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, (c) => c.replace(/[^\n]/g, ' ')).split('\n');
  text.split('\n').forEach((line, i) => {
    const where = `${relative(pkgDir, file)}:${i + 1}: ${line.trim()}`;
    if (/(^|[^\w$.'"`])any\b(?!['"`])/.test(code[i])) anyUses.push(where);
    // Members marked @internal are stripped (stripInternal); a constructor's parameter properties stay
    // as parameters, which TypeScript keeps.
    if (/@internal/.test(line) && !/^\s*\/\*\* @internal \*\/ _?\w+: /.test(line)) internals.push(where);
  });
}
report(anyUses.length === 0, `no \`any\` in the ${declarations.length} shipped .d.ts files`, anyUses.join('\n'));
report(internals.length === 0, 'no @internal members in the shipped .d.ts files', internals.join('\n'));

const unmapped = [];
for (const map of [...walk(join(pkgDir, 'dist'))].filter((f) => f.endsWith('.map'))) {
  for (const source of JSON.parse(readFileSync(map, 'utf8')).sources) {
    const target = resolve(dirname(map), source);
    if (!existsSync(target)) unmapped.push(`${relative(pkgDir, map)} -> ${source}`);
  }
}
report(unmapped.length === 0, 'every source map points at a file shipped in the package', unmapped.slice(0, 10).join('\n'));

// ---- the consumer programs on every Node --------------------------------------------------------
const methods = ['spawn', 'forkserver', 'thread'];
for (const node of nodes) {
  const version = run(node, ['-p', 'process.version + " " + Boolean(process.features.typescript)']).stdout.trim();
  const [v, typeStripping] = version.split(' ');
  const major = Number(v.slice(1).split('.')[0]);
  const programs = [['esm', 'esm.mjs'], ['cjs', 'cjs.cjs']];
  // Node 22 strips types too, but does not parse `await using`, which a TypeScript user writes.
  if (major >= 24) {
    if (typeStripping === 'true') programs.push(['ts', 'ts/main.ts']);
    else report(false, `Node ${v}: type stripping`, 'process.features.typescript is false on Node 24');
  }
  for (const [kind, file] of programs) {
    const r = run(node, [file], { cwd: project });
    const want = methods.map((m) => `${kind} ${m} ok`).join('\n');
    const good = r.ok && r.stdout.trim() === want;
    report(good, `Node ${v}: ${kind} program (${file}): Pool, Process + Queue, Lock on ${methods.join(', ')} (${r.seconds} s)`,
      good ? '' : `exit ${r.status}\n${r.output.slice(-3000)}`);
  }
}

// ---- the type matrix --------------------------------------------------------------------------------
const compilers = [['TypeScript 5.9', join(root, 'node_modules/typescript/bin/tsc')], ['TypeScript 7', tool('typescript7/bin/tsc', 'TypeScript 7')]];
const typings = [['@types/node 20', join(root, 'node_modules/@types/node')], ['@types/node 26', tool('types-node26', '@types/node 26')]];
const typesLink = join(project, 'node_modules/@types/node');
mkdirSync(dirname(typesLink), { recursive: true });
for (const [typesName, typesDir] of typings) {
  if (!typesDir) continue;
  rmSync(typesLink, { recursive: true, force: true });
  symlinkSync(typesDir, typesLink);
  const typesVersion = JSON.parse(readFileSync(join(typesDir, 'package.json'), 'utf8')).version;
  for (const [tsName, tsc] of compilers) {
    if (!tsc) continue;
    const tsVersion = run(process.execPath, [tsc, '--version']).stdout.trim();
    const r = run(process.execPath, [tsc, '-p', project]);
    report(r.ok, `types: ${tsName} (${tsVersion}) with ${typesName} (${typesVersion}), skipLibCheck false (${r.seconds} s)`, r.ok ? '' : r.output);
  }
}

// ---- linters on the tarball -------------------------------------------------------------------------
const publint = tool('publint/src/cli.js', 'publint');
if (publint) {
  const r = run(process.execPath, [publint, 'run', tarball, '--strict']);
  report(r.ok, 'publint --strict on the tarball', r.ok ? '' : r.output);
}
const attw = tool('@arethetypeswrong/cli/dist/index.js', '@arethetypeswrong/cli');
if (attw) {
  // The package is ESM only: CommonJS programs load it with Node's require(esm) (Node >= 20.19,
  // 22.12), which cjs.cjs runs for real above; node10 resolution predates `exports`.
  const r = run(process.execPath, [attw, '--profile', 'esm-only', '--no-color', tarball]);
  report(r.ok, '@arethetypeswrong/cli --profile esm-only on the tarball', r.ok ? '' : r.output);
}

// ---- bundling: docs/bundling.md's recipe and the error without it --------------------------------------
const esbuild = tool('esbuild/bin/esbuild', 'esbuild');
if (esbuild) {
  const build = (out, extra) => run(esbuild, ['bundle/app.mjs', '--bundle', '--platform=node', '--format=esm', `--outfile=${out}`, '--log-level=warning', ...extra], { cwd: project });
  const external = build('out/app.mjs', ['--external:multiprocessing-ts']);
  const r = external.ok ? run(process.execPath, ['out/app.mjs'], { cwd: project }) : external;
  const want = methods.flatMap((m) => [`${m} pool 2,4,6`, `${m} process 42`]).join('\n');
  const good = r.ok && r.stdout.trim() === want;
  report(good, `esbuild recipe (--external:multiprocessing-ts): Pool and Process on ${methods.join(', ')} (${r.seconds} s)`,
    good ? '' : `exit ${r.status}\n${r.output.slice(-3000)}`);

  const inlined = build('out/inlined.mjs', []);
  for (const method of methods) {
    const bad = inlined.ok ? run(process.execPath, ['out/inlined.mjs', method], { cwd: project, timeout: 60_000 }) : inlined;
    const said = /NotAvailableError: multiprocessing-ts: the package's own files were not found next to .*inlined\.mjs/.test(bad.output);
    report(!bad.ok && said && !/Cannot find module|node-gyp/.test(bad.output),
      `a bundle that inlined the package: ${method} says its files were not found next to the bundle`,
      said ? '' : `exit ${bad.status}\n${bad.output.slice(-3000)}`);
  }
}

console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exitCode = failed ? 1 : 0;
