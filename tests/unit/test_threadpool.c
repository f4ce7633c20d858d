/*
 * test_threadpool.c - zl_pool: every thread index runs exactly once per run, the caller is thread 0, runs see
 * the previous run's writes, back-to-back and sleepy runs both work, and destroy joins cleanly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "core/threadpool.h"

enum { MAX_T = 8 };

typedef struct count_ctx {
    atomic_int calls[MAX_T];
    atomic_int bad_nth;
    int expect_nth;
    pthread_t caller;
    atomic_int caller_was_0; /* 1 when ith 0 ran on the calling thread */
    long data[MAX_T];        /* each run: thread ith adds ith + 1 to its slot */
} count_ctx;

static void count_task(void *arg, int ith, int nth)
{
    count_ctx *c = arg;
    if (nth != c->expect_nth) atomic_fetch_add(&c->bad_nth, 1);
    if (ith == 0 && pthread_equal(pthread_self(), c->caller)) atomic_store(&c->caller_was_0, 1);
    atomic_fetch_add(&c->calls[ith], 1);
    c->data[ith] += ith + 1;
}

static void run_pool(int n, int runs, int sleep_between)
{
    zl_pool *p = zl_pool_create(n);
    assert_non_null(p);
    assert_int_equal(zl_pool_size(p), n);
    count_ctx c;
    memset(&c, 0, sizeof c);
    c.expect_nth = n;
    c.caller = pthread_self();
    for (int r = 0; r < runs; r++) {
        zl_pool_run(p, count_task, &c);
        /* after a run returns, every thread's writes of that run are visible here */
        for (int i = 0; i < n; i++) assert_int_equal(c.data[i], (long)(r + 1) * (i + 1));
        if (sleep_between) {
            struct timespec ts = { 0, 2 * 1000 * 1000 }; /* 2 ms: workers go to sleep on the condvar */
            nanosleep(&ts, NULL);
        }
    }
    for (int i = 0; i < n; i++) assert_int_equal(atomic_load(&c.calls[i]), runs);
    for (int i = n; i < MAX_T; i++) assert_int_equal(atomic_load(&c.calls[i]), 0);
    assert_int_equal(atomic_load(&c.bad_nth), 0);
    assert_int_equal(atomic_load(&c.caller_was_0), 1);
    zl_pool_destroy(p);
}

static void test_sizes_back_to_back(void **state)
{
    (void)state;
    static const int sizes[] = { 1, 2, 3, 5, 8 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) run_pool(sizes[i], 2000, 0);
}

static void test_sleeping_workers(void **state)
{
    (void)state;
    run_pool(2, 30, 1);
    run_pool(4, 10, 1);
}

static void test_null_pool_runs_inline(void **state)
{
    (void)state;
    count_ctx c;
    memset(&c, 0, sizeof c);
    c.expect_nth = 1;
    c.caller = pthread_self();
    zl_pool_run(NULL, count_task, &c);
    assert_int_equal(atomic_load(&c.calls[0]), 1);
    assert_int_equal(atomic_load(&c.caller_was_0), 1);
    assert_int_equal(zl_pool_size(NULL), 1);
}

static void test_default_size_and_idle_destroy(void **state)
{
    (void)state;
    zl_pool *p = zl_pool_create(0);
    assert_non_null(p);
    assert_true(zl_pool_size(p) >= 1);
    zl_pool_destroy(p); /* never ran: workers are asleep or spinning */
    zl_pool_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_back_to_back),
        cmocka_unit_test(test_sleeping_workers),
        cmocka_unit_test(test_null_pool_runs_inline),
        cmocka_unit_test(test_default_size_and_idle_destroy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
