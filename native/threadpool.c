/* Persistent thread pool: see threadpool.h. */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sched.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_THREADS 256
/* spin iterations before an idle worker sleeps (a few tens of microseconds) */
#define SPIN_LIMIT 20000

static int n_threads = 0;
static pthread_t workers[MAX_THREADS];
static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;

static pool_task_fn job_fn;
static void *job_ctx;
static int job_tasks;
static atomic_int next_task;
static atomic_int tasks_done;
static atomic_uint generation;

static void run_tasks(int thread) {
  for (;;) {
    int i = atomic_fetch_add_explicit(&next_task, 1, memory_order_acq_rel);
    if (i >= job_tasks) break;
    job_fn(job_ctx, i, thread);
    atomic_fetch_add_explicit(&tasks_done, 1, memory_order_release);
  }
}

static void *worker_main(void *arg) {
  int thread = (int)(long)arg;
  unsigned seen = atomic_load(&generation);
  for (;;) {
    int spins = 0;
    while (atomic_load_explicit(&generation, memory_order_acquire) == seen && spins < SPIN_LIMIT) {
      CPU_RELAX();
      spins++;
    }
    if (atomic_load_explicit(&generation, memory_order_acquire) == seen) {
      pthread_mutex_lock(&mutex);
      while (atomic_load_explicit(&generation, memory_order_acquire) == seen) pthread_cond_wait(&wake, &mutex);
      pthread_mutex_unlock(&mutex);
    }
    seen = atomic_load_explicit(&generation, memory_order_acquire);
    run_tasks(thread);
  }
  return NULL;
}

void pool_init(int nthreads) {
  if (n_threads > 0) return;
  if (nthreads < 1) nthreads = 1;
  if (nthreads > MAX_THREADS) nthreads = MAX_THREADS;
  n_threads = nthreads;
  for (int t = 1; t < nthreads; t++) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20);
    pthread_create(&workers[t], &attr, worker_main, (void *)(long)t);
    pthread_attr_destroy(&attr);
  }
}

int pool_size(void) { return n_threads > 0 ? n_threads : 1; }

void pool_run(pool_task_fn fn, void *ctx, int ntasks) {
  if (ntasks <= 0) return;
  if (ntasks == 1 || n_threads <= 1) {
    for (int i = 0; i < ntasks; i++) fn(ctx, i, 0);
    return;
  }
  job_fn = fn;
  job_ctx = ctx;
  job_tasks = ntasks;
  atomic_store_explicit(&tasks_done, 0, memory_order_relaxed);
  atomic_store_explicit(&next_task, 0, memory_order_release);
  pthread_mutex_lock(&mutex);
  atomic_fetch_add_explicit(&generation, 1, memory_order_release);
  pthread_cond_broadcast(&wake);
  pthread_mutex_unlock(&mutex);
  run_tasks(0);
  while (atomic_load_explicit(&tasks_done, memory_order_acquire) < ntasks) CPU_RELAX();
}
