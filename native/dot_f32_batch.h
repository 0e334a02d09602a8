/* Float32 dot products of several weight rows with several inputs (a decode step over a batch):
 *
 *   f32_dot2x2_avx2(rows, ld, x0, x1, n, out)   out = { r0.x0, r0.x1, r1.x0, r1.x1 }, r1 = r0 + ld
 *
 * Each of the four results has exactly the arithmetic of f32_dot1_avx2 (dot_f32.h) for its pair:
 * the same two accumulators over 16 floats a step, the same 8-float step after them and the same
 * horizontal sum, so a batched decode gives each sequence the logits of a single-token decode,
 * bit for bit. What differs is the loads: a weight vector serves two inputs and an input vector
 * two weight rows (one load per multiply-add instead of two), and eight independent accumulator
 * chains hide the multiply-add latency that one row's two chains cannot. Requires n % 8 == 0
 * (f32_dot1_avx2 finishes other lengths with a scalar tail; callers use it for those). */
#ifndef LLMTS_DOT_F32_BATCH_H
#define LLMTS_DOT_F32_BATCH_H

#include "dot_f32.h"

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static inline void f32_dot2x2_avx2(const float *r0, long ld, const float *x0, const float *x1,
                                                                     int n, float *out) {
  const float *r1 = r0 + ld;
  __m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps(), a10 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps();
  __m256 b00 = _mm256_setzero_ps(), b01 = _mm256_setzero_ps(), b10 = _mm256_setzero_ps(), b11 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 w0 = _mm256_loadu_ps(r0 + i), w1 = _mm256_loadu_ps(r1 + i);
    __m256 u0 = _mm256_loadu_ps(x0 + i), u1 = _mm256_loadu_ps(x1 + i);
    a00 = _mm256_fmadd_ps(w0, u0, a00);
    a01 = _mm256_fmadd_ps(w0, u1, a01);
    a10 = _mm256_fmadd_ps(w1, u0, a10);
    a11 = _mm256_fmadd_ps(w1, u1, a11);
    w0 = _mm256_loadu_ps(r0 + i + 8);
    w1 = _mm256_loadu_ps(r1 + i + 8);
    u0 = _mm256_loadu_ps(x0 + i + 8);
    u1 = _mm256_loadu_ps(x1 + i + 8);
    b00 = _mm256_fmadd_ps(w0, u0, b00);
    b01 = _mm256_fmadd_ps(w0, u1, b01);
    b10 = _mm256_fmadd_ps(w1, u0, b10);
    b11 = _mm256_fmadd_ps(w1, u1, b11);
  }
  for (; i + 8 <= n; i += 8) {
    __m256 w0 = _mm256_loadu_ps(r0 + i), w1 = _mm256_loadu_ps(r1 + i);
    __m256 u0 = _mm256_loadu_ps(x0 + i), u1 = _mm256_loadu_ps(x1 + i);
    a00 = _mm256_fmadd_ps(w0, u0, a00);
    a01 = _mm256_fmadd_ps(w0, u1, a01);
    a10 = _mm256_fmadd_ps(w1, u0, a10);
    a11 = _mm256_fmadd_ps(w1, u1, a11);
  }
  out[0] = f32_hsum256(_mm256_add_ps(a00, b00));
  out[1] = f32_hsum256(_mm256_add_ps(a01, b01));
  out[2] = f32_hsum256(_mm256_add_ps(a10, b10));
  out[3] = f32_hsum256(_mm256_add_ps(a11, b11));
}
#endif

#endif
