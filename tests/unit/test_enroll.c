#define _GNU_SOURCE
/*
 * Enrollment tokens and the enroll exchange (controller/enroll.c), in
 * process: a real store in a temporary directory on a manual clock, a real
 * managed CA set, real keys and CSRs. enroll_handle() gets the enroll
 * message a session would hand it (schema-checked) and its reply is
 * checked the way an agent would: the chain must verify against the bundle.
 *
 * Nothing here references ctl_server.c, so the linker never pulls it in
 * and no fake of it is needed (test_admin.c fakes it for admin.c).
 */
#include "tests/unit/support.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "ctl/ctlmsg.h"
#include "controller/controller.h"
#include "pki/pki.h"

#define TD "example.org"
#define START_MS 1700000000000LL
#define SVID_TTL_S 3600
#define PEER "198.51.100.7:40000"
#define TOKEN_TEXT_LEN (16 + 1 + 64)
#define MAX_TOKENS 32

struct fixture {
    char *dir;
    struct ztr_clock clock;
    struct controller c;
    struct pki_key *key;
    char *csr;                   /* PEM of a CSR for key */
    char *tokens[MAX_TOKENS];    /* every token text handed out, checked at teardown */
    size_t token_count;
};

/* ---- fixture -------------------------------------------------------------- */

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    test_log_capture_start();
    f->dir = test_mkdtemp();
    clock_manual_init(&f->clock, START_MS);
    struct controller *c = &f->c;
    c->clock = &f->clock;
    snprintf(c->settings.trust_domain, sizeof(c->settings.trust_domain), "%s", TD);
    snprintf(c->settings.state_dir, sizeof(c->settings.state_dir), "%s", f->dir);
    c->settings.svid_ttl_s = SVID_TTL_S;
    c->settings.heartbeat_interval_ms = 10000;
    c->settings.token_ttl_s = 86400;
    c->started_at = clock_wall_s(&f->clock);
    struct ztr_err err = {0};
    char *db = test_path(f->dir, "controller.db");
    if (store_open(db, &f->clock, &c->store, &err) != 0)
        fail_msg("store_open: %s", err.msg);
    free(db);
    if (ca_set_open(&c->settings, &f->clock, &c->cas, &err) != 0)
        fail_msg("ca_set_open: %s", err.msg);
    assert_int_equal(pki_key_generate(&f->key, &err), 0);
    size_t len;
    assert_int_equal(pki_csr_create(f->key, "agent", &f->csr, &len, &err), 0);
    *state = f;
    return 0;
}

static bool
contains(const char *haystack, const char *needle)
{
    return strstr(haystack, needle) != NULL;
}

static int
no_secret_in_event(void *ctx, const struct store_event *event)
{
    const char *secret = ctx;
    assert_false(contains(event->detail, secret));
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    /* No token secret ever reaches a log line or an event. */
    for (size_t i = 0; i < f->token_count; i++) {
        const char *secret = f->tokens[i] + 17;
        assert_false(contains(test_log_captured(), secret));
        assert_int_equal(store_event_list(f->c.store, 0, 100000, no_secret_in_event,
                                          (void *)secret, NULL),
                         0);
        free(f->tokens[i]);
    }
    test_log_capture_stop();
    pki_key_free(f->key);
    free(f->csr);
    ca_set_free(f->c.cas);
    store_close(f->c.store);
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static int
group_setup(void **state)
{
    (void)state;
    struct ztr_err err = {0};
    return pki_init(&err);
}

static int
group_teardown(void **state)
{
    (void)state;
    pki_cleanup();
    return 0;
}

/* ---- helpers -------------------------------------------------------------- */

static int64_t
now_s(struct fixture *f)
{
    return clock_wall_s(&f->clock);
}

/* A new token (kept by the fixture, freed at teardown). */
static const char *
create_token(struct fixture *f, const struct token_request *request, struct store_token *record)
{
    struct ztr_err err = {0};
    char *text = NULL;
    if (token_create(&f->c, request, &text, record, &err) != 0)
        fail_msg("token_create(%s, %s): %s", request->role, request->name, err.msg);
    assert_non_null(text);
    assert_true(f->token_count < MAX_TOKENS);
    f->tokens[f->token_count++] = text;
    return text;
}

static const char *
new_token(struct fixture *f, const char *role, const char *name, bool prefix, int64_t uses,
          int64_t ttl_s, struct store_token *record)
{
    struct token_request request = {role, name, prefix, uses, ttl_s, false, NULL};
    return create_token(f, &request, record);
}

/* A connector token that allows addresses (JSON array text). */
static const char *
new_connector_token(struct fixture *f, const char *name, bool prefix, int64_t uses, bool replace,
                    const char *addresses, struct store_token *record)
{
    json_t *list = json_loads(addresses, 0, NULL);
    assert_non_null(list);
    struct token_request request = {"connector", name, prefix, uses, 600, replace, list};
    const char *text = create_token(f, &request, record);
    json_decref(list);
    return text;
}

/* The token's id: the text before the '.'. */
static void
token_id_of(const char *text, char id[STORE_ID_MAX + 1])
{
    snprintf(id, STORE_ID_MAX + 1, "%.16s", text);
}

static int64_t
uses_left(struct fixture *f, const char *token_text)
{
    char id[STORE_ID_MAX + 1];
    token_id_of(token_text, id);
    struct store_token token;
    struct ztr_err err = {0};
    if (store_token_get(f->c.store, id, &token, &err) != 0)
        fail_msg("store_token_get(%s): %s", id, err.msg);
    return token.uses_left;
}

/* An enroll message as a session would hand it over: schema-checked.
 * addresses: JSON array text or NULL. */
static json_t *
enroll_msg(const char *token, const char *role, const char *name, const char *csr,
           const char *addresses)
{
    json_t *msg = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "enroll", "token", token,
                            "role", role, "name", name, "csr", csr);
    assert_non_null(msg);
    if (addresses != NULL) {
        json_error_t jerr;
        json_t *list = json_loads(addresses, 0, &jerr);
        if (list == NULL)
            fail_msg("bad addresses in the test: %s", jerr.text);
        assert_int_equal(json_object_set_new(msg, "addresses", list), 0);
    }
    enum ctlmsg_type type;
    struct ztr_err err = {0};
    if (ctlmsg_validate(msg, &type, &err) != 0)
        fail_msg("enroll message fails the schema: %s", err.msg);
    assert_int_equal(type, CTLMSG_ENROLL);
    return msg;
}

/* Runs one enrollment; the reply always passes the schema. */
static json_t *
enroll(struct fixture *f, const char *token, const char *role, const char *name,
       const char *csr, const char *addresses)
{
    json_t *msg = enroll_msg(token, role, name, csr, addresses);
    json_t *reply = enroll_handle(&f->c, msg, PEER);
    json_decref(msg);
    assert_non_null(reply);
    struct ztr_err err = {0};
    if (ctlmsg_validate(reply, NULL, &err) != 0)
        fail_msg("reply fails the schema: %s", err.msg);
    return reply;
}

static const char *
str_of(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s != NULL ? s : "";
}

/* The reply as text, for a failure message; releases it. */
static void
reply_text(json_t *reply, char *buf, size_t cap)
{
    char *text = json_dumps(reply, JSON_COMPACT);
    snprintf(buf, cap, "%s", text != NULL ? text : "?");
    free(text);
    json_decref(reply);
}

/* Enrolls and expects an error reply with this code and message. */
static void
expect_refused(struct fixture *f, const char *token, const char *role, const char *name,
               const char *csr, const char *addresses, const char *code, const char *message)
{
    json_t *reply = enroll(f, token, role, name, csr, addresses);
    if (strcmp(str_of(reply, "type"), "error") != 0 || strcmp(str_of(reply, "code"), code) != 0 ||
        strcmp(str_of(reply, "message"), message) != 0) {
        char text[1024];
        reply_text(reply, text, sizeof(text));
        fail_msg("enroll role=%s name=%s token=%.16s: got %s, want %s \"%s\"", role, name,
                 token, text, code, message);
    }
    assert_int_equal(json_object_size(reply), 3);
    json_decref(reply);
}

#define expect_invalid_token(f, token, role, name)                                          \
    expect_refused(f, token, role, name, (f)->csr, NULL, CTLMSG_E_INVALID_TOKEN,              \
                   CTLMSG_TEXT_INVALID_TOKEN)
#define expect_permission_denied(f, token, role, name)                                      \
    expect_refused(f, token, role, name, (f)->csr, NULL, CTLMSG_E_PERMISSION_DENIED,          \
                   CTLMSG_TEXT_PERMISSION_DENIED)

/* A new agent: a key and CSR of its own (the same token and key again is
 * a retry, which the controller answers with the same node). */
static void
new_agent_key(struct fixture *f)
{
    struct ztr_err err = {0};
    pki_key_free(f->key);
    free(f->csr);
    f->key = NULL;
    f->csr = NULL;
    assert_int_equal(pki_key_generate(&f->key, &err), 0);
    size_t len;
    assert_int_equal(pki_csr_create(f->key, "agent", &f->csr, &len, &err), 0);
}

/* Enrolls and expects success; returns the reply (caller: json_decref).
 * The next enrollment is another agent's, with another key. */
static json_t *
expect_enrolled(struct fixture *f, const char *token, const char *role, const char *name,
                const char *addresses)
{
    json_t *reply = enroll(f, token, role, name, f->csr, addresses);
    if (strcmp(str_of(reply, "type"), "enrolled") != 0) {
        char text[1024];
        reply_text(reply, text, sizeof(text));
        fail_msg("enroll role=%s name=%s: %s", role, name, text);
    }
    new_agent_key(f);
    return reply;
}

struct event_count {
    const char *kind;
    const char *needle;
    size_t count;
    char last_detail[STORE_DETAIL_MAX + 1];
    char last_node_id[STORE_ID_MAX + 1];
};

static int
count_event(void *ctx, const struct store_event *event)
{
    struct event_count *ec = ctx;
    if (strcmp(event->kind, ec->kind) == 0 &&
        (ec->needle == NULL || contains(event->detail, ec->needle))) {
        ec->count++;
        snprintf(ec->last_detail, sizeof(ec->last_detail), "%s", event->detail);
        snprintf(ec->last_node_id, sizeof(ec->last_node_id), "%s", event->node_id);
    }
    return 0;
}

static size_t
events(struct fixture *f, const char *kind, const char *needle, struct event_count *out)
{
    struct event_count ec = {kind, needle, 0, "", ""};
    struct ztr_err err = {0};
    if (store_event_list(f->c.store, 0, 100000, count_event, &ec, &err) != 0)
        fail_msg("store_event_list: %s", err.msg);
    if (out != NULL)
        *out = ec;
    return ec.count;
}

static int
count_token(void *ctx, const struct store_token *token)
{
    (void)token;
    (*(size_t *)ctx)++;
    return 0;
}

static size_t
token_rows(struct fixture *f)
{
    size_t n = 0;
    assert_int_equal(store_token_list(f->c.store, count_token, &n, NULL), 0);
    return n;
}

static bool
is_lower_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static void
hex_to_bytes(const char *hex, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* The parsed leaf and bundle of an enrolled reply. */
struct issued {
    struct pki_chain *chain;
    struct pki_bundle *bundle;
    struct pki_cert_info info;
};

static void
issued_parse(const json_t *reply, struct issued *out)
{
    struct ztr_err err = {0};
    const char *chain = str_of(reply, "chain");
    const char *bundle = str_of(reply, "bundle");
    if (pki_chain_from_pem(chain, strlen(chain), &out->chain, &err) != 0)
        fail_msg("chain: %s", err.msg);
    if (pki_bundle_from_pem(bundle, strlen(bundle), &out->bundle, &err) != 0)
        fail_msg("bundle: %s", err.msg);
    size_t der_len;
    const uint8_t *der = pki_chain_der(out->chain, 0, &der_len);
    assert_non_null(der);
    if (pki_cert_info_parse(der, der_len, &out->info, &err) != 0)
        fail_msg("leaf: %s", err.msg);
}

static void
issued_free(struct issued *issued)
{
    pki_chain_free(issued->chain);
    pki_bundle_free(issued->bundle);
}

/* pki_verify's error text, "" on success. */
static const char *
verify(struct fixture *f, const struct issued *issued, enum pki_role role, const char *spiffe_id,
       const char *dial_ip, struct ztr_err *err)
{
    struct pki_expect expect = {TD, role, PKI_ROLE_NONE, spiffe_id, dial_ip, now_s(f)};
    struct pki_spiffe_id peer;
    memset(err, 0, sizeof(*err));
    if (pki_verify(issued->bundle, issued->chain, &expect, &peer, err) != 0)
        return err->msg;
    if (spiffe_id != NULL)
        assert_string_equal(peer.uri, spiffe_id);
    return "";
}

/* ---- token_create --------------------------------------------------------- */

static void
test_token_text_format(void **state)
{
    struct fixture *f = *state;
    struct store_token record;
    const char *text = new_token(f, "connector", "db-1", false, 3, 600, &record);
    assert_int_equal(strlen(text), TOKEN_TEXT_LEN);
    assert_true(is_lower_hex(text, 16));
    assert_int_equal(text[16], '.');
    assert_true(is_lower_hex(text + 17, 64));

    /* The record names the row: id is the part before the '.'. */
    char id[STORE_ID_MAX + 1];
    token_id_of(text, id);
    assert_string_equal(record.id, id);
    assert_string_equal(record.role, "connector");
    assert_string_equal(record.name, "db-1");
    assert_false(record.name_is_prefix);
    assert_int_equal(record.uses_left, 3);
    assert_int_equal(record.created_at, now_s(f));
    assert_int_equal(record.expires_at, now_s(f) + 600);

    struct store_token stored;
    assert_int_equal(store_token_get(f->c.store, id, &stored, NULL), 0);
    assert_string_equal(stored.id, record.id);
    assert_memory_equal(stored.digest, record.digest, sizeof(stored.digest));
    assert_string_equal(stored.role, "connector");
    assert_string_equal(stored.name, "db-1");
    assert_false(stored.name_is_prefix);
    assert_int_equal(stored.uses_left, 3);
    assert_int_equal(stored.expires_at, record.expires_at);
    assert_int_equal(stored.created_at, record.created_at);

    /* record is optional; prefixes are kept; every token is new. */
    const char *other = new_token(f, "tunneler", "laptop-", true, 1, 60, NULL);
    assert_int_equal(strlen(other), TOKEN_TEXT_LEN);
    assert_int_not_equal(memcmp(text, other, 16), 0);
    assert_int_not_equal(memcmp(text + 17, other + 17, 64), 0);
    char other_id[STORE_ID_MAX + 1];
    token_id_of(other, other_id);
    assert_int_equal(store_token_get(f->c.store, other_id, &stored, NULL), 0);
    assert_true(stored.name_is_prefix);
    assert_string_equal(stored.name, "laptop-");
    assert_string_equal(stored.role, "tunneler");
    assert_int_equal(token_rows(f), 2);
}

/* Set by find_in_files' visitor. */
static struct {
    const void *needle;
    size_t needle_len;
    int hits;
    int files;
} scan;

static int
scan_file(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag != FTW_F || st->st_size == 0)
        return 0;
    size_t len;
    char *data = test_read_file(path, &len);
    scan.files++;
    if (memmem(data, len, scan.needle, scan.needle_len) != NULL)
        scan.hits++;
    free(data);
    return 0;
}

/* How many files under dir contain the bytes. */
static int
files_containing(const char *dir, const void *needle, size_t len)
{
    scan.needle = needle;
    scan.needle_len = len;
    scan.hits = 0;
    scan.files = 0;
    assert_int_equal(nftw(dir, scan_file, 16, FTW_PHYS), 0);
    assert_true(scan.files > 0);
    return scan.hits;
}

static void
test_token_stored_as_digest_only(void **state)
{
    struct fixture *f = *state;
    struct store_token record;
    const char *text = new_token(f, "connector", "db-1", false, 2, 600, &record);
    uint8_t secret[32], digest[WC_SHA256_DIGEST_SIZE];
    hex_to_bytes(text + 17, secret, sizeof(secret));
    /* The digest is SHA-256 of the secret's 32 bytes (not of its hex). */
    assert_int_equal(wc_Sha256Hash(secret, sizeof(secret), digest), 0);
    assert_memory_equal(record.digest, digest, sizeof(digest));
    char id[STORE_ID_MAX + 1];
    token_id_of(text, id);
    struct store_token stored;
    assert_int_equal(store_token_get(f->c.store, id, &stored, NULL), 0);
    assert_memory_equal(stored.digest, digest, sizeof(digest));

    /* Use it once, so the enroll path has written too. */
    json_t *reply = expect_enrolled(f, text, "connector", "db-1", NULL);
    json_decref(reply);

    /* Neither the secret (hex or raw) nor the whole token is anywhere in
     * STATE_DIR (database, WAL, CA files). The digest is. */
    assert_int_equal(files_containing(f->dir, text + 17, 64), 0);
    assert_int_equal(files_containing(f->dir, text, TOKEN_TEXT_LEN), 0);
    assert_int_equal(files_containing(f->dir, secret, sizeof(secret)), 0);
    assert_int_equal(files_containing(f->dir, text + 17, 16), 0);
    assert_true(files_containing(f->dir, digest, sizeof(digest)) > 0);
    /* After the WAL is checkpointed into the database file as well. */
    store_close(f->c.store);
    f->c.store = NULL;
    assert_int_equal(files_containing(f->dir, text + 17, 64), 0);
    assert_int_equal(files_containing(f->dir, secret, sizeof(secret)), 0);
    assert_true(files_containing(f->dir, digest, sizeof(digest)) > 0);
    char *db = test_path(f->dir, "controller.db");
    assert_int_equal(store_open(db, &f->clock, &f->c.store, NULL), 0);
    free(db);
    assert_int_equal(uses_left(f, text), 1);
}

static void
expect_create_fails(struct fixture *f, const char *role, const char *name, bool prefix,
                    int64_t uses, int64_t ttl_s, const char *needle)
{
    struct token_request request = {role, name, prefix, uses, ttl_s, false, NULL};
    struct ztr_err err = {0};
    char *text = NULL;
    struct store_token record = {0};
    size_t before = token_rows(f);
    if (token_create(&f->c, &request, &text, &record, &err) == 0) {
        free(text);
        fail_msg("token_create(role=%s name=%s uses=%lld ttl=%lld) succeeded", role ? role : "NULL",
                 name ? name : "NULL", (long long)uses, (long long)ttl_s);
    }
    assert_null(text);
    assert_int_not_equal(err.code, ZTR_OK);
    if (!contains(err.msg, needle))
        fail_msg("token_create error \"%s\" lacks \"%s\"", err.msg, needle);
    assert_string_equal(record.id, "");
    assert_int_equal(token_rows(f), before);
}

static void
test_token_create_checks_input(void **state)
{
    struct fixture *f = *state;
    const char *role_msg = "role must be connector or tunneler";
    expect_create_fails(f, NULL, "db-1", false, 1, 60, role_msg);
    expect_create_fails(f, "", "db-1", false, 1, 60, role_msg);
    expect_create_fails(f, "controller", "db-1", false, 1, 60, role_msg);
    expect_create_fails(f, "admin", "db-1", false, 1, 60, role_msg);
    expect_create_fails(f, "Connector", "db-1", false, 1, 60, role_msg);

    char long_name[STORE_NAME_MAX + 2];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0'; /* 129 bytes */
    expect_create_fails(f, "connector", NULL, false, 1, 60, "name must be 1..128 bytes");
    expect_create_fails(f, "connector", "", false, 1, 60, "name must be 1..128 bytes");
    expect_create_fails(f, "connector", long_name, false, 1, 60, "name must be 1..128 bytes");
    expect_create_fails(f, "tunneler", long_name, true, 1, 60, "name must be 1..128 bytes");
    /* Names become one SPIFFE path segment, also when they are prefixes. */
    const char *bad_names[] = {"a/b", "/a", "a/", ".", "..", "a b", "a%2fb", "caf\xc3\xa9",
                               "a?b", "a#b", "a:b"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        expect_create_fails(f, "connector", bad_names[i], false, 1, 60,
                            "cannot be a SPIFFE ID segment");
        expect_create_fails(f, "tunneler", bad_names[i], true, 1, 60,
                            "cannot be a SPIFFE ID segment");
    }
    expect_create_fails(f, "connector", "db-1", false, 0, 60, "uses must be 1..1000000");
    expect_create_fails(f, "connector", "db-1", false, -1, 60, "uses must be 1..1000000");
    expect_create_fails(f, "connector", "db-1", false, 1000001, 60, "uses must be 1..1000000");
    expect_create_fails(f, "connector", "db-1", false, INT64_MIN, 60, "uses must be 1..1000000");
    expect_create_fails(f, "connector", "db-1", false, 1, 0, "ttl must be 1s..366d");
    expect_create_fails(f, "connector", "db-1", false, 1, -60, "ttl must be 1s..366d");
    expect_create_fails(f, "connector", "db-1", false, 1, 366LL * 86400 + 1, "ttl must be 1s..366d");
    expect_create_fails(f, "connector", "db-1", false, 1, INT64_MAX, "ttl must be 1s..366d");
    assert_int_equal(token_rows(f), 0);

    /* The bounds themselves are fine. */
    long_name[STORE_NAME_MAX] = '\0'; /* 128 bytes */
    struct store_token record;
    new_token(f, "connector", long_name, false, 1, 1, &record);
    assert_int_equal(record.expires_at, now_s(f) + 1);
    new_token(f, "tunneler", "x", false, 1000000, 366LL * 86400, &record);
    assert_int_equal(record.uses_left, 1000000);
    assert_int_equal(record.expires_at, now_s(f) + 366LL * 86400);
    new_token(f, "connector", "a.b_c-D", false, 1, 60, NULL);
    assert_int_equal(token_rows(f), 3);
}

/* ---- enroll: success ------------------------------------------------------ */

static void
test_enroll_connector(void **state)
{
    struct fixture *f = *state;
    const char *allowed = "[\"10.0.0.5\",\"2001:db8::5\",\"192.0.2.9\",\"2001:db8::9\"]";
    const char *token = new_connector_token(f, "db-1", false, 1, false, allowed, NULL);
    clock_manual_advance(&f->clock, 5000);
    const char *addresses =
        "[\"10.0.0.5:7444\",\"[2001:db8::5]:7444\",\"192.0.2.9\",\"2001:db8::9\"]";
    json_t *reply = expect_enrolled(f, token, "connector", "db-1", addresses);
    assert_int_equal(json_object_size(reply), 5);
    const char *spiffe_id = "spiffe://" TD "/connector/db-1";
    assert_string_equal(str_of(reply, "spiffe_id"), spiffe_id);
    const char *node_id = str_of(reply, "node_id");
    assert_true(strlen(node_id) > 0);

    /* The bundle is the CA set's; the chain verifies against it. */
    char *bundle_pem;
    size_t bundle_len;
    assert_int_equal(ca_set_bundle_pem(f->c.cas, &bundle_pem, &bundle_len, NULL), 0);
    assert_string_equal(str_of(reply, "bundle"), bundle_pem);
    free(bundle_pem);
    struct issued issued;
    issued_parse(reply, &issued);
    struct ztr_err err;
    assert_string_equal(verify(f, &issued, PKI_ROLE_CONNECTOR, spiffe_id, NULL, &err), "");
    assert_false(issued.info.is_ca);
    assert_int_equal(issued.info.uri_count, 1);
    assert_string_equal(issued.info.uri, spiffe_id);
    assert_int_equal(issued.info.not_before, now_s(f) - 60);
    assert_int_equal(issued.info.not_after, now_s(f) + SVID_TTL_S);

    /* One IP SAN per advertised (and allowed) address, in order, whatever
     * its form. */
    const char *want_ips[] = {"10.0.0.5", "2001:db8::5", "192.0.2.9", "2001:db8::9"};
    assert_int_equal(issued.info.ip_count, 4);
    for (size_t i = 0; i < 4; i++) {
        struct pki_ip want;
        assert_int_equal(pki_ip_parse(want_ips[i], &want), 0);
        assert_int_equal(issued.info.ips[i].len, want.len);
        assert_memory_equal(issued.info.ips[i].bytes, want.bytes, want.len);
        assert_string_equal(verify(f, &issued, PKI_ROLE_CONNECTOR, spiffe_id, want_ips[i], &err),
                            "");
    }
    assert_true(contains(verify(f, &issued, PKI_ROLE_CONNECTOR, spiffe_id, "10.0.0.6", &err),
                         "10.0.0.6"));
    assert_int_equal(err.code, PKI_E_IP_SAN_MISMATCH);
    /* It is a connector's certificate, not a tunneler's. */
    verify(f, &issued, PKI_ROLE_TUNNELER, NULL, NULL, &err);
    assert_int_equal(err.code, PKI_E_UNEXPECTED_ROLE);

    /* The node row. */
    struct store_node node;
    assert_int_equal(store_node_get(f->c.store, node_id, &node, NULL), 0);
    assert_string_equal(node.name, "db-1");
    assert_string_equal(node.role, "connector");
    assert_string_equal(node.spiffe_id, spiffe_id);
    assert_string_equal(node.addresses, addresses);
    assert_string_equal(node.allowed_addresses, allowed);
    assert_string_equal(node.cert_serial, issued.info.serial_hex);
    assert_int_equal(node.cert_not_after, issued.info.not_after);
    assert_int_equal(node.enrolled_at, now_s(f));
    assert_false(node.revoked);
    assert_int_equal(node.status, STORE_OFFLINE);
    issued_free(&issued);
    json_decref(reply);

    assert_int_equal(uses_left(f, token), 0);
    assert_int_equal(f->c.counters.enrollments, 1);
    assert_int_equal(f->c.counters.enrollment_denied, 0);
    struct event_count ec;
    assert_int_equal(events(f, "enrolled", "db-1", &ec), 1);
    assert_string_equal(ec.last_node_id, node.id);
    assert_int_equal(events(f, "denied", NULL, NULL), 0);
    assert_true(contains(test_log_captured(), "node enrolled"));
    assert_false(contains(test_log_captured(), "not allowed"));
    assert_false(contains(test_log_captured(), "without IP addresses"));
    assert_int_equal(events(f, "security", NULL, NULL), 0);
}

static void
test_enroll_tunneler_gets_no_ip_sans(void **state)
{
    struct fixture *f = *state;
    const char *token = new_token(f, "tunneler", "laptop-", true, 2, 600, NULL);
    /* Addresses a tunneler sends are not certified. */
    json_t *reply = expect_enrolled(f, token, "tunneler", "laptop-1", "[\"10.0.0.7:7444\"]");
    const char *spiffe_id = "spiffe://" TD "/tunneler/laptop-1";
    assert_string_equal(str_of(reply, "spiffe_id"), spiffe_id);
    struct issued issued;
    issued_parse(reply, &issued);
    struct ztr_err err;
    assert_string_equal(verify(f, &issued, PKI_ROLE_TUNNELER, spiffe_id, NULL, &err), "");
    assert_int_equal(issued.info.ip_count, 0);
    verify(f, &issued, PKI_ROLE_TUNNELER, spiffe_id, "10.0.0.7", &err);
    assert_int_equal(err.code, PKI_E_NO_IP_SANS);
    verify(f, &issued, PKI_ROLE_CONNECTOR, NULL, NULL, &err);
    assert_int_equal(err.code, PKI_E_UNEXPECTED_ROLE);
    issued_free(&issued);
    json_decref(reply);

    /* And without addresses at all: the node records an empty list. */
    reply = expect_enrolled(f, token, "tunneler", "laptop-2", NULL);
    issued_parse(reply, &issued);
    assert_int_equal(issued.info.ip_count, 0);
    assert_string_equal(verify(f, &issued, PKI_ROLE_TUNNELER, "spiffe://" TD "/tunneler/laptop-2",
                               NULL, &err),
                        "");
    struct store_node node;
    assert_int_equal(store_node_get(f->c.store, str_of(reply, "node_id"), &node, NULL), 0);
    assert_string_equal(node.addresses, "[]");
    assert_string_equal(node.name, "laptop-2");
    issued_free(&issued);
    json_decref(reply);

    /* A connector without addresses gets none either. */
    const char *ctoken = new_token(f, "connector", "db-2", false, 1, 600, NULL);
    reply = expect_enrolled(f, ctoken, "connector", "db-2", NULL);
    issued_parse(reply, &issued);
    assert_int_equal(issued.info.ip_count, 0);
    issued_free(&issued);
    json_decref(reply);
    assert_int_equal(f->c.counters.enrollments, 3);
    assert_int_equal(uses_left(f, token), 0);
}

static void
test_multi_use_token(void **state)
{
    struct fixture *f = *state;
    const char *token = new_token(f, "connector", "db-1", false, 3, 86400, NULL);
    json_t *first = expect_enrolled(f, token, "connector", "db-1", "[\"10.0.0.5\"]");
    assert_int_equal(uses_left(f, token), 2);
    /* The same name again once its certificate has expired (re-enrolling
     * with a retained token): the node keeps its id, the certificate is
     * new. A live node is not re-enrolled by it
     * (test_live_node_is_not_taken_over_without_replace). */
    clock_manual_advance(&f->clock, SVID_TTL_S * 1000LL);
    json_t *second = expect_enrolled(f, token, "connector", "db-1", "[\"10.0.0.6\"]");
    assert_int_equal(uses_left(f, token), 1);
    assert_string_equal(str_of(first, "node_id"), str_of(second, "node_id"));
    assert_string_not_equal(str_of(first, "chain"), str_of(second, "chain"));
    struct issued a, b;
    issued_parse(first, &a);
    issued_parse(second, &b);
    assert_string_not_equal(a.info.serial_hex, b.info.serial_hex);
    struct store_node node;
    assert_int_equal(store_node_get(f->c.store, str_of(second, "node_id"), &node, NULL), 0);
    assert_string_equal(node.cert_serial, b.info.serial_hex);
    assert_string_equal(node.addresses, "[\"10.0.0.6\"]");
    assert_int_equal(node.enrolled_at, now_s(f));
    issued_free(&a);
    issued_free(&b);
    json_decref(first);
    json_decref(second);
    assert_int_equal(events(f, "enrolled", "re-enrolled connector db-1", NULL), 1);

    clock_manual_advance(&f->clock, SVID_TTL_S * 1000LL);
    json_t *third = expect_enrolled(f, token, "connector", "db-1", NULL);
    json_decref(third);
    assert_int_equal(uses_left(f, token), 0);
    expect_invalid_token(f, token, "connector", "db-1");
    assert_int_equal(uses_left(f, token), 0);
    assert_int_equal(f->c.counters.enrollments, 3);
    assert_int_equal(f->c.counters.enrollment_denied, 1);
    assert_int_equal(events(f, "denied", "(token used up)", NULL), 1);
}

/* A token for a name (prefix or multi-use) does not take over the node that
 * already holds that name with a valid certificate; one created with
 * replace does, and the node keeps its id and its grants. */
static void
test_live_node_is_not_taken_over_without_replace(void **state)
{
    struct fixture *f = *state;
    const char *fleet = new_token(f, "connector", "db-", true, 5, 86400, NULL);
    json_t *first = expect_enrolled(f, fleet, "connector", "db-1", NULL);
    clock_manual_advance(&f->clock, 5000);
    expect_refused(f, fleet, "connector", "db-1", f->csr, NULL, CTLMSG_E_PERMISSION_DENIED,
                   "node db-1 already enrolled");
    assert_int_equal(uses_left(f, fleet), 4);
    struct event_count ec;
    assert_int_equal(events(f, "denied", "node db-1 already enrolled", &ec), 1);
    assert_true(contains(ec.last_detail, "--replace"));
    assert_int_equal(f->c.counters.enrollment_denied, 1);
    struct store_node node;
    assert_int_equal(store_node_get(f->c.store, str_of(first, "node_id"), &node, NULL), 0);
    struct issued a;
    issued_parse(first, &a);
    assert_string_equal(node.cert_serial, a.info.serial_hex);

    struct token_request request = {"connector", "db-1", false, 1, 600, true, NULL};
    char *text = NULL;
    struct store_token record;
    struct ztr_err err = {0};
    assert_int_equal(token_create(&f->c, &request, &text, &record, &err), 0);
    assert_true(record.replace);
    f->tokens[f->token_count++] = text;
    json_t *second = expect_enrolled(f, text, "connector", "db-1", NULL);
    assert_string_equal(str_of(first, "node_id"), str_of(second, "node_id"));
    struct issued b;
    issued_parse(second, &b);
    assert_int_equal(store_node_get(f->c.store, str_of(second, "node_id"), &node, NULL), 0);
    assert_string_equal(node.cert_serial, b.info.serial_hex);
    assert_string_equal(node.prev_cert_serial, "");
    assert_int_equal(events(f, "enrolled", "replaced connector db-1", &ec), 1);
    assert_true(contains(ec.last_detail, a.info.serial_hex));
    issued_free(&a);
    issued_free(&b);
    json_decref(first);
    json_decref(second);
}

/* ---- token addresses -------------------------------------------------------- */

static size_t
occurrences(const char *haystack, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(haystack, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void
expect_addresses_refused(struct fixture *f, const char *role, const char *addresses,
                         const char *needle)
{
    json_t *list = json_loads(addresses, JSON_DECODE_ANY, NULL);
    assert_non_null(list);
    struct token_request request = {role, "db-1", false, 1, 600, false, list};
    struct ztr_err err = {0};
    char *text = NULL;
    size_t before = token_rows(f);
    if (token_create(&f->c, &request, &text, NULL, &err) == 0) {
        free(text);
        fail_msg("token_create(role=%s addresses=%s) succeeded", role, addresses);
    }
    json_decref(list);
    assert_int_equal(err.code, ZTR_E_INVALID);
    if (!contains(err.msg, needle))
        fail_msg("token_create error \"%s\" lacks \"%s\"", err.msg, needle);
    assert_int_equal(token_rows(f), before);
}

static void
test_token_addresses(void **state)
{
    struct fixture *f = *state;
    /* Kept in canonical form, and read back as stored. */
    struct store_token record;
    const char *text = new_connector_token(
        f, "db-1", false, 1, false, "[\"10.0.0.5\",\"2001:0DB8:0:0::5\",\"::ffff:10.0.0.6\"]",
        &record);
    const char *canonical = "[\"10.0.0.5\",\"2001:db8::5\",\"::ffff:10.0.0.6\"]";
    assert_string_equal(record.addresses, canonical);
    char id[STORE_ID_MAX + 1];
    token_id_of(text, id);
    struct store_token stored;
    assert_int_equal(store_token_get(f->c.store, id, &stored, NULL), 0);
    assert_string_equal(stored.addresses, canonical);
    /* None given: none allowed. */
    new_token(f, "connector", "db-2", false, 1, 600, &record);
    assert_string_equal(record.addresses, "[]");
    new_connector_token(f, "db-3", false, 1, false, "[]", &record);
    assert_string_equal(record.addresses, "[]");

    /* Only IPs, only on connector tokens, at most PKI_MAX_IP_SANS. */
    const char *not_ip = "is not an IP address";
    expect_addresses_refused(f, "connector", "[\"10.0.0.5:7444\"]", not_ip);
    expect_addresses_refused(f, "connector", "[\"[2001:db8::5]:7444\"]", not_ip);
    expect_addresses_refused(f, "connector", "[\"db.example.org\"]", not_ip);
    expect_addresses_refused(f, "connector", "[\"10.0.0.256\"]", not_ip);
    expect_addresses_refused(f, "connector", "[\"\"]", not_ip);
    expect_addresses_refused(f, "connector", "[\"10.0.0.5\",7]", not_ip);
    expect_addresses_refused(f, "connector", "\"10.0.0.5\"", "must be a list of IP addresses");
    expect_addresses_refused(f, "tunneler", "[\"10.0.0.5\"]", "for connector tokens only");
    char many[2048] = "[";
    for (int i = 0; i <= PKI_MAX_IP_SANS; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s\"10.0.1.%d\"",
                 i ? "," : "", i + 1);
    strcat(many, "]");
    expect_addresses_refused(f, "connector", many, "at most 32 addresses");
    /* Within the count but beyond what a node record holds. */
    char wide[4096] = "[";
    for (int i = 0; i < PKI_MAX_IP_SANS; i++)
        snprintf(wide + strlen(wide), sizeof(wide) - strlen(wide),
                 "%s\"ffff:ffff:ffff:ffff:ffff:ffff:ffff:%04x\"", i ? "," : "", 0x1000 + i);
    strcat(wide, "]");
    expect_addresses_refused(f, "connector", wide, "addresses longer than 1024 bytes");
    assert_int_equal(token_rows(f), 3);
    /* A tunneler token may say "none" explicitly. */
    json_t *empty = json_array();
    struct token_request request = {"tunneler", "laptop", false, 1, 600, false, empty};
    create_token(f, &request, &record);
    json_decref(empty);
    assert_string_equal(record.addresses, "[]");
}

/* The certificate names what the connector announced AND its token
 * allows; the node is allowed what the token allows. */
static void
test_enroll_certifies_only_allowed_addresses(void **state)
{
    struct fixture *f = *state;
    const char *token =
        new_connector_token(f, "db-1", false, 1, false, "[\"10.0.0.5\",\"10.0.0.7\"]", NULL);
    json_t *reply =
        expect_enrolled(f, token, "connector", "db-1", "[\"10.0.0.9\",\"10.0.0.5:7444\"]");
    struct issued issued;
    issued_parse(reply, &issued);
    assert_int_equal(issued.info.ip_count, 1);
    struct ztr_err err;
    assert_string_equal(verify(f, &issued, PKI_ROLE_CONNECTOR, NULL, "10.0.0.5", &err), "");
    verify(f, &issued, PKI_ROLE_CONNECTOR, NULL, "10.0.0.9", &err);
    assert_int_equal(err.code, PKI_E_IP_SAN_MISMATCH);
    /* Allowed but not announced: not certified either. */
    verify(f, &issued, PKI_ROLE_CONNECTOR, NULL, "10.0.0.7", &err);
    assert_int_equal(err.code, PKI_E_IP_SAN_MISMATCH);
    issued_free(&issued);
    char node_id[STORE_ID_MAX + 1];
    snprintf(node_id, sizeof(node_id), "%s", str_of(reply, "node_id"));
    struct store_node node;
    assert_int_equal(store_node_get(f->c.store, node_id, &node, NULL), 0);
    assert_string_equal(node.allowed_addresses, "[\"10.0.0.5\",\"10.0.0.7\"]");
    assert_string_equal(node.addresses, "[\"10.0.0.9\",\"10.0.0.5:7444\"]");
    /* The claim is said: one warn line and one security event naming the
     * node and the address. */
    const char *log = test_log_captured();
    assert_int_equal(occurrences(log, "msg=\"enrollment address not allowed\""), 1);
    assert_true(contains(log, "address=10.0.0.9"));
    assert_false(contains(log, "address=10.0.0.5"));
    assert_false(contains(log, "without IP addresses"));
    struct event_count ec;
    assert_int_equal(events(f, "security", "enrollment address not allowed", &ec), 1);
    assert_string_equal(ec.last_node_id, node_id);
    assert_true(contains(ec.last_detail, "connector=db-1 address=10.0.0.9"));
    json_decref(reply);

    /* A token without addresses: no IP SANs, and the log says what to do. */
    const char *bare = new_token(f, "connector", "db-2", false, 1, 600, NULL);
    reply = expect_enrolled(f, bare, "connector", "db-2", "[\"10.0.0.6\"]");
    issued_parse(reply, &issued);
    assert_int_equal(issued.info.ip_count, 0);
    issued_free(&issued);
    assert_int_equal(store_node_get(f->c.store, str_of(reply, "node_id"), &node, NULL), 0);
    assert_string_equal(node.allowed_addresses, "[]");
    log = test_log_captured();
    assert_true(contains(log, "msg=\"connector certified without IP addresses\""));
    assert_true(contains(log, "controller node set-addresses"));
    assert_int_equal(events(f, "security", "connector=db-2 address=10.0.0.6", NULL), 1);
    json_decref(reply);

    /* A --replace token follows the same rule, and its list replaces the
     * node's. */
    const char *replace =
        new_connector_token(f, "db-1", false, 1, true, "[\"10.0.0.8\"]", NULL);
    reply = expect_enrolled(f, replace, "connector", "db-1", "[\"10.0.0.5\",\"10.0.0.8\"]");
    issued_parse(reply, &issued);
    assert_int_equal(issued.info.ip_count, 1);
    assert_string_equal(verify(f, &issued, PKI_ROLE_CONNECTOR, NULL, "10.0.0.8", &err), "");
    verify(f, &issued, PKI_ROLE_CONNECTOR, NULL, "10.0.0.5", &err);
    assert_int_equal(err.code, PKI_E_IP_SAN_MISMATCH);
    issued_free(&issued);
    assert_int_equal(store_node_get(f->c.store, node_id, &node, NULL), 0);
    assert_string_equal(node.allowed_addresses, "[\"10.0.0.8\"]");
    assert_int_equal(events(f, "security", "connector=db-1 address=10.0.0.5", NULL), 1);
    json_decref(reply);
    assert_int_equal(f->c.counters.enrollments, 3);
    assert_int_equal(f->c.counters.enrollment_denied, 0);
}

/* A fleet token may be used many times: what its connectors claim costs
 * the journal and the events table a bounded amount. */
static void
test_unallowed_address_reports_are_bounded(void **state)
{
    struct fixture *f = *state;
    const char *fleet = new_token(f, "connector", "db-", true, 3, 600, NULL);
    char many[2048] = "[";
    for (int i = 0; i < PKI_MAX_IP_SANS; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s\"10.0.2.%d\"",
                 i ? "," : "", i + 1);
    strcat(many, "]");
    json_t *reply = expect_enrolled(f, fleet, "connector", "db-1", many);
    json_decref(reply);
    assert_int_equal(occurrences(test_log_captured(), "msg=\"enrollment address not allowed\""),
                     20);
    assert_int_equal(events(f, "security", "enrollment address not allowed", NULL), 30);
    /* A second later lines flow again, and say how many were dropped. */
    clock_manual_advance(&f->clock, 1000);
    reply = expect_enrolled(f, fleet, "connector", "db-2", "[\"10.0.3.1\"]");
    json_decref(reply);
    assert_true(contains(test_log_captured(),
                         "msg=\"enrollment address not allowed lines suppressed\" suppressed=12"));
    assert_int_equal(events(f, "security", "enrollment address not allowed", NULL), 30);
    /* A minute later events do too, counting what was not recorded. */
    clock_manual_advance(&f->clock, 60000);
    reply = expect_enrolled(f, fleet, "connector", "db-3", "[\"10.0.3.2\"]");
    json_decref(reply);
    struct event_count ec;
    assert_int_equal(events(f, "security", "enrollment address not allowed", &ec), 31);
    assert_true(contains(ec.last_detail, "address=10.0.3.2"));
    assert_true(contains(ec.last_detail, "3 earlier not recorded"));
}

/* ---- enroll: refused ------------------------------------------------------ */

static void
test_unknown_and_garbled_tokens(void **state)
{
    struct fixture *f = *state;
    const char *token = new_token(f, "connector", "db-1", false, 1, 600, NULL);
    char buf[256];
    size_t n = 0;

    /* Well-formed but unknown id (the real secret, another id). */
    snprintf(buf, sizeof(buf), "%s", token);
    buf[0] = buf[0] == '0' ? '1' : '0';
    expect_invalid_token(f, buf, "connector", "db-1");
    n++;
    /* The right id, a wrong secret: first, last and a middle hex digit. */
    const size_t flips[] = {17, 17 + 31, TOKEN_TEXT_LEN - 1};
    for (size_t i = 0; i < 3; i++) {
        snprintf(buf, sizeof(buf), "%s", token);
        buf[flips[i]] = buf[flips[i]] == 'a' ? 'b' : 'a';
        expect_invalid_token(f, buf, "connector", "db-1");
        n++;
    }
    /* Garbled. */
    const char *garbled[] = {
        "",
        ".",
        "not-a-token",
        "0123456789abcdef",
        "0123456789abcdef.",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
    };
    for (size_t i = 0; i < sizeof(garbled) / sizeof(garbled[0]); i++) {
        expect_invalid_token(f, garbled[i], "connector", "db-1");
        n++;
    }
    /* One character short, one too many, the '.' moved or replaced,
     * non-hex characters in either half. */
    snprintf(buf, sizeof(buf), "%.*s", TOKEN_TEXT_LEN - 1, token);
    expect_invalid_token(f, buf, "connector", "db-1");
    snprintf(buf, sizeof(buf), "%s0", token);
    expect_invalid_token(f, buf, "connector", "db-1");
    snprintf(buf, sizeof(buf), "%s", token);
    buf[16] = '-';
    expect_invalid_token(f, buf, "connector", "db-1");
    snprintf(buf, sizeof(buf), "%.15s.%c%s", token, token[15], token + 17);
    expect_invalid_token(f, buf, "connector", "db-1");
    snprintf(buf, sizeof(buf), "%s", token);
    buf[3] = 'g';
    expect_invalid_token(f, buf, "connector", "db-1");
    snprintf(buf, sizeof(buf), "%s", token);
    buf[40] = 'z';
    expect_invalid_token(f, buf, "connector", "db-1");
    snprintf(buf, sizeof(buf), "%s", token);
    buf[40] = ' ';
    expect_invalid_token(f, buf, "connector", "db-1");
    snprintf(buf, sizeof(buf), " %.*s", TOKEN_TEXT_LEN - 1, token);
    expect_invalid_token(f, buf, "connector", "db-1");
    n += 8;

    /* None of it used the token, and every refusal was counted and recorded. */
    assert_int_equal(uses_left(f, token), 1);
    assert_int_equal(f->c.counters.enrollment_denied, n);
    assert_int_equal(f->c.counters.enrollments, 0);
    assert_int_equal(events(f, "denied", "(unknown token)", NULL), n);
    struct event_count ec;
    assert_int_equal(events(f, "denied", NULL, &ec), n);
    assert_string_equal(ec.last_node_id, "");
    assert_string_equal(ec.last_detail, "enroll role=connector name=db-1 peer=" PEER
                                         ": invalid enrollment token (unknown token)");
    assert_int_equal(events(f, "enrolled", NULL, NULL), 0);
    assert_true(contains(test_log_captured(), "enrollment denied"));

    /* The real one still works. */
    json_t *reply = expect_enrolled(f, token, "connector", "db-1", NULL);
    json_decref(reply);
    assert_int_equal(f->c.counters.enrollments, 1);
}

static void
test_expired_token(void **state)
{
    struct fixture *f = *state;
    struct store_token record;
    const char *token = new_token(f, "connector", "db-1", false, 3, 60, &record);
    /* One millisecond before expires_at it is still good. */
    clock_manual_advance(&f->clock, 59999);
    assert_int_equal(now_s(f), record.expires_at - 1);
    json_t *reply = expect_enrolled(f, token, "connector", "db-1", NULL);
    json_decref(reply);
    assert_int_equal(uses_left(f, token), 2);
    /* At expires_at it is not. */
    clock_manual_advance(&f->clock, 1);
    assert_int_equal(now_s(f), record.expires_at);
    expect_invalid_token(f, token, "connector", "db-1");
    clock_manual_advance(&f->clock, 86400 * 1000LL);
    expect_invalid_token(f, token, "connector", "db-1");
    assert_int_equal(uses_left(f, token), 2);
    assert_int_equal(f->c.counters.enrollments, 1);
    assert_int_equal(f->c.counters.enrollment_denied, 2);
    assert_int_equal(events(f, "denied", "invalid enrollment token (token expired)", NULL), 2);
}

/* An agent that never kept the answer (a full disk, a crash) asks again
 * with the same token and the same key: the same node, a certificate for
 * that key, nothing consumed. Another key, another name, a token past its
 * TTL or a revoked node get the refusals they always got. */
static void
test_retry_with_the_same_key_returns_the_same_node(void **state)
{
    struct fixture *f = *state;
    const char *token = new_token(f, "connector", "db-", true, 1, 600, NULL);
    char *csr = strdup(f->csr);
    assert_non_null(csr);
    json_t *first = expect_enrolled(f, token, "connector", "db-1", NULL);
    clock_manual_advance(&f->clock, 5000);
    json_t *again = enroll(f, token, "connector", "db-1", csr, NULL);
    assert_string_equal(str_of(again, "type"), "enrolled");
    assert_string_equal(str_of(again, "node_id"), str_of(first, "node_id"));
    assert_string_equal(str_of(again, "spiffe_id"), "spiffe://example.org/connector/db-1");
    assert_string_not_equal(str_of(again, "chain"), str_of(first, "chain"));
    struct store_node node;
    struct ztr_err err = {0};
    assert_int_equal(store_node_get(f->c.store, str_of(first, "node_id"), &node, &err), 0);
    struct issued issued;
    issued_parse(again, &issued);
    assert_string_equal(
        verify(f, &issued, PKI_ROLE_CONNECTOR, "spiffe://example.org/connector/db-1", NULL, &err),
        "");
    /* The node now names the certificate of this answer. */
    assert_string_equal(node.cert_serial, issued.info.serial_hex);
    issued_free(&issued);
    assert_int_equal(uses_left(f, token), 0);
    assert_int_equal(events(f, "enrolled", "enrollment retried", NULL), 1);
    json_decref(again);

    /* Another key: refused exactly as before. */
    expect_invalid_token(f, token, "connector", "db-1");
    /* The same key for another name under the prefix, or another role. */
    expect_refused(f, token, "connector", "db-2", csr, NULL, CTLMSG_E_INVALID_TOKEN,
                   CTLMSG_TEXT_INVALID_TOKEN);
    expect_refused(f, token, "tunneler", "db-1", csr, NULL, CTLMSG_E_PERMISSION_DENIED,
                   CTLMSG_TEXT_PERMISSION_DENIED);
    /* The revoked node is not brought back by its token. */
    assert_int_equal(store_node_revoke(f->c.store, str_of(first, "node_id"), "lost", &err), 0);
    expect_refused(f, token, "connector", "db-1", csr, NULL, CTLMSG_E_PERMISSION_DENIED,
                   CTLMSG_TEXT_PERMISSION_DENIED);
    assert_int_equal(store_node_get(f->c.store, str_of(first, "node_id"), &node, &err), 0);
    assert_true(node.revoked);
    json_decref(first);

    /* After the token's TTL, the same key is refused too. */
    const char *token2 = new_token(f, "connector", "db-9", false, 1, 600, NULL);
    free(csr);
    csr = strdup(f->csr);
    json_decref(expect_enrolled(f, token2, "connector", "db-9", NULL));
    clock_manual_advance(&f->clock, 600 * 1000LL);
    expect_refused(f, token2, "connector", "db-9", csr, NULL, CTLMSG_E_INVALID_TOKEN,
                   CTLMSG_TEXT_INVALID_TOKEN);
    assert_int_equal(events(f, "denied", "token expired", NULL), 1);
    free(csr);
}

static void
test_used_up_token(void **state)
{
    struct fixture *f = *state;
    const char *token = new_token(f, "tunneler", "laptop-1", false, 1, 600, NULL);
    json_t *reply = expect_enrolled(f, token, "tunneler", "laptop-1", NULL);
    json_decref(reply);
    assert_int_equal(uses_left(f, token), 0);
    expect_invalid_token(f, token, "tunneler", "laptop-1");
    expect_invalid_token(f, token, "tunneler", "laptop-1");
    assert_int_equal(uses_left(f, token), 0);
    assert_int_equal(f->c.counters.enrollments, 1);
    assert_int_equal(f->c.counters.enrollment_denied, 2);
    assert_int_equal(events(f, "denied", "invalid enrollment token (token used up)", NULL), 2);
}

static void
test_role_mismatch(void **state)
{
    struct fixture *f = *state;
    const char *ctoken = new_token(f, "connector", "node-1", false, 1, 600, NULL);
    const char *ttoken = new_token(f, "tunneler", "node-", true, 1, 600, NULL);
    expect_permission_denied(f, ctoken, "tunneler", "node-1");
    expect_permission_denied(f, ttoken, "connector", "node-1");
    /* "controller" passes the schema (it is a string) but no token has it. */
    expect_permission_denied(f, ctoken, "controller", "node-1");
    expect_permission_denied(f, ctoken, "", "node-1");
    assert_int_equal(uses_left(f, ctoken), 1);
    assert_int_equal(uses_left(f, ttoken), 1);
    assert_int_equal(f->c.counters.enrollment_denied, 4);
    assert_int_equal(events(f, "denied", "permission denied (token is for another role)", NULL),
                     4);
    struct event_count ec;
    events(f, "denied", "role=tunneler", &ec);
    assert_int_equal(ec.count, 1);
    assert_string_equal(ec.last_detail,
                        "enroll role=tunneler name=node-1 peer=" PEER
                        ": permission denied (token is for another role)");
    /* Both still work for their own role. */
    json_t *reply = expect_enrolled(f, ctoken, "connector", "node-1", NULL);
    json_decref(reply);
    reply = expect_enrolled(f, ttoken, "tunneler", "node-1", NULL);
    json_decref(reply);
    assert_int_equal(f->c.counters.enrollments, 2);
}

static void
test_name_mismatch(void **state)
{
    struct fixture *f = *state;
    const char *exact = new_token(f, "connector", "db-1", false, 1, 600, NULL);
    const char *names[] = {"db-2", "db-10", "db-", "db", "DB-1", "xdb-1", "db-1.", "db-1-x"};
    size_t n = sizeof(names) / sizeof(names[0]);
    for (size_t i = 0; i < n; i++)
        expect_permission_denied(f, exact, "connector", names[i]);
    /* Not even a bad name gets past the name check to be judged. */
    expect_permission_denied(f, exact, "connector", "db-1/x");
    n++;
    assert_int_equal(uses_left(f, exact), 1);

    const char *prefix = new_token(f, "connector", "edge-", true, 5, 600, NULL);
    const char *bad_prefix[] = {"edge", "edgy-1", "Edge-1", "xedge-1", "ed"};
    for (size_t i = 0; i < sizeof(bad_prefix) / sizeof(bad_prefix[0]); i++)
        expect_permission_denied(f, prefix, "connector", bad_prefix[i]);
    n += sizeof(bad_prefix) / sizeof(bad_prefix[0]);
    assert_int_equal(uses_left(f, prefix), 5);
    assert_int_equal(f->c.counters.enrollment_denied, n);
    assert_int_equal(f->c.counters.enrollments, 0);
    assert_int_equal(events(f, "denied", "permission denied (token is for another name)", NULL),
                     n);

    /* What the tokens do cover. */
    json_t *reply = expect_enrolled(f, exact, "connector", "db-1", NULL);
    json_decref(reply);
    reply = expect_enrolled(f, prefix, "connector", "edge-1", NULL);
    assert_string_equal(str_of(reply, "spiffe_id"), "spiffe://" TD "/connector/edge-1");
    json_decref(reply);
    reply = expect_enrolled(f, prefix, "connector", "edge-fra-2", NULL);
    json_decref(reply);
    assert_int_equal(uses_left(f, prefix), 3);
    assert_int_equal(f->c.counters.enrollments, 3);
}

static void
test_bad_names_under_a_prefix(void **state)
{
    struct fixture *f = *state;
    const char *prefix = new_token(f, "tunneler", "edge-", true, 2, 600, NULL);
    char long_name[200];
    snprintf(long_name, sizeof(long_name), "edge-%0150d", 7);
    const char *names[] = {"edge-a/b", "edge-/", "edge-a b", "edge-%41", "edge-a?", long_name};
    size_t n = sizeof(names) / sizeof(names[0]);
    for (size_t i = 0; i < n; i++)
        expect_refused(f, prefix, "tunneler", names[i], f->csr, NULL, CTLMSG_E_BAD_REQUEST,
                       "invalid node name");
    assert_int_equal(uses_left(f, prefix), 2);
    assert_int_equal(f->c.counters.enrollment_denied, n);
    assert_int_equal(events(f, "denied", "invalid node name", NULL), n);
    struct store_node node;
    struct ztr_err err = {0};
    assert_int_equal(store_node_get_by_spiffe_id(f->c.store, "spiffe://" TD "/tunneler/edge-a",
                                                 &node, &err),
                     -1);
    assert_int_equal(err.code, ZTR_E_NOT_FOUND);
}

static void
test_bad_csr(void **state)
{
    struct fixture *f = *state;
    const char *token = new_token(f, "connector", "db-1", false, 1, 600, NULL);
    char truncated[4096];
    snprintf(truncated, sizeof(truncated), "%.*s", (int)(strlen(f->csr) / 2), f->csr);
    /* A CSR whose signature does not match: one byte of the base64 body changed. */
    char tampered[4096];
    snprintf(tampered, sizeof(tampered), "%s", f->csr);
    char *body = strchr(tampered, '\n') + 1;
    body[40] = body[40] == 'A' ? 'B' : 'A';
    const char *csrs[] = {"", "not a certificate request", truncated, tampered,
                          "-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"};
    size_t n = sizeof(csrs) / sizeof(csrs[0]);
    for (size_t i = 0; i < n; i++)
        expect_refused(f, token, "connector", "db-1", csrs[i], NULL, CTLMSG_E_BAD_REQUEST,
                       "invalid certificate request");
    assert_int_equal(uses_left(f, token), 1);
    assert_int_equal(f->c.counters.enrollment_denied, n);
    assert_int_equal(events(f, "denied", ": invalid certificate request (", NULL), n);
    json_t *reply = expect_enrolled(f, token, "connector", "db-1", NULL);
    json_decref(reply);
}

static void
test_bad_advertised_addresses(void **state)
{
    struct fixture *f = *state;
    char allowed[1024] = "[";
    for (int i = 0; i < PKI_MAX_IP_SANS; i++)
        snprintf(allowed + strlen(allowed), sizeof(allowed) - strlen(allowed), "%s\"10.0.0.%d\"",
                 i ? "," : "", i + 1);
    strcat(allowed, "]");
    const char *token = new_connector_token(f, "db-1", false, 1, false, allowed, NULL);
    const char *lists[] = {
        "[\"db.example.org:7444\"]",
        "[\"10.0.0.5:7444\",\"not-an-ip\"]",
        "[\"10.0.0.256\"]",
        "[\"[10.0.0.5]x\"]",
        "[\"\"]",
    };
    size_t n = sizeof(lists) / sizeof(lists[0]);
    for (size_t i = 0; i < n; i++)
        expect_refused(f, token, "connector", "db-1", f->csr, lists[i], CTLMSG_E_BAD_REQUEST,
                       "invalid advertised address");
    /* At most PKI_MAX_IP_SANS addresses. */
    char many[2048] = "[";
    for (int i = 0; i <= PKI_MAX_IP_SANS; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s\"10.0.0.%d\"",
                 i ? "," : "", i + 1);
    strcat(many, "]");
    expect_refused(f, token, "connector", "db-1", f->csr, many, CTLMSG_E_BAD_REQUEST,
                   "invalid advertised address");
    n++;
    assert_int_equal(uses_left(f, token), 1);
    assert_int_equal(f->c.counters.enrollment_denied, n);
    assert_int_equal(events(f, "denied", "invalid advertised address", NULL), n);

    /* Exactly PKI_MAX_IP_SANS is fine. */
    char *last = strrchr(many, ',');
    strcpy(last, "]");
    json_t *reply = expect_enrolled(f, token, "connector", "db-1", many);
    struct issued issued;
    issued_parse(reply, &issued);
    assert_int_equal(issued.info.ip_count, PKI_MAX_IP_SANS);
    issued_free(&issued);
    json_decref(reply);
}

static void
test_long_address_lists(void **state)
{
    struct fixture *f = *state;
    /* 32 IPv6 addresses written out in full: each is valid and within the
     * SAN limit, but the list does not fit the node record. That is the
     * agent's request at fault, not a permission problem, and it must not
     * cost the token a use. */
    const char *token = new_token(f, "connector", "db-1", false, 1, 600, NULL);
    char many[4096] = "[";
    for (int i = 0; i < PKI_MAX_IP_SANS; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many),
                 "%s\"[2001:0db8:0000:0000:0000:0000:0000:%04x]:65535\"", i ? "," : "", i + 1);
    strcat(many, "]");
    assert_true(strlen(many) > STORE_ADDRESSES_MAX);
    expect_refused(f, token, "connector", "db-1", f->csr, many, CTLMSG_E_BAD_REQUEST,
                   "invalid advertised address");
    /* Tunnelers' addresses are stored as well. */
    const char *ttoken = new_token(f, "tunneler", "laptop-1", false, 1, 600, NULL);
    expect_refused(f, ttoken, "tunneler", "laptop-1", f->csr, many, CTLMSG_E_BAD_REQUEST,
                   "invalid advertised address");
    assert_int_equal(uses_left(f, token), 1);
    assert_int_equal(uses_left(f, ttoken), 1);
    assert_int_equal(f->c.counters.enrollment_denied, 2);
    assert_int_equal(events(f, "denied", "invalid advertised address (addresses longer than", NULL),
                     2);
    assert_int_equal(events(f, "enrolled", NULL, NULL), 0);
    assert_int_equal(f->c.counters.enrollments, 0);
}

static void
test_revoked_node_is_not_re_enrolled(void **state)
{
    struct fixture *f = *state;
    const char *first = new_token(f, "connector", "db-1", false, 1, 600, NULL);
    json_t *reply = expect_enrolled(f, first, "connector", "db-1", NULL);
    char node_id[STORE_ID_MAX + 1];
    snprintf(node_id, sizeof(node_id), "%s", str_of(reply, "node_id"));
    json_decref(reply);
    assert_int_equal(store_node_revoke(f->c.store, node_id, "key compromise", NULL), 0);

    const char *again = new_token(f, "connector", "db-1", false, 2, 600, NULL);
    expect_permission_denied(f, again, "connector", "db-1");
    /* The refused attempt gave its use back. */
    assert_int_equal(uses_left(f, again), 2);
    assert_int_equal(f->c.counters.enrollments, 1);
    assert_int_equal(f->c.counters.enrollment_denied, 1);
    assert_int_equal(events(f, "denied", "permission denied (node db-1 is revoked)", NULL), 1);
    assert_int_equal(events(f, "enrolled", NULL, NULL), 1);
    struct store_node node;
    assert_int_equal(store_node_get(f->c.store, node_id, &node, NULL), 0);
    assert_true(node.revoked);

    /* Another name, or the same name in the other role, is fine. */
    reply = expect_enrolled(f, new_token(f, "connector", "db-2", false, 1, 600, NULL),
                            "connector", "db-2", NULL);
    assert_string_not_equal(str_of(reply, "node_id"), node_id);
    json_decref(reply);
    reply = expect_enrolled(f, new_token(f, "tunneler", "db-1", false, 1, 600, NULL), "tunneler",
                            "db-1", NULL);
    json_decref(reply);
    assert_int_equal(f->c.counters.enrollments, 3);
}

static void
test_refusals_are_checked_in_order(void **state)
{
    struct fixture *f = *state;
    /* Token problems come first: an expired token for the wrong role, name
     * and CSR reads invalid_token, so a stranger learns nothing else. */
    const char *token = new_token(f, "connector", "db-1", false, 1, 60, NULL);
    clock_manual_advance(&f->clock, 60000);
    expect_refused(f, token, "tunneler", "other", "junk", NULL, CTLMSG_E_INVALID_TOKEN,
                   CTLMSG_TEXT_INVALID_TOKEN);
    /* Role before name before CSR. */
    const char *live = new_token(f, "connector", "db-1", false, 1, 60, NULL);
    expect_refused(f, live, "tunneler", "other", "junk", NULL, CTLMSG_E_PERMISSION_DENIED,
                   CTLMSG_TEXT_PERMISSION_DENIED);
    expect_refused(f, live, "connector", "other", "junk", "[\"x\"]", CTLMSG_E_PERMISSION_DENIED,
                   CTLMSG_TEXT_PERMISSION_DENIED);
    expect_refused(f, live, "connector", "db-1", "junk", "[\"x\"]", CTLMSG_E_BAD_REQUEST,
                   "invalid certificate request");
    assert_int_equal(events(f, "denied", "(token expired)", NULL), 1);
    assert_int_equal(events(f, "denied", "(token is for another role)", NULL), 1);
    assert_int_equal(events(f, "denied", "(token is for another name)", NULL), 1);
    assert_int_equal(events(f, "denied", "invalid certificate request", NULL), 1);
    assert_int_equal(f->c.counters.enrollment_denied, 4);
    assert_int_equal(uses_left(f, live), 1);
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_token_text_format),
        T(test_token_stored_as_digest_only),
        T(test_token_create_checks_input),
        T(test_enroll_connector),
        T(test_enroll_tunneler_gets_no_ip_sans),
        T(test_multi_use_token),
        T(test_live_node_is_not_taken_over_without_replace),
        T(test_token_addresses),
        T(test_enroll_certifies_only_allowed_addresses),
        T(test_unallowed_address_reports_are_bounded),
        T(test_unknown_and_garbled_tokens),
        T(test_expired_token),
        T(test_used_up_token),
        T(test_retry_with_the_same_key_returns_the_same_node),
        T(test_role_mismatch),
        T(test_name_mismatch),
        T(test_bad_names_under_a_prefix),
        T(test_bad_csr),
        T(test_bad_advertised_addresses),
        T(test_long_address_lists),
        T(test_revoked_node_is_not_re_enrolled),
        T(test_refusals_are_checked_in_order),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
