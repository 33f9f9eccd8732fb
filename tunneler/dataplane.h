/*
 * The tunneler's data plane: local front ends (static port forwards and a
 * SOCKS5 server) whose connections become streams to connectors.
 *
 * Connectors come from the controller's `connectors` message (id, SPIFFE ID,
 * ip:port, the resources this tunneler may reach there and their targets);
 * the last list is kept in STATE_DIR/connectors.json so the tunneler works
 * while the controller is away. A connector is dialed **by IP**, and its
 * certificate must chain to the bundle, be in our trust domain, carry role
 * `connector`, the SPIFFE ID the controller announced, and an IP SAN equal
 * to the dialed IP (failure-modes §2.1–§2.3 texts otherwise).
 *
 * One session per connector carries every stream to it. Choice among the
 * connectors serving a resource: those not marked down, least active
 * streams first (ties: list order). A connector whose session cannot be
 * established, or that ends it, is marked down for a full-jitter backoff
 * (CONNECTOR_RETRY_MIN doubling to CONNECTOR_RETRY_MAX); streams waiting
 * for it move to the next candidate (failover). When every candidate is
 * down, the one due back soonest is tried anyway, so a recovered connector
 * is found by the next connection. What a connector's refusal leads to is
 * decided by its code alone (tunnel_refusal_of): a stream refused for the
 * resource (not allowed, unknown) is not retried elsewhere; one whose
 * target could not be reached, or whose session ended, is.
 *
 * Local clients are counted per source IP, from accept until their stream
 * is completely over (relay drained): beyond client_streams_max at once a
 * new connection is closed at accept, counted (ztr_client_streams_over_quota
 * _total) and logged at most once a second — so one host on a shared or
 * non-loopback SOCKS5 address cannot take every stream.
 *
 * One tunnel serves one event loop. With several workers
 * (tunneler/tworkers.h) each worker's loop has a tunnel of its own — its
 * own listeners on the same addresses (SO_REUSEPORT), its own session to
 * each connector — and the per-source-IP count is one struct tunnel_shared
 * they all take from (a mutex per connection, never per byte).
 */
#ifndef ZTR_TUNNELER_DATAPLANE_H
#define ZTR_TUNNELER_DATAPLANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "data/dsession.h"
#include "tunneler/socks5.h"

struct metrics;
struct agent;
struct json_t;

struct tunneler_forward {
    char listen[128];
    char resource[256];
};

struct tunneler_config {
    const struct tunneler_forward *forwards;
    size_t forward_count;
    const char *socks_listen;           /* NULL: no SOCKS5 server */
    struct dsession_window window;      /* flow control of every session */
    int64_t ping_interval_ms;
    int64_t retry_min_ms, retry_max_ms;
    int64_t client_timeout_ms;          /* SOCKS5 handshake + stream open */
    uint32_t client_streams_max;        /* per source IP, open at once (0: no quota) */
};

struct tunnel;

/* The per-source-IP client quota over every worker's tunnel;
 * reference-counted (its maker, each tunnel, each source IP with streams
 * open), thread-safe. */
struct tunnel_shared;
int tunnel_shared_new(struct tunnel_shared **out, struct ztr_err *err);
void tunnel_shared_release(struct tunnel_shared *shared);

/* A tunnel's counters; sums of several with tunnel_count. */
struct tunnel_counts {
    struct dsession_stats stats;
    uint64_t streams_refused;
    uint64_t failovers;
    uint64_t quota_refused;      /* client connections over CLIENT_STREAMS_MAX */
};

/* What the tunneler does when a connector ends a stream, or the session it
 * rides on, with code: the one table of these decisions. */
struct tunnel_refusal {
    bool failover;                      /* try the next connector serving the resource */
    bool mark_down;                     /* a session ended with it marks the connector down */
    enum socks5_reply_code socks5_reply;  /* the client's reply when it is refused with it */
};
struct tunnel_refusal tunnel_refusal_of(enum mux_code code);

/* What the data plane takes from its agent. tunnel_start fills it from
 * the agent; a test builds one around its own loop and certificates. The
 * loop and tls must outlive the tunnel (the agent updates tls in place on
 * renewal); the strings are copied. */
struct tunnel_env {
    struct ev_loop *loop;
    struct tls_ctx *tls;         /* client side, ALPN DATA_ALPN, the agent's identity */
    const char *trust_domain;    /* connectors must be in it */
    const char *state_dir;       /* connectors.json lives here */
    /* This tunneler's SPIFFE ID (borrowed: outlives the tunnel), which a
     * connector's renewed-identity proof must name; NULL: refused. */
    const char *self_id;
    /* The client quota shared with other workers' tunnels (a reference is
     * taken); NULL: its own. */
    struct tunnel_shared *shared;
    /* Listen with SO_REUSEPORT beside other workers' tunnels (the
     * addresses then name their ports, never 0). */
    bool shared_listeners;
    /* Another tunnel saves connectors.json and logs the list: this one
     * only loads and applies it. */
    bool replica;
    /* Called when this tunnel marks a connector down (down_until_ms: ev_now
     * milliseconds it stays down) or its session to one that was down comes
     * up (0), so that the other workers' tunnels learn it
     * (tunnel_connector_state). NULL: nobody to tell. */
    void (*on_connector_state)(void *ctx, const char *id, const char *address,
                               const char *spiffe_id, int64_t down_until_ms, const char *reason);
    void *state_ctx;
};

/* Starts the listeners and loads STATE_DIR/connectors.json. config's
 * strings are read here and not kept. */
int tunnel_new(const struct tunnel_env *env, const struct tunneler_config *config,
               struct tunnel **out, struct ztr_err *err);
/* tunnel_new with the agent's loop, data TLS context, trust domain and
 * STATE_DIR. */
int tunnel_start(struct agent *agent, const struct tunneler_config *config,
                 struct tunnel **out, struct ztr_err *err);
/* A `connectors` message (schema-checked): replaces the list, persists it. */
void tunnel_set_connectors(struct tunnel *t, const struct json_t *msg);
void tunnel_stop(struct tunnel *t);
/* Another worker's tunnel marked a connector down until down_until_ms
 * (reason) or saw it come back (0): unless this tunnel has a live session
 * to it, it is marked down as long (no log line: the other one logged it)
 * or up again. Unknown connectors are ignored. */
void tunnel_connector_state(struct tunnel *t, const char *id, const char *address,
                            const char *spiffe_id, int64_t down_until_ms, const char *reason);
/* The trust bundle changed: sessions whose connector no longer verifies
 * against the TLS context's bundle are closed (dsession_recheck_peer). */
void tunnel_recheck_peers(struct tunnel *t);
/* Our certificate changed: every live session presents it to its
 * connector (dsession_present_identity). */
void tunnel_present_identity(struct tunnel *t, const char *chain_pem, size_t chain_len,
                             const struct pki_key *key);
/* The port listener i got: the forwards in config order, then SOCKS5 (0
 * when there is no such listener). */
uint16_t tunnel_listener_port(const struct tunnel *t, size_t i);

void tunnel_add_health(const struct tunnel *t, struct json_t *health);
void tunnel_add_metrics(const struct tunnel *t, struct metrics *metrics);
/* Adds t's counters to sum (on t's loop thread). */
void tunnel_count(const struct tunnel *t, struct tunnel_counts *sum);
/* The connector list as /health shows it (a new array, the caller's). */
struct json_t *tunnel_connectors_health(const struct tunnel *t);
int64_t tunnel_list_version(const struct tunnel *t);
/* /health fields (connectors: a list as tunnel_connectors_health makes it,
 * taken) and /metrics lines from counters summed over workers. */
void tunnel_counts_health(const struct tunnel_counts *counts, int64_t version,
                          struct json_t *connectors, struct json_t *health);
void tunnel_counts_metrics(const struct tunnel_counts *counts, const struct json_t *connectors,
                           struct metrics *metrics);

/* Federation: the peers' bundles in STATE_DIR/connectors.json (the list
 * saved by the last run), for the agent's data TLS before any tunnel
 * starts (agent_set_peer_bundles); NULL when none. */
struct json_t *tunnel_saved_peers(const char *state_dir);

#endif
