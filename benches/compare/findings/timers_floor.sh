#!/bin/bash
# Round 19: the `timers` row against its floor with no runtime (findings/timers_floor.c), all
# interleaved. Usage: bash findings/timers_floor.sh [rounds=5] (from benches/compare, after
# `cargo build --release -p ivy-bench -p tokio-bench`).
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-5}
gcc -O2 -Wall -Wextra -Werror -pthread -o /tmp/timers_floor findings/timers_floor.c
for r in $(seq "$rounds"); do
  for m in 3 1; do /tmp/timers_floor 1000000 2 $m; done
  ./target/release/ivy-bench timers --n 1000000 --workers 2 | grep -E "overhead_ms|peak_rss"
  ./target/release/tokio-bench timers --n 1000000 --workers 2 | grep -E "overhead_ms|peak_rss"
done
