#!/usr/bin/env python3
"""Runs every workload of ivy's comparison suite for every system; writes raw results.

    python3 harness.py [--quick] [--runs R] [--only ROW[,ROW...]] [--systems S[,S...]]

Each measurement is a fresh process (`<bench> <workload> --n N --workers W`) that
does its own warm-up round at n/10 before the measured round and prints `RESULT`
lines (format: bench-common/src/lib.rs). Runs are interleaved across systems
(run 1 of every system, then run 2, ...) so that a burst of noise from other
processes on the machine hits every system alike. Every system gets the same
worker count: all cores (asyncio and uvloop have one thread whatever it is).

The raw lines, each prefixed with `row=<row> run=<k>`, go to results/<full|quick>.txt
with the machine description as `# key: value` header lines; report.py turns
that file into BENCHMARKS.md and the plots.

Adding a workload: implement it in each system (see bench-common's doc comment),
then add one `Row` below and its metric's label to report.py's METRICS.
A system whose binary does not list a workload (`--list`) is left out of that
row; for ivy, that row is reported as pending.
"""

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the ivy repository


@dataclass
class Row:
    """One line of the report: a workload at one size."""

    id: str
    workload: str
    family: str  # plot file: plots/<family>.png
    n: int  # full run
    quick_n: int
    timeout_s: int = 300
    title: str = ""


# The suite. Order is the report's order.
ROWS = [
    Row("switch", "switch", "switch", 2_000_000, 200_000,
        title="yield ping-pong, two tasks on one worker"),
    Row("spawn_join", "spawn_join", "tasks", 1_000_000, 100_000,
        title="spawn 1M tasks, then join them all"),
    Row("skynet", "skynet", "tasks", 1_000_000, 100_000,
        title="skynet: 1M leaf tasks in a 10-ary tree"),
    Row("timers", "timers", "timers", 1_000_000, 100_000,
        title="1M concurrent sleeps of 1..1000 ms"),
    Row("idle_memory_100k", "idle_memory", "memory", 100_000, 10_000,
        title="RSS per sleeping task, 100k tasks"),
    Row("idle_memory_1m", "idle_memory", "memory", 1_000_000, 100_000,
        title="RSS per sleeping task, 1M tasks"),
    Row("chan_pingpong", "chan_pingpong", "sync", 200_000, 20_000,
        title="channel ping-pong between two tasks, all workers"),
    Row("mpmc_bounded", "mpmc_bounded", "sync", 2_000_000, 200_000,
        title="bounded MPMC queue (cap 1024), 4 producers / 4 consumers"),
    Row("mutex_contention", "mutex_contention", "sync", 2_000_000, 200_000,
        title="64 tasks incrementing a counter under one mutex"),
    # Next, once ivy::sync / ivy::net land (one Row each, twins in every system):
    # Row("semaphore", ...), Row("tcp_echo_10", ...), Row("http_hello", ...)
]

TARGET = HERE / "target"
SYSTEMS = {
    "ivy": [str(TARGET / "release/ivy-bench")],
    "tokio": [str(TARGET / "release/tokio-bench")],
    "may": [str(TARGET / "release/may-bench")],
    "go": [str(TARGET / "go-bench")],
    "asyncio": [sys.executable, str(HERE / "python/bench.py"), "--loop", "asyncio"],
    "uvloop": [sys.executable, str(HERE / "python/bench.py"), "--loop", "uvloop"],
}


def sh(cmd, cwd=None):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              cwd=cwd, timeout=60).stdout.strip()
    except Exception:  # noqa: BLE001 - machine facts are best effort
        return ""


def lock_version(crate):
    lock = (HERE / "Cargo.lock").read_text()
    m = re.search(r'name = "%s"\nversion = "([^"]+)"' % re.escape(crate), lock)
    return m.group(1) if m else "?"


def machine():
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    uv = sh(f"{sys.executable} -c 'import uvloop; print(uvloop.__version__)'") or "not installed"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "kernel": platform.release(),
        "vm.max_map_count": sh("cat /proc/sys/vm/max_map_count"),
        "rustc": sh("rustc --version"),
        "go": sh("go version"),
        "python": platform.python_version(),
        "uvloop": uv,
        "tokio": lock_version("tokio"),
        "async-channel": lock_version("async-channel"),
        "may": lock_version("may"),
        "ivy commit": sh("git log -1 --format=%h -- src Cargo.toml", cwd=ROOT)
        + (" (dirty)" if sh("git status --porcelain -- src Cargo.toml", cwd=ROOT) else ""),
    }


def listed(system):
    """Workloads the system implements (`--list`), or None if it cannot run."""
    try:
        out = subprocess.run(SYSTEMS[system] + ["--list"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    if system == "uvloop" and not sh(f"{sys.executable} -c 'import uvloop; print(1)'"):
        return None
    return set(out.stdout.split())


def run_once(system, row, n, workers):
    """Runs one measurement; returns its RESULT lines (a synthesized failure line
    when the process died or timed out without saying why)."""
    cmd = SYSTEMS[system] + [row.workload, "--n", str(n), "--workers", str(workers)]
    base = f"workload={row.workload} system={system} metric=all status=fail value=nan unit=- n={n} workers={workers}"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=row.timeout_s)
    except subprocess.TimeoutExpired:
        return [f"RESULT {base} error=timeout after {row.timeout_s} s"]
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode != 0 and not any("status=fail" in l for l in lines):
        err = (out.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        sig = f"signal {-out.returncode}" if out.returncode < 0 else f"exit {out.returncode}"
        lines.append(f"RESULT {base} error={sig}: {err}")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller n, one run each")
    ap.add_argument("--runs", type=int, help="measured runs per system and row (default 5, quick 1)")
    ap.add_argument("--only", help="comma-separated row ids")
    ap.add_argument("--systems", help="comma-separated systems (default: all)")
    ap.add_argument("--out", help="results file (default results/full.txt or results/quick.txt)")
    args = ap.parse_args()

    runs = args.runs or (1 if args.quick else 5)
    workers = os.cpu_count() or 1
    rows = [r for r in ROWS if not args.only or r.id in args.only.split(",")]
    systems = args.systems.split(",") if args.systems else list(SYSTEMS)
    out_path = Path(args.out) if args.out else HERE / "results" / ("quick.txt" if args.quick else "full.txt")
    out_path.parent.mkdir(parents=True, exist_ok=True)

    support = {}
    for s in systems:
        support[s] = listed(s)
        if support[s] is None:
            print(f"harness: {s} cannot run (not built / not installed); left out", file=sys.stderr)

    info = machine()
    info["mode"] = "quick" if args.quick else "full"
    info["runs"] = str(runs)
    info["workers"] = str(workers)
    info["loadavg before"] = Path("/proc/loadavg").read_text().strip()
    t0 = time.time()
    results = []
    for row in rows:
        n = row.quick_n if args.quick else row.n
        active = [s for s in systems if support.get(s) and row.workload in support[s]]
        failed = set()
        for k in range(1, runs + 1):
            for s in active:
                if s in failed:
                    continue  # a deterministic failure (ENOMEM, ...) is not retried
                t = time.time()
                lines = run_once(s, row, n, workers)
                for l in lines:
                    results.append(f"RESULT row={row.id} run={k} {l[len('RESULT '):]}")
                    if "status=fail" in l:
                        failed.add(s)
                summary = "; ".join(
                    f"{m.group(1)}={m.group(2)}"
                    for l in lines
                    for m in [re.search(r"metric=(\S+).*?value=(\S+)", l)] if m)
                print(f"[{time.time() - t0:6.0f}s] {row.id:18} {s:8} run {k}/{runs} "
                      f"({time.time() - t:5.1f}s) {summary}", flush=True)
    info["loadavg after"] = Path("/proc/loadavg").read_text().strip()
    info["wall time"] = f"{time.time() - t0:.0f} s"

    with open(out_path, "w") as f:
        f.write("# ivy comparison suite, raw results (harness.py; report.py reads this)\n")
        for key, v in info.items():
            f.write(f"# {key}: {v}\n")
        for l in results:
            f.write(l + "\n")
    print(f"harness: wrote {out_path} in {time.time() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
