/*
 * The admin API over TLS (ADMIN_TLS=true): where its certificate comes from.
 *
 * Either the operator's (ADMIN_TLS_CERT / ADMIN_TLS_KEY, read once at
 * start), or one the controller issues itself from a CA of its own in
 * STATE_DIR/admin-tls/ (ca.pem, ca.key 0600). That CA signs nothing but
 * admin API certificates, and they carry no SPIFFE ID: the agents' trust
 * bundle is not what the CLI trusts, because every connector holds a
 * certificate of the internal CA with IP SANs, which would pass as the
 * admin API at such an address and collect the bearer token: a stolen
 * connector key must not be worth an administrator's token. The issued certificate's key lives only in memory: a fresh one at
 * every start, and again at two thirds of its lifetime while running.
 */
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/log.h"
#include "controller/cert_names.h"
#include "controller/controller.h"
#include "net/http.h"
#include "net/net.h"

#define ADMIN_TLS_DIR "admin-tls"
#define ADMIN_TLS_FILE_MAX (64 * 1024)
#define ADMIN_TLS_CA_LIFETIME_S (3650LL * 86400)
#define ADMIN_TLS_LEAF_LIFETIME_S (30LL * 86400)
/* A CA with less life than this left cannot issue a useful certificate. */
#define ADMIN_TLS_CA_MARGIN_S ADMIN_TLS_LEAF_LIFETIME_S
#define ADMIN_TLS_RETRY_S 3600.0
#define ADMIN_TLS_EXPIRY_WARN_S (14LL * 86400)

struct admin_tls {
    struct controller *c;
    bool issued;                       /* ours, not the operator's */
    struct http_tls credentials;       /* points at the two below */
    char *cert_pem;
    char *key_pem;
    size_t key_len;
    int64_t not_after;
    /* issued only: */
    struct pki_ca *ca;
    char ca_path[1200];
    struct cert_names names;
    ev_timer reissue;
    bool timer_armed;
};

static void
free_secret(char *data, size_t len)
{
    if (data != NULL)
        explicit_bzero(data, len);
    free(data);
}

static void
drop_credentials(struct admin_tls *tls)
{
    free(tls->cert_pem);
    free_secret(tls->key_pem, tls->key_len);
    tls->cert_pem = NULL;
    tls->key_pem = NULL;
    tls->key_len = 0;
    tls->credentials = (struct http_tls){NULL, NULL};
}

static const char *
format_time(int64_t seconds, char *buf, size_t cap)
{
    time_t t = (time_t)seconds;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, cap, "%lld", (long long)seconds);
    return buf;
}

/* The first certificate of a PEM chain, described. */
static int
leaf_info(const char *pem, size_t len, struct pki_cert_info *info, struct ztr_err *err)
{
    struct pki_chain *chain = NULL;
    TRY(pki_chain_from_pem(pem, len, &chain, err));
    size_t der_len = 0;
    const uint8_t *der = pki_chain_der(chain, 0, &der_len);
    int rc = pki_cert_info_parse(der, der_len, info, err);
    pki_chain_free(chain);
    return rc;
}

/* ---- settings ----------------------------------------------------------- */

static int
read_setting_file(const struct config *config, const char *key, const char *path, char **out,
                  size_t *len, struct ztr_err *err)
{
    struct ztr_err read_err = {0};
    if (file_read_all(path, ADMIN_TLS_FILE_MAX, out, len, &read_err) != 0)
        return config_fail(config, key, err, "%s", read_err.msg);
    return 0;
}

/* The operator's certificate and key, checked as GnuTLS will use them. */
static int
load_operator_files(struct admin_tls *tls, const struct controller_settings *s,
                    const struct config *config, struct ztr_err *err)
{
    size_t cert_len = 0;
    TRY(read_setting_file(config, "ADMIN_TLS_CERT", s->admin_tls_cert, &tls->cert_pem, &cert_len,
                          err));
    struct pki_cert_info info;
    struct ztr_err parse_err = {0};
    if (leaf_info(tls->cert_pem, cert_len, &info, &parse_err) != 0)
        return config_fail(config, "ADMIN_TLS_CERT", err, "%s: not a PEM certificate: %s",
                           s->admin_tls_cert, parse_err.msg);
    char when[32];
    int64_t now = clock_wall_s(tls->c->clock);
    if (info.not_after <= now)
        return config_fail(config, "ADMIN_TLS_CERT", err, "%s: certificate expired at %s",
                           s->admin_tls_cert, format_time(info.not_after, when, sizeof(when)));
    tls->not_after = info.not_after;
    TRY(read_setting_file(config, "ADMIN_TLS_KEY", s->admin_tls_key, &tls->key_pem,
                          &tls->key_len, err));
    if (strstr(tls->key_pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL)
        return config_fail(config, "ADMIN_TLS_KEY", err,
                           "%s: an encrypted key cannot be read at start (store it "
                           "unencrypted, readable only by the controller)", s->admin_tls_key);
    if (strstr(tls->key_pem, "PRIVATE KEY-----") == NULL)
        return config_fail(config, "ADMIN_TLS_KEY", err, "%s: no PEM private key in it",
                           s->admin_tls_key);
    tls->credentials = (struct http_tls){tls->cert_pem, tls->key_pem};
    struct ztr_err check_err = {0};
    if (http_tls_check(&tls->credentials, &check_err) != 0)
        return config_fail(config, "ADMIN_TLS_KEY", err, "%s (with ADMIN_TLS_CERT %s): %s",
                           s->admin_tls_key, s->admin_tls_cert, check_err.msg);
    return 0;
}

static int
check_tls_settings(struct admin_tls *tls, const struct controller_settings *s,
                   const struct config *config, struct ztr_err *err)
{
    if (!http_tls_supported())
        return config_fail(config, "ADMIN_TLS", err,
                           "this controller's libmicrohttpd was built without TLS");
    bool has_cert = s->admin_tls_cert[0] != '\0', has_key = s->admin_tls_key[0] != '\0';
    if (has_cert != has_key)
        return config_fail(config, has_cert ? "ADMIN_TLS_CERT" : "ADMIN_TLS_KEY", err,
                           "given without %s (set both, or neither for a certificate the "
                           "controller issues)", has_cert ? "ADMIN_TLS_KEY" : "ADMIN_TLS_CERT");
    if (has_cert && s->admin_tls_names[0] != '\0')
        return config_fail(config, "ADMIN_TLS_NAMES", err,
                           "only for the certificate the controller issues; ADMIN_TLS_CERT "
                           "names the operator's, which carries its own names");
    if (has_cert)
        return load_operator_files(tls, s, config, err);
    tls->issued = true;
    return cert_names_collect(&tls->names, s->admin_listen, s->admin_tls_names, config,
                              "ADMIN_TLS_NAMES", err);
}

int
admin_tls_configure(struct controller *c, const struct config *config, struct ztr_err *err)
{
    const struct controller_settings *s = &c->settings;
    if (!s->admin_tls) {
        static const char *const needs_tls[] = {"ADMIN_TLS_CERT", "ADMIN_TLS_KEY",
                                                "ADMIN_TLS_NAMES"};
        const char *values[] = {s->admin_tls_cert, s->admin_tls_key, s->admin_tls_names};
        for (size_t i = 0; i < 3; i++)
            if (values[i][0] != '\0')
                return config_fail(config, needs_tls[i], err,
                                   "set, but ADMIN_TLS is false: set ADMIN_TLS=true to serve "
                                   "the admin API over TLS");
        /* Plain HTTP anywhere but loopback: the bearer token and every
         * answer cross the network readable by anyone on the path. */
        if (net_addr_is_loopback(s->admin_listen))
            return 0;
        if (!s->admin_listen_insecure)
            return config_fail(config, "ADMIN_LISTEN", err,
                               "\"%s\" is not a loopback address: the admin API is plain "
                               "HTTP and would send its bearer token in the clear (set "
                               "ADMIN_TLS=true, or use 127.0.0.1 and an SSH tunnel, or set "
                               "ADMIN_LISTEN_INSECURE=true to accept the risk)",
                               s->admin_listen);
        log_warn("ADMIN_LISTEN_INSECURE: admin API served in plain HTTP on a non-loopback "
                 "address; its bearer token crosses the network in the clear",
                 "admin_listen=%s", s->admin_listen);
        return 0;
    }
    struct admin_tls *tls = calloc(1, sizeof(*tls));
    if (tls == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    tls->c = c;
    c->admin_tls = tls;
    return check_tls_settings(tls, s, config, err);
}

/* ---- the issued certificate ------------------------------------------------ */

static int
admin_tls_path(const struct controller *c, const char *name, char *out, size_t cap,
               struct ztr_err *err)
{
    char dir[1100];
    TRY(file_path_join(dir, sizeof(dir), c->settings.state_dir, ADMIN_TLS_DIR, err));
    return file_path_join(out, cap, dir, name, err);
}

static bool
file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static int
load_ca(const char *cert_path, const char *key_path, struct pki_ca **ca, struct ztr_err *err)
{
    char *cert = NULL, *key = NULL;
    size_t cert_len = 0, key_len = 0;
    int rc = file_ensure_private(key_path, err);
    if (rc == 0)
        rc = file_read_all(cert_path, ADMIN_TLS_FILE_MAX, &cert, &cert_len, err);
    if (rc == 0)
        rc = file_read_all(key_path, ADMIN_TLS_FILE_MAX, &key, &key_len, err);
    if (rc == 0)
        rc = pki_ca_load(cert, cert_len, key, key_len, ca, err);
    free(cert);
    free_secret(key, key_len);
    if (rc != 0)
        return ztr_err_wrap(err, "admin API CA %s", cert_path);
    return 0;
}

/* The key is written exclusively, then the certificate: the certificate
 * is what commits the pair. A key without one (a crash in between) signed
 * nothing and is replaced. */
static int
create_ca(struct admin_tls *tls, const char *key_path, struct ztr_err *err)
{
    if (unlink(key_path) == 0)
        log_warn("admin API CA key without its certificate removed", "path=%s", key_path);
    else if (errno != ENOENT) {
        char reason[128];
        return ztr_err_set(err, ZTR_E_IO, "unlink %s: %s", key_path,
                           file_strerror(errno, reason, sizeof(reason)));
    }
    TRY(pki_ca_create_named("ztr admin API CA", clock_wall_s(tls->c->clock),
                            ADMIN_TLS_CA_LIFETIME_S, &tls->ca, err));
    char *cert = NULL, *key = NULL;
    size_t cert_len = 0, key_len = 0;
    int rc = pki_ca_cert_pem(tls->ca, &cert, &cert_len, err);
    if (rc == 0)
        rc = pki_ca_key_pem(tls->ca, &key, &key_len, err);
    if (rc == 0)
        rc = file_create_exclusive(key_path, key, key_len, 0600, err);
    if (rc == 0)
        rc = file_write_atomic(tls->ca_path, cert, cert_len, 0644, err);
    free(cert);
    free_secret(key, key_len);
    if (rc != 0)
        return -1;
    log_info("admin API CA created", "path=%s fingerprint=%s", tls->ca_path,
             pki_ca_info(tls->ca)->fingerprint_sha256);
    return 0;
}

static int
open_ca(struct admin_tls *tls, struct ztr_err *err)
{
    struct controller *c = tls->c;
    char dir[1100], key_path[1200];
    TRY(file_path_join(dir, sizeof(dir), c->settings.state_dir, ADMIN_TLS_DIR, err));
    TRY(file_ensure_dir(dir, 0700, err));
    TRY(admin_tls_path(c, "ca.pem", tls->ca_path, sizeof(tls->ca_path), err));
    TRY(admin_tls_path(c, "ca.key", key_path, sizeof(key_path), err));
    if (!file_exists(tls->ca_path))
        return create_ca(tls, key_path, err);
    TRY(load_ca(tls->ca_path, key_path, &tls->ca, err));
    const struct pki_cert_info *info = pki_ca_info(tls->ca);
    int64_t now = clock_wall_s(c->clock);
    if (info->not_after - now < ADMIN_TLS_CA_MARGIN_S) {
        char when[32];
        return ztr_err_set(err, ZTR_E_INVALID,
                           "admin API CA %s expires at %s: move %s aside and start again to "
                           "make a new one, then give CLIs the new ca.pem",
                           tls->ca_path, format_time(info->not_after, when, sizeof(when)), dir);
    }
    return 0;
}

/* A fresh key and a certificate for it; the credentials change only when
 * both exist. */
static int
issue(struct admin_tls *tls, struct ztr_err *err)
{
    struct pki_key *key = NULL;
    uint8_t *spki = NULL;
    size_t spki_len = 0;
    char *cert = NULL, *key_pem = NULL;
    size_t cert_len = 0, key_len = 0;
    int64_t now = clock_wall_s(tls->c->clock);
    int rc = pki_key_generate(&key, err);
    if (rc == 0)
        rc = pki_key_public_der(key, &spki, &spki_len, err);
    if (rc == 0) {
        struct pki_server_request request = {
            .common_name = "ztr admin API",
            .public_der = spki,
            .public_len = spki_len,
            .dns_names = tls->names.dns_ptrs,
            .dns_count = tls->names.dns_count,
            .ips = tls->names.ips,
            .ip_count = tls->names.ip_count,
            .not_before = now - 60,
            .not_after = now + ADMIN_TLS_LEAF_LIFETIME_S,
        };
        rc = pki_ca_issue_server(tls->ca, &request, &cert, &cert_len, err);
    }
    if (rc == 0)
        rc = pki_key_to_pem(key, &key_pem, &key_len, err);
    free(spki);
    pki_key_free(key);
    struct pki_cert_info info;
    if (rc == 0)
        rc = leaf_info(cert, cert_len, &info, err);
    if (rc != 0) {
        free(cert);
        free_secret(key_pem, key_len);
        return ztr_err_wrap(err, "admin API certificate");
    }
    drop_credentials(tls);
    tls->cert_pem = cert;
    tls->key_pem = key_pem;
    tls->key_len = key_len;
    tls->not_after = info.not_after;
    tls->credentials = (struct http_tls){cert, key_pem};
    return 0;
}

/* Two thirds into the certificate's life: a third is left to retry in. */
static int64_t
reissue_at(const struct admin_tls *tls, int64_t issued_at)
{
    return issued_at + (tls->not_after - issued_at) * 2 / 3;
}

static void
log_issued(const struct admin_tls *tls, int64_t at)
{
    char until[32], next[32];
    log_info("admin API certificate issued", "names=%s not_after=%s reissue_at=%s ca=%s "
             "ca_fingerprint=%s", tls->names.text,
             format_time(tls->not_after, until, sizeof(until)),
             format_time(at, next, sizeof(next)), tls->ca_path,
             pki_ca_info(tls->ca)->fingerprint_sha256);
}

static void
arm(struct admin_tls *tls, double after_s)
{
    struct ev_loop *loop = tls->c->loop;
    if (tls->timer_armed)
        ev_timer_stop(loop, &tls->reissue);
    ev_timer_set(&tls->reissue, after_s > 1.0 ? after_s : 1.0, 0.0);
    ev_timer_start(loop, &tls->reissue);
    tls->timer_armed = true;
}

int
admin_tls_reissue(struct controller *c, struct ztr_err *err)
{
    struct admin_tls *tls = c->admin_tls;
    if (tls == NULL || !tls->issued)
        return ztr_err_set(err, ZTR_E_INVALID, "the admin API has no certificate of ours");
    int64_t now = clock_wall_s(c->clock);
    TRY(issue(tls, err));
    if (c->admin_http != NULL)
        TRY(http_server_set_tls(c->admin_http, &tls->credentials, err));
    int64_t at = reissue_at(tls, now);
    log_issued(tls, at);
    arm(tls, (double)(at - now));
    return 0;
}

static void
reissue_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct admin_tls *tls = w->data;
    struct ztr_err err = {0};
    if (admin_tls_reissue(tls->c, &err) != 0) {
        /* The certificate being served still has a third of its life. */
        log_error("admin API certificate not reissued", "error=\"%s\" retry_s=%.0f", err.msg,
                  ADMIN_TLS_RETRY_S);
        arm(tls, ADMIN_TLS_RETRY_S);
    }
}

int
admin_tls_prepare(struct controller *c, struct ztr_err *err)
{
    struct admin_tls *tls = c->admin_tls;
    if (tls == NULL)
        return 0;
    if (!tls->issued) {
        char until[32];
        int64_t left = tls->not_after - clock_wall_s(c->clock);
        log_info("admin API certificate loaded", "cert=%s not_after=%s", c->settings.admin_tls_cert,
                 format_time(tls->not_after, until, sizeof(until)));
        /* Read once: a renewed file takes effect at the next start. */
        if (left < ADMIN_TLS_EXPIRY_WARN_S)
            log_warn("admin API certificate expires soon: renew ADMIN_TLS_CERT and restart the "
                     "controller", "cert=%s not_after=%s", c->settings.admin_tls_cert, until);
        return 0;
    }
    TRY(open_ca(tls, err));
    ev_init(&tls->reissue, reissue_cb);
    tls->reissue.data = tls;
    int64_t now = clock_wall_s(c->clock);
    TRY(issue(tls, err));
    int64_t at = reissue_at(tls, now);
    log_issued(tls, at);
    char host[128];
    uint16_t port;
    if (c->settings.admin_tls_names[0] == '\0' &&
        config_parse_addr(c->settings.admin_listen, host, sizeof(host), &port) == 0 &&
        (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0))
        log_warn("admin API certificate names only loopback addresses: set ADMIN_TLS_NAMES to "
                 "the names and addresses remote CLIs connect to", "admin_listen=%s",
                 c->settings.admin_listen);
    arm(tls, (double)(at - now));
    return 0;
}

const struct http_tls *
admin_tls_credentials(const struct admin_tls *tls)
{
    return tls != NULL ? &tls->credentials : NULL;
}

void
admin_tls_free(struct controller *c)
{
    struct admin_tls *tls = c->admin_tls;
    if (tls == NULL)
        return;
    if (tls->timer_armed)
        ev_timer_stop(c->loop, &tls->reissue);
    drop_credentials(tls);
    pki_ca_free(tls->ca);
    free(tls);
    c->admin_tls = NULL;
}
