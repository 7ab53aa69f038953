#!/bin/bash
# make test's own set-up: every Debian package the tests use, in one list below. A package
# that is missing is installed when this can be done (root, or passwordless sudo, with apt);
# otherwise what needs it is skipped, with one line naming the package. Writes
#   $B/setup.mk       YHC_HAVE_<what> := 1 for each part that can run (read by the Makefile)
#   $B/skipped.txt    the skip lines, repeated by tests/run-all.sh above its total
# Usage: tests/setup.sh [BUILD_DIR]          (the Makefile passes its build directory)
# Environment:
#   YHC_NO_INSTALL=1  never install, only skip (a machine you do not want apt to touch)
#   YHC_STRICT=1      anything still missing is an error (CI: a skipped variant there is a bug)
set -u
cd "$(dirname "$0")/.."
B=${1:-build}
mkdir -p "$B"

# ---- what can be skipped: a name (YHC_HAVE_<name> in the Makefile) and its skip line's words.
#      "required" parts have no skip: without them there is no point in running anything.
declare -A label=(
  [required]="the test suite"
  [cxx]="C++ variant"
  [san]="ASan+UBSan variant"
  [tls]="TLS variant"
  [nginx]="nginx interop tests"
  [valgrind]="valgrind runs"
  [metrics]="OpenMetrics parser check"
  [dnsmasq]="DNS server tests (test_dns)"
  [fuzz]="brief fuzz runs"
  [libuv]="libuv loop example"
  [libevent]="libevent loop example"
  [locale]="comma-locale checks (test_json, test_money)"
)

# ---- the packages: name, the parts that need it, the probe that says it is there. Append here.
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
builds() { # compiler, flags... : compiles and links an empty program
  local dir; dir=$(mktemp -d)
  printf 'int main(void) { return 0; }\n' >"$dir/t.c"
  "$@" "$dir/t.c" -o "$dir/t" >/dev/null 2>&1; local rc=$?
  rm -rf "$dir"; return $rc
}
fuzzer_builds() { # clang's libFuzzer runtime: it brings its own main()
  local dir; dir=$(mktemp -d)
  printf '#include <stddef.h>\nint LLVMFuzzerTestOneInput(const unsigned char *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$dir/t.c"
  clang -fsanitize=fuzzer,address,undefined "$dir/t.c" -o "$dir/t" >/dev/null 2>&1; local rc=$?
  rm -rf "$dir"; return $rc
}
mbedtls_builds() {
  local dir; dir=$(mktemp -d)
  printf '#include <mbedtls/ssl.h>\nint main(void) { mbedtls_ssl_context s; mbedtls_ssl_init(&s); return 0; }\n' >"$dir/t.c"
  cc "$dir/t.c" -o "$dir/t" -lmbedtls -lmbedx509 -lmbedcrypto >/dev/null 2>&1; local rc=$?
  rm -rf "$dir"; return $rc
}
pkgs=()
declare -A needed_by probe
pkg() { pkgs+=("$1"); needed_by[$1]=$2; probe[$1]=$3; }
#   package              needed by      probe
pkg build-essential      required       "have cc && have make"
pkg g++                  cxx            "have g++"
pkg clang                "san tls fuzz" "have clang"
pkg libclang-rt-14-dev   "san tls fuzz" "builds clang -fsanitize=address,undefined && fuzzer_builds"
pkg libmbedtls-dev       tls            "mbedtls_builds"
pkg openssl              tls            "have openssl"
pkg ca-certificates      tls            "[ -d /etc/ssl/certs ]"
pkg python3              required       "have python3"
pkg nodejs               required       "have node"
pkg npm                  required       "have npm"
pkg nginx-light          nginx          "have nginx"
pkg valgrind             valgrind       "have valgrind"
pkg python3-prometheus-client metrics   "[ -d /usr/lib/python3/dist-packages/prometheus_client ] || python3 -c 'import prometheus_client' 2>/dev/null"
pkg dnsmasq-base         dnsmasq        "have dnsmasq"
pkg libuv1-dev           libuv          "builds cc -luv"
pkg libevent-dev         libevent       "builds cc -levent"
pkg locales              locale         "[ -f /usr/share/i18n/locales/de_DE ] && have localedef"

present() { eval "${probe[$1]}"; }

missing=()
for p in "${pkgs[@]}"; do present "$p" || missing+=("$p"); done

# ---- install what is missing, when we may
SUDO=
can_install() {
  [ -z "${YHC_NO_INSTALL:-}" ] && have apt-get || return 1
  [ "$(id -u)" = 0 ] && return 0
  have sudo && sudo -n true 2>/dev/null && SUDO="sudo -n"
}
apt_install() { # packages...
  # nginx's package must not start the system service (port 80, a daemon left behind): forbid
  # service starts for the duration, unless a policy already exists
  local policy=/usr/sbin/policy-rc.d made= rc
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod 755 "$policy" && made=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "$@" </dev/null
  rc=$?
  [ -n "$made" ] && $SUDO rm -f "$policy"
  return $rc
}
if [ ${#missing[@]} -gt 0 ] && can_install; then
  echo "== tests/setup.sh: installing ${missing[*]}"
  log=$B/setup-apt.log
  if ! { $SUDO apt-get update -q -o DPkg::Lock::Timeout=600 && apt_install "${missing[@]}"; } >"$log" 2>&1; then
    # one unknown or broken package must not cost the others
    for p in "${missing[@]}"; do apt_install "$p" >>"$log" 2>&1 || echo "   apt-get install $p failed (see $log)"; done
  fi
  still=()
  for p in "${missing[@]}"; do present "$p" || still+=("$p"); done
  missing=("${still[@]+"${still[@]}"}")
fi

# ---- what can run, and one skip line per part that cannot
declare -A lacks
for p in "${missing[@]+"${missing[@]}"}"; do
  for part in ${needed_by[$p]}; do lacks[$part]="${lacks[$part]:+${lacks[$part]} }$p"; done
done
: >"$B/skipped.txt"
{
  echo "# written by tests/setup.sh"
  for part in $(printf '%s\n' "${!label[@]}" | sort); do [ -z "${lacks[$part]:-}" ] && echo "YHC_HAVE_$part := 1"; done
} >"$B/setup.mk"
rc=0
for part in $(printf '%s\n' "${!lacks[@]}" | sort); do
  p=${lacks[$part]}
  word=installed; case $p in *" "*) word="all installed";; esac
  if [ "$part" = required ]; then
    echo "tests/setup.sh: cannot run the tests: $p not $word (apt-get install $p)" >&2; rc=1
  else
    echo "${label[$part]} skipped: $p not $word (apt-get install $p)" | tee -a "$B/skipped.txt"
    [ -n "${YHC_STRICT:-}" ] && rc=1
  fi
done
exit $rc
