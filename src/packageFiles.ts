/**
 * The package's own files that run on their own, outside the module that imports the package: the
 * child bootstrap (spawn, forkserver and thread children start from it), the resource tracker's
 * program and the native addon. They are found beside this module, in the package's directory.
 *
 * An app bundle (esbuild, webpack, ...) that inlined the package has none of them beside it, and a
 * child started from there could not find what to run: that is said once, clearly, instead of a
 * "Cannot find module" from every child or advice to rebuild the addon.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { NotAvailableError } from './errors.js';

/** `.ts` while the sources run under a TypeScript loader (the tests), `.js` once built. */
export const moduleExtension = import.meta.url.endsWith('.ts') ? '.ts' : '.js';

/** The directory of the library's modules (src/ or dist/; built, every module is bundled into a file
 * of dist/ itself: scripts/bundle.mjs). */
const moduleDir = new URL('./', import.meta.url);

/** Whether `url` is one of the library's own modules (a chunk of dist/, or a file of src/). */
export function isLibraryModule(url: string): boolean {
  return url.startsWith(moduleDir.href);
}

/** Absolute path of `relative` (a path from the package's src/ or dist/ directory, `../native/...`
 * for the addon), which may or may not exist. */
export function packagePath(relative: string): string {
  return fileURLToPath(new URL(relative, moduleDir));
}

/** The entry a child starts from; every start method needs it, so it tells whether the files are here. */
const bootstrapRelative = `backends/bootstrap${moduleExtension}`;

/** Null when the package's files are where they belong; else the error that says what to do. */
export function packageFilesMissing(): NotAvailableError | null {
  const bootstrap = packagePath(bootstrapRelative);
  if (existsSync(bootstrap)) return null;
  return new NotAvailableError(
    `multiprocessing-ts: the package's own files were not found next to ${fileURLToPath(import.meta.url)} ` +
      `(no ${bootstrap}). The package was probably bundled into this file: a bundle cannot hold the files ` +
      'that child processes and threads start from. Leave multiprocessing-ts out of the bundle and install it ' +
      'beside it (esbuild: --external:multiprocessing-ts, with node_modules/multiprocessing-ts next to the ' +
      "bundle); see docs/bundling.md in the package.",
  );
}

/** Absolute path of one of the package's files; throws the bundling error when the package's files are
 * not there. */
export function packageFile(relative: string): string {
  const missing = packageFilesMissing();
  if (missing) throw missing;
  return packagePath(relative);
}

/** The child bootstrap: bootstrap.ts under a TypeScript loader, bootstrap.js once built. */
export function bootstrapPath(): string {
  return packageFile(bootstrapRelative);
}
