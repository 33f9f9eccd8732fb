/*
 * What this binary is: the version `git describe` gave at build time, the
 * wolfSSL it was compiled against and which of its assembly paths are on,
 * and the build type. One source for `--version`, /health's "build" object
 * and the ztr_build_info metric, so the three never disagree.
 */
#ifndef ZTR_BASE_BUILD_INFO_H
#define ZTR_BASE_BUILD_INFO_H

#include <stddef.h>

struct metrics;

/* The strings are static or in the struct; nothing to free. */
struct build_info {
    const char *version; /* `git describe --always --dirty`, or "0.0.0-unknown" */
    const char *wolfssl; /* wolfSSL's version, e.g. "5.5.4" */
    const char *build;   /* "release" or "asan" */
    /* wolfSSL's assembly paths, e.g. "aesni,intel-speedup,sp-asm", or "off" */
    char wolfssl_asm[64];
};

void build_info_get(struct build_info *out);

/* The --version line: "<program> version=... wolfssl=... wolfssl_asm=...
 * build=...". Returns the length snprintf would have written. */
int build_info_line(const char *program, char *out, size_t cap);

/* The ztr_build_info gauge: one sample, value 1, the facts as labels. */
void build_info_metric(struct metrics *m);

#endif
