/* A persistent thread pool owned by the addon: created once, reused by every kernel.
 *
 *   static void work(void *ctx, int task, int thread) { ... }
 *   pool_run(work, &ctx, ntasks);   // the calling thread works too; returns when all tasks are done
 *
 * Idle workers spin briefly (so back-to-back kernels do not pay a wake-up) and then sleep on
 * a condition variable, so they never compete with Node's event loop between calls. */
#ifndef LLMTS_THREADPOOL_H
#define LLMTS_THREADPOOL_H

typedef void (*pool_task_fn)(void *ctx, int task, int thread);

/* Start the pool with n threads in total (the caller counts as one). Idempotent. */
void pool_init(int nthreads);
/* Number of threads that run tasks (>= 1). */
int pool_size(void);
/* Run fn(ctx, i, thread) for i in [0, ntasks); blocks until all are finished. */
void pool_run(pool_task_fn fn, void *ctx, int ntasks);

#endif
