/* build/bin/tunneler: the agent core (agent/agent.h) in the tunneler role,
 * with the data plane of tunneler/dataplane.h: port forwards and a SOCKS5
 * server whose connections are carried to connectors the controller names. */
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "base/log.h"
#include "data/dsession.h"
#include "data/mux.h"
#include "tunneler/dataplane.h"

static const char *const forward_fields[] = {"listen", "resource", NULL};

static const struct config_key tunneler_keys[] = {
    {"FORWARDS", CONFIG_LIST, NULL, "port forwards: listen=resource,... (e.g. 127.0.0.1:15432=pg)",
     forward_fields},
    {"SOCKS5_LISTEN", CONFIG_STRING, "127.0.0.1:1080", "SOCKS5 server ip:port, or off", NULL},
    DSESSION_CONFIG_KEYS,
    {"DATA_PING_INTERVAL", CONFIG_DURATION, "15s", "keepalive PING on each data session", NULL},
    {"CONNECTOR_RETRY_MIN", CONFIG_DURATION, "500ms",
     "first backoff ceiling for a connector marked down", NULL},
    {"CONNECTOR_RETRY_MAX", CONFIG_DURATION, "30s", "largest backoff ceiling for a connector",
     NULL},
    {"CLIENT_TIMEOUT", CONFIG_DURATION, "30s",
     "a local connection's SOCKS5 handshake and stream open must finish within this", NULL},
};

struct tunneler {
    struct tunneler_forward forwards[CONFIG_LIST_MAX];
    struct tunneler_config config;
    char socks_listen[128];
    struct tunnel *tunnel;
};

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
    const char *socks = config_get(config, "SOCKS5_LISTEN");
    if (socks != NULL && strcmp(socks, "off") != 0 && socks[0] != '\0') {
        if (config_parse_addr(socks, host, sizeof(host), &port) != 0)
            return config_fail(config, "SOCKS5_LISTEN", err, "must be ip:port or off");
        snprintf(t->socks_listen, sizeof(t->socks_listen), "%s", socks);
        t->config.socks_listen = t->socks_listen;
    }
    TRY(dsession_window_config(config, &t->config.window, err));
    t->config.ping_interval_ms = config_get_duration_ms(config, "DATA_PING_INTERVAL");
    t->config.retry_min_ms = config_get_duration_ms(config, "CONNECTOR_RETRY_MIN");
    t->config.retry_max_ms = config_get_duration_ms(config, "CONNECTOR_RETRY_MAX");
    t->config.client_timeout_ms = config_get_duration_ms(config, "CLIENT_TIMEOUT");
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
    return tunnel_start(agent, &t->config, &t->tunnel, err);
}

static void
tunneler_stop(void *ctx)
{
    struct tunneler *t = ctx;
    tunnel_stop(t->tunnel);
    t->tunnel = NULL;
}

static void
tunneler_on_connectors(void *ctx, const json_t *msg)
{
    struct tunneler *t = ctx;
    tunnel_set_connectors(t->tunnel, msg);
}

static void
tunneler_add_health(void *ctx, json_t *health)
{
    struct tunneler *t = ctx;
    tunnel_add_health(t->tunnel, health);
}

static void
tunneler_add_metrics(void *ctx, struct metrics *m)
{
    struct tunneler *t = ctx;
    tunnel_add_metrics(t->tunnel, m);
}

int
main(int argc, char **argv)
{
    struct tunneler tunneler = {0};
    struct agent_spec spec = {
        .role = PKI_ROLE_TUNNELER,
        .default_state_dir = "/var/lib/ztr-tunneler",
        .default_health_listen = "127.0.0.1:9102",
        .extra_keys = tunneler_keys,
        .extra_key_count = sizeof(tunneler_keys) / sizeof(tunneler_keys[0]),
        .configure = tunneler_configure,
        .start = tunneler_start,
        .on_connectors = tunneler_on_connectors,
        .add_health = tunneler_add_health,
        .add_metrics = tunneler_add_metrics,
        .stop = tunneler_stop,
        .ctx = &tunneler,
    };
    return agent_main(&spec, argc - 1, argv + 1);
}
