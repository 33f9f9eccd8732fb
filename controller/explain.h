/*
 * `controller explain`: why a tunneler may or may not reach a resource,
 * step by step, from what the controller holds now (store, live fleet)
 * and, on request, from one connector's own answer over its control
 * stream. GET /api/admin/explain serves it (docs/CONTROLLER.md).
 *
 * The facts are gathered once (explain_gather), then judged by a pure
 * function (explain_evaluate) that unit tests drive with made-up facts.
 * The result is JSON: {tunneler, resource, verdict, first_failure,
 * steps: [{step, ok, detail}], allowlist_version, connectors: [...]};
 * the verdict is "allow" when every step is ok, else "deny" with the first
 * failing step.
 */
#ifndef ZTR_CONTROLLER_EXPLAIN_H
#define ZTR_CONTROLLER_EXPLAIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "controller/store.h"
#include "pki/pki.h"

struct controller;
struct http_request;
struct http_response;

/* Bound connectors judged per explain; more are counted, not listed. */
#define EXPLAIN_CONNECTORS_MAX 64
/* How long the admin request waits for a connector's answer. */
#define EXPLAIN_CONNECTOR_TIMEOUT_MS 2000

/* The step names, in the order they are judged (the JSON "step" field). */
#define EXPLAIN_STEP_TUNNELER "tunneler"
#define EXPLAIN_STEP_CERTIFICATE "certificate"
#define EXPLAIN_STEP_REVOKED "revoked"
#define EXPLAIN_STEP_PEER "federation_peer"
#define EXPLAIN_STEP_RESOURCE "resource"
#define EXPLAIN_STEP_BINDINGS "bindings"
#define EXPLAIN_STEP_GRANT "grant"
#define EXPLAIN_STEP_CONNECTORS "connectors_online"
#define EXPLAIN_STEP_ALLOWLIST "allowlist_applied"
#define EXPLAIN_STEP_DRAINING "draining"
#define EXPLAIN_STEP_CONNECTOR "connector_answer"

/* Whether a connector is draining. Connectors do not report it yet: every
 * connector is EXPLAIN_DRAIN_NOT_REPORTED until explain_drain_state
 * (explain.c) reads a reported state. */
enum explain_drain { EXPLAIN_DRAIN_NOT_REPORTED, EXPLAIN_DRAIN_NO, EXPLAIN_DRAIN_YES };

struct explain_connector {
    char name[STORE_NAME_MAX + 1];
    char id[STORE_ID_MAX + 1];       /* "" when no connector of that name is enrolled */
    bool revoked;
    bool expired;                    /* its certificate ran out */
    bool online;
    bool announces;                  /* its hello listed the resource */
    bool allowlist_reported;         /* a heartbeat to this controller said which */
    int64_t allowlist_version;
    enum explain_drain drain;
};

struct explain_facts {
    int64_t now;
    char tunneler[STORE_SPIFFE_ID_MAX + 1]; /* as asked: NAME or NAME@TRUST_DOMAIN */
    char resource[STORE_NAME_MAX + 1];
    bool federated;                  /* NAME@TRUST_DOMAIN of another trust domain */
    char spiffe_id[PKI_SPIFFE_ID_MAX + 1];
    /* Ours: the tunneler's node. */
    bool tunneler_found;
    char tunneler_id[STORE_ID_MAX + 1];
    int64_t enrolled_at;
    int64_t cert_not_after;          /* 0: never issued */
    bool revoked;
    /* Federated: the peer of that trust domain and its grant. */
    bool peer_found;
    char peer_name[STORE_NAME_MAX + 1];
    char peer_state[16];
    bool fed_grant_found;
    char fed_grant_id[STORE_ID_MAX + 1];
    char fed_grant_cidrs[STORE_DETAIL_MAX + 1]; /* JSON list text */
    int64_t fed_grant_expires_at;
    /* The resource, its bindings and the grant. */
    bool resource_found;
    size_t bound_count;              /* every binding, even past the listed ones */
    size_t connector_count;          /* listed below, at most EXPLAIN_CONNECTORS_MAX */
    struct explain_connector connectors[EXPLAIN_CONNECTORS_MAX];
    bool grant_found;
    int64_t allowlist_version;
};

/* Splits "NAME" or "NAME@TRUST_DOMAIN" and checks it can name a tunneler
 * (ZTR_E_INVALID naming the field); *federated when the trust domain is
 * given and is not ours. */
int explain_parse_tunneler(const char *text, const char *our_trust_domain,
                           struct explain_facts *facts, struct ztr_err *err);

/* Reads what the controller holds about facts->tunneler and ->resource
 * (set by explain_parse_tunneler and the caller) into facts. */
int explain_gather(struct controller *c, struct explain_facts *facts, struct ztr_err *err);

/* Judges facts: the JSON result (caller's), NULL when out of memory. */
json_t *explain_evaluate(const struct explain_facts *facts);

/* Adds the connector_answer step for connector (named by the operator)
 * from its answer (an explain_answer message) or failure, and judges the
 * verdict again. */
void explain_add_connector_answer(json_t *result, const char *connector, const json_t *answer,
                                  const char *failure);

/* GET /api/admin/explain?tunneler=&resource=[&connector=] (admin.c routes
 * here once authenticated). */
void explain_route(struct controller *c, const struct http_request *request,
                   struct http_response *response);

#endif
