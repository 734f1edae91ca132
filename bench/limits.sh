#!/usr/bin/env bash
# Issue 7 "Bounds": what hostile or runaway pipelines cost `wharf lint`, in wall time and peak
# memory (/usr/bin/time -v), before and after GitLab's limits were applied by default.
#
#   bash bench/limits.sh                              # the current tree only (release build)
#   BEFORE=/path/to/old/wharf bash bench/limits.sh    # and an older binary, side by side
#
# Cases:
#   big      an 11 MB file with 289,000 jobs (`job-NNNNNN: {script: [echo job N]}`)
#   big-raised  the same with the limits raised (--max-yaml-size 20M --max-jobs 300000)
#   includes 150 included files of 10 jobs each (within GitLab's limits: must still load)
#   bomb     a "billion laughs" alias bomb (9 levels of 9 aliases)
#   deep     100,000 nested block lists (`- - - ... x`)
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
RESULTS="$BENCH/results"
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)"; exit 1; }

if [[ -z "${AFTER:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p wharf)
  AFTER="$ROOT/target/release/wharf"
fi

WORK="$(mktemp -d /tmp/wharf-bench-limits.XXXXXX)"
trap '[[ -n "${KEEP:-}" ]] || rm -rf "$WORK"' EXIT

project() { # name -> a git project folder
  local p="$WORK/$1"
  mkdir -p "$p"
  git -C "$p" init -q -b main
  echo "$p"
}

P_BIG="$(project big)"
python3 - "$P_BIG/.gitlab-ci.yml" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(289_000):
        f.write(f"job-{i:06d}: {{script: [echo job {i}]}}\n")
EOF

P_INC="$(project includes)"
python3 - "$P_INC" <<'EOF'
import sys, os
root = sys.argv[1]
os.makedirs(os.path.join(root, "ci"))
with open(os.path.join(root, ".gitlab-ci.yml"), "w") as f:
    f.write("include:\n")
    for k in range(150):
        f.write(f"  - local: ci/part-{k}.yml\n")
for k in range(150):
    with open(os.path.join(root, f"ci/part-{k}.yml"), "w") as f:
        for i in range(10):
            f.write(f"p{k}-j{i}: {{script: [echo {k} {i}]}}\n")
EOF

P_BOMB="$(project bomb)"
python3 - "$P_BOMB/.gitlab-ci.yml" <<'EOF'
import sys
lines = ['a0: &a0 ["lol"]']
for n in range(1, 10):
    refs = ", ".join([f"*a{n-1}"] * 9)
    lines.append(f"a{n}: &a{n} [{refs}]")
lines.append("job: {script: [x], variables: {X: *a9}}")
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
EOF

P_DEEP="$(project deep)"
python3 - "$P_DEEP/.gitlab-ci.yml" <<'EOF'
import sys
open(sys.argv[1], "w").write("job:\n  script:\n    " + "- " * 100_000 + "x\n")
EOF

ls -l "$P_BIG/.gitlab-ci.yml" | awk '{print "big pipeline: " $5 " bytes"}'

# One measurement: "<label> <binary> <project> [flags]" -> a table row.
measure() {
  local label="$1" bin="$2" dir="$3"
  shift 3
  local out="$WORK/out.txt" tv="$WORK/time.txt" status=0
  /usr/bin/time -v "$bin" lint -C "$dir" "$@" >"$out" 2>"$tv" || status=$?
  local rss wall verdict
  rss="$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$tv")"
  wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$tv")"
  if ((status == 0)); then verdict="loads"; else
    verdict="refused: $(grep -m1 -o 'error: .*' "$tv" | cut -c1-90)"
  fi
  printf '| %s | %s | %s MiB | %s |\n' "$label" "$wall" "$rss" "$verdict"
}

mkdir -p "$RESULTS"
{
  echo "[limits] $(date -u +%FT%TZ) wharf $(git -C "$ROOT" rev-parse --short HEAD); load: $(uptime)"
  echo "| case | wall | max RSS | result |"
  echo "| ---- | ---- | ------- | ------ |"
  for case in big includes bomb deep; do
    dir="$WORK/$case"
    if [[ -n "${BEFORE:-}" ]]; then measure "$case, before" "$BEFORE" "$dir"; fi
    measure "$case, after" "$AFTER" "$dir"
    if [[ "$case" == big ]]; then
      measure "big, after, limits raised" "$AFTER" "$dir" --max-yaml-size 20M --max-jobs 300000
    fi
  done
} | tee "$RESULTS/limits.txt"
