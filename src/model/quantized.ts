/**
 * Quantized weight matrices for inference: the raw GGUF blocks of a Linear weight, kept as they
 * are in the file and multiplied by Backend.matmulQuantized (no dequantized copy is made).
 *
 *   rows = output features (N), cols = input features (K, a multiple of 32); blocks holds `rows`
 *   rows of cols/32 blocks, i.e. the weight in (out, in) orientation ready for y = x · Wᵀ,
 *   whatever the layout of the float parameter ('out_in' Llama or GPT-2's 'in_out' Conv1D).
 */
import type { QuantType } from '../backend/backend.js';
import { dequantizeQ4_0, dequantizeQ8_0, GgmlType, QK, quantizeQ4_0, quantizeQ8_0 } from '../formats/quant.js';
import { LlmError } from '../util/errors.js';

export interface QuantizedWeight {
  type: QuantType;
  /** output features N */
  rows: number;
  /** input features K (multiple of 32) */
  cols: number;
  /** rows x (cols / 32) blocks, row-major */
  blocks: Uint8Array;
}

export function quantBlockBytes(type: QuantType): number {
  return type === 'q8_0' ? 34 : 18;
}

export function quantTypeOfGgml(type: number): QuantType | null {
  return type === GgmlType.Q8_0 ? 'q8_0' : type === GgmlType.Q4_0 ? 'q4_0' : null;
}

/** Quantize a row-major (rows, cols) float matrix (rows = outputs). */
export function quantizeWeight(type: QuantType, data: Float32Array, rows: number, cols: number): QuantizedWeight {
  if (cols % QK !== 0) throw new LlmError(`cannot quantize a weight with ${cols} columns to ${type} (needs a multiple of ${QK})`);
  const x = data.subarray(0, rows * cols);
  const blocks = type === 'q8_0' ? quantizeQ8_0(x) : quantizeQ4_0(x);
  return { type, rows, cols, blocks };
}

/**
 * Rows `ids` of a quantized (rows, cols) matrix, dequantized into out (ids.length x cols): the
 * embedding lookup of a token table kept quantized, so only the looked-up rows are ever widened.
 */
export function dequantizeRows(w: QuantizedWeight, ids: Int32Array, out: Float32Array): Float32Array {
  const rowBytes = (w.cols / QK) * quantBlockBytes(w.type);
  if (out.length < ids.length * w.cols) throw new LlmError(`dequantizeRows: the output holds ${out.length} floats, ${ids.length * w.cols} needed`);
  for (let i = 0; i < ids.length; i++) {
    const r = ids[i];
    if (!Number.isInteger(r) || r < 0 || r >= w.rows) throw new LlmError(`embedding: token id ${r} at position ${i} is outside the vocabulary [0, ${w.rows})`);
    const bytes = w.blocks.subarray(r * rowBytes, (r + 1) * rowBytes);
    const dst = out.subarray(i * w.cols, (i + 1) * w.cols);
    if (w.type === 'q8_0') dequantizeQ8_0(bytes, w.cols, dst);
    else dequantizeQ4_0(bytes, w.cols, dst);
  }
  return out;
}
