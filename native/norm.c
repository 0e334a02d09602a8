/* Normalisation kernels: LayerNorm and RMSNorm over the last dimension, forward and backward.
 *
 * AVX-512 and AVX2+FMA paths (x86-64, chosen at run time by cpu_simd()) and a portable C path.
 * Forward: rows are split over the thread pool. Backward: dx by rows, dweight/dbias by column
 * blocks, so the result is the same whatever the thread count. Backward kernels accumulate. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernel_util.h"
#include "vec_math.h"
#include "decode_kernels.h"

/* ---- context ----------------------------------------------------------------------------------
 * LayerNorm and RMSNorm share every loop: RMSNorm is LayerNorm with the mean fixed at 0 and no bias
 * (and, backward, without the mean(dxhat) term). */
typedef struct {
  const float *x, *w, *b, *dout, *mean, *rstd;
  float *out, *mean_out, *rstd_out, *dx, *dw, *db;
  int64_t rows, dim;
  double eps;
  int rms;
} norm_ctx;

/* dxhat = dout w is summed, then subtracted from its mean: keep the compiler from fusing the product
 * into the subtraction (fp-contract), or a row whose dxhat all equal its mean (dim 1) no longer cancels
 * exactly and rstd = 1/sqrt(eps) amplifies the rounding error. Costs no instruction. */
#if defined(__GNUC__) || defined(__clang__)
#define PIN_AVX512(v) __asm__("" : "+v"(v))
#define PIN_AVX2(v) __asm__("" : "+x"(v))
#else
#define PIN_AVX512(v) ((void)0)
#define PIN_AVX2(v) ((void)0)
#endif

static inline float norm_rstd(float var, double eps) { return (float)(1.0 / sqrt((double)var + eps)); }

/* ---- portable ---------------------------------------------------------------------------- */

static void norm_fwd_portable(const norm_ctx *k, int64_t r0, int64_t r1) {
  const int64_t dim = k->dim;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = k->x + r * dim;
    float *o = k->out + r * dim;
    float acc[8] = {0}, mean = 0.0f;
    int64_t j;
    if (!k->rms) {
      for (j = 0; j + 8 <= dim; j += 8)
        for (int l = 0; l < 8; l++) acc[l] += x[j + l];
      for (; j < dim; j++) acc[0] += x[j];
      mean = sum8_lanes(acc) / (float)dim;
      for (int l = 0; l < 8; l++) acc[l] = 0.0f;
    }
    for (j = 0; j + 8 <= dim; j += 8)
      for (int l = 0; l < 8; l++) {
        float d = x[j + l] - mean;
        acc[l] += d * d;
      }
    for (; j < dim; j++) acc[0] += (x[j] - mean) * (x[j] - mean);
    float var = sum8_lanes(acc) / (float)dim;
    float s = norm_rstd(var, k->eps);
    const float *w = k->w, *b = k->b;
    for (j = 0; j < dim; j++) {
      float y = (x[j] - mean) * s;
      if (w) y *= w[j];
      if (b) y += b[j];
      o[j] = y;
    }
    if (!k->rms) k->mean_out[r] = mean;
    k->rstd_out[r] = s;
  }
}

/* dx rows: dx += s (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = dout w, xhat = (x - m) s */
static void norm_bwd_rows_portable(const norm_ctx *k, int64_t r0, int64_t r1) {
  const int64_t dim = k->dim;
  const float *w = k->w;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = k->x + r * dim, *d = k->dout + r * dim;
    float *dx = k->dx + r * dim;
    const float m = k->rms ? 0.0f : k->mean[r], s = k->rstd[r];
    float sd[8] = {0}, sdx[8] = {0};
    int64_t j;
    for (j = 0; j + 8 <= dim; j += 8)
      for (int l = 0; l < 8; l++) {
        float xh = (x[j + l] - m) * s, dh = w ? d[j + l] * w[j + l] : d[j + l];
        sd[l] += dh;
        sdx[l] += dh * xh;
      }
    for (; j < dim; j++) {
      float xh = (x[j] - m) * s, dh = w ? d[j] * w[j] : d[j];
      sd[0] += dh;
      sdx[0] += dh * xh;
    }
    float sumD = sum8_lanes(sd) / (float)dim;
    float sumDX = sum8_lanes(sdx) / (float)dim;
    if (k->rms) sumD = 0.0f;
    for (j = 0; j < dim; j++) {
      float xh = (x[j] - m) * s, dh = w ? d[j] * w[j] : d[j];
      dx[j] += s * (dh - sumD - xh * sumDX);
    }
  }
}

/* dweight[j] += sum_r dout[r, j] xhat[r, j];  dbias[j] += sum_r dout[r, j]  (columns [c0, c1)) */
static void norm_bwd_cols_portable(const norm_ctx *k, int64_t c0, int64_t c1) {
  const int64_t dim = k->dim;
  float aw[64], ab[64];
  for (int64_t j0 = c0; j0 < c1; j0 += 64) {
    const int64_t n = c1 - j0 < 64 ? c1 - j0 : 64;
    for (int64_t l = 0; l < n; l++) aw[l] = ab[l] = 0.0f;
    for (int64_t r = 0; r < k->rows; r++) {
      const float *x = k->x + r * dim + j0, *d = k->dout + r * dim + j0;
      const float m = k->rms ? 0.0f : k->mean[r], s = k->rstd[r];
      for (int64_t l = 0; l < n; l++) {
        aw[l] += d[l] * ((x[l] - m) * s);
        ab[l] += d[l];
      }
    }
    if (k->dw)
      for (int64_t l = 0; l < n; l++) k->dw[j0 + l] += aw[l];
    if (k->db)
      for (int64_t l = 0; l < n; l++) k->db[j0 + l] += ab[l];
  }
}

/* ---- AVX-512 ------------------------------------------------------------------------------ */
#ifdef LLMTS_X86
TARGET_AVX512 static void norm_fwd_avx512(const norm_ctx *k, int64_t r0, int64_t r1) {
  const int64_t dim = k->dim;
  const float *w = k->w, *b = k->b;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = k->x + r * dim;
    float *o = k->out + r * dim;
    float mean = 0.0f;
    int64_t j;
    if (!k->rms) {
      __m512 s0 = _mm512_setzero_ps(), s1 = s0;
      for (j = 0; j + 32 <= dim; j += 32) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + j));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + j + 16));
      }
      for (; j < dim; j += 16) s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(tail16(dim - j), x + j));
      mean = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / (float)dim;
    }
    const __m512 vm = _mm512_set1_ps(mean);
    __m512 q0 = _mm512_setzero_ps(), q1 = q0;
    for (j = 0; j + 32 <= dim; j += 32) {
      __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + j), vm), d1 = _mm512_sub_ps(_mm512_loadu_ps(x + j + 16), vm);
      q0 = _mm512_fmadd_ps(d0, d0, q0);
      q1 = _mm512_fmadd_ps(d1, d1, q1);
    }
    for (; j < dim; j += 16) {
      __mmask16 m = tail16(dim - j);
      __m512 d0 = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + j), vm);
      q0 = _mm512_fmadd_ps(d0, d0, q0);
    }
    const float s = norm_rstd(_mm512_reduce_add_ps(_mm512_add_ps(q0, q1)) / (float)dim, k->eps);
    const __m512 vs = _mm512_set1_ps(s);
    for (j = 0; j < dim; j += 16) {
      __mmask16 m = tail16(dim - j);
      __m512 y = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vm), vs);
      if (w) y = _mm512_mul_ps(y, _mm512_maskz_loadu_ps(m, w + j));
      if (b) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m, b + j));
      _mm512_mask_storeu_ps(o + j, m, y);
    }
    if (!k->rms) k->mean_out[r] = mean;
    k->rstd_out[r] = s;
  }
}

TARGET_AVX512 static void norm_bwd_rows_avx512(const norm_ctx *k, int64_t r0, int64_t r1) {
  const int64_t dim = k->dim;
  const float *w = k->w;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = k->x + r * dim, *d = k->dout + r * dim;
    float *dx = k->dx + r * dim;
    const __m512 vm = _mm512_set1_ps(k->rms ? 0.0f : k->mean[r]), vs = _mm512_set1_ps(k->rstd[r]);
    __m512 sd0 = _mm512_setzero_ps(), sd1 = sd0, sx0 = sd0, sx1 = sd0;
    int64_t j = 0;
    for (; j + 32 <= dim; j += 32) {
      __m512 xh0 = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + j), vm), vs);
      __m512 xh1 = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + j + 16), vm), vs);
      __m512 dh0 = _mm512_loadu_ps(d + j), dh1 = _mm512_loadu_ps(d + j + 16);
      if (w) {
        dh0 = _mm512_mul_ps(dh0, _mm512_loadu_ps(w + j));
        dh1 = _mm512_mul_ps(dh1, _mm512_loadu_ps(w + j + 16));
      }
      PIN_AVX512(dh0);
      PIN_AVX512(dh1);
      sd0 = _mm512_add_ps(sd0, dh0);
      sd1 = _mm512_add_ps(sd1, dh1);
      sx0 = _mm512_fmadd_ps(dh0, xh0, sx0);
      sx1 = _mm512_fmadd_ps(dh1, xh1, sx1);
    }
    for (; j < dim; j += 16) {
      __mmask16 m = tail16(dim - j);
      __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vm), vs);
      __m512 dh = _mm512_maskz_loadu_ps(m, d + j); /* zero outside the row, so xh there does not matter */
      if (w) dh = _mm512_mul_ps(dh, _mm512_maskz_loadu_ps(m, w + j));
      PIN_AVX512(dh);
      sd0 = _mm512_add_ps(sd0, dh);
      sx0 = _mm512_fmadd_ps(dh, xh, sx0);
    }
    const float inv = 1.0f / (float)dim;
    const __m512 sumD = _mm512_set1_ps(k->rms ? 0.0f : _mm512_reduce_add_ps(_mm512_add_ps(sd0, sd1)) * inv);
    const __m512 sumDX = _mm512_set1_ps(_mm512_reduce_add_ps(_mm512_add_ps(sx0, sx1)) * inv);
    for (j = 0; j < dim; j += 16) {
      __mmask16 m = tail16(dim - j);
      __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vm), vs);
      __m512 dh = _mm512_maskz_loadu_ps(m, d + j);
      if (w) dh = _mm512_mul_ps(dh, _mm512_maskz_loadu_ps(m, w + j));
      PIN_AVX512(dh);
      __m512 t = _mm512_fnmadd_ps(xh, sumDX, _mm512_sub_ps(dh, sumD));
      _mm512_mask_storeu_ps(dx + j, m, _mm512_fmadd_ps(vs, t, _mm512_maskz_loadu_ps(m, dx + j)));
    }
  }
}

TARGET_AVX512 static void norm_bwd_cols_avx512(const norm_ctx *k, int64_t c0, int64_t c1) {
  const int64_t dim = k->dim, rows = k->rows;
  for (int64_t j = c0; j < c1; j += 64) {
    const __mmask16 m0 = tail16(c1 - j), m1 = tail16(c1 - j - 16), m2 = tail16(c1 - j - 32), m3 = tail16(c1 - j - 48);
    __m512 w0 = _mm512_setzero_ps(), w1 = w0, w2 = w0, w3 = w0, b0 = w0, b1 = w0, b2 = w0, b3 = w0;
    for (int64_t r = 0; r < rows; r++) {
      const float *x = k->x + r * dim + j, *d = k->dout + r * dim + j;
      const __m512 vm = _mm512_set1_ps(k->rms ? 0.0f : k->mean[r]), vs = _mm512_set1_ps(k->rstd[r]);
      __m512 d0 = _mm512_maskz_loadu_ps(m0, d), d1 = _mm512_maskz_loadu_ps(m1, d + 16);
      __m512 d2 = _mm512_maskz_loadu_ps(m2, d + 32), d3 = _mm512_maskz_loadu_ps(m3, d + 48);
      w0 = _mm512_fmadd_ps(d0, _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m0, x), vm), vs), w0);
      w1 = _mm512_fmadd_ps(d1, _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m1, x + 16), vm), vs), w1);
      w2 = _mm512_fmadd_ps(d2, _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m2, x + 32), vm), vs), w2);
      w3 = _mm512_fmadd_ps(d3, _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m3, x + 48), vm), vs), w3);
      b0 = _mm512_add_ps(b0, d0);
      b1 = _mm512_add_ps(b1, d1);
      b2 = _mm512_add_ps(b2, d2);
      b3 = _mm512_add_ps(b3, d3);
    }
    float *dw = k->dw, *db = k->db;
    if (dw) {
      _mm512_mask_storeu_ps(dw + j, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, dw + j), w0));
      _mm512_mask_storeu_ps(dw + j + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, dw + j + 16), w1));
      _mm512_mask_storeu_ps(dw + j + 32, m2, _mm512_add_ps(_mm512_maskz_loadu_ps(m2, dw + j + 32), w2));
      _mm512_mask_storeu_ps(dw + j + 48, m3, _mm512_add_ps(_mm512_maskz_loadu_ps(m3, dw + j + 48), w3));
    }
    if (db) {
      _mm512_mask_storeu_ps(db + j, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, db + j), b0));
      _mm512_mask_storeu_ps(db + j + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, db + j + 16), b1));
      _mm512_mask_storeu_ps(db + j + 32, m2, _mm512_add_ps(_mm512_maskz_loadu_ps(m2, db + j + 32), b2));
      _mm512_mask_storeu_ps(db + j + 48, m3, _mm512_add_ps(_mm512_maskz_loadu_ps(m3, db + j + 48), b3));
    }
  }
}

/* ---- AVX2 ---------------------------------------------------------------------------------- */

TARGET_AVX2 static void norm_fwd_avx2(const norm_ctx *k, int64_t r0, int64_t r1) {
  const int64_t dim = k->dim;
  const float *w = k->w, *b = k->b;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = k->x + r * dim;
    float *o = k->out + r * dim;
    float mean = 0.0f;
    int64_t j;
    if (!k->rms) {
      __m256 s0 = _mm256_setzero_ps(), s1 = s0;
      for (j = 0; j + 16 <= dim; j += 16) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + j));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + j + 8));
      }
      for (; j < dim; j += 8) s0 = _mm256_add_ps(s0, ld8(x + j, dim - j));
      mean = hsum8(_mm256_add_ps(s0, s1)) / (float)dim;
    }
    const __m256 vm = _mm256_set1_ps(mean);
    __m256 q0 = _mm256_setzero_ps(), q1 = q0;
    for (j = 0; j + 16 <= dim; j += 16) {
      __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + j), vm), d1 = _mm256_sub_ps(_mm256_loadu_ps(x + j + 8), vm);
      q0 = _mm256_fmadd_ps(d0, d0, q0);
      q1 = _mm256_fmadd_ps(d1, d1, q1);
    }
    for (; j < dim; j += 8) {
      __m256 d0 = _mm256_and_ps(_mm256_sub_ps(ld8(x + j, dim - j), vm), _mm256_castsi256_ps(mask8(dim - j)));
      q0 = _mm256_fmadd_ps(d0, d0, q0);
    }
    const float s = norm_rstd(hsum8(_mm256_add_ps(q0, q1)) / (float)dim, k->eps);
    const __m256 vs = _mm256_set1_ps(s);
    for (j = 0; j < dim; j += 8) {
      int64_t n = dim - j;
      __m256 y = _mm256_mul_ps(_mm256_sub_ps(ld8(x + j, n), vm), vs);
      if (w) y = _mm256_mul_ps(y, ld8(w + j, n));
      if (b) y = _mm256_add_ps(y, ld8(b + j, n));
      st8(o + j, y, n);
    }
    if (!k->rms) k->mean_out[r] = mean;
    k->rstd_out[r] = s;
  }
}

TARGET_AVX2 static void norm_bwd_rows_avx2(const norm_ctx *k, int64_t r0, int64_t r1) {
  const int64_t dim = k->dim;
  const float *w = k->w;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = k->x + r * dim, *d = k->dout + r * dim;
    float *dx = k->dx + r * dim;
    const __m256 vm = _mm256_set1_ps(k->rms ? 0.0f : k->mean[r]), vs = _mm256_set1_ps(k->rstd[r]);
    __m256 sd0 = _mm256_setzero_ps(), sd1 = sd0, sx0 = sd0, sx1 = sd0;
    int64_t j = 0;
    for (; j + 16 <= dim; j += 16) {
      __m256 xh0 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm), vs);
      __m256 xh1 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8), vm), vs);
      __m256 dh0 = _mm256_loadu_ps(d + j), dh1 = _mm256_loadu_ps(d + j + 8);
      if (w) {
        dh0 = _mm256_mul_ps(dh0, _mm256_loadu_ps(w + j));
        dh1 = _mm256_mul_ps(dh1, _mm256_loadu_ps(w + j + 8));
      }
      PIN_AVX2(dh0);
      PIN_AVX2(dh1);
      sd0 = _mm256_add_ps(sd0, dh0);
      sd1 = _mm256_add_ps(sd1, dh1);
      sx0 = _mm256_fmadd_ps(dh0, xh0, sx0);
      sx1 = _mm256_fmadd_ps(dh1, xh1, sx1);
    }
    for (; j < dim; j += 8) {
      int64_t n = dim - j;
      __m256 xh = _mm256_mul_ps(_mm256_sub_ps(ld8(x + j, n), vm), vs);
      __m256 dh = ld8(d + j, n);
      if (w) dh = _mm256_mul_ps(dh, ld8(w + j, n));
      PIN_AVX2(dh);
      sd0 = _mm256_add_ps(sd0, dh);
      sx0 = _mm256_fmadd_ps(dh, xh, sx0);
    }
    const float inv = 1.0f / (float)dim;
    const __m256 sumD = _mm256_set1_ps(k->rms ? 0.0f : hsum8(_mm256_add_ps(sd0, sd1)) * inv);
    const __m256 sumDX = _mm256_set1_ps(hsum8(_mm256_add_ps(sx0, sx1)) * inv);
    for (j = 0; j < dim; j += 8) {
      int64_t n = dim - j;
      __m256 xh = _mm256_mul_ps(_mm256_sub_ps(ld8(x + j, n), vm), vs);
      __m256 dh = ld8(d + j, n);
      if (w) dh = _mm256_mul_ps(dh, ld8(w + j, n));
      PIN_AVX2(dh);
      __m256 t = _mm256_fnmadd_ps(xh, sumDX, _mm256_sub_ps(dh, sumD));
      st8(dx + j, _mm256_fmadd_ps(vs, t, ld8(dx + j, n)), n);
    }
  }
}

TARGET_AVX2 static void norm_bwd_cols_avx2(const norm_ctx *k, int64_t c0, int64_t c1) {
  const int64_t dim = k->dim, rows = k->rows;
  for (int64_t j = c0; j < c1; j += 32) {
    const int64_t n = c1 - j;
    __m256 w0 = _mm256_setzero_ps(), w1 = w0, w2 = w0, w3 = w0, b0 = w0, b1 = w0, b2 = w0, b3 = w0;
    for (int64_t r = 0; r < rows; r++) {
      const float *x = k->x + r * dim + j, *d = k->dout + r * dim + j;
      const __m256 vm = _mm256_set1_ps(k->rms ? 0.0f : k->mean[r]), vs = _mm256_set1_ps(k->rstd[r]);
      __m256 d0 = ld8(d, n), d1 = ld8(d + 8, n - 8), d2 = ld8(d + 16, n - 16), d3 = ld8(d + 24, n - 24);
      w0 = _mm256_fmadd_ps(d0, _mm256_mul_ps(_mm256_sub_ps(ld8(x, n), vm), vs), w0);
      w1 = _mm256_fmadd_ps(d1, _mm256_mul_ps(_mm256_sub_ps(ld8(x + 8, n - 8), vm), vs), w1);
      w2 = _mm256_fmadd_ps(d2, _mm256_mul_ps(_mm256_sub_ps(ld8(x + 16, n - 16), vm), vs), w2);
      w3 = _mm256_fmadd_ps(d3, _mm256_mul_ps(_mm256_sub_ps(ld8(x + 24, n - 24), vm), vs), w3);
      b0 = _mm256_add_ps(b0, d0);
      b1 = _mm256_add_ps(b1, d1);
      b2 = _mm256_add_ps(b2, d2);
      b3 = _mm256_add_ps(b3, d3);
    }
    float *dw = k->dw, *db = k->db;
    if (dw) {
      st8(dw + j, _mm256_add_ps(ld8(dw + j, n), w0), n);
      st8(dw + j + 8, _mm256_add_ps(ld8(dw + j + 8, n - 8), w1), n - 8);
      st8(dw + j + 16, _mm256_add_ps(ld8(dw + j + 16, n - 16), w2), n - 16);
      st8(dw + j + 24, _mm256_add_ps(ld8(dw + j + 24, n - 24), w3), n - 24);
    }
    if (db) {
      st8(db + j, _mm256_add_ps(ld8(db + j, n), b0), n);
      st8(db + j + 8, _mm256_add_ps(ld8(db + j + 8, n - 8), b1), n - 8);
      st8(db + j + 16, _mm256_add_ps(ld8(db + j + 16, n - 16), b2), n - 16);
      st8(db + j + 24, _mm256_add_ps(ld8(db + j + 24, n - 24), b3), n - 24);
    }
  }
}
#endif

/* ---- dispatch ------------------------------------------------------------------------------ */

SIMD_RANGE(norm_fwd_range, norm_fwd, norm_ctx)
SIMD_RANGE(norm_bwd_rows_range, norm_bwd_rows, norm_ctx)
SIMD_RANGE(norm_bwd_cols_range, norm_bwd_cols, norm_ctx)

/* Backward in two passes, each split over the thread pool: rows give dx (every row needs only
 * itself), column blocks give dweight/dbias (every column is summed over the rows in order), so no
 * cross-thread reduction exists and the result never depends on the split. */
static void norm_backward(norm_ctx *k) {
  if (k->dx) parallel_for(norm_bwd_rows_range, k, k->rows, k->dim, 1);
  if (k->dw || k->db) parallel_for(norm_bwd_cols_range, k, k->dim, k->rows, 16);
}

/* One call on the calling thread (decode.c): LayerNorm (rms = 0) or RMSNorm of `rows` rows. */
void norm_forward_rows(const float *x, const float *w, const float *b, float *out, float *mean, float *rstd,
                       int64_t rows, int64_t dim, double eps, int rms) {
  const norm_ctx k = {.x = x, .w = w, .b = b, .out = out, .mean_out = mean, .rstd_out = rstd, .rows = rows, .dim = dim,
                      .eps = eps, .rms = rms};
  norm_fwd_range(&k, 0, rows);
}

/* ---- N-API wrappers ------------------------------------------------------------------------ */

/* layerNormForward(x, weight | null, bias | null, out, mean, rstd, rows, dim, eps) */
static napi_value js_layerNormForward(napi_env env, napi_callback_info info) {
  const char *fn = "layerNormForward";
  args_t a;
  if (!args_init(&a, env, info, 9, fn)) return NULL;
  int64_t rows = size_arg(&a, 6, fn, "rows"), dim = size_arg(&a, 7, fn, "dim");
  double eps = arg_f64(&a, 8);
  int64_t total = size_mul(&a, fn, rows, dim);
  norm_ctx k;
  memset(&k, 0, sizeof k);
  k.x = arg_f32(&a, 0, (size_t)total, 0);
  k.w = arg_f32(&a, 1, (size_t)dim, 1);
  k.b = arg_f32(&a, 2, (size_t)dim, 1);
  k.out = arg_f32(&a, 3, (size_t)total, 0);
  k.mean_out = arg_f32(&a, 4, (size_t)rows, 0);
  k.rstd_out = arg_f32(&a, 5, (size_t)rows, 0);
  if (a.failed) return NULL;
  k.rows = rows;
  k.dim = dim;
  k.eps = eps;
  parallel_for(norm_fwd_range, &k, rows, dim, 1);
  return make_undefined(env);
}

/* layerNormBackward(dout, x, weight | null, mean, rstd, dx | null, dweight | null, dbias | null, rows, dim) */
static napi_value js_layerNormBackward(napi_env env, napi_callback_info info) {
  const char *fn = "layerNormBackward";
  args_t a;
  if (!args_init(&a, env, info, 10, fn)) return NULL;
  int64_t rows = size_arg(&a, 8, fn, "rows"), dim = size_arg(&a, 9, fn, "dim");
  int64_t total = size_mul(&a, fn, rows, dim);
  norm_ctx k;
  memset(&k, 0, sizeof k);
  k.dout = arg_f32(&a, 0, (size_t)total, 0);
  k.x = arg_f32(&a, 1, (size_t)total, 0);
  k.w = arg_f32(&a, 2, (size_t)dim, 1);
  k.mean = arg_f32(&a, 3, (size_t)rows, 0);
  k.rstd = arg_f32(&a, 4, (size_t)rows, 0);
  k.dx = arg_f32(&a, 5, (size_t)total, 1);
  k.dw = arg_f32(&a, 6, (size_t)dim, 1);
  k.db = arg_f32(&a, 7, (size_t)dim, 1);
  if (a.failed) return NULL;
  k.rows = rows;
  k.dim = dim;
  norm_backward(&k);
  return make_undefined(env);
}

/* rmsNormForward(x, weight | null, out, rstd, rows, dim, eps) */
static napi_value js_rmsNormForward(napi_env env, napi_callback_info info) {
  const char *fn = "rmsNormForward";
  args_t a;
  if (!args_init(&a, env, info, 7, fn)) return NULL;
  int64_t rows = size_arg(&a, 4, fn, "rows"), dim = size_arg(&a, 5, fn, "dim");
  double eps = arg_f64(&a, 6);
  int64_t total = size_mul(&a, fn, rows, dim);
  norm_ctx k;
  memset(&k, 0, sizeof k);
  k.x = arg_f32(&a, 0, (size_t)total, 0);
  k.w = arg_f32(&a, 1, (size_t)dim, 1);
  k.out = arg_f32(&a, 2, (size_t)total, 0);
  k.rstd_out = arg_f32(&a, 3, (size_t)rows, 0);
  if (a.failed) return NULL;
  k.rows = rows;
  k.dim = dim;
  k.eps = eps;
  k.rms = 1;
  parallel_for(norm_fwd_range, &k, rows, dim, 1);
  return make_undefined(env);
}

/* rmsNormBackward(dout, x, weight | null, rstd, dx | null, dweight | null, rows, dim) */
static napi_value js_rmsNormBackward(napi_env env, napi_callback_info info) {
  const char *fn = "rmsNormBackward";
  args_t a;
  if (!args_init(&a, env, info, 8, fn)) return NULL;
  int64_t rows = size_arg(&a, 6, fn, "rows"), dim = size_arg(&a, 7, fn, "dim");
  int64_t total = size_mul(&a, fn, rows, dim);
  norm_ctx k;
  memset(&k, 0, sizeof k);
  k.dout = arg_f32(&a, 0, (size_t)total, 0);
  k.x = arg_f32(&a, 1, (size_t)total, 0);
  k.w = arg_f32(&a, 2, (size_t)dim, 1);
  k.rstd = arg_f32(&a, 3, (size_t)rows, 0);
  k.dx = arg_f32(&a, 4, (size_t)total, 1);
  k.dw = arg_f32(&a, 5, (size_t)dim, 1);
  if (a.failed) return NULL;
  k.rows = rows;
  k.dim = dim;
  k.rms = 1;
  norm_backward(&k);
  return make_undefined(env);
}

const export_t norm_exports[] = {
    {"layerNormForward", js_layerNormForward}, {"layerNormBackward", js_layerNormBackward},
    {"rmsNormForward", js_rmsNormForward},     {"rmsNormBackward", js_rmsNormBackward},
    {NULL, NULL},
};
