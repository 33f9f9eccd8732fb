/* libFuzzer target: certificate requests arrive from unauthenticated
 * enrolling agents, so the CSR parser sees attacker bytes first. */
#include <stdint.h>
#include <stdlib.h>

#include "pki/pki.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pki_csr *csr;
    if (pki_csr_parse(data, size, &csr, NULL) == 0)
        pki_csr_free(csr);
    return 0;
}
