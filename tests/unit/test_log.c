/* Log line format, levels, sinks, escaping and secret redaction. */
#include "tests/unit/support.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sys/stat.h>

#include "base/log.h"

static int
setup(void **state)
{
    (void)state;
    log_set_timestamps(0);
    log_set_level(LOG_INFO);
    test_log_capture_start();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    test_log_capture_stop();
    log_clear_secrets();
    log_set_level(LOG_INFO);
    log_set_timestamps(1);
    log_set_format(LOG_FORMAT_LOGFMT);
    log_set_journal_priority(false);
    return 0;
}

/* The captured text holds exactly one line; returns it without '\n'. */
static const char *
only_line(char *buf, size_t cap)
{
    const char *text = test_log_captured();
    const char *nl = strchr(text, '\n');
    assert_non_null(nl);
    assert_string_equal(nl + 1, "");
    size_t len = (size_t)(nl - text);
    assert_true(len < cap);
    memcpy(buf, text, len);
    buf[len] = '\0';
    return buf;
}

static size_t
count_lines(void)
{
    size_t n = 0;
    for (const char *p = test_log_captured(); *p != '\0'; p++)
        n += *p == '\n';
    return n;
}

/* ---- format ---------------------------------------------------------- */

static void
test_line_has_level_quoted_msg_and_kv_tail(void **state)
{
    (void)state;
    char line[LOG_LINE_MAX];
    log_info("listening", "addr=%s port=%d", "127.0.0.1", 7443);
    assert_string_equal(only_line(line, sizeof(line)),
                        "level=info msg=\"listening\" addr=127.0.0.1 port=7443");
}

static void
test_null_kv_leaves_no_trailing_space(void **state)
{
    (void)state;
    log_event(LOG_WARN, "no tail", NULL);
    log_error("also none", NULL);
    assert_string_equal(test_log_captured(), "level=warn msg=\"no tail\"\n"
                                             "level=error msg=\"also none\"\n");
}

static void
test_each_level_has_its_name(void **state)
{
    (void)state;
    log_set_level(LOG_DEBUG);
    log_debug("d", "n=%d", 1);
    log_info("i", "n=%d", 2);
    log_warn("w", "n=%d", 3);
    log_error("e", "n=%d", 4);
    assert_string_equal(test_log_captured(), "level=debug msg=\"d\" n=1\n"
                                             "level=info msg=\"i\" n=2\n"
                                             "level=warn msg=\"w\" n=3\n"
                                             "level=error msg=\"e\" n=4\n");
}

static void
test_timestamp_prefix_is_utc_iso8601_with_millis(void **state)
{
    (void)state;
    log_set_timestamps(1);
    time_t before = time(NULL);
    log_info("stamped", "%s", "k=v");
    time_t after = time(NULL);
    char line[LOG_LINE_MAX];
    only_line(line, sizeof(line));
    /* ts=2024-05-01T12:34:56.789Z level=... */
    static const char pattern[] = "ts=dddd-dd-ddTdd:dd:dd.dddZ ";
    assert_true(strlen(line) > sizeof(pattern));
    for (size_t i = 0; i < sizeof(pattern) - 1; i++) {
        if (pattern[i] == 'd')
            assert_in_range(line[i], '0', '9');
        else
            assert_int_equal(line[i], pattern[i]);
    }
    assert_string_equal(line + sizeof(pattern) - 1, "level=info msg=\"stamped\" k=v");
    struct tm tm = {0};
    assert_int_equal(sscanf(line + 3, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec),
                     6);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t stamped = timegm(&tm);
    assert_in_range(stamped, before - 1, after + 1);
}

static void
test_disabling_timestamps_drops_ts_field(void **state)
{
    (void)state;
    log_info("plain", NULL);
    assert_null(strstr(test_log_captured(), "ts="));
    assert_int_equal(strncmp(test_log_captured(), "level=", 6), 0);
}

/* ---- levels ------------------------------------------------------------ */

static void
test_default_info_level_drops_debug(void **state)
{
    (void)state;
    log_debug("hidden", NULL);
    assert_string_equal(test_log_captured(), "");
    log_info("shown", NULL);
    assert_int_equal(count_lines(), 1);
}

static void
test_warn_level_drops_info_and_keeps_error(void **state)
{
    (void)state;
    log_set_level(LOG_WARN);
    log_debug("a", NULL);
    log_info("b", NULL);
    log_warn("c", NULL);
    log_error("d", NULL);
    assert_string_equal(test_log_captured(), "level=warn msg=\"c\"\nlevel=error msg=\"d\"\n");
}

static void
test_level_names_parse(void **state)
{
    (void)state;
    enum log_level level = LOG_ERROR;
    assert_int_equal(log_level_from_name("debug", &level), 0);
    assert_int_equal(level, LOG_DEBUG);
    assert_int_equal(log_level_from_name("info", &level), 0);
    assert_int_equal(level, LOG_INFO);
    assert_int_equal(log_level_from_name("warn", &level), 0);
    assert_int_equal(level, LOG_WARN);
    assert_int_equal(log_level_from_name("error", &level), 0);
    assert_int_equal(level, LOG_ERROR);
}

static void
test_unknown_level_name_is_refused_and_leaves_output_alone(void **state)
{
    (void)state;
    enum log_level level = LOG_WARN;
    assert_int_equal(log_level_from_name("verbose", &level), -1);
    assert_int_equal(log_level_from_name("", &level), -1);
    assert_int_equal(log_level_from_name("warning", &level), -1);
    assert_int_equal(log_level_from_name("info ", &level), -1);
    assert_int_equal(level, LOG_WARN);
}

/* ---- sinks ------------------------------------------------------------- */

struct sink_record {
    int calls;
    enum log_level level;
    char line[LOG_LINE_MAX];
};

static void
record_sink(void *ctx, enum log_level level, const char *line)
{
    struct sink_record *rec = ctx;
    rec->calls++;
    rec->level = level;
    snprintf(rec->line, sizeof(rec->line), "%s", line);
}

static void
test_sink_receives_context_level_and_line_without_newline(void **state)
{
    (void)state;
    struct sink_record rec = {0};
    log_set_sink(record_sink, &rec);
    log_warn("careful", "n=%d", 5);
    assert_int_equal(rec.calls, 1);
    assert_int_equal(rec.level, LOG_WARN);
    assert_string_equal(rec.line, "level=warn msg=\"careful\" n=5");
    assert_null(strchr(rec.line, '\n'));
}

static void
test_reset_sink_writes_one_line_to_stderr(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char *path = test_path(dir, "stderr.txt");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    log_reset_sink();
    log_error("to stderr", "code=%d", 9);
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    close(fd);
    char *text = test_read_file(path, NULL);
    assert_string_equal(text, "level=error msg=\"to stderr\" code=9\n");
    assert_string_equal(test_log_captured(), "");
    free(text);
    free(path);
    test_rmtree(dir);
    free(dir);
}

/* ---- escaping ---------------------------------------------------------- */

static void
test_quotes_and_backslashes_in_msg_are_escaped(void **state)
{
    (void)state;
    char line[LOG_LINE_MAX];
    log_info("say \"hi\" C:\\dir", NULL);
    assert_string_equal(only_line(line, sizeof(line)),
                        "level=info msg=\"say \\\"hi\\\" C:\\\\dir\"");
}

static void
test_control_characters_in_msg_keep_event_on_one_line(void **state)
{
    (void)state;
    char line[LOG_LINE_MAX];
    log_info("a\nb\rc\td\x01" "e\x1f" "f\x7fg", NULL);
    assert_string_equal(only_line(line, sizeof(line)), "level=info msg=\"a b c d?e?f?g\"");
    assert_int_equal(count_lines(), 1);
}

static void
test_forged_second_event_in_kv_stays_on_one_line(void **state)
{
    (void)state;
    char line[LOG_LINE_MAX];
    /* A peer-controlled value must not start a fake log line, nor fake
     * fields on this one: it stays the one value of name=. */
    log_info("peer", "name=%s", "x\nlevel=error msg=\"forged\"");
    assert_int_equal(count_lines(), 1);
    assert_string_equal(only_line(line, sizeof(line)),
                        "level=info msg=\"peer\" name=\"x level=error msg=\\\"forged\\\"\"");
}

static void
test_quote_in_quoted_value_cannot_close_the_field(void **state)
{
    (void)state;
    char line[LOG_LINE_MAX];
    log_warn("enrollment denied", "name=\"%s\" peer=%s", "a\" role=controller x=\"",
             "127.0.0.1:9");
    assert_string_equal(only_line(line, sizeof(line)),
                        "level=warn msg=\"enrollment denied\" "
                        "name=\"a\\\" role=controller x=\\\"\" peer=127.0.0.1:9");
}

static void
test_backslash_cannot_eat_the_closing_quote(void **state)
{
    (void)state;
    char line[LOG_LINE_MAX];
    log_info("m", "reason=\"%s\" next=%d", "ends in \\", 7);
    assert_string_equal(only_line(line, sizeof(line)),
                        "level=info msg=\"m\" reason=\"ends in \\\\\" next=7");
}

static void
test_bare_value_with_space_or_equals_is_quoted(void **state)
{
    (void)state;
    char line[LOG_LINE_MAX];
    log_info("m", "node=%s spiffe_id=%s role=%s", "dc1 role=controller",
             "spiffe://example.org/tunneler/t1", "a=b");
    assert_string_equal(only_line(line, sizeof(line)),
                        "level=info msg=\"m\" node=\"dc1 role=controller\" "
                        "spiffe_id=spiffe://example.org/tunneler/t1 role=\"a=b\"");
}

static void
test_plain_values_are_written_as_before(void **state)
{
    (void)state;
    char line[LOG_LINE_MAX];
    /* Every conversion the daemons use, with nothing to escape: the line is
     * exactly what printf would have written. */
    log_info("m", "a=%s b=%d c=%u d=%zu e=%lld f=\"%s\" g=%.3s h=%s%s i=%x j=%5.1f k=%%",
             "x", -3, 4u, (size_t)5, -6LL, "two words", "abcdef", "p", "q", 255u, 2.25);
    assert_string_equal(only_line(line, sizeof(line)),
                        "level=info msg=\"m\" a=x b=-3 c=4 d=5 e=-6 f=\"two words\" g=abc "
                        "h=pq i=ff j=  2.2 k=%");
    test_log_capture_start();
    log_info("m", "v=%s", "");
    assert_string_equal(only_line(line, sizeof(line)), "level=info msg=\"m\" v=");
}

static void
test_format_text_itself_is_trusted(void **state)
{
    (void)state;
    char line[LOG_LINE_MAX];
    /* A conversion that is not a key's value (here a field built by the
     * caller) is written as given. */
    log_info("m", "reason=\"%s\"%s%s", "r", " extra=", "1");
    assert_string_equal(only_line(line, sizeof(line)), "level=info msg=\"m\" reason=\"r\" extra=1");
}

static void
test_quoted_bare_value_at_line_end_stays_bounded_and_closed(void **state)
{
    (void)state;
    char *value = malloc(LOG_LINE_MAX * 2);
    assert_non_null(value);
    for (size_t i = 0; i < LOG_LINE_MAX * 2 - 1; i++)
        value[i] = i % 2 ? '"' : ' ';
    value[LOG_LINE_MAX * 2 - 1] = '\0';
    log_info("m", "v=%s", value);
    const char *text = test_log_captured();
    size_t len = strlen(text) - 1;
    assert_int_equal(count_lines(), 1);
    assert_true(len < LOG_LINE_MAX);
    assert_int_equal(text[len - 1], '"');
    free(value);
}

static void
test_secret_cut_by_precision_leaves_no_prefix(void **state)
{
    (void)state;
    assert_int_equal(log_add_secret("SECRETVALUE"), 0);
    log_info("m", "v=%.9s", "xxSECRETVALUE");
    assert_null(strstr(test_log_captured(), "SECR"));
    /* A value the precision did not shorten is not cut: its last byte
     * stays, even when a secret begins with it. */
    test_log_capture_start();
    char line[LOG_LINE_MAX];
    log_info("m", "v=%.20s", "xxS");
    assert_string_equal(only_line(line, sizeof(line)), "level=info msg=\"m\" v=xxS");
}

static void
test_utf8_passes_through_unchanged(void **state)
{
    (void)state;
    char line[LOG_LINE_MAX];
    log_info("caf\xc3\xa9", "who=%s", "\xe2\x9c\x93");
    assert_string_equal(only_line(line, sizeof(line)),
                        "level=info msg=\"caf\xc3\xa9\" who=\xe2\x9c\x93");
}

/* A line is UTF-8 (journald keeps anything else as a blob journalctl does
 * not show): a byte outside well-formed UTF-8 and a C1 control become '?',
 * in the message, a quoted value and a bare one alike. */
static void
test_invalid_utf8_and_c1_controls_become_question_marks(void **state)
{
    (void)state;
    char line[LOG_LINE_MAX];
    log_info("m\xff", "name=%s q=\"%s\" ok=%s", "a\xfe\xc0\xa2\xed\xa0\x80z", "G\xc2\x85T\xe2\x9c",
             "\xe2\x9c\x93\xf0\x9f\x94\x92");
    assert_string_equal(only_line(line, sizeof(line)),
                        "level=info msg=\"m?\" name=a??????z q=\"G?T??\" ok=\xe2\x9c\x93\xf0\x9f\x94\x92");
}

static void
test_a_line_cut_at_its_limit_never_splits_a_utf8_sequence(void **state)
{
    (void)state;
    /* Three-byte characters from an odd offset: the cut falls inside one. */
    char msg[LOG_LINE_MAX * 2];
    size_t len = 0;
    msg[len++] = 'x';
    while (len + 3 < sizeof(msg)) {
        memcpy(msg + len, "\xe2\x9c\x93", 3);
        len += 3;
    }
    msg[len] = '\0';
    log_info(msg, NULL);
    const char *text = test_log_captured();
    const char *body = text + strlen("level=info msg=\"x");
    size_t checks = 0;
    while (memcmp(body, "\xe2\x9c\x93", 3) == 0) {
        body += 3;
        checks++;
    }
    assert_true(checks > LOG_LINE_MAX / 3 - 20);
    assert_true(strcmp(body, "\"\n") == 0 || strcmp(body, "\n") == 0);
}

static void
test_a_secret_inside_a_utf8_sequence_is_still_masked(void **state)
{
    (void)state;
    assert_int_equal(log_add_secret("\x9c\x93SECRETVALUE"), 0);
    char line[LOG_LINE_MAX];
    log_info("m", "v=%s", "\xe2\x9c\x93SECRETVALUE");
    assert_string_equal(only_line(line, sizeof(line)), "level=info msg=\"m\" v=?[REDACTED]");
}

static void
test_oversized_event_is_truncated_to_one_bounded_line(void **state)
{
    (void)state;
    size_t big = LOG_LINE_MAX * 3;
    char *msg = malloc(big);
    assert_non_null(msg);
    memset(msg, 'm', big - 1);
    msg[big - 1] = '\0';
    log_info(msg, "tail=%s", msg);
    const char *text = test_log_captured();
    assert_int_equal(count_lines(), 1);
    assert_true(strlen(text) - 1 < LOG_LINE_MAX);
    assert_int_equal(strncmp(text, "level=info msg=\"mmm", 19), 0);
    free(msg);
}

static void
test_oversized_escaped_message_never_splits_an_escape(void **state)
{
    (void)state;
    /* Every character doubles; the line must still end on whole pairs. */
    char msg[LOG_LINE_MAX * 2];
    memset(msg, '"', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    log_info(msg, NULL);
    const char *text = test_log_captured();
    size_t len = strlen(text) - 1;
    assert_true(len < LOG_LINE_MAX);
    const char *body = text + strlen("level=info msg=\"");
    size_t pairs = 0;
    while (body[0] == '\\' && body[1] == '"') {
        body += 2;
        pairs++;
    }
    assert_true(pairs > LOG_LINE_MAX / 2 - 20);
    /* What is left is at most the closing quote. */
    assert_true(strcmp(body, "\"\n") == 0 || strcmp(body, "\n") == 0);
}

/* ---- secrets ----------------------------------------------------------- */

static void
test_short_or_null_secrets_are_refused(void **state)
{
    (void)state;
    assert_int_equal(log_add_secret(NULL), -1);
    assert_int_equal(log_add_secret(""), -1);
    assert_int_equal(log_add_secret("abc"), -1);
    assert_int_equal(log_add_secret("abcd"), 0);
    char line[LOG_LINE_MAX];
    log_info("abc and abcd", NULL);
    assert_string_equal(only_line(line, sizeof(line)), "level=info msg=\"abc and [REDACTED]\"");
}

static void
test_secret_in_msg_and_kv_is_redacted_everywhere(void **state)
{
    (void)state;
    assert_int_equal(log_add_secret("hunter22"), 0);
    char line[LOG_LINE_MAX];
    log_info("token hunter22 rejected", "token=hunter22 again=hunter22hunter22");
    assert_string_equal(only_line(line, sizeof(line)),
                        "level=info msg=\"token [REDACTED] rejected\" token=[REDACTED] "
                        "again=[REDACTED][REDACTED]");
    assert_null(strstr(line, "hunter22"));
}

static void
test_logger_keeps_its_own_copy_of_secret(void **state)
{
    (void)state;
    char secret[] = "join-token-42";
    assert_int_equal(log_add_secret(secret), 0);
    memset(secret, 'z', sizeof(secret) - 1);
    log_info("join-token-42", NULL);
    assert_null(strstr(test_log_captured(), "join-token-42"));
    assert_non_null(strstr(test_log_captured(), "[REDACTED]"));
}

static void
test_cleared_secrets_are_no_longer_redacted(void **state)
{
    (void)state;
    assert_int_equal(log_add_secret("ephemeral"), 0);
    log_clear_secrets();
    char line[LOG_LINE_MAX];
    log_info("ephemeral", NULL);
    assert_string_equal(only_line(line, sizeof(line)), "level=info msg=\"ephemeral\"");
}

static void
test_secret_table_is_bounded_and_duplicates_are_free(void **state)
{
    (void)state;
    char secret[32];
    for (int i = 0; i < LOG_SECRETS_MAX; i++) {
        snprintf(secret, sizeof(secret), "secret-%02d", i);
        assert_int_equal(log_add_secret(secret), 0);
    }
    /* Re-adding a known one does not need a slot. */
    assert_int_equal(log_add_secret("secret-03"), 0);
    assert_int_equal(log_add_secret("secret-99"), -1);
    log_info("secret-00 secret-07 secret-99", NULL);
    char line[LOG_LINE_MAX];
    assert_string_equal(only_line(line, sizeof(line)),
                        "level=info msg=\"[REDACTED] [REDACTED] secret-99\"");
    log_clear_secrets();
    assert_int_equal(log_add_secret("secret-99"), 0);
}

static void
test_secret_inside_mask_text_does_not_loop(void **state)
{
    (void)state;
    /* Each of these occurs inside "[REDACTED]" itself. */
    static const char *const secrets[] = {"REDACTED", "DACT", "[RED", "TED]", "[REDACTED]"};
    char line[LOG_LINE_MAX];
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        test_log_capture_start();
        assert_int_equal(log_add_secret(secrets[i]), 0);
        log_info(secrets[i], "k=%s", secrets[i]);
        assert_string_equal(only_line(line, sizeof(line)),
                            "level=info msg=\"[REDACTED]\" k=[REDACTED]");
        log_clear_secrets();
    }
}

static void
test_secret_with_quote_is_redacted_before_escaping(void **state)
{
    (void)state;
    /* Escaping turns pa"ss into pa\"ss; that must not slip past. */
    assert_int_equal(log_add_secret("pa\"ss\\word"), 0);
    char line[LOG_LINE_MAX];
    log_info("login pa\"ss\\word failed", "user=bob");
    assert_string_equal(only_line(line, sizeof(line)),
                        "level=info msg=\"login [REDACTED] failed\" user=bob");
    assert_null(strstr(line, "ss\\\\word"));
}

static void
test_secret_with_tab_is_redacted_before_control_mapping(void **state)
{
    (void)state;
    assert_int_equal(log_add_secret("tab\tsecret"), 0);
    char line[LOG_LINE_MAX];
    log_info("x", "v=%s", "tab\tsecret");
    assert_string_equal(only_line(line, sizeof(line)), "level=info msg=\"x\" v=[REDACTED]");
}

static void
test_overlapping_secrets_prefer_the_longer_one(void **state)
{
    (void)state;
    assert_int_equal(log_add_secret("abcd"), 0);
    assert_int_equal(log_add_secret("abcdefgh"), 0);
    char line[LOG_LINE_MAX];
    log_info("abcdefgh", NULL);
    assert_string_equal(only_line(line, sizeof(line)), "level=info msg=\"[REDACTED]\"");
}

/* A secret cut by the line limit must not leave its first bytes behind. */
static void
test_secret_cut_at_line_end_leaves_no_prefix(void **state)
{
    (void)state;
    static const char secret[] = "TOPSECRET-0123456789abcdefghij";
    assert_int_equal(log_add_secret(secret), 0);
    char msg[LOG_LINE_MAX + 64];
    for (size_t pad = LOG_LINE_MAX - 80; pad < LOG_LINE_MAX; pad++) {
        memset(msg, '.', pad);
        memcpy(msg + pad, secret, sizeof(secret));
        test_log_capture_start();
        log_info(msg, NULL);
        log_info("m", "k=%s", msg);
        const char *text = test_log_captured();
        if (strstr(text, "TOPS") != NULL)
            fail_msg("pad %zu: secret prefix leaked: ...%s", pad, text + strlen(text) - 40);
        assert_int_equal(count_lines(), 2);
    }
}

/* Secrets much longer than the line: only the mask or nothing appears. */
static void
test_secret_longer_than_line_is_never_partly_shown(void **state)
{
    (void)state;
    size_t len = LOG_LINE_MAX + 100;
    char *secret = malloc(len + 1);
    assert_non_null(secret);
    for (size_t i = 0; i < len; i++)
        secret[i] = (char)('A' + i % 26);
    secret[len] = '\0';
    assert_int_equal(log_add_secret(secret), 0);
    log_info("x", "k=%s", secret);
    log_info(secret, NULL);
    assert_null(strstr(test_log_captured(), "ABCD"));
    assert_int_equal(count_lines(), 2);
    free(secret);
}

static void
test_many_short_secrets_expanding_past_line_end_stay_bounded(void **state)
{
    (void)state;
    /* Each 4-byte secret grows to a 10-byte mask. */
    assert_int_equal(log_add_secret("k3y!"), 0);
    char msg[500 * 4 + 1];
    for (size_t i = 0; i < 500; i++)
        memcpy(msg + i * 4, "k3y!", 4);
    msg[sizeof(msg) - 1] = '\0';
    log_info("m", "v=%s", msg);
    log_info(msg, NULL);
    const char *text = test_log_captured();
    assert_int_equal(count_lines(), 2);
    assert_null(strstr(text, "k3y"));
    const char *second = strchr(text, '\n') + 1;
    assert_true((size_t)(strchr(second, '\n') - second) < LOG_LINE_MAX);
    assert_true((size_t)(strchr(text, '\n') - text) < LOG_LINE_MAX);
}

static uint64_t
next_rand(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* Random texts over a tiny alphabet, so secrets overlap, repeat and touch
 * the line limit: no registered secret may ever reach the sink. */
static void
test_random_lines_never_contain_a_registered_secret(void **state)
{
    (void)state;
    static const char alphabet[] = "abcx";
    uint64_t rng = 0x1234567887654321ULL;
    char *text = malloc(LOG_LINE_MAX * 2);
    assert_non_null(text);
    for (int round = 0; round < 400; round++) {
        char secrets[3][12];
        log_clear_secrets();
        for (int s = 0; s < 3; s++) {
            size_t len = 4 + next_rand(&rng) % 7;
            for (size_t i = 0; i < len; i++)
                secrets[s][i] = alphabet[next_rand(&rng) % 3]; /* never 'x' */
            secrets[s][len] = '\0';
            assert_int_equal(log_add_secret(secrets[s]), 0);
        }
        size_t len = next_rand(&rng) % (LOG_LINE_MAX * 2 - 1);
        for (size_t i = 0; i < len; i++)
            text[i] = alphabet[next_rand(&rng) % 4];
        text[len] = '\0';
        test_log_capture_start();
        if (round % 2)
            log_info(text, NULL);
        else
            log_info("r", "v=%s", text);
        const char *out = test_log_captured();
        for (int s = 0; s < 3; s++)
            if (strstr(out, secrets[s]) != NULL)
                fail_msg("round %d: secret \"%s\" in %s", round, secrets[s], out);
        assert_int_equal(count_lines(), 1);
        assert_true(strlen(out) <= LOG_LINE_MAX);
    }
    free(text);
}

/* A flood through the limiter writes at most `burst` lines a period, and
 * the first line allowed afterwards learns how many were dropped. */
static void
test_log_limit_bounds_a_flood_and_counts_the_rest(void **state)
{
    (void)state;
    struct log_limit limit = LOG_LIMIT_INIT(3, 1000);
    uint64_t suppressed = 99;
    int allowed = 0;
    /* 2000 attempts within one second: 3 pass, 1997 are counted. */
    for (int i = 0; i < 2000; i++)
        if (log_limit_allow(&limit, 5000 + i / 4, &suppressed)) {
            allowed++;
            assert_int_equal(suppressed, 0);
        }
    assert_int_equal(allowed, 3);
    /* Still inside the window: refused. */
    assert_false(log_limit_allow(&limit, 5999, &suppressed));
    /* The next window: allowed, with the count of what was dropped, once. */
    assert_true(log_limit_allow(&limit, 6000, &suppressed));
    assert_int_equal(suppressed, 1998);
    assert_true(log_limit_allow(&limit, 6001, &suppressed));
    assert_int_equal(suppressed, 0);
    assert_true(log_limit_allow(&limit, 6002, NULL));
    assert_false(log_limit_allow(&limit, 6003, NULL));
    /* A clock that steps back starts a new window instead of blocking. */
    assert_true(log_limit_allow(&limit, 10, &suppressed));
    assert_int_equal(suppressed, 1);
}

#define LOG_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* ---- LOG_FORMAT=json ----------------------------------------------------- */

/* The one captured line, parsed: it must be exactly one JSON object. */
static json_t *
only_json_line(void)
{
    static char buf[LOG_LINE_MAX + 1];
    const char *line = only_line(buf, sizeof(buf));
    json_error_t error;
    json_t *object = json_loads(line, JSON_REJECT_DUPLICATES, &error);
    if (object == NULL)
        fail_msg("not JSON (%s): %s", error.text, line);
    assert_true(json_is_object(object));
    return object;
}

static void
test_format_names_parse(void **state)
{
    (void)state;
    enum log_format format = LOG_FORMAT_JSON;
    assert_int_equal(log_format_from_name("logfmt", &format), 0);
    assert_int_equal(format, LOG_FORMAT_LOGFMT);
    assert_int_equal(log_format_from_name("json", &format), 0);
    assert_int_equal(format, LOG_FORMAT_JSON);
    assert_int_equal(log_format_from_name("JSON", &format), -1);
    assert_int_equal(log_format_from_name("", &format), -1);
}

static void
test_json_line_has_the_logfmt_keys_in_order(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_info("controller started", "control_port=%d admin=%s reason=\"%s\" size=%zu", 7443,
             "127.0.0.1:8080", "fresh start", (size_t)12);
    char buf[LOG_LINE_MAX];
    assert_string_equal(only_line(buf, sizeof(buf)),
                        "{\"level\":\"info\",\"msg\":\"controller started\",\"control_port\":7443,"
                        "\"admin\":\"127.0.0.1:8080\",\"reason\":\"fresh start\",\"size\":12}");
}

static void
test_json_quoted_numbers_and_mixed_values_stay_strings(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_warn("w", "quoted=\"%d\" mixed=%s:%d neg=%lld hex=%x", 5, "h", 80, -3LL, 255u);
    json_t *o = only_json_line();
    assert_string_equal(json_string_value(json_object_get(o, "quoted")), "5");
    assert_string_equal(json_string_value(json_object_get(o, "mixed")), "h:80");
    assert_int_equal(json_integer_value(json_object_get(o, "neg")), -3);
    assert_string_equal(json_string_value(json_object_get(o, "hex")), "ff");
    json_decref(o);
}

/* Every hostile value comes back byte for byte as the one value of its
 * own key: no field, line or object can be forged. */
static void
test_json_hostile_values_stay_one_value(void **state)
{
    (void)state;
    static const char *const values[] = {
        "x peer=10.6.6.6 role=controller",
        "a\" peer=\"10.6.6.6",
        "b\nts=2026-01-01T00:00:00.000Z level=error msg=\"forged\"",
        "c\\",
        "\"},{\"level\":\"error\",\"msg\":\"forged\"",
        "ctl\x01\x02\x1b[31m\x7f\r\t end",
        "key= =key ==",
        "",
    };
    log_set_format(LOG_FORMAT_JSON);
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        test_log_capture_stop();
        test_log_capture_start();
        log_warn("enrollment denied", "reason=\"%s\" name=%s peer=%s", values[i], values[i],
                 "127.0.0.1:5");
        json_t *o = only_json_line();
        assert_int_equal(json_object_size(o), 5);
        assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
        assert_string_equal(json_string_value(json_object_get(o, "reason")), values[i]);
        assert_string_equal(json_string_value(json_object_get(o, "name")), values[i]);
        assert_string_equal(json_string_value(json_object_get(o, "peer")), "127.0.0.1:5");
        json_decref(o);
    }
}

static void
test_json_invalid_utf8_becomes_replacement_characters(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_info("m", "name=%s ok=%s", "a\xff\xc0\x80\xed\xa0\x80z", "caf\xc3\xa9");
    json_t *o = only_json_line();
    assert_string_equal(json_string_value(json_object_get(o, "name")),
                        "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz");
    assert_string_equal(json_string_value(json_object_get(o, "ok")), "caf\xc3\xa9");
    json_decref(o);
}

static void
test_json_c1_controls_are_escaped(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_info("m", "name=%s", "G\xc2\x85T\xc2\x9f\xc2\xa0");
    char buf[LOG_LINE_MAX];
    assert_non_null(strstr(only_line(buf, sizeof(buf)), "\"name\":\"G\\u0085T\\u009f\xc2\xa0\""));
    json_t *o = only_json_line();
    assert_string_equal(json_string_value(json_object_get(o, "name")), "G\xc2\x85T\xc2\x9f\xc2\xa0");
    json_decref(o);
}

static void
test_json_secrets_are_redacted(void **state)
{
    (void)state;
    assert_int_equal(log_add_secret("s3cr\"et-token"), 0);
    log_set_format(LOG_FORMAT_JSON);
    log_error("bad s3cr\"et-token seen", "token=%s echo=\"%s\" tail=x%sy", "s3cr\"et-token",
              "pre s3cr\"et-token post", "s3cr\"et-token");
    char buf[LOG_LINE_MAX];
    assert_null(strstr(only_line(buf, sizeof(buf)), "et-token"));
    json_t *o = only_json_line();
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "bad [REDACTED] seen");
    assert_string_equal(json_string_value(json_object_get(o, "token")), "[REDACTED]");
    assert_string_equal(json_string_value(json_object_get(o, "echo")), "pre [REDACTED] post");
    assert_string_equal(json_string_value(json_object_get(o, "tail")), "x[REDACTED]y");
    json_decref(o);
}

static void
test_json_oversized_line_is_cut_and_still_one_object(void **state)
{
    (void)state;
    char big[3 * LOG_LINE_MAX];
    for (size_t i = 0; i < sizeof(big) - 1; i++)
        big[i] = "\"\\\n\x01"[i % 4];
    big[sizeof(big) - 1] = '\0';
    log_set_format(LOG_FORMAT_JSON);
    log_info("big", "a=%s b=%s c=%d", big, big, 7);
    char buf[LOG_LINE_MAX + 1];
    assert_true(strlen(only_line(buf, sizeof(buf))) < LOG_LINE_MAX);
    json_t *o = only_json_line();
    const char *a = json_string_value(json_object_get(o, "a"));
    assert_non_null(a);
    assert_true(strlen(a) > 100);
    assert_memory_equal(a, big, strlen(a));
    json_decref(o);
}

static void
test_json_text_without_a_key_is_kept_under_text(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_info("m", "%s k=v", "loose");
    json_t *o = only_json_line();
    assert_string_equal(json_string_value(json_object_get(o, "text")), "loose");
    assert_string_equal(json_string_value(json_object_get(o, "k")), "v");
    json_decref(o);
}

static void
test_json_timestamp_is_the_first_key(void **state)
{
    (void)state;
    log_set_format(LOG_FORMAT_JSON);
    log_set_timestamps(1);
    log_info("m", NULL);
    char buf[LOG_LINE_MAX];
    const char *line = only_line(buf, sizeof(buf));
    assert_int_equal(strncmp(line, "{\"ts\":\"", 7), 0);
    assert_int_equal(strlen(line), strlen("{\"ts\":\"2026-01-01T00:00:00.000Z\",\"level\":\"info\",\"msg\":\"m\"}"));
}

/* ---- journald --------------------------------------------------------- */

/* Runs fn with stderr pointing at a fresh file and JOURNAL_STREAM set by
 * how (0: that file's dev:ino, 1: another inode, 2: malformed); returns
 * what reached the file. */
static char *
with_stderr_file(int how, bool *is_journal, void (*fn)(void))
{
    char *dir = test_mkdtemp();
    char *path = test_path(dir, "stderr.txt");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char stream[64];
    if (how == 2)
        snprintf(stream, sizeof(stream), "%llu-%llu", (unsigned long long)st.st_dev,
                 (unsigned long long)st.st_ino);
    else
        snprintf(stream, sizeof(stream), "%llu:%llu", (unsigned long long)st.st_dev,
                 (unsigned long long)st.st_ino + (how == 1));
    setenv("JOURNAL_STREAM", stream, 1);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    *is_journal = log_stderr_is_journal();
    log_reset_sink();
    log_set_journal_priority(*is_journal);
    fn();
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    close(fd);
    unsetenv("JOURNAL_STREAM");
    char *text = test_read_file(path, NULL);
    free(path);
    test_rmtree(dir);
    free(dir);
    return text;
}

static void
log_each_level(void)
{
    log_set_level(LOG_DEBUG);
    log_debug("d", NULL);
    log_info("i", NULL);
    log_warn("w", "k=%s", "v\nlevel=error");
    log_error("e", NULL);
}

static void
test_journal_stream_of_stderr_prefixes_priorities(void **state)
{
    (void)state;
    bool is_journal = false;
    char *text = with_stderr_file(0, &is_journal, log_each_level);
    assert_true(is_journal);
    assert_string_equal(text, "<7>level=debug msg=\"d\"\n"
                              "<6>level=info msg=\"i\"\n"
                              "<4>level=warn msg=\"w\" k=\"v level=error\"\n"
                              "<3>level=error msg=\"e\"\n");
    free(text);
}

static void
log_json_error(void)
{
    log_set_format(LOG_FORMAT_JSON);
    log_error("e", "n=%d", 1);
}

static void
test_journal_priority_precedes_a_json_line_too(void **state)
{
    (void)state;
    bool is_journal = false;
    char *text = with_stderr_file(0, &is_journal, log_json_error);
    assert_string_equal(text, "<3>{\"level\":\"error\",\"msg\":\"e\",\"n\":1}\n");
    free(text);
}

static void
test_journal_stream_of_another_file_or_malformed_is_ignored(void **state)
{
    (void)state;
    for (int how = 1; how <= 2; how++) {
        bool is_journal = true;
        char *text = with_stderr_file(how, &is_journal, log_each_level);
        assert_false(is_journal);
        assert_int_equal(strncmp(text, "level=debug", 11), 0);
        free(text);
    }
    unsetenv("JOURNAL_STREAM");
    assert_false(log_stderr_is_journal());
}

static void
test_sink_gets_the_line_without_priority(void **state)
{
    (void)state;
    log_set_journal_priority(true);
    log_error("e", NULL);
    char buf[LOG_LINE_MAX];
    assert_string_equal(only_line(buf, sizeof(buf)), "level=error msg=\"e\"");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        LOG_TEST(test_line_has_level_quoted_msg_and_kv_tail),
        LOG_TEST(test_log_limit_bounds_a_flood_and_counts_the_rest),
        LOG_TEST(test_null_kv_leaves_no_trailing_space),
        LOG_TEST(test_each_level_has_its_name),
        LOG_TEST(test_timestamp_prefix_is_utc_iso8601_with_millis),
        LOG_TEST(test_disabling_timestamps_drops_ts_field),
        LOG_TEST(test_default_info_level_drops_debug),
        LOG_TEST(test_warn_level_drops_info_and_keeps_error),
        LOG_TEST(test_level_names_parse),
        LOG_TEST(test_unknown_level_name_is_refused_and_leaves_output_alone),
        LOG_TEST(test_sink_receives_context_level_and_line_without_newline),
        LOG_TEST(test_reset_sink_writes_one_line_to_stderr),
        LOG_TEST(test_quotes_and_backslashes_in_msg_are_escaped),
        LOG_TEST(test_control_characters_in_msg_keep_event_on_one_line),
        LOG_TEST(test_forged_second_event_in_kv_stays_on_one_line),
        LOG_TEST(test_quote_in_quoted_value_cannot_close_the_field),
        LOG_TEST(test_backslash_cannot_eat_the_closing_quote),
        LOG_TEST(test_bare_value_with_space_or_equals_is_quoted),
        LOG_TEST(test_plain_values_are_written_as_before),
        LOG_TEST(test_format_text_itself_is_trusted),
        LOG_TEST(test_quoted_bare_value_at_line_end_stays_bounded_and_closed),
        LOG_TEST(test_secret_cut_by_precision_leaves_no_prefix),
        LOG_TEST(test_utf8_passes_through_unchanged),
        LOG_TEST(test_invalid_utf8_and_c1_controls_become_question_marks),
        LOG_TEST(test_a_line_cut_at_its_limit_never_splits_a_utf8_sequence),
        LOG_TEST(test_a_secret_inside_a_utf8_sequence_is_still_masked),
        LOG_TEST(test_oversized_event_is_truncated_to_one_bounded_line),
        LOG_TEST(test_oversized_escaped_message_never_splits_an_escape),
        LOG_TEST(test_short_or_null_secrets_are_refused),
        LOG_TEST(test_secret_in_msg_and_kv_is_redacted_everywhere),
        LOG_TEST(test_logger_keeps_its_own_copy_of_secret),
        LOG_TEST(test_cleared_secrets_are_no_longer_redacted),
        LOG_TEST(test_secret_table_is_bounded_and_duplicates_are_free),
        LOG_TEST(test_secret_inside_mask_text_does_not_loop),
        LOG_TEST(test_secret_with_quote_is_redacted_before_escaping),
        LOG_TEST(test_secret_with_tab_is_redacted_before_control_mapping),
        LOG_TEST(test_overlapping_secrets_prefer_the_longer_one),
        LOG_TEST(test_secret_cut_at_line_end_leaves_no_prefix),
        LOG_TEST(test_secret_longer_than_line_is_never_partly_shown),
        LOG_TEST(test_many_short_secrets_expanding_past_line_end_stay_bounded),
        LOG_TEST(test_random_lines_never_contain_a_registered_secret),
        LOG_TEST(test_format_names_parse),
        LOG_TEST(test_json_line_has_the_logfmt_keys_in_order),
        LOG_TEST(test_json_quoted_numbers_and_mixed_values_stay_strings),
        LOG_TEST(test_json_hostile_values_stay_one_value),
        LOG_TEST(test_json_invalid_utf8_becomes_replacement_characters),
        LOG_TEST(test_json_c1_controls_are_escaped),
        LOG_TEST(test_json_secrets_are_redacted),
        LOG_TEST(test_json_oversized_line_is_cut_and_still_one_object),
        LOG_TEST(test_json_text_without_a_key_is_kept_under_text),
        LOG_TEST(test_json_timestamp_is_the_first_key),
        LOG_TEST(test_journal_stream_of_stderr_prefixes_priorities),
        LOG_TEST(test_journal_priority_precedes_a_json_line_too),
        LOG_TEST(test_journal_stream_of_another_file_or_malformed_is_ignored),
        LOG_TEST(test_sink_gets_the_line_without_priority),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
