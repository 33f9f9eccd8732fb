/*
 * The fleet view's live half: what heartbeats and session starts say about
 * each node, kept in memory on the controller's loop and written to the
 * store in batches, and the escalation the runbook (seed 000) asks for
 * when several nodes fail the same way.
 *
 * Why in memory: a heartbeat used to cost two SQLite transactions (last_seen,
 * then status), about 16 KiB written per heartbeat (bench/RESULTS.md). Now a
 * heartbeat writes nothing while its node is known ONLINE; fleet_persist()
 * (called by the offline sweep, once per heartbeat interval, just before it)
 * writes in one transaction the last_seen and counters of every node whose
 * stored last_seen would otherwise look stale to that sweep, plus those
 * whose failure counters just rose. A live node is so written about once
 * every three heartbeat intervals, all nodes of a tick in one commit; the
 * sweep's OFFLINE decision stays exact. What a crash loses: at most the
 * last three intervals of last_seen and counters, never a status change.
 *
 * Reconnect history (for flapping) lives only here: a controller restart
 * forgets it, and a node's first session after a start is not a reconnect.
 *
 * Everything runs on the controller's one loop thread; no call blocks
 * beyond the store writes named.
 */
#ifndef ZTR_CONTROLLER_FLEET_H
#define ZTR_CONTROLLER_FLEET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/err.h"
#include "controller/store.h"

/* Seed 000: "Compare telemetry deltas over 5 minutes"; "Escalate ... if:
 * 3+ nodes show the same auth failure pattern." */
#define FLEET_WINDOW_S 300
#define FLEET_ESCALATE_NODES 3
/* A node is flapping with this many reconnects within FLEET_WINDOW_S. */
#define FLEET_FLAP_RECONNECTS 3
/* Nodes tracked at once, at least (fleet_hold raises it above the
 * control plane's SESSIONS_MAX), so that every node with a live session
 * fits; idle ones are dropped first when room is needed. About 1 KiB each. */
#define FLEET_NODES_MAX 32768
/* Nodes an escalation names (log line, event, admin API); the count
 * covers all of them. */
#define FLEET_ESCALATION_NAMES 10
/* A renewal is missed once this share of the certificate's life has
 * passed without one: agents renew at 50 % +- 10 %. */
#define FLEET_RENEW_DEADLINE_PERMILLE 600
/* "connector/dc1-a": role, '/', name. */
#define FLEET_LABEL_MAX (16 + 1 + STORE_NAME_MAX)

/* The counters agents send in heartbeats (agent/control.c). */
enum fleet_counter {
    FLEET_RECONNECT_SCHEDULED,
    FLEET_RECONNECT_FAILED,
    FLEET_AUTH_EXPIRED,
    FLEET_AUTH_REVOKED,
    FLEET_AUTH_UNAVAILABLE,
    FLEET_RENEWALS_OK,
    FLEET_RENEWALS_FAILED,
    FLEET_COUNTER_COUNT
};

/* The runbook's name ("telemetry.auth.expired"), as the agent's /health
 * shows it; "renewals.ok" and "renewals.failed" for the two it lacks. */
const char *fleet_counter_name(enum fleet_counter counter);
/* The heartbeat's name ("auth_expired"). */
const char *fleet_counter_wire_name(enum fleet_counter counter);

/* Ways a node fails that count towards an escalation. */
enum fleet_failure {
    FLEET_FAIL_AUTH_EXPIRED,     /* its counter rose */
    FLEET_FAIL_AUTH_REVOKED,
    FLEET_FAIL_AUTH_UNAVAILABLE,
    FLEET_FAIL_RECONNECT_FAILED,
    FLEET_FAIL_RENEWALS_FAILED,
    FLEET_FAIL_FLAPPING,         /* FLEET_FLAP_RECONNECTS reconnects in the window */
    FLEET_FAIL_RENEWAL_MISSED,   /* its renewal deadline passed without a renewal */
    FLEET_FAIL_CERT_EXPIRED,     /* its certificate's not_after passed */
    FLEET_FAILURE_COUNT
};

/* "telemetry.auth.unavailable", "flapping", "renewal_missed", ... */
const char *fleet_failure_name(enum fleet_failure failure);

/* A certificate's horizon. issued_at is the store's (the certificates
 * history) or, when unknown, not_after - svid_ttl_s; renew_at is the
 * middle of its life, renew_deadline FLEET_RENEW_DEADLINE_PERMILLE of it.
 * All 0 for a node without a certificate. */
struct fleet_horizon {
    int64_t issued_at;
    int64_t renew_at;
    int64_t renew_deadline;
    int64_t not_after;
};

void fleet_horizon_of(const struct store_node *node, int64_t svid_ttl_s,
                      struct fleet_horizon *out);
/* Not revoked, certificate still valid, deadline passed. */
bool fleet_renewal_missed(const struct store_node *node, const struct fleet_horizon *horizon,
                          int64_t now);
/* Not revoked, has a certificate, and it has run out. */
bool fleet_cert_expired(const struct store_node *node, int64_t now);

struct fleet;

/* store and clock are borrowed and must outlive the fleet; svid_ttl_s
 * feeds fleet_horizon_of. Escalations are logged and recorded as "alert"
 * events in store. */
int fleet_new(struct store *store, const struct ztr_clock *clock, int64_t svid_ttl_s,
              struct fleet **out, struct ztr_err *err);
/* Room for at least sessions nodes with a live session, and half as many
 * idle ones beside them (never below FLEET_NODES_MAX). */
void fleet_hold(struct fleet *fleet, size_t sessions);
/* Frees without writing anything: call fleet_persist(f, INT64_MAX) first
 * to keep what is pending. NULL is fine. */
void fleet_free(struct fleet *fleet);

/* A session of node said hello and the store now says ONLINE. Counts a
 * reconnect unless it is the node's first session since the start. */
void fleet_hello(struct fleet *fleet, const struct store_node *node);
/* A heartbeat from node, with the agent's counters (a JSON object, or
 * NULL). Returns true when the store must be told the node is ONLINE (the
 * sweep marked it OFFLINE meanwhile, or the node could not be tracked);
 * call fleet_online_written() once that write succeeded. */
bool fleet_heartbeat(struct fleet *fleet, const struct store_node *node, const json_t *counters);
void fleet_online_written(struct fleet *fleet, const char *id);
/* The node's heartbeat says which trust bundle version it installed. */
void fleet_bundle_held(struct fleet *fleet, const char *id, int64_t version);
/* A connector's heartbeat said which allowlist it enforces (epoch: "" for
 * none; cut at FLEET_EPOCH_MAX). */
#define FLEET_EPOCH_MAX 16
void fleet_allowlist_held(struct fleet *fleet, const char *id, int64_t version,
                          const char *epoch);
/* A connector's `applied` report: every data loop enforces version now.
 * Raises the version held, never lowers it (reports may come late). */
void fleet_allowlist_applied(struct fleet *fleet, const char *id, int64_t version);
/* The store marked the node OFFLINE (the sweep, or its last session's close). */
void fleet_offline(struct fleet *fleet, const char *id);
/* One of the node's sessions that said hello has ended. */
void fleet_session_closed(struct fleet *fleet, const char *id);

/* Writes, in batches of one transaction each, every node whose stored
 * last_seen is older than stale_before and that has newer news, and every
 * node whose failure counters rose since its last write. INT64_MAX writes
 * everything pending (at stop). */
int fleet_persist(struct fleet *fleet, int64_t stale_before, struct ztr_err *err);
/* Once per sweep: finds nodes whose renewal deadline or expiry passed
 * since the last tick (one store read, at most once a second), and drops
 * nodes idle for longer than the window with nothing left to write. */
void fleet_tick(struct fleet *fleet);

/* What the fleet knows about one node right now. */
struct fleet_node_view {
    int64_t last_seen;                          /* last heartbeat or hello seen; 0: none */
    bool have_counters;
    uint64_t counters[FLEET_COUNTER_COUNT];     /* as last reported */
    int64_t counters_at;                        /* when; 0: never */
    /* Increase of each counter over the last deltas_window_s seconds:
     * FLEET_WINDOW_S, up to 20 s more, or less while the node is new. */
    uint64_t deltas[FLEET_COUNTER_COUNT];
    int64_t deltas_window_s;
    unsigned reconnects;                        /* within FLEET_WINDOW_S */
    bool flapping;
    int sessions;                               /* live sessions that said hello */
    int64_t bundle_version;                     /* it reported holding; 0: not reported */
    bool allowlist_reported;                    /* a heartbeat said which allowlist */
    int64_t allowlist_version;                  /* the one it enforces (0: none yet) */
    char allowlist_epoch[FLEET_EPOCH_MAX + 1];
};

/* false when the node is not tracked (never seen since the start, or
 * dropped while idle). */
bool fleet_node_view(struct fleet *fleet, const char *id, struct fleet_node_view *out);

struct fleet_escalation {
    enum fleet_failure failure;
    size_t nodes;                               /* distinct nodes within FLEET_WINDOW_S */
    size_t named;
    char names[FLEET_ESCALATION_NAMES][FLEET_LABEL_MAX + 1];
    int64_t logged_at;                          /* its last log line; 0: none */
};

/* The failures that FLEET_ESCALATE_NODES or more nodes show within the
 * window now; returns how many were written to out (at most max). */
size_t fleet_escalations(struct fleet *fleet, struct fleet_escalation *out, size_t max);
/* Escalation log lines written since the start. */
uint64_t fleet_escalations_logged(const struct fleet *fleet);

#endif
