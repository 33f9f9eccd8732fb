/* The controller's CA set: creation, reload, rotation, retirement, operator CAs. */
#include "tests/unit/support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "controller/controller.h"

struct fx {
    char *dir;
    struct ztr_clock clock;
    struct controller_settings settings;
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->dir = test_mkdtemp();
    clock_manual_init(&f->clock, (int64_t)time(NULL) * 1000);
    snprintf(f->settings.trust_domain, sizeof(f->settings.trust_domain), "example.org");
    snprintf(f->settings.state_dir, sizeof(f->settings.state_dir), "%s", f->dir);
    f->settings.svid_ttl_s = 3600;
    assert_int_equal(pki_init(NULL), 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static size_t
bundle_count(struct ca_set *cas)
{
    char *pem;
    size_t len;
    assert_int_equal(ca_set_bundle_pem(cas, &pem, &len, NULL), 0);
    struct pki_bundle *bundle;
    assert_int_equal(pki_bundle_from_pem(pem, len, &bundle, NULL), 0);
    size_t count = pki_bundle_length(bundle);
    pki_bundle_free(bundle);
    free(pem);
    return count;
}

static void
test_first_open_creates_a_ca_and_reopen_keeps_it(void **state)
{
    struct fx *f = *state;
    struct ca_set *cas;
    struct ztr_err err = {0};
    assert_int_equal(ca_set_open(&f->settings, &f->clock, &cas, &err), 0);
    char fingerprint[65];
    snprintf(fingerprint, sizeof(fingerprint), "%s", pki_ca_info(ca_set_signer(cas))->fingerprint_sha256);
    assert_int_equal(ca_set_bundle_version(cas), 1);
    assert_int_equal(bundle_count(cas), 1);
    ca_set_free(cas);
    char *key = test_path(f->dir, "ca/ca-1.key");
    assert_int_equal(test_sh("test \"$(stat -c %%a '%s')\" = 600", key), 0);
    free(key);
    assert_int_equal(ca_set_open(&f->settings, &f->clock, &cas, &err), 0);
    assert_string_equal(pki_ca_info(ca_set_signer(cas))->fingerprint_sha256, fingerprint);
    ca_set_free(cas);
}

static void
test_rotation_adds_then_retires_the_old_ca(void **state)
{
    struct fx *f = *state;
    struct ca_set *cas;
    struct ztr_err err = {0};
    assert_int_equal(ca_set_open(&f->settings, &f->clock, &cas, &err), 0);
    struct pki_ca *first = ca_set_signer(cas);
    assert_int_equal(ca_set_rotate(cas, f->settings.svid_ttl_s, &err), 0);
    assert_ptr_not_equal(ca_set_signer(cas), first);
    assert_ptr_equal(ca_set_oldest(cas), first);
    assert_int_equal(ca_set_bundle_version(cas), 2);
    assert_int_equal(bundle_count(cas), 2);
    /* A leaf issued now comes from the new CA and verifies against the bundle. */
    struct pki_key *key;
    uint8_t *public_der;
    size_t public_len;
    assert_int_equal(pki_key_generate(&key, NULL), 0);
    assert_int_equal(pki_key_public_der(key, &public_der, &public_len, NULL), 0);
    struct pki_spiffe_id id;
    assert_int_equal(pki_spiffe_id_build("example.org", PKI_ROLE_TUNNELER, "t", &id, NULL), 0);
    char *chain_pem;
    size_t chain_len;
    assert_int_equal(ca_set_issue(cas, &id, public_der, public_len, NULL, 0, 600, &chain_pem,
                                  &chain_len, &err), 0);
    struct pki_chain *chain;
    assert_int_equal(pki_chain_from_pem(chain_pem, chain_len, &chain, NULL), 0);
    size_t der_len;
    const uint8_t *der = pki_chain_der(chain, 0, &der_len);
    struct pki_cert_info info;
    assert_int_equal(pki_cert_info_parse(der, der_len, &info, NULL), 0);
    assert_int_equal(info.not_after - info.not_before, 660);
    pki_chain_free(chain);
    free(chain_pem);
    free(public_der);
    pki_key_free(key);
    /* Not yet: leaves of the old CA may still be alive. */
    bool changed = true;
    assert_int_equal(ca_set_prune(cas, &changed, &err), 0);
    assert_false(changed);
    clock_manual_advance(&f->clock, (f->settings.svid_ttl_s + 61) * 1000);
    assert_int_equal(ca_set_prune(cas, &changed, &err), 0);
    assert_true(changed);
    assert_int_equal(bundle_count(cas), 1);
    assert_int_equal(ca_set_bundle_version(cas), 3);
    json_t *described = ca_set_describe(cas);
    assert_int_equal(json_array_size(described), 1);
    assert_true(json_is_true(json_object_get(json_array_get(described, 0), "signer")));
    json_decref(described);
    ca_set_free(cas);
    /* The retirement was saved. */
    assert_int_equal(ca_set_open(&f->settings, &f->clock, &cas, &err), 0);
    assert_int_equal(bundle_count(cas), 1);
    assert_int_equal(ca_set_bundle_version(cas), 3);
    ca_set_free(cas);
}

static void
test_operator_ca_is_used_and_never_rotated(void **state)
{
    struct fx *f = *state;
    struct pki_ca *ca;
    assert_int_equal(pki_ca_create("example.org", time(NULL), 86400, &ca, NULL), 0);
    char *cert, *key;
    size_t cert_len, key_len;
    assert_int_equal(pki_ca_cert_pem(ca, &cert, &cert_len, NULL), 0);
    assert_int_equal(pki_ca_key_pem(ca, &key, &key_len, NULL), 0);
    char *cert_path = test_path(f->dir, "op.crt"), *key_path = test_path(f->dir, "op.key");
    test_write_file(cert_path, cert);
    test_write_file(key_path, key);
    snprintf(f->settings.ca_cert, sizeof(f->settings.ca_cert), "%s", cert_path);
    snprintf(f->settings.ca_key, sizeof(f->settings.ca_key), "%s", key_path);
    struct ca_set *cas;
    struct ztr_err err = {0};
    assert_int_equal(ca_set_open(&f->settings, &f->clock, &cas, &err), 0);
    assert_string_equal(pki_ca_info(ca_set_signer(cas))->fingerprint_sha256,
                        pki_ca_info(ca)->fingerprint_sha256);
    assert_int_equal(ca_set_rotate(cas, 3600, &err), -1);
    assert_non_null(strstr(err.msg, "operator-managed"));
    ca_set_free(cas);
    /* Half a pair is refused; so is a CA of another trust domain. */
    f->settings.ca_key[0] = '\0';
    assert_int_equal(ca_set_open(&f->settings, &f->clock, &cas, &err), -1);
    assert_non_null(strstr(err.msg, "failed to read controller CA"));
    snprintf(f->settings.ca_key, sizeof(f->settings.ca_key), "%s", key_path);
    snprintf(f->settings.trust_domain, sizeof(f->settings.trust_domain), "example.com");
    assert_int_equal(ca_set_open(&f->settings, &f->clock, &cas, &err), -1);
    assert_non_null(strstr(err.msg, "SPIFFE trust domain mismatch"));
    free(cert_path);
    free(key_path);
    free(cert);
    free(key);
    pki_ca_free(ca);
}

static void
test_damaged_state_is_reported_not_replaced(void **state)
{
    struct fx *f = *state;
    struct ca_set *cas;
    struct ztr_err err = {0};
    assert_int_equal(ca_set_open(&f->settings, &f->clock, &cas, &err), 0);
    ca_set_free(cas);
    char *state_path = test_path(f->dir, "ca/state.json");
    test_write_file(state_path, "{not json");
    assert_int_equal(ca_set_open(&f->settings, &f->clock, &cas, &err), -1);
    assert_non_null(strstr(err.msg, "unreadable CA state"));
    /* The CA key is still there: nothing was silently regenerated. */
    char *key = test_path(f->dir, "ca/ca-1.key");
    assert_int_equal(test_sh("test -s '%s'", key), 0);
    free(key);
    free(state_path);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_open_creates_a_ca_and_reopen_keeps_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_adds_then_retires_the_old_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_operator_ca_is_used_and_never_rotated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_state_is_reported_not_replaced, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pki_cleanup();
    return rc;
}
