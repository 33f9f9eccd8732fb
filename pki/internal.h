/* Private to pki/: shared helpers between the module's files. */
#ifndef ZTR_PKI_INTERNAL_H
#define ZTR_PKI_INTERNAL_H

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include "pki/der.h"
#include "pki/pki.h"

struct der_blob {
    uint8_t *data;
    size_t len;
};

struct pki_chain {
    size_t count;
    struct der_blob certs[PKI_MAX_CHAIN];
};

struct pki_bundle {
    size_t count;
    struct der_blob certs[PKI_MAX_CHAIN * 4];
};

struct pki_key {
    ecc_key ecc;
};

/* Splits PEM text into the DER of every block with the given label
 * ("CERTIFICATE", ...). Returns the number found (0..max) or -1 on a
 * malformed block or too many blocks. Caller frees each blob. */
int pem_decode_blocks(const char *pem, size_t len, const char *label, struct der_blob *out,
                      size_t max, struct ztr_err *err);

/* DER → PEM with the given wolfSSL type (CERT_TYPE, ECC_PRIVATEKEY_TYPE, ...). */
int pem_encode(const uint8_t *der, size_t der_len, int type, char **pem, size_t *pem_len,
               struct ztr_err *err);

/* Process-wide RNG (wolfCrypt DRBG seeded from the OS). */
WC_RNG *pki_rng(struct ztr_err *err);

/* Imports a SubjectPublicKeyInfo as a P-256 public key. */
int pki_public_key_import(const uint8_t *spki, size_t len, ecc_key *key, struct ztr_err *err);

/* SubjectPublicKeyInfo DER of a certificate (pointer into der). */
int cert_public_key_der(const uint8_t *der, size_t len, const uint8_t **spki,
                        size_t *spki_len);

void der_blob_free(struct der_blob *blob);

/* Concatenated PEM of DER certificates (malloc()ed). */
int blobs_to_pem(const struct der_blob *blobs, size_t count, char **pem, size_t *len,
                 struct ztr_err *err);

/* X509-SVID §3: a signing certificate's SPIFFE ID, if it has one, names
 * only the trust domain. 0, or -1 with PKI_E_SIGNING_CERT_ID. */
int pki_signing_cert_id_check(const struct pki_cert_info *info, struct ztr_err *err);

/* The commonName of an X.501 Name ("" when absent or too long). */
void pki_name_common_name(struct der_cursor name, char *out, size_t cap);

#endif
