#include "net/tls.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>

#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/fileio.h"
#include "net/net.h"

#define READ_CHUNK 16384
/* Read-ahead of connections without io_buffer (control streams): held only
 * while a read is under way, so that an idle session keeps no buffer. A
 * heartbeat record is a few hundred bytes. */
#define READ_AHEAD_ON_DEMAND 4096
#define WRITE_CHUNK 16384

/* One WOLFSSL_CTX and what it trusts. Connections hold a reference, so an
 * identity or bundle change never pulls a context out from under a live
 * connection. */
struct tls_generation {
    WOLFSSL_CTX *ssl_ctx;
    struct pki_bundle *bundle;
    int refs;
};

struct tls_ctx {
    enum tls_side side;
    size_t io_buffer;
    char alpn[64];
    bool peer_cert_optional;
    const struct ztr_clock *clock;
    int (*resolve)(void *ctx, const char *trust_domain, struct pki_bundle **bundle,
                   struct ztr_err *err);
    void *resolve_ctx;
    char *chain_pem, *key_pem, *bundle_pem;
    size_t chain_len, key_len, bundle_len;
    struct tls_generation *current;
    /* tls_ctx_config.trusts, owned: which bundle each trust domain's peers
     * are checked against (trust_resolve); NULL when not used. */
    struct tls_trust *trusts;
    size_t trust_count;
};

enum conn_state { CONN_HANDSHAKE, CONN_OPEN, CONN_CLOSED };

struct tls_conn {
    struct ev_loop *loop;
    struct tls_ctx *ctx;
    struct tls_generation *gen;
    WOLFSSL *ssl;
    int fd;
    ev_io io;
    ev_timer handshake_timer;
    ev_prepare flush_watch;   /* writes of one loop turn go out together */
    enum conn_state state;
    struct pki_tls_check check;
    char trust_domain[PKI_TRUST_DOMAIN_MAX + 1];
    char *spiffe_id;          /* the one peer expected (dialers), or NULL: allocated
                                 only then, as most connections expect a role */
    char dial_ip[64];
    char peer_addr[80];
    /* Plaintext waiting for wolfSSL_write: out[out_off, out_len). */
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    size_t retry_len;   /* a write that returned WANT_WRITE must be retried as is */
    size_t queue_max;
    /* Buffered socket I/O (tls_ctx_config.io_buffer): socket bytes wolfSSL
     * has not asked for yet, in[in_off, in_len); records wolfSSL wrote that
     * the socket has not taken yet, enc[enc_off, enc_len). */
    uint8_t *in, *enc;
    size_t in_off, in_len, in_cap;
    /* A recv() this readiness returned less than asked: the socket is
     * empty, and asking again would only return EAGAIN. The loop's
     * level-triggered watcher says when more arrives. */
    bool in_drained;
    size_t enc_off, enc_len, enc_cap;
    int want_events;          /* what the TLS state needs; EV_WRITE is added
                                 while enc holds bytes */
    struct tls_conn_callbacks callbacks;
    void *user;
    bool close_requested;
    bool connect_checked;     /* client: the TCP connect's own result was read */
    char close_reason[ZTR_ERR_MSG_MAX];
    /* The peer's chain since it proved a renewed certificate on this
     * connection (tls_conn_peer_renewed); NULL: the handshake's. */
    struct pki_chain *renewed;
};

/* ---- contexts ----------------------------------------------------------- */

static void
generation_release(struct tls_generation *gen)
{
    if (gen == NULL || --gen->refs > 0)
        return;
    wolfSSL_CTX_free(gen->ssl_ctx);
    pki_bundle_free(gen->bundle);
    free(gen);
}

static int
generation_new(const struct tls_ctx *ctx, struct tls_generation **out, struct ztr_err *err)
{
    TRY(pki_init(err));
    struct tls_generation *gen = calloc(1, sizeof(*gen));
    if (gen == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    gen->refs = 1;
    /* TLS 1.3 methods only: no configuration can negotiate anything older. */
    gen->ssl_ctx = wolfSSL_CTX_new(ctx->side == TLS_SIDE_SERVER ? wolfTLSv1_3_server_method()
                                                                 : wolfTLSv1_3_client_method());
    if (gen->ssl_ctx == NULL) {
        free(gen);
        return ztr_err_set(err, ZTR_E_CRYPTO, "cannot create a TLS 1.3 context");
    }
    /* No session resumption exists in our wolfSSL build (NO_SESSION_CACHE,
     * NO_PSK, no tickets): every connection proves its certificate anew, so a
     * revoked or renewed identity never rides on an old session. */
#if !defined(NO_SESSION_CACHE) || !defined(NO_PSK) || defined(HAVE_SESSION_TICKET)
#error "ztr requires a wolfSSL without TLS session resumption"
#endif
    int rc = 0;
    if (ctx->chain_pem != NULL) {
        if (wolfSSL_CTX_use_certificate_chain_buffer_format(
                gen->ssl_ctx, (const unsigned char *)ctx->chain_pem, (long)ctx->chain_len,
                WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS ||
            wolfSSL_CTX_use_PrivateKey_buffer(gen->ssl_ctx, (const unsigned char *)ctx->key_pem,
                                              (long)ctx->key_len,
                                              WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS ||
            wolfSSL_CTX_check_private_key(gen->ssl_ctx) != WOLFSSL_SUCCESS)
            rc = ztr_err_set(err, ZTR_E_CRYPTO,
                             "TLS identity rejected: certificate and key do not load or match");
    }
    if (rc == 0)
        rc = pki_bundle_from_pem(ctx->bundle_pem, ctx->bundle_len, &gen->bundle, err);
    if (rc == 0)
        rc = pki_tls_load_bundle(gen->ssl_ctx, gen->bundle, err);
    if (rc != 0) {
        generation_release(gen);
        return -1;
    }
    *out = gen;
    return 0;
}

static int
replace_copy(char **field, size_t *field_len, const char *value, size_t len,
             struct ztr_err *err)
{
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    memcpy(copy, value, len);
    copy[len] = '\0';
    if (*field != NULL) {
        explicit_bzero(*field, *field_len);
        free(*field);
    }
    *field = copy;
    *field_len = len;
    return 0;
}

/* ---- trust domains, each its own bundle ------------------------------------ */

static void
trusts_free(struct tls_trust *trusts, size_t count)
{
    for (size_t i = 0; trusts != NULL && i < count; i++) {
        free((char *)trusts[i].trust_domain);
        free((char *)trusts[i].bundle_pem);
    }
    free(trusts);
}

/* Copies of trusts, and every bundle concatenated: wolfSSL's anchors. */
static int
trusts_copy(const struct tls_trust *trusts, size_t count, struct tls_trust **out,
            char **anchors, size_t *anchors_len, struct ztr_err *err)
{
    *out = NULL;
    *anchors = NULL;
    if (count == 0 || count > TLS_TRUSTS_MAX)
        return ztr_err_set(err, ZTR_E_INVALID, "between 1 and %d trust domains", TLS_TRUSTS_MAX);
    struct tls_trust *copy = calloc(count, sizeof(*copy));
    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += trusts[i].bundle_len + 1;
    char *all = malloc(total + 1);
    if (copy == NULL || all == NULL) {
        free(copy);
        free(all);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        copy[i].trust_domain = strdup(trusts[i].trust_domain);
        char *pem = malloc(trusts[i].bundle_len + 1);
        if (pem != NULL) {
            memcpy(pem, trusts[i].bundle_pem, trusts[i].bundle_len);
            pem[trusts[i].bundle_len] = '\0';
        }
        copy[i].bundle_pem = pem;
        copy[i].bundle_len = trusts[i].bundle_len;
        if (copy[i].trust_domain == NULL || pem == NULL) {
            trusts_free(copy, count);
            free(all);
            return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        }
        memcpy(all + at, pem, trusts[i].bundle_len);
        at += trusts[i].bundle_len;
        all[at++] = '\n';
    }
    all[at] = '\0';
    *out = copy;
    *anchors = all;
    *anchors_len = at;
    return 0;
}

/* The resolver of a context with trusts: the bundle of the trust domain a
 * peer claims, as the context holds it now (a recheck after a change sees
 * the change). Runs on the context's loop. */
static int
trust_resolve(void *arg, const char *trust_domain, struct pki_bundle **bundle, struct ztr_err *err)
{
    const struct tls_ctx *ctx = arg;
    *bundle = NULL;
    for (size_t i = 0; i < ctx->trust_count; i++)
        if (strcmp(ctx->trusts[i].trust_domain, trust_domain) == 0)
            return pki_bundle_from_pem(ctx->trusts[i].bundle_pem, ctx->trusts[i].bundle_len,
                                       bundle, err);
    return ztr_err_set(err, PKI_E_TRUST_DOMAIN_MISMATCH,
                       "%s: %s is not a trust domain admitted here",
                       PKI_MSG_TRUST_DOMAIN_MISMATCH, trust_domain);
}

int
tls_ctx_new(const struct tls_ctx_config *config, struct tls_ctx **out, struct ztr_err *err)
{
    if (config->alpn == NULL || strlen(config->alpn) >= sizeof(((struct tls_ctx *)0)->alpn) ||
        (config->bundle_pem == NULL && config->trust_count == 0))
        return ztr_err_set(err, ZTR_E_INVALID, "TLS context needs an ALPN name and a bundle");
    if ((config->chain_pem == NULL) != (config->key_pem == NULL))
        return ztr_err_set(err, ZTR_E_INVALID, "TLS identity needs both chain and key");
    if (config->side == TLS_SIDE_SERVER && config->chain_pem == NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "a TLS server needs an identity");
    struct tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    ctx->side = config->side;
    ctx->io_buffer = config->io_buffer;
    snprintf(ctx->alpn, sizeof(ctx->alpn), "%s", config->alpn);
    ctx->peer_cert_optional = config->peer_cert_optional;
    ctx->clock = config->clock ? config->clock : clock_system();
    ctx->resolve = config->resolve;
    ctx->resolve_ctx = config->resolve_ctx;
    int rc;
    if (config->trust_count > 0) {
        ctx->trust_count = config->trust_count;
        rc = trusts_copy(config->trusts, config->trust_count, &ctx->trusts, &ctx->bundle_pem,
                         &ctx->bundle_len, err);
        ctx->resolve = trust_resolve;
        ctx->resolve_ctx = ctx;
    } else {
        rc = replace_copy(&ctx->bundle_pem, &ctx->bundle_len, config->bundle_pem,
                          config->bundle_len, err);
    }
    if (rc == 0 && config->chain_pem != NULL)
        rc = replace_copy(&ctx->chain_pem, &ctx->chain_len, config->chain_pem,
                          config->chain_len, err);
    if (rc == 0 && config->key_pem != NULL)
        rc = replace_copy(&ctx->key_pem, &ctx->key_len, config->key_pem, config->key_len, err);
    if (rc == 0)
        rc = generation_new(ctx, &ctx->current, err);
    if (rc != 0) {
        tls_ctx_free(ctx);
        return -1;
    }
    *out = ctx;
    return 0;
}

int
tls_ctx_update(struct tls_ctx *ctx, const char *chain_pem, size_t chain_len,
               const char *key_pem, size_t key_len, const char *bundle_pem, size_t bundle_len,
               struct ztr_err *err)
{
    if ((chain_pem == NULL) != (key_pem == NULL))
        return ztr_err_set(err, ZTR_E_INVALID, "TLS identity needs both chain and key");
    /* Build the new generation from copies first; only a complete one
     * replaces the current. */
    struct tls_ctx next = *ctx;
    next.chain_pem = next.key_pem = next.bundle_pem = NULL;
    int rc = replace_copy(&next.chain_pem, &next.chain_len,
                          chain_pem ? chain_pem : ctx->chain_pem,
                          chain_pem ? chain_len : ctx->chain_len, err);
    if (rc == 0)
        rc = replace_copy(&next.key_pem, &next.key_len, key_pem ? key_pem : ctx->key_pem,
                          key_pem ? key_len : ctx->key_len, err);
    if (rc == 0)
        rc = replace_copy(&next.bundle_pem, &next.bundle_len,
                          bundle_pem ? bundle_pem : ctx->bundle_pem,
                          bundle_pem ? bundle_len : ctx->bundle_len, err);
    struct tls_generation *gen = NULL;
    if (rc == 0)
        rc = generation_new(&next, &gen, err);
    if (rc != 0) {
        free(next.chain_pem);
        if (next.key_pem != NULL)
            explicit_bzero(next.key_pem, next.key_len);
        free(next.key_pem);
        free(next.bundle_pem);
        return -1;
    }
    struct tls_ctx old = *ctx;
    ctx->chain_pem = next.chain_pem;
    ctx->chain_len = next.chain_len;
    ctx->key_pem = next.key_pem;
    ctx->key_len = next.key_len;
    ctx->bundle_pem = next.bundle_pem;
    ctx->bundle_len = next.bundle_len;
    ctx->current = gen;
    free(old.chain_pem);
    if (old.key_pem != NULL)
        explicit_bzero(old.key_pem, old.key_len);
    free(old.key_pem);
    free(old.bundle_pem);
    generation_release(old.current);
    return 0;
}

const struct pki_bundle *
tls_ctx_bundle(const struct tls_ctx *ctx)
{
    return ctx->current->bundle;
}

void
tls_ctx_free(struct tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    generation_release(ctx->current);
    free(ctx->chain_pem);
    if (ctx->key_pem != NULL)
        explicit_bzero(ctx->key_pem, ctx->key_len);
    free(ctx->key_pem);
    free(ctx->bundle_pem);
    trusts_free(ctx->trusts, ctx->trust_count);
    free(ctx);
}

int
tls_ctx_update_trust(struct tls_ctx *ctx, const struct tls_trust *trusts, size_t count,
                     struct ztr_err *err)
{
    if (ctx->trusts == NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "this TLS context was made without trust domains");
    struct tls_trust *copy;
    char *anchors;
    size_t anchors_len;
    TRY(trusts_copy(trusts, count, &copy, &anchors, &anchors_len, err));
    /* New anchors first: only a complete generation replaces the current. */
    int rc = tls_ctx_update(ctx, NULL, 0, NULL, 0, anchors, anchors_len, err);
    free(anchors);
    if (rc != 0) {
        trusts_free(copy, count);
        return -1;
    }
    trusts_free(ctx->trusts, ctx->trust_count);
    ctx->trusts = copy;
    ctx->trust_count = count;
    return 0;
}

/* ---- connections -------------------------------------------------------- */

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* Asks for close; the conn is finished from its own watcher callback, so
 * on_close never runs inside a caller's call into this module. */
static void
conn_request_close(struct tls_conn *conn, const char *reason)
{
    if (conn->close_requested || conn->state == CONN_CLOSED)
        return;
    conn->close_requested = true;
    snprintf(conn->close_reason, sizeof(conn->close_reason), "%s", reason);
    ev_feed_event(conn->loop, &conn->io, EV_CUSTOM);
}

static void conn_flush(struct tls_conn *conn);
static int enc_send(struct tls_conn *conn);
static void conn_send_output(struct tls_conn *conn);

static void
conn_finish(struct tls_conn *conn)
{
    if (conn->state == CONN_OPEN) {
        /* A reply queued just before closing (an error, `revoked`) goes out
         * if the socket takes it now; nothing waits for a slow peer. */
        if (conn->out_len > conn->out_off) {
            char reason[sizeof(conn->close_reason)];
            memcpy(reason, conn->close_reason, sizeof(reason));
            conn->close_requested = false;
            conn_flush(conn);
            conn->close_requested = true;
            memcpy(conn->close_reason, reason, sizeof(reason));
        }
        wolfSSL_shutdown(conn->ssl); /* one try at close_notify, never waits */
        if (conn->enc != NULL)
            (void)enc_send(conn);
    } else if (conn->enc != NULL) {
        /* A refused handshake: the alert wolfSSL wrote tells the peer why
         * (protocol version, ALPN, certificate); one try, never waits. */
        (void)enc_send(conn);
    }
    conn->state = CONN_CLOSED;
    ev_io_stop(conn->loop, &conn->io);
    ev_timer_stop(conn->loop, &conn->handshake_timer);
    ev_prepare_stop(conn->loop, &conn->flush_watch);
    if (conn->callbacks.on_close != NULL)
        conn->callbacks.on_close(conn, conn->close_reason, conn->user);
    wolfSSL_free(conn->ssl);
    close(conn->fd);
    generation_release(conn->gen);
    pki_chain_free(conn->renewed);
    pki_tls_check_release(&conn->check);
    free(conn->spiffe_id);
    free(conn->out);
    free(conn->in);
    free(conn->enc);
    free(conn);
}

static void
conn_apply_events(struct tls_conn *conn)
{
    int events = conn->want_events | (conn->enc_len > conn->enc_off ? EV_WRITE : 0);
    if (conn->io.events == events && ev_is_active(&conn->io))
        return;
    ev_io_stop(conn->loop, &conn->io);
    ev_io_set(&conn->io, conn->fd, events);
    ev_io_start(conn->loop, &conn->io);
}

static void
conn_set_events(struct tls_conn *conn, int events)
{
    conn->want_events = events;
    conn_apply_events(conn);
}

static const char *
ssl_error_text(struct tls_conn *conn, int ret, char *buf, size_t cap)
{
    int code = wolfSSL_get_error(conn->ssl, ret);
    if (code == WOLFSSL_ERROR_ZERO_RETURN)
        return "peer closed the connection";
    if (code == SOCKET_PEER_CLOSED_E || code == SOCKET_ERROR_E)
        return "connection closed by peer";
    char text[WOLFSSL_MAX_ERROR_SZ];
    wolfSSL_ERR_error_string_n((unsigned long)code, text, sizeof(text));
    snprintf(buf, cap, "TLS error %d: %s", code, text);
    return buf;
}

static bool
peer_sent_certificate(WOLFSSL *ssl)
{
    WOLFSSL_X509 *peer = wolfSSL_get_peer_certificate(ssl);
    if (peer == NULL)
        return false;
    wolfSSL_X509_free(peer);
    return true;
}

static void
conn_handshake(struct tls_conn *conn)
{
    /* A refused or unreachable connect must read as such, not as whatever
     * wolfSSL makes of the failed send (`connection closed by peer`). */
    if (conn->ctx->side == TLS_SIDE_CLIENT && !conn->connect_checked) {
        conn->connect_checked = true;
        int socket_error = 0;
        socklen_t socket_error_len = sizeof(socket_error);
        if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &socket_error, &socket_error_len) == 0 &&
            socket_error != 0) {
            char text[128], reason[160];
            snprintf(reason, sizeof(reason), "connect: %s",
                     file_strerror(socket_error, text, sizeof(text)));
            conn_request_close(conn, reason);
            return;
        }
    }
    int ret = conn->ctx->side == TLS_SIDE_SERVER ? wolfSSL_accept(conn->ssl)
                                                 : wolfSSL_connect(conn->ssl);
    if (ret == WOLFSSL_SUCCESS) {
        /* FAILED_ON_MISMATCH only fails a peer that offers another protocol;
         * one that offers none must not get through either. */
        char *protocol = NULL;
        unsigned short protocol_len = 0;
        if (wolfSSL_ALPN_GetProtocol(conn->ssl, &protocol, &protocol_len) != WOLFSSL_SUCCESS ||
            protocol_len != strlen(conn->ctx->alpn) ||
            memcmp(protocol, conn->ctx->alpn, protocol_len) != 0) {
            char reason[128];
            snprintf(reason, sizeof(reason), "peer did not negotiate ALPN %s", conn->ctx->alpn);
            conn_request_close(conn, reason);
            return;
        }
        /* The verify hook is the only place our rules run; a handshake that
         * finished without its verdict must not reach on_ready. */
        struct ztr_err verdict = {0};
        if (pki_tls_check_admit(&conn->check, peer_sent_certificate(conn->ssl), &verdict) != 0) {
            conn_request_close(conn, verdict.msg);
            return;
        }
        conn->state = CONN_OPEN;
        ev_timer_stop(conn->loop, &conn->handshake_timer);
        if (conn->callbacks.on_ready != NULL)
            conn->callbacks.on_ready(conn, conn->user);
        return;
    }
    int code = wolfSSL_get_error(conn->ssl, ret);
    if (code == WOLFSSL_ERROR_WANT_READ || code == WOLFSSL_ERROR_WANT_WRITE) {
        conn_set_events(conn, code == WOLFSSL_ERROR_WANT_READ ? EV_READ : EV_WRITE);
        return;
    }
    /* Our own verdict on the peer is the most useful reason; otherwise what
     * wolfSSL saw (including an alert from a peer that rejected us). */
    char buf[ZTR_ERR_MSG_MAX];
    int socket_error = 0;
    socklen_t socket_error_len = sizeof(socket_error);
    if (conn->check.err.code != ZTR_OK) {
        conn_request_close(conn, conn->check.err.msg);
    } else if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &socket_error, &socket_error_len) == 0 &&
               socket_error != 0) {
        /* The TCP connect itself failed (refused, unreachable): say so. */
        char reason[128];
        snprintf(buf, sizeof(buf), "connect: %s",
                 file_strerror(socket_error, reason, sizeof(reason)));
        conn_request_close(conn, buf);
    } else {
        conn_request_close(conn, ssl_error_text(conn, ret, buf, sizeof(buf)));
    }
}

static void
conn_flush(struct tls_conn *conn)
{
    while (conn->out_off < conn->out_len && !conn->close_requested) {
        size_t pending = conn->out_len - conn->out_off;
        size_t chunk = conn->retry_len ? conn->retry_len : (pending < WRITE_CHUNK ? pending : WRITE_CHUNK);
        int ret = wolfSSL_write(conn->ssl, conn->out + conn->out_off, (int)chunk);
        if (ret > 0) {
            conn->out_off += (size_t)ret;
            conn->retry_len = 0;
            continue;
        }
        int code = wolfSSL_get_error(conn->ssl, ret);
        if (code == WOLFSSL_ERROR_WANT_WRITE || code == WOLFSSL_ERROR_WANT_READ) {
            conn->retry_len = chunk;
            conn_set_events(conn, EV_READ | EV_WRITE);
            return;
        }
        char buf[ZTR_ERR_MSG_MAX];
        conn_request_close(conn, ssl_error_text(conn, ret, buf, sizeof(buf)));
        return;
    }
    if (conn->out_off == conn->out_len) {
        conn->out_off = conn->out_len = 0;
        /* A control stream writes a few frames a minute: its queue is not
         * worth keeping between them (thousands of idle sessions). Bulk
         * connections (io_buffer) keep theirs. */
        if (conn->ctx->io_buffer == 0 && conn->retry_len == 0) {
            free(conn->out);
            conn->out = NULL;
            conn->out_cap = 0;
        }
    }
    conn_set_events(conn, EV_READ);
}

static void
conn_read(struct tls_conn *conn)
{
    uint8_t buf[READ_CHUNK];
    /* wolfSSL may hold decrypted records the socket no longer signals, so
     * read until it asks for more input. */
    while (conn->state == CONN_OPEN && !conn->close_requested) {
        int ret = wolfSSL_read(conn->ssl, buf, sizeof(buf));
        if (ret > 0) {
            if (conn->callbacks.on_data != NULL)
                conn->callbacks.on_data(conn, buf, (size_t)ret, conn->user);
            continue;
        }
        int code = wolfSSL_get_error(conn->ssl, ret);
        if (code == WOLFSSL_ERROR_WANT_READ)
            return;
        if (code == WOLFSSL_ERROR_WANT_WRITE) {
            conn_set_events(conn, EV_READ | EV_WRITE);
            return;
        }
        char text[ZTR_ERR_MSG_MAX];
        conn_request_close(conn, ssl_error_text(conn, ret, text, sizeof(text)));
        return;
    }
}

static void
conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct tls_conn *conn = w->data;
    conn->in_drained = false;
    if (!conn->close_requested && conn->state == CONN_HANDSHAKE)
        conn_handshake(conn);
    if (!conn->close_requested && conn->state == CONN_OPEN) {
        if (conn->out_len > conn->out_off)
            conn_flush(conn);
        if (!conn->close_requested && (revents & EV_READ))
            conn_read(conn);
        if (!conn->close_requested && conn->out_len > conn->out_off)
            conn_flush(conn);
    }
    conn_send_output(conn);
    /* An on-demand read-ahead goes once wolfSSL took all of it. */
    if (conn->ctx->io_buffer == 0 && conn->in != NULL && conn->in_off == conn->in_len) {
        free(conn->in);
        conn->in = NULL;
        conn->in_off = conn->in_len = conn->in_cap = 0;
    }
    if (conn->close_requested)
        conn_finish(conn);
}

static void
conn_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tls_conn *conn = w->data;
    conn_request_close(conn, "TLS handshake timed out");
}

/* Sends what enc holds: 0 when all of it went, 1 when the socket is full,
 * -1 on an error (errno kept). */
static int
enc_send(struct tls_conn *conn)
{
    while (conn->enc_off < conn->enc_len) {
        ssize_t n = send(conn->fd, conn->enc + conn->enc_off, conn->enc_len - conn->enc_off,
                         MSG_NOSIGNAL);
        if (n > 0) {
            conn->enc_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        if (n == 0)
            errno = EPIPE;
        return -1;
    }
    conn->enc_off = conn->enc_len = 0;
    return 0;
}

/* wolfSSL sends every record with its own send(); collected here, the
 * records of one flush go out in one call. */
static int
conn_send_cb(WOLFSSL *ssl, char *buf, int size, void *ctx)
{
    (void)ssl;
    struct tls_conn *conn = ctx;
    if (conn->enc_len + (size_t)size > conn->enc_cap) {
        if (enc_send(conn) < 0)
            return errno == ECONNRESET || errno == EPIPE ? WOLFSSL_CBIO_ERR_CONN_RST
                                                        : WOLFSSL_CBIO_ERR_GENERAL;
        if (conn->enc_off > 0) {
            memmove(conn->enc, conn->enc + conn->enc_off, conn->enc_len - conn->enc_off);
            conn->enc_len -= conn->enc_off;
            conn->enc_off = 0;
        }
        if (conn->enc_len + (size_t)size > conn->enc_cap) {
            conn_apply_events(conn);
            return WOLFSSL_CBIO_ERR_WANT_WRITE;
        }
    }
    memcpy(conn->enc + conn->enc_len, buf, (size_t)size);
    conn->enc_len += (size_t)size;
    return size;
}

/* After wolfSSL ran: the collected records go to the socket. */
static void
conn_send_output(struct tls_conn *conn)
{
    if (conn->enc == NULL || conn->close_requested)
        return;
    if (enc_send(conn) < 0) {
        char text[128], reason[160];
        snprintf(reason, sizeof(reason), "send: %s", file_strerror(errno, text, sizeof(text)));
        conn_request_close(conn, reason);
        return;
    }
    conn_apply_events(conn);
}

/* wolfSSL reads a record header and then its body, two recv() calls a
 * record, and one more that returns EAGAIN; with read-ahead one recv()
 * takes what the socket has and the records are served from memory. */
static int
conn_recv_cb(WOLFSSL *ssl, char *buf, int size, void *ctx)
{
    (void)ssl;
    struct tls_conn *conn = ctx;
    if (conn->in_off == conn->in_len) {
        if (conn->in_drained)
            return WOLFSSL_CBIO_ERR_WANT_READ;
        if (conn->in == NULL) {
            conn->in = malloc(READ_AHEAD_ON_DEMAND);
            if (conn->in == NULL)
                return WOLFSSL_CBIO_ERR_GENERAL;
            conn->in_cap = READ_AHEAD_ON_DEMAND;
        }
        ssize_t n;
        do {
            n = recv(conn->fd, conn->in, conn->in_cap, 0);
        } while (n < 0 && errno == EINTR);
        if (n == 0)
            return WOLFSSL_CBIO_ERR_CONN_CLOSE;
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return WOLFSSL_CBIO_ERR_WANT_READ;
            if (errno == ECONNRESET)
                return WOLFSSL_CBIO_ERR_CONN_RST;
            return WOLFSSL_CBIO_ERR_GENERAL;
        }
        conn->in_off = 0;
        conn->in_len = (size_t)n;
        conn->in_drained = (size_t)n < conn->in_cap;
    }
    size_t take = conn->in_len - conn->in_off;
    if (take > (size_t)size)
        take = (size_t)size;
    memcpy(buf, conn->in + conn->in_off, take);
    conn->in_off += take;
    return (int)take;
}

static void
conn_flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct tls_conn *conn = w->data;
    ev_prepare_stop(loop, w);
    if (conn->state == CONN_OPEN && !conn->close_requested && conn->out_len > conn->out_off)
        conn_flush(conn);   /* a failure requests the close itself */
    conn_send_output(conn);
}

int
tls_conn_new(struct ev_loop *loop, struct tls_ctx *ctx, int fd,
             const struct pki_expect *expect, const struct tls_conn_callbacks *callbacks,
             void *user, struct tls_conn **out, struct ztr_err *err)
{
    /* A client with a resolver takes whichever trust domain the server
     * claims: only an exact expected SPIFFE ID pins it. */
    if (ctx->side == TLS_SIDE_CLIENT && ctx->resolve != NULL && expect->spiffe_id == NULL) {
        close(fd);
        return ztr_err_set(err, ZTR_E_INVALID,
                           "a client resolving trust domains must expect an exact SPIFFE ID");
    }
    struct tls_conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        close(fd);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    conn->loop = loop;
    conn->ctx = ctx;
    conn->fd = fd;
    conn->gen = ctx->current;
    conn->gen->refs++;
    conn->callbacks = *callbacks;
    conn->user = user;
    conn->queue_max = TLS_WRITE_QUEUE_MAX;
    if (ctx->io_buffer > 0) {
        conn->in = malloc(ctx->io_buffer);
        if (conn->in == NULL) {
            close(fd);
            generation_release(conn->gen);
            free(conn);
            return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        }
        conn->in_cap = ctx->io_buffer;
        conn->enc = malloc(ctx->io_buffer * 2);
        if (conn->enc == NULL) {
            close(fd);
            generation_release(conn->gen);
            free(conn->in);
            free(conn);
            return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        }
        conn->enc_cap = ctx->io_buffer * 2;
    }
    net_peer_name(fd, conn->peer_addr, sizeof(conn->peer_addr));
    snprintf(conn->trust_domain, sizeof(conn->trust_domain), "%s", expect->trust_domain);
    conn->check.bundle = conn->gen->bundle;
    conn->check.clock = ctx->clock;
    conn->check.peer_cert_optional = ctx->side == TLS_SIDE_SERVER && ctx->peer_cert_optional;
    conn->check.expect = *expect;
    conn->check.expect.trust_domain = conn->trust_domain;
    conn->check.resolve = ctx->resolve;
    conn->check.resolve_ctx = ctx->resolve_ctx;
    if (expect->spiffe_id != NULL) {
        conn->spiffe_id = strndup(expect->spiffe_id, PKI_SPIFFE_ID_MAX);
        if (conn->spiffe_id == NULL) {
            close(fd);
            generation_release(conn->gen);
            free(conn->in);
            free(conn->enc);
            free(conn);
            return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        }
        conn->check.expect.spiffe_id = conn->spiffe_id;
    }
    if (expect->dial_ip != NULL) {
        snprintf(conn->dial_ip, sizeof(conn->dial_ip), "%s", expect->dial_ip);
        conn->check.expect.dial_ip = conn->dial_ip;
    }
    conn->ssl = wolfSSL_new(conn->gen->ssl_ctx);
    int rc = conn->ssl == NULL ? -1 : 0;
    if (rc == 0 && wolfSSL_set_fd(conn->ssl, fd) != WOLFSSL_SUCCESS)
        rc = -1;
    if (rc == 0) {
        wolfSSL_set_using_nonblock(conn->ssl, 1);
        wolfSSL_SSLSetIORecv(conn->ssl, conn_recv_cb);
        wolfSSL_SetIOReadCtx(conn->ssl, conn);
        if (conn->enc != NULL) {
            wolfSSL_SSLSetIOSend(conn->ssl, conn_send_cb);
            wolfSSL_SetIOWriteCtx(conn->ssl, conn);
        }
        /* Both sides must name the same protocol, or the handshake fails:
         * a data-plane client can never land on the control plane. */
        if (wolfSSL_UseALPN(conn->ssl, ctx->alpn, (unsigned)strlen(ctx->alpn),
                            WOLFSSL_ALPN_FAILED_ON_MISMATCH) != WOLFSSL_SUCCESS)
            rc = -1;
    }
    if (rc == 0 && pki_tls_check_install(conn->ssl, &conn->check, err) != 0)
        rc = -2;
    if (rc != 0) {
        if (rc == -1)
            ztr_err_set(err, ZTR_E_CRYPTO, "cannot set up a TLS connection");
        if (conn->ssl != NULL)
            wolfSSL_free(conn->ssl);
        close(fd);
        generation_release(conn->gen);
        free(conn->spiffe_id);
        free(conn->in);
        free(conn->enc);
        free(conn);
        return -1;
    }
    ev_io_init(&conn->io, conn_io_cb, fd, EV_READ | EV_WRITE);
    conn->io.data = conn;
    ev_io_start(loop, &conn->io);
    ev_timer_init(&conn->handshake_timer, conn_timeout_cb, TLS_HANDSHAKE_TIMEOUT_MS / 1000.0, 0);
    conn->handshake_timer.data = conn;
    ev_timer_start(loop, &conn->handshake_timer);
    ev_prepare_init(&conn->flush_watch, conn_flush_cb);
    conn->flush_watch.data = conn;
    *out = conn;
    return 0;
}

int
tls_conn_write(struct tls_conn *conn, const void *data, size_t len, struct ztr_err *err)
{
    if (conn->state == CONN_CLOSED || conn->close_requested)
        return ztr_err_set(err, ZTR_E_IO, "connection is closing");
    size_t queued = conn->out_len - conn->out_off;
    if (queued + len > conn->queue_max)
        return ztr_err_set(err, ZTR_E_LIMIT, "peer is not reading: %zu bytes queued", queued);
    if (conn->out_len + len > conn->out_cap) {
        /* Compact first; grow only when the live part does not fit. A
         * retried write keeps its bytes where wolfSSL last saw them. */
        if (conn->out_off > 0 && conn->retry_len == 0) {
            memmove(conn->out, conn->out + conn->out_off, queued);
            conn->out_len = queued;
            conn->out_off = 0;
        }
        if (conn->out_len + len > conn->out_cap) {
            size_t cap = conn->out_cap ? conn->out_cap : 4096;
            while (cap < conn->out_len + len)
                cap *= 2;
            uint8_t *grown = realloc(conn->out, cap);
            if (grown == NULL)
                return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
            conn->out = grown;
            conn->out_cap = cap;
        }
    }
    memcpy(conn->out + conn->out_len, data, len);
    conn->out_len += len;
    /* Flushed once this loop turn is done (ev_prepare), not per call: many
     * frames become few records, and no extra poll round trip. */
    if (conn->state == CONN_OPEN && !ev_is_active(&conn->flush_watch))
        ev_prepare_start(conn->loop, &conn->flush_watch);
    return 0;
}

void
tls_conn_close(struct tls_conn *conn, const char *reason)
{
    conn_request_close(conn, reason);
}

bool
tls_conn_peer_verified(const struct tls_conn *conn)
{
    return conn->check.verified;
}

const struct pki_spiffe_id *
tls_conn_peer_id(const struct tls_conn *conn)
{
    return conn->check.verified ? &conn->check.peer : NULL;
}

const uint8_t *
tls_conn_peer_public_key(const struct tls_conn *conn, size_t *len)
{
    if (!conn->check.verified || conn->check.peer_public_key_len == 0)
        return NULL;
    *len = conn->check.peer_public_key_len;
    return conn->check.peer_public_key;
}

/* A copy of the verified peer's chain: the one it proved on this
 * connection last (tls_conn_peer_renewed), else the handshake's (kept by
 * the verify hook, pki_tls_check). */
static int
peer_chain(const struct tls_conn *conn, struct pki_chain **out, struct ztr_err *err)
{
    const struct pki_chain *held = conn->renewed != NULL ? conn->renewed : conn->check.chain;
    if (!conn->check.verified || held == NULL)
        return ztr_err_set(err, PKI_E_BAD_CERT, "x509: the peer's chain is not available");
    const uint8_t *ders[PKI_MAX_CHAIN];
    size_t lens[PKI_MAX_CHAIN];
    size_t count = pki_chain_length(held);
    if (count == 0 || count > PKI_MAX_CHAIN)
        return ztr_err_set(err, PKI_E_BAD_CERT, "x509: the peer's chain is not available");
    for (size_t i = 0; i < count; i++)
        ders[i] = pki_chain_der(held, i, &lens[i]);
    return pki_chain_from_der_list(ders, lens, count, out, err);
}

int64_t
tls_conn_peer_not_after(const struct tls_conn *conn)
{
    struct pki_chain *chain;
    struct ztr_err err;
    if (peer_chain(conn, &chain, &err) != 0)
        return 0;
    int64_t first = 0;
    for (size_t i = 0; i < pki_chain_length(chain); i++) {
        size_t len;
        const uint8_t *der = pki_chain_der(chain, i, &len);
        struct pki_cert_info info;
        if (pki_cert_info_parse(der, len, &info, &err) == 0 &&
            (first == 0 || info.not_after < first))
            first = info.not_after;
    }
    pki_chain_free(chain);
    return first;
}

/* What a verified peer is held to after its handshake: what the handshake
 * expected, now, against the caller's bundle — or, with a resolver, against
 * its own trust domain's bundle as it is now, so that a peer trust domain
 * no longer admitted (federation revoked) fails here. *resolved is the
 * caller's to free. */
static int
peer_trust(const struct tls_conn *conn, struct pki_bundle **resolved, struct pki_expect *expect,
           struct ztr_err *err)
{
    *resolved = NULL;
    *expect = conn->check.expect;
    expect->now = clock_wall_s(conn->check.clock != NULL ? conn->check.clock : clock_system());
    if (conn->check.resolve == NULL || conn->check.resolved_trust_domain[0] == '\0')
        return 0;
    ztr_err_clear(err);
    if (conn->check.resolve(conn->check.resolve_ctx, conn->check.resolved_trust_domain, resolved,
                            err) != 0 ||
        *resolved == NULL) {
        if (err != NULL && err->code == ZTR_OK)
            ztr_err_set(err, PKI_E_TRUST_DOMAIN_MISMATCH, "%s", PKI_MSG_TRUST_DOMAIN_MISMATCH);
        return -1;
    }
    expect->trust_domain = conn->check.resolved_trust_domain;
    return 0;
}

int
tls_conn_peer_recheck(const struct tls_conn *conn, const struct pki_bundle *bundle,
                      struct ztr_err *err)
{
    struct pki_chain *chain;
    TRY(peer_chain(conn, &chain, err));
    struct pki_expect expect;
    struct pki_bundle *resolved;
    int rc = peer_trust(conn, &resolved, &expect, err);
    if (rc == 0)
        rc = pki_verify(resolved != NULL ? resolved : bundle, chain, &expect, NULL, err);
    pki_bundle_free(resolved);
    pki_chain_free(chain);
    return rc;
}

int
tls_conn_peer_renewed(struct tls_conn *conn, const char *chain_pem, size_t chain_len,
                      const struct pki_bundle *bundle, int64_t *not_after, struct ztr_err *err)
{
    if (!conn->check.verified)
        return ztr_err_set(err, ZTR_E_INVALID, PKI_MSG_PEER_NOT_VERIFIED);
    struct pki_chain *chain;
    TRY(pki_chain_from_pem(chain_pem, chain_len, &chain, err));
    /* Everything the handshake asked of the peer, now, and the same
     * identity: a renewal is never a way to become someone else. */
    struct pki_expect expect;
    struct pki_bundle *resolved;
    struct pki_spiffe_id id;
    int rc = peer_trust(conn, &resolved, &expect, err);
    if (rc == 0)
        rc = pki_verify(resolved != NULL ? resolved : bundle, chain, &expect, &id, err);
    pki_bundle_free(resolved);
    if (rc == 0 && strcmp(id.uri, conn->check.peer.uri) != 0)
        rc = ztr_err_set(err, PKI_E_SPIFFE_ID_MISMATCH,
                         "renewed certificate is for %s, the session's peer is %s", id.uri,
                         conn->check.peer.uri);
    if (rc != 0) {
        pki_chain_free(chain);
        return -1;
    }
    int64_t first = 0;
    for (size_t i = 0; i < pki_chain_length(chain); i++) {
        size_t len;
        const uint8_t *der = pki_chain_der(chain, i, &len);
        struct pki_cert_info info;
        if (pki_cert_info_parse(der, len, &info, NULL) == 0 &&
            (first == 0 || info.not_after < first))
            first = info.not_after;
    }
    pki_chain_free(conn->renewed);
    conn->renewed = chain;
    *not_after = first;
    return 0;
}

const char *
tls_conn_peer_addr(const struct tls_conn *conn)
{
    return conn->peer_addr;
}

void
tls_conn_set_queue_max(struct tls_conn *conn, size_t bytes)
{
    conn->queue_max = bytes;
}

size_t
tls_conn_queued(const struct tls_conn *conn)
{
    return conn->out_len - conn->out_off;
}

void *
tls_conn_user(const struct tls_conn *conn)
{
    return conn->user;
}

void
tls_conn_set_user(struct tls_conn *conn, void *user)
{
    conn->user = user;
}
