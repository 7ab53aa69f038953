#!/bin/sh
# Splits yhc.h into one file per banner ("/* ==== ... */") under build/split/, numbered in
# order, so several people can work on different layers at once; tools/join.sh puts them back.
# yhc.h stays the one source of truth: the split files are scratch (build/ is not committed).
set -eu
cd "$(dirname "$0")/.."
out=build/split
rm -rf "$out"
mkdir -p "$out"
awk -v out="$out" '
  function slug(s) { gsub(/^\/\* ==== /, "", s); gsub(/ =+ *\*\/.*$/, "", s); gsub(/[^A-Za-z0-9]+/, "_", s);
                     gsub(/^_+|_+$/, "", s); return tolower(substr(s, 1, 40)) }
  BEGIN { n = 0; file = sprintf("%s/%03d_top", out, n) }
  /^\/\* ==== / { n++; file = sprintf("%s/%03d_%s", out, n, slug($0)) }
  { print > file }
' yhc.h
ls "$out"
