/* `controller explain`; explain.h is the contract. */
#include "controller/explain.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "controller/controller.h"
#include "net/http.h"

/* ---- the tunneler's name ---------------------------------------------------- */

int
explain_parse_tunneler(const char *text, const char *our_trust_domain,
                       struct explain_facts *facts, struct ztr_err *err)
{
    char name[PKI_NAME_MAX + 1];
    char trust_domain[PKI_TRUST_DOMAIN_MAX + 1];
    struct pki_spiffe_id id;
    if (strncmp(text, "spiffe://", 9) == 0) {
        /* As federation grants name them: taken as NAME@TRUST_DOMAIN. */
        if (pki_spiffe_id_parse(text, &id, err) != 0 || id.role != PKI_ROLE_TUNNELER ||
            id.name[0] == '\0') {
            if (err->msg[0] == '\0')
                ztr_err_set(err, ZTR_E_INVALID, "not a tunneler's SPIFFE ID");
            ztr_err_wrap(err, "field \"tunneler\"");
            err->code = ZTR_E_INVALID;
            return -1;
        }
        bool ours = strcmp(id.trust_domain, our_trust_domain) == 0;
        snprintf(facts->tunneler, sizeof(facts->tunneler), "%s%s%s", id.name, ours ? "" : "@",
                 ours ? "" : id.trust_domain);
        snprintf(facts->spiffe_id, sizeof(facts->spiffe_id), "%s", id.uri);
        facts->federated = !ours;
        return 0;
    }
    const char *at = strchr(text, '@');
    size_t name_len = at != NULL ? (size_t)(at - text) : strlen(text);
    if (name_len == 0 || name_len >= sizeof(name) ||
        (at != NULL && strlen(at + 1) >= sizeof(trust_domain)))
        return ztr_err_set(err, ZTR_E_INVALID,
                           "field \"tunneler\" must be NAME or NAME@TRUST_DOMAIN");
    memcpy(name, text, name_len);
    name[name_len] = '\0';
    snprintf(trust_domain, sizeof(trust_domain), "%s", at != NULL ? at + 1 : our_trust_domain);
    if (pki_spiffe_id_build(trust_domain, PKI_ROLE_TUNNELER, name, &id, err) != 0) {
        ztr_err_wrap(err, "field \"tunneler\"");
        err->code = ZTR_E_INVALID;
        return -1;
    }
    facts->federated = strcmp(trust_domain, our_trust_domain) != 0;
    snprintf(facts->tunneler, sizeof(facts->tunneler), "%s", facts->federated ? text : name);
    snprintf(facts->spiffe_id, sizeof(facts->spiffe_id), "%s", id.uri);
    return 0;
}

/* ---- gathering ---------------------------------------------------------------- */

struct gather {
    struct controller *c;
    struct explain_facts *f;
};

static int
visit_resource(void *ctx, const struct store_resource *resource)
{
    struct gather *g = ctx;
    if (strcmp(resource->name, g->f->resource) == 0)
        g->f->resource_found = true;
    return 0;
}

static int
visit_binding(void *ctx, const struct store_binding *binding)
{
    struct explain_facts *f = ((struct gather *)ctx)->f;
    if (strcmp(binding->resource, f->resource) != 0)
        return 0;
    f->bound_count++;
    if (f->connector_count < EXPLAIN_CONNECTORS_MAX)
        snprintf(f->connectors[f->connector_count++].name, STORE_NAME_MAX + 1, "%s",
                 binding->connector);
    return 0;
}

static int
visit_grant(void *ctx, const struct store_grant *grant)
{
    struct explain_facts *f = ((struct gather *)ctx)->f;
    if (!f->federated && strcmp(grant->tunneler, f->tunneler) == 0 &&
        strcmp(grant->resource, f->resource) == 0)
        f->grant_found = true;
    return 0;
}

/* The live grant if there is one, else the latest to expire. */
static int
visit_fed_grant(void *ctx, const struct store_fed_grant *grant)
{
    struct explain_facts *f = ((struct gather *)ctx)->f;
    if (strcmp(grant->tunneler, f->spiffe_id) != 0 || strcmp(grant->resource, f->resource) != 0)
        return 0;
    bool live = grant->expires_at == 0 || grant->expires_at > f->now;
    bool kept_live = f->fed_grant_found &&
                     (f->fed_grant_expires_at == 0 || f->fed_grant_expires_at > f->now);
    if (f->fed_grant_found && (kept_live || (!live && grant->expires_at < f->fed_grant_expires_at)))
        return 0;
    f->fed_grant_found = true;
    snprintf(f->fed_grant_id, sizeof(f->fed_grant_id), "%s", grant->id);
    snprintf(f->fed_grant_cidrs, sizeof(f->fed_grant_cidrs), "%s", grant->source_cidrs);
    f->fed_grant_expires_at = grant->expires_at;
    return 0;
}

/* Whether a connector's hello announced resource. */
static bool
announces(const char *addresses, const char *resource)
{
    json_t *advert = json_loads(addresses, 0, NULL);
    bool found = false;
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(advert, "resources"), i, r)
        found |= json_is_string(r) && strcmp(json_string_value(r), resource) == 0;
    json_decref(advert);
    return found;
}

/* A connector's drain, as stored (the operator's, or its own at shutdown). */
static enum explain_drain
explain_drain_state(const struct controller *c, const struct store_node *node)
{
    (void)c;
    return node->drain != STORE_DRAIN_NONE ? EXPLAIN_DRAIN_YES : EXPLAIN_DRAIN_NO;
}

static int
gather_connector(struct controller *c, struct explain_facts *f, struct explain_connector *out,
                 struct store_node *row, struct ztr_err *err)
{
    struct pki_spiffe_id id;
    if (pki_spiffe_id_build(c->settings.trust_domain, PKI_ROLE_CONNECTOR, out->name, &id,
                            NULL) != 0)
        return 0; /* a binding always names a valid connector; nothing to read otherwise */
    struct ztr_err lookup = {0};
    if (store_node_get_by_spiffe_id(c->store, id.uri, row, &lookup) != 0) {
        if (lookup.code == ZTR_E_NOT_FOUND)
            return 0;
        *err = lookup;
        return -1;
    }
    snprintf(out->id, sizeof(out->id), "%s", row->id);
    out->revoked = row->revoked;
    out->expired = fleet_cert_expired(row, f->now);
    out->online = row->status == STORE_ONLINE && !row->revoked && !out->expired;
    out->announces = announces(row->addresses, f->resource);
    out->drain = explain_drain_state(c, row);
    struct fleet_node_view view;
    if (c->fleet != NULL && fleet_node_view(c->fleet, row->id, &view) && view.allowlist_reported) {
        out->allowlist_reported = true;
        out->allowlist_version = view.allowlist_version;
    }
    return 0;
}

static int
gather_peer(struct controller *c, struct explain_facts *f, struct ztr_err *err)
{
    const char *at = strchr(f->tunneler, '@');
    struct store_peer *peer = calloc(1, sizeof(*peer));
    if (peer == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    struct ztr_err lookup = {0};
    int rc = store_peer_get_by_trust_domain(c->store, at + 1, peer, &lookup);
    if (rc == 0) {
        f->peer_found = true;
        snprintf(f->peer_name, sizeof(f->peer_name), "%s", peer->name);
        snprintf(f->peer_state, sizeof(f->peer_state), "%s", peer->state);
        rc = store_fed_grant_list(c->store, peer->id, visit_fed_grant,
                                  &(struct gather){c, f}, err);
    } else if (lookup.code == ZTR_E_NOT_FOUND) {
        rc = 0;
    } else {
        *err = lookup;
    }
    free(peer);
    return rc;
}

int
explain_gather(struct controller *c, struct explain_facts *f, struct ztr_err *err)
{
    struct gather g = {c, f};
    f->now = clock_wall_s(c->clock);
    f->allowlist_version = store_allowlist_version(c->store);
    struct store_node *row = malloc(sizeof(*row));
    if (row == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int rc = 0;
    if (f->federated) {
        rc = gather_peer(c, f, err);
    } else {
        struct ztr_err lookup = {0};
        if (store_node_get_by_spiffe_id(c->store, f->spiffe_id, row, &lookup) == 0) {
            f->tunneler_found = true;
            snprintf(f->tunneler_id, sizeof(f->tunneler_id), "%s", row->id);
            f->enrolled_at = row->enrolled_at;
            f->cert_not_after = row->cert_not_after;
            f->revoked = row->revoked;
        } else if (lookup.code != ZTR_E_NOT_FOUND) {
            *err = lookup;
            rc = -1;
        }
    }
    if (rc == 0)
        rc = store_resource_list(c->store, visit_resource, &g, err);
    if (rc == 0)
        rc = store_binding_list(c->store, visit_binding, &g, err);
    if (rc == 0)
        rc = store_allowlist_list(c->store, visit_grant, &g, err);
    for (size_t i = 0; rc == 0 && i < f->connector_count; i++)
        rc = gather_connector(c, f, &f->connectors[i], row, err);
    free(row);
    return rc;
}

/* ---- judging ------------------------------------------------------------------ */

static void
iso_time(int64_t t, char *out, size_t cap)
{
    time_t when = (time_t)t;
    struct tm tm;
    if (gmtime_r(&when, &tm) == NULL || strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, cap, "%lld", (long long)t);
}

static void add_step(json_t *steps, const char *step, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
add_step(json_t *steps, const char *step, bool ok, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    json_t *item = json_pack("{s:s, s:b, s:s}", "step", step, "ok", ok, "detail", detail);
    /* A step never goes missing: a verdict over fewer steps could allow. */
    if (item == NULL)
        item = json_pack("{s:s, s:b, s:s}", "step", step, "ok", 0, "detail",
                         "(detail could not be encoded)");
    json_array_append_new(steps, item);
}

/* Appends "name" to a comma-separated list in buf. */
static void
list_add(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
list_add(char *buf, size_t cap, const char *fmt, ...)
{
    size_t used = strlen(buf);
    if (used + 3 >= cap)
        return;
    if (used > 0) {
        memcpy(buf + used, ", ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, cap - used, fmt, ap);
    va_end(ap);
}

static void
judge_tunneler(const struct explain_facts *f, json_t *steps)
{
    if (f->federated) {
        if (!f->peer_found) {
            add_step(steps, EXPLAIN_STEP_PEER, false,
                     "unknown trust domain: no federation peer holds the trust domain of %s",
                     f->tunneler);
            return;
        }
        bool in_force = strcmp(f->peer_state, "accepted") == 0 ||
                        strcmp(f->peer_state, "enrolled") == 0 ||
                        strcmp(f->peer_state, "active") == 0 ||
                        strcmp(f->peer_state, "degraded") == 0;
        add_step(steps, EXPLAIN_STEP_PEER, in_force, "%s%s is a tunneler of federation peer %s (%s)",
                 in_force ? "" : "federation peer not in force: ", f->spiffe_id, f->peer_name,
                 f->peer_state);
        return;
    }
    if (!f->tunneler_found) {
        add_step(steps, EXPLAIN_STEP_TUNNELER, false,
                 "unknown tunneler: no tunneler named %s is enrolled", f->tunneler);
        return;
    }
    char at[32];
    iso_time(f->enrolled_at, at, sizeof(at));
    add_step(steps, EXPLAIN_STEP_TUNNELER, true, "%s is enrolled (node %s, since %s)",
             f->tunneler, f->tunneler_id, at);
    iso_time(f->cert_not_after, at, sizeof(at));
    if (f->cert_not_after == 0)
        add_step(steps, EXPLAIN_STEP_CERTIFICATE, false,
                 "no certificate: %s was never issued one", f->tunneler);
    else if (f->cert_not_after <= f->now)
        add_step(steps, EXPLAIN_STEP_CERTIFICATE, false,
                 "certificate expired: %s's certificate was valid until %s", f->tunneler, at);
    else
        add_step(steps, EXPLAIN_STEP_CERTIFICATE, true, "valid until %s (%llds left)", at,
                 (long long)(f->cert_not_after - f->now));
    add_step(steps, EXPLAIN_STEP_REVOKED, !f->revoked,
             f->revoked ? "revoked: %s was revoked and may reach nothing" : "%s is not revoked",
             f->tunneler);
}

static void
judge_grant(const struct explain_facts *f, json_t *steps)
{
    if (!f->federated) {
        if (f->grant_found)
            add_step(steps, EXPLAIN_STEP_GRANT, true,
                     "%s is allowed to %s (allowlist version %lld)", f->tunneler, f->resource,
                     (long long)f->allowlist_version);
        else
            add_step(steps, EXPLAIN_STEP_GRANT, false, "no grant: %s is not allowed to %s",
                     f->tunneler, f->resource);
        return;
    }
    if (!f->fed_grant_found) {
        add_step(steps, EXPLAIN_STEP_GRANT, false, "no grant: %s has no federation grant for %s",
                 f->tunneler, f->resource);
        return;
    }
    char until[32] = "never";
    if (f->fed_grant_expires_at != 0)
        iso_time(f->fed_grant_expires_at, until, sizeof(until));
    bool live = f->fed_grant_expires_at == 0 || f->fed_grant_expires_at > f->now;
    bool any_source = strcmp(f->fed_grant_cidrs, "[]") == 0 || f->fed_grant_cidrs[0] == '\0';
    add_step(steps, EXPLAIN_STEP_GRANT, live,
             "%sfederation grant %s: %s to %s, source_cidrs %s, expires %s",
             live ? "" : "grant expired: ", f->fed_grant_id, f->tunneler, f->resource,
             any_source ? "any" : f->fed_grant_cidrs, until);
}

static const char *
connector_state(const struct explain_connector *k)
{
    if (k->id[0] == '\0')
        return "not enrolled";
    if (k->revoked)
        return "REVOKED";
    if (k->expired)
        return "EXPIRED";
    return k->online ? "ONLINE" : "OFFLINE";
}

/* ONLINE and announcing the resource: tunnelers are handed it. */
static bool
usable(const struct explain_connector *k)
{
    return k->online && k->announces;
}

static void
judge_connectors(const struct explain_facts *f, json_t *steps)
{
    char list[768] = "";
    size_t online = 0, serving = 0;
    for (size_t i = 0; i < f->connector_count; i++) {
        const struct explain_connector *k = &f->connectors[i];
        online += k->online;
        serving += usable(k);
        list_add(list, sizeof(list), "%s %s%s", k->name, connector_state(k),
                 k->online && !k->announces ? " (does not announce the resource)" : "");
    }
    if (f->bound_count > f->connector_count)
        list_add(list, sizeof(list), "%zu more not shown", f->bound_count - f->connector_count);
    if (serving > 0)
        add_step(steps, EXPLAIN_STEP_CONNECTORS, true, "%zu of %zu bound connectors serve %s: %s",
                 serving, f->bound_count, f->resource, list);
    else if (online > 0)
        add_step(steps, EXPLAIN_STEP_CONNECTORS, false,
                 "no ONLINE connector announces %s (check its RESOURCES): %s", f->resource, list);
    else
        add_step(steps, EXPLAIN_STEP_CONNECTORS, false, "no bound connector is ONLINE: %s", list);

    /* Only the connectors tunnelers are handed matter from here on. */
    char applied[768] = "";
    size_t current = 0, unreported = 0;
    for (size_t i = 0; i < f->connector_count; i++) {
        const struct explain_connector *k = &f->connectors[i];
        if (!usable(k))
            continue;
        if (!k->allowlist_reported) {
            unreported++;
            list_add(applied, sizeof(applied), "%s not reported", k->name);
        } else if (k->allowlist_version >= f->allowlist_version) {
            current++;
            list_add(applied, sizeof(applied), "%s at %lld", k->name,
                     (long long)k->allowlist_version);
        } else {
            list_add(applied, sizeof(applied), "%s behind at %lld", k->name,
                     (long long)k->allowlist_version);
        }
    }
    if (serving == 0)
        return;
    if (current + unreported > 0)
        add_step(steps, EXPLAIN_STEP_ALLOWLIST, true,
                 "allowlist version %lld (the one with this decision) applied: %s",
                 (long long)f->allowlist_version, applied);
    else
        add_step(steps, EXPLAIN_STEP_ALLOWLIST, false,
                 "allowlist not applied: no serving connector has applied version %lld yet: %s",
                 (long long)f->allowlist_version, applied);

    char drain[768] = "";
    size_t draining = 0, reported = 0;
    for (size_t i = 0; i < f->connector_count; i++) {
        const struct explain_connector *k = &f->connectors[i];
        if (!usable(k))
            continue;
        reported += k->drain != EXPLAIN_DRAIN_NOT_REPORTED;
        draining += k->drain == EXPLAIN_DRAIN_YES;
        if (k->drain == EXPLAIN_DRAIN_YES)
            list_add(drain, sizeof(drain), "%s", k->name);
    }
    if (reported == 0)
        add_step(steps, EXPLAIN_STEP_DRAINING, true, "draining: not reported");
    else if (draining < serving)
        add_step(steps, EXPLAIN_STEP_DRAINING, true, "%zu of %zu serving connectors draining%s%s",
                 draining, serving, draining > 0 ? ": " : "", drain);
    else
        add_step(steps, EXPLAIN_STEP_DRAINING, false,
                 "every serving connector is draining: %s", drain);
}

static json_t *
connectors_json(const struct explain_facts *f)
{
    json_t *list = json_array();
    for (size_t i = 0; i < f->connector_count; i++) {
        const struct explain_connector *k = &f->connectors[i];
        json_t *item = json_pack("{s:s, s:s, s:b, s:o, s:o, s:n}", "name", k->name, "status",
                                 connector_state(k), "announces", k->announces,
                                 "allowlist_version",
                                 k->allowlist_reported
                                     ? json_integer((json_int_t)k->allowlist_version)
                                     : json_null(),
                                 "applied",
                                 k->allowlist_reported
                                     ? json_boolean(k->allowlist_version >= f->allowlist_version)
                                     : json_null(),
                                 "draining");
        if (k->drain != EXPLAIN_DRAIN_NOT_REPORTED)
            json_object_set_new(item, "draining", json_boolean(k->drain == EXPLAIN_DRAIN_YES));
        json_array_append_new(list, item);
    }
    return list;
}

/* verdict and first_failure from the steps as they stand. */
static void
judge_verdict(json_t *result)
{
    size_t i;
    json_t *step;
    json_t *first = NULL;
    json_array_foreach(json_object_get(result, "steps"), i, step) {
        if (!json_is_true(json_object_get(step, "ok"))) {
            first = step;
            break;
        }
    }
    json_object_set_new(result, "verdict", json_string(first == NULL ? "allow" : "deny"));
    json_object_set_new(result, "first_failure",
                        first == NULL ? json_null()
                                      : json_pack("{s:O, s:O}", "step",
                                                  json_object_get(first, "step"), "detail",
                                                  json_object_get(first, "detail")));
}

json_t *
explain_evaluate(const struct explain_facts *f)
{
    json_t *steps = json_array();
    if (steps == NULL)
        return NULL;
    judge_tunneler(f, steps);
    if (!f->resource_found) {
        add_step(steps, EXPLAIN_STEP_RESOURCE, false, "unknown resource: no resource named %s",
                 f->resource);
    } else {
        add_step(steps, EXPLAIN_STEP_RESOURCE, true, "%s exists", f->resource);
        if (f->bound_count == 0)
            add_step(steps, EXPLAIN_STEP_BINDINGS, false,
                     "no connector: resource %s is bound to no connector", f->resource);
        else {
            char names[768] = "";
            for (size_t i = 0; i < f->connector_count; i++)
                list_add(names, sizeof(names), "%s", f->connectors[i].name);
            add_step(steps, EXPLAIN_STEP_BINDINGS, true, "%s is bound to %zu connector%s: %s",
                     f->resource, f->bound_count, f->bound_count == 1 ? "" : "s", names);
        }
    }
    judge_grant(f, steps);
    if (f->resource_found && f->bound_count > 0)
        judge_connectors(f, steps);
    json_t *result = json_pack("{s:s, s:s, s:s, s:b, s:I, s:o, s:o}", "tunneler", f->tunneler,
                               "resource", f->resource, "spiffe_id", f->spiffe_id, "federated",
                               f->federated, "allowlist_version",
                               (json_int_t)f->allowlist_version, "steps", steps, "connectors",
                               connectors_json(f));
    if (result != NULL)
        judge_verdict(result);
    return result;
}

void
explain_add_connector_answer(json_t *result, const char *connector, const json_t *answer,
                             const char *failure)
{
    json_t *steps = json_object_get(result, "steps");
    json_t *asked = json_pack("{s:s, s:b}", "connector", connector, "answered", answer != NULL);
    if (answer == NULL) {
        add_step(steps, EXPLAIN_STEP_CONNECTOR, false, "%s: %s", connector, failure);
        json_object_set_new(asked, "error", json_string(failure));
    } else {
        const char *verdict = json_string_value(json_object_get(answer, "verdict"));
        const char *reason = json_string_value(json_object_get(answer, "reason"));
        const json_t *age = json_object_get(answer, "confirmed_age_seconds");
        char age_text[48] = "never confirmed";
        if (json_is_integer(age))
            snprintf(age_text, sizeof(age_text), "confirmed %llds ago",
                     (long long)json_integer_value(age));
        const char *target = json_string_value(json_object_get(answer, "target"));
        bool allow = strcmp(verdict, "allow") == 0;
        add_step(steps, EXPLAIN_STEP_CONNECTOR, allow,
                 "%s%s would %s: allowlist version %lld (%s%s), tunneler %s, target %s%s%s",
                 allow ? "" : "connector refuses: ", connector, allow ? "allow" : "deny",
                 (long long)json_integer_value(json_object_get(answer, "allowlist_version")),
                 age_text, json_is_true(json_object_get(answer, "stale")) ? ", stale" : "",
                 json_is_true(json_object_get(answer, "permitted")) ? "permitted"
                 : json_is_true(json_object_get(answer, "on_allowlist"))
                     ? "on the allowlist, not for this resource"
                     : "not on the allowlist",
                 target[0] != '\0' ? target : "none", allow ? "" : ": ", allow ? "" : reason);
        static const char *const copied[] = {"allowlist_version", "allowlist_epoch",
                                             "confirmed_age_seconds", "stale", "on_allowlist",
                                             "permitted", "serves", "target", "verdict",
                                             "reason", NULL};
        for (size_t i = 0; copied[i] != NULL; i++) {
            json_t *value = json_object_get(answer, copied[i]);
            json_object_set(asked, copied[i], value != NULL ? value : json_null());
        }
    }
    json_object_set_new(result, "connector_answer", asked);
    judge_verdict(result);
}

/* ---- the route ------------------------------------------------------------------ */

struct explain_wait {
    json_t *result;
    char connector[STORE_NAME_MAX + 1];
    struct http_deferred *deferred;
};

static void
respond_result(struct http_response *response, json_t *result)
{
    char *text = json_dumps(result, JSON_COMPACT);
    json_decref(result);
    if (text == NULL) {
        http_respond_error(response, 500, "cannot encode the response");
        return;
    }
    response->status = 200;
    response->content_type = "application/json";
    response->body = text;
    response->body_len = strlen(text);
}

static void
connector_answered(void *ctx, const json_t *answer, const char *failure)
{
    struct explain_wait *wait = ctx;
    explain_add_connector_answer(wait->result, wait->connector, answer, failure);
    struct http_response response = {.status = 200};
    respond_result(&response, wait->result);
    http_deferred_respond(wait->deferred, &response);
    free(wait);
}

/* A query parameter (percent-decoded) into out: 1 present, 0 absent, -1 bad
 * (admin.c's parser, so both read a query the same way). */
static int
query_param(const char *query, const char *name, char *out, size_t cap)
{
    struct ztr_err ignored = {0};
    return admin_query_get(query, name, out, cap, &ignored);
}

static int
required_param(const char *query, const char *name, char *out, size_t cap, struct ztr_err *err)
{
    int found = query_param(query, name, out, cap);
    if (found < 0)
        return ztr_err_set(err, ZTR_E_INVALID, "query parameter \"%s\" is malformed or too long",
                           name);
    if (found == 0 || out[0] == '\0')
        return ztr_err_set(err, ZTR_E_INVALID, "query parameter \"%s\" is required", name);
    return 0;
}

/* As resource names are made (admin.c): nothing that needs quoting. */
static int
check_resource_param(const char *name, struct ztr_err *err)
{
    for (const char *p = name; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return ztr_err_set(err, ZTR_E_INVALID,
                               "query parameter \"resource\" may hold only letters, digits, "
                               "'-', '_' and '.'");
    return 0;
}

static void
respond_error(struct http_response *response, const struct ztr_err *err)
{
    int status = err->code == ZTR_E_INVALID ? 400 : 500;
    if (status >= 500)
        log_error("admin request failed", "error=\"%s\"", err->msg);
    http_respond_error(response, status, err->msg);
}

/* The asked connector's node id, or "" when no connector of that name is
 * enrolled. */
static int
connector_node_id(struct controller *c, const char *name, char *id, size_t cap, bool *online,
                  struct ztr_err *err)
{
    struct pki_spiffe_id spiffe;
    if (pki_spiffe_id_build(c->settings.trust_domain, PKI_ROLE_CONNECTOR, name, &spiffe, err) !=
        0) {
        ztr_err_wrap(err, "query parameter \"connector\"");
        err->code = ZTR_E_INVALID;
        return -1;
    }
    struct store_node *row = malloc(sizeof(*row));
    if (row == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    struct ztr_err lookup = {0};
    int rc = 0;
    id[0] = '\0';
    *online = false;
    if (store_node_get_by_spiffe_id(c->store, spiffe.uri, row, &lookup) == 0) {
        snprintf(id, cap, "%s", row->id);
        *online = row->status == STORE_ONLINE && !row->revoked;
    } else if (lookup.code != ZTR_E_NOT_FOUND) {
        *err = lookup;
        rc = -1;
    }
    free(row);
    return rc;
}

void
explain_route(struct controller *c, const struct http_request *request,
              struct http_response *response)
{
    struct explain_facts *f = calloc(1, sizeof(*f));
    char tunneler[STORE_SPIFFE_ID_MAX + 1], connector[STORE_NAME_MAX + 1];
    struct ztr_err err = {0};
    if (f == NULL) {
        http_respond_error(response, 500, "out of memory");
        return;
    }
    int has_connector = query_param(request->query, "connector", connector, sizeof(connector));
    if (required_param(request->query, "tunneler", tunneler, sizeof(tunneler), &err) != 0 ||
        required_param(request->query, "resource", f->resource, sizeof(f->resource), &err) != 0 ||
        check_resource_param(f->resource, &err) != 0 ||
        explain_parse_tunneler(tunneler, c->settings.trust_domain, f, &err) != 0 ||
        (has_connector < 0 || (has_connector > 0 && connector[0] == '\0')
             ? ztr_err_set(&err, ZTR_E_INVALID,
                           "query parameter \"connector\" is malformed or empty")
             : 0) != 0 ||
        explain_gather(c, f, &err) != 0) {
        respond_error(response, &err);
        free(f);
        return;
    }
    json_t *result = explain_evaluate(f);
    free(f);
    if (result == NULL) {
        http_respond_error(response, 500, "out of memory");
        return;
    }
    if (has_connector <= 0) {
        respond_result(response, result);
        return;
    }
    char id[STORE_ID_MAX + 1];
    bool online = false;
    if (connector_node_id(c, connector, id, sizeof(id), &online, &err) != 0) {
        json_decref(result);
        respond_error(response, &err);
        return;
    }
    const char *spiffe_id = json_string_value(json_object_get(result, "spiffe_id"));
    const char *resource = json_string_value(json_object_get(result, "resource"));
    if (id[0] == '\0') {
        explain_add_connector_answer(result, connector, NULL, "no connector of that name is enrolled");
    } else if (!online || c->ctl == NULL) {
        explain_add_connector_answer(result, connector, NULL, "connector is OFFLINE");
    } else {
        struct explain_wait *wait = calloc(1, sizeof(*wait));
        struct http_deferred *deferred = wait != NULL ? http_defer(response) : NULL;
        if (deferred == NULL) {
            free(wait);
            json_decref(result);
            http_respond_error(response, 500, "cannot wait for the connector");
            return;
        }
        wait->result = result;
        wait->deferred = deferred;
        snprintf(wait->connector, sizeof(wait->connector), "%s", connector);
        if (ctl_server_explain_ask(c->ctl, id, spiffe_id, resource, EXPLAIN_CONNECTOR_TIMEOUT_MS,
                                   connector_answered, wait, &err) == 0)
            return; /* answered from connector_answered */
        /* Not asked (no live session here, or one request already waits):
         * the answer is the reason, now. */
        connector_answered(wait, NULL, err.msg);
        return;
    }
    respond_result(response, result);
}
