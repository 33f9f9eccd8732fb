/*
 * Sockets, the few ways the daemons use them. Addresses are numeric
 * "host:port" / "[v6]:port" ("localhost" is accepted and means 127.0.0.1).
 * Every socket is non-blocking and close-on-exec.
 *
 * Error texts keep the words operators search for: a port in use reads
 * `listen 127.0.0.1:8080: bind: address already in use` (failure-modes
 * §5.3), a refused connection `dial 127.0.0.1:7443: connect: connection refused`.
 */
#ifndef ZTR_NET_NET_H
#define ZTR_NET_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/err.h"
#include "base/quota.h"

int net_resolve(const char *addr, struct sockaddr_storage *out, socklen_t *out_len,
                struct ztr_err *err);

/* Whether addr names a loopback address (127.0.0.0/8, ::1, "localhost"),
 * i.e. whether only local processes can reach a listener there. False for
 * anything unparsable. */
bool net_addr_is_loopback(const char *addr);

/* A listening socket with SO_REUSEADDR, backlog as given. Port 0 lets the
 * kernel choose (see net_local_port). On failure *fd is -1. */
int net_listen(const char *addr, int backlog, int *fd, struct ztr_err *err);
/* net_listen with SO_REUSEPORT as well: several sockets (one per worker
 * loop) listen on one address and the kernel spreads new connections over
 * them. Linux lets only sockets of the same effective user join a port. */
int net_listen_shared(const char *addr, int backlog, int *fd, struct ztr_err *err);

/* Starts a non-blocking connect; the caller waits for writability and then
 * calls net_connect_finish(). On failure *fd is -1; a failed finish leaves
 * the socket to the caller, who closes it. */
int net_connect_start(const char *addr, int *fd, struct ztr_err *err);
int net_connect_finish(int fd, const char *addr, struct ztr_err *err);
/* Same, to an address already resolved; label names it in errors. */
int net_connect_start_sa(const struct sockaddr_storage *sa, socklen_t sa_len, const char *label,
                         int *fd, struct ztr_err *err);

/* Takes one waiting connection from a listening socket (non-blocking,
 * close-on-exec, TCP_NODELAY). Returns its fd, or -1 when none is waiting;
 * other failures also give -1, so an accept loop simply stops. Out of
 * descriptors (EMFILE, ENFILE), the waiting connection is closed at once
 * with a descriptor kept in reserve for this, so the listener does not
 * stay readable and spin the loop; accepting resumes by itself once
 * descriptors free up. A connection that would leave fewer than 32 free
 * descriptors below RLIMIT_NOFILE is closed the same way, so the ones
 * already taken can still be served. Failures are logged at most once per 10 s, with the
 * count of those left out (`suppressed=N`). */
int net_accept(int listen_fd);
/* net_accept that also hands back the peer's address (peer may be NULL):
 * a caller that needs it saves a getpeername() per connection. */
int net_accept_peer(int listen_fd, struct sockaddr_storage *peer);

/* The source a per-source quota counts a peer (from net_accept_peer)
 * under: its IPv4 address (as IPv4-mapped IPv6), or the /64 prefix of its
 * IPv6 address — one host commonly holds a whole /64, so counting single
 * v6 addresses would let it multiply its quota. Returns -1 (key zeroed)
 * for an address that is not IP. */
int net_source_key_of(const struct sockaddr_storage *peer, struct quota_key *key);

/* An address range "ip/prefix" (IPv4 or IPv6; a bare ip is /32 or /128),
 * as a federation grant's --source-cidr. Host bits must be zero: a CIDR
 * like 10.0.0.5/8 is refused, it is almost always a typo. */
struct net_cidr {
    int family;        /* AF_INET or AF_INET6 */
    uint8_t addr[16];  /* network byte order; 4 used for AF_INET */
    unsigned prefix;
};
int net_cidr_parse(const char *text, struct net_cidr *out, struct ztr_err *err);
/* Whether peer (from net_accept_peer) lies in cidr; an IPv4-mapped IPv6
 * peer counts as its IPv4 address. */
bool net_cidr_contains(const struct net_cidr *cidr, const struct sockaddr_storage *peer);
/* "ip" of peer (no port), for log lines; "?" when not IP. */
void net_addr_text(const struct sockaddr_storage *peer, char *out, size_t cap);

/* Closes a connection refused right after accept, with a warn line msg
 * naming the peer and reason, limited by limit (whoever causes refusals
 * controls how often; the line carries `suppressed=N`). */
struct log_limit;
void net_close_refused(int fd, struct log_limit *limit, int64_t now_ms, const char *msg,
                       const char *reason);

/* Turns off Nagle's algorithm: control messages and relayed requests are
 * small and latency-bound (it cost ~40 ms per enrollment round trip). */
void net_set_nodelay(int fd);

/* Port a bound socket ended up on (after listening on port 0 in tests). */
uint16_t net_local_port(int fd);

/* "ip:port" ("[v6]:port") of the peer, for logs; "unknown" if it has none. */
const char *net_peer_name(int fd, char *buf, size_t cap);
/* The same text for an address in hand ("unknown" for other families). */
const char *net_sockaddr_name(const struct sockaddr_storage *sa, char *buf, size_t cap);

#endif
