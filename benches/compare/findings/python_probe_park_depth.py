import ctypes, sys, statistics, socket
import ivyrt
PAGE = 4096
STRIDE = (8 << 20) + (16 << 10)
RESERVE = (16 << 10) + int(sys.argv[2])
N = 50
def tops():
    out = []
    for line in open("/proc/self/maps"):
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if len(parts) == 5 and parts[1].startswith("rw") and (hi - lo) % STRIDE == 0:
            out += range(lo + STRIDE, hi + 1, STRIDE)
    return out
def depths():
    res = []
    for top in tops():
        m = top - RESERVE
        below = ctypes.string_at(m - 2 * PAGE, 2 * PAGE)
        nz = [i for i, b in enumerate(below) if b]
        if not nz:
            continue
        c = 2 * PAGE - nz[0]
        above = ctypes.string_at(m, 2048)
        nz2 = [i for i, b in enumerate(above) if b]
        py = nz2[-1] + 1 if nz2 else 0
        res.append((c, py))
    return res
def main():
    kind = sys.argv[1]
    parked = ivyrt.Semaphore(0)
    ev = ivyrt.Event(); q = ivyrt.Queue(); lk = ivyrt.Lock(); sem = ivyrt.Semaphore(0); cond = ivyrt.Condition(); conns = []
    if kind == "lock": lk.acquire()
    import threading
    ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(100); port = ls.getsockname()[1]
    held = []
    threading.Thread(target=lambda: [held.append(ls.accept()) for _ in range(N)], daemon=True).start()
    def f2(): ivyrt.sleep(1.0)
    def f1(): f2()
    def g3(): ivyrt.sleep(1.0)
    def g2(): g3()
    def g1(): g2()
    def sleeper():
        parked.release()
        if kind == "sleep": ivyrt.sleep(1.0)
        elif kind == "event": ev.wait()
        elif kind == "queue": q.get()
        elif kind == "deep2": f1()
        elif kind == "lock":
            with lk: pass
        elif kind == "sem":
            with sem: pass
        elif kind == "cond":
            with cond: cond.wait()
        elif kind == "recv":
            r, w = ivyrt.open_connection("127.0.0.1", port); conns.append(w)
            r.read(10)
        elif kind == "deep3": g1()
    if kind == "srvrecv":
        # A server's connection tasks parked in their first read: no
        # open_connection of their own (whose deeper calls leave stale bytes).
        def handler(reader, writer):
            parked.release()
            reader.read(10)
        srv = ivyrt.start_server(handler, "127.0.0.1", 0)
        sport = srv.sockets[0].getsockname()[1]
        def dial():
            for _ in range(N):
                held.append(socket.create_connection(("127.0.0.1", sport)))
        threading.Thread(target=dial, daemon=True).start()
        tasks = []
    else:
        tasks = [ivyrt.create_task(sleeper) for _ in range(N)]
    for _ in range(N): parked.acquire()
    ivyrt.sleep(0.05)
    d = depths()
    cs = sorted(x[0] for x in d); ps = sorted(x[1] for x in d)
    print(kind, "slots", len(d), "C median", statistics.median(cs), "max", cs[-3:], "py median", statistics.median(ps), "max", ps[-3:])
    for t in tasks: t.cancel()
ivyrt.run(main, workers=1)
