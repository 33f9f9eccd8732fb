/* libFuzzer target: the SOCKS5 handshake parser sees the first bytes of
 * every local client of the tunneler's SOCKS5 front end.
 *
 * The input is what a client sends, delivered to socks5_feed in chunks whose
 * sizes come from a hash of the input (1 byte at a time up to whole reads),
 * with the pending output drained in similarly uneven pieces between feeds.
 * The outcome is compared with a reference reading of the whole stream that
 * follows RFC 1928 field by field: where the parser stops, whether it stops
 * with a request or an error, the parsed request, and every byte it asked to
 * send. A parsed request is then answered with a reply code and bound
 * address taken from the bytes after it, and the encoding is checked. Any
 * broken invariant calls abort(), which libFuzzer reports. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tunneler/socks5.h"
#include "tests/fuzz/chunker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* ---- the reference: RFC 1928 read straight off the whole stream ------- */

struct expected {
    enum socks5_status outcome; /* NEED_MORE (stream ends first), REQUEST_READY or ERROR */
    size_t greeting_end;        /* 0 unless the greeting was accepted */
    size_t end;                 /* where the parser stops for good */
    uint8_t output[SOCKS5_OUTPUT_MAX];
    size_t output_len;
    uint8_t atyp;
    uint8_t addr[255];
    size_t addr_len;
    uint16_t port;
};

static void
expect_error_reply(struct expected *e, uint8_t code)
{
    const uint8_t reply[10] = {5, code, 0, 1, 0, 0, 0, 0, 0, 0};
    memcpy(e->output + e->output_len, reply, sizeof(reply));
    e->output_len += sizeof(reply);
}

static void
reference(const uint8_t *d, size_t size, struct expected *e)
{
    memset(e, 0, sizeof(*e));
    e->outcome = SOCKS5_NEED_MORE;
    e->end = size;
    if (size < 1)
        return;
    if (d[0] != 5) {
        e->outcome = SOCKS5_ERROR;
        e->end = 1;
        return; /* no reply to a non-SOCKS5 greeting */
    }
    if (size < 2)
        return;
    size_t nmethods = d[1];
    if (nmethods == 0 || size >= 2 + nmethods) {
        bool no_auth = false;
        for (size_t i = 0; i < nmethods; i++)
            no_auth |= d[2 + i] == 0;
        if (!no_auth) {
            e->outcome = SOCKS5_ERROR;
            e->end = 2 + nmethods;
            e->output[0] = 5;
            e->output[1] = 0xff;
            e->output_len = 2;
            return;
        }
    } else {
        return;
    }
    size_t g = 2 + nmethods;
    e->greeting_end = g;
    e->output[0] = 5;
    e->output[1] = 0;
    e->output_len = 2;
    /* The request: each field fails at its own byte. */
    const uint8_t *r = d + g;
    size_t have = size - g;
    if (have < 1)
        return;
    e->outcome = SOCKS5_ERROR;
    if (r[0] != 5) {
        e->end = g + 1;
        expect_error_reply(e, SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    e->outcome = SOCKS5_NEED_MORE;
    if (have < 2)
        return;
    e->outcome = SOCKS5_ERROR;
    if (r[1] != 1) {
        e->end = g + 2;
        expect_error_reply(e, SOCKS5_REP_COMMAND_NOT_SUPPORTED);
        return;
    }
    e->outcome = SOCKS5_NEED_MORE;
    if (have < 3)
        return;
    e->outcome = SOCKS5_ERROR;
    if (r[2] != 0) {
        e->end = g + 3;
        expect_error_reply(e, SOCKS5_REP_GENERAL_FAILURE);
        return;
    }
    e->outcome = SOCKS5_NEED_MORE;
    if (have < 4)
        return;
    size_t addr_at = 4;
    e->atyp = r[3];
    if (r[3] == 1) {
        e->addr_len = 4;
    } else if (r[3] == 4) {
        e->addr_len = 16;
    } else if (r[3] == 3) {
        if (have < 5)
            return;
        if (r[4] == 0) {
            e->outcome = SOCKS5_ERROR;
            e->end = g + 5;
            expect_error_reply(e, SOCKS5_REP_GENERAL_FAILURE);
            return;
        }
        e->addr_len = r[4];
        addr_at = 5;
        for (size_t i = 0; i < e->addr_len && addr_at + i < have; i++) {
            if (r[addr_at + i] < 0x21 || r[addr_at + i] > 0x7e) {
                e->outcome = SOCKS5_ERROR;
                e->end = g + addr_at + i + 1;
                expect_error_reply(e, SOCKS5_REP_GENERAL_FAILURE);
                return;
            }
        }
    } else {
        e->outcome = SOCKS5_ERROR;
        e->end = g + 4;
        expect_error_reply(e, SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED);
        return;
    }
    if (have < addr_at + e->addr_len + 2)
        return;
    memcpy(e->addr, r + addr_at, e->addr_len);
    e->port = (uint16_t)(r[addr_at + e->addr_len] << 8 | r[addr_at + e->addr_len + 1]);
    e->outcome = SOCKS5_REQUEST_READY;
    e->end = g + addr_at + e->addr_len + 2;
    if (e->end > g + SOCKS5_REQUEST_MAX || g > SOCKS5_GREETING_MAX)
        abort(); /* the reference itself is wrong */
}

/* ---- the parser under test -------------------------------------------- */

struct collected {
    uint8_t bytes[SOCKS5_OUTPUT_MAX * 2];
    size_t len;
};

/* Takes up to max pending bytes, as a short write() would. */
static void
drain(struct socks5_session *s, struct collected *out, size_t max)
{
    const uint8_t *p;
    size_t len;
    size_t returned = socks5_pending_output(s, &p, &len);
    if (returned != len || len > SOCKS5_OUTPUT_MAX)
        abort();
    size_t n = len < max ? len : max;
    if (n > sizeof(out->bytes) - out->len)
        abort();
    memcpy(out->bytes + out->len, p, n);
    out->len += n;
    if (socks5_output_sent(s, n, NULL) != 0)
        abort();
    if (socks5_output_sent(s, len - n + 1, NULL) != -1)
        abort(); /* more than pending is refused */
}

static void
check_request(const struct socks5_request *req, const struct expected *e)
{
    if (req == NULL || req->atyp != e->atyp || req->port != e->port)
        abort();
    size_t host_len = strnlen(req->host, sizeof(req->host));
    if (host_len == 0 || host_len >= sizeof(req->host))
        abort();
    if (req->atyp == SOCKS5_ATYP_DOMAIN) {
        if (host_len != e->addr_len || memcmp(req->host, e->addr, host_len) != 0)
            abort();
        return;
    }
    /* The text form parses back to the raw address. */
    uint8_t back[16];
    int family = req->atyp == SOCKS5_ATYP_IPV4 ? AF_INET : AF_INET6;
    if (inet_pton(family, req->host, back) != 1 || memcmp(back, e->addr, e->addr_len) != 0 ||
        memcmp(req->addr, e->addr, e->addr_len) != 0)
        abort();
}

/* Answers with a code and bound address chosen by the byte after the
 * request (or a fixed one) and checks the reply on the wire. */
static void
check_reply(struct socks5_session *s, struct collected *out, const uint8_t *rest,
            size_t rest_len)
{
    uint8_t pick = rest_len > 0 ? rest[0] : 0;
    int code = pick % 10; /* 9 is not a reply code */
    struct sockaddr_in sin = {0};
    struct sockaddr_in6 sin6 = {0};
    const struct sockaddr *bound = NULL;
    uint8_t want[SOCKS5_REPLY_MAX] = {5, (uint8_t)code, 0, 1};
    size_t want_len = 10;
    uint8_t fill[18];
    for (size_t i = 0; i < sizeof(fill); i++)
        fill[i] = i + 1 < rest_len ? rest[i + 1] : (uint8_t)i;
    switch (pick / 10 % 3) {
    case 0:
        break;
    case 1:
        sin.sin_family = AF_INET;
        memcpy(&sin.sin_addr, fill, 4);
        memcpy(&sin.sin_port, fill + 4, 2);
        bound = (const struct sockaddr *)&sin;
        memcpy(want + 4, fill, 6);
        break;
    default:
        sin6.sin6_family = AF_INET6;
        memcpy(&sin6.sin6_addr, fill, 16);
        memcpy(&sin6.sin6_port, fill + 16, 2);
        bound = (const struct sockaddr *)&sin6;
        want[3] = 4;
        memcpy(want + 4, fill, 18);
        want_len = 22;
        break;
    }
    size_t before = out->len;
    int rc = socks5_reply(s, code, bound, NULL);
    if (code > SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED) {
        if (rc != -1)
            abort();
        drain(s, out, SIZE_MAX);
        if (out->len != before)
            abort(); /* a refused reply queues nothing */
        return;
    }
    if (rc != 0 || socks5_reply(s, code, bound, NULL) != -1)
        abort(); /* once only */
    drain(s, out, SIZE_MAX);
    if (out->len - before != want_len || memcmp(out->bytes + before, want, want_len) != 0)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct expected e;
    reference(data, size, &e);

    uint32_t h = hash_input(data, size);
    static const size_t maxima[] = {1, 2, 3, 5, 8, 64, 300, 8192};
    struct chunker feed_ch = {h | 1, maxima[(h >> 24) % (sizeof(maxima) / sizeof(maxima[0]))]};
    struct chunker drain_ch = {(h >> 7) | 1, 1 + h % 24};

    struct socks5_session s;
    socks5_session_init(&s);
    struct collected out = {.len = 0};
    size_t offset = 0;
    size_t greeting_end = 0;
    enum socks5_status last = SOCKS5_NEED_MORE;
    while (offset < size && last != SOCKS5_REQUEST_READY && last != SOCKS5_ERROR) {
        size_t chunk = next_chunk(&feed_ch);
        if (chunk > size - offset)
            chunk = size - offset;
        size_t used = (size_t)-1;
        struct ztr_err err = {0};
        last = socks5_feed(&s, data + offset, chunk, &used, &err);
        if (used > chunk)
            abort();
        offset += used;
        switch (last) {
        case SOCKS5_NEED_MORE:
            if (used != chunk || socks5_request(&s) != NULL)
                abort();
            break;
        case SOCKS5_REPLY_READY:
            if (greeting_end != 0 || used == 0)
                abort();
            greeting_end = offset;
            break;
        case SOCKS5_REQUEST_READY:
            break;
        case SOCKS5_ERROR:
            if (err.code != ZTR_E_INVALID || err.msg[0] == '\0' || used == 0 ||
                socks5_request(&s) != NULL)
                abort();
            break;
        default:
            abort();
        }
        drain(&s, &out, next_chunk(&drain_ch));
    }

    /* The same outcome, at the same place, as the reference. A stream that
     * ends right after the greeting leaves the parser waiting for the
     * request, which is the reference's "need more". */
    if (last == SOCKS5_REPLY_READY)
        last = SOCKS5_NEED_MORE;
    if (last != e.outcome || greeting_end != e.greeting_end || offset != e.end)
        abort();
    if (greeting_end > SOCKS5_GREETING_MAX || offset - greeting_end > SOCKS5_REQUEST_MAX)
        abort();

    if (last == SOCKS5_REQUEST_READY || last == SOCKS5_ERROR) {
        /* Finished: later input is never taken. */
        size_t used = (size_t)-1;
        if (socks5_feed(&s, data + offset, size - offset, &used, NULL) != last || used != 0)
            abort();
    }
    /* Every byte asked to be sent, in order, nothing else. */
    drain(&s, &out, SIZE_MAX);
    if (out.len != e.output_len || memcmp(out.bytes, e.output, out.len) != 0)
        abort();

    if (last == SOCKS5_REQUEST_READY) {
        check_request(socks5_request(&s), &e);
        struct collected reply = {.len = 0};
        check_reply(&s, &reply, data + offset, size - offset);
        check_request(socks5_request(&s), &e); /* still there after the reply */
    } else if (socks5_reply(&s, SOCKS5_REP_SUCCEEDED, NULL, NULL) != -1) {
        abort(); /* no reply without a request */
    }
    return 0;
}
