#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static struct {
    enum log_level level;
    log_sink_fn sink;
    void *sink_ctx;
    int timestamps;
    char *secrets[LOG_SECRETS_MAX];
    size_t secret_count;
} logger = {LOG_INFO, NULL, NULL, 1, {NULL}, 0};

void
log_set_level(enum log_level level)
{
    logger.level = level;
}

int
log_level_from_name(const char *name, enum log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void
log_set_sink(log_sink_fn sink, void *ctx)
{
    logger.sink = sink;
    logger.sink_ctx = ctx;
}

void
log_reset_sink(void)
{
    logger.sink = NULL;
    logger.sink_ctx = NULL;
}

void
log_set_timestamps(int enabled)
{
    logger.timestamps = enabled;
}

int
log_add_secret(const char *secret)
{
    if (secret == NULL || strlen(secret) < 4)
        return -1;
    for (size_t i = 0; i < logger.secret_count; i++)
        if (strcmp(logger.secrets[i], secret) == 0)
            return 0;
    if (logger.secret_count == LOG_SECRETS_MAX)
        return -1;
    char *copy = strdup(secret);
    if (copy == NULL)
        return -1;
    logger.secrets[logger.secret_count++] = copy;
    return 0;
}

void
log_clear_secrets(void)
{
    for (size_t i = 0; i < logger.secret_count; i++) {
        /* Wipe before free: the copy is a credential. */
        volatile char *p = logger.secrets[i];
        while (*p)
            *p++ = 0;
        free(logger.secrets[i]);
        logger.secrets[i] = NULL;
    }
    logger.secret_count = 0;
}

/* Length of the text at s to hide behind the mask, or 0. The longest
 * registered secret wins, so one secret that starts another cannot leave
 * the rest visible. src_cut: the text was truncated by vsnprintf, so a
 * secret's first bytes at its very end count too (the rest was lost). */
static size_t
secret_at(const char *s, int src_cut)
{
    size_t best = 0;
    for (size_t i = 0; i < logger.secret_count; i++) {
        const char *secret = logger.secrets[i];
        size_t secret_len = strlen(secret);
        size_t avail = strnlen(s, secret_len);
        if ((avail == secret_len || src_cut) && avail > best &&
            strncmp(s, secret, avail) == 0)
            best = avail;
    }
    return best;
}

/* Appends src to dst[*len..cap) escaping quotes, backslashes and control
 * characters so that one event stays one line. Secrets are matched in src,
 * before escaping could change their bytes and before the line limit could
 * cut one in half; the mask is never rescanned, so a secret that occurs
 * inside "[REDACTED]" cannot loop. */
static void
append_escaped(char *dst, size_t *len, size_t cap, const char *src, int escape_quotes,
               int src_cut)
{
    static const char mask[] = "[REDACTED]";
    for (const char *s = src; *s != '\0' && *len + 2 < cap; s++) {
        size_t secret_len = secret_at(s, src_cut);
        if (secret_len > 0) {
            if (*len + sizeof(mask) > cap)
                break;
            memcpy(dst + *len, mask, sizeof(mask) - 1);
            *len += sizeof(mask) - 1;
            s += secret_len - 1;
            continue;
        }
        unsigned char c = (unsigned char)*s;
        if (c == '\n' || c == '\r' || c == '\t') {
            dst[(*len)++] = ' ';
        } else if (c < 0x20 || c == 0x7f) {
            dst[(*len)++] = '?';
        } else if (escape_quotes && (c == '"' || c == '\\')) {
            dst[(*len)++] = '\\';
            dst[(*len)++] = (char)c;
        } else {
            dst[(*len)++] = (char)c;
        }
    }
    dst[*len] = '\0';
}

void
log_event(enum log_level level, const char *msg, const char *kv_fmt, ...)
{
    if (level < logger.level)
        return;
    char line[LOG_LINE_MAX];
    size_t len = 0;
    line[0] = '\0';
    if (logger.timestamps) {
        struct timespec now;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        len += strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
        len += (size_t)snprintf(line + len, sizeof(line) - len, ".%03ldZ ",
                                now.tv_nsec / 1000000L);
    }
    len += (size_t)snprintf(line + len, sizeof(line) - len, "level=%s msg=\"",
                            level_names[level]);
    append_escaped(line, &len, sizeof(line), msg, 1, 0);
    if (len + 1 < sizeof(line))
        line[len++] = '"';
    line[len] = '\0';
    if (kv_fmt != NULL && kv_fmt[0] != '\0') {
        char tail[LOG_LINE_MAX];
        va_list ap;
        va_start(ap, kv_fmt);
        int full = vsnprintf(tail, sizeof(tail), kv_fmt, ap);
        va_end(ap);
        if (len + 1 < sizeof(line))
            line[len++] = ' ';
        line[len] = '\0';
        append_escaped(line, &len, sizeof(line), tail, 0, full >= (int)sizeof(tail));
    }
    if (logger.sink != NULL) {
        logger.sink(logger.sink_ctx, level, line);
        return;
    }
    fprintf(stderr, "%s\n", line);
}
