/*
 * The controller's state, behind one interface so that a PostgreSQL backend
 * can replace SQLite without touching callers. Every write is one
 * transaction; every function returns 0 or -1 with err filled (err->code
 * ZTR_E_NOT_FOUND when a named row does not exist).
 *
 * Times are Unix seconds taken from the clock given to store_open(), so
 * tests drive them. Records are plain structs with bounded fields; list
 * functions call a visitor per row (return non-zero from it to stop).
 */
#ifndef ZTR_CONTROLLER_STORE_H
#define ZTR_CONTROLLER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/err.h"

#define STORE_ID_MAX 32          /* node and token ids: short hex strings */
#define STORE_NAME_MAX 128
#define STORE_SPIFFE_ID_MAX 2048
/* What a node advertises, as JSON text: the addresses given at enrollment
 * (["10.0.0.5:7444"]), then, once a connector said hello, an object
 * {"addresses":[...], "data_listen":"10.0.0.5:7444", "resources":["pg"]}. */
#define STORE_ADDRESSES_MAX 1024
#define STORE_DETAIL_MAX 1024
#define STORE_SERIAL_MAX 64
/* A certificate's key as pki_public_key_fingerprint writes it (hex SHA-256
 * of the point): one key, one text, whatever encoding carried it. */
#define STORE_KEY_MAX 64
/* How long a node's previous certificate still opens sessions after a
 * renewal, unless the new one is used first (docs/SECURITY.md): a renewal
 * whose reply was lost must not lock the node out. */
#define STORE_RENEWAL_GRACE_S (10 * 60)
/* The counters a node's agent last reported, as JSON text ({"auth_expired":
 * 0, ...}); the controller keeps only the names it knows (fleet.h). */
#define STORE_COUNTERS_MAX 512
#define STORE_EVENT_SOURCE_MAX 32
#define STORE_TRUST_DOMAIN_MAX 255
/* HOST:PORT of a peer's federation listener. */
#define STORE_URL_MAX 255
/* A peer's trust bundle (PEM): a few CAs during rotations. */
#define STORE_PEER_BUNDLE_MAX (32 * 1024)

/* err->code values of this module (beyond base/err.h's). */
enum store_error {
    STORE_E_ENROLLED = 200, /* the name belongs to a node whose certificate is valid */
    STORE_E_SUPERSEDED,     /* a key that is not the node's current (or previous) one */
    STORE_E_PEER_EXISTS,    /* a live peer already has that name or trust domain */
    STORE_E_CA_CHANGED,     /* the CA set is not the version the writer read */
    /* The database was locked past the busy timeout, the disk is full or
     * failing: nothing was written (the change's transaction rolled back);
     * the same change may succeed once that clears. */
    STORE_E_UNAVAILABLE,
};

struct store;

/* Whether the store takes writes, as its last write transaction found. A
 * failed write marks it unavailable (logged once as "store unavailable");
 * the next one that commits marks it writable again ("store writable
 * again"). */
enum store_fault_kind { STORE_FAULT_BUSY, STORE_FAULT_FULL, STORE_FAULT_IO, STORE_FAULT_KINDS };
struct store_writes {
    bool writable;
    char reason[128];        /* the engine's words for the last fault; "" when writable */
    int64_t unwritable_since; /* wall seconds; 0 when writable */
    uint64_t errors[STORE_FAULT_KINDS]; /* failed write transactions, by kind */
};
void store_writes_get(const struct store *store, struct store_writes *out);
/* How long a write waits for another process's lock on the database
 * (SQLite's busy timeout; PostgreSQL: ignored) before it fails with
 * STORE_E_UNAVAILABLE. The store opens with STORE_BUSY_MS; the
 * controller's periodic writes, which keep their data in memory and try
 * again, wait only STORE_BACKGROUND_BUSY_MS on its event loop. */
#define STORE_BUSY_MS 2000
#define STORE_BACKGROUND_BUSY_MS 100
void store_set_busy_timeout(struct store *store, int ms);
/* "busy", "full", "io". */
const char *store_fault_kind_name(enum store_fault_kind kind);

/* Opens (creating and migrating as needed) the database at path: WAL mode,
 * foreign keys on, schema version in PRAGMA user_version. */
int store_open(const char *path, const struct ztr_clock *clock, struct store **out,
               struct ztr_err *err);
/* Checkpoints the WAL and closes. NULL is fine. */
void store_close(struct store *store);
int store_schema_version(struct store *store);

/* ---- tokens ---------------------------------------------------------------
 * Only the SHA-256 digest of a token's secret is stored. */
struct store_token {
    char id[STORE_ID_MAX + 1];
    uint8_t digest[32];
    char role[16];                  /* "connector" | "tunneler" */
    char name[STORE_NAME_MAX + 1];  /* exact name, or a prefix when name_is_prefix */
    bool name_is_prefix;
    /* May re-enroll a name whose node still has a valid certificate; the
     * node's previous certificate is superseded. Without it such an
     * enrollment is refused (STORE_E_ENROLLED): a token must not take a
     * live node over by accident or by theft. */
    bool replace;
    /* JSON list of the IPs a connector enrolled with it may be certified
     * for (the operator's --address values); "" or "[]": none. */
    char addresses[STORE_ADDRESSES_MAX + 1];
    int64_t uses_left;
    int64_t expires_at;
    int64_t created_at;
};

int store_token_insert(struct store *store, const struct store_token *token,
                       struct ztr_err *err);
int store_token_get(struct store *store, const char *id, struct store_token *out,
                    struct ztr_err *err);
int store_token_delete(struct store *store, const char *id, struct ztr_err *err);
/* Whether key (a public key fingerprint) enrolled a node with token_id: the
 * one consumed token an enrollment retry may still present. */
int store_token_used_by(struct store *store, const char *token_id, const char *key, bool *used,
                        struct ztr_err *err);
int store_token_list(struct store *store, int (*visit)(void *ctx, const struct store_token *),
                     void *ctx, struct ztr_err *err);

/* ---- nodes ---------------------------------------------------------------- */
enum store_status { STORE_OFFLINE = 0, STORE_ONLINE = 1 };
/* A connector's drain (docs/OPERATIONS.md, "Drain a connector"): none, the
 * operator's (kept until undrain), or the connector's own before it stops
 * (SIGTERM; cleared by its next hello). */
enum store_drain { STORE_DRAIN_NONE = 0, STORE_DRAIN_OPERATOR = 1, STORE_DRAIN_SHUTDOWN = 2 };

struct store_node;
/* What an operator is shown for node at now: "ONLINE", "OFFLINE", or
 * "EXPIRED" for a node not ONLINE whose certificate has run out — the
 * controller ended its session at not_after (heartbeats on an expired
 * certificate are refused), or the agent stopped and then its certificate
 * expired. A node is ONLINE again once it re-authenticates and says hello. */
const char *store_node_status_name(const struct store_node *node, int64_t now);

struct store_node {
    char id[STORE_ID_MAX + 1];
    char name[STORE_NAME_MAX + 1];
    char role[16];
    char spiffe_id[STORE_SPIFFE_ID_MAX + 1];
    char addresses[STORE_ADDRESSES_MAX + 1];   /* JSON text, see STORE_ADDRESSES_MAX */
    /* JSON list: the only IPs a certificate may name. Enrollment sets it
     * to its token's addresses; the operator may change it. */
    char allowed_addresses[STORE_ADDRESSES_MAX + 1];
    enum store_status status;
    bool revoked;
    int64_t last_seen;                          /* 0 = never */
    char cert_serial[STORE_SERIAL_MAX + 1];
    char cert_key[STORE_KEY_MAX + 1];          /* "" only for rows from before keys were kept */
    int64_t cert_not_after;
    /* The certificate a renewal replaced, still admitted until prev_cert_until
     * or until the current one opens a session ("" when none). */
    char prev_cert_serial[STORE_SERIAL_MAX + 1];
    char prev_cert_key[STORE_KEY_MAX + 1];
    int64_t prev_cert_until;
    int64_t enrolled_at;
    char controller_id[STORE_ID_MAX + 1];      /* which controller holds its session, "" none */
    /* When the current certificate was issued (0: not in the history,
     * rows from before it was kept) and when a renewal over the node's
     * stream last succeeded (0: never). */
    int64_t cert_issued_at;
    int64_t last_renewed_at;
    /* The agent's counters as last persisted (JSON object text, "{}" when
     * none) and when they were reported (0: never). Heartbeats reach the
     * store in batches (store_node_save_heartbeats), so these and last_seen
     * may lag the live session by a few heartbeat intervals. */
    char counters[STORE_COUNTERS_MAX + 1];
    int64_t counters_at;
    /* Connectors: draining since drain_since (Unix seconds); streams still
     * open at drain_deadline are closed. */
    enum store_drain drain;
    int64_t drain_since;
    int64_t drain_deadline;
};

/*
 * Enrollment, atomically: consumes one use of token_id (only if it still has
 * uses left and has not expired at now) and creates the node, or updates the
 * existing node of the same role and name (keeping its id), and records an
 * "enrolled" event. When the token cannot be consumed (lost a race, used up,
 * expired, deleted) nothing is written and err->code is ZTR_E_NOT_FOUND.
 * A revoked node of that role and name is not re-enrolled: ZTR_E_INVALID.
 * An existing node whose certificate is still valid (cert_not_after > now)
 * is re-enrolled only by a token with replace: else nothing is written and
 * err->code is STORE_E_ENROLLED. node->cert_serial and cert_key name the new
 * certificate; it becomes the only one admitted (no previous one).
 * node->allowed_addresses ("" = none) replaces the node's.
 * node->id may be empty: a new id is generated. *out receives the row.
 * Each use records node->cert_key with the token: a retry with the same
 * token and key (the agent never kept the answer) consumes nothing and
 * gives the same node the new certificate (*retried true), while the
 * token is within its TTL, for the same role and name, for a node not
 * revoked whose current key it still is; else ZTR_E_NOT_FOUND (revoked:
 * ZTR_E_INVALID), and nothing is written.
 */
int store_node_enroll(struct store *store, const char *token_id, const struct store_node *node,
                      struct store_node *out, bool *retried, struct ztr_err *err);
int store_node_get(struct store *store, const char *id, struct store_node *out,
                   struct ztr_err *err);
int store_node_get_by_spiffe_id(struct store *store, const char *spiffe_id,
                                struct store_node *out, struct ztr_err *err);
int store_node_list(struct store *store, int (*visit)(void *ctx, const struct store_node *),
                    void *ctx, struct ztr_err *err);
/* What a push names: every connector, and the revoked tunnelers. */
int store_node_list_pushed(struct store *store,
                           int (*visit)(void *ctx, const struct store_node *), void *ctx,
                           struct ztr_err *err);
/* Sets status and last_seen; records a "status" event (detail "ONLINE" or
 * "OFFLINE" plus reason) only when the status changes. *changed (optional)
 * says whether it did. */
int store_node_set_status(struct store *store, const char *id, enum store_status status,
                          const char *reason, bool *changed, struct ztr_err *err);
/* A heartbeat: last_seen = now, no event. */
int store_node_touch(struct store *store, const char *id, struct ztr_err *err);
/* What heartbeats said about one node since it was last written. */
struct store_heartbeat {
    char id[STORE_ID_MAX + 1];
    int64_t last_seen;                      /* moves last_seen forward, never back */
    char counters[STORE_COUNTERS_MAX + 1];  /* JSON object text; "" keeps the stored ones */
    int64_t counters_at;
};
/* Writes many nodes' heartbeats in one transaction (one commit however
 * many rows): the controller batches them instead of writing each
 * heartbeat. Ids that name no node are skipped; *written (optional) gets
 * how many rows changed. Counters that are not a JSON object are
 * ZTR_E_INVALID and nothing is written. */
int store_node_save_heartbeats(struct store *store, const struct store_heartbeat *beats,
                               size_t count, size_t *written, struct ztr_err *err);
/* Nodes ONLINE whose last_seen is older than cutoff become OFFLINE (one
 * event each, reason "no heartbeat"); the ids are reported to visit. */
int store_node_sweep_offline(struct store *store, int64_t cutoff,
                             int (*visit)(void *ctx, const struct store_node *), void *ctx,
                             struct ztr_err *err);
/* Which of a node's certificates a key (STORE_KEY_MAX text) belongs to. */
enum store_cert_state {
    STORE_CERT_CURRENT,    /* the certificate issued last */
    STORE_CERT_PREVIOUS,   /* the one a renewal replaced, within its grace */
    STORE_CERT_SUPERSEDED, /* any other: refused */
};

struct store_cert_check {
    enum store_cert_state state;
    char serial[STORE_SERIAL_MAX + 1]; /* of the key's certificate; "" when never issued */
    bool grace_ended;                  /* admit: the current one ended the previous' grace */
    bool bound;                        /* admit: a row without a key took this one */
};

/* Read only: classifies key for node id. */
int store_node_cert_state(struct store *store, const char *id, const char *key,
                          struct store_cert_check *out, struct ztr_err *err);
/* A control session opens with key: classifies it like store_node_cert_state
 * and, atomically, a session with the current key ends the previous one's
 * grace (grace_ended), and a row that has no key yet (enrolled before keys
 * were kept) takes this one as current (bound). */
int store_node_cert_admit(struct store *store, const char *id, const char *key,
                          struct store_cert_check *out, struct ztr_err *err);
/* Renewal, atomically: session_key must be the current key or the previous
 * one within its grace (else STORE_E_SUPERSEDED, nothing written); its
 * certificate becomes the previous one until now + grace_s, the new serial
 * and key the current one; last_renewed_at = now; a "renewed" event. */
int store_node_renew(struct store *store, const char *id, const char *session_key,
                     const char *serial, const char *key, int64_t not_after, int64_t grace_s,
                     struct ztr_err *err);
/* How many certificates the node was issued at or after since (Unix
 * seconds): enrollments and renewals alike. */
/* The key (fingerprint) certificate serial of node id certified, from the
 * history of issued certificates; ZTR_E_NOT_FOUND when none. */
int store_node_cert_key(struct store *store, const char *id, const char *serial, char *key,
                        size_t cap, struct ztr_err *err);
int store_node_certificates_since(struct store *store, const char *id, int64_t since,
                                  int64_t *count, struct ztr_err *err);
/* Marks the node revoked and OFFLINE, writes a revocations row and a
 * "revoked" event. Revoking twice is not an error. */
int store_node_revoke(struct store *store, const char *id, const char *reason,
                      struct ztr_err *err);
/* Connectors report the resources they serve and their data address. */
int store_node_set_addresses(struct store *store, const char *id, const char *addresses_json,
                             struct ztr_err *err);
/* The operator's list of IPs the node's certificate may name (JSON list
 * text); ZTR_E_NOT_FOUND for an unknown id. */
int store_node_set_allowed_addresses(struct store *store, const char *id,
                                     const char *addresses_json, struct ztr_err *err);

/* A connector's drain: STORE_DRAIN_OPERATOR (deadline: Unix seconds) or
 * STORE_DRAIN_NONE (undrain) from the admin API; STORE_DRAIN_SHUTDOWN from
 * the connector itself, which never replaces the operator's. Records a
 * "draining" or "undrained" event and asks for a push when it changed
 * anything (*changed, may be NULL). Only connectors drain (ZTR_E_INVALID). */
int store_node_set_drain(struct store *store, const char *id, enum store_drain drain,
                         int64_t deadline, bool *changed, struct ztr_err *err);
/* Clears a STORE_DRAIN_SHUTDOWN mark (the connector is back); the
 * operator's stays. */
int store_node_clear_shutdown_drain(struct store *store, const char *id, bool *changed,
                                    struct ztr_err *err);

/* ---- resources and the allowlist ----------------------------------------- */
struct store_resource {
    char name[STORE_NAME_MAX + 1];
    char description[STORE_DETAIL_MAX + 1];
    int64_t created_at;
};

int store_resource_put(struct store *store, const char *name, const char *description,
                       struct ztr_err *err);
int store_resource_delete(struct store *store, const char *name, struct ztr_err *err);
int store_resource_list(struct store *store,
                        int (*visit)(void *ctx, const struct store_resource *), void *ctx,
                        struct ztr_err *err);

/* Which connector (by node name) may serve a resource. A tunneler is
 * handed a connector for a resource only when both the binding exists and
 * the connector announces the resource. */
struct store_binding {
    char resource[STORE_NAME_MAX + 1];
    char connector[STORE_NAME_MAX + 1];  /* connector node name */
    int64_t created_at;
};

/* bind adds the binding (binding twice is not an error); !bind removes it
 * (ZTR_E_NOT_FOUND when absent). An unknown resource is ZTR_E_NOT_FOUND;
 * deleting a resource removes its bindings. */
int store_resource_bind(struct store *store, const char *resource, const char *connector,
                        bool bind, struct ztr_err *err);
/* store_resource_put and a binding to each of connectors in one
 * transaction: all of it or nothing. */
int store_resource_add(struct store *store, const char *name, const char *description,
                       const char *const *connectors, size_t count, struct ztr_err *err);
/* Every binding, ordered by resource then connector name. */
int store_binding_list(struct store *store, int (*visit)(void *ctx, const struct store_binding *),
                       void *ctx, struct ztr_err *err);

struct store_grant {
    char tunneler[STORE_NAME_MAX + 1];   /* tunneler node name */
    char resource[STORE_NAME_MAX + 1];
    int64_t created_at;
};

/* Both bump the allowlist version when they change something; granting an
 * unknown resource is ZTR_E_NOT_FOUND. */
int store_allow(struct store *store, const char *tunneler, const char *resource,
                struct ztr_err *err);
int store_deny(struct store *store, const char *tunneler, const char *resource,
               struct ztr_err *err);
int store_allowlist_list(struct store *store, int (*visit)(void *ctx, const struct store_grant *),
                         void *ctx, struct ztr_err *err);
/* Monotonic; starts at 1. Bumped by allow/deny/revoke/resource delete. */
int64_t store_allowlist_version(struct store *store);

/* ---- events -------------------------------------------------------------- */
struct store_event {
    int64_t id;                          /* increasing */
    int64_t at;
    char kind[32];                       /* enrolled, status, renewed, revoked, denied, admin,
                                            security (a refused identity), alert,
                                            federation */
    char node_id[STORE_ID_MAX + 1];      /* may be empty */
    char detail[STORE_DETAIL_MAX + 1];
    /* Which part wrote it: controller, admin, federation_accept,
     * federation_link, federation_heartbeat_sweep. */
    char source[STORE_EVENT_SOURCE_MAX + 1];
};

/* source "" or NULL: "admin" for kind admin, else "controller". */
int store_event_add_from(struct store *store, const char *source, const char *kind,
                         const char *node_id, const char *detail, struct ztr_err *err);
int store_event_add(struct store *store, const char *kind, const char *node_id,
                    const char *detail, struct ztr_err *err);
/* Deletes the oldest events: those written before `before` (Unix seconds;
 * 0: none by age), then those beyond the newest `keep` (0: none by count),
 * at most `batch` rows in all so that one call is bounded work. *deleted
 * (optional) gets how many went; fewer than batch means nothing is left. */
int store_event_prune(struct store *store, int64_t before, uint64_t keep, size_t batch,
                      size_t *deleted, struct ztr_err *err);
/* Events with id > after_id, oldest first, at most limit. */
int store_event_list(struct store *store, int64_t after_id, size_t limit,
                     int (*visit)(void *ctx, const struct store_event *), void *ctx,
                     struct ztr_err *err);

/* Which events store_event_query visits; zero/NULL fields do not filter. */
struct store_event_filter {
    int64_t after_id;     /* id > after_id */
    int64_t before_id;    /* id < before_id */
    int64_t since;        /* at >= since (Unix seconds) */
    int64_t until;        /* at < until */
    const char *node_id;
    const char *kind;
    const char *source;
    bool newest_first;    /* descending ids (page with before_id) */
    size_t limit;
};
int store_event_query(struct store *store, const struct store_event_filter *filter,
                      int (*visit)(void *ctx, const struct store_event *), void *ctx,
                      struct ztr_err *err);

/* ---- federation peers ------------------------------------------------------
 * A controller of another trust domain (controller/federation.h). Only the
 * SHA-256 digest of an acceptance token's secret is stored. */
struct store_peer {
    char id[STORE_ID_MAX + 1];
    char name[STORE_NAME_MAX + 1];
    char trust_domain[STORE_TRUST_DOMAIN_MAX + 1]; /* "" until accepted */
    char url[STORE_URL_MAX + 1];        /* HOST:PORT of its federation listener, "" = unknown */
    char direction[16];                 /* inbound: we proposed, it links to us;
                                           outbound: we accepted, we link to it */
    char state[16];                     /* proposed accepted enrolled active degraded
                                           suspended revoked */
    bool has_token;
    uint8_t token_digest[32];
    int64_t token_expires_at;
    char bundle[STORE_PEER_BUNDLE_MAX + 1]; /* its trust bundle (PEM), "" = none */
    int64_t bundle_version;
    int64_t last_heartbeat_at;          /* 0 = never */
    char reason[STORE_DETAIL_MAX + 1];  /* why degraded or suspended */
    char resume_state[16];              /* suspended: the state resume returns to */
    int64_t created_at;
    int64_t updated_at;
};

/* Inserts p (an empty id gets a new one; created/updated are set).
 * STORE_E_PEER_EXISTS when a peer that is not revoked has its name or trust domain. */
int store_peer_insert(struct store *store, struct store_peer *p, struct ztr_err *err);
/* Writes every field of p; a revoked row never changes again (ZTR_E_NOT_FOUND). */
int store_peer_update(struct store *store, struct store_peer *p, struct ztr_err *err);
int store_peer_get(struct store *store, const char *id, struct store_peer *out,
                   struct ztr_err *err);
/* The peer of that name that is not revoked, else the newest revoked one. */
int store_peer_get_by_name(struct store *store, const char *name, struct store_peer *out,
                           struct ztr_err *err);
/* The peer of that trust domain that is not revoked. */
int store_peer_get_by_trust_domain(struct store *store, const char *trust_domain,
                                   struct store_peer *out, struct ztr_err *err);
int store_peer_list(struct store *store, int (*visit)(void *ctx, const struct store_peer *),
                    void *ctx, struct ztr_err *err);

/* What the peer last said it granted our tunnelers (fed_grants message's
 * list, JSON text, at most STORE_REMOTE_GRANTS_MAX); *grants_json
 * malloc()ed, "[]" for none. */
#define STORE_REMOTE_GRANTS_MAX (1024 * 1024)
int store_peer_set_remote_grants(struct store *store, const char *peer_id,
                                 const char *grants_json, struct ztr_err *err);
int store_peer_remote_grants(struct store *store, const char *peer_id, char **grants_json,
                             struct ztr_err *err);

/* ---- federation grants -----------------------------------------------------
 * One resource of ours to one tunneler of a peer trust domain
 * (controller federation grant). Every change bumps the allowlist version:
 * connectors enforce grants. */
struct store_fed_grant {
    char id[STORE_ID_MAX + 1];
    char peer_id[STORE_ID_MAX + 1];
    char resource[STORE_NAME_MAX + 1];
    char tunneler[STORE_SPIFFE_ID_MAX + 1];   /* spiffe://<peer td>/tunneler/<name> */
    char source_cidrs[STORE_DETAIL_MAX + 1];  /* JSON list of CIDR texts, [] = any source */
    int64_t expires_at;                       /* Unix seconds, 0 = never */
    int64_t created_at;
};

/* Inserts g, or for the same peer, resource and tunneler replaces the CIDRs
 * and expiry; g->id and created_at are filled. ZTR_E_NOT_FOUND for an
 * unknown resource or a peer that is revoked or unknown. */
int store_fed_grant_put(struct store *store, struct store_fed_grant *g, struct ztr_err *err);
/* Deletes grant id, filling *out with what it was; ZTR_E_NOT_FOUND. */
int store_fed_grant_delete(struct store *store, const char *id, struct store_fed_grant *out,
                           struct ztr_err *err);
/* peer_id NULL: every peer's. */
int store_fed_grant_list(struct store *store, const char *peer_id,
                         int (*visit)(void *ctx, const struct store_fed_grant *), void *ctx,
                         struct ztr_err *err);
/* A change the allowlist carries that is not a row of its own (a peer's
 * bundle or state, a grant's expiry). */
int store_allowlist_bump(struct store *store, struct ztr_err *err);

/* ---- changes made through other controllers --------------------------------
 * Controllers sharing a PostgreSQL database tell each other, at commit, what
 * their agents' sessions must act on (LISTEN/NOTIFY): "push" (recompute
 * what each agent should have), "revoke <node id> <reason>" and "released"
 * (nodes of a controller judged silent were taken OFFLINE). A writer
 * hears its own changes too. On SQLite (one controller) there is nothing to
 * hear: *fd is -1. Otherwise *fd is a socket to wait on for reading, then
 * store_changes_read() calls each(ctx, change) per change; after a -1 (the
 * connection was lost), open again. */
int store_changes_open(struct store *store, int *fd, struct ztr_err *err);
int store_changes_read(struct store *store, void (*each)(void *ctx, const char *change),
                       void *ctx, struct ztr_err *err);

/* ---- controllers sharing the database -------------------------------------
 * Each controller has an id (new at each start) and a row it beats every
 * heartbeat interval. A node going ONLINE is held by the controller that
 * set it; only the holder's session closing (or its sweep) takes it
 * OFFLINE, and the others release the nodes of a controller that stopped
 * beating. */
void store_set_controller(struct store *store, const char *id);
/* The id set above ("" in tools). */
const char *store_controller_self(const struct store *store);
/* Whether other controllers may share the database (PostgreSQL). */
bool store_is_shared(const struct store *store);
/* The clock beats are stamped and judged by: the database's on a shared
 * store (controllers' own clocks may differ), the store's clock otherwise. */
int store_clock_s(struct store *store, int64_t *now, struct ztr_err *err);
int store_controller_beat(struct store *store, const char *address, struct ztr_err *err);
/* A clean stop: the others release its nodes at once. */
int store_controller_leave(struct store *store, struct ztr_err *err);
struct store_controller {
    char id[STORE_ID_MAX + 1];
    char address[STORE_DETAIL_MAX + 1];   /* its CONTROLLER_LISTEN */
    int64_t started_at;
    int64_t last_seen;                    /* 0: stopped cleanly */
    int64_t nodes_online;                 /* ONLINE nodes it holds */
};
/* Every controller row, oldest start first. Rows of controllers not seen
 * for STORE_CONTROLLER_FORGET_S are dropped by store_controller_beat. */
#define STORE_CONTROLLER_FORGET_S (7 * 86400)
int store_controller_list(struct store *store,
                          int (*visit)(void *ctx, const struct store_controller *), void *ctx,
                          struct ztr_err *err);
/* Takes OFFLINE every ONLINE node held by another controller that has not
 * beaten since alive_since (store_clock_s; INT64_MAX: every other), with
 * detail as the event's (NULL: `OFFLINE: controller <id> stopped
 * answering`); visit sees each after the commit. Tells the others
 * ("released") when it took any. */
int store_nodes_release(struct store *store, int64_t alive_since, const char *detail,
                        int (*visit)(void *ctx, const struct store_node *), void *ctx,
                        struct ztr_err *err);

/* Takes back ONLINE, held by this controller, each of ids (nodes with a
 * live session here) that is OFFLINE and not revoked: another controller
 * released them while this one was slow to beat, or they were held by
 * one that stopped. Event `ONLINE: its session is live on controller <id>`;
 * visit sees each after the commit. */
int store_nodes_reclaim(struct store *store, const char *const *ids, size_t count,
                        int (*visit)(void *ctx, const struct store_node *), void *ctx,
                        struct ztr_err *err);

/* ---- copying a store into another -----------------------------------------
 * `controller store migrate`: every row of from (both at the current
 * schema) into to, which must hold no node and no token, in one
 * transaction of to; the row count of each table is compared. Refused
 * while a controller beat on from within STORE_COPY_QUIET_S. Nodes arrive
 * OFFLINE. */
#define STORE_COPY_TABLES_MAX 16
#define STORE_COPY_QUIET_S 30
struct store_copy_counts {
    size_t tables;
    char table[STORE_COPY_TABLES_MAX][32];
    int64_t rows[STORE_COPY_TABLES_MAX];
};
int store_copy(struct store *from, struct store *to, struct store_copy_counts *counts,
               struct ztr_err *err);

/* ---- the CAs of controllers sharing the database ---------------------------
 * Each CA's certificate and its key sealed (pki_seal) with the controllers'
 * seal key: a dump of the database alone does not give the keys. version
 * 0: none stored yet. store_ca_put writes the whole set as version
 * set->version, which must be the stored version + 1 (else
 * STORE_E_CA_CHANGED: read again), and tells the other controllers ("ca"). */
#define STORE_CA_MAX 8
struct store_ca {
    int number;
    char cert_pem[8192];
    uint8_t key_sealed[2048];
    size_t key_sealed_len;
    int64_t retire_at;
};
struct store_ca_set {
    size_t count;
    int signer;
    int64_t version;
    struct store_ca cas[STORE_CA_MAX];
};
int store_ca_get(struct store *store, struct store_ca_set *out, struct ztr_err *err);
int store_ca_put(struct store *store, const struct store_ca_set *set, struct ztr_err *err);

#endif