/* The quantized matrix product for many rows of x (a prompt's prefill): out (M, N) = x · Wᵀ with
 * W (N, K) in raw GGUF blocks (Q8_0 or Q4_0) and x already quantized to int8 blocks (quant.h).
 *
 * A per-row dot product (quant_matmul.c, what decode uses) reloads and unpacks every weight
 * block once per row of x and ends every pair of blocks with a horizontal step. Here the work is
 * done as a GEMM instead, on AVX-512 VNNI as below, or on AVX2 at half the width (further down):
 *
 *   1. Panels. The thread that owns 32 rows of W (two panels of 16) first rewrites their blocks
 *      into a scratch panel, block by block: 8 groups of 64 bytes, group g holding for each of the
 *      16 rows n the 4 weights k = 32b + 4g .. 32b + 4g + 3 as UNSIGNED bytes (byte 4n + j), then
 *      the 16 block scales as float. Q8_0 weights w become w + 128 (xor 0x80); Q4_0's nibbles q are
 *      already unsigned (w = q - 8). The panel is made once per call and used for all M rows.
 *   2. Micro-kernel. For up to 4 rows of x and the 2 panels, per block: vpdpbusd of each group
 *      (16 rows' unsigned bytes x 4 signed bytes of x broadcast) accumulates 16 int32 dots, one per
 *      row of W, with no horizontal reduction; the accumulator starts at -c * sum(x block)
 *      (c = 128 for Q8_0, 8 for Q4_0), which removes the unsigned offset exactly. Then
 *      acc_f += float(dot) * scale_w[16] * scale_x.
 *
 * The integer dots are exact, so results equal the per-row kernels up to float summation order.
 * Nothing is dequantized; the scratch is 2 x (K/32) x 576 bytes per thread. */
#include <stdlib.h>
#include <string.h>

#include "kernel_util.h"
#include "quant.h"

#define PANEL_ROWS 16
#define PANEL_BLOCK_BYTES (8 * 64 + PANEL_ROWS * 4) /* 8 groups of 16 x 4 bytes, 16 scales */
#define TASK_ROWS (2 * PANEL_ROWS)
#define TILE_M 4

#ifdef LLMTS_X86
#define TARGET_PANEL __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma")))

/* ------------------------------------------------------------------ panels */

TARGET_PANEL static void panel_scales(const uint8_t *w, int64_t row_bytes, int64_t block_bytes, int nrows, int64_t b,
                                      float *s) {
  for (int n = 0; n < PANEL_ROWS; n++) s[n] = n < nrows ? quant_scale_of(w + n * row_bytes + b * block_bytes) : 0.0f;
}

/* rows [0, nrows) of w (nrows <= 16; missing rows become zero weights with scale 0) */
TARGET_PANEL static void make_panel(const uint8_t *w, int type, int64_t row_bytes, int nrows, int64_t nb, uint8_t *dst) {
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32((int)row_bytes));
  const __mmask16 valid = nrows >= PANEL_ROWS ? (__mmask16)0xFFFF : (__mmask16)((1u << nrows) - 1);
  const __m512i zero = _mm512_setzero_si512();
  for (int64_t b = 0; b < nb; b++) {
    uint8_t *o = dst + b * PANEL_BLOCK_BYTES;
    if (type == TYPE_Q8_0) {
      const uint8_t *base = w + b * Q8_BYTES + 2;
      const __m512i flip = _mm512_set1_epi8((char)0x80);
      for (int g = 0; g < 8; g++) {
        __m512i v = _mm512_mask_i32gather_epi32(zero, valid, idx, base + 4 * g, 1);
        _mm512_store_si512((void *)(o + 64 * g), _mm512_xor_si512(v, flip));
      }
      panel_scales(w, row_bytes, Q8_BYTES, nrows, b, (float *)(o + 512));
    } else {
      /* byte j of a Q4_0 block: element j in the low nibble, element j + 16 in the high one */
      const uint8_t *base = w + b * Q4_BYTES + 2;
      const __m512i lo4 = _mm512_set1_epi8(0x0f);
      for (int h = 0; h < 4; h++) {
        __m512i v = _mm512_mask_i32gather_epi32(zero, valid, idx, base + 4 * h, 1);
        _mm512_store_si512((void *)(o + 64 * h), _mm512_and_si512(v, lo4));
        _mm512_store_si512((void *)(o + 64 * (h + 4)), _mm512_and_si512(_mm512_srli_epi32(v, 4), lo4));
      }
      panel_scales(w, row_bytes, Q4_BYTES, nrows, b, (float *)(o + 512));
    }
  }
}

/* ------------------------------------------------------------------ micro-kernel */

/* rows m0 .. m0+mr-1 of x against panels p0 (rows n0..n0+15) and p1 (n0+16..n0+31) */
TARGET_PANEL static inline __attribute__((always_inline)) void tile(const int mr, const quant_rows *x, int64_t m0,
                                                                    const uint8_t *p0, const uint8_t *p1, int32_t c,
                                                                    float *out, int64_t N, int64_t n0, __mmask16 v0,
                                                                    __mmask16 v1) {
  __m512 f0[TILE_M], f1[TILE_M];
  for (int m = 0; m < mr; m++) f0[m] = f1[m] = _mm512_setzero_ps();
  const int64_t nb = x->nb, K = x->K;
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *a0 = p0 + b * PANEL_BLOCK_BYTES, *a1 = p1 + b * PANEL_BLOCK_BYTES;
    __m512i i0[TILE_M], i1[TILE_M];
    for (int m = 0; m < mr; m++) i0[m] = i1[m] = _mm512_set1_epi32(-c * x->sum[(m0 + m) * nb + b]);
    for (int g = 0; g < 8; g++) {
      __m512i w0 = _mm512_load_si512((const void *)(a0 + 64 * g)), w1 = _mm512_load_si512((const void *)(a1 + 64 * g));
      for (int m = 0; m < mr; m++) {
        int32_t xv;
        memcpy(&xv, x->q + (m0 + m) * K + b * QK + 4 * g, 4);
        __m512i xb = _mm512_set1_epi32(xv);
        i0[m] = _mm512_dpbusd_epi32(i0[m], w0, xb);
        i1[m] = _mm512_dpbusd_epi32(i1[m], w1, xb);
      }
    }
    __m512 s0 = _mm512_load_ps((const float *)(a0 + 512)), s1 = _mm512_load_ps((const float *)(a1 + 512));
    for (int m = 0; m < mr; m++) {
      __m512 d = _mm512_set1_ps(x->d[(m0 + m) * nb + b]);
      f0[m] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(i0[m]), s0), d, f0[m]);
      f1[m] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(i1[m]), s1), d, f1[m]);
    }
  }
  for (int m = 0; m < mr; m++) {
    float *o = out + (m0 + m) * N + n0;
    _mm512_mask_storeu_ps(o, v0, f0[m]);
    if (v1) _mm512_mask_storeu_ps(o + PANEL_ROWS, v1, f1[m]);
  }
}

TARGET_PANEL static void tile_any(int mr, const quant_rows *x, int64_t m0, const uint8_t *p0, const uint8_t *p1,
                                  int32_t c, float *out, int64_t N, int64_t n0, __mmask16 v0, __mmask16 v1) {
  switch (mr) {
    case 4: tile(4, x, m0, p0, p1, c, out, N, n0, v0, v1); break;
    case 3: tile(3, x, m0, p0, p1, c, out, N, n0, v0, v1); break;
    case 2: tile(2, x, m0, p0, p1, c, out, N, n0, v0, v1); break;
    default: tile(1, x, m0, p0, p1, c, out, N, n0, v0, v1); break;
  }
}

/* ------------------------------------------------------------------ tasks */

typedef struct {
  const quant_rows *x;
  const uint8_t *w;
  int type;
  int64_t row_bytes, N;
  float *out;
  uint8_t *scratch;
  size_t per_thread;
} panel_ctx;

static __mmask16 rows_mask(int64_t rows) {
  return rows >= PANEL_ROWS ? (__mmask16)0xFFFF : rows <= 0 ? (__mmask16)0 : (__mmask16)((1u << rows) - 1);
}

TARGET_PANEL static void panel_task(void *p, int task, int thread) {
  const panel_ctx *c = (const panel_ctx *)p;
  const quant_rows *x = c->x;
  int64_t n0 = (int64_t)task * TASK_ROWS;
  int64_t rows0 = c->N - n0 < PANEL_ROWS ? c->N - n0 : PANEL_ROWS;
  int64_t rows1 = c->N - n0 - PANEL_ROWS;
  if (rows1 > PANEL_ROWS) rows1 = PANEL_ROWS;
  if (rows1 < 0) rows1 = 0;
  uint8_t *p0 = c->scratch + (size_t)thread * c->per_thread, *p1 = p0 + c->per_thread / 2;
  make_panel(c->w + n0 * c->row_bytes, c->type, c->row_bytes, (int)rows0, x->nb, p0);
  make_panel(c->w + (n0 + rows0) * c->row_bytes, c->type, c->row_bytes, (int)rows1, x->nb, p1);
  int32_t corr = c->type == TYPE_Q8_0 ? 128 : 8;
  for (int64_t m0 = 0; m0 < x->M; m0 += TILE_M) {
    int mr = x->M - m0 < TILE_M ? (int)(x->M - m0) : TILE_M;
    tile_any(mr, x, m0, p0, p1, corr, c->out, c->N, n0, rows_mask(rows0), rows_mask(rows1));
  }
}
#endif

/* ------------------------------------------------------------------ AVX2 panels
 *
 * The same GEMM for CPUs without VNNI (any AVX2 CPU, AVX-512 ones without VNNI too), at half the
 * width: panels of 8 rows of W, block by block 8 groups of 32 bytes (group g: for each row n the 4
 * weights k = 32b + 4g .. +3, byte 4n + j) and the 8 scales. maddubs multiplies unsigned by signed
 * bytes and adds adjacent pairs into int16:
 *   - Q4_0 keeps its nibbles q (0..15) unsigned: a pair is at most 2 x 15 x 127 = 3810, so all 8
 *     groups of a block add up in int16 (8 x 3810 < 32767) before one madd widens them to int32;
 *     the offset (w = q - 8) comes off as 8 * sum(x block), as above.
 *   - Q8_0 weights stay signed (w + 128 would overflow a pair): per group |w| x (x with w's sign),
 *     widened to int32 at once (a pair reaches 2 x 127 x 127).
 * Panels are made with 8x4 transposes of 32-bit words (AVX2 gathers are slow on Zen 3).
 * Tiles are 8 rows of W x up to 4 rows of x: 4 float accumulators, 4 integer ones, the group, the
 * broadcast x and a temporary in the 16 ymm registers. */
#ifdef LLMTS_X86
#define A2_ROWS 8
#define A2_BLOCK_BYTES (8 * 32 + A2_ROWS * 4)
#define A2_TASK_PANELS 2
#define A2_TILE_M 4
#define TARGET_A2 __attribute__((target("avx2,fma")))

/* 16 bytes of each of 8 rows (4 words h = 0..3 each) -> g[h] = word h of rows 0..7, in order: a
 * 4x4 transpose of 32-bit words in each 128-bit lane, rows 0-3 in the low lanes, 4-7 in the high */
TARGET_A2 static inline void transpose_8x4(const uint8_t *const r[A2_ROWS], int64_t off, __m256i g[4]) {
  __m256i a[4];
  for (int i = 0; i < 4; i++)
    a[i] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(r[i] + off))),
                                   _mm_loadu_si128((const __m128i *)(r[i + 4] + off)), 1);
  __m256i t0 = _mm256_unpacklo_epi32(a[0], a[1]), t1 = _mm256_unpackhi_epi32(a[0], a[1]);
  __m256i t2 = _mm256_unpacklo_epi32(a[2], a[3]), t3 = _mm256_unpackhi_epi32(a[2], a[3]);
  g[0] = _mm256_unpacklo_epi64(t0, t2);
  g[1] = _mm256_unpackhi_epi64(t0, t2);
  g[2] = _mm256_unpacklo_epi64(t1, t3);
  g[3] = _mm256_unpackhi_epi64(t1, t3);
}

/* rows [0, nrows) of w (nrows <= 8; missing rows read a zero block and get scale 0) */
TARGET_A2 static void a2_make_panel(const uint8_t *w, int type, int64_t row_bytes, int nrows, int64_t nb, uint8_t *dst) {
  static const uint8_t zero_block[Q8_BYTES] = {0};
  const int64_t block_bytes = type == TYPE_Q8_0 ? Q8_BYTES : Q4_BYTES;
  const uint8_t *r[A2_ROWS];
  int64_t step[A2_ROWS];
  for (int n = 0; n < A2_ROWS; n++) {
    r[n] = n < nrows ? w + n * row_bytes : zero_block;
    step[n] = n < nrows ? block_bytes : 0;
  }
  const __m256i lo4 = _mm256_set1_epi8(0x0f);
  for (int64_t b = 0; b < nb; b++) {
    uint8_t *o = dst + b * A2_BLOCK_BYTES;
    const uint8_t *blk[A2_ROWS];
    for (int n = 0; n < A2_ROWS; n++) blk[n] = r[n] + b * step[n];
    __m256i g[4];
    if (type == TYPE_Q8_0) {
      for (int half = 0; half < 2; half++) {
        transpose_8x4(blk, 2 + 16 * half, g);
        for (int h = 0; h < 4; h++) _mm256_store_si256((__m256i *)(o + 32 * (4 * half + h)), g[h]);
      }
    } else {
      /* byte j of a Q4_0 block: element j in the low nibble, element j + 16 in the high one */
      transpose_8x4(blk, 2, g);
      for (int h = 0; h < 4; h++) {
        _mm256_store_si256((__m256i *)(o + 32 * h), _mm256_and_si256(g[h], lo4));
        _mm256_store_si256((__m256i *)(o + 32 * (h + 4)), _mm256_and_si256(_mm256_srli_epi32(g[h], 4), lo4));
      }
    }
    float *sc = (float *)(o + 256);
    for (int n = 0; n < A2_ROWS; n++) sc[n] = n < nrows ? quant_scale_of(blk[n]) : 0.0f;
  }
}

static inline int32_t load_i32(const int8_t *p) {
  int32_t v;
  memcpy(&v, p, 4);
  return v;
}

/* rows m0 .. m0+mr-1 of x against the panel p (rows n0 .. n0+7, the first `rows` of them real) */
TARGET_A2 static inline __attribute__((always_inline)) void a2_tile(const int mr, const int type, const quant_rows *x,
                                                                    int64_t m0, const uint8_t *p, float *out, int64_t N,
                                                                    int64_t n0, int rows) {
  __m256 f[A2_TILE_M];
  for (int m = 0; m < mr; m++) f[m] = _mm256_setzero_ps();
  const int64_t nb = x->nb, K = x->K;
  const __m256i ones = _mm256_set1_epi16(1);
  const int8_t *xq = x->q + m0 * K;
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *a = p + b * A2_BLOCK_BYTES;
    __m256i acc[A2_TILE_M];
    if (type == TYPE_Q4_0) {
      for (int m = 0; m < mr; m++) acc[m] = _mm256_setzero_si256();
      for (int g = 0; g < 8; g++) {
        __m256i wv = _mm256_load_si256((const __m256i *)(a + 32 * g));
        for (int m = 0; m < mr; m++)
          acc[m] = _mm256_add_epi16(acc[m], _mm256_maddubs_epi16(wv, _mm256_set1_epi32(load_i32(xq + m * K + b * QK + 4 * g))));
      }
      for (int m = 0; m < mr; m++)
        acc[m] = _mm256_sub_epi32(_mm256_madd_epi16(acc[m], ones), _mm256_set1_epi32(8 * x->sum[(m0 + m) * nb + b]));
    } else {
      for (int m = 0; m < mr; m++) acc[m] = _mm256_setzero_si256();
      for (int g = 0; g < 8; g++) {
        __m256i wv = _mm256_load_si256((const __m256i *)(a + 32 * g)), wa = _mm256_abs_epi8(wv);
        for (int m = 0; m < mr; m++) {
          __m256i xb = _mm256_sign_epi8(_mm256_set1_epi32(load_i32(xq + m * K + b * QK + 4 * g)), wv);
          acc[m] = _mm256_add_epi32(acc[m], _mm256_madd_epi16(_mm256_maddubs_epi16(wa, xb), ones));
        }
      }
    }
    __m256 sw = _mm256_load_ps((const float *)(a + 256));
    for (int m = 0; m < mr; m++)
      f[m] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc[m]), sw), _mm256_set1_ps(x->d[(m0 + m) * nb + b]), f[m]);
  }
  for (int m = 0; m < mr; m++) {
    float *o = out + (m0 + m) * N + n0;
    if (rows == A2_ROWS) {
      _mm256_storeu_ps(o, f[m]);
    } else {
      float t[A2_ROWS];
      _mm256_storeu_ps(t, f[m]);
      memcpy(o, t, (size_t)rows * sizeof(float));
    }
  }
}

#define A2_TILE_CASES(TYPE)                                                  \
  switch (mr) {                                                              \
    case 4: a2_tile(4, TYPE, x, m0, p, out, N, n0, rows); break;             \
    case 3: a2_tile(3, TYPE, x, m0, p, out, N, n0, rows); break;             \
    case 2: a2_tile(2, TYPE, x, m0, p, out, N, n0, rows); break;             \
    default: a2_tile(1, TYPE, x, m0, p, out, N, n0, rows); break;            \
  }

TARGET_A2 static void a2_tile_any(int mr, int type, const quant_rows *x, int64_t m0, const uint8_t *p, float *out,
                                  int64_t N, int64_t n0, int rows) {
  if (type == TYPE_Q4_0) {
    A2_TILE_CASES(TYPE_Q4_0)
  } else {
    A2_TILE_CASES(TYPE_Q8_0)
  }
}
#undef A2_TILE_CASES

TARGET_A2 static void a2_panel_task(void *p, int task, int thread) {
  const panel_ctx *c = (const panel_ctx *)p;
  const quant_rows *x = c->x;
  uint8_t *panel = c->scratch + (size_t)thread * c->per_thread;
  for (int k = 0; k < A2_TASK_PANELS; k++) {
    int64_t n0 = ((int64_t)task * A2_TASK_PANELS + k) * A2_ROWS;
    if (n0 >= c->N) break;
    int rows = c->N - n0 < A2_ROWS ? (int)(c->N - n0) : A2_ROWS;
    a2_make_panel(c->w + n0 * c->row_bytes, c->type, c->row_bytes, rows, x->nb, panel);
    for (int64_t m0 = 0; m0 < x->M; m0 += A2_TILE_M) {
      int mr = x->M - m0 < A2_TILE_M ? (int)(x->M - m0) : A2_TILE_M;
      a2_tile_any(mr, c->type, x, m0, panel, c->out, c->N, n0, rows);
    }
  }
}
#endif

/* ------------------------------------------------------------------ entry */

static uint8_t *scratch = NULL;
static size_t scratch_cap = 0;

int quant_panel_kind(void) {
#ifdef LLMTS_X86
  static int kind = -1;
  if (kind < 0) {
    __builtin_cpu_init();
    const char *no = getenv("LLMTS_NO_VNNI");
    int vnni = cpu_simd() == SIMD_AVX512 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni") &&
               !(no && strcmp(no, "1") == 0);
    kind = vnni ? PANEL_VNNI : cpu_simd() >= SIMD_AVX2 ? PANEL_AVX2 : PANEL_NONE;
  }
  return kind;
#else
  return PANEL_NONE;
#endif
}

int quant_panel_matmul(const quant_rows *x, const uint8_t *w, int type, float *out, int64_t N) {
#ifdef LLMTS_X86
  int kind = quant_panel_kind();
  if (kind == PANEL_NONE) return 0;
  size_t per_thread = kind == PANEL_VNNI ? 2 * (size_t)x->nb * PANEL_BLOCK_BYTES : (size_t)x->nb * A2_BLOCK_BYTES;
  size_t need = per_thread * (size_t)pool_size();
  if (need > scratch_cap) {
    free(scratch);
    scratch = (uint8_t *)aligned_alloc(64, (need + 63) & ~(size_t)63);
    scratch_cap = scratch ? need : 0;
    if (!scratch) return 0;
  }
  panel_ctx c = {x, w, type, x->nb * (type == TYPE_Q8_0 ? Q8_BYTES : Q4_BYTES), N, out, scratch, per_thread};
  if (kind == PANEL_VNNI) {
    pool_run(panel_task, &c, (int)((N + TASK_ROWS - 1) / TASK_ROWS));
  } else {
    const int64_t task_rows = A2_TASK_PANELS * A2_ROWS;
    pool_run(a2_panel_task, &c, (int)((N + task_rows - 1) / task_rows));
  }
  return 1;
#else
  (void)x, (void)w, (void)type, (void)out, (void)N;
  return 0;
#endif
}
