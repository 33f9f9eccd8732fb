/*
 * The admin CLI's HTTP client (libcurl): one blocking request at a time,
 * for `controller <command>` talking to a running controller's admin API.
 */
#ifndef ZTR_CONTROLLER_HTTP_CLIENT_H
#define ZTR_CONTROLLER_HTTP_CLIENT_H

#include "base/err.h"

/* err->code values beyond base/err.h's, for what a caller explains. */
enum http_client_error {
    HTTP_CLIENT_E_UNTRUSTED = 300, /* https: the server's certificate did not verify
                                      (its chain, or the host name it must carry) */
    HTTP_CLIENT_E_NO_REPLY,        /* connected, but no HTTP answer came back */
    HTTP_CLIENT_E_TLS,             /* the TLS handshake failed otherwise */
};

/* Performs one request; *body_out (malloc()ed, NUL-terminated) and *status
 * are set when a response arrived. bearer may be NULL. Bounded: responses
 * over HTTP_BODY_MAX (net/http.h) and requests over timeout_ms (which must
 * be > 0) fail. A body is sent as application/json. */
int http_client_request(const char *method, const char *url, const char *bearer,
                        const char *body, long timeout_ms, long *status, char **body_out,
                        struct ztr_err *err);

/* The same; an https URL is TLS 1.3 only, and the server's certificate
 * must chain to a CA of ca_file (PEM) and name the URL's host — or, with
 * ca_file NULL, chain to the system's trust store. Verification is never
 * turned off. */
int http_client_request_ca(const char *method, const char *url, const char *ca_file,
                           const char *bearer, const char *body, long timeout_ms,
                           long *status, char **body_out, struct ztr_err *err);

#endif
