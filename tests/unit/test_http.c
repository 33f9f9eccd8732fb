/* HTTP: the libmicrohttpd server on a libev loop, and the libcurl client.
 *
 * Each server test runs the loop on its own thread (the server never makes
 * one); the test thread is the client. The handler records what it saw
 * under a mutex and answers according to the path. Only 127.0.0.1 and
 * kernel-chosen ports are used. */
#include "tests/unit/support.h"

#include "net/http.h"
#include "controller/http_client.h"

#include <curl/curl.h>
#include <ev.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "net/net.h"
#include "pki/pki.h"

#define CLIENT_TIMEOUT_MS 5000L

struct seen {
    int calls;
    char method[16];
    char path[256];
    char query[256];
    char authorization[256];
    bool has_authorization;
    char *body;
    size_t body_len;
};

struct fixture {
    struct ev_loop *loop;
    ev_async stop;
    pthread_t thread;
    struct http_server *server;
    char base[64];
    pthread_mutex_t lock;
    struct seen seen;
    int extra_fd; /* a client connection a test leaves open for teardown */
    ev_timer later;                  /* answers /later's deferred request */
    struct http_deferred *deferred;  /* /later's, then /park's (never answered) */
};

/* ---- handler ------------------------------------------------------------ */

/* The handler runs on the loop thread, where a cmocka assertion cannot
 * unwind; running out of memory there just aborts the test binary. */
static void *
xmalloc(size_t len)
{
    void *p = malloc(len);
    if (p == NULL)
        abort();
    return p;
}

static void
copy_text(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src);
}

static void
record(struct fixture *fx, const struct http_request *request)
{
    pthread_mutex_lock(&fx->lock);
    struct seen *seen = &fx->seen;
    seen->calls++;
    copy_text(seen->method, sizeof(seen->method), request->method);
    copy_text(seen->path, sizeof(seen->path), request->path);
    copy_text(seen->query, sizeof(seen->query), request->query);
    seen->has_authorization = request->authorization != NULL;
    copy_text(seen->authorization, sizeof(seen->authorization),
              request->authorization != NULL ? request->authorization : "");
    free(seen->body);
    seen->body = xmalloc(request->body_len + 1);
    memcpy(seen->body, request->body, request->body_len + 1);
    seen->body_len = request->body_len;
    pthread_mutex_unlock(&fx->lock);
}

static char *
filled(size_t len, char c)
{
    char *text = xmalloc(len + 1);
    memset(text, c, len);
    text[len] = '\0';
    return text;
}

static void
later_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct fixture *fx = w->data;
    struct http_response response = {.status = 202, .body = strdup("{\"later\":true}")};
    http_deferred_respond(fx->deferred, &response);
    fx->deferred = NULL;
}

static void
handler(void *ctx, const struct http_request *request, struct http_response *response)
{
    struct fixture *fx = ctx;
    record(ctx, request);
    const char *path = request->path;
    if (strcmp(path, "/later") == 0 || strcmp(path, "/park") == 0) {
        fx->deferred = http_defer(response);
        if (fx->deferred == NULL)
            abort();
        if (strcmp(path, "/later") == 0) {
            ev_timer_init(&fx->later, later_cb, 0.5, 0);
            fx->later.data = fx;
            ev_timer_start(fx->loop, &fx->later);
        }
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        response->content_type = "text/plain; version=0.0.4";
        response->body = strdup("up 1\n");
    } else if (strcmp(path, "/empty") == 0) {
        response->status = 204;
    } else if (strcmp(path, "/missing") == 0) {
        http_respond_error(response, 404, "no \"such\" thing\\here\n");
    } else if (strcmp(path, "/binary") == 0) {
        response->content_type = "application/octet-stream";
        response->body = xmalloc(3);
        memcpy(response->body, "a\0b", 3);
        response->body_len = 3;
    } else if (strcmp(path, "/big") == 0) {
        response->body = filled(HTTP_BODY_MAX + 1, 'x');
    } else {
        response->status = strcmp(request->method, "POST") == 0 ? 201 : 200;
        response->body = strdup("{\"ok\":true}");
    }
}

/* Refuses /gated without an Authorization header, as the admin API's gate
 * refuses a request without its token; everything else goes on. */
static bool
gate(void *ctx, const struct http_request *request, struct http_response *response)
{
    (void)ctx;
    if (strcmp(request->path, "/gated") != 0 || request->authorization != NULL)
        return true;
    http_respond_error(response, 401, "unauthorized");
    return false;
}

/* ---- loop thread -------------------------------------------------------- */

static void
stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void *
loop_main(void *arg)
{
    struct fixture *fx = arg;
    ev_run(fx->loop, 0);
    return NULL;
}

static int
setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    pthread_mutex_init(&fx->lock, NULL);
    fx->extra_fd = -1;
    fx->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(fx->loop);
    struct ztr_err err = {0};
    assert_int_equal(http_server_start(fx->loop, "127.0.0.1:0", handler, fx, &fx->server, &err),
                     0);
    assert_int_not_equal(http_server_port(fx->server), 0);
    http_server_set_gate(fx->server, gate);
    snprintf(fx->base, sizeof(fx->base), "http://127.0.0.1:%u",
             (unsigned)http_server_port(fx->server));
    ev_async_init(&fx->stop, stop_cb);
    ev_async_start(fx->loop, &fx->stop);
    assert_int_equal(pthread_create(&fx->thread, NULL, loop_main, fx), 0);
    *state = fx;
    return 0;
}

/* The loop thread is joined first, so stopping the server never races it. */
static int
teardown(void **state)
{
    struct fixture *fx = *state;
    ev_async_send(fx->loop, &fx->stop);
    pthread_join(fx->thread, NULL);
    http_server_stop(fx->server);
    if (fx->extra_fd >= 0)
        close(fx->extra_fd);
    ev_async_stop(fx->loop, &fx->stop);
    ev_loop_destroy(fx->loop);
    pthread_mutex_destroy(&fx->lock);
    free(fx->seen.body);
    free(fx);
    return 0;
}

static struct seen
seen_now(struct fixture *fx)
{
    pthread_mutex_lock(&fx->lock);
    struct seen copy = fx->seen;
    pthread_mutex_unlock(&fx->lock);
    return copy;
}

static char *
url(const struct fixture *fx, const char *path)
{
    size_t len = strlen(fx->base) + strlen(path) + 1;
    char *text = malloc(len);
    assert_non_null(text);
    snprintf(text, len, "%s%s", fx->base, path);
    return text;
}

/* One request through our client; fails the test if no response came. */
static char *
request_ok(struct fixture *fx, const char *method, const char *path, const char *bearer,
           const char *body, long *status)
{
    char *target = url(fx, path);
    char *reply = NULL;
    struct ztr_err err = {0};
    int rc = http_client_request(method, target, bearer, body, CLIENT_TIMEOUT_MS, status,
                                 &reply, &err);
    if (rc != 0)
        fail_msg("%s %s: %s", method, target, err.msg);
    free(target);
    assert_non_null(reply);
    return reply;
}

/* ---- raw sockets, for what the client cannot send ------------------------ */

static int
raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

/* Writes as much as the peer takes; false once it stops taking. */
static bool
raw_send(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

/* Reads until the server closes (every raw request says Connection: close). */
static char *
raw_read_all(int fd)
{
    size_t cap = 4096, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (;;) {
        if (cap - len < 1024) {
            cap *= 2;
            text = realloc(text, cap);
            assert_non_null(text);
        }
        ssize_t n = recv(fd, text + len, cap - len - 1, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    text[len] = '\0';
    return text;
}

static char *
raw_exchange(struct fixture *fx, const char *request, size_t len)
{
    int fd = raw_connect(http_server_port(fx->server));
    assert_true(raw_send(fd, request, len));
    char *reply = raw_read_all(fd);
    close(fd);
    return reply;
}

/* ---- requests reach the handler ------------------------------------------ */

static void
test_get_passes_method_path_raw_query_and_authorization(void **state)
{
    struct fixture *fx = *state;
    long status = 0;
    char *reply = request_ok(fx, "GET", "/v1/things?a=1&b=two%20words&a=3", "tok-123", NULL,
                             &status);
    assert_int_equal(status, 200);
    assert_string_equal(reply, "{\"ok\":true}");
    struct seen seen = seen_now(fx);
    assert_int_equal(seen.calls, 1);
    assert_string_equal(seen.method, "GET");
    assert_string_equal(seen.path, "/v1/things");
    assert_string_equal(seen.query, "a=1&b=two%20words&a=3");
    assert_true(seen.has_authorization);
    assert_string_equal(seen.authorization, "Bearer tok-123");
    assert_string_equal(seen.body, "");
    assert_int_equal(seen.body_len, 0);
    free(reply);
}

static void
test_path_is_decoded_and_query_kept_raw(void **state)
{
    struct fixture *fx = *state;
    long status = 0;
    char *reply = request_ok(fx, "GET", "/v1/a%20b?x=%2F+y&&z", NULL, NULL, &status);
    free(reply);
    struct seen seen = seen_now(fx);
    assert_string_equal(seen.path, "/v1/a b");
    assert_string_equal(seen.query, "x=%2F+y&&z");
}

static void
test_post_passes_body_and_no_authorization(void **state)
{
    struct fixture *fx = *state;
    long status = 0;
    const char *body = "{\"name\":\"edge-1\",\"tags\":[\"a\",\"b\"]}";
    char *reply = request_ok(fx, "POST", "/v1/agents", NULL, body, &status);
    assert_int_equal(status, 201);
    free(reply);
    struct seen seen = seen_now(fx);
    assert_string_equal(seen.method, "POST");
    assert_string_equal(seen.path, "/v1/agents");
    assert_string_equal(seen.query, "");
    assert_false(seen.has_authorization);
    assert_int_equal(seen.body_len, strlen(body));
    assert_string_equal(seen.body, body);
}

static void
test_delete_and_put_and_patch_are_passed_through(void **state)
{
    struct fixture *fx = *state;
    long status = 0;
    char *reply = request_ok(fx, "DELETE", "/v1/agents/7?force=1", "t0k3n-abc", NULL, &status);
    assert_int_equal(status, 200);
    free(reply);
    struct seen seen = seen_now(fx);
    assert_string_equal(seen.method, "DELETE");
    assert_string_equal(seen.path, "/v1/agents/7");
    assert_string_equal(seen.query, "force=1");
    assert_string_equal(seen.authorization, "Bearer t0k3n-abc");
    assert_int_equal(seen.body_len, 0);

    reply = request_ok(fx, "PUT", "/v1/agents/7", NULL, "{\"x\":1}", &status);
    free(reply);
    seen = seen_now(fx);
    assert_string_equal(seen.method, "PUT");
    assert_string_equal(seen.body, "{\"x\":1}");

    reply = request_ok(fx, "PATCH", "/v1/agents/7", NULL, "{}", &status);
    free(reply);
    seen = seen_now(fx);
    assert_string_equal(seen.method, "PATCH");
    assert_string_equal(seen.body, "{}");
    assert_int_equal(seen.calls, 3);
}

static void
test_post_without_body_sends_empty_body(void **state)
{
    struct fixture *fx = *state;
    long status = 0;
    char *reply = request_ok(fx, "POST", "/v1/rotate", "tok", NULL, &status);
    assert_int_equal(status, 201);
    free(reply);
    struct seen seen = seen_now(fx);
    assert_string_equal(seen.method, "POST");
    assert_int_equal(seen.body_len, 0);
}

static void
test_empty_response_body_and_status(void **state)
{
    struct fixture *fx = *state;
    long status = 0;
    char *reply = request_ok(fx, "DELETE", "/empty", NULL, NULL, &status);
    assert_int_equal(status, 204);
    assert_string_equal(reply, "");
    free(reply);
}

static void
test_error_response_is_escaped_json(void **state)
{
    struct fixture *fx = *state;
    long status = 0;
    char *reply = request_ok(fx, "GET", "/missing", NULL, NULL, &status);
    assert_int_equal(status, 404);
    assert_string_equal(reply, "{\"error\":\"no \\\"such\\\" thing\\\\here\\n\"}");
    free(reply);
}

/* ---- content types and unusual content ----------------------------------- */

static void
test_content_type_defaults_to_json(void **state)
{
    struct fixture *fx = *state;
    static const char req[] = "GET /v1/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    char *reply = raw_exchange(fx, req, sizeof(req) - 1);
    assert_non_null(strstr(reply, "HTTP/1.1 200"));
    assert_non_null(strstr(reply, "Content-Type: application/json\r\n"));
    assert_non_null(strstr(reply, "\r\n\r\n{\"ok\":true}"));
    free(reply);
}

static void
test_handler_content_type_is_kept(void **state)
{
    struct fixture *fx = *state;
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    char *reply = raw_exchange(fx, req, sizeof(req) - 1);
    assert_non_null(strstr(reply, "Content-Type: text/plain; version=0.0.4\r\n"));
    assert_non_null(strstr(reply, "\r\n\r\nup 1\n"));
    free(reply);
}

/* A body of any type, NULs included, reaches the handler byte for byte. */
static void
test_binary_body_of_unknown_type_passes_raw(void **state)
{
    struct fixture *fx = *state;
    static const char req[] = "POST /upload HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                              "Content-Type: application/x-unknown\r\n"
                              "Content-Length: 5\r\n\r\nx\0y\0z";
    char *reply = raw_exchange(fx, req, sizeof(req) - 1);
    assert_non_null(strstr(reply, "HTTP/1.1 201"));
    free(reply);
    struct seen seen = seen_now(fx);
    assert_int_equal(seen.body_len, 5);
    assert_memory_equal(seen.body, "x\0y\0z", 5);
    assert_int_equal(seen.body[5], '\0');
}

/* Form-encoded bodies are not parsed by the server: the handler gets them raw. */
static void
test_form_body_is_not_interpreted(void **state)
{
    struct fixture *fx = *state;
    static const char req[] = "POST /form?q=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                              "Content-Type: application/x-www-form-urlencoded\r\n"
                              "Content-Length: 7\r\n\r\na=1&b=2";
    char *reply = raw_exchange(fx, req, sizeof(req) - 1);
    free(reply);
    struct seen seen = seen_now(fx);
    assert_string_equal(seen.query, "q=1");
    assert_string_equal(seen.body, "a=1&b=2");
}

static void
test_binary_response_body_with_explicit_length(void **state)
{
    struct fixture *fx = *state;
    static const char req[] = "GET /binary HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    int fd = raw_connect(http_server_port(fx->server));
    assert_true(raw_send(fd, req, sizeof(req) - 1));
    char buf[1024];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(buf) && (n = recv(fd, buf + len, sizeof(buf) - len, 0)) > 0)
        len += (size_t)n;
    close(fd);
    assert_true(len > 3);
    assert_memory_equal(buf + len - 3, "a\0b", 3);
}

static void
test_chunked_body_is_collected(void **state)
{
    struct fixture *fx = *state;
    static const char req[] = "POST /chunks HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n"
                              "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n";
    char *reply = raw_exchange(fx, req, sizeof(req) - 1);
    assert_non_null(strstr(reply, "HTTP/1.1 201"));
    free(reply);
    struct seen seen = seen_now(fx);
    assert_string_equal(seen.body, "abcdefg");
}

/* ---- bounds -------------------------------------------------------------- */

static void
test_body_at_limit_is_accepted(void **state)
{
    struct fixture *fx = *state;
    char *body = filled(HTTP_BODY_MAX, 'a');
    long status = 0;
    char *reply = request_ok(fx, "POST", "/v1/bulk", NULL, body, &status);
    assert_int_equal(status, 201);
    free(reply);
    free(body);
    struct seen seen = seen_now(fx);
    assert_int_equal(seen.body_len, HTTP_BODY_MAX);
}

static void
test_body_over_limit_gets_413_without_handler(void **state)
{
    struct fixture *fx = *state;
    char *body = filled(HTTP_BODY_MAX + 1, 'a');
    long status = 0;
    char *reply = request_ok(fx, "POST", "/v1/bulk", NULL, body, &status);
    assert_int_equal(status, 413);
    assert_non_null(strstr(reply, "{\"error\":\"request body larger than"));
    free(reply);
    free(body);
    assert_int_equal(seen_now(fx).calls, 0);
}

/* The gate answers once the headers are in: a declared body that never
 * comes is not waited for (the read would time out after 5 s), and the
 * handler never runs. */
static void
test_gate_refuses_before_the_body_is_read(void **state)
{
    struct fixture *fx = *state;
    static const char request[] = "POST /gated HTTP/1.1\r\nHost: x\r\n"
                                  "Content-Length: 1000000\r\nConnection: close\r\n\r\n";
    char *reply = raw_exchange(fx, request, sizeof(request) - 1);
    assert_non_null(strstr(reply, "HTTP/1.1 401"));
    assert_non_null(strstr(reply, "{\"error\":\"unauthorized\"}"));
    free(reply);
    assert_int_equal(seen_now(fx).calls, 0);
}

static void
test_gate_lets_a_passing_request_reach_the_handler(void **state)
{
    struct fixture *fx = *state;
    long status = 0;
    char *reply = request_ok(fx, "POST", "/gated", "tok", "{\"a\":1}", &status);
    assert_int_equal(status, 201);
    free(reply);
    struct seen seen = seen_now(fx);
    assert_int_equal(seen.calls, 1);
    assert_string_equal(seen.body, "{\"a\":1}");
}

/* Without a Content-Length the limit is found while reading. */
static void
test_chunked_body_over_limit_gets_413(void **state)
{
    struct fixture *fx = *state;
    int fd = raw_connect(http_server_port(fx->server));
    static const char head[] = "POST /v1/bulk HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n";
    assert_true(raw_send(fd, head, sizeof(head) - 1));
    size_t chunk_len = 64 * 1024;
    char *chunk = filled(chunk_len, 'z');
    char size_line[32];
    snprintf(size_line, sizeof(size_line), "%zx\r\n", chunk_len);
    bool sending = true;
    for (size_t sent = 0; sending && sent <= HTTP_BODY_MAX; sent += chunk_len) {
        sending = raw_send(fd, size_line, strlen(size_line)) && raw_send(fd, chunk, chunk_len) &&
                  raw_send(fd, "\r\n", 2);
    }
    if (sending)
        raw_send(fd, "0\r\n\r\n", 5);
    char *reply = raw_read_all(fd);
    close(fd);
    assert_non_null(strstr(reply, "HTTP/1.1 413"));
    free(reply);
    free(chunk);
    assert_int_equal(seen_now(fx).calls, 0);
}

static void
test_client_refuses_response_over_limit(void **state)
{
    struct fixture *fx = *state;
    char *target = url(fx, "/big");
    long status = -1;
    char *reply = (char *)1;
    struct ztr_err err = {0};
    assert_int_equal(
        http_client_request("GET", target, NULL, NULL, CLIENT_TIMEOUT_MS, &status, &reply, &err),
        -1);
    assert_int_equal(err.code, ZTR_E_LIMIT);
    assert_non_null(strstr(err.msg, "response larger than 1048576 bytes"));
    assert_null(reply);
    free(target);
}

/* ---- lifecycle ------------------------------------------------------------ */

/* Connections left mid-request when the server stops are freed with it
 * (ASan's leak check runs at exit); a client that vanishes mid-request is
 * cleaned up while the server runs. */
static void
test_stop_with_requests_in_flight_frees_them(void **state)
{
    struct fixture *fx = *state;
    uint16_t port = http_server_port(fx->server);
    int gone = raw_connect(port);
    static const char partial_head[] = "GET /gone?x=1 HTTP/1.1\r\nHost: t\r\n";
    assert_true(raw_send(gone, partial_head, sizeof(partial_head) - 1));
    int idle = raw_connect(port);
    static const char partial_body[] = "POST /slow?y=2 HTTP/1.1\r\nHost: t\r\n"
                                       "Content-Length: 100\r\n\r\nonly part";
    assert_true(raw_send(idle, partial_body, sizeof(partial_body) - 1));
    /* A full request on a third connection: by the time it is answered
     * the loop has most likely read the other two as well. */
    long status = 0;
    char *reply = request_ok(fx, "GET", "/v1/x", NULL, NULL, &status);
    free(reply);
    close(gone);
    usleep(50 * 1000);
    assert_int_equal(seen_now(fx).calls, 1);
    fx->extra_fd = idle; /* teardown stops the server with it still open */
}

static void
test_stop_null_is_fine(void **state)
{
    (void)state;
    http_server_stop(NULL);
}

static void
test_second_server_on_same_port_reports_address_in_use(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct http_server *first = NULL, *second = (struct http_server *)1;
    struct ztr_err err = {0};
    assert_int_equal(http_server_start(loop, "127.0.0.1:0", handler, NULL, &first, &err), 0);
    char addr[64], expected[128];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)http_server_port(first));
    snprintf(expected, sizeof(expected), "listen %s: bind: address already in use", addr);
    assert_int_equal(http_server_start(loop, addr, handler, NULL, &second, &err), -1);
    assert_string_equal(err.msg, expected);
    assert_int_equal(err.code, ZTR_E_IO);
    assert_null(second);
    http_server_stop(first);
    ev_loop_destroy(loop);
}

static void
test_invalid_listen_address_is_refused(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct http_server *server = (struct http_server *)1;
    struct ztr_err err = {0};
    assert_int_equal(http_server_start(loop, "admin.example:8080", handler, NULL, &server, &err),
                     -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_non_null(strstr(err.msg, "admin.example:8080"));
    assert_null(server);
    ev_loop_destroy(loop);
}

/* A server restarted on the port of a stopped one binds again: stop really
 * closed the listening socket. */
static void
test_port_is_free_again_after_stop(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct http_server *server = NULL;
    struct ztr_err err = {0};
    assert_int_equal(http_server_start(loop, "127.0.0.1:0", handler, NULL, &server, &err), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)http_server_port(server));
    http_server_stop(server);
    server = NULL;
    if (http_server_start(loop, addr, handler, NULL, &server, &err) != 0)
        fail_msg("%s", err.msg);
    http_server_stop(server);
    ev_loop_destroy(loop);
}

/* ---- http_respond_error --------------------------------------------------- */

static void
test_respond_error_escapes_and_replaces_body(void **state)
{
    (void)state;
    struct http_response response = {.status = 200, .body = strdup("old")};
    http_respond_error(&response, 400, "bad \"name\"\t\\ \x01");
    assert_int_equal(response.status, 400);
    assert_string_equal(response.content_type, "application/json");
    assert_string_equal(response.body, "{\"error\":\"bad \\\"name\\\"\\t\\\\ \\u0001\"}");
    free(response.body);
}

static void
test_respond_error_with_invalid_utf8_stays_json(void **state)
{
    (void)state;
    struct http_response response = {0};
    http_respond_error(&response, 500, "bad \xff byte");
    assert_int_equal(response.status, 500);
    assert_non_null(response.body);
    assert_int_equal(response.body[0], '{');
    assert_non_null(strstr(response.body, "\"error\":"));
    free(response.body);
}

/* ---- client failures ------------------------------------------------------ */

/* A socket that listens but never accepts: the connection completes in the
 * kernel, the request is never read, the client gives up at its timeout. */
static void
test_client_times_out(void **state)
{
    (void)state;
    int fd = -1;
    struct ztr_err err = {0};
    assert_int_equal(net_listen("127.0.0.1:0", 1, &fd, &err), 0);
    char target[64], expected[128];
    snprintf(target, sizeof(target), "http://127.0.0.1:%u/v1/x", (unsigned)net_local_port(fd));
    snprintf(expected, sizeof(expected), "GET %s: timed out after 200 ms", target);
    long status = -1;
    char *reply = (char *)1;
    assert_int_equal(
        http_client_request("GET", target, "secret-bearer", NULL, 200, &status, &reply, &err),
        -1);
    assert_int_equal(err.code, ZTR_E_IO);
    assert_string_equal(err.msg, expected);
    assert_int_equal(status, 0);
    assert_null(reply);
    close(fd);
}

static void
test_client_reports_refused_connection(void **state)
{
    (void)state;
    int fd = -1;
    struct ztr_err err = {0};
    assert_int_equal(net_listen("127.0.0.1:0", 1, &fd, &err), 0);
    char target[64], expected[128];
    snprintf(target, sizeof(target), "http://127.0.0.1:%u/v1/x", (unsigned)net_local_port(fd));
    close(fd);
    snprintf(expected, sizeof(expected), "POST %s: connect: connection refused", target);
    long status = -1;
    char *reply = NULL;
    assert_int_equal(http_client_request("POST", target, "secret-bearer", "{}", CLIENT_TIMEOUT_MS,
                                         &status, &reply, &err),
                     -1);
    assert_string_equal(err.msg, expected);
    assert_null(strstr(err.msg, "secret-bearer"));
    assert_null(reply);
}

static void
test_client_refuses_bearer_with_line_break_without_echoing_it(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    char *reply = NULL;
    assert_int_equal(http_client_request("GET", "http://127.0.0.1:1/", "abc\r\nX-Evil: 1", NULL,
                                         CLIENT_TIMEOUT_MS, NULL, &reply, &err),
                     -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_null(strstr(err.msg, "abc"));
    assert_null(strstr(err.msg, "X-Evil"));
}

static void
test_client_refuses_bad_method_and_timeout(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    assert_int_equal(http_client_request("GET /x HTTP/1.0\r\n", "http://127.0.0.1:1/", NULL,
                                         NULL, CLIENT_TIMEOUT_MS, NULL, NULL, &err),
                     -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_int_equal(
        http_client_request("GET", "http://127.0.0.1:1/", NULL, NULL, 0, NULL, NULL, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
}

static void
test_client_refuses_non_http_urls(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    assert_int_equal(http_client_request("GET", "file:///etc/passwd", NULL, NULL,
                                         CLIENT_TIMEOUT_MS, NULL, NULL, &err),
                     -1);
    assert_int_equal(err.code, ZTR_E_IO);
}

/* ---- TLS -------------------------------------------------------------------- */

/* A CA of its own and a server certificate for 127.0.0.1 it signed. */
struct test_server_cert {
    struct pki_ca *ca;
    char *ca_pem;
    char *cert_pem;
    char *key_pem;
    size_t key_len;
};

static void
make_server_cert(const char *ca_name, struct test_server_cert *out)
{
    struct ztr_err err = {0};
    int64_t now = (int64_t)time(NULL);
    size_t len;
    memset(out, 0, sizeof(*out));
    assert_int_equal(pki_ca_create_named(ca_name, now, 86400, &out->ca, &err), 0);
    assert_int_equal(pki_ca_cert_pem(out->ca, &out->ca_pem, &len, &err), 0);
    struct pki_key *key;
    assert_int_equal(pki_key_generate(&key, &err), 0);
    uint8_t *spki;
    size_t spki_len;
    assert_int_equal(pki_key_public_der(key, &spki, &spki_len, &err), 0);
    struct pki_ip ip;
    assert_int_equal(pki_ip_parse("127.0.0.1", &ip), 0);
    struct pki_server_request request = {
        .common_name = "test server", .public_der = spki, .public_len = spki_len,
        .ips = &ip, .ip_count = 1, .not_before = now - 60, .not_after = now + 3600};
    if (pki_ca_issue_server(out->ca, &request, &out->cert_pem, &len, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(pki_key_to_pem(key, &out->key_pem, &out->key_len, &err), 0);
    free(spki);
    pki_key_free(key);
}

static void
server_cert_free(struct test_server_cert *c)
{
    pki_ca_free(c->ca);
    free(c->ca_pem);
    free(c->cert_pem);
    free(c->key_pem);
}

struct tls_fixture {
    struct fixture fx;     /* first: the handler's ctx and the raw helpers */
    struct test_server_cert a, b;
    char *dir;
    char *ca_a_file, *ca_b_file;
};

static void
start_loop_thread(struct fixture *fx)
{
    assert_int_equal(pthread_create(&fx->thread, NULL, loop_main, fx), 0);
}

static void
stop_loop_thread(struct fixture *fx)
{
    ev_async_send(fx->loop, &fx->stop);
    pthread_join(fx->thread, NULL);
}

static int
tls_setup(void **state)
{
    struct tls_fixture *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    struct fixture *fx = &t->fx;
    struct ztr_err err = {0};
    assert_int_equal(pki_init(&err), 0);
    make_server_cert("test CA a", &t->a);
    make_server_cert("test CA b", &t->b);
    t->dir = test_mkdtemp();
    t->ca_a_file = test_path(t->dir, "a.pem");
    t->ca_b_file = test_path(t->dir, "b.pem");
    test_write_file(t->ca_a_file, t->a.ca_pem);
    test_write_file(t->ca_b_file, t->b.ca_pem);
    pthread_mutex_init(&fx->lock, NULL);
    fx->extra_fd = -1;
    fx->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(fx->loop);
    struct http_tls tls = {t->a.cert_pem, t->a.key_pem};
    if (http_server_start_tls(fx->loop, "127.0.0.1:0", &tls, handler, fx, &fx->server, &err) != 0)
        fail_msg("%s", err.msg);
    snprintf(fx->base, sizeof(fx->base), "https://127.0.0.1:%u",
             (unsigned)http_server_port(fx->server));
    ev_async_init(&fx->stop, stop_cb);
    ev_async_start(fx->loop, &fx->stop);
    start_loop_thread(fx);
    *state = t;
    return 0;
}

static int
tls_teardown(void **state)
{
    struct tls_fixture *t = *state;
    struct fixture *fx = &t->fx;
    stop_loop_thread(fx);
    http_server_stop(fx->server);
    ev_async_stop(fx->loop, &fx->stop);
    ev_loop_destroy(fx->loop);
    pthread_mutex_destroy(&fx->lock);
    free(fx->seen.body);
    server_cert_free(&t->a);
    server_cert_free(&t->b);
    test_rmtree(t->dir);
    free(t->dir);
    free(t->ca_a_file);
    free(t->ca_b_file);
    free(t);
    pki_cleanup();
    return 0;
}

static int
tls_get(struct tls_fixture *t, const char *ca_file, long *status, struct ztr_err *err)
{
    char *target = url(&t->fx, "/v1/x");
    char *reply = NULL;
    int rc = http_client_request_ca("GET", target, ca_file, "tok-123", NULL, CLIENT_TIMEOUT_MS,
                                    status, &reply, err);
    free(reply);
    free(target);
    return rc;
}

static void
test_tls_request_with_the_servers_ca_is_served(void **state)
{
    struct tls_fixture *t = *state;
    long status = 0;
    struct ztr_err err = {0};
    if (tls_get(t, t->ca_a_file, &status, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(status, 200);
    struct seen seen = seen_now(&t->fx);
    assert_int_equal(seen.calls, 1);
    assert_string_equal(seen.authorization, "Bearer tok-123");
}

/* The bearer never leaves the client for a server it cannot verify. */
static void
test_tls_server_of_another_ca_is_refused(void **state)
{
    struct tls_fixture *t = *state;
    long status = 0;
    struct ztr_err err = {0};
    assert_int_equal(tls_get(t, t->ca_b_file, &status, &err), -1);
    assert_int_equal(err.code, HTTP_CLIENT_E_UNTRUSTED);
    assert_non_null(strstr(err.msg, "certificate"));
    assert_int_equal(status, 0);
    assert_int_equal(seen_now(&t->fx).calls, 0);
}

static void
test_tls_plain_http_gets_no_http_answer(void **state)
{
    struct tls_fixture *t = *state;
    static const char request[] = "GET /v1/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    char *reply = raw_exchange(&t->fx, request, sizeof(request) - 1);
    assert_null(strstr(reply, "HTTP/"));
    free(reply);
    assert_int_equal(seen_now(&t->fx).calls, 0);
}

static void
test_tls_1_2_is_refused(void **state)
{
    struct tls_fixture *t = *state;
    CURL *curl = curl_easy_init();
    assert_non_null(curl);
    char *target = url(&t->fx, "/v1/x");
    curl_easy_setopt(curl, CURLOPT_URL, target);
    curl_easy_setopt(curl, CURLOPT_CAINFO, t->ca_a_file);
    curl_easy_setopt(curl, CURLOPT_SSLVERSION,
                     (long)(CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, CLIENT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(curl);
    assert_int_not_equal(rc, CURLE_OK);
    curl_easy_cleanup(curl);
    free(target);
    assert_int_equal(seen_now(&t->fx).calls, 0);
}

/* A reissued certificate (another CA here, to tell them apart) serves the
 * next connection; the old one is no longer presented. */
static void
test_tls_credentials_change_on_a_running_server(void **state)
{
    struct tls_fixture *t = *state;
    stop_loop_thread(&t->fx);
    struct http_tls fresh = {t->b.cert_pem, t->b.key_pem};
    struct ztr_err err = {0};
    if (http_server_set_tls(t->fx.server, &fresh, &err) != 0)
        fail_msg("%s", err.msg);
    /* Refused credentials leave the server as it was. */
    struct http_tls mismatched = {t->a.cert_pem, t->b.key_pem};
    assert_int_equal(http_server_set_tls(t->fx.server, &mismatched, &err), -1);
    assert_non_null(strstr(err.msg, "TLS certificate or key refused"));
    start_loop_thread(&t->fx);
    long status = 0;
    if (tls_get(t, t->ca_b_file, &status, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(status, 200);
    assert_int_equal(tls_get(t, t->ca_a_file, &status, &err), -1);
    assert_int_equal(seen_now(&t->fx).calls, 1);
}

static void
test_tls_check_names_what_is_wrong(void **state)
{
    struct tls_fixture *t = *state;
    struct ztr_err err = {0};
    struct http_tls good = {t->a.cert_pem, t->a.key_pem};
    if (http_tls_check(&good, &err) != 0)
        fail_msg("%s", err.msg);
    struct http_tls mismatched = {t->a.cert_pem, t->b.key_pem};
    assert_int_equal(http_tls_check(&mismatched, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_non_null(strstr(err.msg, "TLS certificate or key refused: "));
    struct http_tls garbage = {"not a certificate", t->a.key_pem};
    assert_int_equal(http_tls_check(&garbage, &err), -1);
    assert_non_null(strstr(err.msg, "TLS certificate or key refused: "));
    struct http_tls no_key = {t->a.cert_pem, NULL};
    assert_int_equal(http_tls_check(&no_key, &err), -1);
    /* Nothing of the refused material reaches the log or the error. */
    assert_null(strstr(err.msg, "PRIVATE KEY"));
}

static void
test_plain_server_cannot_switch_to_tls(void **state)
{
    struct fixture *fx = *state;
    struct http_tls tls = {"x", "y"};
    struct ztr_err err = {0};
    stop_loop_thread(fx);
    assert_int_equal(http_server_set_tls(fx->server, &tls, &err), -1);
    start_loop_thread(fx);
}

#define SERVER_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define TLS_TEST(fn) cmocka_unit_test_setup_teardown(fn, tls_setup, tls_teardown)

/* ---- deferred answers ------------------------------------------------------ */

struct background_request {
    struct fixture *fx;
    long status;
    char *reply;
    struct timespec done;
};

static void *
background_get(void *arg)
{
    struct background_request *b = arg;
    char *target = url(b->fx, "/later");
    struct ztr_err err = {0};
    if (http_client_request("GET", target, NULL, NULL, CLIENT_TIMEOUT_MS, &b->status, &b->reply,
                            &err) != 0)
        b->status = -1;
    clock_gettime(CLOCK_MONOTONIC, &b->done);
    free(target);
    return NULL;
}

static void
test_deferred_answer_arrives_later_and_others_are_served_meanwhile(void **state)
{
    struct fixture *fx = *state;
    struct background_request b = {.fx = fx};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, background_get, &b), 0);
    while (seen_now(fx).calls == 0)
        usleep(1000);
    long status = 0;
    char *reply = request_ok(fx, "GET", "/metrics", NULL, NULL, &status);
    struct timespec served;
    clock_gettime(CLOCK_MONOTONIC, &served);
    assert_int_equal(status, 200);
    free(reply);
    pthread_join(thread, NULL);
    assert_int_equal(b.status, 202);
    assert_string_equal(b.reply, "{\"later\":true}");
    free(b.reply);
    /* The other request did not wait for the deferred one. */
    double gap = (double)(b.done.tv_sec - served.tv_sec) +
                 (double)(b.done.tv_nsec - served.tv_nsec) / 1e9;
    assert_true(gap > 0.2);
}

static void
test_stopping_server_answers_a_waiting_request_503(void **state)
{
    struct fixture *fx = *state;
    int fd = raw_connect(http_server_port(fx->server));
    const char *request = "GET /park HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_true(raw_send(fd, request, strlen(request)));
    while (seen_now(fx).calls == 0)
        usleep(1000);
    ev_async_send(fx->loop, &fx->stop);
    pthread_join(fx->thread, NULL);
    http_server_stop(fx->server);
    fx->server = NULL;
    char *reply = raw_read_all(fd);
    close(fd);
    assert_non_null(strstr(reply, " 503 "));
    assert_non_null(strstr(reply, "server stopping"));
    free(reply);
    /* The handle is still the owner's: answering it now frees it. */
    struct http_response late = {.status = 200, .body = strdup("{}")};
    http_deferred_respond(fx->deferred, &late);
    fx->deferred = NULL;
    assert_null(late.body);
    /* teardown joins the loop thread again: start an empty one. */
    assert_int_equal(pthread_create(&fx->thread, NULL, loop_main, fx), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        SERVER_TEST(test_get_passes_method_path_raw_query_and_authorization),
        SERVER_TEST(test_path_is_decoded_and_query_kept_raw),
        SERVER_TEST(test_post_passes_body_and_no_authorization),
        SERVER_TEST(test_delete_and_put_and_patch_are_passed_through),
        SERVER_TEST(test_post_without_body_sends_empty_body),
        SERVER_TEST(test_empty_response_body_and_status),
        SERVER_TEST(test_error_response_is_escaped_json),
        SERVER_TEST(test_content_type_defaults_to_json),
        SERVER_TEST(test_handler_content_type_is_kept),
        SERVER_TEST(test_binary_body_of_unknown_type_passes_raw),
        SERVER_TEST(test_form_body_is_not_interpreted),
        SERVER_TEST(test_binary_response_body_with_explicit_length),
        SERVER_TEST(test_chunked_body_is_collected),
        SERVER_TEST(test_body_at_limit_is_accepted),
        SERVER_TEST(test_body_over_limit_gets_413_without_handler),
        SERVER_TEST(test_chunked_body_over_limit_gets_413),
        SERVER_TEST(test_client_refuses_response_over_limit),
        SERVER_TEST(test_stop_with_requests_in_flight_frees_them),
        SERVER_TEST(test_gate_refuses_before_the_body_is_read),
        SERVER_TEST(test_gate_lets_a_passing_request_reach_the_handler),
        cmocka_unit_test(test_stop_null_is_fine),
        cmocka_unit_test(test_second_server_on_same_port_reports_address_in_use),
        cmocka_unit_test(test_invalid_listen_address_is_refused),
        cmocka_unit_test(test_port_is_free_again_after_stop),
        cmocka_unit_test(test_respond_error_escapes_and_replaces_body),
        cmocka_unit_test(test_respond_error_with_invalid_utf8_stays_json),
        SERVER_TEST(test_deferred_answer_arrives_later_and_others_are_served_meanwhile),
        SERVER_TEST(test_stopping_server_answers_a_waiting_request_503),
        cmocka_unit_test(test_client_times_out),
        cmocka_unit_test(test_client_reports_refused_connection),
        cmocka_unit_test(test_client_refuses_bearer_with_line_break_without_echoing_it),
        cmocka_unit_test(test_client_refuses_bad_method_and_timeout),
        cmocka_unit_test(test_client_refuses_non_http_urls),
        TLS_TEST(test_tls_request_with_the_servers_ca_is_served),
        TLS_TEST(test_tls_server_of_another_ca_is_refused),
        TLS_TEST(test_tls_plain_http_gets_no_http_answer),
        TLS_TEST(test_tls_1_2_is_refused),
        TLS_TEST(test_tls_credentials_change_on_a_running_server),
        TLS_TEST(test_tls_check_names_what_is_wrong),
        SERVER_TEST(test_plain_server_cannot_switch_to_tls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
