import { ThreadWorker } from 'poolifier';
import { add1, fib, size } from './tasks.mjs';

export default new ThreadWorker({ add1, fib, size });
