#define _GNU_SOURCE
/* Sealing secrets at rest (pki/seal.c): a round trip, and every way an
 * unseal must fail: another key, another context, altered bytes, a short
 * input; the key file's forms and its mode. */
#include "tests/unit/support.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pki/pki.h"

static const uint8_t key_a[PKI_SEAL_KEY_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                                  17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static void
test_round_trip_and_refusals(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    assert_int_equal(pki_init(&err), 0);
    const char *secret = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE...\n";
    uint8_t *sealed = NULL, *plain = NULL;
    size_t sealed_len = 0, plain_len = 0;
    assert_int_equal(pki_seal(key_a, "ztr-ca-key/1/example.org", (const uint8_t *)secret,
                              strlen(secret), &sealed, &sealed_len, &err),
                     0);
    assert_int_equal(sealed_len, strlen(secret) + 28);
    assert_null(memmem(sealed, sealed_len, "PRIVATE KEY", 11));
    assert_int_equal(pki_unseal(key_a, "ztr-ca-key/1/example.org", sealed, sealed_len, &plain,
                                &plain_len, &err),
                     0);
    assert_int_equal(plain_len, strlen(secret));
    assert_memory_equal(plain, secret, plain_len);
    free(plain);
    /* Two seals of the same secret differ (fresh nonce). */
    uint8_t *again = NULL;
    size_t again_len = 0;
    assert_int_equal(pki_seal(key_a, "c", (const uint8_t *)"x", 1, &again, &again_len, &err), 0);
    uint8_t *again2 = NULL;
    assert_int_equal(pki_seal(key_a, "c", (const uint8_t *)"x", 1, &again2, &again_len, &err), 0);
    assert_memory_not_equal(again, again2, again_len);
    free(again);
    free(again2);
    /* Another key, another context, an altered byte: refused, same text. */
    uint8_t key_b[PKI_SEAL_KEY_BYTES];
    memcpy(key_b, key_a, sizeof(key_b));
    key_b[0] ^= 1;
    assert_int_equal(pki_unseal(key_b, "ztr-ca-key/1/example.org", sealed, sealed_len, &plain,
                                &plain_len, &err),
                     -1);
    assert_non_null(strstr(err.msg, "authentication failed"));
    assert_int_equal(pki_unseal(key_a, "ztr-ca-key/2/example.org", sealed, sealed_len, &plain,
                                &plain_len, &err),
                     -1);
    sealed[20] ^= 0x40;
    assert_int_equal(pki_unseal(key_a, "ztr-ca-key/1/example.org", sealed, sealed_len, &plain,
                                &plain_len, &err),
                     -1);
    assert_int_equal(pki_unseal(key_a, "c", sealed, 10, &plain, &plain_len, &err), -1);
    free(sealed);
}

static void
test_key_file_forms_and_mode(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char *path = test_path(dir, "seal.key");
    uint8_t key[PKI_SEAL_KEY_BYTES];
    struct ztr_err err = {0};
    test_write_file(path, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
    chmod(path, 0600);
    assert_int_equal(pki_seal_key_load(path, key, &err), 0);
    assert_int_equal(key[0], 0);
    assert_int_equal(key[31], 0x1f);
    test_write_file(path, "too short\n");
    chmod(path, 0600);
    assert_int_equal(pki_seal_key_load(path, key, &err), -1);
    assert_non_null(strstr(err.msg, "openssl rand -hex 32"));
    test_write_file(path, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
    /* Readable by others: narrowed to its owner, as every key file is. */
    chmod(path, 0644);
    assert_int_equal(pki_seal_key_load(path, key, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    test_rmtree(dir);
    free(path);
    free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_refusals),
        cmocka_unit_test(test_key_file_forms_and_mode),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pki_cleanup();
    return rc;
}
