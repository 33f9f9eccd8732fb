/* The agent core's pure parts: the state table and the renewal schedule. */
#include "tests/unit/support.h"

#include "agent/agent.h"

static void
test_state_names(void **state)
{
    (void)state;
    assert_string_equal(agent_state_name(AGENT_UNENROLLED), "UNENROLLED");
    assert_string_equal(agent_state_name(AGENT_RECONNECTING), "RECONNECTING");
    assert_string_equal(agent_state_name(AGENT_REVOKED), "REVOKED");
    assert_string_equal(agent_state_name(AGENT_STATE_COUNT), "?");
}

static void
test_transition_table_follows_the_design(void **state)
{
    (void)state;
    /* UNENROLLED → ENROLLING → CONNECTING → ONLINE ⇄ RECONNECTING */
    assert_true(agent_transition_allowed(AGENT_UNENROLLED, AGENT_ENROLLING));
    assert_true(agent_transition_allowed(AGENT_ENROLLING, AGENT_CONNECTING));
    assert_true(agent_transition_allowed(AGENT_CONNECTING, AGENT_ONLINE));
    assert_true(agent_transition_allowed(AGENT_ONLINE, AGENT_RECONNECTING));
    assert_true(agent_transition_allowed(AGENT_RECONNECTING, AGENT_ONLINE));
    /* RENEWING is transient while ONLINE */
    assert_true(agent_transition_allowed(AGENT_ONLINE, AGENT_RENEWING));
    assert_true(agent_transition_allowed(AGENT_RENEWING, AGENT_ONLINE));
    assert_false(agent_transition_allowed(AGENT_RECONNECTING, AGENT_RENEWING));
    assert_false(agent_transition_allowed(AGENT_CONNECTING, AGENT_RENEWING));
    /* REVOKED is final; EXPIRED only retries enrollment */
    for (int to = 0; to < AGENT_STATE_COUNT; to++) {
        assert_false(agent_transition_allowed(AGENT_REVOKED, (enum agent_state)to));
        assert_int_equal(agent_transition_allowed(AGENT_EXPIRED, (enum agent_state)to),
                         to == AGENT_ENROLLING);
        assert_false(agent_transition_allowed((enum agent_state)to, (enum agent_state)to));
    }
    /* Re-authentication after expiry goes through ENROLLING. */
    assert_true(agent_transition_allowed(AGENT_RECONNECTING, AGENT_ENROLLING));
    assert_true(agent_transition_allowed(AGENT_ENROLLING, AGENT_EXPIRED));
    assert_false(agent_transition_allowed(AGENT_ONLINE, AGENT_UNENROLLED));
    assert_false(agent_transition_allowed(AGENT_STATE_COUNT, AGENT_ONLINE));
}

static void
test_renewal_at_half_life_with_bounded_jitter(void **state)
{
    (void)state;
    int64_t nb = 1000000, na = nb + 86400;
    assert_int_equal(agent_renew_at(nb, na, 0), nb + 43200);
    assert_int_equal(agent_renew_at(nb, na, -100), nb + 34560);
    assert_int_equal(agent_renew_at(nb, na, 100), nb + 51840);
    /* Jitter beyond ±10 % is clamped: never later than 60 % of the life. */
    assert_int_equal(agent_renew_at(nb, na, 900), nb + 51840);
    assert_int_equal(agent_renew_at(nb, na, -900), nb + 34560);
    for (int j = -100; j <= 100; j++) {
        int64_t at = agent_renew_at(nb, na, j);
        assert_true(at >= nb + 86400 * 4 / 10 && at <= nb + 86400 * 6 / 10);
    }
    /* A one-minute SVID still renews around 30 s in. */
    assert_int_equal(agent_renew_at(0, 60, 0), 30);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_transition_table_follows_the_design),
        cmocka_unit_test(test_renewal_at_half_life_with_bounded_jitter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
