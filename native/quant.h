/* Shared by the quantized-matmul files: GGUF block constants, fp16 scales, int8 activations.
 *
 *   quant_matmul.c  the N-API entry, activation quantization, per-row dot kernels (decode, M = 1)
 *   quant_panel.c   the panel GEMM for many rows (prompt prefill), AVX-512 VNNI or AVX2
 *
 * Activations are quantized once per call, per row of x, to int8 blocks of 32 (as llama.cpp's
 * Q8_0): d = amax / 127, q = round-half-away(x / d), plus each block's sum of q (the panel GEMM
 * needs it to undo the unsigned offset of its weights). */
#ifndef LLMTS_QUANT_H
#define LLMTS_QUANT_H

#include <stdint.h>

#define QK 32
#define Q8_BYTES 34
#define Q4_BYTES 18
#define TYPE_Q4_0 2
#define TYPE_Q8_0 8

/* fp16 bit pattern -> float, for every pattern (filled by quant_init_f16) */
extern float quant_f16_table[65536];
void quant_init_f16(void);

static inline float quant_scale_of(const uint8_t *block) {
  return quant_f16_table[(uint32_t)block[0] | ((uint32_t)block[1] << 8)];
}

/* x (M rows of K floats, already quantized): q (M x K int8), d and sum (M x K/32 each) */
typedef struct {
  const int8_t *q;
  const float *d;
  const int32_t *sum;
  int64_t M, K, nb;
} quant_rows;

/* For one activation row (decode.c): quantize x (K floats, K % 32 == 0) to q, d and sum, and the
 * per-row dot kernel of a weight type (the one matmulQuantized uses on this CPU). */
typedef float (*quant_dot_fn)(const uint8_t *w, const int8_t *xq, const float *xd, int64_t nb);
void quant_quantize_row(const float *x, int64_t K, int8_t *q, float *d, int32_t *sum);
quant_dot_fn quant_row_dot(int type);

/* which panel GEMM this CPU runs: AVX-512 VNNI (unless LLMTS_NO_VNNI=1), else AVX2, else none */
#define PANEL_NONE 0
#define PANEL_AVX2 1
#define PANEL_VNNI 2
int quant_panel_kind(void);

/* out (M, N) = x · Wᵀ for W (N, K) in raw GGUF blocks of `type`, on the thread pool; returns 0
 * (having done nothing) when its scratch cannot be allocated */
int quant_panel_matmul(const quant_rows *x, const uint8_t *w, int type, float *out, int64_t N);

#endif
