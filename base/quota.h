/*
 * Per-key accounting of what peers that have not (yet) proven anything may
 * hold or do: a count of things held at once (quota_enter/quota_leave, e.g.
 * TLS handshakes in progress from one source address) and a count of events
 * in a fixed window (quota_strike, e.g. failed enrollments from one source).
 *
 * Bounded: at most `capacity` keys are tracked. An entry lives while it
 * holds something or its window is current; when the table is full an
 * entry that holds nothing is dropped to make room (its window count is
 * lost, which errs towards letting a peer in), and if every entry holds
 * something the new key is refused — the caller's global cap is what keeps
 * that from locking out everyone, since held entries are at most that cap.
 *
 * Keys are 16 bytes (an IPv6 address, an IPv4-mapped address, a digest of a
 * name); buckets are chosen with a per-table random seed so that an
 * attacker cannot aim many keys at one chain.
 */
#ifndef ZTR_BASE_QUOTA_H
#define ZTR_BASE_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define QUOTA_KEY_LEN 16

struct quota_key {
    uint8_t bytes[QUOTA_KEY_LEN];
};

struct quota;

/* window_ms: the length of the strike window (0 when strikes are unused). */
int quota_new(size_t capacity, int64_t window_ms, struct quota **out, struct ztr_err *err);
void quota_free(struct quota *quota);

/* Takes one unit for key when it holds fewer than max; false (nothing
 * taken) otherwise, or when the table has no room. */
bool quota_enter(struct quota *quota, const struct quota_key *key, unsigned max);
/* Gives back one unit taken by quota_enter. */
void quota_leave(struct quota *quota, const struct quota_key *key);
/* Units key holds now. */
unsigned quota_held(const struct quota *quota, const struct quota_key *key);

/* Records one event for key at now_ms and returns the events in key's
 * current window, this one included (0 when the table had no room). */
unsigned quota_strike(struct quota *quota, const struct quota_key *key, int64_t now_ms);
/* Events in key's current window, without recording one. */
unsigned quota_strikes(const struct quota *quota, const struct quota_key *key, int64_t now_ms);
/* Milliseconds until key's current window ends (0 when it has none). */
int64_t quota_window_left_ms(const struct quota *quota, const struct quota_key *key,
                             int64_t now_ms);

/* Keys tracked now (for tests and metrics). */
size_t quota_size(const struct quota *quota);

/* A key from text (a node id): the first 16 bytes of its FNV-1a-based mix;
 * collisions only merge two keys' counts. */
void quota_key_from_text(const char *text, struct quota_key *key);

#endif
