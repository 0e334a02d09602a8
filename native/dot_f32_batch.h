/* Float32 dot products of one weight row with several inputs (a decode step over a batch):
 *
 *   f32_dot1x4_avx2(row, x, ldx, n, out)   out[b] = row . (x + b * ldx)   for b < 4
 *   f32_dot1x2_avx2(row, x, ldx, n, out)   the same for b < 2
 *
 * Each result has exactly the arithmetic of f32_dot1_avx2 (dot_f32.h) for its pair: the same two
 * accumulators over 16 floats a step, the same 8-float step after them and the same horizontal
 * sum, so a batched decode gives each sequence the logits of a single-token decode, bit for bit.
 * What differs is the loads: a weight vector serves every input, the weight row is one
 * sequential stream (on Zen 3 two interleaved rows streamed ~1.7x slower from memory), and the
 * inputs' accumulators are independent chains that hide the multiply-add latency one row's two
 * chains cannot. Requires n % 8 == 0 (f32_dot1_avx2 finishes other lengths with a scalar tail;
 * callers use it for those). */
#ifndef LLMTS_DOT_F32_BATCH_H
#define LLMTS_DOT_F32_BATCH_H

#include "dot_f32.h"

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static inline void f32_dot1x4_avx2(const float *r0, const float *x, long ldx, int n, float *out) {
  const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx;
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 w = _mm256_loadu_ps(r0 + i);
    a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x0 + i), a0);
    a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x1 + i), a1);
    a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x2 + i), a2);
    a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x3 + i), a3);
    w = _mm256_loadu_ps(r0 + i + 8);
    b0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x0 + i + 8), b0);
    b1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x1 + i + 8), b1);
    b2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x2 + i + 8), b2);
    b3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x3 + i + 8), b3);
  }
  if (i + 8 <= n) {
    __m256 w = _mm256_loadu_ps(r0 + i);
    a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x0 + i), a0);
    a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x1 + i), a1);
    a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x2 + i), a2);
    a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x3 + i), a3);
  }
  out[0] = f32_hsum256(_mm256_add_ps(a0, b0));
  out[1] = f32_hsum256(_mm256_add_ps(a1, b1));
  out[2] = f32_hsum256(_mm256_add_ps(a2, b2));
  out[3] = f32_hsum256(_mm256_add_ps(a3, b3));
}

__attribute__((target("avx2,fma"))) static inline void f32_dot1x2_avx2(const float *r0, const float *x, long ldx, int n, float *out) {
  const float *x0 = x, *x1 = x + ldx;
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 w = _mm256_loadu_ps(r0 + i);
    a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x0 + i), a0);
    a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x1 + i), a1);
    w = _mm256_loadu_ps(r0 + i + 8);
    b0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x0 + i + 8), b0);
    b1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x1 + i + 8), b1);
  }
  if (i + 8 <= n) {
    __m256 w = _mm256_loadu_ps(r0 + i);
    a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x0 + i), a0);
    a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x1 + i), a1);
  }
  out[0] = f32_hsum256(_mm256_add_ps(a0, b0));
  out[1] = f32_hsum256(_mm256_add_ps(a1, b1));
}
#endif

#endif
