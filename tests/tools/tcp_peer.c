/*
 * tcp_peer: a standalone TCP peer for ztr's e2e tests and benchmarks:
 * servers to put behind the relay, and clients that drive traffic through
 * it and verify every byte. libc + POSIX + epoll; one thread with
 * nonblocking sockets, so thousands of connections never wait on each other.
 *
 * Servers (LISTEN is 127.x.y.z:PORT, port 0 = kernel's choice). Each prints
 * "listening port=N" once bound and runs until SIGTERM/SIGINT (exit 0).
 *   tcp_peer echo   LISTEN              echo; half-close aware; 64 KiB per connection
 *   tcp_peer http   LISTEN [BODY_BYTES] HTTP/1.1 200 "hello from resource\n" (or
 *                                       BODY_BYTES of 'x'); keep-alive, Connection: close
 *   tcp_peer source LISTEN BYTES        per connection: BYTES of (i * 131 + 7) & 0xff, then close
 *   tcp_peer sink   LISTEN              read and discard until EOF
 *
 * Clients (ADDR is 127.x.y.z:PORT). One result line on stdout and exit 0;
 * on failure a message on stderr and exit 1; usage errors exit 2.
 *   tcp_peer check ADDR STREAMS BYTES            -> ok streams=N bytes=B
 *   tcp_peer read  ADDR BYTES RATE [--hold SECS] -> ok bytes=N
 *                                    (failure: "error after N bytes: <reason>")
 *   tcp_peer hold  ADDR COUNT SECONDS            -> ok held=COUNT
 *   tcp_peer bench-throughput ADDR STREAMS SECONDS -> bytes=N seconds=S mbit_per_s=X
 *   tcp_peer bench-connect ADDR SECONDS CONCURRENCY
 *                                    -> requests=N seconds=S per_s=X errors=E
 *   tcp_peer bench-latency ADDR COUNT  -> count=N p50_us=X p99_us=Y max_us=Z
 * Every client also takes
 *   --socks5 PROXYADDR HOST PORT  connect through a SOCKS5 proxy (no auth,
 *                                 CONNECT to HOST as a domain name); ADDR is
 *                                 then not used
 *   --timeout SECONDS             see usage(); 0 = none
 * BYTES, RATE and BODY_BYTES take an optional K, M or G suffix (x 1024^n).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <linux/sockios.h>

#define KIB 1024u
#define IO_CHUNK (64 * KIB)   /* one read or write; also the echo buffer per connection */
#define HTTP_IN_MAX (8 * KIB) /* request headers beyond this get a 431 */
#define TX_CHUNK (16 * KIB)   /* check: generated but not yet sent, per stream */
#define FAIR_ROUNDS 16        /* reads/writes per event, so one busy socket cannot starve the rest */
#define MAX_REPORTED 10       /* failure lines printed before only counting */
#define MAX_COUNT 1000000u    /* upper bound for STREAMS, COUNT, CONCURRENCY */
#define NS 1000000000LL

#define IO_AGAIN (-1)         /* recv_nb/send_nb: would block */
#define IO_ERROR (-2)         /* recv_nb/send_nb: failed, errno says why */

/* ---- small utilities -------------------------------------------------------------- */

static __attribute__((format(printf, 1, 2))) void say(const char *fmt, ...)
{
    va_list ap;
    fputs("tcp_peer: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static __attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...)
{
    va_list ap;
    fputs("tcp_peer: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

/* A deadline SECONDS from now; 0 (no deadline) when SECONDS is 0. */
static int64_t deadline_after(double seconds)
{
    return seconds > 0 ? now_ns() + (int64_t)(seconds * 1e9) : 0;
}

/* Milliseconds until DEADLINE rounded up, for poll/epoll_wait: -1 when there
 * is no deadline, 0 once it has passed. */
static int ms_left(int64_t deadline)
{
    if (deadline == 0)
        return -1;
    int64_t left = deadline - now_ns();
    if (left <= 0)
        return 0;
    int64_t ms = (left + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void sleep_until(int64_t when)
{
    struct timespec ts = { .tv_sec = when / NS, .tv_nsec = when % NS };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* Decimal number; with SUFFIXES also K, M or G (powers of 1024). */
static bool parse_u64(const char *s, bool suffixes, uint64_t *out)
{
    char *end;
    unsigned shift = 0;

    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return false;
    if (suffixes && *end) {
        const char *units = "KMG", *u = strchr(units, *end & ~0x20);
        if (!u)
            return false;
        shift = 10 * (unsigned)(u - units + 1);
        end++;
    }
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        return false;
    *out = (uint64_t)v << shift;
    return true;
}

static bool parse_count(const char *s, unsigned *out)
{
    uint64_t v;
    if (!parse_u64(s, false, &v) || v == 0 || v > MAX_COUNT)
        return false;
    *out = (unsigned)v;
    return true;
}

static bool parse_seconds(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0 && v < 1e9))
        return false;
    *out = v;
    return true;
}

/* Numeric IPv4 "ip:port" inside 127.0.0.0/8; port 0 only when LISTENING. */
static bool parse_addr(const char *s, bool listening, struct sockaddr_in *out)
{
    const char *colon = strrchr(s, ':');
    char host[INET_ADDRSTRLEN];
    uint64_t port;

    if (!colon || (size_t)(colon - s) >= sizeof host)
        return false;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    if (inet_pton(AF_INET, host, &out->sin_addr) != 1 || (ntohl(out->sin_addr.s_addr) >> 24) != 127)
        return false;
    if (!parse_u64(colon + 1, false, &port) || port > 65535 || (port == 0 && !listening))
        return false;
    out->sin_port = htons((uint16_t)port);
    return true;
}

static const char *errdesc(int err)
{
    switch (err) {
    case ECONNRESET: return "connection reset";
    case EPIPE: return "connection closed by peer (broken pipe)";
    case ETIMEDOUT: return "connection timed out";
    default: return strerror(err);
    }
}

static void set_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void set_blocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        (void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
}

/* Thousands of sockets need more than the usual soft limit of 1024. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* One recv: >0 bytes, 0 EOF, IO_AGAIN or IO_ERROR (errno set). */
static ssize_t recv_nb(int fd, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : IO_ERROR;
    }
}

/* One send: >=0 bytes, IO_AGAIN or IO_ERROR (errno set). */
static ssize_t send_nb(int fd, const void *buf, size_t len)
{
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : IO_ERROR;
    }
}

static size_t first_difference(const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

/* ---- data patterns ------------------------------------------------------------------ */

/* The source pattern, byte i = (i * 131 + 7) & 0xff, has period 256, so
 * g_pattern + (offset & 0xff) is the pattern from any offset for up to
 * IO_CHUNK bytes. */
static uint8_t g_pattern[IO_CHUNK + 256];
static uint8_t g_scratch[IO_CHUNK]; /* receive buffer shared by everything single-threaded */
static uint8_t g_expect[IO_CHUNK];  /* check: what the echo should have returned */

static void init_pattern(void)
{
    for (size_t i = 0; i < sizeof g_pattern; i++)
        g_pattern[i] = (uint8_t)((i * 131u + 7u) & 0xffu);
}

/* A byte stream from splitmix64: the sender and the verifier of a check
 * stream each run one from the same seed. Bytes come out of each 64-bit word
 * lowest first, whatever the chunking, so both see the same sequence. */
struct prng {
    uint64_t state, word;
    unsigned left; /* bytes of word not yet used */
};

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void prng_fill(struct prng *p, uint8_t *out, size_t n)
{
    for (; n > 0 && p->left > 0; n--, p->left--) {
        *out++ = (uint8_t)p->word;
        p->word >>= 8;
    }
    for (; n >= 8; n -= 8, out += 8) {
        uint64_t w = splitmix64(&p->state);
        for (unsigned i = 0; i < 8; i++)
            out[i] = (uint8_t)(w >> (8 * i));
    }
    if (n > 0) {
        p->word = splitmix64(&p->state);
        p->left = 8;
        for (; n > 0; n--, p->left--) {
            *out++ = (uint8_t)p->word;
            p->word >>= 8;
        }
    }
}

/* ---- event loop ------------------------------------------------------------------------ */

/* Everything the loop polls starts with a watch; epoll hands the watch back
 * and its on_event casts it to the enclosing struct. Level-triggered. */
struct watch;
typedef void (*event_fn)(struct watch *w, uint32_t events);
struct watch {
    int fd;
    uint32_t interest;
    event_fn on_event;
};

static int g_epfd = -1;

static void watch_add(struct watch *w, int fd, uint32_t interest, event_fn fn)
{
    struct epoll_event ev = { .events = interest, .data.ptr = w };
    w->fd = fd;
    w->interest = interest;
    w->on_event = fn;
    if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl(ADD): %s", strerror(errno));
}

static void watch_set(struct watch *w, uint32_t interest)
{
    if (w->fd < 0 || w->interest == interest)
        return;
    struct epoll_event ev = { .events = interest, .data.ptr = w };
    if (epoll_ctl(g_epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0)
        die("epoll_ctl(MOD): %s", strerror(errno));
    w->interest = interest;
}

/* Closing the fd also takes it out of the epoll set (we never dup fds). */
static void watch_close(struct watch *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    w->interest = 0;
}

/* Handlers may close (and servers free) only their own watch, which epoll
 * reports at most once per batch, so the rest of the batch stays valid. */
static void loop_once(int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(g_epfd, evs, 256, timeout_ms);
    if (n < 0 && errno != EINTR)
        die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
        struct watch *w = evs[i].data.ptr;
        w->on_event(w, evs[i].events);
    }
}

static int usage(FILE *out)
{
    fputs("usage:\n"
          "  tcp_peer echo   LISTEN\n"
          "  tcp_peer http   LISTEN [BODY_BYTES]\n"
          "  tcp_peer source LISTEN BYTES\n"
          "  tcp_peer sink   LISTEN\n"
          "  tcp_peer check  ADDR STREAMS BYTES          [--timeout S (60, overall)]\n"
          "  tcp_peer read   ADDR BYTES RATE [--hold S]  [--timeout S (none, overall)]\n"
          "  tcp_peer hold   ADDR COUNT SECONDS          [--timeout S (60, to establish)]\n"
          "  tcp_peer bench-throughput ADDR STREAMS SECONDS [--timeout S (60, to connect)]\n"
          "  tcp_peer bench-connect    ADDR SECONDS CONCURRENCY\n"
          "  tcp_peer bench-latency    ADDR COUNT      [--timeout S (60, per reply)]\n"
          "clients also take --socks5 PROXYADDR HOST PORT.\n"
          "LISTEN/ADDR: 127.x.y.z:PORT. RATE: bytes/s, 0 = unlimited.\n"
          "read --hold S: wait S seconds after connecting before reading.\n"
          "BYTES, RATE, BODY_BYTES: optional K/M/G suffix (x 1024^n).\n",
          out);
    return out == stdout ? 0 : 2;
}

static __attribute__((format(printf, 1, 2))) int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("tcp_peer: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (tcp_peer --help for usage)\n", stderr);
    return 2;
}

/* ---- servers ------------------------------------------------------------------------------ */

enum server_mode { SRV_ECHO, SRV_HTTP, SRV_SOURCE, SRV_SINK };

struct server_conn {
    struct watch w; /* first: the loop hands us this */
    struct server_conn *prev, *next;
    uint8_t *buf;      /* echo: bytes to echo; http: request bytes */
    size_t start, end; /* buf[start, end) is not yet consumed */
    uint64_t sent;     /* source: pattern bytes sent; http: body bytes of this response */
    bool rd_eof;       /* the peer shut down its write side */
    bool draining;     /* our write side is shut; discarding input until the peer's EOF */
    /* http: the response in progress */
    bool responding, close_after;
    char head[192];
    size_t head_len, head_off;
    uint64_t body_len; /* body bytes this response sends (0 for HEAD and errors) */
    uint64_t skip;     /* request body bytes still to discard */
};

static struct {
    enum server_mode mode;
    uint64_t source_bytes;
    struct watch listener, signals;
    struct server_conn *conns;
    int64_t accept_resume; /* nonzero: accepting paused (out of fds) until then */
    bool stop;
} g_srv;

/* The http body: the whole of it, or (uniform) one chunk of 'x' repeated. */
static struct {
    char *data;
    size_t chunk;
    uint64_t total;
    bool uniform;
} g_body;

static void server_conn_free(struct server_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        g_srv.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    watch_close(&c->w);
    free(c->buf);
    free(c);
}

/* Reads once and throws it away; false on a socket error. */
static bool read_discard(struct server_conn *c)
{
    ssize_t n = recv_nb(c->w.fd, g_scratch, sizeof g_scratch);
    if (n == 0)
        c->rd_eof = true;
    return n != IO_ERROR;
}

/* -- echo: a bounded buffer per connection; stop reading while it is full -- */

static bool echo_read(struct server_conn *c)
{
    if (c->rd_eof)
        return true;
    if (c->end == IO_CHUNK && c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    if (c->end == IO_CHUNK)
        return true; /* full: wait until the peer reads what we echo */
    ssize_t n = recv_nb(c->w.fd, c->buf + c->end, IO_CHUNK - c->end);
    if (n > 0)
        c->end += (size_t)n;
    else if (n == 0)
        c->rd_eof = true;
    return n != IO_ERROR;
}

static bool echo_flush(struct server_conn *c)
{
    while (c->start < c->end) {
        ssize_t n = send_nb(c->w.fd, c->buf + c->start, c->end - c->start);
        if (n == IO_AGAIN)
            return true;
        if (n < 0)
            return false;
        c->start += (size_t)n;
    }
    c->start = c->end = 0;
    return true;
}

/* Returns false when the connection is finished (the caller frees it). */
static bool echo_event(struct server_conn *c, uint32_t ev)
{
    if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !echo_read(c))
        return false;
    if (!echo_flush(c))
        return false;
    if (c->rd_eof && c->start == c->end) {
        /* Everything echoed: pass the peer's half-close on, then we are done
         * (nothing can arrive after its EOF, so closing sends no reset). */
        shutdown(c->w.fd, SHUT_WR);
        return false;
    }
    uint32_t want = 0;
    if (!c->rd_eof && c->end - c->start < IO_CHUNK)
        want |= EPOLLIN;
    if (c->start < c->end)
        want |= EPOLLOUT;
    watch_set(&c->w, want);
    return true;
}

/* -- http: one request at a time; pipelined ones wait in buf or the kernel -- */

struct http_request {
    bool head_method, keep_alive;
    uint64_t content_length;
};

/* Parses the NUL-terminated request line and headers (modifies TEXT). */
static bool http_parse(char *text, struct http_request *r)
{
    char *eol = strstr(text, "\r\n");
    char *line = eol ? eol + 2 : NULL;
    if (eol)
        *eol = '\0';

    /* METHOD SP TARGET SP HTTP/1.x */
    char *sp1 = strchr(text, ' '), *sp2 = strrchr(text, ' ');
    if (!sp1 || sp2 == sp1 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
        return false;
    r->head_method = sp1 - text == 4 && strncmp(text, "HEAD", 4) == 0;
    r->keep_alive = strcmp(sp2 + 1, "HTTP/1.0") != 0;
    r->content_length = 0;

    while (line && *line) {
        eol = strstr(line, "\r\n");
        if (eol)
            *eol = '\0';
        char *colon = strchr(line, ':');
        if (colon) {
            *colon = '\0';
            char *value = colon + 1, *tail = value + strlen(value);
            value += strspn(value, " \t");
            while (tail > value && (tail[-1] == ' ' || tail[-1] == '\t'))
                *--tail = '\0';
            if (strcasecmp(line, "connection") == 0) {
                if (strcasestr(value, "close"))
                    r->keep_alive = false;
                else if (strcasestr(value, "keep-alive"))
                    r->keep_alive = true;
            } else if (strcasecmp(line, "content-length") == 0 &&
                       !parse_u64(value, false, &r->content_length)) {
                return false;
            }
        }
        line = eol ? eol + 2 : NULL;
    }
    return true;
}

static void http_start_response(struct server_conn *c, int status, const char *reason, bool body,
                                bool keep_alive)
{
    uint64_t len = status == 200 ? g_body.total : 0;
    int n = snprintf(c->head, sizeof c->head,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %" PRIu64
                     "\r\nConnection: %s\r\n\r\n",
                     status, reason, len, keep_alive ? "keep-alive" : "close");
    c->head_len = n > 0 && (size_t)n < sizeof c->head ? (size_t)n : 0;
    c->head_off = 0;
    c->body_len = body ? len : 0;
    c->sent = 0;
    c->responding = true;
    c->close_after = !keep_alive;
}

/* Starts the response to the next complete request in buf; false when
 * there is none yet. */
static bool http_next_request(struct server_conn *c)
{
    size_t skip = c->skip < c->end - c->start ? (size_t)c->skip : c->end - c->start;
    c->start += skip;
    c->skip -= skip;
    if (c->skip > 0)
        return false;

    char *req = (char *)c->buf + c->start;
    size_t avail = c->end - c->start;
    char *eoh = memmem(req, avail, "\r\n\r\n", 4);
    if (!eoh) {
        if (avail < HTTP_IN_MAX)
            return false;
        c->start = c->end = 0;
        http_start_response(c, 431, "Request Header Fields Too Large", false, false);
        return true;
    }
    *eoh = '\0';
    c->start += (size_t)(eoh + 4 - req);

    struct http_request r;
    if (!http_parse(req, &r)) {
        http_start_response(c, 400, "Bad Request", false, false);
        return true;
    }
    c->skip = r.content_length; /* bodies are only read to be thrown away */
    http_start_response(c, 200, "OK", !r.head_method, r.keep_alive);
    return true;
}

static bool http_read(struct server_conn *c)
{
    if (c->draining)
        return read_discard(c);
    if (c->rd_eof)
        return true;
    if (c->start == c->end)
        c->start = c->end = 0;
    if (c->end == HTTP_IN_MAX && c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    if (c->end == HTTP_IN_MAX)
        return true;
    ssize_t n = recv_nb(c->w.fd, c->buf + c->end, HTTP_IN_MAX - c->end);
    if (n > 0)
        c->end += (size_t)n;
    else if (n == 0)
        c->rd_eof = true;
    return n != IO_ERROR;
}

static struct iovec body_piece(uint64_t offset, uint64_t left)
{
    const char *p = g_body.uniform ? g_body.data : g_body.data + offset;
    size_t room = g_body.uniform ? g_body.chunk : (size_t)(g_body.total - offset);
    return (struct iovec){ .iov_base = (void *)p, .iov_len = left < room ? (size_t)left : room };
}

/* Writes the response in progress until done or the socket is full. */
static bool http_write(struct server_conn *c)
{
    while (c->responding) {
        struct iovec iov[2];
        size_t n = 0;
        if (c->head_off < c->head_len)
            iov[n++] = (struct iovec){ .iov_base = c->head + c->head_off, .iov_len = c->head_len - c->head_off };
        if (c->sent < c->body_len)
            iov[n++] = body_piece(c->sent, c->body_len - c->sent);
        if (n == 0) {
            c->responding = false;
            break;
        }
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = n };
        ssize_t w = sendmsg(c->w.fd, &msg, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        size_t head = c->head_len - c->head_off;
        if ((size_t)w < head)
            head = (size_t)w;
        c->head_off += head;
        c->sent += (size_t)w - head;
    }
    return true;
}

static bool http_event(struct server_conn *c, uint32_t ev)
{
    if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !http_read(c))
        return false;
    while (!c->draining) {
        if (!c->responding && !http_next_request(c))
            break;
        if (!http_write(c))
            return false;
        if (c->responding)
            break; /* socket full: wait for EPOLLOUT */
        if (c->close_after) {
            /* Wait for the client's EOF before closing: closing with unread
             * input would send a reset that can destroy the response. */
            shutdown(c->w.fd, SHUT_WR);
            c->draining = true;
        }
    }
    if (c->rd_eof && !c->responding)
        return false;
    watch_set(&c->w, c->responding ? EPOLLOUT : EPOLLIN);
    return true;
}

/* -- source: the pattern, then FIN; keep reading until the client's EOF -- */

static bool source_send(struct server_conn *c)
{
    for (int i = 0; i < FAIR_ROUNDS && c->sent < g_srv.source_bytes; i++) {
        uint64_t left = g_srv.source_bytes - c->sent;
        ssize_t n = send_nb(c->w.fd, g_pattern + (c->sent & 0xff), left < IO_CHUNK ? (size_t)left : IO_CHUNK);
        if (n == IO_AGAIN)
            break;
        if (n < 0)
            return false;
        c->sent += (size_t)n;
    }
    return true;
}

static bool source_event(struct server_conn *c, uint32_t ev)
{
    if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !read_discard(c))
        return false;
    if (!c->draining) {
        if (!source_send(c))
            return false;
        if (c->sent == g_srv.source_bytes) {
            shutdown(c->w.fd, SHUT_WR);
            c->draining = true;
        }
    }
    if (c->draining && c->rd_eof)
        return false;
    watch_set(&c->w, (c->rd_eof ? 0 : EPOLLIN) | (c->draining ? 0 : EPOLLOUT));
    return true;
}

static bool sink_event(struct server_conn *c, uint32_t ev)
{
    (void)ev;
    for (int i = 0; i < FAIR_ROUNDS; i++) {
        ssize_t n = recv_nb(c->w.fd, g_scratch, sizeof g_scratch);
        if (n == IO_AGAIN)
            return true;
        if (n <= 0)
            return false; /* EOF or error */
    }
    return true;
}

static void server_conn_event(struct watch *w, uint32_t ev)
{
    struct server_conn *c = (struct server_conn *)w;
    bool keep = false;
    switch (g_srv.mode) {
    case SRV_ECHO: keep = echo_event(c, ev); break;
    case SRV_HTTP: keep = http_event(c, ev); break;
    case SRV_SOURCE: keep = source_event(c, ev); break;
    case SRV_SINK: keep = sink_event(c, ev); break;
    }
    if (!keep)
        server_conn_free(c);
}

static void server_conn_open(int fd)
{
    size_t bufsize = g_srv.mode == SRV_ECHO ? IO_CHUNK : g_srv.mode == SRV_HTTP ? HTTP_IN_MAX : 0;
    struct server_conn *c = calloc(1, sizeof *c);
    if (!c || (bufsize && !(c->buf = malloc(bufsize)))) {
        say("out of memory: dropping a connection");
        free(c);
        close(fd);
        return;
    }
    set_nodelay(fd);
    c->next = g_srv.conns;
    if (c->next)
        c->next->prev = c;
    g_srv.conns = c;
    watch_add(&c->w, fd, g_srv.mode == SRV_SOURCE ? EPOLLIN | EPOLLOUT : EPOLLIN, server_conn_event);
}

static void on_accept(struct watch *w, uint32_t ev)
{
    (void)ev;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            server_conn_open(fd);
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* The pending connection stays readable: stop polling the
             * listener for a moment instead of spinning on it. */
            say("accept: %s; pausing accepts for 100 ms", strerror(errno));
            watch_set(w, 0);
            g_srv.accept_resume = now_ns() + NS / 10;
        }
        return; /* EAGAIN, or a transient error (ECONNABORTED, ...) */
    }
}

static void on_signal(struct watch *w, uint32_t ev)
{
    struct signalfd_siginfo si;
    (void)ev;
    if (read(w->fd, &si, sizeof si) > 0)
        g_srv.stop = true;
}

static void init_body(bool given, uint64_t bytes)
{
    static const char hello[] = "hello from resource\n";
    g_body.uniform = given;
    g_body.total = given ? bytes : sizeof hello - 1;
    g_body.chunk = given ? (bytes < IO_CHUNK ? (size_t)bytes : IO_CHUNK) : sizeof hello - 1;
    g_body.data = malloc(g_body.chunk + 1);
    if (!g_body.data)
        die("out of memory");
    if (given)
        memset(g_body.data, 'x', g_body.chunk);
    else
        memcpy(g_body.data, hello, g_body.chunk);
}

static int listen_on(const char *spec)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int one = 1;

    if (!parse_addr(spec, true, &a)) {
        usage_error("bad LISTEN address '%s' (want 127.x.y.z:PORT)", spec);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("bind %s: %s", spec, strerror(errno));
    if (listen(fd, 65535) < 0) /* the kernel caps this at net.core.somaxconn */
        die("listen %s: %s", spec, strerror(errno));
    if (getsockname(fd, (struct sockaddr *)&a, &alen) < 0)
        die("getsockname: %s", strerror(errno));
    printf("listening port=%u\n", ntohs(a.sin_port));
    fflush(stdout);
    return fd;
}

static int run_server(enum server_mode mode, const char *listen_spec)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    /* Taken as events from a signalfd, so a stop never races epoll_wait. */
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        die("signalfd: %s", strerror(errno));
    int lfd = listen_on(listen_spec);
    if (lfd < 0) {
        close(sfd);
        return 2;
    }

    g_srv.mode = mode;
    watch_add(&g_srv.signals, sfd, EPOLLIN, on_signal);
    watch_add(&g_srv.listener, lfd, EPOLLIN, on_accept);
    while (!g_srv.stop) {
        loop_once(g_srv.accept_resume ? ms_left(g_srv.accept_resume) : -1);
        if (g_srv.accept_resume && now_ns() >= g_srv.accept_resume) {
            g_srv.accept_resume = 0;
            watch_set(&g_srv.listener, EPOLLIN);
        }
    }
    while (g_srv.conns)
        server_conn_free(g_srv.conns);
    watch_close(&g_srv.listener);
    watch_close(&g_srv.signals);
    free(g_body.data);
    return 0;
}

static int cmd_echo(int argc, char **argv)
{
    if (argc != 1)
        return usage_error("echo takes LISTEN");
    return run_server(SRV_ECHO, argv[0]);
}

static int cmd_sink(int argc, char **argv)
{
    if (argc != 1)
        return usage_error("sink takes LISTEN");
    return run_server(SRV_SINK, argv[0]);
}

static int cmd_source(int argc, char **argv)
{
    if (argc != 2 || !parse_u64(argv[1], true, &g_srv.source_bytes))
        return usage_error("source takes LISTEN BYTES");
    return run_server(SRV_SOURCE, argv[0]);
}

static int cmd_http(int argc, char **argv)
{
    uint64_t bytes = 0;
    if (argc < 1 || argc > 2 || (argc == 2 && !parse_u64(argv[1], true, &bytes)))
        return usage_error("http takes LISTEN [BODY_BYTES]");
    init_body(argc == 2, bytes);
    return run_server(SRV_HTTP, argv[0]);
}

/* ---- client connections: connect, optionally through SOCKS5 ---------------------------- */

static struct {
    struct sockaddr_in addr; /* the server, or the SOCKS5 proxy */
    const char *socks_host;  /* non-NULL: CONNECT to socks_host:socks_port through addr */
    uint16_t socks_port;
    char name[96]; /* for messages */
} g_target;

enum cc_state { CC_CLOSED, CC_CONNECTING, CC_SOCKS_METHOD, CC_SOCKS_REPLY, CC_READY };

struct client_conn;
struct client_ops {
    void (*ready)(struct client_conn *c);                 /* connected (and SOCKS5 done) */
    void (*event)(struct client_conn *c, uint32_t events); /* events once ready */
    void (*failed)(struct client_conn *c, const char *why); /* fd already closed */
};

struct client_conn {
    struct watch w; /* first: the loop hands us this */
    enum cc_state state;
    const struct client_ops *ops;
    uint8_t socks[4 + 1 + 255 + 2]; /* the proxy's reply so far */
    size_t socks_have, socks_need;
};

static void client_close(struct client_conn *c)
{
    watch_close(&c->w);
    c->state = CC_CLOSED;
}

/* The handshake messages are tiny and go out on a fresh, idle socket, so a
 * short write can only mean the connection is broken. */
static bool socks_send(struct client_conn *c, const uint8_t *msg, size_t len, char *why, size_t wl)
{
    ssize_t n = send_nb(c->w.fd, msg, len);
    if (n == (ssize_t)len)
        return true;
    snprintf(why, wl, "SOCKS5: sending to the proxy failed: %s", n == IO_ERROR ? errdesc(errno) : "short write");
    return false;
}

static bool socks_send_greeting(struct client_conn *c, char *why, size_t wl)
{
    static const uint8_t hello[] = { 5, 1, 0 }; /* version 5, one method: no authentication */
    if (!socks_send(c, hello, sizeof hello, why, wl))
        return false;
    c->state = CC_SOCKS_METHOD;
    c->socks_have = 0;
    c->socks_need = 2;
    watch_set(&c->w, EPOLLIN);
    return true;
}

static bool socks_send_connect(struct client_conn *c, char *why, size_t wl)
{
    uint8_t req[4 + 1 + 255 + 2];
    size_t hl = strlen(g_target.socks_host), n = 0;
    req[n++] = 5; /* version */
    req[n++] = 1; /* CONNECT */
    req[n++] = 0; /* reserved */
    req[n++] = 3; /* ATYP: domain name */
    req[n++] = (uint8_t)hl;
    memcpy(req + n, g_target.socks_host, hl);
    n += hl;
    req[n++] = (uint8_t)(g_target.socks_port >> 8);
    req[n++] = (uint8_t)g_target.socks_port;
    if (!socks_send(c, req, n, why, wl))
        return false;
    c->state = CC_SOCKS_REPLY;
    c->socks_have = 0;
    c->socks_need = 5; /* VER REP RSV ATYP + the first address byte: enough for the length */
    return true;
}

static const char *socks_reply_name(unsigned rep)
{
    static const char *const names[] = {
        "succeeded", "general failure", "not allowed by ruleset", "network unreachable",
        "host unreachable", "connection refused", "TTL expired", "command not supported",
        "address type not supported",
    };
    return rep < sizeof names / sizeof names[0] ? names[rep] : "unknown";
}

/* Reads exactly the proxy's reply, never past it: what follows is stream data. */
static bool socks_read(struct client_conn *c, char *why, size_t wl)
{
    ssize_t n = recv_nb(c->w.fd, c->socks + c->socks_have, c->socks_need - c->socks_have);
    if (n == IO_AGAIN)
        return true;
    if (n == 0) {
        snprintf(why, wl, "SOCKS5: the proxy closed the connection during the handshake");
        return false;
    }
    if (n < 0) {
        snprintf(why, wl, "SOCKS5 handshake: %s", errdesc(errno));
        return false;
    }
    c->socks_have += (size_t)n;
    if (c->socks_have < c->socks_need)
        return true;
    if (c->socks[0] != 5) {
        snprintf(why, wl, "SOCKS5: the proxy answered with version %u", c->socks[0]);
        return false;
    }
    if (c->state == CC_SOCKS_METHOD) {
        if (c->socks[1] != 0) {
            snprintf(why, wl, "SOCKS5: the proxy refused no-auth (chose method 0x%02x)", c->socks[1]);
            return false;
        }
        return socks_send_connect(c, why, wl);
    }
    if (c->socks[1] != 0) {
        snprintf(why, wl, "SOCKS5 CONNECT to %s:%u failed: reply %u (%s)", g_target.socks_host,
                 g_target.socks_port, c->socks[1], socks_reply_name(c->socks[1]));
        return false;
    }
    if (c->socks_need == 5) {
        switch (c->socks[3]) {
        case 1: c->socks_need = 4 + 4 + 2; break;
        case 4: c->socks_need = 4 + 16 + 2; break;
        case 3: c->socks_need = 4 + 1 + (size_t)c->socks[4] + 2; break;
        default:
            snprintf(why, wl, "SOCKS5: bad address type %u in the proxy's reply", c->socks[3]);
            return false;
        }
        if (c->socks_have < c->socks_need)
            return true;
    }
    c->state = CC_READY;
    return true;
}

static bool client_handshake(struct client_conn *c, uint32_t ev, char *why, size_t wl)
{
    if (c->state != CC_CONNECTING)
        return socks_read(c, why, wl);
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->w.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (!err && !(ev & EPOLLOUT) && (ev & (EPOLLHUP | EPOLLERR)))
        err = ECONNRESET;
    if (err) {
        snprintf(why, wl, "connect to %s: %s", g_target.name, errdesc(err));
        return false;
    }
    if (!(ev & EPOLLOUT))
        return true;
    if (!g_target.socks_host) {
        c->state = CC_READY;
        return true;
    }
    return socks_send_greeting(c, why, wl);
}

static void client_conn_event(struct watch *w, uint32_t ev)
{
    struct client_conn *c = (struct client_conn *)w;
    char why[400];
    if (c->state == CC_READY) {
        c->ops->event(c, ev);
        return;
    }
    if (!client_handshake(c, ev, why, sizeof why)) {
        client_close(c);
        c->ops->failed(c, why);
    } else if (c->state == CC_READY) {
        c->ops->ready(c);
    }
}

/* Marks C as not connected, so closing it is harmless (calloc leaves fd 0). */
static void client_init(struct client_conn *c)
{
    c->w.fd = -1;
    c->state = CC_CLOSED;
}

/* Starts a nonblocking connect; false (with WHY) if it failed at once, in
 * which case no callback runs. */
static bool client_start(struct client_conn *c, const struct client_ops *ops, char *why, size_t wl)
{
    client_init(c);
    c->ops = ops;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, wl, "socket: %s", strerror(errno));
        return false;
    }
    set_nodelay(fd);
    if (connect(fd, (struct sockaddr *)&g_target.addr, sizeof g_target.addr) < 0 && errno != EINPROGRESS) {
        snprintf(why, wl, "connect to %s: %s", g_target.name, strerror(errno));
        close(fd);
        return false;
    }
    c->state = CC_CONNECTING;
    /* An immediate success also reports writable, so one path handles both. */
    watch_add(&c->w, fd, EPOLLOUT, client_conn_event);
    return true;
}

/* One connection, made with the loop, then handed over as a blocking fd. */
struct sync_conn {
    struct client_conn cc;
    bool done;
    char why[400];
};

static void sync_ready(struct client_conn *c) { ((struct sync_conn *)c)->done = true; }
static void sync_event(struct client_conn *c, uint32_t ev) { (void)c, (void)ev; }
static void sync_failed(struct client_conn *c, const char *why)
{
    struct sync_conn *s = (struct sync_conn *)c;
    s->done = true;
    snprintf(s->why, sizeof s->why, "%s", why);
}

static const struct client_ops sync_ops = { sync_ready, sync_event, sync_failed };

static int client_connect_blocking(int64_t deadline, char *why, size_t wl)
{
    struct sync_conn s;
    memset(&s, 0, sizeof s);
    if (!client_start(&s.cc, &sync_ops, why, wl))
        return -1;
    while (!s.done) {
        int t = ms_left(deadline);
        if (t == 0) {
            client_close(&s.cc);
            snprintf(why, wl, "timed out connecting to %s", g_target.name);
            return -1;
        }
        loop_once(t);
    }
    if (s.cc.state != CC_READY) {
        snprintf(why, wl, "%s", s.why);
        return -1;
    }
    epoll_ctl(g_epfd, EPOLL_CTL_DEL, s.cc.w.fd, NULL);
    set_blocking(s.cc.w.fd);
    return s.cc.w.fd;
}

/* Positional arguments and the options all clients share. */
struct client_args {
    const char *pos[3];
    int npos;
    double timeout; /* seconds, 0 = none */
    double hold;    /* read: seconds to wait before reading */
};

/* Fills A and g_target; returns 0, or 2 after a usage message. */
static int parse_client_args(int argc, char **argv, int npos, bool hold_ok, double default_timeout,
                             struct client_args *a)
{
    const char *proxy = NULL, *host = NULL, *port = NULL;
    memset(a, 0, sizeof *a);
    a->timeout = default_timeout;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--socks5") == 0) {
            if (i + 3 >= argc)
                return usage_error("--socks5 takes PROXYADDR HOST PORT");
            proxy = argv[++i];
            host = argv[++i];
            port = argv[++i];
        } else if (strcmp(arg, "--timeout") == 0) {
            if (i + 1 >= argc || !parse_seconds(argv[++i], &a->timeout))
                return usage_error("--timeout takes SECONDS");
        } else if (hold_ok && strcmp(arg, "--hold") == 0) {
            if (i + 1 >= argc || !parse_seconds(argv[++i], &a->hold))
                return usage_error("--hold takes SECONDS");
        } else if (strncmp(arg, "--", 2) == 0) {
            return usage_error("unknown option %s", arg);
        } else if (a->npos < npos) {
            a->pos[a->npos++] = arg;
        } else {
            return usage_error("too many arguments");
        }
    }
    if (a->npos < npos)
        return usage_error("missing arguments");

    if (proxy) {
        uint64_t p;
        size_t hl = strlen(host);
        if (!parse_addr(proxy, false, &g_target.addr))
            return usage_error("bad PROXYADDR '%s' (want 127.x.y.z:PORT)", proxy);
        if (hl == 0 || hl > 255)
            return usage_error("SOCKS5 HOST must be 1 to 255 bytes");
        if (!parse_u64(port, false, &p) || p == 0 || p > 65535)
            return usage_error("bad SOCKS5 PORT '%s'", port);
        g_target.socks_host = host;
        g_target.socks_port = (uint16_t)p;
        snprintf(g_target.name, sizeof g_target.name, "SOCKS5 proxy %s", proxy);
    } else {
        if (!parse_addr(a->pos[0], false, &g_target.addr))
            return usage_error("bad ADDR '%s' (want 127.x.y.z:PORT)", a->pos[0]);
        snprintf(g_target.name, sizeof g_target.name, "%s", a->pos[0]);
    }
    return 0;
}

static const char *client_state_name(enum cc_state s)
{
    switch (s) {
    case CC_CONNECTING: return "still connecting";
    case CC_SOCKS_METHOD:
    case CC_SOCKS_REPLY: return "in the SOCKS5 handshake";
    case CC_READY: return "connected";
    default: return "closed";
    }
}

/* ---- check: parallel verified echo streams --------------------------------------------- */

struct stream {
    struct client_conn cc; /* first: the loop hands us this */
    unsigned id;
    struct prng tx, rx; /* what we send; what must come back */
    uint64_t sent, received;
    uint8_t *txbuf; /* generated bytes; [tx_off, tx_len) not yet sent */
    size_t tx_off, tx_len;
    bool wr_shut, finished;
};

static struct {
    uint64_t bytes;
    unsigned count, finished, failed;
} g_check;

static void stream_end(struct stream *s)
{
    client_close(&s->cc);
    free(s->txbuf);
    s->txbuf = NULL;
    s->finished = true;
    g_check.finished++;
}

static __attribute__((format(printf, 2, 3))) void stream_fail(struct stream *s, const char *fmt, ...)
{
    stream_end(s);
    if (++g_check.failed > MAX_REPORTED)
        return;
    va_list ap;
    fprintf(stderr, "stream %u: ", s->id);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Verifies one read's worth of echo; false when the stream is finished. */
static bool stream_receive(struct stream *s)
{
    uint64_t want = g_check.bytes;
    ssize_t n = recv_nb(s->cc.w.fd, g_scratch, sizeof g_scratch);
    if (n == IO_AGAIN)
        return true;
    if (n == IO_ERROR) {
        stream_fail(s, "got %" PRIu64 " of %" PRIu64 " bytes, then %s", s->received, want, errdesc(errno));
        return false;
    }
    if (n == 0) {
        if (s->received == want && s->wr_shut) {
            stream_end(s); /* every byte back, then EOF: success */
            return false;
        }
        stream_fail(s, "got %" PRIu64 " of %" PRIu64 " bytes, then EOF%s", s->received, want,
                    s->wr_shut ? "" : " (before we finished sending)");
        return false;
    }
    if ((uint64_t)n > want - s->received) {
        stream_fail(s, "got more bytes back than were sent (%" PRIu64 " > %" PRIu64 ")",
                    s->received + (uint64_t)n, want);
        return false;
    }
    prng_fill(&s->rx, g_expect, (size_t)n);
    if (memcmp(g_scratch, g_expect, (size_t)n) != 0) {
        size_t i = first_difference(g_scratch, g_expect, (size_t)n);
        stream_fail(s, "mismatch at byte %" PRIu64 ": got 0x%02x, want 0x%02x", s->received + i,
                    g_scratch[i], g_expect[i]);
        return false;
    }
    s->received += (uint64_t)n;
    return true;
}

/* Sends what the socket takes; shuts down our side after the last byte. */
static bool stream_send(struct stream *s)
{
    for (int i = 0; i < FAIR_ROUNDS && s->sent < g_check.bytes; i++) {
        if (s->tx_off == s->tx_len) {
            uint64_t left = g_check.bytes - s->sent;
            s->tx_len = left < TX_CHUNK ? (size_t)left : TX_CHUNK;
            s->tx_off = 0;
            prng_fill(&s->tx, s->txbuf, s->tx_len);
        }
        ssize_t n = send_nb(s->cc.w.fd, s->txbuf + s->tx_off, s->tx_len - s->tx_off);
        if (n == IO_AGAIN)
            return true;
        if (n < 0) {
            stream_fail(s, "sent %" PRIu64 " of %" PRIu64 " bytes, then %s (got %" PRIu64 " back)", s->sent,
                        g_check.bytes, errdesc(errno), s->received);
            return false;
        }
        s->tx_off += (size_t)n;
        s->sent += (uint64_t)n;
    }
    if (s->sent == g_check.bytes) {
        shutdown(s->cc.w.fd, SHUT_WR);
        s->wr_shut = true;
        free(s->txbuf);
        s->txbuf = NULL;
    }
    return true;
}

/* Both directions at once: reading never waits for sending to finish. */
static void stream_pump(struct stream *s, uint32_t ev)
{
    if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !stream_receive(s))
        return;
    if (!s->wr_shut && (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && !stream_send(s))
        return;
    watch_set(&s->cc.w, EPOLLIN | (s->wr_shut ? 0 : EPOLLOUT));
}

static void check_ready(struct client_conn *c)
{
    struct stream *s = (struct stream *)c;
    if (g_check.bytes > 0 && !(s->txbuf = malloc(TX_CHUNK)))
        die("out of memory");
    stream_pump(s, EPOLLOUT);
}

static void check_event(struct client_conn *c, uint32_t ev) { stream_pump((struct stream *)c, ev); }
static void check_failed(struct client_conn *c, const char *why) { stream_fail((struct stream *)c, "%s", why); }

static const struct client_ops check_ops = { check_ready, check_event, check_failed };

static int cmd_check(int argc, char **argv)
{
    struct client_args a;
    char why[400];
    int rc = parse_client_args(argc, argv, 3, false, 60, &a);
    if (rc)
        return rc;
    if (!parse_count(a.pos[1], &g_check.count) || !parse_u64(a.pos[2], true, &g_check.bytes))
        return usage_error("check takes ADDR STREAMS BYTES");

    struct stream *streams = calloc(g_check.count, sizeof *streams);
    if (!streams)
        die("out of memory");
    for (unsigned i = 0; i < g_check.count; i++) {
        struct stream *s = &streams[i];
        s->id = i;
        s->tx.state = s->rx.state = 0x243F6A8885A308D3ull ^ ((uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull);
        if (!client_start(&s->cc, &check_ops, why, sizeof why))
            stream_fail(s, "%s", why);
    }
    int64_t deadline = deadline_after(a.timeout);
    while (g_check.finished < g_check.count) {
        int t = ms_left(deadline);
        if (t == 0)
            break;
        loop_once(t);
    }
    for (unsigned i = 0; i < g_check.count; i++) {
        struct stream *s = &streams[i];
        if (!s->finished)
            stream_fail(s, "timed out after %g s (%s; sent %" PRIu64 " of %" PRIu64 " bytes, got %" PRIu64 " back)",
                        a.timeout, client_state_name(s->cc.state), s->sent, g_check.bytes, s->received);
    }
    free(streams);

    if (g_check.failed) {
        fprintf(stderr, "check failed: %u of %u streams failed%s\n", g_check.failed, g_check.count,
                g_check.failed > MAX_REPORTED ? " (the first 10 are shown)" : "");
        return 1;
    }
    printf("ok streams=%u bytes=%" PRIu64 "\n", g_check.count, (uint64_t)g_check.count * g_check.bytes);
    return 0;
}

/* ---- read: a slow, verifying reader of a source -------------------------------------- */

static __attribute__((format(printf, 2, 3))) int read_error(uint64_t got, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "error after %" PRIu64 " bytes: ", got);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* Reads BYTES of the source pattern and then EOF from the blocking FD. */
static int read_verify(int fd, uint64_t bytes, uint64_t rate, int64_t deadline)
{
    size_t chunk = IO_CHUNK;
    if (rate > 0 && rate / 20 < IO_CHUNK) /* about 20 small reads a second */
        chunk = rate / 20 > 0 ? (size_t)(rate / 20) : 1;
    uint64_t got = 0;
    int64_t t0 = now_ns();

    for (;;) {
        if (rate > 0) { /* sleep until the bytes so far are due at RATE */
            int64_t due = t0 + (int64_t)((double)got * 1e9 / (double)rate);
            sleep_until(deadline && deadline < due ? deadline : due);
        }
        int t = ms_left(deadline);
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = t == 0 ? 0 : poll(&p, 1, t);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return read_error(got, "timed out");
        ssize_t n = recv(fd, g_scratch, chunk, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return read_error(got, "%s", errdesc(errno));
        }
        if (n == 0) {
            if (got == bytes)
                return 0;
            return read_error(got, "connection closed early (EOF; want %" PRIu64 " bytes)", bytes);
        }
        const uint8_t *want = g_pattern + (got & 0xff);
        if (memcmp(g_scratch, want, (size_t)n) != 0) {
            size_t i = first_difference(g_scratch, want, (size_t)n);
            return read_error(got + i, "data mismatch: got 0x%02x, want 0x%02x", g_scratch[i], want[i]);
        }
        if ((uint64_t)n > bytes - got)
            return read_error(bytes, "received more than %" PRIu64 " bytes", bytes);
        got += (uint64_t)n;
    }
}

static int cmd_read(int argc, char **argv)
{
    struct client_args a;
    uint64_t bytes, rate;
    char why[400];
    int rc = parse_client_args(argc, argv, 3, true, 0, &a);
    if (rc)
        return rc;
    if (!parse_u64(a.pos[1], true, &bytes) || !parse_u64(a.pos[2], true, &rate))
        return usage_error("read takes ADDR BYTES RATE");

    int64_t deadline = deadline_after(a.timeout);
    int fd = client_connect_blocking(deadline, why, sizeof why);
    if (fd < 0)
        return read_error(0, "%s", why);
    if (a.hold > 0) /* let the data pile up along the path before reading any */
        sleep_until(now_ns() + (int64_t)(a.hold * 1e9));
    rc = read_verify(fd, bytes, rate, deadline);
    close(fd);
    if (rc == 0)
        printf("ok bytes=%" PRIu64 "\n", bytes);
    return rc;
}

/* ---- hold: many established, idle connections ------------------------------------------- */

struct held {
    struct client_conn cc;
    unsigned id;
    bool echoed;
};

static struct {
    unsigned count, established;
    bool failed;
} g_hold;

static __attribute__((format(printf, 2, 3))) void hold_fail(struct held *h, const char *fmt, ...)
{
    client_close(&h->cc);
    if (g_hold.failed)
        return;
    g_hold.failed = true;
    va_list ap;
    fprintf(stderr, "connection %u: ", h->id);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void hold_ready(struct client_conn *c)
{
    struct held *h = (struct held *)c;
    uint8_t byte = (uint8_t)h->id;
    ssize_t n = send_nb(c->w.fd, &byte, 1);
    if (n != 1) {
        hold_fail(h, "sending the first byte failed: %s", n == IO_ERROR ? errdesc(errno) : "socket full");
        return;
    }
    watch_set(&c->w, EPOLLIN);
}

static void hold_event(struct client_conn *c, uint32_t ev)
{
    struct held *h = (struct held *)c;
    const char *when = h->echoed ? "during the hold" : "while waiting for the echo";
    uint8_t buf[64];
    (void)ev;
    ssize_t n = recv_nb(c->w.fd, buf, sizeof buf);
    if (n == IO_AGAIN)
        return;
    if (n == IO_ERROR)
        hold_fail(h, "%s %s", errdesc(errno), when);
    else if (n == 0)
        hold_fail(h, "closed by the peer (EOF) %s", when);
    else if (h->echoed || n != 1 || buf[0] != (uint8_t)h->id)
        hold_fail(h, "unexpected %zd bytes %s", n, when);
    else {
        h->echoed = true;
        g_hold.established++;
    }
}

static void hold_failed(struct client_conn *c, const char *why) { hold_fail((struct held *)c, "%s", why); }

static const struct client_ops hold_ops = { hold_ready, hold_event, hold_failed };

/* Runs the loop until DEADLINE or a failure; false on failure. UNTIL, when
 * given, ends it early once *UNTIL reaches TARGET. */
static bool hold_run(int64_t deadline, const unsigned *until, unsigned target)
{
    while (!g_hold.failed && !(until && *until >= target)) {
        int t = ms_left(deadline);
        if (t == 0)
            break;
        loop_once(t);
    }
    return !g_hold.failed;
}

static int cmd_hold(int argc, char **argv)
{
    struct client_args a;
    double seconds;
    char why[400];
    int rc = parse_client_args(argc, argv, 3, false, 60, &a);
    if (rc)
        return rc;
    if (!parse_count(a.pos[1], &g_hold.count) || !parse_seconds(a.pos[2], &seconds))
        return usage_error("hold takes ADDR COUNT SECONDS");

    struct held *conns = calloc(g_hold.count, sizeof *conns);
    if (!conns)
        die("out of memory");
    for (unsigned i = 0; i < g_hold.count; i++)
        client_init(&conns[i].cc);
    int64_t t0 = now_ns();
    for (unsigned i = 0; i < g_hold.count && !g_hold.failed; i++) {
        conns[i].id = i;
        if (!client_start(&conns[i].cc, &hold_ops, why, sizeof why))
            hold_fail(&conns[i], "%s", why);
    }
    if (hold_run(deadline_after(a.timeout), &g_hold.established, g_hold.count) &&
        g_hold.established < g_hold.count) {
        fprintf(stderr, "timed out after %g s: %u of %u connections established\n", a.timeout,
                g_hold.established, g_hold.count);
        g_hold.failed = true;
    }
    if (!g_hold.failed) {
        fprintf(stderr, "hold: %u connections established in %.2f s; holding for %g s\n", g_hold.count,
                (double)(now_ns() - t0) / 1e9, seconds);
        hold_run(now_ns() + (int64_t)(seconds * 1e9), NULL, 0);
    }
    for (unsigned i = 0; i < g_hold.count; i++)
        client_close(&conns[i].cc);
    free(conns);
    if (g_hold.failed)
        return 1;
    printf("ok held=%u\n", g_hold.count);
    return 0;
}

/* ---- bench-throughput: write to a sink as fast as it goes --------------------------- */

struct flow {
    struct client_conn cc;
    unsigned id;
    uint64_t sent;
};

static struct {
    unsigned count, ready;
    bool failed;
} g_tput;

static void flow_fail(struct flow *f, const char *why)
{
    client_close(&f->cc);
    if (!g_tput.failed)
        fprintf(stderr, "stream %u: %s\n", f->id, why);
    g_tput.failed = true;
}

static void tput_ready(struct client_conn *c)
{
    g_tput.ready++;
    watch_set(&c->w, EPOLLIN); /* sending starts when every stream is up */
}

static void tput_event(struct client_conn *c, uint32_t ev)
{
    struct flow *f = (struct flow *)c;
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t n = recv_nb(c->w.fd, g_scratch, sizeof g_scratch);
        if (n == 0 || n == IO_ERROR) {
            flow_fail(f, n == 0 ? "the sink closed the connection" : errdesc(errno));
            return;
        }
    }
    for (int i = 0; i < FAIR_ROUNDS && (ev & EPOLLOUT); i++) {
        ssize_t n = send_nb(c->w.fd, g_pattern, IO_CHUNK);
        if (n == IO_AGAIN)
            break;
        if (n < 0) {
            flow_fail(f, errdesc(errno));
            return;
        }
        f->sent += (uint64_t)n;
    }
}

static void tput_failed(struct client_conn *c, const char *why) { flow_fail((struct flow *)c, why); }

static const struct client_ops tput_ops = { tput_ready, tput_event, tput_failed };

static void tput_run(int64_t deadline, bool (*done)(void))
{
    while (!g_tput.failed && !(done && done())) {
        int t = ms_left(deadline);
        if (t == 0)
            break;
        loop_once(t);
    }
}

static bool tput_all_ready(void) { return g_tput.ready == g_tput.count; }

static int cmd_bench_throughput(int argc, char **argv)
{
    struct client_args a;
    double seconds;
    char why[400];
    int rc = parse_client_args(argc, argv, 3, false, 60, &a);
    if (rc)
        return rc;
    if (!parse_count(a.pos[1], &g_tput.count) || !parse_seconds(a.pos[2], &seconds) || seconds <= 0)
        return usage_error("bench-throughput takes ADDR STREAMS SECONDS");

    struct flow *flows = calloc(g_tput.count, sizeof *flows);
    if (!flows)
        die("out of memory");
    for (unsigned i = 0; i < g_tput.count; i++)
        client_init(&flows[i].cc);
    for (unsigned i = 0; i < g_tput.count && !g_tput.failed; i++) {
        flows[i].id = i;
        if (!client_start(&flows[i].cc, &tput_ops, why, sizeof why))
            flow_fail(&flows[i], why);
    }
    tput_run(deadline_after(a.timeout), tput_all_ready);
    if (!g_tput.failed && !tput_all_ready()) {
        fprintf(stderr, "timed out after %g s: %u of %u streams connected\n", a.timeout, g_tput.ready, g_tput.count);
        g_tput.failed = true;
    }

    int64_t t0 = now_ns();
    if (!g_tput.failed) {
        for (unsigned i = 0; i < g_tput.count; i++)
            watch_set(&flows[i].cc.w, EPOLLIN | EPOLLOUT);
        tput_run(t0 + (int64_t)(seconds * 1e9), NULL);
    }
    double elapsed = (double)(now_ns() - t0) / 1e9;

    /* Count what reached the peer: accepted by send() minus what is still
     * queued unacknowledged in our socket. */
    uint64_t total = 0;
    for (unsigned i = 0; i < g_tput.count; i++) {
        int queued = 0;
        total += flows[i].sent;
        if (flows[i].cc.w.fd >= 0 && ioctl(flows[i].cc.w.fd, SIOCOUTQ, &queued) == 0 && queued > 0)
            total -= (uint64_t)queued < total ? (uint64_t)queued : total;
        client_close(&flows[i].cc);
    }
    free(flows);
    if (g_tput.failed)
        return 1;
    printf("bytes=%" PRIu64 " seconds=%.3f mbit_per_s=%.1f\n", total, elapsed, (double)total * 8 / elapsed / 1e6);
    return 0;
}

/* ---- bench-connect: a new connection per HTTP request ------------------------------------ */

static const char http_request[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

struct worker {
    struct client_conn cc;
    size_t req_off;   /* request bytes sent */
    uint64_t got;     /* response bytes received */
    char head[1024];  /* the start of the response */
    size_t head_len;
};

static struct {
    uint64_t requests, errors;
    char first_error[400];
} g_bc;

static void worker_error(struct worker *w, const char *why)
{
    client_close(&w->cc);
    if (g_bc.errors++ == 0)
        snprintf(g_bc.first_error, sizeof g_bc.first_error, "%s", why);
}

/* NULL when the response is a complete 200 with the body it announced. */
static const char *http_response_problem(struct worker *w)
{
    w->head[w->head_len] = '\0';
    if (strncmp(w->head, "HTTP/1.1 200 ", 13) != 0 && strncmp(w->head, "HTTP/1.0 200 ", 13) != 0)
        return "the response is not a 200";
    char *eoh = strstr(w->head, "\r\n\r\n");
    if (!eoh)
        return "the response headers are incomplete or over 1 KiB";
    char *cl = strcasestr(w->head, "\r\nContent-Length:");
    uint64_t head = (uint64_t)(eoh + 4 - w->head);
    if (cl && cl < eoh && strtoull(cl + 17, NULL, 10) != w->got - head)
        return "the body length differs from Content-Length";
    return NULL;
}

static void worker_send(struct worker *w)
{
    while (w->req_off < sizeof http_request - 1) {
        ssize_t n = send_nb(w->cc.w.fd, http_request + w->req_off, sizeof http_request - 1 - w->req_off);
        if (n == IO_AGAIN)
            break;
        if (n < 0) {
            worker_error(w, errdesc(errno));
            return;
        }
        w->req_off += (size_t)n;
    }
    watch_set(&w->cc.w, EPOLLIN | (w->req_off < sizeof http_request - 1 ? EPOLLOUT : 0));
}

static void worker_ready(struct client_conn *c) { worker_send((struct worker *)c); }

static void worker_event(struct client_conn *c, uint32_t ev)
{
    struct worker *w = (struct worker *)c;
    if ((ev & EPOLLOUT) && w->req_off < sizeof http_request - 1) {
        worker_send(w);
        if (c->state != CC_READY)
            return;
    }
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    ssize_t n = recv_nb(c->w.fd, g_scratch, sizeof g_scratch);
    if (n == IO_AGAIN)
        return;
    if (n == IO_ERROR) {
        worker_error(w, errdesc(errno));
        return;
    }
    if (n == 0) {
        const char *problem = http_response_problem(w);
        if (problem) {
            worker_error(w, problem);
            return;
        }
        client_close(c);
        g_bc.requests++;
        return;
    }
    size_t keep = sizeof w->head - 1 - w->head_len;
    if (keep > (size_t)n)
        keep = (size_t)n;
    memcpy(w->head + w->head_len, g_scratch, keep);
    w->head_len += keep;
    w->got += (uint64_t)n;
}

static void worker_failed(struct client_conn *c, const char *why) { worker_error((struct worker *)c, why); }

static const struct client_ops worker_ops = { worker_ready, worker_event, worker_failed };

static void worker_begin(struct worker *w)
{
    char why[400];
    w->req_off = 0;
    w->got = 0;
    w->head_len = 0;
    if (!client_start(&w->cc, &worker_ops, why, sizeof why))
        worker_error(w, why);
}

static int cmd_bench_connect(int argc, char **argv)
{
    struct client_args a;
    double seconds;
    unsigned concurrency;
    int rc = parse_client_args(argc, argv, 3, false, 0, &a);
    if (rc)
        return rc;
    if (!parse_seconds(a.pos[1], &seconds) || seconds <= 0 || !parse_count(a.pos[2], &concurrency))
        return usage_error("bench-connect takes ADDR SECONDS CONCURRENCY");

    struct worker *workers = calloc(concurrency, sizeof *workers);
    if (!workers)
        die("out of memory");
    for (unsigned i = 0; i < concurrency; i++)
        client_init(&workers[i].cc);
    int64_t t0 = now_ns(), deadline = t0 + (int64_t)(seconds * 1e9);
    for (;;) {
        /* Restart every idle worker; one that failed at once is retried
         * after a millisecond rather than in a tight loop. */
        bool retry_soon = false;
        for (unsigned i = 0; i < concurrency; i++) {
            if (workers[i].cc.state == CC_CLOSED) {
                worker_begin(&workers[i]);
                retry_soon |= workers[i].cc.state == CC_CLOSED;
            }
        }
        int t = ms_left(deadline);
        if (t == 0)
            break;
        loop_once(retry_soon && t > 1 ? 1 : t);
    }
    double elapsed = (double)(now_ns() - t0) / 1e9;
    for (unsigned i = 0; i < concurrency; i++)
        client_close(&workers[i].cc); /* requests in flight are not counted */
    free(workers);

    printf("requests=%" PRIu64 " seconds=%.3f per_s=%.1f errors=%" PRIu64 "\n", g_bc.requests, elapsed,
           (double)g_bc.requests / elapsed, g_bc.errors);
    if (g_bc.errors)
        fprintf(stderr, "bench-connect: %" PRIu64 " errors; the first: %s\n", g_bc.errors, g_bc.first_error);
    if (g_bc.requests == 0) {
        fprintf(stderr, "bench-connect: no request completed\n");
        return 1;
    }
    return 0;
}

/* ---- bench-latency: 64-byte round trips on one connection ------------------------------- */

#define PING_BYTES 64

static int compare_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of the sorted V. */
static double percentile_us(const int64_t *v, unsigned n, unsigned pct)
{
    uint64_t rank = ((uint64_t)n * pct + 99) / 100;
    return (double)v[rank ? rank - 1 : 0] / 1e3;
}

/* One round trip on the blocking FD; NULL or why it failed. */
static const char *ping(int fd, unsigned seq)
{
    uint8_t msg[PING_BYTES], back[PING_BYTES];
    size_t done;

    for (unsigned i = 0; i < PING_BYTES; i++)
        msg[i] = (uint8_t)(seq * 131u + i);
    for (done = 0; done < PING_BYTES;) {
        ssize_t n = send(fd, msg + done, PING_BYTES - done, MSG_NOSIGNAL);
        if (n < 0 && errno != EINTR)
            return errno == EAGAIN || errno == EWOULDBLOCK ? "timed out sending" : errdesc(errno);
        done += n > 0 ? (size_t)n : 0;
    }
    for (done = 0; done < PING_BYTES;) {
        ssize_t n = recv(fd, back + done, PING_BYTES - done, 0);
        if (n == 0)
            return "connection closed by the peer (EOF)";
        if (n < 0 && errno != EINTR)
            return errno == EAGAIN || errno == EWOULDBLOCK ? "timed out waiting for the echo" : errdesc(errno);
        done += n > 0 ? (size_t)n : 0;
    }
    return memcmp(msg, back, PING_BYTES) == 0 ? NULL : "the echo differs from what was sent";
}

static int cmd_bench_latency(int argc, char **argv)
{
    struct client_args a;
    unsigned count;
    char why[400];
    int rc = parse_client_args(argc, argv, 2, false, 60, &a);
    if (rc)
        return rc;
    if (!parse_count(a.pos[1], &count))
        return usage_error("bench-latency takes ADDR COUNT");

    int fd = client_connect_blocking(deadline_after(a.timeout), why, sizeof why);
    if (fd < 0) {
        fprintf(stderr, "%s\n", why);
        return 1;
    }
    if (a.timeout > 0) {
        struct timeval tv = { .tv_sec = (time_t)a.timeout,
                              .tv_usec = (suseconds_t)((a.timeout - (double)(time_t)a.timeout) * 1e6) };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    int64_t *lat = malloc(count * sizeof *lat);
    if (!lat)
        die("out of memory");
    for (unsigned i = 0; i < count; i++) {
        int64_t t0 = now_ns();
        const char *problem = ping(fd, i);
        if (problem) {
            fprintf(stderr, "round trip %u: %s\n", i, problem);
            free(lat);
            close(fd);
            return 1;
        }
        lat[i] = now_ns() - t0;
    }
    close(fd);
    qsort(lat, count, sizeof *lat, compare_i64);
    printf("count=%u p50_us=%.1f p99_us=%.1f max_us=%.1f\n", count, percentile_us(lat, count, 50),
           percentile_us(lat, count, 99), (double)lat[count - 1] / 1e3);
    free(lat);
    return 0;
}

/* ---- main ----------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} modes[] = {
    { "echo", cmd_echo },
    { "http", cmd_http },
    { "source", cmd_source },
    { "sink", cmd_sink },
    { "check", cmd_check },
    { "read", cmd_read },
    { "hold", cmd_hold },
    { "bench-throughput", cmd_bench_throughput },
    { "bench-connect", cmd_bench_connect },
    { "bench-latency", cmd_bench_latency },
};

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
        return usage(stdout);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        if (strcmp(argv[1], modes[i].name) != 0)
            continue;
        raise_nofile();
        signal(SIGPIPE, SIG_IGN); /* MSG_NOSIGNAL everywhere, but be sure */
        init_pattern();
        g_epfd = epoll_create1(EPOLL_CLOEXEC);
        if (g_epfd < 0)
            die("epoll_create1: %s", strerror(errno));
        int rc = modes[i].run(argc - 2, argv + 2);
        close(g_epfd);
        return rc;
    }
    fprintf(stderr, "tcp_peer: unknown mode '%s'\n", argv[1]);
    return usage(stderr);
}
