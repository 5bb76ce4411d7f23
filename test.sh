#!/usr/bin/env bash
# The one command that runs every test of ivy (README: "Run every test").
# Format and lint gates first, then the Rust test suite (unit, integration, doc).
set -euo pipefail
cd "$(dirname "$0")"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features hook -- -D warnings
(cd bindings/python && cargo fmt -- --check && cargo clippy --all-targets -- -D warnings)

echo "== cargo test (release: the stress tests run 100k-task scenarios)"
cargo test --release -- --test-threads=2

echo "== soundness regression tests under valgrind (tests/soundness_*.rs)"
tests/valgrind.sh

echo "== model checking: loom (task states, WaitList, idle handshake, queue ring), Miri (timer wheel, handle table, queue ring)"
tests/model-check.sh

echo "== C ABI: header check is in cargo test (tests/header.rs); C and C++ suite, examples, valgrind, ASan+UBSan"
tests/c/run.sh

echo "== Python package ivyrt: pip install into target/pyvenv, pytest over the installed package, examples/python"
bindings/python/run-tests.sh

tests/hook/run.sh # the libc hook layer: Rust (--features hook), C (LD_PRELOAD, -livy_hook), Python (ivyrt, installed above)

echo "== the hook layer with real software: libcurl, hiredis + redis-server, std::net, redis crate, ureq"
tests/real/run.sh
