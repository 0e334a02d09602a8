/**
 * Conversions between float32 and the two 16-bit float formats found in model files:
 * IEEE half (F16: 1 sign, 5 exponent, 10 mantissa bits) and bfloat16 (BF16: the top
 * 16 bits of a float32). Encoding rounds to nearest, ties to even.
 *
 *   f32ToF16Bits(1.5);          // 0x3e00
 *   f16BitsToF32(0x3e00);       // 1.5
 *   f32ToBf16Bits(1.5);         // 0x3fc0
 *   decodeF16(new Uint16Array([0x3c00, 0xc000]));  // Float32Array [1, -2]
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

let f16Table: Float32Array | null = null;

/** Float value of one F16 bit pattern. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** F16 bit pattern nearest to `v` (overflow gives ±Infinity, NaN stays NaN). */
export function f32ToF16Bits(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Result is an F16 subnormal (or zero): m = (1.mant) * 2^(exp-150) / 2^-24.
    if (e < -10) return sign;
    return sign | roundShift(mant | 0x800000, 14 - e);
  }
  // Rounding may carry into the exponent, which is exactly what the bit layout wants.
  return sign | ((e << 10) + roundShift(mant, 13));
}

/** Float value of one BF16 bit pattern. */
export function bf16BitsToF32(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0];
}

/** BF16 bit pattern nearest to `v`. */
export function f32ToBf16Bits(v: number): number {
  f32[0] = v;
  const x = u32[0];
  if (Number.isNaN(v)) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** F16 bit patterns to a fresh Float32Array (table lookup). */
export function decodeF16(bits: Uint16Array): Float32Array {
  if (f16Table === null) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16BitsToF32(i);
  }
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = f16Table[bits[i]];
  return out;
}

/** BF16 bit patterns to a fresh Float32Array. */
export function decodeBf16(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = bits[i] << 16;
  return out;
}

/** Float32 values to F16 bit patterns. */
export function encodeF16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32ToF16Bits(values[i]);
  return out;
}

/** Float32 values to BF16 bit patterns. */
export function encodeBf16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32ToBf16Bits(values[i]);
  return out;
}

/** `x >> shift`, rounded to nearest with ties to even. */
function roundShift(x: number, shift: number): number {
  const half = 1 << (shift - 1);
  const rem = x & ((1 << shift) - 1);
  let q = x >>> shift;
  if (rem > half || (rem === half && q & 1)) q++;
  return q;
}
