#!/bin/bash
# Tallies the suite: for each job (as make ran it through tests/run-one.sh into
# BUILD/log/JOB.log), prints its result line and seconds, shows the failures, and sums the
# "N passed, N failed" lines into the final one. Exit status is non-zero on any failure.
# Usage: tests/run-all.sh BUILD_DIR JOB... (jobs such as c/test_http, valgrind/test_json, sim)
set -u
B=$1; shift
cd "$(dirname "$0")/.."
total_pass=0; total_fail=0

tally() { # name, exit code, seconds, output file
  local line p f
  line=$(grep -E '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed' "$4" | tail -n 1)
  if [ -z "$line" ]; then p=0; f=1; echo "!! $1: no result line (exit $2)"; tail -n 20 "$4";
  else
    p=$(echo "$line" | grep -oE "[0-9]+ passed" | grep -oE "[0-9]+")
    f=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+')
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "!! $1: exit $2 with no failed check"; tail -n 20 "$4"; fi
  fi
  printf '%-28s %-28s %4ss\n' "$1" "$line" "$3"
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
}

for job in "$@"; do
  log="$B/log/$job.log"
  if [ ! -f "$log.rc" ]; then echo "!! $job: did not run"; total_fail=$((total_fail + 1)); continue; fi
  read -r rc secs <"$log.rc"
  case $job in
    sim*) # node --test: its TAP summary
      p=$(grep -E '^# pass ' "$log" | tail -n1 | grep -oE '[0-9]+'); f=$(grep -E '^# fail ' "$log" | tail -n1 | grep -oE '[0-9]+')
      p=${p:-0}; f=${f:-1}
      [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
      [ "$f" -ne 0 ] && grep -E 'not ok|Error' "$log" | head -n 30
      printf '%-28s %-28s %4ss\n' "yagna-sim $job (node)" "$p passed, $f failed" "$secs"
      total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
      continue ;;
    loops) grep -E '^loop_|skipped' "$log"; [ "$rc" -ne 0 ] && grep -E 'FAIL|rror' "$log" | head -n 30 ;;
    header) [ "$rc" -ne 0 ] && grep -A15 FAIL "$log" | head -n 40 ;;
    symbols) [ "$rc" -ne 0 ] && cat "$log" ;;
    fuzz) [ "$rc" -ne 0 ] && grep -vE '^(==|ok )' "$log" | head -n 40 ;;
    valgrind/*) [ "$rc" -ne 0 ] && grep -E 'FAIL|==[0-9]+==' "$log" | head -n 30 ;;
    *) [ "$rc" -ne 0 ] && grep -E 'FAIL|ERROR|Sanitizer|runtime error' "$log" | head -n 30 ;;
  esac
  tally "$job" "$rc" "$secs" "$log"
done
# what tests/setup.sh could neither find nor install, again where the reader looks
[ -s "$B/skipped.txt" ] && cat "$B/skipped.txt"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
