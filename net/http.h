/*
 * HTTP for the admin API, /health and /metrics: libmicrohttpd in external
 * epoll mode, driven by one ev_io on its epoll fd (and an ev_timer for its
 * timeouts) on the daemon's libev loop — no extra thread, no hand-written
 * HTTP parser.
 *
 * The handler runs on the loop thread, synchronously, once the whole
 * request body has arrived (bodies over HTTP_BODY_MAX get 413 without
 * calling it). It fills the response; the server frees response->body.
 * The response starts as status 200, no body. The handler must not stop
 * its own server (defer that to the loop, e.g. with an ev_idle).
 */
#ifndef ZTR_NET_HTTP_H
#define ZTR_NET_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct ev_loop;

#define HTTP_BODY_MAX (1024 * 1024)

struct http_request {
    const char *method;         /* "GET", "POST", "DELETE", ... */
    const char *path;           /* without the query string; percent-decoded */
    const char *query;          /* raw query string without '?', "" if none
                                   (as sent: not decoded, order kept) */
    const char *authorization;  /* Authorization header or NULL */
    const char *body;           /* NUL-terminated; "" when empty */
    size_t body_len;
};

struct http_response {
    int status;
    const char *content_type;   /* default "application/json" */
    char *body;                 /* malloc()ed; may be NULL for an empty body */
    size_t body_len;            /* 0 = strlen(body) */
    void *server_call;          /* the server's, for http_defer; NULL outside a server */
};

/*
 * A handler that cannot answer at once (it waits on another server) calls
 * http_defer() and returns: nothing is sent, and the connection waits,
 * suspended (no polling), until http_deferred_respond() hands over the
 * response, which the caller must do exactly once, on the loop thread. The
 * handle is the caller's until then, even if the connection or the server
 * goes away first (the response is then dropped; a server that stops
 * answers its waiting requests 503 first). NULL when the response is not a
 * server's (a handler called directly, as unit tests do).
 */
struct http_deferred;
struct http_deferred *http_defer(struct http_response *response);
/* Takes response (its body is the server's from here on) and frees d. */
void http_deferred_respond(struct http_deferred *d, struct http_response *response);

typedef void (*http_handler_fn)(void *ctx, const struct http_request *request,
                                struct http_response *response);

struct http_server;

/*
 * Called once a request's headers are in, before any of its body is read
 * (request->body is "", body_len 0). Returning false refuses the request
 * with the response the gate filled, and the body is never read: an
 * unauthenticated client costs the server its headers only. Returning true
 * lets the request go on to the handler. The response is as for a handler.
 */
typedef bool (*http_gate_fn)(void *ctx, const struct http_request *request,
                             struct http_response *response);

/* Binds listen_addr (errors as net/net.h: `bind: address already in use`)
 * and starts serving on loop. */
int http_server_start(struct ev_loop *loop, const char *listen_addr, http_handler_fn handler,
                      void *ctx, struct http_server **out, struct ztr_err *err);

/*
 * HTTPS: libmicrohttpd's TLS (GnuTLS), TLS 1.3 only. A client offering
 * TLS 1.2 or older, or speaking plain HTTP, gets no HTTP answer: the
 * handshake fails and the connection is closed. PEM text, copied by the
 * server (the key is wiped when the server lets it go).
 */
struct http_tls {
    const char *cert_pem;  /* the server certificate, then any intermediates */
    const char *key_pem;   /* its private key */
};

/* Whether the libmicrohttpd linked in can serve TLS at all. */
bool http_tls_supported(void);
/* Whether a server could start with tls (the key parses and belongs to the
 * certificate), checked the way the server would, without listening.
 * Fails with GnuTLS's reason: `TLS certificate or key refused: ...`. */
int http_tls_check(const struct http_tls *tls, struct ztr_err *err);
/* As http_server_start, every connection served over TLS. */
int http_server_start_tls(struct ev_loop *loop, const char *listen_addr,
                          const struct http_tls *tls, http_handler_fn handler, void *ctx,
                          struct http_server **out, struct ztr_err *err);
/* New credentials (a reissued certificate) for a server started with TLS:
 * connections from now on get them; those still open are closed. On
 * failure the server keeps serving with the old ones. Never from inside a
 * handler or a gate. */
int http_server_set_tls(struct http_server *server, const struct http_tls *tls,
                        struct ztr_err *err);
/* Installs the gate (NULL: none) for requests whose headers arrive from
 * now on; ctx is the handler's. */
void http_server_set_gate(struct http_server *server, http_gate_fn gate);
uint16_t http_server_port(const struct http_server *server);
/* Stops, closes connections, frees. NULL is fine. */
void http_server_stop(struct http_server *server);

/* Convenience: sets status and a JSON body {"error": message}. */
void http_respond_error(struct http_response *response, int status, const char *message);

#endif
