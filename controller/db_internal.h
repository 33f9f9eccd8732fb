/* What each SQL engine (db_sqlite.c, db_pg.c) gives db.c. */
#ifndef ZTR_CONTROLLER_DB_INTERNAL_H
#define ZTR_CONTROLLER_DB_INTERNAL_H

#include "controller/db.h"

#define DB_SQL_IN_ERRORS 60 /* how much of a failing statement an error quotes */

struct db_ops {
    int (*query)(struct db *db, const char *sql, const struct db_arg *args, size_t count,
                 struct db_rows **rows, struct ztr_err *err);
    int (*next)(struct db_rows *rows, struct ztr_err *err);
    void (*rows_close)(struct db_rows *rows);
    bool (*is_null)(const struct db_rows *rows, int col);
    int64_t (*integer)(const struct db_rows *rows, int col);
    const char *(*text)(const struct db_rows *rows, int col);
    size_t (*text_len)(const struct db_rows *rows, int col);
    const void *(*blob)(const struct db_rows *rows, int col, size_t *len);
    const char *(*column_name)(const struct db_rows *rows, int col);
    int (*exec)(struct db *db, const char *sql, const struct db_arg *args, size_t count,
                int64_t *changes, struct ztr_err *err);
    int (*exec_script)(struct db *db, const char *script, struct ztr_err *err);
    int (*begin)(struct db *db, struct ztr_err *err);
    int (*commit)(struct db *db, struct ztr_err *err);
    void (*rollback)(struct db *db);
    int (*schema_version)(struct db *db, int64_t *version, struct ztr_err *err);
    int (*set_schema_version)(struct db *db, int64_t version, struct ztr_err *err);
    int (*lock_schema)(struct db *db, struct ztr_err *err);
    int (*configure)(struct db *db, struct ztr_err *err);
    void (*set_busy_timeout)(struct db *db, int ms); /* NULL: not the engine's notion */
    int (*listen)(struct db *db, const char *channel, struct ztr_err *err);
    int (*notify)(struct db *db, const char *channel, const char *payload, struct ztr_err *err);
    int (*socket)(const struct db *db);
    int (*notifications)(struct db *db, void (*each)(void *ctx, const char *payload), void *ctx,
                         struct ztr_err *err);
    void (*close)(struct db *db);
};

/* The first member of each engine's handle and cursor. */
struct db {
    const struct db_ops *ops;
    enum db_engine engine;
    bool constraint_failed;
    enum db_fault fault;
    bool commit_wrote;
    char fault_reason[128];
};

struct db_rows {
    const struct db_ops *ops;
};

int db_sqlite_open(const char *path, struct db **out, struct ztr_err *err);
int db_pg_open(const char *url, struct db **out, struct ztr_err *err);

#endif
