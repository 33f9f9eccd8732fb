#define _GNU_SOURCE
/*
 * Federation's peering logic (controller/federation.c), in process: the
 * acceptance token (format, digest at rest, TTL, single use, replacement),
 * the state machine heartbeats drive, the heartbeat sweep, suspend, resume
 * and revoke — on a real store in a temporary directory, a real managed CA
 * set and a manual clock. The link itself runs between two real
 * controllers in tests/e2e/federation.sh.
 */
#include "tests/unit/support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "controller/controller.h"
#include "controller/federation.h"
#include "pki/pki.h"

#define TD "a.example"
#define START_MS 1700000000000LL

struct fixture {
    char *dir;
    struct ztr_clock clock;
    struct controller c;
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
    c->settings.svid_ttl_s = 3600;
    c->settings.heartbeat_stale_after_s = 300;
    struct ztr_err err = {0};
    char *db = test_path(f->dir, "controller.db");
    if (store_open(db, &f->clock, &c->store, &err) != 0)
        fail_msg("store_open: %s", err.msg);
    free(db);
    if (ca_set_open(&c->settings, &f->clock, &c->cas, &err) != 0)
        fail_msg("ca_set_open: %s", err.msg);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    test_log_capture_stop();
    ca_set_free(f->c.cas);
    store_close(f->c.store);
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void
advance_s(struct fixture *f, int64_t s)
{
    clock_manual_advance(&f->clock, s * 1000);
}

static struct store_peer *
peer_named(struct fixture *f, const char *name)
{
    static struct store_peer peer;
    struct ztr_err err = {0};
    if (store_peer_get_by_name(f->c.store, name, &peer, &err) != 0)
        fail_msg("peer %s: %s", name, err.msg);
    return &peer;
}

static char *
propose(struct fixture *f, const char *name, int64_t ttl_s)
{
    char *token = NULL;
    struct ztr_err err = {0};
    if (federation_propose(&f->c, name, "127.0.0.1:7444", ttl_s, &token, NULL, &err) != 0)
        fail_msg("propose: %s", err.msg);
    return token;
}

static enum fed_refusal
check_token(struct fixture *f, const char *token_text)
{
    struct fed_token t;
    struct ztr_err err = {0};
    assert_int_equal(fed_token_decode(token_text, &t, &err), 0);
    struct store_peer *peer = calloc(1, sizeof(*peer));
    assert_non_null(peer);
    bool found = store_peer_get(f->c.store, t.peer_id, peer, &err) == 0;
    enum fed_refusal verdict =
        fed_accept_check(found ? peer : NULL, t.secret, clock_wall_s(&f->clock));
    fed_token_clear(&t);
    free(peer);
    return verdict;
}

/* ---- the token ------------------------------------------------------------ */

static void
test_token_format_pins_the_ca(void **state)
{
    struct fixture *f = *state;
    char *token = propose(f, "b", 3600);
    assert_true(strncmp(token, FED_TOKEN_PREFIX ".", strlen(FED_TOKEN_PREFIX) + 1) == 0);
    struct fed_token t;
    struct ztr_err err = {0};
    assert_int_equal(fed_token_decode(token, &t, &err), 0);
    assert_string_equal(t.trust_domain, TD);
    assert_string_equal(t.peer_id, peer_named(f, "b")->id);
    /* The pinned CA is the one that signs the federation certificate. */
    char *pem = NULL;
    size_t len = 0;
    assert_int_equal(pki_ca_cert_pem(ca_set_oldest(f->c.cas), &pem, &len, &err), 0);
    struct pki_bundle *ca = NULL;
    assert_int_equal(pki_bundle_from_pem(pem, len, &ca, &err), 0);
    size_t der_len;
    const uint8_t *der = pki_bundle_der(ca, 0, &der_len);
    assert_int_equal(t.ca_len, der_len);
    assert_memory_equal(t.ca_der, der, der_len);
    pki_bundle_free(ca);
    free(pem);
    /* Round trip. */
    char *again = NULL;
    assert_int_equal(fed_token_encode(&t, &again, &err), 0);
    assert_string_equal(again, token);
    free(again);
    fed_token_clear(&t);
    /* Garbled tokens are refused before anything is dialled. */
    const char *bad[] = {"", "ztrfed1", "ztrfed2.aa.bb.cc.dd", "ztrfed1.zz.AAAA.YS5leGFtcGxl.AAAA",
                         "ztrfed1.ab.short.YS5leGFtcGxl.AAAA"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(fed_token_decode(bad[i], &t, &err), -1);
    free(token);
}

static void
test_only_the_digest_is_stored(void **state)
{
    struct fixture *f = *state;
    char *token = propose(f, "b", 3600);
    struct fed_token t;
    struct ztr_err err = {0};
    assert_int_equal(fed_token_decode(token, &t, &err), 0);
    struct store_peer *peer = peer_named(f, "b");
    assert_true(peer->has_token);
    uint8_t digest[32];
    fed_secret_digest(t.secret, digest);
    assert_memory_equal(peer->token_digest, digest, sizeof(digest));
    assert_int_equal(peer->token_expires_at, START_MS / 1000 + 3600);
    assert_string_equal(peer->state, "proposed");
    /* The secret is in no log line and no event. */
    const char *secret_text = strchr(strchr(token, '.') + 1, '.') + 1;
    char secret_part[64];
    snprintf(secret_part, sizeof(secret_part), "%.43s", secret_text);
    assert_null(strstr(test_log_captured(), secret_part));
    fed_token_clear(&t);
    free(token);
}

static void
test_accept_check_refusals(void **state)
{
    struct fixture *f = *state;
    char *token = propose(f, "b", 60);
    assert_int_equal(check_token(f, token), FED_ACCEPT_OK);
    struct store_peer peer = *peer_named(f, "b");
    /* No token sent while the peer has a digest. */
    assert_int_equal(fed_accept_check(&peer, NULL, START_MS / 1000), FED_REFUSE_REQUIRED);
    assert_string_equal(fed_refusal_text(FED_REFUSE_REQUIRED), FED_TEXT_TOKEN_REQUIRED);
    /* A typo. */
    uint8_t wrong[FED_SECRET_BYTES] = {1};
    assert_int_equal(fed_accept_check(&peer, wrong, START_MS / 1000), FED_REFUSE_MISMATCH);
    /* An unknown peer id. */
    assert_int_equal(fed_accept_check(NULL, wrong, START_MS / 1000), FED_REFUSE_UNKNOWN);
    /* Past its TTL. */
    advance_s(f, 61);
    assert_int_equal(check_token(f, token), FED_REFUSE_EXPIRED);
    /* Every refusal but "required" reads the same to the acceptor. */
    enum fed_refusal same[] = {FED_REFUSE_UNKNOWN, FED_REFUSE_MISMATCH, FED_REFUSE_USED,
                               FED_REFUSE_EXPIRED, FED_REFUSE_REVOKED};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
        assert_string_equal(fed_refusal_text(same[i]), FED_TEXT_TOKEN_MISMATCH);
    free(token);
}

static void
test_single_use(void **state)
{
    struct fixture *f = *state;
    char *token = propose(f, "b", 3600);
    assert_int_equal(check_token(f, token), FED_ACCEPT_OK);
    /* What an accept does: the digest goes, the peer is accepted. */
    struct store_peer *peer = peer_named(f, "b");
    peer->has_token = false;
    snprintf(peer->state, sizeof(peer->state), "accepted");
    struct ztr_err err = {0};
    assert_int_equal(store_peer_update(f->c.store, peer, &err), 0);
    assert_int_equal(check_token(f, token), FED_REFUSE_USED);
    /* A token is only for a proposed peer. */
    char *again = NULL;
    assert_int_equal(federation_new_token(&f->c, "b", 3600, &again, NULL, &err), -1);
    assert_null(again);
    free(token);
}

static void
test_new_token_replaces_the_previous(void **state)
{
    struct fixture *f = *state;
    char *first = propose(f, "b", 3600);
    char *second = NULL;
    struct ztr_err err = {0};
    assert_int_equal(federation_new_token(&f->c, "b", 3600, &second, NULL, &err), 0);
    assert_int_equal(check_token(f, first), FED_REFUSE_MISMATCH);
    assert_int_equal(check_token(f, second), FED_ACCEPT_OK);
    /* Proposing the same name again replaces it too, same peer row. */
    char *third = propose(f, "b", 3600);
    assert_int_equal(check_token(f, second), FED_REFUSE_MISMATCH);
    assert_int_equal(check_token(f, third), FED_ACCEPT_OK);
    free(first);
    free(second);
    free(third);
}

static void
test_propose_checks_input(void **state)
{
    struct fixture *f = *state;
    char *token = NULL;
    struct ztr_err err = {0};
    assert_int_equal(federation_propose(&f->c, "", NULL, 3600, &token, NULL, &err), -1);
    assert_int_equal(federation_propose(&f->c, "b/c", NULL, 3600, &token, NULL, &err), -1);
    assert_int_equal(federation_propose(&f->c, "b", "no-port", 3600, &token, NULL, &err), -1);
    assert_int_equal(federation_propose(&f->c, "b", NULL, 0, &token, NULL, &err), -1);
    assert_int_equal(
        federation_propose(&f->c, "b", NULL, FED_TOKEN_TTL_MAX_S + 1, &token, NULL, &err), -1);
    assert_null(token);
}

/* ---- states --------------------------------------------------------------- */

static void
test_state_machine(void **state)
{
    (void)state;
    assert_string_equal(fed_state_after_heartbeat("accepted"), "enrolled");
    assert_string_equal(fed_state_after_heartbeat("enrolled"), "enrolled");
    assert_string_equal(fed_state_after_heartbeat("active"), "active");
    assert_string_equal(fed_state_after_heartbeat("degraded"), "active");
    assert_string_equal(fed_state_after_ack("accepted"), "active");
    assert_string_equal(fed_state_after_ack("enrolled"), "active");
    assert_string_equal(fed_state_after_ack("degraded"), "active");
    /* Heartbeats never move what the operator decided. */
    const char *fixed[] = {"proposed", "suspended", "revoked"};
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(fed_state_after_heartbeat(fixed[i]), fixed[i]);
        assert_string_equal(fed_state_after_ack(fixed[i]), fixed[i]);
        assert_false(fed_state_linked(fixed[i]));
    }
    assert_true(fed_state_linked("degraded"));
    assert_true(fed_state_valid("degraded"));
    assert_false(fed_state_valid("paused"));
}

/* A peer as an accept leaves it, then active with a heartbeat at `at`. */
static void
make_active(struct fixture *f, const char *name, const char *td, int64_t at)
{
    char *token = propose(f, name, 3600);
    free(token);
    struct store_peer *peer = peer_named(f, name);
    peer->has_token = false;
    snprintf(peer->trust_domain, sizeof(peer->trust_domain), "%s", td);
    snprintf(peer->state, sizeof(peer->state), "active");
    peer->last_heartbeat_at = at;
    struct ztr_err err = {0};
    assert_int_equal(store_peer_update(f->c.store, peer, &err), 0);
}

static int
count_source(void *ctx, const struct store_event *event)
{
    (*(int *)ctx)++;
    assert_string_equal(event->source, "federation_heartbeat_sweep");
    return 0;
}

static void
test_sweep_marks_stale_peers_degraded(void **state)
{
    struct fixture *f = *state;
    int64_t now = START_MS / 1000;
    make_active(f, "b", "b.example", now);
    make_active(f, "c", "c.example", now);
    char *token = propose(f, "d", 3600); /* proposed: not swept */
    free(token);
    size_t swept = 0, degraded = 0;
    struct ztr_err err = {0};
    advance_s(f, 300);
    assert_int_equal(federation_sweep(&f->c, &swept, &degraded, &err), 0);
    assert_int_equal(swept, 2);
    assert_int_equal(degraded, 0);
    /* c heard from recently, b not. */
    struct store_peer *c = peer_named(f, "c");
    c->last_heartbeat_at = now + 300;
    assert_int_equal(store_peer_update(f->c.store, c, &err), 0);
    advance_s(f, 1);
    assert_int_equal(federation_sweep(&f->c, &swept, &degraded, &err), 0);
    assert_int_equal(degraded, 1);
    assert_string_equal(peer_named(f, "b")->state, "degraded");
    assert_string_equal(peer_named(f, "b")->reason, "no heartbeat for 301s");
    assert_string_equal(peer_named(f, "c")->state, "active");
    int events = 0;
    struct store_event_filter filter = {.source = "federation_heartbeat_sweep", .limit = 10};
    assert_int_equal(store_event_query(f->c.store, &filter, count_source, &events, &err), 0);
    assert_int_equal(events, 1);
    /* A degraded peer is not degraded again. */
    assert_int_equal(federation_sweep(&f->c, &swept, &degraded, &err), 0);
    assert_int_equal(degraded, 0);
    /* The next heartbeat makes it active (what the link does). */
    assert_string_equal(fed_state_after_heartbeat(peer_named(f, "b")->state), "active");
}

static void
test_suspend_resume_revoke(void **state)
{
    struct fixture *f = *state;
    make_active(f, "b", "b.example", START_MS / 1000);
    struct ztr_err err = {0};
    struct store_peer out;
    assert_int_equal(federation_suspend(&f->c, "b", "maintenance", &out, &err), 0);
    assert_string_equal(out.state, "suspended");
    assert_string_equal(out.reason, "maintenance");
    /* The sweep leaves a suspended peer alone. */
    advance_s(f, 3600);
    size_t swept, degraded;
    assert_int_equal(federation_sweep(&f->c, &swept, &degraded, &err), 0);
    assert_int_equal(swept, 0);
    assert_int_equal(federation_resume(&f->c, "b", &out, &err), 0);
    assert_string_equal(out.state, "accepted");
    assert_string_equal(out.reason, "");
    assert_int_equal(federation_resume(&f->c, "b", &out, &err), -1);
    snprintf(out.bundle, sizeof(out.bundle), "-----BEGIN CERTIFICATE-----\n");
    assert_int_equal(store_peer_update(f->c.store, &out, &err), 0);
    assert_int_equal(federation_revoke(&f->c, "b", &out, &err), 0);
    assert_string_equal(out.state, "revoked");
    assert_string_equal(peer_named(f, "b")->bundle, "");
    /* A revoked row never changes again, and never comes back. */
    assert_int_equal(store_peer_update(f->c.store, &out, &err), -1);
    assert_int_equal(federation_resume(&f->c, "b", &out, &err), -1);
    assert_int_equal(federation_suspend(&f->c, "b", "x", &out, &err), -1);
    /* Its trust domain is free for a new proposal from scratch. */
    struct store_peer by_td;
    assert_int_equal(store_peer_get_by_trust_domain(f->c.store, "b.example", &by_td, &err), -1);
    char *token = propose(f, "b", 3600);
    assert_string_equal(peer_named(f, "b")->state, "proposed");
    free(token);
}

static void
test_names_and_trust_domains_are_unique(void **state)
{
    struct fixture *f = *state;
    make_active(f, "b", "b.example", START_MS / 1000);
    char *token = NULL;
    struct ztr_err err = {0};
    /* An accepted peer is not proposed over. */
    assert_int_equal(federation_propose(&f->c, "b", NULL, 3600, &token, NULL, &err), -1);
    assert_int_equal(err.code, STORE_E_PEER_EXISTS);
    token = propose(f, "c", 3600);
    free(token);
    struct store_peer *c = peer_named(f, "c");
    snprintf(c->trust_domain, sizeof(c->trust_domain), "b.example");
    assert_int_equal(store_peer_update(f->c.store, c, &err), -1);
    assert_int_equal(err.code, STORE_E_PEER_EXISTS);
}

/* ---- grants ----------------------------------------------------------------- */

static void
make_grantable(struct fixture *f)
{
    make_active(f, "b", "b.example", START_MS / 1000);
    struct store_peer *peer = peer_named(f, "b");
    snprintf(peer->bundle, sizeof(peer->bundle), "B-BUNDLE-PEM");
    struct ztr_err err = {0};
    assert_int_equal(store_peer_update(f->c.store, peer, &err), 0);
    assert_int_equal(store_resource_put(f->c.store, "pg", "", &err), 0);
}

static int
grant(struct fixture *f, const char *tunneler, const char *const *cidrs, size_t n,
      int64_t expires_at, struct store_fed_grant *out, struct ztr_err *err)
{
    struct fed_grant_request req = {.peer = "b", .resource = "pg", .tunneler = tunneler,
                                    .cidrs = cidrs, .cidr_count = n, .expires_at = expires_at};
    return federation_grant(&f->c, &req, out, err);
}

static int
count_expiry_event(void *ctx, const struct store_event *event)
{
    if (strcmp(event->source, "federation_grant_expiry") == 0 &&
        strstr(event->detail, "expired") != NULL)
        (*(int *)ctx)++;
    return 0;
}

static void
test_grants_are_checked_scoped_and_pushed(void **state)
{
    struct fixture *f = *state;
    make_grantable(f);
    struct store_fed_grant g;
    struct ztr_err err = {0};
    const char *laptop = "spiffe://b.example/tunneler/laptop";
    /* Only a tunneler of the peer's own trust domain. */
    assert_int_equal(grant(f, "spiffe://a.example/tunneler/laptop", NULL, 0, 0, &g, &err), -1);
    assert_non_null(strstr(err.msg, "not in peer b's trust domain b.example"));
    assert_int_equal(grant(f, "spiffe://b.example/connector/dc1", NULL, 0, 0, &g, &err), -1);
    assert_non_null(strstr(err.msg, "is not a tunneler"));
    const char *bad[] = {"10.0.0.5/8"};
    assert_int_equal(grant(f, laptop, bad, 1, 0, &g, &err), -1);
    assert_non_null(strstr(err.msg, "host bits set"));
    assert_int_equal(grant(f, laptop, NULL, 0, START_MS / 1000 - 1, &g, &err), -1);
    assert_non_null(strstr(err.msg, "in the past"));
    struct fed_grant_request unknown = {.peer = "b", .resource = "nosuch", .tunneler = laptop};
    assert_int_equal(federation_grant(&f->c, &unknown, &g, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);

    int64_t version = store_allowlist_version(f->c.store);
    const char *cidrs[] = {"127.0.0.0/8", "::1"};
    int64_t expires = START_MS / 1000 + 60;
    assert_int_equal(grant(f, laptop, cidrs, 2, expires, &g, &err), 0);
    assert_true(store_allowlist_version(f->c.store) > version);
    char id[sizeof(g.id)];
    snprintf(id, sizeof(id), "%s", g.id);
    struct fed_snapshot snap;
    federation_snapshot(&f->c, &snap);
    assert_int_equal(json_array_size(snap.grants), 1);
    json_t *entry = json_array_get(snap.grants, 0);
    assert_string_equal(json_string_value(json_object_get(entry, "spiffe_id")), laptop);
    assert_int_equal(json_array_size(json_object_get(entry, "source_cidrs")), 2);
    assert_int_equal(json_integer_value(json_object_get(entry, "expires_at")), expires);
    assert_int_equal(json_array_size(snap.peers), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(snap.peers, 0),
                                                          "trust_domain")), "b.example");
    federation_snapshot_free(&snap);

    /* The same scope again replaces CIDRs and expiry, keeps the id. */
    assert_int_equal(grant(f, laptop, NULL, 0, expires, &g, &err), 0);
    assert_string_equal(g.id, id);
    assert_string_equal(g.source_cidrs, "[]");

    /* A suspended peer's grants are not in force; resumed, they are. */
    struct store_peer out;
    assert_int_equal(federation_suspend(&f->c, "b", "audit", &out, &err), 0);
    federation_snapshot(&f->c, &snap);
    assert_int_equal(json_array_size(snap.grants), 0);
    assert_int_equal(json_array_size(snap.peers), 0);
    federation_snapshot_free(&snap);
    assert_int_equal(federation_resume(&f->c, "b", &out, &err), 0);
    federation_snapshot(&f->c, &snap);
    assert_int_equal(json_array_size(snap.grants), 1);
    federation_snapshot_free(&snap);

    /* Past its expiry: out of the push, an event, a new version. */
    int64_t checked = 0, next = 0;
    federation_grants_tick(&f->c, &checked, &next);
    assert_int_equal(next, expires);
    version = store_allowlist_version(f->c.store);
    advance_s(f, 61);
    federation_grants_tick(&f->c, &checked, &next);
    assert_true(store_allowlist_version(f->c.store) > version);
    int events = 0;
    struct store_event_filter filter = {.source = "federation_grant_expiry", .limit = 10};
    assert_int_equal(store_event_query(f->c.store, &filter, count_expiry_event, &events, &err), 0);
    assert_int_equal(events, 1);
    federation_snapshot(&f->c, &snap);
    assert_int_equal(json_array_size(snap.grants), 0);
    assert_int_equal(json_array_size(snap.peers), 0); /* no live grant, no bundle */
    federation_snapshot_free(&snap);
    json_t *listed = federation_grants_json(&f->c, "b", &err);
    assert_non_null(listed);
    assert_string_equal(json_string_value(json_object_get(json_array_get(listed, 0), "state")),
                        "expired");
    json_decref(listed);

    assert_int_equal(federation_grant_revoke(&f->c, id, &g, &err), 0);
    assert_int_equal(federation_grant_revoke(&f->c, id, &g, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
}

static void
test_remote_grants_are_filtered(void **state)
{
    struct fixture *f = *state;
    make_grantable(f);
    struct store_peer *peer = peer_named(f, "b");
    json_t *msg = json_loads(
        "{\"type\":\"fed_grants\",\"version\":1,\"grants\":["
        "{\"id\":\"g1\",\"tunneler\":\"spiffe://a.example/tunneler/laptop\",\"resource\":\"db\","
        "\"connectors\":["
        "{\"id\":\"honest\",\"spiffe_id\":\"spiffe://b.example/connector/bx\",\"address\":\"127.0.0.1:9\"},"
        "{\"id\":\"ours\",\"spiffe_id\":\"spiffe://a.example/connector/dc1\",\"address\":\"127.0.0.1:7\"},"
        "{\"id\":\"named\",\"spiffe_id\":\"spiffe://b.example/connector/by\",\"address\":\"x.example:1\"}]},"
        "{\"id\":\"g2\",\"tunneler\":\"spiffe://c.example/tunneler/laptop\",\"resource\":\"db\","
        "\"connectors\":[]},"
        "{\"id\":\"g3\",\"tunneler\":\"spiffe://a.example/tunneler/laptop\",\"resource\":\"a@b\","
        "\"connectors\":[]}]}", 0, NULL);
    assert_non_null(msg);
    bool changed = false;
    struct ztr_err err = {0};
    assert_int_equal(federation_remote_grants_apply(&f->c, peer, msg, &changed, &err), 0);
    assert_true(changed);
    assert_non_null(strstr(test_log_captured(), "dropped=4"));
    assert_int_equal(federation_remote_grants_apply(&f->c, peer, msg, &changed, &err), 0);
    assert_false(changed);
    json_decref(msg);
    struct fed_snapshot snap;
    federation_snapshot(&f->c, &snap);
    json_t *entries = json_array();
    json_t *peers = NULL;
    federation_remote_connectors(&snap, "spiffe://a.example/tunneler/laptop", entries, &peers);
    assert_int_equal(json_array_size(entries), 1);
    json_t *k = json_array_get(entries, 0);
    assert_string_equal(json_string_value(json_object_get(k, "id")), "b.example/honest");
    assert_string_equal(json_string_value(json_array_get(json_object_get(k, "resources"), 0)),
                        "db@b.example");
    assert_int_equal(json_array_size(peers), 1);
    json_decref(entries);
    json_decref(peers);
    entries = json_array();
    federation_remote_connectors(&snap, "spiffe://a.example/tunneler/other", entries, &peers);
    assert_int_equal(json_array_size(entries), 0);
    assert_null(peers);
    json_decref(entries);
    federation_snapshot_free(&snap);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_token_format_pins_the_ca),
        T(test_only_the_digest_is_stored),
        T(test_accept_check_refusals),
        T(test_single_use),
        T(test_new_token_replaces_the_previous),
        T(test_propose_checks_input),
        T(test_state_machine),
        T(test_sweep_marks_stale_peers_degraded),
        T(test_suspend_resume_revoke),
        T(test_names_and_trust_domains_are_unique),
        T(test_grants_are_checked_scoped_and_pushed),
        T(test_remote_grants_are_filtered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
