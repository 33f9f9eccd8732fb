/* The controller's state store: schema and migrations, tokens and atomic
 * enrollment, node status, revocation, the allowlist, events — on SQLite,
 * and the same tests (all but those about the SQLite file itself) on a
 * real PostgreSQL server that tests/run-unit.sh starts (tests/pg.sh), each
 * test on a database of its own. */
#include "tests/unit/support.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "controller/store.h"

#define T0_MS 1700000000000LL
#define T0 (T0_MS / 1000)
#define CURRENT_SCHEMA 14   /* the number of SQLite migrations in store.c */
#define PG_CURRENT_SCHEMA 6 /* PostgreSQL's */

struct fx {
    char *dir;
    char *path;            /* SQLite's file, or PostgreSQL's database URL */
    char pg_name[64];      /* the PostgreSQL database of this test, "" on SQLite */
    struct ztr_clock clock;
    struct store *store;
};

/* PostgreSQL: "postgresql://ztr@127.0.0.1:PORT/" (tests/pg.sh). */
static const char *pg_prefix;

static void
pg_admin(const char *sql)
{
    char url[256];
    snprintf(url, sizeof(url), "%spostgres", pg_prefix);
    PGconn *conn = PQconnectdb(url);
    if (PQstatus(conn) != CONNECTION_OK)
        fail_msg("postgres %s: %s", url, PQerrorMessage(conn));
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(conn));
    PQclear(res);
    PQfinish(conn);
}

static struct store *
open_store(struct fx *f)
{
    struct ztr_err err = {0};
    struct store *store = NULL;
    if (store_open(f->path, &f->clock, &store, &err) != 0)
        fail_msg("store_open: %s", err.msg);
    return store;
}

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->dir = test_mkdtemp();
    f->path = test_path(f->dir, "state.db");
    clock_manual_init(&f->clock, T0_MS);
    f->store = open_store(f);
    *state = f;
    return 0;
}

static int
setup_pg(void **state)
{
    static unsigned serial;
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->dir = test_mkdtemp();
    snprintf(f->pg_name, sizeof(f->pg_name), "ztr_test_%d_%u", (int)getpid(), ++serial);
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->pg_name);
    pg_admin(sql);
    size_t len = strlen(pg_prefix) + strlen(f->pg_name) + 1;
    f->path = malloc(len);
    assert_non_null(f->path);
    snprintf(f->path, len, "%s%s", pg_prefix, f->pg_name);
    clock_manual_init(&f->clock, T0_MS);
    f->store = open_store(f);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    store_close(f->store);
    if (f->pg_name[0] != '\0') {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP DATABASE %s", f->pg_name);
        pg_admin(sql);
    }
    test_rmtree(f->dir);
    free(f->path);
    free(f->dir);
    free(f);
    return 0;
}

/* Reopens the file, as a restarted controller would. */
static void
restart(struct fx *f)
{
    store_close(f->store);
    f->store = open_store(f);
}

static void
advance_s(struct fx *f, int64_t seconds)
{
    clock_manual_advance(&f->clock, seconds * 1000);
}

/* ---- raw SQLite, to look at or tamper with the file directly ---------------- */

/* On PostgreSQL, path is the test database's URL. */
static bool
is_pg(const char *path)
{
    return strncmp(path, "postgresql://", 13) == 0;
}

static PGresult *
pg_raw(const char *url, const char *sql)
{
    PGconn *conn = PQconnectdb(url);
    if (PQstatus(conn) != CONNECTION_OK)
        fail_msg("postgres %s: %s", url, PQerrorMessage(conn));
    PGresult *res = PQexec(conn, sql);
    ExecStatusType status = PQresultStatus(res);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(conn));
    PQfinish(conn);
    return res;
}

static void
raw_exec(const char *path, const char *sql)
{
    if (is_pg(path)) {
        PQclear(pg_raw(path, sql));
        return;
    }
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        char copy[256];
        snprintf(copy, sizeof(copy), "%s", msg != NULL ? msg : "?");
        sqlite3_free(msg);
        sqlite3_close(db);
        fail_msg("raw_exec %s: %s", sql, copy);
    }
    sqlite3_close(db);
}

static int64_t
raw_int(const char *path, const char *sql)
{
    if (is_pg(path)) {
        PGresult *res = pg_raw(path, sql);
        assert_true(PQntuples(res) >= 1);
        int64_t value = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        return value;
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t value = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return value;
}

static void
raw_text(const char *path, const char *sql, char *out, size_t cap)
{
    if (is_pg(path)) {
        PGresult *res = pg_raw(path, sql);
        assert_true(PQntuples(res) >= 1);
        snprintf(out, cap, "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        return;
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* ---- records -------------------------------------------------------------- */

static struct store_token
token_for(const char *id, const char *role, const char *name, int64_t uses, int64_t ttl_s)
{
    struct store_token t;
    memset(&t, 0, sizeof(t));
    snprintf(t.id, sizeof(t.id), "%s", id);
    for (size_t i = 0; i < sizeof(t.digest); i++)
        t.digest[i] = (uint8_t)(i * 7 + 1);
    snprintf(t.role, sizeof(t.role), "%s", role);
    snprintf(t.name, sizeof(t.name), "%s", name);
    t.uses_left = uses;
    t.created_at = T0;
    t.expires_at = T0 + ttl_s;
    return t;
}

static void
add_token(struct fx *f, const char *id, int64_t uses, int64_t ttl_s)
{
    struct ztr_err err = {0};
    struct store_token t = token_for(id, "connector", "c", uses, ttl_s);
    t.name_is_prefix = true;
    if (store_token_insert(f->store, &t, &err) != 0)
        fail_msg("store_token_insert: %s", err.msg);
}

static struct store_node
node_for(const char *role, const char *name)
{
    struct store_node n;
    memset(&n, 0, sizeof(n));
    snprintf(n.role, sizeof(n.role), "%s", role);
    snprintf(n.name, sizeof(n.name), "%s", name);
    snprintf(n.spiffe_id, sizeof(n.spiffe_id), "spiffe://example.org/%s/%s", role, name);
    snprintf(n.addresses, sizeof(n.addresses), "[\"10.0.0.5:7444\"]");
    snprintf(n.allowed_addresses, sizeof(n.allowed_addresses), "[\"10.0.0.5\"]");
    snprintf(n.cert_serial, sizeof(n.cert_serial), "0a0b");
    snprintf(n.cert_key, sizeof(n.cert_key), "key-%.32s", name);
    n.cert_not_after = T0 + 3600;
    return n;
}

static int
enroll(struct store *store, const char *token, const char *role, const char *name,
       struct store_node *out, struct ztr_err *err)
{
    struct store_node n = node_for(role, name);
    return store_node_enroll(store, token, &n, out, NULL, err);
}

/* A token and a node enrolled with it; returns the node. */
static struct store_node
enrolled(struct fx *f, const char *role, const char *name)
{
    char token[STORE_ID_MAX + 1];
    snprintf(token, sizeof(token), "%.1s-%.24s", role, name);
    add_token(f, token, 1, 600);
    struct store_node out;
    struct ztr_err err = {0};
    if (enroll(f->store, token, role, name, &out, &err) != 0)
        fail_msg("enroll %s: %s", name, err.msg);
    return out;
}

static int64_t
uses_left(struct fx *f, const char *token)
{
    struct store_token t;
    struct ztr_err err = {0};
    if (store_token_get(f->store, token, &t, &err) != 0)
        fail_msg("store_token_get %s: %s", token, err.msg);
    return t.uses_left;
}

/* ---- visitors ------------------------------------------------------------- */

struct counter {
    size_t n;
    size_t stop_after; /* 0 = never */
};

static int
count_visit(struct counter *c)
{
    c->n++;
    return c->stop_after != 0 && c->n >= c->stop_after;
}

static int
count_token(void *ctx, const struct store_token *t)
{
    (void)t;
    return count_visit(ctx);
}

static int
count_node(void *ctx, const struct store_node *n)
{
    (void)n;
    return count_visit(ctx);
}

static int
count_grant(void *ctx, const struct store_grant *g)
{
    (void)g;
    return count_visit(ctx);
}

static size_t
node_count(struct fx *f)
{
    struct counter c = {0, 0};
    assert_int_equal(store_node_list(f->store, count_node, &c, NULL), 0);
    return c.n;
}

static size_t
grant_count(struct fx *f)
{
    struct counter c = {0, 0};
    assert_int_equal(store_allowlist_list(f->store, count_grant, &c, NULL), 0);
    return c.n;
}

#define EVENTS_MAX 32

struct events {
    struct store_event items[EVENTS_MAX];
    size_t n;
};

static int
collect_event(void *ctx, const struct store_event *e)
{
    struct events *ev = ctx;
    assert_true(ev->n < EVENTS_MAX);
    ev->items[ev->n++] = *e;
    return 0;
}

/* Every event (heap: the records are large), oldest first. */
static struct events *
all_events(struct fx *f)
{
    struct events *ev = calloc(1, sizeof(*ev));
    assert_non_null(ev);
    struct ztr_err err = {0};
    if (store_event_list(f->store, 0, EVENTS_MAX, collect_event, ev, &err) != 0)
        fail_msg("store_event_list: %s", err.msg);
    return ev;
}

static size_t
events_of_kind(struct fx *f, const char *kind)
{
    struct events *ev = all_events(f);
    size_t n = 0;
    for (size_t i = 0; i < ev->n; i++)
        n += strcmp(ev->items[i].kind, kind) == 0;
    free(ev);
    return n;
}

static size_t
all_events_count(struct fx *f)
{
    struct events *ev = all_events(f);
    size_t n = ev->n;
    free(ev);
    return n;
}

static void
assert_last_event(struct fx *f, const char *kind, const char *node_id, const char *detail)
{
    struct events *ev = all_events(f);
    assert_true(ev->n > 0);
    const struct store_event *e = &ev->items[ev->n - 1];
    assert_string_equal(e->kind, kind);
    assert_string_equal(e->node_id, node_id);
    assert_string_equal(e->detail, detail);
    assert_int_equal(e->at, clock_wall_s(&f->clock));
    free(ev);
}

/* ---- schema --------------------------------------------------------------- */

static void
test_new_database_gets_current_schema_in_wal_mode_private_to_owner(void **state)
{
    struct fx *f = *state;
    assert_int_equal(store_schema_version(f->store), CURRENT_SCHEMA);
    assert_int_equal(store_allowlist_version(f->store), 1);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), CURRENT_SCHEMA);
    char mode[16];
    raw_text(f->path, "PRAGMA journal_mode", mode, sizeof(mode));
    assert_string_equal(mode, "wal");
    const char *tables[] = {"nodes",  "tokens", "resources", "grants",
                            "revocations", "events", "meta",      "resource_connectors",
                            "peers", "token_uses"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        char sql[128];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '%s'",
                 tables[i]);
        assert_int_equal(raw_int(f->path, sql), 1);
    }
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void
test_database_at_older_version_is_migrated_on_open(void **state)
{
    struct fx *f = *state;
    store_close(f->store);
    f->store = NULL;
    /* What a version 1 database looks like: no indexes yet, no keys. */
    raw_exec(f->path, "DROP TABLE token_uses;"
                      "ALTER TABLE nodes DROP COLUMN drain;"
                      "ALTER TABLE nodes DROP COLUMN drain_since;"
                      "ALTER TABLE nodes DROP COLUMN drain_deadline;"
                      "DROP INDEX nodes_revoked; DROP TABLE cas; DELETE FROM meta WHERE key IN ('ca_signer', 'ca_version');"
                      "DROP TABLE controllers; ALTER TABLE nodes DROP COLUMN controller_id;"
                      "DROP TABLE fed_grants; DROP INDEX nodes_by_status; DROP INDEX grants_by_resource;"
                      "DROP INDEX events_by_node; DROP TABLE peers;"
                      "DROP INDEX events_by_source; ALTER TABLE events DROP COLUMN source;"
                      "DROP INDEX revocations_by_node; DROP TABLE certificates;"
                      "DROP TABLE resource_connectors;"
                      "ALTER TABLE nodes DROP COLUMN allowed_addresses;"
                      "ALTER TABLE nodes DROP COLUMN cert_key;"
                      "ALTER TABLE nodes DROP COLUMN prev_cert_serial;"
                      "ALTER TABLE nodes DROP COLUMN prev_cert_key;"
                      "ALTER TABLE nodes DROP COLUMN prev_cert_until;"
                      "ALTER TABLE tokens DROP COLUMN replace_node;"
                      "ALTER TABLE nodes DROP COLUMN counters;"
                      "ALTER TABLE nodes DROP COLUMN counters_at;"
                      "ALTER TABLE nodes DROP COLUMN last_renewed_at;"
                      "ALTER TABLE tokens DROP COLUMN addresses; PRAGMA user_version = 1;"
                      "INSERT INTO tokens (id, digest, role, name, name_is_prefix, uses_left,"
                      "  expires_at, created_at) VALUES ('old', zeroblob(32), 'connector',"
                      "  'c', 0, 1, 9999999999, 1);");
    f->store = open_store(f);
    assert_int_equal(store_schema_version(f->store), CURRENT_SCHEMA);
    /* A token from before allows no addresses. */
    struct store_token old;
    assert_int_equal(store_token_get(f->store, "old", &old, NULL), 0);
    assert_string_equal(old.addresses, "[]");
    assert_false(old.replace);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' "
                                      "AND name IN ('nodes_by_status', 'grants_by_resource', "
                                      "'revocations_by_node', 'nodes_revoked')"),
                     4);
}

static void
test_empty_existing_file_is_migrated_from_zero(void **state)
{
    struct fx *f = *state;
    char *path = test_path(f->dir, "empty.db");
    test_write_file(path, "");
    struct store *store = NULL;
    struct ztr_err err = {0};
    assert_int_equal(store_open(path, &f->clock, &store, &err), 0);
    assert_int_equal(store_schema_version(store), CURRENT_SCHEMA);
    assert_int_equal(store_allowlist_version(store), 1);
    store_close(store);
    free(path);
}

static void
test_database_from_newer_version_is_refused_and_left_alone(void **state)
{
    struct fx *f = *state;
    store_close(f->store);
    f->store = NULL;
    raw_exec(f->path, "PRAGMA user_version = 99");
    struct store *store = (struct store *)1;
    struct ztr_err err = {0};
    assert_int_equal(store_open(f->path, &f->clock, &store, &err), -1);
    assert_null(store);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_non_null(strstr(err.msg, "schema version 99 is newer"));
    assert_non_null(strstr(err.msg, f->path));
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 99);
}

static void
test_file_that_is_not_a_database_is_refused(void **state)
{
    struct fx *f = *state;
    char *path = test_path(f->dir, "garbage.db");
    char junk[4096];
    memset(junk, 'x', sizeof(junk) - 1);
    junk[sizeof(junk) - 1] = '\0';
    test_write_file(path, junk);
    struct store *store = NULL;
    struct ztr_err err = {0};
    assert_int_equal(store_open(path, &f->clock, &store, &err), -1);
    assert_null(store);
    assert_int_equal(err.code, ZTR_E_IO);
    assert_non_null(strstr(err.msg, "not a database"));
    free(path);
}

static void
test_open_in_missing_directory_fails_with_path(void **state)
{
    struct fx *f = *state;
    char *path = test_path(f->dir, "no/such/dir/state.db");
    struct store *store = NULL;
    struct ztr_err err = {0};
    assert_int_equal(store_open(path, &f->clock, &store, &err), -1);
    assert_null(store);
    assert_int_equal(err.code, ZTR_E_IO);
    assert_non_null(strstr(err.msg, path));
    free(path);
}

static void
test_in_memory_database_works_for_callers_without_a_state_dir(void **state)
{
    struct fx *f = *state;
    struct store *store = NULL;
    struct ztr_err err = {0};
    assert_int_equal(store_open(":memory:", &f->clock, &store, &err), 0);
    assert_int_equal(store_schema_version(store), CURRENT_SCHEMA);
    assert_int_equal(store_resource_put(store, "web", "", &err), 0);
    assert_int_equal(store_allow(store, "laptop", "web", &err), 0);
    assert_int_equal(store_allowlist_version(store), 2);
    store_close(store);
}

static void
test_close_checkpoints_the_wal_and_accepts_null(void **state)
{
    struct fx *f = *state;
    enrolled(f, "connector", "c1");
    store_close(f->store);
    f->store = NULL;
    store_close(NULL);
    char *wal = test_path(f->dir, "state.db-wal");
    struct stat st;
    /* SQLite removes the WAL on the last close; TRUNCATE leaves it empty if
     * it survives. Either way nothing lives only in it. */
    if (stat(wal, &st) == 0)
        assert_int_equal(st.st_size, 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM nodes"), 1);
    free(wal);
}

/* Checkpoints run off the caller's thread: once commits leave 1000 frames
 * in the WAL the pages reach the database file without any further call
 * into the store (the caller, the controller's event loop, never waits
 * for their fsync). */
static void
test_wal_is_checkpointed_by_its_own_thread(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    off_t before = st.st_size;
    char detail[200];
    memset(detail, 'x', sizeof(detail) - 1);
    detail[sizeof(detail) - 1] = '\0';
    for (int i = 0; i < 1100; i++)
        assert_int_equal(store_event_add(f->store, "admin", NULL, detail, &err), 0);
    bool grew = false;
    for (int i = 0; i < 100 && !grew; i++) {
        assert_int_equal(stat(f->path, &st), 0);
        grew = st.st_size > before + 64 * 1024;
        if (!grew)
            usleep(50 * 1000);
    }
    assert_true(grew);
}

struct snapshot {
    struct store_node node;
    struct store_token token;
    struct store_resource resource;
    struct store_grant grant;
    size_t resources;
};

static int
keep_resource(void *ctx, const struct store_resource *r)
{
    struct snapshot *snap = ctx;
    snap->resource = *r;
    snap->resources++;
    return 0;
}

static int
keep_grant(void *ctx, const struct store_grant *g)
{
    ((struct snapshot *)ctx)->grant = *g;
    return 0;
}

static void
test_reopen_keeps_all_state(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node c = enrolled(f, "connector", "db1");
    assert_int_equal(store_node_set_status(f->store, c.id, STORE_ONLINE, NULL, NULL, &err), 0);
    struct store_node t = enrolled(f, "tunneler", "laptop");
    assert_int_equal(store_node_revoke(f->store, t.id, "lost", &err), 0);
    add_token(f, "spare", 3, 600);
    assert_int_equal(store_resource_put(f->store, "postgres", "the database", &err), 0);
    assert_int_equal(store_allow(f->store, "laptop2", "postgres", &err), 0);
    int64_t version = store_allowlist_version(f->store);
    assert_int_equal(version, 3); /* revoke + allow */

    restart(f);

    struct snapshot snap = {0};
    assert_int_equal(store_node_get(f->store, c.id, &snap.node, &err), 0);
    assert_string_equal(snap.node.name, "db1");
    assert_string_equal(snap.node.spiffe_id, c.spiffe_id);
    assert_string_equal(snap.node.addresses, "[\"10.0.0.5:7444\"]");
    assert_int_equal(snap.node.status, STORE_ONLINE);
    assert_int_equal(snap.node.enrolled_at, T0);
    assert_int_equal(store_node_get(f->store, t.id, &snap.node, &err), 0);
    assert_true(snap.node.revoked);
    assert_int_equal(store_token_get(f->store, "spare", &snap.token, &err), 0);
    assert_int_equal(snap.token.uses_left, 3);
    assert_int_equal(store_resource_list(f->store, keep_resource, &snap, &err), 0);
    assert_int_equal(snap.resources, 1);
    assert_string_equal(snap.resource.description, "the database");
    assert_int_equal(store_allowlist_list(f->store, keep_grant, &snap, &err), 0);
    assert_string_equal(snap.grant.tunneler, "laptop2");
    assert_int_equal(store_allowlist_version(f->store), version);
    assert_int_equal(events_of_kind(f, "enrolled"), 2);
    assert_int_equal(events_of_kind(f, "revoked"), 1);
    assert_int_equal(store_schema_version(f->store),
                     f->pg_name[0] != '\0' ? PG_CURRENT_SCHEMA : CURRENT_SCHEMA);
}

/* An operator's drain survives a reopen; the connector's own mark (before
 * it stops) never replaces it nor clears it; undrain clears both. */
static void
test_drain_is_stored_and_only_the_operator_lifts_it(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node c = enrolled(f, "connector", "db1");
    struct store_node t = enrolled(f, "tunneler", "laptop");
    bool changed = false;
    assert_int_equal(store_node_set_drain(f->store, t.id, STORE_DRAIN_OPERATOR, T0 + 600,
                                          &changed, &err), -1);
    assert_string_equal(err.msg, "node laptop is a tunneler: only connectors drain");
    assert_int_equal(store_node_set_drain(f->store, c.id, STORE_DRAIN_OPERATOR, T0 + 600,
                                          &changed, &err), 0);
    assert_true(changed);
    restart(f);
    struct store_node row;
    assert_int_equal(store_node_get(f->store, c.id, &row, &err), 0);
    assert_int_equal(row.drain, STORE_DRAIN_OPERATOR);
    assert_int_equal(row.drain_since, T0);
    assert_int_equal(row.drain_deadline, T0 + 600);
    /* The connector stopping, then coming back: the operator's stays. */
    assert_int_equal(store_node_set_drain(f->store, c.id, STORE_DRAIN_SHUTDOWN, T0 + 5, &changed,
                                          &err), 0);
    assert_false(changed);
    assert_int_equal(store_node_clear_shutdown_drain(f->store, c.id, &changed, &err), 0);
    assert_false(changed);
    assert_int_equal(store_node_get(f->store, c.id, &row, &err), 0);
    assert_int_equal(row.drain, STORE_DRAIN_OPERATOR);
    assert_int_equal(row.drain_deadline, T0 + 600);
    /* Undrain; then the connector's own mark comes and goes. */
    assert_int_equal(store_node_set_drain(f->store, c.id, STORE_DRAIN_NONE, 0, &changed, &err), 0);
    assert_true(changed);
    assert_int_equal(store_node_get(f->store, c.id, &row, &err), 0);
    assert_int_equal(row.drain, STORE_DRAIN_NONE);
    assert_int_equal(row.drain_since, 0);
    assert_int_equal(store_node_set_drain(f->store, c.id, STORE_DRAIN_SHUTDOWN, T0 + 5, &changed,
                                          &err), 0);
    assert_true(changed);
    assert_int_equal(store_node_get(f->store, c.id, &row, &err), 0);
    assert_int_equal(row.drain, STORE_DRAIN_SHUTDOWN);
    assert_int_equal(store_node_clear_shutdown_drain(f->store, c.id, &changed, &err), 0);
    assert_true(changed);
    assert_int_equal(store_node_get(f->store, c.id, &row, &err), 0);
    assert_int_equal(row.drain, STORE_DRAIN_NONE);
    assert_int_equal(events_of_kind(f, "draining"), 2);
    assert_int_equal(events_of_kind(f, "undrained"), 2);
    assert_int_equal(store_node_set_drain(f->store, "nope", STORE_DRAIN_OPERATOR, T0, NULL, &err),
                     -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
}

/* ---- tokens --------------------------------------------------------------- */

static int
keep_token_ids(void *ctx, const struct store_token *t)
{
    char *ids = ctx;
    strcat(ids, t->id);
    strcat(ids, " ");
    return 0;
}

static void
test_token_insert_get_list_delete(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_token in = token_for("aaaa0001", "tunneler", "laptop-", 5, 3600);
    in.name_is_prefix = true;
    assert_int_equal(store_token_insert(f->store, &in, &err), 0);
    advance_s(f, 1);
    struct store_token second = token_for("0000bbbb", "connector", "db", 1, 60);
    second.created_at = 0; /* the store's clock fills it */
    assert_int_equal(store_token_insert(f->store, &second, &err), 0);

    struct store_token out;
    assert_int_equal(store_token_get(f->store, "aaaa0001", &out, &err), 0);
    assert_string_equal(out.id, "aaaa0001");
    assert_memory_equal(out.digest, in.digest, sizeof(in.digest));
    assert_string_equal(out.role, "tunneler");
    assert_string_equal(out.name, "laptop-");
    assert_true(out.name_is_prefix);
    assert_int_equal(out.uses_left, 5);
    assert_int_equal(out.expires_at, T0 + 3600);
    assert_int_equal(out.created_at, T0);
    assert_string_equal(out.addresses, "[]");
    assert_int_equal(store_token_get(f->store, "0000bbbb", &out, &err), 0);
    assert_false(out.name_is_prefix);
    assert_int_equal(out.created_at, T0 + 1);
    assert_string_equal(out.addresses, "[]");
    /* A connector token's allowed addresses come back as stored. */
    struct store_token with = token_for("cccc0003", "connector", "db", 1, 60);
    snprintf(with.addresses, sizeof(with.addresses), "[\"10.0.0.5\",\"2001:db8::5\"]");
    assert_int_equal(store_token_insert(f->store, &with, &err), 0);
    assert_int_equal(store_token_get(f->store, "cccc0003", &out, &err), 0);
    assert_string_equal(out.addresses, "[\"10.0.0.5\",\"2001:db8::5\"]");
    assert_int_equal(store_token_delete(f->store, "cccc0003", &err), 0);

    char ids[128] = "";
    assert_int_equal(store_token_list(f->store, keep_token_ids, ids, &err), 0);
    assert_string_equal(ids, "aaaa0001 0000bbbb "); /* by creation time */

    assert_int_equal(store_token_delete(f->store, "aaaa0001", &err), 0);
    assert_int_equal(store_token_get(f->store, "aaaa0001", &out, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    assert_int_equal(store_token_delete(f->store, "aaaa0001", &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    struct counter c = {0, 0};
    assert_int_equal(store_token_list(f->store, count_token, &c, &err), 0);
    assert_int_equal(c.n, 1);
}

static void
test_token_with_existing_id_or_bad_fields_is_refused(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    add_token(f, "dup", 1, 60);
    struct store_token t = token_for("dup", "connector", "other", 9, 60);
    assert_int_equal(store_token_insert(f->store, &t, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_non_null(strstr(err.msg, "dup"));
    assert_int_equal(uses_left(f, "dup"), 1);

    t = token_for("t2", "controller", "x", 1, 60);
    assert_int_equal(store_token_insert(f->store, &t, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    t = token_for("t2", "connector", "", 1, 60);
    assert_int_equal(store_token_insert(f->store, &t, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    t = token_for("", "connector", "x", 1, 60);
    assert_int_equal(store_token_insert(f->store, &t, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    t = token_for("t2", "connector", "x", -1, 60);
    assert_int_equal(store_token_insert(f->store, &t, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    /* Addresses are a JSON list or nothing. */
    const char *bad_addresses[] = {"not json", "\"10.0.0.5\"", "{\"addresses\":[]}"};
    for (size_t i = 0; i < sizeof(bad_addresses) / sizeof(bad_addresses[0]); i++) {
        t = token_for("t2", "connector", "x", 1, 60);
        snprintf(t.addresses, sizeof(t.addresses), "%s", bad_addresses[i]);
        assert_int_equal(store_token_insert(f->store, &t, &err), -1);
        assert_int_equal(err.code, ZTR_E_INVALID);
    }
    /* An unterminated field is caught without reading past it. */
    t = token_for("t2", "connector", "x", 1, 60);
    memset(t.name, 'n', sizeof(t.name));
    assert_int_equal(store_token_insert(f->store, &t, &err), -1);
    assert_int_equal(err.code, ZTR_E_LIMIT);
    struct counter c = {0, 0};
    assert_int_equal(store_token_list(f->store, count_token, &c, &err), 0);
    assert_int_equal(c.n, 1);
}

/* ---- enrollment ----------------------------------------------------------- */

static void
test_enroll_creates_node_with_random_hex_id_and_event(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    add_token(f, "tok", 1, 600);
    advance_s(f, 5);
    struct store_node out;
    assert_int_equal(enroll(f->store, "tok", "connector", "db1", &out, &err), 0);
    assert_int_equal(strlen(out.id), 16);
    assert_int_equal(strspn(out.id, "0123456789abcdef"), 16);
    assert_string_equal(out.name, "db1");
    assert_string_equal(out.role, "connector");
    assert_string_equal(out.spiffe_id, "spiffe://example.org/connector/db1");
    assert_string_equal(out.addresses, "[\"10.0.0.5:7444\"]");
    assert_string_equal(out.cert_serial, "0a0b");
    assert_int_equal(out.cert_not_after, T0 + 3600);
    assert_int_equal(out.enrolled_at, T0 + 5);
    assert_int_equal(out.status, STORE_OFFLINE);
    assert_false(out.revoked);
    assert_int_equal(out.last_seen, 0);

    struct store_node by_spiffe;
    assert_int_equal(store_node_get_by_spiffe_id(f->store, out.spiffe_id, &by_spiffe, &err), 0);
    assert_string_equal(by_spiffe.id, out.id);
    assert_int_equal(events_of_kind(f, "enrolled"), 1);
    struct events *ev = all_events(f);
    assert_string_equal(ev->items[0].node_id, out.id);
    assert_non_null(strstr(ev->items[0].detail, "db1"));
    free(ev);

    struct store_node other;
    enrolled(f, "tunneler", "t1");
    assert_int_equal(store_node_get_by_spiffe_id(f->store, "spiffe://example.org/tunneler/t1",
                                                 &other, &err),
                     0);
    assert_string_not_equal(other.id, out.id);
}

static void
test_enroll_uses_given_id_and_defaults_addresses_to_empty_array(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    add_token(f, "tok", 1, 600);
    struct store_node n = node_for("tunneler", "t1");
    snprintf(n.id, sizeof(n.id), "chosen-id");
    n.addresses[0] = '\0';
    n.allowed_addresses[0] = '\0';
    assert_int_equal(store_node_enroll(f->store, "tok", &n, &n, NULL, &err), 0);
    assert_string_equal(n.id, "chosen-id");
    assert_string_equal(n.addresses, "[]");
    assert_string_equal(n.allowed_addresses, "[]");
}

/* An agent that never kept the answer asks again with the same token and
 * key: its node comes back with the new certificate, nothing consumed. */
static void
test_enroll_retry_same_key_returns_same_node(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    add_token(f, "one", 1, 600);
    struct store_node first, again;
    assert_int_equal(enroll(f->store, "one", "connector", "c1", &first, &err), 0);
    assert_int_equal(uses_left(f, "one"), 0);
    bool used = false;
    assert_int_equal(store_token_used_by(f->store, "one", "key-c1", &used, &err), 0);
    assert_true(used);
    assert_int_equal(store_token_used_by(f->store, "one", "key-other", &used, &err), 0);
    assert_false(used);

    struct store_node n = node_for("connector", "c1");
    snprintf(n.cert_serial, sizeof(n.cert_serial), "0c0d");
    n.cert_not_after = T0 + 7200;
    bool retried = false;
    advance_s(f, 30);
    assert_int_equal(store_node_enroll(f->store, "one", &n, &again, &retried, &err), 0);
    assert_true(retried);
    assert_string_equal(again.id, first.id);
    assert_string_equal(again.spiffe_id, first.spiffe_id);
    assert_string_equal(again.cert_serial, "0c0d");
    assert_string_equal(again.cert_key, "key-c1");
    assert_int_equal(again.cert_not_after, T0 + 7200);
    assert_int_equal(again.enrolled_at, first.enrolled_at);
    assert_int_equal(uses_left(f, "one"), 0);
    assert_int_equal(events_of_kind(f, "enrolled"), 2);
    struct counter c = {0, 0};
    assert_int_equal(store_node_list(f->store, count_node, &c, &err), 0);
    assert_int_equal(c.n, 1);

    /* Every certificate's key stays findable by serial (a renew names the
     * one it holds). */
    char key[STORE_KEY_MAX + 1];
    assert_int_equal(store_node_cert_key(f->store, first.id, "0a0b", key, sizeof(key), &err), 0);
    assert_string_equal(key, "key-c1");
    assert_int_equal(store_node_cert_key(f->store, first.id, "0c0d", key, sizeof(key), &err), 0);
    assert_string_equal(key, "key-c1");
    assert_int_equal(store_node_cert_key(f->store, first.id, "ffff", key, sizeof(key), &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);

    /* Another key: the token is used up, as before. */
    n = node_for("connector", "c1");
    snprintf(n.cert_key, sizeof(n.cert_key), "key-thief");
    assert_int_equal(store_node_enroll(f->store, "one", &n, &again, &retried, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    assert_false(retried);
    /* The same key for another name or role. */
    n = node_for("connector", "c2");
    snprintf(n.cert_key, sizeof(n.cert_key), "key-c1");
    assert_int_equal(store_node_enroll(f->store, "one", &n, &again, &retried, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    n = node_for("tunneler", "c1");
    snprintf(n.cert_key, sizeof(n.cert_key), "key-c1");
    assert_int_equal(store_node_enroll(f->store, "one", &n, &again, &retried, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    c.n = 0;
    assert_int_equal(store_node_list(f->store, count_node, &c, &err), 0);
    assert_int_equal(c.n, 1);

    /* The same key after the token's TTL. */
    advance_s(f, 600);
    n = node_for("connector", "c1");
    assert_int_equal(store_node_enroll(f->store, "one", &n, &again, &retried, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    assert_int_equal(events_of_kind(f, "enrolled"), 2);
}

/* A retry gives back only a node that still has that key as its own, that
 * is not revoked, with a token that still exists. */
static void
test_enroll_retry_refused_after_revoke_renewal_or_delete(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    add_token(f, "many", 5, 600);
    struct store_node a, b, d, out;
    assert_int_equal(enroll(f->store, "many", "connector", "ca", &a, &err), 0);
    assert_int_equal(enroll(f->store, "many", "connector", "cb", &b, &err), 0);
    assert_int_equal(enroll(f->store, "many", "connector", "cd", &d, &err), 0);
    assert_int_equal(uses_left(f, "many"), 2);
    bool retried = false;

    /* A multi-use token: a retry uses nothing more. */
    struct store_node n = node_for("connector", "cd");
    assert_int_equal(store_node_enroll(f->store, "many", &n, &out, &retried, &err), 0);
    assert_true(retried);
    assert_string_equal(out.id, d.id);
    assert_int_equal(uses_left(f, "many"), 2);

    assert_int_equal(store_node_revoke(f->store, a.id, "lost", &err), 0);
    n = node_for("connector", "ca");
    assert_int_equal(store_node_enroll(f->store, "many", &n, &out, &retried, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_int_equal(store_node_get(f->store, a.id, &out, &err), 0);
    assert_true(out.revoked);

    assert_int_equal(store_node_renew(f->store, b.id, "key-cb", "0e0f", "key-cb-2", T0 + 7200,
                                      600, &err),
                     0);
    n = node_for("connector", "cb");
    assert_int_equal(store_node_enroll(f->store, "many", &n, &out, &retried, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    assert_int_equal(store_node_get(f->store, b.id, &out, &err), 0);
    assert_string_equal(out.cert_key, "key-cb-2");

    assert_int_equal(store_token_delete(f->store, "many", &err), 0);
    n = node_for("connector", "cd");
    assert_int_equal(store_node_enroll(f->store, "many", &n, &out, &retried, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
}

static void
test_enroll_consumes_one_use_each_until_used_up(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    add_token(f, "two", 2, 600);
    struct store_node out;
    assert_int_equal(enroll(f->store, "two", "connector", "c1", &out, &err), 0);
    assert_int_equal(uses_left(f, "two"), 1);
    assert_int_equal(enroll(f->store, "two", "connector", "c2", &out, &err), 0);
    assert_int_equal(uses_left(f, "two"), 0);
    assert_int_equal(enroll(f->store, "two", "connector", "c3", &out, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    assert_int_equal(uses_left(f, "two"), 0);
    assert_int_equal(node_count(f), 2);
    assert_int_equal(events_of_kind(f, "enrolled"), 2);
}

static void
test_enroll_with_expired_token_writes_nothing(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    add_token(f, "short", 5, 60);
    advance_s(f, 59);
    struct store_node out;
    assert_int_equal(enroll(f->store, "short", "connector", "c1", &out, &err), 0);
    advance_s(f, 1); /* now == expires_at: expired */
    assert_int_equal(enroll(f->store, "short", "connector", "c2", &out, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    assert_int_equal(uses_left(f, "short"), 4);
    assert_int_equal(node_count(f), 1);
    assert_int_equal(events_of_kind(f, "enrolled"), 1);
}

static void
test_enroll_with_unknown_or_deleted_token_is_not_found(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node out;
    assert_int_equal(enroll(f->store, "nope", "connector", "c1", &out, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    add_token(f, "gone", 1, 600);
    assert_int_equal(store_token_delete(f->store, "gone", &err), 0);
    assert_int_equal(enroll(f->store, "gone", "connector", "c1", &out, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    assert_int_equal(node_count(f), 0);
    struct events *ev = all_events(f);
    assert_int_equal(ev->n, 0);
    free(ev);
}

static void
test_single_use_token_on_two_handles_enrolls_exactly_once(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    add_token(f, "once", 1, 600);
    struct store *other = open_store(f);
    /* Both controllers looked the token up and saw a use left ... */
    struct store_token seen;
    assert_int_equal(store_token_get(f->store, "once", &seen, &err), 0);
    assert_int_equal(seen.uses_left, 1);
    assert_int_equal(store_token_get(other, "once", &seen, &err), 0);
    assert_int_equal(seen.uses_left, 1);
    /* ... but only one consume succeeds. */
    struct store_node a, b;
    struct ztr_err err_a = {0}, err_b = {0};
    int rc_a = enroll(f->store, "once", "connector", "a", &a, &err_a);
    int rc_b = enroll(other, "once", "connector", "b", &b, &err_b);
    assert_int_equal(rc_a, 0);
    assert_int_equal(rc_b, -1);
    assert_int_equal(err_b.code, ZTR_E_NOT_FOUND);
    struct counter c = {0, 0};
    assert_int_equal(store_node_list(other, count_node, &c, &err), 0);
    assert_int_equal(c.n, 1);
    store_close(other);
    assert_int_equal(uses_left(f, "once"), 0);
}

#define RACE_ROUNDS 12

struct racer {
    struct store *store;
    pthread_barrier_t *start;
    const char *token;
    char name[32];
    int rc;
    struct ztr_err err;
};

static void *
race(void *arg)
{
    struct racer *r = arg;
    struct store_node out;
    pthread_barrier_wait(r->start);
    r->rc = enroll(r->store, r->token, "tunneler", r->name, &out, &r->err);
    return NULL;
}

static void
test_single_use_token_raced_by_two_threads_enrolls_exactly_once(void **state)
{
    struct fx *f = *state;
    struct store *handles[2] = {open_store(f), open_store(f)};
    for (int round = 0; round < RACE_ROUNDS; round++) {
        char token[16];
        snprintf(token, sizeof(token), "race%d", round);
        add_token(f, token, 1, 600);
        pthread_barrier_t start;
        assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);
        struct racer racers[2];
        pthread_t threads[2];
        for (int i = 0; i < 2; i++) {
            memset(&racers[i], 0, sizeof(racers[i]));
            racers[i].store = handles[i];
            racers[i].start = &start;
            racers[i].token = token;
            snprintf(racers[i].name, sizeof(racers[i].name), "r%d-%d", round, i);
            assert_int_equal(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
        }
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_join(threads[i], NULL), 0);
        pthread_barrier_destroy(&start);
        int winners = (racers[0].rc == 0) + (racers[1].rc == 0);
        assert_int_equal(winners, 1);
        struct racer *loser = racers[0].rc == 0 ? &racers[1] : &racers[0];
        if (loser->err.code != ZTR_E_NOT_FOUND)
            fail_msg("loser failed with %d: %s", loser->err.code, loser->err.msg);
        assert_int_equal(uses_left(f, token), 0);
    }
    store_close(handles[0]);
    store_close(handles[1]);
    assert_int_equal(node_count(f), RACE_ROUNDS);
    assert_int_equal(events_of_kind(f, "enrolled"), RACE_ROUNDS);
}

static void
test_reenroll_same_name_keeps_id_and_takes_new_certificate(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node first = enrolled(f, "connector", "db1");
    assert_int_equal(store_node_set_status(f->store, first.id, STORE_ONLINE, NULL, NULL, &err),
                     0);
    /* The same name in the other role is a different node. */
    struct store_node t = enrolled(f, "tunneler", "db1");
    add_token(f, "again", 1, 7200);
    /* Past its certificate's notAfter: a live node would need --replace
     * (test_enroll_live_node_needs_a_replacing_token). */
    advance_s(f, 3600);
    struct store_node n = node_for("connector", "db1");
    snprintf(n.id, sizeof(n.id), "ignored");
    snprintf(n.cert_serial, sizeof(n.cert_serial), "ffee");
    snprintf(n.addresses, sizeof(n.addresses), "[\"10.0.0.9:7444\"]");
    n.cert_not_after = T0 + 9999;
    struct store_node second;
    assert_int_equal(store_node_enroll(f->store, "again", &n, &second, NULL, &err), 0);
    assert_string_equal(second.id, first.id);
    assert_string_equal(second.cert_serial, "ffee");
    assert_int_equal(second.cert_not_after, T0 + 9999);
    assert_string_equal(second.addresses, "[\"10.0.0.9:7444\"]");
    assert_int_equal(second.enrolled_at, T0 + 3600);
    assert_int_equal(node_count(f), 2);
    assert_int_equal(events_of_kind(f, "enrolled"), 3);
    assert_string_not_equal(t.id, first.id);
}

static void
test_revoked_node_is_not_reenrolled_and_keeps_the_token_use(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node node = enrolled(f, "tunneler", "laptop");
    assert_int_equal(store_node_revoke(f->store, node.id, "stolen", &err), 0);
    add_token(f, "retry", 1, 600);
    size_t events_before = events_of_kind(f, "enrolled");
    struct store_node out;
    assert_int_equal(enroll(f->store, "retry", "tunneler", "laptop", &out, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_string_equal(err.msg, "node laptop is revoked");
    assert_int_equal(uses_left(f, "retry"), 1);
    assert_int_equal(events_of_kind(f, "enrolled"), events_before);
    struct store_node still;
    assert_int_equal(store_node_get(f->store, node.id, &still, &err), 0);
    assert_true(still.revoked);
    assert_string_equal(still.cert_serial, node.cert_serial);
}

/* ---- node status ---------------------------------------------------------- */

static void
test_status_event_is_recorded_only_on_change(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node n = enrolled(f, "connector", "c1");
    bool changed = false;
    advance_s(f, 10);
    assert_int_equal(store_node_set_status(f->store, n.id, STORE_ONLINE, NULL, &changed, &err),
                     0);
    assert_true(changed);
    assert_last_event(f, "status", n.id, "ONLINE");
    advance_s(f, 10);
    assert_int_equal(store_node_set_status(f->store, n.id, STORE_ONLINE, NULL, &changed, &err),
                     0);
    assert_false(changed);
    assert_int_equal(events_of_kind(f, "status"), 1);
    struct store_node got;
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_int_equal(got.last_seen, T0 + 20);
    assert_int_equal(got.status, STORE_ONLINE);

    assert_int_equal(store_node_set_status(f->store, n.id, STORE_OFFLINE, "session closed",
                                           &changed, &err),
                     0);
    assert_true(changed);
    assert_last_event(f, "status", n.id, "OFFLINE: session closed");
    assert_int_equal(store_node_set_status(f->store, n.id, STORE_OFFLINE, "again", NULL, &err),
                     0);
    assert_int_equal(events_of_kind(f, "status"), 2);

    assert_int_equal(
        store_node_set_status(f->store, "missing", STORE_ONLINE, NULL, &changed, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    assert_false(changed);
    assert_int_equal(
        store_node_set_status(f->store, n.id, (enum store_status)7, NULL, NULL, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
}

static void
test_touch_moves_last_seen_without_an_event(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node n = enrolled(f, "connector", "c1");
    struct events *before = all_events(f);
    advance_s(f, 42);
    assert_int_equal(store_node_touch(f->store, n.id, &err), 0);
    struct store_node got;
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_int_equal(got.last_seen, T0 + 42);
    assert_int_equal(got.status, STORE_OFFLINE);
    struct events *after = all_events(f);
    assert_int_equal(after->n, before->n);
    free(before);
    free(after);
    assert_int_equal(store_node_touch(f->store, "missing", &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
}

struct swept {
    char ids[4][STORE_ID_MAX + 1];
    size_t n;
};

static int
keep_swept(void *ctx, const struct store_node *n)
{
    struct swept *s = ctx;
    assert_int_equal(n->status, STORE_OFFLINE);
    assert_true(s->n < 4);
    snprintf(s->ids[s->n++], sizeof(s->ids[0]), "%s", n->id);
    return 0;
}

static void
test_sweep_marks_only_stale_online_nodes_offline(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node stale = enrolled(f, "connector", "stale");
    struct store_node fresh = enrolled(f, "connector", "fresh");
    struct store_node idle = enrolled(f, "connector", "idle"); /* never online */
    assert_int_equal(store_node_set_status(f->store, stale.id, STORE_ONLINE, NULL, NULL, &err),
                     0);
    assert_int_equal(store_node_set_status(f->store, fresh.id, STORE_ONLINE, NULL, NULL, &err),
                     0);
    advance_s(f, 30);
    assert_int_equal(store_node_touch(f->store, fresh.id, &err), 0);
    advance_s(f, 30);

    struct swept swept = {0};
    int64_t cutoff = clock_wall_s(&f->clock) - 45;
    assert_int_equal(store_node_sweep_offline(f->store, cutoff, keep_swept, &swept, &err), 0);
    assert_int_equal(swept.n, 1);
    assert_string_equal(swept.ids[0], stale.id);
    assert_last_event(f, "status", stale.id, "OFFLINE: no heartbeat");
    struct store_node got;
    assert_int_equal(store_node_get(f->store, stale.id, &got, &err), 0);
    assert_int_equal(got.status, STORE_OFFLINE);
    assert_int_equal(got.last_seen, T0); /* the last real sighting stays */
    assert_int_equal(store_node_get(f->store, fresh.id, &got, &err), 0);
    assert_int_equal(got.status, STORE_ONLINE);
    assert_int_equal(store_node_get(f->store, idle.id, &got, &err), 0);
    assert_int_equal(got.status, STORE_OFFLINE);

    /* Nothing left to sweep: no visits, no events. */
    size_t status_events = events_of_kind(f, "status");
    swept.n = 0;
    assert_int_equal(store_node_sweep_offline(f->store, cutoff, keep_swept, &swept, &err), 0);
    assert_int_equal(swept.n, 0);
    assert_int_equal(events_of_kind(f, "status"), status_events);
    /* Everything older than now, without a visitor. */
    assert_int_equal(
        store_node_sweep_offline(f->store, clock_wall_s(&f->clock) + 1, NULL, NULL, &err), 0);
    assert_int_equal(store_node_get(f->store, fresh.id, &got, &err), 0);
    assert_int_equal(got.status, STORE_OFFLINE);
}

static int
event_from_sweep_visitor(void *ctx, const struct store_node *n)
{
    struct store *store = ctx;
    struct ztr_err err = {0};
    if (store_event_add(store, "admin", n->id, "visitor wrote", &err) != 0)
        fail_msg("write from a sweep visitor: %s", err.msg);
    return 0;
}

static void
test_sweep_visitor_may_write_to_the_store(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node n = enrolled(f, "connector", "c1");
    assert_int_equal(store_node_set_status(f->store, n.id, STORE_ONLINE, NULL, NULL, &err), 0);
    advance_s(f, 100);
    assert_int_equal(store_node_sweep_offline(f->store, clock_wall_s(&f->clock),
                                              event_from_sweep_visitor, f->store, &err),
                     0);
    assert_last_event(f, "admin", n.id, "visitor wrote");
}

static void
test_renew_records_renewal(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node n = enrolled(f, "connector", "c1");
    advance_s(f, 7);
    assert_int_equal(store_node_renew(f->store, n.id, "key-c1", "beef01", "k2", T0 + 86400, 600,
                                      &err),
                     0);
    struct store_node got;
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_string_equal(got.cert_serial, "beef01");
    assert_string_equal(got.cert_key, "k2");
    assert_int_equal(got.cert_not_after, T0 + 86400);
    assert_int_equal(got.enrolled_at, T0);
    assert_string_equal(got.prev_cert_serial, "0a0b");
    assert_string_equal(got.prev_cert_key, "key-c1");
    assert_int_equal(got.prev_cert_until, T0 + 7 + 600);
    struct events *ev = all_events(f);
    const struct store_event *last = &ev->items[ev->n - 1];
    assert_string_equal(last->kind, "renewed");
    assert_string_equal(last->node_id, n.id);
    assert_non_null(strstr(last->detail, "beef01"));
    free(ev);

    assert_int_equal(store_node_renew(f->store, "missing", "k2", "01", "k3", 1, 600, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    assert_int_equal(store_node_revoke(f->store, n.id, NULL, &err), 0);
    assert_int_equal(store_node_renew(f->store, n.id, "k2", "02", "k3", T0 + 1, 600, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_string_equal(got.cert_serial, "beef01");
}

/* The fleet view's certificate horizon: when the current certificate was
 * issued (from the history) and when the node last renewed. */
static void
test_renew_records_issue_and_renewal_times(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    advance_s(f, 3);
    struct store_node n = enrolled(f, "connector", "c1");
    assert_int_equal(n.cert_issued_at, T0 + 3);
    assert_int_equal(n.last_renewed_at, 0);
    advance_s(f, 100);
    assert_int_equal(store_node_renew(f->store, n.id, "key-c1", "beef01", "k2", T0 + 7200, 600,
                                      &err),
                     0);
    struct store_node got;
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_int_equal(got.cert_issued_at, T0 + 103);
    assert_int_equal(got.last_renewed_at, T0 + 103);
    /* A row whose serial is not in the history reads as unknown (0). */
    raw_exec(f->path, "UPDATE nodes SET cert_serial = 'nowhere'");
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_int_equal(got.cert_issued_at, 0);
    assert_int_equal(got.last_renewed_at, T0 + 103);
}

static void
test_heartbeats_are_saved_in_one_batch(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node a = enrolled(f, "connector", "a");
    struct store_node b = enrolled(f, "tunneler", "b");
    assert_string_equal(a.counters, "{}");
    assert_int_equal(a.counters_at, 0);
    struct events *before = all_events(f);
    struct store_heartbeat beats[3];
    memset(beats, 0, sizeof(beats));
    snprintf(beats[0].id, sizeof(beats[0].id), "%s", a.id);
    beats[0].last_seen = T0 + 20;
    snprintf(beats[0].counters, sizeof(beats[0].counters), "{\"auth_expired\":2}");
    beats[0].counters_at = T0 + 19;
    snprintf(beats[1].id, sizeof(beats[1].id), "%s", b.id);
    beats[1].last_seen = T0 + 21; /* counters "" : keep what is stored */
    snprintf(beats[2].id, sizeof(beats[2].id), "gone");
    beats[2].last_seen = T0 + 22;
    size_t written = 99;
    assert_int_equal(store_node_save_heartbeats(f->store, beats, 3, &written, &err), 0);
    assert_int_equal(written, 2);
    struct store_node got;
    assert_int_equal(store_node_get(f->store, a.id, &got, &err), 0);
    assert_int_equal(got.last_seen, T0 + 20);
    assert_string_equal(got.counters, "{\"auth_expired\":2}");
    assert_int_equal(got.counters_at, T0 + 19);
    assert_int_equal(got.status, STORE_OFFLINE); /* a heartbeat batch changes no status */
    assert_int_equal(store_node_get(f->store, b.id, &got, &err), 0);
    assert_int_equal(got.last_seen, T0 + 21);
    assert_string_equal(got.counters, "{}");
    struct events *after = all_events(f);
    assert_int_equal(after->n, before->n); /* and records no event */
    free(before);
    free(after);

    /* last_seen never moves back (a later status write may be newer). */
    beats[0].last_seen = T0 + 5;
    assert_int_equal(store_node_save_heartbeats(f->store, beats, 1, NULL, &err), 0);
    assert_int_equal(store_node_get(f->store, a.id, &got, &err), 0);
    assert_int_equal(got.last_seen, T0 + 20);

    /* Counters that are not an object: nothing of the batch is written. */
    beats[1].last_seen = T0 + 50;
    snprintf(beats[0].counters, sizeof(beats[0].counters), "[1]");
    assert_int_equal(store_node_save_heartbeats(f->store, beats, 2, NULL, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_int_equal(store_node_get(f->store, b.id, &got, &err), 0);
    assert_int_equal(got.last_seen, T0 + 21);
    assert_int_equal(store_node_save_heartbeats(f->store, NULL, 0, &written, &err), 0);
    assert_int_equal(written, 0);
    /* They survive a restart. */
    snprintf(beats[0].counters, sizeof(beats[0].counters), "{\"reconnect_failed\":1}");
    assert_int_equal(store_node_save_heartbeats(f->store, beats, 1, NULL, &err), 0);
    restart(f);
    assert_int_equal(store_node_get(f->store, a.id, &got, &err), 0);
    assert_string_equal(got.counters, "{\"reconnect_failed\":1}");
}

/* A version 5 database gains the fleet columns, and a node renewed before
 * takes its last renewal from its certificate history. */
static void
test_migration_to_6_backfills_last_renewal(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node n = enrolled(f, "connector", "c1");
    advance_s(f, 60);
    assert_int_equal(store_node_renew(f->store, n.id, "key-c1", "beef01", "k2", T0 + 7200, 600,
                                      &err),
                     0);
    struct store_node fresh = enrolled(f, "connector", "c2");
    store_close(f->store);
    f->store = NULL;
    raw_exec(f->path, "DROP TABLE token_uses;"
                      "ALTER TABLE nodes DROP COLUMN drain;"
                      "ALTER TABLE nodes DROP COLUMN drain_since;"
                      "ALTER TABLE nodes DROP COLUMN drain_deadline;"
                      "DROP INDEX nodes_revoked; DROP TABLE cas; DELETE FROM meta WHERE key IN ('ca_signer', 'ca_version');"
                      "DROP TABLE controllers; ALTER TABLE nodes DROP COLUMN controller_id;"
                      "DROP TABLE fed_grants; DROP TABLE peers; DROP INDEX events_by_source;"
                      "ALTER TABLE events DROP COLUMN source;"
                      "ALTER TABLE nodes DROP COLUMN counters;"
                      "ALTER TABLE nodes DROP COLUMN counters_at;"
                      "ALTER TABLE nodes DROP COLUMN last_renewed_at; PRAGMA user_version = 5;");
    f->store = open_store(f);
    assert_int_equal(store_schema_version(f->store), CURRENT_SCHEMA);
    struct store_node got;
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_int_equal(got.last_renewed_at, T0 + 60);
    assert_string_equal(got.counters, "{}");
    assert_int_equal(store_node_get(f->store, fresh.id, &got, &err), 0);
    assert_int_equal(got.last_renewed_at, 0);
}

/* The previous certificate opens sessions for its grace, then it is
 * superseded and still named by its serial; a renewal from it is refused
 * and writes nothing. */
static void
test_renew_previous_key_has_a_grace_then_is_superseded(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node n = enrolled(f, "connector", "c1");
    assert_int_equal(store_node_renew(f->store, n.id, "key-c1", "beef01", "k2", T0 + 86400, 600,
                                      &err),
                     0);
    struct store_cert_check check;
    assert_int_equal(store_node_cert_state(f->store, n.id, "key-c1", &check, &err), 0);
    assert_int_equal(check.state, STORE_CERT_PREVIOUS);
    assert_string_equal(check.serial, "0a0b");
    assert_int_equal(store_node_cert_state(f->store, n.id, "k2", &check, &err), 0);
    assert_int_equal(check.state, STORE_CERT_CURRENT);
    assert_string_equal(check.serial, "beef01");
    assert_int_equal(store_node_cert_state(f->store, n.id, "never", &check, &err), 0);
    assert_int_equal(check.state, STORE_CERT_SUPERSEDED);
    assert_string_equal(check.serial, "");

    advance_s(f, 600);
    assert_int_equal(store_node_cert_state(f->store, n.id, "key-c1", &check, &err), 0);
    assert_int_equal(check.state, STORE_CERT_SUPERSEDED);
    assert_string_equal(check.serial, "0a0b");
    size_t events_before = all_events_count(f);
    assert_int_equal(store_node_renew(f->store, n.id, "key-c1", "cafe", "k3", T0 + 90000, 600,
                                      &err),
                     -1);
    assert_int_equal(err.code, STORE_E_SUPERSEDED);
    assert_non_null(strstr(err.msg, "0a0b"));
    struct store_node got;
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_string_equal(got.cert_serial, "beef01");
    assert_string_equal(got.cert_key, "k2");
    assert_int_equal(all_events_count(f), events_before);

    /* A renewal from the previous key within its grace (the reply to the
     * first was lost) keeps that key as the previous one. */
    assert_int_equal(store_node_renew(f->store, n.id, "k2", "d00d", "k3", T0 + 90000, 600, &err),
                     0);
    assert_int_equal(store_node_renew(f->store, n.id, "k2", "e00e", "k4", T0 + 90000, 600, &err),
                     0);
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_string_equal(got.cert_key, "k4");
    assert_string_equal(got.prev_cert_key, "k2");
    assert_string_equal(got.prev_cert_serial, "beef01");
}

/* A session with the current key ends the previous key's grace at once. */
static void
test_admit_with_current_key_ends_the_grace(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node n = enrolled(f, "connector", "c1");
    struct store_cert_check check;
    assert_int_equal(store_node_cert_admit(f->store, n.id, "key-c1", &check, &err), 0);
    assert_int_equal(check.state, STORE_CERT_CURRENT);
    assert_false(check.grace_ended);
    assert_false(check.bound);
    assert_int_equal(store_node_renew(f->store, n.id, "key-c1", "beef01", "k2", T0 + 86400, 600,
                                      &err),
                     0);
    assert_int_equal(store_node_cert_admit(f->store, n.id, "key-c1", &check, &err), 0);
    assert_int_equal(check.state, STORE_CERT_PREVIOUS);
    assert_false(check.grace_ended);
    assert_int_equal(store_node_cert_admit(f->store, n.id, "k2", &check, &err), 0);
    assert_int_equal(check.state, STORE_CERT_CURRENT);
    assert_true(check.grace_ended);
    assert_int_equal(store_node_cert_admit(f->store, n.id, "key-c1", &check, &err), 0);
    assert_int_equal(check.state, STORE_CERT_SUPERSEDED);
    assert_string_equal(check.serial, "0a0b");
    assert_int_equal(store_node_cert_admit(f->store, n.id, "k2", &check, &err), 0);
    assert_false(check.grace_ended);
    assert_int_equal(store_node_cert_admit(f->store, "missing", "k2", &check, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
}

/* A row from a database older than keys takes the first session's key. */
static void
test_admit_binds_a_row_without_key(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node n = enrolled(f, "tunneler", "old");
    raw_exec(f->path, "UPDATE nodes SET cert_key = ''");
    struct store_cert_check check;
    assert_int_equal(store_node_cert_admit(f->store, n.id, "first", &check, &err), 0);
    assert_int_equal(check.state, STORE_CERT_CURRENT);
    assert_true(check.bound);
    assert_string_equal(check.serial, "0a0b");
    assert_int_equal(store_node_cert_admit(f->store, n.id, "second", &check, &err), 0);
    assert_int_equal(check.state, STORE_CERT_SUPERSEDED);
    assert_false(check.bound);
}

/* A live node's name is not taken by any token; a --replace token takes it
 * and leaves it one certificate; an expired node re-enrolls without one. */
static void
test_enroll_live_node_needs_a_replacing_token(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node first = enrolled(f, "connector", "c1");
    assert_int_equal(store_node_renew(f->store, first.id, "key-c1", "beef01", "k2", T0 + 3600,
                                      600, &err),
                     0);
    add_token(f, "plain", 5, 7200);
    struct store_node n = node_for("connector", "c1");
    snprintf(n.cert_serial, sizeof(n.cert_serial), "77");
    snprintf(n.cert_key, sizeof(n.cert_key), "k-new");
    size_t events_before = all_events_count(f);
    struct store_node out;
    assert_int_equal(store_node_enroll(f->store, "plain", &n, &out, NULL, &err), -1);
    assert_int_equal(err.code, STORE_E_ENROLLED);
    assert_non_null(strstr(err.msg, "node c1 already enrolled"));
    assert_int_equal(uses_left(f, "plain"), 5);
    assert_int_equal(all_events_count(f), events_before);

    struct store_token t = token_for("swap", "connector", "c1", 1, 600);
    t.replace = true;
    assert_int_equal(store_token_insert(f->store, &t, &err), 0);
    struct store_token got_token;
    assert_int_equal(store_token_get(f->store, "swap", &got_token, &err), 0);
    assert_true(got_token.replace);
    assert_int_equal(store_node_enroll(f->store, "swap", &n, &out, NULL, &err), 0);
    assert_string_equal(out.id, first.id);
    assert_string_equal(out.cert_serial, "77");
    assert_string_equal(out.cert_key, "k-new");
    assert_string_equal(out.prev_cert_key, "");
    assert_last_event(f, "enrolled", first.id,
                      "replaced connector c1 with token swap: serial beef01 superseded by 77");
    struct store_cert_check check;
    assert_int_equal(store_node_cert_state(f->store, first.id, "k2", &check, &err), 0);
    assert_int_equal(check.state, STORE_CERT_SUPERSEDED);
    assert_string_equal(check.serial, "beef01");
    assert_int_equal(store_node_cert_state(f->store, first.id, "key-c1", &check, &err), 0);
    assert_int_equal(check.state, STORE_CERT_SUPERSEDED);

    /* Once its certificate has expired, the name re-enrolls with any token. */
    advance_s(f, 3600);
    snprintf(n.cert_serial, sizeof(n.cert_serial), "78");
    snprintf(n.addresses, sizeof(n.addresses), "[\"198.51.100.7\"]");
    snprintf(n.allowed_addresses, sizeof(n.allowed_addresses), "[\"198.51.100.8\"]");
    assert_int_equal(store_node_enroll(f->store, "plain", &n, &out, NULL, &err), 0);
    assert_string_equal(out.id, first.id);
    assert_int_equal(uses_left(f, "plain"), 4);
    /* Re-enrollment replaces the allowed addresses with its token's, never
     * with what the node announced. */
    assert_string_equal(out.addresses, "[\"198.51.100.7\"]");
    assert_string_equal(out.allowed_addresses, "[\"198.51.100.8\"]");
}

static void
test_set_addresses_takes_json_arrays_and_objects(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node n = enrolled(f, "connector", "c1");
    assert_int_equal(
        store_node_set_addresses(f->store, n.id, "[\"192.0.2.1:7444\",\"[2001:db8::1]:7444\"]",
                                 &err),
        0);
    struct store_node got;
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_string_equal(got.addresses, "[\"192.0.2.1:7444\",\"[2001:db8::1]:7444\"]");
    const char *bad[] = {"not json", "\"10.0.0.1\"", "[1,", "42"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(store_node_set_addresses(f->store, n.id, bad[i], &err), -1);
        assert_int_equal(err.code, ZTR_E_INVALID);
    }
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_string_equal(got.addresses, "[\"192.0.2.1:7444\",\"[2001:db8::1]:7444\"]");
    const char *advert = "{\"data_listen\":\"192.0.2.1:7444\",\"resources\":[\"pg\"]}";
    assert_int_equal(store_node_set_addresses(f->store, n.id, advert, &err), 0);
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_string_equal(got.addresses, advert);
    assert_int_equal(store_node_set_addresses(f->store, "missing", "[]", &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
}

static void
test_allowed_addresses_come_from_enrollment_or_the_operator(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node n = enrolled(f, "connector", "c1");
    struct store_node got;
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    /* Enrollment's allowed list (its token's), not what the node sent. */
    assert_string_equal(got.allowed_addresses, "[\"10.0.0.5\"]");
    assert_string_equal(got.addresses, "[\"10.0.0.5:7444\"]");
    char certified[STORE_ADDRESSES_MAX + 1];
    snprintf(certified, sizeof(certified), "%s", got.allowed_addresses);

    /* What a hello announces is the advertisement, not the allowed list. */
    const char *advert = "{\"addresses\":[\"203.0.113.9\"],\"resources\":[\"pg\"]}";
    assert_int_equal(store_node_set_addresses(f->store, n.id, advert, &err), 0);
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_string_equal(got.allowed_addresses, certified);

    assert_int_equal(
        store_node_set_allowed_addresses(f->store, n.id, "[\"203.0.113.9\"]", &err), 0);
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_string_equal(got.allowed_addresses, "[\"203.0.113.9\"]");
    assert_int_equal(store_node_set_allowed_addresses(f->store, n.id, "not json", &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_int_equal(store_node_set_allowed_addresses(f->store, "missing", "[]", &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
}

static void
test_revoke_is_idempotent_and_bumps_allowlist_once(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node n = enrolled(f, "tunneler", "laptop");
    assert_int_equal(store_node_set_status(f->store, n.id, STORE_ONLINE, NULL, NULL, &err), 0);
    int64_t version = store_allowlist_version(f->store);
    advance_s(f, 3);
    assert_int_equal(store_node_revoke(f->store, n.id, "lost", &err), 0);
    assert_last_event(f, "revoked", n.id, "lost");
    assert_int_equal(store_allowlist_version(f->store), version + 1);
    struct store_node got;
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_true(got.revoked);
    assert_int_equal(got.status, STORE_OFFLINE);

    assert_int_equal(store_node_revoke(f->store, n.id, "again", &err), 0);
    assert_int_equal(store_allowlist_version(f->store), version + 1);
    assert_int_equal(events_of_kind(f, "revoked"), 1);
    store_close(f->store);
    f->store = NULL;
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM revocations"), 1);
    char serial[64];
    raw_text(f->path, "SELECT serial || '/' || reason FROM revocations", serial, sizeof(serial));
    assert_string_equal(serial, "0a0b/lost");
    f->store = open_store(f);

    /* A revoked node cannot come back ONLINE. */
    assert_int_equal(store_node_set_status(f->store, n.id, STORE_ONLINE, NULL, NULL, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_int_equal(store_node_revoke(f->store, "missing", "x", &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
}

/* ---- resources and the allowlist ----------------------------------------- */

static void
test_allow_and_deny_bump_version_only_on_change(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    assert_int_equal(store_allowlist_version(f->store), 1);
    assert_int_equal(store_resource_put(f->store, "web", "intranet", &err), 0);
    assert_int_equal(store_allowlist_version(f->store), 1);
    assert_int_equal(store_allow(f->store, "laptop", "web", &err), 0);
    assert_int_equal(store_allowlist_version(f->store), 2);
    assert_int_equal(store_allow(f->store, "laptop", "web", &err), 0);
    assert_int_equal(store_allowlist_version(f->store), 2);
    assert_int_equal(grant_count(f), 1);
    assert_int_equal(store_deny(f->store, "laptop", "web", &err), 0);
    assert_int_equal(store_allowlist_version(f->store), 3);
    assert_int_equal(store_deny(f->store, "laptop", "web", &err), 0);
    assert_int_equal(store_allowlist_version(f->store), 3);
    assert_int_equal(grant_count(f), 0);
}

static void
test_allow_of_unknown_resource_is_not_found(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    assert_int_equal(store_allow(f->store, "laptop", "nowhere", &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    assert_non_null(strstr(err.msg, "nowhere"));
    assert_int_equal(store_allowlist_version(f->store), 1);
    assert_int_equal(grant_count(f), 0);
}

struct grants_seen {
    char text[256];
};

static int
keep_grant_text(void *ctx, const struct store_grant *g)
{
    struct grants_seen *seen = ctx;
    size_t used = strlen(seen->text);
    snprintf(seen->text + used, sizeof(seen->text) - used, "%s>%s ", g->tunneler, g->resource);
    return 0;
}

static void
test_resource_delete_cascades_grants_and_bumps_version(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    assert_int_equal(store_resource_put(f->store, "db", NULL, &err), 0);
    assert_int_equal(store_resource_put(f->store, "web", "", &err), 0);
    assert_int_equal(store_resource_put(f->store, "unused", "", &err), 0);
    assert_int_equal(store_allow(f->store, "b", "db", &err), 0);
    assert_int_equal(store_allow(f->store, "a", "db", &err), 0);
    assert_int_equal(store_allow(f->store, "a", "web", &err), 0);
    struct grants_seen seen = {""};
    assert_int_equal(store_allowlist_list(f->store, keep_grant_text, &seen, &err), 0);
    assert_string_equal(seen.text, "a>db a>web b>db ");
    int64_t version = store_allowlist_version(f->store);

    assert_int_equal(store_resource_delete(f->store, "db", &err), 0);
    assert_int_equal(store_allowlist_version(f->store), version + 1);
    seen.text[0] = '\0';
    assert_int_equal(store_allowlist_list(f->store, keep_grant_text, &seen, &err), 0);
    assert_string_equal(seen.text, "a>web ");

    /* No grants went with it: the allowlist did not change. */
    assert_int_equal(store_resource_delete(f->store, "unused", &err), 0);
    assert_int_equal(store_allowlist_version(f->store), version + 1);
    assert_int_equal(store_resource_delete(f->store, "db", &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    assert_non_null(strstr(err.msg, "db"));
}

static void
test_resource_put_updates_description_and_keeps_created_at(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    assert_int_equal(store_resource_put(f->store, "web", "old", &err), 0);
    advance_s(f, 50);
    assert_int_equal(store_resource_put(f->store, "web", "new", &err), 0);
    struct snapshot snap = {0};
    assert_int_equal(store_resource_list(f->store, keep_resource, &snap, &err), 0);
    assert_int_equal(snap.resources, 1);
    assert_string_equal(snap.resource.name, "web");
    assert_string_equal(snap.resource.description, "new");
    assert_int_equal(snap.resource.created_at, T0);
}

static int
keep_binding_text(void *ctx, const struct store_binding *b)
{
    struct grants_seen *seen = ctx;
    size_t used = strlen(seen->text);
    snprintf(seen->text + used, sizeof(seen->text) - used, "%s>%s ", b->resource, b->connector);
    return 0;
}

static void
test_bindings_name_connectors_and_go_with_their_resource(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    assert_int_equal(store_resource_put(f->store, "pg", "", &err), 0);
    assert_int_equal(store_resource_put(f->store, "web", "", &err), 0);
    /* By name: a connector that has not enrolled yet may be bound. */
    assert_int_equal(store_resource_bind(f->store, "pg", "dc1-b", true, &err), 0);
    assert_int_equal(store_resource_bind(f->store, "pg", "dc1-a", true, &err), 0);
    assert_int_equal(store_resource_bind(f->store, "pg", "dc1-a", true, &err), 0);
    assert_int_equal(store_resource_bind(f->store, "web", "dc1-a", true, &err), 0);
    struct grants_seen seen = {""};
    assert_int_equal(store_binding_list(f->store, keep_binding_text, &seen, &err), 0);
    assert_string_equal(seen.text, "pg>dc1-a pg>dc1-b web>dc1-a ");

    assert_int_equal(store_resource_bind(f->store, "nope", "dc1-a", true, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    assert_int_equal(store_resource_bind(f->store, "pg", "", true, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);

    assert_int_equal(store_resource_bind(f->store, "pg", "dc1-b", false, &err), 0);
    assert_int_equal(store_resource_bind(f->store, "pg", "dc1-b", false, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    assert_int_equal(store_resource_delete(f->store, "web", &err), 0);
    seen.text[0] = '\0';
    assert_int_equal(store_binding_list(f->store, keep_binding_text, &seen, &err), 0);
    assert_string_equal(seen.text, "pg>dc1-a ");

    /* A resource added again later starts unbound. */
    assert_int_equal(store_resource_put(f->store, "web", "", &err), 0);
    seen.text[0] = '\0';
    assert_int_equal(store_binding_list(f->store, keep_binding_text, &seen, &err), 0);
    assert_string_equal(seen.text, "pg>dc1-a ");
}

/* ---- events and visitors -------------------------------------------------- */

static void
test_events_list_oldest_first_after_id_with_limit(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    for (int i = 0; i < 5; i++) {
        char detail[16];
        snprintf(detail, sizeof(detail), "e%d", i);
        assert_int_equal(store_event_add(f->store, "admin", i % 2 ? "n1" : NULL, detail, &err),
                         0);
        advance_s(f, 1);
    }
    struct events *ev = calloc(1, sizeof(*ev));
    assert_non_null(ev);
    assert_int_equal(store_event_list(f->store, 0, 3, collect_event, ev, &err), 0);
    assert_int_equal(ev->n, 3);
    for (size_t i = 0; i < 3; i++) {
        char detail[16];
        snprintf(detail, sizeof(detail), "e%zu", i);
        assert_string_equal(ev->items[i].detail, detail);
        assert_int_equal(ev->items[i].at, T0 + (int64_t)i);
        if (i > 0)
            assert_true(ev->items[i].id > ev->items[i - 1].id);
    }
    assert_string_equal(ev->items[0].node_id, "");
    assert_string_equal(ev->items[1].node_id, "n1");
    int64_t cursor = ev->items[2].id;
    ev->n = 0;
    assert_int_equal(store_event_list(f->store, cursor, 100, collect_event, ev, &err), 0);
    assert_int_equal(ev->n, 2);
    assert_string_equal(ev->items[0].detail, "e3");
    assert_string_equal(ev->items[1].detail, "e4");
    ev->n = 0;
    assert_int_equal(store_event_list(f->store, ev->items[1].id, 100, collect_event, ev, &err),
                     0);
    assert_int_equal(ev->n, 0);
    assert_int_equal(store_event_list(f->store, 0, 0, collect_event, ev, &err), 0);
    assert_int_equal(ev->n, 0);
    free(ev);
    assert_int_equal(store_event_add(f->store, "", NULL, "x", &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
}

static void
test_visitor_returning_nonzero_stops_the_listing(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof(name), "n%d", i);
        enrolled(f, "connector", name);
    }
    struct counter c = {0, 2};
    assert_int_equal(store_node_list(f->store, count_node, &c, &err), 0);
    assert_int_equal(c.n, 2);
    c = (struct counter){0, 3};
    assert_int_equal(store_token_list(f->store, count_token, &c, &err), 0);
    assert_int_equal(c.n, 3);
}

static int
status_from_list_visitor(void *ctx, const struct store_node *n)
{
    struct store *store = ctx;
    struct ztr_err err = {0};
    if (store_node_set_status(store, n->id, STORE_ONLINE, NULL, NULL, &err) != 0)
        fail_msg("write from a list visitor: %s", err.msg);
    return 0;
}

/* Callers react to what they list (mark nodes, log events) without first
 * copying the rows out. */
static void
test_list_visitor_may_write_to_the_store(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    enrolled(f, "connector", "c1");
    enrolled(f, "connector", "c2");
    enrolled(f, "tunneler", "t1");
    assert_int_equal(store_node_list(f->store, status_from_list_visitor, f->store, &err), 0);
    assert_int_equal(events_of_kind(f, "status"), 3);
    assert_int_equal(node_count(f), 3);
}

/* ---- limits --------------------------------------------------------------- */

static char *
text_of(size_t len)
{
    char *text = malloc(len + 1);
    assert_non_null(text);
    memset(text, 'a', len);
    text[len] = '\0';
    return text;
}

static void
assert_limit(int rc, const struct ztr_err *err)
{
    assert_int_equal(rc, -1);
    if (err->code != ZTR_E_LIMIT)
        fail_msg("expected ZTR_E_LIMIT, got %d: %s", err->code, err->msg);
}

static void
test_values_longer_than_their_fields_are_refused_not_cut(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store_node ok = enrolled(f, "connector", "ok");
    add_token(f, "tok", 10, 600);
    char *name_max = text_of(STORE_NAME_MAX), *name_over = text_of(STORE_NAME_MAX + 1);
    char *detail_over = text_of(STORE_DETAIL_MAX + 1), *id_over = text_of(STORE_ID_MAX + 1);
    char *serial_over = text_of(STORE_SERIAL_MAX + 1);
    char *addresses_over = text_of(STORE_ADDRESSES_MAX + 1);

    /* Exactly at the limit fits and reads back whole. */
    struct store_node n = node_for("connector", name_max);
    struct store_node out;
    assert_int_equal(store_node_enroll(f->store, "tok", &n, &out, NULL, &err), 0);
    assert_string_equal(out.name, name_max);
    assert_int_equal(uses_left(f, "tok"), 9);

    /* Unterminated record fields. */
    n = node_for("connector", "x");
    memset(n.spiffe_id, 's', sizeof(n.spiffe_id));
    assert_limit(store_node_enroll(f->store, "tok", &n, &out, NULL, &err), &err);
    n = node_for("connector", "x");
    memset(n.addresses, '[', sizeof(n.addresses));
    assert_limit(store_node_enroll(f->store, "tok", &n, &out, NULL, &err), &err);
    n = node_for("connector", "x");
    memset(n.cert_serial, '1', sizeof(n.cert_serial));
    assert_limit(store_node_enroll(f->store, "tok", &n, &out, NULL, &err), &err);
    assert_int_equal(uses_left(f, "tok"), 9);

    assert_limit(store_node_enroll(f->store, id_over, &n, &out, NULL, &err), &err);
    assert_limit(store_node_get(f->store, id_over, &out, &err), &err);
    assert_limit(store_node_renew(f->store, ok.id, "k", serial_over, "k2", 1, 600, &err), &err);
    assert_limit(store_node_set_addresses(f->store, ok.id, addresses_over, &err), &err);
    assert_limit(store_node_revoke(f->store, ok.id, detail_over, &err), &err);
    assert_limit(store_node_set_status(f->store, ok.id, STORE_OFFLINE, detail_over, NULL, &err),
                 &err);
    assert_limit(store_resource_put(f->store, name_over, "", &err), &err);
    assert_limit(store_resource_put(f->store, "r", detail_over, &err), &err);
    assert_int_equal(store_resource_put(f->store, "r", "", &err), 0);
    assert_limit(store_allow(f->store, name_over, "r", &err), &err);
    assert_limit(store_event_add(f->store, "admin", NULL, detail_over, &err), &err);
    assert_limit(store_event_add(f->store, "a-kind-that-is-longer-than-31-bytes", NULL, "", &err),
                 &err);
    assert_limit(store_event_add(f->store, "admin", id_over, "", &err), &err);

    struct store_node got;
    assert_int_equal(store_node_get(f->store, ok.id, &got, &err), 0);
    assert_false(got.revoked);
    assert_string_equal(got.cert_serial, "0a0b");
    assert_int_equal(got.status, STORE_OFFLINE);
    assert_int_equal(grant_count(f), 0);
    free(name_max);
    free(name_over);
    free(detail_over);
    free(id_over);
    free(serial_over);
    free(addresses_over);
}

static void
test_oversized_value_written_behind_the_stores_back_is_an_error(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    assert_int_equal(store_resource_put(f->store, "r", "", &err), 0);
    /* 2200 characters, past STORE_DETAIL_MAX. */
    raw_exec(f->path, "UPDATE resources SET description = hex(zeroblob(1100))");
    struct snapshot snap = {0};
    assert_int_equal(store_resource_list(f->store, keep_resource, &snap, &err), -1);
    assert_int_equal(err.code, ZTR_E_LIMIT);
    assert_int_equal(snap.resources, 0);
}

/* Events are bounded by age and by count, the oldest going first, and one
 * call deletes at most one batch. */
static void
test_event_prune_by_age_and_count_in_batches(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    size_t deleted = 99;
    for (int i = 0; i < 10; i++)
        assert_int_equal(store_event_add(f->store, "denied", "", "old", &err), 0);
    advance_s(f, 100);
    int64_t cutoff = clock_wall_s(&f->clock);
    for (int i = 0; i < 20; i++)
        assert_int_equal(store_event_add(f->store, "denied", "", "new", &err), 0);
    assert_int_equal(all_events_count(f), 30);
    /* Nothing to do: nothing deleted. */
    assert_int_equal(store_event_prune(f->store, 0, 0, 100, &deleted, &err), 0);
    assert_int_equal(deleted, 0);
    /* By age, in batches of 4: 4, 4, 2, then none. */
    assert_int_equal(store_event_prune(f->store, cutoff, 0, 4, &deleted, &err), 0);
    assert_int_equal(deleted, 4);
    assert_int_equal(store_event_prune(f->store, cutoff, 0, 4, &deleted, &err), 0);
    assert_int_equal(deleted, 4);
    assert_int_equal(store_event_prune(f->store, cutoff, 0, 4, &deleted, &err), 0);
    assert_int_equal(deleted, 2);
    assert_int_equal(store_event_prune(f->store, cutoff, 0, 4, &deleted, &err), 0);
    assert_int_equal(deleted, 0);
    assert_int_equal(events_of_kind(f, "denied"), 20);
    struct events *ev = all_events(f);
    for (size_t i = 0; i < ev->n; i++)
        assert_string_equal(ev->items[i].detail, "new");
    int64_t newest = ev->items[ev->n - 1].id;
    free(ev);
    /* By count: the newest 5 stay. */
    assert_int_equal(store_event_prune(f->store, 0, 5, 10, &deleted, &err), 0);
    assert_int_equal(deleted, 10);
    assert_int_equal(store_event_prune(f->store, 0, 5, 10, &deleted, &err), 0);
    assert_int_equal(deleted, 5);
    ev = all_events(f);
    assert_int_equal(ev->n, 5);
    assert_int_equal(ev->items[4].id, newest);
    assert_int_equal(ev->items[0].id, newest - 4);
    free(ev);
    /* A new event after pruning keeps a fresh id: cursors never go back. */
    assert_int_equal(store_event_add(f->store, "admin", "", "later", &err), 0);
    assert_last_event(f, "admin", "", "later");
    assert_int_equal(store_event_prune(f->store, 0, 5, 10, &deleted, &err), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(all_events_count(f), 5);
}

static void
test_pg_url_with_a_password_is_refused(void **state)
{
    (void)state;
    struct ztr_clock clock;
    clock_manual_init(&clock, T0_MS);
    struct store *store = NULL;
    struct ztr_err err = {0};
    assert_int_equal(store_open("postgresql://ztr:hunter2@127.0.0.1:1/x", &clock, &store, &err),
                     -1);
    assert_non_null(strstr(err.msg, "must not hold a password"));
    assert_null(strstr(err.msg, "hunter2"));
}

/* ---- controllers sharing the database ---------------------------------------- */

static void
test_node_goes_offline_only_through_its_holder(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store *other = open_store(f);
    store_set_controller(f->store, "c1");
    store_set_controller(other, "c2");
    struct store_node n = enrolled(f, "connector", "dc1");
    bool changed = false;
    assert_int_equal(store_node_set_status(f->store, n.id, STORE_ONLINE, NULL, &changed, &err), 0);
    struct store_node got;
    assert_int_equal(store_node_get(other, n.id, &got, &err), 0);
    assert_string_equal(got.controller_id, "c1");
    /* c2's stale session closing later does not take it OFFLINE... */
    assert_int_equal(store_node_set_status(other, n.id, STORE_OFFLINE, "closed", &changed, &err),
                     0);
    assert_false(changed);
    assert_int_equal(store_node_get(other, n.id, &got, &err), 0);
    assert_int_equal(got.status, STORE_ONLINE);
    /* ...nor does c2's sweep, whatever the last_seen. */
    advance_s(f, 3600);
    assert_int_equal(store_node_sweep_offline(other, T0 + 3000, NULL, NULL, &err), 0);
    assert_int_equal(store_node_get(other, n.id, &got, &err), 0);
    assert_int_equal(got.status, STORE_ONLINE);
    /* The holder does. */
    assert_int_equal(store_node_set_status(f->store, n.id, STORE_OFFLINE, "closed", &changed,
                                           &err),
                     0);
    assert_true(changed);
    assert_int_equal(store_node_get(other, n.id, &got, &err), 0);
    assert_int_equal(got.status, STORE_OFFLINE);
    assert_string_equal(got.controller_id, "");
    store_close(other);
}

static int64_t
store_now(struct store *store)
{
    struct ztr_err err = {0};
    int64_t now = 0;
    if (store_clock_s(store, &now, &err) != 0)
        fail_msg("store_clock_s: %s", err.msg);
    return now;
}

static void
test_nodes_of_a_silent_controller_are_released(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store *other = open_store(f);
    store_set_controller(f->store, "c1");
    store_set_controller(other, "c2");
    assert_int_equal(store_controller_beat(f->store, "127.0.0.1:7443", &err), 0);
    assert_int_equal(store_controller_beat(other, "127.0.0.1:7444", &err), 0);
    struct store_node n = enrolled(f, "tunneler", "laptop");
    assert_int_equal(store_node_set_status(f->store, n.id, STORE_ONLINE, NULL, NULL, &err), 0);
    /* c1 beats: its node stays its. */
    assert_int_equal(store_nodes_release(other, store_now(other) - 5, NULL, NULL, NULL, &err), 0);
    struct store_node got;
    assert_int_equal(store_node_get(other, n.id, &got, &err), 0);
    assert_int_equal(got.status, STORE_ONLINE);
    /* c1 falls silent (its last beat before alive_since): c2 releases it,
     * naming c1. On PostgreSQL the beats carry the database's clock. */
    advance_s(f, 30);
    assert_int_equal(store_controller_beat(other, "127.0.0.1:7444", &err), 0);
    assert_int_equal(store_nodes_release(other, store_now(other) + 1, NULL, NULL, NULL, &err), 0);
    assert_int_equal(store_node_get(other, n.id, &got, &err), 0);
    assert_int_equal(got.status, STORE_OFFLINE);
    assert_last_event(f, "status", n.id, "OFFLINE: controller c1 stopped answering");
    /* A clean leave releases at once. */
    assert_int_equal(store_node_set_status(other, n.id, STORE_ONLINE, NULL, NULL, &err), 0);
    assert_int_equal(store_controller_leave(other, &err), 0);
    assert_int_equal(store_controller_beat(f->store, "127.0.0.1:7443", &err), 0);
    assert_int_equal(store_nodes_release(f->store, store_now(f->store) - 5, NULL, NULL, NULL,
                                         &err),
                     0);
    assert_int_equal(store_node_get(f->store, n.id, &got, &err), 0);
    assert_int_equal(got.status, STORE_OFFLINE);
    store_close(other);
}

static int
count_reclaimed(void *ctx, const struct store_node *node)
{
    (void)node;
    (*(int *)ctx)++;
    return 0;
}

static void
note_change(void *ctx, const char *change)
{
    if (strcmp(change, "released") == 0)
        (*(int *)ctx)++;
}

/* A holder that was only slow to beat takes back the nodes whose sessions
 * it still has; a revoked node and one another controller holds stay. */
static void
test_released_nodes_with_a_session_are_reclaimed(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    struct store *other = open_store(f);
    store_set_controller(f->store, "c1");
    store_set_controller(other, "c2");
    int fd = -1;
    assert_int_equal(store_changes_open(other, &fd, &err), 0);
    assert_int_equal(store_controller_beat(f->store, "127.0.0.1:7443", &err), 0);
    struct store_node live = enrolled(f, "tunneler", "live");
    struct store_node gone = enrolled(f, "tunneler", "gone");
    struct store_node theirs = enrolled(f, "connector", "theirs");
    assert_int_equal(store_node_set_status(f->store, live.id, STORE_ONLINE, NULL, NULL, &err), 0);
    assert_int_equal(store_node_set_status(f->store, gone.id, STORE_ONLINE, NULL, NULL, &err), 0);
    advance_s(f, 30);
    assert_int_equal(store_controller_beat(other, "127.0.0.1:7444", &err), 0);
    assert_int_equal(store_nodes_release(other, store_now(other) + 1, NULL, NULL, NULL, &err), 0);
    /* The others hear of it (PostgreSQL; alone on SQLite there is no one). */
    if (fd >= 0) {
        int released = 0;
        for (int i = 0; i < 50 && released == 0; i++) {
            assert_int_equal(store_changes_read(other, note_change, &released, &err), 0);
            if (released == 0)
                usleep(20000);
        }
        assert_int_equal(released, 1);
    }
    assert_int_equal(store_node_revoke(f->store, gone.id, "lost", &err), 0);
    assert_int_equal(store_node_set_status(other, theirs.id, STORE_ONLINE, NULL, NULL, &err), 0);
    /* More ids than one statement asks about: the live one in the second
     * chunk, unknown ids beside it. */
    const char *ids[40];
    for (size_t i = 0; i < 40; i++)
        ids[i] = "no-such-node";
    ids[0] = gone.id;
    ids[1] = theirs.id;
    ids[35] = live.id;
    int reclaimed = 0;
    assert_int_equal(store_nodes_reclaim(f->store, ids, 40, count_reclaimed, &reclaimed, &err), 0);
    assert_int_equal(reclaimed, 1);
    struct store_node got;
    assert_int_equal(store_node_get(f->store, live.id, &got, &err), 0);
    assert_int_equal(got.status, STORE_ONLINE);
    assert_string_equal(got.controller_id, "c1");
    assert_last_event(f, "status", live.id, "ONLINE: its session is live on controller c1");
    assert_int_equal(store_node_get(f->store, gone.id, &got, &err), 0);
    assert_int_equal(got.status, STORE_OFFLINE);
    assert_int_equal(store_node_get(f->store, theirs.id, &got, &err), 0);
    assert_string_equal(got.controller_id, "c2");
    /* Nothing left to take: a second pass changes nothing. */
    reclaimed = 0;
    assert_int_equal(store_nodes_reclaim(f->store, ids, 40, count_reclaimed, &reclaimed, &err), 0);
    assert_int_equal(reclaimed, 0);
    store_close(other);
}

/* Every test but those about SQLite's file (its mode, WAL, migrations of
 * files from older releases, in-memory use, bytes changed behind the
 * store's back). */
/* Another process holds the write lock past the busy timeout: the change
 * fails as STORE_E_UNAVAILABLE with SQLite's reason, nothing of it is
 * written, the store reports itself unavailable and counts the failure;
 * the first change after the lock is released commits and marks the
 * store writable again. */
static void
test_locked_database_refuses_a_change_whole_and_recovers(void **state)
{
    struct fx *f = *state;
    struct ztr_err err = {0};
    assert_int_equal(store_resource_put(f->store, "web", "intranet", &err), 0);
    int64_t version = store_allowlist_version(f->store);
    struct store_writes writes;
    store_writes_get(f->store, &writes);
    assert_true(writes.writable);

    sqlite3 *holder = NULL;
    assert_int_equal(sqlite3_open(f->path, &holder), SQLITE_OK);
    assert_int_equal(sqlite3_exec(holder, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    store_set_busy_timeout(f->store, 50);
    assert_int_equal(store_allow(f->store, "laptop", "web", &err), -1);
    assert_int_equal(err.code, STORE_E_UNAVAILABLE);
    assert_string_equal(err.msg, "store unavailable: database is locked");
    store_writes_get(f->store, &writes);
    assert_false(writes.writable);
    assert_string_equal(writes.reason, "database is locked");
    assert_int_equal(writes.errors[STORE_FAULT_BUSY], 1);
    assert_int_equal(writes.errors[STORE_FAULT_FULL], 0);
    assert_int_equal(writes.unwritable_since, T0);
    /* A refused statement is the caller's fault, not the store's. */
    assert_int_equal(sqlite3_exec(holder, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(holder);
    assert_int_equal(store_allow(f->store, "laptop", "missing", &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    store_writes_get(f->store, &writes);
    assert_false(writes.writable);
    assert_int_equal(raw_int(f->path, "SELECT COUNT(*) FROM grants"), 0);
    assert_int_equal(store_allowlist_version(f->store), version);

    assert_int_equal(store_allow(f->store, "laptop", "web", &err), 0);
    store_writes_get(f->store, &writes);
    assert_true(writes.writable);
    assert_string_equal(writes.reason, "");
    assert_int_equal(writes.errors[STORE_FAULT_BUSY], 1);
    assert_int_equal(raw_int(f->path, "SELECT COUNT(*) FROM grants"), 1);
    assert_string_equal(store_fault_kind_name(STORE_FAULT_FULL), "full");
}

#define ENGINE_TESTS(T)                                                                     \
    T(test_reopen_keeps_all_state), T(test_token_insert_get_list_delete),                   \
        T(test_drain_is_stored_and_only_the_operator_lifts_it),                             \
        T(test_event_prune_by_age_and_count_in_batches),                                    \
        T(test_token_with_existing_id_or_bad_fields_is_refused),                            \
        T(test_enroll_creates_node_with_random_hex_id_and_event),                           \
        T(test_enroll_uses_given_id_and_defaults_addresses_to_empty_array),                 \
        T(test_enroll_consumes_one_use_each_until_used_up),                                 \
        T(test_enroll_retry_same_key_returns_same_node),                                    \
        T(test_enroll_retry_refused_after_revoke_renewal_or_delete),                        \
        T(test_enroll_with_expired_token_writes_nothing),                                   \
        T(test_enroll_with_unknown_or_deleted_token_is_not_found),                          \
        T(test_single_use_token_on_two_handles_enrolls_exactly_once),                       \
        T(test_single_use_token_raced_by_two_threads_enrolls_exactly_once),                 \
        T(test_reenroll_same_name_keeps_id_and_takes_new_certificate),                      \
        T(test_revoked_node_is_not_reenrolled_and_keeps_the_token_use),                     \
        T(test_status_event_is_recorded_only_on_change),                                    \
        T(test_touch_moves_last_seen_without_an_event),                                     \
        T(test_sweep_marks_only_stale_online_nodes_offline),                                \
        T(test_sweep_visitor_may_write_to_the_store), T(test_renew_records_renewal),        \
        T(test_renew_previous_key_has_a_grace_then_is_superseded),                          \
        T(test_renew_records_issue_and_renewal_times), T(test_heartbeats_are_saved_in_one_batch), \
        T(test_admit_with_current_key_ends_the_grace), T(test_admit_binds_a_row_without_key), \
        T(test_enroll_live_node_needs_a_replacing_token),                                   \
        T(test_set_addresses_takes_json_arrays_and_objects),                                \
        T(test_allowed_addresses_come_from_enrollment_or_the_operator),                     \
        T(test_revoke_is_idempotent_and_bumps_allowlist_once),                              \
        T(test_allow_and_deny_bump_version_only_on_change),                                 \
        T(test_allow_of_unknown_resource_is_not_found),                                     \
        T(test_resource_delete_cascades_grants_and_bumps_version),                          \
        T(test_bindings_name_connectors_and_go_with_their_resource),                        \
        T(test_resource_put_updates_description_and_keeps_created_at),                      \
        T(test_events_list_oldest_first_after_id_with_limit),                               \
        T(test_visitor_returning_nonzero_stops_the_listing),                                \
        T(test_list_visitor_may_write_to_the_store),                                        \
        T(test_values_longer_than_their_fields_are_refused_not_cut),                       \
        T(test_node_goes_offline_only_through_its_holder),                                 \
        T(test_nodes_of_a_silent_controller_are_released),                                 \
        T(test_released_nodes_with_a_session_are_reclaimed)

int
main(void)
{
    const struct CMUnitTest sqlite_tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_new_database_gets_current_schema_in_wal_mode_private_to_owner),
        T(test_database_at_older_version_is_migrated_on_open),
        T(test_empty_existing_file_is_migrated_from_zero),
        T(test_database_from_newer_version_is_refused_and_left_alone),
        T(test_file_that_is_not_a_database_is_refused),
        T(test_open_in_missing_directory_fails_with_path),
        T(test_in_memory_database_works_for_callers_without_a_state_dir),
        T(test_close_checkpoints_the_wal_and_accepts_null),
        T(test_migration_to_6_backfills_last_renewal),
        T(test_oversized_value_written_behind_the_stores_back_is_an_error),
        T(test_locked_database_refuses_a_change_whole_and_recovers),
        T(test_wal_is_checkpointed_by_its_own_thread),
        ENGINE_TESTS(T),
#undef T
    };
    int failed = cmocka_run_group_tests_name("sqlite", sqlite_tests, NULL, NULL);
    pg_prefix = getenv("ZTR_TEST_PG_URL_PREFIX");
    if (pg_prefix == NULL || pg_prefix[0] == '\0') {
        /* Run alone: tests/run-unit.sh starts the server. */
        printf("[  SKIPPED ] postgres: ZTR_TEST_PG_URL_PREFIX is not set\n");
        return failed;
    }
    const struct CMUnitTest pg_tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup_pg, teardown)
        ENGINE_TESTS(T),
        T(test_pg_url_with_a_password_is_refused),
#undef T
    };
    return failed + cmocka_run_group_tests_name("postgres", pg_tests, NULL, NULL);
}
