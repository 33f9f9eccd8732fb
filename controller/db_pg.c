/* PostgreSQL under db.h, through libpq: the store of a cluster of
 * controllers (docs/OPERATIONS.md, "Run a controller cluster").
 *
 * Statements arrive with SQLite's `?` / `?N` placeholders and are sent as
 * `$N` with every value bound (PQexecParams: text for text and integers,
 * binary for BYTEA); results come back whole, in text form. */
#include "controller/db_internal.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_SQL_MAX 8192          /* a statement after placeholder rewriting */
#define PG_PARAMS_MAX 64
#define PG_OID_BYTEA 17
#define PG_OID_INT8 20
#define PG_OID_TEXT 25
/* Any constant: one advisory lock key for "the schema is being migrated". */
#define PG_SCHEMA_LOCK_KEY 7243761

struct pg_db {
    struct db base;
    PGconn *conn;
};

struct pg_rows {
    struct db_rows base;
    PGresult *res;
    int row;              /* current row, -1 before the first */
    unsigned char *blob;  /* the last decoded BYTEA (owned) */
};

static const struct db_ops pg_ops;

/* The message's first line, without libpq's "ERROR:  " prefix. */
static const char *
first_line(const char *msg, char *buf, size_t cap)
{
    if (msg == NULL)
        return "unknown error";
    if (strncmp(msg, "ERROR:  ", 8) == 0)
        msg += 8;
    size_t len = strcspn(msg, "\n");
    snprintf(buf, cap, "%.*s", (int)len, msg);
    return buf;
}

static int
fail(struct pg_db *db, PGresult *res, const char *sql, struct ztr_err *err)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    int code = ZTR_E_IO;
    if (state != NULL && strncmp(state, "23", 2) == 0) {
        code = ZTR_E_INVALID; /* integrity constraint violation */
        db->base.constraint_failed = true;
    } else if (state != NULL && strncmp(state, "22", 2) == 0) {
        code = ZTR_E_INVALID; /* data exception: not JSON, out of range */
    } else if (state != NULL && strcmp(state, "54000") == 0) {
        code = ZTR_E_LIMIT;
    }
    char line[512];
    const char *msg = res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(db->conn);
    return ztr_err_set(err, code, "postgres: %s (in \"%.*s\")", first_line(msg, line, sizeof(line)),
                       DB_SQL_IN_ERRORS, sql != NULL ? sql : "");
}

/* `?` becomes $1, $2, ... in order; `?N` becomes $N. Quoted text is copied
 * as it is. */
static int
rewrite(const char *sql, char *out, size_t cap, struct ztr_err *err)
{
    size_t o = 0;
    int next = 1;
    bool quoted = false;
    for (const char *p = sql; *p != '\0'; p++) {
        char piece[16];
        size_t len = 1;
        piece[0] = *p;
        if (*p == '\'') {
            quoted = !quoted;
        } else if (*p == '?' && !quoted) {
            int n;
            if (isdigit((unsigned char)p[1])) {
                n = 0;
                while (isdigit((unsigned char)p[1]) && n < 1000)
                    n = n * 10 + (*++p - '0');
            } else {
                n = next++;
            }
            len = (size_t)snprintf(piece, sizeof(piece), "$%d", n);
        }
        if (o + len >= cap)
            return ztr_err_set(err, ZTR_E_LIMIT, "postgres: statement longer than %d bytes",
                               PG_SQL_MAX);
        memcpy(out + o, piece, len);
        o += len;
    }
    out[o] = '\0';
    return 0;
}

static PGresult *
run(struct pg_db *db, const char *sql, const struct db_arg *args, size_t count,
    struct ztr_err *err)
{
    char text[PG_SQL_MAX];
    if (count > PG_PARAMS_MAX) {
        ztr_err_set(err, ZTR_E_LIMIT, "postgres: more than %d arguments", PG_PARAMS_MAX);
        return NULL;
    }
    if (rewrite(sql, text, sizeof(text), err) != 0)
        return NULL;
    Oid types[PG_PARAMS_MAX];
    const char *values[PG_PARAMS_MAX];
    int lengths[PG_PARAMS_MAX];
    int formats[PG_PARAMS_MAX];
    char numbers[PG_PARAMS_MAX][24];
    for (size_t i = 0; i < count; i++) {
        lengths[i] = 0;
        formats[i] = 0;
        switch (args[i].kind) {
        case DB_ARG_TEXT:
            types[i] = PG_OID_TEXT;
            values[i] = args[i].text;
            break;
        case DB_ARG_INT:
            types[i] = PG_OID_INT8;
            snprintf(numbers[i], sizeof(numbers[i]), "%lld", (long long)args[i].num);
            values[i] = numbers[i];
            break;
        case DB_ARG_BLOB:
            types[i] = PG_OID_BYTEA;
            values[i] = args[i].blob;
            lengths[i] = args[i].blob_len;
            formats[i] = 1;
            break;
        }
    }
    PGresult *res = PQexecParams(db->conn, text, (int)count, types, values, lengths, formats, 0);
    ExecStatusType status = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        fail(db, res, sql, err);
        PQclear(res);
        return NULL;
    }
    return res;
}

static int
pg_query(struct db *base, const char *sql, const struct db_arg *args, size_t count,
         struct db_rows **out, struct ztr_err *err)
{
    struct pg_db *db = (struct pg_db *)base;
    struct pg_rows *rows = calloc(1, sizeof(*rows));
    if (rows == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    rows->res = run(db, sql, args, count, err);
    if (rows->res == NULL) {
        free(rows);
        return -1;
    }
    rows->base.ops = &pg_ops;
    rows->row = -1;
    *out = &rows->base;
    return 0;
}

static int
pg_next(struct db_rows *base, struct ztr_err *err)
{
    (void)err;
    struct pg_rows *rows = (struct pg_rows *)base;
    free(rows->blob);
    rows->blob = NULL;
    if (rows->row + 1 >= PQntuples(rows->res))
        return 0;
    rows->row++;
    return 1;
}

static void
pg_rows_close(struct db_rows *base)
{
    struct pg_rows *rows = (struct pg_rows *)base;
    PQclear(rows->res);
    free(rows->blob);
    free(rows);
}

static bool
pg_is_null(const struct db_rows *base, int col)
{
    const struct pg_rows *rows = (const struct pg_rows *)base;
    return col >= PQnfields(rows->res) || PQgetisnull(rows->res, rows->row, col);
}

/* NULL reads as 0, as SQLite's does; a boolean as 0 or 1. */
static int64_t
pg_int(const struct db_rows *base, int col)
{
    const struct pg_rows *rows = (const struct pg_rows *)base;
    if (pg_is_null(base, col))
        return 0;
    const char *value = PQgetvalue(rows->res, rows->row, col);
    if (strcmp(value, "t") == 0)
        return 1;
    if (strcmp(value, "f") == 0)
        return 0;
    return strtoll(value, NULL, 10);
}

static const char *
pg_text(const struct db_rows *base, int col)
{
    const struct pg_rows *rows = (const struct pg_rows *)base;
    return pg_is_null(base, col) ? NULL : PQgetvalue(rows->res, rows->row, col);
}

static size_t
pg_text_len(const struct db_rows *base, int col)
{
    const struct pg_rows *rows = (const struct pg_rows *)base;
    return pg_is_null(base, col) ? 0 : (size_t)PQgetlength(rows->res, rows->row, col);
}

/* BYTEA in text form is "\x" and hex digits. */
static const void *
pg_blob(const struct db_rows *base, int col, size_t *len)
{
    struct pg_rows *rows = (struct pg_rows *)base;
    *len = 0;
    if (pg_is_null(base, col))
        return NULL;
    size_t n;
    unsigned char *bytes =
        PQunescapeBytea((const unsigned char *)PQgetvalue(rows->res, rows->row, col), &n);
    if (bytes == NULL)
        return NULL;
    free(rows->blob);
    rows->blob = malloc(n > 0 ? n : 1);
    if (rows->blob != NULL)
        memcpy(rows->blob, bytes, n);
    PQfreemem(bytes);
    *len = rows->blob != NULL ? n : 0;
    return rows->blob;
}

static const char *
pg_column_name(const struct db_rows *base, int col)
{
    const char *name = PQfname(((const struct pg_rows *)base)->res, col);
    return name != NULL ? name : "?";
}

static int
pg_exec(struct db *base, const char *sql, const struct db_arg *args, size_t count,
        int64_t *changes, struct ztr_err *err)
{
    PGresult *res = run((struct pg_db *)base, sql, args, count, err);
    if (res == NULL)
        return -1;
    if (changes != NULL)
        *changes = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return 0;
}

static int
pg_exec_script(struct db *base, const char *script, struct ztr_err *err)
{
    struct pg_db *db = (struct pg_db *)base;
    PGresult *res = PQexec(db->conn, script);
    ExecStatusType status = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int rc = 0;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
        rc = fail(db, res, "(migration)", err);
    PQclear(res);
    return rc;
}

static int
pg_begin(struct db *base, struct ztr_err *err)
{
    return pg_exec(base, "BEGIN", NO_ARGS, NULL, err);
}

static int
pg_commit(struct db *base, struct ztr_err *err)
{
    return pg_exec(base, "COMMIT", NO_ARGS, NULL, err);
}

static void
pg_rollback(struct db *base)
{
    struct pg_db *db = (struct pg_db *)base;
    if (PQtransactionStatus(db->conn) != PQTRANS_IDLE)
        PQclear(PQexec(db->conn, "ROLLBACK"));
}

static int
pg_schema_version(struct db *base, int64_t *version, struct ztr_err *err)
{
    struct db_rows *rows;
    *version = 0;
    TRY(pg_query(base,
                 "SELECT CASE WHEN to_regclass('ztr_schema_version') IS NULL THEN -1 ELSE 0 END",
                 NO_ARGS, &rows, err));
    int present = pg_next(rows, err) == 1 && pg_int(rows, 0) == 0;
    pg_rows_close(rows);
    if (!present)
        return 0;
    TRY(pg_query(base, "SELECT version FROM ztr_schema_version", NO_ARGS, &rows, err));
    if (pg_next(rows, err) == 1)
        *version = pg_int(rows, 0);
    pg_rows_close(rows);
    return 0;
}

static int
pg_set_schema_version(struct db *base, int64_t version, struct ztr_err *err)
{
    TRY(pg_exec(base, "CREATE TABLE IF NOT EXISTS ztr_schema_version (version BIGINT NOT NULL)",
                NO_ARGS, NULL, err));
    TRY(pg_exec(base, "DELETE FROM ztr_schema_version", NO_ARGS, NULL, err));
    return pg_exec(base, "INSERT INTO ztr_schema_version (version) VALUES (?)",
                   ARGS(INT_ARG(version)), NULL, err);
}

/* Controllers starting together migrate one after the other. */
static int
pg_lock_schema(struct db *base, struct ztr_err *err)
{
    return pg_exec(base, "SELECT pg_advisory_xact_lock(?)", ARGS(INT_ARG(PG_SCHEMA_LOCK_KEY)),
                   NULL, err);
}

static int
pg_configure(struct db *base, struct ztr_err *err)
{
    (void)base;
    (void)err;
    return 0;
}

static int
pg_listen(struct db *base, const char *channel, struct ztr_err *err)
{
    struct pg_db *db = (struct pg_db *)base;
    /* LISTEN takes an identifier, not a parameter: quoted by libpq. */
    char *quoted = PQescapeIdentifier(db->conn, channel, strlen(channel));
    if (quoted == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    char sql[256];
    snprintf(sql, sizeof(sql), "LISTEN %s", quoted);
    PQfreemem(quoted);
    return pg_exec(base, sql, NO_ARGS, NULL, err);
}

static int
pg_notify(struct db *base, const char *channel, const char *payload, struct ztr_err *err)
{
    return pg_exec(base, "SELECT pg_notify(?, ?)", ARGS(TEXT_ARG(channel), TEXT_ARG(payload)),
                   NULL, err);
}

static int
pg_socket(const struct db *base)
{
    return PQsocket(((const struct pg_db *)base)->conn);
}

static int
pg_notifications(struct db *base, void (*each)(void *ctx, const char *payload), void *ctx,
                 struct ztr_err *err)
{
    struct pg_db *db = (struct pg_db *)base;
    if (!PQconsumeInput(db->conn) || PQstatus(db->conn) != CONNECTION_OK) {
        char line[512];
        return ztr_err_set(err, ZTR_E_IO, "postgres: %s",
                           first_line(PQerrorMessage(db->conn), line, sizeof(line)));
    }
    PGnotify *n;
    while ((n = PQnotifies(db->conn)) != NULL) {
        each(ctx, n->extra != NULL ? n->extra : "");
        PQfreemem(n);
    }
    return 0;
}

static void
pg_close(struct db *base)
{
    struct pg_db *db = (struct pg_db *)base;
    PQfinish(db->conn);
    free(db);
}

static const struct db_ops pg_ops = {
    .query = pg_query,
    .next = pg_next,
    .rows_close = pg_rows_close,
    .is_null = pg_is_null,
    .integer = pg_int,
    .text = pg_text,
    .text_len = pg_text_len,
    .blob = pg_blob,
    .column_name = pg_column_name,
    .exec = pg_exec,
    .exec_script = pg_exec_script,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .schema_version = pg_schema_version,
    .set_schema_version = pg_set_schema_version,
    .lock_schema = pg_lock_schema,
    .configure = pg_configure,
    .listen = pg_listen,
    .notify = pg_notify,
    .socket = pg_socket,
    .notifications = pg_notifications,
    .close = pg_close,
};

/* libpq would print a server's NOTICE (e.g. "relation already exists,
 * skipping") on stderr; the store has nothing to say about them. */
static void
ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

int
db_pg_open(const char *url, struct db **out, struct ztr_err *err)
{
    *out = NULL;
    /* A password in the URL would end up in settings, logs and `ps`. */
    const char *at = strchr(url, '@');
    const char *scheme_end = strstr(url, "://");
    if (at != NULL && scheme_end != NULL && memchr(scheme_end + 3, ':', (size_t)(at - scheme_end - 3)))
        return ztr_err_set(err, ZTR_E_INVALID,
                           "the database URL must not hold a password: put it in PGPASSFILE "
                           "or PGPASSWORD (docs/OPERATIONS.md)");
    struct pg_db *db = calloc(1, sizeof(*db));
    if (db == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    db->base.ops = &pg_ops;
    db->base.engine = DB_POSTGRES;
    db->conn = PQconnectdb(url);
    if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
        char line[512];
        ztr_err_set(err, ZTR_E_IO, "postgres: %s",
                    first_line(db->conn != NULL ? PQerrorMessage(db->conn) : "out of memory",
                               line, sizeof(line)));
        PQfinish(db->conn);
        free(db);
        return -1;
    }
    PQsetNoticeProcessor(db->conn, ignore_notice, NULL);
    *out = &db->base;
    return 0;
}
