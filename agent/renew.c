/* Renewal over the live control stream, and trust bundle updates. */
#include "agent/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"


void
agent_renew_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct agent *a = w->data;
    if (a->state != AGENT_ONLINE || a->ctl == NULL || agent_identity_expired(a))
        return; /* the next welcome reschedules; an expiry re-authenticates */
    struct ztr_err err = {0};
    char *csr = NULL;
    /* A fresh key every time: the controller refuses the current one. */
    if (agent_new_pending_key(a, &csr, &err) != 0) {
        log_error("renewal: cannot make a key", "error=\"%s\"", err.msg);
        return;
    }
    agent_set_state(a, AGENT_RENEWING, "renewal due");
    log_info("renewing certificate", "not_after=%lld renew_at=%lld", (long long)a->not_after,
             (long long)a->renew_at);
    /* The serial of the certificate in use: after a renewal this agent
     * could not keep (a full disk), the controller keeps that one admitted
     * rather than the renewal it never used. */
    agent_ctl_send(a, json_pack("{s:s, s:s, s:s}", "type", "renew", "csr", csr, "serial",
                                a->cert_serial));
    free(csr);
}

void
agent_schedule_renewal(struct agent *a)
{
    ev_timer_stop(a->loop, &a->renew_timer);
    if (!a->have_identity)
        return;
    double delay = (double)(a->renew_at - clock_wall_s(a->clock));
    ev_timer_set(&a->renew_timer, delay > 0 ? delay : 0, 0);
    ev_timer_start(a->loop, &a->renew_timer);
}

void
agent_renewal_failed(struct agent *a, const char *why)
{
    a->counters.renewals_failed++;
    int64_t delay_ms = 60000;
    backoff_next(&a->renew_backoff, &delay_ms);
    log_warn("renewal failed", "reason=\"%s\" retry_in_ms=%lld not_after=%lld", why,
             (long long)delay_ms, (long long)a->not_after);
    if (a->state == AGENT_RENEWING)
        agent_set_state(a, AGENT_ONLINE, "renewal failed");
    ev_timer_stop(a->loop, &a->renew_timer);
    ev_timer_set(&a->renew_timer, (double)delay_ms / 1000.0, 0);
    ev_timer_start(a->loop, &a->renew_timer);
}

/* Checks a renewed chain against our bundle; installs it when it verifies.
 * *verified says which step failed: the chain, or writing it down. */
static int
try_install_chain(struct agent *a, const char *chain, bool *verified, struct ztr_err *err)
{
    *verified = false;
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
    *verified = true;
    /* New handshakes use it; the control stream and every established
     * session stay as they are. */
    return agent_install_pending_identity(a, chain, err);
}

void
agent_handle_renewed(struct agent *a, const json_t *msg)
{
    const char *chain = json_string_value(json_object_get(msg, "chain"));
    struct ztr_err err = {0};
    bool verified;
    int rc = try_install_chain(a, chain, &verified, &err);
    if (rc != 0 && verified) {
        /* A disk that refuses the new pair is no CA mismatch. */
        agent_renewal_failed(a, err.msg);
        return;
    }
    if (rc != 0) {
        log_warn(CTLMSG_TEXT_CA_MISMATCH, "detail=\"%s\" action=bundle_request", err.msg);
        free(a->pending_chain);
        a->pending_chain = strdup(chain);
        agent_ctl_send(a, json_pack("{s:s}", "type", "bundle_request"));
        return;
    }
    a->counters.renewals_ok++;
    backoff_reset(&a->renew_backoff);
    log_info("certificate renewed", "not_after=%lld renew_at=%lld", (long long)a->not_after,
             (long long)a->renew_at);
    agent_set_state(a, AGENT_ONLINE, "renewed");
    agent_schedule_renewal(a);
}

void
agent_handle_bundle(struct agent *a, const json_t *msg)
{
    const char *bundle = json_string_value(json_object_get(msg, "bundle"));
    struct pki_bundle *parsed;
    struct ztr_err err = {0};
    if (pki_bundle_from_pem(bundle, strlen(bundle), &parsed, &err) != 0) {
        log_warn("bundle rejected", "error=\"%s\"", err.msg);
        return;
    }
    if (a->bundle_pem == NULL || strcmp(bundle, a->bundle_pem) != 0) {
        if (agent_write_state_file(a, "bundle.pem", bundle, strlen(bundle), 0644, &err) != 0 ||
            tls_ctx_update(a->ctl_tls, NULL, 0, NULL, 0, bundle, strlen(bundle), &err) != 0) {
            log_warn("bundle not saved", "error=\"%s\"", err.msg);
            /* A renewal waiting for this bundle must not wait forever: it
             * used to stay RENEWING with nothing scheduled (agent_renew_cb only
             * runs while ONLINE) until the stream dropped. Count it failed
             * and retry with backoff; the next attempt asks again. */
            if (a->pending_chain != NULL) {
                free(a->pending_chain);
                a->pending_chain = NULL;
                agent_renewal_failed(a, err.msg);
            }
            pki_bundle_free(parsed);
            return;
        }
        agent_replace_text(&a->bundle_pem, &a->bundle_len, strdup(bundle), strlen(bundle), false);
        if (agent_update_data_trust(a, &err) != 0)
            log_warn("data plane trust not updated", "error=\"%s\"", err.msg);
        log_info("trust bundle updated", "version=%lld",
                 (long long)json_integer_value(json_object_get(msg, "version")));
        if (a->spec->on_bundle != NULL)
            a->spec->on_bundle(a->spec->ctx);
        /* The controller on the other end proved itself against the old
         * bundle; it must still chain to the new one. Only while its
         * certificate is within its validity: the agent does not time its
         * stream by the controller's certificate (the controller renews its
         * own, and every agent reconnecting at once would be worse), so an
         * expired one here is not a trust change. */
        if (a->ctl != NULL &&
            ctl_stream_peer_not_after(a->ctl) >= clock_wall_s(a->clock) &&
            ctl_stream_peer_recheck(a->ctl, parsed, &err) != 0)
            log_warn("control stream closed: the controller no longer verifies",
                     "error=\"%s\"", err.msg);
    }
    /* Installed (or already held): heartbeats report it, so the operator
     * sees a CA rotation reach every node. */
    const json_t *version = json_object_get(msg, "version");
    if (json_is_integer(version))
        a->bundle_version = json_integer_value(version);
    pki_bundle_free(parsed);
    if (a->pending_chain != NULL) {
        char *chain = a->pending_chain;
        a->pending_chain = NULL;
        bool verified;
        if (try_install_chain(a, chain, &verified, &err) == 0) {
            a->counters.renewals_ok++;
            log_info("certificate renewed after a bundle update", "not_after=%lld",
                     (long long)a->not_after);
            agent_set_state(a, AGENT_ONLINE, "renewed");
            agent_schedule_renewal(a);
        } else {
            agent_renewal_failed(a, err.msg);
        }
        free(chain);
    }
}
