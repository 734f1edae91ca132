#!/usr/bin/env bash
# Issue 10 figures: the sandbox executor against Docker, side by side in one hyperfine run each.
#   1. one-job pipeline, image already local: wharf --executor sandbox vs `docker run --rm`
#      (and wharf --executor docker). Target: sandbox <= 0.2x docker run.
#   2. 24 such pipelines at concurrency 4 (xargs -P4): sandbox vs docker run. Target <= 0.15x.
#   3. rootless (as nobody through setpriv): sandbox vs rootless podman is not installed here;
#      the rootless sandbox time is reported on its own.
#
#   bash bench/sandbox.sh        # RUNS=10 for a quick check, FIRST_ONLY=1 for figure 1 alone
# Offline: the image is built from /usr/bin/busybox, pushed to Debian's docker-registry on
# 127.0.0.1, pulled into a scratch WHARF_HOME once.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
RESULTS="$BENCH/results"
RUNS="${RUNS:-20}"
IMAGE=wharf-bench/busybox-sandbox:latest
mkdir -p "$RESULTS"

(cd "$ROOT" && cargo build --release -q -p wharf)
WHARF="$ROOT/target/release/wharf"
WORK="$(mktemp -d /tmp/wharf-bench-sandbox.XXXXXX)"
chmod 755 "$WORK"
REGISTRY_PID=""
cleanup() {
  set +e
  [[ -n "$REGISTRY_PID" ]] && kill "$REGISTRY_PID" && wait "$REGISTRY_PID" 2>/dev/null
  docker rmi -f "$IMAGE" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

# The image: busybox with every applet linked.
R="$WORK/rootfs"
mkdir -p "$R/bin" "$R/tmp" "$R/etc" "$R/root"
chmod 1777 "$R/tmp"
cp /usr/bin/busybox "$R/bin/busybox"
for a in $(/usr/bin/busybox --list); do [[ -e "$R/bin/$a" ]] || ln -s busybox "$R/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
tar -C "$R" -c . | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "$IMAGE" >/dev/null

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p "$WORK/registry"
cat >"$WORK/registry/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry/data
http:
  addr: 127.0.0.1:$PORT
YML
docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/v2/')" 2>/dev/null && break
  sleep 0.1
done
REG_IMAGE="127.0.0.1:$PORT/bb:1"
skopeo copy -q --dest-tls-verify=false "docker-daemon:$IMAGE" "docker://$REG_IMAGE"

P="$WORK/project"
mkdir -p "$P"
cat >"$P/.gitlab-ci.yml" <<YML
hello:
  image: $REG_IMAGE
  script:
    - echo hello
    - ls
YML
export WHARF_HOME="$WORK/home"
# Fill the store once (and check the job works).
"$WHARF" run -C "$P" --executor sandbox --pull-policy always >/dev/null
grep -q hello "$P/.wharf/logs/hello.log"
docker pull -q "$REG_IMAGE" >/dev/null

OUT="$RESULTS/sandbox.txt"
echo "[sandbox] $(date -u +%FT%TZ) wharf $(git -C "$ROOT" rev-parse --short HEAD); $(docker version --format 'dockerd {{.Server.Version}}'); load: $(uptime)" | tee -a "$OUT"

S1="$WHARF run -C $P --executor sandbox --pull-policy never"
D1="docker run --rm $REG_IMAGE sh -c 'echo hello; ls'"
W1="$WHARF run -C $P --executor docker --pull-policy if-not-present"
# With limits (issue 10 "Limits"): what making, limiting and removing a cgroup per script costs.
SL="$S1 --memory 512m --pids-limit 1000"
hyperfine --warmup 2 --runs "$RUNS" --export-json "$RESULTS/sandbox-one-job.json" \
  -n "wharf (sandbox)" "$S1" -n "wharf (sandbox, --memory --pids-limit)" "$SL" \
  -n "docker run --rm" "$D1" -n "wharf (docker)" "$W1" | tee -a "$OUT"
# FIRST_ONLY=1: figure 1 alone.
[[ "${FIRST_ONLY:-}" == 1 ]] && exit 0

# 24 pipelines at concurrency 4: 24 project copies so no two runs share a .wharf folder.
for i in $(seq 24); do cp -r "$P" "$WORK/p$i"; done
S24="seq 24 | xargs -P4 -I{} $WHARF run -C $WORK/p{} --executor sandbox --pull-policy never -q"
D24="seq 24 | xargs -P4 -I{} docker run --rm $REG_IMAGE sh -c 'echo hello; ls'"
"$WHARF" run --help | grep -q -- ' -q' || S24="seq 24 | xargs -P4 -I{} sh -c '$WHARF run -C $WORK/p{} --executor sandbox --pull-policy never >/dev/null'"
hyperfine --warmup 1 --runs "$((RUNS / 4 + 2))" --export-json "$RESULTS/sandbox-24x4.json" \
  -n "wharf (sandbox) 24 at -P4" "$S24" -n "docker run 24 at -P4" "$D24" | tee -a "$OUT"

# Rootless: the same one-job pipeline as an unprivileged user, beside rootless podman (runc, host
# network as the sandbox uses; Debian's crun cannot start containers on this machine's hybrid
# cgroups). BENCH_USER (default wharfbench) is created with a subordinate id range if missing
# (podman needs one; wharf does not); needs podman and uidmap.
BENCH_USER="${BENCH_USER:-wharfbench}"
id "$BENCH_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$BENCH_USER"
grep -q "^$BENCH_USER:" /etc/subuid || echo "$BENCH_USER:300000:65536" >>/etc/subuid
grep -q "^$BENCH_USER:" /etc/subgid || echo "$BENCH_USER:300000:65536" >>/etc/subgid
UHOME="$(getent passwd "$BENCH_USER" | cut -d: -f6)"
RP="$WORK/rootless"
cp -r "$P" "$RP"
chown -R "$BENCH_USER:" "$RP"
cp "$WHARF" "$WORK/wharf" && chmod 755 "$WORK/wharf"
AS=(setpriv --reuid="$BENCH_USER" --regid="$(id -g "$BENCH_USER")" --init-groups env HOME="$UHOME" WHARF_HOME="$UHOME/.wharf-bench" DOCKER_HOST=unix:///nonexistent)
"${AS[@]}" "$WORK/wharf" run -C "$RP" --executor sandbox --pull-policy always >/dev/null
docker save "$IMAGE" -o "$WORK/image.tar" && chmod 644 "$WORK/image.tar"
chmod 755 "$WORK"
su - "$BENCH_USER" -c "podman load -q -i $WORK/image.tar" >/dev/null
PODMAN="su - $BENCH_USER -c \"podman --runtime runc run --rm --network host $IMAGE sh -c 'echo hello; ls'\""
hyperfine --warmup 2 --runs "$RUNS" --export-json "$RESULTS/sandbox-rootless.json" \
  -n "wharf (sandbox, rootless)" "${AS[*]} $WORK/wharf run -C $RP --executor sandbox --pull-policy never" \
  -n "podman run --rm (rootless, runc)" "$PODMAN" | tee -a "$OUT"
