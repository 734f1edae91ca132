#!/usr/bin/env bash
# Issue 7 figure: wharf's peak memory while a job prints a lot (shell executor).
# A job prints SIZE bytes (default 100 MB) of lines, then a coverage line; `coverage:` makes wharf
# scan the whole log afterwards. Reports wharf's peak RSS (GNU time's %M) and the wall time.
# Usage: bash bench/job-output.sh [SIZE]     WHARF=path/to/wharf to use another binary.
set -euo pipefail
size=${1:-100000000}
root=$(cd "$(dirname "$0")/.." && pwd)
wharf=${WHARF:-$root/target/release/wharf}
if [ ! -x "$wharf" ]; then
  (cd "$root" && cargo build --release -p wharf)
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/.gitlab-ci.yml" <<YAML
noisy:
  script:
    - (yes 'a line of job output, again and again' | head -c $size) || true
    - echo; echo '42.5% covered'
  coverage: '/(\d+\.\d+)% covered/'
YAML
out=$(cd "$dir" && /usr/bin/time -f '%M %e' "$wharf" run --executor shell 2>&1 >/dev/null | tail -1)
read -r peak_kib seconds <<<"$out"
log=$(stat -c %s "$dir/.wharf/logs/noisy.log")
echo "job output: $size bytes, log file: $log bytes, wharf peak RSS: $peak_kib KiB, wall: ${seconds}s ($wharf)"
