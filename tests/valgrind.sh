#!/usr/bin/env bash
# Runs the soundness regression tests (tests/soundness_*.rs) under valgrind's
# memcheck: the paths that once reached freed memory must stay clean, not merely
# not crash. Called by ./test.sh after the ordinary cargo run of the same tests.
#
# Each soundness_* test binary runs whole under memcheck, except tests whose name
# starts with `novg_` (they measure RSS or page faults, or take too long there).
# Prints "N passed, N failed" at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind is not installed (apt-get install -y valgrind)" >&2
    exit 1
fi

# The test executables, as cargo names them (release: the same build ./test.sh ran).
mapfile -t bins < <(cargo test --release --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    t = m.get("target") or {}
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and "test" in t.get("kind", []) and t.get("name", "").startswith("soundness_"):
        print(t["name"] + " " + m["executable"])
')

passed=0
failed=0
out=$root/target/valgrind
mkdir -p "$out"
for entry in "${bins[@]}"; do
    name=${entry%% *}
    bin=${entry#* }
    log=$out/$name.log
    if valgrind -q --error-exitcode=99 --errors-for-leak-kinds=definite \
        --suppressions=tests/c/valgrind.supp \
        "$bin" --test-threads=1 --skip novg_ >"$log" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $name under valgrind: $(grep -E '^test result' "$log" | tail -n 1)"
    else
        failed=$((failed + 1))
        echo "FAIL $name under valgrind"
        tail -n 80 "$log"
    fi
done
echo "valgrind: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
