/* P-256 keys, PKCS#10 requests and the process RNG. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pki/der.h"
#include "pki/internal.h"

#include <wolfssl/wolfcrypt/sha256.h>

#define KEY_DER_MAX 512
#define CSR_DER_MAX 4096

static struct {
    bool initialised;
    bool rng_ready;
    WC_RNG rng;
} pki_state;

int
pki_init(struct ztr_err *err)
{
    if (pki_state.initialised)
        return 0;
    if (wolfSSL_Init() != WOLFSSL_SUCCESS)
        return ztr_err_set(err, ZTR_E_CRYPTO, "wolfSSL_Init failed");
    pki_state.initialised = true;
    return 0;
}

void
pki_cleanup(void)
{
    if (pki_state.rng_ready)
        wc_FreeRng(&pki_state.rng);
    pki_state.rng_ready = false;
    if (pki_state.initialised)
        wolfSSL_Cleanup();
    pki_state.initialised = false;
}

WC_RNG *
pki_rng(struct ztr_err *err)
{
    if (pki_init(err) != 0)
        return NULL;
    if (!pki_state.rng_ready) {
        if (wc_InitRng(&pki_state.rng) != 0) {
            ztr_err_set(err, ZTR_E_CRYPTO, "cannot seed the random number generator");
            return NULL;
        }
        pki_state.rng_ready = true;
    }
    return &pki_state.rng;
}

static int
key_fail(struct ztr_err *err, const char *what, int code)
{
    return ztr_err_set(err, PKI_E_BAD_KEY, "%s (wolfSSL error %d)", what, code);
}

static int
require_p256(ecc_key *key, struct ztr_err *err)
{
    if (wc_ecc_get_curve_id(key->idx) != ECC_SECP256R1)
        return ztr_err_set(err, PKI_E_BAD_KEY, "key is not ECDSA P-256");
    return 0;
}

int
pki_key_generate(struct pki_key **out, struct ztr_err *err)
{
    WC_RNG *rng = pki_rng(err);
    if (rng == NULL)
        return -1;
    struct pki_key *key = calloc(1, sizeof(*key));
    if (key == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int rc = wc_ecc_init(&key->ecc);
    if (rc == 0)
        rc = wc_ecc_make_key_ex(rng, 32, &key->ecc, ECC_SECP256R1);
    if (rc == 0)
        rc = wc_ecc_set_rng(&key->ecc, rng);
    if (rc != 0) {
        pki_key_free(key);
        return key_fail(err, "cannot generate a P-256 key", rc);
    }
    *out = key;
    return 0;
}

int
pki_key_from_pem(const char *pem, size_t len, struct pki_key **out, struct ztr_err *err)
{
    WC_RNG *rng = pki_rng(err);
    if (rng == NULL)
        return -1;
    struct der_blob blob;
    int n = pem_decode_blocks(pem, len, "EC PRIVATE KEY", &blob, 1, err);
    if (n == 0)
        n = pem_decode_blocks(pem, len, "PRIVATE KEY", &blob, 1, err);
    if (n < 0)
        return ztr_err_wrap(err, "private key");
    if (n == 0)
        return ztr_err_set(err, PKI_E_BAD_KEY, "no EC PRIVATE KEY or PRIVATE KEY block found");
    struct pki_key *key = calloc(1, sizeof(*key));
    if (key == NULL) {
        der_blob_free(&blob);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    word32 idx = 0;
    int rc = wc_ecc_init(&key->ecc);
    if (rc == 0)
        rc = wc_EccPrivateKeyDecode(blob.data, &idx, &key->ecc, (word32)blob.len);
    explicit_bzero(blob.data, blob.len);
    der_blob_free(&blob);
    if (rc != 0) {
        pki_key_free(key);
        return key_fail(err, "not an EC private key", rc);
    }
    if (require_p256(&key->ecc, err) != 0 || wc_ecc_set_rng(&key->ecc, rng) != 0) {
        pki_key_free(key);
        return ztr_err_set(err, PKI_E_BAD_KEY, "key is not ECDSA P-256");
    }
    *out = key;
    return 0;
}

int
pki_key_to_pem(const struct pki_key *key, char **pem, size_t *len, struct ztr_err *err)
{
    uint8_t der[KEY_DER_MAX];
    int n = wc_EccKeyToDer((ecc_key *)&key->ecc, der, sizeof(der));
    if (n <= 0)
        return key_fail(err, "cannot encode the key", n);
    int rc = pem_encode(der, (size_t)n, ECC_PRIVATEKEY_TYPE, pem, len, err);
    explicit_bzero(der, sizeof(der));
    return rc;
}

int
pki_key_public_der(const struct pki_key *key, uint8_t **der, size_t *len, struct ztr_err *err)
{
    uint8_t buf[KEY_DER_MAX];
    int n = wc_EccPublicKeyToDer((ecc_key *)&key->ecc, buf, sizeof(buf), 1);
    if (n <= 0)
        return key_fail(err, "cannot encode the public key", n);
    *der = malloc((size_t)n);
    if (*der == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    memcpy(*der, buf, (size_t)n);
    *len = (size_t)n;
    return 0;
}

void
pki_key_free(struct pki_key *key)
{
    if (key == NULL)
        return;
    wc_ecc_free(&key->ecc);
    explicit_bzero(key, sizeof(*key));
    free(key);
}

int
pki_public_key_import(const uint8_t *spki, size_t len, ecc_key *key, struct ztr_err *err)
{
    word32 idx = 0;
    int rc = wc_ecc_init(key);
    if (rc == 0)
        rc = wc_EccPublicKeyDecode(spki, &idx, key, (word32)len);
    if (rc != 0) {
        wc_ecc_free(key);
        return key_fail(err, "not an EC public key", rc);
    }
    if (require_p256(key, err) != 0) {
        wc_ecc_free(key);
        return -1;
    }
    return 0;
}

/* The uncompressed point (0x04 || X || Y) of a SubjectPublicKeyInfo. */
static int
public_point(const uint8_t *spki, size_t len, uint8_t point[65], struct ztr_err *err)
{
    ecc_key key;
    TRY(pki_public_key_import(spki, len, &key, err));
    word32 point_len = 65;
    int rc = wc_ecc_export_x963(&key, point, &point_len);
    wc_ecc_free(&key);
    if (rc != 0 || point_len != 65)
        return key_fail(err, "cannot export the public key", rc);
    return 0;
}

int
pki_public_key_equal(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
                     struct ztr_err *err)
{
    uint8_t point_a[65], point_b[65];
    TRY(public_point(a, a_len, point_a, err));
    TRY(public_point(b, b_len, point_b, err));
    return memcmp(point_a, point_b, sizeof(point_a)) == 0 ? 1 : 0;
}

int
pki_public_key_fingerprint(const uint8_t *spki, size_t len,
                           char out[PKI_KEY_FINGERPRINT_MAX + 1], struct ztr_err *err)
{
    uint8_t point[65], digest[WC_SHA256_DIGEST_SIZE];
    TRY(public_point(spki, len, point, err));
    if (wc_Sha256Hash(point, sizeof(point), digest) != 0)
        return ztr_err_set(err, ZTR_E_CRYPTO, "SHA-256 failed");
    for (size_t i = 0; i < sizeof(digest); i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    return 0;
}

int
pki_sha256_hex(const void *data, size_t len, char out[65], struct ztr_err *err)
{
    uint8_t digest[WC_SHA256_DIGEST_SIZE];
    if (wc_Sha256Hash(data, (word32)len, digest) != 0)
        return ztr_err_set(err, ZTR_E_CRYPTO, "SHA-256 failed");
    for (size_t i = 0; i < sizeof(digest); i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    return 0;
}

/* ---- proofs of possession ----------------------------------------------- */

int
pki_key_sign(const struct pki_key *key, const uint8_t *data, size_t len,
             uint8_t sig[PKI_SIGNATURE_MAX], size_t *sig_len, struct ztr_err *err)
{
    WC_RNG *rng = pki_rng(err);
    if (rng == NULL)
        return -1;
    uint8_t digest[WC_SHA256_DIGEST_SIZE];
    if (wc_Sha256Hash(data, (word32)len, digest) != 0)
        return ztr_err_set(err, ZTR_E_CRYPTO, "SHA-256 failed");
    word32 out_len = PKI_SIGNATURE_MAX;
    int rc = wc_ecc_sign_hash(digest, sizeof(digest), sig, &out_len, rng,
                              (ecc_key *)&key->ecc);
    if (rc != 0)
        return key_fail(err, "cannot sign", rc);
    *sig_len = out_len;
    return 0;
}

int
pki_signature_verify(const uint8_t *spki, size_t spki_len, const uint8_t *data, size_t len,
                     const uint8_t *sig, size_t sig_len, struct ztr_err *err)
{
    if (sig_len == 0 || sig_len > PKI_SIGNATURE_MAX)
        return ztr_err_set(err, PKI_E_BAD_SIGNATURE, "signature of %zu bytes (1..%d)", sig_len,
                           PKI_SIGNATURE_MAX);
    ecc_key key;
    TRY(pki_public_key_import(spki, spki_len, &key, err));
    uint8_t digest[WC_SHA256_DIGEST_SIZE];
    int valid = 0;
    int rc = wc_Sha256Hash(data, (word32)len, digest);
    if (rc == 0)
        rc = wc_ecc_verify_hash(sig, (word32)sig_len, digest, sizeof(digest), &valid, &key);
    wc_ecc_free(&key);
    /* A malformed signature is an error of wc_ecc_verify_hash, a wrong one
     * leaves valid at 0: both are the same refusal. */
    if (rc != 0 || valid != 1)
        return ztr_err_set(err, PKI_E_BAD_SIGNATURE, "signature does not verify with the key");
    return 0;
}

/* ---- CSRs --------------------------------------------------------------- */

int
pki_csr_create(const struct pki_key *key, const char *common_name, char **pem, size_t *len,
               struct ztr_err *err)
{
    WC_RNG *rng = pki_rng(err);
    if (rng == NULL)
        return -1;
    Cert *req = calloc(1, sizeof(*req));
    uint8_t *der = malloc(CSR_DER_MAX);
    int rc = -1;
    if (req == NULL || der == NULL) {
        ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        goto out;
    }
    if (wc_InitCert(req) != 0) {
        ztr_err_set(err, ZTR_E_CRYPTO, "wc_InitCert failed");
        goto out;
    }
    if (strlen(common_name) >= CTC_NAME_SIZE) {
        ztr_err_set(err, ZTR_E_INVALID, "common name longer than %d bytes", CTC_NAME_SIZE - 1);
        goto out;
    }
    req->version = 0;
    req->sigType = CTC_SHA256wECDSA;
    strcpy(req->subject.commonName, common_name);
    req->subject.commonNameEnc = CTC_UTF8;
    int n = wc_MakeCertReq_ex(req, der, CSR_DER_MAX, ECC_TYPE, (ecc_key *)&key->ecc);
    if (n > 0)
        n = wc_SignCert_ex(req->bodySz, req->sigType, der, CSR_DER_MAX, ECC_TYPE,
                           (ecc_key *)&key->ecc, rng);
    if (n <= 0) {
        key_fail(err, "cannot build the certificate request", n);
        goto out;
    }
    rc = pem_encode(der, (size_t)n, CERTREQ_TYPE, pem, len, err);
out:
    free(req);
    free(der);
    return rc;
}

struct pki_csr {
    struct der_blob der;
    const uint8_t *public_der;  /* into der */
    size_t public_len;
    char common_name[CTC_NAME_SIZE];
};

static const uint8_t oid_ecdsa_sha256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};

static int
bad_csr(struct ztr_err *err, const char *what)
{
    return ztr_err_set(err, PKI_E_BAD_CSR, "invalid certificate request: %s", what);
}

/* Checks the request's self-signature: proof that the sender holds the key. */
static int
csr_check(struct pki_csr *csr, struct ztr_err *err)
{
    struct der_cursor all = {csr->der.data, csr->der.len}, req, info_whole, info, alg, oid,
                      sig, version, subject, spki_whole;
    uint8_t tag;
    if (der_expect(&all, DER_SEQUENCE, &req) != 0 || !der_empty(&all))
        return bad_csr(err, "not a DER request");
    if (der_peek(&req, &tag) != 0 || tag != DER_SEQUENCE ||
        der_read(&req, NULL, &info, &info_whole) != 0)
        return bad_csr(err, "certificationRequestInfo");
    if (der_expect(&req, DER_SEQUENCE, &alg) != 0 || der_expect(&alg, DER_OID, &oid) != 0)
        return bad_csr(err, "signatureAlgorithm");
    if (!der_oid_equals(&oid, oid_ecdsa_sha256, sizeof(oid_ecdsa_sha256)))
        return bad_csr(err, "signature algorithm is not ecdsa-with-SHA256");
    if (der_expect(&req, DER_BIT_STRING, &sig) != 0 || sig.len < 2 || sig.data[0] != 0)
        return bad_csr(err, "signature");
    if (der_expect(&info, DER_INTEGER, &version) != 0 ||
        der_expect(&info, DER_SEQUENCE, &subject) != 0 || der_peek(&info, &tag) != 0 ||
        tag != DER_SEQUENCE || der_read(&info, NULL, NULL, &spki_whole) != 0)
        return bad_csr(err, "request fields");
    pki_name_common_name(subject, csr->common_name, sizeof(csr->common_name));
    csr->public_der = spki_whole.data;
    csr->public_len = spki_whole.len;

    ecc_key key;
    if (pki_public_key_import(spki_whole.data, spki_whole.len, &key, err) != 0)
        return ztr_err_wrap(err, "invalid certificate request");
    byte digest[WC_SHA256_DIGEST_SIZE];
    int verified = 0;
    int rc = wc_Sha256Hash(info_whole.data, (word32)info_whole.len, digest);
    if (rc == 0)
        rc = wc_ecc_verify_hash(sig.data + 1, (word32)(sig.len - 1), digest, sizeof(digest),
                                &verified, &key);
    wc_ecc_free(&key);
    if (rc != 0 || verified != 1)
        return bad_csr(err, "signature does not verify");
    return 0;
}

int
pki_csr_parse(const uint8_t *data, size_t len, struct pki_csr **out, struct ztr_err *err)
{
    if (pki_init(err) != 0)
        return -1;
    struct pki_csr *csr = calloc(1, sizeof(*csr));
    if (csr == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    if (len > CSR_DER_MAX * 4) {
        free(csr);
        return bad_csr(err, "too large");
    }
    if (len > 0 && data[0] == '-') {
        int n = pem_decode_blocks((const char *)data, len, "CERTIFICATE REQUEST", &csr->der, 1,
                                  err);
        if (n != 1) {
            free(csr);
            return n < 0 ? ztr_err_wrap(err, "invalid certificate request")
                         : bad_csr(err, "no CERTIFICATE REQUEST block found");
        }
    } else {
        csr->der.data = malloc(len ? len : 1);
        if (csr->der.data == NULL) {
            free(csr);
            return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        }
        memcpy(csr->der.data, data, len);
        csr->der.len = len;
    }
    if (csr_check(csr, err) != 0) {
        pki_csr_free(csr);
        return -1;
    }
    *out = csr;
    return 0;
}

const uint8_t *
pki_csr_public_der(const struct pki_csr *csr, size_t *len)
{
    *len = csr->public_len;
    return csr->public_der;
}

const char *
pki_csr_common_name(const struct pki_csr *csr)
{
    return csr->common_name;
}

void
pki_csr_free(struct pki_csr *csr)
{
    if (csr == NULL)
        return;
    der_blob_free(&csr->der);
    free(csr);
}
