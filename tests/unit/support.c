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
#include "net/tls.h"
#include "pki/pki.h"

#include <ev.h>
#include <time.h>

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

void
test_pki_init(struct test_pki *pki, const char *trust_domain)
{
    memset(pki, 0, sizeof(*pki));
    assert_int_equal(pki_init(NULL), 0);
    snprintf(pki->trust_domain, sizeof(pki->trust_domain), "%s", trust_domain);
    pki->now = (int64_t)time(NULL);
    assert_int_equal(pki_ca_create(trust_domain, pki->now - 3600, 86400, &pki->ca, NULL), 0);
    assert_int_equal(pki_ca_cert_pem(pki->ca, &pki->bundle, &pki->bundle_len, NULL), 0);
}

void
test_pki_free(struct test_pki *pki)
{
    free(pki->bundle);
    pki_ca_free(pki->ca);
    pki_cleanup();
    memset(pki, 0, sizeof(*pki));
}

void
test_pki_issue(const struct test_pki *pki, int role, const char *name, const char *ip,
               struct test_identity *out)
{
    struct pki_key *key;
    uint8_t *public_der;
    size_t public_len;
    struct pki_spiffe_id id;
    struct pki_ip parsed;
    assert_int_equal(pki_key_generate(&key, NULL), 0);
    assert_int_equal(pki_key_public_der(key, &public_der, &public_len, NULL), 0);
    assert_int_equal(pki_spiffe_id_build(pki->trust_domain, (enum pki_role)role, name, &id, NULL),
                     0);
    if (ip != NULL)
        assert_int_equal(pki_ip_parse(ip, &parsed), 0);
    struct pki_leaf_request request = {&id, public_der, public_len, &parsed, ip ? 1 : 0,
                                       pki->now - 60, pki->now + 3600, NULL, 0};
    assert_int_equal(pki_ca_issue(pki->ca, &request, &out->chain, &out->chain_len, NULL), 0);
    assert_int_equal(pki_key_to_pem(key, &out->key, &out->key_len, NULL), 0);
    free(public_der);
    pki_key_free(key);
}

void
test_identity_free(struct test_identity *id)
{
    free(id->chain);
    free(id->key);
    memset(id, 0, sizeof(*id));
}

struct tls_ctx *
test_tls_ctx(const struct test_pki *pki, int side, const char *alpn,
             const struct test_identity *id)
{
    struct tls_ctx_config config = {.side = (enum tls_side)side, .alpn = alpn,
                                    .bundle_pem = pki->bundle, .bundle_len = pki->bundle_len};
    if (id != NULL) {
        config.chain_pem = id->chain;
        config.chain_len = id->chain_len;
        config.key_pem = id->key;
        config.key_len = id->key_len;
    }
    struct tls_ctx *ctx = NULL;
    struct ztr_err err = {0};
    if (tls_ctx_new(&config, &ctx, &err) != 0)
        fail_msg("tls_ctx_new: %s", err.msg);
    return ctx;
}

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

void
test_loop_once(struct ev_loop *loop)
{
    ev_timer tick;
    ev_timer_init(&tick, tick_cb, 0.01, 0);
    ev_timer_start(loop, &tick);
    ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
}

double
test_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
