#!/usr/bin/env bash
# The hook layer's tests (README, "Hooked libc calls"), called by ./test.sh:
#  1. Rust: the `hook` feature's integration tests (tests/hook_*.rs);
#     hook_faults with one test thread (it counts the process's open fds); and
#     ivy's own socket and fd-wait suites with the hook linked in (ivy's
#     reactor and sockets must pass through it, never recurse into it).
#  2. C: tests/c/hook/*.c with gcc and clang at -Wall -Wextra -Werror, each run
#     with LD_PRELOAD=libivy_hook.so and linked with -livy_hook -livy.
#     The gcc build also runs under valgrind (memcheck, leak check) with the
#     hook preloaded.
#  3. A program that never starts ivy runs unchanged under the preloaded hook.
#  4. Python: the socket module and time.sleep in tasks of the ivyrt package,
#     with the hook preloaded.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

echo "== hook: Rust (cargo test --features hook --test 'hook_*')"
cargo test --release --features hook --test hook_calls --test hook_concurrency --test hook_park_guard \
    --test net --test io_fd --test io_poll --test close_race -- --test-threads=2
cargo test --release --features hook --test hook_faults -- --test-threads=1

echo "== hook: C (LD_PRELOAD and -livy_hook), gcc and clang"
cargo build --release # libivy.so and libivy_hook.so
libdir=$root/target/release
hook=$libdir/libivy_hook.so
soname=$(readelf -d "$libdir/libivy.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ -n "$soname" ] && ln -sf libivy.so "$libdir/$soname"
out=$root/target/hook-tests
rm -rf "$out"
mkdir -p "$out/pkgconfig"
# The build tree's pkg-config files: the linked variant links through
# `pkg-config --libs ivy-hook` (-livy_hook -livy), as users do.
scripts/ivy-pc.sh "$root" "$libdir" "$root/include" > "$out/pkgconfig/ivy.pc"
scripts/ivy-hook-pc.sh "$root" "$libdir" > "$out/pkgconfig/ivy-hook.pc"
export PKG_CONFIG_PATH=$out/pkgconfig
compilers=gcc
if command -v clang >/dev/null 2>&1; then
    compilers="gcc clang"
elif [ -n "${CI:-}" ]; then
    echo "clang missing (CI installs it)" >&2
    exit 1
fi
cflags="-I$root/include -I$root/tests/c -Wall -Wextra -Werror -std=c99 -pedantic -O1 -g"
failed=0
for src in tests/c/hook/*.c; do
    name=$(basename "$src" .c)
    for cc in $compilers; do
        $cc $cflags "$src" -o "$out/$name-$cc" -L"$libdir" -livy -Wl,-rpath,"$libdir" -pthread -ldl
        # shellcheck disable=SC2046
        $cc $cflags "$src" -o "$out/$name-$cc-linked" $(pkg-config --libs ivy-hook) \
            -Wl,-rpath,"$libdir" -pthread -ldl
        echo "-- $name ($cc, LD_PRELOAD)"
        LD_PRELOAD=$hook timeout 120 "$out/$name-$cc" || failed=$((failed + 1))
        echo "-- $name ($cc, -livy_hook)"
        timeout 120 "$out/$name-$cc-linked" || failed=$((failed + 1))
    done
done

echo "== hook: the C tests under valgrind, hook preloaded"
if command -v valgrind >/dev/null 2>&1; then
    for src in tests/c/hook/*.c; do
        name=$(basename "$src" .c)
        # fork/vfork children are not checked (valgrind runs vfork as fork;
        # the children _exit at once).
        if LD_PRELOAD=$hook timeout 300 valgrind -q --error-exitcode=1 --leak-check=full \
            --child-silent-after-fork=yes --suppressions=tests/c/valgrind.supp \
            "$out/$name-gcc" > "$out/$name.vg.log" 2>&1; then
            echo "ok   $name under valgrind: $(grep -E '^[0-9]+ passed' "$out/$name.vg.log" | tail -n 1)"
        else
            echo "FAIL $name under valgrind (log: $out/$name.vg.log)"
            failed=$((failed + 1))
        fi
    done
elif [ -n "${CI:-}" ]; then
    echo "FAIL valgrind missing (CI installs it)"
    failed=$((failed + 1))
else
    echo "SKIP valgrind not installed"
fi

echo "== hook: a program that never starts ivy is unchanged by the preloaded hook"
expected=$(printf 'one\ntwo\n' | sort -r | cat)
got=$(printf 'one\ntwo\n' | LD_PRELOAD=$hook sort -r | LD_PRELOAD=$hook cat)
if [ "$got" = "$expected" ]; then
    echo "ok   plain programs under LD_PRELOAD"
else
    echo "FAIL plain programs under LD_PRELOAD: got '$got'"
    failed=$((failed + 1))
fi

echo "== hook: Python (socket, time.sleep) with the hook preloaded"
# ivyrt's interpreter: the venv bindings/python/run-tests.sh (run before this
# script by test.sh) installs the package into.
ivyrt_python=${IVYRT_PYTHON:-target/pyvenv/bin/python}
LD_PRELOAD=$hook timeout 120 "$ivyrt_python" tests/hook/python_socket.py || failed=$((failed + 1))

if [ "$failed" -ne 0 ]; then
    echo "hook: $failed failing program(s)" >&2
    exit 1
fi
echo "hook: all passed"
