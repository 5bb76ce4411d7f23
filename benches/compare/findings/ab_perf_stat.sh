#!/bin/bash
# Interleaved A/B of ivy-bench builds: perf stat task-clock and the RESULT metrics, medians [min-max].
# usage: ab_perf_stat.sh RUNS WORKLOAD ARGS... -- BIN... (findings/prefetch.md)
runs=$1; shift; args=(); while [ "$1" != "--" ]; do args+=("$1"); shift; done; shift
for i in $(seq $runs); do for x in "$@"; do
  out=$(perf stat -x, -e task-clock $x "${args[@]}" 2>&1)
  v=$(echo "$out" | grep -o "metric=[a-z_]* value=[0-9.]*" | head -2 | sed 's/metric=//;s/ value=/=/' | tr '\n' ' ')
  tc=$(echo "$out" | grep task-clock | cut -d, -f1)
  echo "$x $v cpu=$tc"
done; done | python3 -c '
import sys,collections,statistics
d=collections.defaultdict(list)
for line in sys.stdin:
    print(line.rstrip()); f=line.split()
    for kv in f[1:]:
        k,v=kv.split("="); d[(f[0],k)].append(float(v))
print("--- medians")
for (b,k),v in sorted(d.items()): print(f"{b:45s} {k:12s} {statistics.median(v):10.1f}  [{min(v):.0f}-{max(v):.0f}]")
'
