/* Re-authentication after an expiry, by proof of possession.
 *
 * An agent whose certificate expired cannot open an mTLS session (the
 * handshake refuses the certificate), and a retained enrollment token is
 * usually spent. It still holds the key of the certificate the controller
 * issued it last, and that key is what the controller recorded for the
 * node (nodes.cert_key). On a session without a client certificate it
 * names the node (reauth_begin), receives a challenge bound to that
 * session (reauth_challenge), and answers with a fresh CSR and its old
 * key's signature over the challenge, the node and the CSR (reauth). The
 * controller issues a new certificate for the same node id when, in this
 * order:
 *
 *   the session has an unused challenge (single use: taken now, whatever
 *   the outcome) → the signature verifies with the presented key → the CSR
 *   is good and carries another key → the node exists and the SPIFFE ID is
 *   its → the key is the node's current certificate key, or the previous
 *   one within its renewal grace (else a security event) → the node is not
 *   revoked (only now is that said: to the key's holder) → the certificate
 *   expired less than REAUTH_GRACE ago → the renewal rate limit.
 *
 * A refusal names no more than the agent needs: unknown node, a superseded
 * key and a bad signature are all `permission denied`; the controller's log
 * and events carry the detail. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "base/bytes.h"
#include "base/log.h"
#include "ctl/ctlmsg.h"
#include "controller/controller.h"

/* Same bound as renewals: a node needs about two certificates per SVID_TTL. */
#define REAUTH_CERTS_PER_QUARTER_TTL 3

int
reauth_new_challenge(char out[2 * CTLMSG_REAUTH_CHALLENGE_BYTES + 1], struct ztr_err *err)
{
    uint8_t bytes[CTLMSG_REAUTH_CHALLENGE_BYTES];
    if (getrandom(bytes, sizeof(bytes), 0) != (ssize_t)sizeof(bytes))
        return ztr_err_set(err, ZTR_E_IO, "getrandom failed");
    bytes_hex_encode(bytes, sizeof(bytes), out, 2 * CTLMSG_REAUTH_CHALLENGE_BYTES + 1);
    return 0;
}

struct reauth_ctx {
    struct controller *c;
    const char *peer;
    const char *node_id;
    const char *spiffe_id;
};

/* A refusal: counted, logged and recorded within the same bounds as denied
 * enrollments (an unauthenticated client chooses how often). kind is the
 * event kind: "denied", or "security" for a key that is not the node's. */
static json_t *
refuse(struct reauth_ctx *r, const char *kind, const char *code, const char *message,
       const char *why)
{
    struct controller *c = r->c;
    c->counters.reauth_denied++;
    if (c->denied_lines.period_ms == 0) {
        c->denied_lines = (struct log_limit)LOG_LIMIT_INIT(20, 1000);
        c->denied_events = (struct log_limit)LOG_LIMIT_INIT(30, 60000);
    }
    int64_t now_ms = clock_monotonic_ms(c->clock);
    uint64_t dropped = 0;
    bool security = strcmp(kind, "security") == 0;
    /* A superseded key at work is always worth its line and its event. */
    if (security || log_limit_allow(&c->denied_lines, now_ms, &dropped))
        log_warn("re-authentication refused",
                 "reason=\"%s\" detail=\"%s\" node=%.32s spiffe_id=%.256s peer=%s", message, why,
                 r->node_id, r->spiffe_id, r->peer);
    if (security || log_limit_allow(&c->denied_events, now_ms, &dropped)) {
        char detail[STORE_DETAIL_MAX];
        snprintf(detail, sizeof(detail), "re-authentication refused: %s (%s) peer=%s", message,
                 why, r->peer);
        struct store_node node;
        bool known = store_node_get(c->store, r->node_id, &node, NULL) == 0;
        store_event_add(c->store, kind, known ? r->node_id : "", detail, NULL);
    }
    return ctlmsg_error(code, message);
}

/* The new certificate for node's SPIFFE ID and the CSR's key; *chain and
 * *info filled. */
static int
issue_for(struct controller *c, const struct store_node *node, const uint8_t *public_der,
          size_t public_len, char **chain, size_t *chain_len, struct pki_cert_info *info,
          struct ztr_err *err)
{
    struct pki_spiffe_id id;
    struct pki_ip ips[PKI_MAX_IP_SANS];
    size_t ip_count = strcmp(node->role, "connector") == 0
                          ? ctl_server_node_ips(node, ips, PKI_MAX_IP_SANS)
                          : 0;
    TRY(pki_spiffe_id_parse(node->spiffe_id, &id, err));
    TRY(ca_set_issue(c->cas, &id, public_der, public_len, ips, ip_count, c->settings.svid_ttl_s,
                     chain, chain_len, err));
    struct pki_chain *parsed;
    int rc = pki_chain_from_pem(*chain, *chain_len, &parsed, err);
    if (rc == 0) {
        size_t der_len;
        const uint8_t *der = pki_chain_der(parsed, 0, &der_len);
        rc = pki_cert_info_parse(der, der_len, info, err);
        pki_chain_free(parsed);
    }
    if (rc != 0) {
        free(*chain);
        *chain = NULL;
    }
    return rc;
}

/* Everything after the proof verified: the node, its key, the grace, the
 * rate limit, then issuing. */
static json_t *
reauth_node(struct reauth_ctx *r, const uint8_t *anchor, size_t anchor_len,
            const struct pki_csr *csr)
{
    struct controller *c = r->c;
    struct ztr_err err = {0};
    struct store_node node;
    if (store_node_get(c->store, r->node_id, &node, &err) != 0 ||
        strcmp(node.spiffe_id, r->spiffe_id) != 0)
        return refuse(r, "denied", CTLMSG_E_PERMISSION_DENIED, CTLMSG_TEXT_PERMISSION_DENIED,
                      CTLMSG_TEXT_REAUTH_UNKNOWN_NODE);
    char anchor_fp[PKI_KEY_FINGERPRINT_MAX + 1];
    struct store_cert_check check;
    if (pki_public_key_fingerprint(anchor, anchor_len, anchor_fp, &err) != 0 ||
        store_node_cert_state(c->store, node.id, anchor_fp, &check, &err) != 0)
        return refuse(r, "denied", CTLMSG_E_PERMISSION_DENIED, CTLMSG_TEXT_PERMISSION_DENIED,
                      err.msg);
    if (check.state == STORE_CERT_SUPERSEDED) {
        char why[256];
        snprintf(why, sizeof(why),
                 "the key is not the node's current certificate key: serial=%s current_serial=%s",
                 check.serial[0] != '\0' ? check.serial : "unknown", node.cert_serial);
        return refuse(r, "security", CTLMSG_E_PERMISSION_DENIED, CTLMSG_TEXT_PERMISSION_DENIED,
                      why);
    }
    if (node.revoked) {
        json_decref(refuse(r, "denied", CTLMSG_E_PERMISSION_DENIED, "node revoked",
                           "node revoked"));
        return json_pack("{s:s, s:s}", "type", "revoked", "reason", "node revoked");
    }
    int64_t now = clock_wall_s(c->clock);
    /* The grace counts from the expiry of the certificate the key belongs
     * to; a previous certificate within its renewal grace was superseded
     * minutes ago by one that is valid. */
    if (check.state == STORE_CERT_CURRENT &&
        node.cert_not_after + c->settings.reauth_grace_s < now) {
        char why[160];
        snprintf(why, sizeof(why), "certificate expired at %lld, REAUTH_GRACE %llds",
                 (long long)node.cert_not_after, (long long)c->settings.reauth_grace_s);
        return refuse(r, "denied", CTLMSG_E_NOT_ALLOWED, CTLMSG_TEXT_REAUTH_GRACE_OVER, why);
    }
    int64_t issued = 0, window_s = c->settings.svid_ttl_s / 4;
    if (store_node_certificates_since(c->store, node.id, now - window_s, &issued, &err) == 0 &&
        issued >= REAUTH_CERTS_PER_QUARTER_TTL)
        return refuse(r, "denied", CTLMSG_E_NOT_ALLOWED, "renewal rate limited, try later",
                      "rate limited");
    size_t new_len;
    const uint8_t *new_key = pki_csr_public_der(csr, &new_len);
    char new_fp[PKI_KEY_FINGERPRINT_MAX + 1];
    char *chain = NULL, *bundle = NULL;
    size_t chain_len, bundle_len;
    struct pki_cert_info info = {0};
    if (pki_public_key_fingerprint(new_key, new_len, new_fp, &err) != 0)
        return refuse(r, "denied", CTLMSG_E_BAD_REQUEST, "invalid certificate request", err.msg);
    if (issue_for(c, &node, new_key, new_len, &chain, &chain_len, &info, &err) != 0 ||
        ca_set_bundle_pem(c->cas, &bundle, &bundle_len, &err) != 0) {
        log_error("cannot issue certificate", "node=%s error=\"%s\"", node.id, err.msg);
        free(chain);
        return ctlmsg_error(CTLMSG_E_INTERNAL, "cannot issue certificate");
    }
    /* Atomically: the key must still be current (or previous in grace); it
     * becomes the previous one for the renewal grace, so an agent whose
     * answer was lost can prove it again. */
    if (store_node_renew(c->store, node.id, anchor_fp, info.serial_hex, new_fp, info.not_after,
                         STORE_RENEWAL_GRACE_S, &err) != 0) {
        free(chain);
        free(bundle);
        if (err.code == STORE_E_SUPERSEDED || err.code == ZTR_E_INVALID)
            return refuse(r, "security", CTLMSG_E_PERMISSION_DENIED,
                          CTLMSG_TEXT_PERMISSION_DENIED, err.msg);
        log_error("re-authentication failed", "node=%s error=\"%s\"", node.id, err.msg);
        return ctlmsg_error(CTLMSG_E_INTERNAL, "cannot record the node");
    }
    c->counters.reauths++;
    char detail[STORE_DETAIL_MAX];
    snprintf(detail, sizeof(detail),
             "re-authenticated by proof of possession: serial %s superseded by %s not_after %lld "
             "peer=%s",
             check.serial, info.serial_hex, (long long)info.not_after, r->peer);
    store_event_add(c->store, "reauthenticated", node.id, detail, NULL);
    log_info("node re-authenticated", "node=%s spiffe_id=%s peer=%s serial=%s not_after=%lld",
             node.id, node.spiffe_id, r->peer, info.serial_hex, (long long)info.not_after);
    json_t *reply = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "reauthenticated", "node_id",
                              node.id, "spiffe_id", node.spiffe_id, "chain", chain, "bundle",
                              bundle);
    free(chain);
    free(bundle);
    return reply;
}

json_t *
reauth_handle(struct controller *c, const char *challenge, const char *node_id,
              const char *spiffe_id, const json_t *msg, const char *peer_addr)
{
    struct reauth_ctx r = {c, peer_addr, node_id, spiffe_id};
    const char *csr_text = json_string_value(json_object_get(msg, "csr"));
    const char *key_hex = json_string_value(json_object_get(msg, "key"));
    const char *sig_hex = json_string_value(json_object_get(msg, "signature"));
    if (challenge == NULL || challenge[0] == '\0')
        return refuse(&r, "denied", CTLMSG_E_BAD_REQUEST, CTLMSG_TEXT_REAUTH_NO_CHALLENGE,
                      "reauth without reauth_challenge, or a second one");
    uint8_t anchor[PKI_PUBLIC_KEY_MAX], sig[PKI_SIGNATURE_MAX];
    size_t anchor_len = 0, sig_len = 0;
    if (bytes_hex_decode(key_hex, anchor, sizeof(anchor), &anchor_len) != 0 ||
        bytes_hex_decode(sig_hex, sig, sizeof(sig), &sig_len) != 0)
        return refuse(&r, "denied", CTLMSG_E_BAD_REQUEST, "invalid proof of possession",
                      "key or signature is not hex of the right size");
    struct ztr_err err = {0};
    uint8_t *proof = NULL;
    size_t proof_len = 0;
    if (ctlmsg_reauth_proof(challenge, node_id, spiffe_id, csr_text, &proof, &proof_len, &err) !=
        0)
        return ctlmsg_error(CTLMSG_E_INTERNAL, "cannot check the proof");
    int rc = pki_signature_verify(anchor, anchor_len, proof, proof_len, sig, sig_len, &err);
    free(proof);
    if (rc != 0)
        return refuse(&r, "denied", CTLMSG_E_PERMISSION_DENIED, CTLMSG_TEXT_PERMISSION_DENIED,
                      CTLMSG_TEXT_REAUTH_BAD_PROOF);
    struct pki_csr *csr;
    if (pki_csr_parse((const uint8_t *)csr_text, strlen(csr_text), &csr, &err) != 0)
        return refuse(&r, "denied", CTLMSG_E_BAD_REQUEST, "invalid certificate request", err.msg);
    size_t new_len;
    const uint8_t *new_key = pki_csr_public_der(csr, &new_len);
    /* A fresh key, compared as a key: the expired one must not live on. */
    if (pki_public_key_equal(anchor, anchor_len, new_key, new_len, &err) != 0) {
        pki_csr_free(csr);
        return refuse(&r, "denied", CTLMSG_E_KEY_REUSED,
                      "re-authentication must use a fresh key, not the expired one",
                      "reused the expired key");
    }
    json_t *reply = reauth_node(&r, anchor, anchor_len, csr);
    pki_csr_free(csr);
    return reply;
}
