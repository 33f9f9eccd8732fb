/* libFuzzer target: the data-plane session protocol (data/mux.c) reads
 * every byte an authenticated but possibly hostile peer sends.
 *
 * Input: 4 config bytes, then either
 *
 *   raw mode   the rest is wire bytes, fed in chunks to one mux (acceptor
 *              or opener) whose owner acts from its callbacks and between
 *              chunks (accept, refuse, send, consume, fin, reset, ping,
 *              goaway, free) as a PRNG seeded from the input decides; or
 *   pair mode  the rest is a script of operations on two honest muxes
 *              joined back to back (open, send, consume, fin, reset, accept,
 *              ping, deliver some bytes either way). Between honest peers a
 *              protocol error is a bug, and whenever no bytes are in flight
 *              credit must be conserved exactly (sender's credit + bytes the
 *              receiver holds + bytes it has not yet returned = window).
 *
 * Invariants either way, checked as the owner sees them; abort() on any
 * violation: no callback after on_session_closed (or after mux_free); one
 * on_stream_closed per stream and no event for a stream the owner does not
 * have open; on_data only on an accepted stream before its FIN, never more
 * bytes held than the window per stream and per session; mux_send takes
 * exactly what the credits allow; mux_stream_count matches the owner's
 * count; reasons are bounded printable strings; mux_input fails exactly
 * when the session is over; every frame written is well formed and nothing
 * follows a GOAWAY. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/mux.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)       \
    do {                  \
        if (!(cond))      \
            abort();      \
    } while (0)

#define MAX_TRACKED 64
#define CREDIT_MAX 0x7fffffffu

/* ---- the owner's view of one mux ---------------------------------------- */

struct tstream {
    uint32_t id;
    bool used, accepted, got_fin, sent_fin;
    size_t held;            /* on_data bytes not yet consumed */
    size_t rx, tx;          /* bytes received / sent, for the byte pattern */
};

struct owner {
    struct mux *mux;
    enum mux_role role;
    uint32_t window;
    struct tstream s[MAX_TRACKED];
    size_t open;            /* streams the owner has open */
    size_t held;            /* sum of held over open streams */
    bool closed;            /* on_session_closed ran */
    bool freed;             /* mux_free called */
    bool saw_goaway;        /* a GOAWAY frame was written */
    int in_closed_cb;       /* inside on_stream_closed: maybe the session is ending,
                               when mux calls fail by design */
    bool honest;            /* pair mode: the peer is another mux */
    bool check_pattern;
    uint32_t rng;
    unsigned writes, fail_after;   /* the write callback fails after this many (0: never) */
    struct pipe *out;       /* pair mode: where writes go */
};

struct pipe {
    uint8_t buf[1 << 20];   /* more than a window of DATA plus control frames */
    size_t len, off;
};

static uint32_t
rnd(uint32_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return *state;
}

static struct tstream *
find(struct owner *o, uint32_t id)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (o->s[i].used && o->s[i].id == id)
            return &o->s[i];
    return NULL;
}

static struct tstream *
track(struct owner *o, uint32_t id)
{
    CHECK(find(o, id) == NULL);
    for (int i = 0; i < MAX_TRACKED; i++) {
        if (!o->s[i].used) {
            memset(&o->s[i], 0, sizeof(o->s[i]));
            o->s[i].used = true;
            o->s[i].id = id;
            o->open++;
            return &o->s[i];
        }
    }
    abort();   /* more open streams than max_streams allows */
}

static void
untrack(struct owner *o, struct tstream *t)
{
    o->held -= t->held;
    o->open--;
    t->used = false;
}

/* The n-th open stream, or NULL. */
static struct tstream *
pick(struct owner *o, unsigned n)
{
    if (o->open == 0)
        return NULL;
    n %= (unsigned)o->open;
    for (int i = 0; i < MAX_TRACKED; i++)
        if (o->s[i].used && n-- == 0)
            return &o->s[i];
    abort();
}

static uint8_t
pattern(uint32_t id, size_t offset)
{
    return (uint8_t)(offset * 131u + id * 7u + (offset >> 9));
}

static void
check_reason(const char *reason)
{
    size_t n = strnlen(reason, MUX_REASON_MAX);
    CHECK(n < MUX_REASON_MAX);
    for (size_t i = 0; i < n; i++)
        CHECK((unsigned char)reason[i] >= 0x20 && reason[i] != 0x7f);
}

/* A callback may only come while the session is live and the mux exists. */
static void
event(struct owner *o)
{
    CHECK(!o->closed && !o->freed);
}

static void do_send(struct owner *o, struct tstream *t, size_t n);

/* Whatever the owner may do from a callback or between inputs (raw mode):
 * the PRNG picks. Each call goes through the mux's re-entrancy rules. */
static void
act(struct owner *o, struct tstream *t)
{
    if (o->closed || o->freed)
        return;
    uint32_t r = rnd(&o->rng);
    switch (r % 16) {
    case 0: case 1: case 2:
        if (t != NULL)
            do_send(o, t, r >> 8 & 0x7fff);
        break;
    case 3: case 4: case 5:
        if (t != NULL && t->held > 0) {
            size_t n = (r >> 8) % (t->held + 1);
            t->held -= n;
            o->held -= n;
            mux_consumed(o->mux, t->id, n);
        }
        break;
    case 6:
        if (t != NULL) {
            /* Callbacks inside may close t and reuse its slot: find it again. */
            uint32_t id = t->id;
            if (mux_fin(o->mux, id) == 0 && (t = find(o, id)) != NULL)
                t->sent_fin = true;
        }
        break;
    case 7:
        if (t != NULL)
            CHECK(mux_reset(o->mux, t->id, (enum mux_code)(r >> 8) % 7, "owner reset") == 0 ||
                  o->closed || o->in_closed_cb);
        break;
    case 8:
        (void)mux_ping(o->mux);
        break;
    case 9:
        if (o->role == MUX_OPENER) {
            uint32_t id = 0;
            if (mux_open(o->mux, "fuzz.internal:443", &id, NULL) == 0 && !o->closed) {
                CHECK(id & 1);
                track(o, id);
            }
        }
        break;
    case 10:
        if ((r >> 8) % 64 == 0) {
            int rc = mux_goaway(o->mux, MUX_CODE_NORMAL, "owner goaway");
            CHECK(rc == 0 || o->in_closed_cb);
            CHECK(o->closed || o->freed || o->in_closed_cb);
        }
        break;
    default:
        break;   /* mostly nothing */
    }
}

static void
do_send(struct owner *o, struct tstream *t, size_t n)
{
    static uint8_t buf[1 << 15];
    if (n > sizeof(buf))
        n = sizeof(buf);
    uint32_t id = t->id;
    uint32_t credit = mux_send_credit(o->mux, id), session = mux_send_credit(o->mux, 0);
    /* Only what the credits let through can be taken: fill that much. */
    size_t fill = n < credit ? n : credit;
    for (size_t i = 0; i < fill; i++)
        buf[i] = pattern(id, t->tx + i);
    CHECK(credit <= CREDIT_MAX && session <= CREDIT_MAX);
    bool sendable = !t->sent_fin && (o->role == MUX_OPENER || t->accepted);
    ssize_t took = mux_send(o->mux, id, buf, n);
    if (o->closed || o->freed || (took == -1 && o->in_closed_cb))
        return;   /* a failed write ended the session, or it is ending */
    if (!sendable) {
        CHECK(took == -1);
        return;
    }
    CHECK(took >= 0 && (size_t)took <= n);
    /* Exactly the credits: everything, or all the smaller credit (0 before
     * OPEN_OK on the opener side). */
    size_t limit = credit < session ? credit : session;
    CHECK((size_t)took == n || (size_t)took == limit || (size_t)took == 0);
    CHECK((size_t)took <= limit);
    CHECK(mux_send_credit(o->mux, id) == credit - (uint32_t)took);
    CHECK(mux_send_credit(o->mux, 0) == session - (uint32_t)took);
    t->tx += (size_t)took;
}

/* ---- callbacks ------------------------------------------------------------ */

/* Every frame the mux writes is well formed; nothing follows GOAWAY. */
static int
cb_write(void *user, const uint8_t *data, size_t len)
{
    struct owner *o = user;
    CHECK(!o->freed && !o->saw_goaway);
    CHECK(len >= 8);
    size_t plen = (size_t)data[6] << 8 | data[7];
    CHECK(len == 8 + plen && plen <= MUX_MAX_PAYLOAD);
    CHECK(data[0] >= MUX_OPEN && data[0] <= MUX_GOAWAY);
    CHECK(data[1] == 0 || (data[0] == MUX_RST && data[1] == MUX_FLAG_ACK));
    uint32_t id = (uint32_t)data[2] << 24 | (uint32_t)data[3] << 16 | (uint32_t)data[4] << 8 |
                  data[5];
    if (data[0] == MUX_DATA) {
        struct tstream *t = find(o, id);
        CHECK(t != NULL && !t->sent_fin && plen > 0);
    }
    if (data[0] == MUX_OPEN)
        CHECK(o->role == MUX_OPENER && (id & 1) && plen >= 1 && plen <= 255);
    if (data[0] == MUX_OPEN_OK)
        CHECK(o->role == MUX_ACCEPTOR);
    if (data[0] == MUX_GOAWAY)
        o->saw_goaway = true;
    else
        CHECK(!o->closed);
    o->writes++;
    if (o->fail_after != 0 && o->writes >= o->fail_after)
        return -1;
    if (o->out != NULL) {
        CHECK(o->out->len + len <= sizeof(o->out->buf));
        memcpy(o->out->buf + o->out->len, data, len);
        o->out->len += len;
    }
    return 0;
}

static void
cb_open(void *user, uint32_t stream, const char *resource)
{
    struct owner *o = user;
    event(o);
    CHECK(o->role == MUX_ACCEPTOR && (stream & 1));
    size_t n = strlen(resource);
    CHECK(n >= 1 && n <= 255);
    struct tstream *t = track(o, stream);
    if (o->honest)
        return;   /* pair mode: the script accepts */
    uint32_t r = rnd(&o->rng);
    if (r % 8 < 6) {
        CHECK(mux_accept(o->mux, stream, NULL) == 0 || o->closed);
        if (!o->closed)
            t->accepted = true;
        CHECK(mux_accept(o->mux, stream, NULL) == -1);
    } else if (r % 8 == 6) {
        CHECK(mux_reset(o->mux, stream, MUX_CODE_RESOURCE_NOT_ALLOWED, "not allowed") == 0 || o->closed);
    }
}

static void
cb_open_ok(void *user, uint32_t stream)
{
    struct owner *o = user;
    event(o);
    CHECK(o->role == MUX_OPENER);
    struct tstream *t = find(o, stream);
    CHECK(t != NULL && !t->accepted);
    t->accepted = true;
    if (!o->honest)
        act(o, t);
}

static void
cb_data(void *user, uint32_t stream, const uint8_t *data, size_t len)
{
    struct owner *o = user;
    event(o);
    struct tstream *t = find(o, stream);
    CHECK(t != NULL && t->accepted && !t->got_fin && len > 0 && len <= MUX_MAX_PAYLOAD);
    t->held += len;
    o->held += len;
    /* The peer can never get past the credit we gave. */
    CHECK(t->held <= o->window && o->held <= o->window);
    if (o->check_pattern)
        for (size_t i = 0; i < len; i++)
            CHECK(data[i] == pattern(stream, t->rx + i));
    t->rx += len;
    if (!o->honest)
        act(o, t);
}

static void
cb_fin(void *user, uint32_t stream)
{
    struct owner *o = user;
    event(o);
    struct tstream *t = find(o, stream);
    CHECK(t != NULL && t->accepted && !t->got_fin);
    t->got_fin = true;
    if (!o->honest)
        act(o, t);
}

static void
cb_stream_closed(void *user, uint32_t stream, enum mux_code code, const char *reason)
{
    struct owner *o = user;
    CHECK(!o->freed);
    CHECK(!o->closed);   /* before on_session_closed, never after */
    CHECK((unsigned)code <= MUX_CODE_LAST);
    check_reason(reason);
    struct tstream *t = find(o, stream);
    CHECK(t != NULL);
    untrack(o, t);
    if (o->honest)
        CHECK(code != MUX_CODE_PROTOCOL_ERROR);
    if (!o->honest && (rnd(&o->rng) & 3) == 0) {
        o->in_closed_cb++;
        act(o, pick(o, rnd(&o->rng)));
        o->in_closed_cb--;
    }
}

static void
cb_writable(void *user, uint32_t stream)
{
    struct owner *o = user;
    event(o);
    struct tstream *t = find(o, stream);
    CHECK(t != NULL && t->accepted && !t->sent_fin);
    CHECK(mux_send_credit(o->mux, stream) > 0 && mux_send_credit(o->mux, 0) > 0);
    if (!o->honest)
        act(o, t);
}

static void
cb_pong(void *user, int64_t rtt)
{
    struct owner *o = user;
    event(o);
    CHECK(rtt >= 0);
}

static void
cb_session_closed(void *user, enum mux_code code, const char *reason)
{
    struct owner *o = user;
    event(o);
    CHECK((unsigned)code <= MUX_CODE_LAST);
    check_reason(reason);
    o->closed = true;
    CHECK(o->open == 0);   /* every stream got its on_stream_closed first */
    if (o->honest)
        CHECK(code != MUX_CODE_PROTOCOL_ERROR);
    CHECK(mux_stream_count(o->mux) == 0);
    if (!o->honest && (rnd(&o->rng) & 1)) {
        mux_free(o->mux);   /* deferred until the outer call returns */
        o->freed = true;
    }
}

static int64_t
cb_now(void *user)
{
    (void)user;
    return 1000;
}

static const struct mux_callbacks callbacks = {
    cb_write, cb_open, cb_open_ok, cb_data, cb_fin, cb_stream_closed, cb_writable, cb_pong,
    cb_session_closed,
};

static const uint32_t windows[] = {1, 7, 100, 1024, 16384, 65536, 0};
static const uint32_t limits[] = {1, 2, 3, 16};

static bool
owner_init(struct owner *o, enum mux_role role, uint8_t cfg, uint32_t seed)
{
    memset(o, 0, sizeof(*o));
    o->role = role;
    struct mux_config config = {role, windows[cfg % 7], limits[(cfg >> 3) % 4], cb_now};
    o->window = config.window != 0 ? config.window : MUX_DEFAULT_WINDOW;
    o->rng = seed | 1;
    return mux_new(&config, &callbacks, o, &o->mux, NULL) == 0;
}

static void
owner_check(struct owner *o)
{
    if (o->closed || o->freed)
        return;
    CHECK(mux_stream_count(o->mux) == o->open);
    CHECK(mux_send_credit(o->mux, 0) <= CREDIT_MAX);
    for (int i = 0; i < MAX_TRACKED; i++)
        if (o->s[i].used)
            CHECK(mux_send_credit(o->mux, o->s[i].id) <= CREDIT_MAX);
}

static void
owner_free(struct owner *o)
{
    if (!o->freed)
        mux_free(o->mux);
    o->freed = true;
}

/* ---- raw mode ------------------------------------------------------------- */

static void
run_raw(const uint8_t *cfg, const uint8_t *data, size_t size)
{
    static struct owner o;
    enum mux_role role = cfg[0] & 1 ? MUX_OPENER : MUX_ACCEPTOR;
    if (!owner_init(&o, role, cfg[1], (uint32_t)cfg[2] << 8 | cfg[3]))
        return;
    o.fail_after = cfg[0] & 0x40 ? (cfg[3] & 0x1f) + 1 : 0;
    /* An opener opens a few streams first, for the input to talk about. */
    for (int i = 0; role == MUX_OPENER && i < (cfg[2] & 3) && !o.closed; i++) {
        uint32_t id;
        if (mux_open(o.mux, "r", &id, NULL) == 0 && !o.closed)
            track(&o, id);
    }
    static const size_t maxima[] = {1, 2, 3, 7, 9, 64, 700, 8192};
    size_t max = maxima[cfg[2] >> 5];
    size_t off = 0;
    while (off < size && !o.closed && !o.freed) {
        size_t n = 1 + rnd(&o.rng) % max;
        if (n > size - off)
            n = size - off;
        int rc = mux_input(o.mux, data + off, n);
        off += n;
        CHECK(rc == 0 || rc == -1);
        CHECK((rc == -1) == (o.closed || o.freed));
        owner_check(&o);
        /* Between inputs the owner acts on a stream of its own. */
        act(&o, pick(&o, rnd(&o.rng)));
        owner_check(&o);
    }
    if (o.closed && !o.freed)
        CHECK(mux_input(o.mux, data, size) == -1);
    owner_free(&o);
}

/* ---- pair mode ------------------------------------------------------------ */

struct pair {
    struct owner a, b;   /* opener, acceptor */
    struct pipe ab, ba;
};

/* Moves up to n bytes; the receiver must take them without complaint. */
static void
deliver(struct pipe *p, struct owner *to, size_t n)
{
    size_t avail = p->len - p->off;
    if (n > avail)
        n = avail;
    if (n == 0)
        return;
    const uint8_t *d = p->buf + p->off;
    p->off += n;
    if (!to->closed && !to->freed)
        CHECK(mux_input(to->mux, d, n) == 0 || to->closed);
    if (p->off == p->len)
        p->off = p->len = 0;
}

/* With nothing in flight, credit is conserved exactly: what the sender may
 * still send + what the receiver holds + what it has consumed and not yet
 * returned (< a quarter of the window) = the window. */
static void
check_conservation(struct owner *tx, struct owner *rx)
{
    if (tx->closed || rx->closed)
        return;
    uint32_t w = tx->window, threshold = (w + 3) / 4;
    uint64_t sum = (uint64_t)mux_send_credit(tx->mux, 0) + rx->held;
    CHECK(sum <= w && sum + threshold > w);
    for (int i = 0; i < MAX_TRACKED; i++) {
        struct tstream *t = &tx->s[i];
        struct tstream *r = t->used ? find(rx, t->id) : NULL;
        if (r == NULL || !t->accepted || !r->accepted)
            continue;
        uint64_t s = (uint64_t)mux_send_credit(tx->mux, t->id) + r->held;
        CHECK(s <= w);
        if (!r->got_fin && !t->sent_fin)
            CHECK(s + threshold > w);
    }
}

static void
quiescent(struct pair *p)
{
    if (p->ab.len != p->ab.off || p->ba.len != p->ba.off)
        return;
    check_conservation(&p->a, &p->b);
    check_conservation(&p->b, &p->a);
}

static void
consume(struct owner *o, struct tstream *t, size_t n)
{
    if (n > t->held)
        n = t->held;
    t->held -= n;
    o->held -= n;
    mux_consumed(o->mux, t->id, n);
}

static void
run_pair(const uint8_t *cfg, const uint8_t *ops, size_t size)
{
    static struct pair p;
    p.ab.len = p.ab.off = p.ba.len = p.ba.off = 0;
    if (!owner_init(&p.a, MUX_OPENER, cfg[1], 1))
        return;
    if (!owner_init(&p.b, MUX_ACCEPTOR, cfg[1], 2)) {
        owner_free(&p.a);
        return;
    }
    p.a.honest = p.b.honest = true;
    p.a.check_pattern = p.b.check_pattern = true;
    p.a.out = &p.ab;
    p.b.out = &p.ba;
    for (size_t i = 0; i + 1 < size && !p.a.closed && !p.b.closed; i += 2) {
        uint8_t op = ops[i], arg = ops[i + 1];
        struct owner *o = op & 0x10 ? &p.b : &p.a;
        struct owner *peer = o == &p.a ? &p.b : &p.a;
        struct tstream *t = pick(o, arg);
        switch (op & 0x0f) {
        case 0:
            if (o == &p.a) {
                uint32_t id;
                if (mux_open(p.a.mux, "svc:1", &id, NULL) == 0)
                    track(&p.a, id);
            }
            break;
        case 1: case 2: case 3:
            deliver(o == &p.a ? &p.ab : &p.ba, peer, (size_t)arg * arg + 1);
            quiescent(&p);
            break;
        case 4: case 5:
            if (t != NULL)
                do_send(o, t, (size_t)arg * 97 + 1);
            break;
        case 6: case 7:
            if (t != NULL)
                consume(o, t, (size_t)arg * 131);
            break;
        case 8:
            if (t != NULL) {
                uint32_t id = t->id;
                if (mux_fin(o->mux, id) == 0 && (t = find(o, id)) != NULL)
                    t->sent_fin = true;
            }
            break;
        case 9:
            if (t != NULL && (arg & 7) == 0)
                CHECK(mux_reset(o->mux, t->id, MUX_CODE_NORMAL, "script") == 0);
            break;
        case 10:
            if (t != NULL && o == &p.b && !t->accepted) {
                CHECK(mux_accept(p.b.mux, t->id, NULL) == 0);
                t->accepted = true;
            }
            break;
        case 11:
            (void)mux_ping(o->mux);
            break;
        default:
            break;
        }
        owner_check(&p.a);
        owner_check(&p.b);
    }
    /* Drain: deliver everything, accept and consume everything, until
     * nothing moves; then the books must balance. */
    for (int round = 0; round < 1000 && !p.a.closed && !p.b.closed; round++) {
        bool moved = p.ab.len != p.ab.off || p.ba.len != p.ba.off;
        deliver(&p.ab, &p.b, sizeof(p.ab.buf));
        deliver(&p.ba, &p.a, sizeof(p.ba.buf));
        for (int i = 0; i < MAX_TRACKED; i++) {
            struct tstream *t = &p.b.s[i];
            if (t->used && !t->accepted) {
                CHECK(mux_accept(p.b.mux, t->id, NULL) == 0);
                t->accepted = true;
                moved = true;
            }
        }
        for (int k = 0; k < 2; k++) {
            struct owner *o = k ? &p.b : &p.a;
            for (int i = 0; i < MAX_TRACKED; i++)
                if (o->s[i].used && o->s[i].held > 0) {
                    consume(o, &o->s[i], o->s[i].held);
                    moved = true;
                }
        }
        if (!moved)
            break;
    }
    quiescent(&p);
    owner_free(&p.a);
    owner_free(&p.b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    if (data[0] & 0x80)
        run_pair(data, data + 4, size - 4);
    else
        run_raw(data, data + 4, size - 4);
    return 0;
}
