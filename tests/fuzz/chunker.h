/* Shared by the fuzz targets that feed input in pieces: chunk sizes derived
 * from the input itself, so seeds stay plain messages and every run of the
 * same input splits it the same way. */
#ifndef ZTR_TESTS_FUZZ_CHUNKER_H
#define ZTR_TESTS_FUZZ_CHUNKER_H

#include <stddef.h>
#include <stdint.h>

static inline uint32_t
hash_input(const uint8_t *data, size_t size)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    return h;
}

struct chunker {
    uint32_t state;
    size_t max;
};

/* 1..max (xorshift32). */
static inline size_t
next_chunk(struct chunker *ch)
{
    ch->state ^= ch->state << 13;
    ch->state ^= ch->state >> 17;
    ch->state ^= ch->state << 5;
    return 1 + ch->state % ch->max;
}

#endif
