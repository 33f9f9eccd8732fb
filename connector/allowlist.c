#include "connector/allowlist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "ctl/ctlmsg.h"
#include "net/net.h"
#include "pki/pki.h"

#define ALLOWLIST_FILE_MAX (16 * 1024 * 1024)

/* Kept as the JSON the controller sent (tunnelers: [{spiffe_id, resources}])
 * plus an index object spiffe_id → resources for O(1) lookups. */
struct allowlist {
    char epoch[CTLMSG_EPOCH_LEN + 1]; /* "" before any epoch (or from an older controller) */
    int64_t version;
    int64_t received_at;
    json_t *tunnelers;   /* the list as received (for saving) */
    json_t *index;       /* spiffe_id → array of resource names */
    /* Federation: grants to tunnelers of peer trust domains and the peers'
     * bundles, as received; grant_index: spiffe_id → array of grants. */
    json_t *grants;
    json_t *peers;
    json_t *grant_index;
};

struct allowlist *
allowlist_new(void)
{
    struct allowlist *list = calloc(1, sizeof(*list));
    if (list == NULL)
        return NULL;
    list->tunnelers = json_array();
    list->index = json_object();
    list->grants = json_array();
    list->peers = json_array();
    list->grant_index = json_object();
    return list;
}

void
allowlist_free(struct allowlist *list)
{
    if (list == NULL)
        return;
    json_decref(list->tunnelers);
    json_decref(list->index);
    json_decref(list->grants);
    json_decref(list->peers);
    json_decref(list->grant_index);
    free(list);
}

static int
build_index(const json_t *tunnelers, json_t **index, struct ztr_err *err)
{
    if (!json_is_array(tunnelers) || json_array_size(tunnelers) > ALLOWLIST_MAX_ENTRIES)
        return ztr_err_set(err, ZTR_E_INVALID, "allowlist: tunnelers must be a bounded list");
    json_t *built = json_object();
    size_t i;
    const json_t *entry;
    json_array_foreach(tunnelers, i, entry) {
        const char *id = json_string_value(json_object_get(entry, "spiffe_id"));
        json_t *resources = json_object_get(entry, "resources");
        if (id == NULL || !json_is_array(resources)) {
            json_decref(built);
            return ztr_err_set(err, ZTR_E_INVALID, "allowlist: entry %zu is malformed", i);
        }
        json_object_set(built, id, resources);
    }
    *index = built;
    return 0;
}

/* Grants name tunnelers of another trust domain, each CIDR parses: a list
 * that does not is refused whole rather than enforced in part. */
static int
build_grant_index(const json_t *grants, json_t **index, struct ztr_err *err)
{
    if (grants != NULL && (!json_is_array(grants) ||
                           json_array_size(grants) > ALLOWLIST_MAX_ENTRIES))
        return ztr_err_set(err, ZTR_E_INVALID, "allowlist: grants must be a bounded list");
    json_t *built = json_object();
    size_t i, j;
    json_t *grant, *cidr;
    json_array_foreach(grants, i, grant) {
        struct pki_spiffe_id id;
        const char *uri = json_string_value(json_object_get(grant, "spiffe_id"));
        int rc = uri != NULL && json_is_string(json_object_get(grant, "resource")) &&
                         json_is_string(json_object_get(grant, "id"))
                     ? pki_spiffe_id_parse(uri, &id, err)
                     : ztr_err_set(err, ZTR_E_INVALID, "malformed");
        json_array_foreach(json_object_get(grant, "source_cidrs"), j, cidr) {
            struct net_cidr parsed;
            if (rc == 0)
                rc = net_cidr_parse(json_is_string(cidr) ? json_string_value(cidr) : "", &parsed,
                                    err);
        }
        if (rc != 0) {
            json_decref(built);
            return ztr_err_wrap(err, "allowlist: grant %zu", i);
        }
        json_t *mine = json_object_get(built, uri);
        if (mine == NULL) {
            mine = json_array();
            json_object_set_new(built, uri, mine);
        }
        json_array_append(mine, grant);
    }
    *index = built;
    return 0;
}

static int
replace(struct allowlist *list, const char *epoch, int64_t version, int64_t received_at,
        json_t *tunnelers, json_t *grants, json_t *peers, struct ztr_err *err)
{
    json_t *index = NULL, *grant_index = NULL;
    if (strlen(epoch) > CTLMSG_EPOCH_LEN)
        return ztr_err_set(err, ZTR_E_INVALID, "allowlist: epoch longer than %d characters",
                           CTLMSG_EPOCH_LEN);
    if (peers != NULL && !json_is_array(peers))
        return ztr_err_set(err, ZTR_E_INVALID, "allowlist: peers must be a list");
    TRY(build_index(tunnelers, &index, err));
    if (build_grant_index(grants, &grant_index, err) != 0) {
        json_decref(index);
        return -1;
    }
    snprintf(list->epoch, sizeof(list->epoch), "%s", epoch);
    json_decref(list->tunnelers);
    json_decref(list->index);
    json_decref(list->grants);
    json_decref(list->peers);
    json_decref(list->grant_index);
    list->tunnelers = json_incref(tunnelers);
    list->index = index;
    list->grants = grants != NULL ? json_incref(grants) : json_array();
    list->peers = peers != NULL ? json_incref(peers) : json_array();
    list->grant_index = grant_index;
    list->version = version;
    list->received_at = received_at;
    return 0;
}

int
allowlist_apply(struct allowlist *list, const json_t *msg, int64_t received_at,
                struct ztr_err *err)
{
    int64_t version = json_integer_value(json_object_get(msg, "version"));
    const char *epoch = json_string_value(json_object_get(msg, "epoch"));
    if (epoch == NULL)
        epoch = "";
    /* Within one controller run versions only grow: an older list arriving
     * late must not undo a revocation that a newer one carried. A new epoch
     * is a controller restarted, perhaps on a restored database numbering
     * from lower again: its list wins whatever its version. */
    if (strcmp(epoch, list->epoch) == 0 && version < list->version)
        return ztr_err_set(err, ZTR_E_INVALID,
                           "allowlist version %lld is older than %lld (epoch %s)",
                           (long long)version, (long long)list->version,
                           epoch[0] != '\0' ? epoch : "none");
    return replace(list, epoch, version, received_at, json_object_get(msg, "tunnelers"),
                   json_object_get(msg, "grants"), json_object_get(msg, "peers"), err);
}

struct allowlist *
allowlist_clone(const struct allowlist *list)
{
    struct allowlist *copy = allowlist_new();
    struct ztr_err err;
    if (copy != NULL &&
        replace(copy, list->epoch, list->version, list->received_at, list->tunnelers,
                list->grants, list->peers, &err) != 0) {
        allowlist_free(copy);
        return NULL;
    }
    return copy;
}

int
allowlist_save(const struct allowlist *list, const char *dir, struct ztr_err *err)
{
    char path[4096];
    TRY(file_path_join(path, sizeof(path), dir, ALLOWLIST_FILE, err));
    json_t *doc = json_pack("{s:s, s:I, s:I, s:O, s:O, s:O}", "epoch", list->epoch, "version",
                            (json_int_t)list->version, "received_at",
                            (json_int_t)list->received_at, "tunnelers", list->tunnelers,
                            "grants", list->grants, "peers", list->peers);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "cannot serialise the allowlist");
    int rc = file_write_atomic(path, text, strlen(text), 0600, err);
    free(text);
    return rc;
}

int
allowlist_load(struct allowlist *list, const char *dir, struct ztr_err *err)
{
    char path[4096];
    TRY(file_path_join(path, sizeof(path), dir, ALLOWLIST_FILE, err));
    char *text;
    size_t len;
    struct ztr_err probe;
    if (file_read_all(path, ALLOWLIST_FILE_MAX, &text, &len, &probe) != 0) {
        if (probe.code == ZTR_E_NOT_FOUND)
            return 0;
        *err = probe;
        return -1;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return ztr_err_set(err, ZTR_E_INVALID, "%s: not an allowlist (%s)", path, jerr.text);
    }
    /* A file from before epochs has none: the first push is then a new
     * epoch and is taken whatever its version. */
    const char *epoch = json_string_value(json_object_get(doc, "epoch"));
    int rc = replace(list, epoch != NULL ? epoch : "",
                     json_integer_value(json_object_get(doc, "version")),
                     json_integer_value(json_object_get(doc, "received_at")),
                     json_object_get(doc, "tunnelers"), json_object_get(doc, "grants"),
                     json_object_get(doc, "peers"), err);
    json_decref(doc);
    if (rc != 0)
        return ztr_err_wrap(err, "%s", path);
    return 0;
}

bool
allowlist_contains(const struct allowlist *list, const char *spiffe_id)
{
    return json_object_get(list->index, spiffe_id) != NULL ||
           json_object_get(list->grant_index, spiffe_id) != NULL;
}

static bool
grant_expired(const json_t *grant, int64_t now)
{
    json_int_t expires = json_integer_value(json_object_get(grant, "expires_at"));
    return expires > 0 && expires <= now;
}

static bool
source_allowed(const json_t *grant, const struct sockaddr_storage *source)
{
    const json_t *cidrs = json_object_get(grant, "source_cidrs");
    if (json_array_size(cidrs) == 0)
        return true;
    size_t i;
    const json_t *text;
    json_array_foreach(cidrs, i, text) {
        struct net_cidr cidr;
        if (source != NULL && net_cidr_parse(json_string_value(text), &cidr, NULL) == 0 &&
            net_cidr_contains(&cidr, source))
            return true;
    }
    return false;
}

bool
allowlist_grant_permits(const struct allowlist *list, const char *spiffe_id, const char *resource,
                        const struct sockaddr_storage *source, int64_t now, char *reason,
                        size_t cap)
{
    const json_t *grants = json_object_get(list->grant_index, spiffe_id);
    const json_t *closest = NULL;
    size_t i;
    const json_t *grant;
    json_array_foreach(grants, i, grant) {
        if (strcmp(json_string_value(json_object_get(grant, "resource")), resource) != 0)
            continue;
        if (!grant_expired(grant, now) && source_allowed(grant, source))
            return true;
        if (closest == NULL || !grant_expired(grant, now))
            closest = grant;
    }
    if (closest == NULL) {
        snprintf(reason, cap, "resource \"%s\" is not granted to this tunneler%s", resource,
                 grants == NULL ? " (no live grant: revoked, expired or never given)" : "");
    } else if (grant_expired(closest, now)) {
        snprintf(reason, cap, "grant %s expired at %lld",
                 json_string_value(json_object_get(closest, "id")),
                 (long long)json_integer_value(json_object_get(closest, "expires_at")));
    } else {
        char ip[64] = "?";
        if (source != NULL)
            net_addr_text(source, ip, sizeof(ip));
        char *cidrs = json_dumps(json_object_get(closest, "source_cidrs"), JSON_COMPACT);
        snprintf(reason, cap, "source %s is outside grant %s's source_cidrs %s", ip,
                 json_string_value(json_object_get(closest, "id")), cidrs != NULL ? cidrs : "");
        free(cidrs);
    }
    return false;
}

bool
allowlist_grant_live(const struct allowlist *list, const char *spiffe_id, int64_t now)
{
    size_t i;
    const json_t *grant;
    json_array_foreach(json_object_get(list->grant_index, spiffe_id), i, grant)
        if (!grant_expired(grant, now))
            return true;
    return false;
}

int64_t
allowlist_next_expiry(const struct allowlist *list, int64_t after)
{
    int64_t next = 0;
    size_t i;
    const json_t *grant;
    json_array_foreach(list->grants, i, grant) {
        json_int_t expires = json_integer_value(json_object_get(grant, "expires_at"));
        if (expires > after && (next == 0 || expires < next))
            next = expires;
    }
    return next;
}

const json_t *
allowlist_peers(const struct allowlist *list)
{
    return list->peers;
}

size_t
allowlist_grant_count(const struct allowlist *list)
{
    return json_array_size(list->grants);
}

bool
allowlist_permits(const struct allowlist *list, const char *spiffe_id, const char *resource)
{
    const json_t *resources = json_object_get(list->index, spiffe_id);
    size_t i;
    const json_t *name;
    json_array_foreach(resources, i, name)
        if (json_is_string(name) && strcmp(json_string_value(name), resource) == 0)
            return true;
    return false;
}

int64_t
allowlist_version(const struct allowlist *list)
{
    return list->version;
}

const char *
allowlist_epoch(const struct allowlist *list)
{
    return list->epoch;
}

int64_t
allowlist_received_at(const struct allowlist *list)
{
    return list->received_at;
}

size_t
allowlist_size(const struct allowlist *list)
{
    return json_object_size(list->index);
}
