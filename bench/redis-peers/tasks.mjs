// The task of bench/redis.mjs, x => 2x, for the local pool and for the worker programs (which
// are started with --import of this module).
import * as mp from 'multiprocessing-ts';

export const double = mp.task((x) => 2 * x);
