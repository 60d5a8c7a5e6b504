#!/usr/bin/env bash
# Two servers measured in the same window: A and B both run on CPU 0 at the same time, each under its own load
# client on CPU 1 (1,000 subscribers, RATE publishes/s, 100-byte payload, 20 s). Both see the same machine —
# whatever else it is doing at that moment — so their ratio varies far less than that of runs made one after
# the other (same binary on both sides: 0.98-1.04). Ports are swapped every round.
#
#   load/together.sh A B [ROUNDS] [RATE]
#
# A and B are server binaries: a switchboard build (run on its embedded default) or the bare-write floor
# (a path containing "floor": ../shared/bench/floor, built as load/bench.sh says). Prints, per round, each one's
# server CPU-s per million deliveries and B/A. Uses ports 7700-7799 on 127.0.0.1; stops what it started.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LOAD="${CARGO_TARGET_DIR:-$ROOT/target}/release/switchboard-load"
OUT="$ROOT/load/results"
mkdir -p "$OUT"
A="$1"; B="$2"; ROUNDS="${3:-4}"; RATE="${4:-20}"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# start BIN PORT NAME: the server pinned to CPU 0; prints its pid.
start() {
  if [[ "$1" == *floor* ]]; then
    taskset -c 0 "$1" "$2" >"$OUT/together-$3.log" 2>&1 &
  else
    SWITCHBOARD_BIND="127.0.0.1:$2" RUST_LOG=warn taskset -c 0 "$1" >"$OUT/together-$3.log" 2>&1 &
  fi
  echo $!
}

cpu() { grep server_cpu_s_per_million "$1" | awk '{print $2}'; }

for round in $(seq 1 "$ROUNDS"); do
  base=$((7700 + 2 * round))
  if (( round % 2 )); then pa=$base; pb=$((base + 1)); else pa=$((base + 1)); pb=$base; fi
  sa=$(start "$A" "$pa" a); sb=$(start "$B" "$pb" b); PIDS+=("$sa" "$sb")
  sleep 1.5
  for side in a b; do
    if [ "$side" = a ]; then port=$pa; pid=$sa; else port=$pb; pid=$sb; fi
    taskset -c 1 "$LOAD" fanout --url "ws://127.0.0.1:$port/ws" --connections 1000 --rate "$RATE" --duration 20s \
      --payload 100 --server-pid "$pid" >"$OUT/together-load-$side.txt" 2>&1 &
    PIDS+=("$!")
  done
  wait "${PIDS[@]: -2}"
  kill "$sa" "$sb" 2>/dev/null || true
  wait "$sa" "$sb" 2>/dev/null || true
  ca=$(cpu "$OUT/together-load-a.txt"); cb=$(cpu "$OUT/together-load-b.txt")
  if [ -z "$ca" ] || [ -z "$cb" ]; then
    echo "round $round: no figure (see $OUT/together-load-a.txt and -b.txt)" >&2; exit 1
  fi
  echo "round $round  A $ca  B $cb  B/A $(awk -v a="$ca" -v b="$cb" 'BEGIN { printf "%.3f", b / a }')"
done
