/*
 * Control-plane framing: a 4-byte big-endian length, then that many bytes
 * of one JSON object. Lengths above FRAME_MAX_PAYLOAD end the connection
 * (the peer is broken or hostile; nothing is buffered past the bound).
 *
 * The reader is incremental: feed it whatever the socket produced, it says
 * how much it used and when a frame is complete. It owns the payload buffer
 * until frame_reader_next() is called.
 */
#ifndef ZTR_CTL_FRAME_H
#define ZTR_CTL_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define FRAME_HEADER_SIZE 4
#define FRAME_MAX_PAYLOAD (1024 * 1024)

struct frame_reader {
    /* The largest payload this reader accepts (1..FRAME_MAX_PAYLOAD): a
     * peer that has not authenticated yet gets a smaller bound, so its
     * length header alone cannot make us allocate a megabyte. */
    size_t max_payload;
    uint8_t header[FRAME_HEADER_SIZE];
    size_t header_have;
    uint8_t *payload;
    size_t payload_len;
    size_t payload_have;
    bool complete;
};

/* Starts with max_payload FRAME_MAX_PAYLOAD. */
void frame_reader_init(struct frame_reader *reader);
void frame_reader_free(struct frame_reader *reader);
/* Sets the bound for frames whose header has not been read yet (clamped to
 * 1..FRAME_MAX_PAYLOAD); a frame already being read keeps its length. */
void frame_reader_set_max(struct frame_reader *reader, size_t max_payload);

/* Consumes bytes from data; *used says how many (≤ len). Stops after one
 * complete frame (frame_reader_complete). Returns -1 with err on a length
 * of 0 or above the reader's max_payload, before allocating anything. */
int frame_reader_feed(struct frame_reader *reader, const uint8_t *data, size_t len,
                      size_t *used, struct ztr_err *err);

static inline bool
frame_reader_complete(const struct frame_reader *reader)
{
    return reader->complete;
}

/* The complete frame's payload; valid until frame_reader_next(). */
const uint8_t *frame_reader_payload(const struct frame_reader *reader, size_t *len);

/* Releases the current frame and prepares for the next. */
void frame_reader_next(struct frame_reader *reader);

/* Writes header + payload into a new buffer (free()). */
int frame_encode(const void *payload, size_t len, uint8_t **out, size_t *out_len,
                 struct ztr_err *err);

#endif
