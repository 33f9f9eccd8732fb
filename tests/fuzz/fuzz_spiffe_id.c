/* libFuzzer target: the SPIFFE ID parser and the trust-domain check must
 * never crash, and anything they accept must round-trip and obey the
 * standard's rules. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pki/pki.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_accepted(const struct pki_spiffe_id *id)
{
    /* Invariants of an accepted ID; abort() makes libFuzzer report it. */
    if (strncmp(id->uri, "spiffe://", 9) != 0 || strlen(id->uri) > PKI_SPIFFE_ID_MAX)
        abort();
    if (id->trust_domain[0] == '\0' || strlen(id->trust_domain) > PKI_TRUST_DOMAIN_MAX)
        abort();
    for (const char *p = id->trust_domain; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' ||
              *p == '_'))
            abort();
    const char *path = pki_spiffe_id_path(id);
    size_t path_len = strlen(path);
    if (path_len > 0 && (path[0] != '/' || path[path_len - 1] == '/'))
        abort();
    if (strstr(path, "//") != NULL || strchr(id->uri, '%') || strchr(id->uri, '?') ||
        strchr(id->uri, '#'))
        abort();
    struct pki_spiffe_id again;
    if (pki_spiffe_id_parse(id->uri, &again, NULL) != 0 || strcmp(again.uri, id->uri) != 0)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct pki_spiffe_id id;
    struct ztr_err err;
    if (pki_spiffe_id_parse(text, &id, &err) == 0)
        check_accepted(&id);
    else if (strstr(err.msg, "cannot parse URI") == NULL)
        abort();
    (void)pki_trust_domain_check(text, &err);
    free(text);
    return 0;
}
