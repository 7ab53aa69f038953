#!/bin/bash
# Runs the tier-3 loop examples (build/loop_epoll, build/loop_libuv, build/loop_libevent; those
# built) against the yagna stand-in and tests/servers/origin.py: each drives a Golem session
# and plain HTTP requests and checks every answer. Prints each example's result line, then
# the total "N passed, N failed". Usage: tests/loop_examples.sh BUILD_DIR
set -u
B=${1:-build}
cd "$(dirname "$0")/.."
pass=0; fail=0
tmp=$(mktemp -d)
origin_log=$tmp/origin.log
standin_cleanup() { [ -n "${origin_pid:-}" ] && kill "$origin_pid" 2>/dev/null; rm -rf "$tmp"; }
. examples/stand-in.sh
standin_start 6 || { echo "0 passed, 1 failed"; exit 1; }
# origin.py exits when its stdin closes: a fifo held open here keeps it only while we run
mkfifo "$tmp/in"
python3 tests/servers/origin.py <"$tmp/in" >"$origin_log" 2>&1 &
origin_pid=$!
exec 8>"$tmp/in"
for _ in $(seq 1 100); do grep -q '^PORT ' "$origin_log" && break; sleep 0.1; done
port=$(sed -n 's/^PORT //p' "$origin_log" | head -n 1)
[ -n "$port" ] || { cat "$origin_log"; echo "origin.py did not start"; echo "0 passed, 1 failed"; exit 1; }
# the three run at once, each with its own session (the stand-in has spare providers)
exs=()
for ex in loop_epoll loop_libuv loop_libevent; do
  if [ ! -x "$B/$ex" ]; then
    # epoll needs nothing but Linux: missing, it is a broken build, not a skip
    if [ "$ex" = loop_epoll ]; then echo "FAIL $ex not built"; fail=$((fail + 1)); continue; fi
    echo "$ex not built: skipped (see tests/setup.sh's line for its package)"; continue
  fi
  exs+=("$ex")
  ( YAGNA_API_URL=$standin_url YAGNA_APPKEY=$standin_appkey YHC_IMAGE_HASH=$standin_hash \
    YHC_IMAGE_REPO=$standin_url timeout 240 "$B/$ex" "http://127.0.0.1:$port" >"$tmp/$ex.out" 2>&1
    echo $? >"$tmp/$ex.rc" ) &
done
for ex in "${exs[@]}"; do
  while [ ! -s "$tmp/$ex.rc" ]; do sleep 0.2; done
  rc=$(cat "$tmp/$ex.rc")
  line=$(grep -E '^[a-z]+: [0-9]+ passed, [0-9]+ failed$' "$tmp/$ex.out" | tail -n 1)
  p=$(printf '%s' "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+'); p=${p:-0}
  f=$(printf '%s' "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+'); f=${f:-1}
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  [ "$f" -ne 0 ] && tail -n 25 "$tmp/$ex.out"
  printf '%-16s %s passed, %s failed\n' "$ex" "$p" "$f"
  pass=$((pass + p)); fail=$((fail + f))
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
