/**
 * Quantized weight matrices: the raw GGUF blocks of a Linear weight, kept as they are in the file
 * and multiplied by Backend.matmulQuantized (no dequantized copy is made); frozen, the input
 * gradient flows through them (Backend.matmulQuantizedTransposed), so they serve as QLoRA's base.
 *
 *   rows = output features (N), cols = input features (K, a multiple of 32); blocks holds `rows`
 *   rows of cols/32 blocks, i.e. the weight in (out, in) orientation ready for y = x · Wᵀ,
 *   whatever the layout of the float parameter ('out_in' Llama or GPT-2's 'in_out' Conv1D).
 */
import type { QuantType } from '../backend/backend.js';
import { dequantizeQ4_0, dequantizeQ8_0, GgmlType, QK, quantizeQ4_0, quantizeQ8_0 } from '../formats/quant.js';
import type { Tensor } from '../tensor/index.js';
import { LlmError } from '../util/errors.js';
import type { ModelConfig } from './config.js';
import { parameterSpecs } from './parameters.js';

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

/** The attention and MLP projections' weights: what quantizeBlockLinears quantizes. */
const BLOCK_LINEAR = /\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj|self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$/;

/**
 * Whether the float parameter `name` is stored (in, out) (GPT-2's Conv1D) while its quantized
 * form has rows = outputs; the token embedding and lm_head are (rows, C) either way.
 */
export function quantizedIsTransposed(cfg: ModelConfig, name: string): boolean {
  return cfg.family === 'gpt2' && name !== 'lm_head.weight' && name !== 'transformer.wte.weight';
}

/** The block linear weights of a config: name, output and input features. */
export function blockLinearWeights(cfg: ModelConfig): { name: string; outDim: number; inDim: number }[] {
  return parameterSpecs(cfg)
    .filter((s) => BLOCK_LINEAR.test(s.name))
    .map((s) => (quantizedIsTransposed(cfg, s.name)
      ? { name: s.name, outDim: s.shape[1], inDim: s.shape[0] }
      : { name: s.name, outDim: s.shape[0], inDim: s.shape[1] }));
}

/**
 * The first block linear weight whose input features are no multiple of 32 (no quantized kernel
 * path: a GGUF block holds 32 inputs), or null when every one can be quantized.
 */
export function unquantizableLinear(cfg: ModelConfig): { name: string; inDim: number } | null {
  const bad = blockLinearWeights(cfg).find((w) => w.inDim % QK !== 0);
  return bad ? { name: bad.name, inDim: bad.inDim } : null;
}

/**
 * QLoRA's frozen base: every block linear weight of a float model quantized to `type` (one at a
 * time, GPT-2's (in, out) weights transposed to rows = outputs first). Returns the float
 * parameters without them (the same Tensors otherwise) and the quantized weights, for
 * `new Transformer(cfg, params, { quantized })`. The token embedding, lm_head, norms and biases
 * stay float. Throws (one line) when a layer's input features are no multiple of 32.
 */
export function quantizeBlockLinears(cfg: ModelConfig, params: Map<string, Tensor>, type: QuantType): { params: Map<string, Tensor>; quantized: Map<string, QuantizedWeight> } {
  const bad = unquantizableLinear(cfg);
  if (bad) throw new LlmError(`'${bad.name}' has ${bad.inDim} input features, not a multiple of ${QK}, so it has no ${type} kernel path`);
  const rest = new Map(params);
  const quantized = new Map<string, QuantizedWeight>();
  for (const { name, outDim, inDim } of blockLinearWeights(cfg)) {
    const t = params.get(name);
    if (!t) throw new LlmError(`model is missing parameter '${name}'`);
    const rowsOut = quantizedIsTransposed(cfg, name) ? transpose(t.data, inDim, outDim) : t.data;
    quantized.set(name, quantizeWeight(type, rowsOut, outDim, inDim));
    rest.delete(name);
  }
  return { params: rest, quantized };
}

/** A quantized weight widened back to a float parameter of `name`'s own layout (merging an adapter into it). */
export function dequantizeToParameter(cfg: ModelConfig, name: string, w: QuantizedWeight): Float32Array {
  const rows = new Float32Array(w.rows * w.cols);
  if (w.type === 'q8_0') dequantizeQ8_0(w.blocks, rows.length, rows);
  else dequantizeQ4_0(w.blocks, rows.length, rows);
  return quantizedIsTransposed(cfg, name) ? transpose(rows, w.rows, w.cols) : rows;
}

/** (r, c) row-major -> (c, r) row-major */
function transpose(a: Float32Array, r: number, c: number): Float32Array {
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = a[i * c + j];
  return out;
}
