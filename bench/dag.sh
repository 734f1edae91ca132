#!/usr/bin/env bash
# Issue 3 speed figure: DAG reaction latency. `b` needs only `a`; an unrelated `slow` job
# (sleep 3) runs alongside. `a` writes `date +%s%N` as its last command, `b` as its first, into
# a folder passed with `--variable`; b_start - a_end is how long wharf took to notice `a` ended
# and start `b` (process exit, artifacts, scheduling, preparing b, starting its shell).
# Target: within 10 ms.
#
#   bash bench/dag.sh             # 20 runs
#   RUNS=5 bash bench/dag.sh
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
RESULTS="$BENCH/results"
RUNS="${RUNS:-20}"

(cd "$ROOT" && cargo build --release -q -p wharf)
WHARF="$ROOT/target/release/wharf"

WORK="$(mktemp -d /tmp/wharf-bench-dag.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
P="$WORK/project"
TS="$WORK/ts"
mkdir -p "$P" "$TS"
cat >"$P/.gitlab-ci.yml" <<'EOF'
stages: [first, second]
a:
  stage: first
  script:
    - echo building a
    - date +%s%N > "$TS_DIR/a_end"
slow:
  stage: first
  script:
    - sleep 3
    - date +%s%N > "$TS_DIR/slow_end"
b:
  stage: second
  needs: [a]
  script:
    - date +%s%N > "$TS_DIR/b_start"
    - echo b ran
EOF
git -C "$P" init -q -b main
git -C "$P" -c user.name=bench -c user.email=bench@example.invalid add -A
git -C "$P" -c user.name=bench -c user.email=bench@example.invalid commit -qm init

mkdir -p "$RESULTS"
out="$RESULTS/dag-latency.txt"
: >"$WORK/latencies"
for i in $(seq 1 "$RUNS"); do
  rm -f "$TS"/*
  rm -rf "$P/.wharf"
  "$WHARF" run -C "$P" --variable "TS_DIR=$TS" >"$WORK/run.log" 2>&1 || { cat "$WORK/run.log"; echo "run $i failed"; exit 1; }
  a=$(cat "$TS/a_end"); b=$(cat "$TS/b_start"); slow=$(cat "$TS/slow_end")
  # b must start while slow still runs (it needs only a), or this measures stage ordering.
  ((b < slow)) || { echo "run $i: b started after slow ended: not DAG scheduling"; exit 1; }
  python3 -c "import sys; print((int(sys.argv[2]) - int(sys.argv[1])) / 1e6)" "$a" "$b" >>"$WORK/latencies"
done
{
  echo "[dag-latency] $(date -u +%FT%TZ) wharf $(git -C "$ROOT" rev-parse --short HEAD); load: $(uptime)"
  python3 - "$WORK/latencies" <<'EOF'
import statistics, sys
xs = [float(l) for l in open(sys.argv[1])]
print(f"  b_start - a_end over {len(xs)} runs: median {statistics.median(xs):.2f} ms, max {max(xs):.2f} ms, min {min(xs):.2f} ms   (target: within 10 ms)")
print("  all (ms): " + " ".join(f"{x:.2f}" for x in xs))
EOF
} | tee "$out"
