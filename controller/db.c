/* The engine-neutral half of db.h: which engine a URL names, and the calls
 * handed to it. */
#include "controller/db_internal.h"

#include <stdio.h>
#include <string.h>

bool
db_url_is_postgres(const char *url)
{
    return url != NULL &&
           (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0);
}

static void
clear_failure(struct db *db)
{
    db->constraint_failed = false;
    db->fault = DB_FAULT_NONE;
    db->fault_reason[0] = '\0';
}

int
db_open(const char *url, struct db **out, struct ztr_err *err)
{
    *out = NULL;
    if (url == NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "no database named");
    if (db_url_is_postgres(url))
        return db_pg_open(url, out, err);
    if (strncmp(url, "sqlite://", 9) == 0)
        return db_sqlite_open(url + 9, out, err);
    if (strstr(url, "://") != NULL)
        return ztr_err_set(err, ZTR_E_INVALID,
                           "unknown database URL \"%.64s\": expected sqlite:///PATH or "
                           "postgres://USER@HOST:PORT/DBNAME", url);
    return db_sqlite_open(url, out, err);
}

void
db_close(struct db *db)
{
    if (db != NULL)
        db->ops->close(db);
}

enum db_engine
db_engine(const struct db *db)
{
    return db->engine;
}

int
db_query(struct db *db, const char *sql, const struct db_arg *args, size_t count,
         struct db_rows **rows, struct ztr_err *err)
{
    *rows = NULL;
    clear_failure(db);
    return db->ops->query(db, sql, args, count, rows, err);
}

int
db_next(struct db_rows *rows, struct ztr_err *err)
{
    return rows->ops->next(rows, err);
}

void
db_rows_close(struct db_rows *rows)
{
    if (rows != NULL)
        rows->ops->rows_close(rows);
}

bool
db_is_null(const struct db_rows *rows, int col)
{
    return rows->ops->is_null(rows, col);
}

int64_t
db_int(const struct db_rows *rows, int col)
{
    return rows->ops->integer(rows, col);
}

const char *
db_text(const struct db_rows *rows, int col)
{
    return rows->ops->text(rows, col);
}

size_t
db_text_len(const struct db_rows *rows, int col)
{
    return rows->ops->text_len(rows, col);
}

const void *
db_blob(const struct db_rows *rows, int col, size_t *len)
{
    return rows->ops->blob(rows, col, len);
}

const char *
db_column_name(const struct db_rows *rows, int col)
{
    return rows->ops->column_name(rows, col);
}

int
db_exec(struct db *db, const char *sql, const struct db_arg *args, size_t count,
        int64_t *changes, struct ztr_err *err)
{
    clear_failure(db);
    return db->ops->exec(db, sql, args, count, changes, err);
}

int
db_exec_script(struct db *db, const char *script, struct ztr_err *err)
{
    clear_failure(db);
    return db->ops->exec_script(db, script, err);
}

int
db_begin(struct db *db, struct ztr_err *err)
{
    clear_failure(db);
    return db->ops->begin(db, err);
}

int
db_commit(struct db *db, struct ztr_err *err)
{
    clear_failure(db);
    db->commit_wrote = true;
    return db->ops->commit(db, err);
}

void
db_rollback(struct db *db)
{
    db->ops->rollback(db);
}

bool
db_constraint_failed(const struct db *db)
{
    return db->constraint_failed;
}

enum db_fault
db_fault(const struct db *db)
{
    return db->fault;
}

void
db_set_busy_timeout(struct db *db, int ms)
{
    if (db->ops->set_busy_timeout != NULL)
        db->ops->set_busy_timeout(db, ms);
}

bool
db_commit_wrote(const struct db *db)
{
    return db->commit_wrote;
}

const char *
db_fault_reason(const struct db *db)
{
    return db->fault_reason;
}

const char *
db_fault_name(enum db_fault fault)
{
    switch (fault) {
    case DB_FAULT_BUSY:
        return "busy";
    case DB_FAULT_FULL:
        return "full";
    case DB_FAULT_IO:
        return "io";
    case DB_FAULT_NONE:
    case DB_FAULT_COUNT:
        break;
    }
    return "";
}

int
db_schema_version(struct db *db, int64_t *version, struct ztr_err *err)
{
    return db->ops->schema_version(db, version, err);
}

int
db_set_schema_version(struct db *db, int64_t version, struct ztr_err *err)
{
    return db->ops->set_schema_version(db, version, err);
}

int
db_lock_schema(struct db *db, struct ztr_err *err)
{
    return db->ops->lock_schema(db, err);
}

int
db_configure(struct db *db, struct ztr_err *err)
{
    return db->ops->configure(db, err);
}

void
db_url_redacted(const char *url, char *out, size_t cap)
{
    const char *scheme_end = strstr(url, "://");
    const char *at = strchr(url, '@');
    if (!db_url_is_postgres(url) || scheme_end == NULL || at == NULL || at < scheme_end) {
        snprintf(out, cap, "%s", url);
        return;
    }
    const char *user = scheme_end + 3;
    const char *colon = memchr(user, ':', (size_t)(at - user));
    if (colon == NULL) {
        snprintf(out, cap, "%s", url);
        return;
    }
    snprintf(out, cap, "%.*s:***%s", (int)(colon - url), url, at);
}

int
db_listen(struct db *db, const char *channel, struct ztr_err *err)
{
    return db->ops->listen != NULL ? db->ops->listen(db, channel, err) : 0;
}

int
db_notify(struct db *db, const char *channel, const char *payload, struct ztr_err *err)
{
    return db->ops->notify != NULL ? db->ops->notify(db, channel, payload, err) : 0;
}

int
db_socket(const struct db *db)
{
    return db->ops->socket != NULL ? db->ops->socket(db) : -1;
}

int
db_notifications(struct db *db, void (*each)(void *ctx, const char *payload), void *ctx,
                 struct ztr_err *err)
{
    return db->ops->notifications != NULL ? db->ops->notifications(db, each, ctx, err) : 0;
}
