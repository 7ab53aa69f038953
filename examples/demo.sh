#!/bin/bash
# make demo: the calculator example against the bundled yagna stand-in.
# Starts tests/yagna-sim with a few simulated providers, runs build/calculator with progress
# output, and stops the stand-in again (also on Ctrl-C or failure).
set -u
cd "$(dirname "$0")/.."
appkey=demo-$$
log=$(mktemp)
node tests/yagna-sim --port 0 --appkey "$appkey" --providers "${PROVIDERS:-4}" --images examples \
  --debit-note-interval 1 --quiet >"$log" 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  grep -q 'listening on' "$log" && break
  kill -0 $sim 2>/dev/null || { cat "$log"; echo "demo: the stand-in did not start" >&2; exit 1; }
  sleep 0.1
done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -n 1)
[ -n "$url" ] || { cat "$log"; echo "demo: the stand-in did not start" >&2; exit 1; }
hash=$(node tests/yagna-sim --print-hash examples/calc-image)
echo "== yagna stand-in at $url with ${PROVIDERS:-4} providers; image calc-image = $hash"
echo "== YAGNA_API_URL=$url YAGNA_APPKEY=$appkey ./build/calculator $hash"
YAGNA_API_URL=$url YAGNA_APPKEY=$appkey YHC_IMAGE_REPO=$url ./build/calculator "$hash"
