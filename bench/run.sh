#!/bin/bash
# bench/run.sh -- `make bench`: builds yhc's benchmark programs and the peers they race, runs
# every benchmark side by side in this one run and prints one table (bench/report.py) with
# medians, spreads, ratios (yhc / peer) and the targets of issue 7. Not part of `make test`.
#
# Environment: BENCH_RUNS (runs per figure, default 5; the yagna-sim session runs at most 3),
# BENCH_SECONDS (per timed run, whole seconds since wrk wants them; 2),
# BENCH_ONLY (space-separated subset of: http body json ws e2e foot scale), YHC_SHARED (../shared),
# BENCH_NO_INSTALL=1 (do not apt-get missing peers).
# Loopback only. Every server started here is stopped on exit (trap), by its own pid.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${YHC_SHARED:-$ROOT/../shared}
DATA=$SHARED/bench-data
RUNS=${BENCH_RUNS:-5}
SECS=${BENCH_SECONDS:-2}
ONLY=${BENCH_ONLY:-http body json ws e2e foot scale}
OUT=$(mktemp -d "${TMPDIR:-/tmp}/yhc-bench.XXXXXX")
BIN=$OUT/bin
RAW=$OUT/raw.txt
mkdir -p "$BIN"
: >"$RAW"
PIDS=()

cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null
  done
  for p in "${PIDS[@]}"; do
    wait "$p" 2>/dev/null
  done
  PIDS=()
  rm -rf "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }
# raw line: the tags given, then the k=v pairs of the program's RESULT line
record() { # tags... < program output
  local line
  line=$(grep -m1 '^RESULT ' | sed 's/^RESULT //')
  if [ -n "$line" ]; then echo "$* $line" >>"$RAW"; else echo "$* failed=1" >>"$RAW"; fi
}
note() { echo "note $*" >>"$RAW"; }
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # port [tries]
  local i
  for i in $(seq "${2:-100}"); do
    if (exec 4<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

# ---- peers: find them, install what is missing from Debian packages
declare -A HAVE
check_peers() {
  HAVE[nginx]=$([ -x /usr/sbin/nginx ] || command -v nginx >/dev/null && echo 1 || echo 0)
  HAVE[wrk]=$(command -v wrk >/dev/null && echo 1 || echo 0)
  HAVE[curl]=$([ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -f /usr/include/curl/curl.h ] && echo 1 || echo 0)
  HAVE[cjson]=$([ -f /usr/include/cjson/cJSON.h ] && echo 1 || echo 0)
  HAVE[jansson]=$([ -f /usr/include/jansson.h ] && echo 1 || echo 0)
  HAVE[simdjson]=$([ -f /usr/include/simdjson.h ] && echo 1 || echo 0)
  HAVE[valgrind]=$(command -v valgrind >/dev/null && [ -f /usr/include/valgrind/callgrind.h ] && echo 1 || echo 0)
  HAVE[node]=$(command -v node >/dev/null && echo 1 || echo 0)
}
check_peers
declare -A PKG=([nginx]=nginx-light [wrk]=wrk [curl]=libcurl4-openssl-dev [cjson]=libcjson-dev
                [jansson]=libjansson-dev [simdjson]=libsimdjson-dev [valgrind]=valgrind)
missing=()
for k in "${!PKG[@]}"; do [ "${HAVE[$k]}" = 1 ] || missing+=("${PKG[$k]}"); done
if [ ${#missing[@]} -gt 0 ] && [ "${BENCH_NO_INSTALL:-0}" != 1 ] && command -v apt-get >/dev/null; then
  log "installing peers: ${missing[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}" >"$OUT/apt.log" 2>&1; then
    $SUDO apt-get update >>"$OUT/apt.log" 2>&1
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}" >>"$OUT/apt.log" 2>&1 ||
      log "apt-get could not install everything (see the table's notes)"
  fi
  check_peers
fi
for k in nginx wrk curl cjson jansson simdjson valgrind node; do
  [ "${HAVE[$k]}" = 1 ] || { note "peer $k not found: its figures are skipped"; log "peer $k not found"; }
done

# ---- build (yhc.h is made by `make bench` before this script)
CFLAGS="-O2 -g -Wall -Wextra -I$ROOT -I$ROOT/bench"
build() { # out src "libs" compiler flags...
  local out=$1 src=$2 libs=$3
  shift 3
  # shellcheck disable=SC2086
  if ! "$@" "$src" -o "$BIN/$out" $libs >"$OUT/build-$out.log" 2>&1; then
    log "build of $out failed:"; cat "$OUT/build-$out.log" >&2
    note "build of $out failed"
    return 1
  fi
  # Warnings from bench/ itself must not happen; warnings inside yhc.h are the library's.
  local own lib
  own=$(grep -c "^bench/.*warning:" "$OUT/build-$out.log")
  lib=$(grep -c "yhc\.h:[0-9]*:[0-9]*: warning:" "$OUT/build-$out.log")
  [ "$own" = 0 ] || note "bench/$out: $own compiler warning(s) in bench code"
  if [ "$lib" != 0 ]; then
    msg=$(grep -m1 "yhc\.h:[0-9]*:[0-9]*: warning:" "$OUT/build-$out.log" | sed 's/.*warning: //' | tr -d '"' | cut -c1-120)
    echo "buildwarn prog=$out yhc_h=$lib msg=\"$msg\"" >>"$RAW"
  fi
  return 0
}
log "building into $BIN"
build http_yhc bench/http_yhc.c -lm gcc $CFLAGS
[ "${HAVE[curl]}" = 1 ] && build http_curl bench/http_curl.c -lcurl gcc $CFLAGS
[ "${HAVE[cjson]}" = 1 ] && [ "${HAVE[jansson]}" = 1 ] && [ "${HAVE[valgrind]}" = 1 ] &&
  build json_peers bench/json_peers.c "-lcjson -ljansson -lm" gcc $CFLAGS
[ "${HAVE[simdjson]}" = 1 ] && [ "${HAVE[valgrind]}" = 1 ] &&
  build json_simd bench/json_simd.cpp -lsimdjson g++ -std=c++17 -O2 -g -Wall -Wextra
build ws_yhc bench/ws_yhc.c -lm gcc $CFLAGS
[ -f bench/e2e_yhc.c ] && build e2e_yhc bench/e2e_yhc.c -lm gcc $CFLAGS
build scale_yhc bench/scale_yhc.c -lm gcc $CFLAGS
build scale_yhc_poll bench/scale_yhc.c -lm gcc $CFLAGS -DYHC_NO_EPOLL
build chunked_srv bench/chunked_srv.c "" gcc $CFLAGS
FOOT="-Os -ffunction-sections -fdata-sections -Wl,--gc-sections -Wall -Wextra"
build min_yhc bench/min_yhc.c -lm gcc $FOOT -I"$ROOT"
[ "${HAVE[curl]}" = 1 ] && [ "${HAVE[cjson]}" = 1 ] && build min_curl bench/min_curl.c "-lcurl -lcjson" gcc $FOOT

# ---- machine header
{
  echo "machine arch=$(uname -m) nproc=$(nproc) cpu=\"$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')\" kernel=$(uname -r)"
  echo "when date=\"$(date -u '+%Y-%m-%d %H:%M:%S UTC')\" load=\"$(cut -d' ' -f1-3 /proc/loadavg)\" runs=$RUNS secs=$SECS commit=$(git rev-parse --short HEAD 2>/dev/null)"
  echo "tools cc=\"$(gcc --version | head -1)\" nginx=\"$(/usr/sbin/nginx -v 2>&1 | sed 's/.*\///')\" curl=\"$(curl-config --version 2>/dev/null | sed 's/libcurl //')\" wrk=\"$(wrk -v 2>&1 | head -1 | awk '{print $2}')\""
} >>"$RAW"

# ---- servers
# nginx gets core 1 and every HTTP client core 0, so a client never shares its core with the
# server it measures (unpinned, the scheduler's placement alone moved rates by 40%)
PIN_SRV= PIN_CLI=
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then PIN_SRV="taskset -c 1" PIN_CLI="taskset -c 0"; fi
NGX_PORT=
start_nginx() {
  [ "${HAVE[nginx]}" = 1 ] || return 1
  [ -n "$NGX_PORT" ] && return 0
  local p
  p=$(free_port)
  $PIN_SRV ./bench/nginx.sh "$OUT/ngx" "$p" </dev/null >"$OUT/nginx.log" 2>&1 &
  PIDS+=($!)
  if wait_port "$p" 200; then NGX_PORT=$p; log "nginx on 127.0.0.1:$p"; return 0; fi
  log "nginx did not start:"; cat "$OUT/nginx.log" >&2
  note "nginx did not start"
  return 1
}

# ---- 1. HTTP request rate
if want http && start_nginx; then
  URL=http://127.0.0.1:$NGX_PORT/small.txt
  for c in 1 8 64; do
    log "HTTP rate, $c connection(s), $RUNS x ${SECS}s per client"
    for r in $(seq "$RUNS"); do
      # the order rotates from run to run, so no client always follows the same neighbour
      case $((r % 3)) in 1) order="yhc curl wrk" ;; 2) order="curl wrk yhc" ;; 0) order="wrk yhc curl" ;; esac
      for tool in $order; do
      if [ $tool = yhc ]; then
        $PIN_CLI "$BIN/http_yhc" rate "$URL" "$c" "$SECS" 2>>"$OUT/err.log" | record "http tool=yhc conc=$c run=$r"
      elif [ $tool = curl ] && [ -x "$BIN/http_curl" ]; then
        $PIN_CLI "$BIN/http_curl" rate "$URL" "$c" "$SECS" 2>>"$OUT/err.log" | record "http tool=curl conc=$c run=$r"
      elif [ $tool = wrk ] && [ "${HAVE[wrk]}" = 1 ]; then
        # 1 thread, like the other two clients; nginx has the other core
        $PIN_CLI wrk -t1 -c"$c" -d"${SECS}s" --latency "$URL" 2>>"$OUT/err.log" | awk '
          /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 } /^Requests\/sec:/ { rps = $2 }
          function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1e6; return v }
          END { if (rps) printf "RESULT rps=%s p50_us=%.1f p99_us=%.1f\n", rps, us(p50), us(p99) }' |
          record "http tool=wrk conc=$c run=$r"
      fi
      done
    done
  done
fi

# ---- 2. large bodies
CH_PORT=
if want body && start_nginx; then
  for kind in length chunked; do
    if [ $kind = length ]; then URL=http://127.0.0.1:$NGX_PORT/big.bin
    else URL=http://127.0.0.1:$NGX_PORT/chunked/big.txt; fi
    log "64 MiB download ($kind), $RUNS runs per client"
    for r in $(seq "$RUNS"); do
      $PIN_CLI "$BIN/http_yhc" get "$URL" 2>>"$OUT/err.log" | record "body src=nginx kind=$kind tool=yhc run=$r"
      [ -x "$BIN/http_curl" ] &&
        $PIN_CLI "$BIN/http_curl" get "$URL" 2>>"$OUT/err.log" | record "body src=nginx kind=$kind tool=curl run=$r"
    done
  done
  # nginx's SSI filter sends small chunks and costs nginx time; a C server that writes 64 KiB
  # chunks shows the client's own chunked decoding speed
  if [ -x "$BIN/chunked_srv" ]; then
    p=$(free_port)
    "$BIN/chunked_srv" "$p" 65536 </dev/null >"$OUT/chunked.log" 2>&1 &
    PIDS+=($!)
    if wait_port "$p"; then
      URL=http://127.0.0.1:$p/
      for r in $(seq "$RUNS"); do
        "$BIN/http_yhc" get "$URL" 2>>"$OUT/err.log" | record "body src=csrv kind=chunked tool=yhc run=$r"
        [ -x "$BIN/http_curl" ] &&
          "$BIN/http_curl" get "$URL" 2>>"$OUT/err.log" | record "body src=csrv kind=chunked tool=curl run=$r"
      done
    fi
  fi
fi

# ---- 3. JSON
if want json; then
  if [ ! -f "$DATA/twitter.json" ]; then
    note "JSON data not found in $DATA"
  else
    FILES="$DATA/twitter.json $DATA/citm_catalog.json $DATA/canada.json"
    log "JSON parse/write timing"
    if [ -x "$BIN/json_peers" ]; then
      "$BIN/json_peers" time $FILES 2>>"$OUT/err.log" | grep '^RESULT' | sed 's/^RESULT /json /' >>"$RAW"
    fi
    if [ -x "$BIN/json_simd" ]; then
      "$BIN/json_simd" time $FILES 2>>"$OUT/err.log" | grep '^RESULT' | sed 's/^RESULT /json /' >>"$RAW"
    fi
    if [ "${HAVE[valgrind]}" = 1 ]; then
      log "JSON instructions per byte (callgrind)"
      for f in $FILES; do
        for lib in yhc cjson jansson simdjson yhc+num simdjson+num; do
          case $lib in
            simdjson) prog=("$BIN/json_simd" ir "$f") ;;
            simdjson+num) prog=("$BIN/json_simd" ir "$f" num) ;;
            *) prog=("$BIN/json_peers" ir "$lib" "$f") ;;
          esac
          [ -x "${prog[0]}" ] || continue
          cg=$OUT/cg.$lib.$(basename "$f")
          valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$cg" "${prog[@]}" \
            >"$cg.stdout" 2>"$cg.stderr"
          ir=$(awk '/^totals:/ { print $2 }' "$cg" 2>/dev/null)
          bytes=$(sed -n 's/^RESULT bytes=\([0-9]*\).*/\1/p' "$cg.stdout")
          impl=$(sed -n 's/.*implementation=\([a-z0-9_]*\).*/\1/p' "$cg.stdout")
          echo "jsonir file=$(basename "$f") lib=$lib ir=${ir:-0} bytes=${bytes:-0} impl=${impl:-}" >>"$RAW"
        done
      done
    fi
  fi
fi

# ---- 4. WebSocket stream
if want ws; then
  if [ "${HAVE[node]}" = 1 ] && [ ! -d tests/yagna-sim/node_modules/ws ]; then
    (cd tests/yagna-sim && npm ci --no-audit --no-fund --loglevel=error) >"$OUT/npm.log" 2>&1
  fi
  if [ "${HAVE[node]}" = 1 ] && [ -d tests/yagna-sim/node_modules/ws ]; then
    mkfifo "$OUT/ws.in"
    node bench/ws_echo.js <"$OUT/ws.in" >"$OUT/ws.port" 2>"$OUT/ws.log" &
    PIDS+=($!)
    exec 7>"$OUT/ws.in" # the echo peer exits when this closes
    for _ in $(seq 100); do grep -q PORT "$OUT/ws.port" && break; sleep 0.05; done
    WSP=$(awk '/^PORT/ { print $2 }' "$OUT/ws.port")
    if [ -n "$WSP" ]; then
      for sz in 64 1024 65536; do
        log "WebSocket stream, $sz-byte messages, $RUNS x ${SECS}s"
        for r in $(seq "$RUNS"); do
          "$BIN/ws_yhc" "ws://127.0.0.1:$WSP/" "$sz" "$SECS" 2>>"$OUT/err.log" | record "ws size=$sz run=$r"
        done
      done
    else
      note "WebSocket echo peer did not start"
    fi
  else
    note "node or the ws package missing: WebSocket figures skipped"
  fi
fi

# ---- 5. end to end through the yagna stand-in
if want e2e; then
  if [ -x "$BIN/e2e_yhc" ] && [ -x bench/e2e.sh ]; then
    log "end to end through yagna-sim"
    BIN=$BIN OUT=$OUT RUNS=$RUNS SECS=$SECS RAW=$RAW ./bench/e2e.sh 2>>"$OUT/e2e.log"
  else
    echo "e2e pending=1 reason=\"e2e harness not built\"" >>"$RAW"
  fi
fi

# ---- 6. footprint
if want foot; then
  log "footprint"
  tsize() { size -A "$1" 2>/dev/null | awk '$1 == ".text" { print $2 }'; }
  [ -x "$BIN/min_yhc" ] && echo "foot prog=yhc text=$(tsize "$BIN/min_yhc")" >>"$RAW"
  if [ -x "$BIN/min_curl" ]; then
    # libcurl: static-equivalent .text. Debian's libcurl.a (if present) linked statically with
    # --gc-sections; else libcurl.so's .text. libcjson.so's .text is added either way. TLS,
    # HTTP/2 and the other libraries libcurl itself pulls in are listed, not added.
    libdir=$(dirname "$(gcc -print-file-name=libcurl.so)")
    curl_text=
    if [ -f "$libdir/libcurl.a" ]; then
      deps="-l:libnghttp2.so.14 -lidn2 -l:librtmp.so.1 -l:libssh2.so.1 -l:libpsl.so.5 -lssl -lcrypto -l:libgssapi_krb5.so.2 -l:liblber-2.5.so.0 -l:libldap-2.5.so.0 -l:libzstd.so.1 -lbrotlidec -lz"
      if gcc $FOOT bench/min_curl.c -o "$BIN/min_curl_st" "$libdir/libcurl.a" $deps -lcjson >"$OUT/build-min_curl_st.log" 2>&1; then
        curl_text=$(tsize "$BIN/min_curl_st"); method=static
      fi
    fi
    if [ -z "$curl_text" ]; then
      curl_text=$(( $(tsize "$BIN/min_curl") + $(tsize "$(readlink -f "$libdir/libcurl.so")") )); method=shared
    fi
    cj=$(tsize "$(readlink -f "$(dirname "$(gcc -print-file-name=libcjson.so)")/libcjson.so")")
    deps_text=0
    for so in $(ldd "$BIN/min_curl" | awk '$3 ~ /^\// { print $3 }'); do
      case $so in */libc.so*|*/libcjson.so*|*/libcurl.so*) continue ;; esac
      deps_text=$(( deps_text + $(tsize "$so") ))
    done
    echo "foot prog=curl text=$((curl_text + cj)) method=$method cjson_text=$cj deps_text=$deps_text" >>"$RAW"
  fi
  if start_nginx; then
    "$BIN/http_yhc" allocs "http://127.0.0.1:$NGX_PORT/small.txt" 1000 2>>"$OUT/err.log" | record "allocs tool=yhc"
    for n in 1000 10000 100000; do # how the cost grows with the queue's length
      "$BIN/http_yhc" queue "http://127.0.0.1:$NGX_PORT/small.txt" "$n" 2>>"$OUT/err.log" | record "queue tool=yhc n=$n"
    done
  fi
fi

# ---- 7. scale: one session at 10, 50, 200 instances through the stand-in's shared-service mode
if want scale; then
  if [ -x "$BIN/scale_yhc" ] && [ -x bench/scale.sh ]; then
    log "scale: 10/50/200 instances through yagna-sim --vm-mode shared"
    BIN=$BIN OUT=$OUT RUNS=$RUNS SECS=$SECS RAW=$RAW ./bench/scale.sh 2>>"$OUT/scale.log"
  else
    echo "scale pending=1 reason=\"scale harness not built\"" >>"$RAW"
  fi
fi

[ -s "$OUT/err.log" ] && { log "stderr of the bench programs:"; sort "$OUT/err.log" | uniq -c | sort -rn | head -20 >&2; }
# only a full run may stand for the project's figures: a BENCH_ONLY subset prints its table
# and leaves bench/results-latest.* and the README as they are
if [ "$ONLY" = "http body json ws e2e foot scale" ]; then
  cp "$RAW" bench/results-latest.raw
  python3 bench/report.py "$RAW" --readme README.md | tee bench/results-latest.md
else
  cp "$RAW" "${TMPDIR:-/tmp}/yhc-bench-partial.raw"
  python3 bench/report.py "$RAW"
  log "partial run (BENCH_ONLY=$ONLY): raw lines in ${TMPDIR:-/tmp}/yhc-bench-partial.raw; bench/results-latest.* untouched"
fi
