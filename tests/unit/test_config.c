/* Configuration: defaults < YAML < env < flags, types, lists, error texts. */
#include "tests/unit/support.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/config.h"
#include "base/log.h"

static const char *const resource_keys[] = {"name", "target", NULL};
static const char *const forward_keys[] = {"listen", "resource", "proto", NULL};

/* The typed settings the schema fills (config_fill); RESOURCES and FORWARDS
 * are lists and stay in struct config. */
struct test_settings {
    char trust_domain[32];
    char join_token[64];
    int64_t heartbeat_interval_ms;
    uint64_t max_connections;
    bool debug;
    char listen_addr[64];
    char controller_addr[64];
    char log_level[8];
};

#define TS struct test_settings
static const struct config_key schema[] = {
    CONFIG_KEY("TRUST_DOMAIN", CONFIG_STRING, NULL, "SPIFFE trust domain", TS, trust_domain),
    CONFIG_KEY("JOIN_TOKEN", CONFIG_SECRET, NULL, "one-time enrolment token", TS, join_token),
    CONFIG_KEY("HEARTBEAT_INTERVAL", CONFIG_DURATION, "10s", "how often to report", TS,
               heartbeat_interval_ms),
    CONFIG_KEY("MAX_CONNECTIONS", CONFIG_UINT, "1024", "concurrent streams", TS,
               max_connections),
    CONFIG_KEY("DEBUG", CONFIG_BOOL, "false", "verbose logging", TS, debug),
    CONFIG_KEY("LISTEN_ADDR", CONFIG_ADDR, "127.0.0.1:7443", "where to listen", TS, listen_addr),
    CONFIG_KEY("CONTROLLER_ADDR", CONFIG_ADDR, NULL, "controller endpoint", TS, controller_addr),
    {.name = "RESOURCES", .type = CONFIG_LIST, .help = "published resources",
     .item_keys = resource_keys},
    {.name = "FORWARDS", .type = CONFIG_LIST, .help = "local forwards", .item_keys = forward_keys},
    CONFIG_KEY("LOG_LEVEL", CONFIG_STRING, "info", NULL, TS, log_level),
};
#undef TS
#define SCHEMA_LEN (sizeof(schema) / sizeof(schema[0]))

#define DURATION_HINT "(use a number with a unit: ms, s, m, h, d; e.g. 10s, 24h)"

/* argc, argv from string literals: ARGS("--a", "b"). */
#define ARGS(...)                                                        \
    (int)(sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)), (char *[]) \
    {                                                                    \
        __VA_ARGS__                                                      \
    }
#define ENV(...) ((char *[]){__VA_ARGS__, NULL})
#define NO_ARGS 0, NULL

/* Every test runs inside its own directory, so files are named as a user
 * would name them ("conf.yaml") and messages can be compared whole. */
struct fixture {
    char *dir;
    char cwd[PATH_MAX];
};

static int
setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_non_null(getcwd(fx->cwd, sizeof(fx->cwd)));
    fx->dir = test_mkdtemp();
    assert_int_equal(chdir(fx->dir), 0);
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(chdir(fx->cwd), 0);
    test_rmtree(fx->dir);
    free(fx->dir);
    free(fx);
    log_clear_secrets();
    test_log_capture_stop();
    return 0;
}

static struct config *
load_ok(char *const *envp, int argc, char *const *argv)
{
    struct config *config = NULL;
    struct ztr_err err = {0};
    if (config_load(schema, SCHEMA_LEN, envp, argc, argv, &config, &err) != 0)
        fail_msg("config_load failed: %s", err.msg);
    assert_non_null(config);
    return config;
}

static void
expect_error(char *const *envp, int argc, char *const *argv, const char *want)
{
    struct config *config = NULL;
    struct ztr_err err = {0};
    assert_int_equal(config_load(schema, SCHEMA_LEN, envp, argc, argv, &config, &err), -1);
    assert_null(config);
    assert_int_equal(err.code, ZTR_E_CONFIG);
    assert_string_equal(err.msg, want);
}

static void
expect_error_containing(char *const *envp, int argc, char *const *argv, const char *part)
{
    struct config *config = NULL;
    struct ztr_err err = {0};
    assert_int_equal(config_load(schema, SCHEMA_LEN, envp, argc, argv, &config, &err), -1);
    assert_null(config);
    if (strstr(err.msg, part) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", err.msg, part);
}

/* ---- defaults and precedence --------------------------------------------- */

static void
test_defaults_apply_when_nothing_is_given(void **state)
{
    (void)state;
    struct config *config = load_ok(NULL, NO_ARGS);
    assert_string_equal(config_get(config, "HEARTBEAT_INTERVAL"), "10s");
    assert_int_equal(config_get_duration_ms(config, "HEARTBEAT_INTERVAL"), 10000);
    assert_int_equal(config_get_uint(config, "MAX_CONNECTIONS"), 1024);
    assert_false(config_get_bool(config, "DEBUG"));
    assert_string_equal(config_get(config, "LISTEN_ADDR"), "127.0.0.1:7443");
    assert_string_equal(config_origin(config, "HEARTBEAT_INTERVAL"), "default");
    assert_false(config_help_requested(config));
    config_free(config);
}

static void
test_keys_without_default_are_unset(void **state)
{
    (void)state;
    struct config *config = load_ok(ENV("UNRELATED=1"), NO_ARGS);
    assert_null(config_get(config, "TRUST_DOMAIN"));
    assert_false(config_is_set(config, "TRUST_DOMAIN"));
    assert_true(config_is_set(config, "LOG_LEVEL"));
    assert_string_equal(config_origin(config, "CONTROLLER_ADDR"), "unset");
    assert_int_equal(config_list_len(config, "RESOURCES"), 0);
    assert_string_equal(config_list_origin(config, "RESOURCES", 0), "unset");
    config_free(config);
}

static void
test_unknown_names_read_as_unset(void **state)
{
    (void)state;
    struct config *config = load_ok(NULL, NO_ARGS);
    assert_null(config_get(config, "NOPE"));
    assert_false(config_is_set(config, "NOPE"));
    assert_int_equal(config_get_duration_ms(config, "NOPE"), 0);
    assert_int_equal(config_get_uint(config, "NOPE"), 0);
    assert_false(config_get_bool(config, "NOPE"));
    assert_string_equal(config_origin(config, "NOPE"), "unset");
    assert_int_equal(config_list_len(config, "NOPE"), 0);
    assert_null(config_list_get(config, "NOPE", 0, "name"));
    assert_string_equal(config_list_origin(config, "NOPE", 0), "unset");
    /* Lookups are by canonical name only. */
    assert_null(config_get(config, "heartbeat_interval"));
    config_free(config);
}

static void
test_yaml_overrides_defaults_and_records_line(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "# connector\n"
                                 "trust_domain: example.org\n"
                                 "heartbeat_interval: 1h30m\n"
                                 "debug: yes\n");
    struct config *config = load_ok(NULL, ARGS("--config", "conf.yaml"));
    assert_string_equal(config_get(config, "TRUST_DOMAIN"), "example.org");
    assert_string_equal(config_origin(config, "TRUST_DOMAIN"), "conf.yaml:2");
    assert_int_equal(config_get_duration_ms(config, "HEARTBEAT_INTERVAL"), 5400000);
    assert_string_equal(config_origin(config, "HEARTBEAT_INTERVAL"), "conf.yaml:3");
    assert_true(config_get_bool(config, "DEBUG"));
    assert_string_equal(config_origin(config, "MAX_CONNECTIONS"), "default");
    config_free(config);
}

static void
test_env_overrides_yaml(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "trust_domain: from-file.org\n");
    struct config *config =
        load_ok(ENV("TRUST_DOMAIN=from-env.org"), ARGS("--config=conf.yaml"));
    assert_string_equal(config_get(config, "TRUST_DOMAIN"), "from-env.org");
    assert_string_equal(config_origin(config, "TRUST_DOMAIN"), "env");
    config_free(config);
}

static void
test_flags_override_env_in_both_spellings(void **state)
{
    (void)state;
    struct config *config = load_ok(ENV("TRUST_DOMAIN=env.org", "MAX_CONNECTIONS=5"),
                                    ARGS("--trust-domain", "flag.org", "--max-connections=7"));
    assert_string_equal(config_get(config, "TRUST_DOMAIN"), "flag.org");
    assert_string_equal(config_origin(config, "TRUST_DOMAIN"), "flag");
    assert_int_equal(config_get_uint(config, "MAX_CONNECTIONS"), 7);
    assert_string_equal(config_origin(config, "MAX_CONNECTIONS"), "flag");
    config_free(config);
}

static void
test_full_precedence_chain_peels_layer_by_layer(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "heartbeat_interval: 2s\n");
    char *env[] = {"HEARTBEAT_INTERVAL=3s", NULL};
    struct config *config =
        load_ok(env, ARGS("--config", "conf.yaml", "--heartbeat-interval", "4s"));
    assert_int_equal(config_get_duration_ms(config, "HEARTBEAT_INTERVAL"), 4000);
    config_free(config);
    config = load_ok(env, ARGS("--config", "conf.yaml"));
    assert_int_equal(config_get_duration_ms(config, "HEARTBEAT_INTERVAL"), 3000);
    config_free(config);
    config = load_ok(NULL, ARGS("--config", "conf.yaml"));
    assert_int_equal(config_get_duration_ms(config, "HEARTBEAT_INTERVAL"), 2000);
    config_free(config);
    config = load_ok(NULL, NO_ARGS);
    assert_int_equal(config_get_duration_ms(config, "HEARTBEAT_INTERVAL"), 10000);
    config_free(config);
}

static void
test_empty_env_value_means_unset(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "trust_domain: file.org\n");
    struct config *config =
        load_ok(ENV("TRUST_DOMAIN=", "HEARTBEAT_INTERVAL="), ARGS("--config", "conf.yaml"));
    assert_string_equal(config_get(config, "TRUST_DOMAIN"), "file.org");
    assert_string_equal(config_origin(config, "TRUST_DOMAIN"), "conf.yaml:1");
    assert_int_equal(config_get_duration_ms(config, "HEARTBEAT_INTERVAL"), 10000);
    config_free(config);
}

static void
test_env_names_match_exactly(void **state)
{
    (void)state;
    struct config *config = load_ok(
        ENV("TRUST_DOMAINX=a", "TRUST_DOMAIN_OLD=b", "trust_domain=c", "XTRUST_DOMAIN=d",
            "TRUST_DOMAIN"),
        NO_ARGS);
    assert_null(config_get(config, "TRUST_DOMAIN"));
    config_free(config);
}

static void
test_env_value_may_contain_equals_signs(void **state)
{
    (void)state;
    struct config *config = load_ok(ENV("TRUST_DOMAIN=a=b=c"), NO_ARGS);
    assert_string_equal(config_get(config, "TRUST_DOMAIN"), "a=b=c");
    config_free(config);
}

static void
test_later_flag_wins_over_earlier_one(void **state)
{
    (void)state;
    struct config *config =
        load_ok(NULL, ARGS("--trust-domain=first.org", "--trust-domain", "second.org"));
    assert_string_equal(config_get(config, "TRUST_DOMAIN"), "second.org");
    config_free(config);
}

static void
test_flag_value_may_be_empty_or_look_like_a_flag(void **state)
{
    (void)state;
    struct config *config = load_ok(NULL, ARGS("--trust-domain=", "--log-level", "--x"));
    assert_string_equal(config_get(config, "TRUST_DOMAIN"), "");
    assert_string_equal(config_get(config, "LOG_LEVEL"), "--x");
    config_free(config);
}

/* ---- flags --------------------------------------------------------------- */

static void
test_help_flags_are_recognised(void **state)
{
    (void)state;
    struct config *config = load_ok(NULL, ARGS("--help"));
    assert_true(config_help_requested(config));
    config_free(config);
    config = load_ok(NULL, ARGS("--debug", "true", "-h"));
    assert_true(config_help_requested(config));
    assert_true(config_get_bool(config, "DEBUG"));
    config_free(config);
}

static void
test_unknown_flag_is_named(void **state)
{
    (void)state;
    expect_error(NULL, ARGS("--bogus", "1"), "unknown flag --bogus");
    expect_error(NULL, ARGS("--bogus=1"), "unknown flag --bogus");
    /* Flags are the lower-case, dashed spelling only. */
    expect_error(NULL, ARGS("--trust_domain", "x"), "unknown flag --trust_domain");
    expect_error(NULL, ARGS("--TRUST-DOMAIN", "x"), "unknown flag --TRUST-DOMAIN");
    expect_error(NULL, ARGS("--trust-domainx", "x"), "unknown flag --trust-domainx");
    expect_error(NULL, ARGS("--trust", "x"), "unknown flag --trust");
}

static void
test_flag_without_value_is_an_error(void **state)
{
    (void)state;
    expect_error(NULL, ARGS("--trust-domain"), "flag --trust-domain needs a value");
    expect_error(NULL, ARGS("--config"), "flag --config needs a value");
}

static void
test_positional_argument_is_refused(void **state)
{
    (void)state;
    expect_error(NULL, ARGS("run"), "unexpected argument \"run\"");
    expect_error(NULL, ARGS("-v"), "unexpected argument \"-v\"");
    expect_error(NULL, ARGS("--trust-domain", "a.org", "extra"), "unexpected argument \"extra\"");
}

/* ---- YAML file ----------------------------------------------------------- */

static void
test_yaml_bad_duration_names_file_and_line(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "# ztr connector\n"
                                 "trust_domain: example.org\n"
                                 "\n"
                                 "heartbeat_interval: 10\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:4: heartbeat_interval: invalid duration \"10\" " DURATION_HINT);
}

static void
test_yaml_path_is_reported_as_given(void **state)
{
    (void)state;
    assert_int_equal(mkdir("etc", 0700), 0);
    test_write_file("etc/ztr.yaml", "max_connections: lots\n");
    expect_error(NULL, ARGS("--config=./etc/ztr.yaml"),
                 "./etc/ztr.yaml:1: max_connections: invalid number \"lots\"");
}

static void
test_yaml_syntax_error_gives_file_line_and_column(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "trust_domain: a\n  bad: b\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:2:6: mapping values are not allowed in this context");
    test_write_file("conf.yaml", "trust_domain: a\nresources: [1, 2\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:3:1: did not find expected ',' or ']' while parsing a flow sequence");
}

static void
test_yaml_second_document_is_refused(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "trust_domain: a\n---\ntrust_domain: b\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:3: only one YAML document is allowed");
    /* A lone document end marker is not a second document. */
    test_write_file("conf.yaml", "trust_domain: a\n...\n");
    struct config *config = load_ok(NULL, ARGS("--config", "conf.yaml"));
    assert_string_equal(config_get(config, "TRUST_DOMAIN"), "a");
    config_free(config);
}

static void
test_yaml_unknown_key_names_key_and_line(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "trust_domain: a\n\ntrust_domian: b\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"), "conf.yaml:3: unknown key \"trust_domian\"");
    /* YAML uses the lower-case name; env spelling is not a YAML key. */
    test_write_file("conf.yaml", "TRUST_DOMAIN: a\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"), "conf.yaml:1: unknown key \"TRUST_DOMAIN\"");
    test_write_file("conf.yaml", "trust-domain: a\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"), "conf.yaml:1: unknown key \"trust-domain\"");
}

static void
test_yaml_duplicate_key_is_refused(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "trust_domain: a\nlog_level: debug\ntrust_domain: b\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:3: duplicate key \"trust_domain\"");
    test_write_file("conf.yaml",
                    "resources: []\nresources:\n  - name: a\n    target: b:1\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"), "conf.yaml:2: duplicate key \"resources\"");
}

static void
test_yaml_root_must_be_a_mapping(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "\n- a\n- b\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:2: expected a mapping of keys to values");
    test_write_file("conf.yaml", "just a string\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:1: expected a mapping of keys to values");
}

static void
test_yaml_empty_or_comment_only_file_keeps_defaults(void **state)
{
    (void)state;
    test_write_file("empty.yaml", "");
    test_write_file("comments.yaml", "# nothing here yet\n\n# still nothing\n");
    struct config *config = load_ok(NULL, ARGS("--config", "empty.yaml"));
    assert_int_equal(config_get_duration_ms(config, "HEARTBEAT_INTERVAL"), 10000);
    config_free(config);
    config = load_ok(NULL, ARGS("--config", "comments.yaml"));
    assert_string_equal(config_origin(config, "LOG_LEVEL"), "default");
    config_free(config);
}

static void
test_yaml_non_scalar_value_for_plain_key_is_refused(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "trust_domain:\n  - a\n  - b\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:2: trust_domain: expected a scalar value");
    test_write_file("conf.yaml", "log_level: {a: b}\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:1: log_level: expected a scalar value");
}

static void
test_yaml_complex_key_is_refused(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "? [a, b]\n: c\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"), "conf.yaml:1: keys must be plain names");
}

static void
test_yaml_missing_file_is_reported(void **state)
{
    (void)state;
    expect_error_containing(NULL, ARGS("--config", "missing.yaml"),
                            "config: open missing.yaml: no such file or directory");
}

static void
test_yaml_directory_as_file_is_reported(void **state)
{
    (void)state;
    expect_error_containing(NULL, ARGS("--config", "."), "config: read .: not a regular file");
}

static void
test_yaml_scalars_keep_their_text(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "trust_domain: \"spaced out . org\"\n"
                                 "max_connections: 0042\n"
                                 "log_level: 'warn'\n"
                                 "listen_addr: \"[::1]:8443\"\n"
                                 "debug: on\n");
    struct config *config = load_ok(NULL, ARGS("--config", "conf.yaml"));
    assert_string_equal(config_get(config, "TRUST_DOMAIN"), "spaced out . org");
    assert_int_equal(config_get_uint(config, "MAX_CONNECTIONS"), 42);
    assert_string_equal(config_get(config, "LOG_LEVEL"), "warn");
    assert_string_equal(config_get(config, "LISTEN_ADDR"), "[::1]:8443");
    assert_true(config_get_bool(config, "DEBUG"));
    config_free(config);
}

static void
test_yaml_value_line_is_where_the_value_starts(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "log_level: info\n"
                                 "heartbeat_interval:\n"
                                 "  soon\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:3: heartbeat_interval: invalid duration \"soon\" " DURATION_HINT);
}

static void
test_yaml_value_over_size_limit_is_refused(void **state)
{
    (void)state;
    size_t len = CONFIG_VALUE_MAX + 1;
    char *text = malloc(len + 32);
    assert_non_null(text);
    memcpy(text, "trust_domain: ", 14);
    memset(text + 14, 'a', len);
    memcpy(text + 14 + len, "\n", 2);
    test_write_file("conf.yaml", text);
    free(text);
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:1: trust_domain: value longer than 4096 bytes");
}

/* ---- lists --------------------------------------------------------------- */

static void
test_yaml_list_items_are_read_with_origins(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "resources:\n"
                                 "  - name: web\n"
                                 "    target: 10.0.0.1:80\n"
                                 "  - target: 10.0.0.2:5432\n"
                                 "    name: db\n");
    struct config *config = load_ok(NULL, ARGS("--config", "conf.yaml"));
    assert_int_equal(config_list_len(config, "RESOURCES"), 2);
    assert_string_equal(config_list_get(config, "RESOURCES", 0, "name"), "web");
    assert_string_equal(config_list_get(config, "RESOURCES", 0, "target"), "10.0.0.1:80");
    assert_string_equal(config_list_get(config, "RESOURCES", 1, "name"), "db");
    assert_string_equal(config_list_get(config, "RESOURCES", 1, "target"), "10.0.0.2:5432");
    assert_string_equal(config_list_origin(config, "RESOURCES", 0), "conf.yaml:2");
    assert_string_equal(config_list_origin(config, "RESOURCES", 1), "conf.yaml:4");
    assert_null(config_list_get(config, "RESOURCES", 2, "name"));
    assert_null(config_list_get(config, "RESOURCES", 0, "port"));
    assert_string_equal(config_list_origin(config, "RESOURCES", 2), "unset");
    /* A list never shows up as a plain value. */
    assert_null(config_get(config, "RESOURCES"));
    config_free(config);
}

static void
test_yaml_list_of_three_fields(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "forwards:\n"
                                 "  - {listen: \"127.0.0.1:5432\", resource: db, proto: tcp}\n");
    struct config *config = load_ok(NULL, ARGS("--config", "conf.yaml"));
    assert_int_equal(config_list_len(config, "FORWARDS"), 1);
    assert_string_equal(config_list_get(config, "FORWARDS", 0, "listen"), "127.0.0.1:5432");
    assert_string_equal(config_list_get(config, "FORWARDS", 0, "resource"), "db");
    assert_string_equal(config_list_get(config, "FORWARDS", 0, "proto"), "tcp");
    config_free(config);
}

static void
test_yaml_empty_list_has_no_items(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "resources: []\n");
    struct config *config = load_ok(NULL, ARGS("--config", "conf.yaml"));
    assert_int_equal(config_list_len(config, "RESOURCES"), 0);
    config_free(config);
}

static void
test_yaml_list_item_missing_key_is_named(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "resources:\n"
                                 "  - name: web\n"
                                 "    target: a:1\n"
                                 "  - name: db\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:4: resources[1]: missing key \"target\"");
}

static void
test_yaml_list_item_unknown_key_is_named(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "resources:\n"
                                 "  - name: web\n"
                                 "    port: 80\n"
                                 "    target: a:1\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:3: resources[0]: unknown key \"port\"");
}

static void
test_yaml_list_item_duplicate_key_is_named(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "resources:\n"
                                 "  - name: web\n"
                                 "    target: a:1\n"
                                 "    name: www\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:4: resources[0]: duplicate key \"name\"");
}

static void
test_yaml_list_shape_errors(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "resources: web\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"), "conf.yaml:1: resources: expected a list");
    test_write_file("conf.yaml", "resources:\n  - web\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:2: resources[0]: expected a mapping");
    test_write_file("conf.yaml", "resources:\n  - name: [a]\n    target: b:1\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:2: resources[0].name: expected a scalar value");
    test_write_file("conf.yaml", "resources:\n  - [x]: a\n");
    expect_error(NULL, ARGS("--config", "conf.yaml"),
                 "conf.yaml:2: resources[0]: unknown key \"(not a scalar)\"");
}

static void
test_yaml_list_is_bounded(void **state)
{
    (void)state;
    char text[CONFIG_LIST_MAX * 40 + 64];
    size_t used = (size_t)snprintf(text, sizeof(text), "resources:\n");
    for (int i = 0; i <= CONFIG_LIST_MAX; i++)
        used += (size_t)snprintf(text + used, sizeof(text) - used,
                                 "  - {name: r%d, target: h:%d}\n", i, i + 1);
    test_write_file("conf.yaml", text);
    expect_error(NULL, ARGS("--config", "conf.yaml"), "conf.yaml:2: resources: more than 64 items");
}

static void
test_env_compact_list_form(void **state)
{
    (void)state;
    struct config *config =
        load_ok(ENV("RESOURCES=web=10.0.0.1:80,db=10.0.0.2:5432=x"), NO_ARGS);
    assert_int_equal(config_list_len(config, "RESOURCES"), 2);
    assert_string_equal(config_list_get(config, "RESOURCES", 0, "name"), "web");
    assert_string_equal(config_list_get(config, "RESOURCES", 0, "target"), "10.0.0.1:80");
    assert_string_equal(config_list_get(config, "RESOURCES", 1, "name"), "db");
    /* Only the first '=' splits; the rest belongs to the value. */
    assert_string_equal(config_list_get(config, "RESOURCES", 1, "target"), "10.0.0.2:5432=x");
    assert_string_equal(config_list_origin(config, "RESOURCES", 1), "env");
    config_free(config);
}

static void
test_env_list_replaces_yaml_list_and_flag_replaces_env(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "resources:\n  - {name: a, target: h:1}\n  - {name: b, target: h:2}\n");
    struct config *config =
        load_ok(ENV("RESOURCES=c=h:3"), ARGS("--config", "conf.yaml"));
    assert_int_equal(config_list_len(config, "RESOURCES"), 1);
    assert_string_equal(config_list_get(config, "RESOURCES", 0, "name"), "c");
    config_free(config);
    config = load_ok(ENV("RESOURCES=c=h:3"),
                     ARGS("--config", "conf.yaml", "--resources", "d=h:4,e=h:5"));
    assert_int_equal(config_list_len(config, "RESOURCES"), 2);
    assert_string_equal(config_list_get(config, "RESOURCES", 1, "target"), "h:5");
    assert_string_equal(config_list_origin(config, "RESOURCES", 0), "flag");
    config_free(config);
}

static void
test_compact_list_malformed_entries_are_shown(void **state)
{
    (void)state;
    expect_error(ENV("RESOURCES=web"), NO_ARGS,
                 "env: RESOURCES: expected name=target[,...], got \"web\"");
    expect_error(ENV("RESOURCES=a=b,=x"), NO_ARGS,
                 "env: RESOURCES: expected name=target[,...], got \"=x\"");
    expect_error(NULL, ARGS("--resources=a="),
                 "flag: --resources: expected name=target[,...], got \"a=\"");
}

static void
test_compact_list_is_bounded(void **state)
{
    (void)state;
    char text[CONFIG_LIST_MAX * 16 + 32];
    size_t used = (size_t)snprintf(text, sizeof(text), "RESOURCES=");
    for (int i = 0; i <= CONFIG_LIST_MAX; i++)
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%sr%d=h:1", i ? "," : "", i);
    expect_error(ENV(text), NO_ARGS, "env: RESOURCES: more than 64 items");
}

static void
test_lists_with_more_than_two_fields_are_yaml_only(void **state)
{
    (void)state;
    expect_error(ENV("FORWARDS=a=b"), NO_ARGS, "env: FORWARDS: can only be set in the YAML file");
    expect_error(NULL, ARGS("--forwards", "a=b"),
                 "flag: --forwards: can only be set in the YAML file");
}

/* ---- typed values from each origin --------------------------------------- */

static void
test_env_bad_duration_names_env_and_key(void **state)
{
    (void)state;
    expect_error(ENV("HEARTBEAT_INTERVAL=soon"), NO_ARGS,
                 "env: HEARTBEAT_INTERVAL: invalid duration \"soon\" " DURATION_HINT);
}

static void
test_flag_bad_duration_names_the_flag(void **state)
{
    (void)state;
    expect_error(NULL, ARGS("--heartbeat-interval", "5"),
                 "flag: --heartbeat-interval: invalid duration \"5\" " DURATION_HINT);
}

static void
test_bad_default_names_default(void **state)
{
    (void)state;
    static const struct config_key bad[] = {
        {.name = "TIMEOUT", .type = CONFIG_DURATION, .default_value = "30", .help = ""},
    };
    struct config *config = NULL;
    struct ztr_err err = {0};
    assert_int_equal(config_load(bad, 1, NULL, 0, NULL, &config, &err), -1);
    assert_null(config);
    assert_string_equal(err.msg, "default: TIMEOUT: invalid duration \"30\" " DURATION_HINT);
}

static void
test_uint_values(void **state)
{
    (void)state;
    struct config *config = load_ok(ENV("MAX_CONNECTIONS=0"), NO_ARGS);
    assert_int_equal(config_get_uint(config, "MAX_CONNECTIONS"), 0);
    config_free(config);
    config = load_ok(ENV("MAX_CONNECTIONS=18446744073709551615"), NO_ARGS);
    assert_true(config_get_uint(config, "MAX_CONNECTIONS") == UINT64_MAX);
    config_free(config);
    expect_error(ENV("MAX_CONNECTIONS=18446744073709551616"), NO_ARGS,
                 "env: MAX_CONNECTIONS: invalid number \"18446744073709551616\"");
    expect_error(ENV("MAX_CONNECTIONS=-1"), NO_ARGS, "env: MAX_CONNECTIONS: invalid number \"-1\"");
    expect_error(ENV("MAX_CONNECTIONS=12abc"), NO_ARGS,
                 "env: MAX_CONNECTIONS: invalid number \"12abc\"");
    expect_error(ENV("MAX_CONNECTIONS=0x10"), NO_ARGS,
                 "env: MAX_CONNECTIONS: invalid number \"0x10\"");
    expect_error(NULL, ARGS("--max-connections="), "flag: --max-connections: invalid number \"\"");
}

static void
test_uint_refuses_sign_and_whitespace(void **state)
{
    (void)state;
    /* strtoull would read " -5" as 2^64-5. */
    expect_error(NULL, ARGS("--max-connections", " -5"),
                 "flag: --max-connections: invalid number \" -5\"");
    expect_error(NULL, ARGS("--max-connections", "+5"),
                 "flag: --max-connections: invalid number \"+5\"");
    expect_error(NULL, ARGS("--max-connections", " 5"),
                 "flag: --max-connections: invalid number \" 5\"");
}

static void
test_bool_values(void **state)
{
    (void)state;
    static const char *const yes[] = {"true", "TRUE", "yes", "Yes", "on", "1"};
    static const char *const no[] = {"false", "False", "no", "NO", "off", "0"};
    char arg[32];
    for (size_t i = 0; i < 6; i++) {
        snprintf(arg, sizeof(arg), "--debug=%s", yes[i]);
        struct config *config = load_ok(NULL, 1, (char *[]){arg});
        assert_true(config_get_bool(config, "DEBUG"));
        config_free(config);
        snprintf(arg, sizeof(arg), "--debug=%s", no[i]);
        config = load_ok(ENV("DEBUG=true"), 1, (char *[]){arg});
        assert_false(config_get_bool(config, "DEBUG"));
        config_free(config);
    }
    expect_error(ENV("DEBUG=maybe"), NO_ARGS,
                 "env: DEBUG: invalid boolean \"maybe\" (use true or false)");
    expect_error(ENV("DEBUG=2"), NO_ARGS, "env: DEBUG: invalid boolean \"2\" (use true or false)");
}

static void
test_addr_values(void **state)
{
    (void)state;
    struct config *config = load_ok(ENV("CONTROLLER_ADDR=[2001:db8::1]:7443"), NO_ARGS);
    assert_string_equal(config_get(config, "CONTROLLER_ADDR"), "[2001:db8::1]:7443");
    config_free(config);
    expect_error(ENV("CONTROLLER_ADDR=controller"), NO_ARGS,
                 "env: CONTROLLER_ADDR: invalid address \"controller\" (use host:port, e.g. "
                 "127.0.0.1:7443)");
    expect_error_containing(NULL, ARGS("--listen-addr", "0.0.0.0:65536"),
                            "flag: --listen-addr: invalid address \"0.0.0.0:65536\"");
}

/* ---- duration parser ----------------------------------------------------- */

static void
expect_duration(const char *text, int64_t want)
{
    int64_t got = -1;
    if (config_parse_duration_ms(text, &got) != 0)
        fail_msg("duration \"%s\" rejected", text);
    if (got != want)
        fail_msg("duration \"%s\" = %lld, want %lld", text, (long long)got, (long long)want);
}

static void
expect_bad_duration(const char *text)
{
    int64_t got = 12345;
    if (config_parse_duration_ms(text, &got) == 0)
        fail_msg("duration \"%s\" accepted as %lld", text, (long long)got);
    assert_int_equal(got, 12345);
}

static void
test_duration_units_and_combinations(void **state)
{
    (void)state;
    expect_duration("0", 0);
    expect_duration("0s", 0);
    expect_duration("500ms", 500);
    expect_duration("10s", 10000);
    expect_duration("5m", 300000);
    expect_duration("24h", 86400000);
    expect_duration("7d", 604800000);
    expect_duration("1h30m", 5400000);
    expect_duration("1m30s500ms", 90500);
    expect_duration("2d12h", 216000000);
    expect_duration("1ms", 1);
    expect_duration("90s", 90000);
    expect_duration("007s", 7000);
}

static void
test_duration_rejects_bare_numbers_and_junk(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",    "10",   "00",   "1",    "-1s",  "+1s",  " 1s",  "1s ",  "1 s",  "1.5h",
        "1S",  "1H",   "1w",   "1y",   "1us",  "s",    "ms",   "h1",   "1hm",  "1h30",
        "1m3", "10ss", "10sm", "0x1s", "1e3s", "1_000ms", "∞",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_bad_duration(bad[i]);
}

static void
test_duration_overflow_is_rejected_not_wrapped(void **state)
{
    (void)state;
    /* Ten years is the documented ceiling. */
    expect_duration("3650d", 3650LL * 86400000);
    expect_duration("87600h", 3650LL * 86400000);
    expect_duration("315360000000ms", 315360000000LL);
    expect_bad_duration("3651d");
    expect_bad_duration("87601h");
    expect_bad_duration("315360000001ms");
    expect_bad_duration("3650d1ms");
    expect_bad_duration("3000d3000d");
    expect_bad_duration("9223372036854775807ms");
    expect_bad_duration("9223372036854775808ms");
    expect_bad_duration("99999999999999999999999999999s");
    expect_bad_duration("106751991167301d");
    expect_bad_duration("2562047788015216h");
}

/* ---- address parser ------------------------------------------------------ */

static void
expect_addr(const char *text, const char *host, uint16_t port)
{
    char got_host[256] = "unchanged";
    uint16_t got_port = 0;
    if (config_parse_addr(text, got_host, sizeof(got_host), &got_port) != 0)
        fail_msg("address \"%s\" rejected", text);
    assert_string_equal(got_host, host);
    assert_int_equal(got_port, port);
}

static void
expect_bad_addr(const char *text)
{
    char host[256] = "unchanged";
    uint16_t port = 7;
    if (config_parse_addr(text, host, sizeof(host), &port) == 0)
        fail_msg("address \"%s\" accepted as %s port %u", text, host, port);
    assert_int_equal(port, 7);
}

static void
test_addr_accepts_host_port_and_bracketed_ipv6(void **state)
{
    (void)state;
    expect_addr("127.0.0.1:7443", "127.0.0.1", 7443);
    expect_addr("controller.example.org:443", "controller.example.org", 443);
    expect_addr("h:1", "h", 1);
    expect_addr("localhost:65535", "localhost", 65535);
    expect_addr("[::1]:443", "::1", 443);
    expect_addr("[2001:db8::42]:8443", "2001:db8::42", 8443);
    expect_addr("[fe80::1%eth0]:80", "fe80::1%eth0", 80);
    expect_addr("[::]:1", "::", 1);
}

static void
test_addr_port_zero_means_kernel_chooses(void **state)
{
    (void)state;
    expect_addr("127.0.0.1:0", "127.0.0.1", 0);
    expect_addr("[::1]:0", "::1", 0);
}

static void
test_addr_rejects_bad_ports(void **state)
{
    (void)state;
    expect_bad_addr("host:000000");
    expect_bad_addr("host:65536");
    expect_bad_addr("host:99999");
    expect_bad_addr("host:100000");
    expect_bad_addr("host:4294967297");
    expect_bad_addr("host:-1");
    expect_bad_addr("host:+80");
    expect_bad_addr("host: 80");
    expect_bad_addr("host:80 ");
    expect_bad_addr("host:8o");
    expect_bad_addr("host:http");
    expect_bad_addr("host:");
    expect_bad_addr("[::1]:65536");
}

static void
test_addr_rejects_bad_shapes(void **state)
{
    (void)state;
    expect_bad_addr("");
    expect_bad_addr("host");
    expect_bad_addr(":443");
    expect_bad_addr("::1:443");
    expect_bad_addr("2001:db8::1:443");
    expect_bad_addr("[::1]");
    expect_bad_addr("[::1]443");
    expect_bad_addr("[::1]:");
    expect_bad_addr("[]:80");
    expect_bad_addr("[::1:443");
    expect_bad_addr("[::1]x:443");
}

static void
test_addr_respects_host_buffer_size(void **state)
{
    (void)state;
    char host[5];
    uint16_t port = 0;
    assert_int_equal(config_parse_addr("abcd:1", host, sizeof(host), &port), 0);
    assert_string_equal(host, "abcd");
    assert_int_equal(config_parse_addr("abcde:1", host, sizeof(host), &port), -1);
    assert_int_equal(config_parse_addr("[abcde]:1", host, sizeof(host), &port), -1);
}

/* ---- secrets ------------------------------------------------------------- */

static void
test_secret_is_registered_for_log_redaction(void **state)
{
    (void)state;
    test_log_capture_start();
    log_set_timestamps(0);
    struct config *config = load_ok(ENV("JOIN_TOKEN=tok-0123456789"), NO_ARGS);
    assert_string_equal(config_get(config, "JOIN_TOKEN"), "tok-0123456789");
    log_info("enrolling", "token=%s", config_get(config, "JOIN_TOKEN"));
    assert_null(strstr(test_log_captured(), "tok-0123456789"));
    assert_non_null(strstr(test_log_captured(), "token=[REDACTED]"));
    config_free(config);
    log_set_timestamps(1);
}

static void
test_secret_from_yaml_is_registered_too(void **state)
{
    (void)state;
    test_log_capture_start();
    log_set_timestamps(0);
    test_write_file("conf.yaml", "join_token: yaml-secret-1\n");
    struct config *config = load_ok(NULL, ARGS("--config", "conf.yaml"));
    config_free(config);
    log_info("yaml-secret-1", NULL);
    assert_string_equal(test_log_captured(), "level=info msg=\"[REDACTED]\"\n");
    log_set_timestamps(1);
}

/* Every local user can read a command line; a secret flag is refused,
 * naming the key and where to put it instead, without echoing the value. */
static void
test_secret_flag_is_refused_without_echoing_it(void **state)
{
    (void)state;
    const char *want = "flag --join-token: JOIN_TOKEN is a secret and is not accepted on the "
                       "command line (visible to every local user in ps); set JOIN_TOKEN in "
                       "the environment (systemd EnvironmentFile) or join_token in the YAML "
                       "file";
    expect_error(NULL, ARGS("--join-token", "flag-secret-2"), want);
    expect_error(NULL, ARGS("--join-token=flag-secret-2"), want);
    /* Refused even when the same secret is also set where it belongs. */
    expect_error(ENV("JOIN_TOKEN=env-secret"), ARGS("--join-token", "flag-secret-2"), want);
    struct config *config = NULL;
    struct ztr_err err = {0};
    assert_int_equal(config_load(schema, SCHEMA_LEN, NULL, ARGS("--join-token=flag-secret-2"),
                                 &config, &err),
                     -1);
    assert_null(strstr(err.msg, "flag-secret-2"));
}

/* ---- config_fail --------------------------------------------------------- */

static void
test_config_fail_formats_origin_key_and_reason(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "log_level: info\ntrust_domain: Example.ORG\n");
    struct config *config = load_ok(ENV("CONTROLLER_ADDR=c:1"),
                                    ARGS("--config", "conf.yaml", "--max-connections", "0"));
    struct ztr_err err = {0};
    assert_int_equal(config_fail(config, "TRUST_DOMAIN", &err, "must be lower case"), -1);
    assert_int_equal(err.code, ZTR_E_CONFIG);
    assert_string_equal(err.msg, "conf.yaml:2: trust_domain: must be lower case");
    config_fail(config, "CONTROLLER_ADDR", &err, "unreachable (%d)", 3);
    assert_string_equal(err.msg, "env: CONTROLLER_ADDR: unreachable (3)");
    config_fail(config, "MAX_CONNECTIONS", &err, "must be positive");
    assert_string_equal(err.msg, "flag: --max-connections: must be positive");
    config_fail(config, "HEARTBEAT_INTERVAL", &err, "too short");
    assert_string_equal(err.msg, "default: HEARTBEAT_INTERVAL: too short");
    config_fail(config, "JOIN_TOKEN", &err, "is required");
    assert_string_equal(err.msg, "JOIN_TOKEN: is required");
    config_free(config);
}

/* ---- help, schema limits, free ------------------------------------------- */

struct help_lines {
    int count;
    char text[16][512];
};

static void
collect_line(void *ctx, const char *line)
{
    struct help_lines *lines = ctx;
    assert_true(lines->count < 16);
    snprintf(lines->text[lines->count++], sizeof(lines->text[0]), "%s", line);
}

static void
test_help_lists_every_key_with_flag_name_and_default(void **state)
{
    (void)state;
    struct help_lines lines = {0};
    config_print_help(schema, SCHEMA_LEN, collect_line, &lines);
    assert_int_equal(lines.count, (int)SCHEMA_LEN);
    assert_non_null(strstr(lines.text[2], "--heartbeat-interval"));
    assert_non_null(strstr(lines.text[2], "HEARTBEAT_INTERVAL"));
    assert_non_null(strstr(lines.text[2], "how often to report (default 10s)"));
    assert_non_null(strstr(lines.text[0], "--trust-domain"));
    assert_null(strstr(lines.text[0], "default"));
    /* A key without help text still gets its line. */
    assert_non_null(strstr(lines.text[9], "--log-level"));
    assert_non_null(strstr(lines.text[9], "(default info)"));
}

/* The machine-readable schema (--print-schema, scripts/gen-docs.py): a
 * header, then every key with the spellings --help uses; a secret has no
 * flag, a list names its item keys, a key without help an empty column. */
static void
test_print_schema_lists_every_key_as_tab_separated_fields(void **state)
{
    (void)state;
    struct help_lines lines = {0};
    config_print_schema(schema, SCHEMA_LEN, collect_line, &lines);
    assert_int_equal(lines.count, (int)SCHEMA_LEN + 1);
    assert_string_equal(lines.text[0], "name\ttype\tdefault\tflag\tyaml\titem_keys\thelp");
    assert_string_equal(lines.text[1],
                        "TRUST_DOMAIN\tstring\t\t--trust-domain\ttrust_domain\t\tSPIFFE trust domain");
    assert_string_equal(lines.text[2],
                        "JOIN_TOKEN\tsecret\t\t\tjoin_token\t\tone-time enrolment token");
    assert_string_equal(lines.text[3], "HEARTBEAT_INTERVAL\tduration\t10s\t--heartbeat-interval\t"
                                       "heartbeat_interval\t\thow often to report");
    assert_string_equal(lines.text[8],
                        "RESOURCES\tlist\t\t--resources\tresources\tname,target\tpublished resources");
    assert_string_equal(lines.text[10], "LOG_LEVEL\tstring\tinfo\t--log-level\tlog_level\t\t");
}

static void
test_schema_with_oversized_name_is_refused(void **state)
{
    (void)state;
    static const struct config_key bad[] = {
        {.name = "A_VERY_LONG_NAME_THAT_GOES_ON_AND_ON_AND_ON_AND_ON_FAR_PAST_SIXTY",
         .type = CONFIG_STRING, .help = ""},
    };
    struct config *config = NULL;
    struct ztr_err err = {0};
    assert_int_equal(config_load(bad, 1, NULL, 0, NULL, &config, &err), -1);
    assert_null(config);
    assert_non_null(strstr(err.msg, "too large"));
}

static void
test_empty_schema_loads_and_rejects_every_flag(void **state)
{
    (void)state;
    struct config *config = NULL;
    struct ztr_err err = {0};
    assert_int_equal(config_load(schema, 0, ENV("TRUST_DOMAIN=x"), 0, NULL, &config, &err), 0);
    assert_null(config_get(config, "TRUST_DOMAIN"));
    config_free(config);
    config = NULL;
    assert_int_equal(config_load(schema, 0, NULL, 1, (char *[]){"--trust-domain=x"}, &config,
                                 &err),
                     -1);
    assert_string_equal(err.msg, "unknown flag --trust-domain");
    config_free(NULL);
}

/* ---- typed settings (config_fill) ----------------------------------------- */

static struct test_settings
fill_ok(const struct config *config)
{
    struct test_settings settings;
    struct ztr_err err = {0};
    memset(&settings, 0x5a, sizeof(settings)); /* every field must be written */
    if (config_fill(config, &settings, &err) != 0)
        fail_msg("config_fill failed: %s", err.msg);
    return settings;
}

static void
test_fill_writes_defaults_and_zero_values(void **state)
{
    (void)state;
    struct config *config = load_ok(NULL, NO_ARGS);
    struct test_settings s = fill_ok(config);
    assert_string_equal(s.trust_domain, "");
    assert_string_equal(s.join_token, "");
    assert_int_equal(s.heartbeat_interval_ms, 10000);
    assert_int_equal(s.max_connections, 1024);
    assert_false(s.debug);
    assert_string_equal(s.listen_addr, "127.0.0.1:7443");
    assert_string_equal(s.controller_addr, "");
    assert_string_equal(s.log_level, "info");
    config_free(config);
}

static void
test_fill_follows_precedence(void **state)
{
    (void)state;
    test_write_file("conf.yaml", "trust_domain: file.org\nheartbeat_interval: 1m\n"
                                 "debug: yes\nmax_connections: 7\n");
    struct config *config = load_ok(ENV("TRUST_DOMAIN=env.org", "MAX_CONNECTIONS=9"),
                                    ARGS("--config", "conf.yaml", "--max-connections=11",
                                         "--controller-addr", "[::1]:7443"));
    struct test_settings s = fill_ok(config);
    assert_string_equal(s.trust_domain, "env.org");
    assert_int_equal(s.heartbeat_interval_ms, 60000);
    assert_true(s.debug);
    assert_int_equal(s.max_connections, 11);
    assert_string_equal(s.controller_addr, "[::1]:7443");
    config_free(config);
}

static void
test_fill_refuses_a_string_longer_than_its_field(void **state)
{
    (void)state;
    struct test_settings s;
    struct ztr_err err = {0};
    /* 31 bytes fit trust_domain[32]; 32 do not. */
    struct config *config = load_ok(ENV("TRUST_DOMAIN=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), NO_ARGS);
    s = fill_ok(config);
    assert_int_equal(strlen(s.trust_domain), 31);
    config_free(config);
    test_write_file("conf.yaml", "log_level: verbose-please\n");
    config = load_ok(NULL, ARGS("--config", "conf.yaml"));
    assert_int_equal(config_fill(config, &s, &err), -1);
    assert_int_equal(err.code, ZTR_E_CONFIG);
    assert_string_equal(err.msg, "conf.yaml:1: log_level: longer than 7 bytes");
    config_free(config);
    config = load_ok(NULL, ARGS("--trust-domain", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"));
    assert_int_equal(config_fill(config, &s, &err), -1);
    assert_string_equal(err.msg, "flag: --trust-domain: longer than 31 bytes");
    config_free(config);
}

static void
test_fill_copies_secrets_and_wipe_clears_them(void **state)
{
    (void)state;
    test_log_capture_start();
    struct config *config = load_ok(ENV("JOIN_TOKEN=tok-supersecret-123"), NO_ARGS);
    struct test_settings s = fill_ok(config);
    config_free(config);
    assert_string_equal(s.join_token, "tok-supersecret-123");
    /* Still redacted after config_free: the logger keeps its own copy. */
    log_info("joined", "token=%s", s.join_token);
    assert_null(strstr(test_log_captured(), "tok-supersecret-123"));
    config_wipe_secrets(schema, SCHEMA_LEN, &s);
    for (size_t i = 0; i < sizeof(s.join_token); i++)
        assert_int_equal(s.join_token[i], 0);
    assert_string_equal(s.trust_domain, ""); /* other fields untouched */
    assert_string_equal(s.log_level, "info");
}

struct seconds_settings {
    int64_t ttl_s;
    int64_t ttl_ms;
};

static void
test_fill_duration_in_seconds(void **state)
{
    (void)state;
    static const struct config_key rows[] = {
        CONFIG_KEY("TTL", CONFIG_DURATION_S, "24h", "lifetime", struct seconds_settings, ttl_s),
        CONFIG_KEY("TTL_MS", CONFIG_DURATION, "1500ms", "", struct seconds_settings, ttl_ms),
    };
    struct config *config = NULL;
    struct ztr_err err = {0};
    assert_int_equal(config_load(rows, 2, ENV("TTL=1h30m"), NO_ARGS, &config, &err), 0);
    struct seconds_settings s = {0};
    assert_int_equal(config_fill(config, &s, &err), 0);
    assert_int_equal(s.ttl_s, 5400);
    assert_int_equal(s.ttl_ms, 1500);
    config_free(config);
    config = NULL;
    assert_int_equal(config_load(rows, 2, ENV("TTL=90"), NO_ARGS, &config, &err), -1);
    assert_string_equal(err.msg, "env: TTL: invalid duration \"90\" " DURATION_HINT);
}

struct narrow_settings {
    uint32_t count;
};

static void
test_schema_with_a_field_of_the_wrong_size_is_refused(void **state)
{
    (void)state;
    static const struct config_key bad[] = {
        CONFIG_KEY("COUNT", CONFIG_UINT, "1", "", struct narrow_settings, count),
    };
    struct config *config = NULL;
    struct ztr_err err = {0};
    assert_int_equal(config_load(bad, 1, NULL, NO_ARGS, &config, &err), -1);
    assert_null(config);
    assert_string_equal(err.msg, "schema: key COUNT: a 4-byte field cannot hold it");
}

static void
test_config_fail_without_a_config_names_the_key(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    assert_int_equal(config_fail(NULL, "NODE_NAME", &err, "not usable: %s", "x/y"), -1);
    assert_int_equal(err.code, ZTR_E_CONFIG);
    assert_string_equal(err.msg, "NODE_NAME: not usable: x/y");
}

#define CONFIG_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        CONFIG_TEST(test_defaults_apply_when_nothing_is_given),
        CONFIG_TEST(test_keys_without_default_are_unset),
        CONFIG_TEST(test_unknown_names_read_as_unset),
        CONFIG_TEST(test_yaml_overrides_defaults_and_records_line),
        CONFIG_TEST(test_env_overrides_yaml),
        CONFIG_TEST(test_flags_override_env_in_both_spellings),
        CONFIG_TEST(test_full_precedence_chain_peels_layer_by_layer),
        CONFIG_TEST(test_empty_env_value_means_unset),
        CONFIG_TEST(test_env_names_match_exactly),
        CONFIG_TEST(test_env_value_may_contain_equals_signs),
        CONFIG_TEST(test_later_flag_wins_over_earlier_one),
        CONFIG_TEST(test_flag_value_may_be_empty_or_look_like_a_flag),
        CONFIG_TEST(test_help_flags_are_recognised),
        CONFIG_TEST(test_unknown_flag_is_named),
        CONFIG_TEST(test_flag_without_value_is_an_error),
        CONFIG_TEST(test_positional_argument_is_refused),
        CONFIG_TEST(test_yaml_bad_duration_names_file_and_line),
        CONFIG_TEST(test_yaml_path_is_reported_as_given),
        CONFIG_TEST(test_yaml_syntax_error_gives_file_line_and_column),
        CONFIG_TEST(test_yaml_second_document_is_refused),
        CONFIG_TEST(test_yaml_unknown_key_names_key_and_line),
        CONFIG_TEST(test_yaml_duplicate_key_is_refused),
        CONFIG_TEST(test_yaml_root_must_be_a_mapping),
        CONFIG_TEST(test_yaml_empty_or_comment_only_file_keeps_defaults),
        CONFIG_TEST(test_yaml_non_scalar_value_for_plain_key_is_refused),
        CONFIG_TEST(test_yaml_complex_key_is_refused),
        CONFIG_TEST(test_yaml_missing_file_is_reported),
        CONFIG_TEST(test_yaml_directory_as_file_is_reported),
        CONFIG_TEST(test_yaml_scalars_keep_their_text),
        CONFIG_TEST(test_yaml_value_line_is_where_the_value_starts),
        CONFIG_TEST(test_yaml_value_over_size_limit_is_refused),
        CONFIG_TEST(test_yaml_list_items_are_read_with_origins),
        CONFIG_TEST(test_yaml_list_of_three_fields),
        CONFIG_TEST(test_yaml_empty_list_has_no_items),
        CONFIG_TEST(test_yaml_list_item_missing_key_is_named),
        CONFIG_TEST(test_yaml_list_item_unknown_key_is_named),
        CONFIG_TEST(test_yaml_list_item_duplicate_key_is_named),
        CONFIG_TEST(test_yaml_list_shape_errors),
        CONFIG_TEST(test_yaml_list_is_bounded),
        CONFIG_TEST(test_env_compact_list_form),
        CONFIG_TEST(test_env_list_replaces_yaml_list_and_flag_replaces_env),
        CONFIG_TEST(test_compact_list_malformed_entries_are_shown),
        CONFIG_TEST(test_compact_list_is_bounded),
        CONFIG_TEST(test_lists_with_more_than_two_fields_are_yaml_only),
        CONFIG_TEST(test_env_bad_duration_names_env_and_key),
        CONFIG_TEST(test_flag_bad_duration_names_the_flag),
        CONFIG_TEST(test_bad_default_names_default),
        CONFIG_TEST(test_uint_values),
        CONFIG_TEST(test_uint_refuses_sign_and_whitespace),
        CONFIG_TEST(test_bool_values),
        CONFIG_TEST(test_addr_values),
        CONFIG_TEST(test_duration_units_and_combinations),
        CONFIG_TEST(test_duration_rejects_bare_numbers_and_junk),
        CONFIG_TEST(test_duration_overflow_is_rejected_not_wrapped),
        CONFIG_TEST(test_addr_accepts_host_port_and_bracketed_ipv6),
        CONFIG_TEST(test_addr_port_zero_means_kernel_chooses),
        CONFIG_TEST(test_addr_rejects_bad_ports),
        CONFIG_TEST(test_addr_rejects_bad_shapes),
        CONFIG_TEST(test_addr_respects_host_buffer_size),
        CONFIG_TEST(test_secret_is_registered_for_log_redaction),
        CONFIG_TEST(test_secret_from_yaml_is_registered_too),
        CONFIG_TEST(test_secret_flag_is_refused_without_echoing_it),
        CONFIG_TEST(test_config_fail_formats_origin_key_and_reason),
        CONFIG_TEST(test_help_lists_every_key_with_flag_name_and_default),
        CONFIG_TEST(test_print_schema_lists_every_key_as_tab_separated_fields),
        CONFIG_TEST(test_schema_with_oversized_name_is_refused),
        CONFIG_TEST(test_empty_schema_loads_and_rejects_every_flag),
        CONFIG_TEST(test_fill_writes_defaults_and_zero_values),
        CONFIG_TEST(test_fill_follows_precedence),
        CONFIG_TEST(test_fill_refuses_a_string_longer_than_its_field),
        CONFIG_TEST(test_fill_copies_secrets_and_wipe_clears_them),
        CONFIG_TEST(test_fill_duration_in_seconds),
        CONFIG_TEST(test_schema_with_a_field_of_the_wrong_size_is_refused),
        CONFIG_TEST(test_config_fail_without_a_config_names_the_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
