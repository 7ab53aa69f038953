#!/bin/sh
# Builds yhc.h from the layer fragments in src/: top, public API parts, implementation parts, end.
# The TOC in the top comment lists every banner in the order it appears.
set -eu
cd "$(dirname "$0")/.."
out=yhc.h.tmp
parts="src/00_top.h $(ls src/api_*.h | sort) src/50_middle.h $(ls src/impl_*.c | sort) src/99_end.h"
cat $parts > "$out.body"
toc=$(grep -h '^/\* ==== ' $parts | sed -e 's|^/\* ==== \(.*\) =*.*\*/|     \1|' -e 's/ *=* *$//')
awk -v toc="$toc" '{ if ($0 == "@@TOC@@") { print ""; print "   Contents (one banner per layer; each layer uses only those above it):"; print toc } else print }' "$out.body" > "$out"
rm -f "$out.body"
mv "$out" yhc.h
