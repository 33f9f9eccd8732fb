/* build/bin/connector: the agent core (common/agent.h) in the connector
 * role. It enrolls with an IP SAN for every address it advertises and tells
 * the controller where its data listener is and which resources it serves.
 * The data plane that uses them is built on this in its own module. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/agent.h"
#include "common/log.h"

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
};

static int
connector_configure(void *ctx, struct agent *agent, const struct config *config,
                    struct ztr_err *err)
{
    (void)agent;
    struct connector *c = ctx;
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
    (void)ctx;
    log_info("allowlist received", "version=%lld tunnelers=%zu",
             (long long)json_integer_value(json_object_get(msg, "version")),
             json_array_size(json_object_get(msg, "tunnelers")));
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
        .on_allowlist = connector_on_allowlist,
        .ctx = &connector,
    };
    int status = agent_main(&spec, argc - 1, argv + 1);
    json_decref(connector.resources);
    return status;
}
