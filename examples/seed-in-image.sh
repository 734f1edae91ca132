#!/usr/bin/env bash
# The seed pipeline in its image, pulled with credentials from an access-controlled registry, on
# a machine without Docker. Everything it needs happens here, on loopback, in a scratch folder:
#   1. builds wharf (release);
#   2. makes the seed's image from this machine's own shell and tools (bash, coreutils, tar and
#      their libraries) plus the stand-in npm of examples/seed/bin, as an OCI image layout;
#   3. starts `wharf registry serve` on 127.0.0.1 with HTTP Basic auth and one user, and imports
#      the image into it as node:10-alpine (`wharf registry import`);
#   4. runs examples/seed with `--executor sandbox` (wharf's daemonless executor), the image line
#      pointing at that registry and the credentials in DOCKER_AUTH_CONFIG, exactly as a GitLab
#      CI/CD variable would carry them.
# Works as root or as a user (then in a user namespace). Leaves nothing behind but
# target/release. KEEP=1 keeps the scratch folder.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -z "${WHARF:-}" ]]; then # WHARF=/path/to/wharf uses that binary instead
  cargo build --release -q -p wharf
  WHARF="$ROOT/target/release/wharf"
fi

WORK="$(mktemp -d /tmp/wharf-seed-in-image.XXXXXX)"
REGISTRY_PID=""
cleanup() {
  [[ -n "$REGISTRY_PID" ]] && kill "$REGISTRY_PID" 2>/dev/null && wait "$REGISTRY_PID" 2>/dev/null
  [[ -n "${KEEP:-}" ]] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- 2. the image
R="$WORK/rootfs"
mkdir -p "$R/usr/local/bin" "$R/tmp" "$R/etc" "$R/root"
chmod 1777 "$R/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
add() { # add PROGRAM: the executable (at its path) and the shared libraries it needs
  local exe lib
  exe="$(type -P "$1")" || { echo "needs $1 on this machine"; exit 1; }
  mkdir -p "$R$(dirname "$exe")"
  cp -L "$exe" "$R$exe"
  for lib in $(ldd "$exe" 2>/dev/null | grep -o '/[^ ]*'); do
    mkdir -p "$R$(dirname "$lib")"
    [[ -e "$R$lib" ]] || cp -L "$lib" "$R$lib"
  done
}
for p in bash sh cat tar mkdir rm cp mv ls echo env printf sed grep head tail wc touch id uname \
  sleep chmod find basename dirname; do
  add "$p"
done
# Merged-/usr systems: the image needs /bin and /lib like the host's.
for d in bin lib lib64 sbin; do
  if [[ -L "/$d" && ! -e "$R/$d" ]]; then ln -s "$(readlink "/$d")" "$R/$d"; fi
done
cp examples/seed/bin/npm "$R/usr/local/bin/npm"
chmod 755 "$R/usr/local/bin/npm"

L="$WORK/layout"
mkdir -p "$L/blobs/sha256"
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
tar -C "$R" --numeric-owner --owner=0 --group=0 --sort=name -cf "$WORK/layer.tar" .
diff_id="$(sha "$WORK/layer.tar")"
gzip -n -c "$WORK/layer.tar" >"$WORK/layer.tar.gz"
layer="$(sha "$WORK/layer.tar.gz")"
mv "$WORK/layer.tar.gz" "$L/blobs/sha256/$layer"
case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch="$(uname -m)" ;; esac
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/bin:/usr/bin:/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$arch" "$diff_id" >"$WORK/config.json"
config="$(sha "$WORK/config.json")"
cp "$WORK/config.json" "$L/blobs/sha256/$config"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$config" "$(size "$WORK/config.json")" "$layer" "$(size "$L/blobs/sha256/$layer")" >"$WORK/manifest.json"
manifest="$(sha "$WORK/manifest.json")"
cp "$WORK/manifest.json" "$L/blobs/sha256/$manifest"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s}]}' \
  "$manifest" "$(size "$WORK/manifest.json")" >"$L/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$L/oci-layout"

# ---------------------------------------------------------------- 3. the registry
USER_NAME=ci-bot
PASSWORD="$(head -c 18 /dev/urandom | base64)"
printf '%s\n' "$PASSWORD" | "$WHARF" registry user add --htpasswd "$WORK/htpasswd" --cost 4 \
  --password-stdin "$USER_NAME" >/dev/null
"$WHARF" registry import --root "$WORK/registry" "$L" node:10-alpine
"$WHARF" registry serve --root "$WORK/registry" --auth basic --htpasswd "$WORK/htpasswd" \
  --addr 127.0.0.1:0 2>"$WORK/registry.log" &
REGISTRY_PID=$!
for _ in $(seq 1 100); do
  grep -q 'registry listening' "$WORK/registry.log" && break
  sleep 0.05
done
ADDR="$(grep -o 'addr=127.0.0.1:[0-9]*' "$WORK/registry.log" | head -1 | cut -d= -f2)"
[[ -n "$ADDR" ]] || { echo "the registry did not start:"; cat "$WORK/registry.log"; exit 1; }

# ---------------------------------------------------------------- 4. the seed pipeline
P="$WORK/seed"
cp -r examples/seed "$P"
rm -rf "$P/.wharf"
sed -i "s|image: docker-registry.samchu.com/node:10-alpine|image: $ADDR/node:10-alpine|" "$P/.gitlab-ci.yml"
AUTH="$(printf '%s:%s' "$USER_NAME" "$PASSWORD" | base64 -w0)"
echo "== the seed pipeline, in its image $ADDR/node:10-alpine, no Docker daemon"
WHARF_HOME="$WORK/home" "$WHARF" run -C "$P" --executor sandbox \
  --variable "DOCKER_AUTH_CONFIG={\"auths\": {\"$ADDR\": {\"auth\": \"$AUTH\"}}}"
echo "== artifact: $(tar tf "$P/.wharf/artifacts/build-staging/dist-staging.tar" | tr '\n' ' ')"
