// The three tasks every contender runs, as plain functions (the peers' worker files re-export them;
// ours-tasks.mjs wraps the same bodies in mp.task). Identical across contenders.
/** W1, W2, W5: the tiny task. */
export function add1(x) {
  return x + 1;
}
/** W3: recursive Fibonacci (fib(27) = 196418). */
export function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}
/** W4: takes a payload (a 1 MiB Uint8Array) and returns its size. */
export function size(buf) {
  return buf.byteLength;
}
