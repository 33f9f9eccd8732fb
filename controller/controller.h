/*
 * Private to controller/: the daemon's parts and how they call each other.
 *
 *   ca.c          the CA set in STATE_DIR (create, load operator CA, rotate)
 *   enroll.c      tokens: create, check, enroll an agent
 *   ctl_server.c  the mTLS control-plane listener and sessions
 *   admin.c       the admin API (under /api/admin/) and /health, /metrics
 *   admin_tls.c   the admin API's TLS certificate (ADMIN_TLS): the operator's,
 *                 or issued from the admin CA in STATE_DIR/admin-tls/
 *   explain.c     `controller explain`: why a tunneler may reach a resource (explain.h)
 *   federation.c  peers of other trust domains: tokens, accept, the link,
 *                 heartbeats, the sweep (federation.h)
 *   cli.c         the CLI subcommands, over the admin API
 *   daemon.c      its settings schema, start-up and shutdown in the daemon
 *                 skeleton (base/daemon.h)
 *
 * Everything runs on one libev loop in one thread.
 */
#ifndef ZTR_CONTROLLER_CONTROLLER_H
#define ZTR_CONTROLLER_CONTROLLER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "controller/cert_names.h"
#include "controller/changes.h"
#include "controller/fleet.h"
#include "controller/store.h"
#include "ctl/ctlmsg.h"
#include "pki/pki.h"

struct ev_loop;
struct http_server;
struct http_tls;
struct admin_tls;
struct ctl_server;
struct ca_set;
struct federation;

/* STATE_DIR's default; the CLI looks for the admin API's CA under it. */
#define CONTROLLER_STATE_DIR_DEFAULT "/var/lib/ztr-controller"
/* Where, under STATE_DIR, the CA of the certificate the controller issues
 * for its admin API (ADMIN_TLS=true without ADMIN_TLS_CERT) lives. */
#define ADMIN_TLS_CA_FILE "admin-tls/ca.pem"

/* The reason a revocation carries when the operator gave none. */
#define CONTROLLER_REVOKE_REASON "revoked by an administrator"

/* What `controller serve` is configured with; daemon.c's schema fills it. */
struct controller_settings {
    char trust_domain[PKI_TRUST_DOMAIN_MAX + 1];
    char state_dir[1024];
    char store_url[1024];          /* STORE_URL; "" = STATE_DIR/controller.db */
    char ca_seal_key_file[1024];   /* CA_SEAL_KEY_FILE: CAs shared through the store */
    char controller_listen[128];
    char controller_names[1024];   /* extra DNS names / IPs of the controller's certificate */
    char admin_listen[128];
    bool admin_listen_insecure;    /* allow a non-loopback ADMIN_LISTEN in plain HTTP */
    bool admin_tls;                /* serve the admin API over TLS 1.3 */
    char admin_tls_cert[1024];     /* operator's certificate (PEM), "" = issued by us */
    char admin_tls_key[1024];
    char admin_tls_names[1024];    /* extra DNS names / IPs of the issued certificate */
    char health_listen[128];       /* "" = off */
    char ca_cert[1024];            /* operator CA, "" = managed CA */
    char ca_key[1024];
    int64_t svid_ttl_s;
    int64_t heartbeat_interval_ms;
    int64_t token_ttl_s;           /* default TTL of new tokens */
    char admin_auth_token[CONFIG_VALUE_MAX + 1]; /* secret, wiped on exit */
    char log_level[16];
    char log_format[16]; /* applied by base/daemon.c */
    /* The events table is bounded by age and by count (the offline sweep
     * deletes the excess in batches): unauthenticated clients can add rows. */
    int64_t event_retention_s;     /* 1h..3650d */
    uint64_t event_max;            /* 1..100000000 */
    /* Control sessions held at once (0: the default, 20000). */
    uint64_t sessions_max;
    /* What a peer that has not authenticated may cost (0: the default). */
    uint64_t handshakes_per_source;      /* unauthenticated sessions per source */
    uint64_t enroll_failures_per_source; /* denied enrollments per source per minute */
    uint64_t hellos_per_node;            /* hellos per node per minute */
    /* How long after its certificate expired a node may still re-authenticate
     * by proof of possession of that certificate's key (0: never). */
    int64_t reauth_grace_s;
    /* Federation (federation.h): the listener ("" = off), the URL the
     * other side may dial us on, the link's pace, and optional identity
     * files (both or neither). */
    char federation_listen[128];
    char federation_url[STORE_URL_MAX + 1];
    int64_t federation_heartbeat_interval_ms;
    int64_t federation_sweep_interval_ms;
    int64_t heartbeat_stale_after_s;
    uint64_t federation_accept_failures_per_source;
    char federation_cert[1024];
    char federation_key[1024];
};

/* Counters exported on /metrics (Prometheus names in admin.c). */
struct controller_counters {
    uint64_t enrollments;
    uint64_t enrollment_denied;
    uint64_t renewals;
    uint64_t renewal_denied;
    uint64_t reauths;              /* re-authentications by proof of possession */
    uint64_t reauth_denied;
    uint64_t sessions_accepted;
    uint64_t sessions_rejected;
    uint64_t connections_refused;  /* closed at accept: per-source or global cap */
    uint64_t enroll_rate_limited;  /* enrollments refused: source over its failures */
    uint64_t hellos_rate_limited;
    uint64_t heartbeats;
    uint64_t revocations;
    uint64_t frames_in;
    uint64_t frames_out;
    uint64_t fed_accepts;            /* peers accepted (proposer side) */
    uint64_t fed_accept_denied;
    uint64_t fed_accept_rate_limited;
    uint64_t fed_links_refused;      /* link handshakes refused: unknown CA or trust domain */
    uint64_t fed_heartbeats;         /* federation heartbeats received */
    uint64_t explain_asks;             /* explain requests sent to connectors */
    uint64_t explain_answers_refused;  /* explain answers nobody asked that session for */
};

struct controller {
    struct ev_loop *loop;
    const struct ztr_clock *clock;
    struct controller_settings settings;
    struct store *store;
    struct ca_set *cas;
    struct ctl_server *ctl;
    struct federation *fed;        /* federation.c; NULL until started */
    /* What heartbeats report, in memory (fleet.h); ctl_server_start makes
     * it and ctl_server_stop writes it out and frees it. NULL otherwise:
     * the admin API then shows what the store has. */
    struct fleet *fleet;
    struct http_server *admin_http;
    struct http_server *health_http;
    struct cert_names ctl_names;
    struct changes *changes;       /* allowlist changes and their apply times (ctl_server) */   /* what the controller's own certificate names */
    struct admin_tls *admin_tls;   /* NULL: the admin API is plain HTTP (loopback) */
    char *admin_token;             /* ADMIN_AUTH_TOKEN: points at settings.admin_auth_token */
    struct controller_counters counters;
    int64_t started_at;
    /* Denied enrollments cost the journal and the events table a bounded
     * amount however fast an unauthenticated client asks (enroll.c sets
     * them up on first use; the counter above counts every denial). */
    struct log_limit denied_lines;
    struct log_limit denied_events;
    /* The same bound for announced addresses a token does not allow. */
    struct log_limit unallowed_lines;
    struct log_limit unallowed_events;
};

/* ---- ca.c ------------------------------------------------------------------ */

/* Opens the CA set: the operator CA when settings name one (errors: `failed
 * to read controller CA`, `invalid internal CA`, `CA certificate missing key
 * usage`), else the managed CAs in STATE_DIR/ca/, creating the first one. */
int ca_set_open(const struct controller_settings *settings, const struct ztr_clock *clock,
                struct ca_set **out, struct ztr_err *err);
void ca_set_free(struct ca_set *cas);
/* The CA that signs new certificates. */
struct pki_ca *ca_set_signer(struct ca_set *cas);
/* The oldest CA still in the bundle (signs the controller's own certificate,
 * which every agent must be able to verify, even one that missed a rotation). */
struct pki_ca *ca_set_oldest(struct ca_set *cas);
/* Every CA agents must trust (PEM, malloc()ed). */
int ca_set_bundle_pem(const struct ca_set *cas, char **pem, size_t *len, struct ztr_err *err);
int64_t ca_set_bundle_version(const struct ca_set *cas);
/* Adds a new CA to the bundle and makes it the signer; the previous ones
 * stay in the bundle until every leaf they signed has expired (their
 * retire time is now + svid_ttl). Refused for an operator CA. */
int ca_set_rotate(struct ca_set *cas, int64_t svid_ttl_s, struct ztr_err *err);
/* Controllers sharing a PostgreSQL store: the CA set lives in it, keys
 * sealed with seal_key (CA_SEAL_KEY_FILE). The store's set is taken when
 * there is one; else this controller's (files) is put there. */
int ca_set_share(struct ca_set *cas, struct store *store,
                 const uint8_t seal_key[PKI_SEAL_KEY_BYTES], struct ztr_err *err);
/* ca_set_open for a controller sharing store: the store's set when it holds
 * one (no files made here), else ca_set_open's put into it. */
int ca_set_open_shared(const struct controller_settings *settings, const struct ztr_clock *clock,
                       struct store *store, const uint8_t seal_key[PKI_SEAL_KEY_BYTES],
                       struct ca_set **out, struct ztr_err *err);
/* Takes the store's set again (after a "ca" change); *changed when its
 * version moved. */
int ca_set_reload(struct ca_set *cas, bool *changed, struct ztr_err *err);
/* Drops CAs past their retire time; *changed says whether the bundle did. */
int ca_set_prune(struct ca_set *cas, bool *changed, struct ztr_err *err);
/* Describes the set for the admin API: [{fingerprint, not_after, signer, retire_at}]. */
json_t *ca_set_describe(const struct ca_set *cas);
/* Issues a leaf for id (IPs optional) valid [now-60, now+ttl) with the signer. */
int ca_set_issue(struct ca_set *cas, const struct pki_spiffe_id *id, const uint8_t *public_der,
                 size_t public_len, const struct pki_ip *ips, size_t ip_count, int64_t ttl_s,
                 char **chain_pem, size_t *chain_len, struct ztr_err *err);

/* ---- enroll.c -------------------------------------------------------------- */

struct token_request {
    const char *role;          /* connector | tunneler */
    const char *name;          /* exact name, or prefix when name_is_prefix */
    bool name_is_prefix;
    int64_t uses;              /* >= 1 */
    int64_t ttl_s;             /* > 0 */
    bool replace;              /* may re-enroll a node whose certificate is valid */
    /* Connector tokens: JSON list of the IPs its certificate may name
     * (NULL or [] = none); refused on a tunneler token. */
    const json_t *addresses;
};

/* Creates a token; *token_text (malloc()ed, shown once) is "<id>.<secret>". */
int token_create(struct controller *c, const struct token_request *request, char **token_text,
                 struct store_token *record, struct ztr_err *err);

/* Handles an `enroll` message from an unauthenticated session: returns the
 * `enrolled` reply, or an `error` reply with code invalid_token /
 * permission_denied / bad_request (never NULL). */
json_t *enroll_handle(struct controller *c, const json_t *enroll, const char *peer_addr);

/* ---- reauth.c -------------------------------------------------------------- */

/* A fresh challenge (hex, 2 * CTLMSG_REAUTH_CHALLENGE_BYTES digits + NUL). */
int reauth_new_challenge(char out[2 * CTLMSG_REAUTH_CHALLENGE_BYTES + 1], struct ztr_err *err);
/* Handles a `reauth` on an unauthenticated session that was given
 * challenge (NULL or "": none outstanding) for node_id / spiffe_id (from its
 * reauth_begin): returns `reauthenticated`, `revoked`, or an `error` reply
 * (never NULL). The caller has already taken the challenge off the session. */
json_t *reauth_handle(struct controller *c, const char *challenge, const char *node_id,
                      const char *spiffe_id, const json_t *reauth, const char *peer_addr);

/* ---- ctl_server.c ---------------------------------------------------------- */

int ctl_server_start(struct controller *c, struct ztr_err *err);
void ctl_server_stop(struct ctl_server *server);
uint16_t ctl_server_port(const struct ctl_server *server);
size_t ctl_server_session_count(const struct ctl_server *server);
/* Recomputes what each session should have (bundle, allowlist, connectors)
 * and sends what changed. Call after any admin change. */
void ctl_server_push_all(struct ctl_server *server);
/* The connectors tunnelers may be handed now: [{id, spiffe_id, address,
 * served}] (served: what each announces and the operator bound). */
json_t *ctl_server_serving(struct controller *c);
/* Sends `revoked` to the node's session (if connected) and closes it. */
void ctl_server_revoke(struct ctl_server *server, const char *node_id, const char *reason);
/* The IP SANs a connector's new certificate names: its advertised addresses
 * that the node is allowed (enrollment's, or the operator's). */
size_t ctl_server_node_ips(const struct store_node *node, struct pki_ip *ips, size_t max);
/* The epoch of this controller run, sent with every versioned push. */
const char *ctl_server_epoch(const struct ctl_server *server);
/* `controller explain --connector`: the answer to an explain_request, the
 * message (borrowed for the call), or NULL and why (failure). Runs once,
 * on the loop, never from inside ctl_server_explain_ask. */
#define CTL_EXPLAIN_NO_ANSWER "connector did not answer within 2s"
#define CTL_EXPLAIN_CLOSED "control stream closed before the connector answered"
typedef void (*ctl_explain_done_fn)(void *ctx, const json_t *answer, const char *failure);
/* Sends an explain_request (tunneler: a SPIFFE ID) to the live control
 * session of connector node_id, one outstanding per session: ZTR_E_NOT_FOUND
 * without a live session here, ZTR_E_LIMIT while one is outstanding. done
 * then runs with the answer, or after timeout_ms without one. */
int ctl_server_explain_ask(struct ctl_server *server, const char *node_id, const char *tunneler,
                           const char *resource, int64_t timeout_ms, ctl_explain_done_fn done,
                           void *ctx, struct ztr_err *err);
/* Re-issues the controller's own certificate (after CA rotation). */
int ctl_server_refresh_identity(struct ctl_server *server, struct ztr_err *err);

/* ---- admin.c --------------------------------------------------------------- */

/* Starts the admin API on settings.admin_listen and, if set, /health and
 * /metrics on settings.health_listen. */
/* The body of POST /api/admin/tokens (len bytes of text, JSON), checked as
 * the route checks it, into request; its strings point into *body, the
 * caller's to json_decref. On failure *body is NULL and err holds the
 * route's 400 message. Exposed for the fuzz target. */
int admin_parse_token_request(const char *text, size_t len, int64_t default_ttl_s,
                              struct token_request *request, json_t **body,
                              struct ztr_err *err);
int admin_start(struct controller *c, struct ztr_err *err);
/* A query string's parameter, percent-decoded into out: 1 found, 0 absent,
 * -1 malformed or longer than cap (err says which). */
int admin_query_get(const char *query, const char *name, char *out, size_t cap,
                    struct ztr_err *err);
void admin_stop(struct controller *c);

/* ---- admin_tls.c ----------------------------------------------------------- */

/* Decides how the admin API may listen: a non-loopback ADMIN_LISTEN needs
 * ADMIN_TLS (or ADMIN_LISTEN_INSECURE, which logs a warn line). With
 * ADMIN_TLS, checks the ADMIN_TLS_* settings — an operator's certificate
 * and key are read and tried as the server will use them — and sets
 * c->admin_tls up. Errors name the key (config_fail; config may be NULL). */
int admin_tls_configure(struct controller *c, const struct config *config, struct ztr_err *err);
/* At start: for an issued certificate, opens or creates the admin CA in
 * STATE_DIR/admin-tls/, issues the first certificate and arms its reissue
 * (at two thirds of its 30 days, with a fresh key) on c->loop. */
int admin_tls_prepare(struct controller *c, struct ztr_err *err);
/* Issues a new certificate with a fresh key now and serves it (what the
 * reissue timer does); for an issued certificate only. */
int admin_tls_reissue(struct controller *c, struct ztr_err *err);
/* What admin_start serves with; NULL (tls NULL) for plain HTTP. */
const struct http_tls *admin_tls_credentials(const struct admin_tls *tls);
void admin_tls_free(struct controller *c);

/* ---- cli.c ----------------------------------------------------------------- */

/* `controller <subcommand> ...` other than serve; returns the exit status. */
int cli_main(int argc, char **argv);

/* ---- daemon.c -------------------------------------------------------------- */

int daemon_main(int argc, char **argv);

#endif
