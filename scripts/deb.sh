#!/usr/bin/env bash
# make deb: the Debian packages ztr-common, ztr-controller, ztr-connector,
# ztr-tunneler and (when `make ui` built the console here) ztr-console into
# build/deb/, built with debhelper (debian/) from a copy of the working tree,
# then checked with lintian.
#   scripts/deb.sh [OUT]     OUT: where the .debs go (default build/deb)
# The version comes from scripts/version.sh (`git describe --always --dirty`
# in a checkout; a tag v1.2 gives 1.2, 1.2-3-gabc gives 1.2+3+gabc, a bare
# commit 0~gitabc1234); debian/changelog and VERSION (what the binaries
# report) are written into the copy only. lintian's errors fail the build; its
# warnings are printed and kept in OUT/lintian.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/build/deb}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

describe="$(bash "$ROOT/scripts/version.sh")"
case "$describe" in
  v[0-9]*) version="${describe#v}" ;;
  [0-9]*.*) version="$describe" ;;
  *) version="0~git$describe" ;;
esac
version="${version//-/+}"

for tool in dpkg-buildpackage dh fakeroot lintian; do
  command -v "$tool" >/dev/null ||
    { echo "deb: $tool is missing: make deps (debhelper, dpkg-dev, fakeroot, lintian)" >&2; exit 1; }
done
[ -f "$ROOT/.deps/wolfssl/lib/libwolfssl.a" ] ||
  { echo "deb: .deps/wolfssl is missing: make deps builds the tuned wolfSSL the packages link" >&2; exit 1; }

# The tracked and untracked (not ignored) files, as `make install` sees them.
SRC="$OUT/ztr-$version"
rm -rf "$OUT"/ztr-* "$OUT"/*.deb "$OUT"/*.buildinfo "$OUT"/*.changes
mkdir -p "$SRC"
(cd "$ROOT" && git ls-files -co --exclude-standard -z | grep -zv '^ui/' |
  xargs -0 tar -cf - --no-recursion) | tar -xf - -C "$SRC"
ln -s "$(readlink -f "$ROOT/.deps")" "$SRC/.deps"
# The copy is no git checkout of its own: the binaries read their version here.
printf '%s\n' "$describe" >"$SRC/VERSION"
cat >"$SRC/debian/changelog" <<CHANGELOG
ztr ($version) unstable; urgency=medium

  * Built from $describe.

 -- ztr maintainers <maintainers@users.noreply.b-seed-61fb2206.example>  $(date -R)
CHANGELOG

# The console's package when the console is built here (make ui); otherwise
# it is left out (ZTR_DEB_CONSOLE=no leaves it out always).
profiles=()
if [ "${ZTR_DEB_CONSOLE:-auto}" != no ] && [ -f "$ROOT/ui/.next/BUILD_ID" ] && [ -d "$ROOT/ui/node_modules/next" ]; then
  make -C "$ROOT" --no-print-directory install-ui DESTDIR="$SRC/debian/console" PREFIX=/usr \
    SYSCONFDIR=/etc UNITDIR=/lib/systemd/system >"$OUT/console.log" 2>&1 ||
    { cat "$OUT/console.log" >&2; echo "deb: make install-ui failed" >&2; exit 1; }
else
  echo "deb: the console is not built here (make ui): no ztr-console package"
  profiles=(-Ppkg.ztr.noconsole)
fi

jobs="${DEB_JOBS:-2}"
echo "deb: building ztr $version in $SRC"
(cd "$SRC" && DEB_BUILD_OPTIONS="parallel=$jobs nocheck" dpkg-buildpackage -b -us -uc "${profiles[@]}" \
  >"$OUT/build.log" 2>&1) || { tail -30 "$OUT/build.log" >&2; echo "deb: dpkg-buildpackage failed ($OUT/build.log)" >&2; exit 1; }
rm -rf "$SRC"

changes="$(ls "$OUT"/ztr_"$version"_*.changes)"
lintian --no-tag-display-limit "$changes" >"$OUT/lintian.txt" 2>&1 || true
ls -1 "$OUT"/*.deb
if grep -q '^E: ' "$OUT/lintian.txt"; then
  grep '^E: ' "$OUT/lintian.txt" >&2
  echo "deb: lintian reports errors ($OUT/lintian.txt)" >&2
  exit 1
fi
echo "deb: lintian: 0 errors, $(grep -c '^W: ' "$OUT/lintian.txt" || true) warnings ($OUT/lintian.txt)"
grep '^W: ' "$OUT/lintian.txt" || true
