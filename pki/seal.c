/* Secrets at rest under a key the holder keeps elsewhere: AES-256-GCM
 * (wolfCrypt), a fresh random nonce per seal, bound to a context string.
 * What the controllers of a cluster use for the CA keys they share through
 * their database: a dump of it alone does not reveal them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/fileio.h"
#include "pki/internal.h"

#include <wolfssl/wolfcrypt/aes.h>

#define SEAL_NONCE 12
#define SEAL_TAG 16
#define SEAL_PLAIN_MAX (64 * 1024)

int
pki_seal(const uint8_t key[PKI_SEAL_KEY_BYTES], const char *context, const uint8_t *plain,
         size_t len, uint8_t **out, size_t *out_len, struct ztr_err *err)
{
    *out = NULL;
    if (len > SEAL_PLAIN_MAX)
        return ztr_err_set(err, ZTR_E_LIMIT, "seal: more than %d bytes", SEAL_PLAIN_MAX);
    WC_RNG *rng = pki_rng(err);
    if (rng == NULL)
        return -1;
    uint8_t *sealed = malloc(SEAL_NONCE + len + SEAL_TAG);
    if (sealed == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    Aes aes;
    int rc = wc_RNG_GenerateBlock(rng, sealed, SEAL_NONCE);
    if (rc == 0)
        rc = wc_AesInit(&aes, NULL, INVALID_DEVID);
    if (rc == 0) {
        rc = wc_AesGcmSetKey(&aes, key, PKI_SEAL_KEY_BYTES);
        if (rc == 0)
            rc = wc_AesGcmEncrypt(&aes, sealed + SEAL_NONCE, plain, (word32)len, sealed,
                                  SEAL_NONCE, sealed + SEAL_NONCE + len, SEAL_TAG,
                                  (const byte *)context, (word32)strlen(context));
        wc_AesFree(&aes);
    }
    if (rc != 0) {
        free(sealed);
        return ztr_err_set(err, ZTR_E_CRYPTO, "seal: AES-GCM failed (%d)", rc);
    }
    *out = sealed;
    *out_len = SEAL_NONCE + len + SEAL_TAG;
    return 0;
}

int
pki_unseal(const uint8_t key[PKI_SEAL_KEY_BYTES], const char *context, const uint8_t *sealed,
           size_t len, uint8_t **out, size_t *out_len, struct ztr_err *err)
{
    *out = NULL;
    if (len < SEAL_NONCE + SEAL_TAG || len > SEAL_NONCE + SEAL_PLAIN_MAX + SEAL_TAG)
        return ztr_err_set(err, ZTR_E_INVALID, "unseal: %zu bytes is not a sealed secret", len);
    size_t plain_len = len - SEAL_NONCE - SEAL_TAG;
    uint8_t *plain = malloc(plain_len + 1);
    if (plain == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    Aes aes;
    int rc = wc_AesInit(&aes, NULL, INVALID_DEVID);
    if (rc == 0) {
        rc = wc_AesGcmSetKey(&aes, key, PKI_SEAL_KEY_BYTES);
        if (rc == 0)
            rc = wc_AesGcmDecrypt(&aes, plain, sealed + SEAL_NONCE, (word32)plain_len, sealed,
                                  SEAL_NONCE, sealed + SEAL_NONCE + plain_len, SEAL_TAG,
                                  (const byte *)context, (word32)strlen(context));
        wc_AesFree(&aes);
    }
    if (rc != 0) {
        explicit_bzero(plain, plain_len);
        free(plain);
        /* Wrong key, another row's secret, or altered bytes: the tag says
         * which only as "no". */
        return ztr_err_set(err, ZTR_E_VERIFY,
                           "unseal: authentication failed (another seal key, or the sealed "
                           "bytes were altered)");
    }
    plain[plain_len] = 0;
    *out = plain;
    *out_len = plain_len;
    return 0;
}

static int
hex_value(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int
pki_seal_key_load(const char *path, uint8_t key[PKI_SEAL_KEY_BYTES], struct ztr_err *err)
{
    TRY(file_ensure_private(path, err));
    char *text = NULL;
    size_t len = 0;
    TRY(file_read_all(path, 256, &text, &len, err));
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        len--;
    int rc = 0;
    if (len == PKI_SEAL_KEY_BYTES) {
        memcpy(key, text, PKI_SEAL_KEY_BYTES);
    } else if (len == 2 * PKI_SEAL_KEY_BYTES) {
        for (size_t i = 0; rc == 0 && i < PKI_SEAL_KEY_BYTES; i++) {
            int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
            if (hi < 0 || lo < 0)
                rc = ztr_err_set(err, ZTR_E_INVALID, "%s: not hex", path);
            else
                key[i] = (uint8_t)(hi << 4 | lo);
        }
    } else {
        rc = ztr_err_set(err, ZTR_E_INVALID,
                         "%s: expected %d random bytes or %d hex digits, found %zu bytes "
                         "(make one with: openssl rand -hex %d)",
                         path, PKI_SEAL_KEY_BYTES, 2 * PKI_SEAL_KEY_BYTES, len,
                         PKI_SEAL_KEY_BYTES);
    }
    explicit_bzero(text, len);
    free(text);
    if (rc != 0)
        explicit_bzero(key, PKI_SEAL_KEY_BYTES);
    return rc;
}
