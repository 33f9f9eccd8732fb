/*
 * One line per event, `ts=... level=... msg="..." key=value ...` (logfmt,
 * the default) or `{"ts":"...","level":"...","msg":"...","key":value,...}`
 * (LOG_FORMAT=json: the same keys, one object per line), to stderr
 * (journald under systemd). Never on a hot path per byte or per frame.
 *
 * Values are escaped in both formats: whatever a peer puts in a name or a
 * reason stays one value of one field of one line.
 *
 * Secrets: every value registered with log_add_secret() is replaced by
 * [REDACTED] in any line that would contain it, as a second line of defence
 * behind "never pass a secret to the logger".
 */
#ifndef ZTR_BASE_LOG_H
#define ZTR_BASE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_LOGFMT = 0, LOG_FORMAT_JSON };

#define LOG_LINE_MAX 2048
#define LOG_SECRETS_MAX 8

/* Receives each finished line (without the trailing newline). The default
 * sink writes to stderr. */
typedef void (*log_sink_fn)(void *ctx, enum log_level level, const char *line);

void log_set_level(enum log_level level);
/* Returns 0, or -1 for an unknown name (debug, info, warn, error). */
int log_level_from_name(const char *name, enum log_level *out);
/* Returns 0, or -1 for an unknown name (logfmt, json). */
int log_format_from_name(const char *name, enum log_format *out);
void log_set_format(enum log_format format);
/* Whether stderr is the stream systemd connected to the journal:
 * JOURNAL_STREAM ("dev:ino") names stderr's device and inode. */
bool log_stderr_is_journal(void);
/* Prefixes each line written to stderr with its syslog priority, <3>
 * error, <4> warn, <6> info, <7> debug (sd-daemon(3)), so journald keeps
 * the level; sinks get the line without it. */
void log_set_journal_priority(bool enabled);
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

/* A rate limit for one kind of line that an unauthenticated peer can
 * trigger at will: each line must cost the journal a bounded amount, however
 * fast the peer asks. At most `burst` lines per `period_ms`; the rest are
 * dropped and counted, and the count is handed back with the first line
 * allowed after them so the caller can write one summary (suppressed=N).
 * The caller owns the struct; LOG_LIMIT_INIT sets it up. */
struct log_limit {
    int64_t period_ms;
    uint32_t burst;
    int64_t window_start_ms;
    uint32_t in_window;
    uint64_t suppressed;
};

#define LOG_LIMIT_INIT(burst_, period_ms_) {(period_ms_), (burst_), 0, 0, 0}

/* Whether one more line may be written at now_ms (monotonic). When it may,
 * *suppressed (optional) is how many were dropped since the last allowed
 * one, then reset to 0; when not, the drop is counted. */
bool log_limit_allow(struct log_limit *limit, int64_t now_ms, uint64_t *suppressed);

#define log_debug(msg, ...) log_event(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) log_event(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_event(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_event(LOG_ERROR, msg, __VA_ARGS__)

#endif
