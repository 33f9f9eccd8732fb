/* Federation on the data plane: the bundles of peer trust domains
 * (docs/FEDERATION.md, "Grants and the data plane"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/internal.h"
#include "base/log.h"

#define PEER_BUNDLES_MAX (TLS_TRUSTS_MAX - 1)

/* What the data TLS contexts check peers against: our trust domain and
 * bundle first, then each peer's (pointers into a->bundle_pem and
 * a->peer_bundles: rebuilt whenever either changes). */
void
agent_refresh_trusts(struct agent *a)
{
    size_t n = 0;
    if (a->bundle_pem != NULL)
        a->data_trusts[n++] = (struct tls_trust){a->trust_domain, a->bundle_pem, a->bundle_len};
    const char *td;
    json_t *pem;
    json_object_foreach(a->peer_bundles, td, pem) {
        if (n == TLS_TRUSTS_MAX)
            break;
        a->data_trusts[n++] =
            (struct tls_trust){td, json_string_value(pem), json_string_length(pem)};
    }
    a->data_trust_count = n;
}

int
agent_update_data_trust(struct agent *a, struct ztr_err *err)
{
    agent_refresh_trusts(a);
    if (a->data_tls == NULL || a->data_trust_count == 0)
        return 0;
    return tls_ctx_update_trust(a->data_tls, a->data_trusts, a->data_trust_count, err);
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
agent_set_peer_bundles(struct agent *a, const json_t *peers, bool *changed, struct ztr_err *err)
{
    if (changed != NULL)
        *changed = false;
    json_t *next = NULL;
    TRY(check_peers(a, peers, &next, err));
    if (a->peer_bundles != NULL && json_equal(next, a->peer_bundles)) {
        json_decref(next);
        return 0;
    }
    json_t *previous = a->peer_bundles;
    a->peer_bundles = next;
    if (agent_update_data_trust(a, err) != 0) {
        a->peer_bundles = previous;
        agent_refresh_trusts(a);
        json_decref(next);
        return -1;
    }
    json_decref(previous);
    if (changed != NULL)
        *changed = true;
    log_info("peer trust domains", "count=%zu", json_object_size(a->peer_bundles));
    return 0;
}
