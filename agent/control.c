/* The control stream: connect, hello/welcome, heartbeats, messages in. */
#include "agent/internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/daemon.h"
#include "base/log.h"
#include "net/net.h"
#include "net/resolver.h"


void
agent_ctl_send(struct agent *a, json_t *msg)
{
    if (a->ctl == NULL) {
        json_decref(msg);
        return;
    }
    struct ztr_err err = {0};
    if (ctl_stream_send(a->ctl, msg, &err) != 0) {
        log_warn("control message not sent", "error=\"%s\"", err.msg);
        ctl_stream_close(a->ctl, err.msg);
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



static void
send_hello(struct agent *a)
{
    json_t *hello = json_pack("{s:s, s:i, s:s}", "type", "hello", "version", CTLMSG_VERSION,
                              "role", pki_role_name(a->spec->role));
    if (a->spec->add_hello != NULL)
        a->spec->add_hello(a->spec->ctx, hello);
    agent_ctl_send(a, hello);
}

static void
send_heartbeat(struct agent *a)
{
    json_t *hb = json_pack("{s:s, s:I, s:o}", "type", "heartbeat", "seq",
                           (json_int_t)++a->heartbeat_seq, "counters", counters_json(a));
    if (hb != NULL && a->bundle_version > 0)
        json_object_set_new(hb, "bundle_version", json_integer((json_int_t)a->bundle_version));
    if (hb != NULL && a->spec->add_heartbeat != NULL)
        a->spec->add_heartbeat(a->spec->ctx, hb);
    agent_ctl_send(a, hb);
}

void
agent_heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct agent *a = w->data;
    if (a->ctl == NULL || !a->welcomed)
        return;
    /* The expiry timer runs on the monotonic clock; a wall clock that
     * jumped (a host that slept) is caught here. */
    if (agent_identity_expired(a)) {
        agent_certificate_expired(a, "certificate expired");
        return;
    }
    int64_t now = clock_monotonic_ms(a->clock);
    /* Three missed acks: the stream is dead even if TCP has not noticed. */
    if (now - a->last_ack_mono_ms > 3 * a->heartbeat_interval_ms) {
        log_warn("no heartbeat ack for 3 intervals", "controller=%s", a->controller_addr);
        ctl_stream_close(a->ctl, "no heartbeat ack for 3 intervals");
        return;
    }
    send_heartbeat(a);
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
    if (a->reauth_registering)
        agent_reauth_registered(a);
    /* Exactly once per connection (failure-modes §3.1). */
    log_info(AGENT_MSG_STREAM_CONNECTED, "controller=%s node=%s spiffe_id=%s",
             a->controller_addr, a->node_id, a->spiffe_id);
    agent_set_state(a, AGENT_ONLINE, "welcome");
    double interval = (double)a->heartbeat_interval_ms / 1000.0;
    ev_timer_stop(a->loop, &a->heartbeat_timer);
    ev_timer_set(&a->heartbeat_timer, interval, interval);
    ev_timer_start(a->loop, &a->heartbeat_timer);
    if (!a->ready_notified) {
        daemon_notify_ready(NULL);
        a->ready_notified = true;
    }
    agent_schedule_renewal(a);
}


static void
handle_error(struct agent *a, const json_t *msg)
{
    const char *code = json_string_value(json_object_get(msg, "code"));
    const char *message = json_string_value(json_object_get(msg, "message"));
    if (a->state == AGENT_REAUTHENTICATING) {
        agent_reauth_refused(a, code, message);
        return;
    }
    if (a->state == AGENT_ENROLLING &&
        (strcmp(code, CTLMSG_E_INVALID_TOKEN) == 0 || strcmp(code, CTLMSG_E_PERMISSION_DENIED) == 0)) {
        agent_enrollment_refused(a, message);
        return;
    }
    if (a->state == AGENT_RENEWING) {
        agent_renewal_failed(a, message);
        return;
    }
    log_warn("controller error", "code=%s message=\"%s\"", code, message);
}

/* Answered only once welcomed: the stream then stands for the controller
 * this agent authenticated (CONTROLLER_CA / its bundle) and for our own
 * certificate; the answer goes back on that stream and nowhere else. */
static void
handle_explain_request(struct agent *a, const json_t *msg)
{
    if (!a->welcomed || a->spec->explain == NULL) {
        log_warn("explain request not answered", "reason=\"%s\"",
                 a->welcomed ? "this agent does not explain" : "control stream not welcomed");
        return;
    }
    json_t *answer = a->spec->explain(a->spec->ctx, msg);
    if (answer == NULL)
        return;
    json_object_set_new(answer, "type", json_string("explain_answer"));
    json_object_set(answer, "id", json_object_get(msg, "id"));
    agent_ctl_send(a, answer);
}

static void
handle_message(struct agent *a, enum ctlmsg_type type, const json_t *msg)
{
    switch (type) {
    case CTLMSG_ENROLLED: agent_handle_enrolled(a, msg); break;
    case CTLMSG_WELCOME: handle_welcome(a, msg); break;
    case CTLMSG_HEARTBEAT_ACK:
        a->last_ack_mono_ms = clock_monotonic_ms(a->clock);
        a->last_heartbeat_wall = clock_wall_s(a->clock);
        break;
    case CTLMSG_BUNDLE: agent_handle_bundle(a, msg); break;
    case CTLMSG_RENEWED: agent_handle_renewed(a, msg); break;
    case CTLMSG_REVOKED:
        agent_revoked(a, json_string_value(json_object_get(msg, "reason")));
        break;
    case CTLMSG_REAUTH_CHALLENGE: agent_handle_reauth_challenge(a, msg); break;
    case CTLMSG_REAUTHENTICATED: agent_handle_enrolled(a, msg); break;
    case CTLMSG_ERROR: handle_error(a, msg); break;
    case CTLMSG_ALLOWLIST:
        if (a->spec->on_allowlist != NULL)
            a->spec->on_allowlist(a->spec->ctx, msg);
        break;
    case CTLMSG_CONNECTORS:
        if (a->spec->on_connectors != NULL)
            a->spec->on_connectors(a->spec->ctx, msg);
        break;
    case CTLMSG_DRAIN:
        if (a->spec->on_drain != NULL)
            a->spec->on_drain(a->spec->ctx, msg);
        else
            log_warn("unexpected control message", "type=%s", ctlmsg_type_name(type));
        break;
    case CTLMSG_EXPLAIN_REQUEST: handle_explain_request(a, msg); break;
    default:
        log_warn("unexpected control message", "type=%s", ctlmsg_type_name(type));
        break;
    }
}

static void
on_ready(void *user)
{
    struct agent *a = user;
    if (a->state == AGENT_ENROLLING)
        agent_send_enroll(a);
    else if (a->state == AGENT_REAUTHENTICATING)
        agent_reauth_on_ready(a);
    else
        send_hello(a);
}

/* Any stop (agent_stop) or hand-over closes the stream, so nothing more
 * reaches handle_message after it. */
static void
on_message(void *user, enum ctlmsg_type type, const json_t *msg)
{
    handle_message(user, type, msg);
}

static void
on_fault(void *user, enum ctl_stream_fault fault, const char *error)
{
    (void)user;
    if (fault == CTL_STREAM_BAD_MESSAGE)
        log_warn("bad control message", "error=\"%s\"", error);
}

bool
agent_identity_expired(const struct agent *a)
{
    return a->have_identity && clock_wall_s(a->clock) > a->not_after;
}

static void
on_close(void *user, const char *reason)
{
    struct agent *a = user;
    bool was_welcomed = a->welcomed;
    a->ctl = NULL;
    a->welcomed = false;
    ev_timer_stop(a->loop, &a->heartbeat_timer);
    if (a->exit_code >= 0 || a->state == AGENT_REVOKED || a->state == AGENT_EXPIRED)
        return;
    bool handover = a->enrolled_handover;
    a->enrolled_handover = false;
    if (a->state == AGENT_CONNECTING && a->have_identity && !was_welcomed && handover) {
        agent_ctl_connect(a); /* straight on to the mTLS stream */
        return;
    }
    if (a->state == AGENT_REAUTHENTICATING) {
        /* The stream that stood on the expired certificate is gone: the
         * attempt's own connection starts now. */
        if (a->reauth_connect_now) {
            a->reauth_connect_now = false;
            agent_ctl_connect(a);
            return;
        }
        agent_reauth_stream_lost(a, reason);
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
    if (agent_identity_expired(a)) {
        agent_certificate_expired(a, "certificate expired");
        return;
    }
    if (!was_welcomed)
        a->counters.auth_unavailable++;
    if (a->state == AGENT_ENROLLING) {
        agent_schedule_reconnect(a, reason);
        return;
    }
    agent_set_state(a, AGENT_RECONNECTING, reason);
    agent_schedule_reconnect(a, reason);
}

static const struct ctl_stream_callbacks ctl_callbacks = {on_ready, on_message, on_fault,
                                                          on_close};

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
connect_failed(struct agent *a, const char *why)
{
    a->ctl = NULL;
    if (a->state == AGENT_REAUTHENTICATING) {
        agent_reauth_stream_lost(a, why);
        return;
    }
    a->counters.auth_unavailable++;
    log_warn("control-plane connection failed", "controller=%s reason=\"%s\"",
             a->controller_addr, why);
    if (a->state != AGENT_ENROLLING)
        agent_set_state(a, AGENT_RECONNECTING, why);
    agent_schedule_reconnect(a, why);
}

/* Dials the address of the controller's name chosen now. */
static void
dial_resolved(struct agent *a)
{
    struct ztr_err err = {0};
    int fd = -1;
    struct tls_ctx *ctx = a->ctl_tls;
    const struct sockaddr_storage *sa = &a->resolved.sa[a->resolved_index];
    /* Enrollment and re-authentication present no certificate. */
    if (a->state == AGENT_ENROLLING || a->state == AGENT_REAUTHENTICATING) {
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
    if (net_connect_start_sa(sa, a->resolved.len[a->resolved_index], a->controller_addr, &fd,
                             &err) != 0 ||
        ctl_stream_new(a->loop, ctx, fd, &expect, &ctl_callbacks, a, &a->ctl, &err) != 0)
        connect_failed(a, err.msg);
}

static void
on_resolved(void *user, const struct net_addrs *addrs, const struct ztr_err *resolve_err)
{
    struct agent *a = user;
    if (addrs == NULL) {
        connect_failed(a, resolve_err->msg);
        return;
    }
    a->resolved = *addrs;
    a->resolved_index = 0;
    if (!net_addr_is_numeric(a->controller_addr)) {
        char address[INET6_ADDRSTRLEN + 8];
        log_info("controller resolved", "controller=%s address=%s addresses=%zu",
                 a->controller_addr, net_sockaddr_name(&addrs->sa[0], address, sizeof(address)),
                 addrs->count);
    }
    dial_resolved(a);
}

/* Dials the next address of the current controller's name, or looks the
 * name up again (off the loop) once every address was tried. */
void
agent_ctl_connect(struct agent *a)
{
    if (a->ctl != NULL || net_resolver_busy(a->resolver))
        return;
    if (a->resolved_index < a->resolved.count) {
        dial_resolved(a); /* the next address of the last lookup */
        return;
    }
    struct ztr_err err = {0};
    if (net_resolver_start(a->resolver, a->controller_addr, on_resolved, a, &err) != 0)
        connect_failed(a, err.msg);
}
