/* Per-key quotas: held counts, windowed strikes, and the bound on keys. */
#include "tests/unit/support.h"

#include <string.h>

#include "base/quota.h"

static struct quota_key
key_of(uint32_t n)
{
    struct quota_key key;
    memset(&key, 0, sizeof(key));
    memcpy(key.bytes + 12, &n, sizeof(n));
    return key;
}

static void
test_enter_refuses_past_max_and_leave_frees(void **state)
{
    (void)state;
    struct quota *q;
    struct ztr_err err = {0};
    assert_int_equal(quota_new(16, 0, &q, &err), 0);
    struct quota_key a = key_of(1), b = key_of(2);
    for (int i = 0; i < 3; i++)
        assert_true(quota_enter(q, &a, 3));
    assert_false(quota_enter(q, &a, 3));
    assert_int_equal(quota_held(q, &a), 3);
    /* Another source is not affected by a's quota. */
    assert_true(quota_enter(q, &b, 3));
    quota_leave(q, &a);
    assert_true(quota_enter(q, &a, 3));
    for (int i = 0; i < 3; i++)
        quota_leave(q, &a);
    quota_leave(q, &b);
    assert_int_equal(quota_size(q), 0);
    /* Leaving more than entered is harmless. */
    quota_leave(q, &a);
    assert_int_equal(quota_held(q, &a), 0);
    assert_false(quota_enter(q, &a, 0));
    quota_free(q);
}

static void
test_full_table_refuses_new_keys_while_all_hold(void **state)
{
    (void)state;
    struct quota *q;
    struct ztr_err err = {0};
    assert_int_equal(quota_new(4, 0, &q, &err), 0);
    for (uint32_t i = 0; i < 4; i++) {
        struct quota_key k = key_of(i);
        assert_true(quota_enter(q, &k, 1));
    }
    struct quota_key extra = key_of(99);
    assert_false(quota_enter(q, &extra, 1));
    struct quota_key k0 = key_of(0);
    quota_leave(q, &k0);
    assert_true(quota_enter(q, &extra, 1));
    assert_int_equal(quota_size(q), 4);
    quota_free(q);
}

static void
test_strikes_count_within_the_window(void **state)
{
    (void)state;
    struct quota *q;
    struct ztr_err err = {0};
    assert_int_equal(quota_new(8, 60000, &q, &err), 0);
    struct quota_key a = key_of(7);
    assert_int_equal(quota_strikes(q, &a, 1000), 0);
    assert_int_equal(quota_strike(q, &a, 1000), 1);
    assert_int_equal(quota_strike(q, &a, 30000), 2);
    assert_int_equal(quota_strikes(q, &a, 60999), 2);
    assert_int_equal(quota_window_left_ms(q, &a, 31000), 30000);
    /* The window started at 1000: at 61000 a new one begins. */
    assert_int_equal(quota_strikes(q, &a, 61000), 0);
    assert_int_equal(quota_window_left_ms(q, &a, 61000), 0);
    assert_int_equal(quota_strike(q, &a, 61000), 1);
    quota_free(q);
}

static void
test_strike_entries_make_room_quietest_first(void **state)
{
    (void)state;
    struct quota *q;
    struct ztr_err err = {0};
    assert_int_equal(quota_new(2, 1000, &q, &err), 0);
    struct quota_key a = key_of(1), b = key_of(2), c = key_of(3);
    quota_strike(q, &a, 0);
    quota_strike(q, &b, 500);
    /* Full, a's window ended: a goes, b keeps its count. */
    assert_int_equal(quota_strike(q, &c, 1200), 1);
    assert_int_equal(quota_strikes(q, &b, 1200), 1);
    assert_int_equal(quota_strikes(q, &a, 1200), 0);
    assert_int_equal(quota_size(q), 2);
    /* Full with current windows only: one is forgotten, never more than
     * capacity are kept. */
    assert_int_equal(quota_strike(q, &a, 1300), 1);
    assert_int_equal(quota_size(q), 2);
    quota_free(q);
}

static void
test_text_keys_are_stable_and_distinct(void **state)
{
    (void)state;
    struct quota_key a1, a2, b;
    quota_key_from_text("node-a", &a1);
    quota_key_from_text("node-a", &a2);
    quota_key_from_text("node-b", &b);
    assert_memory_equal(a1.bytes, a2.bytes, QUOTA_KEY_LEN);
    assert_memory_not_equal(a1.bytes, b.bytes, QUOTA_KEY_LEN);
}

static void
test_new_refuses_bad_bounds(void **state)
{
    (void)state;
    struct quota *q;
    struct ztr_err err = {0};
    assert_int_equal(quota_new(0, 0, &q, &err), -1);
    assert_null(q);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_int_equal(quota_new(4, -1, &q, &err), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enter_refuses_past_max_and_leave_frees),
        cmocka_unit_test(test_full_table_refuses_new_keys_while_all_hold),
        cmocka_unit_test(test_strikes_count_within_the_window),
        cmocka_unit_test(test_strike_entries_make_room_quietest_first),
        cmocka_unit_test(test_text_keys_are_stable_and_distinct),
        cmocka_unit_test(test_new_refuses_bad_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
