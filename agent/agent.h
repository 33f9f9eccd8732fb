/*
 * The agent core shared by `connector` and `tunneler`: enrollment with
 * ENROLLMENT_TOKEN, the long-lived control-plane stream to the controller
 * (hello, heartbeats, pushes), the reconnect worker, certificate renewal
 * well before expiry, re-authentication once the certificate expired (by
 * proof of possession of its key, a retained token as the fallback, at most
 * 3 consecutive refused attempts), revocation, and /health + /metrics.
 *
 * One libev loop, one thread. A daemon describes itself with an
 * agent_spec (its schema starts with AGENT_CONFIG_KEYS) and calls
 * agent_main(), which runs the agent in the daemon skeleton (base/daemon.h);
 * it gets callbacks for what the controller pushes (allowlist, connectors)
 * and adds its own fields to hello. A test builds one with agent_new() on
 * its own loop and clock instead. Credential changes (renewal, bundle)
 * never tear down the control stream or anything else already established.
 *
 * Exit statuses (for systemd's RestartPreventExitStatus=):
 *   0  stopped by a signal
 *   1  runtime failure (e.g. a listener could not bind)
 *   2  configuration error (missing ENROLLMENT_TOKEN, bad CA, bad trust
 *      domain, a partial identity in STATE_DIR)
 *   3  stopped while REVOKED (a revoked agent stays up until stopped)
 *   4  the controller refused enrollment (invalid token, permission denied)
 *   5  stopped while EXPIRED for good (re-authentication failed 3 times)
 */
#ifndef ZTR_AGENT_AGENT_H
#define ZTR_AGENT_AGENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/daemon.h"
#include "net/tls.h"
#include "pki/pki.h"

enum agent_exit {
    AGENT_EXIT_OK = DAEMON_EXIT_OK,
    AGENT_EXIT_RUNTIME = DAEMON_EXIT_RUNTIME,
    AGENT_EXIT_CONFIG = DAEMON_EXIT_CONFIG,
    AGENT_EXIT_REVOKED = 3,
    AGENT_EXIT_ENROLLMENT_REFUSED = 4,
    AGENT_EXIT_EXPIRED = 5,
};

enum agent_state {
    AGENT_UNENROLLED,
    AGENT_ENROLLING,
    AGENT_CONNECTING,
    AGENT_ONLINE,
    AGENT_RECONNECTING,
    AGENT_RENEWING,   /* transient, while ONLINE */
    /* The certificate expired: one re-authentication attempt is in flight
     * (proof of possession, then the retained token). */
    AGENT_REAUTHENTICATING,
    /* Expired and not re-authenticated: waiting for the next attempt, or
     * for good after 3 refused ones (terminal, kept across restarts). */
    AGENT_EXPIRED,
    AGENT_REVOKED,    /* terminal: the agent stays up, /health says so */
    AGENT_STATE_COUNT,
};

const char *agent_state_name(enum agent_state state);
/* Whether the transition table allows from → to. */
bool agent_transition_allowed(enum agent_state from, enum agent_state to);

/* The agent's log line for every successful control connection
 * (failure-modes §3.1). */
#define AGENT_MSG_STREAM_CONNECTED "control-plane stream connected"
#define AGENT_MSG_TOKEN_REQUIRED "ENROLLMENT_TOKEN is required"
/* A key without its certificate, or the reverse: never a fallback to
 * enrollment or to running without an identity (exit 2). */
#define AGENT_MSG_IDENTITY_INCOMPLETE "stored identity is incomplete"
/* Consecutive refused re-authentication attempts before EXPIRED for good. */
#define AGENT_REAUTH_ATTEMPTS 3
/* CONTROLLER_ADDR: at most this many controllers, each host:port this long. */
#define AGENT_CONTROLLERS_MAX 8
#define AGENT_CONTROLLER_ADDR_MAX 128

/* Splits CONTROLLER_ADDR ("host:port[,host:port...]", spaces around
 * entries ignored) into out, checking each (a host name or an IP). */
int agent_controllers_parse(const char *list,
                            char out[AGENT_CONTROLLERS_MAX][AGENT_CONTROLLER_ADDR_MAX],
                            size_t *count, struct ztr_err *err);

struct agent;
struct ev_loop;
struct metrics;

/* What both agents are configured with (AGENT_CONFIG_KEYS fills it). */
struct agent_settings {
    char enrollment_token[CONFIG_VALUE_MAX + 1]; /* secret; "" = none */
    char controller_addr[1024];                  /* one or more host:port, comma-separated */
    char controller_ca[1024];                    /* path; "" = unset */
    char trust_domain[PKI_TRUST_DOMAIN_MAX + 1];
    char state_dir[1024];
    char node_name[PKI_NAME_MAX + 1];            /* "" = from the stored identity */
    char health_listen[128];                     /* "" = no /health listener */
    int64_t reconnect_min_delay_ms;
    int64_t reconnect_max_delay_ms;
    uint64_t reconnect_attempts;
    bool reauth_on_expiry;                       /* proof of possession after an expiry */
    char log_level[16];                          /* "" = leave the logger's level */
    char log_format[16];                         /* applied by base/daemon.c */
};

/* The rows every agent's schema starts with, bound to STRUCT's MEMBER (a
 * struct agent_settings); the two defaults differ per daemon. */
#define AGENT_CONFIG_KEYS(STRUCT, MEMBER, STATE_DIR_DEFAULT, HEALTH_LISTEN_DEFAULT)            \
    CONFIG_KEY("ENROLLMENT_TOKEN", CONFIG_SECRET, NULL,                                         \
               "one-time enrollment token (first start only)", STRUCT, MEMBER.enrollment_token), \
    CONFIG_KEY("CONTROLLER_ADDR", CONFIG_STRING, NULL,                                          \
               "controller control-plane address host:port (a host name or IP); several, "      \
               "comma-separated, are tried in turn", STRUCT, MEMBER.controller_addr),           \
    CONFIG_KEY("CONTROLLER_CA", CONFIG_STRING, NULL,                                            \
               "PEM file of the CA to trust for the controller", STRUCT, MEMBER.controller_ca), \
    CONFIG_KEY("TRUST_DOMAIN", CONFIG_STRING, NULL, "SPIFFE trust domain, e.g. example.org",    \
               STRUCT, MEMBER.trust_domain),                                                     \
    CONFIG_KEY("STATE_DIR", CONFIG_STRING, STATE_DIR_DEFAULT,                                   \
               "where the key, certificate and bundle live", STRUCT, MEMBER.state_dir),         \
    CONFIG_KEY("NODE_NAME", CONFIG_STRING, NULL,                                                \
               "this node's name (its SPIFFE ID's last segment)", STRUCT, MEMBER.node_name),    \
    CONFIG_KEY("HEALTH_LISTEN", CONFIG_ADDR, HEALTH_LISTEN_DEFAULT,                             \
               "/health and /metrics listener", STRUCT, MEMBER.health_listen),                  \
    CONFIG_KEY("RECONNECT_MIN_DELAY", CONFIG_DURATION, "1s", "first reconnect backoff ceiling", \
               STRUCT, MEMBER.reconnect_min_delay_ms),                                          \
    CONFIG_KEY("RECONNECT_MAX_DELAY", CONFIG_DURATION, "60s", "largest reconnect delay",        \
               STRUCT, MEMBER.reconnect_max_delay_ms),                                          \
    CONFIG_KEY("RECONNECT_ATTEMPTS", CONFIG_UINT, "10",                                         \
               "attempts before reporting disconnected", STRUCT, MEMBER.reconnect_attempts),    \
    CONFIG_KEY("REAUTH_ON_EXPIRY", CONFIG_BOOL, "true",                                         \
               "re-authenticate an expired certificate by proof of possession of its key",      \
               STRUCT, MEMBER.reauth_on_expiry),                                                \
    CONFIG_KEY("LOG_LEVEL", CONFIG_STRING, "info", "debug, info, warn or error", STRUCT,        \
               MEMBER.log_level),                                                               \
    CONFIG_KEY("LOG_FORMAT", CONFIG_STRING, "logfmt",                                           \
               "logfmt (key=value) or json (one object per line)", STRUCT, MEMBER.log_format)

struct agent_spec {
    enum pki_role role;                  /* connector or tunneler */
    /* agent_main only: the daemon's whole schema (AGENT_CONFIG_KEYS first),
     * the struct it fills, and the struct agent_settings inside that. */
    const struct config_key *schema;
    size_t schema_len;
    void *settings;
    struct agent_settings *agent_settings;
    /* agent_main only: called once the agent exists and before anything
     * starts, to check the daemon's own settings (config: for error
     * origins and lists); returns 0, or -1 with err (exit 2). */
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
    /* The trust bundle changed (already in agent_data_tls): live data
     * sessions re-verify their peers against it. May be NULL. */
    void (*on_bundle)(void *ctx);
    /* The agent's certificate changed (renewal, re-authentication; already
     * in agent_data_tls for new handshakes): live data sessions present it
     * to their peers (agent_identity gives chain and key). May be NULL. */
    void (*on_identity)(void *ctx);
    /* The node was revoked: close what start() opened now (stop() still
     * runs at exit). May be NULL. */
    void (*on_revoked)(void *ctx);
    /* Adds daemon fields to each heartbeat (connector: the allowlist it
     * enforces). May be NULL. */
    void (*add_heartbeat)(void *ctx, json_t *heartbeat);
    /* An `explain_request` from the controller, on the authenticated
     * control stream (nothing else reaches it): returns the answer's
     * fields (the caller adds type and id and sends it), or NULL to send
     * nothing. May be NULL: the request is logged and not answered. */
    json_t *(*explain)(void *ctx, const json_t *request);
    /* Adds daemon fields to /health and lines to /metrics (may be NULL). */
    void (*add_health)(void *ctx, json_t *health);
    void (*add_metrics)(void *ctx, struct metrics *metrics);
    /* Connectors: the controller's drain message (schema-checked). May be
     * NULL (a drain message is then logged and ignored). */
    void (*on_drain)(void *ctx, const json_t *msg);
    /* The first SIGTERM (agent_main only); may be NULL. Returns true when
     * the daemon winds down first (a connector drains) and then calls
     * agent_finish; false stops at once. */
    bool (*on_terminate)(void *ctx);
    /* Called before exit to close what start() opened. */
    void (*stop)(void *ctx);
    void *ctx;
};

/* Runs the agent in the daemon skeleton until a signal or a final state;
 * returns an exit status. argv holds only flags. */
int agent_main(const struct agent_spec *spec, int argc, char **argv);

/* Checks settings for role: TRUST_DOMAIN and CONTROLLER_ADDR present, the
 * trust domain and NODE_NAME usable in a SPIFFE ID, the reconnect delays,
 * LOG_LEVEL (applied to the logger when set). config (may be NULL) gives
 * errors their origin. */
int agent_settings_check(const struct agent_settings *settings, enum pki_role role,
                         const struct config *config, struct ztr_err *err);

/*
 * A new agent on loop and clock (both the caller's, and must outlive it);
 * spec is borrowed for the agent's lifetime; settings are checked
 * (agent_settings_check) and copied. pki_init() must have run. Nothing
 * starts until agent_start(). *out is the caller's (agent_free).
 */
int agent_new(struct ev_loop *loop, const struct ztr_clock *clock, const struct agent_spec *spec,
              const struct agent_settings *settings, struct agent **out, struct ztr_err *err);
/*
 * Loads the identity from STATE_DIR (or prepares enrollment), opens
 * /health, starts the daemon's data plane (spec->start) when an identity
 * exists, and begins connecting: from here on the caller runs the loop.
 * -1 with err when it cannot start (agent_exit_code() says 1 or 2).
 * The agent may also stop at once (agent_exit_code() >= 0).
 */
int agent_start(struct agent *agent, struct ztr_err *err);
/* Closes the control stream (letting it finish on the loop), stops the
 * daemon's data plane (spec->stop), frees the agent. NULL is a no-op. */
void agent_free(struct agent *agent);
/* The status the agent chose to stop with (REVOKED: 3, ...), or -1 while
 * it runs; when it chooses one it also breaks the loop (ev_break). */
int agent_exit_code(const struct agent *agent);
/* Ends the loop with exit status 0 (after on_terminate returned true). */
void agent_finish(struct agent *agent);
/* Sends msg (taken) on the control stream; false (msg dropped) when there
 * is no welcomed stream. */
bool agent_send(struct agent *agent, json_t *msg);
/* SIGHUP: retry the controller now instead of waiting out the backoff. */
void agent_retry_now(struct agent *agent);

/* For the daemon's data plane: the loop, the current TLS identity (chain,
 * key, bundle — updated in place on renewal), state and names. */
struct ev_loop *agent_loop(struct agent *agent);
/* The data plane's TLS context (created on the first call, owned by the
 * agent): the agent's identity and bundle, replaced in it on every renewal
 * and bundle change, so new handshakes use them and live sessions stay. */
struct tls_ctx *agent_data_tls(struct agent *agent, enum tls_side side, const char *alpn,
                               struct ztr_err *err);
/* Federation: the bundles of peer trust domains whose nodes this agent
 * meets on the data plane (a connector: the tunnelers granted to it; a
 * tunneler: the connectors it may dial), as the controller sends them:
 * [{trust_domain, bundle}]. A data-plane peer is then verified against the
 * bundle of the trust domain it claims and that trust domain only (ours:
 * our bundle; a listed peer's: its bundle; any other: refused). Replaces
 * the previous set (NULL or [] removes them all); agent_data_tls's new
 * handshakes use it at once, live sessions at their next recheck; other
 * loops' contexts at their next copy (*changed: make them one). */
int agent_set_peer_bundles(struct agent *agent, const json_t *peers, bool *changed,
                           struct ztr_err *err);
/* What agent_data_tls is made of, for a worker loop's own context (a
 * tls_ctx serves one loop): the current chain, key and bundle (borrowed:
 * valid until the next on_identity / on_bundle, when the worker's copy is
 * brought up to date with tls_ctx_update), the clock and I/O buffering. */
int agent_data_tls_config(const struct agent *agent, enum tls_side side, const char *alpn,
                          struct tls_ctx_config *out, struct ztr_err *err);
/* A copy of that material, owned by the copy (the key zeroed when freed):
 * made on the agent's loop and handed to a worker loop, which builds or
 * updates its own context from it. NULL when out of memory or before
 * there is an identity. */
struct agent_tls_copy;
struct agent_tls_copy *agent_data_tls_copy(const struct agent *agent, enum tls_side side,
                                           const char *alpn);
void agent_tls_copy_free(struct agent_tls_copy *copy);
/* *ctx NULL: a new context from copy; else copy's chain, key and bundle
 * replace ctx's (tls_ctx_update: new handshakes only). */
int agent_tls_copy_apply(const struct agent_tls_copy *copy, struct tls_ctx **ctx,
                         struct ztr_err *err);
/* On a worker loop: applies copy to its context *ctx, then (bundle) has
 * its live sessions' peers checked again with recheck(target) and
 * (identity) presents the copy's certificate to them with present();
 * failures are logged, naming the worker. */
void agent_tls_copy_take(const struct agent_tls_copy *copy, struct tls_ctx **ctx,
                         unsigned worker, bool identity, bool bundle,
                         void (*recheck)(void *target),
                         void (*present)(void *target, const char *chain, size_t len,
                                         const struct pki_key *key),
                         void *target);
/* The copy's chain (PEM, leaf first) and its key, parsed (the caller's,
 * pki_key_free): what a renewal presents to live sessions. */
const char *agent_tls_copy_chain(const struct agent_tls_copy *copy, size_t *len);
int agent_tls_copy_key(const struct agent_tls_copy *copy, struct pki_key **key,
                       struct ztr_err *err);
/* The current certificate chain (PEM, leaf first) and its key, owned by
 * the agent and valid until the next identity change (on_identity). -1
 * before there is an identity. */
int agent_identity(const struct agent *agent, const char **chain_pem, size_t *chain_len,
                   const struct pki_key **key);
enum agent_state agent_current_state(const struct agent *agent);
const char *agent_trust_domain(const struct agent *agent);
/* This node's SPIFFE ID ("" before enrollment); the buffer lives as long as
 * the agent. */
const char *agent_spiffe_id(const struct agent *agent);
const char *agent_state_dir(const struct agent *agent);
const struct ztr_clock *agent_clock(const struct agent *agent);

/* Renewal schedule: the moment in [not_before, not_after] at 50 % of the
 * lifetime with ±10 % jitter (jitter_permille in [-100, 100]). */
int64_t agent_renew_at(int64_t not_before, int64_t not_after, int jitter_permille);

#endif
