/*
 * ztr-pki: the operator's view of the PKI module, and the harness the tests
 * drive it through.
 *
 *   ztr-pki parse-id URI
 *   ztr-pki verify --bundle CA.pem --trust-domain TD --role ROLE
 *                  [--ip IP] [--spiffe-id ID] [--time UNIX] CERT.pem
 *   ztr-pki ca init --trust-domain TD --out DIR [--lifetime 365d]
 *   ztr-pki ca intermediate --ca-dir DIR --out DIR [--name NAME] [--lifetime 180d]
 *   ztr-pki keygen --out KEY.pem
 *   ztr-pki csr --key KEY.pem [--cn NAME]
 *   ztr-pki issue --ca-dir DIR --role ROLE [--name NAME] [--ip IP]...
 *                 [--ttl 24h] [--not-before UNIX] (--csr CSR.pem | --out-key KEY.pem)
 *                 --out CERT.pem
 *   ztr-pki inspect CERT.pem
 *
 * Exit status: 0 success, 1 the input was rejected, 2 usage error.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/build_info.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/err.h"
#include "base/fileio.h"
#include "pki/pki.h"

#define FILE_MAX (1024 * 1024)
#define EXIT_REJECTED 1
#define EXIT_USAGE 2

static const char usage_text[] =
    "usage:\n"
    "  ztr-pki --version\n"
    "  ztr-pki parse-id URI\n"
    "  ztr-pki verify --bundle CA.pem --trust-domain TD --role ROLE [--ip IP]\n"
    "                 [--spiffe-id ID] [--time UNIX] CERT.pem\n"
    "  ztr-pki ca init --trust-domain TD --out DIR [--lifetime 365d]\n"
    "  ztr-pki ca intermediate --ca-dir DIR --out DIR [--name NAME] [--lifetime 180d]\n"
    "  ztr-pki keygen --out KEY.pem\n"
    "  ztr-pki csr --key KEY.pem [--cn NAME]\n"
    "  ztr-pki issue --ca-dir DIR --role ROLE [--name NAME] [--ip IP]... [--ttl 24h]\n"
    "                [--not-before UNIX] (--csr CSR.pem | --out-key KEY.pem) --out CERT.pem\n"
    "  ztr-pki inspect CERT.pem\n";

struct options {
    const char *bundle, *trust_domain, *role, *ip, *spiffe_id, *out, *ca_dir, *name, *key,
        *cn, *csr, *out_key, *lifetime, *ttl;
    const char *ips[32];
    size_t ip_count;
    int64_t time;
    bool has_time;
    int64_t not_before;
    bool has_not_before;
    const char *positional[4];
    int positional_count;
};

static int
usage(const char *problem)
{
    if (problem != NULL)
        fprintf(stderr, "ztr-pki: %s\n", problem);
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}

static int
rejected(const struct ztr_err *err)
{
    fprintf(stderr, "%s\n", err->msg);
    return EXIT_REJECTED;
}

static int
parse_int64(const char *text, int64_t *out)
{
    char *end;
    long long value = strtoll(text, &end, 10);
    if (end == text || *end != '\0')
        return -1;
    *out = value;
    return 0;
}

static int
parse_options(int argc, char **argv, struct options *opts)
{
    enum {
        OPT_BUNDLE = 256, OPT_TD, OPT_ROLE, OPT_IP, OPT_SPIFFE_ID, OPT_TIME, OPT_OUT,
        OPT_CA_DIR, OPT_NAME, OPT_KEY, OPT_CN, OPT_CSR, OPT_OUT_KEY, OPT_LIFETIME, OPT_TTL,
        OPT_NOT_BEFORE,
    };
    static const struct option long_options[] = {
        {"bundle", required_argument, NULL, OPT_BUNDLE},
        {"trust-domain", required_argument, NULL, OPT_TD},
        {"role", required_argument, NULL, OPT_ROLE},
        {"ip", required_argument, NULL, OPT_IP},
        {"spiffe-id", required_argument, NULL, OPT_SPIFFE_ID},
        {"time", required_argument, NULL, OPT_TIME},
        {"out", required_argument, NULL, OPT_OUT},
        {"ca-dir", required_argument, NULL, OPT_CA_DIR},
        {"name", required_argument, NULL, OPT_NAME},
        {"key", required_argument, NULL, OPT_KEY},
        {"cn", required_argument, NULL, OPT_CN},
        {"csr", required_argument, NULL, OPT_CSR},
        {"out-key", required_argument, NULL, OPT_OUT_KEY},
        {"lifetime", required_argument, NULL, OPT_LIFETIME},
        {"ttl", required_argument, NULL, OPT_TTL},
        {"not-before", required_argument, NULL, OPT_NOT_BEFORE},
        {NULL, 0, NULL, 0},
    };
    memset(opts, 0, sizeof(*opts));
    optind = 1;
    opterr = 0;
    while (optind < argc) {
        int c = getopt_long(argc, argv, "+", long_options, NULL);
        if (c == -1) {
            /* A positional argument (CERT.pem); options may follow it. */
            if (optind >= argc)
                break;
            if (strcmp(argv[optind], "--") == 0) {
                optind++;
                continue;
            }
            if (opts->positional_count == 4)
                return usage("too many arguments");
            opts->positional[opts->positional_count++] = argv[optind++];
            continue;
        }
        switch (c) {
        case OPT_BUNDLE: opts->bundle = optarg; break;
        case OPT_TD: opts->trust_domain = optarg; break;
        case OPT_ROLE: opts->role = optarg; break;
        case OPT_SPIFFE_ID: opts->spiffe_id = optarg; break;
        case OPT_OUT: opts->out = optarg; break;
        case OPT_CA_DIR: opts->ca_dir = optarg; break;
        case OPT_NAME: opts->name = optarg; break;
        case OPT_KEY: opts->key = optarg; break;
        case OPT_CN: opts->cn = optarg; break;
        case OPT_CSR: opts->csr = optarg; break;
        case OPT_OUT_KEY: opts->out_key = optarg; break;
        case OPT_LIFETIME: opts->lifetime = optarg; break;
        case OPT_TTL: opts->ttl = optarg; break;
        case OPT_IP:
            if (opts->ip_count == sizeof(opts->ips) / sizeof(opts->ips[0]))
                return usage("too many --ip");
            opts->ip = optarg;
            opts->ips[opts->ip_count++] = optarg;
            break;
        case OPT_TIME:
            if (parse_int64(optarg, &opts->time) != 0)
                return usage("--time needs Unix seconds");
            opts->has_time = true;
            break;
        case OPT_NOT_BEFORE:
            if (parse_int64(optarg, &opts->not_before) != 0)
                return usage("--not-before needs Unix seconds");
            opts->has_not_before = true;
            break;
        default:
            return usage("unknown or incomplete option");
        }
    }
    return 0;
}

static int
read_file(const char *path, char **data, size_t *len, struct ztr_err *err)
{
    return file_read_all(path, FILE_MAX, data, len, err);
}

/* Key material is wiped before its memory goes back to the allocator. */
static void
free_secret(char *data, size_t len)
{
    if (data == NULL)
        return;
    explicit_bzero(data, len);
    free(data);
}

/* ---- parse-id ------------------------------------------------------------ */

static int
cmd_parse_id(const struct options *opts)
{
    if (opts->positional_count != 1)
        return usage("parse-id takes one URI");
    struct pki_spiffe_id id;
    struct ztr_err err = {0};
    if (pki_spiffe_id_parse(opts->positional[0], &id, &err) != 0)
        return rejected(&err);
    printf("trust_domain=%s\npath=%s\n", id.trust_domain, pki_spiffe_id_path(&id));
    return 0;
}

/* ---- verify -------------------------------------------------------------- */

static int
load_bundle(const char *path, struct pki_bundle **bundle, struct ztr_err *err)
{
    char *pem;
    size_t len;
    TRY(read_file(path, &pem, &len, err));
    int rc = pki_bundle_from_pem(pem, len, bundle, err);
    free(pem);
    return rc;
}

static int
load_chain(const char *path, struct pki_chain **chain, struct ztr_err *err)
{
    char *pem;
    size_t len;
    TRY(read_file(path, &pem, &len, err));
    int rc = pki_chain_from_pem(pem, len, chain, err);
    free(pem);
    return rc;
}

static int
cmd_verify(const struct options *opts)
{
    if (opts->positional_count != 1 || opts->bundle == NULL || opts->trust_domain == NULL ||
        opts->role == NULL)
        return usage("verify needs --bundle, --trust-domain, --role and CERT.pem");
    struct pki_expect expect = {0};
    if (pki_role_parse(opts->role, &expect.role) != 0)
        return usage("--role must be controller, connector or tunneler");
    struct ztr_err err = {0};
    if (pki_trust_domain_check(opts->trust_domain, &err) != 0)
        return rejected(&err);
    expect.trust_domain = opts->trust_domain;
    expect.dial_ip = opts->ip;
    expect.spiffe_id = opts->spiffe_id;
    expect.now = opts->has_time ? opts->time : clock_wall_s(clock_system());
    struct pki_bundle *bundle = NULL;
    struct pki_chain *chain = NULL;
    struct pki_spiffe_id peer;
    int status = EXIT_REJECTED;
    if (load_bundle(opts->bundle, &bundle, &err) == 0 &&
        load_chain(opts->positional[0], &chain, &err) == 0 &&
        pki_verify(bundle, chain, &expect, &peer, &err) == 0) {
        printf("ok %s\n", peer.uri);
        status = 0;
    } else {
        fprintf(stderr, "%s\n", err.msg);
    }
    pki_chain_free(chain);
    pki_bundle_free(bundle);
    return status;
}

/* ---- ca ------------------------------------------------------------------ */

static int
join_path(char *out, size_t cap, const char *dir, const char *file)
{
    int n = snprintf(out, cap, "%s/%s", dir, file);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* A CA directory holds ca.crt and ca.key. */
static int
ca_dir_paths(const char *dir, char *cert_path, char *key_path, size_t cap, struct ztr_err *err)
{
    if (join_path(cert_path, cap, dir, "ca.crt") != 0 || join_path(key_path, cap, dir, "ca.key") != 0)
        return ztr_err_set(err, ZTR_E_LIMIT, "path too long: %s", dir);
    return 0;
}

static int
write_pair(const char *dir, const char *cert_pem, size_t cert_len, const char *key_pem,
           size_t key_len, struct ztr_err *err)
{
    char cert_path[4096], key_path[4096];
    TRY(ca_dir_paths(dir, cert_path, key_path, sizeof(cert_path), err));
    TRY(file_ensure_dir(dir, 0700, err));
    /* Key first and exclusively: never overwrite an existing CA key. */
    TRY(file_create_exclusive(key_path, key_pem, key_len, 0600, err));
    return file_write_atomic(cert_path, cert_pem, cert_len, 0644, err);
}

static int
lifetime_seconds(const char *text, const char *fallback, int64_t *out)
{
    int64_t ms;
    if (config_parse_duration_ms(text ? text : fallback, &ms) != 0 || ms < 1000)
        return -1;
    *out = ms / 1000;
    return 0;
}

static int
save_ca(struct pki_ca *ca, const char *dir, struct ztr_err *err)
{
    char *cert_pem = NULL, *key_pem = NULL;
    size_t cert_len, key_len;
    int rc = -1;
    if (pki_ca_cert_pem(ca, &cert_pem, &cert_len, err) == 0 &&
        pki_ca_key_pem(ca, &key_pem, &key_len, err) == 0)
        rc = write_pair(dir, cert_pem, cert_len, key_pem, key_len, err);
    free(cert_pem);
    free_secret(key_pem, key_len);
    return rc;
}

static int
cmd_ca_init(const struct options *opts)
{
    int64_t lifetime;
    if (opts->trust_domain == NULL || opts->out == NULL)
        return usage("ca init needs --trust-domain and --out");
    if (lifetime_seconds(opts->lifetime, "365d", &lifetime) != 0)
        return usage("--lifetime must be a duration such as 365d");
    struct ztr_err err = {0};
    struct pki_ca *ca;
    if (pki_ca_create(opts->trust_domain, clock_wall_s(clock_system()), lifetime, &ca, &err) != 0)
        return rejected(&err);
    int rc = save_ca(ca, opts->out, &err);
    if (rc == 0)
        printf("ca %s/ca.crt %s\n", opts->out, pki_ca_info(ca)->fingerprint_sha256);
    pki_ca_free(ca);
    return rc == 0 ? 0 : rejected(&err);
}

static int
load_ca_dir(const char *dir, struct pki_ca **ca, struct ztr_err *err)
{
    char cert_path[4096], key_path[4096];
    TRY(ca_dir_paths(dir, cert_path, key_path, sizeof(cert_path), err));
    char *cert_pem = NULL, *key_pem = NULL;
    size_t cert_len, key_len;
    int rc = -1;
    if (read_file(cert_path, &cert_pem, &cert_len, err) == 0 &&
        read_file(key_path, &key_pem, &key_len, err) == 0)
        rc = pki_ca_load(cert_pem, cert_len, key_pem, key_len, ca, err);
    free(cert_pem);
    free_secret(key_pem, key_len);
    return rc;
}

static int
cmd_ca_intermediate(const struct options *opts)
{
    int64_t lifetime;
    if (opts->ca_dir == NULL || opts->out == NULL)
        return usage("ca intermediate needs --ca-dir and --out");
    if (lifetime_seconds(opts->lifetime, "180d", &lifetime) != 0)
        return usage("--lifetime must be a duration such as 180d");
    struct ztr_err err = {0};
    struct pki_ca *parent = NULL, *child = NULL;
    struct pki_key *key = NULL;
    uint8_t *public_der = NULL;
    size_t public_len;
    char *cert_pem = NULL, *key_pem = NULL;
    size_t cert_len, key_len;
    int64_t now = clock_wall_s(clock_system());
    int status = EXIT_REJECTED;
    if (load_ca_dir(opts->ca_dir, &parent, &err) == 0 && pki_key_generate(&key, &err) == 0 &&
        pki_key_public_der(key, &public_der, &public_len, &err) == 0) {
        int64_t not_after = now + lifetime;
        if (not_after > pki_ca_info(parent)->not_after)
            not_after = pki_ca_info(parent)->not_after;
        if (pki_ca_issue_intermediate(parent, opts->name ? opts->name : "ztr intermediate CA",
                                      public_der, public_len, now - 60, not_after, &cert_pem,
                                      &cert_len, &err) == 0 &&
            pki_key_to_pem(key, &key_pem, &key_len, &err) == 0 &&
            pki_ca_load(cert_pem, cert_len, key_pem, key_len, &child, &err) == 0 &&
            write_pair(opts->out, cert_pem, cert_len, key_pem, key_len, &err) == 0) {
            printf("ca %s/ca.crt %s\n", opts->out, pki_ca_info(child)->fingerprint_sha256);
            status = 0;
        }
    }
    if (status != 0)
        fprintf(stderr, "%s\n", err.msg);
    free(public_der);
    free(cert_pem);
    free_secret(key_pem, key_len);
    pki_key_free(key);
    pki_ca_free(child);
    pki_ca_free(parent);
    return status;
}

/* ---- keys, CSRs, issuing ------------------------------------------------- */

static int
write_new_key(const char *path, struct pki_key **key, struct ztr_err *err)
{
    char *pem;
    size_t len;
    TRY(pki_key_generate(key, err));
    if (pki_key_to_pem(*key, &pem, &len, err) != 0)
        return -1;
    int rc = file_create_exclusive(path, pem, len, 0600, err);
    free_secret(pem, len);
    return rc;
}

static int
cmd_keygen(const struct options *opts)
{
    if (opts->out == NULL)
        return usage("keygen needs --out");
    struct ztr_err err = {0};
    struct pki_key *key = NULL;
    int rc = write_new_key(opts->out, &key, &err);
    pki_key_free(key);
    return rc == 0 ? 0 : rejected(&err);
}

static int
load_key(const char *path, struct pki_key **key, struct ztr_err *err)
{
    char *pem;
    size_t len;
    TRY(read_file(path, &pem, &len, err));
    int rc = pki_key_from_pem(pem, len, key, err);
    free_secret(pem, len);
    return rc;
}

static int
cmd_csr(const struct options *opts)
{
    if (opts->key == NULL)
        return usage("csr needs --key");
    struct ztr_err err = {0};
    struct pki_key *key = NULL;
    char *pem = NULL;
    size_t len;
    int status = EXIT_REJECTED;
    if (load_key(opts->key, &key, &err) == 0 &&
        pki_csr_create(key, opts->cn ? opts->cn : "ztr", &pem, &len, &err) == 0) {
        fwrite(pem, 1, len, stdout);
        status = 0;
    } else {
        fprintf(stderr, "%s\n", err.msg);
    }
    free(pem);
    pki_key_free(key);
    return status;
}

/* The public key to certify: from a CSR (checked) or a freshly made key. */
static int
issue_public_key(const struct options *opts, uint8_t **der, size_t *len, struct ztr_err *err)
{
    if (opts->csr != NULL) {
        char *data;
        size_t data_len;
        struct pki_csr *csr;
        TRY(read_file(opts->csr, &data, &data_len, err));
        int rc = pki_csr_parse((const uint8_t *)data, data_len, &csr, err);
        free(data);
        TRY(rc);
        size_t public_len;
        const uint8_t *public_der = pki_csr_public_der(csr, &public_len);
        *der = malloc(public_len);
        if (*der == NULL) {
            pki_csr_free(csr);
            return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
        }
        memcpy(*der, public_der, public_len);
        *len = public_len;
        pki_csr_free(csr);
        return 0;
    }
    struct pki_key *key = NULL;
    int rc = write_new_key(opts->out_key, &key, err);
    if (rc == 0)
        rc = pki_key_public_der(key, der, len, err);
    pki_key_free(key);
    return rc;
}

static int
cmd_issue(const struct options *opts)
{
    enum pki_role role;
    int64_t ttl;
    if (opts->ca_dir == NULL || opts->role == NULL || opts->out == NULL)
        return usage("issue needs --ca-dir, --role and --out");
    if ((opts->csr == NULL) == (opts->out_key == NULL))
        return usage("issue needs exactly one of --csr and --out-key");
    if (pki_role_parse(opts->role, &role) != 0)
        return usage("--role must be controller, connector or tunneler");
    if (lifetime_seconds(opts->ttl, "24h", &ttl) != 0)
        return usage("--ttl must be a duration such as 24h");
    struct ztr_err err = {0};
    struct pki_ip ips[32];
    for (size_t i = 0; i < opts->ip_count; i++)
        if (pki_ip_parse(opts->ips[i], &ips[i]) != 0) {
            fprintf(stderr, "--ip %s is not an IP address\n", opts->ips[i]);
            return EXIT_USAGE;
        }
    struct pki_ca *ca = NULL;
    uint8_t *public_der = NULL;
    size_t public_len = 0;
    char *pem = NULL;
    size_t pem_len;
    struct pki_spiffe_id id;
    int status = EXIT_REJECTED;
    int64_t now = opts->has_not_before ? opts->not_before + 60 : clock_wall_s(clock_system());
    if (load_ca_dir(opts->ca_dir, &ca, &err) == 0) {
        struct pki_spiffe_id ca_id;
        const char *td = opts->trust_domain;
        if (td == NULL && pki_spiffe_id_parse(pki_ca_info(ca)->uri, &ca_id, &err) == 0)
            td = ca_id.trust_domain;
        struct pki_leaf_request request = {&id, NULL, 0, ips, opts->ip_count, now - 60,
                                           now + ttl, NULL, 0};
        if (td != NULL && pki_spiffe_id_build(td, role, opts->name, &id, &err) == 0 &&
            issue_public_key(opts, &public_der, &public_len, &err) == 0) {
            request.public_der = public_der;
            request.public_len = public_len;
            if (pki_ca_issue(ca, &request, &pem, &pem_len, &err) == 0 &&
                file_write_atomic(opts->out, pem, pem_len, 0644, &err) == 0) {
                printf("issued %s\n", id.uri);
                status = 0;
            }
        }
    }
    if (status != 0)
        fprintf(stderr, "%s\n", err.msg);
    free(pem);
    free(public_der);
    pki_ca_free(ca);
    return status;
}

/* ---- inspect ------------------------------------------------------------- */

static const char *
iso_time(int64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

static void
print_info(size_t idx, const struct pki_cert_info *info)
{
    static const char *const key_types[] = {"other", "ec-p256", "ec-other", "rsa"};
    char before[32], after[32];
    printf("certificate[%zu]:\n", idx);
    printf("  subject_cn=%s\n", info->subject_cn);
    printf("  spiffe_id=%s\n", info->uri_count ? info->uri : "");
    printf("  uri_sans=%zu\n", info->uri_count);
    printf("  ip_sans=");
    for (size_t i = 0; i < info->ip_count; i++) {
        char ip[64];
        printf("%s%s", i ? "," : "", pki_ip_format(&info->ips[i], ip, sizeof(ip)));
    }
    printf("\n  dns_sans=%zu\n", info->dns_count);
    printf("  ca=%s\n", info->is_ca ? "true" : "false");
    printf("  key_usage=%s%s%s%s\n", info->has_key_usage ? "" : "(absent)",
           info->key_usage & PKI_KU_DIGITAL_SIGNATURE ? "digitalSignature " : "",
           info->key_usage & PKI_KU_KEY_CERT_SIGN ? "keyCertSign " : "",
           info->key_usage & PKI_KU_CRL_SIGN ? "cRLSign" : "");
    printf("  ext_key_usage=%s%s\n", info->eku_server_auth ? "serverAuth " : "",
           info->eku_client_auth ? "clientAuth" : "");
    printf("  not_before=%s (%" PRId64 ")\n", iso_time(info->not_before, before, sizeof(before)),
           info->not_before);
    printf("  not_after=%s (%" PRId64 ")\n", iso_time(info->not_after, after, sizeof(after)),
           info->not_after);
    printf("  lifetime_seconds=%" PRId64 "\n", info->not_after - info->not_before);
    printf("  serial=%s\n", info->serial_hex);
    printf("  key=%s\n", key_types[info->key_type]);
    printf("  sha256_fingerprint=%s\n", info->fingerprint_sha256);
}

static int
cmd_inspect(const struct options *opts)
{
    if (opts->positional_count != 1)
        return usage("inspect takes one CERT.pem");
    struct ztr_err err = {0};
    struct pki_chain *chain;
    if (load_chain(opts->positional[0], &chain, &err) != 0)
        return rejected(&err);
    int status = 0;
    for (size_t i = 0; i < pki_chain_length(chain); i++) {
        size_t len;
        const uint8_t *der = pki_chain_der(chain, i, &len);
        struct pki_cert_info info;
        if (pki_cert_info_parse(der, len, &info, &err) != 0) {
            status = rejected(&err);
            break;
        }
        print_info(i, &info);
    }
    pki_chain_free(chain);
    return status;
}

int
main(int argc, char **argv)
{
    if (argc < 2)
        return usage(NULL);
    const char *command = argv[1];
    if (strcmp(command, "--version") == 0 || strcmp(command, "version") == 0) {
        char line[256];
        build_info_line("ztr-pki", line, sizeof(line));
        printf("%s\n", line);
        return 0;
    }
    int shift = 1;
    if (strcmp(command, "ca") == 0) {
        if (argc < 3)
            return usage("ca needs a subcommand: init or intermediate");
        shift = 2;
    }
    struct options opts;
    int rc = parse_options(argc - shift, argv + shift, &opts);
    if (rc != 0)
        return rc;
    struct ztr_err err = {0};
    if (pki_init(&err) != 0)
        return rejected(&err);
    if (strcmp(command, "parse-id") == 0)
        rc = cmd_parse_id(&opts);
    else if (strcmp(command, "verify") == 0)
        rc = cmd_verify(&opts);
    else if (strcmp(command, "ca") == 0 && strcmp(argv[2], "init") == 0)
        rc = cmd_ca_init(&opts);
    else if (strcmp(command, "ca") == 0 && strcmp(argv[2], "intermediate") == 0)
        rc = cmd_ca_intermediate(&opts);
    else if (strcmp(command, "keygen") == 0)
        rc = cmd_keygen(&opts);
    else if (strcmp(command, "csr") == 0)
        rc = cmd_csr(&opts);
    else if (strcmp(command, "issue") == 0)
        rc = cmd_issue(&opts);
    else if (strcmp(command, "inspect") == 0)
        rc = cmd_inspect(&opts);
    else if (strcmp(command, "--help") == 0 || strcmp(command, "help") == 0)
        rc = (fputs(usage_text, stdout), 0);
    else
        rc = usage("unknown command");
    pki_cleanup();
    return rc;
}
