/* The PKI checks reached from a real TLS 1.3 handshake (wolfSSL, in memory):
 * the texts of failure-modes §2 must be what a rejecting peer reports. */
#include "tests/unit/support.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "pki/pki.h"

#define TD "example.org"

/* One direction of an in-memory wire. */
struct pipe {
    unsigned char data[64 * 1024];
    size_t len;
};

static int
pipe_recv(WOLFSSL *ssl, char *buf, int size, void *ctx)
{
    (void)ssl;
    struct pipe *p = ctx;
    if (p->len == 0)
        return WOLFSSL_CBIO_ERR_WANT_READ;
    size_t n = p->len < (size_t)size ? p->len : (size_t)size;
    memcpy(buf, p->data, n);
    memmove(p->data, p->data + n, p->len - n);
    p->len -= n;
    return (int)n;
}

static int
pipe_send(WOLFSSL *ssl, char *buf, int size, void *ctx)
{
    (void)ssl;
    struct pipe *p = ctx;
    if (p->len + (size_t)size > sizeof(p->data))
        return WOLFSSL_CBIO_ERR_WANT_WRITE;
    memcpy(p->data + p->len, buf, (size_t)size);
    p->len += (size_t)size;
    return size;
}

struct identity {
    char *chain_pem;
    size_t chain_len;
    char *key_pem;
    size_t key_len;
};

struct world {
    int64_t now;
    struct pki_ca *ca;        /* example.org */
    struct pki_ca *other_td;  /* example.com */
    struct pki_ca *stranger;  /* example.org, not trusted */
    struct pki_bundle *bundle;       /* ca only */
    struct pki_bundle *both_bundle;  /* ca + other_td */
};

static struct world w;

static void
make_identity(struct pki_ca *ca, const char *td, enum pki_role role, const char *name,
              const char *ip, int64_t not_before, int64_t not_after, struct identity *out)
{
    struct pki_key *key;
    uint8_t *public_der;
    size_t public_len;
    struct ztr_err err = {0};
    assert_int_equal(pki_key_generate(&key, NULL), 0);
    assert_int_equal(pki_key_public_der(key, &public_der, &public_len, NULL), 0);
    struct pki_spiffe_id id;
    assert_int_equal(pki_spiffe_id_build(td, role, name, &id, NULL), 0);
    struct pki_ip parsed;
    if (ip != NULL)
        assert_int_equal(pki_ip_parse(ip, &parsed), 0);
    struct pki_leaf_request request = {&id,       public_der, public_len, &parsed,
                                       ip ? 1 : 0, not_before, not_after, NULL, 0};
    if (pki_ca_issue(ca, &request, &out->chain_pem, &out->chain_len, &err) != 0)
        fail_msg("issue: %s", err.msg);
    assert_int_equal(pki_key_to_pem(key, &out->key_pem, &out->key_len, NULL), 0);
    free(public_der);
    pki_key_free(key);
}

static void
free_identity(struct identity *id)
{
    free(id->chain_pem);
    free(id->key_pem);
}

static struct pki_bundle *
bundle_of(struct pki_ca *const *cas, size_t count)
{
    char *joined = NULL;
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        char *pem;
        size_t len;
        assert_int_equal(pki_ca_cert_pem(cas[i], &pem, &len, NULL), 0);
        joined = realloc(joined, total + len + 1);
        memcpy(joined + total, pem, len + 1);
        total += len;
        free(pem);
    }
    struct pki_bundle *bundle;
    assert_int_equal(pki_bundle_from_pem(joined, total, &bundle, NULL), 0);
    free(joined);
    return bundle;
}

static int
setup(void **state)
{
    (void)state;
    assert_int_equal(pki_init(NULL), 0);
    w.now = (int64_t)time(NULL);
    assert_int_equal(pki_ca_create(TD, w.now - 86400, 2 * 86400, &w.ca, NULL), 0);
    assert_int_equal(pki_ca_create("example.com", w.now, 86400, &w.other_td, NULL), 0);
    assert_int_equal(pki_ca_create(TD, w.now, 86400, &w.stranger, NULL), 0);
    w.bundle = bundle_of(&w.ca, 1);
    struct pki_ca *both[] = {w.ca, w.other_td};
    w.both_bundle = bundle_of(both, 2);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    pki_bundle_free(w.bundle);
    pki_bundle_free(w.both_bundle);
    pki_ca_free(w.ca);
    pki_ca_free(w.other_td);
    pki_ca_free(w.stranger);
    pki_cleanup();
    return 0;
}

struct side {
    WOLFSSL_CTX *ctx;
    WOLFSSL *ssl;
    struct pki_tls_check check;
    bool done;
    bool failed;
};

static void
side_init(struct side *side, bool server, const struct identity *id,
          const struct pki_bundle *bundle, enum pki_role expect_role, const char *dial_ip,
          struct pipe *in, struct pipe *out)
{
    memset(side, 0, sizeof(*side));
    side->ctx = wolfSSL_CTX_new(server ? wolfTLSv1_3_server_method()
                                       : wolfTLSv1_3_client_method());
    assert_non_null(side->ctx);
    if (id != NULL) {
        assert_int_equal(wolfSSL_CTX_use_certificate_chain_buffer_format(
                             side->ctx, (const unsigned char *)id->chain_pem,
                             (long)id->chain_len, WOLFSSL_FILETYPE_PEM),
                         WOLFSSL_SUCCESS);
        assert_int_equal(wolfSSL_CTX_use_PrivateKey_buffer(side->ctx,
                                                           (const unsigned char *)id->key_pem,
                                                           (long)id->key_len,
                                                           WOLFSSL_FILETYPE_PEM),
                         WOLFSSL_SUCCESS);
    }
    struct ztr_err err = {0};
    assert_int_equal(pki_tls_load_bundle(side->ctx, bundle, &err), 0);
    wolfSSL_CTX_SetIORecv(side->ctx, pipe_recv);
    wolfSSL_CTX_SetIOSend(side->ctx, pipe_send);
    side->ssl = wolfSSL_new(side->ctx);
    assert_non_null(side->ssl);
    wolfSSL_SetIOReadCtx(side->ssl, in);
    wolfSSL_SetIOWriteCtx(side->ssl, out);
    side->check.bundle = bundle;
    side->check.expect.trust_domain = TD;
    side->check.expect.role = expect_role;
    side->check.expect.dial_ip = dial_ip;
    side->check.clock = clock_system();
    assert_int_equal(pki_tls_check_install(side->ssl, &side->check, &err), 0);
}

static void
side_free(struct side *side)
{
    wolfSSL_free(side->ssl);
    pki_tls_check_release(&side->check);
    wolfSSL_CTX_free(side->ctx);
}

static void
step(struct side *side, bool server)
{
    if (side->done || side->failed)
        return;
    int rc = server ? wolfSSL_accept(side->ssl) : wolfSSL_connect(side->ssl);
    if (rc == WOLFSSL_SUCCESS) {
        side->done = true;
        return;
    }
    int e = wolfSSL_get_error(side->ssl, rc);
    if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE)
        side->failed = true;
}

/* Runs a handshake between a tunneler-side client and a connector-side
 * server until both finish or one fails. */
static void
handshake(struct side *client, struct side *server)
{
    for (int i = 0; i < 50 && !(client->done && server->done); i++) {
        step(client, false);
        step(server, true);
        if (client->failed || server->failed) {
            /* Let the other side read the alert. */
            step(client, false);
            step(server, true);
            break;
        }
    }
}

struct session {
    struct pipe to_server, to_client;
    struct side client, server;
};

static struct session *
session_new(const struct identity *client_id, const struct identity *server_id,
            const struct pki_bundle *client_bundle, const struct pki_bundle *server_bundle,
            enum pki_role client_expects, const char *dial_ip)
{
    struct session *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    side_init(&s->client, false, client_id, client_bundle, client_expects, dial_ip,
              &s->to_client, &s->to_server);
    side_init(&s->server, true, server_id, server_bundle, PKI_ROLE_TUNNELER, NULL,
              &s->to_server, &s->to_client);
    handshake(&s->client, &s->server);
    return s;
}

static void
session_free(struct session *s)
{
    side_free(&s->client);
    side_free(&s->server);
    free(s);
}

static void
test_mutual_tls13_handshake_verifies_both_peers(void **state)
{
    (void)state;
    struct identity connector, tunneler;
    make_identity(w.ca, TD, PKI_ROLE_CONNECTOR, "dc1-a", "127.0.0.1", w.now - 60, w.now + 3600,
                  &connector);
    make_identity(w.ca, TD, PKI_ROLE_TUNNELER, "laptop", NULL, w.now - 60, w.now + 3600,
                  &tunneler);
    struct session *s =
        session_new(&tunneler, &connector, w.bundle, w.bundle, PKI_ROLE_CONNECTOR, "127.0.0.1");
    if (!s->client.done || !s->server.done)
        fail_msg("handshake failed: client \"%s\" server \"%s\"", s->client.check.err.msg,
                 s->server.check.err.msg);
    assert_true(s->client.check.verified);
    assert_true(s->server.check.verified);
    assert_string_equal(s->client.check.peer.uri, "spiffe://" TD "/connector/dc1-a");
    assert_string_equal(s->server.check.peer.uri, "spiffe://" TD "/tunneler/laptop");
    assert_int_equal(wolfSSL_version(s->client.ssl), TLS1_3_VERSION);
    assert_string_equal(wolfSSL_get_version(s->server.ssl), "TLSv1.3");
    /* And the channel carries bytes. */
    assert_int_equal(wolfSSL_write(s->client.ssl, "ping", 4), 4);
    char buf[16] = {0};
    assert_int_equal(wolfSSL_read(s->server.ssl, buf, sizeof(buf)), 4);
    assert_string_equal(buf, "ping");
    session_free(s);
    free_identity(&connector);
    free_identity(&tunneler);
}

/* Runs a handshake expected to fail on the client and returns its reason. */
static void
expect_client_rejects(const struct identity *server_id, const struct pki_bundle *server_bundle,
                      enum pki_role expect, const char *dial_ip, const char *text)
{
    struct identity tunneler;
    make_identity(w.ca, TD, PKI_ROLE_TUNNELER, "laptop", NULL, w.now - 60, w.now + 3600,
                  &tunneler);
    struct session *s =
        session_new(&tunneler, server_id, w.bundle, server_bundle, expect, dial_ip);
    assert_false(s->client.done);
    assert_false(s->client.check.verified);
    if (strstr(s->client.check.err.msg, text) == NULL)
        fail_msg("client said \"%s\", expected \"%s\"", s->client.check.err.msg, text);
    session_free(s);
    free_identity(&tunneler);
}

static void
test_connector_without_ip_san_fails_with_go_text(void **state)
{
    (void)state;
    struct identity connector;
    make_identity(w.ca, TD, PKI_ROLE_CONNECTOR, "dc1-a", NULL, w.now - 60, w.now + 3600,
                  &connector);
    expect_client_rejects(&connector, w.bundle, PKI_ROLE_CONNECTOR, "127.0.0.1",
                          "x509: cannot validate certificate for 127.0.0.1 because it doesn't "
                          "contain any IP SANs");
    free_identity(&connector);
}

static void
test_foreign_ca_fails_with_unknown_authority(void **state)
{
    (void)state;
    struct identity connector;
    make_identity(w.stranger, TD, PKI_ROLE_CONNECTOR, "dc1-a", "127.0.0.1", w.now - 60,
                  w.now + 3600, &connector);
    expect_client_rejects(&connector, w.bundle, PKI_ROLE_CONNECTOR, "127.0.0.1",
                          "x509: certificate signed by unknown authority");
    free_identity(&connector);
}

static void
test_wrong_role_fails_with_unexpected_role(void **state)
{
    (void)state;
    struct identity imposter;
    make_identity(w.ca, TD, PKI_ROLE_TUNNELER, "imposter", "127.0.0.1", w.now - 60,
                  w.now + 3600, &imposter);
    expect_client_rejects(&imposter, w.bundle, PKI_ROLE_CONNECTOR, "127.0.0.1",
                          "unexpected SPIFFE role");
    free_identity(&imposter);
}

static void
test_expired_peer_is_rejected(void **state)
{
    (void)state;
    struct identity connector;
    make_identity(w.ca, TD, PKI_ROLE_CONNECTOR, "old", "127.0.0.1", w.now - 7200, w.now - 3600,
                  &connector);
    expect_client_rejects(&connector, w.bundle, PKI_ROLE_CONNECTOR, "127.0.0.1", "expired");
    free_identity(&connector);
}

static void
test_server_rejects_client_of_other_trust_domain(void **state)
{
    (void)state;
    struct identity connector, outsider;
    make_identity(w.ca, TD, PKI_ROLE_CONNECTOR, "dc1-a", "127.0.0.1", w.now - 60, w.now + 3600,
                  &connector);
    make_identity(w.other_td, "example.com", PKI_ROLE_TUNNELER, "outsider", NULL, w.now - 60,
                  w.now + 3600, &outsider);
    /* The server trusts both CAs, so only the SPIFFE check can refuse. */
    struct session *s = session_new(&outsider, &connector, w.bundle, w.both_bundle,
                                    PKI_ROLE_CONNECTOR, "127.0.0.1");
    assert_false(s->server.done);
    assert_false(s->server.check.verified);
    assert_non_null(strstr(s->server.check.err.msg, "SPIFFE trust domain mismatch"));
    session_free(s);
    free_identity(&connector);
    free_identity(&outsider);
}

static void
test_server_requires_a_client_certificate(void **state)
{
    (void)state;
    struct identity connector;
    make_identity(w.ca, TD, PKI_ROLE_CONNECTOR, "dc1-a", "127.0.0.1", w.now - 60, w.now + 3600,
                  &connector);
    struct session *s =
        session_new(NULL, &connector, w.bundle, w.bundle, PKI_ROLE_CONNECTOR, "127.0.0.1");
    assert_false(s->server.done);
    assert_false(s->server.check.verified);
    session_free(s);
    free_identity(&connector);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mutual_tls13_handshake_verifies_both_peers),
        cmocka_unit_test(test_connector_without_ip_san_fails_with_go_text),
        cmocka_unit_test(test_foreign_ca_fails_with_unknown_authority),
        cmocka_unit_test(test_wrong_role_fails_with_unexpected_role),
        cmocka_unit_test(test_expired_peer_is_rejected),
        cmocka_unit_test(test_server_rejects_client_of_other_trust_domain),
        cmocka_unit_test(test_server_requires_a_client_certificate),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
