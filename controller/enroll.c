/* Enrollment tokens and the enroll exchange.
 *
 * A token reads "<id>.<secret>": the id (8 random bytes, hex) finds the row,
 * the secret (32 random bytes, hex) is checked against the stored SHA-256
 * digest in constant time. Only the digest is ever stored; the plaintext is
 * shown once, to the operator who created it. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "base/config.h"
#include "ctl/ctlmsg.h"
#include "base/log.h"
#include "controller/controller.h"

/* An unauthenticated client can be denied as fast as it can connect: the
 * log gets at most DENIED_LINES_PER_S `enrollment denied` lines a second
 * and the events table at most DENIED_EVENTS_PER_MIN `denied` rows a
 * minute; what is dropped is counted into the next line or row. */
#define DENIED_LINES_PER_S 20
#define DENIED_EVENTS_PER_MIN 30
/* Likewise for addresses an enrolling connector announced that its token
 * does not allow: a fleet token can be used many times over. */
#define UNALLOWED_LINES_PER_S 20
#define UNALLOWED_EVENTS_PER_MIN 30

#define TOKEN_ID_BYTES 8
#define TOKEN_SECRET_BYTES 32

static void
hex_encode(const uint8_t *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

static int
hex_decode(const char *text, size_t len, uint8_t *out)
{
    for (size_t i = 0; i < len; i++) {
        int hi = isxdigit((unsigned char)text[2 * i]), lo = isxdigit((unsigned char)text[2 * i + 1]);
        if (!hi || !lo)
            return -1;
        char pair[3] = {text[2 * i], text[2 * i + 1], 0};
        out[i] = (uint8_t)strtoul(pair, NULL, 16);
    }
    return 0;
}

static int
random_bytes(uint8_t *out, size_t len, struct ztr_err *err)
{
    if (getrandom(out, len, 0) != (ssize_t)len)
        return ztr_err_set(err, ZTR_E_IO, "getrandom failed");
    return 0;
}

/* Compares without an early exit, so the time taken says nothing about
 * how many leading bytes of a guess were right. */
static int
digest_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < len; i++)
        diff |= (uint8_t)(a[i] ^ b[i]);
    return diff == 0;
}

/* The token's allowed addresses, canonical, as the JSON list text the
 * store keeps: only a connector's certificate names IPs, and only those. */
static int
token_addresses(const json_t *addresses, enum pki_role role, char *out, size_t cap,
                struct ztr_err *err)
{
    snprintf(out, cap, "[]");
    if (addresses == NULL || json_is_null(addresses))
        return 0;
    if (!json_is_array(addresses))
        return ztr_err_set(err, ZTR_E_INVALID, "addresses must be a list of IP addresses");
    if (json_array_size(addresses) == 0)
        return 0;
    if (role != PKI_ROLE_CONNECTOR)
        return ztr_err_set(err, ZTR_E_INVALID,
                           "addresses are for connector tokens only: tunnelers are never "
                           "dialed, so their certificates name no IP");
    if (json_array_size(addresses) > PKI_MAX_IP_SANS)
        return ztr_err_set(err, ZTR_E_INVALID, "at most %d addresses", PKI_MAX_IP_SANS);
    json_t *list = json_array();
    size_t i;
    const json_t *item;
    json_array_foreach(addresses, i, item) {
        const char *text = json_string_value(item);
        struct pki_ip ip;
        char canonical[64];
        if (text == NULL || pki_ip_parse(text, &ip) != 0) {
            json_decref(list);
            return ztr_err_set(err, ZTR_E_INVALID,
                               "address \"%.64s\" is not an IP address (give the IP tunnelers "
                               "dial, without a port)",
                               text != NULL ? text : "(not a string)");
        }
        json_array_append_new(list, json_string(pki_ip_format(&ip, canonical, sizeof(canonical))));
    }
    char *dumped = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    if (dumped == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    size_t len = strlen(dumped);
    if (len >= cap) {
        free(dumped);
        return ztr_err_set(err, ZTR_E_INVALID, "addresses longer than %zu bytes as JSON",
                           cap - 1);
    }
    memcpy(out, dumped, len + 1);
    free(dumped);
    return 0;
}

int
token_create(struct controller *c, const struct token_request *request, char **token_text,
             struct store_token *record, struct ztr_err *err)
{
    enum pki_role role;
    if (request->role == NULL || pki_role_parse(request->role, &role) != 0 ||
        role == PKI_ROLE_CONTROLLER)
        return ztr_err_set(err, ZTR_E_INVALID, "role must be connector or tunneler");
    if (request->name == NULL || request->name[0] == '\0' ||
        strlen(request->name) > STORE_NAME_MAX)
        return ztr_err_set(err, ZTR_E_INVALID, "name must be 1..%d bytes", STORE_NAME_MAX);
    struct pki_spiffe_id probe;
    if (pki_spiffe_id_build(c->settings.trust_domain, role, request->name, &probe, err) != 0)
        return ztr_err_wrap(err, "name \"%s\" cannot be a SPIFFE ID segment", request->name);
    if (request->uses < 1 || request->uses > 1000000)
        return ztr_err_set(err, ZTR_E_INVALID, "uses must be 1..1000000");
    if (request->ttl_s < 1 || request->ttl_s > 366LL * 86400)
        return ztr_err_set(err, ZTR_E_INVALID, "ttl must be 1s..366d");
    struct store_token token = {0};
    TRY(token_addresses(request->addresses, role, token.addresses, sizeof(token.addresses), err));
    uint8_t id_bytes[TOKEN_ID_BYTES], secret[TOKEN_SECRET_BYTES];
    TRY(random_bytes(id_bytes, sizeof(id_bytes), err));
    TRY(random_bytes(secret, sizeof(secret), err));
    hex_encode(id_bytes, sizeof(id_bytes), token.id);
    if (wc_Sha256Hash(secret, sizeof(secret), token.digest) != 0)
        return ztr_err_set(err, ZTR_E_CRYPTO, "SHA-256 failed");
    snprintf(token.role, sizeof(token.role), "%s", request->role);
    snprintf(token.name, sizeof(token.name), "%s", request->name);
    token.name_is_prefix = request->name_is_prefix;
    token.replace = request->replace;
    token.uses_left = request->uses;
    int64_t now = clock_wall_s(c->clock);
    token.created_at = now;
    token.expires_at = now + request->ttl_s;
    TRY(store_token_insert(c->store, &token, err));
    char *text = malloc(2 * TOKEN_ID_BYTES + 1 + 2 * TOKEN_SECRET_BYTES + 1);
    if (text == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    hex_encode(id_bytes, sizeof(id_bytes), text);
    text[2 * TOKEN_ID_BYTES] = '.';
    hex_encode(secret, sizeof(secret), text + 2 * TOKEN_ID_BYTES + 1);
    explicit_bzero(secret, sizeof(secret));
    *token_text = text;
    if (record != NULL)
        *record = token;
    return 0;
}

/* ---- enroll ------------------------------------------------------------- */

struct enroll_ctx {
    struct controller *c;
    const char *peer;
    const char *role;
    const char *name;
};

static json_t *
deny(struct enroll_ctx *e, const char *code, const char *message, const char *why)
{
    struct controller *c = e->c;
    c->counters.enrollment_denied++;
    if (c->denied_lines.period_ms == 0) {
        c->denied_lines = (struct log_limit)LOG_LIMIT_INIT(DENIED_LINES_PER_S, 1000);
        c->denied_events = (struct log_limit)LOG_LIMIT_INIT(DENIED_EVENTS_PER_MIN, 60000);
    }
    int64_t now_ms = clock_monotonic_ms(c->clock);
    uint64_t dropped = 0;
    if (log_limit_allow(&c->denied_lines, now_ms, &dropped)) {
        if (dropped > 0)
            log_warn("enrollment denied lines suppressed", "suppressed=%llu",
                     (unsigned long long)dropped);
        log_warn("enrollment denied",
                 "reason=\"%s\" detail=\"%s\" role=%.16s name=%.128s peer=%s", message, why,
                 e->role, e->name, e->peer);
    }
    if (log_limit_allow(&c->denied_events, now_ms, &dropped)) {
        char detail[STORE_DETAIL_MAX];
        int n = snprintf(detail, sizeof(detail), "enroll role=%.16s name=%.128s peer=%s: %s (%s)",
                         e->role, e->name, e->peer, message, why);
        if (dropped > 0 && n > 0 && (size_t)n < sizeof(detail))
            snprintf(detail + n, sizeof(detail) - (size_t)n, "; %llu earlier denials not recorded",
                     (unsigned long long)dropped);
        store_event_add(c->store, "denied", "", detail, NULL);
    }
    return ctlmsg_error(code, message);
}

/* The token row for text "<id>.<secret>", if the secret matches. */
static int
find_token(struct controller *c, const char *text, struct store_token *token)
{
    size_t id_len = 2 * TOKEN_ID_BYTES, secret_len = 2 * TOKEN_SECRET_BYTES;
    if (strlen(text) != id_len + 1 + secret_len || text[id_len] != '.')
        return -1;
    char id[2 * TOKEN_ID_BYTES + 1];
    memcpy(id, text, id_len);
    id[id_len] = '\0';
    uint8_t secret[TOKEN_SECRET_BYTES], digest[WC_SHA256_DIGEST_SIZE];
    uint8_t id_bytes[TOKEN_ID_BYTES];
    if (hex_decode(id, TOKEN_ID_BYTES, id_bytes) != 0 ||
        hex_decode(text + id_len + 1, TOKEN_SECRET_BYTES, secret) != 0)
        return -1;
    int rc = wc_Sha256Hash(secret, sizeof(secret), digest);
    explicit_bzero(secret, sizeof(secret));
    if (rc != 0 || store_token_get(c->store, id, token, NULL) != 0)
        return -1;
    return digest_equal(digest, token->digest, sizeof(digest)) ? 0 : -1;
}

static bool
name_allowed(const struct store_token *token, const char *name)
{
    if (token->name_is_prefix)
        return strncmp(name, token->name, strlen(token->name)) == 0;
    return strcmp(name, token->name) == 0;
}

/* IP SANs for a connector: each advertised "ip", "ip:port" or "[v6]:port". */
static int
advertised_ips(const json_t *addresses, struct pki_ip *ips, size_t *count, struct ztr_err *err)
{
    *count = 0;
    size_t i;
    const json_t *item;
    json_array_foreach(addresses, i, item) {
        const char *text = json_string_value(item);
        char host[128];
        uint16_t port;
        if (config_parse_addr(text, host, sizeof(host), &port) != 0)
            snprintf(host, sizeof(host), "%s", text);
        if (*count == PKI_MAX_IP_SANS)
            return ztr_err_set(err, ZTR_E_LIMIT, "more than %d addresses", PKI_MAX_IP_SANS);
        if (pki_ip_parse(host, &ips[*count]) != 0)
            return ztr_err_set(err, ZTR_E_INVALID, "address \"%.64s\" is not an IP address", text);
        (*count)++;
    }
    return 0;
}

/* The IPs a token allows (its stored JSON list); none when the text does
 * not parse, which fails closed. */
static size_t
token_allowed_ips(const struct store_token *token, struct pki_ip *ips)
{
    json_t *list = json_loads(token->addresses[0] != '\0' ? token->addresses : "[]", 0, NULL);
    size_t count = 0;
    struct ztr_err err = {0};
    if (!json_is_array(list) || advertised_ips(list, ips, &count, &err) != 0)
        count = 0;
    json_decref(list);
    return count;
}

static bool
ip_listed(const struct pki_ip *ip, const struct pki_ip *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (list[i].len == ip->len && memcmp(list[i].bytes, ip->bytes, ip->len) == 0)
            return true;
    return false;
}

/* An address the connector announced that its token does not allow: not
 * certified, and said (within bounds) so that the operator sees the claim. */
static void
report_unallowed(struct controller *c, const struct store_node *node, const struct pki_ip *ip)
{
    if (c->unallowed_lines.period_ms == 0) {
        c->unallowed_lines = (struct log_limit)LOG_LIMIT_INIT(UNALLOWED_LINES_PER_S, 1000);
        c->unallowed_events = (struct log_limit)LOG_LIMIT_INIT(UNALLOWED_EVENTS_PER_MIN, 60000);
    }
    char text[64];
    pki_ip_format(ip, text, sizeof(text));
    int64_t now_ms = clock_monotonic_ms(c->clock);
    uint64_t dropped = 0;
    if (log_limit_allow(&c->unallowed_lines, now_ms, &dropped)) {
        if (dropped > 0)
            log_warn("enrollment address not allowed lines suppressed", "suppressed=%llu",
                     (unsigned long long)dropped);
        log_warn("enrollment address not allowed", "node=%s name=%s address=%s", node->id,
                 node->name, text);
    }
    if (log_limit_allow(&c->unallowed_events, now_ms, &dropped)) {
        char detail[STORE_DETAIL_MAX];
        int n = snprintf(detail, sizeof(detail),
                         "enrollment address not allowed: connector=%s address=%s (not certified)",
                         node->name, text);
        if (dropped > 0 && n > 0 && (size_t)n < sizeof(detail))
            snprintf(detail + n, sizeof(detail) - (size_t)n, "; %llu earlier not recorded",
                     (unsigned long long)dropped);
        store_event_add(c->store, "security", node->id, detail, NULL);
    }
}

/* Whether the CSR's key is one that consumed a use of token. */
static bool
used_by_same_key(struct controller *c, const struct store_token *token, const char *csr_text)
{
    struct pki_csr *csr = NULL;
    struct ztr_err err = {0};
    bool used = false;
    if (csr_text == NULL ||
        pki_csr_parse((const uint8_t *)csr_text, strlen(csr_text), &csr, &err) != 0)
        return false;
    size_t public_len;
    const uint8_t *public_der = pki_csr_public_der(csr, &public_len);
    char key[PKI_KEY_FINGERPRINT_MAX + 1];
    if (pki_public_key_fingerprint(public_der, public_len, key, &err) != 0 ||
        store_token_used_by(c->store, token->id, key, &used, &err) != 0)
        used = false;
    pki_csr_free(csr);
    return used;
}

json_t *
enroll_handle(struct controller *c, const json_t *msg, const char *peer_addr)
{
    struct enroll_ctx e = {c, peer_addr, json_string_value(json_object_get(msg, "role")),
                           json_string_value(json_object_get(msg, "name"))};
    const char *token_text = json_string_value(json_object_get(msg, "token"));
    const char *csr_text = json_string_value(json_object_get(msg, "csr"));
    const json_t *addresses = json_object_get(msg, "addresses");
    int64_t now = clock_wall_s(c->clock);

    struct store_token token;
    if (find_token(c, token_text, &token) != 0)
        return deny(&e, CTLMSG_E_INVALID_TOKEN, CTLMSG_TEXT_INVALID_TOKEN, "unknown token");
    if (token.expires_at <= now)
        return deny(&e, CTLMSG_E_INVALID_TOKEN, CTLMSG_TEXT_INVALID_TOKEN, "token expired");
    /* A used-up token still answers the key that used it (a retry by an
     * agent that never kept the answer); any other key is refused here,
     * as before, before anything is issued. */
    if (token.uses_left <= 0 && !used_by_same_key(c, &token, csr_text))
        return deny(&e, CTLMSG_E_INVALID_TOKEN, CTLMSG_TEXT_INVALID_TOKEN, "token used up");
    if (strcmp(token.role, e.role) != 0)
        return deny(&e, CTLMSG_E_PERMISSION_DENIED, CTLMSG_TEXT_PERMISSION_DENIED,
                    "token is for another role");
    if (!name_allowed(&token, e.name))
        return deny(&e, CTLMSG_E_PERMISSION_DENIED, CTLMSG_TEXT_PERMISSION_DENIED,
                    "token is for another name");

    struct ztr_err err = {0};
    enum pki_role role;
    struct pki_spiffe_id id;
    struct pki_csr *csr = NULL;
    /* A connector's certificate names what it announced AND its token
     * allows: the operator's word, never the connector's alone. */
    struct pki_ip announced[PKI_MAX_IP_SANS], allowed[PKI_MAX_IP_SANS], ips[PKI_MAX_IP_SANS];
    size_t announced_count = 0, allowed_count = token_allowed_ips(&token, allowed), ip_count = 0;
    if (pki_role_parse(e.role, &role) != 0 ||
        pki_spiffe_id_build(c->settings.trust_domain, role, e.name, &id, &err) != 0)
        return deny(&e, CTLMSG_E_BAD_REQUEST, "invalid node name", err.msg);
    if (pki_csr_parse((const uint8_t *)csr_text, strlen(csr_text), &csr, &err) != 0)
        return deny(&e, CTLMSG_E_BAD_REQUEST, "invalid certificate request", err.msg);
    if (role == PKI_ROLE_CONNECTOR && addresses != NULL &&
        advertised_ips(addresses, announced, &announced_count, &err) != 0) {
        pki_csr_free(csr);
        return deny(&e, CTLMSG_E_BAD_REQUEST, "invalid advertised address", err.msg);
    }
    for (size_t i = 0; i < announced_count; i++)
        if (ip_listed(&announced[i], allowed, allowed_count))
            ips[ip_count++] = announced[i];
    /* The node record keeps the list as JSON text of bounded size; a list
     * that does not fit is the request's fault, found before issuing. */
    char *addresses_text = addresses != NULL ? json_dumps(addresses, JSON_COMPACT) : NULL;
    if (addresses_text != NULL && strlen(addresses_text) > STORE_ADDRESSES_MAX) {
        free(addresses_text);
        pki_csr_free(csr);
        snprintf(err.msg, sizeof(err.msg), "addresses longer than %d bytes as JSON",
                 STORE_ADDRESSES_MAX);
        return deny(&e, CTLMSG_E_BAD_REQUEST, "invalid advertised address", err.msg);
    }
    size_t public_len;
    const uint8_t *public_der = pki_csr_public_der(csr, &public_len);
    char key[PKI_KEY_FINGERPRINT_MAX + 1];
    if (pki_public_key_fingerprint(public_der, public_len, key, &err) != 0) {
        free(addresses_text);
        pki_csr_free(csr);
        return deny(&e, CTLMSG_E_BAD_REQUEST, "invalid certificate request", err.msg);
    }
    char *chain = NULL, *bundle = NULL;
    size_t chain_len, bundle_len;
    json_t *reply = NULL;
    if (ca_set_issue(c->cas, &id, public_der, public_len, ips, ip_count, c->settings.svid_ttl_s,
                     &chain, &chain_len, &err) != 0 ||
        ca_set_bundle_pem(c->cas, &bundle, &bundle_len, &err) != 0) {
        log_error("cannot issue certificate", "spiffe_id=%s error=\"%s\"", id.uri, err.msg);
        reply = ctlmsg_error(CTLMSG_E_INTERNAL, "cannot issue certificate");
        goto out;
    }
    struct pki_chain *parsed;
    struct pki_cert_info info = {0};
    if (pki_chain_from_pem(chain, chain_len, &parsed, NULL) == 0) {
        size_t der_len;
        const uint8_t *der = pki_chain_der(parsed, 0, &der_len);
        pki_cert_info_parse(der, der_len, &info, NULL);
        pki_chain_free(parsed);
    }
    struct store_node node = {0}, stored;
    snprintf(node.name, sizeof(node.name), "%s", e.name);
    snprintf(node.role, sizeof(node.role), "%s", e.role);
    snprintf(node.spiffe_id, sizeof(node.spiffe_id), "%s", id.uri);
    snprintf(node.addresses, sizeof(node.addresses), "%s", addresses_text ? addresses_text : "[]");
    snprintf(node.allowed_addresses, sizeof(node.allowed_addresses), "%s",
             token.addresses[0] != '\0' ? token.addresses : "[]");
    snprintf(node.cert_serial, sizeof(node.cert_serial), "%s", info.serial_hex);
    snprintf(node.cert_key, sizeof(node.cert_key), "%s", key);
    node.cert_not_after = info.not_after;
    bool retried = false;
    if (store_node_enroll(c->store, token.id, &node, &stored, &retried, &err) != 0) {
        if (err.code == ZTR_E_NOT_FOUND)
            reply = deny(&e, CTLMSG_E_INVALID_TOKEN, CTLMSG_TEXT_INVALID_TOKEN,
                         "token already consumed");
        else if (err.code == ZTR_E_INVALID)
            reply = deny(&e, CTLMSG_E_PERMISSION_DENIED, CTLMSG_TEXT_PERMISSION_DENIED, err.msg);
        else if (err.code == STORE_E_ENROLLED) {
            /* The agent is told which name is taken: its operator may have
             * meant a new node, or needs a --replace token. */
            char message[STORE_NAME_MAX + 32];
            snprintf(message, sizeof(message), "node %s already enrolled", e.name);
            reply = deny(&e, CTLMSG_E_PERMISSION_DENIED, message, err.msg);
        }
        else
            reply = ctlmsg_error(CTLMSG_E_INTERNAL, "cannot record the node");
        goto out;
    }
    c->counters.enrollments++;
    if (retried)
        log_info("node enrollment retried", "node=%s spiffe_id=%s peer=%s not_after=%lld "
                 "detail=\"same token, same key: the agent had not kept the first answer\"",
                 stored.id, id.uri, peer_addr, (long long)info.not_after);
    else
        log_info("node enrolled", "node=%s spiffe_id=%s peer=%s not_after=%lld", stored.id,
                 id.uri, peer_addr, (long long)info.not_after);
    for (size_t i = 0; i < announced_count; i++)
        if (!ip_listed(&announced[i], allowed, allowed_count))
            report_unallowed(c, &stored, &announced[i]);
    if (role == PKI_ROLE_CONNECTOR && ip_count == 0)
        log_warn("connector certified without IP addresses",
                 "node=%s name=%s hint=\"tunnelers cannot dial it until the operator "
                 "sets its addresses: controller node set-addresses %s --address IP... (certified "
                 "from its next renewal), or re-enroll it with a token created with --replace "
                 "--address IP\"",
                 stored.id, stored.name, stored.id);
    reply = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "enrolled", "node_id", stored.id,
                      "spiffe_id", id.uri, "chain", chain, "bundle", bundle);
out:
    free(addresses_text);
    free(chain);
    free(bundle);
    pki_csr_free(csr);
    return reply;
}
