/* The data plane's workers (data/workers.c): WORKERS from the config,
 * messages run on their worker's own thread in the order posted, worker 0
 * is the caller's loop, calls wait for their answer. */
#include "tests/unit/support.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "data/workers.h"

static const struct config_key schema[] = {WORKERS_CONFIG_KEY};

/* 0 with *n, or -1 with the error's text in msg. */
static int
load_workers(const char *value, unsigned *n, char *msg, size_t cap)
{
    char entry[64];
    snprintf(entry, sizeof(entry), "WORKERS=%s", value != NULL ? value : "");
    char *env[] = {entry, NULL};
    char *none[] = {NULL};
    struct config *config = NULL;
    struct ztr_err err = {0};
    assert_int_equal(config_load(schema, 1, value != NULL ? env : none, 0, none, &config, &err),
                     0);
    int rc = workers_config(config, n, &err);
    snprintf(msg, cap, "%s", err.msg);
    config_free(config);
    return rc;
}

static void
test_workers_setting(void **state)
{
    (void)state;
    unsigned n = 0;
    char msg[ZTR_ERR_MSG_MAX];
    assert_int_equal(load_workers(NULL, &n, msg, sizeof(msg)), 0);
    assert_int_equal(n, workers_default());
    assert_true(n >= 1 && n <= WORKERS_MAX);
    assert_int_equal(load_workers("1", &n, msg, sizeof(msg)), 0);
    assert_int_equal(n, 1);
    assert_int_equal(load_workers("64", &n, msg, sizeof(msg)), 0);
    assert_int_equal(n, 64);
    assert_int_equal(load_workers("0", &n, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "WORKERS"));
    assert_non_null(strstr(msg, "1..64"));
    assert_int_equal(load_workers("65", &n, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "WORKERS"));
}

#define POSTS 200

struct record {
    struct workers *pool;
    unsigned worker;
    int seen[POSTS];
    size_t count;
    bool wrong_thread;
};

struct note {
    struct record *record;
    int value;
};

static void
note_run(void *arg)
{
    struct note *n = arg;
    struct record *r = n->record;
    if (!workers_on(r->pool, r->worker))
        r->wrong_thread = true;
    r->seen[r->count++] = n->value;
    free(n);
}

static void
nothing(void *arg)
{
    (void)arg;
}

static void
test_messages_in_order_on_their_thread(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct workers *pool;
    struct ztr_err err = {0};
    assert_int_equal(workers_new(loop, 3, &pool, &err), 0);
    assert_int_equal(workers_count(pool), 3);
    assert_ptr_equal(workers_loop(pool, 0), loop);
    assert_true(workers_loop(pool, 1) != loop);
    assert_true(workers_on(pool, 0));
    assert_false(workers_on(pool, 1));
    struct record records[3] = {{pool, 0, {0}, 0, false}, {pool, 1, {0}, 0, false},
                                {pool, 2, {0}, 0, false}};
    for (int i = 0; i < POSTS; i++) {
        for (unsigned w = 0; w < 3; w++) {
            struct note *n = malloc(sizeof(*n));
            assert_non_null(n);
            *n = (struct note){&records[w], i};
            assert_int_equal(workers_post(pool, w, note_run, n, &err), 0);
        }
        /* Worker 0 is the caller's: its message ran already. */
        assert_int_equal(records[0].count, (size_t)i + 1);
    }
    /* A call waits for the messages posted before it. */
    for (unsigned w = 1; w < 3; w++)
        assert_int_equal(workers_call(pool, w, nothing, NULL, &err), 0);
    for (unsigned w = 0; w < 3; w++) {
        assert_int_equal(records[w].count, POSTS);
        assert_false(records[w].wrong_thread);
        for (int i = 0; i < POSTS; i++)
            assert_int_equal(records[w].seen[i], i);
    }
    assert_int_equal(workers_post(pool, 3, note_run, NULL, &err), -1);
    workers_free(pool);
    ev_loop_destroy(loop);
}

/* Worker 1 posts to worker 0: the message waits for the agent's loop and
 * runs there, on the main thread. */
struct relay_note {
    struct workers *pool;
    struct record *record;
};

static void
relay_to_main(void *arg)
{
    struct relay_note *r = arg;
    struct note *n = malloc(sizeof(*n));
    *n = (struct note){r->record, 42};
    struct ztr_err err;
    if (n != NULL && workers_post(r->pool, 0, note_run, n, &err) != 0)
        free(n);
    free(r);
}

static void
test_a_worker_posts_to_the_agents_loop(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct workers *pool;
    struct ztr_err err = {0};
    assert_int_equal(workers_new(loop, 2, &pool, &err), 0);
    struct record r = {pool, 0, {0}, 0, false};
    struct relay_note *relay = malloc(sizeof(*relay));
    assert_non_null(relay);
    *relay = (struct relay_note){pool, &r};
    assert_int_equal(workers_post(pool, 1, relay_to_main, relay, &err), 0);
    assert_int_equal(workers_call(pool, 1, nothing, NULL, &err), 0);
    assert_int_equal(r.count, 0);   /* queued for the agent's loop, not run on worker 1 */
    double end = test_now() + 5;
    while (r.count == 0 && test_now() < end)
        ev_run(loop, EVRUN_ONCE);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.seen[0], 42);
    assert_false(r.wrong_thread);
    /* The wake-up watcher alone does not keep the agent's loop running. */
    assert_int_equal(ev_run(loop, EVRUN_NOWAIT), 0);
    workers_free(pool);
    ev_loop_destroy(loop);
}

static void
test_one_worker_has_no_thread(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct workers *pool;
    struct ztr_err err = {0};
    assert_int_equal(workers_new(loop, 1, &pool, &err), 0);
    struct record r = {pool, 0, {0}, 0, false};
    struct note *n = malloc(sizeof(*n));
    assert_non_null(n);
    *n = (struct note){&r, 7};
    assert_int_equal(workers_call(pool, 0, note_run, n, &err), 0);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.seen[0], 7);
    assert_false(r.wrong_thread);
    struct workers *none;
    assert_int_equal(workers_new(loop, 0, &none, &err), -1);
    assert_int_equal(workers_new(loop, WORKERS_MAX + 1, &none, &err), -1);
    assert_null(none);
    workers_free(pool);
    ev_loop_destroy(loop);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workers_setting),
        cmocka_unit_test(test_messages_in_order_on_their_thread),
        cmocka_unit_test(test_a_worker_posts_to_the_agents_loop),
        cmocka_unit_test(test_one_worker_has_no_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
