/* What a binary says it is: the --version line and the ztr_build_info
 * metric come from one struct and agree. */
#include "tests/unit/support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/build_info.h"
#include "base/metrics.h"

static void
test_facts_are_all_filled(void **state)
{
    (void)state;
    struct build_info info;
    build_info_get(&info);
    assert_true(info.version[0] != '\0');
    assert_true(info.wolfssl[0] != '\0');
    assert_true(info.wolfssl_asm[0] != '\0');
    /* The Makefile writes the build type; every tree is one of these. */
    assert_true(strcmp(info.build, "release") == 0 || strcmp(info.build, "asan") == 0);
}

static void
test_asm_list_is_comma_joined_without_ends(void **state)
{
    (void)state;
    struct build_info info;
    build_info_get(&info);
    size_t len = strlen(info.wolfssl_asm);
    assert_true(info.wolfssl_asm[0] != ',' && info.wolfssl_asm[len - 1] != ',');
    assert_null(strstr(info.wolfssl_asm, ",,"));
    assert_null(strchr(info.wolfssl_asm, ' '));
}

static void
test_version_line_names_program_and_every_fact(void **state)
{
    (void)state;
    struct build_info info;
    build_info_get(&info);
    char line[256], want[256];
    int n = build_info_line("tunneler", line, sizeof(line));
    snprintf(want, sizeof(want), "tunneler version=%s wolfssl=%s wolfssl_asm=%s build=%s",
             info.version, info.wolfssl, info.wolfssl_asm, info.build);
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(line, want);
}

static void
test_version_line_is_cut_not_overrun(void **state)
{
    (void)state;
    char line[12];
    memset(line, 'x', sizeof(line));
    int n = build_info_line("controller", line, sizeof(line));
    assert_true(n > (int)sizeof(line));
    assert_int_equal(strlen(line), sizeof(line) - 1);
}

static void
test_metric_is_one_sample_of_value_one_with_the_same_facts(void **state)
{
    (void)state;
    struct build_info info;
    build_info_get(&info);
    struct metrics *m = metrics_new();
    assert_non_null(m);
    build_info_metric(m);
    size_t len = 0;
    char *text = metrics_take(m, &len);
    metrics_free(m);
    assert_non_null(text);
    char want[512];
    snprintf(want, sizeof(want),
             "ztr_build_info{version=\"%s\",wolfssl=\"%s\",wolfssl_asm=\"%s\",build=\"%s\"} 1\n",
             info.version, info.wolfssl, info.wolfssl_asm, info.build);
    assert_non_null(strstr(text, "# TYPE ztr_build_info gauge\n"));
    assert_non_null(strstr(text, want));
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_facts_are_all_filled),
        cmocka_unit_test(test_asm_list_is_comma_joined_without_ends),
        cmocka_unit_test(test_version_line_names_program_and_every_fact),
        cmocka_unit_test(test_version_line_is_cut_not_overrun),
        cmocka_unit_test(test_metric_is_one_sample_of_value_one_with_the_same_facts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
