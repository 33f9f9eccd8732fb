/* The tunneler's data plane (tunneler/dataplane.c): what a connector's
 * refusal code leads to, then the tunneler against two real connector data
 * planes on 127.0.0.1 — choice, failover by code, and the connector list
 * kept in STATE_DIR. Real certificates, real sockets. */
#include "tests/unit/support.h"

#include <errno.h>
#include <ev.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "connector/allowlist.h"
#include "connector/dataplane.h"
#include "net/net.h"
#include "net/tls.h"
#include "tunneler/dataplane.h"

#define TD "example.org"
#define LAPTOP "spiffe://" TD "/tunneler/laptop"

/* Every code has its intended verdict; nothing in it depends on a text. */
static void
test_refusal_codes_decide_failover_and_reply(void **state)
{
    (void)state;
    static const struct {
        enum mux_code code;
        bool failover, mark_down;
        enum socks5_reply_code reply;
    } want[] = {
        {MUX_CODE_NORMAL, false, false, SOCKS5_REP_GENERAL_FAILURE},
        {MUX_CODE_RESOURCE_NOT_ALLOWED, false, false, SOCKS5_REP_NOT_ALLOWED},
        {MUX_CODE_UNKNOWN_RESOURCE, false, false, SOCKS5_REP_HOST_UNREACHABLE},
        {MUX_CODE_CONNECT_FAILED, true, false, SOCKS5_REP_CONNECTION_REFUSED},
        {MUX_CODE_PROTOCOL_ERROR, true, false, SOCKS5_REP_GENERAL_FAILURE},
        {MUX_CODE_REFUSED, true, false, SOCKS5_REP_NETWORK_UNREACHABLE},
        {MUX_CODE_INTERNAL, true, false, SOCKS5_REP_GENERAL_FAILURE},
        {MUX_CODE_CANCEL, true, false, SOCKS5_REP_GENERAL_FAILURE},
        {MUX_CODE_PEER_NOT_ALLOWED, true, true, SOCKS5_REP_NOT_ALLOWED},
    };
    assert_int_equal(sizeof(want) / sizeof(want[0]), MUX_CODE_LAST + 1);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        struct tunnel_refusal r = tunnel_refusal_of(want[i].code);
        if (r.failover != want[i].failover || r.mark_down != want[i].mark_down ||
            r.socks5_reply != want[i].reply)
            fail_msg("code %s: failover %d mark_down %d reply %d", mux_code_name(want[i].code),
                     r.failover, r.mark_down, r.socks5_reply);
    }
    /* A code from a newer peer: another connector may do better. */
    struct tunnel_refusal r = tunnel_refusal_of((enum mux_code)(MUX_CODE_LAST + 1));
    assert_true(r.failover);
    assert_false(r.mark_down);
}

/* ---- the tunneler against two connectors ---------------------------------------------- */

static struct test_pki pki;
static struct test_identity dc_id[2], laptop_id;
static uint32_t tunnel_quota;   /* client_streams_max of the next tunnel (0: none) */
/* The next tunnel's: another worker's news hook, and whether it is a
 * replica (another tunnel saves the list). */
static void (*tunnel_state_hook)(void *, const char *, const char *, const char *, int64_t,
                                 const char *);
static bool tunnel_replica;

/* One connector: its data plane, its allowlist, and the target its
 * resource "echo" points at. */
struct connector {
    struct dataplane *dp;
    struct allowlist *allowlist;
    struct tls_ctx *tls;
    int target_listen;
    int accepted;        /* connections its target took */
    int target_fd;
};

struct world {
    struct ev_loop *loop;
    struct connector dc[2];
    struct tls_ctx *laptop_tls;
    struct tunnel *tunnel;
    char *state_dir;
    uint16_t closed_port;
};

static int
setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    test_pki_init(&pki, TD);
    test_pki_issue(&pki, PKI_ROLE_CONNECTOR, "dc1", "127.0.0.1", &dc_id[0]);
    test_pki_issue(&pki, PKI_ROLE_CONNECTOR, "dc2", "127.0.0.1", &dc_id[1]);
    test_pki_issue(&pki, PKI_ROLE_TUNNELER, "laptop", NULL, &laptop_id);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    test_identity_free(&dc_id[0]);
    test_identity_free(&dc_id[1]);
    test_identity_free(&laptop_id);
    test_pki_free(&pki);
    return 0;
}

static void
allow(struct connector *c, int version, const char *tunnelers)
{
    json_t *list = json_loads(tunnelers, 0, NULL);
    assert_non_null(list);
    json_t *msg = json_pack("{s:s, s:i, s:o}", "type", "allowlist", "version", version,
                            "tunnelers", list);
    struct ztr_err err = {0};
    assert_int_equal(allowlist_apply(c->allowlist, msg, 1000, &err), 0);
    json_decref(msg);
    dataplane_enforce(c->dp);
}

/* Connector i serves "echo" at its own target (or at a closed port). */
static void
connector_start(struct world *w, int i, bool target_down)
{
    struct connector *c = &w->dc[i];
    struct ztr_err err = {0};
    c->target_fd = -1;
    c->tls = test_tls_ctx(&pki, TLS_SIDE_SERVER, DATA_ALPN, &dc_id[i]);
    assert_int_equal(net_listen("127.0.0.1:0", 16, &c->target_listen, &err), 0);
    c->allowlist = allowlist_new();
    struct connector_resource r = {.name = "echo"};
    snprintf(r.target, sizeof(r.target), "127.0.0.1:%u",
             target_down ? w->closed_port : net_local_port(c->target_listen));
    struct dataplane_env env = {.loop = w->loop, .tls = c->tls, .trust_domain = TD};
    struct dataplane_config config = {.listen = "127.0.0.1:0", .resources = &r,
                                      .resource_count = 1, .allowlist = c->allowlist,
                                      .window = {65536, 0}, .dial_timeout_ms = 5000,
                                      .idle_timeout_ms = 60000};
    assert_int_equal(dataplane_new(&env, &config, &c->dp, &err), 0);
    allow(c, 1, "[{\"spiffe_id\":\"" LAPTOP "\",\"resources\":[\"echo\"]}]");
}

static void
connector_stop(struct connector *c)
{
    dataplane_stop(c->dp);
    if (c->target_fd >= 0)
        close(c->target_fd);
    close(c->target_listen);
    allowlist_free(c->allowlist);
    tls_ctx_free(c->tls);
}

/* Takes the connections the targets got so far. */
static void
accept_targets(struct world *w)
{
    for (int i = 0; i < 2; i++) {
        int fd;
        while ((fd = net_accept(w->dc[i].target_listen)) >= 0) {
            w->dc[i].accepted++;
            if (w->dc[i].target_fd >= 0)
                close(w->dc[i].target_fd);
            w->dc[i].target_fd = fd;
        }
    }
}

static struct tunnel *
tunnel_open(struct world *w)
{
    static const struct tunneler_forward forward = {"127.0.0.1:0", "echo"};
    struct tunneler_config config = {.forwards = &forward, .forward_count = 1,
                                     .socks_listen = "127.0.0.1:0", .window = {65536, 0},
                                     .ping_interval_ms = 60000, .retry_min_ms = 60000,
                                     .retry_max_ms = 120000, .client_timeout_ms = 5000,
                                     .client_streams_max = tunnel_quota};
    struct tunnel_env env = {.loop = w->loop, .tls = w->laptop_tls, .trust_domain = TD,
                             .state_dir = w->state_dir, .replica = tunnel_replica,
                             .on_connector_state = tunnel_state_hook};
    struct tunnel *t = NULL;
    struct ztr_err err = {0};
    if (tunnel_new(&env, &config, &t, &err) != 0)
        fail_msg("tunnel_new: %s", err.msg);
    return t;
}

/* connectors: how many of dc1, dc2 to announce (in that order). */
static json_t *
connectors_msg(const struct world *w, int version, int count)
{
    json_t *list = json_array();
    for (int i = 0; i < count; i++) {
        char id[16], spiffe[64], address[64];
        snprintf(id, sizeof(id), "dc%d", i + 1);
        snprintf(spiffe, sizeof(spiffe), "spiffe://" TD "/connector/dc%d", i + 1);
        snprintf(address, sizeof(address), "127.0.0.1:%u", dataplane_listen_port(w->dc[i].dp));
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:[s]}", "id", id, "spiffe_id",
                                              spiffe, "address", address, "resources", "echo"));
    }
    return json_pack("{s:s, s:i, s:o}", "type", "connectors", "version", version, "connectors",
                     list);
}

static void
world_start(struct world *w, bool dc1_target_down)
{
    memset(w, 0, sizeof(*w));
    w->loop = ev_loop_new(EVFLAG_AUTO);
    w->state_dir = test_mkdtemp();
    struct ztr_err err = {0};
    int gone;
    assert_int_equal(net_listen("127.0.0.1:0", 1, &gone, &err), 0);
    w->closed_port = net_local_port(gone);
    close(gone);
    connector_start(w, 0, dc1_target_down);
    connector_start(w, 1, false);
    w->laptop_tls = test_tls_ctx(&pki, TLS_SIDE_CLIENT, DATA_ALPN, &laptop_id);
    w->tunnel = tunnel_open(w);
    json_t *msg = connectors_msg(w, 1, 2);
    tunnel_set_connectors(w->tunnel, msg);
    json_decref(msg);
}

static void
world_stop(struct world *w)
{
    tunnel_stop(w->tunnel);
    connector_stop(&w->dc[0]);
    connector_stop(&w->dc[1]);
    tls_ctx_free(w->laptop_tls);
    ev_loop_destroy(w->loop);
    test_rmtree(w->state_dir);
    free(w->state_dir);
}

/* A local client on listener i (0: the forward, 1: SOCKS5). */
static int
client_connect(struct world *w, size_t listener)
{
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", tunnel_listener_port(w->tunnel, listener));
    int fd;
    struct ztr_err err = {0};
    assert_int_equal(net_connect_start(addr, &fd, &err), 0);
    return fd;
}

static json_t *
tunnel_health(const struct tunnel *t)
{
    json_t *h = json_object();
    tunnel_add_health(t, h);
    return h;
}

static json_t *
health(const struct world *w)
{
    return tunnel_health(w->tunnel);
}

/* The state of connector id in tunnel t's health, and its last error. */
static const char *
tunnel_conn_state(const struct tunnel *t, const char *id, char *last_error, size_t cap)
{
    static char state[16];
    json_t *h = tunnel_health(t);
    size_t i;
    json_t *e;
    state[0] = '\0';
    if (last_error != NULL)
        last_error[0] = '\0';
    json_array_foreach(json_object_get(json_object_get(h, "connectors"), "list"), i, e) {
        if (strcmp(json_string_value(json_object_get(e, "id")), id) != 0)
            continue;
        snprintf(state, sizeof(state), "%s", json_string_value(json_object_get(e, "state")));
        const char *le = json_string_value(json_object_get(e, "last_error"));
        if (last_error != NULL && le != NULL)
            snprintf(last_error, cap, "%s", le);
    }
    json_decref(h);
    return state;
}

static const char *
conn_state(const struct world *w, const char *id, char *last_error, size_t cap)
{
    return tunnel_conn_state(w->tunnel, id, last_error, cap);
}

static int64_t
data_counter(const struct world *w, const char *key)
{
    json_t *h = health(w);
    int64_t v = json_integer_value(json_object_get(json_object_get(h, "data"), key));
    json_decref(h);
    return v;
}

/* The list the controller sent is written to STATE_DIR/connectors.json
 * (0600, as received) and a tunneler started later works from it. */
static void
test_connector_list_is_saved_and_loaded(void **state)
{
    (void)state;
    struct world w;
    world_start(&w, false);
    char *path = test_path(w.state_dir, "connectors.json");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *text = test_read_file(path, NULL);
    json_t *saved = json_loads(text, 0, NULL);
    json_t *sent = connectors_msg(&w, 1, 2);
    assert_true(json_equal(saved, sent));
    json_decref(saved);
    json_decref(sent);
    free(text);

    /* A newer list replaces it. */
    json_t *msg = connectors_msg(&w, 2, 1);
    tunnel_set_connectors(w.tunnel, msg);
    json_decref(msg);
    text = test_read_file(path, NULL);
    saved = json_loads(text, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(saved, "version")), 2);
    assert_int_equal(json_array_size(json_object_get(saved, "connectors")), 1);
    json_decref(saved);
    free(text);

    /* A restart with the controller away: the list comes from disk. */
    tunnel_stop(w.tunnel);
    w.tunnel = tunnel_open(&w);
    json_t *h = health(&w);
    json_t *conns = json_object_get(h, "connectors");
    assert_int_equal(json_integer_value(json_object_get(conns, "version")), 2);
    assert_int_equal(json_array_size(json_object_get(conns, "list")), 1);
    json_decref(h);
    int fd = client_connect(&w, 0);
    TEST_LOOP_UNTIL(w.loop, (accept_targets(&w), w.dc[0].accepted == 1));
    assert_int_equal(w.dc[0].accepted, 1);
    close(fd);

    /* A list that will not parse counts as none. */
    tunnel_stop(w.tunnel);
    test_write_file(path, "{not json");
    w.tunnel = tunnel_open(&w);
    h = health(&w);
    assert_int_equal(json_array_size(json_object_get(json_object_get(h, "connectors"), "list")),
                     0);
    json_decref(h);
    free(path);
    world_stop(&w);
}

/* Least active streams first, ties to list order: a second connection
 * while the first is open goes to the other connector. */
static void
test_least_busy_connector_is_chosen(void **state)
{
    (void)state;
    struct world w;
    world_start(&w, false);
    int a = client_connect(&w, 0);
    TEST_LOOP_UNTIL(w.loop, (accept_targets(&w), w.dc[0].accepted == 1));
    assert_int_equal(w.dc[0].accepted, 1);
    int b = client_connect(&w, 0);
    TEST_LOOP_UNTIL(w.loop, (accept_targets(&w), w.dc[1].accepted == 1));
    assert_int_equal(w.dc[0].accepted, 1);
    assert_int_equal(w.dc[1].accepted, 1);
    assert_int_equal(data_counter(&w, "failovers"), 0);
    assert_string_equal(conn_state(&w, "dc1", NULL, 0), "up");
    assert_string_equal(conn_state(&w, "dc2", NULL, 0), "up");
    close(a);
    close(b);
    world_stop(&w);
}

/* GOAWAY PEER_NOT_ALLOWED from dc1: the connection moves to dc2 and dc1 is
 * marked down with the refusal as its last error. */
static void
test_peer_not_allowed_fails_over_and_marks_down(void **state)
{
    (void)state;
    struct world w;
    world_start(&w, false);
    allow(&w.dc[0], 2, "[]");
    int fd = client_connect(&w, 0);
    TEST_LOOP_UNTIL(w.loop, (accept_targets(&w), w.dc[1].accepted == 1));
    assert_int_equal(w.dc[0].accepted, 0);
    assert_int_equal(w.dc[1].accepted, 1);
    assert_true(data_counter(&w, "failovers") >= 1);
    char last[256];
    assert_string_equal(conn_state(&w, "dc1", last, sizeof(last)), "down");
    assert_string_equal(last, "tunneler not allowed");
    close(fd);
    world_stop(&w);
}

/* Two workers' tunnels: one marks dc1 down, the other hears it (its own
 * clients go straight to dc2), a session up elsewhere clears the mark, and
 * a loop with a live session to a connector keeps it up. */
static struct tunnel *other_loop;

static void
tell_other_loop(void *ctx, const char *id, const char *address, const char *spiffe_id,
                int64_t down_until_ms, const char *reason)
{
    (void)ctx;
    tunnel_connector_state(other_loop, id, address, spiffe_id, down_until_ms, reason);
}

static void
test_connector_marked_down_on_every_loop(void **state)
{
    (void)state;
    struct world w;
    tunnel_state_hook = tell_other_loop;
    world_start(&w, false);
    tunnel_state_hook = NULL;
    tunnel_replica = true;
    other_loop = tunnel_open(&w);   /* the list from disk, as a worker loads it */
    tunnel_replica = false;
    assert_string_equal(tunnel_conn_state(other_loop, "dc1", NULL, 0), "idle");
    allow(&w.dc[0], 2, "[]");
    int fd = client_connect(&w, 0);
    TEST_LOOP_UNTIL(w.loop, (accept_targets(&w), w.dc[1].accepted == 1));
    char last[256];
    assert_string_equal(tunnel_conn_state(other_loop, "dc1", last, sizeof(last)), "down");
    assert_string_equal(last, "tunneler not allowed");
    /* The other loop's client goes to dc2 without trying dc1. */
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", tunnel_listener_port(other_loop, 0));
    int fd2;
    struct ztr_err err = {0};
    assert_int_equal(net_connect_start(addr, &fd2, &err), 0);
    TEST_LOOP_UNTIL(w.loop, (accept_targets(&w), w.dc[1].accepted == 2));
    assert_int_equal(w.dc[1].accepted, 2);
    assert_int_equal(w.dc[0].accepted, 0);
    json_t *h = tunnel_health(other_loop);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(h, "data"), "failovers")),
                     0);
    json_decref(h);
    /* Its session to dc2 is live: news of dc2 down elsewhere does not
     * override it. */
    char dc2[64];
    snprintf(dc2, sizeof(dc2), "127.0.0.1:%u", dataplane_listen_port(w.dc[1].dp));
    tunnel_connector_state(other_loop, "dc2", dc2, "spiffe://" TD "/connector/dc2",
                           (int64_t)(ev_now(w.loop) * 1000) + 60000, "elsewhere");
    assert_string_equal(tunnel_conn_state(other_loop, "dc2", NULL, 0), "up");
    /* dc1 came back on another loop: the mark goes. */
    char dc1[64];
    snprintf(dc1, sizeof(dc1), "127.0.0.1:%u", dataplane_listen_port(w.dc[0].dp));
    tunnel_connector_state(other_loop, "dc1", dc1, "spiffe://" TD "/connector/dc1", 0, "");
    assert_string_equal(tunnel_conn_state(other_loop, "dc1", NULL, 0), "idle");
    close(fd);
    close(fd2);
    tunnel_stop(other_loop);
    world_stop(&w);
}

/* CONNECT_FAILED at dc1: the stream moves to dc2, dc1 stays up (its
 * session is fine, only its target failed). */
static void
test_connect_failed_fails_over_without_marking_down(void **state)
{
    (void)state;
    struct world w;
    world_start(&w, true);
    int fd = client_connect(&w, 0);
    TEST_LOOP_UNTIL(w.loop, (accept_targets(&w), w.dc[1].accepted == 1));
    assert_int_equal(w.dc[1].accepted, 1);
    assert_int_equal(data_counter(&w, "failovers"), 1);
    assert_string_equal(conn_state(&w, "dc1", NULL, 0), "up");
    close(fd);
    world_stop(&w);
}

/* Sends a SOCKS5 CONNECT for host:80 and returns the reply code. */
static int
socks_connect(struct world *w, const char *host)
{
    int fd = client_connect(w, 1);
    uint8_t req[300] = {5, 1, 0};
    size_t n = 3, hl = strlen(host);
    req[n++] = 5;
    req[n++] = 1;
    req[n++] = 0;
    req[n++] = 3;
    req[n++] = (uint8_t)hl;
    memcpy(req + n, host, hl);
    n += hl;
    req[n++] = 0;
    req[n++] = 80;
    size_t sent = 0;
    while (sent < n) {
        ssize_t k = send(fd, req + sent, n - sent, MSG_NOSIGNAL);
        if (k > 0)
            sent += (size_t)k;
        else
            test_loop_once(w->loop);   /* still connecting */
    }
    uint8_t reply[12];
    size_t have = 0;
    double end = test_now() + 10;
    while (have < 12 && test_now() < end) {
        ssize_t k = recv(fd, reply + have, 12 - have, 0);
        if (k > 0)
            have += (size_t)k;
        else if (k == 0)
            break;
        else
            test_loop_once(w->loop);
    }
    close(fd);
    assert_int_equal(have, 12);   /* 05 00 method selection, then a 10-byte reply */
    return reply[3];
}

/* RESOURCE_NOT_ALLOWED at dc1 is a verdict, not a failure: no failover
 * (dc2 would have allowed it), and the SOCKS5 client hears "not allowed". */
static void
test_resource_not_allowed_is_not_retried(void **state)
{
    (void)state;
    struct world w;
    world_start(&w, false);
    allow(&w.dc[0], 2, "[{\"spiffe_id\":\"" LAPTOP "\",\"resources\":[\"other\"]}]");
    assert_int_equal(socks_connect(&w, "echo"), SOCKS5_REP_NOT_ALLOWED);
    accept_targets(&w);
    assert_int_equal(w.dc[1].accepted, 0);
    assert_int_equal(data_counter(&w, "failovers"), 0);
    assert_int_equal(data_counter(&w, "streams_refused"), 1);
    assert_string_equal(conn_state(&w, "dc1", NULL, 0), "up");
    world_stop(&w);
}

static int
targets_accepted(struct world *w)
{
    accept_targets(w);
    return w->dc[0].accepted + w->dc[1].accepted;
}

/* One source IP at its quota: a further connection is closed at accept and
 * counted; once one of its streams is over, it may open another. */
static void
test_client_quota_per_source_ip(void **state)
{
    (void)state;
    struct world w;
    tunnel_quota = 2;
    world_start(&w, false);
    tunnel_quota = 0;
    int a = client_connect(&w, 0), b = client_connect(&w, 0);
    TEST_LOOP_UNTIL(w.loop, targets_accepted(&w) == 2);
    assert_int_equal(targets_accepted(&w), 2);
    int c = client_connect(&w, 0);
    bool closed = false;
    double end = test_now() + 10;
    while (!closed && test_now() < end) {
        char x;
        ssize_t n = recv(c, &x, 1, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            closed = true;
        else
            test_loop_once(w.loop);
    }
    assert_true(closed);
    assert_int_equal(data_counter(&w, "client_streams_over_quota"), 1);
    assert_int_equal(targets_accepted(&w), 2);
    struct linger hard = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(a, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard)), 0);
    close(a);
    TEST_LOOP_UNTIL(w.loop, data_counter(&w, "streams") == 1);
    int d = client_connect(&w, 0);
    TEST_LOOP_UNTIL(w.loop, targets_accepted(&w) == 3);
    assert_int_equal(targets_accepted(&w), 3);
    assert_int_equal(data_counter(&w, "client_streams_over_quota"), 1);
    close(b);
    close(c);
    close(d);
    world_stop(&w);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusal_codes_decide_failover_and_reply),
        cmocka_unit_test(test_connector_list_is_saved_and_loaded),
        cmocka_unit_test(test_least_busy_connector_is_chosen),
        cmocka_unit_test(test_peer_not_allowed_fails_over_and_marks_down),
        cmocka_unit_test(test_connector_marked_down_on_every_loop),
        cmocka_unit_test(test_connect_failed_fails_over_without_marking_down),
        cmocka_unit_test(test_resource_not_allowed_is_not_retried),
        cmocka_unit_test(test_client_quota_per_source_ip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
