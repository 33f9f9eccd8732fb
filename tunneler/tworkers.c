#include "tunneler/tworkers.h"

#include <ev.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "base/config.h"
#include "base/log.h"
#include "base/metrics.h"
#include "data/workers.h"
#include "net/tls.h"

struct tworker {
    struct tunnel_workers *group;
    unsigned index;
    struct tunnel *tunnel;
    struct tls_ctx *tls;            /* its own (index > 0); worker 0 has the agent's */
    /* The agent rewrites its own copy at every renewal: each loop reads its
     * own. */
    char self_id[PKI_SPIFFE_ID_MAX + 1];
};

struct tunnel_workers {
    struct agent *agent;
    struct workers *workers;
    struct tunnel_shared *shared;
    struct tunneler_config config;
    /* The listeners' addresses with the ports worker 0 was given (it may
     * have asked for port 0): where the other workers listen beside it. */
    struct tunneler_forward forwards[CONFIG_LIST_MAX];
    char socks_listen[160];
    unsigned count;
    struct tworker worker[WORKERS_MAX];
};

/* ---- messages, each run on its worker's loop ------------------------------------------ */

struct list_msg {
    struct tworker *worker;
    json_t *msg;                    /* a deep copy: jansson's objects serve one thread */
};

static void
take_list(void *arg)
{
    struct list_msg *m = arg;
    tunnel_set_connectors(m->worker->tunnel, m->msg);
    json_decref(m->msg);
    free(m);
}

struct tls_msg {
    struct tworker *worker;
    struct agent_tls_copy *copy;
    bool identity;
    bool bundle;
};

static void
recheck_tunnel(void *target)
{
    tunnel_recheck_peers(target);
}

static void
present_tunnel(void *target, const char *chain, size_t len, const struct pki_key *key)
{
    tunnel_present_identity(target, chain, len, key);
}

static void
take_tls(void *arg)
{
    struct tls_msg *m = arg;
    struct tworker *w = m->worker;
    /* Stopped meanwhile: nothing to update. */
    if (w->tunnel != NULL)
        agent_tls_copy_take(m->copy, &w->tls, w->index, m->identity, m->bundle, recheck_tunnel,
                            present_tunnel, w->tunnel);
    agent_tls_copy_free(m->copy);
    free(m);
}

/* A connector marked down (or back up) on one loop: the others hear it. */
struct state_msg {
    struct tworker *worker;
    int64_t down_until_ms;
    char id[320];                    /* as a tconn's: a peer's are <trust domain>/<id> */
    char address[128];
    char spiffe_id[PKI_SPIFFE_ID_MAX + 1];
    char reason[ZTR_ERR_MSG_MAX];
};

static void
take_state(void *arg)
{
    struct state_msg *m = arg;
    tunnel_connector_state(m->worker->tunnel, m->id, m->address, m->spiffe_id,
                           m->down_until_ms, m->reason);
    free(m);
}

/* On worker `ctx`'s thread. */
static void
connector_state(void *ctx, const char *id, const char *address, const char *spiffe_id,
                int64_t down_until_ms, const char *reason)
{
    struct tworker *from = ctx;
    struct tunnel_workers *g = from->group;
    for (unsigned i = 0; i < g->count; i++) {
        if (i == from->index)
            continue;
        struct state_msg *m = malloc(sizeof(*m));
        if (m == NULL)
            continue;   /* that loop finds out by itself */
        m->worker = &g->worker[i];
        m->down_until_ms = down_until_ms;
        snprintf(m->id, sizeof(m->id), "%s", id);
        snprintf(m->address, sizeof(m->address), "%s", address);
        snprintf(m->spiffe_id, sizeof(m->spiffe_id), "%s", spiffe_id);
        snprintf(m->reason, sizeof(m->reason), "%s", reason);
        struct ztr_err err;
        if (workers_post(g->workers, i, take_state, m, &err) != 0)
            free(m);
    }
}

/* ---- start and stop, run on each worker --------------------------------------------------- */

struct start_call {
    struct tworker *worker;
    struct agent_tls_copy *copy;     /* workers > 0 */
    int rc;
    struct ztr_err err;
};

static void
start_worker(void *arg)
{
    struct start_call *c = arg;
    struct tworker *w = c->worker;
    struct tunnel_workers *g = w->group;
    struct tunnel_env env = {.loop = workers_loop(g->workers, w->index),
                             .trust_domain = agent_trust_domain(g->agent),
                             .state_dir = agent_state_dir(g->agent),
                             .self_id = w->self_id,
                             .shared = g->shared,
                             .shared_listeners = g->count > 1,
                             .replica = w->index > 0,
                             .on_connector_state = g->count > 1 ? connector_state : NULL,
                             .state_ctx = w};
    struct tunneler_config config = g->config;
    if (w->index == 0) {
        env.tls = agent_data_tls(g->agent, TLS_SIDE_CLIENT, DATA_ALPN, &c->err);
        if (env.tls == NULL) {
            c->rc = -1;
            return;
        }
    } else {
        config.forwards = g->forwards;
        config.socks_listen = g->config.socks_listen != NULL ? g->socks_listen : NULL;
        if (agent_tls_copy_apply(c->copy, &w->tls, &c->err) != 0) {
            c->rc = -1;
            return;
        }
        env.tls = w->tls;
    }
    c->rc = tunnel_new(&env, &config, &w->tunnel, &c->err);
}

static void
stop_worker(void *arg)
{
    struct tworker *w = arg;
    tunnel_stop(w->tunnel);
    w->tunnel = NULL;
    tls_ctx_free(w->tls);
    w->tls = NULL;
}

static void
beside(const char *listen, uint16_t port, char *out, size_t cap)
{
    char host[64];
    uint16_t asked;
    if (config_parse_addr(listen, host, sizeof(host), &asked) != 0)
        snprintf(host, sizeof(host), "%s", listen);
    snprintf(out, cap, strchr(host, ':') != NULL ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
}

/* Worker 0 listens: the others' addresses get its ports. */
static void
listen_beside(struct tunnel_workers *g)
{
    const struct tunnel *t = g->worker[0].tunnel;
    size_t n = g->config.forward_count;
    for (size_t i = 0; i < n; i++) {
        g->forwards[i] = g->config.forwards[i];
        beside(g->config.forwards[i].listen, tunnel_listener_port(t, i), g->forwards[i].listen,
               sizeof(g->forwards[i].listen));
    }
    if (g->config.socks_listen != NULL)
        beside(g->config.socks_listen, tunnel_listener_port(t, n), g->socks_listen,
               sizeof(g->socks_listen));
}

int
tunnel_workers_start(struct agent *agent, const struct tunneler_config *config,
                     unsigned workers, struct tunnel_workers **out, struct ztr_err *err)
{
    *out = NULL;
    struct tunnel_workers *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    g->agent = agent;
    g->config = *config;
    g->count = workers;
    for (unsigned i = 0; i < workers; i++) {
        g->worker[i] = (struct tworker){.group = g, .index = i};
        snprintf(g->worker[i].self_id, sizeof(g->worker[i].self_id), "%s",
                 agent_spiffe_id(agent));
    }
    if (workers_new(agent_loop(agent), workers, &g->workers, err) != 0 ||
        tunnel_shared_new(&g->shared, err) != 0) {
        g->count = 0;
        tunnel_workers_stop(g);
        return -1;
    }
    int rc = 0;
    for (unsigned i = 0; i < workers && rc == 0; i++) {
        struct start_call call = {.worker = &g->worker[i]};
        if (i > 0 &&
            (call.copy = agent_data_tls_copy(agent, TLS_SIDE_CLIENT, DATA_ALPN)) == NULL) {
            rc = ztr_err_set(err, ZTR_E_NOMEM, "no identity to copy for worker %u", i);
            break;
        }
        if (workers_call(g->workers, i, start_worker, &call, err) != 0 || call.rc != 0) {
            if (call.rc != 0)
                *err = call.err;
            rc = -1;
        }
        agent_tls_copy_free(call.copy);
        if (i == 0 && rc == 0)
            listen_beside(g);
    }
    /* The strings config points to are the caller's: not kept. */
    g->config.forwards = NULL;
    g->config.socks_listen = g->config.socks_listen != NULL ? g->socks_listen : NULL;
    if (rc != 0) {
        tunnel_workers_stop(g);
        return -1;
    }
    if (workers > 1)
        log_info("data plane workers started", "workers=%u", workers);
    *out = g;
    return 0;
}

void
tunnel_workers_stop(struct tunnel_workers *g)
{
    if (g == NULL)
        return;
    for (unsigned i = g->count; i-- > 0;) {
        struct ztr_err err;
        if (g->worker[i].tunnel != NULL || g->worker[i].tls != NULL)
            (void)workers_call(g->workers, i, stop_worker, &g->worker[i], &err);
    }
    workers_free(g->workers);
    tunnel_shared_release(g->shared);
    free(g);
}

/* ---- changes ------------------------------------------------------------------------------ */

void
tunnel_workers_set_connectors(struct tunnel_workers *g, const json_t *msg)
{
    if (g == NULL)
        return;
    for (unsigned i = 1; i < g->count; i++) {
        struct list_msg *m = malloc(sizeof(*m));
        json_t *copy = json_deep_copy(msg);
        struct ztr_err err = {0};
        if (m == NULL || copy == NULL) {
            ztr_err_set(&err, ZTR_E_NOMEM, "out of memory");
        } else {
            *m = (struct list_msg){.worker = &g->worker[i], .msg = copy};
            if (workers_post(g->workers, i, take_list, m, &err) == 0)
                continue;
        }
        log_error("connector list not delivered to a worker", "worker=%u error=\"%s\"", i,
                  err.msg);
        json_decref(copy);
        free(m);
    }
    tunnel_set_connectors(g->worker[0].tunnel, msg);
}

static void
tls_changed(struct tunnel_workers *g, bool identity, bool bundle)
{
    if (g == NULL)
        return;
    /* Worker 0 shares the agent's context, which the agent updated. */
    if (identity) {
        const char *chain;
        size_t len;
        const struct pki_key *key;
        if (agent_identity(g->agent, &chain, &len, &key) == 0)
            tunnel_present_identity(g->worker[0].tunnel, chain, len, key);
    }
    if (bundle)
        tunnel_recheck_peers(g->worker[0].tunnel);
    for (unsigned i = 1; i < g->count; i++) {
        struct tls_msg *m = calloc(1, sizeof(*m));
        if (m != NULL)
            m->copy = agent_data_tls_copy(g->agent, TLS_SIDE_CLIENT, DATA_ALPN);
        struct ztr_err err = {0};
        if (m == NULL || m->copy == NULL) {
            ztr_err_set(&err, ZTR_E_NOMEM, "out of memory");
        } else {
            m->worker = &g->worker[i];
            m->identity = identity;
            m->bundle = bundle;
            if (workers_post(g->workers, i, take_tls, m, &err) == 0)
                continue;
            agent_tls_copy_free(m->copy);
        }
        log_error("TLS change not delivered to a worker", "worker=%u error=\"%s\"", i,
                  err.msg);
        free(m);
    }
}

void
tunnel_workers_identity_changed(struct tunnel_workers *g)
{
    tls_changed(g, true, false);
}

void
tunnel_workers_bundle_changed(struct tunnel_workers *g)
{
    tls_changed(g, false, true);
}

/* ---- /health and /metrics ------------------------------------------------------------------ */

struct read_call {
    struct tworker *worker;
    struct tunnel_counts *sum;
    json_t *connectors;             /* the worker's list (new) */
};

static void
read_worker(void *arg)
{
    struct read_call *c = arg;
    tunnel_count(c->worker->tunnel, c->sum);
    c->connectors = tunnel_connectors_health(c->worker->tunnel);
}

static int
state_rank(const json_t *entry)
{
    const char *state = json_string_value(json_object_get(entry, "state"));
    return strcmp(state, "up") == 0 ? 2 : strcmp(state, "down") == 0 ? 1 : 0;
}

/* One entry per connector: its streams on every worker; "up" when any
 * worker has a session to it, else "down" when any marked it down. */
static void
merge_connectors(json_t *into, json_t *from)
{
    size_t i, j;
    json_t *entry, *have;
    json_array_foreach(from, i, entry) {
        json_t *same = NULL;
        json_array_foreach(into, j, have) {
            if (json_equal(json_object_get(have, "id"), json_object_get(entry, "id")) &&
                json_equal(json_object_get(have, "address"), json_object_get(entry, "address")))
                same = have;
        }
        if (same == NULL) {
            json_array_append(into, entry);
            continue;
        }
        json_int_t streams = json_integer_value(json_object_get(same, "streams")) +
                             json_integer_value(json_object_get(entry, "streams"));
        json_object_set_new(same, "streams", json_integer(streams));
        if (state_rank(entry) > state_rank(same))
            json_object_set(same, "state", json_object_get(entry, "state"));
        const char *keep[] = {"rtt_ms", "last_error"};
        for (size_t k = 0; k < 2; k++)
            if (json_object_get(same, keep[k]) == NULL && json_object_get(entry, keep[k]) != NULL)
                json_object_set(same, keep[k], json_object_get(entry, keep[k]));
    }
}

static json_t *
read_workers(struct tunnel_workers *g, struct tunnel_counts *sum)
{
    json_t *connectors = NULL;
    for (unsigned i = 0; i < g->count; i++) {
        struct read_call call = {.worker = &g->worker[i], .sum = sum};
        struct ztr_err err;
        if (workers_call(g->workers, i, read_worker, &call, &err) != 0) {
            log_warn("worker counters not read", "worker=%u error=\"%s\"", i, err.msg);
            continue;
        }
        if (connectors == NULL) {
            connectors = call.connectors;
            continue;
        }
        merge_connectors(connectors, call.connectors);
        json_decref(call.connectors);
    }
    return connectors != NULL ? connectors : json_array();
}

void
tunnel_workers_add_health(struct tunnel_workers *g, json_t *health)
{
    if (g == NULL)
        return;
    struct tunnel_counts sum = {0};
    json_t *connectors = read_workers(g, &sum);
    tunnel_counts_health(&sum, tunnel_list_version(g->worker[0].tunnel), connectors, health);
    json_object_set_new(json_object_get(health, "data"), "workers", json_integer(g->count));
}

void
tunnel_workers_add_metrics(struct tunnel_workers *g, struct metrics *m)
{
    if (g == NULL)
        return;
    struct tunnel_counts sum = {0};
    json_t *connectors = read_workers(g, &sum);
    tunnel_counts_metrics(&sum, connectors, m);
    json_decref(connectors);
    metrics_gauge(m, "ztr_data_workers", "Data-plane event loops (WORKERS).", NULL,
                  (int64_t)g->count);
}
