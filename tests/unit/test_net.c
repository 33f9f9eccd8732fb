/* Sockets: address parsing, listening, non-blocking connects, names.
 * Only 127.0.0.1 is ever bound or dialled, on kernel-chosen ports. */
#include "tests/unit/support.h"

#include "net/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static void
test_resolve_ipv4(void **state)
{
    (void)state;
    struct sockaddr_storage sa;
    socklen_t len = 0;
    struct ztr_err err = {0};
    assert_int_equal(net_resolve("127.0.0.1:8080", &sa, &len, &err), 0);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&sa;
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(sin->sin_port), 8080);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);

    assert_int_equal(net_resolve("0.0.0.0:65535", &sa, &len, &err), 0);
    assert_int_equal(ntohs(sin->sin_port), 65535);
    assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
}

static void
test_resolve_ipv6(void **state)
{
    (void)state;
    struct sockaddr_storage sa;
    socklen_t len = 0;
    struct ztr_err err = {0};
    assert_int_equal(net_resolve("[::1]:7443", &sa, &len, &err), 0);
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&sa;
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(ntohs(sin6->sin6_port), 7443);
    assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));

    assert_int_equal(net_resolve("[2001:db8::5]:443", &sa, &len, &err), 0);
    struct in6_addr expected;
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::5", &expected), 1);
    assert_memory_equal(&sin6->sin6_addr, &expected, sizeof(expected));
}

static void
test_resolve_localhost_is_ipv4_loopback(void **state)
{
    (void)state;
    struct sockaddr_storage sa;
    socklen_t len = 0;
    struct ztr_err err = {0};
    assert_int_equal(net_resolve("localhost:9000", &sa, &len, &err), 0);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&sa;
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), 9000);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
}

/* Port 0 is refused by config but means "kernel's choice" here. */
static void
test_resolve_accepts_port_zero(void **state)
{
    (void)state;
    struct sockaddr_storage sa;
    socklen_t len = 0;
    struct ztr_err err = {0};
    assert_int_equal(net_resolve("127.0.0.1:0", &sa, &len, &err), 0);
    assert_int_equal(ntohs(((const struct sockaddr_in *)&sa)->sin_port), 0);
    assert_int_equal(net_resolve("[::1]:0", &sa, &len, &err), 0);
    assert_int_equal(ntohs(((const struct sockaddr_in6 *)&sa)->sin6_port), 0);
    /* Ports ending in 0 are ordinary ports. */
    assert_int_equal(net_resolve("127.0.0.1:10", &sa, &len, &err), 0);
    assert_int_equal(ntohs(((const struct sockaddr_in *)&sa)->sin_port), 10);
}

static void
test_resolve_rejects_bad_inputs(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "127.0.0.1",
        ":8080",
        "127.0.0.1:",
        "127.0.0.1:65536",
        "127.0.0.1:99999",
        "127.0.0.1:-1",
        "127.0.0.1:80x",
        "1.2.3:80",
        "256.0.0.1:80",
        "example.com:80",
        "localhost.:80",
        "::1:80",
        "[::1]80",
        "[::1]:",
        "[::1:80",
        "[127.0.0.1]:80",
        "[localhost]:80",
        "[fe80::1%eth0]:80",
        "127.0.0.1:0:0",
        "a:0",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sockaddr_storage sa;
        socklen_t len = 0;
        struct ztr_err err = {0};
        if (net_resolve(bad[i], &sa, &len, &err) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(err.code, ZTR_E_INVALID);
    }
}

static void
test_resolve_error_names_the_address(void **state)
{
    (void)state;
    struct sockaddr_storage sa;
    socklen_t len = 0;
    struct ztr_err err = {0};
    assert_int_equal(net_resolve("controller.example:7443", &sa, &len, &err), -1);
    assert_string_equal(err.msg, "invalid address \"controller.example:7443\" (use a numeric "
                                 "host:port or [v6]:port, e.g. 127.0.0.1:7443)");
    assert_int_equal(net_resolve(NULL, &sa, &len, &err), -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
}

static void
test_resolve_rejects_overlong_input(void **state)
{
    (void)state;
    char addr[300];
    memset(addr, '1', sizeof(addr));
    memcpy(addr + sizeof(addr) - 3, ":0", 3);
    struct sockaddr_storage sa;
    socklen_t len = 0;
    struct ztr_err err = {0};
    assert_int_equal(net_resolve(addr, &sa, &len, &err), -1);
    memcpy(addr + sizeof(addr) - 3, ":1", 3);
    assert_int_equal(net_resolve(addr, &sa, &len, &err), -1);
}

/* ---- listen --------------------------------------------------------------- */

static void
assert_nonblocking_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    int fdfl = fcntl(fd, F_GETFD);
    assert_true(fl >= 0 && (fl & O_NONBLOCK) != 0);
    assert_true(fdfl >= 0 && (fdfl & FD_CLOEXEC) != 0);
}

static void
test_listen_on_port_zero_gets_a_port(void **state)
{
    (void)state;
    int fd = -1;
    struct ztr_err err = {0};
    assert_int_equal(net_listen("127.0.0.1:0", 16, &fd, &err), 0);
    assert_true(fd >= 0);
    assert_int_not_equal(net_local_port(fd), 0);
    assert_nonblocking_cloexec(fd);
    int reuse = 0;
    socklen_t len = sizeof(reuse);
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, &len), 0);
    assert_int_equal(reuse, 1);
    close(fd);
}

static void
test_listen_on_taken_port_reports_address_in_use(void **state)
{
    (void)state;
    int first = -1, second = 7;
    struct ztr_err err = {0};
    assert_int_equal(net_listen("127.0.0.1:0", 16, &first, &err), 0);
    char addr[64], expected[128];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)net_local_port(first));
    snprintf(expected, sizeof(expected), "listen %s: bind: address already in use", addr);
    assert_int_equal(net_listen(addr, 16, &second, &err), -1);
    assert_string_equal(err.msg, expected);
    assert_int_equal(err.code, ZTR_E_IO);
    assert_int_equal(second, -1);
    close(first);
}

static void
test_listen_with_localhost_binds_loopback(void **state)
{
    (void)state;
    int fd = -1;
    struct ztr_err err = {0};
    assert_int_equal(net_listen("localhost:0", 16, &fd, &err), 0);
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    assert_int_equal(ntohl(sin.sin_addr.s_addr), INADDR_LOOPBACK);
    close(fd);
}

static void
test_listen_invalid_address_leaves_no_socket(void **state)
{
    (void)state;
    int fd = 7;
    struct ztr_err err = {0};
    assert_int_equal(net_listen("nowhere:80", 16, &fd, &err), -1);
    assert_int_equal(fd, -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
}

/* ---- connect -------------------------------------------------------------- */

static void
wait_writable(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    assert_int_equal(poll(&pfd, 1, 5000), 1);
}

/* A port nobody listens on: one that was just listened on and closed. */
static uint16_t
closed_port(void)
{
    int fd = -1;
    struct ztr_err err = {0};
    assert_int_equal(net_listen("127.0.0.1:0", 1, &fd, &err), 0);
    uint16_t port = net_local_port(fd);
    close(fd);
    return port;
}

static void
test_connect_refused_reads_connection_refused(void **state)
{
    (void)state;
    char addr[64], expected[128];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)closed_port());
    snprintf(expected, sizeof(expected), "dial %s: connect: connection refused", addr);
    int fd = -1;
    struct ztr_err err = {0};
    /* Loopback may refuse at once or only once the connect completes; the
     * text is the same either way. */
    if (net_connect_start(addr, &fd, &err) == 0) {
        assert_nonblocking_cloexec(fd);
        wait_writable(fd);
        assert_int_equal(net_connect_finish(fd, addr, &err), -1);
        close(fd);
    } else {
        assert_int_equal(fd, -1);
    }
    assert_string_equal(err.msg, expected);
    assert_int_equal(err.code, ZTR_E_IO);
}

static void
test_connect_to_listener_succeeds_and_names_peers(void **state)
{
    (void)state;
    int listener = -1, client = -1;
    struct ztr_err err = {0};
    assert_int_equal(net_listen("127.0.0.1:0", 16, &listener, &err), 0);
    uint16_t port = net_local_port(listener);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)port);
    assert_int_equal(net_connect_start(addr, &client, &err), 0);
    assert_nonblocking_cloexec(client);
    wait_writable(client);
    if (net_connect_finish(client, addr, &err) != 0)
        fail_msg("%s", err.msg);

    struct pollfd pfd = {.fd = listener, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    int accepted = net_accept(listener);
    assert_true(accepted >= 0);
    assert_nonblocking_cloexec(accepted);
    /* Nothing else waits: -1, and no blocking. */
    assert_int_equal(net_accept(listener), -1);

    char name[80], expected[80];
    assert_string_equal(net_peer_name(client, name, sizeof(name)), addr);
    snprintf(expected, sizeof(expected), "127.0.0.1:%u", (unsigned)net_local_port(client));
    assert_string_equal(net_peer_name(accepted, name, sizeof(name)), expected);

    close(accepted);
    close(client);
    close(listener);
}

static int
connected_client(uint16_t port)
{
    char addr[64];
    int client = -1;
    struct ztr_err err = {0};
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)port);
    assert_int_equal(net_connect_start(addr, &client, &err), 0);
    wait_writable(client);
    if (net_connect_finish(client, addr, &err) != 0)
        fail_msg("%s", err.msg);
    return client;
}

/* Near RLIMIT_NOFILE a waiting connection is closed at once, so the
 * listener is no longer readable (a level-triggered loop would spin on
 * it); with descriptors free again, accepting works as before. */
static void
test_accept_near_descriptor_limit_drops_and_recovers(void **state)
{
    (void)state;
    int listener = -1;
    struct ztr_err err = {0};
    assert_int_equal(net_listen("127.0.0.1:0", 16, &listener, &err), 0);
    uint16_t port = net_local_port(listener);
    int client = connected_client(port);
    struct pollfd pfd = {.fd = listener, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 5000), 1);

    struct rlimit saved, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    low = saved;
    low.rlim_cur = (rlim_t)client + 8; /* well inside the 32 kept free */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    /* net_accept reads the limit again at least once a second. */
    struct timespec pause = {1, 100 * 1000 * 1000};
    nanosleep(&pause, NULL);
    int accepted = net_accept(listener);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_int_equal(accepted, -1);
    assert_int_equal(poll(&pfd, 1, 0), 0); /* nothing left queued */
    /* The client sees its connection closed. */
    struct pollfd cfd = {.fd = client, .events = POLLIN};
    assert_int_equal(poll(&cfd, 1, 5000), 1);
    char byte;
    assert_true(recv(client, &byte, 1, 0) <= 0);
    close(client);

    client = connected_client(port);
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    accepted = net_accept(listener);
    assert_true(accepted >= 0);
    close(accepted);
    close(client);
    close(listener);
}

static void
test_loopback_addresses_are_recognised(void **state)
{
    (void)state;
    assert_true(net_addr_is_loopback("127.0.0.1:8080"));
    assert_true(net_addr_is_loopback("127.3.2.1:0"));
    assert_true(net_addr_is_loopback("localhost:8080"));
    assert_true(net_addr_is_loopback("[::1]:8080"));
    assert_true(net_addr_is_loopback("[::ffff:127.0.0.1]:8080"));
    assert_false(net_addr_is_loopback("0.0.0.0:8080"));
    assert_false(net_addr_is_loopback("[::]:8080"));
    assert_false(net_addr_is_loopback("10.0.0.1:8080"));
    assert_false(net_addr_is_loopback("128.0.0.1:8080"));
    assert_false(net_addr_is_loopback("[::ffff:10.0.0.1]:8080"));
    assert_false(net_addr_is_loopback("nonsense"));
}

static void
test_connect_invalid_address(void **state)
{
    (void)state;
    int fd = 7;
    struct ztr_err err = {0};
    assert_int_equal(net_connect_start("[::1:80", &fd, &err), -1);
    assert_int_equal(fd, -1);
    assert_int_equal(err.code, ZTR_E_INVALID);
}

/* ---- names ---------------------------------------------------------------- */

static void
test_peer_name_of_unconnected_socket_is_unknown(void **state)
{
    (void)state;
    int fd = -1;
    struct ztr_err err = {0};
    assert_int_equal(net_listen("127.0.0.1:0", 1, &fd, &err), 0);
    char name[32];
    assert_string_equal(net_peer_name(fd, name, sizeof(name)), "unknown");
    assert_string_equal(net_peer_name(-1, name, sizeof(name)), "unknown");
    close(fd);
}

static void
test_peer_name_truncates_to_buffer(void **state)
{
    (void)state;
    int listener = -1, client = -1;
    struct ztr_err err = {0};
    assert_int_equal(net_listen("127.0.0.1:0", 16, &listener, &err), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)net_local_port(listener));
    assert_int_equal(net_connect_start(addr, &client, &err), 0);
    wait_writable(client);
    assert_int_equal(net_connect_finish(client, addr, &err), 0);
    char name[6];
    assert_string_equal(net_peer_name(client, name, sizeof(name)), "127.0");
    char untouched = 'q';
    assert_ptr_equal(net_peer_name(client, &untouched, 0), &untouched);
    assert_int_equal(untouched, 'q');
    close(client);
    close(listener);
}

static void
test_local_port_of_non_socket_is_zero(void **state)
{
    (void)state;
    assert_int_equal(net_local_port(-1), 0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(net_local_port(fds[0]), 0);
    close(fds[0]);
    close(fds[1]);
}

static struct sockaddr_storage
sa_of(const char *ip)
{
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof(sa));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&sa;
    if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1)
        v4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1)
        v6->sin6_family = AF_INET6;
    return sa;
}

static void
test_cidr_contains_v4_and_v6(void **state)
{
    (void)state;
    struct net_cidr c;
    struct ztr_err err;
    assert_int_equal(net_cidr_parse("127.0.0.0/8", &c, &err), 0);
    struct sockaddr_storage in = sa_of("127.9.8.7"), out = sa_of("128.0.0.1");
    struct sockaddr_storage mapped = sa_of("::ffff:127.0.0.5"), v6 = sa_of("::1");
    assert_true(net_cidr_contains(&c, &in));
    assert_false(net_cidr_contains(&c, &out));
    assert_true(net_cidr_contains(&c, &mapped));
    assert_false(net_cidr_contains(&c, &v6));
    assert_int_equal(net_cidr_parse("127.0.0.7", &c, &err), 0); /* a bare IP is /32 */
    struct sockaddr_storage seven = sa_of("127.0.0.7"), eight = sa_of("127.0.0.8");
    assert_true(net_cidr_contains(&c, &seven));
    assert_false(net_cidr_contains(&c, &eight));
    assert_int_equal(net_cidr_parse("10.0.0.0/13", &c, &err), 0);
    struct sockaddr_storage a = sa_of("10.7.255.255"), b = sa_of("10.8.0.0");
    assert_true(net_cidr_contains(&c, &a));
    assert_false(net_cidr_contains(&c, &b));
    assert_int_equal(net_cidr_parse("fd00::/8", &c, &err), 0);
    struct sockaddr_storage u = sa_of("fd12::1");
    assert_true(net_cidr_contains(&c, &u));
    assert_false(net_cidr_contains(&c, &v6));
    assert_int_equal(net_cidr_parse("0.0.0.0/0", &c, &err), 0);
    assert_true(net_cidr_contains(&c, &out));
}

static void
test_cidr_refuses_bad_text(void **state)
{
    (void)state;
    struct net_cidr c;
    struct ztr_err err;
    const char *bad[] = {"", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/8x", "::/129",
                         "10.0.0.5/8", "example.org/8", "10.0.0.0/-1", "10.0.0.0/0008"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(net_cidr_parse(bad[i], &c, &err), -1);
        assert_non_null(strstr(err.msg, "CIDR"));
    }
    assert_int_equal(net_cidr_parse("10.0.0.5/8", &c, &err), -1);
    assert_non_null(strstr(err.msg, "host bits set"));
    char text[64];
    struct sockaddr_storage sa = sa_of("127.0.0.3");
    net_addr_text(&sa, text, sizeof(text));
    assert_string_equal(text, "127.0.0.3");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_ipv4),
        cmocka_unit_test(test_cidr_contains_v4_and_v6),
        cmocka_unit_test(test_cidr_refuses_bad_text),
        cmocka_unit_test(test_resolve_ipv6),
        cmocka_unit_test(test_resolve_localhost_is_ipv4_loopback),
        cmocka_unit_test(test_resolve_accepts_port_zero),
        cmocka_unit_test(test_resolve_rejects_bad_inputs),
        cmocka_unit_test(test_resolve_error_names_the_address),
        cmocka_unit_test(test_resolve_rejects_overlong_input),
        cmocka_unit_test(test_listen_on_port_zero_gets_a_port),
        cmocka_unit_test(test_listen_on_taken_port_reports_address_in_use),
        cmocka_unit_test(test_listen_with_localhost_binds_loopback),
        cmocka_unit_test(test_listen_invalid_address_leaves_no_socket),
        cmocka_unit_test(test_connect_refused_reads_connection_refused),
        cmocka_unit_test(test_connect_to_listener_succeeds_and_names_peers),
        cmocka_unit_test(test_connect_invalid_address),
        cmocka_unit_test(test_peer_name_of_unconnected_socket_is_unknown),
        cmocka_unit_test(test_peer_name_truncates_to_buffer),
        cmocka_unit_test(test_local_port_of_non_socket_is_zero),
        cmocka_unit_test(test_accept_near_descriptor_limit_drops_and_recovers),
        cmocka_unit_test(test_loopback_addresses_are_recognised),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
