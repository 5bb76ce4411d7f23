#!/bin/bash
# CPU time per message of a server row, the server's and the load generator's,
# user and system apart (NOTES.md, round 13). Interleaved: each run starts every
# server in turn.
#   findings/server_cpu.sh WORKLOAD CONNS RUNS SECS BIN...     (from benches/compare)
# WORKLOAD: tcp_echo (load: target/release/loadgen) or http_hello (load: wrk -t1).
# e.g. findings/server_cpu.sh tcp_echo 100 7 3 target/release/ivy-bench \
#          target/release/tokio-bench /tmp/echo-floor
# Each BIN is started as `BIN WORKLOAD --port 0 --workers 2` and must print
# "LISTENING port=N". CPU times come from /proc/PID/stat (the server, over the
# load's whole run, which has no warm-up here) and GNU time (the load);
# messages are the load's messages (requests) per second times SECS.
set -eu
W=$1; C=$2; RUNS=$3; D=$4; shift 4
for r in $(seq "$RUNS"); do
  for BIN in "$@"; do
    "$BIN" "$W" --port 0 --workers 2 > /tmp/server-cpu-srv.out 2>/dev/null &
    SRV=$!
    for _ in $(seq 50); do grep -q "port=" /tmp/server-cpu-srv.out && break; sleep 0.1; done
    PORT=$(grep -o "port=[0-9]*" /tmp/server-cpu-srv.out | cut -d= -f2)
    read -r U0 S0 < <(awk '{print $14, $15}' /proc/$SRV/stat)
    if [ "$W" = http_hello ]; then
      OUT=$(/usr/bin/time -f "LOAD %U %S" wrk -t1 -c"$C" -d"$D"s "http://127.0.0.1:$PORT/" 2>&1)
      RATE=$(echo "$OUT" | awk '/^Requests\/sec:/ {print $2}')
    else
      OUT=$(/usr/bin/time -f "LOAD %U %S" target/release/loadgen --port "$PORT" --conns "$C" \
            --warmup 0 --duration "$D" --system x --workers 2 --workload tcp_echo 2>&1)
      RATE=$(echo "$OUT" | grep -o "msgs_per_s value=[0-9.]*" | cut -d= -f2)
    fi
    read -r U1 S1 < <(awk '{print $14, $15}' /proc/$SRV/stat)
    kill $SRV; wait $SRV 2>/dev/null || true
    read -r _ LU LS < <(echo "$OUT" | grep "^LOAD")
    python3 - "$BIN" "$W" "$C" "$D" "$RATE" "$U0" "$S0" "$U1" "$S1" "$LU" "$LS" <<'PY'
import os, sys
bin_, w, c, d, rate, u0, s0, u1, s1, lu, ls = sys.argv[1:]
n = float(rate) * float(d)
tick = 1e6 / os.sysconf("SC_CLK_TCK")  # us per clock tick
su, ss = (int(u1) - int(u0)) * tick / n, (int(s1) - int(s0)) * tick / n
lu, ls = float(lu) * 1e6 / n, float(ls) * 1e6 / n
print(f"{os.path.basename(bin_):12s} {w} conns={c} per_s={float(rate):.0f} "
      f"server_user={su:.2f} server_sys={ss:.2f} load_user={lu:.2f} load_sys={ls:.2f} "
      f"total={su + ss + lu + ls:.2f} (us per message)")
PY
  done
done
