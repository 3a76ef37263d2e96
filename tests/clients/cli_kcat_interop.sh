#!/usr/bin/env bash
# The shardlog CLI and kcat against one broker: what one produces the other consumes, keys
# land on the same partitions (librdkafka's murmur2_random partitioner is Kafka's), and
# `shardlog group describe` reports the lag of a kcat consumer group.
#
#   tests/clients/cli_kcat_interop.sh SHARDLOG_BINARY BOOTSTRAP
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 SHARDLOG_BINARY BOOTSTRAP" >&2
  exit 2
fi
SHARDLOG=$1
BOOTSTRAP=$2
export SHARDLOG_BOOTSTRAP=$BOOTSTRAP
RUN="$(date +%s%N)-$$"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TIMEOUT=60

fail() {
  echo "CLI/kcat interop FAILED: $*" >&2
  exit 1
}

kc() {
  timeout "$TIMEOUT" kcat -b "$BOOTSTRAP" "$@"
}

sl() {
  timeout "$TIMEOUT" "$SHARDLOG" "$@"
}

topic=cli-kcat-$RUN
sl topic create "$topic" -p 4 >/dev/null
for i in $(seq 1 40); do echo "key-$i:value-$i"; done >"$WORK/input"

# shardlog produces keyed records; kcat reads them back with their partitions.
sl produce "$topic" --key-separator : <"$WORK/input" >/dev/null
kc -C -t "$topic" -o beginning -e -q -f '%p %k %s\n' | sort >"$WORK/by-kcat"
[ "$(wc -l <"$WORK/by-kcat")" -eq 40 ] || fail "kcat read $(wc -l <"$WORK/by-kcat") of 40 records"

# kcat produces the same keys with Kafka's partitioner to a second topic: same partitions.
other=cli-kcat-other-$RUN
sl topic create "$other" -p 4 >/dev/null
kc -P -t "$other" -K: -X partitioner=murmur2_random <"$WORK/input"
sl consume "$other" -o start -e -f '%p %k %s\n' | sort >"$WORK/by-shardlog"
cmp -s "$WORK/by-kcat" "$WORK/by-shardlog" || {
  diff "$WORK/by-kcat" "$WORK/by-shardlog" | head -n 10 >&2
  fail "keys landed on different partitions with shardlog and with kcat"
}
echo "ok - shardlog and kcat agree on 40 keyed records and their partitions"

# A kcat consumer group commits; shardlog shows its offsets and lag.
group=kcat-group-$RUN
kc -G "$group" -c 40 -q -X auto.offset.reset=earliest -X enable.auto.commit=true "$other" >/dev/null
sl group describe "$group" --format json >"$WORK/group.json"
python3 - "$WORK/group.json" <<'PY' || fail "group describe of a kcat group: $(cat "$WORK/group.json")"
import json, sys
described = json.load(open(sys.argv[1]))
partitions = described["partitions"]
assert described["state"] in ("Empty", "Stable"), described["state"]
assert sum(p["log_end_offset"] for p in partitions) == 40, partitions
assert sum(p["committed_offset"] or 0 for p in partitions) == 40, partitions
assert described["total_lag"] == 0, described
PY
echo "ok - shardlog group describe reads a kcat group"
