/* Softmax over the last dimension (max-subtracted), forward and backward.
 *
 * AVX-512 and AVX2+FMA paths (x86-64, chosen at run time by cpu_simd()) and a portable C path, with
 * a polynomial exp accurate to about 1 ulp; rows are split over the thread pool. The backward
 * accumulates: dx += y (dy - sum(dy y)). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernel_util.h"
#include "vec_math.h"

/* ---- softmax row helpers (max and sum of exp come from vec_math.h) ---------------------------- */

static inline void row_scale_portable(float *y, int64_t n, float c) {
  for (int64_t j = 0; j < n; j++) y[j] *= c;
}

static inline float row_dot_portable(const float *a, const float *b, int64_t n) {
  float acc[8] = {0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; l++) acc[l] += a[j + l] * b[j + l];
  for (; j < n; j++) acc[0] += a[j] * b[j];
  return sum8_lanes(acc);
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

SIMD_RANGE(softmax_fwd_range, softmax_fwd, sm_ctx)
SIMD_RANGE(softmax_bwd_range, softmax_bwd, sm_ctx)

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
