/*
 * Expiry and re-authentication.
 *
 * Expiry is a state, not a disconnect: a timer at the certificate's
 * not_after (and a check at every heartbeat, for a wall clock that jumped)
 * takes the agent out of ONLINE at that moment — the stream standing on the
 * expired certificate is closed, /health turns 503, telemetry.auth.expired
 * counts it, one line says so.
 *
 * Every transition into REAUTHENTICATING fires exactly one attempt, never
 * one per frame or per retry tick (seed 004's circuit breaker): a fresh key
 * and CSR are made once, then, on a session without a client certificate,
 * the expired certificate's key proves the node (reauth_begin → challenge →
 * reauth, docs/PROTOCOL.md) and, when the controller refuses that and a
 * token is retained, ENROLLMENT_TOKEN is the fallback. The anchor — the key
 * the controller knows the node by — is captured once: a second attempt
 * before a successful register keeps the original key, and the register
 * (welcome with the new certificate) releases it.
 *
 * An attempt the controller cannot answer (unreachable, rate-limited, its
 * own failure) keeps retrying its connection on the reconnect backoff, as
 * the same attempt. An attempt it refuses counts: the agent waits in
 * EXPIRED for the next one; after AGENT_REAUTH_ATTEMPTS refusals in a row it
 * stays EXPIRED for good — no more attempts, STATE_DIR/reauth.json keeps
 * that across restarts, the log names the command that fixes it, and a
 * stop exits 5. The count resets when a new certificate is registered.
 */
#include "agent/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/bytes.h"
#include "base/fileio.h"
#include "base/log.h"

static const char *
method_name(enum reauth_method method)
{
    return method == REAUTH_PROOF ? "proof-of-possession" : method == REAUTH_TOKEN ? "token"
                                                                                   : "none";
}

/* ---- the expiry timer ------------------------------------------------------- */

void
agent_arm_expiry(struct agent *a)
{
    ev_timer_stop(a->loop, &a->expiry_timer);
    if (!a->have_identity)
        return;
    /* Expired means now > not_after in whole seconds (pki_verify): the
     * first moment of the second after. */
    int64_t left_ms = (a->not_after + 1) * 1000 - clock_wall_ms(a->clock);
    ev_timer_set(&a->expiry_timer, left_ms > 0 ? (double)left_ms / 1000.0 : 0.0, 0.0);
    ev_timer_start(a->loop, &a->expiry_timer);
}

void
agent_expiry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct agent *a = w->data;
    if (!agent_identity_expired(a)) {
        agent_arm_expiry(a); /* the wall clock moved back: wait for it */
        return;
    }
    agent_certificate_expired(a, "certificate expired");
}

/* A connector token names the IPs tunnelers dial: without them the new
 * certificate would name none. */
static const char *
address_hint(const struct agent *a)
{
    return a->spec->role == PKI_ROLE_CONNECTOR ? " --address IP..." : "";
}

/* ---- the persisted verdict ---------------------------------------------------- */

static int
state_file_path(const struct agent *a, char *out, size_t cap, struct ztr_err *err)
{
    return file_path_join(out, cap, a->state_dir, REAUTH_STATE_FILE, err);
}

static void
token_digest(const struct agent *a, char out[65])
{
    out[0] = '\0';
    if (a->token != NULL && pki_sha256_hex(a->token, strlen(a->token), out, NULL) != 0)
        out[0] = '\0';
}

static void
forget_verdict(struct agent *a)
{
    char path[1200];
    struct ztr_err err = {0};
    if (state_file_path(a, path, sizeof(path), &err) == 0 && unlink(path) == 0)
        log_info("re-authentication verdict cleared", "state_dir=%s", a->state_dir);
}

/* EXPIRED for good. The token digest (never the token) lets a restart tell
 * a new token, which is the operator's fix, from the one that failed. */
static void
settle_expired(struct agent *a, const char *why)
{
    char digest[65];
    token_digest(a, digest);
    json_t *verdict = json_pack("{s:b, s:I, s:I, s:i, s:s, s:s}", "terminal", 1, "not_after",
                                (json_int_t)a->not_after, "at",
                                (json_int_t)clock_wall_s(a->clock), "attempts",
                                (int)a->reauth_failures, "reason", why, "token_sha256", digest);
    char *text = json_dumps(verdict, JSON_INDENT(2));
    json_decref(verdict);
    struct ztr_err err = {0};
    if (text == NULL || agent_write_state_file(a, REAUTH_STATE_FILE, text, strlen(text), 0600,
                                               &err) != 0)
        log_warn("re-authentication verdict not saved", "error=\"%s\"", err.msg);
    free(text);
    a->reauth_terminal = true;
    ev_timer_stop(a->loop, &a->reconnect_timer);
    const char *role = pki_role_name(a->spec->role);
    log_error("re-authentication failed; this node needs an operator",
              "attempts=%u max=%d not_after=%lld reason=\"%s\" hint=\"controller token create "
              "--role %s --name %s%s --replace, then set ENROLLMENT_TOKEN to it and restart the "
              "agent\"",
              a->reauth_failures, AGENT_REAUTH_ATTEMPTS, (long long)a->not_after, why, role,
              a->node_name, address_hint(a));
    agent_set_state(a, AGENT_EXPIRED, why);
}

int
agent_reauth_load(struct agent *a, bool *terminal, struct ztr_err *err)
{
    *terminal = false;
    char path[1200], *text = NULL;
    size_t len = 0;
    struct ztr_err probe = {0};
    TRY(state_file_path(a, path, sizeof(path), err));
    if (file_read_all(path, STATE_FILE_MAX, &text, &len, &probe) != 0) {
        if (probe.code == ZTR_E_NOT_FOUND)
            return 0;
        *err = probe;
        return ztr_err_wrap(err, REAUTH_STATE_FILE);
    }
    json_t *verdict = json_loadb(text, len, 0, NULL);
    free(text);
    int64_t not_after = json_integer_value(json_object_get(verdict, "not_after"));
    const char *digest = json_string_value(json_object_get(verdict, "token_sha256"));
    char mine[65];
    token_digest(a, mine);
    bool same_identity = json_is_true(json_object_get(verdict, "terminal")) &&
                         not_after == a->not_after;
    bool new_token = mine[0] != '\0' && (digest == NULL || strcmp(digest, mine) != 0);
    if (same_identity && !new_token) {
        *terminal = true;
        a->reauth_terminal = true;
        a->reauth_failures = (unsigned)json_integer_value(json_object_get(verdict, "attempts"));
        log_error("re-authentication failed before this start; this node needs an operator",
                  "not_after=%lld hint=\"controller token create --role %s --name %s%s --replace, "
                  "then set ENROLLMENT_TOKEN to it and restart the agent\"",
                  (long long)a->not_after, pki_role_name(a->spec->role), a->node_name,
                  address_hint(a));
    } else {
        /* Another identity since, or a new token: the verdict is over. */
        if (new_token && same_identity)
            log_info("a new ENROLLMENT_TOKEN: re-authentication tried again", NULL);
        forget_verdict(a);
    }
    json_decref(verdict);
    return 0;
}

/* ---- an attempt ------------------------------------------------------------------ */

void
agent_certificate_expired(struct agent *a, const char *why)
{
    if (a->state == AGENT_REVOKED || a->state == AGENT_REAUTHENTICATING ||
        a->state == AGENT_EXPIRED || a->exit_code >= 0)
        return;
    a->counters.auth_expired++;
    ev_timer_stop(a->loop, &a->renew_timer);
    ev_timer_stop(a->loop, &a->heartbeat_timer);
    log_warn("certificate expired", "not_after=%lld spiffe_id=%s reason=\"%s\" next=%s",
             (long long)a->not_after, a->spiffe_id, why,
             a->reauth_on_expiry || a->token != NULL ? "re-authenticate" : "wait for an operator");
    agent_begin_reauth(a, why);
}

/* Which proof comes first in an attempt: the key, unless switched off or
 * the node id is unknown (a node.json lost), then the token. */
static enum reauth_method
first_method(const struct agent *a)
{
    if (a->reauth_on_expiry && a->node_id[0] != '\0')
        return REAUTH_PROOF;
    return a->token != NULL ? REAUTH_TOKEN : REAUTH_NONE;
}

void
agent_begin_reauth(struct agent *a, const char *why)
{
    if (a->reauth_terminal || a->state == AGENT_REVOKED || a->exit_code >= 0)
        return;
    enum reauth_method method = first_method(a);
    if (method == REAUTH_NONE) {
        /* Nothing can prove the node: EXPIRED, without counting attempts
         * never made and without a verdict on disk (the settings decide
         * again at the next start). */
        a->reauth_terminal = true;
        ev_timer_stop(a->loop, &a->reconnect_timer);
        log_error("certificate expired and no way to re-authenticate",
                  "not_after=%lld reauth_on_expiry=%s hint=\"controller token create --role %s "
                  "--name %s%s --replace, then set ENROLLMENT_TOKEN to it and restart the agent\"",
                  (long long)a->not_after, a->reauth_on_expiry ? "true" : "false",
                  pki_role_name(a->spec->role), a->node_name, address_hint(a));
        agent_set_state(a, AGENT_REAUTHENTICATING, why);
        agent_set_state(a, AGENT_EXPIRED, "no way to re-authenticate");
        if (a->ctl != NULL)
            ctl_stream_close(a->ctl, "certificate expired");
        return;
    }
    struct ztr_err err = {0};
    /* The anchor: the key the controller knows this node by, kept until a
     * new certificate is registered, whatever happens in between. */
    if (a->reauth_anchor == NULL &&
        pki_key_from_pem(a->key_pem, a->key_len, &a->reauth_anchor, &err) != 0) {
        log_error("re-authentication: cannot read the expired key", "error=\"%s\"", err.msg);
        a->reauth_anchor = NULL;
        method = a->token != NULL ? REAUTH_TOKEN : REAUTH_NONE;
    }
    /* One fresh key per attempt: the controller refuses the expired one. */
    free(a->reauth_csr);
    a->reauth_csr = NULL;
    if (agent_new_pending_key(a, &a->reauth_csr, &err) != 0) {
        log_error("re-authentication: cannot make a key", "error=\"%s\"", err.msg);
        agent_stop(a, AGENT_EXIT_RUNTIME);
        return;
    }
    a->reauth_method = method;
    log_warn("re-authenticating", "method=%s attempt=%u max=%d reason=\"%s\"",
             method_name(method), a->reauth_failures + 1, AGENT_REAUTH_ATTEMPTS, why);
    if (method == REAUTH_TOKEN)
        log_warn("re-enrolling with the retained token", "reason=\"%s\" attempt=%u", why,
                 a->reauth_failures + 1);
    agent_set_state(a, AGENT_REAUTHENTICATING, why);
    ev_timer_stop(a->loop, &a->reconnect_timer);
    if (a->ctl != NULL) {
        /* The stream on the expired certificate ends; the attempt's own
         * connection follows as soon as it has (control.c, on_close). */
        a->reauth_connect_now = true;
        ctl_stream_close(a->ctl, "certificate expired");
        return;
    }
    agent_ctl_connect(a);
}

void
agent_reauth_on_ready(struct agent *a)
{
    if (a->reauth_method == REAUTH_TOKEN) {
        agent_send_enroll(a);
        return;
    }
    agent_ctl_send(a, json_pack("{s:s, s:s, s:s}", "type", "reauth_begin", "node_id",
                                a->node_id, "spiffe_id", a->spiffe_id));
}

void
agent_handle_reauth_challenge(struct agent *a, const json_t *msg)
{
    if (a->state != AGENT_REAUTHENTICATING || a->reauth_method != REAUTH_PROOF ||
        a->reauth_anchor == NULL || a->reauth_csr == NULL) {
        log_warn("unexpected control message", "type=reauth_challenge");
        return;
    }
    const char *challenge = json_string_value(json_object_get(msg, "challenge"));
    struct ztr_err err = {0};
    uint8_t *proof = NULL, *spki = NULL;
    size_t proof_len = 0, spki_len = 0, sig_len = 0;
    uint8_t sig[PKI_SIGNATURE_MAX];
    char key_hex[2 * PKI_PUBLIC_KEY_MAX + 1], sig_hex[2 * PKI_SIGNATURE_MAX + 1];
    int rc = ctlmsg_reauth_proof(challenge, a->node_id, a->spiffe_id, a->reauth_csr, &proof,
                                 &proof_len, &err);
    if (rc == 0)
        rc = pki_key_sign(a->reauth_anchor, proof, proof_len, sig, &sig_len, &err);
    if (rc == 0)
        rc = pki_key_public_der(a->reauth_anchor, &spki, &spki_len, &err);
    if (rc == 0 && (bytes_hex_encode(spki, spki_len, key_hex, sizeof(key_hex)) != 0 ||
                    bytes_hex_encode(sig, sig_len, sig_hex, sizeof(sig_hex)) != 0))
        rc = ztr_err_set(&err, ZTR_E_LIMIT, "public key too large");
    free(proof);
    free(spki);
    if (rc != 0) {
        /* A challenge this agent cannot answer is the controller's doing
         * (or a broken one): the stream goes, the attempt stays. */
        log_warn("re-authentication: cannot answer the challenge", "error=\"%s\"", err.msg);
        ctl_stream_close(a->ctl, err.msg);
        return;
    }
    agent_ctl_send(a, json_pack("{s:s, s:s, s:s, s:s}", "type", "reauth", "csr", a->reauth_csr,
                                "key", key_hex, "signature", sig_hex));
}

/* Not an answer about this node: the controller could not decide now. */
static bool
refusal_is_transient(const char *code)
{
    return strcmp(code, CTLMSG_E_INTERNAL) == 0 || strcmp(code, CTLMSG_E_RATE_LIMITED) == 0;
}

void
agent_reauth_refused(struct agent *a, const char *code, const char *message)
{
    if (refusal_is_transient(code)) {
        log_warn("re-authentication not answered", "code=%s message=\"%s\"", code, message);
        if (a->ctl != NULL)
            ctl_stream_close(a->ctl, message);
        return; /* the stream's close retries on the backoff */
    }
    log_warn("re-authentication attempt refused",
             "method=%s code=%s message=\"%s\" attempt=%u max=%d",
             method_name(a->reauth_method), code, message, a->reauth_failures + 1,
             AGENT_REAUTH_ATTEMPTS);
    /* The same attempt goes on with the token, on a new connection. */
    if (a->reauth_method == REAUTH_PROOF && a->token != NULL) {
        a->reauth_method = REAUTH_TOKEN;
        log_warn("re-enrolling with the retained token", "reason=\"%s\" attempt=%u", message,
                 a->reauth_failures + 1);
        if (a->ctl != NULL) {
            a->reauth_connect_now = true;
            ctl_stream_close(a->ctl, message);
        } else {
            agent_ctl_connect(a);
        }
        return;
    }
    a->counters.auth_expired++;
    a->counters.reauth_failed++;
    a->reauth_failures++;
    if (a->ctl != NULL)
        ctl_stream_close(a->ctl, message);
    if (a->reauth_failures >= AGENT_REAUTH_ATTEMPTS) {
        char why[64];
        snprintf(why, sizeof(why), "re-authentication refused %u times", a->reauth_failures);
        settle_expired(a, why);
        return;
    }
    agent_set_state(a, AGENT_EXPIRED, "re-authentication refused");
    agent_schedule_reconnect(a, "next re-authentication attempt");
}

void
agent_reauth_stream_lost(struct agent *a, const char *reason)
{
    a->counters.auth_unavailable++;
    log_warn("control-plane connection failed", "controller=%s reason=\"%s\" state=%s",
             a->controller_addr, reason, agent_state_name(a->state));
    agent_schedule_reconnect(a, reason);
}

void
agent_reauth_succeeded(struct agent *a)
{
    a->counters.reauth_ok++;
    a->reauth_registering = true;
    log_info("re-authenticated", "node=%s spiffe_id=%s method=%s not_after=%lld", a->node_id,
             a->spiffe_id, method_name(a->reauth_method), (long long)a->not_after);
    free(a->reauth_csr);
    a->reauth_csr = NULL;
}

void
agent_reauth_registered(struct agent *a)
{
    /* The register succeeded: the breaker and the anchor start afresh. */
    a->reauth_registering = false;
    a->reauth_failures = 0;
    a->reauth_method = REAUTH_NONE;
    pki_key_free(a->reauth_anchor);
    a->reauth_anchor = NULL;
    forget_verdict(a);
}

/* ---- revocation --------------------------------------------------------------------- */

void
agent_revoked(struct agent *a, const char *reason)
{
    if (a->state == AGENT_REVOKED)
        return;
    a->counters.auth_revoked++;
    log_error("node revoked by the controller",
              "reason=\"%s\" spiffe_id=%s telemetry.auth.revoked=%llu hint=\"this identity can no "
              "longer be used; enroll again with a new token and a new NODE_NAME, and an empty "
              "STATE_DIR\"",
              reason != NULL ? reason : "", a->spiffe_id,
              (unsigned long long)a->counters.auth_revoked);
    agent_set_state(a, AGENT_REVOKED, "revoked");
    /* Final, but the agent stays up: /health says REVOKED (503) with
     * telemetry.auth.revoked, and a stop exits 3. Nothing is retried. */
    ev_timer_stop(a->loop, &a->reconnect_timer);
    ev_timer_stop(a->loop, &a->renew_timer);
    ev_timer_stop(a->loop, &a->expiry_timer);
    ev_timer_stop(a->loop, &a->heartbeat_timer);
    if (a->ctl != NULL)
        ctl_stream_close(a->ctl, "node revoked");
    if (a->daemon_started && a->spec->on_revoked != NULL)
        a->spec->on_revoked(a->spec->ctx);
}
