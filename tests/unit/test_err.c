/* The error convention: ztr_err_set, ztr_err_wrap, ztr_err_clear, TRY. */
#include "tests/unit/support.h"

#include <string.h>

#include "base/err.h"

static int try_calls;

static int
succeed(void)
{
    try_calls++;
    return 0;
}

static int
fail_io(struct ztr_err *err)
{
    try_calls++;
    return ztr_err_set(err, ZTR_E_IO, "disk on fire");
}

/* Two steps through TRY: the second only runs if the first succeeded. */
static int
two_steps(struct ztr_err *err, int first_fails)
{
    TRY(first_fails ? fail_io(err) : succeed());
    TRY(succeed());
    return 0;
}

static void
test_set_fills_code_and_message_and_returns_minus_one(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    assert_int_equal(ztr_err_set(&err, ZTR_E_INVALID, "bad %s at %d", "thing", 7), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_string_equal(err.msg, "bad thing at 7");
}

static void
test_set_with_null_err_only_returns_minus_one(void **state)
{
    (void)state;
    assert_int_equal(ztr_err_set(NULL, ZTR_E_IO, "ignored %d", 1), -1);
    assert_int_equal(ztr_err_wrap(NULL, "ignored %d", 2), -1);
    ztr_err_clear(NULL);
}

static void
test_set_overwrites_previous_error(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    ztr_err_set(&err, ZTR_E_IO, "first, and rather long, message");
    ztr_err_set(&err, ZTR_E_LIMIT, "second");
    assert_int_equal(err.code, ZTR_E_LIMIT);
    assert_string_equal(err.msg, "second");
}

static void
test_set_truncates_long_message_to_buffer(void **state)
{
    (void)state;
    char big[ZTR_ERR_MSG_MAX * 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct ztr_err err = {0};
    ztr_err_set(&err, ZTR_E_LIMIT, "%s", big);
    assert_int_equal(strlen(err.msg), ZTR_ERR_MSG_MAX - 1);
    assert_int_equal(err.msg[0], 'x');
}

static void
test_set_accepts_module_specific_codes(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    ztr_err_set(&err, 1042, "module code");
    assert_int_equal(err.code, 1042);
}

static void
test_set_may_format_its_own_previous_message(void **state)
{
    (void)state;
    /* "re-raise with more detail" reads err->msg while writing it. */
    struct ztr_err err = {0};
    ztr_err_set(&err, ZTR_E_IO, "open /x: no such file or directory");
    ztr_err_set(&err, ZTR_E_CONFIG, "loading: %s (code %d)", err.msg, err.code);
    assert_int_equal(err.code, ZTR_E_CONFIG);
    assert_string_equal(err.msg, "loading: open /x: no such file or directory (code 2)");
}

static void
test_wrap_prepends_context_and_keeps_code(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    ztr_err_set(&err, ZTR_E_NOT_FOUND, "open /etc/ztr/key.pem: no such file or directory");
    assert_int_equal(ztr_err_wrap(&err, "load key %s", "node-1"), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    assert_string_equal(err.msg, "load key node-1: open /etc/ztr/key.pem: no such file or directory");
}

static void
test_wrap_nests_outermost_first(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    ztr_err_set(&err, ZTR_E_IO, "inner");
    ztr_err_wrap(&err, "middle");
    ztr_err_wrap(&err, "outer");
    assert_string_equal(err.msg, "outer: middle: inner");
}

static void
test_wrap_of_empty_message_leaves_separator(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    ztr_err_wrap(&err, "context");
    assert_string_equal(err.msg, "context: ");
}

static void
test_wrap_may_use_its_own_message_as_argument(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    ztr_err_set(&err, ZTR_E_IO, "abc");
    ztr_err_wrap(&err, "[%s]", err.msg);
    assert_string_equal(err.msg, "[abc]: abc");
}

static void
test_wrap_truncates_detail_and_stays_terminated(void **state)
{
    (void)state;
    char detail[ZTR_ERR_MSG_MAX];
    memset(detail, 'd', sizeof(detail) - 1);
    detail[sizeof(detail) - 1] = '\0';
    struct ztr_err err = {0};
    ztr_err_set(&err, ZTR_E_IO, "%s", detail);
    ztr_err_wrap(&err, "ctx");
    assert_int_equal(strlen(err.msg), ZTR_ERR_MSG_MAX - 1);
    assert_memory_equal(err.msg, "ctx: ddd", 8);
    assert_int_equal(err.msg[ZTR_ERR_MSG_MAX - 2], 'd');
}

static void
test_wrap_with_context_filling_buffer_drops_detail(void **state)
{
    (void)state;
    char context[ZTR_ERR_MSG_MAX + 10];
    memset(context, 'c', sizeof(context) - 1);
    context[sizeof(context) - 1] = '\0';
    struct ztr_err err = {0};
    ztr_err_set(&err, ZTR_E_IO, "detail");
    ztr_err_wrap(&err, "%s", context);
    assert_int_equal(strlen(err.msg), ZTR_ERR_MSG_MAX - 1);
    assert_null(strchr(err.msg, ':'));
    assert_null(strstr(err.msg, "detail"));
}

static void
test_wrap_with_context_one_short_of_full_keeps_partial_separator(void **state)
{
    (void)state;
    char context[ZTR_ERR_MSG_MAX - 1]; /* 510 characters: room for ":" only */
    memset(context, 'c', sizeof(context) - 1);
    context[sizeof(context) - 1] = '\0';
    struct ztr_err err = {0};
    ztr_err_set(&err, ZTR_E_IO, "detail");
    ztr_err_wrap(&err, "%s", context);
    assert_int_equal(strlen(err.msg), ZTR_ERR_MSG_MAX - 1);
    assert_int_equal(err.msg[ZTR_ERR_MSG_MAX - 2], ':');
}

static void
test_clear_resets_code_and_message(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    ztr_err_set(&err, ZTR_E_CRYPTO, "bad signature");
    ztr_err_clear(&err);
    assert_int_equal(err.code, ZTR_OK);
    assert_string_equal(err.msg, "");
}

static void
test_try_propagates_failure_and_stops(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    try_calls = 0;
    assert_int_equal(two_steps(&err, 1), -1);
    assert_int_equal(try_calls, 1);
    assert_int_equal(err.code, ZTR_E_IO);
    assert_string_equal(err.msg, "disk on fire");
}

static void
test_try_continues_on_success(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    try_calls = 0;
    assert_int_equal(two_steps(&err, 0), 0);
    assert_int_equal(try_calls, 2);
    assert_int_equal(err.code, ZTR_OK);
}

static int
try_positive(int value)
{
    TRY(value);
    return 0;
}

static void
test_try_treats_any_nonzero_as_failure(void **state)
{
    (void)state;
    /* A positive return (a count, a bool) must not pass as success. */
    assert_int_equal(try_positive(1), -1);
    assert_int_equal(try_positive(-7), -1);
    assert_int_equal(try_positive(0), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_fills_code_and_message_and_returns_minus_one),
        cmocka_unit_test(test_set_with_null_err_only_returns_minus_one),
        cmocka_unit_test(test_set_overwrites_previous_error),
        cmocka_unit_test(test_set_truncates_long_message_to_buffer),
        cmocka_unit_test(test_set_accepts_module_specific_codes),
        cmocka_unit_test(test_set_may_format_its_own_previous_message),
        cmocka_unit_test(test_wrap_prepends_context_and_keeps_code),
        cmocka_unit_test(test_wrap_nests_outermost_first),
        cmocka_unit_test(test_wrap_of_empty_message_leaves_separator),
        cmocka_unit_test(test_wrap_may_use_its_own_message_as_argument),
        cmocka_unit_test(test_wrap_truncates_detail_and_stays_terminated),
        cmocka_unit_test(test_wrap_with_context_filling_buffer_drops_detail),
        cmocka_unit_test(test_wrap_with_context_one_short_of_full_keeps_partial_separator),
        cmocka_unit_test(test_clear_resets_code_and_message),
        cmocka_unit_test(test_try_propagates_failure_and_stops),
        cmocka_unit_test(test_try_continues_on_success),
        cmocka_unit_test(test_try_treats_any_nonzero_as_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
