/* Sampling over a vocabulary of logits, once per generated token (src/generate/sampler.ts):
 *
 *   argmax(x, n)                       first index of the largest value (greedy decoding)
 *   logSumExp(x, n)                    log(sum(exp(x))), computed as max + log(sum(exp(x - max)))
 *   topK(x, n, k, ids)                 ids of the k largest values, largest first, ties by lower id
 *   sampleSoftmax(x, n, invT, u)       the id i with cumsum(p)[i-1] <= u < cumsum(p)[i] (index order),
 *                                      p = softmax(x * invT): plain temperature sampling, no sort
 *
 * All single-threaded (a vocabulary is ~32K-200K floats: microseconds); max and sum-of-exp are
 * the vectorised row helpers of vec_math.h. Scratch for sampleSoftmax is static (JS thread only). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_util.h"
#include "vec_math.h"

static float row_max(const float *x, int64_t n) {
#ifdef LLMTS_X86
  simd_level s = cpu_simd();
  if (s == SIMD_AVX512) return row_max_avx512(x, n);
  if (s == SIMD_AVX2) return row_max_avx2(x, n);
#endif
  return row_max_portable(x, n);
}

/* sum(exp(x - mx)), writing the exps to e when e is not NULL */
static float row_sumexp(const float *x, float *e, int64_t n, float mx) {
#ifdef LLMTS_X86
  simd_level s = cpu_simd();
  if (s == SIMD_AVX512) return row_sumexp_avx512(x, e, n, mx);
  if (s == SIMD_AVX2) return row_sumexp_avx2(x, e, n, mx);
#endif
  return row_sumexp_portable(x, e, n, mx);
}

/* first index of the maximum; NaNs are never the maximum (as `x[i] > x[best]` in JS), unless all are */
static int64_t argmax_f32(const float *x, int64_t n) {
  float mx = row_max(x, n);
  for (int64_t i = 0; i < n; i++)
    if (x[i] == mx) return i;
  return 0;
}

/* k largest by insertion into a sorted buffer: after the first k, most values fail the threshold */
static void top_k_insert(const float *x, int64_t n, int64_t k, int32_t *ids) {
  int64_t have = 0;
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    if (have == k && !(v > x[ids[k - 1]])) continue;
    int64_t j = have < k ? have++ : k - 1;
    while (j > 0 && x[ids[j - 1]] < v) {
      ids[j] = ids[j - 1];
      j--;
    }
    ids[j] = (int32_t)i;
  }
}

static const float *sort_keys;
static int by_value_desc(const void *a, const void *b) {
  int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
  float u = sort_keys[i], v = sort_keys[j];
  if (u > v) return -1;
  if (u < v) return 1;
  return i < j ? -1 : i > j;
}

static napi_value js_argmax(napi_env env, napi_callback_info info) {
  args_t a;
  if (!args_init(&a, env, info, 2, "argmax")) return NULL;
  int64_t n = size_arg(&a, 1, "argmax", "n");
  float *x = arg_f32(&a, 0, (size_t)n, 0);
  if (a.failed) return NULL;
  return make_number(env, n > 0 ? (double)argmax_f32(x, n) : -1);
}

static napi_value js_log_sum_exp(napi_env env, napi_callback_info info) {
  args_t a;
  if (!args_init(&a, env, info, 2, "logSumExp")) return NULL;
  int64_t n = size_arg(&a, 1, "logSumExp", "n");
  float *x = arg_f32(&a, 0, (size_t)n, 0);
  if (a.failed) return NULL;
  if (n == 0) return make_number(env, -INFINITY);
  float mx = row_max(x, n);
  if (!isfinite(mx)) return make_number(env, mx);
  return make_number(env, (double)mx + log((double)row_sumexp(x, NULL, n, mx)));
}

static napi_value js_top_k(napi_env env, napi_callback_info info) {
  args_t a;
  if (!args_init(&a, env, info, 4, "topK")) return NULL;
  int64_t n = size_arg(&a, 1, "topK", "n"), k = size_arg(&a, 2, "topK", "k");
  float *x = arg_f32(&a, 0, (size_t)n, 0);
  int32_t *ids = arg_i32(&a, 3, (size_t)k);
  if (a.failed) return NULL;
  if (k > n) {
    napi_throw_range_error(env, NULL, "llmts native topK: k must not exceed n");
    return NULL;
  }
  if (k == 0) return make_undefined(env);
  if (k <= 256) {
    top_k_insert(x, n, k, ids);
  } else { /* large k: sort every id (insertion would be quadratic on rising input) */
    int32_t *all = (int32_t *)malloc((size_t)n * sizeof(int32_t));
    if (!all) {
      napi_throw_error(env, NULL, "llmts native topK: out of memory");
      return NULL;
    }
    for (int64_t i = 0; i < n; i++) all[i] = (int32_t)i;
    sort_keys = x;
    qsort(all, (size_t)n, sizeof(int32_t), by_value_desc);
    memcpy(ids, all, (size_t)k * sizeof(int32_t));
    free(all);
  }
  return make_undefined(env);
}

static float *probs = NULL;
static int64_t probs_cap = 0;

static napi_value js_sample_softmax(napi_env env, napi_callback_info info) {
  args_t a;
  if (!args_init(&a, env, info, 4, "sampleSoftmax")) return NULL;
  int64_t n = size_arg(&a, 1, "sampleSoftmax", "n");
  float *x = arg_f32(&a, 0, (size_t)n, 0);
  double inv_t = arg_f64(&a, 2), u = arg_f64(&a, 3);
  if (a.failed) return NULL;
  if (n == 0) return make_number(env, -1);
  if (!(inv_t > 0) || !(u >= 0 && u < 1)) {
    napi_throw_range_error(env, NULL, "llmts native sampleSoftmax: needs invTemperature > 0 and 0 <= u < 1");
    return NULL;
  }
  if (n > probs_cap) {
    float *p = (float *)realloc(probs, (size_t)n * sizeof(float));
    if (!p) {
      napi_throw_error(env, NULL, "llmts native sampleSoftmax: out of memory");
      return NULL;
    }
    probs = p;
    probs_cap = n;
  }
  /* exp((x - max) / T) = exp(x / T - max / T): scale first, then the shared sum-of-exp helper */
  for (int64_t i = 0; i < n; i++) probs[i] = (float)(x[i] * inv_t);
  float mx = row_max(probs, n);
  if (!isfinite(mx)) return make_number(env, (double)argmax_f32(x, n));
  float total = row_sumexp(probs, probs, n, mx);
  double target = u * (double)total, cum = 0;
  int64_t last = 0;
  for (int64_t i = 0; i < n; i++) {
    if (probs[i] <= 0) continue;
    cum += probs[i];
    last = i;
    if (target < cum) return make_number(env, (double)i);
  }
  return make_number(env, (double)last);
}

const export_t sampling_exports[] = {{"argmax", js_argmax},
                                     {"logSumExp", js_log_sum_exp},
                                     {"topK", js_top_k},
                                     {"sampleSoftmax", js_sample_softmax},
                                     {NULL, NULL}};
