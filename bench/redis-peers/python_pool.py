"""Python's local multiprocessing.Pool(2) on bench/redis.mjs's workloads (x => 2x), as JSON."""
import json
import multiprocessing as mp
import statistics
import sys
import time


def double(x):
    return 2 * x


def main(n, round_trips):
    with mp.Pool(2) as pool:
        pool.map(double, range(2000), 1)
        per_task = []
        for _ in range(3):
            t = time.perf_counter()
            pool.map(double, range(n), 1)
            per_task.append(n / (time.perf_counter() - t))
        chunked = []
        for _ in range(5):
            t = time.perf_counter()
            pool.map(double, range(n))
            chunked.append(n / (time.perf_counter() - t))
        trips = []
        for i in range(round_trips):
            t = time.perf_counter()
            pool.apply(double, (i,))
            trips.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"perTask": statistics.median(per_task), "chunked": statistics.median(chunked),
                      "roundTripMs": statistics.median(trips)}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
