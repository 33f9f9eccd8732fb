/*
 * The data plane's workers: one event loop per worker, so that an agent's
 * sessions use every core (WORKERS).
 *
 * Worker 0 is the caller's own loop (the agent's: control stream, /health,
 * /metrics); workers 1..n-1 each run a loop of their own on a thread of
 * their own. With one worker there is no thread at all: the single-loop
 * model as it always was.
 *
 * Nothing a worker owns is touched by another thread. The one way in is a
 * message: workers_post queues fn(arg) for worker i and wakes its loop
 * (ev_async); it runs on that loop's thread, in the order posted. Posted
 * from worker i's own thread (the agent's loop posting to worker 0), the
 * call happens at once, on the caller's stack, as a direct call would. workers_call does the same and waits until fn has returned:
 * for setup, teardown and reading a worker's counters, never on a byte's
 * path. The queue's mutex is held only to link or unlink a message.
 *
 * Signals are blocked on the workers' threads: they reach the agent's loop.
 */
#ifndef ZTR_DATA_WORKERS_H
#define ZTR_DATA_WORKERS_H

#include <stdbool.h>
#include <stddef.h>

#include "base/config.h"
#include "base/err.h"

struct ev_loop;

#define WORKERS_MAX 64

/* The WORKERS key both agents take (in their config schema); read with
 * workers_config. Unset: the number of cores this process may run on. */
#define WORKERS_CONFIG_KEY                                                                     \
    {.name = "WORKERS", .type = CONFIG_UINT,                                                   \
     .help = "data-plane event loops (threads), 1..64; 1 = one loop; default: the number of "  \
             "usable cores"}

/* WORKERS from config: its value (1..WORKERS_MAX, else a config error
 * naming the key), or when unset workers_default(). */
int workers_config(const struct config *config, unsigned *out, struct ztr_err *err);
/* The cores this process may run on (sched_getaffinity), 1..WORKERS_MAX. */
unsigned workers_default(void);

struct workers;

/* n workers (1..WORKERS_MAX); worker 0 is main_loop (the caller's, run by
 * the caller), the others start their threads and loops here. */
int workers_new(struct ev_loop *main_loop, unsigned n, struct workers **out,
                struct ztr_err *err);
/* Stops and joins the threads and frees their loops. Messages still
 * queued then run on the caller's thread (every other one is gone): a fn
 * must cope with its worker's data plane already stopped. NULL is a no-op. */
void workers_free(struct workers *w);

unsigned workers_count(const struct workers *w);
struct ev_loop *workers_loop(const struct workers *w, unsigned i);
/* Whether the calling thread is worker i's. */
bool workers_on(const struct workers *w, unsigned i);

/* fn(arg) on worker i's thread, in order (at once when called on it); fn
 * owns arg. Any thread may post to any worker. Fails (arg not taken) only
 * out of memory. */
int workers_post(struct workers *w, unsigned i, void (*fn)(void *arg), void *arg,
                 struct ztr_err *err);
/* fn(arg) on worker i's thread; returns once it has returned. arg stays
 * the caller's. */
int workers_call(struct workers *w, unsigned i, void (*fn)(void *arg), void *arg,
                 struct ztr_err *err);

#endif
