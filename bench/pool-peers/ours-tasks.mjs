// Our pool's tasks, defined at module top level through mp.task so workers import this module and
// look them up (the bodies are those of tasks.mjs).
import * as mp from 'multiprocessing-ts';
import { add1 as add1Body, fib as fibBody, size as sizeBody } from './tasks.mjs';

export const add1 = mp.task((x) => add1Body(x));
export const fib = mp.task((n) => fibBody(n));
export const size = mp.task((buf) => sizeBody(buf));
