/**
 * Matrix product with a GGUF-quantized weight (see Backend.matmulQuantized):
 * out (M, N) = x (M, K) · Wᵀ, W (N, K) stored as N rows of K/32 Q8_0 or Q4_0 blocks.
 *
 * matmulQuantized dequantizes one block at a time (never the whole matrix) and accumulates in
 * double. matmulQuantizedQ8x is the oracle of the native kernel: it first quantizes each row of x
 * to int8 blocks exactly as the native kernel does (d = amax/127 in float32, q = roundf(x/d)),
 * then sums d_x * d_w * (integer block dot), so the two differ only in float summation order.
 *
 * matmulQuantizedTransposed is the backward product of the same weight (the input gradient of
 * y = x · Wᵀ): dx (M, K) += dy (M, N) · W, again one dequantized block at a time, float dy.
 */
import type { QuantType } from '../backend.js';
import { f16BitsToF32 } from '../../formats/half.js';
import { LlmError } from '../../util/errors.js';

const QK = 32;
const fr = Math.fround;

function blockBytes(type: QuantType): number {
  if (type === 'q8_0') return 34;
  if (type === 'q4_0') return 18;
  throw new LlmError(`matmulQuantized: unknown quantization type '${String(type)}' (q8_0 or q4_0)`);
}

function check(x: Float32Array, w: Uint8Array, type: QuantType, out: Float32Array, M: number, N: number, K: number, fn = 'matmulQuantized'): number {
  const bb = blockBytes(type);
  if (K % QK !== 0) throw new LlmError(`${fn}: K = ${K} is not a multiple of ${QK}`);
  if (x.length < M * K || out.length < M * N || w.byteLength < N * (K / QK) * bb) {
    throw new LlmError(`${fn}: arrays too short for M=${M}, N=${N}, K=${K} (${type})`);
  }
  return bb;
}

/** The 32 weights of block b of row n, dequantized into `dst`. */
function loadBlock(w: Uint8Array, type: QuantType, offset: number, dst: Float64Array): void {
  const d = f16BitsToF32(w[offset] | (w[offset + 1] << 8));
  if (type === 'q8_0') {
    for (let j = 0; j < QK; j++) dst[j] = d * ((w[offset + 2 + j] << 24) >> 24);
  } else {
    for (let j = 0; j < QK / 2; j++) {
      const byte = w[offset + 2 + j];
      dst[j] = d * ((byte & 0x0f) - 8);
      dst[j + QK / 2] = d * ((byte >> 4) - 8);
    }
  }
}

export function matmulQuantized(x: Float32Array, w: Uint8Array, type: QuantType, out: Float32Array, M: number, N: number, K: number): void {
  const bb = check(x, w, type, out, M, N, K);
  const nb = K / QK;
  const block = new Float64Array(QK);
  const acc = new Float64Array(M);
  for (let n = 0; n < N; n++) {
    acc.fill(0);
    for (let b = 0; b < nb; b++) {
      loadBlock(w, type, (n * nb + b) * bb, block);
      for (let m = 0; m < M; m++) {
        const xo = m * K + b * QK;
        let s = 0;
        for (let j = 0; j < QK; j++) s += block[j] * x[xo + j];
        acc[m] += s;
      }
    }
    for (let m = 0; m < M; m++) out[m * N + n] = acc[m];
  }
}

/**
 * dx (M, K) += dy (M, N) · W with W (N, K) in GGUF blocks (accumulates, as backward kernels do).
 * Row n of W, dequantized block by block, is added to every row of dx with the weight dy[m, n];
 * the sums are kept in double and rounded into dx once.
 */
export function matmulQuantizedTransposed(dy: Float32Array, w: Uint8Array, type: QuantType, dx: Float32Array, M: number, N: number, K: number): void {
  const bb = check(dx, w, type, dy, M, N, K, 'matmulQuantizedTransposed');
  const nb = K / QK;
  const block = new Float64Array(QK);
  const acc = Float64Array.from(dx.subarray(0, M * K));
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < nb; b++) {
      loadBlock(w, type, (n * nb + b) * bb, block);
      for (let m = 0; m < M; m++) {
        const g = dy[m * N + n];
        const o = m * K + b * QK;
        for (let j = 0; j < QK; j++) acc[o + j] += g * block[j];
      }
    }
  }
  dx.set(acc);
}

/** C roundf: to nearest, halves away from zero. */
function roundAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

/** x (M, K) as int8 blocks and float32 scales, as the native kernel quantizes activations. */
export function quantizeActivations(x: Float32Array, M: number, K: number): { q: Int8Array; d: Float32Array } {
  const q = new Int8Array(M * K);
  const d = new Float32Array((M * K) / QK);
  for (let b = 0; b < (M * K) / QK; b++) {
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[b * QK + j]));
    const s = fr(amax / 127);
    const id = s !== 0 ? fr(1 / s) : 0;
    d[b] = s;
    for (let j = 0; j < QK; j++) q[b * QK + j] = roundAway(fr(x[b * QK + j] * id));
  }
  return { q, d };
}

/** The native kernel's arithmetic: int8 activations x quantized weights, exact block dots. */
export function matmulQuantizedQ8x(x: Float32Array, w: Uint8Array, type: QuantType, out: Float32Array, M: number, N: number, K: number): void {
  const bb = check(x, w, type, out, M, N, K);
  const nb = K / QK;
  const { q, d } = quantizeActivations(x, M, K);
  const wq = new Int32Array(QK);
  for (let n = 0; n < N; n++) {
    for (let m = 0; m < M; m++) out[m * N + n] = 0;
    const acc = new Float64Array(M);
    for (let b = 0; b < nb; b++) {
      const o = (n * nb + b) * bb;
      const dw = f16BitsToF32(w[o] | (w[o + 1] << 8));
      if (type === 'q8_0') for (let j = 0; j < QK; j++) wq[j] = (w[o + 2 + j] << 24) >> 24;
      else for (let j = 0; j < QK / 2; j++) {
        wq[j] = (w[o + 2 + j] & 0x0f) - 8;
        wq[j + QK / 2] = (w[o + 2 + j] >> 4) - 8;
      }
      for (let m = 0; m < M; m++) {
        let s = 0;
        const xo = m * K + b * QK;
        for (let j = 0; j < QK; j++) s += wq[j] * q[xo + j];
        acc[m] += dw * d[m * nb + b] * s;
      }
    }
    for (let m = 0; m < M; m++) out[m * N + n] = acc[m];
  }
}
