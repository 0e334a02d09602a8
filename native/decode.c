/* The fused decode step: one token through a whole model in one call.
 *
 * Decoding one token is ~100 small kernels (12 layers x norm, q/k/v, rope, attention, o, norm,
 * gate/up, down). Called one by one from JavaScript, each pays an N-API crossing, a pool round
 * trip and a cold start of its memory streams; the step is bandwidth-bound, so those gaps are
 * what separates us from a C runner such as llama2.c. Here the model is compiled once (by
 * src/model/decode-program.ts, from the same classes that train it) into a list of ops over a
 * table of buffers; decodeRun executes the list for (token, pos) in C. The ops:
 *
 *   EMBED      dst = table[token]                      (F32 rows, or Q8_0/Q4_0 rows dequantized)
 *   ADD_ROW    dst += table[pos]                       (learned positions)
 *   NORM       out = norm(x) * w (+ b)                 (RMSNorm or LayerNorm, norm.c's kernel)
 *   MATVEC     up to 3 products sharing one input x:  out_i (+)= W_i x (+ b_i), W_i F32 (out, in)
 *              or (in, out), or Q8_0/Q4_0 blocks (x quantized once, quant_matmul.c's dot
 *              kernels); optional epilogue silu(out_0) * out_1 -> out_0 (SwiGLU) or gelu(out_0).
 *              The rows of all products form one range split over the pool in contiguous
 *              shares, so q|k|v or gate|up are one pool round trip.
 *   ROPE       x = rotate(x, pos)                      (rope.c's kernel)
 *   KV_STORE   slot[pos] = src                         (a KV cache row)
 *   ATTENTION  out = attention(q, kslot, vslot, pos)   (attention_cached.c's kernel)
 *
 * Every kernel is the one the op-by-op path runs, so a program gives the same floats as
 * Transformer.forwardCached on one token (the tests check equality). Compile validates every
 * op against the sizes of its buffers; run checks only what depends on (token, pos): the token
 * id, the rope table and the KV slots' capacity, all before anything is written. KV slots are
 * rebound (decodeBind) when the cache grows. Buffers are held by references for the program's
 * lifetime.
 *
 * Batches (decodeRunBatch): the same program run for n tokens of n different sequences at once,
 * each op applied to every row before the next op, so a MATVEC reads each weight once for all n
 * rows (a (n, K) x (K, N) product, compute- rather than bandwidth-bound). A program compiled with
 * row strides (one per buffer: floats between consecutive rows of an activation, 0 for weights,
 * tables and KV slots) holds as many rows as its activation buffers' memory allows. Row r runs
 * at (token[r], pos[r]) in KV slot rows slot[r] * slotRows .. of each KV buffer (a cache with a
 * batch dimension). Every row gets the arithmetic of a single-token run, bit for bit: the MATVEC
 * tiles (dot_f32_batch.h) keep f32_dot_rows' per-row arithmetic, and attention runs each
 * (row, head) as the one-token kernel does. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decode_kernels.h"
#include "dot_f32.h"
#include "dot_f32_batch.h"
#include "kernel_util.h"
#include "quant.h"

enum { OP_EMBED = 1, OP_ADD_ROW = 2, OP_NORM = 3, OP_MATVEC = 4, OP_ROPE = 5, OP_KV_STORE = 6, OP_ATTENTION = 7 };
/* weight types of MATVEC and EMBED */
enum { W_F32 = 0, W_F32_IN_OUT = 1, W_Q4_0 = TYPE_Q4_0, W_Q8_0 = TYPE_Q8_0 };
enum { EPI_NONE = 0, EPI_SWIGLU = 1, EPI_GELU = 2 };

#define MAX_MATS 3
#define ROW_ALIGN 16

typedef struct {
  void *data;
  size_t bytes;
  napi_ref ref;
  /* batches: floats from one row to the next (0: the same buffer for every row) */
  int64_t stride;
  /* bytes from data to the end of its ArrayBuffer (the rows of a row buffer lie there) */
  size_t extent;
} dbuf;

typedef struct {
  int32_t *code; /* the program, copied */
  int64_t ncode;
  double *consts;
  int64_t nconsts;
  dbuf *bufs;
  int nbufs;
  /* rows a batch may hold (1 without row strides) */
  int64_t max_rows;
  /* quantized activation scratch (largest K of a quantized MATVEC, max_rows rows) */
  int64_t max_qk;
  int8_t *xq;
  float *xd;
  int32_t *xs;
  int64_t xq_rows;
} program;

/* The rows of one run: row r decodes token[r] at position pos[r] in KV slot slot[r]. */
typedef struct {
  int64_t n;
  const int64_t *token, *pos, *slot;
  /* positions per KV slot: row r's KV rows start at slot[r] * slot_rows */
  int64_t slot_rows;
} rows_t;

/* row r of buffer b */
static inline float *row_ptr(const dbuf *b, int64_t r) { return (float *)b->data + r * b->stride; }

/* ------------------------------------------------------------------ matrix-vector group */

typedef struct {
  /* row r's input: x + r * xs (K floats); quantized: xq + r * K, xd + r * nb */
  const float *x;
  int64_t xs, n;
  int64_t K, nb;
  const int8_t *xq;
  const float *xd;
  int nm, epi;
  struct {
    const void *w;
    int type;
    float *out; /* row r's output: out + r * os */
    int64_t os;
    const float *bias;
    int64_t N;
    int accumulate;
    quant_dot_fn qdot;
  } m[MAX_MATS];
  int64_t rows; /* the split range: sum of N, or N when the epilogue pairs rows */
  int64_t chunk;
} mv_ctx;

/* output j of product i for batch row r */
static inline void store_out(const mv_ctx *c, int i, int64_t r, int64_t j, float v) {
  if (c->m[i].bias) v += c->m[i].bias[j];
  float *o = c->m[i].out + r * c->m[i].os + j;
  *o = c->m[i].accumulate ? *o + v : v;
}

/* F32 (out, in) weight rows [lo, hi) against every batch row */
static void mv_rows_f32(const mv_ctx *c, int i, int64_t lo, int64_t hi) {
  const int64_t K = c->K, n = c->n;
  const float *w = (const float *)c->m[i].w;
#if defined(__x86_64__)
  /* AVX2: each weight row against 4 (then 2, then 1) batch rows at a time, f32_dot1_avx2's arithmetic per pair */
  if (n > 1 && K % 8 == 0 && cpu_simd() == SIMD_AVX2) {
    float o[4];
    for (int64_t j = lo; j < hi; j++) {
      const float *row = w + j * K;
      int64_t r = 0;
      for (; r + 4 <= n; r += 4) {
        f32_dot1x4_avx2(row, c->x + r * c->xs, c->xs, (int)K, o);
        for (int b = 0; b < 4; b++) store_out(c, i, r + b, j, o[b]);
      }
      for (; r + 2 <= n; r += 2) {
        f32_dot1x2_avx2(row, c->x + r * c->xs, c->xs, (int)K, o);
        store_out(c, i, r, j, o[0]);
        store_out(c, i, r + 1, j, o[1]);
      }
      if (r < n) store_out(c, i, r, j, f32_dot1_avx2(row, c->x + r * c->xs, (int)K));
    }
    return;
  }
#endif
  /* blocks of 64 weight rows (in cache) for each batch row in turn */
  float part[64];
  for (int64_t j0 = lo; j0 < hi; j0 += 64) {
    int cnt = hi - j0 < 64 ? (int)(hi - j0) : 64;
    for (int64_t r = 0; r < n; r++) {
      f32_dot_rows(w + j0 * K, (long)K, c->x + r * c->xs, (int)K, cnt, part);
      for (int j = 0; j < cnt; j++) store_out(c, i, r, j0 + j, part[j]);
    }
  }
}

/* outputs [lo, hi) of product i, for every batch row */
static void mv_rows(const mv_ctx *c, int i, int64_t lo, int64_t hi) {
  const int64_t K = c->K, n = c->n;
  switch (c->m[i].type) {
    case W_F32: mv_rows_f32(c, i, lo, hi); break;
    case W_F32_IN_OUT: {
      /* W stored (K, N): out[j] = sum_k x[k] W[k, j], columns [lo, hi) in blocks of 256 */
      const float *w = (const float *)c->m[i].w;
      const int64_t N = c->m[i].N;
      float acc[256];
      for (int64_t j0 = lo; j0 < hi; j0 += 256) {
        int64_t cnt = hi - j0 < 256 ? hi - j0 : 256;
        for (int64_t r = 0; r < n; r++) {
          const float *x = c->x + r * c->xs;
          memset(acc, 0, (size_t)cnt * sizeof(float));
          for (int64_t k = 0; k < K; k++) {
            const float a = x[k], *row = w + k * N + j0;
            for (int64_t j = 0; j < cnt; j++) acc[j] += a * row[j];
          }
          for (int64_t j = 0; j < cnt; j++) store_out(c, i, r, j0 + j, acc[j]);
        }
      }
      break;
    }
    default: {
      const uint8_t *w = (const uint8_t *)c->m[i].w;
      const int64_t rb = c->nb * (c->m[i].type == W_Q8_0 ? Q8_BYTES : Q4_BYTES);
      for (int64_t j = lo; j < hi; j++)
        for (int64_t r = 0; r < n; r++)
          store_out(c, i, r, j, c->m[i].qdot(w + j * rb, c->xq + r * K, c->xd + r * c->nb, c->nb));
    }
  }
}

/* the epilogue on outputs [lo, hi) of every batch row */
static void mv_epilogue(const mv_ctx *c, int64_t lo, int64_t hi) {
  for (int64_t r = 0; r < c->n; r++) {
    float *o0 = c->m[0].out + r * c->m[0].os;
    if (c->epi == EPI_SWIGLU) act_forward_range(o0, c->m[1].out + r * c->m[1].os, o0, lo, hi);
    else act_forward_range(o0, NULL, o0, lo, hi);
  }
}

static void mv_task(void *p, int task, int thread) {
  (void)thread;
  const mv_ctx *c = (const mv_ctx *)p;
  int64_t lo = (int64_t)task * c->chunk, hi = lo + c->chunk < c->rows ? lo + c->chunk : c->rows;
  if (lo >= hi) return;
  if (c->epi == EPI_SWIGLU) {
    mv_rows(c, 0, lo, hi);
    mv_rows(c, 1, lo, hi);
    mv_epilogue(c, lo, hi);
    return;
  }
  int64_t base = 0; /* walk the concatenated rows of the products */
  for (int i = 0; i < c->nm; i++) {
    int64_t a = lo > base ? lo : base, b = hi < base + c->m[i].N ? hi : base + c->m[i].N;
    if (a < b) mv_rows(c, i, a - base, b - base);
    base += c->m[i].N;
  }
  if (c->epi == EPI_GELU) mv_epilogue(c, lo, hi);
}

static void run_matvec(program *pg, const int32_t *op, const rows_t *rw) {
  mv_ctx c;
  memset(&c, 0, sizeof c);
  const dbuf *xb = &pg->bufs[op[1]];
  c.x = (const float *)xb->data;
  c.xs = xb->stride;
  c.n = rw->n;
  c.K = op[2];
  c.nb = c.K / QK;
  c.epi = op[3];
  c.nm = op[4];
  int quantized = 0;
  int64_t work = 0;
  for (int i = 0; i < c.nm; i++) {
    const int32_t *a = op + 5 + 6 * i;
    c.m[i].w = pg->bufs[a[0]].data;
    c.m[i].type = a[1];
    c.m[i].out = (float *)pg->bufs[a[2]].data;
    c.m[i].os = pg->bufs[a[2]].stride;
    c.m[i].N = a[3];
    c.m[i].bias = a[4] >= 0 ? (const float *)pg->bufs[a[4]].data : NULL;
    c.m[i].accumulate = a[5];
    if (a[1] == W_Q8_0 || a[1] == W_Q4_0) {
      quantized = 1;
      c.m[i].qdot = quant_row_dot(a[1]);
    }
    c.rows += c.m[i].N;
    work += c.m[i].N * c.K * c.n;
  }
  if (quantized) {
    for (int64_t r = 0; r < c.n; r++) quant_quantize_row(c.x + r * c.xs, c.K, pg->xq + r * c.K, pg->xd + r * c.nb, pg->xs);
    c.xq = pg->xq;
    c.xd = pg->xd;
  }
  if (c.epi == EPI_SWIGLU) c.rows = c.m[0].N;
  /* one contiguous share per thread (the prefetchers follow one stream each), aligned to 16 rows */
  int tasks = work < 65536 ? 1 : pool_size();
  c.chunk = (c.rows + tasks - 1) / tasks;
  c.chunk = (c.chunk + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN;
  if (c.chunk < 1) c.chunk = 1;
  pool_run(mv_task, &c, (int)((c.rows + c.chunk - 1) / c.chunk));
}

/* ------------------------------------------------------------------ the other ops */

/* Length in ints of the op at code[at] (of ncode), 0 for an unknown op code. A MATVEC is 5 + 6 per
 * product; one cut short before its product count counts as 5 (validate then reports it). */
static int64_t op_length(const int32_t *code, int64_t at, int64_t ncode) {
  switch (code[at]) {
    case OP_EMBED: return 5;      /* table, type, dim, dst */
    case OP_ADD_ROW: return 4;    /* table, dim, dst */
    case OP_NORM: return 8;       /* rms, x, w, b|-1, out, dim, eps const */
    case OP_MATVEC: return at + 4 < ncode ? 5 + 6 * (int64_t)code[at + 4] : 5; /* x, K, epilogue, n, n x 6 */
    case OP_ROPE: return 6;       /* x, nHeads, headDim, cos, sin */
    case OP_KV_STORE: return 4;   /* src, slot, width */
    case OP_ATTENTION: return 9;  /* q, kslot, vslot, out, nHead, nKv, hs, scale const */
    default: return 0;
  }
}

static void dequantize_row(const uint8_t *blocks, int type, int64_t dim, float *dst) {
  for (int64_t b = 0; b < dim / QK; b++) {
    if (type == W_Q8_0) {
      const uint8_t *blk = blocks + b * Q8_BYTES;
      float d = quant_scale_of(blk);
      const int8_t *q = (const int8_t *)(blk + 2);
      for (int j = 0; j < QK; j++) dst[b * QK + j] = d * (float)q[j];
    } else {
      const uint8_t *blk = blocks + b * Q4_BYTES;
      float d = quant_scale_of(blk);
      for (int j = 0; j < QK / 2; j++) {
        dst[b * QK + j] = d * (float)((blk[2 + j] & 0x0f) - 8);
        dst[b * QK + j + QK / 2] = d * (float)((blk[2 + j] >> 4) - 8);
      }
    }
  }
}

static int64_t row_bytes(int type, int64_t K) {
  if (type == W_Q8_0) return K / QK * Q8_BYTES;
  if (type == W_Q4_0) return K / QK * Q4_BYTES;
  return K * 4;
}

static void run_program(program *pg, const rows_t *rw) {
  const int64_t n = rw->n;
  for (int64_t at = 0; at < pg->ncode;) {
    const int32_t *op = pg->code + at;
    dbuf *B = pg->bufs;
    switch (op[0]) {
      case OP_EMBED: {
        int64_t dim = op[3];
        for (int64_t r = 0; r < n; r++) {
          float *dst = row_ptr(&B[op[4]], r);
          const uint8_t *table = (const uint8_t *)B[op[1]].data + rw->token[r] * row_bytes(op[2], dim);
          if (op[2] == W_F32) memcpy(dst, table, (size_t)dim * sizeof(float));
          else dequantize_row(table, op[2], dim, dst);
        }
        break;
      }
      case OP_ADD_ROW: {
        int64_t dim = op[2];
        for (int64_t r = 0; r < n; r++) {
          const float *row = (const float *)B[op[1]].data + rw->pos[r] * dim;
          float *dst = row_ptr(&B[op[3]], r);
          for (int64_t j = 0; j < dim; j++) dst[j] += row[j];
        }
        break;
      }
      case OP_NORM: {
        float mean, rstd;
        for (int64_t r = 0; r < n; r++)
          norm_forward_rows(row_ptr(&B[op[2]], r), (const float *)B[op[3]].data,
                            op[4] >= 0 ? (const float *)B[op[4]].data : NULL, row_ptr(&B[op[5]], r), &mean, &rstd, 1,
                            op[6], pg->consts[op[7]], op[1]);
        break;
      }
      case OP_MATVEC: run_matvec(pg, op, rw); break;
      case OP_ROPE:
        for (int64_t r = 0; r < n; r++) {
          float *x = row_ptr(&B[op[1]], r);
          rope_forward_row(x, x, (const float *)B[op[4]].data, (const float *)B[op[5]].data, op[2], op[3], rw->pos[r]);
        }
        break;
      case OP_KV_STORE: {
        int64_t width = op[3];
        for (int64_t r = 0; r < n; r++)
          memcpy((float *)B[op[2]].data + (rw->slot[r] * rw->slot_rows + rw->pos[r]) * width, row_ptr(&B[op[1]], r),
                 (size_t)width * sizeof(float));
        break;
      }
      case OP_ATTENTION: {
        const float *k = (const float *)B[op[2]].data, *v = (const float *)B[op[3]].data;
        if (n == 1) {
          int64_t off = rw->slot[0] * rw->slot_rows * op[6] * op[7];
          attention_cached_forward((const float *)B[op[1]].data, k + off, v + off, (float *)B[op[4]].data, 1, rw->pos[0], op[5],
                                   op[6], op[7], (float)pg->consts[op[8]]);
        } else {
          attention_cached_rows_forward((const float *)B[op[1]].data, B[op[1]].stride, k, v, rw->slot, rw->slot_rows, rw->pos,
                                        (float *)B[op[4]].data, B[op[4]].stride, n, op[5], op[6], op[7],
                                        (float)pg->consts[op[8]]);
        }
        break;
      }
    }
    at += op_length(pg->code, at, pg->ncode);
  }
}

/* ------------------------------------------------------------------ validation */

typedef struct {
  char msg[240];
} verr;

static int buf_ok(program *pg, int idx, int64_t floats_or_bytes, int is_bytes, verr *e, int64_t at, const char *what) {
  if (idx < 0 || idx >= pg->nbufs) {
    snprintf(e->msg, sizeof e->msg, "op at %lld: %s buffer index %d out of range", (long long)at, what, idx);
    return 0;
  }
  int64_t need = is_bytes ? floats_or_bytes : floats_or_bytes * 4;
  if (need < 0 || (uint64_t)need > pg->bufs[idx].bytes) {
    snprintf(e->msg, sizeof e->msg, "op at %lld: %s buffer %d holds %zu bytes, %lld needed", (long long)at, what, idx,
             pg->bufs[idx].bytes, (long long)need);
    return 0;
  }
  const dbuf *b = &pg->bufs[idx];
  if (b->stride > 0) {
    /* rows r < max_rows read or write floats [r * stride, r * stride + width) from data */
    int64_t fit = is_bytes ? 1 : ((int64_t)(b->extent / 4) - floats_or_bytes) / b->stride + 1;
    if (fit < pg->max_rows) pg->max_rows = fit;
  }
  return 1;
}

static int const_ok(program *pg, int idx, verr *e, int64_t at) {
  if (idx < 0 || idx >= pg->nconsts) {
    snprintf(e->msg, sizeof e->msg, "op at %lld: constant index %d out of range", (long long)at, idx);
    return 0;
  }
  return 1;
}

static int positive(int64_t v, int64_t limit, verr *e, int64_t at, const char *what) {
  if (v <= 0 || v > limit) {
    snprintf(e->msg, sizeof e->msg, "op at %lld: %s = %lld is out of range", (long long)at, what, (long long)v);
    return 0;
  }
  return 1;
}

/* Everything that does not depend on (token, pos). The KV slots are checked at run time. */
static int validate(program *pg, verr *e, int64_t *max_qk) {
  *max_qk = 0;
  int strided = 0;
  for (int i = 0; i < pg->nbufs; i++) strided |= pg->bufs[i].stride > 0;
  pg->max_rows = strided ? INT32_MAX : 1;
  const int64_t LIM = 1 << 26;
  for (int64_t at = 0; at < pg->ncode;) {
    const int32_t *op = pg->code + at;
    int64_t len = op_length(pg->code, at, pg->ncode);
    if (len == 0) {
      snprintf(e->msg, sizeof e->msg, "op at %lld: unknown op code %d", (long long)at, op[0]);
      return 0;
    }
    if (at + len > pg->ncode) {
      snprintf(e->msg, sizeof e->msg, "op at %lld: truncated", (long long)at);
      return 0;
    }
    switch (op[0]) {
      case OP_EMBED:
        if (!positive(op[3], LIM, e, at, "dim")) return 0;
        if (op[2] != W_F32 && op[2] != W_Q8_0 && op[2] != W_Q4_0) {
          snprintf(e->msg, sizeof e->msg, "op at %lld: embedding type %d unknown", (long long)at, op[2]);
          return 0;
        }
        if (op[2] != W_F32 && op[3] % QK) {
          snprintf(e->msg, sizeof e->msg, "op at %lld: quantized rows of %d floats are not blocks of 32", (long long)at, op[3]);
          return 0;
        }
        if (!buf_ok(pg, op[1], row_bytes(op[2], op[3]), 1, e, at, "table") || !buf_ok(pg, op[4], op[3], 0, e, at, "dst")) return 0;
        break;
      case OP_ADD_ROW:
        if (!positive(op[2], LIM, e, at, "dim") || !buf_ok(pg, op[1], op[2], 0, e, at, "table") ||
            !buf_ok(pg, op[3], op[2], 0, e, at, "dst"))
          return 0;
        break;
      case OP_NORM:
        if (!positive(op[6], LIM, e, at, "dim") || !buf_ok(pg, op[2], op[6], 0, e, at, "x") ||
            !buf_ok(pg, op[3], op[6], 0, e, at, "weight") || (op[4] >= 0 && !buf_ok(pg, op[4], op[6], 0, e, at, "bias")) ||
            !buf_ok(pg, op[5], op[6], 0, e, at, "out") || !const_ok(pg, op[7], e, at))
          return 0;
        break;
      case OP_MATVEC: {
        int64_t K = op[2], nm = op[4];
        if (!positive(K, LIM, e, at, "K") || !positive(nm, MAX_MATS, e, at, "products") || !buf_ok(pg, op[1], K, 0, e, at, "x"))
          return 0;
        if (op[3] != EPI_NONE && op[3] != EPI_SWIGLU && op[3] != EPI_GELU) {
          snprintf(e->msg, sizeof e->msg, "op at %lld: epilogue %d unknown", (long long)at, op[3]);
          return 0;
        }
        for (int64_t i = 0; i < nm; i++) {
          const int32_t *a = op + 5 + 6 * i;
          int type = a[1];
          int64_t N = a[3];
          if (!positive(N, LIM, e, at, "N")) return 0;
          if (type != W_F32 && type != W_F32_IN_OUT && type != W_Q8_0 && type != W_Q4_0) {
            snprintf(e->msg, sizeof e->msg, "op at %lld: weight type %d unknown", (long long)at, type);
            return 0;
          }
          if ((type == W_Q8_0 || type == W_Q4_0)) {
            if (K % QK) {
              snprintf(e->msg, sizeof e->msg, "op at %lld: quantized K = %lld is not a multiple of 32", (long long)at, (long long)K);
              return 0;
            }
            if (K > *max_qk) *max_qk = K;
          }
          if (!buf_ok(pg, a[0], N * row_bytes(type, K), 1, e, at, "weight") || !buf_ok(pg, a[2], N, 0, e, at, "out") ||
              (a[4] >= 0 && !buf_ok(pg, a[4], N, 0, e, at, "bias")))
            return 0;
          if (a[2] == op[1]) {
            snprintf(e->msg, sizeof e->msg, "op at %lld: a product's output aliases its input", (long long)at);
            return 0;
          }
        }
        if (op[3] == EPI_SWIGLU && (nm != 2 || op[5 + 3] != op[5 + 6 + 3])) {
          snprintf(e->msg, sizeof e->msg, "op at %lld: the SwiGLU epilogue needs two products of equal N", (long long)at);
          return 0;
        }
        if (op[3] == EPI_GELU && nm != 1) {
          snprintf(e->msg, sizeof e->msg, "op at %lld: the GELU epilogue needs one product", (long long)at);
          return 0;
        }
        break;
      }
      case OP_ROPE:
        if (!positive(op[2], LIM, e, at, "heads") || !positive(op[3], LIM, e, at, "headDim") || (op[3] & 1) ||
            !buf_ok(pg, op[1], (int64_t)op[2] * op[3], 0, e, at, "x") || !buf_ok(pg, op[4], op[3] / 2, 0, e, at, "cos") ||
            !buf_ok(pg, op[5], op[3] / 2, 0, e, at, "sin"))
          return 0;
        break;
      case OP_KV_STORE:
        if (!positive(op[3], LIM, e, at, "width") || !buf_ok(pg, op[1], op[3], 0, e, at, "src") ||
            !buf_ok(pg, op[2], 0, 0, e, at, "slot"))
          return 0;
        break;
      case OP_ATTENTION:
        if (!positive(op[5], LIM, e, at, "nHead") || !positive(op[6], LIM, e, at, "nKvHead") ||
            !positive(op[7], LIM, e, at, "headDim") || op[5] % op[6] || !buf_ok(pg, op[1], (int64_t)op[5] * op[7], 0, e, at, "q") ||
            !buf_ok(pg, op[2], 0, 0, e, at, "kslot") || !buf_ok(pg, op[3], 0, 0, e, at, "vslot") ||
            !buf_ok(pg, op[4], (int64_t)op[5] * op[7], 0, e, at, "out") || !const_ok(pg, op[8], e, at))
          return 0;
        break;
    }
    at += len;
  }
  return 1;
}

/* What depends on (token, pos) and the KV slot of one row, checked before anything is written.
 * kv: the row's first KV position (slot * slot_rows; 0 for a single-token run). */
static int check_row(const program *pg, int64_t token, int64_t pos, int64_t kv, const char *pre, verr *e) {
  for (int64_t at = 0; at < pg->ncode;) {
    const int32_t *op = pg->code + at;
    const dbuf *B = pg->bufs;
    switch (op[0]) {
      case OP_EMBED: {
        int64_t rows = (int64_t)(B[op[1]].bytes / (uint64_t)row_bytes(op[2], op[3]));
        if (token < 0 || token >= rows) {
          snprintf(e->msg, sizeof e->msg, "%stoken id %lld is outside the vocabulary [0, %lld)", pre, (long long)token, (long long)rows);
          return 0;
        }
        break;
      }
      case OP_ADD_ROW:
        if ((uint64_t)((pos + 1) * op[2]) * 4 > B[op[1]].bytes) {
          snprintf(e->msg, sizeof e->msg, "%sposition %lld is beyond the position table", pre, (long long)pos);
          return 0;
        }
        break;
      case OP_ROPE:
        if ((uint64_t)((pos + 1) * (op[3] / 2)) * 4 > B[op[4]].bytes || (uint64_t)((pos + 1) * (op[3] / 2)) * 4 > B[op[5]].bytes) {
          snprintf(e->msg, sizeof e->msg, "%sposition %lld is beyond the rotary tables", pre, (long long)pos);
          return 0;
        }
        break;
      case OP_KV_STORE:
        if ((uint64_t)(kv + pos + 1) > B[op[2]].bytes / 4 / (uint64_t)op[3]) {
          snprintf(e->msg, sizeof e->msg, "%sposition %lld does not fit the KV cache buffer %d (%zu bytes)", pre, (long long)pos, op[2],
                   B[op[2]].bytes);
          return 0;
        }
        break;
      case OP_ATTENTION: {
        uint64_t rows = (uint64_t)(kv + pos + 1), width = (uint64_t)op[6] * (uint64_t)op[7] * 4;
        if (rows > B[op[2]].bytes / width || rows > B[op[3]].bytes / width) {
          snprintf(e->msg, sizeof e->msg, "%sposition %lld does not fit the KV cache buffers %d/%d", pre, (long long)pos, op[2], op[3]);
          return 0;
        }
        break;
      }
    }
    at += op_length(pg->code, at, pg->ncode);
  }
  return 1;
}

static int check_run(const program *pg, const rows_t *rw, verr *e) {
  for (int64_t r = 0; r < rw->n; r++) {
    int64_t pos = rw->pos[r], slot = rw->slot[r];
    if (rw->n > 1 || rw->slot_rows > 0) {
      if (pos < 0 || pos >= rw->slot_rows || slot < 0 || slot > INT32_MAX) {
        snprintf(e->msg, sizeof e->msg, "row %lld: position %lld in KV slot %lld is outside the slot's %lld positions", (long long)r,
                 (long long)pos, (long long)slot, (long long)rw->slot_rows);
        return 0;
      }
      for (int64_t q = 0; q < r; q++)
        if (rw->slot[q] == slot) {
          snprintf(e->msg, sizeof e->msg, "rows %lld and %lld both decode KV slot %lld", (long long)q, (long long)r, (long long)slot);
          return 0;
        }
    }
    char pre[32] = "";
    if (rw->n > 1) snprintf(pre, sizeof pre, "row %lld: ", (long long)r);
    if (!check_row(pg, rw->token[r], pos, slot * rw->slot_rows, pre, e)) return 0;
  }
  return 1;
}

/* ------------------------------------------------------------------ N-API */

static int typed_data(napi_env env, napi_value v, void **data, size_t *bytes) {
  bool is_typed = false;
  napi_is_typedarray(env, v, &is_typed);
  if (!is_typed) return 0;
  napi_typedarray_type type;
  size_t length, offset;
  napi_value ab;
  napi_get_typedarray_info(env, v, &type, &length, data, &ab, &offset);
  if (type == napi_float32_array || type == napi_int32_array || type == napi_uint32_array) *bytes = length * 4;
  else if (type == napi_uint8_array || type == napi_int8_array) *bytes = length;
  else if (type == napi_float64_array) *bytes = length * 8;
  else return 0;
  return 1;
}

static void program_free(program *pg, napi_env env) {
  if (!pg) return;
  for (int i = 0; i < pg->nbufs; i++)
    if (pg->bufs[i].ref) napi_delete_reference(env, pg->bufs[i].ref);
  free(pg->bufs);
  free(pg->code);
  free(pg->consts);
  free(pg->xq);
  free(pg->xd);
  free(pg->xs);
  free(pg);
}

static void program_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  program_free((program *)data, env);
}

static napi_value throw_error(napi_env env, const char *fn, const char *msg) {
  char full[320];
  snprintf(full, sizeof full, "llmts native %s: %s", fn, msg);
  napi_throw_error(env, NULL, full);
  return NULL;
}

/* Bytes from a typed array's data to the end of its ArrayBuffer. */
static size_t typed_extent(napi_env env, napi_value v) {
  napi_typedarray_type type;
  size_t length, offset, ab_bytes = 0;
  void *data, *ab_data;
  napi_value ab;
  napi_get_typedarray_info(env, v, &type, &length, &data, &ab, &offset);
  napi_get_arraybuffer_info(env, ab, &ab_data, &ab_bytes);
  return ab_bytes > offset ? ab_bytes - offset : 0;
}

/* Room for the quantized activations of n rows; 0 when out of memory. */
static int reserve_quant_rows(program *pg, int64_t n) {
  if (pg->max_qk == 0 || n <= pg->xq_rows) return 1;
  int8_t *xq = (int8_t *)realloc(pg->xq, (size_t)(n * pg->max_qk));
  if (xq) pg->xq = xq;
  float *xd = (float *)realloc(pg->xd, (size_t)(n * (pg->max_qk / QK)) * sizeof(float));
  if (xd) pg->xd = xd;
  if (!xq || !xd) return 0;
  pg->xq_rows = n;
  return 1;
}

/* compileDecode(buffers: TypedArray[], code: Int32Array, consts: Float64Array[, rowStrides: Int32Array | null])
 * -> program handle. rowStrides (one per buffer) makes a batch program: see decodeRunBatch. */
static napi_value js_decode_compile(napi_env env, napi_callback_info info) {
  const char *fn = "compileDecode";
  args_t a;
  if (!args_init(&a, env, info, 3, fn)) return NULL;
  bool is_array = false;
  napi_is_array(env, a.argv[0], &is_array);
  if (!is_array) return throw_error(env, fn, "argument 0 must be an array of typed arrays");
  uint32_t nbufs = 0;
  napi_get_array_length(env, a.argv[0], &nbufs);
  void *code_data, *const_data;
  size_t code_bytes, const_bytes;
  if (!typed_data(env, a.argv[1], &code_data, &code_bytes) || !typed_data(env, a.argv[2], &const_data, &const_bytes))
    return throw_error(env, fn, "arguments 1 and 2 must be an Int32Array and a Float64Array");
  program *pg = (program *)calloc(1, sizeof(program));
  if (!pg) return throw_error(env, fn, "out of memory");
  pg->nbufs = (int)nbufs;
  pg->bufs = (dbuf *)calloc(nbufs ? nbufs : 1, sizeof(dbuf));
  pg->ncode = (int64_t)(code_bytes / 4);
  pg->code = (int32_t *)malloc(code_bytes ? code_bytes : 4);
  pg->nconsts = (int64_t)(const_bytes / 8);
  pg->consts = (double *)malloc(const_bytes ? const_bytes : 8);
  if (!pg->bufs || !pg->code || !pg->consts) {
    program_free(pg, env);
    return throw_error(env, fn, "out of memory");
  }
  memcpy(pg->code, code_data, code_bytes);
  memcpy(pg->consts, const_data, const_bytes);
  for (uint32_t i = 0; i < nbufs; i++) {
    napi_value v;
    napi_get_element(env, a.argv[0], i, &v);
    if (!typed_data(env, v, &pg->bufs[i].data, &pg->bufs[i].bytes)) {
      program_free(pg, env);
      char msg[120];
      snprintf(msg, sizeof msg, "buffer %u is not a Float32Array, Int32Array or Uint8Array", i);
      return throw_error(env, fn, msg);
    }
    napi_create_reference(env, v, 1, &pg->bufs[i].ref);
  }
  napi_valuetype st = napi_undefined;
  if (a.argc > 3) napi_typeof(env, a.argv[3], &st);
  if (st != napi_undefined && st != napi_null) {
    void *sd;
    size_t sbytes;
    bool is_typed = false;
    napi_typedarray_type stype = napi_int8_array;
    napi_is_typedarray(env, a.argv[3], &is_typed);
    if (is_typed) {
      size_t len, off;
      napi_value ab;
      napi_get_typedarray_info(env, a.argv[3], &stype, &len, &sd, &ab, &off);
    }
    if (!is_typed || stype != napi_int32_array || !typed_data(env, a.argv[3], &sd, &sbytes) || sbytes / 4 != nbufs) {
      program_free(pg, env);
      return throw_error(env, fn, "argument 3 (row strides) must be an Int32Array with one entry per buffer");
    }
    for (uint32_t i = 0; i < nbufs; i++) {
      int32_t stride = ((const int32_t *)sd)[i];
      if (stride < 0) {
        program_free(pg, env);
        return throw_error(env, fn, "row strides must be >= 0");
      }
      if (stride == 0) continue;
      napi_value v;
      napi_get_element(env, a.argv[0], i, &v);
      pg->bufs[i].stride = stride;
      pg->bufs[i].extent = typed_extent(env, v);
    }
  }
  verr e;
  int64_t max_qk = 0;
  if (!validate(pg, &e, &max_qk)) {
    program_free(pg, env);
    return throw_error(env, fn, e.msg);
  }
  pg->max_qk = max_qk;
  if (max_qk > 0) {
    pg->xs = (int32_t *)malloc((size_t)(max_qk / QK) * sizeof(int32_t));
    if (!pg->xs || !reserve_quant_rows(pg, 1)) {
      program_free(pg, env);
      return throw_error(env, fn, "out of memory");
    }
  }
  napi_value handle;
  napi_create_external(env, pg, program_finalize, NULL, &handle);
  return handle;
}

static program *get_program(napi_env env, napi_value v) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_external) return NULL;
  void *p = NULL;
  napi_get_value_external(env, v, &p);
  return (program *)p;
}

/* The three arguments of decodeBind / decodeRun, the first a program handle; NULL when thrown. */
static program *program_call(args_t *a, napi_env env, napi_callback_info info, const char *fn) {
  if (!args_init(a, env, info, 3, fn)) return NULL;
  program *pg = get_program(env, a->argv[0]);
  if (!pg) throw_error(env, fn, "argument 0 is not a decode program");
  return pg;
}

/* decodeBind(handle, index, typedArray): replace a buffer (a KV slot that grew) */
static napi_value js_decode_bind(napi_env env, napi_callback_info info) {
  const char *fn = "decodeBind";
  args_t a;
  program *pg = program_call(&a, env, info, fn);
  if (!pg) return NULL;
  int64_t idx = arg_int(&a, 1);
  if (a.failed) return NULL;
  if (idx < 0 || idx >= pg->nbufs) return throw_error(env, fn, "buffer index out of range");
  if (pg->bufs[idx].stride > 0) return throw_error(env, fn, "a row buffer of a batch program cannot be rebound");
  void *data;
  size_t bytes;
  if (!typed_data(env, a.argv[2], &data, &bytes)) return throw_error(env, fn, "argument 2 must be a typed array");
  napi_ref ref;
  napi_create_reference(env, a.argv[2], 1, &ref);
  if (pg->bufs[idx].ref) napi_delete_reference(env, pg->bufs[idx].ref);
  pg->bufs[idx].data = data;
  pg->bufs[idx].bytes = bytes;
  pg->bufs[idx].ref = ref;
  return make_undefined(env);
}

/* decodeRun(handle, token, pos) */
static napi_value js_decode_run(napi_env env, napi_callback_info info) {
  const char *fn = "decodeRun";
  args_t a;
  program *pg = program_call(&a, env, info, fn);
  if (!pg) return NULL;
  int64_t token = arg_int(&a, 1), pos = arg_int(&a, 2);
  if (a.failed) return NULL;
  if (pos < 0) return throw_error(env, fn, "position must be >= 0");
  verr e;
  const int64_t slot = 0;
  rows_t rw = {.n = 1, .token = &token, .pos = &pos, .slot = &slot, .slot_rows = 0};
  if (!check_run(pg, &rw, &e)) return throw_error(env, fn, e.msg);
  run_program(pg, &rw);
  return make_undefined(env);
}

#define MAX_BATCH 1024

/* decodeRunBatch(handle, tokens: Int32Array, positions: Int32Array, slots: Int32Array, n, slotRows):
 * row r < n decodes tokens[r] at positions[r], its keys and values in rows slots[r] * slotRows +
 * positions[r] of every KV buffer; the slots of a run are distinct and positions[r] < slotRows.
 * Row r's logits (and every activation) land in row r of its buffer. */
static napi_value js_decode_run_batch(napi_env env, napi_callback_info info) {
  const char *fn = "decodeRunBatch";
  args_t a;
  if (!args_init(&a, env, info, 6, fn)) return NULL;
  program *pg = get_program(env, a.argv[0]);
  if (!pg) return throw_error(env, fn, "argument 0 is not a decode program");
  int64_t n = arg_int(&a, 4), slot_rows = arg_int(&a, 5);
  if (a.failed) return NULL;
  if (n < 1 || n > MAX_BATCH) return throw_error(env, fn, "the row count must be in [1, 1024]");
  if (n > pg->max_rows) {
    char msg[160];
    snprintf(msg, sizeof msg, "%lld rows given, but the program's buffers hold %lld", (long long)n, (long long)pg->max_rows);
    return throw_error(env, fn, msg);
  }
  if (slot_rows < 1 || slot_rows > INT32_MAX) return throw_error(env, fn, "slotRows must be a positive 32-bit integer");
  const int32_t *tok = arg_i32(&a, 1, (size_t)n), *pos = arg_i32(&a, 2, (size_t)n), *slot = arg_i32(&a, 3, (size_t)n);
  if (a.failed) return NULL;
  int64_t t64[MAX_BATCH], p64[MAX_BATCH], s64[MAX_BATCH];
  for (int64_t r = 0; r < n; r++) {
    t64[r] = tok[r];
    p64[r] = pos[r];
    s64[r] = slot[r];
  }
  rows_t rw = {.n = n, .token = t64, .pos = p64, .slot = s64, .slot_rows = slot_rows};
  verr e;
  if (!check_run(pg, &rw, &e)) return throw_error(env, fn, e.msg);
  if (!reserve_quant_rows(pg, n)) return throw_error(env, fn, "out of memory");
  run_program(pg, &rw);
  return make_undefined(env);
}

const export_t decode_exports[] = {
    {"compileDecode", js_decode_compile}, {"decodeBind", js_decode_bind}, {"decodeRun", js_decode_run},
    {"decodeRunBatch", js_decode_run_batch}, {NULL, NULL}};
