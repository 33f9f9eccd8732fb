/* The agent state machine as a table, and the renewal schedule: see agent.h. */
#include "agent/agent.h"


static const char *const state_names[AGENT_STATE_COUNT] = {
    [AGENT_UNENROLLED] = "UNENROLLED", [AGENT_ENROLLING] = "ENROLLING",
    [AGENT_CONNECTING] = "CONNECTING", [AGENT_ONLINE] = "ONLINE",
    [AGENT_RECONNECTING] = "RECONNECTING", [AGENT_RENEWING] = "RENEWING",
    [AGENT_REAUTHENTICATING] = "REAUTHENTICATING",
    [AGENT_EXPIRED] = "EXPIRED",       [AGENT_REVOKED] = "REVOKED",
};

/* The whole state machine, one row per state: where it may go next.
 * An expired certificate leaves every connected state for
 * REAUTHENTICATING at once (a timer at not_after, not a disconnect); each
 * entry into it fires one attempt. A refused attempt waits in EXPIRED for
 * the next one, or stays there for good after AGENT_REAUTH_ATTEMPTS; a new
 * certificate goes on to CONNECTING. REVOKED goes nowhere. ENROLLING is
 * the first enrollment only. */
static const bool transitions[AGENT_STATE_COUNT][AGENT_STATE_COUNT] = {
    [AGENT_UNENROLLED] = {[AGENT_ENROLLING] = true, [AGENT_CONNECTING] = true,
                          [AGENT_REAUTHENTICATING] = true, [AGENT_EXPIRED] = true},
    [AGENT_ENROLLING] = {[AGENT_CONNECTING] = true},
    [AGENT_CONNECTING] = {[AGENT_ONLINE] = true, [AGENT_RECONNECTING] = true,
                          [AGENT_REAUTHENTICATING] = true, [AGENT_REVOKED] = true},
    [AGENT_ONLINE] = {[AGENT_RENEWING] = true, [AGENT_RECONNECTING] = true,
                      [AGENT_REAUTHENTICATING] = true, [AGENT_REVOKED] = true},
    [AGENT_RECONNECTING] = {[AGENT_ONLINE] = true, [AGENT_REAUTHENTICATING] = true,
                            [AGENT_REVOKED] = true},
    [AGENT_RENEWING] = {[AGENT_ONLINE] = true, [AGENT_RECONNECTING] = true,
                        [AGENT_REAUTHENTICATING] = true, [AGENT_REVOKED] = true},
    [AGENT_REAUTHENTICATING] = {[AGENT_CONNECTING] = true, [AGENT_EXPIRED] = true,
                                [AGENT_REVOKED] = true},
    [AGENT_EXPIRED] = {[AGENT_REAUTHENTICATING] = true},
    [AGENT_REVOKED] = {false},
};

const char *
agent_state_name(enum agent_state state)
{
    return (unsigned)state < AGENT_STATE_COUNT ? state_names[state] : "?";
}

bool
agent_transition_allowed(enum agent_state from, enum agent_state to)
{
    if ((unsigned)from >= AGENT_STATE_COUNT || (unsigned)to >= AGENT_STATE_COUNT)
        return false;
    return transitions[from][to];
}

int64_t
agent_renew_at(int64_t not_before, int64_t not_after, int jitter_permille)
{
    if (jitter_permille < -100)
        jitter_permille = -100;
    if (jitter_permille > 100)
        jitter_permille = 100;
    int64_t lifetime = not_after - not_before;
    return not_before + lifetime * (500 + jitter_permille) / 1000;
}
