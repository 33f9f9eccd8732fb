#include "controller/changes.h"

#include <stdlib.h>

struct change {
    int64_t version;
    int64_t pushed_ms;
    unsigned connectors;        /* sessions it was pushed to */
    unsigned applied;           /* reports received */
    int64_t apply_ms;           /* push → the slowest connector's report */
    int64_t close_ms;           /* applied → its last removed session closed, slowest */
    int64_t sessions_closed;
};

struct histogram {
    uint64_t buckets[CHANGES_BUCKETS];
    uint64_t count;
    double sum;
};

struct changes {
    struct change ring[CHANGES_MAX];
    size_t next;                /* where the next change goes */
    size_t count;
    struct histogram applied, closed;
};

static const double bounds[CHANGES_BUCKETS] = {0.001, 0.005, 0.01, 0.025, 0.05,
                                               0.1,   0.25,  1,    5};

int
changes_new(struct changes **out, struct ztr_err *err)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    return 0;
}

void
changes_free(struct changes *changes)
{
    free(changes);
}

static struct change *
find(struct changes *changes, int64_t version)
{
    for (size_t i = 0; i < changes->count; i++) {
        struct change *c = &changes->ring[(changes->next + CHANGES_MAX - 1 - i) % CHANGES_MAX];
        if (c->version == version)
            return c;
    }
    return NULL;
}

void
changes_pushed(struct changes *changes, int64_t version, int64_t pushed_ms,
               unsigned connectors)
{
    struct change *c = find(changes, version);
    if (c != NULL) {
        c->connectors += connectors;
        return;
    }
    c = &changes->ring[changes->next];
    *c = (struct change){.version = version, .pushed_ms = pushed_ms, .connectors = connectors};
    changes->next = (changes->next + 1) % CHANGES_MAX;
    if (changes->count < CHANGES_MAX)
        changes->count++;
}

static void
observe(struct histogram *h, int64_t ms)
{
    double seconds = (double)(ms < 0 ? 0 : ms) / 1000.0;
    for (int i = 0; i < CHANGES_BUCKETS; i++)
        if (seconds <= bounds[i])
            h->buckets[i]++;
    h->count++;
    h->sum += seconds;
}

bool
changes_applied(struct changes *changes, int64_t version, int64_t received_ms,
                int64_t applied_ms, int64_t closed_ms, int64_t sessions_closed)
{
    struct change *c = find(changes, version);
    if (c == NULL)
        return false;
    int64_t apply = received_ms - c->pushed_ms;
    /* The connector's own clock for the second phase: no skew between
     * two machines' clocks enters it. It is the connector's claim, so it
     * is held to what a report can take (a connector reports within
     * CHANGES_REPORT_MAX_MS), as is its count. */
    int64_t close = closed_ms > applied_ms ? closed_ms - applied_ms : 0;
    if (close > CHANGES_REPORT_MAX_MS)
        close = CHANGES_REPORT_MAX_MS;
    if (sessions_closed > CHANGES_SESSIONS_MAX)
        sessions_closed = CHANGES_SESSIONS_MAX;
    observe(&changes->applied, apply);
    observe(&changes->closed, close);
    c->applied++;
    if (apply > c->apply_ms)
        c->apply_ms = apply;
    if (close > c->close_ms)
        c->close_ms = close;
    if (sessions_closed > 0)
        c->sessions_closed += sessions_closed;
    return true;
}

json_t *
changes_json(const struct changes *changes, size_t limit)
{
    json_t *list = json_array();
    for (size_t i = 0; i < changes->count && i < limit; i++) {
        const struct change *c =
            &changes->ring[(changes->next + CHANGES_MAX - 1 - i) % CHANGES_MAX];
        json_array_append_new(
            list, json_pack("{s:I, s:I, s:i, s:i, s:b, s:I, s:I, s:I}", "id",
                            (json_int_t)c->version, "pushed_at_ms", (json_int_t)c->pushed_ms,
                            "connectors", (int)c->connectors, "applied", (int)c->applied,
                            "complete", c->applied >= c->connectors, "apply_ms",
                            (json_int_t)c->apply_ms, "close_ms", (json_int_t)c->close_ms,
                            "sessions_closed", (json_int_t)c->sessions_closed));
    }
    return json_pack("{s:o}", "changes", list);
}

static void
histogram_metrics(struct metrics *m, const char *phase, const struct histogram *h)
{
    for (int i = 0; i < CHANGES_BUCKETS; i++)
        metrics_printf(m, "ztr_revocation_apply_seconds_bucket{phase=\"%s\",le=\"%g\"} %llu\n",
                       phase, bounds[i], (unsigned long long)h->buckets[i]);
    metrics_printf(m,
                   "ztr_revocation_apply_seconds_bucket{phase=\"%s\",le=\"+Inf\"} %llu\n"
                   "ztr_revocation_apply_seconds_sum{phase=\"%s\"} %.6f\n"
                   "ztr_revocation_apply_seconds_count{phase=\"%s\"} %llu\n",
                   phase, (unsigned long long)h->count, phase, h->sum, phase,
                   (unsigned long long)h->count);
}

void
changes_metrics(const struct changes *changes, struct metrics *m)
{
    metrics_family(m, "ztr_revocation_apply_seconds", "histogram",
                   "Allowlist changes: push to a connector's report that it applied the "
                   "change (phase applied, controller clock), and applied to the last "
                   "session the change removed closed (phase closed, the connector's clock).");
    histogram_metrics(m, "applied", &changes->applied);
    histogram_metrics(m, "closed", &changes->closed);
}
