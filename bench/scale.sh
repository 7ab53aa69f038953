#!/bin/bash
# bench/scale.sh -- the "scale" part of `make bench` (called by run.sh with BIN, OUT, RUNS, SECS,
# RAW set): one yhc session renting 10, 50 and 200 instances (8 tunnel connections each) from
# yagna-sim in its shared-service mode (--vm-mode shared: a scale/bench mode, one host process
# serves every provider's VM), its loop driven three ways: tier 1 built with YHC_NO_EPOLL
# (poll()), tier 1 as built by default (epoll inside), and the tier-3 callbacks on an epoll set
# of the program's own. Per run bench/scale_yhc.c prints the loop CPU per request under steady load, the heap
# and RSS per instance, and at 200 instances the cost of 1k/10k/100k requests queued at once.
# Writes "scale ..." raw lines, or "scale pending=1 reason=..." when no session came up.
set -u
PART=scale PROG=scale_yhc
. bench/sim_part.sh

MAX=${SCALE_MAX:-200}
KEY=scale-$$
# spare providers: one still held by the previous run's ending agreement must not block a rental
SIM_PROVIDERS=$((MAX + MAX / 5)) start_sim main --vm-mode shared --balance 1000000 ||
  pending "yagna-sim did not start: $(tail -1 "$E/sim-main.err")"

# each run rents every instance anew (a few seconds at 200): at most 3 runs per figure
runs=$([ "$RUNS" -gt 3 ] && echo 3 || echo "$RUNS")
for r in $(seq "$runs"); do
  for n in 10 50 $MAX; do
    for lp in poll tier1 epoll; do
      prog=$BIN/scale_yhc arg=$lp
      case $lp in poll) prog=$BIN/scale_yhc_poll ;; tier1) arg=poll ;; esac
      q= # the queue figures once, from the first run at MAX that gets its instances
      [ "$n" = "$MAX" ] && [ ! -e "$E/queued-$lp" ] && q="1000 10000 100000"
      SCALE_QUEUE=$q SCALE_READY_S=180 timeout 420 "$prog" "$url" "$KEY" "$hash" "$n" "$SECS" "$arg" \
        >"$E/run-$r-$n-$lp.out" 2>"$E/run-$r-$n-$lp.err"
      rc=$?
      sed -n 's/^RESULT /scale run='"$r"' /p' "$E/run-$r-$n-$lp.out" >>"$RAW"
      grep -q 'mode=queue' "$E/run-$r-$n-$lp.out" && : >"$E/queued-$lp"
      if ! grep -q 'mode=steady' "$E/run-$r-$n-$lp.out"; then
        why=$(tail -1 "$E/run-$r-$n-$lp.err" | tr '"' "'" | cut -c1-160)
        echo "note scale: $n instances ($lp): no steady figure (exit $rc: ${why:-no message})" >>"$RAW"
      fi
      grep -v '^\[' "$E/run-$r-$n-$lp.err" | head -3 >&2
    done
  done
done
exit 0
