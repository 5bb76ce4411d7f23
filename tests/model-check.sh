#!/usr/bin/env bash
# Model checking (README, "Model checking"), called by ./test.sh:
#
# 1. loom: the task state machine, `WaitList`, the idle/sleeper handshake, the
#    newest-spawn slot and the bounded queue's ring, every interleaving up to
#    LOOM_MAX_PREEMPTIONS (default 3) preemptions. Built with `--cfg loom` in
#    its own target dir (target/loom), so the normal build is not invalidated.
# 2. Miri: the unit tests of the timer wheel, of the C handle table and of the
#    bounded queue's ring, when a nightly toolchain with Miri is available
#    (installed quietly if rustup can; otherwise a "SKIP: Miri unavailable"
#    line, not a failure: the toolchain is the machine's, not the project's).
#
# Prints "model-check: N passed, N failed" at the end; exits non-zero on a failure.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

passed=0
failed=0
log_dir=$root/target/model-check
mkdir -p "$log_dir"

# Runs a `cargo test` command, tallies its tests. A run that dies without
# reporting a failed test (loom aborts the process after a deadlock report, a
# build error) counts as one failure.
run_tests() {
    local name=$1
    shift
    local log=$log_dir/$name.log
    echo "== model-check: $name"
    "$@" >"$log" 2>&1
    local rc=$?
    local ok bad
    ok=$(grep -cE '^test .* \.\.\. ok$' "$log")
    bad=$(grep -cE '^test .* \.\.\. FAILED$' "$log")
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        bad=1
    fi
    passed=$((passed + ok))
    failed=$((failed + bad))
    if [ "$rc" -ne 0 ] || [ "$bad" -ne 0 ]; then
        echo "   FAILED ($ok passed, $bad failed): last lines of $log:"
        tail -n 40 "$log" | sed 's/^/   | /'
    else
        echo "   $ok passed"
    fi
}

run_tests loom env RUSTFLAGS="${RUSTFLAGS:-} --cfg loom" \
    LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}" \
    cargo test --release -p ivy --lib --target-dir target/loom -- model_check:: --test-threads=2

miri_available() {
    timeout 60 cargo +nightly miri --version >/dev/null 2>&1
}
# Add the components to an installed nightly; never install a toolchain here.
if ! miri_available && command -v rustup >/dev/null 2>&1 &&
    rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    timeout 300 rustup +nightly component add miri rust-src >/dev/null 2>&1 || true
fi
if miri_available; then
    # The sysroot is built once (cached in ~/.cache/miri); `setup` keeps its
    # output out of the test log.
    timeout 900 cargo +nightly miri setup >/dev/null 2>&1 || true
    run_tests miri timeout 1800 cargo +nightly miri test -p ivy --lib -- timer::wheel ffi::handle sync::queue::ring
else
    echo "SKIP: Miri unavailable (no nightly toolchain with the miri component)"
fi

echo "model-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
