"""Python's side of bench/pool.mjs: the same workloads on multiprocessing.Pool(2), printed as JSON.

    python3 bench/pool.py main        W1-W4 on the default start method
    python3 bench/pool.py w5 METHOD   construction to first result and shutdown, first and second pool

bench/pool.mjs runs this as a subprocess and merges the numbers into its tables.
"""
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

N = int(os.environ.get("BENCH_N", 100_000))
RT_CALLS = int(os.environ.get("BENCH_RT", 2_000))
FIB_TASKS = 64
FIB_N = 27
PAYLOADS = int(os.environ.get("BENCH_PAYLOADS", 200))
MIB = 1 << 20
BUDGET = float(os.environ.get("BENCH_BUDGET_S", 6))


def add1(x):
    return x + 1


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def size(buf):
    return len(buf)


def repeat(fn, most=3):
    """Runs fn() (which returns seconds) up to `most` times while within BUDGET; returns them."""
    times, start = [], time.perf_counter()
    while len(times) < most and (not times or time.perf_counter() - start < BUDGET):
        times.append(fn())
    return times


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    out = {"method": mp.get_start_method(), "python": sys.version.split()[0]}
    xs = list(range(N))
    with mp.Pool(2) as pool:
        pool.map(add1, range(2000), 1)  # warm-up
        t = repeat(lambda: timed(lambda: pool.map(add1, xs, 1)))
        out["w1_per_task"] = N / statistics.median(t)
        t = repeat(lambda: timed(lambda: [r.get() for r in [pool.apply_async(add1, (x,)) for x in xs]]))
        out["w1_per_call"] = N / statistics.median(t)
        t = repeat(lambda: timed(lambda: pool.map(add1, xs)), 5)
        out["w1_chunked"] = N / statistics.median(t)

        for _ in range(200):
            pool.apply(add1, (1,))
        rts = []
        for i in range(RT_CALLS):
            t0 = time.perf_counter()
            pool.apply(add1, (i,))
            rts.append(time.perf_counter() - t0)
        rts.sort()
        out["w2_median_us"] = statistics.median(rts) * 1e6
        out["w2_p90_us"] = rts[int(0.9 * len(rts))] * 1e6

        fib(FIB_N)
        out["w3_serial_ms"] = timed(lambda: [fib(FIB_N) for _ in range(FIB_TASKS)]) * 1e3
        pool.map(fib, [FIB_N] * 2, 1)
        t = repeat(lambda: timed(lambda: pool.map(fib, [FIB_N] * FIB_TASKS, 1)))
        out["w3_pool_ms"] = statistics.median(t) * 1e3

        payload = bytes(MIB)
        pool.map(size, [payload] * 10, 1)
        t = repeat(lambda: timed(lambda: pool.map(size, [payload] * PAYLOADS, 1)))
        out["w4_copy_mib_s"] = PAYLOADS / statistics.median(t)
    print(json.dumps(out))


def w5(method):
    ctx = mp.get_context(method)
    out = {"method": method}
    for which in ("first", "second"):
        t0 = time.perf_counter()
        pool = ctx.Pool(2)
        pool.apply(add1, (1,))
        t1 = time.perf_counter()
        pool.close()
        pool.join()
        t2 = time.perf_counter()
        out[which] = {"first_result_ms": (t1 - t0) * 1e3, "shutdown_ms": (t2 - t1) * 1e3}
        time.sleep(1)
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "w5":
        w5(sys.argv[2])
    else:
        main()
