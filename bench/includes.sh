#!/usr/bin/env bash
# Issue 8 figure: `wharf list` on a pipeline with 11 includes from outside the project (remote,
# two templates, three project files, five components with exact, partial, ~latest and branch
# versions), served by the stand-in GitLab (wharf-testkit's gitlab.rs, TLS on loopback):
#   cold    - empty include cache: every file and API lookup over the network
#   warm    - filled cache: tags and SHAs need no request, branches/templates/remote re-checked
#             with If-None-Match (304), ~latest and partial versions re-resolved
#   offline - filled cache, --offline: no request at all
#
#   bash bench/includes.sh            # hyperfine, 20 runs each
#   RUNS=5 bash bench/includes.sh
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
RUNS="${RUNS:-20}"
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)"; exit 1; }

(cd "$ROOT" && cargo build --release -q -p wharf && cargo build --release -q -p wharf-testkit --example gitlab_stand_in)
WHARF="$ROOT/target/release/wharf"
STAND_IN="$ROOT/target/release/examples/gitlab_stand_in"

WORK="$(mktemp -d /tmp/wharf-bench-includes.XXXXXX)"
exec 3> >("$STAND_IN" "$ROOT/crates/wharf-gitlab/tests/fixtures/gitlab" >"$WORK/server" 2>"$WORK/server.log")
trap 'exec 3>&-; sleep 0.2; rm -rf "$WORK"' EXIT
for _ in $(seq 1 50); do [ -s "$WORK/server" ] && break; sleep 0.1; done
read -r PORT CA <"$WORK/server"

P="$WORK/project"
mkdir -p "$P"
cp "$ROOT/crates/wharf-gitlab/tests/fixtures/every-include.gitlab-ci.yml" "$P/.gitlab-ci.yml"

FLAGS="-C $P --gitlab-url https://gitlab.test --gitlab-ca-file $CA --resolve gitlab.test=127.0.0.1:$PORT --resolve example.test=127.0.0.1:$PORT --include-cache $WORK/cache"
"$WHARF" list $FLAGS >/dev/null
hyperfine --warmup 2 --runs "$RUNS" -N \
  --prepare "rm -rf $WORK/cache" -n cold "$WHARF list $FLAGS"
"$WHARF" list $FLAGS >/dev/null
hyperfine --warmup 2 --runs "$RUNS" -N \
  -n warm "$WHARF list $FLAGS" \
  -n offline "$WHARF list $FLAGS --offline"
