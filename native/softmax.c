/* Softmax over the last dimension (max-subtracted), forward and backward.
 *
 * AVX-512 and AVX2+FMA paths (x86-64, chosen at run time by cpu_simd()) and a portable C path, with
 * a polynomial exp accurate to about 1 ulp; rows are split over the thread pool. The backward
 * accumulates: dx += y (dy - sum(dy y)). */
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

/* ---- exp and sigmoid ------------------------------------------------------------------------
 * exp: Cephes-style reduction x = n ln2 + r, |r| <= ln2/2, and a degree-6 polynomial for e^r
 * (about 1 ulp). Inputs below -87 give 0 (-inf included), inputs above 88 are clamped, NaN stays
 * NaN. The scalar version is written branch-free so compilers can vectorize it (NEON, SSE2). */
#define EXP_HI 88.0f
#define EXP_LO -87.0f
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HI 0.693359375f
#define EXP_LN2_LO -2.12194440e-4f
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

static inline float exp_scalar(float x) {
  float xc = x > EXP_HI ? EXP_HI : x;
  xc = xc < EXP_LO ? EXP_LO : xc;
  /* round x*log2(e) to the nearest integer with the 1.5*2^23 trick; its bits also give n */
  float t = xc * EXP_LOG2E + 12582912.0f;
  uint32_t tb;
  memcpy(&tb, &t, sizeof tb);
  float n = t - 12582912.0f;
  float r = xc - n * EXP_LN2_HI;
  r = r - n * EXP_LN2_LO;
  float p = EXP_P0;
  p = p * r + EXP_P1;
  p = p * r + EXP_P2;
  p = p * r + EXP_P3;
  p = p * r + EXP_P4;
  p = p * r + EXP_P5;
  float y = p * (r * r) + (r + 1.0f);
  uint32_t sb = (tb - 0x4B400000u + 127u) << 23;
  float s;
  memcpy(&s, &sb, sizeof s);
  y *= s;
  return x < EXP_LO ? 0.0f : y;
}

#ifdef LLMTS_X86
TARGET_AVX512 static inline __m512 exp16(__m512 x) {
  const __m512 lo = _mm512_set1_ps(EXP_LO);
  __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  /* x is the second operand of min/max so that a NaN passes through */
  __m512 xc = _mm512_max_ps(lo, _mm512_min_ps(_mm512_set1_ps(EXP_HI), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_HI), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_LO), r);
  __m512 p = _mm512_set1_ps(EXP_P0);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P5));
  __m512 y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  y = _mm512_scalef_ps(y, n);
  return _mm512_maskz_mov_ps((__mmask16)~under, y);
}

TARGET_AVX2 static inline __m256 exp8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(EXP_LO);
  __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  __m256 xc = _mm256_max_ps(lo, _mm256_min_ps(_mm256_set1_ps(EXP_HI), x));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_HI), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_LO), r);
  __m256 p = _mm256_set1_ps(EXP_P0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P5));
  __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(under, y);
}
#endif
/* ---- row helpers: max, sum of exp(x - max), per SIMD level ---------------------------------- */

static inline float row_max_portable(const float *x, int64_t n) {
  float acc[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; l++) acc[l] = x[j + l] > acc[l] ? x[j + l] : acc[l];
  for (; j < n; j++) acc[0] = x[j] > acc[0] ? x[j] : acc[0];
  float m = acc[0];
  for (int l = 1; l < 8; l++) m = acc[l] > m ? acc[l] : m;
  return m;
}

/* sum_j exp(x[j] - mx); also stores the exponentials in e when e is not NULL */
static inline float row_sumexp_portable(const float *x, float *e, int64_t n, float mx) {
  float acc[8] = {0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; l++) {
      float v = exp_scalar(x[j + l] - mx);
      if (e) e[j + l] = v;
      acc[l] += v;
    }
  for (; j < n; j++) {
    float v = exp_scalar(x[j] - mx);
    if (e) e[j] = v;
    acc[0] += v;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

#ifdef LLMTS_X86
TARGET_AVX512 static inline float row_max_avx512(const float *x, int64_t n) {
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  __m512 m0 = ninf, m1 = ninf;
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + j));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + j + 16));
  }
  for (; j < n; j += 16) m0 = _mm512_max_ps(m0, _mm512_mask_loadu_ps(ninf, tail16(n - j), x + j));
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

TARGET_AVX512 static inline float row_sumexp_avx512(const float *x, float *e, int64_t n, float mx) {
  const __m512 vm = _mm512_set1_ps(mx);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m512 e0 = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + j), vm));
    __m512 e1 = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + j + 16), vm));
    if (e) {
      _mm512_storeu_ps(e + j, e0);
      _mm512_storeu_ps(e + j + 16, e1);
    }
    s0 = _mm512_add_ps(s0, e0);
    s1 = _mm512_add_ps(s1, e1);
  }
  for (; j < n; j += 16) {
    __mmask16 m = tail16(n - j);
    __m512 e0 = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vm)));
    if (e) _mm512_mask_storeu_ps(e + j, m, e0);
    s0 = _mm512_add_ps(s0, e0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

TARGET_AVX2 static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

TARGET_AVX2 static inline float hmax8(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

TARGET_AVX2 static inline float row_max_avx2(const float *x, int64_t n) {
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  __m256 m0 = ninf, m1 = ninf;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + j));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + j + 8));
  }
  for (; j < n; j += 8) {
    __m256i msk = mask8(n - j);
    m0 = _mm256_max_ps(m0, _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + j, msk), _mm256_castsi256_ps(msk)));
  }
  return hmax8(_mm256_max_ps(m0, m1));
}

TARGET_AVX2 static inline float row_sumexp_avx2(const float *x, float *e, int64_t n, float mx) {
  const __m256 vm = _mm256_set1_ps(mx);
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm));
    __m256 e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8), vm));
    if (e) {
      _mm256_storeu_ps(e + j, e0);
      _mm256_storeu_ps(e + j + 8, e1);
    }
    s0 = _mm256_add_ps(s0, e0);
    s1 = _mm256_add_ps(s1, e1);
  }
  for (; j < n; j += 8) {
    __m256i msk = mask8(n - j);
    __m256 e0 = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + j, msk), vm)), _mm256_castsi256_ps(msk));
    if (e) _mm256_maskstore_ps(e + j, msk, e0);
    s0 = _mm256_add_ps(s0, e0);
  }
  return hsum8(_mm256_add_ps(s0, s1));
}
#endif


/* ---- softmax-specific row helpers ------------------------------------------------------------ */

static inline void row_scale_portable(float *y, int64_t n, float c) {
  for (int64_t j = 0; j < n; j++) y[j] *= c;
}

static inline float row_dot_portable(const float *a, const float *b, int64_t n) {
  float acc[8] = {0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; l++) acc[l] += a[j + l] * b[j + l];
  for (; j < n; j++) acc[0] += a[j] * b[j];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* dx += y (dy - dot) */
static inline void row_sm_bwd_portable(const float *y, const float *dy, float *dx, int64_t n, float dot) {
  for (int64_t j = 0; j < n; j++) dx[j] += y[j] * (dy[j] - dot);
}

#ifdef LLMTS_X86
TARGET_AVX512 static inline void row_scale_avx512(float *y, int64_t n, float c) {
  const __m512 vc = _mm512_set1_ps(c);
  for (int64_t j = 0; j < n; j += 16) {
    __mmask16 m = tail16(n - j);
    _mm512_mask_storeu_ps(y + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + j), vc));
  }
}

TARGET_AVX512 static inline float row_dot_avx512(const float *a, const float *b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j + 16), _mm512_loadu_ps(b + j + 16), s1);
  }
  for (; j < n; j += 16) {
    __mmask16 m = tail16(n - j);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + j), _mm512_maskz_loadu_ps(m, b + j), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

TARGET_AVX512 static inline void row_sm_bwd_avx512(const float *y, const float *dy, float *dx, int64_t n, float dot) {
  const __m512 vd = _mm512_set1_ps(dot);
  for (int64_t j = 0; j < n; j += 16) {
    __mmask16 m = tail16(n - j);
    __m512 t = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, dy + j), vd);
    _mm512_mask_storeu_ps(dx + j, m, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, y + j), t, _mm512_maskz_loadu_ps(m, dx + j)));
  }
}

TARGET_AVX2 static inline void row_scale_avx2(float *y, int64_t n, float c) {
  const __m256 vc = _mm256_set1_ps(c);
  for (int64_t j = 0; j < n; j += 8) st8(y + j, _mm256_mul_ps(ld8(y + j, n - j), vc), n - j);
}

TARGET_AVX2 static inline float row_dot_avx2(const float *a, const float *b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), s1);
  }
  for (; j < n; j += 8) s0 = _mm256_fmadd_ps(ld8(a + j, n - j), ld8(b + j, n - j), s0);
  return hsum8(_mm256_add_ps(s0, s1));
}

TARGET_AVX2 static inline void row_sm_bwd_avx2(const float *y, const float *dy, float *dx, int64_t n, float dot) {
  const __m256 vd = _mm256_set1_ps(dot);
  for (int64_t j = 0; j < n; j += 8) {
    __m256 t = _mm256_sub_ps(ld8(dy + j, n - j), vd);
    st8(dx + j, _mm256_fmadd_ps(ld8(y + j, n - j), t, ld8(dx + j, n - j)), n - j);
  }
}
#endif

/* ---- kernels, instantiated per SIMD level ------------------------------------------------- */

typedef struct {
  const float *x, *y, *dy;
  float *out, *dx;
  int64_t dim;
} sm_ctx;

#define SOFTMAX_ROWS(SUFFIX, TARGET)                                                                \
  TARGET static void softmax_fwd_##SUFFIX(const sm_ctx *k, int64_t r0, int64_t r1) {                \
    const int64_t dim = k->dim;                                                                     \
    for (int64_t r = r0; r < r1; r++) {                                                             \
      const float *x = k->x + r * dim;                                                              \
      float *o = k->out + r * dim;                                                                  \
      float mx = row_max_##SUFFIX(x, dim);                                                          \
      float sum = row_sumexp_##SUFFIX(x, o, dim, mx);                                               \
      row_scale_##SUFFIX(o, dim, 1.0f / sum);                                                       \
    }                                                                                               \
  }                                                                                                 \
  TARGET static void softmax_bwd_##SUFFIX(const sm_ctx *k, int64_t r0, int64_t r1) {                \
    const int64_t dim = k->dim;                                                                     \
    for (int64_t r = r0; r < r1; r++) {                                                             \
      const float *y = k->y + r * dim, *dy = k->dy + r * dim;                                       \
      row_sm_bwd_##SUFFIX(y, dy, k->dx + r * dim, dim, row_dot_##SUFFIX(dy, y, dim));               \
    }                                                                                               \
  }

SOFTMAX_ROWS(portable, )
#ifdef LLMTS_X86
SOFTMAX_ROWS(avx512, TARGET_AVX512)
SOFTMAX_ROWS(avx2, TARGET_AVX2)
#endif

static void softmax_fwd_range(const void *p, int64_t r0, int64_t r1) {
  const sm_ctx *k = (const sm_ctx *)p;
#ifdef LLMTS_X86
  simd_level lvl = cpu_simd();
  if (lvl == SIMD_AVX512) {
    softmax_fwd_avx512(k, r0, r1);
    return;
  }
  if (lvl == SIMD_AVX2) {
    softmax_fwd_avx2(k, r0, r1);
    return;
  }
#endif
  softmax_fwd_portable(k, r0, r1);
}

static void softmax_bwd_range(const void *p, int64_t r0, int64_t r1) {
  const sm_ctx *k = (const sm_ctx *)p;
#ifdef LLMTS_X86
  simd_level lvl = cpu_simd();
  if (lvl == SIMD_AVX512) {
    softmax_bwd_avx512(k, r0, r1);
    return;
  }
  if (lvl == SIMD_AVX2) {
    softmax_bwd_avx2(k, r0, r1);
    return;
  }
#endif
  softmax_bwd_portable(k, r0, r1);
}

/* ---- N-API wrappers ------------------------------------------------------------------------ */

/* softmaxForward(x, out, rows, dim) */
static napi_value js_softmaxForward(napi_env env, napi_callback_info info) {
  const char *fn = "softmaxForward";
  args_t a;
  if (!args_init(&a, env, info, 4, fn)) return NULL;
  int64_t rows = size_arg(&a, 2, fn, "rows"), dim = size_arg(&a, 3, fn, "dim");
  int64_t total = size_mul(&a, fn, rows, dim);
  sm_ctx k;
  memset(&k, 0, sizeof k);
  k.x = arg_f32(&a, 0, (size_t)total, 0);
  k.out = arg_f32(&a, 1, (size_t)total, 0);
  if (a.failed) return NULL;
  k.dim = dim;
  parallel_for(softmax_fwd_range, &k, rows, dim * 2, 1);
  return make_undefined(env);
}

/* softmaxBackward(y, dy, dx, rows, dim): dx += y (dy - sum(dy y)) */
static napi_value js_softmaxBackward(napi_env env, napi_callback_info info) {
  const char *fn = "softmaxBackward";
  args_t a;
  if (!args_init(&a, env, info, 5, fn)) return NULL;
  int64_t rows = size_arg(&a, 3, fn, "rows"), dim = size_arg(&a, 4, fn, "dim");
  int64_t total = size_mul(&a, fn, rows, dim);
  sm_ctx k;
  memset(&k, 0, sizeof k);
  k.y = arg_f32(&a, 0, (size_t)total, 0);
  k.dy = arg_f32(&a, 1, (size_t)total, 0);
  k.dx = arg_f32(&a, 2, (size_t)total, 0);
  if (a.failed) return NULL;
  k.dim = dim;
  parallel_for(softmax_bwd_range, &k, rows, dim, 1);
  return make_undefined(env);
}

const export_t softmax_exports[] = {
    {"softmaxForward", js_softmaxForward},
    {"softmaxBackward", js_softmaxBackward},
    {NULL, NULL},
};
