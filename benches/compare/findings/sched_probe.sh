#!/bin/bash
# Round 16 (NOTES.md): what the machine does while a tcp_echo server serves
# loadgen on the same cores. From benches/compare, after cargo build --release:
#   findings/sched_probe.sh idle  BIN CONNS SECS   msgs/s, p50, p99, the machine's idle/user/sys %
#   findings/sched_probe.sh sysc  BIN CONNS SECS   the server's syscalls per message, by kind
#   findings/sched_probe.sh sched BIN CONNS SECS   perf sched over 1 s: per-thread run time,
#                                                  switches, delays; each CPU's idle time
# BIN is started as `BIN tcp_echo --port 0 --workers 2` and must print "port=N"
# (ivy-bench, tokio-bench, /tmp/echo-floor from findings/echo_floor.c;
# a wrapper script such as `exec chrt -b 0 ivy-bench "$@"` works too).
set -eu
MODE=$1; BIN=$2; C=$3; D=$4
LOADGEN=$(pwd)/target/release/loadgen
OUT=/tmp/sched-probe.$$
"$BIN" tcp_echo --port 0 --workers 2 > $OUT.srv 2>/dev/null &
SRV=$!
for _ in $(seq 50); do grep -q "port=" $OUT.srv && break; sleep 0.1; done
PORT=$(grep -o "port=[0-9]*" $OUT.srv | cut -d= -f2)
"$LOADGEN" --port "$PORT" --conns "$C" --warmup 0 --duration "$D" --system x --workers 2 \
    --workload tcp_echo > $OUT.load 2>&1 &
LOAD=$!
sleep 0.5
case $MODE in
idle)
    head -1 /proc/stat > $OUT.a; sleep $((D - 1)); head -1 /proc/stat > $OUT.b ;;
sysc)
    EV=raw_syscalls:sys_enter
    for s in epoll_wait epoll_pwait recvfrom sendto read write futex sched_yield epoll_ctl; do
        EV="$EV,syscalls:sys_enter_$s"; done
    timeout -s INT $((D - 1)) perf stat -x, -e "$EV" -p $SRV -o $OUT.perf || true ;;
sched)
    perf sched record -o $OUT.data -- sleep 1 > /dev/null 2>&1 ;;
esac
wait $LOAD
kill $SRV; wait $SRV 2>/dev/null || true
RATE=$(grep -o "msgs_per_s value=[0-9.]*" $OUT.load | cut -d= -f2)
P50=$(grep -o "p50_us value=[0-9.]*" $OUT.load | cut -d= -f2)
P99=$(grep -o "p99_us value=[0-9.]*" $OUT.load | cut -d= -f2)
echo "$(basename "$BIN") conns=$C msgs_per_s=$RATE p50_us=$P50 p99_us=$P99"
case $MODE in
idle)
    python3 - $OUT.a $OUT.b <<'PY'
import sys
a, b = (list(map(int, open(f).read().split()[1:])) for f in sys.argv[1:3])
d = [y - x for x, y in zip(a, b)]
t = sum(d)
print(f"  idle={100*(d[3]+d[4])/t:.1f}% user={100*d[0]/t:.1f}% sys={100*(d[2]+d[5]+d[6])/t:.1f}%")
PY
    ;;
sysc)
    python3 - $OUT.perf "$RATE" $((D - 1)) <<'PY'
import sys
n = float(sys.argv[2]) * float(sys.argv[3])
out = []
for line in open(sys.argv[1]):
    p = line.strip().split(",")
    if len(p) > 3 and p[0].replace(".", "").isdigit() and float(p[0]):
        out.append(f"{p[2].split(':')[1].replace('sys_enter_', '')}={float(p[0]) / n:.2f}")
print("  per message: " + " ".join(out))
PY
    ;;
sched)
    perf sched timehist -i $OUT.data -s 2>/dev/null \
        | grep -E "idle for|loadgen|worker|echo-floor|ivy-bench" ;;
esac
rm -f $OUT.*
