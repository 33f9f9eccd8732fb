/* SOCKS5 server-side handshake parser (RFC 1928, CONNECT, no auth).
 * The interoperability tests at the end drive it with the curl CLI through a
 * socket bound to 127.0.0.1 on a kernel-chosen port; nothing else is dialled
 * (curl hands every target to the proxy). */
#include "tests/unit/support.h"

#include "net/net.h"
#include "tunneler/socks5.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define GREETING_NO_AUTH "\x05\x01\x00"

/* ---- helpers ---------------------------------------------------------- */

/* The pending output must be exactly want; marks it sent. */
static void
expect_output(struct socks5_session *s, const void *want, size_t want_len)
{
    const uint8_t *out;
    size_t len;
    assert_int_equal(socks5_pending_output(s, &out, &len), want_len);
    assert_int_equal(len, want_len);
    if (want_len > 0)
        assert_memory_equal(out, want, want_len);
    assert_int_equal(socks5_output_sent(s, len, NULL), 0);
    assert_int_equal(socks5_pending_output(s, &out, &len), 0);
}

static void
expect_no_output(struct socks5_session *s)
{
    expect_output(s, NULL, 0);
}

/* One valid client exchange: greeting then request. */
struct shape {
    const char *name;
    const uint8_t *greeting;
    size_t greeting_len;
    const uint8_t *request;
    size_t request_len;
    enum socks5_atyp atyp;
    const char *host;
    uint16_t port;
};

static void
expect_request(const struct socks5_session *s, const struct shape *shape)
{
    const struct socks5_request *req = socks5_request(s);
    assert_non_null(req);
    assert_int_equal(req->atyp, shape->atyp);
    assert_string_equal(req->host, shape->host);
    assert_int_equal(req->port, shape->port);
    if (shape->atyp == SOCKS5_ATYP_IPV4)
        assert_memory_equal(req->addr, shape->request + 4, 4);
    if (shape->atyp == SOCKS5_ATYP_IPV6)
        assert_memory_equal(req->addr, shape->request + 4, 16);
}

/* The client's whole transmission (greeting + request + trailing data),
 * delivered in chunks of the given sizes (the last repeats). Checks that
 * the parser stops exactly at the end of each message and returns the
 * offset where the request ended. */
static size_t
run_chunked(const struct shape *shape, const uint8_t *trailing, size_t trailing_len,
            size_t chunk)
{
    uint8_t stream[SOCKS5_GREETING_MAX + SOCKS5_REQUEST_MAX + 64];
    size_t total = shape->greeting_len + shape->request_len + trailing_len;
    assert_true(total <= sizeof(stream));
    memcpy(stream, shape->greeting, shape->greeting_len);
    memcpy(stream + shape->greeting_len, shape->request, shape->request_len);
    if (trailing_len > 0)
        memcpy(stream + shape->greeting_len + shape->request_len, trailing, trailing_len);

    struct socks5_session s;
    socks5_session_init(&s);
    struct ztr_err err = {0};
    size_t offset = 0;
    bool replied = false;
    while (offset < total) {
        size_t n = total - offset < chunk ? total - offset : chunk;
        size_t chunk_end = offset + n;
        while (offset < chunk_end) {
            size_t used = 999;
            enum socks5_status st = socks5_feed(&s, stream + offset, chunk_end - offset, &used, &err);
            if (st == SOCKS5_ERROR)
                fail_msg("%s (chunk %zu): %s", shape->name, chunk, err.msg);
            assert_true(used <= chunk_end - offset);
            offset += used;
            if (st == SOCKS5_NEED_MORE) {
                assert_int_equal(offset, chunk_end);
                assert_null(socks5_request(&s));
                continue;
            }
            if (st == SOCKS5_REPLY_READY) {
                assert_false(replied);
                assert_int_equal(offset, shape->greeting_len);
                expect_output(&s, "\x05\x00", 2);
                replied = true;
                continue;
            }
            assert_int_equal(st, SOCKS5_REQUEST_READY);
            assert_true(replied);
            assert_int_equal(offset, shape->greeting_len + shape->request_len);
            expect_no_output(&s);
            expect_request(&s, shape);
            /* Anything after the request is the caller's, now and later. */
            if (offset < total) {
                assert_int_equal(socks5_feed(&s, stream + offset, total - offset, &used, &err),
                                 SOCKS5_REQUEST_READY);
                assert_int_equal(used, 0);
            }
            return offset;
        }
    }
    fail_msg("%s (chunk %zu): no request after %zu bytes", shape->name, chunk, total);
    return 0;
}

static void
check_shape(const struct shape *shape)
{
    size_t whole = shape->greeting_len + shape->request_len;
    /* Byte by byte, in one go, and every chunk size in between. */
    for (size_t chunk = 1; chunk <= whole; chunk++)
        assert_int_equal(run_chunked(shape, NULL, 0, chunk), whole);
    /* Each message in one go, as separate reads. */
    struct socks5_session s;
    socks5_session_init(&s);
    size_t used;
    assert_int_equal(socks5_feed(&s, shape->greeting, shape->greeting_len, &used, NULL),
                     SOCKS5_REPLY_READY);
    assert_int_equal(used, shape->greeting_len);
    expect_output(&s, "\x05\x00", 2);
    assert_int_equal(socks5_feed(&s, shape->request, shape->request_len, &used, NULL),
                     SOCKS5_REQUEST_READY);
    assert_int_equal(used, shape->request_len);
    expect_request(&s, shape);
}

#define BYTES(lit) (const uint8_t *)(lit), sizeof(lit) - 1

/* ---- valid shapes ----------------------------------------------------- */

static void
test_connect_ipv4(void **state)
{
    (void)state;
    const struct shape shape = {
        "ipv4", BYTES(GREETING_NO_AUTH),
        BYTES("\x05\x01\x00\x01\x0a\x00\x00\x05\x01\xbb"),
        SOCKS5_ATYP_IPV4, "10.0.0.5", 443,
    };
    check_shape(&shape);
    const struct shape edges = {
        "ipv4 edges", BYTES(GREETING_NO_AUTH),
        BYTES("\x05\x01\x00\x01\xff\xff\xff\xff\xff\xff"),
        SOCKS5_ATYP_IPV4, "255.255.255.255", 65535,
    };
    check_shape(&edges);
}

static void
test_connect_ipv6(void **state)
{
    (void)state;
    const struct shape shape = {
        "ipv6", BYTES(GREETING_NO_AUTH),
        BYTES("\x05\x01\x00\x04\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07"
              "\x1f\x90"),
        SOCKS5_ATYP_IPV6, "2001:db8::7", 8080,
    };
    check_shape(&shape);
    const struct shape loopback = {
        "ipv6 loopback", BYTES(GREETING_NO_AUTH),
        BYTES("\x05\x01\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
              "\x00\x16"),
        SOCKS5_ATYP_IPV6, "::1", 22,
    };
    check_shape(&loopback);
    /* IPv4-mapped addresses keep their IPv6 form: the tunneler sees what the
     * client sent. */
    const struct shape mapped = {
        "ipv4-mapped", BYTES(GREETING_NO_AUTH),
        BYTES("\x05\x01\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x7f\x00\x00\x01"
              "\x00\x50"),
        SOCKS5_ATYP_IPV6, "::ffff:127.0.0.1", 80,
    };
    check_shape(&mapped);
}

static void
test_connect_domain(void **state)
{
    (void)state;
    const struct shape pg = {
        "domain", BYTES(GREETING_NO_AUTH),
        BYTES("\x05\x01\x00\x03\x02pg\x15\x38"),
        SOCKS5_ATYP_DOMAIN, "pg", 5432,
    };
    check_shape(&pg);
    const struct shape one = {
        "one-byte domain", BYTES(GREETING_NO_AUTH),
        BYTES("\x05\x01\x00\x03\x01x\x00\x00"),
        SOCKS5_ATYP_DOMAIN, "x", 0,
    };
    check_shape(&one);
    /* Case and the trailing dot are kept: the tunneler decides. */
    const struct shape fqdn = {
        "fqdn", BYTES(GREETING_NO_AUTH),
        BYTES("\x05\x01\x00\x03\x18" "Db.Internal.Example.ORG." "\x01\xbb"),
        SOCKS5_ATYP_DOMAIN, "Db.Internal.Example.ORG.", 443,
    };
    check_shape(&fqdn);
}

static void
test_connect_domain_of_255_bytes(void **state)
{
    (void)state;
    uint8_t request[SOCKS5_REQUEST_MAX];
    char name[256];
    for (size_t i = 0; i < 255; i++)
        name[i] = (char)('a' + i % 26);
    name[255] = '\0';
    memcpy(request, "\x05\x01\x00\x03\xff", 5);
    memcpy(request + 5, name, 255);
    request[260] = 0x01;
    request[261] = 0x00;
    const struct shape longest = {
        "255-byte domain", BYTES(GREETING_NO_AUTH), request, sizeof(request),
        SOCKS5_ATYP_DOMAIN, name, 256,
    };
    assert_int_equal(sizeof(request), 262);
    check_shape(&longest);
}

static void
test_greeting_shapes(void **state)
{
    (void)state;
    const uint8_t *request = (const uint8_t *)"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50";
    /* 0x00 first, last, alone, among unknown methods, offered twice. */
    struct shape shape = {"greeting", NULL, 0, request, 10, SOCKS5_ATYP_IPV4, "127.0.0.1", 80};
    const struct {
        const char *bytes;
        size_t len;
    } greetings[] = {
        {"\x05\x01\x00", 3},
        {"\x05\x02\x00\x02", 4},
        {"\x05\x02\x02\x00", 4},
        {"\x05\x04\x80\xfe\x03\x00", 6},
        {"\x05\x03\x00\x00\x00", 5},
        {"\x05\x02\xff\x00", 4},
    };
    for (size_t i = 0; i < sizeof(greetings) / sizeof(greetings[0]); i++) {
        shape.greeting = (const uint8_t *)greetings[i].bytes;
        shape.greeting_len = greetings[i].len;
        check_shape(&shape);
    }
    /* All 255 methods. */
    uint8_t all[SOCKS5_GREETING_MAX];
    all[0] = 5;
    all[1] = 255;
    for (size_t i = 0; i < 255; i++)
        all[2 + i] = (uint8_t)(255 - i); /* 0xff .. 0x01: no 0x00 yet */
    all[256] = 0x00;                     /* replaces 0x01 at the very end */
    shape.greeting = all;
    shape.greeting_len = sizeof(all);
    assert_int_equal(sizeof(all), 257);
    check_shape(&shape);
}

static void
test_pipelined_data_is_left_for_the_caller(void **state)
{
    (void)state;
    const struct shape shape = {
        "pipelined", BYTES(GREETING_NO_AUTH),
        BYTES("\x05\x01\x00\x03\x02pg\x00\x50"),
        SOCKS5_ATYP_DOMAIN, "pg", 80,
    };
    const char http[] = "GET / HTTP/1.1\r\nHost: pg\r\n\r\n";
    size_t whole = shape.greeting_len + shape.request_len;
    for (size_t chunk = 1; chunk <= whole + sizeof(http); chunk++)
        assert_int_equal(run_chunked(&shape, (const uint8_t *)http, sizeof(http) - 1, chunk),
                         whole);

    /* One read holding the request and data: used stops at the request. */
    struct socks5_session s;
    socks5_session_init(&s);
    size_t used;
    assert_int_equal(socks5_feed(&s, BYTES(GREETING_NO_AUTH), &used, NULL), SOCKS5_REPLY_READY);
    uint8_t buf[64];
    memcpy(buf, shape.request, shape.request_len);
    memcpy(buf + shape.request_len, http, sizeof(http) - 1);
    assert_int_equal(socks5_feed(&s, buf, shape.request_len + sizeof(http) - 1, &used, NULL),
                     SOCKS5_REQUEST_READY);
    assert_int_equal(used, shape.request_len);
    assert_memory_equal(buf + used, "GET / ", 6);
    /* No more input, also after the reply. */
    assert_int_equal(socks5_feed(&s, buf + used, 4, &used, NULL), SOCKS5_REQUEST_READY);
    assert_int_equal(used, 0);
    assert_int_equal(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, NULL, NULL), 0);
    assert_int_equal(socks5_feed(&s, buf, 4, &used, NULL), SOCKS5_REQUEST_READY);
    assert_int_equal(used, 0);
    assert_string_equal(socks5_request(&s)->host, "pg");
}

static void
test_empty_feed_needs_more(void **state)
{
    (void)state;
    struct socks5_session s;
    socks5_session_init(&s);
    size_t used = 7;
    assert_int_equal(socks5_feed(&s, NULL, 0, &used, NULL), SOCKS5_NEED_MORE);
    assert_int_equal(used, 0);
    expect_no_output(&s);
    assert_null(socks5_request(&s));
}

/* ---- errors ----------------------------------------------------------- */

struct bad {
    const char *name;
    const char *bytes;
    size_t len;
    size_t used;        /* where the parser stops: the offending byte, included */
    const char *reply;  /* everything pending at the end, greeting answer included */
    size_t reply_len;
    const char *reason; /* the whole error message */
};

#define REPLY_FAIL(code) "\x05\x00" "\x05" code "\x00\x01\x00\x00\x00\x00\x00\x00", 12

static void
check_bad(const struct bad *bad, size_t chunk)
{
    struct socks5_session s;
    socks5_session_init(&s);
    struct ztr_err err = {0};
    size_t offset = 0;
    enum socks5_status st = SOCKS5_NEED_MORE;
    while (offset < bad->len) {
        size_t n = bad->len - offset < chunk ? bad->len - offset : chunk;
        size_t used;
        st = socks5_feed(&s, (const uint8_t *)bad->bytes + offset, n, &used, &err);
        assert_true(used <= n);
        offset += used;
        if (st == SOCKS5_ERROR)
            break;
        if (st == SOCKS5_REQUEST_READY)
            fail_msg("%s: accepted", bad->name);
    }
    if (st != SOCKS5_ERROR)
        fail_msg("%s (chunk %zu): no error after %zu bytes", bad->name, chunk, offset);
    if (offset != bad->used)
        fail_msg("%s (chunk %zu): stopped at %zu, want %zu", bad->name, chunk, offset, bad->used);
    assert_int_equal(err.code, ZTR_E_INVALID);
    if (strcmp(err.msg, bad->reason) != 0)
        fail_msg("%s: \"%s\", want \"%s\"", bad->name, err.msg, bad->reason);
    const uint8_t *out;
    size_t out_len;
    socks5_pending_output(&s, &out, &out_len);
    if (out_len != bad->reply_len || memcmp(out, bad->reply, out_len) != 0)
        fail_msg("%s: %zu reply bytes, want %zu", bad->name, out_len, bad->reply_len);
    /* Failed for good: nothing more is taken and no reply can follow. */
    size_t used = 9;
    struct ztr_err again = {0};
    assert_int_equal(socks5_feed(&s, (const uint8_t *)"\x05", 1, &used, &again), SOCKS5_ERROR);
    assert_int_equal(used, 0);
    assert_string_equal(again.msg, "socks5: input after the handshake failed");
    assert_null(socks5_request(&s));
    assert_int_equal(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, NULL, &again), -1);
    assert_string_equal(again.msg, "socks5: reply after the handshake failed");
    socks5_pending_output(&s, &out, &used);
    assert_int_equal(used, bad->reply_len);
}

static void
test_errors_have_reply_codes_and_reasons(void **state)
{
    (void)state;
    const struct bad cases[] = {
        {"socks4 greeting", "\x04\x01\x00\x50\x7f\x00\x00\x01\x00", 9, 1, "", 0,
         "socks5: greeting version 4, want 5 (a SOCKS4 client)"},
        {"http", "GET / HTTP/1.1\r\n", 16, 1, "", 0,
         "socks5: greeting version 71, want 5 (looks like text, e.g. HTTP, not SOCKS)"},
        {"version 0", "\x00\x01\x00", 3, 1, "", 0, "socks5: greeting version 0, want 5"},
        {"zero methods", "\x05\x00\x05\x01\x00", 5, 2, "\x05\xff", 2,
         "socks5: greeting offers no methods"},
        {"username/password only", "\x05\x01\x02", 3, 3, "\x05\xff", 2,
         "socks5: no acceptable authentication method (client offers 0x02; only 0x00 \"no "
         "authentication required\" is supported)"},
        {"gssapi and username/password", "\x05\x03\x02\x01\x02", 5, 5, "\x05\xff", 2,
         "socks5: no acceptable authentication method (client offers 0x01 0x02; only 0x00 \"no "
         "authentication required\" is supported)"},
        {"ten methods", "\x05\x0a\x0a\x09\x08\x07\x06\x05\x04\x03\x02\x01", 12, 12, "\x05\xff", 2,
         "socks5: no acceptable authentication method (client offers 0x01 0x02 0x03 0x04 0x05 "
         "0x06 0x07 0x08 ...; only 0x00 \"no authentication required\" is supported)"},
        {"request version 4", GREETING_NO_AUTH "\x04\x01\x00\x01", 7, 4, REPLY_FAIL("\x01"),
         "socks5: request version 4, want 5"},
        {"bind", GREETING_NO_AUTH "\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50", 13, 5,
         REPLY_FAIL("\x07"), "socks5: command BIND (0x02) not supported, CONNECT only"},
        {"udp associate", GREETING_NO_AUTH "\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00", 13, 5,
         REPLY_FAIL("\x07"), "socks5: command UDP ASSOCIATE (0x03) not supported, CONNECT only"},
        {"command 0", GREETING_NO_AUTH "\x05\x00\x00\x01", 7, 5, REPLY_FAIL("\x07"),
         "socks5: unknown command 0x00, CONNECT only"},
        {"command 0x09", GREETING_NO_AUTH "\x05\x09\x00\x01", 7, 5, REPLY_FAIL("\x07"),
         "socks5: unknown command 0x09, CONNECT only"},
        {"reserved byte", GREETING_NO_AUTH "\x05\x01\x01\x01\x7f\x00\x00\x01\x00\x50", 13, 6,
         REPLY_FAIL("\x01"), "socks5: reserved byte 0x01, want 0x00"},
        {"address type 0", GREETING_NO_AUTH "\x05\x01\x00\x00", 7, 7, REPLY_FAIL("\x08"),
         "socks5: address type 0x00 not supported"},
        {"address type 2", GREETING_NO_AUTH "\x05\x01\x00\x02\x00", 8, 7, REPLY_FAIL("\x08"),
         "socks5: address type 0x02 not supported"},
        {"address type 0xff", GREETING_NO_AUTH "\x05\x01\x00\xff", 7, 7, REPLY_FAIL("\x08"),
         "socks5: address type 0xff not supported"},
        {"empty domain", GREETING_NO_AUTH "\x05\x01\x00\x03\x00\x00\x50", 10, 8,
         REPLY_FAIL("\x01"), "socks5: empty domain name"},
        {"NUL in domain", GREETING_NO_AUTH "\x05\x01\x00\x03\x06pg\x00" "evl\x00\x50", 16, 11,
         REPLY_FAIL("\x01"), "socks5: domain name has byte 0x00 (printable ASCII only)"},
        {"newline in domain", GREETING_NO_AUTH "\x05\x01\x00\x03\x03pg\n\x00\x50", 13, 11,
         REPLY_FAIL("\x01"), "socks5: domain name has byte 0x0a (printable ASCII only)"},
        {"space in domain", GREETING_NO_AUTH "\x05\x01\x00\x03\x03 pg\x00\x50", 13, 9,
         REPLY_FAIL("\x01"), "socks5: domain name has byte 0x20 (printable ASCII only)"},
        {"DEL in domain", GREETING_NO_AUTH "\x05\x01\x00\x03\x01\x7f\x00\x50", 11, 9,
         REPLY_FAIL("\x01"), "socks5: domain name has byte 0x7f (printable ASCII only)"},
        {"UTF-8 in domain", GREETING_NO_AUTH "\x05\x01\x00\x03\x03\xc3\xa9x\x00\x50", 13, 9,
         REPLY_FAIL("\x01"), "socks5: domain name has byte 0xc3 (printable ASCII only)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* Each error fires at the same byte however the input is split. */
        for (size_t chunk = 1; chunk <= cases[i].len; chunk++)
            check_bad(&cases[i], chunk);
    }
}

static void
test_greeting_answer_still_unsent_when_request_fails(void **state)
{
    (void)state;
    /* The caller did not flush 05 00 before feeding a BIND: both replies
     * come out in order. Half of 05 00 sent first exercises compaction. */
    struct socks5_session s;
    socks5_session_init(&s);
    size_t used;
    assert_int_equal(socks5_feed(&s, BYTES(GREETING_NO_AUTH), &used, NULL), SOCKS5_REPLY_READY);
    assert_int_equal(socks5_output_sent(&s, 1, NULL), 0);
    struct ztr_err err = {0};
    assert_int_equal(socks5_feed(&s, BYTES("\x05\x02"), &used, &err), SOCKS5_ERROR);
    expect_output(&s, "\x00" "\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00", 11);
}

/* ---- replies ---------------------------------------------------------- */

static void
ready_session(struct socks5_session *s)
{
    socks5_session_init(s);
    size_t used;
    assert_int_equal(socks5_feed(s, BYTES(GREETING_NO_AUTH), &used, NULL), SOCKS5_REPLY_READY);
    expect_output(s, "\x05\x00", 2);
    assert_int_equal(socks5_feed(s, BYTES("\x05\x01\x00\x03\x02pg\x00\x50"), &used, NULL),
                     SOCKS5_REQUEST_READY);
}

static void
test_reply_ipv4_bound_address(void **state)
{
    (void)state;
    struct socks5_session s;
    ready_session(&s);
    struct sockaddr_in sin = {0};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(1080);
    assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr), 1);
    assert_int_equal(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, (const struct sockaddr *)&sin, NULL),
                     0);
    expect_output(&s, "\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38", 10);
    /* The request stays readable after the reply. */
    assert_string_equal(socks5_request(&s)->host, "pg");
    assert_int_equal(socks5_request(&s)->port, 80);
}

static void
test_reply_ipv6_bound_address(void **state)
{
    (void)state;
    struct socks5_session s;
    ready_session(&s);
    struct sockaddr_in6 sin6 = {0};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(443);
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1:2", &sin6.sin6_addr), 1);
    assert_int_equal(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, (const struct sockaddr *)&sin6, NULL),
                     0);
    expect_output(&s,
                  "\x05\x00\x00\x04"
                  "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x02"
                  "\x01\xbb",
                  22);
}

static void
test_reply_codes(void **state)
{
    (void)state;
    const struct {
        int code;
        const char *name;
    } codes[] = {
        {SOCKS5_REP_SUCCEEDED, "succeeded"},
        {SOCKS5_REP_GENERAL_FAILURE, "general SOCKS server failure"},
        {SOCKS5_REP_NOT_ALLOWED, "connection not allowed by ruleset"},
        {SOCKS5_REP_NETWORK_UNREACHABLE, "network unreachable"},
        {SOCKS5_REP_HOST_UNREACHABLE, "host unreachable"},
        {SOCKS5_REP_CONNECTION_REFUSED, "connection refused"},
        {SOCKS5_REP_TTL_EXPIRED, "TTL expired"},
        {SOCKS5_REP_COMMAND_NOT_SUPPORTED, "command not supported"},
        {SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED, "address type not supported"},
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_int_equal(codes[i].code, (int)i);
        assert_string_equal(socks5_reply_name(codes[i].code), codes[i].name);
        struct socks5_session s;
        ready_session(&s);
        /* No bound address: 0.0.0.0:0. */
        assert_int_equal(socks5_reply(&s, codes[i].code, NULL, NULL), 0);
        uint8_t want[10] = {5, (uint8_t)codes[i].code, 0, 1, 0, 0, 0, 0, 0, 0};
        expect_output(&s, want, sizeof(want));
    }
    assert_string_equal(socks5_reply_name(9), "unknown");
    assert_string_equal(socks5_reply_name(-1), "unknown");
    assert_string_equal(socks5_reply_name(0xff), "unknown");
}

static void
test_reply_misuse_is_refused(void **state)
{
    (void)state;
    struct socks5_session s;
    struct ztr_err err = {0};
    /* Before a request (fresh, and after the greeting only). */
    socks5_session_init(&s);
    assert_int_equal(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, NULL, &err), -1);
    assert_string_equal(err.msg, "socks5: reply before a request");
    size_t used;
    assert_int_equal(socks5_feed(&s, BYTES(GREETING_NO_AUTH), &used, NULL), SOCKS5_REPLY_READY);
    assert_int_equal(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, NULL, &err), -1);
    expect_output(&s, "\x05\x00", 2);

    /* Codes outside 0x00..0x08 and foreign families queue nothing. */
    ready_session(&s);
    assert_int_equal(socks5_reply(&s, 9, NULL, &err), -1);
    assert_string_equal(err.msg, "socks5: reply code 9 outside 0x00..0x08");
    assert_int_equal(socks5_reply(&s, -1, NULL, &err), -1);
    struct sockaddr_un sun = {0};
    sun.sun_family = AF_UNIX;
    assert_int_equal(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, (const struct sockaddr *)&sun, &err),
                     -1);
    assert_string_equal(err.msg, "socks5: bound address family 1 not supported");
    expect_no_output(&s);

    /* Once only. */
    assert_int_equal(socks5_reply(&s, SOCKS5_REP_HOST_UNREACHABLE, NULL, &err), 0);
    assert_int_equal(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, NULL, &err), -1);
    assert_string_equal(err.msg, "socks5: already replied");
    expect_output(&s, "\x05\x04\x00\x01\x00\x00\x00\x00\x00\x00", 10);
}

static void
test_output_is_sent_in_pieces(void **state)
{
    (void)state;
    struct socks5_session s;
    ready_session(&s);
    struct sockaddr_in6 sin6 = {0};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_addr = in6addr_loopback;
    assert_int_equal(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, (const struct sockaddr *)&sin6, NULL),
                     0);
    const uint8_t *out;
    size_t len;
    assert_int_equal(socks5_pending_output(&s, &out, &len), 22);
    uint8_t got[22];
    size_t have = 0;
    struct ztr_err err = {0};
    /* More than pending is a caller bug and changes nothing. */
    assert_int_equal(socks5_output_sent(&s, 23, &err), -1);
    assert_string_equal(err.msg, "socks5: 23 bytes sent of 22 pending");
    while (socks5_pending_output(&s, &out, &len) > 0) {
        size_t n = len < 5 ? len : 5; /* a short write() */
        memcpy(got + have, out, n);
        have += n;
        assert_int_equal(socks5_output_sent(&s, n, NULL), 0);
    }
    assert_int_equal(have, 22);
    assert_memory_equal(got, "\x05\x00\x00\x04", 4);
    assert_int_equal(got[19], 1);
    assert_int_equal(socks5_output_sent(&s, 0, NULL), 0);
    assert_int_equal(socks5_output_sent(&s, 1, &err), -1);
}

/* A client that pipelines greeting and request and never reads the method
 * selection before the final reply: the largest output the session holds. */
static void
test_output_holds_method_selection_and_reply(void **state)
{
    (void)state;
    struct socks5_session s;
    socks5_session_init(&s);
    const uint8_t both[] = "\x05\x01\x00" "\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x50";
    size_t used, off = 0;
    assert_int_equal(socks5_feed(&s, both, sizeof(both) - 1, &used, NULL), SOCKS5_REPLY_READY);
    off += used;
    assert_int_equal(socks5_feed(&s, both + off, sizeof(both) - 1 - off, &used, NULL),
                     SOCKS5_REQUEST_READY);
    struct sockaddr_in6 sin6 = {0};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(1);
    assert_int_equal(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, (const struct sockaddr *)&sin6, NULL),
                     0);
    const uint8_t *out;
    size_t len;
    assert_int_equal(socks5_pending_output(&s, &out, &len), SOCKS5_OUTPUT_MAX);
    assert_memory_equal(out, "\x05\x00\x05\x00\x00\x04", 6);
    assert_memory_equal(out + 22, "\x00\x01", 2);
}

/* ---- a real client: curl ---------------------------------------------- */

static bool
have_curl(void)
{
    return test_sh("command -v curl >/dev/null 2>&1") == 0;
}

static void
send_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static void
flush_output(int fd, struct socks5_session *s)
{
    const uint8_t *out;
    size_t len;
    if (socks5_pending_output(s, &out, &len) == 0)
        return;
    send_all(fd, out, len);
    assert_int_equal(socks5_output_sent(s, len, NULL), 0);
}

/* Reads with a timeout so a client that never comes cannot hang the test. */
static ssize_t
recv_some(int fd, void *buf, size_t cap)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, 10000) != 1)
        fail_msg("no data from curl within 10 s");
    ssize_t n;
    do {
        n = recv(fd, buf, cap, 0);
    } while (n < 0 && errno == EINTR);
    return n;
}

struct curl_result {
    struct socks5_request request;
    int exit_status;
    char output[1024];
};

/* Serves one SOCKS5 connection from curl (proxy 127.0.0.1, a kernel-chosen
 * port) with this parser; answers reply_code, and on success plays an HTTP
 * server answering "ok". proxy_option is --socks5 or --socks5-hostname. */
static void
curl_through(const char *proxy_option, const char *url, int reply_code,
             struct curl_result *result)
{
    struct ztr_err err = {0};
    int listener = -1;
    if (net_listen("127.0.0.1:0", 1, &listener, &err) != 0)
        fail_msg("%s", err.msg);
    char command[512];
    /* No proxy variables: NO_PROXY could send curl around the proxy. */
    snprintf(command, sizeof(command),
             "env -u NO_PROXY -u no_proxy -u ALL_PROXY -u all_proxy -u http_proxy "
             "curl -sS --max-time 10 %s 127.0.0.1:%u '%s' 2>&1",
             proxy_option, (unsigned)net_local_port(listener), url);
    FILE *curl = popen(command, "r");
    assert_non_null(curl);

    struct pollfd pfd = {listener, POLLIN, 0};
    if (poll(&pfd, 1, 10000) != 1)
        fail_msg("curl did not connect within 10 s");
    int fd = accept(listener, NULL, NULL);
    assert_true(fd >= 0);
    close(listener);

    struct socks5_session s;
    socks5_session_init(&s);
    uint8_t buf[1024];
    size_t have = 0, off = 0;
    enum socks5_status st = SOCKS5_NEED_MORE;
    while (st != SOCKS5_REQUEST_READY) {
        if (off == have) {
            ssize_t n = recv_some(fd, buf, sizeof(buf));
            if (n <= 0)
                fail_msg("curl closed during the handshake");
            have = (size_t)n;
            off = 0;
        }
        size_t used;
        st = socks5_feed(&s, buf + off, have - off, &used, &err);
        off += used;
        flush_output(fd, &s);
        if (st == SOCKS5_ERROR)
            fail_msg("curl's handshake rejected: %s", err.msg);
    }
    result->request = *socks5_request(&s);

    struct sockaddr_storage local;
    socklen_t local_len = sizeof(local);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&local, &local_len), 0);
    assert_int_equal(socks5_reply(&s, reply_code, (const struct sockaddr *)&local, &err), 0);
    flush_output(fd, &s);

    if (reply_code == SOCKS5_REP_SUCCEEDED) {
        /* The relayed stream: read curl's request to its blank line (any
         * bytes the parser left are its start), then answer. */
        char http[2048];
        size_t http_len = have - off;
        memcpy(http, buf + off, http_len);
        http[http_len] = '\0';
        while (strstr(http, "\r\n\r\n") == NULL) {
            ssize_t n = recv_some(fd, http + http_len, sizeof(http) - 1 - http_len);
            if (n <= 0)
                fail_msg("curl closed before its HTTP request ended");
            http_len += (size_t)n;
            http[http_len] = '\0';
        }
        assert_non_null(strstr(http, "GET / HTTP/1.1\r\n"));
        const char response[] =
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        send_all(fd, response, sizeof(response) - 1);
    }
    close(fd);

    size_t out_len = fread(result->output, 1, sizeof(result->output) - 1, curl);
    result->output[out_len] = '\0';
    int status = pclose(curl);
    result->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_curl_socks5_hostname(void **state)
{
    (void)state;
    if (!have_curl())
        skip();
    struct curl_result r;
    curl_through("--socks5-hostname", "http://pg/", SOCKS5_REP_SUCCEEDED, &r);
    assert_int_equal(r.request.atyp, SOCKS5_ATYP_DOMAIN);
    assert_string_equal(r.request.host, "pg");
    assert_int_equal(r.request.port, 80);
    assert_string_equal(r.output, "ok");
    assert_int_equal(r.exit_status, 0);
}

static void
test_curl_socks5_ipv4_and_ipv6(void **state)
{
    (void)state;
    if (!have_curl())
        skip();
    /* --socks5 resolves locally; numeric hosts go out as ATYP 1 / 4. */
    struct curl_result r;
    curl_through("--socks5", "http://10.1.2.3:5432/", SOCKS5_REP_SUCCEEDED, &r);
    assert_int_equal(r.request.atyp, SOCKS5_ATYP_IPV4);
    assert_string_equal(r.request.host, "10.1.2.3");
    assert_int_equal(r.request.port, 5432);
    assert_string_equal(r.output, "ok");
    assert_int_equal(r.exit_status, 0);

    curl_through("--socks5", "http://[2001:db8::7]:8443/", SOCKS5_REP_SUCCEEDED, &r);
    assert_int_equal(r.request.atyp, SOCKS5_ATYP_IPV6);
    assert_string_equal(r.request.host, "2001:db8::7");
    assert_int_equal(r.request.port, 8443);
    assert_string_equal(r.output, "ok");
    assert_int_equal(r.exit_status, 0);
}

static void
test_curl_sees_not_allowed(void **state)
{
    (void)state;
    if (!have_curl())
        skip();
    struct curl_result r;
    curl_through("--socks5-hostname", "http://secret:22/", SOCKS5_REP_NOT_ALLOWED, &r);
    assert_string_equal(r.request.host, "secret");
    assert_int_equal(r.request.port, 22);
    /* 97 is CURLE_PROXY; curl 7.88 shows the REP value in its message:
     * "Can't complete SOCKS5 connection to secret. (2)". */
    assert_int_equal(r.exit_status, 97);
    if (strstr(r.output, "SOCKS5 connection to secret. (2)") == NULL)
        fail_msg("curl said: %s", r.output);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_ipv4),
        cmocka_unit_test(test_connect_ipv6),
        cmocka_unit_test(test_connect_domain),
        cmocka_unit_test(test_connect_domain_of_255_bytes),
        cmocka_unit_test(test_greeting_shapes),
        cmocka_unit_test(test_pipelined_data_is_left_for_the_caller),
        cmocka_unit_test(test_empty_feed_needs_more),
        cmocka_unit_test(test_errors_have_reply_codes_and_reasons),
        cmocka_unit_test(test_greeting_answer_still_unsent_when_request_fails),
        cmocka_unit_test(test_reply_ipv4_bound_address),
        cmocka_unit_test(test_reply_ipv6_bound_address),
        cmocka_unit_test(test_reply_codes),
        cmocka_unit_test(test_reply_misuse_is_refused),
        cmocka_unit_test(test_output_is_sent_in_pieces),
        cmocka_unit_test(test_output_holds_method_selection_and_reply),
        cmocka_unit_test(test_curl_socks5_hostname),
        cmocka_unit_test(test_curl_socks5_ipv4_and_ipv6),
        cmocka_unit_test(test_curl_sees_not_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
