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
 *   IDENTITY (stream 0, payload = 1..MUX_MAX_PAYLOAD opaque bytes)  both: the
 *            sender's renewed certificate and its proof (data/dsession.c);
 *            the mux only delivers it
 *
 * Flow control: each stream starts with `window` bytes of send credit
 * (default 256 KiB) in each direction, the session with `session_window`;
 * a receiver whose owner drains a window fast grows it (max_window). DATA spends credit on
 * both the stream and the session; the receiver returns credit with WINDOW
 * once the owner has consumed bytes (mux_consumed). A sender never exceeds
 * its credit, so a slow reader stops its writer and nothing buffers without
 * bound. A peer that sends beyond the credit it was given, a malformed frame,
 * an unknown stream or a payload over the limit is a protocol error: the
 * session fails with a reason (never a crash).
 *
 * Stream ids: the opener (tunneler) uses odd ids, increasing; the acceptor
 * never opens streams. At most MUX_MAX_STREAMS open at once per session.
 * Ids are never reused within a session (so a late frame can never be taken
 * for a newer stream's); after 2^31 streams mux_open fails with ZTR_E_LIMIT
 * and the owner opens a new session. Both ends must be configured with the
 * same window (nothing on the wire negotiates it). An OPEN beyond
 * max_streams is answered with RST REFUSED and never reaches on_open.
 *
 * Stream lifecycle. OPEN → the acceptor's owner answers with mux_accept
 * (OPEN_OK) or mux_reset. The opener sends DATA only after OPEN_OK (before
 * it, mux_send returns 0 and on_writable follows OPEN_OK); a mux_fin before
 * OPEN_OK is held and sent right after it. Each side ends its direction with
 * FIN (half-close): mux_send after our FIN fails, DATA after the peer's FIN
 * is a protocol error. The stream closes when both FINs are done, or at once
 * on RST either way; on_stream_closed runs exactly once per stream, also for
 * streams the owner resets or finishes itself (inside that mux call) and for
 * every stream still open when the session ends.
 *
 * RST acknowledgement. The receiver of an RST answers with an RST carrying
 * MUX_FLAG_ACK (code NORMAL); a side that reset a stream on which the peer
 * may still be sending keeps the id reserved (a tombstone, counted against
 * max_streams) until the peer's RST or ACK arrives, and meanwhile discards
 * DATA/FIN/OPEN_OK/WINDOW that crossed its RST — returning that DATA's
 * session credit at once. That is how frames for closed streams can be
 * protocol errors without racing: only WINDOW and RST may arrive for an id
 * both sides consider closed (late credit, a crossing RST).
 *
 * Protocol errors (the session ends with MUX_CODE_PROTOCOL_ERROR, a GOAWAY
 * carrying the reason goes to the peer, and on_session_closed gets the same
 * reason): an unknown frame type or flag; a payload over MUX_MAX_PAYLOAD or
 * of the wrong size for its type (OPEN resource 1..255 bytes without NUL,
 * RST/GOAWAY reason ≤ 255 bytes, WINDOW 4, PING/PONG 8, OPEN_OK/FIN 0); a
 * stream frame on id 0 or a session frame on another; OPEN received by the
 * opener, OPEN_OK received by the acceptor; an even, repeated or
 * non-increasing OPEN id; DATA beyond the stream's or the session's credit;
 * DATA or FIN before OPEN_OK or after the peer's FIN; a frame for a stream
 * never opened, or for a closed one other than WINDOW/RST; a WINDOW of 0 or
 * one taking credit past 2^31-1; an unknown RST/GOAWAY code; an ACK for a
 * stream not reset; a PONG that answers no PING.
 *
 * Callbacks and re-entrancy. Callbacks run synchronously inside mux calls:
 * mux_input, and every call that sends (a write the owner refuses ends the
 * session with MUX_CODE_INTERNAL, running on_stream_closed for each stream
 * and on_session_closed before that call returns). From any callback except
 * write the owner may call mux_open, mux_accept, mux_send, mux_consumed,
 * mux_fin, mux_reset, mux_ping, mux_goaway and the getters; a stream closed
 * from inside a callback gets its on_stream_closed nested, before the call
 * that closed it returns. Once the session is ending — in the
 * on_stream_closed calls that precede on_session_closed, and after — every
 * mux call fails (mux_stream_count is 0). mux_input must not be called
 * from a callback (it returns -1 and does nothing). write must not call
 * into the mux (such calls fail). mux_free may be called from any
 * callback, write included: it takes effect when the outermost mux call
 * returns, and no callback runs after it — so on_session_closed may free
 * the mux, but then the owner must not use the mux after the call it made
 * returns. Pointers given to callbacks
 * (data, resource, reason) are valid only during the callback.
 */
#ifndef ZTR_DATA_MUX_H
#define ZTR_DATA_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/err.h"

#define MUX_HEADER_SIZE 8
#define MUX_MAX_PAYLOAD 16384
#define MUX_DEFAULT_WINDOW (256 * 1024)
#define MUX_MAX_STREAMS 4096
#define MUX_REASON_MAX 256   /* reasons ≤ 255 bytes + NUL */

/* The only frame flag: on RST, "this acknowledges your RST". */
#define MUX_FLAG_ACK 0x01

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
    MUX_IDENTITY = 10,
};

/* RST / GOAWAY codes: what peers decide on (failover, marking a connector
 * down, a SOCKS5 reply); the reason text beside a code is for people and
 * logs, and no decision reads it. A value never changes meaning: a new
 * refusal gets a new number (table in docs/PROTOCOL.md). Code 1 used to
 * cover both refusals; it keeps the per-stream one, because a peer built
 * before code 8 existed ends the whole session on a code it does not know —
 * harmless on a GOAWAY (the session is ending anyway), not on an RST. */
enum mux_code {
    MUX_CODE_NORMAL = 0,
    MUX_CODE_RESOURCE_NOT_ALLOWED = 1,  /* RST: the allowlist does not grant this resource */
    MUX_CODE_UNKNOWN_RESOURCE = 2,      /* RST: no such resource on this connector */
    MUX_CODE_CONNECT_FAILED = 3,        /* RST: the connector could not reach the target */
    MUX_CODE_PROTOCOL_ERROR = 4,
    MUX_CODE_REFUSED = 5,               /* stream limit, shutting down */
    MUX_CODE_INTERNAL = 6,
    MUX_CODE_CANCEL = 7,                /* the stream's local end went away (reset, error) */
    MUX_CODE_PEER_NOT_ALLOWED = 8,      /* GOAWAY: "tunneler not allowed" (not on the allowlist) */
};
#define MUX_CODE_LAST MUX_CODE_PEER_NOT_ALLOWED

/* A short stable name for a code ("resource_not_allowed"), for logs and
 * tests; "unknown" outside the table. Static storage. */
const char *mux_code_name(enum mux_code code);

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
     * them on (that is what returns credit to the sender). When the stream
     * closes, bytes not yet consumed count as consumed for the session
     * (mux_consumed on a closed id does nothing). */
    void (*on_data)(void *user, uint32_t stream, const uint8_t *data, size_t len);
    /* The peer half-closed the stream (no more data from it). */
    void (*on_fin)(void *user, uint32_t stream);
    /* The stream is gone (RST from the peer, or both sides finished);
     * code/reason say why. The id is free again after this. */
    void (*on_stream_closed)(void *user, uint32_t stream, enum mux_code code,
                             const char *reason);
    /* Send credit became available for a stream whose last mux_send came up
     * short (or was made before OPEN_OK). Streams waiting on the session's
     * credit are called oldest first while credit lasts. */
    void (*on_writable)(void *user, uint32_t stream);
    /* PONG arrived: round-trip time in ms (now_ms at PONG − now_ms at PING). */
    void (*on_pong)(void *user, int64_t rtt_ms);
    /* The session is over (GOAWAY from the peer, or a protocol error here);
     * no callbacks follow. */
    void (*on_session_closed)(void *user, enum mux_code code, const char *reason);
    /* IDENTITY arrived (payload borrowed for the call); may be NULL: then
     * it is dropped. */
    void (*on_identity)(void *user, const uint8_t *payload, size_t len);
};

struct mux_config {
    enum mux_role role;
    uint32_t window;            /* initial credit per stream; 0 = default */
    uint32_t max_streams;       /* 0 = MUX_MAX_STREAMS */
    int64_t (*now_ms)(void *user);  /* monotonic clock for PING RTTs; NULL = system */
    uint32_t session_window;    /* initial credit of the session; 0 = window */
    /* Receive windows grow (doubling) while the owner drains them in under
     * 20 ms, up to these; 0 = no growth. Growth is the receiver's alone: it
     * is granted with WINDOW, so the peer needs no setting for it. */
    uint32_t max_window, session_max_window;
};

/* A session's credit (and its growth limit) for a given per-stream value:
 * four streams' worth, so one busy stream cannot use up the session while
 * others wait, and a few can run at full speed. The one place the factor
 * lives; both ends derive their session window from it (saturates at
 * UINT32_MAX, which mux_new then refuses). */
uint32_t mux_session_window(uint32_t stream_window);

/* window ≤ 2^31-1, max_streams ≤ MUX_MAX_STREAMS; only write is a required
 * callback. */
int mux_new(const struct mux_config *config, const struct mux_callbacks *callbacks, void *user,
            struct mux **out, struct ztr_err *err);
/* Sends nothing and calls no callback; streams still open are dropped. From
 * inside a callback it is deferred (see above). */
void mux_free(struct mux *mux);

/* Feeds bytes read from the TLS connection; returns -1 after a protocol
 * error (on_session_closed has run), and whenever the session is over
 * (GOAWAY either way, a failed write). Bounded: it never buffers more than
 * one partial frame; whole frames are parsed in place. */
int mux_input(struct mux *mux, const uint8_t *data, size_t len);

/* Opener: a new stream to resource (1..255 bytes); *stream receives its id.
 * ZTR_E_LIMIT at max_streams (reset streams awaiting the peer's ACK count). */
int mux_open(struct mux *mux, const char *resource, uint32_t *stream, struct ztr_err *err);
/* Acceptor: the target is connected. */
int mux_accept(struct mux *mux, uint32_t stream, struct ztr_err *err);

/* Sends up to len bytes within the stream's and the session's credit;
 * returns how many were taken (0 when out of credit: wait for on_writable),
 * or -1 if the stream cannot send (closed, half-closed). Splits into
 * frames of at most MUX_MAX_PAYLOAD. */
ssize_t mux_send(struct mux *mux, uint32_t stream, const uint8_t *data, size_t len);
/* Credit the sender may use again: call after passing on_data bytes on.
 * Returned with WINDOW once a quarter of the window has been consumed (stream and
 * session separately), not per call. Clamped to what was delivered. */
void mux_consumed(struct mux *mux, uint32_t stream, size_t len);
/* Half-closes our direction; when the peer's FIN is already in, the stream
 * closes (on_stream_closed runs before this returns). -1 if the stream is
 * unknown, already finished, or not yet accepted (acceptor). */
int mux_fin(struct mux *mux, uint32_t stream);
/* Sends RST (code, reason ≤ 255 bytes) and closes the stream:
 * on_stream_closed(code, reason) runs before this returns. */
int mux_reset(struct mux *mux, uint32_t stream, enum mux_code code, const char *reason);
/* PING carrying now_ms; on_pong gets the RTT. -1 with 4 PINGs unanswered. */
int mux_ping(struct mux *mux);
/* Sends IDENTITY with payload (1..MUX_MAX_PAYLOAD bytes, copied). */
int mux_identity(struct mux *mux, const uint8_t *payload, size_t len);
/* Sends GOAWAY (code, reason) and ends the session: on_stream_closed for
 * each stream, then on_session_closed, all with code and reason. */
int mux_goaway(struct mux *mux, enum mux_code code, const char *reason);

/* Streams the owner sees open (0 once the session is over). */
size_t mux_stream_count(const struct mux *mux);
/* The owner's pointer for a stream (e.g. its relay), for dispatching the
 * callbacks — also inside that stream's on_stream_closed; -1 / NULL for an
 * unknown or closed stream. */
int mux_stream_set_user(struct mux *mux, uint32_t stream, void *user);
void *mux_stream_user(const struct mux *mux, uint32_t stream);

/* Send credit left on a stream, or on the session for stream 0 (for tests
 * and /metrics); 0 for an unknown stream. */
uint32_t mux_send_credit(const struct mux *mux, uint32_t stream);

#endif
