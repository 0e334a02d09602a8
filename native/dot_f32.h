/* Float32 dot products for matrix-vector products (decode), shared by gemm.c and decode.c:
 *
 *   f32_dot_rows(rows, ld, x, n, count, out)  out[r] = (rows + r*ld) . x for r < count
 *
 * Matrix-vector products are bandwidth-bound. With AVX-512 rows go 4 at a time: x is loaded once
 * per step and four row streams keep more memory requests in flight; leftover rows take a one-row
 * kernel with the same arithmetic per row. So a row's value never depends on how rows were
 * grouped or split over threads (the fused decode step relies on it to match the op-by-op path).
 * AVX-512 and AVX2+FMA kernels, picked by cpu_simd(); portable C otherwise. All static inline:
 * each file that includes this gets its own copy. */
#ifndef LLMTS_DOT_F32_H
#define LLMTS_DOT_F32_H

#include "cpu.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline float f32_dot1_portable(const float *x, const float *y, int n) {
  float s[8] = {0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) s[l] += x[i + l] * y[i + l];
  float t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (; i < n; i++) t += x[i] * y[i];
  return t;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static inline float f32_hsum256(__m256 s) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  return _mm_cvtss_f32(h);
}

/* one row, the same arithmetic per row as f32_dot4_avx512 */
__attribute__((target("avx512f"))) static inline float f32_dot1_avx512(const float *r0, const float *x, int n) {
  __m512 s0 = _mm512_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(r0 + i), _mm512_loadu_ps(x + i), s0);
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, r0 + i), _mm512_maskz_loadu_ps(m, x + i), s0);
  }
  return _mm512_reduce_add_ps(s0);
}

/* one row: two accumulators over 16 floats a step */
__attribute__((target("avx2,fma"))) static inline float f32_dot1_avx2(const float *r0, const float *x, int n) {
  __m256 a0 = _mm256_setzero_ps(), b0 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + i), _mm256_loadu_ps(x + i), a0);
    b0 = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + i + 8), _mm256_loadu_ps(x + i + 8), b0);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + i), _mm256_loadu_ps(x + i), a0);
  float t0 = f32_hsum256(_mm256_add_ps(a0, b0));
  for (; i < n; i++) t0 += r0[i] * x[i];
  return t0;
}

__attribute__((target("avx512f"))) static inline void f32_dot4_avx512(const float *r0, long ld, const float *x, int n, float *out) {
  const float *r1 = r0 + ld, *r2 = r1 + ld, *r3 = r2 + ld;
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 xv = _mm512_loadu_ps(x + i);
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(r0 + i), xv, s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(r1 + i), xv, s1);
    s2 = _mm512_fmadd_ps(_mm512_loadu_ps(r2 + i), xv, s2);
    s3 = _mm512_fmadd_ps(_mm512_loadu_ps(r3 + i), xv, s3);
  }
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, r0 + i), xv, s0);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, r1 + i), xv, s1);
    s2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, r2 + i), xv, s2);
    s3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, r3 + i), xv, s3);
  }
  out[0] = _mm512_reduce_add_ps(s0);
  out[1] = _mm512_reduce_add_ps(s1);
  out[2] = _mm512_reduce_add_ps(s2);
  out[3] = _mm512_reduce_add_ps(s3);
}

#endif

static inline void f32_dot_rows(const float *rows, long ld, const float *x, int n, int count, float *out) {
  int r = 0;
#if defined(__x86_64__)
  simd_level level = cpu_simd();
  if (level == SIMD_AVX512) {
    for (; r + 4 <= count; r += 4) f32_dot4_avx512(rows + (long)r * ld, ld, x, n, out + r);
    for (; r < count; r++) out[r] = f32_dot1_avx512(rows + (long)r * ld, x, n);
    return;
  }
  if (level == SIMD_AVX2) {
    /* one row at a time: on Zen 3 (AVX2) four interleaved row streams run 15-25% slower than one
     * sequential stream (the 15M decode shapes, K = 288), unlike AVX-512 machines */
    for (; r < count; r++) out[r] = f32_dot1_avx2(rows + (long)r * ld, x, n);
    return;
  }
#endif
  for (; r < count; r++) out[r] = f32_dot1_portable(rows + (long)r * ld, x, n);
}

#endif
