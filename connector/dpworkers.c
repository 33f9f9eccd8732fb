#include "connector/dpworkers.h"

#include <ev.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "base/log.h"
#include "base/metrics.h"
#include "connector/allowlist.h"
#include "data/workers.h"
#include "net/tls.h"

/* One allowlist as every worker reads it: never changed, freed by the
 * last worker to move past it. */
struct snapshot {
    atomic_uint refs;
    struct allowlist *list;
};

struct dp_worker {
    struct dp_workers *group;
    unsigned index;
    struct dataplane *dp;
    struct tls_ctx *tls;            /* its own (index > 0); worker 0 has the agent's */
    struct snapshot *snapshot;
    /* The agent rewrites its own copy at every renewal: each loop reads its
     * own. */
    char self_id[PKI_SPIFFE_ID_MAX + 1];
};

struct dp_workers {
    struct agent *agent;
    struct workers *workers;
    struct dataplane_shared *shared;
    struct dataplane_config config;
    char listen[160];               /* CONNECTOR_LISTEN with worker 0's port */
    unsigned count;
    struct dp_worker worker[WORKERS_MAX];
};

static void
snapshot_release(struct snapshot *snap)
{
    if (snap == NULL || atomic_fetch_sub(&snap->refs, 1) != 1)
        return;
    allowlist_free(snap->list);
    free(snap);
}

/* ---- messages, each run on its worker's loop ------------------------------------------ */

struct allowlist_msg {
    struct dp_worker *worker;
    struct snapshot *snapshot;
    double changed_at;
};

static void
take_allowlist(void *arg)
{
    struct allowlist_msg *m = arg;
    struct dp_worker *w = m->worker;
    if (w->dp == NULL) {   /* stopped meanwhile */
        snapshot_release(m->snapshot);
        free(m);
        return;
    }
    struct snapshot *old = w->snapshot;
    w->snapshot = m->snapshot;
    dataplane_set_allowlist(w->dp, w->snapshot->list, m->changed_at);
    snapshot_release(old);
    free(m);
}

struct refuse_msg {
    struct dp_worker *worker;
    bool serve;
    char reason[MUX_REASON_MAX];
};

static void
take_refusal(void *arg)
{
    struct refuse_msg *m = arg;
    dataplane_refuse(m->worker->dp, m->serve ? NULL : m->reason);
    free(m);
}

struct tls_msg {
    struct dp_worker *worker;
    struct agent_tls_copy *copy;
    bool identity;                  /* present it to live sessions */
    bool bundle;                    /* re-check live sessions' peers */
};

static void
recheck_dataplane(void *target)
{
    dataplane_recheck_peers(target);
}

static void
present_dataplane(void *target, const char *chain, size_t len, const struct pki_key *key)
{
    dataplane_present_identity(target, chain, len, key);
}

static void
take_tls(void *arg)
{
    struct tls_msg *m = arg;
    struct dp_worker *w = m->worker;
    /* Stopped meanwhile: nothing to update. */
    if (w->dp != NULL)
        agent_tls_copy_take(m->copy, &w->tls, w->index, m->identity, m->bundle,
                            recheck_dataplane, present_dataplane, w->dp);
    agent_tls_copy_free(m->copy);
    free(m);
}

static void
post(struct dp_worker *w, void (*fn)(void *arg), void *msg)
{
    struct ztr_err err = {0};
    if (workers_post(w->group->workers, w->index, fn, msg, &err) != 0) {
        log_error("change not delivered to a worker", "worker=%u error=\"%s\"", w->index,
                  err.msg);
        free(msg);
    }
}

/* ---- start and stop, run on each worker --------------------------------------------------- */

struct start_call {
    struct dp_worker *worker;
    struct agent_tls_copy *copy;     /* workers > 0 */
    int rc;
    struct ztr_err err;
};

static void
start_worker(void *arg)
{
    struct start_call *c = arg;
    struct dp_worker *w = c->worker;
    struct dp_workers *g = w->group;
    struct dataplane_env env = {.loop = workers_loop(g->workers, w->index),
                                .trust_domain = agent_trust_domain(g->agent),
                                .self_id = w->self_id,
                                .shared = g->shared,
                                .shared_listener = g->count > 1};
    struct dataplane_config config = g->config;
    config.allowlist = w->snapshot->list;
    if (w->index == 0) {
        env.tls = agent_data_tls(g->agent, TLS_SIDE_SERVER, DATA_ALPN, &c->err);
        if (env.tls == NULL) {
            c->rc = -1;
            return;
        }
    } else {
        config.listen = g->listen;
        if (agent_tls_copy_apply(c->copy, &w->tls, &c->err) != 0) {
            c->rc = -1;
            return;
        }
        env.tls = w->tls;
    }
    c->rc = dataplane_new(&env, &config, &w->dp, &c->err);
}

static void
stop_worker(void *arg)
{
    struct dp_worker *w = arg;
    dataplane_stop(w->dp);
    w->dp = NULL;
    tls_ctx_free(w->tls);
    w->tls = NULL;
    snapshot_release(w->snapshot);
    w->snapshot = NULL;
}

/* CONNECTOR_LISTEN's host with the port worker 0 was given (it may have
 * asked for port 0): where the other workers listen beside it. */
static void
listen_beside(struct dp_workers *g, const char *listen, uint16_t port)
{
    char host[64];
    uint16_t asked;
    if (config_parse_addr(listen, host, sizeof(host), &asked) != 0)
        snprintf(host, sizeof(host), "%s", listen);
    snprintf(g->listen, sizeof(g->listen), strchr(host, ':') != NULL ? "[%s]:%u" : "%s:%u",
             host, (unsigned)port);
}

int
dp_workers_start(struct agent *agent, const struct dataplane_config *config, unsigned workers,
                 struct allowlist *list, struct dp_workers **out, struct ztr_err *err)
{
    *out = NULL;
    struct dp_workers *g = calloc(1, sizeof(*g));
    struct snapshot *snap = calloc(1, sizeof(*snap));
    if (g == NULL || snap == NULL) {
        free(g);
        free(snap);
        allowlist_free(list);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    snap->list = list;
    atomic_init(&snap->refs, workers);
    g->agent = agent;
    g->config = *config;
    g->count = workers;
    for (unsigned i = 0; i < workers; i++) {
        g->worker[i] = (struct dp_worker){.group = g, .index = i, .snapshot = snap};
        snprintf(g->worker[i].self_id, sizeof(g->worker[i].self_id), "%s",
                 agent_spiffe_id(agent));
    }
    if (workers_new(agent_loop(agent), workers, &g->workers, err) != 0 ||
        dataplane_shared_new(&g->shared, err) != 0) {
        g->count = 0;
        for (unsigned i = 0; i < workers; i++)
            snapshot_release(snap);
        dp_workers_stop(g);
        return -1;
    }
    int rc = 0;
    for (unsigned i = 0; i < workers && rc == 0; i++) {
        struct start_call call = {.worker = &g->worker[i]};
        if (i > 0 &&
            (call.copy = agent_data_tls_copy(agent, TLS_SIDE_SERVER, DATA_ALPN)) == NULL) {
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
            listen_beside(g, config->listen, dataplane_listen_port(g->worker[0].dp));
    }
    if (rc != 0) {
        dp_workers_stop(g);
        return -1;
    }
    if (workers > 1)
        log_info("data plane workers started", "workers=%u listen=%s", workers, g->listen);
    *out = g;
    return 0;
}

void
dp_workers_stop(struct dp_workers *g)
{
    if (g == NULL)
        return;
    /* The others first: worker 0's loop is the caller's. */
    for (unsigned i = g->count; i-- > 0;) {
        struct ztr_err err;
        if (g->worker[i].dp != NULL || g->worker[i].snapshot != NULL)
            (void)workers_call(g->workers, i, stop_worker, &g->worker[i], &err);
    }
    workers_free(g->workers);
    dataplane_shared_release(g->shared);
    free(g);
}

/* ---- changes ------------------------------------------------------------------------------ */

void
dp_workers_set_allowlist(struct dp_workers *g, struct allowlist *list)
{
    if (g == NULL) {
        allowlist_free(list);
        return;
    }
    struct snapshot *snap = calloc(1, sizeof(*snap));
    if (snap == NULL) {
        log_error("allowlist not enforced", "error=\"out of memory\"");
        allowlist_free(list);
        return;
    }
    snap->list = list;
    atomic_init(&snap->refs, g->count);
    /* Taken when the change arrived: the revocation histogram includes the
     * hand-over to the workers. */
    double changed_at = ev_time();
    for (unsigned i = 0; i < g->count; i++) {
        struct allowlist_msg *m = malloc(sizeof(*m));
        if (m == NULL) {
            log_error("allowlist not enforced", "worker=%u error=\"out of memory\"", i);
            snapshot_release(snap);
            continue;
        }
        *m = (struct allowlist_msg){.worker = &g->worker[i], .snapshot = snap,
                                    .changed_at = changed_at};
        struct ztr_err err = {0};
        if (workers_post(g->workers, i, take_allowlist, m, &err) != 0) {
            log_error("allowlist not enforced", "worker=%u error=\"%s\"", i, err.msg);
            snapshot_release(snap);
            free(m);
        }
    }
}

void
dp_workers_refuse(struct dp_workers *g, const char *reason)
{
    if (g == NULL)
        return;
    for (unsigned i = 0; i < g->count; i++) {
        struct refuse_msg *m = calloc(1, sizeof(*m));
        if (m == NULL) {
            log_error("refusal not delivered to a worker", "worker=%u error=\"out of memory\"",
                      i);
            continue;
        }
        m->worker = &g->worker[i];
        m->serve = reason == NULL;
        snprintf(m->reason, sizeof(m->reason), "%s", reason != NULL ? reason : "");
        post(&g->worker[i], take_refusal, m);
    }
}

static void
tls_changed(struct dp_workers *g, bool identity, bool bundle)
{
    if (g == NULL)
        return;
    /* Worker 0 shares the agent's context, which the agent updated. */
    if (identity) {
        const char *chain;
        size_t len;
        const struct pki_key *key;
        if (agent_identity(g->agent, &chain, &len, &key) == 0)
            dataplane_present_identity(g->worker[0].dp, chain, len, key);
    }
    if (bundle)
        dataplane_recheck_peers(g->worker[0].dp);
    for (unsigned i = 1; i < g->count; i++) {
        struct tls_msg *m = calloc(1, sizeof(*m));
        if (m != NULL)
            m->copy = agent_data_tls_copy(g->agent, TLS_SIDE_SERVER, DATA_ALPN);
        if (m == NULL || m->copy == NULL) {
            log_error("TLS change not delivered to a worker", "worker=%u error=\"out of memory\"",
                      i);
            free(m);
            continue;
        }
        m->worker = &g->worker[i];
        m->identity = identity;
        m->bundle = bundle;
        struct ztr_err err = {0};
        if (workers_post(g->workers, i, take_tls, m, &err) != 0) {
            log_error("TLS change not delivered to a worker", "worker=%u error=\"%s\"", i,
                      err.msg);
            agent_tls_copy_free(m->copy);
            free(m);
        }
    }
}

void
dp_workers_identity_changed(struct dp_workers *g)
{
    tls_changed(g, true, false);
}

void
dp_workers_bundle_changed(struct dp_workers *g)
{
    tls_changed(g, false, true);
}

uint16_t
dp_workers_listen_port(const struct dp_workers *g)
{
    return g != NULL ? dataplane_listen_port(g->worker[0].dp) : 0;
}

/* ---- /health and /metrics ------------------------------------------------------------------ */

struct count_call {
    struct dp_worker *worker;
    struct dataplane_counts *sum;
};

static void
count_worker(void *arg)
{
    struct count_call *c = arg;
    dataplane_count(c->worker->dp, c->sum);
}

/* The sum over the workers; per_worker (may be NULL) gets each one's. */
static void
sum_counts(struct dp_workers *g, struct dataplane_counts *sum,
           struct dataplane_counts *per_worker)
{
    for (unsigned i = 0; i < g->count; i++) {
        struct dataplane_counts own = {0};
        struct count_call call = {.worker = &g->worker[i], .sum = &own};
        struct ztr_err err;
        if (workers_call(g->workers, i, count_worker, &call, &err) != 0)
            log_warn("worker counters not read", "worker=%u error=\"%s\"", i, err.msg);
        dataplane_counts_add(sum, &own);
        if (per_worker != NULL)
            per_worker[i] = own;
    }
}

void
dp_workers_count(struct dp_workers *g, struct dataplane_counts *sum)
{
    if (g != NULL)
        sum_counts(g, sum, NULL);
}

void
dp_workers_add_health(struct dp_workers *g, json_t *health)
{
    if (g == NULL)
        return;
    struct dataplane_counts sum = {0};
    struct dataplane_counts *each = calloc(g->count, sizeof(*each));
    sum_counts(g, &sum, each);
    dataplane_counts_health(&sum, dataplane_refusing(g->worker[0].dp), health);
    json_t *data = json_object_get(health, "data");
    json_object_set_new(data, "workers", json_integer(g->count));
    /* Where the sessions landed: a loop that gets none says the kernel's
     * spread (SO_REUSEPORT) is uneven for these peers. */
    json_t *sessions = json_array(), *streams = json_array();
    for (unsigned i = 0; each != NULL && i < g->count; i++) {
        json_array_append_new(sessions, json_integer((json_int_t)each[i].stats.sessions));
        json_array_append_new(streams, json_integer((json_int_t)each[i].stats.streams));
    }
    json_object_set_new(data, "worker_sessions", sessions);
    json_object_set_new(data, "worker_streams", streams);
    free(each);
}

void
dp_workers_add_metrics(struct dp_workers *g, struct metrics *m)
{
    if (g == NULL)
        return;
    struct dataplane_counts sum = {0};
    sum_counts(g, &sum, NULL);
    dataplane_counts_metrics(&sum, m);
    metrics_gauge(m, "ztr_data_workers", "Data-plane event loops (WORKERS).", NULL,
                  (int64_t)g->count);
}
