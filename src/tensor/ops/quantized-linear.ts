/**
 * y = x · Wᵀ (+ bias) over the last dimension of x, with W (N, K) kept as GGUF Q8_0/Q4_0 blocks,
 * rows = outputs: a frozen quantized weight (inference, and the base of QLoRA).
 *
 *   forward   Backend.matmulQuantized (native: activations quantized to int8 blocks, integer dots)
 *   backward  the input gradient only, dx += dy · W (Backend.matmulQuantizedTransposed: float dy,
 *             the weight widened tile by tile), and the bias's when it trains. The weight is no
 *             Tensor and never gets a gradient.
 *
 * The forward keeps the inference kernel's int8 activations: measured for LoRA on a Q4_0 base
 * (bench/qlora-forward.ts, 2 seeds), the held-out loss ends within 0.2% of a float-activation
 * forward's (as close as the float base's run is), and the adapter gradients are at cosine 0.9996
 * to the float-activation ones, while Q4_0 weights themselves put them at 0.985 to the float base's.
 */
import type { QuantType } from '../../backend/backend.js';
import { backend } from '../../backend/index.js';
import { LlmError } from '../../util/errors.js';
import { Tensor, record } from '../tensor.js';

/** A (rows, cols) matrix as GGUF blocks: rows x (cols / 32) blocks, rows = outputs (model/quantized.ts QuantizedWeight). */
export interface QuantizedMatrix {
  type: QuantType;
  /** output features N */
  rows: number;
  /** input features K (a multiple of 32) */
  cols: number;
  blocks: Uint8Array;
}

export function quantizedLinear(x: Tensor, w: QuantizedMatrix, bias: Tensor | null): Tensor {
  if (x.lastDim !== w.cols) throw new LlmError(`quantized linear: input width ${x.lastDim} does not fit the weight's ${w.cols} columns`);
  if (bias && (bias.ndim !== 1 || bias.size !== w.rows)) throw new LlmError(`quantized linear: bias [${bias.shape.join(', ')}] should be [${w.rows}]`);
  const rows = x.size / w.cols;
  const N = w.rows, K = w.cols;
  const out = Tensor.empty([...x.shape.slice(0, -1), N]);
  const be = backend();
  be.matmulQuantized(x.data, w.blocks, w.type, out.data, rows, N, K);
  if (bias) be.addBias(out.data, bias.data, out.data, rows, N);
  return record(out, bias ? [x, bias] : [x], () => {
    const dy = out.grad!; // (rows, N)
    if (x.requiresGrad) be.matmulQuantizedTransposed(dy, w.blocks, w.type, x.ensureGrad(), rows, N, K); // dx (rows, K) += dy · W
    if (bias && bias.requiresGrad) be.sumRows(dy, bias.ensureGrad(), rows, N);
  });
}
