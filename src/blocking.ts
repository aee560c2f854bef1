/**
 * The one way a thread blocks (every `*Sync` wait: futex words, sockets, ports), and what it does
 * first: hand over what this thread has buffered for others.
 *
 * A queue's `put` buffers the item, and the feeder writes it later, from the event loop. Python's
 * feeder is a thread of its own and writes while its producer blocks; ours cannot run while this
 * thread is blocked, so an item put just before `q.getSync()` (or `e.waitSync()`, or
 * `conn.recvSync()`) would wait behind the very call that waits for it. So before blocking, every
 * registered hand-over writes what it can without waiting; what it cannot write yet (a ring that is
 * full, a writer lock someone else holds) is retried between short slices of the wait, until it is
 * all written or the wait ends.
 */

/** Writes what it can of this thread's buffered work without waiting; true once nothing is left. */
export type HandOver = () => boolean;

// Module state is per thread: every worker thread loads its own copy of this module.
const handOvers = new Set<HandOver>();

// While some work could not be handed over, the wait is cut into slices this long (ms), doubling
// from the first to the last: short while a reader is draining, cheap if it takes a while.
const FIRST_SLICE_MS = 1;
const LAST_SLICE_MS = 8;

/** Runs `handOver` before this thread next blocks (until it returns true; adding it again is harmless). */
export function handOverBeforeBlocking(handOver: HandOver): void {
  handOvers.add(handOver);
}

/** The buffered work of `handOver` is written (by other means): no need to run it any more. */
export function forgetHandOver(handOver: HandOver): void {
  handOvers.delete(handOver);
}

/** Runs every hand-over; true when nothing is left to write. */
function handOverAll(): boolean {
  let done = true;
  for (const handOver of handOvers) {
    if (handOver()) handOvers.delete(handOver);
    else done = false;
  }
  return done;
}

/**
 * Blocks this thread with `block(ms)` (at most `ms` milliseconds, -1 for ever), after handing over
 * its buffered work; `timedOut(result)` says whether `block` returned because its time ran out.
 * A look that does not wait (`ms` 0) hands nothing over.
 */
export function blockThread<R>(ms: number, block: (ms: number) => R, timedOut: (result: R) => boolean): R {
  if (ms === 0 || handOverAll()) return block(ms);
  const deadline = ms < 0 ? Infinity : performance.now() + ms;
  for (let slice = FIRST_SLICE_MS; ; slice = Math.min(slice * 2, LAST_SLICE_MS)) {
    const left = deadline - performance.now();
    const result = block(Math.max(0, Math.min(slice, left)));
    if (!timedOut(result) || left <= slice) return result;
    if (handOverAll()) return block(deadline === Infinity ? -1 : Math.max(0, deadline - performance.now()));
  }
}
