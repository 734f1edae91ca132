#!/usr/bin/env bash
# Hostile clients against `wharf registry serve`: during each flood (silent sockets, idle
# keep-alive connections, upload sessions, wrong passwords), how many requests of a legitimate
# client are answered, and the server's peak RSS and open fds. Loopback only.
#
#   bash bench/hostile.sh                 # builds the release binary, 10 s per flood
#   WHARF=target/debug/wharf SECONDS_PER_FLOOD=5 bash bench/hostile.sh
#
# The server runs with `ulimit -n 1024` (soft and hard), the common default, so its derived
# connection cap (768) is below the 1,100-socket floods. Needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."

wharf="${WHARF:-}"
if [ -z "$wharf" ]; then
  cargo build --release -p wharf >/dev/null
  wharf=target/release/wharf
fi
seconds="${SECONDS_PER_FLOOD:-10}"
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  [ -n "${KEEP_LOG:-}" ] && cp "$work/server.log" "$KEEP_LOG"
  rm -rf "$work"
}
trap cleanup EXIT

printf 'alice-pw\n' | "$wharf" registry user add alice --cost 10 --password-stdin --htpasswd "$work/htpasswd" 2>/dev/null

# Starts the server (config file $1) on a free port; sets $server and $port.
start() {
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  (
    ulimit -n 1024
    exec "$wharf" registry serve --config "$1" --addr "127.0.0.1:$port" --root "$work/root" \
      --auth basic --htpasswd "$work/htpasswd"
  ) 2>>"$work/server.log" &
  server=$!
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break
    sleep 0.1
  done
}
stop() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
}

echo "wharf $("$wharf" --version 2>/dev/null || echo '?'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), ${seconds} s per flood"
: >"$work/default.toml"
start "$work/default.toml"
python3 bench/hostile.py "127.0.0.1:$port" "$server" "$seconds"
stop
echo
echo "upload sessions on disk after the flood: $(find "$work/root/uploads" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)"
echo "server log lines: $(wc -l <"$work/server.log"), accept errors logged: $(grep -c 'accept failed' "$work/server.log" || true)"

echo
echo "Fresh logins (credential cache off: [auth] cache_seconds = 0):"
printf '[auth]\ncache_seconds = 0\n' >"$work/nocache.toml"
start "$work/nocache.toml"
python3 bench/hostile.py "127.0.0.1:$port" "$server" "$seconds" fresh
stop

# The peer, side by side: Debian's docker-registry (Docker's distribution) with the same htpasswd
# user, the same fd limit and the same floods. Skipped when it is not installed.
if command -v docker-registry >/dev/null; then
  echo
  echo "Peer: Debian's docker-registry ($(docker-registry --version 2>/dev/null | head -1)), same floods:"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >"$work/peer.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/peer-root}}
http: {addr: 127.0.0.1:$port}
auth: {htpasswd: {realm: bench, path: $work/htpasswd}}
YML
  (
    ulimit -n 1024
    # It crashes at start when AWS_CA_BUNDLE is set (this machine sets it); it needs no AWS.
    exec env -u AWS_CA_BUNDLE docker-registry serve "$work/peer.yml"
  ) >>"$work/peer.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break
    sleep 0.1
  done
  python3 bench/hostile.py "127.0.0.1:$port" "$server" "$seconds"
  stop
  echo "peer upload sessions on disk after the flood: $(find "$work/peer-root" -path '*/_uploads/*' -mindepth 1 -maxdepth 8 -type d -name '*-*' 2>/dev/null | wc -l)"
  echo "peer log lines: $(wc -l <"$work/peer.log"), accept errors logged: $(grep -ci 'too many open files' "$work/peer.log" || true)"
fi

