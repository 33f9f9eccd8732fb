/*
 * The names a certificate of ours carries beside its identity: the
 * address a listener binds (127.0.0.1 and ::1 for a wildcard one) and the
 * host names and IPs an operator lists because clients dial them (the
 * admin API's ADMIN_TLS_NAMES, the control plane's CONTROLLER_NAMES).
 */
#ifndef ZTR_CONTROLLER_CERT_NAMES_H
#define ZTR_CONTROLLER_CERT_NAMES_H

#include <stddef.h>

#include "base/config.h"
#include "base/err.h"
#include "pki/pki.h"

#define CERT_NAME_MAX 253

struct cert_names {
    char dns[PKI_MAX_DNS_SANS][CERT_NAME_MAX + 1];
    const char *dns_ptrs[PKI_MAX_DNS_SANS];   /* into dns, for pki requests */
    size_t dns_count;
    struct pki_ip ips[PKI_MAX_IP_SANS];
    size_t ip_count;
    char text[1200];                          /* "127.0.0.1,ctl.example.org" for logs */
};

/* Collects listen's IP and every entry of list (comma-separated DNS names
 * and IPs); a bad entry fails naming key (config gives its origin). At
 * least one name is needed. */
int cert_names_collect(struct cert_names *names, const char *listen, const char *list,
                       const struct config *config, const char *key, struct ztr_err *err);

#endif
