#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int
ztr_err_set(struct ztr_err *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    /* Format into a copy first: callers may pass err->msg itself as an
     * argument to add detail, and vsnprintf must not read what it writes. */
    char msg[ZTR_ERR_MSG_MAX] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    err->code = code;
    memcpy(err->msg, msg, strlen(msg) + 1);
    return -1;
}

int
ztr_err_wrap(struct ztr_err *err, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    char context[ZTR_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(context, sizeof(context), fmt, ap);
    va_end(ap);
    /* context + ": " + old message, cut to fit (the tail is the detail). */
    char joined[ZTR_ERR_MSG_MAX];
    size_t used = strlen(context);
    memcpy(joined, context, used);
    const char *rest[2] = {": ", err->msg};
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(rest[i]);
        if (n > sizeof(joined) - 1 - used)
            n = sizeof(joined) - 1 - used;
        memcpy(joined + used, rest[i], n);
        used += n;
    }
    joined[used] = '\0';
    memcpy(err->msg, joined, used + 1);
    return -1;
}

void
ztr_err_clear(struct ztr_err *err)
{
    if (err == NULL)
        return;
    err->code = ZTR_OK;
    err->msg[0] = '\0';
}
