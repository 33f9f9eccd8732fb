/* The agent's life cycle: configuration, start, signals, watchdog, stop. */
#include "agent/internal.h"

#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/log.h"
#include "net/net.h"

extern char **environ;

struct ev_loop *
agent_loop(struct agent *agent)
{
    return agent->loop;
}

enum agent_state
agent_current_state(const struct agent *agent)
{
    return agent->state;
}

const char *
agent_trust_domain(const struct agent *agent)
{
    return agent->trust_domain;
}

const char *
agent_state_dir(const struct agent *agent)
{
    return agent->state_dir;
}

const struct ztr_clock *
agent_clock(const struct agent *agent)
{
    return agent->clock;
}

void
agent_set_state(struct agent *a, enum agent_state to, const char *reason)
{
    if (a->state == to)
        return;
    if (!agent_transition_allowed(a->state, to)) {
        log_error("state change refused", "from=%s to=%s reason=\"%s\"",
                  agent_state_name(a->state), agent_state_name(to), reason);
        return;
    }
    log_info("state change", "from=%s to=%s reason=\"%s\"", agent_state_name(a->state),
             agent_state_name(to), reason);
    a->state = to;
    sd_notifyf(0, "STATUS=%s", agent_state_name(to));
}


/* ---- configuration and life cycle -------------------------------------------- */

static const struct config_key common_keys[] = {
    {"ENROLLMENT_TOKEN", CONFIG_SECRET, NULL, "one-time enrollment token (first start only)", NULL},
    {"CONTROLLER_ADDR", CONFIG_ADDR, NULL, "controller control-plane address host:port", NULL},
    {"CONTROLLER_CA", CONFIG_STRING, NULL, "PEM file of the CA to trust for the controller", NULL},
    {"TRUST_DOMAIN", CONFIG_STRING, NULL, "SPIFFE trust domain, e.g. example.org", NULL},
    {"STATE_DIR", CONFIG_STRING, NULL, "where the key, certificate and bundle live", NULL},
    {"NODE_NAME", CONFIG_STRING, NULL, "this node's name (its SPIFFE ID's last segment)", NULL},
    {"HEALTH_LISTEN", CONFIG_ADDR, NULL, "/health and /metrics listener", NULL},
    {"RECONNECT_MIN_DELAY", CONFIG_DURATION, "1s", "first reconnect backoff ceiling", NULL},
    {"RECONNECT_MAX_DELAY", CONFIG_DURATION, "60s", "largest reconnect delay", NULL},
    {"RECONNECT_ATTEMPTS", CONFIG_UINT, "10", "attempts before reporting disconnected", NULL},
    {"LOG_LEVEL", CONFIG_STRING, "info", "debug, info, warn or error", NULL},
};
#define COMMON_KEY_COUNT (sizeof(common_keys) / sizeof(common_keys[0]))

static int
copy_setting(char *dst, size_t cap, const struct config *config, const char *name,
             struct ztr_err *err)
{
    const char *value = config_get(config, name);
    dst[0] = '\0';
    if (value == NULL)
        return 0;
    if (strlen(value) >= cap)
        return config_fail(config, name, err, "longer than %zu bytes", cap - 1);
    memcpy(dst, value, strlen(value) + 1);
    return 0;
}

static int
read_controller_ca(struct agent *a, struct ztr_err *err)
{
    if (a->controller_ca_path[0] == '\0')
        return ztr_err_set(err, ZTR_E_CONFIG,
                           "failed to read controller CA: CONTROLLER_CA is not set");
    if (file_read_all(a->controller_ca_path, STATE_FILE_MAX, &a->controller_ca_pem,
                      &a->controller_ca_len, err) != 0)
        return ztr_err_wrap(err, "failed to read controller CA");
    struct pki_bundle *bundle;
    TRY(pki_bundle_from_pem(a->controller_ca_pem, a->controller_ca_len, &bundle, err));
    pki_bundle_free(bundle);
    return 0;
}

static int
configure(struct agent *a, const struct config *config, struct ztr_err *err)
{
    if (!config_is_set(config, "TRUST_DOMAIN"))
        return ztr_err_set(err, ZTR_E_CONFIG, "TRUST_DOMAIN is required");
    TRY(copy_setting(a->trust_domain, sizeof(a->trust_domain), config, "TRUST_DOMAIN", err));
    TRY(pki_trust_domain_check(a->trust_domain, err));
    if (!config_is_set(config, "CONTROLLER_ADDR"))
        return ztr_err_set(err, ZTR_E_CONFIG, "CONTROLLER_ADDR is required");
    TRY(copy_setting(a->controller_addr, sizeof(a->controller_addr), config, "CONTROLLER_ADDR",
                     err));
    TRY(copy_setting(a->controller_ca_path, sizeof(a->controller_ca_path), config,
                     "CONTROLLER_CA", err));
    TRY(copy_setting(a->state_dir, sizeof(a->state_dir), config, "STATE_DIR", err));
    TRY(copy_setting(a->node_name, sizeof(a->node_name), config, "NODE_NAME", err));
    TRY(copy_setting(a->health_listen, sizeof(a->health_listen), config, "HEALTH_LISTEN", err));
    const char *token = config_get(config, "ENROLLMENT_TOKEN");
    if (token != NULL && (a->token = strdup(token)) == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    a->reconnect_policy.base_ms = config_get_duration_ms(config, "RECONNECT_MIN_DELAY");
    a->reconnect_policy.cap_ms = config_get_duration_ms(config, "RECONNECT_MAX_DELAY");
    a->reconnect_policy.max_attempts = (unsigned)config_get_uint(config, "RECONNECT_ATTEMPTS");
    if (a->reconnect_policy.base_ms < 1 || a->reconnect_policy.cap_ms < a->reconnect_policy.base_ms)
        return config_fail(config, "RECONNECT_MAX_DELAY", err,
                           "must be at least RECONNECT_MIN_DELAY (and both above 0)");
    enum log_level level;
    if (log_level_from_name(config_get(config, "LOG_LEVEL"), &level) != 0)
        return config_fail(config, "LOG_LEVEL", err, "use debug, info, warn or error");
    log_set_level(level);
    if (a->node_name[0] != '\0') {
        struct pki_spiffe_id probe;
        if (pki_spiffe_id_build(a->trust_domain, a->spec->role, a->node_name, &probe, err) != 0)
            return config_fail(config, "NODE_NAME", err, "not usable in a SPIFFE ID: %s",
                               err->msg);
    }
    return 0;
}

void
agent_stop(struct agent *a, int exit_code)
{
    if (a->exit_code < 0)
        a->exit_code = exit_code;
    if (a->ctl != NULL)
        ctl_stream_close(a->ctl, "agent stopping");
    ev_break(a->loop, EVBREAK_ALL);
}

static void
watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    /* The loop is alive: that is what systemd's watchdog asks. */
    sd_notify(0, "WATCHDOG=1");
}

static void
signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    struct agent *a = w->data;
    if (w->signum == SIGHUP) {
        /* A fresh signal: retry now instead of waiting out the backoff. */
        log_info("SIGHUP: retrying the controller now", "state=%s", agent_state_name(a->state));
        backoff_reset(&a->reconnect_backoff);
        a->budget_exhausted = false;
        if (a->ctl == NULL && ev_is_active(&a->reconnect_timer)) {
            ev_timer_stop(a->loop, &a->reconnect_timer);
            ev_timer_set(&a->reconnect_timer, 0, 0);
            ev_timer_start(a->loop, &a->reconnect_timer);
        }
        return;
    }
    log_info("stopping", "signal=%d", w->signum);
    agent_stop(a, AGENT_EXIT_OK);
}

static int
decide_start(struct agent *a, struct ztr_err *err)
{
    bool found = false;
    TRY(file_ensure_dir(a->state_dir, 0700, err));
    TRY(agent_load_identity(a, &found, err));
    if (a->controller_ca_path[0] != '\0' || !found)
        TRY(read_controller_ca(a, err));
    if (!found) {
        if (a->token == NULL)
            return ztr_err_set(err, ZTR_E_CONFIG, AGENT_MSG_TOKEN_REQUIRED
                               " (no identity in %s yet)", a->state_dir);
        if (a->node_name[0] == '\0')
            return ztr_err_set(err, ZTR_E_CONFIG, "NODE_NAME is required to enroll");
        agent_set_state(a, AGENT_ENROLLING, "no identity yet");
        return 0;
    }
    if (a->node_name[0] == '\0') {
        struct pki_spiffe_id id;
        if (pki_spiffe_id_parse(a->spiffe_id, &id, NULL) == 0)
            snprintf(a->node_name, sizeof(a->node_name), "%s", id.name);
    }
    log_info("identity loaded", "spiffe_id=%s not_after=%lld renew_at=%lld", a->spiffe_id,
             (long long)a->not_after, (long long)a->renew_at);
    agent_set_state(a, AGENT_CONNECTING, "identity loaded");
    return 0;
}

static void
agent_free(struct agent *a)
{
    ev_timer_stop(a->loop, &a->reconnect_timer);
    ev_timer_stop(a->loop, &a->heartbeat_timer);
    ev_timer_stop(a->loop, &a->renew_timer);
    /* Let the control connection finish closing before its context goes. */
    for (int i = 0; i < 50 && a->ctl != NULL; i++)
        ev_run(a->loop, EVRUN_NOWAIT);
    if (a->spec->stop != NULL && a->daemon_started)
        a->spec->stop(a->spec->ctx);
    http_server_stop(a->health);
    tls_ctx_free(a->ctl_tls);
    tls_ctx_free(a->data_tls);
    tls_ctx_free(a->enroll_tls);
    pki_key_free(a->pending_key);
    free(a->pending_chain);
    free(a->chain_pem);
    if (a->key_pem != NULL)
        explicit_bzero(a->key_pem, a->key_len);
    free(a->key_pem);
    free(a->bundle_pem);
    free(a->controller_ca_pem);
    if (a->token != NULL)
        explicit_bzero(a->token, strlen(a->token));
    free(a->token);
}

static void
print_line(void *ctx, const char *line)
{
    fprintf(ctx, "%s\n", line);
}

int
agent_main(const struct agent_spec *spec, int argc, char **argv)
{
    size_t key_count = COMMON_KEY_COUNT + spec->extra_key_count;
    struct config_key *keys = calloc(key_count, sizeof(*keys));
    if (keys == NULL)
        return AGENT_EXIT_RUNTIME;
    memcpy(keys, common_keys, sizeof(common_keys));
    /* memcpy() from NULL is undefined even for 0 bytes: the tunneler has no
     * extra keys, and UBSan (make asan) aborted it before it could start. */
    if (spec->extra_key_count > 0)
        memcpy(keys + COMMON_KEY_COUNT, spec->extra_keys, spec->extra_key_count * sizeof(*keys));
    for (size_t i = 0; i < key_count; i++) {
        if (strcmp(keys[i].name, "STATE_DIR") == 0)
            keys[i].default_value = spec->default_state_dir;
        if (strcmp(keys[i].name, "HEALTH_LISTEN") == 0)
            keys[i].default_value = spec->default_health_listen;
    }
    struct agent a = {.spec = spec, .state = AGENT_UNENROLLED, .exit_code = -1};
    struct ztr_err err = {0};
    struct config *config = NULL;
    int exit_code = AGENT_EXIT_CONFIG;
    if (config_load(keys, key_count, environ, argc, argv, &config, &err) != 0) {
        log_error("agent failed to start", "error=\"%s\"", err.msg);
        free(keys);
        return AGENT_EXIT_CONFIG;
    }
    if (config_help_requested(config)) {
        printf("usage: %s [--config FILE] [flags]\n\nflags (each also an environment variable "
               "and a YAML key):\n",
               pki_role_name(spec->role));
        config_print_help(keys, key_count, print_line, stdout);
        config_free(config);
        free(keys);
        return 0;
    }
    a.clock = clock_system();
    a.loop = ev_default_loop(EVFLAG_AUTO);
    signal(SIGPIPE, SIG_IGN);
    int rc = pki_init(&err);
    if (rc == 0)
        rc = configure(&a, config, &err);
    if (rc == 0 && spec->configure != NULL)
        rc = spec->configure(spec->ctx, &a, config, &err);
    config_free(config);
    backoff_init(&a.reconnect_backoff, &a.reconnect_policy, 0);
    struct backoff_policy renew_policy = {1000, 60000, 0};
    backoff_init(&a.renew_backoff, &renew_policy, 0);
    ev_timer_init(&a.reconnect_timer, agent_reconnect_cb, 0, 0);
    ev_timer_init(&a.heartbeat_timer, agent_heartbeat_cb, 1, 1);
    ev_timer_init(&a.renew_timer, agent_renew_cb, 0, 0);
    a.reconnect_timer.data = a.heartbeat_timer.data = a.renew_timer.data = &a;
    if (rc == 0)
        rc = decide_start(&a, &err);
    if (rc == 0 && a.health_listen[0] != '\0') {
        if (http_server_start(a.loop, a.health_listen, agent_health_handler, &a, &a.health, &err) != 0) {
            exit_code = AGENT_EXIT_RUNTIME;
            rc = -1;
        }
    }
    if (rc != 0) {
        log_error("agent failed to start", "error=\"%s\"", err.msg);
        agent_free(&a);
        free(keys);
        pki_cleanup();
        return exit_code;
    }
    ev_signal_init(&a.sigterm, signal_cb, SIGTERM);
    ev_signal_init(&a.sigint, signal_cb, SIGINT);
    ev_signal_init(&a.sighup, signal_cb, SIGHUP);
    a.sigterm.data = a.sigint.data = a.sighup.data = &a;
    ev_signal_start(a.loop, &a.sigterm);
    ev_signal_start(a.loop, &a.sigint);
    ev_signal_start(a.loop, &a.sighup);
    log_info("agent started", "role=%s state=%s controller=%s health_listen=%s health_port=%u "
             "state_dir=%s",
             pki_role_name(spec->role), agent_state_name(a.state), a.controller_addr,
             a.health_listen, a.health ? http_server_port(a.health) : 0, a.state_dir);
    uint64_t watchdog_usec = 0;
    ev_timer_init(&a.watchdog_timer, watchdog_cb, 0, 0);
    if (sd_watchdog_enabled(0, &watchdog_usec) > 0) {
        a.watchdog_timer.repeat = (double)watchdog_usec / 2e6;
        ev_timer_again(a.loop, &a.watchdog_timer);
    }
    agent_start_daemon(&a);
    if (a.exit_code < 0) {
        if (agent_identity_expired(&a)) {
            a.counters.auth_expired++;
            agent_start_reauth(&a, "certificate expired while the agent was down");
        } else {
            agent_ctl_connect(&a);
        }
        if (a.exit_code < 0)
            ev_run(a.loop, 0);
    }
    sd_notify(0, "STOPPING=1");
    ev_timer_stop(a.loop, &a.watchdog_timer);
    ev_signal_stop(a.loop, &a.sigterm);
    ev_signal_stop(a.loop, &a.sigint);
    ev_signal_stop(a.loop, &a.sighup);
    exit_code = a.exit_code < 0 ? AGENT_EXIT_OK : a.exit_code;
    agent_free(&a);
    free(keys);
    log_info("agent stopped", "exit_status=%d", exit_code);
    log_clear_secrets();
    pki_cleanup();
    return exit_code;
}

/* Data sessions carry bulk streams: one recv() / send() for several TLS
 * records. */
#define AGENT_DATA_IO_BUFFER (64 * 1024)

struct tls_ctx *
agent_data_tls(struct agent *agent, enum tls_side side, const char *alpn, struct ztr_err *err)
{
    if (agent->data_tls != NULL)
        return agent->data_tls;
    if (!agent->have_identity) {
        ztr_err_set(err, ZTR_E_INVALID, "no identity yet");
        return NULL;
    }
    struct tls_ctx_config config = {
        .side = side, .alpn = alpn, .chain_pem = agent->chain_pem,
        .chain_len = agent->chain_len, .key_pem = agent->key_pem, .key_len = agent->key_len,
        .bundle_pem = agent->bundle_pem, .bundle_len = agent->bundle_len,
        .clock = agent->clock, .io_buffer = AGENT_DATA_IO_BUFFER};
    if (tls_ctx_new(&config, &agent->data_tls, err) != 0)
        return NULL;
    return agent->data_tls;
}
