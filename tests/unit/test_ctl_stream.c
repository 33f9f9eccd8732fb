#define _GNU_SOURCE /* accept4 */
/* The control stream over real TLS on loopback: framing across reads,
 * decode errors, closing from inside a callback, and the ALPN gate. */
#include "tests/unit/support.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ctl/frame.h"
#include "ctl/stream.h"
#include "net/net.h"

#define TD "example.org"
#define MSGS_MAX 16

struct identity {
    char *chain, *key;
    size_t chain_len, key_len;
};

static struct {
    struct pki_ca *ca;
    char *bundle;
    size_t bundle_len;
    struct identity controller, tunneler;
} g;

static void
make_identity_until(enum pki_role role, const char *name, int64_t not_after,
                    struct identity *out)
{
    struct pki_key *key;
    uint8_t *public_der;
    size_t public_len;
    struct pki_spiffe_id id;
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(pki_key_generate(&key, NULL), 0);
    assert_int_equal(pki_key_public_der(key, &public_der, &public_len, NULL), 0);
    assert_int_equal(pki_spiffe_id_build(TD, role, name, &id, NULL), 0);
    struct pki_leaf_request request = {&id, public_der, public_len, NULL, 0, now - 60,
                                       not_after, NULL, 0};
    assert_int_equal(pki_ca_issue(g.ca, &request, &out->chain, &out->chain_len, NULL), 0);
    assert_int_equal(pki_key_to_pem(key, &out->key, &out->key_len, NULL), 0);
    free(public_der);
    pki_key_free(key);
}

static void
make_identity(enum pki_role role, const char *name, struct identity *out)
{
    make_identity_until(role, name, (int64_t)time(NULL) + 3600, out);
}

static int
setup(void **state)
{
    (void)state;
    assert_int_equal(pki_init(NULL), 0);
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(pki_ca_create(TD, now - 3600, 86400, &g.ca, NULL), 0);
    assert_int_equal(pki_ca_cert_pem(g.ca, &g.bundle, &g.bundle_len, NULL), 0);
    make_identity(PKI_ROLE_CONTROLLER, NULL, &g.controller);
    make_identity(PKI_ROLE_TUNNELER, "laptop", &g.tunneler);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    free(g.controller.chain);
    free(g.controller.key);
    free(g.tunneler.chain);
    free(g.tunneler.key);
    free(g.bundle);
    pki_ca_free(g.ca);
    pki_cleanup();
    return 0;
}

/* ---- one end of a control stream ---------------------------------------------- */

struct end {
    struct ctl_stream *stream;
    bool ready, closed;
    char peer[PKI_SPIFFE_ID_MAX + 1];
    char close_reason[512];
    enum ctlmsg_type types[MSGS_MAX];
    json_t *msgs[MSGS_MAX];
    size_t count;
    size_t faults;
    enum ctl_stream_fault fault;
    char fault_text[512];
    bool answer_hello;       /* server: a hello gets a welcome */
    size_t close_at;         /* close from inside on_message at this message (1-based) */
};

static void
end_on_ready(void *user)
{
    struct end *end = user;
    end->ready = true;
    const struct pki_spiffe_id *id = ctl_stream_peer_id(end->stream);
    snprintf(end->peer, sizeof(end->peer), "%s", id != NULL ? id->uri : "");
}

static void
end_on_message(void *user, enum ctlmsg_type type, const json_t *msg)
{
    struct end *end = user;
    assert_false(end->closed);
    assert_true(end->count < MSGS_MAX);
    end->types[end->count] = type;
    end->msgs[end->count] = json_deep_copy(msg);
    end->count++;
    if (end->answer_hello && type == CTLMSG_HELLO)
        assert_int_equal(ctl_stream_send(end->stream,
                                         json_pack("{s:s, s:s, s:i, s:i}", "type", "welcome",
                                                   "node_id", "n1", "heartbeat_interval_ms",
                                                   1000, "server_time", 5),
                                         NULL),
                         0);
    if (end->close_at == end->count) {
        ctl_stream_close(end->stream, "closed from on_message");
        /* A second close, still inside the callback, changes nothing. */
        ctl_stream_close(end->stream, "closed twice");
    }
}

static void
end_on_fault(void *user, enum ctl_stream_fault fault, const char *error)
{
    struct end *end = user;
    end->faults++;
    end->fault = fault;
    snprintf(end->fault_text, sizeof(end->fault_text), "%s", error);
}

static void
end_on_close(void *user, const char *reason)
{
    struct end *end = user;
    assert_false(end->closed);
    end->closed = true;
    end->stream = NULL;
    snprintf(end->close_reason, sizeof(end->close_reason), "%s", reason);
}

static const struct ctl_stream_callbacks end_callbacks = {end_on_ready, end_on_message,
                                                          end_on_fault, end_on_close};

static void
end_free(struct end *end)
{
    for (size_t i = 0; i < end->count; i++)
        json_decref(end->msgs[i]);
}

/* ---- a raw TLS client: writes any bytes it is given ---------------------------- */

struct raw {
    struct tls_conn *conn;
    bool ready, closed;
    char close_reason[512];
};

static void
raw_on_ready(struct tls_conn *conn, void *user)
{
    (void)conn;
    ((struct raw *)user)->ready = true;
}

static void
raw_on_data(struct tls_conn *conn, const uint8_t *data, size_t len, void *user)
{
    (void)conn;
    (void)data;
    (void)len;
    (void)user;
}

static void
raw_on_close(struct tls_conn *conn, const char *reason, void *user)
{
    (void)conn;
    struct raw *raw = user;
    raw->closed = true;
    raw->conn = NULL;
    snprintf(raw->close_reason, sizeof(raw->close_reason), "%s", reason);
}

static const struct tls_conn_callbacks raw_callbacks = {raw_on_ready, raw_on_data, raw_on_close};

/* ---- the world: a control-stream server on loopback ---------------------------- */

struct world {
    struct ev_loop *loop;
    struct tls_ctx *server_ctx, *client_ctx;
    int listen_fd;
    ev_io accept_io;
    ev_timer deadline;
    struct end server;
    bool accepted;
};

static void
accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct world *wd = io->data;
    int fd = accept4(wd->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    assert_false(wd->accepted);
    wd->accepted = true;
    struct pki_expect expect = {.trust_domain = TD, .role = PKI_ROLE_TUNNELER};
    struct ztr_err err = {0};
    if (ctl_stream_new(loop, wd->server_ctx, fd, &expect, &end_callbacks, &wd->server,
                       &wd->server.stream, &err) != 0)
        fail_msg("server stream: %s", err.msg);
}

static void
deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static struct tls_ctx *
client_ctx(const char *alpn)
{
    struct tls_ctx_config config = {.side = TLS_SIDE_CLIENT, .alpn = alpn,
                                    .chain_pem = g.tunneler.chain,
                                    .chain_len = g.tunneler.chain_len,
                                    .key_pem = g.tunneler.key, .key_len = g.tunneler.key_len,
                                    .bundle_pem = g.bundle, .bundle_len = g.bundle_len};
    struct tls_ctx *ctx;
    struct ztr_err err = {0};
    if (tls_ctx_new(&config, &ctx, &err) != 0)
        fail_msg("client ctx: %s", err.msg);
    return ctx;
}

static void
world_init(struct world *wd, const char *client_alpn)
{
    memset(wd, 0, sizeof(*wd));
    wd->loop = ev_loop_new(EVFLAG_AUTO);
    struct ztr_err err = {0};
    struct tls_ctx_config server = {.side = TLS_SIDE_SERVER, .alpn = CTL_ALPN,
                                    .chain_pem = g.controller.chain,
                                    .chain_len = g.controller.chain_len,
                                    .key_pem = g.controller.key,
                                    .key_len = g.controller.key_len, .bundle_pem = g.bundle,
                                    .bundle_len = g.bundle_len};
    if (tls_ctx_new(&server, &wd->server_ctx, &err) != 0)
        fail_msg("server ctx: %s", err.msg);
    wd->client_ctx = client_ctx(client_alpn);
    assert_int_equal(net_listen("127.0.0.1:0", 16, &wd->listen_fd, &err), 0);
    ev_io_init(&wd->accept_io, accept_cb, wd->listen_fd, EV_READ);
    wd->accept_io.data = wd;
    ev_io_start(wd->loop, &wd->accept_io);
}

static int
world_dial(struct world *wd)
{
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", net_local_port(wd->listen_fd));
    int fd;
    assert_int_equal(net_connect_start(addr, &fd, NULL), 0);
    return fd;
}

static const struct pki_expect controller_expect = {.trust_domain = TD,
                                                    .role = PKI_ROLE_CONTROLLER};

static void
world_connect_stream(struct world *wd, struct end *client)
{
    struct ztr_err err = {0};
    if (ctl_stream_new(wd->loop, wd->client_ctx, world_dial(wd), &controller_expect,
                       &end_callbacks, client, &client->stream, &err) != 0)
        fail_msg("client stream: %s", err.msg);
}

static void
world_connect_raw(struct world *wd, struct raw *client)
{
    struct ztr_err err = {0};
    if (tls_conn_new(wd->loop, wd->client_ctx, world_dial(wd), &controller_expect,
                     &raw_callbacks, client, &client->conn, &err) != 0)
        fail_msg("raw client: %s", err.msg);
}

/* Runs the loop until cond holds or `seconds` pass. */
#define RUN_FOR_UNTIL(wd, seconds, cond)                                           \
    do {                                                                           \
        ev_timer_init(&(wd)->deadline, deadline_cb, (seconds), 0);                 \
        ev_timer_start((wd)->loop, &(wd)->deadline);                               \
        for (int i_ = 0; i_ < 100000 && !(cond); i_++) {                           \
            if (!ev_is_active(&(wd)->deadline))                                    \
                break;                                                             \
            ev_run((wd)->loop, EVRUN_ONCE);                                        \
        }                                                                          \
        ev_timer_stop((wd)->loop, &(wd)->deadline);                                \
    } while (0)
#define RUN_UNTIL(wd, cond) RUN_FOR_UNTIL(wd, 10.0, cond)

static void
world_free(struct world *wd)
{
    if (wd->server.stream != NULL)
        ctl_stream_close(wd->server.stream, "test over");
    RUN_UNTIL(wd, !wd->accepted || wd->server.closed);
    end_free(&wd->server);
    ev_io_stop(wd->loop, &wd->accept_io);
    close(wd->listen_fd);
    tls_ctx_free(wd->server_ctx);
    tls_ctx_free(wd->client_ctx);
    ev_loop_destroy(wd->loop);
}

static void
raw_close(struct world *wd, struct raw *client)
{
    if (client->conn != NULL)
        tls_conn_close(client->conn, "test over");
    RUN_UNTIL(wd, client->closed);
}

/* Appends one frame holding text to buf at *len. */
static void
put_frame(uint8_t *buf, size_t cap, size_t *len, const char *text)
{
    uint8_t *frame;
    size_t frame_len;
    assert_int_equal(frame_encode(text, strlen(text), &frame, &frame_len, NULL), 0);
    assert_true(*len + frame_len <= cap);
    memcpy(buf + *len, frame, frame_len);
    *len += frame_len;
    free(frame);
}

static void
raw_write(struct raw *client, const void *data, size_t len)
{
    assert_non_null(client->conn);
    assert_int_equal(tls_conn_write(client->conn, data, len, NULL), 0);
}

#define HEARTBEAT(seq) "{\"type\":\"heartbeat\",\"seq\":" #seq "}"

/* ---- tests ----------------------------------------------------------------------- */

static void
test_messages_round_trip_both_ways(void **state)
{
    (void)state;
    struct world wd;
    world_init(&wd, CTL_ALPN);
    wd.server.answer_hello = true;
    struct end client = {0};
    world_connect_stream(&wd, &client);
    RUN_UNTIL(&wd, client.ready && wd.server.ready);
    assert_true(client.ready);
    assert_string_equal(client.peer, "spiffe://" TD "/controller");
    assert_string_equal(wd.server.peer, "spiffe://" TD "/tunneler/laptop");
    assert_non_null(strstr(ctl_stream_peer_addr(wd.server.stream), "127.0.0.1:"));
    size_t key_len = 0;
    assert_non_null(ctl_stream_peer_public_key(wd.server.stream, &key_len));
    assert_true(key_len > 0);

    /* A message that fails its schema is not sent, and the stream stays up. */
    struct ztr_err err = {0};
    assert_int_equal(ctl_stream_send(client.stream, json_pack("{s:s}", "type", "hello"), &err),
                     -1);
    assert_non_null(strstr(err.msg, "hello.version: missing"));
    assert_int_equal(ctl_stream_send(client.stream, NULL, &err), -1);
    assert_int_equal(ctl_stream_send(client.stream,
                                     json_pack("{s:s, s:i, s:s}", "type", "hello", "version",
                                               CTLMSG_VERSION, "role", "tunneler"),
                                     &err),
                     0);
    RUN_UNTIL(&wd, client.count == 1);
    assert_int_equal(wd.server.count, 1);
    assert_int_equal(wd.server.types[0], CTLMSG_HELLO);
    assert_string_equal(json_string_value(json_object_get(wd.server.msgs[0], "role")),
                        "tunneler");
    assert_int_equal(client.count, 1);
    assert_int_equal(client.types[0], CTLMSG_WELCOME);
    assert_string_equal(json_string_value(json_object_get(client.msgs[0], "node_id")), "n1");
    assert_int_equal(client.faults + wd.server.faults, 0);

    ctl_stream_close(client.stream, "agent done");
    RUN_UNTIL(&wd, client.closed && wd.server.closed);
    assert_string_equal(client.close_reason, "agent done");
    assert_true(wd.server.closed);
    end_free(&client);
    world_free(&wd);
}

static void
test_several_frames_in_one_write_arrive_in_order(void **state)
{
    (void)state;
    struct world wd;
    world_init(&wd, CTL_ALPN);
    struct raw client = {0};
    world_connect_raw(&wd, &client);
    RUN_UNTIL(&wd, client.ready && wd.server.ready);
    uint8_t buf[512];
    size_t len = 0;
    put_frame(buf, sizeof(buf), &len, HEARTBEAT(1));
    put_frame(buf, sizeof(buf), &len, HEARTBEAT(2));
    put_frame(buf, sizeof(buf), &len, HEARTBEAT(3));
    raw_write(&client, buf, len);
    RUN_UNTIL(&wd, wd.server.count == 3);
    assert_int_equal(wd.server.count, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(wd.server.types[i], CTLMSG_HEARTBEAT);
        assert_int_equal(json_integer_value(json_object_get(wd.server.msgs[i], "seq")),
                         (json_int_t)i + 1);
    }
    assert_false(wd.server.closed);
    raw_close(&wd, &client);
    world_free(&wd);
}

static void
test_frame_split_across_writes_arrives_once(void **state)
{
    (void)state;
    struct world wd;
    world_init(&wd, CTL_ALPN);
    struct raw client = {0};
    world_connect_raw(&wd, &client);
    RUN_UNTIL(&wd, client.ready && wd.server.ready);
    uint8_t buf[512];
    size_t len = 0;
    put_frame(buf, sizeof(buf), &len, HEARTBEAT(7));
    size_t first_len = len;
    put_frame(buf, sizeof(buf), &len, HEARTBEAT(8));
    /* Cuts inside the first header, inside the first payload, and inside
     * the second header; each piece goes out (and is read) on its own. */
    size_t cuts[] = {0, 2, 9, first_len + 2, len};
    size_t expected[] = {0, 0, 1, 2};
    for (size_t i = 0; i < 4; i++) {
        raw_write(&client, buf + cuts[i], cuts[i + 1] - cuts[i]);
        RUN_FOR_UNTIL(&wd, 0.1, wd.server.closed);
        assert_int_equal(wd.server.count, expected[i]);
    }
    assert_int_equal(wd.server.count, 2);
    assert_int_equal(json_integer_value(json_object_get(wd.server.msgs[0], "seq")), 7);
    assert_int_equal(json_integer_value(json_object_get(wd.server.msgs[1], "seq")), 8);
    assert_int_equal(wd.server.faults, 0);
    raw_close(&wd, &client);
    world_free(&wd);
}

static void
test_oversized_frame_closes_with_the_reason(void **state)
{
    (void)state;
    struct world wd;
    world_init(&wd, CTL_ALPN);
    struct raw client = {0};
    world_connect_raw(&wd, &client);
    RUN_UNTIL(&wd, client.ready && wd.server.ready);
    uint8_t buf[512];
    size_t len = 0;
    put_frame(buf, sizeof(buf), &len, HEARTBEAT(1));
    uint32_t too_big = FRAME_MAX_PAYLOAD + 1;
    uint8_t header[4] = {(uint8_t)(too_big >> 24), (uint8_t)(too_big >> 16),
                         (uint8_t)(too_big >> 8), (uint8_t)too_big};
    memcpy(buf + len, header, sizeof(header));
    len += sizeof(header);
    /* Whatever follows the bad header is never read as a frame. */
    put_frame(buf, sizeof(buf), &len, HEARTBEAT(2));
    raw_write(&client, buf, len);
    RUN_UNTIL(&wd, wd.server.closed && client.closed);
    assert_true(wd.server.closed);
    assert_int_equal(wd.server.count, 1);
    assert_int_equal(wd.server.faults, 1);
    assert_int_equal(wd.server.fault, CTL_STREAM_BAD_FRAME);
    assert_string_equal(wd.server.fault_text, "frame length 1048577 outside 1..1048576 bytes");
    assert_string_equal(wd.server.close_reason, wd.server.fault_text);
    assert_true(client.closed);
    world_free(&wd);
}

static void
test_malformed_message_closes_with_the_reason(void **state)
{
    (void)state;
    struct world wd;
    world_init(&wd, CTL_ALPN);
    struct raw client = {0};
    world_connect_raw(&wd, &client);
    RUN_UNTIL(&wd, client.ready && wd.server.ready);
    uint8_t buf[512];
    size_t len = 0;
    put_frame(buf, sizeof(buf), &len, "{\"type\":\"heartbeat\",");
    put_frame(buf, sizeof(buf), &len, HEARTBEAT(2));
    raw_write(&client, buf, len);
    RUN_UNTIL(&wd, wd.server.closed && client.closed);
    assert_true(wd.server.closed);
    assert_int_equal(wd.server.count, 0);
    assert_int_equal(wd.server.faults, 1);
    assert_int_equal(wd.server.fault, CTL_STREAM_BAD_MESSAGE);
    assert_non_null(strstr(wd.server.fault_text, "invalid JSON"));
    assert_string_equal(wd.server.close_reason, wd.server.fault_text);
    world_free(&wd);
}

static void
test_close_inside_on_message_stops_delivery(void **state)
{
    (void)state;
    struct world wd;
    world_init(&wd, CTL_ALPN);
    wd.server.close_at = 2;
    struct raw client = {0};
    world_connect_raw(&wd, &client);
    RUN_UNTIL(&wd, client.ready && wd.server.ready);
    uint8_t buf[512];
    size_t len = 0;
    for (int i = 0; i < 5; i++)
        put_frame(buf, sizeof(buf), &len, HEARTBEAT(1));
    /* Five frames in one record: the stream is mid-read when it is closed. */
    raw_write(&client, buf, len);
    RUN_UNTIL(&wd, wd.server.closed && client.closed);
    assert_true(wd.server.closed);
    assert_int_equal(wd.server.count, 2);
    assert_int_equal(wd.server.faults, 0);
    assert_string_equal(wd.server.close_reason, "closed from on_message");
    assert_true(client.closed);
    world_free(&wd);
}

static void
test_other_alpn_is_refused(void **state)
{
    (void)state;
    struct world wd;
    world_init(&wd, "ztr-data/1");
    struct raw client = {0};
    world_connect_raw(&wd, &client);
    RUN_UNTIL(&wd, client.closed && wd.accepted && wd.server.closed);
    assert_true(client.closed);
    assert_false(client.ready);
    assert_true(wd.server.closed);
    assert_false(wd.server.ready);
    assert_int_equal(wd.server.count, 0);
    world_free(&wd);

    /* A control-stream client refuses a server that speaks another protocol. */
    struct end client_end = {0};
    world_init(&wd, CTL_ALPN);
    tls_ctx_free(wd.server_ctx);
    struct tls_ctx_config other = {.side = TLS_SIDE_SERVER, .alpn = "ztr-data/1",
                                   .chain_pem = g.controller.chain,
                                   .chain_len = g.controller.chain_len,
                                   .key_pem = g.controller.key, .key_len = g.controller.key_len,
                                   .bundle_pem = g.bundle, .bundle_len = g.bundle_len};
    assert_int_equal(tls_ctx_new(&other, &wd.server_ctx, NULL), 0);
    world_connect_stream(&wd, &client_end);
    RUN_UNTIL(&wd, client_end.closed && wd.accepted && wd.server.closed);
    assert_true(client_end.closed);
    assert_false(client_end.ready);
    assert_int_equal(client_end.count, 0);
    world_free(&wd);
}

static void
test_stream_ends_at_the_peer_certificate_expiry(void **state)
{
    (void)state;
    /* A tunneler whose certificate runs out two seconds from now. */
    struct identity shortlived = {0};
    make_identity_until(PKI_ROLE_TUNNELER, "laptop", (int64_t)time(NULL) + 2, &shortlived);
    struct world wd;
    world_init(&wd, CTL_ALPN);
    tls_ctx_free(wd.client_ctx);
    struct tls_ctx_config config = {.side = TLS_SIDE_CLIENT, .alpn = CTL_ALPN,
                                    .chain_pem = shortlived.chain,
                                    .chain_len = shortlived.chain_len,
                                    .key_pem = shortlived.key, .key_len = shortlived.key_len,
                                    .bundle_pem = g.bundle, .bundle_len = g.bundle_len};
    assert_int_equal(tls_ctx_new(&config, &wd.client_ctx, NULL), 0);
    struct end client = {0};
    world_connect_stream(&wd, &client);
    RUN_UNTIL(&wd, client.ready && wd.server.ready);
    assert_true(wd.server.ready);
    int64_t not_after = ctl_stream_peer_not_after(wd.server.stream);
    assert_true(not_after > 0 && not_after <= (int64_t)time(NULL) + 2);
    assert_true(ctl_stream_peer_not_after(client.stream) > not_after); /* the controller's */
    /* Set, moved far out, then back: the last call decides. */
    ctl_stream_expire_at(wd.server.stream, not_after + 3600);
    ctl_stream_expire_at(wd.server.stream, not_after);
    assert_false(wd.server.closed);
    RUN_FOR_UNTIL(&wd, 6.0, wd.server.closed && client.closed);
    assert_true(wd.server.closed);
    assert_string_equal(wd.server.close_reason, CTL_STREAM_PEER_EXPIRED);
    assert_true(client.closed);
    assert_true((int64_t)time(NULL) > not_after);
    end_free(&client);
    world_free(&wd);
    free(shortlived.chain);
    free(shortlived.key);
}

static void
test_recheck_closes_a_peer_the_new_bundle_does_not_trust(void **state)
{
    (void)state;
    struct world wd;
    world_init(&wd, CTL_ALPN);
    struct end client = {0};
    world_connect_stream(&wd, &client);
    RUN_UNTIL(&wd, client.ready && wd.server.ready);
    assert_true(client.ready);

    /* The bundle it was verified with: the stream stays. */
    struct pki_bundle *same, *other;
    struct ztr_err err = {0};
    assert_int_equal(pki_bundle_from_pem(g.bundle, g.bundle_len, &same, NULL), 0);
    assert_int_equal(ctl_stream_peer_recheck(client.stream, same, &err), 0);
    /* A bundle of another CA only: the controller no longer verifies. */
    struct pki_ca *ca2;
    char *pem2;
    size_t pem2_len;
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(pki_ca_create(TD, now - 3600, 86400, &ca2, NULL), 0);
    assert_int_equal(pki_ca_cert_pem(ca2, &pem2, &pem2_len, NULL), 0);
    assert_int_equal(pki_bundle_from_pem(pem2, pem2_len, &other, NULL), 0);
    assert_int_equal(ctl_stream_peer_recheck(client.stream, other, &err), -1);
    assert_non_null(strstr(err.msg, "unknown authority"));
    RUN_UNTIL(&wd, client.closed && wd.server.closed);
    assert_string_equal(client.close_reason, CTL_STREAM_PEER_UNTRUSTED);
    pki_bundle_free(same);
    pki_bundle_free(other);
    free(pem2);
    pki_ca_free(ca2);
    end_free(&client);
    world_free(&wd);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_messages_round_trip_both_ways),
        cmocka_unit_test(test_several_frames_in_one_write_arrive_in_order),
        cmocka_unit_test(test_frame_split_across_writes_arrives_once),
        cmocka_unit_test(test_oversized_frame_closes_with_the_reason),
        cmocka_unit_test(test_malformed_message_closes_with_the_reason),
        cmocka_unit_test(test_close_inside_on_message_stops_delivery),
        cmocka_unit_test(test_other_alpn_is_refused),
        cmocka_unit_test(test_stream_ends_at_the_peer_certificate_expiry),
        cmocka_unit_test(test_recheck_closes_a_peer_the_new_bundle_does_not_trust),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
