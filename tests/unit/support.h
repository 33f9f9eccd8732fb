/* Helpers shared by the unit tests (linked into every test binary). */
#ifndef ZTR_TESTS_SUPPORT_H
#define ZTR_TESTS_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the three above first. */
#include <cmocka.h>

/* A fresh private directory under $TMPDIR; removed by test_rmtree(). The
 * returned string is malloc()ed. */
char *test_mkdtemp(void);
void test_rmtree(const char *dir);

/* path = dir + "/" + name, malloc()ed. */
char *test_path(const char *dir, const char *name);

/* Writes text to path (0600); fails the test on error. */
void test_write_file(const char *path, const char *text);
/* Reads the whole file; fails the test on error. malloc()ed. */
char *test_read_file(const char *path, size_t *len);

/* Runs a shell command (for the openssl CLI); returns its exit status. */
int test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Captures log lines for assertions (log_set_sink). */
void test_log_capture_start(void);
void test_log_capture_stop(void);
/* Everything logged since start, one line per event, '\n'-separated. */
const char *test_log_captured(void);

/* A growing byte buffer for captured output: buf[off, len) unread. */
struct test_bytes {
    uint8_t *buf;
    size_t len, off, cap;
};
/* Appends n bytes (fails the test when out of memory). */
void test_bytes_add(struct test_bytes *b, const void *p, size_t n);
void test_bytes_free(struct test_bytes *b);

#endif
