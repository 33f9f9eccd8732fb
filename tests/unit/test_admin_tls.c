/*
 * The admin API's exposure and TLS settings (controller/admin_tls.c): which
 * ADMIN_LISTEN is allowed with which settings, the checks of an operator's
 * certificate and key (each error naming its key), and the certificate the
 * controller issues itself from its admin CA in STATE_DIR/admin-tls/.
 * Settings are checked without a config (errors read "<KEY>: ..."). The
 * servers run on a real libev loop on loopback; the HTTPS client runs on a
 * helper thread while the test thread serves.
 */
#include "tests/unit/support.h"

#include <ev.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "controller/controller.h"
#include "controller/http_client.h"
#include "net/http.h"
#include "pki/pki.h"

#define ADMIN_TOKEN "unit-test-admin-token-0123456789abcdef"

struct fixture {
    char *dir;
    struct ztr_clock clock;
    struct ev_loop *loop;
    struct controller c;
};

static void
reset_controller(struct fixture *f)
{
    admin_stop(&f->c);
    admin_tls_free(&f->c);
    struct controller *c = &f->c;
    memset(c, 0, sizeof(*c));
    c->loop = f->loop;
    c->clock = &f->clock;
    snprintf(c->settings.trust_domain, sizeof(c->settings.trust_domain), "example.org");
    snprintf(c->settings.state_dir, sizeof(c->settings.state_dir), "%s", f->dir);
    snprintf(c->settings.admin_listen, sizeof(c->settings.admin_listen), "127.0.0.1:0");
    c->admin_token = (char *)ADMIN_TOKEN;
}

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    test_log_capture_start();
    f->dir = test_mkdtemp();
    /* Real time: the certificates are checked by a real TLS client. */
    clock_manual_init(&f->clock, (int64_t)time(NULL) * 1000);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(f->loop);
    reset_controller(f);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    admin_stop(&f->c);
    admin_tls_free(&f->c);
    assert_null(f->c.admin_tls);
    test_log_capture_stop();
    ev_loop_destroy(f->loop);
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static int
group_setup(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    return pki_init(&err);
}

static int
group_teardown(void **state)
{
    (void)state;
    pki_cleanup();
    return 0;
}

static void
set(char *field, size_t cap, const char *value)
{
    snprintf(field, cap, "%s", value);
}
#define SET(f, field, value) set((f)->c.settings.field, sizeof((f)->c.settings.field), (value))

/* Configures and expects a refusal whose text starts with want. */
static void
expect_refused(struct fixture *f, const char *want)
{
    struct ztr_err err = {0};
    assert_int_equal(admin_tls_configure(&f->c, NULL, &err), -1);
    if (strncmp(err.msg, want, strlen(want)) != 0)
        fail_msg("got \"%s\", want it to start with \"%s\"", err.msg, want);
    admin_tls_free(&f->c);
}

static void
expect_accepted(struct fixture *f)
{
    struct ztr_err err = {0};
    if (admin_tls_configure(&f->c, NULL, &err) != 0)
        fail_msg("%s", err.msg);
}

/* ---- files an operator would bring ---------------------------------------- */

struct operator_files {
    char *cert, *key, *other_key, *ca_cert, *expired;
};

static char *
write_in(struct fixture *f, const char *name, const char *text)
{
    char *path = test_path(f->dir, name);
    test_write_file(path, text);
    return path;
}

static void
issue_into(struct pki_ca *ca, int64_t not_before, int64_t not_after, char **cert,
           char **key_pem)
{
    struct ztr_err err = {0};
    struct pki_key *key;
    uint8_t *spki;
    size_t spki_len, len;
    assert_int_equal(pki_key_generate(&key, &err), 0);
    assert_int_equal(pki_key_public_der(key, &spki, &spki_len, &err), 0);
    const char *names[] = {"ctl.example.org"};
    struct pki_server_request request = {
        .common_name = "ctl", .public_der = spki, .public_len = spki_len, .dns_names = names,
        .dns_count = 1, .not_before = not_before, .not_after = not_after};
    if (pki_ca_issue_server(ca, &request, cert, &len, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(pki_key_to_pem(key, key_pem, &len, &err), 0);
    free(spki);
    pki_key_free(key);
}

static void
operator_files_make(struct fixture *f, struct operator_files *o)
{
    struct ztr_err err = {0};
    int64_t now = clock_wall_s(&f->clock);
    struct pki_ca *ca;
    assert_int_equal(pki_ca_create_named("operator CA", now - 7200, 86400, &ca, &err), 0);
    char *cert, *key, *cert2, *key2, *ca_pem;
    size_t len;
    issue_into(ca, now - 60, now + 3600, &cert, &key);
    issue_into(ca, now - 7200, now - 3600, &cert2, &key2);
    assert_int_equal(pki_ca_cert_pem(ca, &ca_pem, &len, &err), 0);
    o->cert = write_in(f, "op.crt", cert);
    o->key = write_in(f, "op.key", key);
    o->other_key = write_in(f, "other.key", key2);
    o->expired = write_in(f, "expired.crt", cert2);
    o->ca_cert = write_in(f, "ca.crt", ca_pem);
    free(cert);
    free(key);
    free(cert2);
    free(key2);
    free(ca_pem);
    pki_ca_free(ca);
}

static void
operator_files_free(struct operator_files *o)
{
    free(o->cert);
    free(o->key);
    free(o->other_key);
    free(o->ca_cert);
    free(o->expired);
}

/* ---- where the admin API may listen ------------------------------------------ */

static void
test_plain_http_stays_on_loopback_unless_overridden(void **state)
{
    struct fixture *f = *state;
    expect_accepted(f);
    assert_null(f->c.admin_tls);
    SET(f, admin_listen, "0.0.0.0:8080");
    expect_refused(f, "ADMIN_LISTEN: \"0.0.0.0:8080\" is not a loopback address: the admin API "
                      "is plain HTTP");
    struct ztr_err err = {0};
    assert_int_equal(admin_tls_configure(&f->c, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "set ADMIN_TLS=true"));
    f->c.settings.admin_listen_insecure = true;
    expect_accepted(f);
    assert_null(f->c.admin_tls);
    assert_non_null(strstr(test_log_captured(), "msg=\"ADMIN_LISTEN_INSECURE: admin API served in "
                                                "plain HTTP on a non-loopback address"));
}

static void
test_tls_allows_any_listen_address(void **state)
{
    struct fixture *f = *state;
    SET(f, admin_listen, "0.0.0.0:8080");
    f->c.settings.admin_tls = true;
    expect_accepted(f);
    assert_non_null(f->c.admin_tls);
    assert_null(strstr(test_log_captured(), "ADMIN_LISTEN_INSECURE"));
}

static void
test_tls_settings_need_admin_tls(void **state)
{
    struct fixture *f = *state;
    SET(f, admin_tls_names, "ctl.example.org");
    expect_refused(f, "ADMIN_TLS_NAMES: set, but ADMIN_TLS is false: set ADMIN_TLS=true");
    SET(f, admin_tls_cert, "/etc/ztr/admin.crt");
    expect_refused(f, "ADMIN_TLS_CERT: set, but ADMIN_TLS is false");
}

static void
test_certificate_and_key_come_together(void **state)
{
    struct fixture *f = *state;
    f->c.settings.admin_tls = true;
    SET(f, admin_tls_cert, "/etc/ztr/admin.crt");
    expect_refused(f, "ADMIN_TLS_CERT: given without ADMIN_TLS_KEY");
    SET(f, admin_tls_cert, "");
    SET(f, admin_tls_key, "/etc/ztr/admin.key");
    expect_refused(f, "ADMIN_TLS_KEY: given without ADMIN_TLS_CERT");
}

static void
test_names_are_ips_or_dns_names(void **state)
{
    struct fixture *f = *state;
    f->c.settings.admin_tls = true;
    SET(f, admin_tls_names, " ctl.example.org, 10.0.0.1 ,::1,ctl-2 ");
    expect_accepted(f);
    admin_tls_free(&f->c);
    const char *bad[] = {"ctl_example.org", "*.example.org", "ctl.example.org.", "-ctl.org",
                         "ctl-.org", "a..b", "ctl example", "10.0.0.256", "10.1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        SET(f, admin_tls_names, bad[i]);
        expect_refused(f, "ADMIN_TLS_NAMES: \"");
    }
}

/* ---- the operator's certificate ------------------------------------------------ */

static void
test_operator_certificate_is_checked_as_it_will_be_served(void **state)
{
    struct fixture *f = *state;
    struct operator_files o;
    operator_files_make(f, &o);
    f->c.settings.admin_tls = true;
    SET(f, admin_tls_cert, o.cert);
    SET(f, admin_tls_key, o.key);
    expect_accepted(f);
    assert_non_null(admin_tls_credentials(f->c.admin_tls)->cert_pem);
    admin_tls_free(&f->c);

    SET(f, admin_tls_names, "ctl.example.org");
    expect_refused(f, "ADMIN_TLS_NAMES: only for the certificate the controller issues");
    SET(f, admin_tls_names, "");

    SET(f, admin_tls_key, o.other_key);
    expect_refused(f, "ADMIN_TLS_KEY: ");
    struct ztr_err err = {0};
    assert_int_equal(admin_tls_configure(&f->c, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "The certificate and the given key do not match"));
    assert_null(strstr(err.msg, "PRIVATE KEY"));
    admin_tls_free(&f->c);

    SET(f, admin_tls_key, o.cert);
    expect_refused(f, "ADMIN_TLS_KEY: ");
    SET(f, admin_tls_key, o.key);

    char *missing = test_path(f->dir, "missing.crt");
    SET(f, admin_tls_cert, missing);
    expect_refused(f, "ADMIN_TLS_CERT: open ");
    free(missing);
    SET(f, admin_tls_cert, o.key);
    expect_refused(f, "ADMIN_TLS_CERT: ");
    SET(f, admin_tls_cert, o.expired);
    expect_refused(f, "ADMIN_TLS_CERT: ");
    assert_int_equal(admin_tls_configure(&f->c, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "certificate expired at"));
    admin_tls_free(&f->c);
    /* The CA's certificate given for the server's: the key is not its. */
    SET(f, admin_tls_cert, o.ca_cert);
    expect_refused(f, "ADMIN_TLS_KEY: ");
    operator_files_free(&o);
}

/* Any key GnuTLS takes, not only the P-256 keys ztr makes: a self-signed
 * RSA certificate as `openssl req -x509` makes one. */
static void
test_operator_rsa_certificate_is_accepted(void **state)
{
    struct fixture *f = *state;
    if (test_sh("cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -keyout rsa.key "
                "-out rsa.crt -days 2 -subj /CN=ctl -addext subjectAltName=IP:127.0.0.1 "
                ">/dev/null 2>&1", f->dir) != 0)
        skip();
    char *cert = test_path(f->dir, "rsa.crt"), *key = test_path(f->dir, "rsa.key");
    f->c.settings.admin_tls = true;
    SET(f, admin_tls_cert, cert);
    SET(f, admin_tls_key, key);
    expect_accepted(f);
    free(cert);
    free(key);
}

/* ---- the certificate the controller issues ----------------------------------------- */

struct https_job {
    char url[128];
    const char *ca_file;
    int rc;
    long status;
    struct ztr_err err;
    struct ev_loop *loop;
    ev_async *done;
};

static void *
https_job_main(void *arg)
{
    struct https_job *job = arg;
    char *reply = NULL;
    job->rc = http_client_request_ca("GET", job->url, job->ca_file, ADMIN_TOKEN, NULL, 10000,
                                     &job->status, &reply, &job->err);
    free(reply);
    ev_async_send(job->loop, job->done);
    return NULL;
}

static void
done_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* GET path over https while this thread serves. An unknown admin path is
 * answered without the store: 404 after the token check. */
static int
https_get(struct fixture *f, const char *path, const char *ca_file, struct ztr_err *err)
{
    ev_async done;
    ev_async_init(&done, done_cb);
    ev_async_start(f->loop, &done);
    struct https_job job = {.ca_file = ca_file, .loop = f->loop, .done = &done};
    snprintf(job.url, sizeof(job.url), "https://127.0.0.1:%u%s",
             (unsigned)http_server_port(f->c.admin_http), path);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, https_job_main, &job), 0);
    ev_run(f->loop, 0);
    pthread_join(thread, NULL);
    ev_async_stop(f->loop, &done);
    *err = job.err;
    if (job.rc == 0 && job.status != 404)
        fail_msg("status %ld", job.status);
    return job.rc;
}

static char *
admin_ca_path(struct fixture *f)
{
    char *dir = test_path(f->dir, "admin-tls");
    char *path = test_path(dir, "ca.pem");
    free(dir);
    return path;
}

static void
start_issued(struct fixture *f)
{
    struct ztr_err err = {0};
    f->c.settings.admin_tls = true;
    expect_accepted(f);
    if (admin_tls_prepare(&f->c, &err) != 0 || admin_start(&f->c, &err) != 0)
        fail_msg("%s", err.msg);
}

static struct pki_cert_info
served_info(struct fixture *f)
{
    const char *pem = admin_tls_credentials(f->c.admin_tls)->cert_pem;
    struct pki_chain *chain;
    struct pki_cert_info info;
    struct ztr_err err = {0};
    size_t len = 0;
    assert_int_equal(pki_chain_from_pem(pem, strlen(pem), &chain, &err), 0);
    const uint8_t *der = pki_chain_der(chain, 0, &len);
    assert_int_equal(pki_cert_info_parse(der, len, &info, &err), 0);
    pki_chain_free(chain);
    return info;
}

static void
test_issued_certificate_from_the_admin_ca(void **state)
{
    struct fixture *f = *state;
    SET(f, admin_listen, "0.0.0.0:0");
    SET(f, admin_tls_names, "ctl.example.org,10.0.0.1");
    start_issued(f);
    char *ca_path = admin_ca_path(f);
    char *key_path = test_path(f->dir, "admin-tls/ca.key");
    struct stat st;
    assert_int_equal(stat(key_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    struct pki_cert_info leaf = served_info(f);
    /* A server certificate, never an identity: no SPIFFE ID, server EKU only. */
    assert_int_equal(leaf.uri_count, 0);
    assert_false(leaf.is_ca);
    assert_true(leaf.eku_server_auth);
    assert_false(leaf.eku_client_auth);
    assert_int_equal(leaf.dns_count, 1);
    assert_int_equal(leaf.ip_count, 3); /* 127.0.0.1, ::1 (wildcard listen), 10.0.0.1 */
    int64_t now = clock_wall_s(&f->clock);
    assert_true(leaf.not_after > now + 29 * 86400 && leaf.not_after <= now + 30 * 86400);
    assert_non_null(strstr(test_log_captured(), "msg=\"admin API certificate issued\" "
                                                "names=127.0.0.1,::1,10.0.0.1,ctl.example.org"));
    struct ztr_err err = {0};
    if (https_get(f, "/api/admin/none", ca_path, &err) != 0)
        fail_msg("%s", err.msg);

    /* The agents' bundle does not vouch for the admin API. */
    char *bundle = test_path(f->dir, "ca/ca-1.crt");
    struct ztr_err ca_err = {0};
    struct ca_set *cas;
    assert_int_equal(ca_set_open(&f->c.settings, &f->clock, &cas, &ca_err), 0);
    ca_set_free(cas);
    assert_int_equal(https_get(f, "/api/admin/none", bundle, &err), -1);
    assert_int_equal(err.code, HTTP_CLIENT_E_UNTRUSTED);
    free(bundle);

    /* Reissued: a new key and certificate, served at once, same CA. */
    char fingerprint[sizeof(leaf.fingerprint_sha256)];
    snprintf(fingerprint, sizeof(fingerprint), "%s", leaf.fingerprint_sha256);
    if (admin_tls_reissue(&f->c, &err) != 0)
        fail_msg("%s", err.msg);
    assert_string_not_equal(served_info(f).fingerprint_sha256, fingerprint);
    if (https_get(f, "/api/admin/none", ca_path, &err) != 0)
        fail_msg("%s", err.msg);

    /* A restart keeps the CA (CLIs keep their copy) and issues anew. */
    char *ca_before = test_read_file(ca_path, NULL);
    reset_controller(f);
    start_issued(f);
    char *ca_after = test_read_file(ca_path, NULL);
    assert_string_equal(ca_before, ca_after);
    assert_int_equal(served_info(f).ip_count, 1); /* 127.0.0.1:0 only now */
    if (https_get(f, "/api/admin/none", ca_path, &err) != 0)
        fail_msg("%s", err.msg);
    free(ca_before);
    free(ca_after);
    free(ca_path);
    free(key_path);
}

/* A crash between the CA key and its certificate leaves a key that signed
 * nothing: it is replaced, not a reason to refuse every start. */
static void
test_admin_ca_key_without_certificate_is_replaced(void **state)
{
    struct fixture *f = *state;
    char *dir = test_path(f->dir, "admin-tls");
    assert_int_equal(mkdir(dir, 0700), 0);
    char *key_path = test_path(dir, "ca.key");
    test_write_file(key_path, "left by a crash");
    start_issued(f);
    assert_non_null(strstr(test_log_captured(), "msg=\"admin API CA key without its "
                                                "certificate removed\""));
    char *ca_path = admin_ca_path(f);
    struct ztr_err err = {0};
    if (https_get(f, "/api/admin/none", ca_path, &err) != 0)
        fail_msg("%s", err.msg);
    free(ca_path);
    free(key_path);
    free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_plain_http_stays_on_loopback_unless_overridden),
        T(test_tls_allows_any_listen_address),
        T(test_tls_settings_need_admin_tls),
        T(test_certificate_and_key_come_together),
        T(test_names_are_ips_or_dns_names),
        T(test_operator_certificate_is_checked_as_it_will_be_served),
        T(test_operator_rsa_certificate_is_accepted),
        T(test_issued_certificate_from_the_admin_ca),
        T(test_admin_ca_key_without_certificate_is_replaced),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
