#!/usr/bin/env bash
# The hook layer's proof with real software (issue 13): unmodified libcurl and
# hiredis from C, std::net, the redis crate and ureq from Rust, all inside ivy
# tasks, against servers this script starts on free loopback ports and stops on
# exit (also on failure). Called by ./test.sh; needs libcurl4-openssl-dev,
# redis-server and libhiredis-dev (.ci/run installs them).
#
#   tests/real/run.sh           everything (about a minute on 2 cores)
#   IVY_REAL_NO_RUST=1 ...      the C programs only
#
# Each C program runs three ways: without the hook (a negative control that
# must show the blocking behaviour, so the checks can fail), under
# LD_PRELOAD=libivy_hook.so, and linked with -livy_hook. The Rust tests
# (tests/hook_real_*.rs) start their own servers.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

cargo build --release --lib
libdir=$root/target/release
hook=$libdir/libivy_hook.so
soname=$(readelf -d "$libdir/libivy.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ -n "$soname" ] && ln -sf libivy.so "$libdir/$soname"
out=$root/target/real-tests
rm -rf "$out"
mkdir -p "$out"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
ko() { failed=$((failed + 1)); echo "FAIL $*"; }

pids=()
tmpdirs=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for d in "${tmpdirs[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT

if [ ! -f "$hook" ]; then
    ko "$hook was not built (the hook layer is missing)"
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The delayed HTTP server: prints LISTENING port=<p> once it accepts.
start_http() {
    local delay=$1 fifo
    fifo=$(mktemp -u "$out/http.XXXXXX")
    mkfifo "$fifo"
    python3 tests/real/delayed_http.py --port 0 --delay-ms "$delay" > "$fifo" &
    pids+=($!)
    local line
    read -r -t 30 line < "$fifo" || true
    rm -f "$fifo"
    http_port=${line#LISTENING port=}
    [[ $http_port =~ ^[0-9]+$ ]] || { ko "delayed_http.py did not start"; exit 1; }
}

# redis-server on a free port, no persistence; retried if the port was taken meanwhile.
start_redis() {
    local dir try
    dir=$(mktemp -d)
    tmpdirs+=("$dir")
    for try in 1 2 3 4 5; do
        redis_port=$(free_port)
        redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$dir" --daemonize no --loglevel warning --maxclients 4000 > "$dir/log" 2>&1 &
        local pid=$!
        for _ in $(seq 100); do
            if redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG; then
                pids+=("$pid")
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    ko "redis-server did not start: $(tail -3 "$dir/log")"
    exit 1
}

cflags="-I$root/include -I$root/tests/real -Wall -Wextra -Werror -std=c99 -pedantic -O1 -g"
# -livy_hook named first and kept even though the program calls none of its
# functions itself (--no-as-needed): its read/write/connect/... then come
# before libc's in the symbol lookup order, for libcurl's and hiredis's calls.
link_plain="-L$libdir -Wl,-rpath,$libdir -livy -pthread"
link_hook="-L$libdir -Wl,-rpath,$libdir -Wl,--no-as-needed -livy_hook -Wl,--as-needed -livy -pthread"

build() {
    local name=$1 libs=$2 variant=$3 link
    if [ "$variant" = hooklinked ]; then link=$link_hook; else link=$link_plain; fi
    # shellcheck disable=SC2086
    if gcc $cflags "tests/real/$name.c" -o "$out/$name.$variant" $link $libs; then
        return 0
    fi
    ko "compile $name ($variant)"
    return 1
}

# run LABEL CMD...: ok when CMD exits 0; its stdout summary line is shown.
run() {
    local label=$1
    shift
    if "$@" > "$out/last.out" 2> "$out/last.err"; then
        ok "$label: $(tail -1 "$out/last.out")"
    else
        ko "$label: $(tail -1 "$out/last.out")"
        sed 's/^/     /' "$out/last.err" | head -20
    fi
}

# The programs build with gcc below; clang must accept them at the same warnings too.
if command -v clang >/dev/null 2>&1; then
    for src in curl_tasks redis_tasks; do
        # shellcheck disable=SC2086
        if clang $cflags -fsyntax-only "tests/real/$src.c"; then ok "$src.c compiles with clang"; else ko "$src.c with clang"; fi
    done
fi

have_hook_link=0
[ -f "$hook" ] && have_hook_link=1

# 1. libcurl's easy API: 200 transfers, 50 at once, each answer delayed 200 ms.
start_http 200
if build curl_tasks "-lcurl" plain; then
    run "curl, no hook: 6 transfers on 2 workers hold the workers (negative control)" \
        "$out/curl_tasks.plain" "$http_port" --n 6 --limit 6 --workers 2 --expect serial
    [ -f "$hook" ] && run "curl, LD_PRELOAD=libivy_hook.so: 200 transfers, 50 in flight, bodies byte-exact" \
        env LD_PRELOAD="$hook" "$out/curl_tasks.plain" "$http_port" --n 200 --limit 50 --workers 2 --expect concurrent
fi
if [ $have_hook_link = 1 ] && build curl_tasks "-lcurl" hooklinked; then
    run "curl, linked -livy_hook: 200 transfers, 50 in flight, bodies byte-exact" \
        "$out/curl_tasks.hooklinked" "$http_port" --n 200 --limit 50 --workers 2 --expect concurrent
fi

# 2. hiredis against redis-server: 1000 tasks while 4 BLPOPs are outstanding.
start_redis
if build redis_tasks "-lhiredis" plain; then
    run "hiredis, no hook: BLPOPs hold both workers until their timeout (negative control)" \
        "$out/redis_tasks.plain" "$redis_port" --tasks 20 --slow 2 --workers 2 --blpop-timeout 1 --expect serial
    [ -f "$hook" ] && run "hiredis, LD_PRELOAD=libivy_hook.so: 1000 tasks SET/GET/INCR exact during 4 BLPOPs" \
        env LD_PRELOAD="$hook" "$out/redis_tasks.plain" "$redis_port" --tasks 1000 --slow 4 --workers 2 --expect concurrent
fi
if [ $have_hook_link = 1 ] && build redis_tasks "-lhiredis" hooklinked; then
    run "hiredis, linked -livy_hook: 1000 tasks SET/GET/INCR exact during 4 BLPOPs" \
        "$out/redis_tasks.hooklinked" "$redis_port" --tasks 1000 --slow 4 --workers 2 --expect concurrent
fi

# 3. Rust: std::net echo, the redis crate, ureq (each test starts its own servers).
if [ -z "${IVY_REAL_NO_RUST:-}" ]; then
    if cargo test --release --features hook --test 'hook_real_*' -- --test-threads=1; then
        ok "cargo test --features hook --test 'hook_real_*'"
    else
        ko "cargo test --features hook --test 'hook_real_*'"
    fi
fi

echo "tests/real: $passed passed, $failed failed"
[ "$failed" = 0 ]
