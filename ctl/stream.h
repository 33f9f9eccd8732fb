/*
 * The control stream: one TLS connection (ALPN CTL_ALPN) that carries
 * control messages, the one read path every speaker of the protocol uses
 * (agents, the controller, the probe and the load generator).
 *
 * A ctl_stream owns its tls_conn, and through it the socket, and the frame
 * reader. Incoming bytes are framed (at most FRAME_MAX_PAYLOAD per frame),
 * each complete frame is decoded and checked by ctlmsg_decode, and only a
 * message that passed its schema reaches on_message. Frames split across
 * reads and several frames in one read are both delivered in order.
 *
 * Callbacks run on the loop thread:
 *   on_ready    once, after the handshake (the peer's identity is known);
 *   on_message  for each message, msg borrowed for the call;
 *   on_fault    (optional) a frame of a length out of bounds or a message
 *               that failed the schema: the caller logs it its own way and
 *               may still send (an error reply); the stream then closes
 *               with the error text as the reason;
 *   on_close    exactly once, with a reason; the stream is freed right
 *               after it returns.
 * ctl_stream_close() from inside any callback is safe: no message is
 * delivered after it, and on_close never runs inside a callback or inside
 * a call into this module (it comes from the loop, as tls_conn's does), so
 * the stream a callback holds stays valid until that callback returns.
 */
#ifndef ZTR_CTL_STREAM_H
#define ZTR_CTL_STREAM_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "ctl/ctlmsg.h"
#include "net/tls.h"

/* The control plane's ALPN protocol: both sides' tls_ctx name it, so a
 * data-plane peer can never land on the control plane. */
#define CTL_ALPN "ztr-ctl/1"

/* Close reasons of the stream's own making: at the moment
 * ctl_stream_expire_at set, and when a new trust bundle no longer verifies
 * the peer (ctl_stream_peer_recheck). */
#define CTL_STREAM_PEER_EXPIRED "peer certificate expired"
#define CTL_STREAM_PEER_UNTRUSTED "peer no longer trusted"

struct ev_loop;
struct ctl_stream;

enum ctl_stream_fault {
    CTL_STREAM_BAD_FRAME,   /* a length of 0 or above the stream's bound */
    CTL_STREAM_BAD_MESSAGE, /* a complete frame that is not a valid message */
};

struct ctl_stream_callbacks {
    void (*on_ready)(void *user);
    void (*on_message)(void *user, enum ctlmsg_type type, const json_t *msg);
    void (*on_fault)(void *user, enum ctl_stream_fault fault, const char *error);
    void (*on_close)(void *user, const char *reason);
};

/* Takes ownership of fd (connected, non-blocking; closed on failure too)
 * and starts the handshake on ctx, whose ALPN must be CTL_ALPN. expect says
 * who the peer must be. On success *out belongs to the stream itself until
 * on_close; no callback runs before this returns. */
int ctl_stream_new(struct ev_loop *loop, struct tls_ctx *ctx, int fd,
                   const struct pki_expect *expect, const struct ctl_stream_callbacks *callbacks,
                   void *user, struct ctl_stream **out, struct ztr_err *err);

/* Checks msg against its schema, frames and queues it. Always drops the
 * caller's reference to msg (NULL is an error: a message that could not be
 * built). On failure the stream stays open: the caller decides. */
int ctl_stream_send(struct ctl_stream *stream, json_t *msg, struct ztr_err *err);

/* Frames payload as it is, without the schema check: for test tools that
 * show how a peer treats what no daemon sends. The caller keeps payload. */
int ctl_stream_send_unchecked(struct ctl_stream *stream, const void *payload, size_t len,
                              struct ztr_err *err);

/* The largest frame payload accepted from now on (default
 * FRAME_MAX_PAYLOAD, which is also the ceiling): the controller holds an
 * unauthenticated peer to a few KiB. */
void ctl_stream_set_max_frame(struct ctl_stream *stream, size_t max_payload);

/* Stops delivery at once and closes (queued output is flushed as far as
 * the socket takes it); on_close follows from the loop with reason (the
 * first reason given wins). Safe to call more than once before on_close. */
void ctl_stream_close(struct ctl_stream *stream, const char *reason);

/* After on_ready: the verified peer's SPIFFE ID, or NULL for a peer that
 * presented no certificate (an enrolling agent). Owned by the stream. */
const struct pki_spiffe_id *ctl_stream_peer_id(const struct ctl_stream *stream);
/* The verified peer's SubjectPublicKeyInfo DER (NULL when unverified). */
const uint8_t *ctl_stream_peer_public_key(const struct ctl_stream *stream, size_t *len);
/* The earliest not_after (Unix seconds) in the verified peer's chain; 0
 * for a peer that sent no certificate. */
int64_t ctl_stream_peer_not_after(const struct ctl_stream *stream);
/* Closes the stream with CTL_STREAM_PEER_EXPIRED once not_after (Unix
 * seconds) has passed; a later call moves the moment (the peer proved a
 * renewed certificate over this stream), 0 cancels it. The controller sets
 * it for every node's session, so none outlives the identity behind it. */
void ctl_stream_expire_at(struct ctl_stream *stream, int64_t not_after);
/* Verifies the peer's chain again against bundle (the caller's) now: 0
 * while it still does; otherwise closes the stream with
 * CTL_STREAM_PEER_UNTRUSTED and returns -1 with the reason. A stream whose
 * peer sent no certificate passes. */
int ctl_stream_peer_recheck(struct ctl_stream *stream, const struct pki_bundle *bundle,
                            struct ztr_err *err);
/* "ip:port" of the peer; owned by the stream. */
const char *ctl_stream_peer_addr(const struct ctl_stream *stream);

#endif
