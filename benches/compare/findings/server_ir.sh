#!/bin/bash
# User-space instructions per echoed message of a tcp_echo server (NOTES.md,
# round 13): the server runs under callgrind, a 1 s load warms it up, the
# counters are zeroed, `loadgen` runs SECS seconds, the counters are dumped.
# Instructions (not time), so the figure does not depend on the machine's load;
# under callgrind the server runs ~50x slower, so its workers are rarely idle
# and the idle spin (time-bounded) is not in the count.
#   findings/server_ir.sh BIN CONNS SECS      (from benches/compare)
set -eu
BIN=$1; C=$2; D=$3
OUT=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" "$BIN" tcp_echo --port 0 --workers 2 \
    > "$OUT/srv.out" 2>/dev/null &
VG=$!
for _ in $(seq 150); do grep -q "port=" "$OUT/srv.out" && break; sleep 0.2; done
PORT=$(grep -o "port=[0-9]*" "$OUT/srv.out" | cut -d= -f2)
load() {
    target/release/loadgen --port "$PORT" --conns "$C" --warmup 0 --duration "$1" --system x \
        --workers 2 --workload tcp_echo 2>&1
}
load 1 > /dev/null
callgrind_control -z $VG > /dev/null 2>&1
RATE=$(load "$D" | grep -o "msgs_per_s value=[0-9.]*" | cut -d= -f2)
callgrind_control -d $VG > /dev/null 2>&1
sleep 1
kill $VG; wait $VG 2>/dev/null || true
IR=$(callgrind_annotate "$OUT"/cg.*.1 2>/dev/null | grep "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
python3 -c "n=float('$RATE')*$D; print(f'$(basename "$BIN") conns=$C msgs={n:.0f} Ir={$IR} Ir_per_msg={$IR/n:.0f}')"
rm -rf "$OUT"
