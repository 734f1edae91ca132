#!/usr/bin/env bash
# wharf as a GitLab runner (issue 12): idle footprint and per-job overhead, against the stand-in
# coordinator bench/runner_coordinator.py (loopback). Figures go to bench/README.md.
#   bash bench/runner.sh          (JOBS=20 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-20}
cargo build --release -p wharf >/dev/null
WHARF=$PWD/target/release/wharf
work=$(mktemp -d)
pids=""
cleanup() { for pid in $pids; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT INT TERM

# Sets $url. Not in $(...): the coordinator must stay this shell's child.
start_coordinator() { # mode [jobs]
  rm -f "$work/port"
  python3 bench/runner_coordinator.py "$1" "${2:-0}" "$work/port" >"$work/coordinator.out" 2>&1 &
  pids="$pids $!"
  for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
  url="http://127.0.0.1:$(cat "$work/port")"
}

# 1. Idle: the runner polls a coordinator that never has a job; RSS after 10 s.
start_coordinator idle
CI_SERVER_URL=$url CI_SERVER_TOKEN=glrt-bench "$WHARF" runner run-single --builds-dir "$work/builds" \
  >/dev/null 2>&1 &
runner=$!; pids="$pids $runner"
sleep 10
echo "idle runner RSS: $(ps -o rss= -p "$runner" | tr -d ' ') KiB"
kill "$runner"; wait "$runner" 2>/dev/null || true

# 2. JOBS shell jobs `true`, one after the other: coordinator-measured pickup to final update.
start_coordinator jobs "$JOBS"
CI_SERVER_URL=$url CI_SERVER_TOKEN=glrt-bench "$WHARF" runner run-single --max-builds "$JOBS" \
  --check-interval 1 --builds-dir "$work/builds" >/dev/null 2>&1
sleep 0.5
cat "$work/coordinator.out"

# The same job under `wharf run`, for comparison.
mkdir -p "$work/project"
printf 'bench:\n  script: ["true"]\n' >"$work/project/.gitlab-ci.yml"
start=$(date +%s%N)
for _ in $(seq "$JOBS"); do (cd "$work/project" && "$WHARF" run >/dev/null); done
echo "wharf run of the same job: mean $(( ($(date +%s%N) - start) / JOBS / 1000000 )) ms"

# 3. 20 jobs at once on one runner process (`run --config`, concurrent = limit = JOBS), each
#    `sleep 1`: pickup to final update per job, against `wharf run` of the same job.
cat >"$work/config.toml" <<TOML
concurrent = $JOBS
check_interval = 1
TOML
add_runner() {
  cat >>"$work/config.toml" <<TOML
[[runners]]
name = "bench"
url = "$url"
token = "glrt-bench"
executor = "shell"
limit = $JOBS
builds_dir = "$work/builds"
TOML
}
BENCH_SCRIPT="sleep 1" start_coordinator jobs "$JOBS"
add_runner
"$WHARF" runner run --config "$work/config.toml" >/dev/null 2>&1 &
runner=$!; pids="$pids $runner"
for _ in $(seq 600); do grep -q "pickup" "$work/coordinator.out" && break; sleep 0.1; done
echo "$JOBS at once, sleep 1: $(cat "$work/coordinator.out")"
kill "$runner"; wait "$runner" 2>/dev/null || true
printf 'bench:\n  script: ["sleep 1"]\n' >"$work/project/.gitlab-ci.yml"
start=$(date +%s%N)
for _ in 1 2 3 4 5; do (cd "$work/project" && "$WHARF" run >/dev/null); done
echo "wharf run of the same job (sleep 1): mean $(( ($(date +%s%N) - start) / 5 / 1000000 )) ms"

# 4. A job printing 10 MB (100-byte lines), all of it sent to the coordinator (`output_limit`
#    16 MiB), RUNS times: CPU (user + system, the process and the children it waited for, from
#    /proc/<pid>/stat) of the runner process vs `wharf run` of the same job.
RUNS=${RUNS:-3}
PRINT='i=0; while [ $i -lt 1000 ]; do seq 100000 100099 | sed "s/$/ xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx/"; i=$((i+1)); done'
ticks=$(getconf CLK_TCK)
for _ in $(seq "$RUNS"); do
  BENCH_SCRIPT="$PRINT" start_coordinator jobs 1
  cat >"$work/config.toml" <<TOML
check_interval = 1
[[runners]]
name = "bench"
url = "$url"
token = "glrt-bench"
executor = "shell"
output_limit = 16384
builds_dir = "$work/builds"
TOML
  "$WHARF" runner run --config "$work/config.toml" >/dev/null 2>&1 &
  runner=$!; pids="$pids $runner"
  for _ in $(seq 1200); do grep -q "pickup" "$work/coordinator.out" && break; sleep 0.1; done
  # Fields 14-17: utime stime cutime cstime (the command name has no spaces here).
  cpu_runner=$(awk -v t="$ticks" '{printf "%.2f", ($14+$15+$16+$17)/t}' "/proc/$runner/stat")
  echo "10 MB job: $(cat "$work/coordinator.out"); runner CPU ${cpu_runner} s"
  kill "$runner"; wait "$runner" 2>/dev/null || true
done
printf 'bench:\n  script:\n    - %s\n' "'$PRINT'" >"$work/project/.gitlab-ci.yml"
for _ in $(seq "$RUNS"); do
  (cd "$work/project" && /usr/bin/time -f "wharf run of the same job: CPU %U s user + %S s system, %e s elapsed" "$WHARF" run >/dev/null)
done
