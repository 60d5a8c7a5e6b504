#!/usr/bin/env bash
# The measurements behind load/CAPACITY.md: what one session, subscription, publication and lookup cost Redis.
# Loopback only, bounded (about a minute), ports 7650-7699; stops what it started.
#
#   load/capacity.sh [commands|memory|cluster-memory|redis-fanout|all]
#
#   commands        Redis commands per operation, read off `MONITOR` of the cluster Redis between markers:
#                   one logged-in connect, its disconnect, 10 subscribes + 50 publications (fan-out on two nodes),
#                   100 lookups through the push API. The web sessions live in their own Redis (7699), so only
#                   switchboard's own traffic is counted; periodic work (lease renewal, janitor, probes) is
#                   counted apart.
#   memory          Redis memory per connected session and per subscription: used_memory of the cluster Redis
#                   before and during 5,000 logged-in connections, then 5,000 anonymous ones, then 5,000
#                   anonymous subscribers of one topic, each held for 8 s.
#   cluster-memory  The model's check: 3 nodes × 5,000 logged-in connections on a 3-master Redis Cluster; the
#                   registry's shard's used_memory and commands against the one-Redis figures.
#
#   redis-fanout    Redis alone: PUBLISH rate of one envelope with 0, 1 and 3 subscribed connections (no
#                   output-buffer limit: the redis-cli subscribers share a core with the benchmark and fall behind).
#
# Needs: cargo build --release --workspace, redis-server, redis-cli, curl, python3.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/${PROFILE:-release}"
SB="$BIN_DIR/switchboard"
LOAD="$BIN_DIR/switchboard-load"
OUT="$ROOT/load/results/capacity"
mkdir -p "$OUT"
PIDS=()
# Nodes are started inside $(…), whose PIDS+= the parent never sees: each also lists its pid in this file.
NODE_PIDS="$OUT/node.pids"; : >"$NODE_PIDS"
cleanup() {
  for p in "${PIDS[@]:-}" $(cat "$NODE_PIDS" 2>/dev/null); do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  : >"$NODE_PIDS"; wait 2>/dev/null || true
}
trap cleanup EXIT
TOKEN=capacity-token-0123456789
KEY="$(head -c 64 /dev/urandom | base64 -w0)"

wait_ready() { for _ in $(seq 1 100); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not ready: $1"; exit 1; }
redis() {
  redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no "${@:2}" >"$OUT/redis-$1.log" 2>&1 &
  PIDS+=("$!"); sleep 0.3
}
# node PORT ID [env...]: prints its pid.
node() {
  local port="$1" id="$2"; shift 2
  env SWITCHBOARD_BIND="127.0.0.1:$port" SWITCHBOARD_NODE_ID="$id" SWITCHBOARD_SESSION_KEY="$KEY" \
    SWITCHBOARD_API_TOKEN="$TOKEN" SWITCHBOARD_DEMO=true RUST_LOG=warn "$@" "$SB" >"$OUT/node-$port.log" 2>&1 &
  local pid=$!; echo "$pid" >>"$NODE_PIDS"; wait_ready "http://127.0.0.1:$port/health/ready"
  kill -0 "$pid" 2>/dev/null || { echo "node on port $port exited: $(tail -n 1 "$OUT/node-$port.log")" >&2; exit 1; }
  echo "$pid"
}
stop() { kill "$1" 2>/dev/null || return 0; for _ in $(seq 1 600); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done; }
used_memory() { redis-cli -p "$1" info memory | tr -d '\r' | sed -n 's/^used_memory:\(.*\)/\1/p'; }
calls() { redis-cli -p "$1" info commandstats | tr -d '\r' | sed -n 's/^cmdstat_\([a-z|]*\):calls=\([0-9]*\).*/\1 \2/p'; }

commands() {
  redis 7690; redis 7699
  local env=(SWITCHBOARD_REDIS_URL=redis://127.0.0.1:7690 SWITCHBOARD_SESSION_REDIS_URL=redis://127.0.0.1:7699)
  local n1 n2; n1=$(node 7691 n1 "${env[@]}"); n2=$(node 7692 n2 "${env[@]}")
  redis-cli -p 7690 monitor >"$OUT/monitor.txt" &
  local monitor=$!
  mark() { redis-cli -p 7690 echo "mark:$1" >/dev/null; sleep 0.5; }
  sleep 0.5
  mark connect
  "$LOAD" connect --url ws://127.0.0.1:7691/ws --connections 1 --rate 0 --login --hold 3s >"$OUT/connect.txt" &
  local load=$!
  sleep 1.5; mark disconnect; wait "$load"; sleep 1
  mark fanout
  "$LOAD" fanout --url ws://127.0.0.1:7691/ws --url ws://127.0.0.1:7692/ws --connections 10 --rate 10 \
    --duration 5s --payload 100 >"$OUT/fanout.txt"
  sleep 1; mark lookup
  for _ in $(seq 1 100); do
    curl -fsS -H "Authorization: Bearer $TOKEN" http://127.0.0.1:7691/api/users/load-conn-0/sessions >/dev/null
  done
  mark end
  kill "$monitor"; stop "$n1"; stop "$n2"
  python3 "$ROOT/load/capacity_report.py" "$OUT/monitor.txt" | tee "$OUT/commands.txt"
}

memory() {
  redis 7690; redis 7699
  local env=(SWITCHBOARD_REDIS_URL=redis://127.0.0.1:7690 SWITCHBOARD_SESSION_REDIS_URL=redis://127.0.0.1:7699)
  local n1; n1=$(node 7691 n1 "${env[@]}")
  local before; before=$(used_memory 7690)
  "$LOAD" connect --url ws://127.0.0.1:7691/ws --connections 5000 --rate 0 --login --concurrency 256 --hold 8s \
    >"$OUT/memory-connect.txt" &
  local load=$!
  sleep 7
  local during; during=$(used_memory 7690)
  wait "$load"; sleep 2
  local after; after=$(used_memory 7690)
  echo "logged-in sessions: 5000; used_memory before $before, held $during, after $after;" \
    "per session $(( (during - before) / 5000 )) B" | tee "$OUT/memory.txt"
  before=$(used_memory 7690)
  "$LOAD" connect --url ws://127.0.0.1:7691/ws --connections 5000 --rate 0 --concurrency 256 --hold 8s \
    >"$OUT/memory-anonymous.txt" &
  load=$!
  sleep 7
  during=$(used_memory 7690)
  wait "$load"; sleep 2
  echo "anonymous sessions: 5000; used_memory before $before, held $during; per session $(( (during - before) / 5000 )) B" \
    | tee -a "$OUT/memory.txt"
  before=$(used_memory 7690)
  "$LOAD" fanout --url ws://127.0.0.1:7691/ws --connections 5000 --rate 1 --duration 8s --concurrency 256 \
    >"$OUT/memory-fanout.txt" &
  load=$!
  sleep 7
  during=$(used_memory 7690)
  wait "$load"
  echo "anonymous sessions with one subscription each: 5000; used_memory before $before, held $during;" \
    "per session + subscription $(( (during - before) / 5000 )) B" | tee -a "$OUT/memory.txt"
  stop "$n1"
}

cluster_memory() {
  local dir="$OUT/redis-cluster"; rm -rf "$dir"; mkdir -p "$dir"
  for port in 7684 7685 7686; do
    redis "$port" --cluster-enabled yes --cluster-port $((port - 30)) --cluster-config-file "$dir/nodes-$port.conf" --dir "$dir"
  done
  redis-cli --cluster create 127.0.0.1:7684 127.0.0.1:7685 127.0.0.1:7686 --cluster-replicas 0 --cluster-yes >/dev/null
  for _ in $(seq 1 100); do redis-cli -p 7684 cluster info | grep -q cluster_state:ok && break; sleep 0.1; done
  redis 7699
  local env=(SWITCHBOARD_REDIS_CLUSTER=redis://127.0.0.1:7684,redis://127.0.0.1:7685,redis://127.0.0.1:7686
    SWITCHBOARD_SESSION_REDIS_URL=redis://127.0.0.1:7699)
  local pids=(); for n in 1 2 3; do pids+=("$(node 769$n n$n "${env[@]}")"); done
  local shard; shard=$(redis-cli -p 7684 cluster keyslot '{switchboard:}' | tr -d '\r')
  local owner; owner=$(redis-cli -p 7684 cluster nodes | awk -v s="$shard" '$3 ~ /master/ { for (i = 9; i <= NF; i++) { split($i, r, "-"); if (r[2] == "") r[2] = r[1]; if (s >= r[1] && s <= r[2]) print $2 } }' | cut -d: -f2 | cut -d@ -f1)
  local before=() p; for p in 7684 7685 7686; do before+=("$(used_memory $p)"); done
  for p in 7684 7685 7686; do redis-cli -p "$p" config resetstat >/dev/null; done
  local loads=()
  for n in 1 2 3; do
    "$LOAD" connect --url ws://127.0.0.1:769$n/ws --connections 5000 --rate 0 --login --concurrency 128 --hold 12s \
      >"$OUT/cluster-connect-$n.txt" &
    loads+=("$!")
  done
  sleep 11
  {
    echo "3 nodes x 5,000 logged-in connections on a 3-master Redis Cluster; registry slot $shard on port $owner"
    local i=0
    for p in 7684 7685 7686; do
      local now; now=$(used_memory $p)
      echo "port $p: used_memory ${before[$i]} -> $now (+$(( now - before[i] )) B; $(( (now - before[i]) / 15000 )) B per session)"
      echo "  commands: $(calls $p | tr '\n' ' ')"
      i=$((i + 1))
    done
  } | tee "$OUT/cluster-memory.txt"
  for l in "${loads[@]}"; do wait "$l"; done
  for p in "${pids[@]}"; do stop "$p"; done
}

# Redis alone: PUBLISH of a 350-byte envelope (a 100-byte payload's) with 0, 1 and 3 subscribed connections
# (redis-cli SUBSCRIBE, standing in for nodes), unpipelined (50 clients) and pipelined (-P 32). Redis on CPU 0,
# the benchmark and the subscribers on CPU 1.
redis_fanout() {
  # No pub/sub output-buffer limit: a redis-cli subscriber on the shared core falls behind a pipelined benchmark
  # (Redis would disconnect it); the figure is what Redis spends accepting and queueing each delivery.
  taskset -c 0 redis-server --port 7697 --bind 127.0.0.1 --save "" --appendonly no \
    --client-output-buffer-limit "pubsub 0 0 0" >"$OUT/redis-7697.log" 2>&1 &
  PIDS+=("$!"); sleep 0.3
  local payload; payload="$(head -c 350 /dev/zero | tr '\0' x)"
  local subscribers=() have=0
  : >"$OUT/redis-fanout.txt"
  for k in 0 1 3; do
    while [ "$have" -lt "$k" ]; do
      taskset -c 1 redis-cli -p 7697 subscribe sb:t:bench >/dev/null &
      subscribers+=("$!"); PIDS+=("$!"); have=$((have + 1))
    done
    sleep 0.3
    for pipeline in 1 32; do
      local rate
      rate=$(taskset -c 1 redis-benchmark -p 7697 -n 200000 -P "$pipeline" -q PUBLISH sb:t:bench "$payload" 2>/dev/null \
        | tr '\r' '\n' | grep -v '^$' | tail -1 | sed 's/.*: //')
      echo "subscribers $k, pipeline $pipeline: $rate" | tee -a "$OUT/redis-fanout.txt"
    done
  done
}

case "${1:-all}" in
  commands) commands ;;
  memory) memory ;;
  cluster-memory) cluster_memory ;;
  redis-fanout) redis_fanout ;;
  all) commands; cleanup; PIDS=(); memory; cleanup; PIDS=(); cluster_memory; cleanup; PIDS=(); redis_fanout ;;
  *) echo "usage: $0 [commands|memory|cluster-memory|redis-fanout|all]"; exit 2 ;;
esac
