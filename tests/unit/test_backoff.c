/* Injectable clocks and exponential backoff with full jitter. */
#include "tests/unit/support.h"

#include <string.h>
#include <time.h>

#include "base/backoff.h"
#include "base/clock.h"

#define SEED 0x5eed5eed5eedULL

/* ---- clock --------------------------------------------------------------- */

static void
test_system_clock_is_one_shared_instance(void **state)
{
    (void)state;
    assert_non_null(clock_system());
    assert_ptr_equal(clock_system(), clock_system());
}

static void
test_system_wall_clock_matches_time(void **state)
{
    (void)state;
    const struct ztr_clock *clock = clock_system();
    int64_t before = (int64_t)time(NULL);
    int64_t wall_ms = clock_wall_ms(clock);
    int64_t wall_s = clock_wall_s(clock);
    int64_t after = (int64_t)time(NULL);
    assert_in_range(wall_ms / 1000, before, after);
    assert_in_range(wall_s, before, after);
}

static void
test_system_monotonic_clock_moves_forward(void **state)
{
    (void)state;
    const struct ztr_clock *clock = clock_system();
    int64_t first = clock_monotonic_ms(clock);
    struct timespec pause = {0, 20 * 1000000L};
    nanosleep(&pause, NULL);
    int64_t second = clock_monotonic_ms(clock);
    assert_true(second >= first + 19);
    assert_true(second < first + 5000);
}

static void
test_manual_clock_starts_where_told_and_stands_still(void **state)
{
    (void)state;
    struct ztr_clock clock;
    clock_manual_init(&clock, 1700000000123LL);
    assert_int_equal(clock_wall_ms(&clock), 1700000000123LL);
    assert_int_equal(clock_wall_s(&clock), 1700000000LL);
    int64_t mono = clock_monotonic_ms(&clock);
    assert_true(mono > 0);
    assert_int_equal(clock_monotonic_ms(&clock), mono);
    assert_int_equal(clock_wall_ms(&clock), 1700000000123LL);
}

static void
test_manual_clock_advance_moves_both_readings(void **state)
{
    (void)state;
    struct ztr_clock clock;
    clock_manual_init(&clock, 5000);
    int64_t mono = clock_monotonic_ms(&clock);
    clock_manual_advance(&clock, 1500);
    assert_int_equal(clock_monotonic_ms(&clock), mono + 1500);
    assert_int_equal(clock_wall_ms(&clock), 6500);
    assert_int_equal(clock_wall_s(&clock), 6);
    clock_manual_advance(&clock, 0);
    assert_int_equal(clock_monotonic_ms(&clock), mono + 1500);
    clock_manual_advance(&clock, 86400000LL * 365);
    assert_int_equal(clock_wall_ms(&clock), 6500 + 86400000LL * 365);
}

static void
test_manual_clocks_are_independent(void **state)
{
    (void)state;
    struct ztr_clock a, b;
    clock_manual_init(&a, 0);
    clock_manual_init(&b, 0);
    clock_manual_advance(&a, 42);
    assert_int_equal(clock_wall_ms(&a), 42);
    assert_int_equal(clock_wall_ms(&b), 0);
    assert_int_equal(clock_monotonic_ms(&a) - clock_monotonic_ms(&b), 42);
}

/* ---- backoff: policy and ceilings ---------------------------------------- */

static void
test_default_policy_is_one_second_to_a_minute_ten_attempts(void **state)
{
    (void)state;
    struct backoff_policy policy = backoff_default_policy();
    assert_int_equal(policy.base_ms, 1000);
    assert_int_equal(policy.cap_ms, 60000);
    assert_int_equal(policy.max_attempts, 10);
}

static void
test_ceiling_doubles_then_stays_at_cap(void **state)
{
    (void)state;
    static const int64_t want[] = {1000,  2000,  4000,  8000,  16000,
                                   32000, 60000, 60000, 60000, 60000};
    struct backoff_policy policy = backoff_default_policy();
    struct backoff b;
    backoff_init(&b, &policy, SEED);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(backoff_attempts(&b), i);
        assert_int_equal(backoff_ceiling_ms(&b), want[i]);
        int64_t delay = -1;
        assert_int_equal(backoff_next(&b, &delay), 0);
        assert_in_range(delay, 0, want[i]);
    }
}

static void
test_delays_stay_within_zero_and_ceiling_for_many_seeds(void **state)
{
    (void)state;
    struct backoff_policy policy = {250, 10000, 0};
    for (uint64_t seed = 1; seed <= 200; seed++) {
        struct backoff b;
        backoff_init(&b, &policy, seed * 0x9e3779b97f4a7c15ULL);
        for (int i = 0; i < 30; i++) {
            int64_t ceiling = backoff_ceiling_ms(&b);
            assert_in_range(ceiling, 250, 10000);
            int64_t delay = -1;
            assert_int_equal(backoff_next(&b, &delay), 0);
            if (delay < 0 || delay > ceiling)
                fail_msg("seed %llu attempt %d: delay %lld outside [0, %lld]",
                         (unsigned long long)seed, i, (long long)delay, (long long)ceiling);
        }
    }
}

static void
test_jitter_spreads_over_the_whole_range(void **state)
{
    (void)state;
    /* Full jitter: uniform over [0, cap], not clustered near the ceiling. */
    struct backoff_policy policy = {60000, 60000, 0};
    struct backoff b;
    backoff_init(&b, &policy, SEED);
    int64_t min = INT64_MAX, max = -1, sum = 0;
    int low = 0, high = 0;
    const int n = 4000;
    for (int i = 0; i < n; i++) {
        int64_t delay;
        assert_int_equal(backoff_next(&b, &delay), 0);
        min = delay < min ? delay : min;
        max = delay > max ? delay : max;
        sum += delay;
        low += delay < 30000;
        high += delay >= 30000;
    }
    assert_true(min < 1000);
    assert_true(max > 59000);
    assert_in_range(sum / n, 28000, 32000);
    assert_in_range(low, n / 2 - 200, n / 2 + 200);
    assert_in_range(high, n / 2 - 200, n / 2 + 200);
}

static void
test_one_ms_ceiling_yields_both_endpoints(void **state)
{
    (void)state;
    struct backoff_policy policy = {1, 1, 0};
    struct backoff b;
    backoff_init(&b, &policy, SEED);
    int seen[2] = {0, 0};
    for (int i = 0; i < 200; i++) {
        int64_t delay;
        assert_int_equal(backoff_next(&b, &delay), 0);
        assert_in_range(delay, 0, 1);
        seen[delay]++;
    }
    assert_true(seen[0] > 0);
    assert_true(seen[1] > 0);
}

/* ---- backoff: determinism and seeding ------------------------------------ */

static void
test_same_seed_gives_same_sequence(void **state)
{
    (void)state;
    struct backoff_policy policy = backoff_default_policy();
    struct backoff a, b;
    backoff_init(&a, &policy, SEED);
    backoff_init(&b, &policy, SEED);
    for (int i = 0; i < 10; i++) {
        int64_t da, db;
        assert_int_equal(backoff_next(&a, &da), 0);
        assert_int_equal(backoff_next(&b, &db), 0);
        assert_int_equal(da, db);
    }
}

static int
sequences_differ(uint64_t seed_a, uint64_t seed_b)
{
    struct backoff_policy policy = {60000, 60000, 0};
    struct backoff a, b;
    backoff_init(&a, &policy, seed_a);
    backoff_init(&b, &policy, seed_b);
    int differ = 0;
    for (int i = 0; i < 8; i++) {
        int64_t da, db;
        backoff_next(&a, &da);
        backoff_next(&b, &db);
        differ += da != db;
    }
    return differ;
}

static void
test_different_seeds_give_different_sequences(void **state)
{
    (void)state;
    assert_true(sequences_differ(1, 2) > 0);
    assert_true(sequences_differ(SEED, SEED + 1) > 0);
}

static void
test_seed_zero_draws_a_fresh_nonzero_seed(void **state)
{
    (void)state;
    struct backoff_policy policy = backoff_default_policy();
    struct backoff a, b;
    backoff_init(&a, &policy, 0);
    backoff_init(&b, &policy, 0);
    /* xorshift stuck at zero would return 0 forever. */
    assert_true(a.rng_state != 0);
    assert_true(b.rng_state != 0);
    assert_true(a.rng_state != b.rng_state);
}

/* ---- backoff: bounds, reset, policy normalisation ------------------------ */

static void
test_exhaustion_returns_minus_one_and_produces_no_delay(void **state)
{
    (void)state;
    struct backoff_policy policy = {100, 1000, 3};
    struct backoff b;
    backoff_init(&b, &policy, SEED);
    int64_t delay;
    for (int i = 0; i < 3; i++)
        assert_int_equal(backoff_next(&b, &delay), 0);
    delay = 12345;
    assert_int_equal(backoff_next(&b, &delay), -1);
    assert_int_equal(delay, 12345);
    assert_int_equal(backoff_next(&b, &delay), -1);
    assert_int_equal(backoff_attempts(&b), 3);
}

static void
test_default_policy_is_exhausted_after_ten_delays(void **state)
{
    (void)state;
    struct backoff_policy policy = backoff_default_policy();
    struct backoff b;
    backoff_init(&b, &policy, SEED);
    int64_t delay;
    int given = 0;
    while (backoff_next(&b, &delay) == 0 && given < 100)
        given++;
    assert_int_equal(given, 10);
}

static void
test_zero_max_attempts_is_unbounded(void **state)
{
    (void)state;
    struct backoff_policy policy = {10, 80, 0};
    struct backoff b;
    backoff_init(&b, &policy, SEED);
    int64_t delay;
    for (int i = 0; i < 5000; i++) {
        assert_int_equal(backoff_next(&b, &delay), 0);
        assert_in_range(delay, 0, 80);
    }
    assert_int_equal(backoff_attempts(&b), 5000);
    assert_int_equal(backoff_ceiling_ms(&b), 80);
}

static void
test_reset_restarts_ceiling_and_revives_exhausted_backoff(void **state)
{
    (void)state;
    struct backoff_policy policy = {1000, 60000, 4};
    struct backoff b;
    backoff_init(&b, &policy, SEED);
    int64_t delay;
    while (backoff_next(&b, &delay) == 0) {
    }
    assert_int_equal(backoff_ceiling_ms(&b), 16000);
    backoff_reset(&b);
    assert_int_equal(backoff_attempts(&b), 0);
    assert_int_equal(backoff_ceiling_ms(&b), 1000);
    assert_int_equal(backoff_next(&b, &delay), 0);
    assert_in_range(delay, 0, 1000);
    assert_int_equal(backoff_attempts(&b), 1);
}

static void
test_reset_does_not_replay_the_same_jitter(void **state)
{
    (void)state;
    /* After a reconnect the fleet must not fall back into lockstep. */
    struct backoff_policy policy = {60000, 60000, 0};
    struct backoff b;
    backoff_init(&b, &policy, SEED);
    int64_t first[4], second[4];
    for (int i = 0; i < 4; i++)
        backoff_next(&b, &first[i]);
    backoff_reset(&b);
    for (int i = 0; i < 4; i++)
        backoff_next(&b, &second[i]);
    assert_memory_not_equal(first, second, sizeof(first));
}

static void
test_nonpositive_base_and_small_cap_are_normalised(void **state)
{
    (void)state;
    struct backoff_policy policy = {0, -5, 2};
    struct backoff b;
    backoff_init(&b, &policy, SEED);
    assert_int_equal(b.policy.base_ms, 1);
    assert_int_equal(b.policy.cap_ms, 1);
    assert_int_equal(backoff_ceiling_ms(&b), 1);

    struct backoff_policy inverted = {5000, 100, 0};
    backoff_init(&b, &inverted, SEED);
    assert_int_equal(backoff_ceiling_ms(&b), 5000);
    int64_t delay;
    backoff_next(&b, &delay);
    assert_int_equal(backoff_ceiling_ms(&b), 5000);
}

static void
test_init_copies_policy(void **state)
{
    (void)state;
    struct backoff_policy policy = {100, 400, 0};
    struct backoff b;
    backoff_init(&b, &policy, SEED);
    policy.cap_ms = 1;
    int64_t delay;
    for (int i = 0; i < 5; i++)
        backoff_next(&b, &delay);
    assert_int_equal(backoff_ceiling_ms(&b), 400);
}

static void
test_huge_cap_never_overflows_the_ceiling(void **state)
{
    (void)state;
    /* Doubling towards INT64_MAX must saturate, not wrap negative. */
    struct backoff_policy policy = {1, INT64_MAX, 0};
    struct backoff b;
    backoff_init(&b, &policy, SEED);
    int64_t previous = 0;
    for (int i = 0; i < 100; i++) {
        int64_t ceiling = backoff_ceiling_ms(&b);
        assert_true(ceiling >= previous);
        assert_true(ceiling > 0);
        previous = ceiling;
        int64_t delay = -1;
        assert_int_equal(backoff_next(&b, &delay), 0);
        assert_true(delay >= 0);
        assert_true(delay <= ceiling);
    }
    assert_true(previous == INT64_MAX);

    struct backoff_policy big_base = {INT64_MAX / 2 + 1, INT64_MAX, 0};
    backoff_init(&b, &big_base, SEED);
    int64_t delay;
    backoff_next(&b, &delay);
    assert_true(backoff_ceiling_ms(&b) == INT64_MAX);
    assert_int_equal(backoff_next(&b, &delay), 0);
    assert_true(delay >= 0);
}

/* ---- backoff_next_deadline ------------------------------------------------ */

static void
test_deadline_is_manual_now_plus_the_jittered_delay(void **state)
{
    (void)state;
    struct ztr_clock clock;
    clock_manual_init(&clock, 1700000000000LL);
    clock_manual_advance(&clock, 123456);
    struct backoff_policy policy = backoff_default_policy();
    struct backoff with_clock, twin;
    backoff_init(&with_clock, &policy, SEED);
    backoff_init(&twin, &policy, SEED);
    for (int i = 0; i < 10; i++) {
        int64_t now = clock_monotonic_ms(&clock);
        int64_t deadline = -1, delay = -1;
        assert_int_equal(backoff_next_deadline(&with_clock, &clock, &deadline), 0);
        assert_int_equal(backoff_next(&twin, &delay), 0);
        assert_int_equal(deadline, now + delay);
        clock_manual_advance(&clock, 777);
    }
    int64_t deadline = 99;
    assert_int_equal(backoff_next_deadline(&with_clock, &clock, &deadline), -1);
    assert_int_equal(deadline, 99);
}

static void
test_deadline_uses_monotonic_not_wall_time(void **state)
{
    (void)state;
    struct ztr_clock clock;
    clock_manual_init(&clock, 1700000000000LL);
    struct backoff_policy policy = {1000, 1000, 0};
    struct backoff b;
    backoff_init(&b, &policy, SEED);
    int64_t deadline;
    assert_int_equal(backoff_next_deadline(&b, &clock, &deadline), 0);
    assert_in_range(deadline, clock_monotonic_ms(&clock), clock_monotonic_ms(&clock) + 1000);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_system_clock_is_one_shared_instance),
        cmocka_unit_test(test_system_wall_clock_matches_time),
        cmocka_unit_test(test_system_monotonic_clock_moves_forward),
        cmocka_unit_test(test_manual_clock_starts_where_told_and_stands_still),
        cmocka_unit_test(test_manual_clock_advance_moves_both_readings),
        cmocka_unit_test(test_manual_clocks_are_independent),
        cmocka_unit_test(test_default_policy_is_one_second_to_a_minute_ten_attempts),
        cmocka_unit_test(test_ceiling_doubles_then_stays_at_cap),
        cmocka_unit_test(test_delays_stay_within_zero_and_ceiling_for_many_seeds),
        cmocka_unit_test(test_jitter_spreads_over_the_whole_range),
        cmocka_unit_test(test_one_ms_ceiling_yields_both_endpoints),
        cmocka_unit_test(test_same_seed_gives_same_sequence),
        cmocka_unit_test(test_different_seeds_give_different_sequences),
        cmocka_unit_test(test_seed_zero_draws_a_fresh_nonzero_seed),
        cmocka_unit_test(test_exhaustion_returns_minus_one_and_produces_no_delay),
        cmocka_unit_test(test_default_policy_is_exhausted_after_ten_delays),
        cmocka_unit_test(test_zero_max_attempts_is_unbounded),
        cmocka_unit_test(test_reset_restarts_ceiling_and_revives_exhausted_backoff),
        cmocka_unit_test(test_reset_does_not_replay_the_same_jitter),
        cmocka_unit_test(test_nonpositive_base_and_small_cap_are_normalised),
        cmocka_unit_test(test_init_copies_policy),
        cmocka_unit_test(test_huge_cap_never_overflows_the_ceiling),
        cmocka_unit_test(test_deadline_is_manual_now_plus_the_jittered_delay),
        cmocka_unit_test(test_deadline_uses_monotonic_not_wall_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
