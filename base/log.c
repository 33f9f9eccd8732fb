#include "base/log.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const format_names[] = {"logfmt", "json"};
/* sd-daemon(3) priorities: LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR. */
static const char *const journal_priorities[] = {"<7>", "<6>", "<4>", "<3>"};

static struct {
    enum log_level level;
    enum log_format format;
    bool journal_priority;
    log_sink_fn sink;
    void *sink_ctx;
    int timestamps;
    char *secrets[LOG_SECRETS_MAX];
    size_t secret_count;
} logger = {LOG_INFO, LOG_FORMAT_LOGFMT, false, NULL, NULL, 1, {NULL}, 0};

void
log_set_level(enum log_level level)
{
    logger.level = level;
}

/* name's index in names, or -1. */
static int
name_index(const char *const *names, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(name, names[i]) == 0)
            return (int)i;
    return -1;
}

int
log_level_from_name(const char *name, enum log_level *out)
{
    int i = name_index(level_names, sizeof(level_names) / sizeof(level_names[0]), name);
    if (i < 0)
        return -1;
    *out = (enum log_level)i;
    return 0;
}

int
log_format_from_name(const char *name, enum log_format *out)
{
    int i = name_index(format_names, sizeof(format_names) / sizeof(format_names[0]), name);
    if (i < 0)
        return -1;
    *out = (enum log_format)i;
    return 0;
}

void
log_set_format(enum log_format format)
{
    logger.format = format;
}

bool
log_stderr_is_journal(void)
{
    const char *stream = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    char extra;
    if (stream == NULL || sscanf(stream, "%llu:%llu%c", &dev, &ino, &extra) != 2)
        return false;
    /* Inherited by a child whose stderr went elsewhere, it must not count. */
    struct stat st;
    if (fstat(STDERR_FILENO, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void
log_set_journal_priority(bool enabled)
{
    logger.journal_priority = enabled;
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
 * secret's first bytes at its very end count too (the rest was lost).
 * Reads at most left bytes of s. */
static size_t
secret_at(const char *s, size_t left, int src_cut)
{
    size_t best = 0;
    for (size_t i = 0; i < logger.secret_count; i++) {
        const char *secret = logger.secrets[i];
        size_t secret_len = strlen(secret);
        size_t avail = strnlen(s, secret_len < left ? secret_len : left);
        if ((avail == secret_len || src_cut) && avail > best &&
            strncmp(s, secret, avail) == 0)
            best = avail;
    }
    return best;
}

/* How one piece of text is written into the line. */
enum piece_kind {
    PIECE_TRUSTED,   /* the caller's own format text: control characters mapped */
    PIECE_QUOTED,    /* a value inside key="...": quotes and backslashes escaped */
    PIECE_BARE,      /* a value right after key=: quoted when it needs to be */
};

/* Bytes of the well-formed UTF-8 sequence at s (at most left), or 0. */
static size_t
utf8_sequence(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (n == 0 || n > left)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* Overlong forms, UTF-16 surrogates and code points above U+10FFFF. */
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] >= 0x90))
        return 0;
    return n;
}

/* A C1 control (U+0080..U+009F): some readers break a line at U+0085. */
static int
utf8_is_c1(const unsigned char *s, size_t n)
{
    return n == 2 && s[0] == 0xc2 && s[1] < 0xa0;
}

/* Appends src (src_len bytes) to dst[*len..cap) so that one event stays
 * one line and a value stays one field: control characters (C0, DEL, C1)
 * become ' ' or '?', and in a quoted value '"' and '\' are escaped. A byte
 * that is not part of well-formed UTF-8 becomes '?' too, so the line stays
 * UTF-8 (journald keeps anything else as a blob, which journalctl does
 * not show), and a sequence is copied whole or not at all. Secrets are matched
 * in src, before escaping could change their bytes and before the line
 * limit could cut one in half; the mask is never rescanned, so a secret
 * that occurs inside "[REDACTED]" cannot loop. */
static void
append_escaped(char *dst, size_t *len, size_t cap, const char *src, size_t src_len,
               int escape_quotes, int src_cut)
{
    static const char mask[] = "[REDACTED]";
    const char *end = src + src_len;
    for (const char *s = src; s < end && *s != '\0' && *len + 2 < cap; s++) {
        size_t secret_len = secret_at(s, (size_t)(end - s), src_cut);
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
        } else if (c < 0x80) {
            dst[(*len)++] = (char)c;
        } else {
            const unsigned char *u = (const unsigned char *)s;
            size_t n = utf8_sequence(u, (size_t)(end - s));
            /* A secret that starts inside the sequence is masked from there. */
            for (size_t k = 1; k < n; k++)
                if (secret_at(s + k, (size_t)(end - s) - k, src_cut) > 0)
                    n = 0;
            if (n == 0 || utf8_is_c1(u, n)) {
                dst[(*len)++] = '?';
                s += n == 0 ? 0 : n - 1;
                continue;
            }
            if (*len + n >= cap)
                break;
            memcpy(dst + *len, s, n);
            *len += n;
            s += n - 1;
        }
    }
    dst[*len] = '\0';
}

/* A bare value must be quoted when it could end its field early or start
 * another: when it holds a space, '=', '"', '\' or a control byte outside
 * the secrets that will be masked. (An empty value forges nothing.) */
static int
bare_needs_quotes(const char *value, size_t value_len, int src_cut)
{
    for (size_t i = 0; i < value_len && value[i] != '\0'; i++) {
        size_t secret_len = secret_at(value + i, value_len - i, src_cut);
        if (secret_len > 0) {
            i += secret_len - 1;
            continue;
        }
        unsigned char c = (unsigned char)value[i];
        if (c <= ' ' || c == 0x7f || c == '"' || c == '\\' || c == '=')
            return 1;
    }
    return 0;
}

static void
append_piece(char *dst, size_t *len, size_t cap, const char *src, size_t src_len,
             enum piece_kind kind, int src_cut)
{
    if (kind == PIECE_BARE && bare_needs_quotes(src, src_len, src_cut)) {
        if (*len + 2 >= cap)
            return;
        dst[(*len)++] = '"';
        /* One byte less, so the closing quote always fits. */
        append_escaped(dst, len, cap - 1, src, src_len, 1, src_cut);
        dst[(*len)++] = '"';
        dst[*len] = '\0';
        return;
    }
    append_escaped(dst, len, cap, src, src_len, kind != PIECE_TRUSTED, src_cut);
}

/* One conversion of kv_fmt, formatted alone. Only what printf's format
 * checking lets through reaches here; %n is never honoured. */
struct conversion {
    char spec[32];    /* "%-8.3lld" */
    char length[3];   /* "", "h", "hh", "l", "ll", "z", "j", "t", "L" */
    char type;        /* the conversion character */
    size_t fmt_len;   /* bytes of kv_fmt it spans */
};

static int
parse_conversion(const char *fmt, struct conversion *conv)
{
    size_t i = 1;
    while (fmt[i] != '\0' && strchr("-+ #0", fmt[i]) != NULL)
        i++;
    while ((fmt[i] >= '0' && fmt[i] <= '9') || fmt[i] == '*')
        i++;
    if (fmt[i] == '.') {
        i++;
        while ((fmt[i] >= '0' && fmt[i] <= '9') || fmt[i] == '*')
            i++;
    }
    size_t length_start = i;
    while (fmt[i] != '\0' && strchr("hlzjtL", fmt[i]) != NULL && i - length_start < 2)
        i++;
    if (fmt[i] == '\0' || i + 1 >= sizeof(conv->spec))
        return -1;
    memcpy(conv->length, fmt + length_start, i - length_start);
    conv->length[i - length_start] = '\0';
    conv->type = fmt[i];
    memcpy(conv->spec, fmt, i + 1);
    conv->spec[i + 1] = '\0';
    conv->fmt_len = i + 1;
    return 0;
}

/* Formats one conversion into out, consuming its arguments from ap. For %s
 * the value itself is returned in *text (not copied, not cut by out). */
static int
format_conversion(const struct conversion *conv, va_list *ap, char *out, size_t cap,
                  const char **text, size_t *text_len, int *cut)
{
    int star[2] = {0, 0}, stars = 0;
    for (const char *p = conv->spec; *p != '\0'; p++)
        if (*p == '*' && stars < 2)
            star[stars++] = va_arg(*ap, int);
    const char *l = conv->length;
    int n = -1;
#define FORMAT_ONE(value)                                                              \
    (stars == 0   ? snprintf(out, cap, conv->spec, value)                              \
     : stars == 1 ? snprintf(out, cap, conv->spec, star[0], value)                     \
                  : snprintf(out, cap, conv->spec, star[0], star[1], value))
    switch (conv->type) {
    case 'd':
    case 'i':
        if (strcmp(l, "ll") == 0)
            n = FORMAT_ONE(va_arg(*ap, long long));
        else if (strcmp(l, "l") == 0)
            n = FORMAT_ONE(va_arg(*ap, long));
        else if (strcmp(l, "z") == 0)
            n = FORMAT_ONE(va_arg(*ap, ssize_t));
        else if (strcmp(l, "t") == 0)
            n = FORMAT_ONE(va_arg(*ap, ptrdiff_t));
        else if (strcmp(l, "j") == 0)
            n = FORMAT_ONE(va_arg(*ap, intmax_t));
        else
            n = FORMAT_ONE(va_arg(*ap, int));
        break;
    case 'u':
    case 'x':
    case 'X':
    case 'o':
        if (strcmp(l, "ll") == 0)
            n = FORMAT_ONE(va_arg(*ap, unsigned long long));
        else if (strcmp(l, "l") == 0)
            n = FORMAT_ONE(va_arg(*ap, unsigned long));
        else if (strcmp(l, "z") == 0)
            n = FORMAT_ONE(va_arg(*ap, size_t));
        else if (strcmp(l, "j") == 0)
            n = FORMAT_ONE(va_arg(*ap, uintmax_t));
        else if (strcmp(l, "t") == 0)
            n = FORMAT_ONE(va_arg(*ap, ptrdiff_t));
        else
            n = FORMAT_ONE(va_arg(*ap, unsigned int));
        break;
    case 'c':
        n = FORMAT_ONE(va_arg(*ap, int));
        break;
    case 'e':
    case 'E':
    case 'f':
    case 'F':
    case 'g':
    case 'G':
        if (strcmp(l, "L") == 0)
            n = FORMAT_ONE(va_arg(*ap, long double));
        else
            n = FORMAT_ONE(va_arg(*ap, double));
        break;
    case 'p':
        n = FORMAT_ONE(va_arg(*ap, void *));
        break;
    case 's': {
        const char *value = va_arg(*ap, const char *);
        if (value == NULL)
            value = "(null)";
        /* Precision bounds the bytes read; a width is not applied (no
         * log line pads a string). */
        const char *dot = strchr(conv->spec, '.');
        size_t limit = (size_t)-1;
        if (dot != NULL)
            limit = dot[1] == '*' ? (star[stars - 1] < 0 ? (size_t)-1 : (size_t)star[stars - 1])
                                  : strtoul(dot + 1, NULL, 10);
        *text = value;
        *text_len = strnlen(value, limit);
        /* A precision that cut the value may have cut a secret: its first
         * bytes at the end count. */
        *cut = dot != NULL && *text_len == limit;
        return 0;
    }
    default:
        break;
    }
#undef FORMAT_ONE
    if (n < 0)
        out[0] = '\0';
    *cut = 0;
    *text = out;
    *text_len = strnlen(out, cap);
    return 0;
}

/* Writes the key=value tail, escaping each value by where it stands in the
 * format: the caller's text is trusted, the arguments are not (node names,
 * SPIFFE IDs and reasons come from peers). */
static void
append_kv(char *line, size_t *len, size_t cap, const char *kv_fmt, va_list *ap)
{
    int in_quotes = 0;
    const char *literal = kv_fmt;
    for (const char *p = kv_fmt; *p != '\0';) {
        if (*p != '%') {
            if (*p == '"')
                in_quotes = !in_quotes;
            p++;
            continue;
        }
        append_piece(line, len, cap, literal, (size_t)(p - literal), PIECE_TRUSTED, 0);
        if (p[1] == '%') {
            append_piece(line, len, cap, "%", 1, PIECE_TRUSTED, 0);
            p += 2;
            literal = p;
            continue;
        }
        struct conversion conv;
        if (parse_conversion(p, &conv) != 0 || conv.type == 'n')
            return;
        char scratch[128];
        const char *text;
        size_t text_len;
        int cut;
        format_conversion(&conv, ap, scratch, sizeof(scratch), &text, &text_len, &cut);
        /* Numbers are printf's own text; strings and characters are not. */
        int text_arg = conv.type == 's' || conv.type == 'c';
        enum piece_kind kind = !text_arg                      ? PIECE_TRUSTED
                               : in_quotes                    ? PIECE_QUOTED
                               : (p > kv_fmt && p[-1] == '=') ? PIECE_BARE
                                                              : PIECE_TRUSTED;
        append_piece(line, len, cap, text, text_len, kind, cut);
        p += conv.fmt_len;
        literal = p;
    }
    append_piece(line, len, cap, literal, strlen(literal), PIECE_TRUSTED, 0);
}

/* ---- LOG_FORMAT=json ------------------------------------------------------
 * The same fields, read from the same format: `key=value` and `key="..."`
 * runs of kv_fmt. A value is first assembled raw (secrets masked, nothing
 * escaped), then written as a JSON string with every quote, backslash,
 * control byte and invalid UTF-8 byte escaped, so it stays one value; a
 * lone integer conversion is written as a number. */

/* Room kept at the end of the line so a cut value can always be closed:
 * '"', '}' and the NUL. */
#define JSON_TAIL 3

/* Appends src to dst[*len..cap) with secrets masked, nothing escaped. */
static void
append_masked(char *dst, size_t *len, size_t cap, const char *src, size_t src_len, int src_cut)
{
    static const char mask[] = "[REDACTED]";
    const char *end = src + src_len;
    for (const char *s = src; s < end && *s != '\0' && *len + 1 < cap; s++) {
        size_t secret_len = secret_at(s, (size_t)(end - s), src_cut);
        if (secret_len > 0) {
            if (*len + sizeof(mask) > cap)
                break;
            memcpy(dst + *len, mask, sizeof(mask) - 1);
            *len += sizeof(mask) - 1;
            s += secret_len - 1;
            continue;
        }
        dst[(*len)++] = *s;
    }
    dst[*len] = '\0';
}

/* Writes src as a JSON string. Cut short (never inside an escape or a
 * UTF-8 sequence) when the line is full; the closing quote always fits. */
static void
json_string(char *line, size_t *len, size_t cap, const char *src, size_t src_len)
{
    size_t limit = cap - JSON_TAIL;
    if (*len >= limit)
        return;
    line[(*len)++] = '"';
    const unsigned char *s = (const unsigned char *)src;
    for (size_t i = 0; i < src_len;) {
        char escaped[8];
        const char *piece = escaped;
        size_t n = 0, used = 1;   /* bytes written, bytes of src they stand for */
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            escaped[0] = '\\', escaped[1] = (char)c, n = 2;
        } else if (c == '\n') {
            memcpy(escaped, "\\n", 2), n = 2;
        } else if (c == '\t') {
            memcpy(escaped, "\\t", 2), n = 2;
        } else if (c == '\r') {
            memcpy(escaped, "\\r", 2), n = 2;
        } else if (c < 0x20 || c == 0x7f) {
            n = (size_t)snprintf(escaped, sizeof(escaped), "\\u%04x", c);
        } else if (c < 0x80) {
            escaped[0] = (char)c, n = 1;
        } else if ((n = utf8_sequence(s + i, src_len - i)) > 0 && utf8_is_c1(s + i, n)) {
            used = n;
            n = (size_t)snprintf(escaped, sizeof(escaped), "\\u%04x", s[i + 1]);
        } else if (n > 0) {
            piece = (const char *)s + i;
            used = n;
        } else {
            /* Not UTF-8: U+FFFD, as a reader would show it. */
            memcpy(escaped, "\\ufffd", 6), n = 6;
        }
        if (*len + n > limit)
            break;
        memcpy(line + *len, piece, n);
        *len += n;
        i += used;
    }
    line[(*len)++] = '"';
    line[*len] = '\0';
}

/* printf's text of an integer conversion, as JSON accepts a number. */
static int
is_json_integer(const char *text, size_t len)
{
    size_t i = text[0] == '-' ? 1 : 0;
    if (i >= len || (text[i] == '0' && len > i + 1))
        return 0;
    for (; i < len; i++)
        if (text[i] < '0' || text[i] > '9')
            return 0;
    return 1;
}

/* Appends ,"key":value; nothing when the key itself does not fit. */
static void
json_field(char *line, size_t *len, size_t cap, const char *key, size_t key_len,
           const char *value, size_t value_len, int number)
{
    size_t limit = cap - JSON_TAIL;
    /* ,"key":"" must fit whole: a cut key would leave a dangling ':'. */
    size_t key_escaped = 0;
    for (size_t i = 0; i < key_len; i++) {
        unsigned char c = (unsigned char)key[i];
        key_escaped += c == '"' || c == '\\' ? 2 : c < 0x20 || c >= 0x7f ? 6 : 1;
    }
    if (*len + key_escaped + 6 > limit)
        return;
    line[(*len)++] = ',';
    json_string(line, len, cap, key, key_len);
    line[(*len)++] = ':';
    if (number && *len + value_len <= limit) {
        memcpy(line + *len, value, value_len);
        *len += value_len;
        line[*len] = '\0';
    } else {
        json_string(line, len, cap, value, value_len);
    }
}

/* Walks kv_fmt as append_kv does, one field at a time. Text without a
 * key= (no format in the tree has any) goes under "text". */
static void
json_kv(char *line, size_t *len, size_t cap, const char *kv_fmt, va_list *ap)
{
    const char *p = kv_fmt;
    for (;;) {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            return;
        const char *key = p;
        while (*p != '\0' && *p != '=' && *p != ' ' && *p != '%' && *p != '"')
            p++;
        size_t key_len = (size_t)(p - key);
        if (*p == '=' && key_len > 0) {
            p++;
        } else {
            p = key;
            key = "text";
            key_len = 4;
        }
        int quoted = *p == '"';
        if (quoted)
            p++;
        char value[LOG_LINE_MAX];
        size_t value_len = 0;
        size_t pieces = 0;
        char last_type = 0;
        value[0] = '\0';
        while (*p != '\0' && *p != (quoted ? '"' : ' ')) {
            pieces++;
            if (*p == '%' && p[1] == '%') {
                append_masked(value, &value_len, sizeof(value), "%", 1, 0);
                last_type = 0;
                p += 2;
                continue;
            }
            if (*p == '%') {
                struct conversion conv;
                if (parse_conversion(p, &conv) != 0 || conv.type == 'n')
                    return;
                char scratch[128];
                const char *text;
                size_t text_len;
                int cut;
                format_conversion(&conv, ap, scratch, sizeof(scratch), &text, &text_len, &cut);
                append_masked(value, &value_len, sizeof(value), text, text_len, cut);
                last_type = conv.type;
                p += conv.fmt_len;
                continue;
            }
            const char *literal = p;
            while (*p != '\0' && *p != '%' && *p != (quoted ? '"' : ' '))
                p++;
            append_masked(value, &value_len, sizeof(value), literal, (size_t)(p - literal), 0);
            last_type = 0;
        }
        if (quoted && *p == '"')
            p++;
        int number = !quoted && pieces == 1 && last_type != 0 && strchr("diu", last_type) != NULL &&
                     value_len > 0 && is_json_integer(value, value_len);
        json_field(line, len, cap, key, key_len, value, value_len, number);
    }
}

static void
write_line(enum log_level level, const char *line)
{
    if (logger.sink != NULL) {
        logger.sink(logger.sink_ctx, level, line);
        return;
    }
    fprintf(stderr, "%s%s\n", logger.journal_priority ? journal_priorities[level] : "", line);
}

static size_t
json_line(char *line, size_t cap, const char *ts, enum log_level level, const char *msg,
          const char *kv_fmt, va_list *ap)
{
    size_t len = 0;
    line[len++] = '{';
    line[len] = '\0';
    if (ts != NULL) {
        json_string(line, &len, cap, "ts", 2);
        line[len++] = ':';
        json_string(line, &len, cap, ts, strlen(ts));
        line[len++] = ',';
    }
    json_string(line, &len, cap, "level", 5);
    line[len++] = ':';
    json_string(line, &len, cap, level_names[level], strlen(level_names[level]));
    line[len++] = ',';
    json_string(line, &len, cap, "msg", 3);
    line[len++] = ':';
    char masked[LOG_LINE_MAX];
    size_t masked_len = 0;
    append_masked(masked, &masked_len, sizeof(masked), msg, strlen(msg), 0);
    json_string(line, &len, cap, masked, masked_len);
    if (kv_fmt != NULL && kv_fmt[0] != '\0')
        json_kv(line, &len, cap, kv_fmt, ap);
    line[len++] = '}';
    line[len] = '\0';
    return len;
}

void
log_event(enum log_level level, const char *msg, const char *kv_fmt, ...)
{
    if (level < logger.level)
        return;
    char line[LOG_LINE_MAX];
    size_t len = 0;
    line[0] = '\0';
    char ts[40] = "";
    if (logger.timestamps) {
        struct timespec now;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        size_t ts_len = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(ts + ts_len, sizeof(ts) - ts_len, ".%03ldZ", now.tv_nsec / 1000000L);
    }
    if (logger.format == LOG_FORMAT_JSON) {
        va_list ap;
        va_start(ap, kv_fmt);
        json_line(line, sizeof(line), logger.timestamps ? ts : NULL, level, msg, kv_fmt, &ap);
        va_end(ap);
        write_line(level, line);
        return;
    }
    if (logger.timestamps)
        len += (size_t)snprintf(line, sizeof(line), "ts=%s ", ts);
    len += (size_t)snprintf(line + len, sizeof(line) - len, "level=%s msg=\"",
                            level_names[level]);
    append_escaped(line, &len, sizeof(line), msg, strlen(msg), 1, 0);
    if (len + 1 < sizeof(line))
        line[len++] = '"';
    line[len] = '\0';
    if (kv_fmt != NULL && kv_fmt[0] != '\0') {
        if (len + 1 < sizeof(line))
            line[len++] = ' ';
        line[len] = '\0';
        va_list ap;
        va_start(ap, kv_fmt);
        append_kv(line, &len, sizeof(line), kv_fmt, &ap);
        va_end(ap);
    }
    write_line(level, line);
}

bool
log_limit_allow(struct log_limit *limit, int64_t now_ms, uint64_t *suppressed)
{
    /* A fixed window, started by the first line after the previous one
     * ended: cheap, and a burst can at most double at a window edge. */
    if (limit->in_window == 0 || now_ms - limit->window_start_ms >= limit->period_ms ||
        now_ms < limit->window_start_ms) {
        limit->window_start_ms = now_ms;
        limit->in_window = 0;
    }
    if (limit->in_window >= limit->burst) {
        limit->suppressed++;
        return false;
    }
    limit->in_window++;
    if (suppressed != NULL)
        *suppressed = limit->suppressed;
    limit->suppressed = 0;
    return true;
}
