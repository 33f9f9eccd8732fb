/* `controller serve`: its settings schema, start-up and a clean stop, in
 * the daemon skeleton (base/daemon.h). */
#include <ev.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "base/config.h"
#include "base/daemon.h"
#include "base/fileio.h"
#include "base/log.h"
#include "controller/controller.h"
#include "controller/db.h"
#include "controller/federation.h"
#include "net/http.h"

#define S struct controller_settings
static const struct config_key controller_schema[] = {
    CONFIG_KEY("TRUST_DOMAIN", CONFIG_STRING, NULL, "SPIFFE trust domain, e.g. example.org", S,
               trust_domain),
    CONFIG_KEY("STATE_DIR", CONFIG_STRING, CONTROLLER_STATE_DIR_DEFAULT,
               "database and CA files", S, state_dir),
    CONFIG_KEY("STORE_URL", CONFIG_STRING, NULL,
               "the state database: sqlite:///PATH (default STATE_DIR/controller.db) or "
               "postgres://USER@HOST:PORT/DB for a cluster (password in PGPASSFILE or "
               "PGPASSWORD, never here)",
               S, store_url),
    CONFIG_KEY("CA_SEAL_KEY_FILE", CONFIG_STRING, NULL,
               "controllers sharing a PostgreSQL store: a file of 32 random bytes (or 64 hex "
               "digits) they all hold; the CA keys are sealed with it in the store, so that "
               "a rotation reaches every controller",
               S, ca_seal_key_file),
    CONFIG_KEY("CONTROLLER_LISTEN", CONFIG_ADDR, "0.0.0.0:7443", "control-plane mTLS listener", S,
               controller_listen),
    CONFIG_KEY("CONTROLLER_NAMES", CONFIG_STRING, NULL,
               "comma-separated host names and IPs agents dial this controller by (a load "
               "balancer's name, each address of a DNS name): its certificate carries them "
               "beside its SPIFFE ID (it always names the CONTROLLER_LISTEN address)", S,
               controller_names),
    CONFIG_KEY("ADMIN_LISTEN", CONFIG_ADDR, "127.0.0.1:8080", "admin API listener", S,
               admin_listen),
    CONFIG_KEY("ADMIN_LISTEN_INSECURE", CONFIG_BOOL, "false",
               "allow a non-loopback ADMIN_LISTEN in plain HTTP (the bearer token crosses the "
               "network in the clear)", S, admin_listen_insecure),
    CONFIG_KEY("ADMIN_TLS", CONFIG_BOOL, "false",
               "serve the admin API over TLS 1.3 (then ADMIN_LISTEN may be any address)", S,
               admin_tls),
    CONFIG_KEY("ADMIN_TLS_CERT", CONFIG_STRING, NULL,
               "admin API certificate chain (PEM), with ADMIN_TLS_KEY; default: issued by the "
               "controller's admin CA (STATE_DIR/" ADMIN_TLS_CA_FILE ")", S, admin_tls_cert),
    CONFIG_KEY("ADMIN_TLS_KEY", CONFIG_STRING, NULL, "private key (PEM) of ADMIN_TLS_CERT", S,
               admin_tls_key),
    CONFIG_KEY("ADMIN_TLS_NAMES", CONFIG_STRING, NULL,
               "DNS names and IPs, comma-separated, the issued admin certificate also carries "
               "(it always names the ADMIN_LISTEN address)", S, admin_tls_names),
    CONFIG_KEY("ADMIN_AUTH_TOKEN", CONFIG_SECRET, NULL,
               "bearer token for the admin API (required)", S, admin_auth_token),
    CONFIG_KEY("HEALTH_LISTEN", CONFIG_STRING, "127.0.0.1:9100",
               "/health and /metrics listener, or off", S, health_listen),
    CONFIG_KEY("CA_CERT", CONFIG_STRING, NULL,
               "operator CA certificate (PEM); default: managed CA", S, ca_cert),
    CONFIG_KEY("CA_KEY", CONFIG_STRING, NULL, "operator CA key (PEM)", S, ca_key),
    CONFIG_KEY("SVID_TTL", CONFIG_DURATION_S, "24h", "lifetime of issued certificates", S,
               svid_ttl_s),
    CONFIG_KEY("HEARTBEAT_INTERVAL", CONFIG_DURATION, "10s", "agent heartbeat interval", S,
               heartbeat_interval_ms),
    CONFIG_KEY("TOKEN_TTL", CONFIG_DURATION_S, "24h", "default lifetime of enrollment tokens", S,
               token_ttl_s),
    CONFIG_KEY("LOG_LEVEL", CONFIG_STRING, "info", "debug, info, warn or error", S, log_level),
    CONFIG_KEY("LOG_FORMAT", CONFIG_STRING, "logfmt",
               "logfmt (key=value) or json (one object per line)", S, log_format),
    CONFIG_KEY("EVENT_RETENTION", CONFIG_DURATION_S, "30d",
               "events older than this are deleted (1h..3650d)", S,
               event_retention_s),
    CONFIG_KEY("EVENT_MAX", CONFIG_UINT, "100000",
               "at most this many events are kept, the oldest go first (1..100000000)", S,
               event_max),
    CONFIG_KEY("SESSIONS_MAX", CONFIG_UINT, "20000",
               "control sessions this controller holds at once (agents' and enrollments'); "
               "more are refused as they connect. Each costs about 14 KiB and a file "
               "descriptor: LimitNOFILE must be above it (100..500000)", S, sessions_max),
    CONFIG_KEY("HANDSHAKES_PER_SOURCE", CONFIG_UINT, "64",
               "unauthenticated control connections (TLS handshake, enroll, waiting for hello) "
               "one source address (IPv4, IPv6 /64) may hold; more are closed at once "
               "(1..16384)", S, handshakes_per_source),
    CONFIG_KEY("ENROLL_FAILURES_PER_SOURCE", CONFIG_UINT, "20",
               "denied enrollments one source address may have per minute; past it, its "
               "enrollments are refused with rate_limited until the minute ends (1..1000000)",
               S, enroll_failures_per_source),
    CONFIG_KEY("HELLOS_PER_NODE", CONFIG_UINT, "30",
               "control sessions one node may start per minute; past it, hello is refused "
               "with rate_limited (1..100000)", S, hellos_per_node),
    CONFIG_KEY("REAUTH_GRACE", CONFIG_DURATION_S, "7d",
               "how long after its certificate expired a node may re-authenticate by proof of "
               "possession of its key (0..365d; 0: never, a token is needed)", S,
               reauth_grace_s),
    CONFIG_KEY("FEDERATION_LISTEN", CONFIG_STRING, NULL,
               "federation listener for controllers of other trust domains (TLS 1.3, ALPN "
               "ztr-fed/1), host:port; empty: off", S, federation_listen),
    CONFIG_KEY("FEDERATION_URL", CONFIG_STRING, NULL,
               "host:port at which peers reach this controller's FEDERATION_LISTEN (told to "
               "the proposer at accept; informational)", S, federation_url),
    CONFIG_KEY("FEDERATION_HEARTBEAT_INTERVAL", CONFIG_DURATION, "30s",
               "heartbeats on each federation link, both ways (100ms..1h)", S,
               federation_heartbeat_interval_ms),
    CONFIG_KEY("FEDERATION_SWEEP_INTERVAL", CONFIG_DURATION, "60s",
               "how often peers with a stale heartbeat are marked degraded (100ms..1h)", S,
               federation_sweep_interval_ms),
    CONFIG_KEY("HEARTBEAT_STALE_AFTER", CONFIG_DURATION_S, "5m",
               "a federation peer whose last heartbeat is older than this becomes degraded "
               "(1s..7d)", S, heartbeat_stale_after_s),
    CONFIG_KEY("FEDERATION_ACCEPT_FAILURES_PER_SOURCE", CONFIG_UINT, "10",
               "refused federation accepts one source address may have per minute; past it, "
               "its accepts are refused with rate_limited until the minute ends (1..1000000)",
               S, federation_accept_failures_per_source),
    CONFIG_KEY("FEDERATION_CERT", CONFIG_STRING, NULL,
               "federation certificate chain (PEM), with FEDERATION_KEY; default: issued by "
               "the controller's CA", S, federation_cert),
    CONFIG_KEY("FEDERATION_KEY", CONFIG_STRING, NULL, "private key (PEM) of FEDERATION_CERT", S,
               federation_key),
};
#undef S
#define SCHEMA_LEN (sizeof(controller_schema) / sizeof(controller_schema[0]))

#define ADMIN_TOKEN_MIN 16

/* Checks what the schema cannot express; config gives errors their origin. */
static int
check_settings(void *ctx, struct daemon *daemon, const struct config *config,
               struct ztr_err *err)
{
    struct controller *c = ctx;
    struct controller_settings *s = &c->settings;
    c->clock = daemon_clock(daemon);
    c->loop = daemon_loop(daemon);
    c->started_at = clock_wall_s(c->clock);
    if (!config_is_set(config, "TRUST_DOMAIN"))
        return ztr_err_set(err, ZTR_E_CONFIG, "TRUST_DOMAIN is required");
    TRY(pki_trust_domain_check(s->trust_domain, err));
    if (s->admin_auth_token[0] == '\0')
        return ztr_err_set(err, ZTR_E_CONFIG,
                           "ADMIN_AUTH_TOKEN is required: the admin API never runs without "
                           "authentication (set it in the EnvironmentFile)");
    if (strlen(s->admin_auth_token) < ADMIN_TOKEN_MIN)
        return config_fail(config, "ADMIN_AUTH_TOKEN", err,
                           "too short: use at least %d random characters", ADMIN_TOKEN_MIN);
    c->admin_token = s->admin_auth_token;
    TRY(admin_tls_configure(c, config, err));
    TRY(cert_names_collect(&c->ctl_names, s->controller_listen, s->controller_names, config,
                           "CONTROLLER_NAMES", err));
    char host[128];
    uint16_t port;
    if (strcmp(s->health_listen, "off") == 0)
        s->health_listen[0] = '\0';
    else if (config_parse_addr(s->health_listen, host, sizeof(host), &port) != 0)
        return config_fail(config, "HEALTH_LISTEN", err,
                           "invalid address \"%s\" (use host:port, or off)", s->health_listen);
    /* Certificates are dated in whole seconds and renewed at half their
     * life: 2 s is the shortest that still renews (tests use it to see an
     * expiry in seconds). */
    if (s->svid_ttl_s < 2)
        return config_fail(config, "SVID_TTL", err, "must be at least 2s");
    if (s->svid_ttl_s < 60)
        log_warn("SVID_TTL under a minute: certificates expire within seconds (for tests)",
                 "svid_ttl_s=%lld", (long long)s->svid_ttl_s);
    if (s->reauth_grace_s < 0 || s->reauth_grace_s > 365LL * 86400)
        return config_fail(config, "REAUTH_GRACE", err, "must be between 0 and 365d");
    if (s->heartbeat_interval_ms < 100)
        return config_fail(config, "HEARTBEAT_INTERVAL", err, "must be at least 100ms");
    if (s->token_ttl_s < 1 || s->token_ttl_s > 366LL * 86400)
        return config_fail(config, "TOKEN_TTL", err, "must be between 1s and 366d");
    /* Both bounds hold: an unauthenticated client's denials end up here. */
    if (s->event_retention_s < 3600 || s->event_retention_s > 3650LL * 86400)
        return config_fail(config, "EVENT_RETENTION", err, "must be between 1h and 3650d");
    if (s->event_max < 1 || s->event_max > 100000000)
        return config_fail(config, "EVENT_MAX", err, "must be between 1 and 100000000");
    if (s->sessions_max < 100 || s->sessions_max > 500000)
        return config_fail(config, "SESSIONS_MAX", err, "must be between 100 and 500000");
    if (s->handshakes_per_source < 1 || s->handshakes_per_source > 16384)
        return config_fail(config, "HANDSHAKES_PER_SOURCE", err, "must be between 1 and 16384");
    if (s->enroll_failures_per_source < 1 || s->enroll_failures_per_source > 1000000)
        return config_fail(config, "ENROLL_FAILURES_PER_SOURCE", err,
                           "must be between 1 and 1000000");
    if (s->hellos_per_node < 1 || s->hellos_per_node > 100000)
        return config_fail(config, "HELLOS_PER_NODE", err, "must be between 1 and 100000");
    if (s->store_url[0] != '\0' && !db_url_is_postgres(s->store_url) &&
        strncmp(s->store_url, "sqlite:///", 10) != 0)
        return config_fail(config, "STORE_URL", err,
                           "use sqlite:///ABSOLUTE/PATH or postgres://USER@HOST:PORT/DBNAME");
    char shown[sizeof(s->store_url)];
    db_url_redacted(s->store_url, shown, sizeof(shown));
    if (strcmp(shown, s->store_url) != 0)
        return config_fail(config, "STORE_URL", err,
                           "holds a password (%s): put it in PGPASSFILE or PGPASSWORD, "
                           "readable by the controller only", shown);
    if (s->ca_seal_key_file[0] != '\0' && !db_url_is_postgres(s->store_url))
        return config_fail(config, "CA_SEAL_KEY_FILE", err,
                           "is for controllers sharing a PostgreSQL store (STORE_URL=postgres://...)");
    TRY(federation_check_settings(c, config, err));
    enum log_level level;
    if (log_level_from_name(s->log_level, &level) != 0)
        return config_fail(config, "LOG_LEVEL", err, "use debug, info, warn or error");
    log_set_level(level);
    return 0;
}

static int
start(void *ctx, struct daemon *daemon, int *exit_status, struct ztr_err *err)
{
    (void)daemon;
    (void)exit_status; /* every failure here is a runtime one (1) */
    struct controller *c = ctx;
    TRY(file_ensure_dir(c->settings.state_dir, 0700, err));
    TRY(pki_init(err));
    char db_path[1200];
    if (c->settings.store_url[0] != '\0') {
        snprintf(db_path, sizeof(db_path), "%s", c->settings.store_url);
    } else {
        TRY(file_path_join(db_path, sizeof(db_path), c->settings.state_dir, "controller.db",
                           err));
        /* SQLite would create it with the umask's mode, and gives its journal
         * files the database's mode: made 0600 here, they all stay private. */
        TRY(file_create_private_if_missing(db_path, err));
    }
    TRY(store_open(db_path, c->clock, &c->store, err));
    if (c->settings.ca_seal_key_file[0] != '\0') {
        uint8_t seal_key[PKI_SEAL_KEY_BYTES];
        int rc = pki_seal_key_load(c->settings.ca_seal_key_file, seal_key, err);
        if (rc == 0)
            rc = ca_set_open_shared(&c->settings, c->clock, c->store, seal_key, &c->cas, err);
        explicit_bzero(seal_key, sizeof(seal_key));
        if (rc != 0)
            return ztr_err_wrap(err, "CA_SEAL_KEY_FILE %s", c->settings.ca_seal_key_file);
    } else {
        if (store_is_shared(c->store))
            log_warn("CA not shared: a rotation through this controller does not reach the "
                     "others on the database; set CA_SEAL_KEY_FILE", NULL);
        TRY(ca_set_open(&c->settings, c->clock, &c->cas, err));
    }
    TRY(ctl_server_start(c, err));
    TRY(federation_start(c, err));
    TRY(admin_tls_prepare(c, err));
    TRY(admin_start(c, err));
    /* The real ports matter when a listener was given port 0 (tests). */
    log_info("controller started",
             "trust_domain=%s control_listen=%s control_port=%u admin_listen=%s admin_port=%u "
             "admin_tls=%s health_listen=%s health_port=%u federation_port=%u state_dir=%s "
             "control_names=%s",
             c->settings.trust_domain, c->settings.controller_listen, ctl_server_port(c->ctl),
             c->settings.admin_listen, http_server_port(c->admin_http),
             c->admin_tls != NULL ? "true" : "false",
             c->settings.health_listen, c->health_http ? http_server_port(c->health_http) : 0,
             (unsigned)federation_port(c), c->settings.state_dir, c->ctl_names.text);
    daemon_notify_ready("serving");
    return 0;
}

/* Everything is read once at start (DESIGN: one immutable settings
 * struct), so SIGHUP reloads nothing; it must not kill the controller
 * either (the default action would), and what it logs tells the operator
 * that the process is alive and that a restart applies new settings. */
static void
hangup(void *ctx, struct daemon *daemon)
{
    (void)daemon;
    struct controller *c = ctx;
    log_info("SIGHUP: nothing to reload; restart the controller to apply new settings",
             "sessions=%zu", c->ctl != NULL ? ctl_server_session_count(c->ctl) : (size_t)0);
}

static int
stop(void *ctx, bool started, int exit_status)
{
    struct controller *c = ctx;
    admin_stop(c);
    admin_tls_free(c);
    federation_stop(c);
    ctl_server_stop(c->ctl);
    store_close(c->store);
    ca_set_free(c->cas);
    c->admin_token = NULL;
    pki_cleanup();
    if (started)
        log_info("controller stopped", NULL);
    return exit_status;
}

int
daemon_main(int argc, char **argv)
{
    struct controller c = {0};
    struct daemon_spec spec = {
        .program = "controller",
        .usage = "usage: controller [serve] [--config FILE] [flags]\n"
                 "       controller --version\n"
                 "       controller <token|node|controllers|changes|fleet|resource|allow|deny|allowlist|explain|\n"
                 "                   ca|events|federation|store> ...   (each command: controller help)",
        .msg_failed = "controller failed to start",
        .msg_stopping = "controller stopping",
        .schema = controller_schema,
        .schema_len = SCHEMA_LEN,
        .settings = &c.settings,
        .configure = check_settings,
        .start = start,
        .on_hup = hangup,
        .stop = stop,
        .ctx = &c,
    };
    return daemon_run(&spec, argc, argv);
}
