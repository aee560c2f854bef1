// CPython's _TestImportStar (a plain TestCase): every module's `__all__` names exist. Ours: every
// subpath of package.json's "exports" (mapped to its source module) has the names of the Python
// module it mirrors (fixtures/pythonAll.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type * as managers from '../../src/managers.js';
import { pythonAll } from './fixtures/pythonAll.js';

// Python's Token is a class; ours is a type: the type checker checks this one.
export type TokenExists = managers.Token;

describe('_TestImportStar', () => {
  it('test_import', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      exports: Record<string, string | { default: string }>;
    };
    const subpaths = Object.keys(pkg.exports).filter((s) => s !== './package.json');
    assert.deepEqual(subpaths.sort(), Object.keys(pythonAll).sort(), 'every subpath mirrors a Python module');
    const missing: string[] = [];
    for (const subpath of subpaths) {
      const target = pkg.exports[subpath]!;
      const built = typeof target === 'string' ? target : target.default;
      // ./dist/x.js is built from ./src/x.ts
      const source = new URL(`../../${built.replace(/^\.\/dist\//, 'src/').replace(/\.js$/, '.ts')}`, import.meta.url);
      const mod = (await import(source.href)) as Record<string, unknown>;
      for (const name of pythonAll[subpath]!.names) {
        if (mod[name] === undefined) missing.push(`${subpath} (${pythonAll[subpath]!.module}): ${name}`);
      }
    }
    assert.deepEqual(missing, []);
  });
});
