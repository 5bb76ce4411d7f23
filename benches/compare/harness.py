#!/usr/bin/env python3
"""Runs every workload of ivy's comparison suite for every system; writes raw results.

    python3 harness.py [--quick] [--runs R] [--only ROW[,ROW...]] [--systems S[,S...]]

Each measurement is a fresh process (`<bench> <workload> --n N --workers W`) that
does its own warm-up round at n/10 before the measured round and prints `RESULT`
lines (format: bench-common/src/lib.rs). Runs are interleaved across systems
(run 1 of every system, then run 2, ...) so that a burst of noise from other
processes on the machine hits every system alike. Every system gets the same
worker count: all cores (asyncio and uvloop have one thread whatever it is).

The network rows are server rows: the system's binary runs as a server
(`<bench> tcp_echo|http_hello --port 0 --workers W`, printing `LISTENING port=<p>`),
and one load generator, the same for every system, measures it: `loadgen`
(this workspace's closed-loop TCP echo client) or `wrk` (HTTP). The load
generator prints or yields the RESULT lines; the server is killed afterwards
(SIGTERM, then SIGKILL after a grace period). Full runs: 1 s warm-up + 5 s
measured; --quick: 0.5 s + 1.5 s (wrk takes whole seconds: 1 s + 2 s).
RLIMIT_NOFILE is raised to its hard limit for every child (1000 connections).

The raw lines, each prefixed with `row=<row> run=<k>`, go to results/<full|quick>.txt
with the machine description as `# key: value` header lines; report.py turns
that file into BENCHMARKS.md and the plots.

Adding a workload: implement it in each system (see bench-common's doc comment),
then add one `Row` below and its metric's label to report.py's METRICS.
A system whose binary does not list a workload (`--list`) is left out of that
row; for ivy, that row is reported as pending.

Two suites share this harness. The "rust" rows compare ivy (the Rust crate)
with tokio, may, Go and asyncio/uvloop; the "python" rows (ids py_*) compare the
Python package ivyrt (bindings/python; the system `ivyrt` runs it with one
worker, asyncio's model, `ivyrt-w2` with two) with asyncio, uvloop and gevent,
all on the same CPython (ivyrt from the venv that run.sh / bindings/python/
run-tests.sh install it into, target/pyvenv; IVYRT_PYTHON overrides). A row
runs only its suite's systems. The Python rows are smaller (a Python task costs
microseconds, not nanoseconds):

    python3 harness.py --only py_switch,py_spawn_join,py_queue,py_sleeps,py_lock,py_semaphore,py_tcp_echo \
        --out results/python.txt    # run.sh --python does this, then report.py

The hook rows (`HOOK_ROWS`: hook_curl, hook_std) compare systems of their own,
the same client program three ways: ivy with its libc hook (`ivy-hook`), ivy
without it (`ivy-nohook`), and one OS thread per request (`threads`). Each row
starts `delayed-http` once (this workspace's native twin of
`tests/real/delayed_http.py`: every answer delayed `delay_ms`), then
runs every system's client against it (`--n` requests, all in flight at once);
the client prints one `metric=wall_ms` RESULT line after checking every body.
`--systems` does not filter them; `--only hook_curl,hook_std` runs just them.
"""

import argparse
import math
import os
import platform
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
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
    # Server rows: the load generator ("loadgen" or "wrk"); n is then the
    # number of connections, the same in both modes.
    load: str = ""
    suite: str = "rust"  # which systems run it: SUITES[suite]
    skip: tuple = ()  # systems of the suite for which the row makes no sense


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
    Row("tcp_echo_10", "tcp_echo", "net", 10, 10, load="loadgen",
        title="TCP echo, 64-byte messages, 10 connections (loadgen)"),
    Row("tcp_echo_100", "tcp_echo", "net", 100, 100, load="loadgen",
        title="TCP echo, 64-byte messages, 100 connections (loadgen)"),
    Row("tcp_echo_1000", "tcp_echo", "net", 1000, 1000, load="loadgen",
        title="TCP echo, 64-byte messages, 1000 connections (loadgen)"),
    Row("http_hello", "http_hello", "net", 100, 100, load="wrk",
        title="HTTP/1.1 hello, keep-alive, wrk -t1 -c100"),
    Row("semaphore", "semaphore", "sync", 1_000_000, 100_000,
        title="64 tasks sharing 8 semaphore permits, a yield while holding one"),

    # The Python suite: ivyrt against asyncio, uvloop and gevent (suite="python").
    Row("py_switch", "switch", "python", 200_000, 20_000, suite="python", skip=("ivyrt-w2",),
        title="Python: yield ping-pong between two tasks (asyncio.sleep(0), gevent.sleep(0), ivyrt.yield_now)"),
    Row("py_spawn_join", "spawn_join", "python", 100_000, 10_000, suite="python",
        title="Python: create 100k tasks, then join them all"),
    Row("py_queue", "chan_pingpong", "python", 100_000, 10_000, suite="python",
        title="Python: queue ping-pong between two tasks, two Queue(maxsize=1)"),
    Row("py_sleeps", "timers", "python", 10_000, 10_000, suite="python",
        title="Python: 10k concurrent sleeps of 1..1000 ms"),
    Row("py_lock", "mutex_contention", "python", 500_000, 50_000, suite="python",
        title="Python: 64 tasks incrementing a counter under one Lock"),
    Row("py_semaphore", "semaphore", "python", 100_000, 10_000, suite="python",
        title="Python: 64 tasks sharing a Semaphore(8), a yield while holding a permit"),
    Row("py_tcp_echo", "tcp_echo", "python", 100, 100, load="loadgen", suite="python",
        title="Python: TCP echo, 64-byte messages, 100 connections (loadgen)"),
]



@dataclass
class HookRow:
    """A hook row: n client requests against the delayed HTTP server."""

    id: str
    n: int
    quick_n: int
    delay_ms: int
    title: str
    timeout_s: int = 300


# Sizes: without the hook, n x delay / workers (10 s for full n on 2 cores)
# is the slowest system's run.
HOOK_ROWS = [
    HookRow("hook_curl", 400, 100, 50,
            "libcurl easy API, one curl_easy_perform per task, all in flight, answers delayed 50 ms"),
    HookRow("hook_std", 400, 100, 50,
            "std::net HTTP/1.0 GET per task, all in flight, answers delayed 50 ms"),
]


def hook_systems(row_id):
    """system -> (command prefix, extra environment) for a hook row."""
    if row_id == "hook_curl":
        curl = [str(HOOK_BIN / "curl_tasks")]
        return {
            "ivy-hook": (curl, {"LD_PRELOAD": str(LIBIVY_HOOK)}),
            "ivy-nohook": (curl, {}),
            "threads": (curl + ["--threads"], {}),
        }
    on = [str(TARGET / "hook-std-on/release/hook-std-bench"), "hook_std"]
    off = [str(TARGET / "hook-std-off/release/hook-std-bench"), "hook_std"]
    return {"ivy-hook": (on, {}), "ivy-nohook": (off, {}), "threads": (off + ["--threads"], {})}


# Server rows: warm-up and measured seconds, (full, quick).
NET_WARMUP_S = (1.0, 0.5)
NET_MEASURE_S = (5.0, 1.5)
SERVER_START_TIMEOUT_S = 30  # until the LISTENING line
SERVER_STOP_GRACE_S = 2  # SIGTERM, then SIGKILL
READY_TIMEOUT_S = 30  # loadgen: all connections connected and echoed once
WRK_CONNS, WRK_THREADS = 100, 1
# Systems whose worker count is fixed whatever the machine has: asyncio, uvloop
# and gevent run every task on one thread; ivyrt runs with one worker by default
# (asyncio's atomicity between blocking calls), ivyrt-w2 is its opt-in workers=2.
FIXED_WORKERS = {"asyncio": 1, "uvloop": 1, "gevent": 1, "ivyrt": 1, "ivyrt-w2": 2}

TARGET = HERE / "target"
# The venv holding the installed ivyrt package (pip install ./bindings/python).
IVYRT_PYTHON = os.environ.get("IVYRT_PYTHON", str(ROOT / "target/pyvenv/bin/python"))
SYSTEMS = {
    # IVY_BENCH_BIN: measure another build of ivy-bench (an earlier ivy, for a
    # before/after comparison) under the same harness.
    "ivy": [os.environ.get("IVY_BENCH_BIN", str(TARGET / "release/ivy-bench"))],
    "tokio": [str(TARGET / "release/tokio-bench")],
    "may": [str(TARGET / "release/may-bench")],
    "go": [str(TARGET / "go-bench")],
    "asyncio": [sys.executable, str(HERE / "python/bench.py"), "--loop", "asyncio"],
    "uvloop": [sys.executable, str(HERE / "python/bench.py"), "--loop", "uvloop"],
    "gevent": [sys.executable, str(HERE / "python/bench_gevent.py")],
    "ivyrt": [IVYRT_PYTHON, str(HERE / "python/bench_ivyrt.py")],
    "ivyrt-w2": [IVYRT_PYTHON, str(HERE / "python/bench_ivyrt.py")],
}
SUITES = {
    "rust": {"ivy", "ivy-before", "tokio", "may", "go", "asyncio", "uvloop"},
    "python": {"asyncio", "uvloop", "gevent", "ivyrt", "ivyrt-w2"},
}
# IVY_BEFORE_BIN: an earlier build of ivy-bench, as the system "ivy-before", for
# before/after runs (`--systems ivy,ivy-before`); report.py does not chart it.
if os.environ.get("IVY_BEFORE_BIN"):
    SYSTEMS["ivy-before"] = [os.environ["IVY_BEFORE_BIN"]]
# IVYRT_BEFORE_PYTHON: the same for ivyrt, as "ivyrt-before" (one worker): an
# interpreter (or a wrapper script) whose ivyrt is an earlier build or setting.
if os.environ.get("IVYRT_BEFORE_PYTHON"):
    SYSTEMS["ivyrt-before"] = [os.environ["IVYRT_BEFORE_PYTHON"], str(HERE / "python/bench_ivyrt.py")]
    SUITES["python"].add("ivyrt-before")
    FIXED_WORKERS["ivyrt-before"] = 1
LOADGEN = TARGET / "release/loadgen"
HOOK_BIN = TARGET / "hook"  # curl_tasks (run.sh compiles it)
DELAYED_HTTP = TARGET / "release/delayed-http"
LIBIVY_HOOK = ROOT / "target/release/libivy_hook.so"


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
    gev = sh(f"{sys.executable} -c 'import gevent; print(gevent.__version__)'") or "not installed"
    ivyrt = sh(f"{IVYRT_PYTHON} -c 'import ivyrt, platform; "
               f"print(ivyrt.__version__, \"on Python\", platform.python_version())'") or "not installed"
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
        "gevent": gev,
        "ivyrt": ivyrt,
        "tokio": lock_version("tokio"),
        "async-channel": lock_version("async-channel"),
        "may": lock_version("may"),
        "mio (loadgen)": lock_version("mio"),
        "wrk": (re.findall(r"wrk (\S+)", sh("wrk -v 2>&1")) or ["not installed"])[0],
        "RLIMIT_NOFILE": "%d/%d" % resource.getrlimit(resource.RLIMIT_NOFILE),
        "libcurl (hook_curl)": sh("curl-config --version") or "not installed",
        "ivy commit": sh("git log -1 --format=%h -- src hook Cargo.toml", cwd=ROOT)
        + (" (dirty)" if sh("git status --porcelain -- src hook Cargo.toml", cwd=ROOT) else ""),
        "ivyrt commit": sh("git log -1 --format=%h -- src Cargo.toml bindings/python", cwd=ROOT)
        + (" (dirty)" if sh("git status --porcelain -- src Cargo.toml bindings/python",
                            cwd=ROOT) else ""),
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
    workers = FIXED_WORKERS.get(system, workers)
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


def raise_nofile():
    """Soft RLIMIT_NOFILE to the hard limit; every child inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def tail(f, n=1):
    """The last n lines of an open temporary file (a child's stderr)."""
    f.seek(0)
    lines = f.read().decode(errors="replace").strip().splitlines()
    return " | ".join(lines[-n:]) if lines else "(no stderr)"


def exit_text(code):
    return f"signal {-code}" if code < 0 else f"exit {code}"


def wait_listening(proc, timeout):
    """Reads the server's stdout until `LISTENING port=<p>`; the port, or None
    if the server exited or stayed silent."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.time()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            return None  # EOF: the server exited
        m = re.match(r"LISTENING port=(\d+)", line)
        if m:
            return int(m.group(1))
    return None


def stop(proc):
    """SIGTERM, then SIGKILL after the grace period; reaps the server."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=SERVER_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


def wrk_us(value, unit):
    return float(value) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6}[unit]


def parse_wrk(out, fields, tail_fields):
    """wrk --latency's report -> RESULT lines (req_per_s, p50_us, p99_us), or
    raises ValueError naming what is wrong (socket errors other than timeouts,
    non-2xx answers, nothing completed); timeouts are noted in the check."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    total = re.search(r"^\s*(\d+) requests in", out, re.M)
    lat = {q: re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M) for q in (50, 99)}
    if not rps or not total or not all(lat.values()):
        raise ValueError("unreadable wrk output: " + " ".join(out.split())[:200])
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors and any(int(errors.group(k)) for k in (1, 2, 3)):
        raise ValueError("wrk " + errors.group(0))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise ValueError("wrk: " + non2xx.group(0))
    if int(total.group(1)) == 0:
        raise ValueError("wrk: no request completed")
    check = total.group(1)
    if errors and int(errors.group(4)):
        check += f" timeouts={errors.group(4)}"
    return [f"RESULT {fields} metric=req_per_s value={float(rps.group(1)):.6f} "
            f"unit=req/s {tail_fields} check={check}"] + [
        f"RESULT {fields} metric=p{q}_us value={wrk_us(*lat[q].groups()):.6f} "
        f"unit=us {tail_fields} check={check}" for q in (50, 99)]


def run_load(system, row, port, workers, quick):
    """Runs the row's load generator against 127.0.0.1:port; RESULT lines."""
    warm, measure = NET_WARMUP_S[quick], NET_MEASURE_S[quick]
    fields = f"workload={row.workload} system={system}"
    if row.load == "loadgen":
        cmd = [str(LOADGEN), "--port", str(port), "--conns", str(row.n), "--warmup", str(warm),
               "--duration", str(measure), "--ready-timeout", str(READY_TIMEOUT_S),
               "--system", system, "--workers", str(workers), "--workload", row.workload]
        timeout = warm + measure + READY_TIMEOUT_S + 30
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
        if out.returncode != 0 and not any("status=fail" in l for l in lines):
            err = (out.stderr.strip().splitlines() or ["(no stderr)"])[-1]
            raise RuntimeError(f"loadgen {exit_text(out.returncode)}: {err}")
        return lines
    # wrk: whole seconds only; a warm-up run, then the measured one.
    url = f"http://127.0.0.1:{port}/"
    base = ["wrk", f"-t{WRK_THREADS}", f"-c{row.n}"]
    for secs, extra in ((max(1, math.ceil(warm)), []), (max(1, math.ceil(measure)), ["--latency"])):
        out = subprocess.run(base + [f"-d{secs}s"] + extra + [url], capture_output=True,
                             text=True, timeout=secs + 60)
        if out.returncode != 0:
            raise RuntimeError(f"wrk {exit_text(out.returncode)}: "
                               + " ".join((out.stderr or out.stdout).split())[:200])
    return parse_wrk(out.stdout, fields, f"n={row.n} workers={workers}")


def run_server(system, row, workers, quick):
    """One measurement of a server row: starts the server, waits for its
    LISTENING line, runs the load generator, stops the server. RESULT lines,
    or one status=fail line when anything went wrong."""
    workers = FIXED_WORKERS.get(system, workers)
    base = (f"workload={row.workload} system={system} metric=all status=fail value=nan "
            f"unit=- n={row.n} workers={workers}")
    cmd = SYSTEMS[system] + [row.workload, "--port", "0", "--workers", str(workers)]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            port = wait_listening(proc, SERVER_START_TIMEOUT_S)
            if port is None:
                code = proc.poll()
                why = (f"server {exit_text(code)} before listening" if code is not None
                       else f"no LISTENING line within {SERVER_START_TIMEOUT_S} s")
                stop(proc)
                return [f"RESULT {base} error={why}: {tail(err)}"]
            try:
                lines = run_load(system, row, port, workers, quick)
            except subprocess.TimeoutExpired as e:
                return [f"RESULT {base} error={row.load} timeout after {e.timeout:.0f} s "
                        f"(server {'alive' if proc.poll() is None else 'dead'})"]
            except (RuntimeError, ValueError, OSError) as e:
                return [f"RESULT {base} error={e}"]
            if proc.poll() is not None:
                return [f"RESULT {base} error=server died during the run "
                        f"({exit_text(proc.returncode)}): {tail(err)}"]
            return lines
        finally:
            stop(proc)


def start_delayed_http(delay_ms):
    """The delayed server on a free port: (process, port), or (None, error).
    `delayed-http` (this workspace, native, a thread per connection); the
    Python original `tests/real/delayed_http.py`, whose CPU per request bounds
    the rows, only when that is not built."""
    if DELAYED_HTTP.exists():
        cmd = [str(DELAYED_HTTP)]
    else:
        print("harness: delayed-http not built; the hook rows use tests/real/delayed_http.py",
              file=sys.stderr)
        cmd = [sys.executable, str(ROOT / "tests/real/delayed_http.py")]
    proc = subprocess.Popen(cmd + ["--port", "0", "--delay-ms", str(delay_ms)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = wait_listening(proc, SERVER_START_TIMEOUT_S)
    if port is None:
        stop(proc)
        return None, "the delayed server did not start"
    return proc, port


def run_hook_once(system, row, n, workers, port):
    """One client run of a hook row; its RESULT lines (a synthesized failure
    line when the client died or timed out without saying why)."""
    prefix, env = hook_systems(row.id)[system]
    if row.id == "hook_curl":  # curl_tasks PORT ...: no limit below n, the RESULT line
        cmd = prefix[:1] + [str(port), "--n", str(n), "--limit", str(n), "--workers", str(workers),
                            "--delay-ms", str(row.delay_ms), "--bench"] + prefix[1:]
    else:
        cmd = prefix + ["--port", str(port), "--n", str(n), "--workers", str(workers)]
    base = (f"workload={row.id} system={system} metric=wall_ms status=fail value=nan unit=ms "
            f"n={n} workers={workers}")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=row.timeout_s,
                             env={**os.environ, **env})
    except subprocess.TimeoutExpired:
        return [f"RESULT {base} error=timeout after {row.timeout_s} s"]
    except OSError as e:
        return [f"RESULT {base} error={e}"]
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode != 0 and not any("status=fail" in l for l in lines):
        err = (out.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        lines = [f"RESULT {base} error={exit_text(out.returncode)}: {err}"]
    return lines


def run_hook_rows(rows, runs, workers, quick, t0, results):
    """The hook rows: one delayed server per row, runs interleaved across systems."""
    for row in rows:
        n = row.quick_n if quick else row.n
        proc, port = start_delayed_http(row.delay_ms)
        try:
            for k in range(1, runs + 1):
                for s in hook_systems(row.id):
                    t = time.time()
                    if proc is None:
                        lines = [f"RESULT workload={row.id} system={s} metric=wall_ms status=fail "
                                 f"value=nan unit=ms n={n} workers={workers} error={port}"]
                    else:
                        lines = run_hook_once(s, row, n, workers, port)
                    lines = [re.sub(r" system=\S+", f" system={s}", l, count=1) for l in lines]
                    for l in lines:
                        results.append(f"RESULT row={row.id} run={k} {l[len('RESULT '):]}")
                    summary = "; ".join(f"{m.group(1)}={m.group(2)}" for l in lines
                                        for m in [re.search(r"metric=(\S+).*?value=(\S+)", l)] if m)
                    print(f"[{time.time() - t0:6.0f}s] {row.id:18} {s:10} run {k}/{runs} "
                          f"({time.time() - t:5.1f}s) {summary}", flush=True)
        finally:
            if proc is not None:
                stop(proc)


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
    hook_rows = [r for r in HOOK_ROWS if not args.only or r.id in args.only.split(",")]
    systems = args.systems.split(",") if args.systems else list(SYSTEMS)
    out_path = Path(args.out) if args.out else HERE / "results" / ("quick.txt" if args.quick else "full.txt")
    out_path.parent.mkdir(parents=True, exist_ok=True)

    raise_nofile()
    missing = {"loadgen": not LOADGEN.exists(), "wrk": shutil.which("wrk") is None}
    for tool, gone in missing.items():
        if gone and any(r.load == tool for r in rows):
            print(f"harness: {tool} not found; its rows are left out", file=sys.stderr)
    rows = [r for r in rows if not (r.load and missing[r.load])]

    # Only the systems that some selected row's suite has.
    systems = [s for s in systems if any(s in SUITES[r.suite] for r in rows)]
    support = {}
    for s in systems if rows else []:
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
        active = [s for s in systems if support.get(s) and row.workload in support[s]
                  and s in SUITES[row.suite] and s not in row.skip]
        failed = set()
        for k in range(1, runs + 1):
            for s in active:
                if s in failed:
                    continue  # a deterministic failure (ENOMEM, ...) is not retried
                t = time.time()
                if row.load:
                    lines = run_server(s, row, workers, args.quick)
                else:
                    lines = run_once(s, row, n, workers)
                # The harness's name for the system wins over the binary's own
                # (two builds of ivy-bench both call themselves "ivy").
                lines = [re.sub(r" system=\S+", f" system={s}", l, count=1) for l in lines]
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
    run_hook_rows(hook_rows, runs, workers, args.quick, t0, results)
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
