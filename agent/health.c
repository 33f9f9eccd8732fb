/* /health (JSON) and /metrics (Prometheus text). */
#include "agent/internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/build_info.h"
#include "base/metrics.h"


static json_t *
health_json(struct agent *a)
{
    bool connected = a->welcomed;
    /* A final state tries nothing any more: neither reconnecting nor
     * disconnected for lack of trying. */
    bool final = a->state == AGENT_REVOKED || a->reauth_terminal;
    const char *link = connected                ? "connected"
                       : final                  ? "stopped"
                       : a->budget_exhausted    ? "disconnected"
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
    /* Where re-authentication stands: the attempt's method, the refused
     * attempts in a row (the breaker), and whether EXPIRED is final. */
    static const char *const methods[] = {"none", "proof-of-possession", "token"};
    json_object_set_new(health, "reauth",
                        json_pack("{s:s, s:I, s:i, s:b, s:b, s:I, s:I}", "method",
                                  methods[a->reauth_method], "failures",
                                  (json_int_t)a->reauth_failures, "max", AGENT_REAUTH_ATTEMPTS,
                                  "terminal", a->reauth_terminal || a->state == AGENT_REVOKED,
                                  "enabled", a->reauth_on_expiry, "ok",
                                  (json_int_t)a->counters.reauth_ok, "refused",
                                  (json_int_t)a->counters.reauth_failed));
    struct build_info build;
    build_info_get(&build);
    json_object_set_new(health, "build",
                        json_pack("{s:s, s:s, s:s, s:s}", "version", build.version, "wolfssl",
                                  build.wolfssl, "wolfssl_asm", build.wolfssl_asm, "build",
                                  build.build));
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
        metrics_printf(m, "ztr_agent_state{%s,state=\"%s\"} %d\n", labels, agent_state_name((enum agent_state)s),
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
        {"ztr_agent_reauth_ok_total", "counter", "Re-authentications after an expiry.",
         offsetof(struct counters, reauth_ok)},
        {"ztr_agent_reauth_refused_total", "counter",
         "Re-authentication attempts the controller refused.",
         offsetof(struct counters, reauth_failed)},
    };
    metrics_rows(m, counters, sizeof(counters) / sizeof(counters[0]), &a->counters, labels);
    metrics_gauge(m, "ztr_svid_expiry_seconds", "Time left on the current certificate.", labels,
                  a->have_identity ? a->not_after - now : 0);
    if (a->spec->add_metrics != NULL)
        a->spec->add_metrics(a->spec->ctx, m);
    build_info_metric(m);
}

void
agent_health_handler(void *ctx, const struct http_request *request, struct http_response *response)
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
