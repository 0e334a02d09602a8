/* Rotary position embedding (rotate-half convention, Hugging Face Llama), forward and inverse.
 *
 * AVX-512 and AVX2+FMA paths (x86-64, chosen at run time by cpu_simd()) and a portable C path;
 * rows (b, t) are split over the thread pool. out may alias x. */
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
 * For every row (b, t), head h and i < half: with c = cos[p, i], s = +-sin[p, i], p = posOffset + t,
 *   out[i] = x[i] c - x[i + half] s,   out[i + half] = x[i] s + x[i + half] c.
 * Both halves of a block are loaded before either is stored, so out may alias x. */
typedef struct {
  const float *x, *cos, *sin;
  float *out;
  int64_t T, nHeads, headDim, posOffset;
  float sign;
} rope_ctx;

static void rope_rows_portable(const rope_ctx *k, int64_t r0, int64_t r1) {
  const int64_t half = k->headDim >> 1, width = k->nHeads * k->headDim;
  const float sign = k->sign;
  for (int64_t row = r0; row < r1; row++) {
    const float *cs = k->cos + (k->posOffset + row % k->T) * half, *sn = k->sin + (k->posOffset + row % k->T) * half;
    for (int64_t h = 0; h < k->nHeads; h++) {
      const float *x = k->x + row * width + h * k->headDim;
      float *o = k->out + row * width + h * k->headDim;
      for (int64_t i = 0; i < half; i++) {
        const float c = cs[i], s = sign * sn[i], a = x[i], b = x[i + half];
        o[i] = a * c - b * s;
        o[i + half] = a * s + b * c;
      }
    }
  }
}

#ifdef LLMTS_X86
TARGET_AVX512 static void rope_rows_avx512(const rope_ctx *k, int64_t r0, int64_t r1) {
  const int64_t half = k->headDim >> 1, width = k->nHeads * k->headDim;
  const __m512 sign = _mm512_set1_ps(k->sign);
  for (int64_t row = r0; row < r1; row++) {
    const float *cs = k->cos + (k->posOffset + row % k->T) * half, *sn = k->sin + (k->posOffset + row % k->T) * half;
    for (int64_t h = 0; h < k->nHeads; h++) {
      const float *x = k->x + row * width + h * k->headDim;
      float *o = k->out + row * width + h * k->headDim;
      for (int64_t i = 0; i < half; i += 16) {
        __mmask16 m = tail16(half - i);
        __m512 c = _mm512_maskz_loadu_ps(m, cs + i), s = _mm512_mul_ps(sign, _mm512_maskz_loadu_ps(m, sn + i));
        __m512 a = _mm512_maskz_loadu_ps(m, x + i), b = _mm512_maskz_loadu_ps(m, x + i + half);
        __m512 lo = _mm512_fmsub_ps(a, c, _mm512_mul_ps(b, s));
        __m512 hi = _mm512_fmadd_ps(a, s, _mm512_mul_ps(b, c));
        _mm512_mask_storeu_ps(o + i, m, lo);
        _mm512_mask_storeu_ps(o + i + half, m, hi);
      }
    }
  }
}

TARGET_AVX2 static void rope_rows_avx2(const rope_ctx *k, int64_t r0, int64_t r1) {
  const int64_t half = k->headDim >> 1, width = k->nHeads * k->headDim;
  const __m256 sign = _mm256_set1_ps(k->sign);
  for (int64_t row = r0; row < r1; row++) {
    const float *cs = k->cos + (k->posOffset + row % k->T) * half, *sn = k->sin + (k->posOffset + row % k->T) * half;
    for (int64_t h = 0; h < k->nHeads; h++) {
      const float *x = k->x + row * width + h * k->headDim;
      float *o = k->out + row * width + h * k->headDim;
      for (int64_t i = 0; i < half; i += 8) {
        const int64_t n = half - i;
        __m256 c = ld8(cs + i, n), s = _mm256_mul_ps(sign, ld8(sn + i, n));
        __m256 a = ld8(x + i, n), b = ld8(x + i + half, n);
        __m256 lo = _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s));
        __m256 hi = _mm256_fmadd_ps(a, s, _mm256_mul_ps(b, c));
        st8(o + i, lo, n);
        st8(o + i + half, hi, n);
      }
    }
  }
}
#endif

static void rope_range(const void *p, int64_t r0, int64_t r1) {
  const rope_ctx *k = (const rope_ctx *)p;
#ifdef LLMTS_X86
  simd_level lvl = cpu_simd();
  if (lvl == SIMD_AVX512) {
    rope_rows_avx512(k, r0, r1);
    return;
  }
  if (lvl == SIMD_AVX2) {
    rope_rows_avx2(k, r0, r1);
    return;
  }
#endif
  rope_rows_portable(k, r0, r1);
}

/* rope(x, out, cos, sin, B, T, nHeads, headDim, posOffset, inverse) */
static napi_value js_rope(napi_env env, napi_callback_info info) {
  const char *fn = "rope";
  args_t a;
  if (!args_init(&a, env, info, 10, fn)) return NULL;
  int64_t B = size_arg(&a, 4, fn, "B"), T = size_arg(&a, 5, fn, "T");
  int64_t nHeads = size_arg(&a, 6, fn, "nHeads"), headDim = size_arg(&a, 7, fn, "headDim");
  int64_t posOffset = size_arg(&a, 8, fn, "posOffset");
  int inverse = arg_bool(&a, 9);
  int64_t rows = size_mul(&a, fn, B, T);
  int64_t width = size_mul(&a, fn, nHeads, headDim);
  int64_t total = size_mul(&a, fn, rows, width);
  int64_t table = size_mul(&a, fn, posOffset + T, headDim >> 1);
  rope_ctx k;
  memset(&k, 0, sizeof k);
  k.x = arg_f32(&a, 0, (size_t)total, 0);
  k.out = arg_f32(&a, 1, (size_t)total, 0);
  k.cos = arg_f32(&a, 2, (size_t)table, 0);
  k.sin = arg_f32(&a, 3, (size_t)table, 0);
  if (a.failed) return NULL;
  if (rows == 0 || width == 0) return make_undefined(env);
  k.T = T;
  k.nHeads = nHeads;
  k.headDim = headDim;
  k.posOffset = posOffset;
  k.sign = inverse ? -1.0f : 1.0f;
  parallel_for(rope_range, &k, rows, width, 1);
  return make_undefined(env);
}

const export_t rope_exports[] = {{"rope", js_rope}, {NULL, NULL}};
