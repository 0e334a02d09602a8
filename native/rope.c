/* Rotary position embedding (rotate-half convention, Hugging Face Llama), forward and inverse.
 *
 * AVX-512 and AVX2+FMA paths (x86-64, chosen at run time by cpu_simd()) and a portable C path;
 * rows (b, t) are split over the thread pool. out may alias x. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernel_util.h"
#include "decode_kernels.h"

/* ---- kernel --------------------------------------------------------------------------------
 * For every row (b, t), head h and i < half: with c = cos[p, i], s = +-sin[p, i], p = posOffset + t
 * (or p = positions[b*T + t] when positions is given: packed rows),
 *   out[i] = x[i] c - x[i + half] s,   out[i + half] = x[i] s + x[i + half] c.
 * Both halves of a block are loaded before either is stored, so out may alias x. */
typedef struct {
  const float *x, *cos, *sin;
  float *out;
  int64_t T, nHeads, headDim, posOffset;
  float sign;
  const int32_t *positions; /* per row (B*T), or NULL: posOffset + t */
} rope_ctx;

static inline int64_t rope_pos(const rope_ctx *k, int64_t row) {
  return k->positions ? (int64_t)k->positions[row] : k->posOffset + row % k->T;
}

static void rope_rows_portable(const rope_ctx *k, int64_t r0, int64_t r1) {
  const int64_t half = k->headDim >> 1, width = k->nHeads * k->headDim;
  const float sign = k->sign;
  for (int64_t row = r0; row < r1; row++) {
    const float *cs = k->cos + rope_pos(k, row) * half, *sn = k->sin + rope_pos(k, row) * half;
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
    const float *cs = k->cos + rope_pos(k, row) * half, *sn = k->sin + rope_pos(k, row) * half;
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
    const float *cs = k->cos + rope_pos(k, row) * half, *sn = k->sin + rope_pos(k, row) * half;
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

SIMD_RANGE(rope_range, rope_rows, rope_ctx)

/* One row at position pos on the calling thread (decode.c). */
void rope_forward_row(const float *x, float *out, const float *cos, const float *sin, int64_t nHeads, int64_t headDim, int64_t pos) {
  rope_ctx k = {x, cos, sin, out, 1, nHeads, headDim, pos, 1.0f, NULL};
  rope_range(&k, 0, 1);
}

/* rope(x, out, cos, sin, B, T, nHeads, headDim, posOffset, inverse[, positions]) */
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
  const int32_t *positions = arg_i32_or_null(&a, 10, (size_t)rows);
  if (a.failed) return NULL;
  int64_t maxPos = posOffset + T; /* positions used: below maxPos */
  if (positions) {
    maxPos = 0;
    for (int64_t r = 0; r < rows; r++) {
      if (positions[r] < 0) {
        napi_throw_range_error(env, NULL, "llmts native rope: a position is negative");
        return NULL;
      }
      if (positions[r] + 1 > maxPos) maxPos = positions[r] + 1;
    }
  }
  int64_t table = size_mul(&a, fn, maxPos, headDim >> 1);
  rope_ctx k;
  memset(&k, 0, sizeof k);
  k.positions = positions;
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
