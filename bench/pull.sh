#!/usr/bin/env bash
# Issue 10 figures: `wharf pull` (wharf's own store: download, verify, unpack) against
# `docker pull` of the same ~60 MB image from the same loopback registry, cold; and a re-pull
# with everything present against one manifest round trip (curl). One hyperfine run each,
# commands interleaved by hyperfine's own order, medians reported. Results: bench/results/pull-*.
#
# Needs root (dockerd, docker rmi), dockerd running, docker-registry, skopeo-free (the layout is
# pushed with skopeo if present, else with docker), hyperfine, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-10}"
out=bench/results
mkdir -p "$out"

for tool in hyperfine docker-registry skopeo python3 curl; do
  command -v "$tool" >/dev/null || { echo "missing: $tool"; exit 1; }
done
cargo build --release -p wharf >/dev/null
wharf="$PWD/target/release/wharf"

work="$(mktemp -d /tmp/wharf-bench-pull.XXXXXX)"
registry_pid=""
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  docker rmi -f "$image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. The image: five layers of Debian's own files (perl, zoneinfo, python, libexec), gzip -6 as
#    Docker does.
layout="$work/layout"
mkdir -p "$layout/blobs/sha256"
layer_dirs=(/usr/share/perl /usr/lib/x86_64-linux-gnu/perl /usr/share/zoneinfo /usr/lib/python3.11 /usr/libexec)
for i in "${!layer_dirs[@]}"; do
  tar --numeric-owner -C / -cf "$work/layer$i.tar" "${layer_dirs[$i]#/}"
done
python3 - "$work" "$layout" "${#layer_dirs[@]}" <<'PY'
import gzip, hashlib, json, os, sys, zlib
work, layout, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def put(data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(layout, "blobs/sha256", d), "wb").write(data)
    return "sha256:" + d, len(data)
diff_ids, layers = [], []
for i in range(n):
    raw = open(os.path.join(work, f"layer{i}.tar"), "rb").read()
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    gz = gzip.compress(raw, compresslevel=6, mtime=0)
    digest, size = put(gz)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size})
config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
          "rootfs": {"type": "layers", "diff_ids": diff_ids}}
cd, cs = put(json.dumps(config).encode())
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": layers}
md, ms = put(json.dumps(manifest).encode())
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]},
          open(os.path.join(layout, "index.json"), "w"))
open(os.path.join(layout, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
print("compressed MB:", round(sum(l["size"] for l in layers) / 1e6, 1))
PY
files=$(for i in "${!layer_dirs[@]}"; do tar -tf "$work/layer$i.tar"; done | wc -l)
uncompressed=$(du -cb "$work"/layer*.tar | tail -1 | cut -f1)
echo "image: ${#layer_dirs[@]} layers, $files entries, $((uncompressed / 1000000)) MB uncompressed"

# 2. A loopback registry (Debian's docker-registry, no auth), the image pushed to it.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
log:
  level: error
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.05; done
image="127.0.0.1:$port/bench/debian:1"
skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$layout:latest" "docker://$image"

store="$work/store"
accept='application/vnd.oci.image.manifest.v1+json'
manifest_url="http://127.0.0.1:$port/v2/bench/debian/manifests/1"

# Check every command works before timing it.
"$wharf" pull --home "$store" "$image" >/dev/null
docker pull -q "$image" >/dev/null
curl -fsS -o /dev/null -H "Accept: $accept" "$manifest_url"

echo "== cold pull + unpack: wharf vs docker"
hyperfine --warmup 1 --runs "$RUNS" \
  --export-json "$out/pull-cold.json" --export-markdown "$out/pull-cold.md" \
  --prepare "rm -rf '$store'; sync" \
  -n "wharf pull (cold)" "'$wharf' pull --home '$store' '$image'" \
  --prepare "docker rmi -f '$image' >/dev/null 2>&1 || true; sync" \
  -n "docker pull (cold)" "docker pull -q '$image'"

echo "== re-pull with everything present vs one manifest round trip"
"$wharf" pull --home "$store" "$image" >/dev/null
hyperfine -N --warmup 3 --runs $((RUNS * 3)) \
  --export-json "$out/pull-warm.json" --export-markdown "$out/pull-warm.md" \
  -n "wharf pull (present, policy always)" "'$wharf' pull --home '$store' '$image'" \
  -n "curl: one manifest GET" "curl -fsS -o /dev/null -H 'Accept: $accept' '$manifest_url'"

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
def medians(name):
    r = json.load(open(f"{out}/{name}.json"))["results"]
    return [(x["command"], x["median"]) for x in r]
cold = medians("pull-cold"); warm = medians("pull-warm")
lines = [f"{c}: median {m*1000:.1f} ms" for c, m in cold + warm]
lines.append(f"cold: wharf / docker = {cold[0][1] / cold[1][1]:.2f} (target <= 0.6)")
lines.append(f"re-pull: wharf / manifest round trip = {warm[0][1] / warm[1][1]:.2f} (target <= 1.1)")
open(f"{out}/pull-summary.txt", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
