#!/usr/bin/env bash
# Feeds every gitlab-runner config.toml in FOLDER to `wharf runner run --config` and says, for
# each, whether the runners started (LOADED), started with warnings about keys wharf does not act
# on (REPORTED, the warnings follow) or did not start (REFUSED, the error follows). A tally ends
# the output. Nothing leaves the machine: every runner `url` is rewritten to a closed loopback
# port (one path per line, so runners stay distinct) in a temporary copy, and each run is stopped
# after a few seconds.
#
#   bash scripts/runner-configs.sh FOLDER              # builds the debug binary first
#   WHARF=target/debug/wharf SECONDS_EACH=3 bash scripts/runner-configs.sh FOLDER
set -euo pipefail

FOLDER="${1:?usage: runner-configs.sh FOLDER (of gitlab-runner config.toml files)}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_EACH="${SECONDS_EACH:-3}"
if [[ -z "${WHARF:-}" ]]; then
  (cd "$ROOT" && cargo build -q -p wharf)
  WHARF="$ROOT/target/debug/wharf"
fi

WORK="$(mktemp -d /tmp/wharf-runner-configs.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
loaded=0 reported=0 refused=0
for file in "$FOLDER"/*; do
  [[ -f "$file" ]] || continue
  copy="$WORK/config.toml"
  awk '{ if ($0 ~ /^[ \t]*url[ \t]*=/) { match($0, /^[ \t]*/); print substr($0, 1, RLENGTH) "url = \"http://127.0.0.1:9/line" NR "/\"" } else print }' \
    "$file" >"$copy"
  chmod 600 "$copy"
  (cd "$WORK" && timeout -s INT "$SECONDS_EACH" "$WHARF" runner run --config "$copy" >/dev/null 2>"$WORK/err") || true
  name="$(basename "$file")"
  if grep -q '^Configuration loaded from' "$WORK/err"; then
    # Warnings about the file name it; others (the closed port) are not about the config.
    if grep -qF "WARNING: $copy" "$WORK/err"; then
      reported=$((reported + 1))
      echo "REPORTED $name"
      grep -F "WARNING: $copy" "$WORK/err" | sed "s#$copy#config.toml#g; s/^/    /"
    else
      loaded=$((loaded + 1))
      echo "LOADED   $name"
    fi
  else
    refused=$((refused + 1))
    echo "REFUSED  $name"
    sed "s#$copy#config.toml#g; s/^/    /" "$WORK/err" | head -5
  fi
done
echo "total $((loaded + reported + refused)): loaded $loaded, reported $reported, refused $refused"
