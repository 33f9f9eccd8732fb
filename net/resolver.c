#include "net/resolver.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ev.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/config.h"
#include "net/net.h"

#define HOST_MAX 254

/* One lookup, shared by the loop and the thread that runs getaddrinfo:
 * whichever of the two lets go last frees it, so a cancelled lookup's
 * thread can finish in its own time. */
struct lookup {
    atomic_int refs;
    int event_fd;                  /* the thread writes 1 when the result is in */
    char host[HOST_MAX + 1];
    char port[8];
    /* written by the thread before it signals */
    int gai_status;
    struct net_addrs addrs;
};

struct net_resolver {
    struct ev_loop *loop;
    struct lookup *lookup;         /* in progress (name lookups), or NULL */
    ev_io done_io;
    ev_timer timer;                /* timeout, or the next turn for a numeric address */
    bool numeric_pending;
    struct net_addrs numeric;
    net_resolved_fn fn;
    void *user;
    char addr[HOST_MAX + 16];
};

static void
lookup_release(struct lookup *l)
{
    if (atomic_fetch_sub(&l->refs, 1) == 1) {
        close(l->event_fd);
        free(l);
    }
}

/* IPv4 first: the daemons listen on IPv4 unless told otherwise. */
static void *
lookup_run(void *arg)
{
    struct lookup *l = arg;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    l->gai_status = getaddrinfo(l->host, l->port, &hints, &res);
    if (l->gai_status == 0) {
        /* Two passes: IPv4 addresses, then the others, each in the order
         * getaddrinfo gave them. */
        for (int pass = 0; pass < 2; pass++)
            for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
                if ((ai->ai_family == AF_INET) != (pass == 0) ||
                    l->addrs.count == NET_RESOLVE_MAX ||
                    ai->ai_addrlen > sizeof(l->addrs.sa[0]))
                    continue;
                memcpy(&l->addrs.sa[l->addrs.count], ai->ai_addr, ai->ai_addrlen);
                l->addrs.len[l->addrs.count++] = ai->ai_addrlen;
            }
        freeaddrinfo(res);
        if (l->addrs.count == 0)
            l->gai_status = EAI_NONAME;
    }
    uint64_t one = 1;
    ssize_t written = write(l->event_fd, &one, sizeof(one));
    (void)written; /* an eventfd write of 1 cannot fail short of a closed fd */
    lookup_release(l);
    return NULL;
}

static void
finish(struct net_resolver *r, const struct net_addrs *addrs, const struct ztr_err *err)
{
    net_resolved_fn fn = r->fn;
    void *user = r->user;
    r->fn = NULL;
    fn(user, addrs, err);
}

static void
drop_lookup(struct net_resolver *r)
{
    if (r->lookup == NULL)
        return;
    ev_io_stop(r->loop, &r->done_io);
    lookup_release(r->lookup);
    r->lookup = NULL;
}

static void
done_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct net_resolver *r = w->data;
    struct lookup *l = r->lookup;
    ev_timer_stop(r->loop, &r->timer);
    struct ztr_err err = {0};
    struct net_addrs addrs = {0};
    int status = l->gai_status;
    if (status == 0)
        addrs = l->addrs;
    else
        ztr_err_set(&err, ZTR_E_IO, "resolve %s: %s", l->host, gai_strerror(status));
    drop_lookup(r);
    finish(r, status == 0 ? &addrs : NULL, &err);
}

static void
timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct net_resolver *r = w->data;
    struct ztr_err err = {0};
    if (r->numeric_pending) {
        r->numeric_pending = false;
        struct net_addrs addrs = r->numeric;
        finish(r, &addrs, &err);
        return;
    }
    /* The lookup (and its host) may be freed by drop_lookup: name the
     * address it was started for. */
    drop_lookup(r);
    ztr_err_set(&err, ZTR_E_IO, "resolve %s: no answer within %d ms", r->addr,
                NET_RESOLVE_TIMEOUT_MS);
    finish(r, NULL, &err);
}

int
net_resolver_new(struct ev_loop *loop, struct net_resolver **out, struct ztr_err *err)
{
    struct net_resolver *r = calloc(1, sizeof(*r));
    *out = NULL;
    if (r == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    r->loop = loop;
    ev_init(&r->timer, timer_cb);
    r->timer.data = r;
    *out = r;
    return 0;
}

void
net_resolver_cancel(struct net_resolver *resolver)
{
    if (resolver == NULL)
        return;
    ev_timer_stop(resolver->loop, &resolver->timer);
    drop_lookup(resolver);
    resolver->numeric_pending = false;
    resolver->fn = NULL;
}

void
net_resolver_free(struct net_resolver *resolver)
{
    net_resolver_cancel(resolver);
    free(resolver);
}

bool
net_resolver_busy(const struct net_resolver *resolver)
{
    return resolver->fn != NULL;
}

bool
net_addr_is_numeric(const char *addr)
{
    struct sockaddr_storage sa;
    socklen_t len;
    struct ztr_err err = {0};
    return net_resolve(addr, &sa, &len, &err) == 0;
}

/* RFC 1123 host name: dot-separated labels of letters, digits and hyphens,
 * each 1..63 long, not starting or ending with a hyphen; 253 in all. */
static bool
host_name_valid(const char *host)
{
    size_t len = strlen(host), label = 0;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i <= len; i++) {
        char ch = host[i];
        if (ch == '.' || ch == '\0') {
            if (label == 0 || host[i - 1] == '-')
                return ch == '\0' && label == 0 && i == len && i > 0 && host[i - 1] == '.';
            label = 0;
            continue;
        }
        if (!isalnum((unsigned char)ch) && !(ch == '-' && label > 0))
            return false;
        if (++label > 63)
            return false;
    }
    return true;
}

int
net_addr_check_name(const char *addr, struct ztr_err *err)
{
    char host[HOST_MAX + 1];
    uint16_t port = 0;
    /* A dial needs a port: 0 only means "any" when listening. */
    bool parsed = config_parse_addr(addr, host, sizeof(host), &port) == 0 && port != 0;
    if (parsed && net_addr_is_numeric(addr))
        return 0;
    if (parsed && addr[0] != '[' && host_name_valid(host) &&
        strspn(host, "0123456789.") != strlen(host))
        return 0;
    return ztr_err_set(err, ZTR_E_INVALID,
                       "invalid address \"%s\" (use host:port with a host name or IP, e.g. "
                       "ctl.example.org:7443 or 127.0.0.1:7443)",
                       addr);
}

int
net_resolver_start(struct net_resolver *resolver, const char *addr, net_resolved_fn fn,
                   void *user, struct ztr_err *err)
{
    struct net_resolver *r = resolver;
    if (r->fn != NULL)
        return ztr_err_set(err, ZTR_E_LIMIT, "a lookup is already in progress");
    TRY(net_addr_check_name(addr, err));
    snprintf(r->addr, sizeof(r->addr), "%s", addr);
    if (net_resolve(addr, &r->numeric.sa[0], &r->numeric.len[0], err) == 0) {
        r->numeric.count = 1;
        r->fn = fn;
        r->user = user;
        r->numeric_pending = true;
        ev_timer_set(&r->timer, 0, 0);
        ev_timer_start(r->loop, &r->timer);
        return 0;
    }
    struct lookup *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    uint16_t port = 0;
    config_parse_addr(addr, l->host, sizeof(l->host), &port);
    snprintf(l->port, sizeof(l->port), "%u", (unsigned)port);
    l->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->event_fd < 0) {
        free(l);
        return ztr_err_set(err, ZTR_E_IO, "resolve %s: eventfd: %s", addr, strerror(errno));
    }
    atomic_init(&l->refs, 2);
    pthread_attr_t attr;
    pthread_t thread;
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&thread, &attr, lookup_run, l);
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        close(l->event_fd);
        free(l);
        return ztr_err_set(err, ZTR_E_IO, "resolve %s: cannot start a lookup thread: %s", addr,
                           strerror(rc));
    }
    r->lookup = l;
    r->fn = fn;
    r->user = user;
    ev_io_init(&r->done_io, done_cb, l->event_fd, EV_READ);
    r->done_io.data = r;
    ev_io_start(r->loop, &r->done_io);
    ev_timer_set(&r->timer, NET_RESOLVE_TIMEOUT_MS / 1000.0, 0);
    ev_timer_start(r->loop, &r->timer);
    return 0;
}
