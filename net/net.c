#define _GNU_SOURCE /* accept4 */
#include "net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
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

bool
net_addr_is_loopback(const char *addr)
{
    struct sockaddr_storage sa;
    socklen_t sa_len;
    struct ztr_err err = {0};
    if (net_resolve(addr, &sa, &sa_len, &err) != 0)
        return false;
    if (sa.ss_family == AF_INET) {
        uint32_t ip = ntohl(((const struct sockaddr_in *)&sa)->sin_addr.s_addr);
        return (ip >> 24) == 127;
    }
    const struct in6_addr *ip6 = &((const struct sockaddr_in6 *)&sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(ip6))
        return ip6->s6_addr[12] == 127;
    return IN6_IS_ADDR_LOOPBACK(ip6);
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

static int
listen_on(const char *addr, int backlog, bool shared, int *fd, struct ztr_err *err)
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
    if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (shared && setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0))
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
net_listen(const char *addr, int backlog, int *fd, struct ztr_err *err)
{
    return listen_on(addr, backlog, false, fd, err);
}

int
net_listen_shared(const char *addr, int backlog, int *fd, struct ztr_err *err)
{
    return listen_on(addr, backlog, true, fd, err);
}

int
net_connect_start(const char *addr, int *fd, struct ztr_err *err)
{
    struct sockaddr_storage sa;
    socklen_t sa_len;
    *fd = -1;
    TRY(net_resolve(addr, &sa, &sa_len, err));
    return net_connect_start_sa(&sa, sa_len, addr, fd, err);
}

int
net_connect_start_sa(const struct sockaddr_storage *sa, socklen_t sa_len, const char *label,
                     int *fd, struct ztr_err *err)
{
    *fd = -1;
    int s = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0)
        return sys_fail(err, "dial", label, "socket", errno);
    net_set_nodelay(s);
    if (connect(s, (const struct sockaddr *)sa, sa_len) != 0 && errno != EINPROGRESS)
        return close_fail(s, err, "dial", label, "connect", errno);
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
net_sockaddr_name(const struct sockaddr_storage *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (cap == 0)
        return buf;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        snprintf(buf, cap, "%s:%u", ip, (unsigned)ntohs(sin->sin_port));
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
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

const char *
net_peer_name(int fd, char *buf, size_t cap)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    if (cap == 0)
        return buf;
    if (getpeername(fd, (struct sockaddr *)&sa, &len) != 0) {
        snprintf(buf, cap, "unknown");
        return buf;
    }
    return net_sockaddr_name(&sa, buf, cap);
}

/*
 * Out of descriptors, accept() fails and leaves the connection queued, so
 * the listener stays readable and a level-triggered loop spins on it,
 * logging each turn. One descriptor is held in reserve: at EMFILE it is
 * given up for the moment it takes to take the queued connection and
 * close it, which empties the queue (the client sees a reset and retries
 * later) and lets the loop sleep again. Accepting resumes by itself as
 * soon as descriptors are free, since nothing was paused. Per thread:
 * each loop runs in its own.
 */
static _Thread_local int reserve_fd = -1;

static void
reserve_take(void)
{
    if (reserve_fd < 0)
        reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Drops one queued connection using the reserve; false if there was none
 * to use (the reserve could not be taken back after an earlier drop). */
static bool
drop_one_queued(int listen_fd)
{
    if (reserve_fd < 0)
        return false;
    close(reserve_fd);
    reserve_fd = -1;
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        close(fd);
    reserve_take();
    return true;
}

/* A failing accept is logged once per NET_ACCEPT_LOG_INTERVAL_S at most;
 * the next line says how many were left out, so a flood costs a few lines,
 * never one per connection. */
#define NET_ACCEPT_LOG_INTERVAL_S 10
#define NET_ACCEPT_HEADROOM 32
static _Thread_local struct {
    bool logged;
    struct timespec last;
    uint64_t suppressed;
} accept_log;

static void
log_accept_failure(int errnum, bool dropped)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (accept_log.logged && now.tv_sec - accept_log.last.tv_sec < NET_ACCEPT_LOG_INTERVAL_S) {
        accept_log.suppressed++;
        return;
    }
    char text[128];
    log_warn("accept failed", "error=\"%s\" connection=%s suppressed=%llu",
             file_strerror(errnum, text, sizeof(text)), dropped ? "dropped" : "left_queued",
             (unsigned long long)accept_log.suppressed);
    accept_log.logged = true;
    accept_log.last = now;
    accept_log.suppressed = 0;
}

/* Descriptors numbers are handed out lowest first, so fd is about how many
 * are open. An accepted connection needs more to be served (TLS seeding,
 * the database, a dial onward); taking connections into the last
 * NET_ACCEPT_HEADROOM would fail those instead, once per connection. */
/* The limit is read again when an fd comes near the one last read (it may
 * have been raised since) and at least once a second (it may have been
 * lowered: prlimit from outside): a getrlimit() per accepted connection
 * was a tenth of the tunneler's syscalls per stream. The coarse clock is
 * read without a syscall. */
static _Thread_local rlim_t nofile_seen;
static _Thread_local time_t nofile_read_at;

static bool
within_headroom(int fd)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    if (nofile_seen != 0 && now.tv_sec == nofile_read_at &&
        (rlim_t)fd + NET_ACCEPT_HEADROOM < nofile_seen)
        return false;
    nofile_read_at = now.tv_sec;
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
        nofile_seen = 0;
        return false;
    }
    nofile_seen = limit.rlim_cur;
    return (rlim_t)fd + NET_ACCEPT_HEADROOM >= limit.rlim_cur;
}

int
net_accept(int listen_fd)
{
    return net_accept_peer(listen_fd, NULL);
}

int
net_accept_peer(int listen_fd, struct sockaddr_storage *peer)
{
    reserve_take();
    socklen_t peer_len = sizeof(*peer);
    int fd = accept4(listen_fd, (struct sockaddr *)peer, peer != NULL ? &peer_len : NULL,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0 && within_headroom(fd)) {
        close(fd);
        log_accept_failure(EMFILE, true);
        return -1;
    }
    if (fd < 0) {
        int errnum = errno;
        if (errnum == EAGAIN || errnum == EWOULDBLOCK || errnum == EINTR)
            return -1;
        bool dropped = false;
        if (errnum == EMFILE || errnum == ENFILE)
            dropped = drop_one_queued(listen_fd);
        log_accept_failure(errnum, dropped);
        return -1;
    }
    net_set_nodelay(fd);
    return fd;
}

int
net_source_key_of(const struct sockaddr_storage *peer_sa, struct quota_key *key)
{
    const struct sockaddr_storage peer = *peer_sa;
    memset(key, 0, sizeof(*key));
    if (peer.ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)&peer;
        key->bytes[10] = 0xff;
        key->bytes[11] = 0xff;
        memcpy(key->bytes + 12, &v4->sin_addr, 4);
        return 0;
    }
    if (peer.ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&peer;
        memcpy(key->bytes, &v6->sin6_addr, 16);
        /* An IPv4-mapped peer keeps its whole address; others their /64. */
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(key->bytes, mapped, sizeof(mapped)) != 0)
            memset(key->bytes + 8, 0, 8);
        return 0;
    }
    return -1;
}

void
net_close_refused(int fd, struct log_limit *limit, int64_t now_ms, const char *msg,
                  const char *reason)
{
    char peer[64];
    net_peer_name(fd, peer, sizeof(peer));
    close(fd);
    uint64_t suppressed = 0;
    if (log_limit_allow(limit, now_ms, &suppressed))
        log_warn(msg, "peer=%s reason=\"%s\" suppressed=%llu", peer, reason,
                 (unsigned long long)suppressed);
}

/* ---- address ranges ---------------------------------------------------------------------- */

int
net_cidr_parse(const char *text, struct net_cidr *out, struct ztr_err *err)
{
    memset(out, 0, sizeof(*out));
    char ip[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t ip_len = slash != NULL ? (size_t)(slash - text) : strlen(text);
    if (ip_len == 0 || ip_len >= sizeof(ip))
        return ztr_err_set(err, ZTR_E_INVALID, "CIDR \"%.64s\": expected ip/prefix", text);
    memcpy(ip, text, ip_len);
    ip[ip_len] = '\0';
    unsigned max;
    if (inet_pton(AF_INET, ip, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, ip, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return ztr_err_set(err, ZTR_E_INVALID, "CIDR \"%.64s\": \"%s\" is not an IP address",
                           text, ip);
    }
    out->prefix = max;
    if (slash != NULL) {
        const char *p = slash + 1;
        unsigned prefix = 0;
        if (*p == '\0' || strlen(p) > 3)
            return ztr_err_set(err, ZTR_E_INVALID, "CIDR \"%.64s\": bad prefix length", text);
        for (; *p != '\0'; p++) {
            if (*p < '0' || *p > '9')
                return ztr_err_set(err, ZTR_E_INVALID, "CIDR \"%.64s\": bad prefix length",
                                   text);
            prefix = prefix * 10 + (unsigned)(*p - '0');
        }
        if (prefix > max)
            return ztr_err_set(err, ZTR_E_INVALID,
                               "CIDR \"%.64s\": prefix length %u is more than %u", text, prefix,
                               max);
        out->prefix = prefix;
    }
    for (unsigned bit = out->prefix; bit < max; bit++)
        if (out->addr[bit / 8] & (0x80u >> (bit % 8)))
            return ztr_err_set(err, ZTR_E_INVALID,
                               "CIDR \"%.64s\": host bits set (did you mean the network?)",
                               text);
    return 0;
}

bool
net_cidr_contains(const struct net_cidr *cidr, const struct sockaddr_storage *peer)
{
    uint8_t addr[16];
    int family = peer->ss_family;
    if (family == AF_INET) {
        memcpy(addr, &((const struct sockaddr_in *)peer)->sin_addr, 4);
    } else if (family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)peer)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            family = AF_INET;
            memcpy(addr, &a6->s6_addr[12], 4);
        } else {
            memcpy(addr, a6->s6_addr, 16);
        }
    } else {
        return false;
    }
    if (family != cidr->family)
        return false;
    unsigned full = cidr->prefix / 8, rest = cidr->prefix % 8;
    if (memcmp(addr, cidr->addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xFFu << (8 - rest));
    return (addr[full] & mask) == (cidr->addr[full] & mask);
}

void
net_addr_text(const struct sockaddr_storage *peer, char *out, size_t cap)
{
    const void *src = NULL;
    if (peer->ss_family == AF_INET)
        src = &((const struct sockaddr_in *)peer)->sin_addr;
    else if (peer->ss_family == AF_INET6)
        src = &((const struct sockaddr_in6 *)peer)->sin6_addr;
    if (src == NULL || inet_ntop(peer->ss_family, src, out, (socklen_t)cap) == NULL)
        snprintf(out, cap, "?");
}
