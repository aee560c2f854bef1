// Every subpath of package.json "exports" has the names of Python's module `__all__` (reference §0,
// camelCased) and those docs/api.md lists for it; the root's namespaces are the same modules.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as mp from '../src/index.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  exports: Record<string, string | { types: string; default: string }>;
};

/** The source module behind a subpath: ./dist/x.js is built from src/x.ts. */
function sourceOf(subpath: string): URL {
  const target = pkg.exports[subpath]!;
  const file = typeof target === 'string' ? target : target.default;
  return new URL(`../${file.replace(/^\.\/dist\//, 'src/').replace(/\.js$/, '.ts')}`, import.meta.url);
}

// Python's errors and misc names of the root; the factories and functions of its __all__.
const root = [
  // __all__ of multiprocessing (3.13), camelCased
  'Array', 'AuthenticationError', 'Barrier', 'BoundedSemaphore', 'BufferTooShort', 'Condition', 'Event', 'JoinableQueue',
  'Lock', 'Manager', 'Pipe', 'Pool', 'Process', 'ProcessError', 'Queue', 'RLock', 'RawArray', 'RawValue', 'Semaphore',
  'SimpleQueue', 'TimeoutError', 'Value', 'activeChildren', 'cpuCount', 'currentProcess', 'freezeSupport',
  'getAllStartMethods', 'getContext', 'getLogger', 'getStartMethod', 'logToStderr', 'parentProcess', 'setExecutable',
  'setForkserverPreload', 'setStartMethod',
  // docs/api.md: every class and function it shows, the errors of rule 8, the namespaces
  'Listener', 'Client', 'Connection', 'SharedMemory', 'ShareableList', 'SharedMemoryManager', 'BaseManager', 'SyncManager',
  'ThreadPool', 'AsyncResult', 'processCpuCount', 'isMain', 'task', 'serializable', 'Empty', 'Full', 'BrokenBarrierError',
  'RemoteError', 'PicklingError', 'WorkerLostError', 'EOFError', 'OSError', 'KeyError', 'IndexError', 'UnpicklingError',
  'ValueError', 'NotAvailableError', 'connection', 'managers', 'pool', 'sharedMemory', 'sharedctypes', 'dummy',
];
// Not here, on purpose: `allow_connection_pickling` (undocumented in Python, a no-op there too) and
// `reducer` (Python's pickler module): nothing in JavaScript to map them to.

const expected: Record<string, string[]> = {
  '.': root,
  './connection': [
    'Client', 'Listener', 'Pipe', 'wait', // __all__
    'Connection', 'deliverChallenge', 'answerChallenge', 'addressType', 'arbitraryAddress', // public, unlisted
  ],
  // Token is a type here (a plain record that proxies carry), checked by the compiler.
  './managers': ['BaseManager', 'SyncManager', 'BaseProxy', 'SharedMemoryManager', 'Server', 'RemoteError', 'Namespace', 'Value', 'AutoProxy', 'MakeProxyType', 'Manager'],
  './pool': ['Pool', 'ThreadPool', 'AsyncResult', 'IMapIterator'],
  './shared-memory': ['SharedMemory', 'ShareableList', 'SharedMemoryManager'],
  './sharedctypes': ['RawValue', 'RawArray', 'Value', 'Array', 'copy', 'synchronized'],
  './dummy': [
    'Process', 'currentProcess', 'activeChildren', 'freezeSupport', 'Lock', 'RLock', 'Semaphore', 'BoundedSemaphore',
    'Condition', 'Event', 'Barrier', 'Queue', 'Manager', 'Pipe', 'Pool', 'JoinableQueue', // __all__
    'Namespace', 'Array', 'Value', 'connection',
  ],
};
// multiprocessing.dummy.connection's __all__.
const dummyConnection = ['Client', 'Listener', 'Pipe'];

/** The root's namespace for each subpath: the same module. */
const namespaces: Record<string, unknown> = {
  './connection': mp.connection,
  './managers': mp.managers,
  './pool': mp.pool,
  './shared-memory': mp.sharedMemory,
  './sharedctypes': mp.sharedctypes,
  './dummy': mp.dummy,
};

describe('subpaths (package.json "exports") against Python\'s __all__ and docs/api.md', () => {
  it('every subpath is audited, and its module exists', () => {
    const subpaths = Object.keys(pkg.exports).filter((s) => s !== './package.json');
    assert.deepEqual(subpaths.sort(), Object.keys(expected).sort());
    for (const subpath of subpaths) assert.ok(existsSync(fileURLToPath(sourceOf(subpath))), `${subpath}: ${sourceOf(subpath)}`);
  });

  for (const [subpath, names] of Object.entries(expected)) {
    it(`multiprocessing-ts${subpath === '.' ? '' : subpath.slice(1)} has ${names.length} names${subpath === '.' ? '' : ', as its root namespace'}`, async () => {
      const module = (await import(sourceOf(subpath).href)) as Record<string, unknown>;
      const missing = names.filter((name) => module[name] === undefined);
      assert.deepEqual(missing, [], `missing from ${subpath}`);
      const namespace = namespaces[subpath] as Record<string, unknown> | undefined;
      if (namespace) for (const name of names) assert.equal(namespace[name], module[name], `the root's namespace for ${subpath} has the same ${name}`);
      if (subpath === './dummy') {
        const connection = module.connection as Record<string, unknown>;
        assert.deepEqual(dummyConnection.filter((name) => connection[name] === undefined), [], 'missing from dummy.connection');
      }
    });
  }
});
