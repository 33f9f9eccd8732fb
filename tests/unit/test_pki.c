#define _GNU_SOURCE
/* Keys, CSRs, issuing, bundles and pki_verify, against certificates made by
 * the module itself and by the openssl CLI (tests/fixtures/foreign-certs.sh). */
#include "tests/unit/support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pki/pki.h"

#define TD "example.org"

struct fixture {
    char *dir;       /* temp dir */
    char *foreign;   /* openssl-made certificates */
    struct pki_ca *ca;
    struct pki_bundle *bundle;
    int64_t now;
};

static struct fixture fx;

static char *
foreign_file(const char *name, size_t *len)
{
    char *path = test_path(fx.foreign, name);
    char *data = test_read_file(path, len);
    free(path);
    return data;
}

static struct pki_bundle *
bundle_of_ca(const struct pki_ca *ca)
{
    char *pem;
    size_t len;
    struct pki_bundle *bundle;
    assert_int_equal(pki_ca_cert_pem(ca, &pem, &len, NULL), 0);
    assert_int_equal(pki_bundle_from_pem(pem, len, &bundle, NULL), 0);
    free(pem);
    return bundle;
}

static struct pki_bundle *
foreign_bundle(const char *name)
{
    size_t len;
    char *pem = foreign_file(name, &len);
    struct pki_bundle *bundle;
    struct ztr_err err = {0};
    if (pki_bundle_from_pem(pem, len, &bundle, &err) != 0)
        fail_msg("bundle %s: %s", name, err.msg);
    free(pem);
    return bundle;
}

static struct pki_chain *
foreign_chain(const char *name)
{
    size_t len;
    char *pem = foreign_file(name, &len);
    struct pki_chain *chain;
    assert_int_equal(pki_chain_from_pem(pem, len, &chain, NULL), 0);
    free(pem);
    return chain;
}

static int
setup(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    assert_int_equal(pki_init(&err), 0);
    fx.dir = test_mkdtemp();
    fx.foreign = test_path(fx.dir, "foreign");
    const char *root = getenv("ZTR_TEST_ROOT");
    assert_non_null(root);
    if (test_sh("bash '%s/tests/fixtures/foreign-certs.sh' '%s' >/dev/null", root, fx.foreign) != 0)
        fail_msg("openssl fixtures failed");
    fx.now = (int64_t)time(NULL);
    assert_int_equal(pki_ca_create(TD, fx.now, 365 * 86400, &fx.ca, &err), 0);
    fx.bundle = bundle_of_ca(fx.ca);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    pki_bundle_free(fx.bundle);
    pki_ca_free(fx.ca);
    test_rmtree(fx.dir);
    free(fx.foreign);
    free(fx.dir);
    pki_cleanup();
    return 0;
}

/* Issues a leaf for role/name with the given IPs, valid [nb, na). */
static struct pki_chain *
issue_leaf(struct pki_ca *ca, enum pki_role role, const char *name, const char *const *ips,
           size_t ip_count, int64_t not_before, int64_t not_after, struct pki_key **key_out)
{
    struct ztr_err err = {0};
    struct pki_key *key;
    assert_int_equal(pki_key_generate(&key, &err), 0);
    uint8_t *public_der;
    size_t public_len;
    assert_int_equal(pki_key_public_der(key, &public_der, &public_len, &err), 0);
    struct pki_spiffe_id id;
    assert_int_equal(pki_spiffe_id_build(TD, role, name, &id, &err), 0);
    struct pki_ip parsed[8];
    for (size_t i = 0; i < ip_count; i++)
        assert_int_equal(pki_ip_parse(ips[i], &parsed[i]), 0);
    struct pki_leaf_request request = {&id,    public_der, public_len, parsed,
                                       ip_count, not_before, not_after, NULL, 0};
    char *pem;
    size_t pem_len;
    if (pki_ca_issue(ca, &request, &pem, &pem_len, &err) != 0)
        fail_msg("issue: %s", err.msg);
    struct pki_chain *chain;
    assert_int_equal(pki_chain_from_pem(pem, pem_len, &chain, &err), 0);
    free(pem);
    free(public_der);
    if (key_out != NULL)
        *key_out = key;
    else
        pki_key_free(key);
    return chain;
}

static struct pki_cert_info
leaf_info(const struct pki_chain *chain)
{
    size_t len;
    const uint8_t *der = pki_chain_der(chain, 0, &len);
    struct pki_cert_info info;
    assert_int_equal(pki_cert_info_parse(der, len, &info, NULL), 0);
    return info;
}

/* Runs pki_verify and returns its error text ("" on success). */
static const char *
verify_text(const struct pki_bundle *bundle, const struct pki_chain *chain,
            enum pki_role role, const char *td, const char *ip, int64_t now)
{
    static struct ztr_err err;
    struct pki_expect expect = {.trust_domain = td, .role = role, .dial_ip = ip, .now = now};
    struct pki_spiffe_id peer;
    ztr_err_clear(&err);
    if (pki_verify(bundle, chain, &expect, &peer, &err) == 0)
        return "";
    return err.msg;
}

#define assert_contains(haystack, needle)                                              \
    do {                                                                               \
        const char *h_ = (haystack);                                                   \
        if (strstr(h_, (needle)) == NULL)                                              \
            fail_msg("\"%s\" does not contain \"%s\"", h_, (needle));                  \
    } while (0)

/* ---- keys ------------------------------------------------------------------ */

static void
test_key_pem_roundtrip_keeps_public_key(void **state)
{
    (void)state;
    struct pki_key *key, *again;
    char *pem;
    size_t len;
    uint8_t *a, *b;
    size_t a_len, b_len;
    assert_int_equal(pki_key_generate(&key, NULL), 0);
    assert_int_equal(pki_key_to_pem(key, &pem, &len, NULL), 0);
    assert_non_null(strstr(pem, "-----BEGIN EC PRIVATE KEY-----"));
    assert_int_equal(pki_key_from_pem(pem, len, &again, NULL), 0);
    assert_int_equal(pki_key_public_der(key, &a, &a_len, NULL), 0);
    assert_int_equal(pki_key_public_der(again, &b, &b_len, NULL), 0);
    assert_int_equal(a_len, b_len);
    assert_memory_equal(a, b, a_len);
    struct pki_key *other;
    uint8_t *c;
    size_t c_len;
    assert_int_equal(pki_key_generate(&other, NULL), 0);
    assert_int_equal(pki_key_public_der(other, &c, &c_len, NULL), 0);
    assert_true(c_len != a_len || memcmp(a, c, a_len) != 0);
    free(a);
    free(b);
    free(c);
    free(pem);
    pki_key_free(key);
    pki_key_free(again);
    pki_key_free(other);
}

static void
test_key_from_openssl_pkcs8_and_bad_keys(void **state)
{
    (void)state;
    struct pki_key *key;
    struct ztr_err err = {0};
    size_t len;
    char *pem = foreign_file("pkcs8.key", &len);
    assert_non_null(strstr(pem, "BEGIN PRIVATE KEY"));
    if (pki_key_from_pem(pem, len, &key, &err) != 0)
        fail_msg("pkcs8: %s", err.msg);
    pki_key_free(key);
    free(pem);
    pem = foreign_file("p384.key", &len);
    assert_int_equal(pki_key_from_pem(pem, len, &key, &err), -1);
    assert_contains(err.msg, "P-256");
    free(pem);
    pem = foreign_file("rsa.key", &len);
    assert_int_equal(pki_key_from_pem(pem, len, &key, &err), -1);
    free(pem);
    assert_int_equal(pki_key_from_pem("garbage", 7, &key, &err), -1);
    assert_int_equal(err.code, PKI_E_BAD_KEY);
    const char *broken = "-----BEGIN EC PRIVATE KEY-----\n!!!!\n-----END EC PRIVATE KEY-----\n";
    assert_int_equal(pki_key_from_pem(broken, strlen(broken), &key, &err), -1);
}

/* ---- CSRs ------------------------------------------------------------------ */

static void
test_csr_roundtrip_proves_key_possession(void **state)
{
    (void)state;
    struct pki_key *key;
    char *pem;
    size_t len;
    struct pki_csr *csr;
    struct ztr_err err = {0};
    assert_int_equal(pki_key_generate(&key, NULL), 0);
    assert_int_equal(pki_csr_create(key, "dc1-a", &pem, &len, &err), 0);
    assert_non_null(strstr(pem, "BEGIN CERTIFICATE REQUEST"));
    if (pki_csr_parse((const uint8_t *)pem, len, &csr, &err) != 0)
        fail_msg("csr: %s", err.msg);
    assert_string_equal(pki_csr_common_name(csr), "dc1-a");
    uint8_t *public_der;
    size_t public_len, csr_public_len;
    assert_int_equal(pki_key_public_der(key, &public_der, &public_len, NULL), 0);
    const uint8_t *csr_public = pki_csr_public_der(csr, &csr_public_len);
    assert_int_equal(public_len, csr_public_len);
    assert_memory_equal(public_der, csr_public, public_len);
    pki_csr_free(csr);
    free(public_der);
    free(pem);
    pki_key_free(key);
}

static void
test_csr_tampered_signature_is_rejected(void **state)
{
    (void)state;
    struct pki_key *key;
    char *pem;
    size_t len;
    struct pki_csr *csr;
    struct ztr_err err = {0};
    assert_int_equal(pki_key_generate(&key, NULL), 0);
    assert_int_equal(pki_csr_create(key, "honest-name", &pem, &len, NULL), 0);
    /* Parse to DER via the PEM path, then flip a byte in the subject. */
    assert_int_equal(pki_csr_parse((const uint8_t *)pem, len, &csr, NULL), 0);
    pki_csr_free(csr);
    char *der_path = test_path(fx.dir, "csr.der");
    char *pem_path = test_path(fx.dir, "csr.pem");
    test_write_file(pem_path, pem);
    assert_int_equal(test_sh("openssl req -in '%s' -outform DER -out '%s'", pem_path, der_path), 0);
    size_t der_len;
    char *der = test_read_file(der_path, &der_len);
    char *hit = memmem(der, der_len, "honest-name", 11);
    assert_non_null(hit);
    hit[0] = 'H';
    assert_int_equal(pki_csr_parse((const uint8_t *)der, der_len, &csr, &err), -1);
    assert_contains(err.msg, "signature does not verify");
    hit[0] = 'h';
    assert_int_equal(pki_csr_parse((const uint8_t *)der, der_len, &csr, &err), 0);
    pki_csr_free(csr);
    assert_int_equal(pki_csr_parse((const uint8_t *)der, der_len - 1, &csr, &err), -1);
    assert_int_equal(pki_csr_parse((const uint8_t *)"", 0, &csr, &err), -1);
    free(der);
    free(der_path);
    free(pem_path);
    free(pem);
    pki_key_free(key);
}

static void
test_csr_from_openssl_parses(void **state)
{
    (void)state;
    size_t len;
    char *pem = foreign_file("openssl.csr", &len);
    struct pki_csr *csr;
    struct ztr_err err = {0};
    if (pki_csr_parse((const uint8_t *)pem, len, &csr, &err) != 0)
        fail_msg("openssl csr: %s", err.msg);
    assert_string_equal(pki_csr_common_name(csr), "from-openssl");
    pki_csr_free(csr);
    free(pem);
}

/* ---- CA and issuing -------------------------------------------------------- */

static void
test_ca_has_ca_flags_and_trust_domain(void **state)
{
    (void)state;
    const struct pki_cert_info *info = pki_ca_info(fx.ca);
    assert_true(info->is_ca);
    assert_true(info->has_key_usage);
    assert_int_equal(info->key_usage & (PKI_KU_KEY_CERT_SIGN | PKI_KU_CRL_SIGN),
                     PKI_KU_KEY_CERT_SIGN | PKI_KU_CRL_SIGN);
    assert_int_equal(info->key_usage & PKI_KU_DIGITAL_SIGNATURE, 0);
    assert_int_equal(info->uri_count, 1);
    assert_string_equal(info->uri, "spiffe://" TD);
    assert_int_equal(info->key_type, PKI_KEY_EC_P256);
    assert_int_equal(info->not_after - info->not_before, 365 * 86400 + 60);
    assert_int_equal(info->not_before, fx.now - 60);
    struct pki_ca *ca;
    struct ztr_err err = {0};
    assert_int_equal(pki_ca_create("example.org.", fx.now, 3600, &ca, &err), -1);
    assert_contains(err.msg, "cannot parse URI \"spiffe://example.org.\": invalid domain");
}

static void
test_leaf_has_exactly_the_svid_profile(void **state)
{
    (void)state;
    const char *ips[] = {"127.0.0.1", "::1"};
    /* A 1-hour SVID is really one hour (wolfSSL alone would give days). */
    struct pki_chain *chain =
        issue_leaf(fx.ca, PKI_ROLE_CONNECTOR, "dc1-a", ips, 2, fx.now - 60, fx.now + 3600, NULL);
    struct pki_cert_info info = leaf_info(chain);
    assert_int_equal(info.not_before, fx.now - 60);
    assert_int_equal(info.not_after, fx.now + 3600);
    assert_int_equal(info.uri_count, 1);
    assert_string_equal(info.uri, "spiffe://" TD "/connector/dc1-a");
    assert_int_equal(info.ip_count, 2);
    assert_int_equal(info.ips[0].len, 4);
    assert_int_equal(info.ips[1].len, 16);
    assert_int_equal(info.dns_count, 0);
    assert_false(info.is_ca);
    assert_true(info.has_basic_constraints);
    assert_int_equal(info.key_usage, PKI_KU_DIGITAL_SIGNATURE);
    assert_true(info.eku_server_auth);
    assert_true(info.eku_client_auth);
    assert_false(info.unknown_critical_extension);
    assert_int_equal(strlen(info.serial_hex), 32);
    assert_int_equal(strlen(info.fingerprint_sha256), 64);
    assert_string_equal(info.subject_cn, "dc1-a");
    struct pki_chain *second =
        issue_leaf(fx.ca, PKI_ROLE_CONNECTOR, "dc1-a", ips, 2, fx.now - 60, fx.now + 3600, NULL);
    struct pki_cert_info info2 = leaf_info(second);
    assert_string_not_equal(info.serial_hex, info2.serial_hex);
    pki_chain_free(chain);
    pki_chain_free(second);
}

static void
test_leaf_dates_past_2049_use_generalized_time(void **state)
{
    (void)state;
    struct pki_ca *ca;
    int64_t start = 2524608000; /* 2050-01-01 */
    assert_int_equal(pki_ca_create(TD, start, 86400, &ca, NULL), 0);
    struct pki_chain *chain =
        issue_leaf(ca, PKI_ROLE_TUNNELER, "future", NULL, 0, start, start + 3600, NULL);
    struct pki_cert_info info = leaf_info(chain);
    assert_int_equal(info.not_before, start);
    assert_int_equal(info.not_after, start + 3600);
    pki_chain_free(chain);
    pki_ca_free(ca);
}

static void
test_issue_refuses_other_trust_domain_and_outside_ca_life(void **state)
{
    (void)state;
    struct pki_key *key;
    uint8_t *public_der;
    size_t public_len;
    char *pem;
    size_t len;
    struct ztr_err err = {0};
    assert_int_equal(pki_key_generate(&key, NULL), 0);
    assert_int_equal(pki_key_public_der(key, &public_der, &public_len, NULL), 0);
    struct pki_spiffe_id other;
    assert_int_equal(pki_spiffe_id_build("example.com", PKI_ROLE_TUNNELER, "t", &other, NULL), 0);
    struct pki_leaf_request request = {&other, public_der, public_len, NULL, 0, fx.now,
                                       fx.now + 60, NULL, 0};
    assert_int_equal(pki_ca_issue(fx.ca, &request, &pem, &len, &err), -1);
    assert_contains(err.msg, "SPIFFE trust domain mismatch");
    struct pki_spiffe_id id;
    assert_int_equal(pki_spiffe_id_build(TD, PKI_ROLE_TUNNELER, "t", &id, NULL), 0);
    request.id = &id;
    /* Outlives the CA: clamped to the CA's notAfter. */
    request.not_after = fx.now + 2 * 365 * 86400;
    assert_int_equal(pki_ca_issue(fx.ca, &request, &pem, &len, &err), 0);
    struct pki_chain *clamped;
    assert_int_equal(pki_chain_from_pem(pem, len, &clamped, NULL), 0);
    assert_int_equal(leaf_info(clamped).not_after, pki_ca_info(fx.ca)->not_after);
    pki_chain_free(clamped);
    free(pem);
    /* Entirely after the CA's life: refused. */
    request.not_before = pki_ca_info(fx.ca)->not_after + 10;
    request.not_after = request.not_before + 60;
    assert_int_equal(pki_ca_issue(fx.ca, &request, &pem, &len, &err), -1);
    assert_contains(err.msg, "within the CA");
    request.not_before = fx.now;
    request.not_after = request.not_before;
    assert_int_equal(pki_ca_issue(fx.ca, &request, &pem, &len, &err), -1);
    request.not_after = fx.now + 60;
    request.public_len = 10;
    assert_int_equal(pki_ca_issue(fx.ca, &request, &pem, &len, &err), -1);
    free(public_der);
    pki_key_free(key);
}

static void
test_ca_load_roundtrip_and_errors(void **state)
{
    (void)state;
    char *cert_pem, *key_pem;
    size_t cert_len, key_len;
    struct pki_ca *ca;
    struct ztr_err err = {0};
    assert_int_equal(pki_ca_cert_pem(fx.ca, &cert_pem, &cert_len, NULL), 0);
    assert_int_equal(pki_ca_key_pem(fx.ca, &key_pem, &key_len, NULL), 0);
    assert_int_equal(pki_ca_load(cert_pem, cert_len, key_pem, key_len, &ca, &err), 0);
    assert_string_equal(pki_ca_info(ca)->fingerprint_sha256,
                        pki_ca_info(fx.ca)->fingerprint_sha256);
    /* A leaf issued by the reloaded CA verifies against the original bundle. */
    struct pki_chain *chain =
        issue_leaf(ca, PKI_ROLE_TUNNELER, "reload", NULL, 0, fx.now - 60, fx.now + 60, NULL);
    assert_string_equal(verify_text(fx.bundle, chain, PKI_ROLE_TUNNELER, TD, NULL, fx.now), "");
    pki_chain_free(chain);
    pki_ca_free(ca);

    /* Wrong key for the certificate. */
    struct pki_key *other;
    char *other_pem;
    size_t other_len;
    assert_int_equal(pki_key_generate(&other, NULL), 0);
    assert_int_equal(pki_key_to_pem(other, &other_pem, &other_len, NULL), 0);
    assert_int_equal(pki_ca_load(cert_pem, cert_len, other_pem, other_len, &ca, &err), -1);
    assert_contains(err.msg, "invalid internal CA");
    /* Bad PEM for the certificate and for the key. */
    assert_int_equal(pki_ca_load("not pem", 7, key_pem, key_len, &ca, &err), -1);
    assert_contains(err.msg, "invalid internal CA");
    assert_int_equal(err.code, PKI_E_INVALID_CA);
    const char *broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert_int_equal(pki_ca_load(broken, strlen(broken), key_pem, key_len, &ca, &err), -1);
    assert_contains(err.msg, "invalid internal CA");
    assert_int_equal(pki_ca_load(cert_pem, cert_len, "junk", 4, &ca, &err), -1);
    assert_contains(err.msg, "invalid internal CA");
    /* A CA certificate without keyCertSign (failure-modes §1.5). */
    size_t len;
    char *foreign_cert = foreign_file("nocertsign.crt", &len);
    char *foreign_key_pem = foreign_file("nocertsign.key", &key_len);
    assert_int_equal(pki_ca_load(foreign_cert, len, foreign_key_pem, key_len, &ca, &err), -1);
    assert_contains(err.msg, "CA certificate missing key usage");
    assert_int_equal(err.code, PKI_E_CA_KEY_USAGE);
    free(foreign_cert);
    free(foreign_key_pem);
    /* An openssl-made CA with keyCertSign loads and issues. */
    foreign_cert = foreign_file("goodroot.crt", &len);
    foreign_key_pem = foreign_file("goodroot.key", &key_len);
    if (pki_ca_load(foreign_cert, len, foreign_key_pem, key_len, &ca, &err) != 0)
        fail_msg("goodroot: %s", err.msg);
    struct pki_bundle *good = foreign_bundle("goodroot.crt");
    chain = issue_leaf(ca, PKI_ROLE_CONNECTOR, "op", NULL, 0, fx.now - 60, fx.now + 60, NULL);
    assert_string_equal(verify_text(good, chain, PKI_ROLE_CONNECTOR, TD, NULL, fx.now), "");
    pki_chain_free(chain);
    pki_bundle_free(good);
    pki_ca_free(ca);
    free(foreign_cert);
    free(foreign_key_pem);
    free(other_pem);
    pki_key_free(other);
    free(cert_pem);
    free(key_pem);
}

/* ---- bundles --------------------------------------------------------------- */

static void
test_bundle_rules(void **state)
{
    (void)state;
    struct pki_bundle *bundle;
    struct ztr_err err = {0};
    assert_int_equal(pki_bundle_from_pem("", 0, &bundle, &err), -1);
    assert_contains(err.msg, "invalid internal CA");
    bundle = foreign_bundle("two-roots.pem");
    assert_int_equal(pki_bundle_length(bundle), 2);
    char *pem;
    size_t len;
    assert_int_equal(pki_bundle_to_pem(bundle, &pem, &len, NULL), 0);
    struct pki_bundle *again;
    assert_int_equal(pki_bundle_from_pem(pem, len, &again, NULL), 0);
    assert_int_equal(pki_bundle_length(again), 2);
    size_t a_len, b_len;
    const uint8_t *a = pki_bundle_der(bundle, 1, &a_len);
    const uint8_t *b = pki_bundle_der(again, 1, &b_len);
    assert_int_equal(a_len, b_len);
    assert_memory_equal(a, b, a_len);
    assert_null(pki_bundle_der(bundle, 2, &a_len));
    free(pem);
    pki_bundle_free(again);
    pki_bundle_free(bundle);
    /* Trust anchors must be CAs that may sign certificates: wolfSSL does
     * not check this itself. */
    const char *bad[] = {"nocertsign.crt", "root.crt", "v6.crt"};
    for (size_t i = 0; i < 3; i++) {
        char *text = foreign_file(bad[i], &len);
        assert_int_equal(pki_bundle_from_pem(text, len, &bundle, &err), -1);
        assert_contains(err.msg, "CA certificate missing key usage");
        free(text);
    }
    /* A CA that names a workload is no trust anchor either. */
    char *text = foreign_file("pathinter.crt", &len);
    assert_int_equal(pki_bundle_from_pem(text, len, &bundle, &err), -1);
    assert_int_equal(err.code, PKI_E_SIGNING_CERT_ID);
    assert_contains(err.msg, "a signing certificate may name only its trust domain");
    free(text);
}

/* ---- verification ---------------------------------------------------------- */

/* A controller's SVID names the host names and IPs agents dial it by;
 * the URI SAN stays its only identity. */
static void
test_controller_svid_carries_dns_names(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    struct pki_key *key;
    assert_int_equal(pki_key_generate(&key, &err), 0);
    uint8_t *public_der;
    size_t public_len;
    assert_int_equal(pki_key_public_der(key, &public_der, &public_len, &err), 0);
    struct pki_spiffe_id id;
    assert_int_equal(pki_spiffe_id_build(TD, PKI_ROLE_CONTROLLER, NULL, &id, &err), 0);
    struct pki_ip ip;
    assert_int_equal(pki_ip_parse("127.0.0.1", &ip), 0);
    const char *names[] = {"ctl.example.org", "ctl-2.example.org"};
    struct pki_leaf_request request = {.id = &id, .public_der = public_der,
                                       .public_len = public_len, .ips = &ip, .ip_count = 1,
                                       .not_before = fx.now - 60, .not_after = fx.now + 3600,
                                       .dns_names = names, .dns_count = 2};
    char *pem;
    size_t pem_len;
    if (pki_ca_issue(fx.ca, &request, &pem, &pem_len, &err) != 0)
        fail_msg("issue: %s", err.msg);
    struct pki_chain *chain;
    assert_int_equal(pki_chain_from_pem(pem, pem_len, &chain, &err), 0);
    struct pki_cert_info info = leaf_info(chain);
    assert_int_equal(info.dns_count, 2);
    assert_int_equal(info.uri_count, 1);
    struct pki_expect expect = {.trust_domain = TD, .role = PKI_ROLE_CONTROLLER, .now = fx.now};
    struct pki_spiffe_id peer;
    if (pki_verify(fx.bundle, chain, &expect, &peer, &err) != 0)
        fail_msg("verify: %s", err.msg);
    assert_string_equal(peer.uri, "spiffe://" TD "/controller");
    /* Bounded like a server certificate's. */
    const char *many[PKI_MAX_DNS_SANS + 1];
    for (size_t i = 0; i <= PKI_MAX_DNS_SANS; i++)
        many[i] = "ctl.example.org";
    request.dns_names = many;
    request.dns_count = PKI_MAX_DNS_SANS + 1;
    char *refused = NULL;
    assert_int_equal(pki_ca_issue(fx.ca, &request, &refused, &pem_len, &err), -1);
    assert_int_equal(err.code, ZTR_E_LIMIT);
    pki_chain_free(chain);
    free(pem);
    free(public_der);
    pki_key_free(key);
}

static void
test_verify_accepts_module_leaf_and_reports_peer(void **state)
{
    (void)state;
    const char *ips[] = {"127.0.0.1"};
    struct pki_chain *chain =
        issue_leaf(fx.ca, PKI_ROLE_CONNECTOR, "dc1-a", ips, 1, fx.now - 60, fx.now + 3600, NULL);
    struct pki_expect expect = {.trust_domain = TD,
                                .role = PKI_ROLE_CONNECTOR,
                                .spiffe_id = "spiffe://" TD "/connector/dc1-a",
                                .dial_ip = "127.0.0.1",
                                .now = fx.now};
    struct pki_spiffe_id peer;
    struct ztr_err err = {0};
    if (pki_verify(fx.bundle, chain, &expect, &peer, &err) != 0)
        fail_msg("verify: %s", err.msg);
    assert_string_equal(peer.uri, "spiffe://" TD "/connector/dc1-a");
    assert_int_equal(peer.role, PKI_ROLE_CONNECTOR);
    assert_string_equal(peer.name, "dc1-a");
    /* A second accepted role (the controller takes connectors and tunnelers). */
    expect.spiffe_id = NULL;
    expect.role = PKI_ROLE_TUNNELER;
    assert_int_equal(pki_verify(fx.bundle, chain, &expect, &peer, &err), -1);
    assert_non_null(strstr(err.msg, "expected role tunneler"));
    expect.also_role = PKI_ROLE_CONNECTOR;
    assert_int_equal(pki_verify(fx.bundle, chain, &expect, &peer, &err), 0);
    expect.role = PKI_ROLE_CONTROLLER;
    expect.also_role = PKI_ROLE_TUNNELER;
    assert_int_equal(pki_verify(fx.bundle, chain, &expect, &peer, &err), -1);
    assert_non_null(strstr(err.msg, "expected role controller or tunneler"));
    expect.role = PKI_ROLE_CONNECTOR;
    expect.also_role = PKI_ROLE_NONE;
    expect.spiffe_id = "spiffe://" TD "/connector/dc1-b";
    assert_int_equal(pki_verify(fx.bundle, chain, &expect, &peer, &err), -1);
    assert_int_equal(err.code, PKI_E_SPIFFE_ID_MISMATCH);
    pki_chain_free(chain);
}

static void
test_verify_error_texts_of_the_failure_modes(void **state)
{
    (void)state;
    const char *ips[] = {"127.0.0.1"};
    struct pki_chain *with_ip =
        issue_leaf(fx.ca, PKI_ROLE_CONNECTOR, "dc1-a", ips, 1, fx.now - 60, fx.now + 3600, NULL);
    struct pki_chain *without_ip =
        issue_leaf(fx.ca, PKI_ROLE_CONNECTOR, "dc1-b", NULL, 0, fx.now - 60, fx.now + 3600, NULL);
    /* §2.2, verbatim. */
    assert_string_equal(
        verify_text(fx.bundle, without_ip, PKI_ROLE_CONNECTOR, TD, "10.0.0.5", fx.now),
        "x509: cannot validate certificate for 10.0.0.5 because it doesn't contain any IP SANs");
    assert_contains(verify_text(fx.bundle, with_ip, PKI_ROLE_CONNECTOR, TD, "127.0.0.2", fx.now),
                    "x509: certificate is valid for 127.0.0.1, not 127.0.0.2");
    assert_string_equal(verify_text(fx.bundle, with_ip, PKI_ROLE_CONNECTOR, TD, "127.0.0.1",
                                    fx.now),
                        "");
    /* §2.3 */
    assert_contains(verify_text(fx.bundle, with_ip, PKI_ROLE_TUNNELER, TD, NULL, fx.now),
                    "unexpected SPIFFE role");
    assert_contains(verify_text(fx.bundle, with_ip, PKI_ROLE_CONTROLLER, TD, NULL, fx.now),
                    "unexpected SPIFFE role");
    assert_contains(verify_text(fx.bundle, with_ip, PKI_ROLE_CONNECTOR, "example.com", NULL,
                                fx.now),
                    "SPIFFE trust domain mismatch");
    /* §2.1: a CA the verifier does not trust. */
    struct pki_ca *stranger;
    assert_int_equal(pki_ca_create(TD, fx.now, 86400, &stranger, NULL), 0);
    struct pki_bundle *stranger_bundle = bundle_of_ca(stranger);
    assert_string_equal(verify_text(stranger_bundle, with_ip, PKI_ROLE_CONNECTOR, TD, NULL,
                                    fx.now),
                        "x509: certificate signed by unknown authority");
    pki_bundle_free(stranger_bundle);
    pki_ca_free(stranger);
    pki_chain_free(with_ip);
    pki_chain_free(without_ip);
}

static void
test_verify_validity_window_uses_given_time(void **state)
{
    (void)state;
    int64_t nb = fx.now - 60, na = fx.now + 3600;
    struct pki_chain *chain =
        issue_leaf(fx.ca, PKI_ROLE_TUNNELER, "t1", NULL, 0, nb, na, NULL);
    assert_string_equal(verify_text(fx.bundle, chain, PKI_ROLE_TUNNELER, TD, NULL, nb), "");
    assert_string_equal(verify_text(fx.bundle, chain, PKI_ROLE_TUNNELER, TD, NULL, na), "");
    assert_contains(verify_text(fx.bundle, chain, PKI_ROLE_TUNNELER, TD, NULL, na + 1),
                    "certificate has expired");
    assert_contains(verify_text(fx.bundle, chain, PKI_ROLE_TUNNELER, TD, NULL, nb - 1),
                    "not yet valid");
    pki_chain_free(chain);
}

static void
test_verify_rotation_bundle_trusts_old_and_new(void **state)
{
    (void)state;
    struct pki_ca *next;
    assert_int_equal(pki_ca_create(TD, fx.now, 86400, &next, NULL), 0);
    char *old_pem, *new_pem;
    size_t old_len, new_len;
    assert_int_equal(pki_ca_cert_pem(fx.ca, &old_pem, &old_len, NULL), 0);
    assert_int_equal(pki_ca_cert_pem(next, &new_pem, &new_len, NULL), 0);
    char *both = malloc(old_len + new_len + 1);
    memcpy(both, old_pem, old_len);
    memcpy(both + old_len, new_pem, new_len + 1);
    struct pki_bundle *bundle;
    assert_int_equal(pki_bundle_from_pem(both, old_len + new_len, &bundle, NULL), 0);
    struct pki_chain *old_leaf =
        issue_leaf(fx.ca, PKI_ROLE_TUNNELER, "a", NULL, 0, fx.now - 60, fx.now + 60, NULL);
    struct pki_chain *new_leaf =
        issue_leaf(next, PKI_ROLE_TUNNELER, "b", NULL, 0, fx.now - 60, fx.now + 60, NULL);
    assert_string_equal(verify_text(bundle, old_leaf, PKI_ROLE_TUNNELER, TD, NULL, fx.now), "");
    assert_string_equal(verify_text(bundle, new_leaf, PKI_ROLE_TUNNELER, TD, NULL, fx.now), "");
    assert_contains(verify_text(fx.bundle, new_leaf, PKI_ROLE_TUNNELER, TD, NULL, fx.now),
                    "unknown authority");
    pki_chain_free(old_leaf);
    pki_chain_free(new_leaf);
    pki_bundle_free(bundle);
    free(both);
    free(old_pem);
    free(new_pem);
    pki_ca_free(next);
}

static void
test_verify_module_intermediate_chain(void **state)
{
    (void)state;
    struct pki_key *inter_key;
    uint8_t *public_der;
    size_t public_len;
    char *inter_pem, *inter_key_pem;
    size_t inter_len, inter_key_len;
    struct ztr_err err = {0};
    assert_int_equal(pki_key_generate(&inter_key, NULL), 0);
    assert_int_equal(pki_key_public_der(inter_key, &public_der, &public_len, NULL), 0);
    assert_int_equal(pki_ca_issue_intermediate(fx.ca, "inter", public_der, public_len,
                                               fx.now - 60, fx.now + 86400, &inter_pem,
                                               &inter_len, &err),
                     0);
    assert_int_equal(pki_key_to_pem(inter_key, &inter_key_pem, &inter_key_len, NULL), 0);
    struct pki_ca *inter;
    if (pki_ca_load(inter_pem, inter_len, inter_key_pem, inter_key_len, &inter, &err) != 0)
        fail_msg("intermediate: %s", err.msg);
    assert_true(pki_ca_info(inter)->is_ca);
    struct pki_chain *leaf =
        issue_leaf(inter, PKI_ROLE_TUNNELER, "deep", NULL, 0, fx.now - 60, fx.now + 60, NULL);
    /* Leaf alone: the intermediate is not a trust anchor. */
    assert_contains(verify_text(fx.bundle, leaf, PKI_ROLE_TUNNELER, TD, NULL, fx.now),
                    "unknown authority");
    size_t leaf_len;
    const uint8_t *leaf_der = pki_chain_der(leaf, 0, &leaf_len);
    struct pki_chain *inter_chain;
    assert_int_equal(pki_chain_from_pem(inter_pem, inter_len, &inter_chain, NULL), 0);
    size_t id_len;
    const uint8_t *inter_der = pki_chain_der(inter_chain, 0, &id_len);
    const uint8_t *ders[] = {leaf_der, inter_der};
    size_t lens[] = {leaf_len, id_len};
    struct pki_chain *full;
    assert_int_equal(pki_chain_from_der_list(ders, lens, 2, &full, NULL), 0);
    assert_string_equal(verify_text(fx.bundle, full, PKI_ROLE_TUNNELER, TD, NULL, fx.now), "");
    /* The chain's PEM form round-trips. */
    char *full_pem;
    size_t full_len;
    struct pki_chain *reparsed;
    assert_int_equal(pki_chain_to_pem(full, &full_pem, &full_len, NULL), 0);
    assert_int_equal(pki_chain_from_pem(full_pem, full_len, &reparsed, NULL), 0);
    assert_int_equal(pki_chain_length(reparsed), 2);
    assert_string_equal(verify_text(fx.bundle, reparsed, PKI_ROLE_TUNNELER, TD, NULL, fx.now),
                        "");
    free(full_pem);
    pki_chain_free(reparsed);
    pki_chain_free(full);
    pki_chain_free(inter_chain);
    pki_chain_free(leaf);
    pki_ca_free(inter);
    free(inter_pem);
    free(inter_key_pem);
    free(public_der);
    pki_key_free(inter_key);
}

static void
test_verify_foreign_certificates(void **state)
{
    (void)state;
    struct pki_bundle *good = foreign_bundle("goodroot.crt");
    static const struct {
        const char *file;
        enum pki_role role;
        const char *ip;
        const char *expected; /* "" = accepted */
    } cases[] = {
        {"v6.crt", PKI_ROLE_CONNECTOR, "::1", ""},
        {"v6.crt", PKI_ROLE_CONNECTOR, "fd00:0:0:0:0:0:0:5", ""},
        {"v6.crt", PKI_ROLE_CONNECTOR, "127.0.0.2", ""},
        /* An IPv4 address never matches its IPv4-mapped IPv6 form or ::1. */
        {"v6.crt", PKI_ROLE_CONNECTOR, "127.0.0.1", "is valid for ::1, fd00::5, 127.0.0.2"},
        {"v6.crt", PKI_ROLE_CONNECTOR, "::ffff:127.0.0.2", "not ::ffff:127.0.0.2"},
        {"rsa.crt", PKI_ROLE_TUNNELER, NULL, ""},
        {"twouri.crt", PKI_ROLE_TUNNELER, NULL, "exactly one URI SAN"},
        {"nouri.crt", PKI_ROLE_TUNNELER, NULL, "exactly one URI SAN"},
        /* DNS SANs and wildcards never stand in for an IP SAN. */
        {"dnsonly.crt", PKI_ROLE_CONNECTOR, "127.0.0.1",
         "x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP "
         "SANs"},
        {"leafca.crt", PKI_ROLE_CONNECTOR, "127.0.0.1", "is a CA certificate"},
        {"critext.crt", PKI_ROLE_TUNNELER, NULL, "unhandled critical extension"},
        {"baduri.crt", PKI_ROLE_TUNNELER, NULL, "invalid domain"},
        {"wrongtd.crt", PKI_ROLE_TUNNELER, NULL, "SPIFFE trust domain mismatch"},
        {"foreign.crt", PKI_ROLE_CONNECTOR, "127.0.0.1",
         "x509: certificate signed by unknown authority"},
        {"expired.crt", PKI_ROLE_TUNNELER, NULL, "certificate has expired"},
        {"chained-chain.pem", PKI_ROLE_CONNECTOR, "127.0.0.3", ""},
        {"chained.crt", PKI_ROLE_CONNECTOR, "127.0.0.3", "unknown authority"},
        {"underbad-chain.pem", PKI_ROLE_CONNECTOR, NULL, "CA certificate missing key usage"},
        /* The X509-SVID leaf profile (§4.3, §4.4, §5.2), one broken rule each. */
        {"certsign.crt", PKI_ROLE_TUNNELER, NULL, "has keyUsage keyCertSign"},
        {"crlsign.crt", PKI_ROLE_TUNNELER, NULL, "has keyUsage cRLSign"},
        {"nodigsig.crt", PKI_ROLE_TUNNELER, NULL, "lacks keyUsage digitalSignature"},
        {"noku.crt", PKI_ROLE_TUNNELER, NULL, "lacks keyUsage digitalSignature"},
        {"serveronly.crt", PKI_ROLE_TUNNELER, NULL, "without both serverAuth and clientAuth"},
        {"noeku.crt", PKI_ROLE_TUNNELER, NULL, ""},
        {"nobc.crt", PKI_ROLE_TUNNELER, NULL, ""},
        /* A signing certificate names at most its trust domain (§3). */
        {"underpath-chain.pem", PKI_ROLE_CONNECTOR, NULL,
         "CA certificate \"pathinter\" carries SPIFFE ID spiffe://example.org/connector/pathinter"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pki_chain *chain = foreign_chain(cases[i].file);
        const char *got = verify_text(good, chain, cases[i].role, TD, cases[i].ip, fx.now);
        if (cases[i].expected[0] == '\0' ? got[0] != '\0'
                                         : strstr(got, cases[i].expected) == NULL)
            fail_msg("%s (ip %s): got \"%s\", expected \"%s\"", cases[i].file,
                     cases[i].ip ? cases[i].ip : "-", got, cases[i].expected);
        pki_chain_free(chain);
    }
    /* The same leaf under a bundle of two roots still verifies. */
    struct pki_bundle *two = foreign_bundle("two-roots.pem");
    struct pki_chain *chain = foreign_chain("foreign.crt");
    assert_string_equal(verify_text(two, chain, PKI_ROLE_CONNECTOR, TD, "127.0.0.1", fx.now), "");
    pki_chain_free(chain);
    pki_bundle_free(two);
    pki_bundle_free(good);
}

static void
test_cert_info_of_foreign_certificates(void **state)
{
    (void)state;
    struct pki_chain *chain = foreign_chain("v6.crt");
    struct pki_cert_info info = leaf_info(chain);
    assert_int_equal(info.ip_count, 3);
    assert_int_equal(info.ips[0].len, 16);
    assert_int_equal(info.ips[2].len, 4);
    assert_int_equal(info.key_type, PKI_KEY_EC_P256);
    pki_chain_free(chain);
    chain = foreign_chain("rsa.crt");
    info = leaf_info(chain);
    assert_int_equal(info.key_type, PKI_KEY_RSA);
    pki_chain_free(chain);
    chain = foreign_chain("dnsonly.crt");
    info = leaf_info(chain);
    assert_int_equal(info.dns_count, 2);
    assert_int_equal(info.ip_count, 0);
    pki_chain_free(chain);
}

static void
test_malformed_input_is_an_error_not_a_crash(void **state)
{
    (void)state;
    struct pki_cert_info info;
    struct ztr_err err = {0};
    uint8_t junk[64];
    memset(junk, 0x30, sizeof(junk));
    assert_int_equal(pki_cert_info_parse(junk, sizeof(junk), &info, &err), -1);
    assert_int_equal(err.code, PKI_E_BAD_CERT);
    assert_int_equal(pki_cert_info_parse(junk, 0, &info, &err), -1);
    /* Every truncation of a real certificate is rejected cleanly. */
    struct pki_chain *chain = foreign_chain("v6.crt");
    size_t len;
    const uint8_t *der = pki_chain_der(chain, 0, &len);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, der, cut);
        assert_int_equal(pki_cert_info_parse(copy, cut, &info, NULL), -1);
        free(copy);
    }
    assert_int_equal(pki_cert_info_parse(der, len, &info, NULL), 0);
    pki_chain_free(chain);
    struct pki_chain *none;
    assert_int_equal(pki_chain_from_pem("no pem here", 11, &none, &err), -1);
    const uint8_t *empty[1] = {NULL};
    size_t zero[1] = {0};
    assert_int_equal(pki_chain_from_der_list(empty, zero, 0, &none, &err), -1);
    /* Chains are bounded. */
    const uint8_t *many[PKI_MAX_CHAIN + 1];
    size_t lens[PKI_MAX_CHAIN + 1];
    for (size_t i = 0; i <= PKI_MAX_CHAIN; i++) {
        many[i] = junk;
        lens[i] = sizeof(junk);
    }
    assert_int_equal(pki_chain_from_der_list(many, lens, PKI_MAX_CHAIN + 1, &none, &err), -1);
    struct pki_expect expect = {.trust_domain = TD, .role = PKI_ROLE_TUNNELER, .now = fx.now};
    assert_int_equal(pki_chain_from_der_list(many, lens, 2, &none, &err), 0);
    assert_int_equal(pki_verify(fx.bundle, none, &expect, NULL, &err), -1);
    assert_int_equal(err.code, PKI_E_BAD_CERT);
    pki_chain_free(none);
}

/* The admin API's certificates: a CA that names no trust domain and a
 * server leaf (DNS and IP SANs, serverAuth only, no SPIFFE ID) that no
 * pki_verify takes for an identity, even with its CA in the bundle. */
static void
test_server_certificate_is_no_identity(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    struct pki_ca *ca;
    assert_int_equal(pki_ca_create_named("admin CA", fx.now, 86400, &ca, &err), 0);
    const struct pki_cert_info *ca_info = pki_ca_info(ca);
    assert_true(ca_info->is_ca);
    assert_int_equal(ca_info->uri_count, 0);
    assert_string_equal(ca_info->subject_cn, "admin CA");
    struct pki_ca *unnamed = NULL;
    assert_int_equal(pki_ca_create_named("", fx.now, 86400, &unnamed, &err), -1);
    assert_null(unnamed);

    struct pki_key *key;
    uint8_t *spki;
    size_t spki_len, len;
    assert_int_equal(pki_key_generate(&key, &err), 0);
    assert_int_equal(pki_key_public_der(key, &spki, &spki_len, &err), 0);
    const char *names[] = {"ctl.example.org", "admin"};
    struct pki_ip ip;
    assert_int_equal(pki_ip_parse("10.0.0.1", &ip), 0);
    struct pki_server_request request = {
        .common_name = "admin", .public_der = spki, .public_len = spki_len,
        .dns_names = names, .dns_count = 2, .ips = &ip, .ip_count = 1,
        .not_before = fx.now - 60, .not_after = fx.now + 2 * 86400};
    char *pem;
    if (pki_ca_issue_server(ca, &request, &pem, &len, &err) != 0)
        fail_msg("%s", err.msg);
    struct pki_chain *chain;
    assert_int_equal(pki_chain_from_pem(pem, len, &chain, &err), 0);
    struct pki_cert_info info = leaf_info(chain);
    assert_int_equal(info.uri_count, 0);
    assert_int_equal(info.dns_count, 2);
    assert_int_equal(info.ip_count, 1);
    assert_false(info.is_ca);
    assert_int_equal(info.key_usage, PKI_KU_DIGITAL_SIGNATURE);
    assert_true(info.eku_server_auth);
    assert_false(info.eku_client_auth);
    /* Clamped to the CA's life, as SVIDs are. */
    assert_int_equal(info.not_after, ca_info->not_after);

    struct pki_bundle *bundle = bundle_of_ca(ca);
    struct pki_expect expect = {.trust_domain = TD, .role = PKI_ROLE_CONTROLLER, .now = fx.now};
    assert_int_equal(pki_verify(bundle, chain, &expect, NULL, &err), -1);
    assert_int_equal(err.code, PKI_E_URI_SAN);

    request.dns_count = 0;
    request.ip_count = 0;
    char *none = NULL;
    assert_int_equal(pki_ca_issue_server(ca, &request, &none, &len, &err), -1);
    assert_null(none);
    pki_bundle_free(bundle);
    pki_chain_free(chain);
    free(pem);
    free(spki);
    pki_key_free(key);
    pki_ca_free(ca);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_pem_roundtrip_keeps_public_key),
        cmocka_unit_test(test_controller_svid_carries_dns_names),
        cmocka_unit_test(test_key_from_openssl_pkcs8_and_bad_keys),
        cmocka_unit_test(test_csr_roundtrip_proves_key_possession),
        cmocka_unit_test(test_csr_tampered_signature_is_rejected),
        cmocka_unit_test(test_csr_from_openssl_parses),
        cmocka_unit_test(test_ca_has_ca_flags_and_trust_domain),
        cmocka_unit_test(test_leaf_has_exactly_the_svid_profile),
        cmocka_unit_test(test_leaf_dates_past_2049_use_generalized_time),
        cmocka_unit_test(test_issue_refuses_other_trust_domain_and_outside_ca_life),
        cmocka_unit_test(test_ca_load_roundtrip_and_errors),
        cmocka_unit_test(test_bundle_rules),
        cmocka_unit_test(test_verify_accepts_module_leaf_and_reports_peer),
        cmocka_unit_test(test_verify_error_texts_of_the_failure_modes),
        cmocka_unit_test(test_verify_validity_window_uses_given_time),
        cmocka_unit_test(test_verify_rotation_bundle_trusts_old_and_new),
        cmocka_unit_test(test_verify_module_intermediate_chain),
        cmocka_unit_test(test_verify_foreign_certificates),
        cmocka_unit_test(test_cert_info_of_foreign_certificates),
        cmocka_unit_test(test_malformed_input_is_an_error_not_a_crash),
        cmocka_unit_test(test_server_certificate_is_no_identity),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
