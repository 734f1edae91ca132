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
