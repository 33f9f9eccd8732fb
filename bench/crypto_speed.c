/*
 * Crypto throughput of the wolfSSL a binary links: AES-128-GCM and
 * AES-256-GCM seal over 16 KiB records (the TLS record size the data plane
 * writes), ECDSA P-256 sign/verify and ECDHE P-256 (a handshake's cost).
 * Built twice by bench/crypto.sh — against the project's wolfSSL and
 * against Debian's libwolfssl — so both numbers come from one run.
 *
 * Output: one `name value unit` line per measurement.
 */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RECORD 16384
#define MIN_SECONDS 1.0

static double
now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
bench_gcm(int key_bytes)
{
    Aes aes;
    byte key[32] = {1}, iv[12] = {2}, tag[16];
    static byte in[RECORD], out[RECORD];
    if (wc_AesInit(&aes, NULL, INVALID_DEVID) != 0 || wc_AesGcmSetKey(&aes, key, (word32)key_bytes) != 0)
        return -1;
    double start = now_seconds(), elapsed;
    unsigned long long bytes = 0;
    do {
        for (int i = 0; i < 256; i++) {
            iv[0]++;
            if (wc_AesGcmEncrypt(&aes, out, in, RECORD, iv, sizeof(iv), tag, sizeof(tag), NULL,
                                 0) != 0)
                return -1;
            bytes += RECORD;
        }
        elapsed = now_seconds() - start;
    } while (elapsed < MIN_SECONDS);
    wc_AesFree(&aes);
    printf("aes-%d-gcm-seal %.2f GB/s\n", key_bytes * 8, (double)bytes / elapsed / 1e9);
    return 0;
}

static int
bench_ecc(WC_RNG *rng)
{
    ecc_key key, peer;
    byte hash[32] = {3}, sig[ECC_MAX_SIG_SIZE], secret[32];
    if (wc_ecc_init(&key) || wc_ecc_init(&peer) ||
        wc_ecc_make_key_ex(rng, 32, &key, ECC_SECP256R1) ||
        wc_ecc_make_key_ex(rng, 32, &peer, ECC_SECP256R1))
        return -1;
#ifdef ECC_TIMING_RESISTANT
    wc_ecc_set_rng(&key, rng);
    wc_ecc_set_rng(&peer, rng);
#endif
    word32 sig_len = sizeof(sig);
    double start = now_seconds(), elapsed;
    unsigned long ops = 0;
    do {
        sig_len = sizeof(sig);
        if (wc_ecc_sign_hash(hash, sizeof(hash), sig, &sig_len, rng, &key) != 0)
            return -1;
        ops++;
        elapsed = now_seconds() - start;
    } while (elapsed < MIN_SECONDS);
    printf("ecdsa-p256-sign %.0f ops/s\n", (double)ops / elapsed);
    start = now_seconds();
    ops = 0;
    do {
        int ok = 0;
        if (wc_ecc_verify_hash(sig, sig_len, hash, sizeof(hash), &ok, &key) != 0 || !ok)
            return -1;
        ops++;
        elapsed = now_seconds() - start;
    } while (elapsed < MIN_SECONDS);
    printf("ecdsa-p256-verify %.0f ops/s\n", (double)ops / elapsed);
    start = now_seconds();
    ops = 0;
    do {
        word32 len = sizeof(secret);
        if (wc_ecc_shared_secret(&key, &peer, secret, &len) != 0)
            return -1;
        ops++;
        elapsed = now_seconds() - start;
    } while (elapsed < MIN_SECONDS);
    printf("ecdhe-p256 %.0f ops/s\n", (double)ops / elapsed);
    wc_ecc_free(&key);
    wc_ecc_free(&peer);
    return 0;
}

int
main(void)
{
    WC_RNG rng;
    if (wolfCrypt_Init() != 0 || wc_InitRng(&rng) != 0) {
        fprintf(stderr, "wolfCrypt init failed\n");
        return 1;
    }
    int rc = bench_gcm(16) || bench_gcm(32) || bench_ecc(&rng);
    wc_FreeRng(&rng);
    wolfCrypt_Cleanup();
    if (rc) {
        fprintf(stderr, "benchmark failed\n");
        return 1;
    }
    return 0;
}
