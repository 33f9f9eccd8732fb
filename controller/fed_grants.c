/*
 * Federation grants (docs/FEDERATION.md, "Grants and the data plane").
 *
 * A grant gives one tunneler of a peer trust domain one of our resources,
 * optionally only from some source CIDRs and until an expiry. Our
 * connectors get, in their allowlist, the grants and the bundles of the
 * peers they name (and nothing of a peer without a grant); the peer gets,
 * over the federation link, each grant with the connectors serving its
 * resource, and hands them to the granted tunneler in its `connectors`
 * list, under the name `<resource>@<our trust domain>`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/metrics.h"
#include "controller/controller.h"
#include "controller/federation.h"
#include "net/net.h"

/* A peer whose grants are in force: its bundle is known and the operator
 * has not suspended or revoked it (a degraded peer keeps them: it only
 * stopped answering heartbeats). */
static bool
peer_in_force(const struct store_peer *peer)
{
    return peer->bundle[0] != '\0' && peer->trust_domain[0] != '\0' &&
           (strcmp(peer->state, "accepted") == 0 || strcmp(peer->state, "enrolled") == 0 ||
            strcmp(peer->state, "active") == 0 || strcmp(peer->state, "degraded") == 0);
}

static bool
grant_live(const struct store_fed_grant *g, int64_t now)
{
    return g->expires_at == 0 || g->expires_at > now;
}

/* A grant's change as an event: "federation grant <id> <what>: resource=...
 * tunneler=..." (by the operator: kind admin; an expiry: kind federation). */
static void
grant_event(struct controller *c, const struct store_fed_grant *g, const char *what,
            const char *extra)
{
    bool expiry = strcmp(what, "expired") == 0;
    char detail[STORE_DETAIL_MAX + 1];
    snprintf(detail, sizeof(detail), "federation grant %s %s: resource=%s tunneler=%.300s%s",
             g->id, what, g->resource, g->tunneler, extra != NULL ? extra : "");
    struct ztr_err err = {0};
    if (store_event_add_from(c->store, expiry ? "federation_grant_expiry" : "admin",
                             expiry ? "federation" : "admin", "", detail, &err) != 0)
        log_warn("federation event not recorded", "error=\"%s\"", err.msg);
}

/* ---- operator commands -------------------------------------------------------- */

static int
check_cidrs(const char *const *cidrs, size_t count, json_t **out, struct ztr_err *err)
{
    if (count > FED_GRANT_CIDRS_MAX)
        return ztr_err_set(err, ZTR_E_INVALID, "at most %d source CIDRs per grant",
                           FED_GRANT_CIDRS_MAX);
    json_t *list = json_array();
    for (size_t i = 0; i < count; i++) {
        struct net_cidr cidr;
        if (net_cidr_parse(cidrs[i], &cidr, err) != 0) {
            json_decref(list);
            return ztr_err_wrap(err, "--source-cidr");
        }
        json_array_append_new(list, json_string(cidrs[i]));
    }
    *out = list;
    return 0;
}

int
federation_grant(struct controller *c, const struct fed_grant_request *req,
                 struct store_fed_grant *out, struct ztr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (req->peer == NULL || req->resource == NULL || req->tunneler == NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "--peer, --resource and --tunneler are required");
    struct store_peer *peer = calloc(1, sizeof(*peer));
    if (peer == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int rc = store_peer_get_by_name(c->store, req->peer, peer, err);
    if (rc == 0 && strcmp(peer->state, "revoked") == 0)
        rc = ztr_err_set(err, ZTR_E_NOT_FOUND, "peer %s is revoked", req->peer);
    if (rc == 0 && peer->trust_domain[0] == '\0')
        rc = ztr_err_set(err, ZTR_E_INVALID,
                         "peer %s has not accepted yet: its trust domain is unknown", req->peer);
    struct pki_spiffe_id id;
    if (rc == 0 && pki_spiffe_id_parse(req->tunneler, &id, err) != 0)
        rc = ztr_err_wrap(err, "--tunneler");
    /* A grant names a tunneler of that peer: never one of ours, never a
     * connector or controller of theirs. */
    if (rc == 0 && strcmp(id.trust_domain, peer->trust_domain) != 0)
        rc = ztr_err_set(err, ZTR_E_INVALID,
                         "--tunneler %s is not in peer %s's trust domain %s", req->tunneler,
                         peer->name, peer->trust_domain);
    if (rc == 0 && (id.role != PKI_ROLE_TUNNELER || id.name[0] == '\0'))
        rc = ztr_err_set(err, ZTR_E_INVALID,
                         "--tunneler %s is not a tunneler (spiffe://%s/tunneler/<name>)",
                         req->tunneler, peer->trust_domain);
    if (rc == 0 && req->expires_at != 0 && req->expires_at <= clock_wall_s(c->clock))
        rc = ztr_err_set(err, ZTR_E_INVALID, "--expires is in the past");
    json_t *cidrs = NULL;
    if (rc == 0)
        rc = check_cidrs(req->cidrs, req->cidr_count, &cidrs, err);
    if (rc == 0) {
        char *text = json_dumps(cidrs, JSON_COMPACT);
        snprintf(out->peer_id, sizeof(out->peer_id), "%s", peer->id);
        snprintf(out->resource, sizeof(out->resource), "%s", req->resource);
        snprintf(out->tunneler, sizeof(out->tunneler), "%s", id.uri);
        snprintf(out->source_cidrs, sizeof(out->source_cidrs), "%s", text != NULL ? text : "[]");
        out->expires_at = req->expires_at;
        free(text);
        rc = store_fed_grant_put(c->store, out, err);
    }
    json_decref(cidrs);
    if (rc == 0) {
        log_info("federation grant", "id=%s peer=%s resource=%s tunneler=%s source_cidrs=%s "
                 "expires_at=%lld", out->id, peer->name, out->resource, out->tunneler,
                 out->source_cidrs, (long long)out->expires_at);
        char extra[STORE_DETAIL_MAX];
        snprintf(extra, sizeof(extra), " peer=%s source_cidrs=%.300s expires_at=%lld",
                 peer->name, out->source_cidrs, (long long)out->expires_at);
        grant_event(c, out, "granted", extra);
        federation_changed(c, false);
    }
    free(peer);
    return rc;
}

int
federation_grant_revoke(struct controller *c, const char *id, struct store_fed_grant *out,
                        struct ztr_err *err)
{
    TRY(store_fed_grant_delete(c->store, id, out, err));
    log_info("federation grant revoked", "id=%s resource=%s tunneler=%s", out->id,
             out->resource, out->tunneler);
    grant_event(c, out, "revoked", NULL);
    federation_changed(c, false);
    return 0;
}

json_t *
federation_grant_json(const struct store_fed_grant *g, const char *peer_name, int64_t now)
{
    json_t *cidrs = json_loads(g->source_cidrs, 0, NULL);
    const char *state = grant_live(g, now) ? "active" : "expired";
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:s}", "id", g->id, "peer",
                     peer_name, "peer_id", g->peer_id, "resource", g->resource, "tunneler",
                     g->tunneler, "source_cidrs", json_is_array(cidrs) ? cidrs : json_array(),
                     "expires_at", (json_int_t)g->expires_at, "created_at",
                     (json_int_t)g->created_at, "state", state);
}

struct grant_list_walk {
    struct controller *c;
    json_t *list;
    json_t *peer_names; /* id -> name */
    int64_t now;
};

static int
name_peer(void *ctx, const struct store_peer *peer)
{
    json_object_set_new(ctx, peer->id, json_string(peer->name));
    return 0;
}

static int
list_grant(void *ctx, const struct store_fed_grant *g)
{
    struct grant_list_walk *w = ctx;
    const char *name = json_string_value(json_object_get(w->peer_names, g->peer_id));
    json_array_append_new(w->list, federation_grant_json(g, name != NULL ? name : "", w->now));
    return 0;
}

json_t *
federation_grants_json(struct controller *c, const char *peer_name, struct ztr_err *err)
{
    struct grant_list_walk w = {c, json_array(), json_object(), clock_wall_s(c->clock)};
    const char *peer_id = NULL;
    struct store_peer *peer = NULL;
    int rc = store_peer_list(c->store, name_peer, w.peer_names, err);
    if (rc == 0 && peer_name != NULL && peer_name[0] != '\0') {
        peer = calloc(1, sizeof(*peer));
        rc = peer == NULL ? ztr_err_set(err, ZTR_E_NOMEM, "out of memory")
                          : store_peer_get_by_name(c->store, peer_name, peer, err);
        peer_id = peer != NULL ? peer->id : NULL;
    }
    if (rc == 0)
        rc = store_fed_grant_list(c->store, peer_id, list_grant, &w, err);
    free(peer);
    json_decref(w.peer_names);
    if (rc != 0) {
        json_decref(w.list);
        return NULL;
    }
    return w.list;
}

/* ---- what the data plane gets ----------------------------------------------------- */

struct snapshot_walk {
    struct controller *c;
    int64_t now;
    json_t *in_force;   /* peer id -> {trust_domain, bundle} of peers in force */
    json_t *peers_used; /* trust domain -> bundle, of peers with a live grant */
    json_t *grants;
};

static int
collect_peer(void *ctx, const struct store_peer *peer)
{
    struct snapshot_walk *w = ctx;
    if (peer_in_force(peer))
        json_object_set_new(w->in_force, peer->id,
                            json_pack("{s:s, s:s, s:s}", "trust_domain", peer->trust_domain,
                                      "bundle", peer->bundle, "name", peer->name));
    return 0;
}

static int
collect_fed_grant(void *ctx, const struct store_fed_grant *g)
{
    struct snapshot_walk *w = ctx;
    json_t *peer = json_object_get(w->in_force, g->peer_id);
    if (peer == NULL || !grant_live(g, w->now))
        return 0;
    json_object_set(w->peers_used, json_string_value(json_object_get(peer, "trust_domain")),
                    json_object_get(peer, "bundle"));
    json_t *cidrs = json_loads(g->source_cidrs, 0, NULL);
    json_t *entry = json_pack("{s:s, s:s, s:s}", "id", g->id, "spiffe_id", g->tunneler,
                              "resource", g->resource);
    if (json_array_size(cidrs) > 0)
        json_object_set(entry, "source_cidrs", cidrs);
    if (g->expires_at > 0)
        json_object_set_new(entry, "expires_at", json_integer(g->expires_at));
    json_decref(cidrs);
    json_array_append_new(w->grants, entry);
    return 0;
}

static json_t *
bundle_list(const json_t *by_trust_domain)
{
    json_t *list = json_array();
    const char *td;
    json_t *pem;
    json_object_foreach((json_t *)by_trust_domain, td, pem)
        json_array_append_new(list, json_pack("{s:s, s:O}", "trust_domain", td, "bundle", pem));
    return list;
}

/* Our tunneler's SPIFFE ID -> {connectors: {id -> entry}, peers: {td -> bundle}}
 * from what peers in force said they granted. */
static void
collect_remote(struct snapshot_walk *w, const char *peer_id, const json_t *peer, json_t *remote)
{
    char *text = NULL;
    struct ztr_err err = {0};
    if (store_peer_remote_grants(w->c->store, peer_id, &text, &err) != 0)
        return;
    json_t *grants = json_loads(text, 0, NULL);
    free(text);
    const char *td = json_string_value(json_object_get(peer, "trust_domain"));
    size_t i, j;
    json_t *g, *k;
    json_array_foreach(grants, i, g) {
        json_int_t expires = json_integer_value(json_object_get(g, "expires_at"));
        if (expires != 0 && expires <= w->now)
            continue;
        const char *tunneler = json_string_value(json_object_get(g, "tunneler"));
        const char *resource = json_string_value(json_object_get(g, "resource"));
        if (tunneler == NULL || resource == NULL)
            continue;
        json_t *mine = json_object_get(remote, tunneler);
        if (mine == NULL) {
            mine = json_pack("{s:o, s:o}", "connectors", json_object(), "peers", json_object());
            json_object_set_new(remote, tunneler, mine);
        }
        char name[STORE_NAME_MAX + PKI_TRUST_DOMAIN_MAX + 2];
        snprintf(name, sizeof(name), "%s@%s", resource, td);
        json_array_foreach(json_object_get(g, "connectors"), j, k) {
            char key[STORE_ID_MAX + PKI_TRUST_DOMAIN_MAX + 2];
            snprintf(key, sizeof(key), "%s/%s", td, json_string_value(json_object_get(k, "id")));
            json_t *entry = json_object_get(json_object_get(mine, "connectors"), key);
            if (entry == NULL) {
                entry = json_pack("{s:s, s:O, s:O, s:[]}", "id", key, "spiffe_id",
                                  json_object_get(k, "spiffe_id"), "address",
                                  json_object_get(k, "address"), "resources");
                json_object_set_new(json_object_get(mine, "connectors"), key, entry);
            }
            json_array_append_new(json_object_get(entry, "resources"), json_string(name));
        }
        json_object_set(json_object_get(mine, "peers"), td, json_object_get(peer, "bundle"));
    }
    json_decref(grants);
}

void
federation_snapshot(struct controller *c, struct fed_snapshot *out)
{
    struct ztr_err err = {0};
    struct snapshot_walk w = {c, clock_wall_s(c->clock), json_object(), json_object(),
                              json_array()};
    out->remote = json_object();
    if (store_peer_list(c->store, collect_peer, &w, &err) != 0 ||
        store_fed_grant_list(c->store, NULL, collect_fed_grant, &w, &err) != 0)
        log_warn("federation grants not read", "error=\"%s\"", err.msg);
    const char *peer_id;
    json_t *peer;
    json_object_foreach(w.in_force, peer_id, peer)
        collect_remote(&w, peer_id, peer, out->remote);
    out->peers = bundle_list(w.peers_used);
    out->grants = w.grants;
    json_decref(w.in_force);
    json_decref(w.peers_used);
}

void
federation_snapshot_free(struct fed_snapshot *snap)
{
    json_decref(snap->peers);
    json_decref(snap->grants);
    json_decref(snap->remote);
    memset(snap, 0, sizeof(*snap));
}

int
federation_remote_connectors(const struct fed_snapshot *snap, const char *tunneler_id,
                             json_t *entries, json_t **peers)
{
    *peers = NULL;
    json_t *mine = json_object_get(snap->remote, tunneler_id);
    if (mine == NULL)
        return 0;
    const char *key;
    json_t *entry;
    json_object_foreach(json_object_get(mine, "connectors"), key, entry)
        json_array_append(entries, entry);
    *peers = bundle_list(json_object_get(mine, "peers"));
    return 0;
}

/* ---- what a peer is told ------------------------------------------------------------ */

struct peer_grants_walk {
    const char *peer_id;
    int64_t now;
    const json_t *serving;
    json_t *list;
};

static int
add_peer_grant(void *ctx, const struct store_fed_grant *g)
{
    struct peer_grants_walk *w = ctx;
    if (!grant_live(g, w->now))
        return 0;
    json_t *connectors = json_array();
    size_t i, j;
    json_t *k, *r;
    json_array_foreach(w->serving, i, k) {
        json_array_foreach(json_object_get(k, "served"), j, r) {
            if (json_is_string(r) && strcmp(json_string_value(r), g->resource) == 0) {
                json_array_append_new(connectors,
                                      json_pack("{s:O, s:O, s:O}", "id", json_object_get(k, "id"),
                                                "spiffe_id", json_object_get(k, "spiffe_id"),
                                                "address", json_object_get(k, "address")));
                break;
            }
        }
    }
    json_t *entry = json_pack("{s:s, s:s, s:s, s:o}", "id", g->id, "tunneler", g->tunneler,
                              "resource", g->resource, "connectors", connectors);
    if (g->expires_at > 0)
        json_object_set_new(entry, "expires_at", json_integer(g->expires_at));
    json_array_append_new(w->list, entry);
    return 0;
}

json_t *
federation_grants_for_peer(struct controller *c, const char *peer_id, const json_t *serving)
{
    struct peer_grants_walk w = {peer_id, clock_wall_s(c->clock), serving, json_array()};
    struct ztr_err err = {0};
    if (store_fed_grant_list(c->store, peer_id, add_peer_grant, &w, &err) != 0)
        log_warn("federation grants not read", "error=\"%s\"", err.msg);
    return w.list;
}

/* What the peer granted our tunnelers: kept only where it names our
 * tunnelers and its own connectors; the rest is dropped with a line. */
int
federation_remote_grants_apply(struct controller *c, const struct store_peer *peer,
                               const json_t *msg, bool *changed, struct ztr_err *err)
{
    *changed = false;
    json_t *kept = json_array();
    size_t i, j, dropped = 0;
    json_t *g, *k;
    json_array_foreach(json_object_get(msg, "grants"), i, g) {
        struct pki_spiffe_id tunneler;
        const char *resource = json_string_value(json_object_get(g, "resource"));
        struct ztr_err why = {0};
        if (pki_spiffe_id_parse(json_string_value(json_object_get(g, "tunneler")), &tunneler,
                                &why) != 0 ||
            strcmp(tunneler.trust_domain, c->settings.trust_domain) != 0 ||
            tunneler.role != PKI_ROLE_TUNNELER || resource == NULL || strlen(resource) == 0 ||
            strlen(resource) > STORE_NAME_MAX || strchr(resource, '@') != NULL) {
            dropped++;
            continue;
        }
        json_t *connectors = json_array();
        json_array_foreach(json_object_get(g, "connectors"), j, k) {
            struct pki_spiffe_id cid;
            const char *address = json_string_value(json_object_get(k, "address"));
            const char *id = json_string_value(json_object_get(k, "id"));
            struct sockaddr_storage sa;
            socklen_t sa_len;
            if (id == NULL || strlen(id) > STORE_ID_MAX || address == NULL ||
                pki_spiffe_id_parse(json_string_value(json_object_get(k, "spiffe_id")), &cid,
                                    &why) != 0 ||
                strcmp(cid.trust_domain, peer->trust_domain) != 0 ||
                cid.role != PKI_ROLE_CONNECTOR ||
                net_resolve(address, &sa, &sa_len, &why) != 0) {
                dropped++;
                continue;
            }
            json_array_append_new(connectors, json_pack("{s:s, s:s, s:s}", "id", id, "spiffe_id",
                                                        cid.uri, "address", address));
        }
        json_t *entry = json_pack("{s:s, s:s, s:o}", "tunneler", tunneler.uri, "resource",
                                  resource, "connectors", connectors);
        json_int_t expires = json_integer_value(json_object_get(g, "expires_at"));
        if (expires > 0)
            json_object_set_new(entry, "expires_at", json_integer(expires));
        json_array_append_new(kept, entry);
    }
    if (dropped > 0)
        log_warn("federation grants entries dropped", "peer=%s dropped=%zu reason=\"not our "
                 "tunneler or not the peer's connector\"", peer->name, dropped);
    char *text = json_dumps(kept, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(kept);
    if (text == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    char *previous = NULL;
    int rc = store_peer_remote_grants(c->store, peer->id, &previous, err);
    if (rc == 0 && strcmp(previous, text) != 0) {
        rc = store_peer_set_remote_grants(c->store, peer->id, text, err);
        if (rc == 0) {
            *changed = true;
            log_info("federation grants received", "peer=%s grants=%zu", peer->name,
                     json_array_size(json_object_get(msg, "grants")) - 0);
        }
    }
    free(previous);
    free(text);
    return rc;
}

/* ---- expiry --------------------------------------------------------------------------- */

struct expiry_walk {
    struct controller *c;
    int64_t from, to;       /* expired in (from, to] */
    int64_t next;           /* earliest expiry after to, 0 = none */
    size_t expired;
};

static int
check_expiry(void *ctx, const struct store_fed_grant *g)
{
    struct expiry_walk *w = ctx;
    if (g->expires_at == 0)
        return 0;
    if (g->expires_at > w->from && g->expires_at <= w->to) {
        w->expired++;
        log_info("federation grant expired", "id=%s resource=%s tunneler=%s", g->id,
                 g->resource, g->tunneler);
        grant_event(w->c, g, "expired", NULL);
    } else if (g->expires_at > w->to && (w->next == 0 || g->expires_at < w->next)) {
        w->next = g->expires_at;
    }
    return 0;
}

void
federation_grants_tick(struct controller *c, int64_t *checked_at, int64_t *next_expiry)
{
    int64_t now = clock_wall_s(c->clock);
    if (*checked_at != 0 && (*next_expiry == 0 || now < *next_expiry))
        return;
    struct expiry_walk w = {c, *checked_at, now, 0, 0};
    struct ztr_err err = {0};
    if (store_fed_grant_list(c->store, NULL, check_expiry, &w, &err) != 0) {
        log_warn("federation grants not read", "error=\"%s\"", err.msg);
        return;
    }
    *checked_at = now;
    *next_expiry = w.next;
    if (w.expired > 0)
        federation_changed(c, true);
}

/* ---- metrics ------------------------------------------------------------------------- */

struct grant_counts {
    int64_t now;
    uint64_t active, expired;
};

static int
count_grant(void *ctx, const struct store_fed_grant *g)
{
    struct grant_counts *n = ctx;
    if (grant_live(g, n->now))
        n->active++;
    else
        n->expired++;
    return 0;
}

void
federation_grant_metrics(const struct controller *c, struct metrics *m)
{
    struct grant_counts n = {.now = clock_wall_s(c->clock)};
    struct ztr_err err = {0};
    if (store_fed_grant_list(c->store, NULL, count_grant, &n, &err) != 0)
        log_warn("federation metrics incomplete", "error=\"%s\"", err.msg);
    metrics_family(m, "ztr_federation_grants", "gauge",
                   "Federation grants to peers' tunnelers, by state.");
    metrics_u64(m, "ztr_federation_grants", "state=\"active\"", n.active);
    metrics_u64(m, "ztr_federation_grants", "state=\"expired\"", n.expired);
}
