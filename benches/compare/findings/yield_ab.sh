#!/bin/bash
# Round 19's tried busy-worker yield (NOTES.md): http_hello's p99 with the probe's
# IVY_PROBE_YIELD_US set to each of YS (0 = off), against tokio, interleaved.
# Build the probe first: git apply findings/worker_yield_probe.patch; cargo build --release
# -p ivy-bench; cp target/release/ivy-bench /tmp/ivy-bench-yield; git checkout src/runtime/worker.rs
#   [YS="0 200 50"] bash findings/yield_ab.sh [RUNS] ["shared pinned"]
cd "$(dirname "$0")/.."
R=${1:-3}; MODES=${2:-shared pinned}; YS=${YS:-0 200}
for r in $(seq $R); do for mode in $MODES; do for sys in $YS tokio; do
  pin=""; wpin=""; [ $mode = pinned ] && { pin="taskset -c 0"; wpin="taskset -c 1"; }
  if [ $sys = tokio ]; then bin=target/release/tokio-bench; y=0; else bin=/tmp/ivy-bench-yield; y=$sys; fi
  coproc SRV { IVY_PROBE_YIELD_US=$y exec $pin $bin http_hello --port 0 --workers 2; }
  read -r line <&"${SRV[0]}"; port=${line##*=}
  $wpin wrk -t1 -c100 -d1s "http://127.0.0.1:$port/" >/dev/null
  out=$($wpin wrk -t1 -c100 -d5s --latency "http://127.0.0.1:$port/")
  kill $SRV_PID; wait $SRV_PID 2>/dev/null
  echo "mode=$mode sys=$sys rps=$(echo "$out"|awk '/Requests\/sec/{print $2}') p99=$(echo "$out"|awk '$1=="99%"{print $2}')"
done; done; done
