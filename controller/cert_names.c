#include "controller/cert_names.h"

#include <stdio.h>
#include <string.h>

/* A host name as a certificate names it: letters, digits and hyphens in
 * dot-separated labels of 1..63, no wildcard, no trailing dot, and a last
 * label that is not all digits (so a mistyped IP is not taken for a name). */
static bool
valid_dns_name(const char *name)
{
    size_t len = strlen(name), label = 0;
    bool digits_only = true;
    if (len == 0 || len > CERT_NAME_MAX)
        return false;
    for (size_t i = 0; i <= len; i++) {
        char ch = name[i];
        if (ch == '.' || ch == '\0') {
            if (label == 0 || label > 63 || name[i - 1] == '-')
                return false;
            if (ch == '\0')
                return !digits_only;
            label = 0;
            digits_only = true;
            continue;
        }
        bool digit = ch >= '0' && ch <= '9';
        bool alnum = digit || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        if (!alnum && !(ch == '-' && label > 0))
            return false;
        digits_only = digits_only && digit;
        label++;
    }
    return true;
}

static bool
has_ip(const struct cert_names *names, const struct pki_ip *ip)
{
    for (size_t i = 0; i < names->ip_count; i++)
        if (names->ips[i].len == ip->len &&
            memcmp(names->ips[i].bytes, ip->bytes, ip->len) == 0)
            return true;
    return false;
}

static void
add_ip(struct cert_names *names, const char *text)
{
    struct pki_ip ip;
    if (pki_ip_parse(text, &ip) == 0 && !has_ip(names, &ip) && names->ip_count < PKI_MAX_IP_SANS)
        names->ips[names->ip_count++] = ip;
}

static bool
has_dns(const struct cert_names *names, const char *name)
{
    for (size_t i = 0; i < names->dns_count; i++)
        if (strcasecmp(names->dns[i], name) == 0)
            return true;
    return false;
}

static void
format_text(struct cert_names *names)
{
    size_t used = 0;
    names->text[0] = '\0';
    for (size_t i = 0; i < names->ip_count + names->dns_count; i++) {
        char ip_text[64];
        const char *name = i < names->ip_count
                               ? pki_ip_format(&names->ips[i], ip_text, sizeof(ip_text))
                               : names->dns[i - names->ip_count];
        int n = snprintf(names->text + used, sizeof(names->text) - used, "%s%s",
                         i > 0 ? "," : "", name != NULL ? name : "?");
        if (n < 0 || (size_t)n >= sizeof(names->text) - used)
            break;
        used += (size_t)n;
    }
}

int
cert_names_collect(struct cert_names *names, const char *listen, const char *list,
                   const struct config *config, const char *key, struct ztr_err *err)
{
    memset(names, 0, sizeof(*names));
    char host[128];
    uint16_t port;
    if (config_parse_addr(listen, host, sizeof(host), &port) == 0) {
        if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) {
            add_ip(names, "127.0.0.1");
            add_ip(names, "::1");
        } else {
            add_ip(names, host);
        }
    }
    char copy[2048];
    if (snprintf(copy, sizeof(copy), "%s", list) >= (int)sizeof(copy))
        return config_fail(config, key, err, "longer than %zu bytes", sizeof(copy) - 1);
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ')
            item++;
        size_t len = strlen(item);
        while (len > 0 && item[len - 1] == ' ')
            item[--len] = '\0';
        if (len == 0)
            continue;
        struct pki_ip ip;
        if (pki_ip_parse(item, &ip) == 0) {
            if (!has_ip(names, &ip) && names->ip_count == PKI_MAX_IP_SANS)
                return config_fail(config, key, err, "more than %d addresses", PKI_MAX_IP_SANS);
            add_ip(names, item);
            continue;
        }
        if (!valid_dns_name(item))
            return config_fail(config, key, err,
                               "\"%s\" is neither an IP address nor a DNS name (use e.g. "
                               "ctl.example.org,10.0.0.1)", item);
        if (has_dns(names, item))
            continue;
        if (names->dns_count == PKI_MAX_DNS_SANS)
            return config_fail(config, key, err, "more than %d DNS names", PKI_MAX_DNS_SANS);
        snprintf(names->dns[names->dns_count], sizeof(names->dns[0]), "%s", item);
        names->dns_ptrs[names->dns_count] = names->dns[names->dns_count];
        names->dns_count++;
    }
    if (names->ip_count + names->dns_count == 0)
        return config_fail(config, key, err,
                           "needed: the listen address \"%s\" names no IP address the "
                           "certificate could carry", listen);
    format_text(names);
    return 0;
}
