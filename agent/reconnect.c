/* The reconnect worker (backoff with full jitter) and re-authentication. */
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
    if (a->state == AGENT_EXPIRED) {
        if (a->token == NULL)
            return agent_schedule_reconnect(a, "expired, no token");
        a->reauth = true;
        agent_set_state(a, AGENT_ENROLLING, "slow re-enrollment retry");
    }
    agent_ctl_connect(a);
}

/* Bounded exponential backoff with full jitter; once the budget is spent
 * the agent says it is disconnected and keeps trying at the slowest pace. */
void
agent_schedule_reconnect(struct agent *a, const char *reason)
{
    if (a->exit_code >= 0)
        return;
    agent_controller_advance(a);
    int64_t delay_ms;
    if (a->state == AGENT_EXPIRED) {
        delay_ms = a->reconnect_policy.cap_ms;
    } else if (backoff_next(&a->reconnect_backoff, &delay_ms) != 0) {
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

void
agent_start_reauth(struct agent *a, const char *why)
{
    if (a->token == NULL) {
        /* A connector token names the IPs tunnelers dial: without them the
         * new certificate would name none. */
        log_error("certificate expired and no ENROLLMENT_TOKEN is configured",
                  "not_after=%lld hint=\"issue a new token: controller token create --role %s "
                  "--name %s%s, then set ENROLLMENT_TOKEN and restart\"",
                  (long long)a->not_after, pki_role_name(a->spec->role), a->node_name,
                  a->spec->role == PKI_ROLE_CONNECTOR ? " --address IP..." : "");
        agent_set_state(a, AGENT_EXPIRED, why);
        agent_schedule_reconnect(a, "expired");
        return;
    }
    a->reauth = true;
    log_warn("re-enrolling with the retained token", "reason=\"%s\" attempt=%u", why,
             a->reauth_failures + 1);
    agent_set_state(a, AGENT_ENROLLING, why);
    agent_ctl_connect(a);
}
