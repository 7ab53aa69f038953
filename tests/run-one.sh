#!/bin/bash
# Runs one job of the suite for make: its output goes to LOG and "exit-status seconds" to
# LOG.rc. It always succeeds, so make goes on with the other jobs; tests/run-all.sh then
# tallies every log. Usage: tests/run-one.sh LOG TIMEOUT_SECONDS COMMAND...
log=$1; secs=$2; shift 2
mkdir -p "$(dirname "$log")"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
start=$SECONDS
timeout "$secs" "$@" </dev/null >"$log" 2>&1; rc=$?
echo "$rc $((SECONDS - start))" >"$log.rc"
exit 0
