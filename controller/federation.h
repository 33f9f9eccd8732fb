/*
 * Federation between two controllers of different trust domains: the
 * peering half (docs/FEDERATION.md).
 *
 *   propose   A creates a peer row (proposed) and one acceptance token: the
 *             peer id, a 32-byte secret (only its SHA-256 is stored), A's
 *             trust domain and A's CA certificate, the one that signs A's
 *             federation certificate; single use, with a TTL; a new token
 *             for the peer replaces the previous one.
 *   accept    B dials A's federation listener (TLS 1.3, ALPN FED_ALPN)
 *             trusting only the CA in the token and expecting
 *             spiffe://<A's trust domain>/controller, and sends the secret
 *             with its own trust domain and bundle. A checks the digest in
 *             constant time, stores B's bundle and clears the digest; both
 *             rows are `accepted`.
 *   link      B keeps one mTLS stream to A: B presents its controller
 *             certificate, which A verifies against B's stored bundle and
 *             trust domain only; B verifies A against A's stored bundle.
 *             Heartbeats flow both ways: the first one received makes a
 *             peer `enrolled`, the first one acknowledged `active`; a
 *             `degraded` peer is `active` again at the next one. Each
 *             carries the sender's bundle version and, when the other side
 *             does not hold it yet, the bundle.
 *   sweep     peers `enrolled`/`active` whose last heartbeat is older than
 *             HEARTBEAT_STALE_AFTER become `degraded` with the reason.
 *   suspend / resume / revoke  by the operator.
 *
 * Everything runs on the controller's loop, the accept's exchange too
 * (the admin request that started it waits, deferred).
 */
#ifndef ZTR_CONTROLLER_FEDERATION_H
#define ZTR_CONTROLLER_FEDERATION_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "base/err.h"
#include "controller/store.h"
#include "pki/pki.h"

struct controller;
struct metrics;

#define FED_ALPN "ztr-fed/1"
#define FED_TOKEN_PREFIX "ztrfed1"
#define FED_SECRET_BYTES 32
#define FED_TOKEN_TTL_DEFAULT_S (7 * 86400)
#define FED_TOKEN_TTL_MAX_S (366LL * 86400)
#define FED_ACCEPT_TIMEOUT_MS 10000

/* The refusals' texts (seed 003, verbatim). */
#define FED_TEXT_TOKEN_MISMATCH "acceptance_token does not match stored digest"
#define FED_TEXT_TOKEN_REQUIRED "acceptance_token required (peer has acceptance_token_digest set)"
#define FED_TEXT_SUSPENDED "federation peer suspended"
#define FED_TEXT_UNKNOWN_PEER "unknown federation peer"

/* ---- the acceptance token -------------------------------------------------- */

struct fed_token {
    char peer_id[STORE_ID_MAX + 1];
    uint8_t secret[FED_SECRET_BYTES];
    char trust_domain[PKI_TRUST_DOMAIN_MAX + 1];
    uint8_t *ca_der; /* malloc()ed */
    size_t ca_len;
};

/* "ztrfed1.<peer id>.<secret>.<trust domain>.<CA DER>", the last three
 * base64url without padding. *text is malloc()ed. */
int fed_token_encode(const struct fed_token *token, char **text, struct ztr_err *err);
int fed_token_decode(const char *text, struct fed_token *out, struct ztr_err *err);
/* Wipes the secret and frees the DER. */
void fed_token_clear(struct fed_token *token);
void fed_secret_digest(const uint8_t secret[FED_SECRET_BYTES], uint8_t digest[32]);

/* What an accept is refused for; the acceptor sees only the seed's two
 * texts, the log on the proposer says which. */
enum fed_refusal {
    FED_ACCEPT_OK,
    FED_REFUSE_UNKNOWN,  /* no such peer id: a typo, or a token of another controller */
    FED_REFUSE_MISMATCH, /* the digest differs: a typo */
    FED_REFUSE_USED,     /* the digest was cleared by an earlier accept */
    FED_REFUSE_EXPIRED,
    FED_REFUSE_REQUIRED, /* no token sent, the peer has a digest */
    FED_REFUSE_REVOKED,
};
/* secret NULL: none sent. peer NULL: the id named no peer. */
enum fed_refusal fed_accept_check(const struct store_peer *peer,
                                  const uint8_t secret[FED_SECRET_BYTES], int64_t now);
const char *fed_refusal_text(enum fed_refusal refusal);
const char *fed_refusal_reason(enum fed_refusal refusal);

/* ---- the state machine ----------------------------------------------------- */

bool fed_state_valid(const char *state);
/* The state after a heartbeat from the peer (accepted -> enrolled,
 * degraded -> active), and after our heartbeat was acknowledged (accepted,
 * enrolled, degraded -> active); other states stay. */
const char *fed_state_after_heartbeat(const char *state);
const char *fed_state_after_ack(const char *state);
/* Whether the link runs for a peer in this state. */
bool fed_state_linked(const char *state);
/* Whether the sweep makes this peer degraded at now. */
bool fed_sweep_due(const struct store_peer *peer, int64_t now, int64_t stale_after_s);

/* ---- in the daemon --------------------------------------------------------- */

/* Settings checks (config_fail: exit 2): FEDERATION_LISTEN's form, the
 * intervals, and FEDERATION_CERT / FEDERATION_KEY both or neither, each
 * readable — else `partial mTLS config — cert_pem=true, key_pem=false`. */
int federation_check_settings(struct controller *c, const struct config *config,
                              struct ztr_err *err);
int federation_start(struct controller *c, struct ztr_err *err);
void federation_stop(struct controller *c);
uint16_t federation_port(const struct controller *c);

/* A new proposed peer and its token (*token malloc()ed, shown once). */
int federation_propose(struct controller *c, const char *name, const char *url, int64_t ttl_s,
                       char **token, struct store_peer *out, struct ztr_err *err);
/* A new token for a proposed peer; the previous one stops working. */
int federation_new_token(struct controller *c, const char *name, int64_t ttl_s, char **token,
                         struct store_peer *out, struct ztr_err *err);
/* Accepts A's proposal: dials url (HOST:PORT) on the controller's loop,
 * which goes on serving meanwhile, and calls done once, within
 * FED_ACCEPT_TIMEOUT_MS: rc 0 and the stored peer, or -1 and the reason
 * (ZTR_E_VERIFY: A's refusal or the transport's). -1 from the call itself
 * (done then never called) for what is wrong before dialing. name ""
 * names the peer after its trust domain. */
typedef void (*federation_accept_done)(void *ctx, int rc, const struct store_peer *peer,
                                       const struct ztr_err *err);
int federation_accept_start(struct controller *c, const char *url, const char *token_text,
                            const char *name, federation_accept_done done, void *ctx,
                            struct ztr_err *err);
int federation_suspend(struct controller *c, const char *name, const char *reason,
                       struct store_peer *out, struct ztr_err *err);
int federation_resume(struct controller *c, const char *name, struct store_peer *out,
                      struct ztr_err *err);
int federation_revoke(struct controller *c, const char *name, struct store_peer *out,
                      struct ztr_err *err);
/* One sweep run (the timer's): *swept peers looked at, *degraded made so. */
int federation_sweep(struct controller *c, size_t *swept, size_t *degraded,
                     struct ztr_err *err);

json_t *federation_peer_json(const struct store_peer *peer, int64_t now);

/* ---- grants (fed_grants.c) ------------------------------------------------ */

#define FED_GRANT_CIDRS_MAX 16
/* The connector's refusal of a peer's tunneler outside its grant (seed 003). */
#define FED_TEXT_SCOPE_MISMATCH "grant scope mismatch"

struct fed_grant_request {
    const char *peer;             /* peer name */
    const char *resource;
    const char *tunneler;         /* spiffe://<peer's trust domain>/tunneler/<name> */
    const char *const *cidrs;     /* source CIDRs; none: any source */
    size_t cidr_count;
    int64_t expires_at;           /* Unix seconds, 0 = never */
};
/* Grants (or re-grants, replacing CIDRs and expiry) and pushes it to our
 * connectors and to the peer. */
int federation_grant(struct controller *c, const struct fed_grant_request *req,
                     struct store_fed_grant *out, struct ztr_err *err);
int federation_grant_revoke(struct controller *c, const char *id, struct store_fed_grant *out,
                            struct ztr_err *err);
json_t *federation_grant_json(const struct store_fed_grant *g, const char *peer_name,
                              int64_t now);
/* peer_name NULL or "": every peer's. NULL on error. */
json_t *federation_grants_json(struct controller *c, const char *peer_name, struct ztr_err *err);

/* Something the data plane of either side depends on changed (a grant, a
 * peer's bundle or state): bump the allowlist version when no store write
 * did, push to our agents and tell linked peers their grants. */
void federation_changed(struct controller *c, bool bump);

/* What a push round gives agents (ctl_server.c). */
struct fed_snapshot {
    json_t *peers;   /* connectors: [{trust_domain, bundle}] of peers with a live grant */
    json_t *grants;  /* connectors: [{id, spiffe_id, resource, source_cidrs?, expires_at?}] */
    json_t *remote;  /* our tunneler's SPIFFE ID -> what peers granted it */
};
void federation_snapshot(struct controller *c, struct fed_snapshot *out);
void federation_snapshot_free(struct fed_snapshot *snap);
/* Appends to entries the peers' connectors granted to tunneler_id (as
 * `connectors` entries, resources named <resource>@<trust domain>);
 * *peers gets their bundles ([{trust_domain, bundle}], NULL when none). */
int federation_remote_connectors(const struct fed_snapshot *snap, const char *tunneler_id,
                                 json_t *entries, json_t **peers);
/* The fed_grants list for a peer: its live grants, each with the
 * connectors (of serving: [{id, spiffe_id, address, served}]) serving it. */
json_t *federation_grants_for_peer(struct controller *c, const char *peer_id,
                                   const json_t *serving);
/* A fed_grants message from peer: keeps what names our tunnelers and the
 * peer's connectors; *changed when the stored list changed. */
int federation_remote_grants_apply(struct controller *c, const struct store_peer *peer,
                                   const json_t *msg, bool *changed, struct ztr_err *err);
/* Grants that expired since *checked_at: an event each, then a push. */
void federation_grants_tick(struct controller *c, int64_t *checked_at, int64_t *next_expiry);
/* ztr_federation_grants{state="active"|"expired"}. */
void federation_grant_metrics(const struct controller *c, struct metrics *m);
/* Sends each linked peer its grants when they changed; serving as above. */
void federation_push_grants(struct controller *c, const json_t *serving);
void federation_write_metrics(const struct controller *c, struct metrics *m);

#endif
