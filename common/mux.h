/*
 * The data-plane session protocol: many streams over one mTLS session
 * between a tunneler and a connector (ALPN ztr-data/1). This module is the
 * protocol only — framing, stream states, credit-based flow control — and
 * does no I/O: bytes from the TLS connection go in through mux_input(),
 * bytes for it come out through the write callback, and stream events go to
 * the owner's callbacks. docs/PROTOCOL.md describes the wire format.
 *
 * Frame: 1-byte type, 1-byte flags, 4-byte big-endian stream id, 2-byte
 * big-endian payload length (≤ MUX_MAX_PAYLOAD = 16 KiB), payload.
 *
 *   OPEN     (stream, payload = resource name)      opener → acceptor
 *   OPEN_OK  (stream)                               acceptor → opener
 *   DATA     (stream, payload = bytes)              both
 *   WINDOW   (stream or 0 for the session, payload = 4-byte credit increment)
 *   FIN      (stream)  no more DATA from the sender (half-close)
 *   RST      (stream, payload = 2-byte code + reason text)
 *   PING     (stream 0, payload = 8 bytes)          PONG echoes them
 *   GOAWAY   (stream 0, payload = 2-byte code + reason text)
 *
 * Flow control: each stream and the session start with `window` bytes of
 * send credit (default 256 KiB) in each direction. DATA spends credit on
 * both the stream and the session; the receiver returns credit with WINDOW
 * once the owner has consumed bytes (mux_consumed). A sender never exceeds
 * its credit, so a slow reader stops its writer and nothing buffers without
 * bound. A peer that sends beyond the credit it was given, a malformed frame,
 * an unknown stream or a payload over the limit is a protocol error: the
 * session fails with a reason (never a crash).
 *
 * Stream ids: the opener (tunneler) uses odd ids, increasing; the acceptor
 * never opens streams. At most MUX_MAX_STREAMS open at once per session.
 */
#ifndef ZTR_COMMON_MUX_H
#define ZTR_COMMON_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

#define MUX_HEADER_SIZE 8
#define MUX_MAX_PAYLOAD 16384
#define MUX_DEFAULT_WINDOW (256 * 1024)
#define MUX_MAX_STREAMS 4096
#define MUX_REASON_MAX 256

enum mux_frame_type {
    MUX_OPEN = 1,
    MUX_OPEN_OK = 2,
    MUX_DATA = 3,
    MUX_WINDOW = 4,
    MUX_FIN = 5,
    MUX_RST = 6,
    MUX_PING = 7,
    MUX_PONG = 8,
    MUX_GOAWAY = 9,
};

/* RST / GOAWAY codes. */
enum mux_code {
    MUX_CODE_NORMAL = 0,
    MUX_CODE_NOT_ALLOWED = 1,      /* "tunneler not allowed" / resource not allowed */
    MUX_CODE_UNKNOWN_RESOURCE = 2,
    MUX_CODE_CONNECT_FAILED = 3,   /* the connector could not reach the target */
    MUX_CODE_PROTOCOL_ERROR = 4,
    MUX_CODE_REFUSED = 5,          /* stream limit, shutting down */
    MUX_CODE_INTERNAL = 6,
};

enum mux_role { MUX_OPENER, MUX_ACCEPTOR };

struct mux;

struct mux_callbacks {
    /* Frames to send, already encoded; the owner writes them to the TLS
     * connection (returns 0, or -1 if it cannot take them: the session
     * fails). */
    int (*write)(void *user, const uint8_t *data, size_t len);
    /* Acceptor: a peer asks for a stream to resource. Answer later with
     * mux_accept() or mux_reset(). */
    void (*on_open)(void *user, uint32_t stream, const char *resource);
    /* Opener: the peer accepted the stream. */
    void (*on_open_ok)(void *user, uint32_t stream);
    /* Bytes for a stream; the owner calls mux_consumed() once it has passed
     * them on (that is what returns credit to the sender). */
    void (*on_data)(void *user, uint32_t stream, const uint8_t *data, size_t len);
    /* The peer half-closed the stream (no more data from it). */
    void (*on_fin)(void *user, uint32_t stream);
    /* The stream is gone (RST from the peer, or both sides finished);
     * code/reason say why. The id is free again after this. */
    void (*on_stream_closed)(void *user, uint32_t stream, enum mux_code code,
                             const char *reason);
    /* Send credit became available for a stream that had run out. */
    void (*on_writable)(void *user, uint32_t stream);
    /* PONG arrived: round-trip time in ms. */
    void (*on_pong)(void *user, int64_t rtt_ms);
    /* The session is over (GOAWAY from the peer, or a protocol error here);
     * no callbacks follow. */
    void (*on_session_closed)(void *user, enum mux_code code, const char *reason);
};

struct mux_config {
    enum mux_role role;
    uint32_t window;            /* initial credit per stream and per session; 0 = default */
    uint32_t max_streams;       /* 0 = MUX_MAX_STREAMS */
    int64_t (*now_ms)(void *user);  /* monotonic clock for PING RTTs */
};

int mux_new(const struct mux_config *config, const struct mux_callbacks *callbacks, void *user,
            struct mux **out, struct ztr_err *err);
void mux_free(struct mux *mux);

/* Feeds bytes read from the TLS connection; returns -1 after a protocol
 * error (on_session_closed has run). Bounded: it never buffers more than
 * one partial frame. */
int mux_input(struct mux *mux, const uint8_t *data, size_t len);

/* Opener: a new stream to resource; *stream receives its id. */
int mux_open(struct mux *mux, const char *resource, uint32_t *stream, struct ztr_err *err);
/* Acceptor: the target is connected. */
int mux_accept(struct mux *mux, uint32_t stream, struct ztr_err *err);

/* Sends up to len bytes within the stream's and the session's credit;
 * returns how many were taken (0 when out of credit: wait for on_writable),
 * or -1 if the stream cannot send (closed, half-closed). Splits into
 * frames of at most MUX_MAX_PAYLOAD. */
ssize_t mux_send(struct mux *mux, uint32_t stream, const uint8_t *data, size_t len);
/* Credit the sender may use again: call after passing on_data bytes on. */
void mux_consumed(struct mux *mux, uint32_t stream, size_t len);
int mux_fin(struct mux *mux, uint32_t stream);
int mux_reset(struct mux *mux, uint32_t stream, enum mux_code code, const char *reason);
int mux_ping(struct mux *mux);
/* Sends GOAWAY (code, reason) and ends the session. */
int mux_goaway(struct mux *mux, enum mux_code code, const char *reason);

size_t mux_stream_count(const struct mux *mux);
/* Send credit left on a stream (for tests and /metrics). */
uint32_t mux_send_credit(const struct mux *mux, uint32_t stream);

#endif
