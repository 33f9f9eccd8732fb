/* Control-plane frame codec and message schema. */
#include "tests/unit/support.h"

#include <stdlib.h>
#include <string.h>

#include "ctl/ctlmsg.h"
#include "ctl/frame.h"

static void
test_frame_roundtrip_byte_by_byte(void **state)
{
    (void)state;
    uint8_t *frame;
    size_t frame_len;
    assert_int_equal(frame_encode("{\"a\":1}", 7, &frame, &frame_len, NULL), 0);
    assert_int_equal(frame_len, 11);
    assert_memory_equal(frame, "\0\0\0\x07", 4);
    struct frame_reader reader;
    frame_reader_init(&reader);
    /* Delivered one byte at a time, as a slow socket might. */
    for (size_t i = 0; i < frame_len; i++) {
        size_t used;
        assert_false(frame_reader_complete(&reader));
        assert_int_equal(frame_reader_feed(&reader, frame + i, 1, &used, NULL), 0);
        assert_int_equal(used, 1);
    }
    assert_true(frame_reader_complete(&reader));
    size_t len;
    const uint8_t *payload = frame_reader_payload(&reader, &len);
    assert_int_equal(len, 7);
    assert_memory_equal(payload, "{\"a\":1}", 7);
    frame_reader_free(&reader);
    free(frame);
}

static void
test_frame_reader_stops_after_one_frame(void **state)
{
    (void)state;
    uint8_t *a, *b;
    size_t a_len, b_len;
    assert_int_equal(frame_encode("one", 3, &a, &a_len, NULL), 0);
    assert_int_equal(frame_encode("second", 6, &b, &b_len, NULL), 0);
    uint8_t both[64];
    memcpy(both, a, a_len);
    memcpy(both + a_len, b, b_len);
    struct frame_reader reader;
    frame_reader_init(&reader);
    size_t used, len;
    assert_int_equal(frame_reader_feed(&reader, both, a_len + b_len, &used, NULL), 0);
    assert_int_equal(used, a_len);
    assert_memory_equal(frame_reader_payload(&reader, &len), "one", 3);
    /* Until released, further input is not consumed. */
    assert_int_equal(frame_reader_feed(&reader, both + used, b_len, &used, NULL), 0);
    assert_int_equal(used, 0);
    frame_reader_next(&reader);
    assert_int_equal(frame_reader_feed(&reader, both + a_len, b_len, &used, NULL), 0);
    assert_int_equal(used, b_len);
    assert_memory_equal(frame_reader_payload(&reader, &len), "second", 6);
    assert_int_equal(len, 6);
    frame_reader_free(&reader);
    free(a);
    free(b);
}

static void
test_frame_lengths_are_bounded(void **state)
{
    (void)state;
    struct frame_reader reader;
    struct ztr_err err = {0};
    size_t used;
    const uint8_t too_big[] = {0x00, 0x10, 0x00, 0x01}; /* 1 MiB + 1 */
    frame_reader_init(&reader);
    assert_int_equal(frame_reader_feed(&reader, too_big, 4, &used, &err), -1);
    assert_non_null(strstr(err.msg, "frame length 1048577"));
    assert_null(reader.payload);
    frame_reader_free(&reader);
    const uint8_t zero[] = {0, 0, 0, 0};
    frame_reader_init(&reader);
    assert_int_equal(frame_reader_feed(&reader, zero, 4, &used, &err), -1);
    frame_reader_free(&reader);
    const uint8_t max[] = {0x00, 0x10, 0x00, 0x00}; /* exactly 1 MiB: allowed */
    frame_reader_init(&reader);
    assert_int_equal(frame_reader_feed(&reader, max, 4, &used, &err), 0);
    assert_false(frame_reader_complete(&reader));
    frame_reader_free(&reader);
    uint8_t *frame;
    size_t frame_len;
    assert_int_equal(frame_encode("x", 0, &frame, &frame_len, &err), -1);
    assert_int_equal(frame_encode("x", FRAME_MAX_PAYLOAD + 1, &frame, &frame_len, &err), -1);
}

/* A reader held to a smaller bound refuses a longer header before it
 * allocates, keeps the bound across frames, and can be raised again. */
static void
test_frame_reader_per_reader_bound(void **state)
{
    (void)state;
    struct frame_reader reader;
    struct ztr_err err = {0};
    size_t used;
    frame_reader_init(&reader);
    frame_reader_set_max(&reader, 16 * 1024);
    const uint8_t small[] = {0x00, 0x00, 0x00, 0x02, '{', '}'};
    assert_int_equal(frame_reader_feed(&reader, small, sizeof(small), &used, &err), 0);
    assert_true(frame_reader_complete(&reader));
    frame_reader_next(&reader);
    assert_int_equal(reader.max_payload, 16 * 1024);
    const uint8_t mib[] = {0x00, 0x10, 0x00, 0x00}; /* 1 MiB */
    assert_int_equal(frame_reader_feed(&reader, mib, 4, &used, &err), -1);
    assert_string_equal(err.msg, "frame length 1048576 outside 1..16384 bytes");
    assert_null(reader.payload);
    frame_reader_free(&reader);
    frame_reader_init(&reader);
    frame_reader_set_max(&reader, 16 * 1024);
    frame_reader_set_max(&reader, 0); /* back to the protocol's ceiling */
    assert_int_equal(frame_reader_feed(&reader, mib, 4, &used, &err), 0);
    assert_non_null(reader.payload);
    frame_reader_free(&reader);
}

static enum ctlmsg_type
decode_ok(const char *json)
{
    json_t *msg;
    enum ctlmsg_type type;
    struct ztr_err err = {0};
    if (ctlmsg_decode((const uint8_t *)json, strlen(json), &msg, &type, &err) != 0)
        fail_msg("%s rejected: %s", json, err.msg);
    json_decref(msg);
    return type;
}

static void
decode_bad(const char *json, const char *reason)
{
    json_t *msg;
    enum ctlmsg_type type;
    struct ztr_err err = {0};
    if (ctlmsg_decode((const uint8_t *)json, strlen(json), &msg, &type, &err) == 0)
        fail_msg("%s accepted", json);
    if (strstr(err.msg, reason) == NULL)
        fail_msg("%s: \"%s\" lacks \"%s\"", json, err.msg, reason);
}

static void
test_every_message_type_decodes(void **state)
{
    (void)state;
    assert_int_equal(decode_ok("{\"type\":\"enroll\",\"token\":\"t\",\"role\":\"connector\","
                               "\"name\":\"dc1\",\"csr\":\"PEM\",\"addresses\":[\"10.0.0.5\"]}"),
                     CTLMSG_ENROLL);
    assert_int_equal(decode_ok("{\"type\":\"enrolled\",\"node_id\":\"n1\",\"spiffe_id\":\"s\","
                               "\"chain\":\"c\",\"bundle\":\"b\"}"),
                     CTLMSG_ENROLLED);
    assert_int_equal(decode_ok("{\"type\":\"hello\",\"version\":1,\"role\":\"tunneler\"}"),
                     CTLMSG_HELLO);
    assert_int_equal(decode_ok("{\"type\":\"hello\",\"version\":1,\"role\":\"connector\","
                               "\"draining\":2}"),
                     CTLMSG_HELLO);
    assert_int_equal(
        decode_ok("{\"type\":\"drain\",\"state\":\"draining\",\"deadline\":1796460562}"),
        CTLMSG_DRAIN);
    assert_int_equal(decode_ok("{\"type\":\"drain\",\"state\":\"serving\"}"), CTLMSG_DRAIN);
    decode_bad("{\"type\":\"drain\"}", "drain.state: missing");
    decode_bad("{\"type\":\"drain\",\"state\":\"draining\",\"node\":\"dc1\"}",
               "drain: unknown field \"node\"");
    assert_int_equal(decode_ok("{\"type\":\"connectors\",\"version\":1,\"connectors\":"
                               "[{\"id\":\"a\",\"spiffe_id\":\"s\",\"address\":\"127.0.0.1:1\","
                               "\"resources\":[],\"draining\":1}]}"),
                     CTLMSG_CONNECTORS);
    assert_int_equal(decode_ok("{\"type\":\"welcome\",\"node_id\":\"n\","
                               "\"heartbeat_interval_ms\":10000,\"server_time\":5}"),
                     CTLMSG_WELCOME);
    assert_int_equal(decode_ok("{\"type\":\"heartbeat\",\"seq\":3,\"counters\":{\"a\":1}}"),
                     CTLMSG_HEARTBEAT);
    assert_int_equal(decode_ok("{\"type\":\"heartbeat_ack\",\"seq\":3,\"server_time\":9}"),
                     CTLMSG_HEARTBEAT_ACK);
    assert_int_equal(decode_ok("{\"type\":\"allowlist\",\"version\":2,\"tunnelers\":[{"
                               "\"spiffe_id\":\"s\",\"resources\":[\"pg\"]}]}"),
                     CTLMSG_ALLOWLIST);
    assert_int_equal(decode_ok("{\"type\":\"connectors\",\"version\":1,\"connectors\":[{"
                               "\"id\":\"c\",\"spiffe_id\":\"s\",\"address\":\"10.0.0.5:7444\","
                               "\"resources\":[]}]}"),
                     CTLMSG_CONNECTORS);
    /* The epoch is optional: an older controller sends none. */
    assert_int_equal(decode_ok("{\"type\":\"allowlist\",\"version\":2,"
                               "\"epoch\":\"0123456789abcdef\",\"tunnelers\":[]}"),
                     CTLMSG_ALLOWLIST);
    assert_int_equal(decode_ok("{\"type\":\"connectors\",\"version\":1,"
                               "\"epoch\":\"00000000000000ff\",\"connectors\":[]}"),
                     CTLMSG_CONNECTORS);
    assert_int_equal(decode_ok("{\"type\":\"renew\",\"csr\":\"x\"}"), CTLMSG_RENEW);
    assert_int_equal(decode_ok("{\"type\":\"renewed\",\"chain\":\"x\"}"), CTLMSG_RENEWED);
    assert_int_equal(decode_ok("{\"type\":\"bundle\",\"bundle\":\"x\",\"version\":2}"),
                     CTLMSG_BUNDLE);
    assert_int_equal(decode_ok("{\"type\":\"revoked\",\"reason\":\"admin\"}"), CTLMSG_REVOKED);
    assert_int_equal(decode_ok("{\"type\":\"error\",\"code\":\"c\",\"message\":\"m\"}"),
                     CTLMSG_ERROR);
    assert_int_equal(decode_ok("{\"type\":\"reauth_begin\",\"node_id\":\"n\",\"spiffe_id\":\"s\"}"),
                     CTLMSG_REAUTH_BEGIN);
    assert_int_equal(decode_ok("{\"type\":\"reauth_challenge\",\"challenge\":\"00ff\"}"),
                     CTLMSG_REAUTH_CHALLENGE);
    assert_int_equal(decode_ok("{\"type\":\"reauth\",\"csr\":\"PEM\",\"key\":\"3059\","
                               "\"signature\":\"3044\"}"),
                     CTLMSG_REAUTH);
    assert_int_equal(decode_ok("{\"type\":\"reauthenticated\",\"node_id\":\"n1\",\"spiffe_id\":\"s\","
                               "\"chain\":\"c\",\"bundle\":\"b\"}"),
                     CTLMSG_REAUTHENTICATED);
    assert_string_equal(ctlmsg_type_name(CTLMSG_HEARTBEAT_ACK), "heartbeat_ack");
    assert_string_equal(ctlmsg_type_name(CTLMSG_REAUTH_CHALLENGE), "reauth_challenge");
}

static void
test_reauth_messages_are_checked(void **state)
{
    (void)state;
    decode_bad("{\"type\":\"reauth_begin\",\"node_id\":\"n\"}", "reauth_begin.spiffe_id: missing");
    decode_bad("{\"type\":\"reauth\",\"csr\":\"x\",\"key\":\"k\"}", "reauth.signature: missing");
    decode_bad("{\"type\":\"reauth\",\"csr\":\"x\",\"key\":\"k\",\"signature\":1}",
               "reauth.signature: expected a string");
    decode_bad("{\"type\":\"reauth_challenge\",\"challenge\":\"00\",\"x\":1}",
               "reauth_challenge: unknown field \"x\"");
}

/* What a re-authentication proof signs binds the challenge, the node and
 * the new key's CSR: change any one and the bytes differ. */
static void
test_reauth_proof_binds_challenge_node_and_csr(void **state)
{
    (void)state;
    char challenge[2 * CTLMSG_REAUTH_CHALLENGE_BYTES + 1], other[sizeof(challenge)];
    memset(challenge, 'a', sizeof(challenge) - 1);
    challenge[sizeof(challenge) - 1] = '\0';
    memcpy(other, challenge, sizeof(other));
    other[0] = 'b';
    uint8_t *a, *b;
    size_t a_len, b_len;
    struct ztr_err err = {0};
    assert_int_equal(ctlmsg_reauth_proof(challenge, "n1", "spiffe://x/tunneler/t", "CSR", &a,
                                         &a_len, &err), 0);
    assert_memory_equal(a, CTLMSG_REAUTH_DOMAIN, strlen(CTLMSG_REAUTH_DOMAIN) + 1);
    const char *variants[][4] = {
        {other, "n1", "spiffe://x/tunneler/t", "CSR"},
        {challenge, "n2", "spiffe://x/tunneler/t", "CSR"},
        {challenge, "n1", "spiffe://x/tunneler/u", "CSR"},
        {challenge, "n1", "spiffe://x/tunneler/t", "CSR2"},
        /* the fields are NUL-separated: moving a byte across a boundary
         * changes the bytes too */
        {challenge, "n1s", "piffe://x/tunneler/t", "CSR"},
    };
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
        assert_int_equal(ctlmsg_reauth_proof(variants[i][0], variants[i][1], variants[i][2],
                                             variants[i][3], &b, &b_len, &err), 0);
        assert_true(a_len != b_len || memcmp(a, b, a_len) != 0);
        free(b);
    }
    free(a);
    assert_int_equal(ctlmsg_reauth_proof("00ff", "n1", "s", "c", &a, &a_len, &err), -1);
    assert_int_equal(ctlmsg_reauth_proof("zz", "n1", "s", "c", &a, &a_len, &err), -1);
}

static void
test_schema_violations_are_named(void **state)
{
    (void)state;
    decode_bad("not json", "invalid JSON");
    decode_bad("[1,2]", "not a JSON object");
    decode_bad("{}", "no \"type\"");
    decode_bad("{\"type\":7}", "no \"type\"");
    decode_bad("{\"type\":\"launch\"}", "unknown message type \"launch\"");
    decode_bad("{\"type\":\"renew\"}", "renew.csr: missing");
    decode_bad("{\"type\":\"renew\",\"csr\":1}", "renew.csr: expected a string");
    decode_bad("{\"type\":\"renew\",\"csr\":\"x\",\"extra\":1}", "unknown field \"extra\"");
    decode_bad("{\"type\":\"heartbeat\",\"seq\":-1}", "non-negative integer");
    decode_bad("{\"type\":\"heartbeat\",\"seq\":1.5}", "non-negative integer");
    decode_bad("{\"type\":\"allowlist\",\"version\":1,\"tunnelers\":[{\"spiffe_id\":\"s\"}]}",
               "allowlist.tunnelers[0].resources: missing");
    decode_bad("{\"type\":\"allowlist\",\"version\":1,\"tunnelers\":[1]}", "expected an object");
    decode_bad("{\"type\":\"allowlist\",\"version\":1,\"epoch\":7,\"tunnelers\":[]}",
               "allowlist.epoch: expected a string");
    decode_bad("{\"type\":\"enroll\",\"token\":\"t\",\"role\":\"r\",\"name\":\"n\",\"csr\":\"c\","
               "\"addresses\":[1]}",
               "enroll.addresses[0]: expected a string");
    decode_bad("{\"type\":\"renew\",\"csr\":\"a\",\"csr\":\"b\"}", "duplicate");
    decode_bad("{\"type\":\"renew\",\"csr\":\"a\\u0000b\"}", "NUL");
    decode_bad("{\"type\":\"heartbeat\",\"seq\":1,\"counters\":{\"x\":1e-9}}",
               "counter \"x\" must be a non-negative integer");
    decode_bad("{\"type\":\"heartbeat\",\"seq\":1,\"counters\":{\"x\":\"1\"}}",
               "must be a non-negative integer");
}

static void
test_encode_validates_and_frames(void **state)
{
    (void)state;
    json_t *msg = json_pack("{s:s, s:i, s:i}", "type", "heartbeat_ack", "seq", 4, "server_time", 1);
    uint8_t *frame;
    size_t len;
    struct ztr_err err = {0};
    assert_int_equal(ctlmsg_encode(msg, &frame, &len, &err), 0);
    json_t *back;
    enum ctlmsg_type type;
    assert_int_equal(ctlmsg_decode(frame + 4, len - 4, &back, &type, &err), 0);
    assert_int_equal(type, CTLMSG_HEARTBEAT_ACK);
    assert_int_equal(json_integer_value(json_object_get(back, "seq")), 4);
    json_decref(back);
    free(frame);
    json_decref(msg);
    msg = json_pack("{s:s}", "type", "heartbeat_ack");
    assert_int_equal(ctlmsg_encode(msg, &frame, &len, &err), -1);
    json_decref(msg);
    msg = ctlmsg_error(CTLMSG_E_INVALID_TOKEN, "invalid enrollment token");
    assert_int_equal(ctlmsg_encode(msg, &frame, &len, &err), 0);
    free(frame);
    json_decref(msg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_roundtrip_byte_by_byte),
        cmocka_unit_test(test_frame_reader_stops_after_one_frame),
        cmocka_unit_test(test_frame_lengths_are_bounded),
        cmocka_unit_test(test_frame_reader_per_reader_bound),
        cmocka_unit_test(test_every_message_type_decodes),
        cmocka_unit_test(test_reauth_messages_are_checked),
        cmocka_unit_test(test_reauth_proof_binds_challenge_node_and_csr),
        cmocka_unit_test(test_schema_violations_are_named),
        cmocka_unit_test(test_encode_validates_and_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
