#!/usr/bin/env bash
# Install everything ztr's build and tests need; a fast no-op when done.
#  1. Debian packages (apt-get when root; otherwise print the exact line).
#  2. The web console's: Node.js and npm (Debian's, when the machine has
#     none), Chromium for its browser test, the npm packages of
#     ui/package-lock.json (npm ci, again only when the lockfile changed).
#  3. wolfSSL 5.5.4 from Debian's own source package, built with AES-NI/AVX2
#     assembly into .deps/wolfssl (static). Falls back to the system
#     libwolfssl-dev with a loud warning when the source build fails.
#  4. libmicrohttpd from Debian's source package without HTTPS, for the
#     agents (.deps/microhttpd-lite, static): see microhttpd_lite below.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEPS="$ROOT/.deps"
PREFIX="$DEPS/wolfssl"

# libwolfssl-dev: only for `make bench` (Debian's build, measured beside ours).
# haproxy, stunnel4: `make bench` measures the data plane beside them.
# libcurl4-openssl-dev: the controller CLI's HTTP client for the admin API.
# mandoc, groff: the man pages' lint (tests/docs_check.sh); debhelper,
# fakeroot, lintian (and dpkg-dev): `make deb` and its test.
# libpq-dev: the controller's PostgreSQL store (a cluster of controllers);
# postgresql: the real server the store's tests start (initdb in a temp dir).
PACKAGES=(build-essential pkg-config clang libclang-rt-14-dev
  libev-dev libyaml-dev libsqlite3-dev sqlite3 libjansson-dev libpq-dev postgresql
  libmicrohttpd-dev libcmocka-dev python3
  autoconf automake libtool dpkg-dev openssl stunnel4 curl
  iproute2 ca-certificates libwolfssl-dev libcurl4-openssl-dev systemd-container haproxy
  chromium mandoc groff debhelper fakeroot lintian)
# The console (ui/) needs Node.js >= 18.18 (Next.js 15): Debian's nodejs when
# there is none; a machine's own Node.js (with its bundled npm) is kept.
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

# The exact configure line lives in one place (docs/WOLFSSL.md explains it).
# shellcheck source=wolfssl-options.sh
. "$ROOT/scripts/wolfssl-options.sh"

missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      printf '%s\n' "$p"
    fi
  done
}

install_packages() {
  local missing
  missing="$(missing_packages | tr '\n' ' ')"
  [ -z "${missing// /}" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing Debian packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends $missing" >&2
    exit 1
  fi
  echo "deps: installing $missing"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
}

# Private apt configuration holding deb-src entries, so fetching a source
# package never touches the system's sources or lists.
APT_SOURCES_READY=
apt_source() { # apt_source PACKAGE: its Debian source, unpacked in .deps/src
  local apt="$DEPS/apt" src="$DEPS/src"
  mkdir -p "$apt/sources" "$apt/lists/partial" "$src"
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    sed 's/^Types:.*/Types: deb-src/' "$f" > "$apt/sources/$(basename "$f")"
  done
  if [ -f /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > "$apt/sources/main.list"
  fi
  local opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt/sources"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
  mkdir -p "$apt/cache/archives/partial"
  if [ -z "$APT_SOURCES_READY" ]; then
    apt-get "${opts[@]}" update -q >"$apt/update.log" 2>&1 || { cat "$apt/update.log" >&2; return 1; }
    APT_SOURCES_READY=1
  fi
  rm -rf "$src/$1"-[0-9]*
  (cd "$src" && apt-get "${opts[@]}" source -q "$1" >"$apt/source-$1.log" 2>&1) ||
    { cat "$apt/source-$1.log" >&2; return 1; }
}

fetch_wolfssl_source() {
  apt_source wolfssl && ls -d "$DEPS"/src/wolfssl-"$WOLFSSL_VERSION"* >/dev/null
}

# libmicrohttpd for the agents: Debian's source, built without HTTPS into
# .deps/microhttpd-lite (static). Debian's library links GnuTLS and its
# eight dependencies, about 2.5 MiB resident in every agent, which serves
# only plain /health and /metrics; the controller keeps Debian's (its admin
# API may speak TLS). Without it (the build failed) the agents link
# Debian's too, larger but the same behaviour.
MHD_LITE="$DEPS/microhttpd-lite"
MHD_CONFIGURE=(--enable-static --disable-shared --disable-https --without-gnutls
  --disable-curl --disable-doc --disable-examples)
microhttpd_lite() {
  local stamp="$MHD_LITE/.ztr-stamp" want dir
  want="$(printf '%s\n' "${MHD_CONFIGURE[@]}" | sha256sum | cut -d' ' -f1)"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$MHD_LITE/lib/libmicrohttpd.a" ] &&
    return 0
  [ -f "$DEPS/microhttpd-lite-failed" ] && [ "$(cat "$DEPS/microhttpd-lite-failed")" = "$want" ] &&
    return 0
  echo "deps: building libmicrohttpd without HTTPS for the agents (log: $DEPS/microhttpd-build.log)"
  if apt_source libmicrohttpd && dir="$(ls -d "$DEPS"/src/libmicrohttpd-[0-9]*/ | head -1)" &&
    (
      unset DESTDIR
      cd "$dir"
      ./configure --prefix="$MHD_LITE" "${MHD_CONFIGURE[@]}" CFLAGS="-O2 -g -fPIC"
      make -j"$(nproc)"
      rm -rf "$MHD_LITE"
      make install
    ) >"$DEPS/microhttpd-build.log" 2>&1; then
    rm -f "$DEPS/microhttpd-lite-failed"
    echo "$want" >"$stamp"
    return 0
  fi
  echo "deps: WARNING: libmicrohttpd without HTTPS did not build; the agents link Debian's" >&2
  tail -5 "$DEPS/microhttpd-build.log" >&2 || true
  echo "$want" >"$DEPS/microhttpd-lite-failed"
}

build_wolfssl() {
  local dir
  dir="$(ls -d "$DEPS"/src/wolfssl-"$WOLFSSL_VERSION"*/ | head -1)"
  echo "deps: building wolfSSL in $dir (log: $DEPS/wolfssl-build.log)"
  (
    # Our .deps prefix, never a caller's staging root (make install
    # DESTDIR=... runs deps first).
    unset DESTDIR
    cd "$dir"
    [ -x ./configure ] || ./autogen.sh
    ./configure --prefix="$PREFIX" "${WOLFSSL_CONFIGURE[@]}" CFLAGS="$WOLFSSL_CFLAGS"
    make -j"$(nproc)"
    rm -rf "$PREFIX"
    make install
  ) >"$DEPS/wolfssl-build.log" 2>&1
}

# The console's npm packages, exactly as the lockfile says; a stamp holds the
# lockfile's digest so an unchanged lockfile costs nothing.
ui_modules() {
  local ui="$ROOT/ui" stamp="$ROOT/ui/node_modules/.ztr-lock" want
  [ -f "$ui/package-lock.json" ] || return 0
  if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>18||(a===18&&b>=18)?0:1)'; then
    echo "deps: the console needs Node.js >= 18.18; this machine has $(node --version)" >&2
    exit 1
  fi
  want="$(sha256sum "$ui/package-lock.json" | cut -d' ' -f1)"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  echo "deps: npm ci in ui/ (log: ui/npm-ci.log)"
  if ! (cd "$ui" && NEXT_TELEMETRY_DISABLED=1 npm ci --no-audit --no-fund >"$ui/npm-ci.log" 2>&1); then
    tail -20 "$ui/npm-ci.log" >&2; exit 1
  fi
  echo "$want" >"$stamp"
}

main() {
  install_packages
  ui_modules
  mkdir -p "$DEPS"
  microhttpd_lite
  local stamp="$PREFIX/.ztr-stamp" want
  want="$(wolfssl_options_digest)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$PREFIX/lib/libwolfssl.a" ]; then
    return 0
  fi
  if [ -f "$DEPS/wolfssl-fallback" ] && [ "$(cat "$DEPS/wolfssl-fallback")" = "$want" ]; then
    return 0
  fi
  rm -f "$DEPS/wolfssl-fallback"
  if fetch_wolfssl_source && build_wolfssl; then
    echo "$want" > "$stamp"
    echo "deps: wolfSSL $WOLFSSL_VERSION with assembly installed in $PREFIX"
    return 0
  fi
  cat >&2 <<'WARN'
######################################################################
## WARNING: building wolfSSL from Debian's source package failed.   ##
## Falling back to the system libwolfssl-dev, which has NO AES-NI:  ##
## AES-GCM will be ~30x slower and some checks may be unavailable.  ##
######################################################################
WARN
  [ -f "$DEPS/wolfssl-build.log" ] && tail -20 "$DEPS/wolfssl-build.log" >&2
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libwolfssl-dev
  else
    echo "  apt-get install -y libwolfssl-dev" >&2
    exit 1
  fi
  echo "$want" > "$DEPS/wolfssl-fallback"
}

main "$@"
