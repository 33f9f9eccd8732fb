/* The reconnect worker (backoff with full jitter). */
#include "agent/internal.h"

#include "base/log.h"


void
agent_reconnect_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct agent *a = w->data;
    if (a->ctl != NULL || a->exit_code >= 0)
        return;
    /* Between two re-authentication attempts: the next one (reauth.c). */
    if (a->state == AGENT_EXPIRED) {
        if (!a->reauth_terminal)
            agent_begin_reauth(a, "next re-authentication attempt");
        return;
    }
    agent_ctl_connect(a);
}

/* Bounded exponential backoff with full jitter; once the budget is spent
 * the agent says it is disconnected and keeps trying at the slowest pace. */
void
agent_schedule_reconnect(struct agent *a, const char *reason)
{
    if (a->exit_code >= 0 || a->state == AGENT_REVOKED || a->reauth_terminal)
        return;
    agent_controller_advance(a);
    int64_t delay_ms;
    if (backoff_next(&a->reconnect_backoff, &delay_ms) != 0) {
        if (!a->budget_exhausted) {
            a->budget_exhausted = true;
            a->counters.reconnect_failed++;
            log_warn("controller unreachable: retry budget exhausted",
                     "attempts=%u status=disconnected retry_every_ms=%lld",
                     backoff_attempts(&a->reconnect_backoff),
                     (long long)a->reconnect_policy.cap_ms);
        }
        delay_ms = a->reconnect_policy.cap_ms;
    }
    a->counters.reconnect_scheduled++;
    log_info("reconnect scheduled", "in_ms=%lld attempt=%u reason=\"%s\"", (long long)delay_ms,
             backoff_attempts(&a->reconnect_backoff), reason);
    ev_timer_stop(a->loop, &a->reconnect_timer);
    ev_timer_set(&a->reconnect_timer, (double)delay_ms / 1000.0, 0);
    ev_timer_start(a->loop, &a->reconnect_timer);
}
