#!/usr/bin/env node
// The second half of `npm run build`: replaces tsc's one-file-per-module JavaScript in dist/ with an
// esbuild bundle split into shared chunks (the .d.ts files stay as tsc wrote them).
//
// Why: every child process and thread imports the library again, and Node's ESM loader pays per
// file (resolve, open, read, link): 66 modules cost a child about 50 ms of CPU more than the same
// code in a few chunks (docs/benchmarks.md, issue 14 item 1).
//
// What must hold, and how:
//  - one instance of each module's state per process, whichever entries a program imports: all
//    entries are built together with code splitting, so a module reached from two entries lives in
//    one shared chunk that both import;
//  - files located relative to `import.meta.url` (packageFiles.ts: the bootstrap, the tracker, the
//    addon at ../native/; reduction.ts's `./<home>.js`; tasks named by their module's URL): chunks are
//    written at the top of dist/, where those modules were, and the build fails if code that reads
//    `import.meta.url` lands in a file of a subdirectory;
//  - every file something starts or imports by path keeps its path: the `exports` subpaths, the bin,
//    the child bootstrap and the tracker's program, and the modules reduction.ts imports by name when
//    a graph holds one of their kinds (its `reducerHomes`).
import { build } from 'esbuild';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');
const staging = join(root, 'dist.bundling');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

/** Paths under dist/ (without `dist/`) of the modules that must keep their path. */
function entryModules() {
  const entries = new Set(['backends/bootstrap.js', 'backends/resourceTrackerMain.js']);
  for (const target of Object.values(pkg.exports)) {
    const file = typeof target === 'string' ? target : target.default;
    if (file.startsWith('./dist/')) entries.add(file.slice('./dist/'.length));
  }
  for (const file of Object.values(pkg.bin ?? {})) entries.add(file.replace(/^\.\/dist\//, ''));
  // reduction.ts imports `./${home}.js` for the kinds a graph holds: the table's values.
  const reduction = readFileSync(join(root, 'src/reduction.ts'), 'utf8');
  const table = /const reducerHomes[^=]*=\s*\{([\s\S]*?)\n\};/.exec(reduction)?.[1];
  const homes = [...(table ?? '').matchAll(/:\s*'([\w/]+)'/g)].map((m) => m[1]);
  if (homes.length === 0) throw new Error('scripts/bundle.mjs: reducerHomes not found in src/reduction.ts');
  for (const home of homes) entries.add(`${home}.js`);
  return [...entries];
}

function* files(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* files(path);
    else yield path;
  }
}

const entries = entryModules();
for (const entry of entries) {
  if (!existsSync(join(dist, entry))) throw new Error(`scripts/bundle.mjs: dist/${entry} is missing (run tsc first)`);
}
rmSync(staging, { recursive: true, force: true });
/**
 * Entries that import the library themselves, lazily: the bootstrap marks its process as a child
 * before anything else is loaded, and the tracker's program needs a few modules only.
 */
const lean = new Set(['backends/bootstrap.js', 'backends/resourceTrackerMain.js']);
/**
 * Every other entry, and every target of a dynamic import(), is a wrapper that re-exports its
 * module and also imports the facade. Code splitting gives each combination of entries (dynamic
 * imports count as entries) that reach a module a chunk of its own: with every entry reaching
 * every module, the library is one shared chunk beside a few small ones (12 files on an import
 * of the facade instead of 37 without the wrappers, 66 modules unbundled).
 */
const wrappers = {
  name: 'entry-wrappers',
  setup(b) {
    b.onResolve({ filter: /^mp-entry:/ }, (args) => ({ path: args.path.slice('mp-entry:'.length), namespace: 'mp-entry' }));
    b.onResolve({ filter: /^\./ }, (args) => {
      if (args.kind !== 'dynamic-import' || args.namespace !== 'file') return undefined;
      const target = relative(dist, join(dirname(args.importer), args.path));
      return target.startsWith('..') ? undefined : { path: target, namespace: 'mp-entry' };
    });
    b.onLoad({ filter: /.*/, namespace: 'mp-entry' }, (args) => {
      const module = JSON.stringify(join(dist, args.path));
      const facade = JSON.stringify(join(dist, 'index.js'));
      // The bin's `#!/usr/bin/env node` stays on its first line.
      const hashbang = /^#!.*\n/.exec(readFileSync(join(dist, args.path), 'utf8'))?.[0] ?? '';
      return { contents: `${hashbang}export * from ${module};\nimport ${module};\nimport ${facade};\n`, resolveDir: dist, loader: 'js' };
    });
  },
};
const result = await build({
  entryPoints: entries.map((entry) => ({ in: lean.has(entry) ? join(dist, entry) : `mp-entry:${entry}`, out: entry.replace(/\.js$/, '') })),
  plugins: [wrappers],
  outdir: staging,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Dependencies (acorn, ioredis) stay imports: they resolve from the package's node_modules.
  packages: 'external',
  // Class and function names are part of the behaviour (process names, reprs, error names).
  keepNames: true,
  // tsc's maps are followed back to src/, which the package ships.
  sourcemap: 'linked',
  sourcesContent: false,
  metafile: true,
  absWorkingDir: root,
  logLevel: 'warning',
});

// Code that reads import.meta.url must sit at the top of dist/ (see above).
const misplaced = Object.entries(result.metafile.outputs)
  .filter(([file]) => file.endsWith('.js') && dirname(relative(staging, join(root, file))) !== '.')
  .filter(([file]) => readFileSync(join(root, file), 'utf8').includes('import.meta.url'))
  .map(([file]) => relative(staging, join(root, file)));
if (misplaced.length > 0) {
  throw new Error(`scripts/bundle.mjs: code that reads import.meta.url was bundled into ${misplaced.join(', ')}; ` +
    'it must live in a chunk at the top of dist/ (import it from a second entry, or list it as an entry)');
}

// keepNames makes esbuild name every function and class at run time (`__name(f, "f")`, a static
// block per class), but only the ones it renamed to avoid a clash (`Queue2`) need it: the others
// already have that name (a declaration's, or the variable's a class expression is assigned to).
// Dropping the redundant calls saves about 5 ms of each worker's and child's import (the static
// blocks especially; docs/benchmarks.md, issue 14 item 1). The lines stay, blank, so the source
// maps still match.
for (const file of Object.keys(result.metafile.outputs).filter((f) => f.endsWith('.js'))) {
  const path = join(root, file);
  const code = readFileSync(path, 'utf8')
    .replace(/^__name\((\w+), "\1"\);$/gm, '')
    .replace(/^(var (\w+) = class(?: extends [^{\n]+)? \{)\n {2}static \{\n {4}__name\(this, "\2"\);\n {2}\}$/gm, '$1\n\n\n');
  writeFileSync(path, code);
}

// tsc's JavaScript gives way to the bundle; its declarations stay.
for (const file of [...files(dist)]) {
  if (/\.js(\.map)?$/.test(file)) rmSync(file);
}
for (const file of [...files(staging)]) renameSync(file, join(dist, relative(staging, file)));
rmSync(staging, { recursive: true, force: true });
const written = Object.keys(result.metafile.outputs).filter((f) => f.endsWith('.js')).length;
console.log(`scripts/bundle.mjs: ${entries.length} entries, ${written} files in dist/`);
