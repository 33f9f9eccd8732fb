/*
 * ctl-probe: a small control-plane client built from ctl/ and pki/, for the
 * controller's e2e tests before the real agents exist. It speaks the real
 * protocol over real mTLS.
 *
 *   ctl-probe enroll  --controller ADDR --ca CA.pem --trust-domain TD
 *                     --token T --role R --name N [--address IP[:PORT]]... --out DIR
 *                     [--key KEY.pem]
 *       writes DIR/key.pem (0600), DIR/cert.pem, DIR/bundle.pem (the key:
 *       a fresh one, or --key's, as an agent retrying with its kept key);
 *       prints "enrolled <node_id> <spiffe_id>"; a refusal prints the
 *       controller's message on stderr and exits 1.
 *   ctl-probe session --controller ADDR --dir DIR --trust-domain TD --role R
 *                     [--data-listen ADDR] [--resource NAME]... [--address IP]...
 *                     [--interval MS]
 *                     [--heartbeats N] [--duration MS] [--until TYPE]
 *                     [--renew | --renew-same-key | --renew-csr FILE] [--stale-bundle]
 *       says hello, prints every message received as one JSON line, sends N
 *       heartbeats (default: until the end), stops after --duration, after
 *       the first --until message, or when the controller closes
 *       ("closed: <reason>"). --renew writes DIR/cert.pem + key.pem anew once
 *       the renewed chain verifies against DIR/bundle.pem (kept up to date
 *       from `bundle` pushes unless --stale-bundle); if it does not, prints
 *       "internal CA mismatch during renewal", sends bundle_request, and
 *       retries the check when the bundle arrives ("renewal recovered").
 *       --renew-csr sends FILE (PEM, made elsewhere) as the renewal's CSR.
 *       --renew-serial S names S as the certificate the agent holds (the
 *       renewal's `serial`), e.g. an older one of the node's.
 *       [--send JSON]: one more frame, sent right after welcome (e.g. a
 *       drain no node of that role may send).
 *       [--counters JSON] [--rise NAME]: every heartbeat carries the counters
 *       object JSON (e.g. {"auth_unavailable":4}); with --rise, counter NAME
 *       goes up by one with each heartbeat after the first.
 *       [--send JSON]: sends that message once welcomed (a node saying
 *       what it was not asked, for hostile tests).
 *   ctl-probe raw     --controller ADDR --ca CA.pem --trust-domain TD --send JSON
 *       an unauthenticated session that sends one frame and prints replies.
 *   ctl-probe reauth  --controller ADDR --ca CA.pem --trust-domain TD --dir DIR
 *                     [--key KEY.pem] [--save FILE] [--replay FILE] [--out DIR2]
 *       re-authentication by proof of possession, as an agent whose
 *       certificate expired does it: an unauthenticated session sends
 *       reauth_begin for DIR/node.json's node, and answers the challenge
 *       with a fresh key's CSR signed by DIR/key.pem (or --key). --save
 *       writes the reauth message it sent to FILE; --replay sends FILE's
 *       message instead of answering the challenge (an attacker replaying a
 *       captured proof); --out writes DIR2/key.pem, cert.pem, bundle.pem
 *       from `reauthenticated`. Exit 0 on reauthenticated, else 1.
 *
 * Exit: 0 done, 1 refused/closed early/error, 2 usage.
 */
#define _GNU_SOURCE
#include <ev.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/bytes.h"
#include "base/clock.h"
#include "base/fileio.h"
#include "base/log.h"
#include "ctl/stream.h"
#include "net/net.h"
#include "net/tls.h"
#include "pki/pki.h"

#define FILE_MAX (256 * 1024)

struct probe {
    const char *command, *controller, *ca, *trust_domain, *token, *role, *name, *out, *dir,
        *data_listen, *send, *until, *renew_csr, *rise, *key_file, *save, *replay, *renew_serial;
    json_t *counters;      /* --counters, or NULL */
    const char *addresses[8];
    size_t address_count;
    const char *resources[8];
    size_t resource_count;
    long interval_ms, heartbeats, duration_ms;
    bool renew, renew_same_key, stale_bundle, bundle_requested;
    char *pending_chain;   /* renewed chain waiting for a bundle that verifies it */

    struct ev_loop *loop;
    struct tls_ctx *tls;
    struct ctl_stream *stream;
    ev_timer heartbeat_timer, deadline_timer;
    long heartbeats_sent;
    struct pki_key *renew_key;
    int status;
    bool done;
};

static int
usage(const char *problem)
{
    fprintf(stderr, "ctl-probe: %s\n(see the comment at the top of tests/tools/ctl_probe.c)\n",
            problem);
    return 2;
}

static void
finish(struct probe *p, int status, const char *reason)
{
    if (p->done)
        return;
    p->done = true;
    p->status = status;
    if (reason != NULL)
        printf("closed: %s\n", reason);
    fflush(stdout);
    if (p->stream != NULL)
        ctl_stream_close(p->stream, reason ? reason : "done");
    ev_timer_stop(p->loop, &p->heartbeat_timer);
    ev_timer_stop(p->loop, &p->deadline_timer);
}

static void
send_msg(struct probe *p, json_t *msg)
{
    struct ztr_err err = {0};
    /* raw mode may send anything, schema or not */
    int rc;
    if (strcmp(p->command, "raw") == 0) {
        char *text = json_dumps(msg, JSON_COMPACT);
        json_decref(msg);
        rc = ctl_stream_send_unchecked(p->stream, text, strlen(text), &err);
        free(text);
    } else {
        rc = ctl_stream_send(p->stream, msg, &err);
    }
    if (rc != 0)
        fprintf(stderr, "cannot send: %s\n", err.msg);
}

static int
write_out(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct ztr_err err = {0};
    if (file_write_atomic(path, text, strlen(text), mode, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

static void
send_renew(struct probe *p)
{
    struct ztr_err err = {0};
    struct pki_key *key = NULL;
    if (p->renew_csr != NULL) {
        char *pem;
        size_t len;
        if (file_read_all(p->renew_csr, FILE_MAX, &pem, &len, &err) != 0) {
            fprintf(stderr, "renew: %s\n", err.msg);
            return;
        }
        send_msg(p, json_pack("{s:s, s:s%}", "type", "renew", "csr", pem, len));
        free(pem);
        return;
    }
    if (p->renew_same_key) {
        char path[4096], *pem;
        size_t len;
        snprintf(path, sizeof(path), "%s/key.pem", p->dir);
        if (file_read_all(path, FILE_MAX, &pem, &len, &err) == 0) {
            pki_key_from_pem(pem, len, &key, &err);
            free(pem);
        }
    } else {
        pki_key_generate(&key, &err);
    }
    char *csr = NULL;
    size_t csr_len;
    if (key == NULL || pki_csr_create(key, p->name ? p->name : "renew", &csr, &csr_len, &err) != 0) {
        fprintf(stderr, "renew: %s\n", err.msg);
        pki_key_free(key);
        return;
    }
    p->renew_key = key;
    json_t *renew = json_pack("{s:s, s:s}", "type", "renew", "csr", csr);
    if (renew != NULL && p->renew_serial != NULL)
        json_object_set_new(renew, "serial", json_string(p->renew_serial));
    send_msg(p, renew);
    free(csr);
}

/* The agent-side renewal check: the new chain must verify against the
 * bundle this agent trusts. */
static int
chain_verifies(struct probe *p, const char *chain_pem, struct ztr_err *err)
{
    char path[4096], *bundle_pem;
    size_t bundle_len;
    snprintf(path, sizeof(path), "%s/bundle.pem", p->dir);
    TRY(file_read_all(path, FILE_MAX, &bundle_pem, &bundle_len, err));
    struct pki_bundle *bundle = NULL;
    struct pki_chain *chain = NULL;
    enum pki_role role = PKI_ROLE_NONE;
    pki_role_parse(p->role, &role);
    struct pki_expect expect = {.trust_domain = p->trust_domain, .role = role,
                                .now = clock_wall_s(clock_system())};
    int rc = pki_bundle_from_pem(bundle_pem, bundle_len, &bundle, err);
    if (rc == 0)
        rc = pki_chain_from_pem(chain_pem, strlen(chain_pem), &chain, err);
    if (rc == 0)
        rc = pki_verify(bundle, chain, &expect, NULL, err);
    pki_chain_free(chain);
    pki_bundle_free(bundle);
    free(bundle_pem);
    return rc;
}

static void
install_renewed(struct probe *p, const char *chain)
{
    char *key_pem;
    size_t key_len;
    struct ztr_err err = {0};
    if (pki_key_to_pem(p->renew_key, &key_pem, &key_len, &err) == 0) {
        write_out(p->dir, "key.pem", key_pem, 0600);
        free(key_pem);
    }
    write_out(p->dir, "cert.pem", chain, 0644);
}

static void
handle_renewed(struct probe *p, const char *chain)
{
    struct ztr_err err = {0};
    if (chain_verifies(p, chain, &err) == 0) {
        install_renewed(p, chain);
        return;
    }
    printf("internal CA mismatch during renewal: %s\n", err.msg);
    free(p->pending_chain);
    p->pending_chain = strdup(chain);
    p->bundle_requested = true;
    send_msg(p, json_pack("{s:s}", "type", "bundle_request"));
}

static void
handle_bundle(struct probe *p, const char *bundle)
{
    if (p->stale_bundle && !p->bundle_requested)
        return;
    write_out(p->dir, "bundle.pem", bundle, 0644);
    if (p->pending_chain == NULL)
        return;
    struct ztr_err err = {0};
    if (chain_verifies(p, p->pending_chain, &err) == 0) {
        install_renewed(p, p->pending_chain);
        printf("renewal recovered\n");
        fflush(stdout);
        if (p->until != NULL && strcmp(p->until, "recovered") == 0)
            finish(p, 0, NULL);
    } else {
        printf("renewal still does not verify: %s\n", err.msg);
    }
    free(p->pending_chain);
    p->pending_chain = NULL;
}

/* ---- re-authentication ------------------------------------------------------- */

static json_t *
read_json(const char *path)
{
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (j == NULL)
        fprintf(stderr, "%s: %s\n", path, jerr.text);
    return j;
}

static void
send_reauth_begin(struct probe *p)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/node.json", p->dir);
    json_t *node = read_json(path);
    if (node == NULL) {
        finish(p, 1, "no node.json");
        return;
    }
    send_msg(p, json_pack("{s:s, s:O, s:O}", "type", "reauth_begin", "node_id",
                          json_object_get(node, "node_id"), "spiffe_id",
                          json_object_get(node, "spiffe_id")));
    json_decref(node);
}

static void
answer_challenge(struct probe *p, const char *challenge)
{
    if (p->replay != NULL) {
        json_t *msg = read_json(p->replay);
        if (msg == NULL) {
            finish(p, 1, "cannot read --replay");
            return;
        }
        send_msg(p, msg);
        return;
    }
    char path[4096], *pem = NULL;
    size_t len;
    struct ztr_err err = {0};
    struct pki_key *old_key = NULL;
    snprintf(path, sizeof(path), "%s/node.json", p->dir);
    json_t *node = read_json(path);
    if (p->key_file != NULL)
        snprintf(path, sizeof(path), "%s", p->key_file);
    else
        snprintf(path, sizeof(path), "%s/key.pem", p->dir);
    char *csr = NULL;
    uint8_t *proof = NULL, *spki = NULL;
    size_t csr_len, proof_len, spki_len, sig_len;
    uint8_t sig[PKI_SIGNATURE_MAX];
    char key_hex[2 * PKI_PUBLIC_KEY_MAX + 1], sig_hex[2 * PKI_SIGNATURE_MAX + 1];
    int rc = node != NULL ? file_read_all(path, FILE_MAX, &pem, &len, &err) : -1;
    if (rc == 0)
        rc = pki_key_from_pem(pem, len, &old_key, &err);
    if (rc == 0)
        rc = pki_key_generate(&p->renew_key, &err);
    if (rc == 0)
        rc = pki_csr_create(p->renew_key, "reauth", &csr, &csr_len, &err);
    if (rc == 0)
        rc = ctlmsg_reauth_proof(challenge, json_string_value(json_object_get(node, "node_id")),
                                 json_string_value(json_object_get(node, "spiffe_id")), csr,
                                 &proof, &proof_len, &err);
    if (rc == 0)
        rc = pki_key_sign(old_key, proof, proof_len, sig, &sig_len, &err);
    if (rc == 0)
        rc = pki_key_public_der(old_key, &spki, &spki_len, &err);
    if (rc == 0) {
        bytes_hex_encode(spki, spki_len, key_hex, sizeof(key_hex));
        bytes_hex_encode(sig, sig_len, sig_hex, sizeof(sig_hex));
        json_t *msg = json_pack("{s:s, s:s, s:s, s:s}", "type", "reauth", "csr", csr, "key",
                                key_hex, "signature", sig_hex);
        if (p->save != NULL && json_dump_file(msg, p->save, JSON_COMPACT) != 0)
            fprintf(stderr, "cannot write %s\n", p->save);
        send_msg(p, msg);
    } else {
        fprintf(stderr, "reauth: %s\n", err.msg);
        finish(p, 1, "cannot answer the challenge");
    }
    free(pem);
    free(csr);
    free(proof);
    free(spki);
    pki_key_free(old_key);
    json_decref(node);
}

static void
handle_reauth_reply(struct probe *p, const json_t *msg, enum ctlmsg_type type)
{
    if (type == CTLMSG_REAUTH_CHALLENGE) {
        answer_challenge(p, json_string_value(json_object_get(msg, "challenge")));
        return;
    }
    if (type == CTLMSG_REAUTHENTICATED) {
        int rc = 0;
        if (p->out != NULL) {
            char *key_pem;
            size_t key_len;
            struct ztr_err err = {0};
            rc = pki_key_to_pem(p->renew_key, &key_pem, &key_len, &err);
            if (rc == 0) {
                rc = write_out(p->out, "key.pem", key_pem, 0600);
                free(key_pem);
            }
            if (rc == 0)
                rc = write_out(p->out, "cert.pem",
                               json_string_value(json_object_get(msg, "chain")), 0644);
            if (rc == 0)
                rc = write_out(p->out, "bundle.pem",
                               json_string_value(json_object_get(msg, "bundle")), 0644);
        }
        printf("reauthenticated %s %s\n", json_string_value(json_object_get(msg, "node_id")),
               json_string_value(json_object_get(msg, "spiffe_id")));
        finish(p, rc == 0 ? 0 : 1, NULL);
        return;
    }
    if (type == CTLMSG_ERROR)
        fprintf(stderr, "%s\n", json_string_value(json_object_get(msg, "message")));
    finish(p, 1, ctlmsg_type_name(type));
}

static void
handle(struct probe *p, const json_t *msg, enum ctlmsg_type type)
{
    char *text = json_dumps(msg, JSON_COMPACT | JSON_SORT_KEYS);
    printf("%s\n", text);
    fflush(stdout);
    free(text);
    const char *name = ctlmsg_type_name(type);
    if (strcmp(p->command, "reauth") == 0) {
        handle_reauth_reply(p, msg, type);
        return;
    }
    if (strcmp(p->command, "enroll") == 0) {
        if (type == CTLMSG_ENROLLED) {
            char *key_pem;
            size_t key_len;
            struct ztr_err err = {0};
            pki_key_to_pem(p->renew_key, &key_pem, &key_len, &err);
            int rc = write_out(p->out, "key.pem", key_pem, 0600);
            free(key_pem);
            if (rc == 0)
                rc = write_out(p->out, "cert.pem", json_string_value(json_object_get(msg, "chain")), 0644);
            if (rc == 0)
                rc = write_out(p->out, "bundle.pem", json_string_value(json_object_get(msg, "bundle")), 0644);
            printf("enrolled %s %s\n", json_string_value(json_object_get(msg, "node_id")),
                   json_string_value(json_object_get(msg, "spiffe_id")));
            finish(p, rc == 0 ? 0 : 1, NULL);
        } else if (type == CTLMSG_ERROR) {
            fprintf(stderr, "%s\n", json_string_value(json_object_get(msg, "message")));
            finish(p, 1, NULL);
        }
        return;
    }
    if (type == CTLMSG_WELCOME && (p->renew || p->renew_same_key || p->renew_csr))
        send_renew(p);
    if (type == CTLMSG_WELCOME && p->send != NULL) {
        json_t *extra = json_loads(p->send, 0, NULL);
        if (extra == NULL) {
            finish(p, 2, "--send is not JSON");
            return;
        }
        send_msg(p, extra);
    }
    if (type == CTLMSG_BUNDLE)
        handle_bundle(p, json_string_value(json_object_get(msg, "bundle")));
    if (type == CTLMSG_RENEWED && p->renew_key != NULL && !p->renew_same_key)
        handle_renewed(p, json_string_value(json_object_get(msg, "chain")));
    if (type == CTLMSG_ERROR)
        fprintf(stderr, "%s\n", json_string_value(json_object_get(msg, "message")));
    if (p->until != NULL && strcmp(p->until, name) == 0)
        finish(p, 0, NULL);
}

static void
on_ready(void *user)
{
    struct probe *p = user;
    if (strcmp(p->command, "enroll") == 0) {
        struct ztr_err err = {0};
        char *csr;
        size_t csr_len;
        /* --key: an enrollment (or its retry) with a key kept elsewhere. */
        char *pem = NULL;
        size_t pem_len = 0;
        int rc = p->key_file != NULL
                     ? file_read_all(p->key_file, FILE_MAX, &pem, &pem_len, &err) == 0
                           ? pki_key_from_pem(pem, pem_len, &p->renew_key, &err)
                           : -1
                     : pki_key_generate(&p->renew_key, &err);
        free(pem);
        if (rc != 0 || pki_csr_create(p->renew_key, p->name, &csr, &csr_len, &err) != 0) {
            fprintf(stderr, "%s\n", err.msg);
            finish(p, 1, "cannot make a CSR");
            return;
        }
        json_t *addresses = json_array();
        for (size_t i = 0; i < p->address_count; i++)
            json_array_append_new(addresses, json_string(p->addresses[i]));
        send_msg(p, json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "type", "enroll", "token",
                              p->token, "role", p->role, "name", p->name, "csr", csr,
                              "addresses", addresses));
        free(csr);
    } else if (strcmp(p->command, "reauth") == 0) {
        send_reauth_begin(p);
    } else if (strcmp(p->command, "raw") == 0) {
        json_error_t jerr;
        json_t *msg = json_loads(p->send, 0, &jerr);
        if (msg == NULL) {
            finish(p, 2, "--send is not JSON");
            return;
        }
        send_msg(p, msg);
    } else {
        json_t *resources = json_array();
        for (size_t i = 0; i < p->resource_count; i++)
            json_array_append_new(resources, json_string(p->resources[i]));
        json_t *hello = json_pack("{s:s, s:i, s:s, s:o}", "type", "hello", "version",
                                  CTLMSG_VERSION, "role", p->role, "resources", resources);
        if (p->data_listen != NULL)
            json_object_set_new(hello, "data_listen", json_string(p->data_listen));
        if (p->address_count > 0) {
            json_t *addresses = json_array();
            for (size_t i = 0; i < p->address_count; i++)
                json_array_append_new(addresses, json_string(p->addresses[i]));
            json_object_set_new(hello, "addresses", addresses);
        }
        send_msg(p, hello);
        if (p->interval_ms > 0)
            ev_timer_again(p->loop, &p->heartbeat_timer);
    }
}

static void
on_message(void *user, enum ctlmsg_type type, const json_t *msg)
{
    handle(user, msg, type);
}

static void
on_fault(void *user, enum ctl_stream_fault fault, const char *error)
{
    (void)fault;
    finish(user, 1, error);
}

static void
on_close(void *user, const char *reason)
{
    struct probe *p = user;
    p->stream = NULL;
    if (!p->done)
        finish(p, 1, reason);
    ev_break(p->loop, EVBREAK_ALL);
}

static void
heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct probe *p = w->data;
    if (p->done || p->stream == NULL)
        return;
    if (p->heartbeats >= 0 && p->heartbeats_sent >= p->heartbeats) {
        ev_timer_stop(p->loop, &p->heartbeat_timer);
        return;
    }
    p->heartbeats_sent++;
    json_t *beat = json_pack("{s:s, s:I}", "type", "heartbeat", "seq", (json_int_t)p->heartbeats_sent);
    if (p->counters != NULL) {
        json_t *counters = json_deep_copy(p->counters);
        if (p->rise != NULL) {
            json_int_t base = json_integer_value(json_object_get(counters, p->rise));
            json_object_set_new(counters, p->rise,
                                json_integer(base + (json_int_t)p->heartbeats_sent - 1));
        }
        json_object_set_new(beat, "counters", counters);
    }
    send_msg(p, beat);
}

static void
deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct probe *p = w->data;
    finish(p, 0, NULL);
}

static char *
read_text(const char *path, size_t *len)
{
    char *text = NULL;
    struct ztr_err err = {0};
    if (file_read_all(path, FILE_MAX, &text, len, &err) != 0)
        fprintf(stderr, "%s\n", err.msg);
    return text;
}

static int
connect_and_run(struct probe *p)
{
    char *bundle = NULL, *chain = NULL, *key = NULL;
    size_t bundle_len = 0, chain_len = 0, key_len = 0;
    char path[4096];
    if (strcmp(p->command, "session") == 0) {
        snprintf(path, sizeof(path), "%s/bundle.pem", p->dir);
        bundle = read_text(path, &bundle_len);
        snprintf(path, sizeof(path), "%s/cert.pem", p->dir);
        chain = read_text(path, &chain_len);
        snprintf(path, sizeof(path), "%s/key.pem", p->dir);
        key = read_text(path, &key_len);
        if (chain == NULL || key == NULL) {
            free(bundle), free(chain), free(key);
            return 1;
        }
    } else {
        bundle = read_text(p->ca, &bundle_len);
    }
    if (bundle == NULL) {
        free(chain), free(key);
        return 1;
    }
    struct ztr_err err = {0};
    struct tls_ctx_config config = {.side = TLS_SIDE_CLIENT, .alpn = CTL_ALPN,
                                    .chain_pem = chain, .chain_len = chain_len,
                                    .key_pem = key, .key_len = key_len,
                                    .bundle_pem = bundle, .bundle_len = bundle_len};
    int fd = -1;
    int rc = tls_ctx_new(&config, &p->tls, &err);
    free(bundle), free(chain), free(key);
    if (rc == 0)
        rc = net_connect_start(p->controller, &fd, &err);
    struct pki_expect expect = {.trust_domain = p->trust_domain, .role = PKI_ROLE_CONTROLLER};
    static const struct ctl_stream_callbacks callbacks = {on_ready, on_message, on_fault,
                                                          on_close};
    if (rc == 0)
        rc = ctl_stream_new(p->loop, p->tls, fd, &expect, &callbacks, p, &p->stream, &err);
    if (rc != 0) {
        fprintf(stderr, "%s\n", err.msg);
        tls_ctx_free(p->tls);
        return 1;
    }
    ev_timer_init(&p->heartbeat_timer, heartbeat_cb, 0, p->interval_ms / 1000.0);
    p->heartbeat_timer.data = p;
    ev_timer_init(&p->deadline_timer, deadline_cb, p->duration_ms / 1000.0, 0);
    p->deadline_timer.data = p;
    if (p->duration_ms > 0)
        ev_timer_start(p->loop, &p->deadline_timer);
    ev_run(p->loop, 0);
    ev_timer_stop(p->loop, &p->heartbeat_timer);
    ev_timer_stop(p->loop, &p->deadline_timer);
    tls_ctx_free(p->tls);
    return p->status;
}

int
main(int argc, char **argv)
{
    if (argc < 2)
        return usage("which command?");
    struct probe p = {.command = argv[1], .interval_ms = 0, .heartbeats = -1, .status = 1};
    static const struct option options[] = {
        {"controller", required_argument, NULL, 'c'}, {"ca", required_argument, NULL, 'a'},
        {"trust-domain", required_argument, NULL, 't'}, {"token", required_argument, NULL, 'k'},
        {"role", required_argument, NULL, 'r'}, {"name", required_argument, NULL, 'n'},
        {"address", required_argument, NULL, 'A'}, {"out", required_argument, NULL, 'o'},
        {"dir", required_argument, NULL, 'd'}, {"data-listen", required_argument, NULL, 'D'},
        {"resource", required_argument, NULL, 'R'}, {"interval", required_argument, NULL, 'i'},
        {"heartbeats", required_argument, NULL, 'h'}, {"duration", required_argument, NULL, 'u'},
        {"until", required_argument, NULL, 'U'}, {"renew", no_argument, NULL, 'w'},
        {"renew-same-key", no_argument, NULL, 'W'}, {"send", required_argument, NULL, 's'},
        {"stale-bundle", no_argument, NULL, 'S'}, {"renew-csr", required_argument, NULL, 'C'},
        {"counters", required_argument, NULL, 'N'}, {"rise", required_argument, NULL, 'I'},
        {"key", required_argument, NULL, 'K'}, {"save", required_argument, NULL, 'v'},
        {"replay", required_argument, NULL, 'p'}, {"renew-serial", required_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    int opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'c': p.controller = optarg; break;
        case 'a': p.ca = optarg; break;
        case 't': p.trust_domain = optarg; break;
        case 'k': p.token = optarg; break;
        case 'r': p.role = optarg; break;
        case 'n': p.name = optarg; break;
        case 'A': if (p.address_count < 8) p.addresses[p.address_count++] = optarg; break;
        case 'o': p.out = optarg; break;
        case 'd': p.dir = optarg; break;
        case 'D': p.data_listen = optarg; break;
        case 'R': if (p.resource_count < 8) p.resources[p.resource_count++] = optarg; break;
        case 'i': p.interval_ms = atol(optarg); break;
        case 'h': p.heartbeats = atol(optarg); break;
        case 'u': p.duration_ms = atol(optarg); break;
        case 'U': p.until = optarg; break;
        case 'w': p.renew = true; break;
        case 'W': p.renew_same_key = true; break;
        case 's': p.send = optarg; break;
        case 'S': p.stale_bundle = true; break;
        case 'C': p.renew_csr = optarg; break;
        case 'N':
            json_decref(p.counters);
            p.counters = json_loads(optarg, 0, NULL);
            if (!json_is_object(p.counters))
                return usage("--counters is not a JSON object");
            break;
        case 'I': p.rise = optarg; break;
        case 'K': p.key_file = optarg; break;
        case 'v': p.save = optarg; break;
        case 'p': p.replay = optarg; break;
        case 'V': p.renew_serial = optarg; break;
        default: json_decref(p.counters); return usage("unknown option");
        }
    }
    if (p.rise != NULL && p.counters == NULL)
        p.counters = json_object();
    if (p.controller == NULL || p.trust_domain == NULL) {
        json_decref(p.counters);
        return usage("--controller and --trust-domain are required");
    }
    bool ok = (strcmp(p.command, "enroll") == 0 && p.ca && p.token && p.role && p.name && p.out) ||
              (strcmp(p.command, "session") == 0 && p.dir && p.role) ||
              (strcmp(p.command, "raw") == 0 && p.ca && p.send) ||
              (strcmp(p.command, "reauth") == 0 && p.ca && p.dir);
    if (!ok) {
        json_decref(p.counters);
        return usage("missing options for this command");
    }
    log_set_level(LOG_WARN);
    struct ztr_err err = {0};
    if (pki_init(&err) != 0) {
        json_decref(p.counters);
        return usage(err.msg);
    }
    p.loop = ev_default_loop(0);
    int status = connect_and_run(&p);
    pki_key_free(p.renew_key);
    free(p.pending_chain);
    json_decref(p.counters);
    pki_cleanup();
    return status;
}
