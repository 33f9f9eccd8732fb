/* The fleet view's live half; fleet.h is the contract. */
#include "controller/fleet.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

#define BUCKETS 8192
/* Checkpoints of each node's running totals, one every CHECKPOINT_STEP_S
 * at most: 16 cover the window with one to spare. */
#define CHECKPOINTS 16
#define CHECKPOINT_STEP_S (FLEET_WINDOW_S / (CHECKPOINTS - 1))
/* Reconnect times kept per node: more than FLEET_FLAP_RECONNECTS. */
#define RECONNECTS_KEPT 8
/* Distinct nodes remembered per failure; the count saturates here. */
#define STRIKES_PER_FAILURE 64
/* Rows per store transaction when persisting. */
#define PERSIST_BATCH 512
/* The horizon scan reads every node: at most once per this many seconds. */
#define HORIZON_SCAN_MIN_S 1

static const struct {
    const char *name, *wire;
    int failure; /* enum fleet_failure, or -1: a rise is no failure */
} counters[FLEET_COUNTER_COUNT] = {
    [FLEET_RECONNECT_SCHEDULED] = {"telemetry.reconnect.scheduled", "reconnect_scheduled", -1},
    [FLEET_RECONNECT_FAILED] = {"telemetry.reconnect.failed", "reconnect_failed",
                                FLEET_FAIL_RECONNECT_FAILED},
    [FLEET_AUTH_EXPIRED] = {"telemetry.auth.expired", "auth_expired", FLEET_FAIL_AUTH_EXPIRED},
    [FLEET_AUTH_REVOKED] = {"telemetry.auth.revoked", "auth_revoked", FLEET_FAIL_AUTH_REVOKED},
    [FLEET_AUTH_UNAVAILABLE] = {"telemetry.auth.unavailable", "auth_unavailable",
                                FLEET_FAIL_AUTH_UNAVAILABLE},
    [FLEET_RENEWALS_OK] = {"renewals.ok", "renewals_ok", -1},
    [FLEET_RENEWALS_FAILED] = {"renewals.failed", "renewals_failed", FLEET_FAIL_RENEWALS_FAILED},
};

static const char *const failure_names[FLEET_FAILURE_COUNT] = {
    [FLEET_FAIL_AUTH_EXPIRED] = "telemetry.auth.expired",
    [FLEET_FAIL_AUTH_REVOKED] = "telemetry.auth.revoked",
    [FLEET_FAIL_AUTH_UNAVAILABLE] = "telemetry.auth.unavailable",
    [FLEET_FAIL_RECONNECT_FAILED] = "telemetry.reconnect.failed",
    [FLEET_FAIL_RENEWALS_FAILED] = "renewals.failed",
    [FLEET_FAIL_FLAPPING] = "flapping",
    [FLEET_FAIL_RENEWAL_MISSED] = "renewal_missed",
    [FLEET_FAIL_CERT_EXPIRED] = "certificate_expired",
};

struct checkpoint {
    int64_t at;
    uint64_t totals[FLEET_COUNTER_COUNT];
};

struct entry {
    struct entry *next; /* same bucket */
    char id[STORE_ID_MAX + 1];
    char label[FLEET_LABEL_MAX + 1];
    int sessions;
    bool had_hello;
    bool online_written;     /* the store says ONLINE as far as we know */
    int64_t last_seen;       /* wall seconds */
    int64_t stored_seen;     /* last_seen as the store has it */
    int64_t last_activity;
    /* raw: as last reported; totals: sum of rises since the entry began
     * (a counter that went down restarted from zero: its new value is the
     * rise). */
    bool have_raw;
    bool raw_observed;       /* raw came from a heartbeat this process saw */
    bool counters_dirty;
    bool counters_urgent;    /* a failure counter rose: write at the next tick */
    int64_t counters_at;
    uint64_t raw[FLEET_COUNTER_COUNT];
    uint64_t totals[FLEET_COUNTER_COUNT];
    struct checkpoint checkpoints[CHECKPOINTS];
    unsigned checkpoint_head, checkpoint_count;
    int64_t reconnects[RECONNECTS_KEPT];
    unsigned reconnect_head;
    int64_t bundle_version; /* as the node's last heartbeat reported; 0: none */
    bool allowlist_reported;
    int64_t allowlist_version;
    char allowlist_epoch[FLEET_EPOCH_MAX + 1];
};

struct strike {
    char id[STORE_ID_MAX + 1];
    char label[FLEET_LABEL_MAX + 1];
    int64_t at; /* 0: free */
};

struct pattern {
    struct strike strikes[STRIKES_PER_FAILURE];
    int64_t logged_at;
};

struct fleet {
    struct store *store;
    const struct ztr_clock *clock;
    int64_t svid_ttl_s;
    int64_t started_at;
    int64_t horizon_scanned_to;
    struct entry *buckets[BUCKETS];
    size_t count;
    size_t nodes_max;
    struct pattern patterns[FLEET_FAILURE_COUNT];
    uint64_t escalations_logged;
    struct store_heartbeat *batch;
    struct entry **batch_entries;
};

/* ---- names and horizons --------------------------------------------------- */

const char *
fleet_counter_name(enum fleet_counter counter)
{
    return (unsigned)counter < FLEET_COUNTER_COUNT ? counters[counter].name : "?";
}

const char *
fleet_counter_wire_name(enum fleet_counter counter)
{
    return (unsigned)counter < FLEET_COUNTER_COUNT ? counters[counter].wire : "?";
}

const char *
fleet_failure_name(enum fleet_failure failure)
{
    return (unsigned)failure < FLEET_FAILURE_COUNT ? failure_names[failure] : "?";
}

void
fleet_horizon_of(const struct store_node *node, int64_t svid_ttl_s, struct fleet_horizon *out)
{
    memset(out, 0, sizeof(*out));
    if (node->cert_not_after == 0)
        return;
    int64_t not_after = node->cert_not_after;
    int64_t issued = node->cert_issued_at;
    /* Rows from before the history was kept: the configured lifetime. */
    if (issued <= 0 || issued >= not_after)
        issued = not_after - svid_ttl_s;
    int64_t life = not_after - issued;
    out->issued_at = issued;
    out->not_after = not_after;
    out->renew_at = issued + life / 2;
    out->renew_deadline = issued + life * FLEET_RENEW_DEADLINE_PERMILLE / 1000;
}

bool
fleet_renewal_missed(const struct store_node *node, const struct fleet_horizon *horizon,
                     int64_t now)
{
    return !node->revoked && horizon->not_after != 0 && now >= horizon->renew_deadline &&
           now < horizon->not_after;
}

bool
fleet_cert_expired(const struct store_node *node, int64_t now)
{
    return !node->revoked && node->cert_not_after != 0 && now >= node->cert_not_after;
}

/* ---- the table ------------------------------------------------------------ */

static size_t
bucket_of(const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    return h & (BUCKETS - 1);
}

static struct entry *
entry_find(const struct fleet *f, const char *id)
{
    for (struct entry *e = f->buckets[bucket_of(id)]; e != NULL; e = e->next)
        if (strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

static void
entry_remove(struct fleet *f, struct entry *gone)
{
    for (struct entry **link = &f->buckets[bucket_of(gone->id)]; *link != NULL;
         link = &(*link)->next) {
        if (*link == gone) {
            *link = gone->next;
            f->count--;
            free(gone);
            return;
        }
    }
}

static bool
has_unsaved(const struct entry *e)
{
    return e->last_seen > e->stored_seen || e->counters_dirty;
}

/* Room for one more when the table is full: the node idle longest that
 * has no session and nothing left to write. false when there is none. */
static bool
make_room(struct fleet *f)
{
    struct entry *oldest = NULL;
    for (size_t b = 0; b < BUCKETS; b++)
        for (struct entry *e = f->buckets[b]; e != NULL; e = e->next)
            if (e->sessions == 0 && !has_unsaved(e) &&
                (oldest == NULL || e->last_activity < oldest->last_activity))
                oldest = e;
    if (oldest == NULL)
        return false;
    entry_remove(f, oldest);
    return true;
}

static void
checkpoint_push(struct entry *e, int64_t now)
{
    unsigned slot = (e->checkpoint_head + e->checkpoint_count) % CHECKPOINTS;
    if (e->checkpoint_count == CHECKPOINTS)
        e->checkpoint_head = (e->checkpoint_head + 1) % CHECKPOINTS;
    else
        e->checkpoint_count++;
    e->checkpoints[slot].at = now;
    memcpy(e->checkpoints[slot].totals, e->totals, sizeof(e->totals));
}

static const struct checkpoint *
checkpoint_newest(const struct entry *e)
{
    if (e->checkpoint_count == 0)
        return NULL;
    return &e->checkpoints[(e->checkpoint_head + e->checkpoint_count - 1) % CHECKPOINTS];
}

/* The counters the store kept for the node: the baseline its next report
 * is compared with. */
static void
load_stored_counters(struct fleet *f, struct entry *e, const struct store_node *node)
{
    json_t *stored = json_loads(node->counters, 0, NULL);
    for (int i = 0; i < FLEET_COUNTER_COUNT; i++) {
        json_t *value = json_object_get(stored, counters[i].wire);
        if (json_is_integer(value) && json_integer_value(value) >= 0) {
            e->raw[i] = (uint64_t)json_integer_value(value);
            e->have_raw = true;
        }
    }
    json_decref(stored);
    e->counters_at = node->counters_at;
    /* Rises against a baseline from before this start are deltas, not
     * failures: a controller restart must not itself escalate. */
    e->raw_observed = e->have_raw && node->counters_at >= f->started_at;
}

static struct entry *
entry_get(struct fleet *f, const struct store_node *node, int64_t now)
{
    struct entry *e = entry_find(f, node->id);
    if (e != NULL)
        return e;
    if (f->count >= f->nodes_max && !make_room(f))
        return NULL;
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    snprintf(e->id, sizeof(e->id), "%s", node->id);
    snprintf(e->label, sizeof(e->label), "%s/%s", node->role, node->name);
    e->stored_seen = e->last_seen = node->last_seen;
    e->online_written = node->status == STORE_ONLINE;
    e->last_activity = now;
    load_stored_counters(f, e, node);
    checkpoint_push(e, now);
    size_t b = bucket_of(e->id);
    e->next = f->buckets[b];
    f->buckets[b] = e;
    f->count++;
    return e;
}

/* ---- escalation ----------------------------------------------------------- */

static bool
is_auth_failure(enum fleet_failure failure)
{
    return failure == FLEET_FAIL_AUTH_EXPIRED || failure == FLEET_FAIL_AUTH_REVOKED ||
           failure == FLEET_FAIL_AUTH_UNAVAILABLE;
}

/* Distinct nodes with this failure within the window; names the first
 * `cap` of them (most recent first is not promised) into names. */
static size_t
pattern_nodes(const struct pattern *p, int64_t now, char (*names)[FLEET_LABEL_MAX + 1],
              size_t cap, size_t *named)
{
    size_t n = 0, written = 0;
    for (size_t i = 0; i < STRIKES_PER_FAILURE; i++) {
        const struct strike *s = &p->strikes[i];
        if (s->at == 0 || s->at <= now - FLEET_WINDOW_S)
            continue;
        if (written < cap)
            snprintf(names[written++], FLEET_LABEL_MAX + 1, "%s", s->label);
        n++;
    }
    if (named != NULL)
        *named = written;
    return n;
}

static void
escalate(struct fleet *f, enum fleet_failure failure, int64_t now)
{
    struct pattern *p = &f->patterns[failure];
    char names[FLEET_ESCALATION_NAMES][FLEET_LABEL_MAX + 1];
    size_t named = 0;
    size_t nodes = pattern_nodes(p, now, names, FLEET_ESCALATION_NAMES, &named);
    if (nodes < FLEET_ESCALATE_NODES)
        return;
    /* One line per failure per window, however many more nodes join. */
    if (p->logged_at != 0 && now - p->logged_at < FLEET_WINDOW_S)
        return;
    p->logged_at = now;
    f->escalations_logged++;
    char list[FLEET_ESCALATION_NAMES * (FLEET_LABEL_MAX + 1) + 1] = "";
    size_t used = 0;
    for (size_t i = 0; i < named; i++)
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i > 0 ? "," : "",
                                 names[i]);
    /* Seed 000's escalation rule, in its words. */
    const char *what = is_auth_failure(failure)
                           ? "escalate to platform/backend on-call: 3+ nodes show the same auth "
                             "failure pattern"
                           : "escalate to platform/backend on-call: 3+ nodes show the same "
                             "failure pattern";
    log_warn(what, "failure=%s nodes=%zu window_s=%d names=%s more=%zu", fleet_failure_name(failure),
             nodes, FLEET_WINDOW_S, list, nodes - named);
    char detail[STORE_DETAIL_MAX + 1];
    snprintf(detail, sizeof(detail), "%s: failure=%s nodes=%zu window_s=%d names=%.700s", what,
             fleet_failure_name(failure), nodes, FLEET_WINDOW_S, list);
    struct ztr_err err = {0};
    if (store_event_add(f->store, "alert", "", detail, &err) != 0)
        log_warn("escalation event not recorded", "error=\"%s\"", err.msg);
}

/* Node id (labelled label) failed this way now. */
static void
strike(struct fleet *f, enum fleet_failure failure, const char *id, const char *label,
       int64_t now)
{
    struct pattern *p = &f->patterns[failure];
    struct strike *slot = NULL;
    for (size_t i = 0; i < STRIKES_PER_FAILURE; i++) {
        struct strike *s = &p->strikes[i];
        if (s->at != 0 && strcmp(s->id, id) == 0) {
            slot = s;
            break;
        }
        if (slot == NULL || s->at < slot->at)
            slot = s; /* a free slot (at 0) or the oldest strike */
    }
    snprintf(slot->id, sizeof(slot->id), "%s", id);
    snprintf(slot->label, sizeof(slot->label), "%s", label);
    slot->at = now;
    escalate(f, failure, now);
}

/* ---- what sessions report ------------------------------------------------- */

int
fleet_new(struct store *store, const struct ztr_clock *clock, int64_t svid_ttl_s,
          struct fleet **out, struct ztr_err *err)
{
    *out = NULL;
    struct fleet *f = calloc(1, sizeof(*f));
    if (f != NULL) {
        f->batch = calloc(PERSIST_BATCH, sizeof(*f->batch));
        f->batch_entries = calloc(PERSIST_BATCH, sizeof(*f->batch_entries));
    }
    if (f == NULL || f->batch == NULL || f->batch_entries == NULL) {
        fleet_free(f);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    f->store = store;
    f->clock = clock;
    f->svid_ttl_s = svid_ttl_s;
    f->nodes_max = FLEET_NODES_MAX;
    f->started_at = f->horizon_scanned_to = clock_wall_s(clock);
    *out = f;
    return 0;
}

void
fleet_hold(struct fleet *f, size_t sessions)
{
    size_t wanted = sessions + sessions / 2;
    f->nodes_max = wanted > FLEET_NODES_MAX ? wanted : FLEET_NODES_MAX;
}

void
fleet_free(struct fleet *f)
{
    if (f == NULL)
        return;
    for (size_t b = 0; b < BUCKETS; b++) {
        struct entry *e = f->buckets[b];
        while (e != NULL) {
            struct entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(f->batch);
    free(f->batch_entries);
    free(f);
}

static unsigned
reconnects_within(const struct entry *e, int64_t now)
{
    unsigned n = 0;
    for (unsigned i = 0; i < RECONNECTS_KEPT; i++)
        n += e->reconnects[i] != 0 && e->reconnects[i] > now - FLEET_WINDOW_S;
    return n;
}

void
fleet_hello(struct fleet *f, const struct store_node *node)
{
    int64_t now = clock_wall_s(f->clock);
    struct entry *e = entry_get(f, node, now);
    if (e == NULL)
        return;
    e->sessions++;
    e->last_activity = e->last_seen = now;
    /* The hello wrote ONLINE and last_seen itself. */
    e->stored_seen = now;
    e->online_written = true;
    if (!e->had_hello) {
        e->had_hello = true;
        return;
    }
    e->reconnects[e->reconnect_head] = now;
    e->reconnect_head = (e->reconnect_head + 1) % RECONNECTS_KEPT;
    if (reconnects_within(e, now) >= FLEET_FLAP_RECONNECTS)
        strike(f, FLEET_FAIL_FLAPPING, e->id, e->label, now);
}

static void
take_counters(struct fleet *f, struct entry *e, const json_t *reported, int64_t now)
{
    bool changed = !e->have_raw;
    for (int i = 0; i < FLEET_COUNTER_COUNT; i++) {
        const json_t *value = json_object_get(reported, counters[i].wire);
        if (!json_is_integer(value) || json_integer_value(value) < 0)
            continue;
        uint64_t v = (uint64_t)json_integer_value(value);
        uint64_t rise = !e->have_raw ? 0 : v >= e->raw[i] ? v - e->raw[i] : v;
        changed |= v != e->raw[i];
        e->raw[i] = v;
        e->totals[i] += rise;
        if (rise > 0 && counters[i].failure >= 0) {
            e->counters_urgent = true;
            if (e->raw_observed)
                strike(f, (enum fleet_failure)counters[i].failure, e->id, e->label, now);
        }
    }
    e->have_raw = true;
    e->raw_observed = true;
    e->counters_at = now;
    e->counters_dirty |= changed;
    const struct checkpoint *newest = checkpoint_newest(e);
    if (newest == NULL || now - newest->at >= CHECKPOINT_STEP_S)
        checkpoint_push(e, now);
}

bool
fleet_heartbeat(struct fleet *f, const struct store_node *node, const json_t *reported)
{
    int64_t now = clock_wall_s(f->clock);
    struct entry *e = entry_get(f, node, now);
    if (e == NULL)
        return true;
    e->last_activity = e->last_seen = now;
    if (json_is_object(reported))
        take_counters(f, e, reported, now);
    return !e->online_written;
}

void
fleet_online_written(struct fleet *f, const char *id)
{
    struct entry *e = entry_find(f, id);
    if (e == NULL)
        return;
    e->online_written = true;
    e->stored_seen = clock_wall_s(f->clock);
}

void
fleet_bundle_held(struct fleet *f, const char *id, int64_t version)
{
    struct entry *e = entry_find(f, id);
    if (e != NULL && version > 0)
        e->bundle_version = version;
}

void
fleet_allowlist_held(struct fleet *f, const char *id, int64_t version, const char *epoch)
{
    struct entry *e = entry_find(f, id);
    if (e == NULL || version < 0)
        return;
    e->allowlist_reported = true;
    e->allowlist_version = version;
    snprintf(e->allowlist_epoch, sizeof(e->allowlist_epoch), "%s", epoch != NULL ? epoch : "");
}

void
fleet_allowlist_applied(struct fleet *f, const char *id, int64_t version)
{
    struct entry *e = entry_find(f, id);
    if (e == NULL || (e->allowlist_reported && version <= e->allowlist_version))
        return;
    e->allowlist_reported = true;
    e->allowlist_version = version;
}

void
fleet_offline(struct fleet *f, const char *id)
{
    struct entry *e = entry_find(f, id);
    if (e != NULL)
        e->online_written = false;
}

void
fleet_session_closed(struct fleet *f, const char *id)
{
    struct entry *e = entry_find(f, id);
    if (e == NULL)
        return;
    if (e->sessions > 0)
        e->sessions--;
    e->last_activity = clock_wall_s(f->clock);
}

/* ---- persistence and the periodic tick ------------------------------------ */

static void
counters_text(const struct entry *e, char *out, size_t cap)
{
    if (!e->counters_dirty) {
        out[0] = '\0'; /* the store keeps what it has */
        return;
    }
    size_t used = (size_t)snprintf(out, cap, "{");
    for (int i = 0; i < FLEET_COUNTER_COUNT && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s\"%s\":%" PRIu64, i > 0 ? "," : "",
                                 counters[i].wire, e->raw[i]);
    if (used < cap)
        snprintf(out + used, cap - used, "}");
}

static int
write_batch(struct fleet *f, size_t n, struct ztr_err *err)
{
    if (n == 0)
        return 0;
    TRY(store_node_save_heartbeats(f->store, f->batch, n, NULL, err));
    for (size_t i = 0; i < n; i++) {
        struct entry *e = f->batch_entries[i];
        if (f->batch[i].last_seen > e->stored_seen)
            e->stored_seen = f->batch[i].last_seen;
        if (f->batch[i].counters[0] != '\0')
            e->counters_dirty = e->counters_urgent = false;
    }
    return 0;
}

int
fleet_persist(struct fleet *f, int64_t stale_before, struct ztr_err *err)
{
    size_t n = 0;
    for (size_t b = 0; b < BUCKETS; b++) {
        for (struct entry *e = f->buckets[b]; e != NULL; e = e->next) {
            if (!has_unsaved(e) || (e->stored_seen >= stale_before && !e->counters_urgent))
                continue;
            struct store_heartbeat *row = &f->batch[n];
            snprintf(row->id, sizeof(row->id), "%s", e->id);
            row->last_seen = e->last_seen;
            counters_text(e, row->counters, sizeof(row->counters));
            row->counters_at = e->counters_at;
            f->batch_entries[n++] = e;
            if (n == PERSIST_BATCH) {
                TRY(write_batch(f, n, err));
                n = 0;
            }
        }
    }
    return write_batch(f, n, err);
}

struct horizon_scan {
    struct fleet *fleet;
    int64_t after, until;
};

static int
scan_node(void *ctx, const struct store_node *node)
{
    struct horizon_scan *scan = ctx;
    if (node->revoked || node->cert_not_after == 0)
        return 0;
    struct fleet_horizon h;
    fleet_horizon_of(node, scan->fleet->svid_ttl_s, &h);
    char label[FLEET_LABEL_MAX + 1];
    snprintf(label, sizeof(label), "%s/%s", node->role, node->name);
    /* Crossings only: a node past its deadline before the start, or since
     * the last scan, is not counted twice. */
    if (h.renew_deadline > scan->after && h.renew_deadline <= scan->until &&
        scan->until < h.not_after)
        strike(scan->fleet, FLEET_FAIL_RENEWAL_MISSED, node->id, label, scan->until);
    if (h.not_after > scan->after && h.not_after <= scan->until)
        strike(scan->fleet, FLEET_FAIL_CERT_EXPIRED, node->id, label, scan->until);
    return 0;
}

void
fleet_tick(struct fleet *f)
{
    int64_t now = clock_wall_s(f->clock);
    if (now - f->horizon_scanned_to >= HORIZON_SCAN_MIN_S) {
        struct horizon_scan scan = {f, f->horizon_scanned_to, now};
        struct ztr_err err = {0};
        if (store_node_list(f->store, scan_node, &scan, &err) != 0)
            log_warn("fleet horizon scan failed", "error=\"%s\"", err.msg);
        else
            f->horizon_scanned_to = now;
    }
    /* Idle nodes go once their window is over and their news is stored;
     * the store holds their counters for when they come back. */
    for (size_t b = 0; b < BUCKETS; b++) {
        struct entry *e = f->buckets[b];
        while (e != NULL) {
            struct entry *next = e->next;
            if (e->sessions == 0 && !has_unsaved(e) &&
                now - e->last_activity > FLEET_WINDOW_S + CHECKPOINT_STEP_S)
                entry_remove(f, e);
            e = next;
        }
    }
}

/* ---- what the admin API reads --------------------------------------------- */

bool
fleet_node_view(struct fleet *f, const char *id, struct fleet_node_view *out)
{
    memset(out, 0, sizeof(*out));
    const struct entry *e = entry_find(f, id);
    if (e == NULL)
        return false;
    int64_t now = clock_wall_s(f->clock);
    out->last_seen = e->last_seen;
    out->bundle_version = e->bundle_version;
    out->allowlist_reported = e->allowlist_reported;
    out->allowlist_version = e->allowlist_version;
    memcpy(out->allowlist_epoch, e->allowlist_epoch, sizeof(out->allowlist_epoch));
    out->have_counters = e->have_raw;
    memcpy(out->counters, e->raw, sizeof(out->counters));
    out->counters_at = e->counters_at;
    /* The newest checkpoint at least a window old, else the oldest one. */
    const struct checkpoint *base = NULL;
    for (unsigned i = 0; i < e->checkpoint_count; i++) {
        const struct checkpoint *c = &e->checkpoints[(e->checkpoint_head + i) % CHECKPOINTS];
        if (base == NULL || c->at <= now - FLEET_WINDOW_S)
            base = c;
    }
    if (base != NULL) {
        for (int i = 0; i < FLEET_COUNTER_COUNT; i++)
            out->deltas[i] = e->totals[i] - base->totals[i];
        out->deltas_window_s = now - base->at;
    }
    out->reconnects = reconnects_within(e, now);
    out->flapping = out->reconnects >= FLEET_FLAP_RECONNECTS;
    out->sessions = e->sessions;
    return true;
}

size_t
fleet_escalations(struct fleet *f, struct fleet_escalation *out, size_t max)
{
    int64_t now = clock_wall_s(f->clock);
    size_t n = 0;
    for (int i = 0; i < FLEET_FAILURE_COUNT && n < max; i++) {
        struct fleet_escalation *x = &out[n];
        memset(x, 0, sizeof(*x));
        x->failure = (enum fleet_failure)i;
        x->nodes = pattern_nodes(&f->patterns[i], now, x->names, FLEET_ESCALATION_NAMES,
                                 &x->named);
        x->logged_at = f->patterns[i].logged_at;
        if (x->nodes >= FLEET_ESCALATE_NODES)
            n++;
    }
    return n;
}

uint64_t
fleet_escalations_logged(const struct fleet *f)
{
    return f->escalations_logged;
}
