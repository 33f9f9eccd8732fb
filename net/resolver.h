/*
 * Host-name lookups that do not block the event loop: one lookup at a time
 * per resolver, run by glibc's getaddrinfo_a on its own thread, its result
 * delivered on the loop (an ev_async) to the callback. A numeric address
 * is answered without a lookup (still through the callback, on the next
 * loop turn, so callers have one path).
 *
 * Bounded: a lookup that takes longer than NET_RESOLVE_TIMEOUT_MS fails
 * with a timeout. Errors name the host: `resolve ctl.example.org: Name or
 * service not known`.
 */
#ifndef ZTR_NET_RESOLVER_H
#define ZTR_NET_RESOLVER_H

#include <stdbool.h>
#include <sys/socket.h>

#include "base/err.h"

struct ev_loop;
struct net_resolver;

#define NET_RESOLVE_TIMEOUT_MS 5000

#define NET_RESOLVE_MAX 8

/* Every address a name has (up to NET_RESOLVE_MAX, IPv4 first: the daemons
 * listen and dial IPv4 by default), so a caller can move on to the next
 * one when the first does not answer. */
struct net_addrs {
    size_t count;                  /* >= 1 */
    struct sockaddr_storage sa[NET_RESOLVE_MAX];
    socklen_t len[NET_RESOLVE_MAX];
};

/* On failure addrs is NULL and err says why. */
typedef void (*net_resolved_fn)(void *user, const struct net_addrs *addrs,
                                const struct ztr_err *err);

int net_resolver_new(struct ev_loop *loop, struct net_resolver **out, struct ztr_err *err);
/* Cancels a lookup in progress (its callback is not called). */
void net_resolver_free(struct net_resolver *resolver);

/* Starts resolving "host:port" ("[v6]:port", a numeric address or a name).
 * Fails at once (no callback) on a malformed address or while another
 * lookup of this resolver is in progress. */
int net_resolver_start(struct net_resolver *resolver, const char *addr, net_resolved_fn fn,
                       void *user, struct ztr_err *err);
/* Drops the lookup in progress, if any: its callback is not called. */
void net_resolver_cancel(struct net_resolver *resolver);
bool net_resolver_busy(const struct net_resolver *resolver);

/* Whether addr's host part is a numeric IP (or "localhost"), i.e. needs no
 * lookup. */
bool net_addr_is_numeric(const char *addr);

/* Checks "host:port" where host may be a DNS name (RFC 1123 labels) or an
 * IP: for configuration, before anything is resolved. */
int net_addr_check_name(const char *addr, struct ztr_err *err);

#endif
