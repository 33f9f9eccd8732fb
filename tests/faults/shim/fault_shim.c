/*
 * A fault injector for the fault suite, loaded with LD_PRELOAD into a real
 * binary. It watches one kind of call on files whose path contains a given
 * text and, at the Nth such call, kills the process (a crash at that durable
 * write), fails the call with ENOSPC or EIO (a full or broken disk), or
 * delays it (a slow disk).
 *
 *   ZTR_FAULT_OP      rename | fsync | write | open   (fsync covers fdatasync,
 *                     write covers pwrite/pwrite64/writev; open covers
 *                     creating or truncating opens)
 *   ZTR_FAULT_PATH    text the file's path must contain (empty: any path)
 *   ZTR_FAULT_NTH     the first matching call that faults (1-based, default 1)
 *   ZTR_FAULT_TIMES   how many matching calls fault from there (default 1;
 *                     0: every one after)
 *   ZTR_FAULT_ACTION  crash | crash-after | enospc | eio | delay:<ms>
 *   ZTR_FAULT_WHILE   a file: faults happen only while it exists (the test
 *                     "frees the disk" by removing it); NTH/TIMES still apply
 *   ZTR_FAULT_TRACE   a file: every matching call is appended to it as
 *                     "<n> <op> <path>" (how a test counts the durable writes
 *                     to crash at each one in turn)
 *
 * Without ZTR_FAULT_OP the shim passes every call through untouched.
 *
 * A clock jump, independent of the above:
 *
 *   ZTR_FAULT_CLOCK_FILE  a file holding a signed number of seconds added to
 *                     the wall clock (clock_gettime CLOCK_REALTIME and
 *                     _COARSE, gettimeofday, time; what wolfSSL checks
 *                     certificates with). The test rewrites it while the
 *                     process runs: it is read again at most every 50 ms of
 *                     monotonic time. Missing or empty: no offset. The
 *                     monotonic clock never jumps, as on a real machine.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum fault_op { OP_NONE, OP_RENAME, OP_FSYNC, OP_WRITE, OP_OPEN };
enum fault_action { ACT_CRASH, ACT_CRASH_AFTER, ACT_ENOSPC, ACT_EIO, ACT_DELAY };

static struct {
    bool loaded;
    enum fault_op op;
    enum fault_action action;
    long delay_ms;
    const char *path;
    const char *while_file;
    const char *trace;
    unsigned long nth;
    unsigned long times;
} cfg;

static atomic_ulong seen;

static ssize_t write_passthrough(int fd, const void *buf, size_t len);

static void
load_config(void)
{
    if (cfg.loaded)
        return;
    const char *op = getenv("ZTR_FAULT_OP");
    cfg.op = OP_NONE;
    if (op != NULL) {
        if (strcmp(op, "rename") == 0)
            cfg.op = OP_RENAME;
        else if (strcmp(op, "fsync") == 0)
            cfg.op = OP_FSYNC;
        else if (strcmp(op, "write") == 0)
            cfg.op = OP_WRITE;
        else if (strcmp(op, "open") == 0)
            cfg.op = OP_OPEN;
    }
    const char *action = getenv("ZTR_FAULT_ACTION");
    cfg.action = ACT_CRASH;
    if (action != NULL) {
        if (strcmp(action, "crash-after") == 0)
            cfg.action = ACT_CRASH_AFTER;
        else if (strcmp(action, "enospc") == 0)
            cfg.action = ACT_ENOSPC;
        else if (strcmp(action, "eio") == 0)
            cfg.action = ACT_EIO;
        else if (strncmp(action, "delay:", 6) == 0) {
            cfg.action = ACT_DELAY;
            cfg.delay_ms = strtol(action + 6, NULL, 10);
        }
    }
    cfg.path = getenv("ZTR_FAULT_PATH");
    cfg.while_file = getenv("ZTR_FAULT_WHILE");
    cfg.trace = getenv("ZTR_FAULT_TRACE");
    const char *nth = getenv("ZTR_FAULT_NTH");
    cfg.nth = nth != NULL ? strtoul(nth, NULL, 10) : 1;
    if (cfg.nth == 0)
        cfg.nth = 1;
    const char *times = getenv("ZTR_FAULT_TIMES");
    cfg.times = times != NULL ? strtoul(times, NULL, 10) : 1;
    cfg.loaded = true;
}

static void
fd_path(int fd, char *out, size_t cap)
{
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, cap - 1);
    out[n > 0 ? (size_t)n : 0] = '\0';
}

static void
trace(unsigned long n, const char *op, const char *path)
{
    if (cfg.trace == NULL)
        return;
    /* The raw syscalls: the shim's own write must not count or recurse. */
    int fd = (int)open(cfg.trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    char line[4200];
    int len = snprintf(line, sizeof(line), "%lu %s %s\n", n, op, path);
    if (len > 0)
        (void)!write_passthrough(fd, line, (size_t)len);
    close(fd);
}

/* What the matching call should do: 0 pass, else the errno to fail with
 * (the crash and delay actions act here and return 0 or -1 for "after"). */
static int
decide(enum fault_op op, const char *name, const char *path, bool *crash_after)
{
    *crash_after = false;
    load_config();
    if (cfg.op != op)
        return 0;
    if (cfg.path != NULL && cfg.path[0] != '\0' && strstr(path, cfg.path) == NULL)
        return 0;
    if (strstr(path, "/proc/") == path || (cfg.trace != NULL && strcmp(path, cfg.trace) == 0))
        return 0;
    struct stat st;
    if (cfg.while_file != NULL && stat(cfg.while_file, &st) != 0)
        return 0;
    unsigned long n = atomic_fetch_add(&seen, 1) + 1;
    trace(n, name, path);
    if (n < cfg.nth || (cfg.times != 0 && n >= cfg.nth + cfg.times))
        return 0;
    switch (cfg.action) {
    case ACT_CRASH:
        raise(SIGKILL);
        return 0;
    case ACT_CRASH_AFTER:
        *crash_after = true;
        return 0;
    case ACT_ENOSPC:
        return ENOSPC;
    case ACT_EIO:
        return EIO;
    case ACT_DELAY: {
        struct timespec ts = {cfg.delay_ms / 1000, (cfg.delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        return 0;
    }
    }
    return 0;
}

/* The next definition of name (libc's, or a sanitizer's interceptor). */
#define REAL(name)                                                                                \
    static __typeof__(&name) real_##name;                                                         \
    if (real_##name == NULL)                                                                      \
        real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

#define AFTER(result)                                                                             \
    do {                                                                                          \
        if (crash_after)                                                                          \
            raise(SIGKILL);                                                                       \
        return result;                                                                            \
    } while (0)

static ssize_t
write_passthrough(int fd, const void *buf, size_t len)
{
    REAL(write);
    return real_write(fd, buf, len);
}

int
rename(const char *from, const char *to)
{
    REAL(rename);
    bool crash_after;
    int e = decide(OP_RENAME, "rename", to != NULL ? to : "", &crash_after);
    if (e != 0) {
        errno = e;
        return -1;
    }
    int rc = real_rename(from, to);
    AFTER(rc);
}

int
renameat(int olddirfd, const char *from, int newdirfd, const char *to)
{
    REAL(renameat);
    bool crash_after;
    int e = decide(OP_RENAME, "renameat", to != NULL ? to : "", &crash_after);
    if (e != 0) {
        errno = e;
        return -1;
    }
    int rc = real_renameat(olddirfd, from, newdirfd, to);
    AFTER(rc);
}

static int
fsync_like(int fd, const char *name, int (*real)(int))
{
    char path[4096];
    fd_path(fd, path, sizeof(path));
    bool crash_after;
    int e = decide(OP_FSYNC, name, path, &crash_after);
    if (e != 0) {
        errno = e;
        return -1;
    }
    int rc = real(fd);
    AFTER(rc);
}

int
fsync(int fd)
{
    REAL(fsync);
    return fsync_like(fd, "fsync", real_fsync);
}

int
fdatasync(int fd)
{
    REAL(fdatasync);
    return fsync_like(fd, "fdatasync", real_fdatasync);
}

static int
write_fault(int fd, const char *name, bool *crash_after)
{
    *crash_after = false;
    char path[4096];
    fd_path(fd, path, sizeof(path));
    /* Sockets, pipes, eventfds and terminals are not the disk. */
    if (path[0] != '/')
        return 0;
    return decide(OP_WRITE, name, path, crash_after);
}

ssize_t
write(int fd, const void *buf, size_t len)
{
    REAL(write);
    load_config();
    if (cfg.op != OP_WRITE)
        return real_write(fd, buf, len);
    bool crash_after;
    int e = write_fault(fd, "write", &crash_after);
    if (e != 0) {
        errno = e;
        return -1;
    }
    ssize_t rc = real_write(fd, buf, len);
    AFTER(rc);
}

static ssize_t
pwrite_like(ssize_t (*real)(int, const void *, size_t, off_t), const char *name, int fd,
            const void *buf, size_t len, off_t off)
{
    load_config();
    if (cfg.op != OP_WRITE)
        return real(fd, buf, len, off);
    bool crash_after;
    int e = write_fault(fd, name, &crash_after);
    if (e != 0) {
        errno = e;
        return -1;
    }
    ssize_t rc = real(fd, buf, len, off);
    AFTER(rc);
}

ssize_t
pwrite(int fd, const void *buf, size_t len, off_t off)
{
    REAL(pwrite);
    return pwrite_like(real_pwrite, "pwrite", fd, buf, len, off);
}

ssize_t
pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    REAL(pwrite64);
    return pwrite_like(real_pwrite64, "pwrite64", fd, buf, len, off);
}

/* The mode argument exists only with O_CREAT or O_TMPFILE. */
#define OPEN_MODE(flags, mode)                                                                    \
    do {                                                                                          \
        if (((flags) & O_CREAT) != 0 || ((flags) & O_TMPFILE) == O_TMPFILE) {                     \
            va_list ap;                                                                           \
            va_start(ap, flags);                                                                  \
            mode = (mode_t)va_arg(ap, int);                                                       \
            va_end(ap);                                                                           \
        }                                                                                         \
    } while (0)

static int
open_like(int (*real)(const char *, int, ...), const char *name, const char *path, int flags,
          mode_t mode)
{
    load_config();
    if (cfg.op != OP_OPEN)
        return real(path, flags, mode);
    bool crash_after = false;
    int e = 0;
    /* Only opens that create or write: reading is not what a full disk stops. */
    if ((flags & (O_CREAT | O_TRUNC)) != 0 || (flags & O_ACCMODE) != O_RDONLY)
        e = decide(OP_OPEN, name, path != NULL ? path : "", &crash_after);
    if (e != 0) {
        errno = e;
        return -1;
    }
    int rc = real(path, flags, mode);
    AFTER(rc);
}

int
open(const char *path, int flags, ...)
{
    REAL(open);
    mode_t mode = 0;
    OPEN_MODE(flags, mode);
    return open_like(real_open, "open", path, flags, mode);
}

int
open64(const char *path, int flags, ...)
{
    REAL(open64);
    mode_t mode = 0;
    OPEN_MODE(flags, mode);
    return open_like(real_open64, "open64", path, flags, mode);
}

/* ---- the wall clock's offset ------------------------------------------------ */

static atomic_long clock_offset_s;
static atomic_llong clock_read_at_ms = -1000000; /* monotonic ms of the last read */

static int
clock_passthrough(clockid_t id, struct timespec *ts)
{
    REAL(clock_gettime);
    return real_clock_gettime(id, ts);
}

static long
wall_offset_s(void)
{
    static const char *file;
    static atomic_int looked;
    if (!atomic_load(&looked)) {
        file = getenv("ZTR_FAULT_CLOCK_FILE");
        atomic_store(&looked, 1);
    }
    if (file == NULL)
        return 0;
    struct timespec mono;
    if (clock_passthrough(CLOCK_MONOTONIC, &mono) != 0)
        return atomic_load(&clock_offset_s);
    long long now_ms = (long long)mono.tv_sec * 1000 + mono.tv_nsec / 1000000;
    long long last = atomic_load(&clock_read_at_ms);
    if (now_ms - last >= 50 && atomic_compare_exchange_strong(&clock_read_at_ms, &last, now_ms)) {
        long offset = 0;
        /* The raw calls: no allocation, and the shim's own open is not a
         * creating one, so it never faults. */
        int fd = (int)open(file, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            char text[32];
            ssize_t n = read(fd, text, sizeof(text) - 1);
            close(fd);
            if (n > 0) {
                text[n] = '\0';
                offset = strtol(text, NULL, 10);
            }
        }
        atomic_store(&clock_offset_s, offset);
    }
    return atomic_load(&clock_offset_s);
}

int
clock_gettime(clockid_t id, struct timespec *ts)
{
    int rc = clock_passthrough(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        ts->tv_sec += wall_offset_s();
    return rc;
}

int
gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    REAL(gettimeofday);
    int rc = real_gettimeofday(tv, tz);
    if (rc == 0)
        tv->tv_sec += wall_offset_s();
    return rc;
}

time_t
time(time_t *out)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return (time_t)-1;
    if (out != NULL)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
