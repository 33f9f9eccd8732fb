/* Public-key comparison: the same key in two encodings is the same key.
 * Proofs of possession: a signature verifies with its key only, over its
 * data only. */
#include "tests/unit/support.h"

#include <stdlib.h>
#include <string.h>

#include "pki/pki.h"

static void
spki_of_new_key(uint8_t **der, size_t *len)
{
    struct pki_key *key;
    struct ztr_err err = {0};
    assert_int_equal(pki_key_generate(&key, &err), 0);
    assert_int_equal(pki_key_public_der(key, der, len, &err), 0);
    pki_key_free(key);
}

/* The same SubjectPublicKeyInfo with a NULL after the BIT STRING inside the
 * outer SEQUENCE: bytes differ, the key does not, and wolfSSL's decoder
 * accepts it (a CSR carrying it parses). */
static uint8_t *
with_trailing_null(const uint8_t *der, size_t len, size_t *out_len)
{
    assert_true(len == 91 && der[0] == 0x30 && der[1] == 0x59);
    uint8_t *out = malloc(len + 2);
    assert_non_null(out);
    memcpy(out, der, len);
    out[1] = 0x5b;
    out[len] = 0x05;
    out[len + 1] = 0x00;
    *out_len = len + 2;
    return out;
}

static void
test_same_key_in_another_encoding_is_equal(void **state)
{
    (void)state;
    uint8_t *a, *b;
    size_t a_len, b_len, alt_len;
    struct ztr_err err = {0};
    spki_of_new_key(&a, &a_len);
    spki_of_new_key(&b, &b_len);
    uint8_t *alt = with_trailing_null(a, a_len, &alt_len);
    assert_true(alt_len != a_len || memcmp(alt, a, a_len) != 0);
    assert_int_equal(pki_public_key_equal(a, a_len, a, a_len, &err), 1);
    assert_int_equal(pki_public_key_equal(a, a_len, alt, alt_len, &err), 1);
    assert_int_equal(pki_public_key_equal(a, a_len, b, b_len, &err), 0);

    char fa[PKI_KEY_FINGERPRINT_MAX + 1], falt[PKI_KEY_FINGERPRINT_MAX + 1],
        fb[PKI_KEY_FINGERPRINT_MAX + 1];
    assert_int_equal(pki_public_key_fingerprint(a, a_len, fa, &err), 0);
    assert_int_equal(pki_public_key_fingerprint(alt, alt_len, falt, &err), 0);
    assert_int_equal(pki_public_key_fingerprint(b, b_len, fb, &err), 0);
    assert_int_equal(strlen(fa), PKI_KEY_FINGERPRINT_MAX);
    assert_string_equal(fa, falt);
    assert_string_not_equal(fa, fb);
    free(a);
    free(b);
    free(alt);
}

static void
test_not_a_key_is_an_error(void **state)
{
    (void)state;
    uint8_t *a;
    size_t a_len;
    struct ztr_err err = {0};
    spki_of_new_key(&a, &a_len);
    const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
    assert_int_equal(pki_public_key_equal(a, a_len, junk, sizeof(junk), &err), -1);
    assert_int_equal(err.code, PKI_E_BAD_KEY);
    char fp[PKI_KEY_FINGERPRINT_MAX + 1];
    assert_int_equal(pki_public_key_fingerprint(junk, sizeof(junk), fp, &err), -1);
    free(a);
}

static void
test_signature_proves_possession_of_that_key_over_that_data(void **state)
{
    (void)state;
    struct pki_key *key, *other;
    struct ztr_err err = {0};
    assert_int_equal(pki_key_generate(&key, &err), 0);
    assert_int_equal(pki_key_generate(&other, &err), 0);
    uint8_t *spki, *other_spki;
    size_t spki_len, other_len;
    assert_int_equal(pki_key_public_der(key, &spki, &spki_len, &err), 0);
    assert_int_equal(pki_key_public_der(other, &other_spki, &other_len, &err), 0);
    const uint8_t data[] = "ztr test\0challenge";
    uint8_t sig[PKI_SIGNATURE_MAX];
    size_t sig_len = 0;
    assert_int_equal(pki_key_sign(key, data, sizeof(data), sig, &sig_len, &err), 0);
    assert_true(sig_len > 8 && sig_len <= PKI_SIGNATURE_MAX);
    assert_int_equal(pki_signature_verify(spki, spki_len, data, sizeof(data), sig, sig_len, &err),
                     0);
    /* Another key, other data, a flipped bit, an empty or oversized
     * signature: each refused with the same code. */
    assert_int_equal(pki_signature_verify(other_spki, other_len, data, sizeof(data), sig,
                                          sig_len, &err), -1);
    assert_int_equal(err.code, PKI_E_BAD_SIGNATURE);
    assert_int_equal(pki_signature_verify(spki, spki_len, data, sizeof(data) - 1, sig, sig_len,
                                          &err), -1);
    assert_int_equal(err.code, PKI_E_BAD_SIGNATURE);
    sig[sig_len - 1] ^= 1;
    assert_int_equal(pki_signature_verify(spki, spki_len, data, sizeof(data), sig, sig_len, &err),
                     -1);
    assert_int_equal(err.code, PKI_E_BAD_SIGNATURE);
    assert_int_equal(pki_signature_verify(spki, spki_len, data, sizeof(data), sig, 0, &err), -1);
    assert_int_equal(pki_signature_verify(spki, spki_len, data, sizeof(data), sig,
                                          PKI_SIGNATURE_MAX + 1, &err), -1);
    assert_int_equal(err.code, PKI_E_BAD_SIGNATURE);
    const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
    assert_int_equal(pki_signature_verify(junk, sizeof(junk), data, sizeof(data), sig, sig_len,
                                          &err), -1);
    assert_int_equal(err.code, PKI_E_BAD_KEY);
    free(spki);
    free(other_spki);
    pki_key_free(key);
    pki_key_free(other);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_key_in_another_encoding_is_equal),
        cmocka_unit_test(test_not_a_key_is_an_error),
        cmocka_unit_test(test_signature_proves_possession_of_that_key_over_that_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
