/**
 * `multiprocessing-ts/shared-memory` (also `mp.sharedMemory`): Python's `multiprocessing.shared_memory`
 * (`SharedMemory`, `ShareableList`) and `SharedMemoryManager`, which docs/api.md lists there. A module of
 * its own because sharedMemory.ts is what a child imports to rebuild a segment it was given, and
 * must not load the managers with it.
 */
export * from './sharedMemory.js';
export { SharedMemoryManager } from './managers/sync.js';
