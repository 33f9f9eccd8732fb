/*
 * TLS 1.3 connections on a libev loop, through wolfSSL's non-blocking I/O.
 *
 * A tls_ctx holds one side's configuration: its identity (chain + key, may
 * be absent for an enrolling agent), the trust bundle, the ALPN protocol and
 * whether the peer must present a certificate. Every peer certificate is
 * checked by pki/ (pki_tls_check_install) against a struct pki_expect.
 *
 * Identity and bundle can be replaced while connections are open (renewal,
 * CA rotation): new handshakes use the new ones; established connections
 * keep the wolfSSL context they started with, which is freed when the last
 * of them closes. Nothing in flight is torn down.
 *
 * A tls_conn owns its socket. Callbacks run on the loop thread:
 *   on_ready  once, after the handshake (peer identity available),
 *   on_data   for each chunk of plaintext,
 *   on_close  exactly once, with a reason; the conn is freed right after it
 *             returns. tls_conn_close() from inside any callback is safe;
 *             it never calls on_close itself (that happens from the loop),
 *             and output queued before it is flushed as far as the socket
 *             takes it without waiting.
 * Output is queued up to TLS_WRITE_QUEUE_MAX bytes (tls_conn_set_queue_max);
 * beyond that tls_conn_write fails (the caller closes a peer that does not
 * read). What is written during one loop turn is flushed together at its
 * end.
 */
#ifndef ZTR_NET_TLS_H
#define ZTR_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/err.h"
#include "pki/pki.h"

struct ev_loop;

#define TLS_WRITE_QUEUE_MAX (4 * 1024 * 1024)

#define TLS_HANDSHAKE_TIMEOUT_MS 10000

enum tls_side { TLS_SIDE_CLIENT, TLS_SIDE_SERVER };

/* A trust domain and its bundle (PEM). */
struct tls_trust {
    const char *trust_domain;
    const char *bundle_pem;
    size_t bundle_len;
};
#define TLS_TRUSTS_MAX 65

struct tls_ctx_config {
    enum tls_side side;
    const char *alpn;              /* e.g. "ztr-ctl/1"; both sides must agree */
    const char *chain_pem;         /* our certificate chain; NULL = no identity */
    size_t chain_len;
    const char *key_pem;
    size_t key_len;
    const char *bundle_pem;        /* trust anchors (PEM, one or more CAs) */
    size_t bundle_len;
    bool peer_cert_optional;       /* server: accept clients without a certificate
                                      (they are unauthenticated: enrollment only) */
    const struct ztr_clock *clock; /* for validity checks; NULL = system */
    /* Optional: admit peers of several trust domains (federation), each
     * verified against its own bundle (pki_tls_check.resolve), at the
     * handshake and at every later recheck or renewal proof; bundle_pem is
     * then the union, wolfSSL's anchors. A client that sets it must expect
     * an exact SPIFFE ID (the resolver picks the bundle by what the peer
     * claims). Called on the loop thread. */
    int (*resolve)(void *ctx, const char *trust_domain, struct pki_bundle **bundle,
                   struct ztr_err *err);
    void *resolve_ctx;
    /* Optional, instead of bundle_pem and resolve: peers of each listed trust
     * domain are checked against its bundle only, any other trust domain
     * refused (federation on the data plane); the context keeps copies,
     * replaced by tls_ctx_update_trust. */
    const struct tls_trust *trusts;
    size_t trust_count;
    size_t io_buffer;              /* bulk data connections: bytes read from the socket
                                      at once, and records collected for one send (2x);
                                      0 = one syscall per record as wolfSSL does it */
};

struct tls_ctx;
/* A context made with trusts: the list replaced (new handshakes; live
 * connections are held to it at their next recheck). */
int tls_ctx_update_trust(struct tls_ctx *ctx, const struct tls_trust *trusts, size_t count,
                         struct ztr_err *err);

int tls_ctx_new(const struct tls_ctx_config *config, struct tls_ctx **out, struct ztr_err *err);
/* New handshakes use the new identity and/or bundle (either may be NULL to
 * keep the current one). */
int tls_ctx_update(struct tls_ctx *ctx, const char *chain_pem, size_t chain_len,
                   const char *key_pem, size_t key_len, const char *bundle_pem,
                   size_t bundle_len, struct ztr_err *err);
/* The trust bundle new handshakes check against (owned by ctx). */
const struct pki_bundle *tls_ctx_bundle(const struct tls_ctx *ctx);
void tls_ctx_free(struct tls_ctx *ctx);

struct tls_conn;

struct tls_conn_callbacks {
    void (*on_ready)(struct tls_conn *conn, void *user);
    void (*on_data)(struct tls_conn *conn, const uint8_t *data, size_t len, void *user);
    void (*on_close)(struct tls_conn *conn, const char *reason, void *user);
};

/* Takes ownership of fd (connected, non-blocking) and starts the handshake.
 * expect says who the peer must be; expect->now is ignored. */
int tls_conn_new(struct ev_loop *loop, struct tls_ctx *ctx, int fd,
                 const struct pki_expect *expect, const struct tls_conn_callbacks *callbacks,
                 void *user, struct tls_conn **out, struct ztr_err *err);

int tls_conn_write(struct tls_conn *conn, const void *data, size_t len, struct ztr_err *err);
/* Sends close_notify (best effort) and closes; on_close runs with reason. */
void tls_conn_close(struct tls_conn *conn, const char *reason);

/* After on_ready: whether the peer presented a certificate that pki_verify
 * accepted, and its identity. */
bool tls_conn_peer_verified(const struct tls_conn *conn);
const struct pki_spiffe_id *tls_conn_peer_id(const struct tls_conn *conn);
/* The verified peer's SubjectPublicKeyInfo DER (NULL when unverified). */
const uint8_t *tls_conn_peer_public_key(const struct tls_conn *conn, size_t *len);
/* The earliest not_after (Unix seconds) in the verified peer's chain: the
 * moment the peer stops being who it proved to be. 0 when unverified. */
int64_t tls_conn_peer_not_after(const struct tls_conn *conn);
/* Runs pki_verify again on the verified peer's chain, with what the
 * handshake expected, against bundle (the caller's) at the current time:
 * 0 while the peer still verifies, else -1 with the reason. */
int tls_conn_peer_recheck(const struct tls_conn *conn, const struct pki_bundle *bundle,
                          struct ztr_err *err);
/* The peer proved a renewed certificate on this connection (the caller
 * checked its proof of possession): chain_pem must pass pki_verify with
 * what the handshake expected, against bundle (the caller's), now, and
 * name the same SPIFFE ID. Then it is the peer's chain from here on (for
 * tls_conn_peer_not_after and tls_conn_peer_recheck) and *not_after its
 * earliest not_after; else -1 with the reason and nothing changes.
 * tls_conn_peer_public_key stays the handshake's key. */
int tls_conn_peer_renewed(struct tls_conn *conn, const char *chain_pem, size_t chain_len,
                          const struct pki_bundle *bundle, int64_t *not_after,
                          struct ztr_err *err);
/* "ip:port" of the peer. */
const char *tls_conn_peer_addr(const struct tls_conn *conn);
size_t tls_conn_queued(const struct tls_conn *conn);
/* The output queue's bound for this connection (default TLS_WRITE_QUEUE_MAX);
 * a data session sizes it from its flow-control window. */
void tls_conn_set_queue_max(struct tls_conn *conn, size_t bytes);
void *tls_conn_user(const struct tls_conn *conn);
void tls_conn_set_user(struct tls_conn *conn, void *user);

#endif
