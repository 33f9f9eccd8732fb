# shellcheck shell=bash
# The wolfSSL build ztr links. Sourced by scripts/deps.sh; the reasons for
# each option are in docs/WOLFSSL.md. Changing anything here makes
# `make deps` rebuild wolfSSL (the digest below is stored as a stamp).
WOLFSSL_VERSION=5.5.4
WOLFSSL_CONFIGURE=(
  --enable-static --disable-shared
  --enable-aesni --enable-intelasm --enable-sp --enable-sp-asm
  --enable-tls13 --disable-oldtls --disable-tlsv12
  --enable-ecc --enable-sha384 --enable-aesgcm --enable-chacha --enable-poly1305
  --disable-dh
  --disable-rsa-verify-only
  --enable-certgen --enable-certreq --enable-certext --enable-keygen
  --enable-alpn --enable-sni
  --disable-examples
  --enable-harden
)
# WOLFSSL_ALWAYS_VERIFY_CB: our verify hook runs for every handshake, not only
# on failure, so the SPIFFE checks apply to peers wolfSSL accepts.
# WOLFSSL_VERIFY_CB_ALL_CERTS: the hook sees each certificate of the chain.
# WOLFSSL_ALT_NAMES: lets us hand wolfSSL our own SAN DER and validity times.
# KEEP_PEER_CERT: the peer's leaf stays reachable after the handshake.
WOLFSSL_CFLAGS="-O2 -g -DWOLFSSL_ALWAYS_VERIFY_CB -DWOLFSSL_VERIFY_CB_ALL_CERTS -DKEEP_PEER_CERT -DWOLFSSL_ALT_NAMES -DWOLFSSL_IP_ALT_NAME -DWOLFSSL_URI_ALT_NAME -fPIC"

wolfssl_options_digest() {
  printf '%s\n' "$WOLFSSL_VERSION" "${WOLFSSL_CONFIGURE[@]}" "$WOLFSSL_CFLAGS" | sha256sum | cut -d' ' -f1
}
