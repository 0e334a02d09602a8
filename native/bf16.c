/* bfloat16 conversions: roundBf16 (float32 -> bf16 -> float32) and toBf16 (float32 -> bf16 bits),
 * AVX2 and portable C (auto-vectorised), bit-identical to the reference (reference/bf16.ts). */
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "bf16.h"
#include "cpu.h"
#include "napi_args.h"
#include "threadpool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------ kernels */

static void round_portable(const uint32_t *x, uint32_t *out, long n) {
  for (long i = 0; i < n; i++) out[i] = (uint32_t)bf16_from_bits(x[i]) << 16;
}

static void to_bf16_portable(const uint32_t *x, uint16_t *out, long n) {
  for (long i = 0; i < n; i++) out[i] = bf16_from_bits(x[i]);
}

#if defined(__x86_64__)
/* 8 patterns -> their rounded bf16 in the upper 16 bits of each lane (lower 16 bits zero) */
__attribute__((target("avx2"))) static inline __m256i round8(__m256i b) {
  const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i quiet_bit = _mm256_set1_epi32(0x00400000), upper = _mm256_set1_epi32((int)0xffff0000u);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), one);
  __m256i rounded = _mm256_add_epi32(_mm256_add_epi32(b, bias), lsb);
  __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(b, abs_mask), inf); /* both sides non-negative */
  __m256i r = _mm256_blendv_epi8(rounded, _mm256_or_si256(b, quiet_bit), nan);
  return _mm256_and_si256(r, upper);
}

__attribute__((target("avx2"))) static void round_avx2(const uint32_t *x, uint32_t *out, long n) {
  long i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_si256((__m256i *)(out + i), round8(_mm256_loadu_si256((const __m256i *)(x + i))));
  round_portable(x + i, out + i, n - i);
}

__attribute__((target("avx2"))) static void to_bf16_avx2(const uint32_t *x, uint16_t *out, long n) {
  long i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i lo = _mm256_srli_epi32(round8(_mm256_loadu_si256((const __m256i *)(x + i))), 16);
    __m256i hi = _mm256_srli_epi32(round8(_mm256_loadu_si256((const __m256i *)(x + i + 8))), 16);
    /* packus works per 128-bit lane: fix the lane order afterwards */
    __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xd8);
    _mm256_storeu_si256((__m256i *)(out + i), packed);
  }
  to_bf16_portable(x + i, out + i, n - i);
}
#endif

static int use_avx2(void) {
#if defined(__x86_64__)
  return cpu_simd() >= SIMD_AVX2;
#else
  return 0;
#endif
}

/* ------------------------------------------------------------------ threaded driver */

#define CHUNK 65536

typedef struct {
  const uint32_t *x;
  void *out;
  long n;
  int bits16;
} convert_ctx;

static void convert_task(void *vctx, int task, int thread) {
  (void)thread;
  convert_ctx *c = (convert_ctx *)vctx;
  long lo = (long)task * CHUNK, len = c->n - lo < CHUNK ? c->n - lo : CHUNK;
#if defined(__x86_64__)
  if (use_avx2()) {
    if (c->bits16) to_bf16_avx2(c->x + lo, (uint16_t *)c->out + lo, len);
    else round_avx2(c->x + lo, (uint32_t *)c->out + lo, len);
    return;
  }
#endif
  if (c->bits16) to_bf16_portable(c->x + lo, (uint16_t *)c->out + lo, len);
  else round_portable(c->x + lo, (uint32_t *)c->out + lo, len);
}

static void convert(const float *x, void *out, long n, int bits16) {
  convert_ctx c = {(const uint32_t *)x, out, n, bits16};
  long tasks = (n + CHUNK - 1) / CHUNK;
  if (tasks <= 1) {
    if (n > 0) convert_task(&c, 0, 0);
    return;
  }
  pool_run(convert_task, &c, (int)tasks);
}

/* ------------------------------------------------------------------ arguments */

/* 1 when argument i is a typed array (its type, length and data written), else 0 */
static int typed_of(args_t *a, size_t i, napi_typedarray_type *type, size_t *length, void **data) {
  bool is_typed = false;
  napi_is_typedarray(a->env, a->argv[i], &is_typed);
  if (!is_typed) return 0;
  napi_value buffer;
  size_t offset;
  napi_get_typedarray_info(a->env, a->argv[i], type, length, data, &buffer, &offset);
  return 1;
}

static void fail(args_t *a, size_t i, const char *what) {
  char msg[160];
  snprintf(msg, sizeof msg, "llmts native bf16: argument %zu %s", i, what);
  napi_throw_type_error(a->env, NULL, msg);
  a->failed = 1;
}

uint16_t *arg_u16(args_t *a, size_t i, size_t min_len) {
  int is_bf16 = 0;
  const void *p = arg_f32_or_bf16(a, i, min_len, &is_bf16);
  if (!a->failed && !is_bf16) {
    fail(a, i, "must be a Uint16Array");
    return NULL;
  }
  return (uint16_t *)p;
}

const void *arg_f32_or_bf16(args_t *a, size_t i, size_t min_len, int *is_bf16) {
  if (a->failed) return NULL;
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  if (!typed_of(a, i, &type, &length, &data) || (type != napi_float32_array && type != napi_uint16_array)) {
    fail(a, i, "must be a Float32Array or a Uint16Array (bf16)");
    return NULL;
  }
  if (length < min_len) {
    fail(a, i, "is shorter than the kernel needs");
    return NULL;
  }
  *is_bf16 = type == napi_uint16_array;
  return data;
}

/* ------------------------------------------------------------------ exports */

/* roundBf16(x, out, n) */
static napi_value js_roundBf16(napi_env env, napi_callback_info info) {
  args_t a;
  if (!args_init(&a, env, info, 3, "roundBf16")) return NULL;
  int64_t n = arg_int(&a, 2);
  if (a.failed) return NULL;
  if (n < 0) {
    napi_throw_range_error(env, NULL, "llmts native roundBf16: negative n");
    return NULL;
  }
  float *x = arg_f32(&a, 0, (size_t)n, 0);
  float *out = arg_f32(&a, 1, (size_t)n, 0);
  if (a.failed) return NULL;
  convert(x, out, (long)n, 0);
  return make_undefined(env);
}

/* toBf16(x, out: Uint16Array, n) */
static napi_value js_toBf16(napi_env env, napi_callback_info info) {
  args_t a;
  if (!args_init(&a, env, info, 3, "toBf16")) return NULL;
  int64_t n = arg_int(&a, 2);
  if (a.failed) return NULL;
  if (n < 0) {
    napi_throw_range_error(env, NULL, "llmts native toBf16: negative n");
    return NULL;
  }
  float *x = arg_f32(&a, 0, (size_t)n, 0);
  uint16_t *out = arg_u16(&a, 1, (size_t)n);
  if (a.failed) return NULL;
  convert(x, out, (long)n, 1);
  return make_undefined(env);
}

const export_t bf16_exports[] = {{"roundBf16", js_roundBf16}, {"toBf16", js_toBf16}, {NULL, NULL}};
