/* libFuzzer target: the YAML configuration reader. A configuration file is
 * written by an operator, but a daemon started by systemd reads whatever
 * the file holds, and every later check trusts what config_load accepted.
 * The input is the file's bytes (handed over through a memfd, the path
 * config_load opens as any file). Whatever it holds, config_load must not
 * crash or leak; an accepted file must fill the typed settings, each string
 * NUL-terminated within its field, and every refusal must say why. */
#define _GNU_SOURCE /* memfd_create */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/config.h"
#include "base/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct settings {
    char trust_domain[64];
    char token[64];
    int64_t interval_ms;
    int64_t ttl_s;
    uint64_t limit;
    bool debug;
    char listen[64];
};

static const char *const item_keys[] = {"name", "target", NULL};

#define S struct settings
static const struct config_key schema[] = {
    CONFIG_KEY("TRUST_DOMAIN", CONFIG_STRING, NULL, "trust domain", S, trust_domain),
    CONFIG_KEY("ENROLLMENT_TOKEN", CONFIG_SECRET, NULL, "token", S, token),
    CONFIG_KEY("HEARTBEAT_INTERVAL", CONFIG_DURATION, "10s", "interval", S, interval_ms),
    CONFIG_KEY("SVID_TTL", CONFIG_DURATION_S, "24h", "ttl", S, ttl_s),
    CONFIG_KEY("MAX_CONNECTIONS", CONFIG_UINT, "1024", "limit", S, limit),
    CONFIG_KEY("DEBUG", CONFIG_BOOL, "false", "debug", S, debug),
    CONFIG_KEY("LISTEN_ADDR", CONFIG_ADDR, "127.0.0.1:7443", "listen", S, listen),
    {.name = "RESOURCES", .type = CONFIG_LIST, .help = "resources", .item_keys = item_keys},
};
#undef S
#define SCHEMA_LEN (sizeof(schema) / sizeof(schema[0]))

static int memfd = -1;
static char path[64];

static void
check_terminated(const char *field, size_t cap)
{
    if (memchr(field, '\0', cap) == NULL)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memfd < 0) {
        memfd = memfd_create("fuzz-config", MFD_CLOEXEC);
        if (memfd < 0)
            abort();
        snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
        log_set_level(LOG_ERROR);
    }
    if (ftruncate(memfd, 0) != 0 || (size > 0 && pwrite(memfd, data, size, 0) != (ssize_t)size))
        abort();
    char *argv[] = {"--config", path};
    char *envp[] = {NULL};
    struct config *config = NULL;
    struct ztr_err err = {0};
    if (config_load(schema, SCHEMA_LEN, envp, 2, argv, &config, &err) != 0) {
        if (config != NULL || err.msg[0] == '\0')
            abort();
        log_clear_secrets();
        return 0;
    }
    struct settings settings;
    memset(&settings, 0xa5, sizeof(settings));
    if (config_fill(config, &settings, &err) == 0) {
        check_terminated(settings.trust_domain, sizeof(settings.trust_domain));
        check_terminated(settings.token, sizeof(settings.token));
        check_terminated(settings.listen, sizeof(settings.listen));
        if (settings.listen[0] == '\0' || settings.interval_ms < 0 || settings.ttl_s < 0)
            abort();
    } else if (err.msg[0] == '\0') {
        abort();
    }
    size_t items = config_list_len(config, "RESOURCES");
    if (items > CONFIG_LIST_MAX)
        abort();
    for (size_t i = 0; i < items; i++)
        if (config_list_get(config, "RESOURCES", i, "name") == NULL ||
            config_list_get(config, "RESOURCES", i, "target") == NULL)
            abort();
    config_wipe_secrets(schema, SCHEMA_LEN, &settings);
    config_free(config);
    log_clear_secrets();
    return 0;
}
