/* build/bin/connector: the agent core (common/agent.h) in the connector
 * role. It enrolls with an IP SAN for every address it advertises and tells
 * the controller where its data listener is and which resources it serves.
 * The data plane that uses them is built on this in its own module. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/agent.h"
#include "common/log.h"
#include "connector/allowlist.h"

#define ADVERTISE_MAX 16

static const char *const resource_fields[] = {"name", "target", NULL};

static const struct config_key connector_keys[] = {
    {"CONNECTOR_LISTEN", CONFIG_ADDR, NULL, "data-plane listener ip:port (required)", NULL},
    {"CONNECTOR_ADVERTISE", CONFIG_STRING, NULL,
     "comma-separated IPs tunnelers dial (IP SANs); default: the listen IP", NULL},
    {"RESOURCES", CONFIG_LIST, NULL, "resources served: name=target,...", resource_fields},
};

struct connector {
    char listen[128];
    char advertise[ADVERTISE_MAX][64];
    size_t advertise_count;
    char data_address[128];        /* what tunnelers dial: first advertised IP + port */
    json_t *resources;             /* names */
    struct agent *agent;
    struct allowlist *allowlist;   /* enforced from disk while the controller is away */
};

static int
connector_configure(void *ctx, struct agent *agent, const struct config *config,
                    struct ztr_err *err)
{
    struct connector *c = ctx;
    c->agent = agent;
    const char *listen = config_get(config, "CONNECTOR_LISTEN");
    if (listen == NULL)
        return ztr_err_set(err, ZTR_E_CONFIG, "CONNECTOR_LISTEN is required");
    snprintf(c->listen, sizeof(c->listen), "%s", listen);
    char host[64];
    uint16_t port;
    if (config_parse_addr(listen, host, sizeof(host), &port) != 0 || port == 0)
        return config_fail(config, "CONNECTOR_LISTEN", err, "needs an IP and a port");
    const char *advertise = config_get(config, "CONNECTOR_ADVERTISE");
    char list[1024];
    snprintf(list, sizeof(list), "%s", advertise ? advertise : host);
    char *save = NULL;
    for (char *ip = strtok_r(list, ",", &save); ip != NULL; ip = strtok_r(NULL, ",", &save)) {
        struct pki_ip parsed;
        while (*ip == ' ')
            ip++;
        if (pki_ip_parse(ip, &parsed) != 0)
            return config_fail(config, advertise ? "CONNECTOR_ADVERTISE" : "CONNECTOR_LISTEN",
                               err, "\"%s\" is not an IP address tunnelers can dial", ip);
        if (c->advertise_count == ADVERTISE_MAX)
            return config_fail(config, "CONNECTOR_ADVERTISE", err, "more than %d addresses",
                               ADVERTISE_MAX);
        snprintf(c->advertise[c->advertise_count++], sizeof(c->advertise[0]), "%s", ip);
    }
    if (strcmp(c->advertise[0], "0.0.0.0") == 0 || strcmp(c->advertise[0], "::") == 0)
        return config_fail(config, "CONNECTOR_ADVERTISE", err,
                           "a wildcard listen address needs CONNECTOR_ADVERTISE");
    bool v6 = strchr(c->advertise[0], ':') != NULL;
    snprintf(c->data_address, sizeof(c->data_address), v6 ? "[%s]:%u" : "%s:%u",
             c->advertise[0], port);
    c->resources = json_array();
    for (size_t i = 0; i < config_list_len(config, "RESOURCES"); i++)
        json_array_append_new(c->resources,
                              json_string(config_list_get(config, "RESOURCES", i, "name")));
    c->allowlist = allowlist_new();
    if (c->allowlist == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    return 0;
}

/* The last allowlist received, from STATE_DIR: enforced even if the
 * controller never answers (fail-static). */
static int
connector_start(void *ctx, struct agent *agent, struct ztr_err *err)
{
    struct connector *c = ctx;
    TRY(allowlist_load(c->allowlist, agent_state_dir(agent), err));
    if (allowlist_version(c->allowlist) > 0)
        log_info("allowlist loaded from disk", "version=%lld tunnelers=%zu received_at=%lld",
                 (long long)allowlist_version(c->allowlist), allowlist_size(c->allowlist),
                 (long long)allowlist_received_at(c->allowlist));
    return 0;
}

static json_t *
advertised(const struct connector *c)
{
    json_t *list = json_array();
    for (size_t i = 0; i < c->advertise_count; i++)
        json_array_append_new(list, json_string(c->advertise[i]));
    return list;
}

static void
connector_add_enroll(void *ctx, json_t *enroll)
{
    json_object_set_new(enroll, "addresses", advertised(ctx));
}

static void
connector_add_hello(void *ctx, json_t *hello)
{
    struct connector *c = ctx;
    json_object_set_new(hello, "addresses", advertised(c));
    json_object_set_new(hello, "data_listen", json_string(c->data_address));
    json_object_set(hello, "resources", c->resources);
}

static void
connector_on_allowlist(void *ctx, const json_t *msg)
{
    struct connector *c = ctx;
    struct ztr_err err = {0};
    int64_t now = clock_wall_s(agent_clock(c->agent));
    if (allowlist_apply(c->allowlist, msg, now, &err) != 0) {
        log_warn("allowlist ignored", "error=\"%s\"", err.msg);
        return;
    }
    if (allowlist_save(c->allowlist, agent_state_dir(c->agent), &err) != 0)
        log_warn("allowlist not persisted", "error=\"%s\"", err.msg);
    log_info("allowlist received", "version=%lld tunnelers=%zu",
             (long long)allowlist_version(c->allowlist), allowlist_size(c->allowlist));
}

static void
connector_add_health(void *ctx, json_t *health)
{
    struct connector *c = ctx;
    int64_t received = allowlist_received_at(c->allowlist);
    int64_t now = clock_wall_s(agent_clock(c->agent));
    json_object_set_new(health, "allowlist",
                        json_pack("{s:I, s:I, s:I}", "version",
                                  (json_int_t)allowlist_version(c->allowlist), "tunnelers",
                                  (json_int_t)allowlist_size(c->allowlist), "age_seconds",
                                  (json_int_t)(received > 0 ? now - received : -1)));
}

static void
connector_add_metrics(void *ctx, char **text, size_t *len)
{
    struct connector *c = ctx;
    int64_t received = allowlist_received_at(c->allowlist);
    agent_metrics_append(
        text, len,
        "# HELP ztr_allowlist_version Version of the allowlist being enforced.\n"
        "# TYPE ztr_allowlist_version gauge\nztr_allowlist_version %lld\n"
        "# HELP ztr_allowlist_age_seconds Time since the enforced allowlist arrived.\n"
        "# TYPE ztr_allowlist_age_seconds gauge\nztr_allowlist_age_seconds %lld\n",
        (long long)allowlist_version(c->allowlist),
        (long long)(received > 0 ? clock_wall_s(agent_clock(c->agent)) - received : -1));
}
int
main(int argc, char **argv)
{
    struct connector connector = {0};
    struct agent_spec spec = {
        .role = PKI_ROLE_CONNECTOR,
        .default_state_dir = "/var/lib/ztr-connector",
        .default_health_listen = "127.0.0.1:9101",
        .extra_keys = connector_keys,
        .extra_key_count = sizeof(connector_keys) / sizeof(connector_keys[0]),
        .configure = connector_configure,
        .add_enroll = connector_add_enroll,
        .add_hello = connector_add_hello,
        .start = connector_start,
        .on_allowlist = connector_on_allowlist,
        .add_health = connector_add_health,
        .add_metrics = connector_add_metrics,
        .ctx = &connector,
    };
    int status = agent_main(&spec, argc - 1, argv + 1);
    json_decref(connector.resources);
    allowlist_free(connector.allowlist);
    return status;
}
