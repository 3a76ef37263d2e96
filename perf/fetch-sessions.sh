#!/usr/bin/env bash
# Fetch sessions (KIP-227) on vs off, in one run against one broker: a kafka-python consumer
# of 1,000 partitions catching up on 50 records per partition, then following a 200
# records/s tail, first with sessions off (every fetch lists every partition), then on
# (incremental fetches). Prints the fetch requests, their bytes and the broker's CPU time per
# record (perf/fetch_sessions.py); writes perf/results/fetch-sessions-<date>.txt.
#
#   bash perf/fetch-sessions.sh        Environment: PARTITIONS (1000), RECORDS (50), TAIL_S (10)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
PARTITIONS=${PARTITIONS:-1000}
RECORDS=${RECORDS:-50}
TAIL_S=${TAIL_S:-10}
STAMP=$(date -u +%Y%m%d-%H%M%S)
RESULTS=$ROOT/perf/results
RESULT=$RESULTS/fetch-sessions-$STAMP.txt
WORK=$RESULTS/tmp/fetch-sessions-$STAMP
mkdir -p "$WORK"

python3 -c 'import kafka' 2>/dev/null || {
  echo "needs kafka-python 3.x: python3 -m pip install kafka-python" >&2
  exit 1
}

echo "== building (release)" >&2
cargo build --release --bin shardlog
BROKER_BIN=$ROOT/target/release/shardlog

# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"
trap cleanup EXIT

# One shard: all 1,000 partitions and the consumer's connection on one core.
BROKER_CMD=("$BROKER_BIN" broker
  --override "log.dirs=$WORK/data"
  --override listeners=PLAINTEXT://127.0.0.1:0
  --override num.shards=1
  --override shard.pinning=false
  --override metrics.listener=none)
start_broker

{
  echo "# bash perf/fetch-sessions.sh ($(git rev-parse --short HEAD), $(date -u +%FT%TZ))"
  echo "# kafka-python $(python3 -c 'import kafka; print(kafka.__version__)'), $(nproc) cores"
  python3 perf/fetch_sessions.py "$BOOTSTRAP" "$BROKER_PID" "$PARTITIONS" "$RECORDS" "$TAIL_S"
} | tee "$RESULT"
echo "wrote ${RESULT#"$ROOT"/}" >&2
