/**
 * Whether this process or thread was started by multiprocessing-ts (then `isMain()` is false),
 * whether it is importing its task modules (Python's bootstrapping phase), and what its parent
 * handed it beyond the process object: its resource tracker's address. That comes
 * in the start message, never through the environment, so that a program the user starts with
 * child_process does not join the tree's tracker (Python hands the tracker to its own children only).
 */
import { isMainThread } from 'node:worker_threads';

// On globalThis, so that a second copy of the library (ESM and CJS side by side) sees the same.
const key = Symbol.for('multiprocessing-ts.child');
const trackerKey = Symbol.for('multiprocessing-ts.inheritedTracker');
const globals = globalThis as unknown as Record<symbol, unknown>;

export function markChild(): void {
  globals[key] = true;
}

export function isChild(): boolean {
  return globals[key] === true || !isMainThread;
}

const bootstrappingKey = Symbol.for('multiprocessing-ts.bootstrapping');

/**
 * Runs `load`, the import of a child's task modules, as Python's bootstrapping phase: a process,
 * a pool or a start method set meanwhile comes from a module's top level that the `isMain` guard
 * should protect, and is refused with Python's advice (process.ts, checkNotBootstrapping).
 */
export async function whileBootstrapping<T>(load: () => Promise<T>): Promise<T> {
  const outer = globals[bootstrappingKey] === true;
  globals[bootstrappingKey] = true;
  try {
    return await load();
  } finally {
    globals[bootstrappingKey] = outer;
  }
}

export function isBootstrapping(): boolean {
  return globals[bootstrappingKey] === true;
}

/** Records the parent's resource tracker (from the start message). */
export function setInheritedTracker(address: string | null | undefined): void {
  globals[trackerKey] = address ?? null;
}

/** The parent's resource tracker, when this is a child of the library that was given one. */
export function inheritedTracker(): string | null {
  return (globals[trackerKey] as string | null | undefined) ?? null;
}
