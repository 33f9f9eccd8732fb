#include "base/clock.h"

#include <time.h>

static int64_t
read_clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
system_monotonic_ms(const struct ztr_clock *clock)
{
    (void)clock;
    return read_clock_ms(CLOCK_MONOTONIC);
}

static int64_t
system_wall_ms(const struct ztr_clock *clock)
{
    (void)clock;
    return read_clock_ms(CLOCK_REALTIME);
}

static const struct ztr_clock system_clock = {system_monotonic_ms, system_wall_ms, 0, 0};

const struct ztr_clock *
clock_system(void)
{
    return &system_clock;
}

static int64_t
manual_monotonic_ms(const struct ztr_clock *clock)
{
    return clock->manual_monotonic_ms;
}

static int64_t
manual_wall_ms(const struct ztr_clock *clock)
{
    return clock->manual_wall_ms;
}

void
clock_manual_init(struct ztr_clock *clock, int64_t wall_ms)
{
    clock->monotonic_ms = manual_monotonic_ms;
    clock->wall_ms = manual_wall_ms;
    clock->manual_monotonic_ms = 1000;
    clock->manual_wall_ms = wall_ms;
}

void
clock_manual_advance(struct ztr_clock *clock, int64_t ms)
{
    clock->manual_monotonic_ms += ms;
    clock->manual_wall_ms += ms;
}
