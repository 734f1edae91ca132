#!/usr/bin/env bash
# Upload to S3 through wharf vs Debian's docker-registry (distribution 2.8.2, S3 driver), side by
# side on the same Ceph RADOS gateway. See "Registry on S3" in bench/README.md.
#
#   bash bench/s3.sh               # all three parts below, RUNS times each
#   RUNS=3 MIB=64 bash bench/s3.sh # quick check
#   PARTS="skopeo download" bash bench/s3.sh
#
# Parts: `raw`, a raw MIB MiB (256) POST+PUT with curl; `hop`, a chunked MIB MiB upload whose
# PATCH goes to a second wharf replica (timed against the same upload on one replica); `skopeo`, a `skopeo copy` push of an
# image with one SKOPEO_MIB MiB (50) layer; `download`, a DOWNLOAD_MIB MiB (1024) blob fetched
# with curl through wharf's 307 to a presigned URL and through a second wharf replica started
# with --s3-stream-blobs, comparing the registry process's CPU time (utime + stime of
# /proc/PID/stat, before and after); `chunks`, one blob sent as CHUNKS (1000) PATCHes of one
# byte each by bench/small_chunks.py (not in the default parts: about 8 minutes). Each part uploads fresh random bytes per run, so no registry
# can skip a blob it has. The gateway keeps everything in memory (4 GiB): all three parts fit
# with RUNS=3; with RUNS=5 run `raw` on its own (PARTS=raw, then PARTS="skopeo download").
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
SKOPEO_MIB="${SKOPEO_MIB:-50}"
DOWNLOAD_MIB="${DOWNLOAD_MIB:-1024}"
PARTS="${PARTS:-raw skopeo download}"
want() { [[ " $PARTS " == *" $1 "* ]]; }
WHARF="${WHARF:-$ROOT/target/release/wharf}"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

for bin in ceph-mon ceph-osd radosgw docker-registry curl python3 skopeo; do
  command -v "$bin" >/dev/null || {
    echo "missing $bin: apt-get install ceph-mon ceph-osd radosgw ceph-common docker-registry curl python3 skopeo" >&2
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
WHARF_PID=$!
PIDS+=("$WHARF_PID")
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
STREAM_PORT="$(free_port)"
AWS_ACCESS_KEY_ID="$KEY" AWS_SECRET_ACCESS_KEY="$SECRET" "$WHARF" registry serve \
  --addr "127.0.0.1:$STREAM_PORT" --root "$WORK/wharf-stream-root" --auth none \
  --storage s3://wharf-bench/registry --s3-endpoint "http://127.0.0.1:$RGW_PORT" --s3-stream-blobs \
  >"$WORK/wharf-stream.log" 2>&1 &
STREAM_PID=$!
PIDS+=("$STREAM_PID")
for port in "$WHARF_PORT" "$DR_PORT" "$STREAM_PORT"; do
  for _ in $(seq 1 100); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)" == 200 ]] && break
    sleep 0.1
  done
done

median_ratio() { # LABEL "W..." "D..." -> medians and the ratio D/W
  python3 - "$@" <<'PY'
import statistics, sys
label, w, d = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
mw, md = statistics.median(w), statistics.median(d)
print(f"{label}, median of {len(w)}: wharf {mw:.2f} s, docker-registry {md:.2f} s, ratio {md/mw:.2f}x")
PY
}
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

# Untimed: the first large write on a fresh gateway takes ~3 s longer, whichever registry makes
# it (measured by swapping the order: docker-registry's first push then took 6.2 s, wharf's
# 1.8 s). One 16 MiB upload through each registry first, so no timed run pays for the gateway.
head -c "$((16 * 1024 * 1024))" /dev/urandom >"$WORK/blob"
upload "http://127.0.0.1:$WHARF_PORT" "$WORK/blob" >/dev/null
head -c "$((16 * 1024 * 1024))" /dev/urandom >"$WORK/blob"
upload "http://127.0.0.1:$DR_PORT" "$WORK/blob" >/dev/null

if want raw; then
say "raw upload: $MIB MiB"
declare -a W D
for i in $(seq 1 "$RUNS"); do
  head -c "$((MIB * 1024 * 1024))" /dev/urandom >"$WORK/blob"
  W+=("$(upload "http://127.0.0.1:$WHARF_PORT" "$WORK/blob")")
  head -c "$((MIB * 1024 * 1024))" /dev/urandom >"$WORK/blob"
  D+=("$(upload "http://127.0.0.1:$DR_PORT" "$WORK/blob")")
  echo "run $i: wharf ${W[-1]} s, docker-registry ${D[-1]} s"
done
median_ratio "raw $MIB MiB POST+PUT to RGW" "${W[*]}" "${D[*]}"
fi

make_layout() { # DIR MIB: an OCI layout, tag "bench", one uncompressed layer of MIB random MiB
  python3 - "$1" "$2" <<'PY'
import hashlib, io, json, os, sys, tarfile
d, mib = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{d}/blobs/sha256", exist_ok=True)
def put(data, media):
    h = hashlib.sha256(data).hexdigest()
    with open(f"{d}/blobs/sha256/{h}", "wb") as f:
        f.write(data)
    return {"mediaType": media, "digest": "sha256:" + h, "size": len(data)}
tar = io.BytesIO()
with tarfile.open(fileobj=tar, mode="w") as t:
    payload = os.urandom(mib * 1024 * 1024)
    info = tarfile.TarInfo("payload.bin")
    info.size = len(payload)
    t.addfile(info, io.BytesIO(payload))
layer = put(tar.getvalue(), "application/vnd.oci.image.layer.v1.tar")
config = put(json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode(),
             "application/vnd.oci.image.config.v1+json")
manifest = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": config, "layers": [layer]}).encode(),
               "application/vnd.oci.image.manifest.v1+json")
manifest["annotations"] = {"org.opencontainers.image.ref.name": "bench"}
with open(f"{d}/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [manifest]}, f)
with open(f"{d}/oci-layout", "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
PY
}
push() { # PORT RUN -> seconds for `skopeo copy` of $WORK/layout
  local start end
  start=$(date +%s.%N)
  skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
    "oci:$WORK/layout:bench" "docker://127.0.0.1:$1/bench/skopeo:$2" >&2
  end=$(date +%s.%N)
  python3 -c "print(f'{$end-$start:.3f}')"
}

if want skopeo; then
  say "skopeo push: one $SKOPEO_MIB MiB layer"
  declare -a SW SD
  for i in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/layout" && make_layout "$WORK/layout" "$SKOPEO_MIB"
    SW+=("$(push "$WHARF_PORT" "$i")")
    rm -rf "$WORK/layout" && make_layout "$WORK/layout" "$SKOPEO_MIB"
    SD+=("$(push "$DR_PORT" "$i")")
    echo "run $i: wharf ${SW[-1]} s, docker-registry ${SD[-1]} s"
  done
  rm -rf "$WORK/layout"
  median_ratio "skopeo copy of a $SKOPEO_MIB MiB layer to RGW" "${SW[*]}" "${SD[*]}"
fi

cpu_ticks() { # PID -> utime + stime, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
fetch() { # PORT PID DIGEST -> "seconds ticks"
  local before after start end
  before=$(cpu_ticks "$2")
  start=$(date +%s.%N)
  curl -sfSL -o /dev/null "http://127.0.0.1:$1/v2/bench/raw/blobs/$3"
  end=$(date +%s.%N)
  after=$(cpu_ticks "$2")
  python3 -c "print(f'{$end-$start:.3f} {$after-$before}')"
}

if want download; then
  say "download: a $DOWNLOAD_MIB MiB blob, 307 to S3 vs streamed through the registry"
  head -c "$((DOWNLOAD_MIB * 1024 * 1024))" /dev/urandom >"$WORK/blob"
  BLOB_DIGEST="sha256:$(sha256sum "$WORK/blob" | cut -d' ' -f1)"
  upload "http://127.0.0.1:$WHARF_PORT" "$WORK/blob" >/dev/null
  rm -f "$WORK/blob"
  TICK="$(getconf CLK_TCK)"
  declare -a RT RC ST SC
  for i in $(seq 1 "$RUNS"); do
    read -r t c < <(fetch "$WHARF_PORT" "$WHARF_PID" "$BLOB_DIGEST")
    RT+=("$t") RC+=("$c")
    read -r t c < <(fetch "$STREAM_PORT" "$STREAM_PID" "$BLOB_DIGEST")
    ST+=("$t") SC+=("$c")
    echo "run $i: redirect ${RT[-1]} s / ${RC[-1]} ticks, streamed ${ST[-1]} s / ${SC[-1]} ticks (1 tick = 1/$TICK s of CPU)"
  done
  python3 - "${RT[*]}" "${RC[*]}" "${ST[*]}" "${SC[*]}" "$TICK" "$DOWNLOAD_MIB" <<'PY'
import statistics, sys
rt, rc, st, sc = ([float(x) for x in a.split()] for a in sys.argv[1:5])
tick, mib = float(sys.argv[5]), sys.argv[6]
cpu_r, cpu_s = sum(rc) / tick, sum(sc) / tick
print(f"{mib} MiB blob download, {len(rt)} runs: redirect median {statistics.median(rt):.2f} s, "
      f"registry CPU {cpu_r:.2f} s in all; streamed median {statistics.median(st):.2f} s, "
      f"registry CPU {cpu_s:.2f} s in all; redirect CPU = {100 * cpu_r / cpu_s if cpu_s else 0:.1f}% of streamed")
PY
fi
url_path() { # URL -> its path and query, to send the same request to another replica
  python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(p.path + ("?" + p.query if p.query else ""))' "$1"
}
location_of() { awk 'tolower($1)=="location:"{print $2}' | tr -d '\r'; }
chunked() { # POST_PORT PATCH_PORT PUT_PORT FILE -> seconds for POST, one PATCH with FILE, PUT
  local file=$4 digest location start end code sep
  digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
  start=$(date +%s.%N)
  location="$(curl -sfS -X POST -D - -o /dev/null "http://127.0.0.1:$1/v2/bench/hop/blobs/uploads/" | location_of)"
  location="$(curl -sfS -X PATCH -D - -o /dev/null -H 'Content-Type: application/octet-stream' \
    -T "$file" "http://127.0.0.1:$2$(url_path "$location")" | location_of)"
  location="$(url_path "$location")"
  sep='?'
  [[ "$location" == *\?* ]] && sep='&'
  code="$(curl -sS -o /dev/null -w '%{http_code}' -X PUT "http://127.0.0.1:$3$location${sep}digest=$digest")"
  end=$(date +%s.%N)
  [[ "$code" == 201 ]] || { echo "chunked upload answered $code" >&2; exit 1; }
  python3 -c "print(f'{$end-$start:.3f}')"
}

if want hop; then
  # The two wharf servers above share the bucket: replicas. The closing PUT lands on a replica
  # that did not receive the bytes; it continues from the hash state the other one saved with the
  # session (before: it read the whole upload back from S3 to verify the digest).
  say "chunked upload: POST, PATCH, PUT on one replica vs the PATCH on another ($MIB MiB)"
  declare -a ONE HOP
  for i in $(seq 1 "$RUNS"); do
    head -c "$((MIB * 1024 * 1024))" /dev/urandom >"$WORK/blob"
    ONE+=("$(chunked "$WHARF_PORT" "$WHARF_PORT" "$WHARF_PORT" "$WORK/blob")")
    head -c "$((MIB * 1024 * 1024))" /dev/urandom >"$WORK/blob"
    HOP+=("$(chunked "$WHARF_PORT" "$STREAM_PORT" "$WHARF_PORT" "$WORK/blob")")
    echo "run $i: one replica ${ONE[-1]} s, PATCH on another ${HOP[-1]} s"
  done
  python3 - "${ONE[*]}" "${HOP[*]}" "$MIB" <<'PY'
import statistics, sys
one, hop = ([float(x) for x in a.split()] for a in sys.argv[1:3])
mo, mh = statistics.median(one), statistics.median(hop)
print(f"chunked {sys.argv[3]} MiB upload, median of {len(one)}: one replica {mo:.2f} s, "
      f"PATCH on another replica {mh:.2f} s ({mh / mo:.2f}x)")
PY
fi
if want chunks; then
  # Not a size test: what each append costs as an upload's chunks grow in number, and the
  # closing PUT that reads them all back. Each line is a mean over 250 PATCHes.
  CHUNKS="${CHUNKS:-1000}"
  say "upload of $CHUNKS one-byte chunks"
  echo "wharf:"
  python3 "$BENCH/small_chunks.py" "$WHARF_PORT" "$CHUNKS"
  echo "docker-registry:"
  python3 "$BENCH/small_chunks.py" "$DR_PORT" "$CHUNKS"
fi
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
