/**
 * Decode programs: one token through a whole model as a list of ops over a table of buffers,
 * run in one Backend call (Backend.compileDecode) instead of ~100 kernel calls from JavaScript.
 * Decode is bandwidth-bound; the gaps between small kernels (a crossing into the addon, a pool
 * round trip, cold memory streams) are what a C runner does not pay.
 *
 * The model classes emit the program (Transformer.decodeProgram), so there is still one model
 * definition; every op runs the kernel the op-by-op path runs, and the tests check both paths
 * give the same logits. native/decode.c executes programs natively; reference/decode-program.ts
 * interprets them with the reference kernels.
 *
 * Encoding (Int32 words; `buf` = index into `buffers`, -1 = none; `const` = index into consts):
 *
 *   EMBED      table, type, dim, dst            dst = row `token` of table (F32 or Q8_0/Q4_0 blocks)
 *   ADD_ROW    table, dim, dst                  dst += row `pos` of table (learned positions)
 *   NORM       rms, x, w, b, out, dim, eps      out = RMSNorm (rms = 1) or LayerNorm of x
 *   MATVEC     x, K, epilogue, n, then n x (w, type, out, N, bias, accumulate)
 *                                               out_i (+)= W_i x (+ b_i); epilogue SWIGLU:
 *                                               out_0 = silu(out_0) * out_1; GELU: out_0 = gelu(out_0)
 *   ROPE       x, nHeads, headDim, cos, sin     x rotated to position `pos` (in place)
 *   KV_STORE   src, slot, width                 row `pos` of slot = src
 *   ATTENTION  q, kslot, vslot, out, nHead, nKvHead, headDim, scale
 *                                               out = attention of q over slot rows 0..pos
 *
 * Weight types: F32 (N, K) rows ('out_in'), F32_IN_OUT (K, N) (GPT-2's Conv1D), Q8_0, Q4_0
 * (N rows of K/32 GGUF blocks). Slots are KV cache arrays, rebound when the cache grows.
 *
 * Batches: a program whose activation buffers hold several rows (rowStrides: the floats from one
 * row to the next per buffer, 0 for weights, tables and KV slots) also runs n tokens of n
 * different sequences at once (runBatch): every op over all rows, so each weight matrix is read
 * once per step for all of them. Row r decodes tokens[r] at positions[r]; its keys and values
 * live in rows slots[r] * slotRows + 0..positions[r] of each KV slot (a cache with a batch
 * dimension, src/model/batch-kv-cache.ts). Each row gets exactly the floats a single-token run
 * of the same program gives it.
 */
import type { QuantType } from './backend.js';
import { LlmError } from '../util/errors.js';

export const Op = { EMBED: 1, ADD_ROW: 2, NORM: 3, MATVEC: 4, ROPE: 5, KV_STORE: 6, ATTENTION: 7 } as const;
export const WeightType = { F32: 0, F32_IN_OUT: 1, Q4_0: 2, Q8_0: 8 } as const;
export const Epilogue = { NONE: 0, SWIGLU: 1, GELU: 2 } as const;

export type DecodeBuffer = Float32Array | Uint8Array;

export interface DecodeProgram {
  buffers: DecodeBuffer[];
  code: Int32Array;
  /** float64, as the op-by-op kernels receive eps and scale */
  consts: Float64Array;
  /**
   * Batch programs: per buffer, the floats from one row of a batch to the next (0: one buffer for
   * every row). Without it a program runs one row at a time.
   */
  rowStrides?: Int32Array;
}

/**
 * A compiled program: run(token, pos) executes it; bind replaces a buffer (a grown KV slot);
 * runBatch runs rows 0..n-1 (see the batch note above; n rows must fit the row buffers).
 */
export interface DecodeRunner {
  run(token: number, pos: number): void;
  bind(index: number, buffer: DecodeBuffer): void;
  runBatch(tokens: Int32Array, positions: Int32Array, slots: Int32Array, n: number, slotRows: number): void;
}

/** A weight operand of MATVEC or EMBED. */
export interface DecodeWeight {
  data: DecodeBuffer;
  type: number;
  /** outputs */
  N: number;
  /** inputs */
  K: number;
  bias: Float32Array | null;
}

export function weightTypeOf(quant: QuantType): number {
  return quant === 'q8_0' ? WeightType.Q8_0 : WeightType.Q4_0;
}

/** Lengths of each op in words (MATVEC: 5 + 6 per product). */
export function opLength(code: Int32Array, at: number): number {
  switch (code[at]) {
    case Op.EMBED: return 5;
    case Op.ADD_ROW: return 4;
    case Op.NORM: return 8;
    case Op.MATVEC: return 5 + 6 * code[at + 4];
    case Op.ROPE: return 6;
    case Op.KV_STORE: return 4;
    case Op.ATTENTION: return 9;
    default: throw new LlmError(`decode program: unknown op ${code[at]} at word ${at}`);
  }
}

export class DecodeProgramBuilder {
  private readonly buffers: DecodeBuffer[] = [];
  private readonly index = new Map<DecodeBuffer, number>();
  private readonly words: number[] = [];
  private readonly consts: number[] = [];

  /** The table index of a buffer (each distinct array once). */
  buf(b: DecodeBuffer): number {
    let i = this.index.get(b);
    if (i === undefined) {
      i = this.buffers.length;
      this.buffers.push(b);
      this.index.set(b, i);
    }
    return i;
  }

  /** A buffer that gets its own slot even when the same array is given again (a KV slot). */
  slot(b: DecodeBuffer): number {
    this.buffers.push(b);
    return this.buffers.length - 1;
  }

  private constant(v: number): number {
    this.consts.push(v);
    return this.consts.length - 1;
  }

  private opt(b: DecodeBuffer | null): number {
    return b ? this.buf(b) : -1;
  }

  embed(table: DecodeBuffer, type: number, dim: number, dst: Float32Array): void {
    this.words.push(Op.EMBED, this.buf(table), type, dim, this.buf(dst));
  }

  addRow(table: Float32Array, dim: number, dst: Float32Array): void {
    this.words.push(Op.ADD_ROW, this.buf(table), dim, this.buf(dst));
  }

  norm(rms: boolean, x: Float32Array, w: Float32Array, b: Float32Array | null, out: Float32Array, dim: number, eps: number): void {
    this.words.push(Op.NORM, rms ? 1 : 0, this.buf(x), this.buf(w), this.opt(b), this.buf(out), dim, this.constant(eps));
  }

  /** Products sharing the input x (K floats); accumulate adds into out (a residual). */
  matvec(x: Float32Array, products: { w: DecodeWeight; out: Float32Array; accumulate?: boolean }[], epilogue: number = Epilogue.NONE): void {
    const K = products[0].w.K;
    if (products.some((p) => p.w.K !== K)) throw new LlmError('decode program: products of one MATVEC must share their input width');
    this.words.push(Op.MATVEC, this.buf(x), K, epilogue, products.length);
    for (const p of products) {
      this.words.push(this.buf(p.w.data), p.w.type, this.buf(p.out), p.w.N, this.opt(p.w.bias), p.accumulate ? 1 : 0);
    }
  }

  rope(x: Float32Array, nHeads: number, headDim: number, cos: Float32Array, sin: Float32Array): void {
    this.words.push(Op.ROPE, this.buf(x), nHeads, headDim, this.buf(cos), this.buf(sin));
  }

  kvStore(src: Float32Array, slot: number, width: number): void {
    this.words.push(Op.KV_STORE, this.buf(src), slot, width);
  }

  attention(q: Float32Array, kSlot: number, vSlot: number, out: Float32Array, nHead: number, nKvHead: number, headDim: number, scale: number): void {
    this.words.push(Op.ATTENTION, this.buf(q), kSlot, vSlot, this.buf(out), nHead, nKvHead, headDim, this.constant(scale));
  }

  build(): DecodeProgram {
    return { buffers: this.buffers.slice(), code: Int32Array.from(this.words), consts: Float64Array.from(this.consts) };
  }
}
