#!/bin/sh
# Joins build/split/* (made by tools/split.sh) back into yhc.h and refreshes the table of
# contents in the top comment from the banners.
set -eu
cd "$(dirname "$0")/.."
in=build/split
[ -d "$in" ] || { echo "join.sh: no $in (run tools/split.sh first)" >&2; exit 1; }
cat "$in"/* > yhc.h.body
toc=$(grep -h '^/\* ==== ' yhc.h.body | sed -e 's|^/\* ==== \(.*\) =*.*\*/|     \1|' -e 's/ *=* *$//')
awk -v toc="$toc" '
  /^   Contents \(/ { print; print toc; skip = 1; next }
  skip && /^     / { next }
  { skip = 0; print }
' yhc.h.body > yhc.h.tmp
rm -f yhc.h.body
mv yhc.h.tmp yhc.h
