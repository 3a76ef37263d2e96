#!/usr/bin/env bash
# Produce throughput of 1 KiB messages with acks=all (every answer after
# fdatasync), against the same run with acks=0 as the baseline, measured with
# librdkafka's rdkafka_performance on loopback. Writes
# perf/results/produce-1k-acks-all-<date>.txt.
#
#   bash perf/produce-1k-acks-all.sh            (from anywhere)
#
# Environment: MESSAGES (default 2000000), PARTITIONS (default 8), SHARDS (default 1).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

MESSAGES=${MESSAGES:-2000000}
PARTITIONS=${PARTITIONS:-8}
SHARDS=${SHARDS:-1}
SIZE=1024
STAMP=$(date -u +%Y%m%d-%H%M%S)
RESULTS=$ROOT/perf/results
RESULT=$RESULTS/produce-1k-acks-all-$STAMP.txt
# Kept on the same file system as the repo: the log uses O_DIRECT, which tmpfs does not support.
WORK=$RESULTS/tmp/produce-1k-acks-all-$STAMP
mkdir -p "$WORK"

echo "== fetching crate sources (for librdkafka's source)" >&2
cargo fetch -q

echo "== building rdkafka_performance" >&2
RDPERF=$(bash "$ROOT/../shared/tools/build-rdperf.sh" | tail -n 1)
[ -x "$RDPERF" ] || { echo "rdkafka_performance was not built: $RDPERF" >&2; exit 1; }

echo "== building the broker (release)" >&2
cargo build --release --bin shardlog
BROKER_BIN=$ROOT/target/release/shardlog

# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"
trap cleanup EXIT

BROKER_CMD=("$BROKER_BIN" broker
  --override "log.dirs=$WORK/data"
  --override listeners=PLAINTEXT://127.0.0.1:0
  --override "num.shards=$SHARDS"
  --override "num.partitions=$PARTITIONS"
  --override metrics.listener=none)

start_broker

# One topic per run, auto-created with $PARTITIONS partitions on first metadata request.
# Sets PRODUCE to the rdkafka_performance command line for one run.
produce_cmd() {
  local acks=$1 topic=$2
  PRODUCE=("$RDPERF" -P -t "$topic" -s "$SIZE" -c "$MESSAGES" -a "$acks"
    -X linger.ms=1 -X batch.size=131072 -X enable.idempotence=false
    -b "$BOOTSTRAP" -u)
}
run_produce() {
  local acks=$1 topic=$2 log=$3
  echo "== producing $MESSAGES x $SIZE B with acks=$acks to $topic" >&2
  produce_cmd "$acks" "$topic"
  "${PRODUCE[@]}" >"$log" 2>&1 || {
    tail -n 20 "$log" >&2
    echo "rdkafka_performance failed (acks=$acks)" >&2
    exit 1
  }
}

ACKS_ALL_TOPIC=perf-1k-acks-all-$STAMP
ACKS_0_TOPIC=perf-1k-acks-0-$STAMP
run_produce -1 "$ACKS_ALL_TOPIC" "$WORK/acks-all.log"
run_produce 0 "$ACKS_0_TOPIC" "$WORK/acks-0.log"

# With -u the tool prints a table; its last row is the final tally:
# | elapsed(ms) | msgs | bytes | rtt | dr | dr_m/s | dr_MB/s | dr_err | tx_err | outq | offset |
header() { grep -E '^\| +elapsed' "$1" | head -n 1; }
final_row() { grep -E '^\| +[0-9]+ ' "$1" | tail -n 1; }
column() { final_row "$1" | awk -F'|' -v c="$2" '{ gsub(/ /, "", $(c + 1)); print $(c + 1) }'; }
# dr_err counts failed deliveries; tx_err only counts local queue-full retries (backpressure).
check_run() {
  local log=$1 acks=$2 delivered failed
  [ -n "$(final_row "$log")" ] || { echo "no final row in rdkafka_performance's output (acks=$acks)" >&2; exit 1; }
  delivered=$(column "$log" 5)
  failed=$(column "$log" 8)
  if [ "$delivered" -ne "$MESSAGES" ] || [ "$failed" -ne 0 ]; then
    echo "acks=$acks: $delivered of $MESSAGES delivered, $failed failed deliveries" >&2
    exit 1
  fi
}
check_run "$WORK/acks-all.log" all
check_run "$WORK/acks-0.log" 0
ALL_MSGS=$(column "$WORK/acks-all.log" 6)
ALL_MB=$(column "$WORK/acks-all.log" 7)
ALL_MS=$(column "$WORK/acks-all.log" 1)
ZERO_MSGS=$(column "$WORK/acks-0.log" 6)
ZERO_MB=$(column "$WORK/acks-0.log" 7)
ZERO_MS=$(column "$WORK/acks-0.log" 1)
RATIO=$(awk -v a="$ALL_MSGS" -v z="$ZERO_MSGS" 'BEGIN { printf "%.3f", (z > 0) ? a / z : 0 }')

# Consume the acks=all topic from the start on every partition: the older part of it comes
# from O_DIRECT reads (the tail cache holds batch.cache.bytes, 256 MiB by default).
consume_cmd() {
  CONSUME=("$RDPERF" -C -t "$1")
  for p in $(seq 0 $((PARTITIONS - 1))); do CONSUME+=(-p "$p"); done
  CONSUME+=(-o beginning -c "$MESSAGES" -b "$BOOTSTRAP" -u)
}
echo "== consuming $MESSAGES from $ACKS_ALL_TOPIC" >&2
consume_cmd "$ACKS_ALL_TOPIC"
"${CONSUME[@]}" >"$WORK/consume.log" 2>&1 || { tail -n 20 "$WORK/consume.log" >&2; exit 1; }
# Consumer rows: | elapsed(ms) | msgs | bytes | rtt | m/s | MB/s | rx_err | offset |
CONSUMED=$(column "$WORK/consume.log" 2)
[ "$CONSUMED" -eq "$MESSAGES" ] || { echo "consumed $CONSUMED of $MESSAGES" >&2; exit 1; }
CONSUME_MSGS=$(column "$WORK/consume.log" 5)
CONSUME_MB=$(column "$WORK/consume.log" 6)
CONSUME_MS=$(column "$WORK/consume.log" 1)

echo "== stopping the broker" >&2
stop_broker
rc=$BROKER_EXIT

DIRTY=$(git status --porcelain -- src Cargo.toml Cargo.lock | wc -l)
{
  echo "# produce-1k-acks-all $STAMP"
  echo
  echo "$MESSAGES messages of $SIZE bytes to $PARTITIONS partitions, $SHARDS broker shard(s), loopback"
  echo "acks=all: $ALL_MSGS msgs/s, $ALL_MB MB/s ($ALL_MS ms)"
  echo "acks=0:   $ZERO_MSGS msgs/s, $ZERO_MB MB/s ($ZERO_MS ms)"
  echo "ratio acks=all / acks=0 (msgs/s): $RATIO"
  echo "consume from the start: $CONSUME_MSGS msgs/s, $CONSUME_MB MB/s ($CONSUME_MS ms)"
  echo
  echo "## Environment"
  echo "git rev-parse HEAD: $(git rev-parse HEAD)"
  echo "uncommitted changes under src/, Cargo.toml, Cargo.lock: $DIRTY files"
  echo "nproc: $(nproc)"
  echo "uname -r: $(uname -r)"
  echo "rdkafka_performance: librdkafka $("$RDPERF" -h 2>&1 | sed -n 's/^librdkafka version \([^ ]*\).*/\1/p')"
  echo "broker exit status after SIGTERM: $rc"
  echo
  echo "## Commands"
  echo "bash ../shared/tools/build-rdperf.sh"
  echo "cargo build --release --bin shardlog"
  echo "${BROKER_CMD[*]/$WORK/\$WORK}"
  produce_cmd -1 "$ACKS_ALL_TOPIC"
  echo "${PRODUCE[*]}"
  produce_cmd 0 "$ACKS_0_TOPIC"
  echo "${PRODUCE[*]}"
  consume_cmd "$ACKS_ALL_TOPIC"
  echo "${CONSUME[*]}"
  echo
  echo "## rdkafka_performance, acks=all (-a -1): header and final row"
  header "$WORK/acks-all.log"
  final_row "$WORK/acks-all.log"
  echo
  echo "## rdkafka_performance, acks=all (-a -1): full output"
  cat "$WORK/acks-all.log"
  echo
  echo "## rdkafka_performance, acks=0 (-a 0): header and final row"
  header "$WORK/acks-0.log"
  final_row "$WORK/acks-0.log"
  echo
  echo "## rdkafka_performance, acks=0 (-a 0): full output"
  cat "$WORK/acks-0.log"
  echo
  echo "## rdkafka_performance, consume: header and final row"
  header "$WORK/consume.log"
  final_row "$WORK/consume.log"
} >"$RESULT"

echo "acks=all: $ALL_MSGS msgs/s, $ALL_MB MB/s; acks=0: $ZERO_MSGS msgs/s, $ZERO_MB MB/s; ratio $RATIO"
echo "consume from the start: $CONSUME_MSGS msgs/s, $CONSUME_MB MB/s"
echo "wrote ${RESULT#"$ROOT"/}"
