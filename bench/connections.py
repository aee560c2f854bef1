"""Python's side of bench/connections.mjs: Pipe round trips and Queue throughput, printed as JSON.

    python3 bench/connections.py pipe METHOD     echo round trips/s through multiprocessing.Pipe()
    python3 bench/connections.py queue METHOD    items/s through Queue and SimpleQueue

The shapes are the same as in bench/connections.mjs: one echo child per pipe (64 B and 1 MiB
send_bytes/recv_bytes, then send/recv of a 64-character string); one producer child per queue
that puts a "ready" item, waits for an Event, then puts N items of bytes(64), consumed by the main
process. Start-up is excluded: the clock starts when the child is running. Every step is bounded by
SIGALRM (BENCH_STEP_TIMEOUT_S); children are daemons and are terminated on any failure.
"""
import json
import multiprocessing as mp
import os
import signal
import sys
import time

PIPE_SECONDS = float(os.environ.get("BENCH_PIPE_S", 1.0))
QUEUE_N = int(os.environ.get("BENCH_QUEUE_N", 300_000))
QUEUE_SECONDS = float(os.environ.get("BENCH_QUEUE_S", 6.0))
STEP_TIMEOUT = int(os.environ.get("BENCH_STEP_TIMEOUT_S", 30))
MIB = 1 << 20
STRING = "x" * 64


class StepTimeout(Exception):
    pass


def on_alarm(signum, frame):
    raise StepTimeout(f"step timed out after {STEP_TIMEOUT} s")


def on_term(signum, frame):
    raise SystemExit(1)  # so that the daemonic children are terminated at exit


def echo(conn):
    while True:
        b = conn.recv_bytes()
        if not b:
            break
        conn.send_bytes(b)
    while True:
        o = conn.recv()
        if o is None:
            break
        conn.send(o)
    conn.close()


def round_trips(one):
    for _ in range(50):
        one()
    n, t0 = 0, time.perf_counter()
    deadline = t0 + PIPE_SECONDS
    while True:
        for _ in range(10):
            one()
        n += 10
        t = time.perf_counter()
        if t >= deadline:
            return n / (t - t0)


def pipe(method):
    ctx = mp.get_context(method)
    a, b = ctx.Pipe()
    p = ctx.Process(target=echo, args=(b,), daemon=True)
    p.start()
    b.close()
    out = {"method": method}
    try:
        for key, payload in (("bytes64", bytes(64)), ("bytes1m", bytes(MIB))):
            signal.alarm(STEP_TIMEOUT)

            def one():
                a.send_bytes(payload)
                a.recv_bytes()

            out[key] = round_trips(one)
        a.send_bytes(b"")
        signal.alarm(STEP_TIMEOUT)

        def one_obj():
            a.send(STRING)
            a.recv()

        out["obj64"] = round_trips(one_obj)
        a.send(None)
        signal.alarm(STEP_TIMEOUT)
        p.join()
    finally:
        signal.alarm(0)
        if p.is_alive():
            p.terminate()
    return out


def produce(q, go, n, simple):
    item = bytes(64)
    q.put(b"ready")
    go.wait()
    put = q.put
    for _ in range(n):
        put(item)


def queue_rate(ctx, simple):
    q = ctx.SimpleQueue() if simple else ctx.Queue()
    go = ctx.Event()
    p = ctx.Process(target=produce, args=(q, go, QUEUE_N, simple), daemon=True)
    p.start()
    try:
        signal.alarm(STEP_TIMEOUT)
        assert q.get() == b"ready"
        get = q.get
        t0 = time.perf_counter()
        deadline = t0 + QUEUE_SECONDS
        go.set()
        got = 0
        while got < QUEUE_N:
            for _ in range(min(1000, QUEUE_N - got)):
                item = get()
            got += min(1000, QUEUE_N - got)
            if time.perf_counter() >= deadline:
                break
        t = time.perf_counter() - t0
        assert len(item) == 64
        if got == QUEUE_N:
            p.join(STEP_TIMEOUT)
        return {"rate": got / t, "items": got, "seconds": t}
    finally:
        signal.alarm(0)
        if p.is_alive():
            p.terminate()
            p.join(5)


def queue(method):
    ctx = mp.get_context(method)
    return {"method": method, "queue": queue_rate(ctx, False), "simple": queue_rate(ctx, True)}


if __name__ == "__main__":
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    what, method = sys.argv[1], sys.argv[2]
    result = pipe(method) if what == "pipe" else queue(method)
    result["python"] = sys.version.split()[0]
    print(json.dumps(result))
