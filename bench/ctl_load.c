/*
 * ctl-load: load generator for the controller's control plane. One process,
 * one thread, one libev loop; the real protocol over real TLS 1.3, built
 * from the same ctl/ and pki/ modules the agents use.
 *
 *   ctl_load enroll   --controller ADDR --ca CA.pem --trust-domain TD --token T
 *                     [--count N] [--concurrency C] [--name-prefix P] [--timeout SECS]
 *       N enrollments, at most C in flight. Each is a fresh TCP connection,
 *       a TLS handshake without a client certificate, `enroll` with its own
 *       P-256 key and CSR, and the `enrolled` reply. Keys and CSRs are made
 *       before the clock starts (timed separately: the "prepare" line).
 *
 *   ctl_load sessions --controller ADDR --ca CA.pem --trust-domain TD --token T
 *                     [--sessions S] [--identities K] [--concurrency C]
 *                     [--interval MS] [--hold SECS] [--name-prefix P]
 *                     [--max-errors E] [--timeout SECS]
 *       enrolls K tunneler identities, then opens S mTLS sessions (session i
 *       uses identity i mod K; the controller accepts several sessions of one
 *       node), at most C of them between connect and `welcome`. Each session
 *       says hello and heartbeats every MS milliseconds (first beat at a
 *       spread-out offset, so the load is even) until --hold seconds after
 *       the last session is up. Then it stops heartbeating, waits (bounded) for
 *       the outstanding acks and closes everything.
 *
 * The token must allow role tunneler with a name prefix that P starts with
 * (`controller token create --role tunneler --name bench- --prefix --uses N`).
 *
 * stdout: one `<phase> key=value ...` line per phase, for bench/controller.sh;
 * `ready sessions=N` marks the moment every session is up (the script starts
 * sampling the controller then). stderr: the first distinct error reasons.
 *
 * Only loopback: --controller must be an address in 127.0.0.0/8. Every phase
 * is bounded by a count and by --timeout.
 *
 * Exit: 0 done, 1 more errors than --max-errors (enroll: any failure) or the
 * timeout, 2 usage.
 */
#define _GNU_SOURCE
#include <ev.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "base/fileio.h"
#include "base/log.h"
#include "ctl/stream.h"
#include "net/net.h"
#include "net/tls.h"
#include "pki/pki.h"

#define FILE_MAX (256 * 1024)
#define REASONS_MAX 8
#define NAME_MAX_LEN 64
/* Acks still missing this long after the last heartbeat count as lost. */
#define DRAIN_SECONDS 3.0
/* Closing S sessions is quick; this only bounds a controller that hangs. */
#define CLOSE_SECONDS 10.0

/* ---- small helpers --------------------------------------------------------- */

static double
mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This process's user+system CPU seconds: shows whether the generator,
 * rather than the controller, was the bottleneck. */
static double
self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* A growable list of samples (seconds); percentiles by nearest rank. */
struct samples {
    double *v;
    size_t n, cap;
};

static void
samples_add(struct samples *s, double value)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        double *grown = realloc(s->v, cap * sizeof(*grown));
        if (grown == NULL)
            return; /* a lost sample skews nothing but the count */
        s->v = grown;
        s->cap = cap;
    }
    s->v[s->n++] = value;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Milliseconds at percentile p (0..1); sorts in place. */
static double
samples_ms(struct samples *s, double p)
{
    if (s->n == 0)
        return 0;
    qsort(s->v, s->n, sizeof(double), cmp_double);
    double exact = p * (double)s->n;
    size_t rank = (size_t)exact;
    if ((double)rank < exact)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > s->n)
        rank = s->n;
    return s->v[rank - 1] * 1000.0;
}

/* The first REASONS_MAX distinct failure texts, with counts. */
struct reasons {
    char text[REASONS_MAX][160];
    size_t count[REASONS_MAX];
    size_t used, other;
};

/* Reasons come from the controller, wolfSSL and the TLS layer; they end up
 * on a terminal and in bench logs, so only printable text is kept. */
static void
reasons_add(struct reasons *r, const char *raw)
{
    char text[sizeof(r->text[0])];
    size_t n = 0;
    bool readable = true;
    for (; raw != NULL && raw[n] != '\0' && n < sizeof(text) - 1; n++) {
        unsigned char ch = (unsigned char)raw[n];
        readable = readable && ch >= 0x20 && ch < 0x7f;
        text[n] = (char)ch;
    }
    text[n] = '\0';
    if (!readable || n == 0)
        snprintf(text, sizeof(text), "%s", "(no readable reason)");
    for (size_t i = 0; i < r->used; i++) {
        if (strncmp(r->text[i], text, sizeof(r->text[i]) - 1) == 0) {
            r->count[i]++;
            return;
        }
    }
    if (r->used == REASONS_MAX) {
        r->other++;
        return;
    }
    snprintf(r->text[r->used], sizeof(r->text[r->used]), "%s", text);
    r->count[r->used++] = 1;
}

static void
reasons_print(const struct reasons *r, const char *phase)
{
    for (size_t i = 0; i < r->used; i++)
        fprintf(stderr, "ctl_load: %s: %zu x %s\n", phase, r->count[i], r->text[i]);
    if (r->other > 0)
        fprintf(stderr, "ctl_load: %s: %zu x (other reasons)\n", phase, r->other);
}

/* ---- the generator --------------------------------------------------------- */

enum phase { PH_ENROLL, PH_RAMP, PH_HOLD, PH_DRAIN, PH_CLOSE };

struct enroll_job {
    struct load *load;
    char name[NAME_MAX_LEN];
    struct pki_key *key;
    char *csr;
    struct ctl_stream *stream;
    double started;
    bool answered;
    char *chain;                  /* kept only when sessions need it */
};

enum session_state { SS_IDLE, SS_OPENING, SS_ACTIVE, SS_CLOSING, SS_DONE };

struct session {
    struct load *load;
    size_t index;
    struct tls_ctx *tls;          /* its identity's context (shared) */
    struct ctl_stream *stream;
    ev_timer heartbeat;
    enum session_state state;
    double opened_at, beat_sent_at;
    int64_t seq_sent, seq_acked;
};

struct load {
    /* options */
    const char *command, *controller, *ca, *trust_domain, *token, *name_prefix;
    long count, concurrency, sessions, identities, interval_ms, hold_s, max_errors, timeout_s;

    struct ev_loop *loop;
    ev_prepare refill;            /* tops up the in-flight work before each poll */
    ev_timer deadline, phase_timer;
    enum phase phase;
    bool timed_out;
    char *bundle_pem;
    size_t bundle_len;
    struct tls_ctx *anon;         /* no client certificate: enrollment only */

    /* enrollment */
    struct enroll_job *jobs;
    size_t job_count, job_next, job_inflight, job_finished, job_ok;
    bool keep_chains;
    struct samples enroll_latency;
    struct reasons enroll_reasons;

    /* sessions */
    struct tls_ctx **identity_tls;
    size_t identity_count;
    struct session *sess;
    size_t sess_count, sess_next, sess_opening, sess_active, sess_setup_failed, sess_closed,
        sess_dropped;
    uint64_t beats_sent, acks, late_beats, error_frames, pushes;
    struct samples setup_latency, rtt;
    struct reasons sess_reasons;
    double ramp_started, ramp_ended;
};

static int
usage(const char *problem)
{
    fprintf(stderr, "ctl_load: %s\n(see the comment at the top of bench/ctl_load.c)\n",
            problem);
    return 2;
}

static const char *
error_text(const json_t *msg)
{
    const char *text = json_string_value(json_object_get(msg, "message"));
    return text != NULL ? text : "error without a message";
}

/* ---- enrollment ------------------------------------------------------------ */

static void
enroll_ready(void *user)
{
    struct enroll_job *job = user;
    struct load *load = job->load;
    struct ztr_err err = {0};
    json_t *msg = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "enroll", "token", load->token,
                            "role", "tunneler", "name", job->name, "csr", job->csr);
    if (ctl_stream_send(job->stream, msg, &err) != 0)
        ctl_stream_close(job->stream, err.msg[0] ? err.msg : "cannot send enroll");
}

/* The one reply ends the exchange: closing stops any further delivery. */
static void
enroll_message(void *user, enum ctlmsg_type type, const json_t *msg)
{
    struct enroll_job *job = user;
    struct load *load = job->load;
    job->answered = true;
    if (type == CTLMSG_ENROLLED) {
        load->job_ok++;
        samples_add(&load->enroll_latency, mono_now() - job->started);
        if (load->keep_chains) {
            const char *chain = json_string_value(json_object_get(msg, "chain"));
            job->chain = chain != NULL ? strdup(chain) : NULL;
        }
        ctl_stream_close(job->stream, "enrolled");
    } else {
        reasons_add(&load->enroll_reasons,
                    type == CTLMSG_ERROR ? error_text(msg) : "unexpected reply to enroll");
        ctl_stream_close(job->stream, "refused");
    }
}

/* The stream closes itself with the error as the reason. */
static void
enroll_fault(void *user, enum ctl_stream_fault fault, const char *error)
{
    (void)fault;
    struct enroll_job *job = user;
    job->answered = true;
    reasons_add(&job->load->enroll_reasons, error);
}

static void
enroll_close(void *user, const char *reason)
{
    struct enroll_job *job = user;
    struct load *load = job->load;
    if (!job->answered)
        reasons_add(&load->enroll_reasons, reason);
    job->stream = NULL;
    load->job_inflight--;
    load->job_finished++;
    if (load->job_finished == load->job_count)
        ev_break(load->loop, EVBREAK_ONE);
}

static const struct ctl_stream_callbacks enroll_callbacks = {enroll_ready, enroll_message,
                                                             enroll_fault, enroll_close};

/* Dials the controller and starts TLS; false (err filled) when it cannot. */
static bool
dial(struct load *load, struct tls_ctx *tls, const struct ctl_stream_callbacks *callbacks,
     void *user, struct ctl_stream **stream, struct ztr_err *err)
{
    int fd = -1;
    if (net_connect_start(load->controller, &fd, err) != 0)
        return false;
    /* The peer must be this trust domain's controller (tls_conn_new copies
     * expect). The stream owns fd from here on, success or not. */
    struct pki_expect expect = {.trust_domain = load->trust_domain,
                                .role = PKI_ROLE_CONTROLLER};
    return ctl_stream_new(load->loop, tls, fd, &expect, callbacks, user, stream, err) == 0;
}

static void
enroll_start_one(struct load *load)
{
    struct enroll_job *job = &load->jobs[load->job_next++];
    struct ztr_err err = {0};
    job->started = mono_now();
    load->job_inflight++;
    if (!dial(load, load->anon, &enroll_callbacks, job, &job->stream, &err)) {
        /* No connection, so no on_close will come: account for it here. */
        reasons_add(&load->enroll_reasons, err.msg);
        load->job_inflight--;
        load->job_finished++;
        if (load->job_finished == load->job_count)
            ev_break(load->loop, EVBREAK_ONE);
    }
}

/* Makes every key and CSR up front, so the timed part measures the
 * exchange, not the client's own key generation. */
static int
enroll_prepare(struct load *load, size_t count, const char *tag)
{
    load->jobs = calloc(count, sizeof(*load->jobs));
    if (load->jobs == NULL)
        return -1;
    load->job_count = count;
    double t0 = mono_now();
    for (size_t i = 0; i < count; i++) {
        struct enroll_job *job = &load->jobs[i];
        struct ztr_err err = {0};
        size_t csr_len;
        job->load = load;
        snprintf(job->name, sizeof(job->name), "%s%s-%06zu", load->name_prefix, tag, i);
        if (pki_key_generate(&job->key, &err) != 0 ||
            pki_csr_create(job->key, job->name, &job->csr, &csr_len, &err) != 0) {
            fprintf(stderr, "ctl_load: cannot make a key and CSR: %s\n", err.msg);
            return -1;
        }
    }
    double seconds = mono_now() - t0;
    printf("prepare what=%s count=%zu seconds=%.3f per_s=%.0f\n", tag, count, seconds,
           seconds > 0 ? (double)count / seconds : 0.0);
    fflush(stdout);
    return 0;
}

static void
deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct load *load = w->data;
    load->timed_out = true;
    fprintf(stderr, "ctl_load: --timeout %ld s reached\n", load->timeout_s);
    ev_break(loop, EVBREAK_ALL);
}

static void refill_cb(struct ev_loop *loop, ev_prepare *w, int revents);

/* Runs every prepared enrollment; false when any failed or time ran out. */
static bool
enroll_run(struct load *load, const char *what)
{
    load->phase = PH_ENROLL;
    double cpu0 = self_cpu_s(), t0 = mono_now();
    ev_prepare_start(load->loop, &load->refill);
    ev_run(load->loop, 0);
    ev_prepare_stop(load->loop, &load->refill);
    double seconds = mono_now() - t0, cpu = self_cpu_s() - cpu0;
    size_t failed = load->job_count - load->job_ok;
    struct samples *lat = &load->enroll_latency;
    printf("%s count=%zu ok=%zu failed=%zu concurrency=%ld seconds=%.3f per_s=%.0f "
           "p50_ms=%.2f p99_ms=%.2f max_ms=%.2f client_cpu_s=%.2f\n",
           what, load->job_count, load->job_ok, failed, load->concurrency, seconds,
           seconds > 0 ? (double)load->job_ok / seconds : 0.0, samples_ms(lat, 0.50),
           samples_ms(lat, 0.99), samples_ms(lat, 1.0), cpu);
    fflush(stdout);
    reasons_print(&load->enroll_reasons, what);
    return failed == 0 && !load->timed_out;
}

static void
enroll_free(struct load *load)
{
    for (size_t i = 0; i < load->job_count; i++) {
        pki_key_free(load->jobs[i].key);
        free(load->jobs[i].csr);
        free(load->jobs[i].chain);
    }
    free(load->jobs);
    load->jobs = NULL;
    load->job_count = 0;
    free(load->enroll_latency.v);
    load->enroll_latency = (struct samples){0};
}

/* ---- sessions -------------------------------------------------------------- */

static void session_heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void
ramp_check(struct load *load)
{
    if (load->phase != PH_RAMP ||
        load->sess_active + load->sess_setup_failed + load->sess_dropped < load->sess_count)
        return;
    ev_break(load->loop, EVBREAK_ONE); /* main() prints and moves on to PH_HOLD */
}

static void
drain_check(struct load *load)
{
    if (load->phase == PH_DRAIN && load->acks >= load->beats_sent)
        ev_break(load->loop, EVBREAK_ONE);
}

static void
session_ready(void *user)
{
    struct session *s = user;
    struct ztr_err err = {0};
    json_t *hello = json_pack("{s:s, s:i, s:s}", "type", "hello", "version", CTLMSG_VERSION,
                              "role", "tunneler");
    if (ctl_stream_send(s->stream, hello, &err) != 0)
        ctl_stream_close(s->stream, err.msg[0] ? err.msg : "cannot send hello");
}

static void
session_message(void *user, enum ctlmsg_type type, const json_t *msg)
{
    struct session *s = user;
    struct load *load = s->load;
    double now = mono_now();
    switch (type) {
    case CTLMSG_WELCOME:
        if (s->state != SS_OPENING)
            break;
        s->state = SS_ACTIVE;
        load->sess_opening--;
        load->sess_active++;
        samples_add(&load->setup_latency, now - s->opened_at);
        /* Spread the first beats over one interval (by index, so the spread
         * does not depend on how fast the ramp went). */
        double interval = (double)load->interval_ms / 1000.0;
        double offset = interval * (double)((s->index * 7919) % load->sess_count) /
                        (double)load->sess_count;
        ev_timer_init(&s->heartbeat, session_heartbeat_cb, offset + 0.001, interval);
        s->heartbeat.data = s;
        if (load->phase == PH_RAMP || load->phase == PH_HOLD)
            ev_timer_start(load->loop, &s->heartbeat);
        ramp_check(load);
        return;
    case CTLMSG_HEARTBEAT_ACK: {
        int64_t seq = (int64_t)json_integer_value(json_object_get(msg, "seq"));
        load->acks++;
        /* Round trips count in the hold phase only: during the ramp they
         * mostly measure the queue of handshakes ahead of the beat. */
        if (seq == s->seq_sent && load->phase == PH_HOLD)
            samples_add(&load->rtt, now - s->beat_sent_at);
        if (seq > s->seq_acked)
            s->seq_acked = seq;
        drain_check(load);
        return;
    }
    case CTLMSG_BUNDLE:
    case CTLMSG_CONNECTORS:
    case CTLMSG_ALLOWLIST:
        load->pushes++;
        return;
    case CTLMSG_ERROR:
        load->error_frames++;
        reasons_add(&load->sess_reasons, error_text(msg));
        return;
    default:
        break;
    }
    load->error_frames++;
    char text[96];
    snprintf(text, sizeof(text), "unexpected %s", ctlmsg_type_name(type));
    reasons_add(&load->sess_reasons, text);
}

/* The stream closes itself with the error as the reason. */
static void
session_fault(void *user, enum ctl_stream_fault fault, const char *error)
{
    (void)fault;
    struct session *s = user;
    reasons_add(&s->load->sess_reasons, error);
}

static void
session_close(void *user, const char *reason)
{
    struct session *s = user;
    struct load *load = s->load;
    ev_timer_stop(load->loop, &s->heartbeat);
    if (s->state == SS_OPENING) {
        load->sess_opening--;
        load->sess_setup_failed++;
        reasons_add(&load->sess_reasons, reason);
    } else if (s->state == SS_ACTIVE) {
        /* We did not ask for this: the controller (or the network) did. */
        load->sess_active--;
        load->sess_dropped++;
        reasons_add(&load->sess_reasons, reason);
    }
    s->state = SS_DONE;
    s->stream = NULL;
    load->sess_closed++;
    ramp_check(load);
    if (load->phase == PH_CLOSE && load->sess_closed == load->sess_next)
        ev_break(load->loop, EVBREAK_ONE);
}

static const struct ctl_stream_callbacks session_callbacks = {session_ready, session_message,
                                                              session_fault, session_close};

static void
session_heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct session *s = w->data;
    struct load *load = s->load;
    if (s->state != SS_ACTIVE)
        return;
    if (s->seq_acked < s->seq_sent)
        load->late_beats++; /* the previous beat is still unanswered */
    s->seq_sent++;
    s->beat_sent_at = mono_now();
    struct ztr_err err = {0};
    json_t *beat = json_pack("{s:s, s:I}", "type", "heartbeat", "seq", (json_int_t)s->seq_sent);
    if (ctl_stream_send(s->stream, beat, &err) != 0) {
        reasons_add(&load->sess_reasons, err.msg);
        ctl_stream_close(s->stream, err.msg);
        return;
    }
    load->beats_sent++;
}

static void
session_start_one(struct load *load)
{
    struct session *s = &load->sess[load->sess_next++];
    struct ztr_err err = {0};
    s->load = load;
    s->tls = load->identity_tls[s->index % load->identity_count];
    s->state = SS_OPENING;
    s->opened_at = mono_now();
    load->sess_opening++;
    if (!dial(load, s->tls, &session_callbacks, s, &s->stream, &err)) {
        reasons_add(&load->sess_reasons, err.msg);
        s->state = SS_DONE;
        load->sess_opening--;
        load->sess_setup_failed++;
        load->sess_closed++;
        ramp_check(load);
    }
}

/* Before each poll: keeps up to --concurrency enrollments or session
 * set-ups in flight. Doing it here rather than in on_close keeps new
 * connections out of another connection's callbacks. */
static void
refill_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    struct load *load = w->data;
    size_t limit = (size_t)load->concurrency;
    if (load->phase == PH_ENROLL) {
        while (load->job_inflight < limit && load->job_next < load->job_count)
            enroll_start_one(load);
    } else if (load->phase == PH_RAMP) {
        while (load->sess_opening < limit && load->sess_next < load->sess_count)
            session_start_one(load);
    }
}

static void
phase_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ONE);
}

/* Runs the loop until the phase ends itself or, when `seconds` is not
 * negative, that much time passes (0: not at all). The --timeout deadline
 * bounds every phase either way. */
static void
run_phase(struct load *load, enum phase phase, double seconds)
{
    load->phase = phase;
    if (load->timed_out || seconds == 0)
        return;
    if (seconds > 0) {
        ev_timer_set(&load->phase_timer, seconds, 0);
        ev_timer_start(load->loop, &load->phase_timer);
    }
    ev_run(load->loop, 0);
    ev_timer_stop(load->loop, &load->phase_timer);
}

/* Client contexts for the first `count` enrolled identities. */
static int
make_identities(struct load *load, size_t count)
{
    load->identity_tls = calloc(count, sizeof(*load->identity_tls));
    if (load->identity_tls == NULL)
        return -1;
    for (size_t i = 0; i < count; i++) {
        struct enroll_job *job = &load->jobs[i];
        char *key_pem = NULL;
        size_t key_len = 0;
        struct ztr_err err = {0};
        int rc = job->chain == NULL ? -1 : pki_key_to_pem(job->key, &key_pem, &key_len, &err);
        if (rc == 0) {
            struct tls_ctx_config config = {
                .side = TLS_SIDE_CLIENT, .alpn = CTL_ALPN, .chain_pem = job->chain,
                .chain_len = strlen(job->chain), .key_pem = key_pem, .key_len = key_len,
                .bundle_pem = load->bundle_pem, .bundle_len = load->bundle_len};
            rc = tls_ctx_new(&config, &load->identity_tls[i], &err);
        }
        if (key_pem != NULL)
            explicit_bzero(key_pem, key_len);
        free(key_pem);
        if (rc != 0) {
            fprintf(stderr, "ctl_load: identity %zu: %s\n", i, err.msg);
            return -1;
        }
        load->identity_count++;
    }
    return 0;
}

static int
run_sessions(struct load *load)
{
    load->keep_chains = true;
    if (enroll_prepare(load, (size_t)load->identities, "s") != 0)
        return 1;
    if (!enroll_run(load, "identities") || make_identities(load, load->job_count) != 0)
        return 1;
    enroll_free(load);

    load->sess_count = (size_t)load->sessions;
    load->sess = calloc(load->sess_count, sizeof(*load->sess));
    if (load->sess == NULL)
        return 1;
    for (size_t i = 0; i < load->sess_count; i++)
        load->sess[i].index = i;

    /* Ramp: connect, handshake, hello, welcome for every session. */
    double cpu0 = self_cpu_s();
    load->ramp_started = mono_now();
    ev_prepare_start(load->loop, &load->refill);
    run_phase(load, PH_RAMP, -1);
    ev_prepare_stop(load->loop, &load->refill);
    load->ramp_ended = mono_now();
    double ramp_s = load->ramp_ended - load->ramp_started;
    printf("ramp sessions=%zu up=%zu failed=%zu concurrency=%ld seconds=%.3f per_s=%.0f "
           "p50_ms=%.2f p99_ms=%.2f max_ms=%.2f client_cpu_s=%.2f\n",
           load->sess_count, load->sess_active, load->sess_setup_failed + load->sess_dropped,
           load->concurrency, ramp_s, ramp_s > 0 ? (double)load->sess_active / ramp_s : 0.0,
           samples_ms(&load->setup_latency, 0.50), samples_ms(&load->setup_latency, 0.99),
           samples_ms(&load->setup_latency, 1.0), self_cpu_s() - cpu0);
    printf("ready sessions=%zu\n", load->sess_active);
    fflush(stdout);

    /* Hold: heartbeats only. */
    cpu0 = self_cpu_s();
    uint64_t beats0 = load->beats_sent, acks0 = load->acks;
    run_phase(load, PH_HOLD, (double)load->hold_s);
    double hold_cpu = self_cpu_s() - cpu0;
    uint64_t hold_beats = load->beats_sent - beats0, hold_acks = load->acks - acks0;

    /* Drain: no new beats; give the last ones time to be answered. */
    for (size_t i = 0; i < load->sess_next; i++)
        ev_timer_stop(load->loop, &load->sess[i].heartbeat);
    if (load->acks < load->beats_sent)
        run_phase(load, PH_DRAIN, DRAIN_SECONDS);
    uint64_t missing = load->beats_sent > load->acks ? load->beats_sent - load->acks : 0;
    size_t still_up = load->sess_active;

    /* Close: our side ends every session. */
    load->phase = PH_CLOSE;
    for (size_t i = 0; i < load->sess_next; i++) {
        struct session *s = &load->sess[i];
        if (s->state == SS_ACTIVE || s->state == SS_OPENING) {
            if (s->state == SS_ACTIVE)
                load->sess_active--;
            else
                load->sess_opening--;
            s->state = SS_CLOSING;
            ctl_stream_close(s->stream, "bench done");
        }
    }
    if (load->sess_closed < load->sess_next)
        run_phase(load, PH_CLOSE, CLOSE_SECONDS);

    printf("hold seconds=%ld interval_ms=%ld sessions_up=%zu beats_sent=%llu acks=%llu "
           "beats_per_s=%.0f client_cpu_s=%.2f\n",
           load->hold_s, load->interval_ms, still_up, (unsigned long long)hold_beats,
           (unsigned long long)hold_acks,
           load->hold_s > 0 ? (double)hold_beats / (double)load->hold_s : 0.0, hold_cpu);
    printf("heartbeats sent=%llu acked=%llu missing=%llu late=%llu hold_rtt_p50_ms=%.2f "
           "hold_rtt_p99_ms=%.2f hold_rtt_max_ms=%.2f pushes=%llu\n",
           (unsigned long long)load->beats_sent, (unsigned long long)load->acks,
           (unsigned long long)missing, (unsigned long long)load->late_beats,
           samples_ms(&load->rtt, 0.50), samples_ms(&load->rtt, 0.99),
           samples_ms(&load->rtt, 1.0), (unsigned long long)load->pushes);
    uint64_t errors = load->sess_setup_failed + load->sess_dropped + load->error_frames + missing;
    printf("errors total=%llu setup_failed=%zu dropped=%zu error_frames=%llu missing_acks=%llu "
           "unclosed=%zu timed_out=%d\n",
           (unsigned long long)errors, load->sess_setup_failed, load->sess_dropped,
           (unsigned long long)load->error_frames, (unsigned long long)missing,
           load->sess_next - load->sess_closed, load->timed_out ? 1 : 0);
    fflush(stdout);
    reasons_print(&load->sess_reasons, "sessions");
    if (load->timed_out || errors > (uint64_t)load->max_errors)
        return 1;
    return 0;
}

/* ---- set-up ---------------------------------------------------------------- */

/* The brief for this tool: traffic to 127.0.0.0/8 only. */
static bool
is_loopback(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct ztr_err err = {0};
    if (net_resolve(addr, &ss, &len, &err) != 0 || ss.ss_family != AF_INET)
        return false;
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
    return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
}

static bool
parse_long(const char *text, long min, long max, long *out)
{
    char *end;
    long value = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || value < min || value > max)
        return false;
    *out = value;
    return true;
}

/* Each session holds a descriptor: take the hard limit if the soft one is
 * lower than what the run needs. */
static void
raise_fd_limit(size_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
        return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

int
main(int argc, char **argv)
{
    if (argc < 2)
        return usage("which command? (enroll or sessions)");
    struct load load = {.command = argv[1], .name_prefix = "bench-", .count = 1000,
                        .concurrency = 32, .sessions = 1000, .identities = 100,
                        .interval_ms = 10000, .hold_s = 30, .max_errors = 10,
                        .timeout_s = 300};
    static const struct option options[] = {
        {"controller", required_argument, NULL, 'c'}, {"ca", required_argument, NULL, 'a'},
        {"trust-domain", required_argument, NULL, 't'}, {"token", required_argument, NULL, 'k'},
        {"count", required_argument, NULL, 'n'}, {"concurrency", required_argument, NULL, 'C'},
        {"name-prefix", required_argument, NULL, 'p'}, {"sessions", required_argument, NULL, 's'},
        {"identities", required_argument, NULL, 'I'}, {"interval", required_argument, NULL, 'i'},
        {"hold", required_argument, NULL, 'h'}, {"max-errors", required_argument, NULL, 'e'},
        {"timeout", required_argument, NULL, 'T'}, {NULL, 0, NULL, 0}};
    int opt;
    bool ok = true;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'c': load.controller = optarg; break;
        case 'a': load.ca = optarg; break;
        case 't': load.trust_domain = optarg; break;
        case 'k': load.token = optarg; break;
        case 'p': load.name_prefix = optarg; break;
        case 'n': ok = ok && parse_long(optarg, 1, 1000000, &load.count); break;
        case 'C': ok = ok && parse_long(optarg, 1, 10000, &load.concurrency); break;
        case 's': ok = ok && parse_long(optarg, 1, 100000, &load.sessions); break;
        case 'I': ok = ok && parse_long(optarg, 1, 100000, &load.identities); break;
        case 'i': ok = ok && parse_long(optarg, 100, 3600000, &load.interval_ms); break;
        case 'h': ok = ok && parse_long(optarg, 0, 3600, &load.hold_s); break;
        case 'e': ok = ok && parse_long(optarg, 0, 100000000, &load.max_errors); break;
        case 'T': ok = ok && parse_long(optarg, 1, 3600, &load.timeout_s); break;
        default: return usage("unknown option");
        }
    }
    if (!ok)
        return usage("a number is out of range");
    bool enroll = strcmp(load.command, "enroll") == 0;
    if (!enroll && strcmp(load.command, "sessions") != 0)
        return usage("the command is enroll or sessions");
    if (load.controller == NULL || load.ca == NULL || load.trust_domain == NULL ||
        load.token == NULL)
        return usage("--controller, --ca, --trust-domain and --token are required");
    if (!is_loopback(load.controller))
        return usage("--controller must be an IPv4 loopback address (127.0.0.0/8)");
    if (!enroll && load.identities > load.sessions)
        load.identities = load.sessions;

    log_set_level(LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit((size_t)(enroll ? load.concurrency : load.sessions) + 64);
    struct ztr_err err = {0};
    if (pki_init(&err) != 0)
        return usage(err.msg);
    if (file_read_all(load.ca, FILE_MAX, &load.bundle_pem, &load.bundle_len, &err) != 0)
        return usage(err.msg);
    struct tls_ctx_config config = {.side = TLS_SIDE_CLIENT, .alpn = CTL_ALPN,
                                    .bundle_pem = load.bundle_pem,
                                    .bundle_len = load.bundle_len};
    if (tls_ctx_new(&config, &load.anon, &err) != 0)
        return usage(err.msg);

    load.loop = ev_default_loop(EVFLAG_AUTO);
    ev_prepare_init(&load.refill, refill_cb);
    load.refill.data = &load;
    ev_timer_init(&load.phase_timer, phase_timer_cb, 1, 0);
    load.phase_timer.data = &load;
    ev_timer_init(&load.deadline, deadline_cb, (double)load.timeout_s, 0);
    load.deadline.data = &load;
    ev_timer_start(load.loop, &load.deadline);

    int status;
    if (enroll)
        status = enroll_prepare(&load, (size_t)load.count, "e") == 0 &&
                         enroll_run(&load, "enroll")
                     ? 0
                     : 1;
    else
        status = run_sessions(&load);

    ev_timer_stop(load.loop, &load.deadline);
    printf("process cpu_s=%.2f\n", self_cpu_s());
    fflush(stdout);
    /* Free only what no callback can reach any more: a timed-out run may
     * leave connections open, and the process is about to exit anyway. */
    if (!load.timed_out) {
        enroll_free(&load);
        for (size_t i = 0; i < load.identity_count; i++)
            tls_ctx_free(load.identity_tls[i]);
        tls_ctx_free(load.anon);
        free(load.sess);
    }
    free(load.identity_tls);
    free(load.setup_latency.v);
    free(load.rtt.v);
    free(load.bundle_pem);
    pki_cleanup();
    return status;
}
