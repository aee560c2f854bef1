import workerpool from 'workerpool';
import { add1, fib, size } from './tasks.mjs';

workerpool.worker({ add1, fib, size });
