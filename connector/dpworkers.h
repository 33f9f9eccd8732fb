/*
 * The connector's data plane on every worker (WORKERS, data/workers.h):
 * one struct dataplane per worker loop, each listening on CONNECTOR_LISTEN
 * with SO_REUSEPORT, so the kernel spreads new sessions over the loops and
 * a session stays on the loop that accepted it. Admission counted over the
 * whole connector (sessions, HANDSHAKES_PER_SOURCE, STREAMS_PER_TUNNELER)
 * is one struct dataplane_shared.
 *
 * Everything here is called on the agent's loop (worker 0); each change
 * reaches the workers as a message, in order:
 *   - an allowlist change is an immutable copy of the allowlist, shared by
 *     every worker (reference-counted; the last to move past it frees it):
 *     each worker swaps it in and enforces it at once, as one loop did;
 *   - a refusal (ALLOWLIST_MAX_AGE, revocation) is copied to each;
 *   - a renewal or a bundle change carries copies of the new chain, key
 *     and bundle: each worker updates its own TLS context (a tls_ctx
 *     serves one loop) and then presents the identity to, or re-checks,
 *     its live sessions. Worker 0 uses the agent's context, which the
 *     agent has updated already.
 * /health and /metrics sum the workers' counters, each read on its own
 * loop (workers_call).
 */
#ifndef ZTR_CONNECTOR_DPWORKERS_H
#define ZTR_CONNECTOR_DPWORKERS_H

#include <stdint.h>

#include "base/err.h"
#include "connector/dataplane.h"

struct agent;
struct allowlist;
struct metrics;
struct json_t;

struct dp_workers;

/* workers data planes on the agent's loop and workers-1 threads; list is
 * the first allowlist (taken: freed when no worker uses it any more, and
 * never changed meanwhile); config->allowlist is not read. */
int dp_workers_start(struct agent *agent, const struct dataplane_config *config,
                     unsigned workers, struct allowlist *list, struct dp_workers **out,
                     struct ztr_err *err);
/* A new allowlist (taken, as above), enforced on every worker. */
void dp_workers_set_allowlist(struct dp_workers *g, struct allowlist *list);
/* dataplane_refuse on every worker. */
void dp_workers_refuse(struct dp_workers *g, const char *reason);
/* The agent's certificate changed (agent_identity): every worker's new
 * handshakes use it and its live sessions present it. */
void dp_workers_identity_changed(struct dp_workers *g);
/* The agent's trust bundle changed: every worker's new handshakes check
 * against it and its live sessions' peers are verified again. */
void dp_workers_bundle_changed(struct dp_workers *g);
uint16_t dp_workers_listen_port(const struct dp_workers *g);
/* Stops every data plane and joins the workers. NULL is a no-op. */
void dp_workers_stop(struct dp_workers *g);

/* The counters summed over every loop (a synchronous call into each). */
void dp_workers_count(struct dp_workers *g, struct dataplane_counts *sum);
void dp_workers_add_health(struct dp_workers *g, struct json_t *health);
void dp_workers_add_metrics(struct dp_workers *g, struct metrics *metrics);

#endif
