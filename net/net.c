#define _GNU_SOURCE /* accept4 */
#include "net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/config.h"
#include "base/fileio.h"
#include "base/log.h"

/* Room for an IPv6 literal, brackets and a port. */
#define ADDR_HOST_MAX 64

static int
invalid_addr(const char *addr, struct ztr_err *err)
{
    return ztr_err_set(err, ZTR_E_INVALID,
                       "invalid address \"%s\" (use a numeric host:port or [v6]:port, "
                       "e.g. 127.0.0.1:7443)",
                       addr);
}

int
net_resolve(const char *addr, struct sockaddr_storage *out, socklen_t *out_len,
            struct ztr_err *err)
{
    char host[ADDR_HOST_MAX];
    uint16_t port = 0;
    if (addr == NULL)
        return invalid_addr("", err);
    if (config_parse_addr(addr, host, sizeof(host), &port) != 0)
        return invalid_addr(addr, err);
    memset(out, 0, sizeof(*out));
    /* Brackets are for IPv6 only, so "[127.0.0.1]:80" is refused rather
     * than guessed at. */
    if (addr[0] == '[') {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return invalid_addr(addr, err);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        *out_len = sizeof(*sin6);
        return 0;
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)out;
    if (strcmp(host, "localhost") == 0)
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
        return invalid_addr(addr, err);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    *out_len = sizeof(*sin);
    return 0;
}

static int
sys_fail(struct ztr_err *err, const char *op, const char *addr, const char *syscall,
         int errnum)
{
    char reason[128];
    return ztr_err_set(err, ZTR_E_IO, "%s %s: %s: %s", op, addr, syscall,
                       file_strerror(errnum, reason, sizeof(reason)));
}

static int
close_fail(int fd, struct ztr_err *err, const char *op, const char *addr,
           const char *syscall, int errnum)
{
    close(fd);
    return sys_fail(err, op, addr, syscall, errnum);
}

int
net_listen(const char *addr, int backlog, int *fd, struct ztr_err *err)
{
    struct sockaddr_storage sa;
    socklen_t sa_len;
    *fd = -1;
    TRY(net_resolve(addr, &sa, &sa_len, err));
    int s = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0)
        return sys_fail(err, "listen", addr, "socket", errno);
    /* A restarted daemon must rebind while old connections sit in
     * TIME_WAIT; a port actually listened on still fails with EADDRINUSE. */
    int one = 1;
    if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
        return close_fail(s, err, "listen", addr, "setsockopt", errno);
    if (bind(s, (struct sockaddr *)&sa, sa_len) != 0)
        return close_fail(s, err, "listen", addr, "bind", errno);
    if (listen(s, backlog) != 0) {
        /* Linux may report a port taken by another SO_REUSEADDR socket only
         * here; to the operator it is the same "port in use" as at bind. */
        int errnum = errno;
        return close_fail(s, err, "listen", addr, errnum == EADDRINUSE ? "bind" : "listen",
                          errnum);
    }
    *fd = s;
    return 0;
}

int
net_connect_start(const char *addr, int *fd, struct ztr_err *err)
{
    struct sockaddr_storage sa;
    socklen_t sa_len;
    *fd = -1;
    TRY(net_resolve(addr, &sa, &sa_len, err));
    int s = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0)
        return sys_fail(err, "dial", addr, "socket", errno);
    net_set_nodelay(s);
    if (connect(s, (struct sockaddr *)&sa, sa_len) != 0 && errno != EINPROGRESS)
        return close_fail(s, err, "dial", addr, "connect", errno);
    *fd = s;
    return 0;
}

int
net_connect_finish(int fd, const char *addr, struct ztr_err *err)
{
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0)
        return sys_fail(err, "dial", addr, "getsockopt", errno);
    if (so_error != 0)
        return sys_fail(err, "dial", addr, "connect", so_error);
    return 0;
}

void
net_set_nodelay(int fd)
{
    int one = 1;
    /* Best effort: a socket that refuses (not TCP) works without it. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

uint16_t
net_local_port(int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        return 0;
    if (sa.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&sa)->sin_port);
    if (sa.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    return 0;
}

const char *
net_peer_name(int fd, char *buf, size_t cap)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    char ip[INET6_ADDRSTRLEN];
    if (cap == 0)
        return buf;
    if (getpeername(fd, (struct sockaddr *)&sa, &len) != 0) {
        snprintf(buf, cap, "unknown");
        return buf;
    }
    if (sa.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&sa;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        snprintf(buf, cap, "%s:%u", ip, (unsigned)ntohs(sin->sin_port));
    } else if (sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&sa;
        /* A v4 client of a dual-stack listener should log as the v4
         * address operators know, not as ::ffff:a.b.c.d. */
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], ip, sizeof(ip));
            snprintf(buf, cap, "%s:%u", ip, (unsigned)ntohs(sin6->sin6_port));
        } else {
            inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
            snprintf(buf, cap, "[%s]:%u", ip, (unsigned)ntohs(sin6->sin6_port));
        }
    } else {
        snprintf(buf, cap, "unknown");
    }
    return buf;
}

int
net_accept(int listen_fd)
{
    int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            char text[128];
            log_warn("accept failed", "error=\"%s\"", file_strerror(errno, text, sizeof(text)));
        }
        return -1;
    }
    net_set_nodelay(fd);
    return fd;
}
