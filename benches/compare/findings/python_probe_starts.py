"""Probe for findings/python.md ("Round 5"): the cost of a Python task's start,
apart from everything else py_sleeps does.

    target/pyvenv/bin/python benches/compare/findings/python_probe_starts.py [N] [ROUNDS] [event|sleep]

One worker. Each round creates N tasks that record their start and park (on an
Event, or in ivyrt.sleep); the main task yields until all have started.
Prints the spawn time and the start-and-park time per task, averaged over the
rounds (the first round carves fresh stacks; the later ones reuse warm slots).
Profile it with `perf record --call-graph dwarf`.
"""
import sys, time
import ivyrt
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
R = int(sys.argv[2]) if len(sys.argv) > 2 else 20
MODE = sys.argv[3] if len(sys.argv) > 3 else "event"
def main():
    ev = ivyrt.Event()
    started = []
    def waiter(s):
        started.append(1)
        ev.wait()
        return 1
    def sleeper(s):
        started.append(1)
        ivyrt.sleep(s)
        return 1
    fn = waiter if MODE == "event" else sleeper
    tot_spawn = tot_start = 0
    for r in range(R):
        started.clear()
        t0 = time.perf_counter_ns()
        tasks = [ivyrt.create_task(fn, 0.05) for i in range(N)]
        t1 = time.perf_counter_ns()
        while len(started) < N:
            ivyrt.sleep(0)
        t2 = time.perf_counter_ns()
        ev.set()
        assert sum(t.join() for t in tasks) == N
        ev.clear()
        tot_spawn += t1 - t0; tot_start += t2 - t1
    print(f"{MODE}: spawn {tot_spawn/R/N:.0f} ns/task  start+park {tot_start/R/N:.0f} ns/task")
ivyrt.run(main)
