/* A data session (data/dsession.c) end to end: two real mTLS sessions on
 * loopback, the connector's side as the acceptor and the tunneler's as the
 * opener, with real sockets attached to the streams. */
#include "tests/unit/support.h"

#include <errno.h>
#include <signal.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "data/dsession.h"
#include "net/net.h"
#include "net/tls.h"

#define TD "example.org"

static struct test_pki pki;
static struct test_identity connector_id, tunneler_id;

/* What one side saw. */
struct end {
    struct dsession *ds;
    struct dsession_stats stats;
    bool ready, closed;
    enum mux_code closed_code;
    char closed_reason[MUX_REASON_MAX];
    int pending_closed;
    enum mux_code pending_code;
    char pending_reason[MUX_REASON_MAX];
    void *pending_user;
    int open_oks, opens, pongs;
    uint32_t last_stream;
    int app_fd;   /* our end of the socket relayed on the last stream */
};

struct world {
    struct ev_loop *loop;
    struct tls_ctx *server_tls, *client_tls;
    struct relay_pool *pool;
    struct end server, client;
    bool refuse, hold;        /* server's on_open: reset with refuse_code / leave pending */
    enum mux_code refuse_code;
    int server_fd;            /* the server session's socket (it owns it) */
};

static struct world *W;

static void
socket_pair(int *relayed, int *app)
{
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    *relayed = fds[0];
    *app = fds[1];
}

static void
on_ready(void *user, struct dsession *ds)
{
    (void)ds;
    ((struct end *)user)->ready = true;
}

static void
server_on_open(void *user, struct dsession *ds, uint32_t stream, const char *resource)
{
    struct end *e = user;
    e->opens++;
    e->last_stream = stream;
    if (W->hold)
        return;
    if (W->refuse) {
        char reason[MUX_REASON_MAX];
        snprintf(reason, sizeof(reason), "refused: %s", resource);
        assert_int_equal(dsession_reset(ds, stream, W->refuse_code, reason), 0);
        return;
    }
    int relayed;
    socket_pair(&relayed, &e->app_fd);
    struct ztr_err err = {0};
    assert_int_equal(dsession_accept(ds, stream, relayed, &err), 0);
}

static void
client_on_open_ok(void *user, struct dsession *ds, uint32_t stream, void *stream_user)
{
    (void)stream_user;
    struct end *e = user;
    e->open_oks++;
    e->last_stream = stream;
    int relayed;
    socket_pair(&relayed, &e->app_fd);
    struct ztr_err err = {0};
    assert_int_equal(dsession_attach(ds, stream, relayed, NULL, 0, &err), 0);
}

static void
on_pending_closed(void *user, struct dsession *ds, uint32_t stream, void *stream_user,
                  enum mux_code code, const char *reason)
{
    (void)ds;
    (void)stream;
    struct end *e = user;
    e->pending_closed++;
    e->pending_code = code;
    e->pending_user = stream_user;
    snprintf(e->pending_reason, sizeof(e->pending_reason), "%s", reason);
}

static void
on_pong(void *user, struct dsession *ds, int64_t rtt_ms)
{
    (void)ds;
    (void)rtt_ms;
    ((struct end *)user)->pongs++;
}

static void
on_closed(void *user, struct dsession *ds, enum mux_code code, const char *reason)
{
    (void)ds;
    struct end *e = user;
    e->closed = true;
    e->ds = NULL;   /* freed when this returns */
    e->closed_code = code;
    snprintf(e->closed_reason, sizeof(e->closed_reason), "%s", reason);
}

static const struct dsession_hooks server_hooks = {
    .on_ready = on_ready, .on_open = server_on_open, .on_pending_closed = on_pending_closed,
    .on_closed = on_closed};
static const struct dsession_hooks client_hooks = {
    .on_ready = on_ready, .on_open_ok = client_on_open_ok, .on_pending_closed = on_pending_closed,
    .on_pong = on_pong, .on_closed = on_closed};

static int
setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);   /* as the daemons run */
    test_pki_init(&pki, TD);
    test_pki_issue(&pki, PKI_ROLE_CONNECTOR, "dc1", "127.0.0.1", &connector_id);
    test_pki_issue(&pki, PKI_ROLE_TUNNELER, "laptop", NULL, &tunneler_id);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    test_identity_free(&connector_id);
    test_identity_free(&tunneler_id);
    test_pki_free(&pki);
    return 0;
}

/* What world_start_with uses instead of the long-lived tunneler identity,
 * and the server's grace and identity (0 / NULL: world_start's defaults). */
static const struct test_identity *world_tunneler;
static int64_t world_grace_ms;

/* Both sessions up over one loopback TCP connection. */
static void
world_start(struct world *w)
{
    memset(w, 0, sizeof(*w));
    W = w;
    w->server.app_fd = w->client.app_fd = -1;
    w->loop = ev_loop_new(EVFLAG_AUTO);
    w->server_tls = test_tls_ctx(&pki, TLS_SIDE_SERVER, DATA_ALPN, &connector_id);
    w->client_tls = test_tls_ctx(&pki, TLS_SIDE_CLIENT, DATA_ALPN,
                                 world_tunneler != NULL ? world_tunneler : &tunneler_id);
    struct ztr_err err = {0};
    assert_int_equal(relay_pool_new(16, &w->pool, &err), 0);
    int listen_fd, client_fd, server_fd = -1;
    assert_int_equal(net_listen("127.0.0.1:0", 4, &listen_fd, &err), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", net_local_port(listen_fd));
    assert_int_equal(net_connect_start(addr, &client_fd, &err), 0);
    for (int i = 0; i < 1000 && server_fd < 0; i++) {
        server_fd = net_accept(listen_fd);
        if (server_fd < 0)
            usleep(1000);
    }
    assert_true(server_fd >= 0);
    w->server_fd = server_fd;
    close(listen_fd);
    struct pki_expect server_expect = {.trust_domain = TD, .role = PKI_ROLE_TUNNELER};
    struct pki_expect client_expect = {.trust_domain = TD, .role = PKI_ROLE_CONNECTOR,
                                       .spiffe_id = "spiffe://" TD "/connector/dc1",
                                       .dial_ip = "127.0.0.1"};
    struct dsession_config sc = {.loop = w->loop, .tls = w->server_tls, .pool = w->pool,
                                 .stats = &w->server.stats, .role = MUX_ACCEPTOR,
                                 .window = {65536, 0, world_grace_ms}, .hooks = &server_hooks,
                                 .user = &w->server,
                                 .self_id = "spiffe://" TD "/connector/dc1"};
    struct dsession_config cc = sc;
    cc.self_id = "spiffe://" TD "/tunneler/laptop";
    cc.tls = w->client_tls;
    cc.stats = &w->client.stats;
    cc.role = MUX_OPENER;
    cc.hooks = &client_hooks;
    cc.user = &w->client;
    assert_int_equal(dsession_new(&sc, server_fd, &server_expect, &w->server.ds, &err), 0);
    assert_int_equal(dsession_new(&cc, client_fd, &client_expect, &w->client.ds, &err), 0);
    assert_int_equal(w->server.stats.sessions, 1);
    TEST_LOOP_UNTIL(w->loop, w->server.ready && w->client.ready);
    assert_true(w->server.ready && w->client.ready);
    assert_true(dsession_is_ready(w->client.ds));
    assert_string_equal(dsession_peer_id(w->server.ds)->uri, "spiffe://" TD "/tunneler/laptop");
}

static void
world_stop(struct world *w)
{
    if (w->client.ds != NULL)
        dsession_close(w->client.ds, MUX_CODE_NORMAL, "test over");
    if (w->server.ds != NULL)
        dsession_close(w->server.ds, MUX_CODE_NORMAL, "test over");
    TEST_LOOP_UNTIL(w->loop, w->client.closed && w->server.closed &&
                                 w->client.stats.streams == 0 && w->server.stats.streams == 0);
    assert_true(w->client.closed && w->server.closed);
    assert_int_equal(w->client.stats.sessions, 0);
    assert_int_equal(w->server.stats.sessions, 0);
    if (w->client.app_fd >= 0)
        close(w->client.app_fd);
    if (w->server.app_fd >= 0)
        close(w->server.app_fd);
    /* Relays of closed streams drain on the loop. */
    TEST_LOOP_UNTIL(w->loop, relay_pool_chunks_in_use(w->pool) == 0);
    relay_pool_free(w->pool);
    tls_ctx_free(w->server_tls);
    tls_ctx_free(w->client_tls);
    ev_loop_destroy(w->loop);
    W = NULL;
}

/* Reads exactly n bytes from fd (non-blocking) while the loop runs. */
static void
read_exactly(struct world *w, int fd, char *buf, size_t n)
{
    size_t have = 0;
    double end = test_now() + 10.0;
    while (have < n && test_now() < end) {
        ssize_t r = recv(fd, buf + have, n - have, 0);
        if (r > 0)
            have += (size_t)r;
        else if (r == 0)
            fail_msg("EOF after %zu of %zu bytes", have, n);
        else
            test_loop_once(w->loop);
    }
    assert_int_equal(have, n);
}

static void
expect_eof(struct world *w, int fd)
{
    char c;
    ssize_t r = -1;
    double end = test_now() + 10.0;
    while (test_now() < end) {
        r = recv(fd, &c, 1, 0);
        if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            break;
        test_loop_once(w->loop);
    }
    assert_int_equal(r, 0);
}

static uint32_t
open_stream(struct world *w, const char *resource, void *stream_user)
{
    uint32_t stream = 0;
    struct ztr_err err = {0};
    assert_int_equal(dsession_open(w->client.ds, resource, stream_user, &stream, &err), 0);
    assert_string_equal(dsession_stream_resource(w->client.ds, stream), resource);
    assert_ptr_equal(dsession_stream_user(w->client.ds, stream), stream_user);
    return stream;
}

/* OPEN, bytes both ways, then FIN from each side: both ends see EOF, the
 * stream closes normally and the counters add up. */
static void
test_stream_carries_data_and_fin_both_ways(void **state)
{
    (void)state;
    struct world w;
    world_start(&w);
    int marker;
    open_stream(&w, "echo", &marker);
    TEST_LOOP_UNTIL(w.loop, w.client.app_fd >= 0 && w.server.app_fd >= 0);
    assert_int_equal(w.client.open_oks, 1);
    assert_int_equal(dsession_stream_count(w.client.ds), 1);
    assert_int_equal(dsession_stream_count(w.server.ds), 1);

    char buf[16];
    assert_int_equal(send(w.client.app_fd, "hello", 5, 0), 5);
    read_exactly(&w, w.server.app_fd, buf, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(send(w.server.app_fd, "world!", 6, 0), 6);
    read_exactly(&w, w.client.app_fd, buf, 6);
    assert_memory_equal(buf, "world!", 6);

    /* Half-close from the client: the target sees EOF, and can still answer. */
    assert_int_equal(shutdown(w.client.app_fd, SHUT_WR), 0);
    expect_eof(&w, w.server.app_fd);
    assert_int_equal(send(w.server.app_fd, "late", 4, 0), 4);
    read_exactly(&w, w.client.app_fd, buf, 4);
    assert_int_equal(shutdown(w.server.app_fd, SHUT_WR), 0);
    expect_eof(&w, w.client.app_fd);

    TEST_LOOP_UNTIL(w.loop, w.client.stats.streams == 0 && w.server.stats.streams == 0);
    assert_int_equal(dsession_stream_count(w.client.ds), 0);
    assert_int_equal(w.client.stats.streams_total, 1);
    assert_int_equal(w.server.stats.streams_total, 1);
    assert_int_equal(w.client.stats.streams_failed, 0);
    assert_int_equal(w.server.stats.streams_failed, 0);
    assert_int_equal(w.client.stats.bytes_sent, 5);
    assert_int_equal(w.client.stats.bytes_received, 10);
    assert_int_equal(w.server.stats.bytes_sent, 10);
    assert_int_equal(w.server.stats.bytes_received, 5);
    assert_int_equal(w.client.pending_closed, 0);
    world_stop(&w);
}

/* Every code a connector can refuse a stream with reaches the opener's
 * owner as that code, with the reason text beside it. */
static void
test_reset_carries_each_code(void **state)
{
    (void)state;
    struct world w;
    world_start(&w);
    w.refuse = true;
    for (unsigned code = 0; code <= MUX_CODE_LAST; code++) {
        w.refuse_code = (enum mux_code)code;
        int before = w.client.pending_closed;
        int marker;
        open_stream(&w, "db", &marker);
        TEST_LOOP_UNTIL(w.loop, w.client.pending_closed > before);
        assert_int_equal(w.client.pending_closed, before + 1);
        assert_int_equal(w.client.pending_code, code);
        assert_string_equal(w.client.pending_reason, "refused: db");
        assert_ptr_equal(w.client.pending_user, &marker);
    }
    TEST_LOOP_UNTIL(w.loop, w.server.stats.streams == 0);
    /* All but the NORMAL one count as failed, on both sides. */
    assert_int_equal(w.client.stats.streams_total, MUX_CODE_LAST + 1);
    assert_int_equal(w.client.stats.streams_failed, MUX_CODE_LAST);
    assert_int_equal(w.server.stats.streams_failed, MUX_CODE_LAST);
    assert_int_equal(w.client.open_oks, 0);
    world_stop(&w);
}

/* GOAWAY ends the session for both sides with its code: the pending stream
 * and the session's owner both hear it. */
static void
test_goaway_ends_the_session_with_its_code(void **state)
{
    (void)state;
    struct world w;
    world_start(&w);
    w.hold = true;
    int marker;
    open_stream(&w, "db", &marker);
    TEST_LOOP_UNTIL(w.loop, w.server.opens == 1);
    dsession_close(w.server.ds, MUX_CODE_PEER_NOT_ALLOWED, "tunneler not allowed");
    TEST_LOOP_UNTIL(w.loop, w.client.closed && w.server.closed);
    assert_true(w.server.closed);
    assert_int_equal(w.server.closed_code, MUX_CODE_PEER_NOT_ALLOWED);
    assert_true(w.client.closed);
    assert_int_equal(w.client.closed_code, MUX_CODE_PEER_NOT_ALLOWED);
    assert_string_equal(w.client.closed_reason, "tunneler not allowed");
    assert_int_equal(w.client.pending_closed, 1);
    assert_int_equal(w.client.pending_code, MUX_CODE_PEER_NOT_ALLOWED);
    assert_ptr_equal(w.client.pending_user, &marker);
    assert_int_equal(w.client.stats.sessions, 0);
    assert_int_equal(w.client.stats.sessions_total, 1);
    world_stop(&w);
}

/* A connection that dies without a GOAWAY reads as INTERNAL. */
static void
test_lost_connection_reads_as_internal(void **state)
{
    (void)state;
    struct world w;
    world_start(&w);
    assert_int_equal(dsession_ping(w.client.ds), 0);
    TEST_LOOP_UNTIL(w.loop, w.client.pongs == 1);
    assert_int_equal(w.client.pongs, 1);
    /* Shut the server's TCP socket down under it: no GOAWAY is read. */
    int fd = w.server_fd;
    assert_int_equal(shutdown(fd, SHUT_RDWR), 0);
    TEST_LOOP_UNTIL(w.loop, w.client.closed);
    assert_true(w.client.closed);
    assert_int_equal(w.client.closed_code, MUX_CODE_INTERNAL);
    world_stop(&w);
}

/* The TLS output bound follows the window: the session's credit, grown,
 * plus a quarter and 256 KiB. */
static void
test_queue_bound_follows_the_window(void **state)
{
    (void)state;
    struct dsession_window dflt = {0, 0, 0};
    struct dsession_window configured = {262144, 4194304, 0};
    struct dsession_window no_growth = {262144, 0, 0};
    assert_int_equal(dsession_queue_max(&dflt), 1048576 + 262144 + 262144);
    assert_int_equal(dsession_queue_max(&configured), 16777216 + 4194304 + 262144);
    assert_int_equal(dsession_queue_max(&no_growth), 1048576 + 262144 + 262144);
}

/* Each end knows when its peer's identity runs out; a trust bundle that no
 * longer holds the peer's CA closes the session (REFUSED, both ends), one
 * that still does leaves it alone. */
static void
test_peer_recheck_and_expiry(void **state)
{
    (void)state;
    struct world w;
    world_start(&w);
    int64_t now = (int64_t)time(NULL);
    assert_true(dsession_peer_not_after(w.server.ds) > now);
    assert_true(dsession_peer_not_after(w.client.ds) > now);
    struct ztr_err err = {0};
    struct pki_bundle *same, *other;
    assert_int_equal(pki_bundle_from_pem(pki.bundle, pki.bundle_len, &same, &err), 0);
    assert_int_equal(dsession_recheck_peer(w.server.ds, same), 0);
    assert_int_equal(dsession_recheck_peer(w.client.ds, same), 0);
    test_loop_once(w.loop);
    assert_false(w.server.closed || w.client.closed);
    struct pki_ca *ca;
    char *pem;
    size_t len;
    assert_int_equal(pki_ca_create(TD, now, 3600, &ca, &err), 0);
    assert_int_equal(pki_ca_cert_pem(ca, &pem, &len, &err), 0);
    assert_int_equal(pki_bundle_from_pem(pem, len, &other, &err), 0);
    assert_int_equal(dsession_recheck_peer(w.server.ds, other), -1);
    TEST_LOOP_UNTIL(w.loop, w.server.closed && w.client.closed);
    assert_true(w.server.closed && w.client.closed);
    assert_int_equal(w.client.closed_code, MUX_CODE_REFUSED);
    assert_string_equal(w.client.closed_reason, DSESSION_MSG_PEER_UNTRUSTED);
    pki_bundle_free(same);
    pki_bundle_free(other);
    free(pem);
    pki_ca_free(ca);
    world_stop(&w);
}

/* ---- a peer's renewed identity ---------------------------------------------- */

/* A tunneler identity valid until now + ttl_s, with a fresh key. */
static void
issue_tunneler(int64_t ttl_s, struct test_identity *out, struct pki_key **key_out)
{
    struct pki_key *key;
    uint8_t *public_der;
    size_t public_len;
    struct pki_spiffe_id id;
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(pki_key_generate(&key, NULL), 0);
    assert_int_equal(pki_key_public_der(key, &public_der, &public_len, NULL), 0);
    assert_int_equal(pki_spiffe_id_build(TD, PKI_ROLE_TUNNELER, "laptop", &id, NULL), 0);
    struct pki_leaf_request request = {&id, public_der, public_len, NULL, 0, now - 60,
                                       now + ttl_s, NULL, 0};
    assert_int_equal(pki_ca_issue(pki.ca, &request, &out->chain, &out->chain_len, NULL), 0);
    assert_int_equal(pki_key_to_pem(key, &out->key, &out->key_len, NULL), 0);
    free(public_der);
    *key_out = key;
}

static void
open_one(struct world *w)
{
    struct ztr_err err = {0};
    uint32_t id;
    int before = w->client.open_oks + w->client.pending_closed;
    assert_int_equal(dsession_open(w->client.ds, "r", NULL, &id, &err), 0);
    TEST_LOOP_UNTIL(w->loop, w->client.open_oks + w->client.pending_closed > before);
}

static void
bytes_across(struct world *w, const char *text)
{
    char buf[64];
    size_t n = strlen(text);
    assert_int_equal(send(w->client.app_fd, text, n, 0), (ssize_t)n);
    read_exactly(w, w->server.app_fd, buf, n);
    assert_memory_equal(buf, text, n);
}

/* The tunneler's certificate runs out mid-stream; within DATA_REAUTH_GRACE
 * the stream keeps going but no new stream is taken, then the tunneler
 * proves its renewed certificate: the connector moves the session's end to
 * the new not_after, and the stream never noticed. */
static void
test_renewed_identity_keeps_the_session_past_expiry(void **state)
{
    (void)state;
    struct test_identity short_id = {0}, renewed = {0};
    struct pki_key *short_key, *renewed_key;
    issue_tunneler(1, &short_id, &short_key);
    issue_tunneler(3600, &renewed, &renewed_key);
    world_tunneler = &short_id;
    world_grace_ms = 5000;
    struct world w;
    world_start(&w);
    open_one(&w);
    assert_int_equal(w.client.open_oks, 1);
    bytes_across(&w, "before");
    TEST_LOOP_UNTIL(w.loop, dsession_peer_in_grace(w.server.ds));
    assert_true(dsession_peer_in_grace(w.server.ds));
    assert_false(w.server.closed || w.client.closed);
    bytes_across(&w, "in grace");
    /* No new stream on an expired identity. */
    open_one(&w);
    assert_int_equal(w.client.open_oks, 1);
    assert_int_equal(w.client.pending_closed, 1);
    assert_int_equal(w.client.pending_code, MUX_CODE_REFUSED);
    assert_string_equal(w.client.pending_reason, DSESSION_MSG_PEER_EXPIRED);
    /* The renewed certificate, proven with its own key. */
    struct ztr_err err = {0};
    int64_t old_end = dsession_peer_not_after(w.server.ds);
    assert_int_equal(dsession_present_identity(w.client.ds, renewed.chain, renewed.chain_len,
                                               renewed_key, &err), 0);
    TEST_LOOP_UNTIL(w.loop, !dsession_peer_in_grace(w.server.ds));
    assert_false(dsession_peer_in_grace(w.server.ds));
    assert_true(dsession_peer_not_after(w.server.ds) > old_end + 3000);
    bytes_across(&w, "after");
    open_one(&w);
    assert_int_equal(w.client.open_oks, 2);
    /* A bundle change re-judges the renewed chain, which still verifies. */
    struct pki_bundle *same;
    assert_int_equal(pki_bundle_from_pem(pki.bundle, pki.bundle_len, &same, &err), 0);
    assert_int_equal(dsession_recheck_peer(w.server.ds, same), 0);
    pki_bundle_free(same);
    assert_false(w.server.closed || w.client.closed);
    world_stop(&w);
    world_tunneler = NULL;
    world_grace_ms = 0;
    test_identity_free(&short_id);
    test_identity_free(&renewed);
    pki_key_free(short_key);
    pki_key_free(renewed_key);
}

/* Without a renewal the session still ends at the grace's end; a proof
 * that does not hold (a certificate presented with another key) ends it at
 * once. */
static void
test_expired_peer_without_a_proof_is_cut(void **state)
{
    (void)state;
    struct test_identity short_id = {0}, renewed = {0};
    struct pki_key *short_key, *renewed_key;
    issue_tunneler(1, &short_id, &short_key);
    issue_tunneler(3600, &renewed, &renewed_key);
    world_tunneler = &short_id;
    world_grace_ms = 300;
    struct world w;
    world_start(&w);
    open_one(&w);
    TEST_LOOP_UNTIL(w.loop, w.server.closed && w.client.closed);
    assert_true(w.server.closed && w.client.closed);
    assert_int_equal(w.client.closed_code, MUX_CODE_REFUSED);
    assert_string_equal(w.client.closed_reason, DSESSION_MSG_PEER_EXPIRED);
    world_stop(&w);
    /* The renewed chain signed with another key: not a proof. */
    world_grace_ms = 60000;
    world_tunneler = NULL;
    world_start(&w);
    struct ztr_err err = {0};
    assert_int_equal(dsession_present_identity(w.client.ds, renewed.chain, renewed.chain_len,
                                               short_key, &err), 0);
    TEST_LOOP_UNTIL(w.loop, w.server.closed && w.client.closed);
    assert_int_equal(w.client.closed_code, MUX_CODE_REFUSED);
    assert_string_equal(w.client.closed_reason, DSESSION_MSG_BAD_IDENTITY);
    world_stop(&w);
    /* Someone else's certificate, however well signed: refused too. */
    world_start(&w);
    assert_int_equal(dsession_present_identity(w.server.ds, renewed.chain, renewed.chain_len,
                                               renewed_key, &err), 0);
    TEST_LOOP_UNTIL(w.loop, w.server.closed && w.client.closed);
    assert_string_equal(w.server.closed_reason, DSESSION_MSG_BAD_IDENTITY);
    world_stop(&w);
    world_grace_ms = 0;
    test_identity_free(&short_id);
    test_identity_free(&renewed);
    pki_key_free(short_key);
    pki_key_free(renewed_key);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_carries_data_and_fin_both_ways),
        cmocka_unit_test(test_reset_carries_each_code),
        cmocka_unit_test(test_goaway_ends_the_session_with_its_code),
        cmocka_unit_test(test_lost_connection_reads_as_internal),
        cmocka_unit_test(test_queue_bound_follows_the_window),
        cmocka_unit_test(test_peer_recheck_and_expiry),
        cmocka_unit_test(test_renewed_identity_keeps_the_session_past_expiry),
        cmocka_unit_test(test_expired_peer_without_a_proof_is_cut),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
