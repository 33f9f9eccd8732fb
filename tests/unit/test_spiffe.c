/* SPIFFE ID parsing per the SPIFFE ID standard, roles, IP parsing. */
#include "tests/unit/support.h"

#include <string.h>

#include "pki/pki.h"

static void
expect_valid(const char *uri, const char *td, const char *path)
{
    struct pki_spiffe_id id;
    struct ztr_err err = {0};
    int rc = pki_spiffe_id_parse(uri, &id, &err);
    if (rc != 0)
        fail_msg("%s rejected: %s", uri, err.msg);
    assert_string_equal(id.uri, uri);
    assert_string_equal(id.trust_domain, td);
    assert_string_equal(pki_spiffe_id_path(&id), path);
}

static void
expect_invalid(const char *uri, const char *reason_part)
{
    struct pki_spiffe_id id;
    struct ztr_err err = {0};
    if (pki_spiffe_id_parse(uri, &id, &err) == 0)
        fail_msg("%s accepted", uri);
    assert_non_null(strstr(err.msg, "cannot parse URI \""));
    if (strstr(err.msg, reason_part) == NULL)
        fail_msg("%s: message \"%s\" lacks \"%s\"", uri, err.msg, reason_part);
}

static void
test_valid_ids_parse(void **state)
{
    (void)state;
    expect_valid("spiffe://example.org", "example.org", "");
    expect_valid("spiffe://example.org/connector/dc1-a", "example.org", "/connector/dc1-a");
    expect_valid("spiffe://a-b_c.9/x", "a-b_c.9", "/x");
    expect_valid("spiffe://example.org/Upper.Case-ok_9/..a/a..", "example.org",
                 "/Upper.Case-ok_9/..a/a..");
    expect_valid("spiffe://td/controller", "td", "/controller");
    expect_valid("spiffe://1.2.3.4/x", "1.2.3.4", "/x");
}

static void
test_roles_and_names(void **state)
{
    (void)state;
    struct pki_spiffe_id id;
    assert_int_equal(pki_spiffe_id_parse("spiffe://example.org/connector/dc1-a", &id, NULL), 0);
    assert_int_equal(id.role, PKI_ROLE_CONNECTOR);
    assert_string_equal(id.name, "dc1-a");
    assert_int_equal(pki_spiffe_id_parse("spiffe://example.org/tunneler/laptop", &id, NULL), 0);
    assert_int_equal(id.role, PKI_ROLE_TUNNELER);
    assert_string_equal(id.name, "laptop");
    assert_int_equal(pki_spiffe_id_parse("spiffe://example.org/controller", &id, NULL), 0);
    assert_int_equal(id.role, PKI_ROLE_CONTROLLER);
    assert_string_equal(id.name, "");
    assert_int_equal(pki_spiffe_id_parse("spiffe://example.org/workload/x", &id, NULL), 0);
    assert_int_equal(id.role, PKI_ROLE_NONE);
    /* Roles are case-sensitive and whole segments. */
    assert_int_equal(pki_spiffe_id_parse("spiffe://example.org/Connector/x", &id, NULL), 0);
    assert_int_equal(id.role, PKI_ROLE_NONE);
    assert_int_equal(pki_spiffe_id_parse("spiffe://example.org/connectors/x", &id, NULL), 0);
    assert_int_equal(id.role, PKI_ROLE_NONE);
    /* Three segments: a role, but no single name. */
    assert_int_equal(pki_spiffe_id_parse("spiffe://example.org/connector/a/b", &id, NULL), 0);
    assert_int_equal(id.role, PKI_ROLE_CONNECTOR);
    assert_string_equal(id.name, "");

    enum pki_role role;
    assert_int_equal(pki_role_parse("tunneler", &role), 0);
    assert_int_equal(role, PKI_ROLE_TUNNELER);
    assert_int_equal(pki_role_parse("admin", &role), -1);
    assert_int_equal(pki_role_parse("", &role), -1);
    assert_string_equal(pki_role_name(PKI_ROLE_CONNECTOR), "connector");
    assert_string_equal(pki_role_name((enum pki_role)42), "");
}

static void
test_scheme_rules(void **state)
{
    (void)state;
    expect_invalid("", "empty");
    expect_invalid("SPIFFE://example.org", "scheme");
    expect_invalid("Spiffe://example.org", "scheme");
    expect_invalid("https://example.org/x", "scheme");
    expect_invalid("spiffe:/example.org", "scheme");
    expect_invalid("example.org/x", "scheme");
    expect_invalid("spiffe:example.org", "scheme");
}

static void
test_trust_domain_rules(void **state)
{
    (void)state;
    expect_invalid("spiffe://", "invalid domain");
    expect_invalid("spiffe:///path", "invalid domain");
    expect_invalid("spiffe://Example.org/x", "invalid domain");
    expect_invalid("spiffe://example.org:8080/x", "invalid domain");
    expect_invalid("spiffe://user@example.org/x", "invalid domain");
    expect_invalid("spiffe://user:pw@example.org/x", "invalid domain");
    expect_invalid("spiffe://example.org./x", "invalid domain");
    expect_invalid("spiffe://example..org/x", "invalid domain");
    expect_invalid("spiffe://.example.org/x", "invalid domain");
    expect_invalid("spiffe://exa mple.org", "invalid domain");
    expect_invalid("spiffe://exa%41mple.org", "invalid domain");
    expect_invalid("spiffe://[::1]/x", "invalid domain");
    expect_invalid("spiffe://ex!ample", "invalid domain");
}

static void
test_trailing_dot_gives_failure_mode_text(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    assert_int_equal(pki_trust_domain_check("example.org.", &err), -1);
    assert_int_equal(err.code, PKI_E_BAD_TRUST_DOMAIN);
    /* failure-modes §1.4: `cannot parse URI ... invalid domain` */
    assert_non_null(strstr(err.msg, "cannot parse URI \"spiffe://example.org.\": invalid domain"));
    assert_int_equal(pki_trust_domain_check("example.org", &err), 0);
    assert_int_equal(pki_trust_domain_check("Example.org", &err), -1);
    assert_non_null(strstr(err.msg, "invalid domain"));
    assert_int_equal(pki_trust_domain_check("", &err), -1);
    assert_int_equal(pki_trust_domain_check("example.org/x", &err), -1);
    assert_int_equal(pki_trust_domain_check("example.org:443", &err), -1);
    char long_td[300];
    memset(long_td, 'a', sizeof(long_td) - 1);
    long_td[sizeof(long_td) - 1] = '\0';
    assert_int_equal(pki_trust_domain_check(long_td, &err), -1);
    assert_non_null(strstr(err.msg, "255"));
    long_td[255] = '\0';
    assert_int_equal(pki_trust_domain_check(long_td, &err), 0);
}

static void
test_path_rules(void **state)
{
    (void)state;
    expect_invalid("spiffe://example.org/", "trailing slash");
    expect_invalid("spiffe://example.org/a/", "trailing slash");
    expect_invalid("spiffe://example.org//a", "empty segments");
    expect_invalid("spiffe://example.org/a//b", "empty segments");
    expect_invalid("spiffe://example.org/.", "dot segments");
    expect_invalid("spiffe://example.org/a/./b", "dot segments");
    expect_invalid("spiffe://example.org/..", "dot segments");
    expect_invalid("spiffe://example.org/a/../b", "dot segments");
    expect_invalid("spiffe://example.org/a%20b", "percent-encoded");
    expect_invalid("spiffe://example.org/a b", "path segments may only contain");
    expect_invalid("spiffe://example.org/a+b", "path segments may only contain");
    expect_invalid("spiffe://example.org/a:b", "path segments may only contain");
    expect_invalid("spiffe://example.org/ä", "path segments may only contain");
    expect_invalid("spiffe://example.org/x?query=1", "query");
    expect_invalid("spiffe://example.org/x#frag", "fragment");
    expect_invalid("spiffe://example.org?x", "query");
}

static void
test_length_limit_is_2048_bytes(void **state)
{
    (void)state;
    char uri[2100];
    const char *prefix = "spiffe://example.org/";
    size_t prefix_len = strlen(prefix);
    memcpy(uri, prefix, prefix_len);
    memset(uri + prefix_len, 'a', 2048 - prefix_len);
    uri[2048] = '\0';
    struct pki_spiffe_id id;
    struct ztr_err err = {0};
    assert_int_equal(pki_spiffe_id_parse(uri, &id, &err), 0);
    assert_int_equal(strlen(id.uri), 2048);
    uri[2048] = 'a';
    uri[2049] = '\0';
    assert_int_equal(pki_spiffe_id_parse(uri, &id, &err), -1);
    assert_non_null(strstr(err.msg, "2048"));
    /* The message quotes a bounded prefix of a huge input. */
    assert_true(strlen(err.msg) < 400);
}

static void
test_build_ids(void **state)
{
    (void)state;
    struct pki_spiffe_id id;
    struct ztr_err err = {0};
    assert_int_equal(pki_spiffe_id_build("example.org", PKI_ROLE_CONNECTOR, "dc1-a", &id, &err),
                     0);
    assert_string_equal(id.uri, "spiffe://example.org/connector/dc1-a");
    assert_int_equal(pki_spiffe_id_build("example.org", PKI_ROLE_CONTROLLER, NULL, &id, &err),
                     0);
    assert_string_equal(id.uri, "spiffe://example.org/controller");
    assert_int_equal(pki_spiffe_id_build("example.org.", PKI_ROLE_TUNNELER, "t", &id, &err), -1);
    assert_non_null(strstr(err.msg, "invalid domain"));
    assert_int_equal(pki_spiffe_id_build("example.org", PKI_ROLE_TUNNELER, "a/b", &id, &err),
                     -1);
    assert_int_equal(pki_spiffe_id_build("example.org", PKI_ROLE_TUNNELER, "..", &id, &err), -1);
    assert_int_equal(pki_spiffe_id_build("example.org", PKI_ROLE_TUNNELER, "", &id, &err), -1);
    assert_int_equal(pki_spiffe_id_build("example.org", PKI_ROLE_TUNNELER, NULL, &id, &err), -1);
    assert_int_equal(pki_spiffe_id_build("example.org", PKI_ROLE_NONE, "x", &id, &err), -1);
    assert_int_equal(pki_spiffe_id_build("example.org", PKI_ROLE_TUNNELER, "a b", &id, &err),
                     -1);
}

static void
test_ip_parse_and_format(void **state)
{
    (void)state;
    struct pki_ip ip;
    char text[64];
    assert_int_equal(pki_ip_parse("127.0.0.1", &ip), 0);
    assert_int_equal(ip.len, 4);
    assert_memory_equal(ip.bytes, "\x7f\x00\x00\x01", 4);
    assert_string_equal(pki_ip_format(&ip, text, sizeof(text)), "127.0.0.1");
    assert_int_equal(pki_ip_parse("::1", &ip), 0);
    assert_int_equal(ip.len, 16);
    assert_string_equal(pki_ip_format(&ip, text, sizeof(text)), "::1");
    assert_int_equal(pki_ip_parse("fd00:0:0::5", &ip), 0);
    assert_string_equal(pki_ip_format(&ip, text, sizeof(text)), "fd00::5");
    assert_int_equal(pki_ip_parse("localhost", &ip), -1);
    assert_int_equal(pki_ip_parse("127.0.0.1:80", &ip), -1);
    assert_int_equal(pki_ip_parse("256.0.0.1", &ip), -1);
    assert_int_equal(pki_ip_parse("", &ip), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_ids_parse),
        cmocka_unit_test(test_roles_and_names),
        cmocka_unit_test(test_scheme_rules),
        cmocka_unit_test(test_trust_domain_rules),
        cmocka_unit_test(test_trailing_dot_gives_failure_mode_text),
        cmocka_unit_test(test_path_rules),
        cmocka_unit_test(test_length_limit_is_2048_bytes),
        cmocka_unit_test(test_build_ids),
        cmocka_unit_test(test_ip_parse_and_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
