/*
 * The agent core: its pure parts (the state table, the renewal schedule),
 * then a real agent (agent_new on this test's own loop and a manual clock)
 * against a real controller in the same process: the store in a temporary
 * directory, the managed CA, the mTLS control-plane listener on 127.0.0.1.
 * Nothing is faked; the manual clock moves only when a test says so, which
 * is how a certificate expires (the agent notices it at its next heartbeat
 * or connection, within a second of real time) and how re-authentication
 * by proof of possession, its circuit breaker and revocation are driven.
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
#include <unistd.h>

#include "agent/agent.h"
#include "agent/internal.h"
#include "base/clock.h"
#include "base/fileio.h"
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
    /* An expiry leaves every connected state for REAUTHENTICATING, never
     * straight for ONLINE or EXPIRED. */
    const enum agent_state connected[] = {AGENT_CONNECTING, AGENT_ONLINE, AGENT_RENEWING,
                                          AGENT_RECONNECTING};
    for (size_t i = 0; i < sizeof(connected) / sizeof(connected[0]); i++) {
        assert_true(agent_transition_allowed(connected[i], AGENT_REAUTHENTICATING));
        assert_false(agent_transition_allowed(connected[i], AGENT_EXPIRED));
        assert_false(agent_transition_allowed(connected[i], AGENT_ENROLLING));
    }
    /* A re-authentication ends in a new identity (CONNECTING), EXPIRED or
     * REVOKED; EXPIRED only ever starts the next attempt. */
    for (int to = 0; to < AGENT_STATE_COUNT; to++) {
        assert_int_equal(agent_transition_allowed(AGENT_REAUTHENTICATING, (enum agent_state)to),
                         to == AGENT_CONNECTING || to == AGENT_EXPIRED || to == AGENT_REVOKED);
        assert_int_equal(agent_transition_allowed(AGENT_EXPIRED, (enum agent_state)to),
                         to == AGENT_REAUTHENTICATING);
        assert_false(agent_transition_allowed(AGENT_REVOKED, (enum agent_state)to));
        assert_false(agent_transition_allowed((enum agent_state)to, (enum agent_state)to));
    }
    assert_false(agent_transition_allowed(AGENT_ONLINE, AGENT_UNENROLLED));
    assert_false(agent_transition_allowed(AGENT_STATE_COUNT, AGENT_ONLINE));
    assert_string_equal(agent_state_name(AGENT_REAUTHENTICATING), "REAUTHENTICATING");
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
    c->settings.reauth_grace_s = 7 * 86400;
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
    s->reauth_on_expiry = true;
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

static char *
read_state_file(struct fixture *f, const char *name)
{
    char *path = test_path(f->agent_dir, name), *text = NULL;
    struct ztr_err err = {0};
    assert_int_equal(file_read_all(path, 1 << 20, &text, NULL, &err), 0);
    free(path);
    return text;
}

/* The enrollment key is on disk before the controller is asked, is the
 * one enrolled, and goes once key.pem holds it. An agent that lost the
 * answer (only enroll-key.pem left) enrolls again with that key and the
 * used-up single-use token, and gets the same node back. */
static void
test_enrollment_key_is_kept_and_a_lost_answer_is_asked_again(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 1);
    assert_int_equal(mkdir(f->agent_dir, 0700), 0);
    write_stray_key(f, "enroll-key.pem");
    char *pending = read_state_file(f, "enroll-key.pem");
    enroll_and_come_online(f);
    assert_int_equal(count_lines("enrolling with the pending key kept by an earlier attempt"), 1);
    char *key = read_state_file(f, "key.pem");
    assert_string_equal(key, pending);
    free(key);
    assert_false(state_file_exists(f, "enroll-key.pem"));
    json_t *node = node_file(f);
    char *first_id = strdup(json_string_value(json_object_get(node, "node_id")));
    json_decref(node);

    /* The answer lost: the kept key alone, the token used up. */
    move_state_file(f, "key.pem", "enroll-key.pem");
    char *cert = test_path(f->agent_dir, "cert.pem");
    assert_int_equal(unlink(cert), 0);
    free(cert);
    restart_comes_online(f);
    assert_int_equal(count_lines("msg=\"node enrollment retried\""), 1);
    node = node_file(f);
    assert_string_equal(json_string_value(json_object_get(node, "node_id")), first_id);
    json_decref(node);
    key = read_state_file(f, "key.pem");
    assert_string_equal(key, pending);
    free(key);
    assert_false(state_file_exists(f, "enroll-key.pem"));
    free(first_id);
    free(pending);
}

/* ---- expiry, re-authentication, the breaker, revocation ---------------------- */

/* GET /health from the agent, parsed; *status gets the HTTP status. */
static json_t *
health(struct fixture *f, int *status)
{
    struct http_request request = {.method = "GET", .path = "/health", .query = "", .body = ""};
    struct http_response response = {0};
    agent_health_handler(f->agent, &request, &response);
    json_t *body = json_loads(response.body, 0, NULL);
    assert_non_null(body);
    free(response.body);
    if (status != NULL)
        *status = response.status;
    return body;
}

static json_int_t
health_int(struct fixture *f, const char *flat_key)
{
    json_t *h = health(f, NULL);
    json_int_t v = json_integer_value(json_object_get(h, flat_key));
    json_decref(h);
    return v;
}

static json_int_t
reauth_field(struct fixture *f, const char *key)
{
    json_t *h = health(f, NULL);
    json_t *v = json_object_get(json_object_get(h, "reauth"), key);
    json_int_t out = json_is_boolean(v) ? json_is_true(v) : json_integer_value(v);
    json_decref(h);
    return out;
}

static int64_t
stored_not_after(struct fixture *f)
{
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
    pki_chain_free(chain);
    free(pem);
    free(cert);
    return info.not_after;
}

static char *
node_id_of(struct fixture *f)
{
    json_t *node = node_file(f);
    char *id = strdup(json_string_value(json_object_get(node, "node_id")));
    json_decref(node);
    return id;
}

/* Moves the manual clock past the agent's not_after (less than the
 * controller's 60 s backdating, so real-time handshakes still pass). */
static void
pass_not_after(struct fixture *f)
{
    int64_t left = stored_not_after(f) - clock_wall_s(&f->clock);
    clock_manual_advance(&f->clock, (left + 2) * 1000);
}

/* The certificate runs out while the agent is ONLINE and renewals do not
 * happen (the renewal timer runs on real time, the manual clock jumped):
 * the agent leaves ONLINE by itself, /health turns 503, auth.expired
 * counts it once, one line says so; the key proves the node and it is
 * ONLINE again with a new certificate under the same node id — no token. */
static void
test_expiry_while_online_reauthenticates_by_proof_of_possession(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 1);
    enroll_and_come_online(f);
    f->settings.enrollment_token[0] = '\0';
    char *id = node_id_of(f);
    int64_t first = stored_not_after(f);
    int status;
    json_decref(health(f, &status));
    assert_int_equal(status, 200);
    assert_int_equal(health_int(f, "telemetry.auth.expired"), 0);
    pass_not_after(f);
    run_until_state(f, AGENT_REAUTHENTICATING);
    json_t *h = health(f, &status);
    assert_int_equal(status, 503);
    assert_false(json_is_true(json_object_get(json_object_get(h, "agent"), "connected")));
    json_decref(h);
    assert_int_equal(health_int(f, "telemetry.auth.expired"), 1);
    assert_int_equal(count_lines("msg=\"certificate expired\""), 1);
    run_until_state(f, AGENT_ONLINE);
    assert_int_equal(count_lines("msg=\"re-authenticated\""), 1);
    assert_non_null(strstr(test_log_captured(), "method=proof-of-possession"));
    assert_int_equal(count_lines("msg=\"enrolled\""), 1); /* the first one only */
    assert_true(stored_not_after(f) > clock_wall_s(&f->clock));
    assert_true(stored_not_after(f) > first);
    char *again = node_id_of(f);
    assert_string_equal(again, id);
    /* Registered: the anchor is released, the breaker at 0. */
    assert_null(f->agent->reauth_anchor);
    assert_int_equal(reauth_field(f, "failures"), 0);
    assert_int_equal(health_int(f, "telemetry.auth.expired"), 1);
    json_decref(health(f, &status));
    assert_int_equal(status, 200);
    free(id);
    free(again);
}

/* The controller cannot be reached when the certificate runs out: one
 * attempt, whose connection retries on the backoff without being counted
 * as refused, and succeeds once the controller is back. */
static void
test_expired_while_the_controller_is_away_retries_the_same_attempt(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 1);
    enroll_and_come_online(f);
    controller_down(f);
    run_until_state(f, AGENT_RECONNECTING);
    pass_not_after(f);
    run_until_state(f, AGENT_REAUTHENTICATING);
    run_until_logged(f, "reconnect scheduled", 6);
    assert_int_equal(agent_current_state(f->agent), AGENT_REAUTHENTICATING);
    assert_int_equal(count_lines("msg=\"re-authenticating\""), 1);
    assert_int_equal(reauth_field(f, "failures"), 0);
    assert_true(health_int(f, "telemetry.auth.unavailable") >= 3);
    controller_up(f);
    run_until_state(f, AGENT_ONLINE);
    assert_int_equal(count_lines("msg=\"re-authenticating\""), 1);
    assert_int_equal(count_lines("msg=\"re-authenticated\""), 1);
}

/* REAUTH_ON_EXPIRY=false: the retained token is the only way, and one
 * with uses left re-enrolls the node under its id. */
static void
test_reauth_off_uses_a_reusable_token(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 5);
    f->settings.reauth_on_expiry = false;
    enroll_and_come_online(f);
    char *id = node_id_of(f);
    pass_not_after(f);
    run_until_logged(f, "re-enrolling with the retained token", 1);
    run_until_state(f, AGENT_ONLINE);
    assert_non_null(strstr(test_log_captured(), "method=token"));
    assert_null(strstr(test_log_captured(), "reauth_begin"));
    char *again = node_id_of(f);
    assert_string_equal(again, id);
    assert_true(stored_not_after(f) > clock_wall_s(&f->clock));
    free(id);
    free(again);
}

static bool
verdict_on_disk(struct fixture *f)
{
    return state_file_exists(f, "reauth.json");
}

/* Past REAUTH_GRACE every proof is refused: one attempt per transition
 * into REAUTHENTICATING, three in a row, then EXPIRED for good — no fourth
 * attempt, the verdict on disk, a restart stays EXPIRED without trying,
 * and a new token (the hint's fix) brings the node back. */
static void
test_breaker_settles_expired_after_three_refusals_and_persists(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 1);
    enroll_and_come_online(f);
    f->settings.enrollment_token[0] = '\0';
    f->c.settings.reauth_grace_s = 0;
    pass_not_after(f);
    run_until_logged(f, "re-authentication failed; this node needs an operator", 1);
    assert_int_equal(agent_current_state(f->agent), AGENT_EXPIRED);
    assert_int_equal(count_lines("msg=\"re-authenticating\""), 3);
    assert_int_equal(count_lines("from=REAUTHENTICATING to=EXPIRED"), 3);
    assert_int_equal(count_lines("to=REAUTHENTICATING"), 3);
    /* Each attempt: the key refused (past the grace), then the retained,
     * spent token refused — one attempt, one count. */
    assert_int_equal(count_lines("msg=\"re-authentication attempt refused\" method=token"), 3);
    assert_non_null(strstr(test_log_captured(), "controller token create --role tunneler "
                                                "--name t1 --replace"));
    assert_int_equal(reauth_field(f, "failures"), 3);
    assert_int_equal(reauth_field(f, "terminal"), 1);
    assert_true(verdict_on_disk(f));
    assert_int_equal(agent_exit_code(f->agent), -1); /* stays up, /health answers */
    int status;
    json_decref(health(f, &status));
    assert_int_equal(status, 503);
    /* No fourth attempt, however long it waits; SIGHUP does not retry. */
    agent_retry_now(f->agent);
    int64_t until = clock_monotonic_ms(clock_system()) + 400;
    while (clock_monotonic_ms(clock_system()) < until)
        ev_run(f->loop, EVRUN_ONCE);
    assert_int_equal(count_lines("msg=\"re-authenticating\""), 3);
    /* A restart keeps the verdict. */
    agent_free(f->agent);
    f->agent = NULL;
    start_agent(f);
    assert_int_equal(agent_current_state(f->agent), AGENT_EXPIRED);
    assert_non_null(strstr(test_log_captured(), "re-authentication failed before this start"));
    until = clock_monotonic_ms(clock_system()) + 300;
    while (clock_monotonic_ms(clock_system()) < until)
        ev_run(f->loop, EVRUN_ONCE);
    assert_int_equal(count_lines("msg=\"re-authenticating\""), 3);
    /* The fix: a new token and a restart. */
    agent_free(f->agent);
    f->agent = NULL;
    issue_token(f, 1);
    start_agent(f);
    run_until_state(f, AGENT_ONLINE);
    assert_false(verdict_on_disk(f));
    assert_non_null(strstr(test_log_captured(), "msg=\"re-enrolling with the retained token\""));
}

/* Two refusals, then the controller accepts: the counter resets at the
 * register, so the next expiry has three attempts again — inside one
 * process. The anchor is the original key throughout the refused attempts. */
static void
test_breaker_resets_on_register_inside_one_process(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 1);
    enroll_and_come_online(f);
    f->settings.enrollment_token[0] = '\0';
    uint8_t *original = NULL;
    size_t original_len = 0;
    struct ztr_err err = {0};
    assert_int_equal(pki_key_public_der(f->agent->key, &original, &original_len, &err), 0);
    f->c.settings.reauth_grace_s = 0;
    pass_not_after(f);
    run_until_logged(f, "from=REAUTHENTICATING to=EXPIRED", 2);
    assert_int_equal(reauth_field(f, "failures"), 2);
    /* Captured once: still the expired certificate's key. */
    uint8_t *anchor;
    size_t anchor_len;
    assert_int_equal(pki_key_public_der(f->agent->reauth_anchor, &anchor, &anchor_len, &err), 0);
    assert_int_equal(pki_public_key_equal(original, original_len, anchor, anchor_len, &err), 1);
    free(anchor);
    f->c.settings.reauth_grace_s = 7 * 86400;
    run_until_state(f, AGENT_ONLINE);
    assert_int_equal(reauth_field(f, "failures"), 0);
    assert_null(f->agent->reauth_anchor);
    assert_int_equal(count_lines("msg=\"re-authenticating\""), 3);
    /* Expired again: three fresh attempts before the breaker trips. */
    f->c.settings.reauth_grace_s = 0;
    pass_not_after(f);
    run_until_logged(f, "re-authentication failed; this node needs an operator", 1);
    assert_int_equal(count_lines("from=REAUTHENTICATING to=EXPIRED"), 2 + 3);
    assert_int_equal(count_lines("msg=\"re-authenticating\""), 3 + 3);
    free(original);
}

/* The node is revoked while ONLINE: the agent stays up in REVOKED, /health
 * 503 with telemetry.auth.revoked = 1, and it never reconnects. A stop then
 * exits 3 (process_stop; here: agent_exit_code stays -1 while it runs). */
static void
test_revoked_node_stays_up_in_revoked(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 1);
    enroll_and_come_online(f);
    char *id = node_id_of(f);
    struct ztr_err err = {0};
    assert_int_equal(store_node_revoke(f->c.store, id, "test revocation", &err), 0);
    ctl_server_revoke(f->c.ctl, id, "test revocation");
    free(id);
    run_until_state(f, AGENT_REVOKED);
    int64_t until = clock_monotonic_ms(clock_system()) + 300;
    while (clock_monotonic_ms(clock_system()) < until)
        ev_run(f->loop, EVRUN_ONCE);
    assert_int_equal(agent_exit_code(f->agent), -1);
    int status;
    json_t *h = health(f, &status);
    assert_int_equal(status, 503);
    assert_string_equal(json_string_value(json_object_get(h, "state")), "REVOKED");
    assert_int_equal(json_integer_value(json_object_get(h, "telemetry.auth.revoked")), 1);
    json_decref(h);
    assert_non_null(strstr(test_log_captured(), "msg=\"node revoked by the controller\""));
    assert_non_null(strstr(test_log_captured(), "telemetry.auth.revoked=1"));
    assert_int_equal(count_lines("control-plane stream connected"), 1);
    assert_int_equal(count_lines("reconnect scheduled"), 0);
    agent_retry_now(f->agent);
    assert_int_equal(agent_current_state(f->agent), AGENT_REVOKED);
}

/* The controller's own end, with its clock alone past not_after (the
 * agent's still says valid): the heartbeat is refused, the session closed
 * with "peer certificate expired", and the node shown EXPIRED. */
static void
test_controller_refuses_heartbeats_after_not_after(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 1);
    enroll_and_come_online(f);
    char *id = node_id_of(f);
    struct ztr_clock ahead;
    clock_manual_init(&ahead, clock_wall_ms(&f->clock));
    clock_manual_advance(&ahead, (AGENT_SVID_TTL_S + 5) * 1000LL);
    f->c.clock = &ahead;
    run_until_logged(f, "msg=\"heartbeat refused\"", 1);
    run_until_logged(f, "reason=\"peer certificate expired\"", 1);
    assert_non_null(strstr(test_log_captured(), "msg=\"node disconnected\""));
    f->c.clock = &f->clock;
    struct store_node node;
    struct ztr_err err = {0};
    assert_int_equal(store_node_get(f->c.store, id, &node, &err), 0);
    assert_string_equal(store_node_status_name(&node, clock_wall_s(&ahead)), "EXPIRED");
    assert_string_equal(store_node_status_name(&node, clock_wall_s(&f->clock)), "OFFLINE");
    free(id);
}

/* agent.connected and telemetry.auth.unavailable follow the stream: true
 * and 0 while ONLINE; false and counting while the controller is away. */
static void
test_connected_and_unavailable_follow_the_stream(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 1);
    enroll_and_come_online(f);
    json_t *h = health(f, NULL);
    assert_true(json_is_true(json_object_get(json_object_get(h, "agent"), "connected")));
    assert_int_equal(json_integer_value(json_object_get(h, "telemetry.auth.unavailable")), 0);
    json_decref(h);
    controller_down(f);
    run_until_logged(f, "reconnect scheduled", 3);
    h = health(f, NULL);
    assert_false(json_is_true(json_object_get(json_object_get(h, "agent"), "connected")));
    assert_true(json_integer_value(json_object_get(h, "telemetry.auth.unavailable")) >= 2);
    json_decref(h);
    controller_up(f);
    run_until_state(f, AGENT_ONLINE);
    h = health(f, NULL);
    assert_true(json_is_true(json_object_get(json_object_get(h, "agent"), "connected")));
    json_decref(h);
}

/* A certificate without its key, and a key without its certificate, are
 * refused at start with the documented text (exit 2) — never an
 * enrollment over them, even with a token at hand. */
static void
test_partial_identity_is_refused_never_a_fallback(void **state)
{
    struct fixture *f = *state;
    issue_token(f, 1);
    enroll_and_come_online(f);
    agent_free(f->agent);
    f->agent = NULL;
    struct ztr_err err = {0};
    issue_token(f, 1); /* a usable token: it must stay unused */
    /* cert.pem without key.pem */
    move_state_file(f, "key.pem", "key.pem.aside");
    assert_int_equal(agent_new(f->loop, &f->clock, &f->spec, &f->settings, &f->agent, &err), 0);
    assert_int_equal(agent_start(f->agent, &err), -1);
    assert_non_null(strstr(err.msg, AGENT_MSG_IDENTITY_INCOMPLETE ": cert.pem without key.pem"));
    assert_int_equal(agent_exit_code(f->agent), AGENT_EXIT_CONFIG);
    agent_free(f->agent);
    f->agent = NULL;
    /* key.pem without cert.pem */
    move_state_file(f, "key.pem.aside", "key.pem");
    move_state_file(f, "cert.pem", "cert.pem.aside");
    assert_int_equal(agent_new(f->loop, &f->clock, &f->spec, &f->settings, &f->agent, &err), 0);
    assert_int_equal(agent_start(f->agent, &err), -1);
    assert_non_null(strstr(err.msg, AGENT_MSG_IDENTITY_INCOMPLETE ": key.pem without cert.pem"));
    assert_int_equal(agent_exit_code(f->agent), AGENT_EXIT_CONFIG);
    agent_free(f->agent);
    f->agent = NULL;
    /* A key that is not the certificate's */
    move_state_file(f, "cert.pem.aside", "cert.pem");
    write_stray_key(f, "key.pem");
    assert_int_equal(agent_new(f->loop, &f->clock, &f->spec, &f->settings, &f->agent, &err), 0);
    assert_int_equal(agent_start(f->agent, &err), -1);
    assert_non_null(strstr(err.msg, "key.pem is not the key of cert.pem"));
    assert_int_equal(count_lines("msg=\"enrolled\""), 1);
    assert_int_equal(ctl_server_session_count(f->c.ctl), 0);
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

/* ---- explain over the control stream --------------------------------------- */

struct explain_seen {
    int asked;             /* requests the daemon's hook saw */
    bool silent;           /* the hook answers nothing */
    int done;              /* answers (or failures) the controller got */
    json_t *answer;
    char failure[128];
};

static json_t *
daemon_explain(void *ctx, const json_t *request)
{
    struct explain_seen *seen = ctx;
    seen->asked++;
    assert_string_equal(json_string_value(json_object_get(request, "resource")), "web");
    if (seen->silent)
        return NULL;
    return json_pack("{s:I, s:b, s:b, s:b, s:b, s:s, s:s, s:s}", "allowlist_version", 5,
                     "stale", 0, "on_allowlist", 1, "permitted", 1, "serves", 1, "target",
                     "127.0.0.1:1", "verdict", "allow", "reason", "");
}

static void
explain_done(void *ctx, const json_t *answer, const char *failure)
{
    struct explain_seen *seen = ctx;
    seen->done++;
    seen->answer = answer != NULL ? json_deep_copy(answer) : NULL;
    snprintf(seen->failure, sizeof(seen->failure), "%s", failure != NULL ? failure : "");
}

static void
run_until_done(struct fixture *f, const struct explain_seen *seen, int done)
{
    int64_t deadline = clock_monotonic_ms(clock_system()) + WAIT_MS;
    while (seen->done < done) {
        if (clock_monotonic_ms(clock_system()) >= deadline)
            fail_msg("no explain answer");
        ev_run(f->loop, EVRUN_ONCE);
    }
}

/* A connector asked by the controller answers on the same stream through
 * the daemon's hook; one request at a time per session; a silent one is
 * "did not answer" after the time-out; a node without a session here is
 * not asked. */
static void
test_connector_answers_explain_over_its_control_stream(void **state)
{
    struct fixture *f = *state;
    struct explain_seen seen = {0};
    struct token_request request = {.role = "connector", .name = "t1", .uses = 1,
                                    .ttl_s = 86400};
    struct store_token record;
    struct ztr_err err = {0};
    char *text = NULL;
    assert_int_equal(token_create(&f->c, &request, &text, &record, &err), 0);
    snprintf(f->settings.enrollment_token, sizeof(f->settings.enrollment_token), "%s", text);
    free(text);
    f->spec.role = PKI_ROLE_CONNECTOR;
    f->spec.explain = daemon_explain;
    f->spec.ctx = &seen;
    enroll_and_come_online(f);
    char *id = node_id_of(f);
    const char *tunneler = "spiffe://" TD "/tunneler/laptop";

    assert_int_equal(ctl_server_explain_ask(f->c.ctl, id, tunneler, "web", 2000, explain_done,
                                            &seen, &err), 0);
    assert_int_equal(ctl_server_explain_ask(f->c.ctl, id, tunneler, "web", 2000, explain_done,
                                            &seen, &err), -1);
    assert_int_equal(err.code, ZTR_E_LIMIT);
    run_until_done(f, &seen, 1);
    assert_int_equal(seen.asked, 1);
    assert_non_null(seen.answer);
    assert_string_equal(json_string_value(json_object_get(seen.answer, "verdict")), "allow");
    assert_int_equal(json_integer_value(json_object_get(seen.answer, "allowlist_version")), 5);
    json_decref(seen.answer);

    seen.silent = true;
    assert_int_equal(ctl_server_explain_ask(f->c.ctl, id, tunneler, "web", 100, explain_done,
                                            &seen, &err), 0);
    run_until_done(f, &seen, 2);
    assert_int_equal(seen.asked, 2);
    assert_null(seen.answer);
    assert_string_equal(seen.failure, CTL_EXPLAIN_NO_ANSWER);

    memset(&err, 0, sizeof(err));
    assert_int_equal(ctl_server_explain_ask(f->c.ctl, "no-such-node", tunneler, "web", 100,
                                            explain_done, &seen, &err), -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
    free(id);
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
        AGENT_TEST(test_torn_identity_change_is_settled_on_start),
        AGENT_TEST(test_enrollment_key_is_kept_and_a_lost_answer_is_asked_again),
        AGENT_TEST(test_expiry_while_online_reauthenticates_by_proof_of_possession),
        AGENT_TEST(test_expired_while_the_controller_is_away_retries_the_same_attempt),
        AGENT_TEST(test_reauth_off_uses_a_reusable_token),
        AGENT_TEST(test_breaker_settles_expired_after_three_refusals_and_persists),
        AGENT_TEST(test_breaker_resets_on_register_inside_one_process),
        AGENT_TEST(test_revoked_node_stays_up_in_revoked),
        AGENT_TEST(test_connector_answers_explain_over_its_control_stream),
        AGENT_TEST(test_controller_refuses_heartbeats_after_not_after),
        AGENT_TEST(test_connected_and_unavailable_follow_the_stream),
        AGENT_TEST(test_partial_identity_is_refused_never_a_fallback),
        AGENT_TEST(test_agent_new_checks_its_settings),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
