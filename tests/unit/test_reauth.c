/*
 * Re-authentication by proof of possession (controller/reauth.c), in
 * process: a real store on a manual clock, a real managed CA, a node
 * enrolled with a real token, real keys. reauth_handle() gets the `reauth`
 * a session hands it after its challenge; every refusal an attacker could
 * try is checked: no challenge, a replayed proof, someone else's key, a
 * superseded key, a revoked node, past REAUTH_GRACE, the old key in the
 * new CSR, an unknown node, the rate limit.
 */
#include "tests/unit/support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bytes.h"
#include "base/clock.h"
#include "ctl/ctlmsg.h"
#include "controller/controller.h"
#include "pki/pki.h"

#define TD "example.org"
#define START_MS 1700000000000LL
#define SVID_TTL_S 3600
#define GRACE_S (7 * 86400)
#define PEER "198.51.100.9:41000"

struct fixture {
    char *dir;
    struct ztr_clock clock;
    struct controller c;
    struct pki_key *key;       /* the node's key (its current certificate's) */
    char node_id[STORE_ID_MAX + 1];
    char spiffe_id[PKI_SPIFFE_ID_MAX + 1];
    char not_after_s[32];
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    test_log_capture_start();
    f->dir = test_mkdtemp();
    clock_manual_init(&f->clock, START_MS);
    struct controller *c = &f->c;
    c->clock = &f->clock;
    snprintf(c->settings.trust_domain, sizeof(c->settings.trust_domain), "%s", TD);
    snprintf(c->settings.state_dir, sizeof(c->settings.state_dir), "%s", f->dir);
    c->settings.svid_ttl_s = SVID_TTL_S;
    c->settings.heartbeat_interval_ms = 10000;
    c->settings.token_ttl_s = 86400;
    c->settings.reauth_grace_s = GRACE_S;
    struct ztr_err err = {0};
    char *db = test_path(f->dir, "controller.db");
    if (store_open(db, &f->clock, &c->store, &err) != 0)
        fail_msg("store_open: %s", err.msg);
    free(db);
    if (ca_set_open(&c->settings, &f->clock, &c->cas, &err) != 0)
        fail_msg("ca_set_open: %s", err.msg);
    /* The node enrolls with a token, as an agent would. */
    assert_int_equal(pki_key_generate(&f->key, &err), 0);
    char *csr, *token;
    size_t len;
    assert_int_equal(pki_csr_create(f->key, "t1", &csr, &len, &err), 0);
    struct token_request request = {"tunneler", "t1", false, 1, 86400, false, NULL};
    assert_int_equal(token_create(c, &request, &token, NULL, &err), 0);
    json_t *msg = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "enroll", "token", token, "role",
                            "tunneler", "name", "t1", "csr", csr);
    json_t *reply = enroll_handle(c, msg, PEER);
    assert_string_equal(json_string_value(json_object_get(reply, "type")), "enrolled");
    snprintf(f->node_id, sizeof(f->node_id), "%s",
             json_string_value(json_object_get(reply, "node_id")));
    snprintf(f->spiffe_id, sizeof(f->spiffe_id), "%s",
             json_string_value(json_object_get(reply, "spiffe_id")));
    json_decref(reply);
    json_decref(msg);
    free(csr);
    explicit_bzero(token, strlen(token));
    free(token);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    test_log_capture_stop();
    pki_key_free(f->key);
    ca_set_free(f->c.cas);
    store_close(f->c.store);
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static int
group_setup(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    return pki_init(&err);
}

static int
group_teardown(void **state)
{
    (void)state;
    pki_cleanup();
    return 0;
}

/* ---- helpers -------------------------------------------------------------- */

static void
new_challenge(char out[2 * CTLMSG_REAUTH_CHALLENGE_BYTES + 1])
{
    struct ztr_err err = {0};
    assert_int_equal(reauth_new_challenge(out, &err), 0);
    assert_int_equal(strlen(out), 2 * CTLMSG_REAUTH_CHALLENGE_BYTES);
}

/* The `reauth` an agent holding `signer` sends for challenge, with a CSR
 * for new_key (NULL: a fresh one). */
static json_t *
reauth_msg(struct fixture *f, const struct pki_key *signer, const char *challenge,
           const struct pki_key *new_key)
{
    struct ztr_err err = {0};
    struct pki_key *fresh = NULL;
    if (new_key == NULL) {
        assert_int_equal(pki_key_generate(&fresh, &err), 0);
        new_key = fresh;
    }
    char *csr;
    size_t csr_len;
    assert_int_equal(pki_csr_create(new_key, "t1", &csr, &csr_len, &err), 0);
    uint8_t *proof, *spki;
    size_t proof_len, spki_len;
    assert_int_equal(ctlmsg_reauth_proof(challenge, f->node_id, f->spiffe_id, csr, &proof,
                                         &proof_len, &err), 0);
    uint8_t sig[PKI_SIGNATURE_MAX];
    size_t sig_len;
    assert_int_equal(pki_key_sign(signer, proof, proof_len, sig, &sig_len, &err), 0);
    assert_int_equal(pki_key_public_der(signer, &spki, &spki_len, &err), 0);
    char key_hex[2 * PKI_PUBLIC_KEY_MAX + 1], sig_hex[2 * PKI_SIGNATURE_MAX + 1];
    bytes_hex_encode(spki, spki_len, key_hex, sizeof(key_hex));
    bytes_hex_encode(sig, sig_len, sig_hex, sizeof(sig_hex));
    json_t *msg = json_pack("{s:s, s:s, s:s, s:s}", "type", "reauth", "csr", csr, "key", key_hex,
                            "signature", sig_hex);
    assert_int_equal(ctlmsg_validate(msg, NULL, &err), 0);
    free(proof);
    free(spki);
    free(csr);
    pki_key_free(fresh);
    return msg;
}

/* Hands msg over as the session that was given challenge would. */
static json_t *
handle(struct fixture *f, const char *challenge, const json_t *msg)
{
    json_t *reply = reauth_handle(&f->c, challenge, f->node_id, f->spiffe_id, msg, PEER);
    assert_non_null(reply);
    struct ztr_err err = {0};
    if (ctlmsg_validate(reply, NULL, &err) != 0)
        fail_msg("reply fails the schema: %s", err.msg);
    return reply;
}

static void
expect_error(json_t *reply, const char *code, const char *message)
{
    char *text = json_dumps(reply, JSON_COMPACT);
    if (strcmp(json_string_value(json_object_get(reply, "type")), "error") != 0 ||
        strcmp(json_string_value(json_object_get(reply, "code")), code) != 0 ||
        strcmp(json_string_value(json_object_get(reply, "message")), message) != 0)
        fail_msg("got %s, want %s \"%s\"", text, code, message);
    free(text);
    json_decref(reply);
}

static struct store_node
node_now(struct fixture *f)
{
    struct store_node node;
    struct ztr_err err = {0};
    assert_int_equal(store_node_get(f->c.store, f->node_id, &node, &err), 0);
    return node;
}

/* Re-authenticates with signer; returns the key the new certificate holds
 * (the caller's). */
static struct pki_key *
reauth_ok(struct fixture *f, const struct pki_key *signer)
{
    struct ztr_err err = {0};
    struct pki_key *fresh;
    assert_int_equal(pki_key_generate(&fresh, &err), 0);
    char challenge[2 * CTLMSG_REAUTH_CHALLENGE_BYTES + 1];
    new_challenge(challenge);
    json_t *msg = reauth_msg(f, signer, challenge, fresh);
    json_t *reply = handle(f, challenge, msg);
    json_decref(msg);
    if (strcmp(json_string_value(json_object_get(reply, "type")), "reauthenticated") != 0) {
        char *text = json_dumps(reply, JSON_COMPACT);
        fail_msg("re-authentication refused: %s\n%s", text, test_log_captured());
    }
    /* Same node, and a chain for the fresh key that the bundle verifies. */
    assert_string_equal(json_string_value(json_object_get(reply, "node_id")), f->node_id);
    assert_string_equal(json_string_value(json_object_get(reply, "spiffe_id")), f->spiffe_id);
    const char *chain_pem = json_string_value(json_object_get(reply, "chain"));
    const char *bundle_pem = json_string_value(json_object_get(reply, "bundle"));
    struct pki_chain *chain;
    struct pki_bundle *bundle;
    assert_int_equal(pki_chain_from_pem(chain_pem, strlen(chain_pem), &chain, &err), 0);
    assert_int_equal(pki_bundle_from_pem(bundle_pem, strlen(bundle_pem), &bundle, &err), 0);
    struct pki_expect expect = {.trust_domain = TD, .role = PKI_ROLE_TUNNELER,
                                .spiffe_id = f->spiffe_id, .now = clock_wall_s(&f->clock)};
    assert_int_equal(pki_verify(bundle, chain, &expect, NULL, &err), 0);
    uint8_t *spki;
    size_t spki_len, leaf_len;
    assert_int_equal(pki_key_public_der(fresh, &spki, &spki_len, &err), 0);
    const uint8_t *leaf = pki_chain_leaf_public_key(chain, &leaf_len);
    assert_int_equal(pki_public_key_equal(spki, spki_len, leaf, leaf_len, &err), 1);
    /* The controller now records the fresh key as the node's. */
    char fp[PKI_KEY_FINGERPRINT_MAX + 1];
    assert_int_equal(pki_public_key_fingerprint(spki, spki_len, fp, &err), 0);
    assert_string_equal(node_now(f).cert_key, fp);
    free(spki);
    pki_chain_free(chain);
    pki_bundle_free(bundle);
    json_decref(reply);
    return fresh;
}

static void
expire(struct fixture *f, int64_t after_s)
{
    int64_t not_after = node_now(f).cert_not_after;
    clock_manual_advance(&f->clock, (not_after - clock_wall_s(&f->clock) + after_s) * 1000);
}

struct last_event {
    char kind[32];
    char detail[STORE_DETAIL_MAX + 1];
};

static int
keep_last(void *ctx, const struct store_event *event)
{
    struct last_event *last = ctx;
    snprintf(last->kind, sizeof(last->kind), "%s", event->kind);
    snprintf(last->detail, sizeof(last->detail), "%s", event->detail);
    return 0;
}

static struct last_event
last_event(struct fixture *f)
{
    struct last_event last = {{0}, {0}};
    assert_int_equal(store_event_list(f->c.store, 0, 100000, keep_last, &last, NULL), 0);
    return last;
}

/* ---- tests ---------------------------------------------------------------- */

static void
test_expired_node_reauthenticates_with_its_key(void **state)
{
    struct fixture *f = *state;
    expire(f, 3600); /* an hour past not_after */
    int64_t before = node_now(f).cert_not_after;
    struct pki_key *fresh = reauth_ok(f, f->key);
    struct store_node node = node_now(f);
    assert_true(node.cert_not_after > clock_wall_s(&f->clock));
    assert_true(node.cert_not_after > before);
    assert_false(node.revoked);
    struct last_event ev = last_event(f);
    assert_string_equal(ev.kind, "reauthenticated");
    assert_non_null(strstr(ev.detail, "re-authenticated by proof of possession"));
    assert_non_null(strstr(test_log_captured(), "msg=\"node re-authenticated\""));
    assert_int_equal(f->c.counters.reauths, 1);
    /* The answer was lost: the agent still holds the old key, now the
     * previous one, and may prove it again within the renewal grace. */
    pki_key_free(reauth_ok(f, f->key));
    pki_key_free(fresh);
}

static void
test_challenge_is_single_use_and_bound_to_its_session(void **state)
{
    struct fixture *f = *state;
    expire(f, 10);
    char challenge[2 * CTLMSG_REAUTH_CHALLENGE_BYTES + 1], other[sizeof(challenge)];
    new_challenge(challenge);
    new_challenge(other);
    json_t *msg = reauth_msg(f, f->key, challenge, NULL);
    /* No challenge outstanding (never asked, or already used). */
    expect_error(handle(f, NULL, msg), CTLMSG_E_BAD_REQUEST, CTLMSG_TEXT_REAUTH_NO_CHALLENGE);
    expect_error(handle(f, "", msg), CTLMSG_E_BAD_REQUEST, CTLMSG_TEXT_REAUTH_NO_CHALLENGE);
    /* The signed message replayed on another session (another challenge). */
    expect_error(handle(f, other, msg), CTLMSG_E_PERMISSION_DENIED,
                 CTLMSG_TEXT_PERMISSION_DENIED);
    assert_non_null(strstr(test_log_captured(), CTLMSG_TEXT_REAUTH_BAD_PROOF));
    json_decref(msg);
    assert_int_equal(f->c.counters.reauth_denied, 3);
    assert_int_equal(f->c.counters.reauths, 0);
}

static void
test_someone_elses_key_is_refused_as_a_security_event(void **state)
{
    struct fixture *f = *state;
    expire(f, 10);
    struct pki_key *thief;
    struct ztr_err err = {0};
    assert_int_equal(pki_key_generate(&thief, &err), 0);
    char challenge[2 * CTLMSG_REAUTH_CHALLENGE_BYTES + 1];
    new_challenge(challenge);
    json_t *msg = reauth_msg(f, thief, challenge, NULL);
    char key_before[STORE_KEY_MAX + 1];
    snprintf(key_before, sizeof(key_before), "%s", node_now(f).cert_key);
    expect_error(handle(f, challenge, msg), CTLMSG_E_PERMISSION_DENIED,
                 CTLMSG_TEXT_PERMISSION_DENIED);
    json_decref(msg);
    assert_string_equal(node_now(f).cert_key, key_before);
    struct last_event ev = last_event(f);
    assert_string_equal(ev.kind, "security");
    assert_non_null(strstr(ev.detail, "not the node's current certificate key"));
    pki_key_free(thief);
}

static void
test_superseded_key_is_refused_after_the_grace(void **state)
{
    struct fixture *f = *state;
    expire(f, 10);
    struct pki_key *second = reauth_ok(f, f->key);
    /* The node renewed again with its new key: the first one is two
     * certificates back, and once the renewal grace is over, dead. */
    clock_manual_advance(&f->clock, (STORE_RENEWAL_GRACE_S + 1) * 1000LL);
    char challenge[2 * CTLMSG_REAUTH_CHALLENGE_BYTES + 1];
    new_challenge(challenge);
    json_t *msg = reauth_msg(f, f->key, challenge, NULL);
    expect_error(handle(f, challenge, msg), CTLMSG_E_PERMISSION_DENIED,
                 CTLMSG_TEXT_PERMISSION_DENIED);
    json_decref(msg);
    assert_string_equal(last_event(f).kind, "security");
    assert_non_null(strstr(test_log_captured(), "current_serial="));
    pki_key_free(second);
}

static void
test_revoked_node_is_told_so_only_after_proving_the_key(void **state)
{
    struct fixture *f = *state;
    struct ztr_err err = {0};
    assert_int_equal(store_node_revoke(f->c.store, f->node_id, "stolen", &err), 0);
    expire(f, 10);
    char challenge[2 * CTLMSG_REAUTH_CHALLENGE_BYTES + 1];
    new_challenge(challenge);
    json_t *msg = reauth_msg(f, f->key, challenge, NULL);
    json_t *reply = handle(f, challenge, msg);
    assert_string_equal(json_string_value(json_object_get(reply, "type")), "revoked");
    json_decref(reply);
    json_decref(msg);
    /* Without the key, a revoked node looks like any refusal. */
    struct pki_key *thief;
    assert_int_equal(pki_key_generate(&thief, &err), 0);
    new_challenge(challenge);
    msg = reauth_msg(f, thief, challenge, NULL);
    expect_error(handle(f, challenge, msg), CTLMSG_E_PERMISSION_DENIED,
                 CTLMSG_TEXT_PERMISSION_DENIED);
    json_decref(msg);
    pki_key_free(thief);
    assert_int_equal(f->c.counters.reauths, 0);
}

static void
test_past_the_grace_a_token_is_needed(void **state)
{
    struct fixture *f = *state;
    expire(f, GRACE_S + 1);
    char challenge[2 * CTLMSG_REAUTH_CHALLENGE_BYTES + 1];
    new_challenge(challenge);
    json_t *msg = reauth_msg(f, f->key, challenge, NULL);
    expect_error(handle(f, challenge, msg), CTLMSG_E_NOT_ALLOWED, CTLMSG_TEXT_REAUTH_GRACE_OVER);
    json_decref(msg);
    /* REAUTH_GRACE=0: an expired certificate never re-authenticates. */
    f->c.settings.reauth_grace_s = 0;
    clock_manual_advance(&f->clock, -(int64_t)GRACE_S * 1000);
    new_challenge(challenge);
    msg = reauth_msg(f, f->key, challenge, NULL);
    expect_error(handle(f, challenge, msg), CTLMSG_E_NOT_ALLOWED, CTLMSG_TEXT_REAUTH_GRACE_OVER);
    json_decref(msg);
}

static void
test_new_csr_must_carry_a_fresh_key(void **state)
{
    struct fixture *f = *state;
    expire(f, 10);
    char challenge[2 * CTLMSG_REAUTH_CHALLENGE_BYTES + 1];
    new_challenge(challenge);
    json_t *msg = reauth_msg(f, f->key, challenge, f->key);
    expect_error(handle(f, challenge, msg), CTLMSG_E_KEY_REUSED,
                 "re-authentication must use a fresh key, not the expired one");
    json_decref(msg);
}

static void
test_unknown_node_and_other_spiffe_id_are_refused(void **state)
{
    struct fixture *f = *state;
    expire(f, 10);
    char challenge[2 * CTLMSG_REAUTH_CHALLENGE_BYTES + 1];
    new_challenge(challenge);
    json_t *msg = reauth_msg(f, f->key, challenge, NULL);
    /* The proof names node_id and spiffe_id: the controller checks the
     * signature over the ones the session gave in reauth_begin. */
    json_t *reply = reauth_handle(&f->c, challenge, "0000000000000000", f->spiffe_id, msg, PEER);
    expect_error(reply, CTLMSG_E_PERMISSION_DENIED, CTLMSG_TEXT_PERMISSION_DENIED);
    snprintf(f->node_id, sizeof(f->node_id), "0000000000000000");
    json_decref(msg);
    new_challenge(challenge);
    msg = reauth_msg(f, f->key, challenge, NULL);
    expect_error(handle(f, challenge, msg), CTLMSG_E_PERMISSION_DENIED,
                 CTLMSG_TEXT_PERMISSION_DENIED);
    json_decref(msg);
    assert_non_null(strstr(test_log_captured(), "detail=\"unknown node\""));
}

static void
test_rate_limited_like_renewals(void **state)
{
    struct fixture *f = *state;
    expire(f, 10);
    struct pki_key *second = reauth_ok(f, f->key);
    struct pki_key *third = reauth_ok(f, second);
    /* Enrollment long ago, then two within the quarter: the third refused. */
    pki_key_free(reauth_ok(f, third));
    char challenge[2 * CTLMSG_REAUTH_CHALLENGE_BYTES + 1];
    new_challenge(challenge);
    json_t *msg = reauth_msg(f, third, challenge, NULL);
    json_t *reply = handle(f, challenge, msg);
    json_decref(msg);
    /* third's certificate is the previous one now; whichever check comes
     * first, nothing more is issued. */
    assert_string_equal(json_string_value(json_object_get(reply, "type")), "error");
    json_decref(reply);
    pki_key_free(second);
    pki_key_free(third);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_expired_node_reauthenticates_with_its_key),
        T(test_challenge_is_single_use_and_bound_to_its_session),
        T(test_someone_elses_key_is_refused_as_a_security_event),
        T(test_superseded_key_is_refused_after_the_grace),
        T(test_revoked_node_is_told_so_only_after_proving_the_key),
        T(test_past_the_grace_a_token_is_needed),
        T(test_new_csr_must_carry_a_fresh_key),
        T(test_unknown_node_and_other_spiffe_id_are_refused),
        T(test_rate_limited_like_renewals),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
