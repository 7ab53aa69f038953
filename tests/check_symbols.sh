#!/bin/bash
# Every symbol yhc.h exports must start with yhc_ (mongoose checks its mg_ prefix the same way),
# in the plain and TLS builds; and with YHC_STATIC nothing is exported at all.
set -u
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '#define YHC_IMPLEMENTATION\n#include "yhc.h"\n' > "$tmp/impl.c"
pass=0; fail=0
check() { # label, extra cflags, expect-none
  if ! cc -std=c99 -c -I. $2 "$tmp/impl.c" -o "$tmp/impl.o" 2>"$tmp/err"; then
    echo "FAIL $1: does not build"; cat "$tmp/err"; fail=$((fail + 1)); return
  fi
  syms=$(nm -g --defined-only "$tmp/impl.o" | awk '{print $3}')
  if [ "$3" = none ]; then bad=$syms; else bad=$(echo "$syms" | grep -v '^yhc_' | grep -v '^$'); fi
  if [ -n "$bad" ]; then echo "FAIL $1: exported without the yhc_ prefix:"; echo "$bad" | head; fail=$((fail + 1));
  else echo "ok   $1: $(echo "$syms" | grep -c . ) exported symbols"; pass=$((pass + 1)); fi
}
check "plain" "" prefix
check "static" "-DYHC_STATIC -Wno-unused-function" none
if [ -f /usr/include/mbedtls/ssl.h ]; then check "tls" "-DYHC_MBEDTLS" prefix; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
