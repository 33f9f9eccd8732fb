/*
 * One error convention for the whole tree.
 *
 * A function that can fail returns 0 on success or -1 on failure and fills a
 * caller-owned struct ztr_err with a code and a one-line explanation meant
 * for an operator. TRY() keeps the error path to one line; the callee has
 * already filled the error, so the caller only propagates it.
 */
#ifndef ZTR_BASE_ERR_H
#define ZTR_BASE_ERR_H

#include <stddef.h>

enum ztr_err_code {
    ZTR_OK = 0,
    ZTR_E_INVALID,      /* bad input from a user, a file or a peer */
    ZTR_E_IO,           /* a file or socket operation failed */
    ZTR_E_NOMEM,
    ZTR_E_CRYPTO,       /* the TLS/crypto library reported a failure */
    ZTR_E_CONFIG,       /* configuration error (names key and origin) */
    ZTR_E_NOT_FOUND,
    ZTR_E_LIMIT,        /* a bound was exceeded */
    ZTR_E_VERIFY,       /* a peer identity was rejected; see pki.h codes */
};

#define ZTR_ERR_MSG_MAX 512

struct ztr_err {
    int code;   /* enum ztr_err_code, or a module's own code (pki.h) */
    char msg[ZTR_ERR_MSG_MAX];
};

/* Fills err (when not NULL) and returns -1, so callers can write
 * `return ztr_err_set(err, ZTR_E_INVALID, "...")`. */
int ztr_err_set(struct ztr_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "<context>: " to an already filled error; returns -1. */
int ztr_err_wrap(struct ztr_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void ztr_err_clear(struct ztr_err *err);

#define TRY(expr)                      \
    do {                               \
        if ((expr) != 0)               \
            return -1;                 \
    } while (0)

#endif
