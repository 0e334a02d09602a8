/* Activation kernels: GELU (tanh approximation), SiLU and SwiGLU, forward and backward.
 *
 * AVX-512 and AVX2+FMA paths (x86-64, chosen at run time by cpu_simd()) and a portable C path, all
 * built on one exp polynomial and a cancellation-free sigmoid; large arrays are split over the
 * thread pool (elementwise, so the split cannot change the result). Backward kernels accumulate. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernel_util.h"
#include "vec_math.h"
#include "decode_kernels.h"

/* ---- sigmoid (on the exp of vec_math.h) -------------------------------------------------------
 * sigmoid(z) and 1 - sigmoid(z), both without cancellation: a = exp(-|z|) <= 1, d = 1/(1+a);
 * z >= 0: s = d, 1-s = a d;  z < 0: s = a d, 1-s = d. */
static inline void sigmoid_scalar(float z, float *s, float *c) {
  float a = exp_scalar(-fabsf(z));
  float d = 1.0f / (1.0f + a);
  float ad = a * d;
  *s = z >= 0.0f ? d : ad;
  *c = z >= 0.0f ? ad : d;
}

#ifdef LLMTS_X86
TARGET_AVX512 static inline void sigmoid16(__m512 z, __m512 *s, __m512 *c) {
  __m512 nabs = _mm512_castsi512_ps(_mm512_or_epi32(_mm512_castps_si512(z), _mm512_set1_epi32((int)0x80000000u)));
  __m512 a = expneg16(nabs);
  __m512 b = _mm512_add_ps(a, _mm512_set1_ps(1.0f));
  __m512 d = _mm512_rcp14_ps(b); /* b in [1, 2]: one Newton step gives full precision */
  d = _mm512_mul_ps(d, _mm512_fnmadd_ps(b, d, _mm512_set1_ps(2.0f)));
  __m512 ad = _mm512_mul_ps(a, d);
  __mmask16 pos = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GE_OQ);
  *s = _mm512_mask_blend_ps(pos, ad, d);
  *c = _mm512_mask_blend_ps(pos, d, ad);
}

TARGET_AVX2 static inline void sigmoid8(__m256 z, __m256 *s, __m256 *c) {
  __m256 nabs = _mm256_or_ps(z, _mm256_set1_ps(-0.0f));
  __m256 a = expneg8(nabs);
  __m256 b = _mm256_add_ps(a, _mm256_set1_ps(1.0f));
  __m256 d = _mm256_rcp_ps(b);
  d = _mm256_mul_ps(d, _mm256_fnmadd_ps(b, d, _mm256_set1_ps(2.0f)));
  __m256 ad = _mm256_mul_ps(a, d);
  __m256 pos = _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GE_OQ);
  *s = _mm256_blendv_ps(ad, d, pos);
  *c = _mm256_blendv_ps(d, ad, pos);
}
#endif

/* ---- kernels ----------------------------------------------------------------------------------
 * GELU (tanh form): 0.5 (1 + tanh(u)) = sigmoid(2u), u = sqrt(2/pi) (v + 0.044715 v^3), so
 *   gelu(v) = v s,   gelu'(v) = s + 2 v s (1-s) du/dv,   s = sigmoid(2u).
 * SiLU: silu(x) = x s, silu'(x) = s (1 + x (1-s)), s = sigmoid(x). SwiGLU: silu(gate) * up. */
#define GELU_K2 ((float)(2.0 * 0.79788456080286535588))                  /* 2 sqrt(2/pi) */
#define GELU_K2A ((float)(2.0 * 0.79788456080286535588 * 0.044715))      /* 2 sqrt(2/pi) 0.044715 */
#define GELU_K2A3 ((float)(2.0 * 0.79788456080286535588 * 3.0 * 0.044715)) /* its derivative factor */

enum { GELU_F, GELU_B, SILU_F, SILU_B, SWIGLU_F, SWIGLU_B };

typedef struct {
  const float *x, *up, *dout;
  float *out, *out2; /* out: forward output or dx / dgate; out2: dup */
  int op;
} act_ctx;

static void act_portable(const act_ctx *k, int64_t lo, int64_t hi) {
  const float *x = k->x, *up = k->up, *dout = k->dout;
  float *out = k->out, *out2 = k->out2;
  for (int64_t i = lo; i < hi; i++) {
    float v = x[i], s, c;
    switch (k->op) {
      case GELU_F:
        sigmoid_scalar(v * (GELU_K2 + GELU_K2A * v * v), &s, &c);
        out[i] = v * s;
        break;
      case GELU_B: {
        float v2 = v * v;
        sigmoid_scalar(v * (GELU_K2 + GELU_K2A * v2), &s, &c);
        float dz = GELU_K2 + GELU_K2A3 * v2;
        out[i] += (s + v * s * c * dz) * dout[i];
        break;
      }
      case SILU_F:
        sigmoid_scalar(v, &s, &c);
        out[i] = v * s;
        break;
      case SILU_B:
        sigmoid_scalar(v, &s, &c);
        out[i] += dout[i] * s * (1.0f + v * c);
        break;
      case SWIGLU_F:
        sigmoid_scalar(v, &s, &c);
        out[i] = v * s * up[i];
        break;
      default:
        sigmoid_scalar(v, &s, &c);
        if (out2) out2[i] += dout[i] * v * s;
        if (out) out[i] += dout[i] * up[i] * s * (1.0f + v * c);
        break;
    }
  }
}

#ifdef LLMTS_X86
TARGET_AVX512 static void act_avx512(const act_ctx *k, int64_t lo, int64_t hi) {
  const float *x = k->x, *up = k->up, *dout = k->dout;
  float *out = k->out, *out2 = k->out2;
  const __m512 one = _mm512_set1_ps(1.0f), k2 = _mm512_set1_ps(GELU_K2), k2a = _mm512_set1_ps(GELU_K2A);
  const __m512 k2a3 = _mm512_set1_ps(GELU_K2A3);
  __m512 s, c;
  switch (k->op) {
    case GELU_F:
      for (int64_t i = lo; i < hi; i += 16) {
        __mmask16 m = tail16(hi - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        sigmoid16(_mm512_mul_ps(v, _mm512_fmadd_ps(k2a, _mm512_mul_ps(v, v), k2)), &s, &c);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(v, s));
      }
      break;
    case GELU_B:
      for (int64_t i = lo; i < hi; i += 16) {
        __mmask16 m = tail16(hi - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i), v2 = _mm512_mul_ps(v, v);
        sigmoid16(_mm512_mul_ps(v, _mm512_fmadd_ps(k2a, v2, k2)), &s, &c);
        __m512 dz = _mm512_fmadd_ps(k2a3, v2, k2);
        __m512 g = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(v, s), c), dz, s);
        __m512 acc = _mm512_maskz_loadu_ps(m, out + i);
        _mm512_mask_storeu_ps(out + i, m, _mm512_fmadd_ps(g, _mm512_maskz_loadu_ps(m, dout + i), acc));
      }
      break;
    case SILU_F:
      for (int64_t i = lo; i < hi; i += 16) {
        __mmask16 m = tail16(hi - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        sigmoid16(v, &s, &c);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(v, s));
      }
      break;
    case SILU_B:
      for (int64_t i = lo; i < hi; i += 16) {
        __mmask16 m = tail16(hi - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        sigmoid16(v, &s, &c);
        __m512 g = _mm512_mul_ps(s, _mm512_fmadd_ps(v, c, one));
        __m512 acc = _mm512_maskz_loadu_ps(m, out + i);
        _mm512_mask_storeu_ps(out + i, m, _mm512_fmadd_ps(g, _mm512_maskz_loadu_ps(m, dout + i), acc));
      }
      break;
    case SWIGLU_F:
      for (int64_t i = lo; i < hi; i += 16) {
        __mmask16 m = tail16(hi - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        sigmoid16(v, &s, &c);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_mul_ps(v, s), _mm512_maskz_loadu_ps(m, up + i)));
      }
      break;
    default:
      for (int64_t i = lo; i < hi; i += 16) {
        __mmask16 m = tail16(hi - i);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i), d = _mm512_maskz_loadu_ps(m, dout + i);
        sigmoid16(v, &s, &c);
        if (out2) {
          __m512 acc = _mm512_maskz_loadu_ps(m, out2 + i);
          _mm512_mask_storeu_ps(out2 + i, m, _mm512_fmadd_ps(_mm512_mul_ps(d, v), s, acc));
        }
        if (out) {
          __m512 g = _mm512_mul_ps(_mm512_mul_ps(d, _mm512_maskz_loadu_ps(m, up + i)), s);
          __m512 acc = _mm512_maskz_loadu_ps(m, out + i);
          _mm512_mask_storeu_ps(out + i, m, _mm512_fmadd_ps(g, _mm512_fmadd_ps(v, c, one), acc));
        }
      }
      break;
  }
}

TARGET_AVX2 static void act_avx2(const act_ctx *k, int64_t lo, int64_t hi) {
  const float *x = k->x, *up = k->up, *dout = k->dout;
  float *out = k->out, *out2 = k->out2;
  const __m256 one = _mm256_set1_ps(1.0f), k2 = _mm256_set1_ps(GELU_K2), k2a = _mm256_set1_ps(GELU_K2A);
  const __m256 k2a3 = _mm256_set1_ps(GELU_K2A3);
  __m256 s, c;
  switch (k->op) {
    case GELU_F:
      for (int64_t i = lo; i < hi; i += 8) {
        int64_t r = hi - i;
        __m256 v = ld8(x + i, r);
        sigmoid8(_mm256_mul_ps(v, _mm256_fmadd_ps(k2a, _mm256_mul_ps(v, v), k2)), &s, &c);
        st8(out + i, _mm256_mul_ps(v, s), r);
      }
      break;
    case GELU_B:
      for (int64_t i = lo; i < hi; i += 8) {
        int64_t r = hi - i;
        __m256 v = ld8(x + i, r), v2 = _mm256_mul_ps(v, v);
        sigmoid8(_mm256_mul_ps(v, _mm256_fmadd_ps(k2a, v2, k2)), &s, &c);
        __m256 dz = _mm256_fmadd_ps(k2a3, v2, k2);
        __m256 g = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(v, s), c), dz, s);
        st8(out + i, _mm256_fmadd_ps(g, ld8(dout + i, r), ld8(out + i, r)), r);
      }
      break;
    case SILU_F:
      for (int64_t i = lo; i < hi; i += 8) {
        int64_t r = hi - i;
        __m256 v = ld8(x + i, r);
        sigmoid8(v, &s, &c);
        st8(out + i, _mm256_mul_ps(v, s), r);
      }
      break;
    case SILU_B:
      for (int64_t i = lo; i < hi; i += 8) {
        int64_t r = hi - i;
        __m256 v = ld8(x + i, r);
        sigmoid8(v, &s, &c);
        __m256 g = _mm256_mul_ps(s, _mm256_fmadd_ps(v, c, one));
        st8(out + i, _mm256_fmadd_ps(g, ld8(dout + i, r), ld8(out + i, r)), r);
      }
      break;
    case SWIGLU_F:
      for (int64_t i = lo; i < hi; i += 8) {
        int64_t r = hi - i;
        __m256 v = ld8(x + i, r);
        sigmoid8(v, &s, &c);
        st8(out + i, _mm256_mul_ps(_mm256_mul_ps(v, s), ld8(up + i, r)), r);
      }
      break;
    default:
      for (int64_t i = lo; i < hi; i += 8) {
        int64_t r = hi - i;
        __m256 v = ld8(x + i, r), d = ld8(dout + i, r);
        sigmoid8(v, &s, &c);
        if (out2) st8(out2 + i, _mm256_fmadd_ps(_mm256_mul_ps(d, v), s, ld8(out2 + i, r)), r);
        if (out) {
          __m256 g = _mm256_mul_ps(_mm256_mul_ps(d, ld8(up + i, r)), s);
          st8(out + i, _mm256_fmadd_ps(g, _mm256_fmadd_ps(v, c, one), ld8(out + i, r)), r);
        }
      }
      break;
  }
}
#endif

SIMD_RANGE(act_range, act, act_ctx)

/* Elements [lo, hi) on the calling thread (decode.c): GELU of x, or silu(x) * up when up != NULL. */
void act_forward_range(const float *x, const float *up, float *out, int64_t lo, int64_t hi) {
  act_ctx k = {x, up, NULL, out, NULL, up ? SWIGLU_F : GELU_F};
  act_range(&k, lo, hi);
}

/* ---- N-API wrappers ------------------------------------------------------------------------ */

/* geluForward(x, out, n), siluForward(x, out, n) */
static napi_value unary_forward(napi_env env, napi_callback_info info, int op, const char *fn) {
  args_t a;
  if (!args_init(&a, env, info, 3, fn)) return NULL;
  int64_t n = size_arg(&a, 2, fn, "n");
  const float *x = arg_f32(&a, 0, (size_t)n, 0);
  float *out = arg_f32(&a, 1, (size_t)n, 0);
  if (a.failed) return NULL;
  act_ctx k = {x, NULL, NULL, out, NULL, op};
  parallel_for(act_range, &k, n, 4, 16);
  return make_undefined(env);
}

/* geluBackward(x, dout, dx, n), siluBackward(x, dout, dx, n) */
static napi_value unary_backward(napi_env env, napi_callback_info info, int op, const char *fn) {
  args_t a;
  if (!args_init(&a, env, info, 4, fn)) return NULL;
  int64_t n = size_arg(&a, 3, fn, "n");
  const float *x = arg_f32(&a, 0, (size_t)n, 0);
  const float *dout = arg_f32(&a, 1, (size_t)n, 0);
  float *dx = arg_f32(&a, 2, (size_t)n, 0);
  if (a.failed) return NULL;
  act_ctx k = {x, NULL, dout, dx, NULL, op};
  parallel_for(act_range, &k, n, 4, 16);
  return make_undefined(env);
}

static napi_value js_geluForward(napi_env env, napi_callback_info info) { return unary_forward(env, info, GELU_F, "geluForward"); }
static napi_value js_geluBackward(napi_env env, napi_callback_info info) { return unary_backward(env, info, GELU_B, "geluBackward"); }
static napi_value js_siluForward(napi_env env, napi_callback_info info) { return unary_forward(env, info, SILU_F, "siluForward"); }
static napi_value js_siluBackward(napi_env env, napi_callback_info info) { return unary_backward(env, info, SILU_B, "siluBackward"); }

/* swigluForward(gate, up, out, n) */
static napi_value js_swigluForward(napi_env env, napi_callback_info info) {
  const char *fn = "swigluForward";
  args_t a;
  if (!args_init(&a, env, info, 4, fn)) return NULL;
  int64_t n = size_arg(&a, 3, fn, "n");
  const float *gate = arg_f32(&a, 0, (size_t)n, 0);
  const float *up = arg_f32(&a, 1, (size_t)n, 0);
  float *out = arg_f32(&a, 2, (size_t)n, 0);
  if (a.failed) return NULL;
  act_ctx k = {gate, up, NULL, out, NULL, SWIGLU_F};
  parallel_for(act_range, &k, n, 4, 16);
  return make_undefined(env);
}

/* swigluBackward(gate, up, dout, dgate | null, dup | null, n) */
static napi_value js_swigluBackward(napi_env env, napi_callback_info info) {
  const char *fn = "swigluBackward";
  args_t a;
  if (!args_init(&a, env, info, 6, fn)) return NULL;
  int64_t n = size_arg(&a, 5, fn, "n");
  const float *gate = arg_f32(&a, 0, (size_t)n, 0);
  const float *up = arg_f32(&a, 1, (size_t)n, 0);
  const float *dout = arg_f32(&a, 2, (size_t)n, 0);
  float *dgate = arg_f32(&a, 3, (size_t)n, 1);
  float *dup = arg_f32(&a, 4, (size_t)n, 1);
  if (a.failed) return NULL;
  if (!dgate && !dup) return make_undefined(env);
  act_ctx k = {gate, up, dout, dgate, dup, SWIGLU_B};
  parallel_for(act_range, &k, n, 4, 16);
  return make_undefined(env);
}

const export_t activation_exports[] = {
    {"geluForward", js_geluForward},     {"geluBackward", js_geluBackward},
    {"siluForward", js_siluForward},     {"siluBackward", js_siluBackward},
    {"swigluForward", js_swigluForward}, {"swigluBackward", js_swigluBackward},
    {NULL, NULL},
};
