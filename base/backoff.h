/*
 * Exponential backoff with full jitter: the n-th delay is uniform in
 * [0, min(cap, base * 2^n)] (AWS's "full jitter"), so a fleet that lost its
 * controller at the same moment does not come back in lockstep.
 *
 * Bounded: after max_attempts delays backoff_next() reports exhaustion and
 * the caller decides what "give up" means (the agents report themselves
 * disconnected and switch to a slow retry; they never spin).
 */
#ifndef ZTR_BASE_BACKOFF_H
#define ZTR_BASE_BACKOFF_H

#include <stdint.h>

#include "base/clock.h"

struct backoff_policy {
    int64_t base_ms;        /* first ceiling; default 1000 */
    int64_t cap_ms;         /* largest ceiling; default 60000 */
    unsigned max_attempts;  /* 0 = unbounded */
};

struct backoff {
    struct backoff_policy policy;
    unsigned attempts;
    uint64_t rng_state;
};

/* The defaults the agents use: 1 s → 60 s, 10 attempts. */
struct backoff_policy backoff_default_policy(void);

/* seed 0 draws a seed from the kernel; tests pass a fixed one. */
void backoff_init(struct backoff *backoff, const struct backoff_policy *policy, uint64_t seed);

/* Next delay in *delay_ms; returns 0, or -1 when max_attempts delays have
 * already been handed out (no delay is produced then). */
int backoff_next(struct backoff *backoff, int64_t *delay_ms);

/* Same, as an absolute monotonic deadline read from clock. */
int backoff_next_deadline(struct backoff *backoff, const struct ztr_clock *clock,
                          int64_t *deadline_ms);

/* The ceiling the next delay will be drawn under (for logs and /health). */
int64_t backoff_ceiling_ms(const struct backoff *backoff);

void backoff_reset(struct backoff *backoff);

static inline unsigned
backoff_attempts(const struct backoff *backoff)
{
    return backoff->attempts;
}

#endif
