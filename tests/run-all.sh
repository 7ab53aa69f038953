#!/bin/bash
# Runs every test program in every build variant, then the stand-in's node tests, and sums the
# "N passed, N failed" lines into the final one. Exit status is non-zero on any failure.
set -u
B=$1; shift
cd "$(dirname "$0")/.."
total_pass=0; total_fail=0
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
variants=${YHC_ONLY:-${YHC_VARIANTS:-"c cxx san tls"}}

tally() { # name, exit code, output file
  local line p f
  line=$(grep -E '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed' "$3" | tail -n 1)
  if [ -z "$line" ]; then p=0; f=1; echo "!! $1: no result line (exit $2)"; tail -n 20 "$3";
  else
    p=$(echo "$line" | grep -oE "[0-9]+ passed" | grep -oE "[0-9]+")
    f=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+')
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "!! $1: exit $2 with no failed check"; tail -n 20 "$3"; fi
  fi
  printf '%-28s %-28s %4ss\n' "$1" "$line" "$((SECONDS - t0))"
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f)); t0=$SECONDS
}

t0=$SECONDS # each tally line shows the seconds since the previous one, so the slow parts are on record
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for v in $variants; do
  list="$*"
  [ "$v" = tls ] && list=${YHC_TLS_TESTS:-}
  # the C++ build of the long end-to-end programs is compiled (that is what C++ can break)
  # but not run again: the C and sanitizer runs cover their behaviour
  [ "$v" = cxx ] && list=$(printf '%s\n' $list | grep -vxE 'test_golem|test_cluster|test_money|test_resilience' | tr '\n' ' ')
  for t in $list; do
    out="$tmp/$v-$t.log"
    timeout 300 "$B/$v/$t" >"$out" 2>&1; rc=$?
    [ "$rc" -ne 0 ] && grep -E 'FAIL|ERROR|Sanitizer|runtime error' "$out" | head -n 30
    tally "$v/$t" "$rc" "$out"
  done
done

if [ -z "${YHC_ONLY:-}" ]; then
  # valgrind over the plain C build of the tests that need no outside daemon
  if command -v valgrind >/dev/null 2>&1; then
    for t in test_json test_wscodec test_http test_tls test_dns; do
      [ -x "$B/c/$t" ] || continue
      out="$tmp/vg-$t.log"
      timeout 600 valgrind -q --error-exitcode=97 --leak-check=full --errors-for-leak-kinds=definite \
        "$B/c/$t" >"$out" 2>&1; rc=$?
      [ "$rc" -ne 0 ] && grep -E 'FAIL|==[0-9]+==' "$out" | head -n 30
      tally "valgrind/$t" "$rc" "$out"
    done
  fi
  out="$tmp/symbols.log"
  ./tests/check_symbols.sh >"$out" 2>&1; rc=$?
  [ "$rc" -ne 0 ] && cat "$out"
  tally "exported symbols" "$rc" "$out"
  # README snippets, YHC_STATIC, include order, two translation units, with every compiler
  out="$tmp/header.log"
  ./tests/header_builds.sh >"$out" 2>&1; rc=$?
  [ "$rc" -ne 0 ] && grep -A15 FAIL "$out" | head -n 40
  tally "header builds" "$rc" "$out"
fi

if [ -z "${YHC_ONLY:-}" ] && [ -x "$B/gai/test_dns" ]; then
  out="$tmp/gai-test_dns.log"
  timeout 300 "$B/gai/test_dns" >"$out" 2>&1; rc=$?
  [ "$rc" -ne 0 ] && grep -E 'FAIL|ERROR' "$out" | head -n 30
  tally "getaddrinfo/test_dns" "$rc" "$out"
fi

if [ -z "${YHC_ONLY:-}" ] && [ -n "${YHC_FUZZ_TARGETS:-}" ]; then
  # every libFuzzer target briefly, from its seeds and the corpus earlier runs left
  out="$tmp/fuzz.log"
  FUZZ_NO_BUILD=1 FUZZ_TARGETS="$YHC_FUZZ_TARGETS" FUZZ_SECONDS=${YHC_FUZZ_SECONDS:-3} \
    ./fuzz/run.sh >"$out" 2>&1; rc=$?
  [ "$rc" -ne 0 ] && grep -vE '^(==|ok )' "$out" | head -n 40
  tally "fuzz (${YHC_FUZZ_SECONDS:-3}s each)" "$rc" "$out"
fi

if [ -z "${YHC_ONLY:-}" ] && [ -d tests/yagna-sim/node_modules ]; then
  # the tier-3 loop examples (epoll, libuv, libevent) drive sessions on the stand-in
  out="$tmp/loops.log"
  ./tests/loop_examples.sh "$B" >"$out" 2>&1; rc=$?
  grep -E '^loop_|skipped' "$out"
  [ "$rc" -ne 0 ] && grep -E 'FAIL|rror' "$out" | head -n 30
  tally "loop examples" "$rc" "$out"
fi

if [ -z "${YHC_ONLY:-}" ] && [ -d tests/yagna-sim/node_modules ]; then
  out="$tmp/sim.log"
  (cd tests/yagna-sim && timeout 600 npm test) >"$out" 2>&1; rc=$?
  p=$(grep -E '^# pass ' "$out" | tail -n1 | grep -oE '[0-9]+'); f=$(grep -E '^# fail ' "$out" | tail -n1 | grep -oE '[0-9]+')
  p=${p:-0}; f=${f:-1}
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  [ "$f" -ne 0 ] && grep -E 'not ok|Error' "$out" | head -n 30
  printf '%-28s %s passed, %s failed\n' "yagna-sim (node --test)" "$p" "$f"
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
fi
# what tests/setup.sh could neither find nor install, again where the reader looks
[ -z "${YHC_ONLY:-}" ] && [ -s "$B/skipped.txt" ] && cat "$B/skipped.txt"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
