/**
 * bfloat16 rounding and the bf16 product, as the reference computes them.
 *
 * bfloat16 is the upper half of a float32 (sign, 8 exponent bits, 7 mantissa bits). Rounding a
 * float32 to it, round to nearest with ties to even, is integer arithmetic on the bit pattern:
 *
 *   bits + 0x7fff + ((bits >> 16) & 1), then keep the upper 16 bits
 *
 * which also carries into the exponent (1.99999 -> 2) and overflows the largest float32s to
 * Inf, as IEEE rounding does. A NaN would carry into the sign or turn into Inf, so NaN gets its
 * quiet bit set and is truncated instead (it stays a NaN of the same sign).
 *
 * The product of two bf16 values (8-bit significands) has at most 16 significant bits, so it is
 * exact in float32: "bf16 inputs, float32 accumulation" is the float32 product of the two
 * operands rounded to bf16, which is what gemmBf16 computes here.
 */
import type { GemmBf16Args } from '../backend.js';
import { gemm } from './gemm.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bf16 bit pattern (16 bits) of a float32 bit pattern. */
export function bf16Bits(bits: number): number {
  if ((bits & 0x7fffffff) >>> 0 > 0x7f800000) return ((bits | 0x00400000) >>> 16) & 0xffff; // NaN: quiet, truncated
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The 32-bit pattern of x's first n values (a view for a Float32Array; Float64 storage goes through float32 first). */
function bitsOf(x: Float32Array, n: number): Uint32Array {
  if (x instanceof Float32Array) return new Uint32Array(x.buffer, x.byteOffset, n);
  const out = new Uint32Array(n);
  const wide = x as ArrayLike<number>;
  for (let i = 0; i < n; i++) {
    f32[0] = wide[i];
    out[i] = u32[0];
  }
  return out;
}

export function roundBf16(x: Float32Array, out: Float32Array, n: number): void {
  const bits = bitsOf(x, n);
  if (out instanceof Float32Array) {
    const o = new Uint32Array(out.buffer, out.byteOffset, n);
    for (let i = 0; i < n; i++) o[i] = bf16Bits(bits[i]) << 16;
    return;
  }
  const wide = out as ArrayLike<number> as Float64Array; // Float64 storage (gradient checks)
  for (let i = 0; i < n; i++) {
    u32[0] = bf16Bits(bits[i]) << 16;
    wide[i] = f32[0];
  }
}

export function toBf16(x: Float32Array, out: Uint16Array, n: number): void {
  const bits = bitsOf(x, n);
  for (let i = 0; i < n; i++) out[i] = bf16Bits(bits[i]);
}

/** A float32 copy of an operand's first n values rounded to bf16 (a Uint16Array holds bf16 bits already). */
function widened(x: Float32Array | Uint16Array, n: number): Float32Array {
  const out = new Float32Array(n);
  if (x instanceof Uint16Array) {
    const o = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) o[i] = x[i] << 16;
  } else {
    roundBf16(x, out, n);
  }
  return out;
}

export function gemmBf16(g: GemmBf16Args): void {
  const { M, N, K } = g;
  if (g.a.length < M * K || g.b.length < K * N || g.c.length < M * N) {
    throw new RangeError(`gemmBf16: arrays of ${g.a.length}, ${g.b.length} and ${g.c.length} values are too short for M ${M}, N ${N}, K ${K}`);
  }
  gemm({ M, N, K, a: widened(g.a, M * K), b: widened(g.b, K * N), c: g.c, transA: g.transA, transB: g.transB, beta: g.beta ?? 0 });
}
