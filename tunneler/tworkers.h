/*
 * The tunneler's data plane on every worker (WORKERS, data/workers.h): one
 * struct tunnel per worker loop, each with its own forward and SOCKS5
 * listeners on the configured addresses (SO_REUSEPORT: the kernel spreads
 * new client connections over the loops) and its own session to each
 * connector, so the streams spread over one session per connector per
 * worker. The per-source-IP client quota (CLIENT_STREAMS_MAX) is one
 * struct tunnel_shared.
 *
 * Everything here is called on the agent's loop (worker 0); each change
 * reaches the other workers as a message, in order: a connector list as
 * a copy of the message (worker 0's tunnel saves it), a renewal or bundle
 * change as copies of the new chain, key and bundle for the worker's own
 * TLS context (a tls_ctx serves one loop). A loop that marks a connector
 * down (or sees it back) tells the others, which follow unless they have a
 * live session to it; each fails over its own clients. /health and /metrics sum
 * the workers' counters and merge their connector lists, each read on its
 * own loop (workers_call).
 */
#ifndef ZTR_TUNNELER_TWORKERS_H
#define ZTR_TUNNELER_TWORKERS_H

#include <stdint.h>

#include "base/err.h"
#include "tunneler/dataplane.h"

struct agent;
struct metrics;
struct json_t;

struct tunnel_workers;

/* workers tunnels on the agent's loop and workers-1 threads. */
int tunnel_workers_start(struct agent *agent, const struct tunneler_config *config,
                         unsigned workers, struct tunnel_workers **out, struct ztr_err *err);
/* A `connectors` message (schema-checked) for every worker. */
void tunnel_workers_set_connectors(struct tunnel_workers *g, const struct json_t *msg);
void tunnel_workers_identity_changed(struct tunnel_workers *g);
void tunnel_workers_bundle_changed(struct tunnel_workers *g);
/* Stops every tunnel and joins the workers. NULL is a no-op. */
void tunnel_workers_stop(struct tunnel_workers *g);

void tunnel_workers_add_health(struct tunnel_workers *g, struct json_t *health);
void tunnel_workers_add_metrics(struct tunnel_workers *g, struct metrics *metrics);

#endif
