#!/usr/bin/env bash
# Smoke test of a running broker with kcat (Debian's package, librdkafka inside).
#
#   tests/clients/kcat_smoke.sh BOOTSTRAP      e.g. 127.0.0.1:9092
#
# Relies on topic auto-creation. Every topic name is unique to the run, and
# every write and read goes to partition 0, so the checks hold whatever
# num.partitions the broker runs with.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BOOTSTRAP" >&2
  exit 2
fi
BOOTSTRAP=$1
RUN="$(date +%s%N)-$$"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# A hung broker must not hang the test.
KCAT_TIMEOUT=${KCAT_TIMEOUT:-60}
passed=0

fail() {
  echo "kcat smoke test FAILED: $*" >&2
  exit 1
}

pass() {
  passed=$((passed + 1))
  echo "ok - $*"
}

kc() {
  timeout "$KCAT_TIMEOUT" kcat -b "$BOOTSTRAP" "$@"
}

# Compares two files; on a mismatch shows the first differing lines and fails.
same() {
  local what=$1 expected=$2 actual=$3
  if ! diff -u "$expected" "$actual" >"$WORK/diff" 2>&1; then
    head -n 20 "$WORK/diff" >&2
    fail "$what: output differs from what was produced"
  fi
}

count_is() {
  local what=$1 expected=$2 file=$3 actual
  actual=$(wc -l <"$file")
  [ "$actual" -eq "$expected" ] || fail "$what: expected $expected messages, got $actual"
}

command -v kcat >/dev/null || fail "kcat is not installed (apt-get install kcat)"

# Metadata first: the broker must answer and list itself.
kc -L >"$WORK/metadata" 2>&1 || { cat "$WORK/metadata" >&2; fail "metadata request to $BOOTSTRAP failed"; }
grep -q "brokers:" "$WORK/metadata" || fail "metadata from $BOOTSTRAP lists no brokers"
pass "metadata"

# Keyed messages with headers.
topic="kcat-keyed-$RUN"
for i in $(seq 1 100); do
  printf 'key-%03d:value %03d of the keyed set\n' "$i" "$i"
done >"$WORK/keyed.in"
kc -P -t "$topic" -p 0 -K: -H trace=smoke -H origin=kcat <"$WORK/keyed.in" \
  || fail "producing keyed messages to $topic"
pass "produce 100 keyed messages with headers to $topic"

kc -C -t "$topic" -p 0 -o beginning -e -q -f '%k=%s %h\n' >"$WORK/keyed.out" \
  || fail "consuming $topic"
count_is "$topic" 100 "$WORK/keyed.out"
sed -e 's/^\([^:]*\):\(.*\)$/\1=\2 trace=smoke,origin=kcat/' "$WORK/keyed.in" >"$WORK/keyed.expected"
same "$topic keys, values and headers" "$WORK/keyed.expected" "$WORK/keyed.out"
pass "consume $topic: 100 keys, values and headers round-trip"

kc -C -t "$topic" -p 0 -o 50 -c 5 -q -f '%o %k=%s\n' >"$WORK/keyed.middle" \
  || fail "consuming $topic from offset 50"
count_is "$topic from offset 50" 5 "$WORK/keyed.middle"
first=$(head -n 1 "$WORK/keyed.middle")
[ "$first" = "50 key-051=value 051 of the keyed set" ] \
  || fail "$topic from offset 50: first message is '$first'"
pass "consume $topic from offset 50"

# One topic per compression codec.
for codec in none gzip snappy lz4 zstd; do
  topic="kcat-$codec-$RUN"
  for i in $(seq 1 200); do
    printf '%s message %04d: the quick brown fox jumps over the lazy dog %s\n' "$codec" "$i" "$codec"
  done >"$WORK/$codec.in"
  kc -P -t "$topic" -p 0 -z "$codec" <"$WORK/$codec.in" \
    || fail "producing $codec-compressed messages to $topic"
  pass "produce 200 $codec messages to $topic"

  kc -C -t "$topic" -p 0 -o beginning -e -q -f '%s\n' >"$WORK/$codec.out" \
    || fail "consuming $topic"
  count_is "$topic" 200 "$WORK/$codec.out"
  same "$topic values" "$WORK/$codec.in" "$WORK/$codec.out"
  pass "consume $topic: 200 values round-trip"

  kc -C -t "$topic" -p 0 -o 100 -c 5 -q -f '%o %s\n' >"$WORK/$codec.middle" \
    || fail "consuming $topic from offset 100"
  count_is "$topic from offset 100" 5 "$WORK/$codec.middle"
  first=$(head -n 1 "$WORK/$codec.middle")
  expected="100 $(sed -n 101p "$WORK/$codec.in")"
  [ "$first" = "$expected" ] || fail "$topic from offset 100: first message is '$first', expected '$expected'"
  pass "consume $topic from offset 100"

  # Offsets by timestamp: 0 finds the first message, -1 (latest) the end of the log.
  kc -Q -t "$topic:0:0" >"$WORK/$codec.q0" 2>&1 || { cat "$WORK/$codec.q0" >&2; fail "offset query on $topic"; }
  grep -q "\[0\] offset 0\$" "$WORK/$codec.q0" \
    || fail "$topic: timestamp 0 should give offset 0, got: $(cat "$WORK/$codec.q0")"
  kc -Q -t "$topic:0:-1" >"$WORK/$codec.qend" 2>&1 || { cat "$WORK/$codec.qend" >&2; fail "offset query on $topic"; }
  grep -q "\[0\] offset 200\$" "$WORK/$codec.qend" \
    || fail "$topic: latest offset should be 200, got: $(cat "$WORK/$codec.qend")"
  pass "offset queries on $topic"
done

# A balanced consumer (-G): it joins a group, and a second run resumes where the first one's
# commits left off.
group="kcat-group-$$"
group_topic="kcat-grouped-$$"
seq 1 50 | kc -P -t "$group_topic" || fail "producing to $group_topic"
kc -G "$group" -X auto.offset.reset=earliest -e -q -f '%s\n' "$group_topic" >"$WORK/group.1" \
  || fail "balanced consume of $group_topic"
seq 1 50 >"$WORK/group.1.want"
same "first balanced consume" "$WORK/group.1.want" "$WORK/group.1"
pass "balanced consumer in group $group reads all 50 messages"
seq 51 60 | kc -P -t "$group_topic" || fail "producing to $group_topic"
kc -G "$group" -X auto.offset.reset=earliest -e -q -f '%s\n' "$group_topic" >"$WORK/group.2" \
  || fail "second balanced consume of $group_topic"
seq 51 60 >"$WORK/group.2.want"
same "resumed balanced consume" "$WORK/group.2.want" "$WORK/group.2"
pass "a second run in group $group resumes at the committed offset"

echo "kcat: $passed passed, 0 failed"
