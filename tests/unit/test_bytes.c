/* The byte cursor (base/bytes.c): exact fits, one byte short, sticky
 * failure, and lengths whose arithmetic would wrap. */
#include "tests/unit/support.h"

#include <stdint.h>
#include <string.h>

#include "base/bytes.h"

static void
test_reads_big_endian_fields_in_order(void **state)
{
    (void)state;
    static const uint8_t buf[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
                                  0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 'h', 'i'};
    struct bytes_reader r;
    bytes_reader_init(&r, buf, sizeof(buf));
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    assert_int_equal(bytes_read_u8(&r, &u8), 0);
    assert_int_equal(u8, 0x01);
    assert_int_equal(bytes_read_u16be(&r, &u16), 0);
    assert_int_equal(u16, 0x0203);
    assert_int_equal(bytes_read_u32be(&r, &u32), 0);
    assert_int_equal(u32, 0x04050607);
    assert_int_equal(bytes_read_u64be(&r, &u64), 0);
    assert_true(u64 == 0x08090a0b0c0d0e0full);
    assert_int_equal(bytes_skip(&r, 2), 0);
    const uint8_t *view;
    assert_int_equal(bytes_read_view(&r, 2, &view), 0);
    assert_memory_equal(view, "hi", 2);
    assert_ptr_equal(view, buf + 17);   /* in place, not copied */
    assert_int_equal(bytes_remaining(&r), 0);
    assert_int_equal(bytes_consumed(&r), sizeof(buf));
    assert_false(bytes_reader_failed(&r));
}

/* Exactly the bytes asked for is fine; one short fails and moves nothing. */
static void
test_exact_fit_and_one_short(void **state)
{
    (void)state;
    static const uint8_t buf[4] = {0xde, 0xad, 0xbe, 0xef};
    struct bytes_reader r;
    uint32_t u32 = 7;
    bytes_reader_init(&r, buf, 4);
    assert_int_equal(bytes_read_u32be(&r, &u32), 0);
    assert_int_equal(u32, 0xdeadbeef);

    bytes_reader_init(&r, buf, 3);
    assert_int_equal(bytes_read_u32be(&r, &u32), -1);
    assert_int_equal(u32, 0);   /* never bytes from outside the buffer */
    assert_true(bytes_reader_failed(&r));
    assert_int_equal(bytes_consumed(&r), 0);

    uint64_t u64 = 7;
    bytes_reader_init(&r, buf, 4);
    assert_int_equal(bytes_read_u64be(&r, &u64), -1);
    assert_true(u64 == 0);
    assert_int_equal(bytes_consumed(&r), 0);

    uint8_t copy[4] = {0};
    bytes_reader_init(&r, buf, 4);
    assert_int_equal(bytes_skip(&r, 1), 0);
    assert_int_equal(bytes_read(&r, copy, 4), -1);
    assert_int_equal(copy[0], 0);   /* nothing copied */
    assert_int_equal(bytes_consumed(&r), 1);
}

/* Once failed, a reader stays failed even for reads that would fit. */
static void
test_failure_is_sticky(void **state)
{
    (void)state;
    static const uint8_t buf[3] = {1, 2, 3};
    struct bytes_reader r;
    bytes_reader_init(&r, buf, sizeof(buf));
    uint16_t u16;
    uint8_t u8;
    assert_int_equal(bytes_read_u16be(&r, &u16), 0);
    assert_int_equal(bytes_read_u16be(&r, &u16), -1);
    assert_int_equal(bytes_read_u8(&r, &u8), -1);   /* 1 byte is left, but failed */
    assert_int_equal(u8, 0);
    assert_int_equal(bytes_remaining(&r), 0);
    assert_int_equal(bytes_skip(&r, 0), -1);

    uint8_t out[2];
    struct bytes_writer w;
    bytes_writer_init(&w, out, sizeof(out));
    assert_int_equal(bytes_write_u32be(&w, 1), -1);
    assert_int_equal(bytes_write_u8(&w, 1), -1);
    assert_int_equal(bytes_written(&w), 0);
    assert_int_equal(bytes_room(&w), 0);
    assert_true(bytes_writer_failed(&w));
}

/* Lengths near SIZE_MAX: off + n would wrap, and must not pass. */
static void
test_length_overflow_is_refused(void **state)
{
    (void)state;
    static const uint8_t buf[8] = {0};
    struct bytes_reader r;
    bytes_reader_init(&r, buf, sizeof(buf));
    assert_int_equal(bytes_skip(&r, 4), 0);
    const uint8_t *view = buf;
    assert_int_equal(bytes_read_view(&r, SIZE_MAX, &view), -1);
    assert_null(view);
    bytes_reader_init(&r, buf, sizeof(buf));
    assert_int_equal(bytes_skip(&r, 1), 0);
    assert_int_equal(bytes_skip(&r, SIZE_MAX - 0), -1);
    bytes_reader_init(&r, buf, sizeof(buf));
    assert_int_equal(bytes_skip(&r, 7), 0);
    assert_int_equal(bytes_skip(&r, SIZE_MAX - 6), -1);   /* 7 + (SIZE_MAX-6) wraps to 0 */

    uint8_t out[8];
    struct bytes_writer w;
    bytes_writer_init(&w, out, sizeof(out));
    assert_int_equal(bytes_write_u8(&w, 1), 0);
    assert_int_equal(bytes_write(&w, buf, SIZE_MAX), -1);
    assert_int_equal(bytes_written(&w), 1);
}

static void
test_writer_exact_fit_and_one_short(void **state)
{
    (void)state;
    uint8_t out[15];
    memset(out, 0xaa, sizeof(out));
    struct bytes_writer w;
    bytes_writer_init(&w, out, sizeof(out));
    assert_int_equal(bytes_write_u8(&w, 0x01), 0);
    assert_int_equal(bytes_write_u16be(&w, 0x0203), 0);
    assert_int_equal(bytes_write_u32be(&w, 0x04050607), 0);
    assert_int_equal(bytes_write_u64be(&w, 0x08090a0b0c0d0e0full), 0);
    assert_int_equal(bytes_room(&w), 0);
    assert_int_equal(bytes_written(&w), 15);
    static const uint8_t want[15] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    assert_memory_equal(out, want, sizeof(want));

    uint8_t small[7];
    memset(small, 0xaa, sizeof(small));
    bytes_writer_init(&w, small, sizeof(small));
    assert_int_equal(bytes_write_u64be(&w, 1), -1);   /* one short */
    assert_int_equal(small[0], 0xaa);                  /* nothing written */
    assert_int_equal(bytes_written(&w), 0);

    bytes_writer_init(&w, small, 3);
    assert_int_equal(bytes_write(&w, "abc", 3), 0);
    assert_int_equal(bytes_write(&w, "", 0), 0);       /* zero bytes always fit */
    assert_int_equal(bytes_write(&w, "d", 1), -1);
    assert_memory_equal(small, "abc", 3);
}

/* Empty and NULL buffers are ordinary: zero-length reads succeed. */
static void
test_empty_buffers(void **state)
{
    (void)state;
    struct bytes_reader r;
    bytes_reader_init(&r, NULL, 0);
    const uint8_t *view = NULL;
    assert_int_equal(bytes_read_view(&r, 0, &view), 0);
    assert_non_null(view);
    uint8_t u8;
    assert_int_equal(bytes_read_u8(&r, &u8), -1);
    bytes_reader_init(&r, NULL, 5);   /* a length without a buffer: failed */
    assert_true(bytes_reader_failed(&r));
    assert_int_equal(bytes_remaining(&r), 0);

    struct bytes_writer w;
    bytes_writer_init(&w, NULL, 0);
    assert_int_equal(bytes_write(&w, NULL, 0), 0);
    assert_int_equal(bytes_write_u8(&w, 1), -1);
}

/* A copy of a reader is a saved position (the mux reads a header ahead). */
static void
test_copy_is_a_saved_position(void **state)
{
    (void)state;
    static const uint8_t buf[4] = {0, 1, 0, 2};
    struct bytes_reader r, ahead;
    bytes_reader_init(&r, buf, sizeof(buf));
    ahead = r;
    uint16_t a, b;
    assert_int_equal(bytes_read_u16be(&ahead, &a), 0);
    assert_int_equal(bytes_read_u16be(&ahead, &b), 0);
    assert_int_equal(bytes_consumed(&r), 0);
    assert_int_equal(bytes_read_u16be(&r, &a), 0);
    assert_int_equal(a, 1);
}

static void
test_hex_round_trip_and_refusals(void **state)
{
    (void)state;
    const uint8_t data[] = {0x00, 0xab, 0x7f, 0xff};
    char text[9];
    assert_int_equal(bytes_hex_encode(data, sizeof(data), text, sizeof(text)), 0);
    assert_string_equal(text, "00ab7fff");
    assert_int_equal(bytes_hex_encode(data, sizeof(data), text, 8), -1);
    uint8_t out[4];
    size_t len = 0;
    assert_int_equal(bytes_hex_decode("00AB7fff", out, sizeof(out), &len), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(out, data, 4);
    assert_int_equal(bytes_hex_decode("abc", out, sizeof(out), &len), -1);    /* odd */
    assert_int_equal(bytes_hex_decode("zz", out, sizeof(out), &len), -1);     /* not hex */
    assert_int_equal(bytes_hex_decode("0011223344", out, 4, &len), -1);      /* too long */
    assert_int_equal(bytes_hex_decode("", out, sizeof(out), &len), 0);
    assert_int_equal(len, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_big_endian_fields_in_order),
        cmocka_unit_test(test_exact_fit_and_one_short),
        cmocka_unit_test(test_failure_is_sticky),
        cmocka_unit_test(test_length_overflow_is_refused),
        cmocka_unit_test(test_writer_exact_fit_and_one_short),
        cmocka_unit_test(test_empty_buffers),
        cmocka_unit_test(test_copy_is_a_saved_position),
        cmocka_unit_test(test_hex_round_trip_and_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
