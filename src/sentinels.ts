/**
 * Process sentinels: Python's `p.sentinel` is a file descriptor that becomes readable when the child
 * exits, usable in `connection.wait`. Here a sentinel is a number standing for a promise that
 * settles when the child exits.
 */
const exits = new Map<number, Promise<void>>();
let nextSentinel = 1;

/** A new sentinel for a process whose exit `exited` reports. */
export function registerSentinel(exited: Promise<unknown>): number {
  const sentinel = nextSentinel++;
  exits.set(sentinel, exited.then(() => undefined, () => undefined));
  return sentinel;
}

/** The exit promise behind a sentinel, or undefined for a number that is not one. */
export function sentinelExit(sentinel: number): Promise<void> | undefined {
  return exits.get(sentinel);
}
