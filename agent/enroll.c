/* Enrollment with ENROLLMENT_TOKEN, and its refusals. A re-authentication
 * (reauth.c) ends here too: its reply carries the same fields. */
#include "agent/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"


void
agent_send_enroll(struct agent *a)
{
    struct ztr_err err = {0};
    char *csr = NULL;
    /* The token fallback of a re-authentication uses the attempt's key. */
    if (a->state == AGENT_REAUTHENTICATING && a->reauth_csr != NULL) {
        csr = strdup(a->reauth_csr);
    } else if (a->state == AGENT_ENROLLING) {
        /* The key kept in STATE_DIR: every attempt, and every start, asks
         * with the same one, so a lost answer can be asked for again. */
        if (agent_enroll_csr(a, &csr, &err) != 0) {
            log_error("cannot make the enrollment request", "error=\"%s\"", err.msg);
            agent_stop(a, AGENT_EXIT_RUNTIME);
            return;
        }
    } else if (agent_new_pending_key(a, &csr, &err) != 0) {
        log_error("cannot make a key", "error=\"%s\"", err.msg);
        agent_stop(a, AGENT_EXIT_RUNTIME);
        return;
    }
    if (csr == NULL) {
        agent_stop(a, AGENT_EXIT_RUNTIME);
        return;
    }
    json_t *enroll = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "enroll", "token", a->token,
                               "role", pki_role_name(a->spec->role), "name", a->node_name,
                               "csr", csr);
    if (a->spec->add_enroll != NULL)
        a->spec->add_enroll(a->spec->ctx, enroll);
    free(csr);
    agent_ctl_send(a, enroll);
}

static int
save_enrollment(struct agent *a, const json_t *msg, struct ztr_err *err)
{
    const char *chain = json_string_value(json_object_get(msg, "chain"));
    const char *bundle = json_string_value(json_object_get(msg, "bundle"));
    int rc = agent_write_state_file(a, "bundle.pem", bundle, strlen(bundle), 0644, err);
    json_t *node = json_pack("{s:O, s:O}", "node_id", json_object_get(msg, "node_id"),
                             "spiffe_id", json_object_get(msg, "spiffe_id"));
    char *node_text = json_dumps(node, JSON_INDENT(2));
    json_decref(node);
    if (rc == 0 && node_text != NULL)
        rc = agent_write_state_file(a, "node.json", node_text, strlen(node_text), 0644, err);
    free(node_text);
    if (rc != 0)
        return -1;
    snprintf(a->node_id, sizeof(a->node_id), "%s",
             json_string_value(json_object_get(msg, "node_id")));
    agent_replace_text(&a->bundle_pem, &a->bundle_len, strdup(bundle), strlen(bundle), false);
    TRY(agent_install_pending_identity(a, chain, err));
    /* Only once key.pem and cert.pem are committed: until then a restart
     * asks again with this key. A failure here is litter, not a loss (the
     * next start removes it). */
    struct ztr_err ignored = {0};
    if (agent_enrollment_kept(a, &ignored) != 0)
        log_warn("pending enrollment key not removed", "error=\"%s\"", ignored.msg);
    return 0;
}

void
agent_start_daemon(struct agent *a)
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

void
agent_handle_enrolled(struct agent *a, const json_t *msg)
{
    struct ztr_err err = {0};
    bool reauth = a->state == AGENT_REAUTHENTICATING;
    if (save_enrollment(a, msg, &err) != 0) {
        log_error("cannot save the enrolled identity", "error=\"%s\"", err.msg);
        /* A disk that refuses the new identity fails the attempt; the
         * controller keeps the old key admitted for its renewal grace. */
        if (reauth) {
            agent_reauth_refused(a, CTLMSG_E_INTERNAL, "cannot save the new identity");
            return;
        }
        /* The enrollment key is kept (enroll-key.pem): started again once
         * the disk is fixed, the agent asks with it and gets this node. */
        log_error("enrollment not kept: start the agent again once the disk is fixed (the same "
                  "token enrolls it again, with the same key)", "state_dir=%s", a->state_dir);
        agent_stop(a, AGENT_EXIT_RUNTIME);
        return;
    }
    if (reauth)
        agent_reauth_succeeded(a);
    else
        log_info("enrolled", "node=%s spiffe_id=%s not_after=%lld", a->node_id, a->spiffe_id,
                 (long long)a->not_after);
    backoff_reset(&a->reconnect_backoff);
    agent_set_state(a, AGENT_CONNECTING, reauth ? "re-authenticated" : "enrolled");
    a->enrolled_handover = true;
    ctl_stream_close(a->ctl, "enrollment complete");
    agent_start_daemon(a);
}

void
agent_enrollment_refused(struct agent *a, const char *message)
{
    log_error(message, "role=%s name=%s controller=%s", pki_role_name(a->spec->role),
              a->node_name, a->controller_addr);
    agent_stop(a, AGENT_EXIT_ENROLLMENT_REFUSED);
}
