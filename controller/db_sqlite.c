/* SQLite under db.h: one machine's store (STATE_DIR/controller.db).
 *
 * Every write transaction is BEGIN IMMEDIATE, which takes the write lock up
 * front: a second writer (another handle or process) then waits at BEGIN
 * under busy_timeout, instead of reading first and failing when it tries to
 * upgrade, which WAL refuses once someone else has committed in between
 * (SQLITE_BUSY_SNAPSHOT, no retry). */
#include "controller/db_internal.h"

#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Spliced into the PRAGMA. Short: a write waits on the controller's event
 * loop, which serves every session meanwhile (store.h STORE_BUSY_MS). */
#define BUSY_TIMEOUT_MS "2000"

/* WAL checkpoints, the only writes that fsync with synchronous=NORMAL, run
 * on a thread of their own with a connection of its own (PASSIVE: never
 * in a writer's way), instead of inside whichever commit crossed SQLite's
 * automatic checkpoint threshold: that commit runs on the controller's
 * event loop, and a slow disk's fsync would hold every session there. The
 * threshold is SQLite's default: a commit that leaves this many frames in
 * the WAL wakes the thread. */
#define CHECKPOINT_FRAMES 1000

struct checkpointer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool started, stop, due;
    char *path;
};

struct sqlite_db {
    struct db base;
    sqlite3 *conn;
    bool in_memory;
    char *path;
    struct checkpointer checkpoints;
};

struct sqlite_rows {
    struct db_rows base;
    struct sqlite_db *db;
    sqlite3_stmt *st;
};

static const struct db_ops sqlite_ops;

/* The failures that are the disk's or another process's, not the
 * statement's (db_fault). */
static void
note_fault(struct sqlite_db *db, int rc)
{
    enum db_fault fault;
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        fault = DB_FAULT_BUSY;
        break;
    case SQLITE_FULL:
        fault = DB_FAULT_FULL;
        break;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PROTOCOL:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        fault = DB_FAULT_IO;
        break;
    default:
        return;
    }
    db->base.fault = fault;
    snprintf(db->base.fault_reason, sizeof(db->base.fault_reason), "%s",
             sqlite3_errmsg(db->conn));
}

static int
fail(struct sqlite_db *db, const char *sql, struct ztr_err *err)
{
    int rc = sqlite3_extended_errcode(db->conn);
    int code;
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        code = ZTR_E_INVALID;
        db->base.constraint_failed = true;
        break;
    case SQLITE_NOMEM:
        code = ZTR_E_NOMEM;
        break;
    case SQLITE_TOOBIG:
        code = ZTR_E_LIMIT;
        break;
    default:
        code = ZTR_E_IO;
        break;
    }
    note_fault(db, rc);
    return ztr_err_set(err, code, "sqlite: %s (in \"%.*s\")", sqlite3_errmsg(db->conn),
                       DB_SQL_IN_ERRORS, sql != NULL ? sql : "");
}

static int
bind_arg(sqlite3_stmt *st, int index, const struct db_arg *arg)
{
    switch (arg->kind) {
    case DB_ARG_TEXT:
        return sqlite3_bind_text(st, index, arg->text, -1, SQLITE_TRANSIENT);
    case DB_ARG_INT:
        return sqlite3_bind_int64(st, index, arg->num);
    case DB_ARG_BLOB:
        return sqlite3_bind_blob(st, index, arg->blob, arg->blob_len, SQLITE_TRANSIENT);
    }
    return SQLITE_MISUSE;
}

static int
prepare(struct sqlite_db *db, const char *sql, const struct db_arg *args, size_t count,
        sqlite3_stmt **out, struct ztr_err *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL) != SQLITE_OK)
        return fail(db, sql, err);
    for (size_t i = 0; i < count; i++) {
        if (bind_arg(st, (int)i + 1, &args[i]) != SQLITE_OK) {
            fail(db, sql, err);
            sqlite3_finalize(st);
            return -1;
        }
    }
    *out = st;
    return 0;
}

static int
sq_query(struct db *base, const char *sql, const struct db_arg *args, size_t count,
         struct db_rows **out, struct ztr_err *err)
{
    struct sqlite_db *db = (struct sqlite_db *)base;
    struct sqlite_rows *rows = calloc(1, sizeof(*rows));
    if (rows == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    if (prepare(db, sql, args, count, &rows->st, err) != 0) {
        free(rows);
        return -1;
    }
    rows->base.ops = &sqlite_ops;
    rows->db = db;
    *out = &rows->base;
    return 0;
}

/* Rows are handed out while the statement runs (no copy of the whole
 * table); a visitor may still read and write through the same handle, as
 * SQLite lets one connection write while it reads. */
static int
sq_next(struct db_rows *base, struct ztr_err *err)
{
    struct sqlite_rows *rows = (struct sqlite_rows *)base;
    int rc = sqlite3_step(rows->st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return fail(rows->db, sqlite3_sql(rows->st), err);
}

static void
sq_rows_close(struct db_rows *base)
{
    struct sqlite_rows *rows = (struct sqlite_rows *)base;
    sqlite3_finalize(rows->st);
    free(rows);
}

static bool
sq_is_null(const struct db_rows *base, int col)
{
    return sqlite3_column_type(((const struct sqlite_rows *)base)->st, col) == SQLITE_NULL;
}

static int64_t
sq_int(const struct db_rows *base, int col)
{
    return sqlite3_column_int64(((const struct sqlite_rows *)base)->st, col);
}

static const char *
sq_text(const struct db_rows *base, int col)
{
    return (const char *)sqlite3_column_text(((const struct sqlite_rows *)base)->st, col);
}

static size_t
sq_text_len(const struct db_rows *base, int col)
{
    return (size_t)sqlite3_column_bytes(((const struct sqlite_rows *)base)->st, col);
}

static const void *
sq_blob(const struct db_rows *base, int col, size_t *len)
{
    sqlite3_stmt *st = ((const struct sqlite_rows *)base)->st;
    const void *blob = sqlite3_column_blob(st, col);
    *len = (size_t)sqlite3_column_bytes(st, col);
    return blob;
}

static const char *
sq_column_name(const struct db_rows *base, int col)
{
    return sqlite3_column_name(((const struct sqlite_rows *)base)->st, col);
}

static int
sq_exec(struct db *base, const char *sql, const struct db_arg *args, size_t count,
        int64_t *changes, struct ztr_err *err)
{
    struct sqlite_db *db = (struct sqlite_db *)base;
    sqlite3_stmt *st;
    TRY(prepare(db, sql, args, count, &st, err));
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        fail(db, sql, err);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;
    if (changes != NULL)
        *changes = sqlite3_changes(db->conn);
    return 0;
}

static int
sq_exec_script(struct db *base, const char *script, struct ztr_err *err)
{
    struct sqlite_db *db = (struct sqlite_db *)base;
    char *msg = NULL;
    if (sqlite3_exec(db->conn, script, NULL, NULL, &msg) != SQLITE_OK) {
        note_fault(db, sqlite3_extended_errcode(db->conn));
        ztr_err_set(err, ZTR_E_IO, "%s", msg != NULL ? msg : sqlite3_errmsg(db->conn));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int
sq_begin(struct db *base, struct ztr_err *err)
{
    return sq_exec(base, "BEGIN IMMEDIATE", NO_ARGS, NULL, err);
}

/* Pages written to the database or its WAL by this connection so far. */
static int
pages_written(struct sqlite_db *db)
{
    int current = 0, highest = 0;
    sqlite3_db_status(db->conn, SQLITE_DBSTATUS_CACHE_WRITE, &current, &highest, 0);
    return current;
}

static int
sq_commit(struct db *base, struct ztr_err *err)
{
    struct sqlite_db *db = (struct sqlite_db *)base;
    int before = pages_written(db);
    TRY(sq_exec(base, "COMMIT", NO_ARGS, NULL, err));
    base->commit_wrote = pages_written(db) != before;
    return 0;
}

static void
sq_rollback(struct db *base)
{
    struct sqlite_db *db = (struct sqlite_db *)base;
    /* Some errors (SQLITE_FULL, ...) already rolled back; a second ROLLBACK
     * would only add an error of its own. */
    if (!sqlite3_get_autocommit(db->conn))
        sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
}

static int
query_one_int(struct sqlite_db *db, const char *sql, int64_t *out, struct ztr_err *err)
{
    sqlite3_stmt *st;
    TRY(prepare(db, sql, NO_ARGS, &st, err));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        ztr_err_set(err, ZTR_E_IO, "sqlite: \"%s\" returned nothing", sql);
    else
        fail(db, sql, err);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int
sq_schema_version(struct db *base, int64_t *version, struct ztr_err *err)
{
    return query_one_int((struct sqlite_db *)base, "PRAGMA user_version", version, err);
}

static int
sq_set_schema_version(struct db *base, int64_t version, struct ztr_err *err)
{
    /* PRAGMA takes no bound parameters; the number is the store's own. */
    char sql[48];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %lld", (long long)version);
    return sq_exec(base, sql, NO_ARGS, NULL, err);
}

static int
sq_lock_schema(struct db *base, struct ztr_err *err)
{
    (void)base;
    (void)err;
    return 0; /* BEGIN IMMEDIATE holds the file's write lock already */
}

static void *
checkpoint_main(void *arg)
{
    struct checkpointer *cp = arg;
    sqlite3 *conn = NULL;
    if (sqlite3_open_v2(cp->path, &conn, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        log_warn("store checkpoints not started", "error=\"%s\"",
                 conn != NULL ? sqlite3_errmsg(conn) : "out of memory");
        sqlite3_close_v2(conn);
        conn = NULL;
    }
    /* A connection learns the file is in WAL mode when it first reads it;
     * until then a checkpoint is a no-op. */
    if (conn != NULL)
        sqlite3_exec(conn, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
    bool failing = false;
    pthread_mutex_lock(&cp->lock);
    while (!cp->stop) {
        if (!cp->due)
            pthread_cond_wait(&cp->wake, &cp->lock);
        if (cp->stop || !cp->due)
            continue;
        cp->due = false;
        if (conn == NULL)
            continue;
        pthread_mutex_unlock(&cp->lock);
        int rc = sqlite3_wal_checkpoint_v2(conn, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        /* The WAL keeps every commit meanwhile; logged when it starts and
         * stops failing, not at every try. */
        if (rc != SQLITE_OK && rc != SQLITE_BUSY && !failing)
            log_warn("store checkpoint failed", "error=\"%s\"", sqlite3_errmsg(conn));
        else if (rc == SQLITE_OK && failing)
            log_info("store checkpoints work again", NULL);
        failing = rc != SQLITE_OK && rc != SQLITE_BUSY;
        pthread_mutex_lock(&cp->lock);
    }
    pthread_mutex_unlock(&cp->lock);
    sqlite3_close_v2(conn);
    return NULL;
}

static int
checkpointer_start(struct checkpointer *cp, const char *path, struct ztr_err *err)
{
    if (pthread_cond_init(&cp->wake, NULL) != 0)
        return ztr_err_set(err, ZTR_E_NOMEM, "cannot start the checkpoint thread");
    pthread_mutex_init(&cp->lock, NULL);
    cp->path = strdup(path);
    if (cp->path == NULL || pthread_create(&cp->thread, NULL, checkpoint_main, cp) != 0) {
        free(cp->path);
        cp->path = NULL;
        pthread_cond_destroy(&cp->wake);
        pthread_mutex_destroy(&cp->lock);
        return ztr_err_set(err, ZTR_E_NOMEM, "cannot start the checkpoint thread");
    }
    cp->started = true;
    return 0;
}

/* SQLite's WAL hook, after each commit on the main connection: only asks
 * (the lock is held by the thread only between checkpoints). */
static int
wal_committed(void *ctx, sqlite3 *conn, const char *name, int frames)
{
    (void)conn;
    (void)name;
    struct checkpointer *cp = ctx;
    if (frames >= CHECKPOINT_FRAMES) {
        pthread_mutex_lock(&cp->lock);
        cp->due = true;
        pthread_cond_signal(&cp->wake);
        pthread_mutex_unlock(&cp->lock);
    }
    return SQLITE_OK;
}

static void
checkpointer_stop(struct checkpointer *cp)
{
    if (!cp->started)
        return;
    pthread_mutex_lock(&cp->lock);
    cp->stop = true;
    pthread_cond_signal(&cp->wake);
    pthread_mutex_unlock(&cp->lock);
    pthread_join(cp->thread, NULL);
    pthread_cond_destroy(&cp->wake);
    pthread_mutex_destroy(&cp->lock);
    free(cp->path);
    cp->started = false;
}

static void
sq_close(struct db *base)
{
    struct sqlite_db *db = (struct sqlite_db *)base;
    checkpointer_stop(&db->checkpoints);
    /* Folds the WAL back into the database so that at rest the state is the
     * one file (what a backup that copies only it would expect). Best
     * effort: a reader on another handle may keep part of the WAL alive. */
    sqlite3_exec(db->conn, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    sqlite3_close_v2(db->conn);
    free(db->path);
    free(db);
}

static int sq_configure(struct db *base, struct ztr_err *err);

static void
sq_set_busy_timeout(struct db *base, int ms)
{
    sqlite3_busy_timeout(((struct sqlite_db *)base)->conn, ms);
}

static const struct db_ops sqlite_ops = {
    .configure = sq_configure,
    .set_busy_timeout = sq_set_busy_timeout,
    .query = sq_query,
    .next = sq_next,
    .rows_close = sq_rows_close,
    .is_null = sq_is_null,
    .integer = sq_int,
    .text = sq_text,
    .text_len = sq_text_len,
    .blob = sq_blob,
    .column_name = sq_column_name,
    .exec = sq_exec,
    .exec_script = sq_exec_script,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .schema_version = sq_schema_version,
    .set_schema_version = sq_set_schema_version,
    .lock_schema = sq_lock_schema,
    .close = sq_close,
};

static bool
in_memory(const char *path)
{
    return path[0] == '\0' || strcmp(path, ":memory:") == 0;
}

/* Creates the file 0600 before SQLite would create it 0644 (less umask): it
 * holds token digests and the node inventory, and the -wal and -shm files
 * SQLite makes later copy the database file's mode. */
static int
create_private(const char *path, struct ztr_err *err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return ztr_err_set(err, ZTR_E_IO, "open: %s", strerror(errno));
    close(fd);
    return 0;
}

static int
sq_configure(struct db *base, struct ztr_err *err)
{
    struct sqlite_db *db = (struct sqlite_db *)base;
    sqlite3_stmt *st;
    TRY(prepare(db, "PRAGMA journal_mode = WAL", NO_ARGS, &st, err));
    char mode[16] = "";
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
        snprintf(mode, sizeof(mode), "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (strcmp(mode, "wal") != 0 && !(db->in_memory && strcmp(mode, "memory") == 0))
        return ztr_err_set(err, ZTR_E_IO, "cannot switch to WAL mode (journal mode is %s)",
                           mode);
    /* With WAL, NORMAL only risks the last commits on power loss, never
     * corruption; FULL would fsync on every commit. */
    TRY(sq_exec(&db->base, "PRAGMA synchronous = NORMAL", NO_ARGS, NULL, err));
    /* Per connection, and silently ignored by builds without foreign key
     * support: check that it took. */
    TRY(sq_exec(&db->base, "PRAGMA foreign_keys = ON", NO_ARGS, NULL, err));
    int64_t on = 0;
    TRY(query_one_int(db, "PRAGMA foreign_keys", &on, err));
    if (on != 1)
        return ztr_err_set(err, ZTR_E_IO, "this SQLite does not enforce foreign keys");
    if (db->in_memory || db->checkpoints.started)
        return 0;
    TRY(checkpointer_start(&db->checkpoints, db->path, err));
    /* Replaces SQLite's automatic checkpoint on this connection. */
    sqlite3_wal_hook(db->conn, wal_committed, &db->checkpoints);
    return 0;
}

/* Only what opening needs: the schema version is read (and a newer one
 * refused) by the store before anything writes. */
int
db_sqlite_open(const char *path, struct db **out, struct ztr_err *err)
{
    *out = NULL;
    if (!in_memory(path) && create_private(path, err) != 0)
        return -1;
    struct sqlite_db *db = calloc(1, sizeof(*db));
    if (db == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    db->base.ops = &sqlite_ops;
    db->base.engine = DB_SQLITE;
    db->in_memory = in_memory(path);
    db->path = strdup(path);
    if (db->path == NULL) {
        free(db);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    int rc = sqlite3_open_v2(path, &db->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        ztr_err_set(err, rc == SQLITE_NOMEM ? ZTR_E_NOMEM : ZTR_E_IO, "sqlite: %s",
                    db->conn != NULL ? sqlite3_errmsg(db->conn) : sqlite3_errstr(rc));
        sqlite3_close_v2(db->conn);
        free(db->path);
        free(db);
        return -1;
    }
    sqlite3_extended_result_codes(db->conn, 1);
    /* busy_timeout first: reading the version may wait for a writer. */
    if (sq_exec(&db->base, "PRAGMA busy_timeout = " BUSY_TIMEOUT_MS, NO_ARGS, NULL, err) != 0) {
        sqlite3_close_v2(db->conn);
        free(db->path);
        free(db);
        return -1;
    }
    *out = &db->base;
    return 0;
}

