/*
 * The bounds-checked byte cursor every wire parser and encoder goes
 * through (after s2n's stuffer): nothing reads or writes through a raw
 * pointer plus an offset it computed itself.
 *
 * A reader walks a caller's const buffer; a writer fills a caller's buffer.
 * Neither allocates or owns memory: the buffer must outlive the cursor.
 * Errors are sticky: once a read or write does not fit, the cursor is
 * failed, every later call fails too and moves nothing, so a parser may
 * read a whole header and check once at the end. A failed read sets its
 * output to zero (or NULL), never to bytes from outside the buffer.
 *
 * The fields are in the header only so a cursor can live on the stack (and
 * be copied to remember a position); use the functions, not the fields.
 */
#ifndef ZTR_BASE_BYTES_H
#define ZTR_BASE_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bytes_reader {
    const uint8_t *data_;
    size_t len_, off_;
    bool failed_;
};

/* Reads len bytes at data (data may be NULL when len is 0). */
void bytes_reader_init(struct bytes_reader *reader, const void *data, size_t len);

/* Each returns 0, or -1 (and fails the reader) when fewer bytes remain. */
int bytes_read_u8(struct bytes_reader *reader, uint8_t *out);
int bytes_read_u16be(struct bytes_reader *reader, uint16_t *out);
int bytes_read_u32be(struct bytes_reader *reader, uint32_t *out);
int bytes_read_u64be(struct bytes_reader *reader, uint64_t *out);
/* Copies n bytes into out. */
int bytes_read(struct bytes_reader *reader, void *out, size_t n);
/* Points *out at the next n bytes, in place (valid as long as the buffer),
 * and moves past them. */
int bytes_read_view(struct bytes_reader *reader, size_t n, const uint8_t **out);
int bytes_skip(struct bytes_reader *reader, size_t n);

/* Unread bytes (0 once failed) and bytes read so far. */
size_t bytes_remaining(const struct bytes_reader *reader);
size_t bytes_consumed(const struct bytes_reader *reader);
bool bytes_reader_failed(const struct bytes_reader *reader);

struct bytes_writer {
    uint8_t *data_;
    size_t cap_, len_;
    bool failed_;
};

/* Writes into cap bytes at data (data may be NULL when cap is 0). */
void bytes_writer_init(struct bytes_writer *writer, void *data, size_t cap);

/* Each returns 0, or -1 (and fails the writer, writing nothing) when the
 * value does not fit in what is left. */
int bytes_write_u8(struct bytes_writer *writer, uint8_t value);
int bytes_write_u16be(struct bytes_writer *writer, uint16_t value);
int bytes_write_u32be(struct bytes_writer *writer, uint32_t value);
int bytes_write_u64be(struct bytes_writer *writer, uint64_t value);
/* Copies n bytes from data (data may be NULL when n is 0). */
int bytes_write(struct bytes_writer *writer, const void *data, size_t n);

/* Bytes written so far (the encoded length) and room left (0 once failed). */
size_t bytes_written(const struct bytes_writer *writer);
size_t bytes_room(const struct bytes_writer *writer);
bool bytes_writer_failed(const struct bytes_writer *writer);

/* Lower-case hex: out receives 2 * len digits and a NUL (cap >= 2 * len + 1,
 * else -1 and nothing written). */
int bytes_hex_encode(const void *data, size_t len, char *out, size_t cap);
/* Exactly strlen(text) / 2 bytes of hex text (either case) into out (cap
 * bytes); *len gets the count. -1 on an odd length, a non-hex digit or a
 * text that does not fit. */
int bytes_hex_decode(const char *text, uint8_t *out, size_t cap, size_t *len);

#endif
