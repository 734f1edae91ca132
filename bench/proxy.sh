#!/usr/bin/env bash
# Issue 11 pull-through figures, side by side in one hyperfine run. See "Issue 11: pull-through"
# in bench/README.md.
#
#   bash bench/proxy.sh                 # ~50 MB image of 5 layers, RUNS=10
#   RUNS=3 MIB=10 bash bench/proxy.sh   # quick check
#   PERF_RUNS=10 bash bench/proxy.sh    # also wharf's CPU and page faults per cold pull
#   PIN=1 bash bench/proxy.sh           # skopeo on CPU 0, the registries on the other CPUs
#   PEERS=1 bash bench/proxy.sh         # also the peers below, for what a relay costs here
#
# Every pull is `skopeo copy docker://... oci:<fresh dir>` (the target folder is removed before
# each run, untimed). Compared:
#   upstream-direct  from the upstream (Debian's docker-registry) itself
#   cold             through wharf's pull-through cache, its storage wiped and wharf restarted
#                    before each run (untimed): every blob comes from the upstream
#   cold-live        through a running wharf (the one serving cached and wharf-direct), its
#                    `live/` entry's tag moved upstream to an image nobody pulled yet before each
#                    run (untimed): the first pull of a new release, as a long-lived cache sees it
#   cached           through the cache after one warm-up pull: everything from wharf's storage
#   wharf-direct     the same image pushed to wharf directly (outside the proxied prefix)
# With PEERS=1, two more:
#   relay            through haproxy in TCP mode in front of the upstream: bytes relayed in the
#                    kernel (splice), nothing stored or hashed, the cheapest any cache could be
#   registry-cold    through Docker's registry as a pull-through cache (`proxy: remoteurl`) of
#                    the upstream, wiped and restarted before each run like wharf's cold one
# Targets: cached >= 0.9x the speed of wharf-direct; cold and cold-live <= 1.2x the time of
# upstream-direct.
# With PIN=1 the client gets a CPU of its own and the registries share the others (taskset), as
# when the cache runs on another machine than the CI job pulling through it; by default all
# three share every CPU, so the cache's own CPU competes with the client's on a small machine.
# Everything runs on 127.0.0.1; everything started here is killed on exit, by pid.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
RUNS="${RUNS:-10}"
MIB="${MIB:-50}"
WHARF="${WHARF:-$ROOT/target/release/wharf}"
PIN="${PIN:-0}"
CLIENT_CPU=() SERVER_CPUS=()
if [[ "$PIN" == 1 ]]; then
  CPUS="$(nproc)"
  ((CPUS >= 2)) || { echo "PIN=1 needs 2 CPUs or more" >&2; exit 1; }
  CLIENT_CPU=(taskset -c 0) SERVER_CPUS=(taskset -c "1-$((CPUS - 1))")
fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PEERS="${PEERS:-0}"
NEEDED=(docker-registry skopeo hyperfine curl python3)
[[ "$PEERS" == 1 ]] && NEEDED+=(haproxy)
for bin in "${NEEDED[@]}"; do
  command -v "$bin" >/dev/null || {
    echo "missing $bin: apt-get install docker-registry skopeo hyperfine curl python3" >&2
    exit 1
  }
done
[[ -x "$WHARF" ]] || (cd "$ROOT" && cargo build --release -p wharf)

WORK="$(mktemp -d /tmp/wharf-proxy-bench.XXXXXX)"
PIDS=()
cleanup() {
  local rc=$?
  set +e
  [[ -f "$WORK/cold.pid" ]] && kill "$(cat "$WORK/cold.pid")" 2>/dev/null
  [[ -f "$WORK/peer-cold.pid" ]] && kill "$(cat "$WORK/peer-cold.pid")" 2>/dev/null
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_ready() { # PORT
  for _ in $(seq 1 200); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/v2/" || true)" == 200 ]] && return 0
    sleep 0.05
  done
  echo "nothing answers on 127.0.0.1:$1" >&2
  return 1
}

PERF_RUNS="${PERF_RUNS:-0}"
# Distinct images for cold-live: one per timed run, the warm-up, the check and each perf run.
LIVE_IMAGES=$((RUNS + 2 + PERF_RUNS))
say "image: $MIB MiB in 5 layers (random bytes, uncompressed tar layers), and $LIVE_IMAGES more like it"
python3 - "$WORK/image" "$MIB" "$LIVE_IMAGES" <<'PY'
import hashlib, io, json, os, sys, tarfile
out, mib, live = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, d), "wb").write(data)
    return "sha256:" + d
index = []
for name in ["t"] + [f"c{k}" for k in range(1, live + 1)]:
    layers = []
    for i in range(5):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            payload = os.urandom(mib * 1024 * 1024 // 5)
            info = tarfile.TarInfo(f"data/layer{i}.bin"); info.size = len(payload); info.mtime = 0
            t.addfile(info, io.BytesIO(payload))
        data = buf.getvalue()
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": put(data), "size": len(data)})
    config = json.dumps({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config), "size": len(config)},
        "layers": layers}).encode()
    index.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": put(manifest), "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": name}})
json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(out, "oci-layout"), "w"))
json.dump({"schemaVersion": 2, "manifests": index}, open(os.path.join(out, "index.json"), "w"))
PY

say "upstream (docker-registry) and wharf"
UP_PORT="$(free_port)"
cat >"$WORK/up.yml" <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/up-root}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$UP_PORT}
YML
${SERVER_CPUS[@]} docker-registry serve "$WORK/up.yml" >"$WORK/up.log" 2>&1 &
PIDS+=($!)
wait_ready "$UP_PORT"

wharf_config() { # PORT ROOT -> config path
  cat >"$WORK/wharf-$1.toml" <<TOML
addr = "127.0.0.1:$1"
root = "$2"

[[proxy]]
prefix = "hub/"
upstream = "http://127.0.0.1:$UP_PORT"
ttl = "1h"

# cold-live: its tag is checked upstream again after a second, and moved to a new image there.
[[proxy]]
prefix = "live/"
upstream = "http://127.0.0.1:$UP_PORT"
ttl = "1s"
TOML
  echo "$WORK/wharf-$1.toml"
}
WARM_PORT="$(free_port)"
${SERVER_CPUS[@]} "$WHARF" registry serve --config "$(wharf_config "$WARM_PORT" "$WORK/warm-root")" --auth none \
  >"$WORK/warm.log" 2>&1 &
PIDS+=($!)
echo $! >"$WORK/warm.pid"
wait_ready "$WARM_PORT"
COLD_PORT="$(free_port)"
COLD_CONFIG="$(wharf_config "$COLD_PORT" "$WORK/cold-root")"
# restart_script NAME PORT COMMAND...: writes $WORK/restart-NAME.sh, run untimed before each cold
# run: stops NAME's server, wipes its storage ($WORK/NAME-root) and the pull's target, starts
# COMMAND again and waits until it answers on PORT.
restart_script() {
  local name=$1 port=$2
  shift 2
  cat >"$WORK/restart-$name.sh" <<SH
set -e
[ -f "$WORK/$name.pid" ] && kill "\$(cat "$WORK/$name.pid")" 2>/dev/null && sleep 0.2 || true
rm -rf "$WORK/$name-root" "$WORK/out"
${SERVER_CPUS[*]} $(printf "%q " "$@")>>"$WORK/$name.log" 2>&1 &
echo \$! >"$WORK/$name.pid"
for _ in \$(seq 1 200); do
  [ "\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/v2/ || true)" = 200 ] && exit 0
  sleep 0.05
done
exit 1
SH
}
restart_script cold "$COLD_PORT" "$WHARF" registry serve --config "$COLD_CONFIG" --auth none

PEER_RUNS=()
if [[ "$PEERS" == 1 ]]; then
  RELAY_PORT="$(free_port)"
  cat >"$WORK/relay.cfg" <<CFG
global
  maxconn 200
defaults
  mode tcp
  option splice-auto
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend relay
  bind 127.0.0.1:$RELAY_PORT
  default_backend upstream
backend upstream
  server up 127.0.0.1:$UP_PORT
CFG
  ${SERVER_CPUS[@]} haproxy -f "$WORK/relay.cfg" -db >"$WORK/relay.log" 2>&1 &
  PIDS+=($!)
  wait_ready "$RELAY_PORT"
  PEER_PORT="$(free_port)"
  cat >"$WORK/peer-cold.yml" <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/peer-cold-root}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$PEER_PORT}
proxy: {remoteurl: "http://127.0.0.1:$UP_PORT"}
YML
  restart_script peer-cold "$PEER_PORT" docker-registry serve "$WORK/peer-cold.yml"
fi

push() { skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/image:t" "docker://$1"; }
push "127.0.0.1:$UP_PORT/bench/img:1"
push "127.0.0.1:$WARM_PORT/direct/img:1"
mkdir "$WORK/live-manifests"
for k in $(seq 1 "$LIVE_IMAGES"); do
  skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/image:c$k" "docker://127.0.0.1:$UP_PORT/bench/live:c$k"
  # As the upstream holds it (skopeo compressed the layers on the way).
  curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' -o "$WORK/live-manifests/c$k.json" \
    "http://127.0.0.1:$UP_PORT/v2/bench/live/manifests/c$k"
done
# Untimed before each cold-live run: the upstream's bench/live:1 moves to the next image nobody
# pulled yet, and the wait outlasts the live/ entry's 1 s ttl, so the running wharf fetches the
# new manifest and every blob from the upstream, as on the first pull of a new release.
echo 0 >"$WORK/live-next"
cat >"$WORK/next-live.sh" <<SH
set -e
k=\$((\$(cat "$WORK/live-next") + 1))
echo "\$k" >"$WORK/live-next"
curl -sf -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \\
  --data-binary "@$WORK/live-manifests/c\$k.json" "http://127.0.0.1:$UP_PORT/v2/bench/live/manifests/1"
rm -rf "$WORK/out"
sleep 1.1
SH
pull() { echo "${CLIENT_CPU[*]} skopeo copy --quiet --src-tls-verify=false docker://$1 oci:$WORK/out:t"; }
# Checked once (and the cache warmed) before timing.
bash "$WORK/restart-cold.sh"
for ref in "127.0.0.1:$UP_PORT/bench/img:1" "127.0.0.1:$COLD_PORT/hub/bench/img:1" \
  "127.0.0.1:$WARM_PORT/hub/bench/img:1" "127.0.0.1:$WARM_PORT/direct/img:1"; do
  rm -rf "$WORK/out"
  eval "$(pull "$ref")"
done
bash "$WORK/next-live.sh"
eval "$(pull "127.0.0.1:$WARM_PORT/live/bench/live:1")"
if [[ "$PEERS" == 1 ]]; then
  bash "$WORK/restart-peer-cold.sh"
  for ref in "127.0.0.1:$RELAY_PORT/bench/img:1" "127.0.0.1:$PEER_PORT/bench/img:1"; do
    rm -rf "$WORK/out"
    eval "$(pull "$ref")"
  done
  PEER_RUNS=(-n relay --prepare "rm -rf $WORK/out" "$(pull "127.0.0.1:$RELAY_PORT/bench/img:1")"
    -n registry-cold --prepare "bash $WORK/restart-peer-cold.sh" "$(pull "127.0.0.1:$PEER_PORT/bench/img:1")")
fi

say "pulls, $RUNS runs each"
mkdir -p "$BENCH/results"
hyperfine --runs "$RUNS" --warmup 1 --export-json "$BENCH/results/proxy.json" \
  --export-markdown "$BENCH/results/proxy.md" \
  -n upstream-direct --prepare "rm -rf $WORK/out" "$(pull "127.0.0.1:$UP_PORT/bench/img:1")" \
  -n cold --prepare "bash $WORK/restart-cold.sh" "$(pull "127.0.0.1:$COLD_PORT/hub/bench/img:1")" \
  -n cold-live --prepare "bash $WORK/next-live.sh" "$(pull "127.0.0.1:$WARM_PORT/live/bench/live:1")" \
  -n cached --prepare "rm -rf $WORK/out" "$(pull "127.0.0.1:$WARM_PORT/hub/bench/img:1")" \
  -n wharf-direct --prepare "rm -rf $WORK/out" "$(pull "127.0.0.1:$WARM_PORT/direct/img:1")" \
  "${PEER_RUNS[@]}"

python3 - "$BENCH/results/proxy.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
m = {k: v["median"] for k, v in r.items()}
print(f"medians: " + ", ".join(f"{k} {v:.3f} s" for k, v in m.items()))
speed = m["wharf-direct"] / m["cached"]
cold = m["cold"] / m["upstream-direct"]
print(f"cached pull-through vs pushed to wharf: {speed:.2f}x the speed (target >= 0.9x): {'ok' if speed >= 0.9 else 'MISSED'}")
print(f"cold pull-through vs the upstream directly: {cold:.2f}x the time (target <= 1.2x): {'ok' if cold <= 1.2 else 'MISSED'}")
live = m["cold-live"] / m["upstream-direct"]
print(f"cold pull-through on a running wharf vs the upstream directly: {live:.2f}x the time (target <= 1.2x): {'ok' if live <= 1.2 else 'MISSED'}")
if "relay" in m:
    up = m["upstream-direct"]
    print(f"peers vs the upstream directly: relay (haproxy, TCP) {m['relay'] / up:.2f}x, "
          f"Docker's registry cold {m['registry-cold'] / up:.2f}x, wharf cold {cold:.2f}x the time")
PY
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"

# CPU and page faults of the cold wharf during one cold pull (perf stat attached to it once it
# answers, detached when the pull ends): figures the machine's load hardly changes.
if ((PERF_RUNS > 0)); then
  command -v perf >/dev/null || { echo "missing perf: apt-get install linux-perf" >&2; exit 1; }
  # perf_pulls NAME PREPARE PID-FILE REF: perf stat on the wharf whose pid is in PID-FILE (read
  # after PREPARE ran) during each of PERF_RUNS pulls of REF.
  perf_pulls() {
    local name=$1 prepare=$2 pid_file=$3 ref=$4
    for run in $(seq 1 "$PERF_RUNS"); do
      bash "$prepare"
      perf stat -x, -e task-clock,page-faults -p "$(cat "$pid_file")" -o "$WORK/perf-$name-$run.csv" &
      PERF_PID=$!
      sleep 0.2 # perf attaches
      eval "$(pull "$ref")"
      kill -INT "$PERF_PID"
      wait "$PERF_PID" || true
    done
  }
  say "wharf's CPU per cold pull, $PERF_RUNS runs each (perf stat -p)"
  perf_pulls cold "$WORK/restart-cold.sh" "$WORK/cold.pid" "127.0.0.1:$COLD_PORT/hub/bench/img:1"
  perf_pulls cold-live "$WORK/next-live.sh" "$WORK/warm.pid" "127.0.0.1:$WARM_PORT/live/bench/live:1"
  python3 - "$WORK" "$PERF_RUNS" <<'PY'
import statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
for name, what in (("cold", "restarted before each pull"), ("cold-live", "running, a new image each pull")):
    clock, faults = [], []
    for run in range(1, runs + 1):
        for line in open(f"{work}/perf-{name}-{run}.csv"):
            f = line.strip().split(",")
            if len(f) > 2 and f[2] == "task-clock":
                clock.append(float(f[0]))
            elif len(f) > 2 and f[2].startswith("page-faults"):
                faults.append(int(float(f[0])))
    print(f"{name} ({what}): wharf task-clock per pull median {statistics.median(clock):.1f} ms "
          f"(min {min(clock):.1f}, max {max(clock):.1f}); page faults median {statistics.median(faults):.0f} "
          f"(min {min(faults)}, max {max(faults)})")
PY
fi
