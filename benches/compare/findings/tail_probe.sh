#!/bin/bash
# The tcp_echo p99 under a shared CPU (findings/tail.md): one server (ivy or tokio,
# 2 workers) and loadgen on the same 2 cores, loadgen at the server's priority
# ("shared") or at nice 19 ("server first"), interleaved. Prints, per run, the
# loadgen's figures (with the fewest and most round trips of one connection) and
# each server worker's time on a CPU and time runnable but waiting for one
# (schedstat), over the loadgen's run.
#
#   benches/compare/findings/tail_probe.sh [CONNS] [RUNS]      (default 10 3)
set -euo pipefail
C=${1:-10}; R=${2:-3}
cd "$(dirname "$0")/.."
T=target/release
stat() { for t in /proc/$1/task/*; do [ -r $t/schedstat ] && echo "$(cat $t/comm) $(cat $t/schedstat)"; done | grep -E 'worker' || true; }
for r in $(seq "$R"); do
  for sys in ivy tokio; do
    for mode in shared server-first; do
      coproc SRV { exec $T/$sys-bench tcp_echo --port 0 --workers 2; }
      read -r line <&"${SRV[0]}"; port=${line##* }; port=${port##*=}
      before=$(stat $SRV_PID)
      nice=""; [ $mode = server-first ] && nice="nice -n 19"
      res=$($nice $T/loadgen --port "$port" --conns "$C" --warmup 1 --duration 4 --system $sys --workers 2 2>&1 |
            grep -o 'metric=[a-z0-9_]* value=[0-9.]*\|per connection min [0-9]*, max [0-9]*' |
            sed 's/metric=//; s/ value=/=/; s/per connection min \([0-9]*\), max \([0-9]*\)/per_conn=\1..\2/' | tr '\n' ' ')
      after=$(stat $SRV_PID)
      kill $SRV_PID; wait $SRV_PID 2>/dev/null || true
      wait_ms=$(paste <(echo "$before") <(echo "$after") | awk '{printf "w%d_run_ms=%.0f w%d_wait_ms=%.0f ", NR-1, ($6-$2)/1e6, NR-1, ($7-$3)/1e6}')
      echo "conns=$C run=$r system=$sys loadgen=$mode $res$wait_ms"
    done
  done
done
