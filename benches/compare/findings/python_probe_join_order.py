"""Probe for findings/python.md (round 3): what the join ping-pong costs.

    valgrind --tool=callgrind target/pyvenv/bin/python \
        benches/compare/findings/python_probe_join_order.py N join|last

Spawns N tasks returning their index and joins them all (one worker).
`join`: in order, as the py_spawn_join row does: each join finds its task not
started yet and parks the main task, which the task wakes as it ends. `last`:
joins the last task first; tasks start in FIFO order, so every task has ended
by then and no later join parks. (Ir(2N) - Ir(N)) / N of the two modes is the
per-task cost of one park + resume of the joining task.
"""
import sys

import ivyrt

n, mode = int(sys.argv[1]), sys.argv[2]


def ident(i):
    return i


def main():
    tasks = [ivyrt.create_task(ident, i) for i in range(n)]
    if mode == "last":
        tasks[-1].join()
    return sum(t.join() for t in tasks)


assert ivyrt.run(main) == n * (n - 1) // 2
