/* libFuzzer target: the control-plane frame reader and message schema see
 * the bytes of every peer first (enroll arrives before any authentication).
 *
 * The input is one byte stream, delivered to frame_reader_feed in chunks
 * whose sizes are derived from a hash of the input, so a seed that is a real
 * framed message stays one. The reader's output is compared with a simple
 * reference split of the same stream; every complete frame goes through
 * ctlmsg_decode, and every accepted message must survive ctlmsg_encode →
 * frame reader → ctlmsg_decode unchanged (json_equal, same type). Any broken
 * invariant calls abort(), which libFuzzer reports. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctl/ctlmsg.h"
#include "ctl/frame.h"
#include "tests/fuzz/chunker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static uint32_t
be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The reference split: where the frame starting at *pos ends, or why not.
 * Returns 1 for a complete frame (payload at *payload, *len bytes), 0 when
 * the stream ends inside a frame, -1 for a length outside 1..MAX. */
static int
reference_frame(const uint8_t *data, size_t size, size_t *pos, const uint8_t **payload,
                size_t *len)
{
    if (size - *pos < FRAME_HEADER_SIZE)
        return 0;
    uint32_t length = be32(data + *pos);
    if (length == 0 || length > FRAME_MAX_PAYLOAD)
        return -1;
    if (size - *pos - FRAME_HEADER_SIZE < length)
        return 0;
    *payload = data + *pos + FRAME_HEADER_SIZE;
    *len = length;
    *pos += FRAME_HEADER_SIZE + length;
    return 1;
}

static void
check_roundtrip(const json_t *msg, enum ctlmsg_type type, size_t payload_len)
{
    enum ctlmsg_type again_type;
    struct ztr_err err = {0};
    if (ctlmsg_validate(msg, &again_type, &err) != 0 || again_type != type)
        abort();
    if ((unsigned)type >= CTLMSG_TYPE_COUNT || strcmp(ctlmsg_type_name(type), "?") == 0)
        abort();
    const json_t *type_value = json_object_get(msg, "type");
    if (!json_is_string(type_value) ||
        strcmp(json_string_value(type_value), ctlmsg_type_name(type)) != 0)
        abort();

    uint8_t *frame = NULL;
    size_t frame_len = 0;
    if (ctlmsg_encode(msg, &frame, &frame_len, &err) != 0) {
        /* Compact re-serialisation can only outgrow the frame bound through
         * numbers (jansson writes reals with 17 significant digits: "1e-9"
         * becomes "1.0000000000000001e-09", under 6x). Anything smaller that
         * fails to encode is a bug. */
        if (err.code != ZTR_E_LIMIT || payload_len <= FRAME_MAX_PAYLOAD / 8)
            abort();
        return;
    }
    if (frame_len <= FRAME_HEADER_SIZE || be32(frame) != frame_len - FRAME_HEADER_SIZE)
        abort();

    /* The encoded frame read back in one piece. */
    struct frame_reader reader;
    frame_reader_init(&reader);
    size_t used = 0;
    if (frame_reader_feed(&reader, frame, frame_len, &used, &err) != 0 || used != frame_len ||
        !frame_reader_complete(&reader))
        abort();
    size_t len = 0;
    const uint8_t *payload = frame_reader_payload(&reader, &len);
    if (payload == NULL || len != frame_len - FRAME_HEADER_SIZE ||
        memcmp(payload, frame + FRAME_HEADER_SIZE, len) != 0)
        abort();
    json_t *decoded = NULL;
    if (ctlmsg_decode(payload, len, &decoded, &again_type, &err) != 0)
        abort();
    if (again_type != type || !json_equal((json_t *)msg, decoded))
        abort();

    /* Encoding is deterministic for an equal message. */
    uint8_t *frame2 = NULL;
    size_t frame2_len = 0;
    if (ctlmsg_encode(decoded, &frame2, &frame2_len, &err) != 0 || frame2_len != frame_len ||
        memcmp(frame2, frame, frame_len) != 0)
        abort();
    free(frame2);
    json_decref(decoded);
    frame_reader_free(&reader);
    free(frame);
}

static void
handle_frame(const uint8_t *payload, size_t len)
{
    json_t *msg = NULL;
    enum ctlmsg_type type = CTLMSG_TYPE_COUNT;
    struct ztr_err err = {0};
    if (ctlmsg_decode(payload, len, &msg, &type, &err) != 0) {
        if (msg != NULL || err.code == ZTR_OK || err.msg[0] == '\0')
            abort();
        return;
    }
    if (msg == NULL || !json_is_object(msg))
        abort();
    check_roundtrip(msg, type, len);
    json_decref(msg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t h = hash_input(data, size);
    static const size_t maxima[] = {1, 2, 3, 5, 7, 16, 64, 512, 8192};
    struct chunker ch = {h | 1, maxima[(h >> 24) % (sizeof(maxima) / sizeof(maxima[0]))]};

    struct frame_reader reader;
    frame_reader_init(&reader);
    size_t offset = 0;     /* bytes of data consumed by the reader */
    size_t ref_pos = 0;    /* the reference split's position */
    bool failed = false;
    while (offset < size) {
        size_t chunk = next_chunk(&ch);
        if (chunk > size - offset)
            chunk = size - offset;
        /* Feed the chunk until the reader has taken all of it (it stops
         * after each complete frame until released). */
        size_t chunk_end = offset + chunk;
        while (offset < chunk_end) {
            size_t used = (size_t)-1;
            struct ztr_err err = {0};
            int rc = frame_reader_feed(&reader, data + offset, chunk_end - offset, &used, &err);
            if (used > chunk_end - offset)
                abort();
            offset += used;
            if (rc != 0) {
                /* Only a bad length ends the stream, and exactly where the
                 * reference split finds one. */
                const uint8_t *p;
                size_t l;
                if (err.code != ZTR_E_LIMIT || frame_reader_complete(&reader) ||
                    reference_frame(data, size, &ref_pos, &p, &l) != -1 ||
                    offset != ref_pos + FRAME_HEADER_SIZE)
                    abort();
                failed = true;
                break;
            }
            if (!frame_reader_complete(&reader)) {
                /* An incomplete frame swallows everything offered. */
                if (offset != chunk_end)
                    abort();
                break;
            }
            size_t len = 0;
            const uint8_t *payload = frame_reader_payload(&reader, &len);
            const uint8_t *want;
            size_t want_len;
            if (payload == NULL || reference_frame(data, size, &ref_pos, &want, &want_len) != 1 ||
                offset != ref_pos || len != want_len || memcmp(payload, want, len) != 0)
                abort();
            /* Until released, nothing more is taken. */
            size_t extra = (size_t)-1;
            if (offset < chunk_end &&
                (frame_reader_feed(&reader, data + offset, chunk_end - offset, &extra, NULL) != 0 ||
                 extra != 0))
                abort();
            handle_frame(payload, len);
            frame_reader_next(&reader);
            if (frame_reader_complete(&reader) || reader.payload != NULL ||
                reader.header_have != 0)
                abort();
        }
        if (failed)
            break;
    }
    if (!failed) {
        /* The stream ended: whatever the reader holds is the reference's
         * incomplete tail, never a complete or rejected frame. */
        const uint8_t *p;
        size_t l;
        if (reference_frame(data, size, &ref_pos, &p, &l) != 0 || frame_reader_complete(&reader))
            abort();
        size_t pending = reader.header_have + reader.payload_have;
        if (pending != size - ref_pos)
            abort();
    }
    frame_reader_free(&reader);
    return 0;
}
