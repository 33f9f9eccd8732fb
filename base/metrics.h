/*
 * The one Prometheus text writer (exposition format 0.0.4) for every
 * daemon's /metrics.
 *
 * A struct metrics owns the text being built; lines of any length are
 * appended whole. Running out of memory is remembered rather than reported
 * per call, so writers stay one line per sample; metrics_take() then
 * returns NULL and the caller answers 500.
 */
#ifndef ZTR_BASE_METRICS_H
#define ZTR_BASE_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct metrics;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* "# HELP name help" and "# TYPE name type" (type: counter, gauge,
 * histogram). */
void metrics_family(struct metrics *m, const char *name, const char *type, const char *help);

/* Raw text (a sample line with labels the caller formats). */
void metrics_printf(struct metrics *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* One sample: `name{labels} value`; labels is the text between the braces
 * (NULL or "" for none). */
void metrics_u64(struct metrics *m, const char *name, const char *labels, uint64_t value);
void metrics_i64(struct metrics *m, const char *name, const char *labels, int64_t value);

/* A family with a single sample. */
void metrics_gauge(struct metrics *m, const char *name, const char *help, const char *labels,
                   int64_t value);
void metrics_counter(struct metrics *m, const char *name, const char *help, const char *labels,
                     uint64_t value);

/* A table of uint64_t fields of one struct, one family each. */
struct metrics_row {
    const char *name;
    const char *type; /* "counter" or "gauge" */
    const char *help;
    size_t offset;    /* offsetof the uint64_t field */
};
void metrics_rows(struct metrics *m, const struct metrics_row *rows, size_t count,
                  const void *base, const char *labels);

/* Appends value as a label value, escaping '\', '"' and newlines. */
void metrics_label_value(struct metrics *m, const char *value);

/* Hands the text over (the caller frees it) and its length, or NULL when
 * memory ran out; m is empty afterwards. */
char *metrics_take(struct metrics *m, size_t *len);

#endif
