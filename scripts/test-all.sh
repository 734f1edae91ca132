#!/usr/bin/env bash
# Sets up every real component the tests need on a fresh Debian machine, then runs the whole
# suite: unit tests, and the tiers that need a Docker daemon, Debian's docker-registry, skopeo and
# Ceph's RADOS gateway, and moto's S3 server
# (marked #[ignore] so plain `cargo test` stays fast; run here with --include-ignored).
# Needs root (apt-get, dockerd). Network use: apt, crates.io and PyPI (moto, oras, PyYAML) only; tests talk to
# loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
# iproute2: the sandbox brings up loopback in a job's network namespace; util-linux (setpriv) is essential.
# ceph-mon ceph-osd radosgw ceph-common: a real S3 (Ceph's RADOS gateway on a memstore cluster on
# loopback) for the registry's S3 storage tier (crates/wharf-testkit/src/rgw.rs); haproxy and
# nginx-light: replicas behind a load balancer; containerd: its ctr CLI as a registry client;
# nodejs: Node's http, fetch and http2 as registry clients (and an HTTP/2 rapid-reset flood);
# python3-venv: moto's virtualenv below; tar and zstd: a cache archive made by tools wharf did
# not write (GNU tar --zstd).
for pkg in docker.io containerd docker-registry skopeo podman busybox-static apache2-utils python3 python3-venv nodejs golang-go git curl ca-certificates iproute2 uidmap ceph-mon ceph-osd radosgw ceph-common haproxy nginx-light tar zstd; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "== installing: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  # On a machine with systemd, these packages start a service at install (nginx on port 80 of
  # every address, docker-registry on 5000): the tests start their own on loopback, so the
  # ones installed just now are stopped and left disabled.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    for pkg in "${need_pkgs[@]}"; do
      case "$pkg" in
        nginx-light) systemctl disable --now nginx >/dev/null 2>&1 || true ;;
        docker-registry | haproxy) systemctl disable --now "$pkg" >/dev/null 2>&1 || true ;;
      esac
    done
  fi
fi

# Python tools from PyPI that Debian does not package, each pinned into a virtualenv of its own
# outside the checkout, made once. The marker is written last: an install cut short is made
# again, not half used. Prints the virtualenv's folder. Each step is checked by hand: `set -e`
# does not hold inside the command substitution that calls this.
pinned_venv() {
  local name=$1
  shift
  local env="${XDG_CACHE_HOME:-$HOME/.cache}/wharf-tests/$name"
  if [ ! -f "$env/.installed" ]; then
    echo "== installing $* from PyPI in $env" >&2
    rm -rf "$env" &&
      python3 -m venv "$env" >&2 &&
      "$env/bin/pip" install -q --disable-pip-version-check "$@" >&2 &&
      touch "$env/.installed" ||
      { echo "installing $* in $env failed" >&2; return 1; }
  fi
  echo "$env"
}

# moto's S3 server: a second S3 implementation for the registry's S3 tier (`moto::` tests,
# crates/wharf-testkit/src/moto.rs); about 30 s to install.
MOTO_VERSION=5.2.6
moto_env="$(pinned_venv "moto-$MOTO_VERSION" "moto[server]==$MOTO_VERSION")"
export WHARF_TEST_MOTO_SERVER="$moto_env/bin/moto_server"

# oras-py, the ORAS project's Python SDK: a registry client nobody here wrote, on `requests`
# (crates/wharf/tests/e2e/clients/oras_round_trip.py), pinned with its HTTP stack.
ORAS_VERSION=0.2.43
REQUESTS_VERSION=2.34.2
oras_env="$(pinned_venv "oras-$ORAS_VERSION-requests-$REQUESTS_VERSION" "oras==$ORAS_VERSION" "requests==$REQUESTS_VERSION")"
export WHARF_TEST_ORAS_PYTHON="$oras_env/bin/python"

# PyYAML on libyaml, the C parser GitLab reads pipelines with (through Ruby's Psych): the reference
# for wharf-ci's YAML differential tier (crates/wharf-ci/tests/libyaml_differential.rs).
PYYAML_VERSION=6.0.3
pyyaml_env="$(pinned_venv "pyyaml-$PYYAML_VERSION" "PyYAML==$PYYAML_VERSION")"
export WHARF_TEST_LIBYAML_PYTHON="$pyyaml_env/bin/python"

started_dockerd=""
cleanup() {
  if [ -n "$started_dockerd" ]; then
    kill "$started_dockerd" 2>/dev/null || true
    wait "$started_dockerd" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if ! docker version >/dev/null 2>&1; then
  echo "== starting dockerd (--bridge=none --iptables=false: no networks, nothing but loopback)"
  dockerd --bridge=none --iptables=false --ip6tables=false >/tmp/wharf-dockerd.log 2>&1 &
  started_dockerd=$!
  for _ in $(seq 1 60); do
    docker version >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker version >/dev/null 2>&1 || { echo "dockerd did not start:"; tail -20 /tmp/wharf-dockerd.log; exit 1; }
fi

echo "== cargo test (all tiers)"
# The suite takes 13-16 minutes (moto's tier adds about one). A test that hangs would hold CI
# until its own limit and print nothing of why: past SUITE_LIMIT seconds, show what is still
# running and stop the test binaries (cargo then reports them failed and goes on).
cargo test --workspace --all-targets --no-fail-fast -- --include-ignored &
suite=$!
(
  # Killed when the suite ends: take the sleep along, or it would hold this script's output open.
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  sleep "${SUITE_LIMIT:-2700}" &
  sleeper=$!
  wait "$sleeper"
  echo "== the suite has run for ${SUITE_LIMIT:-2700} s; still running:"
  ps -eo pid,ppid,etimes,args --forest | grep -v -e '\[' | tail -n 60
  pkill -TERM -f "$PWD/target/debug/deps/" || true
) &
watchdog=$!
suite_status=0
wait "$suite" || suite_status=$?
kill "$watchdog" 2>/dev/null || true
[ "$suite_status" -eq 0 ] || exit "$suite_status"

# README's first command, end to end (with the debug build the tests just made, to spare a
# release build): the seed pipeline in its image from a local access-controlled registry, with no
# Docker daemon involved.
echo "== examples/seed-in-image.sh"
WHARF="$PWD/target/debug/wharf" DOCKER_HOST=unix:///nonexistent ./examples/seed-in-image.sh
