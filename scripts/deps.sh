#!/usr/bin/env bash
# Install everything ztr's build and tests need; a fast no-op when done.
#  1. Debian packages (apt-get when root; otherwise print the exact line).
#  2. The web console's: Node.js and npm (Debian's, when the machine has
#     none), Chromium for its browser test, the npm packages of
#     ui/package-lock.json (npm ci, again only when the lockfile changed).
#  3. wolfSSL 5.5.4 from Debian's own source package, built with AES-NI/AVX2
#     assembly into .deps/wolfssl (static). Falls back to the system
#     libwolfssl-dev with a loud warning when the source build fails.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEPS="$ROOT/.deps"
PREFIX="$DEPS/wolfssl"

# libwolfssl-dev: only for `make bench` (Debian's build, measured beside ours).
# libcurl4-openssl-dev: the controller CLI's HTTP client for the admin API.
# mandoc, groff: the man pages' lint (tests/docs_check.sh); debhelper,
# fakeroot, lintian (and dpkg-dev): `make deb` and its test.
# libpq-dev: the controller's PostgreSQL store (a cluster of controllers);
# postgresql: the real server the store's tests start (initdb in a temp dir).
PACKAGES=(build-essential pkg-config clang libclang-rt-14-dev
  libev-dev libyaml-dev libsqlite3-dev sqlite3 libjansson-dev libpq-dev postgresql
  libmicrohttpd-dev libcmocka-dev python3
  autoconf automake libtool dpkg-dev openssl stunnel4 curl
  iproute2 ca-certificates libwolfssl-dev libcurl4-openssl-dev systemd-container
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

# Private apt configuration holding deb-src entries, so fetching the source
# package never touches the system's sources or lists.
fetch_wolfssl_source() {
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
  apt-get "${opts[@]}" update -q >"$apt/update.log" 2>&1 || { cat "$apt/update.log" >&2; return 1; }
  rm -rf "$src"/wolfssl-*
  (cd "$src" && apt-get "${opts[@]}" source -q wolfssl >"$apt/source.log" 2>&1) ||
    { cat "$apt/source.log" >&2; return 1; }
  ls -d "$src"/wolfssl-"$WOLFSSL_VERSION"* >/dev/null
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
