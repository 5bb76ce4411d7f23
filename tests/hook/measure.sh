#!/usr/bin/env bash
# What one read(2) costs with and without the hook, in user-space instructions
# (callgrind: exact and repeatable; the kernel's part is not counted and does
# not change). Not a test: prints the table quoted in README ("Hooked libc
# calls"). Needs valgrind.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build --release
out=$root/target/hook-tests
mkdir -p "$out"
gcc -O2 -g -Iinclude tests/hook/read_cost.c -o "$out/read_cost" -Ltarget/release -livy \
    -Wl,-rpath,"$root/target/release" -pthread
hook=$root/target/release/libivy_hook.so
printf '%-8s %-10s %s\n' mode hook 'instructions per read'
for mode in plain outside inside; do
    for pre in "" "$hook"; do
        LD_PRELOAD=$pre valgrind --tool=callgrind --toggle-collect=do_reads \
            --callgrind-out-file="$out/cg.out" "$out/read_cost" "$mode" >/dev/null 2>&1
        ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$out/cg.out")
        printf '%-8s %-10s %s\n' "$mode" "${pre:+preloaded}" $((ir / 10000))
    done
done
