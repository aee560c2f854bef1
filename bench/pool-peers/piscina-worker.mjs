// piscina and tinypool (both runtimes) pick a named export with run(data, { name }).
export { add1, fib, size } from './tasks.mjs';
