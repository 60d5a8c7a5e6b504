#!/usr/bin/env bash
# The standard measurements behind load/BENCHMARKS.md. Loopback only; every run is bounded.
# The server is pinned to CPU 0 and the load generator to CPU 1 (taskset), as the figures require.
#
#   load/bench.sh [fanout-1k|fanout-10k|rss-5k|rss-15k|connect-redis|presence-5k|resume-100|direct-3|cluster-vs-one|redis-ceiling|floor-20|floor-300|serializers|all]
#
# Needs: cargo build --release --workspace, redis-server, redis-benchmark, taskset. Ports 7600-7699.
# PROFILE=profiling runs the binaries of `cargo build --profile profiling --workspace` (full debug info, for perf).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/${PROFILE:-release}"
SB="$BIN_DIR/switchboard"
LOAD="$BIN_DIR/switchboard-load"
OUT="$ROOT/load/results"
mkdir -p "$OUT"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_ready() { for _ in $(seq 1 100); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not ready: $1"; exit 1; }

# node PORT [extra env...] [-- server args...]: a node pinned to CPU 0; prints its pid.
node() {
  local port="$1"; shift
  local envs=() args=()
  while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then shift; args=("$@"); break; fi
    envs+=("$1"); shift
  done
  env SWITCHBOARD_BIND="127.0.0.1:$port" RUST_LOG=warn "${envs[@]}" taskset -c 0 "$SB" "${args[@]}" >"$OUT/node-$port.log" 2>&1 &
  local pid=$!; PIDS+=("$pid"); wait_ready "http://127.0.0.1:$port/health/ready"
  # Ready could be another process on the port (one left over): this node must be the one alive.
  kill -0 "$pid" 2>/dev/null || { echo "node on port $port exited: $(tail -n 1 "$OUT/node-$port.log")" >&2; exit 1; }
  echo "$pid"
}

# stop PID: SIGTERM, then wait (up to 30 s) until the node has drained and exited, so the next run can bind its port.
stop() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 600); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
  echo "node $1 still running 30 s after SIGTERM" >&2; exit 1
}

redis() {
  taskset -c 0 redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis-$1.log" 2>&1 &
  PIDS+=("$!"); sleep 0.3
}

run() { local name="$1"; shift; echo "== $name: $*" | tee "$OUT/$name.txt"; taskset -c 1 "$LOAD" "$@" | tee -a "$OUT/$name.txt"; }

fanout_1k() {
  local pid; pid=$(node 7601)
  run fanout-1k fanout --url ws://127.0.0.1:7601/ws --connections 1000 --rate 300 --duration 20s --server-pid "$pid"
  stop "$pid"
}

# floor RATE: (DURATION=10s by default) the bare-write floor server (../shared/bench/floor) and switchboard back to back under the same load
# (1,000 subscribers, RATE publishes/s, 100-byte payload): the two CPU-s per million figures give the floor ratio.
FLOOR="${FLOOR_BIN:-$ROOT/target/floor/release/floor}"
floor_ratio() {
  local rate="$1" pid
  if [ ! -x "$FLOOR" ]; then
    echo "no floor server at $FLOOR; build it with:" >&2
    echo "  cargo build --release --manifest-path ../shared/bench/floor/Cargo.toml --target-dir target/floor" >&2
    exit 1
  fi
  taskset -c 0 "$FLOOR" 7690 >"$OUT/floor-server.log" 2>&1 &
  pid=$!; PIDS+=("$pid"); sleep 0.5
  run "floor-$rate" fanout --url ws://127.0.0.1:7690/ws --connections 1000 --rate "$rate" --duration "${DURATION:-10s}" --payload 100 \
    --server-pid "$pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=$(node 7691)
  run "switchboard-$rate" fanout --url ws://127.0.0.1:7691/ws --connections 1000 --rate "$rate" --duration "${DURATION:-10s}" \
    --payload 100 --server-pid "$pid"
  stop "$pid"
}

# serializers: (DURATION=10s, RATE=300 by default) fan-out CPU per delivery with the subscribers of one topic on
# wamp.2.json, wamp.2.msgpack, wamp.2.cbor, and all four forms mixed (json, msgpack, cbor, v1 in turns), each on a
# fresh node, after the bare-write floor under the same load (1,000 subscribers, 100-byte payload).
serializers() {
  local rate="${RATE:-300}" pid protocol
  floor_ratio "$rate"
  for protocol in msgpack cbor mixed v1; do
    pid=$(node 7692)
    run "serializer-$protocol-$rate" fanout --url ws://127.0.0.1:7692/ws --connections 1000 --rate "$rate" \
      --duration "${DURATION:-10s}" --payload 100 --protocol "$protocol" --server-pid "$pid"
    stop "$pid"
  done
}

fanout_10k() {
  local pid; pid=$(node 7602)
  run fanout-10k fanout --url ws://127.0.0.1:7602/ws --connections 10000 --rate 30 --duration 20s \
    --concurrency 512 --server-pid "$pid"
  stop "$pid"
}

rss() {
  local n="$1" port="$2" pid; pid=$(node "$port")
  run "rss-$n" connect --url "ws://127.0.0.1:$port/ws" --connections "$n" --rate 0 --login --hold 3s \
    --concurrency 512 --server-pid "$pid"
  stop "$pid"
}

connect_redis() {
  redis 7610
  local key; key="$(head -c 64 /dev/urandom | base64 -w0)"
  local pid; pid=$(node 7611 SWITCHBOARD_REDIS_URL=redis://127.0.0.1:7610 SWITCHBOARD_SESSION_KEY="$key" SWITCHBOARD_DEMO=true)
  run connect-redis connect --url ws://127.0.0.1:7611/ws --connections 5000 --rate 0 --login --concurrency 256 \
    --server-pid "$pid"
  stop "$pid"
}

# presence-5k: a connect storm of 5,000 logged-in users (one socket each) on node n2 while a watcher on node n1
# waits for each one's switchboard.user.on_online: presence latency across nodes during the storm (p50/p99).
presence_5k() {
  redis 7640
  local key; key="$(head -c 64 /dev/urandom | base64 -w0)"
  local env=(SWITCHBOARD_REDIS_URL=redis://127.0.0.1:7640 SWITCHBOARD_SESSION_KEY="$key" SWITCHBOARD_DEMO=true)
  node 7641 "${env[@]}" SWITCHBOARD_NODE_ID=n1 >/dev/null
  local pid; pid=$(node 7642 "${env[@]}" SWITCHBOARD_NODE_ID=n2)
  run presence-5k connect --url ws://127.0.0.1:7642/ws --watch-url ws://127.0.0.1:7641/ws --presence --login \
    --connections 5000 --rate 0 --concurrency 256 --server-pid "$pid"
  stop "$pid"
}

# resume-100: 1,000 events kept in Redis Streams ([[history]] on load.resume), then 100 clients resuming at once
# (spread over two nodes): time from each SUBSCRIBE with resume_after to its 1,000th replayed event.
resume_100() {
  redis 7650
  local key; key="$(head -c 64 /dev/urandom | base64 -w0)"
  printf '[[history]]\npattern = "load.resume"\nsize = 2000\n' >"$OUT/history.toml"
  local env=(SWITCHBOARD_REDIS_URL=redis://127.0.0.1:7650 SWITCHBOARD_SESSION_KEY="$key")
  local pid; pid=$(node 7651 "${env[@]}" SWITCHBOARD_NODE_ID=n1 -- --config "$OUT/history.toml")
  node 7652 "${env[@]}" SWITCHBOARD_NODE_ID=n2 -- --config "$OUT/history.toml" >/dev/null
  run resume-100 resume --url ws://127.0.0.1:7651/ws --url ws://127.0.0.1:7652/ws --connections 100 --events 1000 \
    --payload 100 --server-pid "$pid"
  stop "$pid"
}

direct_3() {
  redis 7620
  local key; key="$(head -c 64 /dev/urandom | base64 -w0)"
  local env=(SWITCHBOARD_REDIS_URL=redis://127.0.0.1:7620 SWITCHBOARD_SESSION_KEY="$key" SWITCHBOARD_DEMO=true)
  node 7621 "${env[@]}" SWITCHBOARD_NODE_ID=n1 >/dev/null
  node 7622 "${env[@]}" SWITCHBOARD_NODE_ID=n2 >/dev/null
  node 7623 "${env[@]}" SWITCHBOARD_NODE_ID=n3 >/dev/null
  run direct-3 direct --url ws://127.0.0.1:7621/ws --url ws://127.0.0.1:7622/ws --url ws://127.0.0.1:7623/ws \
    --connections 1000 --rate "${DIRECT_RATE:-20000}" --duration 20s
}

# redis-cluster-3 PORT...: a Redis Cluster of those masters (no replicas), cluster bus on PORT+10, pinned to CPU 0
# like the single Redis; waits for cluster_state:ok.
redis_cluster() {
  local dir="$OUT/redis-cluster"; rm -rf "$dir"; mkdir -p "$dir"
  local addrs=()
  for port in "$@"; do
    taskset -c 0 redis-server --port "$port" --cluster-port $((port + 10)) --bind 127.0.0.1 --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" --dir "$dir" >"$OUT/redis-$port.log" 2>&1 &
    PIDS+=("$!"); addrs+=("127.0.0.1:$port")
  done
  sleep 0.3
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  for _ in $(seq 1 100); do
    redis-cli -p "$1" cluster info | grep -q cluster_state:ok && return 0; sleep 0.1
  done
  echo "the Redis Cluster did not come up" >&2; exit 1
}

# cluster-vs-one: the direct-3 load (1,000 logged-in users on three nodes sending to random others at DIRECT_RATE,
# 10k/s by default, 2/3 of them cross-node), first through one Redis, then through a 3-master Redis Cluster
# (sharded pub/sub), back to back on the same machine; the web sessions live in their own Redis either way.
cluster_vs_one() {
  local key; key="$(head -c 64 /dev/urandom | base64 -w0)"
  redis 7660; redis 7669
  local common=(SWITCHBOARD_SESSION_KEY="$key" SWITCHBOARD_DEMO=true SWITCHBOARD_SESSION_REDIS_URL=redis://127.0.0.1:7669)
  local pids=() rate="${DIRECT_RATE:-10000}"
  for backend in one cluster; do
    local env=("${common[@]}")
    if [ "$backend" = one ]; then
      env+=(SWITCHBOARD_REDIS_URL=redis://127.0.0.1:7660)
    else
      redis_cluster 7671 7672 7673
      env+=(SWITCHBOARD_REDIS_CLUSTER=redis://127.0.0.1:7671,redis://127.0.0.1:7672,redis://127.0.0.1:7673)
    fi
    pids=()
    for n in 1 2 3; do pids+=("$(node 766$n "${env[@]}" SWITCHBOARD_NODE_ID=n$n)"); done
    run "cluster-vs-one-$backend" direct --url ws://127.0.0.1:7661/ws --url ws://127.0.0.1:7662/ws \
      --url ws://127.0.0.1:7663/ws --connections 1000 --rate "$rate" --duration 20s
    for p in "${pids[@]}"; do stop "$p"; done
  done
}

redis_ceiling() {
  redis 7630
  echo "== redis-ceiling: redis-benchmark PUBLISH, 200-byte payload" | tee "$OUT/redis-ceiling.txt"
  local payload; payload="$(head -c 200 /dev/zero | tr '\0' x)"
  for pipeline in 1 32; do
    taskset -c 1 redis-benchmark -p 7630 -n 200000 -P "$pipeline" -q PUBLISH sb:bench "$payload" 2>/dev/null \
      | tr '\r' '\n' | grep -v '^$' | tail -1 | sed "s/^/pipeline $pipeline: /" | tee -a "$OUT/redis-ceiling.txt"
  done
}

case "${1:-all}" in
  fanout-1k) fanout_1k ;;
  fanout-10k) fanout_10k ;;
  floor-20) floor_ratio 20 ;;
  floor-300) floor_ratio 300 ;;
  floor-*) floor_ratio "${1#floor-}" ;;
  rss-5k) rss 5000 7603 ;;
  rss-15k) rss 15000 7604 ;;
  connect-redis) connect_redis ;;
  presence-5k) presence_5k ;;
  resume-100) resume_100 ;;
  direct-3) direct_3 ;;
  redis-ceiling) redis_ceiling ;;
  cluster-vs-one) cluster_vs_one ;;
  serializers) serializers ;;
  all) fanout_1k; fanout_10k; rss 5000 7603; rss 15000 7604; connect_redis; direct_3; redis_ceiling ;;
  *) sed -n '2,8p' "$0"; exit 2 ;;
esac
