#!/usr/bin/env python3
"""gevent's side of the Python rows of ivy's comparison suite.

    python3 bench_gevent.py <workload> [--n N] [--workers W] [--port P] [--no-warmup]

Same command line and RESULT lines as bench.py (asyncio) and the Rust binaries.
gevent runs every greenlet on one thread (its hub), so the result lines say
workers=1 whatever --workers says. No monkey-patching: the workloads call
gevent's own API (gevent.spawn, gevent.sleep, gevent.queue.Queue,
gevent.lock.BoundedSemaphore, gevent.server.StreamServer), the idiomatic
gevent program and the fastest one.
"""

import socket
import sys
import time

import gevent
import gevent.lock
import gevent.queue
import gevent.server

from bench import (BACKLOG, ECHO_BUF, MUTEX_TASKS, SEM_PERMITS, SEM_TASKS, Params, fail, proc_status_bytes, report,
                   timer_ms)

SYSTEM = "gevent"


def switch(p):
    """Two greenlets, each calling gevent.sleep(0) n/2 times: ns per switch."""
    def yielder(k):
        for _ in range(k):
            gevent.sleep(0)

    def round_(n):
        start = time.perf_counter_ns()
        gevent.joinall([gevent.spawn(yielder, n // 2), gevent.spawn(yielder, n // 2)])
        return time.perf_counter_ns() - start

    if p.warmup:
        round_(p.n // 10)
    report(p, "ns_per_switch", round_(p.n) / (p.n // 2 * 2), "ns")


def spawn_join(p):
    """n greenlets spawned, then each .get() in order: ns per task."""
    def ident(i):
        return i

    def round_(n):
        start = time.perf_counter_ns()
        greenlets = [gevent.spawn(ident, i) for i in range(n)]
        total = 0
        for g in greenlets:
            total += g.get()
        d = time.perf_counter_ns() - start
        if total != n * (n - 1) // 2:
            raise RuntimeError(f"wrong spawn_join sum {total}")
        return d

    if p.warmup:
        round_(p.n // 10)
    report(p, "ns_per_task", round_(p.n) / p.n, "ns")


def timers(p):
    """n greenlets sleeping 1..=1000 ms (splitmix64, seed 42), all joined: total ms."""
    def sleeper(s):
        gevent.sleep(s)
        return 1

    def round_(n, max_ms):
        delays = [timer_ms(i, max_ms) / 1000 for i in range(n)]  # untimed: not the runtime's cost
        start = time.perf_counter_ns()
        greenlets = [gevent.spawn(sleeper, s) for s in delays]
        done = sum(g.get() for g in greenlets)
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


def chan_pingpong(p):
    """Two greenlets bouncing a value over two gevent Queues of maxsize 1: ns per round trip."""
    def round_(n):
        ping, pong = gevent.queue.Queue(1), gevent.queue.Queue(1)

        def echo():
            while (v := ping.get()) is not None:
                pong.put(v + 1)

        g = gevent.spawn(echo)
        start = time.perf_counter_ns()
        for i in range(n):
            ping.put(i)
            pong.get()
        d = time.perf_counter_ns() - start
        ping.put(None)
        g.get()
        return d

    if p.warmup:
        round_(p.n // 10)
    report(p, "ns_per_roundtrip", round_(p.n) / p.n, "ns")


def mutex_contention(p):
    """64 greenlets each doing n/64 `with lock: counter += 1`: ns per lock.
    gevent's lock is a BoundedSemaphore(1) (what monkey-patched threading.Lock is)."""
    def round_(n):
        lock = gevent.lock.BoundedSemaphore(1)
        counter = 0
        per = n // MUTEX_TASKS

        def worker():
            nonlocal counter
            for _ in range(per):
                with lock:
                    counter += 1

        start = time.perf_counter_ns()
        gevent.joinall([gevent.spawn(worker) for _ in range(MUTEX_TASKS)], raise_error=True)
        d = time.perf_counter_ns() - start
        if counter != per * MUTEX_TASKS:
            raise RuntimeError(f"wrong counter {counter}")
        return d

    if p.warmup:
        round_(p.n // 10)
    report(p, "ns_per_lock", round_(p.n) / (p.n // MUTEX_TASKS * MUTEX_TASKS), "ns")


def semaphore(p):
    """64 greenlets sharing a gevent.lock.Semaphore(8), each doing n/64 times
    `with sem: gevent.sleep(0)`: ns per acquire."""
    def round_(n):
        sem = gevent.lock.Semaphore(SEM_PERMITS)
        holders, done = set(), []
        per = n // SEM_TASKS

        def worker(k):
            for _ in range(per):
                with sem:
                    holders.add(k)
                    if len(holders) > SEM_PERMITS:
                        raise RuntimeError(f"{len(holders)} holders of {SEM_PERMITS} permits")
                    gevent.sleep(0)
                    holders.discard(k)
                    done.append(1)

        start = time.perf_counter_ns()
        gevent.joinall([gevent.spawn(worker, k) for k in range(SEM_TASKS)], raise_error=True)
        d = time.perf_counter_ns() - start
        if len(done) != per * SEM_TASKS:
            raise RuntimeError(f"wrong count {len(done)}")
        return d

    if p.warmup:
        round_(p.n // 10)
    report(p, "ns_per_acquire", round_(p.n) / (p.n // SEM_TASKS * SEM_TASKS), "ns")


def tcp_echo(p):
    """TCP echo server (gevent.server.StreamServer, a greenlet per connection):
    read up to 4 KiB, write back exactly that, until EOF."""
    def handle(sock, _addr):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while data := sock.recv(ECHO_BUF):
                sock.sendall(data)
        except OSError:
            pass

    server = gevent.server.StreamServer(("127.0.0.1", p.port), handle, backlog=BACKLOG)
    server.start()
    print(f"LISTENING port={server.server_port}", flush=True)
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
        print("\n".join(WORKLOADS))
        return
    if not argv or argv[0] not in WORKLOADS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    name = argv[0]
    n, fn = WORKLOADS[name]
    warmup, port = True, 0
    it = iter(argv[1:])
    for a in it:
        if a == "--n":
            n = int(next(it))
        elif a == "--workers":
            next(it)  # one hub thread
        elif a == "--port":
            port = int(next(it))
        elif a == "--no-warmup":
            warmup = False
    p = Params(SYSTEM, name, n, warmup, port)
    try:
        fn(p)
    except Exception as e:  # noqa: BLE001 - any failure becomes a status=fail line
        fail(p, "all", "-", f"{type(e).__name__}: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
