/* The controller's state; store.h is the contract. The SQL runs on SQLite
 * (one machine) or PostgreSQL (a cluster of controllers) through db.h:
 * each statement is written once, for both.
 *
 * Every value reaches the engine as a bound parameter. The only SQL built
 * at run time is the engine's schema version statement, whose number is
 * this file's own counter. */
#include "controller/store.h"

#include "base/log.h"
#include "controller/db.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define NODE_ID_BYTES 8
#define FIELD_SIZE(type, member) sizeof(((type *)0)->member)

struct store {
    struct db *db;
    const struct ztr_clock *clock;
    char *url;              /* what it was opened with (a second connection listens) */
    char controller_id[STORE_ID_MAX + 1]; /* the controller using it ("" in tools) */
    struct db *changes;     /* PostgreSQL: LISTENs on STORE_CHANNEL; NULL until opened */
    struct store_writes writes;
};

/* Every controller on the database LISTENs here; payloads: "push" (what
 * agents should have may have changed), "revoke <node id> <reason>" or
 * "released" (store_nodes_release took nodes OFFLINE). */
#define STORE_CHANNEL "ztr_changes"

/* PostgreSQL's whole schema as of SQLite's version 9, in its dialect:
 * BIGINT for times, BYTEA for digests, JSON checked with jsonb. */
#define PG_JSON_IS(col, types) "CHECK (jsonb_typeof(" col "::jsonb) IN (" types "))"
#define PG_SCHEMA_1                                                                           \
    "CREATE TABLE nodes ("                                                                    \
    "  id TEXT PRIMARY KEY NOT NULL,"                                                         \
    "  name TEXT NOT NULL,"                                                                   \
    "  role TEXT NOT NULL CHECK (role IN ('connector', 'tunneler')),"                        \
    "  spiffe_id TEXT NOT NULL UNIQUE,"                                                       \
    "  addresses TEXT NOT NULL DEFAULT '[]' " PG_JSON_IS("addresses", "'array', 'object'") "," \
    "  status INTEGER NOT NULL DEFAULT 0 CHECK (status IN (0, 1)),"                           \
    "  revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),"                         \
    "  last_seen BIGINT NOT NULL DEFAULT 0,"                                                  \
    "  cert_serial TEXT NOT NULL DEFAULT '',"                                                 \
    "  cert_not_after BIGINT NOT NULL DEFAULT 0,"                                             \
    "  enrolled_at BIGINT NOT NULL,"                                                          \
    "  cert_key TEXT NOT NULL DEFAULT '',"                                                    \
    "  prev_cert_serial TEXT NOT NULL DEFAULT '',"                                            \
    "  prev_cert_key TEXT NOT NULL DEFAULT '',"                                               \
    "  prev_cert_until BIGINT NOT NULL DEFAULT 0,"                                            \
    "  allowed_addresses TEXT NOT NULL DEFAULT '[]' " PG_JSON_IS("allowed_addresses", "'array'") "," \
    "  counters TEXT NOT NULL DEFAULT '{}' " PG_JSON_IS("counters", "'object'") ","           \
    "  counters_at BIGINT NOT NULL DEFAULT 0,"                                                \
    "  last_renewed_at BIGINT NOT NULL DEFAULT 0,"                                            \
    "  UNIQUE (role, name));"                                                                 \
    "CREATE TABLE tokens ("                                                                   \
    "  id TEXT PRIMARY KEY NOT NULL,"                                                         \
    "  digest BYTEA NOT NULL CHECK (length(digest) = 32),"                                    \
    "  role TEXT NOT NULL CHECK (role IN ('connector', 'tunneler')),"                        \
    "  name TEXT NOT NULL,"                                                                   \
    "  name_is_prefix INTEGER NOT NULL CHECK (name_is_prefix IN (0, 1)),"                     \
    "  uses_left INTEGER NOT NULL CHECK (uses_left >= 0),"                                    \
    "  expires_at BIGINT NOT NULL,"                                                           \
    "  created_at BIGINT NOT NULL,"                                                           \
    "  replace_node INTEGER NOT NULL DEFAULT 0 CHECK (replace_node IN (0, 1)),"               \
    "  addresses TEXT NOT NULL DEFAULT '[]' " PG_JSON_IS("addresses", "'array'") ");"         \
    "CREATE TABLE resources ("                                                                \
    "  name TEXT PRIMARY KEY NOT NULL,"                                                       \
    "  description TEXT NOT NULL DEFAULT '',"                                                 \
    "  created_at BIGINT NOT NULL);"                                                          \
    "CREATE TABLE grants ("                                                                   \
    "  tunneler TEXT NOT NULL,"                                                               \
    "  resource TEXT NOT NULL REFERENCES resources(name) ON DELETE CASCADE,"                  \
    "  created_at BIGINT NOT NULL,"                                                           \
    "  PRIMARY KEY (tunneler, resource));"                                                    \
    "CREATE TABLE revocations ("                                                              \
    "  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"                               \
    "  node_id TEXT NOT NULL REFERENCES nodes(id),"                                           \
    "  serial TEXT NOT NULL,"                                                                 \
    "  reason TEXT NOT NULL,"                                                                 \
    "  at BIGINT NOT NULL);"                                                                  \
    "CREATE TABLE events ("                                                                   \
    "  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"                               \
    "  at BIGINT NOT NULL,"                                                                   \
    "  kind TEXT NOT NULL,"                                                                   \
    "  node_id TEXT,"                                                                         \
    "  detail TEXT NOT NULL DEFAULT '',"                                                      \
    "  source TEXT NOT NULL DEFAULT '');"                                                     \
    "CREATE TABLE certificates ("                                                             \
    "  node_id TEXT NOT NULL REFERENCES nodes(id),"                                           \
    "  serial TEXT NOT NULL,"                                                                 \
    "  key TEXT NOT NULL,"                                                                    \
    "  issued_at BIGINT NOT NULL,"                                                            \
    "  PRIMARY KEY (node_id, serial));"                                                       \
    "CREATE TABLE resource_connectors ("                                                      \
    "  resource TEXT NOT NULL REFERENCES resources(name) ON DELETE CASCADE,"                  \
    "  connector_name TEXT NOT NULL,"                                                         \
    "  created_at BIGINT NOT NULL,"                                                           \
    "  PRIMARY KEY (resource, connector_name));"                                              \
    "CREATE TABLE peers ("                                                                    \
    "  id TEXT PRIMARY KEY NOT NULL,"                                                         \
    "  name TEXT NOT NULL,"                                                                   \
    "  trust_domain TEXT NOT NULL DEFAULT '',"                                                \
    "  url TEXT NOT NULL DEFAULT '',"                                                         \
    "  direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),"                \
    "  state TEXT NOT NULL CHECK (state IN ('proposed', 'accepted', 'enrolled', 'active',"    \
    "    'degraded', 'suspended', 'revoked')),"                                               \
    "  token_digest BYTEA,"                                                                   \
    "  token_expires_at BIGINT NOT NULL DEFAULT 0,"                                           \
    "  bundle TEXT NOT NULL DEFAULT '',"                                                      \
    "  bundle_version BIGINT NOT NULL DEFAULT 0,"                                             \
    "  last_heartbeat_at BIGINT NOT NULL DEFAULT 0,"                                          \
    "  reason TEXT NOT NULL DEFAULT '',"                                                      \
    "  resume_state TEXT NOT NULL DEFAULT '',"                                                \
    "  created_at BIGINT NOT NULL,"                                                           \
    "  updated_at BIGINT NOT NULL,"                                                           \
    "  remote_grants TEXT NOT NULL DEFAULT '[]' " PG_JSON_IS("remote_grants", "'array'") ");" \
    "CREATE TABLE fed_grants ("                                                               \
    "  id TEXT PRIMARY KEY NOT NULL,"                                                         \
    "  peer_id TEXT NOT NULL REFERENCES peers(id),"                                           \
    "  resource TEXT NOT NULL REFERENCES resources(name) ON DELETE CASCADE,"                  \
    "  tunneler TEXT NOT NULL,"                                                               \
    "  source_cidrs TEXT NOT NULL DEFAULT '[]' " PG_JSON_IS("source_cidrs", "'array'") ","   \
    "  expires_at BIGINT NOT NULL DEFAULT 0,"                                                 \
    "  created_at BIGINT NOT NULL);"                                                          \
    "CREATE INDEX nodes_by_status ON nodes (status, last_seen);"                              \
    "CREATE INDEX grants_by_resource ON grants (resource);"                                   \
    "CREATE INDEX revocations_by_node ON revocations (node_id);"                              \
    "CREATE INDEX certificates_by_key ON certificates (node_id, key);"                        \
    "CREATE INDEX events_by_node ON events (node_id, id);"                                    \
    "CREATE INDEX events_by_source ON events (source, id);"                                   \
    "CREATE UNIQUE INDEX peers_by_name ON peers (name) WHERE state <> 'revoked';"             \
    "CREATE UNIQUE INDEX peers_by_trust_domain ON peers (trust_domain)"                       \
    "  WHERE state <> 'revoked' AND trust_domain <> '';"                                      \
    "CREATE UNIQUE INDEX fed_grants_scope ON fed_grants (peer_id, resource, tunneler);"

#define STORE_SCHEMA_REVOKED_INDEX \
    "CREATE INDEX nodes_revoked ON nodes (role, name) WHERE revoked = 1;"

/* A connector's drain: by whom (0 none, 1 the operator, 2 the connector
 * itself before it stops), since when and the deadline for its streams. */
#define STORE_SCHEMA_DRAIN(INT)                                                              \
    "ALTER TABLE nodes ADD COLUMN drain INTEGER NOT NULL DEFAULT 0;"                         \
    "ALTER TABLE nodes ADD COLUMN drain_since " INT " NOT NULL DEFAULT 0;"                   \
    "ALTER TABLE nodes ADD COLUMN drain_deadline " INT " NOT NULL DEFAULT 0;"

/* Both engines' step from SQLite's 9 (PostgreSQL's 1) on. */
#define STORE_SCHEMA_CONTROLLERS(INT)                                                      \
    "ALTER TABLE nodes ADD COLUMN controller_id TEXT NOT NULL DEFAULT '';"                \
    "CREATE TABLE controllers ("                                                          \
    "  id TEXT PRIMARY KEY NOT NULL,"                                                     \
    "  address TEXT NOT NULL DEFAULT '',"                                                 \
    "  started_at " INT " NOT NULL,"                                                      \
    "  last_seen " INT " NOT NULL);"

#define STORE_SCHEMA_CAS(INT, BLOB)                                                        \
    "CREATE TABLE cas ("                                                                  \
    "  number " INT " PRIMARY KEY NOT NULL,"                                              \
    "  cert_pem TEXT NOT NULL,"                                                           \
    "  key_sealed " BLOB " NOT NULL,"                                                     \
    "  retire_at " INT " NOT NULL DEFAULT 0);"                                            \
    "INSERT INTO meta (key, value) VALUES ('ca_signer', 0);"                              \
    "INSERT INTO meta (key, value) VALUES ('ca_version', 0);"

/* Which key consumed each use of a token, so that an enrollment retried
 * with the same token and the same key (an agent whose disk refused the
 * answer, or that crashed before keeping it) gets its node back instead of
 * a refusal; another key finds nothing here and stays refused. */
#define STORE_SCHEMA_TOKEN_USES(INT)                                                      \
    "CREATE TABLE token_uses ("                                                           \
    "  token_id TEXT NOT NULL,"                                                           \
    "  key TEXT NOT NULL,"                                                                \
    "  node_id TEXT NOT NULL,"                                                            \
    "  used_at " INT " NOT NULL,"                                                         \
    "  PRIMARY KEY (token_id, key));"

/* ---- schema --------------------------------------------------------------
 * migrations[i] takes user_version i to i + 1, in one transaction. Append
 * only: a released entry never changes, since databases in the field have
 * already run it. */
static const char *const sqlite_migrations[] = {
    /* 1: the tables. */
    "CREATE TABLE nodes ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  name TEXT NOT NULL,"
    "  role TEXT NOT NULL CHECK (role IN ('connector', 'tunneler')),"
    "  spiffe_id TEXT NOT NULL UNIQUE,"
    "  addresses TEXT NOT NULL DEFAULT '[]' CONSTRAINT addresses_is_json"
    "    CHECK (CASE WHEN json_valid(addresses)"
    "           THEN json_type(addresses) IN ('array', 'object')"
    "           ELSE 0 END),"
    "  status INTEGER NOT NULL DEFAULT 0 CHECK (status IN (0, 1)),"
    "  revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),"
    "  last_seen INTEGER NOT NULL DEFAULT 0,"
    "  cert_serial TEXT NOT NULL DEFAULT '',"
    "  cert_not_after INTEGER NOT NULL DEFAULT 0,"
    "  enrolled_at INTEGER NOT NULL,"
    "  UNIQUE (role, name));"
    "CREATE TABLE tokens ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  digest BLOB(32) NOT NULL CHECK (typeof(digest) = 'blob' AND length(digest) = 32),"
    "  role TEXT NOT NULL CHECK (role IN ('connector', 'tunneler')),"
    "  name TEXT NOT NULL,"
    "  name_is_prefix INTEGER NOT NULL CHECK (name_is_prefix IN (0, 1)),"
    "  uses_left INTEGER NOT NULL CHECK (uses_left >= 0),"
    "  expires_at INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE resources ("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  description TEXT NOT NULL DEFAULT '',"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE grants ("
    "  tunneler TEXT NOT NULL,"
    "  resource TEXT NOT NULL REFERENCES resources(name) ON DELETE CASCADE,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (tunneler, resource));"
    "CREATE TABLE revocations ("
    "  id INTEGER PRIMARY KEY,"
    "  node_id TEXT NOT NULL REFERENCES nodes(id),"
    "  serial TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  at INTEGER NOT NULL);"
    /* AUTOINCREMENT: ids are never reused, so an after_id cursor held by a
     * reader cannot skip events written later. */
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  at INTEGER NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  node_id TEXT,"
    "  detail TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY NOT NULL,"
    "  value NOT NULL);"
    "INSERT INTO meta (key, value) VALUES ('allowlist_version', 1);",

    /* 2: indexes for the offline sweep and for foreign keys whose child
     * column does not lead a key (SQLite scans the child table on every
     * parent delete otherwise). Kept apart from 1 so that upgrading an
     * existing database is a path exercised from the first release. */
    "CREATE INDEX nodes_by_status ON nodes (status, last_seen);"
    "CREATE INDEX grants_by_resource ON grants (resource);"
    "CREATE INDEX revocations_by_node ON revocations (node_id);",

    /* 3: which key each certificate certifies, so that only a node's
     * current certificate (and its previous one, briefly) opens a session;
     * every certificate issued, so that a refused one is named by serial;
     * tokens that may replace a node whose certificate is still valid. */
    "ALTER TABLE nodes ADD COLUMN cert_key TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE nodes ADD COLUMN prev_cert_serial TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE nodes ADD COLUMN prev_cert_key TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE nodes ADD COLUMN prev_cert_until INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tokens ADD COLUMN replace_node INTEGER NOT NULL DEFAULT 0"
    "  CHECK (replace_node IN (0, 1));"
    "CREATE TABLE certificates ("
    "  node_id TEXT NOT NULL REFERENCES nodes(id),"
    "  serial TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  issued_at INTEGER NOT NULL,"
    "  PRIMARY KEY (node_id, serial));"
    "CREATE INDEX certificates_by_key ON certificates (node_id, key);",

    /* 4: which connectors (by node name, so that an operator may bind
     * before the connector enrolls) may serve each resource: a connector's
     * own announcement is never enough. */
    "CREATE TABLE resource_connectors ("
    "  resource TEXT NOT NULL REFERENCES resources(name) ON DELETE CASCADE,"
    "  connector_name TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (resource, connector_name));"
    /* ... and which IP addresses a connector's certificate may name: those
     * certified at enrollment or set by the operator, never whatever a
     * hello announces. Rows from before start with what they have. */
    "ALTER TABLE nodes ADD COLUMN allowed_addresses TEXT NOT NULL DEFAULT '[]'"
    "  CHECK (json_valid(allowed_addresses) AND json_type(allowed_addresses) = 'array');"
    "UPDATE nodes SET allowed_addresses = CASE"
    "  WHEN json_type(addresses) = 'array' THEN addresses"
    "  WHEN json_type(addresses, '$.addresses') = 'array'"
    "    THEN json_extract(addresses, '$.addresses')"
    "  ELSE '[]' END"
    "  WHERE json_valid(addresses);",

    /* 5: the IPs the operator allows a connector enrolled with the token
     * to be certified for; a connector's own announcement is never enough.
     * Tokens from before allow none. */
    "ALTER TABLE tokens ADD COLUMN addresses TEXT NOT NULL DEFAULT '[]'"
    "  CHECK (json_valid(addresses) AND json_type(addresses) = 'array');",

    /* 6: the fleet view. The counters a node's agent last reported in a
     * heartbeat (JSON object, name -> count) and when, written at most
     * every few heartbeat intervals rather than on each one (fleet.c);
     * when the node last renewed its certificate over its stream. Rows from
     * before take their last renewal from the certificates issued after
     * their enrollment. */
    "ALTER TABLE nodes ADD COLUMN counters TEXT NOT NULL DEFAULT '{}'"
    "  CHECK (json_valid(counters) AND json_type(counters) = 'object');"
    "ALTER TABLE nodes ADD COLUMN counters_at INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE nodes ADD COLUMN last_renewed_at INTEGER NOT NULL DEFAULT 0;"
    "UPDATE nodes SET last_renewed_at = COALESCE((SELECT max(issued_at) FROM certificates"
    "  WHERE certificates.node_id = nodes.id AND certificates.issued_at > nodes.enrolled_at), 0);",
    /* One node's timeline, newest first, without reading every event. */
    "CREATE INDEX IF NOT EXISTS events_by_node ON events (node_id, id);",
    /* 8: federation. Peers (controllers of other trust domains) with their
     * state, the acceptance token's digest (never the token), the peer's
     * trust bundle; events say which part of the controller wrote them. A
     * name and a trust domain belong to one peer that is not revoked; a
     * revoked row stays as it was left, never to be used again. */
    "CREATE TABLE peers ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  name TEXT NOT NULL,"
    "  trust_domain TEXT NOT NULL DEFAULT '',"
    "  url TEXT NOT NULL DEFAULT '',"
    "  direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),"
    "  state TEXT NOT NULL CHECK (state IN ('proposed', 'accepted', 'enrolled', 'active',"
    "    'degraded', 'suspended', 'revoked')),"
    "  token_digest BLOB,"
    "  token_expires_at INTEGER NOT NULL DEFAULT 0,"
    "  bundle TEXT NOT NULL DEFAULT '',"
    "  bundle_version INTEGER NOT NULL DEFAULT 0,"
    "  last_heartbeat_at INTEGER NOT NULL DEFAULT 0,"
    "  reason TEXT NOT NULL DEFAULT '',"
    "  resume_state TEXT NOT NULL DEFAULT '',"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX peers_by_name ON peers (name) WHERE state <> 'revoked';"
    "CREATE UNIQUE INDEX peers_by_trust_domain ON peers (trust_domain)"
    "  WHERE state <> 'revoked' AND trust_domain <> '';"
    "ALTER TABLE events ADD COLUMN source TEXT NOT NULL DEFAULT '';"
    "UPDATE events SET source = CASE kind WHEN 'admin' THEN 'admin' ELSE 'controller' END;"
    "CREATE INDEX events_by_source ON events (source, id);",
    /* 9: federation grants. One resource to one tunneler of a peer trust
     * domain, optionally bound to source CIDRs (JSON list) and an expiry;
     * they go with their resource. What a peer granted our tunnelers, as it
     * last said over the link (JSON), kept so that a restart of this
     * controller does not take the peer's connectors from them. */
    "CREATE TABLE fed_grants ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  peer_id TEXT NOT NULL REFERENCES peers(id),"
    "  resource TEXT NOT NULL REFERENCES resources(name) ON DELETE CASCADE,"
    "  tunneler TEXT NOT NULL,"
    "  source_cidrs TEXT NOT NULL DEFAULT '[]'"
    "    CHECK (json_valid(source_cidrs) AND json_type(source_cidrs) = 'array'),"
    "  expires_at INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX fed_grants_scope ON fed_grants (peer_id, resource, tunneler);"
    "ALTER TABLE peers ADD COLUMN remote_grants TEXT NOT NULL DEFAULT '[]'"
    "  CHECK (json_valid(remote_grants) AND json_type(remote_grants) = 'array');",
    /* 10: controllers sharing the database, and which one holds each
     * node's session: a node is OFFLINE when its session closes on the
     * controller that holds it, or when that controller stops answering. */
    STORE_SCHEMA_CONTROLLERS("INTEGER"),
    /* 11: the CAs of controllers sharing the database, keys sealed with a
     * key the controllers hold in a file (CA_SEAL_KEY_FILE). */
    STORE_SCHEMA_CAS("INTEGER", "BLOB"),
    /* 12: every push lists revoked tunnelers: found without a scan. */
    STORE_SCHEMA_REVOKED_INDEX,
    /* 13: connector drain. */
    STORE_SCHEMA_DRAIN("INTEGER"),
    /* 14: the key behind each use of a token (idempotent enrollment). */
    STORE_SCHEMA_TOKEN_USES("INTEGER"),
};

#define SQLITE_SCHEMA_VERSION ((int)(sizeof(sqlite_migrations) / sizeof(sqlite_migrations[0])))

/* PostgreSQL's schema starts where SQLite's reached when it was added
 * (version 9 there): one migration creates it; later changes append a
 * step to both lists. Integers are BIGINT (Unix seconds, milliseconds). */
static const char *const pg_migrations[] = {
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY,"
    "  value BIGINT NOT NULL);"
    "INSERT INTO meta (key, value) VALUES ('allowlist_version', 1);"
    PG_SCHEMA_1,
    STORE_SCHEMA_CONTROLLERS("BIGINT"),
    STORE_SCHEMA_CAS("BIGINT", "BYTEA"),
    STORE_SCHEMA_REVOKED_INDEX,
    STORE_SCHEMA_DRAIN("BIGINT"),
    STORE_SCHEMA_TOKEN_USES("BIGINT"),
};

#define PG_SCHEMA_VERSION ((int)(sizeof(pg_migrations) / sizeof(pg_migrations[0])))

/* ---- statements with bound arguments -------------------------------------- */

static int
stmt_open(struct store *s, const char *sql, const struct db_arg *args, size_t count,
          struct db_rows **out, struct ztr_err *err)
{
    return db_query(s->db, sql, args, count, out, err);
}

/* 1: a row is ready, 0: done, -1: error. */
static int
stmt_step(struct store *s, struct db_rows *st, struct ztr_err *err)
{
    (void)s;
    return db_next(st, err);
}

/* Runs a statement for its effect; *changes (optional) gets the row count. */
static int
stmt_exec(struct store *s, const char *sql, const struct db_arg *args, size_t count,
          int *changes, struct ztr_err *err)
{
    int64_t n = 0;
    TRY(db_exec(s->db, sql, args, count, &n, err));
    if (changes != NULL)
        *changes = (int)n;
    return 0;
}

/* The first column of the first row: 1 found, 0 no row, -1 error. */
static int
query_int(struct store *s, const char *sql, const struct db_arg *args, size_t count,
          int64_t *out, struct ztr_err *err)
{
    struct db_rows *st;
    TRY(stmt_open(s, sql, args, count, &st, err));
    int rc = stmt_step(s, st, err);
    if (rc == 1)
        *out = db_int(st, 0);
    db_rows_close(st);
    return rc;
}

/* Calls each() per row; each() returns 0 to go on, 1 to stop, -1 on error.
 * A visitor may read and write through the same store. */
static int
for_each_row(struct store *s, struct db_rows *st,
             int (*each)(struct db_rows *st, void *ctx, struct ztr_err *err), void *ctx,
             struct ztr_err *err)
{
    int rc;
    while ((rc = stmt_step(s, st, err)) == 1) {
        int verdict = each(st, ctx, err);
        if (verdict != 0) {
            rc = verdict < 0 ? -1 : 0;
            break;
        }
    }
    db_rows_close(st);
    return rc < 0 ? -1 : 0;
}

/* ---- transactions --------------------------------------------------------- */

static int64_t now_s(const struct store *s);

/* A transaction that failed because of the database itself (locked, disk
 * full, I/O error) rather than its statements: counted, logged when the
 * store turns unavailable, and reported as STORE_E_UNAVAILABLE with the
 * engine's reason, which is what an operator can act on. */
static int
tx_failed(struct store *s, struct ztr_err *err)
{
    enum db_fault fault = db_fault(s->db);
    char reason[sizeof(s->writes.reason)];
    snprintf(reason, sizeof(reason), "%s", db_fault_reason(s->db));
    db_rollback(s->db);
    if (fault == DB_FAULT_NONE)
        return -1;
    enum store_fault_kind kind = fault == DB_FAULT_BUSY   ? STORE_FAULT_BUSY
                                 : fault == DB_FAULT_FULL ? STORE_FAULT_FULL
                                                          : STORE_FAULT_IO;
    s->writes.errors[kind]++;
    if (s->writes.writable)
        log_error("store unavailable", "kind=%s reason=\"%s\" error=\"%s\"",
                  store_fault_kind_name(kind), reason, err->msg);
    else
        log_debug("store write failed", "kind=%s reason=\"%s\"", store_fault_kind_name(kind),
                  reason);
    if (s->writes.writable)
        s->writes.unwritable_since = now_s(s);
    s->writes.writable = false;
    snprintf(s->writes.reason, sizeof(s->writes.reason), "%s", reason);
    return ztr_err_set(err, STORE_E_UNAVAILABLE, "store unavailable: %s", reason);
}

/* Only a commit that wrote proves the disk takes writes again: one whose
 * rows came out the same never touched it. */
static void
tx_committed(struct store *s)
{
    if (s->writes.writable || !db_commit_wrote(s->db))
        return;
    int64_t down = now_s(s) - s->writes.unwritable_since;
    log_info("store writable again", "unwritable_s=%lld last_reason=\"%s\"", 
             (long long)(down > 0 ? down : 0), s->writes.reason);
    s->writes.writable = true;
    s->writes.reason[0] = '\0';
    s->writes.unwritable_since = 0;
}

/* Runs body inside a write transaction; any failure rolls back, so a body
 * may return -1 from anywhere with err filled. */
static int
in_tx(struct store *s, int (*body)(struct store *s, void *ctx, struct ztr_err *err), void *ctx,
      struct ztr_err *err)
{
    if (db_begin(s->db, err) != 0 || body(s, ctx, err) != 0 || db_commit(s->db, err) != 0)
        return tx_failed(s, err);
    tx_committed(s);
    return 0;
}

void
store_writes_get(const struct store *s, struct store_writes *out)
{
    *out = s->writes;
}

void
store_set_busy_timeout(struct store *s, int ms)
{
    db_set_busy_timeout(s->db, ms);
}

const char *
store_fault_kind_name(enum store_fault_kind kind)
{
    switch (kind) {
    case STORE_FAULT_BUSY:
        return "busy";
    case STORE_FAULT_FULL:
        return "full";
    case STORE_FAULT_IO:
    case STORE_FAULT_KINDS:
        break;
    }
    return "io";
}

/* ---- values in and out ---------------------------------------------------- */

static int64_t
now_s(const struct store *s)
{
    return clock_wall_s(s->clock);
}

/* Refuses text longer than max (the record field it will be read back into)
 * rather than storing something a read would have to cut. strnlen keeps the
 * check inside a fixed-size field even when it is not terminated. */
static int
check_text(const char *what, const char *value, size_t max, bool required,
           struct ztr_err *err)
{
    if (value == NULL || value[0] == '\0')
        return required ? ztr_err_set(err, ZTR_E_INVALID, "%s is empty", what) : 0;
    if (strnlen(value, max + 1) > max)
        return ztr_err_set(err, ZTR_E_LIMIT, "%s is longer than %zu bytes", what, max);
    return 0;
}

static int
check_role(const char *what, const char *role, size_t max, struct ztr_err *err)
{
    TRY(check_text(what, role, max, true, err));
    if (strcmp(role, "connector") != 0 && strcmp(role, "tunneler") != 0)
        return ztr_err_set(err, ZTR_E_INVALID, "%s must be connector or tunneler", what);
    return 0;
}

static const char *
or_empty(const char *text)
{
    return text != NULL ? text : "";
}

/* Copies a text column into a record field; NULL reads as "". A stored value
 * that does not fit (written by something else) is an error, not a cut. */
static int
col_text(struct db_rows *st, int col, char *dst, size_t cap, struct ztr_err *err)
{
    const char *text = db_text(st, col);
    size_t len = db_text_len(st, col);
    if (text == NULL) {
        dst[0] = '\0';
        if (!db_is_null(st, col))
            return ztr_err_set(err, ZTR_E_NOMEM, "out of memory reading %s",
                               db_column_name(st, col));
        return 0;
    }
    if (len >= cap)
        return ztr_err_set(err, ZTR_E_LIMIT, "stored %s is longer than %zu bytes",
                           db_column_name(st, col), cap - 1);
    memcpy(dst, text, len);
    dst[len] = '\0';
    return 0;
}

static int
random_hex_id(char *out, size_t cap, struct ztr_err *err)
{
    static const char digits[] = "0123456789abcdef";
    uint8_t bytes[NODE_ID_BYTES];
    ssize_t got;
    do
        got = getrandom(bytes, sizeof(bytes), 0);
    while (got < 0 && errno == EINTR);
    if (got != (ssize_t)sizeof(bytes))
        return ztr_err_set(err, ZTR_E_IO, "getrandom failed: %s",
                           got < 0 ? strerror(errno) : "short read");
    if (cap < 2 * sizeof(bytes) + 1)
        return ztr_err_set(err, ZTR_E_LIMIT, "id buffer too small");
    for (size_t i = 0; i < sizeof(bytes); i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * sizeof(bytes)] = '\0';
    return 0;
}

/* ---- opening -------------------------------------------------------------- */

static const char *const *
migrations_of(const struct store *s, int *count)
{
    if (db_engine(s->db) == DB_POSTGRES) {
        *count = PG_SCHEMA_VERSION;
        return pg_migrations;
    }
    *count = SQLITE_SCHEMA_VERSION;
    return sqlite_migrations;
}

static int
schema_version(struct store *s, int64_t *version, struct ztr_err *err)
{
    return db_schema_version(s->db, version, err);
}

static int
check_known_version(const struct store *s, int64_t version, struct ztr_err *err)
{
    int current;
    migrations_of(s, &current);
    if (version > current)
        return ztr_err_set(err, ZTR_E_INVALID,
                           "schema version %lld is newer than this controller supports "
                           "(%d); refusing to open it (run a newer controller)",
                           (long long)version, current);
    if (version < 0)
        return ztr_err_set(err, ZTR_E_INVALID, "schema version %lld is not valid",
                           (long long)version);
    return 0;
}

/* One migration step, or *done when the schema is current. The version is
 * read again under the lock: another controller may have migrated since
 * we looked. */
static int
migrate_step(struct store *s, void *ctx, struct ztr_err *err)
{
    bool *done = ctx;
    int current;
    const char *const *migrations = migrations_of(s, &current);
    TRY(db_lock_schema(s->db, err));
    int64_t version;
    TRY(schema_version(s, &version, err));
    TRY(check_known_version(s, version, err));
    if (version == current) {
        *done = true;
        return 0;
    }
    if (db_exec_script(s->db, migrations[version], err) != 0)
        return ztr_err_wrap(err, "migration to schema version %lld failed",
                            (long long)version + 1);
    return db_set_schema_version(s->db, version + 1, err);
}

static int
migrate(struct store *s, struct ztr_err *err)
{
    bool done = false;
    while (!done)
        TRY(in_tx(s, migrate_step, &done, err));
    return 0;
}

int
store_open(const char *path, const struct ztr_clock *clock, struct store **out,
           struct ztr_err *err)
{
    *out = NULL;
    if (path == NULL || clock == NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "store_open: path and clock are required");
    struct store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    s->clock = clock;
    s->writes.writable = true;
    s->url = strdup(path);
    if (s->url == NULL) {
        free(s);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    int64_t version;
    /* A newer schema is refused before anything writes to the database. */
    if (db_open(path, &s->db, err) != 0 || schema_version(s, &version, err) != 0 ||
        check_known_version(s, version, err) != 0 || db_configure(s->db, err) != 0 ||
        migrate(s, err) != 0) {
        db_close(s->db);
        free(s->url);
        free(s);
        char shown[512];
        db_url_redacted(path, shown, sizeof(shown));
        return ztr_err_wrap(err, "state database %s", shown);
    }
    *out = s;
    return 0;
}

void
store_close(struct store *s)
{
    if (s == NULL)
        return;
    db_close(s->changes);
    db_close(s->db);
    free(s->url);
    free(s);
}

int
store_changes_open(struct store *s, int *fd, struct ztr_err *err)
{
    *fd = -1;
    if (db_engine(s->db) != DB_POSTGRES)
        return 0;
    db_close(s->changes);
    s->changes = NULL;
    /* A connection of its own: nothing else reads its socket, so no
     * notification waits in a buffer unseen. */
    if (db_open(s->url, &s->changes, err) != 0 || db_listen(s->changes, STORE_CHANNEL, err) != 0) {
        db_close(s->changes);
        s->changes = NULL;
        return ztr_err_wrap(err, "listening for changes");
    }
    *fd = db_socket(s->changes);
    return 0;
}

int
store_changes_read(struct store *s, void (*each)(void *ctx, const char *change), void *ctx,
                   struct ztr_err *err)
{
    if (s->changes == NULL)
        return 0;
    return db_notifications(s->changes, each, ctx, err);
}

int
store_schema_version(struct store *s)
{
    int64_t version;
    if (schema_version(s, &version, NULL) != 0)
        return -1;
    return (int)version;
}

/* ---- events (used inside other writes, so first) ------------------------- */

static int
check_event(const char *kind, const char *node_id, const char *detail, struct ztr_err *err)
{
    TRY(check_text("event kind", kind, FIELD_SIZE(struct store_event, kind) - 1, true, err));
    TRY(check_text("event node id", node_id, STORE_ID_MAX, false, err));
    return check_text("event detail", detail, STORE_DETAIL_MAX, false, err);
}

static int
insert_event_from(struct store *s, const char *source, const char *kind, const char *node_id,
                  const char *detail, struct ztr_err *err)
{
    /* No node is stored as NULL, not "", so "which node" queries stay exact. */
    const char *node = node_id != NULL && node_id[0] != '\0' ? node_id : NULL;
    if (source == NULL || source[0] == '\0')
        source = strcmp(kind, "admin") == 0 ? "admin" : "controller";
    return stmt_exec(s,
                     "INSERT INTO events (at, kind, node_id, detail, source) "
                     "VALUES (?, ?, ?, ?, ?)",
                     ARGS(INT_ARG(now_s(s)), TEXT_ARG(kind), TEXT_ARG(node),
                          TEXT_ARG(or_empty(detail)), TEXT_ARG(source)),
                     NULL, err);
}

static int
insert_event(struct store *s, const char *kind, const char *node_id, const char *detail,
             struct ztr_err *err)
{
    return insert_event_from(s, NULL, kind, node_id, detail, err);
}

struct event_job {
    const char *source, *kind, *node_id, *detail;
};

static int
event_add_body(struct store *s, void *ctx, struct ztr_err *err)
{
    const struct event_job *job = ctx;
    return insert_event_from(s, job->source, job->kind, job->node_id, job->detail, err);
}

int
store_event_add(struct store *s, const char *kind, const char *node_id, const char *detail,
                struct ztr_err *err)
{
    return store_event_add_from(s, NULL, kind, node_id, detail, err);
}

int
store_event_add_from(struct store *s, const char *source, const char *kind, const char *node_id,
                     const char *detail, struct ztr_err *err)
{
    TRY(check_event(kind, node_id, detail, err));
    TRY(check_text("event source", source, STORE_EVENT_SOURCE_MAX, false, err));
    struct event_job job = {source, kind, node_id, detail};
    return in_tx(s, event_add_body, &job, err);
}

struct prune_job {
    int64_t before;
    int64_t keep;
    int64_t batch;
    int deleted;
};

static int
event_prune_body(struct store *s, void *ctx, struct ztr_err *err)
{
    struct prune_job *job = ctx;
    int changes = 0;
    job->deleted = 0;
    /* Oldest first by id: the scan stops after `batch` rows, so a table of
     * millions costs one batch per call, not a pass over the table. */
    if (job->before > 0) {
        TRY(stmt_exec(s,
                      "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ? "
                      "ORDER BY id LIMIT ?)",
                      ARGS(INT_ARG(job->before), INT_ARG(job->batch)), &changes, err));
        job->deleted += changes;
    }
    /* Ids only grow and only the oldest rows are deleted, so the newest
     * `keep` events are those with id > max(id) - keep: no count(*). */
    if (job->keep > 0 && job->deleted < job->batch) {
        TRY(stmt_exec(s,
                      "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id <= "
                      "(SELECT max(id) FROM events) - ? ORDER BY id LIMIT ?)",
                      ARGS(INT_ARG(job->keep), INT_ARG(job->batch - job->deleted)), &changes,
                      err));
        job->deleted += changes;
    }
    return 0;
}

int
store_event_prune(struct store *s, int64_t before, uint64_t keep, size_t batch, size_t *deleted,
                  struct ztr_err *err)
{
    if (deleted != NULL)
        *deleted = 0;
    if (batch == 0)
        return 0;
    struct prune_job job = {before, keep > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)keep,
                            batch > (size_t)INT_MAX ? INT_MAX : (int64_t)batch, 0};
    TRY(in_tx(s, event_prune_body, &job, err));
    if (deleted != NULL)
        *deleted = (size_t)job.deleted;
    return 0;
}

static int
read_event(struct db_rows *st, struct store_event *e, struct ztr_err *err)
{
    memset(e, 0, sizeof(*e));
    e->id = db_int(st, 0);
    e->at = db_int(st, 1);
    if (col_text(st, 2, e->kind, sizeof(e->kind), err) != 0 ||
        col_text(st, 3, e->node_id, sizeof(e->node_id), err) != 0 ||
        col_text(st, 4, e->detail, sizeof(e->detail), err) != 0 ||
        col_text(st, 5, e->source, sizeof(e->source), err) != 0)
        return -1;
    return 0;
}

struct event_visit {
    int (*visit)(void *ctx, const struct store_event *);
    void *ctx;
};

static int
each_event(struct db_rows *st, void *ctx, struct ztr_err *err)
{
    struct event_visit *v = ctx;
    struct store_event e;
    TRY(read_event(st, &e, err));
    return v->visit(v->ctx, &e) != 0 ? 1 : 0;
}

int
store_event_list(struct store *s, int64_t after_id, size_t limit,
                 int (*visit)(void *ctx, const struct store_event *), void *ctx,
                 struct ztr_err *err)
{
    struct store_event_filter filter = {.after_id = after_id, .limit = limit};
    return store_event_query(s, &filter, visit, ctx, err);
}

#define EVENT_QUERY                                                                  \
    "SELECT id, at, kind, node_id, detail, source FROM events WHERE id > ?1"         \
    " AND (?2 = 0 OR id < ?2) AND (?3 = 0 OR at >= ?3) AND (?4 = 0 OR at < ?4)"       \
    " AND (?5 = '' OR node_id = ?5) AND (?6 = '' OR kind = ?6)"                      \
    " AND (?8 = '' OR source = ?8) "

int
store_event_query(struct store *s, const struct store_event_filter *filter,
                  int (*visit)(void *ctx, const struct store_event *), void *ctx,
                  struct ztr_err *err)
{
    if (filter->limit == 0 || visit == NULL)
        return 0;
    int64_t bounded = filter->limit > (size_t)INT64_MAX ? INT64_MAX : (int64_t)filter->limit;
    struct db_rows *st;
    TRY(stmt_open(s,
                  filter->newest_first ? EVENT_QUERY "ORDER BY id DESC LIMIT ?7"
                                       : EVENT_QUERY "ORDER BY id LIMIT ?7",
                  ARGS(INT_ARG(filter->after_id), INT_ARG(filter->before_id),
                       INT_ARG(filter->since), INT_ARG(filter->until),
                       TEXT_ARG(filter->node_id != NULL ? filter->node_id : ""),
                       TEXT_ARG(filter->kind != NULL ? filter->kind : ""), INT_ARG(bounded),
                       TEXT_ARG(filter->source != NULL ? filter->source : "")),
                  &st, err));
    struct event_visit v = {visit, ctx};
    return for_each_row(s, st, each_event, &v, err);
}

/* ---- tokens --------------------------------------------------------------- */

static const char *
addresses_or_empty(const char *addresses)
{
    return addresses != NULL && addresses[0] != '\0' ? addresses : "[]";
}

#define TOKEN_SELECT                                                                     \
    "SELECT id, digest, role, name, name_is_prefix, uses_left, expires_at, created_at, " \
    "replace_node, addresses FROM tokens "

static int
read_token(struct db_rows *st, struct store_token *t, struct ztr_err *err)
{
    memset(t, 0, sizeof(*t));
    if (col_text(st, 0, t->id, sizeof(t->id), err) != 0)
        return -1;
    size_t digest_len = 0;
    const void *digest = db_blob(st, 1, &digest_len);
    if (digest == NULL || digest_len != sizeof(t->digest))
        return ztr_err_set(err, ZTR_E_INVALID, "stored digest of token %s is not %zu bytes",
                           t->id, sizeof(t->digest));
    memcpy(t->digest, digest, sizeof(t->digest));
    if (col_text(st, 2, t->role, sizeof(t->role), err) != 0 ||
        col_text(st, 3, t->name, sizeof(t->name), err) != 0)
        return -1;
    t->name_is_prefix = db_int(st, 4) != 0;
    t->uses_left = db_int(st, 5);
    t->expires_at = db_int(st, 6);
    t->created_at = db_int(st, 7);
    t->replace = db_int(st, 8) != 0;
    return col_text(st, 9, t->addresses, sizeof(t->addresses), err);
}

static int
token_body(struct store *s, void *ctx, struct ztr_err *err)
{
    const struct store_token *t = ctx;
    /* The caller's created_at when it has one (enroll.c reads the same
     * clock), so the record it keeps matches the row. */
    int64_t created = t->created_at != 0 ? t->created_at : now_s(s);
    int64_t exists = 0;
    int found = query_int(s, "SELECT 1 FROM tokens WHERE id = ?", ARGS(TEXT_ARG(t->id)),
                          &exists, err);
    if (found < 0)
        return -1;
    if (found == 1)
        return ztr_err_set(err, ZTR_E_INVALID, "token %s already exists", t->id);
    return stmt_exec(s,
                     "INSERT INTO tokens (id, digest, role, name, name_is_prefix, uses_left, "
                     "expires_at, created_at, replace_node, addresses) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     ARGS(TEXT_ARG(t->id), BLOB_ARG(t->digest, (int)sizeof(t->digest)),
                          TEXT_ARG(t->role), TEXT_ARG(t->name),
                          INT_ARG(t->name_is_prefix ? 1 : 0), INT_ARG(t->uses_left),
                          INT_ARG(t->expires_at), INT_ARG(created), INT_ARG(t->replace ? 1 : 0),
                          TEXT_ARG(addresses_or_empty(t->addresses))),
                     NULL, err);
}

int
store_token_insert(struct store *s, const struct store_token *token, struct ztr_err *err)
{
    TRY(check_text("token id", token->id, STORE_ID_MAX, true, err));
    TRY(check_role("token role", token->role, sizeof(token->role) - 1, err));
    TRY(check_text("token name", token->name, STORE_NAME_MAX, true, err));
    TRY(check_text("token addresses", token->addresses, STORE_ADDRESSES_MAX, false, err));
    if (token->uses_left < 0)
        return ztr_err_set(err, ZTR_E_INVALID, "token uses must not be negative");
    return in_tx(s, token_body, (void *)token, err);
}

static int token_use_node(struct store *s, const char *token_id, const char *key, char *node_id,
                          size_t cap, struct ztr_err *err);

int
store_token_used_by(struct store *s, const char *token_id, const char *key, bool *used,
                    struct ztr_err *err)
{
    *used = false;
    TRY(check_text("token id", token_id, STORE_ID_MAX, true, err));
    TRY(check_text("certificate key", key, STORE_KEY_MAX, true, err));
    char node_id[STORE_ID_MAX + 1];
    int rc = token_use_node(s, token_id, key, node_id, sizeof(node_id), err);
    if (rc < 0)
        return -1;
    *used = rc == 1;
    return 0;
}

int
store_token_get(struct store *s, const char *id, struct store_token *out, struct ztr_err *err)
{
    TRY(check_text("token id", id, STORE_ID_MAX, true, err));
    struct db_rows *st;
    TRY(stmt_open(s, TOKEN_SELECT "WHERE id = ?", ARGS(TEXT_ARG(id)), &st, err));
    int rc = stmt_step(s, st, err);
    if (rc == 1)
        rc = read_token(st, out, err) == 0 ? 1 : -1;
    db_rows_close(st);
    if (rc == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "token %s not found", id);
    return rc < 0 ? -1 : 0;
}

static int
token_delete_body(struct store *s, void *ctx, struct ztr_err *err)
{
    const char *id = ctx;
    int changes;
    TRY(stmt_exec(s, "DELETE FROM tokens WHERE id = ?", ARGS(TEXT_ARG(id)), &changes, err));
    if (changes == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "token %s not found", id);
    /* A deleted token enrolls nothing more, retries included. */
    return stmt_exec(s, "DELETE FROM token_uses WHERE token_id = ?", ARGS(TEXT_ARG(id)), NULL,
                     err);
}

int
store_token_delete(struct store *s, const char *id, struct ztr_err *err)
{
    TRY(check_text("token id", id, STORE_ID_MAX, true, err));
    return in_tx(s, token_delete_body, (void *)id, err);
}

struct token_visit {
    int (*visit)(void *ctx, const struct store_token *);
    void *ctx;
};

static int
each_token(struct db_rows *st, void *ctx, struct ztr_err *err)
{
    struct token_visit *v = ctx;
    struct store_token t;
    TRY(read_token(st, &t, err));
    return v->visit(v->ctx, &t) != 0 ? 1 : 0;
}

int
store_token_list(struct store *s, int (*visit)(void *ctx, const struct store_token *),
                 void *ctx, struct ztr_err *err)
{
    if (visit == NULL)
        return 0;
    struct db_rows *st;
    TRY(stmt_open(s, TOKEN_SELECT "ORDER BY created_at, id", NO_ARGS, &st, err));
    struct token_visit v = {visit, ctx};
    return for_each_row(s, st, each_token, &v, err);
}

/* ---- nodes ---------------------------------------------------------------- */

/* cert_issued_at comes from the certificates history (a primary-key
 * lookup): every path that issues a certificate records it there. */
#define NODE_SELECT                                                                      \
    "SELECT id, name, role, spiffe_id, addresses, status, revoked, last_seen, "         \
    "cert_serial, cert_not_after, enrolled_at, cert_key, prev_cert_serial, "            \
    "prev_cert_key, prev_cert_until, allowed_addresses, counters, counters_at, "        \
    "last_renewed_at, (SELECT issued_at FROM certificates WHERE "                        \
    "certificates.node_id = nodes.id AND certificates.serial = nodes.cert_serial), "     \
    "controller_id, drain, drain_since, drain_deadline FROM nodes "

static int
read_node(struct db_rows *st, struct store_node *n, struct ztr_err *err)
{
    memset(n, 0, sizeof(*n));
    if (col_text(st, 0, n->id, sizeof(n->id), err) != 0 ||
        col_text(st, 1, n->name, sizeof(n->name), err) != 0 ||
        col_text(st, 2, n->role, sizeof(n->role), err) != 0 ||
        col_text(st, 3, n->spiffe_id, sizeof(n->spiffe_id), err) != 0 ||
        col_text(st, 4, n->addresses, sizeof(n->addresses), err) != 0 ||
        col_text(st, 8, n->cert_serial, sizeof(n->cert_serial), err) != 0 ||
        col_text(st, 11, n->cert_key, sizeof(n->cert_key), err) != 0 ||
        col_text(st, 12, n->prev_cert_serial, sizeof(n->prev_cert_serial), err) != 0 ||
        col_text(st, 13, n->prev_cert_key, sizeof(n->prev_cert_key), err) != 0 ||
        col_text(st, 15, n->allowed_addresses, sizeof(n->allowed_addresses), err) != 0 ||
        col_text(st, 16, n->counters, sizeof(n->counters), err) != 0)
        return -1;
    n->counters_at = db_int(st, 17);
    n->last_renewed_at = db_int(st, 18);
    n->cert_issued_at = db_int(st, 19); /* NULL (no history) reads as 0 */
    TRY(col_text(st, 20, n->controller_id, sizeof(n->controller_id), err));
    n->prev_cert_until = db_int(st, 14);
    n->status = db_int(st, 5) == STORE_ONLINE ? STORE_ONLINE : STORE_OFFLINE;
    n->revoked = db_int(st, 6) != 0;
    n->last_seen = db_int(st, 7);
    n->cert_not_after = db_int(st, 9);
    n->enrolled_at = db_int(st, 10);
    int64_t drain = db_int(st, 21);
    n->drain = drain == STORE_DRAIN_OPERATOR || drain == STORE_DRAIN_SHUTDOWN
                   ? (enum store_drain)drain
                   : STORE_DRAIN_NONE;
    n->drain_since = db_int(st, 22);
    n->drain_deadline = db_int(st, 23);
    return 0;
}

/* One node by the query's WHERE: 1 found, 0 none, -1 error. */
static int
node_fetch(struct store *s, const char *sql, const struct db_arg *args, size_t count,
           struct store_node *out, struct ztr_err *err)
{
    struct db_rows *st;
    TRY(stmt_open(s, sql, args, count, &st, err));
    int rc = stmt_step(s, st, err);
    if (rc == 1 && read_node(st, out, err) != 0)
        rc = -1;
    db_rows_close(st);
    return rc;
}

/* The node with this id, or ZTR_E_NOT_FOUND. */
static int
node_by_id(struct store *s, const char *id, struct store_node *out, struct ztr_err *err)
{
    int rc = node_fetch(s, NODE_SELECT "WHERE id = ?", ARGS(TEXT_ARG(id)), out, err);
    if (rc == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "node %s not found", id);
    return rc < 0 ? -1 : 0;
}

static int
check_node(const struct store_node *n, struct ztr_err *err)
{
    TRY(check_text("node id", n->id, STORE_ID_MAX, false, err));
    TRY(check_text("node name", n->name, STORE_NAME_MAX, true, err));
    TRY(check_role("node role", n->role, sizeof(n->role) - 1, err));
    TRY(check_text("node SPIFFE ID", n->spiffe_id, STORE_SPIFFE_ID_MAX, true, err));
    TRY(check_text("node addresses", n->addresses, STORE_ADDRESSES_MAX, false, err));
    TRY(check_text("node allowed addresses", n->allowed_addresses, STORE_ADDRESSES_MAX, false,
                   err));
    TRY(check_text("certificate serial", n->cert_serial, STORE_SERIAL_MAX, false, err));
    return check_text("certificate key", n->cert_key, STORE_KEY_MAX, false, err);
}

struct enroll_job {
    const char *token_id;
    const struct store_node *node;
    struct store_node *out;
    bool *retried;
};

static int
consume_token(struct store *s, const char *token_id, struct ztr_err *err)
{
    int changes;
    TRY(stmt_exec(s,
                  "UPDATE tokens SET uses_left = uses_left - 1 "
                  "WHERE id = ? AND uses_left > 0 AND expires_at > ?",
                  ARGS(TEXT_ARG(token_id), INT_ARG(now_s(s))), &changes, err));
    if (changes != 1)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "token %s is unknown, used up or expired",
                           token_id);
    return 0;
}

/* The history every issued certificate goes into: how a refused key is
 * named by the serial it was certified under. */
static int
record_cert(struct store *s, const char *id, const char *serial, const char *key,
            struct ztr_err *err)
{
    if (serial[0] == '\0' || key[0] == '\0')
        return 0;
    return stmt_exec(s,
                     "INSERT INTO certificates (node_id, serial, key, issued_at) "
                     "VALUES (?, ?, ?, ?) ON CONFLICT (node_id, serial) DO UPDATE SET "
                     "key = excluded.key, issued_at = excluded.issued_at",
                     ARGS(TEXT_ARG(id), TEXT_ARG(serial), TEXT_ARG(key), INT_ARG(now_s(s))),
                     NULL, err);
}

/* The new certificate is the only one admitted: no grace for the old. */
static int
reenroll(struct store *s, const char *id, const struct store_node *n, struct ztr_err *err)
{
    return stmt_exec(s,
                     "UPDATE nodes SET spiffe_id = ?, addresses = ?, cert_serial = ?, "
                     "cert_not_after = ?, enrolled_at = ?, cert_key = ?, prev_cert_serial = '', "
                     "prev_cert_key = '', prev_cert_until = 0, allowed_addresses = ? "
                     "WHERE id = ?",
                     ARGS(TEXT_ARG(n->spiffe_id), TEXT_ARG(addresses_or_empty(n->addresses)),
                          TEXT_ARG(n->cert_serial), INT_ARG(n->cert_not_after),
                          INT_ARG(now_s(s)), TEXT_ARG(n->cert_key),
                          TEXT_ARG(addresses_or_empty(n->allowed_addresses)), TEXT_ARG(id)),
                     NULL, err);
}

static int
insert_node(struct store *s, const char *id, const struct store_node *n, struct ztr_err *err)
{
    return stmt_exec(s,
                     "INSERT INTO nodes (id, name, role, spiffe_id, addresses, status, revoked, "
                     "last_seen, cert_serial, cert_not_after, enrolled_at, cert_key, "
                     "allowed_addresses) VALUES (?, ?, ?, ?, ?, 0, 0, 0, ?, ?, ?, ?, ?)",
                     ARGS(TEXT_ARG(id), TEXT_ARG(n->name), TEXT_ARG(n->role),
                          TEXT_ARG(n->spiffe_id), TEXT_ARG(addresses_or_empty(n->addresses)),
                          TEXT_ARG(n->cert_serial), INT_ARG(n->cert_not_after),
                          INT_ARG(now_s(s)), TEXT_ARG(n->cert_key),
                          TEXT_ARG(addresses_or_empty(n->allowed_addresses))),
                     NULL, err);
}

/* The token is consumed first: if anything after it fails, the rollback
 * gives the use back, and when it cannot be consumed nothing else runs. */
/* The node an earlier use of token_id by key enrolled: 1 found (*node_id
 * set), 0 none, -1 error. */
static int
token_use_node(struct store *s, const char *token_id, const char *key, char *node_id,
               size_t cap, struct ztr_err *err)
{
    struct db_rows *st;
    TRY(stmt_open(s, "SELECT node_id FROM token_uses WHERE token_id = ? AND key = ?",
                  ARGS(TEXT_ARG(token_id), TEXT_ARG(key)), &st, err));
    int rc = stmt_step(s, st, err);
    if (rc == 1)
        rc = col_text(st, 0, node_id, cap, err) == 0 ? 1 : -1;
    db_rows_close(st);
    return rc;
}

/* The same token and the same key again: the agent never kept the answer
 * (a full disk, a crash). Its node gets a new certificate for that key;
 * the token is not used again. Only while the token is within its TTL,
 * for the role and name it enrolled, for a node not revoked that still
 * has that key as its current one (not re-enrolled or renewed since). */
static int
enroll_retry(struct store *s, const struct enroll_job *job, const char *node_id,
             struct ztr_err *err)
{
    const struct store_node *n = job->node;
    int64_t live = 0;
    int found = query_int(s, "SELECT 1 FROM tokens WHERE id = ? AND expires_at > ?",
                          ARGS(TEXT_ARG(job->token_id), INT_ARG(now_s(s))), &live, err);
    if (found < 0)
        return -1;
    struct store_node node;
    if (found == 0 || node_fetch(s, NODE_SELECT "WHERE id = ?", ARGS(TEXT_ARG(node_id)), &node,
                                 err) != 1)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "token %s is unknown, used up or expired",
                           job->token_id);
    if (strcmp(node.role, n->role) != 0 || strcmp(node.name, n->name) != 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND,
                           "token %s is used up (its key enrolled another node)", job->token_id);
    if (node.revoked)
        return ztr_err_set(err, ZTR_E_INVALID, "node %s is revoked", n->name);
    if (strcmp(node.cert_key, n->cert_key) != 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND,
                           "token %s is used up (node %s has another key since)", job->token_id,
                           n->name);
    TRY(stmt_exec(s,
                  "UPDATE nodes SET addresses = ?, cert_serial = ?, cert_not_after = ? "
                  "WHERE id = ?",
                  ARGS(TEXT_ARG(addresses_or_empty(n->addresses)), TEXT_ARG(n->cert_serial),
                       INT_ARG(n->cert_not_after), TEXT_ARG(node.id)),
                  NULL, err));
    TRY(record_cert(s, node.id, n->cert_serial, n->cert_key, err));
    char detail[STORE_DETAIL_MAX + 1];
    snprintf(detail, sizeof(detail), "enrollment retried: %s %s with token %s, the same key: "
             "serial %s replaces %s", n->role, n->name, job->token_id, n->cert_serial,
             node.cert_serial);
    TRY(insert_event(s, "enrolled", node.id, detail, err));
    *job->retried = true;
    return node_by_id(s, node.id, job->out, err);
}

static int
enroll_body(struct store *s, void *ctx, struct ztr_err *err)
{
    struct enroll_job *job = ctx;
    const struct store_node *n = job->node;
    *job->retried = false;
    if (n->cert_key[0] != '\0') {
        char used_by[STORE_ID_MAX + 1];
        int used = token_use_node(s, job->token_id, n->cert_key, used_by, sizeof(used_by), err);
        if (used < 0)
            return -1;
        if (used == 1)
            return enroll_retry(s, job, used_by, err);
    }
    TRY(consume_token(s, job->token_id, err));
    struct store_node existing;
    int found = node_fetch(s, NODE_SELECT "WHERE role = ? AND name = ?",
                           ARGS(TEXT_ARG(n->role), TEXT_ARG(n->name)), &existing, err);
    if (found < 0)
        return -1;
    char id[STORE_ID_MAX + 1];
    bool replaced = false;
    if (found == 1) {
        if (existing.revoked)
            return ztr_err_set(err, ZTR_E_INVALID, "node %s is revoked", n->name);
        /* A node whose certificate is still valid is live: taking its name
         * (and its grants) needs a token made for that. An expired node is
         * the documented re-enrollment with a retained token. */
        if (existing.cert_not_after > now_s(s)) {
            int64_t replace = 0;
            if (query_int(s, "SELECT replace_node FROM tokens WHERE id = ?",
                          ARGS(TEXT_ARG(job->token_id)), &replace, err) < 0)
                return -1;
            if (!replace)
                return ztr_err_set(err, STORE_E_ENROLLED,
                                   "node %s already enrolled, its certificate (serial %s) valid "
                                   "until %lld; a token created with --replace may re-enroll it",
                                   n->name, existing.cert_serial,
                                   (long long)existing.cert_not_after);
            replaced = true;
        }
        memcpy(id, existing.id, sizeof(id));
        TRY(reenroll(s, id, n, err));
    } else {
        if (n->id[0] != '\0')
            memcpy(id, n->id, sizeof(id));
        else
            TRY(random_hex_id(id, sizeof(id), err));
        TRY(insert_node(s, id, n, err));
    }
    TRY(record_cert(s, id, n->cert_serial, n->cert_key, err));
    char detail[STORE_DETAIL_MAX + 1];
    if (replaced)
        snprintf(detail, sizeof(detail),
                 "replaced %s %s with token %s: serial %s superseded by %s", n->role, n->name,
                 job->token_id, existing.cert_serial, n->cert_serial);
    else
        snprintf(detail, sizeof(detail), "%s %s %s with token %s",
                 found ? "re-enrolled" : "enrolled", n->role, n->name, job->token_id);
    TRY(insert_event(s, "enrolled", id, detail, err));
    if (n->cert_key[0] != '\0')
        TRY(stmt_exec(s,
                      "INSERT INTO token_uses (token_id, key, node_id, used_at) "
                      "VALUES (?, ?, ?, ?)",
                      ARGS(TEXT_ARG(job->token_id), TEXT_ARG(n->cert_key), TEXT_ARG(id),
                           INT_ARG(now_s(s))),
                      NULL, err));
    return node_by_id(s, id, job->out, err);
}

int
store_node_enroll(struct store *s, const char *token_id, const struct store_node *node,
                  struct store_node *out, bool *retried, struct ztr_err *err)
{
    TRY(check_text("token id", token_id, STORE_ID_MAX, true, err));
    TRY(check_node(node, err));
    struct store_node row;
    bool was_retry = false;
    struct enroll_job job = {token_id, node, &row, &was_retry};
    if (retried != NULL)
        *retried = false;
    TRY(in_tx(s, enroll_body, &job, err));
    if (retried != NULL)
        *retried = was_retry;
    /* Copied only after COMMIT, so *out never shows a row that was rolled
     * back (and out may be node itself). */
    if (out != NULL)
        *out = row;
    return 0;
}

int
store_node_get(struct store *s, const char *id, struct store_node *out, struct ztr_err *err)
{
    TRY(check_text("node id", id, STORE_ID_MAX, true, err));
    return node_by_id(s, id, out, err);
}

int
store_node_get_by_spiffe_id(struct store *s, const char *spiffe_id, struct store_node *out,
                            struct ztr_err *err)
{
    TRY(check_text("SPIFFE ID", spiffe_id, STORE_SPIFFE_ID_MAX, true, err));
    int rc = node_fetch(s, NODE_SELECT "WHERE spiffe_id = ?", ARGS(TEXT_ARG(spiffe_id)), out,
                        err);
    if (rc == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "no node has SPIFFE ID %.256s", spiffe_id);
    return rc < 0 ? -1 : 0;
}

struct node_visit {
    int (*visit)(void *ctx, const struct store_node *);
    void *ctx;
};

static int
each_node(struct db_rows *st, void *ctx, struct ztr_err *err)
{
    struct node_visit *v = ctx;
    struct store_node n;
    TRY(read_node(st, &n, err));
    return v->visit(v->ctx, &n) != 0 ? 1 : 0;
}

int
store_node_list(struct store *s, int (*visit)(void *ctx, const struct store_node *), void *ctx,
                struct ztr_err *err)
{
    if (visit == NULL)
        return 0;
    struct db_rows *st;
    TRY(stmt_open(s, NODE_SELECT "ORDER BY role, name", NO_ARGS, &st, err));
    struct node_visit v = {visit, ctx};
    return for_each_row(s, st, each_node, &v, err);
}

int
store_node_list_pushed(struct store *s, int (*visit)(void *ctx, const struct store_node *),
                       void *ctx, struct ztr_err *err)
{
    /* Two indexed lookups (the role's unique index, the revoked partial
     * index), not a walk over every node: this runs for each push. */
    static const char *const queries[] = {
        NODE_SELECT "WHERE role = 'connector' ORDER BY role, name",
        NODE_SELECT "WHERE role = 'tunneler' AND revoked = 1 ORDER BY role, name",
    };
    struct node_visit v = {visit, ctx};
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        struct db_rows *st;
        TRY(stmt_open(s, queries[i], NO_ARGS, &st, err));
        TRY(for_each_row(s, st, each_node, &v, err));
    }
    return 0;
}

const char *
store_node_status_name(const struct store_node *node, int64_t now)
{
    if (node->status == STORE_ONLINE)
        return "ONLINE";
    return node->cert_not_after != 0 && now > node->cert_not_after ? "EXPIRED" : "OFFLINE";
}

/* "ONLINE" or "OFFLINE", with ": reason" when there is one. */
static int
status_detail(enum store_status status, const char *reason, char *out, size_t cap,
              struct ztr_err *err)
{
    const char *word = status == STORE_ONLINE ? "ONLINE" : "OFFLINE";
    int n = reason != NULL && reason[0] != '\0'
                ? snprintf(out, cap, "%s: %s", word, reason)
                : snprintf(out, cap, "%s", word);
    if (n < 0 || (size_t)n >= cap)
        return ztr_err_set(err, ZTR_E_LIMIT, "status reason is longer than %zu bytes",
                           cap - 1 - strlen(word) - 2);
    return 0;
}

struct status_job {
    const char *id;
    enum store_status status;
    const char *detail;
    bool changed;
};

static int
status_body(struct store *s, void *ctx, struct ztr_err *err)
{
    struct status_job *job = ctx;
    struct store_node node;
    TRY(node_by_id(s, job->id, &node, err));
    /* A revoked node's sessions are refused; one showing up ONLINE would
     * mean a check was missed upstream. */
    if (node.revoked && job->status == STORE_ONLINE)
        return ztr_err_set(err, ZTR_E_INVALID, "node %s is revoked", node.name);
    /* last_seen is when the node was last heard from: going OFFLINE must
     * not move it (operators read staleness from it). */
    int changes = 1;
    if (job->status == STORE_ONLINE)
        TRY(stmt_exec(s,
                      "UPDATE nodes SET status = ?, last_seen = ?, controller_id = ? WHERE id = ?",
                      ARGS(INT_ARG(job->status), INT_ARG(now_s(s)), TEXT_ARG(s->controller_id),
                           TEXT_ARG(job->id)),
                      NULL, err));
    else
        /* Only the holder takes a node OFFLINE: its session may already be
         * up again on another controller. */
        TRY(stmt_exec(s,
                      "UPDATE nodes SET status = ?, controller_id = '' WHERE id = ? AND "
                      "(controller_id = ? OR controller_id = '')",
                      ARGS(INT_ARG(job->status), TEXT_ARG(job->id), TEXT_ARG(s->controller_id)),
                      &changes, err));
    job->changed = changes > 0 && node.status != job->status;
    if (job->changed)
        TRY(insert_event(s, "status", job->id, job->detail, err));
    return 0;
}

int
store_node_set_status(struct store *s, const char *id, enum store_status status,
                      const char *reason, bool *changed, struct ztr_err *err)
{
    if (changed != NULL)
        *changed = false;
    TRY(check_text("node id", id, STORE_ID_MAX, true, err));
    if (status != STORE_ONLINE && status != STORE_OFFLINE)
        return ztr_err_set(err, ZTR_E_INVALID, "unknown node status %d", (int)status);
    char detail[STORE_DETAIL_MAX + 1];
    TRY(status_detail(status, reason, detail, sizeof(detail), err));
    struct status_job job = {id, status, detail, false};
    TRY(in_tx(s, status_body, &job, err));
    if (changed != NULL)
        *changed = job.changed;
    return 0;
}

static int
touch_body(struct store *s, void *ctx, struct ztr_err *err)
{
    const char *id = ctx;
    int changes;
    TRY(stmt_exec(s, "UPDATE nodes SET last_seen = ? WHERE id = ?",
                  ARGS(INT_ARG(now_s(s)), TEXT_ARG(id)), &changes, err));
    if (changes == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "node %s not found", id);
    return 0;
}

int
store_node_touch(struct store *s, const char *id, struct ztr_err *err)
{
    TRY(check_text("node id", id, STORE_ID_MAX, true, err));
    return in_tx(s, touch_body, (void *)id, err);
}

struct sweep_job {
    int64_t cutoff;
    struct store_node *nodes;
    size_t count, cap;
};

static int
collect_node(struct db_rows *st, void *ctx, struct ztr_err *err)
{
    struct sweep_job *job = ctx;
    if (job->count == job->cap) {
        size_t cap = job->cap != 0 ? 2 * job->cap : 8;
        struct store_node *grown = realloc(job->nodes, cap * sizeof(*grown));
        if (grown == NULL)
            return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        job->nodes = grown;
        job->cap = cap;
    }
    TRY(read_node(st, &job->nodes[job->count], err));
    job->count++;
    return 0;
}

/* After the transaction (rc) committed, shows visit each node it
 * collected, which may then write to the store itself; frees them. */
static int
visit_collected(struct sweep_job *collected, int rc,
                int (*visit)(void *ctx, const struct store_node *), void *ctx)
{
    for (size_t i = 0; rc == 0 && visit != NULL && i < collected->count; i++)
        if (visit(ctx, &collected->nodes[i]) != 0)
            break;
    free(collected->nodes);
    return rc;
}

static int
sweep_body(struct store *s, void *ctx, struct ztr_err *err)
{
    struct sweep_job *job = ctx;
    struct db_rows *st;
    /* Only the nodes this controller holds: another's keeps their last_seen. */
    TRY(stmt_open(s,
                  NODE_SELECT "WHERE status = 1 AND last_seen < ? AND "
                              "(controller_id = ? OR controller_id = '') ORDER BY id",
                  ARGS(INT_ARG(job->cutoff), TEXT_ARG(s->controller_id)), &st, err));
    TRY(for_each_row(s, st, collect_node, job, err));
    for (size_t i = 0; i < job->count; i++) {
        struct store_node *n = &job->nodes[i];
        TRY(stmt_exec(s, "UPDATE nodes SET status = 0, controller_id = '' WHERE id = ?",
                      ARGS(TEXT_ARG(n->id)), NULL, err));
        TRY(insert_event(s, "status", n->id, "OFFLINE: no heartbeat", err));
        n->status = STORE_OFFLINE;
    }
    return 0;
}

/* The visitor runs after COMMIT, so it sees the nodes already OFFLINE and
 * may write to the store itself. */
int
store_node_sweep_offline(struct store *s, int64_t cutoff,
                         int (*visit)(void *ctx, const struct store_node *), void *ctx,
                         struct ztr_err *err)
{
    struct sweep_job job = {cutoff, NULL, 0, 0};
    return visit_collected(&job, in_tx(s, sweep_body, &job, err), visit, ctx);
}

struct heartbeats_job {
    const struct store_heartbeat *beats;
    size_t count;
    size_t written;
};

static int
heartbeats_body(struct store *s, void *ctx, struct ztr_err *err)
{
    struct heartbeats_job *job = ctx;
    job->written = 0;
    for (size_t i = 0; i < job->count; i++) {
        const struct store_heartbeat *b = &job->beats[i];
        int64_t changes = 0;
        /* All rows of the batch in one transaction: one commit, not one each. */
        TRY(db_exec(s->db,
                    "UPDATE nodes SET last_seen = CASE WHEN last_seen > ?1 THEN last_seen "
                    "ELSE ?1 END, "
                    "counters = CASE WHEN ?2 = '' THEN counters ELSE ?2 END, "
                    "counters_at = CASE WHEN ?2 = '' THEN counters_at ELSE ?3 END WHERE id = ?4",
                    ARGS(INT_ARG(b->last_seen), TEXT_ARG(b->counters), INT_ARG(b->counters_at),
                         TEXT_ARG(b->id)),
                    &changes, err));
        job->written += (size_t)changes;
    }
    return 0;
}

int
store_node_save_heartbeats(struct store *s, const struct store_heartbeat *beats, size_t count,
                           size_t *written, struct ztr_err *err)
{
    if (written != NULL)
        *written = 0;
    for (size_t i = 0; i < count; i++) {
        TRY(check_text("node id", beats[i].id, STORE_ID_MAX, true, err));
        /* The column's CHECK refuses anything but a JSON object. */
        TRY(check_text("node counters", beats[i].counters, STORE_COUNTERS_MAX, false, err));
    }
    if (count == 0)
        return 0;
    struct heartbeats_job job = {beats, count, 0};
    TRY(in_tx(s, heartbeats_body, &job, err));
    if (written != NULL)
        *written = job.written;
    return 0;
}

/* Classifies key against node (read inside the caller's statement or tx). */
static int
classify_key(struct store *s, const struct store_node *node, const char *key,
             struct store_cert_check *out, struct ztr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (node->cert_key[0] != '\0' && strcmp(key, node->cert_key) == 0) {
        out->state = STORE_CERT_CURRENT;
        snprintf(out->serial, sizeof(out->serial), "%s", node->cert_serial);
        return 0;
    }
    if (node->prev_cert_key[0] != '\0' && strcmp(key, node->prev_cert_key) == 0 &&
        now_s(s) < node->prev_cert_until) {
        out->state = STORE_CERT_PREVIOUS;
        snprintf(out->serial, sizeof(out->serial), "%s", node->prev_cert_serial);
        return 0;
    }
    out->state = STORE_CERT_SUPERSEDED;
    struct db_rows *st;
    TRY(stmt_open(s,
                  "SELECT serial FROM certificates WHERE node_id = ? AND key = ? "
                  "ORDER BY issued_at DESC LIMIT 1",
                  ARGS(TEXT_ARG(node->id), TEXT_ARG(key)), &st, err));
    int rc = stmt_step(s, st, err);
    if (rc == 1)
        rc = col_text(st, 0, out->serial, sizeof(out->serial), err) == 0 ? 1 : -1;
    db_rows_close(st);
    return rc < 0 ? -1 : 0;
}

static int
check_key_args(const char *id, const char *key, struct ztr_err *err)
{
    TRY(check_text("node id", id, STORE_ID_MAX, true, err));
    return check_text("certificate key", key, STORE_KEY_MAX, true, err);
}

int
store_node_cert_state(struct store *s, const char *id, const char *key,
                      struct store_cert_check *out, struct ztr_err *err)
{
    TRY(check_key_args(id, key, err));
    struct store_node node;
    TRY(node_by_id(s, id, &node, err));
    return classify_key(s, &node, key, out, err);
}

struct admit_job {
    const char *id, *key;
    struct store_cert_check *out;
};

static int
admit_body(struct store *s, void *ctx, struct ztr_err *err)
{
    struct admit_job *job = ctx;
    struct store_node node;
    TRY(node_by_id(s, job->id, &node, err));
    if (node.cert_key[0] == '\0' && !node.revoked) {
        /* A row from before keys were kept: the first session binds it. */
        TRY(stmt_exec(s, "UPDATE nodes SET cert_key = ? WHERE id = ?",
                      ARGS(TEXT_ARG(job->key), TEXT_ARG(job->id)), NULL, err));
        TRY(record_cert(s, job->id, node.cert_serial, job->key, err));
        memset(job->out, 0, sizeof(*job->out));
        job->out->state = STORE_CERT_CURRENT;
        job->out->bound = true;
        snprintf(job->out->serial, sizeof(job->out->serial), "%s", node.cert_serial);
        return 0;
    }
    TRY(classify_key(s, &node, job->key, job->out, err));
    if (job->out->state == STORE_CERT_CURRENT && node.prev_cert_key[0] != '\0') {
        TRY(stmt_exec(s,
                      "UPDATE nodes SET prev_cert_serial = '', prev_cert_key = '', "
                      "prev_cert_until = 0 WHERE id = ?",
                      ARGS(TEXT_ARG(job->id)), NULL, err));
        job->out->grace_ended = true;
    }
    return 0;
}

int
store_node_cert_admit(struct store *s, const char *id, const char *key,
                      struct store_cert_check *out, struct ztr_err *err)
{
    TRY(check_key_args(id, key, err));
    /* Most sessions change nothing: a read decides, and only a session that
     * binds a key or ends a grace takes the write lock (and decides again
     * under it). */
    struct store_node node;
    TRY(node_by_id(s, id, &node, err));
    if (node.cert_key[0] != '\0' && node.prev_cert_key[0] == '\0')
        return classify_key(s, &node, key, out, err);
    struct store_cert_check result;
    struct admit_job job = {id, key, &result};
    TRY(in_tx(s, admit_body, &job, err));
    *out = result;
    return 0;
}

struct renew_job {
    const char *id, *session_key, *serial, *key;
    int64_t not_after, grace_s;
};

static int
renew_body(struct store *s, void *ctx, struct ztr_err *err)
{
    const struct renew_job *job = ctx;
    struct store_node node;
    TRY(node_by_id(s, job->id, &node, err));
    if (node.revoked)
        return ztr_err_set(err, ZTR_E_INVALID, "node %s is revoked", node.name);
    struct store_cert_check from;
    TRY(classify_key(s, &node, job->session_key, &from, err));
    if (from.state == STORE_CERT_SUPERSEDED)
        return ztr_err_set(err, STORE_E_SUPERSEDED,
                           "node %s: certificate %s is superseded, renewal refused", node.name,
                           from.serial[0] != '\0' ? from.serial : "(unknown)");
    TRY(stmt_exec(s,
                  "UPDATE nodes SET cert_serial = ?, cert_not_after = ?, cert_key = ?, "
                  "prev_cert_serial = ?, prev_cert_key = ?, prev_cert_until = ?, "
                  "last_renewed_at = ? WHERE id = ?",
                  ARGS(TEXT_ARG(job->serial), INT_ARG(job->not_after), TEXT_ARG(job->key),
                       TEXT_ARG(from.serial), TEXT_ARG(job->session_key),
                       INT_ARG(now_s(s) + job->grace_s), INT_ARG(now_s(s)), TEXT_ARG(job->id)),
                  NULL, err));
    TRY(record_cert(s, job->id, job->serial, job->key, err));
    char detail[STORE_DETAIL_MAX + 1];
    snprintf(detail, sizeof(detail), "serial %s not_after %lld", job->serial,
             (long long)job->not_after);
    return insert_event(s, "renewed", job->id, detail, err);
}

int
store_node_cert_key(struct store *s, const char *id, const char *serial, char *key, size_t cap,
                    struct ztr_err *err)
{
    TRY(check_text("node id", id, STORE_ID_MAX, true, err));
    TRY(check_text("certificate serial", serial, STORE_SERIAL_MAX, true, err));
    struct db_rows *st;
    TRY(stmt_open(s, "SELECT key FROM certificates WHERE node_id = ? AND serial = ?",
                  ARGS(TEXT_ARG(id), TEXT_ARG(serial)), &st, err));
    int rc = stmt_step(s, st, err);
    if (rc == 1)
        rc = col_text(st, 0, key, cap, err) == 0 ? 1 : -1;
    db_rows_close(st);
    if (rc == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "node %s has no certificate %s", id, serial);
    return rc < 0 ? -1 : 0;
}

int
store_node_certificates_since(struct store *s, const char *id, int64_t since, int64_t *count,
                              struct ztr_err *err)
{
    *count = 0;
    return query_int(s, "SELECT COUNT(*) FROM certificates WHERE node_id = ? AND issued_at >= ?",
                     ARGS(TEXT_ARG(id), INT_ARG(since)), count, err) < 0
               ? -1
               : 0;
}

int
store_node_renew(struct store *s, const char *id, const char *session_key, const char *serial,
                 const char *key, int64_t not_after, int64_t grace_s, struct ztr_err *err)
{
    TRY(check_key_args(id, session_key, err));
    TRY(check_text("certificate serial", serial, STORE_SERIAL_MAX, true, err));
    TRY(check_text("certificate key", key, STORE_KEY_MAX, true, err));
    if (grace_s < 0)
        return ztr_err_set(err, ZTR_E_INVALID, "renewal grace must not be negative");
    struct renew_job job = {id, session_key, serial, key, not_after, grace_s};
    return in_tx(s, renew_body, &job, err);
}

/* Tells every controller on the database (itself included) at commit. */
static int
notify(struct store *s, const char *payload, struct ztr_err *err)
{
    return db_notify(s->db, STORE_CHANNEL, payload, err);
}

static int
bump_allowlist(struct store *s, struct ztr_err *err)
{
    int changes;
    TRY(stmt_exec(s, "UPDATE meta SET value = value + 1 WHERE key = 'allowlist_version'",
                  NO_ARGS, &changes, err));
    if (changes != 1)
        return ztr_err_set(err, ZTR_E_IO, "allowlist_version is missing from meta");
    return notify(s, "push", err);
}

struct revoke_job {
    const char *id, *reason;
};

static int
revoke_body(struct store *s, void *ctx, struct ztr_err *err)
{
    const struct revoke_job *job = ctx;
    struct store_node node;
    TRY(node_by_id(s, job->id, &node, err));
    if (node.revoked)
        return 0;
    TRY(stmt_exec(s, "UPDATE nodes SET revoked = 1, status = 0 WHERE id = ?",
                  ARGS(TEXT_ARG(job->id)), NULL, err));
    TRY(stmt_exec(s, "INSERT INTO revocations (node_id, serial, reason, at) VALUES (?, ?, ?, ?)",
                  ARGS(TEXT_ARG(job->id), TEXT_ARG(node.cert_serial), TEXT_ARG(job->reason),
                       INT_ARG(now_s(s))),
                  NULL, err));
    TRY(insert_event(s, "revoked", job->id, job->reason, err));
    /* Whichever controller holds the node's session closes it. */
    char payload[STORE_ID_MAX + STORE_DETAIL_MAX + 16];
    snprintf(payload, sizeof(payload), "revoke %s %s", job->id, job->reason);
    TRY(notify(s, payload, err));
    /* A revoked tunneler's grants stop mattering: agents that cache the
     * allowlist must refetch it. */
    return bump_allowlist(s, err);
}

int
store_node_revoke(struct store *s, const char *id, const char *reason, struct ztr_err *err)
{
    TRY(check_text("node id", id, STORE_ID_MAX, true, err));
    TRY(check_text("revocation reason", reason, STORE_DETAIL_MAX, false, err));
    struct revoke_job job = {id, or_empty(reason)};
    return in_tx(s, revoke_body, &job, err);
}

struct addresses_job {
    const char *id, *addresses;
    bool allowed; /* the allowed list, not the advertisement */
};

static int
addresses_body(struct store *s, void *ctx, struct ztr_err *err)
{
    const struct addresses_job *job = ctx;
    int changes;
    TRY(stmt_exec(s,
                  job->allowed ? "UPDATE nodes SET allowed_addresses = ? WHERE id = ?"
                               : "UPDATE nodes SET addresses = ? WHERE id = ?",
                  ARGS(TEXT_ARG(job->addresses), TEXT_ARG(job->id)), &changes, err));
    if (changes == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "node %s not found", job->id);
    /* A connector's data address or resources: tunnelers' lists. */
    return notify(s, "push", err);
}

int
store_node_set_addresses(struct store *s, const char *id, const char *addresses_json,
                         struct ztr_err *err)
{
    TRY(check_text("node id", id, STORE_ID_MAX, true, err));
    TRY(check_text("node addresses", addresses_json, STORE_ADDRESSES_MAX, false, err));
    struct addresses_job job = {id, addresses_or_empty(addresses_json), false};
    return in_tx(s, addresses_body, &job, err);
}

int
store_node_set_allowed_addresses(struct store *s, const char *id,
                                 const char *addresses_json, struct ztr_err *err)
{
    TRY(check_text("node id", id, STORE_ID_MAX, true, err));
    TRY(check_text("node addresses", addresses_json, STORE_ADDRESSES_MAX, false, err));
    struct addresses_job job = {id, addresses_or_empty(addresses_json), true};
    return in_tx(s, addresses_body, &job, err);
}

struct drain_job {
    const char *id;
    enum store_drain drain;
    int64_t deadline;
    bool by_operator;       /* else the connector's own mark: never over the operator's */
    bool changed;
};

static int
drain_body(struct store *s, void *ctx, struct ztr_err *err)
{
    struct drain_job *job = ctx;
    struct store_node node;
    TRY(node_by_id(s, job->id, &node, err));
    if (strcmp(node.role, "connector") != 0)
        return ztr_err_set(err, ZTR_E_INVALID, "node %s is a %s: only connectors drain",
                           node.name, node.role);
    /* The connector's own marks never override or clear the operator's. */
    if (!job->by_operator && node.drain == STORE_DRAIN_OPERATOR)
        return 0;
    if (node.drain == job->drain && node.drain_deadline == job->deadline)
        return 0;
    int64_t since = job->drain == STORE_DRAIN_NONE ? 0
                    : node.drain != STORE_DRAIN_NONE ? node.drain_since
                                                     : now_s(s);
    TRY(stmt_exec(s,
                  "UPDATE nodes SET drain = ?, drain_since = ?, drain_deadline = ? WHERE id = ?",
                  ARGS(INT_ARG(job->drain), INT_ARG(since), INT_ARG(job->deadline),
                       TEXT_ARG(job->id)),
                  NULL, err));
    char detail[128];
    if (job->drain == STORE_DRAIN_NONE)
        snprintf(detail, sizeof(detail), "undrained");
    else
        snprintf(detail, sizeof(detail), "draining by=%s deadline=%lld",
                 job->drain == STORE_DRAIN_OPERATOR ? "operator" : "shutdown",
                 (long long)job->deadline);
    TRY(insert_event(s, job->drain == STORE_DRAIN_NONE ? "undrained" : "draining", job->id,
                     detail, err));
    job->changed = true;
    /* Tunnelers' connector lists and the connector itself. */
    return notify(s, "push", err);
}

int
store_node_set_drain(struct store *s, const char *id, enum store_drain drain, int64_t deadline,
                     bool *changed, struct ztr_err *err)
{
    if (changed != NULL)
        *changed = false;
    TRY(check_text("node id", id, STORE_ID_MAX, true, err));
    if (drain != STORE_DRAIN_NONE && drain != STORE_DRAIN_OPERATOR &&
        drain != STORE_DRAIN_SHUTDOWN)
        return ztr_err_set(err, ZTR_E_INVALID, "unknown drain %d", (int)drain);
    if (deadline < 0)
        return ztr_err_set(err, ZTR_E_INVALID, "drain deadline must not be negative");
    struct drain_job job = {id, drain, drain == STORE_DRAIN_NONE ? 0 : deadline,
                            drain != STORE_DRAIN_SHUTDOWN, false};
    TRY(in_tx(s, drain_body, &job, err));
    if (changed != NULL)
        *changed = job.changed;
    return 0;
}

int
store_node_clear_shutdown_drain(struct store *s, const char *id, bool *changed,
                                struct ztr_err *err)
{
    if (changed != NULL)
        *changed = false;
    TRY(check_text("node id", id, STORE_ID_MAX, true, err));
    struct drain_job job = {id, STORE_DRAIN_NONE, 0, false, false};
    TRY(in_tx(s, drain_body, &job, err));
    if (changed != NULL)
        *changed = job.changed;
    return 0;
}

/* ---- resources and the allowlist ----------------------------------------- */

struct resource_job {
    const char *name, *description;
};

static int
resource_put_body(struct store *s, void *ctx, struct ztr_err *err)
{
    const struct resource_job *job = ctx;
    return stmt_exec(s,
                     "INSERT INTO resources (name, description, created_at) VALUES (?, ?, ?) "
                     "ON CONFLICT (name) DO UPDATE SET description = excluded.description",
                     ARGS(TEXT_ARG(job->name), TEXT_ARG(job->description),
                          INT_ARG(now_s(s))),
                     NULL, err);
}

int
store_resource_put(struct store *s, const char *name, const char *description,
                   struct ztr_err *err)
{
    TRY(check_text("resource name", name, STORE_NAME_MAX, true, err));
    TRY(check_text("resource description", description, STORE_DETAIL_MAX, false, err));
    struct resource_job job = {name, or_empty(description)};
    return in_tx(s, resource_put_body, &job, err);
}

/* Grants to a resource, ours and federated ones. */
static int
resource_grant_count(struct store *s, const char *resource, int64_t *count,
                     struct ztr_err *err)
{
    int64_t grants = 0, fed_grants = 0;
    if (query_int(s, "SELECT count(*) FROM grants WHERE resource = ?",
                  ARGS(TEXT_ARG(resource)), &grants, err) < 0 ||
        query_int(s, "SELECT count(*) FROM fed_grants WHERE resource = ?",
                  ARGS(TEXT_ARG(resource)), &fed_grants, err) < 0)
        return -1;
    *count = grants + fed_grants;
    return 0;
}

static int
resource_delete_body(struct store *s, void *ctx, struct ztr_err *err)
{
    const char *name = ctx;
    int64_t grants;
    TRY(resource_grant_count(s, name, &grants, err));
    int changes;
    /* The grants go with it: ON DELETE CASCADE. */
    TRY(stmt_exec(s, "DELETE FROM resources WHERE name = ?", ARGS(TEXT_ARG(name)), &changes,
                  err));
    if (changes == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "resource %s not found", name);
    return grants > 0 ? bump_allowlist(s, err) : 0;
}

int
store_resource_delete(struct store *s, const char *name, struct ztr_err *err)
{
    TRY(check_text("resource name", name, STORE_NAME_MAX, true, err));
    return in_tx(s, resource_delete_body, (void *)name, err);
}

struct resource_visit {
    int (*visit)(void *ctx, const struct store_resource *);
    void *ctx;
};

static int
each_resource(struct db_rows *st, void *ctx, struct ztr_err *err)
{
    struct resource_visit *v = ctx;
    struct store_resource r;
    memset(&r, 0, sizeof(r));
    if (col_text(st, 0, r.name, sizeof(r.name), err) != 0 ||
        col_text(st, 1, r.description, sizeof(r.description), err) != 0)
        return -1;
    r.created_at = db_int(st, 2);
    return v->visit(v->ctx, &r) != 0 ? 1 : 0;
}

int
store_resource_list(struct store *s, int (*visit)(void *ctx, const struct store_resource *),
                    void *ctx, struct ztr_err *err)
{
    if (visit == NULL)
        return 0;
    struct db_rows *st;
    TRY(stmt_open(s, "SELECT name, description, created_at FROM resources ORDER BY name",
                  NO_ARGS, &st, err));
    struct resource_visit v = {visit, ctx};
    return for_each_row(s, st, each_resource, &v, err);
}

struct binding_job {
    const char *resource, *connector;
    bool bind;
};

static int
binding_body(struct store *s, void *ctx, struct ztr_err *err)
{
    const struct binding_job *job = ctx;
    int64_t one;
    int found = query_int(s, "SELECT 1 FROM resources WHERE name = ?",
                          ARGS(TEXT_ARG(job->resource)), &one, err);
    if (found < 0)
        return -1;
    if (found == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "resource %s not found", job->resource);
    int changes;
    if (job->bind) {
        TRY(stmt_exec(s,
                      "INSERT INTO resource_connectors (resource, connector_name, created_at) "
                      "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                      ARGS(TEXT_ARG(job->resource), TEXT_ARG(job->connector), INT_ARG(now_s(s))),
                      &changes, err));
    } else {
        TRY(stmt_exec(s,
                      "DELETE FROM resource_connectors WHERE resource = ? AND connector_name = ?",
                      ARGS(TEXT_ARG(job->resource), TEXT_ARG(job->connector)), &changes, err));
        if (changes == 0)
            return ztr_err_set(err, ZTR_E_NOT_FOUND, "resource %s is not bound to connector %s",
                               job->resource, job->connector);
    }
    if (changes == 0)
        return 0;
    /* Connectors are told only of the grants to what is bound to them: with
     * grants to this resource, the connector's list changes (an unbinding
     * is a change that closes streams, counted like a deny). */
    int64_t grants;
    TRY(resource_grant_count(s, job->resource, &grants, err));
    return grants > 0 ? bump_allowlist(s, err) : notify(s, "push", err);
}

int
store_resource_bind(struct store *s, const char *resource, const char *connector, bool bind,
                    struct ztr_err *err)
{
    TRY(check_text("resource name", resource, STORE_NAME_MAX, true, err));
    TRY(check_text("connector name", connector, STORE_NAME_MAX, true, err));
    struct binding_job job = {resource, connector, bind};
    return in_tx(s, binding_body, &job, err);
}

struct resource_add_job {
    struct resource_job resource;
    const char *const *connectors;
    size_t count;
};

static int
resource_add_body(struct store *s, void *ctx, struct ztr_err *err)
{
    const struct resource_add_job *job = ctx;
    TRY(resource_put_body(s, (void *)&job->resource, err));
    for (size_t i = 0; i < job->count; i++) {
        struct binding_job bind = {job->resource.name, job->connectors[i], true};
        TRY(binding_body(s, &bind, err));
    }
    return 0;
}

int
store_resource_add(struct store *s, const char *name, const char *description,
                   const char *const *connectors, size_t count, struct ztr_err *err)
{
    TRY(check_text("resource name", name, STORE_NAME_MAX, true, err));
    TRY(check_text("resource description", description, STORE_DETAIL_MAX, false, err));
    for (size_t i = 0; i < count; i++)
        TRY(check_text("connector name", connectors[i], STORE_NAME_MAX, true, err));
    struct resource_add_job job = {{name, or_empty(description)}, connectors, count};
    return in_tx(s, resource_add_body, &job, err);
}

struct binding_visit {
    int (*visit)(void *ctx, const struct store_binding *);
    void *ctx;
};

static int
each_binding(struct db_rows *st, void *ctx, struct ztr_err *err)
{
    struct binding_visit *v = ctx;
    struct store_binding b;
    memset(&b, 0, sizeof(b));
    if (col_text(st, 0, b.resource, sizeof(b.resource), err) != 0 ||
        col_text(st, 1, b.connector, sizeof(b.connector), err) != 0)
        return -1;
    b.created_at = db_int(st, 2);
    return v->visit(v->ctx, &b) != 0 ? 1 : 0;
}

int
store_binding_list(struct store *s, int (*visit)(void *ctx, const struct store_binding *),
                   void *ctx, struct ztr_err *err)
{
    if (visit == NULL)
        return 0;
    struct db_rows *st;
    TRY(stmt_open(s,
                  "SELECT resource, connector_name, created_at FROM resource_connectors "
                  "ORDER BY resource, connector_name",
                  NO_ARGS, &st, err));
    struct binding_visit v = {visit, ctx};
    return for_each_row(s, st, each_binding, &v, err);
}

struct grant_job {
    const char *tunneler, *resource;
};

static int
allow_body(struct store *s, void *ctx, struct ztr_err *err)
{
    const struct grant_job *job = ctx;
    int64_t one;
    int found = query_int(s, "SELECT 1 FROM resources WHERE name = ?",
                          ARGS(TEXT_ARG(job->resource)), &one, err);
    if (found < 0)
        return -1;
    if (found == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "resource %s not found", job->resource);
    int changes;
    TRY(stmt_exec(s,
                  "INSERT INTO grants (tunneler, resource, created_at) VALUES (?, ?, ?) "
                  "ON CONFLICT DO NOTHING",
                  ARGS(TEXT_ARG(job->tunneler), TEXT_ARG(job->resource), INT_ARG(now_s(s))),
                  &changes, err));
    return changes > 0 ? bump_allowlist(s, err) : 0;
}

static int
deny_body(struct store *s, void *ctx, struct ztr_err *err)
{
    const struct grant_job *job = ctx;
    int changes;
    TRY(stmt_exec(s, "DELETE FROM grants WHERE tunneler = ? AND resource = ?",
                  ARGS(TEXT_ARG(job->tunneler), TEXT_ARG(job->resource)), &changes, err));
    return changes > 0 ? bump_allowlist(s, err) : 0;
}

static int
check_grant(const char *tunneler, const char *resource, struct ztr_err *err)
{
    TRY(check_text("tunneler name", tunneler, STORE_NAME_MAX, true, err));
    return check_text("resource name", resource, STORE_NAME_MAX, true, err);
}

int
store_allow(struct store *s, const char *tunneler, const char *resource, struct ztr_err *err)
{
    TRY(check_grant(tunneler, resource, err));
    struct grant_job job = {tunneler, resource};
    return in_tx(s, allow_body, &job, err);
}

int
store_deny(struct store *s, const char *tunneler, const char *resource, struct ztr_err *err)
{
    TRY(check_grant(tunneler, resource, err));
    struct grant_job job = {tunneler, resource};
    return in_tx(s, deny_body, &job, err);
}

struct grant_visit {
    int (*visit)(void *ctx, const struct store_grant *);
    void *ctx;
};

static int
each_grant(struct db_rows *st, void *ctx, struct ztr_err *err)
{
    struct grant_visit *v = ctx;
    struct store_grant g;
    memset(&g, 0, sizeof(g));
    if (col_text(st, 0, g.tunneler, sizeof(g.tunneler), err) != 0 ||
        col_text(st, 1, g.resource, sizeof(g.resource), err) != 0)
        return -1;
    g.created_at = db_int(st, 2);
    return v->visit(v->ctx, &g) != 0 ? 1 : 0;
}

int
store_allowlist_list(struct store *s, int (*visit)(void *ctx, const struct store_grant *),
                     void *ctx, struct ztr_err *err)
{
    if (visit == NULL)
        return 0;
    struct db_rows *st;
    TRY(stmt_open(s,
                  "SELECT tunneler, resource, created_at FROM grants "
                  "ORDER BY tunneler, resource",
                  NO_ARGS, &st, err));
    struct grant_visit v = {visit, ctx};
    return for_each_row(s, st, each_grant, &v, err);
}

/* -1 when it cannot be read (the header's signature has no err). */
int64_t
store_allowlist_version(struct store *s)
{
    int64_t version;
    if (query_int(s, "SELECT value FROM meta WHERE key = 'allowlist_version'", NO_ARGS,
                  &version, NULL) != 1)
        return -1;
    return version;
}

/* ---- federation peers ------------------------------------------------------ */

#define PEER_SELECT                                                                     \
    "SELECT id, name, trust_domain, url, direction, state, token_digest, "              \
    "token_expires_at, bundle, bundle_version, last_heartbeat_at, reason, resume_state, " \
    "created_at, updated_at FROM peers "

static int
read_peer(struct db_rows *st, struct store_peer *p, struct ztr_err *err)
{
    memset(p, 0, sizeof(*p));
    if (col_text(st, 0, p->id, sizeof(p->id), err) != 0 ||
        col_text(st, 1, p->name, sizeof(p->name), err) != 0 ||
        col_text(st, 2, p->trust_domain, sizeof(p->trust_domain), err) != 0 ||
        col_text(st, 3, p->url, sizeof(p->url), err) != 0 ||
        col_text(st, 4, p->direction, sizeof(p->direction), err) != 0 ||
        col_text(st, 5, p->state, sizeof(p->state), err) != 0)
        return -1;
    size_t digest_len = 0;
    const void *digest = db_is_null(st, 6) ? NULL : db_blob(st, 6, &digest_len);
    if (digest != NULL) {
        if (digest_len != sizeof(p->token_digest))
            return ztr_err_set(err, ZTR_E_INVALID, "stored token digest of peer %s is not %zu "
                               "bytes", p->id, sizeof(p->token_digest));
        memcpy(p->token_digest, digest, sizeof(p->token_digest));
        p->has_token = true;
    }
    p->token_expires_at = db_int(st, 7);
    if (col_text(st, 8, p->bundle, sizeof(p->bundle), err) != 0)
        return -1;
    p->bundle_version = db_int(st, 9);
    p->last_heartbeat_at = db_int(st, 10);
    if (col_text(st, 11, p->reason, sizeof(p->reason), err) != 0 ||
        col_text(st, 12, p->resume_state, sizeof(p->resume_state), err) != 0)
        return -1;
    p->created_at = db_int(st, 13);
    p->updated_at = db_int(st, 14);
    return 0;
}

static int
check_peer(const struct store_peer *p, struct ztr_err *err)
{
    TRY(check_text("peer name", p->name, STORE_NAME_MAX, true, err));
    TRY(check_text("peer trust domain", p->trust_domain, STORE_TRUST_DOMAIN_MAX, false, err));
    TRY(check_text("peer url", p->url, STORE_URL_MAX, false, err));
    TRY(check_text("peer bundle", p->bundle, STORE_PEER_BUNDLE_MAX, false, err));
    return check_text("peer reason", p->reason, STORE_DETAIL_MAX, false, err);
}

/* A name or trust domain already taken by a peer that is not revoked. */
static int
peer_conflict(struct store *s, struct ztr_err *err)
{
    if (!db_constraint_failed(s->db))
        return -1;
    return ztr_err_set(err, STORE_E_PEER_EXISTS, "a peer with that name or trust domain exists");
}

int
store_peer_insert(struct store *s, struct store_peer *p, struct ztr_err *err)
{
    TRY(check_peer(p, err));
    if (p->id[0] == '\0')
        TRY(random_hex_id(p->id, sizeof(p->id), err));
    p->created_at = p->updated_at = now_s(s);
    int rc = stmt_exec(
        s,
        "INSERT INTO peers (id, name, trust_domain, url, direction, state, token_digest, "
        "token_expires_at, bundle, bundle_version, last_heartbeat_at, reason, resume_state, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ARGS(TEXT_ARG(p->id), TEXT_ARG(p->name), TEXT_ARG(p->trust_domain), TEXT_ARG(p->url),
             TEXT_ARG(p->direction), TEXT_ARG(p->state),
             p->has_token ? (struct db_arg)BLOB_ARG(p->token_digest, sizeof(p->token_digest))
                          : (struct db_arg)TEXT_ARG(NULL),
             INT_ARG(p->token_expires_at), TEXT_ARG(p->bundle), INT_ARG(p->bundle_version),
             INT_ARG(p->last_heartbeat_at), TEXT_ARG(p->reason), TEXT_ARG(p->resume_state),
             INT_ARG(p->created_at), INT_ARG(p->updated_at)),
        NULL, err);
    return rc != 0 ? (peer_conflict(s, err), -1) : 0;
}

int
store_peer_update(struct store *s, struct store_peer *p, struct ztr_err *err)
{
    TRY(check_peer(p, err));
    p->updated_at = now_s(s);
    int changes = 0;
    int rc = stmt_exec(
        s,
        "UPDATE peers SET name = ?2, trust_domain = ?3, url = ?4, direction = ?5, state = ?6, "
        "token_digest = ?7, token_expires_at = ?8, bundle = ?9, bundle_version = ?10, "
        "last_heartbeat_at = ?11, reason = ?12, resume_state = ?13, updated_at = ?14 "
        "WHERE id = ?1 AND state <> 'revoked'",
        ARGS(TEXT_ARG(p->id), TEXT_ARG(p->name), TEXT_ARG(p->trust_domain), TEXT_ARG(p->url),
             TEXT_ARG(p->direction), TEXT_ARG(p->state),
             p->has_token ? (struct db_arg)BLOB_ARG(p->token_digest, sizeof(p->token_digest))
                          : (struct db_arg)TEXT_ARG(NULL),
             INT_ARG(p->token_expires_at), TEXT_ARG(p->bundle), INT_ARG(p->bundle_version),
             INT_ARG(p->last_heartbeat_at), TEXT_ARG(p->reason), TEXT_ARG(p->resume_state),
             INT_ARG(p->updated_at)),
        &changes, err);
    if (rc != 0)
        return peer_conflict(s, err), -1;
    if (changes == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "no peer %s (or it is revoked)", p->id);
    return 0;
}

static int
peer_one(struct store *s, const char *sql, const char *arg, struct store_peer *out,
         struct ztr_err *err)
{
    struct db_rows *st;
    TRY(stmt_open(s, sql, ARGS(TEXT_ARG(arg)), &st, err));
    int rc = stmt_step(s, st, err);
    if (rc == 1)
        rc = read_peer(st, out, err) == 0 ? 1 : -1;
    db_rows_close(st);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "no peer %s", arg);
    return 0;
}

int
store_peer_get(struct store *s, const char *id, struct store_peer *out, struct ztr_err *err)
{
    return peer_one(s, PEER_SELECT "WHERE id = ?", id, out, err);
}

int
store_peer_get_by_name(struct store *s, const char *name, struct store_peer *out,
                       struct ztr_err *err)
{
    /* The live one, else the newest revoked one. */
    return peer_one(s,
                    PEER_SELECT "WHERE name = ? ORDER BY state = 'revoked', created_at DESC, "
                                "updated_at DESC, id DESC LIMIT 1",
                    name, out, err);
}

int
store_peer_get_by_trust_domain(struct store *s, const char *trust_domain,
                               struct store_peer *out, struct ztr_err *err)
{
    return peer_one(s, PEER_SELECT "WHERE trust_domain = ? AND state <> 'revoked'",
                    trust_domain, out, err);
}

struct peer_visit {
    int (*visit)(void *ctx, const struct store_peer *);
    void *ctx;
};

static int
each_peer(struct db_rows *st, void *ctx, struct ztr_err *err)
{
    struct peer_visit *v = ctx;
    struct store_peer *p = malloc(sizeof(*p));
    if (p == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int rc = read_peer(st, p, err);
    if (rc == 0)
        rc = v->visit(v->ctx, p) != 0 ? 1 : 0;
    free(p);
    return rc;
}

int
store_peer_list(struct store *s, int (*visit)(void *ctx, const struct store_peer *), void *ctx,
                struct ztr_err *err)
{
    struct db_rows *st;
    TRY(stmt_open(s, PEER_SELECT "ORDER BY name, created_at", NO_ARGS, &st, err));
    struct peer_visit v = {visit, ctx};
    return for_each_row(s, st, each_peer, &v, err);
}

int
store_peer_set_remote_grants(struct store *s, const char *peer_id, const char *grants_json,
                             struct ztr_err *err)
{
    TRY(check_text("peer id", peer_id, STORE_ID_MAX, true, err));
    TRY(check_text("remote grants", grants_json, STORE_REMOTE_GRANTS_MAX, true, err));
    int changes = 0;
    int rc = stmt_exec(s, "UPDATE peers SET remote_grants = ? WHERE id = ? AND state <> 'revoked'",
                       ARGS(TEXT_ARG(grants_json), TEXT_ARG(peer_id)), &changes, err);
    if (rc != 0)
        return -1;
    if (changes == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "no peer %s (or it is revoked)", peer_id);
    return 0;
}

int
store_peer_remote_grants(struct store *s, const char *peer_id, char **grants_json,
                         struct ztr_err *err)
{
    *grants_json = NULL;
    struct db_rows *st;
    TRY(stmt_open(s, "SELECT remote_grants FROM peers WHERE id = ?", ARGS(TEXT_ARG(peer_id)),
                  &st, err));
    int rc = stmt_step(s, st, err);
    if (rc == 1) {
        const char *text = db_text(st, 0);
        *grants_json = strdup(text != NULL ? (const char *)text : "[]");
        if (*grants_json == NULL)
            rc = ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    db_rows_close(st);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "no peer %s", peer_id);
    return 0;
}

/* ---- federation grants ------------------------------------------------------ */

int
store_allowlist_bump(struct store *s, struct ztr_err *err)
{
    return bump_allowlist(s, err);
}

static int
check_fed_grant(const struct store_fed_grant *g, struct ztr_err *err)
{
    TRY(check_text("peer id", g->peer_id, STORE_ID_MAX, true, err));
    TRY(check_text("resource name", g->resource, STORE_NAME_MAX, true, err));
    TRY(check_text("tunneler SPIFFE ID", g->tunneler, STORE_SPIFFE_ID_MAX, true, err));
    if (g->expires_at < 0)
        return ztr_err_set(err, ZTR_E_INVALID, "grant expiry must not be negative");
    return check_text("source CIDRs", g->source_cidrs, STORE_DETAIL_MAX, true, err);
}

static int
fed_grant_put_body(struct store *s, void *ctx, struct ztr_err *err)
{
    struct store_fed_grant *g = ctx;
    int64_t one;
    int found = query_int(s, "SELECT 1 FROM resources WHERE name = ?",
                          ARGS(TEXT_ARG(g->resource)), &one, err);
    if (found < 0)
        return -1;
    if (found == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "resource %s not found", g->resource);
    found = query_int(s, "SELECT 1 FROM peers WHERE id = ? AND state <> 'revoked'",
                      ARGS(TEXT_ARG(g->peer_id)), &one, err);
    if (found < 0)
        return -1;
    if (found == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "no peer %s (or it is revoked)", g->peer_id);
    /* Granting the same scope again replaces its CIDRs and expiry and
     * keeps its id. */
    char id[STORE_ID_MAX + 1];
    TRY(random_hex_id(id, sizeof(id), err));
    g->created_at = now_s(s);
    TRY(stmt_exec(s,
                  "INSERT INTO fed_grants (id, peer_id, resource, tunneler, source_cidrs, "
                  "expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                  "ON CONFLICT (peer_id, resource, tunneler) DO UPDATE SET "
                  "source_cidrs = excluded.source_cidrs, expires_at = excluded.expires_at",
                  ARGS(TEXT_ARG(id), TEXT_ARG(g->peer_id), TEXT_ARG(g->resource),
                       TEXT_ARG(g->tunneler), TEXT_ARG(g->source_cidrs), INT_ARG(g->expires_at),
                       INT_ARG(g->created_at)),
                  NULL, err));
    struct db_rows *st;
    TRY(stmt_open(s,
                  "SELECT id, created_at FROM fed_grants WHERE peer_id = ? AND resource = ? "
                  "AND tunneler = ?",
                  ARGS(TEXT_ARG(g->peer_id), TEXT_ARG(g->resource), TEXT_ARG(g->tunneler)), &st,
                  err));
    int rc = stmt_step(s, st, err);
    if (rc == 1) {
        rc = col_text(st, 0, g->id, sizeof(g->id), err) == 0 ? 1 : -1;
        g->created_at = db_int(st, 1);
    }
    db_rows_close(st);
    if (rc != 1)
        return rc < 0 ? -1 : ztr_err_set(err, ZTR_E_IO, "grant not found after writing it");
    return bump_allowlist(s, err);
}

int
store_fed_grant_put(struct store *s, struct store_fed_grant *g, struct ztr_err *err)
{
    TRY(check_fed_grant(g, err));
    return in_tx(s, fed_grant_put_body, g, err);
}

#define FED_GRANT_SELECT                                                                 \
    "SELECT id, peer_id, resource, tunneler, source_cidrs, expires_at, created_at "      \
    "FROM fed_grants "

static int
read_fed_grant(struct db_rows *st, struct store_fed_grant *g, struct ztr_err *err)
{
    memset(g, 0, sizeof(*g));
    if (col_text(st, 0, g->id, sizeof(g->id), err) != 0 ||
        col_text(st, 1, g->peer_id, sizeof(g->peer_id), err) != 0 ||
        col_text(st, 2, g->resource, sizeof(g->resource), err) != 0 ||
        col_text(st, 3, g->tunneler, sizeof(g->tunneler), err) != 0 ||
        col_text(st, 4, g->source_cidrs, sizeof(g->source_cidrs), err) != 0)
        return -1;
    g->expires_at = db_int(st, 5);
    g->created_at = db_int(st, 6);
    return 0;
}

static int
fed_grant_delete_body(struct store *s, void *ctx, struct ztr_err *err)
{
    struct store_fed_grant *g = ctx;
    struct db_rows *st;
    TRY(stmt_open(s, FED_GRANT_SELECT "WHERE id = ?", ARGS(TEXT_ARG(g->id)), &st, err));
    int rc = stmt_step(s, st, err);
    if (rc == 1)
        rc = read_fed_grant(st, g, err) == 0 ? 1 : -1;
    db_rows_close(st);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "no federation grant %s", g->id);
    TRY(stmt_exec(s, "DELETE FROM fed_grants WHERE id = ?", ARGS(TEXT_ARG(g->id)), NULL, err));
    return bump_allowlist(s, err);
}

int
store_fed_grant_delete(struct store *s, const char *id, struct store_fed_grant *out,
                       struct ztr_err *err)
{
    TRY(check_text("grant id", id, STORE_ID_MAX, true, err));
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", id);
    return in_tx(s, fed_grant_delete_body, out, err);
}

struct fed_grant_visit {
    int (*visit)(void *ctx, const struct store_fed_grant *);
    void *ctx;
};

static int
each_fed_grant(struct db_rows *st, void *ctx, struct ztr_err *err)
{
    struct fed_grant_visit *v = ctx;
    struct store_fed_grant *g = malloc(sizeof(*g));
    if (g == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int rc = read_fed_grant(st, g, err);
    if (rc == 0)
        rc = v->visit(v->ctx, g) != 0 ? 1 : 0;
    free(g);
    return rc;
}

int
store_fed_grant_list(struct store *s, const char *peer_id,
                     int (*visit)(void *ctx, const struct store_fed_grant *), void *ctx,
                     struct ztr_err *err)
{
    struct db_rows *st;
    if (peer_id != NULL)
        TRY(stmt_open(s, FED_GRANT_SELECT "WHERE peer_id = ? ORDER BY resource, tunneler",
                      ARGS(TEXT_ARG(peer_id)), &st, err));
    else
        TRY(stmt_open(s, FED_GRANT_SELECT "ORDER BY peer_id, resource, tunneler", NO_ARGS, &st,
                      err));
    struct fed_grant_visit v = {visit, ctx};
    return for_each_row(s, st, each_fed_grant, &v, err);
}

/* ---- controllers sharing the database -------------------------------------------- */

void
store_set_controller(struct store *s, const char *id)
{
    snprintf(s->controller_id, sizeof(s->controller_id), "%s", id != NULL ? id : "");
}

const char *
store_controller_self(const struct store *s)
{
    return s->controller_id;
}

bool
store_is_shared(const struct store *s)
{
    return db_engine(s->db) == DB_POSTGRES;
}

int
store_clock_s(struct store *s, int64_t *now, struct ztr_err *err)
{
    /* Controllers on several machines judge each other's beats: on one
     * clock, the database's, a controller whose own clock is off is
     * neither released while it beats nor kept alive once it stops. */
    if (!store_is_shared(s)) {
        *now = now_s(s);
        return 0;
    }
    int rc = query_int(s, "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS BIGINT)", NO_ARGS,
                       now, err);
    if (rc == 0)
        return ztr_err_set(err, ZTR_E_IO, "the database did not tell its time");
    return rc < 0 ? -1 : 0;
}

struct beat_job {
    const char *address;
    int64_t last_seen;
};

static int
beat_body(struct store *s, void *ctx, struct ztr_err *err)
{
    const struct beat_job *job = ctx;
    /* A new id at every start: rows of controllers long gone (and holding
     * nothing) would pile up. */
    TRY(stmt_exec(s,
                  "DELETE FROM controllers WHERE id <> ? AND last_seen < ? AND id NOT IN "
                  "(SELECT controller_id FROM nodes WHERE status = 1)",
                  ARGS(TEXT_ARG(s->controller_id),
                       INT_ARG(now_s(s) - STORE_CONTROLLER_FORGET_S)),
                  NULL, err));
    return stmt_exec(s,
                     "INSERT INTO controllers (id, address, started_at, last_seen) "
                     "VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                     "last_seen = excluded.last_seen, address = excluded.address",
                     ARGS(TEXT_ARG(s->controller_id), TEXT_ARG(job->address), INT_ARG(now_s(s)),
                          INT_ARG(job->last_seen)),
                     NULL, err);
}

int
store_controller_beat(struct store *s, const char *address, struct ztr_err *err)
{
    TRY(check_text("controller id", s->controller_id, STORE_ID_MAX, true, err));
    TRY(check_text("controller address", address, STORE_DETAIL_MAX, false, err));
    struct beat_job job = {or_empty(address), 0};
    TRY(store_clock_s(s, &job.last_seen, err));
    return in_tx(s, beat_body, &job, err);
}

int
store_controller_leave(struct store *s, struct ztr_err *err)
{
    /* Last seen "never": the others release its nodes at their next sweep
     * instead of after the timeout. */
    struct beat_job job = {"", 0};
    TRY(check_text("controller id", s->controller_id, STORE_ID_MAX, true, err));
    return in_tx(s, beat_body, &job, err);
}

struct controller_visit {
    int (*visit)(void *ctx, const struct store_controller *);
    void *ctx;
};

static int
each_controller(struct db_rows *st, void *ctx, struct ztr_err *err)
{
    struct controller_visit *v = ctx;
    struct store_controller c;
    memset(&c, 0, sizeof(c));
    TRY(col_text(st, 0, c.id, sizeof(c.id), err));
    TRY(col_text(st, 1, c.address, sizeof(c.address), err));
    c.started_at = db_int(st, 2);
    c.last_seen = db_int(st, 3);
    c.nodes_online = db_int(st, 4);
    return v->visit(v->ctx, &c) != 0 ? 1 : 0;
}

int
store_controller_list(struct store *s, int (*visit)(void *ctx, const struct store_controller *),
                      void *ctx, struct ztr_err *err)
{
    struct db_rows *st;
    TRY(stmt_open(s,
                  "SELECT c.id, c.address, c.started_at, c.last_seen, "
                  "(SELECT COUNT(*) FROM nodes n WHERE n.controller_id = c.id AND n.status = 1) "
                  "FROM controllers c ORDER BY c.started_at, c.id",
                  NO_ARGS, &st, err));
    struct controller_visit v = {visit, ctx};
    return for_each_row(s, st, each_controller, &v, err);
}

struct release_job {
    int64_t alive_since;
    const char *detail;       /* NULL: name the controller that stopped answering */
    struct sweep_job collect; /* the nodes released */
};

static int
release_body(struct store *s, void *ctx, struct ztr_err *err)
{
    struct release_job *job = ctx;
    struct db_rows *st;
    TRY(stmt_open(s,
                  NODE_SELECT "WHERE status = 1 AND controller_id <> ? AND controller_id NOT IN "
                              "(SELECT id FROM controllers WHERE last_seen >= ?) ORDER BY id",
                  ARGS(TEXT_ARG(s->controller_id), INT_ARG(job->alive_since)), &st, err));
    TRY(for_each_row(s, st, collect_node, &job->collect, err));
    for (size_t i = 0; i < job->collect.count; i++) {
        struct store_node *n = &job->collect.nodes[i];
        char detail[STORE_DETAIL_MAX + 1];
        if (job->detail != NULL)
            snprintf(detail, sizeof(detail), "%s", job->detail);
        else
            snprintf(detail, sizeof(detail), "OFFLINE: controller %s stopped answering",
                     n->controller_id[0] != '\0' ? n->controller_id : "(none)");
        TRY(stmt_exec(s, "UPDATE nodes SET status = 0, controller_id = '' WHERE id = ?",
                      ARGS(TEXT_ARG(n->id)), NULL, err));
        TRY(insert_event(s, "status", n->id, detail, err));
        n->status = STORE_OFFLINE;
    }
    /* A holder that was only slow still has these nodes' sessions: it
     * takes them back (store_nodes_reclaim) once it hears this. */
    if (job->collect.count > 0)
        TRY(notify(s, "released", err));
    return 0;
}

/* Ids asked about per statement: one prepared shape, padded by repeating
 * the last id. */
#define RECLAIM_CHUNK 32
#define RECLAIM_MARKS8 "?, ?, ?, ?, ?, ?, ?, ?"

struct reclaim_job {
    const char *const *ids;
    size_t count;
    struct sweep_job found; /* the nodes taken back */
};

static int
reclaim_body(struct store *s, void *ctx, struct ztr_err *err)
{
    struct reclaim_job *job = ctx;
    for (size_t first = 0; first < job->count; first += RECLAIM_CHUNK) {
        struct db_arg args[RECLAIM_CHUNK];
        for (size_t i = 0; i < RECLAIM_CHUNK; i++) {
            size_t at = first + i < job->count ? first + i : job->count - 1;
            args[i] = (struct db_arg)TEXT_ARG(job->ids[at]);
        }
        struct db_rows *st;
        TRY(stmt_open(s,
                      NODE_SELECT "WHERE status = 0 AND revoked = 0 AND id IN (" RECLAIM_MARKS8
                                  ", " RECLAIM_MARKS8 ", " RECLAIM_MARKS8 ", " RECLAIM_MARKS8
                                  ") ORDER BY id",
                      args, RECLAIM_CHUNK, &st, err));
        TRY(for_each_row(s, st, collect_node, &job->found, err));
    }
    char detail[STORE_DETAIL_MAX + 1];
    snprintf(detail, sizeof(detail), "ONLINE: its session is live on controller %s",
             s->controller_id);
    for (size_t i = 0; i < job->found.count; i++) {
        struct store_node *n = &job->found.nodes[i];
        TRY(stmt_exec(s, "UPDATE nodes SET status = 1, controller_id = ? WHERE id = ?",
                      ARGS(TEXT_ARG(s->controller_id), TEXT_ARG(n->id)), NULL, err));
        TRY(insert_event(s, "status", n->id, detail, err));
        n->status = STORE_ONLINE;
        snprintf(n->controller_id, sizeof(n->controller_id), "%s", s->controller_id);
    }
    return 0;
}

int
store_nodes_reclaim(struct store *s, const char *const *ids, size_t count,
                    int (*visit)(void *ctx, const struct store_node *), void *ctx,
                    struct ztr_err *err)
{
    if (count == 0)
        return 0;
    for (size_t i = 0; i < count; i++)
        TRY(check_text("node id", ids[i], STORE_ID_MAX, true, err));
    struct reclaim_job job = {.ids = ids, .count = count};
    return visit_collected(&job.found, in_tx(s, reclaim_body, &job, err), visit, ctx);
}

int
store_nodes_release(struct store *s, int64_t alive_since, const char *detail,
                    int (*visit)(void *ctx, const struct store_node *), void *ctx,
                    struct ztr_err *err)
{
    struct release_job job = {.alive_since = alive_since, .detail = detail};
    return visit_collected(&job.collect, in_tx(s, release_body, &job, err), visit, ctx);
}

/* ---- copying a store into another (controller store migrate) ------------------------ */

/* Each table in an order its foreign keys accept, with its columns' kinds:
 * T text, I integer, B blob. Sessions do not move: nodes arrive OFFLINE
 * and held by nobody. */
static const struct copied_table {
    const char *name;
    const char *columns;
    const char *kinds;
} copied_tables[] = {
    {"resources", "name, description, created_at", "TTI"},
    {"nodes",
     "id, name, role, spiffe_id, addresses, 0, revoked, last_seen, cert_serial, cert_not_after, "
     "enrolled_at, cert_key, prev_cert_serial, prev_cert_key, prev_cert_until, "
     "allowed_addresses, counters, counters_at, last_renewed_at, '', drain, drain_since, "
     "drain_deadline",
     "TTTTTIIITIITTTITTIITIII"},
    {"tokens",
     "id, digest, role, name, name_is_prefix, uses_left, expires_at, created_at, replace_node, "
     "addresses",
     "TBTTIIIIIT"},
    {"grants", "tunneler, resource, created_at", "TTI"},
    {"revocations", "id, node_id, serial, reason, at", "ITTTI"},
    {"events", "id, at, kind, node_id, detail, source", "IITTTT"},
    {"certificates", "node_id, serial, key, issued_at", "TTTI"},
    {"resource_connectors", "resource, connector_name, created_at", "TTI"},
    {"peers",
     "id, name, trust_domain, url, direction, state, token_digest, token_expires_at, bundle, "
     "bundle_version, last_heartbeat_at, reason, resume_state, created_at, updated_at, "
     "remote_grants",
     "TTTTTTBITIITTIIT"},
    {"fed_grants", "id, peer_id, resource, tunneler, source_cidrs, expires_at, created_at",
     "TTTTTII"},
    {"token_uses", "token_id, key, node_id, used_at", "TTTI"},
};

#define COPY_COLUMNS_MAX 24

/* The target's own column names: the source's list with the two
 * constants (a node's status and holder) named. */
static const char *const target_columns[] = {
    "name, description, created_at",
    "id, name, role, spiffe_id, addresses, status, revoked, last_seen, cert_serial, "
    "cert_not_after, enrolled_at, cert_key, prev_cert_serial, prev_cert_key, prev_cert_until, "
    "allowed_addresses, counters, counters_at, last_renewed_at, controller_id, drain, "
    "drain_since, drain_deadline",
};

struct copy_job {
    struct store *from;
    struct store_copy_counts *counts;
};

static int
copy_table(struct store *to, struct store *from, const struct copied_table *t, size_t index,
           int64_t *rows, struct ztr_err *err)
{
    size_t n = strlen(t->kinds);
    char select[1024], insert[1536], marks[3 * COPY_COLUMNS_MAX] = "";
    for (size_t i = 0; i < n; i++)
        strcat(marks, i == 0 ? "?" : ", ?");
    snprintf(select, sizeof(select), "SELECT %s FROM %s", t->columns, t->name);
    snprintf(insert, sizeof(insert), "INSERT INTO %s (%s) VALUES (%s)", t->name,
             index < sizeof(target_columns) / sizeof(target_columns[0]) ? target_columns[index]
                                                                       : t->columns,
             marks);
    struct db_rows *st;
    TRY(stmt_open(from, select, NO_ARGS, &st, err));
    int rc;
    *rows = 0;
    while ((rc = stmt_step(from, st, err)) == 1) {
        struct db_arg args[COPY_COLUMNS_MAX];
        for (size_t i = 0; i < n; i++) {
            memset(&args[i], 0, sizeof(args[i]));
            if (t->kinds[i] == 'I') {
                args[i].kind = DB_ARG_INT;
                args[i].num = db_int(st, (int)i);
            } else if (t->kinds[i] == 'B') {
                size_t len = 0;
                args[i].kind = DB_ARG_BLOB;
                args[i].blob = db_is_null(st, (int)i) ? NULL : db_blob(st, (int)i, &len);
                args[i].blob_len = (int)len;
                if (args[i].blob == NULL) { /* SQL NULL */
                    args[i].kind = DB_ARG_TEXT;
                    args[i].text = NULL;
                }
            } else {
                args[i].kind = DB_ARG_TEXT;
                args[i].text = db_text(st, (int)i);
            }
        }
        if (stmt_exec(to, insert, args, n, NULL, err) != 0) {
            rc = -1;
            break;
        }
        (*rows)++;
    }
    db_rows_close(st);
    if (rc < 0)
        return ztr_err_wrap(err, "copying %s", t->name);
    return 0;
}

static int
copy_body(struct store *to, void *ctx, struct ztr_err *err)
{
    struct copy_job *job = ctx;
    int64_t existing = 0;
    if (query_int(to, "SELECT count(*) FROM nodes", NO_ARGS, &existing, err) < 0)
        return -1;
    int64_t tokens = 0;
    if (query_int(to, "SELECT count(*) FROM tokens", NO_ARGS, &tokens, err) < 0)
        return -1;
    if (existing + tokens > 0)
        return ztr_err_set(err, ZTR_E_INVALID,
                           "the target already holds %lld nodes and %lld tokens: copy into an "
                           "empty store only", (long long)existing, (long long)tokens);
    size_t count = sizeof(copied_tables) / sizeof(copied_tables[0]);
    for (size_t i = 0; i < count && i < STORE_COPY_TABLES_MAX; i++) {
        snprintf(job->counts->table[i], sizeof(job->counts->table[i]), "%s", copied_tables[i].name);
        TRY(copy_table(to, job->from, &copied_tables[i], i, &job->counts->rows[i], err));
        int64_t source = 0, target = 0;
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", copied_tables[i].name);
        if (query_int(job->from, sql, NO_ARGS, &source, err) < 0 ||
            query_int(to, sql, NO_ARGS, &target, err) < 0)
            return -1;
        if (source != target)
            return ztr_err_set(err, ZTR_E_IO, "%s: %lld rows in the source, %lld copied",
                               copied_tables[i].name, (long long)source, (long long)target);
    }
    job->counts->tables = count;
    int64_t version = store_allowlist_version(job->from);
    TRY(stmt_exec(to, "UPDATE meta SET value = ? WHERE key = 'allowlist_version'",
                  ARGS(INT_ARG(version)), NULL, err));
    /* Rows came with their ids: new ones continue after them. */
    if (db_engine(to->db) == DB_POSTGRES) {
        TRY(stmt_exec(to,
                      "SELECT setval(pg_get_serial_sequence('events', 'id'), "
                      "(SELECT COALESCE(max(id), 0) + 1 FROM events), false)",
                      NO_ARGS, NULL, err));
        TRY(stmt_exec(to,
                      "SELECT setval(pg_get_serial_sequence('revocations', 'id'), "
                      "(SELECT COALESCE(max(id), 0) + 1 FROM revocations), false)",
                      NO_ARGS, NULL, err));
    }
    return 0;
}

int
store_copy(struct store *from, struct store *to, struct store_copy_counts *counts,
           struct ztr_err *err)
{
    memset(counts, 0, sizeof(*counts));
    /* A controller still writing to the source would make the copy a
     * moment of nothing in particular. */
    int64_t beat = 0;
    if (query_int(from, "SELECT COALESCE(max(last_seen), 0) FROM controllers", NO_ARGS, &beat,
                  err) < 0)
        return -1;
    int64_t now;
    TRY(store_clock_s(from, &now, err));
    if (beat > now - STORE_COPY_QUIET_S)
        return ztr_err_set(err, ZTR_E_INVALID,
                           "a controller used the source %llds ago: stop every controller on it "
                           "first", (long long)(now - beat));
    struct copy_job job = {from, counts};
    return in_tx(to, copy_body, &job, err);
}

/* ---- the CAs of controllers sharing the database ---------------------------------- */

static int
meta_value(struct store *s, const char *key, int64_t *value, struct ztr_err *err)
{
    int found = query_int(s, "SELECT value FROM meta WHERE key = ?", ARGS(TEXT_ARG(key)), value,
                          err);
    if (found < 0)
        return -1;
    if (found == 0)
        return ztr_err_set(err, ZTR_E_IO, "%s is missing from meta", key);
    return 0;
}

int
store_ca_get(struct store *s, struct store_ca_set *out, struct ztr_err *err)
{
    memset(out, 0, sizeof(*out));
    int64_t signer = 0;
    TRY(meta_value(s, "ca_version", &out->version, err));
    TRY(meta_value(s, "ca_signer", &signer, err));
    out->signer = (int)signer;
    struct db_rows *st;
    TRY(stmt_open(s, "SELECT number, cert_pem, key_sealed, retire_at FROM cas ORDER BY number",
                  NO_ARGS, &st, err));
    int rc;
    while ((rc = stmt_step(s, st, err)) == 1) {
        if (out->count == STORE_CA_MAX) {
            rc = ztr_err_set(err, ZTR_E_LIMIT, "more than %d CAs stored", STORE_CA_MAX);
            break;
        }
        struct store_ca *ca = &out->cas[out->count];
        ca->number = (int)db_int(st, 0);
        size_t len = 0;
        const void *sealed = db_blob(st, 2, &len);
        if (col_text(st, 1, ca->cert_pem, sizeof(ca->cert_pem), err) != 0) {
            rc = -1;
            break;
        }
        if (sealed == NULL || len > sizeof(ca->key_sealed)) {
            rc = ztr_err_set(err, ZTR_E_INVALID, "stored CA %d has no usable sealed key",
                             ca->number);
            break;
        }
        memcpy(ca->key_sealed, sealed, len);
        ca->key_sealed_len = len;
        ca->retire_at = db_int(st, 3);
        out->count++;
    }
    db_rows_close(st);
    return rc < 0 ? -1 : 0;
}

static int
ca_put_body(struct store *s, void *ctx, struct ztr_err *err)
{
    const struct store_ca_set *set = ctx;
    int changes = 0;
    /* Whoever changed the set since the caller read it wins; the caller
     * reads again. */
    TRY(stmt_exec(s, "UPDATE meta SET value = ? WHERE key = 'ca_version' AND value = ?",
                  ARGS(INT_ARG(set->version), INT_ARG(set->version - 1)), &changes, err));
    if (changes != 1)
        return ztr_err_set(err, STORE_E_CA_CHANGED,
                           "the CA set changed meanwhile (through another controller)");
    TRY(stmt_exec(s, "UPDATE meta SET value = ? WHERE key = 'ca_signer'",
                  ARGS(INT_ARG(set->signer)), NULL, err));
    TRY(stmt_exec(s, "DELETE FROM cas", NO_ARGS, NULL, err));
    for (size_t i = 0; i < set->count; i++) {
        const struct store_ca *ca = &set->cas[i];
        TRY(stmt_exec(s,
                      "INSERT INTO cas (number, cert_pem, key_sealed, retire_at) "
                      "VALUES (?, ?, ?, ?)",
                      ARGS(INT_ARG(ca->number), TEXT_ARG(ca->cert_pem),
                           BLOB_ARG(ca->key_sealed, (int)ca->key_sealed_len),
                           INT_ARG(ca->retire_at)),
                      NULL, err));
    }
    return notify(s, "ca", err);
}

int
store_ca_put(struct store *s, const struct store_ca_set *set, struct ztr_err *err)
{
    if (set->count == 0 || set->count > STORE_CA_MAX || set->version < 1)
        return ztr_err_set(err, ZTR_E_INVALID, "a CA set of %zu CAs at version %lld", set->count,
                           (long long)set->version);
    return in_tx(s, ca_put_body, (void *)set, err);
}
