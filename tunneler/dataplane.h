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
 * is found by the next connection. A stream the connector refuses for a
 * reason about the tunneler or the resource (not allowed, unknown) is not
 * retried elsewhere; one whose target could not be reached is.
 */
#ifndef ZTR_TUNNELER_DATAPLANE_H
#define ZTR_TUNNELER_DATAPLANE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

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
    uint32_t window, session_window;
    uint32_t max_window;                /* streams' windows may grow to this (session: 4x) */
    int64_t ping_interval_ms;
    int64_t retry_min_ms, retry_max_ms;
    int64_t client_timeout_ms;          /* SOCKS5 handshake + stream open */
};

struct tunnel;

int tunnel_start(struct agent *agent, const struct tunneler_config *config,
                 struct tunnel **out, struct ztr_err *err);
/* A `connectors` message (schema-checked): replaces the list, persists it. */
void tunnel_set_connectors(struct tunnel *t, const struct json_t *msg);
void tunnel_stop(struct tunnel *t);

void tunnel_add_health(const struct tunnel *t, struct json_t *health);
void tunnel_add_metrics(const struct tunnel *t, struct metrics *metrics);

#endif
