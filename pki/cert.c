/* Reading certificates with our own bounded DER cursor: wolfSSL's parsed
 * view depends on its build options and hides what we must check (URI and
 * IP SANs byte for byte, key usage on trust anchors, unknown critical
 * extensions). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pki/der.h"
#include "pki/internal.h"

#include <wolfssl/wolfcrypt/sha256.h>

static const uint8_t oid_san[] = {0x55, 0x1d, 0x11};
static const uint8_t oid_basic_constraints[] = {0x55, 0x1d, 0x13};
static const uint8_t oid_key_usage[] = {0x55, 0x1d, 0x0f};
static const uint8_t oid_ext_key_usage[] = {0x55, 0x1d, 0x25};
static const uint8_t oid_server_auth[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01};
static const uint8_t oid_client_auth[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02};
static const uint8_t oid_ec_public_key[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
static const uint8_t oid_p256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const uint8_t oid_rsa[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01};
static const uint8_t oid_common_name[] = {0x55, 0x04, 0x03};

#define OID_EQ(cursor, oid) der_oid_equals((cursor), (oid), sizeof(oid))

static int
bad_cert(struct ztr_err *err, const char *what)
{
    return ztr_err_set(err, PKI_E_BAD_CERT, "x509: malformed certificate: %s", what);
}

static int
parse_san(struct der_cursor value, struct pki_cert_info *info, struct ztr_err *err)
{
    struct der_cursor names;
    if (der_expect(&value, DER_SEQUENCE, &names) != 0 || !der_empty(&value))
        return bad_cert(err, "subjectAltName");
    while (!der_empty(&names)) {
        uint8_t tag;
        struct der_cursor name;
        if (der_read(&names, &tag, &name, NULL) != 0)
            return bad_cert(err, "subjectAltName entry");
        if (tag == DER_SAN_URI) {
            if (info->uri_count == 0) {
                if (name.len > PKI_SPIFFE_ID_MAX || memchr(name.data, 0, name.len) != NULL)
                    return bad_cert(err, "URI SAN too long or contains NUL");
                memcpy(info->uri, name.data, name.len);
                info->uri[name.len] = '\0';
            }
            info->uri_count++;
        } else if (tag == DER_SAN_IP) {
            if (name.len != 4 && name.len != 16)
                return bad_cert(err, "IP SAN of unexpected length");
            if (info->ip_count == PKI_MAX_IP_SANS)
                return bad_cert(err, "too many IP SANs");
            struct pki_ip *ip = &info->ips[info->ip_count++];
            ip->len = (uint8_t)name.len;
            memcpy(ip->bytes, name.data, name.len);
        } else if (tag == DER_SAN_DNS) {
            info->dns_count++;
        }
    }
    return 0;
}

static int
parse_basic_constraints(struct der_cursor value, struct pki_cert_info *info,
                        struct ztr_err *err)
{
    struct der_cursor seq;
    if (der_expect(&value, DER_SEQUENCE, &seq) != 0)
        return bad_cert(err, "basicConstraints");
    info->has_basic_constraints = true;
    uint8_t tag;
    if (der_peek(&seq, &tag) == 0 && tag == DER_BOOLEAN) {
        struct der_cursor flag;
        if (der_read(&seq, NULL, &flag, NULL) != 0 || flag.len != 1)
            return bad_cert(err, "basicConstraints cA");
        info->is_ca = flag.data[0] != 0;
    }
    return 0;
}

static int
parse_key_usage(struct der_cursor value, struct pki_cert_info *info, struct ztr_err *err)
{
    struct der_cursor bits;
    if (der_expect(&value, DER_BIT_STRING, &bits) != 0 || bits.len < 1)
        return bad_cert(err, "keyUsage");
    info->has_key_usage = true;
    info->key_usage = bits.len >= 2 ? bits.data[1] : 0;
    return 0;
}

static int
parse_ext_key_usage(struct der_cursor value, struct pki_cert_info *info, struct ztr_err *err)
{
    struct der_cursor seq;
    if (der_expect(&value, DER_SEQUENCE, &seq) != 0)
        return bad_cert(err, "extKeyUsage");
    info->has_eku = true;
    while (!der_empty(&seq)) {
        struct der_cursor oid;
        if (der_expect(&seq, DER_OID, &oid) != 0)
            return bad_cert(err, "extKeyUsage entry");
        if (OID_EQ(&oid, oid_server_auth))
            info->eku_server_auth = true;
        else if (OID_EQ(&oid, oid_client_auth))
            info->eku_client_auth = true;
    }
    return 0;
}

static int
parse_extensions(struct der_cursor exts, struct pki_cert_info *info, struct ztr_err *err)
{
    struct der_cursor list;
    if (der_expect(&exts, DER_SEQUENCE, &list) != 0)
        return bad_cert(err, "extensions");
    while (!der_empty(&list)) {
        struct der_cursor ext, oid, value;
        bool critical = false;
        if (der_expect(&list, DER_SEQUENCE, &ext) != 0 || der_expect(&ext, DER_OID, &oid) != 0)
            return bad_cert(err, "extension");
        uint8_t tag;
        if (der_peek(&ext, &tag) == 0 && tag == DER_BOOLEAN) {
            struct der_cursor flag;
            if (der_read(&ext, NULL, &flag, NULL) != 0 || flag.len != 1)
                return bad_cert(err, "extension critical flag");
            critical = flag.data[0] != 0;
        }
        if (der_expect(&ext, DER_OCTET_STRING, &value) != 0)
            return bad_cert(err, "extension value");
        if (OID_EQ(&oid, oid_san))
            TRY(parse_san(value, info, err));
        else if (OID_EQ(&oid, oid_basic_constraints))
            TRY(parse_basic_constraints(value, info, err));
        else if (OID_EQ(&oid, oid_key_usage))
            TRY(parse_key_usage(value, info, err));
        else if (OID_EQ(&oid, oid_ext_key_usage))
            TRY(parse_ext_key_usage(value, info, err));
        else if (critical)
            info->unknown_critical_extension = true;
    }
    return 0;
}

void
pki_name_common_name(struct der_cursor name, char *out, size_t cap)
{
    out[0] = '\0';
    while (!der_empty(&name)) {
        struct der_cursor set, attr, oid, value;
        uint8_t tag;
        if (der_expect(&name, DER_SET, &set) != 0)
            return;
        while (!der_empty(&set)) {
            if (der_expect(&set, DER_SEQUENCE, &attr) != 0 ||
                der_expect(&attr, DER_OID, &oid) != 0 ||
                der_read(&attr, &tag, &value, NULL) != 0)
                return;
            if (OID_EQ(&oid, oid_common_name) && value.len < cap &&
                memchr(value.data, 0, value.len) == NULL) {
                memcpy(out, value.data, value.len);
                out[value.len] = '\0';
            }
        }
    }
}

static int
parse_spki(struct der_cursor spki, struct pki_cert_info *info, struct ztr_err *err)
{
    struct der_cursor alg, oid;
    if (der_expect(&spki, DER_SEQUENCE, &alg) != 0 || der_expect(&alg, DER_OID, &oid) != 0)
        return bad_cert(err, "subjectPublicKeyInfo");
    info->key_type = PKI_KEY_OTHER;
    if (OID_EQ(&oid, oid_rsa)) {
        info->key_type = PKI_KEY_RSA;
    } else if (OID_EQ(&oid, oid_ec_public_key)) {
        struct der_cursor curve;
        info->key_type = PKI_KEY_EC_OTHER;
        if (der_expect(&alg, DER_OID, &curve) == 0 && OID_EQ(&curve, oid_p256))
            info->key_type = PKI_KEY_EC_P256;
    }
    return 0;
}

/* Splits a certificate into its TBS fields. */
struct tbs_fields {
    struct der_cursor serial, issuer, validity, subject, spki, spki_whole, extensions;
    bool has_extensions;
};

static int
split_tbs(const uint8_t *der, size_t len, struct tbs_fields *fields, struct ztr_err *err)
{
    struct der_cursor all = {der, len}, cert, tbs, skip;
    if (der_expect(&all, DER_SEQUENCE, &cert) != 0 || !der_empty(&all))
        return bad_cert(err, "not a DER certificate");
    if (der_expect(&cert, DER_SEQUENCE, &tbs) != 0)
        return bad_cert(err, "tbsCertificate");
    memset(fields, 0, sizeof(*fields));
    uint8_t tag;
    if (der_peek(&tbs, &tag) == 0 && tag == DER_CONTEXT_0 &&
        der_read(&tbs, NULL, NULL, NULL) != 0)
        return bad_cert(err, "version");
    if (der_expect(&tbs, DER_INTEGER, &fields->serial) != 0 ||
        der_expect(&tbs, DER_SEQUENCE, &skip) != 0 ||
        der_expect(&tbs, DER_SEQUENCE, &fields->issuer) != 0 ||
        der_expect(&tbs, DER_SEQUENCE, &fields->validity) != 0 ||
        der_expect(&tbs, DER_SEQUENCE, &fields->subject) != 0)
        return bad_cert(err, "tbsCertificate fields");
    if (der_peek(&tbs, &tag) != 0 || tag != DER_SEQUENCE ||
        der_read(&tbs, NULL, &fields->spki, &fields->spki_whole) != 0)
        return bad_cert(err, "subjectPublicKeyInfo");
    while (!der_empty(&tbs)) {
        struct der_cursor value;
        if (der_read(&tbs, &tag, &value, NULL) != 0)
            return bad_cert(err, "trailing fields");
        if (tag == DER_CONTEXT_3) {
            fields->extensions = value;
            fields->has_extensions = true;
        }
    }
    return 0;
}

int
cert_public_key_der(const uint8_t *der, size_t len, const uint8_t **spki, size_t *spki_len)
{
    struct tbs_fields fields;
    if (split_tbs(der, len, &fields, NULL) != 0)
        return -1;
    *spki = fields.spki_whole.data;
    *spki_len = fields.spki_whole.len;
    return 0;
}

int
pki_cert_info_parse(const uint8_t *der, size_t len, struct pki_cert_info *info,
                    struct ztr_err *err)
{
    memset(info, 0, sizeof(*info));
    if (len > PKI_CERT_MAX_DER)
        return bad_cert(err, "larger than 64 KiB");
    struct tbs_fields fields;
    TRY(split_tbs(der, len, &fields, err));

    struct der_cursor serial = fields.serial;
    while (serial.len > 1 && serial.data[0] == 0) {
        serial.data++;
        serial.len--;
    }
    if (serial.len == 0 || serial.len > 20)
        return bad_cert(err, "serial number");
    for (size_t i = 0; i < serial.len; i++)
        snprintf(info->serial_hex + 2 * i, 3, "%02x", serial.data[i]);

    struct der_cursor validity = fields.validity, time_value;
    uint8_t tag;
    if (der_read(&validity, &tag, &time_value, NULL) != 0 ||
        der_time_to_unix(tag, &time_value, &info->not_before) != 0 ||
        der_read(&validity, &tag, &time_value, NULL) != 0 ||
        der_time_to_unix(tag, &time_value, &info->not_after) != 0)
        return bad_cert(err, "validity");

    pki_name_common_name(fields.subject, info->subject_cn, sizeof(info->subject_cn));
    TRY(parse_spki(fields.spki, info, err));
    if (fields.has_extensions)
        TRY(parse_extensions(fields.extensions, info, err));

    byte digest[WC_SHA256_DIGEST_SIZE];
    if (wc_Sha256Hash(der, (word32)len, digest) != 0)
        return ztr_err_set(err, ZTR_E_CRYPTO, "SHA-256 failed");
    for (size_t i = 0; i < sizeof(digest); i++)
        snprintf(info->fingerprint_sha256 + 2 * i, 3, "%02x", digest[i]);
    return 0;
}

/* ---- PEM ---------------------------------------------------------------- */

void
der_blob_free(struct der_blob *blob)
{
    free(blob->data);
    blob->data = NULL;
    blob->len = 0;
}

int
pem_decode_blocks(const char *pem, size_t len, const char *label, struct der_blob *out,
                  size_t max, struct ztr_err *err)
{
    char begin[64], end[64];
    snprintf(begin, sizeof(begin), "-----BEGIN %s-----", label);
    snprintf(end, sizeof(end), "-----END %s-----", label);
    size_t count = 0;
    const char *cursor = pem;
    const char *limit = pem + len;
    for (;;) {
        const char *start = NULL;
        for (const char *p = cursor; p + strlen(begin) <= limit; p++) {
            if (memcmp(p, begin, strlen(begin)) == 0) {
                start = p;
                break;
            }
        }
        if (start == NULL)
            break;
        const char *stop = NULL;
        for (const char *p = start; p + strlen(end) <= limit; p++) {
            if (memcmp(p, end, strlen(end)) == 0) {
                stop = p + strlen(end);
                break;
            }
        }
        if (stop == NULL)
            goto malformed;
        if (count == max) {
            for (size_t i = 0; i < count; i++)
                der_blob_free(&out[i]);
            return ztr_err_set(err, ZTR_E_LIMIT, "more than %zu %s blocks", max, label);
        }
        size_t block_len = (size_t)(stop - start);
        uint8_t *der = malloc(block_len);
        if (der == NULL)
            goto malformed;
        /* Base64 shrinks: the DER is always shorter than its PEM block. */
        int n;
        if (strcmp(label, "CERTIFICATE") == 0 || strcmp(label, "CERTIFICATE REQUEST") == 0)
            n = wc_CertPemToDer((const unsigned char *)start, (int)block_len, der,
                                (int)block_len,
                                strcmp(label, "CERTIFICATE") == 0 ? CERT_TYPE : CERTREQ_TYPE);
        else
            n = wc_KeyPemToDer((const unsigned char *)start, (int)block_len, der,
                               (int)block_len, NULL);
        if (n <= 0) {
            free(der);
            goto malformed;
        }
        out[count].data = der;
        out[count].len = (size_t)n;
        count++;
        cursor = stop;
    }
    return (int)count;
malformed:
    for (size_t i = 0; i < count; i++)
        der_blob_free(&out[i]);
    return ztr_err_set(err, ZTR_E_INVALID, "malformed PEM %s block", label);
}

int
pem_encode(const uint8_t *der, size_t der_len, int type, char **pem, size_t *pem_len,
           struct ztr_err *err)
{
    int need = wc_DerToPem(der, (word32)der_len, NULL, 0, type);
    if (need <= 0)
        return ztr_err_set(err, ZTR_E_CRYPTO, "PEM encoding failed (%d)", need);
    char *out = malloc((size_t)need + 1);
    if (out == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int n = wc_DerToPem(der, (word32)der_len, (byte *)out, (word32)need, type);
    if (n <= 0) {
        free(out);
        return ztr_err_set(err, ZTR_E_CRYPTO, "PEM encoding failed (%d)", n);
    }
    out[n] = '\0';
    *pem = out;
    if (pem_len != NULL)
        *pem_len = (size_t)n;
    return 0;
}

/* ---- chains ------------------------------------------------------------- */

int
blobs_to_pem(const struct der_blob *blobs, size_t count, char **pem, size_t *len,
             struct ztr_err *err)
{
    size_t total = 0;
    char *joined = NULL;
    for (size_t i = 0; i < count; i++) {
        char *one;
        size_t one_len;
        if (pem_encode(blobs[i].data, blobs[i].len, CERT_TYPE, &one, &one_len, err) != 0) {
            free(joined);
            return -1;
        }
        char *grown = realloc(joined, total + one_len + 1);
        if (grown == NULL) {
            free(one);
            free(joined);
            return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        }
        joined = grown;
        memcpy(joined + total, one, one_len + 1);
        total += one_len;
        free(one);
    }
    if (joined == NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "no certificates");
    *pem = joined;
    if (len != NULL)
        *len = total;
    return 0;
}

static int
blob_copy(struct der_blob *blob, const uint8_t *der, size_t len, struct ztr_err *err)
{
    if (len == 0 || len > PKI_CERT_MAX_DER)
        return ztr_err_set(err, PKI_E_BAD_CERT, "certificate of %zu bytes", len);
    blob->data = malloc(len);
    if (blob->data == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    memcpy(blob->data, der, len);
    blob->len = len;
    return 0;
}

int
pki_chain_from_pem(const char *pem, size_t len, struct pki_chain **out, struct ztr_err *err)
{
    struct pki_chain *chain = calloc(1, sizeof(*chain));
    if (chain == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int n = pem_decode_blocks(pem, len, "CERTIFICATE", chain->certs, PKI_MAX_CHAIN, err);
    if (n <= 0) {
        free(chain);
        if (n == 0)
            return ztr_err_set(err, PKI_E_BAD_CERT, "no CERTIFICATE block found");
        return ztr_err_wrap(err, "certificate chain");
    }
    chain->count = (size_t)n;
    *out = chain;
    return 0;
}

int
pki_chain_from_der_list(const uint8_t *const *ders, const size_t *lens, size_t count,
                        struct pki_chain **out, struct ztr_err *err)
{
    if (count == 0 || count > PKI_MAX_CHAIN)
        return ztr_err_set(err, PKI_E_BAD_CERT, "chain of %zu certificates (1..%d allowed)",
                           count, PKI_MAX_CHAIN);
    struct pki_chain *chain = calloc(1, sizeof(*chain));
    if (chain == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        if (blob_copy(&chain->certs[i], ders[i], lens[i], err) != 0) {
            pki_chain_free(chain);
            return -1;
        }
        chain->count = i + 1;
    }
    *out = chain;
    return 0;
}

size_t
pki_chain_length(const struct pki_chain *chain)
{
    return chain->count;
}

const uint8_t *
pki_chain_leaf_public_key(const struct pki_chain *chain, size_t *len)
{
    const uint8_t *spki;
    if (chain->count == 0 ||
        cert_public_key_der(chain->certs[0].data, chain->certs[0].len, &spki, len) != 0)
        return NULL;
    return spki;
}

const uint8_t *
pki_chain_der(const struct pki_chain *chain, size_t idx, size_t *len)
{
    if (idx >= chain->count)
        return NULL;
    *len = chain->certs[idx].len;
    return chain->certs[idx].data;
}

int
pki_chain_to_pem(const struct pki_chain *chain, char **pem, size_t *len, struct ztr_err *err)
{
    return blobs_to_pem(chain->certs, chain->count, pem, len, err);
}

void
pki_chain_free(struct pki_chain *chain)
{
    if (chain == NULL)
        return;
    for (size_t i = 0; i < chain->count; i++)
        der_blob_free(&chain->certs[i]);
    free(chain);
}

/* ---- bundles ------------------------------------------------------------ */

int
pki_signing_cert_id_check(const struct pki_cert_info *info, struct ztr_err *err)
{
    /* A CA that names a workload could be a leaf key promoted to signer; only
     * SPIFFE IDs are judged, other URIs are the operator's business. */
    struct pki_spiffe_id id;
    if (info->uri_count > 0 && pki_spiffe_id_parse(info->uri, &id, NULL) == 0 &&
        pki_spiffe_id_path(&id)[0] != '\0')
        return ztr_err_set(err, PKI_E_SIGNING_CERT_ID,
                               "x509: CA certificate \"%s\" carries SPIFFE ID %s; a signing "
                               "certificate may name only its trust domain",
                               info->subject_cn, info->uri);
    return 0;
}

static int
invalid_ca(struct ztr_err *err)
{
    if (err != NULL)
        err->code = PKI_E_INVALID_CA;
    return ztr_err_wrap(err, PKI_MSG_INVALID_CA);
}

int
pki_bundle_from_pem(const char *pem, size_t len, struct pki_bundle **out, struct ztr_err *err)
{
    struct pki_bundle *bundle = calloc(1, sizeof(*bundle));
    if (bundle == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    size_t max = sizeof(bundle->certs) / sizeof(bundle->certs[0]);
    int n = pem_decode_blocks(pem, len, "CERTIFICATE", bundle->certs, max, err);
    if (n <= 0) {
        free(bundle);
        if (n == 0)
            return ztr_err_set(err, PKI_E_INVALID_CA, PKI_MSG_INVALID_CA
                               ": no CERTIFICATE block found");
        return invalid_ca(err);
    }
    bundle->count = (size_t)n;
    for (size_t i = 0; i < bundle->count; i++) {
        struct pki_cert_info info;
        if (pki_cert_info_parse(bundle->certs[i].data, bundle->certs[i].len, &info, err) != 0) {
            pki_bundle_free(bundle);
            return invalid_ca(err);
        }
        /* wolfSSL does not check these on trust anchors; a bundle entry
         * that cannot sign certificates must not be trusted to. */
        if (!info.is_ca || !info.has_key_usage || !(info.key_usage & PKI_KU_KEY_CERT_SIGN)) {
            pki_bundle_free(bundle);
            return ztr_err_set(err, PKI_E_CA_KEY_USAGE, PKI_MSG_CA_KEY_USAGE
                               " (\"%s\" needs CA:TRUE and keyCertSign)", info.subject_cn);
        }
        if (pki_signing_cert_id_check(&info, err) != 0) {
            pki_bundle_free(bundle);
            return -1;
        }
    }
    *out = bundle;
    return 0;
}

size_t
pki_bundle_length(const struct pki_bundle *bundle)
{
    return bundle->count;
}

const uint8_t *
pki_bundle_der(const struct pki_bundle *bundle, size_t idx, size_t *len)
{
    if (idx >= bundle->count)
        return NULL;
    *len = bundle->certs[idx].len;
    return bundle->certs[idx].data;
}

int
pki_bundle_to_pem(const struct pki_bundle *bundle, char **pem, size_t *len,
                  struct ztr_err *err)
{
    return blobs_to_pem(bundle->certs, bundle->count, pem, len, err);
}

void
pki_bundle_free(struct pki_bundle *bundle)
{
    if (bundle == NULL)
        return;
    for (size_t i = 0; i < bundle->count; i++)
        der_blob_free(&bundle->certs[i]);
    free(bundle);
}
