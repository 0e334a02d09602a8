/* Fused causal self-attention (flash-attention style), forward and backward, with grouped-query
 * heads. Layouts and semantics are those of src/backend/reference/attention.ts:
 *   q, out, dout, dq: (B, T, nHead*hs)   k, v, dk, dv: (B, T, nKvHead*hs)   lse: (B, nHead, T)
 * Query head h reads kv head h / (nHead / nKvHead). The backward ACCUMULATES into dq/dk/dv,
 * any of which may be null.
 *
 * Tiling. Sequences are cut into blocks of BLK = 64 rows; a tile is (query block, key block),
 * only tiles on or below the diagonal exist. A key block is packed transposed (Kt: hs x BLK, so
 * scores come from broadcast-FMA over 16/8/4 keys at a time) and the rows a tile multiplies
 * against are packed padded to a multiple of 16 floats; a thread holds at most two BLK x BLK
 * score tiles. Nothing of size T x T is ever stored.
 *
 * Forward: one task per (batch, head) with each key block packed once ("coarse"), or, when
 * there are fewer than 4 such pairs per thread, one task per (batch, head, query block),
 * heaviest (last) blocks first. Online softmax over the key blocks: running max m and sum l
 * per query row, the output accumulator is rescaled by exp(m_old - m_new) when the max grows;
 * at the end out = acc / l and lse = m + log(l). Each output row is written by one task.
 *
 * Backward: P = exp(scale*s - lse) is recomputed from the saved lse with the very same score
 * kernel (same packing, same summation order) as the forward; dP = dout . v, D = dout . out,
 * dS = P (dP - D) scale; dV += P^T dout, dK += dS^T q, dQ += dS k. Race-free and deterministic:
 *   - "fused" mode, one task per (batch, kv head): the task owns dk/dv rows of its kv head and
 *     dq rows of every query head of its group; it walks query blocks, the group's heads, key
 *     blocks (each key block packed once, with its own dk/dv accumulators), so all five
 *     products come from one recomputation of P and dS;
 *   - "split" mode, when there are fewer than 4 (batch, kv head) pairs per thread: pass 1 has
 *     one task per (batch, kv head, key block) computing dk/dv, pass 2 one task per (batch,
 *     head, query block) computing dq (P and dS are recomputed).
 * Both modes sum every output in the same order with the same kernels, so results are
 * bit-identical whichever mode and however many threads run them: a key block's dk/dv
 * accumulators get the tiles in (query block, head) order and are added to dk/dv once; a dq
 * tile accumulates the key blocks in order and is added to dq once.
 *
 * SIMD. The tile kernels below the main part are written once against a few vector macros and
 * instantiated three times by including this file into itself (ATTN_TEMPLATE): AVX-512
 * (target("avx512f")), AVX2+FMA (target("avx2,fma")) and a portable path on 4-wide GCC/Clang
 * vector extensions (SSE2 on x86-64, NEON on ARM). cpu_simd() picks one at run time (honouring
 * LLMTS_SIMD). exp() is a Cephes-style polynomial (relative error ~2e-7).
 *
 * Packed rows (segment starts). With seg (B*T ints), query t of row b sees keys seg[b*T+t] .. t
 * only (SFT packing: several examples share a row and never attend to each other). A tile whose
 * key block ends before the smallest segment start of its query block is skipped whole, in the
 * forward and in both backward modes alike (so the modes stay bit-identical); inside a tile the
 * columns before a row's segment start get P = 0 (vectors before it skipped, the rest of its
 * vector -inf scores zeroed after the exp), and a row that sees no key of the tile leaves its
 * running max and sum alone.
 *
 * Memory. Each pool thread has one scratch buffer, kept in static storage and grown on demand
 * by the calling thread before the kernels run, so steady-state calls do not allocate: a few
 * 64 x hs tiles and two 64 x 64 score tiles (64-160 KB for hs = 64), plus in the coarse/fused
 * modes the packed key side of every key block (2 or 5 tiles per 64 positions; ~400 KB for
 * T = 256, hs = 64 backward; these modes are used for T <= 4096 only). Like the thread pool
 * itself, this assumes calls come from one JavaScript thread at a time. */
#ifndef ATTN_TEMPLATE

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "napi_args.h"
#include "threadpool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define BLK 64
#define ALWAYS_INLINE inline __attribute__((always_inline))

typedef struct {
  const float *q, *k, *v, *out, *dout;
  float *o, *lse;        /* forward outputs */
  const float *lse_in;   /* backward input */
  float *dq, *dk, *dv;   /* backward outputs (accumulated), each may be NULL */
  int B, T, nHead, nKv, hs, group;
  int ld;                /* padded row length of packed tiles: hs rounded up to 16 */
  int nblk;              /* number of BLK-row blocks in T */
  long qRow, kvRow;      /* row strides of q-like and kv-like arrays */
  float scale;
  int coarse;            /* forward: one task per (b, h); backward: fused mode */
  const int32_t *seg;    /* per token (B*T): first key position it sees; NULL: causal (0) */
} attn_ctx;

/* The first key block any query of block qb (row b) sees: 0 without segments. */
static inline int first_kblock(const attn_ctx *c, int b, int qb) {
  if (!c->seg) return 0;
  const int q0 = qb * BLK, nq = c->T - q0 < BLK ? c->T - q0 : BLK;
  const int32_t *sg = c->seg + (long)b * c->T + q0;
  int lo = sg[0];
  for (int i = 1; i < nq; i++)
    if (sg[i] < lo) lo = sg[i];
  return lo / BLK;
}

/* Columns of key block k0.. that query row t (row b) must not see: seg[b*T+t] - k0, at least 0.
 * `segmented` is a constant in the tile kernels (instantiated for 0 and 1), so causal attention
 * compiles to the code it had before segments existed. */
static inline int masked_head(const attn_ctx *c, const int segmented, int b, int t, int k0) {
  if (!segmented) return 0;
  const int lo = c->seg[(long)b * c->T + t] - k0;
  return lo > 0 ? lo : 0;
}

/* ---- per-thread scratch ------------------------------------------------------------------ */

static float **scr_buf = NULL;
static size_t *scr_cap = NULL;
static int scr_n = 0;

/* Make sure each of the pool's threads has `floats` floats of 64-byte aligned scratch.
 * Runs on the calling thread before pool_run; returns 0 if memory ran out. */
static int ensure_scratch(size_t floats) {
  int n = pool_size();
  if (n > scr_n) {
    float **nb = (float **)realloc(scr_buf, (size_t)n * sizeof *nb);
    if (!nb) return 0;
    scr_buf = nb;
    size_t *nc = (size_t *)realloc(scr_cap, (size_t)n * sizeof *nc);
    if (!nc) return 0;
    scr_cap = nc;
    for (int i = scr_n; i < n; i++) {
      scr_buf[i] = NULL;
      scr_cap[i] = 0;
    }
    scr_n = n;
  }
  for (int i = 0; i < n; i++) {
    if (scr_cap[i] >= floats) continue;
    free(scr_buf[i]);
    scr_buf[i] = NULL;
    scr_cap[i] = 0;
    void *p = NULL;
    if (posix_memalign(&p, 64, floats * sizeof(float)) != 0) return 0;
    scr_buf[i] = (float *)p;
    scr_cap[i] = floats;
  }
  return 1;
}

/* ---- packing (plain C: memory movement only) --------------------------------------------- */

static inline int round16(int n) { return (n + 15) & ~15; }

/* dst[d*BLK + j] = src[j*stride + d] for j < n, d < hs; columns n..round16(n) zeroed. */
static void pack_transposed(float *dst, const float *src, long stride, int n, int hs) {
  for (int j = 0; j < n; j++) {
    const float *s = src + j * stride;
    for (int d = 0; d < hs; d++) dst[d * BLK + j] = s[d];
  }
  int n16 = round16(n);
  if (n16 > n)
    for (int d = 0; d < hs; d++) memset(dst + d * BLK + n, 0, (size_t)(n16 - n) * sizeof(float));
}

/* dst[j*ld + d] = src[j*stride + d] for j < n, d < hs; columns hs..ld zeroed. */
static void pack_rows(float *dst, const float *src, long stride, int n, int hs, int ld) {
  for (int j = 0; j < n; j++) {
    memcpy(dst + (size_t)j * ld, src + j * stride, (size_t)hs * sizeof(float));
    if (ld > hs) memset(dst + (size_t)j * ld + hs, 0, (size_t)(ld - hs) * sizeof(float));
  }
}

/* Ask for rows src[j*stride .. + hs), j < n, to be brought into cache (the next block's data
 * while the current one is computed: these strided rows are otherwise loaded cold). */
static void prefetch_rows(const float *src, long stride, int n, int hs) {
  for (int j = 0; j < n; j++)
    for (int d = 0; d < hs; d += 16) __builtin_prefetch(src + j * stride + d, 0, 3);
}

/* dst[j*stride + d] += acc[j*ld + d] */
static void add_rows(float *dst, long stride, const float *acc, int ld, int n, int hs) {
  for (int j = 0; j < n; j++) {
    float *o = dst + j * stride;
    const float *a = acc + (size_t)j * ld;
    for (int d = 0; d < hs; d++) o[d] += a[d];
  }
}

/* lanes 0..n-1 of a mask: load VL int32s starting at tail_tab + 16 - n */
static const int32_t tail_tab[32] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0};

/* Scratch layout, in floats (every part a multiple of 16 so all parts stay 64-byte aligned). */
/* forward: o, s, m, l, then per key block slot Kt and V rows */
static size_t fwd_scratch_floats(int ld, int slots) {
  return (size_t)BLK * ld + (size_t)BLK * BLK + 2 * BLK + (size_t)slots * 2 * BLK * ld;
}
/* backward: q rows, dout rows, dq tile, s, ds, lse, D, then per key block slot Kt, Vt, K rows,
 * dk and dv accumulators */
static size_t bwd_scratch_floats(int ld, int slots) {
  return 3 * (size_t)BLK * ld + 2 * (size_t)BLK * BLK + 2 * BLK + (size_t)slots * 5 * BLK * ld;
}
/* coarse tasks keep every key block of a sequence packed: only for T <= MAX_SLOTS * BLK */
#define MAX_SLOTS 64

/* Cephes expf coefficients */
#define EXP_HI 88.3762626647949f
#define EXP_LO -87.3f
#define LOG2EF 1.44269504088896341f
#define EXP_C1 0.693359375f
#define EXP_C2 -2.12194440e-4f
#define EXP_P0 1.9875691500E-4f
#define EXP_P1 1.3981999507E-3f
#define EXP_P2 8.3334519073E-3f
#define EXP_P3 4.1665795894E-2f
#define EXP_P4 1.6666665459E-1f
#define EXP_P5 5.0000001201E-1f
/* x*log2e + 1.5*2^23 rounds to the nearest integer n, and the float's bits are 0x4B400000 + n */
#define EXP_MAGIC 12582912.0f
#define EXP_MAGIC_BITS 0x4B400000

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SFX)

/* ==== AVX-512 ============================================================================= */
#if defined(__x86_64__)
#define TGT __attribute__((target("avx512f")))
#define SFX _avx512
#define VL 16
#define NVA 4 /* key vectors per score-kernel call: 4 rows x 4 vectors = 16 accumulators */
#define NVB 4 /* head-dim vectors per accumulate-kernel call */
typedef __m512 vf_avx512;
typedef __mmask16 vm_avx512;
#define vf vf_avx512
#define vmask vm_avx512
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, x) _mm512_storeu_ps(p, x)
#define VSET1(x) _mm512_set1_ps(x)
#define VZERO() _mm512_setzero_ps()
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUB(a, b) _mm512_sub_ps(a, b)
#define VMAX(a, b) _mm512_max_ps(a, b)
#define VTAIL(n) ((__mmask16)((1u << (n)) - 1u))
#define VBLEND(m, a, b) _mm512_mask_blend_ps(m, a, b) /* lanes in m from b, others from a */
#define VHSUM(x) _mm512_reduce_add_ps(x)
#define VHMAX(x) _mm512_reduce_max_ps(x)
#define VEXP(x) exp_avx512(x)
static ALWAYS_INLINE TGT __m512 exp_avx512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(EXP_LO)), _mm512_set1_ps(EXP_HI));
  __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(LOG2EF), _mm512_set1_ps(EXP_MAGIC));
  __m512 fx = _mm512_sub_ps(t, _mm512_set1_ps(EXP_MAGIC));
  __m512i n = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(EXP_MAGIC_BITS));
  __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(EXP_C1), x);
  r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(EXP_C2), r);
  __m512 y = _mm512_set1_ps(EXP_P0);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(EXP_P1));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(EXP_P2));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(EXP_P3));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(EXP_P4));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(EXP_P5));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  __m512i e = _mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}
#define ATTN_TEMPLATE
#include "attention.c"
#undef ATTN_TEMPLATE
#undef TGT
#undef SFX
#undef VL
#undef NVA
#undef NVB
#undef vf
#undef vmask
#undef VLOAD
#undef VSTORE
#undef VSET1
#undef VZERO
#undef VFMA
#undef VMUL
#undef VADD
#undef VSUB
#undef VMAX
#undef VTAIL
#undef VBLEND
#undef VHSUM
#undef VHMAX
#undef VEXP

/* ==== AVX2 + FMA ========================================================================== */
#define TGT __attribute__((target("avx2,fma")))
#define SFX _avx2
#define VL 8
#define NVA 2 /* 4 rows x 2 vectors = 8 accumulators of the 16 ymm registers */
#define NVB 2
typedef __m256 vf_avx2;
typedef __m256 vm_avx2;
#define vf vf_avx2
#define vmask vm_avx2
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, x) _mm256_storeu_ps(p, x)
#define VSET1(x) _mm256_set1_ps(x)
#define VZERO() _mm256_setzero_ps()
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VMAX(a, b) _mm256_max_ps(a, b)
#define VTAIL(n) _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(tail_tab + 16 - (n))))
#define VBLEND(m, a, b) _mm256_blendv_ps(a, b, m)
#define VHSUM(x) hsum_avx2(x)
#define VHMAX(x) hmax_avx2(x)
#define VEXP(x) exp_avx2(x)
static ALWAYS_INLINE TGT float hsum_avx2(__m256 x) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
static ALWAYS_INLINE TGT float hmax_avx2(__m256 x) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
static ALWAYS_INLINE TGT __m256 exp_avx2(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(EXP_LO)), _mm256_set1_ps(EXP_HI));
  __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2EF), _mm256_set1_ps(EXP_MAGIC));
  __m256 fx = _mm256_sub_ps(t, _mm256_set1_ps(EXP_MAGIC));
  __m256i n = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(EXP_MAGIC_BITS));
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(EXP_C1), x);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(EXP_C2), r);
  __m256 y = _mm256_set1_ps(EXP_P0);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P1));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P2));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P3));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P4));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P5));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}
#define ATTN_TEMPLATE
#include "attention.c"
#undef ATTN_TEMPLATE
#undef TGT
#undef SFX
#undef VL
#undef NVA
#undef NVB
#undef vf
#undef vmask
#undef VLOAD
#undef VSTORE
#undef VSET1
#undef VZERO
#undef VFMA
#undef VMUL
#undef VADD
#undef VSUB
#undef VMAX
#undef VTAIL
#undef VBLEND
#undef VHSUM
#undef VHMAX
#undef VEXP
#endif /* __x86_64__ */

/* ==== portable: 4-wide vector extensions ================================================== */
#define TGT
#define SFX _portable
#define VL 4
#define NVA 2
#define NVB 2
typedef float vf_portable __attribute__((vector_size(16)));
typedef int32_t vi_portable __attribute__((vector_size(16)));
#define vf vf_portable
#define vmask vi_portable
static inline vf_portable load_portable(const float *p) {
  vf_portable x;
  memcpy(&x, p, sizeof x);
  return x;
}
static inline void store_portable(float *p, vf_portable x) { memcpy(p, &x, sizeof x); }
static inline vf_portable set1_portable(float x) { return (vf_portable){x, x, x, x}; }
/* lanes in m from b, others from a */
static inline vf_portable blend_portable(vi_portable m, vf_portable a, vf_portable b) {
  return (vf_portable)((m & (vi_portable)b) | (~m & (vi_portable)a));
}
static inline vf_portable max_portable(vf_portable a, vf_portable b) { return blend_portable(b > a, a, b); }
static inline vf_portable min_portable(vf_portable a, vf_portable b) { return blend_portable(b < a, a, b); }
static inline vi_portable tail_portable(int n) {
  vi_portable m;
  memcpy(&m, tail_tab + 16 - n, sizeof m);
  return m;
}
static inline float hsum_portable(vf_portable x) { return (x[0] + x[2]) + (x[1] + x[3]); }
static inline float hmax_portable(vf_portable x) {
  float a = x[0] > x[2] ? x[0] : x[2], b = x[1] > x[3] ? x[1] : x[3];
  return a > b ? a : b;
}
static inline vf_portable exp_portable(vf_portable x) {
  x = min_portable(max_portable(x, set1_portable(EXP_LO)), set1_portable(EXP_HI));
  vf_portable t = x * LOG2EF + EXP_MAGIC;
  vf_portable fx = t - EXP_MAGIC;
  vi_portable n = (vi_portable)t - EXP_MAGIC_BITS;
  vf_portable r = x - fx * EXP_C1;
  r = r - fx * EXP_C2;
  vf_portable y = r * EXP_P0 + EXP_P1;
  y = y * r + EXP_P2;
  y = y * r + EXP_P3;
  y = y * r + EXP_P4;
  y = y * r + EXP_P5;
  y = y * (r * r) + (r + 1.0f);
  return y * (vf_portable)((n + 127) << 23);
}
#define VLOAD(p) load_portable(p)
#define VSTORE(p, x) store_portable(p, x)
#define VSET1(x) set1_portable(x)
#define VZERO() set1_portable(0.0f)
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VMUL(a, b) ((a) * (b))
#define VADD(a, b) ((a) + (b))
#define VSUB(a, b) ((a) - (b))
#define VMAX(a, b) max_portable(a, b)
#define VTAIL(n) tail_portable(n)
#define VBLEND(m, a, b) blend_portable(m, a, b)
#define VHSUM(x) hsum_portable(x)
#define VHMAX(x) hmax_portable(x)
#define VEXP(x) exp_portable(x)
#define ATTN_TEMPLATE
#include "attention.c"
#undef ATTN_TEMPLATE

/* ---- dispatch ------------------------------------------------------------------------------ */

typedef struct {
  pool_task_fn fwd, bwd_fused, bwd_kv, bwd_q;
} attn_impl;

static attn_impl pick_impl(void) {
  attn_impl im = {fwd_task_portable, bwd_fused_task_portable, bwd_kv_task_portable, bwd_q_task_portable};
#if defined(__x86_64__)
  switch (cpu_simd()) {
    case SIMD_AVX512:
      im = (attn_impl){fwd_task_avx512, bwd_fused_task_avx512, bwd_kv_task_avx512, bwd_q_task_avx512};
      break;
    case SIMD_AVX2:
      im = (attn_impl){fwd_task_avx2, bwd_fused_task_avx2, bwd_kv_task_avx2, bwd_q_task_avx2};
      break;
    default: break;
  }
#endif
  return im;
}

/* ---- N-API wrappers ------------------------------------------------------------------------ */

static int throw_type(napi_env env, const char *fname, const char *msg) {
  char buf[200];
  snprintf(buf, sizeof buf, "llmts native %s: %s", fname, msg);
  napi_throw_type_error(env, NULL, buf);
  return 0;
}

/* Reads B, T, nHead, nKvHead, headDim, scale from argument `first` on and checks them. */
static int read_shape(args_t *a, size_t first, const char *fname, attn_ctx *c, size_t *nq, size_t *nkv,
                      size_t *nlse) {
  int64_t B = arg_int(a, first), T = arg_int(a, first + 1), nHead = arg_int(a, first + 2);
  int64_t nKv = arg_int(a, first + 3), hs = arg_int(a, first + 4);
  double scale = arg_f64(a, first + 5);
  if (a->failed) return 0;
  if (B < 0 || T < 0 || nHead < 1 || nKv < 1 || hs < 1)
    return throw_type(a->env, fname, "B, T must be >= 0 and nHead, nKvHead, headDim >= 1");
  if (nHead % nKv != 0) return throw_type(a->env, fname, "nHead must be a multiple of nKvHead");
  if (T > (1 << 24) || hs > (1 << 16) || nHead > (1 << 16) || B > (1 << 24) ||
      (double)B * (double)T * (double)nHead * (double)hs > 9e15 ||
      (double)B * (double)nHead * (double)((T + BLK - 1) / BLK) > 2e9) /* task counts are ints */
    return throw_type(a->env, fname, "shape is too large");
  c->B = (int)B;
  c->T = (int)T;
  c->nHead = (int)nHead;
  c->nKv = (int)nKv;
  c->hs = (int)hs;
  c->group = (int)(nHead / nKv);
  c->ld = round16((int)hs);
  c->nblk = (int)((T + BLK - 1) / BLK);
  c->qRow = (long)nHead * (long)hs;
  c->kvRow = (long)nKv * (long)hs;
  c->scale = (float)scale;
  *nq = (size_t)(B * T * nHead * hs);
  *nkv = (size_t)(B * T * nKv * hs);
  *nlse = (size_t)(B * nHead * T);
  return 1;
}

/* Optional argument i: segment starts (B*T ints, each in [0, t]) or null; 0 (thrown) if invalid. */
static int read_segments(args_t *a, size_t i, const char *fname, attn_ctx *c) {
  c->seg = arg_i32_or_null(a, i, (size_t)c->B * (size_t)c->T);
  if (a->failed) return 0;
  if (!c->seg) return 1;
  for (long r = 0; r < (long)c->B * c->T; r++) {
    const int t = (int)(r % c->T);
    if (c->seg[r] < 0 || c->seg[r] > t) {
      char buf[200];
      snprintf(buf, sizeof buf, "llmts native %s: segmentStart[%ld] = %d must lie in [0, %d] (the token's position in its row)",
               fname, r, (int)c->seg[r], t);
      napi_throw_range_error(a->env, NULL, buf);
      return 0;
    }
  }
  return 1;
}

/* attentionForward(q, k, v, out, lse, B, T, nHead, nKvHead, headDim, scale[, segmentStart]) */
static napi_value js_attention_forward(napi_env env, napi_callback_info info) {
  static const char *name = "attentionForward";
  args_t a;
  if (!args_init(&a, env, info, 11, name)) return NULL;
  attn_ctx c;
  memset(&c, 0, sizeof c);
  size_t nq, nkv, nlse;
  if (!read_shape(&a, 5, name, &c, &nq, &nkv, &nlse)) return NULL;
  c.q = arg_f32(&a, 0, nq, 0);
  c.k = arg_f32(&a, 1, nkv, 0);
  c.v = arg_f32(&a, 2, nkv, 0);
  c.o = arg_f32(&a, 3, nq, 0);
  c.lse = arg_f32(&a, 4, nlse, 0);
  if (a.failed || !read_segments(&a, 11, name, &c)) return NULL;
  if (c.B == 0 || c.T == 0) return make_undefined(env);
  /* one task per (b, h) when there are enough of them, else per (b, h, query block) */
  c.coarse = c.nblk <= MAX_SLOTS && (pool_size() == 1 || c.B * c.nHead >= 4 * pool_size());
  if (!ensure_scratch(fwd_scratch_floats(c.ld, c.coarse ? c.nblk : 1))) {
    napi_throw_error(env, NULL, "llmts native attentionForward: out of memory");
    return NULL;
  }
  pool_run(pick_impl().fwd, &c, c.B * c.nHead * (c.coarse ? 1 : c.nblk));
  return make_undefined(env);
}

/* attentionBackward(q, k, v, out, lse, dout, dq, dk, dv, B, T, nHead, nKvHead, headDim, scale[, segmentStart]) */
static napi_value js_attention_backward(napi_env env, napi_callback_info info) {
  static const char *name = "attentionBackward";
  args_t a;
  if (!args_init(&a, env, info, 15, name)) return NULL;
  attn_ctx c;
  memset(&c, 0, sizeof c);
  size_t nq, nkv, nlse;
  if (!read_shape(&a, 9, name, &c, &nq, &nkv, &nlse)) return NULL;
  c.q = arg_f32(&a, 0, nq, 0);
  c.k = arg_f32(&a, 1, nkv, 0);
  c.v = arg_f32(&a, 2, nkv, 0);
  c.out = arg_f32(&a, 3, nq, 0);
  c.lse_in = arg_f32(&a, 4, nlse, 0);
  c.dout = arg_f32(&a, 5, nq, 0);
  c.dq = arg_f32(&a, 6, nq, 1);
  c.dk = arg_f32(&a, 7, nkv, 1);
  c.dv = arg_f32(&a, 8, nkv, 1);
  if (a.failed || !read_segments(&a, 15, name, &c)) return NULL;
  if (c.B == 0 || c.T == 0 || (!c.dq && !c.dk && !c.dv)) return make_undefined(env);
  /* fused mode when there are enough (b, kv head) pairs, else the two-pass split mode */
  const int pairs = c.B * c.nKv;
  c.coarse = c.nblk <= MAX_SLOTS && (pool_size() == 1 || pairs >= 4 * pool_size());
  if (!ensure_scratch(bwd_scratch_floats(c.ld, c.coarse ? c.nblk : 1))) {
    napi_throw_error(env, NULL, "llmts native attentionBackward: out of memory");
    return NULL;
  }
  attn_impl im = pick_impl();
  if (c.coarse) {
    pool_run(im.bwd_fused, &c, pairs);
  } else {
    if (c.dk || c.dv) pool_run(im.bwd_kv, &c, pairs * c.nblk);
    if (c.dq) pool_run(im.bwd_q, &c, c.B * c.nHead * c.nblk);
  }
  return make_undefined(env);
}

const export_t attention_exports[] = {
    {"attentionForward", js_attention_forward},
    {"attentionBackward", js_attention_backward},
    {NULL, NULL},
};

#else /* ATTN_TEMPLATE ========================================================================
 * The tile kernels, compiled once per SIMD level. Provided by the includer: TGT (target
 * attribute), SFX (name suffix), VL (lanes), NVA/NVB (vectors per kernel call), vf/vmask types
 * and the V* operation macros. */

/* ---- kernel A: C[r][c] = sum_d a_r[d] * bt[d*BLK + c] for 4 rows, nv (<= 4) vectors of c ---- */
static ALWAYS_INLINE TGT void FN(kern_a_nv)(const float *a0, const float *a1, const float *a2, const float *a3,
                                             const float *bt, int hs, float *c, const int nv) {
  vf acc0[4], acc1[4], acc2[4], acc3[4];
  for (int v = 0; v < nv; v++) acc0[v] = acc1[v] = acc2[v] = acc3[v] = VZERO();
  for (int d = 0; d < hs; d++) {
    const float *b = bt + (size_t)d * BLK;
    vf bv[4];
    for (int v = 0; v < nv; v++) bv[v] = VLOAD(b + v * VL);
    vf x = VSET1(a0[d]);
    for (int v = 0; v < nv; v++) acc0[v] = VFMA(x, bv[v], acc0[v]);
    x = VSET1(a1[d]);
    for (int v = 0; v < nv; v++) acc1[v] = VFMA(x, bv[v], acc1[v]);
    x = VSET1(a2[d]);
    for (int v = 0; v < nv; v++) acc2[v] = VFMA(x, bv[v], acc2[v]);
    x = VSET1(a3[d]);
    for (int v = 0; v < nv; v++) acc3[v] = VFMA(x, bv[v], acc3[v]);
  }
  for (int v = 0; v < nv; v++) {
    VSTORE(c + v * VL, acc0[v]);
    VSTORE(c + BLK + v * VL, acc1[v]);
    VSTORE(c + 2 * BLK + v * VL, acc2[v]);
    VSTORE(c + 3 * BLK + v * VL, acc3[v]);
  }
}

/* Score-like tile rows r0..r0+3 (row r at a + r*lda; rows >= nrows repeat the last one, their
 * results land in unused tile rows), first nvec vectors of columns. */
static TGT void FN(kern_a)(const float *a, long lda, int r0, int nrows, const float *bt, int hs, float *c,
                           int nvec) {
  const float *a0 = a + r0 * lda;
  const float *a1 = a + (r0 + 1 < nrows ? r0 + 1 : nrows - 1) * lda;
  const float *a2 = a + (r0 + 2 < nrows ? r0 + 2 : nrows - 1) * lda;
  const float *a3 = a + (r0 + 3 < nrows ? r0 + 3 : nrows - 1) * lda;
  float *cr = c + (size_t)r0 * BLK;
  int v0 = 0;
  for (; v0 + NVA <= nvec; v0 += NVA) FN(kern_a_nv)(a0, a1, a2, a3, bt + v0 * VL, hs, cr + v0 * VL, NVA);
  switch (nvec - v0) {
    case 1: FN(kern_a_nv)(a0, a1, a2, a3, bt + v0 * VL, hs, cr + v0 * VL, 1); break;
    case 2: FN(kern_a_nv)(a0, a1, a2, a3, bt + v0 * VL, hs, cr + v0 * VL, 2); break;
    case 3: FN(kern_a_nv)(a0, a1, a2, a3, bt + v0 * VL, hs, cr + v0 * VL, 3); break;
    default: break;
  }
}

/* ---- kernel B: acc[r*ld + :] += sum_{x0 <= x < x1} w[r*wr + x*wx] * m[x*ld + :], 4 rows ---- */
static ALWAYS_INLINE TGT void FN(kern_b_nv)(const float *w, int wr, int wx, int x0, int x1, const float *m,
                                             int ld, float *acc, const int nv) {
  vf c0[4], c1[4], c2[4], c3[4];
  for (int v = 0; v < nv; v++) {
    c0[v] = VLOAD(acc + v * VL);
    c1[v] = VLOAD(acc + ld + v * VL);
    c2[v] = VLOAD(acc + 2 * ld + v * VL);
    c3[v] = VLOAD(acc + 3 * ld + v * VL);
  }
  for (int x = x0; x < x1; x++) {
    const float *mr = m + (size_t)x * ld;
    const float *wp = w + (size_t)x * wx;
    vf bv[4];
    for (int v = 0; v < nv; v++) bv[v] = VLOAD(mr + v * VL);
    vf s = VSET1(wp[0]);
    for (int v = 0; v < nv; v++) c0[v] = VFMA(s, bv[v], c0[v]);
    s = VSET1(wp[wr]);
    for (int v = 0; v < nv; v++) c1[v] = VFMA(s, bv[v], c1[v]);
    s = VSET1(wp[2 * wr]);
    for (int v = 0; v < nv; v++) c2[v] = VFMA(s, bv[v], c2[v]);
    s = VSET1(wp[3 * wr]);
    for (int v = 0; v < nv; v++) c3[v] = VFMA(s, bv[v], c3[v]);
  }
  for (int v = 0; v < nv; v++) {
    VSTORE(acc + v * VL, c0[v]);
    VSTORE(acc + ld + v * VL, c1[v]);
    VSTORE(acc + 2 * ld + v * VL, c2[v]);
    VSTORE(acc + 3 * ld + v * VL, c3[v]);
  }
}

/* w points at the weight of row 0, x = 0; hv vectors per row (ceil(hs / VL)). */
static TGT void FN(kern_b)(const float *w, int wr, int wx, int x0, int x1, const float *m, int ld, float *acc,
                           int hv) {
  if (x1 <= x0) return;
  int v0 = 0;
  for (; v0 + NVB <= hv; v0 += NVB) FN(kern_b_nv)(w, wr, wx, x0, x1, m + v0 * VL, ld, acc + v0 * VL, NVB);
  switch (hv - v0) {
    case 1: FN(kern_b_nv)(w, wr, wx, x0, x1, m + v0 * VL, ld, acc + v0 * VL, 1); break;
    case 2: FN(kern_b_nv)(w, wr, wx, x0, x1, m + v0 * VL, ld, acc + v0 * VL, 2); break;
    case 3: FN(kern_b_nv)(w, wr, wx, x0, x1, m + v0 * VL, ld, acc + v0 * VL, 3); break;
    default: break;
  }
}

/* Score vectors a row group needs: on a diagonal tile row i sees keys 0..i only. */
static inline int FN(group_vecs)(int diag, int r0, int nk) {
  int cols = nk;
  if (diag && r0 + 4 < cols) cols = r0 + 4;
  return (cols + VL - 1) / VL;
}

/* ---- forward ------------------------------------------------------------------------------- */

/* Query block qb of (b, h) against key blocks 0..qb. Key block kb is packed (Kt, then V rows)
 * at kv + slot*2*BLK*ld; with all_slots, slot = kb and blocks below qb are packed already (the
 * caller walks qb upwards), otherwise everything goes through slot 0. */
static ALWAYS_INLINE TGT void FN(fwd_qblock_body)(const attn_ctx *c, float *base, int b, int h, int qb, int all_slots,
                                                  const int segmented) {
  const int hs = c->hs, ld = c->ld, T = c->T, hv = (hs + VL - 1) / VL, g = h / c->group;
  const int q0 = qb * BLK, nq = T - q0 < BLK ? T - q0 : BLK;
  float *o = base;
  float *s = o + (size_t)BLK * ld;
  float *mrow = s + (size_t)BLK * BLK;
  float *lrow = mrow + BLK;
  float *kv = lrow + BLK;

  const float *qa = c->q + ((long)b * T + q0) * c->qRow + (long)h * hs;
  memset(o, 0, (size_t)BLK * ld * sizeof(float));
  for (int i = 0; i < nq; i++) {
    mrow[i] = -INFINITY;
    lrow[i] = 0.0f;
  }
  const vf vscale = VSET1(c->scale), vninf = VSET1(-INFINITY), vzero = VZERO();

  for (int kb = first_kblock(c, b, qb); kb <= qb; kb++) {
    const int k0 = kb * BLK, nk = T - k0 < BLK ? T - k0 : BLK, diag = kb == qb;
    float *kt = kv + (size_t)(all_slots ? kb : 0) * 2 * BLK * ld;
    float *vp = kt + (size_t)BLK * ld;
    if (!all_slots || diag) {
      const long kvoff = ((long)b * T + k0) * c->kvRow + (long)g * hs;
      pack_transposed(kt, c->k + kvoff, c->kvRow, nk, hs);
      pack_rows(vp, c->v + kvoff, c->kvRow, nk, hs, ld);
      if (all_slots && k0 + BLK < T) {
        const int nn = T - k0 - BLK < BLK ? T - k0 - BLK : BLK;
        prefetch_rows(c->k + kvoff + BLK * c->kvRow, c->kvRow, nn, hs);
        prefetch_rows(c->v + kvoff + BLK * c->kvRow, c->kvRow, nn, hs);
      }
    }
    const int wv = (nk + VL - 1) / VL;

    for (int r0 = 0; r0 < nq; r0 += 4) FN(kern_a)(qa, c->qRow, r0, nq, kt, hs, s, FN(group_vecs)(diag, r0, nk));

    /* online softmax, row by row (columns lo..ncols-1 are seen: lo > 0 only in packed rows) */
    for (int i = 0; i < nq; i++) {
      float *row = s + (size_t)i * BLK;
      const int ncols = diag ? i + 1 : nk, nfull = ncols / VL, rem = ncols % VL, nvi = nfull + (rem > 0);
      const int lo = masked_head(c, segmented, b, q0 + i, k0);
      if (lo >= ncols) { /* another example's keys only: P = 0, running max and sum unchanged */
        for (int v = 0; v < wv; v++) VSTORE(row + v * VL, vzero);
        continue;
      }
      /* whole vectors before lo are skipped; the columns of lo's vector before lo get -inf now and
       * exactly 0 after the exp (kept out of the vector loops, which the causal case runs alone) */
      const int vlo = lo / VL;
      for (int v = 0; v < vlo; v++) VSTORE(row + v * VL, vzero);
      for (int j = vlo * VL; j < lo; j++) row[j] = -INFINITY;
      vf vmax = vninf;
      for (int v = vlo; v < nvi; v++) {
        vf x = VMUL(VLOAD(row + v * VL), vscale);
        if (v == nfull) x = VBLEND(VTAIL(rem), vninf, x);
        VSTORE(row + v * VL, x);
        vmax = VMAX(vmax, x);
      }
      const float mold = mrow[i];
      float mnew = VHMAX(vmax);
      if (mold > mnew) mnew = mold;
      const vf vm = VSET1(mnew);
      vf vsum = VZERO();
      for (int v = vlo; v < nvi; v++) {
        vf p = VEXP(VSUB(VLOAD(row + v * VL), vm));
        if (v == nfull) p = VBLEND(VTAIL(rem), vzero, p);
        VSTORE(row + v * VL, p);
        vsum = VADD(vsum, p);
      }
      /* (the sum took exp's floor, ~1e-38, for each of these: below any sum's rounding) */
      for (int j = vlo * VL; j < lo; j++) row[j] = 0.0f;
      for (int v = nvi; v < wv; v++) VSTORE(row + v * VL, vzero);
      const float corr = expf(mold - mnew);
      lrow[i] = lrow[i] * corr + VHSUM(vsum);
      mrow[i] = mnew;
      if (kb > 0 && corr != 1.0f) {
        float *orow = o + (size_t)i * ld;
        const vf vc = VSET1(corr);
        for (int v = 0; v < hv; v++) VSTORE(orow + v * VL, VMUL(VLOAD(orow + v * VL), vc));
      }
    }

    /* o += P v */
    for (int r0 = 0; r0 < nq; r0 += 4) {
      int x1 = diag && r0 + 4 < nk ? r0 + 4 : nk;
      FN(kern_b)(s + (size_t)r0 * BLK, BLK, 1, 0, x1, vp, ld, o + (size_t)r0 * ld, hv);
    }
  }

  float *outp = c->o + ((long)b * T + q0) * c->qRow + (long)h * hs;
  float *lse = c->lse + ((long)b * c->nHead + h) * T + q0;
  for (int i = 0; i < nq; i++) {
    const float inv = 1.0f / lrow[i];
    const float *orow = o + (size_t)i * ld;
    float *dst = outp + i * c->qRow;
    for (int d = 0; d < hs; d++) dst[d] = orow[d] * inv;
    lse[i] = mrow[i] + logf(lrow[i]);
  }
}

static TGT void FN(fwd_qblock)(const attn_ctx *c, float *base, int b, int h, int qb, int all_slots) {
  if (c->seg) FN(fwd_qblock_body)(c, base, b, h, qb, all_slots, 1);
  else FN(fwd_qblock_body)(c, base, b, h, qb, all_slots, 0);
}

/* coarse: task = (b, h), every key block packed once; fine: task = (query block, b, h), the
 * heaviest (last) query blocks first. Both compute identical values. */
static TGT void FN(fwd_task)(void *vctx, int task, int thread) {
  const attn_ctx *c = (const attn_ctx *)vctx;
  if (c->coarse) {
    for (int qb = 0; qb < c->nblk; qb++) FN(fwd_qblock)(c, scr_buf[thread], task / c->nHead, task % c->nHead, qb, 1);
  } else {
    const int bh_count = c->B * c->nHead, bh = task % bh_count;
    FN(fwd_qblock)(c, scr_buf[thread], bh / c->nHead, bh % c->nHead, c->nblk - 1 - task / bh_count, 0);
  }
}

/* ---- backward ------------------------------------------------------------------------------ */

/* the query side of the tile in hand, and one key block's packed data and dk/dv accumulators */
typedef struct {
  float *qp, *dop, *dqt, *s, *ds, *lse, *dd;
} FN(qside);
typedef struct {
  float *kt, *vt, *kp, *dka, *dva;
} FN(kslot);

static inline FN(qside) FN(qside_at)(float *base, int ld) {
  FN(qside) w;
  const size_t tile = (size_t)BLK * ld;
  w.qp = base;
  w.dop = w.qp + tile;
  w.dqt = w.dop + tile;
  w.s = w.dqt + tile;
  w.ds = w.s + (size_t)BLK * BLK;
  w.lse = w.ds + (size_t)BLK * BLK;
  w.dd = w.lse + BLK;
  return w;
}

static inline FN(kslot) FN(kslot_at)(float *base, int ld, int slot) {
  FN(kslot) k;
  const size_t tile = (size_t)BLK * ld;
  k.kt = base + 3 * tile + 2 * (size_t)BLK * BLK + 2 * BLK + (size_t)slot * 5 * tile;
  k.vt = k.kt + tile;
  k.kp = k.vt + tile;
  k.dka = k.kp + tile;
  k.dva = k.dka + tile;
  return k;
}

/* Pack key block kb of (b, kv head g): Kt always, Vt when dP is needed, K rows when dq is
 * wanted; zero the dk/dv accumulators that are wanted. */
static void FN(pack_kside)(const attn_ctx *c, FN(kslot) * k, int b, int g, int kb, int need_dp, int want_dq,
                           int zero_acc) {
  const int k0 = kb * BLK, nk = c->T - k0 < BLK ? c->T - k0 : BLK;
  const long off = ((long)b * c->T + k0) * c->kvRow + (long)g * c->hs;
  pack_transposed(k->kt, c->k + off, c->kvRow, nk, c->hs);
  if (need_dp) pack_transposed(k->vt, c->v + off, c->kvRow, nk, c->hs);
  if (want_dq) pack_rows(k->kp, c->k + off, c->kvRow, nk, c->hs, c->ld);
  if (zero_acc && c->dk) memset(k->dka, 0, (size_t)BLK * c->ld * sizeof(float));
  if (zero_acc && c->dv) memset(k->dva, 0, (size_t)BLK * c->ld * sizeof(float));
}

/* Pack query block qb of (b, h): q rows when dk is wanted, dout rows when dv is wanted, the
 * saved lse and D = dout . out; zero the dq tile when dq is wanted. */
static void FN(pack_qside)(const attn_ctx *c, FN(qside) * w, int b, int h, int qb, int want_dk, int want_dv,
                           int want_dq) {
  const int q0 = qb * BLK, nq = c->T - q0 < BLK ? c->T - q0 : BLK, hs = c->hs;
  const long off = ((long)b * c->T + q0) * c->qRow + (long)h * hs;
  if (want_dk) pack_rows(w->qp, c->q + off, c->qRow, nq, hs, c->ld);
  if (want_dv) pack_rows(w->dop, c->dout + off, c->qRow, nq, hs, c->ld);
  if (want_dq) memset(w->dqt, 0, (size_t)BLK * c->ld * sizeof(float));
  const float *lse = c->lse_in + ((long)b * c->nHead + h) * c->T + q0;
  for (int i = 0; i < nq; i++) {
    const float *dor = c->dout + off + i * c->qRow, *orow = c->out + off + i * c->qRow;
    float dsum = 0.0f;
    for (int d = 0; d < hs; d++) dsum += dor[d] * orow[d];
    w->dd[i] = dsum;
    w->lse[i] = lse[i];
  }
}

/* One tile: query block qb of head h (packed in w) against key block kb (packed in k).
 * Accumulates into k->dva, k->dka and w->dqt as wanted. */
static ALWAYS_INLINE TGT void FN(bwd_tile_body)(const attn_ctx *c, FN(qside) * w, FN(kslot) * k, int b, int h, int qb,
                                                int kb, int want_dq, int want_dk, int want_dv, const int segmented) {
  const int T = c->T, hs = c->hs, ld = c->ld, hv = (hs + VL - 1) / VL;
  const int q0 = qb * BLK, nq = T - q0 < BLK ? T - q0 : BLK;
  const int k0 = kb * BLK, nk = T - k0 < BLK ? T - k0 : BLK, diag = kb == qb;
  const int need_dp = want_dq || want_dk, wv = (nk + VL - 1) / VL;
  const long off = ((long)b * T + q0) * c->qRow + (long)h * hs;
  float *s = w->s, *ds = w->ds;

  /* S = q k^T and dP = dout v^T, with the forward's kernel and packing */
  for (int r0 = 0; r0 < nq; r0 += 4) {
    const int nv = FN(group_vecs)(diag, r0, nk);
    FN(kern_a)(c->q + off, c->qRow, r0, nq, k->kt, hs, s, nv);
    if (need_dp) FN(kern_a)(c->dout + off, c->qRow, r0, nq, k->vt, hs, ds, nv);
  }

  /* P = exp(scale s - lse), dS = P (dP - D) scale; masked entries are exactly 0 */
  const vf vscale = VSET1(c->scale), vzero = VZERO();
  for (int i = 0; i < nq; i++) {
    float *row = s + (size_t)i * BLK, *drow = ds + (size_t)i * BLK;
    const int ncols = diag ? i + 1 : nk, nfull = ncols / VL, rem = ncols % VL;
    /* columns before lo belong to another example (packed rows): P = dS = 0 there (whole vectors
     * skipped; in lo's vector -inf scores, then zeroed after the exp, as in the forward) */
    const int lo = masked_head(c, segmented, b, q0 + i, k0), all = lo >= ncols;
    const int nvi = all ? 0 : nfull + (rem > 0), vlo = all ? 0 : lo / VL, head = all ? 0 : lo;
    for (int v = 0; v < vlo; v++) {
      VSTORE(row + v * VL, vzero);
      if (need_dp) VSTORE(drow + v * VL, vzero);
    }
    for (int j = vlo * VL; j < head; j++) row[j] = -INFINITY;
    const vf vl = VSET1(w->lse[i]), vd = VSET1(w->dd[i]);
    for (int v = vlo; v < nvi; v++) {
      vf p = VEXP(VSUB(VMUL(VLOAD(row + v * VL), vscale), vl));
      if (v == nfull) p = VBLEND(VTAIL(rem), vzero, p);
      VSTORE(row + v * VL, p);
      if (need_dp) VSTORE(drow + v * VL, VMUL(VMUL(p, VSUB(VLOAD(drow + v * VL), vd)), vscale));
    }
    for (int j = vlo * VL; j < head; j++) {
      row[j] = 0.0f;
      if (need_dp) drow[j] = 0.0f;
    }
    for (int v = nvi; v < wv; v++) {
      VSTORE(row + v * VL, vzero);
      if (need_dp) VSTORE(drow + v * VL, vzero);
    }
  }

  /* dV[j] += sum_i P[i][j] dout[i];  dK[j] += sum_i dS[i][j] q[i]  (diagonal: only i >= j) */
  for (int j0 = 0; j0 < nk; j0 += 4) {
    const int x0 = diag ? j0 : 0;
    if (want_dv) FN(kern_b)(s + j0, 1, BLK, x0, nq, w->dop, ld, k->dva + (size_t)j0 * ld, hv);
    if (want_dk) FN(kern_b)(ds + j0, 1, BLK, x0, nq, w->qp, ld, k->dka + (size_t)j0 * ld, hv);
  }
  /* dQ[i] += sum_j dS[i][j] k[j] */
  if (want_dq) {
    for (int r0 = 0; r0 < nq; r0 += 4) {
      int x1 = diag && r0 + 4 < nk ? r0 + 4 : nk;
      FN(kern_b)(ds + (size_t)r0 * BLK, BLK, 1, 0, x1, k->kp, ld, w->dqt + (size_t)r0 * ld, hv);
    }
  }
}

static TGT void FN(bwd_tile)(const attn_ctx *c, FN(qside) * w, FN(kslot) * k, int b, int h, int qb, int kb,
                             int want_dq, int want_dk, int want_dv) {
  if (c->seg) FN(bwd_tile_body)(c, w, k, b, h, qb, kb, want_dq, want_dk, want_dv, 1);
  else FN(bwd_tile_body)(c, w, k, b, h, qb, kb, want_dq, want_dk, want_dv, 0);
}

static void FN(add_dq)(const attn_ctx *c, const FN(qside) * w, int b, int h, int qb) {
  const int q0 = qb * BLK, nq = c->T - q0 < BLK ? c->T - q0 : BLK;
  add_rows(c->dq + ((long)b * c->T + q0) * c->qRow + (long)h * c->hs, c->qRow, w->dqt, c->ld, nq, c->hs);
}

static void FN(add_dkdv)(const attn_ctx *c, const FN(kslot) * k, int b, int g, int kb) {
  const int k0 = kb * BLK, nk = c->T - k0 < BLK ? c->T - k0 : BLK;
  const long off = ((long)b * c->T + k0) * c->kvRow + (long)g * c->hs;
  if (c->dk) add_rows(c->dk + off, c->kvRow, k->dka, c->ld, nk, c->hs);
  if (c->dv) add_rows(c->dv + off, c->kvRow, k->dva, c->ld, nk, c->hs);
}

/* fused mode: task = (b, kv head). Query blocks ascending, heads of the group, key blocks
 * ascending; key block qb is packed when first needed and every key block has its own slot
 * with its dk/dv accumulators, added to dk/dv at the end. */
static TGT void FN(bwd_fused_task)(void *vctx, int task, int thread) {
  const attn_ctx *c = (const attn_ctx *)vctx;
  const int want_dq = c->dq != NULL, want_dk = c->dk != NULL, want_dv = c->dv != NULL;
  const int b = task / c->nKv, g = task % c->nKv;
  FN(qside) w = FN(qside_at)(scr_buf[thread], c->ld);
  for (int qb = 0; qb < c->nblk; qb++) {
    FN(kslot) kq = FN(kslot_at)(scr_buf[thread], c->ld, qb);
    FN(pack_kside)(c, &kq, b, g, qb, want_dq || want_dk, want_dq, 1);
    if (qb + 1 < c->nblk) {
      const int k1 = (qb + 1) * BLK, nn = c->T - k1 < BLK ? c->T - k1 : BLK;
      const long off = ((long)b * c->T + k1) * c->kvRow + (long)g * c->hs;
      prefetch_rows(c->k + off, c->kvRow, nn, c->hs);
      if (want_dq || want_dk) prefetch_rows(c->v + off, c->kvRow, nn, c->hs);
    }
    for (int hh = 0; hh < c->group; hh++) {
      const int h = g * c->group + hh;
      FN(pack_qside)(c, &w, b, h, qb, want_dk, want_dv, want_dq);
      for (int kb = first_kblock(c, b, qb); kb <= qb; kb++) {
        FN(kslot) k = FN(kslot_at)(scr_buf[thread], c->ld, kb);
        FN(bwd_tile)(c, &w, &k, b, h, qb, kb, want_dq, want_dk, want_dv);
      }
      if (want_dq) FN(add_dq)(c, &w, b, h, qb);
    }
  }
  if (want_dk || want_dv)
    for (int kb = 0; kb < c->nblk; kb++) {
      FN(kslot) k = FN(kslot_at)(scr_buf[thread], c->ld, kb);
      FN(add_dkdv)(c, &k, b, g, kb);
    }
}

/* split mode, pass 1: task = (key block, b, kv head), heaviest (first) key blocks first; the
 * same (query block, head) order as the fused mode. */
static TGT void FN(bwd_kv_task)(void *vctx, int task, int thread) {
  const attn_ctx *c = (const attn_ctx *)vctx;
  const int want_dk = c->dk != NULL, want_dv = c->dv != NULL;
  const int pairs = c->B * c->nKv, kb = task / pairs, b = (task % pairs) / c->nKv, g = task % c->nKv;
  FN(qside) w = FN(qside_at)(scr_buf[thread], c->ld);
  FN(kslot) k = FN(kslot_at)(scr_buf[thread], c->ld, 0);
  FN(pack_kside)(c, &k, b, g, kb, want_dk, 0, 1);
  for (int qb = kb; qb < c->nblk; qb++) {
    if (kb < first_kblock(c, b, qb)) continue; /* every query of block qb starts after key block kb */
    for (int hh = 0; hh < c->group; hh++) {
      const int h = g * c->group + hh;
      FN(pack_qside)(c, &w, b, h, qb, want_dk, want_dv, 0);
      FN(bwd_tile)(c, &w, &k, b, h, qb, kb, 0, want_dk, want_dv);
    }
  }
  FN(add_dkdv)(c, &k, b, g, kb);
}

/* split mode, pass 2: task = (query block, b, head), heaviest (last) query blocks first */
static TGT void FN(bwd_q_task)(void *vctx, int task, int thread) {
  const attn_ctx *c = (const attn_ctx *)vctx;
  const int bh_count = c->B * c->nHead, qb = c->nblk - 1 - task / bh_count;
  const int b = (task % bh_count) / c->nHead, h = task % c->nHead, g = h / c->group;
  FN(qside) w = FN(qside_at)(scr_buf[thread], c->ld);
  FN(kslot) k = FN(kslot_at)(scr_buf[thread], c->ld, 0);
  FN(pack_qside)(c, &w, b, h, qb, 0, 0, 1);
  for (int kb = first_kblock(c, b, qb); kb <= qb; kb++) {
    FN(pack_kside)(c, &k, b, g, kb, 1, 1, 0);
    FN(bwd_tile)(c, &w, &k, b, h, qb, kb, 1, 0, 0);
  }
  FN(add_dq)(c, &w, b, h, qb);
}

#endif /* ATTN_TEMPLATE */
