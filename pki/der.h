/*
 * Private to pki/: a bounds-checked DER reader (a cursor that knows its
 * remaining length; nothing reads through a raw pointer) and a small DER
 * writer for the SAN extension wolfSSL cannot build for us.
 */
#ifndef ZTR_PKI_DER_H
#define ZTR_PKI_DER_H

#include <stddef.h>
#include <stdint.h>

enum {
    DER_BOOLEAN = 0x01,
    DER_INTEGER = 0x02,
    DER_BIT_STRING = 0x03,
    DER_OCTET_STRING = 0x04,
    DER_NULL = 0x05,
    DER_OID = 0x06,
    DER_UTF8_STRING = 0x0c,
    DER_PRINTABLE_STRING = 0x13,
    DER_IA5_STRING = 0x16,
    DER_UTC_TIME = 0x17,
    DER_GENERALIZED_TIME = 0x18,
    DER_SEQUENCE = 0x30,
    DER_SET = 0x31,
    DER_CONTEXT_0 = 0xa0, /* [0] constructed */
    DER_CONTEXT_1 = 0xa1,
    DER_CONTEXT_2 = 0xa2,
    DER_CONTEXT_3 = 0xa3,
    DER_SAN_URI = 0x86,   /* [6] IMPLICIT IA5String */
    DER_SAN_IP = 0x87,    /* [7] IMPLICIT OCTET STRING */
    DER_SAN_DNS = 0x82,   /* [2] IMPLICIT IA5String */
};

struct der_cursor {
    const uint8_t *data;
    size_t len;
};

/* Reads one TLV. On success *value covers the contents, *whole (optional)
 * covers tag + length + contents, and the cursor moves past it. Only
 * single-byte tags and definite lengths up to 2^24 are accepted; non-minimal
 * length encodings are refused (DER). */
int der_read(struct der_cursor *cursor, uint8_t *tag, struct der_cursor *value,
             struct der_cursor *whole);

/* der_read that also insists on the tag. */
int der_expect(struct der_cursor *cursor, uint8_t tag, struct der_cursor *value);

/* Peeks at the next tag without moving; -1 when empty. */
int der_peek(const struct der_cursor *cursor, uint8_t *tag);

static inline int
der_empty(const struct der_cursor *cursor)
{
    return cursor->len == 0;
}

int der_oid_equals(const struct der_cursor *oid, const uint8_t *expected, size_t expected_len);

/* Converts UTCTime / GeneralizedTime contents to Unix seconds. */
int der_time_to_unix(uint8_t tag, const struct der_cursor *value, int64_t *out);

/* Writer into a fixed caller buffer. */
struct der_writer {
    uint8_t *data;
    size_t cap;
    size_t len;
    int overflow;
};

void der_put_header(struct der_writer *writer, uint8_t tag, size_t content_len);
void der_put_bytes(struct der_writer *writer, const void *bytes, size_t len);

/* Writes tag+len+(YY)YYMMDDHHMMSSZ (UTCTime before 2050, GeneralizedTime
 * after, as RFC 5280 4.1.2.5 requires). Returns bytes written or -1. */
int der_encode_time(int64_t unix_seconds, uint8_t *out, size_t cap);

#endif
