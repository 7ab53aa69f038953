#!/bin/bash
# bench/e2e.sh -- part 5 of `make bench` (called by run.sh with BIN, OUT, RUNS, SECS, RAW set):
# the calc service (examples/calc-image) reached
#   direct     on loopback (the same calculator_server.py, http_yhc rate),
#   tunnel     through a yhc session: yagna-sim rents one instance, requests go over its VPN
#              tunnel (keep-alive connections inside WebSockets),
#   newtunnel  a fresh WebSocket tunnel per request (the original library's approach),
# at 1 and 8 in flight. Starts and stops its own servers (trap); writes "e2e ..." raw lines, or
# "e2e pending=1 reason=..." when the session layer cannot get an instance.
set -u
PART=e2e PROG=e2e_yhc
. bench/sim_part.sh

# direct: the same server on loopback
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 "$E/images/bench-calc/bench_server.py" --host 127.0.0.1 --port "$port" </dev/null >"$E/direct.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do (exec 4<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
for r in $(seq "$RUNS"); do
  for n in 1 8; do
    "$BIN/http_yhc" rate "http://127.0.0.1:$port/add/1/2" "$n" "$SECS" 2>>"$E/err.log" |
      sed -n 's/^RESULT /RESULT mode=direct inflight='"$n"' /p' |
      { read -r l || true; if [ -n "$l" ]; then echo "e2e run=$r ${l#RESULT }" >>"$RAW"; fi; }
  done
done

KEY=bench-$$
start_sim main || pending "yagna-sim did not start: $(tail -1 "$E/sim-main.err")"
# each session run rents an instance (a few seconds of negotiation): at most 3
for r in $(seq "$([ "$RUNS" -gt 3 ] && echo 3 || echo "$RUNS")"); do
  E2E_LOG_EVENTS=1 timeout 90 "$BIN/e2e_yhc" session "$url" "$KEY" "$hash" "$SECS" >"$E/run$r.out" 2>"$E/run$r.err"
  rc=$?
  if ! grep -q 'mode=tunnel' "$E/run$r.out"; then
    why=$(grep -v '^\[' "$E/run$r.err" | tail -1 | tr '"' "'" | cut -c1-160)
    pending "session layer: no instance served a request (exit $rc: ${why:-no message})"
  fi
  sed -n 's/^RESULT /e2e run='"$r"' /p' "$E/run$r.out" >>"$RAW"
  grep -v '^\[' "$E/run$r.err" | head -5 >&2
done
stop_sim

# cold start: session_create to the first answer at the default 1.5 s offer window, adaptive
# (the default) and strict (the whole window, the old behaviour), interleaved
SIM_PROVIDERS=3 start_sim cold || echo "note yagna-sim (cold start) did not start" >>"$RAW"
if [ -n "$url" ]; then
  for r in 1 2 3; do
    for strict in 0 1; do
      if [ $strict = 1 ]; then export E2E_STRICT=1; else unset E2E_STRICT; fi
      E2E_COLD=1 timeout 90 "$BIN/e2e_yhc" session "$url" "$KEY" "$hash" 1 >"$E/cold$r$strict.out" 2>"$E/cold$r$strict.err"
      sed -n 's/^RESULT /e2ecold run='"$r"' /p' "$E/cold$r$strict.out" >>"$RAW"
    done
  done
  unset E2E_STRICT
  stop_sim
  mapfile -t cold < <(grep '^e2ecold ' "$RAW" | grep 't0_wall=')
  [ ${#cold[@]} -gt 0 ] && python3 bench/coldsplit.py "$E/sim-cold.log" "${cold[@]}" >>"$RAW"
fi

# the tunnel at real VPN latency: RTT 50 and 150 ms, 2 MB/s per direction per provider; one
# instance with 32 tunnel connections; 1, 8, 32 in flight against the bound in_flight / RTT and
# against a new tunnel per request; a 5 MB download and upload against the cap
for rtt in 50 150; do
  start_sim "vpn$rtt" --vpn-rtt-ms "$rtt" --vpn-rate 2MB/s || { echo "note yagna-sim (VPN $rtt ms) did not start" >>"$RAW"; continue; }
  E2E_INFLIGHT="1 8 32" E2E_CONC=32 E2E_BULK=5000000 timeout 240 "$BIN/e2e_yhc" session "$url" "$KEY" "$hash" \
    "$((SECS + 1))" >"$E/vpn$rtt.out" 2>"$E/vpn$rtt.err"
  sed -n 's/^RESULT /e2evpn rtt='"$rtt"' run=1 /p' "$E/vpn$rtt.out" >>"$RAW"
  grep -q 'mode=tunnel' "$E/vpn$rtt.out" || echo "note VPN $rtt ms: $(grep -v '^\[' "$E/vpn$rtt.err" | tail -1 | tr '"' "'" | cut -c1-160)" >>"$RAW"
  stop_sim
done

# failover: 3 instances under steady load, one provider's fault; vanish only where the
# stand-in has it (the run says "missing" otherwise)
# stand-in (the run says "missing" otherwise); each with quick requests and with 1 s ones
# (/sleep/1000: the requests on the provider are mid-service when the fault comes)
for path in /add/1/2 /sleep/1000; do
  for kind in killService crashVm vanish; do
    tag=fo-$kind${path//\//-}
    SIM_PROVIDERS=5 start_sim "$tag" || continue
    E2E_FAULT=$kind E2E_PATH=$path timeout 150 "$BIN/e2e_yhc" session "$url" "$KEY" "$hash" 1 >"$E/$tag.out" 2>"$E/$tag.err"
    if grep -q 'mode=failover' "$E/$tag.out"; then
      sed -n 's/^RESULT /e2efo run=1 /p' "$E/$tag.out" >>"$RAW"
    else
      echo "e2efo run=1 mode=failover fault=$kind path=$path failed=1" >>"$RAW"
    fi
    stop_sim
  done
done
exit 0
