/*
 * The server side of a SOCKS5 handshake (RFC 1928) for the tunneler's SOCKS5
 * front end: CONNECT only, and only the "no authentication required" method
 * (the listener is bound to loopback; identity is the tunneler's, not the
 * local client's). This module is the protocol only and does no I/O: bytes
 * from the client go in through socks5_feed(), bytes for the client come out
 * of socks5_pending_output(), and the caller does the reading, writing and
 * closing.
 *
 *   client → greeting  VER=5 NMETHODS METHODS[NMETHODS]
 *   server → method    VER=5 METHOD (0x00, or 0xFF: none acceptable)
 *   client → request   VER=5 CMD RSV=0 ATYP DST.ADDR DST.PORT
 *   server → reply     VER=5 REP RSV=0 ATYP BND.ADDR BND.PORT
 *
 * A session is caller-allocated (embed it in the connection) and owns no
 * memory, so there is nothing to free. It never holds more than one field of
 * the message being parsed: method lists are checked as they stream past,
 * the request's address goes straight into the parsed request, and the
 * output buffer is fixed at SOCKS5_OUTPUT_MAX bytes. A message can therefore
 * never be larger than RFC 1928 allows (2+255 greeting, 4+1+255+2 request).
 *
 * Typical use, after each read() of n bytes into buf:
 *
 *     size_t off = 0, used;
 *     for (;;) {
 *         enum socks5_status st = socks5_feed(s, buf + off, n - off, &used, &err);
 *         off += used;
 *         // write socks5_pending_output() to the client whenever it is
 *         // non-empty, then socks5_output_sent()
 *         if (st == SOCKS5_REPLY_READY) continue;   // method chosen; request may follow
 *         if (st == SOCKS5_NEED_MORE) break;        // read more
 *         if (st == SOCKS5_REQUEST_READY) ...       // open a stream to socks5_request();
 *                                                   // buf[off..n) is the client's first data
 *         if (st == SOCKS5_ERROR) ...               // log err, flush the reply, close
 *     }
 *
 * Once the stream attempt is decided, socks5_reply() queues the final reply;
 * after a failure code the caller flushes it and closes the connection (RFC
 * 1928 §6), after SOCKS5_REP_SUCCEEDED the connection becomes the relayed
 * byte stream.
 */
#ifndef ZTR_TUNNELER_SOCKS5_H
#define ZTR_TUNNELER_SOCKS5_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/err.h"

#define SOCKS5_VERSION 5
#define SOCKS5_GREETING_MAX (2 + 255)
#define SOCKS5_REQUEST_MAX (4 + 1 + 255 + 2)
/* Longest reply we build: IPv6 bound address (4 + 16 + 2). */
#define SOCKS5_REPLY_MAX (4 + 16 + 2)
/* The method selection may still be unsent when the final reply is queued
 * (a client that pipelines its greeting and request). */
#define SOCKS5_OUTPUT_MAX (2 + SOCKS5_REPLY_MAX)
/* A domain name is at most 255 bytes on the wire; host[] adds the NUL. */
#define SOCKS5_HOST_MAX 255

enum socks5_method {
    SOCKS5_METHOD_NO_AUTH = 0x00,
    SOCKS5_METHOD_NONE_ACCEPTABLE = 0xFF,
};

enum socks5_command {
    SOCKS5_CMD_CONNECT = 0x01,
    SOCKS5_CMD_BIND = 0x02,
    SOCKS5_CMD_UDP_ASSOCIATE = 0x03,
};

enum socks5_atyp {
    SOCKS5_ATYP_IPV4 = 0x01,
    SOCKS5_ATYP_DOMAIN = 0x03,
    SOCKS5_ATYP_IPV6 = 0x04,
};

/* REP values (RFC 1928 §6). Mapping the tunneler's failures onto them is the
 * tunneler's job; the comments say what each is used for in ztr. */
enum socks5_reply_code {
    SOCKS5_REP_SUCCEEDED = 0x00,
    SOCKS5_REP_GENERAL_FAILURE = 0x01,         /* malformed request, internal errors */
    SOCKS5_REP_NOT_ALLOWED = 0x02,             /* resource / tunneler not allowed */
    SOCKS5_REP_NETWORK_UNREACHABLE = 0x03,     /* no connector reachable */
    SOCKS5_REP_HOST_UNREACHABLE = 0x04,        /* unknown resource, target unreachable */
    SOCKS5_REP_CONNECTION_REFUSED = 0x05,      /* the target refused the connection */
    SOCKS5_REP_TTL_EXPIRED = 0x06,             /* timed out */
    SOCKS5_REP_COMMAND_NOT_SUPPORTED = 0x07,   /* BIND, UDP ASSOCIATE, unknown */
    SOCKS5_REP_ADDRESS_TYPE_NOT_SUPPORTED = 0x08,
};

/* What socks5_feed() reached. SOCKS5_ERROR is -1, so `< 0` means failure as
 * everywhere else in the tree. */
enum socks5_status {
    SOCKS5_ERROR = -1,         /* err says why; a reply may be pending (see below) */
    SOCKS5_NEED_MORE = 0,      /* all input consumed; the message is incomplete */
    SOCKS5_REPLY_READY = 1,    /* greeting accepted; the method selection is pending */
    SOCKS5_REQUEST_READY = 2,  /* a CONNECT request is parsed: socks5_request() */
};

/* A parsed CONNECT request. host is NUL-terminated text: a dotted quad for
 * IPv4, RFC 5952 text without brackets for IPv6 ("2001:db8::1"), or the
 * domain name exactly as sent (1..255 printable ASCII bytes, not lower-cased,
 * no trailing-dot handling). addr holds the raw address for IPv4 (4 bytes)
 * and IPv6 (16 bytes). port is in host byte order, passed on as sent (0
 * included: it names no resource, so the tunneler's lookup refuses it). */
struct socks5_request {
    enum socks5_atyp atyp;
    char host[SOCKS5_HOST_MAX + 1];
    uint8_t addr[16];
    uint16_t port;
};

/* Private: read the session only through the functions below. */
struct socks5_session {
    int state;                 /* enum in socks5.c */
    uint8_t field_len;         /* methods left / address bytes expected */
    uint8_t field_have;        /* bytes of the current field seen */
    uint8_t offered[32];       /* bitmap of the methods the greeting listed */
    uint8_t out[SOCKS5_OUTPUT_MAX];
    uint8_t out_start;         /* first unsent byte */
    uint8_t out_len;           /* unsent bytes from out_start */
    struct socks5_request request;
};

void socks5_session_init(struct socks5_session *session);

/* Consumes client bytes from data; *used says how many (≤ len). Returns:
 *
 *  SOCKS5_NEED_MORE      everything was used; call again with more bytes.
 *  SOCKS5_REPLY_READY    the greeting ended at data + *used and offered
 *                        method 0x00; the method selection (05 00) is
 *                        pending. Feed the remaining bytes (a client may send
 *                        its request without waiting).
 *  SOCKS5_REQUEST_READY  a CONNECT request ended at data + *used;
 *                        socks5_request() has it. Bytes after it are the
 *                        client's stream data and are left to the caller.
 *                        The session takes no more input: later calls use 0
 *                        bytes and return SOCKS5_REQUEST_READY again.
 *  SOCKS5_ERROR          err (ZTR_E_INVALID) names the offending field;
 *                        *used includes the offending byte. The reply the
 *                        client should see is pending: 05 FF for a greeting
 *                        without method 0x00 (or with none at all), a reply
 *                        with REP 0x07 for BIND / UDP ASSOCIATE / unknown
 *                        commands, 0x08 for an unknown address type, 0x01
 *                        for anything else malformed in a request. A greeting
 *                        whose version is not 5 gets no reply: the peer does
 *                        not speak SOCKS5 and would misread one. The caller
 *                        flushes what is pending and closes. Later calls use
 *                        0 bytes and fail again.
 *
 * Fields are checked as soon as their byte arrives, so a bad request fails
 * without waiting for the rest of it. */
enum socks5_status socks5_feed(struct socks5_session *session, const uint8_t *data, size_t len,
                               size_t *used, struct ztr_err *err);

/* The parsed request once socks5_feed() returned SOCKS5_REQUEST_READY (and
 * after socks5_reply()); NULL before. Points into the session. */
const struct socks5_request *socks5_request(const struct socks5_session *session);

/* Bytes to write to the client; *data points into the session and stays
 * valid until the next call that changes it. Returns *len (0: nothing). */
size_t socks5_pending_output(const struct socks5_session *session, const uint8_t **data,
                             size_t *len);

/* n of the pending bytes were written. Fails if n exceeds what is pending. */
int socks5_output_sent(struct socks5_session *session, size_t n, struct ztr_err *err);

/* Queues the final reply after SOCKS5_REQUEST_READY, once: code is the
 * outcome of the stream attempt (enum socks5_reply_code, 0x00..0x08), bound
 * the address to report as BND.ADDR/BND.PORT (AF_INET or AF_INET6; NULL sends
 * 0.0.0.0:0, the usual choice for failures and for a relay whose outgoing
 * socket is not the client's business). Fails, queueing nothing, before a
 * request, on a second call, after an error, or for another code or family. */
int socks5_reply(struct socks5_session *session, int code, const struct sockaddr *bound,
                 struct ztr_err *err);

/* "succeeded", "connection not allowed by ruleset", ... for logs; "unknown"
 * outside 0x00..0x08. */
const char *socks5_reply_name(int code);

#endif
