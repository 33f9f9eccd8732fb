#include "pki/der.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int
der_peek(const struct der_cursor *cursor, uint8_t *tag)
{
    if (cursor->len == 0)
        return -1;
    *tag = cursor->data[0];
    return 0;
}

int
der_read(struct der_cursor *cursor, uint8_t *tag, struct der_cursor *value,
         struct der_cursor *whole)
{
    if (cursor->len < 2)
        return -1;
    uint8_t t = cursor->data[0];
    /* High-tag-number form never appears in what we parse. */
    if ((t & 0x1f) == 0x1f)
        return -1;
    size_t header = 2;
    size_t length = cursor->data[1];
    if (length & 0x80) {
        size_t count = length & 0x7f;
        if (count == 0 || count > 3 || cursor->len < 2 + count)
            return -1;
        length = 0;
        for (size_t i = 0; i < count; i++)
            length = (length << 8) | cursor->data[2 + i];
        /* DER: the shortest form only. */
        if (length < 0x80 || (count > 1 && cursor->data[2] == 0))
            return -1;
        header += count;
    }
    if (length > cursor->len - header)
        return -1;
    if (tag != NULL)
        *tag = t;
    if (value != NULL) {
        value->data = cursor->data + header;
        value->len = length;
    }
    if (whole != NULL) {
        whole->data = cursor->data;
        whole->len = header + length;
    }
    cursor->data += header + length;
    cursor->len -= header + length;
    return 0;
}

int
der_expect(struct der_cursor *cursor, uint8_t tag, struct der_cursor *value)
{
    uint8_t seen;
    if (der_peek(cursor, &seen) != 0 || seen != tag)
        return -1;
    return der_read(cursor, NULL, value, NULL);
}

int
der_oid_equals(const struct der_cursor *oid, const uint8_t *expected, size_t expected_len)
{
    return oid->len == expected_len && memcmp(oid->data, expected, expected_len) == 0;
}

static int
read_digits(const uint8_t *p, size_t count, int *out)
{
    int value = 0;
    for (size_t i = 0; i < count; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        value = value * 10 + (p[i] - '0');
    }
    *out = value;
    return 0;
}

int
der_time_to_unix(uint8_t tag, const struct der_cursor *value, int64_t *out)
{
    const uint8_t *p = value->data;
    int year;
    size_t offset;
    if (tag == DER_UTC_TIME) {
        if (value->len != 13 || p[12] != 'Z' || read_digits(p, 2, &year) != 0)
            return -1;
        year += year < 50 ? 2000 : 1900;
        offset = 2;
    } else if (tag == DER_GENERALIZED_TIME) {
        if (value->len != 15 || p[14] != 'Z' || read_digits(p, 4, &year) != 0)
            return -1;
        offset = 4;
    } else {
        return -1;
    }
    int month, day, hour, minute, second;
    if (read_digits(p + offset, 2, &month) || read_digits(p + offset + 2, 2, &day) ||
        read_digits(p + offset + 4, 2, &hour) || read_digits(p + offset + 6, 2, &minute) ||
        read_digits(p + offset + 8, 2, &second))
        return -1;
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 ||
        second > 60)
        return -1;
    struct tm tm = {0};
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    *out = (int64_t)timegm(&tm);
    return 0;
}

void
der_put_header(struct der_writer *writer, uint8_t tag, size_t content_len)
{
    uint8_t header[5];
    size_t n = 0;
    header[n++] = tag;
    if (content_len < 0x80) {
        header[n++] = (uint8_t)content_len;
    } else if (content_len <= 0xff) {
        header[n++] = 0x81;
        header[n++] = (uint8_t)content_len;
    } else if (content_len <= 0xffff) {
        header[n++] = 0x82;
        header[n++] = (uint8_t)(content_len >> 8);
        header[n++] = (uint8_t)content_len;
    } else {
        writer->overflow = 1;
        return;
    }
    der_put_bytes(writer, header, n);
}

void
der_put_bytes(struct der_writer *writer, const void *bytes, size_t len)
{
    if (writer->overflow || len > writer->cap - writer->len) {
        writer->overflow = 1;
        return;
    }
    memcpy(writer->data + writer->len, bytes, len);
    writer->len += len;
}

int
der_encode_time(int64_t unix_seconds, uint8_t *out, size_t cap)
{
    time_t t = (time_t)unix_seconds;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        return -1;
    int year = tm.tm_year + 1900;
    char text[64];
    uint8_t tag;
    if (year >= 1950 && year < 2050) {
        tag = DER_UTC_TIME;
        snprintf(text, sizeof(text), "%02d%02d%02d%02d%02d%02dZ", year % 100, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    } else if (year >= 0 && year <= 9999) {
        tag = DER_GENERALIZED_TIME;
        snprintf(text, sizeof(text), "%04d%02d%02d%02d%02d%02dZ", year, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    } else {
        return -1;
    }
    size_t len = strlen(text);
    if (cap < len + 2)
        return -1;
    out[0] = tag;
    out[1] = (uint8_t)len;
    memcpy(out + 2, text, len);
    return (int)(len + 2);
}
