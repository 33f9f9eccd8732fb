/* The connector's data plane (connector/dataplane.c) against a real
 * tunneler-side session: admission by the allowlist, refusals by code, and
 * an allowlist change applied to a live session. Real certificates, real
 * sockets on 127.0.0.1. */
#include "tests/unit/support.h"

#include <errno.h>
#include <ev.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connector/allowlist.h"
#include "connector/dataplane.h"
#include "data/dsession.h"
#include "net/net.h"
#include "net/tls.h"

#define TD "example.org"
#define LAPTOP "spiffe://" TD "/tunneler/laptop"

static struct test_pki pki;
static struct test_identity connector_id, laptop_id, intruder_id;
static uint32_t world_quota;   /* streams_per_tunneler of the next world (0: none) */
static struct dataplane_shared *world_shared;   /* the next world's (NULL: its own) */

/* The tunneler's side of one session, as the connector sees it from the
 * outside. */
struct tunneler {
    struct tls_ctx *tls;
    struct dsession *ds;
    struct dsession_stats stats;
    bool ready, closed;
    enum mux_code closed_code;
    char closed_reason[MUX_REASON_MAX];
    int open_oks, pending_closed;
    enum mux_code pending_code;
    char pending_reason[MUX_REASON_MAX];
    int app_fd;
};

struct world {
    struct ev_loop *loop;
    struct tls_ctx *connector_tls;
    struct relay_pool *pool;
    struct allowlist *allowlist;
    struct dataplane *dp;
    int target_listen;        /* the resource "echo" points here */
    int target_fd;            /* what the connector dialed */
    uint16_t closed_port;     /* nothing listens here ("down") */
};

static void
t_ready(void *user, struct dsession *ds)
{
    (void)ds;
    ((struct tunneler *)user)->ready = true;
}

static void
t_open_ok(void *user, struct dsession *ds, uint32_t stream, void *stream_user)
{
    (void)stream_user;
    struct tunneler *t = user;
    t->open_oks++;
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    t->app_fd = fds[1];
    struct ztr_err err = {0};
    assert_int_equal(dsession_attach(ds, stream, fds[0], NULL, 0, &err), 0);
}

static void
t_pending_closed(void *user, struct dsession *ds, uint32_t stream, void *stream_user,
                 enum mux_code code, const char *reason)
{
    (void)ds;
    (void)stream;
    (void)stream_user;
    struct tunneler *t = user;
    t->pending_closed++;
    t->pending_code = code;
    snprintf(t->pending_reason, sizeof(t->pending_reason), "%s", reason);
}

static void
t_closed(void *user, struct dsession *ds, enum mux_code code, const char *reason)
{
    (void)ds;
    struct tunneler *t = user;
    t->closed = true;
    t->ds = NULL;
    t->closed_code = code;
    snprintf(t->closed_reason, sizeof(t->closed_reason), "%s", reason);
}

static const struct dsession_hooks tunneler_hooks = {.on_ready = t_ready,
                                                     .on_open_ok = t_open_ok,
                                                     .on_pending_closed = t_pending_closed,
                                                     .on_closed = t_closed};

static json_t *
allowlist_msg(int version, const char *tunnelers)
{
    json_t *list = json_loads(tunnelers, 0, NULL);
    assert_non_null(list);
    return json_pack("{s:s, s:i, s:o}", "type", "allowlist", "version", version, "tunnelers",
                     list);
}

static void
allow(struct world *w, int version, const char *tunnelers)
{
    json_t *msg = allowlist_msg(version, tunnelers);
    struct ztr_err err = {0};
    assert_int_equal(allowlist_apply(w->allowlist, msg, 1000, &err), 0);
    json_decref(msg);
}

static int
setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    test_pki_init(&pki, TD);
    test_pki_issue(&pki, PKI_ROLE_CONNECTOR, "dc1", "127.0.0.1", &connector_id);
    test_pki_issue(&pki, PKI_ROLE_TUNNELER, "laptop", NULL, &laptop_id);
    test_pki_issue(&pki, PKI_ROLE_TUNNELER, "intruder", NULL, &intruder_id);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    test_identity_free(&connector_id);
    test_identity_free(&laptop_id);
    test_identity_free(&intruder_id);
    test_pki_free(&pki);
    return 0;
}

static void
world_start(struct world *w)
{
    memset(w, 0, sizeof(*w));
    w->target_fd = -1;
    w->loop = ev_loop_new(EVFLAG_AUTO);
    w->connector_tls = test_tls_ctx(&pki, TLS_SIDE_SERVER, DATA_ALPN, &connector_id);
    struct ztr_err err = {0};
    assert_int_equal(relay_pool_new(16, &w->pool, &err), 0);
    assert_int_equal(net_listen("127.0.0.1:0", 4, &w->target_listen, &err), 0);
    int gone;
    assert_int_equal(net_listen("127.0.0.1:0", 1, &gone, &err), 0);
    w->closed_port = net_local_port(gone);
    close(gone);
    w->allowlist = allowlist_new();
    allow(w, 1, "[{\"spiffe_id\":\"" LAPTOP "\",\"resources\":[\"echo\",\"down\",\"nowhere\"]}]");
    struct connector_resource resources[3] = {{.name = "echo"}, {.name = "down"},
                                              {.name = "secret"}};
    snprintf(resources[0].target, sizeof(resources[0].target), "127.0.0.1:%u",
             net_local_port(w->target_listen));
    snprintf(resources[1].target, sizeof(resources[1].target), "127.0.0.1:%u", w->closed_port);
    snprintf(resources[2].target, sizeof(resources[2].target), "127.0.0.1:%u",
             net_local_port(w->target_listen));
    struct dataplane_env env = {.loop = w->loop, .tls = w->connector_tls, .trust_domain = TD,
                                .shared = world_shared};
    struct dataplane_config config = {.listen = "127.0.0.1:0",
                                      .resources = resources,
                                      .resource_count = 3,
                                      .allowlist = w->allowlist,
                                      .window = {65536, 0},
                                      .dial_timeout_ms = 5000,
                                      .idle_timeout_ms = 60000,
                                      .streams_per_tunneler = world_quota};
    assert_int_equal(dataplane_new(&env, &config, &w->dp, &err), 0);
    assert_true(dataplane_listen_port(w->dp) != 0);
}

static void
world_stop(struct world *w)
{
    dataplane_stop(w->dp);
    if (w->target_fd >= 0)
        close(w->target_fd);
    close(w->target_listen);
    TEST_LOOP_UNTIL(w->loop, relay_pool_chunks_in_use(w->pool) == 0);
    relay_pool_free(w->pool);
    allowlist_free(w->allowlist);
    tls_ctx_free(w->connector_tls);
    ev_loop_destroy(w->loop);
}

/* A tunneler with identity id dials port (a data plane on w's loop). */
static void
dial_port(struct world *w, struct tunneler *t, const struct test_identity *id, uint16_t port)
{
    memset(t, 0, sizeof(*t));
    t->app_fd = -1;
    t->tls = test_tls_ctx(&pki, TLS_SIDE_CLIENT, DATA_ALPN, id);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
    int fd;
    struct ztr_err err = {0};
    assert_int_equal(net_connect_start(addr, &fd, &err), 0);
    struct pki_expect expect = {.trust_domain = TD, .role = PKI_ROLE_CONNECTOR,
                                .dial_ip = "127.0.0.1"};
    struct dsession_config config = {.loop = w->loop, .tls = t->tls, .pool = w->pool,
                                     .stats = &t->stats, .role = MUX_OPENER,
                                     .window = {65536, 0}, .hooks = &tunneler_hooks, .user = t};
    assert_int_equal(dsession_new(&config, fd, &expect, &t->ds, &err), 0);
    TEST_LOOP_UNTIL(w->loop, t->ready || t->closed);
}

/* A tunneler with identity id dials the world's data plane. */
static void
dial(struct world *w, struct tunneler *t, const struct test_identity *id)
{
    dial_port(w, t, id, dataplane_listen_port(w->dp));
}

static void
hang_up(struct world *w, struct tunneler *t)
{
    if (t->ds != NULL)
        dsession_close(t->ds, MUX_CODE_NORMAL, "test over");
    TEST_LOOP_UNTIL(w->loop, t->closed);
    assert_true(t->closed);
    if (t->app_fd >= 0)
        close(t->app_fd);
    tls_ctx_free(t->tls);
}

static void
open_stream(struct tunneler *t, const char *resource)
{
    uint32_t stream;
    struct ztr_err err = {0};
    assert_int_equal(dsession_open(t->ds, resource, NULL, &stream, &err), 0);
}

static int64_t
health_data(const struct world *w, const char *key)
{
    json_t *health = json_object();
    dataplane_add_health(w->dp, health);
    int64_t v = json_integer_value(json_object_get(json_object_get(health, "data"), key));
    json_decref(health);
    return v;
}

/* On the allowlist: the session opens and a granted resource is dialed and
 * relayed. */
static void
test_allowed_tunneler_reaches_its_resource(void **state)
{
    (void)state;
    struct world w;
    struct tunneler t;
    world_start(&w);
    dial(&w, &t, &laptop_id);
    assert_true(t.ready);
    open_stream(&t, "echo");
    TEST_LOOP_UNTIL(w.loop, (w.target_fd >= 0 || (w.target_fd = net_accept(w.target_listen)) >= 0) &&
                                t.open_oks == 1);
    assert_true(w.target_fd >= 0);
    assert_int_equal(t.open_oks, 1);
    assert_int_equal(send(t.app_fd, "ping", 4, 0), 4);
    char buf[4];
    size_t have = 0;
    double end = test_now() + 10;
    while (have < 4 && test_now() < end) {
        ssize_t n = recv(w.target_fd, buf + have, 4 - have, 0);
        if (n > 0)
            have += (size_t)n;
        else
            test_loop_once(w.loop);
    }
    assert_int_equal(have, 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(health_data(&w, "tunnelers_rejected"), 0);
    assert_int_equal(health_data(&w, "sessions"), 1);
    hang_up(&w, &t);
    world_stop(&w);
}

/* Not on the allowlist: GOAWAY with PEER_NOT_ALLOWED and the failure-modes
 * text, one log line naming it, and the counter. */
static void
test_tunneler_not_allowed_gets_goaway_with_its_code(void **state)
{
    (void)state;
    struct world w;
    struct tunneler t;
    world_start(&w);
    test_log_capture_start();
    dial(&w, &t, &intruder_id);
    TEST_LOOP_UNTIL(w.loop, t.closed);
    bool logged = strstr(test_log_captured(), "msg=\"tunneler not allowed\" spiffe_id=spiffe://" TD
                                              "/tunneler/intruder") != NULL;
    test_log_capture_stop();
    assert_true(logged);
    assert_true(t.closed);
    assert_int_equal(t.closed_code, MUX_CODE_PEER_NOT_ALLOWED);
    assert_string_equal(t.closed_reason, "tunneler not allowed");
    assert_int_equal(health_data(&w, "tunnelers_rejected"), 1);
    hang_up(&w, &t);
    world_stop(&w);
}

/* Each refusal of a stream carries its own code; the session stays up. */
static void
test_refused_streams_carry_their_codes(void **state)
{
    (void)state;
    struct world w;
    struct tunneler t;
    world_start(&w);
    dial(&w, &t, &laptop_id);
    static const struct {
        const char *resource;
        enum mux_code code;
        const char *reason;
    } cases[] = {
        {"secret", MUX_CODE_RESOURCE_NOT_ALLOWED, "resource \"secret\" not allowed for this tunneler"},
        {"nowhere", MUX_CODE_UNKNOWN_RESOURCE, "unknown resource \"nowhere\""},
        {"down", MUX_CODE_CONNECT_FAILED, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int before = t.pending_closed;
        open_stream(&t, cases[i].resource);
        TEST_LOOP_UNTIL(w.loop, t.pending_closed > before);
        assert_int_equal(t.pending_closed, before + 1);
        if (t.pending_code != cases[i].code)
            fail_msg("%s: code %s, want %s", cases[i].resource, mux_code_name(t.pending_code),
                     mux_code_name(cases[i].code));
        if (cases[i].reason != NULL)
            assert_string_equal(t.pending_reason, cases[i].reason);
        else
            assert_non_null(strstr(t.pending_reason, "connection refused"));
    }
    assert_false(t.closed);
    assert_int_equal(t.open_oks, 0);
    assert_int_equal(health_data(&w, "tunnelers_rejected"), 0);
    hang_up(&w, &t);
    world_stop(&w);
}

/* Dropped from the allowlist while connected: the session ends with
 * PEER_NOT_ALLOWED at dataplane_enforce; a narrowed grant resets the
 * streams it no longer covers. */
static void
test_allowlist_change_applies_to_live_sessions(void **state)
{
    (void)state;
    struct world w;
    struct tunneler t;
    world_start(&w);
    dial(&w, &t, &laptop_id);
    open_stream(&t, "echo");
    TEST_LOOP_UNTIL(w.loop, t.open_oks == 1);
    assert_int_equal(t.open_oks, 1);
    w.target_fd = net_accept(w.target_listen);

    /* Still listed, but without "echo": the relayed stream is reset. */
    allow(&w, 2, "[{\"spiffe_id\":\"" LAPTOP "\",\"resources\":[\"down\"]}]");
    dataplane_enforce(w.dp);
    TEST_LOOP_UNTIL(w.loop, t.stats.streams == 0);
    assert_int_equal(t.stats.streams, 0);
    assert_int_equal(t.stats.streams_failed, 1);
    assert_false(t.closed);

    allow(&w, 3, "[]");
    dataplane_enforce(w.dp);
    TEST_LOOP_UNTIL(w.loop, t.closed);
    assert_true(t.closed);
    assert_int_equal(t.closed_code, MUX_CODE_PEER_NOT_ALLOWED);
    assert_string_equal(t.closed_reason, "tunneler not allowed");
    assert_int_equal(health_data(&w, "tunnelers_rejected"), 1);
    TEST_LOOP_UNTIL(w.loop, health_data(&w, "sessions") == 0);
    assert_int_equal(health_data(&w, "sessions"), 0);
    hang_up(&w, &t);
    world_stop(&w);
}

/* A tunneler at its stream quota: the next OPEN gets RST REFUSED with the
 * quota's text, counted; the stream it already has is untouched. */
static void
test_stream_quota_per_tunneler(void **state)
{
    (void)state;
    struct world w;
    struct tunneler t;
    world_quota = 1;
    world_start(&w);
    world_quota = 0;
    dial(&w, &t, &laptop_id);
    open_stream(&t, "echo");
    TEST_LOOP_UNTIL(w.loop, t.open_oks == 1);
    assert_int_equal(t.open_oks, 1);
    w.target_fd = net_accept(w.target_listen);
    open_stream(&t, "echo");
    TEST_LOOP_UNTIL(w.loop, t.pending_closed == 1);
    assert_int_equal(t.pending_closed, 1);
    assert_int_equal(t.pending_code, MUX_CODE_REFUSED);
    assert_string_equal(t.pending_reason, DATAPLANE_MSG_QUOTA);
    assert_int_equal(health_data(&w, "streams_over_quota"), 1);
    assert_int_equal(t.stats.streams, 1);
    assert_false(t.closed);
    hang_up(&w, &t);
    world_stop(&w);
}

/* Two data planes (two worker loops' worth) sharing their admission: one
 * tunneler with a session on each still gets its quota in all, and a
 * place freed on one is usable on the other. */
static void
test_stream_quota_counts_every_data_plane(void **state)
{
    (void)state;
    struct world w;
    struct tunneler a, b;
    struct ztr_err err = {0};
    assert_int_equal(dataplane_shared_new(&world_shared, &err), 0);
    world_quota = 1;
    world_start(&w);
    world_quota = 0;
    struct connector_resource echo = {.name = "echo"};
    snprintf(echo.target, sizeof(echo.target), "127.0.0.1:%u", net_local_port(w.target_listen));
    struct dataplane_env env = {.loop = w.loop, .tls = w.connector_tls, .trust_domain = TD,
                                .shared = world_shared};
    struct dataplane_config config = {.listen = "127.0.0.1:0", .resources = &echo,
                                      .resource_count = 1, .allowlist = w.allowlist,
                                      .window = {65536, 0}, .dial_timeout_ms = 5000,
                                      .idle_timeout_ms = 60000, .streams_per_tunneler = 1};
    struct dataplane *other;
    assert_int_equal(dataplane_new(&env, &config, &other, &err), 0);
    /* Its maker's reference goes: the data planes hold their own. */
    dataplane_shared_release(world_shared);
    world_shared = NULL;
    dial(&w, &a, &laptop_id);
    dial_port(&w, &b, &laptop_id, dataplane_listen_port(other));
    assert_true(a.ready && b.ready);
    open_stream(&a, "echo");
    TEST_LOOP_UNTIL(w.loop, a.open_oks == 1);
    assert_int_equal(a.open_oks, 1);
    w.target_fd = net_accept(w.target_listen);
    open_stream(&b, "echo");
    TEST_LOOP_UNTIL(w.loop, b.pending_closed == 1);
    assert_int_equal(b.pending_code, MUX_CODE_REFUSED);
    assert_string_equal(b.pending_reason, DATAPLANE_MSG_QUOTA);
    struct dataplane_counts sum = {0};
    dataplane_count(w.dp, &sum);
    dataplane_count(other, &sum);
    assert_int_equal(sum.quota_refused, 1);
    assert_int_equal(sum.stats.sessions, 2);
    /* The first stream over, its place serves the other data plane. */
    hang_up(&w, &a);
    close(w.target_fd);
    w.target_fd = -1;
    TEST_LOOP_UNTIL(w.loop, relay_pool_chunks_in_use(w.pool) == 0 && health_data(&w, "streams") == 0);
    open_stream(&b, "echo");
    TEST_LOOP_UNTIL(w.loop, b.open_oks == 1);
    assert_int_equal(b.open_oks, 1);
    hang_up(&w, &b);
    dataplane_stop(other);
    world_stop(&w);
}

/* dataplane_refuse: live sessions end with GOAWAY REFUSED and the reason,
 * new ones get the same after their handshake, until it is lifted. */
static void
test_refuse_closes_and_refuses_until_lifted(void **state)
{
    (void)state;
    struct world w;
    struct tunneler t;
    world_start(&w);
    dial(&w, &t, &laptop_id);
    assert_true(t.ready);
    dataplane_refuse(w.dp, "allowlist too old: 9s > ALLOWLIST_MAX_AGE 2s");
    TEST_LOOP_UNTIL(w.loop, t.closed);
    assert_true(t.closed);
    assert_int_equal(t.closed_code, MUX_CODE_REFUSED);
    assert_string_equal(t.closed_reason, "allowlist too old: 9s > ALLOWLIST_MAX_AGE 2s");
    hang_up(&w, &t);
    dial(&w, &t, &laptop_id);
    TEST_LOOP_UNTIL(w.loop, t.closed);
    assert_true(t.closed);
    assert_int_equal(t.closed_code, MUX_CODE_REFUSED);
    hang_up(&w, &t);
    dataplane_refuse(w.dp, NULL);
    dial(&w, &t, &laptop_id);
    assert_true(t.ready);
    test_loop_once(w.loop);
    assert_false(t.closed);
    hang_up(&w, &t);
    world_stop(&w);
}

/* Draining: a new OPEN gets RST REFUSED "connector draining" (what
 * tunnelers fail over on), counted; the open stream carries on and the
 * session stays; at the deadline dataplane_close_streams resets it with
 * the reason, logged. */
static void
test_drain_refuses_new_streams_and_closes_the_rest_at_the_deadline(void **state)
{
    (void)state;
    struct world w;
    struct tunneler t;
    world_start(&w);
    dial(&w, &t, &laptop_id);
    open_stream(&t, "echo");
    TEST_LOOP_UNTIL(w.loop, t.open_oks == 1);
    assert_int_equal(t.open_oks, 1);
    w.target_fd = net_accept(w.target_listen);
    dataplane_drain(w.dp, true);
    open_stream(&t, "echo");
    TEST_LOOP_UNTIL(w.loop, t.pending_closed == 1);
    assert_int_equal(t.pending_code, MUX_CODE_REFUSED);
    assert_string_equal(t.pending_reason, DATAPLANE_MSG_DRAINING);
    assert_int_equal(health_data(&w, "streams_refused_draining"), 1);
    assert_int_equal(t.stats.streams, 1);
    assert_false(t.closed);
    test_log_capture_start();
    assert_int_equal(dataplane_close_streams(w.dp, "connector drained: deadline reached"), 1);
    bool logged = strstr(test_log_captured(),
                         "msg=\"stream closed at the drain deadline\" spiffe_id=" LAPTOP
                         " resource=\"echo\" reason=\"connector drained: deadline reached\"") !=
                  NULL;
    test_log_capture_stop();
    assert_true(logged);
    TEST_LOOP_UNTIL(w.loop, t.stats.streams == 0);
    assert_int_equal(t.stats.streams, 0);
    assert_int_equal(health_data(&w, "streams_closed_at_drain_deadline"), 1);
    assert_false(t.closed);
    /* Undrained: streams open again. */
    dataplane_drain(w.dp, false);
    open_stream(&t, "echo");
    TEST_LOOP_UNTIL(w.loop, t.open_oks == 2);
    assert_int_equal(t.open_oks, 2);
    hang_up(&w, &t);
    world_stop(&w);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allowed_tunneler_reaches_its_resource),
        cmocka_unit_test(test_tunneler_not_allowed_gets_goaway_with_its_code),
        cmocka_unit_test(test_refused_streams_carry_their_codes),
        cmocka_unit_test(test_allowlist_change_applies_to_live_sessions),
        cmocka_unit_test(test_stream_quota_per_tunneler),
        cmocka_unit_test(test_stream_quota_counts_every_data_plane),
        cmocka_unit_test(test_refuse_closes_and_refuses_until_lifted),
        cmocka_unit_test(test_drain_refuses_new_streams_and_closes_the_rest_at_the_deadline),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
