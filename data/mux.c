/*
 * The data-plane session protocol (ztr-data/1): framing, stream states and
 * credit-based flow control, without I/O. data/mux.h is the contract and
 * docs/PROTOCOL.md the wire description; this file is organised as
 *
 *   streams    a sorted array of (id, stream) — ids only ever increase, so
 *              insertion is an append and lookup a binary search, with a
 *              worst case no peer can degrade (unlike a hash it could flood
 *              with colliding ids);
 *   output     one scratch frame buffer, one write callback per frame;
 *   sessions   ending a session (GOAWAY, protocol error, failed write);
 *   input      header checks from a table, then one handler per frame type;
 *   API        the public functions, each bracketed by enter()/leave() so
 *              that mux_free from a callback is deferred until the outermost
 *              mux call returns.
 *
 * Memory: the mux itself (with its two frame-sized buffers) is allocated in
 * mux_new; a stream is allocated when it opens and freed when it closes (or,
 * for streams still open when the session ends, in mux_free). Nothing is
 * allocated per frame.
 */
#include "data/mux.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bytes.h"
#include "base/clock.h"

#define MUX_CREDIT_MAX 0x7fffffffu   /* WINDOW may not push credit past 2^31-1 */
#define MUX_RESOURCE_MAX 255
#define MUX_PINGS_MAX 4              /* unanswered PINGs kept for matching */
#define MUX_FRAME_MAX (MUX_HEADER_SIZE + MUX_MAX_PAYLOAD)

/* Receive-window growth: a window the owner drains in less than
 * MUX_GROW_MS is what limits the sender, so it doubles (up to the maximum).
 * A slow reader never drains one that fast, so it never grows. */
#define MUX_GROW_MS 20

struct autotune {
    uint32_t window;          /* current size; credit is returned per quarter of it */
    int64_t epoch_ms;         /* when the current window's draining started */
    uint32_t epoch_consumed;  /* returned since then */
};

struct stream {
    uint32_t id;
    bool established;   /* OPEN_OK sent (acceptor) or received (opener) */
    bool local_fin;     /* the owner called mux_fin */
    bool fin_unsent;    /* opener: mux_fin before OPEN_OK; FIN goes out with it */
    bool remote_fin;    /* the peer's FIN arrived */
    bool reset_sent;    /* tombstone: we sent RST, the peer's RST (or ACK) is due */
    bool blocked;       /* a mux_send came up short: on_writable is owed */
    uint64_t blocked_round;
    struct stream *blocked_prev, *blocked_next;
    int64_t send_credit;   /* what we may still send (peer's grant) */
    uint32_t recv_credit;  /* what the peer may still send (our grant) */
    uint32_t unconsumed;   /* delivered by on_data, not yet mux_consumed */
    uint32_t to_return;    /* consumed, not yet returned with WINDOW */
    struct autotune tune;  /* the receive window this stream has grown to */
    void *user;            /* the owner's, mux_stream_set_user */
};

struct slot {
    uint32_t id;
    struct stream *stream;  /* NULL: a hole left by a closed stream */
};

enum session_state { SESSION_LIVE, SESSION_CLOSED };

struct mux {
    struct mux_callbacks cb;
    void *user;
    enum mux_role role;
    uint32_t window;
    uint32_t session_window;
    uint32_t max_window, session_max_window;
    struct autotune session_tune;
    uint32_t max_streams;
    int64_t (*now_ms)(void *user);

    enum session_state state;
    unsigned depth;        /* nesting of mux calls (callbacks run inside) */
    bool in_write;
    bool free_pending;     /* mux_free from a callback: done by the last leave() */
    uint32_t closing_id;   /* the stream whose on_stream_closed is running */
    void *closing_user;

    /* Streams, sorted by id; holes are compacted when they outnumber half. */
    struct slot *slots;
    uint32_t nslots, cap, holes;
    uint32_t total;        /* streams in the table, tombstones included */
    uint32_t live;         /* streams the owner sees */
    uint64_t next_id;      /* opener: the next id to use */
    uint32_t last_peer_id; /* acceptor: the highest id the peer opened */

    /* Streams owed on_writable, oldest first (round-robin on session credit). */
    struct stream *blocked_head, *blocked_tail;
    uint64_t round;

    /* Session flow control: the same four quantities as a stream's. */
    int64_t send_credit;
    uint32_t recv_credit, unconsumed, to_return;

    int64_t pings[MUX_PINGS_MAX];
    unsigned ping_first, ping_count;

    size_t partial_len;    /* bytes of an incomplete frame in `partial` */
    uint8_t partial[MUX_FRAME_MAX];
    uint8_t out[MUX_FRAME_MAX];
};

struct frame {
    uint8_t type, flags;
    uint32_t stream;
    uint32_t len;
    const uint8_t *payload;
};

/* ---- small helpers ------------------------------------------------------- */

static int64_t now(struct mux *m);

/* Callbacks run only while the session is live and nobody asked to free it:
 * that is the whole of "no callbacks after on_session_closed". */
static bool
alive(const struct mux *m)
{
    return m->state == SESSION_LIVE && !m->free_pending;
}

/* Text from the wire becomes a C string safe to log: bounded, and control
 * bytes (NUL included) shown as '?'. */
static void
copy_text(char *out, size_t out_size, const uint8_t *p, size_t n)
{
    if (n > out_size - 1)
        n = out_size - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (p[i] < 0x20 || p[i] == 0x7f) ? '?' : (char)p[i];
    out[n] = '\0';
}

/* ---- the stream table ---------------------------------------------------- */

static size_t
slot_index(const struct mux *m, uint32_t id, bool *found)
{
    size_t lo = 0, hi = m->nslots;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->slots[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < m->nslots && m->slots[lo].id == id && m->slots[lo].stream != NULL;
    return lo;
}

/* Any table entry, tombstones included. */
static struct stream *
table_find(const struct mux *m, uint32_t id)
{
    bool found;
    size_t i = slot_index(m, id, &found);
    return found ? m->slots[i].stream : NULL;
}

/* A stream the owner may act on: in the table and not reset by us. */
static struct stream *
find_live(const struct mux *m, uint32_t id)
{
    struct stream *s = table_find(m, id);
    return s != NULL && !s->reset_sent ? s : NULL;
}

static void
table_compact(struct mux *m)
{
    uint32_t j = 0;
    for (uint32_t i = 0; i < m->nslots; i++)
        if (m->slots[i].stream != NULL)
            m->slots[j++] = m->slots[i];
    m->nslots = j;
    m->holes = 0;
}

/* Appends: callers guarantee id is above every id in the table. */
static int
table_insert(struct mux *m, struct stream *s)
{
    if (m->nslots == m->cap && m->holes > 0)
        table_compact(m);
    if (m->nslots == m->cap) {
        /* Holes are gone, so nslots == total < max_streams: growth stops at
         * max_streams entries. */
        uint32_t cap = m->cap == 0 ? 16 : m->cap * 2;
        if (cap > m->max_streams)
            cap = m->max_streams;
        struct slot *slots = realloc(m->slots, (size_t)cap * sizeof(*slots));
        if (slots == NULL)
            return -1;
        m->slots = slots;
        m->cap = cap;
    }
    m->slots[m->nslots].id = s->id;
    m->slots[m->nslots].stream = s;
    m->nslots++;
    m->total++;
    return 0;
}

static void
table_remove(struct mux *m, uint32_t id)
{
    bool found;
    size_t i = slot_index(m, id, &found);
    if (!found)
        return;
    m->slots[i].stream = NULL;
    m->total--;
    if (i + 1 == m->nslots) {
        /* Trailing holes cost nothing to drop; ids stay sorted. */
        while (m->nslots > 0 && m->slots[m->nslots - 1].stream == NULL) {
            if (m->nslots - 1 != i)
                m->holes--;
            m->nslots--;
        }
        return;
    }
    /* Amortised O(1): compact once holes are half the array. */
    if (++m->holes > m->nslots / 2)
        table_compact(m);
}

static struct stream *
stream_new(struct mux *m, uint32_t id)
{
    struct stream *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->id = id;
    s->send_credit = m->window;
    s->recv_credit = m->window;
    s->tune.window = m->window;
    s->tune.epoch_ms = now(m);
    if (table_insert(m, s) != 0) {
        free(s);
        return NULL;
    }
    m->live++;
    return s;
}

/* ---- the blocked list ---------------------------------------------------- */

static void
unblock(struct mux *m, struct stream *s)
{
    if (!s->blocked)
        return;
    if (s->blocked_prev != NULL)
        s->blocked_prev->blocked_next = s->blocked_next;
    else
        m->blocked_head = s->blocked_next;
    if (s->blocked_next != NULL)
        s->blocked_next->blocked_prev = s->blocked_prev;
    else
        m->blocked_tail = s->blocked_prev;
    s->blocked_prev = s->blocked_next = NULL;
    s->blocked = false;
}

static void
block(struct mux *m, struct stream *s)
{
    if (s->blocked)
        return;
    s->blocked = true;
    s->blocked_round = m->round;
    s->blocked_prev = m->blocked_tail;
    s->blocked_next = NULL;
    if (m->blocked_tail != NULL)
        m->blocked_tail->blocked_next = s;
    else
        m->blocked_head = s;
    m->blocked_tail = s;
}

static bool
can_send(const struct mux *m, const struct stream *s)
{
    return s->established && !s->local_fin && s->send_credit > 0 && m->send_credit > 0;
}

/* ---- callbacks ----------------------------------------------------------- */

/* Every callback but write goes through one of these: they count the nesting
 * (so mux_free inside is deferred) and run nothing once the session is over. */
#define CALLBACK(m, name, ...)                          \
    do {                                                \
        if (alive(m) && (m)->cb.name != NULL) {         \
            (m)->depth++;                               \
            (m)->cb.name((m)->user, __VA_ARGS__);       \
            (m)->depth--;                               \
        }                                               \
    } while (0)

/* The closing callbacks of session_end run after the state left LIVE. */
#define CLOSING_CALLBACK(m, name, ...)                  \
    do {                                                \
        if (!(m)->free_pending && (m)->cb.name != NULL) { \
            (m)->depth++;                               \
            (m)->cb.name((m)->user, __VA_ARGS__);       \
            (m)->depth--;                               \
        }                                               \
    } while (0)

/* ---- output -------------------------------------------------------------- */

static void session_end(struct mux *m, enum mux_code code, const char *reason, bool goaway);

/* Encodes one frame (payload in up to two parts) and hands it to write.
 * Callers bound the payload (≤ MUX_MAX_PAYLOAD); one that does not fit
 * the frame buffer is refused like a failed write. */
static int
emit(struct mux *m, uint8_t type, uint8_t flags, uint32_t id, const void *a, size_t a_len,
     const void *b, size_t b_len)
{
    struct bytes_writer w;
    bytes_writer_init(&w, m->out, sizeof(m->out));
    if (a_len > MUX_MAX_PAYLOAD || b_len > MUX_MAX_PAYLOAD - a_len)
        return -1;
    (void)bytes_write_u8(&w, type);
    (void)bytes_write_u8(&w, flags);
    (void)bytes_write_u32be(&w, id);
    (void)bytes_write_u16be(&w, (uint16_t)(a_len + b_len));
    (void)bytes_write(&w, a, a_len);
    (void)bytes_write(&w, b, b_len);
    if (bytes_writer_failed(&w))
        return -1;
    m->in_write = true;
    m->depth++;
    int rc = m->cb.write(m->user, m->out, bytes_written(&w));
    m->depth--;
    m->in_write = false;
    return rc;
}

/* Returns 0, or -1 when the session is over (a failed write ends it, and its
 * closing callbacks have run): the caller must then stop and touch no stream
 * pointer it held. */
static int
send_frame(struct mux *m, uint8_t type, uint8_t flags, uint32_t id, const void *a, size_t a_len,
           const void *b, size_t b_len)
{
    if (!alive(m))
        return -1;
    if (emit(m, type, flags, id, a, a_len, b, b_len) != 0) {
        session_end(m, MUX_CODE_INTERNAL, "write to the connection failed", false);
        return -1;
    }
    return alive(m) ? 0 : -1;
}

/* RST and GOAWAY payloads: the 2-byte code, then the reason. */
static void
encode_code(uint8_t out[2], enum mux_code code)
{
    struct bytes_writer w;
    bytes_writer_init(&w, out, 2);
    (void)bytes_write_u16be(&w, (uint16_t)code);
}

static int
send_code(struct mux *m, uint8_t type, uint8_t flags, uint32_t id, enum mux_code code,
          const char *reason)
{
    uint8_t c[2];
    encode_code(c, code);
    size_t n = reason != NULL ? strnlen(reason, MUX_REASON_MAX - 1) : 0;
    return send_frame(m, type, flags, id, c, 2, reason, n);
}

static int
send_window(struct mux *m, uint32_t id, uint32_t increment)
{
    uint8_t p[4];
    struct bytes_writer w;
    bytes_writer_init(&w, p, sizeof(p));
    (void)bytes_write_u32be(&w, increment);
    return send_frame(m, MUX_WINDOW, 0, id, p, sizeof(p), NULL, 0);
}

/* Credit returned now (n), plus the growth when the window was drained
 * fast; *grant is what the WINDOW frame carries. */
static uint32_t
autotune_grant(struct mux *m, struct autotune *t, uint32_t max_window, uint32_t n)
{
    if (t->window >= max_window)
        return n;
    int64_t at = now(m);
    t->epoch_consumed += n;
    if (t->epoch_consumed < t->window)
        return n;
    uint32_t grow = 0;
    if (at - t->epoch_ms < MUX_GROW_MS) {
        grow = t->window < max_window - t->window ? t->window : max_window - t->window;
        t->window += grow;
    }
    t->epoch_ms = at;
    t->epoch_consumed = 0;
    return n + grow;
}

/* Credit goes back in batches of a quarter window, not per read. */
static int
return_session_credit(struct mux *m)
{
    if (m->to_return == 0 || m->to_return < (m->session_tune.window + 3) / 4)
        return 0;
    uint32_t n = autotune_grant(m, &m->session_tune, m->session_max_window, m->to_return);
    if (send_window(m, 0, n) != 0)
        return -1;
    m->to_return = 0;
    m->recv_credit += n;
    return 0;
}

static int
return_stream_credit(struct mux *m, struct stream *s)
{
    if (s->remote_fin) {
        s->to_return = 0;   /* the peer sends no more: credit is moot */
        return 0;
    }
    if (s->to_return == 0 || s->to_return < (s->tune.window + 3) / 4)
        return 0;
    uint32_t n = autotune_grant(m, &s->tune, m->max_window, s->to_return);
    if (send_window(m, s->id, n) != 0)
        return -1;
    s->to_return = 0;
    s->recv_credit += n;
    return 0;
}

/* ---- session and stream endings ----------------------------------------- */

/* Ends the session once: optional GOAWAY, then on_stream_closed for every
 * stream the owner knows, then on_session_closed. The state leaves LIVE
 * first, so the mux calls those callbacks make all fail and the table stays
 * as it is while it is walked; the streams are freed by mux_free. */
static void
session_end(struct mux *m, enum mux_code code, const char *reason, bool goaway)
{
    if (m->state != SESSION_LIVE)
        return;
    m->state = SESSION_CLOSED;
    if (goaway && !m->free_pending) {
        uint8_t c[2];
        encode_code(c, code);
        (void)emit(m, MUX_GOAWAY, 0, 0, c, 2, reason, strnlen(reason, MUX_REASON_MAX - 1));
    }
    for (uint32_t i = 0; i < m->nslots; i++) {
        struct stream *s = m->slots[i].stream;
        if (s != NULL && !s->reset_sent)
            CLOSING_CALLBACK(m, on_stream_closed, s->id, code, reason);
    }
    CLOSING_CALLBACK(m, on_session_closed, code, reason);
}

static int fail(struct mux *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A protocol error: GOAWAY with the reason, and the session ends. Always -1. */
static int
fail(struct mux *m, const char *fmt, ...)
{
    char reason[MUX_REASON_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    session_end(m, MUX_CODE_PROTOCOL_ERROR, reason, true);
    return -1;
}

/* The stream leaves the owner's view: bytes it had not consumed go back to
 * the session (the owner drops them with the stream), it is closed or left
 * as a tombstone, and on_stream_closed runs. Returns -1 if the session
 * ended meanwhile. */
static int
stream_close(struct mux *m, struct stream *s, enum mux_code code, const char *reason,
             bool tombstone)
{
    uint32_t id = s->id;
    void *user = s->user;
    unblock(m, s);
    m->unconsumed -= s->unconsumed;
    m->to_return += s->unconsumed;
    s->unconsumed = 0;
    m->live--;
    if (tombstone) {
        s->reset_sent = true;
    } else {
        table_remove(m, id);
        free(s);
    }
    /* The owner finds its pointer for the stream during the callback. */
    uint32_t outer_id = m->closing_id;
    void *outer_user = m->closing_user;
    m->closing_id = id;
    m->closing_user = user;
    CALLBACK(m, on_stream_closed, id, code, reason);
    m->closing_id = outer_id;
    m->closing_user = outer_user;
    if (!alive(m))
        return -1;
    return return_session_credit(m);
}

/* Both directions finished: the stream closes normally. */
static int
stream_maybe_done(struct mux *m, struct stream *s)
{
    if (s->local_fin && !s->fin_unsent && s->remote_fin)
        return stream_close(m, s, MUX_CODE_NORMAL, "finished", false);
    return 0;
}

static void
tombstone_free(struct mux *m, struct stream *s)
{
    table_remove(m, s->id);
    free(s);
}

/* ---- input: per-type handlers -------------------------------------------- */

/* Where a frame's stream id stands. */
enum stream_lookup {
    LOOKUP_LIVE,      /* open, the owner knows it */
    LOOKUP_RESET,     /* we reset it and wait for the peer's RST */
    LOOKUP_CLOSED,    /* it existed and is gone */
    LOOKUP_UNKNOWN,   /* never opened */
};

static enum stream_lookup
lookup(const struct mux *m, uint32_t id, struct stream **out)
{
    *out = table_find(m, id);
    if (*out != NULL)
        return (*out)->reset_sent ? LOOKUP_RESET : LOOKUP_LIVE;
    if ((id & 1) == 0)
        return LOOKUP_UNKNOWN;
    if (m->role == MUX_OPENER)
        return id < m->next_id ? LOOKUP_CLOSED : LOOKUP_UNKNOWN;
    return id <= m->last_peer_id ? LOOKUP_CLOSED : LOOKUP_UNKNOWN;
}

/* RST / GOAWAY payload (its size was checked with the header). */
static int
parse_code(struct mux *m, const struct frame *f, const char *what, enum mux_code *code,
           char reason[MUX_REASON_MAX])
{
    struct bytes_reader r;
    uint16_t c;
    const uint8_t *text;
    bytes_reader_init(&r, f->payload, f->len);
    (void)bytes_read_u16be(&r, &c);
    size_t text_len = bytes_remaining(&r);
    if (bytes_read_view(&r, text_len, &text) != 0)
        return fail(m, "%s payload of %u bytes (must be 2..%d)", what, f->len,
                    2 + MUX_REASON_MAX - 1);
    if (c > MUX_CODE_LAST)
        return fail(m, "%s with unknown code %u", what, (unsigned)c);
    *code = (enum mux_code)c;
    copy_text(reason, MUX_REASON_MAX, text, text_len);
    return 0;
}

static int
handle_open(struct mux *m, const struct frame *f)
{
    uint32_t id = f->stream;
    if (m->role == MUX_OPENER)
        return fail(m, "OPEN from the acceptor (stream %u)", id);
    if ((id & 1) == 0)
        return fail(m, "OPEN with even stream id %u", id);
    if (table_find(m, id) != NULL)
        return fail(m, "duplicate OPEN for stream %u", id);
    if (id <= m->last_peer_id)
        return fail(m, "OPEN for stream %u after stream %u (ids must increase)", id,
                    m->last_peer_id);
    if (memchr(f->payload, '\0', f->len) != NULL)
        return fail(m, "OPEN resource contains NUL (stream %u)", id);
    m->last_peer_id = id;
    /* The opener cannot send anything but RST before OPEN_OK, so a refusal
     * needs no tombstone: its ACK lands on a closed id, which is harmless. */
    if (m->total >= m->max_streams)
        return send_code(m, MUX_RST, 0, id, MUX_CODE_REFUSED, "stream limit reached");
    struct stream *s = stream_new(m, id);
    if (s == NULL)
        return send_code(m, MUX_RST, 0, id, MUX_CODE_REFUSED, "out of memory");
    char resource[MUX_RESOURCE_MAX + 1];
    memcpy(resource, f->payload, f->len);
    resource[f->len] = '\0';
    CALLBACK(m, on_open, id, resource);
    return alive(m) ? 0 : -1;
}

static int
handle_open_ok(struct mux *m, const struct frame *f)
{
    struct stream *s;
    uint32_t id = f->stream;
    if (m->role == MUX_ACCEPTOR)
        return fail(m, "OPEN_OK from the opener (stream %u)", id);
    enum stream_lookup how = lookup(m, id, &s);
    if (how == LOOKUP_CLOSED)
        return fail(m, "OPEN_OK for closed stream %u", id);
    if (how == LOOKUP_UNKNOWN)
        return fail(m, "OPEN_OK for unknown stream %u", id);
    if (s->established)
        return fail(m, "duplicate OPEN_OK for stream %u", id);
    s->established = true;   /* a tombstone too: DATA may follow in flight */
    if (how == LOOKUP_RESET)
        return 0;
    if (s->fin_unsent) {
        s->fin_unsent = false;
        if (send_frame(m, MUX_FIN, 0, id, NULL, 0, NULL, 0) != 0)
            return -1;
    }
    CALLBACK(m, on_open_ok, id);
    /* The callback may have sent, reset or closed: look the stream up again. */
    s = find_live(m, id);
    if (alive(m) && s != NULL && s->blocked && can_send(m, s)) {
        unblock(m, s);
        CALLBACK(m, on_writable, id);
    }
    return alive(m) ? 0 : -1;
}

/* Common to DATA and FIN: frames that only an established, not yet finished
 * direction may carry. */
static int
check_peer_sending(struct mux *m, const struct frame *f, const struct stream *s,
                   const char *what)
{
    if (!s->established)
        return fail(m, "%s on stream %u before OPEN_OK", what, f->stream);
    if (s->remote_fin)
        return fail(m, "%s after FIN on stream %u", what, f->stream);
    return 0;
}

static int
handle_data(struct mux *m, const struct frame *f)
{
    struct stream *s;
    enum stream_lookup how = lookup(m, f->stream, &s);
    if (how == LOOKUP_CLOSED)
        return fail(m, "DATA for closed stream %u", f->stream);
    if (how == LOOKUP_UNKNOWN)
        return fail(m, "DATA for unknown stream %u", f->stream);
    if (check_peer_sending(m, f, s, "DATA") != 0)
        return -1;
    if (f->len > s->recv_credit)
        return fail(m, "DATA beyond stream credit on stream %u (%u bytes, %u left)", f->stream,
                    f->len, s->recv_credit);
    if (f->len > m->recv_credit)
        return fail(m, "DATA beyond session credit (%u bytes, %u left)", f->len, m->recv_credit);
    s->recv_credit -= f->len;
    m->recv_credit -= f->len;
    if (how == LOOKUP_RESET) {
        /* In flight before our RST: nobody reads it, the session gets the
         * credit back at once. */
        m->to_return += f->len;
        return return_session_credit(m);
    }
    if (f->len == 0)
        return 0;
    s->unconsumed += f->len;
    m->unconsumed += f->len;
    CALLBACK(m, on_data, f->stream, f->payload, f->len);
    return alive(m) ? 0 : -1;
}

static int
handle_fin(struct mux *m, const struct frame *f)
{
    struct stream *s;
    uint32_t id = f->stream;
    enum stream_lookup how = lookup(m, id, &s);
    if (how == LOOKUP_CLOSED)
        return fail(m, "FIN for closed stream %u", id);
    if (how == LOOKUP_UNKNOWN)
        return fail(m, "FIN for unknown stream %u", id);
    if (check_peer_sending(m, f, s, "FIN") != 0)
        return -1;
    s->remote_fin = true;
    s->to_return = 0;
    if (how == LOOKUP_RESET)
        return 0;
    CALLBACK(m, on_fin, id);
    s = find_live(m, id);
    if (!alive(m))
        return -1;
    return s != NULL ? stream_maybe_done(m, s) : 0;
}

static int
check_increment(struct mux *m, int64_t credit, uint32_t inc, uint32_t id)
{
    if (inc == 0)
        return fail(m, "WINDOW increment of 0 on stream %u", id);
    if (credit + (int64_t)inc > (int64_t)MUX_CREDIT_MAX) {
        if (id == 0)
            return fail(m, "WINDOW overflow on the session (%lld + %u > 2^31-1)",
                        (long long)credit, inc);
        return fail(m, "WINDOW overflow on stream %u (%lld + %u > 2^31-1)", id,
                    (long long)credit, inc);
    }
    return 0;
}

/* Session credit came back: on_writable for blocked streams, oldest first,
 * while there is credit. Streams blocked during this walk (the callbacks
 * send) carry the new round and wait for the next one, so the walk ends. */
static int
wake_blocked(struct mux *m)
{
    uint64_t round = ++m->round;
    while (alive(m) && m->send_credit > 0) {
        struct stream *s = m->blocked_head;
        if (s == NULL || s->blocked_round >= round)
            break;
        unblock(m, s);
        if (!can_send(m, s)) {
            block(m, s);   /* still short of stream credit or OPEN_OK */
            continue;
        }
        CALLBACK(m, on_writable, s->id);
    }
    return alive(m) ? 0 : -1;
}

static int
handle_window(struct mux *m, const struct frame *f)
{
    uint32_t inc;
    struct bytes_reader r;
    bytes_reader_init(&r, f->payload, f->len);
    if (bytes_read_u32be(&r, &inc) != 0)
        return fail(m, "WINDOW payload of %u bytes (must be 4)", f->len);
    if (f->stream == 0) {
        if (check_increment(m, m->send_credit, inc, 0) != 0)
            return -1;
        m->send_credit += inc;
        return wake_blocked(m);
    }
    struct stream *s;
    enum stream_lookup how = lookup(m, f->stream, &s);
    if (how == LOOKUP_UNKNOWN)
        return fail(m, "WINDOW for unknown stream %u", f->stream);
    if (how != LOOKUP_LIVE)
        return 0;   /* late credit for a stream we closed: harmless */
    if (!s->established)
        return fail(m, "WINDOW on stream %u before OPEN_OK", f->stream);
    if (check_increment(m, s->send_credit, inc, f->stream) != 0)
        return -1;
    s->send_credit += inc;
    if (s->blocked && can_send(m, s)) {
        unblock(m, s);
        CALLBACK(m, on_writable, f->stream);
    }
    return alive(m) ? 0 : -1;
}

static int
handle_rst(struct mux *m, const struct frame *f)
{
    enum mux_code code = MUX_CODE_NORMAL;
    char reason[MUX_REASON_MAX];
    if (parse_code(m, f, "RST", &code, reason) != 0)
        return -1;
    bool ack = (f->flags & MUX_FLAG_ACK) != 0;
    struct stream *s;
    enum stream_lookup how = lookup(m, f->stream, &s);
    switch (how) {
    case LOOKUP_UNKNOWN:
        return fail(m, "RST for unknown stream %u", f->stream);
    case LOOKUP_CLOSED:
        /* Late: the peer reset a stream that finished here meanwhile. It may
         * keep a tombstone for it, so it gets its ACK. */
        return ack ? 0 : send_code(m, MUX_RST, MUX_FLAG_ACK, f->stream, MUX_CODE_NORMAL, NULL);
    case LOOKUP_RESET:
        /* The peer's ACK, or its own RST crossing ours: either way the peer
         * sends nothing more on this id. */
        tombstone_free(m, s);
        return 0;
    case LOOKUP_LIVE:
        break;
    }
    if (ack)
        return fail(m, "RST ACK for stream %u, which was not reset", f->stream);
    /* ACK before the callback, so an OPEN the owner sends from it follows. */
    if (send_code(m, MUX_RST, MUX_FLAG_ACK, f->stream, MUX_CODE_NORMAL, NULL) != 0)
        return -1;
    return stream_close(m, s, code, reason, false);
}

static int
handle_ping(struct mux *m, const struct frame *f)
{
    return send_frame(m, MUX_PONG, 0, 0, f->payload, f->len, NULL, 0);
}

static int64_t
now(struct mux *m)
{
    return m->now_ms != NULL ? m->now_ms(m->user) : clock_monotonic_ms(clock_system());
}

static int
handle_pong(struct mux *m, const struct frame *f)
{
    if (m->ping_count == 0)
        return fail(m, "unsolicited PONG");
    int64_t sent = m->pings[m->ping_first];
    uint64_t echoed;
    struct bytes_reader r;
    bytes_reader_init(&r, f->payload, f->len);
    if (bytes_read_u64be(&r, &echoed) != 0 || echoed != (uint64_t)sent)
        return fail(m, "PONG does not match the PING sent");
    m->ping_first = (m->ping_first + 1) % MUX_PINGS_MAX;
    m->ping_count--;
    int64_t rtt = now(m) - sent;
    CALLBACK(m, on_pong, rtt > 0 ? rtt : 0);
    return alive(m) ? 0 : -1;
}

static int
handle_identity(struct mux *m, const struct frame *f)
{
    CALLBACK(m, on_identity, f->payload, f->len);
    return alive(m) ? 0 : -1;
}

static int
handle_goaway(struct mux *m, const struct frame *f)
{
    enum mux_code code = MUX_CODE_NORMAL;
    char reason[MUX_REASON_MAX];
    if (parse_code(m, f, "GOAWAY", &code, reason) != 0)
        return -1;
    session_end(m, code, reason, false);
    return -1;
}

/* ---- input: the frame table ---------------------------------------------- */

enum id_rule { ID_STREAM, ID_SESSION, ID_ANY };

struct frame_kind {
    const char *name;
    enum id_rule ids;
    uint16_t min_len, max_len;
    uint8_t flags;          /* flags allowed */
    const char *payload;    /* what the payload is, for error texts */
    int (*handle)(struct mux *m, const struct frame *f);
};

/* Everything about a frame that its header alone decides, checked before a
 * byte of payload is buffered. */
static const struct frame_kind kinds[] = {
    [MUX_OPEN] = {"OPEN", ID_STREAM, 1, MUX_RESOURCE_MAX, 0, "resource", handle_open},
    [MUX_OPEN_OK] = {"OPEN_OK", ID_STREAM, 0, 0, 0, "payload", handle_open_ok},
    [MUX_DATA] = {"DATA", ID_STREAM, 0, MUX_MAX_PAYLOAD, 0, "payload", handle_data},
    [MUX_WINDOW] = {"WINDOW", ID_ANY, 4, 4, 0, "payload", handle_window},
    [MUX_FIN] = {"FIN", ID_STREAM, 0, 0, 0, "payload", handle_fin},
    [MUX_RST] = {"RST", ID_STREAM, 2, 2 + MUX_REASON_MAX - 1, MUX_FLAG_ACK, "payload",
                 handle_rst},
    [MUX_PING] = {"PING", ID_SESSION, 8, 8, 0, "payload", handle_ping},
    [MUX_PONG] = {"PONG", ID_SESSION, 8, 8, 0, "payload", handle_pong},
    [MUX_GOAWAY] = {"GOAWAY", ID_SESSION, 2, 2 + MUX_REASON_MAX - 1, 0, "payload",
                    handle_goaway},
    [MUX_IDENTITY] = {"IDENTITY", ID_SESSION, 1, MUX_MAX_PAYLOAD, 0, "payload",
                      handle_identity},
};

/* Reads a frame header off r; -1 (r failed) when fewer than
 * MUX_HEADER_SIZE bytes remain. */
static int
read_header(struct bytes_reader *r, struct frame *f)
{
    uint16_t len = 0;
    (void)bytes_read_u8(r, &f->type);
    (void)bytes_read_u8(r, &f->flags);
    (void)bytes_read_u32be(r, &f->stream);
    (void)bytes_read_u16be(r, &len);
    f->len = len;
    f->payload = NULL;
    return bytes_reader_failed(r) ? -1 : 0;
}

static int
check_header(struct mux *m, const struct frame *f)
{
    if (f->type >= sizeof(kinds) / sizeof(kinds[0]) || kinds[f->type].name == NULL)
        return fail(m, "unknown frame type 0x%02x", f->type);
    const struct frame_kind *k = &kinds[f->type];
    if (f->len > MUX_MAX_PAYLOAD)
        return fail(m, "%s payload of %u bytes exceeds %d", k->name, f->len, MUX_MAX_PAYLOAD);
    if (k->ids == ID_STREAM && f->stream == 0)
        return fail(m, "%s on stream 0", k->name);
    if (k->ids == ID_SESSION && f->stream != 0)
        return fail(m, "%s on stream %u (must be 0)", k->name, f->stream);
    if ((f->flags & ~k->flags) != 0)
        return fail(m, "%s with unknown flags 0x%02x", k->name, f->flags);
    if (f->len < k->min_len || f->len > k->max_len) {
        if (k->min_len == k->max_len)
            return fail(m, "%s %s of %u bytes (must be %u)", k->name, k->payload, f->len,
                        k->min_len);
        return fail(m, "%s %s of %u bytes (must be %u..%u)", k->name, k->payload, f->len,
                    k->min_len, k->max_len);
    }
    return 0;
}

static int
dispatch(struct mux *m, const struct frame *f)
{
    if (kinds[f->type].handle(m, f) != 0)
        return -1;
    return alive(m) ? 0 : -1;
}

/* The header of the buffered partial frame (complete: callers check). */
static void
partial_header(const struct mux *m, struct frame *f)
{
    struct bytes_reader r;
    bytes_reader_init(&r, m->partial, m->partial_len);
    (void)read_header(&r, f);
}

/* Moves up to want bytes from in to the end of the partial frame. */
static void
partial_fill(struct mux *m, struct bytes_reader *in, size_t want)
{
    size_t take = want < bytes_remaining(in) ? want : bytes_remaining(in);
    (void)bytes_read(in, m->partial + m->partial_len, take);
    m->partial_len += take;
}

/* Completes the buffered partial frame from in; -1 when the frame ended
 * the session. */
static int
input_partial(struct mux *m, struct bytes_reader *in)
{
    struct frame f;
    if (m->partial_len < MUX_HEADER_SIZE) {
        partial_fill(m, in, MUX_HEADER_SIZE - m->partial_len);
        if (m->partial_len < MUX_HEADER_SIZE)
            return 0;
        partial_header(m, &f);
        if (check_header(m, &f) != 0)
            return -1;
    }
    partial_header(m, &f);
    partial_fill(m, in, MUX_HEADER_SIZE + f.len - m->partial_len);
    if (m->partial_len < MUX_HEADER_SIZE + f.len)
        return 0;
    m->partial_len = 0;   /* the payload stays put: mux_input cannot nest */
    f.payload = m->partial + MUX_HEADER_SIZE;
    return dispatch(m, &f);
}

static int
input(struct mux *m, const uint8_t *data, size_t len)
{
    struct bytes_reader in;
    bytes_reader_init(&in, data, len);
    if (m->partial_len > 0) {
        if (input_partial(m, &in) != 0)
            return -1;
        if (m->partial_len > 0)
            return 0;   /* the whole input went into the partial frame */
    }
    /* Whole frames are parsed where they lie; only a tail is copied. The
     * header is read on a copy of the cursor, so an incomplete frame is
     * left in place for the copy below. */
    for (;;) {
        struct bytes_reader ahead = in;
        struct frame f;
        if (read_header(&ahead, &f) != 0)
            break;
        if (check_header(m, &f) != 0)
            return -1;
        if (bytes_read_view(&ahead, f.len, &f.payload) != 0)
            break;
        in = ahead;
        if (dispatch(m, &f) != 0)
            return -1;
    }
    m->partial_len = bytes_remaining(&in);
    (void)bytes_read(&in, m->partial, m->partial_len);
    return 0;
}

/* ---- the API ------------------------------------------------------------- */

static void
destroy(struct mux *m)
{
    for (uint32_t i = 0; i < m->nslots; i++)
        free(m->slots[i].stream);
    free(m->slots);
    free(m);
}

/* Public calls that may run callbacks are bracketed so a mux_free from any
 * callback waits for the outermost call to return. */
static void
enter(struct mux *m)
{
    m->depth++;
}

static void
leave(struct mux *m)
{
    if (--m->depth == 0 && m->free_pending)
        destroy(m);
}

/* The owner may act: the session is live and we are not inside write. */
static bool
usable(const struct mux *m)
{
    return m != NULL && alive(m) && !m->in_write;
}

#define MUX_SESSION_WINDOW_FACTOR 4u

uint32_t
mux_session_window(uint32_t stream_window)
{
    if (stream_window > UINT32_MAX / MUX_SESSION_WINDOW_FACTOR)
        return UINT32_MAX;
    return MUX_SESSION_WINDOW_FACTOR * stream_window;
}

int
mux_new(const struct mux_config *config, const struct mux_callbacks *callbacks, void *user,
        struct mux **out, struct ztr_err *err)
{
    *out = NULL;
    if (config == NULL || callbacks == NULL || callbacks->write == NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "mux: a config and a write callback are required");
    if (config->role != MUX_OPENER && config->role != MUX_ACCEPTOR)
        return ztr_err_set(err, ZTR_E_INVALID, "mux: unknown role %d", (int)config->role);
    uint32_t window = config->window != 0 ? config->window : MUX_DEFAULT_WINDOW;
    if (window > MUX_CREDIT_MAX)
        return ztr_err_set(err, ZTR_E_INVALID, "mux: window %u above 2^31-1", window);
    uint32_t session_window = config->session_window != 0 ? config->session_window : window;
    if (session_window > MUX_CREDIT_MAX)
        return ztr_err_set(err, ZTR_E_INVALID, "mux: session window %u above 2^31-1",
                           session_window);
    uint32_t max_window = config->max_window > window ? config->max_window : window;
    uint32_t session_max = config->session_max_window > session_window
                               ? config->session_max_window
                               : session_window;
    if (max_window > MUX_CREDIT_MAX / 2 || session_max > MUX_CREDIT_MAX / 2)
        return ztr_err_set(err, ZTR_E_INVALID, "mux: maximum window above 2^30");
    uint32_t max_streams = config->max_streams != 0 ? config->max_streams : MUX_MAX_STREAMS;
    if (max_streams > MUX_MAX_STREAMS)
        return ztr_err_set(err, ZTR_E_INVALID, "mux: max_streams %u above %d", max_streams,
                           MUX_MAX_STREAMS);
    struct mux *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "mux: out of memory");
    m->cb = *callbacks;
    m->user = user;
    m->role = config->role;
    m->window = window;
    m->session_window = session_window;
    m->max_window = max_window;
    m->session_max_window = session_max;
    m->session_tune.window = session_window;
    m->max_streams = max_streams;
    m->now_ms = config->now_ms;
    m->state = SESSION_LIVE;
    m->next_id = 1;
    m->send_credit = session_window;
    m->recv_credit = session_window;
    m->session_tune.epoch_ms = now(m);
    *out = m;
    return 0;
}

void
mux_free(struct mux *mux)
{
    if (mux == NULL)
        return;
    if (mux->depth > 0) {
        mux->free_pending = true;   /* inside a callback: see leave() */
        return;
    }
    destroy(mux);
}

int
mux_input(struct mux *mux, const uint8_t *data, size_t len)
{
    /* Not from a callback: the partial buffer and the walk over `data`
     * would be pulled from under the outer call. */
    if (!usable(mux) || mux->depth > 0)
        return -1;
    enter(mux);
    int rc = input(mux, data, len);
    leave(mux);
    return rc;
}

static int
open_stream(struct mux *m, const char *resource, uint32_t *stream, struct ztr_err *err)
{
    if (m->role != MUX_OPENER)
        return ztr_err_set(err, ZTR_E_INVALID, "mux: only the opener opens streams");
    size_t n = resource != NULL ? strnlen(resource, MUX_RESOURCE_MAX + 1) : 0;
    if (n == 0 || n > MUX_RESOURCE_MAX)
        return ztr_err_set(err, ZTR_E_INVALID, "mux: resource name must be 1..%d bytes",
                           MUX_RESOURCE_MAX);
    if (m->next_id > UINT32_MAX)
        return ztr_err_set(err, ZTR_E_LIMIT, "mux: stream ids exhausted; open a new session");
    if (m->total >= m->max_streams)
        return ztr_err_set(err, ZTR_E_LIMIT, "mux: %u streams open (the limit)", m->total);
    uint32_t id = (uint32_t)m->next_id;
    /* OPEN goes out first: if the write fails there is no stream to close. */
    if (send_frame(m, MUX_OPEN, 0, id, resource, n, NULL, 0) != 0)
        return ztr_err_set(err, ZTR_E_IO, "mux: session closed");
    m->next_id += 2;
    if (stream_new(m, id) == NULL) {
        /* The peer has the OPEN: take it back. */
        (void)send_code(m, MUX_RST, 0, id, MUX_CODE_INTERNAL, "out of memory");
        return ztr_err_set(err, ZTR_E_NOMEM, "mux: out of memory for a stream");
    }
    *stream = id;
    return 0;
}

int
mux_open(struct mux *mux, const char *resource, uint32_t *stream, struct ztr_err *err)
{
    if (!usable(mux))
        return ztr_err_set(err, ZTR_E_INVALID, "mux: session closed");
    enter(mux);
    int rc = open_stream(mux, resource, stream, err);
    leave(mux);
    return rc;
}

static int
accept_stream(struct mux *m, uint32_t id, struct ztr_err *err)
{
    struct stream *s = find_live(m, id);
    if (m->role != MUX_ACCEPTOR)
        return ztr_err_set(err, ZTR_E_INVALID, "mux: only the acceptor accepts streams");
    if (s == NULL)
        return ztr_err_set(err, ZTR_E_NOT_FOUND, "mux: no stream %u", id);
    if (s->established)
        return ztr_err_set(err, ZTR_E_INVALID, "mux: stream %u already accepted", id);
    if (send_frame(m, MUX_OPEN_OK, 0, id, NULL, 0, NULL, 0) != 0)
        return ztr_err_set(err, ZTR_E_IO, "mux: session closed");
    s->established = true;
    return 0;
}

int
mux_accept(struct mux *mux, uint32_t stream, struct ztr_err *err)
{
    if (!usable(mux))
        return ztr_err_set(err, ZTR_E_INVALID, "mux: session closed");
    enter(mux);
    int rc = accept_stream(mux, stream, err);
    leave(mux);
    return rc;
}

static ssize_t
send_data(struct mux *m, uint32_t id, const uint8_t *data, size_t len)
{
    struct stream *s = find_live(m, id);
    if (s == NULL || s->local_fin || (m->role == MUX_ACCEPTOR && !s->established))
        return -1;
    if (len > SSIZE_MAX)
        len = SSIZE_MAX;
    size_t taken = 0;
    while (taken < len && can_send(m, s)) {
        int64_t credit = s->send_credit < m->send_credit ? s->send_credit : m->send_credit;
        size_t n = len - taken;
        if ((int64_t)n > credit)
            n = (size_t)credit;
        if (n > MUX_MAX_PAYLOAD)
            n = MUX_MAX_PAYLOAD;
        if (send_frame(m, MUX_DATA, 0, id, data + taken, n, NULL, 0) != 0)
            return -1;
        s->send_credit -= (int64_t)n;
        m->send_credit -= (int64_t)n;
        taken += n;
    }
    /* Short (or before OPEN_OK): on_writable is owed once credit returns. */
    if (taken < len)
        block(m, s);
    else
        unblock(m, s);
    return (ssize_t)taken;
}

ssize_t
mux_send(struct mux *mux, uint32_t stream, const uint8_t *data, size_t len)
{
    if (!usable(mux))
        return -1;
    enter(mux);
    ssize_t rc = send_data(mux, stream, data, len);
    leave(mux);
    return rc;
}

static void
consumed(struct mux *m, uint32_t id, size_t len)
{
    struct stream *s = find_live(m, id);
    /* A closed stream's bytes already went back to the session. */
    if (s == NULL)
        return;
    uint32_t n = (uint32_t)(len < s->unconsumed ? len : s->unconsumed);
    s->unconsumed -= n;
    s->to_return += n;
    m->unconsumed -= n;
    m->to_return += n;
    if (return_stream_credit(m, s) != 0)
        return;
    (void)return_session_credit(m);
}

void
mux_consumed(struct mux *mux, uint32_t stream, size_t len)
{
    if (!usable(mux))
        return;
    enter(mux);
    consumed(mux, stream, len);
    leave(mux);
}

static int
fin_stream(struct mux *m, uint32_t id)
{
    struct stream *s = find_live(m, id);
    if (s == NULL || s->local_fin || (m->role == MUX_ACCEPTOR && !s->established))
        return -1;
    s->local_fin = true;
    unblock(m, s);
    if (!s->established) {
        s->fin_unsent = true;   /* the opener's FIN waits for OPEN_OK */
        return 0;
    }
    if (send_frame(m, MUX_FIN, 0, id, NULL, 0, NULL, 0) != 0)
        return -1;
    /* The FIN is out; closing the stream runs on_stream_closed, whatever
     * that callback then does to the session. */
    (void)stream_maybe_done(m, s);
    return 0;
}

int
mux_fin(struct mux *mux, uint32_t stream)
{
    if (!usable(mux))
        return -1;
    enter(mux);
    int rc = fin_stream(mux, stream);
    leave(mux);
    return rc;
}

static int
reset_stream(struct mux *m, uint32_t id, enum mux_code code, const char *reason)
{
    struct stream *s = find_live(m, id);
    if (s == NULL || (unsigned)code > MUX_CODE_LAST)
        return -1;
    /* A tombstone when the peer may still send DATA, FIN or OPEN_OK that
     * crossed our RST: those must not read as protocol errors. An acceptor
     * that has not accepted, or a stream whose peer has finished, expects
     * nothing but RST/WINDOW, which are harmless on a closed id. */
    bool tombstone = !s->remote_fin && (s->established || m->role == MUX_OPENER);
    if (send_code(m, MUX_RST, 0, id, code, reason) != 0)
        return -1;
    char text[MUX_REASON_MAX];
    copy_text(text, sizeof(text), (const uint8_t *)(reason != NULL ? reason : ""),
              reason != NULL ? strnlen(reason, MUX_REASON_MAX - 1) : 0);
    (void)stream_close(m, s, code, text, tombstone);
    return 0;
}

int
mux_reset(struct mux *mux, uint32_t stream, enum mux_code code, const char *reason)
{
    if (!usable(mux))
        return -1;
    enter(mux);
    int rc = reset_stream(mux, stream, code, reason);
    leave(mux);
    return rc;
}

static int
ping(struct mux *m)
{
    if (m->ping_count == MUX_PINGS_MAX)
        return -1;
    int64_t t = now(m);
    uint8_t p[8];
    struct bytes_writer w;
    bytes_writer_init(&w, p, sizeof(p));
    (void)bytes_write_u64be(&w, (uint64_t)t);
    if (send_frame(m, MUX_PING, 0, 0, p, 8, NULL, 0) != 0)
        return -1;
    m->pings[(m->ping_first + m->ping_count) % MUX_PINGS_MAX] = t;
    m->ping_count++;
    return 0;
}

int
mux_ping(struct mux *mux)
{
    if (!usable(mux))
        return -1;
    enter(mux);
    int rc = ping(mux);
    leave(mux);
    return rc;
}

int
mux_identity(struct mux *mux, const uint8_t *payload, size_t len)
{
    if (!usable(mux) || len == 0 || len > MUX_MAX_PAYLOAD)
        return -1;
    enter(mux);
    int rc = send_frame(mux, MUX_IDENTITY, 0, 0, payload, len, NULL, 0);
    leave(mux);
    return rc;
}

int
mux_goaway(struct mux *mux, enum mux_code code, const char *reason)
{
    if (!usable(mux) || (unsigned)code > MUX_CODE_LAST)
        return -1;
    char text[MUX_REASON_MAX];
    copy_text(text, sizeof(text), (const uint8_t *)(reason != NULL ? reason : ""),
              reason != NULL ? strnlen(reason, MUX_REASON_MAX - 1) : 0);
    enter(mux);
    session_end(mux, code, text, true);
    leave(mux);
    return 0;
}

size_t
mux_stream_count(const struct mux *mux)
{
    return mux != NULL && mux->state == SESSION_LIVE ? mux->live : 0;
}

uint32_t
mux_send_credit(const struct mux *mux, uint32_t stream)
{
    if (mux == NULL)
        return 0;
    if (stream == 0)
        return mux->send_credit > 0 ? (uint32_t)mux->send_credit : 0;
    const struct stream *s = find_live(mux, stream);
    return s != NULL && s->send_credit > 0 ? (uint32_t)s->send_credit : 0;
}

int
mux_stream_set_user(struct mux *mux, uint32_t stream, void *user)
{
    struct stream *s = mux != NULL ? find_live(mux, stream) : NULL;
    if (s == NULL)
        return -1;
    s->user = user;
    return 0;
}

void *
mux_stream_user(const struct mux *mux, uint32_t stream)
{
    if (mux == NULL || stream == 0)
        return NULL;
    if (stream == mux->closing_id)
        return mux->closing_user;
    const struct stream *s = find_live(mux, stream);
    return s != NULL ? s->user : NULL;
}

const char *
mux_code_name(enum mux_code code)
{
    static const char *const names[] = {
        [MUX_CODE_NORMAL] = "normal",
        [MUX_CODE_RESOURCE_NOT_ALLOWED] = "resource_not_allowed",
        [MUX_CODE_UNKNOWN_RESOURCE] = "unknown_resource",
        [MUX_CODE_CONNECT_FAILED] = "connect_failed",
        [MUX_CODE_PROTOCOL_ERROR] = "protocol_error",
        [MUX_CODE_REFUSED] = "refused",
        [MUX_CODE_INTERNAL] = "internal",
        [MUX_CODE_CANCEL] = "cancel",
        [MUX_CODE_PEER_NOT_ALLOWED] = "peer_not_allowed",
    };
    if ((unsigned)code >= sizeof(names) / sizeof(names[0]))
        return "unknown";
    return names[code];
}
