/* The agent's life cycle: settings, agent_new / agent_start / agent_free, and
 * agent_main, which runs them in the daemon skeleton (base/daemon.h). */
#include "agent/internal.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/daemon.h"
#include "base/fileio.h"
#include "base/log.h"
#include "net/resolver.h"

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

int
agent_identity(const struct agent *agent, const char **chain_pem, size_t *chain_len,
               const struct pki_key **key)
{
    if (!agent->have_identity || agent->key == NULL)
        return -1;
    *chain_pem = agent->chain_pem;
    *chain_len = agent->chain_len;
    *key = agent->key;
    return 0;
}

const char *
agent_trust_domain(const struct agent *agent)
{
    return agent->trust_domain;
}

const char *
agent_spiffe_id(const struct agent *agent)
{
    return agent->spiffe_id;
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
    daemon_notify_status(agent_state_name(to));
}


/* ---- configuration and life cycle -------------------------------------------- */

int
agent_settings_check(const struct agent_settings *s, enum pki_role role,
                     const struct config *config, struct ztr_err *err)
{
    if (s->trust_domain[0] == '\0')
        return ztr_err_set(err, ZTR_E_CONFIG, "TRUST_DOMAIN is required");
    TRY(pki_trust_domain_check(s->trust_domain, err));
    if (s->controller_addr[0] == '\0')
        return ztr_err_set(err, ZTR_E_CONFIG, "CONTROLLER_ADDR is required");
    char controllers[AGENT_CONTROLLERS_MAX][AGENT_CONTROLLER_ADDR_MAX];
    size_t controller_count;
    struct ztr_err list_err = {0};
    if (agent_controllers_parse(s->controller_addr, controllers, &controller_count,
                                &list_err) != 0)
        return config_fail(config, "CONTROLLER_ADDR", err, "%s", list_err.msg);
    if (s->reconnect_min_delay_ms < 1 || s->reconnect_max_delay_ms < s->reconnect_min_delay_ms)
        return config_fail(config, "RECONNECT_MAX_DELAY", err,
                           "must be at least RECONNECT_MIN_DELAY (and both above 0)");
    if (s->log_level[0] != '\0') {
        enum log_level level;
        if (log_level_from_name(s->log_level, &level) != 0)
            return config_fail(config, "LOG_LEVEL", err, "use debug, info, warn or error");
        log_set_level(level);
    }
    if (s->node_name[0] != '\0') {
        struct pki_spiffe_id probe;
        if (pki_spiffe_id_build(s->trust_domain, role, s->node_name, &probe, err) != 0)
            return config_fail(config, "NODE_NAME", err, "not usable in a SPIFFE ID: %s",
                               err->msg);
    }
    return 0;
}

static int
read_controller_ca(struct agent *a, struct ztr_err *err)
{
    if (a->controller_ca_path[0] == '\0')
        return ztr_err_set(err, ZTR_E_CONFIG,
                           PKI_MSG_READ_CA ": CONTROLLER_CA is not set");
    if (file_read_all(a->controller_ca_path, STATE_FILE_MAX, &a->controller_ca_pem,
                      &a->controller_ca_len, err) != 0)
        return ztr_err_wrap(err, PKI_MSG_READ_CA);
    struct pki_bundle *bundle;
    TRY(pki_bundle_from_pem(a->controller_ca_pem, a->controller_ca_len, &bundle, err));
    pki_bundle_free(bundle);
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

void
agent_finish(struct agent *agent)
{
    agent_stop(agent, AGENT_EXIT_OK);
}

bool
agent_send(struct agent *agent, json_t *msg)
{
    if (agent->ctl == NULL || !agent->welcomed) {
        json_decref(msg);
        return false;
    }
    agent_ctl_send(agent, msg);
    return true;
}

int
agent_exit_code(const struct agent *agent)
{
    return agent->exit_code;
}

void
agent_retry_now(struct agent *a)
{
    /* Final states wait for an operator, not for a signal. */
    if (a->state == AGENT_REVOKED || a->reauth_terminal) {
        log_info("SIGHUP: nothing to retry", "state=%s", agent_state_name(a->state));
        return;
    }
    /* A fresh signal: retry now instead of waiting out the backoff. */
    log_info("SIGHUP: retrying the controller now", "state=%s", agent_state_name(a->state));
    backoff_reset(&a->reconnect_backoff);
    a->budget_exhausted = false;
    if (a->ctl == NULL && ev_is_active(&a->reconnect_timer)) {
        ev_timer_stop(a->loop, &a->reconnect_timer);
        ev_timer_set(&a->reconnect_timer, 0, 0);
        ev_timer_start(a->loop, &a->reconnect_timer);
    }
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
    bool terminal = false;
    TRY(agent_reauth_load(a, &terminal, err));
    if (terminal)
        agent_set_state(a, AGENT_EXPIRED, "re-authentication failed before this start");
    else if (!agent_identity_expired(a))
        agent_set_state(a, AGENT_CONNECTING, "identity loaded");
    return 0;
}

int
agent_new(struct ev_loop *loop, const struct ztr_clock *clock, const struct agent_spec *spec,
          const struct agent_settings *settings, struct agent **out, struct ztr_err *err)
{
    TRY(agent_settings_check(settings, spec->role, NULL, err));
    struct agent *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    a->spec = spec;
    a->loop = loop;
    a->clock = clock;
    a->state = AGENT_UNENROLLED;
    a->exit_code = -1;
    /* The fields are as large as the settings' (same limits). */
    memcpy(a->trust_domain, settings->trust_domain, sizeof(a->trust_domain));
    memcpy(a->state_dir, settings->state_dir, sizeof(a->state_dir));
    memcpy(a->node_name, settings->node_name, sizeof(a->node_name));
    if (agent_controllers_parse(settings->controller_addr, a->controllers, &a->controller_count,
                                err) != 0 ||
        net_resolver_new(loop, &a->resolver, err) != 0) {
        agent_free(a);
        return -1;
    }
    snprintf(a->controller_addr, sizeof(a->controller_addr), "%s", a->controllers[0]);
    memcpy(a->controller_ca_path, settings->controller_ca, sizeof(a->controller_ca_path));
    memcpy(a->health_listen, settings->health_listen, sizeof(a->health_listen));
    a->reconnect_policy.base_ms = settings->reconnect_min_delay_ms;
    a->reconnect_policy.cap_ms = settings->reconnect_max_delay_ms;
    a->reconnect_policy.max_attempts = (unsigned)settings->reconnect_attempts;
    a->reauth_on_expiry = settings->reauth_on_expiry;
    backoff_init(&a->reconnect_backoff, &a->reconnect_policy, 0);
    struct backoff_policy renew_policy = {1000, 60000, 0};
    backoff_init(&a->renew_backoff, &renew_policy, 0);
    ev_timer_init(&a->reconnect_timer, agent_reconnect_cb, 0, 0);
    ev_timer_init(&a->heartbeat_timer, agent_heartbeat_cb, 1, 1);
    ev_timer_init(&a->renew_timer, agent_renew_cb, 0, 0);
    ev_timer_init(&a->expiry_timer, agent_expiry_cb, 0, 0);
    a->reconnect_timer.data = a->heartbeat_timer.data = a->renew_timer.data = a;
    a->expiry_timer.data = a;
    if (settings->enrollment_token[0] != '\0' &&
        (a->token = strdup(settings->enrollment_token)) == NULL) {
        agent_free(a);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    *out = a;
    return 0;
}

int
agent_start(struct agent *a, struct ztr_err *err)
{
    if (decide_start(a, err) != 0) {
        a->exit_code = AGENT_EXIT_CONFIG;
        return -1;
    }
    /* Before the controller is contacted: a token is spent only on a key
     * this host has kept. */
    if (a->state == AGENT_ENROLLING && agent_prepare_enroll_key(a, err) != 0) {
        a->exit_code = AGENT_EXIT_RUNTIME;
        return -1;
    }
    if (a->health_listen[0] != '\0' &&
        http_server_start(a->loop, a->health_listen, agent_health_handler, a, &a->health,
                          err) != 0) {
        a->exit_code = AGENT_EXIT_RUNTIME;
        return -1;
    }
    log_info("agent started", "role=%s state=%s controller=%s health_listen=%s health_port=%u "
             "state_dir=%s",
             pki_role_name(a->spec->role), agent_state_name(a->state), a->controller_addr,
             a->health_listen, a->health ? http_server_port(a->health) : 0, a->state_dir);
    agent_start_daemon(a);
    if (a->exit_code >= 0 || a->state == AGENT_EXPIRED)
        return 0;
    if (agent_identity_expired(a))
        agent_certificate_expired(a, "certificate expired while the agent was down");
    else
        agent_ctl_connect(a);
    return 0;
}

void
agent_free(struct agent *a)
{
    if (a == NULL)
        return;
    /* Stopping: a control stream that closes now schedules nothing. */
    if (a->exit_code < 0)
        a->exit_code = AGENT_EXIT_OK;
    if (a->ctl != NULL)
        ctl_stream_close(a->ctl, "agent stopping");
    /* Let the control connection finish closing before its context goes. */
    for (int i = 0; i < 50 && a->ctl != NULL; i++)
        ev_run(a->loop, EVRUN_NOWAIT);
    net_resolver_free(a->resolver);
    ev_timer_stop(a->loop, &a->reconnect_timer);
    ev_timer_stop(a->loop, &a->heartbeat_timer);
    ev_timer_stop(a->loop, &a->renew_timer);
    ev_timer_stop(a->loop, &a->expiry_timer);
    if (a->spec->stop != NULL && a->daemon_started)
        a->spec->stop(a->spec->ctx);
    http_server_stop(a->health);
    tls_ctx_free(a->ctl_tls);
    tls_ctx_free(a->data_tls);
    json_decref(a->peer_bundles);
    tls_ctx_free(a->enroll_tls);
    pki_key_free(a->pending_key);
    pki_key_free(a->reauth_anchor);
    pki_key_free(a->key);
    free(a->reauth_csr);
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
    free(a);
}

/* ---- agent_main: the agent in the daemon skeleton ----------------------------- */

struct agent_process {
    const struct agent_spec *spec;
    struct agent *agent;
    bool pki_ready;
};

static int
process_configure(void *ctx, struct daemon *daemon, const struct config *config,
                  struct ztr_err *err)
{
    struct agent_process *p = ctx;
    const struct agent_spec *spec = p->spec;
    TRY(pki_init(err));
    p->pki_ready = true;
    TRY(agent_settings_check(spec->agent_settings, spec->role, config, err));
    TRY(agent_new(daemon_loop(daemon), daemon_clock(daemon), spec, spec->agent_settings,
                  &p->agent, err));
    if (spec->configure != NULL)
        TRY(spec->configure(spec->ctx, p->agent, config, err));
    return 0;
}

static int
process_start(void *ctx, struct daemon *daemon, int *exit_status, struct ztr_err *err)
{
    struct agent_process *p = ctx;
    if (agent_start(p->agent, err) != 0) {
        *exit_status = agent_exit_code(p->agent);
        return -1;
    }
    if (agent_exit_code(p->agent) >= 0)
        daemon_stop(daemon, agent_exit_code(p->agent));
    return 0;
}

static void
process_hup(void *ctx, struct daemon *daemon)
{
    (void)daemon;
    struct agent_process *p = ctx;
    agent_retry_now(p->agent);
}

static bool
process_term(void *ctx, struct daemon *daemon)
{
    (void)daemon;
    struct agent_process *p = ctx;
    const struct agent_spec *spec = p->spec;
    if (spec->on_terminate == NULL || p->agent == NULL || p->agent->exit_code >= 0)
        return false;
    return spec->on_terminate(spec->ctx);
}

static int
process_stop(void *ctx, bool started, int exit_status)
{
    struct agent_process *p = ctx;
    /* A final state stays up until stopped, and then says which it was. */
    if (started && p->agent->exit_code < 0 && exit_status == AGENT_EXIT_OK) {
        if (p->agent->state == AGENT_REVOKED)
            exit_status = AGENT_EXIT_REVOKED;
        else if (p->agent->reauth_terminal)
            exit_status = AGENT_EXIT_EXPIRED;
    }
    if (started && p->agent->exit_code < 0)
        agent_stop(p->agent, exit_status);
    if (started)
        exit_status = p->agent->exit_code;
    agent_free(p->agent);
    p->agent = NULL;
    if (started)
        log_info("agent stopped", "exit_status=%d", exit_status);
    if (p->pki_ready)
        pki_cleanup();
    return exit_status;
}

int
agent_main(const struct agent_spec *spec, int argc, char **argv)
{
    char usage[128];
    const char *program = pki_role_name(spec->role);
    snprintf(usage, sizeof(usage), "usage: %s [--config FILE] [flags]\n       %s --version", program, program);
    struct agent_process process = {.spec = spec};
    struct daemon_spec daemon = {
        .program = program, .usage = usage, .msg_failed = "agent failed to start", .msg_stopping = "stopping",
        .schema = spec->schema, .schema_len = spec->schema_len, .settings = spec->settings,
        .configure = process_configure, .start = process_start, .on_hup = process_hup,
        .on_term = process_term, .stop = process_stop, .ctx = &process};
    return daemon_run(&daemon, argc, argv);
}

/* Data sessions carry bulk streams: one recv() / send() for several TLS
 * records. */
#define AGENT_DATA_IO_BUFFER (64 * 1024)

int
agent_data_tls_config(const struct agent *agent, enum tls_side side, const char *alpn,
                      struct tls_ctx_config *out, struct ztr_err *err)
{
    if (!agent->have_identity)
        return ztr_err_set(err, ZTR_E_INVALID, "no identity yet");
    *out = (struct tls_ctx_config){
        .side = side, .alpn = alpn, .chain_pem = agent->chain_pem,
        .chain_len = agent->chain_len, .key_pem = agent->key_pem, .key_len = agent->key_len,
        .bundle_pem = agent->bundle_pem, .bundle_len = agent->bundle_len,
        .clock = agent->clock, .io_buffer = AGENT_DATA_IO_BUFFER,
        .trusts = agent->data_trusts, .trust_count = agent->data_trust_count};
    return 0;
}

struct agent_tls_copy {
    struct tls_ctx_config config;   /* points into text and trusts */
    struct tls_trust trusts[TLS_TRUSTS_MAX];
    size_t text_len;
    char text[];                    /* chain, key, bundle, alpn, then each trust's domain
                                       and bundle, each NUL-ended */
};

struct agent_tls_copy *
agent_data_tls_copy(const struct agent *agent, enum tls_side side, const char *alpn)
{
    struct tls_ctx_config config;
    struct ztr_err err;
    if (agent_data_tls_config(agent, side, alpn, &config, &err) != 0)
        return NULL;
    size_t alpn_len = strlen(alpn);
    size_t len = config.chain_len + config.key_len + config.bundle_len + alpn_len + 4;
    for (size_t i = 0; i < config.trust_count; i++)
        len += strlen(config.trusts[i].trust_domain) + config.trusts[i].bundle_len + 2;
    struct agent_tls_copy *copy = malloc(sizeof(*copy) + len);
    if (copy == NULL)
        return NULL;
    copy->config = config;
    copy->text_len = len;
    char *p = copy->text;
    const struct {
        const char **field;
        const char *value;
        size_t len;
    } parts[] = {{&copy->config.chain_pem, config.chain_pem, config.chain_len},
                 {&copy->config.key_pem, config.key_pem, config.key_len},
                 {&copy->config.bundle_pem, config.bundle_pem, config.bundle_len},
                 {&copy->config.alpn, alpn, alpn_len}};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        memcpy(p, parts[i].value, parts[i].len);
        p[parts[i].len] = '\0';
        *parts[i].field = p;
        p += parts[i].len + 1;
    }
    for (size_t i = 0; i < config.trust_count; i++) {
        const struct tls_trust *t = &config.trusts[i];
        size_t td_len = strlen(t->trust_domain);
        memcpy(p, t->trust_domain, td_len + 1);
        copy->trusts[i].trust_domain = p;
        p += td_len + 1;
        memcpy(p, t->bundle_pem, t->bundle_len);
        p[t->bundle_len] = '\0';
        copy->trusts[i].bundle_pem = p;
        copy->trusts[i].bundle_len = t->bundle_len;
        p += t->bundle_len + 1;
    }
    copy->config.trusts = copy->trusts;
    return copy;
}

void
agent_tls_copy_free(struct agent_tls_copy *copy)
{
    if (copy == NULL)
        return;
    explicit_bzero(copy->text, copy->text_len);
    free(copy);
}

int
agent_tls_copy_apply(const struct agent_tls_copy *copy, struct tls_ctx **ctx,
                     struct ztr_err *err)
{
    const struct tls_ctx_config *c = &copy->config;
    if (*ctx == NULL)
        return tls_ctx_new(c, ctx, err);
    if (c->trust_count > 0) {
        /* The peers' trust domains travel with the bundle (federation). */
        TRY(tls_ctx_update(*ctx, c->chain_pem, c->chain_len, c->key_pem, c->key_len, NULL, 0,
                           err));
        return tls_ctx_update_trust(*ctx, c->trusts, c->trust_count, err);
    }
    return tls_ctx_update(*ctx, c->chain_pem, c->chain_len, c->key_pem, c->key_len,
                          c->bundle_pem, c->bundle_len, err);
}

void
agent_tls_copy_take(const struct agent_tls_copy *copy, struct tls_ctx **ctx, unsigned worker,
                    bool identity, bool bundle, void (*recheck)(void *target),
                    void (*present)(void *target, const char *chain, size_t len,
                                    const struct pki_key *key),
                    void *target)
{
    struct ztr_err err = {0};
    if (agent_tls_copy_apply(copy, ctx, &err) != 0) {
        log_error("worker TLS context not updated", "worker=%u error=\"%s\"", worker, err.msg);
        return;
    }
    if (bundle)
        recheck(target);
    if (!identity)
        return;
    struct pki_key *key = NULL;
    if (agent_tls_copy_key(copy, &key, &err) != 0) {
        log_error("renewed certificate not presented", "worker=%u error=\"%s\"", worker,
                  err.msg);
        return;
    }
    size_t len;
    const char *chain = agent_tls_copy_chain(copy, &len);
    present(target, chain, len, key);
    pki_key_free(key);
}

const char *
agent_tls_copy_chain(const struct agent_tls_copy *copy, size_t *len)
{
    *len = copy->config.chain_len;
    return copy->config.chain_pem;
}

int
agent_tls_copy_key(const struct agent_tls_copy *copy, struct pki_key **key,
                   struct ztr_err *err)
{
    return pki_key_from_pem(copy->config.key_pem, copy->config.key_len, key, err);
}

struct tls_ctx *
agent_data_tls(struct agent *agent, enum tls_side side, const char *alpn, struct ztr_err *err)
{
    if (agent->data_tls != NULL)
        return agent->data_tls;
    struct tls_ctx_config config;
    if (agent_data_tls_config(agent, side, alpn, &config, err) != 0 ||
        tls_ctx_new(&config, &agent->data_tls, err) != 0)
        return NULL;
    return agent->data_tls;
}
