/* build/bin/tunneler: the agent core (agent/agent.h) in the tunneler role,
 * with the data plane of tunneler/dataplane.h: port forwards and a SOCKS5
 * server whose connections are carried to connectors the controller names. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "base/log.h"
#include "data/dsession.h"
#include "data/mux.h"
#include "data/workers.h"
#include "tunneler/dataplane.h"
#include "tunneler/tworkers.h"

static const char *const forward_fields[] = {"listen", "resource", NULL};

/* The tunneler's settings: the agent's, then its own (FORWARDS and the data
 * window stay in struct config: tunneler_configure reads them there). */
struct tunneler_settings {
    struct agent_settings agent;
    char socks5_listen[128];       /* ip:port, or "off" */
    int64_t data_ping_interval_ms;
    int64_t connector_retry_min_ms, connector_retry_max_ms;
    int64_t client_timeout_ms;
    uint64_t client_streams_max;
};

static const struct config_key tunneler_keys[] = {
    AGENT_CONFIG_KEYS(struct tunneler_settings, agent, "/var/lib/ztr-tunneler",
                      "127.0.0.1:9102"),
    {.name = "FORWARDS", .type = CONFIG_LIST,
     .help = "port forwards: listen=resource,... (e.g. 127.0.0.1:15432=pg)",
     .item_keys = forward_fields},
    CONFIG_KEY("SOCKS5_LISTEN", CONFIG_STRING, "127.0.0.1:1080", "SOCKS5 server ip:port, or off",
               struct tunneler_settings, socks5_listen),
    DSESSION_CONFIG_KEYS,
    WORKERS_CONFIG_KEY,
    CONFIG_KEY("DATA_PING_INTERVAL", CONFIG_DURATION, "15s",
               "keepalive PING on each data session", struct tunneler_settings,
               data_ping_interval_ms),
    CONFIG_KEY("CONNECTOR_RETRY_MIN", CONFIG_DURATION, "500ms",
               "first backoff ceiling for a connector marked down", struct tunneler_settings,
               connector_retry_min_ms),
    CONFIG_KEY("CONNECTOR_RETRY_MAX", CONFIG_DURATION, "30s",
               "largest backoff ceiling for a connector", struct tunneler_settings,
               connector_retry_max_ms),
    CONFIG_KEY("CLIENT_TIMEOUT", CONFIG_DURATION, "30s",
               "a local connection's SOCKS5 handshake and stream open must finish within this",
               struct tunneler_settings, client_timeout_ms),
    CONFIG_KEY("CLIENT_STREAMS_MAX", CONFIG_UINT, "4096",
               "streams one local source IP may hold open at once, SOCKS5 and forwards (1..65536)",
               struct tunneler_settings, client_streams_max),
};

struct tunneler {
    struct tunneler_settings settings;
    struct tunneler_forward forwards[CONFIG_LIST_MAX];
    struct tunneler_config config;
    unsigned workers;              /* WORKERS */
    struct tunnel_workers *tunnel;
    struct agent *agent;
};

static bool
is_loopback(const struct pki_ip *ip)
{
    static const uint8_t v6_loopback[16] = {[15] = 1};
    if (ip->len == 4)
        return ip->bytes[0] == 127;
    return ip->len == 16 && memcmp(ip->bytes, v6_loopback, 16) == 0;
}

static int
tunneler_configure(void *ctx, struct agent *agent, const struct config *config,
                   struct ztr_err *err)
{
    (void)agent;
    struct tunneler *t = ctx;
    char host[64];
    uint16_t port;
    size_t n = config_list_len(config, "FORWARDS");
    for (size_t i = 0; i < n; i++) {
        const char *listen = config_list_get(config, "FORWARDS", i, "listen");
        const char *resource = config_list_get(config, "FORWARDS", i, "resource");
        if (config_parse_addr(listen, host, sizeof(host), &port) != 0)
            return config_fail(config, "FORWARDS", err, "listen \"%s\" must be ip:port", listen);
        if (strlen(resource) == 0 || strlen(resource) >= sizeof(t->forwards[0].resource))
            return config_fail(config, "FORWARDS", err, "resource \"%s\" must be 1..255 bytes",
                               resource);
        snprintf(t->forwards[i].listen, sizeof(t->forwards[i].listen), "%s", listen);
        snprintf(t->forwards[i].resource, sizeof(t->forwards[i].resource), "%s", resource);
    }
    t->config.forwards = t->forwards;
    t->config.forward_count = n;
    const char *socks = t->settings.socks5_listen;
    if (strcmp(socks, "off") != 0 && socks[0] != '\0') {
        if (config_parse_addr(socks, host, sizeof(host), &port) != 0)
            return config_fail(config, "SOCKS5_LISTEN", err, "must be ip:port or off");
        t->config.socks_listen = socks;
        struct pki_ip ip;
        if (pki_ip_parse(host, &ip) != 0 || !is_loopback(&ip))
            log_warn("SOCKS5 listener is not on loopback",
                     "listen=%s risk=\"SOCKS5 has no authentication: anyone who can reach this "
                     "address can use every resource this tunneler may reach\"",
                     socks);
    }
    TRY(dsession_window_config(config, &t->config.window, err));
    TRY(workers_config(config, &t->workers, err));
    t->config.ping_interval_ms = t->settings.data_ping_interval_ms;
    t->config.retry_min_ms = t->settings.connector_retry_min_ms;
    t->config.retry_max_ms = t->settings.connector_retry_max_ms;
    t->config.client_timeout_ms = t->settings.client_timeout_ms;
    if (t->settings.client_streams_max < 1 || t->settings.client_streams_max > 65536)
        return config_fail(config, "CLIENT_STREAMS_MAX", err, "must be 1..65536");
    t->config.client_streams_max = (uint32_t)t->settings.client_streams_max;
    if (t->config.ping_interval_ms <= 0 || t->config.retry_min_ms <= 0 ||
        t->config.retry_max_ms < t->config.retry_min_ms || t->config.client_timeout_ms <= 0)
        return config_fail(config, "CONNECTOR_RETRY_MAX", err,
                           "durations must be positive and RETRY_MAX >= RETRY_MIN");
    return 0;
}

static int
tunneler_start(void *ctx, struct agent *agent, struct ztr_err *err)
{
    struct tunneler *t = ctx;
    t->agent = agent;
    /* Federation: the peers' bundles of the saved list, before any loop
     * copies the data TLS context. */
    json_t *peers = tunnel_saved_peers(agent_state_dir(agent));
    struct ztr_err peer_err = {0};
    if (peers != NULL && agent_set_peer_bundles(agent, peers, NULL, &peer_err) != 0)
        log_error("peer trust domains not applied", "error=\"%s\"", peer_err.msg);
    json_decref(peers);
    return tunnel_workers_start(agent, &t->config, t->workers, &t->tunnel, err);
}

static void
tunneler_stop(void *ctx)
{
    struct tunneler *t = ctx;
    tunnel_workers_stop(t->tunnel);
    t->tunnel = NULL;
}

static void
tunneler_on_connectors(void *ctx, const json_t *msg)
{
    struct tunneler *t = ctx;
    /* Federation: the peers' bundles first, on every loop (a worker posted
     * the change before the list), so the list's foreign connectors verify;
     * a peer that left no longer does (the recheck). */
    bool changed = false;
    struct ztr_err err = {0};
    if (agent_set_peer_bundles(t->agent, json_object_get(msg, "peers"), &changed, &err) != 0)
        log_error("peer trust domains not applied", "error=\"%s\"", err.msg);
    else if (changed)
        tunnel_workers_bundle_changed(t->tunnel);
    tunnel_workers_set_connectors(t->tunnel, msg);
}

static void
tunneler_on_bundle(void *ctx)
{
    struct tunneler *t = ctx;
    tunnel_workers_bundle_changed(t->tunnel);
}

static void
tunneler_on_identity(void *ctx)
{
    struct tunneler *t = ctx;
    tunnel_workers_identity_changed(t->tunnel);
}

static void
tunneler_add_health(void *ctx, json_t *health)
{
    struct tunneler *t = ctx;
    tunnel_workers_add_health(t->tunnel, health);
}

static void
tunneler_add_metrics(void *ctx, struct metrics *m)
{
    struct tunneler *t = ctx;
    tunnel_workers_add_metrics(t->tunnel, m);
}

int
main(int argc, char **argv)
{
    struct tunneler tunneler = {0};
    struct agent_spec spec = {
        .role = PKI_ROLE_TUNNELER,
        .schema = tunneler_keys,
        .schema_len = sizeof(tunneler_keys) / sizeof(tunneler_keys[0]),
        .settings = &tunneler.settings,
        .agent_settings = &tunneler.settings.agent,
        .configure = tunneler_configure,
        .start = tunneler_start,
        .on_connectors = tunneler_on_connectors,
        .on_bundle = tunneler_on_bundle,
        .on_identity = tunneler_on_identity,
        .add_health = tunneler_add_health,
        .add_metrics = tunneler_add_metrics,
        .stop = tunneler_stop,
        .ctx = &tunneler,
    };
    return agent_main(&spec, argc - 1, argv + 1);
}
