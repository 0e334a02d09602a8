/* Helpers shared by the kernel files (elementwise, activation, norm, softmax, rope, embedding,
 * cross_entropy, adamw), all static inline or macros so each file gets its own copy:
 *   - LLMTS_X86 and TARGET_AVX512 / TARGET_AVX2: x86-64 detection and per-function target attributes
 *   - size_arg / size_mul: checked size arguments for the N-API wrappers
 *   - parallel_for: a range split over the thread pool (for kernels whose result cannot depend on it)
 *   - SIMD_RANGE: a range function that picks the AVX-512, AVX2 or portable kernel by cpu_simd()
 *   - tail16 / mask8 / ld8 / st8: masks and masked loads/stores for the last partial vector */
#ifndef LLMTS_KERNEL_UTIL_H
#define LLMTS_KERNEL_UTIL_H

#include <stdint.h>
#include <stdio.h>

#include "cpu.h"
#include "napi_args.h"
#include "threadpool.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LLMTS_X86 1
#include <immintrin.h>
#define TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

/* below this many elements a kernel stays on the calling thread (a pool round trip costs a few us) */
#define PAR_MIN_WORK 32768
/* smallest share of the work worth handing to a task */
#define PAR_TASK_WORK 16384
#define MAX_SIZE ((int64_t)1 << 40)

static inline int64_t size_arg(args_t *a, size_t i, const char *fn, const char *name) {
  int64_t v = arg_int(a, i);
  if (a->failed) return 0;
  if (v < 0 || v > MAX_SIZE) {
    char msg[200];
    snprintf(msg, sizeof msg, "llmts native %s: argument %zu (%s) must be a non-negative integer, got %lld", fn, i,
             name, (long long)v);
    napi_throw_type_error(a->env, NULL, msg);
    a->failed = 1;
    return 0;
  }
  return v;
}

/* x * y for two checked sizes, refusing products that no typed array can hold */
static inline int64_t size_mul(args_t *a, const char *fn, int64_t x, int64_t y) {
  if (a->failed) return 0;
  if (y != 0 && x > MAX_SIZE / y) {
    char msg[200];
    snprintf(msg, sizeof msg, "llmts native %s: sizes %lld x %lld are too large", fn, (long long)x, (long long)y);
    napi_throw_type_error(a->env, NULL, msg);
    a->failed = 1;
    return 0;
  }
  return x * y;
}

typedef void (*range_fn)(const void *ctx, int64_t lo, int64_t hi);
typedef struct {
  range_fn fn;
  const void *ctx;
  int64_t n, chunk;
} range_job;

static inline void range_task(void *p, int task, int thread) {
  (void)thread;
  const range_job *j = (const range_job *)p;
  int64_t lo = (int64_t)task * j->chunk, hi = lo + j->chunk;
  if (hi > j->n) hi = j->n;
  if (lo < hi) j->fn(j->ctx, lo, hi);
}

/* fn over items [0, n), each touching `cost` elements; chunks are multiples of `align` items.
 * Only for kernels whose result does not depend on how the range is split. */
static inline void parallel_for(range_fn fn, const void *ctx, int64_t n, int64_t cost, int64_t align) {
  if (n <= 0) return;
  int nt = pool_size();
  int64_t work = n * cost;
  int64_t tasks = work / PAR_TASK_WORK;
  if (tasks > 4 * (int64_t)nt) tasks = 4 * (int64_t)nt;
  if (tasks > n) tasks = n;
  if (nt <= 1 || work < PAR_MIN_WORK || tasks < 2) {
    fn(ctx, 0, n);
    return;
  }
  int64_t chunk = (n + tasks - 1) / tasks;
  chunk = (chunk + align - 1) / align * align;
  range_job job = {fn, ctx, n, chunk};
  pool_run(range_task, &job, (int)((n + chunk - 1) / chunk));
}

/* SIMD_RANGE(RANGE, KERNEL, CTX) defines the range_fn RANGE, which calls KERNEL_avx512,
 * KERNEL_avx2 or KERNEL_portable (each taking (const CTX *, int64_t lo, int64_t hi)) for the level
 * cpu_simd() reports; without x86 only KERNEL_portable needs to exist. */
#ifdef LLMTS_X86
#define SIMD_RANGE(RANGE, KERNEL, CTX)                        \
  static void RANGE(const void *p, int64_t lo, int64_t hi) { \
    const CTX *k = (const CTX *)p;                           \
    simd_level lvl = cpu_simd();                             \
    if (lvl == SIMD_AVX512) {                                \
      KERNEL##_avx512(k, lo, hi);                            \
      return;                                                \
    }                                                        \
    if (lvl == SIMD_AVX2) {                                  \
      KERNEL##_avx2(k, lo, hi);                              \
      return;                                                \
    }                                                        \
    KERNEL##_portable(k, lo, hi);                            \
  }
#else
#define SIMD_RANGE(RANGE, KERNEL, CTX) \
  static void RANGE(const void *p, int64_t lo, int64_t hi) { KERNEL##_portable((const CTX *)p, lo, hi); }
#endif

#ifdef LLMTS_X86
/* lanes [0, r) of a 16-lane vector (r may be <= 0 or >= 16) */
static inline __mmask16 tail16(int64_t r) {
  return r >= 16 ? (__mmask16)0xFFFF : r <= 0 ? (__mmask16)0 : (__mmask16)((1u << r) - 1u);
}

TARGET_AVX2 static inline __m256i mask8(int64_t r) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* load/store 8 floats, or the first r < 8 of them (none if r <= 0) */
TARGET_AVX2 static inline __m256 ld8(const float *p, int64_t r) {
  return r >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask8(r));
}
TARGET_AVX2 static inline void st8(float *p, __m256 v, int64_t r) {
  if (r >= 8)
    _mm256_storeu_ps(p, v);
  else
    _mm256_maskstore_ps(p, mask8(r), v);
}
#endif

#endif
