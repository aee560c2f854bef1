// CPython's _TestSpawnedSysPath (ALLOWED_TYPES: processes; START_METHODS: forkserver and spawn, as
// fork inherits everything; added in 3.13.1 with gh-117378). Python's child gets its parent's
// sys.path, with '' made absolute. Node has no sys.path: the nearest is the current directory, which
// relative paths (and preload modules named by a path) resolve against. Not run on thread: a thread
// shares its process's current directory, as CPython's fork child inherits everything.
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpythonClass, reap } from './harness.js';
import { putCwdAndImport, putImportCount } from './fixtures/sysPath.js';

cpythonClass('_TestSpawnedSysPath', ['processes'], (f) => {
  const modName = 'unique_test_mod';
  let tempDir = '';
  let originalDir = '';
  before(() => {
    originalDir = process.cwd();
    tempDir = mkdtempSync(join(tmpdir(), 'test_sys_path-'));
    // A module that counts its imports in a global, so a child can tell whether it was preloaded.
    writeFileSync(join(tempDir, `${modName}.mjs`), `globalThis.${modName} = (globalThis.${modName} ?? 0) + 1;\n`);
  });
  after(() => {
    rmSync(tempDir, { recursive: true, force: true });
  });

  it('test_forkserver_preload_imports_sys_path', { skip: f.method !== 'forkserver' && 'forkserver only' }, async () => {
    // A preload module named by a path relative to the parent's directory is imported by the warm
    // children: resolved against the parent's directory, not the library's.
    process.chdir(tempDir);
    const q = f.ctx.Queue<number>();
    let p;
    try {
      f.ctx.setForkserverPreload([`./${modName}.mjs`]);
      process.chdir(originalDir);
      p = new f.ctx.Process({ target: putImportCount, args: [q, modName] });
      p.start();
      assert.equal(await q.get({ timeout: 60 }), 1, 'the preloaded module was imported once, before the target ran');
      await p.join(60);
    } finally {
      process.chdir(originalDir);
      f.ctx.setForkserverPreload([]);
      await reap(p);
      q.close();
    }
  });

  it('test_child_sys_path', { skip: f.method === 'thread' && 'n/a on thread: a thread shares its process\'s directory (as fork, which CPython skips)' }, async () => {
    // The child starts in its parent's current directory (CPython's '' in sys.path, made absolute),
    // so a module named by a relative path imports there as in the parent.
    const q = f.ctx.Queue<string | null>();
    const p = new f.ctx.Process({ target: putCwdAndImport, args: [q, `${modName}.mjs`] });
    process.chdir(tempDir);
    try {
      p.start();
    } finally {
      process.chdir(originalDir);
    }
    try {
      assert.equal(await q.get({ timeout: 60 }), tempDir);
      assert.equal(await q.get({ timeout: 60 }), null, 'the child could import the module');
      await p.join(60);
      assert.equal(p.exitcode, 0);
    } finally {
      await reap(p);
      q.close();
    }
  });
});
