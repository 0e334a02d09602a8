/* sgemm: C = alpha * op(A) op(B) + beta * C, row-major, batched and strided.
 *
 * Design (the GotoBLAS/BLIS scheme, see the blocked driver below for the block sizes):
 *   op(B) is packed into NR-wide slivers of a shared panel, op(A) into MR-tall slivers of a
 *   per-thread block; packing absorbs transposes and strides, so one micro-kernel serves all
 *   four cases. Each task packs its own rows of A and multiplies them with every sliver of the
 *   panel, packing B slivers on first use, through all depth blocks in order.
 * Micro-kernels: AVX-512 8x32 (16 zmm accumulators), AVX2+FMA 6x16 (12 ymm accumulators),
 * portable C 4x8 (GCC vector extensions). Matrix-vector shapes (M == 1 or N == 1) take dedicated
 * streaming kernels, since packing would cost as much as the product.
 * Packing buffers are static and grown on demand (gemm is called from the JS thread only). */
#include <stdint.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "cpu.h"
#include "napi_args.h"
#include "threadpool.h"
#include "dot_f32.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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
/* One depth step of the 6x16 tile: two B vectors, six broadcasts of A from memory, twelve FMAs
 * into the accumulators c00..c51. In assembly with ymm13-15 as its only temporaries: from
 * intrinsics GCC's register allocation of the unrolled loop depends on unrelated flags (with
 * -fPIC -fno-omit-frame-pointer, as node-gyp builds, it kept one accumulator on the stack,
 * ~7% slower). AOFF and BOFF are byte offsets from a and b. */
#define AVX2_FMA2(R, C0, C1)                                                                                      \
  "vbroadcastss " R "(%[a]), %%ymm13\n\t"                                                                         \
  "vfmadd231ps %%ymm14, %%ymm13, %[" C0 "]\n\t"                                                                   \
  "vfmadd231ps %%ymm15, %%ymm13, %[" C1 "]\n\t"
#define AVX2_STEP(AOFF, BOFF)                                                                                     \
  __asm__("vmovups " #BOFF "(%[b]), %%ymm14\n\t"                                                                  \
          "vmovups " #BOFF "+32(%[b]), %%ymm15\n\t"                                                               \
          AVX2_FMA2(#AOFF "+0", "c00", "c01") AVX2_FMA2(#AOFF "+4", "c10", "c11")                                 \
          AVX2_FMA2(#AOFF "+8", "c20", "c21") AVX2_FMA2(#AOFF "+12", "c30", "c31")                                \
          AVX2_FMA2(#AOFF "+16", "c40", "c41") AVX2_FMA2(#AOFF "+20", "c50", "c51")                               \
          : [c00] "+x"(c00), [c01] "+x"(c01), [c10] "+x"(c10), [c11] "+x"(c11), [c20] "+x"(c20), [c21] "+x"(c21), \
            [c30] "+x"(c30), [c31] "+x"(c31), [c40] "+x"(c40), [c41] "+x"(c41), [c50] "+x"(c50), [c51] "+x"(c51)  \
          : [a] "r"(a), [b] "r"(b)                                                                                \
          : "xmm13", "xmm14", "xmm15", "memory")

__attribute__((target("avx2,fma"))) static void ukernel_avx2(int kc, const float *a, const float *b, float *c, long ldc,
                                                             float alpha, float beta) {
  /* the C tile is touched only after the loop: start fetching its lines now */
  for (int r = 0; r < AVX2_MR; r++) {
    _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + r * ldc + AVX2_NR - 1), _MM_HINT_T0);
  }
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  int k = 0;
  /* unrolled by 4: GCC does not unroll this loop itself, and the unrolled one runs ~10% faster on Zen 3 */
  for (; k + 4 <= kc; k += 4) {
    AVX2_STEP(0, 0);
    AVX2_STEP(24, 64); /* (MR floats, NR floats) * 4 bytes */
    AVX2_STEP(48, 128);
    AVX2_STEP(72, 192);
    a += 4 * AVX2_MR;
    b += 4 * AVX2_NR;
  }
  for (; k < kc; k++) {
    AVX2_STEP(0, 0);
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
/* the AVX-512 tile mirrors the AVX2 one (unrolled by 4, C prefetched); it cannot be timed on the
 * AVX2-only machines this was tuned on */
#define AVX512_STEP(ao, bo)                                                                                       \
  do {                                                                                                            \
    __m512 b0 = _mm512_loadu_ps(b + (bo)), b1 = _mm512_loadu_ps(b + (bo) + 16), av;                               \
    av = _mm512_set1_ps(a[(ao) + 0]); c00 = _mm512_fmadd_ps(av, b0, c00); c01 = _mm512_fmadd_ps(av, b1, c01);     \
    av = _mm512_set1_ps(a[(ao) + 1]); c10 = _mm512_fmadd_ps(av, b0, c10); c11 = _mm512_fmadd_ps(av, b1, c11);     \
    av = _mm512_set1_ps(a[(ao) + 2]); c20 = _mm512_fmadd_ps(av, b0, c20); c21 = _mm512_fmadd_ps(av, b1, c21);     \
    av = _mm512_set1_ps(a[(ao) + 3]); c30 = _mm512_fmadd_ps(av, b0, c30); c31 = _mm512_fmadd_ps(av, b1, c31);     \
    av = _mm512_set1_ps(a[(ao) + 4]); c40 = _mm512_fmadd_ps(av, b0, c40); c41 = _mm512_fmadd_ps(av, b1, c41);     \
    av = _mm512_set1_ps(a[(ao) + 5]); c50 = _mm512_fmadd_ps(av, b0, c50); c51 = _mm512_fmadd_ps(av, b1, c51);     \
    av = _mm512_set1_ps(a[(ao) + 6]); c60 = _mm512_fmadd_ps(av, b0, c60); c61 = _mm512_fmadd_ps(av, b1, c61);     \
    av = _mm512_set1_ps(a[(ao) + 7]); c70 = _mm512_fmadd_ps(av, b0, c70); c71 = _mm512_fmadd_ps(av, b1, c71);     \
  } while (0)

__attribute__((target("avx512f"))) static void ukernel_avx512(int kc, const float *a, const float *b, float *c, long ldc,
                                                              float alpha, float beta) {
  for (int r = 0; r < AVX512_MR; r++) {
    _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + r * ldc + AVX512_NR - 1), _MM_HINT_T0);
  }
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
  __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(), c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
  __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps(), c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
  __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
  int k = 0;
  for (; k + 4 <= kc; k += 4) {
    AVX512_STEP(0, 0);
    AVX512_STEP(AVX512_MR, AVX512_NR);
    AVX512_STEP(2 * AVX512_MR, 2 * AVX512_NR);
    AVX512_STEP(3 * AVX512_MR, 3 * AVX512_NR);
    a += 4 * AVX512_MR;
    b += 4 * AVX512_NR;
  }
  for (; k < kc; k++) {
    AVX512_STEP(0, 0);
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

/* ------------------------------------------------------------------ packing */

/* Packing copies one sliver of op(A) (MR rows) or op(B) (NR columns) over one depth block into
 * the micro-kernel's order: A to dst[k * MR + r], B to dst[k * NR + c], zero-padded at ragged
 * edges. Strides absorb the transposes: op(A)(i, k) = A[i * ars + k * acs], op(B)(k, j) = B[k * brs + j * bcs].
 * The generic versions below handle every case; the AVX2 ones handle full slivers fast. */
typedef void (*pack_fn)(const float *src, long rs, long cs, int n, int kc, float *dst);

/* dst[k * n + r] = src[r * rs + k * cs] for r < rows, zero for rows <= r < n */
static void pack_generic(const float *src, long rs, long cs, int rows, int n, int kc, float *dst) {
  if (cs == 1) {
    for (int r = 0; r < rows; r++) {
      const float *s = src + r * rs;
      for (int k = 0; k < kc; k++) dst[k * n + r] = s[k];
    }
  } else {
    for (int k = 0; k < kc; k++) {
      const float *s = src + k * cs;
      float *d = dst + k * n;
      if (rs == 1)
        memcpy(d, s, (size_t)rows * sizeof(float));
      else
        for (int r = 0; r < rows; r++) d[r] = s[r * rs];
    }
  }
  if (rows < n)
    for (int k = 0; k < kc; k++)
      for (int r = rows; r < n; r++) dst[k * n + r] = 0.0f;
}

static void pack_full_generic(const float *src, long rs, long cs, int n, int kc, float *dst) {
  pack_generic(src, rs, cs, n, n, kc, dst);
}

/* Full slivers [0, slivers) of n adjacent lines each (rs == 1; sliver s at dst + s * n * kc),
 * depth step by depth step across all of them: each source row is read once, a whole run of
 * slivers * n floats, rather than one short run per sliver and page (B groups of a row-major op(B)). */
typedef void (*pack_across_fn)(const float *src, long cs, int slivers, int n, int kc, float *dst);

static void pack_across_generic(const float *src, long cs, int slivers, int n, int kc, float *dst) {
  for (int k = 0; k < kc; k++)
    for (int s = 0; s < slivers; s++)
      for (int r = 0; r < n; r++) dst[(size_t)s * n * kc + (size_t)k * n + r] = src[k * cs + s * n + r];
}

#if defined(__x86_64__)
/* v[q] <- column q of the 8x8 matrix whose rows are v[0..8) */
__attribute__((target("avx2,fma"))) static inline void transpose8x8(__m256 v[8]) {
  __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
  __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
  __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
  __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  v[0] = _mm256_permute2f128_ps(u0, u4, 0x20); v[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  v[2] = _mm256_permute2f128_ps(u2, u6, 0x20); v[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  v[4] = _mm256_permute2f128_ps(u0, u4, 0x31); v[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  v[6] = _mm256_permute2f128_ps(u2, u6, 0x31); v[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* 6 floats in the low lanes, as a 4-wide and a 2-wide access (masked stores are slow on AMD) */
__attribute__((target("avx2,fma"))) static inline __m256 load6(const float *p) {
  __m128 lo = _mm_loadu_ps(p), hi = _mm_castpd_ps(_mm_load_sd((const double *)(p + 4)));
  return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
}

__attribute__((target("avx2,fma"))) static inline void store6(float *p, __m256 v) {
  _mm_storeu_ps(p, _mm256_castps256_ps128(v));
  _mm_store_sd((double *)(p + 4), _mm_castps_pd(_mm256_extractf128_ps(v, 1)));
}

/* Full sliver of n <= 8 or n % 8 == 0 lines, any strides. Lines contiguous along k (cs == 1):
 * 8x8 transposes (n == 6 stores overlapping 8-wide rows in increasing order, the last masked).
 * Lines contiguous across (rs == 1): n-wide row copies. */
__attribute__((target("avx2,fma"))) static void pack_full_avx2(const float *src, long rs, long cs, int n, int kc, float *dst) {
  if (cs == 1 && (n == 6 || n % 8 == 0)) {
    int groups = n < 8 ? 1 : n / 8, w = n < 8 ? n : 8;
    for (int g = 0; g < groups; g++) {
      const float *s = src + (long)g * 8 * rs;
      float *d0 = dst + g * 8;
      int k = 0;
      for (; k + 8 <= kc; k += 8) {
        __m256 v[8];
        for (int r = 0; r < 8; r++) v[r] = r < w ? _mm256_loadu_ps(s + r * rs + k) : _mm256_setzero_ps();
        transpose8x8(v);
        float *d = d0 + (long)k * n;
        if (w == 8) {
          for (int q = 0; q < 8; q++) _mm256_storeu_ps(d + q * n, v[q]);
        } else {
          for (int q = 0; q < 7; q++) _mm256_storeu_ps(d + q * n, v[q]);
          store6(d + 7 * n, v[7]);
        }
      }
      for (; k < kc; k++)
        for (int r = 0; r < w; r++) d0[(long)k * n + r] = s[r * rs + k];
    }
    return;
  }
  if (rs == 1 && (n == 6 || n % 8 == 0)) {
    if (n == 6) {
      for (int k = 0; k < kc; k++) store6(dst + k * 6, load6(src + k * cs));
    } else {
      for (int k = 0; k < kc; k++)
        for (int c = 0; c < n; c += 8) _mm256_storeu_ps(dst + (long)k * n + c, _mm256_loadu_ps(src + k * cs + c));
    }
    return;
  }
  pack_generic(src, rs, cs, n, n, kc, dst);
}

#define PACK_AHEAD 8 /* rows */
__attribute__((target("avx2,fma"))) static void pack_across_avx2(const float *src, long cs, int slivers, int n, int kc,
                                                                 float *dst) {
  if (n != 6 && n % 8 != 0) {
    pack_across_generic(src, cs, slivers, n, kc, dst);
    return;
  }
  size_t sliver = (size_t)n * kc;
  int width = slivers * n;
  for (int k = 0; k < kc; k++) {
    const float *row = src + k * cs;
    if (k + PACK_AHEAD < kc) /* rows are far apart: no hardware prefetcher follows this walk */
      for (int c = 0; c < width; c += 16) _mm_prefetch((const char *)(row + PACK_AHEAD * cs + c), _MM_HINT_T0);
    float *d = dst + (size_t)k * n;
    if (n == 6)
      for (int s = 0; s < slivers; s++) store6(d + s * sliver, load6(row + s * 6));
    else
      for (int s = 0; s < slivers; s++)
        for (int c = 0; c < n; c += 8) _mm256_storeu_ps(d + s * sliver + c, _mm256_loadu_ps(row + s * n + c));
  }
}
#endif

typedef struct {
  int mr, nr;
  ukernel_fn kernel;
  pack_fn pack_full;       /* packs one full sliver (mr rows of op(A) or nr columns of op(B)) */
  pack_across_fn pack_across; /* packs full slivers of adjacent lines, depth step by depth step */
} kernel_desc;

static kernel_desc pick_kernel(void) {
  kernel_desc d = {PORT_MR, PORT_NR, ukernel_portable, pack_full_generic, pack_across_generic};
#if defined(__x86_64__)
  simd_level level = cpu_simd();
  if (level == SIMD_AVX512) {
    d.mr = AVX512_MR; d.nr = AVX512_NR; d.kernel = ukernel_avx512;
    d.pack_full = pack_full_avx2; d.pack_across = pack_across_avx2;
  } else if (level == SIMD_AVX2) {
    d.mr = AVX2_MR; d.nr = AVX2_NR; d.kernel = ukernel_avx2;
    d.pack_full = pack_full_avx2; d.pack_across = pack_across_avx2;
  }
#endif
  return d;
}

/* Rows [i0, i0+MR) of op(A), depth [p0, p0+kc) -> dst[k * MR + r]. */
static void pack_a_sliver(const problem *p, const kernel_desc *kd, int i0, int p0, int kc, float *dst) {
  int rows = p->M - i0 < kd->mr ? p->M - i0 : kd->mr;
  const float *src = p->A + (long)i0 * p->ars + (long)p0 * p->acs;
  if (rows == kd->mr) kd->pack_full(src, p->ars, p->acs, kd->mr, kc, dst);
  else pack_generic(src, p->ars, p->acs, rows, kd->mr, kc, dst);
}

/* A slivers [s_lo, s_hi) (the rows of one task), depth [p0, p0+kc) -> dst, sliver after sliver.
 * (Sliver by sliver even for a transposed op(A), whose rows are then far apart: the hardware's
 * stride prefetcher follows one sliver's walk down the rows, and was measured faster than
 * packing all slivers depth step by depth step with software prefetch.) */
static void pack_a_block(const problem *p, const kernel_desc *kd, int s_lo, int s_hi, int p0, int kc, float *dst) {
  for (int s = s_lo; s < s_hi; s++) pack_a_sliver(p, kd, s * kd->mr, p0, kc, dst + (size_t)(s - s_lo) * kd->mr * kc);
}

/* Columns [j0, j0+NR) of op(B), depth [p0, p0+kc) -> dst[k * NR + c]. */
static void pack_b_sliver(const problem *p, const kernel_desc *kd, int j0, int p0, int kc, float *dst) {
  int cols = p->N - j0 < kd->nr ? p->N - j0 : kd->nr;
  const float *src = p->B + (long)j0 * p->bcs + (long)p0 * p->brs;
  if (cols == kd->nr) kd->pack_full(src, p->bcs, p->brs, kd->nr, kc, dst);
  else pack_generic(src, p->bcs, p->brs, cols, kd->nr, kc, dst);
}

/* ------------------------------------------------------------------ blocked driver */

/* Blocking, for the AVX2 6x16 tile on Zen 3 (32 KiB L1d, 512 KiB L2 per core):
 *   depth: K is cut into ceil(K / KC_MAX) blocks of equal size (K = 384 is one block, not 256 + 128);
 *   rows:  a task owns MC rows of op(A), packed by the task itself into its thread's buffer
 *          (MC * kc floats, at most A_BLOCK_BYTES: it stays in that core's L2);
 *   columns: a panel of op(B) over the whole depth (at most B_PANEL_BYTES, shared, in L3),
 *          packed sliver by sliver by whichever task needs a sliver first.
 * One pool job per panel: every task walks all depth blocks of its rows itself, so there is no
 * barrier between depth blocks and no pack phase; C(i, j) always adds the depth blocks in the
 * same order, whatever the thread count and task sizes. */
#define KC_MAX 384
#define KC_SMALL 256
#define A_BLOCK_BYTES (192 * 1024)
#define B_PANEL_BYTES (32 << 20)
#define L3_KEEP_BYTES (8 << 20) /* what stays in L3 between passes (32 MiB, shared) */
#define B_GROUP 4 /* B slivers packed together: one claim, one pass over the source rows */
#define GEMM_MAX_THREADS 256
#define HUGE_PAGE ((size_t)2 << 20)

static float *packed_b = NULL, *thread_a[GEMM_MAX_THREADS], *thread_b[GEMM_MAX_THREADS];
static size_t packed_b_cap = 0, thread_a_cap[GEMM_MAX_THREADS], thread_b_cap[GEMM_MAX_THREADS];
static atomic_int *b_state = NULL;
static size_t b_state_cap = 0;

static float *grow(float **buf, size_t *cap, size_t n) {
  if (n > *cap) {
    free(*buf);
    /* buffers of megabytes (the op(B) panel) on 2 MiB pages where the kernel grants them: the
     * panel's 4 KiB pages alone would fill the TLB that the strided packing reads need */
    size_t align = n * sizeof(float) >= HUGE_PAGE ? HUGE_PAGE : 64;
    size_t bytes = ((n * sizeof(float) + align - 1) / align) * align;
    *buf = (float *)aligned_alloc(align, bytes);
#if defined(MADV_HUGEPAGE)
    if (*buf && align == HUGE_PAGE) madvise(*buf, bytes, MADV_HUGEPAGE);
#endif
    *cap = *buf ? n : 0;
  }
  return *buf;
}

enum { GROUP_EMPTY = 0, GROUP_PACKING = 1, GROUP_READY = 2 };


typedef struct {
  const problem *p;
  kernel_desc kd;
  int j0, b_slivers, b_groups; /* the panel: B slivers from column j0, in groups of B_GROUP */
  int kc, k_blocks;            /* depth blocks of kc (the last one may be shorter) */
  int a_slivers, m_tasks;      /* row blocks: balanced split of the A slivers */
  int n_groups;                /* column ranges: balanced split of the panel's B groups */
  atomic_int *state;           /* per (depth block, B group): GROUP_* */
} panel_ctx;

static int depth_of(const panel_ctx *x, int q) { return x->p->K - q * x->kc < x->kc ? x->p->K - q * x->kc : x->kc; }

/* B group grp of depth block q -> dst (its slivers one after another) */
static void pack_b_group(const panel_ctx *x, int q, int grp, float *dst) {
  const problem *p = x->p;
  int NR = x->kd.nr, p0 = q * x->kc, kc = depth_of(x, q);
  int t0 = grp * B_GROUP, t1 = t0 + B_GROUP < x->b_slivers ? t0 + B_GROUP : x->b_slivers;
  int inside = (p->N - x->j0) / NR; /* slivers with all NR columns inside op(B) */
  int t = t0;
  if (p->bcs == 1 && (inside < t1 ? inside : t1) > t0) {
    int full = (inside < t1 ? inside : t1) - t0;
    x->kd.pack_across(p->B + x->j0 + (long)t0 * NR + (long)p0 * p->brs, p->brs, full, NR, kc, dst);
    t += full;
  }
  for (; t < t1; t++) pack_b_sliver(p, &x->kd, x->j0 + t * NR, p0, kc, dst + (size_t)(t - t0) * NR * kc);
}

/* The packed B group grp of depth block q: packs it into the shared panel if nobody has; if another
 * thread is packing it right now, packs a private copy instead of waiting (that thread may be
 * descheduled by a busy neighbour). Packing only copies, so every copy is the same. */
static const float *b_group(const panel_ctx *x, int q, int grp, float *scratch) {
  int NR = x->kd.nr, kc = depth_of(x, q);
  float *dst = packed_b + (size_t)q * x->kc * x->b_slivers * NR + (size_t)grp * B_GROUP * NR * kc;
  atomic_int *st = &x->state[(size_t)q * x->b_groups + grp];
  int s = atomic_load_explicit(st, memory_order_acquire);
  if (s == GROUP_READY) return dst;
  if (s == GROUP_EMPTY &&
      atomic_compare_exchange_strong_explicit(st, &s, GROUP_PACKING, memory_order_acq_rel, memory_order_acquire)) {
    pack_b_group(x, q, grp, dst);
    atomic_store_explicit(st, GROUP_READY, memory_order_release);
    return dst;
  }
  if (s == GROUP_READY) return dst;
  pack_b_group(x, q, grp, scratch);
  return scratch;
}

/* Fetch part `part` of `parts` of a strided source region into the cache: n lines (stride rs)
 * by kc depth steps (stride cs), one of the strides 1. Packing reads such regions one short run
 * per line or depth step, often each on its own page, which the hardware prefetchers do not
 * follow; fetching the next region while the current one computes hides that latency. */
static void prefetch_part(const float *src, long rs, long cs, int n, int kc, int part, int parts) {
  long len, runs, step;
  if (cs == 1) {
    len = kc; runs = n; step = rs;
  } else if (rs == 1) {
    len = n; runs = kc; step = cs;
  } else {
    return;
  }
  long chunks = (len + 15) / 16, units = runs * chunks;
  long lo = units * part / parts, hi = units * (part + 1) / parts;
  for (long u = lo; u < hi; u++) {
    const float *run = src + (u / chunks) * step;
    long c = u % chunks;
    __builtin_prefetch(run + c * 16);
    if (c == chunks - 1) __builtin_prefetch(run + len - 1); /* a run that does not start on a line */
  }
}

/* part of the source of B group grp, depth block q, unless someone packed it already */
static void prefetch_b_part(const panel_ctx *x, int q, int grp, int part, int parts) {
  if (atomic_load_explicit(&x->state[(size_t)q * x->b_groups + grp], memory_order_relaxed) != GROUP_EMPTY) return;
  const problem *p = x->p;
  int NR = x->kd.nr, p0 = q * x->kc, kc = depth_of(x, q);
  int j = x->j0 + grp * B_GROUP * NR, cols = p->N - j < B_GROUP * NR ? p->N - j : B_GROUP * NR;
  prefetch_part(p->B + (long)j * p->bcs + (long)p0 * p->brs, p->bcs, p->brs, cols, kc, part, parts);
}

/* part of the source of the A block (slivers [s_lo, s_hi)) of depth block q */
static void prefetch_a_part(const panel_ctx *x, int q, int s_lo, int s_hi, int part, int parts) {
  const problem *p = x->p;
  int MR = x->kd.mr, p0 = q * x->kc, kc = p->K - p0 < x->kc ? p->K - p0 : x->kc;
  int i = s_lo * MR, rows = p->M - i < (s_hi - s_lo) * MR ? p->M - i : (s_hi - s_lo) * MR;
  prefetch_part(p->A + (long)i * p->ars + (long)p0 * p->acs, p->ars, p->acs, rows, kc, part, parts);
}

static void panel_task(void *vctx, int task, int thread) {
  const panel_ctx *x = (const panel_ctx *)vctx;
  const problem *p = x->p;
  int MR = x->kd.mr, NR = x->kd.nr;
  int mt = task % x->m_tasks, ng = task / x->m_tasks;
  int s_lo = (int)((long)mt * x->a_slivers / x->m_tasks), s_hi = (int)((long)(mt + 1) * x->a_slivers / x->m_tasks);
  int g_lo = (int)((long)ng * x->b_groups / x->n_groups), g_hi = (int)((long)(ng + 1) * x->b_groups / x->n_groups);
  int groups = g_hi - g_lo, rows_slivers = s_hi - s_lo;
  int slivers = (g_hi * B_GROUP < x->b_slivers ? g_hi * B_GROUP : x->b_slivers) - g_lo * B_GROUP;
  /* threads start at different groups, so they pack different ones when a panel is new */
  int rot = (int)((long)(thread % pool_size()) * groups / pool_size());
  float *abuf = thread_a[thread], *scratch = thread_b[thread];
  float tile[8 * 32] __attribute__((aligned(64))); /* the largest tile (AVX-512's 8x32) */
  for (int q = 0; q < x->k_blocks; q++) {
    int kc = depth_of(x, q);
    float beta = q == 0 ? p->beta : 1.0f;
    pack_a_block(p, &x->kd, s_lo, s_hi, q * x->kc, kc, abuf);
    int done = 0; /* slivers of this depth block computed so far */
    for (int u = 0; u < groups; u++) {
      int grp = g_lo + (u + rot) % groups;
      const float *bp = b_group(x, q, grp, scratch);
      /* the group this task packs next, if any: fetched while this one computes */
      int q_next = u + 1 < groups ? q : q + 1, grp_next = g_lo + (u + 1 + rot) % groups;
      int t0 = grp * B_GROUP, t1 = t0 + B_GROUP < x->b_slivers ? t0 + B_GROUP : x->b_slivers;
      for (int t = t0; t < t1; t++, done++) {
        int j = x->j0 + t * NR;
        int cols = p->N - j < NR ? p->N - j : NR;
        const float *bs = bp + (size_t)(t - t0) * NR * kc;
        for (int s = s_lo; s < s_hi; s++) {
          if (q_next < x->k_blocks)
            prefetch_b_part(x, q_next, grp_next, (t - t0) * rows_slivers + s - s_lo, (t1 - t0) * rows_slivers);
          /* and the next depth block's A, spread over all of this block's kernel calls */
          if (q + 1 < x->k_blocks) prefetch_a_part(x, q + 1, s_lo, s_hi, done * rows_slivers + s - s_lo, slivers * rows_slivers);
          int i = s * MR;
          int rows = p->M - i < MR ? p->M - i : MR;
          const float *ap = abuf + (size_t)(s - s_lo) * MR * kc;
          float *c = p->C + (long)i * p->ldc + j;
          if (rows == MR && cols == NR) {
            x->kd.kernel(kc, ap, bs, c, p->ldc, p->alpha, beta);
          } else {
            x->kd.kernel(kc, ap, bs, tile, NR, 1.0f, 0.0f);
            for (int r = 0; r < rows; r++)
              for (int q2 = 0; q2 < cols; q2++) {
                float v = p->alpha * tile[r * NR + q2];
                c[r * p->ldc + q2] = beta == 0.0f ? v : v + beta * c[r * p->ldc + q2];
              }
          }
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

/* How a product is cut: depth blocks, row blocks (tasks' A blocks), column groups of each panel. */
typedef struct {
  int kc, k_blocks, m_tasks, n_groups;
  double cost;
} plan;

/* The cut for depth blocks of at most kc_max, and the floats it moves (the cost to minimise):
 * C read and written once per depth block; op(A) packed once per panel and column group
 * (weighted 4: packing reads strided sources, several times slower than streaming the packed
 * panel); the panel read once per row block. Data larger
 * than L3_KEEP_BYTES comes from memory rather than L3 and weighs 3. With threads there are at
 * least 3 tasks per thread (a busy or late thread then costs little at the end); when the rows
 * alone do not give that many, rows and columns are both split, whichever way moves least. */
static plan plan_for(const problem *p, int MR, int threads, int kc_max, int panels, int panel_cols, int panel_groups) {
  plan best = {0, 0, 0, 0, -1};
  int k_blocks = (p->K + kc_max - 1) / kc_max, kc = (p->K + k_blocks - 1) / k_blocks;
  int a_slivers = (p->M + MR - 1) / MR;
  int mc_max = (int)(A_BLOCK_BYTES / ((size_t)kc * MR * sizeof(float)));
  if (mc_max < 1) mc_max = 1;
  int m_min = (a_slivers + mc_max - 1) / mc_max;
  int want = threads > 1 ? 3 * threads : 1;
  double M = p->M, N = p->N, K = p->K;
  double w_panel = K * panel_cols * sizeof(float) > L3_KEEP_BYTES ? 3 : 1;
  double w_c = M * N * sizeof(float) > L3_KEEP_BYTES ? 3 : 1;
  double c_cost = w_c * 2.0 * k_blocks * M * N;
  int m_lo = m_min, m_hi = m_min;
  if (m_min >= want) m_lo = m_hi = ((m_min + threads - 1) / threads) * threads; /* a multiple of the thread count */
  else m_hi = want;
  if (m_hi > a_slivers) m_hi = a_slivers;
  if (m_lo > m_hi) m_lo = m_hi;
  for (int m = m_lo; m <= m_hi; m++) {
    int n = m >= want ? 1 : (want + m - 1) / m;
    if (n > panel_groups) n = panel_groups;
    double cost = c_cost + 4.0 * n * panels * M * K + w_panel * m * K * N;
    if (best.cost < 0 || cost < best.cost) {
      plan pl = {kc, k_blocks, m, n, cost};
      best = pl;
    }
  }
  return best;
}

static void gemm_blocked(const problem *p) {
  kernel_desc kd = pick_kernel();
  int MR = kd.mr, NR = kd.nr;
  int threads = pool_size() < GEMM_MAX_THREADS ? pool_size() : GEMM_MAX_THREADS;
  /* column panels: the packed op(B) over all of K within B_PANEL_BYTES */
  int nc_slivers = (int)(B_PANEL_BYTES / ((size_t)p->K * NR * sizeof(float)));
  if (nc_slivers < 1) nc_slivers = 1;
  int n_slivers = (p->N + NR - 1) / NR;
  int panels = (n_slivers + nc_slivers - 1) / nc_slivers;
  int panel_slivers = (n_slivers + panels - 1) / panels;
  int panel_groups = (panel_slivers + B_GROUP - 1) / B_GROUP;
  /* depth blocks of equal size, at most KC_MAX deep; or at most KC_SMALL deep when that moves
   * clearly less data (it lets one A block hold more rows: fewer passes over a big panel). The
   * depth blocks decide the order of the sums, so they are chosen as for one thread, whatever
   * the thread count: results stay bit-identical across thread counts. */
  int kc_max = KC_MAX;
  if (p->ars == 1 && p->K > KC_MAX)
    kc_max = KC_SMALL; /* a transposed op(A) packs faster in shallower slivers (measured: up to 10%) */
  else if (plan_for(p, MR, 1, KC_SMALL, panels, panel_slivers * NR, panel_groups).cost <
      0.9 * plan_for(p, MR, 1, KC_MAX, panels, panel_slivers * NR, panel_groups).cost)
    kc_max = KC_SMALL;
  plan pl = plan_for(p, MR, threads, kc_max, panels, panel_slivers * NR, panel_groups);
  int kc = pl.kc, k_blocks = pl.k_blocks, m_tasks = pl.m_tasks, n_groups = pl.n_groups;
  int a_slivers = (p->M + MR - 1) / MR;
  if (!grow(&packed_b, &packed_b_cap, (size_t)panel_slivers * NR * p->K)) abort();
  size_t states = (size_t)k_blocks * panel_groups;
  if (states > b_state_cap) {
    free(b_state);
    b_state = (atomic_int *)malloc(states * sizeof(atomic_int));
    if (!b_state) abort();
    b_state_cap = states;
  }
  size_t a_need = (size_t)((a_slivers + m_tasks - 1) / m_tasks) * MR * kc;
  for (int t = 0; t < threads; t++) {
    if (!grow(&thread_a[t], &thread_a_cap[t], a_need)) abort();
    if (!grow(&thread_b[t], &thread_b_cap[t], (size_t)B_GROUP * NR * kc)) abort();
  }
  for (int t0 = 0; t0 < n_slivers; t0 += panel_slivers) {
    int nb = n_slivers - t0 < panel_slivers ? n_slivers - t0 : panel_slivers;
    int groups = (nb + B_GROUP - 1) / B_GROUP;
    for (size_t i = 0; i < (size_t)k_blocks * groups; i++) atomic_init(&b_state[i], GROUP_EMPTY);
    panel_ctx x = {p, kd, t0 * NR, nb, groups, kc, k_blocks, a_slivers, m_tasks, n_groups < groups ? n_groups : groups, b_state};
    pool_run(panel_task, &x, m_tasks * x.n_groups);
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
