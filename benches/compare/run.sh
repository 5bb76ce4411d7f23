#!/usr/bin/env bash
# ivy's comparison suite, end to end: ivy against tokio, may, Go and Python
# asyncio (and uvloop when it installs).
#
#   benches/compare/run.sh            # full: 5 runs each at full size (~30 min on 2 cores):
#                                     # the Rust rows, the hook rows and the Python rows
#                                     # (py_*: ivyrt against asyncio, uvloop and gevent),
#                                     # all in BENCHMARKS.md, one section each
#   benches/compare/run.sh --quick    # smoke test: every row, 1 run each at 1/10 size (< 5 min)
#   benches/compare/run.sh --python   # the Python rows only (results/PYTHON.md, ~3 min)
#
# Installs what is missing (Go and wrk from apt; matplotlib, uvloop and gevent from
# pip; ivyrt from bindings/python into target/pyvenv),
# builds every system and the TCP load generator (loadgen) in release mode, runs
# harness.py (raw results to results/*.txt),
# then report.py (BENCHMARKS.md at the repository root, plots/*.png; a --quick
# run writes results/QUICK.md and plots/quick/*.png instead).
# Extra arguments go to harness.py (e.g. --only skynet,timers --systems ivy,go).
set -euo pipefail
cd "$(dirname "$0")"

mode=full
for a in "$@"; do
    case $a in
        --quick) mode=quick ;;
        --python) mode=python ;;
    esac
done

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

if [ "$mode" != python ] && ! command -v go >/dev/null; then
    echo "== installing Go (apt: golang-go)"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq golang-go
fi
if [ "$mode" != python ] && ! command -v wrk >/dev/null; then
    echo "== installing wrk (apt; the http_hello row's load generator)"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk || echo "wrk did not install; http_hello is left out"
fi
if ! python3 -c "import matplotlib" 2>/dev/null; then
    echo "== installing matplotlib (pip)"
    python3 -m pip install --quiet matplotlib
fi
if ! python3 -c "import uvloop" 2>/dev/null; then
    echo "== installing uvloop (pip; optional: its column is left out if this fails)"
    python3 -m pip install --quiet uvloop || echo "uvloop did not install; skipping it"
fi
if ! python3 -c "import gevent" 2>/dev/null; then
    echo "== installing gevent (pip; optional: its column of the Python rows is left out if this fails)"
    python3 -m pip install --quiet gevent || echo "gevent did not install; skipping it"
fi
# ivyrt, the Python package, into the venv bindings/python/run-tests.sh uses
# (target/pyvenv, made from the same python3): harness.py runs the systems
# ivyrt and ivyrt-w2 with its interpreter.
PYVENV=../../target/pyvenv
echo "== installing ivyrt (pip install ./bindings/python into target/pyvenv)"
[ -x $PYVENV/bin/python ] || python3 -m venv $PYVENV
$PYVENV/bin/python -m pip install --quiet --force-reinstall --no-deps ../../bindings/python ||
    echo "ivyrt did not install; its columns are left out"

if [ "$mode" != python ] && ! curl-config --version >/dev/null 2>&1; then
    echo "== installing libcurl's headers (apt: libcurl4-openssl-dev; the hook_curl row)"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libcurl4-openssl-dev || echo "libcurl did not install; hook_curl fails"
fi

if [ "$mode" = python ]; then
    echo "== building loadgen (cargo build --release -p loadgen)"
    cargo build --release --quiet -p loadgen
else
    echo "== building (cargo build --release: the Rust systems and loadgen; go build)"
    cargo build --release --quiet
    (cd go && go build -o ../target/go-bench .)

    # The hook rows (harness.py's HOOK_ROWS): ivy's own build gives libivy.so and
    # libivy_hook.so; curl_tasks (tests/real) links libivy; hook-std-bench is built
    # with and without ivy's `hook` feature, each in a target dir of its own.
    echo "== building the hook rows (libivy, libivy_hook, curl_tasks, hook-std-bench on/off)"
    (cd ../.. && cargo build --release --quiet)
    ivy_lib=$(cd ../.. && pwd)/target/release
    soname=$(readelf -d "$ivy_lib/libivy.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
    [ -n "$soname" ] && ln -sf libivy.so "$ivy_lib/$soname"
    mkdir -p target/hook
    gcc -O2 -Wall -Wextra -Werror -std=c99 -I../../include -I../../tests/real ../../tests/real/curl_tasks.c \
        -o target/hook/curl_tasks -L"$ivy_lib" -Wl,-rpath,"$ivy_lib" -livy -lcurl -pthread ||
        echo "curl_tasks did not build; hook_curl fails"
    cargo build --release --quiet --manifest-path hook-std/Cargo.toml --target-dir target/hook-std-off
    cargo build --release --quiet --manifest-path hook-std/Cargo.toml --target-dir target/hook-std-on --features hook
fi

if [ "$mode" = python ]; then
    # The Python rows alone: 3 interleaved runs, results/python.txt -> results/PYTHON.md.
    echo "== running the Python rows"
    args=()
    for a in "$@"; do [ "$a" = --python ] || args+=("$a"); done
    python3 harness.py --only py_switch,py_spawn_join,py_queue,py_sleeps,py_lock,py_semaphore,py_tcp_echo \
        --runs 3 --out results/python.txt "${args[@]}"
    python3 report.py results/python.txt --out results/PYTHON.md --plots plots/python
    exit 0
fi
echo "== running the suite ($mode)"
python3 harness.py "$@"
echo "== writing the report"
if [ "$mode" = full ]; then
    python3 report.py results/full.txt
else
    # A smoke test must not overwrite the committed full report.
    python3 report.py results/quick.txt --out results/QUICK.md --plots plots/quick
fi
