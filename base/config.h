/*
 * Configuration: defaults < YAML file < environment < flags.
 *
 * A daemon describes its keys once, in a schema. Each key has one canonical
 * name used three ways, so systemd EnvironmentFiles, YAML files and command
 * lines stay in step:
 *
 *     TRUST_DOMAIN   env      TRUST_DOMAIN=example.org
 *     trust_domain   YAML     trust_domain: example.org
 *     --trust-domain flag     --trust-domain example.org
 *
 * Lists of small mappings (resources, forwards) are YAML-only sequences
 * whose items are checked against a sub-schema, or, from the environment, a
 * comma-separated `a=b` form described by the daemon.
 *
 * The result is parsed and checked once into an immutable struct config;
 * every error names the key and where the bad value came from
 * (`conf.yaml:4`, `env`, `flag`), in one line.
 *
 * A row may also name a field of the daemon's own settings struct
 * (CONFIG_KEY(), with offsetof): config_fill() then writes the checked,
 * typed value there, so a daemon reads `settings.state_dir`, never a string
 * looked up by name. Lists stay in struct config (config_list_get()).
 */
#ifndef ZTR_BASE_CONFIG_H
#define ZTR_BASE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

enum config_type {
    CONFIG_STRING,
    CONFIG_SECRET,    /* a string that is never logged or printed */
    CONFIG_DURATION,  /* "500ms", "10s", "5m", "24h", "1h30m", "7d"; field: int64_t ms */
    CONFIG_DURATION_S, /* the same text; field: int64_t whole seconds */
    CONFIG_UINT,      /* field: uint64_t */
    CONFIG_BOOL,      /* true/false/yes/no/1/0; field: bool */
    CONFIG_ADDR,      /* host:port or [v6]:port with a numeric port */
    CONFIG_LIST,      /* YAML sequence of mappings; see item_keys */
};

struct config_key {
    const char *name;          /* canonical upper-case name, e.g. "TRUST_DOMAIN" */
    enum config_type type;
    const char *default_value; /* NULL: unset unless given */
    const char *help;          /* one line, shown by --help */
    /* CONFIG_LIST only: the keys each item may have (lower-case YAML names),
     * NULL-terminated; every listed key is required in every item. */
    const char *const *item_keys;
    /* The settings field config_fill() writes: offset into the daemon's
     * settings struct and its size (0: no field; read it from struct config).
     * Strings, secrets and addresses fill a char array ("" when unset; a
     * value that does not fit is a configuration error). */
    size_t offset;
    size_t size;
};

/* A schema row bound to STRUCT's FIELD (FIELD may be nested: agent.state_dir). */
#define CONFIG_KEY(NAME, TYPE, DEFAULT, HELP, STRUCT, FIELD)                                \
    {.name = (NAME), .type = (TYPE), .default_value = (DEFAULT), .help = (HELP),            \
     .offset = offsetof(STRUCT, FIELD), .size = sizeof(((STRUCT *)0)->FIELD)}

#define CONFIG_VALUE_MAX 4096
#define CONFIG_LIST_MAX 64

struct config;

/*
 * Loads the configuration. envp is a NULL-terminated "NAME=value" array
 * (pass `environ`); argv holds only flags (the caller strips the program and
 * any subcommand). `--config PATH` names the YAML file; `--help` sets
 * config_help_requested(). Unknown keys and flags are errors.
 *
 * On success *out is owned by the caller (config_free). Secret values are
 * registered with the logger's redaction list.
 */
int config_load(const struct config_key *schema, size_t schema_len, char *const *envp,
                int argc, char *const *argv, struct config **out, struct ztr_err *err);

void config_free(struct config *config);

/*
 * Writes every bound row's value (or its zero value when unset) into
 * settings, the struct the schema's offsets point into. Fails with
 * "<origin>: <key>: longer than N bytes" when a string does not fit its
 * field. settings stays the caller's; secrets copied into it are theirs to
 * wipe (config_wipe_secrets).
 */
int config_fill(const struct config *config, void *settings, struct ztr_err *err);

/* Zeroes every secret field of settings (before it is freed or goes out of
 * scope), so a token does not linger in memory. */
void config_wipe_secrets(const struct config_key *schema, size_t schema_len, void *settings);

bool config_help_requested(const struct config *config);
/* Writes one line per key (name, default, help) to a stream-like callback. */
void config_print_help(const struct config_key *schema, size_t schema_len,
                       void (*emit)(void *ctx, const char *line), void *ctx);

/*
 * Writes the schema for tools (scripts/gen-docs.py builds the docs' tables
 * and the man pages from it, so they cannot drift from --help): a header
 * line, then one tab-separated line per key:
 *   name  type  default  flag  yaml  item_keys  help
 * "" for no default, no flag (a secret) or no item keys (comma-separated).
 */
void config_print_schema(const struct config_key *schema, size_t schema_len,
                         void (*emit)(void *ctx, const char *line), void *ctx);

/* NULL when unset. The string is owned by config. */
const char *config_get(const struct config *config, const char *name);
bool config_is_set(const struct config *config, const char *name);
int64_t config_get_duration_ms(const struct config *config, const char *name);
uint64_t config_get_uint(const struct config *config, const char *name);
bool config_get_bool(const struct config *config, const char *name);

/* Where the value came from: "default", "env", "flag" or "<file>:<line>". */
const char *config_origin(const struct config *config, const char *name);

size_t config_list_len(const struct config *config, const char *name);
/* Field of item idx (lower-case YAML key), or NULL. */
const char *config_list_get(const struct config *config, const char *name, size_t idx,
                            const char *field);
const char *config_list_origin(const struct config *config, const char *name, size_t idx);

/* Fills err with "<origin>: <key as written there>: <reason>" (e.g.
 * "conf.yaml:4: heartbeat_interval: ...", "flag: --listen-addr: ..."), or
 * "<NAME>: <reason>" for an unset key or a NULL config (settings that did
 * not come from a file, e.g. in tests), for daemon-level checks that the
 * schema cannot express, so every config error reads the same. */
int config_fail(const struct config *config, const char *name, struct ztr_err *err,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Shared parsers, also used by the daemons for values found elsewhere. */
int config_parse_duration_ms(const char *text, int64_t *out);
int config_parse_addr(const char *text, char *host, size_t host_cap, uint16_t *port);

#endif
