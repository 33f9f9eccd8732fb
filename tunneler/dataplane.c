#include "tunneler/dataplane.h"

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
#include "base/backoff.h"
#include "data/dsession.h"
#include "base/fileio.h"
#include "base/log.h"
#include "base/metrics.h"
#include "net/net.h"
#include "tunneler/socks5.h"

#define CONNECTORS_FILE "connectors.json"
#define CONNECTORS_FILE_MAX (16 * 1024 * 1024)
#define CONNECTORS_MAX 256
#define LISTENERS_MAX (CONFIG_LIST_MAX + 1)
#define CLIENTS_MAX 65536
#define LISTEN_BACKLOG 1024
#define POOL_FREE_CHUNKS 256

struct tunnel;

/* A connector from the controller's list, and our one session to it. */
struct tconn {
    struct tunnel *tunnel;
    char id[320];                /* a peer's connectors: <trust domain>/<id> */
    char spiffe_id[PKI_SPIFFE_ID_MAX + 1];
    /* A connector of a peer trust domain names its resources
     * <resource>@<trust domain> in our list and <resource> on its wire. */
    char suffix[PKI_TRUST_DOMAIN_MAX + 2];
    char address[128];
    char ip[64];
    json_t *resources;           /* names, and targets (same order, may be NULL) */
    json_t *targets;
    struct dsession *session;
    bool session_ready;
    int dial_fd;                 /* TCP connect in progress (-1: none) */
    ev_io dial_io;
    ev_timer dial_timer;
    bool removed;                /* left the list: freed once its session is gone */
    bool draining;               /* the list says so: chosen only when no other is up */
    int64_t down_until_ms;       /* monotonic; 0 = up */
    struct backoff backoff;
    char last_error[ZTR_ERR_MSG_MAX];
    int64_t rtt_ms;
    struct client *waiting;      /* clients waiting for the session */
    size_t waiting_count;
};

/* SOCKS: handshake; ROUTING: between connectors; WAITING: for a session;
 * OPENING: OPEN sent, OPEN_OK due. */
enum client_state { CLIENT_SOCKS, CLIENT_ROUTING, CLIENT_WAITING, CLIENT_OPENING };

#define CLIENT_ATTEMPTS_MAX 8

/* A local connection until its stream is established (then a relay owns the
 * socket and this is freed). */
struct client {
    struct tunnel *tunnel;
    int fd;
    enum client_state state;
    bool socks;
    struct socks5_session socks5;
    ev_io io;
    ev_timer timer;
    char resource[256];
    uint8_t early[RELAY_EARLY_MAX];
    size_t early_len;
    struct tconn *via;
    struct tconn *tried[CLIENT_ATTEMPTS_MAX];   /* connectors that failed this client */
    size_t tried_count;
    enum mux_code last_code;     /* why the last connector failed it (for the reply) */
    char last_reason[ZTR_ERR_MSG_MAX + 400]; /* "connector <id>: <reason>" */
    struct client *prev, *next;  /* in via->waiting */
    struct ip_quota *quota;      /* handed to the stream once it is relayed */
    char peer[80];
};

struct listener {
    struct tunnel *tunnel;
    int fd;
    ev_io io;
    bool socks;
    char resource[256];
};

/* Open streams of one source IP, over every worker's tunnel. Entries live
 * while count > 0, each holding a reference to the table, so one that
 * outlives its tunnel (a relay still draining at stop) still finds it. */
struct ip_quota {
    struct ip_quota *next;
    struct tunnel_shared *shared;
    size_t count;
    char ip[80];
};

/* What the workers' tunnels count together: CLIENT_STREAMS_MAX per source
 * IP. Taken at accept and given back when a stream is over, under a mutex
 * (never per byte). */
struct tunnel_shared {
    pthread_mutex_t lock;
    unsigned refs;               /* its maker, each tunnel, each ip_quota */
    struct ip_quota *quotas;
    uint64_t quota_unlogged;     /* refusals since the last log line */
    double quota_logged_at;
};

struct tunnel {
    struct ev_loop *loop;
    char *trust_domain;
    char *state_dir;
    struct tunneler_config config;
    struct tls_ctx *tls;
    const char *self_id;
    struct agent *agent;         /* NULL in tests without one: no federation */
    struct relay_pool *pool;
    struct listener listeners[LISTENERS_MAX];
    size_t listener_count;
    struct tconn *conns[CONNECTORS_MAX];
    size_t conn_count;
    int64_t list_version;
    ev_timer ping_timer;
    size_t clients;
    struct tunnel_counts counts;     /* this loop's; summed by tunnel_count */
    struct tunnel_shared *shared;    /* one reference held */
    bool persist;                    /* saves connectors.json (one worker does) */
    void (*on_connector_state)(void *ctx, const char *id, const char *address,
                               const char *spiffe_id, int64_t down_until_ms, const char *reason);
    void *state_ctx;
    bool shared_listeners;           /* SO_REUSEPORT: other workers listen beside */
    bool stopping;
};

static void route(struct client *c);
static struct tconn *find_conn(const struct tunnel *t, const char *id, const char *address,
                               const char *spiffe_id);

static int64_t
now_ms(const struct tunnel *t)
{
    return (int64_t)(ev_now(t->loop) * 1000.0);
}

/* ---- clients ---------------------------------------------------------------------- */

static void
client_unwait(struct client *c)
{
    if (c->state != CLIENT_WAITING || c->via == NULL)
        return;
    struct tconn *k = c->via;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        k->waiting = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    k->waiting_count--;
}

/* ---- per source IP quota ------------------------------------------------------------ */

int
tunnel_shared_new(struct tunnel_shared **out, struct ztr_err *err)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    pthread_mutex_init(&(*out)->lock, NULL);
    (*out)->refs = 1;
    return 0;
}

static void
shared_retain(struct tunnel_shared *sh)
{
    pthread_mutex_lock(&sh->lock);
    sh->refs++;
    pthread_mutex_unlock(&sh->lock);
}

/* sh->lock held; false when it was the last reference (then unlocked and
 * freed). */
static bool
shared_drop_locked(struct tunnel_shared *sh)
{
    if (--sh->refs > 0)
        return true;
    pthread_mutex_unlock(&sh->lock);
    pthread_mutex_destroy(&sh->lock);
    free(sh);
    return false;
}

void
tunnel_shared_release(struct tunnel_shared *sh)
{
    if (sh == NULL)
        return;
    pthread_mutex_lock(&sh->lock);
    if (shared_drop_locked(sh))
        pthread_mutex_unlock(&sh->lock);
}

static void
quota_release(void *ctx)
{
    struct ip_quota *q = ctx;
    struct tunnel_shared *sh = q->shared;
    pthread_mutex_lock(&sh->lock);
    if (--q->count > 0) {
        pthread_mutex_unlock(&sh->lock);
        return;
    }
    struct ip_quota **p = &sh->quotas;
    while (*p != q)
        p = &(*p)->next;
    *p = q->next;
    free(q);
    if (shared_drop_locked(sh))
        pthread_mutex_unlock(&sh->lock);
}

/* peer is "ip:port" or "[ip]:port". NULL (and the refusal logged) when the
 * IP has its quota open already, or out of memory. */
static struct ip_quota *
quota_take(struct tunnel *t, const char *peer)
{
    char ip[80];
    snprintf(ip, sizeof(ip), "%s", peer[0] == '[' ? peer + 1 : peer);
    char *end = strrchr(ip, peer[0] == '[' ? ']' : ':');
    if (end != NULL)
        *end = '\0';
    struct tunnel_shared *sh = t->shared;
    pthread_mutex_lock(&sh->lock);
    struct ip_quota *q = sh->quotas;
    while (q != NULL && strcmp(q->ip, ip) != 0)
        q = q->next;
    if (q != NULL && t->config.client_streams_max > 0 &&
        q->count >= t->config.client_streams_max) {
        t->counts.quota_refused++;
        sh->quota_unlogged++;
        if (ev_now(t->loop) - sh->quota_logged_at >= 1.0) {
            log_warn("client stream quota reached", "ip=%s limit=%u refused=%llu", ip,
                     (unsigned)t->config.client_streams_max,
                     (unsigned long long)sh->quota_unlogged);
            sh->quota_logged_at = ev_now(t->loop);
            sh->quota_unlogged = 0;
        }
        pthread_mutex_unlock(&sh->lock);
        return NULL;
    }
    if (q == NULL && (q = calloc(1, sizeof(*q))) != NULL) {
        q->shared = sh;
        sh->refs++;
        snprintf(q->ip, sizeof(q->ip), "%s", ip);
        q->next = sh->quotas;
        sh->quotas = q;
    }
    if (q != NULL)
        q->count++;
    pthread_mutex_unlock(&sh->lock);
    return q;
}

static void
client_free(struct client *c)
{
    client_unwait(c);
    if (c->quota != NULL)
        quota_release(c->quota);
    ev_io_stop(c->tunnel->loop, &c->io);
    ev_timer_stop(c->tunnel->loop, &c->timer);
    if (c->fd >= 0)
        close(c->fd);
    c->tunnel->clients--;
    free(c);
}

struct tunnel_refusal
tunnel_refusal_of(enum mux_code code)
{
    /* A verdict on this tunneler or the resource holds at every connector;
     * a failed session or target may not. Codes a newer peer may add land
     * on the default: worth another connector. */
    static const struct tunnel_refusal table[] = {
        [MUX_CODE_NORMAL] = {false, false, SOCKS5_REP_GENERAL_FAILURE},
        [MUX_CODE_RESOURCE_NOT_ALLOWED] = {false, false, SOCKS5_REP_NOT_ALLOWED},
        [MUX_CODE_UNKNOWN_RESOURCE] = {false, false, SOCKS5_REP_HOST_UNREACHABLE},
        [MUX_CODE_CONNECT_FAILED] = {true, false, SOCKS5_REP_CONNECTION_REFUSED},
        [MUX_CODE_PROTOCOL_ERROR] = {true, false, SOCKS5_REP_GENERAL_FAILURE},
        [MUX_CODE_REFUSED] = {true, false, SOCKS5_REP_NETWORK_UNREACHABLE},
        [MUX_CODE_INTERNAL] = {true, false, SOCKS5_REP_GENERAL_FAILURE},
        [MUX_CODE_CANCEL] = {true, false, SOCKS5_REP_GENERAL_FAILURE},
        [MUX_CODE_PEER_NOT_ALLOWED] = {true, true, SOCKS5_REP_NOT_ALLOWED},
    };
    if ((unsigned)code >= sizeof(table) / sizeof(table[0]))
        return (struct tunnel_refusal){true, false, SOCKS5_REP_GENERAL_FAILURE};
    return table[code];
}

/* Whatever the SOCKS5 session has queued goes to the client now; the reply
 * is a few bytes into an empty socket buffer, so one send takes it. */
static void
socks_flush(struct client *c)
{
    size_t len;
    const uint8_t *out;
    struct ztr_err err;
    if (socks5_pending_output(&c->socks5, &out, &len) == 0)
        return;
    ssize_t n = send(c->fd, out, len, MSG_NOSIGNAL);
    (void)socks5_output_sent(&c->socks5, n > 0 ? (size_t)n : len, &err);
}

/* The client cannot be served: a SOCKS5 reply saying why, or (forward) the
 * connection closed; one log line either way. */
static void
client_fail(struct client *c, enum socks5_reply_code reply, const char *reason)
{
    if (c->socks)
        log_warn("stream failed", "client=%s resource=\"%s\" reason=\"%s\" socks5_reply=\"%s\"",
                 c->peer, c->resource, reason, socks5_reply_name(reply));
    else
        log_warn("stream failed", "client=%s resource=\"%s\" reason=\"%s\"", c->peer,
                 c->resource, reason);
    c->tunnel->counts.streams_refused++;
    if (c->socks) {
        struct ztr_err err;
        (void)socks5_reply(&c->socks5, reply, NULL, &err);
        socks_flush(c);
    }
    client_free(c);
}

static void
client_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct client *c = w->data;
    if (c->state == CLIENT_OPENING) {
        /* The stream's own end (connector's dial timeout) is due; wait. */
        return;
    }
    client_fail(c, SOCKS5_REP_TTL_EXPIRED, "timed out waiting for a connector");
}

/* ---- connectors ---------------------------------------------------------------------- */

static bool
serves(const struct tconn *k, const char *resource)
{
    size_t i;
    json_t *r;
    json_array_foreach(k->resources, i, r) {
        if (strcmp(json_string_value(r), resource) == 0)
            return true;
    }
    return false;
}

static size_t
load_of(const struct tconn *k)
{
    return k->waiting_count + (k->session != NULL ? dsession_stream_count(k->session) : 0);
}

static bool
tried(const struct client *c, const struct tconn *k)
{
    for (size_t i = 0; i < c->tried_count; i++)
        if (c->tried[i] == k)
            return true;
    return false;
}

static struct tconn *
choose(const struct tunnel *t, const struct client *c)
{
    struct tconn *best = NULL, *best_draining = NULL, *soonest = NULL;
    int64_t now = now_ms(t);
    for (size_t i = 0; i < t->conn_count; i++) {
        struct tconn *k = t->conns[i];
        if (k->removed || !serves(k, c->resource) || tried(c, k))
            continue;
        if (k->down_until_ms > now) {
            if (soonest == NULL || k->down_until_ms < soonest->down_until_ms)
                soonest = k;
            continue;
        }
        /* A draining connector refuses new streams (REFUSED: we fail
         * over); it is asked only when no other connector is up. */
        struct tconn **tier = k->draining ? &best_draining : &best;
        if (*tier == NULL || load_of(k) < load_of(*tier))
            *tier = k;
    }
    if (best != NULL)
        return best;
    return best_draining != NULL ? best_draining : soonest;
}

static void
mark_down(struct tconn *k, const char *reason)
{
    int64_t delay;
    if (backoff_next(&k->backoff, &delay) != 0)
        delay = k->tunnel->config.retry_max_ms;
    k->down_until_ms = now_ms(k->tunnel) + delay;
    snprintf(k->last_error, sizeof(k->last_error), "%s", reason);
    log_warn("connector marked down", "connector=%s address=%s retry_in_ms=%lld reason=\"%s\"",
             k->id, k->address, (long long)delay, reason);
    struct tunnel *t = k->tunnel;
    if (t->on_connector_state != NULL)
        t->on_connector_state(t->state_ctx, k->id, k->address, k->spiffe_id, k->down_until_ms,
                              reason);
}

/* k failed this client (code, reason): it goes back to routing, k excluded. */
static void
move_on(struct client *c, struct tconn *k, enum mux_code code, const char *reason)
{
    client_unwait(c);
    c->last_code = code;
    snprintf(c->last_reason, sizeof(c->last_reason), "connector %s: %s", k->id, reason);
    if (c->tried_count < CLIENT_ATTEMPTS_MAX)
        c->tried[c->tried_count++] = k;
    c->via = NULL;
    c->state = CLIENT_ROUTING;
}

static void
open_stream(struct client *c)
{
    struct tconn *k = c->via;
    struct ztr_err err;
    uint32_t stream;
    c->state = CLIENT_OPENING;
    char wire[sizeof(c->resource)];
    const char *name = c->resource;
    size_t len = strlen(name), suffix_len = strlen(k->suffix);
    if (suffix_len > 0 && len > suffix_len && strcmp(name + len - suffix_len, k->suffix) == 0) {
        snprintf(wire, sizeof(wire), "%.*s", (int)(len - suffix_len), name);
        name = wire;
    }
    if (dsession_open(k->session, name, c, &stream, &err) != 0) {
        move_on(c, k, MUX_CODE_REFUSED, err.msg);
        log_info("stream not opened", "connector=%s error=\"%s\"", k->id, err.msg);
        route(c);
    }
}

static void
session_ready(void *user, struct dsession *ds)
{
    (void)ds;
    struct tconn *k = user;
    bool was_down = k->down_until_ms > 0;
    k->session_ready = true;
    k->down_until_ms = 0;
    k->last_error[0] = '\0';
    backoff_reset(&k->backoff);
    log_info("data session opened", "connector=%s address=%s spiffe_id=%s", k->id, k->address,
             k->spiffe_id);
    struct tunnel *t = k->tunnel;
    if (was_down && t->on_connector_state != NULL)
        t->on_connector_state(t->state_ctx, k->id, k->address, k->spiffe_id, 0, "");
    while (k->waiting != NULL) {
        struct client *c = k->waiting;
        client_unwait(c);
        open_stream(c);
    }
}

static void
session_open_ok(void *user, struct dsession *ds, uint32_t stream, void *stream_user)
{
    (void)user;
    struct client *c = stream_user;
    if (c->socks) {
        struct ztr_err err;
        (void)socks5_reply(&c->socks5, SOCKS5_REP_SUCCEEDED, NULL, &err);
        socks_flush(c);
    }
    int fd = c->fd;
    c->fd = -1;
    struct ztr_err err;
    uint8_t early[RELAY_EARLY_MAX];
    size_t early_len = c->early_len;
    memcpy(early, c->early, early_len);
    dsession_set_stream_user(ds, stream, NULL);
    /* The client's place in its IP's quota passes to the stream. */
    struct ip_quota *quota = c->quota;
    c->quota = NULL;
    client_free(c);
    if (quota != NULL && dsession_set_stream_done(ds, stream, quota_release, quota) != 0)
        quota_release(quota);
    if (dsession_attach(ds, stream, fd, early, early_len, &err) != 0)
        log_warn("stream not started", "error=\"%s\"", err.msg);
}

static void
session_pending_closed(void *user, struct dsession *ds, uint32_t stream, void *stream_user,
                       enum mux_code code, const char *reason)
{
    (void)ds;
    (void)stream;
    struct tconn *k = user;
    struct client *c = stream_user;
    if (c == NULL)
        return;
    if (c->tunnel->stopping) {
        client_free(c);
        return;
    }
    if (tunnel_refusal_of(code).failover && c->tried_count < CLIENT_ATTEMPTS_MAX) {
        move_on(c, k, code, reason);
        snprintf(k->last_error, sizeof(k->last_error), "%s", reason);
        log_info("stream failing over", "connector=%s resource=\"%s\" reason=\"%s\"", k->id,
                 c->resource, reason);
        c->tunnel->counts.failovers++;
        route(c);
        return;
    }
    char text[MUX_REASON_MAX + sizeof(k->id) + 64];
    snprintf(text, sizeof(text), "connector %s refused the stream: %s", k->id, reason);
    client_fail(c, tunnel_refusal_of(code).socks5_reply, text);
}

static void
session_pong(void *user, struct dsession *ds, int64_t rtt_ms)
{
    (void)ds;
    struct tconn *k = user;
    k->rtt_ms = rtt_ms;
}

static void tconn_free(struct tconn *k);

/* The session to k is over (or never came up): log, mark k down when it
 * failed to come up or its code says so, and move its waiting clients on. */
static void
conn_lost(struct tconn *k, bool was_ready, enum mux_code code, const char *reason)
{
    struct tunnel *t = k->tunnel;
    if (t->stopping)
        return;
    if (code == MUX_CODE_PEER_NOT_ALLOWED)
        log_warn("tunneler not allowed", "connector=%s address=%s", k->id, k->address);
    if (was_ready)
        log_info("data session closed", "connector=%s reason=\"%s\"", k->id, reason);
    else
        log_warn("connector unreachable", "connector=%s address=%s reason=\"%s\"", k->id,
                 k->address, reason);
    if (!k->removed && (!was_ready || tunnel_refusal_of(code).mark_down))
        mark_down(k, reason);
    /* Whoever waited for this session tries the next connector. */
    while (k->waiting != NULL) {
        struct client *c = k->waiting;
        move_on(c, k, MUX_CODE_REFUSED, reason);
        t->counts.failovers++;
        route(c);
    }
    if (k->removed)
        tconn_free(k);
}

static void
session_closed(void *user, struct dsession *ds, enum mux_code code, const char *reason)
{
    (void)ds;
    struct tconn *k = user;
    bool was_ready = k->session_ready;
    k->session = NULL;
    k->session_ready = false;
    conn_lost(k, was_ready, code, reason);
}

static const struct dsession_hooks session_hooks = {
    .on_ready = session_ready,
    .on_open_ok = session_open_ok,
    .on_pending_closed = session_pending_closed,
    .on_pong = session_pong,
    .on_closed = session_closed,
};

static const struct dsession_hooks session_hooks;

/* TCP is up: the TLS handshake and the session start. */
static void
dial_connected(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct tconn *k = w->data;
    struct tunnel *t = k->tunnel;
    int fd = k->dial_fd;
    ev_io_stop(loop, &k->dial_io);
    ev_timer_stop(loop, &k->dial_timer);
    k->dial_fd = -1;
    struct ztr_err err;
    if (net_connect_finish(fd, k->address, &err) != 0) {
        close(fd);
        conn_lost(k, false, MUX_CODE_INTERNAL, err.msg);
        return;
    }
    struct pki_expect expect = {.trust_domain = t->trust_domain,
                                .role = PKI_ROLE_CONNECTOR,
                                .spiffe_id = k->spiffe_id,
                                .dial_ip = k->ip};
    struct dsession_config config = {.loop = t->loop,
                                     .tls = t->tls,
                                     .pool = t->pool,
                                     .stats = &t->counts.stats,
                                     .role = MUX_OPENER,
                                     .window = t->config.window,
                                     .hooks = &session_hooks,
                                     .user = k,
                                     .self_id = t->self_id};
    if (dsession_new(&config, fd, &expect, &k->session, &err) != 0)
        conn_lost(k, false, MUX_CODE_INTERNAL, err.msg);
}

static void
dial_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct tconn *k = w->data;
    ev_io_stop(loop, &k->dial_io);
    close(k->dial_fd);
    k->dial_fd = -1;
    char reason[200];
    snprintf(reason, sizeof(reason), "dial %s: connect: timed out", k->address);
    conn_lost(k, false, MUX_CODE_INTERNAL, reason);
}

/* Starts the TCP connect; the session follows in dial_connected. */
static int
dial(struct tconn *k, struct ztr_err *err)
{
    struct tunnel *t = k->tunnel;
    TRY(net_connect_start(k->address, &k->dial_fd, err)); /* TCP_NODELAY set */
    ev_io_init(&k->dial_io, dial_connected, k->dial_fd, EV_WRITE);
    k->dial_io.data = k;
    ev_io_start(t->loop, &k->dial_io);
    ev_timer_init(&k->dial_timer, dial_timeout, TLS_HANDSHAKE_TIMEOUT_MS / 1000.0, 0);
    k->dial_timer.data = k;
    ev_timer_start(t->loop, &k->dial_timer);
    return 0;
}

static void
dial_cancel(struct tconn *k)
{
    if (k->dial_fd < 0)
        return;
    ev_io_stop(k->tunnel->loop, &k->dial_io);
    ev_timer_stop(k->tunnel->loop, &k->dial_timer);
    close(k->dial_fd);
    k->dial_fd = -1;
}

static void
route(struct client *c)
{
    struct tunnel *t = c->tunnel;
    struct tconn *k = c->tried_count < CLIENT_ATTEMPTS_MAX ? choose(t, c) : NULL;
    if (k == NULL) {
        bool any = false;
        for (size_t i = 0; i < t->conn_count && !any; i++)
            any = !t->conns[i]->removed && serves(t->conns[i], c->resource);
        char reason[2 * ZTR_ERR_MSG_MAX + 400];
        enum socks5_reply_code reply = SOCKS5_REP_HOST_UNREACHABLE;
        if (!any) {
            snprintf(reason, sizeof(reason), "no connector serves resource %s", c->resource);
        } else if (c->last_reason[0] != '\0') {
            /* Say what the last attempt met: the client's reply too (a
             * refused target is "connection refused", not "unreachable"). */
            snprintf(reason, sizeof(reason), "no connector reachable for resource %s (last: %s)",
                     c->resource, c->last_reason);
            reply = c->last_code == MUX_CODE_CONNECT_FAILED ? SOCKS5_REP_CONNECTION_REFUSED
                                                            : SOCKS5_REP_NETWORK_UNREACHABLE;
        } else {
            snprintf(reason, sizeof(reason), "no connector reachable for resource %s",
                     c->resource);
            reply = SOCKS5_REP_NETWORK_UNREACHABLE;
        }
        client_fail(c, reply, reason);
        return;
    }
    c->via = k;
    if (k->session_ready) {
        open_stream(c);
        return;
    }
    if (k->session == NULL && k->dial_fd < 0) {
        struct ztr_err err;
        if (dial(k, &err) != 0) {
            mark_down(k, err.msg);
            move_on(c, k, MUX_CODE_REFUSED, err.msg);
            route(c);
            return;
        }
    }
    c->state = CLIENT_WAITING;
    c->prev = NULL;
    c->next = k->waiting;
    if (k->waiting != NULL)
        k->waiting->prev = c;
    k->waiting = c;
    k->waiting_count++;
}

static void
tconn_free(struct tconn *k)
{
    struct tunnel *t = k->tunnel;
    for (size_t i = 0; i < t->conn_count; i++) {
        if (t->conns[i] == k) {
            t->conns[i] = t->conns[--t->conn_count];
            break;
        }
    }
    json_decref(k->resources);
    json_decref(k->targets);
    free(k);
}

/* ---- front ends -------------------------------------------------------------------------- */

static bool
resource_matches(const struct tunnel *t, const struct socks5_request *req, char *out, size_t cap)
{
    char target[300];
    snprintf(target, sizeof(target), strchr(req->host, ':') ? "[%s]:%u" : "%s:%u", req->host,
             (unsigned)req->port);
    for (size_t i = 0; i < t->conn_count; i++) {
        const struct tconn *k = t->conns[i];
        size_t j;
        json_t *r;
        json_array_foreach(k->resources, j, r) {
            const char *name = json_string_value(r);
            const char *tgt = json_string_value(json_array_get(k->targets, j));
            if (strcmp(name, req->host) == 0 || (tgt != NULL && strcmp(tgt, target) == 0)) {
                snprintf(out, cap, "%s", name);
                return true;
            }
        }
    }
    return false;
}

static void
socks_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct client *c = w->data;
    uint8_t buf[SOCKS5_GREETING_MAX + SOCKS5_REQUEST_MAX + RELAY_EARLY_MAX];
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        client_free(c);   /* the client left during the handshake */
        return;
    }
    size_t off = 0, used;
    struct ztr_err err = {0};
    for (;;) {
        enum socks5_status st = socks5_feed(&c->socks5, buf + off, (size_t)n - off, &used, &err);
        off += used;
        socks_flush(c);
        if (st == SOCKS5_REPLY_READY)
            continue;
        if (st == SOCKS5_NEED_MORE)
            return;
        if (st == SOCKS5_ERROR) {
            log_warn("SOCKS5 request refused", "client=%s error=\"%s\"", c->peer, err.msg);
            client_free(c);
            return;
        }
        break;   /* SOCKS5_REQUEST_READY */
    }
    ev_io_stop(c->tunnel->loop, &c->io);
    const struct socks5_request *req = socks5_request(&c->socks5);
    if ((size_t)n - off > RELAY_EARLY_MAX) {
        client_fail(c, SOCKS5_REP_GENERAL_FAILURE, "too much data before the SOCKS5 reply");
        return;
    }
    c->early_len = (size_t)n - off;
    memcpy(c->early, buf + off, c->early_len);
    if (!resource_matches(c->tunnel, req, c->resource, sizeof(c->resource))) {
        int room = (int)sizeof(c->resource) - 7;   /* ":65535" + NUL */
        snprintf(c->resource, sizeof(c->resource), "%.*s:%u", room, req->host,
                 (unsigned)req->port);
        client_fail(c, SOCKS5_REP_HOST_UNREACHABLE, "no resource matches the SOCKS5 request");
        return;
    }
    c->state = CLIENT_ROUTING;
    route(c);
}

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct listener *l = w->data;
    struct tunnel *t = l->tunnel;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage peer_sa;
        int fd = net_accept_peer(l->fd, &peer_sa);
        if (fd < 0)
            return;
        char peer[80];
        net_sockaddr_name(&peer_sa, peer, sizeof(peer));
        struct ip_quota *quota = quota_take(t, peer);
        if (quota == NULL) {
            close(fd);
            continue;
        }
        struct client *c = t->clients < CLIENTS_MAX ? calloc(1, sizeof(*c)) : NULL;
        if (c == NULL) {
            quota_release(quota);
            close(fd);
            log_warn("connection refused", "reason=\"too many connections waiting\"");
            continue;
        }
        c->quota = quota;
        t->clients++;
        c->tunnel = t;
        c->fd = fd;
        c->socks = l->socks;
        c->state = CLIENT_SOCKS;
        snprintf(c->peer, sizeof(c->peer), "%s", peer);
        ev_timer_init(&c->timer, client_timeout_cb, (double)t->config.client_timeout_ms / 1000.0,
                      0);
        c->timer.data = c;
        ev_timer_start(loop, &c->timer);
        if (l->socks) {
            socks5_session_init(&c->socks5);
            ev_io_init(&c->io, socks_read_cb, fd, EV_READ);
            c->io.data = c;
            ev_io_start(loop, &c->io);
            continue;
        }
        ev_io_init(&c->io, socks_read_cb, -1, EV_READ);   /* never started */
        c->state = CLIENT_ROUTING;
        snprintf(c->resource, sizeof(c->resource), "%s", l->resource);
        route(c);
    }
}

static int
add_listener(struct tunnel *t, const char *addr, bool socks, const char *resource,
             struct ztr_err *err)
{
    struct listener *l = &t->listeners[t->listener_count];
    l->tunnel = t;
    l->socks = socks;
    snprintf(l->resource, sizeof(l->resource), "%s", resource != NULL ? resource : "");
    TRY(t->shared_listeners ? net_listen_shared(addr, LISTEN_BACKLOG, &l->fd, err)
                            : net_listen(addr, LISTEN_BACKLOG, &l->fd, err));
    t->listener_count++;
    ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
    l->io.data = l;
    ev_io_start(t->loop, &l->io);
    log_info(socks ? "SOCKS5 listener started" : "forward listener started",
             "listen=%s port=%u%s%s", addr, (unsigned)net_local_port(l->fd),
             socks ? "" : " resource=", socks ? "" : resource);
    return 0;
}

void
tunnel_connector_state(struct tunnel *t, const char *id, const char *address,
                       const char *spiffe_id, int64_t down_until_ms, const char *reason)
{
    struct tconn *k = t != NULL ? find_conn(t, id, address, spiffe_id) : NULL;
    /* A live session of our own says more than another loop's news. */
    if (k == NULL || k->session_ready)
        return;
    if (down_until_ms == 0) {
        if (k->down_until_ms > 0)
            backoff_reset(&k->backoff);
        k->down_until_ms = 0;
        return;
    }
    if (down_until_ms > k->down_until_ms) {
        k->down_until_ms = down_until_ms;
        snprintf(k->last_error, sizeof(k->last_error), "%s", reason);
    }
}

void
tunnel_recheck_peers(struct tunnel *t)
{
    if (t == NULL)
        return;
    const struct pki_bundle *bundle = tls_ctx_bundle(t->tls);
    for (size_t i = 0; i < t->conn_count; i++)
        if (t->conns[i]->session != NULL && t->conns[i]->session_ready)
            (void)dsession_recheck_peer(t->conns[i]->session, bundle);
}

void
tunnel_present_identity(struct tunnel *t, const char *chain_pem, size_t chain_len,
                        const struct pki_key *key)
{
    if (t == NULL)
        return;
    size_t presented = 0;
    for (size_t i = 0; i < t->conn_count; i++) {
        struct tconn *k = t->conns[i];
        struct ztr_err err = {0};
        if (k->session == NULL || !k->session_ready)
            continue;
        if (dsession_present_identity(k->session, chain_pem, chain_len, key, &err) != 0)
            log_warn("renewed certificate not presented", "connector=%s error=\"%s\"",
                     k->spiffe_id, err.msg);
        else
            presented++;
    }
    if (presented > 0)
        log_info("renewed certificate presented to live sessions", "sessions=%zu", presented);
}

/* ---- keepalive ------------------------------------------------------------------------------ */

static void
ping_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct tunnel *t = w->data;
    for (size_t i = 0; i < t->conn_count; i++) {
        struct tconn *k = t->conns[i];
        if (k->session_ready && dsession_ping(k->session) != 0)
            dsession_close(k->session, MUX_CODE_INTERNAL, "connector does not answer PING");
    }
}

/* ---- the connector list ---------------------------------------------------------------------- */

static struct tconn *
find_conn(const struct tunnel *t, const char *id, const char *address, const char *spiffe_id)
{
    for (size_t i = 0; i < t->conn_count; i++) {
        struct tconn *k = t->conns[i];
        if (!k->removed && strcmp(k->id, id) == 0 && strcmp(k->address, address) == 0 &&
            strcmp(k->spiffe_id, spiffe_id) == 0)
            return k;
    }
    return NULL;
}

static void
remove_conn(struct tconn *k)
{
    k->removed = true;
    if (k->dial_fd >= 0) {
        dial_cancel(k);
        conn_lost(k, false, MUX_CODE_NORMAL, "connector removed");   /* frees k */
        return;
    }
    if (k->session != NULL) {
        dsession_close(k->session, MUX_CODE_NORMAL, "connector removed");
        return;   /* freed when the session is gone */
    }
    tconn_free(k);
}

static int
apply_list(struct tunnel *t, const json_t *list)
{
    size_t i;
    json_t *entry;
    /* Mark everything, keep what is listed again, drop the rest. */
    bool keep[CONNECTORS_MAX] = {false};
    struct tconn *fresh[CONNECTORS_MAX];
    size_t fresh_count = 0;
    json_array_foreach(list, i, entry) {
        const char *id = json_string_value(json_object_get(entry, "id"));
        const char *spiffe = json_string_value(json_object_get(entry, "spiffe_id"));
        const char *address = json_string_value(json_object_get(entry, "address"));
        json_t *resources = json_object_get(entry, "resources");
        json_t *targets = json_object_get(entry, "targets");
        if (id == NULL || spiffe == NULL || address == NULL || !json_is_array(resources))
            continue;
        struct tconn *k = find_conn(t, id, address, spiffe);
        if (k == NULL) {
            if (t->conn_count + fresh_count >= CONNECTORS_MAX)
                break;
            char host[64];
            uint16_t port;
            if (config_parse_addr(address, host, sizeof(host), &port) != 0 ||
                strlen(id) >= sizeof(k->id) || strlen(spiffe) >= sizeof(k->spiffe_id)) {
                log_warn("connector ignored", "connector=%s address=%s reason=\"bad entry\"", id,
                         address);
                continue;
            }
            k = calloc(1, sizeof(*k));
            if (k == NULL)
                continue;
            k->tunnel = t;
            k->dial_fd = -1;
            snprintf(k->id, sizeof(k->id), "%s", id);
            snprintf(k->spiffe_id, sizeof(k->spiffe_id), "%s", spiffe);
            snprintf(k->address, sizeof(k->address), "%s", address);
            snprintf(k->ip, sizeof(k->ip), "%s", host);
            struct pki_spiffe_id parsed;
            if (pki_spiffe_id_parse(spiffe, &parsed, NULL) == 0 &&
                strcmp(parsed.trust_domain, t->trust_domain) != 0)
                snprintf(k->suffix, sizeof(k->suffix), "@%s", parsed.trust_domain);
            struct backoff_policy policy = {.base_ms = t->config.retry_min_ms,
                                            .cap_ms = t->config.retry_max_ms};
            backoff_init(&k->backoff, &policy, (uint64_t)now_ms(t) ^ (uintptr_t)k);
            fresh[fresh_count++] = k;
        } else {
            for (size_t j = 0; j < t->conn_count; j++)
                if (t->conns[j] == k)
                    keep[j] = true;
            json_decref(k->resources);
            json_decref(k->targets);
        }
        k->resources = json_incref(resources);
        k->draining = json_integer_value(json_object_get(entry, "draining")) != 0;
        k->targets = json_is_array(targets) && json_array_size(targets) == json_array_size(resources)
                         ? json_incref(targets)
                         : NULL;
    }
    /* Back to front: remove_conn may swap the last entry into this slot. */
    for (size_t j = t->conn_count; j-- > 0;)
        if (!keep[j] && !t->conns[j]->removed)
            remove_conn(t->conns[j]);
    for (size_t j = 0; j < fresh_count; j++)
        t->conns[t->conn_count++] = fresh[j];
    return 0;
}

/* STATE_DIR/connectors.json holds the last `connectors` message as it
 * came, written like the connector's allowlist: atomically, 0600. */
static int
save_list(const struct tunnel *t, const json_t *msg, struct ztr_err *err)
{
    char path[4096];
    TRY(file_path_join(path, sizeof(path), t->state_dir, CONNECTORS_FILE, err));
    char *text = json_dumps(msg, JSON_COMPACT);
    if (text == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int rc = file_write_atomic(path, text, strlen(text), 0600, err);
    free(text);
    return rc;
}

void
tunnel_set_connectors(struct tunnel *t, const json_t *msg)
{
    if (t == NULL)
        return;
    int64_t version = json_integer_value(json_object_get(msg, "version"));
    apply_list(t, json_object_get(msg, "connectors"));
    t->list_version = version;
    if (!t->persist)
        return;   /* another worker's tunnel saves and logs it */
    struct ztr_err err = {0};
    if (save_list(t, msg, &err) != 0)
        log_warn("connector list not persisted", "error=\"%s\"", err.msg);
    /* The tunneler takes every list it is sent (the newest decision is the
     * last one sent on the one control stream); the epoch is kept with the
     * list, saved whole above, to tell which controller run numbered it. */
    const char *epoch = json_string_value(json_object_get(msg, "epoch"));
    log_info("connector list received", "version=%lld connectors=%zu epoch=%s",
             (long long)version, json_array_size(json_object_get(msg, "connectors")),
             epoch != NULL ? epoch : "");
}

/* The list saved by the last run, if any: without it the tunneler waits
 * for the controller's (an unreadable file counts as none). */
static void
load_list(struct tunnel *t)
{
    char path[4096];
    char *text;
    size_t len;
    struct ztr_err err = {0};
    if (file_path_join(path, sizeof(path), t->state_dir, CONNECTORS_FILE, &err) != 0 ||
        file_read_all(path, CONNECTORS_FILE_MAX, &text, &len, &err) != 0)
        return;
    json_error_t jerr;
    json_t *msg = json_loadb(text, len, 0, &jerr);
    free(text);
    if (msg == NULL)
        return;
    apply_list(t, json_object_get(msg, "connectors"));
    t->list_version = json_integer_value(json_object_get(msg, "version"));
    if (t->persist)
        log_info("connector list loaded from disk", "version=%lld connectors=%zu",
                 (long long)t->list_version, t->conn_count);
    json_decref(msg);
}

/* ---- life cycle --------------------------------------------------------------------------------- */

int
tunnel_new(const struct tunnel_env *env, const struct tunneler_config *config,
           struct tunnel **out, struct ztr_err *err)
{
    *out = NULL;
    struct tunnel *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    t->loop = env->loop;
    t->config = *config;
    t->tls = env->tls;
    t->self_id = env->self_id;
    t->persist = !env->replica;
    t->on_connector_state = env->on_connector_state;
    t->state_ctx = env->state_ctx;
    t->shared_listeners = env->shared_listeners;
    t->shared = env->shared;
    if (t->shared != NULL)
        shared_retain(t->shared);
    t->trust_domain = strdup(env->trust_domain);
    t->state_dir = strdup(env->state_dir);
    int rc = t->trust_domain == NULL || t->state_dir == NULL
                 ? ztr_err_set(err, ZTR_E_NOMEM, "out of memory")
                 : relay_pool_new(POOL_FREE_CHUNKS, &t->pool, err);
    if (rc == 0 && t->shared == NULL)
        rc = tunnel_shared_new(&t->shared, err);
    for (size_t i = 0; rc == 0 && i < config->forward_count; i++)
        rc = add_listener(t, config->forwards[i].listen, false, config->forwards[i].resource, err);
    if (rc == 0 && config->socks_listen != NULL)
        rc = add_listener(t, config->socks_listen, true, NULL, err);
    if (rc != 0) {
        tunnel_stop(t);
        return -1;
    }
    t->config.forwards = NULL;   /* not ours to keep */
    t->config.socks_listen = NULL;
    load_list(t);
    double every = (double)config->ping_interval_ms / 1000.0;
    ev_timer_init(&t->ping_timer, ping_cb, every, every);
    t->ping_timer.data = t;
    ev_timer_start(t->loop, &t->ping_timer);
    *out = t;
    return 0;
}

int
tunnel_start(struct agent *agent, const struct tunneler_config *config, struct tunnel **out,
             struct ztr_err *err)
{
    *out = NULL;
    struct tunnel_env env = {.loop = agent_loop(agent),
                             .tls = agent_data_tls(agent, TLS_SIDE_CLIENT, DATA_ALPN, err),
                             .trust_domain = agent_trust_domain(agent),
                             .state_dir = agent_state_dir(agent),
                             .self_id = agent_spiffe_id(agent)};
    if (env.tls == NULL)
        return -1;
    return tunnel_new(&env, config, out, err);
}

void
tunnel_stop(struct tunnel *t)
{
    if (t == NULL)
        return;
    t->stopping = true;
    ev_timer_stop(t->loop, &t->ping_timer);
    for (size_t i = 0; i < t->listener_count; i++) {
        ev_io_stop(t->loop, &t->listeners[i].io);
        close(t->listeners[i].fd);
    }
    t->listener_count = 0;
    for (size_t i = 0; i < t->conn_count; i++) {
        struct tconn *k = t->conns[i];
        while (k->waiting != NULL)
            client_free(k->waiting);
        dial_cancel(k);
        if (k->session != NULL)
            dsession_close(k->session, MUX_CODE_NORMAL, "shutting down");
    }
    /* Sessions finish on the loop (a turn each); bounded. */
    for (int i = 0; i < 100; i++) {
        bool open = false;
        for (size_t j = 0; j < t->conn_count; j++)
            open = open || t->conns[j]->session != NULL;
        if (!open)
            break;
        ev_run(t->loop, EVRUN_NOWAIT);
    }
    while (t->conn_count > 0)
        tconn_free(t->conns[0]);
    tunnel_shared_release(t->shared);
    relay_pool_free(t->pool);
    free(t->trust_domain);
    free(t->state_dir);
    free(t);
}

uint16_t
tunnel_listener_port(const struct tunnel *t, size_t i)
{
    return t != NULL && i < t->listener_count ? net_local_port(t->listeners[i].fd) : 0;
}

void
tunnel_count(const struct tunnel *t, struct tunnel_counts *sum)
{
    if (t == NULL)
        return;
    dsession_stats_add(&sum->stats, &t->counts.stats);
    sum->streams_refused += t->counts.streams_refused;
    sum->failovers += t->counts.failovers;
    sum->quota_refused += t->counts.quota_refused;
}

json_t *
tunnel_connectors_health(const struct tunnel *t)
{
    json_t *list = json_array();
    int64_t now = now_ms(t);
    for (size_t i = 0; i < t->conn_count; i++) {
        const struct tconn *k = t->conns[i];
        if (k->removed)
            continue;
        const char *state = k->session_ready ? "up" : k->down_until_ms > now ? "down" : "idle";
        json_t *entry = json_pack("{s:s, s:s, s:s, s:s, s:I, s:O}", "id", k->id, "address",
                                  k->address, "spiffe_id", k->spiffe_id, "state", state,
                                  "streams", (json_int_t)load_of(k), "resources", k->resources);
        if (k->session_ready)
            json_object_set_new(entry, "rtt_ms", json_integer(k->rtt_ms));
        if (k->last_error[0] != '\0')
            json_object_set_new(entry, "last_error", json_string(k->last_error));
        if (k->draining)
            json_object_set_new(entry, "draining", json_true());
        json_array_append_new(list, entry);
    }
    return list;
}

int64_t
tunnel_list_version(const struct tunnel *t)
{
    return t != NULL ? t->list_version : 0;
}

void
tunnel_counts_health(const struct tunnel_counts *c, int64_t version, json_t *connectors,
                     json_t *health)
{
    dsession_stats_health(&c->stats, health);
    json_t *data = json_object_get(health, "data");
    json_object_set_new(data, "streams_refused", json_integer((json_int_t)c->streams_refused));
    json_object_set_new(data, "failovers", json_integer((json_int_t)c->failovers));
    json_object_set_new(data, "client_streams_over_quota",
                        json_integer((json_int_t)c->quota_refused));
    json_object_set_new(health, "connectors",
                        json_pack("{s:I, s:o}", "version", (json_int_t)version, "list",
                                  connectors));
}

void
tunnel_counts_metrics(const struct tunnel_counts *c, const json_t *connectors,
                      struct metrics *m)
{
    dsession_stats_metrics(&c->stats, "tunneler", m);
    size_t up = 0, i;
    json_t *entry;
    json_array_foreach(connectors, i, entry)
        up += strcmp(json_string_value(json_object_get(entry, "state")), "up") == 0;
    metrics_gauge(m, "ztr_connectors_known", "Connectors in the last list.", NULL,
                  (int64_t)json_array_size(connectors));
    metrics_gauge(m, "ztr_connectors_up", "Connectors with a live session.", NULL, (int64_t)up);
    metrics_counter(m, "ztr_streams_refused_total", "Client connections not served.", NULL,
                    c->streams_refused);
    metrics_counter(m, "ztr_client_streams_over_quota_total",
                    "Client connections closed at accept: their source IP had its quota open.",
                    NULL, c->quota_refused);
    metrics_counter(m, "ztr_failovers_total", "Streams moved to another connector.", NULL,
                    c->failovers);
}

void
tunnel_add_health(const struct tunnel *t, json_t *health)
{
    if (t == NULL)
        return;
    struct tunnel_counts counts = {0};
    tunnel_count(t, &counts);
    tunnel_counts_health(&counts, t->list_version, tunnel_connectors_health(t), health);
}

void
tunnel_add_metrics(const struct tunnel *t, struct metrics *m)
{
    if (t == NULL)
        return;
    struct tunnel_counts counts = {0};
    tunnel_count(t, &counts);
    json_t *connectors = tunnel_connectors_health(t);
    tunnel_counts_metrics(&counts, connectors, m);
    json_decref(connectors);
}

json_t *
tunnel_saved_peers(const char *state_dir)
{
    char path[4096];
    char *text;
    size_t len;
    struct ztr_err err = {0};
    if (file_path_join(path, sizeof(path), state_dir, CONNECTORS_FILE, &err) != 0 ||
        file_read_all(path, CONNECTORS_FILE_MAX, &text, &len, &err) != 0)
        return NULL;
    json_t *msg = json_loadb(text, len, 0, NULL);
    free(text);
    json_t *peers = json_incref(json_object_get(msg, "peers"));
    json_decref(msg);
    return peers;
}
