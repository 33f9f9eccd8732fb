#include "base/quota.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct entry {
    struct quota_key key;
    unsigned held;
    unsigned strikes;
    int64_t window_start_ms;
    struct entry *next;
};

struct quota {
    size_t capacity;
    size_t size;
    size_t bucket_count;  /* a power of two */
    int64_t window_ms;
    uint64_t seed;
    struct entry **buckets;
};

int
quota_new(size_t capacity, int64_t window_ms, struct quota **out, struct ztr_err *err)
{
    *out = NULL;
    if (capacity == 0 || capacity > (1u << 24) || window_ms < 0)
        return ztr_err_set(err, ZTR_E_INVALID, "quota capacity %zu or window %lld out of range",
                           capacity, (long long)window_ms);
    struct quota *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    q->capacity = capacity;
    q->window_ms = window_ms;
    q->bucket_count = 16;
    while (q->bucket_count < capacity)
        q->bucket_count <<= 1;
    q->buckets = calloc(q->bucket_count, sizeof(*q->buckets));
    if (q->buckets == NULL) {
        free(q);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    if (getrandom(&q->seed, sizeof(q->seed), 0) != (ssize_t)sizeof(q->seed))
        q->seed = (uint64_t)(uintptr_t)q ^ 0x9e3779b97f4a7c15ull;
    *out = q;
    return 0;
}

void
quota_free(struct quota *quota)
{
    if (quota == NULL)
        return;
    for (size_t b = 0; b < quota->bucket_count; b++) {
        struct entry *e = quota->buckets[b];
        while (e != NULL) {
            struct entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(quota->buckets);
    free(quota);
}

/* splitmix64 over the key's two halves, keyed by the table's seed. */
static size_t
bucket_of(const struct quota *q, const struct quota_key *key)
{
    uint64_t parts[2];
    memcpy(parts, key->bytes, sizeof(parts));
    uint64_t h = q->seed;
    for (int i = 0; i < 2; i++) {
        h ^= parts[i];
        h += 0x9e3779b97f4a7c15ull;
        h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
        h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
        h ^= h >> 31;
    }
    return (size_t)(h & (q->bucket_count - 1));
}

static struct entry *
find(const struct quota *q, const struct quota_key *key, struct entry ***link_out)
{
    struct entry **link = &q->buckets[bucket_of(q, key)];
    for (; *link != NULL; link = &(*link)->next) {
        if (memcmp((*link)->key.bytes, key->bytes, QUOTA_KEY_LEN) == 0) {
            if (link_out != NULL)
                *link_out = link;
            return *link;
        }
    }
    return NULL;
}

static bool
window_current(const struct quota *q, const struct entry *e, int64_t now_ms)
{
    return e->strikes > 0 && now_ms - e->window_start_ms < q->window_ms;
}

static void
unlink_entry(struct quota *q, struct entry **link)
{
    struct entry *e = *link;
    *link = e->next;
    free(e);
    q->size--;
}

/* Drops one entry that holds nothing (an expired window first), so a full
 * table can take a new key. The scan is bounded by the capacity and runs
 * only when the table is full. */
static bool
make_room(struct quota *q, int64_t now_ms)
{
    struct entry **candidate = NULL;
    for (size_t b = 0; b < q->bucket_count; b++) {
        for (struct entry **link = &q->buckets[b]; *link != NULL; link = &(*link)->next) {
            if ((*link)->held > 0)
                continue;
            if (!window_current(q, *link, now_ms)) {
                unlink_entry(q, link);
                return true;
            }
            if (candidate == NULL)
                candidate = link;
        }
    }
    if (candidate == NULL)
        return false;
    unlink_entry(q, candidate);
    return true;
}

static struct entry *
find_or_add(struct quota *q, const struct quota_key *key, int64_t now_ms)
{
    struct entry *e = find(q, key, NULL);
    if (e != NULL)
        return e;
    if (q->size >= q->capacity && !make_room(q, now_ms))
        return NULL;
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->key = *key;
    size_t b = bucket_of(q, key);
    e->next = q->buckets[b];
    q->buckets[b] = e;
    q->size++;
    return e;
}

bool
quota_enter(struct quota *quota, const struct quota_key *key, unsigned max)
{
    /* A held-only table has no windows; "now" only orders evictions. */
    struct entry *e = find(quota, key, NULL);
    if (e != NULL && e->held >= max)
        return false;
    if (e == NULL && (max == 0 || (e = find_or_add(quota, key, INT64_MAX)) == NULL))
        return false;
    e->held++;
    return true;
}

void
quota_leave(struct quota *quota, const struct quota_key *key)
{
    struct entry **link;
    struct entry *e = find(quota, key, &link);
    if (e == NULL || e->held == 0)
        return;
    e->held--;
    if (e->held == 0 && e->strikes == 0)
        unlink_entry(quota, link);
}

unsigned
quota_held(const struct quota *quota, const struct quota_key *key)
{
    const struct entry *e = find(quota, key, NULL);
    return e != NULL ? e->held : 0;
}

unsigned
quota_strike(struct quota *quota, const struct quota_key *key, int64_t now_ms)
{
    struct entry *e = find_or_add(quota, key, now_ms);
    if (e == NULL)
        return 0;
    if (!window_current(quota, e, now_ms)) {
        e->strikes = 0;
        e->window_start_ms = now_ms;
    }
    if (e->strikes < UINT32_MAX)
        e->strikes++;
    return e->strikes;
}

unsigned
quota_strikes(const struct quota *quota, const struct quota_key *key, int64_t now_ms)
{
    const struct entry *e = find(quota, key, NULL);
    return e != NULL && window_current(quota, e, now_ms) ? e->strikes : 0;
}

int64_t
quota_window_left_ms(const struct quota *quota, const struct quota_key *key, int64_t now_ms)
{
    const struct entry *e = find(quota, key, NULL);
    if (e == NULL || !window_current(quota, e, now_ms))
        return 0;
    return e->window_start_ms + quota->window_ms - now_ms;
}

size_t
quota_size(const struct quota *quota)
{
    return quota->size;
}

void
quota_key_from_text(const char *text, struct quota_key *key)
{
    /* Two FNV-1a passes with different offsets fill the 16 bytes. */
    uint64_t a = 14695981039346656037ull, b = 1099511628211ull * 31u;
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        a = (a ^ *p) * 1099511628211ull;
        b = (b ^ *p) * 1099511628211ull + 0x9e3779b97f4a7c15ull;
    }
    memcpy(key->bytes, &a, 8);
    memcpy(key->bytes + 8, &b, 8);
}
