"""A parked task costs one resident stack page (CPython 3.11).

A task's data-stack root chunk lives in its ivy stack's top reserve, above its
first C frame, and the two meet mid-page (src/swap.rs, `ROOT_CHUNK_SPLIT`), so
a task parked in a sleep touches one 4 KiB page of its stack. With the root
chunk in the task's own frames (16 KiB below the top), it touched two.

Each case runs in a fresh interpreter, whose stacks are all new (a reused
stack keeps its previous task's pages until the pool trims them), and counts
the resident pages of every ivy stack slot through /proc/self/pagemap while
TASKS tasks are parked. A slot is found from ivy's slab layout: a slab is one
mapping of whole slots, each `[16 KiB guard | stack]`, the stack a power of
two: with `stack_size=S` (S a power of two) the slot stays S + 16 KiB, which
also checks that the reserve is taken out of S, not added to it.
"""

import json
import os
import sys

import pytest

pytestmark = [
    pytest.mark.skipif(sys.version_info[:2] != (3, 11),
                       reason="the root chunk is on the stack with 3.11's state swap only"),
    pytest.mark.skipif(not os.path.exists("/proc/self/pagemap") or os.sysconf("SC_PAGESIZE") != 4096,
                       reason="needs Linux's pagemap and 4 KiB pages"),
]

TASKS = 300

PROBE = """
import json, socket, struct, sys, threading
import ivyrt

PAGE = 4096
TASKS = {tasks}
STACK = {stack}
STRIDE = (STACK or 8 << 20) + (16 << 10)

def slot_pages():
    tops = []
    for line in open("/proc/self/maps"):
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if len(parts) == 5 and parts[1].startswith("rw") and (hi - lo) % STRIDE == 0:
            tops += range(lo + STRIDE, hi + 1, STRIDE)
    counts = []
    with open("/proc/self/pagemap", "rb") as pm:
        for top in tops:
            pages = min(STRIDE // PAGE, 64)  # the top 256 KiB of each stack
            pm.seek((top // PAGE - pages) * 8)
            entries = struct.unpack(f"{{pages}}Q", pm.read(8 * pages))
            resident = sum(e >> 63 for e in entries)
            if resident:
                counts.append(resident)
    return counts

KIND = {kind!r}

def main():
    parked = ivyrt.Semaphore(0)
    event, queue, lock = ivyrt.Event(), ivyrt.Queue(), ivyrt.Lock()
    sem, cond = ivyrt.Semaphore(0), ivyrt.Condition()
    if KIND == "lock":
        lock.acquire()
    def inner():
        ivyrt.sleep(1.0)
    def middle():
        inner()
    def sleeper():
        parked.release()
        if KIND == "sleep":
            ivyrt.sleep(1.0)
        elif KIND == "two_calls_deep":
            middle()
        elif KIND == "event":
            event.wait()
        elif KIND == "queue":
            queue.get()
        elif KIND == "lock":
            with lock:
                pass
        elif KIND == "semaphore":
            with sem:
                pass
        elif KIND == "condition":
            with cond:
                cond.wait()
    if KIND == "server_read":
        # A server's connection tasks, parked in their first read.
        def handler(reader, writer):
            parked.release()
            reader.read(10)
        server = ivyrt.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        clients = []
        def dial():
            for _ in range(TASKS):
                clients.append(socket.create_connection(("127.0.0.1", port)))
        threading.Thread(target=dial, daemon=True).start()
        tasks = []
    else:
        tasks = [ivyrt.create_task(sleeper) for _ in range(TASKS)]
    for _ in range(TASKS):
        parked.acquire()
    ivyrt.sleep(0.05)  # the last one released the semaphore, then parked
    counts = slot_pages()
    for t in tasks:
        t.cancel()
    print(json.dumps(counts))

ivyrt.run(main, workers={workers}, **({{"stack_size": STACK}} if STACK else {{}}))
"""


@pytest.mark.parametrize("workers,stack", [(1, None), (2, None), (1, 256 << 10)])
def test_a_parked_sleeper_has_one_resident_stack_page(run_script, workers, stack):
    assert_one_page(run_script, workers, stack, "sleep")


# Every primitive's park path (its C frames: ivy's, the binding's, the eval
# loop's) fits under the meeting point, and a sleep two Python calls below the
# task's function fits above it (findings/pystack.md, round 10), and so does a
# server's connection task waiting for its first bytes (C side 3,512 bytes,
# Python side 462). A task that opened its own connection first does not: the
# deeper calls of `open_connection` left bytes on both sides of the page.
@pytest.mark.parametrize(
    "kind", ["two_calls_deep", "event", "queue", "lock", "semaphore", "condition", "server_read"])
def test_a_task_parked_in_any_primitive_has_one_resident_stack_page(run_script, kind):
    assert_one_page(run_script, 1, None, kind)


def assert_one_page(run_script, workers, stack, kind):
    p = run_script(PROBE.format(tasks=TASKS, stack=stack or 0, workers=workers, kind=kind))
    assert p.returncode == 0, p.stderr
    counts = json.loads(p.stdout.strip().splitlines()[-1])
    # Every sleeper's slot is found, plus the main task's (all of one size:
    # slabs of two sizes may share one mapping, which this scan cannot split).
    assert len(counts) >= TASKS, counts
    one_page = sum(1 for c in counts if c == 1)
    assert one_page >= TASKS - 2, f"{one_page} of {len(counts)} slots with one page: {sorted(counts)[-10:]}"
    # (The main task's slot has a few pages; an unrelated mapping whose length
    # happens to be a multiple of the slot size may add a slot of any count.)
