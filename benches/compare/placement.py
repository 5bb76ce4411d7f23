#!/usr/bin/env python3
"""Where ivy homes the connection tasks of its server rows.

    python3 placement.py [--runs 20] [--workers W] [--rows ROW[,ROW...]]
                         [--bin PATH [--legacy]] [--out results/placement.txt]

A started ivy task never changes worker, so the worker that first runs a
connection task serves that connection for its whole life. For each server row
(tcp_echo_10, tcp_echo_100, tcp_echo_1000, http_hello) this starts ivy-bench's
server with IVY_BENCH_PLACEMENT=1 (it then names its connection tasks and
prints, to stderr, how many of them each worker is home to whenever that
changes), drives it with the row's load generator exactly as harness.py does
(--quick durations), and keeps the last report taken with every connection
open. Per row it prints each run's per-worker counts and the worst deviation
from an even share over all runs (target: every worker within +-25%).

The raw lines go to --out; a markdown table goes to stdout.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import harness

ROWS = ["tcp_echo_10", "tcp_echo_100", "tcp_echo_1000", "http_hello"]
REPORT = re.compile(r"conn tasks per worker \[([0-9, ]*)\]")
# ivy-bench before placement.py existed: every task, workers with none left
# out, once a second (--legacy; includes the accept loop and the printer).
LEGACY = re.compile(r"ivy-bench: tasks per worker \[([0-9, ]*)\]")


def one_run(binary, row, workers, legacy=False):
    """Per-worker home counts of the row's connections, or an error string."""
    env = dict(os.environ, IVY_BENCH_PLACEMENT="1")
    cmd = [binary, row.workload, "--port", "0", "--workers", str(workers)]
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        try:
            port = harness.wait_listening(proc, harness.SERVER_START_TIMEOUT_S)
            if port is None:
                return "server did not start"
            try:
                harness.run_load("ivy", row, port, workers, True)
            except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as e:
                return f"load failed: {e}"
        finally:
            harness.stop(proc)
        err.seek(0)
        pattern, extra = (LEGACY, 2) if legacy else (REPORT, 0)
        reports = [[int(x) for x in m.group(1).split(",") if x.strip()]
                   for m in map(pattern.search, err.read().splitlines()) if m]
    reports = [r + [0] * (workers - len(r)) for r in reports]
    full = [r for r in reports if sum(r) == row.n + extra]
    if not full:
        seen = max(reports, key=sum) if reports else []
        return f"no report with all {row.n} connections open (most: {seen})"
    return full[-1]


def deviation(counts):
    """Worst |count - share| / share over the workers, in percent."""
    share = sum(counts) / len(counts)
    return max(abs(c - share) for c in counts) / share * 100


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--bin", default=str(harness.TARGET / "release/ivy-bench"))
    ap.add_argument("--legacy", action="store_true",
                    help="--bin is an ivy-bench from before placement.py (its counts include "
                         "the accept loop and the printer task)")
    ap.add_argument("--out", default=str(harness.HERE / "results/placement.txt"))
    args = ap.parse_args()
    harness.raise_nofile()
    rows = {r.id: r for r in harness.ROWS}
    results = {}
    with open(args.out, "w") as out:
        out.write(f"# placement: {args.bin} workers={args.workers} runs={args.runs}\n")
        for rid in args.rows.split(","):
            row = rows[rid]
            results[rid] = []
            for k in range(1, args.runs + 1):
                got = one_run(args.bin, row, args.workers, args.legacy)
                if isinstance(got, str):
                    line = f"row={rid} run={k} status=fail error={got}"
                else:
                    results[rid].append(got)
                    line = (f"row={rid} run={k} per_worker={','.join(map(str, got))} "
                            f"deviation_pct={deviation(got):.1f}")
                print(line, file=sys.stderr)
                out.write(line + "\n")
                out.flush()
    print(f"| row | connections | runs | per-worker homes (each run) | worst deviation from an even share |")
    print("|---|---|---|---|---|")
    for rid, runs in results.items():
        if not runs:
            print(f"| `{rid}` | {rows[rid].n} | 0 | all failed | - |")
            continue
        each = " ".join("/".join(map(str, r)) for r in runs)
        worst = max(deviation(r) for r in runs)
        print(f"| `{rid}` | {rows[rid].n} | {len(runs)} | {each} | {worst:.1f}% |")


if __name__ == "__main__":
    main()
