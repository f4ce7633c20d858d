/*
 * threadpool.h - a persistent pool of worker threads for data-parallel ops.
 *
 * zl_pool_run(pool, fn, ctx) calls fn(ctx, ith, nth) once for every ith in [0, nth) where nth is the pool size,
 * the calling thread doing ith = 0, and returns when all calls have returned. Workers are created once at
 * zl_pool_create() and wait between runs (spin briefly, then sleep), so a run costs no thread creation.
 * A pool is driven by one thread at a time (the thread that runs the forward pass).
 */
#ifndef ZL_THREADPOOL_H
#define ZL_THREADPOOL_H

typedef struct zl_pool zl_pool;
typedef void (*zl_task_fn)(void *ctx, int ith, int nth);

/* n_threads <= 0 means the number of online CPUs. Returns NULL on allocation or thread-creation failure. */
zl_pool *zl_pool_create(int n_threads);
void zl_pool_destroy(zl_pool *pool);
int zl_pool_size(const zl_pool *pool);
/* pool may be NULL: then fn(ctx, 0, 1) runs on the calling thread. */
void zl_pool_run(zl_pool *pool, zl_task_fn fn, void *ctx);

#endif
