#!/usr/bin/env bash
# Side by side on the same machine: the same fan-out and idle-connection workloads against Socket.IO 4 with
# @socket.io/redis-adapter and against switchboard in cluster mode (both use a private Redis). Each server is
# pinned to CPU 0, each load client to CPU 1. Prints both JSON summaries and the ratios.
#   load/compare/run.sh [CONNECTIONS] [RATE] [SECONDS] [IDLE_CONNECTIONS]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="$ROOT/.cache/compare"
N="${1:-1000}"; RATE="${2:-100}"; SECS="${3:-20}"; IDLE="${4:-5000}"
OUT="$ROOT/load/results"; mkdir -p "$OUT" "$CACHE"
cp "$ROOT/load/compare/package.json" "$CACHE/"
(cd "$CACHE" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not open"; exit 1; }

taskset -c 0 redis-server --port 7650 --bind 127.0.0.1 --save "" --appendonly no >"$OUT/compare-redis.log" 2>&1 &
PIDS+=("$!"); wait_port 7650

# Socket.IO
NODE_PATH="$CACHE/node_modules" PORT=7660 REDIS_URL=redis://127.0.0.1:7650 taskset -c 0 node "$ROOT/load/compare/server.js" \
  >"$OUT/compare-socketio.log" 2>&1 &
SIO=$!; PIDS+=("$SIO"); wait_port 7660
NODE_PATH="$CACHE/node_modules" taskset -c 1 node "$ROOT/load/compare/client.js" fanout --url http://127.0.0.1:7660 \
  --connections "$N" --rate "$RATE" --duration "$SECS" --server-pid "$SIO" | tee "$OUT/compare-socketio-fanout.json"
NODE_PATH="$CACHE/node_modules" taskset -c 1 node "$ROOT/load/compare/client.js" connect --url http://127.0.0.1:7660 \
  --connections "$IDLE" --hold 3 --server-pid "$SIO" | tee "$OUT/compare-socketio-idle.json"
kill "$SIO"

# switchboard, cluster mode on the same Redis
KEY="$(head -c 64 /dev/urandom | base64 -w0)"
SWITCHBOARD_BIND=127.0.0.1:7661 SWITCHBOARD_REDIS_URL=redis://127.0.0.1:7650 SWITCHBOARD_SESSION_KEY="$KEY" \
  SWITCHBOARD_NODE_ID=compare RUST_LOG=warn taskset -c 0 "$ROOT/target/release/switchboard" >"$OUT/compare-switchboard.log" 2>&1 &
SB=$!; PIDS+=("$SB"); wait_port 7661; sleep 0.5
taskset -c 1 "$ROOT/target/release/switchboard-load" fanout --url ws://127.0.0.1:7661/ws --connections "$N" --rate "$RATE" \
  --duration "${SECS}s" --server-pid "$SB" --json | tee "$OUT/compare-switchboard-fanout.json"
taskset -c 1 "$ROOT/target/release/switchboard-load" connect --url ws://127.0.0.1:7661/ws --connections "$IDLE" --rate 0 \
  --hold 3s --concurrency 200 --server-pid "$SB" --json | tee "$OUT/compare-switchboard-idle.json"

python3 - "$OUT" <<'PY'
import json, sys, os
o = sys.argv[1]
load = lambda n: json.load(open(os.path.join(o, n)))
sf, si = load("compare-socketio-fanout.json"), load("compare-socketio-idle.json")
wf, wi = load("compare-switchboard-fanout.json"), load("compare-switchboard-idle.json")
print("\n== side by side")
for name, s, w in [("CPU-s per million deliveries", sf["server_cpu_s_per_million_deliveries"], wf["server_cpu_s_per_million_deliveries"]),
                   ("KiB per idle connection", si["server_rss_kib_per_connection"], wi["server_rss_kib_per_connection"])]:
    print(f"{name:30} socket.io {s:8.2f}   switchboard {w:8.2f}   ratio {s / w:5.1f}x")
print(f"{'delivery p99 (ms)':30} socket.io {sf['latency_ms']['p99_ms']:8.2f}   switchboard {wf['latency_ms']['p99_ms']:8.2f}")
print(f"{'lost':30} socket.io {sf['lost']:8d}   switchboard {wf['lost']:8d}")
PY
