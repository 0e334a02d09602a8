/* Persistent thread pool: see threadpool.h. */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
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
/* while spinning, give the core away every YIELD_EVERY iterations: when another process keeps a
 * core busy, our own threads can end up sharing one core, and a spinning thread must not hold
 * it while the thread with real work waits for the scheduler */
#define YIELD_EVERY 64
/* spin iterations the calling thread waits for stragglers before it sleeps: a worker that was
 * descheduled mid-task then gets this core (the scheduler pulls it over to an idle core) */
#define WAIT_SPIN 4000

static int n_threads = 0;
static pthread_t workers[MAX_THREADS];
static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;

/* The job being run. Tasks are claimed through one 64-bit ticket word holding the job number,
 * the task count and the next unclaimed index, so a worker that is late from an earlier job can
 * never claim a task of the next one (its compare-and-swap sees a different word) and never
 * acts on half-written job parameters (they only change once every task of a job is claimed). */
static pool_task_fn job_fn;
static void *job_ctx;
static int job_offset;
static _Atomic uint64_t ticket;
static atomic_int tasks_done;
static atomic_uint generation;
/* the calling thread sleeps here when stragglers take long; the worker that finishes a job's last
 * task wakes it */
static pthread_mutex_t done_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;

#define FIELD_BITS 20
#define FIELD_MASK ((1u << FIELD_BITS) - 1)
#define MAX_JOB_TASKS ((int)FIELD_MASK)

static void run_tasks(int thread) {
  for (;;) {
    uint64_t t = atomic_load_explicit(&ticket, memory_order_acquire);
    unsigned n = (unsigned)(t >> FIELD_BITS) & FIELD_MASK;
    unsigned next = (unsigned)t & FIELD_MASK;
    if (next >= n) return;
    pool_task_fn fn = job_fn;
    void *ctx = job_ctx;
    int offset = job_offset;
    if (!atomic_compare_exchange_weak_explicit(&ticket, &t, t + 1, memory_order_acq_rel, memory_order_acquire)) continue;
    fn(ctx, offset + (int)next, thread);
    int done = atomic_fetch_add_explicit(&tasks_done, 1, memory_order_acq_rel) + 1;
    if (done == (int)n && thread != 0) {
      /* the caller may be asleep waiting for this last task */
      pthread_mutex_lock(&done_mutex);
      pthread_cond_signal(&done_cond);
      pthread_mutex_unlock(&done_mutex);
    }
  }
}

static void *worker_main(void *arg) {
  int thread = (int)(long)arg;
  unsigned seen = atomic_load(&generation);
  for (;;) {
    int spins = 0;
    while (atomic_load_explicit(&generation, memory_order_acquire) == seen && spins < SPIN_LIMIT) {
      if (++spins % YIELD_EVERY == 0) sched_yield();
      else CPU_RELAX();
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

/* One job of at most MAX_JOB_TASKS tasks: publish, work along, wait for the stragglers. */
static void run_job(pool_task_fn fn, void *ctx, int offset, int ntasks) {
  static uint64_t job_number = 0;
  job_fn = fn;
  job_ctx = ctx;
  job_offset = offset;
  atomic_store_explicit(&tasks_done, 0, memory_order_relaxed);
  job_number = (job_number + 1) & 0xFFFFFF;
  uint64_t word = (job_number << (2 * FIELD_BITS)) | ((uint64_t)ntasks << FIELD_BITS);
  atomic_store_explicit(&ticket, word, memory_order_release);
  pthread_mutex_lock(&mutex);
  atomic_fetch_add_explicit(&generation, 1, memory_order_release);
  pthread_cond_broadcast(&wake);
  pthread_mutex_unlock(&mutex);
  run_tasks(0);
  /* every task is claimed: wait for the ones still running on other threads, spinning briefly
   * (yielding now and then), then asleep */
  for (int spins = 0; atomic_load_explicit(&tasks_done, memory_order_acquire) < ntasks; spins++) {
    if (spins < WAIT_SPIN) {
      if (spins % YIELD_EVERY == YIELD_EVERY - 1) sched_yield();
      else CPU_RELAX();
      continue;
    }
    pthread_mutex_lock(&done_mutex);
    while (atomic_load_explicit(&tasks_done, memory_order_acquire) < ntasks) pthread_cond_wait(&done_cond, &done_mutex);
    pthread_mutex_unlock(&done_mutex);
  }
}

void pool_run(pool_task_fn fn, void *ctx, int ntasks) {
  if (ntasks <= 0) return;
  if (ntasks == 1 || n_threads <= 1) {
    for (int i = 0; i < ntasks; i++) fn(ctx, i, 0);
    return;
  }
  for (int offset = 0; offset < ntasks; offset += MAX_JOB_TASKS) {
    int n = ntasks - offset < MAX_JOB_TASKS ? ntasks - offset : MAX_JOB_TASKS;
    run_job(fn, ctx, offset, n);
  }
}
