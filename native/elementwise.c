/* Elementwise kernels and small reductions: add, mul, axpy, scale, addBias, sumRows, sumSquares;
 * and the dropout mask (dropoutMask: xoshiro128** draws, as src/util/rng.ts).
 *
 * Each kernel has an AVX-512 and an AVX2+FMA path (x86-64, chosen at run time by cpu_simd()) and a
 * portable C path. Large arrays are split over the thread pool. The two reductions are
 * deterministic: sumSquares sums fixed chunks (chosen from n alone, never from the thread count or
 * timing) and combines them in order; sumRows gives each column its own sequential double sum over
 * the rows, so splitting columns between threads cannot change a bit of the result. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernel_util.h"

/* ---- add, mul, axpy, scale ------------------------------------------------------------------ */

enum { EW_ADD, EW_MUL, EW_AXPY, EW_SCALE };

typedef struct {
  const float *a, *b;
  float *out;
  float alpha;
  int op;
} ew_ctx;

static void ew_portable(const ew_ctx *c, int64_t lo, int64_t hi) {
  const float *a = c->a, *b = c->b;
  float *o = c->out;
  const float al = c->alpha;
  switch (c->op) {
    case EW_ADD:
      for (int64_t i = lo; i < hi; i++) o[i] = a[i] + b[i];
      break;
    case EW_MUL:
      for (int64_t i = lo; i < hi; i++) o[i] = a[i] * b[i];
      break;
    case EW_AXPY:
      for (int64_t i = lo; i < hi; i++) o[i] += al * a[i];
      break;
    default:
      for (int64_t i = lo; i < hi; i++) o[i] = al * a[i];
      break;
  }
}

#ifdef LLMTS_X86
TARGET_AVX512 static void ew_avx512(const ew_ctx *c, int64_t lo, int64_t hi) {
  const float *a = c->a, *b = c->b;
  float *o = c->out;
  const __m512 al = _mm512_set1_ps(c->alpha);
  switch (c->op) {
    case EW_ADD:
      for (int64_t i = lo; i < hi; i += 16) {
        __mmask16 m = tail16(hi - i);
        _mm512_mask_storeu_ps(o + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)));
      }
      break;
    case EW_MUL:
      for (int64_t i = lo; i < hi; i += 16) {
        __mmask16 m = tail16(hi - i);
        _mm512_mask_storeu_ps(o + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)));
      }
      break;
    case EW_AXPY:
      for (int64_t i = lo; i < hi; i += 16) {
        __mmask16 m = tail16(hi - i);
        _mm512_mask_storeu_ps(o + i, m, _mm512_fmadd_ps(al, _mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, o + i)));
      }
      break;
    default:
      for (int64_t i = lo; i < hi; i += 16) {
        __mmask16 m = tail16(hi - i);
        _mm512_mask_storeu_ps(o + i, m, _mm512_mul_ps(al, _mm512_maskz_loadu_ps(m, a + i)));
      }
      break;
  }
}

TARGET_AVX2 static void ew_avx2(const ew_ctx *c, int64_t lo, int64_t hi) {
  const float *a = c->a, *b = c->b;
  float *o = c->out;
  const __m256 al = _mm256_set1_ps(c->alpha);
  switch (c->op) {
    case EW_ADD:
      for (int64_t i = lo; i < hi; i += 8) st8(o + i, _mm256_add_ps(ld8(a + i, hi - i), ld8(b + i, hi - i)), hi - i);
      break;
    case EW_MUL:
      for (int64_t i = lo; i < hi; i += 8) st8(o + i, _mm256_mul_ps(ld8(a + i, hi - i), ld8(b + i, hi - i)), hi - i);
      break;
    case EW_AXPY:
      for (int64_t i = lo; i < hi; i += 8) st8(o + i, _mm256_fmadd_ps(al, ld8(a + i, hi - i), ld8(o + i, hi - i)), hi - i);
      break;
    default:
      for (int64_t i = lo; i < hi; i += 8) st8(o + i, _mm256_mul_ps(al, ld8(a + i, hi - i)), hi - i);
      break;
  }
}
#endif

SIMD_RANGE(ew_range, ew, ew_ctx)

/* add(a, b, out, n) / mul(a, b, out, n) */
static napi_value binary(napi_env env, napi_callback_info info, int op, const char *fn) {
  args_t a;
  if (!args_init(&a, env, info, 4, fn)) return NULL;
  int64_t n = size_arg(&a, 3, fn, "n");
  const float *x = arg_f32(&a, 0, (size_t)n, 0);
  const float *y = arg_f32(&a, 1, (size_t)n, 0);
  float *out = arg_f32(&a, 2, (size_t)n, 0);
  if (a.failed) return NULL;
  ew_ctx c = {x, y, out, 0.0f, op};
  parallel_for(ew_range, &c, n, 1, 16);
  return make_undefined(env);
}

static napi_value js_add(napi_env env, napi_callback_info info) { return binary(env, info, EW_ADD, "add"); }
static napi_value js_mul(napi_env env, napi_callback_info info) { return binary(env, info, EW_MUL, "mul"); }

/* axpy(alpha, x, y, n) / scale(alpha, x, out, n) */
static napi_value scaled(napi_env env, napi_callback_info info, int op, const char *fn) {
  args_t a;
  if (!args_init(&a, env, info, 4, fn)) return NULL;
  double alpha = arg_f64(&a, 0);
  int64_t n = size_arg(&a, 3, fn, "n");
  const float *x = arg_f32(&a, 1, (size_t)n, 0);
  float *out = arg_f32(&a, 2, (size_t)n, 0);
  if (a.failed) return NULL;
  ew_ctx c = {x, NULL, out, (float)alpha, op};
  parallel_for(ew_range, &c, n, 1, 16);
  return make_undefined(env);
}

static napi_value js_axpy(napi_env env, napi_callback_info info) { return scaled(env, info, EW_AXPY, "axpy"); }
static napi_value js_scale(napi_env env, napi_callback_info info) { return scaled(env, info, EW_SCALE, "scale"); }

/* ---- addBias: out[r, j] = x[r, j] + bias[j] -------------------------------------------------- */

typedef struct {
  const float *x, *bias;
  float *out;
  int64_t dim;
} bias_ctx;

static void add_bias_rows_portable(const bias_ctx *c, int64_t r0, int64_t r1) {
  const int64_t dim = c->dim;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = c->x + r * dim;
    float *o = c->out + r * dim;
    for (int64_t j = 0; j < dim; j++) o[j] = x[j] + c->bias[j];
  }
}

#ifdef LLMTS_X86
TARGET_AVX512 static void add_bias_rows_avx512(const bias_ctx *c, int64_t r0, int64_t r1) {
  const int64_t dim = c->dim;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = c->x + r * dim;
    float *o = c->out + r * dim;
    for (int64_t j = 0; j < dim; j += 16) {
      __mmask16 m = tail16(dim - j);
      _mm512_mask_storeu_ps(o + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + j), _mm512_maskz_loadu_ps(m, c->bias + j)));
    }
  }
}

TARGET_AVX2 static void add_bias_rows_avx2(const bias_ctx *c, int64_t r0, int64_t r1) {
  const int64_t dim = c->dim;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = c->x + r * dim;
    float *o = c->out + r * dim;
    for (int64_t j = 0; j < dim; j += 8) st8(o + j, _mm256_add_ps(ld8(x + j, dim - j), ld8(c->bias + j, dim - j)), dim - j);
  }
}
#endif

SIMD_RANGE(add_bias_range, add_bias_rows, bias_ctx)

/* addBias(x, bias, out, rows, dim) */
static napi_value js_addBias(napi_env env, napi_callback_info info) {
  const char *fn = "addBias";
  args_t a;
  if (!args_init(&a, env, info, 5, fn)) return NULL;
  int64_t rows = size_arg(&a, 3, fn, "rows"), dim = size_arg(&a, 4, fn, "dim");
  int64_t total = size_mul(&a, fn, rows, dim);
  const float *x = arg_f32(&a, 0, (size_t)total, 0);
  const float *bias = arg_f32(&a, 1, (size_t)dim, 0);
  float *out = arg_f32(&a, 2, (size_t)total, 0);
  if (a.failed) return NULL;
  bias_ctx c = {x, bias, out, dim};
  parallel_for(add_bias_range, &c, rows, dim, 1);
  return make_undefined(env);
}

/* ---- sumRows: dbias[j] += sum_r dout[r, j], each column summed in double in row order -------- */

typedef struct {
  const float *dout;
  float *dbias;
  int64_t rows, dim;
} sumrows_ctx;

static void sum_rows_cols_portable(const sumrows_ctx *c, int64_t c0, int64_t c1) {
  double acc[64];
  for (int64_t j0 = c0; j0 < c1; j0 += 64) {
    int64_t w = c1 - j0 < 64 ? c1 - j0 : 64;
    for (int64_t k = 0; k < w; k++) acc[k] = 0.0;
    const float *p = c->dout + j0;
    for (int64_t r = 0; r < c->rows; r++, p += c->dim) {
      for (int64_t k = 0; k < w; k++) acc[k] += (double)p[k];
    }
    for (int64_t k = 0; k < w; k++) c->dbias[j0 + k] = (float)((double)c->dbias[j0 + k] + acc[k]);
  }
}

#ifdef LLMTS_X86
TARGET_AVX512 static void sum_rows_cols_avx512(const sumrows_ctx *c, int64_t c0, int64_t c1) {
  const int64_t rows = c->rows, dim = c->dim;
  double tmp[64];
  int64_t j = c0;
  for (; j + 64 <= c1; j += 64) {
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const float *p = c->dout + j;
    for (int64_t r = 0; r < rows; r++, p += dim) {
      a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm256_loadu_ps(p)));
      a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm256_loadu_ps(p + 8)));
      a2 = _mm512_add_pd(a2, _mm512_cvtps_pd(_mm256_loadu_ps(p + 16)));
      a3 = _mm512_add_pd(a3, _mm512_cvtps_pd(_mm256_loadu_ps(p + 24)));
      a4 = _mm512_add_pd(a4, _mm512_cvtps_pd(_mm256_loadu_ps(p + 32)));
      a5 = _mm512_add_pd(a5, _mm512_cvtps_pd(_mm256_loadu_ps(p + 40)));
      a6 = _mm512_add_pd(a6, _mm512_cvtps_pd(_mm256_loadu_ps(p + 48)));
      a7 = _mm512_add_pd(a7, _mm512_cvtps_pd(_mm256_loadu_ps(p + 56)));
    }
    _mm512_storeu_pd(tmp, a0);
    _mm512_storeu_pd(tmp + 8, a1);
    _mm512_storeu_pd(tmp + 16, a2);
    _mm512_storeu_pd(tmp + 24, a3);
    _mm512_storeu_pd(tmp + 32, a4);
    _mm512_storeu_pd(tmp + 40, a5);
    _mm512_storeu_pd(tmp + 48, a6);
    _mm512_storeu_pd(tmp + 56, a7);
    for (int k = 0; k < 64; k++) c->dbias[j + k] = (float)((double)c->dbias[j + k] + tmp[k]);
  }
  for (; j + 16 <= c1; j += 16) {
    __m512d a0 = _mm512_setzero_pd(), a1 = a0;
    const float *p = c->dout + j;
    for (int64_t r = 0; r < rows; r++, p += dim) {
      a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm256_loadu_ps(p)));
      a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm256_loadu_ps(p + 8)));
    }
    _mm512_storeu_pd(tmp, a0);
    _mm512_storeu_pd(tmp + 8, a1);
    for (int k = 0; k < 16; k++) c->dbias[j + k] = (float)((double)c->dbias[j + k] + tmp[k]);
  }
  if (j < c1) {
    sumrows_ctx rest = *c;
    sum_rows_cols_portable(&rest, j, c1);
  }
}

TARGET_AVX2 static void sum_rows_cols_avx2(const sumrows_ctx *c, int64_t c0, int64_t c1) {
  const int64_t rows = c->rows, dim = c->dim;
  double tmp[32];
  int64_t j = c0;
  for (; j + 32 <= c1; j += 32) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const float *p = c->dout + j;
    for (int64_t r = 0; r < rows; r++, p += dim) {
      a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm_loadu_ps(p)));
      a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm_loadu_ps(p + 4)));
      a2 = _mm256_add_pd(a2, _mm256_cvtps_pd(_mm_loadu_ps(p + 8)));
      a3 = _mm256_add_pd(a3, _mm256_cvtps_pd(_mm_loadu_ps(p + 12)));
      a4 = _mm256_add_pd(a4, _mm256_cvtps_pd(_mm_loadu_ps(p + 16)));
      a5 = _mm256_add_pd(a5, _mm256_cvtps_pd(_mm_loadu_ps(p + 20)));
      a6 = _mm256_add_pd(a6, _mm256_cvtps_pd(_mm_loadu_ps(p + 24)));
      a7 = _mm256_add_pd(a7, _mm256_cvtps_pd(_mm_loadu_ps(p + 28)));
    }
    _mm256_storeu_pd(tmp, a0);
    _mm256_storeu_pd(tmp + 4, a1);
    _mm256_storeu_pd(tmp + 8, a2);
    _mm256_storeu_pd(tmp + 12, a3);
    _mm256_storeu_pd(tmp + 16, a4);
    _mm256_storeu_pd(tmp + 20, a5);
    _mm256_storeu_pd(tmp + 24, a6);
    _mm256_storeu_pd(tmp + 28, a7);
    for (int k = 0; k < 32; k++) c->dbias[j + k] = (float)((double)c->dbias[j + k] + tmp[k]);
  }
  for (; j + 8 <= c1; j += 8) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0;
    const float *p = c->dout + j;
    for (int64_t r = 0; r < rows; r++, p += dim) {
      a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm_loadu_ps(p)));
      a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm_loadu_ps(p + 4)));
    }
    _mm256_storeu_pd(tmp, a0);
    _mm256_storeu_pd(tmp + 4, a1);
    for (int k = 0; k < 8; k++) c->dbias[j + k] = (float)((double)c->dbias[j + k] + tmp[k]);
  }
  if (j < c1) {
    sumrows_ctx rest = *c;
    sum_rows_cols_portable(&rest, j, c1);
  }
}
#endif

SIMD_RANGE(sum_rows_range, sum_rows_cols, sumrows_ctx)

/* sumRows(dout, dbias, rows, dim) */
static napi_value js_sumRows(napi_env env, napi_callback_info info) {
  const char *fn = "sumRows";
  args_t a;
  if (!args_init(&a, env, info, 4, fn)) return NULL;
  int64_t rows = size_arg(&a, 2, fn, "rows"), dim = size_arg(&a, 3, fn, "dim");
  int64_t total = size_mul(&a, fn, rows, dim);
  const float *dout = arg_f32(&a, 0, (size_t)total, 0);
  float *dbias = arg_f32(&a, 1, (size_t)dim, 0);
  if (a.failed) return NULL;
  sumrows_ctx c = {dout, dbias, rows, dim};
  /* columns are independent: split them in blocks of 16 (the result does not depend on the split) */
  parallel_for(sum_rows_range, &c, dim, rows, 16);
  return make_undefined(env);
}

/* ---- sumSquares: sum x^2 in double over fixed chunks, combined in order ---------------------- */

#define SS_CHUNK 65536
#define SS_MAX_CHUNKS 256

static double ss_portable(const float *x, int64_t n) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    double d0 = x[i], d1 = x[i + 1], d2 = x[i + 2], d3 = x[i + 3];
    a0 += d0 * d0;
    a1 += d1 * d1;
    a2 += d2 * d2;
    a3 += d3 * d3;
  }
  for (; i < n; i++) a0 += (double)x[i] * x[i];
  return (a0 + a1) + (a2 + a3);
}

#ifdef LLMTS_X86
TARGET_AVX512 static double ss_avx512(const float *x, int64_t n) {
  __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512d d0 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i)), d1 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
    __m512d d2 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 16)), d3 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 24));
    a0 = _mm512_fmadd_pd(d0, d0, a0);
    a1 = _mm512_fmadd_pd(d1, d1, a1);
    a2 = _mm512_fmadd_pd(d2, d2, a2);
    a3 = _mm512_fmadd_pd(d3, d3, a3);
  }
  for (; i + 8 <= n; i += 8) {
    __m512d d0 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
    a0 = _mm512_fmadd_pd(d0, d0, a0);
  }
  double s = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
  for (; i < n; i++) s += (double)x[i] * x[i];
  return s;
}

TARGET_AVX2 static double ss_avx2(const float *x, int64_t n) {
  __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256d d0 = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), d1 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
    __m256d d2 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 8)), d3 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 12));
    a0 = _mm256_fmadd_pd(d0, d0, a0);
    a1 = _mm256_fmadd_pd(d1, d1, a1);
    a2 = _mm256_fmadd_pd(d2, d2, a2);
    a3 = _mm256_fmadd_pd(d3, d3, a3);
  }
  for (; i + 4 <= n; i += 4) {
    __m256d d0 = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
    a0 = _mm256_fmadd_pd(d0, d0, a0);
  }
  __m256d s4 = _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3));
  __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
  double s = _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
  for (; i < n; i++) s += (double)x[i] * x[i];
  return s;
}
#endif

static double ss_chunk(const float *x, int64_t n) {
#ifdef LLMTS_X86
  simd_level lvl = cpu_simd();
  if (lvl == SIMD_AVX512) return ss_avx512(x, n);
  if (lvl == SIMD_AVX2) return ss_avx2(x, n);
#endif
  return ss_portable(x, n);
}

typedef struct {
  const float *x;
  int64_t n, chunk;
  double *partial;
} ss_ctx;

static void ss_task(void *p, int task, int thread) {
  (void)thread;
  const ss_ctx *c = (const ss_ctx *)p;
  int64_t lo = (int64_t)task * c->chunk, hi = lo + c->chunk;
  if (hi > c->n) hi = c->n;
  c->partial[task] = lo < hi ? ss_chunk(c->x + lo, hi - lo) : 0.0;
}

/* sumSquares(x, n) -> number */
static napi_value js_sumSquares(napi_env env, napi_callback_info info) {
  const char *fn = "sumSquares";
  args_t a;
  if (!args_init(&a, env, info, 2, fn)) return NULL;
  int64_t n = size_arg(&a, 1, fn, "n");
  const float *x = arg_f32(&a, 0, (size_t)n, 0);
  if (a.failed) return NULL;
  /* the chunking depends on n only, so the sum is the same whatever the thread count */
  int64_t chunk = SS_CHUNK;
  if ((n + chunk - 1) / chunk > SS_MAX_CHUNKS) chunk = ((n + SS_MAX_CHUNKS - 1) / SS_MAX_CHUNKS + 15) / 16 * 16;
  int nchunks = n > 0 ? (int)((n + chunk - 1) / chunk) : 0;
  double partial[SS_MAX_CHUNKS];
  ss_ctx c = {x, n, chunk, partial};
  if (nchunks > 1 && pool_size() > 1) {
    pool_run(ss_task, &c, nchunks);
  } else {
    for (int t = 0; t < nchunks; t++) ss_task(&c, t, 0);
  }
  double s = 0.0;
  for (int t = 0; t < nchunks; t++) s += partial[t];
  return make_number(env, s);
}

/* ---- dropout mask ---------------------------------------------------------------------------- */

/* lowbias32 (see src/backend/reference/dropout.ts) */
static inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  return x ^ (x >> 16);
}

typedef struct {
  float *out;
  float keep;
  uint64_t threshold;
  uint32_t base, key1; /* base = offset + key0 */
} mask_ctx;

/* one body, compiled per target: each element independent, so the compiler vectorises it (the
 * context is read into locals first: a float store could otherwise alias c->keep) */
#define DROPOUT_MASK_BODY                                                   \
  float *out = c->out;                                                      \
  const float keep = c->keep;                                               \
  const uint64_t threshold = c->threshold;                                  \
  const uint32_t base = c->base, key1 = c->key1;                            \
  for (int64_t i = lo; i < hi; i++) {                                       \
    const uint32_t u = mix32(mix32(base + (uint32_t)i) ^ key1);             \
    out[i] = (uint64_t)u < threshold ? 0.0f : keep;                         \
  }

static void mask_portable(const mask_ctx *c, int64_t lo, int64_t hi) { DROPOUT_MASK_BODY }
#ifdef LLMTS_X86
TARGET_AVX512 static void mask_avx512(const mask_ctx *c, int64_t lo, int64_t hi) { DROPOUT_MASK_BODY }
TARGET_AVX2 static void mask_avx2(const mask_ctx *c, int64_t lo, int64_t hi) { DROPOUT_MASK_BODY }
#endif
SIMD_RANGE(mask_range, mask, mask_ctx)

/* dropoutMask(out, n, p, keep, key0, key1, offset): out[i] = u < p * 2^32 ? 0 : keep with
 * u = mix32(mix32(offset + i + key0) ^ key1): a counter-based hash, each element independent of
 * the others, so the range is split over the pool's threads and vectorised. */
static napi_value js_dropoutMask(napi_env env, napi_callback_info info) {
  const char *fn = "dropoutMask";
  args_t a;
  if (!args_init(&a, env, info, 7, fn)) return NULL;
  int64_t n = size_arg(&a, 1, fn, "n");
  float *out = arg_f32(&a, 0, (size_t)n, 0);
  double p = arg_f64(&a, 2);
  float keep = (float)arg_f64(&a, 3);
  const uint32_t key0 = (uint32_t)(int64_t)arg_f64(&a, 4), key1 = (uint32_t)(int64_t)arg_f64(&a, 5);
  const uint32_t offset = (uint32_t)(int64_t)arg_f64(&a, 6);
  if (a.failed) return NULL;
  /* u < p * 2^32 with u an integer: u < ceil(p * 2^32) (p in [0, 1), so at most 2^32) */
  mask_ctx c = {out, keep, (uint64_t)ceil(p * 4294967296.0), offset + key0, key1};
  parallel_for(mask_range, &c, n, 4, 64);
  return make_undefined(env);
}

const export_t elementwise_exports[] = {
    {"add", js_add},         {"mul", js_mul},         {"axpy", js_axpy},
    {"scale", js_scale},     {"addBias", js_addBias}, {"sumRows", js_sumRows},
    {"sumSquares", js_sumSquares}, {"dropoutMask", js_dropoutMask}, {NULL, NULL},
};
