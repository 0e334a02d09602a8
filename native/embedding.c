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

#include "kernel_util.h"

/* ---- kernels ------------------------------------------------------------------------------- */
typedef struct {
  const float *src;
  const int32_t *ids;
  float *dst;
  int64_t n, dim; /* n: number of ids (used by the backward) */
} emb_ctx;

/* forward rows [i0, i1): out[i, :] = weight[ids[i], :] */
static void emb_fwd_range(const void *p, int64_t i0, int64_t i1) {
  const emb_ctx *k = (const emb_ctx *)p;
  const int64_t dim = k->dim;
  for (int64_t i = i0; i < i1; i++) memcpy(k->dst + i * dim, k->src + (int64_t)k->ids[i] * dim, (size_t)dim * sizeof(float));
}

/* backward, columns [c0, c1) of every row: dweight[ids[i], c] += dout[i, c], i in order */
static void emb_bwd_cols_portable(const emb_ctx *k, int64_t c0, int64_t c1) {
  const int64_t n = k->n, dim = k->dim;
  for (int64_t i = 0; i < n; i++) {
    const float *s = k->src + i * dim;
    float *d = k->dst + (int64_t)k->ids[i] * dim;
    for (int64_t c = c0; c < c1; c++) d[c] += s[c];
  }
}

#ifdef LLMTS_X86
TARGET_AVX512 static void emb_bwd_cols_avx512(const emb_ctx *k, int64_t c0, int64_t c1) {
  const int64_t n = k->n, dim = k->dim;
  for (int64_t i = 0; i < n; i++) {
    const float *s = k->src + i * dim;
    float *d = k->dst + (int64_t)k->ids[i] * dim;
    for (int64_t c = c0; c < c1; c += 16) {
      __mmask16 m = tail16(c1 - c);
      _mm512_mask_storeu_ps(d + c, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d + c), _mm512_maskz_loadu_ps(m, s + c)));
    }
  }
}

TARGET_AVX2 static void emb_bwd_cols_avx2(const emb_ctx *k, int64_t c0, int64_t c1) {
  const int64_t n = k->n, dim = k->dim;
  for (int64_t i = 0; i < n; i++) {
    const float *s = k->src + i * dim;
    float *d = k->dst + (int64_t)k->ids[i] * dim;
    for (int64_t c = c0; c < c1; c += 8) st8(d + c, _mm256_add_ps(ld8(d + c, c1 - c), ld8(s + c, c1 - c)), c1 - c);
  }
}
#endif

SIMD_RANGE(emb_bwd_range, emb_bwd_cols, emb_ctx)

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
  k.n = n;
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
  emb_ctx k;
  k.src = arg_f32(&a, 0, (size_t)total, 0);
  k.ids = arg_i32(&a, 1, (size_t)n);
  k.dst = arg_f32(&a, 2, 0, 0);
  if (a.failed) return NULL;
  if (n == 0 || dim == 0) return make_undefined(env);
  if (!check_ids(env, fn, k.ids, n, table_rows(&a, 2, dim))) return NULL;
  k.n = n;
  k.dim = dim;
  /* repeated ids add up in order: threads split the columns, never the ids */
  parallel_for(emb_bwd_range, &k, dim, n, 16);
  return make_undefined(env);
}

const export_t embedding_exports[] = {
    {"embeddingForward", js_embeddingForward},
    {"embeddingBackward", js_embeddingBackward},
    {NULL, NULL},
};
