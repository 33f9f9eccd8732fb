#include "ctl/ctlmsg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bytes.h"
#include "ctl/frame.h"
#include "net/tls.h"

enum field_kind { F_STRING, F_INT, F_STRINGS, F_OBJECTS, F_OBJECT, F_BOOL };

struct field {
    const char *name;
    enum field_kind kind;
    int required;
    const struct field *items; /* F_OBJECTS: fields of each item, {NULL} terminated */
};

#define END {NULL, F_STRING, 0, NULL}

static const struct field allowlist_entry[] = {
    {"spiffe_id", F_STRING, 1, NULL},
    {"resources", F_STRINGS, 1, NULL},
    END,
};

static const struct field connector_entry[] = {
    {"id", F_STRING, 1, NULL},
    {"spiffe_id", F_STRING, 1, NULL},
    {"address", F_STRING, 1, NULL},
    {"resources", F_STRINGS, 1, NULL},
    {"targets", F_STRINGS, 0, NULL},   /* ip:port of each resource, same order */
    {"draining", F_INT, 0, NULL},      /* 1: draining, chosen only when no other serves */
    END,
};

/* Federation (docs/FEDERATION.md): a peer trust domain's bundle, sent to
 * the agents that must verify its nodes on the data plane (a connector:
 * tunnelers granted to it; a tunneler: connectors it may dial). */
static const struct field peer_bundle_entry[] = {
    {"trust_domain", F_STRING, 1, NULL},
    {"bundle", F_STRING, 1, NULL},
    END,
};

/* A grant of one resource to one tunneler of a peer trust domain. */
static const struct field fed_grant_entry[] = {
    {"id", F_STRING, 1, NULL},
    {"spiffe_id", F_STRING, 1, NULL},
    {"resource", F_STRING, 1, NULL},
    {"source_cidrs", F_STRINGS, 0, NULL}, /* absent or empty: any source */
    {"expires_at", F_INT, 0, NULL},       /* Unix seconds; absent or 0: never */
    END,
};

/* What a controller tells its peer: the grants it gave the peer's
 * tunnelers, each with the connectors serving the resource. */
static const struct field fed_connector_entry[] = {
    {"id", F_STRING, 1, NULL},
    {"spiffe_id", F_STRING, 1, NULL},
    {"address", F_STRING, 1, NULL},
    END,
};
static const struct field fed_remote_grant_entry[] = {
    {"id", F_STRING, 1, NULL},
    {"tunneler", F_STRING, 1, NULL},
    {"resource", F_STRING, 1, NULL},
    {"expires_at", F_INT, 0, NULL},
    {"connectors", F_OBJECTS, 1, fed_connector_entry},
    END,
};

static const struct field enroll_fields[] = {
    {"token", F_STRING, 1, NULL}, {"role", F_STRING, 1, NULL},
    {"name", F_STRING, 1, NULL},  {"csr", F_STRING, 1, NULL},
    {"addresses", F_STRINGS, 0, NULL}, END,
};
static const struct field enrolled_fields[] = {
    {"node_id", F_STRING, 1, NULL}, {"spiffe_id", F_STRING, 1, NULL},
    {"chain", F_STRING, 1, NULL},   {"bundle", F_STRING, 1, NULL}, END,
};
static const struct field hello_fields[] = {
    {"version", F_INT, 1, NULL}, {"role", F_STRING, 1, NULL},
    {"addresses", F_STRINGS, 0, NULL}, {"data_listen", F_STRING, 0, NULL},
    {"resources", F_STRINGS, 0, NULL}, {"targets", F_STRINGS, 0, NULL},
    {"draining", F_INT, 0, NULL}, END,
};
static const struct field welcome_fields[] = {
    {"node_id", F_STRING, 1, NULL}, {"heartbeat_interval_ms", F_INT, 1, NULL},
    {"server_time", F_INT, 1, NULL}, END,
};
static const struct field heartbeat_fields[] = {
    {"seq", F_INT, 1, NULL}, {"counters", F_OBJECT, 0, NULL},
    {"bundle_version", F_INT, 0, NULL},
    /* A connector's: the allowlist it enforces (docs/PROTOCOL.md). */
    {"allowlist_version", F_INT, 0, NULL}, {"allowlist_epoch", F_STRING, 0, NULL}, END,
};
static const struct field heartbeat_ack_fields[] = {
    {"seq", F_INT, 1, NULL}, {"server_time", F_INT, 1, NULL}, END,
};
static const struct field allowlist_fields[] = {
    {"version", F_INT, 1, NULL}, {"tunnelers", F_OBJECTS, 1, allowlist_entry},
    {"epoch", F_STRING, 0, NULL}, {"peers", F_OBJECTS, 0, peer_bundle_entry},
    {"grants", F_OBJECTS, 0, fed_grant_entry}, END,
};
static const struct field connectors_fields[] = {
    {"version", F_INT, 1, NULL}, {"connectors", F_OBJECTS, 1, connector_entry},
    {"epoch", F_STRING, 0, NULL}, {"peers", F_OBJECTS, 0, peer_bundle_entry}, END,
};
/* serial: the certificate the agent holds (docs/PROTOCOL.md). */
static const struct field renew_fields[] = {
    {"csr", F_STRING, 1, NULL}, {"serial", F_STRING, 0, NULL}, END,
};
static const struct field renewed_fields[] = {{"chain", F_STRING, 1, NULL}, END};
static const struct field bundle_fields[] = {
    {"bundle", F_STRING, 1, NULL}, {"version", F_INT, 0, NULL}, END,
};
static const struct field bundle_request_fields[] = {END};
static const struct field revoked_fields[] = {{"reason", F_STRING, 1, NULL}, END};
static const struct field error_fields[] = {
    {"code", F_STRING, 1, NULL}, {"message", F_STRING, 1, NULL}, END,
};
static const struct field reauth_begin_fields[] = {
    {"node_id", F_STRING, 1, NULL}, {"spiffe_id", F_STRING, 1, NULL}, END,
};
static const struct field reauth_challenge_fields[] = {{"challenge", F_STRING, 1, NULL}, END};
static const struct field reauth_fields[] = {
    {"csr", F_STRING, 1, NULL}, {"key", F_STRING, 1, NULL},
    {"signature", F_STRING, 1, NULL}, END,
};

/* `controller explain --connector`: what the connector would do now for
 * one tunneler and one resource (docs/PROTOCOL.md, "Explain"). */
static const struct field explain_request_fields[] = {
    {"id", F_STRING, 1, NULL}, {"tunneler", F_STRING, 1, NULL},
    {"resource", F_STRING, 1, NULL}, END,
};
static const struct field explain_answer_fields[] = {
    {"id", F_STRING, 1, NULL},
    {"allowlist_version", F_INT, 1, NULL},
    {"allowlist_epoch", F_STRING, 0, NULL},
    {"confirmed_age_seconds", F_INT, 0, NULL}, /* absent: never confirmed */
    {"stale", F_BOOL, 1, NULL},
    {"on_allowlist", F_BOOL, 1, NULL},
    {"permitted", F_BOOL, 1, NULL},
    {"serves", F_BOOL, 1, NULL},
    {"target", F_STRING, 1, NULL},             /* "" when the resource has none */
    {"verdict", F_STRING, 1, NULL},            /* allow | deny */
    {"reason", F_STRING, 1, NULL},
    END,
};

static const struct field fed_accept_fields[] = {
    {"peer_id", F_STRING, 1, NULL},      {"acceptance_token", F_STRING, 0, NULL},
    {"trust_domain", F_STRING, 1, NULL}, {"bundle", F_STRING, 1, NULL},
    {"bundle_version", F_INT, 1, NULL},  {"url", F_STRING, 0, NULL}, END,
};
static const struct field fed_accepted_fields[] = {
    {"peer_id", F_STRING, 1, NULL},     {"trust_domain", F_STRING, 1, NULL},
    {"bundle", F_STRING, 1, NULL},      {"bundle_version", F_INT, 1, NULL}, END,
};
/* bundle only when the sender's changed since the other side last said
 * which version it holds (peer_bundle_version). */
static const struct field fed_heartbeat_fields[] = {
    {"seq", F_INT, 1, NULL},    {"bundle_version", F_INT, 1, NULL},
    {"bundle", F_STRING, 0, NULL}, {"peer_bundle_version", F_INT, 1, NULL}, END,
};
/* state: "draining" or "serving"; deadline: Unix seconds after which
 * streams still open are closed (controller → connector). */
static const struct field drain_fields[] = {
    {"state", F_STRING, 1, NULL}, {"deadline", F_INT, 0, NULL}, END,
};
static const struct field fed_grants_fields[] = {
    {"version", F_INT, 1, NULL},
    {"grants", F_OBJECTS, 1, fed_remote_grant_entry},
    END,
};

static const struct field applied_fields[] = {
    {"version", F_INT, 1, NULL},   {"applied_ms", F_INT, 1, NULL},
    {"closed_ms", F_INT, 1, NULL}, {"sessions_closed", F_INT, 1, NULL}, END,
};

static const struct {
    const char *name;
    const struct field *fields;
} schema[CTLMSG_TYPE_COUNT] = {
    [CTLMSG_ENROLL] = {"enroll", enroll_fields},
    [CTLMSG_ENROLLED] = {"enrolled", enrolled_fields},
    [CTLMSG_HELLO] = {"hello", hello_fields},
    [CTLMSG_WELCOME] = {"welcome", welcome_fields},
    [CTLMSG_HEARTBEAT] = {"heartbeat", heartbeat_fields},
    [CTLMSG_HEARTBEAT_ACK] = {"heartbeat_ack", heartbeat_ack_fields},
    [CTLMSG_ALLOWLIST] = {"allowlist", allowlist_fields},
    [CTLMSG_CONNECTORS] = {"connectors", connectors_fields},
    [CTLMSG_RENEW] = {"renew", renew_fields},
    [CTLMSG_RENEWED] = {"renewed", renewed_fields},
    [CTLMSG_BUNDLE] = {"bundle", bundle_fields},
    [CTLMSG_BUNDLE_REQUEST] = {"bundle_request", bundle_request_fields},
    [CTLMSG_REVOKED] = {"revoked", revoked_fields},
    [CTLMSG_ERROR] = {"error", error_fields},
    [CTLMSG_REAUTH_BEGIN] = {"reauth_begin", reauth_begin_fields},
    [CTLMSG_REAUTH_CHALLENGE] = {"reauth_challenge", reauth_challenge_fields},
    [CTLMSG_REAUTH] = {"reauth", reauth_fields},
    [CTLMSG_REAUTHENTICATED] = {"reauthenticated", enrolled_fields},
    [CTLMSG_FED_ACCEPT] = {"fed_accept", fed_accept_fields},
    [CTLMSG_FED_ACCEPTED] = {"fed_accepted", fed_accepted_fields},
    [CTLMSG_FED_HEARTBEAT] = {"fed_heartbeat", fed_heartbeat_fields},
    [CTLMSG_FED_HEARTBEAT_ACK] = {"fed_heartbeat_ack", fed_heartbeat_fields},
    [CTLMSG_FED_GRANTS] = {"fed_grants", fed_grants_fields},
    [CTLMSG_APPLIED] = {"applied", applied_fields},
    [CTLMSG_DRAIN] = {"drain", drain_fields},
    [CTLMSG_EXPLAIN_REQUEST] = {"explain_request", explain_request_fields},
    [CTLMSG_EXPLAIN_ANSWER] = {"explain_answer", explain_answer_fields},
};

const char *
ctlmsg_type_name(enum ctlmsg_type type)
{
    return (unsigned)type < CTLMSG_TYPE_COUNT ? schema[type].name : "?";
}

static int
check_string(const json_t *value, const char *where, struct ztr_err *err)
{
    if (!json_is_string(value))
        return ztr_err_set(err, ZTR_E_INVALID, "%s: expected a string", where);
    size_t len = json_string_length(value);
    if (len > CTLMSG_STRING_MAX || memchr(json_string_value(value), 0, len) != NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "%s: string too long or contains NUL", where);
    return 0;
}

static int check_fields(const json_t *object, const struct field *fields, const char *where,
                        int allow_type, struct ztr_err *err);

static int
check_field(const json_t *value, const struct field *field, const char *where,
            struct ztr_err *err)
{
    switch (field->kind) {
    case F_STRING:
        return check_string(value, where, err);
    case F_BOOL:
        if (!json_is_boolean(value))
            return ztr_err_set(err, ZTR_E_INVALID, "%s: expected true or false", where);
        return 0;
    case F_INT:
        if (!json_is_integer(value) || json_integer_value(value) < 0)
            return ztr_err_set(err, ZTR_E_INVALID, "%s: expected a non-negative integer", where);
        return 0;
    case F_OBJECT: {
        /* The only free-form object is a heartbeat's counters: names to
         * non-negative integers, bounded. Reals are refused everywhere, so
         * whatever decodes re-encodes to the same size. */
        if (!json_is_object(value) || json_object_size(value) > 64)
            return ztr_err_set(err, ZTR_E_INVALID, "%s: expected an object of at most 64 counters",
                               where);
        const char *name;
        const json_t *counter;
        json_object_foreach((json_t *)value, name, counter) {
            if (!json_is_integer(counter) || json_integer_value(counter) < 0 || strlen(name) > 64)
                return ztr_err_set(err, ZTR_E_INVALID,
                                   "%s: counter \"%.64s\" must be a non-negative integer", where,
                                   name);
        }
        return 0;
    }
    case F_STRINGS:
    case F_OBJECTS: {
        if (!json_is_array(value) || json_array_size(value) > CTLMSG_ARRAY_MAX)
            return ztr_err_set(err, ZTR_E_INVALID, "%s: expected a list of at most %d", where,
                               CTLMSG_ARRAY_MAX);
        size_t i;
        const json_t *item;
        json_array_foreach(value, i, item) {
            char item_where[128];
            snprintf(item_where, sizeof(item_where), "%.100s[%zu]", where, i);
            if (field->kind == F_STRINGS)
                TRY(check_string(item, item_where, err));
            else if (!json_is_object(item))
                return ztr_err_set(err, ZTR_E_INVALID, "%s: expected an object", item_where);
            else
                TRY(check_fields(item, field->items, item_where, 0, err));
        }
        return 0;
    }
    }
    return 0;
}

static int
check_fields(const json_t *object, const struct field *fields, const char *where,
             int allow_type, struct ztr_err *err)
{
    const char *key;
    const json_t *value;
    /* Unknown fields are refused: a typo must not be silently ignored. */
    json_object_foreach((json_t *)object, key, value) {
        if (allow_type && strcmp(key, "type") == 0)
            continue;
        const struct field *f = fields;
        while (f->name != NULL && strcmp(f->name, key) != 0)
            f++;
        if (f->name == NULL)
            return ztr_err_set(err, ZTR_E_INVALID, "%s: unknown field \"%.64s\"", where, key);
    }
    for (const struct field *f = fields; f->name != NULL; f++) {
        const json_t *v = json_object_get(object, f->name);
        char field_where[160];
        snprintf(field_where, sizeof(field_where), "%.100s.%s", where, f->name);
        if (v == NULL) {
            if (f->required)
                return ztr_err_set(err, ZTR_E_INVALID, "%s: missing", field_where);
            continue;
        }
        TRY(check_field(v, f, field_where, err));
    }
    return 0;
}

int
ctlmsg_validate(const json_t *msg, enum ctlmsg_type *type, struct ztr_err *err)
{
    if (!json_is_object(msg))
        return ztr_err_set(err, ZTR_E_INVALID, "message is not a JSON object");
    const json_t *type_value = json_object_get(msg, "type");
    if (!json_is_string(type_value))
        return ztr_err_set(err, ZTR_E_INVALID, "message has no \"type\"");
    const char *name = json_string_value(type_value);
    for (int t = 0; t < CTLMSG_TYPE_COUNT; t++) {
        if (strcmp(schema[t].name, name) == 0) {
            TRY(check_fields(msg, schema[t].fields, schema[t].name, 1, err));
            if (type != NULL)
                *type = (enum ctlmsg_type)t;
            return 0;
        }
    }
    return ztr_err_set(err, ZTR_E_INVALID, "unknown message type \"%.64s\"", name);
}

int
ctlmsg_decode(const uint8_t *payload, size_t len, json_t **msg, enum ctlmsg_type *type,
              struct ztr_err *err)
{
    json_error_t json_error;
    json_t *root = json_loadb((const char *)payload, len,
                              JSON_REJECT_DUPLICATES, &json_error);
    if (root == NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "invalid JSON at byte %d: %s",
                           json_error.position, json_error.text);
    if (ctlmsg_validate(root, type, err) != 0) {
        json_decref(root);
        return -1;
    }
    *msg = root;
    return 0;
}

int
ctlmsg_encode(const json_t *msg, uint8_t **frame, size_t *frame_len, struct ztr_err *err)
{
    TRY(ctlmsg_validate(msg, NULL, err));
    char *text = json_dumps(msg, JSON_COMPACT);
    if (text == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "cannot serialise message");
    int rc = frame_encode(text, strlen(text), frame, frame_len, err);
    free(text);
    return rc;
}

int
ctlmsg_write(struct tls_conn *conn, json_t *msg, struct ztr_err *err)
{
    if (msg == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "cannot build message");
    uint8_t *frame;
    size_t len;
    int rc = ctlmsg_encode(msg, &frame, &len, err);
    json_decref(msg);
    if (rc != 0)
        return -1;
    rc = tls_conn_write(conn, frame, len, err);
    free(frame);
    return rc;
}

int
ctlmsg_reauth_proof(const char *challenge_hex, const char *node_id, const char *spiffe_id,
                    const char *csr, uint8_t **out, size_t *len, struct ztr_err *err)
{
    uint8_t challenge[CTLMSG_REAUTH_CHALLENGE_BYTES];
    size_t challenge_len;
    if (bytes_hex_decode(challenge_hex, challenge, sizeof(challenge), &challenge_len) != 0 ||
        challenge_len != sizeof(challenge))
        return ztr_err_set(err, ZTR_E_INVALID, "challenge: expected %d bytes of hex",
                           CTLMSG_REAUTH_CHALLENGE_BYTES);
    size_t domain_len = strlen(CTLMSG_REAUTH_DOMAIN) + 1, node_len = strlen(node_id) + 1,
           id_len = strlen(spiffe_id) + 1, csr_len = strlen(csr) + 1;
    size_t total = domain_len + sizeof(challenge) + node_len + id_len + csr_len;
    uint8_t *data = malloc(total);
    if (data == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    struct bytes_writer w;
    bytes_writer_init(&w, data, total);
    bytes_write(&w, CTLMSG_REAUTH_DOMAIN, domain_len);
    bytes_write(&w, challenge, sizeof(challenge));
    bytes_write(&w, node_id, node_len);
    bytes_write(&w, spiffe_id, id_len);
    bytes_write(&w, csr, csr_len);
    *out = data;
    *len = bytes_written(&w);
    return 0;
}

json_t *
ctlmsg_error(const char *code, const char *message)
{
    return json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message);
}
