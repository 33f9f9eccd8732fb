/* The identity in STATE_DIR: key, certificate chain, bundle, node.json. */
#include "agent/internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/log.h"


static int
state_path(const struct agent *a, const char *name, char *out, size_t cap, struct ztr_err *err)
{
    if (file_path_join(out, cap, a->state_dir, name, err) != 0)
        return ztr_err_wrap(err, "STATE_DIR");
    return 0;
}

int
agent_write_state_file(const struct agent *a, const char *name, const char *text, size_t len,
                 mode_t mode, struct ztr_err *err)
{
    char path[1200];
    TRY(state_path(a, name, path, sizeof(path), err));
    return file_write_atomic(path, text, len, mode, err);
}

void
agent_replace_text(char **field, size_t *field_len, char *value, size_t len, bool secret)
{
    if (*field != NULL && secret)
        explicit_bzero(*field, *field_len);
    free(*field);
    *field = value;
    *field_len = len;
}

/* Reads notBefore/notAfter and the SPIFFE ID of the leaf in chain_pem. */
static int
leaf_facts(const char *chain_pem, size_t len, struct pki_cert_info *info, struct ztr_err *err)
{
    struct pki_chain *chain;
    TRY(pki_chain_from_pem(chain_pem, len, &chain, err));
    size_t der_len;
    const uint8_t *der = pki_chain_der(chain, 0, &der_len);
    int rc = pki_cert_info_parse(der, der_len, info, err);
    pki_chain_free(chain);
    return rc;
}

/* Parses the identity's key (a->key, for proofs of possession) and checks
 * that it is the key the certificate certifies: a pair torn by an older
 * version, or files copied from two places, is refused here with its name
 * instead of failing every handshake later. */
static int
key_matches_chain(struct agent *a, struct ztr_err *err)
{
    struct pki_key *key;
    struct pki_chain *chain;
    if (pki_key_from_pem(a->key_pem, a->key_len, &key, err) != 0)
        return ztr_err_wrap(err, "key.pem");
    if (pki_chain_from_pem(a->chain_pem, a->chain_len, &chain, err) != 0) {
        pki_key_free(key);
        return -1;
    }
    uint8_t *spki = NULL;
    size_t spki_len = 0, leaf_len = 0;
    const uint8_t *leaf = pki_chain_leaf_public_key(chain, &leaf_len);
    int same = leaf != NULL && pki_key_public_der(key, &spki, &spki_len, err) == 0
                   ? pki_public_key_equal(spki, spki_len, leaf, leaf_len, err)
                   : -1;
    free(spki);
    pki_chain_free(chain);
    if (same != 1) {
        pki_key_free(key);
        return ztr_err_set(err, ZTR_E_CONFIG,
                           AGENT_MSG_IDENTITY_INCOMPLETE ": key.pem is not the key of cert.pem "
                           "in %s (move both aside and enroll again with a new token)",
                           a->state_dir);
    }
    pki_key_free(a->key);
    a->key = key;
    return 0;
}

/* Makes the loaded identity current: dates, renewal time, TLS context.
 * received_at: when a certificate that just arrived (enrollment, renewal)
 * was received; 0 for one loaded from STATE_DIR. */
int
agent_adopt_identity(struct agent *a, int64_t received_at, struct ztr_err *err)
{
    struct pki_cert_info info;
    TRY(leaf_facts(a->chain_pem, a->chain_len, &info, err));
    TRY(key_matches_chain(a, err));
    a->not_before = info.not_before;
    a->not_after = info.not_after;
    snprintf(a->cert_serial, sizeof(a->cert_serial), "%s", info.serial_hex);
    snprintf(a->spiffe_id, sizeof(a->spiffe_id), "%s", info.uri);
    int jitter = (int)(a->renew_backoff.rng_state % 201) - 100;
    /* The controller backdates notBefore by 60 s of clock-skew allowance.
     * Counted as lifetime, that minute put 50 % of a short SVID (SVID_TTL
     * under ~90 s) before the moment it arrived: every renewed certificate
     * was due again at once and the agent renewed in a tight loop
     * (thousands a second). A certificate that just arrived counts its
     * lifetime from its arrival; one loaded from disk keeps notBefore, which
     * can only make the first renewal earlier, never later. */
    int64_t start = a->not_before;
    if (received_at > start && received_at < a->not_after)
        start = received_at;
    a->renew_at = agent_renew_at(start, a->not_after, jitter);
    if (a->ctl_tls == NULL) {
        struct tls_ctx_config config = {
            .side = TLS_SIDE_CLIENT, .alpn = CTL_ALPN, .chain_pem = a->chain_pem,
            .chain_len = a->chain_len, .key_pem = a->key_pem, .key_len = a->key_len,
            .bundle_pem = a->bundle_pem, .bundle_len = a->bundle_len, .clock = a->clock};
        TRY(tls_ctx_new(&config, &a->ctl_tls, err));
    } else {
        TRY(tls_ctx_update(a->ctl_tls, a->chain_pem, a->chain_len, a->key_pem, a->key_len,
                           a->bundle_pem, a->bundle_len, err));
    }
    /* New data-plane handshakes present the new certificate; sessions
     * already up keep theirs (nothing is torn down). */
    agent_refresh_trusts(a);
    if (a->data_tls != NULL) {
        TRY(tls_ctx_update(a->data_tls, a->chain_pem, a->chain_len, a->key_pem, a->key_len,
                           NULL, 0, err));
        TRY(tls_ctx_update_trust(a->data_tls, a->data_trusts, a->data_trust_count, err));
    }
    a->have_identity = true;
    agent_arm_expiry(a);
    return 0;
}

/*
 * The key and the certificate are two files, and a crash between their
 * writes once left a new key beside the old certificate: a pair that can
 * never complete a handshake. A change is now staged beside them and
 * committed in an order that makes recovery certain:
 *
 *   1. key.pem.new   (0600)   — a crash here: key.pem.new alone → dropped
 *   2. cert.pem.new           — the commit point: from here on, forward
 *   3. key.pem.new  → key.pem
 *   4. cert.pem.new → cert.pem
 *
 * Each write is itself atomic (file_write_atomic). On start,
 * settle_staged_pair() finishes steps 3-4 when cert.pem.new exists and
 * discards key.pem.new when it does not, so the pair loaded is always one
 * that was written together.
 */
#define STAGED_KEY "key.pem.new"
#define STAGED_CERT "cert.pem.new"
/* The key an enrollment presents, kept before the controller is asked
 * (see agent_prepare_enroll_key). */
#define ENROLL_KEY "enroll-key.pem"

static int
path_exists(const char *path, bool *exists, struct ztr_err *err)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        *exists = true;
        return 0;
    }
    *exists = false;
    if (errno == ENOENT)
        return 0;
    char reason[128];
    return ztr_err_set(err, ZTR_E_IO, "stat %s: %s", path,
                       file_strerror(errno, reason, sizeof(reason)));
}

static int
settle_staged_pair(const struct agent *a, struct ztr_err *err)
{
    char key_new[1200], cert_new[1200], key[1200], cert[1200];
    TRY(state_path(a, STAGED_KEY, key_new, sizeof(key_new), err));
    TRY(state_path(a, STAGED_CERT, cert_new, sizeof(cert_new), err));
    TRY(state_path(a, "key.pem", key, sizeof(key), err));
    TRY(state_path(a, "cert.pem", cert, sizeof(cert), err));
    bool have_key_new, have_cert_new;
    TRY(path_exists(key_new, &have_key_new, err));
    TRY(path_exists(cert_new, &have_cert_new, err));
    if (have_cert_new) {
        if (have_key_new)
            TRY(file_rename(key_new, key, err));
        TRY(file_rename(cert_new, cert, err));
        log_warn("identity change interrupted by a crash: completed", "state_dir=%s",
                 a->state_dir);
    } else if (have_key_new) {
        if (unlink(key_new) != 0) {
            char reason[128];
            return ztr_err_set(err, ZTR_E_IO, "unlink %s: %s", key_new,
                               file_strerror(errno, reason, sizeof(reason)));
        }
        log_warn("identity change interrupted by a crash: discarded, previous identity kept",
                 "state_dir=%s", a->state_dir);
    }
    return 0;
}

static int
remove_state_file(const struct agent *a, const char *name, struct ztr_err *err)
{
    char path[1200];
    TRY(state_path(a, name, path, sizeof(path), err));
    if (unlink(path) != 0 && errno != ENOENT) {
        char reason[128];
        return ztr_err_set(err, ZTR_E_IO, "unlink %s: %s", path,
                           file_strerror(errno, reason, sizeof(reason)));
    }
    return 0;
}

/* A crash inside file_write_atomic leaves its temporary ("<name>.tmp.<pid>.<n>")
 * behind; the write it belonged to never happened, so it is only litter. */
static void
remove_stale_temporaries(const struct agent *a)
{
    DIR *dir = opendir(a->state_dir);
    if (dir == NULL)
        return;
    struct dirent *entry;
    unsigned removed = 0;
    while ((entry = readdir(dir)) != NULL) {
        const char *tmp = strstr(entry->d_name, ".tmp.");
        if (tmp == NULL || tmp == entry->d_name || strspn(tmp + 5, "0123456789.") != strlen(tmp + 5))
            continue;
        char path[1200];
        struct ztr_err ignored;
        if (state_path(a, entry->d_name, path, sizeof(path), &ignored) == 0 && unlink(path) == 0)
            removed++;
    }
    closedir(dir);
    if (removed > 0)
        log_warn("unfinished writes from before a crash removed", "state_dir=%s files=%u",
                 a->state_dir, removed);
}

int
agent_load_identity(struct agent *a, bool *found, struct ztr_err *err)
{
    char path[1200];
    *found = false;
    remove_stale_temporaries(a);
    TRY(settle_staged_pair(a, err));
    char *chain = NULL, *key = NULL, *bundle = NULL, *node = NULL;
    size_t chain_len = 0, key_len = 0, bundle_len = 0, node_len = 0;
    struct ztr_err probe;
    char key_path[1200];
    bool have_key;
    TRY(state_path(a, "key.pem", key_path, sizeof(key_path), err));
    TRY(path_exists(key_path, &have_key, err));
    TRY(state_path(a, "cert.pem", path, sizeof(path), err));
    if (file_read_all(path, STATE_FILE_MAX, &chain, &chain_len, &probe) != 0) {
        if (probe.code != ZTR_E_NOT_FOUND) {
            *err = probe;
            return -1;
        }
        /* A key alone is no identity, and not a reason to enroll over it
         * either: whatever removed the certificate needs looking at. */
        if (have_key)
            return ztr_err_set(err, ZTR_E_CONFIG,
                               AGENT_MSG_IDENTITY_INCOMPLETE ": key.pem without cert.pem in %s "
                               "(move key.pem aside and enroll again with a new token)",
                               a->state_dir);
        return 0;
    }
    if (!have_key) {
        free(chain);
        return ztr_err_set(err, ZTR_E_CONFIG,
                           AGENT_MSG_IDENTITY_INCOMPLETE ": cert.pem without key.pem in %s "
                           "(move cert.pem aside and enroll again with a new token)",
                           a->state_dir);
    }
    int rc = state_path(a, "key.pem", path, sizeof(path), err);
    if (rc == 0)
        rc = file_ensure_private(path, err);
    if (rc == 0)
        rc = file_read_all(path, STATE_FILE_MAX, &key, &key_len, err);
    if (rc == 0)
        rc = state_path(a, "bundle.pem", path, sizeof(path), err);
    if (rc == 0)
        rc = file_read_all(path, STATE_FILE_MAX, &bundle, &bundle_len, err);
    if (rc == 0 && state_path(a, "node.json", path, sizeof(path), err) == 0 &&
        file_read_all(path, STATE_FILE_MAX, &node, &node_len, &probe) == 0) {
        json_t *j = json_loadb(node, node_len, 0, NULL);
        const char *id = json_string_value(json_object_get(j, "node_id"));
        snprintf(a->node_id, sizeof(a->node_id), "%s", id ? id : "");
        json_decref(j);
        free(node);
    }
    if (rc != 0) {
        free(chain);
        if (key)
            explicit_bzero(key, key_len);
        free(key);
        free(bundle);
        return ztr_err_wrap(err, AGENT_MSG_IDENTITY_INCOMPLETE " in %s", a->state_dir);
    }
    agent_replace_text(&a->chain_pem, &a->chain_len, chain, chain_len, false);
    agent_replace_text(&a->key_pem, &a->key_len, key, key_len, true);
    agent_replace_text(&a->bundle_pem, &a->bundle_len, bundle, bundle_len, false);
    *found = true;
    TRY(agent_adopt_identity(a, 0, err));
    /* Enrolled: a pending key left by a crash after the commit is key.pem. */
    struct ztr_err ignored = {0};
    if (remove_state_file(a, ENROLL_KEY, &ignored) != 0)
        log_warn("pending enrollment key not removed", "error=\"%s\"", ignored.msg);
    return 0;
}

/*
 * The enrollment key is written down before the controller hears of it:
 * the controller consumes the token when it answers, and an agent that
 * could not keep the answer (a full disk, a crash) must be able to ask
 * again with the same key, which the controller recognises (the same
 * token and key give back the same node). A disk that cannot take the key
 * fails here, before the token is spent. A restart reuses the key.
 */
int
agent_prepare_enroll_key(struct agent *a, struct ztr_err *err)
{
    char path[1200];
    TRY(state_path(a, ENROLL_KEY, path, sizeof(path), err));
    char *pem = NULL;
    size_t len = 0;
    struct ztr_err probe = {0};
    if (file_ensure_private(path, err) != 0)
        return -1;
    if (file_read_all(path, STATE_FILE_MAX, &pem, &len, &probe) == 0) {
        struct pki_key *key = NULL;
        int rc = pki_key_from_pem(pem, len, &key, err);
        explicit_bzero(pem, len);
        free(pem);
        if (rc != 0)
            return ztr_err_wrap(err, "%s (a pending enrollment key; move it aside to make a "
                                "new one)", path);
        pki_key_free(a->pending_key);
        a->pending_key = key;
        log_info("enrolling with the pending key kept by an earlier attempt", "path=%s", path);
        return 0;
    }
    if (probe.code != ZTR_E_NOT_FOUND) {
        *err = probe;
        return -1;
    }
    struct pki_key *key = NULL;
    TRY(pki_key_generate(&key, err));
    int rc = pki_key_to_pem(key, &pem, &len, err);
    if (rc == 0) {
        rc = agent_write_state_file(a, ENROLL_KEY, pem, len, 0600, err);
        explicit_bzero(pem, len);
        free(pem);
    }
    if (rc != 0) {
        pki_key_free(key);
        return ztr_err_wrap(err, "cannot keep the enrollment key in %s before enrolling (the "
                            "token was not used; free the disk and start again)",
                            a->state_dir);
    }
    pki_key_free(a->pending_key);
    a->pending_key = key;
    return 0;
}

int
agent_enroll_csr(struct agent *a, char **csr_pem, struct ztr_err *err)
{
    size_t csr_len;
    if (a->pending_key == NULL)
        TRY(agent_prepare_enroll_key(a, err));
    return pki_csr_create(a->pending_key, a->node_name, csr_pem, &csr_len, err);
}

int
agent_enrollment_kept(struct agent *a, struct ztr_err *err)
{
    return remove_state_file(a, ENROLL_KEY, err);
}

int
agent_new_pending_key(struct agent *a, char **csr_pem, struct ztr_err *err)
{
    size_t csr_len;
    pki_key_free(a->pending_key);
    a->pending_key = NULL;
    /* The key is made here and never leaves the host. */
    TRY(pki_key_generate(&a->pending_key, err));
    return pki_csr_create(a->pending_key, a->node_name, csr_pem, &csr_len, err);
}

/* Takes back a change that failed before its commit point: the staged
 * certificate first (without it the staged key is discarded anyway). */
static void
unstage_pair(const struct agent *a)
{
    struct ztr_err ignored = {0};
    if (remove_state_file(a, STAGED_CERT, &ignored) != 0 ||
        remove_state_file(a, STAGED_KEY, &ignored) != 0)
        log_warn("staged identity not removed: the next start discards it", "error=\"%s\"",
                 ignored.msg);
}

int
agent_install_pending_identity(struct agent *a, const char *chain, struct ztr_err *err)
{
    char *key_pem;
    size_t key_len;
    TRY(pki_key_to_pem(a->pending_key, &key_pem, &key_len, err));
    /* Staged, then committed (see settle_staged_pair); the key 0600, its
     * temporary file created O_EXCL. A change an earlier attempt left half
     * done is settled first, so that this key is never paired with an
     * older staged certificate. */
    char key_new[1200], cert_new[1200], key_path[1200], cert_path[1200];
    int rc = state_path(a, STAGED_KEY, key_new, sizeof(key_new), err);
    if (rc == 0)
        rc = state_path(a, STAGED_CERT, cert_new, sizeof(cert_new), err);
    if (rc == 0)
        rc = state_path(a, "key.pem", key_path, sizeof(key_path), err);
    if (rc == 0)
        rc = state_path(a, "cert.pem", cert_path, sizeof(cert_path), err);
    if (rc == 0)
        rc = settle_staged_pair(a, err);
    if (rc == 0) {
        rc = agent_write_state_file(a, STAGED_KEY, key_pem, key_len, 0600, err);
        if (rc == 0)
            rc = agent_write_state_file(a, STAGED_CERT, chain, strlen(chain), 0644, err);
        /* Before the commit point: the old pair stays, on disk and here. */
        if (rc != 0)
            unstage_pair(a);
    }
    if (rc != 0) {
        explicit_bzero(key_pem, key_len);
        free(key_pem);
        return -1;
    }
    /* Committed: the new pair is what a restart loads, so it is the one in
     * use from here even if moving it into place fails now (the next
     * change or start completes the move). */
    struct ztr_err moved = {0};
    if (file_rename(key_new, key_path, &moved) != 0 || file_rename(cert_new, cert_path, &moved) != 0)
        log_warn("identity change committed but not moved into place: completed at the next "
                 "change or start", "error=\"%s\"", moved.msg);
    agent_replace_text(&a->key_pem, &a->key_len, key_pem, key_len, true);
    agent_replace_text(&a->chain_pem, &a->chain_len, strdup(chain), strlen(chain), false);
    TRY(agent_adopt_identity(a, clock_wall_s(a->clock), err));
    /* Live data sessions present the new certificate to their peers, which
     * move their end of the session to its not_after. */
    if (a->daemon_started && a->spec->on_identity != NULL)
        a->spec->on_identity(a->spec->ctx);
    return 0;
}
