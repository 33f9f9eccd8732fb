/* sched_getaffinity and CPU_COUNT are GNU extensions. */
#define _GNU_SOURCE
#include "data/workers.h"

#include <ev.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>

struct message {
    struct message *next;
    void (*fn)(void *arg);
    void *arg;
};

struct worker {
    struct workers *pool;
    struct ev_loop *loop;
    pthread_t thread;
    bool started;
    ev_async wake;
    pthread_mutex_t lock;          /* guards the queue only */
    struct message *head, *tail;
};

struct workers {
    unsigned count;
    pthread_t main_thread;
    /* workers_call waits here for the worker to say its fn returned. */
    pthread_mutex_t done_lock;
    pthread_cond_t done_cond;
    struct worker workers[];
};

unsigned
workers_default(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
    if (n < 1)
        n = 1;
    return n > WORKERS_MAX ? WORKERS_MAX : (unsigned)n;
}

int
workers_config(const struct config *config, unsigned *out, struct ztr_err *err)
{
    if (!config_is_set(config, "WORKERS")) {
        *out = workers_default();
        return 0;
    }
    uint64_t n = config_get_uint(config, "WORKERS");
    if (n < 1 || n > WORKERS_MAX)
        return config_fail(config, "WORKERS", err, "must be 1..%d", WORKERS_MAX);
    *out = (unsigned)n;
    return 0;
}

/* Runs what was posted, in order; the lock is held only to take the list. */
static void
wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *k = w->data;
    pthread_mutex_lock(&k->lock);
    struct message *m = k->head;
    k->head = k->tail = NULL;
    pthread_mutex_unlock(&k->lock);
    while (m != NULL) {
        struct message *next = m->next;
        m->fn(m->arg);
        free(m);
        m = next;
    }
}

static void *
worker_main(void *arg)
{
    struct worker *k = arg;
    ev_run(k->loop, 0);
    return NULL;
}

static void
quit(void *arg)
{
    struct worker *k = arg;
    ev_async_stop(k->loop, &k->wake);
    ev_break(k->loop, EVBREAK_ALL);
}

int
workers_new(struct ev_loop *main_loop, unsigned n, struct workers **out, struct ztr_err *err)
{
    *out = NULL;
    if (n < 1 || n > WORKERS_MAX)
        return ztr_err_set(err, ZTR_E_INVALID, "workers must be 1..%d", WORKERS_MAX);
    struct workers *w = calloc(1, sizeof(*w) + n * sizeof(w->workers[0]));
    if (w == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    w->main_thread = pthread_self();
    pthread_mutex_init(&w->done_lock, NULL);
    pthread_cond_init(&w->done_cond, NULL);
    /* Worker 0 runs its messages at once when they come from its own
     * thread; from another worker they wait in its queue like any other
     * (its wake-up does not keep the agent's loop running). */
    struct worker *main_worker = &w->workers[0];
    main_worker->pool = w;
    main_worker->loop = main_loop;
    pthread_mutex_init(&main_worker->lock, NULL);
    ev_async_init(&main_worker->wake, wake_cb);
    main_worker->wake.data = main_worker;
    ev_async_start(main_loop, &main_worker->wake);
    ev_unref(main_loop);
    w->count = 1;
    /* The threads inherit a full signal mask: signals go to the agent's
     * loop, whose handlers are the only ones. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    for (unsigned i = 1; i < n && rc == 0; i++) {
        struct worker *k = &w->workers[i];
        k->pool = w;
        k->loop = ev_loop_new(EVFLAG_AUTO);
        if (k->loop == NULL) {
            rc = ztr_err_set(err, ZTR_E_NOMEM, "cannot create worker %u's event loop", i);
            break;
        }
        pthread_mutex_init(&k->lock, NULL);
        ev_async_init(&k->wake, wake_cb);
        k->wake.data = k;
        ev_async_start(k->loop, &k->wake);
        w->count = i + 1;
        if (pthread_create(&k->thread, NULL, worker_main, k) != 0) {
            rc = ztr_err_set(err, ZTR_E_NOMEM, "cannot start worker %u's thread", i);
            break;
        }
        k->started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        workers_free(w);
        return -1;
    }
    *out = w;
    return 0;
}

void
workers_free(struct workers *w)
{
    if (w == NULL)
        return;
    struct worker *main_worker = &w->workers[0];
    ev_ref(main_worker->loop);
    ev_async_stop(main_worker->loop, &main_worker->wake);
    for (unsigned i = 1; i < w->count; i++) {
        struct worker *k = &w->workers[i];
        if (k->started) {
            struct ztr_err err;
            if (workers_post(w, i, quit, k, &err) == 0)
                pthread_join(k->thread, NULL);
        }
        if (!k->started)
            ev_async_stop(k->loop, &k->wake);
        ev_loop_destroy(k->loop);
    }
    /* What is still queued (a worker posted it before it stopped) runs
     * here: every thread but this one is gone, and each fn frees its arg. */
    for (unsigned i = 0; i < w->count; i++) {
        struct worker *k = &w->workers[i];
        while (k->head != NULL) {
            struct message *m = k->head;
            k->head = m->next;
            m->fn(m->arg);
            free(m);
        }
        pthread_mutex_destroy(&k->lock);
    }
    pthread_mutex_destroy(&w->done_lock);
    pthread_cond_destroy(&w->done_cond);
    free(w);
}

unsigned
workers_count(const struct workers *w)
{
    return w->count;
}

struct ev_loop *
workers_loop(const struct workers *w, unsigned i)
{
    return i < w->count ? w->workers[i].loop : NULL;
}

bool
workers_on(const struct workers *w, unsigned i)
{
    if (i >= w->count)
        return false;
    return pthread_equal(pthread_self(), i == 0 ? w->main_thread : w->workers[i].thread) != 0;
}

int
workers_post(struct workers *w, unsigned i, void (*fn)(void *arg), void *arg,
             struct ztr_err *err)
{
    if (i >= w->count)
        return ztr_err_set(err, ZTR_E_INVALID, "no worker %u", i);
    if (workers_on(w, i)) {
        fn(arg);
        return 0;
    }
    struct message *m = malloc(sizeof(*m));
    if (m == NULL)
        return ztr_err_set(err, ZTR_E_NOMEM, "out of memory");
    m->next = NULL;
    m->fn = fn;
    m->arg = arg;
    struct worker *k = &w->workers[i];
    pthread_mutex_lock(&k->lock);
    if (k->tail != NULL)
        k->tail->next = m;
    else
        k->head = m;
    k->tail = m;
    pthread_mutex_unlock(&k->lock);
    ev_async_send(k->loop, &k->wake);
    return 0;
}

struct call {
    struct workers *pool;
    void (*fn)(void *arg);
    void *arg;
    bool done;
};

static void
call_run(void *arg)
{
    struct call *c = arg;
    struct workers *pool = c->pool;   /* c is gone once done is seen */
    c->fn(c->arg);
    pthread_mutex_lock(&pool->done_lock);
    c->done = true;
    pthread_cond_broadcast(&pool->done_cond);
    pthread_mutex_unlock(&pool->done_lock);
}

int
workers_call(struct workers *w, unsigned i, void (*fn)(void *arg), void *arg,
             struct ztr_err *err)
{
    if (i < w->count && workers_on(w, i)) {
        fn(arg);
        return 0;
    }
    /* The call lives on this stack: the caller waits for it. */
    struct call c = {.pool = w, .fn = fn, .arg = arg};
    TRY(workers_post(w, i, call_run, &c, err));
    pthread_mutex_lock(&w->done_lock);
    while (!c.done)
        pthread_cond_wait(&w->done_cond, &w->done_lock);
    pthread_mutex_unlock(&w->done_lock);
    return 0;
}
