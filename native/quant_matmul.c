/* matmulQuantized: out (M, N) = x (M, K) · Wᵀ with W (N, K) stored as raw GGUF blocks
 * (Q8_0: fp16 d + 32 int8; Q4_0: fp16 d + 16 bytes, element j in the low nibble of byte j and
 * element j + 16 in its high nibble, value (q - 8) * d). The weights are never dequantized:
 *
 *   1. each row of x is quantized once per call to int8 blocks of 32 (as llama.cpp's Q8_0
 *      activations: d_x = amax / 127, q = roundf(x / d_x); d_x is kept in float32);
 *   2. every (row of x, row of W) pair is a sum over blocks of d_x * d_w * (int8 · int8|int4),
 *      the integer dot products computed exactly, the sum in float.
 *
 * Dot kernels: AVX-512 (two blocks per zmm; VNNI _mm512_dpbusd_epi32 when the CPU has
 * avx512vnni, else AVX-512BW maddubs + madd), AVX2 (one block per ymm, maddubs + madd), portable
 * C. The unsigned x signed products use the sign trick: |w| * (x * sign(w)) = w * x. Rows of W
 * are split over the thread pool (decode has M = 1). Scratch for the quantized x is static and
 * grown on demand (called from the JS thread only). LLMTS_NO_VNNI=1 disables the VNNI path. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_util.h"

#include "quant.h"

/* ------------------------------------------------------------------ fp16 scales */

float quant_f16_table[65536];
static int f16_ready = 0;

static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else { /* subnormal: normalise */
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) {
        man <<= 1;
        exp--;
      }
      bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

void quant_init_f16(void) {
  if (f16_ready) return;
  for (uint32_t i = 0; i < 65536; i++) quant_f16_table[i] = f16_to_f32((uint16_t)i);
  f16_ready = 1;
}

#define scale_of quant_scale_of

/* ------------------------------------------------------------------ activations */

static int8_t *xq_buf = NULL;
static float *xd_buf = NULL;
static int32_t *xs_buf = NULL;
static size_t xq_cap = 0;

static int grow_scratch(size_t n) {
  if (n <= xq_cap) return 1;
  int8_t *q = (int8_t *)realloc(xq_buf, n);
  if (!q) return 0;
  xq_buf = q;
  float *d = (float *)realloc(xd_buf, (n / QK) * sizeof(float));
  if (!d) return 0;
  xd_buf = d;
  int32_t *s = (int32_t *)realloc(xs_buf, (n / QK) * sizeof(int32_t));
  if (!s) return 0;
  xs_buf = s;
  xq_cap = n;
  return 1;
}

/* one row: d = amax / 127, q = round-half-away(x / d), sum = sum of the block's q */
static void quantize_row_portable(const float *x, int64_t nb, int8_t *q, float *d, int32_t *sum) {
  for (int64_t b = 0; b < nb; b++) {
    const float *v = x + b * QK;
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) {
      float a = fabsf(v[j]);
      if (a > amax) amax = a;
    }
    float s = amax / 127.0f;
    float id = s != 0.0f ? 1.0f / s : 0.0f;
    d[b] = s;
    int32_t t = 0;
    for (int j = 0; j < QK; j++) {
      int8_t r = (int8_t)roundf(v[j] * id);
      q[b * QK + j] = r;
      t += r;
    }
    sum[b] = t;
  }
}

#ifdef LLMTS_X86
/* round half away from zero, exactly as roundf: r = trunc(t), plus sign(t) where |t - r| >= 0.5 */
TARGET_AVX512 static inline __m512i round_away_epi32(__m512 t) {
  __m512 r = _mm512_roundscale_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  __m512 frac = _mm512_abs_ps(_mm512_sub_ps(t, r));
  __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  __m512 one = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(t), _mm512_set1_epi32((int)0x80000000u)),
                                                   _mm512_castps_si512(_mm512_set1_ps(1.0f))));
  return _mm512_cvttps_epi32(_mm512_mask_add_ps(r, up, r, one));
}

TARGET_AVX512 static void quantize_row_avx512(const float *x, int64_t nb, int8_t *q, float *d, int32_t *sum) {
  for (int64_t b = 0; b < nb; b++) {
    __m512 v0 = _mm512_loadu_ps(x + b * QK), v1 = _mm512_loadu_ps(x + b * QK + 16);
    float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    float s = amax / 127.0f;
    float id = s != 0.0f ? 1.0f / s : 0.0f;
    d[b] = s;
    __m512 vid = _mm512_set1_ps(id);
    __m512i r0 = round_away_epi32(_mm512_mul_ps(v0, vid)), r1 = round_away_epi32(_mm512_mul_ps(v1, vid));
    _mm_storeu_si128((__m128i *)(q + b * QK), _mm512_cvtepi32_epi8(r0));
    _mm_storeu_si128((__m128i *)(q + b * QK + 16), _mm512_cvtepi32_epi8(r1));
    sum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(r0, r1));
  }
}
/* AVX2: round half away from zero exactly as roundf, as the AVX-512 version */
TARGET_AVX2 static inline __m256i round_away_epi32_avx2(__m256 t) {
  __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  __m256 sign = _mm256_and_ps(t, _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u)));
  __m256 frac = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u)), _mm256_sub_ps(t, r));
  __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  __m256 one = _mm256_or_ps(sign, _mm256_set1_ps(1.0f));
  return _mm256_cvttps_epi32(_mm256_add_ps(r, _mm256_and_ps(up, one)));
}

TARGET_AVX2 static void quantize_row_avx2(const float *x, int64_t nb, int8_t *q, float *d, int32_t *sum) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < nb; b++) {
    const float *v = x + b * QK;
    __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8), v2 = _mm256_loadu_ps(v + 16), v3 = _mm256_loadu_ps(v + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absmask), _mm256_and_ps(v1, absmask)),
                             _mm256_max_ps(_mm256_and_ps(v2, absmask), _mm256_and_ps(v3, absmask)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float amax = _mm_cvtss_f32(h);
    float s = amax / 127.0f;
    float id = s != 0.0f ? 1.0f / s : 0.0f;
    d[b] = s;
    __m256 vid = _mm256_set1_ps(id);
    __m256i r0 = round_away_epi32_avx2(_mm256_mul_ps(v0, vid)), r1 = round_away_epi32_avx2(_mm256_mul_ps(v1, vid));
    __m256i r2 = round_away_epi32_avx2(_mm256_mul_ps(v2, vid)), r3 = round_away_epi32_avx2(_mm256_mul_ps(v3, vid));
    /* int32 -> int8 in element order: packs work within 128-bit lanes, a permute restores order */
    __m256i p01 = _mm256_packs_epi32(r0, r1), p23 = _mm256_packs_epi32(r2, r3);
    __m256i p = _mm256_packs_epi16(p01, p23);
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)(q + b * QK), p);
    __m256i t = _mm256_add_epi32(_mm256_add_epi32(r0, r1), _mm256_add_epi32(r2, r3));
    __m128i t4 = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
    t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0x4e));
    t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0xb1));
    sum[b] = _mm_cvtsi128_si32(t4);
  }
}
#endif

typedef struct {
  const float *x;
  int64_t K, nb;
} quantize_ctx;

static void quantize_rows(const void *p, int64_t lo, int64_t hi) {
  const quantize_ctx *c = (const quantize_ctx *)p;
  for (int64_t m = lo; m < hi; m++) {
#ifdef LLMTS_X86
    if (cpu_simd() == SIMD_AVX512) {
      quantize_row_avx512(c->x + m * c->K, c->nb, xq_buf + m * c->K, xd_buf + m * c->nb, xs_buf + m * c->nb);
      continue;
    }
    if (cpu_simd() == SIMD_AVX2) {
      quantize_row_avx2(c->x + m * c->K, c->nb, xq_buf + m * c->K, xd_buf + m * c->nb, xs_buf + m * c->nb);
      continue;
    }
#endif
    quantize_row_portable(c->x + m * c->K, c->nb, xq_buf + m * c->K, xd_buf + m * c->nb, xs_buf + m * c->nb);
  }
}

/* ------------------------------------------------------------------ dot kernels
 * dot of one quantized x row (nb blocks) with one weight row */

typedef quant_dot_fn qdot_fn;

static float dot_q8_portable(const uint8_t *w, const int8_t *xq, const float *xd, int64_t nb) {
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *blk = w + b * Q8_BYTES;
    const int8_t *wq = (const int8_t *)(blk + 2);
    const int8_t *x = xq + b * QK;
    int32_t s = 0;
    for (int j = 0; j < QK; j++) s += (int32_t)wq[j] * (int32_t)x[j];
    acc += scale_of(blk) * xd[b] * (float)s;
  }
  return acc;
}

static float dot_q4_portable(const uint8_t *w, const int8_t *xq, const float *xd, int64_t nb) {
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *blk = w + b * Q4_BYTES;
    const uint8_t *qs = blk + 2;
    const int8_t *x = xq + b * QK;
    int32_t s = 0;
    for (int j = 0; j < QK / 2; j++) {
      s += ((int32_t)(qs[j] & 0x0f) - 8) * (int32_t)x[j];
      s += ((int32_t)(qs[j] >> 4) - 8) * (int32_t)x[j + QK / 2];
    }
    acc += scale_of(blk) * xd[b] * (float)s;
  }
  return acc;
}

#ifdef LLMTS_X86
#define TARGET_Q_AVX2 __attribute__((target("avx2,fma")))
#define TARGET_Q_AVX512 __attribute__((target("avx512f,avx512bw,avx2,fma")))
#define TARGET_Q_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma")))

/* the 32 weights of a Q4_0 block as signed bytes q - 8, in element order */
TARGET_Q_AVX2 static inline __m256i q4_unpack(const uint8_t *qs) {
  __m128i b = _mm_loadu_si128((const __m128i *)qs);
  __m256i v = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
  return _mm256_sub_epi8(_mm256_and_si256(v, _mm256_set1_epi8(0x0f)), _mm256_set1_epi8(8));
}

/* 8 int32 partial sums of w · x (signed bytes) */
TARGET_Q_AVX2 static inline __m256i dot32_avx2(__m256i w, __m256i x) {
  __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

TARGET_Q_AVX2 static inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* Decode streams each weight row once, rows back to back. The hardware prefetcher alone left the
 * AVX2 dots waiting on memory (Zen 3: Q4_0 rows at ~13 GB/s where Q8_0 reached ~17); a software
 * prefetch 1 KiB ahead (past the row's end it fetches the next row) made 110M decode 10-20%
 * faster for both types in interleaved runs. The AVX-512 and VNNI dots take the same prefetch
 * (not yet measured on an AVX-512 machine: issue 18). The F32 gemv, a plain load-and-fma stream,
 * got slower with the same prefetch and has none. */
#define DOT_PREFETCH 1024

TARGET_Q_AVX2 static float dot_q8_avx2(const uint8_t *w, const int8_t *xq, const float *xd, int64_t nb) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 1 < nb; b += 2) {
    const uint8_t *b0 = w + b * Q8_BYTES, *b1 = b0 + Q8_BYTES;
    _mm_prefetch((const char *)b0 + DOT_PREFETCH, _MM_HINT_T0);
    __m256i s0 = dot32_avx2(_mm256_loadu_si256((const __m256i *)(b0 + 2)), _mm256_loadu_si256((const __m256i *)(xq + b * QK)));
    __m256i s1 = dot32_avx2(_mm256_loadu_si256((const __m256i *)(b1 + 2)), _mm256_loadu_si256((const __m256i *)(xq + b * QK + QK)));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(scale_of(b0) * xd[b]), _mm256_cvtepi32_ps(s0), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_set1_ps(scale_of(b1) * xd[b + 1]), _mm256_cvtepi32_ps(s1), acc1);
  }
  for (; b < nb; b++) {
    const uint8_t *b0 = w + b * Q8_BYTES;
    __m256i s0 = dot32_avx2(_mm256_loadu_si256((const __m256i *)(b0 + 2)), _mm256_loadu_si256((const __m256i *)(xq + b * QK)));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(scale_of(b0) * xd[b]), _mm256_cvtepi32_ps(s0), acc0);
  }
  return hsum256(_mm256_add_ps(acc0, acc1));
}

TARGET_Q_AVX2 static float dot_q4_avx2(const uint8_t *w, const int8_t *xq, const float *xd, int64_t nb) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 1 < nb; b += 2) {
    const uint8_t *b0 = w + b * Q4_BYTES, *b1 = b0 + Q4_BYTES;
    _mm_prefetch((const char *)b0 + DOT_PREFETCH, _MM_HINT_T0);
    __m256i s0 = dot32_avx2(q4_unpack(b0 + 2), _mm256_loadu_si256((const __m256i *)(xq + b * QK)));
    __m256i s1 = dot32_avx2(q4_unpack(b1 + 2), _mm256_loadu_si256((const __m256i *)(xq + b * QK + QK)));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(scale_of(b0) * xd[b]), _mm256_cvtepi32_ps(s0), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_set1_ps(scale_of(b1) * xd[b + 1]), _mm256_cvtepi32_ps(s1), acc1);
  }
  for (; b < nb; b++) {
    const uint8_t *b0 = w + b * Q4_BYTES;
    __m256i s0 = dot32_avx2(q4_unpack(b0 + 2), _mm256_loadu_si256((const __m256i *)(xq + b * QK)));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(scale_of(b0) * xd[b]), _mm256_cvtepi32_ps(s0), acc0);
  }
  return hsum256(_mm256_add_ps(acc0, acc1));
}

/* Products of a few rows without VNNI (AVX2, AVX-512BW; from 3-4 rows the AVX2 panel GEMM in
 * quant_panel.c takes over): tiles of 4 weight rows x 2 activation rows. Each weight block is loaded (and, for Q4_0, unpacked) once per tile and used for both x
 * rows, each x block is used for the 4 weight rows: per block and pair, sign + maddubs + madd +
 * convert + scale + fma, where the per-row kernel also reloads and unpacks. 8 accumulators. */
TARGET_Q_AVX2 static inline __m256i load_w_block(const uint8_t *blk, int type) {
  return type == TYPE_Q8_0 ? _mm256_loadu_si256((const __m256i *)(blk + 2)) : q4_unpack(blk + 2);
}

/* one weight row i of the tile: its block against both x blocks (accumulators A<i>0, A<i>1) */
#define TILE_ROW(i)                                                                                   \
  {                                                                                                   \
    const uint8_t *blk = w + (i) * rb + b * bb;                                                       \
    __m256i wv = load_w_block(blk, type), wa = _mm256_abs_epi8(wv);                                   \
    __m256 dw = _mm256_set1_ps(scale_of(blk));                                                        \
    __m256i s0 = _mm256_madd_epi16(_mm256_maddubs_epi16(wa, _mm256_sign_epi8(x0, wv)), ones);         \
    __m256i s1 = _mm256_madd_epi16(_mm256_maddubs_epi16(wa, _mm256_sign_epi8(x1, wv)), ones);         \
    A##i##0 = _mm256_fmadd_ps(_mm256_mul_ps(dw, d0), _mm256_cvtepi32_ps(s0), A##i##0);                \
    A##i##1 = _mm256_fmadd_ps(_mm256_mul_ps(dw, d1), _mm256_cvtepi32_ps(s1), A##i##1);                \
  }

/* 8 named accumulators (an array of them would live on the stack) */
TARGET_Q_AVX2 static void tile4x2_avx2(const uint8_t *w, int64_t rb, int type, const int8_t *xq, const float *xd, int64_t nb,
                                        int64_t K, float *out, int64_t ldo) {
  const int64_t bb = type == TYPE_Q8_0 ? Q8_BYTES : Q4_BYTES;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 A00 = _mm256_setzero_ps(), A01 = A00, A10 = A00, A11 = A00, A20 = A00, A21 = A00, A30 = A00, A31 = A00;
  for (int64_t b = 0; b < nb; b++) {
    __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + b * QK));
    __m256i x1 = _mm256_loadu_si256((const __m256i *)(xq + K + b * QK));
    __m256 d0 = _mm256_set1_ps(xd[b]), d1 = _mm256_set1_ps(xd[nb + b]);
    TILE_ROW(0)
    TILE_ROW(1)
    TILE_ROW(2)
    TILE_ROW(3)
  }
  out[0] = hsum256(A00);
  out[1] = hsum256(A10);
  out[2] = hsum256(A20);
  out[3] = hsum256(A30);
  out[ldo] = hsum256(A01);
  out[ldo + 1] = hsum256(A11);
  out[ldo + 2] = hsum256(A21);
  out[ldo + 3] = hsum256(A31);
}
#undef TILE_ROW

/* AVX-512: two blocks per zmm (lanes 0-7 the first block, 8-15 the second). */
#define DEF_AVX512(SUFFIX, TARGET, DOT16)                                                                          \
  TARGET static float dot_q8_##SUFFIX(const uint8_t *w, const int8_t *xq, const float *xd, int64_t nb) {          \
    __m512 acc = _mm512_setzero_ps();                                                                              \
    int64_t b = 0;                                                                                                 \
    for (; b + 1 < nb; b += 2) {                                                                                   \
      const uint8_t *b0 = w + b * Q8_BYTES, *b1 = b0 + Q8_BYTES;                                                   \
      _mm_prefetch((const char *)b0 + DOT_PREFETCH, _MM_HINT_T0);                                                  \
      __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b0 + 2))),     \
                                      _mm256_loadu_si256((const __m256i *)(b1 + 2)), 1);                           \
      __m512i xv = _mm512_loadu_si512((const void *)(xq + b * QK));                                               \
      __m512 sc = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(scale_of(b0) * xd[b]), _mm512_set1_ps(scale_of(b1) * xd[b + 1])); \
      acc = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(DOT16(wv, xv)), acc);                                           \
    }                                                                                                              \
    float tail = 0.0f;                                                                                             \
    if (b < nb) tail = dot_q8_avx2(w + b * Q8_BYTES, xq + b * QK, xd + b, 1);                                      \
    return _mm512_reduce_add_ps(acc) + tail;                                                                       \
  }                                                                                                                \
  TARGET static float dot_q4_##SUFFIX(const uint8_t *w, const int8_t *xq, const float *xd, int64_t nb) {          \
    __m512 acc = _mm512_setzero_ps();                                                                              \
    int64_t b = 0;                                                                                                 \
    for (; b + 1 < nb; b += 2) {                                                                                   \
      const uint8_t *b0 = w + b * Q4_BYTES, *b1 = b0 + Q4_BYTES;                                                   \
      _mm_prefetch((const char *)b0 + DOT_PREFETCH, _MM_HINT_T0);                                                  \
      __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(q4_unpack(b0 + 2)), q4_unpack(b1 + 2), 1);            \
      __m512i xv = _mm512_loadu_si512((const void *)(xq + b * QK));                                               \
      __m512 sc = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(scale_of(b0) * xd[b]), _mm512_set1_ps(scale_of(b1) * xd[b + 1])); \
      acc = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(DOT16(wv, xv)), acc);                                           \
    }                                                                                                              \
    float tail = 0.0f;                                                                                             \
    if (b < nb) tail = dot_q4_avx2(w + b * Q4_BYTES, xq + b * QK, xd + b, 1);                                      \
    return _mm512_reduce_add_ps(acc) + tail;                                                                       \
  }

/* x * sign(w) without a 512-bit psignb: negate the lanes where w < 0 (w == 0 makes |w| = 0 anyway) */
TARGET_Q_AVX512 static inline __m512i dot16_bw(__m512i w, __m512i x) {
  __m512i xs = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
  __m512i p = _mm512_maddubs_epi16(_mm512_abs_epi8(w), xs);
  return _mm512_madd_epi16(p, _mm512_set1_epi16(1));
}

TARGET_Q_VNNI static inline __m512i dot16_vnni(__m512i w, __m512i x) {
  __m512i xs = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), xs);
}

DEF_AVX512(avx512, TARGET_Q_AVX512, dot16_bw)
DEF_AVX512(vnni, TARGET_Q_VNNI, dot16_vnni)
#endif

/* ------------------------------------------------------------------ dispatch */

/* rows of x from which the panel GEMM (quant_panel.c) beats the per-row dots (VNNI) or the 4x2
 * tiles (AVX2). Measured: making a Q8_0 panel costs twice a Q4_0 one (8 gathers a block instead of
 * 4 with VNNI, two 8x4 transposes instead of one on AVX2); on a Zen 3 (AVX2) the tiles tie at
 * M = 2 (Q4_0) and win up to M = 3 (Q8_0), the panel beyond. */
#define PANEL_MIN_ROWS_Q8 6
#define PANEL_MIN_ROWS_Q4 3
#define PANEL_MIN_ROWS_Q8_AVX2 4
#define PANEL_MIN_ROWS_Q4_AVX2 3

static int path = -1; /* 0 portable, 1 avx2, 2 avx512bw, 3 avx512vnni */

static const char *path_names[] = {"portable", "avx2", "avx512bw", "avx512vnni"};

static int choose_path(void) {
  if (path >= 0) return path;
  path = 0;
#ifdef LLMTS_X86
  simd_level lvl = cpu_simd();
  __builtin_cpu_init();
  if (lvl >= SIMD_AVX2) path = 1;
  if (lvl == SIMD_AVX512 && __builtin_cpu_supports("avx512bw")) {
    path = 2;
    const char *no = getenv("LLMTS_NO_VNNI");
    if (__builtin_cpu_supports("avx512vnni") && !(no && strcmp(no, "1") == 0)) path = 3;
  }
#endif
  return path;
}

static qdot_fn pick_dot(int type) {
  int p = choose_path();
#ifdef LLMTS_X86
  if (p == 3) return type == TYPE_Q8_0 ? dot_q8_vnni : dot_q4_vnni;
  if (p == 2) return type == TYPE_Q8_0 ? dot_q8_avx512 : dot_q4_avx512;
  if (p == 1) return type == TYPE_Q8_0 ? dot_q8_avx2 : dot_q4_avx2;
#endif
  (void)p;
  return type == TYPE_Q8_0 ? dot_q8_portable : dot_q4_portable;
}

void quant_quantize_row(const float *x, int64_t K, int8_t *q, float *d, int32_t *sum) {
  quant_init_f16();
#ifdef LLMTS_X86
  if (cpu_simd() == SIMD_AVX512) {
    quantize_row_avx512(x, K / QK, q, d, sum);
    return;
  }
  if (cpu_simd() == SIMD_AVX2) {
    quantize_row_avx2(x, K / QK, q, d, sum);
    return;
  }
#endif
  quantize_row_portable(x, K / QK, q, d, sum);
}

quant_dot_fn quant_row_dot(int type) {
  quant_init_f16();
  return pick_dot(type);
}

typedef struct {
  qdot_fn dot;
  int type;
  const uint8_t *w;
  int64_t row_bytes, nb, M, N, chunk;
  float *out;
} qm_ctx;

static void qm_task(void *p, int task, int thread) {
  (void)thread;
  const qm_ctx *c = (const qm_ctx *)p;
  int64_t lo = (int64_t)task * c->chunk, hi = lo + c->chunk;
  if (hi > c->N) hi = c->N;
  for (int64_t n = lo; n < hi; n++) {
    const uint8_t *wr = c->w + n * c->row_bytes;
    for (int64_t m = 0; m < c->M; m++) c->out[m * c->N + n] = c->dot(wr, xq_buf + m * c->nb * QK, xd_buf + m * c->nb, c->nb);
  }
}

#ifdef LLMTS_X86
/* rows [lo, hi) of W against every row of x, 4 x 2 tiles, leftovers by the per-row kernel */
static void qm_tile_task(void *p, int task, int thread) {
  (void)thread;
  const qm_ctx *c = (const qm_ctx *)p;
  int64_t lo = (int64_t)task * c->chunk, hi = lo + c->chunk;
  if (hi > c->N) hi = c->N;
  int64_t n = lo;
  for (; n + 4 <= hi; n += 4) {
    int64_t m = 0;
    for (; m + 2 <= c->M; m += 2)
      tile4x2_avx2(c->w + n * c->row_bytes, c->row_bytes, c->type, xq_buf + m * c->nb * QK, xd_buf + m * c->nb, c->nb,
                   c->nb * QK, c->out + m * c->N + n, c->N);
    for (; m < c->M; m++)
      for (int64_t i = n; i < n + 4; i++)
        c->out[m * c->N + i] = c->dot(c->w + i * c->row_bytes, xq_buf + m * c->nb * QK, xd_buf + m * c->nb, c->nb);
  }
  for (; n < hi; n++)
    for (int64_t m = 0; m < c->M; m++)
      c->out[m * c->N + n] = c->dot(c->w + n * c->row_bytes, xq_buf + m * c->nb * QK, xd_buf + m * c->nb, c->nb);
}
#endif

/* matmulQuantized(x, w, type, out, M, N, K); type: 8 (Q8_0) or 2 (Q4_0) */
static napi_value js_matmul_quantized(napi_env env, napi_callback_info info) {
  args_t a;
  if (!args_init(&a, env, info, 7, "matmulQuantized")) return NULL;
  int64_t type = arg_int(&a, 2);
  int64_t M = size_arg(&a, 4, "matmulQuantized", "M"), N = size_arg(&a, 5, "matmulQuantized", "N"),
          K = size_arg(&a, 6, "matmulQuantized", "K");
  if (a.failed) return NULL;
  if (type != TYPE_Q8_0 && type != TYPE_Q4_0) {
    napi_throw_type_error(env, NULL, "llmts native matmulQuantized: type must be 8 (Q8_0) or 2 (Q4_0)");
    return NULL;
  }
  if (K % QK != 0) {
    napi_throw_range_error(env, NULL, "llmts native matmulQuantized: K must be a multiple of 32");
    return NULL;
  }
  int64_t nb = K / QK;
  int64_t row_bytes = nb * (type == TYPE_Q8_0 ? Q8_BYTES : Q4_BYTES);
  int64_t mk = size_mul(&a, "matmulQuantized", M, K), mn = size_mul(&a, "matmulQuantized", M, N),
          wbytes = size_mul(&a, "matmulQuantized", N, row_bytes);
  if (a.failed) return NULL;
  float *x = arg_f32(&a, 0, (size_t)mk, 0);
  uint8_t *w = arg_u8(&a, 1, (size_t)wbytes);
  float *out = arg_f32(&a, 3, (size_t)mn, 0);
  if (a.failed) return NULL;
  if (M == 0 || N == 0) return make_undefined(env);
  if (K == 0) {
    memset(out, 0, (size_t)mn * sizeof(float));
    return make_undefined(env);
  }
  quant_init_f16();
  if (!grow_scratch((size_t)mk)) {
    napi_throw_error(env, NULL, "llmts native matmulQuantized: out of memory");
    return NULL;
  }
  quantize_ctx qc = {x, K, nb};
  parallel_for(quantize_rows, &qc, M, K, 1);
  int kind = quant_panel_kind();
  int64_t min_rows = kind == PANEL_VNNI ? (type == TYPE_Q8_0 ? PANEL_MIN_ROWS_Q8 : PANEL_MIN_ROWS_Q4)
                                        : (type == TYPE_Q8_0 ? PANEL_MIN_ROWS_Q8_AVX2 : PANEL_MIN_ROWS_Q4_AVX2);
  if (kind != PANEL_NONE && M >= min_rows) {
    quant_rows xr = {xq_buf, xd_buf, xs_buf, M, K, nb};
    if (quant_panel_matmul(&xr, w, (int)type, out, N)) return make_undefined(env);
  }
  qm_ctx c = {pick_dot((int)type), (int)type, w, row_bytes, nb, M, N, N, out};
  int threads = pool_size();
  int64_t work = M * N * K;
  int64_t tasks = work < 65536 ? 1 : (int64_t)threads * 4;
  if (tasks > N) tasks = N;
  if (tasks < 1) tasks = 1;
  c.chunk = (N + tasks - 1) / tasks;
  pool_task_fn fn = qm_task;
#ifdef LLMTS_X86
  if (M >= 2 && (choose_path() == 1 || choose_path() == 2)) {
    c.chunk = (c.chunk + 3) / 4 * 4; /* whole tiles per task */
    fn = qm_tile_task;
  }
#endif
  pool_run(fn, &c, (int)((N + c.chunk - 1) / c.chunk));
  return make_undefined(env);
}

/* quantMatmulPath() -> 'portable' | 'avx2' | 'avx512bw' | 'avx512vnni' */
static napi_value js_quant_path(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value s;
  napi_create_string_utf8(env, path_names[choose_path()], NAPI_AUTO_LENGTH, &s);
  return s;
}

const export_t quant_matmul_exports[] = {
    {"matmulQuantized", js_matmul_quantized}, {"quantMatmulPath", js_quant_path}, {NULL, NULL}};
