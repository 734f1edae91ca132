#!/usr/bin/env bash
# Upload to S3 through wharf vs Debian's docker-registry (distribution 2.8.2, S3 driver), side by
# side on the same Ceph RADOS gateway. See "Registry on S3" in bench/README.md.
#
#   bash bench/s3.sh               # a raw 256 MiB POST+PUT, RUNS times each
#   RUNS=3 MIB=64 bash bench/s3.sh # quick check
#
# A single-node Ceph cluster (memstore) and its gateway are started on 127.0.0.1 with the test
# fixture's script (crates/wharf-testkit/src/rgw-setup.sh); both registries use their own
# bucket. docker-registry runs with `env -u AWS_CA_BUNDLE` (its S3 driver panics on this
# machine's bundle variable). Everything started here is killed on exit, by pid.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
RUNS="${RUNS:-5}"
MIB="${MIB:-256}"
WHARF="${WHARF:-$ROOT/target/release/wharf}"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

for bin in ceph-mon ceph-osd radosgw docker-registry curl python3; do
  command -v "$bin" >/dev/null || {
    echo "missing $bin: apt-get install ceph-mon ceph-osd radosgw ceph-common docker-registry curl python3" >&2
    exit 1
  }
done
[[ -x "$WHARF" ]] || (cd "$ROOT" && cargo build --release -p wharf)

WORK="$(mktemp -d /tmp/wharf-s3-bench.XXXXXX)"
PIDS=()
cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Ceph RGW"
SETUP="$ROOT/crates/wharf-testkit/src/rgw-setup.sh"
MON_PORT="$(free_port)"
RGW_PORT="$(free_port)"
CONF="$WORK/ceph.conf"
bash "$SETUP" "$WORK" "$MON_PORT" "$RGW_PORT" conf
ceph-mon -c "$CONF" -i a -f >"$WORK/mon.out" 2>&1 &
PIDS+=($!)
OSD_ID="$(bash "$SETUP" "$WORK" "$MON_PORT" "$RGW_PORT" osd)"
ceph-osd -c "$CONF" -i "$OSD_ID" -f >"$WORK/osd.out" 2>&1 &
PIDS+=($!)
bash "$SETUP" "$WORK" "$MON_PORT" "$RGW_PORT" rgw
radosgw -c "$CONF" -n client.rgw.a -f >"$WORK/rgw.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do
  curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" && break
  sleep 0.2
done
read -r KEY SECRET < <(bash "$SETUP" "$WORK" "$MON_PORT" "$RGW_PORT" user)
EMPTY_SHA=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
make_bucket() {
  curl -sf -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$KEY:$SECRET" \
    -H "x-amz-content-sha256: $EMPTY_SHA" "http://127.0.0.1:$RGW_PORT/$1" >/dev/null
}
make_bucket wharf-bench
make_bucket dr-bench

say "registries"
WHARF_PORT="$(free_port)"
AWS_ACCESS_KEY_ID="$KEY" AWS_SECRET_ACCESS_KEY="$SECRET" "$WHARF" registry serve \
  --addr "127.0.0.1:$WHARF_PORT" --root "$WORK/wharf-root" --auth none \
  --storage s3://wharf-bench/registry --s3-endpoint "http://127.0.0.1:$RGW_PORT" \
  >"$WORK/wharf.log" 2>&1 &
PIDS+=($!)
DR_PORT="$(free_port)"
cat >"$WORK/dr.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  s3:
    accesskey: $KEY
    secretkey: $SECRET
    region: us-east-1
    regionendpoint: http://127.0.0.1:$RGW_PORT
    bucket: dr-bench
    secure: false
    v4auth: true
    rootdirectory: /registry
  delete: {enabled: true}
http: {addr: 127.0.0.1:$DR_PORT}
YML
env -u AWS_CA_BUNDLE docker-registry serve "$WORK/dr.yml" >"$WORK/dr.log" 2>&1 &
PIDS+=($!)
for port in "$WHARF_PORT" "$DR_PORT"; do
  for _ in $(seq 1 100); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)" == 200 ]] && break
    sleep 0.1
  done
done

say "payload: $MIB MiB"
# Fresh random content per run, so neither registry can skip an upload it already has.
upload() { # BASE_URL FILE -> seconds for POST + PUT
  local base=$1 file=$2 digest location start end
  digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
  start=$(date +%s.%N)
  location="$(curl -sfS -X POST -D - -o /dev/null "$base/v2/bench/raw/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')"
  [[ "$location" == http* ]] || location="$base$location"
  local sep='?'
  [[ "$location" == *\?* ]] && sep='&'
  code="$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
    -T "$file" "$location${sep}digest=$digest")"
  end=$(date +%s.%N)
  [[ "$code" == 201 ]] || { echo "upload to $base answered $code" >&2; exit 1; }
  python3 -c "print(f'{$end-$start:.3f}')"
}

declare -a W D
for i in $(seq 1 "$RUNS"); do
  head -c "$((MIB * 1024 * 1024))" /dev/urandom >"$WORK/blob"
  W+=("$(upload "http://127.0.0.1:$WHARF_PORT" "$WORK/blob")")
  head -c "$((MIB * 1024 * 1024))" /dev/urandom >"$WORK/blob"
  D+=("$(upload "http://127.0.0.1:$DR_PORT" "$WORK/blob")")
  echo "run $i: wharf ${W[-1]} s, docker-registry ${D[-1]} s"
done
python3 - "${W[*]}" "${D[*]}" "$MIB" <<'PY'
import statistics, sys
w = [float(x) for x in sys.argv[1].split()]
d = [float(x) for x in sys.argv[2].split()]
mw, md = statistics.median(w), statistics.median(d)
print(f"raw {sys.argv[3]} MiB POST+PUT to RGW, median of {len(w)}: wharf {mw:.2f} s, docker-registry {md:.2f} s, ratio {md/mw:.2f}x")
PY
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
