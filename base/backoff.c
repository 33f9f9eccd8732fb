#include "base/backoff.h"

#include <sys/random.h>
#include <time.h>

struct backoff_policy
backoff_default_policy(void)
{
    struct backoff_policy policy = {1000, 60000, 10};
    return policy;
}

static uint64_t
random_seed(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        /* Jitter is not a secret; a clock-derived seed still spreads a fleet. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32);
    }
    return seed != 0 ? seed : 0x9e3779b97f4a7c15ULL;
}

void
backoff_init(struct backoff *backoff, const struct backoff_policy *policy, uint64_t seed)
{
    backoff->policy = *policy;
    if (backoff->policy.base_ms <= 0)
        backoff->policy.base_ms = 1;
    if (backoff->policy.cap_ms < backoff->policy.base_ms)
        backoff->policy.cap_ms = backoff->policy.base_ms;
    backoff->attempts = 0;
    backoff->rng_state = seed != 0 ? seed : random_seed();
}

/* xorshift64*: small, fast, good enough for jitter. */
static uint64_t
next_random(struct backoff *backoff)
{
    uint64_t x = backoff->rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    backoff->rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

int64_t
backoff_ceiling_ms(const struct backoff *backoff)
{
    const int64_t cap = backoff->policy.cap_ms;
    int64_t ceiling = backoff->policy.base_ms;
    /* Saturate instead of doubling past cap: a cap near INT64_MAX would
     * otherwise overflow. */
    for (unsigned i = 0; i < backoff->attempts && ceiling < cap; i++)
        ceiling = ceiling > cap / 2 ? cap : ceiling * 2;
    return ceiling;
}

int
backoff_next(struct backoff *backoff, int64_t *delay_ms)
{
    if (backoff->policy.max_attempts != 0 && backoff->attempts >= backoff->policy.max_attempts)
        return -1;
    int64_t ceiling = backoff_ceiling_ms(backoff);
    *delay_ms = (int64_t)(next_random(backoff) % ((uint64_t)ceiling + 1));
    backoff->attempts++;
    return 0;
}

int
backoff_next_deadline(struct backoff *backoff, const struct ztr_clock *clock,
                      int64_t *deadline_ms)
{
    int64_t delay;
    if (backoff_next(backoff, &delay) != 0)
        return -1;
    *deadline_ms = clock_monotonic_ms(clock) + delay;
    return 0;
}

void
backoff_reset(struct backoff *backoff)
{
    backoff->attempts = 0;
}
