/* The fleet view's live half (controller/fleet.c): counters and their
 * 5-minute deltas, reconnects and flapping, batched writes to a real store,
 * the certificate horizon, and seed 000's "escalate at 3+ nodes". A manual
 * clock drives it all. */
#include "tests/unit/support.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "controller/fleet.h"
#include "controller/store.h"

#define T0_MS 1700000000000LL
#define T0 (T0_MS / 1000)
#define TTL_S 1000

struct fx {
    char *dir;
    char *path;
    struct ztr_clock clock;
    struct store *store;
    struct fleet *fleet;
    int tokens;
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    test_log_capture_start();
    f->dir = test_mkdtemp();
    f->path = test_path(f->dir, "state.db");
    clock_manual_init(&f->clock, T0_MS);
    struct ztr_err err = {0};
    if (store_open(f->path, &f->clock, &f->store, &err) != 0)
        fail_msg("store_open: %s", err.msg);
    if (fleet_new(f->store, &f->clock, TTL_S, &f->fleet, &err) != 0)
        fail_msg("fleet_new: %s", err.msg);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    fleet_free(f->fleet);
    store_close(f->store);
    test_log_capture_stop();
    test_rmtree(f->dir);
    free(f->path);
    free(f->dir);
    free(f);
    return 0;
}

static void
advance_s(struct fx *f, int64_t seconds)
{
    clock_manual_advance(&f->clock, seconds * 1000);
}

static int64_t
now_s(struct fx *f)
{
    return clock_wall_s(&f->clock);
}

/* A node enrolled now with a TTL_S certificate; returns its row. */
static struct store_node
enrolled(struct fx *f, const char *role, const char *name)
{
    struct ztr_err err = {0};
    struct store_token t;
    memset(&t, 0, sizeof(t));
    snprintf(t.id, sizeof(t.id), "tok%d", f->tokens++);
    snprintf(t.role, sizeof(t.role), "%s", role);
    snprintf(t.name, sizeof(t.name), "%s", name);
    t.uses_left = 1;
    t.expires_at = now_s(f) + 600;
    if (store_token_insert(f->store, &t, &err) != 0)
        fail_msg("store_token_insert: %s", err.msg);
    struct store_node n;
    memset(&n, 0, sizeof(n));
    snprintf(n.role, sizeof(n.role), "%s", role);
    snprintf(n.name, sizeof(n.name), "%s", name);
    snprintf(n.spiffe_id, sizeof(n.spiffe_id), "spiffe://example.org/%s/%s", role, name);
    snprintf(n.cert_serial, sizeof(n.cert_serial), "s-%s", name);
    snprintf(n.cert_key, sizeof(n.cert_key), "k-%s", name);
    n.cert_not_after = now_s(f) + TTL_S;
    if (store_node_enroll(f->store, t.id, &n, &n, NULL, &err) != 0)
        fail_msg("store_node_enroll: %s", err.msg);
    return n;
}

static struct store_node
reread(struct fx *f, const char *id)
{
    struct store_node n;
    struct ztr_err err = {0};
    if (store_node_get(f->store, id, &n, &err) != 0)
        fail_msg("store_node_get: %s", err.msg);
    return n;
}

/* A heartbeat carrying {"<counter>": value} (counter NULL: no counters). */
static bool
beat(struct fx *f, const struct store_node *n, const char *counter, json_int_t value)
{
    json_t *counters = counter != NULL ? json_pack("{s:I, s:I}", counter, value,
                                                   "reconnect_scheduled", (json_int_t)1)
                                       : NULL;
    bool write = fleet_heartbeat(f->fleet, n, counters);
    json_decref(counters);
    return write;
}

static size_t
count_in_log(const char *text)
{
    size_t n = 0;
    for (const char *p = test_log_captured(); (p = strstr(p, text)) != NULL; p += strlen(text))
        n++;
    return n;
}

static int
count_alert(void *ctx, const struct store_event *e)
{
    if (strcmp(e->kind, "alert") == 0)
        ++*(size_t *)ctx;
    return 0;
}

static size_t
alert_events(struct fx *f)
{
    size_t n = 0;
    struct ztr_err err = {0};
    assert_int_equal(store_event_list(f->store, 0, 1000, count_alert, &n, &err), 0);
    return n;
}

#define AUTH_LINE "escalate to platform/backend on-call: 3+ nodes show the same auth failure pattern"

/* ---- tests ------------------------------------------------------------------ */

static void
test_names_are_the_runbooks(void **state)
{
    (void)state;
    assert_string_equal(fleet_counter_name(FLEET_RECONNECT_SCHEDULED),
                        "telemetry.reconnect.scheduled");
    assert_string_equal(fleet_counter_name(FLEET_RECONNECT_FAILED), "telemetry.reconnect.failed");
    assert_string_equal(fleet_counter_name(FLEET_AUTH_EXPIRED), "telemetry.auth.expired");
    assert_string_equal(fleet_counter_name(FLEET_AUTH_REVOKED), "telemetry.auth.revoked");
    assert_string_equal(fleet_counter_name(FLEET_AUTH_UNAVAILABLE), "telemetry.auth.unavailable");
    assert_string_equal(fleet_counter_wire_name(FLEET_AUTH_UNAVAILABLE), "auth_unavailable");
    assert_string_equal(fleet_counter_wire_name(FLEET_RENEWALS_FAILED), "renewals_failed");
    assert_string_equal(fleet_failure_name(FLEET_FAIL_FLAPPING), "flapping");
    assert_string_equal(fleet_failure_name(FLEET_FAIL_RENEWAL_MISSED), "renewal_missed");
    assert_string_equal(fleet_failure_name(FLEET_FAIL_CERT_EXPIRED), "certificate_expired");
    assert_string_equal(fleet_failure_name(FLEET_FAILURE_COUNT), "?");
}

static void
test_horizon_from_the_history_or_the_ttl(void **state)
{
    struct fx *f = *state;
    advance_s(f, 10);
    struct store_node n = enrolled(f, "connector", "a");
    struct fleet_horizon h;
    fleet_horizon_of(&n, TTL_S, &h);
    assert_int_equal(h.issued_at, T0 + 10);
    assert_int_equal(h.not_after, T0 + 10 + TTL_S);
    assert_int_equal(h.renew_at, T0 + 10 + TTL_S / 2);
    assert_int_equal(h.renew_deadline, T0 + 10 + TTL_S * 6 / 10);
    assert_false(fleet_renewal_missed(&n, &h, h.renew_deadline - 1));
    assert_true(fleet_renewal_missed(&n, &h, h.renew_deadline));
    assert_false(fleet_renewal_missed(&n, &h, h.not_after)); /* expired, not missed */
    assert_false(fleet_cert_expired(&n, h.not_after - 1));
    assert_true(fleet_cert_expired(&n, h.not_after));
    n.revoked = true;
    assert_false(fleet_renewal_missed(&n, &h, h.renew_deadline));
    assert_false(fleet_cert_expired(&n, h.not_after));
    /* Unknown issue time: the configured lifetime. */
    n.cert_issued_at = 0;
    n.cert_not_after = T0 + 5000;
    fleet_horizon_of(&n, 2000, &h);
    assert_int_equal(h.issued_at, T0 + 3000);
    assert_int_equal(h.renew_at, T0 + 4000);
    n.cert_not_after = 0;
    fleet_horizon_of(&n, 2000, &h);
    assert_int_equal(h.not_after, 0);
    assert_int_equal(h.renew_deadline, 0);
}

/* The cost the fleet exists to cut: heartbeats write nothing until the
 * sweep needs their last_seen, and then many nodes go in one write. */
static void
test_heartbeats_are_written_only_when_the_sweep_needs_them(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node a = enrolled(f, "connector", "a");
    struct store_node b = enrolled(f, "tunneler", "b");
    assert_int_equal(store_node_set_status(f->store, a.id, STORE_ONLINE, NULL, NULL, &err), 0);
    assert_int_equal(store_node_set_status(f->store, b.id, STORE_ONLINE, NULL, NULL, &err), 0);
    a = reread(f, a.id);
    b = reread(f, b.id);
    fleet_hello(f->fleet, &a);
    fleet_hello(f->fleet, &b);
    for (int i = 0; i < 5; i++) {
        advance_s(f, 10);
        assert_false(beat(f, &a, "auth_expired", 0));
        assert_false(beat(f, &b, NULL, 0));
    }
    assert_int_equal(reread(f, a.id).last_seen, T0); /* nothing written */
    assert_string_equal(reread(f, a.id).counters, "{}");
    /* Not stale yet for a sweep with this cutoff: still nothing. */
    assert_int_equal(fleet_persist(f->fleet, T0, &err), 0);
    assert_int_equal(reread(f, a.id).last_seen, T0);
    /* Stale: both written, last_seen and a's counters. */
    assert_int_equal(fleet_persist(f->fleet, T0 + 30, &err), 0);
    struct store_node got = reread(f, a.id);
    assert_int_equal(got.last_seen, T0 + 50);
    assert_non_null(strstr(got.counters, "\"auth_expired\":0"));
    assert_non_null(strstr(got.counters, "\"reconnect_scheduled\":1"));
    assert_int_equal(got.counters_at, T0 + 50);
    assert_int_equal(reread(f, b.id).last_seen, T0 + 50);
    assert_string_equal(reread(f, b.id).counters, "{}");
    /* The sweep then finds nobody stale. */
    assert_int_equal(store_node_sweep_offline(f->store, T0 + 30, NULL, NULL, &err), 0);
    assert_int_equal(reread(f, a.id).status, STORE_ONLINE);

    /* A failure counter that rises is written at the next tick, stale or not. */
    advance_s(f, 10);
    assert_false(beat(f, &a, "auth_expired", 1));
    assert_int_equal(fleet_persist(f->fleet, T0, &err), 0);
    assert_non_null(strstr(reread(f, a.id).counters, "\"auth_expired\":1"));
    assert_int_equal(reread(f, b.id).last_seen, T0 + 50);

    /* At stop everything pending goes. */
    advance_s(f, 10);
    beat(f, &b, NULL, 0);
    assert_int_equal(fleet_persist(f->fleet, INT64_MAX, &err), 0);
    assert_int_equal(reread(f, b.id).last_seen, T0 + 70);
}

static void
test_heartbeat_asks_for_online_after_the_store_said_offline(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node a = enrolled(f, "connector", "a");
    assert_int_equal(store_node_set_status(f->store, a.id, STORE_ONLINE, NULL, NULL, &err), 0);
    a = reread(f, a.id);
    fleet_hello(f->fleet, &a);
    assert_false(beat(f, &a, NULL, 0));
    fleet_offline(f->fleet, a.id); /* the sweep found it silent */
    assert_true(beat(f, &a, NULL, 0));
    assert_true(beat(f, &a, NULL, 0)); /* until the write is confirmed */
    fleet_online_written(f->fleet, a.id);
    assert_false(beat(f, &a, NULL, 0));
    /* A node never seen (no hello: the session was opened elsewhere)
     * starts from what the store says. */
    struct store_node b = enrolled(f, "tunneler", "b");
    assert_true(beat(f, &b, NULL, 0));
}

static void
test_deltas_cover_the_last_five_minutes(void **state)
{
    struct fx *f = *state;
    struct store_node a = enrolled(f, "connector", "a");
    fleet_hello(f->fleet, &a);
    struct fleet_node_view v;
    assert_true(fleet_node_view(f->fleet, a.id, &v));
    assert_false(v.have_counters);
    assert_int_equal(v.deltas_window_s, 0);
    /* auth_unavailable = minute number, every 10 s for 10 minutes. */
    for (int s = 0; s <= 600; s += 10) {
        beat(f, &a, "auth_unavailable", s / 60);
        if (s < 600)
            advance_s(f, 10);
    }
    assert_true(fleet_node_view(f->fleet, a.id, &v));
    assert_true(v.have_counters);
    assert_int_equal(v.counters[FLEET_AUTH_UNAVAILABLE], 10);
    assert_true(v.deltas_window_s >= 300 && v.deltas_window_s <= 320);
    /* 5 or 6 minute boundaries fall in a 300..320 s window. */
    assert_true(v.deltas[FLEET_AUTH_UNAVAILABLE] >= 5 && v.deltas[FLEET_AUTH_UNAVAILABLE] <= 6);
    assert_int_equal(v.deltas[FLEET_AUTH_EXPIRED], 0);
    /* An agent restart sets its counters back: the new value is the rise. */
    advance_s(f, 10);
    beat(f, &a, "auth_unavailable", 2);
    assert_true(fleet_node_view(f->fleet, a.id, &v));
    assert_int_equal(v.counters[FLEET_AUTH_UNAVAILABLE], 2);
    assert_true(v.deltas[FLEET_AUTH_UNAVAILABLE] >= 7);
    /* Five quiet minutes later the delta is back to 0. */
    for (int s = 0; s < 330; s += 10) {
        advance_s(f, 10);
        beat(f, &a, "auth_unavailable", 2);
    }
    assert_true(fleet_node_view(f->fleet, a.id, &v));
    assert_int_equal(v.deltas[FLEET_AUTH_UNAVAILABLE], 0);
    assert_false(fleet_node_view(f->fleet, "unknown", &v));
}

static void
test_three_reconnects_in_five_minutes_is_flapping(void **state)
{
    struct fx *f = *state;
    struct store_node a = enrolled(f, "connector", "a");
    struct fleet_node_view v;
    fleet_hello(f->fleet, &a); /* the first session since the start: no reconnect */
    for (int i = 1; i <= 2; i++) {
        fleet_session_closed(f->fleet, a.id);
        advance_s(f, 30);
        fleet_hello(f->fleet, &a);
        assert_true(fleet_node_view(f->fleet, a.id, &v));
        assert_int_equal(v.reconnects, (unsigned)i);
        assert_false(v.flapping);
    }
    fleet_session_closed(f->fleet, a.id);
    advance_s(f, 30);
    fleet_hello(f->fleet, &a);
    assert_true(fleet_node_view(f->fleet, a.id, &v));
    assert_int_equal(v.reconnects, 3);
    assert_true(v.flapping);
    assert_int_equal(v.sessions, 1);
    /* The window moves on. */
    advance_s(f, 241);
    assert_true(fleet_node_view(f->fleet, a.id, &v));
    assert_int_equal(v.reconnects, 2);
    assert_false(v.flapping);
}

static void
test_three_nodes_failing_alike_escalate_once_per_window(void **state)
{
    struct fx *f = *state;
    struct store_node n[5];
    const char *names[5] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++) {
        n[i] = enrolled(f, "connector", names[i]);
        fleet_hello(f->fleet, &n[i]);
        beat(f, &n[i], "auth_unavailable", 0); /* the baseline */
    }
    advance_s(f, 10);
    beat(f, &n[0], "auth_unavailable", 3);
    beat(f, &n[1], "auth_unavailable", 1);
    /* Two nodes, and another failure on a third: no escalation. */
    beat(f, &n[2], "auth_expired", 1);
    assert_int_equal(count_in_log("escalate to platform/backend on-call"), 0);
    struct fleet_escalation x[FLEET_FAILURE_COUNT];
    assert_int_equal(fleet_escalations(f->fleet, x, FLEET_FAILURE_COUNT), 0);
    beat(f, &n[0], "auth_unavailable", 4); /* the same node again: still two */
    assert_int_equal(count_in_log("escalate to platform/backend on-call"), 0);

    advance_s(f, 10);
    beat(f, &n[2], "auth_unavailable", 1);
    assert_int_equal(count_in_log(AUTH_LINE), 1);
    assert_non_null(strstr(test_log_captured(), "failure=telemetry.auth.unavailable nodes=3 "
                                                "window_s=300"));
    assert_non_null(strstr(test_log_captured(), "connector/a"));
    assert_non_null(strstr(test_log_captured(), "connector/b"));
    assert_non_null(strstr(test_log_captured(), "connector/c"));
    assert_int_equal(alert_events(f), 1);
    assert_int_equal(fleet_escalations_logged(f->fleet), 1);
    assert_int_equal(fleet_escalations(f->fleet, x, FLEET_FAILURE_COUNT), 1);
    assert_int_equal(x[0].failure, FLEET_FAIL_AUTH_UNAVAILABLE);
    assert_int_equal(x[0].nodes, 3);
    assert_int_equal(x[0].named, 3);
    assert_int_equal(x[0].logged_at, now_s(f));

    /* A fourth node within the window: counted, not logged again. */
    advance_s(f, 10);
    beat(f, &n[3], "auth_unavailable", 7);
    assert_int_equal(count_in_log(AUTH_LINE), 1);
    assert_int_equal(fleet_escalations(f->fleet, x, FLEET_FAILURE_COUNT), 1);
    assert_int_equal(x[0].nodes, 4);

    /* Past the window: the pattern is over; three new strikes log again. */
    advance_s(f, 301);
    assert_int_equal(fleet_escalations(f->fleet, x, FLEET_FAILURE_COUNT), 0);
    beat(f, &n[0], "auth_unavailable", 5);
    beat(f, &n[1], "auth_unavailable", 2);
    beat(f, &n[4], "auth_unavailable", 1);
    assert_int_equal(count_in_log(AUTH_LINE), 2);
    assert_int_equal(alert_events(f), 2);
    /* Other failures have their own line. */
    beat(f, &n[0], "reconnect_failed", 0);
    beat(f, &n[1], "reconnect_failed", 0);
    beat(f, &n[2], "reconnect_failed", 0);
    advance_s(f, 1);
    beat(f, &n[0], "reconnect_failed", 1);
    beat(f, &n[1], "reconnect_failed", 1);
    beat(f, &n[2], "reconnect_failed", 1);
    assert_int_equal(count_in_log("3+ nodes show the same failure pattern"), 1);
    assert_non_null(strstr(test_log_captured(), "failure=telemetry.reconnect.failed"));
}

/* Counters stored before this start are a baseline for deltas, but what
 * rose meanwhile (a controller outage) does not escalate by itself. */
static void
test_baseline_from_before_the_start_does_not_escalate(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node n[3];
    const char *names[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        n[i] = enrolled(f, "tunneler", names[i]);
        struct store_heartbeat hb;
        memset(&hb, 0, sizeof(hb));
        memcpy(hb.id, n[i].id, sizeof(hb.id));
        hb.last_seen = now_s(f) - 100;
        snprintf(hb.counters, sizeof(hb.counters), "{\"auth_unavailable\":4}");
        hb.counters_at = now_s(f) - 100;
        assert_int_equal(store_node_save_heartbeats(f->store, &hb, 1, NULL, &err), 0);
        n[i] = reread(f, n[i].id);
    }
    advance_s(f, 5);
    for (int i = 0; i < 3; i++) {
        fleet_hello(f->fleet, &n[i]);
        beat(f, &n[i], "auth_unavailable", 9);
    }
    struct fleet_node_view v;
    assert_true(fleet_node_view(f->fleet, n[0].id, &v));
    assert_int_equal(v.deltas[FLEET_AUTH_UNAVAILABLE], 5);
    assert_int_equal(count_in_log("escalate to platform/backend on-call"), 0);
    /* From then on rises count. */
    advance_s(f, 5);
    for (int i = 0; i < 3; i++)
        beat(f, &n[i], "auth_unavailable", 10);
    assert_int_equal(count_in_log(AUTH_LINE), 1);
}

static void
test_three_flapping_nodes_escalate(void **state)
{
    struct fx *f = *state;
    const char *names[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        struct store_node n = enrolled(f, "tunneler", names[i]);
        for (int k = 0; k < 4; k++) {
            fleet_hello(f->fleet, &n);
            fleet_session_closed(f->fleet, n.id);
            advance_s(f, 1);
        }
    }
    assert_int_equal(count_in_log("3+ nodes show the same failure pattern"), 1);
    assert_non_null(strstr(test_log_captured(), "failure=flapping nodes=3"));
    assert_non_null(strstr(test_log_captured(), "tunneler/a,tunneler/b,tunneler/c"));
}

static void
test_missed_renewals_and_expiries_are_found_once(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    const char *names[3] = {"a", "b", "c"};
    struct store_node n[3];
    for (int i = 0; i < 3; i++)
        n[i] = enrolled(f, "connector", names[i]);
    /* One of them renews in time: it never misses. */
    advance_s(f, TTL_S / 2);
    assert_int_equal(store_node_renew(f->store, n[2].id, "k-c", "s-c2", "k-c2",
                                      now_s(f) + TTL_S, 60, &err),
                     0);
    fleet_tick(f->fleet);
    advance_s(f, TTL_S / 10); /* the deadline of a and b */
    fleet_tick(f->fleet);
    assert_int_equal(count_in_log("failure=renewal_missed"), 0); /* two nodes only */
    /* A node whose deadline comes 600 s later is no third within 5 minutes. */
    enrolled(f, "tunneler", "d");
    fleet_tick(f->fleet);
    struct fleet_escalation x[FLEET_FAILURE_COUNT];
    assert_int_equal(fleet_escalations(f->fleet, x, FLEET_FAILURE_COUNT), 0);
    advance_s(f, TTL_S * 4 / 10); /* a and b expire */
    fleet_tick(f->fleet);
    fleet_tick(f->fleet); /* a second tick reports nothing twice */
    assert_int_equal(fleet_escalations(f->fleet, x, FLEET_FAILURE_COUNT), 0);

    /* Three at once: one line for renewal_missed, one for expiry. */
    const char *more[3] = {"x", "y", "z"};
    for (int i = 0; i < 3; i++)
        enrolled(f, "tunneler", more[i]);
    fleet_tick(f->fleet);
    advance_s(f, TTL_S * 6 / 10);
    fleet_tick(f->fleet);
    assert_int_equal(count_in_log("failure=renewal_missed nodes=3"), 1);
    advance_s(f, TTL_S * 4 / 10);
    fleet_tick(f->fleet);
    assert_int_equal(count_in_log("failure=certificate_expired nodes=3"), 1);
    fleet_tick(f->fleet);
    assert_int_equal(count_in_log("failure=certificate_expired"), 1);
}

static void
test_idle_nodes_are_dropped_once_written(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node a = enrolled(f, "connector", "a");
    fleet_hello(f->fleet, &a);
    beat(f, &a, "auth_expired", 2);
    fleet_session_closed(f->fleet, a.id);
    advance_s(f, 400);
    fleet_tick(f->fleet);
    struct fleet_node_view v;
    assert_true(fleet_node_view(f->fleet, a.id, &v)); /* unsaved: kept */
    assert_int_equal(fleet_persist(f->fleet, now_s(f) - 1, &err), 0);
    fleet_tick(f->fleet);
    assert_false(fleet_node_view(f->fleet, a.id, &v));
    /* Back later: its stored counters are the baseline again. */
    a = reread(f, a.id);
    fleet_hello(f->fleet, &a);
    beat(f, &a, "auth_expired", 3);
    assert_true(fleet_node_view(f->fleet, a.id, &v));
    assert_int_equal(v.deltas[FLEET_AUTH_EXPIRED], 1);
    assert_int_equal(v.reconnects, 0); /* dropped history: a first session again */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_names_are_the_runbooks),
        T(test_horizon_from_the_history_or_the_ttl),
        T(test_heartbeats_are_written_only_when_the_sweep_needs_them),
        T(test_heartbeat_asks_for_online_after_the_store_said_offline),
        T(test_deltas_cover_the_last_five_minutes),
        T(test_three_reconnects_in_five_minutes_is_flapping),
        T(test_three_nodes_failing_alike_escalate_once_per_window),
        T(test_baseline_from_before_the_start_does_not_escalate),
        T(test_three_flapping_nodes_escalate),
        T(test_missed_renewals_and_expiries_are_found_once),
        T(test_idle_nodes_are_dropped_once_written),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
