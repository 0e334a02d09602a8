/* Persistent thread pool: see threadpool.h. */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sched.h>
#include <time.h>

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

/* Runs tasks of the current job until none is left to claim; returns how many it ran. */
static int run_tasks(int thread) {
  int ran = 0;
  for (;;) {
    uint64_t t = atomic_load_explicit(&ticket, memory_order_acquire);
    unsigned n = (unsigned)(t >> FIELD_BITS) & FIELD_MASK;
    unsigned next = (unsigned)t & FIELD_MASK;
    if (next >= n) return ran;
    pool_task_fn fn = job_fn;
    void *ctx = job_ctx;
    int offset = job_offset;
    if (!atomic_compare_exchange_weak_explicit(&ticket, &t, t + 1, memory_order_acq_rel, memory_order_acquire)) continue;
    fn(ctx, offset + (int)next, thread);
    ran++;
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

/* ---- a busy neighbour: when the workers cost more than they bring, the caller works alone ----
 * A worker that shares its core with another process is descheduled now and then while it holds
 * a task, and the caller then waits for it (a scheduler time slice, milliseconds) with the rest of
 * the job done. Each job weighs what the workers brought (their tasks, at the caller's own time
 * per task) against what waiting for them cost; when over a window of jobs the cost is larger,
 * jobs run on the calling thread alone for a while, then the workers are tried again. Which
 * thread runs a task never changes a result (kernels split their work independently of it). */
#define WINDOW_JOBS 32
#define ALONE_NS 250000000ull /* 250 ms */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double window_gain_ns, window_cost_ns;
static int window_jobs;
static uint64_t alone_until_ns;

static void weigh_job(int ntasks, int mine, uint64_t t0, uint64_t t_mine, uint64_t t_end) {
  double per_task = mine > 0 ? (double)(t_mine - t0) / mine : 0.0;
  window_gain_ns += per_task * (ntasks - mine);
  window_cost_ns += (double)(t_end - t_mine);
  if (++window_jobs < WINDOW_JOBS) return;
  if (window_cost_ns > window_gain_ns) alone_until_ns = t_end + ALONE_NS;
  window_gain_ns = window_cost_ns = 0.0;
  window_jobs = 0;
}

/* One job of at most MAX_JOB_TASKS tasks: publish, work along, wait for the stragglers. */
static void run_job(pool_task_fn fn, void *ctx, int offset, int ntasks) {
  uint64_t t0 = now_ns();
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
  int mine = run_tasks(0);
  uint64_t t_mine = now_ns();
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
  weigh_job(ntasks, mine, t0, t_mine, now_ns());
}

void pool_run(pool_task_fn fn, void *ctx, int ntasks) {
  if (ntasks <= 0) return;
  if (ntasks == 1 || n_threads <= 1 || (alone_until_ns != 0 && now_ns() < alone_until_ns)) {
    for (int i = 0; i < ntasks; i++) fn(ctx, i, 0);
    return;
  }
  for (int offset = 0; offset < ntasks; offset += MAX_JOB_TASKS) {
    int n = ntasks - offset < MAX_JOB_TASKS ? ntasks - offset : MAX_JOB_TASKS;
    run_job(fn, ctx, offset, n);
  }
}
