#include "connector/dataplane.h"

#include <errno.h>
#include <ev.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/agent.h"
#include "data/dsession.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/metrics.h"
#include "net/net.h"
#include "connector/allowlist.h"

#define LISTEN_BACKLOG 1024
#define POOL_FREE_CHUNKS 256

static const double revocation_bounds[DATAPLANE_REVOCATION_BUCKETS] = {0.001, 0.01, 0.1, 0.5,
                                                                       1,     5};

/* Admission over the whole connector, whichever worker's loop a session
 * landed on: handshakes in progress per source, the session cap, streams
 * per tunneler. Taken once per connection or stream (never per byte),
 * under one mutex held for a table look-up. */
struct dataplane_shared {
    pthread_mutex_t lock;
    unsigned refs;                   /* its maker, each data plane, each stream_hold */
    struct quota *handshakes;        /* handshakes in progress per source */
    struct quota *streams;           /* streams open per tunneler (SPIFFE ID) */
    size_t sessions;                 /* on every worker */
    /* The refusals' log lines are bounded for the connector, not per loop. */
    struct log_limit accept_log;     /* refusals at accept */
    double quota_logged_at;          /* ev_time of the last quota log line */
    uint64_t quota_unlogged;         /* refusals since then */
};

/* A stream's place in its tunneler's quota, given back when the stream is
 * completely over (dsession_set_stream_done). */
struct stream_hold {
    struct dataplane_shared *shared;
    struct quota_key tunneler;
};

struct dp_session {
    struct dataplane *dp;
    struct dsession *ds;
    struct dp_session *prev, *next;
    bool ready;
    bool holds_handshake;            /* counted in shared->handshakes under source */
    struct quota_key source;
    struct quota_key tunneler;       /* its SPIFFE ID's key in shared->streams */
    double removed_at;               /* time the allowlist dropped it (ev_time; 0: not) */
    char spiffe_id[PKI_SPIFFE_ID_MAX + 1];
    bool foreign;                    /* of a peer trust domain: held to its grants */
    struct sockaddr_storage addr;    /* where it connects from (grants' source CIDRs) */
};

/* A stream waiting for its target's TCP connect. */
struct dial {
    struct dp_session *session;
    uint32_t stream;
    int fd;
    ev_io io;
    ev_timer timer;
    char target[128];
    char resource[256];
};

struct dataplane {
    struct ev_loop *loop;
    char *trust_domain;
    struct dataplane_config config;
    const char *self_id;
    const struct ztr_clock *clock;
    struct connector_resource *resources;
    struct tls_ctx *tls;
    struct relay_pool *pool;
    int listen_fd;
    ev_io listen_io;
    ev_timer idle_timer;
    struct dp_session *sessions;
    size_t session_count;
    struct dataplane_shared *shared; /* one reference held */
    struct dataplane_counts counts;  /* this loop's; summed by dataplane_count */
    char refusing[MUX_REASON_MAX];   /* "" = serving */
    bool draining;                   /* new streams refused, open ones carry on */
    struct log_limit scope_log;      /* federation: refusals outside a grant */
};

/* ---- shared admission ------------------------------------------------------------- */

int
dataplane_shared_new(struct dataplane_shared **out, struct ztr_err *err)
{
    *out = NULL;
    struct dataplane_shared *sh = calloc(1, sizeof(*sh));
    if (sh == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    pthread_mutex_init(&sh->lock, NULL);
    sh->refs = 1;
    sh->accept_log = (struct log_limit)LOG_LIMIT_INIT(5, 10000);
    /* Handshake entries exist only while a handshake is in progress: at
     * most one per session slot; stream entries while a tunneler holds
     * streams: at most one per session too. */
    if (quota_new(DATAPLANE_SESSIONS_MAX, 0, &sh->handshakes, err) != 0 ||
        quota_new(DATAPLANE_SESSIONS_MAX, 0, &sh->streams, err) != 0) {
        dataplane_shared_release(sh);
        return -1;
    }
    *out = sh;
    return 0;
}

static void
shared_retain(struct dataplane_shared *sh)
{
    pthread_mutex_lock(&sh->lock);
    sh->refs++;
    pthread_mutex_unlock(&sh->lock);
}

void
dataplane_shared_release(struct dataplane_shared *sh)
{
    if (sh == NULL)
        return;
    pthread_mutex_lock(&sh->lock);
    unsigned left = --sh->refs;
    pthread_mutex_unlock(&sh->lock);
    if (left > 0)
        return;
    pthread_mutex_destroy(&sh->lock);
    quota_free(sh->handshakes);
    quota_free(sh->streams);
    free(sh);
}

/* A new connection: a session slot and a handshake of its source (when it
 * has one), or the refusal's reason. */
static const char *
admit_connection(struct dataplane_shared *sh, const struct quota_key *source, bool has_source,
                 unsigned per_source)
{
    const char *refusal = NULL;
    pthread_mutex_lock(&sh->lock);
    if (sh->sessions >= DATAPLANE_SESSIONS_MAX)
        refusal = "too many sessions open";
    else if (has_source && !quota_enter(sh->handshakes, source, per_source))
        refusal = "too many handshakes from this source";
    else
        sh->sessions++;
    pthread_mutex_unlock(&sh->lock);
    return refusal;
}

static void
release_session_slot(struct dataplane_shared *sh)
{
    pthread_mutex_lock(&sh->lock);
    sh->sessions--;
    pthread_mutex_unlock(&sh->lock);
}

static void
release_source(struct dataplane_shared *sh, const struct quota_key *source)
{
    pthread_mutex_lock(&sh->lock);
    quota_leave(sh->handshakes, source);
    pthread_mutex_unlock(&sh->lock);
}

static void
release_stream(void *ctx)
{
    struct stream_hold *h = ctx;
    pthread_mutex_lock(&h->shared->lock);
    quota_leave(h->shared->streams, &h->tunneler);
    pthread_mutex_unlock(&h->shared->lock);
    /* A relay may drain past its data plane's stop. */
    dataplane_shared_release(h->shared);
    free(h);
}

/* One more stream for this session's tunneler, counted over every session
 * it has on every worker until the stream is completely over; false at
 * its quota (or out of room or memory). */
static bool
take_stream(struct dp_session *s, uint32_t stream)
{
    struct dataplane_shared *sh = s->dp->shared;
    struct stream_hold *h = malloc(sizeof(*h));
    if (h == NULL)
        return false;
    h->shared = sh;
    h->tunneler = s->tunneler;
    pthread_mutex_lock(&sh->lock);
    bool taken = quota_enter(sh->streams, &s->tunneler, s->dp->config.streams_per_tunneler);
    if (taken)
        sh->refs++;
    pthread_mutex_unlock(&sh->lock);
    if (!taken) {
        free(h);
        return false;
    }
    if (dsession_set_stream_done(s->ds, stream, release_stream, h) != 0) {
        release_stream(h);
        return false;
    }
    return true;
}

/* ---- target dials ------------------------------------------------------------------ */

static void
dial_free(struct dial *d)
{
    ev_io_stop(d->session->dp->loop, &d->io);
    ev_timer_stop(d->session->dp->loop, &d->timer);
    if (d->fd >= 0)
        close(d->fd);
    free(d);
}

static void
stream_refused(struct dp_session *s, uint32_t stream, const char *resource, enum mux_code code,
               const char *reason)
{
    log_info("stream refused", "spiffe_id=%s resource=\"%s\" reason=\"%s\"", s->spiffe_id,
             resource, reason);
    (void)dsession_reset(s->ds, stream, code, reason);
}

/* The dial failed: resetting the stream frees it (on_pending_closed). */
static void
dial_failed(struct dial *d, const char *reason)
{
    ev_io_stop(d->session->dp->loop, &d->io);
    ev_timer_stop(d->session->dp->loop, &d->timer);
    char resource[sizeof(d->resource)];
    memcpy(resource, d->resource, sizeof(resource));
    stream_refused(d->session, d->stream, resource, MUX_CODE_CONNECT_FAILED, reason);
}

static void
dial_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct dial *d = w->data;
    struct ztr_err err;
    if (net_connect_finish(d->fd, d->target, &err) != 0) {
        dial_failed(d, err.msg);
        return;
    }
    struct dsession *ds = d->session->ds;
    uint32_t stream = d->stream;
    int fd = d->fd; /* TCP_NODELAY since net_connect_start */
    d->fd = -1;
    dsession_set_stream_user(ds, stream, NULL);
    dial_free(d);
    if (dsession_accept(ds, stream, fd, &err) != 0)
        log_warn("stream not started", "error=\"%s\"", err.msg);
}

static void
dial_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct dial *d = w->data;
    char reason[200];
    snprintf(reason, sizeof(reason), "dial %s: connect: timed out", d->target);
    dial_failed(d, reason);
}

static const struct connector_resource *
find_resource(const struct dataplane *dp, const char *name)
{
    for (size_t i = 0; i < dp->config.resource_count; i++)
        if (strcmp(dp->resources[i].name, name) == 0)
            return &dp->resources[i];
    return NULL;
}

/* A tunneler of a peer trust domain outside its grant: counted, and logged
 * with the reason (bounded: it controls how often). */
static void
scope_mismatch(struct dp_session *s, const char *resource, const char *reason)
{
    struct dataplane *dp = s->dp;
    dp->counts.scope_mismatches++;
    uint64_t suppressed = 0;
    if (log_limit_allow(&dp->scope_log, (int64_t)(ev_now(dp->loop) * 1000.0), &suppressed))
        log_warn(DATAPLANE_MSG_SCOPE_MISMATCH,
                 "spiffe_id=%s peer=%s resource=\"%s\" reason=\"%s\" suppressed=%llu",
                 s->spiffe_id, dsession_peer_addr(s->ds), resource != NULL ? resource : "",
                 reason, (unsigned long long)suppressed);
}

static bool
stream_permitted(struct dp_session *s, const char *resource, char *reason, size_t cap)
{
    struct dataplane *dp = s->dp;
    if (!s->foreign)
        return allowlist_permits(dp->config.allowlist, s->spiffe_id, resource);
    return allowlist_grant_permits(dp->config.allowlist, s->spiffe_id, resource, &s->addr,
                                   clock_wall_s(dp->clock), reason, cap);
}

static void
on_open(void *user, struct dsession *ds, uint32_t stream, const char *resource)
{
    (void)ds;
    struct dp_session *s = user;
    struct dataplane *dp = s->dp;
    char reason[MUX_REASON_MAX];
    char why[MUX_REASON_MAX];
    /* First: whoever asks, the answer is "another connector" (REFUSED is
     * what tunnelers of every release fail over on). */
    if (dp->draining) {
        dp->counts.drain_refused++;
        (void)dsession_reset(s->ds, stream, MUX_CODE_REFUSED, DATAPLANE_MSG_DRAINING);
        return;
    }
    if (s->foreign && !stream_permitted(s, resource, why, sizeof(why))) {
        scope_mismatch(s, resource, why);
        snprintf(reason, sizeof(reason), "%s", DATAPLANE_MSG_SCOPE_MISMATCH);
        stream_refused(s, stream, resource, MUX_CODE_RESOURCE_NOT_ALLOWED, reason);
        return;
    }
    if (!s->foreign && !allowlist_permits(dp->config.allowlist, s->spiffe_id, resource)) {
        snprintf(reason, sizeof(reason), "resource \"%s\" not allowed for this tunneler",
                 resource);
        stream_refused(s, stream, resource, MUX_CODE_RESOURCE_NOT_ALLOWED, reason);
        return;
    }
    if (dp->config.streams_per_tunneler > 0 && !take_stream(s, stream)) {
        dp->counts.quota_refused++;
        struct dataplane_shared *sh = dp->shared;
        pthread_mutex_lock(&sh->lock);
        sh->quota_unlogged++;
        if (ev_now(dp->loop) - sh->quota_logged_at >= 1.0) {
            log_warn(DATAPLANE_MSG_QUOTA, "spiffe_id=%s limit=%u refused=%llu", s->spiffe_id,
                     (unsigned)dp->config.streams_per_tunneler,
                     (unsigned long long)sh->quota_unlogged);
            sh->quota_logged_at = ev_now(dp->loop);
            sh->quota_unlogged = 0;
        }
        pthread_mutex_unlock(&sh->lock);
        (void)dsession_reset(s->ds, stream, MUX_CODE_REFUSED, DATAPLANE_MSG_QUOTA);
        return;
    }
    const struct connector_resource *r = find_resource(dp, resource);
    if (r == NULL) {
        snprintf(reason, sizeof(reason), "unknown resource \"%s\"", resource);
        stream_refused(s, stream, resource, MUX_CODE_UNKNOWN_RESOURCE, reason);
        return;
    }
    struct dial *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        stream_refused(s, stream, resource, MUX_CODE_INTERNAL, "out of memory");
        return;
    }
    struct ztr_err err;
    d->session = s;
    d->stream = stream;
    snprintf(d->target, sizeof(d->target), "%s", r->target);
    snprintf(d->resource, sizeof(d->resource), "%s", resource);
    if (net_connect_start(r->target, &d->fd, &err) != 0) {
        free(d);
        stream_refused(s, stream, resource, MUX_CODE_CONNECT_FAILED, err.msg);
        return;
    }
    ev_io_init(&d->io, dial_io_cb, d->fd, EV_WRITE);
    d->io.data = d;
    ev_io_start(dp->loop, &d->io);
    ev_timer_init(&d->timer, dial_timeout_cb, (double)dp->config.dial_timeout_ms / 1000.0, 0);
    d->timer.data = d;
    ev_timer_start(dp->loop, &d->timer);
    dsession_set_stream_user(s->ds, stream, d);
}

static void
on_pending_closed(void *user, struct dsession *ds, uint32_t stream, void *stream_user,
                  enum mux_code code, const char *reason)
{
    (void)user;
    (void)ds;
    (void)stream;
    (void)code;
    (void)reason;
    if (stream_user != NULL)
        dial_free(stream_user);
}

/* ---- sessions ------------------------------------------------------------------------- */

static void
session_refuse(struct dp_session *s, const char *why)
{
    s->dp->counts.rejected++;
    log_warn(DATAPLANE_MSG_NOT_ALLOWED, "spiffe_id=%s peer=%s reason=\"%s\"", s->spiffe_id,
             dsession_peer_addr(s->ds), why);
    dsession_close(s->ds, MUX_CODE_PEER_NOT_ALLOWED, DATAPLANE_MSG_NOT_ALLOWED);
}

/* A tunneler of a peer trust domain without a live grant here. */
static void
scope_refuse(struct dp_session *s)
{
    s->dp->counts.rejected++;
    scope_mismatch(s, NULL, "no live grant for this tunneler: revoked, expired or never given");
    dsession_close(s->ds, MUX_CODE_PEER_NOT_ALLOWED, DATAPLANE_MSG_SCOPE_MISMATCH);
}

/* A peer that finished (or failed) its handshake stops counting against
 * its source's handshake quota. */
static void
release_handshake(struct dp_session *s)
{
    if (s->holds_handshake)
        release_source(s->dp->shared, &s->source);
    s->holds_handshake = false;
}

static void
on_ready(void *user, struct dsession *ds)
{
    struct dp_session *s = user;
    release_handshake(s);
    const struct pki_spiffe_id *peer = dsession_peer_id(ds);
    snprintf(s->spiffe_id, sizeof(s->spiffe_id), "%s", peer != NULL ? peer->uri : "");
    s->foreign = peer != NULL && strcmp(peer->trust_domain, s->dp->trust_domain) != 0;
    quota_key_from_text(s->spiffe_id, &s->tunneler);
    s->ready = true;
    if (s->dp->refusing[0] != '\0') {
        log_warn("data session refused", "spiffe_id=%s peer=%s reason=\"%s\"", s->spiffe_id,
                 dsession_peer_addr(ds), s->dp->refusing);
        dsession_close(ds, MUX_CODE_REFUSED, s->dp->refusing);
        return;
    }
    if (s->foreign && !allowlist_grant_live(s->dp->config.allowlist, s->spiffe_id,
                                            clock_wall_s(s->dp->clock))) {
        scope_refuse(s);
        return;
    }
    if (!allowlist_contains(s->dp->config.allowlist, s->spiffe_id)) {
        session_refuse(s, "not on the allowlist");
        return;
    }
    log_info("data session opened", "spiffe_id=%s peer=%s", s->spiffe_id,
             dsession_peer_addr(ds));
}

static void
observe_revocation(struct dataplane *dp, double seconds)
{
    for (int i = 0; i < DATAPLANE_REVOCATION_BUCKETS; i++)
        if (seconds <= revocation_bounds[i])
            dp->counts.revocation_buckets[i]++;
    dp->counts.revocation_count++;
    dp->counts.revocation_sum += seconds;
}

static void
on_closed(void *user, struct dsession *ds, enum mux_code code, const char *reason)
{
    (void)code;
    struct dp_session *s = user;
    struct dataplane *dp = s->dp;
    release_handshake(s);
    if (!s->ready)
        log_warn("data session refused", "peer=%s reason=\"%s\"", dsession_peer_addr(ds),
                 reason);
    else
        log_info("data session closed", "spiffe_id=%s reason=\"%s\"", s->spiffe_id, reason);
    if (s->removed_at > 0) {
        observe_revocation(dp, ev_time() - s->removed_at);
        dp->counts.revocation_last_close = ev_time();
    }
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        dp->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    dp->session_count--;
    release_session_slot(dp->shared);
    free(s);
}

static const struct dsession_hooks session_hooks = {
    .on_ready = on_ready,
    .on_open = on_open,
    .on_pending_closed = on_pending_closed,
    .on_closed = on_closed,
};

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct dataplane *dp = w->data;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage peer;
        int fd = net_accept_peer(dp->listen_fd, &peer);
        if (fd < 0)
            return;
        struct quota_key source;
        bool has_source = net_source_key_of(&peer, &source) == 0;
        const char *refusal = admit_connection(dp->shared, &source, has_source,
                                               dp->config.handshakes_per_source);
        if (refusal != NULL) {
            dp->counts.handshakes_refused++;
            pthread_mutex_lock(&dp->shared->lock);
            net_close_refused(fd, &dp->shared->accept_log, (int64_t)(ev_now(dp->loop) * 1000.0),
                              "data session refused", refusal);
            pthread_mutex_unlock(&dp->shared->lock);
            continue;
        }
        struct dp_session *s = calloc(1, sizeof(*s));
        if (s == NULL) {
            if (has_source)
                release_source(dp->shared, &source);
            release_session_slot(dp->shared);
            close(fd);
            continue;
        }
        s->dp = dp;
        s->source = source;
        s->addr = peer;
        s->holds_handshake = has_source;
        struct pki_expect expect = {.trust_domain = dp->trust_domain,
                                    .role = PKI_ROLE_TUNNELER};
        struct dsession_config config = {.loop = dp->loop,
                                         .tls = dp->tls,
                                         .pool = dp->pool,
                                         .stats = &dp->counts.stats,
                                         .role = MUX_ACCEPTOR,
                                         .window = dp->config.window,
                                         .hooks = &session_hooks,
                                         .user = s,
                                         .self_id = dp->self_id};
        struct ztr_err err;
        if (dsession_new(&config, fd, &expect, &s->ds, &err) != 0) {
            log_warn("data session refused", "error=\"%s\"", err.msg);
            release_handshake(s);
            release_session_slot(dp->shared);
            free(s);
            continue;
        }
        s->next = dp->sessions;
        if (dp->sessions != NULL)
            dp->sessions->prev = s;
        dp->sessions = s;
        dp->session_count++;
    }
}

static void
idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct dataplane *dp = w->data;
    int64_t now = (int64_t)(ev_now(loop) * 1000.0);
    struct dp_session *next;
    for (struct dp_session *s = dp->sessions; s != NULL; s = next) {
        next = s->next;   /* closing is deferred to the loop, but stay safe */
        if (dsession_is_ready(s->ds) &&
            now - dsession_last_input_ms(s->ds) > dp->config.idle_timeout_ms)
            dsession_close(s->ds, MUX_CODE_NORMAL, "idle session");
    }
}

/* ---- allowlist changes ------------------------------------------------------------------ */

static void
reset_if_revoked(void *ctx, struct dsession *ds, uint32_t stream, const char *resource)
{
    struct dp_session *s = ctx;
    char why[MUX_REASON_MAX];
    if (stream_permitted(s, resource, why, sizeof(why)))
        return;
    char reason[MUX_REASON_MAX];
    if (s->foreign) {
        scope_mismatch(s, resource, why);
        snprintf(reason, sizeof(reason), "%s", DATAPLANE_MSG_SCOPE_MISMATCH);
    } else {
        snprintf(reason, sizeof(reason), "resource \"%s\" no longer allowed", resource);
    }
    log_info("stream closed by the allowlist", "spiffe_id=%s resource=\"%s\"", s->spiffe_id,
             resource);
    (void)dsession_reset(ds, stream, MUX_CODE_RESOURCE_NOT_ALLOWED, reason);
}

void
dataplane_enforce(struct dataplane *dp)
{
    dataplane_set_allowlist(dp, dp != NULL ? dp->config.allowlist : NULL, ev_time());
}

void
dataplane_set_allowlist(struct dataplane *dp, const struct allowlist *list, double changed_at)
{
    if (dp == NULL)
        return;
    dp->config.allowlist = list;
    dp->counts.allowlist_version = list != NULL ? allowlist_version(list) : 0;
    dp->counts.allowlist_applied_at = ev_time();
    for (struct dp_session *s = dp->sessions; s != NULL; s = s->next) {
        if (!s->ready || s->removed_at > 0)
            continue;
        if (s->foreign &&
            !allowlist_grant_live(dp->config.allowlist, s->spiffe_id, clock_wall_s(dp->clock))) {
            s->removed_at = ev_time();
            scope_refuse(s);
            continue;
        }
        if (!allowlist_contains(dp->config.allowlist, s->spiffe_id)) {
            s->removed_at = changed_at;
            session_refuse(s, "removed from the allowlist");
            continue;
        }
        dsession_foreach_stream(s->ds, reset_if_revoked, s);
    }
}

void
dataplane_recheck_peers(struct dataplane *dp)
{
    if (dp == NULL)
        return;
    const struct pki_bundle *bundle = tls_ctx_bundle(dp->tls);
    /* A peer whose CA left the bundle is revoked like a denied tunneler:
     * its close counts toward the revocation histogram. */
    for (struct dp_session *s = dp->sessions; s != NULL; s = s->next)
        if (s->ready && dsession_recheck_peer(s->ds, bundle) != 0 && s->removed_at <= 0)
            s->removed_at = ev_time();
}

void
dataplane_present_identity(struct dataplane *dp, const char *chain_pem, size_t chain_len,
                           const struct pki_key *key)
{
    if (dp == NULL)
        return;
    size_t presented = 0;
    for (struct dp_session *s = dp->sessions; s != NULL; s = s->next) {
        struct ztr_err err = {0};
        if (!s->ready)
            continue;
        if (dsession_present_identity(s->ds, chain_pem, chain_len, key, &err) != 0)
            log_warn("renewed certificate not presented", "peer=%s error=\"%s\"",
                     dsession_peer_addr(s->ds), err.msg);
        else
            presented++;
    }
    if (presented > 0)
        log_info("renewed certificate presented to live sessions", "sessions=%zu", presented);
}

void
dataplane_refuse(struct dataplane *dp, const char *reason)
{
    if (dp == NULL)
        return;
    snprintf(dp->refusing, sizeof(dp->refusing), "%s", reason != NULL ? reason : "");
    if (reason == NULL)
        return;
    for (struct dp_session *s = dp->sessions; s != NULL; s = s->next)
        if (s->ready)
            dsession_close(s->ds, MUX_CODE_REFUSED, dp->refusing);
}

void
dataplane_drain(struct dataplane *dp, bool draining)
{
    if (dp != NULL)
        dp->draining = draining;
}

struct drain_close {
    struct dp_session *session;
    const char *reason;
    size_t closed;
};

static void
close_at_deadline(void *ctx, struct dsession *ds, uint32_t stream, const char *resource)
{
    struct drain_close *dc = ctx;
    log_warn("stream closed at the drain deadline", "spiffe_id=%s resource=\"%s\" reason=\"%s\"",
             dc->session->spiffe_id, resource != NULL ? resource : "", dc->reason);
    (void)dsession_reset(ds, stream, MUX_CODE_REFUSED, dc->reason);
    dc->closed++;
}

size_t
dataplane_close_streams(struct dataplane *dp, const char *reason)
{
    if (dp == NULL)
        return 0;
    struct drain_close dc = {.reason = reason};
    for (struct dp_session *s = dp->sessions; s != NULL; s = s->next) {
        if (!s->ready)
            continue;
        dc.session = s;
        dsession_foreach_stream(s->ds, close_at_deadline, &dc);
    }
    dp->counts.drain_closed += dc.closed;
    return dc.closed;
}

/* ---- life cycle ------------------------------------------------------------------------- */

int
dataplane_new(const struct dataplane_env *env, const struct dataplane_config *config,
              struct dataplane **out, struct ztr_err *err)
{
    *out = NULL;
    struct dataplane *dp = calloc(1, sizeof(*dp));
    if (dp == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    dp->loop = env->loop;
    dp->tls = env->tls;
    dp->self_id = env->self_id;
    dp->clock = env->clock != NULL ? env->clock : clock_system();
    dp->scope_log = (struct log_limit)LOG_LIMIT_INIT(10, 10000);
    dp->shared = env->shared;
    if (dp->shared != NULL)
        shared_retain(dp->shared);
    dp->config = *config;
    if (dp->config.handshakes_per_source == 0)
        dp->config.handshakes_per_source = DATAPLANE_HANDSHAKES_PER_SOURCE_DEFAULT;
    dp->listen_fd = -1;
    dp->trust_domain = strdup(env->trust_domain);
    dp->resources = calloc(config->resource_count + 1, sizeof(*dp->resources));
    if (dp->resources == NULL || dp->trust_domain == NULL) {
        free(dp->resources);
        free(dp->trust_domain);
        free(dp);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    memcpy(dp->resources, config->resources, config->resource_count * sizeof(*dp->resources));
    dp->config.resources = dp->resources;
    if (dp->shared == NULL) {
        if (dataplane_shared_new(&dp->shared, err) != 0) {
            dataplane_stop(dp);
            return -1;
        }
    }
    if (relay_pool_new(POOL_FREE_CHUNKS, &dp->pool, err) != 0 ||
        (env->shared_listener
             ? net_listen_shared(config->listen, LISTEN_BACKLOG, &dp->listen_fd, err)
             : net_listen(config->listen, LISTEN_BACKLOG, &dp->listen_fd, err)) != 0) {
        dataplane_stop(dp);
        return -1;
    }
    ev_io_init(&dp->listen_io, accept_cb, dp->listen_fd, EV_READ);
    dp->listen_io.data = dp;
    ev_io_start(dp->loop, &dp->listen_io);
    double every = (double)config->idle_timeout_ms / 4000.0;
    ev_timer_init(&dp->idle_timer, idle_cb, every, every);
    dp->idle_timer.data = dp;
    ev_timer_start(dp->loop, &dp->idle_timer);
    log_info("data listener started", "listen=%s port=%u resources=%zu", config->listen,
             (unsigned)net_local_port(dp->listen_fd), config->resource_count);
    *out = dp;
    return 0;
}

int
dataplane_start(struct agent *agent, const struct dataplane_config *config,
                struct dataplane **out, struct ztr_err *err)
{
    *out = NULL;
    struct dataplane_env env = {.loop = agent_loop(agent),
                                .tls = agent_data_tls(agent, TLS_SIDE_SERVER, DATA_ALPN, err),
                                .trust_domain = agent_trust_domain(agent),
                                .self_id = agent_spiffe_id(agent),
                                .clock = agent_clock(agent)};
    if (env.tls == NULL)
        return -1;
    return dataplane_new(&env, config, out, err);
}

uint16_t
dataplane_listen_port(const struct dataplane *dp)
{
    return dp != NULL && dp->listen_fd >= 0 ? net_local_port(dp->listen_fd) : 0;
}

void
dataplane_stop(struct dataplane *dp)
{
    if (dp == NULL)
        return;
    ev_io_stop(dp->loop, &dp->listen_io);
    ev_timer_stop(dp->loop, &dp->idle_timer);
    if (dp->listen_fd >= 0)
        close(dp->listen_fd);
    dp->listen_fd = -1;
    for (struct dp_session *s = dp->sessions; s != NULL; s = s->next)
        dsession_close(s->ds, MUX_CODE_REFUSED, "shutting down");
    /* The closes finish on the loop (a turn each); bounded. */
    for (int i = 0; i < 100 && dp->session_count > 0; i++)
        ev_run(dp->loop, EVRUN_NOWAIT);
    relay_pool_free(dp->pool);
    dataplane_shared_release(dp->shared);
    free(dp->resources);
    free(dp->trust_domain);
    free(dp);
}

void
dataplane_count(const struct dataplane *dp, struct dataplane_counts *sum)
{
    if (dp == NULL)
        return;
    struct dataplane_counts own = dp->counts;
    own.loops = 1;
    for (const struct dp_session *s = dp->sessions; s != NULL; s = s->next)
        if (s->removed_at > 0)
            own.revocations_pending++;
    dataplane_counts_add(sum, &own);
}

void
dataplane_counts_add(struct dataplane_counts *sum, const struct dataplane_counts *c)
{
    dsession_stats_add(&sum->stats, &c->stats);
    sum->rejected += c->rejected;
    sum->quota_refused += c->quota_refused;
    sum->handshakes_refused += c->handshakes_refused;
    sum->scope_mismatches += c->scope_mismatches;
    sum->drain_refused += c->drain_refused;
    sum->drain_closed += c->drain_closed;
    for (int i = 0; i < DATAPLANE_REVOCATION_BUCKETS; i++)
        sum->revocation_buckets[i] += c->revocation_buckets[i];
    sum->revocation_count += c->revocation_count;
    sum->revocation_sum += c->revocation_sum;
    if (c->loops > 0) {
        if (sum->loops == 0 || c->allowlist_version < sum->allowlist_version)
            sum->allowlist_version = c->allowlist_version;
        sum->loops += c->loops;
    }
    if (c->allowlist_applied_at > sum->allowlist_applied_at)
        sum->allowlist_applied_at = c->allowlist_applied_at;
    sum->revocations_pending += c->revocations_pending;
    if (c->revocation_last_close > sum->revocation_last_close)
        sum->revocation_last_close = c->revocation_last_close;
}

const char *
dataplane_refusing(const struct dataplane *dp)
{
    return dp != NULL ? dp->refusing : "";
}

void
dataplane_add_health(const struct dataplane *dp, json_t *health)
{
    if (dp == NULL)
        return;
    struct dataplane_counts counts = {0};
    dataplane_count(dp, &counts);
    dataplane_counts_health(&counts, dp->refusing, health);
}

void
dataplane_add_metrics(const struct dataplane *dp, struct metrics *m)
{
    if (dp == NULL)
        return;
    struct dataplane_counts counts = {0};
    dataplane_count(dp, &counts);
    dataplane_counts_metrics(&counts, m);
}

void
dataplane_counts_health(const struct dataplane_counts *c, const char *refusing, json_t *health)
{
    dsession_stats_health(&c->stats, health);
    json_t *data = json_object_get(health, "data");
    json_object_set_new(data, "tunnelers_rejected", json_integer((json_int_t)c->rejected));
    json_object_set_new(data, "streams_over_quota", json_integer((json_int_t)c->quota_refused));
    json_object_set_new(data, "connections_refused",
                        json_integer((json_int_t)c->handshakes_refused));
    json_object_set_new(data, "grant_scope_mismatches",
                        json_integer((json_int_t)c->scope_mismatches));
    json_object_set_new(data, "streams_refused_draining",
                        json_integer((json_int_t)c->drain_refused));
    json_object_set_new(data, "streams_closed_at_drain_deadline",
                        json_integer((json_int_t)c->drain_closed));
    if (refusing != NULL && refusing[0] != '\0')
        json_object_set_new(data, "refusing", json_string(refusing));
}

void
dataplane_counts_metrics(const struct dataplane_counts *c, struct metrics *m)
{
    dsession_stats_metrics(&c->stats, "connector", m);
    metrics_counter(m, "ztr_tunnelers_rejected_total",
                    "Sessions refused or closed: tunneler not allowed.", NULL, c->rejected);
    metrics_counter(m, "ztr_streams_over_quota_total",
                    "Streams refused: the tunneler had its quota of streams open.", NULL,
                    c->quota_refused);
    metrics_counter(m, "ztr_data_connections_refused_total",
                    "Connections closed before their handshake: too many sessions, or too "
                    "many handshakes in progress from their source.",
                    NULL, c->handshakes_refused);
    metrics_counter(m, "ztr_grant_scope_mismatch_total",
                    "Sessions or streams of a peer trust domain's tunneler refused or closed "
                    "outside its federation grant.",
                    NULL, c->scope_mismatches);
    metrics_counter(m, "ztr_drain_streams_refused_total",
                    "Streams refused while the connector drains (tunnelers try another).", NULL,
                    c->drain_refused);
    metrics_counter(m, "ztr_drain_streams_closed_total",
                    "Streams still open at a drain's deadline, closed.", NULL, c->drain_closed);
    metrics_family(m, "ztr_revocation_apply_seconds", "histogram",
                   "Allowlist change received to the removed tunneler's session closed.");
    for (int i = 0; i < DATAPLANE_REVOCATION_BUCKETS; i++)
        metrics_printf(m, "ztr_revocation_apply_seconds_bucket{le=\"%g\"} %llu\n",
                       revocation_bounds[i], (unsigned long long)c->revocation_buckets[i]);
    metrics_printf(m,
                   "ztr_revocation_apply_seconds_bucket{le=\"+Inf\"} %llu\n"
                   "ztr_revocation_apply_seconds_sum %.6f\n"
                   "ztr_revocation_apply_seconds_count %llu\n",
                   (unsigned long long)c->revocation_count, c->revocation_sum,
                   (unsigned long long)c->revocation_count);
}
