/* What this binary is: see build_info.h. */
#include "base/build_info.h"

#include <stdio.h>

#include "base/metrics.h"

/* Written by the Makefile into $(BUILD)/gen, and rewritten only when its
 * text changes, so a new commit recompiles this file alone. A build outside
 * the Makefile (or outside git) gets the fallbacks. */
#if defined(__has_include)
#if __has_include(<ztr_build_version.h>)
#include <ztr_build_version.h>
#endif
#endif
#ifndef ZTR_VERSION
#define ZTR_VERSION "0.0.0-unknown"
#endif
#ifndef ZTR_BUILD_TYPE
#define ZTR_BUILD_TYPE "unknown"
#endif

/* Headers only: base links nothing of wolfSSL. options.h says how the
 * library linked beside it was configured (scripts/wolfssl-options.sh). */
#include <wolfssl/options.h>
#include <wolfssl/version.h>

/* The assembly paths wolfSSL was configured with (docs/WOLFSSL.md). */
static const char *const asm_paths[] = {
#if defined(WOLFSSL_AESNI)
    "aesni",
#endif
#if defined(USE_INTEL_SPEEDUP)
    "intel-speedup",
#endif
#if defined(WOLFSSL_SP_ASM) || defined(WOLFSSL_SP_X86_64_ASM)
    "sp-asm",
#endif
#if defined(WOLFSSL_ARMASM)
    "armasm",
#endif
    NULL,
};

void
build_info_get(struct build_info *out)
{
    out->version = ZTR_VERSION;
    out->wolfssl = LIBWOLFSSL_VERSION_STRING;
    out->build = ZTR_BUILD_TYPE;
    size_t len = 0;
    out->wolfssl_asm[0] = '\0';
    for (size_t i = 0; asm_paths[i] != NULL; i++) {
        int n = snprintf(out->wolfssl_asm + len, sizeof(out->wolfssl_asm) - len, "%s%s",
                         i > 0 ? "," : "", asm_paths[i]);
        if (n < 0 || (size_t)n >= sizeof(out->wolfssl_asm) - len)
            break;
        len += (size_t)n;
    }
    if (len == 0)
        snprintf(out->wolfssl_asm, sizeof(out->wolfssl_asm), "off");
}

int
build_info_line(const char *program, char *out, size_t cap)
{
    struct build_info info;
    build_info_get(&info);
    return snprintf(out, cap, "%s version=%s wolfssl=%s wolfssl_asm=%s build=%s", program,
                    info.version, info.wolfssl, info.wolfssl_asm, info.build);
}

void
build_info_metric(struct metrics *m)
{
    struct build_info info;
    build_info_get(&info);
    metrics_family(m, "ztr_build_info", "gauge",
                   "Always 1; the labels say which build this is (as --version).");
    metrics_printf(m, "ztr_build_info{version=\"");
    metrics_label_value(m, info.version);
    metrics_printf(m, "\",wolfssl=\"");
    metrics_label_value(m, info.wolfssl);
    metrics_printf(m, "\",wolfssl_asm=\"");
    metrics_label_value(m, info.wolfssl_asm);
    metrics_printf(m, "\",build=\"");
    metrics_label_value(m, info.build);
    metrics_printf(m, "\"} 1\n");
}
