#!/bin/bash
# make demo: the calculator example against the bundled yagna stand-in.
# Starts tests/yagna-sim with a few simulated providers, runs build/calculator with progress
# output, and stops the stand-in again (also on Ctrl-C or failure).
set -u
cd "$(dirname "$0")/.."
. examples/stand-in.sh
standin_start "${PROVIDERS:-4}" || exit 1
url=$standin_url appkey=$standin_appkey hash=$standin_hash
echo "== yagna stand-in at $url with ${PROVIDERS:-4} providers; image calc-image = $hash"
echo "== YAGNA_API_URL=$url YAGNA_APPKEY=$appkey ./build/calculator $hash"
YAGNA_API_URL=$url YAGNA_APPKEY=$appkey YHC_IMAGE_REPO=$url ./build/calculator "$hash"
