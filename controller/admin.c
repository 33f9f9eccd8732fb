/*
 * The admin API (everything under /api/admin, bearer ADMIN_AUTH_TOKEN) and the
 * unauthenticated /health and /metrics endpoints.
 *
 * Both servers run on the daemon's loop and their handlers are synchronous
 * and short: a store read or write and, after a change, one push to the live
 * control sessions. JSON in, JSON out; every error is {"error": "..."} with a
 * message an operator can act on (bad input names the field).
 */
#include "controller/controller.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/config.h"
#include "net/http.h"
#include "base/log.h"
#include "base/build_info.h"
#include "base/metrics.h"
#include "controller/explain.h"
#include "controller/federation.h"

#define ADMIN_PREFIX "/api/admin"
/* The longest path segment a route captures: ids and names both fit. */
#define ROUTE_ARG_MAX (STORE_NAME_MAX + 1)
#define EVENTS_DEFAULT_LIMIT 100
#define EVENTS_MAX_LIMIT 1000
/* A page of nodes (nodes, fleet); no limit asks for every node. */
#define NODES_PAGE_MAX 1000
/* A node search: longer than any name, id, SPIFFE ID or address. */
#define NODE_QUERY_MAX 128
/* A bearer of the wrong length is still compared over this many bytes. */
#define AUTH_COMPARE_FILLER 256

/* One request being served: the route's arguments in one place. */
struct admin_call {
    struct controller *c;
    const struct http_request *request;
    const char *arg; /* the path segment matched by "*", or "" */
    struct http_response *response;
};

typedef void (*route_fn)(struct admin_call *call);

struct route {
    const char *method;
    const char *pattern; /* literal path; "*" stands for one non-empty segment */
    route_fn run;
};

/* ---- responses ------------------------------------------------------------ */

/* Takes ownership of value (NULL means a failed json_pack: out of memory,
 * since every string that reaches it went through json_text). */
static void
respond_json(struct http_response *response, int status, json_t *value)
{
    char *text = value != NULL ? json_dumps(value, JSON_COMPACT) : NULL;
    json_decref(value);
    if (text == NULL) {
        http_respond_error(response, 500, "cannot encode the response");
        return;
    }
    response->status = status;
    response->content_type = "application/json";
    response->body = text;
    response->body_len = strlen(text);
}

static int
status_for(const struct ztr_err *err)
{
    switch (err->code) {
    case ZTR_E_NOT_FOUND:
        return 404;
    case STORE_E_PEER_EXISTS:
        return 409;
    case STORE_E_UNAVAILABLE: /* nothing changed; the same request may work later */
        return 503;
    case ZTR_E_INVALID:
    case ZTR_E_LIMIT:
    case PKI_E_BAD_SPIFFE_ID: /* a name that cannot be a SPIFFE ID segment */
        return 400;
    default:
        return 500;
    }
}

/* Maps an error from the store (or a validator) to a status: a missing row
 * is the caller's mistake (404), bad input too (400); anything else is ours
 * and is logged, since the operator on the other end may not be the one who
 * reads the journal. */
static void
respond_failure(struct http_response *response, const struct ztr_err *err)
{
    int status = status_for(err);
    if (status >= 500)
        log_error("admin request failed", "error=\"%s\"", err->msg);
    http_respond_error(response, status, err->msg);
}

/* A JSON string for stored text. Jansson refuses invalid UTF-8, and a
 * detail cut at its byte limit by another writer may end inside a
 * character: such bytes become '?' rather than failing a whole list. */
static json_t *
json_text(const char *text)
{
    json_t *value = json_string(text);
    if (value != NULL)
        return value;
    char *copy = strdup(text);
    if (copy == NULL)
        return NULL;
    for (char *p = copy; *p != '\0'; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    value = json_string(copy);
    free(copy);
    return value;
}

/* ---- authentication ------------------------------------------------------- */

/* Compares in time that depends only on the lengths, never on how many
 * leading bytes of a guess were right. A guess of the wrong length is
 * refused, but only after a compare over a fixed-size buffer, so a wrong
 * length is not the fast path. The pointers are volatile so the compiler
 * keeps the loop even when it can see the result. */
static bool
ct_token_equal(const char *given, const char *secret)
{
    static const unsigned char filler[AUTH_COMPARE_FILLER];
    size_t given_len = strlen(given);
    size_t secret_len = strlen(secret);
    const volatile unsigned char *a = (const unsigned char *)given;
    const volatile unsigned char *b = (const unsigned char *)secret;
    size_t n = secret_len;
    if (given_len != secret_len) {
        a = filler;
        b = filler;
        n = sizeof(filler);
    }
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return (diff == 0) & (given_len == secret_len);
}

/* An unset or empty admin token refuses everyone: fail closed. */
static bool
authorized(const struct controller *c, const char *header)
{
    static const char scheme[] = "Bearer ";
    if (c->admin_token == NULL || c->admin_token[0] == '\0' || header == NULL)
        return false;
    /* The scheme name is case-insensitive (RFC 9110 §11.1). */
    if (strncasecmp(header, scheme, sizeof(scheme) - 1) != 0)
        return false;
    const char *given = header + sizeof(scheme) - 1;
    while (*given == ' ')
        given++;
    return ct_token_equal(given, c->admin_token);
}

/* ---- routing -------------------------------------------------------------- */

/* Matches path against pattern; a single trailing '/' is ignored so that
 * "/api/admin/nodes/" names the collection too. On success arg holds the
 * segment "*" matched ("" when the pattern has none). */
static bool
route_match(const char *pattern, const char *path, char *arg, size_t arg_cap)
{
    size_t path_len = strlen(path);
    if (path_len > 1 && path[path_len - 1] == '/')
        path_len--;
    const char *p = path;
    const char *end = path + path_len;
    arg[0] = '\0';
    for (const char *q = pattern; *q != '\0'; q++) {
        if (*q == '*') {
            const char *slash = memchr(p, '/', (size_t)(end - p));
            const char *seg_end = slash != NULL ? slash : end;
            size_t n = (size_t)(seg_end - p);
            if (n == 0 || n >= arg_cap)
                return false;
            memcpy(arg, p, n);
            arg[n] = '\0';
            p = seg_end;
            continue;
        }
        if (p == end || *p != *q)
            return false;
        p++;
    }
    return p == end;
}

/* Runs the route for method + path: 404 when no route has the path, 405
 * when some does but not for this method. */
static void
dispatch(const struct route *routes, size_t count, struct admin_call *call)
{
    char arg[ROUTE_ARG_MAX];
    bool path_known = false;
    for (size_t i = 0; i < count; i++) {
        if (!route_match(routes[i].pattern, call->request->path, arg, sizeof(arg)))
            continue;
        if (strcmp(routes[i].method, call->request->method) != 0) {
            path_known = true;
            continue;
        }
        call->arg = arg;
        routes[i].run(call);
        return;
    }
    if (path_known)
        http_respond_error(call->response, 405, "method not allowed");
    else
        http_respond_error(call->response, 404, "not found");
}

/* ---- request input -------------------------------------------------------- */

/* The body as a JSON object. An empty body reads as {} so that routes whose
 * fields are all optional accept none. Responds 400 and returns NULL
 * otherwise. */
static json_t *
body_object(const char *text, size_t len, struct ztr_err *err)
{
    if (len == 0)
        return json_object();
    json_error_t jerr;
    json_t *body = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL) {
        ztr_err_set(err, ZTR_E_INVALID, "invalid JSON body: %s", jerr.text);
        return NULL;
    }
    if (!json_is_object(body)) {
        json_decref(body);
        ztr_err_set(err, ZTR_E_INVALID, "the request body must be a JSON object");
        return NULL;
    }
    return body;
}

static json_t *
parse_body(const struct http_request *request, struct http_response *response)
{
    const char *text = request->body != NULL ? request->body : "";
    size_t len = request->body_len != 0 ? request->body_len : strlen(text);
    struct ztr_err err = {0};
    json_t *body = body_object(text, len, &err);
    if (body == NULL)
        http_respond_error(response, 400, err.msg);
    return body;
}

/* Refuses fields the route does not know: a misspelt optional field ("tll")
 * would otherwise be ignored silently and its default used. */
static int
check_fields(const json_t *body, const char *const *known, struct ztr_err *err)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)body, key, value) {
        (void)value;
        size_t i = 0;
        while (known[i] != NULL && strcmp(known[i], key) != 0)
            i++;
        if (known[i] == NULL)
            return ztr_err_set(err, ZTR_E_INVALID, "unknown field \"%.64s\"", key);
    }
    return 0;
}

/* A string field; *out is NULL when an optional field is absent. */
static int
field_string(const json_t *body, const char *field, bool required, size_t max_len,
             const char **out, struct ztr_err *err)
{
    const json_t *value = json_object_get(body, field);
    *out = NULL;
    if (value == NULL || json_is_null(value)) {
        if (required)
            return ztr_err_set(err, ZTR_E_INVALID, "field \"%s\" is required", field);
        return 0;
    }
    if (!json_is_string(value))
        return ztr_err_set(err, ZTR_E_INVALID, "field \"%s\" must be a string", field);
    const char *text = json_string_value(value);
    if (required && text[0] == '\0')
        return ztr_err_set(err, ZTR_E_INVALID, "field \"%s\" must not be empty", field);
    if (strlen(text) > max_len)
        return ztr_err_set(err, ZTR_E_INVALID, "field \"%s\" is longer than %zu bytes", field,
                           max_len);
    *out = text;
    return 0;
}

/* Resource names travel in URLs, CLI output and connector configs: keep
 * them to characters that need no quoting anywhere. */
static int
check_resource_name(const char *field, const char *name, struct ztr_err *err)
{
    for (const char *p = name; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return ztr_err_set(err, ZTR_E_INVALID,
                               "field \"%s\" may hold only letters, digits, '-', '_' and '.'",
                               field);
    return 0;
}

/* A tunneler name becomes the last segment of its SPIFFE ID. */
static int
check_tunneler_name(const struct controller *c, const char *name, struct ztr_err *err)
{
    struct pki_spiffe_id id;
    if (pki_spiffe_id_build(c->settings.trust_domain, PKI_ROLE_TUNNELER, name, &id, err) != 0) {
        ztr_err_wrap(err, "field \"tunneler\"");
        err->code = ZTR_E_INVALID;
        return -1;
    }
    return 0;
}

/* A connector name becomes the last segment of its SPIFFE ID; binding
 * checks it the same way so that a binding can name a future connector. */
static int
check_connector_name(const struct controller *c, const char *name, struct ztr_err *err)
{
    struct pki_spiffe_id id;
    if (pki_spiffe_id_build(c->settings.trust_domain, PKI_ROLE_CONNECTOR, name, &id, err) != 0) {
        ztr_err_wrap(err, "field \"connector\"");
        err->code = ZTR_E_INVALID;
        return -1;
    }
    return 0;
}

static int
hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = (char)tolower((unsigned char)ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Decodes %HH and '+' of a query value of length len into out. */
static int
percent_decode(const char *text, size_t len, char *out, size_t cap)
{
    size_t used = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            int hi = i + 2 < len ? hex_value(text[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value(text[i + 2]) : -1;
            if (lo < 0)
                return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (ch == '\0' || used + 1 >= cap)
            return -1;
        out[used++] = ch;
    }
    out[used] = '\0';
    return 0;
}

/* Finds name in the raw query string: 1 and the decoded value in out when
 * present, 0 when absent, -1 with err naming the parameter when malformed. */
int
admin_query_get(const char *query, const char *name, char *out, size_t cap, struct ztr_err *err)
{
    size_t name_len = strlen(name);
    const char *p = query != NULL ? query : "";
    while (*p != '\0') {
        const char *amp = strchr(p, '&');
        size_t pair_len = amp != NULL ? (size_t)(amp - p) : strlen(p);
        if (pair_len > name_len && strncmp(p, name, name_len) == 0 && p[name_len] == '=') {
            if (percent_decode(p + name_len + 1, pair_len - name_len - 1, out, cap) != 0)
                return ztr_err_set(err, ZTR_E_INVALID,
                                   "query parameter \"%s\" is malformed or too long", name);
            return 1;
        }
        if (pair_len == name_len && strncmp(p, name, name_len) == 0) {
            out[0] = '\0';
            return 1;
        }
        p += pair_len;
        if (*p == '&')
            p++;
    }
    return 0;
}

/* A non-negative integer query parameter; *out keeps its default when the
 * parameter is absent. */
static int
query_int(const char *query, const char *name, int64_t min, int64_t *out, struct ztr_err *err)
{
    char text[24];
    int found = admin_query_get(query, name, text, sizeof(text), err);
    if (found <= 0)
        return found;
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (!isdigit((unsigned char)text[0]) || *end != '\0' || errno != 0 || value < min)
        return ztr_err_set(err, ZTR_E_INVALID,
                           "query parameter \"%s\" must be an integer >= %lld", name,
                           (long long)min);
    *out = value;
    return 0;
}

/* ---- side effects shared by the changing routes --------------------------- */

/* Records an "admin" event and logs it. Callers never pass a secret. A
 * failure to record is logged, not returned: the change itself is done. */
static void record_admin_event(struct controller *c, const char *node_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
record_admin_event(struct controller *c, const char *node_id, const char *fmt, ...)
{
    char detail[STORE_DETAIL_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    log_info("admin change", "detail=\"%s\"", detail);
    struct ztr_err err = {0};
    if (store_event_add(c->store, "admin", node_id != NULL ? node_id : "", detail, &err) != 0)
        log_warn("admin event not recorded", "error=\"%s\"", err.msg);
}

/* Sends live sessions whatever the change altered for them. */
static void
push_changes(struct controller *c)
{
    if (c->ctl != NULL)
        ctl_server_push_all(c->ctl);
}

static int64_t
now_s(const struct controller *c)
{
    return clock_wall_s(c->clock);
}

/* ---- nodes ---------------------------------------------------------------- */

/* A node's state in the fleet view: a revoked node is REVOKED, one whose
 * certificate ran out EXPIRED (whatever its stream says), else ONLINE or
 * OFFLINE as the control plane has it. */
enum fleet_state { FS_ONLINE, FS_OFFLINE, FS_EXPIRED, FS_REVOKED, FS_COUNT };

static const char *const fleet_state_names[FS_COUNT] = {"ONLINE", "OFFLINE", "EXPIRED",
                                                        "REVOKED"};

static enum fleet_state
fleet_state_of(const struct store_node *node, int64_t now)
{
    if (node->revoked)
        return FS_REVOKED;
    if (fleet_cert_expired(node, now))
        return FS_EXPIRED;
    return node->status == STORE_ONLINE ? FS_ONLINE : FS_OFFLINE;
}

/* The node's advertised addresses: the list given at enrollment, or, after
 * a connector's hello, the "addresses" of its advertisement object. */
static json_t *
addresses_value(const char *text)
{
    json_t *value = text[0] != '\0' ? json_loads(text, 0, NULL) : NULL;
    if (json_is_object(value)) {
        json_t *list = json_incref(json_object_get(value, "addresses"));
        json_decref(value);
        value = list;
    }
    if (!json_is_array(value)) {
        json_decref(value);
        value = json_array();
    }
    return value;
}

/* Past the middle of its certificate's life a node should have renewed
 * (agents renew at half the TTL). A revoked node will not renew, and one
 * without a certificate has nothing to renew: neither is overdue. */
static bool
renewal_overdue(const struct controller *c, const struct store_node *node, int64_t now)
{
    if (node->revoked || node->cert_not_after == 0)
        return false;
    return node->cert_not_after - c->settings.svid_ttl_s / 2 < now;
}

/* Heartbeats reach the store in batches (fleet.h): the live value is the
 * fleet's when it has a newer one. */
static int64_t
last_seen_of(const struct controller *c, const struct store_node *node)
{
    struct fleet_node_view view;
    if (c->fleet != NULL && fleet_node_view(c->fleet, node->id, &view) &&
        view.last_seen > node->last_seen)
        return view.last_seen;
    return node->last_seen;
}

/* null, or who drains the connector ("operator", or "shutdown": the
 * connector itself before it stops), since when and until when. */
static json_t *
drain_json(const struct store_node *node)
{
    if (node->drain == STORE_DRAIN_NONE)
        return json_null();
    return json_pack("{s:s, s:I, s:I}", "by",
                     node->drain == STORE_DRAIN_OPERATOR ? "operator" : "shutdown", "since",
                     (json_int_t)node->drain_since, "deadline",
                     (json_int_t)node->drain_deadline);
}

/* ONLINE, OFFLINE or EXPIRED as the store says, DRAINING for an ONLINE
 * connector that drains. */
static const char *
node_status_name(const struct store_node *node, int64_t now)
{
    const char *status = store_node_status_name(node, now);
    if (node->drain != STORE_DRAIN_NONE && strcmp(status, "ONLINE") == 0)
        return "DRAINING";
    return status;
}

static json_t *
node_json(const struct controller *c, const struct store_node *node, int64_t now)
{
    /* The previous certificate shows only while it still opens sessions
     * (the renewal grace): what an operator checks when a node's old key
     * may have been copied. */
    bool in_grace = node->prev_cert_serial[0] != '\0' && now < node->prev_cert_until;
    json_t *item = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:s, s:I, s:I, s:b, s:o, s:o, s:s, s:I}",
                     "id", node->id, "name", node->name, "role", node->role, "spiffe_id",
                     node->spiffe_id, "status", node_status_name(node, now),
                     "revoked", node->revoked, "last_seen", (json_int_t)last_seen_of(c, node),
                     "cert_serial", node->cert_serial, "cert_not_after",
                     (json_int_t)node->cert_not_after, "enrolled_at",
                     (json_int_t)node->enrolled_at, "renewal_overdue",
                     renewal_overdue(c, node, now), "addresses", addresses_value(node->addresses),
                     "allowed_addresses", addresses_value(node->allowed_addresses),
                     "previous_cert_serial", in_grace ? node->prev_cert_serial : "",
                     "previous_cert_until", (json_int_t)(in_grace ? node->prev_cert_until : 0));
    if (item != NULL && json_object_set_new(item, "drain", drain_json(node)) != 0) {
        json_decref(item);
        item = NULL;
    }
    return item;
}

/* Collects rows of any list into a JSON array; a NULL element (out of
 * memory) stops the walk and marks the list failed. */
struct json_list {
    const struct controller *c;
    json_t *array;
    int64_t now;
    bool failed;
};

static int
json_list_add(struct json_list *list, json_t *item)
{
    if (item == NULL || json_array_append_new(list->array, item) != 0) {
        list->failed = true;
        return 1;
    }
    return 0;
}

/* Answers with {"<key>": [...]} once a store list walk is done, or with
 * what stopped it. */
static void
respond_list(struct admin_call *call, const char *key, json_t *array, bool failed, int rc,
             const struct ztr_err *err)
{
    if (rc != 0 && !failed) {
        json_decref(array);
        respond_failure(call->response, err);
        return;
    }
    if (failed) {
        json_decref(array);
        http_respond_error(call->response, 500, "out of memory");
        return;
    }
    respond_json(call->response, 200, json_pack("{s:o}", key, array));
}

/* ---- which nodes a list shows ---------------------------------------------- */

/* What GET /api/admin/nodes and /fleet were asked for: a search, a role, a
 * state, and one page of the matches in the store's order (role, then
 * name). The whole fleet is still walked for the counts per state, but
 * only the page is turned into JSON: a console polling 50 rows of 10 000
 * nodes every second costs one pass over the table, not 10 000 objects. */
struct node_selection {
    char q[NODE_QUERY_MAX + 1]; /* lower case; "" = any */
    char role[16];              /* "" = any */
    int state;                  /* enum fleet_state, or -1 = any */
    int64_t offset;
    int64_t limit; /* 0 = every match */
};

static int
parse_node_selection(const char *query, struct node_selection *sel, struct ztr_err *err)
{
    memset(sel, 0, sizeof(*sel));
    sel->state = -1;
    char text[32];
    if (admin_query_get(query, "q", sel->q, sizeof(sel->q), err) < 0)
        return -1;
    for (char *p = sel->q; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    int found = admin_query_get(query, "role", sel->role, sizeof(sel->role), err);
    if (found < 0)
        return -1;
    if (found == 1 && sel->role[0] != '\0' && strcmp(sel->role, "connector") != 0 &&
        strcmp(sel->role, "tunneler") != 0)
        return ztr_err_set(err, ZTR_E_INVALID,
                           "query parameter \"role\" must be connector or tunneler");
    found = admin_query_get(query, "state", text, sizeof(text), err);
    if (found < 0)
        return -1;
    if (found == 1 && text[0] != '\0') {
        for (int i = 0; i < FS_COUNT; i++)
            if (strcmp(text, fleet_state_names[i]) == 0)
                sel->state = i;
        if (sel->state < 0)
            return ztr_err_set(err, ZTR_E_INVALID,
                               "query parameter \"state\" must be ONLINE, OFFLINE, EXPIRED or "
                               "REVOKED");
    }
    TRY(query_int(query, "offset", 0, &sel->offset, err));
    TRY(query_int(query, "limit", 1, &sel->limit, err));
    if (sel->limit > NODES_PAGE_MAX)
        sel->limit = NODES_PAGE_MAX;
    return 0;
}

static bool
contains_lower(const char *haystack, const char *needle_lower)
{
    size_t n = strlen(needle_lower);
    for (const char *p = haystack; *p != '\0'; p++) {
        size_t i = 0;
        while (i < n && p[i] != '\0' && tolower((unsigned char)p[i]) == needle_lower[i])
            i++;
        if (i == n)
            return true;
    }
    return n == 0;
}

static bool
node_matches_query(const struct store_node *node, const char *q)
{
    if (q[0] == '\0' || contains_lower(node->name, q) || contains_lower(node->id, q) ||
        contains_lower(node->spiffe_id, q))
        return true;
    json_t *addresses = addresses_value(node->addresses);
    bool found = false;
    size_t i;
    json_t *item;
    json_array_foreach(addresses, i, item) {
        const char *text = json_string_value(item);
        if (text != NULL && contains_lower(text, q))
            found = true;
    }
    json_decref(addresses);
    return found;
}

static bool
node_selected(const struct node_selection *sel, const struct store_node *node,
              enum fleet_state state)
{
    return (sel->state < 0 || (int)state == sel->state) &&
           (sel->role[0] == '\0' || strcmp(node->role, sel->role) == 0) &&
           node_matches_query(node, sel->q);
}

/* Counts one more match; true when it falls on the page asked for. */
static bool
node_on_page(const struct node_selection *sel, size_t *matched)
{
    int64_t index = (int64_t)(*matched)++;
    return index >= sel->offset && (sel->limit == 0 || index < sel->offset + sel->limit);
}

static json_t *
state_counts_json(const size_t states[FS_COUNT])
{
    json_t *counts = json_object();
    for (int i = 0; i < FS_COUNT; i++)
        json_object_set_new(counts, fleet_state_names[i], json_integer((json_int_t)states[i]));
    return counts;
}

struct node_list_walk {
    const struct controller *c;
    const struct node_selection *sel;
    int64_t now;
    json_t *page;
    size_t states[FS_COUNT];
    size_t matched;
    bool failed;
};

static int
visit_node(void *ctx, const struct store_node *node)
{
    struct node_list_walk *walk = ctx;
    enum fleet_state state = fleet_state_of(node, walk->now);
    walk->states[state]++;
    if (!node_selected(walk->sel, node, state) || !node_on_page(walk->sel, &walk->matched))
        return 0;
    json_t *item = node_json(walk->c, node, walk->now);
    if (item == NULL || json_object_set_new(item, "state", json_string(fleet_state_names[state])) != 0 ||
        json_array_append_new(walk->page, item) != 0) {
        walk->failed = true;
        return 1;
    }
    return 0;
}

/* {"nodes": [the page], "total": matches, "offset", "limit", "counts": per
 * state over every node, "now"}. */
static void
route_nodes_list(struct admin_call *call)
{
    struct node_selection sel;
    struct ztr_err err = {0};
    if (parse_node_selection(call->request->query, &sel, &err) != 0) {
        respond_failure(call->response, &err);
        return;
    }
    struct node_list_walk walk = {.c = call->c, .sel = &sel, .now = now_s(call->c),
                                  .page = json_array()};
    int rc = store_node_list(call->c->store, visit_node, &walk, &err);
    if (rc != 0 || walk.failed) {
        respond_list(call, "nodes", walk.page, walk.failed, rc, &err);
        return;
    }
    respond_json(call->response, 200,
                 json_pack("{s:o, s:I, s:I, s:I, s:o, s:I}", "nodes", walk.page, "total",
                           (json_int_t)walk.matched, "offset", (json_int_t)sel.offset, "limit",
                           (json_int_t)sel.limit, "counts", state_counts_json(walk.states),
                           "now", (json_int_t)walk.now));
}

static void
route_node_get(struct admin_call *call)
{
    struct store_node node;
    struct ztr_err err = {0};
    if (store_node_get(call->c->store, call->arg, &node, &err) != 0) {
        respond_failure(call->response, &err);
        return;
    }
    respond_json(call->response, 200, node_json(call->c, &node, now_s(call->c)));
}

static void
route_node_revoke(struct admin_call *call)
{
    static const char *const fields[] = {"reason", NULL};
    struct controller *c = call->c;
    json_t *body = parse_body(call->request, call->response);
    if (body == NULL)
        return;
    struct ztr_err err = {0};
    const char *reason;
    struct store_node node;
    if (check_fields(body, fields, &err) != 0 ||
        field_string(body, "reason", false, STORE_DETAIL_MAX / 2, &reason, &err) != 0 ||
        store_node_get(c->store, call->arg, &node, &err) != 0) {
        respond_failure(call->response, &err);
        json_decref(body);
        return;
    }
    if (reason == NULL || reason[0] == '\0')
        reason = CONTROLLER_REVOKE_REASON;
    if (store_node_revoke(c->store, node.id, reason, &err) != 0) {
        respond_failure(call->response, &err);
        json_decref(body);
        return;
    }
    /* Revoking twice is allowed (idempotent) but counts once. */
    if (!node.revoked)
        c->counters.revocations++;
    if (c->ctl != NULL)
        ctl_server_revoke(c->ctl, node.id, reason);
    push_changes(c);
    record_admin_event(c, node.id, "node revoked id=%s role=%s name=%s reason=%s", node.id,
                       node.role, node.name, reason);
    respond_json(call->response, 200,
                 json_pack("{s:s, s:s, s:s, s:b, s:s}", "id", node.id, "name", node.name, "role",
                           node.role, "revoked", 1, "reason", reason));
    json_decref(body);
}

/* A connector named by id or by name. */
static int
connector_get(struct controller *c, const char *id_or_name, struct store_node *node,
              struct ztr_err *err)
{
    struct pki_spiffe_id id;
    if (store_node_get(c->store, id_or_name, node, err) == 0)
        return 0;
    if (err->code != ZTR_E_NOT_FOUND ||
        pki_spiffe_id_build(c->settings.trust_domain, PKI_ROLE_CONNECTOR, id_or_name, &id,
                            NULL) != 0 ||
        store_node_get_by_spiffe_id(c->store, id.uri, node, err) != 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "no connector has id or name %.128s",
                           id_or_name);
    return 0;
}

/* The resources node serves that no other connector, draining or not,
 * serves: drained, those get no new streams at all. */
static json_t *
sole_resources(struct controller *c, const char *node_id)
{
    json_t *serving = ctl_server_serving(c);
    json_t *sole = json_array();
    json_t *mine = NULL, *connector;
    size_t i, j, k;
    json_array_foreach(serving, i, connector)
        if (strcmp(json_string_value(json_object_get(connector, "id")), node_id) == 0)
            mine = json_object_get(connector, "served");
    json_t *r;
    json_array_foreach(mine, j, r) {
        bool other = false;
        json_array_foreach(serving, i, connector) {
            json_t *served = json_object_get(connector, "served"), *o;
            if (strcmp(json_string_value(json_object_get(connector, "id")), node_id) == 0 ||
                json_is_true(json_object_get(connector, "draining")))
                continue;
            json_array_foreach(served, k, o)
                other = other || json_equal(o, r);
        }
        if (!other)
            json_array_append(sole, r);
    }
    json_decref(serving);
    return sole;
}

#define DRAIN_DEADLINE_DEFAULT_S (10 * 60)
#define DRAIN_DEADLINE_MAX_S (7 * 86400)

static int
parse_drain_deadline(const char *text, int64_t *ms, struct ztr_err *err)
{
    if (text == NULL)
        return 0;
    if (config_parse_duration_ms(text, ms) != 0 || *ms < 1000 ||
        *ms > DRAIN_DEADLINE_MAX_S * 1000)
        return ztr_err_set(err, ZTR_E_INVALID,
                           "field \"deadline\" must be a duration of 1s..7d, e.g. 30s or 10m");
    return 0;
}

/* POST /nodes/{id or name}/drain {"deadline": "10m"}: the connector takes
 * no new streams and closes those still open at the deadline; tunnelers
 * stop choosing it. Kept until undrain, across restarts of either side. */
static void
route_node_drain(struct admin_call *call)
{
    static const char *const fields[] = {"deadline", NULL};
    struct controller *c = call->c;
    json_t *body = parse_body(call->request, call->response);
    if (body == NULL)
        return;
    struct ztr_err err = {0};
    const char *text;
    struct store_node node;
    int64_t deadline_ms = DRAIN_DEADLINE_DEFAULT_S * 1000;
    if (check_fields(body, fields, &err) != 0 ||
        field_string(body, "deadline", false, 32, &text, &err) != 0 ||
        parse_drain_deadline(text, &deadline_ms, &err) != 0 ||
        connector_get(c, call->arg, &node, &err) != 0) {
        respond_failure(call->response, &err);
        json_decref(body);
        return;
    }
    json_decref(body);
    int64_t deadline = now_s(c) + deadline_ms / 1000;
    if (store_node_set_drain(c->store, node.id, STORE_DRAIN_OPERATOR, deadline, NULL, &err) !=
        0) {
        respond_failure(call->response, &err);
        return;
    }
    push_changes(c);
    json_t *sole = sole_resources(c, node.id);
    record_admin_event(c, node.id, "node draining id=%s name=%s deadline=%lld", node.id,
                       node.name, (long long)deadline);
    if (json_array_size(sole) > 0)
        log_warn("drained connector is the only one for some resources",
                 "node=%s name=%s resources=%zu", node.id, node.name, json_array_size(sole));
    respond_json(call->response, 200,
                 json_pack("{s:s, s:s, s:s, s:I, s:o}", "id", node.id, "name", node.name,
                           "state", "draining", "deadline", (json_int_t)deadline,
                           "sole_connector_for", sole));
}

static void
route_node_undrain(struct admin_call *call)
{
    struct controller *c = call->c;
    json_t *body = parse_body(call->request, call->response);
    if (body == NULL)
        return;
    static const char *const fields[] = {NULL};
    struct ztr_err err = {0};
    struct store_node node;
    if (check_fields(body, fields, &err) != 0 || connector_get(c, call->arg, &node, &err) != 0 ||
        store_node_set_drain(c->store, node.id, STORE_DRAIN_NONE, 0, NULL, &err) != 0) {
        respond_failure(call->response, &err);
        json_decref(body);
        return;
    }
    json_decref(body);
    push_changes(c);
    record_admin_event(c, node.id, "node undrained id=%s name=%s", node.id, node.name);
    respond_json(call->response, 200,
                 json_pack("{s:s, s:s, s:s}", "id", node.id, "name", node.name, "state",
                           "serving"));
}

/* The IPs a connector's renewed certificate may name. Only the operator
 * sets them: a connector's hello may announce others, which are ignored. */
static void
route_node_set_addresses(struct admin_call *call)
{
    static const char *const fields[] = {"addresses", NULL};
    struct controller *c = call->c;
    json_t *body = parse_body(call->request, call->response);
    if (body == NULL)
        return;
    struct ztr_err err = {0};
    struct store_node node;
    char *text = NULL;
    int rc = -1;
    const json_t *list = json_object_get(body, "addresses");
    if (check_fields(body, fields, &err) != 0)
        goto out;
    if (!json_is_array(list) || json_array_size(list) > PKI_MAX_IP_SANS) {
        ztr_err_set(&err, ZTR_E_INVALID,
                    "field \"addresses\" must be an array of at most %d IP addresses",
                    PKI_MAX_IP_SANS);
        goto out;
    }
    size_t i;
    const json_t *item;
    json_array_foreach(list, i, item) {
        char host[128];
        uint16_t port;
        struct pki_ip ip;
        const char *value = json_string_value(item);
        if (value != NULL && config_parse_addr(value, host, sizeof(host), &port) != 0)
            snprintf(host, sizeof(host), "%s", value);
        if (value == NULL || pki_ip_parse(host, &ip) != 0) {
            ztr_err_set(&err, ZTR_E_INVALID, "field \"addresses\" must hold IP addresses");
            goto out;
        }
    }
    text = json_dumps(list, JSON_COMPACT);
    if (text == NULL) {
        ztr_err_set(&err, ZTR_E_NOMEM, "out of memory");
        goto out;
    }
    if (store_node_get(c->store, call->arg, &node, &err) != 0 ||
        store_node_set_allowed_addresses(c->store, node.id, text, &err) != 0)
        goto out;
    rc = 0;
    record_admin_event(c, node.id, "node addresses set id=%s name=%s addresses=%s", node.id,
                       node.name, text);
    respond_json(call->response, 200,
                 json_pack("{s:s, s:s, s:O}", "id", node.id, "name", node.name,
                           "allowed_addresses", list));
out:
    if (rc != 0)
        respond_failure(call->response, &err);
    free(text);
    json_decref(body);
}

/* ---- the fleet view ------------------------------------------------------ */

/* What GET /api/admin/fleet was asked for. Conditions combine with OR (a
 * node is listed when it meets any); state narrows the list (AND). None:
 * every node. */
struct fleet_filter {
    bool missed_renewal, expired, flapping, expiring;
    int64_t expiring_within_s;
    struct node_selection sel; /* search, role, state and page */
};

/* A flag parameter: present alone, =1 or =true is on; =0 or =false off. */
static int
query_flag(const char *query, const char *name, bool *out, struct ztr_err *err)
{
    char text[8];
    int found = admin_query_get(query, name, text, sizeof(text), err);
    if (found < 0)
        return -1;
    if (found == 0)
        return 0;
    if (text[0] == '\0' || strcmp(text, "1") == 0 || strcmp(text, "true") == 0)
        *out = true;
    else if (strcmp(text, "0") == 0 || strcmp(text, "false") == 0)
        *out = false;
    else
        return ztr_err_set(err, ZTR_E_INVALID,
                           "query parameter \"%s\" must be empty, 1, true, 0 or false", name);
    return 0;
}

static int
parse_fleet_filter(const char *query, struct fleet_filter *filter, struct ztr_err *err)
{
    memset(filter, 0, sizeof(*filter));
    TRY(parse_node_selection(query, &filter->sel, err));
    TRY(query_flag(query, "missed_renewal", &filter->missed_renewal, err));
    TRY(query_flag(query, "expired", &filter->expired, err));
    TRY(query_flag(query, "flapping", &filter->flapping, err));
    char text[32];
    int found = admin_query_get(query, "expiring_within", text, sizeof(text), err);
    if (found < 0)
        return -1;
    if (found == 1) {
        int64_t ms;
        if (config_parse_duration_ms(text, &ms) != 0 || ms < 1000)
            return ztr_err_set(err, ZTR_E_INVALID,
                               "query parameter \"expiring_within\" must be a duration of at "
                               "least 1s, e.g. 30m or 1h");
        filter->expiring = true;
        filter->expiring_within_s = ms / 1000;
    }
    return 0;
}

/* What one node shows in the fleet view, decided once for the list, the
 * counts and /metrics alike. */
struct fleet_facts {
    enum fleet_state state;
    struct fleet_horizon horizon;
    bool renewal_missed;
    bool expiring; /* within the filter's expiring_within */
    bool have_view;
    struct fleet_node_view view;
};

static void
fleet_facts_of(const struct controller *c, const struct store_node *node, int64_t now,
               int64_t expiring_within_s, struct fleet_facts *out)
{
    memset(out, 0, sizeof(*out));
    out->state = fleet_state_of(node, now);
    fleet_horizon_of(node, c->settings.svid_ttl_s, &out->horizon);
    out->renewal_missed = fleet_renewal_missed(node, &out->horizon, now);
    out->expiring = !node->revoked && node->cert_not_after > now &&
                    node->cert_not_after <= now + expiring_within_s;
    out->have_view = c->fleet != NULL && fleet_node_view(c->fleet, node->id, &out->view);
}

/* {"telemetry.auth.expired": n, ...}: the fleet's live values, else what
 * the store kept (names it does not know are left out). */
static json_t *
fleet_counters_json(const struct store_node *node, const struct fleet_facts *facts)
{
    json_t *out = json_object();
    bool live = facts->have_view && facts->view.have_counters;
    json_t *stored = live ? NULL : json_loads(node->counters, 0, NULL);
    for (int i = 0; i < FLEET_COUNTER_COUNT; i++) {
        if (live) {
            json_object_set_new(out, fleet_counter_name((enum fleet_counter)i),
                                json_integer((json_int_t)facts->view.counters[i]));
            continue;
        }
        json_t *value = json_object_get(stored, fleet_counter_wire_name((enum fleet_counter)i));
        if (json_is_integer(value))
            json_object_set(out, fleet_counter_name((enum fleet_counter)i), value);
    }
    json_decref(stored);
    return out;
}

/* The 5-minute deltas, or null when this controller has not followed the
 * node (no heartbeat since it started, or idle for longer than the window). */
static json_t *
fleet_deltas_json(const struct fleet_facts *facts)
{
    if (!facts->have_view || !facts->view.have_counters)
        return json_null();
    json_t *out = json_object();
    for (int i = 0; i < FLEET_COUNTER_COUNT; i++)
        json_object_set_new(out, fleet_counter_name((enum fleet_counter)i),
                            json_integer((json_int_t)facts->view.deltas[i]));
    return out;
}

static json_t *
fleet_node_json(const struct controller *c, const struct store_node *node,
                const struct fleet_facts *f, const struct fleet_filter *filter, int64_t now)
{
    json_t *flags = json_array();
    if (f->renewal_missed)
        json_array_append_new(flags, json_string("renewal_missed"));
    if (filter->expiring && f->expiring)
        json_array_append_new(flags, json_string("expiring"));
    if (f->state == FS_EXPIRED)
        json_array_append_new(flags, json_string("expired"));
    if (f->view.flapping)
        json_array_append_new(flags, json_string("flapping"));
    if (node->drain != STORE_DRAIN_NONE)
        json_array_append_new(flags, json_string("draining"));
    bool has_cert = node->cert_not_after != 0;
    json_t *item = json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:i, s:I, s:o, s:I, s:I, s:I, s:I, s:b, s:b, s:i, s:o, s:I, "
        "s:o, s:I, s:o}",
        "id", node->id, "name", node->name, "role", node->role, "state",
        fleet_state_names[f->state], "last_seen", (json_int_t)last_seen_of(c, node), "sessions",
        f->view.sessions, "cert_not_after", (json_int_t)node->cert_not_after, "expires_in_s",
        has_cert ? json_integer((json_int_t)(node->cert_not_after - now)) : json_null(),
        "cert_issued_at", (json_int_t)f->horizon.issued_at, "renew_at",
        (json_int_t)f->horizon.renew_at, "renewal_deadline",
        (json_int_t)f->horizon.renew_deadline, "last_renewed_at",
        (json_int_t)node->last_renewed_at, "renewal_missed", f->renewal_missed, "flapping",
        f->view.flapping, "reconnects_5m", (int)f->view.reconnects, "counters",
        fleet_counters_json(node, f), "counters_at",
        (json_int_t)(f->have_view && f->view.have_counters ? f->view.counters_at
                                                            : node->counters_at),
        "deltas_5m", fleet_deltas_json(f), "deltas_window_s",
        (json_int_t)f->view.deltas_window_s, "flags", flags);
    if (item != NULL) {
        json_object_set_new(item, "bundle_version",
                            f->view.bundle_version > 0
                                ? json_integer((json_int_t)f->view.bundle_version)
                                : json_null());
        json_object_set_new(item, "drain", drain_json(node));
    }
    return item;
}

struct fleet_walk {
    const struct controller *c;
    const struct fleet_filter *filter;
    int64_t now;
    json_t *nodes;
    size_t states[FS_COUNT];
    size_t renewal_missed, flapping, expiring_1h;
    size_t matched;
    bool failed;
};

static bool
fleet_listed(const struct fleet_filter *filter, const struct store_node *node,
             const struct fleet_facts *f)
{
    if (!node_selected(&filter->sel, node, f->state))
        return false;
    bool any_condition =
        filter->missed_renewal || filter->expired || filter->flapping || filter->expiring;
    if (!any_condition)
        return true;
    return (filter->missed_renewal && f->renewal_missed) ||
           (filter->expired && f->state == FS_EXPIRED) ||
           (filter->flapping && f->view.flapping) || (filter->expiring && f->expiring);
}

static int
visit_fleet_node(void *ctx, const struct store_node *node)
{
    struct fleet_walk *walk = ctx;
    struct fleet_facts facts;
    fleet_facts_of(walk->c, node, walk->now, walk->filter->expiring_within_s, &facts);
    walk->states[facts.state]++;
    walk->renewal_missed += facts.renewal_missed;
    walk->flapping += facts.view.flapping;
    walk->expiring_1h += !node->revoked && node->cert_not_after > walk->now &&
                         node->cert_not_after <= walk->now + 3600;
    if (!fleet_listed(walk->filter, node, &facts) ||
        !node_on_page(&walk->filter->sel, &walk->matched))
        return 0;
    json_t *item = fleet_node_json(walk->c, node, &facts, walk->filter, walk->now);
    if (item == NULL || json_array_append_new(walk->nodes, item) != 0) {
        walk->failed = true;
        return 1;
    }
    return 0;
}

static json_t *
escalations_json(const struct controller *c)
{
    json_t *list = json_array();
    if (c->fleet == NULL)
        return list;
    struct fleet_escalation x[FLEET_FAILURE_COUNT];
    size_t n = fleet_escalations(c->fleet, x, FLEET_FAILURE_COUNT);
    for (size_t i = 0; i < n; i++) {
        json_t *names = json_array();
        for (size_t k = 0; k < x[i].named; k++)
            json_array_append_new(names, json_text(x[i].names[k]));
        json_array_append_new(list, json_pack("{s:s, s:I, s:o, s:I}", "failure",
                                              fleet_failure_name(x[i].failure), "nodes",
                                              (json_int_t)x[i].nodes, "names", names,
                                              "logged_at", (json_int_t)x[i].logged_at));
    }
    return list;
}

static size_t session_count(const struct controller *c);
static int64_t bundle_version(const struct controller *c);

/* The controller itself, for the fleet summary: it answered, so its loop
 * and store work; how long it has run and what it serves. */
static json_t *
controller_status_json(const struct controller *c, int64_t now)
{
    int64_t uptime = now - c->started_at;
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:s}", "status", "ok", "started_at",
                     (json_int_t)c->started_at, "uptime_s", (json_int_t)(uptime > 0 ? uptime : 0),
                     "sessions", (json_int_t)session_count(c), "bundle_version",
                     (json_int_t)bundle_version(c), "heartbeat_interval_ms",
                     (json_int_t)c->settings.heartbeat_interval_ms, "trust_domain",
                     c->settings.trust_domain);
}

/* GET /api/admin/fleet: every node's state, certificate horizon, counters
 * and 5-minute deltas, the counts per state, and the failures 3 or more
 * nodes share now (seed 000's escalation). */
static void
route_fleet(struct admin_call *call)
{
    const struct controller *c = call->c;
    struct fleet_filter filter;
    struct ztr_err err = {0};
    if (parse_fleet_filter(call->request->query, &filter, &err) != 0) {
        respond_failure(call->response, &err);
        return;
    }
    struct fleet_walk walk = {.c = c, .filter = &filter, .now = now_s(c), .nodes = json_array()};
    int rc = store_node_list(c->store, visit_fleet_node, &walk, &err);
    if (rc != 0 || walk.failed) {
        respond_list(call, "nodes", walk.nodes, walk.failed, rc, &err);
        return;
    }
    respond_json(call->response, 200,
                 json_pack("{s:I, s:i, s:i, s:o, s:I, s:I, s:I, s:o, s:o, s:o, s:I, s:I, s:I}",
                           "now", (json_int_t)walk.now, "window_s", FLEET_WINDOW_S,
                           "escalate_at_nodes", FLEET_ESCALATE_NODES, "counts",
                           state_counts_json(walk.states), "renewal_missed",
                           (json_int_t)walk.renewal_missed, "flapping", (json_int_t)walk.flapping,
                           "expiring_within_1h", (json_int_t)walk.expiring_1h, "escalations",
                           escalations_json(c), "controller", controller_status_json(c, walk.now),
                           "nodes", walk.nodes, "total", (json_int_t)walk.matched, "offset",
                           (json_int_t)filter.sel.offset, "limit", (json_int_t)filter.sel.limit));
}

/* ---- controllers sharing the store ----------------------------------------------- */

static int
visit_controller(void *ctx, const struct store_controller *row)
{
    struct json_list *list = ctx;
    const struct controller *c = list->c;
    /* Alive as the others judge it before they release its nodes. */
    int64_t stale_after = (3 * c->settings.heartbeat_interval_ms + 999) / 1000;
    bool alive = row->last_seen > 0 && row->last_seen >= list->now - stale_after;
    return json_list_add(
        list, json_pack("{s:s, s:s, s:I, s:I, s:b, s:b, s:I}", "id", row->id, "address",
                        row->address, "started_at", (json_int_t)row->started_at, "last_seen",
                        (json_int_t)row->last_seen, "alive", alive, "self",
                        strcmp(row->id, store_controller_self(c->store)) == 0, "nodes_online",
                        (json_int_t)row->nodes_online));
}

static void
route_controllers_list(struct admin_call *call)
{
    struct json_list list = {call->c, json_array(), 0, false};
    struct ztr_err err = {0};
    /* Judged on the clock the beats carry (the database's when shared). */
    int rc = store_clock_s(call->c->store, &list.now, &err);
    if (rc == 0)
        rc = store_controller_list(call->c->store, visit_controller, &list, &err);
    respond_list(call, "controllers", list.array, list.failed, rc, &err);
}

/* ---- allowlist changes and their apply times (revocation SLO) ---------------------- */

static void
route_changes(struct admin_call *call)
{
    int64_t limit = 100;
    struct ztr_err err = {0};
    if (query_int(call->request->query, "limit", 1, &limit, &err) != 0) {
        respond_failure(call->response, &err);
        return;
    }
    if (call->c->changes == NULL) {
        http_respond_error(call->response, 503, "the control plane is not running");
        return;
    }
    respond_json(call->response, 200,
                 changes_json(call->c->changes, limit > CHANGES_MAX ? CHANGES_MAX : (size_t)limit));
}

/* ---- tokens --------------------------------------------------------------- */

static int
visit_token(void *ctx, const struct store_token *token)
{
    struct json_list *list = ctx;
    /* Never the digest: it is all an attacker needs to test guesses offline. */
    return json_list_add(
        list, json_pack("{s:s, s:s, s:s, s:b, s:I, s:I, s:I, s:b, s:b, s:o}", "id", token->id,
                        "role", token->role, "name", token->name, "name_is_prefix",
                        token->name_is_prefix, "uses_left", (json_int_t)token->uses_left,
                        "expires_at", (json_int_t)token->expires_at, "created_at",
                        (json_int_t)token->created_at, "expired", list->now >= token->expires_at,
                        "replace", token->replace, "addresses",
                        addresses_value(token->addresses)));
}

static void
route_tokens_list(struct admin_call *call)
{
    struct json_list list = {call->c, json_array(), now_s(call->c), false};
    struct ztr_err err = {0};
    int rc = store_token_list(call->c->store, visit_token, &list, &err);
    respond_list(call, "tokens", list.array, list.failed, rc, &err);
}

/* Reads and checks the body of POST /api/admin/tokens into request. The
 * strings point into body. */
static int
token_request_from(int64_t default_ttl_s, const json_t *body, struct token_request *request,
                   struct ztr_err *err)
{
    static const char *const fields[] = {"role", "name",    "uses",      "ttl",
                                         "name_prefix", "replace", "addresses", NULL};
    TRY(check_fields(body, fields, err));
    TRY(field_string(body, "role", true, 16, &request->role, err));
    if (strcmp(request->role, "connector") != 0 && strcmp(request->role, "tunneler") != 0)
        return ztr_err_set(err, ZTR_E_INVALID,
                           "field \"role\" must be \"connector\" or \"tunneler\"");
    TRY(field_string(body, "name", true, STORE_NAME_MAX, &request->name, err));

    request->uses = 1;
    const json_t *uses = json_object_get(body, "uses");
    if (uses != NULL && !json_is_null(uses)) {
        if (!json_is_integer(uses) || json_integer_value(uses) < 1)
            return ztr_err_set(err, ZTR_E_INVALID, "field \"uses\" must be an integer >= 1");
        request->uses = json_integer_value(uses);
    }

    request->ttl_s = default_ttl_s;
    const char *ttl;
    TRY(field_string(body, "ttl", false, 32, &ttl, err));
    if (ttl != NULL) {
        int64_t ttl_ms;
        if (config_parse_duration_ms(ttl, &ttl_ms) != 0 || ttl_ms < 1000)
            return ztr_err_set(err, ZTR_E_INVALID,
                               "field \"ttl\" must be a duration of at least 1s, e.g. 30m or 24h");
        request->ttl_s = ttl_ms / 1000;
    }

    request->name_is_prefix = false;
    const json_t *prefix = json_object_get(body, "name_prefix");
    if (prefix != NULL && !json_is_null(prefix)) {
        if (!json_is_boolean(prefix))
            return ztr_err_set(err, ZTR_E_INVALID, "field \"name_prefix\" must be true or false");
        request->name_is_prefix = json_is_true(prefix);
    }

    request->replace = false;
    const json_t *replace = json_object_get(body, "replace");
    if (replace != NULL && !json_is_null(replace)) {
        if (!json_is_boolean(replace))
            return ztr_err_set(err, ZTR_E_INVALID, "field \"replace\" must be true or false");
        request->replace = json_is_true(replace);
    }

    /* What each entry may be is token_create's to check. */
    request->addresses = NULL;
    const json_t *addresses = json_object_get(body, "addresses");
    if (addresses != NULL && !json_is_null(addresses)) {
        if (!json_is_array(addresses))
            return ztr_err_set(err, ZTR_E_INVALID,
                               "field \"addresses\" must be an array of at most %d IP addresses",
                               PKI_MAX_IP_SANS);
        request->addresses = addresses;
    }
    return 0;
}

int
admin_parse_token_request(const char *text, size_t len, int64_t default_ttl_s,
                          struct token_request *request, json_t **body, struct ztr_err *err)
{
    *body = body_object(text, len, err);
    if (*body == NULL)
        return -1;
    if (token_request_from(default_ttl_s, *body, request, err) != 0) {
        json_decref(*body);
        *body = NULL;
        return -1;
    }
    return 0;
}

static void
route_token_create(struct admin_call *call)
{
    struct controller *c = call->c;
    json_t *body = parse_body(call->request, call->response);
    if (body == NULL)
        return;
    struct token_request request = {0};
    struct store_token record = {0};
    struct ztr_err err = {0};
    char *text = NULL;
    if (token_request_from(c->settings.token_ttl_s, body, &request, &err) != 0 ||
        token_create(c, &request, &text, &record, &err) != 0) {
        respond_failure(call->response, &err);
        json_decref(body);
        return;
    }
    bool has_addresses = strcmp(record.addresses, "[]") != 0;
    record_admin_event(c, NULL,
                       "token created id=%s role=%s name=%s%s uses=%lld expires_at=%lld%s%s%s",
                       record.id, record.role, record.name, record.name_is_prefix ? "*" : "",
                       (long long)record.uses_left, (long long)record.expires_at,
                       record.replace ? " replace=true" : "", has_addresses ? " addresses=" : "",
                       has_addresses ? record.addresses : "");
    /* The plaintext leaves in this response and nowhere else. */
    json_t *reply = json_pack("{s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:b, s:o}", "token", text,
                              "id", record.id, "role", record.role, "name", record.name,
                              "name_is_prefix", record.name_is_prefix, "uses_left",
                              (json_int_t)record.uses_left, "expires_at",
                              (json_int_t)record.expires_at, "replace", record.replace,
                              "addresses", addresses_value(record.addresses));
    explicit_bzero(text, strlen(text));
    free(text);
    respond_json(call->response, 201, reply);
    json_decref(body);
}

static void
route_token_delete(struct admin_call *call)
{
    struct ztr_err err = {0};
    if (store_token_delete(call->c->store, call->arg, &err) != 0) {
        respond_failure(call->response, &err);
        return;
    }
    /* Tokens matter only to enrollment, never to a live session: no push. */
    record_admin_event(call->c, NULL, "token deleted id=%s", call->arg);
    respond_json(call->response, 200, json_pack("{s:s, s:b}", "id", call->arg, "deleted", 1));
}

/* ---- resources ------------------------------------------------------------ */

struct resource_list {
    struct json_list list;
    json_t *bound; /* resource -> [connector names] */
};

static int
collect_resource_binding(void *ctx, const struct store_binding *binding)
{
    json_t *bound = ctx;
    json_t *names = json_object_get(bound, binding->resource);
    if (names == NULL) {
        names = json_array();
        if (json_object_set_new(bound, binding->resource, names) != 0)
            return 1;
    }
    return json_array_append_new(names, json_string(binding->connector)) != 0 ? 1 : 0;
}

static int
visit_resource(void *ctx, const struct store_resource *resource)
{
    struct resource_list *rl = ctx;
    json_t *connectors = json_object_get(rl->bound, resource->name);
    return json_list_add(&rl->list,
                         json_pack("{s:s, s:o, s:I, s:o}", "name", resource->name,
                                   "description", json_text(resource->description),
                                   "created_at", (json_int_t)resource->created_at, "connectors",
                                   connectors != NULL ? json_incref(connectors) : json_array()));
}

static void
route_resources_list(struct admin_call *call)
{
    struct resource_list rl = {{call->c, json_array(), now_s(call->c), false}, json_object()};
    struct ztr_err err = {0};
    int rc = store_binding_list(call->c->store, collect_resource_binding, rl.bound, &err);
    if (rc == 0)
        rc = store_resource_list(call->c->store, visit_resource, &rl, &err);
    respond_list(call, "resources", rl.list.array, rl.list.failed, rc, &err);
    json_decref(rl.bound);
}

/* The optional "connectors" field: an array of connector names. */
static int
connectors_field(const struct controller *c, const json_t *body, const json_t **out,
                 struct ztr_err *err)
{
    const json_t *value = json_object_get(body, "connectors");
    *out = NULL;
    if (value == NULL || json_is_null(value))
        return 0;
    if (!json_is_array(value))
        return ztr_err_set(err, ZTR_E_INVALID, "field \"connectors\" must be an array");
    size_t i;
    const json_t *item;
    json_array_foreach(value, i, item) {
        if (!json_is_string(item))
            return ztr_err_set(err, ZTR_E_INVALID,
                               "field \"connectors\" must hold connector names");
        TRY(check_connector_name(c, json_string_value(item), err));
    }
    *out = value;
    return 0;
}

/* The resource and its bindings in one transaction: a failure halfway
 * (a full disk) leaves no resource without the connectors it was given. */
static int
resource_add(struct controller *c, const char *name, const char *description,
             const json_t *connectors, struct ztr_err *err)
{
    size_t count = connectors != NULL ? json_array_size(connectors) : 0;
    const char **names = calloc(count > 0 ? count : 1, sizeof(*names));
    if (names == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    for (size_t i = 0; i < count; i++)
        names[i] = json_string_value(json_array_get(connectors, i));
    int rc = store_resource_add(c->store, name, description, names, count, err);
    free(names);
    return rc;
}

static void
route_resource_add(struct admin_call *call)
{
    static const char *const fields[] = {"name", "description", "connectors", NULL};
    json_t *body = parse_body(call->request, call->response);
    if (body == NULL)
        return;
    struct ztr_err err = {0};
    const char *name, *description;
    const json_t *connectors;
    if (check_fields(body, fields, &err) != 0 ||
        field_string(body, "name", true, STORE_NAME_MAX, &name, &err) != 0 ||
        check_resource_name("name", name, &err) != 0 ||
        field_string(body, "description", false, STORE_DETAIL_MAX, &description, &err) != 0 ||
        connectors_field(call->c, body, &connectors, &err) != 0 ||
        resource_add(call->c, name, description != NULL ? description : "", connectors, &err) !=
            0) {
        respond_failure(call->response, &err);
        json_decref(body);
        return;
    }
    push_changes(call->c);
    record_admin_event(call->c, NULL, "resource added name=%s", name);
    json_t *reply = json_pack("{s:s, s:s}", "name", name, "description",
                              description != NULL ? description : "");
    if (connectors != NULL)
        json_object_set(reply, "connectors", (json_t *)connectors);
    respond_json(call->response, 201, reply);
    json_decref(body);
}

static void
route_resource_delete(struct admin_call *call)
{
    struct ztr_err err = {0};
    if (store_resource_delete(call->c->store, call->arg, &err) != 0) {
        respond_failure(call->response, &err);
        return;
    }
    /* Grants of the resource went with it: connectors must learn now. */
    push_changes(call->c);
    record_admin_event(call->c, NULL, "resource deleted name=%s", call->arg);
    respond_json(call->response, 200, json_pack("{s:s, s:b}", "name", call->arg, "deleted", 1));
}

/* ---- allowlist ------------------------------------------------------------ */

static int
visit_grant(void *ctx, const struct store_grant *grant)
{
    struct json_list *list = ctx;
    return json_list_add(list, json_pack("{s:s, s:s, s:I}", "tunneler", grant->tunneler,
                                         "resource", grant->resource, "created_at",
                                         (json_int_t)grant->created_at));
}

static void
route_allowlist_get(struct admin_call *call)
{
    struct json_list list = {call->c, json_array(), now_s(call->c), false};
    struct ztr_err err = {0};
    int rc = store_allowlist_list(call->c->store, visit_grant, &list, &err);
    if (rc != 0 || list.failed) {
        respond_list(call, "grants", list.array, list.failed, rc, &err);
        return;
    }
    respond_json(call->response, 200,
                 json_pack("{s:I, s:o}", "version",
                           (json_int_t)store_allowlist_version(call->c->store), "grants",
                           list.array));
}

struct grant_input {
    char tunneler[STORE_NAME_MAX + 1];
    char resource[STORE_NAME_MAX + 1];
};

static int
copy_field(const json_t *body, const char *field, char *out, size_t cap, struct ztr_err *err)
{
    const char *value;
    TRY(field_string(body, field, true, cap - 1, &value, err));
    memcpy(out, value, strlen(value) + 1);
    return 0;
}

static int
query_field(const char *query, const char *field, char *out, size_t cap, struct ztr_err *err)
{
    int found = admin_query_get(query, field, out, cap, err);
    if (found < 0)
        return -1;
    if (found == 0 || out[0] == '\0')
        return ztr_err_set(err, ZTR_E_INVALID, "field \"%s\" is required", field);
    return 0;
}

/* {tunneler, resource} from the body, or for DELETE without a body from the
 * query string (some HTTP clients send no body with DELETE). */
static int
grant_from(const struct admin_call *call, struct grant_input *grant, struct ztr_err *err)
{
    static const char *const fields[] = {"tunneler", "resource", NULL};
    const struct http_request *request = call->request;
    bool has_body = request->body != NULL && (request->body_len != 0 || request->body[0] != '\0');
    if (!has_body && strcmp(request->method, "DELETE") == 0) {
        TRY(query_field(request->query, "tunneler", grant->tunneler, sizeof(grant->tunneler),
                        err));
        TRY(query_field(request->query, "resource", grant->resource, sizeof(grant->resource),
                        err));
    } else {
        json_t *body = parse_body(request, call->response);
        if (body == NULL)
            return 1; /* already answered */
        int rc = check_fields(body, fields, err) != 0 ||
                         copy_field(body, "tunneler", grant->tunneler, sizeof(grant->tunneler),
                                    err) != 0 ||
                         copy_field(body, "resource", grant->resource, sizeof(grant->resource),
                                    err) != 0
                     ? -1
                     : 0;
        json_decref(body);
        TRY(rc);
    }
    TRY(check_tunneler_name(call->c, grant->tunneler, err));
    TRY(check_resource_name("resource", grant->resource, err));
    return 0;
}

static void
change_grant(struct admin_call *call, bool allow)
{
    struct controller *c = call->c;
    struct grant_input grant;
    struct ztr_err err = {0};
    int rc = grant_from(call, &grant, &err);
    if (rc > 0)
        return;
    if (rc == 0)
        rc = allow ? store_allow(c->store, grant.tunneler, grant.resource, &err)
                   : store_deny(c->store, grant.tunneler, grant.resource, &err);
    if (rc != 0) {
        respond_failure(call->response, &err);
        return;
    }
    int64_t version = store_allowlist_version(c->store);
    /* Connectors close a removed tunneler's streams on receipt: push now. */
    push_changes(c);
    record_admin_event(c, NULL, "%s tunneler=%s resource=%s allowlist_version=%lld",
                       allow ? "allowed" : "denied", grant.tunneler, grant.resource,
                       (long long)version);
    respond_json(call->response, 200,
                 json_pack("{s:s, s:s, s:b, s:I}", "tunneler", grant.tunneler, "resource",
                           grant.resource, "allowed", allow, "version", (json_int_t)version));
}

/* ---- resource bindings ---------------------------------------------------- */

/* {connector} from the body, or for DELETE without a body from the query
 * string, as for the allowlist. */
static int
connector_from(const struct admin_call *call, char *connector, size_t cap, struct ztr_err *err)
{
    static const char *const fields[] = {"connector", NULL};
    const struct http_request *request = call->request;
    bool has_body = request->body != NULL && (request->body_len != 0 || request->body[0] != '\0');
    if (!has_body && strcmp(request->method, "DELETE") == 0) {
        TRY(query_field(request->query, "connector", connector, cap, err));
    } else {
        json_t *body = parse_body(request, call->response);
        if (body == NULL)
            return 1; /* already answered */
        int rc = check_fields(body, fields, err) != 0 ||
                         copy_field(body, "connector", connector, cap, err) != 0
                     ? -1
                     : 0;
        json_decref(body);
        TRY(rc);
    }
    return check_connector_name(call->c, connector, err);
}

/* Binding changes which connectors tunnelers are handed: push at once, so
 * that an unbound connector stops receiving new streams now. */
static void
change_binding(struct admin_call *call, bool bind)
{
    char connector[STORE_NAME_MAX + 1];
    struct ztr_err err = {0};
    int rc = connector_from(call, connector, sizeof(connector), &err);
    if (rc > 0)
        return;
    if (rc == 0)
        rc = store_resource_bind(call->c->store, call->arg, connector, bind, &err);
    if (rc != 0) {
        respond_failure(call->response, &err);
        return;
    }
    push_changes(call->c);
    record_admin_event(call->c, NULL, "resource %s name=%s connector=%s",
                       bind ? "bound" : "unbound", call->arg, connector);
    respond_json(call->response, 200,
                 json_pack("{s:s, s:s, s:b}", "name", call->arg, "connector", connector, "bound",
                           bind));
}

static void
route_resource_bind(struct admin_call *call)
{
    change_binding(call, true);
}

static void
route_resource_unbind(struct admin_call *call)
{
    change_binding(call, false);
}

static void
route_allow(struct admin_call *call)
{
    change_grant(call, true);
}

static void
route_deny(struct admin_call *call)
{
    change_grant(call, false);
}

/* ---- explain (controller/explain.c) ---------------------------------------- */

static void
route_explain(struct admin_call *call)
{
    explain_route(call->c, call->request, call->response);
}

/* ---- events --------------------------------------------------------------- */

static int
visit_event(void *ctx, const struct store_event *event)
{
    struct json_list *list = ctx;
    return json_list_add(list, json_pack("{s:I, s:I, s:o, s:o, s:o, s:o}", "id",
                                         (json_int_t)event->id, "at", (json_int_t)event->at,
                                         "kind", json_text(event->kind), "node_id",
                                         json_text(event->node_id), "detail",
                                         json_text(event->detail), "source",
                                         json_text(event->source)));
}

/* GET /events: oldest first after `after` (the CLI's follow mode), or with
 * order=desc newest first below `before` (the console's pages); node, kind,
 * since and until narrow it in the database, not in the page. */
static void
route_events(struct admin_call *call)
{
    int64_t limit = EVENTS_DEFAULT_LIMIT;
    char node[STORE_ID_MAX + 1] = "", kind[sizeof(((struct store_event *)0)->kind)] = "";
    char order[8] = "asc";
    char source[STORE_EVENT_SOURCE_MAX + 1] = "";
    struct store_event_filter filter = {0};
    struct ztr_err err = {0};
    const char *q = call->request->query;
    if (query_int(q, "after", 0, &filter.after_id, &err) != 0 ||
        query_int(q, "before", 0, &filter.before_id, &err) != 0 ||
        query_int(q, "since", 0, &filter.since, &err) != 0 ||
        query_int(q, "until", 0, &filter.until, &err) != 0 ||
        query_int(q, "limit", 1, &limit, &err) != 0 ||
        admin_query_get(q, "node", node, sizeof(node), &err) < 0 ||
        admin_query_get(q, "kind", kind, sizeof(kind), &err) < 0 ||
        admin_query_get(q, "source", source, sizeof(source), &err) < 0 ||
        admin_query_get(q, "order", order, sizeof(order), &err) < 0) {
        respond_failure(call->response, &err);
        return;
    }
    if (strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) {
        ztr_err_set(&err, ZTR_E_INVALID, "query parameter \"order\" must be asc or desc");
        respond_failure(call->response, &err);
        return;
    }
    filter.newest_first = strcmp(order, "desc") == 0;
    filter.node_id = node;
    filter.kind = kind;
    filter.source = source;
    filter.limit = (size_t)(limit > EVENTS_MAX_LIMIT ? EVENTS_MAX_LIMIT : limit);
    struct json_list list = {call->c, json_array(), now_s(call->c), false};
    int rc = store_event_query(call->c->store, &filter, visit_event, &list, &err);
    respond_list(call, "events", list.array, list.failed, rc, &err);
}

/* ---- CA ------------------------------------------------------------------- */

static json_t *
ca_description(const struct controller *c)
{
    json_t *cas = ca_set_describe(c->cas);
    return cas != NULL ? cas : json_array();
}

/* How far the current bundle has reached: of the nodes ONLINE now, those
 * whose heartbeat reports it, those on an older one (named, bounded), and
 * those that have not reported since this controller started. An OFFLINE
 * node gets the bundle at its next hello, before anything else. */
#define ROLLOUT_NAMED_MAX 20

struct rollout_walk {
    const struct controller *c;
    int64_t now, version;
    size_t online, holding, behind, unknown;
    json_t *behind_nodes;
};

static int
visit_rollout_node(void *ctx, const struct store_node *node)
{
    struct rollout_walk *walk = ctx;
    if (fleet_state_of(node, walk->now) != FS_ONLINE)
        return 0;
    walk->online++;
    struct fleet_node_view view;
    if (walk->c->fleet == NULL || !fleet_node_view(walk->c->fleet, node->id, &view) ||
        view.bundle_version == 0) {
        walk->unknown++;
        return 0;
    }
    if (view.bundle_version >= walk->version) {
        walk->holding++;
        return 0;
    }
    if (walk->behind++ < ROLLOUT_NAMED_MAX)
        json_array_append_new(walk->behind_nodes,
                              json_pack("{s:s, s:s, s:s, s:I}", "id", node->id, "name",
                                        node->name, "role", node->role, "bundle_version",
                                        (json_int_t)view.bundle_version));
    return 0;
}

static void
route_ca_show(struct admin_call *call)
{
    const struct controller *c = call->c;
    char *pem = NULL;
    size_t len = 0;
    struct ztr_err err = {0};
    if (ca_set_bundle_pem(c->cas, &pem, &len, &err) != 0) {
        respond_failure(call->response, &err);
        return;
    }
    struct rollout_walk walk = {.c = c, .now = now_s(c), .version = ca_set_bundle_version(c->cas),
                                .behind_nodes = json_array()};
    if (store_node_list(c->store, visit_rollout_node, &walk, &err) != 0) {
        json_decref(walk.behind_nodes);
        free(pem);
        respond_failure(call->response, &err);
        return;
    }
    json_t *rollout = json_pack("{s:I, s:I, s:I, s:I, s:I, s:o}", "version",
                                (json_int_t)walk.version, "online", (json_int_t)walk.online,
                                "holding", (json_int_t)walk.holding, "behind",
                                (json_int_t)walk.behind, "unknown", (json_int_t)walk.unknown,
                                "behind_nodes", walk.behind_nodes);
    respond_json(call->response, 200,
                 json_pack("{s:s%, s:I, s:o, s:o}", "bundle", pem, len, "version",
                           (json_int_t)walk.version, "cas", ca_description(c), "rollout",
                           rollout));
    free(pem);
}

static void
route_ca_rotate(struct admin_call *call)
{
    struct controller *c = call->c;
    struct ztr_err err = {0};
    if (ca_set_rotate(c->cas, c->settings.svid_ttl_s, &err) != 0) {
        /* An operator CA is the operator's to rotate: a conflict with how
         * the controller is configured, not a server fault. */
        if (c->settings.ca_cert[0] != '\0')
            http_respond_error(call->response, 409, err.msg);
        else
            respond_failure(call->response, &err);
        return;
    }
    int64_t version = ca_set_bundle_version(c->cas);
    record_admin_event(c, NULL, "CA rotated bundle_version=%lld", (long long)version);
    /* The controller's own certificate must chain to the new signer before
     * agents are told about it, or their next handshake would fail. */
    struct ztr_err refresh_err = {0};
    int refreshed = c->ctl != NULL ? ctl_server_refresh_identity(c->ctl, &refresh_err) : 0;
    push_changes(c);
    if (refreshed != 0) {
        log_error("controller certificate not re-issued after CA rotation", "error=\"%s\"",
                  refresh_err.msg);
        char msg[ZTR_ERR_MSG_MAX + 96];
        snprintf(msg, sizeof(msg),
                 "CA rotated, but the controller certificate was not re-issued: %s",
                 refresh_err.msg);
        http_respond_error(call->response, 500, msg);
        return;
    }
    respond_json(call->response, 200,
                 json_pack("{s:I, s:o}", "version", (json_int_t)version, "cas",
                           ca_description(c)));
}

/* ---- federation ----------------------------------------------------------- */

struct accept_wait {
    struct controller *c;
    struct http_deferred *deferred;
};

/* The peer as the API shows it: its bundle only on the single-peer route. */
static json_t *
peer_value(const struct controller *c, const struct store_peer *peer, bool with_bundle)
{
    json_t *value = federation_peer_json(peer, now_s(c));
    if (!with_bundle)
        json_object_del(value, "bundle");
    return value;
}

static int
visit_peer(void *ctx, const struct store_peer *peer)
{
    struct json_list *list = ctx;
    return json_list_add(list, peer_value(list->c, peer, false));
}

static void
route_peers_list(struct admin_call *call)
{
    struct json_list list = {call->c, json_array(), now_s(call->c), false};
    struct ztr_err err = {0};
    int rc = store_peer_list(call->c->store, visit_peer, &list, &err);
    respond_list(call, "peers", list.array, list.failed, rc, &err);
}

static void
route_peer_get(struct admin_call *call)
{
    struct store_peer *peer = calloc(1, sizeof(*peer));
    struct ztr_err err = {0};
    if (peer == NULL) {
        http_respond_error(call->response, 500, "out of memory");
        return;
    }
    if (store_peer_get_by_name(call->c->store, call->arg, peer, &err) != 0)
        respond_failure(call->response, &err);
    else
        respond_json(call->response, 200, peer_value(call->c, peer, true));
    free(peer);
}

static int
ttl_field(const json_t *body, int64_t *ttl_s, struct ztr_err *err)
{
    const char *ttl;
    *ttl_s = FED_TOKEN_TTL_DEFAULT_S;
    TRY(field_string(body, "ttl", false, 32, &ttl, err));
    int64_t ms;
    if (ttl != NULL && (config_parse_duration_ms(ttl, &ms) != 0 || ms < 1000))
        return ztr_err_set(err, ZTR_E_INVALID,
                           "field \"ttl\" must be a duration of at least 1s, e.g. 1h or 7d");
    if (ttl != NULL)
        *ttl_s = ms / 1000;
    return 0;
}

/* The token leaves in this response and nowhere else. */
static void
respond_token(struct admin_call *call, int status, char *token, const struct store_peer *peer)
{
    json_t *reply = json_pack("{s:s, s:o}", "token", token, "peer",
                              peer_value(call->c, peer, false));
    explicit_bzero(token, strlen(token));
    free(token);
    respond_json(call->response, status, reply);
}

static void
route_peer_propose(struct admin_call *call)
{
    static const char *const known[] = {"name", "url", "ttl", NULL};
    json_t *body = parse_body(call->request, call->response);
    if (body == NULL)
        return;
    const char *name, *url;
    int64_t ttl_s;
    char *token = NULL;
    struct store_peer *peer = calloc(1, sizeof(*peer));
    struct ztr_err err = {0};
    if (peer == NULL || check_fields(body, known, &err) != 0 ||
        field_string(body, "name", true, STORE_NAME_MAX, &name, &err) != 0 ||
        field_string(body, "url", false, STORE_URL_MAX, &url, &err) != 0 ||
        ttl_field(body, &ttl_s, &err) != 0 ||
        federation_propose(call->c, name, url, ttl_s, &token, peer, &err) != 0)
        respond_failure(call->response, peer == NULL ? (ztr_err_set(&err, ZTR_E_NOMEM,
                                                                    "out of memory"), &err)
                                                     : &err);
    else
        respond_token(call, 201, token, peer);
    free(peer);
    json_decref(body);
}

static void
route_peer_token(struct admin_call *call)
{
    static const char *const known[] = {"ttl", NULL};
    json_t *body = parse_body(call->request, call->response);
    if (body == NULL)
        return;
    int64_t ttl_s;
    char *token = NULL;
    struct store_peer *peer = calloc(1, sizeof(*peer));
    struct ztr_err err = {0};
    if (peer == NULL)
        ztr_err_set(&err, ZTR_E_NOMEM, "out of memory");
    if (peer == NULL || check_fields(body, known, &err) != 0 ||
        ttl_field(body, &ttl_s, &err) != 0 ||
        federation_new_token(call->c, call->arg, ttl_s, &token, peer, &err) != 0)
        respond_failure(call->response, &err);
    else
        respond_token(call, 201, token, peer);
    free(peer);
    json_decref(body);
}

/* Blocks for at most FED_ACCEPT_TIMEOUT_MS while this controller dials the
 * proposer: an operator's action, rare, and bounded. */
/* The accept's answer, once A answered (or did not): the request waited,
 * deferred, while the loop went on serving. */
static void
accept_done(void *ctx, int rc, const struct store_peer *peer, const struct ztr_err *err)
{
    struct accept_wait *wait = ctx;
    struct http_response response = {.status = 200};
    if (rc != 0) {
        /* The proposer's refusal is the operator's to read, as it came. */
        if (err->code == ZTR_E_VERIFY)
            http_respond_error(&response, 502, err->msg);
        else
            respond_failure(&response, err);
    } else {
        respond_json(&response, 201, peer_value(wait->c, peer, false));
    }
    http_deferred_respond(wait->deferred, &response);
    free(wait);
}

static void
route_peer_accept(struct admin_call *call)
{
    static const char *const known[] = {"url", "token", "name", NULL};
    json_t *body = parse_body(call->request, call->response);
    if (body == NULL)
        return;
    const char *url, *token, *name;
    struct accept_wait *wait = calloc(1, sizeof(*wait));
    struct ztr_err err = {0};
    if (wait == NULL)
        ztr_err_set(&err, ZTR_E_NOMEM, "out of memory");
    if (wait == NULL || check_fields(body, known, &err) != 0 ||
        field_string(body, "url", true, STORE_URL_MAX, &url, &err) != 0 ||
        field_string(body, "token", true, 16384, &token, &err) != 0 ||
        field_string(body, "name", false, STORE_NAME_MAX, &name, &err) != 0) {
        respond_failure(call->response, &err);
        free(wait);
        json_decref(body);
        return;
    }
    wait->c = call->c;
    wait->deferred = http_defer(call->response);
    if (wait->deferred == NULL) {
        http_respond_error(call->response, 500, "cannot wait for the proposer");
        free(wait);
    } else if (federation_accept_start(call->c, url, token, name, accept_done, wait, &err) != 0) {
        struct http_response response = {.status = 200};
        respond_failure(&response, &err);
        http_deferred_respond(wait->deferred, &response);
        free(wait);
    }
    json_decref(body);
}

static void
peer_action(struct admin_call *call, const char *action)
{
    static const char *const known[] = {"reason", NULL};
    json_t *body = parse_body(call->request, call->response);
    if (body == NULL)
        return;
    const char *reason = NULL;
    struct store_peer *peer = calloc(1, sizeof(*peer));
    struct ztr_err err = {0};
    int rc = peer == NULL ? ztr_err_set(&err, ZTR_E_NOMEM, "out of memory") : 0;
    if (rc == 0)
        rc = check_fields(body, known, &err);
    if (rc == 0)
        rc = field_string(body, "reason", false, STORE_DETAIL_MAX - 64, &reason, &err);
    if (rc == 0 && strcmp(action, "suspend") == 0)
        rc = federation_suspend(call->c, call->arg, reason, peer, &err);
    else if (rc == 0 && strcmp(action, "resume") == 0)
        rc = federation_resume(call->c, call->arg, peer, &err);
    else if (rc == 0)
        rc = federation_revoke(call->c, call->arg, peer, &err);
    if (rc != 0) {
        respond_failure(call->response, &err);
    } else {
        record_admin_event(call->c, NULL, "federation peer %s %s%s%s", peer->name, action,
                           reason != NULL ? " reason=" : "", reason != NULL ? reason : "");
        respond_json(call->response, 200, peer_value(call->c, peer, false));
    }
    free(peer);
    json_decref(body);
}

/* ---- federation grants ------------------------------------------------------ */

static void
route_fed_grants_list(struct admin_call *call)
{
    char peer[STORE_NAME_MAX + 1] = "";
    struct ztr_err err = {0};
    json_t *grants = NULL;
    if (admin_query_get(call->request->query, "peer", peer, sizeof(peer), &err) >= 0)
        grants = federation_grants_json(call->c, peer, &err);
    if (grants == NULL)
        respond_failure(call->response, &err);
    else
        respond_json(call->response, 200, json_pack("{s:o}", "grants", grants));
}

/* expires_at (Unix seconds) or expires_in (a duration from now), not both. */
static int
grant_expiry(const struct controller *c, const json_t *body, int64_t *expires_at,
             struct ztr_err *err)
{
    *expires_at = 0;
    const json_t *at = json_object_get(body, "expires_at");
    const char *in;
    TRY(field_string(body, "expires_in", false, 32, &in, err));
    if (at != NULL && in != NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "give expires_at or expires_in, not both");
    if (at != NULL) {
        if (!json_is_integer(at) || json_integer_value(at) <= 0)
            return ztr_err_set(err, ZTR_E_INVALID,
                               "field \"expires_at\" must be Unix seconds (a positive integer)");
        *expires_at = json_integer_value(at);
    } else if (in != NULL) {
        int64_t ms;
        if (config_parse_duration_ms(in, &ms) != 0 || ms < 1000)
            return ztr_err_set(err, ZTR_E_INVALID,
                               "field \"expires_in\" must be a duration of at least 1s, e.g. 2h");
        *expires_at = now_s(c) + ms / 1000;
    }
    return 0;
}

static void
route_fed_grant_add(struct admin_call *call)
{
    static const char *const known[] = {"peer",       "resource",   "tunneler", "source_cidrs",
                                        "expires_at", "expires_in", NULL};
    json_t *body = parse_body(call->request, call->response);
    if (body == NULL)
        return;
    struct fed_grant_request req = {0};
    const char *cidrs[FED_GRANT_CIDRS_MAX];
    struct store_fed_grant *grant = calloc(1, sizeof(*grant));
    struct ztr_err err = {0};
    int rc = grant == NULL ? ztr_err_set(&err, ZTR_E_NOMEM, "out of memory") : 0;
    if (rc == 0)
        rc = check_fields(body, known, &err);
    if (rc == 0)
        rc = field_string(body, "peer", true, STORE_NAME_MAX, &req.peer, &err);
    if (rc == 0)
        rc = field_string(body, "resource", true, STORE_NAME_MAX, &req.resource, &err);
    if (rc == 0)
        rc = field_string(body, "tunneler", true, PKI_SPIFFE_ID_MAX, &req.tunneler, &err);
    if (rc == 0)
        rc = grant_expiry(call->c, body, &req.expires_at, &err);
    const json_t *list = json_object_get(body, "source_cidrs");
    if (rc == 0 && list != NULL &&
        (!json_is_array(list) || json_array_size(list) > FED_GRANT_CIDRS_MAX))
        rc = ztr_err_set(&err, ZTR_E_INVALID,
                         "field \"source_cidrs\" must be a list of at most %d CIDRs",
                         FED_GRANT_CIDRS_MAX);
    size_t i;
    const json_t *item;
    json_array_foreach(list, i, item) {
        if (rc == 0 && !json_is_string(item))
            rc = ztr_err_set(&err, ZTR_E_INVALID, "field \"source_cidrs\" must hold strings");
        if (rc == 0)
            cidrs[req.cidr_count++] = json_string_value(item);
    }
    req.cidrs = cidrs;
    if (rc == 0)
        rc = federation_grant(call->c, &req, grant, &err);
    if (rc != 0)
        respond_failure(call->response, &err);
    else
        respond_json(call->response, 201, federation_grant_json(grant, req.peer, now_s(call->c)));
    free(grant);
    json_decref(body);
}

static void
route_fed_grant_delete(struct admin_call *call)
{
    struct store_fed_grant *grant = calloc(1, sizeof(*grant));
    struct ztr_err err = {0};
    if (grant == NULL)
        ztr_err_set(&err, ZTR_E_NOMEM, "out of memory");
    if (grant == NULL || federation_grant_revoke(call->c, call->arg, grant, &err) != 0)
        respond_failure(call->response, &err);
    else
        respond_json(call->response, 200,
                     json_pack("{s:s, s:s, s:s, s:b}", "id", grant->id, "resource",
                               grant->resource, "tunneler", grant->tunneler, "revoked", 1));
    free(grant);
}

static void
route_peer_suspend(struct admin_call *call)
{
    peer_action(call, "suspend");
}

static void
route_peer_resume(struct admin_call *call)
{
    peer_action(call, "resume");
}

static void
route_peer_revoke(struct admin_call *call)
{
    peer_action(call, "revoke");
}

/* ---- the admin server ----------------------------------------------------- */

static const struct route admin_routes[] = {
    {"GET", ADMIN_PREFIX "/nodes", route_nodes_list},
    {"GET", ADMIN_PREFIX "/fleet", route_fleet},
    {"GET", ADMIN_PREFIX "/controllers", route_controllers_list},
    {"GET", ADMIN_PREFIX "/changes", route_changes},
    {"GET", ADMIN_PREFIX "/nodes/*", route_node_get},
    {"POST", ADMIN_PREFIX "/nodes/*/revoke", route_node_revoke},
    {"POST", ADMIN_PREFIX "/nodes/*/drain", route_node_drain},
    {"POST", ADMIN_PREFIX "/nodes/*/undrain", route_node_undrain},
    {"POST", ADMIN_PREFIX "/nodes/*/addresses", route_node_set_addresses},
    {"GET", ADMIN_PREFIX "/tokens", route_tokens_list},
    {"POST", ADMIN_PREFIX "/tokens", route_token_create},
    {"DELETE", ADMIN_PREFIX "/tokens/*", route_token_delete},
    {"GET", ADMIN_PREFIX "/resources", route_resources_list},
    {"POST", ADMIN_PREFIX "/resources", route_resource_add},
    {"DELETE", ADMIN_PREFIX "/resources/*", route_resource_delete},
    {"POST", ADMIN_PREFIX "/resources/*/connectors", route_resource_bind},
    {"DELETE", ADMIN_PREFIX "/resources/*/connectors", route_resource_unbind},
    {"GET", ADMIN_PREFIX "/allowlist", route_allowlist_get},
    {"POST", ADMIN_PREFIX "/allowlist", route_allow},
    {"DELETE", ADMIN_PREFIX "/allowlist", route_deny},
    {"GET", ADMIN_PREFIX "/events", route_events},
    {"GET", ADMIN_PREFIX "/explain", route_explain},
    {"GET", ADMIN_PREFIX "/ca", route_ca_show},
    {"POST", ADMIN_PREFIX "/ca/rotate", route_ca_rotate},
    {"GET", ADMIN_PREFIX "/federation/peers", route_peers_list},
    {"POST", ADMIN_PREFIX "/federation/peers", route_peer_propose},
    {"GET", ADMIN_PREFIX "/federation/peers/*", route_peer_get},
    {"POST", ADMIN_PREFIX "/federation/peers/*/token", route_peer_token},
    {"POST", ADMIN_PREFIX "/federation/peers/*/suspend", route_peer_suspend},
    {"POST", ADMIN_PREFIX "/federation/peers/*/resume", route_peer_resume},
    {"POST", ADMIN_PREFIX "/federation/peers/*/revoke", route_peer_revoke},
    {"POST", ADMIN_PREFIX "/federation/accept", route_peer_accept},
    {"GET", ADMIN_PREFIX "/federation/grants", route_fed_grants_list},
    {"POST", ADMIN_PREFIX "/federation/grants", route_fed_grant_add},
    {"DELETE", ADMIN_PREFIX "/federation/grants/*", route_fed_grant_delete},
};

static bool
under_admin_prefix(const char *path)
{
    size_t n = strlen(ADMIN_PREFIX);
    return strncmp(path, ADMIN_PREFIX, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Runs as soon as the headers are in: an unauthenticated client is
 * answered 401 before a byte of its body is read or buffered. */
static bool
admin_gate(void *ctx, const struct http_request *request, struct http_response *response)
{
    const struct controller *c = ctx;
    if (!under_admin_prefix(request->path) || authorized(c, request->authorization))
        return true;
    log_warn("admin request refused", "method=%s reason=unauthorized", request->method);
    http_respond_error(response, 401, "unauthorized");
    return false;
}

static void
admin_handle(void *ctx, const struct http_request *request, struct http_response *response)
{
    struct admin_call call = {ctx, request, "", response};
    if (!under_admin_prefix(request->path)) {
        http_respond_error(response, 404, "not found");
        return;
    }
    /* Before routing, so that without the token even the set of paths
     * stays unknown. Neither the header nor the path is logged: the first
     * may be a near-miss of the secret. */
    if (!authorized(call.c, request->authorization)) {
        log_warn("admin request refused", "method=%s reason=unauthorized", request->method);
        http_respond_error(response, 401, "unauthorized");
        return;
    }
    dispatch(admin_routes, sizeof(admin_routes) / sizeof(admin_routes[0]), &call);
}

/* ---- /health and /metrics ------------------------------------------------- */

/* ztr_node_cert_expiry_seconds has one series per node, bounded: the
 * NODE_EXPIRY_SERIES_MAX certificates that run out first, counting those
 * that ran out within the last NODE_EXPIRY_SHOWN_AFTER_S (so an expiry
 * alert sees the value go negative instead of the series vanishing). */
#define NODE_EXPIRY_SERIES_MAX 100
#define NODE_EXPIRY_SHOWN_AFTER_S 86400

struct expiry_sample {
    int64_t not_after;
    char name[STORE_NAME_MAX + 1];
    char role[16];
};

struct node_stats {
    size_t total;
    size_t online;
    size_t draining;        /* connectors, not revoked */
    int64_t now;
    struct metrics *expiry; /* ztr_svid_expiry_seconds samples, or NULL */
    /* For /metrics only (fleet != NULL): fleet states and the soonest
     * expiries, kept sorted, at most NODE_EXPIRY_SERIES_MAX. */
    const struct controller *fleet_of;
    size_t states[FS_COUNT];
    size_t renewal_missed, flapping;
    struct expiry_sample *soonest;
    size_t soonest_count;
    size_t expiry_candidates;
};

/* Inserts into the sorted, bounded list of soonest expiries. */
static void
keep_soonest(struct node_stats *stats, const struct store_node *node)
{
    stats->expiry_candidates++;
    size_t n = stats->soonest_count;
    if (n == NODE_EXPIRY_SERIES_MAX && node->cert_not_after >= stats->soonest[n - 1].not_after)
        return;
    size_t at = n < NODE_EXPIRY_SERIES_MAX ? n : n - 1;
    while (at > 0 && stats->soonest[at - 1].not_after > node->cert_not_after) {
        if (at < NODE_EXPIRY_SERIES_MAX)
            stats->soonest[at] = stats->soonest[at - 1];
        at--;
    }
    struct expiry_sample *slot = &stats->soonest[at];
    slot->not_after = node->cert_not_after;
    snprintf(slot->name, sizeof(slot->name), "%s", node->name);
    snprintf(slot->role, sizeof(slot->role), "%s", node->role);
    if (n < NODE_EXPIRY_SERIES_MAX)
        stats->soonest_count++;
}

static void
count_fleet_node(struct node_stats *stats, const struct store_node *node)
{
    struct fleet_facts facts;
    fleet_facts_of(stats->fleet_of, node, stats->now, 0, &facts);
    stats->states[facts.state]++;
    stats->renewal_missed += facts.renewal_missed;
    stats->flapping += facts.view.flapping;
    if (!node->revoked && node->cert_not_after != 0 &&
        node->cert_not_after > stats->now - NODE_EXPIRY_SHOWN_AFTER_S)
        keep_soonest(stats, node);
}

static int
visit_node_stats(void *ctx, const struct store_node *node)
{
    struct node_stats *stats = ctx;
    stats->total++;
    if (node->status == STORE_ONLINE)
        stats->online++;
    if (node->drain != STORE_DRAIN_NONE && !node->revoked)
        stats->draining++;
    if (stats->fleet_of != NULL)
        count_fleet_node(stats, node);
    /* A revoked node's certificate is dead weight for expiry alerts. */
    if (stats->expiry != NULL && !node->revoked && node->cert_not_after != 0) {
        metrics_printf(stats->expiry, "ztr_svid_expiry_seconds{node=\"");
        metrics_label_value(stats->expiry, node->name);
        metrics_printf(stats->expiry, "\",role=\"");
        metrics_label_value(stats->expiry, node->role);
        metrics_printf(stats->expiry, "\"} %lld\n", (long long)(node->cert_not_after - stats->now));
    }
    return 0;
}

static size_t
session_count(const struct controller *c)
{
    return c->ctl != NULL ? ctl_server_session_count(c->ctl) : 0;
}

static int64_t
bundle_version(const struct controller *c)
{
    return c->cas != NULL ? ca_set_bundle_version(c->cas) : 0;
}

static void
route_health(struct admin_call *call)
{
    const struct controller *c = call->c;
    struct node_stats stats = {.now = now_s(c)};
    struct ztr_err err = {0};
    if (store_node_list(c->store, visit_node_stats, &stats, &err) != 0) {
        log_error("health check failed", "error=\"%s\"", err.msg);
        respond_json(call->response, 503,
                     json_pack("{s:s, s:s}", "status", "error", "error", err.msg));
        return;
    }
    int64_t uptime = stats.now - c->started_at;
    struct build_info build;
    build_info_get(&build);
    struct store_writes writes;
    store_writes_get(c->store, &writes);
    json_t *reply = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:{s:s, s:s, s:s, s:s}}", "status",
                           "ok", "uptime_s", (json_int_t)(uptime > 0 ? uptime : 0), "sessions",
                           (json_int_t)session_count(c), "nodes_online",
                           (json_int_t)stats.online, "nodes_total", (json_int_t)stats.total,
                           "bundle_version", (json_int_t)bundle_version(c), "build", "version",
                           build.version, "wolfssl", build.wolfssl, "wolfssl_asm",
                           build.wolfssl_asm, "build", build.build);
    /* The store's writability: changes are refused (503) while unavailable,
     * sessions and heartbeats go on from memory. */
    if (reply != NULL &&
        (json_object_set_new(reply, "store",
                             json_string(writes.writable ? "writable" : "unavailable")) != 0 ||
         (!writes.writable &&
          json_object_set_new(reply, "store_error", json_text(writes.reason)) != 0))) {
        json_decref(reply);
        reply = NULL;
    }
    respond_json(call->response, 200, reply);
}

static const struct metrics_row counter_metrics[] = {
    {"ztr_controller_enrollments_total", "counter", "Agents enrolled with a token.",
     offsetof(struct controller_counters, enrollments)},
    {"ztr_controller_enrollment_denied_total", "counter", "Enrollments refused.",
     offsetof(struct controller_counters, enrollment_denied)},
    {"ztr_controller_renewals_total", "counter", "Certificates renewed over the control stream.",
     offsetof(struct controller_counters, renewals)},
    {"ztr_controller_reauth_total", "counter",
     "Nodes re-authenticated by proof of possession after an expiry.",
     offsetof(struct controller_counters, reauths)},
    {"ztr_controller_reauth_denied_total", "counter", "Re-authentications refused.",
     offsetof(struct controller_counters, reauth_denied)},
    {"ztr_controller_renewal_denied_total", "counter", "Renewals refused.",
     offsetof(struct controller_counters, renewal_denied)},
    {"ztr_controller_sessions_accepted_total", "counter", "Control sessions accepted.",
     offsetof(struct controller_counters, sessions_accepted)},
    {"ztr_controller_sessions_rejected_total", "counter", "Control sessions rejected.",
     offsetof(struct controller_counters, sessions_rejected)},
    {"ztr_controller_connections_refused_total", "counter",
     "Control connections closed at accept: too many unauthenticated ones from their source, "
     "or too many sessions.",
     offsetof(struct controller_counters, connections_refused)},
    {"ztr_controller_enrollment_rate_limited_total", "counter",
     "Enrollments refused unread: their source had too many denied enrollments this minute.",
     offsetof(struct controller_counters, enroll_rate_limited)},
    {"ztr_controller_hellos_rate_limited_total", "counter",
     "Control sessions refused at hello: their node started too many this minute.",
     offsetof(struct controller_counters, hellos_rate_limited)},
    {"ztr_controller_heartbeats_total", "counter", "Heartbeats received.",
     offsetof(struct controller_counters, heartbeats)},
    {"ztr_controller_revocations_total", "counter", "Nodes revoked.",
     offsetof(struct controller_counters, revocations)},
    {"ztr_controller_frames_in_total", "counter", "Control frames received.",
     offsetof(struct controller_counters, frames_in)},
    {"ztr_controller_frames_out_total", "counter", "Control frames sent.",
     offsetof(struct controller_counters, frames_out)},
    {"ztr_federation_accepts_total", "counter", "Federation peers accepted (proposer side).",
     offsetof(struct controller_counters, fed_accepts)},
    {"ztr_federation_accept_denied_total", "counter",
     "Federation accepts refused (token mismatch, required, used, expired).",
     offsetof(struct controller_counters, fed_accept_denied)},
    {"ztr_federation_accept_rate_limited_total", "counter",
     "Federation accepts refused unread: their source had too many failures this minute.",
     offsetof(struct controller_counters, fed_accept_rate_limited)},
    {"ztr_federation_links_refused_total", "counter",
     "Federation link handshakes refused: a certificate of an unknown CA or trust domain.",
     offsetof(struct controller_counters, fed_links_refused)},
    {"ztr_federation_heartbeats_total", "counter", "Federation heartbeats received.",
     offsetof(struct controller_counters, fed_heartbeats)},
    {"ztr_controller_explain_requests_total", "counter",
     "Explain requests sent to connectors (controller explain --connector).",
     offsetof(struct controller_counters, explain_asks)},
    {"ztr_controller_explain_answers_refused_total", "counter",
     "Explain answers dropped: no request outstanding on that session, or another id.",
     offsetof(struct controller_counters, explain_answers_refused)},
};

static void
write_fleet_metrics(struct metrics *m, const struct controller *c, const struct node_stats *stats)
{
    metrics_family(m, "ztr_nodes", "gauge",
                   "Enrolled nodes by state: REVOKED, else EXPIRED (certificate ran out), else "
                   "ONLINE or OFFLINE.");
    for (int i = 0; i < FS_COUNT; i++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "state=\"%s\"", fleet_state_names[i]);
        metrics_u64(m, "ztr_nodes", labels, stats->states[i]);
    }
    metrics_gauge(m, "ztr_nodes_renewal_missed",
                  "Nodes past 60% of their certificate's life without a renewal.", NULL,
                  (int64_t)stats->renewal_missed);
    metrics_gauge(m, "ztr_nodes_flapping", "Nodes with 3 or more reconnects in 5 minutes.", NULL,
                  (int64_t)stats->flapping);
    metrics_family(m, "ztr_node_cert_expiry_seconds", "gauge",
                   "Time left on a node's certificate (negative: expired); only the 100 that "
                   "run out first, expired within a day included.");
    for (size_t i = 0; i < stats->soonest_count; i++) {
        metrics_printf(m, "ztr_node_cert_expiry_seconds{node=\"");
        metrics_label_value(m, stats->soonest[i].name);
        metrics_printf(m, "\",role=\"");
        metrics_label_value(m, stats->soonest[i].role);
        metrics_printf(m, "\"} %lld\n", (long long)(stats->soonest[i].not_after - stats->now));
    }
    metrics_gauge(m, "ztr_node_cert_expiry_omitted",
                  "Nodes left out of ztr_node_cert_expiry_seconds by its bound.", NULL,
                  (int64_t)(stats->expiry_candidates - stats->soonest_count));
    metrics_counter(m, "ztr_controller_fleet_escalations_total",
                    "Escalation lines logged: 3 or more nodes failing the same way in 5 minutes.",
                    NULL, c->fleet != NULL ? fleet_escalations_logged(c->fleet) : 0);
}

static void
write_metrics(struct metrics *m, const struct controller *c, const struct node_stats *stats,
              const char *expiry_samples)
{
    metrics_rows(m, counter_metrics, sizeof(counter_metrics) / sizeof(counter_metrics[0]),
                 &c->counters, NULL);
    metrics_gauge(m, "ztr_controller_sessions", "Live control sessions.", NULL,
                  (int64_t)session_count(c));
    metrics_family(m, "ztr_controller_nodes", "gauge", "Enrolled nodes by status.");
    metrics_u64(m, "ztr_controller_nodes", "status=\"online\"", stats->online);
    metrics_u64(m, "ztr_controller_nodes", "status=\"offline\"", stats->total - stats->online);
    metrics_gauge(m, "ztr_controller_connectors_draining",
                  "Connectors draining: the operator's drain, or their own before they stop.",
                  NULL, (int64_t)stats->draining);
    metrics_gauge(m, "ztr_controller_bundle_version", "Version of the trust bundle.", NULL,
                  bundle_version(c));
    if (c->changes != NULL)
        changes_metrics(c->changes, m);
    metrics_gauge(m, "ztr_controller_allowlist_version", "Version of the allowlist.", NULL,
                  store_allowlist_version(c->store));
    struct store_writes writes;
    store_writes_get(c->store, &writes);
    metrics_gauge(m, "ztr_store_writable",
                  "1 while the store takes writes; 0 after a write failed (locked, full, I/O).",
                  NULL, writes.writable ? 1 : 0);
    metrics_family(m, "ztr_store_errors_total", "counter",
                   "Write transactions that failed because of the database: kind busy (locked "
                   "past the busy timeout), full (disk full) or io (I/O error).");
    for (int k = 0; k < STORE_FAULT_KINDS; k++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "kind=\"%s\"", store_fault_kind_name(k));
        metrics_u64(m, "ztr_store_errors_total", labels, writes.errors[k]);
    }
    metrics_family(m, "ztr_svid_expiry_seconds", "gauge",
                   "Time left on each node's current certificate.");
    metrics_printf(m, "%s", expiry_samples);
    write_fleet_metrics(m, c, stats);
    federation_write_metrics(c, m);
    build_info_metric(m);
}

static void
route_metrics(struct admin_call *call)
{
    const struct controller *c = call->c;
    struct node_stats stats = {.now = now_s(c), .expiry = metrics_new(), .fleet_of = c,
                               .soonest = calloc(NODE_EXPIRY_SERIES_MAX, sizeof(*stats.soonest))};
    struct metrics *m = metrics_new();
    char *expiry = NULL, *text = NULL;
    size_t expiry_len = 0, text_len = 0;
    struct ztr_err err = {0};
    if (stats.expiry == NULL || m == NULL || stats.soonest == NULL)
        goto out_of_memory;
    if (store_node_list(c->store, visit_node_stats, &stats, &err) != 0) {
        respond_failure(call->response, &err);
        goto out;
    }
    expiry = metrics_take(stats.expiry, &expiry_len);
    if (expiry == NULL)
        goto out_of_memory;
    write_metrics(m, c, &stats, expiry);
    text = metrics_take(m, &text_len);
    if (text == NULL)
        goto out_of_memory;
    call->response->status = 200;
    call->response->content_type = "text/plain; version=0.0.4";
    call->response->body = text;
    call->response->body_len = text_len;
    goto out;
out_of_memory:
    http_respond_error(call->response, 500, "out of memory");
out:
    free(expiry);
    free(stats.soonest);
    metrics_free(stats.expiry);
    metrics_free(m);
}

static const struct route health_routes[] = {
    {"GET", "/health", route_health},
    {"GET", "/metrics", route_metrics},
};

static void
health_handle(void *ctx, const struct http_request *request, struct http_response *response)
{
    struct admin_call call = {ctx, request, "", response};
    dispatch(health_routes, sizeof(health_routes) / sizeof(health_routes[0]), &call);
}

/* ---- start and stop ------------------------------------------------------- */

int
admin_start(struct controller *c, struct ztr_err *err)
{
    /* The bind error is returned as is: it already reads `listen
     * 127.0.0.1:8080: bind: address already in use`, the runbook's words. */
    const struct http_tls *tls = admin_tls_credentials(c->admin_tls);
    TRY(http_server_start_tls(c->loop, c->settings.admin_listen, tls, admin_handle, c,
                              &c->admin_http, err));
    http_server_set_gate(c->admin_http, admin_gate);
    if (c->admin_token == NULL || c->admin_token[0] == '\0')
        log_warn("admin API has no ADMIN_AUTH_TOKEN: every request will be refused", NULL);
    log_info("admin API listening", "addr=%s port=%u tls=%s", c->settings.admin_listen,
             (unsigned)http_server_port(c->admin_http), tls != NULL ? "true" : "false");
    if (c->settings.health_listen[0] == '\0')
        return 0;
    if (http_server_start(c->loop, c->settings.health_listen, health_handle, c, &c->health_http,
                          err) != 0) {
        http_server_stop(c->admin_http);
        c->admin_http = NULL;
        return -1;
    }
    log_info("health and metrics listening", "addr=%s port=%u", c->settings.health_listen,
             (unsigned)http_server_port(c->health_http));
    return 0;
}

void
admin_stop(struct controller *c)
{
    http_server_stop(c->health_http);
    c->health_http = NULL;
    http_server_stop(c->admin_http);
    c->admin_http = NULL;
}
