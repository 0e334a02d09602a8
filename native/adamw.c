/* AdamW, PyTorch semantics (torch.optim.AdamW), one fused pass over param, grad, m and v.
 *
 * AVX-512 and AVX2+FMA paths (x86-64, chosen at run time by cpu_simd()) and a portable C path;
 * large tensors are split over the thread pool (elementwise, so the split cannot change the result). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cpu.h"
#include "napi_args.h"
#include "threadpool.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LLMTS_X86 1
#include <immintrin.h>
#define TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

/* ---- shared helpers (each kernel file carries its own copy) -------------------------------- */

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

/* ---- kernel --------------------------------------------------------------------------------
 *   m = b1 m + (1-b1) g;   v = b2 v + (1-b2) g^2
 *   p = p (1 - lr wd) - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * The bias corrections are computed once in double; the loop runs in float. */
typedef struct {
  float *p, *m, *v;
  const float *g;
  float b1, omb1, b2, omb2, eps, step_size, inv_bc2, decay;
} adamw_ctx;

static void adamw_portable(const adamw_ctx *k, int64_t lo, int64_t hi) {
  float *p = k->p, *m = k->m, *v = k->v;
  const float *g = k->g;
  for (int64_t i = lo; i < hi; i++) {
    const float gi = g[i];
    const float mi = k->b1 * m[i] + k->omb1 * gi;
    const float vi = k->b2 * v[i] + k->omb2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * k->decay - (k->step_size * mi) / (sqrtf(vi) * k->inv_bc2 + k->eps);
  }
}

#ifdef LLMTS_X86
TARGET_AVX512 static void adamw_avx512(const adamw_ctx *k, int64_t lo, int64_t hi) {
  float *p = k->p, *m = k->m, *v = k->v;
  const float *g = k->g;
  const __m512 b1 = _mm512_set1_ps(k->b1), omb1 = _mm512_set1_ps(k->omb1), b2 = _mm512_set1_ps(k->b2);
  const __m512 omb2 = _mm512_set1_ps(k->omb2), eps = _mm512_set1_ps(k->eps), ss = _mm512_set1_ps(k->step_size);
  const __m512 ibc2 = _mm512_set1_ps(k->inv_bc2), decay = _mm512_set1_ps(k->decay);
  for (int64_t i = lo; i < hi; i += 16) {
    __mmask16 msk = tail16(hi - i);
    __m512 gi = _mm512_maskz_loadu_ps(msk, g + i);
    __m512 mi = _mm512_fmadd_ps(b1, _mm512_maskz_loadu_ps(msk, m + i), _mm512_mul_ps(omb1, gi));
    __m512 vi = _mm512_fmadd_ps(b2, _mm512_maskz_loadu_ps(msk, v + i), _mm512_mul_ps(_mm512_mul_ps(omb2, gi), gi));
    _mm512_mask_storeu_ps(m + i, msk, mi);
    _mm512_mask_storeu_ps(v + i, msk, vi);
    __m512 den = _mm512_fmadd_ps(_mm512_sqrt_ps(vi), ibc2, eps);
    __m512 upd = _mm512_div_ps(_mm512_mul_ps(ss, mi), den);
    _mm512_mask_storeu_ps(p + i, msk, _mm512_fmsub_ps(_mm512_maskz_loadu_ps(msk, p + i), decay, upd));
  }
}

TARGET_AVX2 static void adamw_avx2(const adamw_ctx *k, int64_t lo, int64_t hi) {
  float *p = k->p, *m = k->m, *v = k->v;
  const float *g = k->g;
  const __m256 b1 = _mm256_set1_ps(k->b1), omb1 = _mm256_set1_ps(k->omb1), b2 = _mm256_set1_ps(k->b2);
  const __m256 omb2 = _mm256_set1_ps(k->omb2), eps = _mm256_set1_ps(k->eps), ss = _mm256_set1_ps(k->step_size);
  const __m256 ibc2 = _mm256_set1_ps(k->inv_bc2), decay = _mm256_set1_ps(k->decay);
  for (int64_t i = lo; i < hi; i += 8) {
    const int64_t n = hi - i;
    __m256 gi = ld8(g + i, n);
    __m256 mi = _mm256_fmadd_ps(b1, ld8(m + i, n), _mm256_mul_ps(omb1, gi));
    __m256 vi = _mm256_fmadd_ps(b2, ld8(v + i, n), _mm256_mul_ps(_mm256_mul_ps(omb2, gi), gi));
    st8(m + i, mi, n);
    st8(v + i, vi, n);
    __m256 den = _mm256_fmadd_ps(_mm256_sqrt_ps(vi), ibc2, eps);
    __m256 upd = _mm256_div_ps(_mm256_mul_ps(ss, mi), den);
    st8(p + i, _mm256_fmsub_ps(ld8(p + i, n), decay, upd), n);
  }
}
#endif

static void adamw_range(const void *p, int64_t lo, int64_t hi) {
  const adamw_ctx *k = (const adamw_ctx *)p;
#ifdef LLMTS_X86
  simd_level lvl = cpu_simd();
  if (lvl == SIMD_AVX512) {
    adamw_avx512(k, lo, hi);
    return;
  }
  if (lvl == SIMD_AVX2) {
    adamw_avx2(k, lo, hi);
    return;
  }
#endif
  adamw_portable(k, lo, hi);
}

/* adamw(param, grad, m, v, n, lr, beta1, beta2, eps, weightDecay, step) */
static napi_value js_adamw(napi_env env, napi_callback_info info) {
  const char *fn = "adamw";
  args_t a;
  if (!args_init(&a, env, info, 11, fn)) return NULL;
  int64_t n = size_arg(&a, 4, fn, "n");
  double lr = arg_f64(&a, 5), beta1 = arg_f64(&a, 6), beta2 = arg_f64(&a, 7), eps = arg_f64(&a, 8);
  double wd = arg_f64(&a, 9), step = arg_f64(&a, 10);
  adamw_ctx k;
  k.p = arg_f32(&a, 0, (size_t)n, 0);
  k.g = arg_f32(&a, 1, (size_t)n, 0);
  k.m = arg_f32(&a, 2, (size_t)n, 0);
  k.v = arg_f32(&a, 3, (size_t)n, 0);
  if (a.failed) return NULL;
  const double bc1 = 1.0 - pow(beta1, step), bc2_sqrt = sqrt(1.0 - pow(beta2, step));
  k.b1 = (float)beta1;
  k.omb1 = (float)(1.0 - beta1);
  k.b2 = (float)beta2;
  k.omb2 = (float)(1.0 - beta2);
  k.eps = (float)eps;
  k.step_size = (float)(lr / bc1);
  k.inv_bc2 = (float)(1.0 / bc2_sqrt);
  k.decay = (float)(1.0 - lr * wd);
  parallel_for(adamw_range, &k, n, 4, 16);
  return make_undefined(env);
}

const export_t adamw_exports[] = {{"adamw", js_adamw}, {NULL, NULL}};
