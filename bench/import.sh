#!/usr/bin/env bash
# `wharf registry import` of an OCI layout with one large layer: wall time and peak resident
# memory per import (GNU time), RUNS times. See "Thirteenth session" in bench/README.md.
#
#   bash bench/import.sh                       # a 1024 MiB layer, 3 runs, the checkout's build
#   MIB=256 RUNS=5 bash bench/import.sh
#   WHARF=/tmp/wharf-old bash bench/import.sh  # another build (no cargo build)
#
# The layout (random bytes, not a real tar: import does not read a layer's content) and the
# registry root live in a temporary folder, removed on exit.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
MIB="${MIB:-1024}"
RUNS="${RUNS:-3}"
if [[ -z "${WHARF:-}" ]]; then
  (cd "$ROOT" && cargo build --release -p wharf)
  WHARF="$ROOT/target/release/wharf"
fi
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

python3 - "$WORK/layout" "$MIB" <<'EOF'
import hashlib, json, os, sys
layout, mib = sys.argv[1], int(sys.argv[2])
blobs = os.path.join(layout, "blobs", "sha256")
os.makedirs(blobs)
def put(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return digest
h, tmp, block = hashlib.sha256(), os.path.join(blobs, "tmp"), os.urandom(1 << 20)
with open(tmp, "wb") as f:
    for i in range(mib):
        piece = bytes([i % 256]) + block[1:]
        f.write(piece)
        h.update(piece)
layer = h.hexdigest()
os.rename(tmp, os.path.join(blobs, layer))
config = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": ["sha256:" + layer]}}).encode()
manifest = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": "sha256:" + put(config), "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": "sha256:" + layer, "size": mib << 20}]}).encode()
m = put(manifest)
with open(os.path.join(layout, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:" + m, "size": len(manifest)}]}, f)
with open(os.path.join(layout, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
EOF

echo "wharf: $WHARF ($("$WHARF" --version)); layer: $MIB MiB; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/registry"
  /usr/bin/time -f "run $run: %e s, max RSS %M KiB" -o "$WORK/time" \
    "$WHARF" registry import --root "$WORK/registry" "$WORK/layout" bench/import:1 >/dev/null
  cat "$WORK/time"
done
