/* Issuing certificates from a CA. wolfSSL 5.5.4 has no call that adds URI or
 * IP SANs and only sets validity in whole days backdated by one, so we
 * encode the SAN extension and both validity times ourselves and hand them
 * to its Cert struct (altNames / beforeDate / afterDate). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pki/der.h"
#include "pki/internal.h"

#define CERT_DER_MAX 8192
#define CA_LIFETIME_SKEW_S 60

struct pki_ca {
    struct der_blob cert;
    struct pki_key *key;
    struct pki_cert_info info;
};

static int
issue_fail(struct ztr_err *err, const char *what, int code)
{
    return ztr_err_set(err, ZTR_E_CRYPTO, "cannot issue certificate: %s (wolfSSL error %d)",
                       what, code);
}

static size_t
header_len(size_t len)
{
    return len < 0x80 ? 2 : len <= 0xff ? 3 : 4;
}

/* GeneralNames: one URI (or none), then the DNS names, then the IPs. */
static int
encode_san_names(const char *uri, const char *const *dns_names, size_t dns_count,
                 const struct pki_ip *ips, size_t ip_count, Cert *cert, struct ztr_err *err)
{
    size_t uri_len = uri ? strlen(uri) : 0;
    size_t content = 0;
    if (uri_len > 0)
        content += header_len(uri_len) + uri_len;
    for (size_t i = 0; i < dns_count; i++)
        content += header_len(strlen(dns_names[i])) + strlen(dns_names[i]);
    for (size_t i = 0; i < ip_count; i++)
        content += 2 + ips[i].len;
    struct der_writer writer = {cert->altNames, sizeof(cert->altNames), 0, 0};
    der_put_header(&writer, DER_SEQUENCE, content);
    if (uri_len > 0) {
        der_put_header(&writer, DER_SAN_URI, uri_len);
        der_put_bytes(&writer, uri, uri_len);
    }
    for (size_t i = 0; i < dns_count; i++) {
        der_put_header(&writer, DER_SAN_DNS, strlen(dns_names[i]));
        der_put_bytes(&writer, dns_names[i], strlen(dns_names[i]));
    }
    for (size_t i = 0; i < ip_count; i++) {
        if (ips[i].len != 4 && ips[i].len != 16)
            return ztr_err_set(err, ZTR_E_INVALID, "IP SAN of length %u", ips[i].len);
        der_put_header(&writer, DER_SAN_IP, ips[i].len);
        der_put_bytes(&writer, ips[i].bytes, ips[i].len);
    }
    if (writer.overflow)
        return ztr_err_set(err, ZTR_E_LIMIT, "subjectAltName larger than %zu bytes",
                           sizeof(cert->altNames));
    cert->altNamesSz = (int)writer.len;
    return 0;
}

/* What a certificate's DNS and IP SANs must be, whichever the kind. */
static int
check_sans(const char *const *dns_names, size_t dns_count, size_t ip_count, struct ztr_err *err)
{
    if (dns_count > PKI_MAX_DNS_SANS || ip_count > PKI_MAX_IP_SANS)
        return ztr_err_set(err, ZTR_E_LIMIT, "more than %d DNS names or %d IPs",
                           PKI_MAX_DNS_SANS, PKI_MAX_IP_SANS);
    for (size_t i = 0; i < dns_count; i++)
        if (strlen(dns_names[i]) == 0 || strlen(dns_names[i]) > 253)
            return ztr_err_set(err, ZTR_E_INVALID, "DNS name of length %zu",
                               strlen(dns_names[i]));
    return 0;
}

static int
set_validity(Cert *cert, int64_t not_before, int64_t not_after, struct ztr_err *err)
{
    if (not_after <= not_before)
        return ztr_err_set(err, ZTR_E_INVALID, "notAfter must be later than notBefore");
    int before = der_encode_time(not_before, cert->beforeDate, sizeof(cert->beforeDate));
    int after = der_encode_time(not_after, cert->afterDate, sizeof(cert->afterDate));
    if (before < 0 || after < 0)
        return ztr_err_set(err, ZTR_E_INVALID, "validity time out of range");
    cert->beforeDateSz = before;
    cert->afterDateSz = after;
    return 0;
}

static int
random_serial(Cert *cert, WC_RNG *rng, struct ztr_err *err)
{
    /* 128 random bits, positive, no leading zero byte (RFC 5280 4.1.2.2). */
    if (wc_RNG_GenerateBlock(rng, cert->serial, 16) != 0)
        return ztr_err_set(err, ZTR_E_CRYPTO, "cannot draw a serial number");
    cert->serial[0] = (uint8_t)((cert->serial[0] & 0x7f) | 0x01);
    cert->serialSz = 16;
    return 0;
}

static void
set_name(CertName *name, const char *common_name)
{
    /* CN is informational (identity is the URI SAN): truncate, never fail. */
    size_t len = strnlen(common_name, sizeof(name->commonName) - 1);
    memcpy(name->commonName, common_name, len);
    name->commonName[len] = '\0';
    name->commonNameEnc = CTC_UTF8;
    snprintf(name->org, sizeof(name->org), "ztr");
    name->orgEnc = CTC_UTF8;
}

struct build {
    Cert *cert;
    ecc_key *subject_key;    /* public key certified */
    ecc_key *signer_key;     /* CA key (== subject_key when self-signed) */
    const uint8_t *issuer_der;  /* NULL when self-signed */
    size_t issuer_len;
};

/* Fills extensions common to every certificate, makes and signs it. */
static int
build_and_sign(struct build *b, struct der_blob *out, struct ztr_err *err)
{
    WC_RNG *rng = pki_rng(err);
    if (rng == NULL)
        return -1;
    Cert *cert = b->cert;
    cert->version = 2;
    cert->sigType = CTC_SHA256wECDSA;
    TRY(random_serial(cert, rng, err));
    int rc = wc_SetSubjectKeyIdFromPublicKey_ex(cert, ECC_TYPE, b->subject_key);
    if (rc != 0)
        return issue_fail(err, "subject key identifier", rc);
    rc = wc_SetAuthKeyIdFromPublicKey_ex(cert, ECC_TYPE, b->signer_key);
    if (rc != 0)
        return issue_fail(err, "authority key identifier", rc);
    if (b->issuer_der != NULL) {
        cert->selfSigned = 0;
        rc = wc_SetIssuerRaw(cert, b->issuer_der, (int)b->issuer_len);
        if (rc != 0)
            return issue_fail(err, "issuer name", rc);
    }
    uint8_t *der = malloc(CERT_DER_MAX);
    if (der == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int n = wc_MakeCert_ex(cert, der, CERT_DER_MAX, ECC_TYPE, b->subject_key, rng);
    if (n > 0)
        n = wc_SignCert_ex(cert->bodySz, cert->sigType, der, CERT_DER_MAX, ECC_TYPE,
                           b->signer_key, rng);
    if (n <= 0) {
        free(der);
        return issue_fail(err, "signing", n);
    }
    out->data = der;
    out->len = (size_t)n;
    return 0;
}

static Cert *
new_cert(struct ztr_err *err)
{
    Cert *cert = calloc(1, sizeof(*cert));
    if (cert == NULL) {
        ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        return NULL;
    }
    if (wc_InitCert(cert) != 0) {
        free(cert);
        ztr_err_set(err, ZTR_E_CRYPTO, "wc_InitCert failed");
        return NULL;
    }
    return cert;
}

static int
ca_fill_info(struct pki_ca *ca, struct ztr_err *err)
{
    return pki_cert_info_parse(ca->cert.data, ca->cert.len, &ca->info, err);
}

/* A self-signed CA; uri (its trust domain's SPIFFE ID) may be NULL. */
static int
create_ca(const char *common_name, const char *uri, int64_t now, int64_t lifetime_s,
          struct pki_ca **out, struct ztr_err *err)
{
    struct pki_ca *ca = calloc(1, sizeof(*ca));
    Cert *cert = new_cert(err);
    int rc = -1;
    if (ca == NULL || cert == NULL) {
        if (ca == NULL)
            ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        goto out;
    }
    if (pki_key_generate(&ca->key, err) != 0)
        goto out;
    set_name(&cert->subject, common_name);
    cert->isCA = 1;
    if (set_validity(cert, now - CA_LIFETIME_SKEW_S, now + lifetime_s, err) != 0 ||
        (uri != NULL && encode_san_names(uri, NULL, 0, NULL, 0, cert, err) != 0))
        goto out;
    int kr = wc_SetKeyUsage(cert, "keyCertSign,cRLSign");
    if (kr != 0) {
        issue_fail(err, "key usage", kr);
        goto out;
    }
    struct build b = {cert, &ca->key->ecc, &ca->key->ecc, NULL, 0};
    if (build_and_sign(&b, &ca->cert, err) != 0 || ca_fill_info(ca, err) != 0)
        goto out;
    rc = 0;
out:
    free(cert);
    if (rc == 0)
        *out = ca;
    else
        pki_ca_free(ca);
    return rc;
}

int
pki_ca_create(const char *trust_domain, int64_t now, int64_t lifetime_s, struct pki_ca **out,
              struct ztr_err *err)
{
    struct pki_spiffe_id td_id;
    TRY(pki_trust_domain_check(trust_domain, err));
    char uri[PKI_TRUST_DOMAIN_MAX + 16];
    snprintf(uri, sizeof(uri), "spiffe://%s", trust_domain);
    TRY(pki_spiffe_id_parse(uri, &td_id, err));
    char common_name[CTC_NAME_SIZE];
    snprintf(common_name, sizeof(common_name), "ztr CA %.40s", trust_domain);
    return create_ca(common_name, uri, now, lifetime_s, out, err);
}

int
pki_ca_create_named(const char *common_name, int64_t now, int64_t lifetime_s,
                    struct pki_ca **out, struct ztr_err *err)
{
    if (common_name == NULL || common_name[0] == '\0')
        return ztr_err_set(err, ZTR_E_INVALID, "a CA needs a common name");
    return create_ca(common_name, NULL, now, lifetime_s, out, err);
}

static int
key_matches_cert(const struct pki_key *key, const struct der_blob *cert, struct ztr_err *err)
{
    const uint8_t *spki;
    size_t spki_len;
    uint8_t *key_der;
    size_t key_len;
    if (cert_public_key_der(cert->data, cert->len, &spki, &spki_len) != 0)
        return ztr_err_set(err, PKI_E_INVALID_CA, PKI_MSG_INVALID_CA ": unreadable public key");
    TRY(pki_key_public_der(key, &key_der, &key_len, err));
    int same = key_len == spki_len && memcmp(key_der, spki, spki_len) == 0;
    free(key_der);
    if (!same)
        return ztr_err_set(err, PKI_E_INVALID_CA,
                           PKI_MSG_INVALID_CA ": the key does not belong to the certificate");
    return 0;
}

int
pki_ca_load(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
            struct pki_ca **out, struct ztr_err *err)
{
    struct pki_bundle *bundle;
    /* The bundle loader applies the CA checks (CA:TRUE, keyCertSign). */
    TRY(pki_bundle_from_pem(cert_pem, cert_len, &bundle, err));
    struct pki_ca *ca = calloc(1, sizeof(*ca));
    if (ca == NULL) {
        pki_bundle_free(bundle);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    /* The first block is the signing CA; the rest is its chain. */
    ca->cert = bundle->certs[0];
    bundle->certs[0].data = NULL;
    pki_bundle_free(bundle);
    int rc = ca_fill_info(ca, err);
    if (rc == 0 && ca->info.key_type != PKI_KEY_EC_P256)
        rc = ztr_err_set(err, PKI_E_INVALID_CA, PKI_MSG_INVALID_CA ": the CA key must be "
                         "ECDSA P-256");
    if (rc == 0 && pki_key_from_pem(key_pem, key_len, &ca->key, err) != 0) {
        if (err != NULL)
            err->code = PKI_E_INVALID_CA;
        rc = ztr_err_wrap(err, PKI_MSG_INVALID_CA " key");
    }
    if (rc == 0)
        rc = key_matches_cert(ca->key, &ca->cert, err);
    if (rc != 0) {
        pki_ca_free(ca);
        return -1;
    }
    *out = ca;
    return 0;
}

int
pki_ca_cert_pem(const struct pki_ca *ca, char **pem, size_t *len, struct ztr_err *err)
{
    return pem_encode(ca->cert.data, ca->cert.len, CERT_TYPE, pem, len, err);
}

int
pki_ca_key_pem(const struct pki_ca *ca, char **pem, size_t *len, struct ztr_err *err)
{
    return pki_key_to_pem(ca->key, pem, len, err);
}

int
pki_cas_to_pem(struct pki_ca *const *cas, size_t count, char **pem, size_t *len,
               struct ztr_err *err)
{
    struct der_blob blobs[PKI_MAX_CHAIN * 4];
    if (count == 0 || count > sizeof(blobs) / sizeof(blobs[0]))
        return ztr_err_set(err, ZTR_E_LIMIT, "a bundle of %zu CAs", count);
    for (size_t i = 0; i < count; i++)
        blobs[i] = cas[i]->cert;
    return blobs_to_pem(blobs, count, pem, len, err);
}

const struct pki_cert_info *
pki_ca_info(const struct pki_ca *ca)
{
    return &ca->info;
}

void
pki_ca_free(struct pki_ca *ca)
{
    if (ca == NULL)
        return;
    der_blob_free(&ca->cert);
    pki_key_free(ca->key);
    free(ca);
}

/* Issues a certificate for public_der signed by ca; the caller has set the
 * subject, SANs, key usage and CA flags on cert. */
static int
issue_with(struct pki_ca *ca, Cert *cert, const uint8_t *public_der, size_t public_len,
           char **pem, size_t *len, struct ztr_err *err)
{
    ecc_key subject;
    TRY(pki_public_key_import(public_der, public_len, &subject, err));
    struct der_blob der = {NULL, 0};
    struct build b = {cert, &subject, &ca->key->ecc, ca->cert.data, ca->cert.len};
    int rc = build_and_sign(&b, &der, err);
    wc_ecc_free(&subject);
    if (rc == 0)
        rc = pem_encode(der.data, der.len, CERT_TYPE, pem, len, err);
    der_blob_free(&der);
    return rc;
}

/* A leaf never outlives its CA (as SPIRE caps SVID TTLs): clamped to the
 * CA's window, refused only when nothing of the request is left. */
static int
clamp_to_ca(const struct pki_ca *ca, int64_t *not_before, int64_t *not_after,
            struct ztr_err *err)
{
    if (*not_before < ca->info.not_before)
        *not_before = ca->info.not_before;
    if (*not_after > ca->info.not_after)
        *not_after = ca->info.not_after;
    if (*not_after <= *not_before)
        return ztr_err_set(err, ZTR_E_INVALID,
                           "leaf validity must lie within the CA's (CA valid %lld..%lld)",
                           (long long)ca->info.not_before, (long long)ca->info.not_after);
    return 0;
}

int
pki_ca_issue(struct pki_ca *ca, const struct pki_leaf_request *request, char **pem,
             size_t *len, struct ztr_err *err)
{
    if (request->id == NULL || request->id->role == PKI_ROLE_NONE)
        return ztr_err_set(err, ZTR_E_INVALID, "a leaf needs a ztr SPIFFE ID");
    struct pki_spiffe_id ca_id;
    /* A CA that names its trust domain (ours do) only signs inside it. */
    if (ca->info.uri_count == 1 && pki_spiffe_id_parse(ca->info.uri, &ca_id, NULL) == 0 &&
        strcmp(ca_id.trust_domain, request->id->trust_domain) != 0)
        return ztr_err_set(err, PKI_E_TRUST_DOMAIN_MISMATCH,
                           PKI_MSG_TRUST_DOMAIN_MISMATCH ": CA is for %s, leaf is %s",
                           ca_id.trust_domain, request->id->uri);
    TRY(check_sans(request->dns_names, request->dns_count, request->ip_count, err));
    int64_t not_before = request->not_before, not_after = request->not_after;
    TRY(clamp_to_ca(ca, &not_before, &not_after, err));
    Cert *cert = new_cert(err);
    if (cert == NULL)
        return -1;
    int rc = -1;
    const char *cn = request->id->name[0] ? request->id->name : pki_role_name(request->id->role);
    set_name(&cert->subject, cn);
    cert->isCA = 0;
    cert->basicConstSet = 1;
    if (set_validity(cert, not_before, not_after, err) == 0 &&
        encode_san_names(request->id->uri, request->dns_names, request->dns_count, request->ips,
                         request->ip_count, cert, err) == 0) {
        int kr = wc_SetKeyUsage(cert, "digitalSignature");
        if (kr == 0)
            kr = wc_SetExtKeyUsage(cert, "serverAuth,clientAuth");
        if (kr != 0)
            issue_fail(err, "key usage", kr);
        else
            rc = issue_with(ca, cert, request->public_der, request->public_len, pem, len, err);
    }
    free(cert);
    return rc;
}

int
pki_ca_issue_intermediate(struct pki_ca *ca, const char *common_name,
                          const uint8_t *public_der, size_t public_len, int64_t not_before,
                          int64_t not_after, char **pem, size_t *len, struct ztr_err *err)
{
    Cert *cert = new_cert(err);
    if (cert == NULL)
        return -1;
    int rc = -1;
    set_name(&cert->subject, common_name);
    cert->isCA = 1;
    cert->pathLen = 0;
    cert->pathLenSet = 1;
    const char *uri = ca->info.uri_count ? ca->info.uri : NULL;
    if (set_validity(cert, not_before, not_after, err) == 0 &&
        (uri == NULL || encode_san_names(uri, NULL, 0, NULL, 0, cert, err) == 0)) {
        int kr = wc_SetKeyUsage(cert, "keyCertSign,cRLSign");
        if (kr != 0)
            issue_fail(err, "key usage", kr);
        else
            rc = issue_with(ca, cert, public_der, public_len, pem, len, err);
    }
    free(cert);
    return rc;
}

int
pki_ca_issue_server(struct pki_ca *ca, const struct pki_server_request *request, char **pem,
                    size_t *len, struct ztr_err *err)
{
    if (request->dns_count + request->ip_count == 0)
        return ztr_err_set(err, ZTR_E_INVALID, "a server certificate needs a DNS name or an IP");
    TRY(check_sans(request->dns_names, request->dns_count, request->ip_count, err));
    int64_t not_before = request->not_before, not_after = request->not_after;
    TRY(clamp_to_ca(ca, &not_before, &not_after, err));
    Cert *cert = new_cert(err);
    if (cert == NULL)
        return -1;
    int rc = -1;
    set_name(&cert->subject, request->common_name);
    cert->isCA = 0;
    cert->basicConstSet = 1;
    if (set_validity(cert, not_before, not_after, err) == 0 &&
        encode_san_names(NULL, request->dns_names, request->dns_count, request->ips,
                         request->ip_count, cert, err) == 0) {
        int kr = wc_SetKeyUsage(cert, "digitalSignature");
        if (kr == 0)
            kr = wc_SetExtKeyUsage(cert, "serverAuth");
        if (kr != 0)
            issue_fail(err, "key usage", kr);
        else
            rc = issue_with(ca, cert, request->public_der, request->public_len, pem, len, err);
    }
    free(cert);
    return rc;
}
