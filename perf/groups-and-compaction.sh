#!/usr/bin/env bash
# Consumer groups and compaction, measured with librdkafka (perf/group_bench.rs):
#  - rebalance time of a group of 8 consumers on 64 partitions (initial, and one member
#    leaving while another joins);
#  - OffsetCommit latency and rate, against synchronous acks=all produce in the same run;
#  - produce p99 on a shard while its cleaner compacts a large topic, against the same
#    measurement with the cleaner idle.
# Writes perf/results/groups-and-compaction-<date>.txt.
#
#   bash perf/groups-and-compaction.sh        Environment: FILL_MB (default 512)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
FILL_MB=${FILL_MB:-512}
STAMP=$(date -u +%Y%m%d-%H%M%S)
RESULTS=$ROOT/perf/results
RESULT=$RESULTS/groups-and-compaction-$STAMP.txt
WORK=$RESULTS/tmp/groups-and-compaction-$STAMP
mkdir -p "$WORK"

echo "== building (release)" >&2
cargo build --release --bin shardlog --example group_bench
BROKER_BIN=$ROOT/target/release/shardlog
BENCH=$ROOT/target/release/examples/group_bench

# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"
trap cleanup EXIT

# One shard, so that the cleaner and the measured produce share a core.
BROKER_CMD=("$BROKER_BIN" broker
  --override "log.dirs=$WORK/data"
  --override listeners=PLAINTEXT://127.0.0.1:0
  --override num.shards=1
  --override group.initial.rebalance.delay.ms=0
  --override log.cleaner.backoff.ms=100
  --override metrics.listener=none)
start_broker

echo "== rebalance" >&2
"$BENCH" rebalance "$BOOTSTRAP" | tee "$WORK/rebalance.txt" >&2
echo "== commit" >&2
"$BENCH" commit "$BOOTSTRAP" | tee "$WORK/commit.txt" >&2

echo "== coordinator load: restart and replay __consumer_offsets" >&2
stop_broker
start_broker
for _ in $(seq 1 300); do
  grep -q "offsets partition loaded" "$WORK/broker.stderr" && break
  sleep 0.1
done
LOAD=$(grep "offsets partition loaded" "$WORK/broker.stderr" | sed 's/.*partition=/partition=/; s/\x1b\[[0-9;]*m//g')
[ -n "$LOAD" ] || { echo "no offsets partition was loaded" >&2; exit 1; }

echo "== compaction: fill $FILL_MB MB (not yet cleanable), then measure" >&2
"$BENCH" fill "$BOOTSTRAP" compact-bench "$FILL_MB" | tee "$WORK/fill.txt" >&2
"$BENCH" latency "$BOOTSTRAP" probe 5 | tee "$WORK/idle.txt" >&2
MARK=$(wc -l <"$WORK/broker.stderr")
CLEANABLE=(cleanup.policy=compact segment.bytes=16777216 min.cleanable.dirty.ratio=0.01
  min.compaction.lag.ms=0)
"$BENCH" alter "$BOOTSTRAP" compact-bench "${CLEANABLE[@]}"
"$BENCH" latency "$BOOTSTRAP" probe 5 | tee "$WORK/cleaning.txt" >&2
# The pass must have overlapped the measurement: wait for it and report its duration.
for _ in $(seq 1 600); do
  tail -n +"$MARK" "$WORK/broker.stderr" | grep -q "compacted log=.*compact-bench-0" && break
  sleep 0.1
done
PASS=$(tail -n +"$MARK" "$WORK/broker.stderr" | grep "compacted log=.*compact-bench-0" | head -n 1 | sed 's/.*compacted //; s/\x1b\[[0-9;]*m//g')
[ -n "$PASS" ] || { echo "no compaction pass was logged" >&2; exit 1; }

p99() { sed -n 's/.* p99=\([0-9.]*\) ms.*/\1/p' "$1"; }
RATIO=$(awk -v a="$(p99 "$WORK/cleaning.txt")" -v b="$(p99 "$WORK/idle.txt")" 'BEGIN { printf "%.2f", a / b }')

echo "== stopping the broker" >&2
stop_broker

{
  echo "# groups-and-compaction $STAMP"
  echo
  echo "## Rebalance (8 consumers, 64 partitions, librdkafka, heartbeat.interval.ms=100)"
  cat "$WORK/rebalance.txt"
  echo
  echo "## Offset commits"
  cat "$WORK/commit.txt"
  echo
  echo "## Coordinator load after a restart (the commits above, replayed from __consumer_offsets)"
  echo "$LOAD"
  echo
  echo "## Produce latency while compacting (1 shard)"
  cat "$WORK/fill.txt"
  echo "cleaner idle:    $(cat "$WORK/idle.txt")"
  echo "cleaner running: $(cat "$WORK/cleaning.txt")"
  echo "p99 ratio running / idle: $RATIO"
  echo "the pass: $PASS"
  echo
  echo "## Environment"
  echo "git rev-parse HEAD: $(git rev-parse HEAD)"
  echo "uncommitted changes under src/, perf/, Cargo.toml: $(git status --porcelain -- src perf Cargo.toml | wc -l) files"
  echo "nproc: $(nproc)"
  echo "uname -r: $(uname -r)"
  echo "broker exit status after SIGTERM: $BROKER_EXIT"
  echo
  echo "## Commands"
  echo "cargo build --release --bin shardlog --example group_bench"
  echo "${BROKER_CMD[*]/$WORK/\$WORK}"
  echo "group_bench rebalance \$BOOTSTRAP; group_bench commit \$BOOTSTRAP"
  echo "group_bench fill \$BOOTSTRAP compact-bench $FILL_MB; group_bench latency \$BOOTSTRAP probe 5"
  echo "group_bench alter \$BOOTSTRAP compact-bench ${CLEANABLE[*]}; group_bench latency \$BOOTSTRAP probe 5"
} >"$RESULT"
echo "results: ${RESULT#"$ROOT"/}" >&2
cat "$RESULT"
