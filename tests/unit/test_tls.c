#define _GNU_SOURCE /* accept4 */
/* TLS connections on a real libev loop over loopback sockets. */
#include "tests/unit/support.h"

#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net/net.h"
#include "net/tls.h"

#define TD "example.org"

struct identity {
    char *chain, *key;
    size_t chain_len, key_len;
};

static struct {
    struct pki_ca *ca;
    char *bundle;
    size_t bundle_len;
    int64_t now;
} w;

static void
make_identity(enum pki_role role, const char *name, const char *ip, struct identity *out)
{
    struct pki_key *key;
    uint8_t *public_der;
    size_t public_len;
    struct pki_spiffe_id id;
    struct pki_ip parsed;
    assert_int_equal(pki_key_generate(&key, NULL), 0);
    assert_int_equal(pki_key_public_der(key, &public_der, &public_len, NULL), 0);
    assert_int_equal(pki_spiffe_id_build(TD, role, name, &id, NULL), 0);
    if (ip != NULL)
        assert_int_equal(pki_ip_parse(ip, &parsed), 0);
    struct pki_leaf_request request = {&id, public_der, public_len, &parsed, ip ? 1 : 0,
                                       w.now - 60, w.now + 3600, NULL, 0};
    assert_int_equal(pki_ca_issue(w.ca, &request, &out->chain, &out->chain_len, NULL), 0);
    assert_int_equal(pki_key_to_pem(key, &out->key, &out->key_len, NULL), 0);
    free(public_der);
    pki_key_free(key);
}

static void
free_identity(struct identity *id)
{
    free(id->chain);
    free(id->key);
}

static int
setup(void **state)
{
    (void)state;
    assert_int_equal(pki_init(NULL), 0);
    w.now = (int64_t)time(NULL);
    assert_int_equal(pki_ca_create(TD, w.now - 3600, 86400, &w.ca, NULL), 0);
    assert_int_equal(pki_ca_cert_pem(w.ca, &w.bundle, &w.bundle_len, NULL), 0);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    free(w.bundle);
    pki_ca_free(w.ca);
    pki_cleanup();
    return 0;
}

/* One test world: a listening server and clients, all on one loop. */
struct side {
    struct tls_conn *conn;
    bool ready, closed, verified;
    char peer[PKI_SPIFFE_ID_MAX + 1];
    char close_reason[512];
    uint8_t *received;
    size_t received_len;
    bool echo;             /* server: echo what arrives */
    size_t close_after;    /* client: close after this many bytes arrived */
};

struct world {
    struct ev_loop *loop;
    struct tls_ctx *server_ctx, *client_ctx;
    int listen_fd;
    ev_io accept_io;
    ev_timer deadline;
    struct side servers[4];
    size_t server_count;
    struct pki_expect server_expect;
};

static void
side_on_ready(struct tls_conn *conn, void *user)
{
    struct side *side = user;
    side->ready = true;
    side->verified = tls_conn_peer_verified(conn);
    const struct pki_spiffe_id *id = tls_conn_peer_id(conn);
    snprintf(side->peer, sizeof(side->peer), "%s", id ? id->uri : "");
}

static void
side_on_data(struct tls_conn *conn, const uint8_t *data, size_t len, void *user)
{
    struct side *side = user;
    side->received = realloc(side->received, side->received_len + len);
    memcpy(side->received + side->received_len, data, len);
    side->received_len += len;
    if (side->echo)
        assert_int_equal(tls_conn_write(conn, data, len, NULL), 0);
    if (side->close_after && side->received_len >= side->close_after)
        tls_conn_close(conn, "client done");
}

static void
side_on_close(struct tls_conn *conn, const char *reason, void *user)
{
    (void)conn;
    struct side *side = user;
    side->closed = true;
    side->conn = NULL;
    snprintf(side->close_reason, sizeof(side->close_reason), "%s", reason);
}

static const struct tls_conn_callbacks side_callbacks = {side_on_ready, side_on_data,
                                                         side_on_close};

static void
accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct world *wd = io->data;
    int fd = accept4(wd->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    assert_true(wd->server_count < 4);
    struct side *side = &wd->servers[wd->server_count++];
    side->echo = true;
    struct ztr_err err = {0};
    assert_int_equal(tls_conn_new(loop, wd->server_ctx, fd, &wd->server_expect, &side_callbacks,
                                  side, &side->conn, &err),
                     0);
}

static void
deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void
world_init(struct world *wd, const struct identity *server_id, const struct identity *client_id,
           bool optional_client, const char *server_alpn)
{
    memset(wd, 0, sizeof(*wd));
    wd->loop = ev_loop_new(EVFLAG_AUTO);
    struct ztr_err err = {0};
    struct tls_ctx_config server = {.side = TLS_SIDE_SERVER, .alpn = server_alpn,
                                    .chain_pem = server_id->chain, .chain_len = server_id->chain_len,
                                    .key_pem = server_id->key, .key_len = server_id->key_len,
                                    .bundle_pem = w.bundle, .bundle_len = w.bundle_len,
                                    .peer_cert_optional = optional_client};
    if (tls_ctx_new(&server, &wd->server_ctx, &err) != 0)
        fail_msg("server ctx: %s", err.msg);
    struct tls_ctx_config client = {.side = TLS_SIDE_CLIENT, .alpn = "ztr-test/1",
                                    .bundle_pem = w.bundle, .bundle_len = w.bundle_len};
    if (client_id != NULL) {
        client.chain_pem = client_id->chain;
        client.chain_len = client_id->chain_len;
        client.key_pem = client_id->key;
        client.key_len = client_id->key_len;
    }
    if (tls_ctx_new(&client, &wd->client_ctx, &err) != 0)
        fail_msg("client ctx: %s", err.msg);
    assert_int_equal(net_listen("127.0.0.1:0", 16, &wd->listen_fd, &err), 0);
    ev_io_init(&wd->accept_io, accept_cb, wd->listen_fd, EV_READ);
    wd->accept_io.data = wd;
    ev_io_start(wd->loop, &wd->accept_io);
    wd->server_expect = (struct pki_expect){.trust_domain = TD, .role = PKI_ROLE_TUNNELER};
}

static void
world_connect(struct world *wd, struct side *client, const char *dial_ip)
{
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", net_local_port(wd->listen_fd));
    int fd;
    struct ztr_err err = {0};
    assert_int_equal(net_connect_start(addr, &fd, &err), 0);
    struct pki_expect expect = {.trust_domain = TD, .role = PKI_ROLE_CONNECTOR, .dial_ip = dial_ip};
    assert_int_equal(tls_conn_new(wd->loop, wd->client_ctx, fd, &expect, &side_callbacks, client,
                                  &client->conn, &err),
                     0);
}

/* Runs the loop until cond holds or 10 s pass. */
#define RUN_UNTIL(wd, cond)                                                        \
    do {                                                                           \
        ev_timer_init(&(wd)->deadline, deadline_cb, 10.0, 0);                      \
        ev_timer_start((wd)->loop, &(wd)->deadline);                               \
        for (int i_ = 0; i_ < 100000 && !(cond); i_++) {                           \
            if (!ev_is_active(&(wd)->deadline))                                    \
                break;                                                             \
            ev_run((wd)->loop, EVRUN_ONCE);                                        \
        }                                                                          \
        ev_timer_stop((wd)->loop, &(wd)->deadline);                                \
    } while (0)

static bool
all_servers_closed(const struct world *wd)
{
    for (size_t i = 0; i < wd->server_count; i++)
        if (!wd->servers[i].closed)
            return false;
    return true;
}

static void
world_free(struct world *wd)
{
    for (size_t i = 0; i < wd->server_count; i++)
        if (wd->servers[i].conn != NULL)
            tls_conn_close(wd->servers[i].conn, "test over");
    RUN_UNTIL(wd, all_servers_closed(wd));
    for (size_t i = 0; i < wd->server_count; i++)
        free(wd->servers[i].received);
    ev_io_stop(wd->loop, &wd->accept_io);
    close(wd->listen_fd);
    tls_ctx_free(wd->server_ctx);
    tls_ctx_free(wd->client_ctx);
    ev_loop_destroy(wd->loop);
}

static void
test_mutual_handshake_and_echo(void **state)
{
    (void)state;
    struct identity server_id, client_id;
    make_identity(PKI_ROLE_CONNECTOR, "dc1-a", "127.0.0.1", &server_id);
    make_identity(PKI_ROLE_TUNNELER, "laptop", NULL, &client_id);
    struct world wd;
    world_init(&wd, &server_id, &client_id, false, "ztr-test/1");
    struct side client = {.close_after = 5};
    world_connect(&wd, &client, "127.0.0.1");
    RUN_UNTIL(&wd, client.ready);
    assert_true(client.ready);
    assert_true(client.verified);
    assert_string_equal(client.peer, "spiffe://" TD "/connector/dc1-a");
    assert_int_equal(tls_conn_write(client.conn, "hello", 5, NULL), 0);
    RUN_UNTIL(&wd, client.closed);
    assert_true(client.closed);
    assert_int_equal(client.received_len, 5);
    assert_memory_equal(client.received, "hello", 5);
    assert_true(wd.servers[0].verified);
    assert_string_equal(wd.servers[0].peer, "spiffe://" TD "/tunneler/laptop");
    RUN_UNTIL(&wd, wd.servers[0].closed);
    assert_true(wd.servers[0].closed);
    free(client.received);
    world_free(&wd);
    free_identity(&server_id);
    free_identity(&client_id);
}

static void
test_large_transfer_survives_partial_writes(void **state)
{
    (void)state;
    struct identity server_id, client_id;
    make_identity(PKI_ROLE_CONNECTOR, "dc1-a", "127.0.0.1", &server_id);
    make_identity(PKI_ROLE_TUNNELER, "laptop", NULL, &client_id);
    struct world wd;
    world_init(&wd, &server_id, &client_id, false, "ztr-test/1");
    const size_t size = 3 * 1024 * 1024;
    uint8_t *payload = malloc(size);
    for (size_t i = 0; i < size; i++)
        payload[i] = (uint8_t)(i * 31 + 7);
    struct side client = {.close_after = size};
    world_connect(&wd, &client, "127.0.0.1");
    RUN_UNTIL(&wd, client.ready);
    assert_int_equal(tls_conn_write(client.conn, payload, size, NULL), 0);
    struct ztr_err err = {0};
    /* The queue is bounded: a peer that does not read cannot grow it. */
    assert_int_equal(tls_conn_write(client.conn, payload, size, &err), -1);
    assert_int_equal(err.code, ZTR_E_LIMIT);
    RUN_UNTIL(&wd, client.closed);
    assert_int_equal(client.received_len, size);
    assert_memory_equal(client.received, payload, size);
    free(payload);
    free(client.received);
    world_free(&wd);
    free_identity(&server_id);
    free_identity(&client_id);
}

static void
test_optional_client_certificate_leaves_peer_unverified(void **state)
{
    (void)state;
    struct identity server_id;
    make_identity(PKI_ROLE_CONNECTOR, "ctl", "127.0.0.1", &server_id);
    struct world wd;
    world_init(&wd, &server_id, NULL, true, "ztr-test/1");
    struct side client = {0};
    world_connect(&wd, &client, NULL);
    RUN_UNTIL(&wd, (client.ready && wd.server_count == 1 && wd.servers[0].ready) || (wd.server_count == 1 && wd.servers[0].closed));
    if (!wd.servers[0].ready)
        fail_msg("server: %s / client: %s", wd.servers[0].close_reason, client.close_reason);
    assert_true(client.verified);
    assert_true(wd.servers[0].ready);
    assert_false(wd.servers[0].verified);
    assert_null(tls_conn_peer_id(wd.servers[0].conn));
    tls_conn_close(client.conn, "bye");
    RUN_UNTIL(&wd, client.closed && wd.servers[0].closed);
    free(client.received);
    world_free(&wd);
    free_identity(&server_id);
}

static void
test_required_client_certificate_refuses_anonymous(void **state)
{
    (void)state;
    struct identity server_id;
    make_identity(PKI_ROLE_CONNECTOR, "dc1-a", "127.0.0.1", &server_id);
    struct world wd;
    world_init(&wd, &server_id, NULL, false, "ztr-test/1");
    struct side client = {0};
    world_connect(&wd, &client, "127.0.0.1");
    RUN_UNTIL(&wd, client.closed && wd.server_count == 1 && wd.servers[0].closed);
    assert_true(wd.servers[0].closed);
    assert_false(wd.servers[0].ready);
    assert_true(client.closed);
    world_free(&wd);
    free_identity(&server_id);
}

/* The last gate before on_ready: only the hook's own verdict, or a client
 * that sent nothing to a server that allows that, lets a session open. */
static void
test_session_opens_only_on_a_verified_peer(void **state)
{
    (void)state;
    struct pki_tls_check check = {0};
    struct ztr_err err = {0};
    /* Handshake done, hook never judged the peer: closed, on both sides. */
    assert_int_equal(pki_tls_check_admit(&check, true, &err), -1);
    assert_string_equal(err.msg, PKI_MSG_PEER_NOT_VERIFIED);
    ztr_err_clear(&err);
    assert_int_equal(pki_tls_check_admit(&check, false, &err), -1);
    assert_string_equal(err.msg, PKI_MSG_PEER_NOT_VERIFIED);
    /* Enrollment server: no certificate at all is the one unverified peer
     * it admits; a certificate nobody judged is not. */
    check.peer_cert_optional = true;
    assert_int_equal(pki_tls_check_admit(&check, false, NULL), 0);
    ztr_err_clear(&err);
    assert_int_equal(pki_tls_check_admit(&check, true, &err), -1);
    assert_string_equal(err.msg, PKI_MSG_PEER_NOT_VERIFIED);
    /* A verdict against the peer wins, whatever else is set. */
    check.verified = true;
    ztr_err_set(&check.err, PKI_E_UNEXPECTED_ROLE, "%s", PKI_MSG_UNEXPECTED_ROLE);
    ztr_err_clear(&err);
    assert_int_equal(pki_tls_check_admit(&check, true, &err), -1);
    assert_string_equal(err.msg, PKI_MSG_UNEXPECTED_ROLE);
    ztr_err_clear(&check.err);
    assert_int_equal(pki_tls_check_admit(&check, true, NULL), 0);
}

static void
test_missing_ip_san_is_reported_by_the_client(void **state)
{
    (void)state;
    struct identity server_id, client_id;
    make_identity(PKI_ROLE_CONNECTOR, "dc1-a", NULL, &server_id);
    make_identity(PKI_ROLE_TUNNELER, "laptop", NULL, &client_id);
    struct world wd;
    world_init(&wd, &server_id, &client_id, false, "ztr-test/1");
    struct side client = {0};
    world_connect(&wd, &client, "127.0.0.1");
    RUN_UNTIL(&wd, client.closed);
    assert_false(client.ready);
    assert_string_equal(client.close_reason, "x509: cannot validate certificate for 127.0.0.1 "
                                             "because it doesn't contain any IP SANs");
    RUN_UNTIL(&wd, wd.server_count == 1 && wd.servers[0].closed);
    world_free(&wd);
    free_identity(&server_id);
    free_identity(&client_id);
}

static void
test_alpn_mismatch_fails_the_handshake(void **state)
{
    (void)state;
    struct identity server_id, client_id;
    make_identity(PKI_ROLE_CONNECTOR, "dc1-a", "127.0.0.1", &server_id);
    make_identity(PKI_ROLE_TUNNELER, "laptop", NULL, &client_id);
    struct world wd;
    world_init(&wd, &server_id, &client_id, false, "ztr-other/1");
    struct side client = {0};
    world_connect(&wd, &client, "127.0.0.1");
    RUN_UNTIL(&wd, client.closed && wd.server_count == 1 && wd.servers[0].closed);
    assert_false(client.ready);
    assert_false(wd.servers[0].ready);
    world_free(&wd);
    free_identity(&server_id);
    free_identity(&client_id);
}

static void
test_identity_update_keeps_open_connections(void **state)
{
    (void)state;
    struct identity old_id, new_id, client_id;
    make_identity(PKI_ROLE_CONNECTOR, "old", "127.0.0.1", &old_id);
    make_identity(PKI_ROLE_CONNECTOR, "new", "127.0.0.1", &new_id);
    make_identity(PKI_ROLE_TUNNELER, "laptop", NULL, &client_id);
    struct world wd;
    world_init(&wd, &old_id, &client_id, false, "ztr-test/1");
    struct side first = {0}, second = {0};
    world_connect(&wd, &first, "127.0.0.1");
    RUN_UNTIL(&wd, first.ready);
    assert_string_equal(first.peer, "spiffe://" TD "/connector/old");
    struct ztr_err err = {0};
    assert_int_equal(tls_ctx_update(wd.server_ctx, new_id.chain, new_id.chain_len, new_id.key,
                                    new_id.key_len, NULL, 0, &err),
                     0);
    /* The established connection still carries data... */
    first.close_after = 4;
    assert_int_equal(tls_conn_write(first.conn, "ping", 4, NULL), 0);
    RUN_UNTIL(&wd, first.closed);
    assert_int_equal(first.received_len, 4);
    assert_string_equal(first.close_reason, "client done");
    /* ...and a new one sees the new certificate. */
    world_connect(&wd, &second, "127.0.0.1");
    RUN_UNTIL(&wd, second.ready);
    assert_string_equal(second.peer, "spiffe://" TD "/connector/new");
    tls_conn_close(second.conn, "bye");
    RUN_UNTIL(&wd, second.closed);
    free(first.received);
    free(second.received);
    world_free(&wd);
    free_identity(&old_id);
    free_identity(&new_id);
    free_identity(&client_id);
}

static void
test_context_rejects_bad_configuration(void **state)
{
    (void)state;
    struct tls_ctx *ctx;
    struct ztr_err err = {0};
    struct tls_ctx_config config = {.side = TLS_SIDE_SERVER, .alpn = "x",
                                    .bundle_pem = w.bundle, .bundle_len = w.bundle_len};
    assert_int_equal(tls_ctx_new(&config, &ctx, &err), -1);
    assert_non_null(strstr(err.msg, "needs an identity"));
    struct identity a, b;
    make_identity(PKI_ROLE_CONNECTOR, "a", NULL, &a);
    make_identity(PKI_ROLE_CONNECTOR, "b", NULL, &b);
    config.chain_pem = a.chain;
    config.chain_len = a.chain_len;
    config.key_pem = b.key;
    config.key_len = b.key_len;
    assert_int_equal(tls_ctx_new(&config, &ctx, &err), -1);
    assert_non_null(strstr(err.msg, "do not load or match"));
    config.key_pem = a.key;
    config.key_len = a.key_len;
    config.bundle_pem = "junk";
    config.bundle_len = 4;
    assert_int_equal(tls_ctx_new(&config, &ctx, &err), -1);
    assert_non_null(strstr(err.msg, "invalid internal CA"));
    free_identity(&a);
    free_identity(&b);
}

/* ---- a server of several trust domains (federation) ----------------------- */

#define OTHER_TD "other.org"

static struct pki_ca *other_ca, *anchor_ca;
static char *other_bundle, *anchor_bundle;
static size_t other_bundle_len, anchor_bundle_len;

/* other.org's own bundle; example.org (the server's own) is no peer's. */
static int
resolve_other(void *ctx, const char *trust_domain, struct pki_bundle **bundle,
              struct ztr_err *err)
{
    (*(int *)ctx)++;
    if (strcmp(trust_domain, OTHER_TD) != 0)
        return ztr_err_set(err, PKI_E_TRUST_DOMAIN_MISMATCH, "unknown peer %s", trust_domain);
    return pki_bundle_from_pem(other_bundle, other_bundle_len, bundle, err);
}

static void
issue_with(struct pki_ca *ca, const char *td, struct identity *out)
{
    struct pki_key *key;
    uint8_t *public_der;
    size_t public_len;
    struct pki_spiffe_id id;
    assert_int_equal(pki_key_generate(&key, NULL), 0);
    assert_int_equal(pki_key_public_der(key, &public_der, &public_len, NULL), 0);
    assert_int_equal(pki_spiffe_id_build(td, PKI_ROLE_CONTROLLER, NULL, &id, NULL), 0);
    struct pki_leaf_request request = {&id, public_der, public_len, NULL, 0, w.now - 60,
                                       w.now + 3600, NULL, 0};
    assert_int_equal(pki_ca_issue(ca, &request, &out->chain, &out->chain_len, NULL), 0);
    assert_int_equal(pki_key_to_pem(key, &out->key, &out->key_len, NULL), 0);
    free(public_der);
    pki_key_free(key);
}

/* Connects with client_id to a server whose anchors hold both CAs and
 * whose resolver admits other.org only; returns whether the server
 * admitted the client, with its peer ID in *peer. */
static bool
resolved_handshake(const struct identity *client_id, char *peer, size_t peer_cap, int *calls)
{
    struct identity server_id;
    make_identity(PKI_ROLE_CONTROLLER, NULL, "127.0.0.1", &server_id);
    struct world wd;
    world_init(&wd, &server_id, client_id, true, "ztr-test/1");
    /* wolfSSL's anchors: every CA (the union a federation listener has). */
    size_t both_len = w.bundle_len + other_bundle_len + anchor_bundle_len;
    char *both = malloc(both_len + 1);
    assert_non_null(both);
    memcpy(both, w.bundle, w.bundle_len);
    memcpy(both + w.bundle_len, other_bundle, other_bundle_len);
    memcpy(both + w.bundle_len + other_bundle_len, anchor_bundle, anchor_bundle_len);
    struct tls_ctx_config server = {.side = TLS_SIDE_SERVER, .alpn = "ztr-test/1",
                                    .chain_pem = server_id.chain, .chain_len = server_id.chain_len,
                                    .key_pem = server_id.key, .key_len = server_id.key_len,
                                    .bundle_pem = both, .bundle_len = both_len,
                                    .peer_cert_optional = true, .resolve = resolve_other,
                                    .resolve_ctx = calls};
    tls_ctx_free(wd.server_ctx);
    struct ztr_err err = {0};
    assert_int_equal(tls_ctx_new(&server, &wd.server_ctx, &err), 0);
    free(both);
    wd.server_expect = (struct pki_expect){.trust_domain = TD, .role = PKI_ROLE_CONTROLLER};
    struct side client = {0};
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", net_local_port(wd.listen_fd));
    int fd;
    assert_int_equal(net_connect_start(addr, &fd, &err), 0);
    struct pki_expect expect = {.trust_domain = TD, .role = PKI_ROLE_CONTROLLER};
    assert_int_equal(tls_conn_new(wd.loop, wd.client_ctx, fd, &expect, &side_callbacks, &client,
                                  &client.conn, &err),
                     0);
    RUN_UNTIL(&wd, wd.server_count == 1 && (wd.servers[0].ready || wd.servers[0].closed));
    bool admitted = wd.server_count == 1 && wd.servers[0].ready && wd.servers[0].verified;
    snprintf(peer, peer_cap, "%s", admitted ? wd.servers[0].peer : "");
    if (!client.closed)
        tls_conn_close(client.conn, "bye");
    RUN_UNTIL(&wd, client.closed);
    free(client.received);
    world_free(&wd);
    free_identity(&server_id);
    return admitted;
}

static void
test_resolver_checks_each_trust_domain_against_its_own_bundle(void **state)
{
    (void)state;
    assert_int_equal(pki_ca_create(OTHER_TD, w.now - 3600, 86400, &other_ca, NULL), 0);
    assert_int_equal(pki_ca_cert_pem(other_ca, &other_bundle, &other_bundle_len, NULL), 0);
    /* Another CA for other.org: an anchor of the listener (say a third
     * peer's), but not in other.org's stored bundle. */
    assert_int_equal(pki_ca_create(OTHER_TD, w.now - 3600, 86400, &anchor_ca, NULL), 0);
    assert_int_equal(pki_ca_cert_pem(anchor_ca, &anchor_bundle, &anchor_bundle_len, NULL), 0);
    struct identity good, forged, own;
    issue_with(other_ca, OTHER_TD, &good);    /* other.org by its own CA */
    issue_with(anchor_ca, OTHER_TD, &forged); /* other.org by a CA that is only an anchor */
    issue_with(w.ca, TD, &own);               /* the server's own trust domain */
    char peer[PKI_SPIFFE_ID_MAX + 1];
    int calls = 0;
    assert_true(resolved_handshake(&good, peer, sizeof(peer), &calls));
    assert_string_equal(peer, "spiffe://other.org/controller");
    assert_int_equal(calls, 1);
    /* Both CAs are anchors, yet a chain is only checked against the bundle
     * of the trust domain it names. */
    assert_false(resolved_handshake(&forged, peer, sizeof(peer), &calls));
    assert_false(resolved_handshake(&own, peer, sizeof(peer), &calls));
    assert_int_equal(calls, 3);
    free_identity(&good);
    free_identity(&forged);
    free_identity(&own);
    free(other_bundle);
    pki_ca_free(other_ca);
    free(anchor_bundle);
    pki_ca_free(anchor_ca);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mutual_handshake_and_echo),
        cmocka_unit_test(test_large_transfer_survives_partial_writes),
        cmocka_unit_test(test_optional_client_certificate_leaves_peer_unverified),
        cmocka_unit_test(test_required_client_certificate_refuses_anonymous),
        cmocka_unit_test(test_session_opens_only_on_a_verified_peer),
        cmocka_unit_test(test_missing_ip_san_is_reported_by_the_client),
        cmocka_unit_test(test_alpn_mismatch_fails_the_handshake),
        cmocka_unit_test(test_identity_update_keeps_open_connections),
        cmocka_unit_test(test_context_rejects_bad_configuration),
        cmocka_unit_test(test_resolver_checks_each_trust_domain_against_its_own_bundle),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
