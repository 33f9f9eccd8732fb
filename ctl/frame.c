#include "ctl/frame.h"

#include <stdlib.h>
#include <string.h>

#include "base/bytes.h"

void
frame_reader_init(struct frame_reader *reader)
{
    memset(reader, 0, sizeof(*reader));
    reader->max_payload = FRAME_MAX_PAYLOAD;
}

void
frame_reader_set_max(struct frame_reader *reader, size_t max_payload)
{
    if (max_payload == 0 || max_payload > FRAME_MAX_PAYLOAD)
        max_payload = FRAME_MAX_PAYLOAD;
    reader->max_payload = max_payload;
}

void
frame_reader_free(struct frame_reader *reader)
{
    free(reader->payload);
    memset(reader, 0, sizeof(*reader));
}

int
frame_reader_feed(struct frame_reader *reader, const uint8_t *data, size_t len, size_t *used,
                  struct ztr_err *err)
{
    size_t offset = 0;
    *used = 0;
    if (reader->complete)
        return 0;
    /* The header may arrive in pieces: collect it, then read it through
     * the cursor. */
    struct bytes_reader in;
    bytes_reader_init(&in, data, len);
    size_t missing = FRAME_HEADER_SIZE - reader->header_have;
    size_t take_header = missing < len ? missing : len;
    (void)bytes_read(&in, reader->header + reader->header_have, take_header);
    reader->header_have += take_header;
    offset = bytes_consumed(&in);
    if (reader->header_have < FRAME_HEADER_SIZE) {
        *used = offset;
        return 0;
    }
    if (reader->payload == NULL) {
        struct bytes_reader header;
        uint32_t length = 0;
        bytes_reader_init(&header, reader->header, FRAME_HEADER_SIZE);
        (void)bytes_read_u32be(&header, &length);
        if (length == 0 || length > reader->max_payload) {
            *used = offset;
            return ztr_err_set(err, ZTR_E_LIMIT, "frame length %u outside 1..%zu bytes",
                               length, reader->max_payload);
        }
        /* Allocated only once the header is complete and within bounds. */
        reader->payload = malloc(length);
        if (reader->payload == NULL)
            return ztr_err_set(err, ZTR_E_NOMEM, "out of memory for a %u-byte frame", length);
        reader->payload_len = length;
        reader->payload_have = 0;
    }
    size_t want = reader->payload_len - reader->payload_have;
    size_t take = len - offset < want ? len - offset : want;
    memcpy(reader->payload + reader->payload_have, data + offset, take);
    reader->payload_have += take;
    offset += take;
    reader->complete = reader->payload_have == reader->payload_len;
    *used = offset;
    return 0;
}

const uint8_t *
frame_reader_payload(const struct frame_reader *reader, size_t *len)
{
    if (!reader->complete)
        return NULL;
    *len = reader->payload_len;
    return reader->payload;
}

void
frame_reader_next(struct frame_reader *reader)
{
    size_t max_payload = reader->max_payload;
    free(reader->payload);
    frame_reader_init(reader);
    reader->max_payload = max_payload;
}

int
frame_encode(const void *payload, size_t len, uint8_t **out, size_t *out_len,
             struct ztr_err *err)
{
    if (len == 0 || len > FRAME_MAX_PAYLOAD)
        return ztr_err_set(err, ZTR_E_LIMIT, "frame payload of %zu bytes outside 1..%d", len,
                           FRAME_MAX_PAYLOAD);
    uint8_t *buf = malloc(FRAME_HEADER_SIZE + len);
    if (buf == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    struct bytes_writer w;
    bytes_writer_init(&w, buf, FRAME_HEADER_SIZE + len);
    (void)bytes_write_u32be(&w, (uint32_t)len);
    (void)bytes_write(&w, payload, len);
    *out = buf;
    *out_len = FRAME_HEADER_SIZE + len;
    return 0;
}
