#!/usr/bin/env bash
# Measures the crypto of the wolfSSL ztr links against Debian's binary
# libwolfssl in the same run and writes the table to stdout (markdown).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/build/bench"
mkdir -p "$work"
src="$root/bench/crypto_speed.c"
flags=(-std=c11 -D_DEFAULT_SOURCE -O2)
local_ok=0; system_ok=0
if [ -f "$root/.deps/wolfssl/lib/libwolfssl.a" ]; then
  gcc "${flags[@]}" -I"$root/.deps/wolfssl/include" "$src" \
    "$root/.deps/wolfssl/lib/libwolfssl.a" -lm -lpthread -o "$work/crypto-ztr" && local_ok=1
fi
if pkg-config --exists wolfssl 2>/dev/null; then
  gcc "${flags[@]}" $(pkg-config --cflags wolfssl) "$src" $(pkg-config --libs wolfssl) \
    -o "$work/crypto-debian" && system_ok=1
fi
[ "$local_ok" = 1 ] && "$work/crypto-ztr" > "$work/crypto-ztr.txt"
[ "$system_ok" = 1 ] && "$work/crypto-debian" > "$work/crypto-debian.txt"
echo "| measurement | ztr's wolfSSL (.deps, AES-NI/AVX2, SP asm) | Debian libwolfssl $(dpkg-query -W -f='${Version}' libwolfssl35 2>/dev/null || echo '?') |"
echo "|---|---|---|"
names=$(cut -d' ' -f1 "$work/crypto-ztr.txt" 2>/dev/null || cut -d' ' -f1 "$work/crypto-debian.txt")
for name in $names; do
  a=$(awk -v n="$name" '$1==n {print $2" "$3}' "$work/crypto-ztr.txt" 2>/dev/null || true)
  b=$(awk -v n="$name" '$1==n {print $2" "$3}' "$work/crypto-debian.txt" 2>/dev/null || true)
  echo "| $name | ${a:-n/a} | ${b:-n/a} |"
done
