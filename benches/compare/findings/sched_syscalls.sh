#!/bin/bash
# Syscalls per echoed message of an echo server binary (findings/sched.md, section 2):
#   findings/sched_syscalls.sh target/release/ivy-bench   (from benches/compare)
BIN=$1
$BIN tcp_echo --port 0 --workers 2 > /tmp/sched-srv.out 2>/dev/null &
SRV=$!
sleep 0.5
PORT=$(grep -o "port=[0-9]*" /tmp/sched-srv.out | cut -d= -f2)
perf stat -e 'syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,instructions:u,instructions:k' -p $SRV -o /tmp/sched-perf.txt &
ST=$!
sleep 0.3
target/release/loadgen --port $PORT --conns 100 --warmup 0.2 --duration 3 --system x --workers 2 --workload tcp_echo 2>/dev/null | grep -o "msgs_per_s value=[0-9]*\|check=[0-9]*"
kill -INT $ST; wait $ST 2>/dev/null
kill $SRV; wait $SRV 2>/dev/null
grep -E "syscalls|instructions" /tmp/sched-perf.txt
