/* The data-plane session protocol (data/mux.c): two muxes back to back
 * through in-memory pipes, bytes delivered in random chunk sizes, and a
 * single mux fed hand-made frames for every protocol error. */
#include "tests/unit/support.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/mux.h"

/* ---- harness --------------------------------------------------------------- */



/* Drops what has been read, so long runs keep the pipe small. */
static void
bytes_compact(struct test_bytes *b)
{
    if (b->off == 0)
        return;
    memmove(b->buf, b->buf + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
}

static size_t
bytes_pending(const struct test_bytes *b)
{
    return b->len - b->off;
}

/* What one side saw of one stream. */
struct rec {
    uint32_t id;
    char resource[MUX_REASON_MAX];
    int opened, open_oks, fins, closed, writable;
    enum mux_code code;
    char reason[MUX_REASON_MAX];
    size_t received, consumed;
    uint64_t hash;                 /* FNV-1a over the bytes received */
    struct test_bytes data;             /* kept when the side says so */
};

struct side {
    const char *name;
    struct mux *mux;
    struct test_bytes out;              /* what this side wrote (the peer's input) */
    struct rec *recs;
    size_t nrecs, caprecs;
    bool keep_data, auto_accept, auto_consume, fail_write, free_on_close, dead;
    int refuse;                    /* on_open: mux_reset with this code when > 0 */
    int64_t clock;
    int session_closed, late_callbacks, pongs;
    enum mux_code session_code;
    char session_reason[MUX_REASON_MAX];
    int64_t rtt;
    int identities;
    uint8_t identity[64];
    size_t identity_len;
    size_t buffered, max_buffered; /* received, not consumed, streams still open */
    void (*writable_hook)(struct side *side, uint32_t stream);
    void (*data_hook)(struct side *side, uint32_t stream);
    void (*closed_hook)(struct side *side, uint32_t stream);
    void *ctx;
};

static struct rec *
rec_get(struct side *s, uint32_t id)
{
    for (size_t i = 0; i < s->nrecs; i++)
        if (s->recs[i].id == id)
            return &s->recs[i];
    if (s->nrecs == s->caprecs) {
        s->caprecs = s->caprecs ? s->caprecs * 2 : 16;
        s->recs = realloc(s->recs, s->caprecs * sizeof(*s->recs));
        assert_non_null(s->recs);
    }
    struct rec *r = &s->recs[s->nrecs++];
    memset(r, 0, sizeof(*r));
    r->id = id;
    r->hash = 14695981039346656037ull;
    return r;
}

static uint64_t
fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void
late(struct side *s)
{
    if (s->session_closed)
        s->late_callbacks++;
}

static int
cb_write(void *user, const uint8_t *data, size_t len)
{
    struct side *s = user;
    late(s);
    if (s->fail_write)
        return -1;
    test_bytes_add(&s->out, data, len);
    return 0;
}

static void
cb_open(void *user, uint32_t stream, const char *resource)
{
    struct side *s = user;
    late(s);
    struct rec *r = rec_get(s, stream);
    r->opened++;
    snprintf(r->resource, sizeof(r->resource), "%s", resource);
    if (s->refuse > 0)
        assert_int_equal(mux_reset(s->mux, stream, (enum mux_code)s->refuse, "refused by test"), 0);
    else if (s->auto_accept)
        assert_int_equal(mux_accept(s->mux, stream, NULL), 0);
}

static void
cb_open_ok(void *user, uint32_t stream)
{
    struct side *s = user;
    late(s);
    rec_get(s, stream)->open_oks++;
}

static void
cb_data(void *user, uint32_t stream, const uint8_t *data, size_t len)
{
    struct side *s = user;
    late(s);
    struct rec *r = rec_get(s, stream);
    assert_int_equal(r->closed, 0);
    r->received += len;
    r->hash = fnv(r->hash, data, len);
    if (s->keep_data)
        test_bytes_add(&r->data, data, len);
    s->buffered += len;
    if (s->buffered > s->max_buffered)
        s->max_buffered = s->buffered;
    if (s->auto_consume) {
        r->consumed += len;
        s->buffered -= len;
        mux_consumed(s->mux, stream, len);
    }
    if (s->data_hook != NULL)
        s->data_hook(s, stream);
}

static void
cb_fin(void *user, uint32_t stream)
{
    struct side *s = user;
    late(s);
    rec_get(s, stream)->fins++;
}

static void
cb_stream_closed(void *user, uint32_t stream, enum mux_code code, const char *reason)
{
    struct side *s = user;
    late(s);
    struct rec *r = rec_get(s, stream);
    r->closed++;
    r->code = code;
    snprintf(r->reason, sizeof(r->reason), "%s", reason);
    /* The mux drops what was not consumed; so does the owner. */
    s->buffered -= r->received - r->consumed;
    r->consumed = r->received;
    if (s->closed_hook != NULL)
        s->closed_hook(s, stream);
}

static void
cb_writable(void *user, uint32_t stream)
{
    struct side *s = user;
    late(s);
    rec_get(s, stream)->writable++;
    if (s->writable_hook != NULL)
        s->writable_hook(s, stream);
}

static void
cb_pong(void *user, int64_t rtt)
{
    struct side *s = user;
    late(s);
    s->pongs++;
    s->rtt = rtt;
}

static void
cb_identity(void *user, const uint8_t *payload, size_t len)
{
    struct side *s = user;
    late(s);
    s->identities++;
    s->identity_len = len < sizeof(s->identity) ? len : sizeof(s->identity);
    memcpy(s->identity, payload, s->identity_len);
}

static void
cb_session_closed(void *user, enum mux_code code, const char *reason)
{
    struct side *s = user;
    late(s);
    s->session_closed++;
    s->session_code = code;
    snprintf(s->session_reason, sizeof(s->session_reason), "%s", reason);
    if (s->free_on_close) {
        mux_free(s->mux);   /* deferred: we are inside a mux call */
        s->mux = NULL;
    }
}

static int64_t
cb_now(void *user)
{
    return ((struct side *)user)->clock;
}

static const struct mux_callbacks callbacks = {
    .write = cb_write,
    .on_open = cb_open,
    .on_open_ok = cb_open_ok,
    .on_data = cb_data,
    .on_fin = cb_fin,
    .on_stream_closed = cb_stream_closed,
    .on_writable = cb_writable,
    .on_pong = cb_pong,
    .on_identity = cb_identity,
    .on_session_closed = cb_session_closed,
};

/* max_window of the sides side_init makes (0: windows never grow). */
static uint32_t side_max_window;

static void
side_init(struct side *s, const char *name, enum mux_role role, uint32_t window,
          uint32_t max_streams)
{
    memset(s, 0, sizeof(*s));
    s->name = name;
    struct mux_config config = {role, window, max_streams, cb_now, 0, side_max_window, 0};
    struct ztr_err err = {0};
    assert_int_equal(mux_new(&config, &callbacks, s, &s->mux, &err), 0);
}

static void
side_free(struct side *s)
{
    mux_free(s->mux);
    for (size_t i = 0; i < s->nrecs; i++)
        free(s->recs[i].data.buf);
    free(s->recs);
    free(s->out.buf);
    assert_int_equal(s->late_callbacks, 0);
}

static void
consume(struct side *s, uint32_t stream, size_t n)
{
    struct rec *r = rec_get(s, stream);
    assert_true(n <= r->received - r->consumed);
    r->consumed += n;
    s->buffered -= n;
    mux_consumed(s->mux, stream, n);
}

/* Two muxes joined by two pipes. */
struct pair {
    struct side a;   /* opener */
    struct side b;   /* acceptor */
    size_t chunk_max;   /* 0: deliver everything at once */
    uint32_t rng;
};

static uint32_t
rnd(uint32_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return *state;
}

static void
pair_init(struct pair *p, uint32_t window, uint32_t max_a, uint32_t max_b, size_t chunk_max)
{
    side_init(&p->a, "opener", MUX_OPENER, window, max_a);
    side_init(&p->b, "acceptor", MUX_ACCEPTOR, window, max_b);
    p->b.auto_accept = true;
    p->a.auto_consume = p->b.auto_consume = true;
    p->chunk_max = chunk_max;
    p->rng = 0x9e3779b9u;
}

static void
pair_free(struct pair *p)
{
    side_free(&p->a);
    side_free(&p->b);
}

/* Moves one chunk from `from`'s output into `to`; false when nothing moved. */
static bool
deliver(struct pair *p, struct side *from, struct side *to)
{
    size_t n = bytes_pending(&from->out);
    if (n == 0)
        return false;
    if (to->mux == NULL || to->dead) {
        from->out.off = from->out.len;   /* nobody reads any more */
        return true;
    }
    if (p->chunk_max > 0) {
        size_t c = 1 + rnd(&p->rng) % p->chunk_max;
        if (c < n)
            n = c;
    }
    const uint8_t *data = from->out.buf + from->out.off;
    from->out.off += n;
    /* Input is copied out first: to's callbacks write into its own pipe, not
     * this one, but a compaction must not move bytes under mux_input. */
    if (mux_input(to->mux, data, n) != 0)
        to->dead = true;
    if (from->out.off == from->out.len || from->out.off > (1u << 20))
        bytes_compact(&from->out);
    return true;
}

static void
pump(struct pair *p)
{
    for (;;) {
        bool moved = deliver(p, &p->a, &p->b);
        moved = deliver(p, &p->b, &p->a) || moved;
        if (!moved)
            break;
    }
}

/* A byte pattern per stream and direction, so misrouted bytes show. */
static void
pattern(uint8_t *buf, size_t n, uint32_t stream, int dir, size_t offset)
{
    for (size_t i = 0; i < n; i++) {
        size_t o = offset + i;
        buf[i] = (uint8_t)((o * 131u + stream * 7u + (unsigned)dir * 13u) ^ (o >> 9));
    }
}

static uint32_t
open_stream(struct side *s, const char *resource)
{
    uint32_t id = 0;
    struct ztr_err err = {0};
    assert_int_equal(mux_open(s->mux, resource, &id, &err), 0);
    return id;
}

static void
send_all(struct side *s, uint32_t stream, const char *text)
{
    size_t n = strlen(text);
    assert_int_equal(mux_send(s->mux, stream, (const uint8_t *)text, n), (ssize_t)n);
}

/* Frames a side wrote, parsed back. */
struct parsed {
    uint8_t type, flags;
    uint32_t stream;
    size_t len;
    const uint8_t *payload;
};

static size_t
parse_frames(const struct test_bytes *b, struct parsed *out, size_t max)
{
    size_t n = 0, off = 0;
    while (off + MUX_HEADER_SIZE <= b->len && n < max) {
        const uint8_t *h = b->buf + off;
        size_t len = (size_t)h[6] << 8 | h[7];
        assert_true(off + MUX_HEADER_SIZE + len <= b->len);
        out[n].type = h[0];
        out[n].flags = h[1];
        out[n].stream = (uint32_t)h[2] << 24 | (uint32_t)h[3] << 16 | (uint32_t)h[4] << 8 | h[5];
        out[n].len = len;
        out[n].payload = h + MUX_HEADER_SIZE;
        n++;
        off += MUX_HEADER_SIZE + len;
    }
    return n;
}

static size_t
count_frames(const struct test_bytes *b, uint8_t type)
{
    static struct parsed frames[65536];
    size_t n = parse_frames(b, frames, 65536), count = 0;
    for (size_t i = 0; i < n; i++)
        count += frames[i].type == type;
    return count;
}

/* ---- streams: open, data, half-close, reset, GOAWAY, PING ------------------ */

static void
test_open_accept_data_half_close(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, 0, 0, 0, 7);
    p.a.keep_data = p.b.keep_data = true;
    uint32_t id = open_stream(&p.a, "db.internal:5432");
    assert_int_equal(id, 1);
    assert_int_equal(mux_stream_count(p.a.mux), 1);
    pump(&p);
    struct rec *ra = rec_get(&p.a, id), *rb = rec_get(&p.b, id);
    assert_int_equal(rb->opened, 1);
    assert_string_equal(rb->resource, "db.internal:5432");
    assert_int_equal(ra->open_oks, 1);
    assert_int_equal(mux_stream_count(p.b.mux), 1);

    send_all(&p.a, id, "hello ");
    send_all(&p.a, id, "connector");
    send_all(&p.b, id, "hello tunneler");
    pump(&p);
    assert_int_equal(rb->data.len, 15);
    assert_memory_equal(rb->data.buf, "hello connector", 15);
    assert_memory_equal(ra->data.buf, "hello tunneler", 14);

    /* The opener finishes; the acceptor can still send. */
    assert_int_equal(mux_fin(p.a.mux, id), 0);
    assert_int_equal(mux_send(p.a.mux, id, (const uint8_t *)"x", 1), -1);
    assert_int_equal(mux_fin(p.a.mux, id), -1);
    pump(&p);
    assert_int_equal(rb->fins, 1);
    assert_int_equal(rb->closed, 0);
    send_all(&p.b, id, " and goodbye");
    pump(&p);
    assert_int_equal(ra->data.len, 26);
    assert_memory_equal(ra->data.buf, "hello tunneler and goodbye", 26);
    assert_int_equal(ra->closed, 0);

    /* The acceptor finishes: closed on both sides, normally, once. */
    assert_int_equal(mux_fin(p.b.mux, id), 0);
    assert_int_equal(rb->closed, 1);   /* both FINs done here already */
    pump(&p);
    assert_int_equal(ra->fins, 1);
    assert_int_equal(ra->closed, 1);
    assert_int_equal(ra->code, MUX_CODE_NORMAL);
    assert_int_equal(rb->code, MUX_CODE_NORMAL);
    assert_int_equal(mux_stream_count(p.a.mux), 0);
    assert_int_equal(mux_stream_count(p.b.mux), 0);
    assert_int_equal(mux_send(p.b.mux, id, (const uint8_t *)"x", 1), -1);
    assert_int_equal(mux_send_credit(p.a.mux, id), 0);
    pair_free(&p);
}

static void
test_acceptor_finishes_first(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, 0, 0, 0, 3);
    uint32_t id = open_stream(&p.a, "web:80");
    pump(&p);
    assert_int_equal(mux_fin(p.b.mux, id), 0);
    pump(&p);
    assert_int_equal(rec_get(&p.a, id)->fins, 1);
    send_all(&p.a, id, "still talking");
    pump(&p);
    assert_int_equal(rec_get(&p.b, id)->received, 13);
    assert_int_equal(mux_fin(p.a.mux, id), 0);
    pump(&p);
    assert_int_equal(rec_get(&p.a, id)->closed, 1);
    assert_int_equal(rec_get(&p.b, id)->closed, 1);
    pair_free(&p);
}

/* Before OPEN_OK the opener has no credit to use: mux_send takes nothing and
 * on_writable follows OPEN_OK; an early FIN is held until then. */
static void
test_send_and_fin_before_open_ok(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, 0, 0, 0, 0);
    p.b.auto_accept = false;
    uint32_t id = open_stream(&p.a, "svc:1");
    assert_int_equal(mux_send(p.a.mux, id, (const uint8_t *)"early", 5), 0);
    pump(&p);
    /* Not accepted yet: the acceptor cannot send or finish. */
    assert_int_equal(mux_send(p.b.mux, id, (const uint8_t *)"x", 1), -1);
    assert_int_equal(mux_fin(p.b.mux, id), -1);
    assert_int_equal(mux_accept(p.b.mux, id, NULL), 0);
    assert_int_equal(mux_accept(p.b.mux, id, NULL), -1);
    pump(&p);
    struct rec *ra = rec_get(&p.a, id);
    assert_int_equal(ra->open_oks, 1);
    assert_int_equal(ra->writable, 1);
    send_all(&p.a, id, "early");
    pump(&p);
    assert_int_equal(rec_get(&p.b, id)->received, 5);

    uint32_t id2 = open_stream(&p.a, "svc:2");
    assert_int_equal(mux_fin(p.a.mux, id2), 0);
    assert_int_equal(mux_send(p.a.mux, id2, (const uint8_t *)"x", 1), -1);
    pump(&p);
    assert_int_equal(rec_get(&p.b, id2)->fins, 0);   /* held */
    assert_int_equal(mux_accept(p.b.mux, id2, NULL), 0);
    pump(&p);
    assert_int_equal(rec_get(&p.b, id2)->fins, 1);
    assert_int_equal(rec_get(&p.a, id2)->writable, 0);
    pair_free(&p);
}

/* Each code travels as its own two bytes (big-endian) on RST and on
 * GOAWAY and reaches the peer as the same code: decisions upstream rest on
 * that, never on the reason text. */
static void
test_every_code_crosses_the_wire(void **state)
{
    (void)state;
    for (unsigned code = 0; code <= MUX_CODE_LAST; code++) {
        struct pair p;
        pair_init(&p, 0, 0, 0, 0);
        uint32_t id = open_stream(&p.a, "r");
        pump(&p);
        assert_int_equal(mux_reset(p.b.mux, id, (enum mux_code)code, "refused by test"), 0);
        /* b's output: the RST frame, 8-byte header then the code. */
        const uint8_t *f = p.b.out.buf + p.b.out.off;
        assert_true(bytes_pending(&p.b.out) >= MUX_HEADER_SIZE + 2);
        assert_int_equal(f[0], MUX_RST);
        assert_int_equal(f[MUX_HEADER_SIZE] << 8 | f[MUX_HEADER_SIZE + 1], code);
        pump(&p);
        assert_int_equal(rec_get(&p.a, id)->closed, 1);
        assert_int_equal(rec_get(&p.a, id)->code, code);
        assert_string_equal(rec_get(&p.a, id)->reason, "refused by test");

        assert_int_equal(mux_goaway(p.b.mux, (enum mux_code)code, "bye"), 0);
        f = p.b.out.buf + p.b.out.off;
        assert_int_equal(f[0], MUX_GOAWAY);
        assert_int_equal(f[MUX_HEADER_SIZE] << 8 | f[MUX_HEADER_SIZE + 1], code);
        pump(&p);
        assert_int_equal(p.a.session_closed, 1);
        assert_int_equal(p.a.session_code, code);
        assert_string_equal(p.a.session_reason, "bye");
        assert_string_not_equal(mux_code_name((enum mux_code)code), "unknown");
        pair_free(&p);
    }
    assert_string_equal(mux_code_name(MUX_CODE_PEER_NOT_ALLOWED), "peer_not_allowed");
    assert_string_equal(mux_code_name(MUX_CODE_RESOURCE_NOT_ALLOWED), "resource_not_allowed");
    assert_string_equal(mux_code_name((enum mux_code)(MUX_CODE_LAST + 1)), "unknown");
    /* The two refusals that once shared a value no longer do, and the
     * values already on the wire kept their numbers. */
    assert_int_equal(MUX_CODE_RESOURCE_NOT_ALLOWED, 1);
    assert_int_equal(MUX_CODE_UNKNOWN_RESOURCE, 2);
    assert_int_equal(MUX_CODE_CONNECT_FAILED, 3);
    assert_int_equal(MUX_CODE_CANCEL, 7);
    assert_int_equal(MUX_CODE_PEER_NOT_ALLOWED, 8);
}

/* The session window both ends derive from the stream window. */
static void
test_session_window_is_four_streams(void **state)
{
    (void)state;
    assert_int_equal(mux_session_window(262144), 1048576);
    assert_int_equal(mux_session_window(0), 0);
    assert_int_equal(mux_session_window(UINT32_MAX / 4), (UINT32_MAX / 4) * 4);
    assert_int_equal(mux_session_window(UINT32_MAX / 4 + 1), UINT32_MAX);
    /* A saturated value is refused, not wrapped. */
    struct mux *m = NULL;
    struct mux_config config = {.role = MUX_OPENER,
                                .session_window = mux_session_window(0x40000000u)};
    struct ztr_err err = {0};
    assert_int_equal(mux_new(&config, &callbacks, NULL, &m, &err), -1);
    assert_null(m);
}

static void
test_reset_with_reason(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, 0, 0, 0, 5);
    /* Refused from inside on_open. */
    p.b.refuse = MUX_CODE_RESOURCE_NOT_ALLOWED;
    uint32_t id = open_stream(&p.a, "secret:22");
    pump(&p);
    struct rec *ra = rec_get(&p.a, id), *rb = rec_get(&p.b, id);
    assert_int_equal(ra->closed, 1);
    assert_int_equal(ra->code, MUX_CODE_RESOURCE_NOT_ALLOWED);
    assert_string_equal(ra->reason, "refused by test");
    assert_int_equal(rb->closed, 1);
    assert_int_equal(rb->code, MUX_CODE_RESOURCE_NOT_ALLOWED);
    assert_int_equal(ra->open_oks, 0);
    p.b.refuse = 0;

    /* An established stream reset by the opener, with a reason. */
    id = open_stream(&p.a, "db:5432");
    pump(&p);
    send_all(&p.b, id, "some data");
    pump(&p);
    assert_int_equal(mux_reset(p.a.mux, id, MUX_CODE_CONNECT_FAILED, "client went away\n"), 0);
    ra = rec_get(&p.a, id);
    assert_int_equal(ra->closed, 1);   /* at once, on the resetting side too */
    assert_int_equal(mux_reset(p.a.mux, id, MUX_CODE_NORMAL, "again"), -1);
    assert_int_equal(mux_stream_count(p.a.mux), 0);
    pump(&p);
    rb = rec_get(&p.b, id);
    assert_int_equal(rb->closed, 1);
    assert_int_equal(rb->code, MUX_CODE_CONNECT_FAILED);
    assert_string_equal(rb->reason, "client went away?");   /* control bytes masked */
    assert_int_equal(mux_reset(p.a.mux, 99, MUX_CODE_NORMAL, "x"), -1);
    assert_int_equal(mux_reset(p.a.mux, open_stream(&p.a, "x"), (enum mux_code)42, "x"), -1);
    assert_int_equal(p.a.session_closed + p.b.session_closed, 0);
    pair_free(&p);
}

/* A reset crossing DATA and FIN in flight is no protocol error, and the DATA
 * the resetting side discards returns its session credit. */
static void
test_reset_crossing_data(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, 32768, 0, 0, 0);
    uint32_t id = open_stream(&p.a, "db:5432");
    uint32_t keep = open_stream(&p.a, "db:5433");
    pump(&p);
    static uint8_t buf[32768];
    pattern(buf, sizeof(buf), id, 1, 0);
    assert_int_equal(mux_send(p.b.mux, id, buf, sizeof(buf)), 32768);
    assert_int_equal(mux_fin(p.b.mux, id), 0);
    assert_int_equal(mux_send_credit(p.b.mux, 0), 0);
    /* The opener resets before any of that arrives. */
    assert_int_equal(mux_reset(p.a.mux, id, MUX_CODE_NORMAL, "done"), 0);
    /* The tombstone holds the id until the peer's RST arrives. */
    assert_int_equal(mux_stream_count(p.a.mux), 1);
    pump(&p);
    assert_int_equal(p.a.session_closed + p.b.session_closed, 0);
    assert_int_equal(rec_get(&p.a, id)->received, 0);
    assert_int_equal(rec_get(&p.b, id)->closed, 1);
    /* Session credit came back to the acceptor: the other stream can send. */
    assert_int_equal(mux_send_credit(p.b.mux, 0), 32768);
    assert_int_equal(mux_send(p.b.mux, keep, buf, 100), 100);

    /* Both sides reset at once: the RSTs cross, nobody complains, and both
     * tombstones are gone (max_streams counts them). */
    uint32_t both = open_stream(&p.a, "x:1");
    pump(&p);
    assert_int_equal(mux_reset(p.a.mux, both, MUX_CODE_INTERNAL, "a"), 0);
    assert_int_equal(mux_reset(p.b.mux, both, MUX_CODE_INTERNAL, "b"), 0);
    pump(&p);
    assert_int_equal(p.a.session_closed + p.b.session_closed, 0);
    assert_int_equal(rec_get(&p.a, both)->closed, 1);
    assert_string_equal(rec_get(&p.a, both)->reason, "a");
    assert_int_equal(rec_get(&p.b, both)->closed, 1);
    assert_string_equal(rec_get(&p.b, both)->reason, "b");
    assert_int_equal(mux_stream_count(p.a.mux), 1);
    pair_free(&p);
}

/* Reset after the peer's FIN, and a reset of a stream the peer had finished
 * both ways: the late RST and its ACK are harmless. */
static void
test_reset_after_fins(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, 0, 0, 0, 0);
    uint32_t id = open_stream(&p.a, "r");
    pump(&p);
    assert_int_equal(mux_fin(p.b.mux, id), 0);
    pump(&p);
    assert_int_equal(mux_reset(p.a.mux, id, MUX_CODE_NORMAL, "bye"), 0);
    pump(&p);
    assert_int_equal(rec_get(&p.b, id)->code, MUX_CODE_NORMAL);
    assert_string_equal(rec_get(&p.b, id)->reason, "bye");

    /* The opener resets after its FIN while the acceptor's FIN is in flight:
     * the acceptor has closed the stream by the time the RST arrives. */
    id = open_stream(&p.a, "r");
    pump(&p);
    assert_int_equal(mux_fin(p.a.mux, id), 0);
    pump(&p);
    assert_int_equal(mux_fin(p.b.mux, id), 0);
    assert_int_equal(rec_get(&p.b, id)->closed, 1);
    assert_int_equal(mux_reset(p.a.mux, id, MUX_CODE_INTERNAL, "late"), 0);
    pump(&p);
    assert_int_equal(p.a.session_closed + p.b.session_closed, 0);
    assert_int_equal(rec_get(&p.a, id)->closed, 1);
    assert_int_equal(rec_get(&p.a, id)->code, MUX_CODE_INTERNAL);
    assert_int_equal(mux_stream_count(p.a.mux), 0);   /* tombstone freed by the ACK */
    assert_int_equal(mux_stream_count(p.b.mux), 0);
    pair_free(&p);
}

static void
test_goaway_with_reason(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, 0, 0, 0, 2);
    uint32_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = open_stream(&p.a, "r");
    pump(&p);
    assert_int_equal(mux_goaway(p.b.mux, MUX_CODE_REFUSED, "shutting down"), 0);
    /* The side that sends GOAWAY closes its streams and session too. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rec_get(&p.b, ids[i])->closed, 1);
        assert_int_equal(rec_get(&p.b, ids[i])->code, MUX_CODE_REFUSED);
    }
    assert_int_equal(p.b.session_closed, 1);
    assert_string_equal(p.b.session_reason, "shutting down");
    assert_int_equal(mux_goaway(p.b.mux, MUX_CODE_NORMAL, "again"), -1);
    assert_int_equal(mux_send(p.b.mux, ids[0], (const uint8_t *)"x", 1), -1);
    pump(&p);
    for (int i = 0; i < 3; i++) {
        struct rec *r = rec_get(&p.a, ids[i]);
        assert_int_equal(r->closed, 1);
        assert_int_equal(r->code, MUX_CODE_REFUSED);
        assert_string_equal(r->reason, "shutting down");
    }
    assert_int_equal(p.a.session_closed, 1);
    assert_int_equal(p.a.session_code, MUX_CODE_REFUSED);
    assert_string_equal(p.a.session_reason, "shutting down");
    assert_true(p.a.dead);
    assert_int_equal(mux_input(p.a.mux, (const uint8_t *)"", 0), -1);
    assert_int_equal(mux_stream_count(p.a.mux), 0);
    uint32_t id;
    struct ztr_err err = {0};
    assert_int_equal(mux_open(p.a.mux, "r", &id, &err), -1);
    assert_int_equal(mux_ping(p.a.mux), -1);
    pair_free(&p);
}

/* IDENTITY goes both ways on stream 0 and is handed over as it came; it
 * changes nothing about the streams. */
static void
test_identity_frames_are_delivered(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, 0, 0, 0, 0);
    assert_int_equal(mux_identity(p.a.mux, (const uint8_t *)"proof-a", 7), 0);
    assert_int_equal(mux_identity(p.b.mux, (const uint8_t *)"proof-b", 7), 0);
    pump(&p);
    assert_int_equal(p.b.identities, 1);
    assert_memory_equal(p.b.identity, "proof-a", 7);
    assert_int_equal(p.a.identities, 1);
    assert_memory_equal(p.a.identity, "proof-b", 7);
    assert_int_equal(p.a.session_closed + p.b.session_closed, 0);
    uint8_t big[MUX_MAX_PAYLOAD + 1] = {0};
    assert_int_equal(mux_identity(p.a.mux, big, 0), -1);
    assert_int_equal(mux_identity(p.a.mux, big, sizeof(big)), -1);
    assert_int_equal(mux_identity(p.a.mux, big, MUX_MAX_PAYLOAD), 0);
    pump(&p);
    assert_int_equal(p.b.identities, 2);
    assert_int_equal(p.b.identity_len, 64);
    pair_free(&p);
}

static void
test_ping_rtt(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, 0, 0, 0, 0);
    p.a.clock = 1000;
    assert_int_equal(mux_ping(p.a.mux), 0);
    deliver(&p, &p.a, &p.b);   /* PING there, PONG written */
    p.a.clock = 1042;
    pump(&p);
    assert_int_equal(p.a.pongs, 1);
    assert_int_equal(p.a.rtt, 42);
    /* Several outstanding, answered in order; at most 4 unanswered. */
    for (int i = 0; i < 4; i++) {
        p.a.clock = 2000 + i;
        assert_int_equal(mux_ping(p.a.mux), 0);
    }
    assert_int_equal(mux_ping(p.a.mux), -1);
    p.a.clock = 2100;
    pump(&p);
    assert_int_equal(p.a.pongs, 5);
    assert_int_equal(p.a.rtt, 97);
    /* The acceptor pings too. */
    p.b.clock = 5;
    assert_int_equal(mux_ping(p.b.mux), 0);
    p.b.clock = 12;
    pump(&p);
    assert_int_equal(p.b.rtt, 7);
    pair_free(&p);
}

/* ---- flow control -------------------------------------------------------- */

/* Sends a full window on a fresh stream, lets b consume it all at once
 * with `gap_ms` between each quarter, and returns a's credit afterwards. */
static uint32_t
credit_after_one_window(uint32_t window, uint32_t max_window, int64_t gap_ms)
{
    struct pair p;
    side_max_window = max_window;
    pair_init(&p, window, 0, 0, 0);
    side_max_window = 0;
    p.b.auto_consume = false;
    uint32_t id = open_stream(&p.a, "r");
    pump(&p);
    static uint8_t buf[1 << 20];
    assert_int_equal(mux_send(p.a.mux, id, buf, window), (ssize_t)window);
    pump(&p);
    for (int q = 0; q < 4; q++) {
        p.b.clock += gap_ms;
        consume(&p.b, id, window / 4);
        pump(&p);
    }
    uint32_t credit = mux_send_credit(p.a.mux, id);
    assert_int_equal(p.a.session_closed + p.b.session_closed, 0);
    pair_free(&p);
    return credit;
}

/* A window drained within 20 ms doubles (the receiver grants the growth
 * with WINDOW); one drained slowly stays; growth stops at max_window. */
static void
test_window_grows_only_for_fast_readers(void **state)
{
    (void)state;
    enum { W = 65536 };
    assert_int_equal(credit_after_one_window(W, 4 * W, 0), 2 * W);
    assert_int_equal(credit_after_one_window(W, 4 * W, 50), W);
    assert_int_equal(credit_after_one_window(W, 0, 0), W);
    assert_int_equal(credit_after_one_window(W, W + W / 2, 0), W + W / 2);
}

static void
test_stream_window_stops_exactly(void **state)
{
    (void)state;
    enum { W = 65536 };
    struct pair p;
    pair_init(&p, W, 0, 0, 1000);
    p.b.auto_consume = false;
    uint32_t id = open_stream(&p.a, "r");
    pump(&p);
    static uint8_t buf[3 * W];
    pattern(buf, sizeof(buf), id, 0, 0);
    assert_int_equal(mux_send_credit(p.a.mux, id), W);
    assert_int_equal(mux_send(p.a.mux, id, buf, sizeof(buf)), W);
    assert_int_equal(mux_send_credit(p.a.mux, id), 0);
    assert_int_equal(mux_send(p.a.mux, id, buf + W, 1), 0);
    pump(&p);
    struct rec *rb = rec_get(&p.b, id);
    assert_int_equal(rb->received, W);
    assert_int_equal(mux_send(p.a.mux, id, buf + W, 1), 0);

    /* Credit goes back in one WINDOW once a quarter of the window is
     * consumed, not per byte. */
    size_t windows = count_frames(&p.b.out, MUX_WINDOW);
    for (int i = 0; i < W / 4 - 1; i++)
        consume(&p.b, id, 1);
    assert_int_equal(count_frames(&p.b.out, MUX_WINDOW), windows);
    pump(&p);
    assert_int_equal(rec_get(&p.a, id)->writable, 0);
    assert_int_equal(mux_send_credit(p.a.mux, id), 0);
    consume(&p.b, id, 1);
    assert_int_equal(count_frames(&p.b.out, MUX_WINDOW), windows + 2);   /* stream + session */
    pump(&p);
    assert_int_equal(rec_get(&p.a, id)->writable, 1);
    assert_int_equal(mux_send_credit(p.a.mux, id), W / 4);
    assert_int_equal(mux_send(p.a.mux, id, buf + W, 2 * W), W / 4);
    pump(&p);
    assert_int_equal(rb->received, W + W / 4);
    /* Consuming more than was delivered is clamped. */
    consume(&p.b, id, rb->received - rb->consumed);
    mux_consumed(p.b.mux, id, 1000000);
    pump(&p);
    assert_int_equal(mux_send_credit(p.a.mux, id), W);
    assert_int_equal(mux_send_credit(p.a.mux, 0), W);
    assert_int_equal(p.a.session_closed + p.b.session_closed, 0);
    pair_free(&p);
}

static void
test_session_window_stops_exactly(void **state)
{
    (void)state;
    enum { W = 65536 };
    struct pair p;
    pair_init(&p, W, 0, 0, 0);
    p.b.auto_consume = false;
    uint32_t s1 = open_stream(&p.a, "r1");
    uint32_t s2 = open_stream(&p.a, "r2");
    pump(&p);
    static uint8_t buf[W];
    assert_int_equal(mux_send(p.a.mux, s1, buf, W / 2 + 100), W / 2 + 100);
    assert_int_equal(mux_send(p.a.mux, s2, buf, W), W / 2 - 100);
    /* s1 still has stream credit but the session has none. */
    assert_int_equal(mux_send_credit(p.a.mux, s1), W / 2 - 100);
    assert_int_equal(mux_send_credit(p.a.mux, 0), 0);
    assert_int_equal(mux_send(p.a.mux, s1, buf, 1), 0);
    pump(&p);
    assert_int_equal(p.b.max_buffered, W);
    /* Consuming s2 returns session credit only (s2's stream window is
     * returned too, but s1 is what was blocked on the session). The 100
     * bytes of s1 stay below the quarter-window batch. */
    consume(&p.b, s2, W / 2 - 100);
    consume(&p.b, s1, 100);
    pump(&p);
    assert_int_equal(mux_send_credit(p.a.mux, 0), W / 2 - 100);
    /* Both were blocked on the session, oldest first; neither sent. */
    assert_int_equal(rec_get(&p.a, s1)->writable, 1);
    assert_int_equal(rec_get(&p.a, s2)->writable, 1);
    assert_int_equal(mux_send(p.a.mux, s1, buf, W), W / 2 - 100);
    assert_int_equal(mux_send(p.a.mux, s2, buf, W), 0);
    assert_int_equal(mux_send_credit(p.a.mux, 0), 0);
    pair_free(&p);
}

/* Bytes delivered but never consumed go back to the session when their
 * stream closes (reset either way, or both FINs), or the session would
 * shrink for good. */
static void
test_close_returns_unconsumed_credit(void **state)
{
    (void)state;
    enum { W = 65536 };
    struct pair p;
    pair_init(&p, W, 0, 0, 0);
    p.b.auto_consume = false;
    p.a.auto_consume = false;
    static uint8_t buf[W];
    uint32_t s1 = open_stream(&p.a, "r"), s2 = open_stream(&p.a, "r"), s3 = open_stream(&p.a, "r");
    pump(&p);
    /* Reset by the receiver. */
    assert_int_equal(mux_send(p.a.mux, s1, buf, W), W);
    pump(&p);
    assert_int_equal(mux_send_credit(p.a.mux, 0), 0);
    assert_int_equal(mux_reset(p.b.mux, s1, MUX_CODE_NORMAL, ""), 0);
    pump(&p);
    assert_int_equal(mux_send_credit(p.a.mux, 0), W);
    /* Reset by the sender. */
    assert_int_equal(mux_send(p.a.mux, s2, buf, W), W);
    pump(&p);
    assert_int_equal(mux_reset(p.a.mux, s2, MUX_CODE_NORMAL, ""), 0);
    pump(&p);
    assert_int_equal(mux_send_credit(p.a.mux, 0), W);
    /* Both FINs, the receiver still holding everything. */
    assert_int_equal(mux_send(p.a.mux, s3, buf, W), W);
    assert_int_equal(mux_fin(p.a.mux, s3), 0);
    assert_int_equal(mux_fin(p.b.mux, s3), 0);
    pump(&p);
    assert_int_equal(rec_get(&p.b, s3)->closed, 1);
    assert_int_equal(mux_send_credit(p.a.mux, 0), W);
    /* mux_consumed for the closed stream changes nothing. */
    mux_consumed(p.b.mux, s3, W);
    pump(&p);
    assert_int_equal(mux_send_credit(p.a.mux, 0), W);
    assert_int_equal(p.a.session_closed + p.b.session_closed, 0);
    pair_free(&p);
}

/* One stream, a slow consumer, a writer driven by on_writable: the receiver
 * never holds more than the window, and bytes in flight plus bytes held stay
 * within it too. */
struct flow {
    uint32_t stream;
    size_t target, sent;
    uint64_t hash;
    uint8_t chunk[MUX_MAX_PAYLOAD];
};

static void
flow_write(struct side *s, uint32_t stream)
{
    struct flow *f = s->ctx;
    if (stream != f->stream)
        return;
    while (f->sent < f->target) {
        size_t n = f->target - f->sent < sizeof(f->chunk) ? f->target - f->sent : sizeof(f->chunk);
        pattern(f->chunk, n, stream, 0, f->sent);
        ssize_t took = mux_send(s->mux, stream, f->chunk, n);
        assert_true(took >= 0);
        f->hash = fnv(f->hash, f->chunk, (size_t)took);
        f->sent += (size_t)took;
        if ((size_t)took < n)
            break;   /* on_writable will call again */
    }
}

static void
run_slow_consumer(size_t total, uint32_t window)
{
    struct pair p;
    pair_init(&p, window, 0, 0, 0);
    p.b.auto_consume = false;
    struct flow *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->target = total;
    f->hash = 14695981039346656037ull;
    p.a.ctx = f;
    p.a.writable_hook = flow_write;
    f->stream = open_stream(&p.a, "bulk");
    pump(&p);
    flow_write(&p.a, f->stream);   /* then on_writable drives it */
    struct rec *rb = rec_get(&p.b, f->stream);
    size_t max_in_flight = 0;
    uint32_t rng = 12345;
    while (rb->received < total) {
        /* Deliver a random slice of what the writer put on the wire. */
        p.chunk_max = 1 + rnd(&rng) % (3 * MUX_MAX_PAYLOAD);
        bool moved = deliver(&p, &p.a, &p.b);
        size_t in_flight = f->sent - rb->received + p.b.buffered;
        if (in_flight > max_in_flight)
            max_in_flight = in_flight;
        /* The consumer takes a random bite, sometimes nothing. */
        size_t held = rb->received - rb->consumed;
        size_t bite = rnd(&rng) % (MUX_MAX_PAYLOAD * 2);
        if (bite > held)
            bite = held;
        if (bite > 0)
            consume(&p.b, f->stream, bite);
        moved = deliver(&p, &p.b, &p.a) || moved;
        assert_true(moved || bite > 0 || held > 0);
    }
    assert_int_equal(rb->received, total);
    assert_int_equal(f->sent, total);
    assert_true(rb->hash == f->hash);
    assert_true(p.b.max_buffered <= window);
    assert_true(max_in_flight <= window);
    assert_true(p.b.max_buffered >= window / 2);   /* and the window was used */
    assert_int_equal(p.a.session_closed + p.b.session_closed, 0);
    free(f);
    pair_free(&p);
}

static void
test_slow_consumer_bounded(void **state)
{
    (void)state;
    /* 64 MiB in 16 KiB frames; ZTR_MUX_GIB=1 moves 1 GiB. */
    const char *big = getenv("ZTR_MUX_GIB");
    size_t total = big != NULL && strcmp(big, "1") == 0 ? (size_t)1 << 30 : (size_t)64 << 20;
    run_slow_consumer(total, MUX_DEFAULT_WINDOW);
    run_slow_consumer(1 << 20, 4096);   /* a window smaller than a frame */
}

/* ---- many streams ------------------------------------------------------------ */

struct tx {
    uint32_t id;
    size_t total, sent;
    uint64_t hash;
    bool fin;
};

static bool
tx_step(struct side *s, struct tx *t, int dir)
{
    if (t->fin)
        return false;
    uint8_t buf[20000];
    size_t n = t->total - t->sent < sizeof(buf) ? t->total - t->sent : sizeof(buf);
    if (n > 0) {
        pattern(buf, n, t->id, dir, t->sent);
        ssize_t took = mux_send(s->mux, t->id, buf, n);
        assert_true(took >= 0);
        t->hash = fnv(t->hash, buf, (size_t)took);
        t->sent += (size_t)took;
        return took > 0;
    }
    assert_int_equal(mux_fin(s->mux, t->id), 0);
    t->fin = true;
    return true;
}

static void
run_parallel(size_t chunk_max, uint32_t window, size_t max_len)
{
    enum { N = 100 };
    struct pair p;
    pair_init(&p, window, 0, 0, chunk_max);
    static struct tx up[N], down[N];
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof(name), "svc-%d:%d", i, 1000 + i);
        uint32_t id = open_stream(&p.a, name);
        up[i] = (struct tx){id, (size_t)(i * 7919) % max_len + (i % 3 == 0 ? 0 : 1), 0,
                            14695981039346656037ull, false};
        down[i] = (struct tx){id, (size_t)(i * 104729) % max_len + 1, 0,
                              14695981039346656037ull, false};
    }
    pump(&p);
    assert_int_equal(mux_stream_count(p.b.mux), N);
    for (int round = 0; round < 100000; round++) {
        bool busy = false;
        for (int i = 0; i < N; i++) {
            busy = tx_step(&p.a, &up[i], 0) || busy;
            busy = tx_step(&p.b, &down[i], 1) || busy;
        }
        pump(&p);
        if (!busy)
            break;
    }
    for (int i = 0; i < N; i++) {
        struct rec *ra = rec_get(&p.a, up[i].id), *rb = rec_get(&p.b, up[i].id);
        char name[32];
        snprintf(name, sizeof(name), "svc-%d:%d", i, 1000 + i);
        assert_string_equal(rb->resource, name);
        assert_int_equal(rb->received, up[i].total);
        assert_true(rb->hash == up[i].hash);
        assert_int_equal(ra->received, down[i].total);
        assert_true(ra->hash == down[i].hash);
        assert_int_equal(ra->closed, 1);
        assert_int_equal(rb->closed, 1);
        assert_int_equal(ra->code, MUX_CODE_NORMAL);
    }
    assert_int_equal(mux_stream_count(p.a.mux), 0);
    assert_int_equal(mux_stream_count(p.b.mux), 0);
    assert_int_equal(p.a.session_closed + p.b.session_closed, 0);
    pair_free(&p);
}

static void
test_parallel_streams_checksummed(void **state)
{
    (void)state;
    run_parallel(0, 0, 150000);
    run_parallel(4099, 32768, 150000);
}

static void
test_parallel_streams_byte_by_byte(void **state)
{
    (void)state;
    run_parallel(1, 8192, 5000);
}

/* ---- limits and ids --------------------------------------------------------- */

static void
test_stream_limit_refused(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, 0, 0, 2, 0);
    uint32_t a = open_stream(&p.a, "r"), b = open_stream(&p.a, "r"), c = open_stream(&p.a, "r");
    pump(&p);
    assert_int_equal(rec_get(&p.a, a)->open_oks, 1);
    assert_int_equal(rec_get(&p.a, b)->open_oks, 1);
    struct rec *rc = rec_get(&p.a, c);
    assert_int_equal(rc->closed, 1);
    assert_int_equal(rc->code, MUX_CODE_REFUSED);
    assert_string_equal(rc->reason, "stream limit reached");
    assert_int_equal(rec_get(&p.b, c)->opened, 0);
    /* A slot frees, a new stream fits (with a new id). */
    assert_int_equal(mux_reset(p.a.mux, a, MUX_CODE_NORMAL, ""), 0);
    pump(&p);
    uint32_t d = open_stream(&p.a, "r");
    assert_int_equal(d, 7);
    pump(&p);
    assert_int_equal(rec_get(&p.a, d)->open_oks, 1);
    assert_int_equal(p.a.session_closed + p.b.session_closed, 0);
    pair_free(&p);

    /* The opener's own limit. */
    pair_init(&p, 0, 2, 0, 0);
    open_stream(&p.a, "r");
    open_stream(&p.a, "r");
    uint32_t id = 0;
    struct ztr_err err = {0};
    assert_int_equal(mux_open(p.a.mux, "r", &id, &err), -1);
    assert_int_equal(err.code, ZTR_E_LIMIT);
    assert_int_equal(mux_open(p.b.mux, "r", &id, &err), -1);   /* acceptors never open */
    assert_int_equal(err.code, ZTR_E_INVALID);
    assert_int_equal(mux_open(p.a.mux, "", &id, &err), -1);
    char long_name[300];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_int_equal(mux_open(p.a.mux, long_name, &id, &err), -1);
    pair_free(&p);
}

/* Streams open and close many times over with a small table: ids only grow
 * (odd), slots are reused, late WINDOWs for old ids are harmless. */
static void
test_ids_and_slots_reused(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, 0, 4, 4, 5);
    uint32_t last = 0;
    for (int i = 0; i < 300; i++) {
        uint32_t ids[4];
        for (int j = 0; j < 4; j++) {
            ids[j] = open_stream(&p.a, "r");
            assert_true(ids[j] > last && (ids[j] & 1) == 1);
            last = ids[j];
        }
        pump(&p);
        for (int j = 0; j < 4; j++) {
            send_all(&p.a, ids[j], "ping");
            send_all(&p.b, ids[j], "pong");
        }
        /* Close in different ways: FINs both ways, resets either side. */
        assert_int_equal(mux_fin(p.a.mux, ids[0]), 0);
        assert_int_equal(mux_fin(p.b.mux, ids[0]), 0);
        assert_int_equal(mux_reset(p.a.mux, ids[1], MUX_CODE_NORMAL, "a"), 0);
        assert_int_equal(mux_reset(p.b.mux, ids[2], MUX_CODE_INTERNAL, "b"), 0);
        assert_int_equal(mux_fin(p.b.mux, ids[3]), 0);
        pump(&p);
        assert_int_equal(mux_fin(p.a.mux, ids[3]), 0);
        pump(&p);
        for (int j = 0; j < 4; j++) {
            assert_int_equal(rec_get(&p.a, ids[j])->closed, 1);
            assert_int_equal(rec_get(&p.b, ids[j])->closed, 1);
        }
        assert_int_equal(mux_stream_count(p.a.mux), 0);
        assert_int_equal(mux_stream_count(p.b.mux), 0);
    }
    assert_int_equal(last, 2 * 1200 - 1);
    assert_int_equal(p.a.session_closed + p.b.session_closed, 0);
    /* An old id is not a live stream on either side. */
    assert_int_equal(mux_send(p.a.mux, 1, (const uint8_t *)"x", 1), -1);
    assert_int_equal(mux_accept(p.b.mux, 1, NULL), -1);
    pair_free(&p);
}

/* ---- re-entrancy and failures ---------------------------------------------- */

static void
reset_on_data(struct side *s, uint32_t stream)
{
    assert_int_equal(mux_reset(s->mux, stream, MUX_CODE_INTERNAL, "from on_data"), 0);
    /* The stream is gone already: its on_stream_closed ran nested. */
    assert_int_equal(rec_get(s, stream)->closed, 1);
    assert_int_equal(mux_send(s->mux, stream, (const uint8_t *)"x", 1), -1);
}

static void
goaway_on_data(struct side *s, uint32_t stream)
{
    (void)stream;
    assert_int_equal(mux_goaway(s->mux, MUX_CODE_INTERNAL, "from on_data"), 0);
    assert_int_equal(mux_input(s->mux, (const uint8_t *)"", 0), -1);
}

static void
input_on_data(struct side *s, uint32_t stream)
{
    (void)stream;
    /* Nested input is refused and changes nothing. */
    assert_int_equal(mux_input(s->mux, (const uint8_t *)"\x07", 1), -1);
}

static void
test_callbacks_reenter(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, 0, 0, 0, 0);
    /* mux_reset from on_data: the DATA and FIN behind it in the same input
     * meet the tombstone and are dropped without error. */
    p.b.data_hook = reset_on_data;
    uint32_t id = open_stream(&p.a, "r");
    pump(&p);
    send_all(&p.a, id, "one");
    send_all(&p.a, id, "two");
    assert_int_equal(mux_fin(p.a.mux, id), 0);
    pump(&p);
    assert_int_equal(rec_get(&p.b, id)->received, 3);
    assert_int_equal(rec_get(&p.a, id)->code, MUX_CODE_INTERNAL);
    assert_int_equal(p.a.session_closed + p.b.session_closed, 0);

    p.b.data_hook = input_on_data;
    id = open_stream(&p.a, "r");
    pump(&p);
    send_all(&p.a, id, "x");
    pump(&p);
    assert_int_equal(rec_get(&p.b, id)->received, 1);

    /* GOAWAY from on_data: the rest of that input is dropped. */
    p.b.data_hook = goaway_on_data;
    send_all(&p.a, id, "a");
    send_all(&p.a, id, "b");
    pump(&p);
    assert_int_equal(rec_get(&p.b, id)->received, 2);
    assert_int_equal(p.b.session_closed, 1);
    assert_int_equal(p.a.session_closed, 1);
    assert_string_equal(p.a.session_reason, "from on_data");
    pair_free(&p);
}

/* mux_free from on_session_closed, reached through mux_input (GOAWAY) and
 * through a failed write inside mux_send. ASan checks the deferral. */
static void
test_free_from_callback(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, 0, 0, 0, 0);
    uint32_t id = open_stream(&p.a, "r");
    pump(&p);
    p.a.free_on_close = true;
    assert_int_equal(mux_goaway(p.b.mux, MUX_CODE_NORMAL, "bye"), 0);
    pump(&p);
    assert_null(p.a.mux);
    assert_int_equal(rec_get(&p.a, id)->closed, 1);
    assert_int_equal(p.a.session_closed, 1);
    pair_free(&p);

    pair_init(&p, 0, 0, 0, 0);
    uint32_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = open_stream(&p.a, "r");
    pump(&p);
    p.a.free_on_close = true;
    p.a.fail_write = true;
    assert_int_equal(mux_send(p.a.mux, ids[1], (const uint8_t *)"x", 1), -1);
    assert_null(p.a.mux);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rec_get(&p.a, ids[i])->closed, 1);
        assert_int_equal(rec_get(&p.a, ids[i])->code, MUX_CODE_INTERNAL);
    }
    assert_int_equal(p.a.session_closed, 1);
    assert_int_equal(p.a.session_code, MUX_CODE_INTERNAL);
    pair_free(&p);
}

static void
test_write_failure_ends_session(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, 0, 0, 0, 0);
    uint32_t id = open_stream(&p.a, "r");
    pump(&p);
    p.b.fail_write = true;
    /* The acceptor's WINDOW answer fails while it handles input. */
    static uint8_t buf[MUX_DEFAULT_WINDOW];
    assert_int_equal(mux_send(p.a.mux, id, buf, sizeof(buf)), (ssize_t)sizeof(buf));
    pump(&p);
    assert_int_equal(p.b.session_closed, 1);
    assert_int_equal(p.b.session_code, MUX_CODE_INTERNAL);
    assert_int_equal(rec_get(&p.b, id)->closed, 1);
    assert_int_equal(mux_ping(p.b.mux), -1);
    uint32_t x;
    struct ztr_err err = {0};
    p.a.fail_write = true;
    assert_int_equal(mux_open(p.a.mux, "r", &x, &err), -1);
    assert_int_equal(p.a.session_closed, 1);
    assert_int_equal(rec_get(&p.a, id)->closed, 1);
    pair_free(&p);
}

static void
test_new_rejects_bad_config(void **state)
{
    (void)state;
    struct mux *m = NULL;
    struct ztr_err err = {0};
    struct mux_config config = {MUX_OPENER, 0, MUX_MAX_STREAMS + 1, NULL, 0, 0, 0};
    assert_int_equal(mux_new(&config, &callbacks, NULL, &m, &err), -1);
    assert_null(m);
    config = (struct mux_config){MUX_OPENER, 0x80000000u, 0, NULL, 0, 0, 0};
    assert_int_equal(mux_new(&config, &callbacks, NULL, &m, &err), -1);
    struct mux_callbacks none = {0};
    config = (struct mux_config){MUX_OPENER, 0, 0, NULL, 0, 0, 0};
    assert_int_equal(mux_new(&config, &none, NULL, &m, &err), -1);
    config = (struct mux_config){(enum mux_role)7, 0, 0, NULL, 0, 0, 0};
    assert_int_equal(mux_new(&config, &callbacks, NULL, &m, &err), -1);
    mux_free(NULL);
    assert_int_equal(mux_input(NULL, NULL, 0), -1);
}

/* ---- protocol errors: hand-made frames into one mux ------------------------ */

struct raw {
    int type;           /* 0 ends the list */
    uint8_t flags;
    uint32_t stream;
    int len;            /* payload bytes; -1: strlen(payload) */
    const char *payload;   /* NULL: len bytes of 'a' */
    int header_len;     /* what the header claims when > 0 (no payload sent) */
};

struct error_case {
    const char *expect;     /* substring of the reason */
    enum mux_role role;
    uint32_t window;
    bool accept;            /* the acceptor accepts what opens */
    int opens;              /* the opener opens this many streams first */
    struct raw frames[8];
};

#define F_OPEN(id, res) {MUX_OPEN, 0, id, -1, res, 0}
#define F_OK(id) {MUX_OPEN_OK, 0, id, 0, "", 0}
#define F_DATA(id, n) {MUX_DATA, 0, id, n, NULL, 0}
#define F_WIN(id, inc) {MUX_WINDOW, 0, id, 4, inc, 0}
#define F_FIN(id) {MUX_FIN, 0, id, 0, "", 0}
#define F_RST(id, flags, code) {MUX_RST, flags, id, 2, code, 0}

static const struct error_case error_cases[] = {
    {"unknown frame type 0x0b", MUX_ACCEPTOR, 0, false, 0, {{11, 0, 1, 0, "", 0}}},
    {"IDENTITY on stream 1 (must be 0)", MUX_ACCEPTOR, 0, false, 0,
     {{MUX_IDENTITY, 0, 1, 4, NULL, 0}}},
    {"IDENTITY payload of 0 bytes (must be 1..16384)", MUX_OPENER, 0, false, 0,
     {{MUX_IDENTITY, 0, 0, 0, "", 0}}},
    {"unknown frame type 0x00", MUX_ACCEPTOR, 0, false, 0, {{0x100, 0, 0, 0, "", 0}}},
    {"DATA payload of 16385 bytes exceeds 16384", MUX_ACCEPTOR, 0, true, 0,
     {F_OPEN(1, "r"), {MUX_DATA, 0, 1, 0, "", 16385}}},
    {"DATA beyond stream credit on stream 1 (1 bytes, 0 left)", MUX_ACCEPTOR, 1024, true, 0,
     {F_OPEN(1, "r"), F_DATA(1, 1024), F_DATA(1, 1)}},
    {"DATA beyond session credit (600 bytes, 424 left)", MUX_ACCEPTOR, 1024, true, 0,
     {F_OPEN(1, "r"), F_OPEN(3, "r"), F_DATA(1, 600), F_DATA(3, 600)}},
    {"DATA for unknown stream 7", MUX_ACCEPTOR, 0, true, 0, {F_OPEN(1, "r"), F_DATA(7, 1)}},
    {"DATA for closed stream 1", MUX_ACCEPTOR, 0, true, 0,
     {F_OPEN(1, "r"), F_RST(1, 0, "\0\0"), F_DATA(1, 1)}},
    {"FIN for closed stream 1", MUX_ACCEPTOR, 0, true, 0,
     {F_OPEN(1, "r"), F_RST(1, 0, "\0\0"), F_FIN(1)}},
    {"OPEN from the acceptor", MUX_OPENER, 0, false, 1, {F_OPEN(3, "r")}},
    {"OPEN with even stream id 2", MUX_ACCEPTOR, 0, false, 0, {F_OPEN(2, "r")}},
    {"duplicate OPEN for stream 1", MUX_ACCEPTOR, 0, false, 0, {F_OPEN(1, "r"), F_OPEN(1, "r")}},
    {"OPEN for stream 1 after stream 3 (ids must increase)", MUX_ACCEPTOR, 0, false, 0,
     {F_OPEN(3, "r"), F_OPEN(1, "r")}},
    {"OPEN resource of 0 bytes (must be 1..255)", MUX_ACCEPTOR, 0, false, 0,
     {{MUX_OPEN, 0, 1, 0, "", 0}}},
    {"OPEN resource of 256 bytes (must be 1..255)", MUX_ACCEPTOR, 0, false, 0,
     {{MUX_OPEN, 0, 1, 256, NULL, 0}}},
    {"OPEN resource contains NUL", MUX_ACCEPTOR, 0, false, 0, {{MUX_OPEN, 0, 1, 3, "a\0b", 0}}},
    {"OPEN on stream 0", MUX_ACCEPTOR, 0, false, 0, {F_OPEN(0, "r")}},
    {"DATA after FIN on stream 1", MUX_ACCEPTOR, 0, true, 0,
     {F_OPEN(1, "r"), F_FIN(1), F_DATA(1, 1)}},
    {"FIN after FIN on stream 1", MUX_ACCEPTOR, 0, true, 0, {F_OPEN(1, "r"), F_FIN(1), F_FIN(1)}},
    {"DATA on stream 1 before OPEN_OK", MUX_ACCEPTOR, 0, false, 0, {F_OPEN(1, "r"), F_DATA(1, 1)}},
    {"FIN on stream 1 before OPEN_OK", MUX_ACCEPTOR, 0, false, 0, {F_OPEN(1, "r"), F_FIN(1)}},
    {"WINDOW on stream 1 before OPEN_OK", MUX_ACCEPTOR, 0, false, 0,
     {F_OPEN(1, "r"), F_WIN(1, "\0\0\0\1")}},
    {"OPEN_OK from the opener", MUX_ACCEPTOR, 0, false, 0, {F_OPEN(1, "r"), F_OK(1)}},
    {"WINDOW overflow on stream 1", MUX_ACCEPTOR, 0, true, 0,
     {F_OPEN(1, "r"), F_WIN(1, "\x7f\xff\xff\xff")}},
    {"WINDOW overflow on the session", MUX_ACCEPTOR, 0, false, 0, {F_WIN(0, "\x7f\xff\xff\xff")}},
    {"WINDOW increment of 0 on stream 0", MUX_ACCEPTOR, 0, false, 0, {F_WIN(0, "\0\0\0\0")}},
    {"WINDOW payload of 3 bytes (must be 4)", MUX_ACCEPTOR, 0, false, 0,
     {{MUX_WINDOW, 0, 0, 3, "\0\0\1", 0}}},
    {"WINDOW for unknown stream 5", MUX_ACCEPTOR, 0, false, 0, {F_WIN(5, "\0\0\0\1")}},
    {"RST with unknown code 99", MUX_ACCEPTOR, 0, false, 0,
     {F_OPEN(1, "r"), F_RST(1, 0, "\0\x63")}},
    {"RST with unknown code 9", MUX_ACCEPTOR, 0, false, 0,
     {F_OPEN(1, "r"), F_RST(1, 0, "\0\x09")}},
    {"RST ACK for stream 1, which was not reset", MUX_ACCEPTOR, 0, false, 0,
     {F_OPEN(1, "r"), F_RST(1, MUX_FLAG_ACK, "\0\0")}},
    {"RST for unknown stream 5", MUX_ACCEPTOR, 0, false, 0, {F_RST(5, 0, "\0\0")}},
    {"RST payload of 1 bytes (must be 2..257)", MUX_ACCEPTOR, 0, false, 0,
     {F_OPEN(1, "r"), {MUX_RST, 0, 1, 1, "\0", 0}}},
    {"DATA with unknown flags 0x80", MUX_ACCEPTOR, 0, true, 0,
     {F_OPEN(1, "r"), {MUX_DATA, 0x80, 1, 1, "x", 0}}},
    {"DATA on stream 0", MUX_ACCEPTOR, 0, false, 0, {F_DATA(0, 1)}},
    {"PING on stream 3 (must be 0)", MUX_ACCEPTOR, 0, false, 0, {{MUX_PING, 0, 3, 8, NULL, 0}}},
    {"PING payload of 7 bytes (must be 8)", MUX_ACCEPTOR, 0, false, 0,
     {{MUX_PING, 0, 0, 7, NULL, 0}}},
    {"unsolicited PONG", MUX_ACCEPTOR, 0, false, 0, {{MUX_PONG, 0, 0, 8, NULL, 0}}},
    {"GOAWAY with unknown code 77", MUX_ACCEPTOR, 0, false, 0,
     {{MUX_GOAWAY, 0, 0, 4, "\0\x4dhi", 0}}},
    {"GOAWAY payload of 300 bytes (must be 2..257)", MUX_ACCEPTOR, 0, false, 0,
     {{MUX_GOAWAY, 0, 0, 300, NULL, 0}}},
    {"duplicate OPEN_OK for stream 1", MUX_OPENER, 0, false, 1, {F_OK(1), F_OK(1)}},
    {"OPEN_OK for unknown stream 3", MUX_OPENER, 0, false, 1, {F_OK(3)}},
    {"DATA on stream 1 before OPEN_OK", MUX_OPENER, 0, false, 1, {F_DATA(1, 1)}},
    {"DATA for unknown stream 2", MUX_OPENER, 0, false, 1, {F_OK(1), F_DATA(2, 1)}},
    {"DATA beyond stream credit on stream 1", MUX_OPENER, 100, false, 1, {F_OK(1), F_DATA(1, 101)}},
    {"OPEN_OK for closed stream 1", MUX_OPENER, 0, false, 1, {F_RST(1, 0, "\0\x05"), F_OK(1)}},
    {"FIN for unknown stream 9", MUX_ACCEPTOR, 0, true, 0, {F_OPEN(1, "r"), F_FIN(9)}},
    {"OPEN for stream 1 after stream 4294967295", MUX_ACCEPTOR, 0, true, 0,
     {F_OPEN(0xffffffffu, "top"), F_DATA(0xffffffffu, 5), F_OPEN(1, "r")}},
    {"PONG does not match the PING sent", MUX_OPENER, 0, false, 0,
     {{MUX_PONG, 0, 0, 8, "\0\0\0\0\0\0\x03\xe9", 0}}},
};

static void
raw_append(struct test_bytes *b, const struct raw *r)
{
    uint8_t payload[MUX_MAX_PAYLOAD];
    size_t len = r->len < 0 ? strlen(r->payload) : (size_t)r->len;
    if (r->payload == NULL)
        memset(payload, 'a', len);
    else
        memcpy(payload, r->payload, len);
    size_t claimed = r->header_len > 0 ? (size_t)r->header_len : len;
    uint8_t h[MUX_HEADER_SIZE] = {(uint8_t)r->type, r->flags, (uint8_t)(r->stream >> 24),
                                  (uint8_t)(r->stream >> 16), (uint8_t)(r->stream >> 8),
                                  (uint8_t)r->stream, (uint8_t)(claimed >> 8), (uint8_t)claimed};
    test_bytes_add(b, h, sizeof(h));
    if (r->header_len <= 0)
        test_bytes_add(b, payload, len);
}

static void
run_error_case(const struct error_case *c, size_t chunk)
{
    struct side s;
    side_init(&s, "raw", c->role, c->window, 0);
    s.auto_accept = c->accept;
    for (int i = 0; i < c->opens; i++)
        open_stream(&s, "r");
    /* An opener has a PING out (payload 1000), for the PONG cases. */
    s.clock = 1000;
    if (c->role == MUX_OPENER)
        assert_int_equal(mux_ping(s.mux), 0);
    size_t written = s.out.len;
    struct test_bytes in = {0};
    for (const struct raw *r = c->frames; r < c->frames + 8 && r->type != 0; r++)
        raw_append(&in, r);
    int rc = 0;
    for (size_t off = 0; off < in.len && rc == 0; off += chunk) {
        size_t n = in.len - off < chunk ? in.len - off : chunk;
        rc = mux_input(s.mux, in.buf + off, n);
    }
    if (s.session_closed != 1 || strstr(s.session_reason, c->expect) == NULL)
        fail_msg("expected \"%s\", got %d closes, \"%s\"", c->expect, s.session_closed,
                 s.session_reason);
    assert_int_equal(rc, -1);
    assert_int_equal(s.session_code, MUX_CODE_PROTOCOL_ERROR);
    /* The peer was told, with the same reason, in the last frame written. */
    static struct parsed frames[64];
    struct test_bytes mine = {s.out.buf + written, s.out.len - written, 0, 0};
    size_t n = parse_frames(&mine, frames, 64);
    assert_true(n >= 1);
    const struct parsed *g = &frames[n - 1];
    assert_int_equal(g->type, MUX_GOAWAY);
    assert_int_equal(g->stream, 0);
    assert_int_equal(g->payload[0] << 8 | g->payload[1], MUX_CODE_PROTOCOL_ERROR);
    assert_int_equal(g->len - 2, strlen(s.session_reason));
    assert_memory_equal(g->payload + 2, s.session_reason, g->len - 2);
    /* Every stream was closed with the error, and the mux stays shut. */
    for (size_t i = 0; i < s.nrecs; i++)
        if (s.recs[i].opened || s.recs[i].open_oks)
            assert_int_equal(s.recs[i].closed, 1);
    assert_int_equal(mux_input(s.mux, in.buf, in.len), -1);
    free(in.buf);
    side_free(&s);
}

static void
test_protocol_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
        run_error_case(&error_cases[i], 1 << 20);   /* whole frames, parsed in place */
        run_error_case(&error_cases[i], 1);         /* byte by byte, via the partial buffer */
        run_error_case(&error_cases[i], 5);
    }
}

/* What is allowed on a closed id: late WINDOW and RST (answered with an ACK
 * when it is not one). */
static void
test_late_window_and_rst_harmless(void **state)
{
    (void)state;
    struct side s;
    side_init(&s, "raw", MUX_ACCEPTOR, 0, 0);
    s.auto_accept = true;
    const struct raw frames[] = {
        F_OPEN(1, "r"), F_DATA(1, 0), F_RST(1, 0, "\0\0"), F_WIN(1, "\0\0\0\x10"),
        F_RST(1, 0, "\0\x03"),
        F_RST(1, MUX_FLAG_ACK, "\0\0"), {MUX_PING, 0, 0, 8, NULL, 0},
    };
    struct test_bytes in = {0};
    for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++)
        raw_append(&in, &frames[i]);
    assert_int_equal(mux_input(s.mux, in.buf, in.len), 0);
    assert_int_equal(s.session_closed, 0);
    assert_int_equal(rec_get(&s, 1)->closed, 1);
    assert_int_equal(rec_get(&s, 1)->received, 0);   /* empty DATA: no on_data */
    static struct parsed out[16];
    size_t n = parse_frames(&s.out, out, 16);
    /* OPEN_OK, ACK for the RST, ACK for the late RST, PONG. */
    assert_int_equal(n, 4);
    assert_int_equal(out[0].type, MUX_OPEN_OK);
    assert_int_equal(out[1].type, MUX_RST);
    assert_int_equal(out[1].flags, MUX_FLAG_ACK);
    assert_int_equal(out[2].type, MUX_RST);
    assert_int_equal(out[2].flags, MUX_FLAG_ACK);
    assert_int_equal(out[3].type, MUX_PONG);
    free(in.buf);
    side_free(&s);
}

/* A reason from the wire is bounded and made printable. */
static void
test_reason_text_sanitised(void **state)
{
    (void)state;
    struct side s;
    side_init(&s, "raw", MUX_ACCEPTOR, 0, 0);
    const struct raw frames[] = {{MUX_GOAWAY, 0, 0, 6, "\0\x06" "a\x1b[b", 0}};
    struct test_bytes in = {0};
    raw_append(&in, &frames[0]);
    assert_int_equal(mux_input(s.mux, in.buf, in.len), -1);
    assert_int_equal(s.session_code, MUX_CODE_INTERNAL);
    assert_string_equal(s.session_reason, "a?[b");
    free(in.buf);
    side_free(&s);
    /* Our own reasons are cut at 255 bytes. */
    struct pair p;
    pair_init(&p, 0, 0, 0, 0);
    char big[600];
    memset(big, 'r', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    uint32_t id = open_stream(&p.a, "r");
    pump(&p);
    assert_int_equal(mux_reset(p.a.mux, id, MUX_CODE_NORMAL, big), 0);
    pump(&p);
    assert_int_equal(strlen(rec_get(&p.b, id)->reason), MUX_REASON_MAX - 1);
    assert_int_equal(strlen(rec_get(&p.a, id)->reason), MUX_REASON_MAX - 1);
    pair_free(&p);
}

/* Which credit wakes whom: a session WINDOW re-queues a stream still short
 * of its own credit (or of OPEN_OK); a stream WINDOW wakes it once the
 * session has credit. Hand-made frames into an opener. */
static void
test_writable_needs_both_credits(void **state)
{
    (void)state;
    struct side s;
    side_init(&s, "raw", MUX_OPENER, 1024, 0);
    uint32_t a = open_stream(&s, "a"), b = open_stream(&s, "b");
    const struct raw ok = F_OK(1);
    struct test_bytes in = {0};
    raw_append(&in, &ok);
    assert_int_equal(mux_input(s.mux, in.buf, in.len), 0);
    static uint8_t buf[2048];
    assert_int_equal(mux_send(s.mux, a, buf, 2048), 1024);
    assert_int_equal(mux_send(s.mux, b, buf, 10), 0);   /* before OPEN_OK */
    const struct raw frames[] = {F_WIN(0, "\0\0\x01\0"), F_WIN(1, "\0\0\0\x64"), F_OK(3)};
    for (size_t i = 0; i < 3; i++) {
        in.len = 0;
        raw_append(&in, &frames[i]);
        assert_int_equal(mux_input(s.mux, in.buf, in.len), 0);
        if (i == 0) {
            /* Session credit alone wakes neither. */
            assert_int_equal(rec_get(&s, a)->writable, 0);
            assert_int_equal(rec_get(&s, b)->writable, 0);
        }
    }
    assert_int_equal(rec_get(&s, a)->writable, 1);
    assert_int_equal(rec_get(&s, b)->writable, 1);
    assert_int_equal(mux_send_credit(s.mux, a), 100);
    assert_int_equal(mux_send(s.mux, a, buf, 2048), 100);
    assert_int_equal(mux_send(s.mux, b, buf, 2048), 156);   /* what the session has left */
    free(in.buf);
    side_free(&s);
}

/* The opener resets (after an early FIN) before OPEN_OK arrives: the
 * acceptor's OPEN_OK and DATA meet a tombstone, nothing complains. */
static void
test_reset_before_open_ok(void **state)
{
    (void)state;
    struct pair p;
    pair_init(&p, 0, 1, 0, 0);
    p.b.data_hook = NULL;
    uint32_t id = open_stream(&p.a, "r");
    assert_int_equal(mux_fin(p.a.mux, id), 0);
    deliver(&p, &p.a, &p.b);   /* OPEN reaches the acceptor, which accepts */
    send_all(&p.b, id, "early reply");
    assert_int_equal(mux_reset(p.a.mux, id, MUX_CODE_NORMAL, "client gone"), 0);
    assert_int_equal(rec_get(&p.a, id)->closed, 1);
    /* max_streams 1: the tombstone holds the only slot until the ACK. */
    uint32_t x;
    struct ztr_err err = {0};
    assert_int_equal(mux_open(p.a.mux, "r", &x, &err), -1);
    pump(&p);
    assert_int_equal(p.a.session_closed + p.b.session_closed, 0);
    assert_int_equal(rec_get(&p.a, id)->open_oks, 0);
    assert_int_equal(rec_get(&p.a, id)->received, 0);
    assert_int_equal(rec_get(&p.b, id)->closed, 1);
    assert_string_equal(rec_get(&p.b, id)->reason, "client gone");
    assert_int_equal(open_stream(&p.a, "r"), 3);
    assert_int_equal(mux_accept(p.a.mux, 3, &err), -1);   /* openers do not accept */
    pair_free(&p);
}

/* After the peer's FIN, consuming returns session credit only: no stream
 * WINDOW goes out for a direction that is over. */
static void
test_no_stream_window_after_fin(void **state)
{
    (void)state;
    enum { W = 4096 };
    struct pair p;
    pair_init(&p, W, 0, 0, 0);
    p.b.auto_consume = false;
    uint32_t id = open_stream(&p.a, "r");
    pump(&p);
    static uint8_t buf[W];
    assert_int_equal(mux_send(p.a.mux, id, buf, W), W);
    assert_int_equal(mux_fin(p.a.mux, id), 0);
    pump(&p);
    consume(&p.b, id, W);
    static struct parsed frames[16];
    size_t n = parse_frames(&p.b.out, frames, 16);
    assert_int_equal(n, 1);
    assert_int_equal(frames[0].type, MUX_WINDOW);
    assert_int_equal(frames[0].stream, 0);
    pump(&p);
    assert_int_equal(mux_send_credit(p.a.mux, 0), W);
    pair_free(&p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_accept_data_half_close),
        cmocka_unit_test(test_acceptor_finishes_first),
        cmocka_unit_test(test_send_and_fin_before_open_ok),
        cmocka_unit_test(test_reset_with_reason),
        cmocka_unit_test(test_every_code_crosses_the_wire),
        cmocka_unit_test(test_session_window_is_four_streams),
        cmocka_unit_test(test_reset_crossing_data),
        cmocka_unit_test(test_reset_after_fins),
        cmocka_unit_test(test_goaway_with_reason),
        cmocka_unit_test(test_ping_rtt),
        cmocka_unit_test(test_identity_frames_are_delivered),
        cmocka_unit_test(test_stream_window_stops_exactly),
        cmocka_unit_test(test_window_grows_only_for_fast_readers),
        cmocka_unit_test(test_session_window_stops_exactly),
        cmocka_unit_test(test_close_returns_unconsumed_credit),
        cmocka_unit_test(test_writable_needs_both_credits),
        cmocka_unit_test(test_reset_before_open_ok),
        cmocka_unit_test(test_no_stream_window_after_fin),
        cmocka_unit_test(test_slow_consumer_bounded),
        cmocka_unit_test(test_parallel_streams_checksummed),
        cmocka_unit_test(test_parallel_streams_byte_by_byte),
        cmocka_unit_test(test_stream_limit_refused),
        cmocka_unit_test(test_ids_and_slots_reused),
        cmocka_unit_test(test_callbacks_reenter),
        cmocka_unit_test(test_free_from_callback),
        cmocka_unit_test(test_write_failure_ends_session),
        cmocka_unit_test(test_new_rejects_bad_config),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_late_window_and_rst_harmless),
        cmocka_unit_test(test_reason_text_sanitised),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
