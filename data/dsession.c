#include "data/dsession.h"

#include <ev.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/bytes.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "base/metrics.h"

/* A stream's bookkeeping. It leaves its session's list when the stream
 * closes, but a relay may still drain into its socket after that (and after
 * the session is freed), so it points at the agent-wide counters, never at
 * the session. */
struct dstream {
    uint32_t id;
    struct relay *relay;
    void *owner;
    struct dsession_stats *stats;
    void (*on_done)(void *ctx);  /* dsession_set_stream_done */
    void *done_ctx;
    struct dstream *prev, *next;
    bool listed;
    char resource[];
};

struct dsession {
    struct dsession_config config;
    struct dsession_hooks hooks;
    struct tls_conn *conn;
    struct mux *mux;
    struct dstream *streams;
    size_t stream_count;
    int64_t last_input_ms;
    enum mux_code end_code;      /* for on_closed: the mux's, else INTERNAL */
    ev_timer expiry_timer;       /* at the peer's not_after, then at the grace's end */
    int64_t peer_not_after;
    bool in_grace;               /* past not_after, waiting for a renewed certificate */
    bool ready;
    void *user;
};

static int64_t
loop_ms(const struct dsession *s)
{
    return (int64_t)(ev_now(s->config.loop) * 1000.0);
}

/* ---- streams ------------------------------------------------------------------- */

static struct dstream *
stream_add(struct dsession *s, uint32_t id, const char *resource, void *owner)
{
    size_t len = strlen(resource);
    struct dstream *d = calloc(1, sizeof(*d) + len + 1);
    if (d == NULL)
        return NULL;
    d->id = id;
    d->owner = owner;
    d->stats = s->config.stats;
    memcpy(d->resource, resource, len + 1);
    d->next = s->streams;
    if (s->streams != NULL)
        s->streams->prev = d;
    s->streams = d;
    d->listed = true;
    s->stream_count++;
    d->stats->streams++;
    d->stats->streams_total++;
    (void)mux_stream_set_user(s->mux, id, d);
    return d;
}

static void
stream_unlist(struct dsession *s, struct dstream *d)
{
    if (!d->listed)
        return;
    if (d->prev != NULL)
        d->prev->next = d->next;
    else
        s->streams = d->next;
    if (d->next != NULL)
        d->next->prev = d->prev;
    d->prev = d->next = NULL;
    d->listed = false;
    s->stream_count--;
}

static void
stream_free(struct dstream *d, enum mux_code code)
{
    d->stats->streams--;
    if (code != MUX_CODE_NORMAL)
        d->stats->streams_failed++;
    if (d->on_done != NULL)
        d->on_done(d->done_ctx);
    free(d);
}

static void
relay_done(void *user, enum mux_code code, const char *reason, const struct relay_totals *totals)
{
    (void)reason;
    struct dstream *d = user;
    d->stats->bytes_sent += totals->bytes_to_stream;
    d->stats->bytes_received += totals->bytes_to_socket;
    stream_free(d, code);
}

static struct dstream *
stream_of(const struct dsession *s, uint32_t id)
{
    return s->mux != NULL ? mux_stream_user(s->mux, id) : NULL;
}

/* ---- mux callbacks ------------------------------------------------------------------ */

static int
mux_write(void *user, const uint8_t *data, size_t len)
{
    struct dsession *s = user;
    struct ztr_err err;
    if (s->conn == NULL)
        return -1;
    if (tls_conn_write(s->conn, data, len, &err) != 0) {
        /* The session ends for this: say why where operators look. */
        log_warn("data session write failed", "peer=%s error=\"%s\"", tls_conn_peer_addr(s->conn),
                 err.msg);
        return -1;
    }
    return 0;
}

static void
mux_open_cb(void *user, uint32_t id, const char *resource)
{
    struct dsession *s = user;
    /* An expired identity keeps what it has, for its grace, and no more. */
    if (s->in_grace) {
        (void)mux_reset(s->mux, id, MUX_CODE_REFUSED, DSESSION_MSG_PEER_EXPIRED);
        return;
    }
    if (stream_add(s, id, resource, NULL) == NULL) {
        (void)mux_reset(s->mux, id, MUX_CODE_INTERNAL, "out of memory");
        return;
    }
    if (s->hooks.on_open != NULL)
        s->hooks.on_open(s->user, s, id, resource);
    else
        (void)mux_reset(s->mux, id, MUX_CODE_REFUSED, "streams not accepted here");
}

static void
mux_open_ok_cb(void *user, uint32_t id)
{
    struct dsession *s = user;
    struct dstream *d = stream_of(s, id);
    if (d != NULL && s->hooks.on_open_ok != NULL)
        s->hooks.on_open_ok(s->user, s, id, d->owner);
}

static void
mux_data_cb(void *user, uint32_t id, const uint8_t *data, size_t len)
{
    struct dsession *s = user;
    struct dstream *d = stream_of(s, id);
    if (d != NULL && d->relay != NULL) {
        relay_on_data(d->relay, data, len);
        return;
    }
    /* Owners attach inside on_open_ok, so this is a stream being refused. */
    mux_consumed(s->mux, id, len);
}

static void
mux_fin_cb(void *user, uint32_t id)
{
    struct dsession *s = user;
    struct dstream *d = stream_of(s, id);
    if (d != NULL && d->relay != NULL)
        relay_on_fin(d->relay);
}

static void
mux_writable_cb(void *user, uint32_t id)
{
    struct dsession *s = user;
    struct dstream *d = stream_of(s, id);
    if (d != NULL && d->relay != NULL)
        relay_on_writable(d->relay);
}

static void
mux_stream_closed_cb(void *user, uint32_t id, enum mux_code code, const char *reason)
{
    struct dsession *s = user;
    struct dstream *d = stream_of(s, id);
    if (d == NULL)
        return;
    stream_unlist(s, d);
    if (d->relay != NULL) {
        relay_on_stream_closed(d->relay, code, reason);   /* frees d when done */
        return;
    }
    void *owner = d->owner;
    stream_free(d, code);
    if (s->hooks.on_pending_closed != NULL)
        s->hooks.on_pending_closed(s->user, s, id, owner, code, reason);
}

static void
mux_pong_cb(void *user, int64_t rtt_ms)
{
    struct dsession *s = user;
    if (s->hooks.on_pong != NULL)
        s->hooks.on_pong(s->user, s, rtt_ms);
}

static void arm_expiry(struct dsession *s, int64_t at_ms);
static void identity_received(struct dsession *s, const uint8_t *payload, size_t len);

static void
mux_identity_cb(void *user, const uint8_t *payload, size_t len)
{
    identity_received(user, payload, len);
}

static void
mux_session_closed_cb(void *user, enum mux_code code, const char *reason)
{
    struct dsession *s = user;
    s->end_code = code;
    if (s->conn != NULL)
        tls_conn_close(s->conn, reason);
}

static const struct mux_callbacks mux_callbacks = {
    .write = mux_write,
    .on_open = mux_open_cb,
    .on_open_ok = mux_open_ok_cb,
    .on_data = mux_data_cb,
    .on_fin = mux_fin_cb,
    .on_stream_closed = mux_stream_closed_cb,
    .on_writable = mux_writable_cb,
    .on_pong = mux_pong_cb,
    .on_identity = mux_identity_cb,
    .on_session_closed = mux_session_closed_cb,
};

/* ---- TLS callbacks ---------------------------------------------------------------------- */

static void
tls_ready(struct tls_conn *conn, void *user)
{
    struct dsession *s = user;
    const struct dsession_window *w = &s->config.window;
    uint32_t window = w->window != 0 ? w->window : MUX_DEFAULT_WINDOW;
    struct mux_config config = {.role = s->config.role,
                                .window = window,
                                .session_window = mux_session_window(window),
                                .max_window = w->max_window,
                                .session_max_window = mux_session_window(w->max_window)};
    struct ztr_err err;
    if (mux_new(&config, &mux_callbacks, s, &s->mux, &err) != 0) {
        tls_conn_close(conn, err.msg);
        return;
    }
    s->ready = true;
    s->last_input_ms = loop_ms(s);
    /* The peer proved an identity valid until not_after, no longer: the
     * session ends there (after the grace), whatever it carries. */
    s->peer_not_after = tls_conn_peer_not_after(conn);
    if (s->peer_not_after > 0)
        arm_expiry(s, (s->peer_not_after + 1) * 1000);
    if (s->hooks.on_ready != NULL)
        s->hooks.on_ready(s->user, s);
}

static void
tls_data(struct tls_conn *conn, const uint8_t *data, size_t len, void *user)
{
    (void)conn;
    struct dsession *s = user;
    s->last_input_ms = loop_ms(s);
    if (s->mux != NULL)
        (void)mux_input(s->mux, data, len);   /* a failure closes through the mux */
}

static void
tls_closed(struct tls_conn *conn, const char *reason, void *user)
{
    (void)conn;
    struct dsession *s = user;
    s->conn = NULL;
    ev_timer_stop(s->config.loop, &s->expiry_timer);
    /* Streams still open end here (the GOAWAY cannot go out any more). */
    if (s->mux != NULL)
        (void)mux_goaway(s->mux, MUX_CODE_INTERNAL, reason);
    s->config.stats->sessions--;
    if (s->hooks.on_closed != NULL)
        s->hooks.on_closed(s->user, s, s->end_code, reason);
    mux_free(s->mux);
    free(s);
}

static const struct tls_conn_callbacks tls_callbacks = {tls_ready, tls_data, tls_closed};

/* The timer at wall-clock moment at_ms (expired means now > not_after, in
 * whole seconds: the first moment of the second after). */
static void
arm_expiry(struct dsession *s, int64_t at_ms)
{
    int64_t left_ms = at_ms - clock_wall_ms(clock_system());
    ev_timer_stop(s->config.loop, &s->expiry_timer);
    ev_timer_set(&s->expiry_timer, left_ms > 0 ? (double)left_ms / 1000.0 : 0.0, 0.0);
    ev_timer_start(s->config.loop, &s->expiry_timer);
}

static void
expiry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct dsession *s = w->data;
    const struct pki_spiffe_id *peer = dsession_peer_id(s);
    int64_t grace_ms = s->config.window.reauth_grace_ms;
    if (!s->in_grace && grace_ms > 0) {
        /* Its identity ended: no new stream; the ones running wait a
         * bounded while for the peer's renewed certificate. */
        s->in_grace = true;
        log_warn("peer certificate expired: waiting for its renewed certificate",
                 "spiffe_id=%s peer=%s not_after=%lld grace_ms=%lld streams=%zu",
                 peer != NULL ? peer->uri : "", dsession_peer_addr(s),
                 (long long)s->peer_not_after, (long long)grace_ms, s->stream_count);
        arm_expiry(s, (s->peer_not_after + 1) * 1000 + grace_ms);
        return;
    }
    log_warn(DSESSION_MSG_PEER_EXPIRED, "spiffe_id=%s peer=%s not_after=%lld",
             peer != NULL ? peer->uri : "", dsession_peer_addr(s), (long long)s->peer_not_after);
    dsession_close(s, MUX_CODE_REFUSED, DSESSION_MSG_PEER_EXPIRED);
}

/* ---- renewed identities ---------------------------------------------------------------- */

/* The bytes an IDENTITY proof signs. */
static uint8_t *
identity_message(const char *receiver, const char *chain, size_t chain_len, size_t *len)
{
    size_t domain_len = strlen(DSESSION_IDENTITY_DOMAIN) + 1, id_len = strlen(receiver) + 1;
    *len = domain_len + id_len + chain_len;
    uint8_t *data = malloc(*len);
    if (data == NULL)
        return NULL;
    struct bytes_writer w;
    bytes_writer_init(&w, data, *len);
    bytes_write(&w, DSESSION_IDENTITY_DOMAIN, domain_len);
    bytes_write(&w, receiver, id_len);
    bytes_write(&w, chain, chain_len);
    return data;
}

int
dsession_present_identity(struct dsession *s, const char *chain_pem, size_t chain_len,
                          const struct pki_key *key, struct ztr_err *err)
{
    const struct pki_spiffe_id *peer = dsession_peer_id(s);
    if (!dsession_is_ready(s) || s->mux == NULL || peer == NULL)
        return 0;
    /* payload: u16 chain length, chain, u8 signature length, signature */
    if (chain_len + 2 + 1 + PKI_SIGNATURE_MAX > MUX_MAX_PAYLOAD)
        return ztr_err_set(err, ZTR_E_LIMIT, "certificate chain of %zu bytes does not fit",
                           chain_len);
    size_t msg_len;
    uint8_t *msg = identity_message(peer->uri, chain_pem, chain_len, &msg_len);
    if (msg == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    uint8_t sig[PKI_SIGNATURE_MAX];
    size_t sig_len = 0;
    int rc = pki_key_sign(key, msg, msg_len, sig, &sig_len, err);
    free(msg);
    if (rc != 0)
        return -1;
    uint8_t payload[MUX_MAX_PAYLOAD];
    struct bytes_writer w;
    bytes_writer_init(&w, payload, sizeof(payload));
    bytes_write_u16be(&w, (uint16_t)chain_len);
    bytes_write(&w, chain_pem, chain_len);
    bytes_write_u8(&w, (uint8_t)sig_len);
    bytes_write(&w, sig, sig_len);
    if (bytes_writer_failed(&w) || mux_identity(s->mux, payload, bytes_written(&w)) != 0)
        return ztr_err_set(err, ZTR_E_IO, "IDENTITY not sent");
    return 0;
}

/* Checks a peer's IDENTITY: the proof by the new certificate's key,
 * addressed to us, then the chain as the handshake would (same SPIFFE ID). */
static int
identity_check(struct dsession *s, const uint8_t *payload, size_t len, int64_t *not_after,
               struct ztr_err *err)
{
    struct bytes_reader r;
    bytes_reader_init(&r, payload, len);
    uint16_t chain_len = 0;
    uint8_t sig_len = 0;
    const uint8_t *chain = NULL, *sig = NULL;
    (void)bytes_read_u16be(&r, &chain_len);
    (void)bytes_read_view(&r, chain_len, &chain);
    (void)bytes_read_u8(&r, &sig_len);
    (void)bytes_read_view(&r, sig_len, &sig);
    if (bytes_reader_failed(&r) || bytes_remaining(&r) != 0 || chain_len == 0)
        return ztr_err_set(err, ZTR_E_INVALID, "malformed IDENTITY frame");
    if (s->config.self_id == NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "this side takes no renewed identities");
    char *pem = malloc((size_t)chain_len + 1);
    if (pem == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    memcpy(pem, chain, chain_len);
    pem[chain_len] = '\0';
    struct pki_chain *parsed = NULL;
    size_t msg_len = 0, spki_len = 0;
    uint8_t *msg = NULL;
    const uint8_t *spki = NULL;
    int rc = pki_chain_from_pem(pem, chain_len, &parsed, err);
    if (rc == 0 && (spki = pki_chain_leaf_public_key(parsed, &spki_len)) == NULL)
        rc = ztr_err_set(err, ZTR_E_INVALID, "no public key in the certificate");
    if (rc == 0 && (msg = identity_message(s->config.self_id, pem, chain_len, &msg_len)) == NULL)
        rc = ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    if (rc == 0)
        rc = pki_signature_verify(spki, spki_len, msg, msg_len, sig, sig_len, err);
    if (rc == 0)
        rc = tls_conn_peer_renewed(s->conn, pem, chain_len, tls_ctx_bundle(s->config.tls),
                                   not_after, err);
    free(msg);
    free(pem);
    pki_chain_free(parsed);
    return rc;
}

static void
identity_received(struct dsession *s, const uint8_t *payload, size_t len)
{
    const struct pki_spiffe_id *peer = dsession_peer_id(s);
    struct ztr_err err = {0};
    int64_t not_after = 0;
    if (s->conn == NULL || identity_check(s, payload, len, &not_after, &err) != 0) {
        log_warn(DSESSION_MSG_BAD_IDENTITY, "spiffe_id=%s peer=%s error=\"%s\"",
                 peer != NULL ? peer->uri : "", dsession_peer_addr(s), err.msg);
        dsession_close(s, MUX_CODE_REFUSED, DSESSION_MSG_BAD_IDENTITY);
        return;
    }
    /* Only ever later: an older certificate proven again moves nothing. */
    if (not_after > s->peer_not_after) {
        bool was_in_grace = s->in_grace;
        s->peer_not_after = not_after;
        s->in_grace = false;
        arm_expiry(s, (not_after + 1) * 1000);
        log_info("peer certificate renewed", "spiffe_id=%s peer=%s not_after=%lld streams=%zu%s",
                 peer != NULL ? peer->uri : "", dsession_peer_addr(s), (long long)not_after,
                 s->stream_count, was_in_grace ? " after_expiry=true" : "");
    }
}

bool
dsession_peer_in_grace(const struct dsession *s)
{
    return s->in_grace;
}

/* ---- public ------------------------------------------------------------------------------ */

size_t
dsession_queue_max(const struct dsession_window *w)
{
    /* DATA never exceeds the session's credit; the rest are small frames. */
    uint32_t window = w->window != 0 ? w->window : MUX_DEFAULT_WINDOW;
    size_t credit = mux_session_window(window);
    if (mux_session_window(w->max_window) > credit)
        credit = mux_session_window(w->max_window);
    return credit + credit / 4 + 256 * 1024;
}

/* ---- sessions ------------------------------------------------------------------------------ */

int
dsession_new(const struct dsession_config *config, int fd, const struct pki_expect *expect,
             struct dsession **out, struct ztr_err *err)
{
    *out = NULL;
    struct dsession *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        close(fd);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    s->config = *config;
    s->hooks = *config->hooks;
    s->user = config->user;
    s->end_code = MUX_CODE_INTERNAL;
    ev_init(&s->expiry_timer, expiry_cb);
    s->expiry_timer.data = s;
    if (tls_conn_new(config->loop, config->tls, fd, expect, &tls_callbacks, s, &s->conn, err) !=
        0) {
        free(s);
        return -1;
    }
    tls_conn_set_queue_max(s->conn, dsession_queue_max(&config->window));
    config->stats->sessions++;
    config->stats->sessions_total++;
    *out = s;
    return 0;
}

int
dsession_open(struct dsession *s, const char *resource, void *stream_user, uint32_t *stream,
              struct ztr_err *err)
{
    if (s->mux == NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "session not ready");
    if (s->in_grace)
        return ztr_err_set(err, ZTR_E_LIMIT, DSESSION_MSG_PEER_EXPIRED);
    TRY(mux_open(s->mux, resource, stream, err));
    if (stream_add(s, *stream, resource, stream_user) == NULL) {
        (void)mux_reset(s->mux, *stream, MUX_CODE_INTERNAL, "out of memory");
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    return 0;
}

static int
start_relay(struct dsession *s, uint32_t id, int fd, const uint8_t *early, size_t early_len,
            struct ztr_err *err)
{
    struct dstream *d = stream_of(s, id);
    if (d == NULL || d->relay != NULL) {
        close(fd);
        return ztr_err_set(err, ZTR_E_INVALID, "stream %u is not pending", id);
    }
    if (relay_new(s->config.loop, s->config.pool, s->mux, id, fd, early, early_len, relay_done,
                  d, &d->relay, err) != 0) {
        (void)mux_reset(s->mux, id, MUX_CODE_INTERNAL, err->msg);
        return -1;
    }
    d->owner = NULL;
    return 0;
}

int
dsession_attach(struct dsession *s, uint32_t stream, int fd, const uint8_t *early,
                size_t early_len, struct ztr_err *err)
{
    return start_relay(s, stream, fd, early, early_len, err);
}

int
dsession_accept(struct dsession *s, uint32_t stream, int fd, struct ztr_err *err)
{
    if (s->mux == NULL || mux_accept(s->mux, stream, err) != 0) {
        close(fd);
        return s->mux == NULL ? ztr_err_set(err, ZTR_E_INVALID, "session is over") : -1;
    }
    return start_relay(s, stream, fd, NULL, 0, err);
}

int
dsession_reset(struct dsession *s, uint32_t stream, enum mux_code code, const char *reason)
{
    return s->mux != NULL ? mux_reset(s->mux, stream, code, reason) : -1;
}

void *
dsession_stream_user(const struct dsession *s, uint32_t stream)
{
    struct dstream *d = stream_of(s, stream);
    return d != NULL && d->relay == NULL ? d->owner : NULL;
}

void
dsession_set_stream_user(struct dsession *s, uint32_t stream, void *stream_user)
{
    struct dstream *d = stream_of(s, stream);
    if (d != NULL && d->relay == NULL)
        d->owner = stream_user;
}

int
dsession_set_stream_done(struct dsession *s, uint32_t stream, void (*fn)(void *ctx), void *ctx)
{
    struct dstream *d = stream_of(s, stream);
    if (d == NULL)
        return -1;
    d->on_done = fn;
    d->done_ctx = ctx;
    return 0;
}

const char *
dsession_stream_resource(const struct dsession *s, uint32_t stream)
{
    struct dstream *d = stream_of(s, stream);
    return d != NULL ? d->resource : NULL;
}

void
dsession_foreach_stream(struct dsession *s,
                        void (*fn)(void *ctx, struct dsession *s, uint32_t stream,
                                   const char *resource),
                        void *ctx)
{
    /* Ids first: fn may reset (and so free) the stream it is given. */
    size_t n = s->stream_count, i = 0;
    if (n == 0)
        return;
    uint32_t *ids = malloc(n * sizeof(*ids));
    if (ids == NULL)
        return;
    for (struct dstream *d = s->streams; d != NULL && i < n; d = d->next)
        ids[i++] = d->id;
    for (size_t k = 0; k < i && s->mux != NULL; k++) {
        const char *resource = dsession_stream_resource(s, ids[k]);
        if (resource != NULL)
            fn(ctx, s, ids[k], resource);
    }
    free(ids);
}

void
dsession_close(struct dsession *s, enum mux_code code, const char *reason)
{
    if (s->conn == NULL)
        return;
    if (s->mux != NULL && mux_goaway(s->mux, code, reason) == 0)
        return;   /* on_session_closed closes the connection */
    tls_conn_close(s->conn, reason);
}

int
dsession_recheck_peer(struct dsession *s, const struct pki_bundle *bundle)
{
    if (!dsession_is_ready(s) || !tls_conn_peer_verified(s->conn))
        return 0;
    struct ztr_err err = {0};
    if (tls_conn_peer_recheck(s->conn, bundle, &err) == 0)
        return 0;
    const struct pki_spiffe_id *peer = dsession_peer_id(s);
    log_warn(DSESSION_MSG_PEER_UNTRUSTED, "spiffe_id=%s peer=%s error=\"%s\"",
             peer != NULL ? peer->uri : "", dsession_peer_addr(s), err.msg);
    char reason[MUX_REASON_MAX];
    /* The reason goes on the wire: the peer learns that, not our details. */
    snprintf(reason, sizeof(reason), "%s", DSESSION_MSG_PEER_UNTRUSTED);
    dsession_close(s, MUX_CODE_REFUSED, reason);
    return -1;
}

int64_t
dsession_peer_not_after(const struct dsession *s)
{
    return s->peer_not_after;
}

int
dsession_ping(struct dsession *s)
{
    return s->mux != NULL ? mux_ping(s->mux) : -1;
}

bool
dsession_is_ready(const struct dsession *s)
{
    return s->ready && s->conn != NULL;
}

const struct pki_spiffe_id *
dsession_peer_id(const struct dsession *s)
{
    return s->conn != NULL ? tls_conn_peer_id(s->conn) : NULL;
}

const char *
dsession_peer_addr(const struct dsession *s)
{
    return s->conn != NULL ? tls_conn_peer_addr(s->conn) : "unknown";
}

size_t
dsession_stream_count(const struct dsession *s)
{
    return s->stream_count;
}

int64_t
dsession_last_input_ms(const struct dsession *s)
{
    return s->last_input_ms;
}

void *
dsession_user(const struct dsession *s)
{
    return s->user;
}

void
dsession_set_user(struct dsession *s, void *user)
{
    s->user = user;
}

/* ---- counters ------------------------------------------------------------------------------ */

void
dsession_stats_add(struct dsession_stats *sum, const struct dsession_stats *stats)
{
    sum->sessions += stats->sessions;
    sum->sessions_total += stats->sessions_total;
    sum->streams += stats->streams;
    sum->streams_total += stats->streams_total;
    sum->streams_failed += stats->streams_failed;
    sum->bytes_sent += stats->bytes_sent;
    sum->bytes_received += stats->bytes_received;
}

void
dsession_stats_health(const struct dsession_stats *st, json_t *health)
{
    json_object_set_new(
        health, "data",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "sessions", (json_int_t)st->sessions,
                  "sessions_total", (json_int_t)st->sessions_total, "streams",
                  (json_int_t)st->streams, "streams_total", (json_int_t)st->streams_total,
                  "streams_failed", (json_int_t)st->streams_failed, "bytes_sent",
                  (json_int_t)st->bytes_sent, "bytes_received", (json_int_t)st->bytes_received));
}

void
dsession_stats_metrics(const struct dsession_stats *st, const char *role, struct metrics *m)
{
    static const struct metrics_row rows[] = {
        {"ztr_data_sessions", "gauge", "Data-plane sessions open.",
         offsetof(struct dsession_stats, sessions)},
        {"ztr_data_sessions_total", "counter", "Data-plane sessions started.",
         offsetof(struct dsession_stats, sessions_total)},
        {"ztr_data_streams", "gauge", "Streams open.", offsetof(struct dsession_stats, streams)},
        {"ztr_data_streams_total", "counter", "Streams opened.",
         offsetof(struct dsession_stats, streams_total)},
        {"ztr_data_streams_failed_total", "counter", "Streams that ended with a reset.",
         offsetof(struct dsession_stats, streams_failed)},
        {"ztr_data_bytes_sent_total", "counter", "Bytes relayed onto sessions (ended streams).",
         offsetof(struct dsession_stats, bytes_sent)},
        {"ztr_data_bytes_received_total", "counter",
         "Bytes relayed off sessions (ended streams).",
         offsetof(struct dsession_stats, bytes_received)},
    };
    char labels[64];
    snprintf(labels, sizeof(labels), "role=\"%s\"", role);
    metrics_rows(m, rows, sizeof(rows) / sizeof(rows[0]), st, labels);
}

int
dsession_window_config(const struct config *config, struct dsession_window *out,
                       struct ztr_err *err)
{
    uint64_t w = config_get_uint(config, "DATA_WINDOW");
    if (w < MUX_MAX_PAYLOAD || w > (64u << 20))
        return config_fail(config, "DATA_WINDOW", err, "must be 16384..67108864 bytes");
    uint64_t max = config_get_uint(config, "DATA_WINDOW_MAX");
    if (max < w || max > (128u << 20))
        return config_fail(config, "DATA_WINDOW_MAX", err,
                           "must be DATA_WINDOW (%llu)..134217728 bytes", (unsigned long long)w);
    int64_t grace = config_get_duration_ms(config, "DATA_REAUTH_GRACE");
    if (grace < 0 || grace > 10 * 60 * 1000)
        return config_fail(config, "DATA_REAUTH_GRACE", err,
                           "must be 0..10m (an expired identity is never kept longer)");
    out->window = (uint32_t)w;
    out->max_window = (uint32_t)max;
    out->reauth_grace_ms = grace;
    return 0;
}
