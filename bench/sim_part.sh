#!/bin/bash
# bench/sim_part.sh -- sourced by the parts of `make bench` that run against yagna-sim (e2e.sh,
# scale.sh) after setting PART (the raw lines' tag) and PROG (their bench program in $BIN):
# a work directory $E, PIDS stopped on exit (each by its own pid), pending() for a part that
# cannot run, the stand-in's dependencies, and the bench calc image in $E/images/bench-calc
# (the calc server plus bench_server.py, its TCP_NODELAY wrapper: see there).
E=$OUT/$PART
mkdir -p "$E/images"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM
pending() { echo "$PART pending=1 reason=\"$*\"" >>"$RAW"; exit 0; }

[ -d tests/yagna-sim/node_modules/ws ] ||
  (cd tests/yagna-sim && npm ci --no-audit --no-fund --loglevel=error) >"$E/npm.log" 2>&1 ||
  pending "yagna-sim dependencies could not be installed"
[ -x "$BIN/$PROG" ] || pending "$PROG did not build"

mkdir -p "$E/images/bench-calc"
cp examples/calc-image/calculator_server.py bench/bench_server.py "$E/images/bench-calc/"

# the stand-in daemon with the calc image ($KEY, SIM_PROVIDERS, default 2): start_sim NAME [flags...]
# sets url, hash and SIM_PID
start_sim() {
  local name=$1
  shift
  node tests/yagna-sim --port 0 --appkey "$KEY" --providers "${SIM_PROVIDERS:-2}" --images "$E/images" \
    --log "$E/sim-$name.log" --negotiation-delay-ms 5 "$@" </dev/null >"$E/sim-$name.out" 2>"$E/sim-$name.err" &
  SIM_PID=$!
  PIDS+=($SIM_PID)
  url=
  for _ in $(seq 200); do
    url=$(sed -n 's/^yagna-sim listening on //p' "$E/sim-$name.out")
    [ -n "$url" ] && break
    sleep 0.05
  done
  hash=$(awk '$2 == "image" && $3 == "bench-calc" { print $4 }' "$E/sim-$name.out")
  [ -n "$url" ]
}
stop_sim() { kill -TERM "$SIM_PID" 2>/dev/null; wait "$SIM_PID" 2>/dev/null; }
