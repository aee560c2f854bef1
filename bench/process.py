"""Python's side of bench/process.mjs (W6): an empty Process started and joined, per start method
(median of BENCH_RUNS after one warm-up), printed as JSON {method: {median_ms, p90_ms}}; then
forkserver with one start every BENCH_PACE_MS (0 skips it) as "forkserver_paced"."""
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

RUNS = int(os.environ.get("BENCH_RUNS", 20))
PACE_MS = int(os.environ.get("BENCH_PACE_MS", 300))


def empty():
    pass


def start_join(method, pause_ms):
    ctx = mp.get_context(method)
    times = []
    for i in range(RUNS + 1):
        time.sleep(pause_ms / 1e3)
        t0 = time.perf_counter()
        p = ctx.Process(target=empty)
        p.start()
        p.join()
        if i > 0:
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * len(times))]}


def main():
    out = {method: start_join(method, 0) for method in sys.argv[1:] or ("fork", "spawn", "forkserver")}
    if PACE_MS > 0 and not sys.argv[1:]:
        out["forkserver_paced"] = start_join("forkserver", PACE_MS)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
