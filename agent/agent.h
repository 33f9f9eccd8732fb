/*
 * The agent core shared by `connector` and `tunneler`: enrollment with
 * ENROLLMENT_TOKEN, the long-lived control-plane stream to the controller
 * (hello, heartbeats, pushes), the reconnect worker, certificate renewal
 * well before expiry, re-authentication when the certificate expired while
 * the agent was down, revocation, and /health + /metrics.
 *
 * One libev loop, one thread. A daemon describes itself with an
 * agent_spec and calls agent_main(); it gets callbacks for what the
 * controller pushes (allowlist, connectors) and adds its own fields to
 * hello. Credential changes (renewal, bundle) never tear down the control
 * stream or anything else already established.
 *
 * Exit statuses (for systemd's RestartPreventExitStatus=):
 *   0  stopped by a signal
 *   1  runtime failure (e.g. a listener could not bind)
 *   2  configuration error (missing ENROLLMENT_TOKEN, bad CA, bad trust domain)
 *   3  the controller revoked this node
 *   4  the controller refused enrollment (invalid token, permission denied)
 */
#ifndef ZTR_AGENT_AGENT_H
#define ZTR_AGENT_AGENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "net/tls.h"
#include "pki/pki.h"

enum agent_exit {
    AGENT_EXIT_OK = 0,
    AGENT_EXIT_RUNTIME = 1,
    AGENT_EXIT_CONFIG = 2,
    AGENT_EXIT_REVOKED = 3,
    AGENT_EXIT_ENROLLMENT_REFUSED = 4,
};

enum agent_state {
    AGENT_UNENROLLED,
    AGENT_ENROLLING,
    AGENT_CONNECTING,
    AGENT_ONLINE,
    AGENT_RECONNECTING,
    AGENT_RENEWING,   /* transient, while ONLINE */
    AGENT_EXPIRED,
    AGENT_REVOKED,
    AGENT_STATE_COUNT,
};

const char *agent_state_name(enum agent_state state);
/* Whether the transition table allows from → to. */
bool agent_transition_allowed(enum agent_state from, enum agent_state to);

/* The agent's log line for every successful control connection
 * (failure-modes §3.1). */
#define AGENT_MSG_STREAM_CONNECTED "control-plane stream connected"
#define AGENT_MSG_TOKEN_REQUIRED "ENROLLMENT_TOKEN is required"
#define AGENT_MSG_CA_MISMATCH "internal CA mismatch during renewal"

struct agent;
struct ev_loop;
struct metrics;

struct agent_spec {
    enum pki_role role;                  /* connector or tunneler */
    const char *default_state_dir;
    const char *default_health_listen;
    /* Extra configuration keys of this daemon (may be empty). */
    const struct config_key *extra_keys;
    size_t extra_key_count;
    /* Called once the configuration is loaded and before anything starts;
     * returns 0, or -1 with err (exit 2). */
    int (*configure)(void *ctx, struct agent *agent, const struct config *config,
                     struct ztr_err *err);
    /* Called when the loop runs and the identity is usable (to start data
     * listeners); may be NULL. Returns -1 with err to stop (exit 1). */
    int (*start)(void *ctx, struct agent *agent, struct ztr_err *err);
    /* Adds fields to hello (connector: data_listen, resources). */
    void (*add_hello)(void *ctx, json_t *hello);
    /* The enroll request's advertised addresses (connector IP SANs). */
    void (*add_enroll)(void *ctx, json_t *enroll);
    /* Pushes from the controller (already schema-checked). */
    void (*on_allowlist)(void *ctx, const json_t *msg);
    void (*on_connectors)(void *ctx, const json_t *msg);
    /* Adds daemon fields to /health and lines to /metrics (may be NULL). */
    void (*add_health)(void *ctx, json_t *health);
    void (*add_metrics)(void *ctx, struct metrics *metrics);
    /* Called before exit to close what start() opened. */
    void (*stop)(void *ctx);
    void *ctx;
};

/* Runs the agent until a signal or a final state; returns an exit status. */
int agent_main(const struct agent_spec *spec, int argc, char **argv);

/* For the daemon's data plane: the loop, the current TLS identity (chain,
 * key, bundle — updated in place on renewal), state and names. */
struct ev_loop *agent_loop(struct agent *agent);
/* The data plane's TLS context (created on the first call, owned by the
 * agent): the agent's identity and bundle, replaced in it on every renewal
 * and bundle change, so new handshakes use them and live sessions stay. */
struct tls_ctx *agent_data_tls(struct agent *agent, enum tls_side side, const char *alpn,
                               struct ztr_err *err);
enum agent_state agent_current_state(const struct agent *agent);
const char *agent_trust_domain(const struct agent *agent);
const char *agent_state_dir(const struct agent *agent);
const struct ztr_clock *agent_clock(const struct agent *agent);

/* Renewal schedule: the moment in [not_before, not_after] at 50 % of the
 * lifetime with ±10 % jitter (jitter_permille in [-100, 100]). */
int64_t agent_renew_at(int64_t not_before, int64_t not_after, int jitter_permille);

#endif
