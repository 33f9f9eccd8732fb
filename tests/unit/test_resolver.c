/* Host-name lookups off the loop, and CONTROLLER_ADDR lists. */
#include "tests/unit/support.h"

#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <string.h>

#include "agent/agent.h"
#include "net/resolver.h"

struct answer {
    int calls;
    struct sockaddr_storage sa;
    bool found;
    char error[ZTR_ERR_MSG_MAX];
};

static void
on_answer(void *user, const struct net_addrs *addrs, const struct ztr_err *err)
{
    struct answer *a = user;
    a->calls++;
    a->found = addrs != NULL;
    if (addrs != NULL) {
        assert_true(addrs->count >= 1 && addrs->count <= NET_RESOLVE_MAX);
        a->sa = addrs->sa[0];
    } else
        snprintf(a->error, sizeof(a->error), "%s", err->msg);
}

static void
assert_ipv4(const struct answer *a, const char *ip, uint16_t port)
{
    assert_true(a->found);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->sa;
    assert_int_equal(sin->sin_family, AF_INET);
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
    assert_string_equal(text, ip);
    assert_int_equal(ntohs(sin->sin_port), port);
}

static void
test_numeric_address_answers_on_the_loop(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(0);
    struct net_resolver *r;
    struct ztr_err err = {0};
    assert_int_equal(net_resolver_new(loop, &r, &err), 0);
    struct answer a = {0};
    assert_int_equal(net_resolver_start(r, "127.0.0.9:7443", on_answer, &a, &err), 0);
    /* Never from inside start: callers have one path. */
    assert_int_equal(a.calls, 0);
    assert_true(net_resolver_busy(r));
    TEST_LOOP_UNTIL(loop, a.calls > 0);
    assert_int_equal(a.calls, 1);
    assert_ipv4(&a, "127.0.0.9", 7443);
    assert_false(net_resolver_busy(r));
    net_resolver_free(r);
    ev_loop_destroy(loop);
}

/* A name from /etc/hosts (glibc matches it case-insensitively; the
 * numeric parser knows only "localhost"), resolved on the lookup thread. */
static void
test_host_name_is_looked_up_off_the_loop(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(0);
    struct net_resolver *r;
    struct ztr_err err = {0};
    assert_int_equal(net_resolver_new(loop, &r, &err), 0);
    assert_false(net_addr_is_numeric("LOCALHOST:7443"));
    struct answer a = {0};
    assert_int_equal(net_resolver_start(r, "LOCALHOST:7443", on_answer, &a, &err), 0);
    assert_int_equal(net_resolver_start(r, "LOCALHOST:7443", on_answer, &a, &err), -1);
    assert_int_equal(err.code, ZTR_E_LIMIT);
    TEST_LOOP_UNTIL(loop, a.calls > 0);
    assert_int_equal(a.calls, 1);
    assert_ipv4(&a, "127.0.0.1", 7443);
    /* Again: every start is a new lookup. */
    assert_int_equal(net_resolver_start(r, "LOCALHOST:80", on_answer, &a, &err), 0);
    TEST_LOOP_UNTIL(loop, a.calls > 1);
    assert_ipv4(&a, "127.0.0.1", 80);
    net_resolver_free(r);
    ev_loop_destroy(loop);
}

/* A lookup cancelled (or its resolver freed) never calls back; the lookup
 * thread finishes on its own and frees what it shares (ASan checks). */
static void
test_cancelled_lookup_never_calls_back(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(0);
    struct net_resolver *r;
    struct ztr_err err = {0};
    assert_int_equal(net_resolver_new(loop, &r, &err), 0);
    struct answer a = {0};
    assert_int_equal(net_resolver_start(r, "LOCALHOST:1", on_answer, &a, &err), 0);
    net_resolver_cancel(r);
    assert_false(net_resolver_busy(r));
    double end = test_now() + 0.3;
    while (test_now() < end)
        test_loop_once(loop);
    assert_int_equal(a.calls, 0);
    assert_int_equal(net_resolver_start(r, "LOCALHOST:2", on_answer, &a, &err), 0);
    net_resolver_free(r);
    end = test_now() + 0.3;
    while (test_now() < end)
        test_loop_once(loop);
    assert_int_equal(a.calls, 0);
    ev_loop_destroy(loop);
}

static void
test_malformed_addresses_are_refused_before_any_lookup(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "ctl.example.org",        /* no port */
        "ctl..example.org:7443",  /* empty label */
        "-ctl.example.org:7443",  /* label starts with a hyphen */
        "ctl-.example.org:7443",
        "ctl_1.example.org:7443", /* underscore */
        "ctl example.org:7443",
        "1.2.3:7443",             /* digits and dots only, not an IP */
        "999.1.1.1:7443",
        "[ctl.example.org]:7443",
        "ctl.example.org:0",
        "ctl.example.org:65536",
        "",
    };
    struct ztr_err err = {0};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (net_addr_check_name(bad[i], &err) == 0)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_non_null(strstr(err.msg, "invalid address"));
    }
    static const char *const good[] = {"ctl.example.org:7443", "ctl.example.org.:7443",
                                       "c:1", "127.0.0.1:7443", "[::1]:7443",
                                       "localhost:7443", "a-b.c9.example:443"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (net_addr_check_name(good[i], &err) != 0)
            fail_msg("refused \"%s\": %s", good[i], err.msg);
}

static void
test_controller_lists(void **state)
{
    (void)state;
    char out[AGENT_CONTROLLERS_MAX][AGENT_CONTROLLER_ADDR_MAX];
    size_t n = 0;
    struct ztr_err err = {0};
    assert_int_equal(agent_controllers_parse("127.0.0.1:7443", out, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(out[0], "127.0.0.1:7443");
    assert_int_equal(
        agent_controllers_parse("ctl-a.example.org:7443, ctl-b.example.org:7443 ,[::1]:7443",
                                out, &n, &err),
        0);
    assert_int_equal(n, 3);
    assert_string_equal(out[0], "ctl-a.example.org:7443");
    assert_string_equal(out[1], "ctl-b.example.org:7443");
    assert_string_equal(out[2], "[::1]:7443");
    assert_int_equal(agent_controllers_parse("a:1,,b:2", out, &n, &err), -1);
    assert_non_null(strstr(err.msg, "empty entry"));
    assert_int_equal(agent_controllers_parse("a:1,", out, &n, &err), -1);
    assert_int_equal(agent_controllers_parse("a:1,b", out, &n, &err), -1);
    assert_non_null(strstr(err.msg, "invalid address \"b\""));
    assert_int_equal(agent_controllers_parse("a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9", out, &n,
                                             &err),
                     -1);
    assert_non_null(strstr(err.msg, "more than 8 controllers"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numeric_address_answers_on_the_loop),
        cmocka_unit_test(test_host_name_is_looked_up_off_the_loop),
        cmocka_unit_test(test_cancelled_lookup_never_calls_back),
        cmocka_unit_test(test_malformed_addresses_are_refused_before_any_lookup),
        cmocka_unit_test(test_controller_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
