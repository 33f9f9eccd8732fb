/*
 * One line per event, `ts=... level=... msg="..." key=value ...`, to stderr
 * (journald under systemd). Never on a hot path per byte or per frame.
 *
 * Secrets: every value registered with log_add_secret() is replaced by
 * [REDACTED] in any line that would contain it, as a second line of defence
 * behind "never pass a secret to the logger".
 */
#ifndef ZTR_BASE_LOG_H
#define ZTR_BASE_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

#define LOG_LINE_MAX 2048
#define LOG_SECRETS_MAX 8

/* Receives each finished line (without the trailing newline). The default
 * sink writes to stderr. */
typedef void (*log_sink_fn)(void *ctx, enum log_level level, const char *line);

void log_set_level(enum log_level level);
/* Returns 0, or -1 for an unknown name (debug, info, warn, error). */
int log_level_from_name(const char *name, enum log_level *out);
void log_set_sink(log_sink_fn sink, void *ctx);
/* NULL restores stderr. */
void log_reset_sink(void);
/* Omits the ts= field (tests compare whole lines). */
void log_set_timestamps(int enabled);

/* The logger keeps its own copy. Values shorter than 4 bytes are refused
 * (returns -1): redacting them would mangle ordinary text. */
int log_add_secret(const char *secret);
void log_clear_secrets(void);

/* kv_fmt formats the key=value tail; may be NULL. Values that can hold
 * spaces should be written as key="%s". */
void log_event(enum log_level level, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(msg, ...) log_event(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) log_event(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_event(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_event(LOG_ERROR, msg, __VA_ARGS__)

#endif
