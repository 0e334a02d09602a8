/* Entry points of the kernel files for the fused decode step (decode.c): the same SIMD code the
 * N-API kernels run, called directly with no argument checking (decode.c validates its program
 * once, when it is compiled). All run on the calling thread except attention_cached_forward,
 * which uses the pool as the attentionCached kernel does. */
#ifndef LLMTS_DECODE_KERNELS_H
#define LLMTS_DECODE_KERNELS_H

#include <stdint.h>

/* LayerNorm (rms = 0; b may be NULL) or RMSNorm of `rows` rows; mean/rstd receive one float a row */
void norm_forward_rows(const float *x, const float *w, const float *b, float *out, float *mean, float *rstd,
                       int64_t rows, int64_t dim, double eps, int rms);
/* out[lo..hi) = gelu(x) (up == NULL) or silu(x) * up */
void act_forward_range(const float *x, const float *up, float *out, int64_t lo, int64_t hi);
/* one row of nHeads heads rotated to position pos (tables: (maxPos, headDim/2)); out may alias x */
void rope_forward_row(const float *x, float *out, const float *cos, const float *sin, int64_t nHeads, int64_t headDim, int64_t pos);
/* Backend.attentionCached */
void attention_cached_forward(const float *q, const float *k, const float *v, float *out, int64_t Tq, int64_t pos,
                              int64_t nHead, int64_t nKv, int64_t hs, float scale);
/* One query row for each of n sequences: row r (q + r*qStride, out + r*outStride) attends over rows
 * slot[r]*slotRows .. slot[r]*slotRows + pos[r] of k and v (nKv*hs floats a row), each (row, head)
 * computed as attention_cached_forward computes a one-row query (decode.c's batches) */
void attention_cached_rows_forward(const float *q, int64_t qStride, const float *k, const float *v, const int64_t *slot,
                                   int64_t slotRows, const int64_t *pos, float *out, int64_t outStride, int64_t n,
                                   int64_t nHead, int64_t nKv, int64_t hs, float scale);

#endif
