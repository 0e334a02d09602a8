/* matmulQuantizedTransposed: dx (M, K) += dy (M, N) · W, W (N, K) in raw GGUF blocks (Q8_0 or
 * Q4_0, as matmulQuantized reads them): the input gradient of out = x · Wᵀ through a frozen
 * quantized weight (QLoRA's backward pass). dy is float and stays float; the product is exact up
 * to float summation order against the float GEMM on the dequantized weight.
 *
 * A float GEMM whose right-hand matrix is widened from its blocks one tile at a time:
 *
 *   tasks:  (MC rows of dx) x (one strip of KS = 64 columns of dx, two blocks). A task owns its
 *           piece of dx, so no two tasks write the same element and the result does not depend
 *           on the thread count.
 *   tiles:  for every chunk of NCH rows of W, the task widens W[n0 .. n0+NCH, strip] (NCH x 64
 *           floats, 32 KiB, the thread's scratch) into panels NR columns wide, row after row,
 *           then runs the micro-kernel over its rows of dx: MR rows x NR columns of accumulators,
 *           per row n of the tile one broadcast of dy[m, n] per row and two vector loads of the
 *           panel, and adds them into dx at the end of the chunk.
 *
 * Nothing beyond a tile is ever dequantized (the scratch is NCH x 64 floats per thread). The
 * micro-kernel is one source written with GCC vector types, compiled three times: AVX-512
 * (16 floats a vector, 8 x 32 tile), AVX2 + FMA (8 floats, 6 x 16) and portable (4 floats,
 * 4 x 8: SSE on x86, NEON on ARM); cpu_simd() picks (LLMTS_SIMD lowers it). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_util.h"
#include "quant.h"

#define KS 64   /* columns of dx per task: two blocks */
#define NCH 128 /* rows of W widened per tile */
#define MC 96   /* rows of dx per task (a multiple of every MR) */

/* ------------------------------------------------------------------ widening */

/* the 32 weights of one block as floats (exact: an fp16 scale times a small integer) */
static inline void widen_block(const uint8_t *blk, int type, float *v) {
  float d = quant_scale_of(blk);
  if (type == TYPE_Q8_0) {
    const int8_t *q = (const int8_t *)(blk + 2);
    for (int j = 0; j < QK; j++) v[j] = d * (float)q[j];
  } else {
    const uint8_t *qs = blk + 2;
    for (int j = 0; j < QK / 2; j++) {
      v[j] = d * (float)((int)(qs[j] & 0x0f) - 8);
      v[j + QK / 2] = d * (float)((int)(qs[j] >> 4) - 8);
    }
  }
}

/* W[n0 .. n0+nch, block b0 .. b0+nblk) into panels of nr columns: column c of row r lands at
 * dst[(c / nr) * nch * nr + r * nr + c % nr] */
static void widen_tile(const uint8_t *w, int type, int64_t row_bytes, int64_t n0, int64_t nch, int64_t b0, int nblk, int nr,
                       float *dst) {
  const int64_t bb = type == TYPE_Q8_0 ? Q8_BYTES : Q4_BYTES;
  float v[QK];
  for (int64_t r = 0; r < nch; r++) {
    const uint8_t *row = w + (n0 + r) * row_bytes + b0 * bb;
    for (int bi = 0; bi < nblk; bi++) {
      widen_block(row + bi * bb, type, v);
      for (int c = 0; c < QK; c += nr) {
        int col = bi * QK + c;
        memcpy(dst + (int64_t)(col / nr) * nch * nr + r * nr, v + c, (size_t)nr * sizeof(float));
      }
    }
  }
}

/* ------------------------------------------------------------------ micro-kernels
 * c (mr rows, stride ldc; 2 * VW columns) += a (mr rows, stride lda; nch columns) · b (nch rows of
 * 2 * VW floats, one panel). mr == MR runs the register tile; fewer rows (the last tile) the same
 * loop with a runtime bound. */

#define DEF_UKERNEL(SUFFIX, TARGET, VT, VW, MR)                                                                  \
  TARGET static void ukernel_##SUFFIX(int64_t nch, const float *a, int64_t lda, const float *b, float *c,      \
                                      int64_t ldc, int mr) {                                                     \
    VT acc[MR][2];                                                                                               \
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = (VT){0};                                                \
    if (mr == MR) {                                                                                              \
      for (int64_t n = 0; n < nch; n++) {                                                                        \
        VT b0, b1;                                                                                               \
        memcpy(&b0, b + n * 2 * VW, sizeof b0);                                                                  \
        memcpy(&b1, b + n * 2 * VW + VW, sizeof b1);                                                             \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                                                  \
          float s = a[i * lda + n];                                                                              \
          acc[i][0] += s * b0;                                                                                   \
          acc[i][1] += s * b1;                                                                                   \
        }                                                                                                        \
      }                                                                                                          \
    } else {                                                                                                     \
      for (int64_t n = 0; n < nch; n++) {                                                                        \
        VT b0, b1;                                                                                               \
        memcpy(&b0, b + n * 2 * VW, sizeof b0);                                                                  \
        memcpy(&b1, b + n * 2 * VW + VW, sizeof b1);                                                             \
        for (int i = 0; i < mr; i++) {                                                                           \
          float s = a[i * lda + n];                                                                              \
          acc[i][0] += s * b0;                                                                                   \
          acc[i][1] += s * b1;                                                                                   \
        }                                                                                                        \
      }                                                                                                          \
    }                                                                                                            \
    for (int i = 0; i < mr; i++) {                                                                               \
      for (int h = 0; h < 2; h++) {                                                                              \
        VT x;                                                                                                    \
        memcpy(&x, c + i * ldc + h * VW, sizeof x);                                                              \
        x += acc[i][h];                                                                                          \
        memcpy(c + i * ldc + h * VW, &x, sizeof x);                                                              \
      }                                                                                                          \
    }                                                                                                            \
  }

typedef float v4f __attribute__((vector_size(16)));
DEF_UKERNEL(portable, , v4f, 4, 4)

#ifdef LLMTS_X86
typedef float v8f __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));
DEF_UKERNEL(avx2, TARGET_AVX2, v8f, 8, 6)
DEF_UKERNEL(avx512, TARGET_AVX512, v16f, 16, 8)
#endif

typedef void (*ukernel_fn)(int64_t nch, const float *a, int64_t lda, const float *b, float *c, int64_t ldc, int mr);

typedef struct {
  ukernel_fn kernel;
  int mr, nr;
} kernel_desc;

static kernel_desc pick_kernel(void) {
#ifdef LLMTS_X86
  simd_level lvl = cpu_simd();
  if (lvl == SIMD_AVX512) return (kernel_desc){ukernel_avx512, 8, 32};
  if (lvl == SIMD_AVX2) return (kernel_desc){ukernel_avx2, 6, 16};
#endif
  return (kernel_desc){ukernel_portable, 4, 8};
}

/* ------------------------------------------------------------------ tasks */

static float *scratch = NULL; /* pool_size() tiles of NCH x KS floats, one per thread */
static size_t scratch_cap = 0;

typedef struct {
  kernel_desc k;
  const float *dy;
  const uint8_t *w;
  float *dx;
  int type;
  int64_t M, N, K, row_bytes, strips, mtasks;
} qmt_ctx;

static void qmt_task(void *p, int task, int thread) {
  const qmt_ctx *c = (const qmt_ctx *)p;
  int64_t strip = task % c->strips, mt = task / c->strips;
  int64_t k0 = strip * KS, ks = c->K - k0 < KS ? c->K - k0 : KS;
  int64_t m0 = mt * MC, m1 = m0 + MC < c->M ? m0 + MC : c->M;
  int nr = c->k.nr, mr = c->k.mr;
  int64_t panels = ks / nr;
  float *tile = scratch + (size_t)thread * NCH * KS;
  for (int64_t n0 = 0; n0 < c->N; n0 += NCH) {
    int64_t nch = c->N - n0 < NCH ? c->N - n0 : NCH;
    widen_tile(c->w, c->type, c->row_bytes, n0, nch, k0 / QK, (int)(ks / QK), nr, tile);
    for (int64_t m = m0; m < m1; m += mr) {
      int rows = m1 - m < mr ? (int)(m1 - m) : mr;
      for (int64_t pn = 0; pn < panels; pn++)
        c->k.kernel(nch, c->dy + m * c->N + n0, c->N, tile + pn * nch * nr, c->dx + m * c->K + k0 + pn * nr, c->K, rows);
    }
  }
}

/* matmulQuantizedTransposed(dy, w, type, dx, M, N, K); type: 8 (Q8_0) or 2 (Q4_0) */
static napi_value js_matmul_quantized_t(napi_env env, napi_callback_info info) {
  static const char *fn = "matmulQuantizedTransposed";
  args_t a;
  if (!args_init(&a, env, info, 7, fn)) return NULL;
  int64_t type = arg_int(&a, 2);
  int64_t M = size_arg(&a, 4, fn, "M"), N = size_arg(&a, 5, fn, "N"), K = size_arg(&a, 6, fn, "K");
  if (a.failed) return NULL;
  if (type != TYPE_Q8_0 && type != TYPE_Q4_0) {
    napi_throw_type_error(env, NULL, "llmts native matmulQuantizedTransposed: type must be 8 (Q8_0) or 2 (Q4_0)");
    return NULL;
  }
  if (K % QK != 0) {
    napi_throw_range_error(env, NULL, "llmts native matmulQuantizedTransposed: K must be a multiple of 32");
    return NULL;
  }
  int64_t row_bytes = (K / QK) * (type == TYPE_Q8_0 ? Q8_BYTES : Q4_BYTES);
  int64_t mn = size_mul(&a, fn, M, N), mk = size_mul(&a, fn, M, K), wbytes = size_mul(&a, fn, N, row_bytes);
  if (a.failed) return NULL;
  float *dy = arg_f32(&a, 0, (size_t)mn, 0);
  uint8_t *w = arg_u8(&a, 1, (size_t)wbytes);
  float *dx = arg_f32(&a, 3, (size_t)mk, 0);
  if (a.failed) return NULL;
  if (M == 0 || N == 0 || K == 0) return make_undefined(env);
  quant_init_f16();
  size_t need = (size_t)pool_size() * NCH * KS;
  if (need > scratch_cap) {
    float *s = (float *)realloc(scratch, need * sizeof(float));
    if (!s) {
      napi_throw_error(env, NULL, "llmts native matmulQuantizedTransposed: out of memory");
      return NULL;
    }
    scratch = s;
    scratch_cap = need;
  }
  qmt_ctx c = {pick_kernel(), dy, w, dx, (int)type, M, N, K, row_bytes, (K + KS - 1) / KS, (M + MC - 1) / MC};
  int64_t tasks = c.strips * c.mtasks;
  if (M * N * K < 65536) { /* a pool round trip costs more than the product */
    for (int64_t t = 0; t < tasks; t++) qmt_task(&c, (int)t, 0);
  } else {
    pool_run(qmt_task, &c, (int)tasks);
  }
  return make_undefined(env);
}

const export_t quant_matmul_t_exports[] = {{"matmulQuantizedTransposed", js_matmul_quantized_t}, {NULL, NULL}};
