/* bf16 gemm: C (+)= op(A) op(B) with bfloat16 operands and float32 sums (bf16 mixed precision).
 *
 * Each operand is a float32 array, rounded to bf16 (round to nearest even, bf16.h) while it is
 * packed, or already bf16 bit patterns (uint16; the training loop's cached weights). The driver is
 * gemm.c's GotoBLAS scheme on uint16 panels: blocks of NC columns and KC depth, op(B) packed into
 * NR-wide slivers and op(A) into MR-tall slivers, tasks over (rows x columns) tiles.
 *
 * Kernels (one per process, chosen by bf16Kernel()):
 *   avx512bf16   12x32 tile, 24 zmm sums, vdpbf16ps (_mm512_dpbf16_ps): each 32-bit lane adds the
 *                products of one pair of consecutive k. Slivers hold pairs of k interleaved:
 *                A: [k/2][row][2], B: [k/2][column][2], depth padded to even with zeros.
 *   amx          32x32 tile as 2x2 AMX tiles (tdpbf16ps, 16x16 float32 each), A slivers packed as
 *                rows of 32 k ([k/32][row][32]), B as above (a tile row is 16 columns of a pair).
 *   emulate, emulate-amx
 *                portable C that computes what vdpbf16ps / tdpbf16ps compute (pairs of products
 *                added in that order, bf16 denormals read as zero, denormal sums flushed) on the
 *                same packed layouts: the driver and packing of both fast kernels are tested on
 *                every machine through them.
 * The two fast kernels are compiled with target attributes (the addon builds with default flags)
 * and are only taken when the CPU has the instructions (cpu.c) and a first run on a small problem
 * with edge tiles and several depth blocks agrees with a float64 product of the same bf16 inputs;
 * a kernel that disagrees or faults (SIGILL, caught during that first run) is disabled for the
 * process with a warning. NOTE: neither fast
 * kernel has run on real hardware yet (written on a machine without AVX512-BF16 or AMX). */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "cpu.h"
#include "napi_args.h"
#include "threadpool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#if defined(__x86_64__) && ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11) || (defined(__clang__) && __clang_major__ >= 12))
#define HAVE_BF16_TARGETS 1
#else
#define HAVE_BF16_TARGETS 0
#endif

#define KC 256 /* depth per block: a multiple of every kernel's depth step (2, 32) */
#define NC 4096
#define MC_SLIVERS 8
#define NT_SLIVERS 8
#define MAX_MR 32
#define MAX_NR 32

typedef struct {
  int M, N, K;
  const void *A;
  int a_bf16;
  long ars, acs; /* op(A)(i, k) = A[i * ars + k * acs] */
  const void *B;
  int b_bf16;
  long brs, bcs; /* op(B)(k, j) = B[k * brs + j * bcs] */
  float *C;
  long ldc;
  int accumulate;
} problem;


/* kc_padded = depth rounded up to the kernel's step; c gets the MR x NR tile (+= when accumulate) */
typedef void (*bf16_kernel_fn)(int kc_padded, const uint16_t *a, const uint16_t *b, float *c, long ldc, int accumulate);
typedef void (*pack_a_fn)(const problem *p, int i0, int p0, int kc, int kc_padded, int MR, uint16_t *dst);

typedef struct {
  const char *name;
  int mr, nr, kstep;
  pack_a_fn pack_a;
  bf16_kernel_fn kernel;
  void (*task_begin)(void); /* per compute task, on the thread that runs it (AMX tile config) */
  void (*task_end)(void);
} kernel_desc;

/* ------------------------------------------------------------------ packing */

/* n values of an operand, from start with the given stride, as bf16 patterns (float32 rounded) */
static void load_line(const void *p, int is_bf16, long start, long stride, int n, uint16_t *out) {
  if (is_bf16) {
    const uint16_t *h = (const uint16_t *)p + start;
    if (stride == 1) memcpy(out, h, (size_t)n * sizeof(uint16_t));
    else
      for (int i = 0; i < n; i++) out[i] = h[i * stride];
    return;
  }
  const uint32_t *bits = (const uint32_t *)p + start; /* float32 patterns */
  if (stride == 1)
    for (int i = 0; i < n; i++) out[i] = bf16_from_bits(bits[i]); /* vectorised */
  else
    for (int i = 0; i < n; i++) out[i] = bf16_from_bits(bits[i * stride]);
}

/* A sliver of L lines (rows of op(A), or columns of op(B)) as pairs of k:
 * dst[(q * L + l) * 2 + t] = value(line l, depth 2q + t), zero past `lines` and past kc.
 * Line l, depth k is p[base + l * line_stride + k * k_stride]. */
static void pack_pairs(const void *p, int is_bf16, long base, long line_stride, long k_stride, int lines, int L, int kc,
                       int kc_padded, uint16_t *dst) {
  uint16_t tmp[KC + MAX_NR];
  if (lines < L || kc < kc_padded) memset(dst, 0, (size_t)kc_padded * L * sizeof(uint16_t));
  if (k_stride == 1 || line_stride != 1) {
    /* one line at a time, its pairs adjacent in the source */
    for (int l = 0; l < lines; l++) {
      load_line(p, is_bf16, base + l * line_stride, k_stride, kc, tmp);
      for (int k = 0; k < kc; k++) dst[((k >> 1) * L + l) * 2 + (k & 1)] = tmp[k];
    }
  } else {
    /* lines contiguous: one depth at a time */
    for (int k = 0; k < kc; k++) {
      load_line(p, is_bf16, base + k * k_stride, 1, lines, tmp);
      uint16_t *d = dst + (size_t)(k >> 1) * L * 2 + (k & 1);
      for (int l = 0; l < lines; l++) d[l * 2] = tmp[l];
    }
  }
}

/* A sliver as pairs: dst[(q * MR + r) * 2 + t] = op(A)(i0 + r, p0 + 2q + t) */
static void pack_a_pairs(const problem *p, int i0, int p0, int kc, int kc_padded, int MR, uint16_t *dst) {
  int rows = p->M - i0 < MR ? p->M - i0 : MR;
  pack_pairs(p->A, p->a_bf16, (long)i0 * p->ars + (long)p0 * p->acs, p->ars, p->acs, rows, MR, kc, kc_padded, dst);
}

/* B sliver as pairs: dst[(q * NR + c) * 2 + t] = op(B)(p0 + 2q + t, j0 + c) */
static void pack_b_pairs(const problem *p, int j0, int p0, int kc, int kc_padded, int NR, uint16_t *dst) {
  int cols = p->N - j0 < NR ? p->N - j0 : NR;
  pack_pairs(p->B, p->b_bf16, (long)j0 * p->bcs + (long)p0 * p->brs, p->bcs, p->brs, cols, NR, kc, kc_padded, dst);
}

/* A sliver as rows of 32 k: dst[(q * MR + r) * 32 + t] = op(A)(i0 + r, p0 + 32q + t), zero outside */
static void pack_a_rows32(const problem *p, int i0, int p0, int kc, int kc_padded, int MR, uint16_t *dst) {
  int rows = p->M - i0 < MR ? p->M - i0 : MR;
  uint16_t tmp[KC + MAX_MR];
  long base = (long)i0 * p->ars + (long)p0 * p->acs;
  if (rows < MR || kc < kc_padded) memset(dst, 0, (size_t)kc_padded * MR * sizeof(uint16_t));
  if (p->acs == 1 || p->ars != 1) {
    for (int r = 0; r < rows; r++) {
      load_line(p->A, p->a_bf16, base + r * p->ars, p->acs, kc, tmp);
      for (int q = 0; q * 32 < kc; q++) memcpy(dst + ((size_t)q * MR + r) * 32, tmp + q * 32, (size_t)(kc - q * 32 < 32 ? kc - q * 32 : 32) * sizeof(uint16_t));
    }
  } else {
    for (int k = 0; k < kc; k++) {
      load_line(p->A, p->a_bf16, base + k * p->acs, 1, rows, tmp);
      for (int r = 0; r < rows; r++) dst[((size_t)(k >> 5) * MR + r) * 32 + (k & 31)] = tmp[r];
    }
  }
}

/* ------------------------------------------------------------------ emulated kernels */

/* a bf16 pattern as float32, with denormals read as zero (as vdpbf16ps / tdpbf16ps read them) */
static inline float bf16_daz(uint16_t h) {
  if ((h & 0x7f80) == 0) h &= 0x8000;
  return float_from_bf16(h);
}

static inline float flush_denormal(float x) { return fabsf(x) < 1.17549435e-38f ? 0.0f * x : x; }

static void store_tile(const float *t, int NR, float *c, long ldc, int MR, int accumulate) {
  for (int r = 0; r < MR; r++)
    for (int j = 0; j < NR; j++) c[r * ldc + j] = accumulate ? c[r * ldc + j] + t[r * NR + j] : t[r * NR + j];
}

#define EMU_MR 12
#define EMU_NR 32

/* vdpbf16ps per lane: sum += a[2q+1] * b[2q+1]; sum += a[2q] * b[2q] (Intel's order), on the pairs layout */
static void kernel_emulate(int kc_padded, const uint16_t *a, const uint16_t *b, float *c, long ldc, int accumulate) {
  float t[EMU_MR * EMU_NR] = {0};
  for (int q = 0; q < kc_padded / 2; q++) {
    const uint16_t *aq = a + (size_t)q * EMU_MR * 2, *bq = b + (size_t)q * EMU_NR * 2;
    for (int r = 0; r < EMU_MR; r++) {
      float a0 = bf16_daz(aq[2 * r]), a1 = bf16_daz(aq[2 * r + 1]);
      for (int j = 0; j < EMU_NR; j++) {
        float s = flush_denormal(t[r * EMU_NR + j] + a1 * bf16_daz(bq[2 * j + 1]));
        t[r * EMU_NR + j] = flush_denormal(s + a0 * bf16_daz(bq[2 * j]));
      }
    }
  }
  store_tile(t, EMU_NR, c, ldc, EMU_MR, accumulate);
}

#define AMX_MR 32
#define AMX_NR 32

/* tdpbf16ps on the 2x2 tiles: sum += a[2q] * b[2q]; sum += a[2q+1] * b[2q+1], rows-of-32 A layout */
static void kernel_emulate_amx(int kc_padded, const uint16_t *a, const uint16_t *b, float *c, long ldc, int accumulate) {
  float t[AMX_MR * AMX_NR] = {0};
  for (int q = 0; q < kc_padded / 2; q++) {
    const uint16_t *bq = b + (size_t)q * AMX_NR * 2;
    for (int r = 0; r < AMX_MR; r++) {
      const uint16_t *ar = a + ((size_t)(q >> 4) * AMX_MR + r) * 32 + (q & 15) * 2;
      float a0 = bf16_daz(ar[0]), a1 = bf16_daz(ar[1]);
      for (int j = 0; j < AMX_NR; j++) {
        float s = flush_denormal(t[r * AMX_NR + j] + a0 * bf16_daz(bq[2 * j]));
        t[r * AMX_NR + j] = flush_denormal(s + a1 * bf16_daz(bq[2 * j + 1]));
      }
    }
  }
  store_tile(t, AMX_NR, c, ldc, AMX_MR, accumulate);
}

/* ------------------------------------------------------------------ AVX512-BF16 kernel */

#if HAVE_BF16_TARGETS
#define BF_MR 12
#define BF_NR 32
__attribute__((target("avx512f,avx512bf16"))) static void kernel_avx512bf16(int kc_padded, const uint16_t *a, const uint16_t *b,
                                                                            float *c, long ldc, int accumulate) {
  __m512 s0[BF_MR], s1[BF_MR];
#pragma GCC unroll 12
  for (int r = 0; r < BF_MR; r++) s0[r] = s1[r] = _mm512_setzero_ps();
  for (int q = 0; q < kc_padded / 2; q++) {
    __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)b);
    __m512bh b1 = (__m512bh)_mm512_loadu_si512((const void *)(b + 32));
#pragma GCC unroll 12
    for (int r = 0; r < BF_MR; r++) {
      int32_t pair;
      memcpy(&pair, a + 2 * r, sizeof pair);
      __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
      s0[r] = _mm512_dpbf16_ps(s0[r], av, b0);
      s1[r] = _mm512_dpbf16_ps(s1[r], av, b1);
    }
    a += BF_MR * 2;
    b += BF_NR * 2;
  }
#pragma GCC unroll 12
  for (int r = 0; r < BF_MR; r++) {
    float *cr = c + r * ldc;
    __m512 x0 = s0[r], x1 = s1[r];
    if (accumulate) {
      x0 = _mm512_add_ps(x0, _mm512_loadu_ps(cr));
      x1 = _mm512_add_ps(x1, _mm512_loadu_ps(cr + 16));
    }
    _mm512_storeu_ps(cr, x0);
    _mm512_storeu_ps(cr + 16, x1);
  }
}

/* ------------------------------------------------------------------ AMX-BF16 kernel */

typedef struct {
  uint8_t palette_id, start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} tile_config;

/* tiles 0-3: C (16 x 16 float32), 4-5: A (16 rows x 32 bf16), 6-7: B (16 pairs x 16 columns x 2) */
__attribute__((target("amx-tile"))) static void amx_begin(void) {
  tile_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int t = 0; t < 8; t++) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}

__attribute__((target("amx-tile"))) static void amx_end(void) { _tile_release(); }

__attribute__((target("amx-tile,amx-bf16"))) static void kernel_amx(int kc_padded, const uint16_t *a, const uint16_t *b, float *c,
                                                                    long ldc, int accumulate) {
  float t[AMX_MR * AMX_NR] __attribute__((aligned(64)));
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int q = 0; q < kc_padded / 32; q++) {
    const uint16_t *aq = a + (size_t)q * AMX_MR * 32; /* 32 rows of 32 k: 64 bytes a row */
    const uint16_t *bq = b + (size_t)q * 16 * AMX_NR * 2; /* 16 pairs of 32 columns: 128 bytes a pair */
    _tile_loadd(4, aq, 64);
    _tile_loadd(5, aq + 16 * 32, 64);
    _tile_loadd(6, bq, 128);
    _tile_loadd(7, bq + 32, 128);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, t, AMX_NR * 4);
  _tile_stored(1, t + 16, AMX_NR * 4);
  _tile_stored(2, t + 16 * AMX_NR, AMX_NR * 4);
  _tile_stored(3, t + 16 * AMX_NR + 16, AMX_NR * 4);
  store_tile(t, AMX_NR, c, ldc, AMX_MR, accumulate);
}
#endif

static const kernel_desc EMULATE = {"emulate", EMU_MR, EMU_NR, 2, pack_a_pairs, kernel_emulate, NULL, NULL};
static const kernel_desc EMULATE_AMX = {"emulate-amx", AMX_MR, AMX_NR, 32, pack_a_rows32, kernel_emulate_amx, NULL, NULL};
#if HAVE_BF16_TARGETS
static const kernel_desc AVX512BF16 = {"avx512bf16", BF_MR, BF_NR, 2, pack_a_pairs, kernel_avx512bf16, NULL, NULL};
static const kernel_desc AMX = {"amx", AMX_MR, AMX_NR, 32, pack_a_rows32, kernel_amx, amx_begin, amx_end};
#endif

/* ------------------------------------------------------------------ blocked driver */

static uint16_t *packed_a = NULL, *packed_b = NULL;
static size_t packed_a_cap = 0, packed_b_cap = 0;

static uint16_t *grow(uint16_t **buf, size_t *cap, size_t n) {
  if (n > *cap) {
    free(*buf);
    size_t bytes = ((n * sizeof(uint16_t) + 63) / 64) * 64;
    *buf = (uint16_t *)aligned_alloc(64, bytes);
    *cap = *buf ? n : 0;
  }
  return *buf;
}

typedef struct {
  const problem *p;
  const kernel_desc *kd;
  int j0, p0, kc, kc_padded;
  int a_slivers, b_slivers;
  int m_tasks;
  int accumulate; /* the caller's for the first depth block, 1 afterwards */
} block_ctx;

static void pack_task(void *vctx, int task, int thread) {
  (void)thread;
  block_ctx *x = (block_ctx *)vctx;
  int a_groups = (x->a_slivers + 3) / 4;
  size_t a_size = (size_t)x->kd->mr * x->kc_padded, b_size = (size_t)x->kd->nr * x->kc_padded;
  if (task < a_groups) {
    for (int s = task * 4; s < x->a_slivers && s < task * 4 + 4; s++)
      x->kd->pack_a(x->p, s * x->kd->mr, x->p0, x->kc, x->kc_padded, x->kd->mr, packed_a + s * a_size);
  } else {
    int g = task - a_groups;
    for (int s = g * 4; s < x->b_slivers && s < g * 4 + 4; s++)
      pack_b_pairs(x->p, x->j0 + s * x->kd->nr, x->p0, x->kc, x->kc_padded, x->kd->nr, packed_b + s * b_size);
  }
}

static void compute_task(void *vctx, int task, int thread) {
  (void)thread;
  block_ctx *x = (block_ctx *)vctx;
  const problem *p = x->p;
  const kernel_desc *kd = x->kd;
  int MR = kd->mr, NR = kd->nr;
  int mt = task % x->m_tasks, nt = task / x->m_tasks;
  int s_lo = mt * MC_SLIVERS, s_hi = s_lo + MC_SLIVERS < x->a_slivers ? s_lo + MC_SLIVERS : x->a_slivers;
  int t_lo = nt * NT_SLIVERS, t_hi = t_lo + NT_SLIVERS < x->b_slivers ? t_lo + NT_SLIVERS : x->b_slivers;
  float tile[MAX_MR * MAX_NR] __attribute__((aligned(64)));
  if (kd->task_begin) kd->task_begin();
  for (int t = t_lo; t < t_hi; t++) {
    int j = x->j0 + t * NR;
    int cols = p->N - j < NR ? p->N - j : NR;
    const uint16_t *bp = packed_b + (size_t)t * NR * x->kc_padded;
    for (int s = s_lo; s < s_hi; s++) {
      int i = s * MR;
      int rows = p->M - i < MR ? p->M - i : MR;
      const uint16_t *ap = packed_a + (size_t)s * MR * x->kc_padded;
      float *c = p->C + (long)i * p->ldc + j;
      if (rows == MR && cols == NR) {
        kd->kernel(x->kc_padded, ap, bp, c, p->ldc, x->accumulate);
      } else {
        kd->kernel(x->kc_padded, ap, bp, tile, NR, 0);
        for (int r = 0; r < rows; r++)
          for (int q = 0; q < cols; q++) c[r * p->ldc + q] = x->accumulate ? c[r * p->ldc + q] + tile[r * NR + q] : tile[r * NR + q];
      }
    }
  }
  if (kd->task_end) kd->task_end();
}

/* serial: run every task on the calling thread (the self-check, which guards against faults) */
static void gemm_bf16_blocked(const problem *p, const kernel_desc *kd, int serial) {
  if (p->M == 0 || p->N == 0) return;
  if (p->K == 0) {
    if (!p->accumulate)
      for (int i = 0; i < p->M; i++) memset(p->C + (long)i * p->ldc, 0, (size_t)p->N * sizeof(float));
    return;
  }
  int MR = kd->mr, NR = kd->nr;
  int a_slivers = (p->M + MR - 1) / MR;
  if (!grow(&packed_a, &packed_a_cap, (size_t)a_slivers * MR * KC)) abort();
  for (int j0 = 0; j0 < p->N; j0 += NC) {
    int nc = p->N - j0 < NC ? p->N - j0 : NC;
    int b_slivers = (nc + NR - 1) / NR;
    if (!grow(&packed_b, &packed_b_cap, (size_t)b_slivers * NR * KC)) abort();
    for (int p0 = 0; p0 < p->K; p0 += KC) {
      int kc = p->K - p0 < KC ? p->K - p0 : KC;
      block_ctx x = {p, kd, j0, p0, kc, (kc + kd->kstep - 1) / kd->kstep * kd->kstep, a_slivers, b_slivers, 0,
                     p0 == 0 ? p->accumulate : 1};
      int pack_tasks = (a_slivers + 3) / 4 + (b_slivers + 3) / 4;
      x.m_tasks = (a_slivers + MC_SLIVERS - 1) / MC_SLIVERS;
      int compute_tasks = x.m_tasks * ((b_slivers + NT_SLIVERS - 1) / NT_SLIVERS);
      if (serial) {
        for (int t = 0; t < pack_tasks; t++) pack_task(&x, t, 0);
        for (int t = 0; t < compute_tasks; t++) compute_task(&x, t, 0);
      } else {
        pool_run(pack_task, &x, pack_tasks);
        pool_run(compute_task, &x, compute_tasks);
      }
    }
  }
}

/* ------------------------------------------------------------------ kernel choice and self-check */

static const kernel_desc *active = &EMULATE;
static char warning[256] = "";

static sigjmp_buf fault_jump;
static void on_fault(int sig) { siglongjmp(fault_jump, sig); }

/* One product of random inputs (f32 A, bf16 B or the reverse) against float64 sums of the same
 * bf16 values: 0 when every element is within 1e-6 * K * sum|a b| (summation order only; a wrong
 * layout is off by O(1)), else 1 with *worst set; -1 when it raised SIGILL. */
static int check_once(const kernel_desc *kd, int M, int N, int K, int transA, int transB, int accumulate, double *worst) {
  size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
  float *A = malloc(na * sizeof(float)), *C = malloc(nc * sizeof(float)), *C0 = malloc(nc * sizeof(float));
  uint16_t *B = malloc(nb * sizeof(uint16_t));
  if (!A || !B || !C || !C0) abort();
  uint32_t s = 12345u + (uint32_t)(M * 31 + N * 7 + K);
  for (size_t i = 0; i < na; i++) {
    s = s * 1664525u + 1013904223u;
    A[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 4.0f;
  }
  for (size_t i = 0; i < nb; i++) {
    s = s * 1664525u + 1013904223u;
    B[i] = bf16_from_float(((float)(s >> 8) / 16777216.0f - 0.5f) * 2.0f);
  }
  for (size_t i = 0; i < nc; i++) C[i] = C0[i] = accumulate ? (float)(i % 7) - 3.0f : NAN;
  problem p = {M, N, K, A, 0, transA ? 1 : K, transA ? M : 1, B, 1, transB ? 1 : N, transB ? K : 1, C, N, accumulate};

  /* an instruction the CPU lacks raises SIGILL on this thread: caught for the length of this run
   * only (the serial driver runs every task here), then the previous handler is back */
  struct sigaction act, old_ill;
  memset(&act, 0, sizeof act);
  act.sa_handler = on_fault;
  sigemptyset(&act.sa_mask);
  sigaction(SIGILL, &act, &old_ill);
  int faulted = sigsetjmp(fault_jump, 1);
  if (!faulted) gemm_bf16_blocked(&p, kd, 1);
  sigaction(SIGILL, &old_ill, NULL);

  int bad = 0;
  if (faulted) bad = -1;
  else
    for (int i = 0; i < M && !bad; i++)
      for (int j = 0; j < N; j++) {
        double sum = accumulate ? C0[i * N + j] : 0.0, mag = 0.0;
        for (int k = 0; k < K; k++) {
          double a = float_from_bf16(bf16_from_float(A[transA ? (long)k * M + i : (long)i * K + k]));
          double b = float_from_bf16(B[transB ? (long)j * K + k : (long)k * N + j]);
          sum += a * b;
          mag += fabs(a * b);
        }
        double err = fabs(C[i * N + j] - sum) / (mag + 1e-30);
        if (!(err <= 1e-6 * K)) {
          *worst = err;
          bad = 1;
          break;
        }
      }
  free(A);
  free(B);
  free(C);
  free(C0);
  return bad;
}

/* edge tiles in both dimensions, odd depths (pair and 32-k padding), several depth blocks, all transposes */
static int self_check(const kernel_desc *kd, char *why, size_t why_len) {
  static const int cases[][6] = {{29, 45, 75, 0, 1, 0}, {37, 70, 300, 1, 0, 1}, {1, 33, 17, 0, 0, 0}, {45, 1, 530, 1, 1, 1}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const int *k = cases[c];
    double worst = 0;
    int r = check_once(kd, k[0], k[1], k[2], k[3], k[4], k[5], &worst);
    if (r < 0) {
      snprintf(why, why_len, "the %s kernel faulted (SIGILL) on its first run", kd->name);
      return 0;
    }
    if (r > 0) {
      snprintf(why, why_len, "the %s kernel disagrees with float64 sums of the same bf16 inputs (M %d N %d K %d: relative error %.3g)",
               kd->name, k[0], k[1], k[2], worst);
      return 0;
    }
  }
  return 1;
}

/* The kernel for a request: the emulations as asked; otherwise the fast kernels the CPU has, best
 * first, that pass the self-check. 'force-amx' / 'force-avx512bf16' (tests) run the self-check
 * whatever the CPU reports: where the instructions are missing it must catch the SIGILL. */
static const kernel_desc *choose(const char *request) {
  warning[0] = '\0';
  if (strcmp(request, "emulate") == 0) return &EMULATE;
  if (strcmp(request, "emulate-amx") == 0) return &EMULATE_AMX;
#if HAVE_BF16_TARGETS
  int force = strncmp(request, "force-", 6) == 0;
  const char *want = force ? request + 6 : request;
  const kernel_desc *candidates[2];
  int n = 0;
  int want_amx = strcmp(want, "auto") == 0 || strcmp(want, "amx") == 0;
  int want_avx = strcmp(want, "auto") == 0 || strcmp(want, "avx512bf16") == 0;
  if (want_amx && (force || cpu_has_amx_bf16())) candidates[n++] = &AMX;
  if (want_avx && (force || cpu_has_avx512bf16())) candidates[n++] = &AVX512BF16;
  for (int i = 0; i < n; i++) {
    char why[200];
    if (self_check(candidates[i], why, sizeof why)) return candidates[i];
    size_t used = strlen(warning);
    snprintf(warning + used, sizeof warning - used, "%s%s; it is disabled for this process", used ? "; " : "", why);
  }
#endif
  return NULL;
}

/* ------------------------------------------------------------------ exports */

/* bf16Kernel(request: 'auto' | 'avx512bf16' | 'amx' | 'emulate' | 'emulate-amx' | 'force-amx' | 'force-avx512bf16')
 *   -> { kernel: name or 'none', warning: string | null, avx512bf16: bool, amx: bool }
 * Sets the kernel gemmBf16 runs ('none' leaves the emulation in place). */
static napi_value js_bf16Kernel(napi_env env, napi_callback_info info) {
  args_t a;
  if (!args_init(&a, env, info, 1, "bf16Kernel")) return NULL;
  char request[32];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, a.argv[0], request, sizeof request, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "llmts native bf16Kernel: argument 0 must be a string");
    return NULL;
  }
  const kernel_desc *k = choose(request);
  active = k ? k : &EMULATE;
  napi_value obj, v;
  napi_create_object(env, &obj);
  napi_create_string_utf8(env, k ? k->name : "none", NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, obj, "kernel", v);
  if (warning[0]) napi_create_string_utf8(env, warning, NAPI_AUTO_LENGTH, &v);
  else napi_get_null(env, &v);
  napi_set_named_property(env, obj, "warning", v);
  napi_get_boolean(env, cpu_has_avx512bf16() != 0, &v);
  napi_set_named_property(env, obj, "avx512bf16", v);
  napi_get_boolean(env, cpu_has_amx_bf16() != 0, &v);
  napi_set_named_property(env, obj, "amx", v);
  return obj;
}

/* gemmBf16(a, b, c, M, N, K, transA, transB, beta): a, b Float32Array or Uint16Array (bf16) */
static napi_value js_gemmBf16(napi_env env, napi_callback_info info) {
  args_t a;
  if (!args_init(&a, env, info, 9, "gemmBf16")) return NULL;
  int64_t M = arg_int(&a, 3), N = arg_int(&a, 4), K = arg_int(&a, 5);
  int transA = arg_bool(&a, 6), transB = arg_bool(&a, 7);
  double beta = arg_f64(&a, 8);
  if (a.failed) return NULL;
  if (M < 0 || N < 0 || K < 0 || M > INT32_MAX || N > INT32_MAX || K > INT32_MAX) {
    napi_throw_range_error(env, NULL, "llmts native gemmBf16: negative or too large size");
    return NULL;
  }
  if (beta != 0.0 && beta != 1.0) {
    napi_throw_range_error(env, NULL, "llmts native gemmBf16: beta must be 0 or 1");
    return NULL;
  }
  int a_bf16 = 0, b_bf16 = 0;
  const void *A = arg_f32_or_bf16(&a, 0, (size_t)(M * K), &a_bf16);
  const void *B = arg_f32_or_bf16(&a, 1, (size_t)(K * N), &b_bf16);
  float *C = arg_f32(&a, 2, (size_t)(M * N), 0);
  if (a.failed) return NULL;
  problem p = {(int)M, (int)N, (int)K,
               A, a_bf16, transA ? 1 : K, transA ? M : 1,
               B, b_bf16, transB ? 1 : N, transB ? K : 1,
               C, N, beta == 1.0};
  gemm_bf16_blocked(&p, active, 0);
  return make_undefined(env);
}

const export_t gemm_bf16_exports[] = {{"gemmBf16", js_gemmBf16}, {"bf16Kernel", js_bf16Kernel}, {NULL, NULL}};
