/*
 * The SQL engines the controller's store runs on: SQLite (one machine, the
 * default) and PostgreSQL (controllers in a cluster), behind one small
 * interface so that store.c holds every statement once.
 *
 * Statements are written once, in the SQL both engines take, with `?`
 * (or `?N`, the Nth argument) placeholders; every value is a bound
 * argument. What differs — opening, the schema version's home, the
 * migrations, transactions' locking — is here or named by db_engine().
 *
 * A handle is one connection, used from one thread. Results are read
 * through a cursor (db_rows) that stays valid until db_rows_close; a
 * cursor's text and blob pointers until the next db_next or the close.
 */
#ifndef ZTR_CONTROLLER_DB_H
#define ZTR_CONTROLLER_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

enum db_engine { DB_SQLITE, DB_POSTGRES };

enum db_arg_kind { DB_ARG_TEXT, DB_ARG_INT, DB_ARG_BLOB };

struct db_arg {
    enum db_arg_kind kind;
    const char *text; /* NULL binds SQL NULL */
    int64_t num;
    const void *blob;
    int blob_len;
};

#define TEXT_ARG(v) {.kind = DB_ARG_TEXT, .text = (v)}
#define INT_ARG(v) {.kind = DB_ARG_INT, .num = (v)}
#define BLOB_ARG(p, n) {.kind = DB_ARG_BLOB, .blob = (p), .blob_len = (n)}
/* Expands to the two parameters `args, count`. */
#define ARGS(...)                                \
    (const struct db_arg[]){__VA_ARGS__},        \
        sizeof((const struct db_arg[]){__VA_ARGS__}) / sizeof(struct db_arg)
#define NO_ARGS NULL, 0

struct db;
struct db_rows;

/* SQLite: a file path (created 0600), "" or ":memory:", or
 * "sqlite:///abs/path". PostgreSQL: "postgres://user@host:port/dbname"
 * or "postgresql://..." (libpq's URI form); the password never in it:
 * libpq reads PGPASSWORD or PGPASSFILE (docs/OPERATIONS.md). */
int db_open(const char *url, struct db **out, struct ztr_err *err);
void db_close(struct db *db);
enum db_engine db_engine(const struct db *db);
/* url with a password, if it holds one, replaced by *** (for messages). */
void db_url_redacted(const char *url, char *out, size_t cap);
/* Whether url names PostgreSQL. */
bool db_url_is_postgres(const char *url);

/* Runs sql; *rows is a cursor over its result (close it). */
int db_query(struct db *db, const char *sql, const struct db_arg *args, size_t count,
             struct db_rows **rows, struct ztr_err *err);
/* 1: a row is current, 0: no more, -1: error. */
int db_next(struct db_rows *rows, struct ztr_err *err);
void db_rows_close(struct db_rows *rows);
bool db_is_null(const struct db_rows *rows, int col);
int64_t db_int(const struct db_rows *rows, int col);
/* NULL for SQL NULL. */
const char *db_text(const struct db_rows *rows, int col);
size_t db_text_len(const struct db_rows *rows, int col);
const void *db_blob(const struct db_rows *rows, int col, size_t *len);
const char *db_column_name(const struct db_rows *rows, int col);

/* Runs sql for its effect; *changes (optional) gets the rows it changed. */
int db_exec(struct db *db, const char *sql, const struct db_arg *args, size_t count,
            int64_t *changes, struct ztr_err *err);
/* Several statements without arguments (a migration). */
int db_exec_script(struct db *db, const char *script, struct ztr_err *err);

/* A write transaction: SQLite takes the write lock at BEGIN (BEGIN
 * IMMEDIATE), PostgreSQL locks rows as statements touch them. */
int db_begin(struct db *db, struct ztr_err *err);
int db_commit(struct db *db, struct ztr_err *err);
/* Harmless outside a transaction. */
void db_rollback(struct db *db);

/* Whether the last failure was a constraint (unique, foreign key, check). */
bool db_constraint_failed(const struct db *db);

/* Why the last call failed when the engine, not the statement, was at
 * fault: the database was locked past the busy timeout, the disk is full,
 * or it failed to read or write. Such a failure says nothing about the
 * change; the same change may succeed once the fault clears. */
enum db_fault { DB_FAULT_NONE, DB_FAULT_BUSY, DB_FAULT_FULL, DB_FAULT_IO, DB_FAULT_COUNT };
enum db_fault db_fault(const struct db *db);
/* The engine's own words for the last fault ("database or disk is full"). */
const char *db_fault_reason(const struct db *db);
/* SQLite: how long a statement waits for another connection's lock before
 * it fails "database is locked" (db_open sets 2 s); PostgreSQL: ignored. */
void db_set_busy_timeout(struct db *db, int ms);
/* Whether the last db_commit wrote to the disk: SQLite skips a commit
 * whose rows came out unchanged (PostgreSQL: always true). */
bool db_commit_wrote(const struct db *db);
/* "busy", "full", "io" (metric labels, log fields); "" for none. */
const char *db_fault_name(enum db_fault fault);

/* The schema version: SQLite's user_version, PostgreSQL's
 * ztr_schema_version table. Set only inside a transaction. */
int db_schema_version(struct db *db, int64_t *version, struct ztr_err *err);
int db_set_schema_version(struct db *db, int64_t version, struct ztr_err *err);
/* Engine settings that write (SQLite: WAL, synchronous, foreign keys), run
 * once the store has checked the schema version. */
int db_configure(struct db *db, struct ztr_err *err);
/* PostgreSQL: serialises migrations of controllers starting at once (a
 * transaction-scoped advisory lock); SQLite: BEGIN IMMEDIATE did. */
int db_lock_schema(struct db *db, struct ztr_err *err);

/* Changes made through one controller reach the others (PostgreSQL's
 * LISTEN/NOTIFY; on SQLite, with one controller, these do nothing and the
 * socket is -1). A notification sent inside a transaction is delivered
 * when it commits, to every listener, the sender included. */
int db_listen(struct db *db, const char *channel, struct ztr_err *err);
int db_notify(struct db *db, const char *channel, const char *payload, struct ztr_err *err);
/* The connection's socket, to wait for notifications on; -1 for none. */
int db_socket(const struct db *db);
/* Reads what arrived and calls each(ctx, payload) per notification;
 * -1 when the connection is lost. */
int db_notifications(struct db *db, void (*each)(void *ctx, const char *payload), void *ctx,
                     struct ztr_err *err);

#endif
