/* `controller serve`: configuration, start-up, signals and a clean stop. */
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "base/config.h"
#include "base/fileio.h"
#include "net/http.h"
#include "base/log.h"
#include "controller/controller.h"

extern char **environ;

static const struct config_key controller_schema[] = {
    {"TRUST_DOMAIN", CONFIG_STRING, NULL, "SPIFFE trust domain, e.g. example.org", NULL},
    {"STATE_DIR", CONFIG_STRING, "/var/lib/ztr-controller", "database and CA files", NULL},
    {"CONTROLLER_LISTEN", CONFIG_ADDR, "0.0.0.0:7443", "control-plane mTLS listener", NULL},
    {"ADMIN_LISTEN", CONFIG_ADDR, "127.0.0.1:8080", "admin API listener", NULL},
    {"ADMIN_AUTH_TOKEN", CONFIG_SECRET, NULL, "bearer token for the admin API (required)", NULL},
    {"HEALTH_LISTEN", CONFIG_STRING, "127.0.0.1:9100", "/health and /metrics listener, or off",
     NULL},
    {"CA_CERT", CONFIG_STRING, NULL, "operator CA certificate (PEM); default: managed CA", NULL},
    {"CA_KEY", CONFIG_STRING, NULL, "operator CA key (PEM)", NULL},
    {"SVID_TTL", CONFIG_DURATION, "24h", "lifetime of issued certificates", NULL},
    {"HEARTBEAT_INTERVAL", CONFIG_DURATION, "10s", "agent heartbeat interval", NULL},
    {"TOKEN_TTL", CONFIG_DURATION, "24h", "default lifetime of enrollment tokens", NULL},
    {"LOG_LEVEL", CONFIG_STRING, "info", "debug, info, warn or error", NULL},
};
#define SCHEMA_LEN (sizeof(controller_schema) / sizeof(controller_schema[0]))

#define ADMIN_TOKEN_MIN 16

static void
print_line(void *ctx, const char *line)
{
    fprintf(ctx, "%s\n", line);
}

static int
copy_setting(char *dst, size_t cap, const struct config *config, const char *name,
             struct ztr_err *err)
{
    const char *value = config_get(config, name);
    if (value == NULL) {
        dst[0] = '\0';
        return 0;
    }
    if (strlen(value) >= cap)
        return config_fail(config, name, err, "longer than %zu bytes", cap - 1);
    memcpy(dst, value, strlen(value) + 1);
    return 0;
}

static int
load_settings(struct controller *c, const struct config *config, struct ztr_err *err)
{
    struct controller_settings *s = &c->settings;
    if (!config_is_set(config, "TRUST_DOMAIN"))
        return ztr_err_set(err, ZTR_E_CONFIG, "TRUST_DOMAIN is required");
    TRY(copy_setting(s->trust_domain, sizeof(s->trust_domain), config, "TRUST_DOMAIN", err));
    TRY(pki_trust_domain_check(s->trust_domain, err));
    const char *token = config_get(config, "ADMIN_AUTH_TOKEN");
    if (token == NULL)
        return ztr_err_set(err, ZTR_E_CONFIG,
                           "ADMIN_AUTH_TOKEN is required: the admin API never runs without "
                           "authentication (set it in the EnvironmentFile)");
    if (strlen(token) < ADMIN_TOKEN_MIN)
        return config_fail(config, "ADMIN_AUTH_TOKEN", err,
                           "too short: use at least %d random characters", ADMIN_TOKEN_MIN);
    c->admin_token = strdup(token);
    if (c->admin_token == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    TRY(copy_setting(s->state_dir, sizeof(s->state_dir), config, "STATE_DIR", err));
    TRY(copy_setting(s->controller_listen, sizeof(s->controller_listen), config,
                     "CONTROLLER_LISTEN", err));
    TRY(copy_setting(s->admin_listen, sizeof(s->admin_listen), config, "ADMIN_LISTEN", err));
    TRY(copy_setting(s->health_listen, sizeof(s->health_listen), config, "HEALTH_LISTEN", err));
    char host[128];
    uint16_t port;
    if (strcmp(s->health_listen, "off") == 0)
        s->health_listen[0] = '\0';
    else if (config_parse_addr(s->health_listen, host, sizeof(host), &port) != 0)
        return config_fail(config, "HEALTH_LISTEN", err,
                           "invalid address \"%s\" (use host:port, or off)", s->health_listen);
    TRY(copy_setting(s->ca_cert, sizeof(s->ca_cert), config, "CA_CERT", err));
    TRY(copy_setting(s->ca_key, sizeof(s->ca_key), config, "CA_KEY", err));
    s->svid_ttl_s = config_get_duration_ms(config, "SVID_TTL") / 1000;
    if (s->svid_ttl_s < 10)
        return config_fail(config, "SVID_TTL", err, "must be at least 10s");
    s->heartbeat_interval_ms = config_get_duration_ms(config, "HEARTBEAT_INTERVAL");
    if (s->heartbeat_interval_ms < 100)
        return config_fail(config, "HEARTBEAT_INTERVAL", err, "must be at least 100ms");
    s->token_ttl_s = config_get_duration_ms(config, "TOKEN_TTL") / 1000;
    if (s->token_ttl_s < 1 || s->token_ttl_s > 366LL * 86400)
        return config_fail(config, "TOKEN_TTL", err, "must be between 1s and 366d");
    enum log_level level;
    if (log_level_from_name(config_get(config, "LOG_LEVEL"), &level) != 0)
        return config_fail(config, "LOG_LEVEL", err, "use debug, info, warn or error");
    log_set_level(level);
    return 0;
}

static void
stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    log_info("controller stopping", "signal=%d", w->signum);
    ev_break(loop, EVBREAK_ALL);
}

static void
watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    sd_notify(0, "WATCHDOG=1");
}

static int
start(struct controller *c, struct ztr_err *err)
{
    TRY(file_ensure_dir(c->settings.state_dir, 0700, err));
    TRY(pki_init(err));
    TRY(ca_set_open(&c->settings, c->clock, &c->cas, err));
    char db_path[1200];
    snprintf(db_path, sizeof(db_path), "%s/controller.db", c->settings.state_dir);
    TRY(store_open(db_path, c->clock, &c->store, err));
    TRY(ctl_server_start(c, err));
    TRY(admin_start(c, err));
    return 0;
}

static void
stop(struct controller *c)
{
    admin_stop(c);
    ctl_server_stop(c->ctl);
    store_close(c->store);
    ca_set_free(c->cas);
    if (c->admin_token != NULL) {
        explicit_bzero(c->admin_token, strlen(c->admin_token));
        free(c->admin_token);
    }
    pki_cleanup();
}

/* Exit statuses: a configuration error will not fix itself, so systemd's
 * RestartPreventExitStatus=2 stops retrying it; a runtime failure (a port
 * in use, a CA file) may, and exits 1. */
enum { CONTROLLER_EXIT_RUNTIME = 1, CONTROLLER_EXIT_CONFIG = 2 };

int
daemon_main(int argc, char **argv)
{
    struct ztr_err err = {0};
    struct config *config = NULL;
    if (config_load(controller_schema, SCHEMA_LEN, environ, argc, argv, &config, &err) != 0) {
        log_error("controller failed to start", "error=\"%s\"", err.msg);
        return CONTROLLER_EXIT_CONFIG;
    }
    if (config_help_requested(config)) {
        printf("usage: controller [serve] [--config FILE] [flags]\n"
               "       controller <token|node|resource|allow|deny|allowlist|ca|events> ...\n\n"
               "flags (each also an environment variable and a YAML key):\n");
        config_print_help(controller_schema, SCHEMA_LEN, print_line, stdout);
        config_free(config);
        return 0;
    }
    struct controller c = {0};
    c.clock = clock_system();
    c.loop = ev_default_loop(EVFLAG_AUTO);
    c.started_at = clock_wall_s(c.clock);
    int rc = load_settings(&c, config, &err);
    config_free(config);
    int status = CONTROLLER_EXIT_CONFIG;
    if (rc == 0) {
        rc = start(&c, &err);
        status = CONTROLLER_EXIT_RUNTIME;
    }
    if (rc != 0) {
        log_error("controller failed to start", "error=\"%s\"", err.msg);
        stop(&c);
        return status;
    }
    ev_signal sigterm, sigint;
    ev_signal_init(&sigterm, stop_cb, SIGTERM);
    ev_signal_init(&sigint, stop_cb, SIGINT);
    ev_signal_start(c.loop, &sigterm);
    ev_signal_start(c.loop, &sigint);
    signal(SIGPIPE, SIG_IGN);
    ev_timer watchdog;
    uint64_t watchdog_usec = 0;
    if (sd_watchdog_enabled(0, &watchdog_usec) > 0) {
        ev_timer_init(&watchdog, watchdog_cb, 0, (double)watchdog_usec / 2e6);
        ev_timer_again(c.loop, &watchdog);
    }
    /* The real ports matter when a listener was given port 0 (tests). */
    log_info("controller started",
             "trust_domain=%s control_listen=%s control_port=%u admin_listen=%s admin_port=%u "
             "health_listen=%s health_port=%u state_dir=%s",
             c.settings.trust_domain, c.settings.controller_listen, ctl_server_port(c.ctl),
             c.settings.admin_listen, http_server_port(c.admin_http), c.settings.health_listen,
             c.health_http ? http_server_port(c.health_http) : 0, c.settings.state_dir);
    sd_notify(0, "READY=1\nSTATUS=serving");
    ev_run(c.loop, 0);
    sd_notify(0, "STOPPING=1");
    if (watchdog_usec > 0)
        ev_timer_stop(c.loop, &watchdog);
    ev_signal_stop(c.loop, &sigterm);
    ev_signal_stop(c.loop, &sigint);
    stop(&c);
    log_info("controller stopped", NULL);
    log_clear_secrets();
    return 0;
}
