#!/bin/bash
# usage: mpmcab.sh ROUNDS OUT bin...
rounds=$1; out=$2; shift 2
for i in $(seq 1 $rounds); do for b in "$@"; do
  if [ "$b" = go ]; then r=$(/work/main/benches/compare/target/go-bench mpmc_bounded --workers 2 2>&1); split=go;
  else r=$(/tmp/ivy-$b mpmc_bounded --workers 2 2>&1); split=$(echo "$r" | grep -o 'homes: .*probe' | python3 -c "
import sys
t=sys.stdin.read().split()[1:-1]
c=set(x[1] for x in t if x[0]=='c'); p=set(x[1] for x in t if x[0]=='p')
print('split' if len(c)==1 and len(p)==1 and c!=p else 'mixed')"); fi
  v=$(echo "$r" | grep -o 'value=[0-9.]*' | tail -1 | cut -d= -f2); echo "$b $split $v"; done; done > $out
python3 - $out <<'PY'
import statistics,sys
d={}
for l in open(sys.argv[1]):
    b,s,v=l.split(); d.setdefault(b,[]).append((s,float(v)))
for b,l in d.items():
    allv=[v for s,v in l]
    sp=[v for s,v in l if s=='split']; mx=[v for s,v in l if s=='mixed']
    print(f"{b:12} all {statistics.median(allv):6.1f} [{min(allv):.1f}-{max(allv):.1f}] split {len(sp)} {round(statistics.median(sp),1) if sp else '-'} mixed {round(statistics.median(mx),1) if mx else '-'}")
PY
