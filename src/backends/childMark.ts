/** Whether this process or thread was started by multiprocessing-ts (then `isMain()` is false). */
import { isMainThread } from 'node:worker_threads';

const key = Symbol.for('multiprocessing-ts.child');
const globals = globalThis as unknown as Record<symbol, boolean | undefined>;

export function markChild(): void {
  globals[key] = true;
}

export function isChild(): boolean {
  return globals[key] === true || !isMainThread;
}
