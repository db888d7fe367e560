#!/bin/bash
# Runs the named scenarios for the benchmark report, on core 1
# (`taskset -c 1`; the worker pins itself to the last core):
#   cargo build --release -p sluice-perf
#   perf/run-all.sh sweep-routes sweep-services sweep-flows l3fwd l3fwd-v6 ...
#   ./target/release/sluice-perf report
# A sweep runs once (each point is its own run) into
# docs/benchmarks/data/NAME.json. Any other scenario runs three times; the
# run with the median Sluice Mpps per core is kept there, with the three
# figures in its `round_mpps` and the command that produced it.
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-./target/release/sluice-perf}
D=${DATA:-docs/benchmarks/data}
R=${TMPDIR:-/tmp}/sluice-perf-runs
mkdir -p $D $R
for s in "$@"; do
  case $s in
    sweep-*)
      echo "== $s $(date -u +%T) $(cat /proc/loadavg)"
      taskset -c 1 $BIN run $s --out $D/$s.json > $R/$s.md 2> $R/$s.err || echo "FAILED $s: $(tail -3 $R/$s.err)"
      python3 -c "import json,sys; p=sys.argv[1]; v=json.load(open(p)); v['command']='taskset -c 1 '+v['command']; json.dump(v,open(p,'w'),indent=2,ensure_ascii=False)" $D/$s.json
      cat $R/$s.md | grep -i "cost growth"
      ;;
    *)
      for i in 1 2 3; do
        echo "== $s #$i $(date -u +%T) $(cat /proc/loadavg)"
        taskset -c 1 $BIN run $s --out $R/$s.$i.json > $R/$s.$i.md 2> $R/$s.$i.err || echo "FAILED $s: $(tail -3 $R/$s.$i.err)"
      done
      python3 - "$s" "$R" "$D" <<'PY'
import json,sys,shutil,os
s,R,D=sys.argv[1:]
runs=[]
for i in (1,2,3):
    p=f"{R}/{s}.{i}.json"
    if os.path.exists(p):
        v=json.load(open(p))
        m=[r["mpps_per_core"] for r in v["results"] if r["system"]=="sluice"]
        if m: runs.append((m[0],p))
order=[round(x,3) for x,_ in runs]
ranked=sorted(runs)
if ranked:
    med=ranked[len(ranked)//2]
    v=json.load(open(med[1]))
    for r in v["results"]:
        if r["system"]=="sluice":
            r["round_mpps"]=order
    v["rounds"]=len(order)
    v["command"]="taskset -c 1 "+v["command"]+f"   # the median of {len(order)} runs (perf/run-all.sh)"
    json.dump(v,open(f"{D}/{s}.json","w"),indent=2,ensure_ascii=False)
    print(s,"median",med[0],"of",order)
PY
      ;;
  esac
done
