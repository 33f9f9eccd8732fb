#include "data/relay.h"

#include <errno.h>
#include <ev.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/fileio.h"

/* One read from a socket: four full DATA frames. */
#define RELAY_READ_MAX (4 * MUX_MAX_PAYLOAD)

struct chunk {
    struct chunk *next;
    size_t off, len;
    uint8_t data[RELAY_CHUNK_SIZE];
};

struct relay_pool {
    struct chunk *free_list;
    size_t free_count, max_free, in_use;
    unsigned refs;            /* the owner's and one per live relay */
    int64_t drain_ms;
    uint8_t read_buf[RELAY_READ_MAX];
};

struct relay {
    struct ev_loop *loop;
    struct relay_pool *pool;
    struct mux *mux;          /* NULL once the stream is closed */
    uint32_t stream;
    int fd;
    ev_io read_io, write_io;
    ev_timer drain_timer;     /* runs while a finished stream drains */
    struct chunk *head, *tail;
    size_t queued;
    size_t early_off, early_len;
    bool socket_eof;          /* read EOF: our FIN is sent */
    bool peer_fin;            /* the stream's FIN arrived: shut down after the queue */
    bool shut_wr;
    bool stream_closed;
    bool finished_normally;   /* both directions ended: drain, then close */
    unsigned depth;
    bool done;                /* finish when the outermost call returns */
    enum mux_code code;
    /* Set once, at the end: a relay lives idle far longer than it
     * finishes, so neither the reason nor the early bytes take room in
     * the struct (an idle stream costs two relays: docs/DATAPLANE.md). */
    char *reason;
    struct relay_totals totals;
    relay_done_fn on_done;
    void *user;
    uint8_t early[];          /* early_len bytes */
};

/* ---- pool ------------------------------------------------------------------ */

int
relay_pool_new(size_t max_free_chunks, struct relay_pool **out, struct ztr_err *err)
{
    struct relay_pool *pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    pool->max_free = max_free_chunks;
    pool->refs = 1;
    pool->drain_ms = RELAY_DRAIN_TIMEOUT_MS;
    *out = pool;
    return 0;
}

void
relay_pool_set_drain_timeout(struct relay_pool *pool, int64_t ms)
{
    pool->drain_ms = ms > 0 ? ms : RELAY_DRAIN_TIMEOUT_MS;
}

static void
pool_unref(struct relay_pool *pool)
{
    if (--pool->refs > 0)
        return;
    while (pool->free_list != NULL) {
        struct chunk *c = pool->free_list;
        pool->free_list = c->next;
        free(c);
    }
    free(pool);
}

void
relay_pool_free(struct relay_pool *pool)
{
    if (pool != NULL)
        pool_unref(pool);
}

size_t
relay_pool_chunks_in_use(const struct relay_pool *pool)
{
    return pool->in_use;
}

static struct chunk *
chunk_get(struct relay_pool *pool)
{
    struct chunk *c = pool->free_list;
    if (c != NULL) {
        pool->free_list = c->next;
        pool->free_count--;
    } else if ((c = malloc(sizeof(*c))) == NULL) {
        return NULL;
    }
    c->next = NULL;
    c->off = c->len = 0;
    pool->in_use++;
    return c;
}

static void
chunk_put(struct relay_pool *pool, struct chunk *c)
{
    pool->in_use--;
    if (pool->free_count < pool->max_free) {
        c->next = pool->free_list;
        pool->free_list = c;
        pool->free_count++;
        return;
    }
    free(c);
}

/* ---- lifetime ---------------------------------------------------------------- */

static void
relay_enter(struct relay *r)
{
    r->depth++;
}

static void
relay_finish(struct relay *r)
{
    ev_io_stop(r->loop, &r->read_io);
    ev_io_stop(r->loop, &r->write_io);
    ev_timer_stop(r->loop, &r->drain_timer);
    if (!r->finished_normally) {
        /* A cut stream must not look like a complete one to the local peer. */
        struct linger hard = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(r->fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
    }
    close(r->fd);
    while (r->head != NULL) {
        struct chunk *c = r->head;
        r->head = c->next;
        chunk_put(r->pool, c);
    }
    struct relay_pool *pool = r->pool;
    if (r->on_done != NULL)
        r->on_done(r->user, r->code, r->reason != NULL ? r->reason : "", &r->totals);
    free(r->reason);
    free(r);
    pool_unref(pool);
}

/* The relay may be gone after this: callers touch it no more. */
static void
relay_leave(struct relay *r)
{
    if (--r->depth > 0 || !r->done)
        return;
    relay_finish(r);
}

/* Bounded like the wire's reasons; out of memory leaves it empty. */
static void
set_reason(struct relay *r, const char *reason)
{
    free(r->reason);
    r->reason = strndup(reason != NULL ? reason : "", MUX_REASON_MAX - 1);
}

static void
relay_mark_done(struct relay *r, enum mux_code code, const char *reason)
{
    if (r->done)
        return;
    r->done = true;
    r->code = code;
    set_reason(r, reason);
}

/* A socket error: the stream is reset (and on_stream_closed marks us done). */
static void
relay_cancel(struct relay *r, const char *what, int error)
{
    char text[128], reason[MUX_REASON_MAX];
    snprintf(reason, sizeof(reason), "%s: %s", what, file_strerror(error, text, sizeof(text)));
    if (r->mux != NULL && !r->stream_closed) {
        r->finished_normally = false;
        if (mux_reset(r->mux, r->stream, MUX_CODE_CANCEL, reason) == 0)
            return;
    }
    relay_mark_done(r, MUX_CODE_CANCEL, reason);
}

/* The local peer stopped reading after the stream finished: what it has not
 * taken is dropped and the socket reset, so it sees a cut transfer. */
static void
drain_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct relay *r = w->data;
    relay_enter(r);
    r->finished_normally = false;
    char reason[MUX_REASON_MAX];
    snprintf(reason, sizeof(reason), "drain timed out after %lld ms with %zu bytes unread",
             (long long)r->pool->drain_ms, r->queued);
    relay_mark_done(r, MUX_CODE_CANCEL, reason);
    relay_leave(r);
}

/* ---- stream → socket ----------------------------------------------------------- */

static void
update_write_watch(struct relay *r)
{
    if (r->queued > 0)
        ev_io_start(r->loop, &r->write_io);
    else
        ev_io_stop(r->loop, &r->write_io);
}

static void
maybe_shutdown(struct relay *r)
{
    if (r->queued > 0)
        return;
    if (r->peer_fin && !r->shut_wr) {
        r->shut_wr = true;
        (void)shutdown(r->fd, SHUT_WR);
    }
    if (r->stream_closed && r->finished_normally)
        relay_mark_done(r, MUX_CODE_NORMAL, "finished");
}

/* Writes as much of data as the socket takes now; -1 on a socket error. */
static ssize_t
socket_write(struct relay *r, const uint8_t *data, size_t len)
{
    size_t written = 0;
    while (written < len) {
        ssize_t n = send(r->fd, data + written, len - written, MSG_NOSIGNAL);
        if (n > 0) {
            written += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        relay_cancel(r, "write to the local connection", n < 0 ? errno : EPIPE);
        return -1;
    }
    return (ssize_t)written;
}

static void
credit_back(struct relay *r, size_t n)
{
    r->totals.bytes_to_socket += n;
    if (r->mux != NULL && !r->stream_closed && n > 0)
        mux_consumed(r->mux, r->stream, n);
}

static void
flush_queue(struct relay *r)
{
    while (r->head != NULL && !r->done) {
        struct chunk *c = r->head;
        ssize_t n = socket_write(r, c->data + c->off, c->len - c->off);
        if (n < 0)
            return;
        c->off += (size_t)n;
        r->queued -= (size_t)n;
        credit_back(r, (size_t)n);
        if (r->done)
            return;
        if (c->off < c->len)
            break;
        r->head = c->next;
        if (r->head == NULL)
            r->tail = NULL;
        chunk_put(r->pool, c);
    }
    update_write_watch(r);
    maybe_shutdown(r);
}

static int
enqueue(struct relay *r, const uint8_t *data, size_t len)
{
    while (len > 0) {
        struct chunk *c = r->tail;
        if (c == NULL || c->len == RELAY_CHUNK_SIZE) {
            if ((c = chunk_get(r->pool)) == NULL)
                return -1;
            if (r->tail != NULL)
                r->tail->next = c;
            else
                r->head = c;
            r->tail = c;
        }
        size_t n = RELAY_CHUNK_SIZE - c->len;
        if (n > len)
            n = len;
        memcpy(c->data + c->len, data, n);
        c->len += n;
        r->queued += n;
        data += n;
        len -= n;
    }
    return 0;
}

void
relay_on_data(struct relay *r, const uint8_t *data, size_t len)
{
    relay_enter(r);
    size_t written = 0;
    if (r->queued == 0) {
        /* The common case: straight from the TLS record into the socket. */
        ssize_t n = socket_write(r, data, len);
        if (n < 0) {
            relay_leave(r);
            return;
        }
        written = (size_t)n;
        credit_back(r, written);
    }
    if (!r->done && written < len) {
        if (enqueue(r, data + written, len - written) != 0) {
            relay_cancel(r, "queue for the local connection", ENOMEM);
        } else {
            update_write_watch(r);
        }
    }
    relay_leave(r);
}

void
relay_on_fin(struct relay *r)
{
    relay_enter(r);
    r->peer_fin = true;
    maybe_shutdown(r);
    relay_leave(r);
}

static void
write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct relay *r = w->data;
    relay_enter(r);
    flush_queue(r);
    relay_leave(r);
}

/* ---- socket → stream ------------------------------------------------------------- */

static size_t
send_credit(const struct relay *r)
{
    uint32_t stream = mux_send_credit(r->mux, r->stream);
    uint32_t session = mux_send_credit(r->mux, 0);
    return stream < session ? stream : session;
}

/* Sends what the credit allows; returns false when it ran out. */
static bool
send_early(struct relay *r)
{
    if (r->early_off == r->early_len)
        return true;
    ssize_t n = mux_send(r->mux, r->stream, r->early + r->early_off, r->early_len - r->early_off);
    if (n > 0) {
        r->early_off += (size_t)n;
        r->totals.bytes_to_stream += (size_t)n;
    }
    return r->early_off == r->early_len;
}

static void
pump_socket(struct relay *r)
{
    while (!r->done && !r->socket_eof && r->mux != NULL && !r->stream_closed) {
        if (!send_early(r) || r->done)
            break;
        size_t credit = send_credit(r);
        if (credit == 0) {
            /* mux_send of nothing registers for on_writable. */
            uint8_t none = 0;
            (void)mux_send(r->mux, r->stream, &none, 1);
            break;
        }
        if (credit > sizeof(r->pool->read_buf))
            credit = sizeof(r->pool->read_buf);
        ssize_t n = recv(r->fd, r->pool->read_buf, credit, 0);
        if (n > 0) {
            ssize_t sent = mux_send(r->mux, r->stream, r->pool->read_buf, (size_t)n);
            if (sent >= 0)
                r->totals.bytes_to_stream += (size_t)sent;
            if ((size_t)n < credit)
                break;   /* the socket is drained for now */
            continue;
        }
        if (n == 0) {
            r->socket_eof = true;
            (void)mux_fin(r->mux, r->stream);
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            relay_cancel(r, "read from the local connection", errno);
        break;
    }
    if (r->done || r->socket_eof || r->stream_closed || send_credit(r) == 0 ||
        r->early_off < r->early_len)
        ev_io_stop(r->loop, &r->read_io);
    else
        ev_io_start(r->loop, &r->read_io);
}

static void
read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct relay *r = w->data;
    relay_enter(r);
    pump_socket(r);
    relay_leave(r);
}

void
relay_on_writable(struct relay *r)
{
    relay_enter(r);
    pump_socket(r);
    relay_leave(r);
}

void
relay_on_stream_closed(struct relay *r, enum mux_code code, const char *reason)
{
    relay_enter(r);
    r->stream_closed = true;
    r->mux = NULL;   /* the stream id is free; the mux may be going away */
    ev_io_stop(r->loop, &r->read_io);
    r->finished_normally = code == MUX_CODE_NORMAL && r->socket_eof && r->peer_fin;
    if (r->finished_normally) {
        /* Both sides finished: what is queued still goes out, then close. */
        r->code = code;
        set_reason(r, reason);
        maybe_shutdown(r);
        if (!r->done)
            ev_timer_start(r->loop, &r->drain_timer);
    } else {
        relay_mark_done(r, code, reason);
    }
    relay_leave(r);
}

size_t
relay_queued(const struct relay *r)
{
    return r->queued;
}

int
relay_new(struct ev_loop *loop, struct relay_pool *pool, struct mux *mux, uint32_t stream,
          int fd, const uint8_t *early, size_t early_len, relay_done_fn on_done, void *user,
          struct relay **out, struct ztr_err *err)
{
    *out = NULL;
    if (early_len > RELAY_EARLY_MAX) {
        close(fd);
        return ztr_err_set(err, ZTR_E_INVALID, "relay: %zu early bytes (at most %d)", early_len,
                           RELAY_EARLY_MAX);
    }
    struct relay *r = calloc(1, sizeof(*r) + early_len);
    if (r == NULL) {
        close(fd);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    r->loop = loop;
    r->pool = pool;
    pool->refs++;
    r->mux = mux;
    r->stream = stream;
    r->fd = fd;
    r->on_done = on_done;
    r->user = user;
    if (early_len > 0)
        memcpy(r->early, early, early_len);
    r->early_len = early_len;
    ev_io_init(&r->read_io, read_cb, fd, EV_READ);
    r->read_io.data = r;
    ev_io_init(&r->write_io, write_cb, fd, EV_WRITE);
    r->write_io.data = r;
    ev_timer_init(&r->drain_timer, drain_timeout_cb, (double)pool->drain_ms / 1000.0, 0);
    r->drain_timer.data = r;
    ev_io_start(loop, &r->read_io);
    /* Early bytes go out even if the client now waits for an answer and
     * the socket never turns readable again. */
    if (early_len > 0)
        ev_feed_event(loop, &r->read_io, EV_READ);
    *out = r;
    return 0;
}
