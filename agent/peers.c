/* Federation on the data plane: the bundles of peer trust domains
 * (docs/FEDERATION.md, "Grants and the data plane"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/internal.h"
#include "base/log.h"

#define PEER_BUNDLES_MAX 64

/* Our bundle first, then each peer's: wolfSSL's anchors. Which of them a
 * given peer is checked against is agent_data_resolve's choice. */
int
agent_data_anchors(const struct agent *a, const char *own, size_t own_len, char **out,
                   size_t *out_len, struct ztr_err *err)
{
    size_t len = own_len;
    const char *td;
    json_t *pem;
    json_object_foreach(a->peer_bundles, td, pem)
        len += 1 + json_string_length(pem);
    char *text = malloc(len + 1);
    if (text == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    memcpy(text, own, own_len);
    size_t at = own_len;
    json_object_foreach(a->peer_bundles, td, pem) {
        text[at++] = '\n';
        memcpy(text + at, json_string_value(pem), json_string_length(pem));
        at += json_string_length(pem);
    }
    text[at] = '\0';
    *out = text;
    *out_len = at;
    return 0;
}

int
agent_data_resolve(void *ctx, const char *trust_domain, struct pki_bundle **bundle,
                   struct ztr_err *err)
{
    struct agent *a = ctx;
    *bundle = NULL;
    if (strcmp(trust_domain, a->trust_domain) == 0)
        return pki_bundle_from_pem(a->bundle_pem, a->bundle_len, bundle, err);
    const char *pem = json_string_value(json_object_get(a->peer_bundles, trust_domain));
    if (pem == NULL)
        return ztr_err_set(err, PKI_E_TRUST_DOMAIN_MISMATCH,
                           "%s: %s is not a federated trust domain here",
                           PKI_MSG_TRUST_DOMAIN_MISMATCH, trust_domain);
    return pki_bundle_from_pem(pem, strlen(pem), bundle, err);
}

static int
check_peers(const struct agent *a, const json_t *peers, json_t **out, struct ztr_err *err)
{
    if (peers != NULL && !json_is_array(peers))
        return ztr_err_set(err, ZTR_E_INVALID, "peers: expected a list");
    if (json_array_size(peers) > PEER_BUNDLES_MAX)
        return ztr_err_set(err, ZTR_E_INVALID, "peers: more than %d trust domains",
                           PEER_BUNDLES_MAX);
    json_t *built = json_object();
    size_t i;
    const json_t *entry;
    json_array_foreach(peers, i, entry) {
        const char *td = json_string_value(json_object_get(entry, "trust_domain"));
        const char *pem = json_string_value(json_object_get(entry, "bundle"));
        struct pki_bundle *parsed = NULL;
        int rc = td != NULL && pem != NULL
                     ? 0
                     : ztr_err_set(err, ZTR_E_INVALID, "peers[%zu]: malformed", i);
        if (rc == 0)
            rc = pki_trust_domain_check(td, err);
        if (rc == 0 && strcmp(td, a->trust_domain) == 0)
            rc = ztr_err_set(err, ZTR_E_INVALID, "peers[%zu]: %s is our own trust domain", i,
                             td);
        if (rc == 0)
            rc = pki_bundle_from_pem(pem, strlen(pem), &parsed, err);
        pki_bundle_free(parsed);
        if (rc != 0) {
            json_decref(built);
            return ztr_err_wrap(err, "peer bundle %s", td != NULL ? td : "?");
        }
        json_object_set_new(built, td, json_string(pem));
    }
    *out = built;
    return 0;
}

int
agent_set_peer_bundles(struct agent *a, const json_t *peers, struct ztr_err *err)
{
    json_t *next = NULL;
    TRY(check_peers(a, peers, &next, err));
    if (a->peer_bundles != NULL && json_equal(next, a->peer_bundles)) {
        json_decref(next);
        return 0;
    }
    json_t *previous = a->peer_bundles;
    a->peer_bundles = next;
    int rc = 0;
    if (a->data_tls != NULL && a->bundle_pem != NULL) {
        char *anchors;
        size_t len;
        rc = agent_data_anchors(a, a->bundle_pem, a->bundle_len, &anchors, &len, err);
        if (rc == 0) {
            rc = tls_ctx_update(a->data_tls, NULL, 0, NULL, 0, anchors, len, err);
            free(anchors);
        }
    }
    if (rc != 0) {
        a->peer_bundles = previous;
        json_decref(next);
        return -1;
    }
    json_decref(previous);
    log_info("peer trust domains", "count=%zu", json_object_size(a->peer_bundles));
    return 0;
}

size_t
agent_peer_bundle_count(const struct agent *a)
{
    return json_object_size(a->peer_bundles);
}
