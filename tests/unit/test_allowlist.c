/* The connector's allowlist: apply, versions, lookups, persistence. */
#include "tests/unit/support.h"

#include <stdlib.h>
#include <string.h>

#include "connector/allowlist.h"

static json_t *
message(int version, const char *json_tunnelers)
{
    json_t *tunnelers = json_loads(json_tunnelers, 0, NULL);
    assert_non_null(tunnelers);
    return json_pack("{s:s, s:i, s:o}", "type", "allowlist", "version", version, "tunnelers",
                     tunnelers);
}

static void
test_apply_and_lookups(void **state)
{
    (void)state;
    struct allowlist *list = allowlist_new();
    assert_int_equal(allowlist_version(list), 0);
    assert_false(allowlist_contains(list, "spiffe://example.org/tunneler/laptop"));
    json_t *msg = message(3, "[{\"spiffe_id\":\"spiffe://example.org/tunneler/laptop\","
                             "\"resources\":[\"pg\",\"web\"]}]");
    struct ztr_err err = {0};
    assert_int_equal(allowlist_apply(list, msg, 1000, &err), 0);
    assert_int_equal(allowlist_version(list), 3);
    assert_int_equal(allowlist_received_at(list), 1000);
    assert_int_equal(allowlist_size(list), 1);
    assert_true(allowlist_contains(list, "spiffe://example.org/tunneler/laptop"));
    assert_true(allowlist_permits(list, "spiffe://example.org/tunneler/laptop", "pg"));
    assert_false(allowlist_permits(list, "spiffe://example.org/tunneler/laptop", "ssh"));
    assert_false(allowlist_contains(list, "spiffe://example.org/tunneler/other"));
    assert_false(allowlist_permits(list, "spiffe://example.org/tunneler/other", "pg"));
    json_decref(msg);
    /* An older version arriving late never undoes a newer decision. */
    msg = message(2, "[]");
    assert_int_equal(allowlist_apply(list, msg, 2000, &err), -1);
    assert_non_null(strstr(err.msg, "older"));
    assert_true(allowlist_contains(list, "spiffe://example.org/tunneler/laptop"));
    json_decref(msg);
    /* A newer, empty list removes everyone. */
    msg = message(4, "[]");
    assert_int_equal(allowlist_apply(list, msg, 3000, &err), 0);
    assert_false(allowlist_contains(list, "spiffe://example.org/tunneler/laptop"));
    json_decref(msg);
    allowlist_free(list);
}

static void
test_persists_and_reloads(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    struct allowlist *list = allowlist_new(), *again = allowlist_new();
    struct ztr_err err = {0};
    /* Nothing saved yet: an empty list, not an error. */
    assert_int_equal(allowlist_load(again, dir, &err), 0);
    assert_int_equal(allowlist_version(again), 0);
    json_t *msg = message(7, "[{\"spiffe_id\":\"spiffe://example.org/tunneler/a\","
                             "\"resources\":[\"pg\"]}]");
    assert_int_equal(allowlist_apply(list, msg, 1234, &err), 0);
    assert_int_equal(allowlist_save(list, dir, &err), 0);
    assert_int_equal(allowlist_load(again, dir, &err), 0);
    assert_int_equal(allowlist_version(again), 7);
    assert_int_equal(allowlist_received_at(again), 1234);
    assert_true(allowlist_permits(again, "spiffe://example.org/tunneler/a", "pg"));
    char *path = test_path(dir, "allowlist.json");
    assert_int_equal(test_sh("test \"$(stat -c %%a '%s')\" = 600", path), 0);
    /* A damaged file is reported, not silently treated as empty. */
    test_write_file(path, "{\"version\":1,\"tunnelers\":[{\"spiffe_id\":1}]}");
    assert_int_equal(allowlist_load(again, dir, &err), -1);
    assert_non_null(strstr(err.msg, "allowlist.json"));
    test_write_file(path, "garbage");
    assert_int_equal(allowlist_load(again, dir, &err), -1);
    free(path);
    json_decref(msg);
    allowlist_free(list);
    allowlist_free(again);
    test_rmtree(dir);
    free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_and_lookups),
        cmocka_unit_test(test_persists_and_reloads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
