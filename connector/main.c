/* build/bin/connector: the agent core (agent/agent.h) in the connector
 * role. It enrolls with an IP SAN for every address it advertises, tells
 * the controller where its data listener is and which resources it serves,
 * and runs the data plane (connector/dataplane.h) with the allowlist the
 * controller pushes. */
#include <ev.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "ctl/ctlmsg.h"
#include "base/log.h"
#include "base/metrics.h"
#include "data/dsession.h"
#include "data/mux.h"
#include "connector/allowlist.h"
#include "connector/dataplane.h"
#include "connector/dpworkers.h"
#include "data/workers.h"

#define ADVERTISE_MAX 16

static const char *const resource_fields[] = {"name", "target", NULL};

/* The connector's settings: the agent's, then its own (lists and the data
 * window stay in struct config: connector_configure reads them there). */
struct connector_settings {
    struct agent_settings agent;
    char listen[128];
    char advertise[1024];          /* "" = the listen IP */
    int64_t dial_timeout_ms, idle_timeout_ms;
    int64_t allowlist_max_age_ms;
    uint64_t streams_per_tunneler;
    uint64_t handshakes_per_source;
    int64_t drain_timeout_ms;
};

static const struct config_key connector_keys[] = {
    AGENT_CONFIG_KEYS(struct connector_settings, agent, "/var/lib/ztr-connector",
                      "127.0.0.1:9101"),
    CONFIG_KEY("CONNECTOR_LISTEN", CONFIG_ADDR, NULL, "data-plane listener ip:port (required)",
               struct connector_settings, listen),
    CONFIG_KEY("CONNECTOR_ADVERTISE", CONFIG_STRING, NULL,
               "comma-separated IPs tunnelers dial (IP SANs); default: the listen IP",
               struct connector_settings, advertise),
    {.name = "RESOURCES", .type = CONFIG_LIST, .help = "resources served: name=target,...",
     .item_keys = resource_fields},
    DSESSION_CONFIG_KEYS,
    WORKERS_CONFIG_KEY,
    CONFIG_KEY("DIAL_TIMEOUT", CONFIG_DURATION, "10s",
               "how long a resource's target may take to accept", struct connector_settings,
               dial_timeout_ms),
    CONFIG_KEY("DATA_IDLE_TIMEOUT", CONFIG_DURATION, "60s",
               "data sessions silent this long are closed (tunnelers ping every 15s)",
               struct connector_settings, idle_timeout_ms),
    CONFIG_KEY("ALLOWLIST_MAX_AGE", CONFIG_DURATION, "24h",
               "fail-static bound: past this without the controller confirming the allowlist, "
               "data sessions are refused and closed (1s..30d)",
               struct connector_settings, allowlist_max_age_ms),
    CONFIG_KEY("STREAMS_PER_TUNNELER", CONFIG_UINT, "8192",
               "streams one tunneler may hold open on this connector (1..65536)",
               struct connector_settings, streams_per_tunneler),
    CONFIG_KEY("HANDSHAKES_PER_SOURCE", CONFIG_UINT, "64",
               "TLS handshakes one source address (IPv4, IPv6 /64) may have in progress on "
               "the data listener; more connections are closed at once (1..16384)",
               struct connector_settings, handshakes_per_source),
    CONFIG_KEY("DRAIN_TIMEOUT", CONFIG_DURATION, "5s",
               "on SIGTERM, how long open streams may take to finish while no new ones are "
               "taken (tunnelers use other connectors); 0: stop at once (0..1h)",
               struct connector_settings, drain_timeout_ms),
};

/* A drain (docs/OPERATIONS.md, "Drain a connector"): the operator's, from
 * the controller, and our own on SIGTERM; either refuses new streams, and
 * each has a deadline past which open streams are closed. */
struct drain {
    bool by_operator;
    int64_t operator_deadline;     /* wall seconds */
    bool stopping;                 /* SIGTERM: exit once no stream is left */
    int64_t stop_deadline;         /* wall seconds */
    bool closed;                   /* the streams left at the deadline were closed */
    double closed_at;              /* ev_now of that */
    uint64_t streams_left;         /* at the last check */
    ev_timer timer;                /* checks while draining */
};

struct connector {
    struct connector_settings settings;
    char advertise[ADVERTISE_MAX][64];
    size_t advertise_count;
    char data_address[128];        /* what tunnelers dial: first advertised IP + port */
    json_t *resources;             /* names */
    json_t *targets;               /* ip:port of each, same order */
    struct connector_resource served[CONFIG_LIST_MAX];
    size_t served_count;
    struct dsession_window window;
    unsigned workers;              /* WORKERS */
    struct agent *agent;
    /* The controller's latest, enforced from disk while the controller is
     * away; the workers each read an immutable copy of it. */
    struct allowlist *allowlist;
    struct dp_workers *dataplane;
    /* Fail-static has a bound: the allowlist counts as current from when it
     * arrived, and again at every check while the control stream that
     * delivered it is still up (the controller pushes each change on that
     * stream, so nothing newer exists). Past ALLOWLIST_MAX_AGE without
     * that, the connector stops serving. */
    int64_t confirmed_at;          /* wall seconds; 0 = never */
    /* The same moments on the monotonic clock (0: not in this process):
     * ages are measured on it, so that a wall clock that jumps neither
     * makes them negative (back) nor refuses sessions for an age that did
     * not pass (forward). The wall times stay for what came from disk. */
    int64_t confirmed_mono_ms;
    int64_t received_mono_ms;
    int64_t grants_next_expiry;    /* the next federation grant to expire, 0 = none */
    bool delivered_online;         /* an allowlist arrived on the current control stream */
    bool stale;
    bool refusing;                 /* dataplane_refuse'd for the age */
    bool revoked;
    ev_timer age_timer;
    uint64_t pushes_ignored;       /* allowlists refused: stale or malformed */
    /* The `applied` report of the last allowlist change (revocation SLO):
     * sent once every loop applied it and the sessions it removed closed,
     * or at REPORT_WAIT_MS, or as it stands when a newer change arrives. */
    ev_timer report_timer;
    int64_t report_version;
    double report_applied_at;      /* ev_time */
    double report_deadline;
    uint64_t report_closed_base;   /* sessions closed by revocations before it */
    struct drain drain;
};

#define REPORT_POLL_S 0.002
#define REPORT_WAIT_MS 5000

#define ALLOWLIST_MAX_AGE_MAX_MS (30LL * 86400 * 1000)
#define DRAIN_TIMEOUT_MAX_MS (3600LL * 1000)

static int
connector_configure(void *ctx, struct agent *agent, const struct config *config,
                    struct ztr_err *err)
{
    struct connector *c = ctx;
    const struct connector_settings *s = &c->settings;
    c->agent = agent;
    if (s->listen[0] == '\0')
        return ztr_err_set(err, ZTR_E_CONFIG, "CONNECTOR_LISTEN is required");
    char host[64];
    uint16_t port;
    if (config_parse_addr(s->listen, host, sizeof(host), &port) != 0 || port == 0)
        return config_fail(config, "CONNECTOR_LISTEN", err, "needs an IP and a port");
    bool advertise = s->advertise[0] != '\0';
    char list[1024];
    snprintf(list, sizeof(list), "%s", advertise ? s->advertise : host);
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
    c->targets = json_array();
    for (size_t i = 0; i < config_list_len(config, "RESOURCES"); i++) {
        const char *name = config_list_get(config, "RESOURCES", i, "name");
        const char *target = config_list_get(config, "RESOURCES", i, "target");
        char target_host[64];
        uint16_t target_port;
        struct pki_ip target_ip;
        if (strlen(name) == 0 || strlen(name) >= sizeof(c->served[0].name))
            return config_fail(config, "RESOURCES", err, "resource name \"%s\" must be 1..255 bytes",
                               name);
        if (config_parse_addr(target, target_host, sizeof(target_host), &target_port) != 0 ||
            target_port == 0 || pki_ip_parse(target_host, &target_ip) != 0)
            return config_fail(config, "RESOURCES", err,
                               "target \"%s\" of resource %s must be ip:port", target, name);
        for (size_t j = 0; j < c->served_count; j++)
            if (strcmp(c->served[j].name, name) == 0)
                return config_fail(config, "RESOURCES", err, "resource %s listed twice", name);
        snprintf(c->served[c->served_count].name, sizeof(c->served[0].name), "%s", name);
        snprintf(c->served[c->served_count].target, sizeof(c->served[0].target), "%s", target);
        c->served_count++;
        json_array_append_new(c->resources, json_string(name));
        json_array_append_new(c->targets, json_string(target));
    }
    if (s->allowlist_max_age_ms < 1000 || s->allowlist_max_age_ms > ALLOWLIST_MAX_AGE_MAX_MS)
        return config_fail(config, "ALLOWLIST_MAX_AGE", err,
                           "must be 1s..30d (fail-static is always bounded)");
    if (s->streams_per_tunneler < 1 || s->streams_per_tunneler > 65536)
        return config_fail(config, "STREAMS_PER_TUNNELER", err, "must be 1..65536");
    if (s->handshakes_per_source < 1 || s->handshakes_per_source > 16384)
        return config_fail(config, "HANDSHAKES_PER_SOURCE", err, "must be 1..16384");
    if (s->drain_timeout_ms < 0 || s->drain_timeout_ms > DRAIN_TIMEOUT_MAX_MS)
        return config_fail(config, "DRAIN_TIMEOUT", err, "must be 0..1h");
    TRY(dsession_window_config(config, &c->window, err));
    TRY(workers_config(config, &c->workers, err));
    c->allowlist = allowlist_new();
    if (c->allowlist == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    return 0;
}

/* Seconds since a moment known by its monotonic time (this process) or
 * else its wall time (from disk: never negative); -1 for never. */
static int64_t
seconds_since(const struct connector *c, int64_t mono_ms, int64_t wall_s)
{
    const struct ztr_clock *clock = agent_clock(c->agent);
    if (mono_ms > 0)
        return (clock_monotonic_ms(clock) - mono_ms) / 1000;
    if (wall_s <= 0)
        return -1;
    int64_t age = clock_wall_s(clock) - wall_s;
    return age > 0 ? age : 0;
}

static int64_t
allowlist_age(const struct connector *c)
{
    return seconds_since(c, c->confirmed_mono_ms, c->confirmed_at);
}

/* Since the enforced allowlist arrived. */
static int64_t
allowlist_received_age(const struct connector *c)
{
    return seconds_since(c, c->received_mono_ms, allowlist_received_at(c->allowlist));
}

static void
allowlist_confirmed(struct connector *c, int64_t now)
{
    c->confirmed_at = now;
    c->confirmed_mono_ms = clock_monotonic_ms(agent_clock(c->agent));
}

static void
check_allowlist_age(struct connector *c)
{
    int64_t now = clock_wall_s(agent_clock(c->agent));
    enum agent_state state = agent_current_state(c->agent);
    if (state != AGENT_ONLINE && state != AGENT_RENEWING)
        c->delivered_online = false;
    else if (c->delivered_online)
        allowlist_confirmed(c, now);
    int64_t age = allowlist_age(c);
    bool stale = age < 0 || age * 1000 > c->settings.allowlist_max_age_ms;
    if (stale == c->stale)
        return;
    c->stale = stale;
    if (!stale) {
        if (c->refusing)
            log_info("allowlist current again, data sessions served",
                     "version=%lld age_seconds=%lld", (long long)allowlist_version(c->allowlist),
                     (long long)age);
        c->refusing = false;
        dp_workers_refuse(c->dataplane, NULL);
        return;
    }
    c->refusing = true;
    char reason[MUX_REASON_MAX];
    if (age < 0)
        snprintf(reason, sizeof(reason), "no allowlist received from the controller");
    else
        snprintf(reason, sizeof(reason), "allowlist too old: %llds > ALLOWLIST_MAX_AGE %llds",
                 (long long)age, (long long)(c->settings.allowlist_max_age_ms / 1000));
    log_warn("allowlist too old, data sessions refused",
             "version=%lld age_seconds=%lld max_age_seconds=%lld",
             (long long)allowlist_version(c->allowlist), (long long)age,
             (long long)(c->settings.allowlist_max_age_ms / 1000));
    dp_workers_refuse(c->dataplane, reason);
}

static void
age_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct connector *c = w->data;
    check_allowlist_age(c);
    /* An expired grant ends its streams as a revoked one does. */
    int64_t now = clock_wall_s(agent_clock(c->agent));
    if (c->grants_next_expiry > 0 && now >= c->grants_next_expiry) {
        /* The same list again: every loop enforces it at this time. */
        struct allowlist *copy = allowlist_clone(c->allowlist);
        if (copy != NULL)
            dp_workers_set_allowlist(c->dataplane, copy);
        c->grants_next_expiry = allowlist_next_expiry(c->allowlist, now);
    }
}

/* ---- drain ---------------------------------------------------------------------------- */

#define DRAIN_CHECK_S 0.1
/* After closing what was left at the deadline, the resets get this long
 * to reach the tunnelers before the process exits. */
#define DRAIN_CLOSE_GRACE_S 0.5

static bool
draining(const struct connector *c)
{
    return c->drain.by_operator || c->drain.stopping;
}

/* The earlier of the deadlines in force (wall seconds). */
static int64_t
drain_deadline(const struct connector *c)
{
    const struct drain *d = &c->drain;
    if (d->by_operator && d->stopping)
        return d->operator_deadline < d->stop_deadline ? d->operator_deadline : d->stop_deadline;
    return d->by_operator ? d->operator_deadline : d->stop_deadline;
}

static void
drain_check(struct connector *c)
{
    struct drain *d = &c->drain;
    if (!draining(c))
        return;
    d->streams_left = dp_workers_drain(c->dataplane, true);
    double now = ev_now(agent_loop(c->agent));
    bool closes_sent = d->closed && now - d->closed_at >= DRAIN_CLOSE_GRACE_S;
    if (d->stopping && (d->streams_left == 0 || closes_sent)) {
        log_info("drained, stopping", "streams_left=%llu", (unsigned long long)d->streams_left);
        ev_timer_stop(agent_loop(c->agent), &d->timer);
        agent_finish(c->agent);
        return;
    }
    int64_t wall = clock_wall_s(agent_clock(c->agent));
    if (d->closed || d->streams_left == 0 || wall < drain_deadline(c))
        return;
    bool stop_bound = d->stopping && (!d->by_operator || d->stop_deadline <= d->operator_deadline);
    const char *reason = stop_bound ? "connector stopping: DRAIN_TIMEOUT reached"
                                    : "connector drained: deadline reached";
    size_t closed = dp_workers_close_streams(c->dataplane, reason);
    log_warn("drain deadline reached, streams closed", "streams=%zu reason=\"%s\"", closed,
             reason);
    d->closed = true;
    d->closed_at = now;
}

static void
drain_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    drain_check(w->data);
}

static void
drain_start(struct connector *c)
{
    struct drain *d = &c->drain;
    d->streams_left = dp_workers_drain(c->dataplane, true);
    if (!ev_is_active(&d->timer))
        ev_timer_start(agent_loop(c->agent), &d->timer);
    drain_check(c);
}

static void
connector_on_drain(void *ctx, const json_t *msg)
{
    struct connector *c = ctx;
    struct drain *d = &c->drain;
    const char *state = json_string_value(json_object_get(msg, "state"));
    if (strcmp(state, CTLMSG_DRAIN_DRAINING) == 0) {
        int64_t deadline = json_integer_value(json_object_get(msg, "deadline"));
        if (!d->by_operator || deadline != d->operator_deadline)
            log_info("draining: no new streams", "by=operator deadline=%lld",
                     (long long)deadline);
        if (deadline != d->operator_deadline)
            d->closed = false;
        d->by_operator = true;
        d->operator_deadline = deadline;
        if (c->dataplane != NULL)
            drain_start(c);
        return;
    }
    if (strcmp(state, CTLMSG_DRAIN_SERVING) != 0) {
        log_warn("drain ignored", "state=\"%s\"", state);
        return;
    }
    if (!d->by_operator)
        return;
    d->by_operator = false;
    d->closed = false;
    if (d->stopping)
        return;
    log_info("drain ended, serving new streams", NULL);
    ev_timer_stop(agent_loop(c->agent), &d->timer);
    (void)dp_workers_drain(c->dataplane, false);
}

/* SIGTERM: drain first, bounded by DRAIN_TIMEOUT, so a restart fails
 * nothing that could move; the controller tells tunnelers to use the
 * other connectors. */
static bool
connector_on_terminate(void *ctx)
{
    struct connector *c = ctx;
    struct drain *d = &c->drain;
    if (c->dataplane == NULL || c->settings.drain_timeout_ms == 0 || c->revoked)
        return false;
    int64_t now = clock_wall_s(agent_clock(c->agent));
    d->stopping = true;
    d->closed = false;
    d->stop_deadline = now + (c->settings.drain_timeout_ms + 999) / 1000;
    bool told = agent_send(c->agent, json_pack("{s:s, s:s, s:I}", "type", "drain", "state",
                                                CTLMSG_DRAIN_DRAINING, "deadline",
                                                (json_int_t)d->stop_deadline));
    log_info("stopping: draining first", "drain_timeout_ms=%lld controller_told=%s",
             (long long)c->settings.drain_timeout_ms, told ? "true" : "false");
    drain_start(c);
    return true;
}

static void
drain_health(const struct connector *c, json_t *health)
{
    const struct drain *d = &c->drain;
    if (!draining(c)) {
        json_object_set_new(health, "drain", json_pack("{s:s}", "state", "SERVING"));
        return;
    }
    json_object_set_new(health, "drain",
                        json_pack("{s:s, s:s, s:I, s:I}", "state", "DRAINING", "by",
                                  d->stopping ? "shutdown" : "operator", "deadline",
                                  (json_int_t)drain_deadline(c), "streams_left",
                                  (json_int_t)d->streams_left));
}

/* The last allowlist received, from STATE_DIR: enforced even if the
 * controller never answers (fail-static), for at most ALLOWLIST_MAX_AGE
 * counted from when it arrived. */
static int
connector_start(void *ctx, struct agent *agent, struct ztr_err *err)
{
    struct connector *c = ctx;
    TRY(allowlist_load(c->allowlist, agent_state_dir(agent), err));
    if (agent_set_peer_bundles(agent, allowlist_peers(c->allowlist), NULL, err) != 0)
        return ztr_err_wrap(err, "%s/%s", agent_state_dir(agent), ALLOWLIST_FILE);
    c->grants_next_expiry =
        allowlist_next_expiry(c->allowlist, clock_wall_s(agent_clock(agent)) - 1);
    c->confirmed_at = allowlist_received_at(c->allowlist);
    if (allowlist_version(c->allowlist) > 0)
        log_info("allowlist loaded from disk", "version=%lld tunnelers=%zu received_at=%lld",
                 (long long)allowlist_version(c->allowlist), allowlist_size(c->allowlist),
                 (long long)allowlist_received_at(c->allowlist));
    struct dataplane_config dp = {
        .listen = c->settings.listen, .resources = c->served, .resource_count = c->served_count,
        .window = c->window,
        .dial_timeout_ms = c->settings.dial_timeout_ms,
        .idle_timeout_ms = c->settings.idle_timeout_ms,
        .streams_per_tunneler = (uint32_t)c->settings.streams_per_tunneler,
        .handshakes_per_source = (uint32_t)c->settings.handshakes_per_source};
    struct allowlist *copy = allowlist_clone(c->allowlist);
    if (copy == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    ev_timer_init(&c->drain.timer, drain_timer_cb, DRAIN_CHECK_S, DRAIN_CHECK_S);
    c->drain.timer.data = c;
    TRY(dp_workers_start(agent, &dp, c->workers, copy, &c->dataplane, err));
    /* No allowlist at all refuses every tunneler anyway; only an old one
     * needs the refusal (and its log line). */
    c->stale = allowlist_version(c->allowlist) == 0;
    check_allowlist_age(c);
    double every = (double)c->settings.allowlist_max_age_ms / 4000.0;
    if (every > 1.0)
        every = 1.0;
    ev_timer_init(&c->age_timer, age_timer_cb, every, every);
    c->age_timer.data = c;
    ev_timer_start(agent_loop(agent), &c->age_timer);
    /* A drain the controller sent before the data plane existed. */
    if (draining(c))
        drain_start(c);
    return 0;
}

static void
connector_stop(void *ctx)
{
    struct connector *c = ctx;
    if (c->agent != NULL) {
        ev_timer_stop(agent_loop(c->agent), &c->drain.timer);
        ev_timer_stop(agent_loop(c->agent), &c->age_timer);
        ev_timer_stop(agent_loop(c->agent), &c->report_timer);
    }
    dp_workers_stop(c->dataplane);
    c->dataplane = NULL;
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
    json_object_set(hello, "targets", c->targets);
    /* Only while draining: a controller of an older release refuses a
     * hello with a field it does not know. */
    if (c->drain.stopping)
        json_object_set_new(hello, "draining", json_integer(CTLMSG_HELLO_DRAINING_STOPPING));
    else if (c->drain.by_operator)
        json_object_set_new(hello, "draining", json_integer(CTLMSG_HELLO_DRAINING_OPERATOR));
}

static void
report_send(struct connector *c, const struct dataplane_counts *sum, bool done)
{
    double closed = sum->revocation_last_close > sum->allowlist_applied_at
                        ? sum->revocation_last_close
                        : sum->allowlist_applied_at;
    if (closed < c->report_applied_at)
        closed = c->report_applied_at;
    if (!done)
        log_warn("allowlist change not applied in time", "version=%lld pending_sessions=%llu",
                 (long long)c->report_version, (unsigned long long)sum->revocations_pending);
    (void)agent_send(c->agent,
               json_pack("{s:s, s:I, s:I, s:I, s:I}", "type", "applied", "version",
                         (json_int_t)c->report_version, "applied_ms",
                         (json_int_t)(c->report_applied_at * 1000.0), "closed_ms",
                         (json_int_t)(closed * 1000.0), "sessions_closed",
                         (json_int_t)(sum->revocation_count - c->report_closed_base)));
}

static bool
report_done(const struct connector *c, const struct dataplane_counts *sum)
{
    return sum->loops > 0 && sum->allowlist_version >= c->report_version &&
           sum->revocations_pending == 0;
}

static void
report_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct connector *c = w->data;
    struct dataplane_counts sum = {0};
    dp_workers_count(c->dataplane, &sum);
    bool done = report_done(c, &sum);
    if (!done && ev_time() < c->report_deadline)
        return;
    ev_timer_stop(loop, w);
    report_send(c, &sum, done);
}

/* After a change was handed to the loops: report it once they are done. */
static void
report_start(struct connector *c, int64_t version)
{
    if (c->dataplane == NULL)
        return; /* nothing serves yet: nothing to report */
    struct ev_loop *loop = agent_loop(c->agent);
    struct dataplane_counts sum = {0};
    dp_workers_count(c->dataplane, &sum);
    /* The previous change's report goes first, as it stands: each change
     * gets its own, so a quick succession of changes loses none. */
    if (ev_is_active(&c->report_timer)) {
        ev_timer_stop(loop, &c->report_timer);
        report_send(c, &sum, true);
    }
    c->report_version = version;
    c->report_applied_at = ev_time();
    c->report_deadline = c->report_applied_at + REPORT_WAIT_MS / 1000.0;
    c->report_closed_base = sum.revocation_count;
    ev_timer_stop(loop, &c->report_timer);
    ev_timer_init(&c->report_timer, report_timer_cb, 0, REPORT_POLL_S);
    c->report_timer.data = c;
    ev_timer_start(loop, &c->report_timer);
}

static void
connector_on_allowlist(void *ctx, const json_t *msg)
{
    struct connector *c = ctx;
    struct ztr_err err = {0};
    int64_t now = clock_wall_s(agent_clock(c->agent));
    if (allowlist_apply(c->allowlist, msg, now, &err) != 0) {
        /* An error, not a warning: the connector keeps enforcing a list the
         * controller no longer holds, a revocation perhaps among what it
         * refused. */
        c->pushes_ignored++;
        log_error("allowlist ignored", "error=\"%s\"", err.msg);
        return;
    }
    if (allowlist_save(c->allowlist, agent_state_dir(c->agent), &err) != 0)
        log_warn("allowlist not persisted", "error=\"%s\"", err.msg);
    bool peers_changed = false;
    if (agent_set_peer_bundles(c->agent, allowlist_peers(c->allowlist), &peers_changed,
                               &err) != 0)
        log_error("peer trust domains not applied", "error=\"%s\"", err.msg);
    c->grants_next_expiry = allowlist_next_expiry(c->allowlist, now - 1);
    log_info("allowlist received", "version=%lld tunnelers=%zu epoch=%s",
             (long long)allowlist_version(c->allowlist), allowlist_size(c->allowlist),
             allowlist_epoch(c->allowlist));
    allowlist_confirmed(c, now);
    c->received_mono_ms = c->confirmed_mono_ms;
    c->delivered_online = true;
    /* The workers' copy: the same message into a fresh list (which takes
     * any version), so it holds whatever the list holds. */
    struct allowlist *copy = allowlist_clone(c->allowlist);
    if (copy == NULL) {
        log_error("allowlist not enforced", "error=\"out of memory\"");
    } else {
        report_start(c, allowlist_version(c->allowlist));
        dp_workers_set_allowlist(c->dataplane, copy);
    }
    /* The grants before the peers' bundles, on every loop: a tunneler whose
     * last grant went (and its trust domain with it) ends with the grant's
     * reason, the one the operator can act on, not only "no longer trusted". */
    if (peers_changed)
        dp_workers_bundle_changed(c->dataplane); /* every loop's context, then its recheck */
    check_allowlist_age(c);
}

static void
connector_on_identity(void *ctx)
{
    struct connector *c = ctx;
    dp_workers_identity_changed(c->dataplane);
}

/* Revoked: nothing more is served; /health keeps reporting. */
static void
connector_on_revoked(void *ctx)
{
    struct connector *c = ctx;
    ev_timer_stop(agent_loop(c->agent), &c->age_timer);
    c->revoked = true;
    dp_workers_refuse(c->dataplane, "node revoked");
}

static void
connector_on_bundle(void *ctx)
{
    struct connector *c = ctx;
    dp_workers_bundle_changed(c->dataplane);
}

static void
connector_add_heartbeat(void *ctx, json_t *heartbeat)
{
    struct connector *c = ctx;
    json_object_set_new(heartbeat, "allowlist_version",
                        json_integer((json_int_t)allowlist_version(c->allowlist)));
    if (allowlist_epoch(c->allowlist)[0] != '\0')
        json_object_set_new(heartbeat, "allowlist_epoch",
                            json_string(allowlist_epoch(c->allowlist)));
}

static const char *
served_target(const struct connector *c, const char *resource)
{
    for (size_t i = 0; i < c->served_count; i++)
        if (strcmp(c->served[i].name, resource) == 0)
            return c->served[i].target;
    return NULL;
}

/* What the data plane would decide now for a session of tunneler asking
 * for resource (connector/dataplane.c decides the same from the same
 * list): enforced list, its age, membership, the resource's target. */
static json_t *
connector_explain(void *ctx, const json_t *request)
{
    struct connector *c = ctx;
    const char *tunneler = json_string_value(json_object_get(request, "tunneler"));
    const char *resource = json_string_value(json_object_get(request, "resource"));
    int64_t now = clock_wall_s(agent_clock(c->agent));
    struct pki_spiffe_id id;
    bool ours = pki_spiffe_id_parse(tunneler, &id, NULL) == 0 &&
                strcmp(id.trust_domain, agent_trust_domain(c->agent)) == 0;
    char reason[256] = "";
    bool on_list, permitted;
    if (ours) {
        on_list = allowlist_contains(c->allowlist, tunneler);
        permitted = allowlist_permits(c->allowlist, tunneler, resource);
        if (!permitted)
            snprintf(reason, sizeof(reason), "%s",
                     on_list ? "tunneler is on the allowlist but not for this resource"
                             : "tunneler not allowed");
    } else {
        on_list = allowlist_grant_live(c->allowlist, tunneler, now);
        permitted = allowlist_grant_permits(c->allowlist, tunneler, resource, NULL, now,
                                            reason, sizeof(reason));
    }
    const char *target = served_target(c, resource);
    if (permitted && target == NULL)
        snprintf(reason, sizeof(reason), "resource not served here (not in RESOURCES)");
    if (c->stale)
        snprintf(reason, sizeof(reason), "allowlist too old: data sessions refused");
    bool allow = permitted && target != NULL && !c->stale;
    json_t *answer = json_pack("{s:I, s:b, s:b, s:b, s:b, s:s, s:s, s:s}", "allowlist_version",
                               (json_int_t)allowlist_version(c->allowlist), "stale", c->stale,
                               "on_allowlist", on_list, "permitted", permitted, "serves",
                               target != NULL, "target", target != NULL ? target : "",
                               "verdict", allow ? "allow" : "deny", "reason",
                               allow ? "" : reason);
    if (answer != NULL && allowlist_epoch(c->allowlist)[0] != '\0')
        json_object_set_new(answer, "allowlist_epoch", json_string(allowlist_epoch(c->allowlist)));
    if (answer != NULL && allowlist_age(c) >= 0)
        json_object_set_new(answer, "confirmed_age_seconds", json_integer(allowlist_age(c)));
    log_info("explain answered", "tunneler=%s resource=%s verdict=%s", tunneler, resource,
             allow ? "allow" : "deny");
    return answer;
}

static void
connector_add_health(void *ctx, json_t *health)
{
    struct connector *c = ctx;
    json_object_set_new(health, "allowlist",
                        json_pack("{s:I, s:I, s:I}", "version",
                                  (json_int_t)allowlist_version(c->allowlist), "tunnelers",
                                  (json_int_t)allowlist_size(c->allowlist), "age_seconds",
                                  (json_int_t)allowlist_received_age(c)));
    json_t *list = json_object_get(health, "allowlist");
    json_object_set_new(list, "confirmed_age_seconds", json_integer(allowlist_age(c)));
    json_object_set_new(list, "max_age_seconds",
                        json_integer(c->settings.allowlist_max_age_ms / 1000));
    json_object_set_new(list, "stale", json_boolean(c->stale));
    drain_health(c, health);
    dp_workers_add_health(c->dataplane, health);
}

static void
connector_add_metrics(void *ctx, struct metrics *m)
{
    struct connector *c = ctx;
    metrics_gauge(m, "ztr_allowlist_version", "Version of the allowlist being enforced.", NULL,
                  allowlist_version(c->allowlist));
    metrics_gauge(m, "ztr_allowlist_age_seconds", "Time since the enforced allowlist arrived.",
                  NULL, allowlist_received_age(c));
    metrics_gauge(m, "ztr_allowlist_stale",
                  "1 while the allowlist is older than ALLOWLIST_MAX_AGE and sessions are refused.",
                  NULL, c->stale);
    metrics_counter(m, "ztr_pushes_ignored_total",
                    "Versioned pushes from the controller refused (older version, same epoch).",
                    NULL, c->pushes_ignored);
    metrics_gauge(m, "ztr_connector_draining",
                  "1 while the connector drains: no new streams, open ones finish.", NULL,
                  draining(c));
    metrics_gauge(m, "ztr_connector_drain_streams_left",
                  "Streams still open on the draining connector (0 when not draining).", NULL,
                  draining(c) ? (int64_t)c->drain.streams_left : 0);
    dp_workers_add_metrics(c->dataplane, m);
}

int
main(int argc, char **argv)
{
    struct connector connector = {0};
    struct agent_spec spec = {
        .role = PKI_ROLE_CONNECTOR,
        .schema = connector_keys,
        .schema_len = sizeof(connector_keys) / sizeof(connector_keys[0]),
        .settings = &connector.settings,
        .agent_settings = &connector.settings.agent,
        .configure = connector_configure,
        .add_enroll = connector_add_enroll,
        .add_hello = connector_add_hello,
        .start = connector_start,
        .on_allowlist = connector_on_allowlist,
        .on_bundle = connector_on_bundle,
        .on_revoked = connector_on_revoked,
        .on_identity = connector_on_identity,
        .on_drain = connector_on_drain,
        .on_terminate = connector_on_terminate,
        .add_heartbeat = connector_add_heartbeat,
        .explain = connector_explain,
        .add_health = connector_add_health,
        .add_metrics = connector_add_metrics,
        .stop = connector_stop,
        .ctx = &connector,
    };
    int status = agent_main(&spec, argc - 1, argv + 1);
    json_decref(connector.resources);
    json_decref(connector.targets);
    allowlist_free(connector.allowlist);
    return status;
}
