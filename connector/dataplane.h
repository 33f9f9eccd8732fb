/*
 * The connector's data plane: the CONNECTOR_LISTEN listener (TLS 1.3, ALPN
 * ztr-data/1, mutual TLS with the agent's current certificate), one session
 * per tunneler, and for each stream a connection to the target of the
 * resource it names.
 *
 * Admission, in this order: the TLS handshake checks the tunneler's chain,
 * trust domain and role (pki_verify); then its SPIFFE ID must be on the
 * allowlist the controller pushed (or the one loaded from disk while the
 * controller is away) — otherwise the session ends with GOAWAY
 * PEER_NOT_ALLOWED `tunneler not allowed` (failure-modes §3.3), a log line
 * naming the SPIFFE ID, and a counter. Each OPEN must name a resource the
 * allowlist grants that tunneler (else RST RESOURCE_NOT_ALLOWED) and this
 * connector serves (else RST UNKNOWN_RESOURCE); only then is the resource's
 * target dialed (RST CONNECT_FAILED if that fails). Peers decide on these
 * codes; the reason texts beside them are for people.
 *
 * dataplane_enforce() applies an allowlist change at once: sessions of
 * tunnelers that left the list are closed, streams to resources no longer
 * granted are reset.
 *
 * dataplane_refuse() stops serving altogether (the allowlist is older than
 * ALLOWLIST_MAX_AGE): every session ends with GOAWAY REFUSED and the reason,
 * and new sessions get the same right after their handshake, until it is
 * called again with NULL.
 *
 * A tunneler (one SPIFFE ID, all its sessions together) may hold at most
 * streams_per_tunneler streams open; an OPEN beyond that is answered with
 * RST REFUSED `stream quota reached`, counted and logged (rate-limited).
 *
 * Before its handshake a peer is nobody: one source address (IPv4, IPv6
 * /64) may have at most handshakes_per_source handshakes in progress; more
 * connections are closed at accept, counted and logged (rate-limited).
 *
 * One data plane serves one event loop. With several workers
 * (connector/dpworkers.h) each worker's loop has its own, listening on the
 * same address (SO_REUSEPORT); what is counted over the whole connector —
 * sessions, handshakes per source, streams per tunneler — lives in one
 * struct dataplane_shared they all take from (a mutex per connection or
 * stream, never per byte). Everything else a data plane has is its loop's
 * alone: it is only ever called on that loop's thread.
 */
#ifndef ZTR_CONNECTOR_DATAPLANE_H
#define ZTR_CONNECTOR_DATAPLANE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "data/dsession.h"

struct metrics;
struct agent;
struct allowlist;
struct json_t;
struct ztr_clock;

#define DATAPLANE_MSG_NOT_ALLOWED "tunneler not allowed"
#define DATAPLANE_MSG_QUOTA "stream quota reached"
/* A tunneler of a peer trust domain outside its federation grant (seed 003). */
#define DATAPLANE_MSG_SCOPE_MISMATCH "grant scope mismatch"
/* handshakes_per_source when the config leaves it 0. */
#define DATAPLANE_HANDSHAKES_PER_SOURCE_DEFAULT 64
/* Sessions (handshaking or up) on the whole connector. */
#define DATAPLANE_SESSIONS_MAX 16384
#define DATAPLANE_REVOCATION_BUCKETS 6

struct connector_resource {
    char name[256];
    char target[128];
};

struct dataplane_config {
    const char *listen;
    const struct connector_resource *resources;
    size_t resource_count;
    const struct allowlist *allowlist;
    struct dsession_window window;      /* flow control of every session */
    int64_t dial_timeout_ms;
    int64_t idle_timeout_ms;        /* sessions silent this long are closed */
    uint32_t streams_per_tunneler;  /* 0: no quota beyond the mux's per session */
    uint32_t handshakes_per_source; /* TLS handshakes in progress per source address */
};

struct dataplane;

/* Admission counted over every data plane of the connector; reference-
 * counted (its maker, each data plane, each stream holding a place in its
 * tunneler's quota), so a relay draining past its data plane's stop can
 * still give its place back. Thread-safe. */
struct dataplane_shared;
int dataplane_shared_new(struct dataplane_shared **out, struct ztr_err *err);
void dataplane_shared_release(struct dataplane_shared *shared);

/* A data plane's counters; sums of several with dataplane_count. */
struct dataplane_counts {
    struct dsession_stats stats;
    uint64_t rejected;               /* tunnelers not allowed */
    uint64_t quota_refused;          /* streams over STREAMS_PER_TUNNELER */
    uint64_t handshakes_refused;     /* connections closed at accept */
    uint64_t scope_mismatches;       /* federation: refused outside a grant */
    uint64_t revocation_buckets[DATAPLANE_REVOCATION_BUCKETS];
    uint64_t revocation_count;
    double revocation_sum;
    /* Where allowlist changes stand (summed: the lowest version any loop
     * applied, the latest times), for the connector's `applied` report. */
    unsigned loops;                  /* loops summed in */
    int64_t allowlist_version;       /* applied by this loop (summed: the lowest) */
    double allowlist_applied_at;     /* ev_time it was applied (summed: the latest) */
    uint64_t revocations_pending;    /* sessions removed by a change, not yet closed */
    double revocation_last_close;    /* ev_time the last of those closed (summed: latest) */
};

/* What the data plane takes from its agent. dataplane_start fills it from
 * the agent; a test builds one around its own loop and certificates. loop
 * and tls must outlive the data plane (the agent updates tls in place on
 * renewal); trust_domain is copied. */
struct dataplane_env {
    struct ev_loop *loop;
    struct tls_ctx *tls;         /* server side, ALPN DATA_ALPN, the agent's identity */
    const char *trust_domain;    /* tunnelers must be in it */
    /* This connector's SPIFFE ID (borrowed: outlives the data plane), which
     * a tunneler's renewed-identity proof must name; NULL: refused. */
    const char *self_id;
    const struct ztr_clock *clock;   /* grant expiries; NULL = the system clock */
    /* The connector-wide admission (a reference is taken); NULL: its own. */
    struct dataplane_shared *shared;
    /* Listen with SO_REUSEPORT: other workers' data planes listen on the
     * same address (config->listen then names the port, never 0). */
    bool shared_listener;
};

/* Listens on config->listen. config's resources are copied; its allowlist
 * is the caller's and must outlive the data plane (changes to it take
 * effect at dataplane_enforce). */
int dataplane_new(const struct dataplane_env *env, const struct dataplane_config *config,
                  struct dataplane **out, struct ztr_err *err);
/* dataplane_new with the agent's loop, data TLS context and trust domain. */
int dataplane_start(struct agent *agent, const struct dataplane_config *config,
                    struct dataplane **out, struct ztr_err *err);
/* The port the listener got (CONNECTOR_LISTEN may ask for port 0). */
uint16_t dataplane_listen_port(const struct dataplane *dp);
/* The allowlist changed: close and reset what it no longer permits. */
void dataplane_enforce(struct dataplane *dp);
/* From now on list is the allowlist (borrowed until the next call or the
 * stop), enforced as dataplane_enforce does; changed_at (ev_time) is when
 * the change arrived, for ztr_revocation_apply_seconds. */
void dataplane_set_allowlist(struct dataplane *dp, const struct allowlist *list,
                             double changed_at);
/* The trust bundle changed: sessions whose tunneler no longer verifies
 * against the TLS context's bundle are closed (dsession_recheck_peer). */
void dataplane_recheck_peers(struct dataplane *dp);
/* Our certificate changed: every live session presents it to its
 * tunneler (dsession_present_identity). */
void dataplane_present_identity(struct dataplane *dp, const char *chain_pem, size_t chain_len,
                                const struct pki_key *key);
/* reason != NULL: close every session and refuse new ones with it (copied);
 * NULL: serve again. */
void dataplane_refuse(struct dataplane *dp, const char *reason);
/* Ends every session (GOAWAY "shutting down") and closes the listener. */
void dataplane_stop(struct dataplane *dp);

void dataplane_add_health(const struct dataplane *dp, struct json_t *health);
void dataplane_add_metrics(const struct dataplane *dp, struct metrics *metrics);
/* Adds dp's counters to sum (on dp's loop thread). */
void dataplane_count(const struct dataplane *dp, struct dataplane_counts *sum);
void dataplane_counts_add(struct dataplane_counts *sum, const struct dataplane_counts *counts);
/* The refusal in force ("" while serving). */
const char *dataplane_refusing(const struct dataplane *dp);
/* /health "data" fields and /metrics lines from counters (summed over
 * workers); refusing as dataplane_refusing. */
void dataplane_counts_health(const struct dataplane_counts *counts, const char *refusing,
                             struct json_t *health);
void dataplane_counts_metrics(const struct dataplane_counts *counts, struct metrics *metrics);

#endif
