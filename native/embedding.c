/* Embedding gather (forward) and scatter-add (backward).
 *
 * Ids are checked first: one outside the table throws a RangeError naming it, so nothing is ever
 * read or written out of bounds. The forward copies rows (memcpy is already vectorized); the
 * backward adds rows with AVX-512/AVX2 (x86-64, chosen at run time) or portable C, splitting the
 * columns over the thread pool so repeated ids still add up in order. Backward accumulates. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cpu.h"
#include "napi_args.h"
#include "threadpool.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LLMTS_X86 1
#include <immintrin.h>
#define TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#endif

/* ---- shared helpers (each kernel file carries its own copy) -------------------------------- */

/* below this many elements a kernel stays on the calling thread (a pool round trip costs a few us) */
#define PAR_MIN_WORK 32768
/* smallest share of the work worth handing to a task */
#define PAR_TASK_WORK 16384
#define MAX_SIZE ((int64_t)1 << 40)

static inline int64_t size_arg(args_t *a, size_t i, const char *fn, const char *name) {
  int64_t v = arg_int(a, i);
  if (a->failed) return 0;
  if (v < 0 || v > MAX_SIZE) {
    char msg[200];
    snprintf(msg, sizeof msg, "llmts native %s: argument %zu (%s) must be a non-negative integer, got %lld", fn, i,
             name, (long long)v);
    napi_throw_type_error(a->env, NULL, msg);
    a->failed = 1;
    return 0;
  }
  return v;
}

/* x * y for two checked sizes, refusing products that no typed array can hold */
static inline int64_t size_mul(args_t *a, const char *fn, int64_t x, int64_t y) {
  if (a->failed) return 0;
  if (y != 0 && x > MAX_SIZE / y) {
    char msg[200];
    snprintf(msg, sizeof msg, "llmts native %s: sizes %lld x %lld are too large", fn, (long long)x, (long long)y);
    napi_throw_type_error(a->env, NULL, msg);
    a->failed = 1;
    return 0;
  }
  return x * y;
}

typedef void (*range_fn)(const void *ctx, int64_t lo, int64_t hi);
typedef struct {
  range_fn fn;
  const void *ctx;
  int64_t n, chunk;
} range_job;

static inline void range_task(void *p, int task, int thread) {
  (void)thread;
  const range_job *j = (const range_job *)p;
  int64_t lo = (int64_t)task * j->chunk, hi = lo + j->chunk;
  if (hi > j->n) hi = j->n;
  if (lo < hi) j->fn(j->ctx, lo, hi);
}

/* fn over items [0, n), each touching `cost` elements; chunks are multiples of `align` items.
 * Only for kernels whose result does not depend on how the range is split. */
static inline void parallel_for(range_fn fn, const void *ctx, int64_t n, int64_t cost, int64_t align) {
  if (n <= 0) return;
  int nt = pool_size();
  int64_t work = n * cost;
  int64_t tasks = work / PAR_TASK_WORK;
  if (tasks > 4 * (int64_t)nt) tasks = 4 * (int64_t)nt;
  if (tasks > n) tasks = n;
  if (nt <= 1 || work < PAR_MIN_WORK || tasks < 2) {
    fn(ctx, 0, n);
    return;
  }
  int64_t chunk = (n + tasks - 1) / tasks;
  chunk = (chunk + align - 1) / align * align;
  range_job job = {fn, ctx, n, chunk};
  pool_run(range_task, &job, (int)((n + chunk - 1) / chunk));
}

#ifdef LLMTS_X86
/* lanes [0, r) of a 16-lane vector (r may be <= 0 or >= 16) */
static inline __mmask16 tail16(int64_t r) {
  return r >= 16 ? (__mmask16)0xFFFF : r <= 0 ? (__mmask16)0 : (__mmask16)((1u << r) - 1u);
}

TARGET_AVX2 static inline __m256i mask8(int64_t r) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* load/store 8 floats, or the first r < 8 of them (none if r <= 0) */
TARGET_AVX2 static inline __m256 ld8(const float *p, int64_t r) {
  return r >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask8(r));
}
TARGET_AVX2 static inline void st8(float *p, __m256 v, int64_t r) {
  if (r >= 8)
    _mm256_storeu_ps(p, v);
  else
    _mm256_maskstore_ps(p, mask8(r), v);
}
#endif

/* ---- kernels ------------------------------------------------------------------------------- */
typedef struct {
  const float *src;
  const int32_t *ids;
  float *dst;
  int64_t dim;
} emb_ctx;

/* forward rows [i0, i1): out[i, :] = weight[ids[i], :] */
static void emb_fwd_range(const void *p, int64_t i0, int64_t i1) {
  const emb_ctx *k = (const emb_ctx *)p;
  const int64_t dim = k->dim;
  for (int64_t i = i0; i < i1; i++) memcpy(k->dst + i * dim, k->src + (int64_t)k->ids[i] * dim, (size_t)dim * sizeof(float));
}

/* backward, columns [c0, c1) of every row: dweight[ids[i], c] += dout[i, c], i in order */
static void emb_bwd_cols_portable(const emb_ctx *k, int64_t n, int64_t c0, int64_t c1) {
  const int64_t dim = k->dim;
  for (int64_t i = 0; i < n; i++) {
    const float *s = k->src + i * dim;
    float *d = k->dst + (int64_t)k->ids[i] * dim;
    for (int64_t c = c0; c < c1; c++) d[c] += s[c];
  }
}

#ifdef LLMTS_X86
TARGET_AVX512 static void emb_bwd_cols_avx512(const emb_ctx *k, int64_t n, int64_t c0, int64_t c1) {
  const int64_t dim = k->dim;
  for (int64_t i = 0; i < n; i++) {
    const float *s = k->src + i * dim;
    float *d = k->dst + (int64_t)k->ids[i] * dim;
    for (int64_t c = c0; c < c1; c += 16) {
      __mmask16 m = tail16(c1 - c);
      _mm512_mask_storeu_ps(d + c, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d + c), _mm512_maskz_loadu_ps(m, s + c)));
    }
  }
}

TARGET_AVX2 static void emb_bwd_cols_avx2(const emb_ctx *k, int64_t n, int64_t c0, int64_t c1) {
  const int64_t dim = k->dim;
  for (int64_t i = 0; i < n; i++) {
    const float *s = k->src + i * dim;
    float *d = k->dst + (int64_t)k->ids[i] * dim;
    for (int64_t c = c0; c < c1; c += 8) st8(d + c, _mm256_add_ps(ld8(d + c, c1 - c), ld8(s + c, c1 - c)), c1 - c);
  }
}
#endif

typedef struct {
  emb_ctx k;
  int64_t n;
} emb_bwd_ctx;

static void emb_bwd_range(const void *p, int64_t c0, int64_t c1) {
  const emb_bwd_ctx *b = (const emb_bwd_ctx *)p;
#ifdef LLMTS_X86
  simd_level lvl = cpu_simd();
  if (lvl == SIMD_AVX512) {
    emb_bwd_cols_avx512(&b->k, b->n, c0, c1);
    return;
  }
  if (lvl == SIMD_AVX2) {
    emb_bwd_cols_avx2(&b->k, b->n, c0, c1);
    return;
  }
#endif
  emb_bwd_cols_portable(&b->k, b->n, c0, c1);
}

/* Rows in the weight table (its length / dim), or -1. */
static int64_t table_rows(args_t *a, size_t i, int64_t dim) {
  napi_typedarray_type type;
  size_t length = 0;
  if (napi_get_typedarray_info(a->env, a->argv[i], &type, &length, NULL, NULL, NULL) != napi_ok) return -1;
  return (int64_t)length / dim;
}

/* every id must name a row of the table; throws a RangeError naming the first bad one */
static int check_ids(napi_env env, const char *fn, const int32_t *ids, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; i++) {
    if (ids[i] < 0 || (int64_t)ids[i] >= vocab) {
      char msg[200];
      snprintf(msg, sizeof msg, "llmts native %s: id %d at position %lld is out of range [0, %lld)", fn, (int)ids[i],
               (long long)i, (long long)vocab);
      napi_throw_range_error(env, NULL, msg);
      return 0;
    }
  }
  return 1;
}

/* ---- N-API wrappers ------------------------------------------------------------------------ */

/* embeddingForward(weight, ids, out, n, dim) */
static napi_value js_embeddingForward(napi_env env, napi_callback_info info) {
  const char *fn = "embeddingForward";
  args_t a;
  if (!args_init(&a, env, info, 5, fn)) return NULL;
  int64_t n = size_arg(&a, 3, fn, "n"), dim = size_arg(&a, 4, fn, "dim");
  int64_t total = size_mul(&a, fn, n, dim);
  emb_ctx k;
  k.src = arg_f32(&a, 0, 0, 0);
  k.ids = arg_i32(&a, 1, (size_t)n);
  k.dst = arg_f32(&a, 2, (size_t)total, 0);
  if (a.failed) return NULL;
  if (n == 0 || dim == 0) return make_undefined(env);
  if (!check_ids(env, fn, k.ids, n, table_rows(&a, 0, dim))) return NULL;
  k.dim = dim;
  parallel_for(emb_fwd_range, &k, n, dim, 1);
  return make_undefined(env);
}

/* embeddingBackward(dout, ids, dweight, n, dim): dweight[ids[i], :] += dout[i, :] */
static napi_value js_embeddingBackward(napi_env env, napi_callback_info info) {
  const char *fn = "embeddingBackward";
  args_t a;
  if (!args_init(&a, env, info, 5, fn)) return NULL;
  int64_t n = size_arg(&a, 3, fn, "n"), dim = size_arg(&a, 4, fn, "dim");
  int64_t total = size_mul(&a, fn, n, dim);
  emb_bwd_ctx b;
  b.k.src = arg_f32(&a, 0, (size_t)total, 0);
  b.k.ids = arg_i32(&a, 1, (size_t)n);
  b.k.dst = arg_f32(&a, 2, 0, 0);
  if (a.failed) return NULL;
  if (n == 0 || dim == 0) return make_undefined(env);
  if (!check_ids(env, fn, b.k.ids, n, table_rows(&a, 2, dim))) return NULL;
  b.k.dim = dim;
  b.n = n;
  /* repeated ids add up in order: threads split the columns, never the ids */
  parallel_for(emb_bwd_range, &b, dim, n, 16);
  return make_undefined(env);
}

const export_t embedding_exports[] = {
    {"embeddingForward", js_embeddingForward},
    {"embeddingBackward", js_embeddingBackward},
    {NULL, NULL},
};
