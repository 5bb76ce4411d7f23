#!/usr/bin/env python3
"""Python's side of ivy's comparison suite: asyncio, optionally on uvloop's loop.

Same command line and RESULT lines as the Rust binaries (../bench-common/src/lib.rs):

    python3 bench.py [--loop asyncio|uvloop] <workload> [--n N] [--workers W] [--port P] [--no-warmup]

asyncio runs every task on one thread whatever --workers says, so the result lines
say workers=1. Standard library only (uvloop only with --loop uvloop). The servers
(tcp_echo, http_hello) are asyncio.start_server streams, the same code on either loop.
"""

import asyncio
import os
import socket
import sys
import time

MASK = (1 << 64) - 1

# The sync workloads' shape, shared by every system.
MPMC_PRODUCERS, MPMC_CONSUMERS, MPMC_CAPACITY = 4, 4, 1024
MUTEX_TASKS = 64
SEM_TASKS, SEM_PERMITS = 64, 8

# The server workloads' buffers and HTTP response (bench-common's ECHO_BUF,
# HTTP_BUF, HTTP_RESPONSE).
ECHO_BUF = HTTP_BUF = 4096
HTTP_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\n"
                 b"Hello, World!")
# start_server's default backlog is 100; every other server listens with at
# least 1024, and 1000 connections arrive at once.
BACKLOG = 1024  # bench-common SERVER_BACKLOG


class Params:
    def __init__(self, system, workload, n, warmup, port=0):
        self.system, self.workload, self.n, self.warmup = system, workload, n, warmup
        self.workers = 1
        self.port = port


def report(p, metric, value, unit, check=None):
    line = (f"RESULT workload={p.workload} system={p.system} metric={metric} "
            f"value={value:.6f} unit={unit} n={p.n} workers={p.workers}")
    if check is not None:
        line += f" check={check}"
    print(line, flush=True)


def fail(p, metric, unit, error):
    print(f"RESULT workload={p.workload} system={p.system} metric={metric} status=fail "
          f"value=nan unit={unit} n={p.n} workers={p.workers} error={' '.join(str(error).split())}",
          flush=True)


def proc_status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def splitmix64(x):
    """bench-common's splitmix64, bit for bit."""
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def timer_ms(i, max_ms):
    return 1 + splitmix64(42 + i) % max_ms


async def switch(p):
    """Two tasks, each awaiting sleep(0) n/2 times (one thread): ns per switch."""
    async def yielder(k):
        for _ in range(k):
            await asyncio.sleep(0)

    async def round_(n):
        start = time.perf_counter_ns()
        await asyncio.gather(yielder(n // 2), yielder(n // 2))
        return time.perf_counter_ns() - start

    if p.warmup:
        await round_(p.n // 10)
    d = await round_(p.n)
    report(p, "ns_per_switch", d / (p.n // 2 * 2), "ns")


async def spawn_join(p):
    """n tasks created, then awaited one by one: ns per task."""
    async def ident(i):
        return i

    async def round_(n):
        start = time.perf_counter_ns()
        tasks = [asyncio.create_task(ident(i)) for i in range(n)]
        total = 0
        for t in tasks:
            total += await t
        d = time.perf_counter_ns() - start
        if total != n * (n - 1) // 2:
            raise RuntimeError(f"wrong spawn_join sum {total}")
        return d

    if p.warmup:
        await round_(p.n // 10)
    report(p, "ns_per_task", await round_(p.n) / p.n, "ns")


async def skynet_node(num, size, div):
    if size == 1:
        return num
    sub = size // div
    children = [asyncio.create_task(skynet_node(num + i * sub, sub, div)) for i in range(div)]
    return sum(await asyncio.gather(*children))


async def skynet(p):
    """n leaf tasks in a 10-ary tree, every node a task: total ms."""
    async def round_(n):
        start = time.perf_counter_ns()
        total = await skynet_node(0, n, 10)
        d = time.perf_counter_ns() - start
        if total != n * (n - 1) // 2:
            raise RuntimeError(f"WRONG SKYNET SUM: got {total}, expected {n * (n - 1) // 2}")
        return total, d

    if p.warmup:
        await round_(p.n // 10)
    total, d = await round_(p.n)
    report(p, "total_ms", d / 1e6, "ms", total)


async def timers(p):
    """n tasks sleeping 1..=1000 ms (splitmix64, seed 42), all awaited: total ms."""
    done = 0

    async def sleeper(s):
        nonlocal done
        await asyncio.sleep(s)
        done += 1

    async def round_(n, max_ms):
        delays = [timer_ms(i, max_ms) / 1000 for i in range(n)]  # untimed: not the runtime's cost
        start = time.perf_counter_ns()
        tasks = [asyncio.create_task(sleeper(s)) for s in delays]
        for t in tasks:
            await t
        return time.perf_counter_ns() - start

    if p.warmup:
        await round_(p.n // 10, 10)
    done = 0
    longest = max(timer_ms(i, 1000) for i in range(p.n))
    d = await round_(p.n, 1000) / 1e6
    if done != p.n:
        raise RuntimeError(f"only {done} of {p.n} sleeps completed")
    report(p, "total_ms", d, "ms", done)
    report(p, "overhead_ms", d - longest, "ms", done)
    report(p, "peak_rss", proc_status_bytes("VmHWM") / (1 << 20), "MiB", done)


async def idle_memory(p):
    """RSS growth per task parked in a long sleep."""
    started = 0

    async def idle():
        nonlocal started
        started += 1
        await asyncio.sleep(3600)

    before = proc_status_bytes("VmRSS")
    tasks = [asyncio.create_task(idle()) for _ in range(p.n)]
    while started < p.n:
        await asyncio.sleep(0.001)
    after = proc_status_bytes("VmRSS")
    report(p, "bytes_per_task", (after - before) / p.n, "bytes")
    sys.stdout.flush()
    os._exit(0)  # cancelling a million tasks is not what is measured
    del tasks


async def chan_pingpong(p):
    """Two tasks bouncing a value over two Queues of capacity 1: ns per round trip."""
    async def round_(n):
        ping, pong = asyncio.Queue(1), asyncio.Queue(1)

        async def echo():
            while (v := await ping.get()) is not None:
                await pong.put(v + 1)

        t = asyncio.create_task(echo())
        start = time.perf_counter_ns()
        for i in range(n):
            await ping.put(i)
            await pong.get()
        d = time.perf_counter_ns() - start
        await ping.put(None)
        await t
        return d

    if p.warmup:
        await round_(p.n // 10)
    report(p, "ns_per_roundtrip", await round_(p.n) / p.n, "ns")


async def mpmc_bounded(p):
    """4 producers, 4 consumers, one Queue(maxsize=1024): ns per item."""
    async def round_(n):
        q = asyncio.Queue(MPMC_CAPACITY)

        async def producer(k):
            for i in range(k, n, MPMC_PRODUCERS):
                await q.put(i)

        async def consumer():
            s = 0
            while (v := await q.get()) is not None:
                s += v
            return s

        start = time.perf_counter_ns()
        consumers = [asyncio.create_task(consumer()) for _ in range(MPMC_CONSUMERS)]
        await asyncio.gather(*(producer(k) for k in range(MPMC_PRODUCERS)))
        for _ in range(MPMC_CONSUMERS):
            await q.put(None)
        total = sum(await asyncio.gather(*consumers))
        d = time.perf_counter_ns() - start
        if total != n * (n - 1) // 2:
            raise RuntimeError(f"wrong mpmc sum {total}")
        return d

    if p.warmup:
        await round_(p.n // 10)
    report(p, "ns_per_item", await round_(p.n) / p.n, "ns")


async def mutex_contention(p):
    """64 tasks each doing n/64 `async with lock: counter += 1`: ns per lock."""
    async def round_(n):
        lock = asyncio.Lock()
        counter = 0
        per = n // MUTEX_TASKS

        async def worker():
            nonlocal counter
            for _ in range(per):
                async with lock:
                    counter += 1

        start = time.perf_counter_ns()
        await asyncio.gather(*(worker() for _ in range(MUTEX_TASKS)))
        d = time.perf_counter_ns() - start
        if counter != per * MUTEX_TASKS:
            raise RuntimeError(f"wrong counter {counter}")
        return d

    if p.warmup:
        await round_(p.n // 10)
    report(p, "ns_per_lock", await round_(p.n) / (p.n // MUTEX_TASKS * MUTEX_TASKS), "ns")


async def semaphore(p):
    """64 tasks sharing an asyncio.Semaphore(8), each doing n/64 times
    `async with sem: await asyncio.sleep(0)`: ns per acquire."""
    async def round_(n):
        sem = asyncio.Semaphore(SEM_PERMITS)
        inside = done = 0
        per = n // SEM_TASKS

        async def worker():
            nonlocal inside, done
            for _ in range(per):
                async with sem:
                    inside += 1
                    if inside > SEM_PERMITS:
                        raise RuntimeError(f"{inside} holders of {SEM_PERMITS} permits")
                    await asyncio.sleep(0)
                    inside -= 1
                    done += 1

        start = time.perf_counter_ns()
        await asyncio.gather(*(worker() for _ in range(SEM_TASKS)))
        d = time.perf_counter_ns() - start
        if done != per * SEM_TASKS or sem.locked():
            raise RuntimeError(f"wrong count {done}")
        return d

    if p.warmup:
        await round_(p.n // 10)
    report(p, "ns_per_acquire", await round_(p.n) / (p.n // SEM_TASKS * SEM_TASKS), "ns")


async def serve_forever(p, handle):
    """Server workloads: binds 127.0.0.1:port, prints LISTENING port=<p>, then serves
    every connection with `handle(reader, writer)` (TCP_NODELAY set) until killed."""
    async def on_connect(reader, writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await handle(reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", p.port, backlog=BACKLOG)
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING port={port}", flush=True)
    async with server:
        await server.serve_forever()


async def tcp_echo(p):
    """TCP echo server: read up to 4 KiB, write back exactly that, until EOF."""
    async def handle(reader, writer):
        while data := await reader.read(ECHO_BUF):
            writer.write(data)
            await writer.drain()

    await serve_forever(p, handle)


def http_requests(buf):
    """bench-common's http_requests: (complete requests at the start of buf, bytes they take)."""
    count = used = 0
    while (i := buf.find(b"\r\n\r\n", used)) >= 0:
        count += 1
        used = i + 4
    return count, used


async def http_hello(p):
    """HTTP hello server: the suite's minimal keep-alive handling, one fixed response per
    complete request in the buffer (the same work as every other system)."""
    async def handle(reader, writer):
        buf = bytearray()
        while len(buf) < HTTP_BUF:
            data = await reader.read(HTTP_BUF - len(buf))
            if not data:
                break
            buf += data
            count, used = http_requests(buf)
            if count:
                writer.write(HTTP_RESPONSE * count)
                del buf[:used]
                await writer.drain()

    await serve_forever(p, handle)


WORKLOADS = {
    "switch": (2_000_000, switch),
    "spawn_join": (1_000_000, spawn_join),
    "skynet": (1_000_000, skynet),
    "timers": (1_000_000, timers),
    "idle_memory": (100_000, idle_memory),
    "chan_pingpong": (200_000, chan_pingpong),
    "mpmc_bounded": (2_000_000, mpmc_bounded),
    "mutex_contention": (2_000_000, mutex_contention),
    "semaphore": (1_000_000, semaphore),
    "tcp_echo": (0, tcp_echo),
    "http_hello": (0, http_hello),
}


def usage():
    print(__doc__, file=sys.stderr)
    sys.exit(2)


def main(argv):
    loop = "asyncio"
    if argv[:1] == ["--loop"]:
        loop, argv = argv[1], argv[2:]
    if argv[:1] == ["--list"]:
        print("\n".join(WORKLOADS))
        return
    if not argv or argv[0] not in WORKLOADS:
        usage()
    name = argv[0]
    n, fn = WORKLOADS[name]
    warmup, port = True, 0
    it = iter(argv[1:])
    for a in it:
        if a == "--n":
            n = int(next(it))
        elif a == "--workers":
            next(it)  # asyncio has one thread
        elif a == "--port":
            port = int(next(it))
        elif a == "--no-warmup":
            warmup = False
        else:
            usage()
    p = Params(loop, name, n, warmup, port)
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError as e:
            fail(p, "all", "-", f"uvloop not installed: {e}")
            sys.exit(1)
        runner = uvloop.run
    elif loop == "asyncio":
        runner = asyncio.run
    else:
        usage()
    try:
        runner(fn(p))
    except Exception as e:  # noqa: BLE001 - any failure becomes a status=fail line
        fail(p, "all", "-", f"{type(e).__name__}: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
