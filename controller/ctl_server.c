/* The control-plane listener: one long-lived mTLS session per agent.
 *
 * A session without a client certificate may only enroll, or re-authenticate
 * a node whose certificate expired by proof of possession of its key
 * (reauth.c): one challenge per session, single use. A session with a
 * verified SVID (role connector or tunneler, known and not revoked) says
 * hello, heartbeats, renews, and receives the bundle, its allowlist
 * (connectors) or its connector list (tunnelers) whenever they change.
 *
 * A valid certificate is not enough: the node must present the one the
 * controller issued it last (or, for STORE_RENEWAL_GRACE_S after a renewal
 * and until the new one is used, the one before). Any other certificate of
 * the node — a copy of an old key — is refused and recorded as a security
 * event; certificates are told apart by their keys, which renewal makes
 * fresh every time. */
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/config.h"
#include "base/log.h"
#include "ctl/ctlmsg.h"
#include "ctl/frame.h"
#include "ctl/stream.h"
#include "net/net.h"
#include "net/tls.h"
#include "controller/controller.h"
#include "controller/federation.h"

/* SESSIONS_MAX when the settings leave it 0. */
#define SESSIONS_MAX_DEFAULT 20000
/* A session must say what it is for within this long after its handshake. */
#define FIRST_MESSAGE_TIMEOUT_MS 10000
#define IDENTITY_KEY_MAX 4096
/* Until a peer has shown a certificate it may only enroll, and the largest
 * enroll a real agent sends is under 3 KiB (an 81-byte token, a 128-byte
 * name, a ~560-byte CSR, 32 IPv6 "[addr]:port" entries); a length header
 * above this bound closes the session before anything is allocated for it.
 * Authenticated sessions get the protocol's FRAME_MAX_PAYLOAD. */
#define PREAUTH_FRAME_MAX (16 * 1024)
/* One node needs one control session; a few more cover a reconnect while
 * the old stream has not timed out yet. More is a copy of its key at work,
 * or a node holding the controller's descriptors: refused. */
#define NODE_SESSIONS_MAX 4
/* Sessions by node id: what one node's sessions are is asked at every
 * admission, and a walk over all sessions made each one cost O(sessions). */
#define NODE_INDEX_BUCKETS 16384
/* An agent is issued about two certificates per SVID_TTL (renewal at
 * 50 % ± 10 %). A node issued this many within a quarter of SVID_TTL is
 * renewing in a loop, or a copy of its key is: the renewal waits. */
#define RENEWALS_PER_QUARTER_TTL 3
/* Sources (and nodes) whose minute of strikes is remembered; when more
 * strike at once the quietest are forgotten first. */
#define SOURCE_TABLE_MAX 65536

/* S_REAUTH: an unauthenticated session that was given a re-authentication
 * challenge and may now send one `reauth`. */
enum session_state { S_HANDSHAKE, S_ENROLL_ONLY, S_REAUTH, S_AWAIT_HELLO, S_ACTIVE, S_CLOSING };

/* What a session keeps of its node's row. The row itself is 5 KiB of
 * fixed-size text, most of which a session never reads; ten thousand
 * sessions hold this instead (the long texts allocated at their size). */
struct session_node {
    char id[STORE_ID_MAX + 1];
    char name[STORE_NAME_MAX + 1];
    char role[16];
    char cert_serial[STORE_SERIAL_MAX + 1];
    bool revoked;
    int status;
    int64_t last_seen;
    int64_t prev_cert_until;
    char *spiffe_id;
    char *addresses;                  /* JSON, as stored */
    char *allowed_addresses;          /* JSON, as stored */
};

/* An explain_request sent to a connector: answered, timed out or its
 * session gone, done runs once and the ask is freed. */
struct explain_ask {
    struct session *session;
    char id[CTLMSG_EXPLAIN_ID_LEN + 1];
    ev_timer timer;
    ctl_explain_done_fn done;
    void *ctx;
};

struct session {
    struct ctl_server *server;
    struct ctl_stream *stream;
    enum session_state state;
    struct session_node node;
    enum pki_role role;
    int64_t bundle_version_sent;
    int64_t allowlist_version_sent;
    /* The change (allowlist version) pushed to this connector as one: only
     * its report counts toward the change's times, not a report of the
     * version handed to a connector that just connected. */
    int64_t change_version;
    char *connectors_sent;            /* last connectors list sent (JSON text) */
    /* Connectors: the operator's drain as this session's connector last
     * heard it (from its hello, then from our drain messages). */
    bool drain_sent;
    int64_t drain_deadline_sent;
    int64_t opened_ms;                /* monotonic */
    int64_t last_frame_ms;
    /* The certificate this session stands for: the one it authenticated
     * with, then the last one renewed through it. */
    char key[PKI_KEY_FINGERPRINT_MAX + 1];
    char serial[STORE_SERIAL_MAX + 1];
    int64_t not_after;                /* that certificate's: no heartbeat after it */
    /* S_REAUTH: the challenge given (cleared once used) and the node named. */
    char challenge[2 * CTLMSG_REAUTH_CHALLENGE_BYTES + 1];
    char reauth_node[STORE_ID_MAX + 1];
    char *reauth_spiffe_id;
    struct explain_ask *explain;      /* the one explain_request awaiting its answer */
    bool refused;                     /* never admitted: its close changes no status */
    bool in_fleet;                    /* said hello: fleet_hello was called */
    /* Counted in server->unauthenticated until it has said hello. */
    bool holds_source;
    struct quota_key source;
    struct session *prev, *next;
    struct session *node_next;        /* same bucket of the node index */
    bool indexed;
};

static void
session_node_release(struct session_node *node)
{
    free(node->spiffe_id);
    free(node->addresses);
    free(node->allowed_addresses);
    node->spiffe_id = node->addresses = node->allowed_addresses = NULL;
}

/* The session's node from the store, by the SPIFFE ID it proved. */
static int
session_node_load(struct store *store, struct session_node *node, const char *spiffe_id,
                  struct ztr_err *err)
{
    struct store_node *row = malloc(sizeof(*row));
    if (row == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int rc = store_node_get_by_spiffe_id(store, spiffe_id, row, err);
    session_node_release(node);
    if (rc == 0) {
        snprintf(node->id, sizeof(node->id), "%s", row->id);
        snprintf(node->name, sizeof(node->name), "%s", row->name);
        snprintf(node->role, sizeof(node->role), "%s", row->role);
        snprintf(node->cert_serial, sizeof(node->cert_serial), "%s", row->cert_serial);
        node->revoked = row->revoked;
        node->status = row->status;
        node->last_seen = row->last_seen;
        node->prev_cert_until = row->prev_cert_until;
        node->spiffe_id = strdup(row->spiffe_id);
        node->addresses = strdup(row->addresses);
        node->allowed_addresses = strdup(row->allowed_addresses);
        if (node->spiffe_id == NULL || node->addresses == NULL ||
            node->allowed_addresses == NULL) {
            session_node_release(node);
            rc = ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        }
    }
    free(row);
    return rc;
}

/* The store row fleet.c takes, rebuilt from what the session keeps. */
static void
session_row(const struct session *s, struct store_node *row)
{
    memset(row, 0, sizeof(*row));
    snprintf(row->id, sizeof(row->id), "%s", s->node.id);
    snprintf(row->name, sizeof(row->name), "%s", s->node.name);
    snprintf(row->role, sizeof(row->role), "%s", s->node.role);
    row->status = s->node.status;
    row->last_seen = s->node.last_seen;
}

struct ctl_server {
    struct controller *c;
    int listen_fd;
    uint16_t port;
    ev_io accept_io;
    ev_timer sweep_timer;
    int64_t swept_at_ms; /* monotonic; 0 before the first sweep */
    struct tls_ctx *tls;
    int64_t identity_renew_at;
    struct session *sessions;
    size_t session_count;
    struct session *by_node[NODE_INDEX_BUCKETS];
    /* What peers cost before they prove anything: sessions not yet past
     * hello per source, denied enrollments per source, hellos per node. */
    struct quota *unauthenticated;
    struct quota *enroll_failures;
    struct quota *hellos;
    size_t sessions_max;
    uint64_t handshakes_per_source;
    uint64_t enroll_failures_per_source;
    uint64_t hellos_per_node;
    struct log_limit accept_log;
    struct log_limit rate_log;
    int64_t connectors_version;
    /* New at each start and sent with every versioned push: versions come
     * from the database, and a restored copy numbers from lower again. A
     * restore cannot be seen from inside the database; a restart is when
     * it takes effect, so each run is an epoch of its own. */
    char epoch[CTLMSG_EPOCH_LEN + 1];
    char address[160];             /* CONTROLLER_LISTEN with the port bound, for the others */
    /* Controllers on one database (PostgreSQL): what the others changed
     * arrives on this socket (store_changes_open); reopened after a loss. */
    ev_io changes_io;
    ev_timer changes_retry;
    bool changes_push;      /* a "push" arrived: one push_all after reading them all */
    bool changes_released;  /* a "released": take back what has a session here */
    int64_t beat_ok_ms;     /* monotonic time of the last beat stored; 0 before */
};

/* ---- the node index --------------------------------------------------------- */

static size_t
node_bucket(const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    return h & (NODE_INDEX_BUCKETS - 1);
}

static void
index_add(struct ctl_server *server, struct session *s)
{
    size_t b = node_bucket(s->node.id);
    s->node_next = server->by_node[b];
    server->by_node[b] = s;
    s->indexed = true;
}

static void
index_remove(struct ctl_server *server, struct session *s)
{
    if (!s->indexed)
        return;
    for (struct session **link = &server->by_node[node_bucket(s->node.id)]; *link != NULL;
         link = &(*link)->node_next)
        if (*link == s) {
            *link = s->node_next;
            break;
        }
    s->indexed = false;
}

/* The first indexed session of node id at or after from (NULL: none). */
static struct session *
node_session_from(struct session *from, const char *id)
{
    for (struct session *o = from; o != NULL; o = o->node_next)
        if (strcmp(o->node.id, id) == 0)
            return o;
    return NULL;
}

#define FOR_EACH_NODE_SESSION(server, id, o)                                          \
    for (struct session *o = node_session_from((server)->by_node[node_bucket(id)], id); \
         o != NULL; o = node_session_from(o->node_next, id))

/* ---- sending -------------------------------------------------------------- */

/* A session stops counting against its source once its node said hello
 * (or when it ends). */
static void
release_source(struct session *s)
{
    if (s->holds_source)
        quota_leave(s->server->unauthenticated, &s->source);
    s->holds_source = false;
}

static void
session_close(struct session *s, const char *reason)
{
    if (s->state == S_CLOSING)
        return;
    s->state = S_CLOSING;
    ctl_stream_close(s->stream, reason);
}

/* Sends msg (and drops the reference); a peer that cannot take it is closed. */
static void
session_send(struct session *s, json_t *msg)
{
    if (msg == NULL || s->state == S_CLOSING) {
        json_decref(msg);
        return;
    }
    struct ztr_err err = {0};
    int rc = ctl_stream_send(s->stream, msg, &err);
    if (rc != 0) {
        log_warn("control message not sent", "node=%s peer=%s error=\"%s\"", s->node.id,
                 ctl_stream_peer_addr(s->stream), err.msg);
        session_close(s, err.msg);
        return;
    }
    s->server->c->counters.frames_out++;
}

static void
session_fail(struct session *s, const char *code, const char *message)
{
    session_send(s, ctlmsg_error(code, message));
    session_close(s, message);
}

/* ---- what each agent should have ------------------------------------------ */

static void
push_bundle(struct session *s)
{
    struct controller *c = s->server->c;
    int64_t version = ca_set_bundle_version(c->cas);
    if (s->bundle_version_sent == version)
        return;
    char *pem;
    size_t len;
    struct ztr_err err;
    if (ca_set_bundle_pem(c->cas, &pem, &len, &err) != 0)
        return;
    session_send(s, json_pack("{s:s, s:s, s:I}", "type", "bundle", "bundle", pem, "version",
                              (json_int_t)version));
    free(pem);
    s->bundle_version_sent = version;
}

/* What every agent should have, read from the store once per push round:
 * pushing to N sessions must cost one pass over the tables, not N (a
 * connector's hello with 10 000 tunneler sessions connected used to stall
 * the loop for seconds). */
struct push_snapshot {
    json_t *grants;       /* tunneler name -> [resources] */
    json_t *connectors;   /* [{id, spiffe_id, address, served}] usable connectors */
    json_t *revoked;      /* tunneler name -> true */
    json_t *bound;        /* connector name -> {resource: true}, the operator's bindings */
    json_t *drains;       /* connector id -> operator's drain deadline (absent: none) */
    json_t *allowlist;    /* the connectors' allowlist entries, built once */
    int64_t allowlist_version;
    struct fed_snapshot fed; /* federation: grants, peers' bundles, peers' connectors */
};

static int
collect_grant(void *ctx, const struct store_grant *grant)
{
    struct push_snapshot *snap = ctx;
    json_t *list = json_object_get(snap->grants, grant->tunneler);
    if (list == NULL) {
        list = json_array();
        json_object_set_new(snap->grants, grant->tunneler, list);
    }
    json_array_append_new(list, json_string(grant->resource));
    return 0;
}

static int
collect_binding(void *ctx, const struct store_binding *binding)
{
    struct push_snapshot *snap = ctx;
    json_t *resources = json_object_get(snap->bound, binding->connector);
    if (resources == NULL) {
        resources = json_object();
        json_object_set_new(snap->bound, binding->connector, resources);
    }
    json_object_set_new(resources, binding->resource, json_true());
    return 0;
}

static int
collect_node(void *ctx, const struct store_node *node)
{
    struct push_snapshot *snap = ctx;
    if (strcmp(node->role, "tunneler") == 0) {
        if (node->revoked)
            json_object_set_new(snap->revoked, node->name, json_true());
        return 0;
    }
    if (node->revoked)
        return 0;
    if (node->drain == STORE_DRAIN_OPERATOR)
        json_object_set_new(snap->drains, node->id, json_integer(node->drain_deadline));
    json_t *advert = json_loads(node->addresses, 0, NULL);
    json_t *data = json_object_get(advert, "data_listen");
    json_t *served = json_object_get(advert, "resources");
    json_t *targets = json_object_get(advert, "targets");
    if (!json_is_array(targets) || json_array_size(targets) != json_array_size(served))
        targets = NULL;
    if (!json_is_string(data) || !json_is_array(served)) {
        json_decref(advert);
        return 0;
    }
    /* A connector serves only what it announces AND the operator bound to
     * it: announcing a resource must not be enough to receive its traffic. */
    json_t *bound = json_object_get(snap->bound, node->name);
    json_t *kept = json_array();
    json_t *kept_targets = targets != NULL ? json_array() : NULL;
    size_t i;
    json_t *r;
    json_array_foreach(served, i, r) {
        if (!json_is_string(r) || json_object_get(bound, json_string_value(r)) == NULL)
            continue;
        json_array_append(kept, r);
        if (kept_targets != NULL)
            json_array_append(kept_targets, json_array_get(targets, i));
    }
    json_t *entry = json_pack("{s:s, s:s, s:O, s:o, s:o*}", "id", node->id, "spiffe_id",
                              node->spiffe_id, "address", data, "served", kept, "targets",
                              kept_targets);
    /* Draining (the operator's, or the connector's own before it stops):
     * tunnelers choose it only when no other serves the resource. */
    if (entry != NULL && node->drain != STORE_DRAIN_NONE)
        json_object_set_new(entry, "draining", json_true());
    json_array_append_new(snap->connectors, entry);
    json_decref(advert);
    return 0;
}

static void
snapshot_build(struct controller *c, struct push_snapshot *snap)
{
    struct ztr_err err;
    snap->grants = json_object();
    snap->connectors = json_array();
    snap->revoked = json_object();
    snap->allowlist = json_array();
    snap->bound = json_object();
    snap->drains = json_object();
    snap->allowlist_version = store_allowlist_version(c->store);
    store_allowlist_list(c->store, collect_grant, snap, &err);
    store_binding_list(c->store, collect_binding, snap, &err);
    store_node_list_pushed(c->store, collect_node, snap, &err);
    federation_snapshot(c, &snap->fed);
    const char *name;
    json_t *resources;
    json_object_foreach(snap->grants, name, resources) {
        struct pki_spiffe_id id;
        /* A revoked tunneler loses its grants everywhere at once. */
        if (json_object_get(snap->revoked, name) != NULL ||
            pki_spiffe_id_build(c->settings.trust_domain, PKI_ROLE_TUNNELER, name, &id, NULL) != 0)
            continue;
        json_array_append_new(snap->allowlist, json_pack("{s:s, s:O}", "spiffe_id", id.uri,
                                                         "resources", resources));
    }
}

static void
snapshot_free(struct push_snapshot *snap)
{
    json_decref(snap->grants);
    json_decref(snap->connectors);
    json_decref(snap->revoked);
    json_decref(snap->allowlist);
    json_decref(snap->bound);
    json_decref(snap->drains);
    federation_snapshot_free(&snap->fed);
}

/* A connector is told only of the grants to resources the operator bound
 * to it: an unbinding ends the streams it was carrying for them, and a
 * connector that serves (or claims) a resource it is not bound to
 * carries nothing for it. */
static json_t *
allowlist_for(const struct push_snapshot *snap, const char *connector)
{
    const json_t *bound = json_object_get(snap->bound, connector);
    json_t *entries = json_array();
    size_t i, j;
    json_t *entry, *r;
    json_array_foreach(snap->allowlist, i, entry) {
        json_t *kept = json_array();
        json_array_foreach(json_object_get(entry, "resources"), j, r)
            if (json_object_get(bound, json_string_value(r)) != NULL)
                json_array_append(kept, r);
        if (json_array_size(kept) > 0)
            json_array_append_new(entries, json_pack("{s:O, s:o}", "spiffe_id",
                                                     json_object_get(entry, "spiffe_id"),
                                                     "resources", kept));
        else
            json_decref(kept);
    }
    return entries;
}

static json_t *
fed_grants_for(const struct push_snapshot *snap, const char *connector)
{
    const json_t *bound = json_object_get(snap->bound, connector);
    json_t *kept = json_array();
    size_t i;
    json_t *grant;
    json_array_foreach(snap->fed.grants, i, grant)
        if (json_object_get(bound, json_string_value(json_object_get(grant, "resource"))) != NULL)
            json_array_append(kept, grant);
    return kept;
}

static void
push_allowlist(struct session *s, const struct push_snapshot *snap)
{
    if (s->allowlist_version_sent == snap->allowlist_version)
        return;
    json_t *msg = json_pack("{s:s, s:I, s:s, s:o}", "type", "allowlist", "version",
                            (json_int_t)snap->allowlist_version, "epoch", s->server->epoch,
                            "tunnelers", allowlist_for(snap, s->node.name));
    /* Only when federated: a connector of a release before grants would
     * refuse the list for its unknown fields. */
    if (msg != NULL && json_array_size(snap->fed.grants) > 0) {
        json_object_set_new(msg, "grants", fed_grants_for(snap, s->node.name));
        json_object_set(msg, "peers", snap->fed.peers);
    }
    session_send(s, msg);
    s->allowlist_version_sent = snap->allowlist_version;
}

/* Least privilege: a tunneler learns only the connectors it may use, each
 * with the resources it may reach there. */
static json_t *
connectors_for(const struct push_snapshot *snap, const char *tunneler)
{
    json_t *granted = json_object_get(snap->grants, tunneler);
    json_t *entries = json_array();
    size_t i, j, k;
    json_t *connector, *r, *g;
    json_array_foreach(snap->connectors, i, connector) {
        json_t *reachable = json_array();
        json_t *served_targets = json_object_get(connector, "targets");
        json_t *targets = served_targets != NULL ? json_array() : NULL;
        json_array_foreach(json_object_get(connector, "served"), j, r) {
            json_array_foreach(granted, k, g) {
                if (json_equal(r, g)) {
                    json_array_append(reachable, r);
                    if (targets != NULL)
                        json_array_append(targets, json_array_get(served_targets, j));
                    break;
                }
            }
        }
        if (json_array_size(reachable) > 0) {
            json_t *entry = json_pack("{s:O, s:O, s:O, s:o}", "id",
                                      json_object_get(connector, "id"), "spiffe_id",
                                      json_object_get(connector, "spiffe_id"), "address",
                                      json_object_get(connector, "address"), "resources",
                                      reachable);
            if (targets != NULL)
                json_object_set_new(entry, "targets", targets);
            /* Only while draining: a tunneler of an older release refuses
             * a list with a field it does not know. */
            if (json_is_true(json_object_get(connector, "draining")))
                json_object_set_new(entry, "draining", json_integer(1));
            json_array_append_new(entries, entry);
        } else {
            json_decref(reachable);
            json_decref(targets);
        }
    }
    return entries;
}

static void
push_connectors(struct session *s, const struct push_snapshot *snap)
{
    struct ctl_server *server = s->server;
    json_t *entries = connectors_for(snap, s->node.name);
    json_t *peers = NULL;
    struct pki_spiffe_id self;
    if (pki_spiffe_id_build(server->c->settings.trust_domain, PKI_ROLE_TUNNELER, s->node.name,
                            &self, NULL) == 0)
        federation_remote_connectors(&snap->fed, self.uri, entries, &peers);
    json_t *sent = json_pack("{s:O, s:O*}", "connectors", entries, "peers", peers);
    char *text = json_dumps(sent, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(sent);
    if (text != NULL && (s->connectors_sent == NULL || strcmp(text, s->connectors_sent) != 0)) {
        /* Versions only grow, across restarts too: milliseconds since the epoch. */
        int64_t version = clock_wall_ms(server->c->clock);
        if (version <= server->connectors_version)
            version = server->connectors_version + 1;
        server->connectors_version = version;
        json_t *msg = json_pack("{s:s, s:I, s:s, s:O}", "type", "connectors", "version",
                                (json_int_t)version, "epoch", server->epoch, "connectors",
                                entries);
        if (msg != NULL && peers != NULL)
            json_object_set(msg, "peers", peers);
        session_send(s, msg);
        free(s->connectors_sent);
        s->connectors_sent = text;
        text = NULL;
    }
    free(text);
    json_decref(entries);
    json_decref(peers);
}

/* The operator's drain or undrain, to the connector it names, when it
 * differs from what the connector last heard. */
static void
push_drain(struct session *s, const struct push_snapshot *snap)
{
    json_t *deadline = json_object_get(snap->drains, s->node.id);
    bool draining = deadline != NULL;
    int64_t at = draining ? json_integer_value(deadline) : 0;
    if (draining == s->drain_sent && at == s->drain_deadline_sent)
        return;
    json_t *msg = json_pack("{s:s, s:s}", "type", "drain", "state",
                            draining ? CTLMSG_DRAIN_DRAINING : CTLMSG_DRAIN_SERVING);
    if (msg != NULL && draining)
        json_object_set_new(msg, "deadline", json_integer(at));
    session_send(s, msg);
    s->drain_sent = draining;
    s->drain_deadline_sent = at;
}

static void
session_push_with(struct session *s, const struct push_snapshot *snap)
{
    if (s->state != S_ACTIVE)
        return;
    push_bundle(s);
    if (s->role == PKI_ROLE_CONNECTOR) {
        push_allowlist(s, snap);
        push_drain(s, snap);
    } else
        push_connectors(s, snap);
}

static void
session_push(struct session *s)
{
    struct push_snapshot snap;
    snapshot_build(s->server->c, &snap);
    session_push_with(s, &snap);
    snapshot_free(&snap);
}

void
ctl_server_push_all(struct ctl_server *server)
{
    struct push_snapshot snap;
    snapshot_build(server->c, &snap);
    /* A new version for connectors holding an older one is a change whose
     * apply time the fleet reports (changes.h). */
    unsigned behind = 0;
    for (struct session *s = server->sessions; s != NULL; s = s->next)
        if (s->state == S_ACTIVE && s->role == PKI_ROLE_CONNECTOR &&
            s->allowlist_version_sent > 0 &&
            s->allowlist_version_sent != snap.allowlist_version) {
            s->change_version = snap.allowlist_version;
            behind++;
        }
    if (behind > 0)
        changes_pushed(server->c->changes, snap.allowlist_version,
                       clock_wall_ms(server->c->clock), behind);
    for (struct session *s = server->sessions; s != NULL; s = s->next)
        session_push_with(s, &snap);
    federation_push_grants(server->c, snap.connectors);
    snapshot_free(&snap);
}

json_t *
ctl_server_serving(struct controller *c)
{
    struct push_snapshot snap;
    snapshot_build(c, &snap);
    json_t *serving = json_incref(snap.connectors);
    snapshot_free(&snap);
    return serving;
}

/* ---- which certificate a session stands for ------------------------------- */

static const char *
serial_or_unknown(const char *serial)
{
    return serial[0] != '\0' ? serial : "unknown";
}

/* Ends a session whose certificate is not (or no longer) one the node may
 * use: logged, and a "security" event for the operator. */
static void
refuse_superseded(struct session *s, const char *what)
{
    struct controller *c = s->server->c;
    const char *peer = ctl_stream_peer_addr(s->stream);
    log_warn(what, "node=%s serial=%s current_serial=%s peer=%s reason=\"superseded certificate\"",
             s->node.id, serial_or_unknown(s->serial), s->node.cert_serial, peer);
    char detail[STORE_DETAIL_MAX];
    snprintf(detail, sizeof(detail), "%s: superseded certificate serial=%s current_serial=%s peer=%s",
             what, serial_or_unknown(s->serial), s->node.cert_serial, peer);
    store_event_add(c->store, "security", s->node.id, detail, NULL);
    if (s->state == S_HANDSHAKE) {
        s->refused = true;
        s->state = S_ACTIVE; /* on_close then does not count a failed handshake */
    }
    session_fail(s, CTLMSG_E_PERMISSION_DENIED, "certificate superseded");
}

static bool
session_live(const struct session *s)
{
    return (s->state == S_AWAIT_HELLO || s->state == S_ACTIVE) && !s->refused;
}

/* Closes the node's live sessions whose certificate the store no longer
 * admits: after a replacing enrollment, or once the renewed certificate
 * ended its predecessor's grace. */
static void
close_superseded(struct ctl_server *server, const char *node_id)
{
    struct controller *c = server->c;
    FOR_EACH_NODE_SESSION(server, node_id, o) {
        if (!session_live(o) || o->key[0] == '\0')
            continue;
        struct store_cert_check check;
        struct ztr_err err;
        if (store_node_cert_state(c->store, node_id, o->key, &check, &err) == 0 &&
            check.state == STORE_CERT_SUPERSEDED) {
            struct store_node now;
            if (store_node_get(c->store, node_id, &now, &err) == 0)
                snprintf(o->node.cert_serial, sizeof(o->node.cert_serial), "%s",
                         now.cert_serial);
            refuse_superseded(o, "control session closed");
        }
    }
}

static size_t
node_session_count(const struct ctl_server *server, const struct session *except)
{
    size_t n = 0;
    FOR_EACH_NODE_SESSION(server, except->node.id, o)
        n += o != except && session_live(o);
    return n;
}

/* Two live sessions of one node with different keys: one of them is not
 * the node (or the node restarted across a renewal while its old stream
 * lingers). Either way an operator should look. */
static void
alert_other_keys(struct session *s)
{
    struct controller *c = s->server->c;
    FOR_EACH_NODE_SESSION(s->server, s->node.id, o) {
        if (o == s || !session_live(o) || strcmp(o->key, s->key) == 0)
            continue;
        const char *peer = ctl_stream_peer_addr(s->stream);
        const char *other_peer = ctl_stream_peer_addr(o->stream);
        log_warn("two control sessions of one node with different keys",
                 "node=%s serial=%s peer=%s other_serial=%s other_peer=%s", s->node.id,
                 serial_or_unknown(s->serial), peer, serial_or_unknown(o->serial), other_peer);
        char detail[STORE_DETAIL_MAX];
        snprintf(detail, sizeof(detail),
                 "two live control sessions with different keys: serial=%s peer=%s and "
                 "serial=%s peer=%s",
                 serial_or_unknown(s->serial), peer, serial_or_unknown(o->serial), other_peer);
        store_event_add(c->store, "alert", s->node.id, detail, NULL);
        return;
    }
}

/* ---- messages ------------------------------------------------------------- */

/* An address as a connector writes it ("10.0.0.5" or "10.0.0.5:7444") as
 * an IP; -1 when it names none. */
static int
address_ip(const json_t *item, struct pki_ip *ip)
{
    char host[128];
    uint16_t port;
    const char *text = json_string_value(item);
    if (text == NULL)
        return -1;
    if (config_parse_addr(text, host, sizeof(host), &port) != 0)
        snprintf(host, sizeof(host), "%s", text);
    return pki_ip_parse(host, ip);
}

static bool
address_allowed(const char *allowed_addresses, const struct pki_ip *ip)
{
    json_t *allowed = json_loads(allowed_addresses, 0, NULL);
    bool found = false;
    size_t i;
    json_t *item;
    json_array_foreach(allowed, i, item) {
        struct pki_ip a;
        if (address_ip(item, &a) == 0 && a.len == ip->len &&
            memcmp(a.bytes, ip->bytes, a.len) == 0) {
            found = true;
            break;
        }
    }
    json_decref(allowed);
    return found;
}

/* The IP SANs a renewal certifies: the advertised addresses the operator
 * allowed (its token's addresses, or those set on the node). A hello
 * alone cannot add an address to a certificate. */
static size_t
node_ips(const char *addresses, const char *allowed_addresses, struct pki_ip *ips, size_t max)
{
    json_t *advert = json_loads(addresses, 0, NULL);
    /* Enrollment stored a list; hello stores an object with "addresses". */
    json_t *list = json_is_array(advert) ? advert : json_object_get(advert, "addresses");
    size_t count = 0, i;
    json_t *item;
    json_array_foreach(list, i, item) {
        if (count < max && address_ip(item, &ips[count]) == 0 &&
            address_allowed(allowed_addresses, &ips[count]))
            count++;
    }
    json_decref(advert);
    return count;
}

size_t
ctl_server_node_ips(const struct store_node *node, struct pki_ip *ips, size_t max)
{
    return node_ips(node->addresses, node->allowed_addresses, ips, max);
}

/* Says once per changed announcement which announced addresses its
 * certificate will not name. */
static void
report_unallowed(struct session *s, const json_t *announced)
{
    struct controller *c = s->server->c;
    size_t i;
    json_t *item;
    json_array_foreach(announced, i, item) {
        struct pki_ip ip;
        if (address_ip(item, &ip) != 0 || address_allowed(s->node.allowed_addresses, &ip))
            continue;
        char text[64];
        pki_ip_format(&ip, text, sizeof(text));
        log_warn("announced address not allowed", "node=%s name=%s address=%s", s->node.id,
                 s->node.name, text);
        char detail[STORE_DETAIL_MAX + 1];
        snprintf(detail, sizeof(detail),
                 "announced address not allowed: connector=%s address=%s (not certified)",
                 s->node.name, text);
        store_event_add(c->store, "security", s->node.id, detail, NULL);
    }
}

struct bound_of {
    const char *connector;
    json_t *resources; /* resource -> true */
};

static int
collect_bound_of(void *ctx, const struct store_binding *binding)
{
    struct bound_of *b = ctx;
    if (strcmp(binding->connector, b->connector) == 0)
        json_object_set_new(b->resources, binding->resource, json_true());
    return 0;
}

/* Says once per changed announcement which announced resources the
 * operator did not bind to this connector: tunnelers will not be sent
 * there, and an operator should know that someone tried. */
static void
report_unbound(struct session *s, const json_t *announced)
{
    struct controller *c = s->server->c;
    struct ztr_err err = {0};
    struct bound_of b = {s->node.name, json_object()};
    if (store_binding_list(c->store, collect_bound_of, &b, &err) != 0) {
        log_warn("resource bindings not read", "node=%s error=\"%s\"", s->node.id, err.msg);
        json_decref(b.resources);
        return;
    }
    size_t i;
    json_t *r;
    json_array_foreach(announced, i, r) {
        const char *name = json_string_value(r);
        if (name == NULL || json_object_get(b.resources, name) != NULL)
            continue;
        log_warn("announced resource not bound", "node=%s name=%s resource=%s", s->node.id,
                 s->node.name, name);
        char detail[STORE_DETAIL_MAX + 1];
        snprintf(detail, sizeof(detail),
                 "announced resource not bound: connector=%s resource=%.64s (ignored)",
                 s->node.name, name);
        store_event_add(c->store, "security", s->node.id, detail, NULL);
    }
    json_decref(b.resources);
}

/* A node that starts sessions in a loop (or many copies of its key) makes
 * the controller write its status and push to it each time: bounded per
 * minute. */
static bool
hello_rate_limited(struct session *s)
{
    struct ctl_server *server = s->server;
    struct controller *c = server->c;
    struct quota_key key;
    quota_key_from_text(s->node.id, &key);
    int64_t now = clock_monotonic_ms(c->clock);
    if (quota_strike(server->hellos, &key, now) <= server->hellos_per_node)
        return false;
    c->counters.hellos_rate_limited++;
    int64_t left_s = (quota_window_left_ms(server->hellos, &key, now) + 999) / 1000;
    uint64_t suppressed = 0;
    if (log_limit_allow(&server->rate_log, now, &suppressed))
        log_warn("control session refused",
                 "node=%s peer=%s reason=\"too many sessions started\" limit_per_minute=%llu "
                 "retry_in_seconds=%lld suppressed=%llu",
                 s->node.id, ctl_stream_peer_addr(s->stream),
                 (unsigned long long)server->hellos_per_node, (long long)left_s,
                 (unsigned long long)suppressed);
    char message[128];
    snprintf(message, sizeof(message), "too many sessions started by this node; retry in %llds",
             (long long)left_s);
    s->refused = true;
    session_fail(s, CTLMSG_E_RATE_LIMITED, message);
    return true;
}

/* A connector's hello says whether it drains: 1 at the operator's word
 * (what it heard last, which the first push corrects), 2 because it is
 * stopping. A connector back from a stop no longer drains on its own. */
static void
hello_drain(struct session *s, json_int_t draining)
{
    struct ztr_err err = {0};
    s->drain_sent = draining == CTLMSG_HELLO_DRAINING_OPERATOR;
    /* A draining connector's deadline is unknown here: the push sends ours. */
    s->drain_deadline_sent = s->drain_sent ? -1 : 0;
    int rc = draining == CTLMSG_HELLO_DRAINING_STOPPING
                 ? store_node_set_drain(s->server->c->store, s->node.id, STORE_DRAIN_SHUTDOWN,
                                        0, NULL, &err)
                 : store_node_clear_shutdown_drain(s->server->c->store, s->node.id, NULL, &err);
    if (rc != 0)
        log_warn("connector drain not recorded", "node=%s error=\"%s\"", s->node.id, err.msg);
}

/* drain from a connector: it drains itself before it stops (SIGTERM), so
 * tunnelers stop choosing it. It names no node: only its own session's. */
static void
handle_drain(struct session *s, const json_t *msg)
{
    struct controller *c = s->server->c;
    const char *state = json_string_value(json_object_get(msg, "state"));
    if (s->role != PKI_ROLE_CONNECTOR || strcmp(state, CTLMSG_DRAIN_DRAINING) != 0) {
        session_fail(s, CTLMSG_E_BAD_REQUEST,
                     s->role != PKI_ROLE_CONNECTOR
                         ? "unexpected message"
                         : "drain: a connector may only announce that it drains");
        return;
    }
    int64_t deadline = json_integer_value(json_object_get(msg, "deadline"));
    struct ztr_err err = {0};
    bool changed = false;
    if (store_node_set_drain(c->store, s->node.id, STORE_DRAIN_SHUTDOWN, deadline, &changed,
                             &err) != 0) {
        log_warn("connector drain not recorded", "node=%s error=\"%s\"", s->node.id, err.msg);
        return;
    }
    log_info("connector draining before it stops", "node=%s name=%s deadline=%lld",
             s->node.id, s->node.name, (long long)deadline);
    if (changed)
        ctl_server_push_all(s->server);
}

static void
handle_hello(struct session *s, const json_t *msg)
{
    struct controller *c = s->server->c;
    const char *role = json_string_value(json_object_get(msg, "role"));
    if (hello_rate_limited(s))
        return;
    if (json_integer_value(json_object_get(msg, "version")) != CTLMSG_VERSION) {
        session_fail(s, CTLMSG_E_BAD_REQUEST, "unsupported protocol version");
        return;
    }
    if (strcmp(role, s->node.role) != 0) {
        session_fail(s, CTLMSG_E_BAD_REQUEST, "hello role does not match the certificate");
        return;
    }
    struct ztr_err err = {0};
    if (s->role == PKI_ROLE_CONNECTOR) {
        /* The addresses certified at enrollment stay unless hello names new
         * ones: renewals must keep the IP SANs tunnelers dial. */
        json_t *previous = json_loads(s->node.addresses, 0, NULL);
        json_t *addresses = json_object_get(msg, "addresses");
        if (addresses == NULL)
            addresses = json_is_array(previous) ? previous
                                                : json_object_get(previous, "addresses");
        json_t *advert = json_pack("{s:O?, s:O?, s:O?, s:O?}", "addresses", addresses,
                                   "data_listen", json_object_get(msg, "data_listen"),
                                   "resources", json_object_get(msg, "resources"), "targets",
                                   json_object_get(msg, "targets"));
        char *text = json_dumps(advert, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(advert);
        json_decref(previous);
        if (text == NULL || strlen(text) > STORE_ADDRESSES_MAX) {
            free(text);
            session_fail(s, CTLMSG_E_BAD_REQUEST, "advertisement too large");
            return;
        }
        bool changed = s->node.addresses == NULL || strcmp(text, s->node.addresses) != 0;
        if (changed && store_node_set_addresses(c->store, s->node.id, text, &err) == 0) {
            free(s->node.addresses);
            s->node.addresses = text; /* the session's now */
            text = NULL;
        }
        free(text);
        if (changed) {
            report_unbound(s, json_object_get(msg, "resources"));
            report_unallowed(s, json_object_get(msg, "addresses"));
        }
        hello_drain(s, json_integer_value(json_object_get(msg, "draining")));
    }
    bool status_changed = false;
    int online_rc = store_node_set_status(c->store, s->node.id, STORE_ONLINE,
                                          "control stream connected", &status_changed, &err);
    struct store_node row;
    session_row(s, &row);
    fleet_hello(c->fleet, &row);
    if (online_rc != 0)
        fleet_offline(c->fleet, s->node.id); /* its next heartbeat tries ONLINE again */
    s->in_fleet = true;
    s->state = S_ACTIVE;
    release_source(s);
    log_info("node connected", "node=%s spiffe_id=%s peer=%s", s->node.id, s->node.spiffe_id,
             ctl_stream_peer_addr(s->stream));
    session_send(s, json_pack("{s:s, s:s, s:I, s:I}", "type", "welcome", "node_id", s->node.id,
                              "heartbeat_interval_ms",
                              (json_int_t)c->settings.heartbeat_interval_ms, "server_time",
                              (json_int_t)clock_wall_s(c->clock)));
    if (s->role == PKI_ROLE_CONNECTOR)
        ctl_server_push_all(s->server); /* tunnelers may gain this connector */
    else
        session_push(s);
}

static void
handle_heartbeat(struct session *s, const json_t *msg)
{
    struct controller *c = s->server->c;
    struct ztr_err err = {0};
    c->counters.heartbeats++;
    /* No ack on an expired identity: the node is not ONLINE with it. */
    if (s->not_after > 0 && clock_wall_s(c->clock) > s->not_after) {
        log_warn("heartbeat refused", "node=%s reason=\"certificate expired\" not_after=%lld",
                 s->node.id, (long long)s->not_after);
        session_fail(s, CTLMSG_E_PERMISSION_DENIED, CTL_STREAM_PEER_EXPIRED);
        return;
    }
    /* Kept in memory and written in batches (fleet.h): a heartbeat writes
     * to the store only when the sweep marked a slow node OFFLINE and its
     * heartbeat says it is back. */
    struct store_node row;
    session_row(s, &row);
    if (fleet_heartbeat(c->fleet, &row, json_object_get(msg, "counters"))) {
        bool changed = false;
        if (store_node_set_status(c->store, s->node.id, STORE_ONLINE, "heartbeat", &changed,
                                  &err) == 0)
            fleet_online_written(c->fleet, s->node.id);
        if (changed)
            log_info("node ONLINE", "node=%s reason=heartbeat", s->node.id);
    }
    const json_t *bundle_version = json_object_get(msg, "bundle_version");
    if (json_is_integer(bundle_version))
        fleet_bundle_held(c->fleet, s->node.id, json_integer_value(bundle_version));
    const json_t *allowlist_version = json_object_get(msg, "allowlist_version");
    if (s->role == PKI_ROLE_CONNECTOR && json_is_integer(allowlist_version))
        fleet_allowlist_held(c->fleet, s->node.id, json_integer_value(allowlist_version),
                             json_string_value(json_object_get(msg, "allowlist_epoch")));
    session_send(s, json_pack("{s:s, s:O, s:I}", "type", "heartbeat_ack", "seq",
                              json_object_get(msg, "seq"), "server_time",
                              (json_int_t)clock_wall_s(c->clock)));
}


static void
handle_renew(struct session *s, const json_t *msg)
{
    struct controller *c = s->server->c;
    const char *csr_text = json_string_value(json_object_get(msg, "csr"));
    struct ztr_err err = {0};
    struct pki_csr *csr;
    if (pki_csr_parse((const uint8_t *)csr_text, strlen(csr_text), &csr, &err) != 0) {
        c->counters.renewal_denied++;
        session_send(s, ctlmsg_error(CTLMSG_E_BAD_REQUEST, err.msg));
        return;
    }
    size_t new_len, old_len = 0;
    const uint8_t *new_key = pki_csr_public_der(csr, &new_len);
    const uint8_t *old_key = ctl_stream_peer_public_key(s->stream, &old_len);
    /* Renewal means a fresh key: a stolen key must not outlive its cert.
     * Compared as keys, not bytes: one key has several encodings that the
     * CSR parser accepts. */
    int same = old_key != NULL ? pki_public_key_equal(old_key, old_len, new_key, new_len, &err)
                               : 0;
    if (same != 0) {
        pki_csr_free(csr);
        c->counters.renewal_denied++;
        store_event_add(c->store, "denied", s->node.id, "renewal reused the current key", NULL);
        session_send(s, ctlmsg_error(CTLMSG_E_KEY_REUSED,
                                     "renewal must use a fresh key, not the current one"));
        return;
    }
    /* The certificate the agent holds: the last one renewed through this
     * session, unless it names an earlier one of its own (it could not keep
     * the renewals since: a full or failing disk). That one then stays the
     * previous certificate, admitted through the grace, instead of a
     * renewal the agent never used, so that it can still reconnect with
     * what it has. A serial that is neither current nor previous (the
     * grace is over) changes nothing: the session's own stands, as before. */
    const char *in_use = json_string_value(json_object_get(msg, "serial"));
    char held_key[PKI_KEY_FINGERPRINT_MAX + 1];
    const char *session_key = s->key;
    struct store_cert_check held;
    if (in_use != NULL && strcmp(in_use, s->serial) != 0 &&
        store_node_cert_key(c->store, s->node.id, in_use, held_key, sizeof(held_key), &err) == 0 &&
        store_node_cert_state(c->store, s->node.id, held_key, &held, &err) == 0 &&
        held.state != STORE_CERT_SUPERSEDED)
        session_key = held_key;
    /* Checked again now, not only at hello: the grace of the certificate
     * this session opened with may have ended since. */
    struct store_cert_check from;
    char new_fp[PKI_KEY_FINGERPRINT_MAX + 1];
    if (store_node_cert_state(c->store, s->node.id, session_key, &from, &err) == 0 &&
        from.state == STORE_CERT_SUPERSEDED) {
        pki_csr_free(csr);
        c->counters.renewal_denied++;
        refuse_superseded(s, "renewal refused");
        return;
    }
    int64_t window_s = c->settings.svid_ttl_s / 4;
    int64_t issued = 0;
    if (store_node_certificates_since(c->store, s->node.id, clock_wall_s(c->clock) - window_s,
                                      &issued, &err) == 0 &&
        issued >= RENEWALS_PER_QUARTER_TTL) {
        pki_csr_free(csr);
        c->counters.renewal_denied++;
        log_warn("renewal refused", "node=%s reason=\"rate limited\" issued=%lld window_s=%lld",
                 s->node.id, (long long)issued, (long long)window_s);
        session_send(s, ctlmsg_error(CTLMSG_E_NOT_ALLOWED, "renewal rate limited, try later"));
        return;
    }
    if (pki_public_key_fingerprint(new_key, new_len, new_fp, &err) != 0) {
        pki_csr_free(csr);
        c->counters.renewal_denied++;
        session_send(s, ctlmsg_error(CTLMSG_E_BAD_REQUEST, err.msg));
        return;
    }
    struct pki_spiffe_id id;
    struct pki_ip ips[PKI_MAX_IP_SANS];
    size_t ip_count = s->role == PKI_ROLE_CONNECTOR ? node_ips(s->node.addresses, s->node.allowed_addresses, ips, PKI_MAX_IP_SANS) : 0;
    char *chain = NULL;
    size_t chain_len;
    int rc = pki_spiffe_id_parse(s->node.spiffe_id, &id, &err);
    if (rc == 0)
        rc = ca_set_issue(c->cas, &id, new_key, new_len, ips, ip_count, c->settings.svid_ttl_s,
                          &chain, &chain_len, &err);
    pki_csr_free(csr);
    struct pki_chain *parsed = NULL;
    struct pki_cert_info info = {0};
    if (rc == 0 && pki_chain_from_pem(chain, chain_len, &parsed, &err) == 0) {
        size_t der_len;
        const uint8_t *der = pki_chain_der(parsed, 0, &der_len);
        rc = pki_cert_info_parse(der, der_len, &info, &err);
        pki_chain_free(parsed);
    }
    if (rc == 0)
        rc = store_node_renew(c->store, s->node.id, session_key, info.serial_hex, new_fp,
                              info.not_after, STORE_RENEWAL_GRACE_S, &err);
    if (rc != 0 && err.code == STORE_E_SUPERSEDED) {
        free(chain);
        c->counters.renewal_denied++;
        refuse_superseded(s, "renewal refused");
        return;
    }
    if (rc != 0) {
        log_error("renewal failed", "node=%s error=\"%s\"", s->node.id, err.msg);
        session_send(s, ctlmsg_error(CTLMSG_E_INTERNAL, "cannot issue certificate"));
        free(chain);
        return;
    }
    c->counters.renewals++;
    snprintf(s->key, sizeof(s->key), "%s", new_fp);
    snprintf(s->serial, sizeof(s->serial), "%s", info.serial_hex);
    /* The session proved the new key (the CSR's signature) over a stream
     * the old one opened: it now stands for the new certificate. */
    ctl_stream_expire_at(s->stream, info.not_after);
    s->not_after = info.not_after;
    snprintf(s->node.cert_serial, sizeof(s->node.cert_serial), "%s", info.serial_hex);
    log_info("certificate renewed", "node=%s spiffe_id=%s not_after=%lld", s->node.id,
             s->node.spiffe_id, (long long)info.not_after);
    session_send(s, json_pack("{s:s, s:s}", "type", "renewed", "chain", chain));
    free(chain);
}

/* Whether this session's source has used up its denied enrollments for the
 * minute; if so it is answered rate_limited without looking at the token. */
static bool
enroll_rate_limited(struct session *s)
{
    struct ctl_server *server = s->server;
    struct controller *c = server->c;
    int64_t now = clock_monotonic_ms(c->clock);
    if (!s->holds_source ||
        quota_strikes(server->enroll_failures, &s->source, now) < server->enroll_failures_per_source)
        return false;
    c->counters.enroll_rate_limited++;
    int64_t left_s = (quota_window_left_ms(server->enroll_failures, &s->source, now) + 999) / 1000;
    uint64_t suppressed = 0;
    if (log_limit_allow(&server->rate_log, now, &suppressed))
        log_warn("enrollment refused",
                 "peer=%s reason=\"too many denied enrollments from this address\" "
                 "limit_per_minute=%llu retry_in_seconds=%lld suppressed=%llu",
                 ctl_stream_peer_addr(s->stream),
                 (unsigned long long)server->enroll_failures_per_source, (long long)left_s,
                 (unsigned long long)suppressed);
    char message[128];
    snprintf(message, sizeof(message),
             "too many denied enrollments from this address; retry in %llds", (long long)left_s);
    session_send(s, ctlmsg_error(CTLMSG_E_RATE_LIMITED, message));
    session_close(s, "enrollment rate limited");
    return true;
}

static void
handle_enroll(struct session *s, const json_t *msg)
{
    if (enroll_rate_limited(s))
        return;
    json_t *reply = enroll_handle(s->server->c, msg, ctl_stream_peer_addr(s->stream));
    /* Denials count against the source; the controller's own failures
     * (internal) are not the client's doing. */
    const char *code = json_string_value(json_object_get(reply, "code"));
    if (code != NULL && strcmp(code, CTLMSG_E_INTERNAL) != 0 && s->holds_source)
        quota_strike(s->server->enroll_failures, &s->source,
                     clock_monotonic_ms(s->server->c->clock));
    const char *node_id = json_string_value(json_object_get(reply, "node_id"));
    char enrolled[STORE_ID_MAX + 1] = "";
    if (node_id != NULL)
        snprintf(enrolled, sizeof(enrolled), "%s", node_id);
    session_send(s, reply);
    session_close(s, "enrollment answered");
    /* A replacing enrollment leaves the node one certificate: sessions with
     * the one it replaced end now. */
    if (enrolled[0] != '\0')
        close_superseded(s->server, enrolled);
}

/* Counts a refusal against the session's source, like a denied enrollment
 * (the controller's own failures are not the client's doing). */
static void
strike_source_on_refusal(struct session *s, const json_t *reply)
{
    const char *code = json_string_value(json_object_get(reply, "code"));
    bool refused = code != NULL ? strcmp(code, CTLMSG_E_INTERNAL) != 0
                                : strcmp(json_string_value(json_object_get(reply, "type")),
                                         "revoked") == 0;
    if (refused && s->holds_source)
        quota_strike(s->server->enroll_failures, &s->source,
                     clock_monotonic_ms(s->server->c->clock));
}

/* An expired node names itself and gets a challenge for this session. */
static void
handle_reauth_begin(struct session *s, const json_t *msg)
{
    if (enroll_rate_limited(s))
        return;
    const char *node_id = json_string_value(json_object_get(msg, "node_id"));
    const char *spiffe_id = json_string_value(json_object_get(msg, "spiffe_id"));
    struct ztr_err err = {0};
    if (strlen(node_id) > STORE_ID_MAX || strlen(spiffe_id) > PKI_SPIFFE_ID_MAX) {
        session_fail(s, CTLMSG_E_BAD_REQUEST, "reauth_begin: node_id or spiffe_id too long");
        return;
    }
    if ((s->reauth_spiffe_id = strdup(spiffe_id)) == NULL ||
        reauth_new_challenge(s->challenge, &err) != 0) {
        session_fail(s, CTLMSG_E_INTERNAL, "cannot make a challenge");
        return;
    }
    snprintf(s->reauth_node, sizeof(s->reauth_node), "%s", node_id);
    s->state = S_REAUTH;
    session_send(s, json_pack("{s:s, s:s}", "type", "reauth_challenge", "challenge",
                              s->challenge));
}

static void
handle_reauth(struct session *s, const json_t *msg)
{
    /* Single use: taken off the session before anything is checked. */
    char challenge[sizeof(s->challenge)];
    memcpy(challenge, s->challenge, sizeof(challenge));
    explicit_bzero(s->challenge, sizeof(s->challenge));
    json_t *reply = reauth_handle(s->server->c, challenge, s->reauth_node,
                                  s->reauth_spiffe_id != NULL ? s->reauth_spiffe_id : "", msg,
                                  ctl_stream_peer_addr(s->stream));
    strike_source_on_refusal(s, reply);
    session_send(s, reply);
    session_close(s, "re-authentication answered");
}

/* A connector applied an allowlist version: the revocation SLO's data. */
static void
handle_applied(struct session *s, const json_t *msg)
{
    struct controller *c = s->server->c;
    int64_t version = json_integer_value(json_object_get(msg, "version"));
    bool counted = version == s->change_version;
    if (counted)
        s->change_version = 0;
    if (counted && !changes_applied(c->changes, version, clock_wall_ms(c->clock),
                         json_integer_value(json_object_get(msg, "applied_ms")),
                         json_integer_value(json_object_get(msg, "closed_ms")),
                         json_integer_value(json_object_get(msg, "sessions_closed"))))
        log_debug("applied report of an unknown change", "node=%s version=%lld", s->node.id,
                  (long long)version);
    /* Every data loop enforces it now: what explain's allowlist_applied
     * step reads (never backwards: a late report of an older change). */
    fleet_allowlist_applied(c->fleet, s->node.id, version);
}

/* ---- explain ---------------------------------------------------------------- */

/* Ends the ask with answer or failure (exactly one non-NULL). */
static void
explain_finish(struct explain_ask *ask, const json_t *answer, const char *failure)
{
    struct session *s = ask->session;
    ev_timer_stop(s->server->c->loop, &ask->timer);
    s->explain = NULL;
    ask->done(ask->ctx, answer, failure);
    free(ask);
}

static void
explain_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct explain_ask *ask = w->data;
    log_warn("explain not answered", "node=%s", ask->session->node.id);
    explain_finish(ask, NULL, CTL_EXPLAIN_NO_ANSWER);
}

/* Only the answer to the request outstanding on this very session is
 * taken: a node cannot answer for another, nor answer what was not asked
 * (a late answer after the time-out included). */
static void
handle_explain_answer(struct session *s, const json_t *msg)
{
    const char *id = json_string_value(json_object_get(msg, "id"));
    if (s->explain == NULL || strcmp(s->explain->id, id) != 0) {
        s->server->c->counters.explain_answers_refused++;
        log_warn("explain answer refused", "node=%s reason=\"%s\"", s->node.id,
                 s->explain == NULL ? "no explain request outstanding on this session"
                                    : "answer to another request");
        return;
    }
    explain_finish(s->explain, msg, NULL);
}

const char *
ctl_server_epoch(const struct ctl_server *server)
{
    return server->epoch;
}

int
ctl_server_explain_ask(struct ctl_server *server, const char *node_id, const char *tunneler,
                       const char *resource, int64_t timeout_ms, ctl_explain_done_fn done,
                       void *ctx, struct ztr_err *err)
{
    struct session *s = NULL;
    FOR_EACH_NODE_SESSION(server, node_id, o)
        if (o->state == S_ACTIVE && o->role == PKI_ROLE_CONNECTOR) {
            s = o; /* the newest live one: indexed first */
            break;
        }
    if (s == NULL)
        return ztr_err_set(err, ZTR_E_NOT_FOUND,
                           "connector has no live control stream to this controller");
    if (s->explain != NULL)
        return ztr_err_set(err, ZTR_E_LIMIT,
                           "an explain request is already waiting on this connector");
    uint8_t raw[CTLMSG_EXPLAIN_ID_LEN / 2];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return ztr_err_set(err, ZTR_E_IO, "getrandom failed");
    struct explain_ask *ask = calloc(1, sizeof(*ask));
    if (ask == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(ask->id + 2 * i, 3, "%02x", raw[i]);
    ask->session = s;
    ask->done = done;
    ask->ctx = ctx;
    ev_timer_init(&ask->timer, explain_timeout_cb, (double)timeout_ms / 1000.0, 0.0);
    ask->timer.data = ask;
    s->explain = ask;
    server->c->counters.explain_asks++;
    ev_timer_start(server->c->loop, &ask->timer);
    session_send(s, json_pack("{s:s, s:s, s:s, s:s}", "type", "explain_request", "id", ask->id,
                              "tunneler", tunneler, "resource", resource));
    return 0;
}

static void
handle_message(struct session *s, enum ctlmsg_type type, const json_t *msg)
{
    switch (s->state) {
    case S_ENROLL_ONLY:
        if (type == CTLMSG_REAUTH_BEGIN) {
            handle_reauth_begin(s, msg);
            return;
        }
        if (type == CTLMSG_REAUTH) {
            handle_reauth(s, msg); /* no challenge of its own: refused as such */
            return;
        }
        if (type != CTLMSG_ENROLL) {
            session_fail(s, CTLMSG_E_PERMISSION_DENIED,
                         "a session without a client certificate may only enroll or "
                         "re-authenticate");
            return;
        }
        handle_enroll(s, msg);
        return;
    case S_REAUTH:
        if (type != CTLMSG_REAUTH) {
            session_fail(s, CTLMSG_E_BAD_REQUEST, "expected reauth");
            return;
        }
        handle_reauth(s, msg);
        return;
    case S_AWAIT_HELLO:
        if (type != CTLMSG_HELLO) {
            session_fail(s, CTLMSG_E_BAD_REQUEST, "expected hello");
            return;
        }
        handle_hello(s, msg);
        return;
    case S_ACTIVE:
        if (type == CTLMSG_HEARTBEAT)
            handle_heartbeat(s, msg);
        else if (type == CTLMSG_DRAIN)
            handle_drain(s, msg);
        else if (type == CTLMSG_RENEW)
            handle_renew(s, msg);
        else if (type == CTLMSG_EXPLAIN_ANSWER)
            handle_explain_answer(s, msg);
        else if (type == CTLMSG_BUNDLE_REQUEST) {
            s->bundle_version_sent = -1; /* resend even if we think it has it */
            push_bundle(s);
        } else if (type == CTLMSG_APPLIED && s->role == PKI_ROLE_CONNECTOR) {
            handle_applied(s, msg);
        } else if (type == CTLMSG_ERROR)
            log_warn("agent reported an error", "node=%s code=%s message=\"%s\"", s->node.id,
                     json_string_value(json_object_get(msg, "code")),
                     json_string_value(json_object_get(msg, "message")));
        else
            session_fail(s, CTLMSG_E_BAD_REQUEST, "unexpected message");
        return;
    case S_HANDSHAKE:
    case S_CLOSING:
        return;
    }
}

/* ---- stream callbacks ----------------------------------------------------- */

static void
on_ready(void *user)
{
    struct session *s = user;
    struct controller *c = s->server->c;
    const struct pki_spiffe_id *peer = ctl_stream_peer_id(s->stream);
    if (peer == NULL) {
        s->state = S_ENROLL_ONLY;
        return;
    }
    ctl_stream_set_max_frame(s->stream, FRAME_MAX_PAYLOAD);
    struct ztr_err err = {0};
    if (session_node_load(c->store, &s->node, peer->uri, &err) != 0) {
        c->counters.sessions_rejected++;
        log_warn("control session refused", "spiffe_id=%s peer=%s reason=\"unknown node\"",
                 peer->uri, ctl_stream_peer_addr(s->stream));
        s->state = S_ACTIVE; /* so the error frame is sent */
        session_fail(s, CTLMSG_E_PERMISSION_DENIED, "unknown node");
        return;
    }
    s->role = peer->role;
    index_add(s->server, s);
    if (s->node.revoked) {
        c->counters.sessions_rejected++;
        log_warn("control session refused", "node=%s peer=%s reason=revoked", s->node.id,
                 ctl_stream_peer_addr(s->stream));
        s->state = S_ACTIVE;
        session_send(s, json_pack("{s:s, s:s}", "type", "revoked", "reason", "node revoked"));
        session_close(s, "node revoked");
        return;
    }
    size_t spki_len = 0;
    const uint8_t *spki = ctl_stream_peer_public_key(s->stream, &spki_len);
    struct store_cert_check check;
    if (spki == NULL || pki_public_key_fingerprint(spki, spki_len, s->key, &err) != 0 ||
        store_node_cert_admit(c->store, s->node.id, s->key, &check, &err) != 0) {
        c->counters.sessions_rejected++;
        log_error("control session refused", "node=%s peer=%s error=\"%s\"", s->node.id,
                  ctl_stream_peer_addr(s->stream), spki == NULL ? "no peer key" : err.msg);
        s->refused = true;
        s->state = S_ACTIVE;
        session_fail(s, CTLMSG_E_INTERNAL, "cannot check the certificate");
        return;
    }
    snprintf(s->serial, sizeof(s->serial), "%s", check.serial);
    if (check.state == STORE_CERT_SUPERSEDED) {
        c->counters.sessions_rejected++;
        refuse_superseded(s, "control session refused");
        return;
    }
    if (node_session_count(s->server, s) >= NODE_SESSIONS_MAX) {
        c->counters.sessions_rejected++;
        log_warn("control session refused", "node=%s peer=%s reason=\"too many sessions\" limit=%d",
                 s->node.id, ctl_stream_peer_addr(s->stream), NODE_SESSIONS_MAX);
        s->refused = true;
        s->state = S_ACTIVE; /* so the error frame is sent */
        session_fail(s, CTLMSG_E_NOT_ALLOWED, "too many control sessions for this node");
        return;
    }
    if (check.bound)
        log_info("certificate key recorded", "node=%s serial=%s", s->node.id,
                 serial_or_unknown(s->serial));
    if (check.state == STORE_CERT_PREVIOUS)
        log_info("control session with the previous certificate",
                 "node=%s serial=%s current_serial=%s until=%lld", s->node.id, s->serial,
                 s->node.cert_serial, (long long)s->node.prev_cert_until);
    c->counters.sessions_accepted++;
    /* No session outlives the certificate it stands for. */
    s->not_after = ctl_stream_peer_not_after(s->stream);
    ctl_stream_expire_at(s->stream, s->not_after);
    s->state = S_AWAIT_HELLO;
    alert_other_keys(s);
    if (check.grace_ended)
        close_superseded(s->server, s->node.id);
}

static void
on_message(void *user, enum ctlmsg_type type, const json_t *msg)
{
    struct session *s = user;
    s->server->c->counters.frames_in++;
    s->last_frame_ms = clock_monotonic_ms(s->server->c->clock);
    handle_message(s, type, msg);
}

/* A broken frame or message ends the session, with an error reply first. */
static void
on_fault(void *user, enum ctl_stream_fault fault, const char *error)
{
    struct session *s = user;
    if (fault == CTL_STREAM_BAD_MESSAGE) {
        s->server->c->counters.frames_in++;
        s->last_frame_ms = clock_monotonic_ms(s->server->c->clock);
    }
    log_warn("control session closed", "node=%s peer=%s reason=\"%s\"", s->node.id,
             ctl_stream_peer_addr(s->stream), error);
    session_fail(s, CTLMSG_E_BAD_REQUEST, error);
}

static void
on_close(void *user, const char *reason)
{
    struct session *s = user;
    struct ctl_server *server = s->server;
    struct controller *c = server->c;
    release_source(s);
    bool other_session = false;
    if (s->indexed)
        FOR_EACH_NODE_SESSION(server, s->node.id, o)
            other_session |= o != s && o->state == S_ACTIVE;
    /* A node with another live session (a restarted agent whose old stream
     * has not timed out yet) stays ONLINE. */
    if (s->node.id[0] != '\0' && !s->node.revoked && !s->refused && !other_session) {
        char why[ZTR_ERR_MSG_MAX];
        snprintf(why, sizeof(why), "control stream closed: %s", reason);
        bool changed = false;
        struct ztr_err err;
        if (store_node_set_status(c->store, s->node.id, STORE_OFFLINE, why, &changed, &err) == 0)
            fleet_offline(c->fleet, s->node.id);
        log_info("node disconnected", "node=%s reason=\"%s\"", s->node.id, reason);
    } else if (s->state == S_HANDSHAKE) {
        c->counters.sessions_rejected++;
        log_warn("TLS handshake failed", "peer=%s reason=\"%s\"",
                 ctl_stream_peer_addr(s->stream), reason);
    }
    if (s->explain != NULL)
        explain_finish(s->explain, NULL, CTL_EXPLAIN_CLOSED);
    if (s->in_fleet)
        fleet_session_closed(c->fleet, s->node.id);
    index_remove(server, s);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        server->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    server->session_count--;
    free(s->connectors_sent);
    free(s->reauth_spiffe_id);
    session_node_release(&s->node);
    free(s);
}

static const struct ctl_stream_callbacks session_callbacks = {on_ready, on_message, on_fault,
                                                              on_close};

/* ---- listener, sweep, identity ------------------------------------------- */

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct ctl_server *server = w->data;
    struct controller *c = server->c;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage peer;
        int fd = net_accept_peer(server->listen_fd, &peer);
        if (fd < 0)
            return;
        struct quota_key source;
        bool has_source = net_source_key_of(&peer, &source) == 0;
        const char *refusal = NULL;
        if (server->session_count >= server->sessions_max)
            refusal = "too many sessions open";
        else if (has_source &&
                 !quota_enter(server->unauthenticated, &source,
                              (unsigned)server->handshakes_per_source))
            refusal = "too many unauthenticated connections from this source";
        if (refusal != NULL) {
            c->counters.connections_refused++;
            net_close_refused(fd, &server->accept_log, clock_monotonic_ms(c->clock),
                              "control connection refused", refusal);
            continue;
        }
        struct session *s = calloc(1, sizeof(*s));
        if (s == NULL) {
            if (has_source)
                quota_leave(server->unauthenticated, &source);
            close(fd);
            continue;
        }
        s->server = server;
        s->source = source;
        s->holds_source = has_source;
        s->opened_ms = s->last_frame_ms = clock_monotonic_ms(c->clock);
        struct pki_expect expect = {.trust_domain = c->settings.trust_domain,
                                    .role = PKI_ROLE_CONNECTOR,
                                    .also_role = PKI_ROLE_TUNNELER};
        struct ztr_err err = {0};
        if (ctl_stream_new(loop, server->tls, fd, &expect, &session_callbacks, s, &s->stream,
                           &err) != 0) {
            log_warn("cannot start TLS", "error=\"%s\"", err.msg);
            release_source(s);
            free(s);
            continue;
        }
        ctl_stream_set_max_frame(s->stream, PREAUTH_FRAME_MAX);
        s->next = server->sessions;
        if (server->sessions != NULL)
            server->sessions->prev = s;
        server->sessions = s;
        server->session_count++;
    }
}

/* A controller that stopped answering: its nodes are OFFLINE here too. */
static int
log_released(void *ctx, const struct store_node *node)
{
    (void)ctx;
    log_info("node OFFLINE", "node=%s name=%s reason=\"its controller stopped answering\"",
             node->id, node->name);
    return 0;
}

static int
log_reclaimed(void *ctx, const struct store_node *node)
{
    (void)ctx;
    log_info("node ONLINE", "node=%s name=%s reason=\"its session is live here\"", node->id,
             node->name);
    return 0;
}

/* Another controller released nodes whose sessions are live here (it judged
 * this one silent while its loop or its beats were late, or they were held
 * by one that stopped while a second session of theirs is here): ONLINE
 * again, held by this controller. */
static void
reclaim_nodes(struct ctl_server *server)
{
    const char **ids = malloc((server->session_count + 1) * sizeof(*ids));
    if (ids == NULL) {
        log_error("nodes not reclaimed", "error=\"out of memory\"");
        return;
    }
    size_t count = 0;
    for (struct session *s = server->sessions; s != NULL && count < server->session_count;
         s = s->next)
        if (s->state == S_ACTIVE)
            ids[count++] = s->node.id;
    struct ztr_err err = {0};
    if (store_nodes_reclaim(server->c->store, ids, count, log_reclaimed, server, &err) != 0)
        log_warn("nodes not reclaimed", "error=\"%s\"", err.msg);
    free(ids);
}

/* Three missed intervals, as for nodes (failure-modes §3.2). */
static int64_t
stale_after_s(const struct controller *c)
{
    return (3 * c->settings.heartbeat_interval_ms + 999) / 1000;
}

static int
log_offline(void *ctx, const struct store_node *node)
{
    struct controller *c = ctx;
    fleet_offline(c->fleet, node->id);
    log_info("node OFFLINE", "node=%s name=%s reason=\"no heartbeat\" last_seen=%lld", node->id,
             node->name, (long long)node->last_seen);
    return 0;
}

static int issue_identity(struct ctl_server *server, bool update, struct ztr_err *err);

/* Bounds how long a session may hold a slot without doing its job: one
 * that never says hello (or never enrolls), or an agent that went silent. */
static void
close_idle_sessions(struct ctl_server *server)
{
    struct controller *c = server->c;
    int64_t now = clock_monotonic_ms(c->clock);
    int64_t silent_limit = 6 * c->settings.heartbeat_interval_ms;
    for (struct session *s = server->sessions; s != NULL; s = s->next) {
        if ((s->state == S_ENROLL_ONLY || s->state == S_REAUTH || s->state == S_AWAIT_HELLO) &&
            now - s->opened_ms > FIRST_MESSAGE_TIMEOUT_MS)
            session_close(s, "no enroll or hello within 10 s");
        else if (s->state == S_ACTIVE && now - s->last_frame_ms > silent_limit)
            session_close(s, "no heartbeat for 6 intervals");
    }
}

/* Rows deleted per sweep tick at most: a table grown far past its bounds
 * (a lowered EVENT_MAX, a restored database) shrinks over several ticks
 * instead of stalling the loop in one long delete. */
#define EVENT_PRUNE_BATCH 1000

static void
prune_events(struct controller *c, int64_t now)
{
    struct ztr_err err = {0};
    int64_t retention = c->settings.event_retention_s;
    size_t deleted = 0;
    if (store_event_prune(c->store, retention > 0 && retention < now ? now - retention : 0,
                          c->settings.event_max, EVENT_PRUNE_BATCH, &deleted, &err) != 0)
        log_warn("event pruning failed", "error=\"%s\"", err.msg);
    else if (deleted > 0)
        log_debug("events pruned", "deleted=%zu", deleted);
}

/* Shared store: this controller's beat, then the nodes of those that
 * stopped beating. A beat stored late (a blocked loop, a slow database)
 * may have let the others release nodes whose sessions are here. */
static void
beat_and_release(struct ctl_server *server)
{
    struct controller *c = server->c;
    struct ztr_err err = {0};
    int64_t db_now;
    if (store_controller_beat(c->store, server->address, &err) != 0) {
        log_warn("controller heartbeat not stored", "error=\"%s\"", err.msg);
        return;
    }
    int64_t mono_ms = clock_monotonic_ms(c->clock);
    bool late = server->beat_ok_ms != 0 &&
                mono_ms - server->beat_ok_ms > 2 * c->settings.heartbeat_interval_ms;
    server->beat_ok_ms = mono_ms;
    if (!store_is_shared(c->store))
        return;
    if (late)
        reclaim_nodes(server);
    if (store_clock_s(c->store, &db_now, &err) != 0 ||
        store_nodes_release(c->store, db_now - stale_after_s(c), NULL, log_released, c, &err) != 0)
        log_warn("nodes of silent controllers not released", "error=\"%s\"", err.msg);
}

static void
sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct ctl_server *server = w->data;
    struct controller *c = server->c;
    struct ztr_err err = {0};
    int64_t now = clock_wall_s(c->clock);
    /* Three missed intervals make a node OFFLINE (failure-modes §3.2). */
    int64_t cutoff = now - (3 * c->settings.heartbeat_interval_ms + 999) / 1000;
    /* Heartbeats live in memory: first store those the sweep would judge
     * by a stale last_seen. A store that cannot write (locked, full,
     * failing) fails that flush; the other writes here then wait for the
     * next sweep too. */
    bool store_down = false;
    /* A loop blocked past two intervals (a write waiting for a locked
     * store, a slow disk) has not read the heartbeats queued meanwhile:
     * judged now, live nodes would look silent (OFFLINE, or their sessions
     * closed as idle). They are judged at the next sweep. */
    int64_t mono_ms = clock_monotonic_ms(c->clock);
    int64_t gap_ms = server->swept_at_ms != 0 ? mono_ms - server->swept_at_ms : 0;
    server->swept_at_ms = mono_ms;
    bool blocked = gap_ms > 2 * c->settings.heartbeat_interval_ms;
    /* Here a locked store fails fast: heartbeats wait in memory for the
     * next sweep, the loop does not wait out the busy timeout. */
    store_set_busy_timeout(c->store, STORE_BACKGROUND_BUSY_MS);
    if (fleet_persist(c->fleet, cutoff, &err) != 0) {
        /* Kept in memory and written at the next sweep; judging nodes by
         * the stale last_seen in the store would mark live ones OFFLINE. */
        log_warn("heartbeats not stored, kept in memory; offline sweep skipped",
                 "error=\"%s\"", err.msg);
        store_down = err.code == STORE_E_UNAVAILABLE;
    } else if (blocked) {
        log_warn("offline sweep skipped: the loop was blocked", "blocked_ms=%lld",
                 (long long)gap_ms);
    } else if (store_node_sweep_offline(c->store, cutoff, log_offline, c, &err) != 0) {
        log_warn("offline sweep failed", "error=\"%s\"", err.msg);
        store_down = err.code == STORE_E_UNAVAILABLE;
    }
    if (!store_down)
        beat_and_release(server);
    fleet_tick(c->fleet);
    if (!blocked)
        close_idle_sessions(server);
    if (!store_down)
        prune_events(c, now);
    store_set_busy_timeout(c->store, STORE_BUSY_MS);
    bool pruned = false;
    if (ca_set_prune(c->cas, &pruned, &err) == 0 && pruned) {
        /* A CA leaving the bundle ends the sessions of what it signed: a
         * change like a deny, with its own id and apply times. */
        if (store_allowlist_bump(c->store, &err) != 0)
            log_error("allowlist version not bumped", "error=\"%s\"", err.msg);
        ctl_server_push_all(server);
        server->identity_renew_at = now; /* its signer may have just retired */
    }
    if (now >= server->identity_renew_at && issue_identity(server, true, &err) != 0)
        log_warn("controller certificate not renewed", "error=\"%s\"", err.msg);
}

/* Issues the controller's own SVID (spiffe://<td>/controller) with a fresh
 * key and installs it for new handshakes. */
static int
issue_identity(struct ctl_server *server, bool update, struct ztr_err *err)
{
    struct controller *c = server->c;
    struct pki_key *key = NULL;
    uint8_t *public_der = NULL;
    size_t public_len;
    char *chain = NULL, *key_pem = NULL, *bundle = NULL;
    size_t chain_len, key_len = 0, bundle_len;
    struct pki_spiffe_id id;
    int rc = pki_spiffe_id_build(c->settings.trust_domain, PKI_ROLE_CONTROLLER, NULL, &id, err);
    if (rc == 0)
        rc = pki_key_generate(&key, err);
    if (rc == 0)
        rc = pki_key_public_der(key, &public_der, &public_len, err);
    /* Signed by the oldest CA still in the bundle: an agent that missed a
     * rotation still trusts it, connects, and then receives the new bundle. */
    if (rc == 0) {
        int64_t now = clock_wall_s(c->clock);
        struct pki_leaf_request request = {
            .id = &id, .public_der = public_der, .public_len = public_len,
            .ips = c->ctl_names.ips, .ip_count = c->ctl_names.ip_count,
            .dns_names = c->ctl_names.dns_ptrs, .dns_count = c->ctl_names.dns_count,
            .not_before = now - 60, .not_after = now + c->settings.svid_ttl_s};
        rc = pki_ca_issue(ca_set_oldest(c->cas), &request, &chain, &chain_len, err);
    }
    if (rc == 0)
        rc = pki_key_to_pem(key, &key_pem, &key_len, err);
    if (rc == 0)
        rc = ca_set_bundle_pem(c->cas, &bundle, &bundle_len, err);
    if (rc == 0 && update)
        rc = tls_ctx_update(server->tls, chain, chain_len, key_pem, key_len, bundle, bundle_len,
                            err);
    if (rc == 0 && !update) {
        struct tls_ctx_config config = {
            .side = TLS_SIDE_SERVER, .alpn = CTL_ALPN, .chain_pem = chain,
            .chain_len = chain_len, .key_pem = key_pem, .key_len = key_len,
            .bundle_pem = bundle, .bundle_len = bundle_len, .peer_cert_optional = true,
            .clock = c->clock};
        rc = tls_ctx_new(&config, &server->tls, err);
    }
    if (rc == 0)
        server->identity_renew_at = clock_wall_s(c->clock) + c->settings.svid_ttl_s / 2;
    pki_key_free(key);
    free(public_der);
    free(chain);
    if (key_pem != NULL)
        explicit_bzero(key_pem, key_len);
    free(key_pem);
    free(bundle);
    return rc;
}

int
ctl_server_refresh_identity(struct ctl_server *server, struct ztr_err *err)
{
    return issue_identity(server, true, err);
}

/* ---- changes made through other controllers ----------------------------------- */

static void
on_change(void *ctx, const char *change)
{
    struct ctl_server *server = ctx;
    if (strcmp(change, "push") == 0) {
        server->changes_push = true;
        return;
    }
    if (strcmp(change, "released") == 0) {
        server->changes_released = true;
        return;
    }
    if (strcmp(change, "ca") == 0) {
        /* A rotation or a pruning through another controller (or this
         * one): the bundle to push, and a certificate from the new signer. */
        bool changed = false;
        struct ztr_err err = {0};
        if (ca_set_reload(server->c->cas, &changed, &err) != 0)
            log_error("CA set not reloaded from the store", "error=\"%s\"", err.msg);
        if (changed) {
            log_info("CA set changed", "bundle_version=%lld",
                     (long long)ca_set_bundle_version(server->c->cas));
            server->changes_push = true;
            server->identity_renew_at = clock_wall_s(server->c->clock);
        }
        return;
    }
    char node_id[STORE_ID_MAX + 1];
    int used = 0;
    if (sscanf(change, "revoke %32s %n", node_id, &used) == 1 && used > 0)
        ctl_server_revoke(server, node_id, change[used] != '\0' ? change + used : NULL);
}

static void changes_open(struct ctl_server *server);

static void
changes_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct ctl_server *server = w->data;
    struct ztr_err err = {0};
    server->changes_push = false;
    if (store_changes_read(server->c->store, on_change, server, &err) != 0) {
        log_warn("changes from other controllers lost", "error=\"%s\" retry_in_s=1", err.msg);
        ev_io_stop(loop, w);
        ev_timer_set(&server->changes_retry, 1.0, 0.0);
        ev_timer_start(loop, &server->changes_retry);
        /* What was missed meanwhile: recompute everything once back. */
        server->changes_push = true;
    }
    if (server->changes_released) {
        server->changes_released = false;
        reclaim_nodes(server);
    }
    if (server->changes_push)
        ctl_server_push_all(server);
}

static void
changes_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    changes_open(w->data);
}

static void
changes_open(struct ctl_server *server)
{
    struct controller *c = server->c;
    int fd = -1;
    struct ztr_err err = {0};
    if (store_changes_open(c->store, &fd, &err) != 0) {
        log_warn("cannot listen for other controllers' changes", "error=\"%s\" retry_in_s=1",
                 err.msg);
        ev_timer_set(&server->changes_retry, 1.0, 0.0);
        ev_timer_start(c->loop, &server->changes_retry);
        return;
    }
    if (fd < 0)
        return; /* alone on the database */
    ev_io_stop(c->loop, &server->changes_io);
    ev_io_init(&server->changes_io, changes_cb, fd, EV_READ);
    server->changes_io.data = server;
    ev_io_start(c->loop, &server->changes_io);
    /* Anything changed while nobody listened. */
    ctl_server_push_all(server);
}

/* Descriptors beside the sessions: listeners, the store, admin and health
 * connections, federation links. */
#define FD_RESERVE 256

/* Every session is a descriptor: with the soft limit below SESSIONS_MAX
 * the kernel would refuse connections the setting promises. Raised up to
 * the hard limit; said once when even that is below SESSIONS_MAX itself. */
static void
check_fd_limit(size_t sessions_max)
{
    struct rlimit limit;
    rlim_t wanted = (rlim_t)sessions_max + FD_RESERVE;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY ||
        limit.rlim_cur >= wanted)
        return;
    limit.rlim_cur = limit.rlim_max != RLIM_INFINITY && limit.rlim_max < wanted ? limit.rlim_max
                                                                                : wanted;
    if ((setrlimit(RLIMIT_NOFILE, &limit) != 0 && getrlimit(RLIMIT_NOFILE, &limit) != 0) ||
        limit.rlim_cur < sessions_max)
        log_warn("file descriptor limit below SESSIONS_MAX",
                 "limit=%llu sessions_max=%zu hint=\"raise LimitNOFILE (or ulimit -n) above "
                 "SESSIONS_MAX + %d\"",
                 (unsigned long long)limit.rlim_cur, sessions_max, FD_RESERVE);
}

static void
free_quotas(struct ctl_server *server)
{
    quota_free(server->unauthenticated);
    quota_free(server->enroll_failures);
    quota_free(server->hellos);
}

int
ctl_server_start(struct controller *c, struct ztr_err *err)
{
    struct ctl_server *server = calloc(1, sizeof(*server));
    if (server == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    server->c = c;
    server->listen_fd = -1;
    uint64_t epoch;
    if (getrandom(&epoch, sizeof(epoch), 0) != (ssize_t)sizeof(epoch)) {
        free(server);
        return ztr_err_set(err, ZTR_E_IO, "getrandom failed: %s", strerror(errno));
    }
    snprintf(server->epoch, sizeof(server->epoch), "%016llx", (unsigned long long)epoch);
    /* The run's epoch is also its id among controllers on one database. */
    store_set_controller(c->store, server->epoch);
    /* No session survives a restart: every node this controller held, or
     * (alone on SQLite) any node, is OFFLINE until it says hello again
     * (failure-modes §3.1's flap shows as OFFLINE → ONLINE events). On a
     * shared database, nodes of controllers still beating stay theirs. */
    int64_t alive_since = INT64_MAX;
    if (store_is_shared(c->store)) {
        if (store_clock_s(c->store, &alive_since, err) != 0) {
            free(server);
            return -1;
        }
        alive_since -= stale_after_s(c);
    }
    if (store_nodes_release(c->store, alive_since, "OFFLINE: controller restarted", NULL, NULL,
                            err) != 0 ||
        store_controller_beat(c->store, c->settings.controller_listen, err) != 0) {
        free(server);
        return -1;
    }
    const struct controller_settings *set = &c->settings;
    server->sessions_max = set->sessions_max ? (size_t)set->sessions_max : SESSIONS_MAX_DEFAULT;
    check_fd_limit(server->sessions_max);
    server->handshakes_per_source = set->handshakes_per_source ? set->handshakes_per_source : 64;
    server->enroll_failures_per_source =
        set->enroll_failures_per_source ? set->enroll_failures_per_source : 20;
    server->hellos_per_node = set->hellos_per_node ? set->hellos_per_node : 30;
    server->accept_log = (struct log_limit)LOG_LIMIT_INIT(5, 10000);
    server->rate_log = (struct log_limit)LOG_LIMIT_INIT(20, 1000);
    /* Held entries are at most one per session slot; windowed ones are
     * dropped first when room is needed. */
    if (fleet_new(c->store, c->clock, set->svid_ttl_s, &c->fleet, err) != 0 ||
        changes_new(&c->changes, err) != 0 ||
        quota_new(server->sessions_max, 0, &server->unauthenticated, err) != 0 ||
        quota_new(SOURCE_TABLE_MAX, 60000, &server->enroll_failures, err) != 0 ||
        quota_new(SOURCE_TABLE_MAX, 60000, &server->hellos, err) != 0 ||
        issue_identity(server, false, err) != 0 ||
        net_listen(c->settings.controller_listen, 1024, &server->listen_fd, err) != 0) {
        tls_ctx_free(server->tls);
        free_quotas(server);
        fleet_free(c->fleet);
        c->fleet = NULL;
        changes_free(c->changes);
        c->changes = NULL;
        free(server);
        return -1;
    }
    fleet_hold(c->fleet, server->sessions_max);
    server->port = net_local_port(server->listen_fd);
    char host[128];
    uint16_t configured_port;
    if (config_parse_addr(set->controller_listen, host, sizeof(host), &configured_port) != 0)
        snprintf(host, sizeof(host), "?");
    snprintf(server->address, sizeof(server->address), strchr(host, ':') ? "[%s]:%u" : "%s:%u",
             host, (unsigned)server->port);
    struct ztr_err beat_err = {0};
    if (store_controller_beat(c->store, server->address, &beat_err) != 0)
        log_warn("controller heartbeat not stored", "error=\"%s\"", beat_err.msg);
    ev_io_init(&server->accept_io, accept_cb, server->listen_fd, EV_READ);
    server->accept_io.data = server;
    ev_io_start(c->loop, &server->accept_io);
    double interval = (double)c->settings.heartbeat_interval_ms / 1000.0;
    ev_timer_init(&server->sweep_timer, sweep_cb, interval, interval);
    server->sweep_timer.data = server;
    ev_timer_start(c->loop, &server->sweep_timer);
    c->ctl = server;
    log_info("push epoch", "epoch=%s", server->epoch);
    ev_init(&server->changes_retry, changes_retry_cb);
    server->changes_retry.data = server;
    changes_open(server);
    return 0;
}

void
ctl_server_stop(struct ctl_server *server)
{
    if (server == NULL)
        return;
    struct controller *c = server->c;
    ev_io_stop(c->loop, &server->accept_io);
    ev_timer_stop(c->loop, &server->sweep_timer);
    ev_io_stop(c->loop, &server->changes_io);
    ev_timer_stop(c->loop, &server->changes_retry);
    close(server->listen_fd);
    for (struct session *s = server->sessions; s != NULL; s = s->next)
        session_close(s, "controller shutting down");
    /* Let the sessions finish (on_close frees each) before the context goes. */
    for (int i = 0; i < 100 && server->sessions != NULL; i++)
        ev_run(c->loop, EVRUN_NOWAIT);
    tls_ctx_free(server->tls);
    free_quotas(server);
    /* What heartbeats said since the last sweep survives the restart. */
    struct ztr_err err = {0};
    if (fleet_persist(c->fleet, INT64_MAX, &err) != 0)
        log_warn("heartbeats not stored", "error=\"%s\"", err.msg);
    fleet_free(c->fleet);
    c->fleet = NULL;
    changes_free(c->changes);
    c->changes = NULL;
    if (store_controller_leave(c->store, &err) != 0)
        log_warn("controller not deregistered", "error=\"%s\"", err.msg);
    c->ctl = NULL;
    free(server);
}

uint16_t
ctl_server_port(const struct ctl_server *server)
{
    return server->port;
}

size_t
ctl_server_session_count(const struct ctl_server *server)
{
    return server->session_count;
}

void
ctl_server_revoke(struct ctl_server *server, const char *node_id, const char *reason)
{
    FOR_EACH_NODE_SESSION(server, node_id, s) {
        if (s->state == S_CLOSING)
            continue;
        s->node.revoked = true;
        session_send(s, json_pack("{s:s, s:s}", "type", "revoked", "reason",
                                  reason ? reason : CONTROLLER_REVOKE_REASON));
        session_close(s, "node revoked");
    }
}
