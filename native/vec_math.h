/* Vectorised math shared by the kernel files, all static inline (each file gets its own copy):
 *   - exp: exp_scalar (portable), exp16 (AVX-512), exp8 (AVX2), and expneg16 / expneg8 for x <= 0
 *   - horizontal sums: sum8_lanes (eight portable accumulators), hsum8 / hmax8 (AVX2)
 *   - row reductions used by softmax and cross-entropy: row_max_* and row_sumexp_* (portable,
 *     avx512, avx2), the suffixes matching the SIMD levels so kernels can be instantiated per level.
 * Every function fixes its order of operations, so results are deterministic per SIMD level. */
#ifndef LLMTS_VEC_MATH_H
#define LLMTS_VEC_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernel_util.h"

/* ---- exp ------------------------------------------------------------------------------------
 * Cephes-style reduction x = n ln2 + r, |r| <= ln2/2, and a degree-6 polynomial for e^r
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
/* exp of an argument already clamped to [EXP_LO, EXP_HI] (a NaN passes through): n = round(x log2 e),
 * r = x - n ln2 (in two parts), e^r by the polynomial, then scaled by 2^n */
TARGET_AVX512 static inline __m512 exp16_clamped(__m512 xc) {
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
  return _mm512_scalef_ps(y, n);
}

TARGET_AVX2 static inline __m256 exp8_clamped(__m256 xc) {
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
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

TARGET_AVX512 static inline __m512 exp16(__m512 x) {
  const __m512 lo = _mm512_set1_ps(EXP_LO);
  __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  /* x is the second operand of min/max so that a NaN passes through */
  __m512 xc = _mm512_max_ps(lo, _mm512_min_ps(_mm512_set1_ps(EXP_HI), x));
  return _mm512_maskz_mov_ps((__mmask16)~under, exp16_clamped(xc));
}

TARGET_AVX2 static inline __m256 exp8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(EXP_LO);
  __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  __m256 xc = _mm256_max_ps(lo, _mm256_min_ps(_mm256_set1_ps(EXP_HI), x));
  return _mm256_andnot_ps(under, exp8_clamped(xc));
}

/* exp(x) for x <= 0 (the sigmoid only needs exp(-|z|)): x is clamped at -87, where exp is still a
 * normal float (about 1.6e-38, as good as 0 next to 1), so no overflow or underflow handling is
 * needed. x is the second operand of max so that a NaN passes through. */
TARGET_AVX512 static inline __m512 expneg16(__m512 x) { return exp16_clamped(_mm512_max_ps(_mm512_set1_ps(EXP_LO), x)); }

TARGET_AVX2 static inline __m256 expneg8(__m256 x) { return exp8_clamped(_mm256_max_ps(_mm256_set1_ps(EXP_LO), x)); }
#endif

/* ---- horizontal sums ---------------------------------------------------------------------- */

/* the sum of eight portable accumulators, in a fixed tree order */
static inline float sum8_lanes(const float acc[8]) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

#ifdef LLMTS_X86
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
  return sum8_lanes(acc);
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

#endif
