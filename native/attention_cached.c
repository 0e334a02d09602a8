/* Attention of new queries over a KV cache (inference, no backward). Semantics are those of
 * src/backend/reference/attention-cached.ts:
 *   q, out: (Tq, nHead*hs), positions pos..pos+Tq-1     kCache, vCache: (maxT, nKvHead*hs)
 * Query row i attends to cache rows 0..pos+i; query head h reads kv head h / (nHead / nKvHead).
 *
 * One query row of one head at a time, keys in blocks of 64: the block's scores (SIMD dot
 * products) go to a 64-float stack buffer, then an online softmax (running max m and sum l, the
 * output rescaled by exp(m_old - m_new) when the max grows) accumulates p * v into the output
 * row, which is divided by l at the end. No scratch beyond the stack; nothing T x T is stored.
 * Tasks are (head, block of query rows) over the thread pool; decode (Tq = 1) is one task per
 * head. Each output row is written by exactly one task, so results do not depend on threads. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernel_util.h"
#include "decode_kernels.h"

#define KBLK 64
#define QROWS 16

typedef struct {
  const float *q, *k, *v;
  float *out;
  int64_t Tq, pos, nHead, nKv, hs, group, qRow, kvRow, qBlocks;
  float scale;
} cattn_ctx;

/* ---- vector helpers per SIMD level ---------------------------------------------------------- */

static inline float dot_portable(const float *a, const float *b, int64_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; i++) s0 += a[i] * b[i];
  return (s0 + s2) + (s1 + s3);
}
static inline void axpy_portable(float p, const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += p * x[i];
}
static inline void scal_portable(float c, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] *= c;
}

#ifdef LLMTS_X86
TARGET_AVX512 static inline float dot_avx512(const float *a, const float *b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i < n; i += 16) {
    __mmask16 m = tail16(n - i);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
TARGET_AVX512 static inline void axpy_avx512(float p, const float *x, float *y, int64_t n) {
  __m512 vp = _mm512_set1_ps(p);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = tail16(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(vp, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}
TARGET_AVX512 static inline void scal_avx512(float c, float *y, int64_t n) {
  __m512 vc = _mm512_set1_ps(c);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = tail16(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(vc, _mm512_maskz_loadu_ps(m, y + i)));
  }
}

TARGET_AVX2 static inline float dot_avx2(const float *a, const float *b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i < n; i += 8) s0 = _mm256_fmadd_ps(ld8(a + i, n - i), ld8(b + i, n - i), s0);
  __m256 s = _mm256_add_ps(s0, s1);
  __m128 r = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_shuffle_ps(r, r, 1));
  return _mm_cvtss_f32(r);
}
TARGET_AVX2 static inline void axpy_avx2(float p, const float *x, float *y, int64_t n) {
  __m256 vp = _mm256_set1_ps(p);
  for (int64_t i = 0; i < n; i += 8) st8(y + i, _mm256_fmadd_ps(vp, ld8(x + i, n - i), ld8(y + i, n - i)), n - i);
}
TARGET_AVX2 static inline void scal_avx2(float c, float *y, int64_t n) {
  __m256 vc = _mm256_set1_ps(c);
  for (int64_t i = 0; i < n; i += 8) st8(y + i, _mm256_mul_ps(vc, ld8(y + i, n - i)), n - i);
}
#endif

/* A head's keys (and values) are hs floats every kvRow: a stride the hardware prefetchers did not
 * follow, so each row came from memory at full latency (110M shapes, 1000 cached positions, 12
 * layers: 20 ms a token, 3.6 GB/s). Prefetching the row PF_KEYS keys ahead brought that to ~8 ms.
 * The last rows prefetch addresses past the keys in use; a prefetch never faults. */
#define PF_KEYS 8
static inline void prefetch_row(const float *p, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(p + i, 0, 3);
}

/* ---- one query row over L cached keys, online softmax ------------------------------------- */
#define DEFINE_ROW(SFX, TGT)                                                                       \
  TGT static void row_##SFX(const float *qr, const float *K, const float *V, int64_t kvRow, int64_t L, \
                            int64_t hs, float scale, float *o) {                                   \
    float s[KBLK];                                                                                 \
    float m = -INFINITY, l = 0.0f;                                                                 \
    memset(o, 0, (size_t)hs * sizeof(float));                                                      \
    for (int64_t j0 = 0; j0 < L; j0 += KBLK) {                                                     \
      int64_t n = L - j0 < KBLK ? L - j0 : KBLK;                                                   \
      float bmax = -INFINITY;                                                                      \
      for (int64_t j = 0; j < n; j++) {                                                            \
        prefetch_row(K + (j0 + j + PF_KEYS) * kvRow, hs);                                          \
        float d = dot_##SFX(qr, K + (j0 + j) * kvRow, hs) * scale;                                 \
        s[j] = d;                                                                                  \
        if (d > bmax) bmax = d;                                                                    \
      }                                                                                            \
      if (bmax > m) {                                                                              \
        if (l > 0.0f) {                                                                            \
          float c = expf(m - bmax);                                                                \
          l *= c;                                                                                  \
          scal_##SFX(c, o, hs);                                                                    \
        }                                                                                          \
        m = bmax;                                                                                  \
      }                                                                                            \
      for (int64_t j = 0; j < n; j++) {                                                            \
        float p = expf(s[j] - m);                                                                  \
        l += p;                                                                                    \
        prefetch_row(V + (j0 + j + PF_KEYS) * kvRow, hs);                                          \
        axpy_##SFX(p, V + (j0 + j) * kvRow, o, hs);                                                \
      }                                                                                            \
    }                                                                                              \
    scal_##SFX(1.0f / l, o, hs);                                                                   \
  }

DEFINE_ROW(portable, )
#ifdef LLMTS_X86
DEFINE_ROW(avx512, TARGET_AVX512)
DEFINE_ROW(avx2, TARGET_AVX2)
#endif

typedef void (*row_fn)(const float *, const float *, const float *, int64_t, int64_t, int64_t, float, float *);

static row_fn pick_row(void) {
#ifdef LLMTS_X86
  simd_level lvl = cpu_simd();
  if (lvl == SIMD_AVX512) return row_avx512;
  if (lvl == SIMD_AVX2) return row_avx2;
#endif
  return row_portable;
}

/* task = qBlock * nHead + h: rows [qBlock*QROWS, +QROWS) of head h */
static void cattn_task(void *p, int task, int thread) {
  (void)thread;
  const cattn_ctx *c = (const cattn_ctx *)p;
  row_fn row = pick_row();
  int64_t h = task % c->nHead, qb = task / c->nHead;
  int64_t i0 = qb * QROWS, i1 = i0 + QROWS < c->Tq ? i0 + QROWS : c->Tq;
  int64_t kvOff = (h / c->group) * c->hs;
  for (int64_t i = i0; i < i1; i++) {
    int64_t qo = i * c->qRow + h * c->hs;
    row(c->q + qo, c->k + kvOff, c->v + kvOff, c->kvRow, c->pos + i + 1, c->hs, c->scale, c->out + qo);
  }
}

/* The whole attention (threads as the work warrants); also the decode step's (decode.c). */
void attention_cached_forward(const float *q, const float *k, const float *v, float *out, int64_t Tq, int64_t pos,
                              int64_t nHead, int64_t nKv, int64_t hs, float scale) {
  cattn_ctx c = {.q = q, .k = k, .v = v, .out = out, .Tq = Tq, .pos = pos, .nHead = nHead, .nKv = nKv, .hs = hs,
                 .group = nHead / nKv, .qRow = nHead * hs, .kvRow = nKv * hs, .qBlocks = (Tq + QROWS - 1) / QROWS,
                 .scale = scale};
  int64_t tasks = c.qBlocks * nHead;
  /* multiply-adds: each row reads (pos + i + 1) keys and values of hs floats */
  double work = (double)nHead * (double)Tq * (double)(pos + (Tq + 1) / 2) * (double)hs * 2.0;
  if (pool_size() <= 1 || tasks < 2 || work < (double)PAR_MIN_WORK || tasks > INT32_MAX) {
    for (int64_t t = 0; t < tasks; t++) cattn_task(&c, (int)t, 0);
  } else {
    pool_run(cattn_task, &c, (int)tasks);
  }
}

/* ---- one query row per sequence (a decode step over a batch, decode.c) ---------------------- */

typedef struct {
  const float *q, *k, *v;
  float *out;
  int64_t qStride, outStride, slotRows;
  const int64_t *slot, *pos;
  int64_t nHead, group, hs, kvRow;
  float scale;
} cattn_rows_ctx;

/* task = r * nHead + h: head h of row r, exactly as cattn_task runs it for a one-row query */
static void cattn_rows_task(void *p, int task, int thread) {
  (void)thread;
  const cattn_rows_ctx *c = (const cattn_rows_ctx *)p;
  row_fn row = pick_row();
  int64_t r = task / c->nHead, h = task % c->nHead;
  int64_t kvOff = c->slot[r] * c->slotRows * c->kvRow + (h / c->group) * c->hs;
  row(c->q + r * c->qStride + h * c->hs, c->k + kvOff, c->v + kvOff, c->kvRow, c->pos[r] + 1, c->hs, c->scale,
      c->out + r * c->outStride + h * c->hs);
}

void attention_cached_rows_forward(const float *q, int64_t qStride, const float *k, const float *v, const int64_t *slot,
                                   int64_t slotRows, const int64_t *pos, float *out, int64_t outStride, int64_t n,
                                   int64_t nHead, int64_t nKv, int64_t hs, float scale) {
  cattn_rows_ctx c = {.q = q, .k = k, .v = v, .out = out, .qStride = qStride, .outStride = outStride, .slotRows = slotRows,
                      .slot = slot, .pos = pos, .nHead = nHead, .group = nHead / nKv, .hs = hs, .kvRow = nKv * hs,
                      .scale = scale};
  int64_t tasks = n * nHead;
  double work = 0;
  for (int64_t r = 0; r < n; r++) work += (double)nHead * (double)(pos[r] + 1) * (double)hs * 2.0;
  if (pool_size() <= 1 || tasks < 2 || work < (double)PAR_MIN_WORK || tasks > INT32_MAX) {
    for (int64_t t = 0; t < tasks; t++) cattn_rows_task(&c, (int)t, 0);
  } else {
    pool_run(cattn_rows_task, &c, (int)tasks);
  }
}

/* attentionCached(q, kCache, vCache, out, Tq, pos, nHead, nKvHead, headDim, scale) */
static napi_value js_attention_cached(napi_env env, napi_callback_info info) {
  const char *fn = "attentionCached";
  args_t a;
  if (!args_init(&a, env, info, 10, fn)) return NULL;
  int64_t Tq = size_arg(&a, 4, fn, "Tq"), pos = size_arg(&a, 5, fn, "pos");
  int64_t nHead = size_arg(&a, 6, fn, "nHead"), nKv = size_arg(&a, 7, fn, "nKvHead");
  int64_t hs = size_arg(&a, 8, fn, "headDim");
  double scale = arg_f64(&a, 9);
  if (a.failed) return NULL;
  if (nHead == 0 || nKv == 0 || nHead % nKv != 0) {
    napi_throw_type_error(env, NULL, "llmts native attentionCached: nHead must be a positive multiple of nKvHead");
    return NULL;
  }
  int64_t qRow = size_mul(&a, fn, nHead, hs), kvRow = size_mul(&a, fn, nKv, hs);
  int64_t qLen = size_mul(&a, fn, Tq, qRow), kvLen = size_mul(&a, fn, pos + Tq, kvRow);
  const float *q = arg_f32(&a, 0, (size_t)qLen, 0);
  const float *k = arg_f32(&a, 1, (size_t)kvLen, 0);
  const float *v = arg_f32(&a, 2, (size_t)kvLen, 0);
  float *out = arg_f32(&a, 3, (size_t)qLen, 0);
  if (a.failed) return NULL;
  if (Tq == 0 || hs == 0) return make_undefined(env);
  attention_cached_forward(q, k, v, out, Tq, pos, nHead, nKv, hs, (float)scale);
  return make_undefined(env);
}

const export_t attention_cached_exports[] = {{"attentionCached", js_attention_cached}, {NULL, NULL}};
