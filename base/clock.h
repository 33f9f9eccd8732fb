/*
 * Time, injectable. Everything that waits or compares times (backoff,
 * heartbeats, renewal, certificate validity) reads a struct ztr_clock, so
 * tests drive time by hand and run in milliseconds.
 *
 * Two readings: monotonic milliseconds for timers, wall-clock milliseconds
 * since the Unix epoch for certificate validity and logs.
 */
#ifndef ZTR_BASE_CLOCK_H
#define ZTR_BASE_CLOCK_H

#include <stdint.h>

struct ztr_clock {
    int64_t (*monotonic_ms)(const struct ztr_clock *clock);
    int64_t (*wall_ms)(const struct ztr_clock *clock);
    /* Used by the manual clock only. */
    int64_t manual_monotonic_ms;
    int64_t manual_wall_ms;
};

/* The process-wide real clock; never NULL, never freed. */
const struct ztr_clock *clock_system(void);

/* A clock that only moves when told to. */
void clock_manual_init(struct ztr_clock *clock, int64_t wall_ms);
void clock_manual_advance(struct ztr_clock *clock, int64_t ms);

static inline int64_t
clock_monotonic_ms(const struct ztr_clock *clock)
{
    return clock->monotonic_ms(clock);
}

static inline int64_t
clock_wall_ms(const struct ztr_clock *clock)
{
    return clock->wall_ms(clock);
}

static inline int64_t
clock_wall_s(const struct ztr_clock *clock)
{
    return clock->wall_ms(clock) / 1000;
}

#endif
