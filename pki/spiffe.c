/* SPIFFE ID parsing per the SPIFFE ID standard (spiffe/standards, SPIFFE-ID.md
 * section 2): scheme "spiffe", a trust domain of [a-z0-9.-_], a path of
 * segments of [a-zA-Z0-9.-_], no query/fragment/port/userinfo/percent
 * encoding, at most 2048 bytes. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "pki/pki.h"

static const char scheme[] = "spiffe://";

static const char *const role_names[] = {
    [PKI_ROLE_NONE] = "",
    [PKI_ROLE_CONTROLLER] = "controller",
    [PKI_ROLE_CONNECTOR] = "connector",
    [PKI_ROLE_TUNNELER] = "tunneler",
};

const char *
pki_role_name(enum pki_role role)
{
    if ((size_t)role >= sizeof(role_names) / sizeof(role_names[0]))
        return "";
    return role_names[role];
}

int
pki_role_parse(const char *name, enum pki_role *out)
{
    for (size_t i = PKI_ROLE_CONTROLLER; i <= PKI_ROLE_TUNNELER; i++) {
        if (strcmp(name, role_names[i]) == 0) {
            *out = (enum pki_role)i;
            return 0;
        }
    }
    return -1;
}

static int
is_td_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
           c == '_';
}

static int
is_path_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_';
}

/* Explains why td (not NUL-terminated, td_len bytes) is not a trust domain,
 * or returns NULL when it is one. */
static const char *
trust_domain_problem(const char *td, size_t td_len)
{
    if (td_len == 0)
        return "trust domain is missing";
    if (td_len > PKI_TRUST_DOMAIN_MAX)
        return "trust domain is longer than 255 bytes";
    for (size_t i = 0; i < td_len; i++) {
        char c = td[i];
        if (c >= 'A' && c <= 'Z')
            return "uppercase letters are not allowed";
        if (c == ':')
            return "a port is not allowed";
        if (c == '@')
            return "userinfo is not allowed";
        if (c == '%')
            return "percent-encoded characters are not allowed";
        if (!is_td_char(c))
            return "only a-z, 0-9, '.', '-' and '_' are allowed";
    }
    if (td[td_len - 1] == '.')
        return "trailing dot";
    if (td[0] == '.')
        return "empty label";
    for (size_t i = 1; i < td_len; i++)
        if (td[i] == '.' && td[i - 1] == '.')
            return "empty label";
    return NULL;
}

/* Writes uri into the error message, shortened so that an attacker-sized
 * input cannot push the reason out of the line. */
static int
fail_uri(struct ztr_err *err, int code, const char *uri, const char *reason)
{
    return ztr_err_set(err, code, "cannot parse URI \"%.200s%s\": %s", uri,
                       strlen(uri) > 200 ? "..." : "", reason);
}

static int
fail_domain(struct ztr_err *err, const char *uri, const char *detail)
{
    char reason[160];
    snprintf(reason, sizeof(reason), "invalid domain (%s)", detail);
    return fail_uri(err, PKI_E_BAD_TRUST_DOMAIN, uri, reason);
}

static int
check_path(const char *uri, const char *path, size_t path_len, size_t *segments,
           const char **first, size_t *first_len, const char **second, size_t *second_len,
           struct ztr_err *err)
{
    *segments = 0;
    if (path_len == 0)
        return 0;
    if (path[0] != '/')
        return fail_uri(err, PKI_E_BAD_SPIFFE_ID, uri, "path must start with '/'");
    size_t i = 1;
    for (;;) {
        size_t start = i;
        while (i < path_len && path[i] != '/') {
            if (path[i] == '%')
                return fail_uri(err, PKI_E_BAD_SPIFFE_ID, uri,
                                "percent-encoded characters are not allowed");
            if (!is_path_char(path[i]))
                return fail_uri(err, PKI_E_BAD_SPIFFE_ID, uri,
                                "path segments may only contain a-z, A-Z, 0-9, '.', '-' "
                                "and '_'");
            i++;
        }
        size_t len = i - start;
        if (len == 0)
            return fail_uri(err, PKI_E_BAD_SPIFFE_ID, uri,
                            i == path_len ? "path cannot have a trailing slash"
                                          : "path cannot contain empty segments");
        if ((len == 1 && path[start] == '.') ||
            (len == 2 && path[start] == '.' && path[start + 1] == '.'))
            return fail_uri(err, PKI_E_BAD_SPIFFE_ID, uri,
                            "path cannot contain dot segments");
        (*segments)++;
        if (*segments == 1) {
            *first = path + start;
            *first_len = len;
        } else if (*segments == 2) {
            *second = path + start;
            *second_len = len;
        }
        if (i == path_len)
            return 0;
        i++; /* skip '/' */
        if (i == path_len)
            return fail_uri(err, PKI_E_BAD_SPIFFE_ID, uri, "path cannot have a trailing slash");
    }
}

int
pki_spiffe_id_parse(const char *uri, struct pki_spiffe_id *out, struct ztr_err *err)
{
    size_t len = strlen(uri);
    if (len == 0)
        return fail_uri(err, PKI_E_BAD_SPIFFE_ID, uri, "empty");
    if (len > PKI_SPIFFE_ID_MAX)
        return fail_uri(err, PKI_E_BAD_SPIFFE_ID, uri, "longer than 2048 bytes");
    if (strncmp(uri, scheme, sizeof(scheme) - 1) != 0)
        return fail_uri(err, PKI_E_BAD_SPIFFE_ID, uri, "scheme is missing or invalid");
    if (strchr(uri, '?') != NULL)
        return fail_uri(err, PKI_E_BAD_SPIFFE_ID, uri, "query is not allowed");
    if (strchr(uri, '#') != NULL)
        return fail_uri(err, PKI_E_BAD_SPIFFE_ID, uri, "fragment is not allowed");
    const char *td = uri + sizeof(scheme) - 1;
    const char *slash = strchr(td, '/');
    size_t td_len = slash ? (size_t)(slash - td) : strlen(td);
    const char *problem = trust_domain_problem(td, td_len);
    if (problem != NULL)
        return fail_domain(err, uri, problem);
    const char *path = td + td_len;
    size_t path_len = strlen(path);
    size_t segments;
    const char *first = NULL, *second = NULL;
    size_t first_len = 0, second_len = 0;
    TRY(check_path(uri, path, path_len, &segments, &first, &first_len, &second, &second_len,
                   err));
    memset(out, 0, sizeof(*out));
    memcpy(out->uri, uri, len);
    memcpy(out->trust_domain, td, td_len);
    out->role = PKI_ROLE_NONE;
    for (size_t r = PKI_ROLE_CONTROLLER; first != NULL && r <= PKI_ROLE_TUNNELER; r++)
        if (strlen(role_names[r]) == first_len && memcmp(first, role_names[r], first_len) == 0)
            out->role = (enum pki_role)r;
    if (segments == 2 && second_len <= PKI_NAME_MAX)
        memcpy(out->name, second, second_len);
    return 0;
}

const char *
pki_spiffe_id_path(const struct pki_spiffe_id *id)
{
    return id->uri + strlen("spiffe://") + strlen(id->trust_domain);
}

int
pki_trust_domain_check(const char *trust_domain, struct ztr_err *err)
{
    char uri[sizeof(scheme) + PKI_TRUST_DOMAIN_MAX + 8];
    size_t td_len = strlen(trust_domain);
    if (td_len > PKI_TRUST_DOMAIN_MAX) {
        snprintf(uri, sizeof(uri), "%s%.*s", scheme, 64, trust_domain);
        return fail_domain(err, uri, "trust domain is longer than 255 bytes");
    }
    snprintf(uri, sizeof(uri), "%s%s", scheme, trust_domain);
    /* A '/' would make the rest a path; a trust domain has none. */
    if (strchr(trust_domain, '/') != NULL)
        return fail_domain(err, uri, "only a-z, 0-9, '.', '-' and '_' are allowed");
    const char *problem = trust_domain_problem(trust_domain, td_len);
    if (problem != NULL)
        return fail_domain(err, uri, problem);
    return 0;
}

int
pki_spiffe_id_build(const char *trust_domain, enum pki_role role, const char *name,
                    struct pki_spiffe_id *out, struct ztr_err *err)
{
    TRY(pki_trust_domain_check(trust_domain, err));
    if (role == PKI_ROLE_NONE)
        return ztr_err_set(err, PKI_E_BAD_SPIFFE_ID, "no role given");
    char uri[PKI_SPIFFE_ID_MAX + 2];
    int n;
    if (role == PKI_ROLE_CONTROLLER) {
        n = snprintf(uri, sizeof(uri), "%s%s/%s", scheme, trust_domain, pki_role_name(role));
    } else {
        if (name == NULL || name[0] == '\0')
            return ztr_err_set(err, PKI_E_BAD_SPIFFE_ID, "a %s needs a name",
                               pki_role_name(role));
        if (strlen(name) > PKI_NAME_MAX)
            return ztr_err_set(err, PKI_E_BAD_SPIFFE_ID, "name longer than %d bytes",
                               PKI_NAME_MAX);
        n = snprintf(uri, sizeof(uri), "%s%s/%s/%s", scheme, trust_domain,
                     pki_role_name(role), name);
    }
    if (n < 0 || (size_t)n >= sizeof(uri))
        return ztr_err_set(err, PKI_E_BAD_SPIFFE_ID, "SPIFFE ID longer than 2048 bytes");
    TRY(pki_spiffe_id_parse(uri, out, err));
    if (out->role != role || (role != PKI_ROLE_CONTROLLER && strcmp(out->name, name) != 0))
        return ztr_err_set(err, PKI_E_BAD_SPIFFE_ID, "name \"%s\" is not one path segment",
                           name);
    return 0;
}

int
pki_ip_parse(const char *text, struct pki_ip *out)
{
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, text, out->bytes) == 1) {
        out->len = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, text, out->bytes) == 1) {
        out->len = 16;
        return 0;
    }
    return -1;
}

const char *
pki_ip_format(const struct pki_ip *ip, char *buf, size_t cap)
{
    int family = ip->len == 4 ? AF_INET : AF_INET6;
    if (inet_ntop(family, ip->bytes, buf, (socklen_t)cap) == NULL)
        snprintf(buf, cap, "?");
    return buf;
}
