#include "net/http.h"

#include <errno.h>
#include <ev.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/log.h"
#include "net/net.h"

/* Bounds, so no client can hold more than this much of the daemon. */
#define HTTP_LISTEN_BACKLOG 128
#define HTTP_CONNECTION_LIMIT 256u
#define HTTP_CONNECTION_TIMEOUT_S 10u
/* MHD's timeout above counts idle time only, so a client that sends a byte
 * every few seconds would hold a slot forever; this bounds a connection's
 * whole life, whatever it sends. A CLI call or a scrape takes milliseconds. */
#define HTTP_CONNECTION_DEADLINE_S 30.0

/* TLS 1.3 and nothing older: with this priority GnuTLS (libmicrohttpd's
 * TLS) fails the handshake of a client that offers at most TLS 1.2. */
#define HTTP_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3"
#define HTTP_TLS_PEM_MAX (64 * 1024)

struct http_server {
    struct ev_loop *loop;
    struct MHD_Daemon *daemon;
    char *tls_cert;            /* copies, NULL for plain HTTP; MHD reads them */
    char *tls_key;             /* wiped before they are freed */
    size_t tls_key_len;
    ev_io epoll_io;
    ev_io listen_io;
    int listen_fd;
    ev_timer timeout_timer;
    ev_timer deadline_timer;
    struct tracked_conn *conns; /* every open connection, oldest last */
    struct http_deferred *deferred; /* requests waiting for http_deferred_respond */
    ev_timer resume_timer;      /* runs MHD after a resumed connection */
    http_handler_fn handler;
    http_gate_fn gate;
    void *ctx;
    uint16_t port;
};

/* One per connection, from MHD's start to its close notification. */
struct tracked_conn {
    struct tracked_conn *next;
    struct tracked_conn **prev_next;
    int fd;
    double opened_at; /* ev_now */
};

/* One per request: created by the URI callback, freed by the completion
 * callback, whatever happens in between. */
struct request_state {
    char *query;      /* raw query string, "" if none */
    char *body;       /* NUL-terminated once complete */
    size_t body_len;
    size_t body_cap;
    bool headers_seen;
    bool too_large;
    struct http_deferred *deferred;
};

/* What http_defer needs from the dispatch that called the handler. */
struct server_call {
    struct http_server *server;
    struct MHD_Connection *conn;
    struct request_state *state;
};

struct http_deferred {
    struct http_server *server;      /* NULL once detached (the server stopped) */
    struct MHD_Connection *conn;
    struct request_state *state;     /* NULL once the connection is gone */
    struct http_deferred *next, **prev_next; /* in server->deferred while attached */
    bool suspended;
    bool answered;
    struct http_response response;
};

/* ---- responses --------------------------------------------------------- */

void
http_respond_error(struct http_response *response, int status, const char *message)
{
    free(response->body);
    response->body = NULL;
    response->body_len = 0;
    response->status = status;
    response->content_type = "application/json";
    json_t *obj = json_object();
    json_t *text = json_string(message != NULL ? message : "");
    if (obj != NULL && text != NULL && json_object_set_new(obj, "error", text) == 0) {
        text = NULL;
        response->body = json_dumps(obj, JSON_COMPACT);
    }
    json_decref(text);
    json_decref(obj);
    /* json_string() refuses invalid UTF-8; the status still tells the
     * client what happened, and the body stays valid JSON. */
    if (response->body == NULL)
        response->body = strdup("{\"error\":\"unprintable error message\"}");
}

static enum MHD_Result
queue_response(struct MHD_Connection *conn, struct http_response *response)
{
    char *body = response->body;
    size_t len = body == NULL ? 0 : response->body_len != 0 ? response->body_len : strlen(body);
    struct MHD_Response *mhd;
    if (len == 0) {
        free(body);
        mhd = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    } else {
        /* MHD sends straight from the handler's buffer and frees it when
         * done: no copy of a large body. */
        mhd = MHD_create_response_from_buffer_with_free_callback(len, body, free);
        if (mhd == NULL)
            free(body);
    }
    response->body = NULL;
    if (mhd == NULL)
        return MHD_NO;
    const char *type = response->content_type != NULL ? response->content_type : "application/json";
    int status = response->status;
    if (status < 100 || status > 599) {
        log_error("http handler returned an invalid status", "status=%d", status);
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
    enum MHD_Result rc = MHD_add_response_header(mhd, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (rc == MHD_YES)
        rc = MHD_queue_response(conn, (unsigned int)status, mhd);
    MHD_destroy_response(mhd);
    return rc;
}

static enum MHD_Result
queue_error(struct MHD_Connection *conn, int status, const char *message)
{
    struct http_response response = {0};
    http_respond_error(&response, status, message);
    return queue_response(conn, &response);
}

static enum MHD_Result
queue_too_large(struct MHD_Connection *conn)
{
    char message[64];
    snprintf(message, sizeof(message), "request body larger than %d bytes", HTTP_BODY_MAX);
    return queue_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, message);
}

/* ---- request collection ------------------------------------------------- */

static bool
declared_too_large(struct MHD_Connection *conn)
{
    const char *value =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (value == NULL)
        return false;
    errno = 0;
    unsigned long long declared = strtoull(value, NULL, 10);
    return errno == ERANGE || declared > (unsigned long long)HTTP_BODY_MAX;
}

/* Keeps room for the terminating NUL; past HTTP_BODY_MAX the body is
 * dropped at once rather than held until the request ends. */
static void
append_body(struct request_state *state, const char *data, size_t len)
{
    if (state->too_large)
        return;
    if (len > HTTP_BODY_MAX - state->body_len) {
        state->too_large = true;
        free(state->body);
        state->body = NULL;
        state->body_len = 0;
        state->body_cap = 0;
        return;
    }
    size_t need = state->body_len + len + 1;
    if (need > state->body_cap) {
        size_t cap = state->body_cap != 0 ? state->body_cap : 4096;
        while (cap < need)
            cap *= 2;
        char *grown = realloc(state->body, cap);
        if (grown == NULL) {
            /* Answered like an oversized body: the request cannot be kept. */
            state->too_large = true;
            return;
        }
        state->body = grown;
        state->body_cap = cap;
    }
    memcpy(state->body + state->body_len, data, len);
    state->body_len += len;
    state->body[state->body_len] = '\0';
}

static struct http_request
request_of(struct MHD_Connection *conn, const char *method, const char *path,
           const struct request_state *state)
{
    struct http_request request = {
        .method = method,
        .path = path,
        .query = state->query,
        .authorization = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_AUTHORIZATION),
        .body = state->body != NULL ? state->body : "",
        .body_len = state->body_len,
    };
    return request;
}

static void
deferred_unlink(struct http_deferred *d)
{
    if (d->prev_next == NULL)
        return;
    *d->prev_next = d->next;
    if (d->next != NULL)
        d->next->prev_next = d->prev_next;
    d->prev_next = NULL;
    d->next = NULL;
}

struct http_deferred *
http_defer(struct http_response *response)
{
    struct server_call *call = response->server_call;
    if (call == NULL || call->state->deferred != NULL)
        return NULL;
    struct http_deferred *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->server = call->server;
    d->conn = call->conn;
    d->state = call->state;
    d->next = call->server->deferred;
    d->prev_next = &call->server->deferred;
    if (d->next != NULL)
        d->next->prev_next = &d->next;
    call->server->deferred = d;
    call->state->deferred = d;
    return d;
}

static void run_daemon(struct http_server *server);

static void
resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    run_daemon(w->data);
}

void
http_deferred_respond(struct http_deferred *d, struct http_response *response)
{
    if (d == NULL) {
        free(response->body);
        response->body = NULL;
        return;
    }
    if (d->server == NULL || d->state == NULL || d->answered) {
        /* Nobody is waiting any more. */
        if (d->state != NULL)
            d->state->deferred = NULL;
        deferred_unlink(d);
        free(response->body);
        response->body = NULL;
        free(d);
        return;
    }
    d->response = *response;
    d->response.server_call = NULL;
    response->body = NULL;
    d->answered = true;
    if (d->suspended) {
        MHD_resume_connection(d->conn);
        d->suspended = false;
        /* External epoll: MHD acts on the resume at its next run. */
        ev_timer_start(d->server->loop, &d->server->resume_timer);
    }
}

/* The answer of a deferred request, queued once it is there. */
static enum MHD_Result
queue_deferred(struct MHD_Connection *conn, struct request_state *state)
{
    struct http_deferred *d = state->deferred;
    state->deferred = NULL;
    struct http_response response = d->response;
    deferred_unlink(d);
    if (d->server == NULL) {
        if (d->answered) { /* answered, but the server stops before sending it */
            free(d->response.body);
            free(d);
        } else { /* detached by the stopping server: the owner frees it */
            d->state = NULL;
        }
        return queue_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "server stopping");
    }
    free(d);
    return queue_response(conn, &response);
}

static enum MHD_Result
dispatch(struct http_server *server, struct MHD_Connection *conn, const char *method,
         const char *path, struct request_state *state)
{
    if (state->deferred != NULL) {
        if (state->deferred->answered || state->deferred->server == NULL)
            return queue_deferred(conn, state);
        return MHD_YES; /* still waiting */
    }
    struct http_request request = request_of(conn, method, path, state);
    struct server_call call = {server, conn, state};
    struct http_response response = {.status = MHD_HTTP_OK, .server_call = &call};
    server->handler(server->ctx, &request, &response);
    if (state->deferred == NULL)
        return queue_response(conn, &response);
    free(response.body);
    if (state->deferred->answered) /* answered from within the handler */
        return queue_deferred(conn, state);
    MHD_suspend_connection(conn);
    state->deferred->suspended = true;
    return MHD_YES;
}

/* The gate runs before the size check too: a refused client learns
 * nothing, not even the body limit. */
static bool
gate_refuses(struct http_server *server, struct MHD_Connection *conn, const char *method,
             const char *path, struct request_state *state, enum MHD_Result *rc)
{
    if (server->gate == NULL)
        return false;
    struct http_request request = request_of(conn, method, path, state);
    struct http_response response = {.status = MHD_HTTP_OK};
    if (server->gate(server->ctx, &request, &response)) {
        free(response.body);
        return false;
    }
    *rc = queue_response(conn, &response);
    return true;
}

/*
 * MHD calls this once when the headers are in, once per chunk of body, and
 * once more with no data when the body is complete; only the last call
 * answers, except for a body declared too large, which is refused before
 * it is read.
 */
static enum MHD_Result
access_cb(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size,
          void **con_cls)
{
    (void)version;
    struct request_state *state = *con_cls;
    if (state == NULL)
        return MHD_NO; /* the URI callback ran out of memory */
    if (!state->headers_seen) {
        state->headers_seen = true;
        enum MHD_Result refused;
        if (gate_refuses(cls, conn, method, url, state, &refused))
            return refused;
        if (declared_too_large(conn))
            return queue_too_large(conn);
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        append_body(state, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (state->too_large)
        return queue_too_large(conn);
    return dispatch(cls, conn, method, url, state);
}

/*
 * The query string is taken here, from the URI as it arrived: MHD hands
 * the access handler only the path and the arguments already split and
 * unescaped, from which the raw string could not be rebuilt faithfully
 * (order, repeated keys, "%26" versus "&").
 */
static void *
uri_cb(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    struct request_state *state = calloc(1, sizeof(*state));
    if (state == NULL)
        return NULL;
    const char *mark = strchr(uri, '?');
    state->query = strdup(mark != NULL ? mark + 1 : "");
    if (state->query == NULL) {
        free(state);
        return NULL;
    }
    return state;
}

static void
completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct request_state *state = *con_cls;
    if (state == NULL)
        return;
    if (state->deferred != NULL) {
        /* Gone before its answer: the owner's respond frees the handle. */
        state->deferred->state = NULL;
        deferred_unlink(state->deferred);
        if (state->deferred->answered) {
            free(state->deferred->response.body);
            free(state->deferred);
        }
    }
    free(state->query);
    free(state->body);
    free(state);
    *con_cls = NULL;
}

static void
notify_connection_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                     enum MHD_ConnectionNotificationCode toe)
{
    struct http_server *server = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct tracked_conn *t = info != NULL ? calloc(1, sizeof(*t)) : NULL;
        *socket_context = t;
        if (t == NULL)
            return; /* untracked: still bounded by the idle timeout */
        t->fd = info->connect_fd;
        t->opened_at = ev_now(server->loop);
        t->next = server->conns;
        t->prev_next = &server->conns;
        if (server->conns != NULL)
            server->conns->prev_next = &t->next;
        server->conns = t;
        return;
    }
    struct tracked_conn *t = *socket_context;
    if (t == NULL)
        return;
    *t->prev_next = t->next;
    if (t->next != NULL)
        t->next->prev_next = t->prev_next;
    free(t);
    *socket_context = NULL;
}

/* MHD offers no way to close one connection from outside; shutting the
 * socket down makes it readable at EOF, and MHD closes it on its next run
 * (the close notification then frees the entry). */
static void
deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct http_server *server = w->data;
    double now = ev_now(loop);
    size_t cut = 0;
    for (struct tracked_conn *t = server->conns; t != NULL; t = t->next) {
        if (t->fd >= 0 && now - t->opened_at >= HTTP_CONNECTION_DEADLINE_S) {
            (void)shutdown(t->fd, SHUT_RDWR);
            t->fd = -1;
            cut++;
        }
    }
    if (cut > 0)
        log_warn("http connections past their deadline closed", "count=%zu deadline_s=%.0f",
                 cut, HTTP_CONNECTION_DEADLINE_S);
}

/* MHD logs per connection (one refused over the limit, say); a flood must
 * cost a few lines, not one per connection. */
#define HTTP_LOG_INTERVAL_S 10
static _Thread_local struct {
    bool logged;
    struct timespec last;
    unsigned long long suppressed;
    /* While a daemon starts, its first message is kept here for the error
     * instead of logged: it is the reason GnuTLS refused the credentials. */
    char *capture;
    size_t capture_cap;
} mhd_log_state;

__attribute__((format(printf, 2, 0))) static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (mhd_log_state.capture != NULL) {
        if (mhd_log_state.capture[0] == '\0') {
            vsnprintf(mhd_log_state.capture, mhd_log_state.capture_cap, fmt, ap);
            mhd_log_state.capture[strcspn(mhd_log_state.capture, "\r\n")] = '\0';
        }
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (mhd_log_state.logged && now.tv_sec - mhd_log_state.last.tv_sec < HTTP_LOG_INTERVAL_S) {
        mhd_log_state.suppressed++;
        return;
    }
    char text[256];
    vsnprintf(text, sizeof(text), fmt, ap);
    /* MHD ends its messages with a newline and may quote things; the log
     * line is one line with a quoted detail. */
    for (char *p = text; *p != '\0'; p++) {
        if (*p == '\n' || *p == '\r')
            *p = ' ';
        else if (*p == '"')
            *p = '\'';
    }
    size_t len = strlen(text);
    while (len > 0 && text[len - 1] == ' ')
        text[--len] = '\0';
    if (mhd_log_state.suppressed > 0)
        log_warn("http server", "detail=\"%s\" suppressed=%llu", text, mhd_log_state.suppressed);
    else
        log_warn("http server", "detail=\"%s\"", text);
    mhd_log_state.logged = true;
    mhd_log_state.last = now;
    mhd_log_state.suppressed = 0;
}

/* ---- driving MHD from the loop ------------------------------------------ */

/* MHD must run again no later than it says, even without socket activity
 * (connection timeouts, data it has buffered but not processed yet). */
static void
rearm_timer(struct http_server *server)
{
    MHD_UNSIGNED_LONG_LONG timeout_ms = 0;
    ev_timer_stop(server->loop, &server->timeout_timer);
    if (MHD_get_timeout(server->daemon, &timeout_ms) != MHD_YES)
        return;
    ev_timer_set(&server->timeout_timer, (double)timeout_ms / 1000.0, 0.0);
    ev_timer_start(server->loop, &server->timeout_timer);
}

static void
run_daemon(struct http_server *server)
{
    MHD_run(server->daemon);
    rearm_timer(server);
}

/* Connections are taken by net_accept(), the daemons' one accept path,
 * and handed to MHD: out of descriptors MHD's own accept would keep the
 * listener readable and spin, logging each turn. */
static void
listen_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct http_server *server = w->data;
    for (int i = 0; i < 64; i++) {
        int fd = net_accept(server->listen_fd);
        if (fd < 0)
            break;
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        if (getpeername(fd, (struct sockaddr *)&sa, &len) != 0) {
            close(fd);
            continue;
        }
        /* MHD closes the socket itself when it refuses it (over the
         * connection limit, out of memory). */
        (void)MHD_add_connection(server->daemon, fd, (const struct sockaddr *)&sa, len);
    }
    run_daemon(server);
}

static void
epoll_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    run_daemon(w->data);
}

static void
timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    run_daemon(w->data);
}

/* Starts an MHD daemon for server (NULL: only to check tls) without a
 * listening socket of its own; with tls, every connection speaks TLS 1.3. */
static struct MHD_Daemon *
daemon_start(struct http_server *server, const char *cert, const char *key,
             struct ztr_err *err)
{
    struct MHD_OptionItem tls_options[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)key},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)HTTP_TLS_PRIORITIES},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_OptionItem no_options[] = {{MHD_OPTION_END, 0, NULL}};
    bool tls = cert != NULL;
    unsigned int flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET |
                         MHD_ALLOW_SUSPEND_RESUME;
    if (tls)
        flags |= MHD_USE_TLS;
    char reason[256] = "";
    mhd_log_state.capture = reason;
    mhd_log_state.capture_cap = sizeof(reason);
    struct MHD_Daemon *daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, access_cb, server,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_CONNECTION_LIMIT, HTTP_CONNECTION_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, HTTP_CONNECTION_TIMEOUT_S,
        MHD_OPTION_URI_LOG_CALLBACK, uri_cb, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, completed_cb, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, notify_connection_cb, server,
        MHD_OPTION_ARRAY, tls ? tls_options : no_options,
        MHD_OPTION_END);
    mhd_log_state.capture = NULL;
    if (daemon == NULL && tls)
        ztr_err_set(err, ZTR_E_INVALID, "TLS certificate or key refused: %s",
                    reason[0] != '\0' ? reason : "libmicrohttpd could not set up TLS");
    else if (daemon == NULL)
        ztr_err_set(err, ZTR_E_IO, "http: cannot start server%s%s", reason[0] ? ": " : "",
                    reason);
    return daemon;
}

static void
tls_free(struct http_server *server)
{
    free(server->tls_cert);
    if (server->tls_key != NULL)
        explicit_bzero(server->tls_key, server->tls_key_len);
    free(server->tls_key);
    server->tls_cert = NULL;
    server->tls_key = NULL;
    server->tls_key_len = 0;
}

/* Bounded copies of tls into server (it holds them for MHD). */
static int
tls_copy(struct http_server *server, const struct http_tls *tls, struct ztr_err *err)
{
    if (tls->cert_pem == NULL || tls->key_pem == NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "TLS needs a certificate and a key");
    if (strlen(tls->cert_pem) > HTTP_TLS_PEM_MAX || strlen(tls->key_pem) > HTTP_TLS_PEM_MAX)
        return ztr_err_set(err, ZTR_E_LIMIT, "TLS certificate or key larger than %d bytes",
                           HTTP_TLS_PEM_MAX);
    server->tls_cert = strdup(tls->cert_pem);
    server->tls_key = strdup(tls->key_pem);
    server->tls_key_len = server->tls_key != NULL ? strlen(server->tls_key) : 0;
    if (server->tls_cert == NULL || server->tls_key == NULL) {
        tls_free(server);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    return 0;
}

bool
http_tls_supported(void)
{
    return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES;
}

int
http_tls_check(const struct http_tls *tls, struct ztr_err *err)
{
    if (!http_tls_supported())
        return ztr_err_set(err, ZTR_E_INVALID, "this libmicrohttpd was built without TLS");
    struct http_server scratch = {0};
    TRY(tls_copy(&scratch, tls, err));
    struct MHD_Daemon *daemon = daemon_start(NULL, scratch.tls_cert, scratch.tls_key, err);
    tls_free(&scratch);
    if (daemon == NULL)
        return -1;
    MHD_stop_daemon(daemon);
    return 0;
}

/* Points the loop at server->daemon: its epoll descriptor and timeouts. */
static int
daemon_attach(struct http_server *server, struct ztr_err *err)
{
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (info == NULL)
        return ztr_err_set(err, ZTR_E_IO, "http: no epoll descriptor");
    ev_io_init(&server->epoll_io, epoll_cb, info->epoll_fd, EV_READ);
    server->epoll_io.data = server;
    ev_io_start(server->loop, &server->epoll_io);
    rearm_timer(server);
    return 0;
}

int
http_server_start(struct ev_loop *loop, const char *listen_addr, http_handler_fn handler,
                  void *ctx, struct http_server **out, struct ztr_err *err)
{
    return http_server_start_tls(loop, listen_addr, NULL, handler, ctx, out, err);
}

int
http_server_start_tls(struct ev_loop *loop, const char *listen_addr, const struct http_tls *tls,
                      http_handler_fn handler, void *ctx, struct http_server **out,
                      struct ztr_err *err)
{
    *out = NULL;
    if (tls != NULL && !http_tls_supported())
        return ztr_err_set(err, ZTR_E_INVALID, "listen %s: this libmicrohttpd was built "
                           "without TLS", listen_addr);
    struct http_server *server = calloc(1, sizeof(*server));
    if (server == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    server->loop = loop;
    server->handler = handler;
    server->ctx = ctx;
    if (tls != NULL && tls_copy(server, tls, err) != 0) {
        free(server);
        return -1;
    }
    int fd = -1;
    /* Our own socket, so a taken port reads as every other listen error. */
    if (net_listen(listen_addr, HTTP_LISTEN_BACKLOG, &fd, err) != 0) {
        tls_free(server);
        free(server);
        return -1;
    }
    server->port = net_local_port(fd);
    server->listen_fd = fd;
    ev_init(&server->timeout_timer, timeout_cb);
    server->timeout_timer.data = server;
    server->daemon = daemon_start(server, server->tls_cert, server->tls_key, err);
    if (server->daemon == NULL || daemon_attach(server, err) != 0) {
        if (server->daemon != NULL)
            MHD_stop_daemon(server->daemon);
        close(fd);
        tls_free(server);
        free(server);
        return ztr_err_wrap(err, "listen %s", listen_addr);
    }
    ev_io_init(&server->listen_io, listen_cb, fd, EV_READ);
    server->listen_io.data = server;
    ev_io_start(loop, &server->listen_io);
    ev_timer_init(&server->deadline_timer, deadline_cb, 1.0, 1.0);
    server->deadline_timer.data = server;
    ev_timer_init(&server->resume_timer, resume_cb, 0.0, 0.0);
    server->resume_timer.data = server;
    ev_timer_start(loop, &server->deadline_timer);
    *out = server;
    return 0;
}

/* MHD cannot change a running daemon's credentials: a new daemon takes the
 * listening socket's next connections, and the old one closes those it
 * holds (an admin call or a scrape in flight fails; its client retries). */
int
http_server_set_tls(struct http_server *server, const struct http_tls *tls,
                    struct ztr_err *err)
{
    if (server->tls_cert == NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "http: the server was started without TLS");
    struct http_server fresh = {0};
    TRY(tls_copy(&fresh, tls, err));
    struct MHD_Daemon *daemon = daemon_start(server, fresh.tls_cert, fresh.tls_key, err);
    if (daemon == NULL) {
        tls_free(&fresh);
        return -1;
    }
    ev_io_stop(server->loop, &server->epoll_io);
    ev_timer_stop(server->loop, &server->timeout_timer);
    MHD_stop_daemon(server->daemon);
    tls_free(server);
    server->daemon = daemon;
    server->tls_cert = fresh.tls_cert;
    server->tls_key = fresh.tls_key;
    server->tls_key_len = fresh.tls_key_len;
    if (daemon_attach(server, err) != 0) {
        /* Not reachable with an epoll daemon; the listener stays up and
         * every connection is refused by MHD rather than left hanging. */
        return -1;
    }
    return 0;
}

void
http_server_set_gate(struct http_server *server, http_gate_fn gate)
{
    server->gate = gate;
}

uint16_t
http_server_port(const struct http_server *server)
{
    return server->port;
}

void
http_server_stop(struct http_server *server)
{
    if (server == NULL)
        return;
    /* Requests still waiting are answered 503 and their handles detached:
     * their owners' respond frees them later. */
    bool resumed = false;
    while (server->deferred != NULL) {
        struct http_deferred *d = server->deferred;
        deferred_unlink(d);
        d->server = NULL;
        if (d->suspended) {
            MHD_resume_connection(d->conn);
            d->suspended = false;
        }
        resumed = true;
    }
    if (resumed)
        MHD_run(server->daemon);
    ev_io_stop(server->loop, &server->epoll_io);
    ev_io_stop(server->loop, &server->listen_io);
    ev_timer_stop(server->loop, &server->timeout_timer);
    ev_timer_stop(server->loop, &server->deadline_timer);
    ev_timer_stop(server->loop, &server->resume_timer);
    /* Closes every connection (running completed_cb for each); the
     * listening socket is ours. */
    MHD_stop_daemon(server->daemon);
    close(server->listen_fd);
    tls_free(server);
    free(server);
}

