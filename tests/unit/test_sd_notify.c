/* base/sd_notify: the datagram systemd reads, to a path and to an
 * abstract socket, and the watchdog's environment. */
#include "tests/unit/support.h"

#include "base/sd_notify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A datagram socket bound at name ("/path" or "@abstract"). */
static int
bound_socket(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    assert_true(len < sizeof(addr.sun_path));
    memcpy(addr.sun_path, name, len);
    if (name[0] == '@')
        addr.sun_path[0] = '\0';
    socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, addr_len), 0);
    return fd;
}

static void
expect_datagram(int fd, const char *want)
{
    char got[256];
    ssize_t n = recv(fd, got, sizeof(got) - 1, MSG_DONTWAIT);
    assert_true(n >= 0);
    got[n] = '\0';
    assert_string_equal(got, want);
}

static void
test_not_under_systemd_is_a_no_op(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(sd_notify_send("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(sd_notify_send("READY=1"), 0);
    unsetenv("NOTIFY_SOCKET");
}

static void
test_sends_to_a_path(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char *path = test_path(dir, "notify");
    int fd = bound_socket(path);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(sd_notify_send("READY=1\nSTATUS=serving"), 0);
    expect_datagram(fd, "READY=1\nSTATUS=serving");
    assert_int_equal(sd_notify_send("WATCHDOG=1"), 0);
    expect_datagram(fd, "WATCHDOG=1");
    close(fd);
    /* Nobody reads there any more: the failure is reported, not hidden. */
    unlink(path);
    assert_int_equal(sd_notify_send("STOPPING=1"), -1);
    unsetenv("NOTIFY_SOCKET");
    free(path);
    test_rmtree(dir);
    free(dir);
}

static void
test_sends_to_an_abstract_socket(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof(name), "@ztr-test-notify-%ld", (long)getpid());
    int fd = bound_socket(name);
    setenv("NOTIFY_SOCKET", name, 1);
    assert_int_equal(sd_notify_send("READY=1"), 0);
    expect_datagram(fd, "READY=1");
    close(fd);
    unsetenv("NOTIFY_SOCKET");
}

static void
test_unusable_addresses_are_refused(void **state)
{
    (void)state;
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    errno = 0;
    assert_int_equal(sd_notify_send("READY=1"), -1);
    assert_int_equal(errno, EINVAL);
    char long_path[200];
    memset(long_path, 'x', sizeof(long_path) - 1);
    long_path[0] = '/';
    long_path[sizeof(long_path) - 1] = '\0';
    setenv("NOTIFY_SOCKET", long_path, 1);
    assert_int_equal(sd_notify_send("READY=1"), -1);
    unsetenv("NOTIFY_SOCKET");
}

static void
test_watchdog_environment(void **state)
{
    (void)state;
    uint64_t usec = 0;
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    assert_false(sd_notify_watchdog_usec(&usec));
    setenv("WATCHDOG_USEC", "2000000", 1);
    assert_true(sd_notify_watchdog_usec(&usec));
    assert_int_equal(usec, 2000000);
    char pid[32];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    assert_true(sd_notify_watchdog_usec(&usec));
    /* Meant for another process (a parent that exec'd us without it). */
    snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1);
    assert_false(sd_notify_watchdog_usec(&usec));
    unsetenv("WATCHDOG_PID");
    const char *bad[] = {"0", "", "-5", "12s", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("WATCHDOG_USEC", bad[i], 1);
        if (sd_notify_watchdog_usec(&usec))
            fail_msg("WATCHDOG_USEC=%s accepted", bad[i]);
    }
    unsetenv("WATCHDOG_USEC");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_under_systemd_is_a_no_op),
        cmocka_unit_test(test_sends_to_a_path),
        cmocka_unit_test(test_sends_to_an_abstract_socket),
        cmocka_unit_test(test_unusable_addresses_are_refused),
        cmocka_unit_test(test_watchdog_environment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
