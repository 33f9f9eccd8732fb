/*
 * `controller <subcommand>`: the admin CLI, a thin client of the admin API.
 *
 * ADMIN_URL (default http://127.0.0.1:8080) says where, ADMIN_AUTH_TOKEN
 * authenticates. An https:// ADMIN_URL (a controller with ADMIN_TLS=true)
 * is verified against `--ca FILE`, else ADMIN_CA, else the controller's
 * own STATE_DIR/admin-tls/ca.pem when this host can read it, else the
 * system's trust store; never unverified. Output is for shells: lists
 * print one `key=value ...` line per item, `token create` prints only the
 * token (`--env`: the EnvironmentFile line), other commands one short
 * confirmation line. `--json` on the commands that list or show prints the
 * admin API's reply instead (keys sorted, one line). The exit statuses are
 * enum cli_exit below (docs/CONTROLLER.md, "Exit statuses").
 */
#include "controller/controller.h"
#include "controller/store.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "base/fileio.h"
#include "controller/http_client.h"
#include "net/http.h"

#define CLI_DEFAULT_URL "http://127.0.0.1:8080"
#define CLI_TIMEOUT_MS 30000L
#define CLI_URL_MAX 2048
#define CLI_PATH_MAX 1200
#define CLI_MAX_OPTIONS 10
/* An acceptance token read from a file or stdin: far above a real one. */
#define CLI_TOKEN_MAX 16384 /* the last stays empty: lists end at a NULL name */
#define CLI_MAX_POSITIONALS 1
#define CLI_MAX_REPEATS 32 /* PKI_MAX_IP_SANS: every --address a certificate can hold */

/* The CLI's exit statuses, the one place they are defined; scripts branch
 * on them (docs/CONTROLLER.md, "Exit statuses"). */
enum cli_exit {
    EXIT_OK = 0,
    EXIT_FAILED = 1,      /* the controller refused or failed the request, or a local step failed */
    EXIT_USAGE = 2,       /* unknown command or option, missing argument, bad setting */
    EXIT_UNREACHABLE = 3, /* no answer from the admin API: connect, timeout, TLS, not HTTP */
    EXIT_AUTH = 4,        /* the admin API refused ADMIN_AUTH_TOKEN (HTTP 401 / 403) */
};

struct cli {
    char base[CLI_URL_MAX];  /* ADMIN_URL without a trailing '/' */
    const char *token;
    bool https;
    char ca_file[CLI_PATH_MAX];  /* https: the CAs trusted; "" = the system's store */
    const char *ca_origin;       /* where ca_file came from, for error hints */
};

struct option_spec {
    const char *name;  /* without "--"; NULL ends the list */
    bool takes_value;
    bool required;
};

/* A command's arguments once parsed: positionals, then option values in
 * the order of the command's option_spec list. */
struct args {
    const char *pos[CLI_MAX_POSITIONALS];
    size_t pos_count;
    const char *values[CLI_MAX_OPTIONS];
    bool seen[CLI_MAX_OPTIONS];
    const struct option_spec *specs;
    const char *many[CLI_MAX_REPEATS];  /* every --connector or --address value, in order */
    size_t many_count;
};

struct command {
    const char *group;  /* argv[0] */
    const char *verb;   /* argv[1], or NULL for one-word commands */
    size_t positionals;
    struct option_spec options[CLI_MAX_OPTIONS];
    int (*run)(const struct cli *cli, const struct args *args);
    const char *usage;
};

/* `store ...` runs here, on the databases themselves, not through the
 * admin API (the controllers are stopped for it). */
static bool
runs_locally(const struct command *command)
{
    return strcmp(command->group, "store") == 0;
}

/* ---- output --------------------------------------------------------------- */

enum field_kind { F_PLAIN, F_TIME, F_LIST };

struct field {
    const char *key;    /* in the JSON object */
    const char *label;  /* printed; NULL = key */
    enum field_kind kind;
};

/* Quotes a value only when a shell reader would need it to: spaces, quotes,
 * '=', control characters, or nothing at all. */
static void
print_value(const char *text)
{
    bool plain = text[0] != '\0';
    for (const char *p = text; *p != '\0' && plain; p++)
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p) || *p == '"' ||
            *p == '\\' || *p == '=')
            plain = false;
    if (plain) {
        fputs(text, stdout);
        return;
    }
    putchar('"');
    for (const char *p = text; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", stdout);
        else if (iscntrl((unsigned char)*p))
            printf("\\x%02x", (unsigned char)*p);
        else
            putchar(*p);
    }
    putchar('"');
}

/* Unix seconds as RFC 3339 UTC; 0 (never seen, no retire time) as "-". */
static bool
all_digits(const char *text)
{
    if (text[0] == '\0' || strlen(text) > 18)
        return false;
    for (const char *p = text; *p != '\0'; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    return true;
}

static void
print_time(json_int_t seconds)
{
    if (seconds == 0) {
        fputs("-", stdout);
        return;
    }
    time_t t = (time_t)seconds;
    struct tm tm;
    char text[32];
    if (gmtime_r(&t, &tm) == NULL || strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        printf("%lld", (long long)seconds);
    else
        fputs(text, stdout);
}

static void
print_json_value(const json_t *value, enum field_kind kind)
{
    if (kind == F_TIME && json_is_integer(value)) {
        print_time(json_integer_value(value));
    } else if (json_is_string(value)) {
        print_value(json_string_value(value));
    } else if (json_is_integer(value)) {
        printf("%lld", (long long)json_integer_value(value));
    } else if (json_is_boolean(value)) {
        fputs(json_is_true(value) ? "true" : "false", stdout);
    } else if (kind == F_LIST && json_is_array(value)) {
        /* Addresses and the like: comma-joined, which needs no quoting. */
        size_t i;
        const json_t *item;
        if (json_array_size(value) == 0)
            fputs("-", stdout);
        json_array_foreach(value, i, item) {
            if (i > 0)
                putchar(',');
            print_value(json_is_string(item) ? json_string_value(item) : "?");
        }
    } else if (value == NULL || json_is_null(value)) {
        fputs("-", stdout);
    } else {
        char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        print_value(text != NULL ? text : "?");
        free(text);
    }
}

static void
print_item(const json_t *item, const struct field *fields)
{
    for (size_t i = 0; fields[i].key != NULL; i++) {
        if (i > 0)
            putchar(' ');
        printf("%s=", fields[i].label != NULL ? fields[i].label : fields[i].key);
        print_json_value(json_object_get(item, fields[i].key), fields[i].kind);
    }
    putchar('\n');
}

static void
print_list(const json_t *reply, const char *key, const struct field *fields)
{
    size_t i;
    const json_t *item;
    json_array_foreach(json_object_get(reply, key), i, item)
        print_item(item, fields);
}

/* ---- requests ------------------------------------------------------------- */

/* Percent-encodes text for a path segment or a query value (RFC 3986
 * unreserved characters pass as they are). */
static int
url_append_encoded(char *url, size_t cap, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t used = strlen(url);
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        bool plain = isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~';
        if (used + (plain ? 1 : 3) >= cap)
            return -1;
        if (plain) {
            url[used++] = (char)*p;
        } else {
            url[used++] = '%';
            url[used++] = hex[*p >> 4];
            url[used++] = hex[*p & 15];
        }
    }
    url[used] = '\0';
    return 0;
}

static int
url_append(char *url, size_t cap, const char *text)
{
    size_t used = strlen(url);
    if (used + strlen(text) >= cap)
        return -1;
    memcpy(url + used, text, strlen(text) + 1);
    return 0;
}

/* Appends "?name=value" (then "&name=value") with value encoded. */
static int
url_append_query(char *url, size_t cap, char *sep, const char *name, const char *value)
{
    char part[48];
    snprintf(part, sizeof(part), "%c%s=", *sep, name);
    *sep = '&';
    if (url_append(url, cap, part) != 0 || url_append_encoded(url, cap, value) != 0) {
        fprintf(stderr, "error: request URL longer than %zu bytes\n", cap - 1);
        return -1;
    }
    return 0;
}

/* Builds base + path_prefix [+ encoded segment] [+ path_suffix]. */
static int
build_url(const struct cli *cli, char *url, size_t cap, const char *path_prefix,
          const char *segment, const char *path_suffix)
{
    url[0] = '\0';
    if (url_append(url, cap, cli->base) != 0 || url_append(url, cap, path_prefix) != 0 ||
        (segment != NULL && url_append_encoded(url, cap, segment) != 0) ||
        (path_suffix != NULL && url_append(url, cap, path_suffix) != 0)) {
        fprintf(stderr, "error: request URL longer than %d bytes\n", CLI_URL_MAX);
        return -1;
    }
    return 0;
}

/* What to do about a failed connection, where the reason alone does not say. */
static void
explain_transport_error(const struct cli *cli, const struct ztr_err *err)
{
    /* The reason above says which: the chain, or the host name. */
    if (err->code == HTTP_CLIENT_E_UNTRUSTED)
        fprintf(stderr, "hint: the admin API's certificate does not verify against %s%s%s "
                "(it is never accepted unverified): point ADMIN_CA or --ca at a copy of the "
                "controller's STATE_DIR/" ADMIN_TLS_CA_FILE ", and connect by a name or "
                "address it carries (the controller's ADMIN_TLS_NAMES)\n",
                cli->ca_file[0] != '\0' ? cli->ca_file : "the system's trust store",
                cli->ca_file[0] != '\0' ? ", from " : "",
                cli->ca_file[0] != '\0' ? cli->ca_origin : "");
    else if (err->code == HTTP_CLIENT_E_NO_REPLY && !cli->https)
        fprintf(stderr, "hint: no HTTP answer; a controller with ADMIN_TLS=true answers only "
                "https:// (ADMIN_URL=https://...)\n");
    else if (err->code == HTTP_CLIENT_E_TLS && cli->https)
        fprintf(stderr, "hint: no TLS 1.3 session; a controller without ADMIN_TLS=true "
                "answers only http:// on loopback\n");
}

/* No answer at all is EXIT_UNREACHABLE; the client's own limits (memory, an
 * oversized reply, a bad URL) are plain failures. */
static int
transport_exit(const struct ztr_err *err)
{
    switch (err->code) {
    case ZTR_E_IO:
    case HTTP_CLIENT_E_UNTRUSTED:
    case HTTP_CLIENT_E_NO_REPLY:
    case HTTP_CLIENT_E_TLS:
        return EXIT_UNREACHABLE;
    default:
        return EXIT_FAILED;
    }
}

/* --json: the API's reply as it came, keys sorted so the text is stable,
 * one line for jq or a log. */
static int
print_json_reply(const json_t *reply)
{
    char *text = json_dumps(reply, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL) {
        fputs("error: out of memory\n", stderr);
        return EXIT_FAILED;
    }
    printf("%s\n", text);
    free(text);
    return EXIT_OK;
}

/*
 * One request. Takes ownership of body (may be NULL). On a 2xx answer
 * *reply holds the parsed JSON object and EXIT_OK is returned; otherwise
 * the reason is on stderr and EXIT_FAILED is returned.
 */
static int
call_api(const struct cli *cli, const char *method, const char *url, json_t *body,
         json_t **reply)
{
    *reply = NULL;
    char *body_text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    long status = 0;
    char *text = NULL;
    struct ztr_err err = {0};
    int rc = http_client_request_ca(method, url, cli->ca_file[0] != '\0' ? cli->ca_file : NULL,
                                    cli->token, body_text, CLI_TIMEOUT_MS, &status, &text, &err);
    free(body_text);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        explain_transport_error(cli, &err);
        return transport_exit(&err);
    }
    json_t *parsed = text != NULL && text[0] != '\0' ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (status < 200 || status > 299) {
        const char *message = json_string_value(json_object_get(parsed, "error"));
        if (message != NULL)
            fprintf(stderr, "error: %s\n", message);
        else
            fprintf(stderr, "error: the admin API answered HTTP %ld\n", status);
        json_decref(parsed);
        return status == 401 || status == 403 ? EXIT_AUTH : EXIT_FAILED;
    }
    if (!json_is_object(parsed)) {
        fprintf(stderr, "error: the admin API answered HTTP %ld without a JSON object\n",
                status);
        json_decref(parsed);
        return EXIT_FAILED;
    }
    *reply = parsed;
    return EXIT_OK;
}

static const char *
arg_value(const struct args *args, const char *name)
{
    for (size_t i = 0; args->specs[i].name != NULL; i++)
        if (strcmp(args->specs[i].name, name) == 0)
            return args->seen[i] ? args->values[i] : NULL;
    return NULL;
}

static bool
arg_flag(const struct args *args, const char *name)
{
    for (size_t i = 0; args->specs[i].name != NULL; i++)
        if (strcmp(args->specs[i].name, name) == 0)
            return args->seen[i];
    return false;
}

/* GET url; print the list under key, or with --json the whole reply. */
static int
get_list(const struct cli *cli, const struct args *args, const char *url, const char *key,
         const struct field *fields)
{
    json_t *reply;
    int rc = call_api(cli, "GET", url, NULL, &reply);
    if (rc == EXIT_OK && arg_flag(args, "json"))
        rc = print_json_reply(reply);
    else if (rc == EXIT_OK)
        print_list(reply, key, fields);
    json_decref(reply);
    return rc;
}

static int
list_command(const struct cli *cli, const struct args *args, const char *path, const char *key,
             const struct field *fields)
{
    char url[CLI_URL_MAX];
    if (build_url(cli, url, sizeof(url), path, NULL, NULL) != 0)
        return EXIT_FAILED;
    return get_list(cli, args, url, key, fields);
}

static const char *
reply_string(const json_t *reply, const char *key)
{
    const char *value = json_string_value(json_object_get(reply, key));
    return value != NULL ? value : "?";
}

static long long
reply_int(const json_t *reply, const char *key)
{
    return (long long)json_integer_value(json_object_get(reply, key));
}

/* ---- tokens --------------------------------------------------------------- */

static const struct field token_fields[] = {
    {"id", NULL, F_PLAIN},          {"role", NULL, F_PLAIN},
    {"name", NULL, F_PLAIN},        {"name_is_prefix", "prefix", F_PLAIN},
    {"uses_left", NULL, F_PLAIN},   {"expires_at", NULL, F_TIME},
    {"expired", NULL, F_PLAIN},     {"created_at", NULL, F_TIME},
    {"replace", NULL, F_PLAIN},     {"addresses", NULL, F_LIST},
    {NULL, NULL, F_PLAIN},
};

/* How a new token is printed. */
enum token_output {
    TOKEN_BARE, /* the token alone: ENROLLMENT_TOKEN=$(controller token create ...) */
    TOKEN_ENV,  /* ENROLLMENT_TOKEN=<token>, a line for a systemd EnvironmentFile */
    TOKEN_JSON, /* the API's reply: the token with its id, expiry and limits */
};

/* POSTs body to path and prints the token (output says how), so that
 * ENROLLMENT_TOKEN=$(controller token create ...) and
 * TOKEN=$(controller federation propose ...) work; it is shown once. */
static int
token_command(const struct cli *cli, const char *path, json_t *body, enum token_output output)
{
    char url[CLI_URL_MAX];
    json_t *reply;
    if (build_url(cli, url, sizeof(url), path, NULL, NULL) != 0) {
        json_decref(body);
        return EXIT_FAILED;
    }
    int rc = call_api(cli, "POST", url, body, &reply);
    if (rc == EXIT_OK) {
        const char *token = json_string_value(json_object_get(reply, "token"));
        if (token == NULL) {
            fprintf(stderr, "error: the admin API answered without a token\n");
            rc = EXIT_FAILED;
        } else if (output == TOKEN_JSON) {
            rc = print_json_reply(reply);
        } else {
            printf("%s%s\n", output == TOKEN_ENV ? "ENROLLMENT_TOKEN=" : "", token);
        }
    }
    json_decref(reply);
    return rc;
}

static int
cmd_token_create(const struct cli *cli, const struct args *args)
{
    json_t *body = json_pack("{s:s, s:s, s:b}", "role", arg_value(args, "role"), "name",
                             arg_value(args, "name"), "name_prefix", arg_flag(args, "prefix"));
    /* Sent only when asked for: a controller without the field keeps
     * refusing unknown fields rather than silently ignoring it. */
    if (arg_flag(args, "replace"))
        json_object_set_new(body, "replace", json_true());
    if (args->many_count > 0) {
        json_t *addresses = json_array();
        for (size_t i = 0; i < args->many_count; i++)
            json_array_append_new(addresses, json_string(args->many[i]));
        json_object_set_new(body, "addresses", addresses);
    }
    const char *uses = arg_value(args, "uses");
    if (uses != NULL)
        json_object_set_new(body, "uses", json_integer(strtoll(uses, NULL, 10)));
    const char *ttl = arg_value(args, "ttl");
    if (ttl != NULL)
        json_object_set_new(body, "ttl", json_string(ttl));
    enum token_output output = arg_flag(args, "env")    ? TOKEN_ENV
                               : arg_flag(args, "json") ? TOKEN_JSON
                                                        : TOKEN_BARE;
    return token_command(cli, "/api/admin/tokens", body, output);
}

static int
cmd_token_list(const struct cli *cli, const struct args *args)
{
    return list_command(cli, args, "/api/admin/tokens", "tokens", token_fields);
}

/* DELETE prefix/<segment> and print "<what> deleted <label>=<segment>". */
static int
delete_command(const struct cli *cli, const char *path_prefix, const char *segment,
               const char *what, const char *label)
{
    char url[CLI_URL_MAX];
    json_t *reply;
    if (build_url(cli, url, sizeof(url), path_prefix, segment, NULL) != 0)
        return EXIT_FAILED;
    int rc = call_api(cli, "DELETE", url, NULL, &reply);
    if (rc == EXIT_OK) {
        printf("%s deleted %s=", what, label);
        print_value(segment);
        putchar('\n');
    }
    json_decref(reply);
    return rc;
}

static int
cmd_token_delete(const struct cli *cli, const struct args *args)
{
    return delete_command(cli, "/api/admin/tokens/", args->pos[0], "token", "id");
}

/* ---- controllers sharing the store ----------------------------------------------- */

static const struct field controller_fields[] = {
    {"id", NULL, F_PLAIN},
    {"address", NULL, F_PLAIN},
    {"alive", NULL, F_PLAIN},
    {"self", NULL, F_PLAIN},
    {"nodes_online", NULL, F_PLAIN},
    {"started_at", NULL, F_TIME},
    {"last_seen", NULL, F_TIME},
    {NULL, NULL, F_PLAIN},
};

static const struct field change_fields[] = {
    {"id", NULL, F_PLAIN},
    {"connectors", NULL, F_PLAIN},
    {"applied", NULL, F_PLAIN},
    {"complete", NULL, F_PLAIN},
    {"apply_ms", NULL, F_PLAIN},
    {"close_ms", NULL, F_PLAIN},
    {"sessions_closed", NULL, F_PLAIN},
    {"pushed_at_ms", NULL, F_PLAIN},
    {NULL, NULL, F_PLAIN},
};

static int
cmd_changes(const struct cli *cli, const struct args *args)
{
    const char *limit = arg_value(args, "limit");
    if (limit != NULL && (limit[0] == '\0' || strlen(limit) > 6 ||
                          strspn(limit, "0123456789") != strlen(limit))) {
        fprintf(stderr, "error: --limit must be a number of changes (1..%d)\n", CHANGES_MAX);
        return EXIT_USAGE;
    }
    char path[64];
    snprintf(path, sizeof(path), "/api/admin/changes?limit=%s", limit != NULL ? limit : "20");
    return list_command(cli, args, path, "changes", change_fields);
}

static int
cmd_controllers(const struct cli *cli, const struct args *args)
{
    return list_command(cli, args, "/api/admin/controllers", "controllers", controller_fields);
}

/* ---- nodes ---------------------------------------------------------------- */

static const struct field node_fields[] = {
    {"id", NULL, F_PLAIN},
    {"name", NULL, F_PLAIN},
    {"role", NULL, F_PLAIN},
    {"status", NULL, F_PLAIN},
    {"revoked", NULL, F_PLAIN},
    {"last_seen", NULL, F_TIME},
    {"cert_not_after", NULL, F_TIME},
    {"renewal_overdue", NULL, F_PLAIN},
    {"addresses", NULL, F_LIST},
    /* No label but the first ends in "id=": scripts cut the node id out
     * with a greedy sed on "id=", which must not land on this one. */
    {"spiffe_id", "spiffe", F_PLAIN},
    {NULL, NULL, F_PLAIN},
};

static int
cmd_node_list(const struct cli *cli, const struct args *args)
{
    return list_command(cli, args, "/api/admin/nodes", "nodes", node_fields);
}

static int
cmd_node_revoke(const struct cli *cli, const struct args *args)
{
    const char *reason = arg_value(args, "reason");
    json_t *body = reason != NULL ? json_pack("{s:s}", "reason", reason) : json_object();
    char url[CLI_URL_MAX];
    json_t *reply;
    if (build_url(cli, url, sizeof(url), "/api/admin/nodes/", args->pos[0], "/revoke") != 0) {
        json_decref(body);
        return EXIT_FAILED;
    }
    int rc = call_api(cli, "POST", url, body, &reply);
    if (rc == EXIT_OK) {
        static const struct field fields[] = {
            {"id", NULL, F_PLAIN}, {"name", NULL, F_PLAIN}, {"role", NULL, F_PLAIN},
            {"reason", NULL, F_PLAIN}, {NULL, NULL, F_PLAIN}};
        fputs("node revoked ", stdout);
        print_item(reply, fields);
    }
    json_decref(reply);
    return rc;
}

/* node drain NAME [--deadline D] / node undrain NAME: the admin API's
 * answer, and a warning for resources no other connector serves. */
static int
drain_command(const struct cli *cli, const struct args *args, const char *verb)
{
    const char *deadline = arg_value(args, "deadline");
    json_t *body = deadline != NULL ? json_pack("{s:s}", "deadline", deadline) : json_object();
    char url[CLI_URL_MAX];
    char suffix[16];
    snprintf(suffix, sizeof(suffix), "/%s", verb);
    json_t *reply;
    if (build_url(cli, url, sizeof(url), "/api/admin/nodes/", args->pos[0], suffix) != 0) {
        json_decref(body);
        return EXIT_FAILED;
    }
    int rc = call_api(cli, "POST", url, body, &reply);
    if (rc == EXIT_OK) {
        static const struct field fields[] = {
            {"id", NULL, F_PLAIN}, {"name", NULL, F_PLAIN}, {"state", NULL, F_PLAIN},
            {"deadline", NULL, F_TIME}, {NULL, NULL, F_PLAIN}};
        printf("node %s ", strcmp(verb, "drain") == 0 ? "draining" : "undrained");
        print_item(reply, fields);
        json_t *sole = json_object_get(reply, "sole_connector_for");
        size_t i;
        json_t *r;
        json_array_foreach(sole, i, r)
            fprintf(stderr,
                    "warning: no other connector serves resource %s: its new streams are "
                    "refused until the connector is undrained\n",
                    json_string_value(r));
    }
    json_decref(reply);
    return rc;
}

static int
cmd_node_drain(const struct cli *cli, const struct args *args)
{
    return drain_command(cli, args, "drain");
}

static int
cmd_node_undrain(const struct cli *cli, const struct args *args)
{
    return drain_command(cli, args, "undrain");
}

/* Replaces the node's allowed addresses with every --address given. */
static int
cmd_node_set_addresses(const struct cli *cli, const struct args *args)
{
    json_t *list = json_array();
    for (size_t i = 0; i < args->many_count; i++)
        json_array_append_new(list, json_string(args->many[i]));
    json_t *body = json_pack("{s:o}", "addresses", list);
    char url[CLI_URL_MAX];
    json_t *reply;
    if (build_url(cli, url, sizeof(url), "/api/admin/nodes/", args->pos[0], "/addresses") != 0) {
        json_decref(body);
        return EXIT_FAILED;
    }
    int rc = call_api(cli, "POST", url, body, &reply);
    if (rc == EXIT_OK) {
        static const struct field fields[] = {{"id", NULL, F_PLAIN},
                                              {"name", NULL, F_PLAIN},
                                              {"allowed_addresses", "addresses", F_LIST},
                                              {NULL, NULL, F_PLAIN}};
        fputs("node addresses set ", stdout);
        print_item(reply, fields);
    }
    json_decref(reply);
    return rc;
}

/* ---- the fleet view ------------------------------------------------------- */

static const struct field fleet_node_fields[] = {
    {"id", NULL, F_PLAIN},
    {"name", NULL, F_PLAIN},
    {"role", NULL, F_PLAIN},
    {"state", NULL, F_PLAIN},
    {"flags", NULL, F_LIST},
    {"expires_in_s", NULL, F_PLAIN},
    {"cert_not_after", "not_after", F_TIME},
    {"renew_at", NULL, F_TIME},
    {"last_renewed_at", "last_renewal", F_TIME},
    {"last_seen", NULL, F_TIME},
    {"reconnects_5m", NULL, F_PLAIN},
    {NULL, NULL, F_PLAIN},
};

/* The runbook's counters whose 5-minute deltas a node line ends with. */
static const char *const fleet_delta_names[] = {
    "telemetry.reconnect.scheduled", "telemetry.reconnect.failed", "telemetry.auth.expired",
    "telemetry.auth.revoked",        "telemetry.auth.unavailable", "renewals.failed",
};

static void
print_fleet_deltas(const json_t *node)
{
    const json_t *deltas = json_object_get(node, "deltas_5m");
    for (size_t i = 0; i < sizeof(fleet_delta_names) / sizeof(fleet_delta_names[0]); i++) {
        const char *name = fleet_delta_names[i];
        const char *short_name = strncmp(name, "telemetry.", 10) == 0 ? name + 10 : name;
        printf(" %s_5m=", short_name);
        print_json_value(json_object_get(deltas, name), F_PLAIN);
    }
}

static int
cmd_fleet(const struct cli *cli, const struct args *args)
{
    char url[CLI_URL_MAX];
    if (build_url(cli, url, sizeof(url), "/api/admin/fleet", NULL, NULL) != 0)
        return EXIT_FAILED;
    /* Flags become query flags; values go encoded. */
    static const char *const flags[][2] = {{"missed-renewal", "missed_renewal"},
                                           {"expired", "expired"},
                                           {"flapping", "flapping"}};
    char sep = '?';
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        if (!arg_flag(args, flags[i][0]))
            continue;
        char part[40];
        snprintf(part, sizeof(part), "%c%s=1", sep, flags[i][1]);
        sep = '&';
        if (url_append(url, sizeof(url), part) != 0)
            return EXIT_FAILED;
    }
    static const char *const values[][2] = {{"expiring-within", "expiring_within"},
                                            {"state", "state"}};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        const char *value = arg_value(args, values[i][0]);
        if (value != NULL && url_append_query(url, sizeof(url), &sep, values[i][1], value) != 0)
            return EXIT_FAILED;
    }
    json_t *reply;
    int rc = call_api(cli, "GET", url, NULL, &reply);
    if (rc != EXIT_OK)
        return rc;
    if (arg_flag(args, "json")) {
        rc = print_json_reply(reply);
        json_decref(reply);
        return rc;
    }
    const json_t *counts = json_object_get(reply, "counts");
    printf("fleet ONLINE=%lld OFFLINE=%lld EXPIRED=%lld REVOKED=%lld renewal_missed=%lld "
           "flapping=%lld window_s=%lld\n",
           reply_int(counts, "ONLINE"), reply_int(counts, "OFFLINE"),
           reply_int(counts, "EXPIRED"), reply_int(counts, "REVOKED"),
           reply_int(reply, "renewal_missed"), reply_int(reply, "flapping"),
           reply_int(reply, "window_s"));
    static const struct field escalation_fields[] = {{"failure", NULL, F_PLAIN},
                                                     {"nodes", NULL, F_PLAIN},
                                                     {"names", NULL, F_LIST},
                                                     {"logged_at", NULL, F_TIME},
                                                     {NULL, NULL, F_PLAIN}};
    size_t i;
    const json_t *item;
    json_array_foreach(json_object_get(reply, "escalations"), i, item) {
        fputs("escalate ", stdout);
        print_item(item, escalation_fields);
    }
    json_array_foreach(json_object_get(reply, "nodes"), i, item) {
        /* One line per node: its fields, then its deltas. */
        for (size_t k = 0; fleet_node_fields[k].key != NULL; k++) {
            if (k > 0)
                putchar(' ');
            printf("%s=", fleet_node_fields[k].label != NULL ? fleet_node_fields[k].label
                                                             : fleet_node_fields[k].key);
            print_json_value(json_object_get(item, fleet_node_fields[k].key),
                             fleet_node_fields[k].kind);
        }
        print_fleet_deltas(item);
        putchar('\n');
    }
    json_decref(reply);
    return EXIT_OK;
}

/* ---- resources ------------------------------------------------------------ */

static const struct field resource_fields[] = {
    {"name", NULL, F_PLAIN},
    {"description", NULL, F_PLAIN},
    {"created_at", NULL, F_TIME},
    {"connectors", NULL, F_LIST},
    {NULL, NULL, F_PLAIN},
};

static int
cmd_resource_add(const struct cli *cli, const struct args *args)
{
    const char *description = arg_value(args, "description");
    json_t *body = json_pack("{s:s, s:s}", "name", args->pos[0], "description",
                             description != NULL ? description : "");
    if (args->many_count > 0) {
        json_t *connectors = json_array();
        for (size_t i = 0; i < args->many_count; i++)
            json_array_append_new(connectors, json_string(args->many[i]));
        json_object_set_new(body, "connectors", connectors);
    }
    char url[CLI_URL_MAX];
    json_t *reply;
    if (build_url(cli, url, sizeof(url), "/api/admin/resources", NULL, NULL) != 0) {
        json_decref(body);
        return EXIT_FAILED;
    }
    int rc = call_api(cli, "POST", url, body, &reply);
    if (rc == EXIT_OK) {
        fputs("resource added name=", stdout);
        print_value(reply_string(reply, "name"));
        putchar('\n');
    }
    json_decref(reply);
    return rc;
}

static int
cmd_resource_list(const struct cli *cli, const struct args *args)
{
    return list_command(cli, args, "/api/admin/resources", "resources", resource_fields);
}

static int
cmd_resource_delete(const struct cli *cli, const struct args *args)
{
    return delete_command(cli, "/api/admin/resources/", args->pos[0], "resource", "name");
}

/* bind: POST with a body. unbind: DELETE with the connector in the query
 * string, as deny does. Each --connector is one request. */
static int
binding_command(const struct cli *cli, const struct args *args, bool bind)
{
    for (size_t i = 0; i < args->many_count; i++) {
        const char *connector = args->many[i];
        char url[CLI_URL_MAX];
        json_t *body = NULL;
        if (build_url(cli, url, sizeof(url), "/api/admin/resources/", args->pos[0],
                      "/connectors") != 0)
            return EXIT_FAILED;
        if (bind) {
            body = json_pack("{s:s}", "connector", connector);
        } else if (url_append(url, sizeof(url), "?connector=") != 0 ||
                   url_append_encoded(url, sizeof(url), connector) != 0) {
            fprintf(stderr, "error: request URL longer than %d bytes\n", CLI_URL_MAX);
            return EXIT_FAILED;
        }
        json_t *reply;
        int rc = call_api(cli, bind ? "POST" : "DELETE", url, body, &reply);
        if (rc == EXIT_OK) {
            fputs(bind ? "resource bound name=" : "resource unbound name=", stdout);
            print_value(reply_string(reply, "name"));
            fputs(" connector=", stdout);
            print_value(reply_string(reply, "connector"));
            putchar('\n');
        }
        json_decref(reply);
        if (rc != EXIT_OK)
            return rc;
    }
    return EXIT_OK;
}

static int
cmd_resource_bind(const struct cli *cli, const struct args *args)
{
    return binding_command(cli, args, true);
}

static int
cmd_resource_unbind(const struct cli *cli, const struct args *args)
{
    return binding_command(cli, args, false);
}

/* ---- allowlist ------------------------------------------------------------ */

static const struct field grant_fields[] = {
    {"tunneler", NULL, F_PLAIN},
    {"resource", NULL, F_PLAIN},
    {"created_at", NULL, F_TIME},
    {NULL, NULL, F_PLAIN},
};

/* allow: POST with a body. deny: DELETE with the grant in the query string,
 * which every HTTP client and proxy passes along (a DELETE body is not
 * guaranteed to be). */
static int
grant_command(const struct cli *cli, const struct args *args, bool allow)
{
    const char *tunneler = arg_value(args, "tunneler");
    const char *resource = arg_value(args, "resource");
    char url[CLI_URL_MAX];
    json_t *body = NULL;
    if (build_url(cli, url, sizeof(url), "/api/admin/allowlist", NULL, NULL) != 0)
        return EXIT_FAILED;
    if (allow) {
        body = json_pack("{s:s, s:s}", "tunneler", tunneler, "resource", resource);
    } else if (url_append(url, sizeof(url), "?tunneler=") != 0 ||
               url_append_encoded(url, sizeof(url), tunneler) != 0 ||
               url_append(url, sizeof(url), "&resource=") != 0 ||
               url_append_encoded(url, sizeof(url), resource) != 0) {
        fprintf(stderr, "error: request URL longer than %d bytes\n", CLI_URL_MAX);
        return EXIT_FAILED;
    }
    json_t *reply;
    int rc = call_api(cli, allow ? "POST" : "DELETE", url, body, &reply);
    if (rc == EXIT_OK) {
        fputs(allow ? "allowed tunneler=" : "denied tunneler=", stdout);
        print_value(reply_string(reply, "tunneler"));
        fputs(" resource=", stdout);
        print_value(reply_string(reply, "resource"));
        printf(" version=%lld\n", reply_int(reply, "version"));
    }
    json_decref(reply);
    return rc;
}

static int
cmd_allow(const struct cli *cli, const struct args *args)
{
    return grant_command(cli, args, true);
}

static int
cmd_deny(const struct cli *cli, const struct args *args)
{
    return grant_command(cli, args, false);
}

static int
cmd_allowlist(const struct cli *cli, const struct args *args)
{
    char url[CLI_URL_MAX];
    json_t *reply;
    if (build_url(cli, url, sizeof(url), "/api/admin/allowlist", NULL, NULL) != 0)
        return EXIT_FAILED;
    int rc = call_api(cli, "GET", url, NULL, &reply);
    if (rc == EXIT_OK && arg_flag(args, "json")) {
        rc = print_json_reply(reply);
    } else if (rc == EXIT_OK) {
        printf("version=%lld\n", reply_int(reply, "version"));
        print_list(reply, "grants", grant_fields);
    }
    json_decref(reply);
    return rc;
}

/* ---- explain -------------------------------------------------------------- */

/* One line per step, then the verdict: `step=grant ok=false detail="..."`. */
static int
cmd_explain(const struct cli *cli, const struct args *args)
{
    char url[CLI_URL_MAX];
    char sep = '?';
    const char *connector = arg_value(args, "connector");
    if (build_url(cli, url, sizeof(url), "/api/admin/explain", NULL, NULL) != 0 ||
        url_append_query(url, sizeof(url), &sep, "tunneler", arg_value(args, "tunneler")) != 0 ||
        url_append_query(url, sizeof(url), &sep, "resource", arg_value(args, "resource")) != 0 ||
        (connector != NULL &&
         url_append_query(url, sizeof(url), &sep, "connector", connector) != 0))
        return EXIT_FAILED;
    json_t *reply;
    int rc = call_api(cli, "GET", url, NULL, &reply);
    if (rc == EXIT_OK && arg_flag(args, "json")) {
        rc = print_json_reply(reply);
    } else if (rc == EXIT_OK) {
        size_t i;
        const json_t *step;
        json_array_foreach(json_object_get(reply, "steps"), i, step) {
            fputs("step=", stdout);
            print_value(reply_string(step, "step"));
            printf(" ok=%s detail=", json_is_true(json_object_get(step, "ok")) ? "true" : "false");
            print_value(reply_string(step, "detail"));
            putchar('\n');
        }
        const json_t *failure = json_object_get(reply, "first_failure");
        fputs("verdict=", stdout);
        print_value(reply_string(reply, "verdict"));
        if (json_is_object(failure)) {
            fputs(" first_failure=", stdout);
            print_value(reply_string(failure, "detail"));
        }
        putchar('\n');
    }
    json_decref(reply);
    return rc;
}

/* ---- CA ------------------------------------------------------------------- */

static const struct field ca_fields[] = {
    {"number", NULL, F_PLAIN},    {"fingerprint", NULL, F_PLAIN}, {"signer", NULL, F_PLAIN},
    {"not_after", NULL, F_TIME},  {"retire_at", NULL, F_TIME},    {NULL, NULL, F_PLAIN},
};

static int
cmd_ca_show(const struct cli *cli, const struct args *args)
{
    char url[CLI_URL_MAX];
    json_t *reply;
    if (build_url(cli, url, sizeof(url), "/api/admin/ca", NULL, NULL) != 0)
        return EXIT_FAILED;
    int rc = call_api(cli, "GET", url, NULL, &reply);
    if (rc == EXIT_OK && arg_flag(args, "json")) {
        rc = print_json_reply(reply);
    } else if (rc == EXIT_OK && arg_flag(args, "pem")) {
        /* The bundle alone, for CONTROLLER_CA files: ca show --pem > ca.pem */
        fputs(reply_string(reply, "bundle"), stdout);
    } else if (rc == EXIT_OK) {
        printf("version=%lld\n", reply_int(reply, "version"));
        print_list(reply, "cas", ca_fields);
    }
    json_decref(reply);
    return rc;
}

static int
cmd_ca_rotate(const struct cli *cli, const struct args *args)
{
    (void)args;
    char url[CLI_URL_MAX];
    json_t *reply;
    if (build_url(cli, url, sizeof(url), "/api/admin/ca/rotate", NULL, NULL) != 0)
        return EXIT_FAILED;
    int rc = call_api(cli, "POST", url, json_object(), &reply);
    if (rc == EXIT_OK)
        printf("ca rotated version=%lld\n", reply_int(reply, "version"));
    json_decref(reply);
    return rc;
}

/* ---- events --------------------------------------------------------------- */

static const struct field event_fields[] = {
    {"id", NULL, F_PLAIN},        {"at", NULL, F_TIME},     {"kind", NULL, F_PLAIN},
    {"node_id", "node", F_PLAIN}, {"detail", NULL, F_PLAIN}, {"source", NULL, F_PLAIN},
    {NULL, NULL, F_PLAIN},
};

static int
cmd_events(const struct cli *cli, const struct args *args)
{
    char url[CLI_URL_MAX];
    if (build_url(cli, url, sizeof(url), "/api/admin/events", NULL, NULL) != 0)
        return EXIT_FAILED;
    char sep = '?';
    static const char *const values[] = {"after", "limit", "node", "kind", "source",
                                         "since", "until"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        const char *value = arg_value(args, values[i]);
        if (value != NULL && url_append_query(url, sizeof(url), &sep, values[i], value) != 0)
            return EXIT_FAILED;
    }
    if (arg_flag(args, "newest") && url_append_query(url, sizeof(url), &sep, "order", "desc") != 0)
        return EXIT_FAILED;
    return get_list(cli, args, url, "events", event_fields);
}

/* ---- federation ----------------------------------------------------------- */

static const struct field peer_fields[] = {
    {"name", NULL, F_PLAIN},           {"trust_domain", NULL, F_PLAIN},
    {"state", NULL, F_PLAIN},          {"direction", NULL, F_PLAIN},
    {"url", NULL, F_PLAIN},            {"last_heartbeat_age_s", "heartbeat_age_s", F_PLAIN},
    {"bundle_version", NULL, F_PLAIN}, {"token_pending", NULL, F_PLAIN},
    {"token_expires_at", NULL, F_TIME}, {"reason", NULL, F_PLAIN},
    {NULL, NULL, F_PLAIN},
};

static int
cmd_federation_list(const struct cli *cli, const struct args *args)
{
    return list_command(cli, args, "/api/admin/federation/peers", "peers", peer_fields);
}

static int
cmd_federation_propose(const struct cli *cli, const struct args *args)
{
    json_t *body = json_pack("{s:s}", "name", arg_value(args, "name"));
    if (arg_value(args, "url") != NULL)
        json_object_set_new(body, "url", json_string(arg_value(args, "url")));
    if (arg_value(args, "ttl") != NULL)
        json_object_set_new(body, "ttl", json_string(arg_value(args, "ttl")));
    return token_command(cli, "/api/admin/federation/peers", body, TOKEN_BARE);
}

static int
cmd_federation_token(const struct cli *cli, const struct args *args)
{
    char path[CLI_PATH_MAX];
    json_t *body = json_object();
    if (arg_value(args, "ttl") != NULL)
        json_object_set_new(body, "ttl", json_string(arg_value(args, "ttl")));
    path[0] = '\0';
    strcat(path, "/api/admin/federation/peers/");
    if (url_append_encoded(path, sizeof(path), arg_value(args, "peer")) != 0 ||
        url_append(path, sizeof(path), "/token") != 0) {
        json_decref(body);
        return EXIT_FAILED;
    }
    return token_command(cli, path, body, TOKEN_BARE);
}

/* The acceptance token is a secret: never a flag. It comes from
 * --token-file (a path, "-" for stdin) or FEDERATION_TOKEN. */
static int
read_token(const struct args *args, char **token)
{
    *token = NULL;
    const char *path = arg_value(args, "token-file");
    size_t len = 0;
    if (path == NULL) {
        const char *env = getenv("FEDERATION_TOKEN");
        if (env == NULL || env[0] == '\0') {
            fprintf(stderr, "error: give the acceptance token with --token-file PATH (- for "
                            "stdin) or in FEDERATION_TOKEN; it is a secret and never a flag\n");
            return EXIT_USAGE;
        }
        *token = strdup(env);
        len = *token != NULL ? strlen(*token) : 0;
    } else if (strcmp(path, "-") == 0) {
        *token = calloc(1, CLI_TOKEN_MAX + 1);
        len = *token != NULL ? fread(*token, 1, CLI_TOKEN_MAX, stdin) : 0;
    } else {
        struct ztr_err err = {0};
        if (file_read_all(path, CLI_TOKEN_MAX, token, &len, &err) != 0) {
            fprintf(stderr, "error: %s\n", err.msg);
            return EXIT_FAILED;
        }
    }
    if (*token == NULL) {
        fprintf(stderr, "error: out of memory\n");
        return EXIT_FAILED;
    }
    (*token)[len] = '\0';
    /* A trailing newline (echo, a file) is not part of the token. */
    while (len > 0 && isspace((unsigned char)(*token)[len - 1]))
        (*token)[--len] = '\0';
    return EXIT_OK;
}

static int
cmd_federation_accept(const struct cli *cli, const struct args *args)
{
    char *token;
    int rc = read_token(args, &token);
    if (rc != EXIT_OK)
        return rc;
    json_t *body = json_pack("{s:s, s:s}", "url", arg_value(args, "url"), "token", token);
    explicit_bzero(token, strlen(token));
    free(token);
    if (arg_value(args, "name") != NULL)
        json_object_set_new(body, "name", json_string(arg_value(args, "name")));
    char url[CLI_URL_MAX];
    json_t *reply;
    if (build_url(cli, url, sizeof(url), "/api/admin/federation/accept", NULL, NULL) != 0) {
        json_decref(body);
        return EXIT_FAILED;
    }
    rc = call_api(cli, "POST", url, body, &reply);
    if (rc == EXIT_OK)
        printf("peer accepted name=%s trust_domain=%s state=%s\n", reply_string(reply, "name"),
               reply_string(reply, "trust_domain"), reply_string(reply, "state"));
    json_decref(reply);
    return rc;
}

static int
peer_action_command(const struct cli *cli, const struct args *args, const char *action)
{
    char path[CLI_PATH_MAX] = "/api/admin/federation/peers/";
    if (url_append_encoded(path, sizeof(path), args->pos[0]) != 0 ||
        url_append(path, sizeof(path), "/") != 0 || url_append(path, sizeof(path), action) != 0)
        return EXIT_FAILED;
    json_t *body = json_object();
    if (arg_value(args, "reason") != NULL)
        json_object_set_new(body, "reason", json_string(arg_value(args, "reason")));
    char url[CLI_URL_MAX];
    json_t *reply;
    if (build_url(cli, url, sizeof(url), path, NULL, NULL) != 0) {
        json_decref(body);
        return EXIT_FAILED;
    }
    int rc = call_api(cli, "POST", url, body, &reply);
    if (rc == EXIT_OK)
        printf("peer %s name=%s state=%s\n", action, reply_string(reply, "name"),
               reply_string(reply, "state"));
    json_decref(reply);
    return rc;
}

static int
cmd_federation_suspend(const struct cli *cli, const struct args *args)
{
    return peer_action_command(cli, args, "suspend");
}

static int
cmd_federation_resume(const struct cli *cli, const struct args *args)
{
    return peer_action_command(cli, args, "resume");
}

static int
cmd_federation_revoke(const struct cli *cli, const struct args *args)
{
    return peer_action_command(cli, args, "revoke");
}

static const struct field fed_grant_fields[] = {
    {"id", NULL, F_PLAIN},       {"peer", NULL, F_PLAIN},         {"resource", NULL, F_PLAIN},
    {"tunneler", NULL, F_PLAIN}, {"source_cidrs", NULL, F_LIST},  {"expires_at", NULL, F_TIME},
    {"state", NULL, F_PLAIN},    {NULL, NULL, F_PLAIN},
};

static int
cmd_federation_grants(const struct cli *cli, const struct args *args)
{
    char url[CLI_URL_MAX];
    char sep = '?';
    if (build_url(cli, url, sizeof(url), "/api/admin/federation/grants", NULL, NULL) != 0 ||
        (arg_value(args, "peer") != NULL &&
         url_append_query(url, sizeof(url), &sep, "peer", arg_value(args, "peer")) != 0))
        return EXIT_FAILED;
    return get_list(cli, args, url, "grants", fed_grant_fields);
}

static int
cmd_federation_grant(const struct cli *cli, const struct args *args)
{
    json_t *body = json_pack("{s:s, s:s, s:s}", "peer", arg_value(args, "peer"), "resource",
                             arg_value(args, "resource"), "tunneler", arg_value(args, "tunneler"));
    json_t *cidrs = json_array();
    for (size_t i = 0; i < args->many_count; i++)
        json_array_append_new(cidrs, json_string(args->many[i]));
    json_object_set_new(body, "source_cidrs", cidrs);
    /* --expires 2h (from now) or --expires 1767225600 (Unix seconds). */
    const char *expires = arg_value(args, "expires");
    if (expires != NULL && all_digits(expires))
        json_object_set_new(body, "expires_at", json_integer(strtoll(expires, NULL, 10)));
    else if (expires != NULL)
        json_object_set_new(body, "expires_in", json_string(expires));
    char url[CLI_URL_MAX];
    json_t *reply;
    if (build_url(cli, url, sizeof(url), "/api/admin/federation/grants", NULL, NULL) != 0) {
        json_decref(body);
        return EXIT_FAILED;
    }
    int rc = call_api(cli, "POST", url, body, &reply);
    if (rc == EXIT_OK)
        printf("grant added id=%s peer=%s resource=%s tunneler=%s expires_at=%lld\n",
               reply_string(reply, "id"), reply_string(reply, "peer"),
               reply_string(reply, "resource"), reply_string(reply, "tunneler"),
               (long long)json_integer_value(json_object_get(reply, "expires_at")));
    json_decref(reply);
    return rc;
}

static int
cmd_federation_revoke_grant(const struct cli *cli, const struct args *args)
{
    char path[CLI_PATH_MAX] = "/api/admin/federation/grants/";
    char url[CLI_URL_MAX];
    json_t *reply;
    if (url_append_encoded(path, sizeof(path), args->pos[0]) != 0 ||
        build_url(cli, url, sizeof(url), path, NULL, NULL) != 0)
        return EXIT_FAILED;
    int rc = call_api(cli, "DELETE", url, NULL, &reply);
    if (rc == EXIT_OK)
        printf("grant revoked id=%s resource=%s tunneler=%s\n", reply_string(reply, "id"),
               reply_string(reply, "resource"), reply_string(reply, "tunneler"));
    json_decref(reply);
    return rc;
}

/* ---- the store, locally ------------------------------------------------------ */

/* Copies a stopped controller's store (SQLite) into a new one (PostgreSQL,
 * for a cluster), then compares the row counts. */
static int
cmd_store_migrate(const struct cli *cli, const struct args *args)
{
    (void)cli;
    const char *from_url = arg_value(args, "from"), *to_url = arg_value(args, "to");
    struct store *from = NULL, *to = NULL;
    struct ztr_err err = {0};
    int rc = EXIT_FAILED;
    if (store_open(from_url, clock_system(), &from, &err) != 0 ||
        store_open(to_url, clock_system(), &to, &err) != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto out;
    }
    struct store_copy_counts counts;
    if (store_copy(from, to, &counts, &err) != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto out;
    }
    for (size_t i = 0; i < counts.tables; i++)
        printf("copied table=%s rows=%lld verified=true\n", counts.table[i],
               (long long)counts.rows[i]);
    rc = EXIT_OK;
out:
    store_close(from);
    store_close(to);
    return rc;
}

/* ---- the command table and argument parsing ------------------------------- */

static const struct command commands[] = {
    {"token", "create", 0,
     {{"role", true, true}, {"name", true, true}, {"uses", true, false}, {"ttl", true, false},
      {"prefix", false, false}, {"replace", false, false}, {"address", true, false},
      {"env", false, false}, {"json", false, false}},
     cmd_token_create,
     "token create --role connector|tunneler --name NAME [--uses N] [--ttl 24h] [--prefix] "
     "[--replace] [--address IP]... [--env|--json]"},
    {"token", "list", 0, {{"json", false, false}}, cmd_token_list, "token list [--json]"},
    {"token", "delete", 1, {{NULL, false, false}}, cmd_token_delete, "token delete ID"},
    {"node", "list", 0, {{"json", false, false}}, cmd_node_list, "node list [--json]"},
    {"controllers", NULL, 0, {{"json", false, false}}, cmd_controllers, "controllers [--json]"},
    {"changes", NULL, 0, {{"limit", true, false}, {"json", false, false}}, cmd_changes,
     "changes [--limit N] [--json]"},
    {"fleet", NULL, 0,
     {{"missed-renewal", false, false}, {"expiring-within", true, false},
      {"expired", false, false}, {"flapping", false, false}, {"state", true, false},
      {"json", false, false}},
     cmd_fleet,
     "fleet [--missed-renewal] [--expiring-within 1h] [--expired] [--flapping] "
     "[--state ONLINE|OFFLINE|EXPIRED|REVOKED] [--json]"},
    {"node", "revoke", 1, {{"reason", true, false}}, cmd_node_revoke,
     "node revoke ID [--reason TEXT]"},
    {"node", "drain", 1, {{"deadline", true, false}}, cmd_node_drain,
     "node drain ID|NAME [--deadline 10m]"},
    {"node", "undrain", 1, {{NULL, false, false}}, cmd_node_undrain, "node undrain ID|NAME"},
    {"node", "set-addresses", 1, {{"address", true, true}}, cmd_node_set_addresses,
     "node set-addresses ID --address IP..."},
    {"resource", "add", 1, {{"description", true, false}, {"connector", true, false}},
     cmd_resource_add, "resource add NAME [--description TEXT] [--connector NAME]..."},
    {"resource", "bind", 1, {{"connector", true, true}}, cmd_resource_bind,
     "resource bind NAME --connector NAME..."},
    {"resource", "unbind", 1, {{"connector", true, true}}, cmd_resource_unbind,
     "resource unbind NAME --connector NAME..."},
    {"resource", "list", 0, {{"json", false, false}}, cmd_resource_list,
     "resource list [--json]"},
    {"resource", "delete", 1, {{NULL, false, false}}, cmd_resource_delete,
     "resource delete NAME"},
    {"allow", NULL, 0, {{"tunneler", true, true}, {"resource", true, true}}, cmd_allow,
     "allow --tunneler NAME --resource NAME"},
    {"deny", NULL, 0, {{"tunneler", true, true}, {"resource", true, true}}, cmd_deny,
     "deny --tunneler NAME --resource NAME"},
    {"allowlist", NULL, 0, {{"json", false, false}}, cmd_allowlist, "allowlist [--json]"},
    {"explain", NULL, 0,
     {{"tunneler", true, true}, {"resource", true, true}, {"connector", true, false},
      {"json", false, false}},
     cmd_explain,
     "explain --tunneler NAME[@TRUST_DOMAIN] --resource NAME [--connector NAME] [--json]"},
    {"ca", "rotate", 0, {{NULL, false, false}}, cmd_ca_rotate, "ca rotate"},
    {"ca", "show", 0, {{"pem", false, false}, {"json", false, false}}, cmd_ca_show,
     "ca show [--pem|--json]"},
    {"events", NULL, 0,
     {{"after", true, false}, {"limit", true, false}, {"node", true, false},
      {"kind", true, false}, {"source", true, false}, {"since", true, false},
      {"until", true, false}, {"newest", false, false}, {"json", false, false}},
     cmd_events, "events [--after ID] [--limit N] [--node ID] [--kind KIND] [--source SOURCE] "
                 "[--since UNIX] [--until UNIX] [--newest] [--json]"},
    {"federation", "propose", 0, {{"name", true, true}, {"url", true, false}, {"ttl", true, false}},
     cmd_federation_propose, "federation propose --name NAME [--url HOST:PORT] [--ttl 7d]"},
    {"federation", "token", 0, {{"peer", true, true}, {"ttl", true, false}},
     cmd_federation_token, "federation token --peer NAME [--ttl 7d]"},
    {"federation", "accept", 0,
     {{"url", true, true}, {"token-file", true, false}, {"name", true, false}},
     cmd_federation_accept,
     "federation accept --url HOST:PORT [--token-file PATH|-] [--name NAME] "
     "(or the token in FEDERATION_TOKEN)"},
    {"federation", "list", 0, {{"json", false, false}}, cmd_federation_list,
     "federation list [--json]"},
    {"federation", "suspend", 1, {{"reason", true, false}}, cmd_federation_suspend,
     "federation suspend NAME [--reason TEXT]"},
    {"federation", "resume", 1, {{NULL, false, false}}, cmd_federation_resume,
     "federation resume NAME"},
    {"federation", "revoke", 1, {{NULL, false, false}}, cmd_federation_revoke,
     "federation revoke NAME"},
    {"federation", "grant", 0,
     {{"peer", true, true}, {"resource", true, true}, {"tunneler", true, true},
      {"source-cidr", true, false}, {"expires", true, false}},
     cmd_federation_grant,
     "federation grant --peer NAME --resource NAME --tunneler spiffe://TD/tunneler/NAME "
     "[--source-cidr CIDR]... [--expires 2h|UNIX]"},
    {"federation", "grants", 0, {{"peer", true, false}, {"json", false, false}},
     cmd_federation_grants, "federation grants [--peer NAME] [--json]"},
    {"federation", "revoke-grant", 1, {{NULL, false, false}}, cmd_federation_revoke_grant,
     "federation revoke-grant ID"},
    {"store", "migrate", 0, {{"from", true, true}, {"to", true, true}}, cmd_store_migrate,
     "store migrate --from sqlite:///var/lib/ztr-controller/controller.db "
     "--to postgres://USER@HOST:PORT/DB"},
};

#define COMMAND_COUNT (sizeof(commands) / sizeof(commands[0]))

static void
print_usage(FILE *out)
{
    fputs("usage: controller [serve] [--config FILE] [flags]   run the controller\n"
          "       controller --version\n", out);
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        fprintf(out, "       controller %s\n", commands[i].usage);
    fputs("environment: ADMIN_URL (default " CLI_DEFAULT_URL "), ADMIN_AUTH_TOKEN (required),\n"
          "             ADMIN_CA (https: the admin API's CA, PEM; default STATE_DIR/"
          ADMIN_TLS_CA_FILE " if readable, else the system's trust store)\n"
          "every command takes --ca FILE (as ADMIN_CA)\n"
          "exit status: 0 done, 1 the controller refused the request, 2 usage, 3 no answer\n"
          "             from the admin API, 4 ADMIN_AUTH_TOKEN refused\n",
          out);
}

static int usage_error(const struct command *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Says what is wrong and how the command is used; returns EXIT_USAGE. With
 * no command, every command's usage line. */
static int
usage_error(const struct command *command, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("controller: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (command != NULL)
        fprintf(stderr, "usage: controller %s\n", command->usage);
    else
        print_usage(stderr);
    return EXIT_USAGE;
}

static int
find_option(const struct command *command, const char *name, size_t name_len)
{
    for (size_t i = 0; i < CLI_MAX_OPTIONS && command->options[i].name != NULL; i++)
        if (strlen(command->options[i].name) == name_len &&
            strncmp(command->options[i].name, name, name_len) == 0)
            return (int)i;
    return -1;
}

/* Accepts `--opt value`, `--opt=value` and `--` before positionals that
 * start with '-'. Returns 0, or EXIT_USAGE after saying why. */
static int
parse_args(const struct command *command, int argc, char **argv, struct args *args)
{
    memset(args, 0, sizeof(*args));
    args->specs = command->options;
    bool options_done = false;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (args->pos_count >= command->positionals)
                return usage_error(command, "unexpected argument \"%s\"", arg);
            args->pos[args->pos_count++] = arg;
            continue;
        }
        const char *name = arg[1] == '-' ? arg + 2 : arg + 1;
        const char *eq = strchr(name, '=');
        int idx = find_option(command, name, eq != NULL ? (size_t)(eq - name) : strlen(name));
        if (idx < 0 || arg[1] != '-')
            return usage_error(command, "unknown option \"%s\"", arg);
        const struct option_spec *spec = &command->options[idx];
        if (!spec->takes_value && eq != NULL)
            return usage_error(command, "option \"--%s\" takes no value", spec->name);
        if (spec->takes_value && eq == NULL && i + 1 >= argc)
            return usage_error(command, "option \"--%s\" needs a value", spec->name);
        args->seen[idx] = true;
        if (spec->takes_value)
            args->values[idx] = eq != NULL ? eq + 1 : argv[++i];
        /* --connector, --address and --source-cidr are the options that may repeat. */
        if (strcmp(spec->name, "connector") == 0 || strcmp(spec->name, "address") == 0 ||
            strcmp(spec->name, "source-cidr") == 0) {
            if (args->many_count == CLI_MAX_REPEATS)
                return usage_error(command, "option \"--%s\" given more than %d times",
                                   spec->name, CLI_MAX_REPEATS);
            args->many[args->many_count++] = args->values[idx];
        }
    }
    if (args->pos_count < command->positionals)
        return usage_error(command, "missing argument");
    for (size_t i = 0; i < CLI_MAX_OPTIONS && command->options[i].name != NULL; i++)
        if (command->options[i].required && !args->seen[i])
            return usage_error(command, "option \"--%s\" is required", command->options[i].name);
    /* Two ways of printing the same reply: one must win, so neither does. */
    static const char *const exclusive[][2] = {{"json", "env"}, {"json", "pem"}};
    for (size_t i = 0; i < sizeof(exclusive) / sizeof(exclusive[0]); i++)
        if (arg_flag(args, exclusive[i][0]) && arg_flag(args, exclusive[i][1]))
            return usage_error(command, "options \"--%s\" and \"--%s\" exclude each other",
                               exclusive[i][0], exclusive[i][1]);
    /* Numbers are checked here so that a typo is a usage error, not a
     * confusing answer from the server. */
    static const char *const numeric[] = {"uses", "after", "limit", "since", "until"};
    for (size_t i = 0; i < sizeof(numeric) / sizeof(numeric[0]); i++) {
        const char *value = arg_value(args, numeric[i]);
        if (value != NULL && !all_digits(value))
            return usage_error(command, "option \"--%s\" needs a whole number", numeric[i]);
    }
    return 0;
}

static const struct command *
find_command(int argc, char **argv, int *used)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        const struct command *command = &commands[i];
        if (strcmp(command->group, argv[0]) != 0)
            continue;
        if (command->verb == NULL) {
            *used = 1;
            return command;
        }
        if (argc > 1 && strcmp(command->verb, argv[1]) == 0) {
            *used = 2;
            return command;
        }
    }
    return NULL;
}

/* `controller token` or `controller token frobnicate`: list what the group
 * offers rather than every command. */
static int
group_usage_error(int argc, char **argv)
{
    bool known = false;
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        known = known || strcmp(commands[i].group, argv[0]) == 0;
    if (!known)
        return usage_error(NULL, "unknown command \"%s\"", argv[0]);
    if (argc > 1)
        fprintf(stderr, "controller: unknown command \"%s %s\"\n", argv[0], argv[1]);
    else
        fprintf(stderr, "controller: \"%s\" needs a subcommand\n", argv[0]);
    const char *prefix = "usage:";
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        if (strcmp(commands[i].group, argv[0]) == 0) {
            fprintf(stderr, "%-6s controller %s\n", prefix, commands[i].usage);
            prefix = "";
        }
    }
    return EXIT_USAGE;
}

static bool
is_help(const char *arg)
{
    return strcmp(arg, "help") == 0 || strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* Takes `--ca FILE` / `--ca=FILE` (before any `--`) out of argv, so the
 * commands' own parsing never sees it. Returns 0, or EXIT_USAGE. */
static int
take_ca_option(int *argc, char **argv, const char **ca)
{
    *ca = NULL;
    int kept = 0;
    bool options_done = false;
    for (int i = 0; i < *argc; i++) {
        const char *arg = argv[i];
        options_done = options_done || strcmp(arg, "--") == 0;
        if (!options_done && (strcmp(arg, "--ca") == 0 || strncmp(arg, "--ca=", 5) == 0)) {
            if (arg[4] == '=') {
                *ca = arg + 5;
            } else if (i + 1 < *argc) {
                *ca = argv[++i];
            } else {
                fprintf(stderr, "controller: option \"--ca\" needs a value\n");
                return EXIT_USAGE;
            }
            continue;
        }
        argv[kept++] = argv[i];
    }
    *argc = kept;
    argv[kept] = NULL;
    if (*ca != NULL && (*ca)[0] == '\0') {
        fprintf(stderr, "controller: option \"--ca\" needs a value\n");
        return EXIT_USAGE;
    }
    return 0;
}

/* Which CAs an https ADMIN_URL is checked against: named ones must be
 * readable (a typo must not fall back to another trust store). */
static int
choose_ca(struct cli *cli, const char *ca_flag)
{
    const char *env = getenv("ADMIN_CA");
    const char *named = ca_flag != NULL ? ca_flag : env != NULL && env[0] != '\0' ? env : NULL;
    cli->ca_origin = ca_flag != NULL ? "--ca" : "ADMIN_CA";
    if (named != NULL) {
        if (access(named, R_OK) != 0) {
            char reason[128];
            fprintf(stderr, "controller: %s: cannot read %s: %s\n", cli->ca_origin, named,
                    file_strerror(errno, reason, sizeof(reason)));
            return EXIT_USAGE;
        }
        if (strlen(named) >= sizeof(cli->ca_file)) {
            fprintf(stderr, "controller: %s: path longer than %zu bytes\n", cli->ca_origin,
                    sizeof(cli->ca_file) - 1);
            return EXIT_USAGE;
        }
        snprintf(cli->ca_file, sizeof(cli->ca_file), "%s", named);
        return EXIT_OK;
    }
    /* On the controller's host, its own CA file, when readable from here. */
    const char *state_dir = getenv("STATE_DIR");
    if (state_dir == NULL || state_dir[0] == '\0')
        state_dir = CONTROLLER_STATE_DIR_DEFAULT;
    int n = snprintf(cli->ca_file, sizeof(cli->ca_file), "%s/%s", state_dir, ADMIN_TLS_CA_FILE);
    if (n < 0 || (size_t)n >= sizeof(cli->ca_file) || access(cli->ca_file, R_OK) != 0)
        cli->ca_file[0] = '\0';
    cli->ca_origin = "STATE_DIR";
    return EXIT_OK;
}

/* ADMIN_URL without trailing slashes, so paths can be appended as is. */
static int
cli_init(struct cli *cli, const char *ca_flag)
{
    const char *base = getenv("ADMIN_URL");
    if (base == NULL || base[0] == '\0')
        base = CLI_DEFAULT_URL;
    size_t len = strlen(base);
    while (len > 0 && base[len - 1] == '/')
        len--;
    if (len == 0 || len >= sizeof(cli->base) / 2) {
        fprintf(stderr, "controller: ADMIN_URL is not a usable URL\n");
        return EXIT_USAGE;
    }
    memcpy(cli->base, base, len);
    cli->base[len] = '\0';
    cli->https = strncasecmp(cli->base, "https://", 8) == 0;
    cli->ca_file[0] = '\0';
    cli->ca_origin = "";
    if (ca_flag != NULL && !cli->https) {
        fprintf(stderr, "controller: --ca is for an https:// ADMIN_URL; %s is plain HTTP\n",
                cli->base);
        return EXIT_USAGE;
    }
    if (cli->https) {
        int rc = choose_ca(cli, ca_flag);
        if (rc != EXIT_OK)
            return rc;
    }
    cli->token = getenv("ADMIN_AUTH_TOKEN");
    if (cli->token == NULL || cli->token[0] == '\0') {
        fprintf(stderr, "ADMIN_AUTH_TOKEN is required\n");
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

int
cli_main(int argc, char **argv)
{
    if (argc < 1 || is_help(argv[0])) {
        print_usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? EXIT_USAGE : EXIT_OK;
    }
    const char *ca_flag = NULL;
    int rc = take_ca_option(&argc, argv, &ca_flag);
    if (rc != 0)
        return rc;
    if (argc < 1) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    int used = 0;
    const struct command *command = find_command(argc, argv, &used);
    if (command == NULL)
        return group_usage_error(argc, argv);
    for (int i = used; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (is_help(argv[i]) && argv[i][0] == '-') {
            printf("usage: controller %s\n", command->usage);
            return EXIT_OK;
        }
    }
    struct args args;
    rc = parse_args(command, argc - used, argv + used, &args);
    if (rc != 0)
        return rc;
    struct cli cli;
    memset(&cli, 0, sizeof(cli));
    rc = runs_locally(command) ? EXIT_OK : cli_init(&cli, ca_flag);
    if (rc != EXIT_OK)
        return rc;
    rc = command->run(&cli, &args);
    /* Output that never reached its file (a full disk under > file) is a
     * failure too: a script must not go on with half a token. */
    if (fflush(stdout) != 0 && rc == EXIT_OK) {
        perror("controller: stdout");
        rc = EXIT_FAILED;
    }
    return rc;
}
