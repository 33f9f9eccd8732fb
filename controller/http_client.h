/*
 * The admin CLI's HTTP client (libcurl): one blocking request at a time,
 * for `controller <command>` talking to a running controller's admin API.
 */
#ifndef ZTR_CONTROLLER_HTTP_CLIENT_H
#define ZTR_CONTROLLER_HTTP_CLIENT_H

#include "base/err.h"

/* Performs one request; *body_out (malloc()ed, NUL-terminated) and *status
 * are set when a response arrived. bearer may be NULL. Bounded: responses
 * over HTTP_BODY_MAX (net/http.h) and requests over timeout_ms (which must
 * be > 0) fail. A body is sent as application/json. */
int http_client_request(const char *method, const char *url, const char *bearer,
                        const char *body, long timeout_ms, long *status, char **body_out,
                        struct ztr_err *err);

#endif
