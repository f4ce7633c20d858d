/*
 * threadpool.c - persistent worker threads for data-parallel ops (see threadpool.h for the contract).
 *
 * Protocol. A run is announced by bumping `generation` (after `fn` and `ctx` are written, so a worker that sees
 * the new generation sees the task); each worker runs fn(ctx, ith, nth) for its own ith and decrements
 * `pending`; the caller does ith = 0 and then waits for `pending` to reach 0. Waiting on either side first
 * spins (cheap when runs come back to back, as matmuls in a forward pass do), then sleeps on a condition
 * variable under `mu`. Every change that a sleeper waits for is published under `mu` before the broadcast,
 * so no wake-up is lost.
 *
 *   worker:  wait(generation != seen) -> seen = generation -> stop? exit : fn(ctx, ith, nth) -> pending--
 *   caller:  fn, ctx, pending = nth-1 -> generation++ (broadcast) -> fn(ctx, 0, nth) -> wait(pending == 0)
 *
 * Threads: one driving thread (the caller of zl_pool_run) owns fn/ctx/pending between runs; workers only read
 * fn/ctx during a run. zl_pool_destroy sets `stop`, wakes everyone and joins.
 */
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ volatile("yield" ::: "memory")
#else
#define cpu_relax() ((void)0)
#endif

/* Spin iterations before sleeping. Short: the machine may be shared, and sleeping costs only a wake-up. Every
 * YIELD_EVERY iterations a spinner yields its core, so a pool larger than the free cores still makes progress
 * (the thread it waits for may be queued behind it). */
enum { SPIN_ITERS = 1 << 14, YIELD_EVERY = 64 };

static inline void spin_pause(int i)
{
    if (i % YIELD_EVERY == YIELD_EVERY - 1)
        sched_yield();
    else
        cpu_relax();
}

typedef struct worker {
    zl_pool *pool;
    int ith;
    pthread_t thread;
} worker;

struct zl_pool {
    int n_threads; /* including the caller */
    worker *workers; /* n_threads - 1 of them, ith 1 .. n_threads-1 */
    int n_started;

    pthread_mutex_t mu;
    pthread_cond_t wake; /* generation changed or stop */
    pthread_cond_t done; /* pending reached 0 */

    zl_task_fn fn;
    void *ctx;
    atomic_uint generation;
    atomic_int pending;
    atomic_bool stop;
};

static void *worker_main(void *arg)
{
    worker *w = arg;
    zl_pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned gen = atomic_load_explicit(&p->generation, memory_order_acquire);
        for (int i = 0; gen == seen && i < SPIN_ITERS; i++) {
            spin_pause(i);
            gen = atomic_load_explicit(&p->generation, memory_order_acquire);
        }
        if (gen == seen) {
            pthread_mutex_lock(&p->mu);
            while ((gen = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
                   !atomic_load(&p->stop))
                pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = gen;
        p->fn(p->ctx, w->ith, p->n_threads);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

zl_pool *zl_pool_create(int n_threads)
{
    if (n_threads <= 0) {
        const long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    zl_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, false);
    if (pthread_mutex_init(&p->mu, NULL) != 0) goto fail_mu;
    if (pthread_cond_init(&p->wake, NULL) != 0) goto fail_wake;
    if (pthread_cond_init(&p->done, NULL) != 0) goto fail_done;
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) goto fail_workers;
        for (int i = 0; i < n_threads - 1; i++) {
            p->workers[i].pool = p;
            p->workers[i].ith = i + 1;
            if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0) {
                zl_pool_destroy(p); /* joins the ones already started */
                return NULL;
            }
            p->n_started++;
        }
    }
    return p;

fail_workers:
    pthread_cond_destroy(&p->done);
fail_done:
    pthread_cond_destroy(&p->wake);
fail_wake:
    pthread_mutex_destroy(&p->mu);
fail_mu:
    free(p);
    return NULL;
}

void zl_pool_destroy(zl_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->workers[i].thread, NULL);
    free(p->workers);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int zl_pool_size(const zl_pool *p)
{
    return p ? p->n_threads : 1;
}

void zl_pool_run(zl_pool *p, zl_task_fn fn, void *ctx)
{
    if (!p || p->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    fn(ctx, 0, p->n_threads);

    for (int i = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0 && i < SPIN_ITERS; i++)
        spin_pause(i);
    if (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
