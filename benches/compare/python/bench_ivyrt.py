#!/usr/bin/env python3
"""ivyrt's side (the Python package, bindings/python) of the Python rows of ivy's
comparison suite.

    python bench_ivyrt.py <workload> [--n N] [--workers W] [--port P] [--no-warmup]

Same command line and RESULT lines as bench.py (asyncio) and the Rust binaries.
--workers is ivyrt.run's `workers=` (the harness runs the system `ivyrt` with 1,
asyncio's model, and `ivyrt-w2` with 2). Run with the interpreter of the venv
where `pip install ./bindings/python` put ivyrt (run.sh: target/pyvenv), the
same CPython as the other Python systems. The code is the asyncio workload of
bench.py in sync form: create_task/join, ivyrt.Queue, ivyrt.Lock, ivyrt.sleep,
ivyrt.start_server streams.

Counts are summed from joined results, not from a shared `counter += 1`, so
that they stay exact with workers=2 (where two tasks may run Python at once,
interleaved by the GIL between bytecodes); the lock row's counter is under the
lock, which is the point of that row.
"""

import socket
import sys
import time

from bench import (BACKLOG, ECHO_BUF, MUTEX_TASKS, SEM_PERMITS, SEM_TASKS, Params, fail, proc_status_bytes, report,
                   timer_ms)

SYSTEM = "ivyrt"


def switch(p, ivyrt):
    """Two tasks, each calling yield_now() n/2 times: ns per switch. With
    workers=2 each task may get its own worker and yield_now then finds nothing
    else to run; the row is meant for workers=1."""
    def yielder(k):
        for _ in range(k):
            ivyrt.yield_now()

    def round_(n):
        start = time.perf_counter_ns()
        ivyrt.gather(ivyrt.create_task(yielder, n // 2), ivyrt.create_task(yielder, n // 2))
        return time.perf_counter_ns() - start

    if p.warmup:
        round_(p.n // 10)
    report(p, "ns_per_switch", round_(p.n) / (p.n // 2 * 2), "ns")


def spawn_join(p, ivyrt):
    """n tasks created, then joined one by one: ns per task."""
    def ident(i):
        return i

    def round_(n):
        start = time.perf_counter_ns()
        tasks = [ivyrt.create_task(ident, i) for i in range(n)]
        total = 0
        for t in tasks:
            total += t.join()
        d = time.perf_counter_ns() - start
        if total != n * (n - 1) // 2:
            raise RuntimeError(f"wrong spawn_join sum {total}")
        return d

    if p.warmup:
        round_(p.n // 10)
    report(p, "ns_per_task", round_(p.n) / p.n, "ns")


def timers(p, ivyrt):
    """n tasks sleeping 1..=1000 ms (splitmix64, seed 42), all joined: total ms."""
    def sleeper(s):
        ivyrt.sleep(s)
        return 1

    def round_(n, max_ms):
        delays = [timer_ms(i, max_ms) / 1000 for i in range(n)]  # untimed: not the runtime's cost
        start = time.perf_counter_ns()
        tasks = [ivyrt.create_task(sleeper, s) for s in delays]
        done = sum(t.join() for t in tasks)
        return done, time.perf_counter_ns() - start

    if p.warmup:
        round_(p.n // 10, 10)
    longest = max(timer_ms(i, 1000) for i in range(p.n))
    done, d = round_(p.n, 1000)
    d /= 1e6
    if done != p.n:
        raise RuntimeError(f"only {done} of {p.n} sleeps completed")
    report(p, "total_ms", d, "ms", done)
    report(p, "overhead_ms", d - longest, "ms", done)
    report(p, "peak_rss", proc_status_bytes("VmHWM") / (1 << 20), "MiB", done)


def chan_pingpong(p, ivyrt):
    """Two tasks bouncing a value over two ivyrt.Queue(1): ns per round trip."""
    def round_(n):
        ping, pong = ivyrt.Queue(1), ivyrt.Queue(1)

        def echo():
            while (v := ping.get()) is not None:
                pong.put(v + 1)

        t = ivyrt.create_task(echo)
        start = time.perf_counter_ns()
        for i in range(n):
            ping.put(i)
            pong.get()
        d = time.perf_counter_ns() - start
        ping.put(None)
        t.join()
        return d

    if p.warmup:
        round_(p.n // 10)
    report(p, "ns_per_roundtrip", round_(p.n) / p.n, "ns")


def mutex_contention(p, ivyrt):
    """64 tasks each doing n/64 `with lock: counter += 1`: ns per lock."""
    def round_(n):
        lock = ivyrt.Lock()
        counter = 0
        per = n // MUTEX_TASKS

        def worker():
            nonlocal counter
            for _ in range(per):
                with lock:
                    counter += 1

        start = time.perf_counter_ns()
        ivyrt.gather(*[ivyrt.create_task(worker) for _ in range(MUTEX_TASKS)])
        d = time.perf_counter_ns() - start
        if counter != per * MUTEX_TASKS:
            raise RuntimeError(f"wrong counter {counter}")
        return d

    if p.warmup:
        round_(p.n // 10)
    report(p, "ns_per_lock", round_(p.n) / (p.n // MUTEX_TASKS * MUTEX_TASKS), "ns")


def semaphore(p, ivyrt):
    """64 tasks sharing an ivyrt.Semaphore(8), each doing n/64 times
    `with sem: yield_now()`: ns per acquire. The holders are a set (add and
    discard are atomic under the GIL, so the check holds with workers=2 too)."""
    def round_(n):
        sem = ivyrt.Semaphore(SEM_PERMITS)
        holders, done = set(), []
        per = n // SEM_TASKS

        def worker(k):
            for _ in range(per):
                with sem:
                    holders.add(k)
                    if len(holders) > SEM_PERMITS:
                        raise RuntimeError(f"{len(holders)} holders of {SEM_PERMITS} permits")
                    ivyrt.yield_now()
                    holders.discard(k)
                    done.append(1)

        start = time.perf_counter_ns()
        ivyrt.gather(*[ivyrt.create_task(worker, k) for k in range(SEM_TASKS)])
        d = time.perf_counter_ns() - start
        if len(done) != per * SEM_TASKS:
            raise RuntimeError(f"wrong count {len(done)}")
        return d

    if p.warmup:
        round_(p.n // 10)
    report(p, "ns_per_acquire", round_(p.n) / (p.n // SEM_TASKS * SEM_TASKS), "ns")


def tcp_echo(p, ivyrt):
    """TCP echo server (ivyrt.start_server, a task per connection): read up to
    4 KiB, write back exactly that, until EOF."""
    def handle(reader, writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while data := reader.read(ECHO_BUF):
                writer.write(data)
                writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    try:
        server = ivyrt.start_server(handle, "127.0.0.1", p.port, backlog=BACKLOG)
    except TypeError:  # no backlog= keyword: the package's own default
        server = ivyrt.start_server(handle, "127.0.0.1", p.port)
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING port={port}", flush=True)
    with server:
        server.serve_forever()


WORKLOADS = {
    "switch": (2_000_000, switch),
    "spawn_join": (1_000_000, spawn_join),
    "timers": (1_000_000, timers),
    "chan_pingpong": (200_000, chan_pingpong),
    "mutex_contention": (2_000_000, mutex_contention),
    "semaphore": (1_000_000, semaphore),
    "tcp_echo": (0, tcp_echo),
}


def main(argv):
    if argv[:1] == ["--list"]:
        import ivyrt  # noqa: F401 - not installed: the harness leaves the system out
        print("\n".join(WORKLOADS))
        return
    if not argv or argv[0] not in WORKLOADS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    name = argv[0]
    n, fn = WORKLOADS[name]
    warmup, port, workers = True, 0, 1
    it = iter(argv[1:])
    for a in it:
        if a == "--n":
            n = int(next(it))
        elif a == "--workers":
            workers = int(next(it))
        elif a == "--port":
            port = int(next(it))
        elif a == "--no-warmup":
            warmup = False
    p = Params(SYSTEM, name, n, warmup, port)
    p.workers = workers
    try:
        import ivyrt

        ivyrt.run(fn, p, ivyrt, workers=workers)
    except Exception as e:  # noqa: BLE001 - any failure becomes a status=fail line
        fail(p, "all", "-", f"{type(e).__name__}: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
