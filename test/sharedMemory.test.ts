import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IndexError, ValueError } from '../src/errors.js';
import { dumps, loads } from '../src/reduction.js';
import { FileExistsError, FileNotFoundError, SharedMemory, ShareableList } from '../src/sharedMemory.js';

const sharedMemoryModule = fileURLToPath(new URL('../src/sharedMemory.ts', import.meta.url));

/** Runs a python3 script; resolves with its stdout. */
function python(script: string, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('python3', ['-c', script], { timeout: timeoutMs }, (err, stdout, stderr) =>
      err ? reject(new Error(`python3 failed: ${err.message}\n${stderr}`)) : resolve(stdout));
  });
}

// Attach without letting python's own resource tracker unlink the segment when python exits
// (before 3.13 every attachment registers; 3.13+ does too unless track=False).
const PY_ATTACH = `
from multiprocessing import shared_memory, resource_tracker
def attach(name):
    shm = shared_memory.SharedMemory(name=name)
    resource_tracker.unregister(shm._name, 'shared_memory')
    return shm
def attach_list(name):
    sl = shared_memory.ShareableList(name=name)
    resource_tracker.unregister(sl.shm._name, 'shared_memory')
    return sl
`;

/** Runs a TypeScript module body in a fresh `node --import tsx`; resolves with stdout lines. */
function nodeChild(body: string, timeoutMs = 30_000): Promise<string[]> {
  const code = `const { SharedMemory, ShareableList } = await import(${JSON.stringify(sharedMemoryModule)});\n${body}`;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (status) => {
      clearTimeout(timer);
      if (status === 0) resolve(out.split('\n').filter(Boolean));
      else reject(new Error(`child exited with ${status}: ${out}`));
    });
  });
}

test('SharedMemory basics: random name, size, repr, a second attachment sees writes', () => {
  const shm = new SharedMemory({ create: true, size: 512 });
  try {
    assert.match(shm.name, /^psm_[0-9a-f]{8}$/);
    assert.equal(shm.size, 512);
    assert.equal(shm.buf.length, 512);
    assert.equal(String(shm), `SharedMemory('${shm.name}', size=512)`);
    assert.ok(existsSync(`/dev/shm/${shm.name}`));
    shm.buf.set([1, 2, 3, 4]);
    const other = new SharedMemory({ name: shm.name, size: 10 }); // size is ignored on attach
    assert.equal(other.size, 512);
    assert.deepEqual([...other.buf.subarray(0, 4)], [1, 2, 3, 4]);
    other.buf[4] = 99;
    assert.equal(shm.buf[4], 99);
    // Atomics work on the mapping (an external ArrayBuffer or a SharedArrayBuffer).
    const words = new Int32Array(shm.buf.buffer, 0, 4);
    Atomics.add(words, 2, 5);
    assert.equal(Atomics.load(new Int32Array(other.buf.buffer, 0, 4), 2), 5);
    other.close();
    other.close(); // idempotent
    assert.throws(() => other.buf, ValueError);
    assert.equal(other.size, 512);
    assert.equal(new SharedMemory(shm.name).size, 512); // a bare string is the name
  } finally {
    shm.unlink();
    shm.close();
  }
  assert.ok(!existsSync(`/dev/shm/${shm.name}`));
  assert.throws(() => new SharedMemory({ name: shm.name }), (e: any) => e instanceof FileNotFoundError && e.code === 'ENOENT');
});

test('SharedMemory with a given name; errors as Python raises them', () => {
  const name = `psm_test_${process.pid}`;
  const shm = new SharedMemory({ name, create: true, size: 64 });
  try {
    assert.equal(shm.name, name);
    assert.throws(() => new SharedMemory({ name, create: true, size: 64 }), (e: any) =>
      e instanceof FileExistsError && e.name === 'FileExistsError' && e.message === `[Errno 17] File exists: '/${name}'`);
  } finally {
    shm.unlink();
  }
  assert.throws(() => shm.unlink(), FileNotFoundError);
  assert.throws(() => new SharedMemory({ size: -1 }), { name: 'ValueError', message: "'size' must be a positive integer" });
  assert.throws(() => new SharedMemory({ create: true, size: 0 }), { name: 'ValueError', message: "'size' must be a positive number different from zero" });
  assert.throws(() => new SharedMemory({ create: true }), { message: "'size' must be a positive number different from zero" });
  assert.throws(() => new SharedMemory(), { name: 'ValueError', message: "'name' can only be None if create=True" });
  assert.throws(() => new SharedMemory({ name: 'psm_a\0b', create: true, size: 8 }), { name: 'ValueError', message: 'embedded null character' });
  assert.throws(() => new SharedMemory({ name: `psm_nothere_${process.pid}` }), FileNotFoundError);
});

test('SharedMemory travels through reduction by name and re-attaches', async () => {
  const shm = new SharedMemory({ create: true, size: 64 });
  try {
    shm.buf[0] = 42;
    const copy = (await loads(dumps({ shm }))) as { shm: SharedMemory };
    assert.ok(copy.shm instanceof SharedMemory);
    assert.notEqual(copy.shm, shm);
    assert.equal(copy.shm.name, shm.name);
    assert.equal(copy.shm.size, 64);
    assert.equal(copy.shm.buf[0], 42);
    copy.shm.buf[1] = 7;
    assert.equal(shm.buf[1], 7);
    const bytes = dumps(shm);
    shm.unlink();
    await assert.rejects(loads(bytes), FileNotFoundError); // Python: unpickling a dead segment
  } finally {
    try {
      shm.unlink();
    } catch {}
  }
});

test('another node process attaches by name and writes; the writes are seen here', async () => {
  const shm = new SharedMemory({ create: true, size: 16 });
  try {
    shm.buf[0] = 5;
    const lines = await nodeChild(`
      const shm = new SharedMemory({ name: ${JSON.stringify(shm.name)}, track: false });
      shm.buf[1] = shm.buf[0] * 2;
      console.log(String(shm));`);
    assert.deepEqual(lines, [`SharedMemory('${shm.name}', size=16)`]);
    assert.equal(shm.buf[1], 10);
  } finally {
    shm.unlink();
  }
});

test('python3 attaches to a segment made here by name, and both see each other\'s writes', async () => {
  const shm = new SharedMemory({ create: true, size: 4096 });
  try {
    shm.buf.set(new TextEncoder().encode('hello from node'));
    const out = await python(`${PY_ATTACH}
shm = attach(${JSON.stringify(shm.name)})
print(shm.size, bytes(shm.buf[:15]).decode())
shm.buf[100:116] = b'hello from pyth!'
shm.close()`);
    assert.equal(out.trim(), '4096 hello from node');
    assert.equal(new TextDecoder().decode(shm.buf.subarray(100, 116)), 'hello from pyth!');
  } finally {
    shm.unlink();
  }
});

test('a segment made by python3 is attached here by name', async () => {
  const name = (await python(`${PY_ATTACH}
shm = shared_memory.SharedMemory(create=True, size=100)
shm.buf[:3] = b'abc'
resource_tracker.unregister(shm._name, 'shared_memory')  # we unlink it
print(shm.name)`)).trim();
  const shm = new SharedMemory({ name, track: false });
  try {
    assert.equal(shm.size, 100);
    assert.equal(new TextDecoder().decode(shm.buf.subarray(0, 3)), 'abc');
  } finally {
    shm.unlink();
  }
});

test('ShareableList: Python\'s format, size, repr, get/set, negative indices, errors', () => {
  const sl = new ShareableList(['ab', 1, 2.5, null, true, new Uint8Array(9).fill(120)]);
  try {
    assert.equal(sl.format, '8sqdxxxxxx?xxxxxxxx?16s');
    assert.equal(sl.shm.size, 174);
    assert.equal(sl.length, 6);
    assert.equal(String(sl), `ShareableList(['ab', 1, 2.5, None, True, b'xxxxxxxxx'], name='${sl.shm.name}')`);
    assert.deepEqual(sl.toArray(), ['ab', 1, 2.5, null, true, new Uint8Array(9).fill(120)]);
    assert.equal(sl.get(-6), 'ab');
    assert.equal(sl.count(1), 2); // 1 == True, as in Python
    assert.equal(sl.index(2.5), 2);
    assert.equal(sl.index(null), 3);
    assert.throws(() => sl.index('zz'), { name: 'ValueError', message: "'zz' not in this container" });
    assert.throws(() => sl.get(6), (e: any) => e instanceof IndexError && e.message === 'index out of range');
    assert.throws(() => sl.get(-7), IndexError);
    assert.throws(() => sl.set(6, 1), (e: any) => e instanceof IndexError && e.message === 'assignment index out of range');

    // Type changes: int -> str that fits in 8 bytes, str -> float.
    sl.set(1, 'fits8byt');
    assert.equal(sl.get(1), 'fits8byt');
    assert.equal(sl.format, '8s8sdxxxxxx?xxxxxxxx?16s');
    sl.set(0, 1.25);
    assert.equal(sl.get(0), 1.25);
    assert.throws(() => sl.set(1, 'nine byte'), { name: 'ValueError', message: 'bytes/str item exceeds available storage' });
    sl.set(-1, new Uint8Array([1, 0, 2]));
    assert.deepEqual(sl.get(-1), new Uint8Array([1, 0, 2]));
    sl.set(2, 2n ** 62n);
    assert.equal(sl.get(2), 2n ** 62n); // beyond Number.MAX_SAFE_INTEGER: a BigInt
    sl.set(2, -(2 ** 40));
    assert.equal(sl.get(2), -(2 ** 40));
    sl.set(3, false);
    assert.equal(sl.get(3), false);
    sl.set(4, null);
    assert.equal(sl.get(4), null);
    assert.throws(() => sl.set(2, 2n ** 63n), RangeError);
    assert.throws(() => sl.set(2, {} as never), TypeError);

    // Attach by name.
    const other = new ShareableList(null, { name: sl.shm.name });
    assert.deepEqual(other.toArray(), sl.toArray());
    other.shm.close();
  } finally {
    sl.shm.unlink();
  }
});

test('ShareableList: UTF-8 capacity, empty list, copy, reduction by name', async () => {
  const s8 = '¡¡¡¡'; // 4 characters, 8 bytes of UTF-8: capacity 8, as Python (which counts characters)
  const s14 = '¡¡¡¡¡¡¡'; // 7 characters, 14 bytes: Python would give 8 bytes and truncate; we give 16
  const sl = new ShareableList([s8, 'x', s14]);
  const empty = new ShareableList([]);
  try {
    assert.equal(sl.format, '8s8s16s');
    assert.equal(sl.get(0), s8);
    assert.equal(sl.get(2), s14);
    assert.throws(() => sl.set(0, '¡¡¡¡¡'), /exceeds available storage/); // 10 bytes
    sl.set(2, '¡¡¡¡¡¡¡¡'); // 16 bytes
    assert.equal(sl.get(2), '¡¡¡¡¡¡¡¡');
    assert.equal(empty.length, 0);
    assert.equal(empty.format, '');
    assert.equal(String(empty), `ShareableList([], name='${empty.shm.name}')`);
    const copy = new ShareableList(sl);
    assert.deepEqual(copy.toArray(), sl.toArray());
    copy.shm.unlink();
    const back = (await loads(dumps(sl))) as ShareableList;
    assert.ok(back instanceof ShareableList);
    assert.equal(back.shm.name, sl.shm.name);
    back.set(1, 'y');
    assert.equal(sl.get(1), 'y');
  } finally {
    sl.shm.unlink();
    empty.shm.unlink();
  }
});

test('python3 reads a ShareableList made here, writes to it, and we read what it wrote', async () => {
  const sl = new ShareableList(['ab', 1, 2.5, null, true, new Uint8Array([120, 0, 121]), 2n ** 60n, 'héllo']);
  try {
    const formatBefore = sl.format;
    const out = await python(`${PY_ATTACH}
sl = attach_list(${JSON.stringify(sl.shm.name)})
print(repr(list(sl)))
print(sl.format)
sl[0] = 'py'
sl[1] = -7
sl[2] = True
sl[3] = 0.5
sl[4] = None
sl[5] = b'zz'
sl.shm.close()`);
    const [list, format] = out.trim().split('\n');
    assert.equal(list, "['ab', 1, 2.5, None, True, b'x\\x00y', 1152921504606846976, 'héllo']");
    assert.equal(format, formatBefore);
    assert.equal(sl.format, '8sqxxxxxxx?dxxxxxx?x8sq8s'); // python's writes changed the slot formats
    assert.deepEqual(sl.toArray().slice(0, 6), ['py', -7, true, 0.5, null, new Uint8Array([122, 122])]);
  } finally {
    sl.shm.unlink();
  }
});

test('a ShareableList made by python3 is read here', async () => {
  const name = (await python(`${PY_ATTACH}
sl = shared_memory.ShareableList(['ab', 1, 2.5, None, True, b'x' * 9, -2**63, 'fits8byt'])
resource_tracker.unregister(sl.shm._name, 'shared_memory')
print(sl.shm.name)`)).trim();
  const sl = new ShareableList(null, { name, track: false });
  try {
    assert.equal(sl.format, '8sqdxxxxxx?xxxxxxxx?16sq16s');
    assert.deepEqual(sl.toArray(), ['ab', 1, 2.5, null, true, new Uint8Array(9).fill(120), -(2n ** 63n), 'fits8byt']);
    assert.equal(sl.shm.size, 232); // as python computed it
  } finally {
    sl.shm.unlink();
  }
});

test('SharedMemory and ShareableList passed to a Process re-attach in the child (spawn, thread)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mp-shm-test-'));
  const main = join(dir, 'main.mts');
  const src = (f: string) => JSON.stringify(fileURLToPath(new URL(`../src/${f}`, import.meta.url)));
  writeFileSync(main, `
import * as mp from ${src('index.ts')};
import { SharedMemory, ShareableList } from ${src('sharedMemory.ts')};
const work = mp.task((shm: SharedMemory, sl: ShareableList) => {
  shm.buf[0] = shm.buf[1]! + 1;
  sl.set(0, 'child');
});
if (mp.isMain(import.meta)) {
  const shm = new SharedMemory({ create: true, size: 16 });
  const sl = new ShareableList(['parent', 1]);
  try {
    for (const method of ['spawn', 'thread'] as const) {
      shm.buf[1] = method.length;
      const p = new (mp.getContext(method).Process)({ target: work, args: [shm, sl] });
      p.start();
      await p.join();
      console.log(method, p.exitcode, shm.buf[0], sl.get(0));
      sl.set(0, 'parent');
    }
  } finally {
    shm.unlink();
    sl.shm.unlink();
  }
}
`);
  try {
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['--import', 'tsx', main], { timeout: 60_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
    assert.deepEqual(out.trim().split('\n'), ['spawn 0 6 child', 'thread 0 7 child']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
