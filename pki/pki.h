/*
 * The PKI module: the one place where ztr parses and checks identities.
 *
 * SPIFFE IDs, trust domains, P-256 keys, CSRs, issuing from a CA, trust
 * bundles and the single peer-validation function every daemon calls, both
 * directly (pki_verify) and from a TLS handshake (pki_tls_check_install).
 * wolfSSL only; no sockets.
 *
 * Ownership: every pki_* object returned through an out-pointer belongs to
 * the caller and is released with its *_free function. PEM/DER buffers
 * returned as char ** / uint8_t ** are malloc()ed and released with free().
 * Error texts that the failure-modes document fixes are in PKI_MSG_* below
 * and appear verbatim in err->msg.
 */
#ifndef ZTR_PKI_PKI_H
#define ZTR_PKI_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/err.h"

/* ---- operator-facing texts (failure-modes document, verbatim) -------- */
#define PKI_MSG_UNKNOWN_AUTHORITY "x509: certificate signed by unknown authority"
#define PKI_MSG_NO_IP_SANS_FMT \
    "x509: cannot validate certificate for %s because it doesn't contain any IP SANs"
#define PKI_MSG_TRUST_DOMAIN_MISMATCH "SPIFFE trust domain mismatch"
#define PKI_MSG_UNEXPECTED_ROLE "unexpected SPIFFE role"
#define PKI_MSG_CA_KEY_USAGE "CA certificate missing key usage"
#define PKI_MSG_INVALID_DOMAIN_FMT "cannot parse URI \"%s\": invalid domain"
#define PKI_MSG_INVALID_CA "invalid internal CA"
#define PKI_MSG_READ_CA "failed to read controller CA"
#define PKI_MSG_PEER_NOT_VERIFIED "x509: peer certificate was not verified"

/* err->code values set by this module (beyond base/err.h's). */
enum pki_error {
    PKI_E_BAD_SPIFFE_ID = 100,
    PKI_E_BAD_TRUST_DOMAIN,
    PKI_E_UNKNOWN_AUTHORITY,
    PKI_E_EXPIRED,
    PKI_E_NOT_YET_VALID,
    PKI_E_URI_SAN,           /* none, or more than one */
    PKI_E_TRUST_DOMAIN_MISMATCH,
    PKI_E_UNEXPECTED_ROLE,
    PKI_E_SPIFFE_ID_MISMATCH,
    PKI_E_LEAF_IS_CA,
    PKI_E_NO_IP_SANS,
    PKI_E_IP_SAN_MISMATCH,
    PKI_E_CA_KEY_USAGE,
    PKI_E_BAD_CERT,          /* not parseable / unsupported */
    PKI_E_BAD_CSR,
    PKI_E_BAD_KEY,
    PKI_E_INVALID_CA,
    PKI_E_SVID_KEY_USAGE,    /* a leaf's keyUsage/EKU break the X509-SVID profile */
    PKI_E_SIGNING_CERT_ID,   /* a CA carries a SPIFFE ID with a path */
    PKI_E_BAD_SIGNATURE,     /* a proof of possession that does not verify */
};

/* ---- SPIFFE IDs -------------------------------------------------------- */

#define PKI_SPIFFE_ID_MAX 2048
#define PKI_TRUST_DOMAIN_MAX 255
#define PKI_NAME_MAX 128

enum pki_role {
    PKI_ROLE_NONE = 0, /* a valid SPIFFE ID that is not one of ours */
    PKI_ROLE_CONTROLLER,
    PKI_ROLE_CONNECTOR,
    PKI_ROLE_TUNNELER,
};

struct pki_spiffe_id {
    char uri[PKI_SPIFFE_ID_MAX + 1];
    char trust_domain[PKI_TRUST_DOMAIN_MAX + 1];
    enum pki_role role;                /* from the first path segment */
    char name[PKI_NAME_MAX + 1];       /* second segment when there are exactly two */
};

/* Parses uri exactly per the SPIFFE ID standard. Errors name the rule. A bad
 * trust domain reads `cannot parse URI "<uri>": invalid domain`. */
int pki_spiffe_id_parse(const char *uri, struct pki_spiffe_id *out, struct ztr_err *err);

/* The path of a parsed ID ("" or "/seg/seg"), inside id->uri: not a copy,
 * so that every connection's peer ID stays small. */
const char *pki_spiffe_id_path(const struct pki_spiffe_id *id);

/* Checks a bare trust domain (TRUST_DOMAIN=...). */
int pki_trust_domain_check(const char *trust_domain, struct ztr_err *err);

/* Builds spiffe://<td>/<role>[/<name>] and checks it. name is NULL for the
 * controller. */
int pki_spiffe_id_build(const char *trust_domain, enum pki_role role, const char *name,
                        struct pki_spiffe_id *out, struct ztr_err *err);

const char *pki_role_name(enum pki_role role);
/* 0 and *out for controller|connector|tunneler, -1 otherwise. */
int pki_role_parse(const char *name, enum pki_role *out);

/* ---- IP addresses ------------------------------------------------------ */

struct pki_ip {
    uint8_t len;       /* 4 or 16 */
    uint8_t bytes[16];
};

int pki_ip_parse(const char *text, struct pki_ip *out);
/* Writes the canonical text form (inet_ntop). */
const char *pki_ip_format(const struct pki_ip *ip, char *buf, size_t cap);

/* ---- keys and CSRs ----------------------------------------------------- */

struct pki_key;

int pki_key_generate(struct pki_key **out, struct ztr_err *err);
/* Accepts "EC PRIVATE KEY" (SEC1) and "PRIVATE KEY" (PKCS#8) PEM, P-256. */
int pki_key_from_pem(const char *pem, size_t len, struct pki_key **out, struct ztr_err *err);
int pki_key_to_pem(const struct pki_key *key, char **pem, size_t *len, struct ztr_err *err);
/* SubjectPublicKeyInfo DER of the key. */
int pki_key_public_der(const struct pki_key *key, uint8_t **der, size_t *len,
                       struct ztr_err *err);
void pki_key_free(struct pki_key *key);

/* Whether two SubjectPublicKeyInfo DERs hold the same P-256 key, compared
 * as decoded points, not as bytes: one key has more than one encoding a
 * parser accepts (trailing data in the SEQUENCE, for one), so a byte
 * comparison can be walked around. Returns 1 equal, 0 different, -1 with
 * err when either is not a P-256 public key. */
int pki_public_key_equal(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
                         struct ztr_err *err);

/* Hex SHA-256 of the key's uncompressed point: the same for every encoding
 * of one key (see pki_public_key_equal). out receives 64 hex digits + NUL. */
#define PKI_KEY_FINGERPRINT_MAX 64
int pki_public_key_fingerprint(const uint8_t *spki, size_t len,
                               char out[PKI_KEY_FINGERPRINT_MAX + 1], struct ztr_err *err);

/* Proofs of possession (re-authentication after an expiry, a renewed
 * data-plane identity): ECDSA P-256 over the SHA-256 of data, DER-encoded,
 * at most PKI_SIGNATURE_MAX bytes. The caller builds data with a
 * domain-separating prefix so that one signature can never stand for
 * another purpose. */
#define PKI_SIGNATURE_MAX 80
int pki_key_sign(const struct pki_key *key, const uint8_t *data, size_t len,
                 uint8_t sig[PKI_SIGNATURE_MAX], size_t *sig_len, struct ztr_err *err);
/* 0 when sig is a valid signature over data by the key in spki (a
 * SubjectPublicKeyInfo DER, P-256); -1 with err (PKI_E_BAD_SIGNATURE when it
 * does not verify, PKI_E_BAD_KEY when spki is not a P-256 key). */
int pki_signature_verify(const uint8_t *spki, size_t spki_len, const uint8_t *data, size_t len,
                         const uint8_t *sig, size_t sig_len, struct ztr_err *err);

/* Hex SHA-256 of data (64 digits + NUL): remembering a secret without
 * keeping it (an agent notes which enrollment token it already tried). */
int pki_sha256_hex(const void *data, size_t len, char out[65], struct ztr_err *err);

/* A PKCS#10 request proving possession of key; subject CN = common_name. */
int pki_csr_create(const struct pki_key *key, const char *common_name, char **pem,
                   size_t *len, struct ztr_err *err);

struct pki_csr;

/* Parses PEM or DER, requires a P-256 key and checks the self-signature. */
int pki_csr_parse(const uint8_t *data, size_t len, struct pki_csr **out, struct ztr_err *err);
/* SubjectPublicKeyInfo DER; owned by csr. */
const uint8_t *pki_csr_public_der(const struct pki_csr *csr, size_t *len);
const char *pki_csr_common_name(const struct pki_csr *csr);
void pki_csr_free(struct pki_csr *csr);

/* ---- certificates ------------------------------------------------------ */

#define PKI_MAX_IP_SANS 32
#define PKI_MAX_CHAIN 8
#define PKI_CERT_MAX_DER (64 * 1024)

enum pki_key_usage_bits {
    PKI_KU_DIGITAL_SIGNATURE = 0x80,  /* bit 0 */
    PKI_KU_KEY_CERT_SIGN = 0x04,      /* bit 5 */
    PKI_KU_CRL_SIGN = 0x02,           /* bit 6 */
};

enum pki_key_type { PKI_KEY_OTHER = 0, PKI_KEY_EC_P256, PKI_KEY_EC_OTHER, PKI_KEY_RSA };

/* What ztr needs to know about one certificate, read with our own bounded
 * DER parser (independent of how wolfSSL was configured). */
struct pki_cert_info {
    int64_t not_before;
    int64_t not_after;
    bool is_ca;                 /* basicConstraints cA */
    bool has_basic_constraints;
    bool has_key_usage;
    uint16_t key_usage;         /* first byte of the bit string, PKI_KU_* */
    bool eku_server_auth;
    bool eku_client_auth;
    bool has_eku;
    size_t uri_count;
    char uri[PKI_SPIFFE_ID_MAX + 1];          /* the first URI SAN */
    size_t dns_count;
    size_t ip_count;
    struct pki_ip ips[PKI_MAX_IP_SANS];
    bool unknown_critical_extension;
    enum pki_key_type key_type;
    char serial_hex[2 * 20 + 1];
    char subject_cn[128];
    char fingerprint_sha256[64 + 1];
};

/* der/len: one DER certificate. */
int pki_cert_info_parse(const uint8_t *der, size_t len, struct pki_cert_info *out,
                        struct ztr_err *err);

/* A chain: leaf first, then intermediates (the TLS order). */
struct pki_chain;

/* PEM with one or more CERTIFICATE blocks. */
int pki_chain_from_pem(const char *pem, size_t len, struct pki_chain **out,
                       struct ztr_err *err);
int pki_chain_from_der_list(const uint8_t *const *ders, const size_t *lens, size_t count,
                            struct pki_chain **out, struct ztr_err *err);
size_t pki_chain_length(const struct pki_chain *chain);
/* The leaf's SubjectPublicKeyInfo DER (owned by chain), or NULL. */
const uint8_t *pki_chain_leaf_public_key(const struct pki_chain *chain, size_t *len);
const uint8_t *pki_chain_der(const struct pki_chain *chain, size_t idx, size_t *len);
int pki_chain_to_pem(const struct pki_chain *chain, char **pem, size_t *len,
                     struct ztr_err *err);
void pki_chain_free(struct pki_chain *chain);

/* ---- trust bundles ----------------------------------------------------- */

/* A set of CA certificates, every one checked on load: CA:TRUE and
 * keyCertSign, else `CA certificate missing key usage`. */
struct pki_bundle;

int pki_bundle_from_pem(const char *pem, size_t len, struct pki_bundle **out,
                        struct ztr_err *err);
size_t pki_bundle_length(const struct pki_bundle *bundle);
const uint8_t *pki_bundle_der(const struct pki_bundle *bundle, size_t idx, size_t *len);
int pki_bundle_to_pem(const struct pki_bundle *bundle, char **pem, size_t *len,
                      struct ztr_err *err);
void pki_bundle_free(struct pki_bundle *bundle);

/* ---- validation -------------------------------------------------------- */

struct pki_expect {
    const char *trust_domain;   /* required */
    enum pki_role role;         /* required */
    enum pki_role also_role;    /* optional second accepted role (the controller
                                   serves connectors and tunnelers alike) */
    const char *spiffe_id;      /* optional: the exact ID announced for the peer */
    const char *dial_ip;        /* optional: we dialed this IP; its SAN must match */
    int64_t now;                /* Unix seconds the validity window is checked at */
};

/*
 * The one validation function, in this order:
 *   chain to the bundle (every intermediate CA:TRUE with keyCertSign and no
 *   SPIFFE ID path) → validity window (every certificate) → exactly one
 *   URI SAN → SPIFFE ID parse → trust domain equal → expected role →
 *   (spiffe_id equal) → the X509-SVID leaf profile (not a CA; keyUsage
 *   digitalSignature without keyCertSign or cRLSign; an EKU, when present,
 *   with serverAuth and clientAuth) → (dial_ip) an IP SAN byte-equal to the
 *   dialed address.
 * On success fills *peer (optional).
 */
int pki_verify(const struct pki_bundle *bundle, const struct pki_chain *chain,
               const struct pki_expect *expect, struct pki_spiffe_id *peer,
               struct ztr_err *err);

/* ---- issuing ----------------------------------------------------------- */

struct pki_ca;

/* A new self-signed P-256 CA for trust_domain, valid [now-60s, now+lifetime). */
int pki_ca_create(const char *trust_domain, int64_t now, int64_t lifetime_s,
                  struct pki_ca **out, struct ztr_err *err);
/* A new self-signed P-256 CA that names no trust domain (no URI SAN), for
 * certificates outside SPIFFE: it signs only pki_ca_issue_server leaves,
 * which no pki_verify accepts as an identity. */
int pki_ca_create_named(const char *common_name, int64_t now, int64_t lifetime_s,
                        struct pki_ca **out, struct ztr_err *err);
/* Loads an operator CA: the cert must be a CA with keyCertSign and the key
 * must match it. Bad PEM gives `invalid internal CA`. */
int pki_ca_load(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                struct pki_ca **out, struct ztr_err *err);
int pki_ca_cert_pem(const struct pki_ca *ca, char **pem, size_t *len, struct ztr_err *err);
int pki_ca_key_pem(const struct pki_ca *ca, char **pem, size_t *len, struct ztr_err *err);
const struct pki_cert_info *pki_ca_info(const struct pki_ca *ca);
/* The certificates of several CAs as one PEM bundle (malloc()ed). */
int pki_cas_to_pem(struct pki_ca *const *cas, size_t count, char **pem, size_t *len,
                   struct ztr_err *err);
void pki_ca_free(struct pki_ca *ca);

#define PKI_MAX_DNS_SANS 16

struct pki_leaf_request {
    const struct pki_spiffe_id *id;   /* the only URI SAN */
    const uint8_t *public_der;        /* SubjectPublicKeyInfo (from pki_csr) */
    size_t public_len;
    const struct pki_ip *ips;         /* IP SANs (connectors) */
    size_t ip_count;
    int64_t not_before;               /* Unix seconds, written as given */
    int64_t not_after;
    /* DNS SANs beside the URI SAN (the names a controller is dialed by;
     * X.509-SVID allows them, identity stays the URI SAN) */
    const char *const *dns_names;
    size_t dns_count;                 /* at most PKI_MAX_DNS_SANS */
};

/* Issues a leaf SVID: CA:FALSE, keyUsage digitalSignature, EKU
 * serverAuth+clientAuth, SKID/AKID, random 128-bit serial. */
int pki_ca_issue(struct pki_ca *ca, const struct pki_leaf_request *request, char **pem,
                 size_t *len, struct ztr_err *err);

/* A plain TLS server certificate (the admin API's), not an SVID. */
struct pki_server_request {
    const char *common_name;          /* informational */
    const uint8_t *public_der;        /* SubjectPublicKeyInfo */
    size_t public_len;
    const char *const *dns_names;     /* DNS SANs, checked by the caller */
    size_t dns_count;                 /* at most PKI_MAX_DNS_SANS */
    const struct pki_ip *ips;         /* IP SANs */
    size_t ip_count;                  /* at most PKI_MAX_IP_SANS; dns + ip >= 1 */
    int64_t not_before;               /* clamped to the CA's validity */
    int64_t not_after;
};

/* Issues a server certificate: CA:FALSE, keyUsage digitalSignature, EKU
 * serverAuth only, DNS and IP SANs and no URI SAN, so it can never pass
 * pki_verify as a SPIFFE identity (nor serve as a client certificate). */
int pki_ca_issue_server(struct pki_ca *ca, const struct pki_server_request *request,
                        char **pem, size_t *len, struct ztr_err *err);

/* Issues a subordinate CA certificate for public_der (intermediates). */
int pki_ca_issue_intermediate(struct pki_ca *ca, const char *common_name,
                              const uint8_t *public_der, size_t public_len, int64_t not_before,
                              int64_t not_after, char **pem, size_t *len, struct ztr_err *err);

/* Loads a CA made by pki_ca_issue_intermediate together with its key. */
#define pki_ca_load_intermediate pki_ca_load

/* ---- TLS --------------------------------------------------------------- */

/*
 * Runs pki_verify from inside a wolfSSL handshake. The caller owns check and
 * keeps it alive for the connection's lifetime; after a failed handshake
 * check->err holds the reason (one of the texts above). The hook never
 * accepts a certificate wolfSSL itself rejected.
 *
 * ssl is a WOLFSSL *; typed void * so that this header does not pull in
 * wolfSSL for modules that do not use TLS.
 */
#define PKI_PUBLIC_KEY_MAX 600

struct pki_tls_check {
    const struct pki_bundle *bundle;
    struct pki_expect expect;          /* expect.now is ignored; clock is read */
    const struct ztr_clock *clock;
    bool peer_cert_optional;           /* server side: a client may present none
                                          (then verified stays false) */
    /* Optional, for a server that admits peers of several trust domains
     * (federation): the bundle a client's chain must verify against is
     * chosen by the trust domain its leaf claims, and only that bundle and
     * that trust domain are checked (bundle above is then only wolfSSL's
     * set of anchors, the union). -1: that trust domain is not admitted.
     * The hook frees *bundle. */
    int (*resolve)(void *ctx, const char *trust_domain, struct pki_bundle **bundle,
                   struct ztr_err *err);
    void *resolve_ctx;
    char resolved_trust_domain[PKI_TRUST_DOMAIN_MAX + 1];
    /* results */
    bool verified;
    /* The verified peer's chain as it sent it (owned: pki_tls_check_release).
     * Kept here, at its real size, rather than in wolfSSL's session, whose
     * copy costs every connection ~18 KiB (docs/WOLFSSL.md). */
    struct pki_chain *chain;
    struct pki_spiffe_id peer;
    uint8_t peer_public_key[PKI_PUBLIC_KEY_MAX];  /* SubjectPublicKeyInfo DER */
    size_t peer_public_key_len;
    struct ztr_err err;
};

int pki_tls_check_install(void *ssl, struct pki_tls_check *check, struct ztr_err *err);
/* Frees what a check holds (the peer's chain). */
void pki_tls_check_release(struct pki_tls_check *check);

/* Called once wolfSSL reports the handshake done, before the connection is
 * used: 0 when the peer may be admitted (the hook verified it, or it sent
 * no certificate at all to a server with peer_cert_optional), else -1 with
 * PKI_MSG_PEER_NOT_VERIFIED (or the hook's own reason). Defence in depth:
 * a handshake must never complete on a peer the hook did not judge. */
int pki_tls_check_admit(const struct pki_tls_check *check, bool peer_sent_certificate,
                        struct ztr_err *err);

/* Loads every CA of the bundle as a trust anchor of a WOLFSSL_CTX (void *),
 * accepting CAs outside their validity window (pki_verify decides that). */
int pki_tls_load_bundle(void *ctx, const struct pki_bundle *bundle, struct ztr_err *err);

/* Maps a wolfSSL verification error to the operator text. */
const char *pki_tls_error_text(int wolfssl_error);

/* ---- misc -------------------------------------------------------------- */

/* Initialises wolfSSL once per process (idempotent). */
int pki_init(struct ztr_err *err);
void pki_cleanup(void);

/* ---- sealing secrets at rest --------------------------------------------
 * AES-256-GCM under a 32-byte key kept elsewhere (a file the holder reads),
 * a fresh random nonce per seal, the context string authenticated with it
 * (a secret unsealed under another context fails). Sealed: nonce (12) ||
 * ciphertext || tag (16). *out is malloc()ed (unseal: NUL-terminated too;
 * wipe it when done). */
#define PKI_SEAL_KEY_BYTES 32
int pki_seal(const uint8_t key[PKI_SEAL_KEY_BYTES], const char *context, const uint8_t *plain,
             size_t len, uint8_t **out, size_t *out_len, struct ztr_err *err);
int pki_unseal(const uint8_t key[PKI_SEAL_KEY_BYTES], const char *context,
               const uint8_t *sealed, size_t len, uint8_t **out, size_t *out_len,
               struct ztr_err *err);
/* path: 32 raw bytes or 64 hex digits (a trailing newline allowed); made
 * private to its owner when ours, refused when another user's (as every
 * key file). */
int pki_seal_key_load(const char *path, uint8_t key[PKI_SEAL_KEY_BYTES], struct ztr_err *err);

#endif
