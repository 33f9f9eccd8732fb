/* Allowlist changes and their apply times (controller/changes.h). */
#include "tests/unit/support.h"

#include <string.h>

#include "controller/changes.h"

static json_t *
newest(const struct changes *changes)
{
    json_t *all = changes_json(changes, 1);
    json_t *first = json_incref(json_array_get(json_object_get(all, "changes"), 0));
    json_decref(all);
    return first;
}

static void
test_fleet_time_is_the_slowest_connector(void **state)
{
    (void)state;
    struct changes *changes;
    struct ztr_err err = {0};
    assert_int_equal(changes_new(&changes, &err), 0);
    changes_pushed(changes, 7, 10000, 2);
    /* Connector clocks are their own: only applied → closed is taken from them. */
    assert_true(changes_applied(changes, 7, 10004, 500000, 500003, 0));
    json_t *c = newest(changes);
    assert_false(json_is_true(json_object_get(c, "complete")));
    json_decref(c);
    assert_true(changes_applied(changes, 7, 10009, 900, 901, 3));
    c = newest(changes);
    assert_int_equal(json_integer_value(json_object_get(c, "id")), 7);
    assert_int_equal(json_integer_value(json_object_get(c, "applied")), 2);
    assert_true(json_is_true(json_object_get(c, "complete")));
    assert_int_equal(json_integer_value(json_object_get(c, "apply_ms")), 9);
    assert_int_equal(json_integer_value(json_object_get(c, "close_ms")), 3);
    assert_int_equal(json_integer_value(json_object_get(c, "sessions_closed")), 3);
    json_decref(c);
    /* A version this controller never pushed is not counted. */
    assert_false(changes_applied(changes, 6, 10010, 0, 0, 0));
    struct metrics *m = metrics_new();
    changes_metrics(changes, m);
    size_t len;
    char *text = metrics_take(m, &len);
    assert_non_null(strstr(text, "ztr_revocation_apply_seconds_count{phase=\"applied\"} 2\n"));
    assert_non_null(strstr(text, "ztr_revocation_apply_seconds_bucket{phase=\"applied\",le=\"0.005\"} 1\n"));
    assert_non_null(strstr(text, "ztr_revocation_apply_seconds_bucket{phase=\"closed\",le=\"0.005\"} 2\n"));
    free(text);
    metrics_free(m);
    changes_free(changes);
}

/* A connector's claims are bounded: a close phase longer than a report can
 * take, and an absurd session count, are cut down. */
static void
test_connector_claims_are_bounded(void **state)
{
    (void)state;
    struct changes *changes;
    assert_int_equal(changes_new(&changes, NULL), 0);
    changes_pushed(changes, 8, 20000, 1);
    assert_true(changes_applied(changes, 8, 20001, 0, 99999999999, INT64_MAX));
    json_t *c = newest(changes);
    assert_int_equal(json_integer_value(json_object_get(c, "close_ms")), CHANGES_REPORT_MAX_MS);
    assert_int_equal(json_integer_value(json_object_get(c, "sessions_closed")),
                     CHANGES_SESSIONS_MAX);
    json_decref(c);
    changes_free(changes);
}

/* Bounded: the oldest change leaves when CHANGES_MAX are kept; newest first. */
static void
test_ring_keeps_the_last_changes(void **state)
{
    (void)state;
    struct changes *changes;
    assert_int_equal(changes_new(&changes, NULL), 0);
    for (int64_t v = 1; v <= CHANGES_MAX + 10; v++)
        changes_pushed(changes, v, v * 10, 1);
    changes_pushed(changes, CHANGES_MAX + 10, 0, 2); /* same version: more connectors */
    json_t *all = changes_json(changes, CHANGES_MAX * 2);
    json_t *list = json_object_get(all, "changes");
    assert_int_equal(json_array_size(list), CHANGES_MAX);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "id")),
                     CHANGES_MAX + 10);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "connectors")), 3);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(list, CHANGES_MAX - 1), "id")), 11);
    json_decref(all);
    assert_false(changes_applied(changes, 5, 0, 0, 0, 0));
    changes_free(changes);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fleet_time_is_the_slowest_connector),
        cmocka_unit_test(test_connector_claims_are_bounded),
        cmocka_unit_test(test_ring_keeps_the_last_changes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
