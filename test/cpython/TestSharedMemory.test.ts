// CPython's _TestSharedMemory (ALLOWED_TYPES: processes). Python's pickling is our reduction
// (`dumps`/`loads`, what a Process argument goes through); its `python -c` scripts are programs in
// fixtures/programs.ts.
import { it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as mp from '../../src/index.js';
import { FileExistsError, FileNotFoundError } from '../../src/sharedMemory.js';
import { dumps, loads } from '../../src/reduction.js';
import * as resourceTracker from '../../src/resourceTracker.js';
import { cpythonClass, reap, startProgram } from './harness.js';
import { attachThenWrite } from './fixtures/sharedMemory.js';

const programs = new URL('./fixtures/programs.ts', import.meta.url);
const bytes = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'));
const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');
/** A name for a segment of ours: the pid keeps parallel runs apart (CPython's `_new_shm_name`). */
const newShmName = (prefix: string): string => `${prefix}${process.pid}`;
const LEAKED_1 = 'resource_tracker: There appear to be 1 leaked shared_memory objects to clean up at shutdown';

/** Unlinks a segment when the test ends, whatever happened (CPython's addCleanup(sms.unlink)). */
function unlinkAfter(t: TestContext, shm: mp.SharedMemory): mp.SharedMemory {
  t.after(() => {
    try {
      shm.unlink();
    } catch (error) {
      if (!(error instanceof FileNotFoundError)) throw error;
    }
  });
  return shm;
}

cpythonClass('_TestSharedMemory', ['processes'], (f) => {
  const Manager = (): mp.SharedMemoryManager => new mp.SharedMemoryManager({ ctx: f.ctx });

  it('test_shared_memory_name_with_embedded_null', (t) => {
    const name = newShmName('test01_null');
    unlinkAfter(t, new mp.SharedMemory({ name, create: true, size: 512 })).close();
    assert.throws(() => new mp.SharedMemory({ name: `${name}\0a`, create: false, size: 512 }), mp.ValueError);
    // CPython also sets the private _name to one with a NUL and expects unlink() to refuse it; our
    // name cannot be changed after construction.
  });

  it('test_shared_memory_basics', (t) => {
    const name = newShmName('test01_tsmb');
    const sms = unlinkAfter(t, new mp.SharedMemory({ name, create: true, size: 512 }));

    assert.equal(sms.name, name);
    assert.ok(sms.size >= 512);
    assert.ok(sms.buf.length >= sms.size);
    assert.ok(String(sms).includes(sms.name));
    assert.ok(String(sms).includes(String(sms.size)));

    sms.buf[0] = 42;
    assert.equal(sms.buf[0], 42);

    const also = new mp.SharedMemory({ name });
    assert.equal(also.buf[0], 42);
    also.close();

    // Attaching with a size: the size is ignored.
    const same = new mp.SharedMemory({ name, size: 20 * sms.size });
    assert.ok(same.size < 20 * sms.size);
    same.close();

    assert.throws(() => new mp.SharedMemory({ create: true, size: -2 }), mp.ValueError);
    assert.throws(() => new mp.SharedMemory({ create: false }), mp.ValueError);

    checkNameCollision(t, 'test01_fn', 'test02_fn');

    // A POSIX segment can be unlinked only once.
    const dblName = newShmName('test01_dblunlink');
    const uno = new mp.SharedMemory({ name: dblName, create: true, size: 5000 });
    assert.throws(() => {
      try {
        assert.ok(uno.size >= 5000);
        const duo = new mp.SharedMemory({ name: dblName });
        duo.unlink();
        duo.close();
        uno.close();
      } finally {
        uno.unlink(); // the second shm_unlink()
      }
    }, FileNotFoundError);

    assert.throws(() => new mp.SharedMemory({ name, create: true, size: 512 }), FileExistsError);
    // (CPython also attaches with the private _flags O_CREAT|O_RDWR; there is no such option here.)
    assert.throws(() => new mp.SharedMemory({ name: 'test01_notthere' }), FileNotFoundError);
    sms.close();
  });

  it('test_shared_memory_recreate', (t) => {
    checkNameCollision(t, 'test03_fn', 'test04_fn');
  });

  it('test_invalid_shared_memory_creation', () => {
    assert.throws(() => new mp.SharedMemory({ create: true, size: -1 }), mp.ValueError);
    assert.throws(() => new mp.SharedMemory({ create: true, size: 0 }), mp.ValueError);
    assert.throws(() => new mp.SharedMemory({ create: true }), mp.ValueError);
  });

  it('test_shared_memory_pickle_unpickle', async (t) => {
    const sms = unlinkAfter(t, new mp.SharedMemory({ create: true, size: 512 }));
    sms.buf.set(bytes('pickle'));
    const pickled = dumps(sms);
    const sms2 = await loads(pickled);
    assert.ok(sms2 instanceof mp.SharedMemory);
    assert.equal(sms2.name, sms.name);
    assert.equal(text(sms.buf.subarray(0, 6)), 'pickle');
    assert.equal(text(sms2.buf.subarray(0, 6)), 'pickle');
    // The same memory, both ways.
    sms.buf.set(bytes('newval'));
    assert.equal(text(sms2.buf.subarray(0, 6)), 'newval');
    sms2.buf.set(bytes('oldval'));
    assert.equal(text(sms.buf.subarray(0, 6)), 'oldval');
    sms2.close();
    sms.close();
  });

  it('test_shared_memory_pickle_unpickle_dead_object', async () => {
    const sms = new mp.SharedMemory({ create: true, size: 512 });
    sms.buf.set(bytes('pickle'));
    const pickled = dumps(sms);
    sms.close();
    sms.unlink();
    await assert.rejects(loads(pickled), FileNotFoundError);
  });

  it('test_shared_memory_across_processes', async (t) => {
    const sms = unlinkAfter(t, new mp.SharedMemory({ create: true, size: 512 }));
    // By name.
    let p = new f.ctx.Process({ target: attachThenWrite, args: [sms.name, bytes('howdy')], daemon: true });
    try {
      p.start();
      await p.join();
      assert.equal(p.exitcode, 0);
      assert.equal(text(sms.buf.subarray(0, 5)), 'howdy');
      // The object itself, which re-attaches on the way.
      p = new f.ctx.Process({ target: attachThenWrite, args: [sms, bytes('HELLO')], daemon: true });
      p.start();
      await p.join();
      assert.equal(p.exitcode, 0);
      assert.equal(text(sms.buf.subarray(0, 5)), 'HELLO');
    } finally {
      await reap(p);
      sms.close();
    }
  });

  it('test_shared_memory_SharedMemoryServer_ignores_sigint', {
    skip: f.method === 'thread' && 'n/a on thread: the server is a thread of this process, and a signal goes to the whole process',
  }, async () => {
    const handlersBefore = process.listenerCount('SIGINT');
    const smm = Manager();
    await smm.start();
    try {
      const sl = await smm.ShareableList([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      process.kill(smm._process!.pid!, 'SIGINT');
      // The server survives SIGINT and still serves.
      const sl2 = await smm.ShareableList([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      assert.equal(sl2.length, 10);
      assert.ok(smm._process!.isAlive());
      sl.shm.close();
      sl2.shm.close();
      // CPython then checks that SIGINT still raises KeyboardInterrupt in the parent: here, that
      // starting the manager left this process's SIGINT handling alone.
      assert.equal(process.listenerCount('SIGINT'), handlersBefore);
    } finally {
      await smm.shutdown();
    }
  });

  it('test_shared_memory_SharedMemoryManager_reuses_resource_tracker', async () => {
    // A program whose manager server shares its tracker: shutdown() releases the list, and no
    // tracker complains about it.
    const { code, stderr } = await startProgram(programs, ['smm-list']).done;
    assert.equal(code, 0, stderr);
    assert.equal(stderr, '');
  });

  it('test_shared_memory_SharedMemoryManager_basics', async () => {
    const smm1 = Manager();
    await assert.rejects(smm1.SharedMemory(9), mp.ValueError, 'fails if the server is not started');
    await smm1.start();
    let heldName: string;
    try {
      const lol = [];
      for (let i = 5; i < 10; i++) lol.push(await smm1.ShareableList(Array.from({ length: i }, (_, k) => k)));
      const lom = [];
      for (let j = 32; j < 128; j += 16) lom.push(await smm1.SharedMemory(j));
      const dopplegangerList0 = new mp.ShareableList(null, { name: lol[0]!.shm.name, track: false });
      assert.equal(dopplegangerList0.length, 5);
      const dopplegangerShm0 = new mp.SharedMemory({ name: lom[0]!.name, track: false });
      assert.ok(dopplegangerShm0.buf.length >= 32);
      heldName = lom[0]!.name;
      dopplegangerList0.shm.close();
      dopplegangerShm0.close();
    } finally {
      await smm1.shutdown();
    }
    // No longer there to be attached to again.
    assert.throws(() => new mp.SharedMemory({ name: heldName }), FileNotFoundError);

    {
      await using smm2 = await Manager().start();
      const sl = await smm2.ShareableList('howdy');
      await smm2.SharedMemory(128);
      heldName = sl.shm.name;
    }
    assert.throws(() => new mp.ShareableList(null, { name: heldName }), FileNotFoundError);
  });

  it('test_shared_memory_ShareableList_basics', (t) => {
    const sl = new mp.ShareableList(['howdy', bytes('HoWdY'), -273.154, 100, null, true, 42]);
    unlinkAfter(t, sl.shm);

    assert.ok(String(sl).includes(sl.shm.name));
    assert.ok(String(sl).includes("['howdy', b'HoWdY', -273.154, 100, None, True, 42]"), String(sl));

    assert.throws(() => sl.get(7), mp.IndexError);
    assert.throws(() => sl.set(7, 2), mp.IndexError);

    // Assigning a value of the same format keeps the slot's format.
    const currentFormat = sl.format;
    sl.set(0, 'howdy');
    assert.equal(sl.format, currentFormat);

    assert.equal(sl.format, '8s8sdqxxxxxx?xxxxxxxx?q');
    assert.equal(sl.length, 7);

    assert.throws(() => sl.index('100'), mp.ValueError);
    assert.equal(sl.index(100), 3);

    assert.equal(sl.get(0), 'howdy');
    assert.equal(sl.get(-2), true);
    assert.deepEqual(sl.toArray(), ['howdy', bytes('HoWdY'), -273.154, 100, null, true, 42]);

    sl.set(3, 42);
    assert.equal(sl.get(3), 42);
    sl.set(4, 'some'); // a new type at a position
    assert.equal(sl.get(4), 'some');
    assert.equal(sl.format, '8s8sdq8sxxxxxxx?q');
    assert.throws(() => sl.set(4, 'far too many'), /exceeds available storage/);
    assert.equal(sl.get(4), 'some');
    sl.set(0, 'encodés'); // exactly 8 bytes of UTF-8
    assert.equal(sl.get(0), 'encodés');
    assert.deepEqual(sl.get(1), bytes('HoWdY')); // no spillage
    assert.throws(() => sl.set(0, 'encodées'), /exceeds available storage/); // 9 bytes
    assert.deepEqual(sl.get(1), bytes('HoWdY'));
    assert.throws(() => sl.set(1, bytes('123456789')), /exceeds available storage/);
    assert.deepEqual(sl.get(1), bytes('HoWdY'));

    assert.equal(sl.count(42), 2);
    assert.equal(sl.count(bytes('HoWdY')), 1);
    assert.equal(sl.count(bytes('adios')), 0);

    // A duplicate.
    const nameDuplicate = newShmName('test03_duplicate');
    const slCopy = new mp.ShareableList(sl, { name: nameDuplicate });
    try {
      assert.notEqual(sl.shm.name, slCopy.shm.name);
      assert.equal(slCopy.shm.name, nameDuplicate);
      assert.deepEqual(slCopy.toArray(), sl.toArray());
      assert.equal(slCopy.format, sl.format);
      slCopy.set(-1, 77);
      assert.equal(slCopy.get(-1), 77);
      assert.notEqual(sl.get(-1), 77);
      slCopy.shm.close();
    } finally {
      slCopy.shm.unlink();
    }

    // A second handle on the same list.
    const slTethered = new mp.ShareableList(null, { name: sl.shm.name });
    assert.equal(slTethered.shm.name, sl.shm.name);
    slTethered.set(-1, 880);
    assert.equal(sl.get(-1), 880);
    slTethered.shm.close();
    sl.shm.close();

    // An empty list.
    const empty = new mp.ShareableList();
    try {
      assert.equal(empty.length, 0);
      assert.equal(empty.format, '');
      assert.equal(empty.count('any'), 0);
      assert.throws(() => empty.index(null), mp.ValueError);
      empty.shm.close();
    } finally {
      empty.shm.unlink();
    }
  });

  it('test_shared_memory_ShareableList_pickling', async (t) => {
    const sl = new mp.ShareableList(Array.from({ length: 10 }, (_, i) => i));
    unlinkAfter(t, sl.shm);
    const serialized = dumps(sl);
    const deserialized = await loads(serialized);
    assert.ok(deserialized instanceof mp.ShareableList);
    assert.equal(deserialized.get(-1), 9);
    assert.notEqual(deserialized, sl);
    deserialized.set(4, 'changed');
    assert.equal(sl.get(4), 'changed');
    sl.set(3, 'newvalue');
    assert.equal(deserialized.get(3), 'newvalue');

    // What travels is the name, not the content.
    const larger = new mp.ShareableList(Array.from({ length: 400 }, (_, i) => i));
    unlinkAfter(t, larger.shm);
    assert.equal(dumps(larger).length, serialized.length);
    larger.shm.close();
    deserialized.shm.close();
    sl.shm.close();
  });

  it('test_shared_memory_ShareableList_pickling_dead_object', async () => {
    const sl = new mp.ShareableList(Array.from({ length: 10 }, (_, i) => i));
    const serialized = dumps(sl);
    sl.shm.close();
    sl.shm.unlink();
    await assert.rejects(loads(serialized), FileNotFoundError);
  });

  it('test_shared_memory_cleaned_after_process_termination', async () => {
    resourceTracker.ensureRunning(); // as in CPython, this process has a tracker of its own
    const p = startProgram(programs, ['create-and-wait']);
    let name: string | undefined;
    try {
      name = await p.line();
      // A process killed while it holds a segment does not leak it: its own tracker unlinks it and
      // says so on the stderr it inherited (done: the program and its tracker have both closed it).
      p.kill('SIGTERM');
      const { stderr } = await p.done;
      assert.ok(!existsSync(`/dev/shm/${name}`), `the segment ${name} is still there`);
      assert.ok(stderr.includes(LEAKED_1), stderr);
    } finally {
      p.kill('SIGKILL');
      if (name && existsSync(`/dev/shm/${name}`)) new mp.SharedMemory({ name, track: false }).unlink();
    }
  });

  it('test_shared_memory_untracking', async () => {
    // Another program attaching with track: false must not make its tracker remove the segment.
    const mem = new mp.SharedMemory({ create: true, size: 10 });
    try {
      const { code, stderr } = await startProgram(programs, ['attach', mem.name, 'false']).done;
      assert.equal(code, 0, stderr);
      assert.ok(!stderr.includes('resource_tracker'), stderr);
      new mp.SharedMemory({ name: mem.name, track: false }).close();
    } finally {
      mem.unlink();
      mem.close();
    }
  });

  it('test_shared_memory_tracking', async () => {
    // Another program attaching with track: true: its tracker removes the segment when it exits.
    const mem = new mp.SharedMemory({ create: true, size: 10 });
    try {
      const { code, stderr } = await startProgram(programs, ['attach', mem.name, 'true']).done;
      assert.equal(code, 0, stderr);
      assert.ok(stderr.includes('resource_tracker: There appear to be 1 leaked shared_memory objects'), stderr);
    } finally {
      try {
        mem.unlink();
      } catch (error) {
        if (!(error instanceof FileNotFoundError)) throw error;
        resourceTracker.unregister(`/${mem.name}`, 'shared_memory');
      }
      mem.close();
    }
  });
});

/** The random name generator returns a name that is taken: the next one is used. */
function checkNameCollision(t: TestContext, first: string, second: string): void {
  const names = [newShmName(first), newShmName(second)].map((n) => `/psm_${n}`);
  const shm1 = withNames(names, () => unlinkAfter(t, new mp.SharedMemory({ create: true, size: 1 })));
  assert.equal(`/${shm1.name}`, names[0]);
  const shm2 = withNames(names, () => unlinkAfter(t, new mp.SharedMemory({ create: true, size: 1 })));
  assert.equal(`/${shm2.name}`, names[1]);
  shm1.close();
  shm2.close();
}

/** Runs `fn` with the random name generator returning `names` in turn (CPython mocks the private
 * `_make_filename` the same way). */
function withNames<T>(names: string[], fn: () => T): T {
  const original = mp.SharedMemory._makeFilename;
  const queue = [...names];
  mp.SharedMemory._makeFilename = () => {
    const next = queue.shift();
    if (next === undefined) throw new Error('no more names');
    return next;
  };
  try {
    return fn();
  } finally {
    mp.SharedMemory._makeFilename = original;
  }
}
