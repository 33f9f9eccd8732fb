/*
 * The admin API, /health, /metrics and the admin CLI, in process: a real
 * store in a temporary directory on a manual clock, a real managed CA set,
 * real tokens, and the HTTP servers on a real libev loop on loopback.
 *
 * The control-plane server is faked here (struct ctl_server and the four
 * ctl_server_* functions admin.c calls), so the tests can see every push,
 * revocation and identity refresh the admin API asks for. Nothing else in
 * the test binary references ctl_server.o, so the linker never pulls the
 * real one in beside the fake.
 *
 * The HTTP client (libcurl, blocking) runs on a helper thread while the
 * test thread runs the loop that serves it; every server-side object is
 * touched by the test thread only.
 */
#include "tests/unit/support.h"

#include <ev.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "net/http.h"
#include "controller/http_client.h"
#include "base/log.h"
#include "controller/controller.h"
#include "pki/pki.h"

#define TD "example.org"
#define ADMIN_TOKEN "unit-test-admin-token-0123456789abcdef"
#define START_MS 1700000000000LL
#define SVID_TTL_S 3600

/* ---- the fake control-plane server ---------------------------------------- */

struct ctl_server {
    int pushes;
    int revokes;
    int refreshes;
    size_t sessions;
    char revoked_id[STORE_ID_MAX + 1];
    char revoked_reason[256];
};

void
ctl_server_push_all(struct ctl_server *server)
{
    server->pushes++;
}

void
ctl_server_revoke(struct ctl_server *server, const char *node_id, const char *reason)
{
    server->revokes++;
    snprintf(server->revoked_id, sizeof(server->revoked_id), "%s", node_id);
    snprintf(server->revoked_reason, sizeof(server->revoked_reason), "%s", reason);
}

/* What the push snapshot would say serves what (NULL: nothing). */
static json_t *serving_now;

json_t *
ctl_server_serving(struct controller *c)
{
    (void)c;
    return serving_now != NULL ? json_incref(serving_now) : json_array();
}

size_t
ctl_server_session_count(const struct ctl_server *server)
{
    return server->sessions;
}

int
ctl_server_explain_ask(struct ctl_server *server, const char *node_id, const char *tunneler,
                       const char *resource, int64_t timeout_ms, ctl_explain_done_fn done,
                       void *ctx, struct ztr_err *err)
{
    (void)server, (void)node_id, (void)tunneler, (void)resource, (void)timeout_ms;
    (void)done, (void)ctx;
    return ztr_err_set(err, ZTR_E_NOT_FOUND,
                       "connector has no live control stream to this controller");
}

int
ctl_server_refresh_identity(struct ctl_server *server, struct ztr_err *err)
{
    (void)err;
    server->refreshes++;
    return 0;
}

/* ---- fixture -------------------------------------------------------------- */

struct fixture {
    char *dir;
    struct ztr_clock clock;
    struct ev_loop *loop;
    ev_async done;
    struct ctl_server ctl;
    struct controller c;
    char admin_base[64];
    char health_base[64];
};

static void
init_controller(struct fixture *f, struct controller *c)
{
    memset(c, 0, sizeof(*c));
    c->loop = f->loop;
    c->clock = &f->clock;
    snprintf(c->settings.trust_domain, sizeof(c->settings.trust_domain), "%s", TD);
    snprintf(c->settings.state_dir, sizeof(c->settings.state_dir), "%s", f->dir);
    snprintf(c->settings.admin_listen, sizeof(c->settings.admin_listen), "127.0.0.1:0");
    snprintf(c->settings.health_listen, sizeof(c->settings.health_listen), "127.0.0.1:0");
    c->settings.svid_ttl_s = SVID_TTL_S;
    c->settings.heartbeat_interval_ms = 10000;
    c->settings.token_ttl_s = 86400;
    c->admin_token = strdup(ADMIN_TOKEN);
    assert_non_null(c->admin_token);
    c->started_at = clock_wall_s(&f->clock) - 42;
}

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    test_log_capture_start();
    f->dir = test_mkdtemp();
    clock_manual_init(&f->clock, START_MS);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(f->loop);
    struct controller *c = &f->c;
    init_controller(f, c);
    struct ztr_err err = {0};
    char *db = test_path(f->dir, "controller.db");
    assert_int_equal(store_open(db, &f->clock, &c->store, &err), 0);
    free(db);
    assert_int_equal(ca_set_open(&c->settings, &f->clock, &c->cas, &err), 0);
    assert_int_equal(fleet_new(c->store, &f->clock, SVID_TTL_S, &c->fleet, &err), 0);
    c->ctl = &f->ctl;
    assert_int_equal(admin_start(c, &err), 0);
    snprintf(f->admin_base, sizeof(f->admin_base), "http://127.0.0.1:%u",
             (unsigned)http_server_port(c->admin_http));
    snprintf(f->health_base, sizeof(f->health_base), "http://127.0.0.1:%u",
             (unsigned)http_server_port(c->health_http));
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    admin_stop(&f->c);
    assert_null(f->c.admin_http);
    assert_null(f->c.health_http);
    /* The admin token must never reach a log line. */
    assert_null(strstr(test_log_captured(), ADMIN_TOKEN));
    test_log_capture_stop();
    ca_set_free(f->c.cas);
    fleet_free(f->c.fleet);
    store_close(f->c.store);
    free(f->c.admin_token);
    ev_loop_destroy(f->loop);
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static int
group_setup(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    return pki_init(&err);
}

static int
group_teardown(void **state)
{
    (void)state;
    pki_cleanup();
    return 0;
}

/* ---- running a client beside the loop ------------------------------------- */

struct beside {
    void (*fn)(void *arg);
    void *arg;
    struct ev_loop *loop;
    ev_async *done;
};

static void *
beside_main(void *p)
{
    struct beside *b = p;
    b->fn(b->arg);
    ev_async_send(b->loop, b->done);
    return NULL;
}

static void
done_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* Runs fn(arg) on a helper thread while this thread serves HTTP. */
static void
run_beside_loop(struct fixture *f, void (*fn)(void *), void *arg)
{
    struct beside b = {fn, arg, f->loop, &f->done};
    ev_async_init(&f->done, done_cb);
    ev_async_start(f->loop, &f->done);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, beside_main, &b), 0);
    ev_run(f->loop, 0);
    assert_int_equal(pthread_join(thread, NULL), 0);
    ev_async_stop(f->loop, &f->done);
}

struct http_job {
    const char *method;
    char url[512];
    const char *bearer;
    const char *body;
    int rc;
    long status;
    char *reply;
    struct ztr_err err;
};

static void
http_job_run(void *arg)
{
    struct http_job *job = arg;
    job->rc = http_client_request(job->method, job->url, job->bearer, job->body, 10000,
                                  &job->status, &job->reply, &job->err);
}

struct reply {
    long status;
    char *text;
    json_t *json;
};

static void
reply_free(struct reply *r)
{
    free(r->text);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static void
send_request(struct fixture *f, const char *base, const char *method, const char *path,
             const char *bearer, const char *body, struct reply *out)
{
    struct http_job job = {.method = method, .bearer = bearer, .body = body};
    snprintf(job.url, sizeof(job.url), "%s%s", base, path);
    run_beside_loop(f, http_job_run, &job);
    if (job.rc != 0)
        fail_msg("%s %s: %s", method, path, job.err.msg);
    out->status = job.status;
    out->text = job.reply;
    out->json = job.reply[0] != '\0' ? json_loads(job.reply, JSON_DECODE_ANY, NULL) : NULL;
}

/* An authenticated admin API call. */
static void
api(struct fixture *f, const char *method, const char *path, const char *body, struct reply *out)
{
    send_request(f, f->admin_base, method, path, ADMIN_TOKEN, body, out);
}

static const char *
error_of(const struct reply *r)
{
    const char *msg = json_string_value(json_object_get(r->json, "error"));
    return msg != NULL ? msg : "";
}

static json_int_t
int_of(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static const char *
str_of(const json_t *obj, const char *key)
{
    const char *v = json_string_value(json_object_get(obj, key));
    assert_non_null(v);
    return v;
}

static void
expect_error(struct fixture *f, const char *method, const char *path, const char *body,
             long status, const char *needle)
{
    struct reply r;
    api(f, method, path, body, &r);
    if (r.status != status || strstr(error_of(&r), needle) == NULL)
        fail_msg("%s %s %s: got %ld %s, want %ld containing \"%s\"", method, path,
                 body != NULL ? body : "", r.status, r.text, status, needle);
    reply_free(&r);
}

/* A node enrolled straight through the store, certificate valid SVID_TTL_S. */
static void
seed_node(struct fixture *f, const char *role, const char *name, struct store_node *out)
{
    struct ztr_err err = {0};
    struct store_token token = {0};
    snprintf(token.id, sizeof(token.id), "seed%s", name);
    snprintf(token.role, sizeof(token.role), "%s", role);
    snprintf(token.name, sizeof(token.name), "%s", name);
    token.uses_left = 1;
    token.created_at = clock_wall_s(&f->clock);
    token.expires_at = token.created_at + 3600;
    assert_int_equal(store_token_insert(f->c.store, &token, &err), 0);
    struct store_node node = {0};
    snprintf(node.name, sizeof(node.name), "%s", name);
    snprintf(node.role, sizeof(node.role), "%s", role);
    snprintf(node.spiffe_id, sizeof(node.spiffe_id), "spiffe://%s/%s/%s", TD, role, name);
    snprintf(node.addresses, sizeof(node.addresses), "[\"10.0.0.5:7444\"]");
    snprintf(node.allowed_addresses, sizeof(node.allowed_addresses), "[\"10.0.0.5:7444\"]");
    snprintf(node.cert_serial, sizeof(node.cert_serial), "0a0b0c");
    node.cert_not_after = clock_wall_s(&f->clock) + SVID_TTL_S;
    if (store_node_enroll(f->c.store, token.id, &node, out, NULL, &err) != 0)
        fail_msg("store_node_enroll: %s", err.msg);
}

static bool
has_admin_event(struct fixture *f, const char *needle)
{
    struct reply r;
    api(f, "GET", "/api/admin/events?limit=1000", NULL, &r);
    assert_int_equal(r.status, 200);
    bool found = false;
    size_t i;
    json_t *event;
    json_array_foreach(json_object_get(r.json, "events"), i, event) {
        if (strcmp(str_of(event, "kind"), "admin") == 0 &&
            strstr(str_of(event, "detail"), needle) != NULL)
            found = true;
    }
    reply_free(&r);
    return found;
}

/* ---- authentication and routing ------------------------------------------- */

static void
test_requests_without_the_admin_token_are_refused(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    /* The client sends "Authorization: Bearer <value>" (no header for NULL). */
    const char *bad[] = {
        NULL,
        "",
        "wrong",
        "unit-test-admin-token-0123456789abcdeX", /* right length, last byte wrong */
        ADMIN_TOKEN "x",                          /* right prefix, one byte longer */
        "unit-test-admin-token",                  /* a prefix of the token */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        send_request(f, f->admin_base, "GET", "/api/admin/nodes", bad[i], NULL, &r);
        assert_int_equal(r.status, 401);
        assert_string_equal(error_of(&r), "unauthorized");
        /* The token is never echoed. */
        assert_null(strstr(r.text, ADMIN_TOKEN));
        reply_free(&r);
    }
    /* Unknown paths under the prefix are refused before routing, so the
     * route table stays private. */
    send_request(f, f->admin_base, "GET", "/api/admin/nope", "wrong", NULL, &r);
    assert_int_equal(r.status, 401);
    reply_free(&r);
    send_request(f, f->admin_base, "GET", "/api/admin/nodes", ADMIN_TOKEN, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(json_is_array(json_object_get(r.json, "nodes")));
    reply_free(&r);
}

static void
test_unknown_paths_and_methods(void **state)
{
    struct fixture *f = *state;
    expect_error(f, "GET", "/api/admin/nope", NULL, 404, "not found");
    expect_error(f, "GET", "/api/admin/nodes/x/y/z", NULL, 404, "not found");
    expect_error(f, "PUT", "/api/admin/nodes", "{}", 405, "method not allowed");
    expect_error(f, "GET", "/api/admin/ca/rotate", NULL, 405, "method not allowed");
    struct reply r;
    send_request(f, f->admin_base, "GET", "/elsewhere", NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    reply_free(&r);
    /* A trailing slash names the same collection. */
    api(f, "GET", "/api/admin/tokens/", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
}

static void
test_bad_json_is_a_400(void **state)
{
    struct fixture *f = *state;
    expect_error(f, "POST", "/api/admin/tokens", "{not json", 400, "invalid JSON body");
    expect_error(f, "POST", "/api/admin/tokens", "[1,2]", 400, "JSON object");
}

/* ---- tokens --------------------------------------------------------------- */

static void
test_token_create_list_delete(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    api(f, "POST", "/api/admin/tokens",
        "{\"role\":\"connector\",\"name\":\"dc1-a\",\"uses\":3,\"ttl\":\"2h\"}", &r);
    assert_int_equal(r.status, 201);
    char *token = strdup(str_of(r.json, "token"));
    char id[64];
    snprintf(id, sizeof(id), "%s", str_of(r.json, "id"));
    /* "<id>.<secret>" */
    assert_true(strncmp(token, id, strlen(id)) == 0 && token[strlen(id)] == '.');
    assert_int_equal(int_of(r.json, "expires_at"), START_MS / 1000 + 7200);
    reply_free(&r);

    api(f, "GET", "/api/admin/tokens", NULL, &r);
    assert_int_equal(r.status, 200);
    /* Neither the secret nor its digest ever leaves in a list. */
    assert_null(strstr(r.text, token + strlen(id) + 1));
    assert_null(strstr(r.text, "digest"));
    json_t *tokens = json_object_get(r.json, "tokens");
    assert_int_equal(json_array_size(tokens), 1);
    json_t *t = json_array_get(tokens, 0);
    assert_string_equal(str_of(t, "id"), id);
    assert_string_equal(str_of(t, "role"), "connector");
    assert_string_equal(str_of(t, "name"), "dc1-a");
    assert_int_equal(int_of(t, "uses_left"), 3);
    assert_true(json_is_false(json_object_get(t, "name_is_prefix")));
    assert_true(json_is_false(json_object_get(t, "replace")));
    assert_true(json_is_false(json_object_get(t, "expired")));
    reply_free(&r);

    /* Past its TTL the list says so. */
    clock_manual_advance(&f->clock, 7200 * 1000LL);
    api(f, "GET", "/api/admin/tokens", NULL, &r);
    assert_true(json_is_true(json_object_get(json_array_get(json_object_get(r.json, "tokens"), 0),
                                             "expired")));
    reply_free(&r);

    assert_true(has_admin_event(f, "token created id="));
    /* The event names the token, never its secret. */
    api(f, "GET", "/api/admin/events", NULL, &r);
    assert_null(strstr(r.text, token + strlen(id) + 1));
    reply_free(&r);
    assert_null(strstr(test_log_captured(), token + strlen(id) + 1));

    char path[128];
    snprintf(path, sizeof(path), "/api/admin/tokens/%s", id);
    api(f, "DELETE", path, NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    expect_error(f, "DELETE", path, NULL, 404, "");
    assert_true(has_admin_event(f, "token deleted id="));
    free(token);
    /* Token changes concern no live session. */
    assert_int_equal(f->ctl.pushes, 0);
}

static void
test_token_defaults_and_prefix(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    api(f, "POST", "/api/admin/tokens",
        "{\"role\":\"tunneler\",\"name\":\"laptop-\",\"name_prefix\":true}", &r);
    assert_int_equal(r.status, 201);
    assert_int_equal(int_of(r.json, "expires_at"), START_MS / 1000 + f->c.settings.token_ttl_s);
    assert_int_equal(int_of(r.json, "uses_left"), 1);
    reply_free(&r);
    api(f, "GET", "/api/admin/tokens", NULL, &r);
    json_t *t = json_array_get(json_object_get(r.json, "tokens"), 0);
    assert_true(json_is_true(json_object_get(t, "name_is_prefix")));
    reply_free(&r);
}

/* A replacing token says so when created, in the list and in its event. */
static void
test_token_replace_is_stored_and_shown(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    api(f, "POST", "/api/admin/tokens",
        "{\"role\":\"connector\",\"name\":\"dc1-a\",\"replace\":true}", &r);
    assert_int_equal(r.status, 201);
    assert_true(json_is_true(json_object_get(r.json, "replace")));
    char id[64];
    snprintf(id, sizeof(id), "%s", str_of(r.json, "id"));
    reply_free(&r);
    api(f, "GET", "/api/admin/tokens", NULL, &r);
    json_t *t = json_array_get(json_object_get(r.json, "tokens"), 0);
    assert_true(json_is_true(json_object_get(t, "replace")));
    reply_free(&r);
    struct store_token stored;
    assert_int_equal(store_token_get(f->c.store, id, &stored, NULL), 0);
    assert_true(stored.replace);
    assert_true(has_admin_event(f, "name=dc1-a uses=1"));
    assert_true(has_admin_event(f, "replace=true"));
    expect_error(f, "POST", "/api/admin/tokens",
                 "{\"role\":\"connector\",\"name\":\"a\",\"replace\":\"yes\"}", 400,
                 "\"replace\"");
}

/* A connector token carries the IPs its certificate may name; they are
 * checked, kept in canonical form and shown. */
static void
test_token_addresses(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    api(f, "POST", "/api/admin/tokens",
        "{\"role\":\"connector\",\"name\":\"dc1-a\",\"addresses\":[\"10.0.0.5\","
        "\"2001:DB8:0::5\"]}",
        &r);
    assert_int_equal(r.status, 201);
    json_t *addresses = json_object_get(r.json, "addresses");
    assert_int_equal(json_array_size(addresses), 2);
    assert_string_equal(json_string_value(json_array_get(addresses, 0)), "10.0.0.5");
    assert_string_equal(json_string_value(json_array_get(addresses, 1)), "2001:db8::5");
    char id[64];
    snprintf(id, sizeof(id), "%s", str_of(r.json, "id"));
    reply_free(&r);
    api(f, "GET", "/api/admin/tokens", NULL, &r);
    json_t *t = json_array_get(json_object_get(r.json, "tokens"), 0);
    assert_int_equal(json_array_size(json_object_get(t, "addresses")), 2);
    reply_free(&r);
    struct store_token stored;
    assert_int_equal(store_token_get(f->c.store, id, &stored, NULL), 0);
    assert_string_equal(stored.addresses, "[\"10.0.0.5\",\"2001:db8::5\"]");
    assert_true(has_admin_event(f, "addresses=[\"10.0.0.5\",\"2001:db8::5\"]"));

    /* Without any, the token allows none (an empty list). */
    api(f, "POST", "/api/admin/tokens", "{\"role\":\"connector\",\"name\":\"dc2\"}", &r);
    assert_int_equal(r.status, 201);
    assert_true(json_is_array(json_object_get(r.json, "addresses")));
    assert_int_equal(json_array_size(json_object_get(r.json, "addresses")), 0);
    reply_free(&r);

    const char *path = "/api/admin/tokens";
    expect_error(f, "POST", path,
                 "{\"role\":\"tunneler\",\"name\":\"l\",\"addresses\":[\"10.0.0.5\"]}", 400,
                 "for connector tokens only");
    expect_error(f, "POST", path,
                 "{\"role\":\"connector\",\"name\":\"a\",\"addresses\":\"10.0.0.5\"}", 400,
                 "\"addresses\"");
    expect_error(f, "POST", path,
                 "{\"role\":\"connector\",\"name\":\"a\",\"addresses\":[\"db1.example\"]}",
                 400, "is not an IP address");
    expect_error(f, "POST", path,
                 "{\"role\":\"connector\",\"name\":\"a\",\"addresses\":[\"10.0.0.5:7444\"]}",
                 400, "is not an IP address");
    char many[2048] = "{\"role\":\"connector\",\"name\":\"a\",\"addresses\":[";
    for (int i = 0; i <= PKI_MAX_IP_SANS; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s\"10.0.1.%d\"",
                 i ? "," : "", i + 1);
    strcat(many, "]}");
    expect_error(f, "POST", path, many, 400, "at most 32 addresses");
    api(f, "GET", "/api/admin/tokens", NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "tokens")), 2);
    reply_free(&r);
}

static void
test_token_create_names_the_bad_field(void **state)
{
    struct fixture *f = *state;
    const char *path = "/api/admin/tokens";
    expect_error(f, "POST", path, "{\"name\":\"a\"}", 400, "\"role\" is required");
    expect_error(f, "POST", path, "{\"role\":\"controller\",\"name\":\"a\"}", 400, "\"role\"");
    expect_error(f, "POST", path, "{\"role\":\"connector\"}", 400, "\"name\" is required");
    expect_error(f, "POST", path, "{\"role\":\"connector\",\"name\":7}", 400, "\"name\"");
    expect_error(f, "POST", path, "{\"role\":\"connector\",\"name\":\"a\",\"uses\":0}", 400,
                 "\"uses\"");
    expect_error(f, "POST", path, "{\"role\":\"connector\",\"name\":\"a\",\"uses\":\"2\"}", 400,
                 "\"uses\"");
    expect_error(f, "POST", path, "{\"role\":\"connector\",\"name\":\"a\",\"ttl\":\"soon\"}",
                 400, "\"ttl\"");
    expect_error(f, "POST", path, "{\"role\":\"connector\",\"name\":\"a\",\"ttl\":\"10ms\"}",
                 400, "\"ttl\"");
    expect_error(f, "POST", path,
                 "{\"role\":\"connector\",\"name\":\"a\",\"name_prefix\":\"yes\"}", 400,
                 "\"name_prefix\"");
    expect_error(f, "POST", path, "{\"role\":\"connector\",\"name\":\"a\",\"tll\":\"1h\"}", 400,
                 "unknown field \"tll\"");
    /* A name that cannot be a SPIFFE ID segment is refused by token_create. */
    expect_error(f, "POST", path, "{\"role\":\"connector\",\"name\":\"a/b\"}", 400, "");
    struct reply r;
    api(f, "GET", "/api/admin/tokens", NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "tokens")), 0);
    reply_free(&r);
}

/* ---- nodes ---------------------------------------------------------------- */

static void
test_nodes_list_and_renewal_overdue(void **state)
{
    struct fixture *f = *state;
    struct store_node node;
    seed_node(f, "connector", "dc1-a", &node);
    struct ztr_err err = {0};
    assert_int_equal(store_node_set_status(f->c.store, node.id, STORE_ONLINE, "test", NULL, &err),
                     0);
    struct reply r;
    api(f, "GET", "/api/admin/nodes", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *nodes = json_object_get(r.json, "nodes");
    assert_int_equal(json_array_size(nodes), 1);
    json_t *n = json_array_get(nodes, 0);
    assert_string_equal(str_of(n, "id"), node.id);
    assert_string_equal(str_of(n, "name"), "dc1-a");
    assert_string_equal(str_of(n, "role"), "connector");
    assert_string_equal(str_of(n, "status"), "ONLINE");
    assert_string_equal(str_of(n, "spiffe_id"), "spiffe://" TD "/connector/dc1-a");
    assert_string_equal(str_of(n, "cert_serial"), "0a0b0c");
    assert_int_equal(int_of(n, "cert_not_after"), START_MS / 1000 + SVID_TTL_S);
    assert_true(json_is_false(json_object_get(n, "revoked")));
    assert_true(json_is_false(json_object_get(n, "renewal_overdue")));
    json_t *addresses = json_object_get(n, "addresses");
    assert_true(json_is_array(addresses));
    assert_string_equal(json_string_value(json_array_get(addresses, 0)), "10.0.0.5:7444");
    reply_free(&r);

    /* Past the middle of the certificate's life without a renewal. */
    clock_manual_advance(&f->clock, (SVID_TTL_S / 2 + 1) * 1000LL);
    api(f, "GET", "/api/admin/nodes", NULL, &r);
    n = json_array_get(json_object_get(r.json, "nodes"), 0);
    assert_true(json_is_true(json_object_get(n, "renewal_overdue")));
    reply_free(&r);

    char path[128];
    snprintf(path, sizeof(path), "/api/admin/nodes/%s", node.id);
    api(f, "GET", path, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(str_of(r.json, "name"), "dc1-a");
    assert_string_equal(str_of(r.json, "previous_cert_serial"), "");
    assert_int_equal(int_of(r.json, "previous_cert_until"), 0);
    reply_free(&r);
    expect_error(f, "GET", "/api/admin/nodes/ffffffff", NULL, 404, "");

    /* After a renewal the previous certificate shows for its grace. */
    struct store_cert_check check;
    assert_int_equal(store_node_cert_admit(f->c.store, node.id, "k1", &check, &err), 0);
    assert_int_equal(store_node_renew(f->c.store, node.id, "k1", "beef", "k2",
                                      START_MS / 1000 + 2 * SVID_TTL_S, 600, &err),
                     0);
    int64_t now = clock_wall_s(&f->clock);
    api(f, "GET", path, NULL, &r);
    assert_string_equal(str_of(r.json, "cert_serial"), "beef");
    assert_string_equal(str_of(r.json, "previous_cert_serial"), "0a0b0c");
    assert_int_equal(int_of(r.json, "previous_cert_until"), now + 600);
    reply_free(&r);
    clock_manual_advance(&f->clock, 600 * 1000LL);
    api(f, "GET", path, NULL, &r);
    assert_string_equal(str_of(r.json, "previous_cert_serial"), "");
    reply_free(&r);
}

static void
test_node_revoke(void **state)
{
    struct fixture *f = *state;
    struct store_node node;
    seed_node(f, "tunneler", "laptop-1", &node);
    char path[128];
    snprintf(path, sizeof(path), "/api/admin/nodes/%s/revoke", node.id);
    struct reply r;
    api(f, "POST", path, "{\"reason\":\"laptop lost\"}", &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(f->ctl.revokes, 1);
    assert_string_equal(f->ctl.revoked_id, node.id);
    assert_string_equal(f->ctl.revoked_reason, "laptop lost");
    assert_true(f->ctl.pushes >= 1);
    assert_int_equal(f->c.counters.revocations, 1);
    assert_true(has_admin_event(f, "node revoked"));

    api(f, "GET", "/api/admin/nodes", NULL, &r);
    json_t *n = json_array_get(json_object_get(r.json, "nodes"), 0);
    assert_true(json_is_true(json_object_get(n, "revoked")));
    assert_string_equal(str_of(n, "status"), "OFFLINE");
    reply_free(&r);

    /* Again, with no body: allowed, counted once. */
    api(f, "POST", path, NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(f->c.counters.revocations, 1);

    expect_error(f, "POST", "/api/admin/nodes/ffffffff/revoke", "{}", 404, "");
    expect_error(f, "POST", path, "{\"reason\":5}", 400, "\"reason\"");
}

/* ---- resources and the allowlist ------------------------------------------ */

static void
test_resources_and_allowlist(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    api(f, "POST", "/api/admin/resources", "{\"name\":\"pg\",\"description\":\"the database\"}",
        &r);
    assert_int_equal(r.status, 201);
    reply_free(&r);
    expect_error(f, "POST", "/api/admin/resources", "{\"name\":\"has space\"}", 400, "\"name\"");
    expect_error(f, "POST", "/api/admin/resources", "{}", 400, "\"name\" is required");

    api(f, "GET", "/api/admin/resources", NULL, &r);
    json_t *res = json_array_get(json_object_get(r.json, "resources"), 0);
    assert_string_equal(str_of(res, "name"), "pg");
    assert_string_equal(str_of(res, "description"), "the database");
    reply_free(&r);

    api(f, "GET", "/api/admin/allowlist", NULL, &r);
    json_int_t v0 = int_of(r.json, "version");
    assert_int_equal(json_array_size(json_object_get(r.json, "grants")), 0);
    reply_free(&r);

    int pushes = f->ctl.pushes;
    api(f, "POST", "/api/admin/allowlist", "{\"tunneler\":\"laptop-1\",\"resource\":\"pg\"}", &r);
    assert_int_equal(r.status, 200);
    assert_true(int_of(r.json, "version") > v0);
    reply_free(&r);
    assert_int_equal(f->ctl.pushes, pushes + 1);
    assert_true(has_admin_event(f, "allowed tunneler=laptop-1 resource=pg"));

    api(f, "GET", "/api/admin/allowlist", NULL, &r);
    json_t *grants = json_object_get(r.json, "grants");
    assert_int_equal(json_array_size(grants), 1);
    assert_string_equal(str_of(json_array_get(grants, 0), "tunneler"), "laptop-1");
    assert_string_equal(str_of(json_array_get(grants, 0), "resource"), "pg");
    reply_free(&r);

    expect_error(f, "POST", "/api/admin/allowlist",
                 "{\"tunneler\":\"laptop-1\",\"resource\":\"nope\"}", 404, "");
    expect_error(f, "POST", "/api/admin/allowlist", "{\"resource\":\"pg\"}", 400,
                 "\"tunneler\" is required");
    expect_error(f, "POST", "/api/admin/allowlist", "{\"tunneler\":\"a/b\",\"resource\":\"pg\"}",
                 400, "\"tunneler\"");

    /* Deny through the query string (no DELETE body). */
    api(f, "DELETE", "/api/admin/allowlist?tunneler=laptop-1&resource=pg", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    api(f, "GET", "/api/admin/allowlist", NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "grants")), 0);
    reply_free(&r);
    expect_error(f, "DELETE", "/api/admin/allowlist?tunneler=laptop-1", NULL, 400,
                 "\"resource\" is required");

    /* Deny through a body. */
    api(f, "POST", "/api/admin/allowlist", "{\"tunneler\":\"laptop-2\",\"resource\":\"pg\"}", &r);
    reply_free(&r);
    api(f, "DELETE", "/api/admin/allowlist", "{\"tunneler\":\"laptop-2\",\"resource\":\"pg\"}", &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    api(f, "GET", "/api/admin/allowlist", NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "grants")), 0);
    reply_free(&r);

    pushes = f->ctl.pushes;
    api(f, "DELETE", "/api/admin/resources/pg", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(f->ctl.pushes, pushes + 1);
    expect_error(f, "DELETE", "/api/admin/resources/pg", NULL, 404, "");
}

static void
test_node_allowed_addresses(void **state)
{
    struct fixture *f = *state;
    struct store_node node;
    seed_node(f, "connector", "dc1-a", &node);
    char path[256], want[64];
    snprintf(path, sizeof(path), "/api/admin/nodes/%s", node.id);
    struct reply r;
    api(f, "GET", path, NULL, &r);
    json_t *allowed = json_object_get(r.json, "allowed_addresses");
    assert_int_equal(json_array_size(allowed), 1);
    assert_string_equal(json_string_value(json_array_get(allowed, 0)), "10.0.0.5:7444");
    reply_free(&r);

    snprintf(path, sizeof(path), "/api/admin/nodes/%s/addresses", node.id);
    api(f, "POST", path, "{\"addresses\":[\"10.0.0.6\",\"10.0.0.7:7444\"]}", &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    snprintf(want, sizeof(want), "node addresses set id=%s", node.id);
    assert_true(has_admin_event(f, want));
    struct store_node got;
    struct ztr_err err = {0};
    assert_int_equal(store_node_get(f->c.store, node.id, &got, &err), 0);
    assert_string_equal(got.allowed_addresses, "[\"10.0.0.6\",\"10.0.0.7:7444\"]");

    expect_error(f, "POST", path, "{\"addresses\":[\"db1.example\"]}", 400, "IP addresses");
    expect_error(f, "POST", path, "{\"addresses\":\"10.0.0.6\"}", 400, "\"addresses\"");
    expect_error(f, "POST", "/api/admin/nodes/nope/addresses", "{\"addresses\":[]}", 404, "");
}

/* Drain and undrain, by name or id: stored, pushed, recorded; the answer
 * names what only this connector serves; only connectors drain. */
static void
test_node_drain(void **state)
{
    struct fixture *f = *state;
    struct store_node dc1, dc2, laptop;
    seed_node(f, "connector", "dc1-a", &dc1);
    seed_node(f, "connector", "dc2-a", &dc2);
    seed_node(f, "tunneler", "laptop", &laptop);
    serving_now = json_pack("[{s:s, s:[s, s]}, {s:s, s:[s], s:b}]", "id", dc1.id, "served", "pg",
                            "web", "id", dc2.id, "served", "web", "draining", 0);
    int pushes = f->ctl.pushes;
    int64_t now = clock_wall_s(&f->clock);
    struct reply r;
    api(f, "POST", "/api/admin/nodes/dc1-a/drain", "{\"deadline\":\"30s\"}", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "id")), dc1.id);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "draining");
    assert_int_equal(json_integer_value(json_object_get(r.json, "deadline")), now + 30);
    json_t *sole = json_object_get(r.json, "sole_connector_for");
    assert_int_equal(json_array_size(sole), 1);
    assert_string_equal(json_string_value(json_array_get(sole, 0)), "pg");
    reply_free(&r);
    assert_int_equal(f->ctl.pushes, pushes + 1);
    char want[96], path[96];
    snprintf(want, sizeof(want), "node draining id=%s name=dc1-a deadline=%lld", dc1.id,
             (long long)(now + 30));
    assert_true(has_admin_event(f, want));
    struct store_node got;
    struct ztr_err err = {0};
    assert_int_equal(store_node_set_status(f->c.store, dc1.id, STORE_ONLINE, NULL, NULL, &err), 0);
    snprintf(path, sizeof(path), "/api/admin/nodes/%s", dc1.id);
    api(f, "GET", path, NULL, &r);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "DRAINING");
    json_t *drain = json_object_get(r.json, "drain");
    assert_string_equal(json_string_value(json_object_get(drain, "by")), "operator");
    assert_int_equal(json_integer_value(json_object_get(drain, "deadline")), now + 30);
    reply_free(&r);

    expect_error(f, "POST", "/api/admin/nodes/dc1-a/drain", "{\"deadline\":\"0s\"}", 400,
                 "field \"deadline\" must be a duration of 1s..7d");
    expect_error(f, "POST", "/api/admin/nodes/dc1-a/drain", "{\"deadline\":\"8d\"}", 400,
                 "1s..7d");
    expect_error(f, "POST", "/api/admin/nodes/dc1-a/drain", "{\"until\":\"1m\"}", 400,
                 "unknown field \"until\"");
    expect_error(f, "POST", "/api/admin/nodes/laptop/drain", "{}", 404, "no connector");
    snprintf(path, sizeof(path), "/api/admin/nodes/%s/drain", laptop.id);
    expect_error(f, "POST", path, "{}", 400, "only connectors drain");
    expect_error(f, "POST", "/api/admin/nodes/nope/drain", "{}", 404, "no connector");

    snprintf(path, sizeof(path), "/api/admin/nodes/%s/undrain", dc1.id);
    api(f, "POST", path, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "serving");
    reply_free(&r);
    assert_int_equal(store_node_get(f->c.store, dc1.id, &got, &err), 0);
    assert_int_equal(got.drain, STORE_DRAIN_NONE);
    snprintf(path, sizeof(path), "/api/admin/nodes/%s", dc1.id);
    api(f, "GET", path, NULL, &r);
    assert_string_equal(json_string_value(json_object_get(r.json, "status")), "ONLINE");
    assert_true(json_is_null(json_object_get(r.json, "drain")));
    reply_free(&r);
    json_decref(serving_now);
    serving_now = NULL;
}

static void
test_resource_bindings(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    int pushes = f->ctl.pushes;
    api(f, "POST", "/api/admin/resources", "{\"name\":\"pg\",\"connectors\":[\"dc1-a\"]}", &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(r.json, "connectors"), 0)), "dc1-a");
    reply_free(&r);
    assert_int_equal(f->ctl.pushes, pushes + 1);
    expect_error(f, "POST", "/api/admin/resources", "{\"name\":\"x\",\"connectors\":\"dc1-a\"}",
                 400, "\"connectors\" must be an array");
    expect_error(f, "POST", "/api/admin/resources", "{\"name\":\"x\",\"connectors\":[\"a/b\"]}",
                 400, "\"connector\"");

    pushes = f->ctl.pushes;
    api(f, "POST", "/api/admin/resources/pg/connectors", "{\"connector\":\"dc1-b\"}", &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(f->ctl.pushes, pushes + 1);
    assert_true(has_admin_event(f, "resource bound name=pg connector=dc1-b"));
    expect_error(f, "POST", "/api/admin/resources/nope/connectors", "{\"connector\":\"dc1-b\"}",
                 404, "");
    expect_error(f, "POST", "/api/admin/resources/pg/connectors", "{}", 400,
                 "\"connector\" is required");

    api(f, "GET", "/api/admin/resources", NULL, &r);
    json_t *connectors = json_object_get(json_array_get(json_object_get(r.json, "resources"), 0),
                                         "connectors");
    assert_int_equal(json_array_size(connectors), 2);
    assert_string_equal(json_string_value(json_array_get(connectors, 0)), "dc1-a");
    assert_string_equal(json_string_value(json_array_get(connectors, 1)), "dc1-b");
    reply_free(&r);

    api(f, "DELETE", "/api/admin/resources/pg/connectors?connector=dc1-a", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_true(has_admin_event(f, "resource unbound name=pg connector=dc1-a"));
    expect_error(f, "DELETE", "/api/admin/resources/pg/connectors?connector=dc1-a", NULL, 404,
                 "");
    api(f, "GET", "/api/admin/resources", NULL, &r);
    connectors = json_object_get(json_array_get(json_object_get(r.json, "resources"), 0),
                                 "connectors");
    assert_int_equal(json_array_size(connectors), 1);
    assert_string_equal(json_string_value(json_array_get(connectors, 0)), "dc1-b");
    reply_free(&r);

}

/* ---- events --------------------------------------------------------------- */

static void
test_events_paging(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    for (int i = 0; i < 3; i++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"name\":\"r%d\"}", i);
        api(f, "POST", "/api/admin/resources", body, &r);
        reply_free(&r);
    }
    api(f, "GET", "/api/admin/events?limit=2", NULL, &r);
    json_t *events = json_object_get(r.json, "events");
    assert_int_equal(json_array_size(events), 2);
    json_t *first = json_array_get(events, 0);
    json_int_t second_id = int_of(json_array_get(events, 1), "id");
    assert_string_equal(str_of(first, "kind"), "admin");
    assert_int_equal(int_of(first, "at"), START_MS / 1000);
    assert_non_null(json_object_get(first, "node_id"));
    reply_free(&r);

    char path[128];
    snprintf(path, sizeof(path), "/api/admin/events?after=%lld&limit=5000", (long long)second_id);
    api(f, "GET", path, NULL, &r);
    assert_int_equal(r.status, 200);
    events = json_object_get(r.json, "events");
    assert_true(json_array_size(events) >= 1);
    assert_true(int_of(json_array_get(events, 0), "id") > second_id);
    reply_free(&r);

    /* A detail another writer cut inside a UTF-8 character still lists. */
    struct ztr_err err = {0};
    assert_int_equal(store_event_add(f->c.store, "status", "", "cut \xc3", &err), 0);
    api(f, "GET", "/api/admin/events?limit=1000", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.text, "\"cut ?\""));
    reply_free(&r);

    /* Filters run in the database: node, kind, time, newest first below a cursor. */
    assert_int_equal(store_event_add(f->c.store, "security", "n-filter", "one", &err), 0);
    assert_int_equal(store_event_add(f->c.store, "alert", "n-filter", "two", &err), 0);
    assert_int_equal(store_event_add(f->c.store, "security", "n-other", "three", &err), 0);
    api(f, "GET", "/api/admin/events?node=n-filter&order=desc", NULL, &r);
    assert_int_equal(r.status, 200);
    events = json_object_get(r.json, "events");
    assert_int_equal(json_array_size(events), 2);
    assert_string_equal(str_of(json_array_get(events, 0), "detail"), "two");
    assert_string_equal(str_of(json_array_get(events, 1), "detail"), "one");
    json_int_t newest = int_of(json_array_get(events, 0), "id");
    reply_free(&r);
    snprintf(path, sizeof(path), "/api/admin/events?node=n-filter&order=desc&before=%lld",
             (long long)newest);
    api(f, "GET", path, NULL, &r);
    events = json_object_get(r.json, "events");
    assert_int_equal(json_array_size(events), 1);
    assert_string_equal(str_of(json_array_get(events, 0), "detail"), "one");
    reply_free(&r);
    api(f, "GET", "/api/admin/events?kind=security&order=desc&limit=1", NULL, &r);
    events = json_object_get(r.json, "events");
    assert_int_equal(json_array_size(events), 1);
    assert_string_equal(str_of(json_array_get(events, 0), "detail"), "three");
    reply_free(&r);
    snprintf(path, sizeof(path), "/api/admin/events?kind=security&until=%lld",
             (long long)(START_MS / 1000));
    api(f, "GET", path, NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "events")), 0);
    reply_free(&r);
    snprintf(path, sizeof(path), "/api/admin/events?kind=security&since=%lld",
             (long long)(START_MS / 1000));
    api(f, "GET", path, NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "events")), 2);
    reply_free(&r);
    expect_error(f, "GET", "/api/admin/events?order=sideways", NULL, 400, "\"order\"");
    expect_error(f, "GET", "/api/admin/events?before=x", NULL, 400, "\"before\"");

    expect_error(f, "GET", "/api/admin/events?limit=abc", NULL, 400, "\"limit\"");
    expect_error(f, "GET", "/api/admin/events?limit=0", NULL, 400, "\"limit\"");
    expect_error(f, "GET", "/api/admin/events?after=-1", NULL, 400, "\"after\"");
}

/* ---- CA ------------------------------------------------------------------- */

static void
test_ca_show_and_rotate(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    api(f, "GET", "/api/admin/ca", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(str_of(r.json, "bundle"), "-----BEGIN CERTIFICATE-----"));
    json_int_t version = int_of(r.json, "version");
    assert_int_equal(json_array_size(json_object_get(r.json, "cas")), 1);
    reply_free(&r);

    api(f, "POST", "/api/admin/ca/rotate", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(int_of(r.json, "version"), version + 1);
    reply_free(&r);
    assert_int_equal(f->ctl.refreshes, 1);
    assert_true(f->ctl.pushes >= 1);
    assert_true(has_admin_event(f, "CA rotated"));

    api(f, "GET", "/api/admin/ca", NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "cas")), 2);
    reply_free(&r);
}

/* An operator CA (CA_CERT/CA_KEY) is not ztr's to rotate: 409. */
static void
test_ca_rotate_refused_for_operator_ca(void **state)
{
    struct fixture *f = *state;
    struct ztr_err err = {0};
    struct pki_ca *ca;
    assert_int_equal(pki_ca_create(TD, START_MS / 1000, 86400 * 365, &ca, &err), 0);
    char *cert, *key;
    size_t cert_len, key_len;
    assert_int_equal(pki_ca_cert_pem(ca, &cert, &cert_len, &err), 0);
    assert_int_equal(pki_ca_key_pem(ca, &key, &key_len, &err), 0);
    pki_ca_free(ca);
    char *cert_path = test_path(f->dir, "operator.crt");
    char *key_path = test_path(f->dir, "operator.key");
    test_write_file(cert_path, cert);
    test_write_file(key_path, key);
    free(cert);
    explicit_bzero(key, key_len);
    free(key);
    snprintf(f->c.settings.ca_cert, sizeof(f->c.settings.ca_cert), "%s", cert_path);
    snprintf(f->c.settings.ca_key, sizeof(f->c.settings.ca_key), "%s", key_path);
    free(cert_path);
    free(key_path);
    ca_set_free(f->c.cas);
    f->c.cas = NULL;
    assert_int_equal(ca_set_open(&f->c.settings, &f->clock, &f->c.cas, &err), 0);

    expect_error(f, "POST", "/api/admin/ca/rotate", NULL, 409, "operator");
    assert_int_equal(f->ctl.refreshes, 0);
}

/* ---- the fleet view ------------------------------------------------------- */

/* The node named name in a /api/admin/fleet answer, or NULL. */
static json_t *
fleet_node(const struct reply *r, const char *name)
{
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(r->json, "nodes"), i, node)
        if (strcmp(str_of(node, "name"), name) == 0)
            return node;
    return NULL;
}

static bool
has_flag(const json_t *node, const char *flag)
{
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(node, "flags"), i, item)
        if (strcmp(json_string_value(item), flag) == 0)
            return true;
    return false;
}

static void
heartbeat_with(struct fixture *f, const struct store_node *node, const char *counters)
{
    json_t *value = json_loads(counters, 0, NULL);
    assert_non_null(value);
    fleet_heartbeat(f->c.fleet, node, value);
    json_decref(value);
}

static void
test_fleet_view_states_counters_and_filters(void **state)
{
    struct fixture *f = *state;
    struct ztr_err err = {0};
    struct store_node a, b, c;
    seed_node(f, "connector", "dc1-a", &a);
    seed_node(f, "tunneler", "laptop", &b);
    seed_node(f, "tunneler", "lost", &c);
    int64_t t0 = clock_wall_s(&f->clock);
    assert_int_equal(store_node_set_status(f->c.store, a.id, STORE_ONLINE, "test", NULL, &err), 0);
    assert_int_equal(store_node_get(f->c.store, a.id, &a, &err), 0);
    fleet_hello(f->c.fleet, &a);
    heartbeat_with(f, &a, "{\"auth_expired\":1,\"reconnect_scheduled\":5}");
    clock_manual_advance(&f->clock, 10 * 1000LL);
    heartbeat_with(f, &a, "{\"auth_expired\":3,\"reconnect_scheduled\":5}");
    for (int i = 0; i < 4; i++) {
        fleet_hello(f->c.fleet, &b);
        fleet_session_closed(f->c.fleet, b.id);
    }

    struct reply r;
    api(f, "GET", "/api/admin/fleet", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(int_of(r.json, "window_s"), 300);
    assert_int_equal(int_of(r.json, "escalate_at_nodes"), 3);
    json_t *counts = json_object_get(r.json, "counts");
    assert_int_equal(int_of(counts, "ONLINE"), 1);
    assert_int_equal(int_of(counts, "OFFLINE"), 2);
    assert_int_equal(int_of(counts, "EXPIRED"), 0);
    assert_int_equal(int_of(counts, "REVOKED"), 0);
    assert_int_equal(int_of(r.json, "flapping"), 1);
    assert_int_equal(json_array_size(json_object_get(r.json, "nodes")), 3);
    assert_int_equal(json_array_size(json_object_get(r.json, "escalations")), 0);
    json_t *n = fleet_node(&r, "dc1-a");
    assert_non_null(n);
    assert_string_equal(str_of(n, "state"), "ONLINE");
    assert_int_equal(int_of(n, "last_seen"), t0 + 10); /* the live value, not the stored one */
    assert_int_equal(int_of(n, "sessions"), 1);
    assert_int_equal(int_of(n, "cert_not_after"), t0 + SVID_TTL_S);
    assert_int_equal(int_of(n, "expires_in_s"), SVID_TTL_S - 10);
    assert_int_equal(int_of(n, "cert_issued_at"), t0);
    assert_int_equal(int_of(n, "renew_at"), t0 + SVID_TTL_S / 2);
    assert_int_equal(int_of(n, "renewal_deadline"), t0 + SVID_TTL_S * 6 / 10);
    assert_int_equal(int_of(n, "last_renewed_at"), 0);
    assert_int_equal(int_of(json_object_get(n, "counters"), "telemetry.auth.expired"), 3);
    assert_int_equal(int_of(json_object_get(n, "counters"), "telemetry.reconnect.scheduled"), 5);
    assert_int_equal(int_of(json_object_get(n, "deltas_5m"), "telemetry.auth.expired"), 2);
    assert_int_equal(int_of(json_object_get(n, "deltas_5m"), "telemetry.reconnect.scheduled"), 0);
    assert_int_equal(int_of(n, "deltas_window_s"), 10);
    assert_int_equal(int_of(n, "counters_at"), t0 + 10);
    assert_int_equal(json_array_size(json_object_get(n, "flags")), 0);
    n = fleet_node(&r, "laptop");
    assert_true(json_is_true(json_object_get(n, "flapping")));
    assert_int_equal(int_of(n, "reconnects_5m"), 3);
    assert_true(has_flag(n, "flapping"));
    assert_true(json_is_null(json_object_get(n, "deltas_5m")));
    assert_int_equal(json_object_size(json_object_get(n, "counters")), 0);
    reply_free(&r);

    api(f, "GET", "/api/admin/fleet?flapping", NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "nodes")), 1);
    assert_non_null(fleet_node(&r, "laptop"));
    assert_int_equal(int_of(json_object_get(r.json, "counts"), "OFFLINE"), 2); /* all nodes */
    reply_free(&r);
    api(f, "GET", "/api/admin/fleet?flapping=0&state=ONLINE", NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "nodes")), 1);
    assert_non_null(fleet_node(&r, "dc1-a"));
    reply_free(&r);
    api(f, "GET", "/api/admin/fleet?expiring_within=1h", NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "nodes")), 3);
    assert_true(has_flag(fleet_node(&r, "dc1-a"), "expiring"));
    reply_free(&r);
    api(f, "GET", "/api/admin/fleet?expiring_within=30m", NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "nodes")), 0);
    reply_free(&r);

    /* Past 60 % of the life: renewal missed, unless the node renewed. */
    clock_manual_advance(&f->clock, (SVID_TTL_S * 6 / 10 - 10) * 1000LL);
    struct store_cert_check check;
    assert_int_equal(store_node_cert_admit(f->c.store, b.id, "kb", &check, &err), 0);
    assert_int_equal(store_node_renew(f->c.store, b.id, "kb", "beef", "kb2",
                                      clock_wall_s(&f->clock) + SVID_TTL_S, 600, &err),
                     0);
    assert_int_equal(store_node_revoke(f->c.store, c.id, NULL, &err), 0);
    api(f, "GET", "/api/admin/fleet?missed_renewal", NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "nodes")), 1);
    n = fleet_node(&r, "dc1-a");
    assert_true(json_is_true(json_object_get(n, "renewal_missed")));
    assert_true(has_flag(n, "renewal_missed"));
    assert_int_equal(int_of(r.json, "renewal_missed"), 1);
    assert_int_equal(int_of(json_object_get(r.json, "counts"), "REVOKED"), 1);
    reply_free(&r);
    api(f, "GET", "/api/admin/fleet?state=OFFLINE", NULL, &r);
    n = fleet_node(&r, "laptop");
    assert_int_equal(int_of(n, "last_renewed_at"), clock_wall_s(&f->clock));
    assert_int_equal(int_of(n, "cert_issued_at"), clock_wall_s(&f->clock));
    reply_free(&r);

    /* Past not_after: EXPIRED, whatever the stream said. */
    clock_manual_advance(&f->clock, (SVID_TTL_S * 4 / 10) * 1000LL);
    api(f, "GET", "/api/admin/fleet?expired=true", NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "nodes")), 1);
    n = fleet_node(&r, "dc1-a");
    assert_string_equal(str_of(n, "state"), "EXPIRED");
    assert_true(has_flag(n, "expired"));
    assert_int_equal(int_of(n, "expires_in_s"), 0);
    assert_int_equal(int_of(json_object_get(r.json, "counts"), "EXPIRED"), 1);
    assert_int_equal(int_of(json_object_get(r.json, "counts"), "ONLINE"), 0);
    reply_free(&r);

    expect_error(f, "GET", "/api/admin/fleet?expiring_within=soon", NULL, 400,
                 "\"expiring_within\" must be a duration");
    expect_error(f, "GET", "/api/admin/fleet?flapping=maybe", NULL, 400, "\"flapping\"");
    expect_error(f, "GET", "/api/admin/fleet?state=GONE", NULL, 400, "\"state\" must be");
}

/* Counters the store kept (the node not heard from since the start)
 * show; deltas need a live follow-up and are null. */
static void
test_fleet_view_shows_stored_counters(void **state)
{
    struct fixture *f = *state;
    struct ztr_err err = {0};
    struct store_node a;
    seed_node(f, "connector", "dc1-a", &a);
    struct store_heartbeat hb = {0};
    snprintf(hb.id, sizeof(hb.id), "%s", a.id);
    hb.last_seen = clock_wall_s(&f->clock);
    snprintf(hb.counters, sizeof(hb.counters), "{\"auth_revoked\":1,\"other\":9}");
    hb.counters_at = hb.last_seen - 5;
    assert_int_equal(store_node_save_heartbeats(f->c.store, &hb, 1, NULL, &err), 0);
    struct reply r;
    api(f, "GET", "/api/admin/fleet", NULL, &r);
    json_t *n = fleet_node(&r, "dc1-a");
    json_t *counters = json_object_get(n, "counters");
    assert_int_equal(int_of(counters, "telemetry.auth.revoked"), 1);
    assert_int_equal(json_object_size(counters), 1);
    assert_true(json_is_null(json_object_get(n, "deltas_5m")));
    assert_int_equal(int_of(n, "counters_at"), hb.counters_at);
    reply_free(&r);
}

/* ---- pages of nodes --------------------------------------------------------- */

/* The names in a list answer's "nodes", joined by commas. */
static void
names_of(const struct reply *r, char *out, size_t cap)
{
    out[0] = '\0';
    size_t i, used = 0;
    json_t *node;
    json_array_foreach(json_object_get(r->json, "nodes"), i, node) {
        int n = snprintf(out + used, cap - used, "%s%s", used > 0 ? "," : "", str_of(node, "name"));
        assert_true(n > 0 && (size_t)n < cap - used);
        used += (size_t)n;
    }
}

static void
expect_page(struct fixture *f, const char *path, json_int_t total, const char *names)
{
    struct reply r;
    char got[512];
    api(f, "GET", path, NULL, &r);
    if (r.status != 200)
        fail_msg("GET %s: %ld %s", path, r.status, r.text);
    names_of(&r, got, sizeof(got));
    if (int_of(r.json, "total") != total || strcmp(got, names) != 0)
        fail_msg("GET %s: total %lld [%s], want %lld [%s]", path,
                 (long long)int_of(r.json, "total"), got, (long long)total, names);
    reply_free(&r);
}

/* The console asks for one page of a search among 10 000 nodes: the
 * controller filters, counts and pages; the counts cover every node. */
static void
test_nodes_and_fleet_pages_and_search(void **state)
{
    struct fixture *f = *state;
    struct ztr_err err = {0};
    struct store_node a, b, c, d;
    seed_node(f, "connector", "dc1-a", &a);
    seed_node(f, "connector", "dc2-b", &b);
    seed_node(f, "tunneler", "Laptop-Ana", &c);
    seed_node(f, "tunneler", "phone", &d);
    assert_int_equal(store_node_set_status(f->c.store, a.id, STORE_ONLINE, "test", NULL, &err), 0);
    assert_int_equal(store_node_set_status(f->c.store, c.id, STORE_ONLINE, "test", NULL, &err), 0);
    assert_int_equal(store_node_revoke(f->c.store, d.id, "lost", &err), 0);

    /* No paging asked: every node, as before. */
    expect_page(f, "/api/admin/nodes", 4, "dc1-a,dc2-b,Laptop-Ana,phone");
    expect_page(f, "/api/admin/nodes?limit=2", 4, "dc1-a,dc2-b");
    expect_page(f, "/api/admin/nodes?limit=2&offset=2", 4, "Laptop-Ana,phone");
    expect_page(f, "/api/admin/nodes?limit=2&offset=4", 4, "");
    expect_page(f, "/api/admin/nodes?role=tunneler", 2, "Laptop-Ana,phone");
    expect_page(f, "/api/admin/nodes?state=ONLINE", 2, "dc1-a,Laptop-Ana");
    expect_page(f, "/api/admin/nodes?state=REVOKED", 1, "phone");
    /* Search: case-insensitive, in the name, id, SPIFFE ID and addresses. */
    expect_page(f, "/api/admin/nodes?q=LAPTOP", 1, "Laptop-Ana");
    expect_page(f, "/api/admin/nodes?q=connector%2Fdc2", 1, "dc2-b");
    expect_page(f, "/api/admin/nodes?q=10.0.0.5&role=connector&limit=1&offset=1", 2, "dc2-b");
    char path[128];
    snprintf(path, sizeof(path), "/api/admin/nodes?q=%s", c.id);
    expect_page(f, path, 1, "Laptop-Ana");
    expect_page(f, "/api/admin/nodes?q=nobody", 0, "");
    expect_page(f, "/api/admin/fleet?role=connector&state=ONLINE", 1, "dc1-a");
    expect_page(f, "/api/admin/fleet?limit=1&offset=3", 4, "phone");

    struct reply r;
    api(f, "GET", "/api/admin/nodes?q=nobody&limit=10", NULL, &r);
    json_t *counts = json_object_get(r.json, "counts");
    assert_int_equal(int_of(counts, "ONLINE"), 2);
    assert_int_equal(int_of(counts, "OFFLINE"), 1);
    assert_int_equal(int_of(counts, "REVOKED"), 1);
    assert_int_equal(int_of(r.json, "limit"), 10);
    assert_int_equal(json_array_size(json_object_get(r.json, "nodes")), 0);
    reply_free(&r);
    api(f, "GET", "/api/admin/nodes?state=ONLINE&limit=1", NULL, &r);
    assert_string_equal(str_of(json_array_get(json_object_get(r.json, "nodes"), 0), "state"),
                        "ONLINE");
    reply_free(&r);
    /* A page is bounded even when more is asked. */
    api(f, "GET", "/api/admin/nodes?limit=100000", NULL, &r);
    assert_int_equal(int_of(r.json, "limit"), 1000);
    reply_free(&r);

    expect_error(f, "GET", "/api/admin/nodes?role=admin", NULL, 400, "\"role\" must be");
    expect_error(f, "GET", "/api/admin/nodes?state=gone", NULL, 400, "\"state\" must be");
    expect_error(f, "GET", "/api/admin/nodes?limit=0", NULL, 400, "\"limit\" must be");
    expect_error(f, "GET", "/api/admin/nodes?offset=-1", NULL, 400, "\"offset\" must be");
    char long_query[300] = "/api/admin/nodes?q=";
    memset(long_query + strlen(long_query), 'x', 200);
    long_query[sizeof(long_query) - 1] = '\0';
    expect_error(f, "GET", long_query, NULL, 400, "\"q\" is malformed or too long");
}

/* The fleet summary's controller health, and which bundle each node holds
 * as its heartbeats say: the progress of a CA rotation. */
static void
test_fleet_controller_status_and_bundle_rollout(void **state)
{
    struct fixture *f = *state;
    struct ztr_err err = {0};
    struct store_node a, b, c;
    seed_node(f, "connector", "dc1-a", &a);
    seed_node(f, "tunneler", "laptop", &b);
    seed_node(f, "tunneler", "quiet", &c);
    struct store_node *online[] = {&a, &b, &c};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(
            store_node_set_status(f->c.store, online[i]->id, STORE_ONLINE, "test", NULL, &err), 0);
        assert_int_equal(store_node_get(f->c.store, online[i]->id, online[i], &err), 0);
        fleet_hello(f->c.fleet, online[i]);
    }
    struct reply r;
    api(f, "GET", "/api/admin/ca", NULL, &r);
    json_int_t v1 = int_of(r.json, "version");
    reply_free(&r);
    fleet_bundle_held(f->c.fleet, a.id, v1);
    fleet_bundle_held(f->c.fleet, b.id, v1);

    api(f, "GET", "/api/admin/fleet", NULL, &r);
    json_t *ctl = json_object_get(r.json, "controller");
    assert_string_equal(str_of(ctl, "status"), "ok");
    assert_int_equal(int_of(ctl, "bundle_version"), v1);
    assert_string_equal(str_of(ctl, "trust_domain"), TD);
    assert_true(int_of(ctl, "uptime_s") >= 0);
    assert_int_equal(int_of(fleet_node(&r, "dc1-a"), "bundle_version"), v1);
    assert_true(json_is_null(json_object_get(fleet_node(&r, "quiet"), "bundle_version")));
    reply_free(&r);

    api(f, "POST", "/api/admin/ca/rotate", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    fleet_bundle_held(f->c.fleet, a.id, v1 + 1);
    api(f, "GET", "/api/admin/ca", NULL, &r);
    json_t *rollout = json_object_get(r.json, "rollout");
    assert_int_equal(int_of(rollout, "version"), v1 + 1);
    assert_int_equal(int_of(rollout, "online"), 3);
    assert_int_equal(int_of(rollout, "holding"), 1);
    assert_int_equal(int_of(rollout, "behind"), 1);
    assert_int_equal(int_of(rollout, "unknown"), 1);
    json_t *behind = json_array_get(json_object_get(rollout, "behind_nodes"), 0);
    assert_string_equal(str_of(behind, "name"), "laptop");
    assert_int_equal(int_of(behind, "bundle_version"), v1);
    reply_free(&r);

    /* A report of no version (0) does not erase what was reported. */
    fleet_bundle_held(f->c.fleet, b.id, v1 + 1);
    fleet_bundle_held(f->c.fleet, b.id, 0);
    api(f, "GET", "/api/admin/ca", NULL, &r);
    rollout = json_object_get(r.json, "rollout");
    assert_int_equal(int_of(rollout, "holding"), 2);
    assert_int_equal(int_of(rollout, "behind"), 0);
    reply_free(&r);
}

static void
test_fleet_metrics_are_bounded(void **state)
{
    struct fixture *f = *state;
    struct ztr_err err = {0};
    /* 105 nodes enrolled a second apart: the first ones expire first. */
    for (int i = 0; i < 105; i++) {
        char name[16];
        snprintf(name, sizeof(name), "t%03d", i);
        struct store_node n;
        seed_node(f, "tunneler", name, &n);
        if (i == 0)
            assert_int_equal(store_node_set_status(f->c.store, n.id, STORE_ONLINE, "t", NULL,
                                                   &err),
                             0);
        if (i == 1)
            assert_int_equal(store_node_revoke(f->c.store, n.id, NULL, &err), 0);
        clock_manual_advance(&f->clock, 1000);
    }
    struct reply r;
    send_request(f, f->health_base, "GET", "/metrics", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    const char *expect[] = {
        "# TYPE ztr_nodes gauge\n",
        "\nztr_nodes{state=\"ONLINE\"} 1\n",
        "\nztr_nodes{state=\"OFFLINE\"} 103\n",
        "\nztr_nodes{state=\"EXPIRED\"} 0\n",
        "\nztr_nodes{state=\"REVOKED\"} 1\n",
        "\nztr_nodes_renewal_missed 0\n",
        "\nztr_nodes_flapping 0\n",
        "# TYPE ztr_node_cert_expiry_seconds gauge\n",
        /* Soonest first; the revoked t001 is left out. */
        "\nztr_node_cert_expiry_seconds{node=\"t000\",role=\"tunneler\"} 3495\n"
        "ztr_node_cert_expiry_seconds{node=\"t002\",role=\"tunneler\"} 3497\n",
        "\nztr_node_cert_expiry_seconds{node=\"t100\",role=\"tunneler\"} 3595\n",
        "\nztr_node_cert_expiry_omitted 4\n",
        "\nztr_controller_fleet_escalations_total 0\n",
    };
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
        if (strstr(r.text, expect[i]) == NULL)
            fail_msg("metrics lack \"%s\"", expect[i]);
    assert_null(strstr(r.text, "ztr_node_cert_expiry_seconds{node=\"t101\""));
    assert_null(strstr(r.text, "ztr_node_cert_expiry_seconds{node=\"t001\""));
    size_t series = 0;
    for (const char *p = r.text; (p = strstr(p, "\nztr_node_cert_expiry_seconds{")) != NULL; p++)
        series++;
    assert_int_equal(series, 100);
    reply_free(&r);

    /* Expired for more than a day: out of the series, still counted. */
    clock_manual_advance(&f->clock, (SVID_TTL_S + 86400 + 200) * 1000LL);
    send_request(f, f->health_base, "GET", "/metrics", NULL, NULL, &r);
    assert_non_null(strstr(r.text, "\nztr_nodes{state=\"EXPIRED\"} 104\n"));
    assert_null(strstr(r.text, "\nztr_node_cert_expiry_seconds{"));
    assert_non_null(strstr(r.text, "\nztr_node_cert_expiry_omitted 0\n"));
    reply_free(&r);
}

/* ---- /health and /metrics ------------------------------------------------- */

static void
test_health_and_metrics(void **state)
{
    struct fixture *f = *state;
    struct store_node a, b;
    seed_node(f, "connector", "dc1-a", &a);
    seed_node(f, "tunneler", "laptop-\"1\"", &b);
    struct ztr_err err = {0};
    assert_int_equal(store_node_set_status(f->c.store, a.id, STORE_ONLINE, "test", NULL, &err), 0);
    f->ctl.sessions = 1;
    f->c.counters.enrollments = 2;
    f->c.counters.heartbeats = 17;

    struct reply r;
    send_request(f, f->health_base, "GET", "/health", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(str_of(r.json, "status"), "ok");
    assert_int_equal(int_of(r.json, "uptime_s"), 42);
    assert_int_equal(int_of(r.json, "sessions"), 1);
    assert_int_equal(int_of(r.json, "nodes_online"), 1);
    assert_int_equal(int_of(r.json, "nodes_total"), 2);
    assert_int_equal(int_of(r.json, "bundle_version"), ca_set_bundle_version(f->c.cas));
    reply_free(&r);

    clock_manual_advance(&f->clock, 100 * 1000LL);
    send_request(f, f->health_base, "GET", "/metrics", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    const char *expect[] = {
        "# TYPE ztr_controller_enrollments_total counter\n",
        "\nztr_controller_enrollments_total 2\n",
        "\nztr_controller_heartbeats_total 17\n",
        "\nztr_controller_revocations_total 0\n",
        "\nztr_controller_enrollment_denied_total 0\n",
        "\nztr_controller_renewals_total 0\n",
        "\nztr_controller_renewal_denied_total 0\n",
        "\nztr_controller_sessions_accepted_total 0\n",
        "\nztr_controller_sessions_rejected_total 0\n",
        "\nztr_controller_sessions 1\n",
        "\nztr_controller_nodes{status=\"online\"} 1\n",
        "\nztr_controller_nodes{status=\"offline\"} 1\n",
        "\nztr_controller_bundle_version 1\n",
        "\nztr_svid_expiry_seconds{node=\"dc1-a\",role=\"connector\"} 3500\n",
        /* Label values are escaped. */
        "\nztr_svid_expiry_seconds{node=\"laptop-\\\"1\\\"\",role=\"tunneler\"} 3500\n",
    };
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
        if (strstr(r.text, expect[i]) == NULL)
            fail_msg("metrics lack \"%s\":\n%s", expect[i], r.text);
    reply_free(&r);

    send_request(f, f->health_base, "GET", "/api/admin/nodes", ADMIN_TOKEN, NULL, &r);
    assert_int_equal(r.status, 404);
    reply_free(&r);
    send_request(f, f->admin_base, "GET", "/health", NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    reply_free(&r);
}

static void
test_port_in_use_is_reported_as_is(void **state)
{
    struct fixture *f = *state;
    struct controller other;
    init_controller(f, &other);
    snprintf(other.settings.admin_listen, sizeof(other.settings.admin_listen), "127.0.0.1:%u",
             (unsigned)http_server_port(f->c.admin_http));
    other.store = f->c.store;
    struct ztr_err err = {0};
    assert_int_equal(admin_start(&other, &err), -1);
    assert_non_null(strstr(err.msg, "bind: address already in use"));
    assert_null(other.admin_http);
    assert_null(other.health_http);

    /* The health port taken: the admin server started first is stopped. */
    snprintf(other.settings.admin_listen, sizeof(other.settings.admin_listen), "127.0.0.1:0");
    snprintf(other.settings.health_listen, sizeof(other.settings.health_listen), "127.0.0.1:%u",
             (unsigned)http_server_port(f->c.health_http));
    assert_int_equal(admin_start(&other, &err), -1);
    assert_non_null(strstr(err.msg, "bind: address already in use"));
    assert_null(other.admin_http);
    admin_stop(&other);
    free(other.admin_token);
}

/* ---- the CLI -------------------------------------------------------------- */

struct cli_job {
    int argc;
    char **argv;
    int status;
};

static void
cli_job_run(void *arg)
{
    struct cli_job *job = arg;
    job->status = cli_main(job->argc, job->argv);
}

struct cli_result {
    int status;
    char *out;
    char *err;
};

static void
cli_result_free(struct cli_result *r)
{
    free(r->out);
    free(r->err);
}

/* Runs `controller <args...>` in process, stdout and stderr captured, with
 * the server answering on this thread (or not at all when serve is false). */
static void
run_cli(struct fixture *f, bool serve, const char *token, struct cli_result *result, ...)
{
    char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, result);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL && argc < 15;)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    if (token != NULL)
        setenv("ADMIN_AUTH_TOKEN", token, 1);
    else
        unsetenv("ADMIN_AUTH_TOKEN");
    setenv("ADMIN_URL", f->admin_base, 1);

    char *out_path = test_path(f->dir, "cli.out");
    char *err_path = test_path(f->dir, "cli.err");
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    int out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved_out >= 0 && saved_err >= 0 && out_fd >= 0 && err_fd >= 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    struct cli_job job = {argc, argv, -1};
    if (serve)
        run_beside_loop(f, cli_job_run, &job);
    else
        cli_job_run(&job);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    close(out_fd);
    close(err_fd);
    result->status = job.status;
    result->out = test_read_file(out_path, NULL);
    result->err = test_read_file(err_path, NULL);
    free(out_path);
    free(err_path);
    unsetenv("ADMIN_AUTH_TOKEN");
    unsetenv("ADMIN_URL");
}

static void
test_cli_token_create_prints_only_the_token(void **state)
{
    struct fixture *f = *state;
    struct cli_result r;
    run_cli(f, true, ADMIN_TOKEN, &r, "token", "create", "--role", "connector", "--name",
            "dc1-a", "--uses=2", "--ttl", "1h", NULL);
    assert_int_equal(r.status, 0);
    /* Exactly "<16 hex>.<64 hex>\n". */
    size_t len = strlen(r.out);
    assert_int_equal(len, 16 + 1 + 64 + 1);
    assert_int_equal(r.out[16], '.');
    assert_int_equal(r.out[len - 1], '\n');
    assert_null(strchr(r.out, ' '));
    cli_result_free(&r);

    /* --env: exactly "ENROLLMENT_TOKEN=<token>\n", an EnvironmentFile line. */
    run_cli(f, true, ADMIN_TOKEN, &r, "token", "create", "--role", "tunneler", "--name", "env1",
            "--env", NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(strlen(r.out), strlen("ENROLLMENT_TOKEN=") + 16 + 1 + 64 + 1);
    assert_int_equal(strncmp(r.out, "ENROLLMENT_TOKEN=", 17), 0);
    assert_int_equal(r.out[17 + 16], '.');
    assert_null(strchr(r.out, ' '));
    cli_result_free(&r);
    run_cli(f, true, ADMIN_TOKEN, &r, "token", "list", "--json", NULL);
    assert_int_equal(r.status, 0);
    json_t *listed = json_loads(r.out, 0, NULL);
    assert_non_null(listed);
    json_t *env_token = NULL, *item;
    size_t i;
    json_array_foreach(json_object_get(listed, "tokens"), i, item)
        if (strcmp(json_string_value(json_object_get(item, "name")), "env1") == 0)
            env_token = item;
    assert_non_null(env_token);
    assert_null(json_object_get(env_token, "token")); /* never listed again */
    char env_id[32];
    snprintf(env_id, sizeof(env_id), "%s", json_string_value(json_object_get(env_token, "id")));
    json_decref(listed);
    cli_result_free(&r);
    run_cli(f, true, ADMIN_TOKEN, &r, "token", "delete", env_id, NULL);
    assert_int_equal(r.status, 0);
    cli_result_free(&r);

    run_cli(f, true, ADMIN_TOKEN, &r, "token", "list", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "role=connector name=dc1-a prefix=false uses_left=2 "));
    assert_non_null(strstr(r.out, "expired=false"));
    assert_non_null(strstr(r.out, "expires_at=2023-11-14T23:13:20Z"));
    assert_int_equal(strchr(r.out, '\n') - r.out + 1, (long)strlen(r.out)); /* one line */
    assert_non_null(strstr(r.out, " addresses=-\n"));
    cli_result_free(&r);

    /* --address repeats; the list shows what the token allows. */
    run_cli(f, true, ADMIN_TOKEN, &r, "token", "create", "--role", "connector", "--name",
            "dc2", "--address", "127.0.0.1", "--address=127.0.0.2", NULL);
    assert_int_equal(r.status, 0);
    cli_result_free(&r);
    run_cli(f, true, ADMIN_TOKEN, &r, "token", "list", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "name=dc2 "));
    assert_non_null(strstr(r.out, " addresses=127.0.0.1,127.0.0.2\n"));
    cli_result_free(&r);
    run_cli(f, true, ADMIN_TOKEN, &r, "token", "create", "--role", "tunneler", "--name",
            "laptop", "--address", "127.0.0.1", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "for connector tokens only"));
    assert_string_equal(r.out, "");
    cli_result_free(&r);
}

static void
test_cli_resource_bindings(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    api(f, "POST", "/api/admin/resources", "{\"name\":\"pg\",\"connectors\":[\"dc1-b\"]}", &r);
    assert_int_equal(r.status, 201);
    reply_free(&r);
    /* The CLI: --connector repeats; bind and unbind take it too. */
    struct cli_result c;
    run_cli(f, true, ADMIN_TOKEN, &c, "resource", "add", "web", "--connector", "dc1-a",
            "--connector", "dc2", NULL);
    assert_int_equal(c.status, 0);
    assert_string_equal(c.out, "resource added name=web\n");
    cli_result_free(&c);
    run_cli(f, true, ADMIN_TOKEN, &c, "resource", "unbind", "web", "--connector", "dc2", NULL);
    assert_int_equal(c.status, 0);
    assert_string_equal(c.out, "resource unbound name=web connector=dc2\n");
    cli_result_free(&c);
    run_cli(f, true, ADMIN_TOKEN, &c, "resource", "bind", "web", "--connector", "dc3", NULL);
    assert_int_equal(c.status, 0);
    assert_string_equal(c.out, "resource bound name=web connector=dc3\n");
    cli_result_free(&c);
    run_cli(f, true, ADMIN_TOKEN, &c, "resource", "list", NULL);
    assert_non_null(strstr(c.out, "name=pg description=\"\" "));
    assert_non_null(strstr(c.out, " connectors=dc1-b\n"));
    assert_non_null(strstr(c.out, " connectors=dc1-a,dc3\n"));
    cli_result_free(&c);
    run_cli(f, true, ADMIN_TOKEN, &c, "resource", "bind", "web", NULL);
    assert_int_equal(c.status, 2);
    cli_result_free(&c);
}

static void
test_cli_lists_and_changes(void **state)
{
    struct fixture *f = *state;
    struct store_node node;
    seed_node(f, "connector", "dc1-a", &node);
    struct cli_result r;
    run_cli(f, true, ADMIN_TOKEN, &r, "node", "list", NULL);
    assert_int_equal(r.status, 0);
    char want[256];
    snprintf(want, sizeof(want), "id=%s name=dc1-a role=connector status=OFFLINE ", node.id);
    assert_non_null(strstr(r.out, want));
    assert_non_null(strstr(r.out, " last_seen="));
    assert_non_null(strstr(r.out, " addresses=10.0.0.5:7444 "));
    cli_result_free(&r);

    run_cli(f, true, ADMIN_TOKEN, &r, "resource", "add", "pg", "--description", "main db", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "resource added name=pg\n");
    cli_result_free(&r);
    run_cli(f, true, ADMIN_TOKEN, &r, "resource", "list", NULL);
    assert_non_null(strstr(r.out, "name=pg description=\"main db\" created_at="));
    cli_result_free(&r);

    run_cli(f, true, ADMIN_TOKEN, &r, "allow", "--tunneler", "laptop-1", "--resource", "pg", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "allowed tunneler=laptop-1 resource=pg version="));
    cli_result_free(&r);
    run_cli(f, true, ADMIN_TOKEN, &r, "allowlist", NULL);
    assert_non_null(strstr(r.out, "\ntunneler=laptop-1 resource=pg "));
    cli_result_free(&r);
    run_cli(f, true, ADMIN_TOKEN, &r, "deny", "--tunneler", "laptop-1", "--resource", "pg", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "denied tunneler=laptop-1 resource=pg"));
    cli_result_free(&r);
    run_cli(f, true, ADMIN_TOKEN, &r, "allowlist", NULL);
    assert_null(strstr(r.out, "tunneler="));
    cli_result_free(&r);

    run_cli(f, true, ADMIN_TOKEN, &r, "node", "revoke", node.id, "--reason", "decommissioned",
            NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "node revoked id="));
    cli_result_free(&r);
    assert_string_equal(f->ctl.revoked_reason, "decommissioned");

    run_cli(f, true, ADMIN_TOKEN, &r, "events", "--limit", "1000", NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "kind=admin"));
    assert_non_null(strstr(r.out, "detail=\"resource added name=pg\""));
    cli_result_free(&r);

    run_cli(f, true, ADMIN_TOKEN, &r, "ca", "show", "--pem", NULL);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "-----BEGIN CERTIFICATE-----", 27) == 0);
    cli_result_free(&r);
    run_cli(f, true, ADMIN_TOKEN, &r, "ca", "rotate", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "ca rotated version=2\n");
    cli_result_free(&r);

    run_cli(f, true, ADMIN_TOKEN, &r, "resource", "delete", "pg", NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "resource deleted name=pg\n");
    cli_result_free(&r);
}

static void
test_cli_fleet(void **state)
{
    struct fixture *f = *state;
    struct ztr_err err = {0};
    struct store_node a, b;
    seed_node(f, "connector", "dc1-a", &a);
    seed_node(f, "tunneler", "laptop", &b);
    assert_int_equal(store_node_set_status(f->c.store, a.id, STORE_ONLINE, "test", NULL, &err), 0);
    assert_int_equal(store_node_get(f->c.store, a.id, &a, &err), 0);
    fleet_hello(f->c.fleet, &a);
    heartbeat_with(f, &a, "{\"auth_unavailable\":1}");
    clock_manual_advance(&f->clock, 1000);
    heartbeat_with(f, &a, "{\"auth_unavailable\":4}");
    struct cli_result r;
    run_cli(f, true, ADMIN_TOKEN, &r, "fleet", NULL);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out,
                        "fleet ONLINE=1 OFFLINE=1 EXPIRED=0 REVOKED=0 renewal_missed=0 "
                        "flapping=0 window_s=300\n",
                        strlen("fleet ONLINE=1 OFFLINE=1 EXPIRED=0 REVOKED=0 renewal_missed=0 "
                               "flapping=0 window_s=300\n")) == 0);
    char want[256];
    snprintf(want, sizeof(want),
             "\nid=%s name=dc1-a role=connector state=ONLINE flags=- expires_in_s=%d "
             "not_after=",
             a.id, SVID_TTL_S - 1);
    assert_non_null(strstr(r.out, want));
    assert_non_null(strstr(r.out, " last_renewal=- "));
    assert_non_null(strstr(r.out, " reconnects_5m=0 reconnect.scheduled_5m=0 "
                                  "reconnect.failed_5m=0 auth.expired_5m=0 auth.revoked_5m=0 "
                                  "auth.unavailable_5m=3 renewals.failed_5m=0\n"));
    assert_non_null(strstr(r.out, " name=laptop role=tunneler state=OFFLINE "));
    assert_non_null(strstr(r.out, " auth.unavailable_5m=- renewals.failed_5m=-\n"));
    cli_result_free(&r);

    run_cli(f, true, ADMIN_TOKEN, &r, "fleet", "--state", "ONLINE", "--expiring-within", "2h",
            NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, " flags=expiring "));
    assert_null(strstr(r.out, "name=laptop"));
    cli_result_free(&r);
    run_cli(f, true, ADMIN_TOKEN, &r, "fleet", "--missed-renewal", "--expired", "--flapping",
            NULL);
    assert_int_equal(r.status, 0);
    assert_null(strstr(r.out, "id="));
    cli_result_free(&r);
    run_cli(f, true, ADMIN_TOKEN, &r, "fleet", "--expiring-within", "soon", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "expiring_within"));
    cli_result_free(&r);
    run_cli(f, false, ADMIN_TOKEN, &r, "fleet", "--flapping=yes", NULL);
    assert_int_equal(r.status, 2);
    cli_result_free(&r);
}

static void
test_cli_errors_and_exit_codes(void **state)
{
    struct fixture *f = *state;
    struct cli_result r;
    run_cli(f, false, NULL, &r, "token", "list", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "ADMIN_AUTH_TOKEN is required"));
    cli_result_free(&r);

    run_cli(f, false, ADMIN_TOKEN, &r, "token", "create", "--name", "x", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--role"));
    assert_non_null(strstr(r.err, "usage: controller token create"));
    cli_result_free(&r);
    run_cli(f, false, ADMIN_TOKEN, &r, "token", "create", "--role", "connector", "--name", "x",
            "--uses", "many", NULL);
    assert_int_equal(r.status, 2);
    cli_result_free(&r);
    run_cli(f, false, ADMIN_TOKEN, &r, "bogus", NULL);
    assert_int_equal(r.status, 2);
    cli_result_free(&r);
    run_cli(f, false, ADMIN_TOKEN, &r, "token", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "controller token create"));
    cli_result_free(&r);
    run_cli(f, false, ADMIN_TOKEN, &r, "node", "revoke", NULL);
    assert_int_equal(r.status, 2);
    cli_result_free(&r);

    /* A refused ADMIN_AUTH_TOKEN: exit 4. */
    run_cli(f, true, "not-the-token", &r, "node", "list", NULL);
    assert_int_equal(r.status, 4);
    assert_non_null(strstr(r.err, "unauthorized"));
    assert_string_equal(r.out, "");
    cli_result_free(&r);
    /* The server's message, exit 1. */
    run_cli(f, true, ADMIN_TOKEN, &r, "token", "create", "--role", "connector", "--name", "x",
            "--ttl", "soon", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "\"ttl\""));
    assert_string_equal(r.out, "");
    cli_result_free(&r);
    run_cli(f, true, ADMIN_TOKEN, &r, "resource", "delete", "nope", NULL);
    assert_int_equal(r.status, 1);
    cli_result_free(&r);

    /* --ca: wherever among the options, only for https, never empty. */
    run_cli(f, false, ADMIN_TOKEN, &r, "node", "list", "--ca", "/etc/ztr/admin-ca.pem", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--ca is for an https:// ADMIN_URL"));
    cli_result_free(&r);
    run_cli(f, false, ADMIN_TOKEN, &r, "node", "list", "--ca", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "option \"--ca\" needs a value"));
    cli_result_free(&r);
    run_cli(f, false, ADMIN_TOKEN, &r, "token", "delete", "--ca=", "x", NULL);
    assert_int_equal(r.status, 2);
    cli_result_free(&r);
    /* After "--" it is a positional like any other. */
    run_cli(f, true, ADMIN_TOKEN, &r, "token", "delete", "--", "--ca", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "not found"));
    cli_result_free(&r);

    /* --json only where a command lists or shows, never with --env. */
    run_cli(f, false, ADMIN_TOKEN, &r, "node", "revoke", "x", "--json", NULL);
    assert_int_equal(r.status, 2);
    cli_result_free(&r);
    run_cli(f, false, ADMIN_TOKEN, &r, "token", "create", "--role", "connector", "--name", "x",
            "--env", "--json", NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "exclude each other"));
    cli_result_free(&r);

    /* Nothing listening: the transport's reason, exit 3. */
    admin_stop(&f->c);
    run_cli(f, false, ADMIN_TOKEN, &r, "node", "list", NULL);
    assert_int_equal(r.status, 3);
    assert_non_null(strstr(r.err, "refused"));
    cli_result_free(&r);
}

/* ---- federation ------------------------------------------------------------ */

static void
test_federation_peers(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    api(f, "POST", "/api/admin/federation/peers",
        "{\"name\":\"b\",\"url\":\"127.0.0.1:7450\",\"ttl\":\"1h\"}", &r);
    assert_int_equal(r.status, 201);
    char *token = strdup(str_of(r.json, "token"));
    assert_true(strncmp(token, "ztrfed1.", 8) == 0);
    json_t *peer = json_object_get(r.json, "peer");
    assert_string_equal(str_of(peer, "state"), "proposed");
    assert_string_equal(str_of(peer, "direction"), "inbound");
    assert_int_equal(int_of(peer, "token_expires_at"), START_MS / 1000 + 3600);
    reply_free(&r);
    /* The secret leaves only in that answer: not in a list, a peer, an event. */
    const char *secret = strchr(strchr(token, '.') + 1, '.') + 1;
    char secret_part[44];
    snprintf(secret_part, sizeof(secret_part), "%.43s", secret);
    const char *paths[] = {"/api/admin/federation/peers", "/api/admin/federation/peers/b",
                           "/api/admin/events"};
    for (size_t i = 0; i < 3; i++) {
        api(f, "GET", paths[i], NULL, &r);
        assert_int_equal(r.status, 200);
        assert_null(strstr(r.text, secret_part));
        assert_null(strstr(r.text, "digest\""));
        reply_free(&r);
    }
    api(f, "GET", "/api/admin/federation/peers", NULL, &r);
    json_t *peers = json_object_get(r.json, "peers");
    assert_int_equal(json_array_size(peers), 1);
    assert_true(json_is_true(json_object_get(json_array_get(peers, 0), "token_pending")));
    reply_free(&r);
    /* A new token replaces it; bad input names the field. */
    api(f, "POST", "/api/admin/federation/peers/b/token", "{\"ttl\":\"2h\"}", &r);
    assert_int_equal(r.status, 201);
    assert_string_not_equal(str_of(r.json, "token"), token);
    reply_free(&r);
    expect_error(f, "POST", "/api/admin/federation/peers", "{\"name\":\"c\",\"tll\":\"1h\"}", 400,
                 "unknown field \"tll\"");
    expect_error(f, "POST", "/api/admin/federation/peers", "{\"name\":\"c\",\"url\":\"x\"}", 400,
                 "HOST:PORT");
    expect_error(f, "POST", "/api/admin/federation/peers/nope/token", "{}", 404, "no peer");
    expect_error(f, "POST", "/api/admin/federation/accept", "{\"url\":\"127.0.0.1:1\"}", 400,
                 "field \"token\" is required");
    expect_error(f, "POST", "/api/admin/federation/accept",
                 "{\"url\":\"127.0.0.1:1\",\"token\":\"not-a-token\"}", 400,
                 "not a federation acceptance token");
    /* Suspend with a reason, resume, revoke; then it is gone for good. */
    api(f, "POST", "/api/admin/federation/peers/b/suspend", "{\"reason\":\"maintenance\"}", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(str_of(r.json, "state"), "suspended");
    assert_string_equal(str_of(r.json, "reason"), "maintenance");
    reply_free(&r);
    api(f, "POST", "/api/admin/federation/peers/b/resume", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(str_of(r.json, "state"), "proposed");
    reply_free(&r);
    api(f, "POST", "/api/admin/federation/peers/b/revoke", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(str_of(r.json, "state"), "revoked");
    reply_free(&r);
    expect_error(f, "POST", "/api/admin/federation/peers/b/resume", NULL, 400,
                 "propose again from scratch");
    assert_true(has_admin_event(f, "federation peer b revoke"));
    /* Events filter by source. */
    api(f, "GET", "/api/admin/events?source=admin&limit=1000", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *events = json_object_get(r.json, "events");
    assert_true(json_array_size(events) > 0);
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e) assert_string_equal(str_of(e, "source"), "admin");
    reply_free(&r);
    api(f, "GET", "/api/admin/events?source=federation_heartbeat_sweep", NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "events")), 0);
    reply_free(&r);
    /* /metrics counts peers by state. */
    send_request(f, f->health_base, "GET", "/metrics", NULL, NULL, &r);
    assert_non_null(strstr(r.text, "ztr_federation_peers{state=\"revoked\"} 1\n"));
    assert_non_null(strstr(r.text, "ztr_federation_peers{state=\"active\"} 0\n"));
    reply_free(&r);
    free(token);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_federation_peers),
        T(test_requests_without_the_admin_token_are_refused),
        T(test_unknown_paths_and_methods),
        T(test_bad_json_is_a_400),
        T(test_token_create_list_delete),
        T(test_token_defaults_and_prefix),
        T(test_token_replace_is_stored_and_shown),
        T(test_token_addresses),
        T(test_token_create_names_the_bad_field),
        T(test_nodes_list_and_renewal_overdue),
        T(test_node_revoke),
        T(test_resources_and_allowlist),
        T(test_resource_bindings),
        T(test_node_allowed_addresses),
        T(test_node_drain),
        T(test_cli_resource_bindings),
        T(test_events_paging),
        T(test_ca_show_and_rotate),
        T(test_ca_rotate_refused_for_operator_ca),
        T(test_fleet_view_states_counters_and_filters), T(test_fleet_view_shows_stored_counters),
        T(test_fleet_metrics_are_bounded), T(test_cli_fleet),
        T(test_nodes_and_fleet_pages_and_search),
        T(test_fleet_controller_status_and_bundle_rollout),
        T(test_health_and_metrics),
        T(test_port_in_use_is_reported_as_is),
        T(test_cli_token_create_prints_only_the_token),
        T(test_cli_lists_and_changes),
        T(test_cli_errors_and_exit_codes),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
