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

/* A test PKI: a real CA for one trust domain and leaves issued from it
 * (the controller's own issuing code), for tests that run real mTLS. */
struct pki_ca;
struct tls_ctx;
struct ev_loop;
struct test_pki {
    struct pki_ca *ca;
    char *bundle;
    size_t bundle_len;
    int64_t now;
    char trust_domain[64];
};
struct test_identity {
    char *chain, *key;
    size_t chain_len, key_len;
};
/* Calls pki_init; test_pki_free calls pki_cleanup. */
void test_pki_init(struct test_pki *pki, const char *trust_domain);
void test_pki_free(struct test_pki *pki);
/* role: enum pki_role. ip (may be NULL) becomes the leaf's IP SAN. */
void test_pki_issue(const struct test_pki *pki, int role, const char *name, const char *ip,
                    struct test_identity *out);
void test_identity_free(struct test_identity *id);
/* A TLS context for side (enum tls_side) with alpn, presenting id (NULL:
 * none) and trusting pki's CA; the caller frees it with tls_ctx_free. */
struct tls_ctx *test_tls_ctx(const struct test_pki *pki, int side, const char *alpn,
                             const struct test_identity *id);

/* One turn of loop, blocking at most 10 ms. */
void test_loop_once(struct ev_loop *loop);
/* Monotonic seconds. */
double test_now(void);
/* Turns loop until cond holds, for at most 10 s (then the caller's asserts
 * report what did not happen). */
#define TEST_LOOP_UNTIL(loop, cond)                                   \
    do {                                                              \
        double end_ = test_now() + 10.0;                              \
        while (!(cond) && test_now() < end_)                          \
            test_loop_once(loop);                                     \
    } while (0)

#endif
