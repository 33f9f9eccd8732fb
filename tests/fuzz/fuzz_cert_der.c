/* libFuzzer target: our certificate DER reader (pki_cert_info_parse) and
 * the PEM chain splitter must reject garbage without crashing or reading
 * out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pki/pki.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pki_cert_info info;
    if (pki_cert_info_parse(data, size, &info, NULL) == 0) {
        if (info.ip_count > PKI_MAX_IP_SANS || strlen(info.uri) > PKI_SPIFFE_ID_MAX)
            abort();
    }
    struct pki_chain *chain;
    if (pki_chain_from_pem((const char *)data, size, &chain, NULL) == 0)
        pki_chain_free(chain);
    return 0;
}
