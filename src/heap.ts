/**
 * Small shared allocations, as CPython's heap.py: the words of a lock, the bytes of a Value.
 *
 * - 'thread' memory: blocks carved from SharedArrayBuffer arenas (64 KiB each). A block travels to
 *   another thread as the SharedArrayBuffer itself plus an offset. No addon is involved.
 * - 'process' memory: blocks carved from POSIX shared memory arenas (1 MiB each, more as needed;
 *   larger blocks get a segment of their own) named `/mp-<pid>-<random>`. A block travels as
 *   `{ segment, offset, length }`; the receiving process maps each arena once (cached by name).
 *   Arenas are registered with the resource tracker and unlinked when the creating process exits;
 *   processes that have mapped an arena keep their mapping after that.
 *
 * Blocks are zero-filled. A block whose object was never sent anywhere is returned to its arena
 * when the object is garbage-collected; a block that was sent is kept until the arena is released
 * (the other side may still use it: the same trade-off as Python, whose arenas outlive their blocks).
 */
import { ValueError } from './errors.js';
import { markProcessShared } from './futex.js';
import { loadNative } from './native.js';
import * as tracker from './resourceTracker.js';
import { randomHex } from './util.js';

export type MemoryKind = 'thread' | 'process';

export interface Block {
  readonly kind: MemoryKind;
  /** The whole arena (a SharedArrayBuffer for 'thread', the mapping for 'process'). */
  readonly buffer: ArrayBufferLike;
  /** Byte offset of the block in `buffer`. */
  readonly offset: number;
  /** Length of the block in bytes. */
  readonly length: number;
  /** The arena's segment name ('process'), or null ('thread'). */
  readonly segment: string | null;
}

/** How a block travels: plain structured-clone data. */
export type BlockState =
  | { kind: 'thread'; buffer: SharedArrayBuffer; offset: number; length: number }
  | { kind: 'process'; segment: string; offset: number; length: number };

const THREAD_ARENA = 64 * 1024;
const PROCESS_ARENA = 1024 * 1024;

interface Arena {
  buffer: ArrayBufferLike;
  segment: string | null;
  size: number;
  /** Free ranges, sorted by offset: [offset, length]. */
  free: Array<[number, number]>;
}

const arenas: Record<MemoryKind, Arena[]> = { thread: [], process: [] };

// ---- segments (process memory) ---------------------------------------------------------------

/** Arena segments this process created (tracked; unlinked at exit). */
const created = new Set<string>();
/** Pair segments this process created whose name the other side has not removed yet. */
const pairs = new Set<string>();
let exitHookInstalled = false;

function unlinkQuietly(name: string): void {
  try {
    loadNative().shmUnlink(name);
  } catch {
    // already gone
  }
}

function unregisterQuietly(name: string): void {
  try {
    tracker.unregister(name, 'shared_memory');
  } catch {
    // the tracker may be gone at exit
  }
}

function unlinkCreated(): void {
  for (const name of [...created, ...pairs]) {
    unlinkQuietly(name);
    unregisterQuietly(name);
  }
  created.clear();
  pairs.clear();
}

/** A new segment named `/mp-<pid>-<random>`, unlinked at this process's exit if still there. */
function newSegment(size: number, names: Set<string>): { name: string; buffer: ArrayBufferLike } {
  const native = loadNative();
  const pageSize = native.pageSize || 4096;
  const rounded = Math.ceil(size / pageSize) * pageSize;
  for (let attempt = 0; ; attempt++) {
    const name = `/mp-${process.pid}-${randomHex(4)}`;
    let mapping;
    try {
      mapping = native.shmOpen(name, true, true, rounded);
    } catch (error) {
      if ((error as { code?: string }).code === 'EEXIST' && attempt < 10) continue;
      throw error;
    }
    names.add(name);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on('exit', unlinkCreated);
    }
    markProcessShared(mapping.buffer);
    return { name, buffer: mapping.buffer };
  }
}

/** A new segment, registered with the resource tracker (which unlinks it if this process is killed). */
function trackedSegment(size: number, names: Set<string>): { name: string; buffer: ArrayBufferLike } {
  const segment = newSegment(size, names);
  try {
    tracker.register(segment.name, 'shared_memory');
  } catch {
    // best effort: the exit hook still unlinks on a normal exit
  }
  return segment;
}

function createSegment(size: number): { name: string; buffer: ArrayBufferLike } {
  const segment = trackedSegment(size, created);
  attached.set(segment.name, segment.buffer);
  return segment;
}

/**
 * A segment for two parties only, that lives as long as both map it (manager connections'
 * shared-memory lanes). The other side removes the name as soon as it has mapped it
 * (`openPairSegment`), and the kernel frees the memory when both mappings are garbage-collected.
 * Registered with the resource tracker for the one round trip its name exists, so that a creator
 * killed meanwhile leaves nothing behind; `releasePairSegment` (taken) or `unlinkPairSegment`
 * (the offer failed) ends that.
 */
export function createPairSegment(size: number): { name: string; buffer: ArrayBufferLike } {
  return trackedSegment(size, pairs);
}

/** The other side mapped a pair segment and removed its name: nothing is left to clean up. */
export function releasePairSegment(name: string): void {
  if (pairs.delete(name)) unregisterQuietly(name);
}

/** Maps a pair segment made by another process and removes its name (not cached: the mapping
 * goes with its buffer). */
export function openPairSegment(name: string): ArrayBufferLike {
  const { buffer } = loadNative().shmOpen(name, false, false, 0);
  unlinkQuietly(name);
  markProcessShared(buffer);
  return buffer;
}

/** Removes a pair segment's name if it is still there (the offer failed, or was declined). */
export function unlinkPairSegment(name: string): void {
  if (!pairs.delete(name)) return;
  unlinkQuietly(name);
  unregisterQuietly(name);
}

/** Arenas mapped in this process (or thread: each isolate maps its own), by segment name. */
const attached = new Map<string, ArrayBufferLike>();

function attachSegment(name: string): ArrayBufferLike {
  let buffer = attached.get(name);
  if (buffer === undefined) {
    buffer = loadNative().shmOpen(name, false, false, 0).buffer;
    markProcessShared(buffer);
    attached.set(name, buffer);
  }
  return buffer;
}

// ---- allocation --------------------------------------------------------------------------------

function newArena(kind: MemoryKind, size: number): Arena {
  if (kind === 'thread') {
    return { buffer: new SharedArrayBuffer(size), segment: null, size, free: [[0, size]] };
  }
  const { name, buffer } = createSegment(size);
  return { buffer, segment: name, size: buffer.byteLength, free: [[0, buffer.byteLength]] };
}

function carve(arena: Arena, length: number, align: number): number {
  for (let i = 0; i < arena.free.length; i++) {
    const [start, len] = arena.free[i]!;
    const aligned = Math.ceil(start / align) * align;
    const pad = aligned - start;
    if (len - pad < length) continue;
    const rest: Array<[number, number]> = [];
    if (pad > 0) rest.push([start, pad]);
    if (len - pad - length > 0) rest.push([aligned + length, len - pad - length]);
    arena.free.splice(i, 1, ...rest);
    return aligned;
  }
  return -1;
}

function giveBack(arena: Arena, offset: number, length: number): void {
  new Uint8Array(arena.buffer, offset, length).fill(0);
  const free = arena.free;
  let i = 0;
  while (i < free.length && free[i]![0] < offset) i++;
  free.splice(i, 0, [offset, length]);
  // merge with neighbours
  if (i + 1 < free.length && free[i]![0] + free[i]![1] === free[i + 1]![0]) {
    free[i]![1] += free[i + 1]![1];
    free.splice(i + 1, 1);
  }
  if (i > 0 && free[i - 1]![0] + free[i - 1]![1] === free[i]![0]) {
    free[i - 1]![1] += free[i]![1];
    free.splice(i, 1);
  }
}

const arenaOf = new WeakMap<Block, Arena>();
const sharedBlocks = new WeakSet<Block>();

/** A zero-filled block of `length` bytes aligned to `align` (a power of two, at most 8). */
export function allocate(kind: MemoryKind, length: number, align = 8): Block {
  if (!Number.isInteger(length) || length < 0) throw new ValueError(`invalid block length ${length}`);
  const want = Math.max(length, 1);
  const arenaSize = kind === 'thread' ? THREAD_ARENA : PROCESS_ARENA;
  let arena: Arena | undefined;
  let offset = -1;
  if (want > arenaSize / 4) {
    arena = newArena(kind, Math.max(want, 8));
    offset = carve(arena, want, align);
  } else {
    for (const a of arenas[kind]) {
      offset = carve(a, want, align);
      if (offset >= 0) {
        arena = a;
        break;
      }
    }
    if (offset < 0) {
      arena = newArena(kind, arenaSize);
      arenas[kind].push(arena);
      offset = carve(arena, want, align);
    }
  }
  const block: Block = { kind, buffer: arena!.buffer, offset, length, segment: arena!.segment };
  arenaOf.set(block, arena!);
  return block;
}

/** Returns a never-shared block to its arena when its owner is collected. */
const collector = new FinalizationRegistry<{ arena: Arena; offset: number; length: number; shared: { value: boolean } }>(
  (held) => {
    if (!held.shared.value) giveBack(held.arena, held.offset, Math.max(held.length, 1));
  },
);
const sharedFlags = new WeakMap<Block, { value: boolean }>();

/** Frees `block` when `owner` is garbage-collected, unless the block was sent somewhere. */
export function freeWith(owner: object, block: Block): void {
  const arena = arenaOf.get(block);
  // Blocks of a dedicated (large) arena are kept: the arena itself is released at exit.
  if (!arena || !arenas[block.kind].includes(arena)) return;
  const shared = { value: false };
  sharedFlags.set(block, shared);
  collector.register(owner, { arena, offset: block.offset, length: block.length, shared });
}

/** The travelling form of a block (marks it as shared: it will not be reused in this process). */
export function blockState(block: Block): BlockState {
  sharedBlocks.add(block);
  const flag = sharedFlags.get(block);
  if (flag) flag.value = true;
  if (block.kind === 'thread') {
    return { kind: 'thread', buffer: block.buffer as SharedArrayBuffer, offset: block.offset, length: block.length };
  }
  return { kind: 'process', segment: block.segment!, offset: block.offset, length: block.length };
}

/** The block a `blockState` stands for, in this process or thread. */
export function attachBlock(state: BlockState): Block {
  if (state.kind === 'thread') {
    return { kind: 'thread', buffer: state.buffer, offset: state.offset, length: state.length, segment: null };
  }
  const buffer = attachSegment(state.segment);
  return { kind: 'process', buffer, offset: state.offset, length: state.length, segment: state.segment };
}

/** Throws ValueError when a block of one kind is sent where only the other kind works. */
export function checkTarget(block: Block, target: 'process' | 'thread', what: string): void {
  if (block.kind !== target) {
    throw new ValueError(
      `A ${what} made for ${block.kind === 'thread' ? "the 'thread' start method" : "the 'spawn'/'forkserver' start methods"} ` +
        `cannot be sent to a ${target === 'thread' ? 'thread' : 'process'}: objects from one context work in processes of that context.`,
    );
  }
}

/** Int32 words of a block (the block must be 4-aligned). */
export function int32s(block: Block, firstWord = 0, count = (block.length >> 2) - firstWord): Int32Array {
  return new Int32Array(block.buffer, block.offset + firstWord * 4, count);
}

/** @internal The shared arenas of a kind (not the dedicated ones of large blocks), for tests (as
 * CPython's test reads its heap's private state): bytes in all, bytes free, free ranges. */
export function _arenaStats(kind: MemoryKind): { arenas: number; size: number; free: number; freeRanges: number } {
  const list = arenas[kind];
  return {
    arenas: list.length,
    size: list.reduce((n, a) => n + a.size, 0),
    free: list.reduce((n, a) => n + a.free.reduce((m, [, len]) => m + len, 0), 0),
    freeRanges: list.reduce((n, a) => n + a.free.length, 0),
  };
}
