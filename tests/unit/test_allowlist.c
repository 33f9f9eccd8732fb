/* The connector's allowlist: apply, versions, lookups, persistence. */
#include "tests/unit/support.h"

#include <arpa/inet.h>
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

static json_t *
message_in(const char *epoch, int version, const char *json_tunnelers)
{
    json_t *msg = message(version, json_tunnelers);
    json_object_set_new(msg, "epoch", json_string(epoch));
    return msg;
}

/* A restored controller database numbers versions from lower again; its
 * new epoch makes the connector take the list (a revocation included),
 * and the epoch survives a connector restart. */
static void
test_new_epoch_wins_whatever_its_version(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    struct allowlist *list = allowlist_new();
    struct ztr_err err = {0};
    const char *laptop = "spiffe://example.org/tunneler/laptop";
    json_t *msg = message_in("00000000000000aa", 9,
                             "[{\"spiffe_id\":\"spiffe://example.org/tunneler/laptop\","
                             "\"resources\":[\"pg\"]}]");
    assert_int_equal(allowlist_apply(list, msg, 1000, &err), 0);
    json_decref(msg);
    assert_string_equal(allowlist_epoch(list), "00000000000000aa");
    assert_int_equal(allowlist_save(list, dir, &err), 0);
    allowlist_free(list);
    list = allowlist_new();
    assert_int_equal(allowlist_load(list, dir, &err), 0);
    assert_string_equal(allowlist_epoch(list), "00000000000000aa");
    assert_int_equal(allowlist_version(list), 9);
    /* Same epoch, older version: refused, the newer decision stands. */
    msg = message_in("00000000000000aa", 8, "[]");
    assert_int_equal(allowlist_apply(list, msg, 2000, &err), -1);
    assert_non_null(strstr(err.msg, "older"));
    assert_true(allowlist_contains(list, laptop));
    json_decref(msg);
    /* Same epoch, same version (a reconnect): taken, it confirms the list. */
    msg = message_in("00000000000000aa", 9,
                     "[{\"spiffe_id\":\"spiffe://example.org/tunneler/laptop\","
                     "\"resources\":[\"pg\"]}]");
    assert_int_equal(allowlist_apply(list, msg, 2500, &err), 0);
    assert_int_equal(allowlist_received_at(list), 2500);
    json_decref(msg);
    /* A new epoch with a lower version: taken, the revocation applies. */
    msg = message_in("00000000000000bb", 2, "[]");
    assert_int_equal(allowlist_apply(list, msg, 3000, &err), 0);
    assert_false(allowlist_contains(list, laptop));
    assert_int_equal(allowlist_version(list), 2);
    assert_string_equal(allowlist_epoch(list), "00000000000000bb");
    json_decref(msg);
    /* An epoch that is not one of ours is refused. */
    msg = message_in("00000000000000bb0", 5, "[]");
    assert_int_equal(allowlist_apply(list, msg, 4000, &err), -1);
    assert_non_null(strstr(err.msg, "epoch"));
    json_decref(msg);
    allowlist_free(list);
    test_rmtree(dir);
    free(dir);
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

static struct sockaddr_storage
ipv4(const char *ip)
{
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof(sa));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&sa;
    v4->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &v4->sin_addr), 1);
    return sa;
}

/* Federation: a peer's tunneler reaches only what a grant names, from its
 * CIDRs, until its expiry; the reason names which part failed. */
static void
test_federation_grants_scope(void **state)
{
    (void)state;
    struct allowlist *list = allowlist_new();
    json_t *msg = message(5, "[]");
    json_t *grants = json_loads(
        "[{\"id\":\"g1\",\"spiffe_id\":\"spiffe://b.example/tunneler/laptop\","
        "\"resource\":\"pg\",\"source_cidrs\":[\"127.0.0.0/8\"]},"
        "{\"id\":\"g2\",\"spiffe_id\":\"spiffe://b.example/tunneler/laptop\","
        "\"resource\":\"web\",\"expires_at\":2000}]", 0, NULL);
    assert_non_null(grants);
    json_object_set_new(msg, "grants", grants);
    json_object_set_new(msg, "peers", json_array());
    struct ztr_err err = {0};
    assert_int_equal(allowlist_apply(list, msg, 1000, &err), 0);
    json_decref(msg);
    const char *laptop = "spiffe://b.example/tunneler/laptop";
    struct sockaddr_storage inside = ipv4("127.0.0.9"), outside = ipv4("10.1.2.3");
    char reason[256];
    assert_true(allowlist_contains(list, laptop));
    assert_true(allowlist_grant_permits(list, laptop, "pg", &inside, 1500, reason, sizeof(reason)));
    assert_false(allowlist_grant_permits(list, laptop, "pg", &outside, 1500, reason,
                                         sizeof(reason)));
    assert_non_null(strstr(reason, "source 10.1.2.3 is outside grant g1"));
    assert_true(allowlist_grant_permits(list, laptop, "web", &outside, 1999, reason,
                                        sizeof(reason)));
    assert_false(allowlist_grant_permits(list, laptop, "web", &outside, 2000, reason,
                                         sizeof(reason)));
    assert_non_null(strstr(reason, "grant g2 expired at 2000"));
    assert_false(allowlist_grant_permits(list, laptop, "ssh", &inside, 1500, reason,
                                         sizeof(reason)));
    assert_non_null(strstr(reason, "resource \"ssh\" is not granted"));
    assert_false(allowlist_grant_permits(list, "spiffe://b.example/tunneler/other", "pg", &inside,
                                         1500, reason, sizeof(reason)));
    assert_non_null(strstr(reason, "no live grant"));
    /* A grant is never a local allowlist entry. */
    assert_false(allowlist_permits(list, laptop, "pg"));
    assert_true(allowlist_grant_live(list, laptop, 1500));
    assert_int_equal(allowlist_next_expiry(list, 1500), 2000);
    assert_int_equal(allowlist_next_expiry(list, 2000), 0);
    /* Kept across a restart (fail-static), grants included. */
    char *dir = test_mkdtemp();
    assert_int_equal(allowlist_save(list, dir, &err), 0);
    struct allowlist *loaded = allowlist_new();
    assert_int_equal(allowlist_load(loaded, dir, &err), 0);
    assert_int_equal(allowlist_grant_count(loaded), 2);
    assert_true(allowlist_grant_permits(loaded, laptop, "pg", &inside, 1500, reason,
                                        sizeof(reason)));
    allowlist_free(loaded);
    test_rmtree(dir);
    free(dir);
    allowlist_free(list);
}

static void
test_federation_grant_with_bad_cidr_refuses_the_list(void **state)
{
    (void)state;
    struct allowlist *list = allowlist_new();
    json_t *msg = message(5, "[]");
    json_object_set_new(msg, "grants",
                        json_loads("[{\"id\":\"g1\",\"spiffe_id\":\"spiffe://b.example/"
                                   "tunneler/x\",\"resource\":\"pg\",\"source_cidrs\":"
                                   "[\"10.0.0.5/8\"]}]", 0, NULL));
    struct ztr_err err = {0};
    assert_int_equal(allowlist_apply(list, msg, 1000, &err), -1);
    assert_non_null(strstr(err.msg, "host bits set"));
    assert_int_equal(allowlist_version(list), 0);
    json_decref(msg);
    allowlist_free(list);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_and_lookups),
        cmocka_unit_test(test_federation_grants_scope),
        cmocka_unit_test(test_federation_grant_with_bad_cidr_refuses_the_list),
        cmocka_unit_test(test_persists_and_reloads),
        cmocka_unit_test(test_new_epoch_wins_whatever_its_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
