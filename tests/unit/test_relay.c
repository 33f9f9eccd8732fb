/* One relayed stream (data/relay.c): two muxes back to back in memory, a
 * libev loop, and for each side a loopback TCP pair whose one end is the
 * relay's socket and whose other end the test drives as the local peer (the
 * tunneler's client, the connector's target). TCP rather than socketpair so
 * that SO_LINGER 0 resets are observable as ECONNRESET. Everything is driven
 * from the test loop (ev_run NOWAIT, then frames delivered between the
 * muxes, then the peers' non-blocking I/O), with a wall-clock bound on every
 * wait so no test can hang. */
#include "tests/unit/support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "data/mux.h"
#include "data/relay.h"

/* Every wait gives up (and fails the test) after this long. */
#define WAIT_SECONDS 5.0

/* ---- small helpers ---------------------------------------------------------- */




static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Deterministic test data. */
static uint8_t *
pattern(size_t len, uint32_t seed)
{
    uint8_t *p = malloc(len > 0 ? len : 1);
    assert_non_null(p);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)(x >> 11);
    }
    return p;
}

static uint64_t
fnv(const uint8_t *p, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void
set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    assert_true(flags >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
}

static void
set_bufs(int fd, int size)
{
    if (size <= 0)
        return;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)), 0);
}

/* A connected loopback TCP pair, both ends non-blocking. bufsize > 0 shrinks
 * both ends' kernel buffers (set before connect, so the window follows). */
static void
tcp_pair(int *a, int *b, int bufsize)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    set_bufs(l, bufsize);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(l, 1), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c >= 0);
    set_bufs(c, bufsize);
    assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
    int s = accept(l, NULL, NULL);
    assert_true(s >= 0);
    close(l);
    set_nonblock(c);
    set_nonblock(s);
    *a = c;
    *b = s;
}

/* Closes with a TCP RST instead of a FIN. */
static void
abort_fd(int *fd)
{
    struct linger hard = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(*fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard)), 0);
    close(*fd);
    *fd = -1;
}

/* ---- the local peers ---------------------------------------------------------- */

struct peer {
    int fd;                 /* the test's end of the TCP pair; -1 once closed */
    /* receiving */
    bool reading;           /* read whatever arrives on each step */
    size_t read_quota;      /* > 0: read at most this much per step */
    struct test_bytes rx;
    bool eof;               /* recv returned 0 */
    int rx_err;             /* recv failed with this errno */
    /* sending */
    const uint8_t *tx;
    size_t tx_len, tx_off;
    int tx_err;
    int first_err;          /* the socket's first error, by send or recv */
    bool shut_after_tx;     /* shutdown(SHUT_WR) once tx is all out */
    bool shut;
};

static void
peer_io(struct peer *p)
{
    if (p->fd < 0)
        return;
    while (p->tx_off < p->tx_len && p->tx_err == 0) {
        size_t n = p->tx_len - p->tx_off;
        if (n > 65536)
            n = 65536;
        ssize_t w = send(p->fd, p->tx + p->tx_off, n, MSG_NOSIGNAL);
        if (w > 0) {
            p->tx_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        p->tx_err = w < 0 ? errno : EIO;
        if (p->first_err == 0)
            p->first_err = p->tx_err;
    }
    if (p->shut_after_tx && !p->shut && p->tx_off == p->tx_len) {
        assert_int_equal(shutdown(p->fd, SHUT_WR), 0);
        p->shut = true;
    }
    size_t budget = p->read_quota > 0 ? p->read_quota : SIZE_MAX;
    while (p->reading && !p->eof && p->rx_err == 0 && budget > 0) {
        uint8_t buf[65536];
        size_t want = budget < sizeof(buf) ? budget : sizeof(buf);
        ssize_t r = recv(p->fd, buf, want, 0);
        if (r > 0) {
            test_bytes_add(&p->rx, buf, (size_t)r);
            budget -= (size_t)r;
            continue;
        }
        if (r == 0) {
            p->eof = true;
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        p->rx_err = errno;
        if (p->first_err == 0)
            p->first_err = p->rx_err;
    }
}

/* ---- the two sides -------------------------------------------------------------- */

struct fixture;

struct side {
    struct fixture *t;
    const char *name;
    struct mux *mux;
    struct test_bytes out;              /* frames this mux wrote: the other's input */
    uint32_t stream;
    int relay_fd;                  /* handed to relay_new at open / open_ok; -1 after */
    const uint8_t *early;          /* opener: early bytes for relay_new */
    size_t early_len;
    struct relay *relay;           /* NULL before relay_new and after on_done */
    int relay_new_rc;
    int opens, open_oks, fins, stream_closes, session_closes, stray;
    enum mux_code stream_code;
    size_t queued_at_close;        /* relay_queued when on_stream_closed came */
    int done_calls;
    enum mux_code done_code;
    char done_reason[MUX_REASON_MAX];
    struct relay_totals totals;
    size_t max_queued;
};

struct fixture {
    struct ev_loop *loop;
    struct relay_pool *pool;
    struct side op, ac;            /* MUX_OPENER (tunneler), MUX_ACCEPTOR (connector) */
    struct peer opp, acp;          /* the local peers of op's and ac's relays */
    size_t max_chunks;
};

static void
sample(struct fixture *t)
{
    struct side *sides[2] = {&t->op, &t->ac};
    for (int i = 0; i < 2; i++) {
        struct side *s = sides[i];
        if (s->relay != NULL && relay_queued(s->relay) > s->max_queued)
            s->max_queued = relay_queued(s->relay);
    }
    size_t chunks = t->pool != NULL ? relay_pool_chunks_in_use(t->pool) : 0;
    if (chunks > t->max_chunks)
        t->max_chunks = chunks;
}

static void
on_done(void *user, enum mux_code code, const char *reason, const struct relay_totals *totals)
{
    struct side *s = user;
    s->done_calls++;
    s->done_code = code;
    snprintf(s->done_reason, sizeof(s->done_reason), "%s", reason);
    s->totals = *totals;
    s->relay = NULL;
}

static int
cb_write(void *user, const uint8_t *data, size_t len)
{
    struct side *s = user;
    test_bytes_add(&s->out, data, len);
    return 0;
}

static void
cb_open(void *user, uint32_t stream, const char *resource)
{
    struct side *s = user;
    struct ztr_err err = {0};
    s->opens++;
    assert_string_equal(resource, "svc");
    s->stream = stream;
    assert_int_equal(mux_accept(s->mux, stream, &err), 0);
    int fd = s->relay_fd;
    s->relay_fd = -1;
    s->relay_new_rc = relay_new(s->t->loop, s->t->pool, s->mux, stream, fd, NULL, 0, on_done, s,
                                &s->relay, &err);
}

static void
cb_open_ok(void *user, uint32_t stream)
{
    struct side *s = user;
    struct ztr_err err = {0};
    s->open_oks++;
    assert_int_equal(stream, s->stream);
    int fd = s->relay_fd;
    s->relay_fd = -1;
    s->relay_new_rc = relay_new(s->t->loop, s->t->pool, s->mux, stream, fd, s->early,
                                s->early_len, on_done, s, &s->relay, &err);
}

static void
cb_data(void *user, uint32_t stream, const uint8_t *data, size_t len)
{
    struct side *s = user;
    if (s->relay == NULL || stream != s->stream) {
        s->stray++;
        mux_consumed(s->mux, stream, len);
        return;
    }
    relay_on_data(s->relay, data, len);
    sample(s->t);
}

static void
cb_fin(void *user, uint32_t stream)
{
    struct side *s = user;
    s->fins++;
    if (s->relay != NULL && stream == s->stream)
        relay_on_fin(s->relay);
}

static void
cb_writable(void *user, uint32_t stream)
{
    struct side *s = user;
    if (s->relay != NULL && stream == s->stream)
        relay_on_writable(s->relay);
}

static void
cb_stream_closed(void *user, uint32_t stream, enum mux_code code, const char *reason)
{
    (void)reason;
    struct side *s = user;
    s->stream_closes++;
    s->stream_code = code;
    if (s->relay != NULL && stream == s->stream) {
        s->queued_at_close = relay_queued(s->relay);
        relay_on_stream_closed(s->relay, code, reason);
    }
}

static void
cb_session_closed(void *user, enum mux_code code, const char *reason)
{
    (void)code;
    (void)reason;
    struct side *s = user;
    s->session_closes++;
}

static const struct mux_callbacks callbacks = {
    .write = cb_write,
    .on_open = cb_open,
    .on_open_ok = cb_open_ok,
    .on_data = cb_data,
    .on_fin = cb_fin,
    .on_stream_closed = cb_stream_closed,
    .on_writable = cb_writable,
    .on_session_closed = cb_session_closed,
};

/* Hands what from wrote to to; never from inside a callback. */
static bool
deliver(struct side *from, struct side *to)
{
    if (from->out.len == 0)
        return false;
    struct test_bytes b = from->out;
    memset(&from->out, 0, sizeof(from->out));
    if (to->mux != NULL)
        (void)mux_input(to->mux, b.buf, b.len);
    test_bytes_free(&b);
    return true;
}

static void
pump(struct fixture *t)
{
    for (int i = 0; i < 10000; i++) {
        bool moved = deliver(&t->op, &t->ac);
        moved = deliver(&t->ac, &t->op) || moved;
        if (!moved)
            return;
    }
    fail_msg("the muxes keep talking");
}

/* One round: socket events, frames between the muxes, the peers' I/O. */
static void
step(struct fixture *t)
{
    ev_run(t->loop, EVRUN_NOWAIT);
    pump(t);
    peer_io(&t->opp);
    peer_io(&t->acp);
    pump(t);
    sample(t);
}

#define WAIT_FOR(t, cond)                                                  \
    do {                                                                   \
        double deadline_ = now_s() + WAIT_SECONDS;                         \
        while (!(cond)) {                                                  \
            if (now_s() > deadline_)                                       \
                fail_msg("%s:%d: timed out waiting for %s", __FILE__,      \
                         __LINE__, #cond);                                 \
            step(t);                                                       \
        }                                                                  \
    } while (0)

/* Steps for a while (conditions that must NOT become true). */
static void
run_for(struct fixture *t, double seconds)
{
    double deadline = now_s() + seconds;
    while (now_s() < deadline)
        step(t);
}

static int
setup(void **state)
{
    struct fixture *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    t->op.t = t->ac.t = t;
    t->op.name = "opener";
    t->ac.name = "acceptor";
    t->op.relay_fd = t->ac.relay_fd = t->opp.fd = t->acp.fd = -1;
    t->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(t->loop);
    struct ztr_err err = {0};
    assert_int_equal(relay_pool_new(2, &t->pool, &err), 0);
    *state = t;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *t = *state;
    /* A test that failed midway may leave relays behind: end them. */
    struct side *sides[2] = {&t->op, &t->ac};
    for (int i = 0; i < 2; i++) {
        struct side *s = sides[i];
        if (s->relay != NULL)
            relay_on_stream_closed(s->relay, MUX_CODE_INTERNAL, "teardown");
        mux_free(s->mux);
        s->mux = NULL;
        test_bytes_free(&s->out);
        if (s->relay_fd >= 0)
            close(s->relay_fd);
    }
    struct peer *peers[2] = {&t->opp, &t->acp};
    for (int i = 0; i < 2; i++) {
        if (peers[i]->fd >= 0)
            close(peers[i]->fd);
        test_bytes_free(&peers[i]->rx);
    }
    relay_pool_free(t->pool);
    ev_loop_destroy(t->loop);
    free(t);
    return 0;
}

/* Both muxes with this window (0 = default), both TCP pairs (bufsize 0 =
 * kernel defaults), a stream opened and accepted, both relays running. */
static void
start(struct fixture *t, uint32_t window, int bufsize)
{
    struct ztr_err err = {0};
    struct mux_config oc = {.role = MUX_OPENER, .window = window};
    struct mux_config ac = {.role = MUX_ACCEPTOR, .window = window};
    assert_int_equal(mux_new(&oc, &callbacks, &t->op, &t->op.mux, &err), 0);
    assert_int_equal(mux_new(&ac, &callbacks, &t->ac, &t->ac.mux, &err), 0);
    tcp_pair(&t->op.relay_fd, &t->opp.fd, bufsize);
    tcp_pair(&t->ac.relay_fd, &t->acp.fd, bufsize);
    assert_int_equal(mux_open(t->op.mux, "svc", &t->op.stream, &err), 0);
    WAIT_FOR(t, t->op.open_oks == 1);
    assert_int_equal(t->ac.opens, 1);
    assert_int_equal(t->ac.stream, t->op.stream);
    assert_int_equal(t->ac.relay_new_rc, 0);
    assert_int_equal(t->op.relay_new_rc, 0);
    assert_non_null(t->ac.relay);
    assert_non_null(t->op.relay);
}

/* Nothing on either session went wrong. */
static void
assert_sessions_clean(const struct fixture *t)
{
    assert_int_equal(t->op.session_closes, 0);
    assert_int_equal(t->ac.session_closes, 0);
    assert_int_equal(t->op.stray, 0);
    assert_int_equal(t->ac.stray, 0);
}

/* After a normal close the relay's socket is gone: the peer reads EOF and
 * its writes eventually fail. */
static void
assert_closed_normally(struct peer *p)
{
    uint8_t c;
    ssize_t r;
    do {
        r = recv(p->fd, &c, 1, 0);
    } while (r > 0);
    assert_int_equal(r, 0);
    int err = 0;
    for (int i = 0; i < 200 && err == 0; i++) {
        if (send(p->fd, "x", 1, MSG_NOSIGNAL) < 0 && errno != EAGAIN)
            err = errno;
        else
            usleep(1000);
    }
    assert_true(err == EPIPE || err == ECONNRESET);
}

/* The peer's socket was reset: its first error, on a send or on a read, is
 * ECONNRESET, and it never reads an orderly EOF first (data that was already
 * in its receive buffer may come before the error). */
static void
wait_reset(struct fixture *t, struct peer *p)
{
    p->reading = true;
    WAIT_FOR(t, p->rx_err != 0 || p->eof);
    if (p->first_err != ECONNRESET)
        fail_msg("%s peer: %s (first error %d) after %zu bytes instead of a reset",
                 p == &t->opp ? "opener's" : "acceptor's", p->eof ? "EOF" : "error",
                 p->first_err, p->rx.len);
}

/* ---- 1. bytes both ways ------------------------------------------------------------ */

static void
test_bytes_both_ways(void **state)
{
    struct fixture *t = *state;
    enum { N = 1 << 20 };
    start(t, 0, 0);
    uint8_t *up = pattern(N, 1), *down = pattern(N, 2);
    t->opp.tx = up;
    t->opp.tx_len = N;
    t->opp.shut_after_tx = true;
    t->opp.reading = true;
    t->acp.tx = down;
    t->acp.tx_len = N;
    t->acp.shut_after_tx = true;
    t->acp.reading = true;
    WAIT_FOR(t, t->opp.eof && t->acp.eof && t->op.done_calls == 1 && t->ac.done_calls == 1);
    assert_int_equal(t->acp.rx.len, N);
    assert_int_equal(t->opp.rx.len, N);
    assert_true(fnv(t->acp.rx.buf, N) == fnv(up, N));
    assert_true(fnv(t->opp.rx.buf, N) == fnv(down, N));
    assert_memory_equal(t->acp.rx.buf, up, N);
    assert_memory_equal(t->opp.rx.buf, down, N);
    assert_int_equal(t->op.done_code, MUX_CODE_NORMAL);
    assert_int_equal(t->ac.done_code, MUX_CODE_NORMAL);
    assert_int_equal(t->op.totals.bytes_to_stream, N);
    assert_int_equal(t->op.totals.bytes_to_socket, N);
    assert_int_equal(t->ac.totals.bytes_to_stream, N);
    assert_int_equal(t->ac.totals.bytes_to_socket, N);
    assert_int_equal(relay_pool_chunks_in_use(t->pool), 0);
    assert_sessions_clean(t);
    run_for(t, 0.05);
    assert_int_equal(t->op.done_calls, 1);
    assert_int_equal(t->ac.done_calls, 1);
    free(up);
    free(down);
}

/* ---- 2. half-close ---------------------------------------------------------------------- */

static void
test_half_close(void **state)
{
    struct fixture *t = *state;
    enum { N = 100000, M = 70000 };
    start(t, 0, 0);
    uint8_t *up = pattern(N, 3), *down = pattern(M, 4);
    t->opp.tx = up;
    t->opp.tx_len = N;
    t->opp.shut_after_tx = true;
    t->opp.reading = true;
    t->acp.reading = true;
    /* The opener's peer is done sending: the acceptor's peer sees EOF... */
    WAIT_FOR(t, t->acp.eof);
    assert_int_equal(t->acp.rx.len, N);
    assert_memory_equal(t->acp.rx.buf, up, N);
    run_for(t, 0.05);
    assert_false(t->opp.eof);
    assert_int_equal(t->op.done_calls, 0);
    assert_int_equal(t->ac.done_calls, 0);
    assert_int_equal(t->ac.fins, 1);
    assert_int_equal(t->op.fins, 0);
    /* ...and can still answer, all of which arrives. */
    t->acp.tx = down;
    t->acp.tx_len = M;
    WAIT_FOR(t, t->opp.rx.len == M);
    assert_memory_equal(t->opp.rx.buf, down, M);
    run_for(t, 0.05);
    assert_false(t->opp.eof);
    assert_int_equal(t->op.done_calls, 0);
    assert_int_equal(t->ac.done_calls, 0);
    /* Both directions finished: both relays end normally. */
    assert_int_equal(shutdown(t->acp.fd, SHUT_WR), 0);
    WAIT_FOR(t, t->op.done_calls == 1 && t->ac.done_calls == 1 && t->opp.eof);
    assert_int_equal(t->op.done_code, MUX_CODE_NORMAL);
    assert_int_equal(t->ac.done_code, MUX_CODE_NORMAL);
    assert_int_equal(t->op.stream_code, MUX_CODE_NORMAL);
    assert_int_equal(t->ac.stream_code, MUX_CODE_NORMAL);
    assert_int_equal(t->op.totals.bytes_to_stream, N);
    assert_int_equal(t->op.totals.bytes_to_socket, M);
    assert_int_equal(t->ac.totals.bytes_to_stream, M);
    assert_int_equal(t->ac.totals.bytes_to_socket, N);
    assert_int_equal(t->opp.rx.len, M);
    assert_int_equal(t->acp.rx.len, N);
    /* The sockets are closed (a FIN, not a reset). */
    assert_closed_normally(&t->opp);
    assert_closed_normally(&t->acp);
    assert_int_equal(relay_pool_chunks_in_use(t->pool), 0);
    assert_sessions_clean(t);
    free(up);
    free(down);
}

/* The acceptor's peer half-closes first: the same, the other way round. */
static void
test_half_close_acceptor_first(void **state)
{
    struct fixture *t = *state;
    enum { N = 50000 };
    start(t, 0, 0);
    uint8_t *down = pattern(N, 5), *up = pattern(N, 6);
    t->acp.tx = down;
    t->acp.tx_len = N;
    t->acp.shut_after_tx = true;
    t->opp.reading = true;
    t->acp.reading = true;
    WAIT_FOR(t, t->opp.eof);
    assert_int_equal(t->opp.rx.len, N);
    assert_memory_equal(t->opp.rx.buf, down, N);
    t->opp.tx = up;
    t->opp.tx_len = N;
    t->opp.shut_after_tx = true;
    WAIT_FOR(t, t->op.done_calls == 1 && t->ac.done_calls == 1 && t->acp.eof);
    assert_int_equal(t->acp.rx.len, N);
    assert_memory_equal(t->acp.rx.buf, up, N);
    assert_int_equal(t->op.done_code, MUX_CODE_NORMAL);
    assert_int_equal(t->ac.done_code, MUX_CODE_NORMAL);
    assert_closed_normally(&t->opp);
    assert_closed_normally(&t->acp);
    assert_int_equal(relay_pool_chunks_in_use(t->pool), 0);
    assert_sessions_clean(t);
    free(up);
    free(down);
}

/* ---- 3. slow reader ------------------------------------------------------------------- */

static void
test_slow_reader_backpressure(void **state)
{
    struct fixture *t = *state;
    enum { W = 64 * 1024, N = 2 << 20 };
    start(t, W, 8192);
    uint8_t *up = pattern(N, 7);
    t->opp.tx = up;
    t->opp.tx_len = N;
    /* The acceptor's peer reads nothing: the writer must come to a stop. */
    size_t last = (size_t)-1;
    double deadline = now_s() + WAIT_SECONDS, still_since = now_s();
    while (now_s() - still_since < 0.2) {
        if (now_s() > deadline)
            fail_msg("the writer never stopped");
        step(t);
        if (t->opp.tx_off != last) {
            last = t->opp.tx_off;
            still_since = now_s();
        }
    }
    assert_int_equal(t->opp.tx_err, 0);
    assert_true(t->opp.tx_off < N);
    assert_int_equal(t->acp.rx.len, 0);
    assert_non_null(t->ac.relay);
    /* The relay did have to queue (the socket buffers are small), but never
     * more than one window, in at most a window's worth of chunks. */
    assert_true(t->ac.max_queued > 0);
    assert_true(t->ac.max_queued <= W);
    assert_true(relay_queued(t->ac.relay) <= W);
    assert_true(t->max_chunks >= 1);
    assert_true(t->max_chunks <= W / RELAY_CHUNK_SIZE + 1);
    /* The opener side never got more credit than a window. */
    assert_true(mux_send_credit(t->op.mux, t->op.stream) <= W);
    /* Now read slowly; the bound holds to the end and every byte arrives. */
    t->acp.reading = true;
    t->acp.read_quota = 4096;
    t->opp.shut_after_tx = true;
    t->acp.shut_after_tx = true;   /* nothing to send: FIN at once */
    WAIT_FOR(t, t->acp.eof && t->op.done_calls == 1 && t->ac.done_calls == 1);
    assert_true(t->ac.max_queued <= W);
    assert_true(t->max_chunks <= W / RELAY_CHUNK_SIZE + 1);
    assert_int_equal(t->acp.rx.len, N);
    assert_memory_equal(t->acp.rx.buf, up, N);
    assert_int_equal(t->op.done_code, MUX_CODE_NORMAL);
    assert_int_equal(t->ac.done_code, MUX_CODE_NORMAL);
    assert_int_equal(t->ac.totals.bytes_to_socket, N);
    assert_int_equal(relay_pool_chunks_in_use(t->pool), 0);
    assert_sessions_clean(t);
    free(up);
}

/* A stream that finishes while bytes still wait for a slow socket: the peer's
 * FIN becomes shutdown only after them, and the socket closes only once they
 * are written (on_done waits too). */
static void
test_finish_drains_queue(void **state)
{
    struct fixture *t = *state;
    enum { W = 64 * 1024, N = 48 * 1024 };
    start(t, W, 4096);
    uint8_t *up = pattern(N, 8);
    t->opp.tx = up;
    t->opp.tx_len = N;
    t->opp.shut_after_tx = true;
    assert_int_equal(shutdown(t->acp.fd, SHUT_WR), 0);
    /* Both FINs crossed: the stream is closed on both muxes... */
    WAIT_FOR(t, t->ac.stream_closes == 1 && t->op.done_calls == 1);
    assert_int_equal(t->ac.stream_code, MUX_CODE_NORMAL);
    assert_int_equal(t->op.done_code, MUX_CODE_NORMAL);
    /* ...but the acceptor's relay still holds bytes its peer has not read. */
    assert_true(t->ac.queued_at_close > 0);
    run_for(t, 0.05);
    assert_int_equal(t->ac.done_calls, 0);
    assert_non_null(t->ac.relay);
    assert_true(relay_queued(t->ac.relay) > 0);
    assert_true(relay_pool_chunks_in_use(t->pool) > 0);
    /* The peer reads: everything, then EOF, then the relay is done. */
    t->acp.reading = true;
    t->acp.read_quota = 1000;
    WAIT_FOR(t, t->acp.eof && t->ac.done_calls == 1);
    assert_int_equal(t->acp.rx.len, N);
    assert_memory_equal(t->acp.rx.buf, up, N);
    assert_int_equal(t->ac.done_code, MUX_CODE_NORMAL);
    assert_int_equal(t->ac.totals.bytes_to_socket, N);
    assert_int_equal(t->ac.totals.bytes_to_stream, 0);
    assert_closed_normally(&t->acp);
    assert_int_equal(relay_pool_chunks_in_use(t->pool), 0);
    assert_sessions_clean(t);
    free(up);
}

/* A local peer that never reads what a finished stream still holds: at the
 * drain deadline the relay gives up, resets the socket (a cut transfer, not
 * a complete one) and returns every chunk. */
static void
test_drain_deadline(void **state)
{
    struct fixture *t = *state;
    enum { W = 64 * 1024, N = 48 * 1024 };
    relay_pool_set_drain_timeout(t->pool, 300);
    start(t, W, 4096);
    uint8_t *up = pattern(N, 8);
    t->opp.tx = up;
    t->opp.tx_len = N;
    t->opp.shut_after_tx = true;
    assert_int_equal(shutdown(t->acp.fd, SHUT_WR), 0);
    WAIT_FOR(t, t->ac.stream_closes == 1 && t->op.done_calls == 1);
    assert_true(t->ac.queued_at_close > 0);
    /* Before the deadline it still waits for the reader... */
    run_for(t, 0.1);
    assert_int_equal(t->ac.done_calls, 0);
    /* ...and at it the relay is closed without the peer ever reading. */
    WAIT_FOR(t, t->ac.done_calls == 1);
    assert_null(t->ac.relay);
    assert_int_equal(t->ac.done_code, MUX_CODE_CANCEL);
    assert_non_null(strstr(t->ac.done_reason, "drain timed out"));
    assert_true(t->ac.totals.bytes_to_socket < N);
    assert_int_equal(relay_pool_chunks_in_use(t->pool), 0);
    wait_reset(t, &t->acp);
    assert_true(t->acp.rx.len < N);
    assert_sessions_clean(t);
    free(up);
}

/* The pool's owner lets go while a relay still drains: the pool stays until
 * that relay is done (ASan would report a use after free or a leak). */
static void
test_pool_outlives_draining_relay(void **state)
{
    struct fixture *t = *state;
    enum { W = 64 * 1024, N = 48 * 1024 };
    relay_pool_set_drain_timeout(t->pool, 200);
    start(t, W, 4096);
    uint8_t *up = pattern(N, 8);
    t->opp.tx = up;
    t->opp.tx_len = N;
    t->opp.shut_after_tx = true;
    assert_int_equal(shutdown(t->acp.fd, SHUT_WR), 0);
    WAIT_FOR(t, t->ac.stream_closes == 1 && t->op.done_calls == 1);
    assert_non_null(t->ac.relay);
    relay_pool_free(t->pool);
    t->pool = NULL;
    WAIT_FOR(t, t->ac.done_calls == 1);
    assert_int_equal(t->ac.done_code, MUX_CODE_CANCEL);
    assert_sessions_clean(t);
    free(up);
}

/* ---- 4. reset from the other side ----------------------------------------------------- */

static void
test_reset_by_peer(void **state)
{
    struct fixture *t = *state;
    enum { N = 512 * 1024 };
    start(t, 0, 8192);
    uint8_t *up = pattern(N, 9);
    t->opp.tx = up;
    t->opp.tx_len = N;
    /* Bytes in flight and queued at the acceptor when the reset comes. */
    WAIT_FOR(t, t->ac.relay != NULL && relay_queued(t->ac.relay) > 0);
    assert_true(relay_pool_chunks_in_use(t->pool) > 0);
    /* The connector's owner resets: its own relay ends inside the call... */
    assert_int_equal(mux_reset(t->ac.mux, t->ac.stream, MUX_CODE_CONNECT_FAILED, "target hung up"),
                     0);
    assert_int_equal(t->ac.done_calls, 1);
    assert_null(t->ac.relay);
    assert_int_equal(t->ac.done_code, MUX_CODE_CONNECT_FAILED);
    assert_string_equal(t->ac.done_reason, "target hung up");
    assert_int_equal(relay_pool_chunks_in_use(t->pool), 0);
    /* ...and the tunneler's relay with the same code and reason. */
    WAIT_FOR(t, t->op.done_calls == 1);
    assert_int_equal(t->op.done_code, MUX_CODE_CONNECT_FAILED);
    assert_string_equal(t->op.done_reason, "target hung up");
    /* Both local peers see a reset, not an orderly end. */
    wait_reset(t, &t->opp);
    wait_reset(t, &t->acp);
    assert_true(t->acp.rx.len < N);
    assert_memory_equal(t->acp.rx.buf, up, t->acp.rx.len);
    run_for(t, 0.05);
    assert_int_equal(t->op.done_calls, 1);
    assert_int_equal(t->ac.done_calls, 1);
    assert_sessions_clean(t);
    free(up);
}

/* The opener resets (the tunneler's owner gives up): same on the other end. */
static void
test_reset_by_opener(void **state)
{
    struct fixture *t = *state;
    start(t, 0, 0);
    t->acp.tx = (const uint8_t *)"hello";
    t->acp.tx_len = 5;
    t->opp.reading = true;
    WAIT_FOR(t, t->opp.rx.len == 5);
    assert_int_equal(mux_reset(t->op.mux, t->op.stream, MUX_CODE_INTERNAL, "tunneler says no"), 0);
    assert_int_equal(t->op.done_calls, 1);
    WAIT_FOR(t, t->ac.done_calls == 1);
    assert_int_equal(t->ac.done_code, MUX_CODE_INTERNAL);
    assert_string_equal(t->ac.done_reason, "tunneler says no");
    assert_int_equal(t->ac.totals.bytes_to_stream, 5);
    wait_reset(t, &t->acp);
    wait_reset(t, &t->opp);
    assert_sessions_clean(t);
}

/* ---- 5. the local peer goes away abruptly ---------------------------------------------- */

static void
test_local_abort_cancels(void **state)
{
    struct fixture *t = *state;
    start(t, 0, 0);
    t->opp.tx = (const uint8_t *)"some bytes first";
    t->opp.tx_len = 16;
    t->acp.reading = true;
    WAIT_FOR(t, t->acp.rx.len == 16);
    abort_fd(&t->opp.fd);
    WAIT_FOR(t, t->op.done_calls == 1 && t->ac.done_calls == 1);
    assert_int_equal(t->op.done_code, MUX_CODE_CANCEL);
    assert_int_equal(t->ac.done_code, MUX_CODE_CANCEL);
    assert_int_equal(t->ac.stream_code, MUX_CODE_CANCEL);
    assert_non_null(strstr(t->op.done_reason, "read from the local connection"));
    assert_string_equal(t->ac.done_reason, t->op.done_reason);
    assert_int_equal(t->op.totals.bytes_to_stream, 16);
    /* The other local peer sees the cut as a reset. */
    wait_reset(t, &t->acp);
    assert_int_equal(relay_pool_chunks_in_use(t->pool), 0);
    assert_sessions_clean(t);
}

/* The acceptor's peer half-closes, then resets: the relay is no longer
 * reading, so it learns of it when it writes the next bytes. */
static void
test_local_write_error_cancels(void **state)
{
    struct fixture *t = *state;
    start(t, 0, 0);
    assert_int_equal(shutdown(t->acp.fd, SHUT_WR), 0);
    t->opp.reading = true;
    WAIT_FOR(t, t->opp.eof && t->op.fins == 1);
    abort_fd(&t->acp.fd);
    run_for(t, 0.02);
    assert_int_equal(t->ac.done_calls, 0);
    static uint8_t buf[200000];
    memset(buf, 'z', sizeof(buf));
    t->opp.tx = buf;
    t->opp.tx_len = sizeof(buf);
    WAIT_FOR(t, t->op.done_calls == 1 && t->ac.done_calls == 1);
    assert_int_equal(t->ac.done_code, MUX_CODE_CANCEL);
    assert_int_equal(t->op.done_code, MUX_CODE_CANCEL);
    assert_non_null(strstr(t->ac.done_reason, "write to the local connection"));
    assert_string_equal(t->op.done_reason, t->ac.done_reason);
    assert_int_equal(relay_pool_chunks_in_use(t->pool), 0);
    assert_sessions_clean(t);
}

/* The acceptor's peer aborts while the relay holds bytes for it: the stream
 * is cancelled, the queued chunks go back to the pool. */
static void
test_local_abort_while_queued(void **state)
{
    struct fixture *t = *state;
    enum { N = 512 * 1024 };
    start(t, 0, 8192);
    uint8_t *up = pattern(N, 12);
    t->opp.tx = up;
    t->opp.tx_len = N;
    WAIT_FOR(t, t->ac.relay != NULL && relay_queued(t->ac.relay) > 0);
    assert_true(relay_pool_chunks_in_use(t->pool) > 0);
    abort_fd(&t->acp.fd);
    WAIT_FOR(t, t->op.done_calls == 1 && t->ac.done_calls == 1);
    assert_int_equal(t->ac.done_code, MUX_CODE_CANCEL);
    assert_int_equal(t->op.done_code, MUX_CODE_CANCEL);
    assert_non_null(strstr(t->ac.done_reason, "local connection"));
    assert_string_equal(t->op.done_reason, t->ac.done_reason);
    assert_int_equal(relay_pool_chunks_in_use(t->pool), 0);
    wait_reset(t, &t->opp);
    assert_sessions_clean(t);
    free(up);
}

/* The stream finished normally and the relay is draining its queue when
 * the peer aborts: the relay ends (CANCEL) instead of waiting forever. */
static void
test_local_abort_while_draining(void **state)
{
    struct fixture *t = *state;
    enum { W = 64 * 1024, N = 48 * 1024 };
    start(t, W, 4096);
    uint8_t *up = pattern(N, 13);
    t->opp.tx = up;
    t->opp.tx_len = N;
    t->opp.shut_after_tx = true;
    assert_int_equal(shutdown(t->acp.fd, SHUT_WR), 0);
    WAIT_FOR(t, t->ac.stream_closes == 1 && t->op.done_calls == 1);
    assert_true(t->ac.queued_at_close > 0);
    assert_non_null(t->ac.relay);
    abort_fd(&t->acp.fd);
    WAIT_FOR(t, t->ac.done_calls == 1);
    assert_int_equal(t->ac.done_code, MUX_CODE_CANCEL);
    assert_non_null(strstr(t->ac.done_reason, "write to the local connection"));
    assert_true(t->ac.totals.bytes_to_socket < N);
    assert_int_equal(relay_pool_chunks_in_use(t->pool), 0);
    assert_sessions_clean(t);
    free(up);
}

/* The session ends under a live relay (GOAWAY): both relays end with its code. */
static void
test_session_end(void **state)
{
    struct fixture *t = *state;
    start(t, 0, 0);
    assert_int_equal(mux_goaway(t->ac.mux, MUX_CODE_REFUSED, "shutting down"), 0);
    assert_int_equal(t->ac.done_calls, 1);
    assert_int_equal(t->ac.done_code, MUX_CODE_REFUSED);
    WAIT_FOR(t, t->op.done_calls == 1);
    assert_int_equal(t->op.done_code, MUX_CODE_REFUSED);
    assert_string_equal(t->op.done_reason, "shutting down");
    wait_reset(t, &t->opp);
    wait_reset(t, &t->acp);
    assert_int_equal(relay_pool_chunks_in_use(t->pool), 0);
}

/* ---- 6. early bytes ---------------------------------------------------------------------- */

/* Early bytes go first, before what was already waiting in the socket. */
static void
test_early_bytes_first(void **state)
{
    struct fixture *t = *state;
    static const char early[] = "EARLY:GET / HTTP/1.1\r\n";
    static const char later[] = "LATER:Host: example\r\n\r\n";
    t->op.early = (const uint8_t *)early;
    t->op.early_len = strlen(early);
    /* The socket bytes are there before the relay starts. */
    struct ztr_err err = {0};
    struct mux_config oc = {.role = MUX_OPENER};
    struct mux_config ac = {.role = MUX_ACCEPTOR};
    assert_int_equal(mux_new(&oc, &callbacks, &t->op, &t->op.mux, &err), 0);
    assert_int_equal(mux_new(&ac, &callbacks, &t->ac, &t->ac.mux, &err), 0);
    tcp_pair(&t->op.relay_fd, &t->opp.fd, 0);
    tcp_pair(&t->ac.relay_fd, &t->acp.fd, 0);
    assert_int_equal(send(t->opp.fd, later, strlen(later), MSG_NOSIGNAL), (ssize_t)strlen(later));
    assert_int_equal(mux_open(t->op.mux, "svc", &t->op.stream, &err), 0);
    WAIT_FOR(t, t->op.relay != NULL);
    t->acp.reading = true;
    size_t total = strlen(early) + strlen(later);
    WAIT_FOR(t, t->acp.rx.len >= total);
    assert_int_equal(t->acp.rx.len, total);
    assert_memory_equal(t->acp.rx.buf, early, strlen(early));
    assert_memory_equal(t->acp.rx.buf + strlen(early), later, strlen(later));
    assert_int_equal(shutdown(t->opp.fd, SHUT_WR), 0);
    assert_int_equal(shutdown(t->acp.fd, SHUT_WR), 0);
    WAIT_FOR(t, t->op.done_calls == 1 && t->ac.done_calls == 1);
    assert_int_equal(t->op.done_code, MUX_CODE_NORMAL);
    assert_int_equal(t->op.totals.bytes_to_stream, total);
    assert_int_equal(t->ac.totals.bytes_to_socket, total);
    assert_sessions_clean(t);
}

/* Early bytes beyond the stream's credit go out as credit comes back. */
static void
test_early_bytes_beyond_credit(void **state)
{
    struct fixture *t = *state;
    enum { W = 300, L = 5000 };
    uint8_t *early = pattern(RELAY_EARLY_MAX, 10), *later = pattern(L, 11);
    t->op.early = early;
    t->op.early_len = RELAY_EARLY_MAX;
    start(t, W, 0);
    t->opp.tx = later;
    t->opp.tx_len = L;
    t->opp.shut_after_tx = true;
    t->acp.reading = true;
    t->acp.shut_after_tx = true;
    WAIT_FOR(t, t->acp.eof && t->op.done_calls == 1 && t->ac.done_calls == 1);
    assert_int_equal(t->acp.rx.len, RELAY_EARLY_MAX + L);
    assert_memory_equal(t->acp.rx.buf, early, RELAY_EARLY_MAX);
    assert_memory_equal(t->acp.rx.buf + RELAY_EARLY_MAX, later, L);
    assert_int_equal(t->op.done_code, MUX_CODE_NORMAL);
    assert_int_equal(t->op.totals.bytes_to_stream, RELAY_EARLY_MAX + L);
    assert_sessions_clean(t);
    free(early);
    free(later);
}

/* A client that sent its request together with the SOCKS5 request and now
 * waits for the answer: the early bytes must go out although the socket
 * has nothing more to read. */
static void
test_early_bytes_silent_peer(void **state)
{
    struct fixture *t = *state;
    static const char early[] = "GET / HTTP/1.0\r\n\r\n";
    t->op.early = (const uint8_t *)early;
    t->op.early_len = strlen(early);
    start(t, 0, 0);
    t->acp.reading = true;
    WAIT_FOR(t, t->acp.rx.len >= strlen(early));
    assert_int_equal(t->acp.rx.len, strlen(early));
    assert_memory_equal(t->acp.rx.buf, early, strlen(early));
    /* The answer comes back, the exchange ends normally. */
    t->acp.tx = (const uint8_t *)"HTTP/1.0 200 OK\r\n\r\n";
    t->acp.tx_len = 19;
    t->acp.shut_after_tx = true;
    t->opp.reading = true;
    WAIT_FOR(t, t->opp.eof);
    assert_int_equal(shutdown(t->opp.fd, SHUT_WR), 0);
    WAIT_FOR(t, t->op.done_calls == 1 && t->ac.done_calls == 1);
    assert_int_equal(t->op.done_code, MUX_CODE_NORMAL);
    assert_sessions_clean(t);
}

/* More early bytes than allowed: relay_new fails and still owns (closes) fd. */
static void
test_early_too_long(void **state)
{
    struct fixture *t = *state;
    struct ztr_err err = {0};
    struct mux_config oc = {.role = MUX_OPENER};
    assert_int_equal(mux_new(&oc, &callbacks, &t->op, &t->op.mux, &err), 0);
    int fd;
    tcp_pair(&fd, &t->opp.fd, 0);
    static uint8_t early[RELAY_EARLY_MAX + 1];
    struct relay *r = (struct relay *)(uintptr_t)1;   /* must be overwritten */
    assert_int_equal(relay_new(t->loop, t->pool, t->op.mux, 1, fd, early, sizeof(early), on_done,
                               &t->op, &r, &err),
                     -1);
    assert_null(r);
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_true(strlen(err.msg) > 0);
    errno = 0;
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
    assert_int_equal(t->op.done_calls, 0);
    /* The peer sees the connection end. */
    t->opp.reading = true;
    WAIT_FOR(t, t->opp.eof || t->opp.rx_err != 0);
    /* Exactly RELAY_EARLY_MAX is fine. */
    int fd2;
    tcp_pair(&fd2, &t->acp.fd, 0);
    assert_int_equal(relay_new(t->loop, t->pool, t->op.mux, 1, fd2, early, RELAY_EARLY_MAX, on_done,
                               &t->op, &r, &err),
                     0);
    assert_non_null(r);
    t->op.relay = r;   /* teardown ends it */
    relay_on_stream_closed(r, MUX_CODE_CANCEL, "not needed");
    assert_int_equal(t->op.done_calls, 1);
    assert_int_equal(t->op.done_code, MUX_CODE_CANCEL);
    assert_string_equal(t->op.done_reason, "not needed");
    assert_null(t->op.relay);
    assert_int_equal(t->op.totals.bytes_to_stream, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bytes_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_acceptor_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_reader_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_drains_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_by_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_by_opener, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_abort_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_write_error_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_abort_while_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_abort_while_draining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_bytes_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_bytes_beyond_credit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_bytes_silent_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_outlives_draining_relay, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
