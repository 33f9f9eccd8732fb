/*
 * Control-plane messages: one JSON object per frame with a "type", checked
 * against one schema table (docs/PROTOCOL.md documents the same table).
 * A message that fails the schema is never handed to a daemon's logic.
 */
#ifndef ZTR_CTL_CTLMSG_H
#define ZTR_CTL_CTLMSG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

enum ctlmsg_type {
    CTLMSG_ENROLL,        /* agent → controller, the only message allowed without mTLS */
    CTLMSG_ENROLLED,
    CTLMSG_HELLO,
    CTLMSG_WELCOME,
    CTLMSG_HEARTBEAT,
    CTLMSG_HEARTBEAT_ACK,
    CTLMSG_ALLOWLIST,
    CTLMSG_CONNECTORS,
    CTLMSG_RENEW,
    CTLMSG_RENEWED,
    CTLMSG_BUNDLE,
    CTLMSG_BUNDLE_REQUEST, /* agent → controller: send me the bundle now (after a
                              renewed chain did not verify against mine) */
    CTLMSG_REVOKED,
    CTLMSG_ERROR,
    /* Re-authentication after an expiry, by proof of possession of the
     * expired certificate's key, on a session without a client certificate
     * (docs/PROTOCOL.md, "Re-authentication"): */
    CTLMSG_REAUTH_BEGIN,     /* agent → controller: which node */
    CTLMSG_REAUTH_CHALLENGE, /* controller → agent: a single-use challenge for this session */
    CTLMSG_REAUTH,           /* agent → controller: fresh CSR + the old key's signature */
    CTLMSG_REAUTHENTICATED,  /* controller → agent: the new certificate, same node id */
    /* Federation between controllers of two trust domains, on their own
     * listener and ALPN (controller/federation.h, docs/FEDERATION.md): */
    CTLMSG_FED_ACCEPT,        /* acceptor → proposer, no client certificate: the token */
    CTLMSG_FED_ACCEPTED,      /* proposer → acceptor: its trust domain and bundle */
    CTLMSG_FED_HEARTBEAT,     /* either way on the mTLS link */
    CTLMSG_FED_HEARTBEAT_ACK,
    CTLMSG_FED_GRANTS,        /* either way: the grants given to the other's tunnelers */
    /* connector → controller: an allowlist version applied on every data
     * loop, and when the last session it removed closed (revocation SLO) */
    CTLMSG_APPLIED,
    /* Connector drain (docs/PROTOCOL.md, "Drain"): controller → connector,
     * the operator's drain or undrain; connector → controller, the
     * connector drains itself before it stops (SIGTERM). */
    CTLMSG_DRAIN,
    /* `controller explain --connector` (docs/PROTOCOL.md, "Explain"), on an
     * authenticated control stream only, one outstanding per session: */
    CTLMSG_EXPLAIN_REQUEST,   /* controller → connector: this tunneler, this resource */
    CTLMSG_EXPLAIN_ANSWER,    /* connector → controller: what it would do now */
    CTLMSG_TYPE_COUNT,
};

/* Protocol version carried in hello. */
#define CTLMSG_VERSION 1
/* Strings are bounded: PEM chains and bundles are the largest values. */
#define CTLMSG_STRING_MAX (64 * 1024)
#define CTLMSG_ARRAY_MAX 4096
/* Versioned pushes (allowlist, connectors) carry the epoch of the controller
 * run that numbered them: 16 hex digits, new at each controller start. A
 * version is only comparable with versions of the same epoch (a restored
 * database numbers from lower again). Optional: an older controller sends
 * none. Text, not an integer: 64 random bits do not fit a JSON non-negative
 * integer everywhere. */
#define CTLMSG_EPOCH_LEN 16

/* drain.state values. */
#define CTLMSG_DRAIN_DRAINING "draining"
#define CTLMSG_DRAIN_SERVING "serving"
/* hello.draining (connectors, sent only while draining): at the operator's
 * word, or because the connector is stopping. */
#define CTLMSG_HELLO_DRAINING_OPERATOR 1
#define CTLMSG_HELLO_DRAINING_STOPPING 2

/* Error codes carried in {"type":"error","code":...}. */
#define CTLMSG_E_INVALID_TOKEN "invalid_token"
#define CTLMSG_E_PERMISSION_DENIED "permission_denied"
#define CTLMSG_E_BAD_REQUEST "bad_request"
#define CTLMSG_E_CA_MISMATCH "ca_mismatch"
#define CTLMSG_E_KEY_REUSED "key_reused"
#define CTLMSG_E_NOT_ALLOWED "not_allowed"
#define CTLMSG_E_INTERNAL "internal"
/* Too many attempts from this source or node: retry later (with backoff). */
#define CTLMSG_E_RATE_LIMITED "rate_limited"

/* The operator texts both ends of the control plane use for those codes
 * (failure-modes §1 and §4); decisions read the codes above, never these. */
#define CTLMSG_TEXT_INVALID_TOKEN "invalid enrollment token"
#define CTLMSG_TEXT_PERMISSION_DENIED "permission denied"
#define CTLMSG_TEXT_CA_MISMATCH "internal CA mismatch during renewal"

/* Re-authentication: the challenge is this many random bytes, sent as hex;
 * the proof is the old key's signature (pki_key_sign) over what
 * ctlmsg_reauth_proof builds. */
#define CTLMSG_REAUTH_CHALLENGE_BYTES 32
#define CTLMSG_REAUTH_DOMAIN "ztr-ctl/1 reauth"
/* The refusals' texts (decisions read the codes). */
#define CTLMSG_TEXT_REAUTH_UNKNOWN_NODE "unknown node"
#define CTLMSG_TEXT_REAUTH_SUPERSEDED "certificate superseded"
#define CTLMSG_TEXT_REAUTH_BAD_PROOF "proof of possession does not verify"
#define CTLMSG_TEXT_REAUTH_NO_CHALLENGE "no challenge outstanding on this session"
#define CTLMSG_TEXT_REAUTH_GRACE_OVER "re-authentication grace is over"

const char *ctlmsg_type_name(enum ctlmsg_type type);

/* Parses and checks one frame payload. On success *msg (caller owns: json_decref)
 * is an object that satisfies the schema of *type. */
int ctlmsg_decode(const uint8_t *payload, size_t len, json_t **msg, enum ctlmsg_type *type,
                  struct ztr_err *err);

/* Checks msg against its schema and writes a complete frame (free()). */
int ctlmsg_encode(const json_t *msg, uint8_t **frame, size_t *frame_len, struct ztr_err *err);

/* Checks an object against the schema of its "type" (used by both). */
int ctlmsg_validate(const json_t *msg, enum ctlmsg_type *type, struct ztr_err *err);

struct tls_conn;

/* Checks and frames msg, queues it on conn, and drops the caller's
 * reference to msg whatever happens (msg may be NULL: an error). */
int ctlmsg_write(struct tls_conn *conn, json_t *msg, struct ztr_err *err);

/* The bytes a re-authentication proof signs: CTLMSG_REAUTH_DOMAIN, NUL, the
 * challenge (decoded, CTLMSG_REAUTH_CHALLENGE_BYTES), then node_id,
 * spiffe_id and csr each followed by a NUL — so a signature answers one
 * challenge (one session) for one node and one new key only. *out is
 * malloc()ed. -1 when challenge_hex is not CTLMSG_REAUTH_CHALLENGE_BYTES of
 * hex. */
int ctlmsg_reauth_proof(const char *challenge_hex, const char *node_id, const char *spiffe_id,
                        const char *csr, uint8_t **out, size_t *len, struct ztr_err *err);

/* An explain request's id: this many hex digits. */
#define CTLMSG_EXPLAIN_ID_LEN 16

/* Convenience for {"type":"error","code":...,"message":...}. */
json_t *ctlmsg_error(const char *code, const char *message);

#endif
