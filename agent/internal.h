/*
 * The agent's internals, shared by the files of agent/ and by nothing else:
 * the one struct agent, and the functions one concern offers the others.
 * Everything runs on the agent's loop; nothing here is thread-safe.
 */
#ifndef ZTR_AGENT_INTERNAL_H
#define ZTR_AGENT_INTERNAL_H

#include <ev.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/agent.h"
#include "base/backoff.h"
#include "ctl/stream.h"
#include "net/http.h"
#include "net/resolver.h"

#define STATE_FILE_MAX (256 * 1024)
/* STATE_DIR/reauth.json: written when re-authentication failed
 * AGENT_REAUTH_ATTEMPTS times in a row, so that EXPIRED stays final across
 * restarts (reauth.c). */
#define REAUTH_STATE_FILE "reauth.json"

/* How one re-authentication attempt proves the node: the expired key
 * first, the retained ENROLLMENT_TOKEN as the fallback. */
enum reauth_method { REAUTH_NONE, REAUTH_PROOF, REAUTH_TOKEN };

struct counters {
    uint64_t reconnect_scheduled;
    uint64_t reconnect_failed;
    uint64_t auth_expired;
    uint64_t auth_revoked;
    uint64_t auth_unavailable;
    uint64_t renewals_ok;
    uint64_t renewals_failed;
    uint64_t connects;
    uint64_t reauth_ok;
    uint64_t reauth_failed;
};

struct agent {
    const struct agent_spec *spec;
    struct ev_loop *loop;
    const struct ztr_clock *clock;

    char trust_domain[PKI_TRUST_DOMAIN_MAX + 1];
    char state_dir[1024];
    char node_name[PKI_NAME_MAX + 1];
    char controller_addr[256];     /* the controller dialed now: one of controllers */
    char controllers[AGENT_CONTROLLERS_MAX][AGENT_CONTROLLER_ADDR_MAX];
    size_t controller_count;
    size_t controller_index;
    /* The addresses controller_addr's name had at its last lookup, and the
     * one dialed now: the next attempt dials the next of them, and a new
     * lookup starts once all were tried. */
    struct net_addrs resolved;
    size_t resolved_index;
    struct net_resolver *resolver;
    char controller_ca_path[1024];
    char health_listen[128];
    char *token;
    char *controller_ca_pem;
    size_t controller_ca_len;
    struct backoff_policy reconnect_policy;

    /* identity */
    bool have_identity;
    char node_id[64];
    char spiffe_id[PKI_SPIFFE_ID_MAX + 1];
    char *chain_pem, *key_pem, *bundle_pem;
    size_t chain_len, key_len, bundle_len;
    int64_t not_before, not_after, renew_at;
    char cert_serial[2 * 20 + 1];       /* the leaf's, named in renew requests */
    struct tls_ctx *ctl_tls;
    struct tls_ctx *data_tls;      /* the data plane's (agent_data_tls), same identity */
    json_t *peer_bundles;          /* federation: peer trust domain -> bundle PEM (peers.c) */
    struct tls_trust data_trusts[TLS_TRUSTS_MAX]; /* ours, then the peers' (agent_refresh_trusts) */
    size_t data_trust_count;
    struct tls_ctx *enroll_tls;    /* no identity; trusts CONTROLLER_CA (or the bundle) */

    /* control stream */
    enum agent_state state;
    struct ctl_stream *ctl;
    bool welcomed;
    bool enrolled_handover;      /* the enrollment stream closes: go straight to mTLS */
    bool budget_exhausted;

    /* re-authentication after an expiry (reauth.c) */
    bool reauth_on_expiry;
    enum reauth_method reauth_method;   /* of the attempt in flight */
    unsigned reauth_failures;           /* consecutive refused attempts */
    bool reauth_terminal;               /* EXPIRED for good: no more attempts */
    bool reauth_connect_now;            /* the closing stream hands over at once */
    bool reauth_registering;            /* a new certificate: reset all at welcome */
    struct pki_key *reauth_anchor;      /* the expired certificate's key, kept once */
    char *reauth_csr;                   /* the attempt's fresh key's CSR */
    ev_timer expiry_timer;              /* at not_after */
    struct pki_key *key;                /* the identity's key, parsed (proofs) */
    int64_t heartbeat_interval_ms;
    int64_t last_ack_mono_ms;
    int64_t last_heartbeat_wall;
    uint64_t heartbeat_seq;
    int64_t bundle_version; /* of the last bundle message applied; 0: none yet */
    struct backoff reconnect_backoff;
    struct backoff renew_backoff;

    /* renewal in flight */
    struct pki_key *pending_key;
    char *pending_key_pem;
    size_t pending_key_len;
    char *pending_chain;

    ev_timer reconnect_timer, heartbeat_timer, renew_timer;
    struct http_server *health;
    struct counters counters;
    bool ready_notified;
    bool daemon_started;
    int exit_code;
};

/* the life cycle (agent.c) */
void agent_set_state(struct agent *a, enum agent_state to, const char *reason);
void agent_stop(struct agent *a, int exit_code);

/* identity files in STATE_DIR (identity.c) */
int agent_write_state_file(const struct agent *a, const char *name, const char *text, size_t len,
                 mode_t mode, struct ztr_err *err);
void agent_replace_text(char **field, size_t *field_len, char *value, size_t len, bool secret);
int agent_adopt_identity(struct agent *a, int64_t received_at, struct ztr_err *err);
int agent_load_identity(struct agent *a, bool *found, struct ztr_err *err);
/* Replaces the pending key (enrollment, renewal) with a fresh one and
 * makes its CSR for NODE_NAME; *csr_pem is the caller's to free. */
int agent_new_pending_key(struct agent *a, char **csr_pem, struct ztr_err *err);
/* The enrollment's key: read from STATE_DIR/enroll-key.pem (an earlier
 * attempt's) or made and written there (0600) before the controller is
 * asked; a disk that refuses it fails here, with the token unspent. */
int agent_prepare_enroll_key(struct agent *a, struct ztr_err *err);
/* A CSR for the enrollment key (prepared first if it is not yet). */
int agent_enroll_csr(struct agent *a, char **csr_pem, struct ztr_err *err);
/* The enrolled pair is committed: the pending enrollment key goes. */
int agent_enrollment_kept(struct agent *a, struct ztr_err *err);
/* Makes the pending key and chain (PEM, verified by the caller) the
 * identity: on disk, in memory and in the TLS contexts. */
int agent_install_pending_identity(struct agent *a, const char *chain, struct ztr_err *err);

/* enrollment (enroll.c); re-authentication reuses its reply handling */
void agent_send_enroll(struct agent *a);
void agent_start_daemon(struct agent *a);
void agent_handle_enrolled(struct agent *a, const json_t *msg);
void agent_enrollment_refused(struct agent *a, const char *message);

/* the control stream (control.c) */
void agent_ctl_send(struct agent *a, json_t *msg);
void agent_heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents);
bool agent_identity_expired(const struct agent *a);
void agent_ctl_connect(struct agent *a);
/* After a failed attempt or a lost stream: the next address of the
 * controller's name, else the next controller of the list (the reconnect
 * worker moves through them with its backoff). */
void agent_controller_advance(struct agent *a);

/* federation peers' bundles on the data plane (peers.c): data_trusts
 * rebuilt from bundle_pem and peer_bundles; and put into data_tls. */
void agent_refresh_trusts(struct agent *a);
int agent_update_data_trust(struct agent *a, struct ztr_err *err);

/* renewal and trust bundle updates (renew.c) */
void agent_renew_cb(struct ev_loop *loop, ev_timer *w, int revents);
void agent_schedule_renewal(struct agent *a);
void agent_renewal_failed(struct agent *a, const char *why);
void agent_handle_renewed(struct agent *a, const json_t *msg);
void agent_handle_bundle(struct agent *a, const json_t *msg);

/* the reconnect worker (reconnect.c) */
void agent_reconnect_cb(struct ev_loop *loop, ev_timer *w, int revents);
void agent_schedule_reconnect(struct agent *a, const char *reason);

/* expiry and re-authentication (reauth.c) */
/* Arms the expiry timer at the identity's not_after. */
void agent_arm_expiry(struct agent *a);
void agent_expiry_cb(struct ev_loop *loop, ev_timer *w, int revents);
/* The certificate has expired (checked by the caller): leave ONLINE now,
 * count it, and start one re-authentication attempt. */
void agent_certificate_expired(struct agent *a, const char *why);
/* A transition into REAUTHENTICATING: fires exactly one attempt. */
void agent_begin_reauth(struct agent *a, const char *why);
/* What the attempt's stream sends once it is up (reauth_begin or enroll). */
void agent_reauth_on_ready(struct agent *a);
void agent_handle_reauth_challenge(struct agent *a, const json_t *msg);
/* The controller refused the attempt (code, message): the token next, or a
 * failure counted against the breaker. */
void agent_reauth_refused(struct agent *a, const char *code, const char *message);
/* The stream of an attempt closed without an answer. */
void agent_reauth_stream_lost(struct agent *a, const char *reason);
/* A new identity arrived by re-authentication / was registered (welcome). */
void agent_reauth_succeeded(struct agent *a);
void agent_reauth_registered(struct agent *a);
/* At start: the persisted verdict of earlier attempts; true when the agent
 * must stay EXPIRED (terminal) without trying. */
int agent_reauth_load(struct agent *a, bool *terminal, struct ztr_err *err);
/* The node was revoked: REVOKED for good, everything closed, /health up. */
void agent_revoked(struct agent *a, const char *reason);

/* /health and /metrics (health.c) */
void agent_health_handler(void *ctx, const struct http_request *request, struct http_response *response);

#endif
