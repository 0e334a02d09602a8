/**
 * The Backend: every hot loop of llm.ts goes through this interface.
 *
 * Conventions shared by all kernels (so a native backend can replace any of them):
 * - Tensors are Float32Array, row-major; `rows x dim` means `rows` contiguous rows of `dim` floats.
 * - Forward kernels OVERWRITE their outputs.
 * - Backward kernels ACCUMULATE (+=) into the gradient buffers they are given, because
 *   autograd sums the contributions of every consumer of a tensor.
 * - Kernels never allocate buffers that outlive the call; the caller owns all memory.
 */

import type { DecodeProgram, DecodeRunner } from './decode-program.js';

/** C[b] = alpha * op(A[b]) · op(B[b]) + beta * C[b]   for b in [0, batch). */
export interface GemmArgs {
  /** rows of op(A) and of C */
  M: number;
  /** columns of op(B) and of C */
  N: number;
  /** columns of op(A) = rows of op(B) */
  K: number;
  a: Float32Array;
  b: Float32Array;
  c: Float32Array;
  /** op(A) = A^T when true; A is then stored K x M. */
  transA?: boolean;
  /** op(B) = B^T when true; B is then stored N x K. */
  transB?: boolean;
  alpha?: number;
  /** 0 overwrites C (C may hold garbage), 1 accumulates. */
  beta?: number;
  batch?: number;
  /** element offsets of the first matrix */
  aOffset?: number;
  bOffset?: number;
  cOffset?: number;
  /** leading dimensions (row strides of the stored matrices); default: contiguous */
  lda?: number;
  ldb?: number;
  ldc?: number;
  /** element distance between consecutive matrices of the batch; 0 broadcasts one matrix */
  strideA?: number;
  strideB?: number;
  strideC?: number;
}

/**
 * C (M, N) = op(A) · op(B) (+ C when beta is 1) with bfloat16 operands and float32 sums (bf16
 * mixed precision). Each operand is float32, rounded to bfloat16 (round to nearest even) as it is
 * read, or already bfloat16: a Uint16Array of bit patterns (the upper half of a float32). Contiguous
 * row-major storage: A is M x K (K x M when transA), B is K x N (N x K when transB).
 */
export interface GemmBf16Args {
  M: number;
  N: number;
  K: number;
  a: Float32Array | Uint16Array;
  b: Float32Array | Uint16Array;
  c: Float32Array;
  transA?: boolean;
  transB?: boolean;
  /** 0 overwrites C, 1 accumulates */
  beta?: 0 | 1;
}

/** Shapes for fused causal self-attention with grouped-query heads. */
export interface AttentionShape {
  B: number;
  T: number;
  /** query heads */
  nHead: number;
  /** key/value heads; nHead % nKvHead == 0 (nKvHead == nHead is plain multi-head attention) */
  nKvHead: number;
  headDim: number;
  /** usually 1/sqrt(headDim) */
  scale: number;
  /**
   * Packed rows (several examples in one row, SFT packing): (B*T) per token, the position in its
   * row where the token's example starts. Token t attends to keys segmentStart[b*T+t] .. t only,
   * 0 <= segmentStart <= t. Absent or null: plain causal attention (every key 0 .. t).
   */
  segmentStart?: Int32Array | null;
}

/** Shapes for attention of new queries over a KV cache (inference, one sequence). */
export interface CachedAttentionShape {
  /** new query rows, at positions pos .. pos+Tq-1 */
  Tq: number;
  /** position of the first new query; the cache holds keys/values of positions 0 .. pos+Tq-1 */
  pos: number;
  nHead: number;
  /** nHead % nKvHead == 0 */
  nKvHead: number;
  headDim: number;
  /** usually 1/sqrt(headDim) */
  scale: number;
}

/** GGUF block formats a quantized weight can be stored in (see src/formats/quant.ts). */
export type QuantType = 'q8_0' | 'q4_0';

export interface Backend {
  readonly name: string;

  // ---- matrix products -------------------------------------------------------
  gemm(args: GemmArgs): void;
  /**
   * out (M, N) = x (M, K) · Wᵀ (overwritten), W (N, K) given as raw GGUF blocks: N rows of K/32
   * blocks each (Q8_0: 34 bytes, Q4_0: 18 bytes per block); K % 32 == 0. Inference only.
   * The native kernel quantizes x to int8 blocks (d = amax/127) and computes integer dot
   * products on the blocks; the reference dequantizes the blocks on the fly (float x).
   */
  /**
   * The product of GemmBf16Args: what two bf16 operands give with float32 accumulation. The
   * reference widens both operands to float32 (every product of two bf16 values is exact in
   * float32) and runs gemm; the native kernel is the one bf16Kernel() chose (AVX512-BF16, AMX, or
   * a portable C emulation of vdpbf16ps): the same products, summed in another order.
   */
  gemmBf16(args: GemmBf16Args): void;
  matmulQuantized(x: Float32Array, w: Uint8Array, type: QuantType, out: Float32Array, M: number, N: number, K: number): void;
  /**
   * dx (M, K) += dy (M, N) · W (accumulated), W (N, K) given as in matmulQuantized: the input
   * gradient of out = x · Wᵀ through a frozen quantized weight (QLoRA). Float dy; the weight is
   * widened tile by tile into scratch (never as a whole matrix); K % 32 == 0.
   */
  matmulQuantizedTransposed(dy: Float32Array, w: Uint8Array, type: QuantType, dx: Float32Array, M: number, N: number, K: number): void;

  // ---- elementwise (n = element count) ----------------------------------------
  /** out = a + b */
  add(a: Float32Array, b: Float32Array, out: Float32Array, n: number): void;
  /** out = a * b */
  mul(a: Float32Array, b: Float32Array, out: Float32Array, n: number): void;
  /** y += alpha * x */
  axpy(alpha: number, x: Float32Array, y: Float32Array, n: number): void;
  /** out = alpha * x */
  scale(alpha: number, x: Float32Array, out: Float32Array, n: number): void;
  /** out[r, j] = x[r, j] + bias[j] for r < rows, j < dim */
  addBias(x: Float32Array, bias: Float32Array, out: Float32Array, rows: number, dim: number): void;
  /** dbias[j] += sum_r dout[r, j] */
  sumRows(dout: Float32Array, dbias: Float32Array, rows: number, dim: number): void;
  /**
   * Strided block copy: dst[dstOffset + r*dstStride + j] (+)= src[srcOffset + r*srcStride + j]
   * for r < rows, j < width; accumulates when `accumulate` (splitting and joining the last
   * dimension, e.g. the fused q|k|v projection).
   */
  copyRows(
    src: Float32Array, srcOffset: number, srcStride: number, dst: Float32Array, dstOffset: number, dstStride: number,
    rows: number, width: number, accumulate: boolean,
  ): void;
  /**
   * out[i] = x[i] rounded to bfloat16 and widened back to float32, for i < n: round to nearest,
   * ties to even, on the bit pattern (overflow gives ±Inf, denormals round like any value, -0
   * stays -0, NaN stays a quiet NaN of the same sign). out may be x.
   */
  roundBf16(x: Float32Array, out: Float32Array, n: number): void;
  /** out[i] = the bfloat16 bit pattern of x[i] (the upper 16 bits of roundBf16(x[i])), for i < n */
  toBf16(x: Float32Array, out: Uint16Array, n: number): void;
  /** sum of squares of x[0..n) in double precision */
  sumSquares(x: Float32Array, n: number): number;

  // ---- activations ----------------------------------------------------------------
  /** GELU, tanh approximation (GPT-2) */
  geluForward(x: Float32Array, out: Float32Array, n: number): void;
  geluBackward(x: Float32Array, dout: Float32Array, dx: Float32Array, n: number): void;
  siluForward(x: Float32Array, out: Float32Array, n: number): void;
  siluBackward(x: Float32Array, dout: Float32Array, dx: Float32Array, n: number): void;
  /** out = silu(gate) * up (Llama MLP) */
  swigluForward(gate: Float32Array, up: Float32Array, out: Float32Array, n: number): void;
  swigluBackward(
    gate: Float32Array, up: Float32Array, dout: Float32Array,
    dgate: Float32Array | null, dup: Float32Array | null, n: number,
  ): void;

  // ---- normalisation ------------------------------------------------------------
  /** Saves mean and rstd (one per row) for the backward pass. weight/bias may be null. */
  layerNormForward(
    x: Float32Array, weight: Float32Array | null, bias: Float32Array | null, out: Float32Array,
    mean: Float32Array, rstd: Float32Array, rows: number, dim: number, eps: number,
  ): void;
  layerNormBackward(
    dout: Float32Array, x: Float32Array, weight: Float32Array | null, mean: Float32Array, rstd: Float32Array,
    dx: Float32Array | null, dweight: Float32Array | null, dbias: Float32Array | null, rows: number, dim: number,
  ): void;
  /** Saves rstd (one per row). */
  rmsNormForward(
    x: Float32Array, weight: Float32Array | null, out: Float32Array, rstd: Float32Array,
    rows: number, dim: number, eps: number,
  ): void;
  rmsNormBackward(
    dout: Float32Array, x: Float32Array, weight: Float32Array | null, rstd: Float32Array,
    dx: Float32Array | null, dweight: Float32Array | null, rows: number, dim: number,
  ): void;

  // ---- softmax over the last dimension --------------------------------------------
  softmaxForward(x: Float32Array, out: Float32Array, rows: number, dim: number): void;
  /** dx += y * (dy - sum(dy * y)) */
  softmaxBackward(y: Float32Array, dy: Float32Array, dx: Float32Array, rows: number, dim: number): void;

  // ---- attention ------------------------------------------------------------------
  /**
   * Fused causal attention. q, out: (B, T, nHead*headDim); k, v: (B, T, nKvHead*headDim).
   * lse: (B, nHead, T) receives the log-sum-exp of each query row's scaled scores,
   * which is all the backward pass needs to recompute the probabilities.
   */
  attentionForward(
    q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, lse: Float32Array, s: AttentionShape,
  ): void;
  attentionBackward(
    q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, lse: Float32Array, dout: Float32Array,
    dq: Float32Array | null, dk: Float32Array | null, dv: Float32Array | null, s: AttentionShape,
  ): void;

  /**
   * Attention of Tq new queries over a KV cache (no gradient). q, out: (Tq, nHead*headDim) for
   * positions pos..pos+Tq-1; kCache, vCache: (maxT, nKvHead*headDim), rows 0..pos+Tq-1 filled.
   * Query row i attends to cache rows 0..pos+i (causal within the new block).
   */
  attentionCached(
    q: Float32Array, kCache: Float32Array, vCache: Float32Array, out: Float32Array, s: CachedAttentionShape,
  ): void;

  // ---- rotary position embedding -----------------------------------------------------
  /**
   * x, out: (B, T, nHeads*headDim), rotate-half convention (Hugging Face Llama):
   * pairs (i, i + headDim/2) of every head are rotated by angle pos * theta^(-2i/headDim).
   * cos, sin: (maxPos, headDim/2) tables; position of row t is posOffset + t, or, when
   * `positions` (B*T) is given (packed rows: positions restart per example), positions[b*T+t].
   * inverse = true rotates by the negative angle (the backward pass). out may alias x.
   */
  rope(
    x: Float32Array, out: Float32Array, cos: Float32Array, sin: Float32Array,
    B: number, T: number, nHeads: number, headDim: number, posOffset: number, inverse: boolean,
    positions?: Int32Array | null,
  ): void;

  // ---- embeddings --------------------------------------------------------------------
  /** out[i, :] = weight[ids[i], :] */
  embeddingForward(weight: Float32Array, ids: Int32Array, out: Float32Array, n: number, dim: number): void;
  /** dweight[ids[i], :] += dout[i, :] */
  embeddingBackward(dout: Float32Array, ids: Int32Array, dweight: Float32Array, n: number, dim: number): void;

  // ---- loss ---------------------------------------------------------------------------
  /**
   * Per-row cross-entropy of softmax(logits) against targets; rows whose target equals
   * ignoreIndex get loss 0. Returns the number of rows that counted.
   */
  crossEntropyForward(
    logits: Float32Array, targets: Int32Array, losses: Float32Array, rows: number, vocab: number, ignoreIndex: number,
  ): number;
  /**
   * dlogits_r += c_r * (softmax(logits_r) - onehot(target_r)) on rows that count, where
   * c_r = scale * rowScales[r] (rowScales null/absent: c_r = scale; per-token losses pass their
   * upstream gradient here). Rows with c_r == 0 are skipped (they add nothing, even NaN).
   */
  crossEntropyBackward(
    logits: Float32Array, targets: Int32Array, dlogits: Float32Array, rows: number, vocab: number,
    ignoreIndex: number, scale: number, rowScales?: Float32Array | null,
  ): void;
  /**
   * Forward and backward in one pass, the gradient written over the logits: losses[r] as
   * crossEntropyForward, then logits_r = scale * (softmax(logits_r) - onehot(target_r)), and 0 on
   * ignored rows. Returns the number of rows that counted. (The LM head's chunked loss.)
   */
  crossEntropyFused(
    logits: Float32Array, targets: Int32Array, losses: Float32Array, rows: number, vocab: number, ignoreIndex: number, scale: number,
  ): number;

  // ---- dropout ------------------------------------------------------------------------
  /**
   * A dropout mask from a counter-based hash: out[i] = 0 where u < p · 2^32, else keep, for i < n,
   * with u = mix(mix(offset + i + key0) ^ key1) in unsigned 32-bit arithmetic and mix the lowbias32
   * finaliser (x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16). Each
   * element's draw depends only on the key and its index, so a mask can be drawn in chunks, in
   * parallel, and drawn again in the backward pass instead of being kept.
   */
  dropoutMask(out: Float32Array, n: number, p: number, keep: number, key0: number, key1: number, offset: number): void;

  // ---- sampling (one vocabulary of logits, n floats) ------------------------------------
  /** First index of the largest value (greedy decoding). */
  argmax(x: Float32Array, n: number): number;
  /** log(sum(exp(x))) over x[0..n), as max + log(sum(exp(x - max))) (per-token log-probabilities). */
  logSumExp(x: Float32Array, n: number): number;
  /** ids[0..k) = ids of the k largest values, largest first; equal values: lower id first. */
  topK(x: Float32Array, n: number, k: number, ids: Int32Array): void;
  /**
   * One draw from softmax(x * invTemperature) without sorting: the first id (in index order) whose
   * cumulative probability exceeds u (0 <= u < 1).
   */
  sampleSoftmax(x: Float32Array, n: number, invTemperature: number, u: number): number;

  // ---- fused decode step ---------------------------------------------------------------
  /**
   * Compile a decode program (one token through a whole model, see decode-program.ts): checks
   * every op against its buffers once; run(token, pos) then executes all of it in one call.
   * A program with row strides also runs n sequences at once (runBatch: one row each, every row
   * exactly as run() would compute it; see decode-program.ts).
   */
  compileDecode(program: DecodeProgram): DecodeRunner;

  // ---- optimizer -----------------------------------------------------------------------
  /**
   * One AdamW update, PyTorch semantics: p -= lr*wd*p; m, v moments; bias-corrected step.
   * `step` is the 1-based step number used for bias correction. `gradScale` multiplies the
   * gradient as it is read (gradient clipping without a pass of its own; the gradient array is
   * left as it was), rounded to float32 as a separate `scale` pass would.
   */
  adamw(
    param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, n: number,
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number, gradScale?: number,
  ): void;
}
