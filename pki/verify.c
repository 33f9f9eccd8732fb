/* The one peer-validation function and its TLS handshake hook.
 *
 * Signatures are checked by wolfSSL's certificate manager; everything else
 * (validity at an injectable time, SAN rules, roles, key usage) is checked
 * here on our own parse, because wolfSSL 5.5.4 does not check key usage or
 * CA:TRUE on trust anchors, matches IP SANs loosely (DNS names, CN,
 * wildcards; IPv6 mishandled) and reads the wall clock directly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pki/internal.h"

#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

const char *
pki_tls_error_text(int wolfssl_error)
{
    switch (wolfssl_error) {
    case ASN_NO_SIGNER_E:
    case ASN_SELF_SIGNED_E:
    case ASN_SIG_CONFIRM_E:
    case ASN_SIG_KEY_E:
    case ASN_SIG_OID_E:
    case ASN_SIG_HASH_E:
        return PKI_MSG_UNKNOWN_AUTHORITY;
    case ASN_AFTER_DATE_E:
        return "x509: certificate has expired";
    case ASN_BEFORE_DATE_E:
        return "x509: certificate is not yet valid";
    case ASN_PATHLEN_INV_E:
    case ASN_PATHLEN_SIZE_E:
        return "x509: certificate chain too long for the issuer's path length";
    case ASN_CRIT_EXT_E:
        return "x509: unhandled critical extension";
    case EXTKEYUSAGE_E:
    case EXTKEYUSE_AUTH_E:
    case KEYUSE_SIGNATURE_E:
        return "x509: certificate specifies an incompatible key usage";
    default:
        return "x509: certificate verification failed";
    }
}

/* The certificate manager checks signatures only: dates are ours to check
 * at the time the caller asks about. Overrides nothing else. */
static int
signature_only_callback(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
    if (!preverify && (store->error == ASN_AFTER_DATE_E || store->error == ASN_BEFORE_DATE_E))
        return 1;
    return preverify;
}

/* A context whose certificate manager trusts exactly the bundle. */
static WOLFSSL_CTX *
new_trust_ctx(const struct pki_bundle *bundle, struct ztr_err *err)
{
    if (pki_init(err) != 0)
        return NULL;
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
    if (ctx == NULL) {
        ztr_err_set(err, ZTR_E_CRYPTO, "cannot create a TLS context");
        return NULL;
    }
    if (pki_tls_load_bundle(ctx, bundle, err) != 0) {
        wolfSSL_CTX_free(ctx);
        return NULL;
    }
    wolfSSL_CertManagerSetVerify(wolfSSL_CTX_GetCertManager(ctx), signature_only_callback);
    return ctx;
}

int
pki_tls_load_bundle(void *ctx_ptr, const struct pki_bundle *bundle, struct ztr_err *err)
{
    WOLFSSL_CTX *ctx = ctx_ptr;
    for (size_t i = 0; i < bundle->count; i++) {
        int rc = wolfSSL_CTX_load_verify_buffer_ex(
            ctx, bundle->certs[i].data, (long)bundle->certs[i].len, WOLFSSL_FILETYPE_ASN1, 0,
            WOLFSSL_LOAD_FLAG_DATE_ERR_OKAY);
        if (rc != WOLFSSL_SUCCESS)
            return ztr_err_set(err, PKI_E_INVALID_CA, PKI_MSG_INVALID_CA
                               ": bundle entry %zu rejected (wolfSSL error %d)", i, rc);
    }
    return 0;
}

static int
check_window(const struct pki_cert_info *info, int64_t now, const char *which,
             struct ztr_err *err)
{
    if (now < info->not_before)
        return ztr_err_set(err, PKI_E_NOT_YET_VALID,
                           "x509: %s certificate is not yet valid (notBefore %lld, now %lld)",
                           which, (long long)info->not_before, (long long)now);
    if (now > info->not_after)
        return ztr_err_set(err, PKI_E_EXPIRED,
                           "x509: %s certificate has expired (notAfter %lld, now %lld)", which,
                           (long long)info->not_after, (long long)now);
    return 0;
}

/* Verifies the signatures from the leaf up to a bundle CA. Intermediates are
 * admitted to the trust set only once they themselves verify. */
static int
check_signatures(const struct pki_bundle *bundle, const struct pki_chain *chain,
                 const struct pki_cert_info *infos, struct ztr_err *err)
{
    WOLFSSL_CTX *ctx = new_trust_ctx(bundle, err);
    if (ctx == NULL)
        return -1;
    WOLFSSL_CERT_MANAGER *cm = wolfSSL_CTX_GetCertManager(ctx);
    bool admitted[PKI_MAX_CHAIN] = {false};
    size_t pending = chain->count - 1;
    int last_error = ASN_NO_SIGNER_E;
    /* Each pass admits at least one intermediate or stops: at most
     * count-1 passes, whatever order the peer sent them in. */
    for (bool progress = true; pending > 0 && progress;) {
        progress = false;
        for (size_t i = 1; i < chain->count; i++) {
            if (admitted[i])
                continue;
            int rc = wolfSSL_CertManagerVerifyBuffer(cm, chain->certs[i].data,
                                                     (long)chain->certs[i].len,
                                                     WOLFSSL_FILETYPE_ASN1);
            if (rc != WOLFSSL_SUCCESS) {
                last_error = rc;
                continue;
            }
            if (!infos[i].is_ca || !(infos[i].key_usage & PKI_KU_KEY_CERT_SIGN)) {
                wolfSSL_CTX_free(ctx);
                return ztr_err_set(err, PKI_E_CA_KEY_USAGE, PKI_MSG_CA_KEY_USAGE
                                   " (intermediate \"%s\" needs CA:TRUE and keyCertSign)",
                                   infos[i].subject_cn);
            }
            if (pki_signing_cert_id_check(&infos[i], err) != 0) {
                wolfSSL_CTX_free(ctx);
                return -1;
            }
            rc = wolfSSL_CTX_load_verify_buffer_ex(ctx, chain->certs[i].data,
                                                   (long)chain->certs[i].len,
                                                   WOLFSSL_FILETYPE_ASN1, 0,
                                                   WOLFSSL_LOAD_FLAG_DATE_ERR_OKAY);
            if (rc != WOLFSSL_SUCCESS) {
                last_error = rc;
                continue;
            }
            admitted[i] = true;
            pending--;
            progress = true;
        }
    }
    int rc = wolfSSL_CertManagerVerifyBuffer(cm, chain->certs[0].data,
                                             (long)chain->certs[0].len, WOLFSSL_FILETYPE_ASN1);
    wolfSSL_CTX_free(ctx);
    if (rc == WOLFSSL_SUCCESS)
        return 0;
    (void)last_error;
    return ztr_err_set(err, PKI_E_UNKNOWN_AUTHORITY, "%s", pki_tls_error_text(rc));
}

/* X509-SVID §4 and §5.2: a leaf proves a workload and can sign nothing
 * else, so a key that could mint certificates or CRLs is never an SVID. */
static int
check_svid_profile(const struct pki_cert_info *leaf, const char *uri, struct ztr_err *err)
{
    if (leaf->is_ca)
        return ztr_err_set(err, PKI_E_LEAF_IS_CA,
                           "x509: peer certificate %s is a CA certificate; an SVID must not be",
                           uri);
    if (leaf->key_usage & PKI_KU_KEY_CERT_SIGN)
        return ztr_err_set(err, PKI_E_LEAF_IS_CA,
                           "x509: peer certificate %s has keyUsage keyCertSign; an SVID must not "
                           "sign certificates",
                           uri);
    if (leaf->key_usage & PKI_KU_CRL_SIGN)
        return ztr_err_set(err, PKI_E_SVID_KEY_USAGE,
                           "x509: peer certificate %s has keyUsage cRLSign; an SVID must not "
                           "sign CRLs",
                           uri);
    if (!leaf->has_key_usage || !(leaf->key_usage & PKI_KU_DIGITAL_SIGNATURE))
        return ztr_err_set(err, PKI_E_SVID_KEY_USAGE,
                           "x509: peer certificate %s lacks keyUsage digitalSignature, which an "
                           "SVID must have",
                           uri);
    if (leaf->has_eku && !(leaf->eku_server_auth && leaf->eku_client_auth))
        return ztr_err_set(err, PKI_E_SVID_KEY_USAGE,
                           "x509: peer certificate %s has an extendedKeyUsage without both "
                           "serverAuth and clientAuth",
                           uri);
    return 0;
}

static int
check_leaf_identity(const struct pki_cert_info *leaf, const struct pki_expect *expect,
                    struct pki_spiffe_id *id, struct ztr_err *err)
{
    if (leaf->uri_count != 1)
        return ztr_err_set(err, PKI_E_URI_SAN,
                           "x509: certificate must carry exactly one URI SAN (SPIFFE ID), "
                           "found %zu",
                           leaf->uri_count);
    TRY(pki_spiffe_id_parse(leaf->uri, id, err));
    if (strcmp(id->trust_domain, expect->trust_domain) != 0)
        return ztr_err_set(err, PKI_E_TRUST_DOMAIN_MISMATCH,
                           PKI_MSG_TRUST_DOMAIN_MISMATCH ": peer %s, expected trust domain %s",
                           id->uri, expect->trust_domain);
    if (id->role != expect->role &&
        (expect->also_role == PKI_ROLE_NONE || id->role != expect->also_role))
        return ztr_err_set(err, PKI_E_UNEXPECTED_ROLE,
                           PKI_MSG_UNEXPECTED_ROLE ": peer %s, expected role %s%s%s", id->uri,
                           pki_role_name(expect->role), expect->also_role ? " or " : "",
                           pki_role_name(expect->also_role));
    if (expect->spiffe_id != NULL && strcmp(id->uri, expect->spiffe_id) != 0)
        return ztr_err_set(err, PKI_E_SPIFFE_ID_MISMATCH,
                           "SPIFFE ID mismatch: peer %s, expected %s", id->uri,
                           expect->spiffe_id);
    return check_svid_profile(leaf, id->uri, err);
}

static int
check_dialed_ip(const struct pki_cert_info *leaf, const char *dial_ip, struct ztr_err *err)
{
    struct pki_ip want;
    if (pki_ip_parse(dial_ip, &want) != 0)
        return ztr_err_set(err, ZTR_E_INVALID, "dialed address \"%s\" is not an IP address",
                           dial_ip);
    /* The text operators know from Go's crypto/x509 for "no IP SANs". */
    if (leaf->ip_count == 0)
        return ztr_err_set(err, PKI_E_NO_IP_SANS, PKI_MSG_NO_IP_SANS_FMT, dial_ip);
    for (size_t i = 0; i < leaf->ip_count; i++)
        if (leaf->ips[i].len == want.len && memcmp(leaf->ips[i].bytes, want.bytes, want.len) == 0)
            return 0;
    char listed[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < leaf->ip_count && used + 48 < sizeof(listed); i++) {
        char one[48];
        used += (size_t)snprintf(listed + used, sizeof(listed) - used, "%s%s", i ? ", " : "",
                                 pki_ip_format(&leaf->ips[i], one, sizeof(one)));
    }
    return ztr_err_set(err, PKI_E_IP_SAN_MISMATCH,
                       "x509: certificate is valid for %s, not %s", listed, dial_ip);
}

int
pki_verify(const struct pki_bundle *bundle, const struct pki_chain *chain,
           const struct pki_expect *expect, struct pki_spiffe_id *peer, struct ztr_err *err)
{
    if (chain == NULL || chain->count == 0)
        return ztr_err_set(err, PKI_E_BAD_CERT, "x509: no certificate presented");
    if (expect->trust_domain == NULL || expect->role == PKI_ROLE_NONE)
        return ztr_err_set(err, ZTR_E_INVALID, "pki_verify: trust domain and role required");
    struct pki_cert_info *infos = calloc(chain->count, sizeof(*infos));
    if (infos == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    struct pki_spiffe_id id;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < chain->count; i++) {
        rc = pki_cert_info_parse(chain->certs[i].data, chain->certs[i].len, &infos[i], err);
        if (rc == 0 && infos[i].unknown_critical_extension)
            rc = ztr_err_set(err, PKI_E_BAD_CERT, "x509: unhandled critical extension");
    }
    if (rc == 0)
        rc = check_signatures(bundle, chain, infos, err);
    for (size_t i = 0; rc == 0 && i < chain->count; i++)
        rc = check_window(&infos[i], expect->now, i == 0 ? "peer" : "intermediate", err);
    if (rc == 0)
        rc = check_leaf_identity(&infos[0], expect, &id, err);
    if (rc == 0 && expect->dial_ip != NULL)
        rc = check_dialed_ip(&infos[0], expect->dial_ip, err);
    free(infos);
    if (rc == 0 && peer != NULL)
        *peer = id;
    return rc;
}

/* ---- TLS hook ------------------------------------------------------------ */

/* Without this option wolfSSL calls the hook only for certificates it has
 * already rejected: every SPIFFE rule above would be skipped for a peer
 * wolfSSL accepts. A build that cannot enforce them must not exist. */
#ifndef WOLFSSL_ALWAYS_VERIFY_CB
#error "ztr requires wolfSSL built with WOLFSSL_ALWAYS_VERIFY_CB (see docs/WOLFSSL.md)"
#endif

/* The trust domain the leaf claims picks the bundle (check->resolve); the
 * claim itself is then checked by pki_verify like any other. */
static int
resolve_bundle(struct pki_tls_check *check, const uint8_t *leaf, size_t leaf_len,
               struct pki_bundle **out)
{
    struct pki_cert_info *info = malloc(sizeof(*info));
    if (info == NULL)
        return ztr_err_set(&check->err, ZTR_E_NOMEM, "out of memory");
    struct pki_spiffe_id id;
    int rc = pki_cert_info_parse(leaf, leaf_len, info, &check->err);
    if (rc == 0 && info->uri_count != 1)
        rc = ztr_err_set(&check->err, PKI_E_URI_SAN, "x509: expected exactly one URI SAN");
    if (rc == 0)
        rc = pki_spiffe_id_parse(info->uri, &id, &check->err);
    free(info);
    if (rc != 0)
        return -1;
    snprintf(check->resolved_trust_domain, sizeof(check->resolved_trust_domain), "%s",
             id.trust_domain);
    if (check->resolve(check->resolve_ctx, id.trust_domain, out, &check->err) != 0 ||
        *out == NULL) {
        if (check->err.code == ZTR_OK)
            ztr_err_set(&check->err, PKI_E_TRUST_DOMAIN_MISMATCH, "%s", PKI_MSG_TRUST_DOMAIN_MISMATCH);
        return -1;
    }
    return 0;
}

static int
tls_verify_callback(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
    struct pki_tls_check *check = store->userCtx;
    if (check == NULL)
        return 0;
    if (!preverify) {
        /* wolfSSL rejected a certificate: keep the first reason and never
         * override it. */
        if (check->err.code == ZTR_OK)
            ztr_err_set(&check->err, PKI_E_UNKNOWN_AUTHORITY, "%s",
                        pki_tls_error_text(store->error));
        check->verified = false;
        return 0;
    }
    if (store->error_depth != 0)
        return check->err.code == ZTR_OK; /* intermediates: wait for the leaf */
    if (check->err.code != ZTR_OK)
        return 0;
    /* A client that sent no certificate to a server that allows that is
     * accepted as unauthenticated (verified stays false; the controller
     * lets such sessions only enroll). */
    if (store->totalCerts == 0 && check->peer_cert_optional)
        return 1;
    if (store->certs == NULL || store->totalCerts <= 0 || store->totalCerts > PKI_MAX_CHAIN) {
        ztr_err_set(&check->err, PKI_E_BAD_CERT, "x509: peer sent no usable chain");
        return 0;
    }
    const uint8_t *ders[PKI_MAX_CHAIN];
    size_t lens[PKI_MAX_CHAIN];
    for (int i = 0; i < store->totalCerts; i++) {
        ders[i] = store->certs[i].buffer;
        lens[i] = store->certs[i].length;
    }
    struct pki_chain *chain;
    if (pki_chain_from_der_list(ders, lens, (size_t)store->totalCerts, &chain, &check->err) != 0)
        return 0;
    struct pki_expect expect = check->expect;
    expect.now = clock_wall_s(check->clock ? check->clock : clock_system());
    struct pki_bundle *resolved = NULL;
    int rc = 0;
    if (check->resolve != NULL)
        rc = resolve_bundle(check, ders[0], lens[0], &resolved);
    if (rc == 0) {
        if (resolved != NULL)
            expect.trust_domain = check->resolved_trust_domain;
        rc = pki_verify(resolved != NULL ? resolved : check->bundle, chain, &expect,
                        &check->peer, &check->err);
    }
    pki_bundle_free(resolved);
    pki_chain_free(check->chain);
    check->chain = NULL;
    if (rc == 0)
        check->chain = chain;
    else
        pki_chain_free(chain);
    const uint8_t *spki;
    size_t spki_len;
    /* Kept so the controller can refuse a renewal that reuses this key. */
    if (rc == 0 && cert_public_key_der(ders[0], lens[0], &spki, &spki_len) == 0 &&
        spki_len <= sizeof(check->peer_public_key)) {
        memcpy(check->peer_public_key, spki, spki_len);
        check->peer_public_key_len = spki_len;
    }
    check->verified = rc == 0;
    return rc == 0;
}

void
pki_tls_check_release(struct pki_tls_check *check)
{
    pki_chain_free(check->chain);
    check->chain = NULL;
}

int
pki_tls_check_install(void *ssl_ptr, struct pki_tls_check *check, struct ztr_err *err)
{
    WOLFSSL *ssl = ssl_ptr;
    if (check->bundle == NULL || check->expect.trust_domain == NULL ||
        check->expect.role == PKI_ROLE_NONE)
        return ztr_err_set(err, ZTR_E_INVALID, "TLS check needs a bundle, trust domain, role");
    check->verified = false;
    pki_tls_check_release(check);
    ztr_err_clear(&check->err);
    memset(&check->peer, 0, sizeof(check->peer));
    int mode = WOLFSSL_VERIFY_PEER;
    if (!check->peer_cert_optional)
        mode |= WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    wolfSSL_set_verify(ssl, mode, tls_verify_callback);
    wolfSSL_SetCertCbCtx(ssl, check);
    return 0;
}

int
pki_tls_check_admit(const struct pki_tls_check *check, bool peer_sent_certificate,
                    struct ztr_err *err)
{
    if (check->verified && check->err.code == ZTR_OK)
        return 0;
    if (check->err.code != ZTR_OK)
        return ztr_err_set(err, check->err.code, "%s", check->err.msg);
    if (check->peer_cert_optional && !peer_sent_certificate)
        return 0;
    return ztr_err_set(err, PKI_E_BAD_CERT, PKI_MSG_PEER_NOT_VERIFIED);
}
