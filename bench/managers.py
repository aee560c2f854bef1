# Manager().dict() proxy calls per second in CPython, for bench/managers.mjs (prints JSON).
import json, sys, threading, time
import multiprocessing as mp

def rate(fn, n):
    fn(n // 10)  # warm-up
    t = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t)

if __name__ == '__main__':
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    with mp.Manager() as m:
        d = m.dict()
        d['x'] = 0
        def sets(k):
            for i in range(k): d['x'] = i
        def gets(k):
            for i in range(k): d['x']
        def concurrent(k):
            ts = [threading.Thread(target=gets, args=(k // 4,)) for _ in range(4)]
            for t in ts: t.start()
            for t in ts: t.join()
        print(json.dumps({'set': rate(sets, n), 'get': rate(gets, n), 'concurrent': rate(concurrent, n),
                          'version': sys.version.split()[0]}))
