#!/usr/bin/env bash
# The standard workloads of `shardlog bench` (after the OpenMessaging Benchmark runs that
# Kafka and Redpanda publish: 1 KiB messages, acks=all, linger 1 ms, batches of 128 KiB, one
# topic), each against a fresh one-shard release broker. Writes
# perf/results/bench-<workload>-<date>/: JSON, .hgrm and .svg of every run, and run.txt with
# the exact commands, the commit, nproc and the kernel.
#
#   bash perf/bench.sh WORKLOAD        (from anywhere)
#
# Workloads:
#   1k-1p, 1k-8p, 1k-64p   produce 1 KiB messages to 1, 8 or 64 partitions for DURATION
#                          seconds (closed loop: as fast as acknowledgements allow), then
#                          consume everything from the start
#   100b-8p                the same with 100-byte messages, 8 partitions
#   latency-1k-8p          end-to-end latency at a fixed rate (RATE messages/s, open loop),
#                          1 KiB, 8 partitions
#
# Environment: DURATION (s, default 15), WARMUP (s, default 3), RATE (msg/s, default 5000),
# PRODUCERS and CONSUMERS (default 1 each), SHARDS (broker shards, default 1),
# BASELINE=rdkafka (throughput workloads: also run librdkafka's rdkafka_performance with the
# same settings and count, on a second topic, and give the ratio), CLIENT_BEFORE=PATH (throughput
# workloads: also run the produce with the `shardlog` binary at PATH as the client, against the
# same broker, on a third topic: an earlier build of our client, measured in the same run;
# CLIENT_BEFORE_LABEL names it in the report).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

WORKLOAD=${1:-}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
RATE=${RATE:-5000}
PRODUCERS=${PRODUCERS:-1}
CONSUMERS=${CONSUMERS:-1}
SHARDS=${SHARDS:-1}
BASELINE=${BASELINE:-}
CLIENT_BEFORE=${CLIENT_BEFORE:-}

case "$WORKLOAD" in
  1k-1p) KIND=throughput SIZE=1024 PARTITIONS=1 ;;
  1k-8p) KIND=throughput SIZE=1024 PARTITIONS=8 ;;
  1k-64p) KIND=throughput SIZE=1024 PARTITIONS=64 ;;
  100b-8p) KIND=throughput SIZE=100 PARTITIONS=8 ;;
  latency-1k-8p) KIND=latency SIZE=1024 PARTITIONS=8 ;;
  *)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=$ROOT/perf/results/bench-$WORKLOAD-$STAMP
# Kept on the repository's file system: the log uses O_DIRECT, which tmpfs does not support.
WORK=$ROOT/perf/results/tmp/bench-$WORKLOAD-$STAMP
mkdir -p "$OUT" "$WORK"

echo "== building the broker and the bench tool (release)" >&2
cargo build --release --bin shardlog
BIN=$ROOT/target/release/shardlog
if [ "$BASELINE" = rdkafka ]; then
  cargo fetch -q
  RDPERF=$(bash "$ROOT/../shared/tools/build-rdperf.sh" | tail -n 1)
  [ -x "$RDPERF" ] || { echo "rdkafka_performance was not built: $RDPERF" >&2; exit 1; }
fi

# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"
trap cleanup EXIT

BROKER_CMD=("$BIN" broker
  --override "log.dirs=$WORK/data"
  --override listeners=PLAINTEXT://127.0.0.1:0
  --override "num.shards=$SHARDS"
  --override metrics.listener=none)
start_broker

TOPIC=bench-$WORKLOAD-$STAMP
# The settings of the OMB Kafka/Redpanda driver runs.
PRODUCER=(--size "$SIZE" --acks all --linger-ms 1 --batch-bytes 131072 --producers "$PRODUCERS")
COMMANDS=()

# Runs `shardlog bench VERB ARGS...`, writing $OUT/NAME.{json,hgrm,svg,log}.
bench() {
  local name=$1 verb=$2
  shift 2
  local command=("$BIN" bench --bootstrap "$BOOTSTRAP" "$verb" "$@"
    --json "$OUT/$name.json" --hgrm "$OUT/$name.hgrm" --svg "$OUT/$name.svg")
  COMMANDS+=("${command[*]}")
  echo "== $name: shardlog bench $verb $*" >&2
  "${command[@]}" 2> >(tee "$WORK/$name.progress" >&2) | tee "$OUT/$name.log"
}

case "$KIND" in
  throughput)
    bench produce produce --topic "$TOPIC" --partitions "$PARTITIONS" "${PRODUCER[@]}" \
      --duration "$DURATION" --warmup "$WARMUP"
    bench consume consume --topic "$TOPIC" --size "$SIZE" --consumers "$CONSUMERS"
    ;;
  latency)
    bench e2e e2e --topic "$TOPIC" --partitions "$PARTITIONS" "${PRODUCER[@]}" \
      --consumers "$CONSUMERS" --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP"
    ;;
esac

BASELINE_LINE=
if [ "$BASELINE" = rdkafka ] && [ "$KIND" = throughput ]; then
  # The same count as our run produced, so both runs write the same amount.
  COUNT=$(sed -n 's/^  "total_messages": \([0-9]*\),$/\1/p' "$OUT/produce.json")
  # rdkafka_performance creates no topic; one of ours with the same partitions.
  "$BIN" topic create "$TOPIC-rdkafka" -p "$PARTITIONS" --bootstrap "$BOOTSTRAP" >/dev/null
  RDCMD=("$RDPERF" -P -t "$TOPIC-rdkafka" -s "$SIZE" -c "$COUNT" -a -1
    -X linger.ms=1 -X batch.size=131072 -X enable.idempotence=false -b "$BOOTSTRAP" -u)
  COMMANDS+=("${RDCMD[*]}")
  echo "== baseline: rdkafka_performance -P, $COUNT messages" >&2
  "${RDCMD[@]}" >"$OUT/rdkafka.log" 2>&1 || { tail -n 20 "$OUT/rdkafka.log" >&2; exit 1; }
  # Final row: | elapsed(ms) | msgs | bytes | rtt | dr | dr_m/s | dr_MB/s | dr_err | ...
  RD_ROW=$(grep -E '^\| +[0-9]+ ' "$OUT/rdkafka.log" | tail -n 1)
  RD_MSGS=$(echo "$RD_ROW" | awk -F'|' '{ gsub(/ /, "", $7); print $7 }')
  OURS=$(sed -n 's/^  "throughput_msgs_per_s": \([0-9.]*\),$/\1/p' "$OUT/produce.json")
  BASELINE_LINE=$(awk -v o="$OURS" -v r="$RD_MSGS" \
    'BEGIN { printf "produce msg/s: shardlog bench %.0f, rdkafka_performance %.0f, ratio %.3f", o, r, (r > 0) ? o / r : 0 }')
fi

BEFORE_LINE=
if [ -n "$CLIENT_BEFORE" ] && [ "$KIND" = throughput ]; then
  BEFORE_CMD=("$CLIENT_BEFORE" bench --bootstrap "$BOOTSTRAP" produce --topic "$TOPIC-before"
    --partitions "$PARTITIONS" "${PRODUCER[@]}" --duration "$DURATION" --warmup "$WARMUP"
    --json "$OUT/produce-before.json")
  COMMANDS+=("${BEFORE_CMD[*]}")
  echo "== the earlier client: $CLIENT_BEFORE bench produce" >&2
  "${BEFORE_CMD[@]}" 2>"$WORK/produce-before.progress" | tee "$OUT/produce-before.log"
  NOW=$(sed -n 's/^  "throughput_msgs_per_s": \([0-9.]*\),$/\1/p' "$OUT/produce.json")
  THEN=$(sed -n 's/^  "throughput_msgs_per_s": \([0-9.]*\),$/\1/p' "$OUT/produce-before.json")
  BEFORE_LINE=$(awk -v n="$NOW" -v b="$THEN" \
    'BEGIN { printf "produce msg/s: this client %.0f, the earlier client %.0f, ratio %.3f", n, b, (b > 0) ? n / b : 0 }')
fi

echo "== stopping the broker" >&2
stop_broker

DIRTY=$(git status --porcelain -- src Cargo.toml Cargo.lock | wc -l)
{
  echo "# bench $WORKLOAD $STAMP"
  echo
  for name in produce consume e2e; do
    [ -f "$OUT/$name.log" ] || continue
    echo "## $name"
    cat "$OUT/$name.log"
    echo
  done
  if [ -n "$BASELINE_LINE" ]; then
    echo "## baseline (same broker, same run)"
    echo "$BASELINE_LINE"
    echo
  fi
  if [ -n "$BEFORE_LINE" ]; then
    echo "## the earlier client (same broker, same run): ${CLIENT_BEFORE_LABEL:-$CLIENT_BEFORE}"
    echo "$BEFORE_LINE"
    echo
  fi
  echo "## Environment"
  echo "git rev-parse HEAD: $(git rev-parse HEAD)"
  echo "uncommitted changes under src/, Cargo.toml, Cargo.lock: $DIRTY files"
  echo "nproc: $(nproc)"
  echo "uname -r: $(uname -r)"
  echo "broker shards: $SHARDS; broker exit status after SIGTERM: $BROKER_EXIT"
  echo
  echo "## Commands"
  echo "cargo build --release --bin shardlog"
  echo "${BROKER_CMD[*]/$WORK/\$WORK}"
  for c in "${COMMANDS[@]}"; do echo "${c//$ROOT\//}"; done
} >"$OUT/run.txt"

cat "$OUT/run.txt" | sed -n '1,/^## Environment/p' | sed '$d'
echo "wrote ${OUT#"$ROOT"/}/"
