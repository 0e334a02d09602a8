/* Fused cross-entropy from logits: loss_r = logsumexp(logits_r) - logits_r[target_r], and its
 * backward dlogits_r += c_r (softmax(logits_r) - onehot(target_r)), recomputing the softmax, with
 * c_r = scale, or scale * rowScales[r] when per-row scales are given (per-token losses); rows
 * with c_r == 0 are skipped.
 *
 * AVX-512 and AVX2+FMA paths (x86-64, chosen at run time by cpu_simd()) and a portable C path, with
 * a polynomial exp accurate to about 1 ulp; rows are split over the thread pool. Targets are
 * checked first: one outside [0, vocab) that is not ignoreIndex throws a RangeError naming it. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernel_util.h"
#include "vec_math.h"

/* ---- cross-entropy row helper (max and sum of exp come from vec_math.h) ----------------------- */

/* dl[j] += c * exp(x[j] - mx) */
static inline void row_addexp_portable(const float *x, float *dl, int64_t n, float mx, float c) {
  for (int64_t j = 0; j < n; j++) dl[j] += c * exp_scalar(x[j] - mx);
}

#ifdef LLMTS_X86
TARGET_AVX512 static inline void row_addexp_avx512(const float *x, float *dl, int64_t n, float mx, float c) {
  const __m512 vm = _mm512_set1_ps(mx), vc = _mm512_set1_ps(c);
  for (int64_t j = 0; j < n; j += 16) {
    __mmask16 m = tail16(n - j);
    __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vm));
    _mm512_mask_storeu_ps(dl + j, m, _mm512_fmadd_ps(e, vc, _mm512_maskz_loadu_ps(m, dl + j)));
  }
}

TARGET_AVX2 static inline void row_addexp_avx2(const float *x, float *dl, int64_t n, float mx, float c) {
  const __m256 vm = _mm256_set1_ps(mx), vc = _mm256_set1_ps(c);
  for (int64_t j = 0; j < n; j += 8) {
    __m256 e = exp8(_mm256_sub_ps(ld8(x + j, n - j), vm));
    st8(dl + j, _mm256_fmadd_ps(e, vc, ld8(dl + j, n - j)), n - j);
  }
}
#endif

/* x[j] = c * exp(x[j] - mx), in place (the fused forward-backward) */
static inline void row_setexp_portable(float *x, int64_t n, float mx, float c) {
  for (int64_t j = 0; j < n; j++) x[j] = c * exp_scalar(x[j] - mx);
}

#ifdef LLMTS_X86
TARGET_AVX512 static inline void row_setexp_avx512(float *x, int64_t n, float mx, float c) {
  const __m512 vm = _mm512_set1_ps(mx), vc = _mm512_set1_ps(c);
  for (int64_t j = 0; j < n; j += 16) {
    __mmask16 m = tail16(n - j);
    __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vm));
    _mm512_mask_storeu_ps(x + j, m, _mm512_mul_ps(e, vc));
  }
}

TARGET_AVX2 static inline void row_setexp_avx2(float *x, int64_t n, float mx, float c) {
  const __m256 vm = _mm256_set1_ps(mx), vc = _mm256_set1_ps(c);
  for (int64_t j = 0; j < n; j += 8) {
    __m256 e = exp8(_mm256_sub_ps(ld8(x + j, n - j), vm));
    st8(x + j, _mm256_mul_ps(e, vc), n - j);
  }
}
#endif

/* ---- kernels, instantiated per SIMD level ------------------------------------------------- */

typedef struct {
  const float *logits;
  const int32_t *targets;
  float *losses, *dlogits;
  const float *row_scales; /* NULL: every row scales by `scale` */
  int64_t vocab;
  int64_t ignore;
  float scale;
} ce_ctx;

/* loss_r = max + log(sum exp(x - max)) - x[t]   (the logarithm and the sum taken in double) */
#define CE_ROWS(SUFFIX, TARGET)                                                                     \
  TARGET static void ce_fwd_##SUFFIX(const ce_ctx *k, int64_t r0, int64_t r1) {                     \
    const int64_t V = k->vocab;                                                                     \
    for (int64_t r = r0; r < r1; r++) {                                                             \
      const int32_t t = k->targets[r];                                                              \
      if ((int64_t)t == k->ignore) {                                                                \
        k->losses[r] = 0.0f;                                                                        \
        continue;                                                                                   \
      }                                                                                             \
      const float *x = k->logits + r * V;                                                           \
      float mx = row_max_##SUFFIX(x, V);                                                            \
      float sum = row_sumexp_##SUFFIX(x, NULL, V, mx);                                              \
      k->losses[r] = (float)(((double)mx + log((double)sum)) - (double)x[t]);                       \
    }                                                                                               \
  }                                                                                                 \
  TARGET static void ce_bwd_##SUFFIX(const ce_ctx *k, int64_t r0, int64_t r1) {                     \
    const int64_t V = k->vocab;                                                                     \
    for (int64_t r = r0; r < r1; r++) {                                                             \
      const int32_t t = k->targets[r];                                                              \
      if ((int64_t)t == k->ignore) continue;                                                        \
      const float c = k->row_scales ? (float)((double)k->scale * k->row_scales[r]) : k->scale;       \
      if (c == 0.0f) continue;                                                                      \
      const float *x = k->logits + r * V;                                                           \
      float *dl = k->dlogits + r * V;                                                               \
      float mx = row_max_##SUFFIX(x, V);                                                            \
      float sum = row_sumexp_##SUFFIX(x, NULL, V, mx);                                              \
      row_addexp_##SUFFIX(x, dl, V, mx, (float)((double)c / (double)sum));                          \
      dl[t] -= c;                                                                                   \
    }                                                                                               \
  }                                                                                                 \
  /* the loss, then the gradient over the logits (the same values as ce_bwd into zeros) */         \
  TARGET static void ce_fused_##SUFFIX(const ce_ctx *k, int64_t r0, int64_t r1) {                   \
    const int64_t V = k->vocab;                                                                     \
    for (int64_t r = r0; r < r1; r++) {                                                             \
      const int32_t t = k->targets[r];                                                              \
      float *x = k->dlogits + r * V;                                                                \
      if ((int64_t)t == k->ignore) {                                                                \
        k->losses[r] = 0.0f;                                                                        \
        memset(x, 0, (size_t)V * sizeof(float));                                                    \
        continue;                                                                                   \
      }                                                                                             \
      float mx = row_max_##SUFFIX(x, V);                                                            \
      float sum = row_sumexp_##SUFFIX(x, NULL, V, mx);                                              \
      k->losses[r] = (float)(((double)mx + log((double)sum)) - (double)x[t]);                       \
      const float c = k->scale;                                                                     \
      if (c == 0.0f) {                                                                              \
        memset(x, 0, (size_t)V * sizeof(float));                                                    \
        continue;                                                                                   \
      }                                                                                             \
      row_setexp_##SUFFIX(x, V, mx, (float)((double)c / (double)sum));                              \
      x[t] -= c;                                                                                    \
    }                                                                                               \
  }

CE_ROWS(portable, )
#ifdef LLMTS_X86
CE_ROWS(avx512, TARGET_AVX512)
CE_ROWS(avx2, TARGET_AVX2)
#endif

SIMD_RANGE(ce_fwd_range, ce_fwd, ce_ctx)
SIMD_RANGE(ce_bwd_range, ce_bwd, ce_ctx)
SIMD_RANGE(ce_fused_range, ce_fused, ce_ctx)

/* Every target must be ignoreIndex or a valid class; returns the number of rows that count, or
 * -1 after throwing a RangeError that names the first bad target. */
static int64_t check_targets(napi_env env, const char *fn, const int32_t *targets, int64_t rows, int64_t vocab,
                             int64_t ignore) {
  int64_t count = 0;
  for (int64_t r = 0; r < rows; r++) {
    const int32_t t = targets[r];
    if ((int64_t)t == ignore) continue;
    if (t < 0 || (int64_t)t >= vocab) {
      char msg[200];
      snprintf(msg, sizeof msg, "llmts native %s: target %d at row %lld is out of range [0, %lld) (ignoreIndex %lld)",
               fn, (int)t, (long long)r, (long long)vocab, (long long)ignore);
      napi_throw_range_error(env, NULL, msg);
      return -1;
    }
    count++;
  }
  return count;
}

/* ---- N-API wrappers ------------------------------------------------------------------------ */

/* crossEntropyForward(logits, targets, losses, rows, vocab, ignoreIndex) -> count */
static napi_value js_crossEntropyForward(napi_env env, napi_callback_info info) {
  const char *fn = "crossEntropyForward";
  args_t a;
  if (!args_init(&a, env, info, 6, fn)) return NULL;
  int64_t rows = size_arg(&a, 3, fn, "rows"), vocab = size_arg(&a, 4, fn, "vocab");
  int64_t ignore = arg_int(&a, 5);
  int64_t total = size_mul(&a, fn, rows, vocab);
  ce_ctx k;
  memset(&k, 0, sizeof k);
  k.logits = arg_f32(&a, 0, (size_t)total, 0);
  k.targets = arg_i32(&a, 1, (size_t)rows);
  k.losses = arg_f32(&a, 2, (size_t)rows, 0);
  if (a.failed) return NULL;
  int64_t count = check_targets(env, fn, k.targets, rows, vocab, ignore);
  if (count < 0) return NULL;
  k.vocab = vocab;
  k.ignore = ignore;
  parallel_for(ce_fwd_range, &k, rows, vocab * 2, 1);
  return make_number(env, (double)count);
}

/* crossEntropyBackward(logits, targets, dlogits, rows, vocab, ignoreIndex, scale[, rowScales]):
 * dlogits_r += scale * rowScales[r] (softmax(logits_r) - onehot(target_r)) on rows that count
 * (rowScales null or absent: 1) */
static napi_value js_crossEntropyBackward(napi_env env, napi_callback_info info) {
  const char *fn = "crossEntropyBackward";
  args_t a;
  if (!args_init(&a, env, info, 7, fn)) return NULL;
  int64_t rows = size_arg(&a, 3, fn, "rows"), vocab = size_arg(&a, 4, fn, "vocab");
  int64_t ignore = arg_int(&a, 5);
  double scale = arg_f64(&a, 6);
  int64_t total = size_mul(&a, fn, rows, vocab);
  ce_ctx k;
  memset(&k, 0, sizeof k);
  k.logits = arg_f32(&a, 0, (size_t)total, 0);
  k.targets = arg_i32(&a, 1, (size_t)rows);
  k.dlogits = arg_f32(&a, 2, (size_t)total, 0);
  k.row_scales = arg_f32(&a, 7, (size_t)rows, 1); /* absent arguments read as undefined */
  if (a.failed) return NULL;
  if (check_targets(env, fn, k.targets, rows, vocab, ignore) < 0) return NULL;
  k.vocab = vocab;
  k.ignore = ignore;
  k.scale = (float)scale;
  parallel_for(ce_bwd_range, &k, rows, vocab * 3, 1);
  return make_undefined(env);
}

/* crossEntropyFused(logits, targets, losses, rows, vocab, ignoreIndex, scale) -> count; the logits
 * become scale * (softmax - onehot), 0 on ignored rows */
static napi_value js_crossEntropyFused(napi_env env, napi_callback_info info) {
  const char *fn = "crossEntropyFused";
  args_t a;
  if (!args_init(&a, env, info, 7, fn)) return NULL;
  int64_t rows = size_arg(&a, 3, fn, "rows"), vocab = size_arg(&a, 4, fn, "vocab");
  int64_t ignore = arg_int(&a, 5);
  double scale = arg_f64(&a, 6);
  int64_t total = size_mul(&a, fn, rows, vocab);
  ce_ctx k;
  memset(&k, 0, sizeof k);
  k.dlogits = arg_f32(&a, 0, (size_t)total, 0);
  k.logits = k.dlogits;
  k.targets = arg_i32(&a, 1, (size_t)rows);
  k.losses = arg_f32(&a, 2, (size_t)rows, 0);
  if (a.failed) return NULL;
  int64_t count = check_targets(env, fn, k.targets, rows, vocab, ignore);
  if (count < 0) return NULL;
  k.vocab = vocab;
  k.ignore = ignore;
  k.scale = (float)scale;
  parallel_for(ce_fused_range, &k, rows, vocab * 3, 1);
  return make_number(env, (double)count);
}

const export_t cross_entropy_exports[] = {
    {"crossEntropyFused", js_crossEntropyFused},
    {"crossEntropyForward", js_crossEntropyForward},
    {"crossEntropyBackward", js_crossEntropyBackward},
    {NULL, NULL},
};
