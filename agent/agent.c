/* The agent core: see agent.h. */
#include "agent/agent.h"

#include <ev.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "base/backoff.h"
#include "ctl/ctlmsg.h"
#include "base/fileio.h"
#include "ctl/frame.h"
#include "net/http.h"
#include "base/log.h"
#include "base/metrics.h"
#include "net/net.h"

extern char **environ;

#define CTL_ALPN "ztr-ctl/1"
#define STATE_FILE_MAX (256 * 1024)
#define REAUTH_ATTEMPTS 3

/* ---- states ----------------------------------------------------------------- */

static const char *const state_names[AGENT_STATE_COUNT] = {
    [AGENT_UNENROLLED] = "UNENROLLED", [AGENT_ENROLLING] = "ENROLLING",
    [AGENT_CONNECTING] = "CONNECTING", [AGENT_ONLINE] = "ONLINE",
    [AGENT_RECONNECTING] = "RECONNECTING", [AGENT_RENEWING] = "RENEWING",
    [AGENT_EXPIRED] = "EXPIRED",       [AGENT_REVOKED] = "REVOKED",
};

/* The whole state machine, one row per state: where it may go next.
 * EXPIRED may only go back to ENROLLING (a slow re-enrollment retry);
 * REVOKED goes nowhere. */
static const bool transitions[AGENT_STATE_COUNT][AGENT_STATE_COUNT] = {
    [AGENT_UNENROLLED] = {[AGENT_ENROLLING] = true, [AGENT_CONNECTING] = true,
                          [AGENT_EXPIRED] = true},
    [AGENT_ENROLLING] = {[AGENT_CONNECTING] = true, [AGENT_EXPIRED] = true},
    [AGENT_CONNECTING] = {[AGENT_ONLINE] = true, [AGENT_RECONNECTING] = true,
                          [AGENT_ENROLLING] = true, [AGENT_EXPIRED] = true,
                          [AGENT_REVOKED] = true},
    [AGENT_ONLINE] = {[AGENT_RENEWING] = true, [AGENT_RECONNECTING] = true,
                      [AGENT_REVOKED] = true},
    [AGENT_RECONNECTING] = {[AGENT_ONLINE] = true, [AGENT_ENROLLING] = true,
                            [AGENT_EXPIRED] = true, [AGENT_REVOKED] = true},
    [AGENT_RENEWING] = {[AGENT_ONLINE] = true, [AGENT_RECONNECTING] = true,
                        [AGENT_REVOKED] = true},
    [AGENT_EXPIRED] = {[AGENT_ENROLLING] = true},
    [AGENT_REVOKED] = {false},
};

const char *
agent_state_name(enum agent_state state)
{
    return (unsigned)state < AGENT_STATE_COUNT ? state_names[state] : "?";
}

bool
agent_transition_allowed(enum agent_state from, enum agent_state to)
{
    if ((unsigned)from >= AGENT_STATE_COUNT || (unsigned)to >= AGENT_STATE_COUNT)
        return false;
    return transitions[from][to];
}

int64_t
agent_renew_at(int64_t not_before, int64_t not_after, int jitter_permille)
{
    if (jitter_permille < -100)
        jitter_permille = -100;
    if (jitter_permille > 100)
        jitter_permille = 100;
    int64_t lifetime = not_after - not_before;
    return not_before + lifetime * (500 + jitter_permille) / 1000;
}

/* ---- the agent ---------------------------------------------------------------- */

struct counters {
    uint64_t reconnect_scheduled;
    uint64_t reconnect_failed;
    uint64_t auth_expired;
    uint64_t auth_revoked;
    uint64_t auth_unavailable;
    uint64_t renewals_ok;
    uint64_t renewals_failed;
    uint64_t connects;
};

struct agent {
    const struct agent_spec *spec;
    struct ev_loop *loop;
    const struct ztr_clock *clock;

    char trust_domain[PKI_TRUST_DOMAIN_MAX + 1];
    char state_dir[1024];
    char node_name[PKI_NAME_MAX + 1];
    char controller_addr[256];
    char controller_ca_path[1024];
    char health_listen[128];
    char *token;
    char *controller_ca_pem;
    size_t controller_ca_len;
    struct backoff_policy reconnect_policy;

    /* identity */
    bool have_identity;
    char node_id[64];
    char spiffe_id[PKI_SPIFFE_ID_MAX + 1];
    char *chain_pem, *key_pem, *bundle_pem;
    size_t chain_len, key_len, bundle_len;
    int64_t not_before, not_after, renew_at;
    struct tls_ctx *ctl_tls;
    struct tls_ctx *data_tls;      /* the data plane's (agent_data_tls), same identity */
    struct tls_ctx *enroll_tls;    /* no identity; trusts CONTROLLER_CA (or the bundle) */

    /* control stream */
    enum agent_state state;
    struct tls_conn *ctl;
    struct frame_reader reader;
    bool welcomed;
    bool reauth;                 /* this enrollment replaces an expired cert */
    unsigned reauth_failures;
    bool reauth_refused;         /* the controller answered the last attempt: retry now */
    bool budget_exhausted;
    int64_t heartbeat_interval_ms;
    int64_t last_ack_mono_ms;
    int64_t last_heartbeat_wall;
    uint64_t heartbeat_seq;
    struct backoff reconnect_backoff;
    struct backoff renew_backoff;

    /* renewal in flight */
    struct pki_key *pending_key;
    char *pending_key_pem;
    size_t pending_key_len;
    char *pending_chain;

    ev_timer reconnect_timer, heartbeat_timer, renew_timer, watchdog_timer;
    ev_signal sigterm, sigint, sighup;
    struct http_server *health;
    struct counters counters;
    bool ready_notified;
    bool daemon_started;
    int exit_code;
};

static void set_state(struct agent *a, enum agent_state to, const char *reason);
static void ctl_connect(struct agent *a);
static void schedule_reconnect(struct agent *a, const char *reason);
static void schedule_renewal(struct agent *a);
static void start_reauth(struct agent *a, const char *why);
static void agent_stop(struct agent *a, int exit_code);

struct ev_loop *
agent_loop(struct agent *agent)
{
    return agent->loop;
}

enum agent_state
agent_current_state(const struct agent *agent)
{
    return agent->state;
}

const char *
agent_trust_domain(const struct agent *agent)
{
    return agent->trust_domain;
}

const char *
agent_state_dir(const struct agent *agent)
{
    return agent->state_dir;
}

const struct ztr_clock *
agent_clock(const struct agent *agent)
{
    return agent->clock;
}

static void
set_state(struct agent *a, enum agent_state to, const char *reason)
{
    if (a->state == to)
        return;
    if (!agent_transition_allowed(a->state, to)) {
        log_error("state change refused", "from=%s to=%s reason=\"%s\"",
                  agent_state_name(a->state), agent_state_name(to), reason);
        return;
    }
    log_info("state change", "from=%s to=%s reason=\"%s\"", agent_state_name(a->state),
             agent_state_name(to), reason);
    a->state = to;
    sd_notifyf(0, "STATUS=%s", agent_state_name(to));
}

/* ---- files -------------------------------------------------------------------- */

static int
state_path(const struct agent *a, const char *name, char *out, size_t cap, struct ztr_err *err)
{
    int n = snprintf(out, cap, "%s/%s", a->state_dir, name);
    if (n < 0 || (size_t)n >= cap)
        return ztr_err_set(err, ZTR_E_LIMIT, "STATE_DIR path too long");
    return 0;
}

static int
write_state_file(const struct agent *a, const char *name, const char *text, size_t len,
                 mode_t mode, struct ztr_err *err)
{
    char path[1200];
    TRY(state_path(a, name, path, sizeof(path), err));
    return file_write_atomic(path, text, len, mode, err);
}

static void
replace_text(char **field, size_t *field_len, char *value, size_t len, bool secret)
{
    if (*field != NULL && secret)
        explicit_bzero(*field, *field_len);
    free(*field);
    *field = value;
    *field_len = len;
}

/* Reads notBefore/notAfter and the SPIFFE ID of the leaf in chain_pem. */
static int
leaf_facts(const char *chain_pem, size_t len, struct pki_cert_info *info, struct ztr_err *err)
{
    struct pki_chain *chain;
    TRY(pki_chain_from_pem(chain_pem, len, &chain, err));
    size_t der_len;
    const uint8_t *der = pki_chain_der(chain, 0, &der_len);
    int rc = pki_cert_info_parse(der, der_len, info, err);
    pki_chain_free(chain);
    return rc;
}

/* Makes the loaded identity current: dates, renewal time, TLS context.
 * received_at: when a certificate that just arrived (enrollment, renewal)
 * was received; 0 for one loaded from STATE_DIR. */
static int
adopt_identity(struct agent *a, int64_t received_at, struct ztr_err *err)
{
    struct pki_cert_info info;
    TRY(leaf_facts(a->chain_pem, a->chain_len, &info, err));
    a->not_before = info.not_before;
    a->not_after = info.not_after;
    snprintf(a->spiffe_id, sizeof(a->spiffe_id), "%s", info.uri);
    int jitter = (int)(a->renew_backoff.rng_state % 201) - 100;
    /* The controller backdates notBefore by 60 s of clock-skew allowance.
     * Counted as lifetime, that minute put 50 % of a short SVID (SVID_TTL
     * under ~90 s) before the moment it arrived: every renewed certificate
     * was due again at once and the agent renewed in a tight loop
     * (thousands a second). A certificate that just arrived counts its
     * lifetime from its arrival; one loaded from disk keeps notBefore, which
     * can only make the first renewal earlier, never later. */
    int64_t start = a->not_before;
    if (received_at > start && received_at < a->not_after)
        start = received_at;
    a->renew_at = agent_renew_at(start, a->not_after, jitter);
    if (a->ctl_tls == NULL) {
        struct tls_ctx_config config = {
            .side = TLS_SIDE_CLIENT, .alpn = CTL_ALPN, .chain_pem = a->chain_pem,
            .chain_len = a->chain_len, .key_pem = a->key_pem, .key_len = a->key_len,
            .bundle_pem = a->bundle_pem, .bundle_len = a->bundle_len, .clock = a->clock};
        TRY(tls_ctx_new(&config, &a->ctl_tls, err));
    } else {
        TRY(tls_ctx_update(a->ctl_tls, a->chain_pem, a->chain_len, a->key_pem, a->key_len,
                           a->bundle_pem, a->bundle_len, err));
    }
    /* New data-plane handshakes present the new certificate; sessions
     * already up keep theirs (nothing is torn down). */
    if (a->data_tls != NULL)
        TRY(tls_ctx_update(a->data_tls, a->chain_pem, a->chain_len, a->key_pem, a->key_len,
                           a->bundle_pem, a->bundle_len, err));
    a->have_identity = true;
    return 0;
}

static int
load_identity(struct agent *a, bool *found, struct ztr_err *err)
{
    char path[1200];
    *found = false;
    char *chain = NULL, *key = NULL, *bundle = NULL, *node = NULL;
    size_t chain_len = 0, key_len = 0, bundle_len = 0, node_len = 0;
    struct ztr_err probe;
    TRY(state_path(a, "cert.pem", path, sizeof(path), err));
    if (file_read_all(path, STATE_FILE_MAX, &chain, &chain_len, &probe) != 0) {
        if (probe.code == ZTR_E_NOT_FOUND)
            return 0;
        *err = probe;
        return -1;
    }
    int rc = state_path(a, "key.pem", path, sizeof(path), err);
    if (rc == 0)
        rc = file_read_all(path, STATE_FILE_MAX, &key, &key_len, err);
    if (rc == 0)
        rc = state_path(a, "bundle.pem", path, sizeof(path), err);
    if (rc == 0)
        rc = file_read_all(path, STATE_FILE_MAX, &bundle, &bundle_len, err);
    if (rc == 0 && state_path(a, "node.json", path, sizeof(path), err) == 0 &&
        file_read_all(path, STATE_FILE_MAX, &node, &node_len, &probe) == 0) {
        json_t *j = json_loadb(node, node_len, 0, NULL);
        const char *id = json_string_value(json_object_get(j, "node_id"));
        snprintf(a->node_id, sizeof(a->node_id), "%s", id ? id : "");
        json_decref(j);
        free(node);
    }
    if (rc != 0) {
        free(chain);
        if (key)
            explicit_bzero(key, key_len);
        free(key);
        free(bundle);
        return ztr_err_wrap(err, "stored identity in %s is incomplete", a->state_dir);
    }
    replace_text(&a->chain_pem, &a->chain_len, chain, chain_len, false);
    replace_text(&a->key_pem, &a->key_len, key, key_len, true);
    replace_text(&a->bundle_pem, &a->bundle_len, bundle, bundle_len, false);
    *found = true;
    return adopt_identity(a, 0, err);
}

/* ---- sending ------------------------------------------------------------------ */

static void
ctl_send(struct agent *a, json_t *msg)
{
    if (a->ctl == NULL) {
        json_decref(msg);
        return;
    }
    struct ztr_err err = {0};
    if (ctlmsg_write(a->ctl, msg, &err) != 0) {
        log_warn("control message not sent", "error=\"%s\"", err.msg);
        tls_conn_close(a->ctl, err.msg);
    }
}

static json_t *
counters_json(const struct agent *a)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "reconnect_scheduled",
                     (json_int_t)a->counters.reconnect_scheduled, "reconnect_failed",
                     (json_int_t)a->counters.reconnect_failed, "auth_expired",
                     (json_int_t)a->counters.auth_expired, "auth_revoked",
                     (json_int_t)a->counters.auth_revoked, "auth_unavailable",
                     (json_int_t)a->counters.auth_unavailable, "renewals_ok",
                     (json_int_t)a->counters.renewals_ok, "renewals_failed",
                     (json_int_t)a->counters.renewals_failed);
}

/* ---- enrollment ---------------------------------------------------------------- */

static void
send_enroll(struct agent *a)
{
    struct ztr_err err = {0};
    char *csr = NULL;
    size_t csr_len;
    pki_key_free(a->pending_key);
    a->pending_key = NULL;
    /* The key is made here and never leaves the host. */
    if (pki_key_generate(&a->pending_key, &err) != 0 ||
        pki_csr_create(a->pending_key, a->node_name, &csr, &csr_len, &err) != 0) {
        log_error("cannot make a key", "error=\"%s\"", err.msg);
        agent_stop(a, AGENT_EXIT_RUNTIME);
        return;
    }
    json_t *enroll = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "enroll", "token", a->token,
                               "role", pki_role_name(a->spec->role), "name", a->node_name,
                               "csr", csr);
    if (a->spec->add_enroll != NULL)
        a->spec->add_enroll(a->spec->ctx, enroll);
    free(csr);
    ctl_send(a, enroll);
}

static int
save_enrollment(struct agent *a, const json_t *msg, struct ztr_err *err)
{
    const char *chain = json_string_value(json_object_get(msg, "chain"));
    const char *bundle = json_string_value(json_object_get(msg, "bundle"));
    char *key_pem;
    size_t key_len;
    TRY(pki_key_to_pem(a->pending_key, &key_pem, &key_len, err));
    /* The key goes first (0600, its temporary file created O_EXCL); a crash
     * before cert.pem leaves no half identity that looks complete. */
    int rc = write_state_file(a, "key.pem", key_pem, key_len, 0600, err);
    if (rc == 0)
        rc = write_state_file(a, "bundle.pem", bundle, strlen(bundle), 0644, err);
    json_t *node = json_pack("{s:O, s:O}", "node_id", json_object_get(msg, "node_id"),
                             "spiffe_id", json_object_get(msg, "spiffe_id"));
    char *node_text = json_dumps(node, JSON_INDENT(2));
    json_decref(node);
    if (rc == 0 && node_text != NULL)
        rc = write_state_file(a, "node.json", node_text, strlen(node_text), 0644, err);
    free(node_text);
    if (rc == 0)
        rc = write_state_file(a, "cert.pem", chain, strlen(chain), 0644, err);
    if (rc != 0) {
        explicit_bzero(key_pem, key_len);
        free(key_pem);
        return -1;
    }
    snprintf(a->node_id, sizeof(a->node_id), "%s",
             json_string_value(json_object_get(msg, "node_id")));
    replace_text(&a->key_pem, &a->key_len, key_pem, key_len, true);
    replace_text(&a->chain_pem, &a->chain_len, strdup(chain), strlen(chain), false);
    replace_text(&a->bundle_pem, &a->bundle_len, strdup(bundle), strlen(bundle), false);
    return adopt_identity(a, clock_wall_s(a->clock), err);
}

static void
maybe_start_daemon(struct agent *a)
{
    if (a->daemon_started || a->spec->start == NULL || !a->have_identity)
        return;
    struct ztr_err err = {0};
    a->daemon_started = true;
    if (a->spec->start(a->spec->ctx, a, &err) != 0) {
        log_error("cannot start", "error=\"%s\"", err.msg);
        agent_stop(a, AGENT_EXIT_RUNTIME);
    }
}

static void
handle_enrolled(struct agent *a, const json_t *msg)
{
    struct ztr_err err = {0};
    if (save_enrollment(a, msg, &err) != 0) {
        log_error("cannot save the enrolled identity", "error=\"%s\"", err.msg);
        agent_stop(a, AGENT_EXIT_RUNTIME);
        return;
    }
    log_info("enrolled", "node=%s spiffe_id=%s not_after=%lld", a->node_id, a->spiffe_id,
             (long long)a->not_after);
    a->reauth = false;
    a->reauth_failures = 0;
    backoff_reset(&a->reconnect_backoff);
    set_state(a, AGENT_CONNECTING, "enrolled");
    tls_conn_close(a->ctl, "enrollment complete");
    maybe_start_daemon(a);
}

static void
enrollment_refused(struct agent *a, const char *message)
{
    log_error(message, "role=%s name=%s controller=%s", pki_role_name(a->spec->role),
              a->node_name, a->controller_addr);
    if (!a->reauth) {
        agent_stop(a, AGENT_EXIT_ENROLLMENT_REFUSED);
        return;
    }
    a->counters.auth_expired++;
    if (++a->reauth_failures >= REAUTH_ATTEMPTS) {
        log_error("re-enrollment failed; issue a new token",
                  "attempts=%u hint=\"controller token create --role %s --name %s, then set "
                  "ENROLLMENT_TOKEN and restart\"",
                  a->reauth_failures, pki_role_name(a->spec->role), a->node_name);
        set_state(a, AGENT_EXPIRED, "re-enrollment failed 3 times");
        schedule_reconnect(a, "expired");
        return;
    }
    a->reauth_refused = true;
    tls_conn_close(a->ctl, message);
}

/* ---- the control stream ------------------------------------------------------- */

static void
send_hello(struct agent *a)
{
    json_t *hello = json_pack("{s:s, s:i, s:s}", "type", "hello", "version", CTLMSG_VERSION,
                              "role", pki_role_name(a->spec->role));
    if (a->spec->add_hello != NULL)
        a->spec->add_hello(a->spec->ctx, hello);
    ctl_send(a, hello);
}

static void
heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct agent *a = w->data;
    if (a->ctl == NULL || !a->welcomed)
        return;
    int64_t now = clock_monotonic_ms(a->clock);
    /* Three missed acks: the stream is dead even if TCP has not noticed. */
    if (now - a->last_ack_mono_ms > 3 * a->heartbeat_interval_ms) {
        log_warn("no heartbeat ack for 3 intervals", "controller=%s", a->controller_addr);
        tls_conn_close(a->ctl, "no heartbeat ack for 3 intervals");
        return;
    }
    json_t *hb = json_pack("{s:s, s:I, s:o}", "type", "heartbeat", "seq",
                           (json_int_t)++a->heartbeat_seq, "counters", counters_json(a));
    ctl_send(a, hb);
}

static void
handle_welcome(struct agent *a, const json_t *msg)
{
    a->welcomed = true;
    a->counters.connects++;
    a->heartbeat_interval_ms = json_integer_value(json_object_get(msg, "heartbeat_interval_ms"));
    if (a->heartbeat_interval_ms < 100)
        a->heartbeat_interval_ms = 100;
    a->last_ack_mono_ms = clock_monotonic_ms(a->clock);
    const char *node_id = json_string_value(json_object_get(msg, "node_id"));
    if (node_id != NULL)
        snprintf(a->node_id, sizeof(a->node_id), "%s", node_id);
    backoff_reset(&a->reconnect_backoff);
    a->budget_exhausted = false;
    a->reauth_failures = 0;
    /* Exactly once per connection (failure-modes §3.1). */
    log_info(AGENT_MSG_STREAM_CONNECTED, "controller=%s node=%s spiffe_id=%s",
             a->controller_addr, a->node_id, a->spiffe_id);
    set_state(a, AGENT_ONLINE, "welcome");
    double interval = (double)a->heartbeat_interval_ms / 1000.0;
    ev_timer_stop(a->loop, &a->heartbeat_timer);
    ev_timer_set(&a->heartbeat_timer, interval, interval);
    ev_timer_start(a->loop, &a->heartbeat_timer);
    if (!a->ready_notified) {
        sd_notify(0, "READY=1");
        a->ready_notified = true;
    }
    schedule_renewal(a);
}

/* ---- renewal ----------------------------------------------------------------- */

static void
renew_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct agent *a = w->data;
    if (a->state != AGENT_ONLINE || a->ctl == NULL)
        return; /* the next welcome reschedules */
    struct ztr_err err = {0};
    char *csr = NULL;
    size_t csr_len;
    pki_key_free(a->pending_key);
    a->pending_key = NULL;
    /* A fresh key every time: the controller refuses the current one. */
    if (pki_key_generate(&a->pending_key, &err) != 0 ||
        pki_csr_create(a->pending_key, a->node_name, &csr, &csr_len, &err) != 0) {
        log_error("renewal: cannot make a key", "error=\"%s\"", err.msg);
        return;
    }
    set_state(a, AGENT_RENEWING, "renewal due");
    log_info("renewing certificate", "not_after=%lld renew_at=%lld", (long long)a->not_after,
             (long long)a->renew_at);
    ctl_send(a, json_pack("{s:s, s:s}", "type", "renew", "csr", csr));
    free(csr);
}

static void
schedule_renewal(struct agent *a)
{
    ev_timer_stop(a->loop, &a->renew_timer);
    if (!a->have_identity)
        return;
    double delay = (double)(a->renew_at - clock_wall_s(a->clock));
    ev_timer_set(&a->renew_timer, delay > 0 ? delay : 0, 0);
    ev_timer_start(a->loop, &a->renew_timer);
}

static void
renewal_failed(struct agent *a, const char *why)
{
    a->counters.renewals_failed++;
    int64_t delay_ms = 60000;
    backoff_next(&a->renew_backoff, &delay_ms);
    log_warn("renewal failed", "reason=\"%s\" retry_in_ms=%lld not_after=%lld", why,
             (long long)delay_ms, (long long)a->not_after);
    if (a->state == AGENT_RENEWING)
        set_state(a, AGENT_ONLINE, "renewal failed");
    ev_timer_stop(a->loop, &a->renew_timer);
    ev_timer_set(&a->renew_timer, (double)delay_ms / 1000.0, 0);
    ev_timer_start(a->loop, &a->renew_timer);
}

/* Checks a renewed chain against our bundle; installs it when it verifies. */
static int
try_install_chain(struct agent *a, const char *chain, struct ztr_err *err)
{
    struct pki_bundle *bundle = NULL;
    struct pki_chain *parsed = NULL;
    struct pki_expect expect = {.trust_domain = a->trust_domain, .role = a->spec->role,
                                .spiffe_id = a->spiffe_id, .now = clock_wall_s(a->clock)};
    int rc = pki_bundle_from_pem(a->bundle_pem, a->bundle_len, &bundle, err);
    if (rc == 0)
        rc = pki_chain_from_pem(chain, strlen(chain), &parsed, err);
    if (rc == 0)
        rc = pki_verify(bundle, parsed, &expect, NULL, err);
    pki_chain_free(parsed);
    pki_bundle_free(bundle);
    if (rc != 0)
        return -1;
    char *key_pem;
    size_t key_len;
    TRY(pki_key_to_pem(a->pending_key, &key_pem, &key_len, err));
    /* Key then certificate, each atomically: new handshakes use them; the
     * control stream and every established session stay as they are. */
    rc = write_state_file(a, "key.pem", key_pem, key_len, 0600, err);
    if (rc == 0)
        rc = write_state_file(a, "cert.pem", chain, strlen(chain), 0644, err);
    if (rc != 0) {
        explicit_bzero(key_pem, key_len);
        free(key_pem);
        return -1;
    }
    replace_text(&a->key_pem, &a->key_len, key_pem, key_len, true);
    replace_text(&a->chain_pem, &a->chain_len, strdup(chain), strlen(chain), false);
    return adopt_identity(a, clock_wall_s(a->clock), err);
}

static void
handle_renewed(struct agent *a, const json_t *msg)
{
    const char *chain = json_string_value(json_object_get(msg, "chain"));
    struct ztr_err err = {0};
    if (try_install_chain(a, chain, &err) != 0) {
        log_warn(AGENT_MSG_CA_MISMATCH, "detail=\"%s\" action=bundle_request", err.msg);
        free(a->pending_chain);
        a->pending_chain = strdup(chain);
        ctl_send(a, json_pack("{s:s}", "type", "bundle_request"));
        return;
    }
    a->counters.renewals_ok++;
    backoff_reset(&a->renew_backoff);
    log_info("certificate renewed", "not_after=%lld renew_at=%lld", (long long)a->not_after,
             (long long)a->renew_at);
    set_state(a, AGENT_ONLINE, "renewed");
    schedule_renewal(a);
}

static void
handle_bundle(struct agent *a, const json_t *msg)
{
    const char *bundle = json_string_value(json_object_get(msg, "bundle"));
    struct pki_bundle *parsed;
    struct ztr_err err = {0};
    if (pki_bundle_from_pem(bundle, strlen(bundle), &parsed, &err) != 0) {
        log_warn("bundle rejected", "error=\"%s\"", err.msg);
        return;
    }
    pki_bundle_free(parsed);
    if (a->bundle_pem == NULL || strcmp(bundle, a->bundle_pem) != 0) {
        if (write_state_file(a, "bundle.pem", bundle, strlen(bundle), 0644, &err) != 0 ||
            tls_ctx_update(a->ctl_tls, NULL, 0, NULL, 0, bundle, strlen(bundle), &err) != 0 ||
            (a->data_tls != NULL &&
             tls_ctx_update(a->data_tls, NULL, 0, NULL, 0, bundle, strlen(bundle), &err) != 0)) {
            log_warn("bundle not saved", "error=\"%s\"", err.msg);
            /* A renewal waiting for this bundle must not wait forever: it
             * used to stay RENEWING with nothing scheduled (renew_cb only
             * runs while ONLINE) until the stream dropped. Count it failed
             * and retry with backoff; the next attempt asks again. */
            if (a->pending_chain != NULL) {
                free(a->pending_chain);
                a->pending_chain = NULL;
                renewal_failed(a, err.msg);
            }
            return;
        }
        replace_text(&a->bundle_pem, &a->bundle_len, strdup(bundle), strlen(bundle), false);
        log_info("trust bundle updated", "version=%lld",
                 (long long)json_integer_value(json_object_get(msg, "version")));
    }
    if (a->pending_chain != NULL) {
        char *chain = a->pending_chain;
        a->pending_chain = NULL;
        if (try_install_chain(a, chain, &err) == 0) {
            a->counters.renewals_ok++;
            log_info("certificate renewed after a bundle update", "not_after=%lld",
                     (long long)a->not_after);
            set_state(a, AGENT_ONLINE, "renewed");
            schedule_renewal(a);
        } else {
            renewal_failed(a, err.msg);
        }
        free(chain);
    }
}

static void
handle_error(struct agent *a, const json_t *msg)
{
    const char *code = json_string_value(json_object_get(msg, "code"));
    const char *message = json_string_value(json_object_get(msg, "message"));
    if (a->state == AGENT_ENROLLING &&
        (strcmp(code, CTLMSG_E_INVALID_TOKEN) == 0 || strcmp(code, CTLMSG_E_PERMISSION_DENIED) == 0)) {
        enrollment_refused(a, message);
        return;
    }
    if (a->state == AGENT_RENEWING) {
        renewal_failed(a, message);
        return;
    }
    log_warn("controller error", "code=%s message=\"%s\"", code, message);
}

static void
handle_revoked(struct agent *a, const json_t *msg)
{
    a->counters.auth_revoked++;
    log_error("node revoked by the controller",
              "reason=\"%s\" spiffe_id=%s hint=\"this identity can no longer be used; enroll "
              "again with a new token and a new NODE_NAME, and an empty STATE_DIR\"",
              json_string_value(json_object_get(msg, "reason")), a->spiffe_id);
    set_state(a, AGENT_REVOKED, "revoked");
    agent_stop(a, AGENT_EXIT_REVOKED);
}

static void
handle_message(struct agent *a, enum ctlmsg_type type, const json_t *msg)
{
    switch (type) {
    case CTLMSG_ENROLLED: handle_enrolled(a, msg); break;
    case CTLMSG_WELCOME: handle_welcome(a, msg); break;
    case CTLMSG_HEARTBEAT_ACK:
        a->last_ack_mono_ms = clock_monotonic_ms(a->clock);
        a->last_heartbeat_wall = clock_wall_s(a->clock);
        break;
    case CTLMSG_BUNDLE: handle_bundle(a, msg); break;
    case CTLMSG_RENEWED: handle_renewed(a, msg); break;
    case CTLMSG_REVOKED: handle_revoked(a, msg); break;
    case CTLMSG_ERROR: handle_error(a, msg); break;
    case CTLMSG_ALLOWLIST:
        if (a->spec->on_allowlist != NULL)
            a->spec->on_allowlist(a->spec->ctx, msg);
        break;
    case CTLMSG_CONNECTORS:
        if (a->spec->on_connectors != NULL)
            a->spec->on_connectors(a->spec->ctx, msg);
        break;
    default:
        log_warn("unexpected control message", "type=%s", ctlmsg_type_name(type));
        break;
    }
}

static void
on_ready(struct tls_conn *conn, void *user)
{
    (void)conn;
    struct agent *a = user;
    if (a->state == AGENT_ENROLLING)
        send_enroll(a);
    else
        send_hello(a);
}

static void
on_data(struct tls_conn *conn, const uint8_t *data, size_t len, void *user)
{
    struct agent *a = user;
    while (len > 0 && a->ctl == conn) {
        size_t used;
        struct ztr_err err = {0};
        if (frame_reader_feed(&a->reader, data, len, &used, &err) != 0) {
            tls_conn_close(conn, err.msg);
            return;
        }
        data += used;
        len -= used;
        if (!frame_reader_complete(&a->reader))
            continue;
        size_t payload_len;
        const uint8_t *payload = frame_reader_payload(&a->reader, &payload_len);
        json_t *msg;
        enum ctlmsg_type type;
        int rc = ctlmsg_decode(payload, payload_len, &msg, &type, &err);
        frame_reader_next(&a->reader);
        if (rc != 0) {
            log_warn("bad control message", "error=\"%s\"", err.msg);
            tls_conn_close(conn, err.msg);
            return;
        }
        handle_message(a, type, msg);
        json_decref(msg);
        if (a->exit_code >= 0)
            return;
    }
}

static bool
identity_expired(const struct agent *a)
{
    return a->have_identity && clock_wall_s(a->clock) > a->not_after;
}

static void
on_close(struct tls_conn *conn, const char *reason, void *user)
{
    (void)conn;
    struct agent *a = user;
    bool was_welcomed = a->welcomed;
    a->ctl = NULL;
    a->welcomed = false;
    frame_reader_next(&a->reader);
    ev_timer_stop(a->loop, &a->heartbeat_timer);
    if (a->exit_code >= 0 || a->state == AGENT_REVOKED || a->state == AGENT_EXPIRED)
        return;
    if (a->state == AGENT_CONNECTING && a->have_identity && !was_welcomed &&
        strcmp(reason, "enrollment complete") == 0) {
        ctl_connect(a); /* straight on to the mTLS stream */
        return;
    }
    if (was_welcomed)
        log_warn("control-plane stream lost", "controller=%s reason=\"%s\"", a->controller_addr,
                 reason);
    else
        log_warn("control-plane connection failed", "controller=%s reason=\"%s\"",
                 a->controller_addr, reason);
    if (a->state == AGENT_RENEWING && a->pending_chain == NULL)
        a->counters.renewals_failed++;
    if (identity_expired(a)) {
        a->counters.auth_expired++;
        /* A re-enrollment that could not reach the controller waits like
         * any other attempt; retrying it at once spun the loop (tens of
         * thousands of attempts a second while the controller was down). */
        if (a->state == AGENT_ENROLLING && a->reauth && !a->reauth_refused) {
            a->counters.auth_unavailable++;
            schedule_reconnect(a, reason);
            return;
        }
        a->reauth_refused = false;
        start_reauth(a, "certificate expired");
        return;
    }
    if (!was_welcomed)
        a->counters.auth_unavailable++;
    if (a->state == AGENT_ENROLLING) {
        schedule_reconnect(a, reason);
        return;
    }
    set_state(a, AGENT_RECONNECTING, reason);
    schedule_reconnect(a, reason);
}

static const struct tls_conn_callbacks ctl_callbacks = {on_ready, on_data, on_close};

static int
enrollment_tls(struct agent *a, struct tls_ctx **out, struct ztr_err *err)
{
    struct tls_ctx_config config = {.side = TLS_SIDE_CLIENT, .alpn = CTL_ALPN,
                                    .bundle_pem = a->controller_ca_pem,
                                    .bundle_len = a->controller_ca_len, .clock = a->clock};
    /* An agent re-enrolling after expiry trusts its bundle (the CA may have
     * rotated since CONTROLLER_CA was written). */
    if (a->bundle_pem != NULL) {
        config.bundle_pem = a->bundle_pem;
        config.bundle_len = a->bundle_len;
    }
    return tls_ctx_new(&config, out, err);
}

static void
ctl_connect(struct agent *a)
{
    struct ztr_err err = {0};
    int fd = -1;
    struct tls_ctx *ctx = a->ctl_tls;
    if (a->state == AGENT_ENROLLING) {
        tls_ctx_free(a->enroll_tls);
        a->enroll_tls = NULL;
        if (enrollment_tls(a, &a->enroll_tls, &err) != 0) {
            log_error("cannot prepare enrollment", "error=\"%s\"", err.msg);
            agent_stop(a, AGENT_EXIT_CONFIG);
            return;
        }
        ctx = a->enroll_tls;
    }
    struct pki_expect expect = {.trust_domain = a->trust_domain, .role = PKI_ROLE_CONTROLLER};
    if (net_connect_start(a->controller_addr, &fd, &err) != 0 ||
        tls_conn_new(a->loop, ctx, fd, &expect, &ctl_callbacks, a, &a->ctl, &err) != 0) {
        a->ctl = NULL;
        a->counters.auth_unavailable++;
        log_warn("control-plane connection failed", "controller=%s reason=\"%s\"",
                 a->controller_addr, err.msg);
        if (a->state != AGENT_ENROLLING)
            set_state(a, AGENT_RECONNECTING, err.msg);
        schedule_reconnect(a, err.msg);
    }
}

/* ---- the reconnect worker ---------------------------------------------------- */

static void
reconnect_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct agent *a = w->data;
    if (a->ctl != NULL || a->exit_code >= 0)
        return;
    if (a->state == AGENT_EXPIRED) {
        if (a->token == NULL)
            return schedule_reconnect(a, "expired, no token");
        a->reauth = true;
        set_state(a, AGENT_ENROLLING, "slow re-enrollment retry");
    }
    ctl_connect(a);
}

/* Bounded exponential backoff with full jitter; once the budget is spent
 * the agent says it is disconnected and keeps trying at the slowest pace. */
static void
schedule_reconnect(struct agent *a, const char *reason)
{
    if (a->exit_code >= 0)
        return;
    int64_t delay_ms;
    if (a->state == AGENT_EXPIRED) {
        delay_ms = a->reconnect_policy.cap_ms;
    } else if (backoff_next(&a->reconnect_backoff, &delay_ms) != 0) {
        if (!a->budget_exhausted) {
            a->budget_exhausted = true;
            a->counters.reconnect_failed++;
            log_warn("controller unreachable: retry budget exhausted",
                     "attempts=%u status=disconnected retry_every_ms=%lld",
                     backoff_attempts(&a->reconnect_backoff),
                     (long long)a->reconnect_policy.cap_ms);
        }
        delay_ms = a->reconnect_policy.cap_ms;
    }
    a->counters.reconnect_scheduled++;
    log_info("reconnect scheduled", "in_ms=%lld attempt=%u reason=\"%s\"", (long long)delay_ms,
             backoff_attempts(&a->reconnect_backoff), reason);
    ev_timer_stop(a->loop, &a->reconnect_timer);
    ev_timer_set(&a->reconnect_timer, (double)delay_ms / 1000.0, 0);
    ev_timer_start(a->loop, &a->reconnect_timer);
}

static void
start_reauth(struct agent *a, const char *why)
{
    if (a->token == NULL) {
        log_error("certificate expired and no ENROLLMENT_TOKEN is configured",
                  "not_after=%lld hint=\"issue a new token: controller token create --role %s "
                  "--name %s, then set ENROLLMENT_TOKEN and restart\"",
                  (long long)a->not_after, pki_role_name(a->spec->role), a->node_name);
        set_state(a, AGENT_EXPIRED, why);
        schedule_reconnect(a, "expired");
        return;
    }
    a->reauth = true;
    log_warn("re-enrolling with the retained token", "reason=\"%s\" attempt=%u", why,
             a->reauth_failures + 1);
    set_state(a, AGENT_ENROLLING, why);
    ctl_connect(a);
}

/* ---- health ------------------------------------------------------------------- */

static json_t *
health_json(struct agent *a)
{
    bool connected = a->welcomed;
    const char *link = connected ? "connected" : a->budget_exhausted ? "disconnected"
                                                                     : "reconnecting";
    json_t *telemetry = json_pack(
        "{s:{s:I, s:I}, s:{s:I, s:I, s:I}}", "reconnect", "scheduled",
        (json_int_t)a->counters.reconnect_scheduled, "failed",
        (json_int_t)a->counters.reconnect_failed, "auth", "expired",
        (json_int_t)a->counters.auth_expired, "revoked", (json_int_t)a->counters.auth_revoked,
        "unavailable", (json_int_t)a->counters.auth_unavailable);
    json_t *health = json_pack(
        "{s:s, s:b, s:s, s:s, s:s, s:I, s:I, s:{s:s, s:s}, s:I, s:{s:b, s:s, s:s}, s:o, "
        "s:{s:I, s:I}}",
        "state", agent_state_name(a->state), "connected", connected, "role",
        pki_role_name(a->spec->role), "spiffe_id", a->spiffe_id, "node_id", a->node_id,
        "not_after", (json_int_t)a->not_after, "renew_at", (json_int_t)a->renew_at,
        "controller", "address", a->controller_addr, "link", link, "last_heartbeat",
        (json_int_t)a->last_heartbeat_wall, "agent", "connected", connected, "state",
        agent_state_name(a->state), "authMode", "mtls-svid", "telemetry", telemetry,
        "renewals", "ok", (json_int_t)a->counters.renewals_ok, "failed",
        (json_int_t)a->counters.renewals_failed);
    /* The runbook names counters telemetry.reconnect.scheduled and so on:
     * jq '.telemetry.reconnect.scheduled' reads the tree; the same names as
     * flat keys keep a plain grep working too. */
    static const char *const flat[][3] = {
        {"telemetry.reconnect.scheduled", "reconnect", "scheduled"},
        {"telemetry.reconnect.failed", "reconnect", "failed"},
        {"telemetry.auth.expired", "auth", "expired"},
        {"telemetry.auth.revoked", "auth", "revoked"},
        {"telemetry.auth.unavailable", "auth", "unavailable"},
    };
    for (size_t i = 0; i < sizeof(flat) / sizeof(flat[0]); i++)
        json_object_set(health, flat[i][0],
                        json_object_get(json_object_get(telemetry, flat[i][1]), flat[i][2]));
    if (a->spec->add_health != NULL)
        a->spec->add_health(a->spec->ctx, health);
    return health;
}

static void
metrics_text(struct agent *a, struct metrics *m)
{
    char labels[64];
    int64_t now = clock_wall_s(a->clock);
    snprintf(labels, sizeof(labels), "role=\"%s\"", pki_role_name(a->spec->role));
    metrics_family(m, "ztr_agent_state", "gauge", "Current agent state (1 for the current one).");
    for (int s = 0; s < AGENT_STATE_COUNT; s++)
        metrics_printf(m, "ztr_agent_state{%s,state=\"%s\"} %d\n", labels, state_names[s],
                       (int)a->state == s);
    metrics_gauge(m, "ztr_agent_connected", "1 while the control-plane stream is up.", labels,
                  a->welcomed);
    static const struct metrics_row counters[] = {
        {"ztr_agent_reconnect_scheduled_total", "counter", "Reconnect attempts scheduled.",
         offsetof(struct counters, reconnect_scheduled)},
        {"ztr_agent_reconnect_failed_total", "counter",
         "Times the reconnect retry budget ran out.",
         offsetof(struct counters, reconnect_failed)},
        {"ztr_agent_auth_expired_total", "counter",
         "Connections refused or lost to an expired credential.",
         offsetof(struct counters, auth_expired)},
        {"ztr_agent_auth_revoked_total", "counter", "Revocations received.",
         offsetof(struct counters, auth_revoked)},
        {"ztr_agent_auth_unavailable_total", "counter", "Failed attempts to reach the controller.",
         offsetof(struct counters, auth_unavailable)},
        {"ztr_agent_renewals_ok_total", "counter", "Certificates renewed.",
         offsetof(struct counters, renewals_ok)},
        {"ztr_agent_renewals_failed_total", "counter", "Renewal attempts that failed.",
         offsetof(struct counters, renewals_failed)},
    };
    metrics_rows(m, counters, sizeof(counters) / sizeof(counters[0]), &a->counters, labels);
    metrics_gauge(m, "ztr_svid_expiry_seconds", "Time left on the current certificate.", labels,
                  a->have_identity ? a->not_after - now : 0);
    if (a->spec->add_metrics != NULL)
        a->spec->add_metrics(a->spec->ctx, m);
}

static void
health_handler(void *ctx, const struct http_request *request, struct http_response *response)
{
    struct agent *a = ctx;
    if (strcmp(request->method, "GET") != 0) {
        http_respond_error(response, 405, "method not allowed");
        return;
    }
    if (strcmp(request->path, "/health") == 0) {
        json_t *health = health_json(a);
        response->body = json_dumps(health, JSON_COMPACT);
        json_decref(health);
        /* 200 only while the agent is doing its job: a probe can act on it. */
        response->status = a->state == AGENT_ONLINE || a->state == AGENT_RENEWING ? 200 : 503;
        return;
    }
    if (strcmp(request->path, "/metrics") == 0) {
        struct metrics *m = metrics_new();
        if (m == NULL) {
            http_respond_error(response, 500, "out of memory");
            return;
        }
        size_t len = 0;
        metrics_text(a, m);
        char *text = metrics_take(m, &len);
        metrics_free(m);
        if (text == NULL) {
            http_respond_error(response, 500, "out of memory");
            return;
        }
        response->status = 200;
        response->content_type = "text/plain; version=0.0.4";
        response->body = text;
        response->body_len = len;
        return;
    }
    http_respond_error(response, 404, "not found");
}

/* ---- configuration and life cycle -------------------------------------------- */

static const struct config_key common_keys[] = {
    {"ENROLLMENT_TOKEN", CONFIG_SECRET, NULL, "one-time enrollment token (first start only)", NULL},
    {"CONTROLLER_ADDR", CONFIG_ADDR, NULL, "controller control-plane address host:port", NULL},
    {"CONTROLLER_CA", CONFIG_STRING, NULL, "PEM file of the CA to trust for the controller", NULL},
    {"TRUST_DOMAIN", CONFIG_STRING, NULL, "SPIFFE trust domain, e.g. example.org", NULL},
    {"STATE_DIR", CONFIG_STRING, NULL, "where the key, certificate and bundle live", NULL},
    {"NODE_NAME", CONFIG_STRING, NULL, "this node's name (its SPIFFE ID's last segment)", NULL},
    {"HEALTH_LISTEN", CONFIG_ADDR, NULL, "/health and /metrics listener", NULL},
    {"RECONNECT_MIN_DELAY", CONFIG_DURATION, "1s", "first reconnect backoff ceiling", NULL},
    {"RECONNECT_MAX_DELAY", CONFIG_DURATION, "60s", "largest reconnect delay", NULL},
    {"RECONNECT_ATTEMPTS", CONFIG_UINT, "10", "attempts before reporting disconnected", NULL},
    {"LOG_LEVEL", CONFIG_STRING, "info", "debug, info, warn or error", NULL},
};
#define COMMON_KEY_COUNT (sizeof(common_keys) / sizeof(common_keys[0]))

static int
copy_setting(char *dst, size_t cap, const struct config *config, const char *name,
             struct ztr_err *err)
{
    const char *value = config_get(config, name);
    dst[0] = '\0';
    if (value == NULL)
        return 0;
    if (strlen(value) >= cap)
        return config_fail(config, name, err, "longer than %zu bytes", cap - 1);
    memcpy(dst, value, strlen(value) + 1);
    return 0;
}

static int
read_controller_ca(struct agent *a, struct ztr_err *err)
{
    if (a->controller_ca_path[0] == '\0')
        return ztr_err_set(err, ZTR_E_CONFIG,
                           "failed to read controller CA: CONTROLLER_CA is not set");
    if (file_read_all(a->controller_ca_path, STATE_FILE_MAX, &a->controller_ca_pem,
                      &a->controller_ca_len, err) != 0)
        return ztr_err_wrap(err, "failed to read controller CA");
    struct pki_bundle *bundle;
    TRY(pki_bundle_from_pem(a->controller_ca_pem, a->controller_ca_len, &bundle, err));
    pki_bundle_free(bundle);
    return 0;
}

static int
configure(struct agent *a, const struct config *config, struct ztr_err *err)
{
    if (!config_is_set(config, "TRUST_DOMAIN"))
        return ztr_err_set(err, ZTR_E_CONFIG, "TRUST_DOMAIN is required");
    TRY(copy_setting(a->trust_domain, sizeof(a->trust_domain), config, "TRUST_DOMAIN", err));
    TRY(pki_trust_domain_check(a->trust_domain, err));
    if (!config_is_set(config, "CONTROLLER_ADDR"))
        return ztr_err_set(err, ZTR_E_CONFIG, "CONTROLLER_ADDR is required");
    TRY(copy_setting(a->controller_addr, sizeof(a->controller_addr), config, "CONTROLLER_ADDR",
                     err));
    TRY(copy_setting(a->controller_ca_path, sizeof(a->controller_ca_path), config,
                     "CONTROLLER_CA", err));
    TRY(copy_setting(a->state_dir, sizeof(a->state_dir), config, "STATE_DIR", err));
    TRY(copy_setting(a->node_name, sizeof(a->node_name), config, "NODE_NAME", err));
    TRY(copy_setting(a->health_listen, sizeof(a->health_listen), config, "HEALTH_LISTEN", err));
    const char *token = config_get(config, "ENROLLMENT_TOKEN");
    if (token != NULL && (a->token = strdup(token)) == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    a->reconnect_policy.base_ms = config_get_duration_ms(config, "RECONNECT_MIN_DELAY");
    a->reconnect_policy.cap_ms = config_get_duration_ms(config, "RECONNECT_MAX_DELAY");
    a->reconnect_policy.max_attempts = (unsigned)config_get_uint(config, "RECONNECT_ATTEMPTS");
    if (a->reconnect_policy.base_ms < 1 || a->reconnect_policy.cap_ms < a->reconnect_policy.base_ms)
        return config_fail(config, "RECONNECT_MAX_DELAY", err,
                           "must be at least RECONNECT_MIN_DELAY (and both above 0)");
    enum log_level level;
    if (log_level_from_name(config_get(config, "LOG_LEVEL"), &level) != 0)
        return config_fail(config, "LOG_LEVEL", err, "use debug, info, warn or error");
    log_set_level(level);
    if (a->node_name[0] != '\0') {
        struct pki_spiffe_id probe;
        if (pki_spiffe_id_build(a->trust_domain, a->spec->role, a->node_name, &probe, err) != 0)
            return config_fail(config, "NODE_NAME", err, "not usable in a SPIFFE ID: %s",
                               err->msg);
    }
    return 0;
}

static void
agent_stop(struct agent *a, int exit_code)
{
    if (a->exit_code < 0)
        a->exit_code = exit_code;
    if (a->ctl != NULL)
        tls_conn_close(a->ctl, "agent stopping");
    ev_break(a->loop, EVBREAK_ALL);
}

static void
watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    /* The loop is alive: that is what systemd's watchdog asks. */
    sd_notify(0, "WATCHDOG=1");
}

static void
signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    struct agent *a = w->data;
    if (w->signum == SIGHUP) {
        /* A fresh signal: retry now instead of waiting out the backoff. */
        log_info("SIGHUP: retrying the controller now", "state=%s", agent_state_name(a->state));
        backoff_reset(&a->reconnect_backoff);
        a->budget_exhausted = false;
        if (a->ctl == NULL && ev_is_active(&a->reconnect_timer)) {
            ev_timer_stop(a->loop, &a->reconnect_timer);
            ev_timer_set(&a->reconnect_timer, 0, 0);
            ev_timer_start(a->loop, &a->reconnect_timer);
        }
        return;
    }
    log_info("stopping", "signal=%d", w->signum);
    agent_stop(a, AGENT_EXIT_OK);
}

static int
decide_start(struct agent *a, struct ztr_err *err)
{
    bool found = false;
    TRY(file_ensure_dir(a->state_dir, 0700, err));
    TRY(load_identity(a, &found, err));
    if (a->controller_ca_path[0] != '\0' || !found)
        TRY(read_controller_ca(a, err));
    if (!found) {
        if (a->token == NULL)
            return ztr_err_set(err, ZTR_E_CONFIG, AGENT_MSG_TOKEN_REQUIRED
                               " (no identity in %s yet)", a->state_dir);
        if (a->node_name[0] == '\0')
            return ztr_err_set(err, ZTR_E_CONFIG, "NODE_NAME is required to enroll");
        set_state(a, AGENT_ENROLLING, "no identity yet");
        return 0;
    }
    if (a->node_name[0] == '\0') {
        struct pki_spiffe_id id;
        if (pki_spiffe_id_parse(a->spiffe_id, &id, NULL) == 0)
            snprintf(a->node_name, sizeof(a->node_name), "%s", id.name);
    }
    log_info("identity loaded", "spiffe_id=%s not_after=%lld renew_at=%lld", a->spiffe_id,
             (long long)a->not_after, (long long)a->renew_at);
    set_state(a, AGENT_CONNECTING, "identity loaded");
    return 0;
}

static void
agent_free(struct agent *a)
{
    ev_timer_stop(a->loop, &a->reconnect_timer);
    ev_timer_stop(a->loop, &a->heartbeat_timer);
    ev_timer_stop(a->loop, &a->renew_timer);
    /* Let the control connection finish closing before its context goes. */
    for (int i = 0; i < 50 && a->ctl != NULL; i++)
        ev_run(a->loop, EVRUN_NOWAIT);
    if (a->spec->stop != NULL && a->daemon_started)
        a->spec->stop(a->spec->ctx);
    http_server_stop(a->health);
    tls_ctx_free(a->ctl_tls);
    tls_ctx_free(a->data_tls);
    tls_ctx_free(a->enroll_tls);
    frame_reader_free(&a->reader);
    pki_key_free(a->pending_key);
    free(a->pending_chain);
    free(a->chain_pem);
    if (a->key_pem != NULL)
        explicit_bzero(a->key_pem, a->key_len);
    free(a->key_pem);
    free(a->bundle_pem);
    free(a->controller_ca_pem);
    if (a->token != NULL)
        explicit_bzero(a->token, strlen(a->token));
    free(a->token);
}

static void
print_line(void *ctx, const char *line)
{
    fprintf(ctx, "%s\n", line);
}

int
agent_main(const struct agent_spec *spec, int argc, char **argv)
{
    size_t key_count = COMMON_KEY_COUNT + spec->extra_key_count;
    struct config_key *keys = calloc(key_count, sizeof(*keys));
    if (keys == NULL)
        return AGENT_EXIT_RUNTIME;
    memcpy(keys, common_keys, sizeof(common_keys));
    /* memcpy() from NULL is undefined even for 0 bytes: the tunneler has no
     * extra keys, and UBSan (make asan) aborted it before it could start. */
    if (spec->extra_key_count > 0)
        memcpy(keys + COMMON_KEY_COUNT, spec->extra_keys, spec->extra_key_count * sizeof(*keys));
    for (size_t i = 0; i < key_count; i++) {
        if (strcmp(keys[i].name, "STATE_DIR") == 0)
            keys[i].default_value = spec->default_state_dir;
        if (strcmp(keys[i].name, "HEALTH_LISTEN") == 0)
            keys[i].default_value = spec->default_health_listen;
    }
    struct agent a = {.spec = spec, .state = AGENT_UNENROLLED, .exit_code = -1};
    struct ztr_err err = {0};
    struct config *config = NULL;
    int exit_code = AGENT_EXIT_CONFIG;
    if (config_load(keys, key_count, environ, argc, argv, &config, &err) != 0) {
        log_error("agent failed to start", "error=\"%s\"", err.msg);
        free(keys);
        return AGENT_EXIT_CONFIG;
    }
    if (config_help_requested(config)) {
        printf("usage: %s [--config FILE] [flags]\n\nflags (each also an environment variable "
               "and a YAML key):\n",
               pki_role_name(spec->role));
        config_print_help(keys, key_count, print_line, stdout);
        config_free(config);
        free(keys);
        return 0;
    }
    a.clock = clock_system();
    a.loop = ev_default_loop(EVFLAG_AUTO);
    frame_reader_init(&a.reader);
    signal(SIGPIPE, SIG_IGN);
    int rc = pki_init(&err);
    if (rc == 0)
        rc = configure(&a, config, &err);
    if (rc == 0 && spec->configure != NULL)
        rc = spec->configure(spec->ctx, &a, config, &err);
    config_free(config);
    backoff_init(&a.reconnect_backoff, &a.reconnect_policy, 0);
    struct backoff_policy renew_policy = {1000, 60000, 0};
    backoff_init(&a.renew_backoff, &renew_policy, 0);
    ev_timer_init(&a.reconnect_timer, reconnect_cb, 0, 0);
    ev_timer_init(&a.heartbeat_timer, heartbeat_cb, 1, 1);
    ev_timer_init(&a.renew_timer, renew_cb, 0, 0);
    a.reconnect_timer.data = a.heartbeat_timer.data = a.renew_timer.data = &a;
    if (rc == 0)
        rc = decide_start(&a, &err);
    if (rc == 0 && a.health_listen[0] != '\0') {
        if (http_server_start(a.loop, a.health_listen, health_handler, &a, &a.health, &err) != 0) {
            exit_code = AGENT_EXIT_RUNTIME;
            rc = -1;
        }
    }
    if (rc != 0) {
        log_error("agent failed to start", "error=\"%s\"", err.msg);
        agent_free(&a);
        free(keys);
        pki_cleanup();
        return exit_code;
    }
    ev_signal_init(&a.sigterm, signal_cb, SIGTERM);
    ev_signal_init(&a.sigint, signal_cb, SIGINT);
    ev_signal_init(&a.sighup, signal_cb, SIGHUP);
    a.sigterm.data = a.sigint.data = a.sighup.data = &a;
    ev_signal_start(a.loop, &a.sigterm);
    ev_signal_start(a.loop, &a.sigint);
    ev_signal_start(a.loop, &a.sighup);
    log_info("agent started", "role=%s state=%s controller=%s health_listen=%s health_port=%u "
             "state_dir=%s",
             pki_role_name(spec->role), agent_state_name(a.state), a.controller_addr,
             a.health_listen, a.health ? http_server_port(a.health) : 0, a.state_dir);
    uint64_t watchdog_usec = 0;
    ev_timer_init(&a.watchdog_timer, watchdog_cb, 0, 0);
    if (sd_watchdog_enabled(0, &watchdog_usec) > 0) {
        a.watchdog_timer.repeat = (double)watchdog_usec / 2e6;
        ev_timer_again(a.loop, &a.watchdog_timer);
    }
    maybe_start_daemon(&a);
    if (a.exit_code < 0) {
        if (identity_expired(&a)) {
            a.counters.auth_expired++;
            start_reauth(&a, "certificate expired while the agent was down");
        } else {
            ctl_connect(&a);
        }
        if (a.exit_code < 0)
            ev_run(a.loop, 0);
    }
    sd_notify(0, "STOPPING=1");
    ev_timer_stop(a.loop, &a.watchdog_timer);
    ev_signal_stop(a.loop, &a.sigterm);
    ev_signal_stop(a.loop, &a.sigint);
    ev_signal_stop(a.loop, &a.sighup);
    exit_code = a.exit_code < 0 ? AGENT_EXIT_OK : a.exit_code;
    agent_free(&a);
    free(keys);
    log_info("agent stopped", "exit_status=%d", exit_code);
    log_clear_secrets();
    pki_cleanup();
    return exit_code;
}

/* Data sessions carry bulk streams: one recv() / send() for several TLS
 * records. */
#define AGENT_DATA_IO_BUFFER (64 * 1024)

struct tls_ctx *
agent_data_tls(struct agent *agent, enum tls_side side, const char *alpn, struct ztr_err *err)
{
    if (agent->data_tls != NULL)
        return agent->data_tls;
    if (!agent->have_identity) {
        ztr_err_set(err, ZTR_E_INVALID, "no identity yet");
        return NULL;
    }
    struct tls_ctx_config config = {
        .side = side, .alpn = alpn, .chain_pem = agent->chain_pem,
        .chain_len = agent->chain_len, .key_pem = agent->key_pem, .key_len = agent->key_len,
        .bundle_pem = agent->bundle_pem, .bundle_len = agent->bundle_len,
        .clock = agent->clock, .io_buffer = AGENT_DATA_IO_BUFFER};
    if (tls_ctx_new(&config, &agent->data_tls, err) != 0)
        return NULL;
    return agent->data_tls;
}
