#define _XOPEN_SOURCE 700
#include "tests/unit/support.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/log.h"

char *
test_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *path = test_path(base && base[0] ? base : "/tmp", "ztr-test-XXXXXX");
    assert_non_null(mkdtemp(path));
    return path;
}

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void
test_rmtree(const char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *
test_path(const char *dir, const char *name)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *path = malloc(len);
    assert_non_null(path);
    snprintf(path, len, "%s/%s", dir, name);
    return path;
}

void
test_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    chmod(path, 0600);
}

char *
test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 4096, used = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n;
    while ((n = fread(buf + used, 1, cap - used - 1, f)) > 0) {
        used += n;
        if (cap - used - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    fclose(f);
    buf[used] = '\0';
    if (len != NULL)
        *len = used;
    return buf;
}

int
test_sh(const char *fmt, ...)
{
    char command[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(command, sizeof(command), fmt, ap);
    va_end(ap);
    int status = system(command);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static struct {
    char *text;
    size_t len;
    size_t cap;
} captured;

static void
capture_sink(void *ctx, enum log_level level, const char *line)
{
    (void)ctx;
    (void)level;
    size_t add = strlen(line) + 1;
    if (captured.len + add + 1 > captured.cap) {
        size_t cap = (captured.cap ? captured.cap * 2 : 4096) + add;
        captured.text = realloc(captured.text, cap);
        assert_non_null(captured.text);
        captured.cap = cap;
    }
    memcpy(captured.text + captured.len, line, add - 1);
    captured.len += add;
    captured.text[captured.len - 1] = '\n';
    captured.text[captured.len] = '\0';
}

void
test_log_capture_start(void)
{
    free(captured.text);
    captured.text = NULL;
    captured.len = captured.cap = 0;
    log_set_sink(capture_sink, NULL);
}

void
test_log_capture_stop(void)
{
    log_reset_sink();
    free(captured.text);
    captured.text = NULL;
    captured.len = captured.cap = 0;
}

const char *
test_log_captured(void)
{
    return captured.text ? captured.text : "";
}

void
test_bytes_add(struct test_bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        b->buf = realloc(b->buf, cap);
        assert_non_null(b->buf);
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->buf + b->len, p, n);
    b->len += n;
}

void
test_bytes_free(struct test_bytes *b)
{
    free(b->buf);
    memset(b, 0, sizeof(*b));
}
