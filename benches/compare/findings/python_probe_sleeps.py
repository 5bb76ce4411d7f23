"""Probe for findings/python.md (round 3): where py_sleeps' overhead goes.

    target/pyvenv/bin/python benches/compare/findings/python_probe_sleeps.py

The row's workload (bench_ivyrt.py `timers`, 10k tasks, same splitmix64
delays, same warm-up round) with a timestamp taken by each task as it starts,
before it sleeps. Prints: the delays' computation, the 10k spawns, the time
until the last task has started sleeping, and the row's overhead (total minus
the longest sleep), all in ms from the round's start.
"""
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "python"))
from bench import timer_ms  # noqa: E402

import ivyrt  # noqa: E402

N = 10000


def main():
    started = []

    def sleeper(s):
        started.append(time.perf_counter_ns())
        ivyrt.sleep(s)
        return 1

    def round_(n):
        t0 = time.perf_counter_ns()
        delays = [timer_ms(i, 1000) / 1000 for i in range(n)]
        t1 = time.perf_counter_ns()
        tasks = [ivyrt.create_task(sleeper, d) for d in delays]
        t2 = time.perf_counter_ns()
        done = sum(t.join() for t in tasks)
        t3 = time.perf_counter_ns()
        assert done == n
        return t0, t1, t2, t3, max(started)

    round_(N // 10)
    started.clear()
    t0, t1, t2, t3, last = round_(N)
    longest = max(timer_ms(i, 1000) for i in range(N))

    def ms(a, b):
        return (b - a) / 1e6

    print(f"splitmix {ms(t0, t1):6.1f}  spawn {ms(t1, t2):6.1f}  "
          f"last_started {ms(t0, last):6.1f}  overhead {ms(t0, t3) - longest:6.1f} ms")


ivyrt.run(main)
