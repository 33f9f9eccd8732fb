/* Federation between trust domains: tokens, accept, the link and its
 * heartbeats, the sweep (federation.h says how the pieces fit). */
#define _GNU_SOURCE
#include "controller/federation.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <errno.h>
#include <stdarg.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "base/backoff.h"
#include "base/fileio.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/quota.h"
#include "controller/controller.h"
#include "ctl/ctlmsg.h"
#include "ctl/frame.h"
#include "ctl/stream.h"
#include "net/net.h"
#include "net/tls.h"

/* Federation sessions at once (the listener's and our own links). */
#define FED_SESSIONS_MAX 256
/* An unauthenticated session must send its accept within this long. */
#define FED_FIRST_MESSAGE_MS 10000
/* An accept carries a bundle of a few CAs: bounded before anything is read. */
#define FED_PREAUTH_FRAME_MAX (40 * 1024)
/* Unauthenticated connections one source may hold. */
#define FED_HANDSHAKES_PER_SOURCE 16
#define FED_SOURCE_TABLE_MAX 4096
/* How often sessions, links and heartbeats are looked after: a revoked or
 * suspended peer's link is closed at once; this bounds everything else. */
#define FED_TICK_S 0.25
/* A link silent this many heartbeat intervals is closed (and redialled). */
#define FED_SILENT_INTERVALS 3
#define FED_CERT_FILE_MAX (64 * 1024)

static const char *const fed_states[] = {"proposed", "accepted", "enrolled", "active",
                                         "degraded", "suspended", "revoked"};
#define FED_STATE_COUNT (sizeof(fed_states) / sizeof(fed_states[0]))

/* ---- base64url ------------------------------------------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t
b64_encoded_len(size_t len)
{
    return len / 3 * 4 + (len % 3 == 0 ? 0 : len % 3 + 1);
}

static void
b64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = b64_alphabet[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = b64_alphabet[v & 63];
    }
    out[o] = '\0';
}

static int
b64_value(char ch)
{
    const char *p = ch != '\0' ? strchr(b64_alphabet, ch) : NULL;
    return p != NULL ? (int)(p - b64_alphabet) : -1;
}

/* Decodes len characters into out (cap bytes); -1 on a bad character or size. */
static int
b64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *out_len = o;
    return 0;
}

/* ---- the token ------------------------------------------------------------- */

void
fed_secret_digest(const uint8_t secret[FED_SECRET_BYTES], uint8_t digest[32])
{
    wc_Sha256Hash(secret, FED_SECRET_BYTES, digest);
}

int
fed_token_encode(const struct fed_token *t, char **text, struct ztr_err *err)
{
    size_t id_len = strlen(t->peer_id), td_len = strlen(t->trust_domain);
    size_t cap = strlen(FED_TOKEN_PREFIX) + 4 + id_len + b64_encoded_len(FED_SECRET_BYTES) +
                 b64_encoded_len(td_len) + b64_encoded_len(t->ca_len) + 1;
    char *out = malloc(cap);
    if (out == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    size_t o = (size_t)snprintf(out, cap, "%s.%s.", FED_TOKEN_PREFIX, t->peer_id);
    b64_encode(t->secret, FED_SECRET_BYTES, out + o);
    o += strlen(out + o);
    out[o++] = '.';
    b64_encode((const uint8_t *)t->trust_domain, td_len, out + o);
    o += strlen(out + o);
    out[o++] = '.';
    b64_encode(t->ca_der, t->ca_len, out + o);
    *text = out;
    return 0;
}

void
fed_token_clear(struct fed_token *t)
{
    explicit_bzero(t->secret, sizeof(t->secret));
    free(t->ca_der);
    t->ca_der = NULL;
    t->ca_len = 0;
}

int
fed_token_decode(const char *text, struct fed_token *out, struct ztr_err *err)
{
    memset(out, 0, sizeof(*out));
    const char *parts[5];
    size_t lens[5];
    const char *p = text;
    size_t n = 0;
    while (n < 5) {
        const char *dot = strchr(p, '.');
        parts[n] = p;
        lens[n] = dot != NULL ? (size_t)(dot - p) : strlen(p);
        n++;
        if (dot == NULL)
            break;
        p = dot + 1;
    }
    /* Whitespace a copy through a chat client added around it is not the token. */
    if (n != 5 || strchr(parts[4], '.') != NULL || lens[0] != strlen(FED_TOKEN_PREFIX) ||
        memcmp(parts[0], FED_TOKEN_PREFIX, lens[0]) != 0 || lens[1] == 0 ||
        lens[1] > STORE_ID_MAX)
        return ztr_err_set(err, ZTR_E_INVALID,
                           "not a federation acceptance token (expected " FED_TOKEN_PREFIX
                           ".<peer>.<secret>.<trust domain>.<CA>)");
    for (size_t i = 0; i < lens[1]; i++)
        if (!((parts[1][i] >= '0' && parts[1][i] <= '9') ||
              (parts[1][i] >= 'a' && parts[1][i] <= 'f')))
            return ztr_err_set(err, ZTR_E_INVALID, "acceptance token: bad peer id");
    memcpy(out->peer_id, parts[1], lens[1]);
    size_t len;
    if (b64_decode(parts[2], lens[2], out->secret, sizeof(out->secret), &len) != 0 ||
        len != FED_SECRET_BYTES) {
        fed_token_clear(out);
        return ztr_err_set(err, ZTR_E_INVALID, "acceptance token: bad secret");
    }
    if (b64_decode(parts[3], lens[3], (uint8_t *)out->trust_domain,
                   sizeof(out->trust_domain) - 1, &len) != 0 ||
        memchr(out->trust_domain, '\0', len) != NULL) {
        fed_token_clear(out);
        return ztr_err_set(err, ZTR_E_INVALID, "acceptance token: bad trust domain");
    }
    out->trust_domain[len] = '\0';
    if (pki_trust_domain_check(out->trust_domain, err) != 0) {
        fed_token_clear(out);
        return -1;
    }
    out->ca_der = malloc(PKI_CERT_MAX_DER);
    if (out->ca_der == NULL) {
        fed_token_clear(out);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    if (b64_decode(parts[4], lens[4], out->ca_der, PKI_CERT_MAX_DER, &out->ca_len) != 0 ||
        out->ca_len == 0) {
        fed_token_clear(out);
        return ztr_err_set(err, ZTR_E_INVALID, "acceptance token: bad CA certificate");
    }
    return 0;
}

/* ---- accept checks and states ----------------------------------------------- */

static bool
digest_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < len; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}

enum fed_refusal
fed_accept_check(const struct store_peer *peer, const uint8_t secret[FED_SECRET_BYTES],
                 int64_t now)
{
    if (peer == NULL)
        return FED_REFUSE_UNKNOWN;
    if (strcmp(peer->state, "revoked") == 0)
        return FED_REFUSE_REVOKED;
    if (!peer->has_token || strcmp(peer->state, "proposed") != 0)
        return FED_REFUSE_USED;
    if (secret == NULL)
        return FED_REFUSE_REQUIRED;
    uint8_t digest[32];
    fed_secret_digest(secret, digest);
    if (!digest_equal(digest, peer->token_digest, sizeof(digest)))
        return FED_REFUSE_MISMATCH;
    if (now >= peer->token_expires_at)
        return FED_REFUSE_EXPIRED;
    return FED_ACCEPT_OK;
}

const char *
fed_refusal_text(enum fed_refusal refusal)
{
    return refusal == FED_REFUSE_REQUIRED ? FED_TEXT_TOKEN_REQUIRED : FED_TEXT_TOKEN_MISMATCH;
}

const char *
fed_refusal_reason(enum fed_refusal refusal)
{
    switch (refusal) {
    case FED_ACCEPT_OK:
        return "accepted";
    case FED_REFUSE_UNKNOWN:
        return "unknown peer id (typo, or a token of another controller)";
    case FED_REFUSE_MISMATCH:
        return "token does not match (typo)";
    case FED_REFUSE_USED:
        return "token already used";
    case FED_REFUSE_EXPIRED:
        return "token expired";
    case FED_REFUSE_REQUIRED:
        return "no token sent";
    case FED_REFUSE_REVOKED:
        return "peer revoked";
    }
    return "?";
}

bool
fed_state_valid(const char *state)
{
    for (size_t i = 0; i < FED_STATE_COUNT; i++)
        if (strcmp(state, fed_states[i]) == 0)
            return true;
    return false;
}

const char *
fed_state_after_heartbeat(const char *state)
{
    if (strcmp(state, "accepted") == 0)
        return "enrolled";
    if (strcmp(state, "degraded") == 0)
        return "active";
    return state;
}

const char *
fed_state_after_ack(const char *state)
{
    if (strcmp(state, "accepted") == 0 || strcmp(state, "enrolled") == 0 ||
        strcmp(state, "degraded") == 0)
        return "active";
    return state;
}

bool
fed_state_linked(const char *state)
{
    return strcmp(state, "accepted") == 0 || strcmp(state, "enrolled") == 0 ||
           strcmp(state, "active") == 0 || strcmp(state, "degraded") == 0;
}

bool
fed_sweep_due(const struct store_peer *peer, int64_t now, int64_t stale_after_s)
{
    return (strcmp(peer->state, "enrolled") == 0 || strcmp(peer->state, "active") == 0) &&
           peer->last_heartbeat_at < now - stale_after_s;
}

/* ---- the runtime ------------------------------------------------------------ */

struct fed_link;

struct fed_session {
    struct federation *fed;
    struct ctl_stream *stream;
    bool outbound;          /* we dialed (a link we keep) */
    bool linked;            /* mTLS with a verified peer controller */
    bool closing;
    bool ready;             /* the handshake completed */
    struct tls_ctx *tls;    /* outbound: the client context, freed after the stream */
    char peer_id[STORE_ID_MAX + 1];
    char peer_name[STORE_NAME_MAX + 1];
    char url[STORE_URL_MAX + 1];    /* outbound: what we dialed */
    int64_t opened_ms, last_frame_ms, next_heartbeat_ms;
    int64_t seq;
    int64_t peer_holds_version; /* of our bundle, as the peer last said (0: unknown) */
    char *grants_sent;      /* the last fed_grants list sent (JSON), NULL: none yet */
    bool holds_source;
    struct quota_key source;
    struct fed_link *link;
    struct fed_session *prev, *next;
};

/* A link we dial (outbound peers): one per peer. */
struct fed_link {
    struct federation *fed;
    char peer_id[STORE_ID_MAX + 1];
    char peer_name[STORE_NAME_MAX + 1];
    struct fed_session *session;
    struct backoff backoff;
    int64_t retry_at_ms;
    bool keep;              /* still wanted at this sync */
    struct fed_link *next;
};

struct federation {
    struct controller *c;
    int listen_fd;
    uint16_t port;
    ev_io accept_io;
    ev_timer tick;
    ev_timer sweep;
    struct tls_ctx *server_tls;
    char *chain, *key;
    size_t chain_len, key_len;
    bool identity_from_files;
    int64_t identity_renew_at;
    int64_t identity_bundle_version; /* the bundle it was issued under */
    struct fed_session *sessions;
    size_t session_count;
    struct fed_link *links;
    /* Client contexts of closed streams, freed at the next tick (a stream
     * still reads its context while it closes). */
    struct tls_ctx *retired[FED_SESSIONS_MAX];
    size_t retired_count;
    struct quota *unauthenticated;
    struct quota *accept_failures;
    struct log_limit accept_log;
    struct log_limit refuse_log;
    struct accept_run *accepts; /* accepts in flight (federation_accept_start) */
    int64_t grants_checked_at;  /* grant expiries looked at up to here (wall s) */
    int64_t grants_next_expiry; /* next one to look at, 0 = none; 1 = look again now */
};

static int64_t
mono_ms(const struct federation *fed)
{
    return clock_monotonic_ms(fed->c->clock);
}

static int64_t
wall_s(const struct controller *c)
{
    return clock_wall_s(c->clock);
}

static void
record_event(struct controller *c, const char *source, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
record_event(struct controller *c, const char *source, const char *fmt, ...)
{
    char detail[STORE_DETAIL_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    struct ztr_err err = {0};
    if (store_event_add_from(c->store, source, "federation", "", detail, &err) != 0)
        log_warn("federation event not recorded", "error=\"%s\"", err.msg);
}

static struct store_peer *
peer_alloc(void)
{
    return calloc(1, sizeof(struct store_peer));
}

/* ---- identity ---------------------------------------------------------------- */

static void
identity_free(struct federation *fed)
{
    if (fed->key != NULL)
        explicit_bzero(fed->key, fed->key_len);
    free(fed->key);
    free(fed->chain);
    fed->key = fed->chain = NULL;
}

/* Our controller certificate for federation: FEDERATION_CERT/KEY when
 * given, else spiffe://<td>/controller issued by the oldest CA of the
 * bundle (the one a token pins) with a fresh key. */
static int
identity_load(struct federation *fed, struct ztr_err *err)
{
    struct controller *c = fed->c;
    char *chain = NULL, *key_pem = NULL;
    size_t chain_len = 0, key_len = 0;
    int rc;
    if (c->settings.federation_cert[0] != '\0') {
        rc = file_read_all(c->settings.federation_cert, FED_CERT_FILE_MAX, &chain, &chain_len,
                           err);
        if (rc == 0)
            rc = file_read_all(c->settings.federation_key, FED_CERT_FILE_MAX, &key_pem,
                               &key_len, err);
        fed->identity_from_files = true;
        fed->identity_renew_at = INT64_MAX;
    } else {
        struct pki_key *key = NULL;
        uint8_t *public_der = NULL;
        size_t public_len;
        struct pki_spiffe_id id;
        rc = pki_spiffe_id_build(c->settings.trust_domain, PKI_ROLE_CONTROLLER, NULL, &id, err);
        if (rc == 0)
            rc = pki_key_generate(&key, err);
        if (rc == 0)
            rc = pki_key_public_der(key, &public_der, &public_len, err);
        if (rc == 0) {
            int64_t now = wall_s(c);
            struct pki_leaf_request request = {&id, public_der, public_len, NULL, 0, now - 60,
                                               now + c->settings.svid_ttl_s, NULL, 0};
            rc = pki_ca_issue(ca_set_oldest(c->cas), &request, &chain, &chain_len, err);
        }
        if (rc == 0)
            rc = pki_key_to_pem(key, &key_pem, &key_len, err);
        pki_key_free(key);
        free(public_der);
        fed->identity_renew_at = wall_s(c) + c->settings.svid_ttl_s / 2;
        fed->identity_bundle_version = ca_set_bundle_version(c->cas);
    }
    if (rc != 0) {
        free(chain);
        if (key_pem != NULL)
            explicit_bzero(key_pem, key_len);
        free(key_pem);
        return -1;
    }
    identity_free(fed);
    fed->chain = chain;
    fed->chain_len = chain_len;
    fed->key = key_pem;
    fed->key_len = key_len;
    return 0;
}

/* ---- the listener's trust: one bundle per peer -------------------------------- */

struct union_walk {
    char *pem;
    size_t len;
    bool failed;
};

static int
append_peer_bundle(void *ctx, const struct store_peer *peer)
{
    struct union_walk *w = ctx;
    if (strcmp(peer->state, "revoked") == 0 || peer->bundle[0] == '\0')
        return 0;
    size_t add = strlen(peer->bundle);
    char *grown = realloc(w->pem, w->len + add + 2);
    if (grown == NULL) {
        w->failed = true;
        return 1;
    }
    w->pem = grown;
    memcpy(w->pem + w->len, peer->bundle, add);
    w->len += add;
    w->pem[w->len++] = '\n';
    w->pem[w->len] = '\0';
    return 0;
}

/* wolfSSL's anchors on the listener: our own bundle (never empty) and
 * every live peer's. Which one a client is checked against is the
 * resolver's choice (pki_tls_check.resolve). */
static int
union_bundle(struct federation *fed, char **pem, size_t *len, struct ztr_err *err)
{
    struct union_walk w = {0};
    TRY(ca_set_bundle_pem(fed->c->cas, &w.pem, &w.len, err));
    if (store_peer_list(fed->c->store, append_peer_bundle, &w, err) != 0 || w.failed) {
        free(w.pem);
        return w.failed ? ztr_err_set(err, ZTR_E_NOMEM, "out of memory") : -1;
    }
    *pem = w.pem;
    *len = w.len;
    return 0;
}

static void
refresh_server_trust(struct federation *fed)
{
    if (fed->server_tls == NULL)
        return;
    char *pem = NULL;
    size_t len = 0;
    struct ztr_err err = {0};
    if (union_bundle(fed, &pem, &len, &err) != 0 ||
        tls_ctx_update(fed->server_tls, NULL, 0, NULL, 0, pem, len, &err) != 0)
        log_error("federation trust not updated", "error=\"%s\"", err.msg);
    free(pem);
}

/* A link's client certificate must chain to its trust domain's own bundle,
 * as stored at accept (or updated by a heartbeat). */
static int
resolve_peer(void *ctx, const char *trust_domain, struct pki_bundle **bundle,
             struct ztr_err *err)
{
    struct federation *fed = ctx;
    *bundle = NULL;
    struct store_peer *peer = peer_alloc();
    if (peer == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int rc;
    struct ztr_err lookup = {0};
    if (strcmp(trust_domain, fed->c->settings.trust_domain) == 0 ||
        store_peer_get_by_trust_domain(fed->c->store, trust_domain, peer, &lookup) != 0 ||
        peer->bundle[0] == '\0')
        rc = ztr_err_set(err, PKI_E_TRUST_DOMAIN_MISMATCH, "%s: trust domain %s",
                         FED_TEXT_UNKNOWN_PEER, trust_domain);
    else
        rc = pki_bundle_from_pem(peer->bundle, strlen(peer->bundle), bundle, err);
    free(peer);
    return rc;
}

/* ---- sessions ---------------------------------------------------------------- */

static void
session_close(struct fed_session *s, const char *reason)
{
    if (s->closing)
        return;
    s->closing = true;
    ctl_stream_close(s->stream, reason);
}

static void
session_send(struct fed_session *s, json_t *msg)
{
    if (s->closing) {
        json_decref(msg);
        return;
    }
    struct ztr_err err = {0};
    if (ctl_stream_send(s->stream, msg, &err) != 0) {
        log_warn("federation message not sent", "peer=%s error=\"%s\"", s->peer_name, err.msg);
        session_close(s, err.msg);
    }
}

static void
session_fail(struct fed_session *s, const char *code, const char *message)
{
    session_send(s, ctlmsg_error(code, message));
    session_close(s, message);
}

static void
release_source(struct fed_session *s)
{
    if (s->holds_source)
        quota_leave(s->fed->unauthenticated, &s->source);
    s->holds_source = false;
}

/* Moves the peer to state (when it differs), with a log line and an event. */
static void
peer_set_state(struct controller *c, struct store_peer *peer, const char *state,
               const char *source)
{
    if (strcmp(peer->state, state) == 0)
        return;
    char from[16];
    snprintf(from, sizeof(from), "%s", peer->state);
    snprintf(peer->state, sizeof(peer->state), "%s", state);
    if (strcmp(state, "degraded") != 0 && strcmp(state, "suspended") != 0)
        peer->reason[0] = '\0';
    log_info("federation peer state", "peer=%s trust_domain=%s from=%s to=%s", peer->name,
             peer->trust_domain, from, state);
    record_event(c, source, "peer=%s trust_domain=%s state %s -> %s%s%s", peer->name,
                 peer->trust_domain, from, state, peer->reason[0] != '\0' ? " reason=" : "",
                 peer->reason);
}

static json_t *
heartbeat_msg(struct fed_session *s, const char *type, int64_t seq, const struct store_peer *peer)
{
    struct controller *c = s->fed->c;
    int64_t version = ca_set_bundle_version(c->cas);
    json_t *msg = json_pack("{s:s, s:I, s:I, s:I}", "type", type, "seq", (json_int_t)seq,
                            "bundle_version", (json_int_t)version, "peer_bundle_version",
                            (json_int_t)(peer->bundle_version > 0 ? peer->bundle_version : 0));
    /* The bundle travels only while the peer does not hold this version:
     * a rotation reaches it with the next heartbeat. */
    if (msg != NULL && s->peer_holds_version != version) {
        char *pem;
        size_t len;
        struct ztr_err err;
        if (ca_set_bundle_pem(c->cas, &pem, &len, &err) == 0) {
            json_object_set_new(msg, "bundle", json_stringn(pem, len));
            free(pem);
        }
    }
    return msg;
}

/* The peer of a linked session, read fresh: NULL (and the session closed
 * with a clear error) when it is suspended, revoked or gone. */
static struct store_peer *
linked_peer(struct fed_session *s)
{
    struct store_peer *peer = peer_alloc();
    struct ztr_err err = {0};
    if (peer == NULL || store_peer_get(s->fed->c->store, s->peer_id, peer, &err) != 0 ||
        strcmp(peer->state, "revoked") == 0) {
        free(peer);
        session_fail(s, CTLMSG_E_PERMISSION_DENIED, FED_TEXT_UNKNOWN_PEER);
        return NULL;
    }
    if (strcmp(peer->state, "suspended") == 0) {
        char message[STORE_DETAIL_MAX + 64];
        snprintf(message, sizeof(message), "%s: %s", FED_TEXT_SUSPENDED, peer->reason);
        free(peer);
        session_fail(s, CTLMSG_E_PERMISSION_DENIED, message);
        return NULL;
    }
    return peer;
}

static void
send_heartbeat(struct fed_session *s)
{
    struct store_peer *peer = linked_peer(s);
    if (peer == NULL)
        return;
    session_send(s, heartbeat_msg(s, "fed_heartbeat", ++s->seq, peer));
    free(peer);
}

/* A heartbeat or its ack: the peer is alive; store what it says. */
static void
handle_beat(struct fed_session *s, enum ctlmsg_type type, const json_t *msg)
{
    struct federation *fed = s->fed;
    struct controller *c = fed->c;
    struct store_peer *peer = linked_peer(s);
    if (peer == NULL)
        return;
    c->counters.fed_heartbeats++;
    s->peer_holds_version = json_integer_value(json_object_get(msg, "peer_bundle_version"));
    int64_t version = json_integer_value(json_object_get(msg, "bundle_version"));
    const char *bundle = json_string_value(json_object_get(msg, "bundle"));
    bool bundle_changed = false;
    if (bundle != NULL && (version != peer->bundle_version || strcmp(bundle, peer->bundle) != 0)) {
        struct pki_bundle *parsed = NULL;
        struct ztr_err err = {0};
        if (strlen(bundle) > STORE_PEER_BUNDLE_MAX ||
            pki_bundle_from_pem(bundle, strlen(bundle), &parsed, &err) != 0) {
            log_warn("federation peer bundle refused", "peer=%s error=\"%s\"", peer->name,
                     err.code != ZTR_OK ? err.msg : "too large");
        } else {
            snprintf(peer->bundle, sizeof(peer->bundle), "%s", bundle);
            peer->bundle_version = version;
            bundle_changed = true;
            log_info("federation peer bundle updated", "peer=%s trust_domain=%s version=%lld",
                     peer->name, peer->trust_domain, (long long)version);
            record_event(c, "federation_link", "peer=%s bundle updated version=%lld",
                         peer->name, (long long)version);
        }
        pki_bundle_free(parsed);
    }
    peer->last_heartbeat_at = wall_s(c);
    const char *next = type == CTLMSG_FED_HEARTBEAT ? fed_state_after_heartbeat(peer->state)
                                                    : fed_state_after_ack(peer->state);
    char next_state[16];
    snprintf(next_state, sizeof(next_state), "%s", next);
    /* An ack before any heartbeat came in still passes through enrolled. */
    if (strcmp(peer->state, "accepted") == 0 && strcmp(next_state, "active") == 0)
        peer_set_state(c, peer, "enrolled", "federation_link");
    peer_set_state(c, peer, next_state, "federation_link");
    struct ztr_err err = {0};
    if (store_peer_update(c->store, peer, &err) != 0)
        log_warn("federation peer not updated", "peer=%s error=\"%s\"", peer->name, err.msg);
    if (type == CTLMSG_FED_HEARTBEAT)
        session_send(s, heartbeat_msg(s, "fed_heartbeat_ack",
                                      json_integer_value(json_object_get(msg, "seq")), peer));
    free(peer);
    if (bundle_changed && !s->outbound)
        refresh_server_trust(fed);
    if (bundle_changed)
        federation_changed(c, true);
}

/* What the peer granted our tunnelers: their connectors lists follow. */
static void
handle_grants(struct fed_session *s, const json_t *msg)
{
    struct controller *c = s->fed->c;
    struct store_peer *peer = linked_peer(s);
    if (peer == NULL)
        return;
    bool changed = false;
    struct ztr_err err = {0};
    if (federation_remote_grants_apply(c, peer, msg, &changed, &err) != 0)
        log_warn("federation grants not stored", "peer=%s error=\"%s\"", peer->name, err.msg);
    else if (changed && c->ctl != NULL)
        ctl_server_push_all(c->ctl);
    free(peer);
}

void
federation_push_grants(struct controller *c, const json_t *serving)
{
    struct federation *fed = c->fed;
    if (fed == NULL)
        return;
    json_t *built = NULL;
    for (struct fed_session *s = fed->sessions; s != NULL; s = s->next) {
        if (!s->linked || s->closing || !s->ready)
            continue;
        if (serving == NULL)
            serving = built = ctl_server_serving(c);
        json_t *grants = federation_grants_for_peer(c, s->peer_id, serving);
        char *text = json_dumps(grants, JSON_COMPACT | JSON_SORT_KEYS);
        if (text != NULL && (s->grants_sent == NULL || strcmp(text, s->grants_sent) != 0)) {
            session_send(s, json_pack("{s:s, s:I, s:O}", "type", "fed_grants", "version",
                                      (json_int_t)clock_wall_ms(c->clock), "grants", grants));
            free(s->grants_sent);
            s->grants_sent = text;
            text = NULL;
        }
        free(text);
        json_decref(grants);
    }
    json_decref(built);
}

void
federation_changed(struct controller *c, bool bump)
{
    struct ztr_err err = {0};
    if (bump && store_allowlist_bump(c->store, &err) != 0)
        log_error("allowlist version not bumped", "error=\"%s\"", err.msg);
    if (c->fed != NULL)
        c->fed->grants_next_expiry = 1;
    if (c->ctl != NULL)
        ctl_server_push_all(c->ctl); /* tells linked peers too */
    else
        federation_push_grants(c, NULL);
}

/* ---- accept, proposer side ---------------------------------------------------- */

static bool
accept_rate_limited(struct fed_session *s)
{
    struct federation *fed = s->fed;
    struct controller *c = fed->c;
    int64_t now = mono_ms(fed);
    if (!s->holds_source || quota_strikes(fed->accept_failures, &s->source, now) <
                                c->settings.federation_accept_failures_per_source)
        return false;
    c->counters.fed_accept_rate_limited++;
    int64_t left_s = (quota_window_left_ms(fed->accept_failures, &s->source, now) + 999) / 1000;
    uint64_t suppressed = 0;
    if (log_limit_allow(&fed->refuse_log, now, &suppressed))
        log_warn("federation accept refused",
                 "source=%s reason=\"too many failed accepts from this address\" "
                 "limit_per_minute=%llu retry_in_seconds=%lld suppressed=%llu",
                 ctl_stream_peer_addr(s->stream),
                 (unsigned long long)c->settings.federation_accept_failures_per_source,
                 (long long)left_s, (unsigned long long)suppressed);
    char message[128];
    snprintf(message, sizeof(message),
             "too many failed accepts from this address; retry in %llds", (long long)left_s);
    session_fail(s, CTLMSG_E_RATE_LIMITED, message);
    return true;
}

static void
refuse_accept(struct fed_session *s, enum fed_refusal refusal, const char *peer_id)
{
    struct federation *fed = s->fed;
    struct controller *c = fed->c;
    c->counters.fed_accept_denied++;
    if (s->holds_source)
        quota_strike(fed->accept_failures, &s->source, mono_ms(fed));
    uint64_t suppressed = 0;
    if (log_limit_allow(&fed->refuse_log, mono_ms(fed), &suppressed))
        log_warn("federation accept refused",
                 "peer_id=%.*s source=%s reason=\"%s\" error=\"%s\" suppressed=%llu",
                 STORE_ID_MAX, peer_id,
                 ctl_stream_peer_addr(s->stream), fed_refusal_reason(refusal),
                 fed_refusal_text(refusal), (unsigned long long)suppressed);
    session_fail(s, CTLMSG_E_INVALID_TOKEN, fed_refusal_text(refusal));
}

static void
handle_accept(struct fed_session *s, const json_t *msg)
{
    struct federation *fed = s->fed;
    struct controller *c = fed->c;
    if (accept_rate_limited(s))
        return;
    const char *peer_id = json_string_value(json_object_get(msg, "peer_id"));
    const char *token = json_string_value(json_object_get(msg, "acceptance_token"));
    const char *td = json_string_value(json_object_get(msg, "trust_domain"));
    const char *bundle = json_string_value(json_object_get(msg, "bundle"));
    const char *url = json_string_value(json_object_get(msg, "url"));
    struct store_peer *peer = peer_alloc();
    if (peer == NULL) {
        session_fail(s, CTLMSG_E_INTERNAL, "out of memory");
        return;
    }
    struct ztr_err err = {0};
    bool found = strlen(peer_id) <= STORE_ID_MAX &&
                 store_peer_get(c->store, peer_id, peer, &err) == 0;
    uint8_t secret[FED_SECRET_BYTES];
    size_t secret_len = 0;
    enum fed_refusal verdict;
    if (token != NULL && (b64_decode(token, strlen(token), secret, sizeof(secret),
                                     &secret_len) != 0 ||
                          secret_len != sizeof(secret)))
        verdict = found && strcmp(peer->state, "proposed") == 0 && peer->has_token
                      ? FED_REFUSE_MISMATCH
                      : fed_accept_check(found ? peer : NULL, NULL, wall_s(c));
    else
        verdict = fed_accept_check(found ? peer : NULL, token != NULL ? secret : NULL,
                                   wall_s(c));
    /* A token that matched but cannot be honoured is still a refusal. */
    if (token != NULL && verdict == FED_REFUSE_REQUIRED)
        verdict = FED_REFUSE_MISMATCH;
    explicit_bzero(secret, sizeof(secret));
    if (verdict != FED_ACCEPT_OK) {
        free(peer);
        refuse_accept(s, verdict, peer_id);
        return;
    }
    struct pki_bundle *parsed = NULL;
    struct store_peer *other = peer_alloc();
    const char *problem = NULL;
    if (other == NULL)
        problem = "out of memory";
    else if (pki_trust_domain_check(td, &err) != 0)
        problem = "invalid trust domain";
    else if (strcmp(td, c->settings.trust_domain) == 0)
        problem = "the acceptor has this controller's trust domain";
    else if (store_peer_get_by_trust_domain(c->store, td, other, &err) == 0)
        problem = "a peer of that trust domain exists";
    else if (strlen(bundle) > STORE_PEER_BUNDLE_MAX ||
             pki_bundle_from_pem(bundle, strlen(bundle), &parsed, &err) != 0)
        problem = "the acceptor's bundle is not a PEM bundle of CAs";
    else if (url != NULL && strlen(url) > STORE_URL_MAX)
        problem = "url too long";
    pki_bundle_free(parsed);
    free(other);
    if (problem != NULL) {
        log_warn("federation accept refused", "peer=%s source=%s reason=\"%s\"", peer->name,
                 ctl_stream_peer_addr(s->stream), problem);
        c->counters.fed_accept_denied++;
        free(peer);
        session_fail(s, CTLMSG_E_BAD_REQUEST, problem);
        return;
    }
    /* Single use: the digest goes with the first match. */
    peer->has_token = false;
    memset(peer->token_digest, 0, sizeof(peer->token_digest));
    peer->token_expires_at = 0;
    snprintf(peer->trust_domain, sizeof(peer->trust_domain), "%s", td);
    snprintf(peer->bundle, sizeof(peer->bundle), "%s", bundle);
    peer->bundle_version = json_integer_value(json_object_get(msg, "bundle_version"));
    if (url != NULL)
        snprintf(peer->url, sizeof(peer->url), "%s", url);
    peer_set_state(c, peer, "accepted", "federation_accept");
    if (store_peer_update(c->store, peer, &err) != 0) {
        log_error("federation accept not stored", "peer=%s error=\"%s\"", peer->name, err.msg);
        free(peer);
        session_fail(s, CTLMSG_E_INTERNAL, "internal error");
        return;
    }
    c->counters.fed_accepts++;
    log_info("federation peer accepted", "peer=%s trust_domain=%s source=%s", peer->name, td,
             ctl_stream_peer_addr(s->stream));
    refresh_server_trust(fed);
    federation_changed(c, true);
    char *pem = NULL;
    size_t len = 0;
    if (ca_set_bundle_pem(c->cas, &pem, &len, &err) != 0) {
        free(peer);
        session_fail(s, CTLMSG_E_INTERNAL, "internal error");
        return;
    }
    session_send(s, json_pack("{s:s, s:s, s:s, s:s%, s:I}", "type", "fed_accepted", "peer_id",
                              peer->id, "trust_domain", c->settings.trust_domain, "bundle", pem,
                              len, "bundle_version",
                              (json_int_t)ca_set_bundle_version(c->cas)));
    free(pem);
    free(peer);
    session_close(s, "accepted");
}

/* ---- stream callbacks ---------------------------------------------------------- */

static void close_other_links(struct federation *fed, struct fed_session *keep);

static void
on_ready(void *user)
{
    struct fed_session *s = user;
    struct federation *fed = s->fed;
    struct controller *c = fed->c;
    s->ready = true;
    const struct pki_spiffe_id *id = ctl_stream_peer_id(s->stream);
    if (id == NULL) {
        /* Our own dial always verifies the peer; only the listener gets here. */
        return;
    }
    struct store_peer *peer = peer_alloc();
    struct ztr_err err = {0};
    if (peer == NULL || store_peer_get_by_trust_domain(c->store, id->trust_domain, peer,
                                                       &err) != 0) {
        free(peer);
        c->counters.fed_links_refused++;
        log_warn("federation link refused", "source=%s spiffe_id=%s reason=\"%s\"",
                 ctl_stream_peer_addr(s->stream), id->uri, FED_TEXT_UNKNOWN_PEER);
        session_fail(s, CTLMSG_E_PERMISSION_DENIED, FED_TEXT_UNKNOWN_PEER);
        return;
    }
    s->linked = true;
    snprintf(s->peer_id, sizeof(s->peer_id), "%s", peer->id);
    snprintf(s->peer_name, sizeof(s->peer_name), "%s", peer->name);
    free(peer);
    release_source(s);
    struct store_peer *live = linked_peer(s);
    if (live == NULL) {
        log_warn("federation link refused", "peer=%s source=%s reason=\"suspended or revoked\"",
                 s->peer_name, ctl_stream_peer_addr(s->stream));
        return;
    }
    free(live);
    ctl_stream_set_max_frame(s->stream, FRAME_MAX_PAYLOAD);
    /* No link outlives the certificate it was opened with: the redial
     * presents the renewed one. */
    ctl_stream_expire_at(s->stream, ctl_stream_peer_not_after(s->stream));
    if (!s->outbound)
        close_other_links(fed, s);
    log_info("federation link up", "peer=%s spiffe_id=%s remote=%s direction=%s", s->peer_name,
             id->uri, ctl_stream_peer_addr(s->stream), s->outbound ? "outbound" : "inbound");
    s->next_heartbeat_ms = mono_ms(fed);
    if (s->link != NULL)
        backoff_reset(&s->link->backoff);
    federation_push_grants(c, NULL);
}

static void
on_message(void *user, enum ctlmsg_type type, const json_t *msg)
{
    struct fed_session *s = user;
    if (s->closing)
        return;
    s->last_frame_ms = mono_ms(s->fed);
    if (!s->linked) {
        if (type != CTLMSG_FED_ACCEPT) {
            session_fail(s, CTLMSG_E_PERMISSION_DENIED,
                         "a federation session without a certificate may only accept");
            return;
        }
        handle_accept(s, msg);
        return;
    }
    if (type == CTLMSG_FED_HEARTBEAT || type == CTLMSG_FED_HEARTBEAT_ACK) {
        handle_beat(s, type, msg);
    } else if (type == CTLMSG_FED_GRANTS) {
        handle_grants(s, msg);
    } else if (type == CTLMSG_ERROR) {
        log_warn("federation link refused by peer", "peer=%s code=%s message=\"%s\"",
                 s->peer_name, json_string_value(json_object_get(msg, "code")),
                 json_string_value(json_object_get(msg, "message")));
        session_close(s, json_string_value(json_object_get(msg, "message")));
    } else {
        session_fail(s, CTLMSG_E_BAD_REQUEST, "unexpected message");
    }
}

static void
on_fault(void *user, enum ctl_stream_fault fault, const char *error)
{
    (void)fault;
    struct fed_session *s = user;
    log_warn("federation session closed", "peer=%s remote=%s reason=\"%s\"", s->peer_name,
             ctl_stream_peer_addr(s->stream), error);
    session_fail(s, CTLMSG_E_BAD_REQUEST, error);
}

static void
on_close(void *user, const char *reason)
{
    struct fed_session *s = user;
    struct federation *fed = s->fed;
    release_source(s);
    if (s->linked)
        log_info("federation link down", "peer=%s direction=%s reason=\"%s\"", s->peer_name,
                 s->outbound ? "outbound" : "inbound", reason);
    else if (s->outbound)
        log_warn("federation link failed", "peer=%s remote=%s reason=\"%s\"", s->peer_name,
                 s->url, reason);
    else if (!s->ready) {
        /* Never got past the handshake: an unknown CA or trust domain. */
        fed->c->counters.fed_links_refused++;
        uint64_t suppressed = 0;
        if (log_limit_allow(&fed->accept_log, mono_ms(fed), &suppressed))
            log_warn("federation handshake refused", "source=%s reason=\"%s\" suppressed=%llu",
                     ctl_stream_peer_addr(s->stream), reason, (unsigned long long)suppressed);
    }
    if (s->tls != NULL) {
        if (fed->retired_count < FED_SESSIONS_MAX)
            fed->retired[fed->retired_count++] = s->tls;
        else
            log_error("federation TLS context leaked", NULL);
    }
    if (s->link != NULL) {
        s->link->session = NULL;
        int64_t delay = 1000;
        backoff_next(&s->link->backoff, &delay);
        s->link->retry_at_ms = mono_ms(fed) + delay;
    }
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        fed->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    fed->session_count--;
    free(s->grants_sent);
    free(s);
}

static const struct ctl_stream_callbacks fed_callbacks = {on_ready, on_message, on_fault,
                                                          on_close};

static struct fed_session *
session_new(struct federation *fed)
{
    struct fed_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->fed = fed;
    s->opened_ms = s->last_frame_ms = mono_ms(fed);
    return s;
}

static void
session_link(struct federation *fed, struct fed_session *s)
{
    s->next = fed->sessions;
    if (fed->sessions != NULL)
        fed->sessions->prev = s;
    fed->sessions = s;
    fed->session_count++;
}

/* A peer reconnected: its older inbound streams are stale. */
static void
close_other_links(struct federation *fed, struct fed_session *keep)
{
    for (struct fed_session *o = fed->sessions; o != NULL; o = o->next)
        if (o != keep && o->linked && !o->outbound && strcmp(o->peer_id, keep->peer_id) == 0)
            session_close(o, "replaced by a new link");
}

static void
close_peer_sessions(struct federation *fed, const char *peer_id, const char *reason)
{
    for (struct fed_session *o = fed->sessions; o != NULL; o = o->next)
        if (strcmp(o->peer_id, peer_id) == 0)
            session_close(o, reason);
}

/* ---- the listener ---------------------------------------------------------------- */

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct federation *fed = w->data;
    struct controller *c = fed->c;
    for (int i = 0; i < 32; i++) {
        struct sockaddr_storage peer;
        int fd = net_accept_peer(fed->listen_fd, &peer);
        if (fd < 0)
            return;
        struct quota_key source;
        bool has_source = net_source_key_of(&peer, &source) == 0;
        const char *refusal = NULL;
        if (fed->session_count >= FED_SESSIONS_MAX)
            refusal = "too many federation sessions open";
        else if (has_source &&
                 !quota_enter(fed->unauthenticated, &source, FED_HANDSHAKES_PER_SOURCE))
            refusal = "too many unauthenticated federation connections from this source";
        if (refusal != NULL) {
            net_close_refused(fd, &fed->accept_log, mono_ms(fed),
                              "federation connection refused", refusal);
            continue;
        }
        struct fed_session *s = session_new(fed);
        if (s == NULL) {
            if (has_source)
                quota_leave(fed->unauthenticated, &source);
            close(fd);
            continue;
        }
        s->source = source;
        s->holds_source = has_source;
        snprintf(s->peer_name, sizeof(s->peer_name), "-");
        struct pki_expect expect = {.trust_domain = c->settings.trust_domain,
                                    .role = PKI_ROLE_CONTROLLER};
        struct ztr_err err = {0};
        if (ctl_stream_new(loop, fed->server_tls, fd, &expect, &fed_callbacks, s, &s->stream,
                           &err) != 0) {
            log_warn("cannot start TLS", "error=\"%s\"", err.msg);
            release_source(s);
            free(s);
            continue;
        }
        ctl_stream_set_max_frame(s->stream, FED_PREAUTH_FRAME_MAX);
        session_link(fed, s);
    }
}

/* ---- links we dial ------------------------------------------------------------------ */

static void
link_free(struct federation *fed, struct fed_link *link)
{
    (void)fed;
    if (link->session != NULL) {
        link->session->link = NULL;
        session_close(link->session, "link no longer wanted");
    }
    free(link);
}

static void
link_dial(struct federation *fed, struct fed_link *link, const struct store_peer *peer)
{
    struct controller *c = fed->c;
    struct ztr_err err = {0};
    struct tls_ctx *tls = NULL;
    struct tls_ctx_config config = {
        .side = TLS_SIDE_CLIENT, .alpn = FED_ALPN, .chain_pem = fed->chain,
        .chain_len = fed->chain_len, .key_pem = fed->key, .key_len = fed->key_len,
        .bundle_pem = peer->bundle, .bundle_len = strlen(peer->bundle), .clock = c->clock};
    struct fed_session *s = session_new(fed);
    int fd = -1;
    int rc = s == NULL ? ztr_err_set(&err, ZTR_E_NOMEM, "out of memory") : 0;
    if (rc == 0)
        rc = tls_ctx_new(&config, &tls, &err);
    if (rc == 0)
        rc = net_connect_start(peer->url, &fd, &err);
    if (rc == 0) {
        s->outbound = true;
        s->link = link;
        s->tls = tls;
        snprintf(s->peer_id, sizeof(s->peer_id), "%s", peer->id);
        snprintf(s->peer_name, sizeof(s->peer_name), "%s", peer->name);
        snprintf(s->url, sizeof(s->url), "%s", peer->url);
        struct pki_expect expect = {.trust_domain = peer->trust_domain,
                                    .role = PKI_ROLE_CONTROLLER};
        rc = ctl_stream_new(c->loop, tls, fd, &expect, &fed_callbacks, s, &s->stream, &err);
    }
    if (rc != 0) {
        tls_ctx_free(tls);
        free(s);
        int64_t delay = 1000;
        backoff_next(&link->backoff, &delay);
        link->retry_at_ms = mono_ms(fed) + delay;
        log_warn("federation link failed", "peer=%s remote=%s reason=\"%s\"", peer->name,
                 peer->url, err.msg);
        return;
    }
    session_link(fed, s);
    link->session = s;
}

struct link_sync {
    struct federation *fed;
    int64_t now_ms;
};

static int
sync_peer_link(void *ctx, const struct store_peer *peer)
{
    struct link_sync *sync = ctx;
    struct federation *fed = sync->fed;
    if (strcmp(peer->direction, "outbound") != 0 || !fed_state_linked(peer->state) ||
        peer->url[0] == '\0' || peer->bundle[0] == '\0' || peer->trust_domain[0] == '\0')
        return 0;
    struct fed_link *link = fed->links;
    while (link != NULL && strcmp(link->peer_id, peer->id) != 0)
        link = link->next;
    if (link == NULL) {
        link = calloc(1, sizeof(*link));
        if (link == NULL)
            return 0;
        link->fed = fed;
        snprintf(link->peer_id, sizeof(link->peer_id), "%s", peer->id);
        struct backoff_policy policy = {.base_ms = 500, .cap_ms = 30000, .max_attempts = 0};
        backoff_init(&link->backoff, &policy, 0);
        link->next = fed->links;
        fed->links = link;
    }
    snprintf(link->peer_name, sizeof(link->peer_name), "%s", peer->name);
    link->keep = true;
    if (link->session == NULL && sync->now_ms >= link->retry_at_ms)
        link_dial(fed, link, peer);
    return 0;
}

static void
sync_links(struct federation *fed)
{
    for (struct fed_link *l = fed->links; l != NULL; l = l->next)
        l->keep = false;
    struct link_sync sync = {fed, mono_ms(fed)};
    struct ztr_err err = {0};
    if (store_peer_list(fed->c->store, sync_peer_link, &sync, &err) != 0) {
        log_warn("federation peers not read", "error=\"%s\"", err.msg);
        return;
    }
    for (struct fed_link **l = &fed->links; *l != NULL;) {
        if ((*l)->keep) {
            l = &(*l)->next;
            continue;
        }
        struct fed_link *gone = *l;
        *l = gone->next;
        link_free(fed, gone);
    }
}

/* ---- timers ---------------------------------------------------------------------------- */

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct federation *fed = w->data;
    struct controller *c = fed->c;
    int64_t now = mono_ms(fed);
    int64_t interval = c->settings.federation_heartbeat_interval_ms;
    for (struct fed_session *s = fed->sessions; s != NULL; s = s->next) {
        if (s->closing)
            continue;
        if (!s->linked) {
            if (!s->outbound && now - s->opened_ms > FED_FIRST_MESSAGE_MS)
                session_close(s, "no accept within 10 s");
            continue;
        }
        if (now - s->last_frame_ms > FED_SILENT_INTERVALS * interval + 1000) {
            session_close(s, "no heartbeat for 3 intervals");
            continue;
        }
        if (now >= s->next_heartbeat_ms) {
            s->next_heartbeat_ms = now + interval;
            send_heartbeat(s);
        }
    }
    sync_links(fed);
    federation_grants_tick(c, &fed->grants_checked_at, &fed->grants_next_expiry);
    for (size_t i = 0; i < fed->retired_count; i++)
        tls_ctx_free(fed->retired[i]);
    fed->retired_count = 0;
    /* A changed bundle may have retired the CA that signed it. */
    if (!fed->identity_from_files &&
        (wall_s(c) >= fed->identity_renew_at ||
         ca_set_bundle_version(c->cas) != fed->identity_bundle_version)) {
        struct ztr_err err = {0};
        if (identity_load(fed, &err) != 0 ||
            (fed->server_tls != NULL &&
             tls_ctx_update(fed->server_tls, fed->chain, fed->chain_len, fed->key,
                            fed->key_len, NULL, 0, &err) != 0))
            log_warn("federation certificate not renewed", "error=\"%s\"", err.msg);
    }
}

struct sweep_walk {
    struct controller *c;
    int64_t now;
    size_t swept, degraded;
    struct store_peer *changed[64];
    size_t changed_count;
};

static int
sweep_peer(void *ctx, const struct store_peer *peer)
{
    struct sweep_walk *w = ctx;
    if (strcmp(peer->state, "revoked") == 0 || strcmp(peer->state, "suspended") == 0 ||
        strcmp(peer->state, "proposed") == 0)
        return 0;
    w->swept++;
    if (!fed_sweep_due(peer, w->now, w->c->settings.heartbeat_stale_after_s) ||
        w->changed_count == sizeof(w->changed) / sizeof(w->changed[0]))
        return 0;
    struct store_peer *copy = peer_alloc();
    if (copy == NULL)
        return 0;
    *copy = *peer;
    w->changed[w->changed_count++] = copy;
    return 0;
}

int
federation_sweep(struct controller *c, size_t *swept, size_t *degraded, struct ztr_err *err)
{
    struct sweep_walk w = {.c = c, .now = wall_s(c)};
    int rc = store_peer_list(c->store, sweep_peer, &w, err);
    for (size_t i = 0; i < w.changed_count; i++) {
        struct store_peer *peer = w.changed[i];
        if (rc == 0) {
            snprintf(peer->reason, sizeof(peer->reason), "no heartbeat for %llds",
                     (long long)(w.now - peer->last_heartbeat_at));
            peer_set_state(c, peer, "degraded", "federation_heartbeat_sweep");
            if (store_peer_update(c->store, peer, err) != 0)
                rc = -1;
            else
                w.degraded++;
        }
        free(peer);
    }
    if (swept != NULL)
        *swept = w.swept;
    if (degraded != NULL)
        *degraded = w.degraded;
    return rc;
}

static void
sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct federation *fed = w->data;
    struct ztr_err err = {0};
    size_t swept = 0, degraded = 0;
    if (federation_sweep(fed->c, &swept, &degraded, &err) != 0)
        log_warn("federation heartbeat sweep failed", "error=\"%s\"", err.msg);
    log_info("federation heartbeat sweep", "swept=%zu degraded=%zu stale_after_s=%lld", swept,
             degraded, (long long)fed->c->settings.heartbeat_stale_after_s);
    if (degraded > 0)
        record_event(fed->c, "federation_heartbeat_sweep", "swept=%zu degraded=%zu", swept,
                     degraded);
}

/* ---- settings, start, stop --------------------------------------------------------------- */

static bool
file_readable(const char *path)
{
    return path[0] != '\0' && access(path, R_OK) == 0;
}

int
federation_check_settings(struct controller *c, const struct config *config,
                          struct ztr_err *err)
{
    struct controller_settings *s = &c->settings;
    char host[128];
    uint16_t port;
    if (s->federation_listen[0] != '\0' &&
        config_parse_addr(s->federation_listen, host, sizeof(host), &port) != 0)
        return config_fail(config, "FEDERATION_LISTEN", err,
                           "invalid address \"%s\" (use host:port, or leave it empty for off)",
                           s->federation_listen);
    if (s->federation_url[0] != '\0' &&
        config_parse_addr(s->federation_url, host, sizeof(host), &port) != 0)
        return config_fail(config, "FEDERATION_URL", err,
                           "invalid address \"%s\" (use host:port)", s->federation_url);
    if (s->federation_heartbeat_interval_ms < 100 ||
        s->federation_heartbeat_interval_ms > 3600 * 1000)
        return config_fail(config, "FEDERATION_HEARTBEAT_INTERVAL", err,
                           "must be between 100ms and 1h");
    if (s->federation_sweep_interval_ms < 100 || s->federation_sweep_interval_ms > 3600 * 1000)
        return config_fail(config, "FEDERATION_SWEEP_INTERVAL", err,
                           "must be between 100ms and 1h");
    if (s->heartbeat_stale_after_s < 1 || s->heartbeat_stale_after_s > 7 * 86400)
        return config_fail(config, "HEARTBEAT_STALE_AFTER", err, "must be between 1s and 7d");
    if (s->federation_accept_failures_per_source < 1 ||
        s->federation_accept_failures_per_source > 1000000)
        return config_fail(config, "FEDERATION_ACCEPT_FAILURES_PER_SOURCE", err,
                           "must be between 1 and 1000000");
    bool cert = file_readable(s->federation_cert), key = file_readable(s->federation_key);
    bool cert_named = s->federation_cert[0] != '\0', key_named = s->federation_key[0] != '\0';
    if ((cert_named || key_named) && !(cert && key))
        return config_fail(config, cert ? "FEDERATION_KEY" : "FEDERATION_CERT", err,
                           "partial mTLS config — cert_pem=%s, key_pem=%s; no plaintext "
                           "fallback: federation needs both FEDERATION_CERT and "
                           "FEDERATION_KEY, readable (or neither: the controller issues its "
                           "own)",
                           cert ? "true" : "false", key ? "true" : "false");
    return 0;
}

static int
listen_start(struct federation *fed, struct ztr_err *err)
{
    struct controller *c = fed->c;
    char *bundle = NULL;
    size_t bundle_len = 0;
    TRY(union_bundle(fed, &bundle, &bundle_len, err));
    struct tls_ctx_config config = {
        .side = TLS_SIDE_SERVER, .alpn = FED_ALPN, .chain_pem = fed->chain,
        .chain_len = fed->chain_len, .key_pem = fed->key, .key_len = fed->key_len,
        .bundle_pem = bundle, .bundle_len = bundle_len, .peer_cert_optional = true,
        .clock = c->clock, .resolve = resolve_peer, .resolve_ctx = fed};
    int rc = tls_ctx_new(&config, &fed->server_tls, err);
    free(bundle);
    if (rc == 0)
        rc = net_listen(c->settings.federation_listen, 128, &fed->listen_fd, err);
    if (rc != 0)
        return -1;
    fed->port = net_local_port(fed->listen_fd);
    ev_io_init(&fed->accept_io, accept_cb, fed->listen_fd, EV_READ);
    fed->accept_io.data = fed;
    ev_io_start(c->loop, &fed->accept_io);
    log_info("federation listening", "addr=%s port=%u alpn=%s", c->settings.federation_listen,
             (unsigned)fed->port, FED_ALPN);
    return 0;
}

static void
federation_free(struct federation *fed)
{
    tls_ctx_free(fed->server_tls);
    quota_free(fed->unauthenticated);
    quota_free(fed->accept_failures);
    identity_free(fed);
    if (fed->listen_fd >= 0)
        close(fed->listen_fd);
    free(fed);
}

int
federation_start(struct controller *c, struct ztr_err *err)
{
    struct federation *fed = calloc(1, sizeof(*fed));
    if (fed == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    fed->c = c;
    fed->listen_fd = -1;
    fed->accept_log = (struct log_limit)LOG_LIMIT_INIT(5, 10000);
    fed->refuse_log = (struct log_limit)LOG_LIMIT_INIT(20, 1000);
    if (quota_new(FED_SESSIONS_MAX, 0, &fed->unauthenticated, err) != 0 ||
        quota_new(FED_SOURCE_TABLE_MAX, 60000, &fed->accept_failures, err) != 0 ||
        identity_load(fed, err) != 0 ||
        (c->settings.federation_listen[0] != '\0' && listen_start(fed, err) != 0)) {
        federation_free(fed);
        return -1;
    }
    ev_timer_init(&fed->tick, tick_cb, FED_TICK_S, FED_TICK_S);
    fed->tick.data = fed;
    ev_timer_start(c->loop, &fed->tick);
    double sweep = (double)c->settings.federation_sweep_interval_ms / 1000.0;
    ev_timer_init(&fed->sweep, sweep_cb, sweep, sweep);
    fed->sweep.data = fed;
    ev_timer_start(c->loop, &fed->sweep);
    c->fed = fed;
    return 0;
}

static void accepts_cancel(struct federation *fed);

void
federation_stop(struct controller *c)
{
    struct federation *fed = c->fed;
    if (fed == NULL)
        return;
    ev_timer_stop(c->loop, &fed->tick);
    ev_timer_stop(c->loop, &fed->sweep);
    if (fed->listen_fd >= 0)
        ev_io_stop(c->loop, &fed->accept_io);
    while (fed->links != NULL) {
        struct fed_link *l = fed->links;
        fed->links = l->next;
        if (l->session != NULL)
            l->session->link = NULL;
        free(l);
    }
    for (struct fed_session *s = fed->sessions; s != NULL; s = s->next)
        session_close(s, "controller shutting down");
    accepts_cancel(fed);
    for (int i = 0; i < 100 && (fed->sessions != NULL || fed->accepts != NULL); i++)
        ev_run(c->loop, EVRUN_NOWAIT);
    for (size_t i = 0; i < fed->retired_count; i++)
        tls_ctx_free(fed->retired[i]);
    fed->retired_count = 0;
    c->fed = NULL;
    federation_free(fed);
}

uint16_t
federation_port(const struct controller *c)
{
    return c->fed != NULL ? c->fed->port : 0;
}

/* ---- operator actions ------------------------------------------------------------------- */

static int
check_peer_name(const char *name, struct ztr_err *err)
{
    struct pki_spiffe_id id;
    if (name == NULL || name[0] == '\0' || strlen(name) > STORE_NAME_MAX)
        return ztr_err_set(err, ZTR_E_INVALID, "a peer needs a name (at most %d characters)",
                           STORE_NAME_MAX);
    /* Names are shown in logs and metrics labels: the SPIFFE path rules. */
    if (pki_spiffe_id_build("example.org", PKI_ROLE_TUNNELER, name, &id, NULL) != 0)
        return ztr_err_set(err, ZTR_E_INVALID,
                           "peer name \"%s\": use letters, digits, '.', '-' and '_'", name);
    return 0;
}

static int
check_url(const char *url, struct ztr_err *err)
{
    char host[128];
    uint16_t port;
    if (url != NULL && url[0] != '\0' &&
        (strlen(url) > STORE_URL_MAX || config_parse_addr(url, host, sizeof(host), &port) != 0))
        return ztr_err_set(err, ZTR_E_INVALID, "url \"%s\": use HOST:PORT", url);
    return 0;
}

/* A fresh secret for peer: its digest and expiry go on the row, the token
 * (with the CA the listener's certificate chains to) to *token. */
static int
issue_token(struct controller *c, struct store_peer *peer, int64_t ttl_s, char **token,
            struct ztr_err *err)
{
    if (ttl_s < 1 || ttl_s > FED_TOKEN_TTL_MAX_S)
        return ztr_err_set(err, ZTR_E_INVALID, "ttl must be between 1s and 366d");
    struct fed_token t = {0};
    snprintf(t.peer_id, sizeof(t.peer_id), "%s", peer->id);
    snprintf(t.trust_domain, sizeof(t.trust_domain), "%s", c->settings.trust_domain);
    if (getrandom(t.secret, sizeof(t.secret), 0) != (ssize_t)sizeof(t.secret))
        return ztr_err_set(err, ZTR_E_IO, "getrandom failed");
    char *pem = NULL;
    size_t pem_len = 0;
    struct pki_bundle *ca = NULL;
    int rc = pki_ca_cert_pem(ca_set_oldest(c->cas), &pem, &pem_len, err);
    if (rc == 0)
        rc = pki_bundle_from_pem(pem, pem_len, &ca, err);
    if (rc == 0) {
        size_t der_len;
        const uint8_t *der = pki_bundle_der(ca, 0, &der_len);
        t.ca_der = malloc(der_len);
        if (t.ca_der == NULL)
            rc = ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        else {
            memcpy(t.ca_der, der, der_len);
            t.ca_len = der_len;
        }
    }
    free(pem);
    pki_bundle_free(ca);
    if (rc == 0)
        rc = fed_token_encode(&t, token, err);
    if (rc == 0) {
        fed_secret_digest(t.secret, peer->token_digest);
        peer->has_token = true;
        peer->token_expires_at = wall_s(c) + ttl_s;
    }
    fed_token_clear(&t);
    return rc;
}

int
federation_propose(struct controller *c, const char *name, const char *url, int64_t ttl_s,
                   char **token, struct store_peer *out, struct ztr_err *err)
{
    *token = NULL;
    TRY(check_peer_name(name, err));
    TRY(check_url(url, err));
    struct store_peer *peer = peer_alloc();
    if (peer == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    struct ztr_err lookup = {0};
    int rc = 0;
    bool exists = store_peer_get_by_name(c->store, name, peer, &lookup) == 0 &&
                  strcmp(peer->state, "revoked") != 0;
    /* Proposing again replaces the token of a peer not yet accepted. */
    if (exists && strcmp(peer->state, "proposed") != 0)
        rc = ztr_err_set(err, STORE_E_PEER_EXISTS,
                         "peer %s is %s: revoke it before proposing again", name, peer->state);
    if (rc == 0 && !exists) {
        memset(peer, 0, sizeof(*peer));
        snprintf(peer->name, sizeof(peer->name), "%s", name);
        snprintf(peer->direction, sizeof(peer->direction), "inbound");
        snprintf(peer->state, sizeof(peer->state), "proposed");
    }
    if (rc == 0 && url != NULL)
        snprintf(peer->url, sizeof(peer->url), "%s", url);
    if (rc == 0 && !exists)
        rc = store_peer_insert(c->store, peer, err);
    if (rc == 0)
        rc = issue_token(c, peer, ttl_s, token, err);
    if (rc == 0)
        rc = store_peer_update(c->store, peer, err);
    if (rc == 0) {
        log_info("federation peer proposed", "peer=%s id=%s token_expires_at=%lld%s", name,
                 peer->id, (long long)peer->token_expires_at,
                 exists ? " previous_token=replaced" : "");
        record_event(c, "admin", "peer=%s proposed%s", name,
                     exists ? " (token replaced)" : "");
        if (c->fed == NULL || c->fed->listen_fd < 0)
            log_warn("federation peer proposed but FEDERATION_LISTEN is off: the peer cannot "
                     "accept until it is set", "peer=%s", name);
    }
    if (rc != 0) {
        free(*token);
        *token = NULL;
    } else if (out != NULL) {
        *out = *peer;
    }
    free(peer);
    return rc;
}

int
federation_new_token(struct controller *c, const char *name, int64_t ttl_s, char **token,
                     struct store_peer *out, struct ztr_err *err)
{
    *token = NULL;
    struct store_peer *peer = peer_alloc();
    if (peer == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int rc = store_peer_get_by_name(c->store, name, peer, err);
    if (rc == 0 && strcmp(peer->state, "proposed") != 0)
        rc = ztr_err_set(err, ZTR_E_INVALID,
                         "peer %s is %s: a token only serves a proposed peer", name, peer->state);
    if (rc == 0)
        rc = issue_token(c, peer, ttl_s, token, err);
    if (rc == 0)
        rc = store_peer_update(c->store, peer, err);
    if (rc == 0) {
        log_info("federation token replaced", "peer=%s token_expires_at=%lld", name,
                 (long long)peer->token_expires_at);
        record_event(c, "admin", "peer=%s token replaced", name);
        if (out != NULL)
            *out = *peer;
    } else {
        free(*token);
        *token = NULL;
    }
    free(peer);
    return rc;
}

/* The acceptor's side of one accept exchange, on the controller's loop. */
struct accept_run {
    struct controller *c;
    struct ctl_stream *stream;
    struct tls_ctx *tls;
    ev_timer timeout;
    json_t *request;     /* sent once the handshake is done */
    json_t *reply;       /* fed_accepted */
    char error[ZTR_ERR_MSG_MAX];
    struct fed_token token;
    char url[STORE_URL_MAX + 1];
    char name[STORE_NAME_MAX + 1];
    federation_accept_done done;
    void *done_ctx;
    struct accept_run *next, **prev_next; /* in fed->accepts */
};

/* The controller stops: each accept in flight ends with the reason. */
static void
accepts_cancel(struct federation *fed)
{
    for (struct accept_run *run = fed->accepts; run != NULL; run = run->next)
        if (run->stream != NULL)
            ctl_stream_close(run->stream, "controller shutting down");
}

static void
accept_on_ready(void *user)
{
    struct accept_run *run = user;
    struct ztr_err err = {0};
    json_t *request = run->request;
    run->request = NULL;
    if (ctl_stream_send(run->stream, request, &err) != 0) {
        snprintf(run->error, sizeof(run->error), "%s", err.msg);
        ctl_stream_close(run->stream, err.msg);
    }
}

static void
accept_on_message(void *user, enum ctlmsg_type type, const json_t *msg)
{
    struct accept_run *run = user;
    if (type == CTLMSG_FED_ACCEPTED && run->reply == NULL)
        run->reply = json_deep_copy(msg);
    else if (type == CTLMSG_ERROR)
        snprintf(run->error, sizeof(run->error), "%s",
                 json_string_value(json_object_get(msg, "message")));
    else
        snprintf(run->error, sizeof(run->error), "unexpected %s from the peer",
                 ctlmsg_type_name(type));
    ctl_stream_close(run->stream, "done");
}

/* A's answer, checked and stored: B's side of the accept. */
static int
accept_store(struct accept_run *run, struct store_peer *peer, struct ztr_err *err)
{
    struct controller *c = run->c;
    const char *url = run->url;
    const char *td = json_string_value(json_object_get(run->reply, "trust_domain"));
    const char *their_bundle = json_string_value(json_object_get(run->reply, "bundle"));
    struct pki_bundle *parsed = NULL;
    int rc = 0;
    if (td == NULL || strcmp(td, run->token.trust_domain) != 0)
        rc = ztr_err_set(err, ZTR_E_VERIFY, "the proposer answered for trust domain %s",
                         td != NULL ? td : "?");
    else if (their_bundle == NULL || strlen(their_bundle) > STORE_PEER_BUNDLE_MAX ||
             pki_bundle_from_pem(their_bundle, strlen(their_bundle), &parsed, err) != 0)
        rc = ztr_err_set(err, ZTR_E_VERIFY, "the proposer's bundle is not usable");
    pki_bundle_free(parsed);
    if (rc == 0) {
        memset(peer, 0, sizeof(*peer));
        snprintf(peer->name, sizeof(peer->name), "%s", run->name);
        snprintf(peer->trust_domain, sizeof(peer->trust_domain), "%s", td);
        snprintf(peer->url, sizeof(peer->url), "%s", url);
        snprintf(peer->direction, sizeof(peer->direction), "outbound");
        snprintf(peer->state, sizeof(peer->state), "accepted");
        snprintf(peer->bundle, sizeof(peer->bundle), "%s", their_bundle);
        peer->bundle_version = json_integer_value(json_object_get(run->reply, "bundle_version"));
        rc = store_peer_insert(c->store, peer, err);
    }
    if (rc != 0)
        return -1;
    log_info("federation peer accepted", "peer=%s trust_domain=%s url=%s", peer->name, td, url);
    record_event(c, "federation_accept", "peer=%s trust_domain=%s state -> accepted", peer->name,
                 td);
    federation_changed(c, true);
    return 0;
}

static void
accept_run_free(struct accept_run *run)
{
    if (run->prev_next != NULL) {
        *run->prev_next = run->next;
        if (run->next != NULL)
            run->next->prev_next = run->prev_next;
    }
    json_decref(run->request);
    json_decref(run->reply);
    fed_token_clear(&run->token);
    free(run);
}

/* The exchange is over (answered, refused, failed or timed out): store
 * what A said and tell whoever asked. The stream is gone; its TLS context
 * is retired like a link's (freed at the next tick). */
static void
accept_on_close(void *user, const char *reason)
{
    struct accept_run *run = user;
    struct controller *c = run->c;
    ev_timer_stop(c->loop, &run->timeout);
    run->stream = NULL;
    struct federation *fed = c->fed;
    if (fed != NULL && fed->retired_count < FED_SESSIONS_MAX)
        fed->retired[fed->retired_count++] = run->tls;
    else
        tls_ctx_free(run->tls);
    run->tls = NULL;
    struct store_peer *peer = peer_alloc();
    struct ztr_err err = {0};
    int rc;
    if (peer == NULL)
        rc = ztr_err_set(&err, ZTR_E_NOMEM, "out of memory");
    else if (run->reply == NULL)
        rc = ztr_err_set(&err, ZTR_E_VERIFY, "%s", run->error[0] != '\0' ? run->error : reason);
    else
        rc = accept_store(run, peer, &err);
    if (rc != 0)
        log_warn("federation accept failed", "url=%s trust_domain=%s error=\"%s\"", run->url,
                 run->token.trust_domain, err.msg);
    run->done(run->done_ctx, rc, peer, &err);
    free(peer);
    accept_run_free(run);
}

static void
accept_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct accept_run *run = w->data;
    if (run->stream != NULL)
        ctl_stream_close(run->stream, "no answer within 10 s");
}

static const struct ctl_stream_callbacks accept_callbacks = {accept_on_ready, accept_on_message,
                                                             NULL, accept_on_close};

/* Dials url trusting only the token's CA and expecting its trust domain's
 * controller, on the controller's loop: the answer arrives at
 * accept_on_close. */
static int
accept_dial(struct accept_run *run, struct ztr_err *err)
{
    struct controller *c = run->c;
    const uint8_t *ders[1] = {run->token.ca_der};
    size_t lens[1] = {run->token.ca_len};
    struct pki_chain *ca = NULL;
    char *pinned = NULL;
    size_t pinned_len = 0;
    int rc = pki_chain_from_der_list(ders, lens, 1, &ca, err);
    if (rc == 0)
        rc = pki_chain_to_pem(ca, &pinned, &pinned_len, err);
    pki_chain_free(ca);
    if (rc == 0) {
        struct tls_ctx_config config = {.side = TLS_SIDE_CLIENT, .alpn = FED_ALPN,
                                         .bundle_pem = pinned, .bundle_len = pinned_len,
                                         .clock = c->clock};
        rc = tls_ctx_new(&config, &run->tls, err);
    }
    free(pinned);
    int fd = -1;
    if (rc == 0)
        rc = net_connect_start(run->url, &fd, err);
    struct pki_expect expect = {.trust_domain = run->token.trust_domain,
                                .role = PKI_ROLE_CONTROLLER};
    if (rc == 0)
        rc = ctl_stream_new(c->loop, run->tls, fd, &expect, &accept_callbacks, run, &run->stream,
                            err);
    if (rc != 0) {
        tls_ctx_free(run->tls);
        run->tls = NULL;
        return -1;
    }
    ev_timer_init(&run->timeout, accept_timeout_cb, FED_ACCEPT_TIMEOUT_MS / 1000.0, 0);
    run->timeout.data = run;
    ev_timer_start(c->loop, &run->timeout);
    return 0;
}

int
federation_accept_start(struct controller *c, const char *url, const char *token_text,
                        const char *name, federation_accept_done done, void *done_ctx,
                        struct ztr_err *err)
{
    TRY(check_url(url, err));
    if (url == NULL || url[0] == '\0')
        return ztr_err_set(err, ZTR_E_INVALID, "accept needs the proposer's url (HOST:PORT)");
    struct accept_run *run = calloc(1, sizeof(*run));
    if (run == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    run->c = c;
    run->done = done;
    run->done_ctx = done_ctx;
    snprintf(run->url, sizeof(run->url), "%s", url);
    if (fed_token_decode(token_text, &run->token, err) != 0) {
        free(run);
        return -1;
    }
    const struct fed_token *t = &run->token;
    snprintf(run->name, sizeof(run->name), "%.*s", STORE_NAME_MAX,
             name != NULL && name[0] != '\0' ? name : t->trust_domain);
    struct store_peer *peer = peer_alloc();
    struct ztr_err lookup = {0};
    int rc = peer == NULL ? ztr_err_set(err, ZTR_E_NOMEM, "out of memory") : 0;
    if (rc == 0)
        rc = check_peer_name(run->name, err);
    if (rc == 0 && strcmp(t->trust_domain, c->settings.trust_domain) == 0)
        rc = ztr_err_set(err, ZTR_E_INVALID,
                         "the token is for this controller's own trust domain %s",
                         t->trust_domain);
    if (rc == 0 &&
        (store_peer_get_by_trust_domain(c->store, t->trust_domain, peer, &lookup) == 0 ||
         (store_peer_get_by_name(c->store, run->name, peer, &lookup) == 0 &&
          strcmp(peer->state, "revoked") != 0)))
        rc = ztr_err_set(err, STORE_E_PEER_EXISTS, "a peer named %s or of trust domain %s exists",
                         run->name, t->trust_domain);
    free(peer);
    char *bundle = NULL;
    size_t bundle_len = 0;
    if (rc == 0)
        rc = ca_set_bundle_pem(c->cas, &bundle, &bundle_len, err);
    if (rc == 0) {
        char secret[64];
        b64_encode(t->secret, sizeof(t->secret), secret);
        run->request = json_pack(
            "{s:s, s:s, s:s, s:s, s:s%, s:I}", "type", "fed_accept", "peer_id", t->peer_id,
            "acceptance_token", secret, "trust_domain", c->settings.trust_domain, "bundle",
            bundle, bundle_len, "bundle_version", (json_int_t)ca_set_bundle_version(c->cas));
        explicit_bzero(secret, sizeof(secret));
        if (run->request == NULL)
            rc = ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        else if (c->settings.federation_url[0] != '\0')
            json_object_set_new(run->request, "url", json_string(c->settings.federation_url));
    }
    free(bundle);
    if (rc == 0 && c->fed == NULL)
        rc = ztr_err_set(err, ZTR_E_INVALID, "federation is not running");
    if (rc == 0)
        rc = accept_dial(run, err);
    if (rc != 0) {
        log_warn("federation accept failed", "url=%s trust_domain=%s error=\"%s\"", url,
                 t->trust_domain, err->msg);
        accept_run_free(run);
        return -1;
    }
    struct federation *fed = c->fed;
    run->next = fed->accepts;
    run->prev_next = &fed->accepts;
    if (run->next != NULL)
        run->next->prev_next = &run->next;
    fed->accepts = run;
    return 0;
}

static int
peer_by_name(struct controller *c, const char *name, struct store_peer **out,
             struct ztr_err *err)
{
    struct store_peer *peer = peer_alloc();
    if (peer == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    if (store_peer_get_by_name(c->store, name, peer, err) != 0) {
        free(peer);
        return -1;
    }
    if (strcmp(peer->state, "revoked") == 0) {
        free(peer);
        return ztr_err_set(err, ZTR_E_INVALID, "peer %s is revoked: propose again from scratch",
                           name);
    }
    *out = peer;
    return 0;
}

int
federation_suspend(struct controller *c, const char *name, const char *reason,
                   struct store_peer *out, struct ztr_err *err)
{
    struct store_peer *peer;
    TRY(peer_by_name(c, name, &peer, err));
    int rc = 0;
    if (strcmp(peer->state, "suspended") != 0) {
        snprintf(peer->resume_state, sizeof(peer->resume_state), "%s",
                 strcmp(peer->state, "proposed") == 0 ? "proposed" : "accepted");
        snprintf(peer->reason, sizeof(peer->reason), "%s",
                 reason != NULL && reason[0] != '\0' ? reason : "suspended by an administrator");
        peer_set_state(c, peer, "suspended", "admin");
        rc = store_peer_update(c->store, peer, err);
    }
    if (rc == 0 && c->fed != NULL)
        close_peer_sessions(c->fed, peer->id, "peer suspended");
    if (rc == 0)
        federation_changed(c, true);
    if (rc == 0 && out != NULL)
        *out = *peer;
    free(peer);
    return rc;
}

int
federation_resume(struct controller *c, const char *name, struct store_peer *out,
                  struct ztr_err *err)
{
    struct store_peer *peer;
    TRY(peer_by_name(c, name, &peer, err));
    int rc = 0;
    if (strcmp(peer->state, "suspended") != 0)
        rc = ztr_err_set(err, ZTR_E_INVALID, "peer %s is %s, not suspended", name, peer->state);
    if (rc == 0) {
        /* Heartbeats take it on from accepted: the link proves itself again. */
        char next[16];
        snprintf(next, sizeof(next), "%s",
                 fed_state_valid(peer->resume_state) ? peer->resume_state : "accepted");
        peer->resume_state[0] = '\0';
        peer->reason[0] = '\0';
        peer_set_state(c, peer, next, "admin");
        rc = store_peer_update(c->store, peer, err);
    }
    if (rc == 0)
        federation_changed(c, true);
    if (rc == 0 && out != NULL)
        *out = *peer;
    free(peer);
    return rc;
}

int
federation_revoke(struct controller *c, const char *name, struct store_peer *out,
                  struct ztr_err *err)
{
    struct store_peer *peer;
    TRY(peer_by_name(c, name, &peer, err));
    /* The bundle goes: nothing that peer signs is trusted from now on. */
    peer->bundle[0] = '\0';
    peer->bundle_version = 0;
    peer->has_token = false;
    memset(peer->token_digest, 0, sizeof(peer->token_digest));
    peer->token_expires_at = 0;
    peer->reason[0] = '\0';
    peer_set_state(c, peer, "revoked", "admin");
    int rc = store_peer_update(c->store, peer, err);
    if (rc == 0 && c->fed != NULL) {
        close_peer_sessions(c->fed, peer->id, "peer revoked");
        refresh_server_trust(c->fed);
        log_info("federation peer revoked", "peer=%s trust_domain=%s", peer->name,
                 peer->trust_domain);
    }
    if (rc == 0)
        federation_changed(c, true);
    if (rc == 0 && out != NULL)
        *out = *peer;
    free(peer);
    return rc;
}

/* ---- visibility ---------------------------------------------------------------------------- */

json_t *
federation_peer_json(const struct store_peer *p, int64_t now)
{
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:I, s:s, s:I, s:I}", "id", p->id,
        "name", p->name, "trust_domain", p->trust_domain, "url", p->url, "direction",
        p->direction, "state", p->state, "token_pending", p->has_token, "token_expires_at",
        (json_int_t)p->token_expires_at, "bundle_version", (json_int_t)p->bundle_version,
        "last_heartbeat_at", (json_int_t)p->last_heartbeat_at, "reason", p->reason,
        "created_at", (json_int_t)p->created_at, "updated_at", (json_int_t)p->updated_at);
    if (o != NULL && p->last_heartbeat_at > 0)
        json_object_set_new(o, "last_heartbeat_age_s",
                            json_integer((json_int_t)(now - p->last_heartbeat_at)));
    if (o != NULL && p->bundle[0] != '\0')
        json_object_set_new(o, "bundle", json_string(p->bundle));
    return o;
}

struct metrics_walk {
    size_t counts[FED_STATE_COUNT];
    struct metrics *ages;
    int64_t now;
};

static int
count_peer(void *ctx, const struct store_peer *p)
{
    struct metrics_walk *w = ctx;
    for (size_t i = 0; i < FED_STATE_COUNT; i++)
        if (strcmp(p->state, fed_states[i]) == 0)
            w->counts[i]++;
    if (strcmp(p->state, "revoked") != 0 && p->last_heartbeat_at > 0) {
        metrics_printf(w->ages, "ztr_federation_peer_last_heartbeat_age_seconds{peer=\"");
        metrics_label_value(w->ages, p->name);
        metrics_printf(w->ages, "\"} %lld\n", (long long)(w->now - p->last_heartbeat_at));
    }
    return 0;
}

void
federation_write_metrics(const struct controller *c, struct metrics *m)
{
    struct metrics_walk w = {.ages = m, .now = wall_s(c)};
    metrics_family(m, "ztr_federation_peer_last_heartbeat_age_seconds", "gauge",
                   "Seconds since the last heartbeat from each federation peer.");
    struct ztr_err err = {0};
    if (store_peer_list(c->store, count_peer, &w, &err) != 0)
        log_warn("federation metrics incomplete", "error=\"%s\"", err.msg);
    metrics_family(m, "ztr_federation_peers", "gauge", "Federation peers by state.");
    for (size_t i = 0; i < FED_STATE_COUNT; i++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "state=\"%s\"", fed_states[i]);
        metrics_u64(m, "ztr_federation_peers", labels, w.counts[i]);
    }
    federation_grant_metrics(c, m);
}
