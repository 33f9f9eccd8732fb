/*
 * Allowlist changes and how fast the fleet applied them: the revocation
 * SLO (docs/CONTROLLER.md, "Revocation latency"). Each new allowlist
 * version a controller pushes is a change, its id the version (one
 * counter per store, so ids grow across restarts and controllers) and its
 * time the controller's clock at the push. Connectors report when they
 * applied it and when the last session it removed closed (`applied`,
 * docs/PROTOCOL.md); the controller keeps the last CHANGES_MAX changes
 * with their fleet-wide times and a histogram of both phases.
 */
#ifndef ZTR_CONTROLLER_CHANGES_H
#define ZTR_CONTROLLER_CHANGES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/metrics.h"

#define CHANGES_MAX 1024
#define CHANGES_BUCKETS 9
/* Bounds on a connector's claims: the longest a connector waits before it
 * reports (5 s) with room to spare, and the most data sessions one holds. */
#define CHANGES_REPORT_MAX_MS 10000
#define CHANGES_SESSIONS_MAX 1000000

struct changes;

int changes_new(struct changes **out, struct ztr_err *err);
void changes_free(struct changes *changes);
/* Version pushed at pushed_ms (controller clock) to `connectors` connector
 * sessions; a version already recorded only adds to its connectors. */
void changes_pushed(struct changes *changes, int64_t version, int64_t pushed_ms,
                    unsigned connectors);
/* A connector's report, received at received_ms (controller clock);
 * applied_ms and closed_ms are the connector's clock (only their
 * difference is used). false: a version this controller did not push (an
 * older one, or pushed before a restart). */
bool changes_applied(struct changes *changes, int64_t version, int64_t received_ms,
                     int64_t applied_ms, int64_t closed_ms, int64_t sessions_closed);
/* {"changes": [newest first, at most limit]} */
json_t *changes_json(const struct changes *changes, size_t limit);
/* ztr_revocation_apply_seconds{phase="applied"|"closed"} */
void changes_metrics(const struct changes *changes, struct metrics *m);

#endif
