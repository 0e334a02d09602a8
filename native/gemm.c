/* sgemm: C = alpha * op(A) op(B) + beta * C, row-major, batched and strided.
 *
 * Design (the GotoBLAS/BLIS scheme):
 *   for each block of NC columns and KC depth:
 *     pack op(B) into NR-wide slivers and op(A) into MR-tall slivers (in parallel); packing
 *     absorbs transposes and strides, so one micro-kernel serves all four cases;
 *     tasks over (MC rows x NT columns) tiles run the register-blocked micro-kernel.
 * Micro-kernels: AVX-512 8x32 (16 zmm accumulators), AVX2+FMA 6x16 (12 ymm accumulators),
 * portable C 4x16 (auto-vectorised). Matrix-vector shapes (M == 1 or N == 1) take dedicated
 * streaming kernels, since packing would cost as much as the product.
 * Packing buffers are static and grown on demand (gemm is called from the JS thread only). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "napi_args.h"
#include "threadpool.h"
#include "dot_f32.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define KC 256
#define MC_SLIVERS 12 /* rows per compute task: 12 slivers (96 rows for AVX-512) */
#define NT_SLIVERS 8  /* columns per compute task: 8 slivers (256 columns for AVX-512) */
#define NC 4096

typedef struct {
  int M, N, K;
  const float *A;
  long ars, acs; /* op(A)(i, k) = A[i * ars + k * acs] */
  const float *B;
  long brs, bcs; /* op(B)(k, j) = B[k * brs + j * bcs] */
  float *C;
  long ldc;
  float alpha, beta;
} problem;

typedef void (*ukernel_fn)(int kc, const float *a, const float *b, float *c, long ldc, float alpha, float beta);

/* ------------------------------------------------------------------ micro-kernels */

#define PORT_MR 4
#define PORT_NR 8
/* GCC/Clang vector extensions: 4 floats, compiled to SSE on x86 and NEON on ARM */
typedef float v4f __attribute__((vector_size(16)));

static inline v4f load4(const float *p) {
  v4f v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void store4(float *p, v4f v) { memcpy(p, &v, sizeof v); }

static void ukernel_portable(int kc, const float *a, const float *b, float *c, long ldc, float alpha, float beta) {
  v4f c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0};
  for (int k = 0; k < kc; k++) {
    v4f b0 = load4(b), b1 = load4(b + 4);
    v4f a0 = {a[0], a[0], a[0], a[0]}, a1 = {a[1], a[1], a[1], a[1]};
    v4f a2 = {a[2], a[2], a[2], a[2]}, a3 = {a[3], a[3], a[3], a[3]};
    c00 += a0 * b0; c01 += a0 * b1;
    c10 += a1 * b0; c11 += a1 * b1;
    c20 += a2 * b0; c21 += a2 * b1;
    c30 += a3 * b0; c31 += a3 * b1;
    a += PORT_MR;
    b += PORT_NR;
  }
  v4f rows[PORT_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
  for (int r = 0; r < PORT_MR; r++) {
    float *cr = c + r * ldc;
    for (int h = 0; h < 2; h++) {
      v4f x = rows[r][h] * alpha;
      if (beta != 0.0f) x += load4(cr + 4 * h) * beta;
      store4(cr + 4 * h, x);
    }
  }
}

#if defined(__x86_64__)
#define AVX2_MR 6
#define AVX2_NR 16
__attribute__((target("avx2,fma"))) static void ukernel_avx2(int kc, const float *a, const float *b, float *c, long ldc,
                                                             float alpha, float beta) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int k = 0; k < kc; k++) {
    __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    __m256 av;
    av = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);
    a += AVX2_MR;
    b += AVX2_NR;
  }
  __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  __m256 rows[AVX2_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int r = 0; r < AVX2_MR; r++) {
    float *cr = c + r * ldc;
    __m256 x0 = _mm256_mul_ps(va, rows[r][0]), x1 = _mm256_mul_ps(va, rows[r][1]);
    if (beta != 0.0f) {
      x0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), x0);
      x1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), x1);
    }
    _mm256_storeu_ps(cr, x0);
    _mm256_storeu_ps(cr + 8, x1);
  }
}

#define AVX512_MR 8
#define AVX512_NR 32
__attribute__((target("avx512f"))) static void ukernel_avx512(int kc, const float *a, const float *b, float *c, long ldc,
                                                              float alpha, float beta) {
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
  __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(), c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
  __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps(), c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
  __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
  for (int k = 0; k < kc; k++) {
    __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
    __m512 av;
    av = _mm512_set1_ps(a[0]); c00 = _mm512_fmadd_ps(av, b0, c00); c01 = _mm512_fmadd_ps(av, b1, c01);
    av = _mm512_set1_ps(a[1]); c10 = _mm512_fmadd_ps(av, b0, c10); c11 = _mm512_fmadd_ps(av, b1, c11);
    av = _mm512_set1_ps(a[2]); c20 = _mm512_fmadd_ps(av, b0, c20); c21 = _mm512_fmadd_ps(av, b1, c21);
    av = _mm512_set1_ps(a[3]); c30 = _mm512_fmadd_ps(av, b0, c30); c31 = _mm512_fmadd_ps(av, b1, c31);
    av = _mm512_set1_ps(a[4]); c40 = _mm512_fmadd_ps(av, b0, c40); c41 = _mm512_fmadd_ps(av, b1, c41);
    av = _mm512_set1_ps(a[5]); c50 = _mm512_fmadd_ps(av, b0, c50); c51 = _mm512_fmadd_ps(av, b1, c51);
    av = _mm512_set1_ps(a[6]); c60 = _mm512_fmadd_ps(av, b0, c60); c61 = _mm512_fmadd_ps(av, b1, c61);
    av = _mm512_set1_ps(a[7]); c70 = _mm512_fmadd_ps(av, b0, c70); c71 = _mm512_fmadd_ps(av, b1, c71);
    a += AVX512_MR;
    b += AVX512_NR;
  }
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  __m512 rows[AVX512_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                               {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
  for (int r = 0; r < AVX512_MR; r++) {
    float *cr = c + r * ldc;
    __m512 x0 = _mm512_mul_ps(va, rows[r][0]), x1 = _mm512_mul_ps(va, rows[r][1]);
    if (beta != 0.0f) {
      x0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr), x0);
      x1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr + 16), x1);
    }
    _mm512_storeu_ps(cr, x0);
    _mm512_storeu_ps(cr + 16, x1);
  }
}
#endif

typedef struct {
  int mr, nr;
  ukernel_fn kernel;
} kernel_desc;

static kernel_desc pick_kernel(void) {
  kernel_desc d = {PORT_MR, PORT_NR, ukernel_portable};
#if defined(__x86_64__)
  simd_level level = cpu_simd();
  if (level == SIMD_AVX512) {
    d.mr = AVX512_MR; d.nr = AVX512_NR; d.kernel = ukernel_avx512;
  } else if (level == SIMD_AVX2) {
    d.mr = AVX2_MR; d.nr = AVX2_NR; d.kernel = ukernel_avx2;
  }
#endif
  return d;
}

/* ------------------------------------------------------------------ packing */

/* Rows [i0, i0+mr) of op(A), depth [p0, p0+kc) -> dst[k * MR + r], zero-padded to MR rows. */
static void pack_a_sliver(const problem *p, int i0, int p0, int kc, int MR, float *dst) {
  int rows = p->M - i0 < MR ? p->M - i0 : MR;
  if (p->acs == 1) {
    for (int r = 0; r < rows; r++) {
      const float *src = p->A + (long)(i0 + r) * p->ars + p0;
      for (int k = 0; k < kc; k++) dst[k * MR + r] = src[k];
    }
  } else {
    for (int k = 0; k < kc; k++) {
      const float *src = p->A + (long)(p0 + k) * p->acs + (long)i0 * p->ars;
      for (int r = 0; r < rows; r++) dst[k * MR + r] = src[r * p->ars];
    }
  }
  if (rows < MR)
    for (int k = 0; k < kc; k++)
      for (int r = rows; r < MR; r++) dst[k * MR + r] = 0.0f;
}

/* Columns [j0, j0+nr) of op(B), depth [p0, p0+kc) -> dst[k * NR + c], zero-padded to NR columns. */
static void pack_b_sliver(const problem *p, int j0, int p0, int kc, int NR, float *dst) {
  int cols = p->N - j0 < NR ? p->N - j0 : NR;
  if (p->bcs == 1) {
    for (int k = 0; k < kc; k++) {
      const float *src = p->B + (long)(p0 + k) * p->brs + j0;
      float *d = dst + k * NR;
      memcpy(d, src, (size_t)cols * sizeof(float));
      for (int c = cols; c < NR; c++) d[c] = 0.0f;
    }
  } else {
    for (int c = 0; c < cols; c++) {
      const float *src = p->B + (long)(j0 + c) * p->bcs + (long)p0 * p->brs;
      for (int k = 0; k < kc; k++) dst[k * NR + c] = src[k * p->brs];
    }
    for (int k = 0; k < kc; k++)
      for (int c = cols; c < NR; c++) dst[k * NR + c] = 0.0f;
  }
}

/* ------------------------------------------------------------------ blocked driver */

static float *packed_a = NULL, *packed_b = NULL;
static size_t packed_a_cap = 0, packed_b_cap = 0;

static float *grow(float **buf, size_t *cap, size_t n) {
  if (n > *cap) {
    free(*buf);
    size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    *buf = (float *)aligned_alloc(64, bytes);
    *cap = *buf ? n : 0;
  }
  return *buf;
}

typedef struct {
  const problem *p;
  kernel_desc kd;
  int j0, nc, p0, kc;
  int a_slivers, b_slivers;
  int m_tasks, n_tasks;
  float beta; /* beta for this depth block: the caller's for the first, 1 afterwards */
} block_ctx;

static void pack_task(void *vctx, int task, int thread) {
  (void)thread;
  block_ctx *x = (block_ctx *)vctx;
  /* tasks [0, a_groups) pack A slivers in groups of 4, the rest pack B slivers in groups of 4 */
  int a_groups = (x->a_slivers + 3) / 4;
  if (task < a_groups) {
    for (int s = task * 4; s < x->a_slivers && s < task * 4 + 4; s++)
      pack_a_sliver(x->p, s * x->kd.mr, x->p0, x->kc, x->kd.mr, packed_a + (size_t)s * x->kd.mr * x->kc);
  } else {
    int g = task - a_groups;
    for (int s = g * 4; s < x->b_slivers && s < g * 4 + 4; s++)
      pack_b_sliver(x->p, x->j0 + s * x->kd.nr, x->p0, x->kc, x->kd.nr, packed_b + (size_t)s * x->kd.nr * x->kc);
  }
}

static void compute_task(void *vctx, int task, int thread) {
  (void)thread;
  block_ctx *x = (block_ctx *)vctx;
  const problem *p = x->p;
  int MR = x->kd.mr, NR = x->kd.nr;
  int mt = task % x->m_tasks, nt = task / x->m_tasks;
  int s_lo = mt * MC_SLIVERS, s_hi = s_lo + MC_SLIVERS < x->a_slivers ? s_lo + MC_SLIVERS : x->a_slivers;
  int t_lo = nt * NT_SLIVERS, t_hi = t_lo + NT_SLIVERS < x->b_slivers ? t_lo + NT_SLIVERS : x->b_slivers;
  float tile[AVX512_MR * AVX512_NR > PORT_MR * PORT_NR ? 8 * 32 : 4 * 16] __attribute__((aligned(64)));
  for (int t = t_lo; t < t_hi; t++) {
    int j = x->j0 + t * NR;
    int cols = p->N - j < NR ? p->N - j : NR;
    const float *bp = packed_b + (size_t)t * NR * x->kc;
    for (int s = s_lo; s < s_hi; s++) {
      int i = s * MR;
      int rows = p->M - i < MR ? p->M - i : MR;
      const float *ap = packed_a + (size_t)s * MR * x->kc;
      float *c = p->C + (long)i * p->ldc + j;
      if (rows == MR && cols == NR) {
        x->kd.kernel(x->kc, ap, bp, c, p->ldc, p->alpha, x->beta);
      } else {
        x->kd.kernel(x->kc, ap, bp, tile, NR, 1.0f, 0.0f);
        for (int r = 0; r < rows; r++)
          for (int q = 0; q < cols; q++) {
            float v = p->alpha * tile[r * NR + q];
            c[r * p->ldc + q] = x->beta == 0.0f ? v : v + x->beta * c[r * p->ldc + q];
          }
      }
    }
  }
}

static void scale_c(const problem *p) {
  for (int i = 0; i < p->M; i++) {
    float *c = p->C + (long)i * p->ldc;
    if (p->beta == 0.0f)
      memset(c, 0, (size_t)p->N * sizeof(float));
    else
      for (int j = 0; j < p->N; j++) c[j] *= p->beta;
  }
}

static void gemm_blocked(const problem *p) {
  kernel_desc kd = pick_kernel();
  int MR = kd.mr, NR = kd.nr;
  int a_slivers = (p->M + MR - 1) / MR;
  if (!grow(&packed_a, &packed_a_cap, (size_t)a_slivers * MR * KC)) abort();
  for (int j0 = 0; j0 < p->N; j0 += NC) {
    int nc = p->N - j0 < NC ? p->N - j0 : NC;
    int b_slivers = (nc + NR - 1) / NR;
    if (!grow(&packed_b, &packed_b_cap, (size_t)b_slivers * NR * KC)) abort();
    for (int p0 = 0; p0 < p->K; p0 += KC) {
      block_ctx x = {p, kd, j0, nc, p0, p->K - p0 < KC ? p->K - p0 : KC, a_slivers, b_slivers, 0, 0,
                     p0 == 0 ? p->beta : 1.0f};
      pool_run(pack_task, &x, (a_slivers + 3) / 4 + (b_slivers + 3) / 4);
      x.m_tasks = (a_slivers + MC_SLIVERS - 1) / MC_SLIVERS;
      x.n_tasks = (b_slivers + NT_SLIVERS - 1) / NT_SLIVERS;
      pool_run(compute_task, &x, x.m_tasks * x.n_tasks);
    }
  }
}

/* ------------------------------------------------------------------ matrix-vector paths */

/* y[0..n) = alpha * sum_k x[k] * rows[k][0..n) + beta * y, rows strided by ld */
static void axpy_rows(float *y, const float *x, long xs, const float *rows, long ld, int K, int n, float alpha, float beta) {
  float acc[256];
  for (int j0 = 0; j0 < n; j0 += 256) {
    int w = n - j0 < 256 ? n - j0 : 256;
    memset(acc, 0, (size_t)w * sizeof(float));
    for (int k = 0; k < K; k++) {
      float a = x[k * xs];
      const float *r = rows + (long)k * ld + j0;
      for (int j = 0; j < w; j++) acc[j] += a * r[j];
    }
    for (int j = 0; j < w; j++) y[j0 + j] = beta == 0.0f ? alpha * acc[j] : alpha * acc[j] + beta * y[j0 + j];
  }
}

typedef struct {
  const problem *p;
  int chunk;
  int outputs;
} gemv_ctx;

/* One output vector of length `outputs` (N when M == 1, M when N == 1). */
static void gemv_task(void *vctx, int task, int thread) {
  (void)thread;
  gemv_ctx *x = (gemv_ctx *)vctx;
  const problem *p = x->p;
  int lo = task * x->chunk, hi = lo + x->chunk < x->outputs ? lo + x->chunk : x->outputs;
  if (p->M == 1) {
    /* c[j] = sum_k A(0,k) B(k,j) */
    if (p->brs == 1 && p->acs == 1) {
      float part[64];
      for (int j0 = lo; j0 < hi; j0 += 64) {
        int w = hi - j0 < 64 ? hi - j0 : 64;
        f32_dot_rows(p->B + (long)j0 * p->bcs, p->bcs, p->A, p->K, w, part);
        for (int j = 0; j < w; j++) {
          float v = p->alpha * part[j];
          p->C[j0 + j] = p->beta == 0.0f ? v : v + p->beta * p->C[j0 + j];
        }
      }
    } else if (p->bcs == 1) {
      axpy_rows(p->C + lo, p->A, p->acs, p->B + lo, p->brs, p->K, hi - lo, p->alpha, p->beta);
    } else {
      for (int j = lo; j < hi; j++) {
        float s = 0.0f;
        for (int k = 0; k < p->K; k++) s += p->A[(long)k * p->acs] * p->B[(long)k * p->brs + (long)j * p->bcs];
        p->C[j] = p->beta == 0.0f ? p->alpha * s : p->alpha * s + p->beta * p->C[j];
      }
    }
  } else {
    /* c[i] = sum_k A(i,k) B(k,0) */
    if (p->acs == 1 && p->brs == 1) {
      float part[64];
      for (int i0 = lo; i0 < hi; i0 += 64) {
        int w = hi - i0 < 64 ? hi - i0 : 64;
        f32_dot_rows(p->A + (long)i0 * p->ars, p->ars, p->B, p->K, w, part);
        for (int i = 0; i < w; i++) {
          float v = p->alpha * part[i];
          float *c = p->C + (long)(i0 + i) * p->ldc;
          *c = p->beta == 0.0f ? v : v + p->beta * *c;
        }
      }
    } else {
      for (int i = lo; i < hi; i++) {
        float s = 0.0f;
        for (int k = 0; k < p->K; k++) s += p->A[(long)i * p->ars + (long)k * p->acs] * p->B[(long)k * p->brs];
        float *c = p->C + (long)i * p->ldc;
        *c = p->beta == 0.0f ? p->alpha * s : p->alpha * s + p->beta * *c;
      }
    }
  }
}

static void gemv(const problem *p) {
  int outputs = p->M == 1 ? p->N : p->M;
  int threads = pool_size();
  /* enough work per task to amortise a pool round trip; one contiguous share per thread (as an
   * OpenMP static schedule): each thread streams one run of rows, which the hardware prefetchers
   * follow better than several interleaved chunks (decode of the 110M shape: ~5% faster) */
  long work = (long)outputs * p->K;
  int tasks = work < 65536 ? 1 : threads;
  int chunk = (outputs + tasks - 1) / tasks;
  if (p->M == 1 && p->bcs == 1) chunk = ((chunk + 15) / 16) * 16;
  if (chunk < 1) chunk = 1;
  gemv_ctx x = {p, chunk, outputs};
  pool_run(gemv_task, &x, (outputs + chunk - 1) / chunk);
}

/* ------------------------------------------------------------------ entry point */

static void gemm_one(const problem *p) {
  if (p->M == 0 || p->N == 0) return;
  if (p->K == 0) {
    scale_c(p);
    return;
  }
  if (p->M == 1 || p->N == 1) {
    gemv(p);
    return;
  }
  gemm_blocked(p);
}

/* gemm(a, aOff, b, bOff, c, cOff, M, N, K, transA, transB, alpha, beta, batch, lda, ldb, ldc, strideA, strideB, strideC) */
static napi_value js_gemm(napi_env env, napi_callback_info info) {
  args_t a;
  if (!args_init(&a, env, info, 20, "gemm")) return NULL;
  long aOff = (long)arg_int(&a, 1), bOff = (long)arg_int(&a, 3), cOff = (long)arg_int(&a, 5);
  int M = (int)arg_int(&a, 6), N = (int)arg_int(&a, 7), K = (int)arg_int(&a, 8);
  int transA = arg_bool(&a, 9), transB = arg_bool(&a, 10);
  float alpha = (float)arg_f64(&a, 11), beta = (float)arg_f64(&a, 12);
  long batch = (long)arg_int(&a, 13), lda = (long)arg_int(&a, 14), ldb = (long)arg_int(&a, 15), ldc = (long)arg_int(&a, 16);
  long sA = (long)arg_int(&a, 17), sB = (long)arg_int(&a, 18), sC = (long)arg_int(&a, 19);
  if (a.failed) return NULL;
  if (M < 0 || N < 0 || K < 0 || batch < 0 || aOff < 0 || bOff < 0 || cOff < 0 || sA < 0 || sB < 0 || sC < 0) {
    napi_throw_range_error(env, NULL, "llmts native gemm: negative size, offset or stride");
    return NULL;
  }
  /* last element touched by each operand, so short arrays are rejected before any access */
  long aRows = transA ? K : M, aCols = transA ? M : K, bRows = transB ? N : K, bCols = transB ? K : N;
  long lastA = batch > 0 && aRows > 0 && aCols > 0 ? aOff + (batch - 1) * sA + (aRows - 1) * lda + aCols : 0;
  long lastB = batch > 0 && bRows > 0 && bCols > 0 ? bOff + (batch - 1) * sB + (bRows - 1) * ldb + bCols : 0;
  long lastC = batch > 0 && M > 0 && N > 0 ? cOff + (batch - 1) * sC + (long)(M - 1) * ldc + N : 0;
  float *A = arg_f32(&a, 0, (size_t)lastA, 0);
  float *B = arg_f32(&a, 2, (size_t)lastB, 0);
  float *C = arg_f32(&a, 4, (size_t)lastC, 0);
  if (a.failed) return NULL;
  for (long i = 0; i < batch; i++) {
    problem p = {M, N, K,
                 A + aOff + i * sA, transA ? 1 : lda, transA ? lda : 1,
                 B + bOff + i * sB, transB ? 1 : ldb, transB ? ldb : 1,
                 C + cOff + i * sC, ldc, alpha, beta};
    gemm_one(&p);
  }
  return make_undefined(env);
}

const export_t gemm_exports[] = {{"gemm", js_gemm}, {NULL, NULL}};
