#!/bin/bash
# The http_hello p99 under a shared CPU (NOTES.md round 19; tail.md did the same for tcp_echo):
# one server (ivy or tokio, 2 workers) and wrk (1 thread, 100 connections, as the harness runs
# it) on the same 2 cores, wrk at the server's priority ("shared", as the harness does) or at
# nice 19 ("server first": a server worker that wakes takes the CPU back from wrk), or with the
# server pinned to CPU 0 and wrk to CPU 1 ("pinned": no worker ever shares a CPU with wrk),
# interleaved.
# ivy runs twice: as is, and with its workers under SCHED_OTHER (`IVY_SCHED_BATCH=0`, "ivy-other"),
# where a woken worker may preempt wrk (under SCHED_BATCH it waits for wrk's slice to end);
# SYSTEMS may also name "ivy-1w", ivy with one worker.
# Prints, per run, wrk's requests/s, p50 and p99, and each server worker's time on a CPU and time
# runnable but waiting for one (schedstat) over the measured run.
#
#   [SYSTEMS="ivy ivy-other tokio"] [MODES="shared server-first pinned"] benches/compare/findings/http_tail_probe.sh [RUNS]   (default 5)
set -euo pipefail
R=${1:-5}
cd "$(dirname "$0")/.."
T=target/release
stat() { for t in /proc/$1/task/*; do [ -r $t/schedstat ] && echo "$(cat $t/comm) $(cat $t/schedstat)"; done | grep -E 'worker' || true; }
us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /ms$/) n *= 1000; else if (v ~ /[0-9]s$/) n *= 1e6; printf "%.0f", n }'; }
for r in $(seq "$R"); do
  for sys in ${SYSTEMS:-ivy ivy-other tokio}; do
    for mode in ${MODES:-shared server-first pinned}; do
      bin=${sys%-*}; batch=1; [ "$sys" = ivy-other ] && batch=0
      workers=2; [ "$sys" = ivy-1w ] && workers=1
      pin=""; [ $mode = pinned ] && pin="taskset -c 0"
      coproc SRV { IVY_SCHED_BATCH=$batch exec $pin $T/$bin-bench http_hello --port 0 --workers $workers; }
      read -r line <&"${SRV[0]}"; port=${line##* }; port=${port##*=}
      nice=""; [ $mode = server-first ] && nice="nice -n 19"; [ $mode = pinned ] && nice="taskset -c 1"
      $nice wrk -t1 -c100 -d1s "http://127.0.0.1:$port/" > /dev/null
      before=$(stat $SRV_PID)
      out=$($nice wrk -t1 -c100 -d5s --latency "http://127.0.0.1:$port/")
      after=$(stat $SRV_PID)
      kill $SRV_PID; wait $SRV_PID 2>/dev/null || true
      rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
      p50=$(us "$(echo "$out" | awk '$1 == "50%" { print $2 }')")
      p99=$(us "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
      wait_ms=$(paste <(echo "$before") <(echo "$after") | awk '{printf "w%d_run_ms=%.0f w%d_wait_ms=%.0f ", NR-1, ($6-$2)/1e6, NR-1, ($7-$3)/1e6}')
      echo "run=$r system=$sys wrk=$mode rps=$rps p50_us=$p50 p99_us=$p99 $wait_ms"
    done
  done
done
