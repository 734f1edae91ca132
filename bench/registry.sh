#!/usr/bin/env bash
# wharf registry vs Debian's docker-registry (CNCF distribution 2.8.2), side by side in one run.
# See the "Registry" section of bench/README.md.
#
#   bash bench/registry.sh               # everything
#   RUNS=3 bash bench/registry.sh        # fewer hyperfine runs (quick check)
#   BIG_MIB=512 bash bench/registry.sh   # smaller "2 GB" memory push (quick check)
#   SERVICE_SESSIONS=1 bash bench/registry.sh  # each server in its own session, like a service
#   WHARF=/tmp/wharf-b bash bench/registry.sh  # another build (no cargo build)
#
# Both servers listen on 127.0.0.1 (free ports picked at run time) with temporary roots and the
# same htpasswd file; four servers run: wharf and docker-registry, each with htpasswd auth and
# without auth. All of them are killed on exit (also on error or Ctrl-C), by their own pids.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
RESULTS="$BENCH/results"
RUNS="${RUNS:-10}"
AB_N="${AB_N:-5000}"
AB_C="${AB_C:-8}"
AB_REPEAT="${AB_REPEAT:-3}"
BIG_MIB="${BIG_MIB:-2048}"
# bcrypt cost of the shared htpasswd file. 5 matches the issue's docker-registry baseline
# (~580 req/s with Basic on 2 cores is only reachable at a low cost, since docker-registry
# re-verifies bcrypt on every request).
HTPASSWD_COST="${HTPASSWD_COST:-5}"
USER_NAME=bench
USER_PASS=bench-pass-$RANDOM$RANDOM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# ------------------------------------------------------------------ tools (idempotent)
say "tools"
need_apt=()
command -v hyperfine >/dev/null || need_apt+=(hyperfine)
command -v ab >/dev/null || need_apt+=(apache2-utils)
command -v htpasswd >/dev/null || need_apt+=(apache2-utils)
command -v curl >/dev/null || need_apt+=(curl)
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v python3 >/dev/null || need_apt+=(python3)
[[ -x /usr/bin/busybox ]] || need_apt+=(busybox-static)
if ((${#need_apt[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(printf '%s\n' "${need_apt[@]}" | sort -u)
fi

# WHARF=/path/to/wharf: that binary (to compare two builds in alternating runs); else the
# checkout's release build.
if [[ -n "${WHARF:-}" ]]; then
  say "wharf: $WHARF"
else
  say "building wharf (release)"
  (cd "$ROOT" && cargo build --release -p wharf)
  WHARF="$ROOT/target/release/wharf"
fi
WHARF_VERSION="$("$WHARF" --version) at $(git -C "$ROOT" rev-parse --short HEAD)"
DR_VERSION="$(docker-registry --version 2>/dev/null | head -1)"
echo "$WHARF_VERSION; $DR_VERSION"

# ------------------------------------------------------------------ workspace and cleanup
WORK="$(mktemp -d /tmp/wharf-registry-bench.XXXXXX)"
PIDS=()
cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null
  done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# SERVICE_SESSIONS=1: every server in a session of its own (setsid), as a service manager starts
# a daemon. With the kernel's autogroup scheduling (sched_autogroup_enabled=1), the CPU is then
# shared between sessions first: a load started beside the bench (`yes > /dev/null`) competes
# with each server as a whole, not thread by thread. Default 0: everything in the bench's session.
AS_SERVICE=()
[[ "${SERVICE_SESSIONS:-0}" == 1 ]] && AS_SERVICE=(setsid)

LOAD_BEFORE="$(uptime)"

htpasswd -Bbn -C "$HTPASSWD_COST" "$USER_NAME" "$USER_PASS" >"$WORK/htpasswd"
CREDS="$USER_NAME:$USER_PASS"

# remember_server NAME PORT PID BLOBS_DIR: what wait_ready, the figures and the cleanup trap
# read back as PORT_<NAME>, PID_<NAME>, BLOBS_<NAME> (and PIDS).
remember_server() {
  local name=$1
  PIDS+=("$3")
  printf -v "PORT_$name" '%s' "$2"
  printf -v "PID_$name" '%s' "$3"
  printf -v "BLOBS_$name" '%s' "$4"
}

# start_wharf NAME AUTH(basic|none) -> sets PORT_<NAME>, PID_<NAME>, BLOBS_<NAME>
start_wharf() {
  local name=$1 auth=$2 port
  port="$(free_port)"
  mkdir -p "$WORK/$name"
  local args=(registry serve --addr "127.0.0.1:$port" --root "$WORK/$name/root" --auth "$auth")
  [[ "$auth" == basic ]] && args+=(--htpasswd "$WORK/htpasswd")
  ${AS_SERVICE[@]} "$WHARF" "${args[@]}" >"$WORK/$name.log" 2>&1 &
  remember_server "$name" "$port" $! "$WORK/$name/root/blobs/sha256"
}

# start_dr NAME AUTH(basic|none)
start_dr() {
  local name=$1 auth=$2 port
  port="$(free_port)"
  mkdir -p "$WORK/$name/root"
  {
    echo "version: 0.1"
    echo "log: {level: info}"
    echo "storage: {filesystem: {rootdirectory: $WORK/$name/root}, delete: {enabled: true}}"
    echo "http: {addr: 127.0.0.1:$port}"
    [[ "$auth" == basic ]] && echo "auth: {htpasswd: {realm: r, path: $WORK/htpasswd}}"
  } >"$WORK/$name.yml"
  ${AS_SERVICE[@]} docker-registry serve "$WORK/$name.yml" >"$WORK/$name.log" 2>&1 &
  remember_server "$name" "$port" $! "$WORK/$name/root/docker/registry/v2/blobs/sha256"
}

wait_ready() {
  local name=$1 port_var="PORT_$1" pid_var="PID_$1"
  for _ in $(seq 1 100); do
    if ! kill -0 "${!pid_var}" 2>/dev/null; then
      echo "$name exited:" >&2
      cat "$WORK/$name.log" >&2
      exit 1
    fi
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${!port_var}/v2/" || true)"
    [[ "$code" == 200 || "$code" == 401 ]] && return 0
    sleep 0.1
  done
  echo "$name never answered /v2/" >&2
  exit 1
}

say "servers"
start_wharf wharf_auth basic
start_wharf wharf_noauth none
start_dr dr_auth basic
start_dr dr_noauth none
for s in wharf_auth wharf_noauth dr_auth dr_noauth; do wait_ready "$s"; done
AUTH_SERVERS=(wharf_auth dr_auth)
label() { case $1 in wharf*) echo wharf ;; dr*) echo docker-registry ;; esac; }
url() { local v="PORT_$1"; echo "http://127.0.0.1:${!v}"; }
for s in wharf_auth wharf_noauth dr_auth dr_noauth; do
  v="PORT_$s"; p="PID_$s"; echo "$s: 127.0.0.1:${!v} (pid ${!p})"
done

# ------------------------------------------------------------------ helpers
# upload_blob BASE_URL REPO FILE DIGEST [CURL_ARGS...]: POST then PUT ?digest= with the whole
# body (monolithic, streamed by curl -T); fails unless the registry answers 201.
cat >"$WORK/upload.sh" <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
base=$1 repo=$2 file=$3 digest=$4; shift 4
loc="$(curl -sf "$@" -X POST -D - -o /dev/null "$base/v2/$repo/blobs/uploads/" \
  | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')"
[[ "$loc" == /* ]] && loc="$base$loc"
sep='?'; [[ "$loc" == *'?'* ]] && sep='&'
code="$(curl -s "$@" -o /dev/null -w '%{http_code}' -T "$file" \
  -H 'Content-Type: application/octet-stream' "$loc${sep}digest=$digest")"
[[ "$code" == 201 ]] || { echo "upload to $base: HTTP $code" >&2; exit 1; }
EOF
chmod +x "$WORK/upload.sh"

# make_layout DIR LAYER_TAR: a one-layer OCI image layout (tag latest), written by hand.
cat >"$WORK/make_layout.py" <<'EOF'
import hashlib, json, os, shutil, sys
out, layer = sys.argv[1], sys.argv[2]
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs, exist_ok=True)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, d), "wb").write(data)
    return "sha256:" + d, len(data)
h = hashlib.sha256()
with open(layer, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
ld = h.hexdigest()
shutil.copyfile(layer, os.path.join(blobs, ld))
lsize = os.path.getsize(layer)
config = json.dumps({
    "architecture": "amd64", "os": "linux",
    "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + ld]},
}).encode()
cd, cs = put(config)
manifest = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": "sha256:" + ld, "size": lsize}],
}).encode()
md, ms = put(manifest)
json.dump({"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
    "annotations": {"org.opencontainers.image.ref.name": "latest"}}]},
    open(os.path.join(out, "index.json"), "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(out, "oci-layout"), "w"))
print(ld, cd)
EOF
make_layout() { python3 "$WORK/make_layout.py" "$1" "$2"; }
# fresh_layout DIR: a one-layer layout with a new 50 MB incompressible layer (new digests).
cat >"$WORK/fresh_layout.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
rm -rf "\$1" "\$1.rootfs" && mkdir -p "\$1.rootfs"
head -c 50000000 /dev/urandom >"\$1.rootfs/random.bin"
tar -C "\$1.rootfs" -cf "\$1.tar" random.bin
python3 "$WORK/make_layout.py" "\$1" "\$1.tar" >/dev/null
rm -rf "\$1.rootfs" "\$1.tar"
EOF
chmod +x "$WORK/fresh_layout.sh"

mean_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]["mean"])' "$@"; }
ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1])/float(sys.argv[2]):.2f}")' "$@"; }
fmt() { python3 -c 'import sys; print(f"{float(sys.argv[1]):.{int(sys.argv[2])}f}")' "$@"; }

mkdir -p "$RESULTS"
SUMMARY=()
note() { SUMMARY+=("$*"); echo "$*"; }

# ------------------------------------------------------------------ 1. monolithic upload 256 MiB
say "1. monolithic blob upload, 256 MiB, htpasswd auth"
head -c $((256 << 20)) /dev/urandom >"$WORK/blob256"
D256="sha256:$(sha256sum "$WORK/blob256" | cut -d' ' -f1)"
H256="${D256#sha256:}"
# Every run really uploads: the blob is removed from the server's storage before each run (both
# registries would otherwise still read the body but skip the final move).
prep_blob() { local v="BLOBS_$1"; echo "rm -rf ${!v}/${H256:0:2}/$H256"; }
hyperfine --style basic --warmup 1 --runs "$RUNS" \
  --export-json "$RESULTS/registry-upload.json" --export-markdown "$RESULTS/registry-upload.md" \
  --prepare "$(prep_blob wharf_auth)" -n wharf \
  "$WORK/upload.sh $(url wharf_auth) bench/upload $WORK/blob256 $D256 -u $CREDS" \
  --prepare "$(prep_blob dr_auth)" -n docker-registry \
  "$WORK/upload.sh $(url dr_auth) bench/upload $WORK/blob256 $D256 -u $CREDS"
UP_W="$(mean_of "$RESULTS/registry-upload.json" 0)"
UP_D="$(mean_of "$RESULTS/registry-upload.json" 1)"
UP_W_MBS="$(python3 -c "print(f'{268435456/1e6/$UP_W:.0f}')")"
UP_D_MBS="$(python3 -c "print(f'{268435456/1e6/$UP_D:.0f}')")"
UP_RATIO="$(ratio "$UP_D" "$UP_W")"
note "1. upload 256 MiB (auth): wharf $(fmt "$UP_W" 3) s = $UP_W_MBS MB/s; docker-registry $(fmt "$UP_D" 3) s = $UP_D_MBS MB/s; ratio ${UP_RATIO}x (target >= 3x) $(python3 -c "print('MET' if $UP_RATIO >= 3 else 'MISSED')")"

# ------------------------------------------------------------------ 2. blob GET 256 MiB
say "2. blob GET, 256 MiB, htpasswd auth"
for s in "${AUTH_SERVERS[@]}"; do "$WORK/upload.sh" "$(url "$s")" bench/upload "$WORK/blob256" "$D256" -u "$CREDS"; done
for s in "${AUTH_SERVERS[@]}"; do
  got="$(curl -sfL -u "$CREDS" "$(url "$s")/v2/bench/upload/blobs/$D256" | sha256sum | cut -d' ' -f1)"
  [[ "$got" == "$H256" ]] || { echo "$s served the wrong bytes" >&2; exit 1; }
done
hyperfine --style basic --warmup 2 --runs "$RUNS" \
  --export-json "$RESULTS/registry-get.json" --export-markdown "$RESULTS/registry-get.md" \
  -n wharf "curl -sfL -u $CREDS -o /dev/null $(url wharf_auth)/v2/bench/upload/blobs/$D256" \
  -n docker-registry "curl -sfL -u $CREDS -o /dev/null $(url dr_auth)/v2/bench/upload/blobs/$D256"
GET_W="$(mean_of "$RESULTS/registry-get.json" 0)"
GET_D="$(mean_of "$RESULTS/registry-get.json" 1)"
GET_RATIO="$(ratio "$GET_D" "$GET_W")"
note "2. GET 256 MiB (auth): wharf $(fmt "$GET_W" 3) s = $(python3 -c "print(f'{268435456/1e6/$GET_W:.0f}')") MB/s; docker-registry $(fmt "$GET_D" 3) s = $(python3 -c "print(f'{268435456/1e6/$GET_D:.0f}')") MB/s; ratio ${GET_RATIO}x (target >= 1x) $(python3 -c "print('MET' if $GET_RATIO >= 1 else 'MISSED')")"

# ------------------------------------------------------------------ images for 3 and 4
say "images (OCI layouts written by hand)"
mkdir -p "$WORK/small-rootfs/bin"
cp /usr/bin/busybox "$WORK/small-rootfs/bin/busybox"
tar -C "$WORK/small-rootfs" -cf "$WORK/small.tar" bin
make_layout "$WORK/small" "$WORK/small.tar" >/dev/null
mkdir -p "$WORK/big-rootfs"
head -c $((50 * 1000 * 1000)) /dev/urandom >"$WORK/big-rootfs/random.bin"
tar -C "$WORK/big-rootfs" -cf "$WORK/big.tar" random.bin
read -r BIG_LAYER BIG_CONFIG < <(make_layout "$WORK/big" "$WORK/big.tar")
rm -rf "$WORK/small-rootfs" "$WORK/big-rootfs" "$WORK/small.tar" "$WORK/big.tar"

skopeo_push() { # SERVER LAYOUT REPO
  local creds=()
  [[ $1 == *_auth ]] && creds=(--dest-creds "$CREDS")
  skopeo copy -q --dest-tls-verify=false "${creds[@]}" "oci:$2:latest" \
    "docker://127.0.0.1:$(v="PORT_$1"; echo "${!v}")/$3:latest"
}
for s in wharf_auth wharf_noauth dr_auth dr_noauth; do skopeo_push "$s" "$WORK/small" bench/small; done

# ------------------------------------------------------------------ 3. manifest GET req/s
say "3. manifest GET, ab -n $AB_N -c $AB_C (median of $AB_REPEAT)"
ACCEPT='Accept: application/vnd.oci.image.manifest.v1+json'
ab_rps() { # SERVER -> median requests/s of AB_REPEAT runs; fails on any non-2xx or failed request
  local s=$1 auth=() out all=()
  [[ $s == *_auth ]] && auth=(-A "$CREDS")
  for _ in $(seq 1 "$AB_REPEAT"); do
    out="$(ab -q -n "$AB_N" -c "$AB_C" "${auth[@]}" -H "$ACCEPT" "$(url "$s")/v2/bench/small/manifests/latest" 2>&1)"
    echo "$out" | sed "s/$USER_PASS/***/g" >>"$RESULTS/registry-ab-$s.txt"
    if echo "$out" | grep -q 'Non-2xx'; then echo "$s: non-2xx responses" >&2; exit 1; fi
    [[ "$(echo "$out" | awk '/^Failed requests/ {print $3}')" == 0 ]] || { echo "$s: failed requests" >&2; exit 1; }
    all+=("$(echo "$out" | awk '/^Requests per second/ {print $4}')")
  done
  printf '%s\n' "${all[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
rm -f "$RESULTS"/registry-ab-*.txt
for s in wharf_auth dr_auth wharf_noauth dr_noauth; do
  printf -v "RPS_$s" '%s' "$(ab_rps "$s")"
done
MR_AUTH="$(ratio "$RPS_wharf_auth" "$RPS_dr_auth")"
MR_NOAUTH="$(ratio "$RPS_wharf_noauth" "$RPS_dr_noauth")"
note "3a. manifest GET (htpasswd, bcrypt cost $HTPASSWD_COST): wharf $RPS_wharf_auth req/s; docker-registry $RPS_dr_auth req/s; ratio ${MR_AUTH}x (target >= 10x) $(python3 -c "print('MET' if $MR_AUTH >= 10 else 'MISSED')")"
note "3b. manifest GET (no auth): wharf $RPS_wharf_noauth req/s; docker-registry $RPS_dr_noauth req/s; ratio ${MR_NOAUTH}x (target >= 5x) $(python3 -c "print('MET' if $MR_NOAUTH >= 5 else 'MISSED')")"

# ------------------------------------------------------------------ 4. skopeo push / pull 50 MB
say "4. skopeo push and pull of a 50 MB incompressible layer, htpasswd auth"
big_ref() { local v="PORT_$1"; echo "docker://127.0.0.1:${!v}/bench/big:latest"; }
# Every push run pushes a new image: --prepare writes a layout with a fresh random layer (skopeo
# skips an image whose manifest is present and never uploads a blob the registry has).
hyperfine --style basic --warmup 1 --runs "$RUNS" \
  --export-json "$RESULTS/registry-skopeo-push.json" --export-markdown "$RESULTS/registry-skopeo-push.md" \
  --prepare "$WORK/fresh_layout.sh $WORK/push-wharf" -n wharf \
  "skopeo copy -q --dest-tls-verify=false --dest-creds $CREDS oci:$WORK/push-wharf:latest $(big_ref wharf_auth | sed 's,/big:,/push:,')" \
  --prepare "$WORK/fresh_layout.sh $WORK/push-dr" -n docker-registry \
  "skopeo copy -q --dest-tls-verify=false --dest-creds $CREDS oci:$WORK/push-dr:latest $(big_ref dr_auth | sed 's,/big:,/push:,')" \
  --prepare "rm -rf $WORK/big-copy" -n "skopeo alone (oci to oci)" \
  "skopeo copy -q oci:$WORK/big:latest oci:$WORK/big-copy:latest"
for s in "${AUTH_SERVERS[@]}"; do skopeo_push "$s" "$WORK/big" bench/big; done
hyperfine --style basic --warmup 1 --runs "$RUNS" \
  --export-json "$RESULTS/registry-skopeo-pull.json" --export-markdown "$RESULTS/registry-skopeo-pull.md" \
  --prepare "rm -rf $WORK/pull-wharf" -n wharf \
  "skopeo copy -q --src-tls-verify=false --src-creds $CREDS $(big_ref wharf_auth) oci:$WORK/pull-wharf:latest" \
  --prepare "rm -rf $WORK/pull-dr" -n docker-registry \
  "skopeo copy -q --src-tls-verify=false --src-creds $CREDS $(big_ref dr_auth) oci:$WORK/pull-dr:latest"
PUSH_W="$(mean_of "$RESULTS/registry-skopeo-push.json" 0)"
PUSH_D="$(mean_of "$RESULTS/registry-skopeo-push.json" 1)"
PUSH_S="$(mean_of "$RESULTS/registry-skopeo-push.json" 2)"
PULL_W="$(mean_of "$RESULTS/registry-skopeo-pull.json" 0)"
PULL_D="$(mean_of "$RESULTS/registry-skopeo-pull.json" 1)"
note "4a. skopeo push 50 MB: wharf $(fmt "$PUSH_W" 3) s; docker-registry $(fmt "$PUSH_D" 3) s; wharf/docker-registry time $(ratio "$PUSH_W" "$PUSH_D") (target <= 1, i.e. no slower; skopeo alone oci->oci $(fmt "$PUSH_S" 3) s) $(python3 -c "print('MET' if $PUSH_W <= $PUSH_D else 'MISSED')")"
note "4b. skopeo pull 50 MB: wharf $(fmt "$PULL_W" 3) s; docker-registry $(fmt "$PULL_D" 3) s; wharf/docker-registry time $(ratio "$PULL_W" "$PULL_D") (target <= 1) $(python3 -c "print('MET' if $PULL_W <= $PULL_D else 'MISSED')")"

# ------------------------------------------------------------------ 5. RSS while pushing 2 GB
say "5. resident memory while pushing one $BIG_MIB MiB blob"
rm -f "$WORK/blob256"
head -c $((BIG_MIB << 20)) /dev/urandom >"$WORK/blob-big"
DBIG="sha256:$(sha256sum "$WORK/blob-big" | cut -d' ' -f1)"
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
for s in "${AUTH_SERVERS[@]}"; do
  p="PID_$s"; pid="${!p}"
  before="$(rss_kib "$pid")"
  "$WORK/upload.sh" "$(url "$s")" bench/big2g "$WORK/blob-big" "$DBIG" -u "$CREDS" &
  up=$!
  max=0
  while kill -0 "$up" 2>/dev/null; do
    r="$(rss_kib "$pid")"; ((r > max)) && max=$r
    sleep 0.2
  done
  wait "$up"
  printf -v "RSS_BEFORE_$s" '%s' "$before"
  printf -v "RSS_MAX_$s" '%s' "$max"
  printf -v "RSS_HWM_$s" '%s' "$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")"
  v="BLOBS_$s"; rm -rf "${!v}/${DBIG:7:2}/${DBIG#sha256:}"
done
rm -f "$WORK/blob-big"
mb() { python3 -c "print(f'{$1/1024:.1f}')"; }
note "5. RSS pushing $BIG_MIB MiB: wharf max $(mb "$RSS_MAX_wharf_auth") MiB (idle before $(mb "$RSS_BEFORE_wharf_auth"), VmHWM over the whole bench $(mb "$RSS_HWM_wharf_auth")); docker-registry max $(mb "$RSS_MAX_dr_auth") MiB (before $(mb "$RSS_BEFORE_dr_auth"), VmHWM $(mb "$RSS_HWM_dr_auth")) (target wharf < 100 MB) $(python3 -c "print('MET' if $RSS_MAX_wharf_auth*1024 < 100e6 else 'MISSED')")"

# ------------------------------------------------------------------ summary
# The exported hyperfine commands carry the (throwaway) bench password: mask it.
sed -i "s/$USER_PASS/***/g" "$RESULTS"/registry-*.json "$RESULTS"/registry-*.md
LOAD_AFTER="$(uptime)"
{
  echo "wharf registry vs docker-registry, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) cores, $(uname -sr); $WHARF_VERSION; $DR_VERSION"
  echo "load before: $LOAD_BEFORE"
  echo "load after:  $LOAD_AFTER"
  echo "hyperfine runs: $RUNS; ab -n $AB_N -c $AB_C, median of $AB_REPEAT; htpasswd bcrypt cost $HTPASSWD_COST"
  echo
  printf '%s\n' "${SUMMARY[@]}"
} | tee "$RESULTS/registry-summary.txt"
