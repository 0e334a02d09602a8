/* bfloat16 conversions shared by the bf16 kernels (bf16.c, gemm_bf16.c). */
#ifndef LLMTS_BF16_H
#define LLMTS_BF16_H

#include <stdint.h>
#include <string.h>

#include "napi_args.h"

/* The bf16 pattern of a float32 pattern: round to nearest even on the bits (overflow -> Inf,
 * denormals round like any value, -0 stays); a NaN is quieted and truncated, so it stays NaN.
 * Branch-free, so loops over it vectorise. */
static inline uint16_t bf16_from_bits(uint32_t b) {
  uint32_t rounded = b + 0x7fffu + ((b >> 16) & 1u);
  uint32_t quiet = b | 0x00400000u;
  return (uint16_t)(((b & 0x7fffffffu) > 0x7f800000u ? quiet : rounded) >> 16);
}

static inline uint16_t bf16_from_float(float x) {
  uint32_t b;
  memcpy(&b, &x, sizeof b);
  return bf16_from_bits(b);
}

static inline float float_from_bf16(uint16_t h) {
  uint32_t b = (uint32_t)h << 16;
  float x;
  memcpy(&x, &b, sizeof x);
  return x;
}

/* A Uint16Array argument (length checked), or NULL after throwing. */
uint16_t *arg_u16(args_t *a, size_t i, size_t min_len);

/* An operand that is a Float32Array or a Uint16Array of bf16 patterns; sets *is_bf16. NULL after throwing. */
const void *arg_f32_or_bf16(args_t *a, size_t i, size_t min_len, int *is_bf16);

#endif
