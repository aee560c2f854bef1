// CPython's _TestHeap (ALLOWED_TYPES: processes) checks the private arena allocator behind
// sharedctypes (multiprocessing.heap). Ours is src/heap.ts: the same behaviour is ported against it,
// 'process' memory (shared memory arenas) on spawn/forkserver and 'thread' memory on thread.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { _arenaStats, allocate, freeWith, type Block, type MemoryKind } from '../../src/heap.js';
import { cpythonClass, forceGc } from './harness.js';

/** Python's random.lognormvariate(0, 1). */
function lognormal(): number {
  const u = 1 - Math.random();
  const v = Math.random();
  return Math.exp(Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
}

interface Owned {
  block: Block;
  buddy?: Owned;
}

function allocateOwned(kind: MemoryKind, size: number): Owned {
  const owned: Owned = { block: allocate(kind, size) };
  freeWith(owned, owned.block);
  return owned;
}

/** Collects until every block of `kind` is back in its arena (the frees run after collection). */
async function untilAllFree(kind: MemoryKind): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    await forceGc();
    const stats = _arenaStats(kind);
    if (stats.free === stats.size) return;
    if (Date.now() > deadline) throw new Error(`blocks never freed: ${JSON.stringify(stats)}`);
  }
}

/** CPython's loop: 5000 blocks of random sizes, at most 50 kept. A dropped block is freed when it
 * is collected (Python frees it at once, by reference counting): collect now and then. */
async function churn(kind: MemoryKind): Promise<Owned[]> {
  const maxblocks = 50;
  const blocks: Owned[] = [];
  for (let i = 0; i < 5000; i++) {
    blocks.push(allocateOwned(kind, Math.floor(lognormal() * 1000)));
    if (blocks.length > maxblocks) blocks.splice(Math.floor(Math.random() * maxblocks), 1);
    if (i % 500 === 499) await forceGc();
  }
  return blocks;
}

function checkLayout(blocks: Block[]): void {
  const byArena = new Map<ArrayBufferLike, Block[]>();
  for (const block of blocks) {
    assert.equal(block.offset % 8, 0);
    assert.ok(block.offset + block.length <= block.buffer.byteLength);
    byArena.set(block.buffer, [...(byArena.get(block.buffer) ?? []), block]);
  }
  for (const list of byArena.values()) {
    list.sort((a, b) => a.offset - b.offset);
    for (let i = 0; i + 1 < list.length; i++) {
      assert.ok(list[i]!.offset + Math.max(list[i]!.length, 1) <= list[i + 1]!.offset, 'blocks overlap');
    }
  }
}

cpythonClass('_TestHeap', ['processes'], (f) => {
  const kind: MemoryKind = f.method === 'thread' ? 'thread' : 'process';

  it('test_heap', async () => {
    const before = _arenaStats(kind);
    const blocks = await churn(kind);

    // The live blocks lie inside their arenas, aligned, and never overlap.
    checkLayout(blocks.map((o) => o.block));
    // Freed blocks were reused: at most about 550 blocks of 1.6 KB on average were alive at once,
    // under 1 MiB (5000 blocks without reuse would take about 8 MiB).
    const grown = _arenaStats(kind).size - before.size;
    assert.ok(grown <= 2 * 1024 * 1024, JSON.stringify({ before, after: _arenaStats(kind) }));

    // Freeing every block gives all of each arena back, merged into one free range per arena
    // (CPython: the arenas themselves go; ours are kept for the next allocation).
    blocks.length = 0;
    await untilAllFree(kind);
    const stats = _arenaStats(kind);
    assert.equal(stats.freeRanges, stats.arenas);
  });

  it('test_free_from_gc', async () => {
    // Blocks freed by the garbage collector, from reference cycles, while more are allocated.
    const before = _arenaStats(kind);
    const cycle = (): void => {
      const a = allocateOwned(kind, 1);
      const b = allocateOwned(kind, 1);
      a.buddy = b;
      b.buddy = a;
    };
    for (let i = 0; i < 5000; i++) {
      cycle();
      if (i % 1000 === 999) await forceGc();
    }
    await untilAllFree(kind);
    const after = _arenaStats(kind);
    assert.equal(after.freeRanges, after.arenas);
    assert.ok(after.arenas - before.arenas <= 1, JSON.stringify({ before, after }));
  });
});
