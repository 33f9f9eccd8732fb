#include "base/bytes.h"

#include <string.h>

void
bytes_reader_init(struct bytes_reader *r, const void *data, size_t len)
{
    r->data_ = data;
    r->len_ = data != NULL ? len : 0;
    r->off_ = 0;
    r->failed_ = data == NULL && len > 0;
}

/* The one bounds check: n is compared with what is left, never added to
 * the offset first, so no n can wrap the arithmetic. */
static const uint8_t *
take(struct bytes_reader *r, size_t n)
{
    if (r->failed_ || n > r->len_ - r->off_) {
        r->failed_ = true;
        return NULL;
    }
    if (r->data_ == NULL) {
        static const uint8_t empty;   /* n is 0: a valid pointer to nothing */
        return &empty;
    }
    const uint8_t *p = r->data_ + r->off_;
    r->off_ += n;
    return p;
}

int
bytes_read_u8(struct bytes_reader *r, uint8_t *out)
{
    const uint8_t *p = take(r, 1);
    *out = p != NULL ? p[0] : 0;
    return p != NULL ? 0 : -1;
}

int
bytes_read_u16be(struct bytes_reader *r, uint16_t *out)
{
    const uint8_t *p = take(r, 2);
    *out = p != NULL ? (uint16_t)(p[0] << 8 | p[1]) : 0;
    return p != NULL ? 0 : -1;
}

int
bytes_read_u32be(struct bytes_reader *r, uint32_t *out)
{
    const uint8_t *p = take(r, 4);
    *out = p != NULL ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                     : 0;
    return p != NULL ? 0 : -1;
}

int
bytes_read_u64be(struct bytes_reader *r, uint64_t *out)
{
    uint32_t hi = 0, lo = 0;
    /* Both halves or neither: 8 bytes are checked before either is read. */
    if (bytes_remaining(r) < 8) {
        (void)take(r, 8);
        *out = 0;
        return -1;
    }
    (void)bytes_read_u32be(r, &hi);
    (void)bytes_read_u32be(r, &lo);
    *out = (uint64_t)hi << 32 | lo;
    return 0;
}

int
bytes_read(struct bytes_reader *r, void *out, size_t n)
{
    const uint8_t *p = take(r, n);
    if (p == NULL)
        return -1;
    if (n > 0)
        memcpy(out, p, n);
    return 0;
}

int
bytes_read_view(struct bytes_reader *r, size_t n, const uint8_t **out)
{
    *out = take(r, n);
    return *out != NULL ? 0 : -1;
}

int
bytes_skip(struct bytes_reader *r, size_t n)
{
    return take(r, n) != NULL ? 0 : -1;
}

size_t
bytes_remaining(const struct bytes_reader *r)
{
    return r->failed_ ? 0 : r->len_ - r->off_;
}

size_t
bytes_consumed(const struct bytes_reader *r)
{
    return r->off_;
}

bool
bytes_reader_failed(const struct bytes_reader *r)
{
    return r->failed_;
}

void
bytes_writer_init(struct bytes_writer *w, void *data, size_t cap)
{
    w->data_ = data;
    w->cap_ = data != NULL ? cap : 0;
    w->len_ = 0;
    w->failed_ = false;
}

/* The writer's one bounds check, the same shape as take(). */
static uint8_t *
reserve(struct bytes_writer *w, size_t n)
{
    if (w->failed_ || n > w->cap_ - w->len_) {
        w->failed_ = true;
        return NULL;
    }
    if (w->data_ == NULL) {
        static uint8_t nowhere;   /* n is 0: nothing is written through it */
        return &nowhere;
    }
    uint8_t *p = w->data_ + w->len_;
    w->len_ += n;
    return p;
}

int
bytes_write_u8(struct bytes_writer *w, uint8_t v)
{
    uint8_t *p = reserve(w, 1);
    if (p == NULL)
        return -1;
    p[0] = v;
    return 0;
}

int
bytes_write_u16be(struct bytes_writer *w, uint16_t v)
{
    uint8_t *p = reserve(w, 2);
    if (p == NULL)
        return -1;
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return 0;
}

int
bytes_write_u32be(struct bytes_writer *w, uint32_t v)
{
    uint8_t *p = reserve(w, 4);
    if (p == NULL)
        return -1;
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return 0;
}

int
bytes_write_u64be(struct bytes_writer *w, uint64_t v)
{
    if (bytes_room(w) < 8) {
        (void)reserve(w, 8);
        return -1;
    }
    (void)bytes_write_u32be(w, (uint32_t)(v >> 32));
    return bytes_write_u32be(w, (uint32_t)v);
}

int
bytes_write(struct bytes_writer *w, const void *data, size_t n)
{
    uint8_t *p = reserve(w, n);
    if (p == NULL)
        return -1;
    if (n > 0)
        memcpy(p, data, n);
    return 0;
}

size_t
bytes_written(const struct bytes_writer *w)
{
    return w->len_;
}

size_t
bytes_room(const struct bytes_writer *w)
{
    return w->failed_ ? 0 : w->cap_ - w->len_;
}

bool
bytes_writer_failed(const struct bytes_writer *w)
{
    return w->failed_;
}

int
bytes_hex_encode(const void *data, size_t len, char *out, size_t cap)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *bytes = data;
    if (cap < 2 * len + 1)
        return -1;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
    return 0;
}

static int
hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
bytes_hex_decode(const char *text, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = strlen(text);
    if (n % 2 != 0 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_digit(text[2 * i]), lo = hex_digit(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *len = n / 2;
    return 0;
}
