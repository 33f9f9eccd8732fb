#include "base/fileio.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

#define PATH_MAX_LEN 4096

const char *
file_strerror(int errnum, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", strerror(errnum));
    if (cap > 0 && buf[0] != '\0')
        buf[0] = (char)tolower((unsigned char)buf[0]);
    return buf;
}

static int
errno_fail(struct ztr_err *err, const char *op, const char *path, int errnum)
{
    char reason[128];
    return ztr_err_set(err, errnum == ENOENT ? ZTR_E_NOT_FOUND : ZTR_E_IO, "%s %s: %s", op,
                       path, file_strerror(errnum, reason, sizeof(reason)));
}

int
file_read_all(const char *path, size_t max_len, char **out, size_t *out_len,
              struct ztr_err *err)
{
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
     * writer before the regular-file check below could refuse it. It has
     * no effect on reads from regular files. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return errno_fail(err, "open", path, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int saved = errno;
        close(fd);
        return errno_fail(err, "stat", path, saved);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ztr_err_set(err, ZTR_E_INVALID, "read %s: not a regular file", path);
    }
    if ((size_t)st.st_size > max_len) {
        close(fd);
        return ztr_err_set(err, ZTR_E_LIMIT, "read %s: file larger than %zu bytes", path,
                           max_len);
    }
    size_t cap = (size_t)st.st_size + 1;
    char *buf = malloc(cap);
    if (buf == NULL) {
        close(fd);
        return ztr_err_set(err, ZTR_E_NOMEM, "read %s: out of memory", path);
    }
    size_t len = 0;
    for (;;) {
        if (len == cap - 1) {
            /* The file grew since fstat; stop at the bound we sized for. */
            break;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int saved = errno;
            free(buf);
            close(fd);
            return errno_fail(err, "read", path, saved);
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    *out = buf;
    if (out_len != NULL)
        *out_len = len;
    return 0;
}

static int
write_all_fd(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int
fsync_parent_dir(const char *path, struct ztr_err *err)
{
    char copy[PATH_MAX_LEN];
    if (snprintf(copy, sizeof(copy), "%s", path) >= (int)sizeof(copy))
        return ztr_err_set(err, ZTR_E_LIMIT, "path too long: %s", path);
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno_fail(err, "open", dir, errno);
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc != 0)
        return errno_fail(err, "fsync", dir, saved);
    return 0;
}

/* Writes data to a new file at path (O_EXCL) and fsyncs it. */
static int
write_new_file(const char *path, const void *data, size_t len, mode_t mode,
               struct ztr_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return errno_fail(err, "open", path, errno);
    /* The umask may have narrowed the mode; the caller asked for exactly
     * this one (0600 keys, 0644 certs). */
    if (fchmod(fd, mode) != 0 || write_all_fd(fd, data, len) != 0 || fsync(fd) != 0) {
        int saved = errno;
        close(fd);
        unlink(path);
        return errno_fail(err, "write", path, saved);
    }
    if (close(fd) != 0) {
        int saved = errno;
        unlink(path);
        return errno_fail(err, "close", path, saved);
    }
    return 0;
}

int
file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                  struct ztr_err *err)
{
    static unsigned sequence;
    char tmp[PATH_MAX_LEN];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld.%u", path, (long)getpid(), sequence++);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return ztr_err_set(err, ZTR_E_LIMIT, "path too long: %s", path);
    TRY(write_new_file(tmp, data, len, mode, err));
    if (rename(tmp, path) != 0) {
        int saved = errno;
        unlink(tmp);
        return errno_fail(err, "rename", path, saved);
    }
    return fsync_parent_dir(path, err);
}

int
file_create_exclusive(const char *path, const void *data, size_t len, mode_t mode,
                      struct ztr_err *err)
{
    TRY(write_new_file(path, data, len, mode, err));
    return fsync_parent_dir(path, err);
}

/*
 * What an existing path may grant beyond `mode` is the question: ours, it
 * is narrowed to what was asked for (a warn line says so); someone else's,
 * we cannot know who else writes there, and refuse it.
 */
static int
narrow_mode(const char *path, const struct stat *st, mode_t mode, const char *what,
            struct ztr_err *err)
{
    mode_t have = st->st_mode & 07777;
    mode_t extra = have & 0777 & ~mode;
    if (extra == 0)
        return 0;
    if (st->st_uid != geteuid())
        return ztr_err_set(err, ZTR_E_INVALID,
                           "%s: %s has mode %04o and belongs to uid %u, not to this process "
                           "(uid %u): other users could read or replace it; chmod %04o it or "
                           "give it to the daemon's user",
                           path, what, (unsigned)have, (unsigned)st->st_uid,
                           (unsigned)geteuid(), (unsigned)mode);
    mode_t narrowed = have & ~extra;
    if (chmod(path, narrowed) != 0)
        return errno_fail(err, "chmod", path, errno);
    log_warn("permissions narrowed", "path=%s what=%s from=%04o to=%04o", path, what,
             (unsigned)have, (unsigned)narrowed);
    return 0;
}

int
file_ensure_dir(const char *dir, mode_t mode, struct ztr_err *err)
{
    if (mkdir(dir, mode) == 0 || errno == EEXIST) {
        struct stat st;
        /* stat, not lstat: systemd's DynamicUser= makes STATE_DIR a symlink
         * to /var/lib/private/<name>; the directory it names is checked. */
        if (stat(dir, &st) != 0)
            return errno_fail(err, "stat", dir, errno);
        if (!S_ISDIR(st.st_mode))
            return ztr_err_set(err, ZTR_E_INVALID, "%s: not a directory", dir);
        return narrow_mode(dir, &st, mode, "directory", err);
    }
    return errno_fail(err, "mkdir", dir, errno);
}

int
file_ensure_private(const char *path, struct ztr_err *err)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        return errno_fail(err, "stat", path, errno);
    }
    if (!S_ISREG(st.st_mode))
        return ztr_err_set(err, ZTR_E_INVALID, "%s: not a regular file", path);
    return narrow_mode(path, &st, 0600, "file", err);
}

int
file_create_private_if_missing(const char *path, struct ztr_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
        return fsync_parent_dir(path, err);
    }
    if (errno != EEXIST)
        return errno_fail(err, "open", path, errno);
    return file_ensure_private(path, err);
}

int
file_rename(const char *from, const char *to, struct ztr_err *err)
{
    if (rename(from, to) != 0)
        return errno_fail(err, "rename", from, errno);
    return fsync_parent_dir(to, err);
}

int
file_path_join(char *out, size_t cap, const char *dir, const char *name, struct ztr_err *err)
{
    if (cap > 0)
        out[0] = '\0';
    if (name[0] == '\0' || strchr(name, '/') != NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "\"%s\" is not a file name", name);
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return ztr_err_set(err, ZTR_E_LIMIT, "path %s/%s is longer than %zu bytes", dir, name,
                           cap > 0 ? cap - 1 : 0);
    }
    return 0;
}
