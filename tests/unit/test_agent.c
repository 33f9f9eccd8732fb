/*
 * The agent core: its pure parts (the state table, the renewal schedule),
 * then a real agent (agent_new on this test's own loop and a manual clock)
 * against a real controller in the same process: the store in a temporary
 * directory, the managed CA, the mTLS control-plane listener on 127.0.0.1.
 * Nothing is faked; the manual clock moves only when a test says so, which
 * is how a certificate expires while the controller is away.
 *
 * wolfSSL checks certificate dates against the real clock during a
 * handshake (our own check then uses the injected one), so the manual clock
 * starts at the real time and only moves less than the controller's 60 s
 * backdating: agents get AGENT_SVID_TTL_S certificates, the controller's
 * own is long-lived.
 */
#include "tests/unit/support.h"

#include <ev.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/agent.h"
#include "base/clock.h"
#include "base/log.h"
#include "controller/controller.h"
#include "pki/pki.h"

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

/* ---- a real agent against a real controller ------------------------------- */

#define TD "example.org"
#define CONTROLLER_SVID_TTL_S 3600
#define AGENT_SVID_TTL_S 40
#define WAIT_MS 15000

struct fixture {
    char *dir, *ctl_dir, *agent_dir, *ca_path;
    struct ztr_clock clock;
    struct ev_loop *loop;
    ev_timer tick;                /* wakes the loop so waits notice their condition */
    struct controller c;
    char controller_addr[64];
    struct agent_spec spec;
    struct agent_settings settings;
    struct agent *agent;
};

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

static void
controller_up(struct fixture *f)
{
    struct ztr_err err = {0};
    f->c.settings.svid_ttl_s = CONTROLLER_SVID_TTL_S;
    if (ctl_server_start(&f->c, &err) != 0)
        fail_msg("ctl_server_start: %s", err.msg);
    f->c.settings.svid_ttl_s = AGENT_SVID_TTL_S;
    /* Restarts listen on the port agents already know. */
    snprintf(f->controller_addr, sizeof(f->controller_addr), "127.0.0.1:%u",
             ctl_server_port(f->c.ctl));
    snprintf(f->c.settings.controller_listen, sizeof(f->c.settings.controller_listen), "%s",
             f->controller_addr);
}

static void
controller_down(struct fixture *f)
{
    ctl_server_stop(f->c.ctl);
}

/* A token for this test's tunneler (kept by the controller as a digest). */
static void
issue_token(struct fixture *f, int64_t uses)
{
    struct token_request request = {.role = "tunneler", .name = "t1", .uses = uses,
                                    .ttl_s = 86400};
    struct store_token record;
    struct ztr_err err = {0};
    char *text = NULL;
    if (token_create(&f->c, &request, &text, &record, &err) != 0)
        fail_msg("token_create: %s", err.msg);
    snprintf(f->settings.enrollment_token, sizeof(f->settings.enrollment_token), "%s", text);
    explicit_bzero(text, strlen(text));
    free(text);
}

static int
agent_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    struct ztr_err err = {0};
    test_log_capture_start();
    f->dir = test_mkdtemp();
    f->ctl_dir = test_path(f->dir, "controller");
    f->agent_dir = test_path(f->dir, "agent");
    f->ca_path = test_path(f->dir, "controller-ca.pem");
    assert_int_equal(mkdir(f->ctl_dir, 0700), 0);
    clock_manual_init(&f->clock, clock_wall_ms(clock_system()));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(f->loop);
    ev_timer_init(&f->tick, tick_cb, 0.01, 0.01);
    ev_timer_start(f->loop, &f->tick);

    struct controller *c = &f->c;
    c->loop = f->loop;
    c->clock = &f->clock;
    snprintf(c->settings.trust_domain, sizeof(c->settings.trust_domain), "%s", TD);
    snprintf(c->settings.state_dir, sizeof(c->settings.state_dir), "%s", f->ctl_dir);
    snprintf(c->settings.controller_listen, sizeof(c->settings.controller_listen),
             "127.0.0.1:0");
    c->settings.svid_ttl_s = AGENT_SVID_TTL_S;
    c->settings.heartbeat_interval_ms = 1000;
    c->settings.token_ttl_s = 86400;
    c->started_at = clock_wall_s(&f->clock);
    char *db = test_path(f->ctl_dir, "controller.db");
    if (store_open(db, &f->clock, &c->store, &err) != 0)
        fail_msg("store_open: %s", err.msg);
    free(db);
    if (ca_set_open(&c->settings, &f->clock, &c->cas, &err) != 0)
        fail_msg("ca_set_open: %s", err.msg);
    char *bundle;
    size_t bundle_len;
    assert_int_equal(ca_set_bundle_pem(c->cas, &bundle, &bundle_len, &err), 0);
    test_write_file(f->ca_path, bundle);
    free(bundle);
    controller_up(f);

    f->spec.role = PKI_ROLE_TUNNELER;
    struct agent_settings *s = &f->settings;
    snprintf(s->controller_addr, sizeof(s->controller_addr), "%s", f->controller_addr);
    snprintf(s->controller_ca, sizeof(s->controller_ca), "%s", f->ca_path);
    snprintf(s->trust_domain, sizeof(s->trust_domain), "%s", TD);
    snprintf(s->state_dir, sizeof(s->state_dir), "%s", f->agent_dir);
    snprintf(s->node_name, sizeof(s->node_name), "t1");
    /* Reconnects in milliseconds; the budget runs out after 3 attempts. */
    s->reconnect_min_delay_ms = 10;
    s->reconnect_max_delay_ms = 80;
    s->reconnect_attempts = 3;
    *state = f;
    return 0;
}

static int
agent_teardown(void **state)
{
    struct fixture *f = *state;
    agent_free(f->agent);
    controller_down(f);
    store_close(f->c.store);
    ca_set_free(f->c.cas);
    ev_timer_stop(f->loop, &f->tick);
    ev_loop_destroy(f->loop);
    /* The enrollment token is a secret: it never reaches a log line. */
    if (f->settings.enrollment_token[0] != '\0')
        assert_null(strstr(test_log_captured(), strchr(f->settings.enrollment_token, '.') + 1));
    test_log_capture_stop();
    log_clear_secrets();
    test_rmtree(f->dir);
    free(f->dir);
    free(f->ctl_dir);
    free(f->agent_dir);
    free(f->ca_path);
    free(f);
    return 0;
}

static void
start_agent(struct fixture *f)
{
    struct ztr_err err = {0};
    if (agent_new(f->loop, &f->clock, &f->spec, &f->settings, &f->agent, &err) != 0)
        fail_msg("agent_new: %s", err.msg);
    if (agent_start(f->agent, &err) != 0)
        fail_msg("agent_start: %s", err.msg);
}

/* Runs the loop until the agent is in state (or has stopped with a status,
 * when state is AGENT_STATE_COUNT); fails the test after WAIT_MS. */
static void
run_until_state(struct fixture *f, enum agent_state state)
{
    int64_t deadline = clock_monotonic_ms(clock_system()) + WAIT_MS;
    while (clock_monotonic_ms(clock_system()) < deadline) {
        if (state == AGENT_STATE_COUNT ? agent_exit_code(f->agent) >= 0
                                       : agent_current_state(f->agent) == state)
            return;
        ev_run(f->loop, EVRUN_ONCE);
    }
    fprintf(stderr, "%s", test_log_captured());
    fail_msg("agent never reached %s (state %s)", agent_state_name(state),
             agent_state_name(agent_current_state(f->agent)));
}

static size_t
count_lines(const char *needle)
{
    size_t n = 0;
    for (const char *p = test_log_captured(); (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* Runs the loop until needle was logged `times` times. */
static void
run_until_logged(struct fixture *f, const char *needle, size_t times)
{
    int64_t deadline = clock_monotonic_ms(clock_system()) + WAIT_MS;
    while (count_lines(needle) < times) {
        if (clock_monotonic_ms(clock_system()) >= deadline) {
            fprintf(stderr, "%s", test_log_captured());
            fail_msg("\"%s\" logged %zu times, not %zu", needle, count_lines(needle), times);
        }
        ev_run(f->loop, EVRUN_ONCE);
    }
}

static void
enroll_and_come_online(struct fixture *f)
{
    start_agent(f);
    assert_int_equal(agent_current_state(f->agent), AGENT_ENROLLING);
    run_until_state(f, AGENT_ONLINE);
    assert_int_equal(ctl_server_session_count(f->c.ctl), 1);
}

static json_t *
node_file(struct fixture *f)
{
    char *path = test_path(f->agent_dir, "node.json");
    json_t *node = json_load_file(path, 0, NULL);
    free(path);
    assert_non_null(node);
    return node;
}

static void
test_agent_enrolls_with_a_token_and_comes_online(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 1);
    enroll_and_come_online(f);
    /* The key was made here and stays private; the identity is on disk. */
    struct stat st;
    char *key = test_path(f->agent_dir, "key.pem");
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    free(key);
    json_t *node = node_file(f);
    assert_string_equal(json_string_value(json_object_get(node, "spiffe_id")),
                        "spiffe://" TD "/tunneler/t1");
    json_decref(node);
    assert_int_equal(count_lines("control-plane stream connected"), 1);
    assert_int_equal(agent_exit_code(f->agent), -1);
    /* A restart with the stored identity needs no token. */
    agent_free(f->agent);
    f->agent = NULL;
    f->settings.enrollment_token[0] = '\0';
    start_agent(f);
    assert_int_equal(agent_current_state(f->agent), AGENT_CONNECTING);
    run_until_state(f, AGENT_ONLINE);
    assert_int_equal(count_lines("control-plane stream connected"), 2);
    assert_int_equal(count_lines("msg=\"enrolled\""), 1);
}

/* The delays the agent logged ("reconnect scheduled" in_ms=N), in order. */
static size_t
reconnect_delays(int64_t *delays, size_t max)
{
    size_t n = 0;
    const char *p = test_log_captured();
    while (n < max && (p = strstr(p, "reconnect scheduled")) != NULL) {
        const char *in = strstr(p, "in_ms=");
        assert_non_null(in);
        delays[n++] = strtoll(in + 6, NULL, 10);
        p = in;
    }
    return n;
}

static void
test_agent_reconnects_with_backoff_while_the_controller_is_away(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 1);
    enroll_and_come_online(f);
    controller_down(f);
    run_until_state(f, AGENT_RECONNECTING);
    /* Three attempts inside the budget, then the slow pace. */
    run_until_logged(f, "controller unreachable: retry budget exhausted", 1);
    run_until_logged(f, "reconnect scheduled", 5);
    int64_t delays[5];
    assert_int_equal(reconnect_delays(delays, 5), 5);
    /* Full jitter under a ceiling that doubles from 10 ms: 10, 20, 40, then
     * the 80 ms cap once the budget is spent. */
    assert_true(delays[0] >= 0 && delays[0] <= 10);
    assert_true(delays[1] >= 0 && delays[1] <= 20);
    assert_true(delays[2] >= 0 && delays[2] <= 40);
    assert_int_equal(delays[3], 80);
    assert_int_equal(delays[4], 80);
    assert_int_equal(agent_current_state(f->agent), AGENT_RECONNECTING);
    /* SIGHUP's retry-now resets the budget. */
    agent_retry_now(f->agent);
    assert_non_null(strstr(test_log_captured(), "SIGHUP: retrying the controller now"));
    controller_up(f);
    run_until_state(f, AGENT_ONLINE);
    assert_int_equal(count_lines("control-plane stream connected"), 2);
    assert_int_equal(agent_exit_code(f->agent), -1);
}

/* The controller goes away; time passes beyond the certificate's
 * not_after; the controller comes back. */
static void
expire_while_down(struct fixture *f)
{
    controller_down(f);
    run_until_state(f, AGENT_RECONNECTING);
    clock_manual_advance(&f->clock, (AGENT_SVID_TTL_S + 10) * 1000LL);
    controller_up(f);
}

static void
test_expired_certificate_is_replaced_with_a_reusable_token(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 5);
    enroll_and_come_online(f);
    expire_while_down(f);
    run_until_logged(f, "re-enrolling with the retained token", 1);
    run_until_state(f, AGENT_ONLINE);
    assert_int_equal(count_lines("msg=\"enrolled\""), 2);
    /* The new certificate is valid now. */
    char *cert = test_path(f->agent_dir, "cert.pem");
    size_t len;
    char *pem = test_read_file(cert, &len);
    struct pki_chain *chain;
    struct ztr_err err = {0};
    assert_int_equal(pki_chain_from_pem(pem, len, &chain, &err), 0);
    size_t der_len;
    const uint8_t *der = pki_chain_der(chain, 0, &der_len);
    struct pki_cert_info info;
    assert_int_equal(pki_cert_info_parse(der, der_len, &info, &err), 0);
    assert_true(info.not_after > clock_wall_s(&f->clock));
    pki_chain_free(chain);
    free(pem);
    free(cert);
}

/* A key that belongs to no certificate: what a crash left beside one. */
static void
write_stray_key(struct fixture *f, const char *name)
{
    struct pki_key *key;
    char *pem;
    size_t len;
    struct ztr_err err = {0};
    assert_int_equal(pki_key_generate(&key, &err), 0);
    assert_int_equal(pki_key_to_pem(key, &pem, &len, &err), 0);
    char *path = test_path(f->agent_dir, name);
    test_write_file(path, pem);
    free(path);
    free(pem);
    pki_key_free(key);
}

static void
move_state_file(struct fixture *f, const char *from, const char *to)
{
    char *a = test_path(f->agent_dir, from), *b = test_path(f->agent_dir, to);
    assert_int_equal(rename(a, b), 0);
    free(a);
    free(b);
}

static bool
state_file_exists(struct fixture *f, const char *name)
{
    struct stat st;
    char *path = test_path(f->agent_dir, name);
    bool exists = stat(path, &st) == 0;
    free(path);
    return exists;
}

static void
restart_comes_online(struct fixture *f)
{
    agent_free(f->agent);
    f->agent = NULL;
    start_agent(f);
    run_until_state(f, AGENT_ONLINE);
    assert_false(state_file_exists(f, "key.pem.new"));
    assert_false(state_file_exists(f, "cert.pem.new"));
}

/* A key and certificate change is staged as key.pem.new then cert.pem.new
 * (the commit point) and renamed into place. Each crash point is made by
 * hand here; the restarted agent always loads a matching pair. */
static void
test_torn_identity_change_is_settled_on_start(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 1);
    enroll_and_come_online(f);
    f->settings.enrollment_token[0] = '\0';

    /* Crash after the staged key only: dropped, the old pair kept. */
    write_stray_key(f, "key.pem.new");
    restart_comes_online(f);
    assert_int_equal(count_lines("discarded, previous identity kept"), 1);

    /* Crash after the commit point, before either rename: key.pem is the
     * stray one, the real pair is staged. Completed. */
    move_state_file(f, "key.pem", "key.pem.new");
    move_state_file(f, "cert.pem", "cert.pem.new");
    write_stray_key(f, "key.pem");
    restart_comes_online(f);
    assert_int_equal(count_lines("identity change interrupted by a crash: completed"), 1);

    /* Crash between the two renames: the key is in place, the certificate
     * staged, and cert.pem gone. Completed. */
    move_state_file(f, "cert.pem", "cert.pem.new");
    restart_comes_online(f);
    assert_int_equal(count_lines("identity change interrupted by a crash: completed"), 2);
    assert_int_equal(count_lines("msg=\"enrolled\""), 1);
}

static void
test_expired_certificate_without_a_usable_token_ends_expired(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 1); /* used up by the first enrollment */
    enroll_and_come_online(f);
    expire_while_down(f);
    /* Each retry is refused (invalid token); after 3 the agent gives up. */
    run_until_state(f, AGENT_EXPIRED);
    assert_non_null(strstr(test_log_captured(), "re-enrollment failed; issue a new token"));
    assert_int_equal(count_lines("msg=\"invalid enrollment token\""), 3);
    assert_int_equal(agent_exit_code(f->agent), -1); /* EXPIRED keeps /health up */
    /* Started again with no token at all: EXPIRED at once, with the hint. */
    agent_free(f->agent);
    f->agent = NULL;
    f->settings.enrollment_token[0] = '\0';
    start_agent(f);
    assert_int_equal(agent_current_state(f->agent), AGENT_EXPIRED);
    assert_non_null(strstr(test_log_captured(),
                           "certificate expired and no ENROLLMENT_TOKEN is configured"));
}

static void
test_revoked_node_stops_with_status_3(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 1);
    enroll_and_come_online(f);
    json_t *node = node_file(f);
    const char *id = json_string_value(json_object_get(node, "node_id"));
    struct ztr_err err = {0};
    assert_int_equal(store_node_revoke(f->c.store, id, "test revocation", &err), 0);
    ctl_server_revoke(f->c.ctl, id, "test revocation");
    json_decref(node);
    run_until_state(f, AGENT_STATE_COUNT);
    assert_int_equal(agent_exit_code(f->agent), AGENT_EXIT_REVOKED);
    assert_int_equal(agent_current_state(f->agent), AGENT_REVOKED);
    assert_non_null(strstr(test_log_captured(), "node revoked by the controller"));
}

static void
test_agent_new_checks_its_settings(void **state)
{
    struct fixture *f = *state;
    struct ztr_err err = {0};
    struct agent *agent = NULL;
    f->settings.trust_domain[0] = '\0';
    assert_int_equal(agent_new(f->loop, &f->clock, &f->spec, &f->settings, &agent, &err), -1);
    assert_string_equal(err.msg, "TRUST_DOMAIN is required");
    snprintf(f->settings.trust_domain, sizeof(f->settings.trust_domain), TD);
    f->settings.reconnect_max_delay_ms = 5;
    assert_int_equal(agent_new(f->loop, &f->clock, &f->spec, &f->settings, &agent, &err), -1);
    assert_string_equal(err.msg, "RECONNECT_MAX_DELAY: must be at least RECONNECT_MIN_DELAY "
                                 "(and both above 0)");
    assert_null(agent);
    /* No token and no identity: the failure-modes text, exit status 2. */
    f->settings.reconnect_max_delay_ms = 80;
    assert_int_equal(agent_new(f->loop, &f->clock, &f->spec, &f->settings, &f->agent, &err), 0);
    assert_int_equal(agent_start(f->agent, &err), -1);
    assert_non_null(strstr(err.msg, AGENT_MSG_TOKEN_REQUIRED));
    assert_int_equal(agent_exit_code(f->agent), AGENT_EXIT_CONFIG);
}

static int
group_setup(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    return pki_init(&err);
}

static int
group_teardown(void **state)
{
    (void)state;
    pki_cleanup();
    return 0;
}

#define AGENT_TEST(fn) cmocka_unit_test_setup_teardown(fn, agent_setup, agent_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_transition_table_follows_the_design),
        cmocka_unit_test(test_renewal_at_half_life_with_bounded_jitter),
        AGENT_TEST(test_agent_enrolls_with_a_token_and_comes_online),
        AGENT_TEST(test_agent_reconnects_with_backoff_while_the_controller_is_away),
        AGENT_TEST(test_expired_certificate_is_replaced_with_a_reusable_token),
        AGENT_TEST(test_expired_certificate_without_a_usable_token_ends_expired),
        AGENT_TEST(test_torn_identity_change_is_settled_on_start),
        AGENT_TEST(test_revoked_node_stops_with_status_3),
        AGENT_TEST(test_agent_new_checks_its_settings),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
