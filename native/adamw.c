/* AdamW, PyTorch semantics (torch.optim.AdamW), one fused pass over param, grad, m and v.
 *
 * AVX-512 and AVX2+FMA paths (x86-64, chosen at run time by cpu_simd()) and a portable C path;
 * large tensors are split over the thread pool (elementwise, so the split cannot change the result). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernel_util.h"

/* ---- kernel --------------------------------------------------------------------------------
 *   g = gscale * grad (gradient clipping folded in; 1 otherwise)
 *   m = b1 m + (1-b1) g;   v = b2 v + (1-b2) g^2
 *   p = p (1 - lr wd) - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * The bias corrections are computed once in double; the loop runs in float. */
typedef struct {
  float *p, *m, *v;
  const float *g;
  float b1, omb1, b2, omb2, eps, step_size, inv_bc2, decay, gscale;
} adamw_ctx;

static void adamw_portable(const adamw_ctx *k, int64_t lo, int64_t hi) {
  float *p = k->p, *m = k->m, *v = k->v;
  const float *g = k->g;
  for (int64_t i = lo; i < hi; i++) {
    const float gi = k->gscale * g[i];
    const float mi = k->b1 * m[i] + k->omb1 * gi;
    const float vi = k->b2 * v[i] + k->omb2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * k->decay - (k->step_size * mi) / (sqrtf(vi) * k->inv_bc2 + k->eps);
  }
}

#ifdef LLMTS_X86
TARGET_AVX512 static void adamw_avx512(const adamw_ctx *k, int64_t lo, int64_t hi) {
  float *p = k->p, *m = k->m, *v = k->v;
  const float *g = k->g;
  const __m512 b1 = _mm512_set1_ps(k->b1), omb1 = _mm512_set1_ps(k->omb1), b2 = _mm512_set1_ps(k->b2);
  const __m512 omb2 = _mm512_set1_ps(k->omb2), eps = _mm512_set1_ps(k->eps), ss = _mm512_set1_ps(k->step_size);
  const __m512 ibc2 = _mm512_set1_ps(k->inv_bc2), decay = _mm512_set1_ps(k->decay), gs = _mm512_set1_ps(k->gscale);
  for (int64_t i = lo; i < hi; i += 16) {
    __mmask16 msk = tail16(hi - i);
    __m512 gi = _mm512_mul_ps(gs, _mm512_maskz_loadu_ps(msk, g + i));
    __m512 mi = _mm512_fmadd_ps(b1, _mm512_maskz_loadu_ps(msk, m + i), _mm512_mul_ps(omb1, gi));
    __m512 vi = _mm512_fmadd_ps(b2, _mm512_maskz_loadu_ps(msk, v + i), _mm512_mul_ps(_mm512_mul_ps(omb2, gi), gi));
    _mm512_mask_storeu_ps(m + i, msk, mi);
    _mm512_mask_storeu_ps(v + i, msk, vi);
    __m512 den = _mm512_fmadd_ps(_mm512_sqrt_ps(vi), ibc2, eps);
    __m512 upd = _mm512_div_ps(_mm512_mul_ps(ss, mi), den);
    _mm512_mask_storeu_ps(p + i, msk, _mm512_fmsub_ps(_mm512_maskz_loadu_ps(msk, p + i), decay, upd));
  }
}

TARGET_AVX2 static void adamw_avx2(const adamw_ctx *k, int64_t lo, int64_t hi) {
  float *p = k->p, *m = k->m, *v = k->v;
  const float *g = k->g;
  const __m256 b1 = _mm256_set1_ps(k->b1), omb1 = _mm256_set1_ps(k->omb1), b2 = _mm256_set1_ps(k->b2);
  const __m256 omb2 = _mm256_set1_ps(k->omb2), eps = _mm256_set1_ps(k->eps), ss = _mm256_set1_ps(k->step_size);
  const __m256 ibc2 = _mm256_set1_ps(k->inv_bc2), decay = _mm256_set1_ps(k->decay), gs = _mm256_set1_ps(k->gscale);
  for (int64_t i = lo; i < hi; i += 8) {
    const int64_t n = hi - i;
    __m256 gi = _mm256_mul_ps(gs, ld8(g + i, n));
    __m256 mi = _mm256_fmadd_ps(b1, ld8(m + i, n), _mm256_mul_ps(omb1, gi));
    __m256 vi = _mm256_fmadd_ps(b2, ld8(v + i, n), _mm256_mul_ps(_mm256_mul_ps(omb2, gi), gi));
    st8(m + i, mi, n);
    st8(v + i, vi, n);
    __m256 den = _mm256_fmadd_ps(_mm256_sqrt_ps(vi), ibc2, eps);
    __m256 upd = _mm256_div_ps(_mm256_mul_ps(ss, mi), den);
    st8(p + i, _mm256_fmsub_ps(ld8(p + i, n), decay, upd), n);
  }
}
#endif

SIMD_RANGE(adamw_range, adamw, adamw_ctx)

/* adamw(param, grad, m, v, n, lr, beta1, beta2, eps, weightDecay, step, gradScale) */
static napi_value js_adamw(napi_env env, napi_callback_info info) {
  const char *fn = "adamw";
  args_t a;
  if (!args_init(&a, env, info, 12, fn)) return NULL;
  int64_t n = size_arg(&a, 4, fn, "n");
  double lr = arg_f64(&a, 5), beta1 = arg_f64(&a, 6), beta2 = arg_f64(&a, 7), eps = arg_f64(&a, 8);
  double wd = arg_f64(&a, 9), step = arg_f64(&a, 10), gscale = arg_f64(&a, 11);
  adamw_ctx k;
  k.p = arg_f32(&a, 0, (size_t)n, 0);
  k.g = arg_f32(&a, 1, (size_t)n, 0);
  k.m = arg_f32(&a, 2, (size_t)n, 0);
  k.v = arg_f32(&a, 3, (size_t)n, 0);
  if (a.failed) return NULL;
  const double bc1 = 1.0 - pow(beta1, step), bc2_sqrt = sqrt(1.0 - pow(beta2, step));
  k.b1 = (float)beta1;
  k.omb1 = (float)(1.0 - beta1);
  k.b2 = (float)beta2;
  k.omb2 = (float)(1.0 - beta2);
  k.eps = (float)eps;
  k.step_size = (float)(lr / bc1);
  k.inv_bc2 = (float)(1.0 / bc2_sqrt);
  k.decay = (float)(1.0 - lr * wd);
  k.gscale = (float)gscale;
  parallel_for(adamw_range, &k, n, 4, 16);
  return make_undefined(env);
}

const export_t adamw_exports[] = {{"adamw", js_adamw}, {NULL, NULL}};
