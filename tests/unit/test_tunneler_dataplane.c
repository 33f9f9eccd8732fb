/* The tunneler's data plane (tunneler/dataplane.c): what a connector's
 * refusal code leads to. */
#include "tests/unit/support.h"

#include <stdbool.h>

#include "tunneler/dataplane.h"

/* Every code has its intended verdict; nothing in it depends on a text. */
static void
test_refusal_codes_decide_failover_and_reply(void **state)
{
    (void)state;
    static const struct {
        enum mux_code code;
        bool failover, mark_down;
        enum socks5_reply_code reply;
    } want[] = {
        {MUX_CODE_NORMAL, false, false, SOCKS5_REP_GENERAL_FAILURE},
        {MUX_CODE_RESOURCE_NOT_ALLOWED, false, false, SOCKS5_REP_NOT_ALLOWED},
        {MUX_CODE_UNKNOWN_RESOURCE, false, false, SOCKS5_REP_HOST_UNREACHABLE},
        {MUX_CODE_CONNECT_FAILED, true, false, SOCKS5_REP_CONNECTION_REFUSED},
        {MUX_CODE_PROTOCOL_ERROR, true, false, SOCKS5_REP_GENERAL_FAILURE},
        {MUX_CODE_REFUSED, true, false, SOCKS5_REP_NETWORK_UNREACHABLE},
        {MUX_CODE_INTERNAL, true, false, SOCKS5_REP_GENERAL_FAILURE},
        {MUX_CODE_CANCEL, true, false, SOCKS5_REP_GENERAL_FAILURE},
        {MUX_CODE_PEER_NOT_ALLOWED, true, true, SOCKS5_REP_NOT_ALLOWED},
    };
    assert_int_equal(sizeof(want) / sizeof(want[0]), MUX_CODE_LAST + 1);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        struct tunnel_refusal r = tunnel_refusal_of(want[i].code);
        if (r.failover != want[i].failover || r.mark_down != want[i].mark_down ||
            r.socks5_reply != want[i].reply)
            fail_msg("code %s: failover %d mark_down %d reply %d", mux_code_name(want[i].code),
                     r.failover, r.mark_down, r.socks5_reply);
    }
    /* A code from a newer peer: another connector may do better. */
    struct tunnel_refusal r = tunnel_refusal_of((enum mux_code)(MUX_CODE_LAST + 1));
    assert_true(r.failover);
    assert_false(r.mark_down);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusal_codes_decide_failover_and_reply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
