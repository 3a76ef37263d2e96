#!/usr/bin/env bash
# Cluster figures with three release brokers on this machine (ports from the shipped layout
# shifted by PORT_BASE, default 19092): time to elect a controller at start and after kill -9
# of the controller, time to create 1,000 partitions over the three brokers (10 topics of 100
# through a broker that is not the controller) until every broker reports every partition
# led, and the metadata propagation delay (a change answered at the controller, until it is
# visible on each other broker; 200 samples). Results go to perf/results/cluster-DATE.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PORT_BASE=${PORT_BASE:-19092}
STAMP=$(date -u +%Y%m%d-%H%M%S)
WORK="$ROOT/perf/results/tmp/cluster-$STAMP"
OUT="$ROOT/perf/results/cluster-$STAMP.txt"
mkdir -p "$WORK"

cargo build --release --bin shardlog --example cluster_bench >&2
BIN="$ROOT/target/release/shardlog"
BENCH="$ROOT/target/release/examples/cluster_bench"

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

VOTERS="0@127.0.0.1:$PORT_BASE,1@127.0.0.1:$((PORT_BASE + 1)),2@127.0.0.1:$((PORT_BASE + 2))"
start() {
  local i=$1
  NO_COLOR=1 "$BIN" broker --override node.id="$i" \
    --override listeners="PLAINTEXT://127.0.0.1:$((PORT_BASE + i))" \
    --override controller.quorum.voters="$VOTERS" \
    --override log.dirs="$WORK/data-$i" --override metrics.listener=none \
    --override num.shards=1 --override shard.pinning=false \
    >>"$WORK/broker$i.out" 2>>"$WORK/broker$i.err" </dev/null &
  PIDS[$i]=$!
}
listening() { [ "$(grep -c '^shardlog broker listening' "$WORK/broker$1.out" 2>/dev/null)" -gt "$2" ]; }
# Waits (30 s at most) until broker $1 has printed more than $2 listening lines.
wait_listening() {
  for _ in $(seq 1 3000); do
    listening "$1" "$2" && return 0
    sleep 0.01
  done
  echo "broker $1 did not get ready; its log:" >&2
  tail -n 20 "$WORK/broker$1.err" >&2
  exit 1
}

{
  echo "# perf/cluster.sh $(date -u +%FT%TZ), $(nproc) cores, three brokers of one shard on one host"
  t0=$(date +%s%N)
  for i in 0 1 2; do start "$i"; done
  for i in 0 1 2; do wait_listening "$i" 0; done
  t1=$(date +%s%N)
  echo "start: all three brokers joined $(( (t1 - t0) / 1000000 )) ms after launch (controller election included)"

  ALL="127.0.0.1:$PORT_BASE,127.0.0.1:$((PORT_BASE + 1)),127.0.0.1:$((PORT_BASE + 2))"
  controller=$("$BENCH" controller "127.0.0.1:$PORT_BASE")
  other=$(( (controller + 1) % 3 ))
  third=$(( (controller + 2) % 3 ))
  echo "create: $("$BENCH" create "127.0.0.1:$((PORT_BASE + other))" "$ALL" 10 100)"
  echo "propagation: $("$BENCH" propagate "127.0.0.1:$((PORT_BASE + controller))" "127.0.0.1:$((PORT_BASE + other)),127.0.0.1:$((PORT_BASE + third))" 200)"

  for round in 1 2 3; do
    controller=$("$BENCH" controller "127.0.0.1:$PORT_BASE")
    survivor=$(( (controller + 1) % 3 ))
    kill -KILL "${PIDS[$controller]}"
    echo "failover $round: controller $controller killed; $("$BENCH" wait-controller "127.0.0.1:$((PORT_BASE + survivor))" "$controller")"
    before=$(grep -c '^shardlog broker listening' "$WORK/broker$controller.out")
    start "$controller"
    wait_listening "$controller" "$before"
  done
} | tee "$OUT"
echo "results in ${OUT#"$ROOT"/}" >&2
