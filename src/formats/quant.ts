/**
 * ggml tensor types and the GGUF block formats we read and write (F32, F16, BF16 (read only),
 * Q8_0, Q4_0), following ggml's reference quantizers (quantize_row_q8_0_ref / _q4_0_ref).
 *
 *   Q8_0: blocks of 32 weights = 34 bytes: fp16 scale d = amax/127, then 32 int8 q = round(x/d)
 *         (round half away from zero, like C's roundf); x ≈ d * q.
 *   Q4_0: blocks of 32 weights = 18 bytes: fp16 scale d = m / -8 where m is the element of largest
 *         magnitude (with its sign), then 16 bytes: q = min(15, trunc(x/d + 8.5)), byte j holding
 *         element j in its low nibble and element j + 16 in its high nibble; x ≈ d * (q - 8).
 *
 * As in ggml, the quantized values are computed with the float32 scale (1/d in float32), while the
 * stored scale is its fp16 rounding; dequantization uses the stored scale.
 *
 *   const bytes = encodeTensor(GgmlType.Q8_0, weights);           // weights.length % 32 === 0
 *   const back = decodeTensor(GgmlType.Q8_0, bytes, weights.length);
 */
import { LlmError } from '../util/errors.js';
import { decodeBf16, decodeF16, f16BitsToF32, f32ToF16Bits, encodeF16 } from './half.js';

export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
  BF16 = 30,
}

/** Weights per block of the block formats. */
export const QK = 32;
export const Q8_0_BLOCK_BYTES = 34;
export const Q4_0_BLOCK_BYTES = 18;

const NAMES: Record<number, string> = { 0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K', 30: 'BF16' };

/** 'F32', 'Q8_0', ... or 'type N' for types we do not name. */
export function ggmlTypeName(type: number): string {
  return NAMES[type] ?? `type ${type}`;
}

/** Whether we can decode tensors of this type. */
export function isSupportedType(type: number): type is GgmlType {
  return type === GgmlType.F32 || type === GgmlType.F16 || type === GgmlType.BF16 || type === GgmlType.Q8_0 || type === GgmlType.Q4_0;
}

/** Bytes of `n` consecutive elements (a row) of `type`; block types need n % 32 === 0. */
export function ggmlRowBytes(type: GgmlType, n: number): number {
  switch (type) {
    case GgmlType.F32: return 4 * n;
    case GgmlType.F16:
    case GgmlType.BF16: return 2 * n;
    case GgmlType.Q8_0:
    case GgmlType.Q4_0:
      if (n % QK !== 0) throw new LlmError(`${ggmlTypeName(type)} needs rows of a multiple of ${QK} elements, got ${n}`);
      return (n / QK) * (type === GgmlType.Q8_0 ? Q8_0_BLOCK_BYTES : Q4_0_BLOCK_BYTES);
    default:
      throw new LlmError(`ggml tensor type ${ggmlTypeName(type)} is not supported (F32, F16, BF16, Q8_0, Q4_0 are)`);
  }
}

/** Bytes of a whole tensor with ggml dims (dims[0] = row length). */
export function ggmlTensorBytes(type: GgmlType, dims: readonly number[]): number {
  const rows = dims.slice(1).reduce((a, b) => a * b, 1);
  return ggmlRowBytes(type, dims[0] ?? 1) * rows;
}

const fr = Math.fround;

/** C roundf: to nearest, halves away from zero. */
function roundAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

/** Q8_0-encode x (length a multiple of 32). */
export function quantizeQ8_0(x: Float32Array, out = new Uint8Array((x.length / QK) * Q8_0_BLOCK_BYTES)): Uint8Array {
  if (x.length % QK !== 0) throw new LlmError(`Q8_0 needs a multiple of ${QK} values, got ${x.length}`);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const nb = x.length / QK;
  for (let b = 0; b < nb; b++) {
    const base = b * QK;
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[base + j]));
    const d = fr(amax / 127);
    const id = d !== 0 ? fr(1 / d) : 0;
    const o = b * Q8_0_BLOCK_BYTES;
    view.setUint16(o, f32ToF16Bits(d), true);
    for (let j = 0; j < QK; j++) view.setInt8(o + 2 + j, roundAway(fr(x[base + j] * id)));
  }
  return out;
}

export function dequantizeQ8_0(bytes: Uint8Array, n: number, out: Float32Array = new Float32Array(n)): Float32Array {
  if (n % QK !== 0 || bytes.byteLength < (n / QK) * Q8_0_BLOCK_BYTES) throw new LlmError(`Q8_0 data of ${bytes.byteLength} bytes cannot hold ${n} values`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < n / QK; b++) {
    const o = b * Q8_0_BLOCK_BYTES;
    const d = f16BitsToF32(view.getUint16(o, true));
    for (let j = 0; j < QK; j++) out[b * QK + j] = d * view.getInt8(o + 2 + j);
  }
  return out;
}

/** Q4_0-encode x (length a multiple of 32). */
export function quantizeQ4_0(x: Float32Array, out = new Uint8Array((x.length / QK) * Q4_0_BLOCK_BYTES)): Uint8Array {
  if (x.length % QK !== 0) throw new LlmError(`Q4_0 needs a multiple of ${QK} values, got ${x.length}`);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const nb = x.length / QK;
  const half = QK / 2;
  for (let b = 0; b < nb; b++) {
    const base = b * QK;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = x[base + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fr(max / -8);
    const id = d !== 0 ? fr(1 / d) : 0;
    const o = b * Q4_0_BLOCK_BYTES;
    view.setUint16(o, f32ToF16Bits(d), true);
    for (let j = 0; j < half; j++) {
      const q0 = Math.min(15, Math.max(0, Math.trunc(fr(fr(x[base + j] * id) + 8.5))));
      const q1 = Math.min(15, Math.max(0, Math.trunc(fr(fr(x[base + half + j] * id) + 8.5))));
      out[o + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

export function dequantizeQ4_0(bytes: Uint8Array, n: number, out: Float32Array = new Float32Array(n)): Float32Array {
  if (n % QK !== 0 || bytes.byteLength < (n / QK) * Q4_0_BLOCK_BYTES) throw new LlmError(`Q4_0 data of ${bytes.byteLength} bytes cannot hold ${n} values`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const half = QK / 2;
  for (let b = 0; b < n / QK; b++) {
    const o = b * Q4_0_BLOCK_BYTES;
    const d = f16BitsToF32(view.getUint16(o, true));
    for (let j = 0; j < half; j++) {
      const byte = bytes[o + 2 + j];
      out[b * QK + j] = d * ((byte & 0x0f) - 8);
      out[b * QK + half + j] = d * ((byte >> 4) - 8);
    }
  }
  return out;
}

/** The bytes of `x` stored as `type` (little-endian). */
export function encodeTensor(type: GgmlType, x: Float32Array): Uint8Array {
  switch (type) {
    case GgmlType.F32: return new Uint8Array(x.buffer.slice(x.byteOffset, x.byteOffset + x.byteLength));
    case GgmlType.F16: return new Uint8Array(encodeF16(x).buffer);
    case GgmlType.Q8_0: return quantizeQ8_0(x);
    case GgmlType.Q4_0: return quantizeQ4_0(x);
    default: throw new LlmError(`writing ggml type ${ggmlTypeName(type)} is not supported (F32, F16, Q8_0, Q4_0)`);
  }
}

/** `n` float32 values from bytes stored as `type`. */
export function decodeTensor(type: GgmlType, bytes: Uint8Array, n: number): Float32Array {
  const need = ggmlRowBytes(type, n);
  if (bytes.byteLength < need) throw new LlmError(`${ggmlTypeName(type)} data of ${bytes.byteLength} bytes cannot hold ${n} values (${need} needed)`);
  switch (type) {
    case GgmlType.F32: {
      const copy = new Uint8Array(need);
      copy.set(bytes.subarray(0, need));
      return new Float32Array(copy.buffer);
    }
    case GgmlType.F16:
    case GgmlType.BF16: {
      const copy = new Uint8Array(need);
      copy.set(bytes.subarray(0, need));
      const bits = new Uint16Array(copy.buffer);
      return type === GgmlType.F16 ? decodeF16(bits) : decodeBf16(bits);
    }
    case GgmlType.Q8_0: return dequantizeQ8_0(bytes, n);
    case GgmlType.Q4_0: return dequantizeQ4_0(bytes, n);
    default: throw new LlmError(`reading ggml type ${ggmlTypeName(type)} is not supported (F32, F16, BF16, Q8_0, Q4_0)`);
  }
}
