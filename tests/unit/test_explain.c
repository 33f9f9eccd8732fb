/* `controller explain`'s judgement (controller/explain.c): every failing
 * step from made-up facts, the first failure chosen, the allow verdict,
 * a connector's answer (allow, deny, none), the tunneler's name forms, and
 * the explain messages' schema (ctl/ctlmsg.c). */
#include "tests/unit/support.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/explain.h"
#include "ctl/ctlmsg.h"

#define TD "example.org"
#define NOW 1700000000

/* Facts of a pair that is allowed: laptop → web on dc1, all current. */
static void
allowed_facts(struct explain_facts *f)
{
    memset(f, 0, sizeof(*f));
    struct ztr_err err = {0};
    assert_int_equal(explain_parse_tunneler("laptop", TD, f, &err), 0);
    snprintf(f->resource, sizeof(f->resource), "web");
    f->now = NOW;
    f->tunneler_found = true;
    snprintf(f->tunneler_id, sizeof(f->tunneler_id), "n1");
    f->enrolled_at = NOW - 100;
    f->cert_not_after = NOW + 3600;
    f->resource_found = true;
    f->bound_count = f->connector_count = 1;
    struct explain_connector *k = &f->connectors[0];
    snprintf(k->name, sizeof(k->name), "dc1");
    snprintf(k->id, sizeof(k->id), "c1");
    k->online = k->announces = k->allowlist_reported = true;
    k->allowlist_version = 7;
    f->grant_found = true;
    f->allowlist_version = 7;
}

/* Judges f and checks the verdict, and for a deny the first failing step
 * and a piece of its detail. */
static json_t *
judge(const struct explain_facts *f, const char *verdict, const char *step, const char *detail)
{
    json_t *result = explain_evaluate(f);
    assert_non_null(result);
    assert_string_equal(json_string_value(json_object_get(result, "verdict")), verdict);
    const json_t *first = json_object_get(result, "first_failure");
    if (step == NULL) {
        assert_true(json_is_null(first));
    } else {
        assert_string_equal(json_string_value(json_object_get(first, "step")), step);
        const char *text = json_string_value(json_object_get(first, "detail"));
        if (strstr(text, detail) == NULL)
            fail_msg("detail \"%s\" lacks \"%s\"", text, detail);
    }
    return result;
}

static void
test_allowed_pair_is_allowed_at_every_step(void **state)
{
    (void)state;
    struct explain_facts f;
    allowed_facts(&f);
    json_t *result = judge(&f, "allow", NULL, NULL);
    size_t i;
    json_t *step;
    json_array_foreach(json_object_get(result, "steps"), i, step)
        assert_true(json_is_true(json_object_get(step, "ok")));
    /* Every step an operator reads, in order. */
    static const char *const names[] = {
        EXPLAIN_STEP_TUNNELER, EXPLAIN_STEP_CERTIFICATE, EXPLAIN_STEP_REVOKED,
        EXPLAIN_STEP_RESOURCE, EXPLAIN_STEP_BINDINGS,    EXPLAIN_STEP_GRANT,
        EXPLAIN_STEP_CONNECTORS, EXPLAIN_STEP_ALLOWLIST, EXPLAIN_STEP_DRAINING};
    assert_int_equal(json_array_size(json_object_get(result, "steps")), 9);
    for (i = 0; i < 9; i++)
        assert_string_equal(json_string_value(json_object_get(
                                json_array_get(json_object_get(result, "steps"), i), "step")),
                            names[i]);
    const json_t *dc1 = json_array_get(json_object_get(result, "connectors"), 0);
    assert_string_equal(json_string_value(json_object_get(dc1, "status")), "ONLINE");
    assert_true(json_is_true(json_object_get(dc1, "applied")));
    assert_true(json_is_null(json_object_get(dc1, "draining")));
    json_decref(result);
}

static void
test_unknown_tunneler_fails_first(void **state)
{
    (void)state;
    struct explain_facts f;
    allowed_facts(&f);
    f.tunneler_found = false;
    f.grant_found = false;
    json_decref(judge(&f, "deny", EXPLAIN_STEP_TUNNELER,
                      "unknown tunneler: no tunneler named laptop is enrolled"));
}

static void
test_expired_certificate_says_until_when(void **state)
{
    (void)state;
    struct explain_facts f;
    allowed_facts(&f);
    f.cert_not_after = NOW - 1;
    json_decref(judge(&f, "deny", EXPLAIN_STEP_CERTIFICATE, "certificate expired"));
    f.cert_not_after = NOW + 60;
    json_t *result = judge(&f, "allow", NULL, NULL);
    const char *detail = json_string_value(
        json_object_get(json_array_get(json_object_get(result, "steps"), 1), "detail"));
    assert_non_null(strstr(detail, "valid until 2023-11-14T22:14:20Z (60s left)"));
    json_decref(result);
}

static void
test_revoked_tunneler_is_denied(void **state)
{
    (void)state;
    struct explain_facts f;
    allowed_facts(&f);
    f.revoked = true;
    json_decref(judge(&f, "deny", EXPLAIN_STEP_REVOKED, "revoked: laptop was revoked"));
}

static void
test_unknown_resource_is_denied(void **state)
{
    (void)state;
    struct explain_facts f;
    allowed_facts(&f);
    f.resource_found = false;
    f.bound_count = f.connector_count = 0;
    json_t *result = judge(&f, "deny", EXPLAIN_STEP_RESOURCE,
                           "unknown resource: no resource named web");
    /* No bindings or connectors to judge without the resource. */
    size_t i;
    json_t *step;
    json_array_foreach(json_object_get(result, "steps"), i, step)
        assert_string_not_equal(json_string_value(json_object_get(step, "step")),
                                EXPLAIN_STEP_BINDINGS);
    json_decref(result);
}

static void
test_resource_bound_to_no_connector_is_denied(void **state)
{
    (void)state;
    struct explain_facts f;
    allowed_facts(&f);
    f.bound_count = f.connector_count = 0;
    json_decref(judge(&f, "deny", EXPLAIN_STEP_BINDINGS,
                      "no connector: resource web is bound to no connector"));
}

static void
test_no_grant_is_denied_with_the_pair(void **state)
{
    (void)state;
    struct explain_facts f;
    allowed_facts(&f);
    f.grant_found = false;
    json_decref(judge(&f, "deny", EXPLAIN_STEP_GRANT, "no grant: laptop is not allowed to web"));
}

static void
test_offline_connector_is_denied(void **state)
{
    (void)state;
    struct explain_facts f;
    allowed_facts(&f);
    f.connectors[0].online = false;
    json_decref(judge(&f, "deny", EXPLAIN_STEP_CONNECTORS,
                      "no bound connector is ONLINE: dc1 OFFLINE"));
    f.connectors[0].id[0] = '\0';
    json_decref(judge(&f, "deny", EXPLAIN_STEP_CONNECTORS, "dc1 not enrolled"));
}

static void
test_connector_not_announcing_is_denied(void **state)
{
    (void)state;
    struct explain_facts f;
    allowed_facts(&f);
    f.connectors[0].announces = false;
    json_decref(judge(&f, "deny", EXPLAIN_STEP_CONNECTORS,
                      "no ONLINE connector announces web (check its RESOURCES)"));
}

static void
test_connector_behind_on_allowlist_is_denied(void **state)
{
    (void)state;
    struct explain_facts f;
    allowed_facts(&f);
    f.allowlist_version = 9;
    json_decref(judge(&f, "deny", EXPLAIN_STEP_ALLOWLIST, "dc1 behind at 7"));
    /* One current connector of two is enough. */
    f.bound_count = f.connector_count = 2;
    f.connectors[1] = f.connectors[0];
    snprintf(f.connectors[1].name, sizeof(f.connectors[1].name), "dc2");
    f.connectors[1].allowlist_version = 9;
    json_decref(judge(&f, "allow", NULL, NULL));
    /* Not reported is no proof of being behind. */
    f.connector_count = f.bound_count = 1;
    f.connectors[0].allowlist_reported = false;
    json_decref(judge(&f, "allow", NULL, NULL));
}

static void
test_draining_is_not_reported_until_connectors_report_it(void **state)
{
    (void)state;
    struct explain_facts f;
    allowed_facts(&f);
    json_t *result = judge(&f, "allow", NULL, NULL);
    const char *detail = json_string_value(
        json_object_get(json_array_get(json_object_get(result, "steps"), 8), "detail"));
    assert_string_equal(detail, "draining: not reported");
    json_decref(result);
    f.connectors[0].drain = EXPLAIN_DRAIN_YES;
    json_decref(judge(&f, "deny", EXPLAIN_STEP_DRAINING, "every serving connector is draining"));
}

static void
test_first_failure_is_the_earliest_step(void **state)
{
    (void)state;
    struct explain_facts f;
    allowed_facts(&f);
    f.revoked = true;
    f.grant_found = false;
    f.connectors[0].online = false;
    json_decref(judge(&f, "deny", EXPLAIN_STEP_REVOKED, "revoked"));
}

static void
test_federated_tunneler_needs_peer_and_live_grant(void **state)
{
    (void)state;
    struct explain_facts f;
    allowed_facts(&f);
    struct ztr_err err = {0};
    assert_int_equal(explain_parse_tunneler("laptop@other.org", TD, &f, &err), 0);
    assert_true(f.federated);
    assert_string_equal(f.spiffe_id, "spiffe://other.org/tunneler/laptop");
    f.tunneler_found = false;
    json_decref(judge(&f, "deny", EXPLAIN_STEP_PEER, "unknown trust domain"));
    f.peer_found = true;
    snprintf(f.peer_name, sizeof(f.peer_name), "acme");
    snprintf(f.peer_state, sizeof(f.peer_state), "suspended");
    json_decref(judge(&f, "deny", EXPLAIN_STEP_PEER, "federation peer not in force"));
    snprintf(f.peer_state, sizeof(f.peer_state), "active");
    json_decref(judge(&f, "deny", EXPLAIN_STEP_GRANT,
                      "no grant: laptop@other.org has no federation grant for web"));
    f.fed_grant_found = true;
    snprintf(f.fed_grant_id, sizeof(f.fed_grant_id), "g1");
    snprintf(f.fed_grant_cidrs, sizeof(f.fed_grant_cidrs), "[\"10.0.0.0/8\"]");
    f.fed_grant_expires_at = NOW - 5;
    json_decref(judge(&f, "deny", EXPLAIN_STEP_GRANT, "grant expired: federation grant g1"));
    f.fed_grant_expires_at = 0;
    json_t *result = judge(&f, "allow", NULL, NULL);
    const char *grant = json_string_value(
        json_object_get(json_array_get(json_object_get(result, "steps"), 3), "detail"));
    assert_non_null(strstr(grant, "source_cidrs [\"10.0.0.0/8\"], expires never"));
    json_decref(result);
}

static void
test_tunneler_names_parse_or_are_refused(void **state)
{
    (void)state;
    struct explain_facts f = {0};
    struct ztr_err err = {0};
    assert_int_equal(explain_parse_tunneler("laptop@" TD, TD, &f, &err), 0);
    assert_false(f.federated);
    assert_string_equal(f.tunneler, "laptop");
    assert_int_equal(explain_parse_tunneler("spiffe://other.org/tunneler/x", TD, &f, &err), 0);
    assert_true(f.federated);
    assert_string_equal(f.tunneler, "x@other.org");
    static const char *const bad[] = {"", "@" TD, "a/b", "laptop@bad domain",
                                      "spiffe://" TD "/connector/dc1", "laptop@"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        assert_int_equal(explain_parse_tunneler(bad[i], TD, &f, &err), -1);
        assert_int_equal(err.code, ZTR_E_INVALID);
        assert_non_null(strstr(err.msg, "tunneler"));
    }
}

static json_t *
answer(const char *verdict, bool permitted, const char *target, const char *reason)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:b, s:b, s:b, s:b, s:s, s:s, s:s}", "type",
                     "explain_answer", "id", "0123456789abcdef", "allowlist_version", 7,
                     "confirmed_age_seconds", 3, "stale", 0, "on_allowlist", permitted,
                     "permitted", permitted, "serves", target[0] != '\0', "target", target,
                     "verdict", verdict, "reason", reason);
}

static void
test_connector_answer_joins_the_verdict(void **state)
{
    (void)state;
    struct explain_facts f;
    allowed_facts(&f);
    json_t *result = judge(&f, "allow", NULL, NULL);
    json_t *msg = answer("allow", true, "127.0.0.1:80", "");
    struct ztr_err err = {0};
    assert_int_equal(ctlmsg_validate(msg, NULL, &err), 0);
    explain_add_connector_answer(result, "dc1", msg, NULL);
    assert_string_equal(json_string_value(json_object_get(result, "verdict")), "allow");
    const json_t *asked = json_object_get(result, "connector_answer");
    assert_true(json_is_true(json_object_get(asked, "answered")));
    assert_int_equal(json_integer_value(json_object_get(asked, "confirmed_age_seconds")), 3);
    json_decref(msg);
    json_decref(result);

    result = judge(&f, "allow", NULL, NULL);
    msg = answer("deny", false, "127.0.0.1:80", "tunneler not allowed");
    explain_add_connector_answer(result, "dc1", msg, NULL);
    assert_string_equal(json_string_value(json_object_get(result, "verdict")), "deny");
    const char *detail = json_string_value(
        json_object_get(json_object_get(result, "first_failure"), "detail"));
    assert_non_null(strstr(detail, "connector refuses: dc1 would deny"));
    assert_non_null(strstr(detail, "tunneler not allowed"));
    json_decref(msg);
    json_decref(result);

    result = judge(&f, "allow", NULL, NULL);
    explain_add_connector_answer(result, "dc1", NULL, "connector did not answer within 2s");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(result, "first_failure"), "detail")),
                        "dc1: connector did not answer within 2s");
    assert_false(json_is_true(json_object_get(json_object_get(result, "connector_answer"),
                                              "answered")));
    json_decref(result);
}

static void
test_explain_messages_follow_their_schema(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    enum ctlmsg_type type;
    json_t *request = json_pack("{s:s, s:s, s:s, s:s}", "type", "explain_request", "id",
                                "0123456789abcdef", "tunneler",
                                "spiffe://" TD "/tunneler/laptop", "resource", "web");
    assert_int_equal(ctlmsg_validate(request, &type, &err), 0);
    assert_int_equal(type, CTLMSG_EXPLAIN_REQUEST);
    json_object_set_new(request, "extra", json_true());
    assert_int_equal(ctlmsg_validate(request, &type, &err), -1);
    json_decref(request);
    json_t *msg = answer("allow", true, "", "");
    json_object_set_new(msg, "stale", json_integer(0)); /* a boolean, not a number */
    assert_int_equal(ctlmsg_validate(msg, &type, &err), -1);
    assert_non_null(strstr(err.msg, "expected true or false"));
    json_decref(msg);
    json_t *hb = json_pack("{s:s, s:i, s:i, s:s}", "type", "heartbeat", "seq", 1,
                           "allowlist_version", 4, "allowlist_epoch", "00112233aabbccdd");
    assert_int_equal(ctlmsg_validate(hb, &type, &err), 0);
    json_decref(hb);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allowed_pair_is_allowed_at_every_step),
        cmocka_unit_test(test_unknown_tunneler_fails_first),
        cmocka_unit_test(test_expired_certificate_says_until_when),
        cmocka_unit_test(test_revoked_tunneler_is_denied),
        cmocka_unit_test(test_unknown_resource_is_denied),
        cmocka_unit_test(test_resource_bound_to_no_connector_is_denied),
        cmocka_unit_test(test_no_grant_is_denied_with_the_pair),
        cmocka_unit_test(test_offline_connector_is_denied),
        cmocka_unit_test(test_connector_not_announcing_is_denied),
        cmocka_unit_test(test_connector_behind_on_allowlist_is_denied),
        cmocka_unit_test(test_draining_is_not_reported_until_connectors_report_it),
        cmocka_unit_test(test_first_failure_is_the_earliest_step),
        cmocka_unit_test(test_federated_tunneler_needs_peer_and_live_grant),
        cmocka_unit_test(test_tunneler_names_parse_or_are_refused),
        cmocka_unit_test(test_connector_answer_joins_the_verdict),
        cmocka_unit_test(test_explain_messages_follow_their_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
