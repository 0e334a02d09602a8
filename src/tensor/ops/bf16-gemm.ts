/**
 * The products of linear() in bf16 mixed precision: C (+)= op(A) · op(B) with both operands rounded
 * to bfloat16 and float32 sums, along the path backend/bf16.ts chose for this process:
 *
 *   'kernel'    Backend.gemmBf16: weights as cached bf16 bit patterns (Uint16Array), activations
 *               and gradients as float32, rounded by the kernel while it packs them
 *   'portable'  activations and gradients rounded into a scratch buffer (Backend.roundBf16), weights
 *               from a cached rounded float32 copy, then the ordinary float32 gemm: exactly the
 *               bf16 numbers, since every product of two bf16 values is exact in float32
 *
 * A weight is converted once per optimizer step, not once per product: its copy is kept with the
 * Tensor.version it was made from and remade on the first product after AdamW (or anything else
 * that bumps the version) changed the weight. Weights are float32 "master" copies throughout;
 * only the products see bf16.
 */
import { backend } from '../../backend/index.js';
import { bf16Choice } from '../../backend/bf16.js';
import type { Tensor } from '../tensor.js';

/** An operand: a weight (its bf16 copy is cached) or an activation/gradient buffer (rounded at each product). */
export type Bf16Operand = Tensor | Float32Array;

export interface Bf16Product {
  M: number;
  N: number;
  K: number;
  a: Bf16Operand;
  b: Bf16Operand;
  c: Float32Array;
  transA?: boolean;
  transB?: boolean;
  /** 0 overwrites C, 1 accumulates */
  beta?: 0 | 1;
}

/** Is bf16 on for this process (a path other than 'off')? Decides the path on first call. */
export function bf16Available(): boolean {
  return bf16Choice().path !== 'off';
}

export function gemmBf16(g: Bf16Product): void {
  const be = backend();
  const { M, N, K } = g;
  if (bf16Choice().path === 'kernel') {
    be.gemmBf16({ M, N, K, a: kernelOperand(g.a), b: kernelOperand(g.b), c: g.c, transA: g.transA, transB: g.transB, beta: g.beta ?? 0 });
    return;
  }
  const a = portableOperand(g.a, M * K, 0);
  const b = portableOperand(g.b, K * N, 1);
  be.gemm({ M, N, K, a, b, c: g.c, transA: g.transA, transB: g.transB, beta: g.beta ?? 0 });
}

// ---- weight copies --------------------------------------------------------------------------------

interface WeightCopy {
  /** the data and version the copy was made from */
  data: Float32Array;
  version: number;
  copy: Float32Array | Uint16Array;
}

const copies = new WeakMap<Tensor, WeightCopy>();
let conversions = 0;

/** The weight's copy in the wanted form, remade when the weight changed since it was made. */
function weightCopy(w: Tensor, bits: boolean): Float32Array | Uint16Array {
  let entry = copies.get(w);
  const fits = entry && entry.data === w.data && (bits ? entry.copy instanceof Uint16Array : entry.copy instanceof Float32Array);
  if (!entry || !fits) {
    // persistent, outside any buffer scope: it lives as long as the weight
    entry = { data: w.data, version: -1, copy: bits ? new Uint16Array(w.size) : new Float32Array(w.size) };
    copies.set(w, entry);
  }
  if (entry.version !== w.version) {
    const be = backend();
    if (bits) be.toBf16(w.data, entry.copy as Uint16Array, w.size);
    else be.roundBf16(w.data, entry.copy as Float32Array, w.size);
    entry.version = w.version;
    conversions++;
  }
  return entry.copy;
}

/** Weight conversions so far in this process (tests: a weight converts once per update, not per product). */
export function bf16WeightConversions(): number {
  return conversions;
}

function kernelOperand(x: Bf16Operand): Float32Array | Uint16Array {
  return ArrayBuffer.isView(x) ? (x as Float32Array) : weightCopy(x as Tensor, true);
}

// ---- rounded activations (portable path) ------------------------------------------------------------

/** two scratch buffers (one per operand of a product), grown to the largest operand seen */
const scratch: Float32Array[] = [new Float32Array(0), new Float32Array(0)];

function portableOperand(x: Bf16Operand, n: number, slot: 0 | 1): Float32Array {
  if (!ArrayBuffer.isView(x)) return weightCopy(x as Tensor, false) as Float32Array;
  if (scratch[slot].length < n) scratch[slot] = new Float32Array(n);
  const out = scratch[slot].length === n ? scratch[slot] : scratch[slot].subarray(0, n);
  backend().roundBf16(x, out, n);
  return out;
}
