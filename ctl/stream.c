#include "ctl/stream.h"

#include <ev.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/clock.h"

#include "ctl/frame.h"

struct ctl_stream {
    struct tls_conn *conn;
    struct frame_reader reader;
    struct ctl_stream_callbacks callbacks;
    void *user;
    /* Set by ctl_stream_close: the read loop checks it after every callback,
     * because a callback may close the stream in the middle of a read that
     * holds more frames. */
    bool closing;
    /* ctl_stream_expire_at's moment. */
    struct ev_loop *loop;
    ev_timer expiry;
};

/* ---- tls_conn callbacks ------------------------------------------------------ */

static void
expiry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ctl_stream_close(w->data, CTL_STREAM_PEER_EXPIRED);
}

static void
stream_on_ready(struct tls_conn *conn, void *user)
{
    (void)conn;
    struct ctl_stream *stream = user;
    if (stream->callbacks.on_ready != NULL)
        stream->callbacks.on_ready(stream->user);
}

static void
stream_fault(struct ctl_stream *stream, enum ctl_stream_fault fault, const char *error)
{
    if (stream->callbacks.on_fault != NULL)
        stream->callbacks.on_fault(stream->user, fault, error);
    ctl_stream_close(stream, error);
}

static void
stream_on_data(struct tls_conn *conn, const uint8_t *data, size_t len, void *user)
{
    (void)conn;
    struct ctl_stream *stream = user;
    while (len > 0 && !stream->closing) {
        size_t used;
        struct ztr_err err = {0};
        if (frame_reader_feed(&stream->reader, data, len, &used, &err) != 0) {
            stream_fault(stream, CTL_STREAM_BAD_FRAME, err.msg);
            return;
        }
        data += used;
        len -= used;
        if (!frame_reader_complete(&stream->reader))
            continue;
        size_t payload_len;
        const uint8_t *payload = frame_reader_payload(&stream->reader, &payload_len);
        json_t *msg;
        enum ctlmsg_type type;
        int rc = ctlmsg_decode(payload, payload_len, &msg, &type, &err);
        frame_reader_next(&stream->reader);
        if (rc != 0) {
            stream_fault(stream, CTL_STREAM_BAD_MESSAGE, err.msg);
            return;
        }
        /* The stream outlives this call whatever the callback does: its
         * on_close only ever runs from the loop, never from in here. */
        stream->callbacks.on_message(stream->user, type, msg);
        json_decref(msg);
    }
}

static void
stream_on_close(struct tls_conn *conn, const char *reason, void *user)
{
    (void)conn;
    struct ctl_stream *stream = user;
    stream->closing = true;
    ev_timer_stop(stream->loop, &stream->expiry);
    if (stream->callbacks.on_close != NULL)
        stream->callbacks.on_close(stream->user, reason);
    frame_reader_free(&stream->reader);
    free(stream);
}

static const struct tls_conn_callbacks stream_tls_callbacks = {stream_on_ready, stream_on_data,
                                                               stream_on_close};

/* ---- public ------------------------------------------------------------------ */

int
ctl_stream_new(struct ev_loop *loop, struct tls_ctx *ctx, int fd,
               const struct pki_expect *expect, const struct ctl_stream_callbacks *callbacks,
               void *user, struct ctl_stream **out, struct ztr_err *err)
{
    struct ctl_stream *stream = calloc(1, sizeof(*stream));
    if (stream == NULL) {
        close(fd);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    frame_reader_init(&stream->reader);
    stream->loop = loop;
    ev_timer_init(&stream->expiry, expiry_cb, 0.0, 0.0);
    stream->expiry.data = stream;
    stream->callbacks = *callbacks;
    stream->user = user;
    if (tls_conn_new(loop, ctx, fd, expect, &stream_tls_callbacks, stream, &stream->conn,
                     err) != 0) {
        free(stream);
        return -1;
    }
    *out = stream;
    return 0;
}

int
ctl_stream_send(struct ctl_stream *stream, json_t *msg, struct ztr_err *err)
{
    return ctlmsg_write(stream->conn, msg, err);
}

int
ctl_stream_send_unchecked(struct ctl_stream *stream, const void *payload, size_t len,
                          struct ztr_err *err)
{
    uint8_t *frame;
    size_t frame_len;
    TRY(frame_encode(payload, len, &frame, &frame_len, err));
    int rc = tls_conn_write(stream->conn, frame, frame_len, err);
    free(frame);
    return rc;
}

void
ctl_stream_set_max_frame(struct ctl_stream *stream, size_t max_payload)
{
    frame_reader_set_max(&stream->reader, max_payload);
}

void
ctl_stream_close(struct ctl_stream *stream, const char *reason)
{
    stream->closing = true;
    tls_conn_close(stream->conn, reason);
}

const struct pki_spiffe_id *
ctl_stream_peer_id(const struct ctl_stream *stream)
{
    return tls_conn_peer_id(stream->conn);
}

const uint8_t *
ctl_stream_peer_public_key(const struct ctl_stream *stream, size_t *len)
{
    return tls_conn_peer_public_key(stream->conn, len);
}

const char *
ctl_stream_peer_addr(const struct ctl_stream *stream)
{
    return tls_conn_peer_addr(stream->conn);
}

int64_t
ctl_stream_peer_not_after(const struct ctl_stream *stream)
{
    return tls_conn_peer_not_after(stream->conn);
}

void
ctl_stream_expire_at(struct ctl_stream *stream, int64_t not_after)
{
    ev_timer_stop(stream->loop, &stream->expiry);
    if (not_after <= 0 || stream->closing)
        return;
    /* Expired means now > not_after (pki_verify): the second after. */
    int64_t left = not_after + 1 - clock_wall_s(clock_system());
    ev_timer_set(&stream->expiry, left > 0 ? (double)left : 0.0, 0.0);
    ev_timer_start(stream->loop, &stream->expiry);
}

int
ctl_stream_peer_recheck(struct ctl_stream *stream, const struct pki_bundle *bundle,
                        struct ztr_err *err)
{
    if (!tls_conn_peer_verified(stream->conn) ||
        tls_conn_peer_recheck(stream->conn, bundle, err) == 0)
        return 0;
    ctl_stream_close(stream, CTL_STREAM_PEER_UNTRUSTED);
    return -1;
}
