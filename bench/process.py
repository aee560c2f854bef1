"""Python's side of bench/process.mjs (W6): an empty Process started and joined, per start method
(median of BENCH_RUNS after one warm-up), printed as JSON {method: {median_ms, p90_ms}}."""
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

RUNS = int(os.environ.get("BENCH_RUNS", 20))


def empty():
    pass


def main():
    out = {}
    for method in sys.argv[1:] or ("fork", "spawn", "forkserver"):
        ctx = mp.get_context(method)
        times = []
        for i in range(RUNS + 1):
            t0 = time.perf_counter()
            p = ctx.Process(target=empty)
            p.start()
            p.join()
            if i > 0:
                times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        out[method] = {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * len(times))]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
