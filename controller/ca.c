/* The controller's CAs. Managed CAs live in STATE_DIR/ca/ as ca-<n>.crt and
 * ca-<n>.key (0600, never overwritten) plus state.json naming the signer and
 * when each older CA may leave the bundle. An operator CA (CA_CERT/CA_KEY)
 * is used as is and never rotated by us.
 *
 * Controllers sharing a PostgreSQL store share their CAs through it
 * (ca_set_share): certificates as they are, keys sealed with the seal key
 * every controller reads from CA_SEAL_KEY_FILE; a rotation or a pruning
 * through one reaches the others (ca_set_reload at their store's "ca"). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/log.h"
#include "controller/controller.h"
#include "controller/store.h"

#define CA_MAX 8
#define CA_FILE_MAX (64 * 1024)
#define CA_LIFETIME_S (365LL * 86400)

struct ca_entry {
    int number;
    int64_t retire_at;   /* 0 = keep */
    struct pki_ca *ca;
};

struct ca_set {
    const struct ztr_clock *clock;
    char dir[1100];
    char trust_domain[PKI_TRUST_DOMAIN_MAX + 1];
    bool operator_managed;
    struct ca_entry entries[CA_MAX];
    size_t count;
    int signer;          /* number of the signing CA */
    int64_t version;     /* bumped whenever the bundle changes */
    struct store *shared; /* CAs kept in the store instead of files (cluster) */
    uint8_t seal_key[PKI_SEAL_KEY_BYTES];
};

static void
free_entries(struct ca_set *cas)
{
    for (size_t i = 0; i < cas->count; i++)
        pki_ca_free(cas->entries[i].ca);
    cas->count = 0;
}

static struct ca_entry *
entry_by_number(struct ca_set *cas, int number)
{
    for (size_t i = 0; i < cas->count; i++)
        if (cas->entries[i].number == number)
            return &cas->entries[i];
    return NULL;
}

static int
ca_path(const struct ca_set *cas, int number, const char *ext, char *out, size_t cap,
        struct ztr_err *err)
{
    int n = snprintf(out, cap, "%s/ca-%d.%s", cas->dir, number, ext);
    if (n < 0 || (size_t)n >= cap)
        return ztr_err_set(err, ZTR_E_LIMIT, "path too long under %s", cas->dir);
    return 0;
}

static void
free_secret(char *data, size_t len)
{
    if (data != NULL)
        explicit_bzero(data, len);
    free(data);
}

/* Reads a CA certificate and key; every failure names the file. A managed
 * key (in STATE_DIR) must be private; an operator's CA_KEY is theirs. */
static int
load_ca_files(const char *cert_path, const char *key_path, bool managed, struct pki_ca **ca,
              struct ztr_err *err)
{
    char *cert = NULL, *key = NULL;
    size_t cert_len = 0, key_len = 0;
    int rc = file_read_all(cert_path, CA_FILE_MAX, &cert, &cert_len, err);
    if (rc == 0 && managed)
        rc = file_ensure_private(key_path, err);
    if (rc == 0)
        rc = file_read_all(key_path, CA_FILE_MAX, &key, &key_len, err);
    if (rc != 0) {
        free(cert);
        return ztr_err_wrap(err, PKI_MSG_READ_CA);
    }
    rc = pki_ca_load(cert, cert_len, key, key_len, ca, err);
    free(cert);
    free_secret(key, key_len);
    return rc;
}

static int
check_trust_domain(const struct ca_set *cas, struct pki_ca *ca, struct ztr_err *err)
{
    const struct pki_cert_info *info = pki_ca_info(ca);
    struct pki_spiffe_id id;
    if (info->uri_count == 1 && pki_spiffe_id_parse(info->uri, &id, NULL) == 0 &&
        strcmp(id.trust_domain, cas->trust_domain) != 0)
        return ztr_err_set(err, PKI_E_TRUST_DOMAIN_MISMATCH,
                           PKI_MSG_TRUST_DOMAIN_MISMATCH ": CA is for %s, TRUST_DOMAIN is %s",
                           id.trust_domain, cas->trust_domain);
    return 0;
}

static int
save_state(struct ca_set *cas, struct ztr_err *err)
{
    json_t *list = json_array();
    for (size_t i = 0; i < cas->count; i++)
        json_array_append_new(list, json_pack("{s:i, s:I}", "n", cas->entries[i].number,
                                              "retire_at", (json_int_t)cas->entries[i].retire_at));
    json_t *state = json_pack("{s:i, s:I, s:o}", "signer", cas->signer, "version",
                              (json_int_t)cas->version, "cas", list);
    char *text = json_dumps(state, JSON_INDENT(2));
    json_decref(state);
    if (text == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    char path[1200];
    if (file_path_join(path, sizeof(path), cas->dir, "state.json", err) != 0) {
        free(text);
        return -1;
    }
    int rc = file_write_atomic(path, text, strlen(text), 0600, err);
    free(text);
    return rc;
}

/*
 * A CA's key and certificate are two files; state.json, written after both,
 * is what commits them. Files of a number state.json does not list are what
 * a crash between those writes left (a key without its certificate, or a
 * pair never committed): nothing was signed with them, so they are removed
 * and the CA made afresh, rather than the exclusive create failing on
 * every start from then on.
 */
static int
drop_uncommitted(int number, const char *key_path, const char *cert_path, struct ztr_err *err)
{
    bool dropped = false;
    const char *paths[] = {key_path, cert_path};
    for (size_t i = 0; i < 2; i++) {
        if (unlink(paths[i]) == 0) {
            dropped = true;
        } else if (errno != ENOENT) {
            char reason[128];
            return ztr_err_set(err, ZTR_E_IO, "unlink %s: %s", paths[i],
                               file_strerror(errno, reason, sizeof(reason)));
        }
    }
    if (dropped)
        log_warn("CA files left by an interrupted creation removed", "ca=%d", number);
    return 0;
}

/* Makes CA number n, writing its key exclusively before its certificate. */
static int
create_ca(struct ca_set *cas, int number, struct ztr_err *err)
{
    if (cas->count == CA_MAX)
        return ztr_err_set(err, ZTR_E_LIMIT, "more than %d CAs in the bundle", CA_MAX);
    struct pki_ca *ca;
    TRY(pki_ca_create(cas->trust_domain, clock_wall_s(cas->clock), CA_LIFETIME_S, &ca, err));
    char cert_path[1200], key_path[1200];
    char *cert = NULL, *key = NULL;
    size_t cert_len = 0, key_len = 0;
    int rc = ca_path(cas, number, "crt", cert_path, sizeof(cert_path), err);
    if (rc == 0)
        rc = ca_path(cas, number, "key", key_path, sizeof(key_path), err);
    if (rc == 0)
        rc = pki_ca_cert_pem(ca, &cert, &cert_len, err);
    if (rc == 0)
        rc = pki_ca_key_pem(ca, &key, &key_len, err);
    if (rc == 0 && cas->shared == NULL)
        rc = drop_uncommitted(number, key_path, cert_path, err);
    if (rc == 0 && cas->shared == NULL)
        rc = file_create_exclusive(key_path, key, key_len, 0600, err);
    if (rc == 0 && cas->shared == NULL)
        rc = file_write_atomic(cert_path, cert, cert_len, 0644, err);
    free(cert);
    free_secret(key, key_len);
    if (rc != 0) {
        pki_ca_free(ca);
        return -1;
    }
    cas->entries[cas->count++] = (struct ca_entry){number, 0, ca};
    log_info("created CA", "ca=%d fingerprint=%s", number, pki_ca_info(ca)->fingerprint_sha256);
    return 0;
}

static int
load_state(struct ca_set *cas, struct ztr_err *err)
{
    char path[1200];
    TRY(file_path_join(path, sizeof(path), cas->dir, "state.json", err));
    char *text;
    size_t len;
    TRY(file_read_all(path, CA_FILE_MAX, &text, &len, err));
    json_error_t jerr;
    json_t *state = json_loadb(text, len, 0, &jerr);
    free(text);
    json_t *list = state ? json_object_get(state, "cas") : NULL;
    if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > CA_MAX) {
        json_decref(state);
        return ztr_err_set(err, ZTR_E_INVALID, "%s: unreadable CA state", path);
    }
    cas->signer = (int)json_integer_value(json_object_get(state, "signer"));
    cas->version = json_integer_value(json_object_get(state, "version"));
    size_t i;
    json_t *item;
    int rc = 0;
    json_array_foreach(list, i, item) {
        int number = (int)json_integer_value(json_object_get(item, "n"));
        char cert_path[1200], key_path[1200];
        struct pki_ca *ca = NULL;
        rc = ca_path(cas, number, "crt", cert_path, sizeof(cert_path), err);
        if (rc == 0)
            rc = ca_path(cas, number, "key", key_path, sizeof(key_path), err);
        if (rc == 0)
            rc = load_ca_files(cert_path, key_path, true, &ca, err);
        if (rc != 0)
            break;
        cas->entries[cas->count++] =
            (struct ca_entry){number, json_integer_value(json_object_get(item, "retire_at")), ca};
    }
    json_decref(state);
    if (rc == 0 && entry_by_number(cas, cas->signer) == NULL)
        rc = ztr_err_set(err, ZTR_E_INVALID, "%s: signer CA %d is missing", path, cas->signer);
    return rc;
}

static int
open_managed(struct ca_set *cas, const char *state_dir, struct ztr_err *err)
{
    int n = snprintf(cas->dir, sizeof(cas->dir), "%s/ca", state_dir);
    if (n < 0 || (size_t)n >= sizeof(cas->dir))
        return ztr_err_set(err, ZTR_E_LIMIT, "STATE_DIR too long");
    TRY(file_ensure_dir(cas->dir, 0700, err));
    char state_path[1200];
    TRY(file_path_join(state_path, sizeof(state_path), cas->dir, "state.json", err));
    char *probe;
    struct ztr_err probe_err;
    if (file_read_all(state_path, CA_FILE_MAX, &probe, NULL, &probe_err) == 0) {
        free(probe);
        return load_state(cas, err);
    }
    if (probe_err.code != ZTR_E_NOT_FOUND) {
        *err = probe_err;
        return -1;
    }
    cas->signer = 1;
    cas->version = 1;
    TRY(create_ca(cas, 1, err));
    return save_state(cas, err);
}

int
ca_set_open(const struct controller_settings *settings, const struct ztr_clock *clock,
            struct ca_set **out, struct ztr_err *err)
{
    struct ca_set *cas = calloc(1, sizeof(*cas));
    if (cas == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    cas->clock = clock;
    snprintf(cas->trust_domain, sizeof(cas->trust_domain), "%s", settings->trust_domain);
    int rc;
    if (settings->ca_cert[0] != '\0' || settings->ca_key[0] != '\0') {
        struct pki_ca *ca = NULL;
        if (settings->ca_cert[0] == '\0' || settings->ca_key[0] == '\0')
            rc = ztr_err_set(err, ZTR_E_CONFIG, PKI_MSG_READ_CA ": CA_CERT and CA_KEY go together");
        else
            rc = load_ca_files(settings->ca_cert, settings->ca_key, false, &ca, err);
        if (rc == 0) {
            cas->operator_managed = true;
            cas->entries[cas->count++] = (struct ca_entry){1, 0, ca};
            cas->signer = 1;
            cas->version = 1;
        }
    } else {
        rc = open_managed(cas, settings->state_dir, err);
    }
    for (size_t i = 0; rc == 0 && i < cas->count; i++)
        rc = check_trust_domain(cas, cas->entries[i].ca, err);
    if (rc != 0) {
        ca_set_free(cas);
        return -1;
    }
    *out = cas;
    return 0;
}

void
ca_set_free(struct ca_set *cas)
{
    if (cas == NULL)
        return;
    free_entries(cas);
    explicit_bzero(cas->seal_key, sizeof(cas->seal_key));
    free(cas);
}

struct pki_ca *
ca_set_signer(struct ca_set *cas)
{
    struct ca_entry *entry = entry_by_number(cas, cas->signer);
    return entry ? entry->ca : NULL;
}

struct pki_ca *
ca_set_oldest(struct ca_set *cas)
{
    /* Entries are kept in creation order (rotation appends, pruning keeps
     * the order). */
    return cas->count > 0 ? cas->entries[0].ca : NULL;
}

int
ca_set_bundle_pem(const struct ca_set *cas, char **pem, size_t *len, struct ztr_err *err)
{
    struct pki_ca *list[CA_MAX];
    for (size_t i = 0; i < cas->count; i++)
        list[i] = cas->entries[i].ca;
    return pki_cas_to_pem(list, cas->count, pem, len, err);
}

int64_t
ca_set_bundle_version(const struct ca_set *cas)
{
    return cas->version;
}

/* ---- shared through the store ------------------------------------------------- */

static void
seal_context(const struct ca_set *cas, int number, char *out, size_t cap)
{
    /* Binds each sealed key to its row and trust domain: a key moved to
     * another number, or another cluster's, does not unseal. */
    snprintf(out, cap, "ztr-ca-key/%d/%s", number, cas->trust_domain);
}

/* The in-memory set as the store's rows; keys sealed. */
static int
share_put(struct ca_set *cas, struct ztr_err *err)
{
    struct store_ca_set *set = calloc(1, sizeof(*set));
    if (set == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    set->signer = cas->signer;
    set->version = cas->version;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < cas->count; i++) {
        struct store_ca *row = &set->cas[set->count++];
        row->number = cas->entries[i].number;
        row->retire_at = cas->entries[i].retire_at;
        char *cert = NULL, *key = NULL;
        size_t cert_len = 0, key_len = 0;
        uint8_t *sealed = NULL;
        size_t sealed_len = 0;
        char context[PKI_TRUST_DOMAIN_MAX + 32];
        seal_context(cas, row->number, context, sizeof(context));
        rc = pki_ca_cert_pem(cas->entries[i].ca, &cert, &cert_len, err);
        if (rc == 0)
            rc = pki_ca_key_pem(cas->entries[i].ca, &key, &key_len, err);
        if (rc == 0)
            rc = pki_seal(cas->seal_key, context, (const uint8_t *)key, key_len, &sealed,
                          &sealed_len, err);
        if (rc == 0 && (cert_len >= sizeof(row->cert_pem) ||
                        sealed_len > sizeof(row->key_sealed)))
            rc = ztr_err_set(err, ZTR_E_LIMIT, "CA %d does not fit its row", row->number);
        if (rc == 0) {
            memcpy(row->cert_pem, cert, cert_len);
            row->cert_pem[cert_len] = '\0';
            memcpy(row->key_sealed, sealed, sealed_len);
            row->key_sealed_len = sealed_len;
        }
        free(cert);
        free_secret(key, key_len);
        free(sealed);
    }
    if (rc == 0)
        rc = store_ca_put(cas->shared, set, err);
    free(set);
    return rc;
}

/* Replaces the in-memory set by the store's; *found false when it holds
 * none. */
static int
share_load(struct ca_set *cas, bool *found, struct ztr_err *err)
{
    *found = false;
    struct store_ca_set *set = calloc(1, sizeof(*set));
    if (set == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int rc = store_ca_get(cas->shared, set, err);
    if (rc != 0 || set->version == 0) {
        free(set);
        return rc;
    }
    struct ca_entry loaded[CA_MAX];
    size_t count = 0;
    for (size_t i = 0; rc == 0 && i < set->count && i < CA_MAX; i++) {
        const struct store_ca *row = &set->cas[i];
        char context[PKI_TRUST_DOMAIN_MAX + 32];
        seal_context(cas, row->number, context, sizeof(context));
        uint8_t *key = NULL;
        size_t key_len = 0;
        struct pki_ca *ca = NULL;
        rc = pki_unseal(cas->seal_key, context, row->key_sealed, row->key_sealed_len, &key,
                        &key_len, err);
        if (rc != 0)
            ztr_err_wrap(err, "CA %d in the store", row->number);
        if (rc == 0)
            rc = pki_ca_load(row->cert_pem, strlen(row->cert_pem), (const char *)key, key_len,
                             &ca, err);
        free_secret((char *)key, key_len);
        if (rc == 0)
            rc = check_trust_domain(cas, ca, err);
        if (rc != 0) {
            pki_ca_free(ca);
            break;
        }
        loaded[count++] = (struct ca_entry){row->number, row->retire_at, ca};
    }
    bool has_signer = false;
    for (size_t i = 0; i < count; i++)
        has_signer |= loaded[i].number == set->signer;
    if (rc == 0 && !has_signer)
        rc = ztr_err_set(err, ZTR_E_INVALID, "the store's signer CA %d is missing", set->signer);
    if (rc != 0) {
        for (size_t i = 0; i < count; i++)
            pki_ca_free(loaded[i].ca);
        free(set);
        return -1;
    }
    free_entries(cas);
    memcpy(cas->entries, loaded, count * sizeof(loaded[0]));
    cas->count = count;
    cas->signer = set->signer;
    cas->version = set->version;
    *found = true;
    free(set);
    return 0;
}

/* A change made here, written where the set lives. Shared: if another
 * controller changed the set first, this one is dropped and the store's
 * taken instead. */
static int
persist(struct ca_set *cas, struct ztr_err *err)
{
    if (cas->shared == NULL)
        return save_state(cas, err);
    if (share_put(cas, err) == 0)
        return 0;
    struct ztr_err reload = {0};
    bool found;
    if (share_load(cas, &found, &reload) != 0)
        log_error("CA set not reloaded", "error=\"%s\"", reload.msg);
    return -1;
}

int
ca_set_share(struct ca_set *cas, struct store *store, const uint8_t seal_key[PKI_SEAL_KEY_BYTES],
             struct ztr_err *err)
{
    if (cas->operator_managed)
        return 0; /* the operator's CA files are each controller's already */
    cas->shared = store;
    memcpy(cas->seal_key, seal_key, PKI_SEAL_KEY_BYTES);
    bool found;
    TRY(share_load(cas, &found, err));
    if (found) {
        log_info("CA set from the store", "cas=%zu signer=%d bundle_version=%lld", cas->count,
                 cas->signer, (long long)cas->version);
        return 0;
    }
    /* The first controller of the cluster: its set goes into the store. A
     * controller starting at the same moment may have won: take its. */
    if (share_put(cas, err) == 0) {
        log_info("CA set put into the store", "cas=%zu signer=%d", cas->count, cas->signer);
        return 0;
    }
    TRY(share_load(cas, &found, err));
    if (!found)
        return ztr_err_set(err, ZTR_E_IO, "the CA set could not be stored");
    return 0;
}

int
ca_set_reload(struct ca_set *cas, bool *changed, struct ztr_err *err)
{
    *changed = false;
    if (cas->shared == NULL)
        return 0;
    int64_t before = cas->version;
    bool found;
    TRY(share_load(cas, &found, err));
    *changed = found && cas->version != before;
    return 0;
}

int
ca_set_rotate(struct ca_set *cas, int64_t svid_ttl_s, struct ztr_err *err)
{
    if (cas->operator_managed)
        return ztr_err_set(err, ZTR_E_INVALID,
                           "the CA is operator-managed (CA_CERT/CA_KEY): rotate it outside ztr");
    int next = 0;
    for (size_t i = 0; i < cas->count; i++)
        if (cas->entries[i].number > next)
            next = cas->entries[i].number;
    next++;
    TRY(create_ca(cas, next, err));
    /* Leaves signed by the old signer live at most one SVID lifetime more;
     * until then agents must keep trusting it. */
    struct ca_entry *old = entry_by_number(cas, cas->signer);
    if (old != NULL)
        old->retire_at = clock_wall_s(cas->clock) + svid_ttl_s + 60;
    cas->signer = next;
    cas->version++;
    TRY(persist(cas, err));
    log_info("CA rotated", "signer=%d bundle_version=%lld", next, (long long)cas->version);
    return 0;
}

int
ca_set_prune(struct ca_set *cas, bool *changed, struct ztr_err *err)
{
    *changed = false;
    int64_t now = clock_wall_s(cas->clock);
    for (size_t i = 0; i < cas->count;) {
        struct ca_entry *entry = &cas->entries[i];
        if (entry->number != cas->signer && entry->retire_at != 0 && entry->retire_at <= now) {
            log_info("CA retired from the bundle", "ca=%d", entry->number);
            pki_ca_free(entry->ca);
            memmove(entry, entry + 1, (cas->count - i - 1) * sizeof(*entry));
            cas->count--;
            *changed = true;
            continue;
        }
        i++;
    }
    if (*changed) {
        cas->version++;
        TRY(persist(cas, err));
    }
    return 0;
}

json_t *
ca_set_describe(const struct ca_set *cas)
{
    json_t *list = json_array();
    for (size_t i = 0; i < cas->count; i++) {
        const struct pki_cert_info *info = pki_ca_info(cas->entries[i].ca);
        json_array_append_new(
            list, json_pack("{s:i, s:s, s:I, s:b, s:I, s:b}", "number", cas->entries[i].number,
                            "fingerprint", info->fingerprint_sha256, "not_after",
                            (json_int_t)info->not_after, "signer",
                            cas->entries[i].number == cas->signer, "retire_at",
                            (json_int_t)cas->entries[i].retire_at, "operator_managed",
                            cas->operator_managed));
    }
    return list;
}

int
ca_set_issue(struct ca_set *cas, const struct pki_spiffe_id *id, const uint8_t *public_der,
             size_t public_len, const struct pki_ip *ips, size_t ip_count, int64_t ttl_s,
             char **chain_pem, size_t *chain_len, struct ztr_err *err)
{
    struct pki_ca *signer = ca_set_signer(cas);
    if (signer == NULL)
        return ztr_err_set(err, ZTR_E_INVALID, "no signing CA");
    int64_t now = clock_wall_s(cas->clock);
    struct pki_leaf_request request = {id, public_der, public_len, ips, ip_count, now - 60,
                                       now + ttl_s, NULL, 0};
    return pki_ca_issue(signer, &request, chain_pem, chain_len, err);
}

int
ca_set_open_shared(const struct controller_settings *settings, const struct ztr_clock *clock,
                   struct store *store, const uint8_t seal_key[PKI_SEAL_KEY_BYTES],
                   struct ca_set **out, struct ztr_err *err)
{
    *out = NULL;
    bool operator_ca = settings->ca_cert[0] != '\0' || settings->ca_key[0] != '\0';
    struct store_ca_set *probe = calloc(1, sizeof(*probe));
    if (probe == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    int rc = operator_ca ? 0 : store_ca_get(store, probe, err);
    int64_t stored = probe->version;
    free(probe);
    TRY(rc);
    if (operator_ca || stored == 0) {
        /* An operator's CA, or the cluster's first controller: its own
         * (files) first, then into the store. */
        TRY(ca_set_open(settings, clock, out, err));
        if (ca_set_share(*out, store, seal_key, err) != 0) {
            ca_set_free(*out);
            *out = NULL;
            return -1;
        }
        return 0;
    }
    /* A controller joining: the store's set, and no files of its own. */
    struct ca_set *cas = calloc(1, sizeof(*cas));
    if (cas == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    cas->clock = clock;
    snprintf(cas->trust_domain, sizeof(cas->trust_domain), "%s", settings->trust_domain);
    if (ca_set_share(cas, store, seal_key, err) != 0) {
        ca_set_free(cas);
        return -1;
    }
    *out = cas;
    return 0;
}
