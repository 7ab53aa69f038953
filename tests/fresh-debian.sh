#!/bin/bash
# The README's two commands on a fresh machine (not run by CI; needs root and Debian's mirror).
# Builds a Debian 12 root file system with only what a newcomer has (build-essential, python3,
# nodejs, npm), clones this repository's committed HEAD into it, runs `make demo` and then
# `make test` there, and prints how long each took. `make test` installs the rest itself
# (tests/setup.sh), as it would on the newcomer's machine.
#
#   tests/fresh-debian.sh [ROOT]      ROOT defaults to /tmp/yhc-fresh-debian; removed at the end
#   KEEP=1                            keep ROOT afterwards
#   YHC_ROOTFS_TAR=/tmp/bookworm.tar  reuse a pristine root file system from this tarball (made
#                                     on the first run), to skip debootstrap on later runs
set -euo pipefail
root=${1:-/tmp/yhc-fresh-debian}
repo=$(cd "$(dirname "$0")/.." && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" = 0 ] || { echo "fresh-debian: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
case $root in /|/usr|/usr/*|/etc|/etc/*|"$repo"|"$repo"/*) echo "fresh-debian: refusing ROOT=$root" >&2; exit 1;; esac
[ ! -e "$root" ] || { echo "fresh-debian: $root exists; remove it or pick another ROOT" >&2; exit 1; }

mounted=()
cleanup() {
  local m p i
  # processes still running inside the root (a server a test left behind) hold its mounts
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill -9 "${p#/proc/}" 2>/dev/null
  done
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
  if grep -q " $root/" /proc/mounts; then
    echo "fresh-debian: mounts left under $root; not removing it" >&2; return
  fi
  if [ -z "${KEEP:-}" ]; then rm -rf --one-file-system "$root"; else echo "kept $root"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mnt() { mount "$@"; mounted+=("${!#}"); }

t0=$(date +%s)
fresh=
if [ -n "${YHC_ROOTFS_TAR:-}" ] && [ -s "$YHC_ROOTFS_TAR" ]; then
  echo "== root file system from $YHC_ROOTFS_TAR"
  mkdir -p "$root" && tar -xf "$YHC_ROOTFS_TAR" -C "$root"
else
  command -v debootstrap >/dev/null || apt-get install -y debootstrap
  echo "== debootstrap bookworm (minbase) into $root"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 ||
    { tail -n 30 "$root.debootstrap.log"; exit 1; }
  rm -f "$root.debootstrap.log"
  fresh=1
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
# a network whose TLS goes through a proxy with its own CA (as on some CI and company
# machines) needs that CA inside too, or npm cannot reach its registry
copy_local_cas() {
  [ -n "$(ls /usr/local/share/ca-certificates/ 2>/dev/null)" ] || return 0
  cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
  extra_env=(NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt) # node has its own CA list
}
extra_env=()
mnt -t proc proc "$root/proc"
mnt --bind /dev "$root/dev"
mnt --bind /dev/pts "$root/dev/pts"
mnt -t tmpfs tmpfs "$root/dev/shm"
mnt -t tmpfs tmpfs "$root/tmp"
if [ -n "$fresh" ]; then
  # debootstrap's own resolver cannot take npm's tree of node-* packages: apt inside does
  echo "== apt-get install build-essential python3 nodejs npm (what a newcomer has)"
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    bash -c 'apt-get update -q && apt-get install -y -q --no-install-recommends build-essential python3 nodejs npm ca-certificates' \
    >"$root/tmp/install.log" 2>&1 </dev/null || { tail -n 30 "$root/tmp/install.log"; exit 1; }
  chroot "$root" apt-get clean
  if [ -n "${YHC_ROOTFS_TAR:-}" ]; then tar -cf "$YHC_ROOTFS_TAR" --one-file-system -C "$root" .; fi
fi
copy_local_cas
echo "   ready in $(( $(date +%s) - t0 )) s"

echo "== clean clone of $(git -C "$repo" rev-parse --short HEAD)"
git clone -q "$repo" "$root/home/yhc"
home=/root
inside() { # command line, run in the clone with a clean environment
  chroot "$root" /usr/bin/env -i HOME="$home" LANG=C.UTF-8 TERM=dumb "${extra_env[@]}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "cd /home/yhc && $1" </dev/null
}
inside 'echo "   $(cc --version | head -n1); node $(node --version); $(python3 --version)"'

declare -A took status
for cmd in "make demo" "make test"; do
  echo "== $cmd"
  s=$(date +%s)
  set +e; inside "$cmd" 2>&1 | tee "/tmp/fresh-debian.${cmd// /-}.log" | sed 's/^/   /'
  status[$cmd]=${PIPESTATUS[0]}; set -e
  took[$cmd]=$(( $(date +%s) - s ))
done
echo "== times on a fresh Debian 12 (build-essential, python3, nodejs, npm)"
rc=0
for cmd in "make demo" "make test"; do
  printf '   %-10s %5d s   exit %d   (log: /tmp/fresh-debian.%s.log)\n' "$cmd" "${took[$cmd]}" \
    "${status[$cmd]}" "${cmd// /-}"
  [ "${status[$cmd]}" = 0 ] || rc=1
done
exit $rc
