# stand-in.sh -- sourced by examples/demo.sh and tests/loop_examples.sh: starts the bundled
# yagna stand-in (tests/yagna-sim) and stops it again on exit.
#   standin_start PROVIDERS   sets standin_url, standin_appkey, standin_hash (calc-image)
# Run from the repository root. A trap on EXIT stops the stand-in (also on Ctrl-C or failure).
standin_start() {
  standin_appkey=demo-$$
  standin_log=$(mktemp)
  node tests/yagna-sim --port 0 --appkey "$standin_appkey" --providers "$1" --images examples \
    --debit-note-interval 1 --quiet >"$standin_log" 2>&1 &
  standin_pid=$!
  trap 'kill $standin_pid 2>/dev/null; wait $standin_pid 2>/dev/null; rm -f "$standin_log"; standin_cleanup 2>/dev/null' EXIT
  for _ in $(seq 1 100); do
    grep -q 'listening on' "$standin_log" && break
    kill -0 $standin_pid 2>/dev/null || break
    sleep 0.1
  done
  standin_url=$(grep -o 'http://127.0.0.1:[0-9]*' "$standin_log" | head -n 1)
  if [ -z "$standin_url" ]; then cat "$standin_log"; echo "the yagna stand-in did not start" >&2; return 1; fi
  standin_hash=$(node tests/yagna-sim --print-hash examples/calc-image)
}
