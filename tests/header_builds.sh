#!/bin/bash
# The header in other people's builds, with every compiler at hand (gcc, clang as C99;
# g++, clang++ as C++), all with -Wall -Wextra -Werror:
#   - every ```c block of README.md compiles and links (a block without main() is the body of
#     one, linked with the implementation); mark a block ```text if it is not meant to;
#   - YHC_STATIC builds without a warning, and two files with their own static copies link;
#   - yhc.h after a system header in the implementation file stops with one clear error;
#   - a two-translation-unit program (tests/header/impl.c + tests/header/user.c) builds and
#     runs with the implementation and the user file each as C or as C++.
# Prints "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; [ -s "$tmp/err" ] && head -n 15 "$tmp/err"; }

F="-Wall -Wextra -Werror -O0 -I."
declare -A cc=(
  [gcc]="gcc -std=c99 -pedantic $F"
  [clang]="clang -std=c99 -pedantic $F"
  [g++]="g++ -x c++ -std=c++11 $F"
  [clang++]="clang++ -x c++ -std=c++11 $F"
)
compilers=()
for c in gcc clang g++ clang++; do
  if command -v "$c" >/dev/null 2>&1; then compilers+=("$c"); else echo "$c not installed: its builds skipped"; fi
done
linker() { case $1 in g++|clang++) echo "$1";; *) echo gcc;; esac; }
# compile COMPILER OUT SRC... [-- LINKFLAGS]: compiles and links
build() {
  local c=$1 out=$2; shift 2
  # shellcheck disable=SC2086
  ${cc[$c]} "$@" -o "$out" -lm 2>"$tmp/err"
}

# ---- two translation units: implementation and user each as C or as C++ (each compiled
#      once per compiler, then every pairing linked and run)
for c in "${compilers[@]}"; do
  # shellcheck disable=SC2086
  ${cc[$c]} -c tests/header/impl.c -o "$tmp/impl-$c.o" 2>"$tmp/err" || bad "tests/header/impl.c with $c"
  ${cc[$c]} -c tests/header/user.c -o "$tmp/user-$c.o" 2>"$tmp/err" || bad "tests/header/user.c with $c"
done
for ci in "${compilers[@]}"; do
  for cu in "${compilers[@]}"; do
    [ -e "$tmp/impl-$ci.o" ] && [ -e "$tmp/user-$cu.o" ] || continue
    l=$(linker "$ci"); [ "$l" = gcc ] && l=$(linker "$cu")
    if $l "$tmp/impl-$ci.o" "$tmp/user-$cu.o" -o "$tmp/tu" -lm 2>"$tmp/err" && "$tmp/tu" >"$tmp/err" 2>&1 &&
       grep -qE '^[1-9][0-9]* passed, 0 failed' "$tmp/err"; then ok
    else bad "two TUs (implementation $ci, user $cu):"; fi
  done
done

# ---- README snippets
python3 - "$tmp" <<'EOF'
import re, sys
blocks = re.findall(r'^```c\n(.*?)^```', open('README.md').read(), re.S | re.M)
for i, b in enumerate(blocks):
    if not re.search(r'\bmain\s*\(', b):
        body = '\n'.join('  ' + l for l in b.splitlines())
        b = ('#include "yhc.h"\n#include <stdio.h>\n\n'
             'int main(void) {\n' + body + '\n  return 0;\n}\n')
    open('%s/readme%d.c' % (sys.argv[1], i), 'w').write(b)
print('README.md: %d C blocks' % len(blocks))
EOF
n=0
for src in "$tmp"/readme*.c; do
  [ -e "$src" ] || continue
  n=$((n + 1))
  for c in "${compilers[@]}"; do
    # a block that is a body links with the implementation compiled above
    impl=; grep -q YHC_IMPLEMENTATION "$src" || impl=$tmp/impl-$c.o
    if build "$c" "$tmp/a.out" "$src" ${impl:+-x none "$impl"}; then ok; else bad "README C block $n with $c"; fi
  done
done
[ "$n" -gt 0 ] && ok || bad "no C block found in README.md"

# ---- YHC_STATIC: no warning; two files each with a private copy link into one program
printf '#define YHC_STATIC\n#define YHC_IMPLEMENTATION\n#include "yhc.h"\nint other(void) { return yhc_strerror(YHC_ERR_JSON)[0] != 0; }\n' >"$tmp/s1.c"
printf '#define YHC_STATIC\n#define YHC_IMPLEMENTATION\n#include "yhc.h"\nint other(void);\nint main(void) { return !(other() && yhc_strerror(YHC_ERR_OK)[0]); }\n' >"$tmp/s2.c"
for c in "${compilers[@]}"; do
  if build "$c" "$tmp/st" "$tmp/s1.c" "$tmp/s2.c" && "$tmp/st"; then ok; else bad "YHC_STATIC with $c"; fi
done

# ---- yhc.h not first in the implementation file: one error, and it says what to do
printf '#include <stdio.h>\n#define YHC_IMPLEMENTATION\n#include "yhc.h"\nint main(void) { return 0; }\n' >"$tmp/late.c"
for c in gcc clang; do
  [ -n "${cc[$c]:-}" ] && command -v "$c" >/dev/null 2>&1 || continue
  if build "$c" "$tmp/late" "$tmp/late.c"; then bad "yhc.h after <stdio.h> built with $c (strict C99 should hide POSIX)"; continue; fi
  errors=$(grep -cE ':[0-9]+:[0-9]+: (fatal )?error' "$tmp/err")
  if grep -q 'yhc.h must be the first #include' "$tmp/err" && [ "$errors" -eq 1 ]; then ok
  else bad "yhc.h after <stdio.h> with $c: want one clear error, got $errors:"; fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
