"""Python's side of bench/idle.mjs: CPU time used by idle Pool workers, by a child blocked in
Queue.get() or Event.wait(), and by an idle Manager() server, over BENCH_IDLE_S seconds of wall
time (from /proc/<pid>/task/<tid>/schedstat), printed as JSON rows: (case, counted, {waiter, rest})
in CPU ms, `waiter` per worker/child/server, `rest` this (the calling) process."""
import json
import multiprocessing as mp
import os
import time

WINDOW = float(os.environ.get("BENCH_IDLE_S", 10))
SETTLE = 2.0


def cpu_ns(pid):
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def idle_cpu_ms(pids):
    time.sleep(SETTLE)
    before = [cpu_ns(p) for p in pids]
    self_before = cpu_ns(os.getpid())
    time.sleep(WINDOW)
    self_after = cpu_ns(os.getpid())
    after = [cpu_ns(p) for p in pids]
    used = sum(max(0, a - b) for a, b in zip(after, before)) / 1e6
    return {"waiter": used / len(pids), "rest": (self_after - self_before) / 1e6}


def add1(x):
    return x + 1


def getter(q, out):
    for item in iter(q.get, None):
        out.put(item)


def event_waiter(ready, go):
    ready.set()
    go.wait()


def main():
    rows = []
    for method in ("fork", "spawn", "forkserver"):
        ctx = mp.get_context(method)
        with ctx.Pool(2) as pool:
            pool.map(add1, [1, 2, 3, 4], 1)
            rows.append((f"Pool(2), {method}", "each worker", idle_cpu_ms([p.pid for p in pool._pool])))
    for method in ("fork", "spawn", "forkserver"):
        ctx = mp.get_context(method)
        q, res = ctx.Queue(), ctx.Queue()
        p = ctx.Process(target=getter, args=(q, res))
        p.start()
        q.put(1)
        res.get()
        rows.append((f"a child in Queue.get(), {method}", "the child", idle_cpu_ms([p.pid])))
        q.put(None)
        p.join()
        ready, go = ctx.Event(), ctx.Event()
        p = ctx.Process(target=event_waiter, args=(ready, go))
        p.start()
        ready.wait()
        rows.append((f"a child in Event.wait(), {method}", "the child", idle_cpu_ms([p.pid])))
        go.set()
        p.join()
    with mp.Manager() as m:
        d = m.dict()
        d["x"] = 1
        d["x"]
        rows.append(("Manager() server idle", "the server", idle_cpu_ms([m._process.pid])))
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
