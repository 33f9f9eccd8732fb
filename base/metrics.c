/* The Prometheus text writer: see metrics.h. */
#include "base/metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metrics {
    char *text;
    size_t len;
    size_t cap;
    bool failed;
};

struct metrics *
metrics_new(void)
{
    return calloc(1, sizeof(struct metrics));
}

void
metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    free(m->text);
    free(m);
}

/* Makes room for need more bytes plus the terminating NUL. */
static bool
reserve(struct metrics *m, size_t need)
{
    if (m->failed)
        return false;
    if (m->cap - m->len > need)
        return true;
    size_t cap = m->cap == 0 ? 4096 : m->cap;
    while (cap - m->len <= need) {
        if (cap > SIZE_MAX / 2) {
            m->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *grown = realloc(m->text, cap);
    if (grown == NULL) {
        m->failed = true;
        return false;
    }
    m->text = grown;
    m->cap = cap;
    return true;
}

static void
vappend(struct metrics *m, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    if (n < 0 || !reserve(m, (size_t)n)) {
        m->failed = true;
        va_end(again);
        return;
    }
    vsnprintf(m->text + m->len, (size_t)n + 1, fmt, again);
    va_end(again);
    m->len += (size_t)n;
}

void
metrics_printf(struct metrics *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vappend(m, fmt, ap);
    va_end(ap);
}

void
metrics_family(struct metrics *m, const char *name, const char *type, const char *help)
{
    metrics_printf(m, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *
braces_open(const char *labels)
{
    return labels != NULL && labels[0] != '\0' ? "{" : "";
}

static const char *
braces_close(const char *labels)
{
    return labels != NULL && labels[0] != '\0' ? "}" : "";
}

void
metrics_u64(struct metrics *m, const char *name, const char *labels, uint64_t value)
{
    metrics_printf(m, "%s%s%s%s %llu\n", name, braces_open(labels), labels ? labels : "",
                   braces_close(labels), (unsigned long long)value);
}

void
metrics_i64(struct metrics *m, const char *name, const char *labels, int64_t value)
{
    metrics_printf(m, "%s%s%s%s %lld\n", name, braces_open(labels), labels ? labels : "",
                   braces_close(labels), (long long)value);
}

void
metrics_gauge(struct metrics *m, const char *name, const char *help, const char *labels,
              int64_t value)
{
    metrics_family(m, name, "gauge", help);
    metrics_i64(m, name, labels, value);
}

void
metrics_counter(struct metrics *m, const char *name, const char *help, const char *labels,
                uint64_t value)
{
    metrics_family(m, name, "counter", help);
    metrics_u64(m, name, labels, value);
}

void
metrics_rows(struct metrics *m, const struct metrics_row *rows, size_t count, const void *base,
             const char *labels)
{
    for (size_t i = 0; i < count; i++) {
        uint64_t value;
        memcpy(&value, (const char *)base + rows[i].offset, sizeof(value));
        metrics_family(m, rows[i].name, rows[i].type, rows[i].help);
        metrics_u64(m, rows[i].name, labels, value);
    }
}

void
metrics_label_value(struct metrics *m, const char *value)
{
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '\\' || *p == '"')
            metrics_printf(m, "\\%c", *p);
        else if (*p == '\n')
            metrics_printf(m, "\\n");
        else
            metrics_printf(m, "%c", *p);
    }
}

char *
metrics_take(struct metrics *m, size_t *len)
{
    char *text = NULL;
    *len = 0;
    if (!m->failed && reserve(m, 0)) {
        m->text[m->len] = '\0';
        text = m->text;
        *len = m->len;
        m->text = NULL;
    }
    free(m->text);
    m->text = NULL;
    m->len = m->cap = 0;
    m->failed = false;
    return text;
}
