/*
 * The connector's copy of the controller's allowlist: which tunnelers
 * (SPIFFE IDs) may reach which resources. It is persisted in STATE_DIR
 * (allowlist.json, written atomically) on every change and loaded at start,
 * so the connector keeps enforcing the last decision it received while the
 * controller is unreachable (fail-static). Version and age are exported.
 */
#ifndef ZTR_CONNECTOR_ALLOWLIST_H
#define ZTR_CONNECTOR_ALLOWLIST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/err.h"

#define ALLOWLIST_FILE "allowlist.json"
#define ALLOWLIST_MAX_ENTRIES 65536

struct allowlist;

/* An empty allowlist (version 0: nothing received yet — nobody allowed). */
struct allowlist *allowlist_new(void);
void allowlist_free(struct allowlist *list);

/* Replaces the contents from an `allowlist` control message (schema-checked
 * by ctl/ctlmsg), remembering received_at (Unix seconds). A message of the
 * same epoch as the current list with an older version is refused
 * (ZTR_E_INVALID); one of another epoch is taken whatever its version. */
int allowlist_apply(struct allowlist *list, const json_t *msg, int64_t received_at,
                    struct ztr_err *err);

/* A copy holding the same (for a loop of its own); NULL when out of memory. */
struct allowlist *allowlist_clone(const struct allowlist *list);

/* Persists to dir/allowlist.json atomically; loads it back (a missing file
 * leaves the list empty and is not an error). */
int allowlist_save(const struct allowlist *list, const char *dir, struct ztr_err *err);
int allowlist_load(struct allowlist *list, const char *dir, struct ztr_err *err);

/* Whether spiffe_id is on the list at all, and whether it may reach
 * resource. */
bool allowlist_contains(const struct allowlist *list, const char *spiffe_id);
bool allowlist_permits(const struct allowlist *list, const char *spiffe_id,
                       const char *resource);

/* Federation (docs/FEDERATION.md): a tunneler of a peer trust domain may
 * reach resource only through a grant that names it, has not expired at
 * now and, when it lists source CIDRs, contains source. False with the
 * reason in reason (the closest grant: expired, source outside, or none). */
bool allowlist_grant_permits(const struct allowlist *list, const char *spiffe_id,
                             const char *resource, const struct sockaddr_storage *source,
                             int64_t now, char *reason, size_t cap);
/* Whether spiffe_id holds a grant that has not expired at now. */
bool allowlist_grant_live(const struct allowlist *list, const char *spiffe_id, int64_t now);
/* The earliest grant expiry after `after` (Unix seconds), 0 = none. */
int64_t allowlist_next_expiry(const struct allowlist *list, int64_t after);
/* The peers' bundles the grants need: [{trust_domain, bundle}] (owned by list). */
const json_t *allowlist_peers(const struct allowlist *list);
size_t allowlist_grant_count(const struct allowlist *list);

int64_t allowlist_version(const struct allowlist *list);
/* The epoch of the list's controller run ("" for none); owned by list. */
const char *allowlist_epoch(const struct allowlist *list);
int64_t allowlist_received_at(const struct allowlist *list);
size_t allowlist_size(const struct allowlist *list);

#endif
