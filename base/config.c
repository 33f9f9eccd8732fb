#include "base/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "base/fileio.h"
#include "base/log.h"

#define CONFIG_FILE_MAX (1024 * 1024)
#define CONFIG_ITEM_KEYS_MAX 8
#define ORIGIN_MAX 300
#define NAME_MAX_LEN 64

struct config_value {
    char *text;
    char origin[ORIGIN_MAX];
    char written_as[NAME_MAX_LEN + 3]; /* the key as the user spelled it */
    int64_t duration_ms;
    uint64_t uint_value;
    bool bool_value;
};

struct config_item {
    char *fields[CONFIG_ITEM_KEYS_MAX];
    char origin[ORIGIN_MAX];
};

struct config_list {
    size_t len;
    struct config_item *items;
};

struct config {
    const struct config_key *schema;
    size_t schema_len;
    struct config_value *values;
    struct config_list *lists;
    bool help;
};

/* ---- names ---------------------------------------------------------- */

static void
yaml_name(const char *name, char *out, size_t cap)
{
    size_t i = 0;
    for (; name[i] != '\0' && i + 1 < cap; i++)
        out[i] = (char)tolower((unsigned char)name[i]);
    out[i] = '\0';
}

static void
flag_name(const char *name, char *out, size_t cap)
{
    int n = snprintf(out, cap, "--");
    size_t i = (size_t)n;
    for (const char *p = name; *p != '\0' && i + 1 < cap; p++)
        out[i++] = *p == '_' ? '-' : (char)tolower((unsigned char)*p);
    out[i] = '\0';
}

static size_t
item_key_count(const struct config_key *key)
{
    size_t n = 0;
    while (key->item_keys != NULL && key->item_keys[n] != NULL)
        n++;
    return n;
}

static long
schema_index(const struct config *config, const char *name)
{
    for (size_t i = 0; i < config->schema_len; i++)
        if (strcmp(config->schema[i].name, name) == 0)
            return (long)i;
    return -1;
}

static long
schema_index_by_yaml(const struct config *config, const char *yaml_key)
{
    char lower[NAME_MAX_LEN];
    for (size_t i = 0; i < config->schema_len; i++) {
        yaml_name(config->schema[i].name, lower, sizeof(lower));
        if (strcmp(lower, yaml_key) == 0)
            return (long)i;
    }
    return -1;
}

static long
schema_index_by_flag(const struct config *config, const char *flag, size_t flag_len)
{
    char spelled[NAME_MAX_LEN + 3];
    for (size_t i = 0; i < config->schema_len; i++) {
        flag_name(config->schema[i].name, spelled, sizeof(spelled));
        if (strlen(spelled) == flag_len && strncmp(spelled, flag, flag_len) == 0)
            return (long)i;
    }
    return -1;
}

/* ---- values --------------------------------------------------------- */

/* Wipes a secret before freeing it. Not memset: a store right before free()
 * is dead to the optimiser, and -O2 removes it. */
static void
free_text(char *text, bool secret)
{
    if (text != NULL && secret)
        explicit_bzero(text, strlen(text));
    free(text);
}

static int
set_value(struct config *config, size_t idx, const char *text, const char *origin,
          const char *written_as, struct ztr_err *err)
{
    struct config_value *value = &config->values[idx];
    if (strlen(text) > CONFIG_VALUE_MAX)
        return ztr_err_set(err, ZTR_E_CONFIG, "%s: %s: value longer than %d bytes", origin,
                           written_as, CONFIG_VALUE_MAX);
    char *copy = strdup(text);
    if (copy == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    free_text(value->text, config->schema[idx].type == CONFIG_SECRET);
    value->text = copy;
    snprintf(value->origin, sizeof(value->origin), "%s", origin);
    snprintf(value->written_as, sizeof(value->written_as), "%s", written_as);
    return 0;
}

static void
free_list(struct config_list *list, size_t field_count)
{
    for (size_t i = 0; i < list->len; i++)
        for (size_t f = 0; f < field_count; f++)
            free(list->items[i].fields[f]);
    free(list->items);
    list->items = NULL;
    list->len = 0;
}

/* ---- YAML ----------------------------------------------------------- */

struct yaml_ctx {
    struct config *config;
    const char *path;
    yaml_document_t *doc;
};

static const char *
node_scalar(yaml_node_t *node)
{
    return node != NULL && node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value
                                                          : NULL;
}

static int
load_yaml_list(struct yaml_ctx *ctx, size_t idx, yaml_node_t *seq, const char *key_text,
               struct ztr_err *err)
{
    const struct config_key *key = &ctx->config->schema[idx];
    struct config_list *list = &ctx->config->lists[idx];
    size_t field_count = item_key_count(key);
    int line = (int)seq->start_mark.line + 1;
    if (seq->type != YAML_SEQUENCE_NODE)
        return ztr_err_set(err, ZTR_E_CONFIG, "%s:%d: %s: expected a list", ctx->path, line,
                           key_text);
    size_t count = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (count > CONFIG_LIST_MAX)
        return ztr_err_set(err, ZTR_E_CONFIG, "%s:%d: %s: more than %d items", ctx->path,
                           line, key_text, CONFIG_LIST_MAX);
    free_list(list, field_count);
    list->items = calloc(count ? count : 1, sizeof(*list->items));
    if (list->items == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = yaml_document_get_node(ctx->doc, seq->data.sequence.items.start[i]);
        int item_line = (int)item->start_mark.line + 1;
        struct config_item *out = &list->items[i];
        list->len = i + 1;
        snprintf(out->origin, sizeof(out->origin), "%s:%d", ctx->path, item_line);
        if (item->type != YAML_MAPPING_NODE)
            return ztr_err_set(err, ZTR_E_CONFIG, "%s:%d: %s[%zu]: expected a mapping",
                               ctx->path, item_line, key_text, i);
        for (yaml_node_pair_t *pair = item->data.mapping.pairs.start;
             pair < item->data.mapping.pairs.top; pair++) {
            yaml_node_t *k = yaml_document_get_node(ctx->doc, pair->key);
            yaml_node_t *v = yaml_document_get_node(ctx->doc, pair->value);
            const char *field = node_scalar(k);
            const char *text = node_scalar(v);
            int field_line = (int)k->start_mark.line + 1;
            size_t f = 0;
            while (field != NULL && f < field_count && strcmp(key->item_keys[f], field) != 0)
                f++;
            if (field == NULL || f == field_count)
                return ztr_err_set(err, ZTR_E_CONFIG, "%s:%d: %s[%zu]: unknown key \"%s\"",
                                   ctx->path, field_line, key_text, i,
                                   field ? field : "(not a scalar)");
            if (text == NULL)
                return ztr_err_set(err, ZTR_E_CONFIG,
                                   "%s:%d: %s[%zu].%s: expected a scalar value", ctx->path,
                                   field_line, key_text, i, field);
            if (out->fields[f] != NULL)
                return ztr_err_set(err, ZTR_E_CONFIG, "%s:%d: %s[%zu]: duplicate key \"%s\"",
                                   ctx->path, field_line, key_text, i, field);
            out->fields[f] = strdup(text);
            if (out->fields[f] == NULL)
                return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        }
        for (size_t f = 0; f < field_count; f++)
            if (out->fields[f] == NULL)
                return ztr_err_set(err, ZTR_E_CONFIG, "%s:%d: %s[%zu]: missing key \"%s\"",
                                   ctx->path, item_line, key_text, i, key->item_keys[f]);
    }
    return 0;
}

static int
load_yaml_document(struct yaml_ctx *ctx, struct ztr_err *err)
{
    yaml_node_t *root = yaml_document_get_root_node(ctx->doc);
    if (root == NULL)
        return 0; /* empty file: nothing to set */
    if (root->type != YAML_MAPPING_NODE)
        return ztr_err_set(err, ZTR_E_CONFIG, "%s:%d: expected a mapping of keys to values",
                           ctx->path, (int)root->start_mark.line + 1);
    bool *seen = calloc(ctx->config->schema_len, sizeof(bool));
    if (seen == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int rc = 0;
    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
         rc == 0 && pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(ctx->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(ctx->doc, pair->value);
        const char *key_text = node_scalar(k);
        int line = (int)k->start_mark.line + 1;
        if (key_text == NULL) {
            rc = ztr_err_set(err, ZTR_E_CONFIG, "%s:%d: keys must be plain names", ctx->path,
                             line);
            break;
        }
        long idx = schema_index_by_yaml(ctx->config, key_text);
        if (idx < 0) {
            rc = ztr_err_set(err, ZTR_E_CONFIG, "%s:%d: unknown key \"%s\"", ctx->path, line,
                             key_text);
            break;
        }
        if (seen[idx]) {
            rc = ztr_err_set(err, ZTR_E_CONFIG, "%s:%d: duplicate key \"%s\"", ctx->path,
                             line, key_text);
            break;
        }
        seen[idx] = true;
        if (ctx->config->schema[idx].type == CONFIG_LIST) {
            rc = load_yaml_list(ctx, (size_t)idx, v, key_text, err);
            continue;
        }
        const char *text = node_scalar(v);
        if (text == NULL) {
            rc = ztr_err_set(err, ZTR_E_CONFIG, "%s:%d: %s: expected a scalar value",
                             ctx->path, (int)v->start_mark.line + 1, key_text);
            break;
        }
        char origin[ORIGIN_MAX];
        snprintf(origin, sizeof(origin), "%s:%d", ctx->path, (int)v->start_mark.line + 1);
        rc = set_value(ctx->config, (size_t)idx, text, origin, key_text, err);
    }
    free(seen);
    return rc;
}

static int
load_yaml_file(struct config *config, const char *path, struct ztr_err *err)
{
    char *data;
    size_t len;
    if (file_read_all(path, CONFIG_FILE_MAX, &data, &len, err) != 0)
        return ztr_err_wrap(err, "config");
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        free(data);
        return ztr_err_set(err, ZTR_E_NOMEM, "config: cannot initialise YAML parser");
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    int rc;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = ztr_err_set(err, ZTR_E_CONFIG, "%s:%d:%d: %s%s%s", path,
                         (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1,
                         parser.problem ? parser.problem : "invalid YAML",
                         parser.context ? " " : "", parser.context ? parser.context : "");
    } else {
        struct yaml_ctx ctx = {config, path, &doc};
        rc = load_yaml_document(&ctx, err);
        yaml_document_delete(&doc);
        /* A second document would be silently ignored: refuse it instead. */
        yaml_document_t extra;
        if (rc == 0 && yaml_parser_load(&parser, &extra)) {
            yaml_node_t *root = yaml_document_get_root_node(&extra);
            if (root != NULL)
                rc = ztr_err_set(err, ZTR_E_CONFIG, "%s:%d: only one YAML document is allowed",
                                 path, (int)root->start_mark.line + 1);
            yaml_document_delete(&extra);
        }
    }
    yaml_parser_delete(&parser);
    free(data);
    return rc;
}

/* ---- environment and flags ------------------------------------------ */

static const char *
env_lookup(char *const *envp, const char *name)
{
    size_t len = strlen(name);
    for (char *const *e = envp; e != NULL && *e != NULL; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
            return *e + len + 1;
    return NULL;
}

/* "a=b,c=d" → items of a two-field list (e.g. resources: name=target). */
static int
load_compact_list(struct config *config, size_t idx, const char *text, const char *origin,
                  const char *written_as, struct ztr_err *err)
{
    const struct config_key *key = &config->schema[idx];
    struct config_list *list = &config->lists[idx];
    size_t field_count = item_key_count(key);
    if (field_count != 2)
        return ztr_err_set(err, ZTR_E_CONFIG, "%s: %s: can only be set in the YAML file",
                           origin, written_as);
    free_list(list, field_count);
    list->items = calloc(CONFIG_LIST_MAX, sizeof(*list->items));
    if (list->items == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    char *copy = strdup(text);
    if (copy == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int rc = 0;
    char *save = NULL;
    for (char *entry = strtok_r(copy, ",", &save); entry != NULL && rc == 0;
         entry = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(entry, '=');
        if (eq == NULL || eq == entry || eq[1] == '\0') {
            rc = ztr_err_set(err, ZTR_E_CONFIG, "%s: %s: expected %s=%s[,...], got \"%s\"",
                             origin, written_as, key->item_keys[0], key->item_keys[1], entry);
            break;
        }
        if (list->len == CONFIG_LIST_MAX) {
            rc = ztr_err_set(err, ZTR_E_CONFIG, "%s: %s: more than %d items", origin,
                             written_as, CONFIG_LIST_MAX);
            break;
        }
        *eq = '\0';
        struct config_item *item = &list->items[list->len++];
        snprintf(item->origin, sizeof(item->origin), "%s", origin);
        item->fields[0] = strdup(entry);
        item->fields[1] = strdup(eq + 1);
        if (item->fields[0] == NULL || item->fields[1] == NULL)
            rc = ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    free(copy);
    return rc;
}

static int
apply_text(struct config *config, size_t idx, const char *text, const char *origin,
           const char *written_as, struct ztr_err *err)
{
    if (config->schema[idx].type == CONFIG_LIST)
        return load_compact_list(config, idx, text, origin, written_as, err);
    return set_value(config, idx, text, origin, written_as, err);
}

static int
load_env(struct config *config, char *const *envp, struct ztr_err *err)
{
    for (size_t i = 0; i < config->schema_len; i++) {
        const char *name = config->schema[i].name;
        const char *text = env_lookup(envp, name);
        /* An empty assignment in an EnvironmentFile means "not set". */
        if (text == NULL || text[0] == '\0')
            continue;
        TRY(apply_text(config, i, text, "env", name, err));
    }
    return 0;
}

static int
find_config_path(int argc, char *const *argv, const char **path, struct ztr_err *err)
{
    *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc)
                return ztr_err_set(err, ZTR_E_CONFIG, "flag --config needs a value");
            *path = argv[i + 1];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            *path = argv[i] + 9;
        }
    }
    return 0;
}

static int
load_flags(struct config *config, int argc, char *const *argv, struct ztr_err *err)
{
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            config->help = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0)
            return ztr_err_set(err, ZTR_E_CONFIG, "unexpected argument \"%s\"", arg);
        const char *eq = strchr(arg, '=');
        size_t flag_len = eq ? (size_t)(eq - arg) : strlen(arg);
        const char *text = eq ? eq + 1 : NULL;
        if (flag_len == 8 && strncmp(arg, "--config", 8) == 0) {
            if (text == NULL)
                i++;
            continue;
        }
        long idx = schema_index_by_flag(config, arg, flag_len);
        if (idx < 0)
            return ztr_err_set(err, ZTR_E_CONFIG, "unknown flag %.*s", (int)flag_len, arg);
        /* A command line is readable by every local user (ps, /proc); a
         * secret there is disclosed before the daemon even runs. The value
         * is not echoed, and not read: the error names only the key. */
        if (config->schema[idx].type == CONFIG_SECRET) {
            char yaml[NAME_MAX_LEN + 1];
            yaml_name(config->schema[idx].name, yaml, sizeof(yaml));
            return ztr_err_set(err, ZTR_E_CONFIG,
                               "flag %.*s: %s is a secret and is not accepted on the command "
                               "line (visible to every local user in ps); set %s in the "
                               "environment (systemd EnvironmentFile) or %s in the YAML file",
                               (int)flag_len, arg, config->schema[idx].name,
                               config->schema[idx].name, yaml);
        }
        if (text == NULL) {
            if (i + 1 >= argc)
                return ztr_err_set(err, ZTR_E_CONFIG, "flag %s needs a value", arg);
            text = argv[++i];
        }
        char spelled[NAME_MAX_LEN + 3];
        flag_name(config->schema[idx].name, spelled, sizeof(spelled));
        TRY(apply_text(config, (size_t)idx, text, "flag", spelled, err));
    }
    return 0;
}

/* ---- typed checks --------------------------------------------------- */

int
config_parse_duration_ms(const char *text, int64_t *out)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    /* Ten years: longer is a typo, and it keeps the sum far from overflow. */
    const int64_t limit = 10LL * 365 * 86400000LL;
    if (strcmp(text, "0") == 0) {
        *out = 0;
        return 0;
    }
    int64_t total = 0;
    const char *p = text;
    if (*p == '\0')
        return -1;
    while (*p != '\0') {
        if (!isdigit((unsigned char)*p))
            return -1;
        int64_t number = 0;
        while (isdigit((unsigned char)*p)) {
            number = number * 10 + (*p - '0');
            if (number > limit)
                return -1;
            p++;
        }
        size_t u = 0;
        size_t count = sizeof(units) / sizeof(units[0]);
        for (; u < count; u++) {
            size_t ulen = strlen(units[u].unit);
            /* "m" must not swallow the "m" of "ms". */
            if (strncmp(p, units[u].unit, ulen) == 0 && !(ulen == 1 && p[0] == 'm' && p[1] == 's'))
                break;
        }
        if (u == count)
            return -1;
        p += strlen(units[u].unit);
        if (number > limit / units[u].ms)
            return -1;
        total += number * units[u].ms;
        if (total > limit)
            return -1;
    }
    *out = total;
    return 0;
}

int
config_parse_addr(const char *text, char *host, size_t host_cap, uint16_t *port)
{
    const char *colon;
    const char *host_start = text;
    size_t host_len;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        host_start = text + 1;
        host_len = (size_t)(close - host_start);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL || memchr(text, ':', (size_t)(colon - text)) != NULL)
            return -1;
        host_len = (size_t)(colon - text);
    }
    if (host_len == 0 || host_len + 1 > host_cap)
        return -1;
    const char *digits = colon + 1;
    if (*digits == '\0' || strlen(digits) > 5)
        return -1;
    unsigned long value = 0;
    for (const char *d = digits; *d != '\0'; d++) {
        if (!isdigit((unsigned char)*d))
            return -1;
        value = value * 10 + (unsigned long)(*d - '0');
    }
    /* Port 0 is valid for listeners: the kernel picks a free port (tests). */
    if (value > 65535)
        return -1;
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    *port = (uint16_t)value;
    return 0;
}

static int
parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

int
config_fail(const struct config *config, const char *name, struct ztr_err *err,
            const char *fmt, ...)
{
    char reason[ZTR_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    long idx = config != NULL ? schema_index(config, name) : -1;
    if (idx < 0 || config->values[idx].text == NULL)
        return ztr_err_set(err, ZTR_E_CONFIG, "%s: %s", name, reason);
    const struct config_value *value = &config->values[idx];
    return ztr_err_set(err, ZTR_E_CONFIG, "%s: %s: %s", value->origin, value->written_as,
                       reason);
}

static int
check_value(struct config *config, size_t idx, struct ztr_err *err)
{
    const struct config_key *key = &config->schema[idx];
    struct config_value *value = &config->values[idx];
    if (value->text == NULL)
        return 0;
    const char *text = value->text;
    switch (key->type) {
    case CONFIG_STRING:
    case CONFIG_SECRET:
    case CONFIG_LIST:
        return 0;
    case CONFIG_DURATION:
    case CONFIG_DURATION_S:
        if (config_parse_duration_ms(text, &value->duration_ms) != 0)
            return config_fail(config, key->name, err,
                               "invalid duration \"%s\" (use a number with a unit: ms, s, m, "
                               "h, d; e.g. 10s, 24h)",
                               text);
        return 0;
    case CONFIG_UINT: {
        /* Digits only: strtoull also skips blanks and takes a sign, so
         * " -5" would come back as 2^64-5. */
        char *end;
        errno = 0;
        unsigned long long n = strtoull(text, &end, 10);
        if (!isdigit((unsigned char)text[0]) || errno != 0 || *end != '\0')
            return config_fail(config, key->name, err, "invalid number \"%s\"", text);
        value->uint_value = n;
        return 0;
    }
    case CONFIG_BOOL:
        if (parse_bool(text, &value->bool_value) != 0)
            return config_fail(config, key->name, err,
                               "invalid boolean \"%s\" (use true or false)", text);
        return 0;
    case CONFIG_ADDR: {
        char host[256];
        uint16_t port;
        if (config_parse_addr(text, host, sizeof(host), &port) != 0)
            return config_fail(config, key->name, err,
                               "invalid address \"%s\" (use host:port, e.g. 127.0.0.1:7443)",
                               text);
        return 0;
    }
    }
    return 0;
}

/* ---- typed settings ------------------------------------------------- */

/* Whether a row's field has the size its type fills (a schema mistake
 * would otherwise write past the field). */
static bool
field_fits(const struct config_key *key)
{
    if (key->size == 0)
        return true;
    switch (key->type) {
    case CONFIG_STRING:
    case CONFIG_SECRET:
    case CONFIG_ADDR:
        return true;
    case CONFIG_DURATION:
    case CONFIG_DURATION_S:
        return key->size == sizeof(int64_t);
    case CONFIG_UINT:
        return key->size == sizeof(uint64_t);
    case CONFIG_BOOL:
        return key->size == sizeof(bool);
    case CONFIG_LIST:
        return false;
    }
    return false;
}

int
config_fill(const struct config *config, void *settings, struct ztr_err *err)
{
    for (size_t i = 0; i < config->schema_len; i++) {
        const struct config_key *key = &config->schema[i];
        const struct config_value *value = &config->values[i];
        unsigned char *field = (unsigned char *)settings + key->offset;
        if (key->size == 0)
            continue;
        switch (key->type) {
        case CONFIG_STRING:
        case CONFIG_SECRET:
        case CONFIG_ADDR: {
            size_t len = value->text != NULL ? strlen(value->text) : 0;
            if (len >= key->size)
                return config_fail(config, key->name, err, "longer than %zu bytes",
                                   key->size - 1);
            if (len > 0)
                memcpy(field, value->text, len);
            field[len] = '\0';
            break;
        }
        case CONFIG_DURATION:
        case CONFIG_DURATION_S: {
            int64_t n = value->text == NULL ? 0
                        : key->type == CONFIG_DURATION ? value->duration_ms
                                                       : value->duration_ms / 1000;
            memcpy(field, &n, sizeof(n));
            break;
        }
        case CONFIG_UINT: {
            uint64_t n = value->text != NULL ? value->uint_value : 0;
            memcpy(field, &n, sizeof(n));
            break;
        }
        case CONFIG_BOOL: {
            bool b = value->text != NULL && value->bool_value;
            memcpy(field, &b, sizeof(b));
            break;
        }
        case CONFIG_LIST:
            break;
        }
    }
    return 0;
}

void
config_wipe_secrets(const struct config_key *schema, size_t schema_len, void *settings)
{
    for (size_t i = 0; i < schema_len; i++)
        if (schema[i].type == CONFIG_SECRET && schema[i].size > 0)
            explicit_bzero((unsigned char *)settings + schema[i].offset, schema[i].size);
}

/* ---- public API ----------------------------------------------------- */

int
config_load(const struct config_key *schema, size_t schema_len, char *const *envp, int argc,
            char *const *argv, struct config **out, struct ztr_err *err)
{
    struct config *config = calloc(1, sizeof(*config));
    if (config == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    config->schema = schema;
    config->schema_len = schema_len;
    config->values = calloc(schema_len ? schema_len : 1, sizeof(*config->values));
    config->lists = calloc(schema_len ? schema_len : 1, sizeof(*config->lists));
    if (config->values == NULL || config->lists == NULL) {
        config_free(config);
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < schema_len; i++) {
        if (strlen(schema[i].name) >= NAME_MAX_LEN ||
            item_key_count(&schema[i]) > CONFIG_ITEM_KEYS_MAX)
            rc = ztr_err_set(err, ZTR_E_CONFIG, "schema: key %s too large", schema[i].name);
        else if (!field_fits(&schema[i]))
            rc = ztr_err_set(err, ZTR_E_CONFIG, "schema: key %s: a %zu-byte field cannot hold it",
                             schema[i].name, schema[i].size);
        else if (schema[i].default_value != NULL && schema[i].type != CONFIG_LIST)
            rc = set_value(config, i, schema[i].default_value, "default", schema[i].name, err);
    }
    const char *path = NULL;
    if (rc == 0)
        rc = find_config_path(argc, argv, &path, err);
    if (rc == 0 && path != NULL)
        rc = load_yaml_file(config, path, err);
    if (rc == 0)
        rc = load_env(config, envp, err);
    if (rc == 0)
        rc = load_flags(config, argc, argv, err);
    for (size_t i = 0; rc == 0 && i < schema_len; i++)
        rc = check_value(config, i, err);
    for (size_t i = 0; rc == 0 && i < schema_len; i++)
        if (schema[i].type == CONFIG_SECRET && config->values[i].text != NULL)
            log_add_secret(config->values[i].text);
    if (rc != 0) {
        config_free(config);
        return -1;
    }
    *out = config;
    return 0;
}

void
config_free(struct config *config)
{
    if (config == NULL)
        return;
    for (size_t i = 0; i < config->schema_len; i++) {
        if (config->values != NULL)
            free_text(config->values[i].text, config->schema[i].type == CONFIG_SECRET);
        if (config->lists != NULL)
            free_list(&config->lists[i], item_key_count(&config->schema[i]));
    }
    free(config->values);
    free(config->lists);
    free(config);
}

bool
config_help_requested(const struct config *config)
{
    return config->help;
}

void
config_print_help(const struct config_key *schema, size_t schema_len,
                  void (*emit)(void *ctx, const char *line), void *ctx)
{
    char line[512];
    char flag[NAME_MAX_LEN + 3];
    for (size_t i = 0; i < schema_len; i++) {
        flag_name(schema[i].name, flag, sizeof(flag));
        snprintf(line, sizeof(line), "  %-28s %-22s %s%s%s%s", flag, schema[i].name,
                 schema[i].help ? schema[i].help : "",
                 schema[i].default_value ? " (default " : "",
                 schema[i].default_value ? schema[i].default_value : "",
                 schema[i].default_value ? ")" : "");
        emit(ctx, line);
    }
}

static const char *
type_name(enum config_type type)
{
    switch (type) {
    case CONFIG_STRING: return "string";
    case CONFIG_SECRET: return "secret";
    case CONFIG_DURATION: return "duration";
    case CONFIG_DURATION_S: return "duration";
    case CONFIG_UINT: return "uint";
    case CONFIG_BOOL: return "bool";
    case CONFIG_ADDR: return "addr";
    case CONFIG_LIST: return "list";
    }
    return "string";
}

void
config_print_schema(const struct config_key *schema, size_t schema_len,
                    void (*emit)(void *ctx, const char *line), void *ctx)
{
    char line[1024];
    char flag[NAME_MAX_LEN + 3];
    char yaml[NAME_MAX_LEN + 1];
    emit(ctx, "name\ttype\tdefault\tflag\tyaml\titem_keys\thelp");
    for (size_t i = 0; i < schema_len; i++) {
        const struct config_key *key = &schema[i];
        flag_name(key->name, flag, sizeof(flag));
        yaml_name(key->name, yaml, sizeof(yaml));
        char items[256] = "";
        size_t used = 0;
        for (size_t k = 0; k < item_key_count(key) && used < sizeof(items); k++)
            used += (size_t)snprintf(items + used, sizeof(items) - used, "%s%s", k ? "," : "",
                                     key->item_keys[k]);
        snprintf(line, sizeof(line), "%s\t%s\t%s\t%s\t%s\t%s\t%s", key->name, type_name(key->type),
                 key->default_value ? key->default_value : "",
                 key->type == CONFIG_SECRET ? "" : flag, yaml, items, key->help ? key->help : "");
        emit(ctx, line);
    }
}

static const struct config_value *
value_of(const struct config *config, const char *name)
{
    long idx = schema_index(config, name);
    return idx < 0 ? NULL : &config->values[idx];
}

const char *
config_get(const struct config *config, const char *name)
{
    const struct config_value *value = value_of(config, name);
    return value ? value->text : NULL;
}

bool
config_is_set(const struct config *config, const char *name)
{
    return config_get(config, name) != NULL;
}

int64_t
config_get_duration_ms(const struct config *config, const char *name)
{
    const struct config_value *value = value_of(config, name);
    return value ? value->duration_ms : 0;
}

uint64_t
config_get_uint(const struct config *config, const char *name)
{
    const struct config_value *value = value_of(config, name);
    return value ? value->uint_value : 0;
}

bool
config_get_bool(const struct config *config, const char *name)
{
    const struct config_value *value = value_of(config, name);
    return value ? value->bool_value : false;
}

const char *
config_origin(const struct config *config, const char *name)
{
    const struct config_value *value = value_of(config, name);
    return value && value->text ? value->origin : "unset";
}

static const struct config_list *
list_of(const struct config *config, const char *name)
{
    long idx = schema_index(config, name);
    return idx < 0 ? NULL : &config->lists[idx];
}

size_t
config_list_len(const struct config *config, const char *name)
{
    const struct config_list *list = list_of(config, name);
    return list ? list->len : 0;
}

const char *
config_list_get(const struct config *config, const char *name, size_t idx, const char *field)
{
    long key_idx = schema_index(config, name);
    if (key_idx < 0)
        return NULL;
    const struct config_key *key = &config->schema[key_idx];
    const struct config_list *list = &config->lists[key_idx];
    if (idx >= list->len)
        return NULL;
    for (size_t f = 0; f < item_key_count(key); f++)
        if (strcmp(key->item_keys[f], field) == 0)
            return list->items[idx].fields[f];
    return NULL;
}

const char *
config_list_origin(const struct config *config, const char *name, size_t idx)
{
    const struct config_list *list = list_of(config, name);
    return list && idx < list->len ? list->items[idx].origin : "unset";
}
