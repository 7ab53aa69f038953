#!/bin/bash
# Builds every fuzz/fuzz_*.c with libFuzzer + ASan + UBSan and runs each for FUZZ_SECONDS.
# A crash, leak or sanitizer report fails the target (and the make target).
#   FUZZ_TARGETS="fuzz_dns fuzz_url"  only these (default: every fuzz/fuzz_*.c; fuzz_tls only
#                                     when mbedTLS links)
#   FUZZ_NO_BUILD=1                   use the binaries already in build/fuzz (make test builds
#                                     them in parallel with the other variants)
set -u
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
out=build/fuzz; mkdir -p "$out"
fail=0; ran=0
targets=${FUZZ_TARGETS:-$(for s in fuzz/fuzz_*.c; do basename "$s" .c; done)}
for name in $targets; do
  src=fuzz/$name.c
  if [ -z "${FUZZ_NO_BUILD:-}" ] || [ ! -x "$out/$name" ]; then
    if ! clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I. "$src" -o "$out/$name" -lm $([ "$name" = fuzz_tls ] && echo "-DYHC_MBEDTLS -lmbedtls -lmbedx509 -lmbedcrypto"); then
      echo "FAIL $name: does not build"; fail=$((fail + 1)); continue
    fi
  fi
  corpus="$out/corpus-$name"; mkdir -p "$corpus"
  [ -d "fuzz/seeds/$name" ] && cp -n fuzz/seeds/$name/* "$corpus/" 2>/dev/null
  echo "== $name for ${secs}s"
  if (cd "$out" && "./$name" -max_total_time="$secs" -print_final_stats=1 "corpus-$name" > "$name.log" 2>&1); then
    echo "ok   $name: $(grep -E 'stat::number_of_executed_units' "$out/$name.log" | awk '{print $2}') runs"
    ran=$((ran + 1))
  else
    echo "FAIL $name"; tail -n 40 "$out/$name.log"; fail=$((fail + 1))
  fi
done
echo "$ran passed, $fail failed"
[ "$fail" -eq 0 ]
