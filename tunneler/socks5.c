#include "tunneler/socks5.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/bytes.h"

/* One state per field of the two client messages, read top to bottom. Each
 * byte moves at most one state forward; no state looks back at earlier
 * bytes, so nothing but the current field needs keeping. */
enum state {
    GREET_VERSION,   /* VER */
    GREET_NMETHODS,  /* NMETHODS */
    GREET_METHODS,   /* METHODS, field_len left */
    REQ_VERSION,     /* VER */
    REQ_COMMAND,     /* CMD */
    REQ_RESERVED,    /* RSV */
    REQ_ATYP,        /* ATYP */
    REQ_DOMAIN_LEN,  /* the length octet of a domain name */
    REQ_ADDRESS,     /* DST.ADDR, field_len bytes */
    REQ_PORT,        /* DST.PORT, 2 bytes */
    READY,           /* request parsed; waiting for socks5_reply() */
    REPLIED,         /* final reply queued */
    FAILED,          /* error reply (if any) queued */
};

/* The methods a refused greeting offered, for the error text: at most this
 * many are listed (255 would not fit a ztr_err). */
#define LISTED_METHODS_MAX 8

void
socks5_session_init(struct socks5_session *session)
{
    memset(session, 0, sizeof(*session));
    session->state = GREET_VERSION;
}

/* Appends to the output buffer, first moving unsent bytes to the front. The
 * protocol bounds what can be queued (one method selection, then one reply),
 * so running out of room is a bug in this file, reported rather than
 * overflowing. */
static int
output_append(struct socks5_session *session, const uint8_t *bytes, size_t n,
              struct ztr_err *err)
{
    if (session->out_start > 0) {
        memmove(session->out, session->out + session->out_start, session->out_len);
        session->out_start = 0;
    }
    struct bytes_writer w;
    bytes_writer_init(&w, session->out + session->out_len,
                      sizeof(session->out) - session->out_len);
    if (bytes_write(&w, bytes, n) != 0)
        return ztr_err_set(err, ZTR_E_LIMIT, "socks5: %zu reply bytes do not fit the %zu left",
                           n, sizeof(session->out) - session->out_len);
    session->out_len = (uint8_t)(session->out_len + n);
    return 0;
}

/* VER REP RSV ATYP BND.ADDR BND.PORT; addr is 4 or 16 bytes, port in network
 * byte order as it sits in a sockaddr. */
static int
queue_reply(struct socks5_session *session, uint8_t code, uint8_t atyp, const void *addr,
            size_t addr_len, uint16_t port_be, struct ztr_err *err)
{
    uint8_t reply[SOCKS5_REPLY_MAX];
    struct bytes_writer w;
    bytes_writer_init(&w, reply, sizeof(reply));
    (void)bytes_write_u8(&w, SOCKS5_VERSION);
    (void)bytes_write_u8(&w, code);
    (void)bytes_write_u8(&w, 0x00);
    (void)bytes_write_u8(&w, atyp);
    (void)bytes_write(&w, addr, addr_len);
    (void)bytes_write(&w, &port_be, 2);   /* already in network order */
    if (bytes_writer_failed(&w))
        return ztr_err_set(err, ZTR_E_LIMIT, "socks5: a %zu-byte address does not fit a reply",
                           addr_len);
    return output_append(session, reply, bytes_written(&w), err);
}

static int
queue_method(struct socks5_session *session, uint8_t method, struct ztr_err *err)
{
    uint8_t reply[2];
    struct bytes_writer w;
    bytes_writer_init(&w, reply, sizeof(reply));
    (void)bytes_write_u8(&w, SOCKS5_VERSION);
    (void)bytes_write_u8(&w, method);
    return output_append(session, reply, bytes_written(&w), err);
}

/* Ends the session with a request-phase error: the reply carries code and
 * the unspecified address 0.0.0.0:0, err carries the reason. */
static enum socks5_status fail_request(struct socks5_session *session, uint8_t code,
                                       struct ztr_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum socks5_status
fail_request(struct socks5_session *session, uint8_t code, struct ztr_err *err,
             const char *fmt, ...)
{
    session->state = FAILED;
    static const uint8_t any[4] = {0, 0, 0, 0};
    /* Cannot fail (one method selection + one reply fit), and the reason
     * below is what the operator needs either way. */
    (void)queue_reply(session, code, SOCKS5_ATYP_IPV4, any, sizeof(any), 0, err);
    char reason[ZTR_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    ztr_err_set(err, ZTR_E_INVALID, "%s", reason);
    return SOCKS5_ERROR;
}

/* No offered method is acceptable: 05 FF, then the client closes (§3). The
 * text lists what was offered, since the usual cause is a client configured
 * with a user name and password (0x02). */
static enum socks5_status
fail_methods(struct socks5_session *session, struct ztr_err *err)
{
    session->state = FAILED;
    (void)queue_method(session, SOCKS5_METHOD_NONE_ACCEPTABLE, err);
    char offered[LISTED_METHODS_MAX * 6 + 8] = "";
    size_t used = 0;
    unsigned listed = 0, total = 0;
    for (unsigned m = 0; m < 256; m++) {
        if (!(session->offered[m / 8] & (1u << (m % 8))))
            continue;
        total++;
        if (listed < LISTED_METHODS_MAX) {
            used += (size_t)snprintf(offered + used, sizeof(offered) - used, "%s0x%02x",
                                     listed > 0 ? " " : "", m);
            listed++;
        }
    }
    if (total > listed)
        snprintf(offered + used, sizeof(offered) - used, " ...");
    if (total == 0)
        ztr_err_set(err, ZTR_E_INVALID, "socks5: greeting offers no methods");
    else
        ztr_err_set(err, ZTR_E_INVALID,
                    "socks5: no acceptable authentication method (client offers %s; only 0x00 "
                    "\"no authentication required\" is supported)",
                    offered);
    return SOCKS5_ERROR;
}

static enum socks5_status
fail_greeting_version(struct socks5_session *session, uint8_t version, struct ztr_err *err)
{
    /* No reply: whatever this peer speaks, a SOCKS5 method selection is not
     * it. The hint covers the two usual mistakes. */
    session->state = FAILED;
    const char *hint = "";
    if (version == 4)
        hint = " (a SOCKS4 client)";
    else if (version >= 'A' && version <= 'Z')
        hint = " (looks like text, e.g. HTTP, not SOCKS)";
    ztr_err_set(err, ZTR_E_INVALID, "socks5: greeting version %u, want 5%s", version, hint);
    return SOCKS5_ERROR;
}

/* The address is complete: the text form the tunneler matches resources
 * against. inet_ntop cannot fail for these families and buffer sizes. */
static void
finish_host(struct socks5_request *request, uint8_t len)
{
    if (request->atyp == SOCKS5_ATYP_DOMAIN)
        request->host[len] = '\0';
    else if (request->atyp == SOCKS5_ATYP_IPV4)
        inet_ntop(AF_INET, request->addr, request->host, sizeof(request->host));
    else
        inet_ntop(AF_INET6, request->addr, request->host, sizeof(request->host));
}

/* Stores byte at index i of the address field the request's atyp names.
 * The state machine bounds i by the wire's length byte; this bounds it by
 * the storage, so the two can never disagree into an overflow. */
static int
field_put(struct socks5_request *request, size_t i, uint8_t byte)
{
    uint8_t *field = request->atyp == SOCKS5_ATYP_DOMAIN ? (uint8_t *)request->host
                                                         : request->addr;
    size_t cap = request->atyp == SOCKS5_ATYP_DOMAIN ? SOCKS5_HOST_MAX
                 : request->atyp == SOCKS5_ATYP_IPV4  ? 4
                                                      : sizeof(request->addr);
    if (i >= cap)
        return -1;
    field[i] = byte;
    return 0;
}

/* One client byte. Returns SOCKS5_NEED_MORE to go on with the next byte. */
static enum socks5_status
step(struct socks5_session *session, uint8_t byte, struct ztr_err *err)
{
    struct socks5_request *request = &session->request;
    switch (session->state) {
    case GREET_VERSION:
        if (byte != SOCKS5_VERSION)
            return fail_greeting_version(session, byte, err);
        session->state = GREET_NMETHODS;
        return SOCKS5_NEED_MORE;
    case GREET_NMETHODS:
        if (byte == 0)
            return fail_methods(session, err);
        session->field_len = byte;
        session->state = GREET_METHODS;
        return SOCKS5_NEED_MORE;
    case GREET_METHODS:
        session->offered[byte / 8] |= (uint8_t)(1u << (byte % 8));
        if (--session->field_len > 0)
            return SOCKS5_NEED_MORE;
        if (!(session->offered[0] & 1u))
            return fail_methods(session, err);
        session->state = REQ_VERSION;
        if (queue_method(session, SOCKS5_METHOD_NO_AUTH, err) != 0) {
            session->state = FAILED;
            return SOCKS5_ERROR;
        }
        return SOCKS5_REPLY_READY;
    case REQ_VERSION:
        if (byte != SOCKS5_VERSION)
            return fail_request(session, SOCKS5_REP_GENERAL_FAILURE, err,
                                "socks5: request version %u, want 5", byte);
        session->state = REQ_COMMAND;
        return SOCKS5_NEED_MORE;
    case REQ_COMMAND:
        if (byte == SOCKS5_CMD_BIND)
            return fail_request(session, SOCKS5_REP_COMMAND_NOT_SUPPORTED, err,
                                "socks5: command BIND (0x%02x) not supported, CONNECT only", byte);
        if (byte == SOCKS5_CMD_UDP_ASSOCIATE)
            return fail_request(session, SOCKS5_REP_COMMAND_NOT_SUPPORTED, err,
                                "socks5: command UDP ASSOCIATE (0x%02x) not supported, CONNECT only",
                                byte);
        if (byte != SOCKS5_CMD_CONNECT)
            return fail_request(session, SOCKS5_REP_COMMAND_NOT_SUPPORTED, err,
                                "socks5: unknown command 0x%02x, CONNECT only", byte);
        session->state = REQ_RESERVED;
        return SOCKS5_NEED_MORE;
    case REQ_RESERVED:
        if (byte != 0)
            return fail_request(session, SOCKS5_REP_GENERAL_FAILURE, err,
                                "socks5: reserved byte 0x%02x, want 0x00", byte);
        session->state = REQ_ATYP;
        return SOCKS5_NEED_MORE;
    case REQ_ATYP:
        if (byte == SOCKS5_ATYP_IPV4) {
            session->field_len = 4;
        } else if (byte == SOCKS5_ATYP_IPV6) {
            session->field_len = 16;
        } else if (byte == SOCKS5_ATYP_DOMAIN) {
            request->atyp = SOCKS5_ATYP_DOMAIN;
            session->state = REQ_DOMAIN_LEN;
            return SOCKS5_NEED_MORE;
        } else {
            return fail_request(session, SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED, err,
                                "socks5: address type 0x%02x not supported", byte);
        }
        request->atyp = (enum socks5_atyp)byte;
        session->field_have = 0;
        session->state = REQ_ADDRESS;
        return SOCKS5_NEED_MORE;
    case REQ_DOMAIN_LEN:
        if (byte == 0)
            return fail_request(session, SOCKS5_REP_GENERAL_FAILURE, err,
                                "socks5: empty domain name");
        session->field_len = byte;
        session->field_have = 0;
        session->state = REQ_ADDRESS;
        return SOCKS5_NEED_MORE;
    case REQ_ADDRESS:
        if (request->atyp == SOCKS5_ATYP_DOMAIN) {
            /* host[] becomes a C string the tunneler matches, logs and
             * reports: a NUL would cut it short ("pg\0evil" read as "pg")
             * and control bytes would forge log lines. Real clients send
             * names in ASCII (IDNA names as punycode). */
            if (byte <= 0x20 || byte >= 0x7F)
                return fail_request(session, SOCKS5_REP_GENERAL_FAILURE, err,
                                    "socks5: domain name has byte 0x%02x (printable ASCII only)",
                                    byte);
        }
        if (field_put(request, session->field_have, byte) != 0) {
            ztr_err_set(err, ZTR_E_INVALID, "socks5: address longer than its field");
            session->state = FAILED;
            return SOCKS5_ERROR;
        }
        session->field_have++;
        if (session->field_have < session->field_len)
            return SOCKS5_NEED_MORE;
        finish_host(request, session->field_len);
        session->field_have = 0;
        session->state = REQ_PORT;
        return SOCKS5_NEED_MORE;
    case REQ_PORT:
        request->port = (uint16_t)(request->port << 8 | byte);
        if (++session->field_have < 2)
            return SOCKS5_NEED_MORE;
        session->state = READY;
        return SOCKS5_REQUEST_READY;
    default:
        /* READY, REPLIED and FAILED take no bytes; socks5_feed stops first. */
        ztr_err_set(err, ZTR_E_INVALID, "socks5: byte in state %d", session->state);
        return SOCKS5_ERROR;
    }
}

enum socks5_status
socks5_feed(struct socks5_session *session, const uint8_t *data, size_t len, size_t *used,
            struct ztr_err *err)
{
    *used = 0;
    if (session->state == READY || session->state == REPLIED)
        return SOCKS5_REQUEST_READY;
    if (session->state == FAILED) {
        ztr_err_set(err, ZTR_E_INVALID, "socks5: input after the handshake failed");
        return SOCKS5_ERROR;
    }
    struct bytes_reader in;
    uint8_t byte;
    bytes_reader_init(&in, data, len);
    while (bytes_read_u8(&in, &byte) == 0) {
        enum socks5_status status = step(session, byte, err);
        if (status != SOCKS5_NEED_MORE) {
            *used = bytes_consumed(&in);
            return status;
        }
    }
    *used = bytes_consumed(&in);
    return SOCKS5_NEED_MORE;
}

const struct socks5_request *
socks5_request(const struct socks5_session *session)
{
    if (session->state != READY && session->state != REPLIED)
        return NULL;
    return &session->request;
}

size_t
socks5_pending_output(const struct socks5_session *session, const uint8_t **data, size_t *len)
{
    *data = session->out + session->out_start;
    *len = session->out_len;
    return *len;
}

int
socks5_output_sent(struct socks5_session *session, size_t n, struct ztr_err *err)
{
    if (n > session->out_len)
        return ztr_err_set(err, ZTR_E_INVALID, "socks5: %zu bytes sent of %u pending", n,
                           (unsigned)session->out_len);
    session->out_start = (uint8_t)(session->out_start + n);
    session->out_len = (uint8_t)(session->out_len - n);
    if (session->out_len == 0)
        session->out_start = 0;
    return 0;
}

int
socks5_reply(struct socks5_session *session, int code, const struct sockaddr *bound,
             struct ztr_err *err)
{
    if (session->state != READY)
        return ztr_err_set(err, ZTR_E_INVALID, "socks5: %s",
                           session->state == REPLIED  ? "already replied"
                           : session->state == FAILED ? "reply after the handshake failed"
                                                      : "reply before a request");
    if (code < SOCKS5_REP_SUCCEEDED || code > SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED)
        return ztr_err_set(err, ZTR_E_INVALID, "socks5: reply code %d outside 0x00..0x08", code);
    int rc;
    if (bound == NULL) {
        static const uint8_t any[4] = {0, 0, 0, 0};
        rc = queue_reply(session, (uint8_t)code, SOCKS5_ATYP_IPV4, any, sizeof(any), 0, err);
    } else if (bound->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)bound;
        rc = queue_reply(session, (uint8_t)code, SOCKS5_ATYP_IPV4, &sin->sin_addr, 4,
                         sin->sin_port, err);
    } else if (bound->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)bound;
        rc = queue_reply(session, (uint8_t)code, SOCKS5_ATYP_IPV6, &sin6->sin6_addr, 16,
                         sin6->sin6_port, err);
    } else {
        return ztr_err_set(err, ZTR_E_INVALID, "socks5: bound address family %d not supported",
                           (int)bound->sa_family);
    }
    if (rc != 0)
        return -1;
    session->state = REPLIED;
    return 0;
}

const char *
socks5_reply_name(int code)
{
    static const char *const names[] = {
        [SOCKS5_REP_SUCCEEDED] = "succeeded",
        [SOCKS5_REP_GENERAL_FAILURE] = "general SOCKS server failure",
        [SOCKS5_REP_NOT_ALLOWED] = "connection not allowed by ruleset",
        [SOCKS5_REP_NETWORK_UNREACHABLE] = "network unreachable",
        [SOCKS5_REP_HOST_UNREACHABLE] = "host unreachable",
        [SOCKS5_REP_CONNECTION_REFUSED] = "connection refused",
        [SOCKS5_REP_TTL_EXPIRED] = "TTL expired",
        [SOCKS5_REP_COMMAND_NOT_SUPPORTED] = "command not supported",
        [SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED] = "address type not supported",
    };
    if (code < 0 || code >= (int)(sizeof(names) / sizeof(names[0])))
        return "unknown";
    return names[code];
}
